"""T_i and T_i⁻¹: how probe images reach a model, and how its attribution maps come back.

T_i resizes probe images (float in [0, 1], B×3×S×S) to the model's input size and normalises them;
T_i⁻¹ brings maps computed at the model's input size back to the probe size S, so that maps of models
with different input sizes can be compared pixel for pixel.

T_i resizes the whole probe image, with no centre crop, whatever crop fraction (``crop_pct``) the model
was evaluated with: probe images are already framed, a crop would discard a different border of every
probe image per model, and T_i⁻¹ must map each map back onto the whole probe image pixel for pixel. The
interpolation is the model's own when it is bicubic (its training resize), else bilinear; T_i⁻¹ is
always bilinear (a map is not an image: bicubic would overshoot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from modelspace.errors import InputError, check_int
from modelspace.models.spec import INTERPOLATIONS


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Bilinear (or bicubic) resize of a B×C×H×W tensor; antialiased when shrinking (avoids aliasing
    of fine detail)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    shrinking = size[0] < h or size[1] < w
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False, antialias=shrinking)


def _check_4d(x: torch.Tensor, what: str, channels: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        desc = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what}: expected a float tensor of shape (B, C, H, W), got {desc}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{what}: expected {channels} channels, got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class InputTransform:
    """Resize to ``size`` (height, width) with ``interpolation`` ("bilinear" or "bicubic"), then
    normalise with per-channel ``mean`` / ``std``."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"InputTransform interpolation: expected one of {INTERPOLATIONS}, "
                             f"got {self.interpolation!r}")

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float images in [0, 1] -> (B, 3, *size) model input. Differentiable."""
        _check_4d(images, "InputTransform images", channels=len(self.mean))
        mean, std = self._stats(images)
        return (_resize(images, self.size, self.interpolation) - mean) / std

    def inverse(self, maps: torch.Tensor, probe_size: int) -> torch.Tensor:
        """(B, C, h, w) maps -> (B, C, S, S) at probe size S (bilinear, align_corners=False).

        Returns ``maps`` itself when it is already S×S. Shrinking is antialiased, which, like
        upsampling, keeps a constant map constant.
        """
        _check_4d(maps, "InputTransform.inverse maps")
        check_int(probe_size, "InputTransform.inverse probe_size")
        return _resize(maps, (probe_size, probe_size))

    @classmethod
    def from_spec(cls, spec: Any) -> "InputTransform":
        """The transform a resolved `ModelSpec` (or anything with input_size, mean, std and optionally
        interpolation) describes; `load_model` resolves the fields a zoo entry leaves to the model."""
        unset = [f for f in ("input_size", "mean", "std") if getattr(spec, f, None) is None]
        if unset:
            raise InputError(f"model {getattr(spec, 'name', '?')!r}: field {unset[0]!r} is not resolved yet; "
                             "take the transform of load_model(spec), which reads it from the model")
        return cls(size=tuple(spec.input_size), mean=tuple(spec.mean), std=tuple(spec.std),
                   interpolation=getattr(spec, "interpolation", None) or "bilinear")
