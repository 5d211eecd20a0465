"""Encoder activations: the output R of a model's encoder on probe images, for the baselines.

They run through the same `Runtime` as the attribution maps (device, autocast, memory layout), so
that a baseline and a method compare models under the same conditions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ..progress import progress as progress_bar

from ..errors import AttributionError, InputError, check_int
from .runtime import Runtime


def encoder_activations(
    model: Any,
    images: torch.Tensor,
    batch_size: int = 64,
    runtime: Runtime | str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """The encoder output R of `model` on each probe image, flattened: float32 (N, D).

    Parameters
    ----------
    model : LoadedModel
        Its ``tap()`` (R, laid out as a map), ``transform`` and ``name`` are used; the module must
        already be on the runtime's device (``load_model(spec, device)``).
    images : torch.Tensor
        Probe images, float (N, 3, S, S) in [0, 1], before the model's transform T_i.
    batch_size : int
        Images per forward pass.
    runtime : Runtime, str or torch.device
        How the forward passes run, or just a device.
    progress : bool
        Show a tqdm bar over batches.

    Raises
    ------
    InputError
        Bad `images` or `batch_size`.
    AttributionError
        R is not a floating-point tensor, changes size between batches, or holds non-finite
        values (the message names the model and the count of images).
    """
    name = getattr(model, "name", "model")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        desc = (f"shape {tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor)
                else type(images).__name__)
        raise InputError(f"images: expected a float tensor (N, 3, S, S), got {desc}")
    if images.shape[0] == 0:
        raise InputError("images: expected at least one image, got N = 0")
    check_int(batch_size, "batch_size")
    runtime = Runtime.of(runtime)

    tap = model.tap()  # R laid out as a map, as the attribution methods see it
    n = images.shape[0]
    rows: list[np.ndarray] = []
    starts = range(0, n, batch_size)
    with torch.no_grad():
        for start in progress_bar(starts, desc=f"{name} · activations", unit="batch", disable=not progress, leave=False):
            x = runtime.inputs(model.transform, images[start:start + batch_size])
            with runtime.autocast():
                r = tap(x)
            if not r.is_floating_point():
                raise AttributionError(f"model {name!r}: the encoder output is not a floating-point tensor "
                                       f"(got {r.dtype})")
            rows.append(r.detach().reshape(r.shape[0], -1).float().cpu().numpy())
            if rows[-1].shape[1] != rows[0].shape[1]:
                raise AttributionError(f"model {name!r}: the encoder output has {rows[0].shape[1]} values per "
                                       f"image in the first batch but {rows[-1].shape[1]} at image {start}")
    out = np.concatenate(rows)
    bad = int((~np.isfinite(out).all(axis=1)).sum())
    if bad:
        raise AttributionError(f"model {name!r}: non-finite encoder output for {bad} of {n} images")
    return out
