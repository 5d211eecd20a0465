"""T_i and T_i⁻¹: how probe images reach a model, and how its attribution maps come back.

T_i resizes probe images (float in [0, 1], B×3×S×S) to the model's input size and normalises them;
T_i⁻¹ brings maps computed at the model's input size back to the probe size S, so that maps of models
with different input sizes can be compared pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from modelspace.errors import InputError, check_int


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a B×C×H×W tensor; antialiased when shrinking (avoids aliasing of fine detail)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    shrinking = size[0] < h or size[1] < w
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)


def _check_4d(x: torch.Tensor, what: str, channels: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        desc = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what}: expected a float tensor of shape (B, C, H, W), got {desc}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{what}: expected {channels} channels, got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class InputTransform:
    """Resize to ``size`` (height, width) then normalise with per-channel ``mean`` / ``std``."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float images in [0, 1] -> (B, 3, *size) model input. Differentiable."""
        _check_4d(images, "InputTransform images", channels=len(self.mean))
        mean, std = self._stats(images)
        return (_resize(images, self.size) - mean) / std

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
        """The transform a `ModelSpec` (or anything with input_size, mean and std) describes."""
        return cls(size=tuple(spec.input_size), mean=tuple(spec.mean), std=tuple(spec.std))
