"""Encoder activations, and a classifier head's predicted distribution.

The output R of a model's encoder on probe images, for the baselines and (global-average-pooled) the
label-based scores; and a classifier head's predicted distribution, for LEEP and NCE
(`source_probabilities`).

They run through the same `Runtime` as the attribution maps (device, autocast, memory layout), so
that a baseline and a method compare models under the same conditions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from ...progress import progress as progress_bar

from ...errors import AttributionError, InputError, ModelspaceError, check_int
from ...models import first_tensor
from .runtime import Runtime

__all__ = ["encoder_activations", "prepare_baselines", "source_probabilities"]


def encoder_activations(
    model: Any,
    images: torch.Tensor,
    batch_size: int = 64,
    runtime: Runtime | str | torch.device = "cpu",
    progress: bool = True,
    pool: bool = False,
) -> np.ndarray:
    """The encoder output R of `model` on each probe image, flattened.

    With `pool`, R is averaged over its spatial positions first (global average pooling of the map).

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
    pool : bool
        Average R (B, C, ...) over every axis after its channels (the features that the label-based
        scores use, as LogME and the others do); an R of shape (B, C) is kept as is.

    Returns
    -------
    np.ndarray
        float32 (N, D), D the size of R; with `pool`, float32 (N, C).

    Raises
    ------
    InputError
        Bad `images` or `batch_size`.
    AttributionError
        R is not a floating-point tensor, changes size between batches, or holds non-finite
        values (the message names the model and the count of images).
    """
    _check_images(images, batch_size)
    runtime = Runtime.of(runtime)

    tap = model.tap()  # R laid out as a map, as the attribution methods see it

    def rows(r: torch.Tensor) -> torch.Tensor:
        if pool and r.ndim > 2 and r.is_floating_point():  # float32 sums, whatever the autocast precision
            return r.reshape(r.shape[0], r.shape[1], -1).mean(dim=2, dtype=torch.float32)
        return r

    return _batched(model, "encoder output", images, batch_size, runtime, progress, lambda x: rows(tap(x)))


def prepare_baselines(model: Any, baselines: Sequence[Any], probe: Any,
                      runtime: Runtime) -> tuple[dict[str, Any], list[tuple[str, Exception]]]:
    """A model's encoder activations on the whole probe set, in each baseline's compact prepared form.

    The forward passes take `Runtime.batch_size` images each. Runs wherever the model is (a Ray worker included). Errors are returned, not raised, so that one
    baseline's refusal leaves the others prepared.

    Parameters
    ----------
    model : LoadedModel
        The model, already on the runtime's device.
    baselines : sequence of Similarity
        The baselines to prepare for (each one's `prepare`).
    probe : ProbeSet
        The probe images.
    runtime : Runtime
        How the forward passes run, and how many images each takes.

    Returns
    -------
    prepared : dict
        Baseline id -> its prepared form of the activations.
    errors : list of (str, Exception)
        ``(what, error)``: ``what`` is "baselines" when the activations themselves could not be
        computed (then nothing is prepared), else the id of the baseline whose `prepare` refused them.
    """
    from .executor import run_error  # executor imports this module's siblings; import at call time

    try:
        acts = encoder_activations(model, probe.batch(0, len(probe)), runtime.batch_size, runtime, progress=False)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - one model's failure is recorded, the run goes on
        return {}, [("baselines", run_error(model, exc))]
    prepared, errors = {}, []
    for baseline in baselines:
        if baseline.combines_estimators:  # a fusion is made from its members' matrices, not from R
            continue
        try:
            prepared[baseline.id] = baseline.prepare(acts, model.name)
        except ModelspaceError as exc:
            errors.append((baseline.id, exc))
    return prepared, errors


def source_probabilities(
    model: Any,
    images: torch.Tensor,
    batch_size: int = 64,
    runtime: Runtime | str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """The softmax of `model`'s whole output on each image.

    The predicted distribution of its classifier head over its Z source classes (what LEEP and NCE take).

    Parameters
    ----------
    model : LoadedModel
        The model, already on the runtime's device; its whole module runs (not only the encoder).
    images : torch.Tensor
        Probe images, float (N, 3, S, S) in [0, 1], before the model's transform T_i.
    batch_size : int, default 64
        Images per forward pass.
    runtime : Runtime, str or torch.device, default "cpu"
        How the forward passes run, or just a device.
    progress : bool, default True
        Show a progress bar over batches.

    Returns
    -------
    np.ndarray
        float32 (N, Z), each row summing to 1.

    Raises
    ------
    InputError
        Bad `images` or `batch_size`.
    AttributionError
        If the output (its first tensor, for a tuple or an HF ModelOutput) is not (B, Z) logits with
        Z >= 2: a model without a classifier head has no source label distribution.
    """
    name = getattr(model, "name", "model")
    _check_images(images, batch_size)
    runtime = Runtime.of(runtime)

    def probs(x: torch.Tensor) -> torch.Tensor:
        out = first_tensor(model.module(x))
        if out is None or out.ndim != 2 or out.shape[1] < 2 or not out.is_floating_point():
            shape = "no tensor" if out is None else f"shape {tuple(out.shape)} {out.dtype}"
            raise AttributionError(f"model {name!r}: its output ({shape}) is not (B, Z) classifier logits "
                                   "over Z >= 2 classes, so it has no source label distribution")
        return torch.softmax(out.float(), dim=1)

    return _batched(model, "output", images, batch_size, runtime, progress, probs)


def _check_images(images: Any, batch_size: int) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        desc = (f"shape {tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor)
                else type(images).__name__)
        raise InputError(f"images: expected a float tensor (N, 3, S, S), got {desc}")
    if images.shape[0] == 0:
        raise InputError("images: expected at least one image, got N = 0")
    check_int(batch_size, "batch_size")


def _batched(model: Any, what: str, images: torch.Tensor, batch_size: int, runtime: Runtime, progress: bool,
             run: Any) -> np.ndarray:
    """``run`` (transformed batch -> (B, ...) tensor) over the images in batches, as float32 (N, D)."""
    name = getattr(model, "name", "model")
    n = images.shape[0]
    rows: list[np.ndarray] = []
    starts = range(0, n, batch_size)
    with torch.no_grad():
        for start in progress_bar(starts, desc=f"{name} · {what}", unit="batch", disable=not progress, leave=False):
            x = runtime.inputs(model.transform, images[start:start + batch_size])
            with runtime.autocast():
                r = run(x)
            if not r.is_floating_point():
                raise AttributionError(f"model {name!r}: the {what} is not a floating-point tensor "
                                       f"(got {r.dtype})")
            rows.append(r.detach().reshape(r.shape[0], -1).float().cpu().numpy())
            if rows[-1].shape[1] != rows[0].shape[1]:
                raise AttributionError(f"model {name!r}: the {what} has {rows[0].shape[1]} values per "
                                       f"image in the first batch but {rows[-1].shape[1]} at image {start}")
    out = np.concatenate(rows)
    bad = int((~np.isfinite(out).all(axis=1)).sum())
    if bad:
        raise AttributionError(f"model {name!r}: non-finite {what} for {bad} of {n} images")
    return out
