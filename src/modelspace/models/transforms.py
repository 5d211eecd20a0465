"""T_i and T_i⁻¹: how probe images reach a model, and how its attribution maps come back.

T_i resizes probe images (float in [0, 1], B×3×S×S) to the model's input size and normalises them;
T_i⁻¹ brings maps computed at the model's input size back to the probe size S, so that maps of models
with different input sizes can be compared pixel for pixel.

T_i resizes the whole probe image, with no centre crop, whatever crop fraction (``crop_pct``) the model
was evaluated with: probe images are already framed, a crop would discard a different border of every
probe image per model, and T_i⁻¹ must map each map back onto the whole probe image pixel for pixel. The
interpolation is the model's own when it is bicubic (its training resize), else bilinear; T_i⁻¹ is
always bilinear (a map is not an image: bicubic would overshoot).

Some models were trained on images prepared in a way of their own, which T_i repeats between resizing
and normalising, on the image in [0, 1] (`CONVENTIONS`, named by the model's loader): the Taskonomy
encoders as the seed paper's code fed them (Song et al. 2019, tools/deep_attribution.py) clip the image
to [0.1, 0.9] (``low_saturation``), see its CIE lightness L*/100 on every channel (``lightness``, the
colorization encoder's grey input) or its centre quarter replaced by the normalisation mean, which the
model sees as 0 (``centre_masked``, the inpainting encoder's masked input). The convention is part of
T_i, so attributions are read on the model's own input x, as the paper's were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from modelspace.errors import InputError, check_int
from modelspace.models.spec import INTERPOLATIONS


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Bilinear (or bicubic) resize of a B×C×H×W tensor.

    Antialiased when shrinking (avoids aliasing of fine detail).
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    shrinking = size[0] < h or size[1] < w
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False, antialias=shrinking)


#: CIE 1931 Y of linear sRGB (D65), the row of the sRGB → XYZ matrix that L* uses.
_SRGB_Y = (0.212671, 0.715160, 0.072169)
#: Where CIE L*'s cube root meets its linear part ((6/29)³), and that part's slope ((29/6)²/3).
_LAB_T0, _LAB_SLOPE = 0.008856, 7.787


def _low_saturation(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The image clipped to [0.1, 0.9] (Taskonomy's ``resize_rescale_image_low_sat``)."""
    return x.clamp(0.1, 0.9)


def _lightness(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """CIE L*/100 of the sRGB image, on each of its channels (Taskonomy's ``to_light``: the L of Lab).

    Both pieces of the sRGB curve and of L* take clamped inputs, so that the piece
    `torch.where` discards has a finite gradient.
    """
    linear = torch.where(x > 0.04045, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, x / 12.92)
    y = (linear * torch.tensor(_SRGB_Y, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    f = torch.where(y > _LAB_T0, y.clamp_min(_LAB_T0) ** (1 / 3), _LAB_SLOPE * y + 16 / 116)
    return ((116 * f - 16) / 100).expand_as(x)


def _centre_masked(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The centre quarter (rows and columns from 1/4 to 3/4) replaced by ``mean``.

    Normalising makes it 0 (Taskonomy's ``context_encoder_input``).
    """
    h, w = x.shape[-2:]
    centre = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    centre[h // 4:3 * h // 4, w // 4:3 * w // 4] = True
    return torch.where(centre, mean, x)


#: Input conventions: name → ``f(image, mean)`` on the resized image in [0, 1] (``mean`` the
#: normalisation's, (1, C, 1, 1)), applied by T_i before it normalises (see the module docstring).
CONVENTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "low_saturation": _low_saturation,
    "lightness": _lightness,
    "centre_masked": _centre_masked,
}


def _check_4d(x: torch.Tensor, what: str, channels: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        desc = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what}: expected a float tensor of shape (B, C, H, W), got {desc}")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"{what}: expected {channels} channels, got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class InputTransform:
    """T_i: resize, apply the model's input convention if any, then normalise.

    Parameters
    ----------
    size : tuple of int
        The model's input (height, width) in pixels.
    mean : tuple of float
        Per-channel mean subtracted after resizing (images in [0, 1]).
    std : tuple of float
        Per-channel standard deviation divided by.
    interpolation : {"bilinear", "bicubic"}
        How the probe images are resized to ``size``.
    convention : str, optional
        A name in `CONVENTIONS` (e.g. Taskonomy's lightness input), applied before normalising; None for none.

    Raises
    ------
    InputError
        If ``interpolation`` or ``convention`` is not one of the known names.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    convention: str | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"InputTransform interpolation: expected one of {INTERPOLATIONS}, "
                             f"got {self.interpolation!r}")
        if self.convention is not None and self.convention not in CONVENTIONS:
            raise InputError(f"InputTransform convention: expected one of {sorted(CONVENTIONS)} or None, "
                             f"got {self.convention!r}")

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float images in [0, 1] -> (B, 3, *size) model input. Differentiable."""
        _check_4d(images, "InputTransform images", channels=len(self.mean))
        mean, std = self._stats(images)
        x = _resize(images, self.size, self.interpolation)
        if self.convention is not None:
            x = CONVENTIONS[self.convention](x, mean)
        return (x - mean) / std

    def inverse(self, maps: torch.Tensor, probe_size: int) -> torch.Tensor:
        """T_i⁻¹: maps at the model's input size back to probe size (bilinear, align_corners=False).

        Shrinking is antialiased, which, like upsampling, keeps a constant map constant.

        Parameters
        ----------
        maps : torch.Tensor
            (B, C, h, w) maps at the model's input size.
        probe_size : int
            S, the probe images' side.

        Returns
        -------
        torch.Tensor
            (B, C, S, S) maps; ``maps`` itself when it is already S×S.

        Raises
        ------
        InputError
            If ``maps`` is not a 4-D float tensor or ``probe_size`` not a positive integer.
        """
        _check_4d(maps, "InputTransform.inverse maps")
        check_int(probe_size, "InputTransform.inverse probe_size")
        return _resize(maps, (probe_size, probe_size))

    @classmethod
    def from_spec(cls, spec: Any, convention: str | None = None) -> "InputTransform":
        """The transform a resolved `ModelSpec` describes.

        `load_model` resolves the fields a zoo entry leaves to the model.

        Parameters
        ----------
        spec : ModelSpec or object
            A resolved spec, or anything with ``input_size``, ``mean``, ``std`` and optionally ``interpolation``.
        convention : str, optional
            The model's input convention (a name in `CONVENTIONS`), or None.

        Returns
        -------
        InputTransform
            The transform.
        """
        unset = [f for f in ("input_size", "mean", "std") if getattr(spec, f, None) is None]
        if unset:
            raise InputError(f"model {getattr(spec, 'name', '?')!r}: field {unset[0]!r} is not resolved yet; "
                             "take the transform of load_model(spec), which reads it from the model")
        return cls(size=tuple(spec.input_size), mean=tuple(spec.mean), std=tuple(spec.std),
                   interpolation=getattr(spec, "interpolation", None) or "bilinear", convention=convention)
