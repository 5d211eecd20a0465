"""Training the zoo's task models on rendered scenes.

A task is what the renderer labels (`render.TASKS`): its kind decides the output layer and the
loss, and the self-supervised tasks also change the input (denoising sees a noisy image,
colorization a grey one, inpainting one with its centre masked). Every model is trained with
the same recipe (batch, Adam learning rate, stopping rule) and seed discipline, so differences
between models come from their task, architecture, domain or seed, not from the recipe.

With `Recipe.eval_every` set, training runs until the held-out loss has stopped improving: the
loss on validation scenes is recorded every `eval_every` steps, the learning rate halves after
`patience` evaluations without a 1 % gain, and training stops once the best loss improved by
less than `plateau` (relative) over the last fifth of the steps taken and the learning rate has
been halved `halvings` times, or at `steps`. The model
returned is the one with the best validation loss; the whole curve goes into the record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.transforms import InputTransform
from . import labels
from .nets import build

WORLD_NORMALISATION = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


@dataclass(frozen=True)
class Recipe:
    """How a task model is trained (all plain data, recorded beside the weights).

    Attributes
    ----------
    steps : int, default 400
        The most optimiser steps (the whole budget when `eval_every` is 0).
    batch : int, default 32
        Scenes per step.
    lr : float, default 2e-3
        Adam's learning rate at the start.
    seed : int, default 0
        Seed of the batch order and the input noise.
    eval_every : int, default 0
        Steps between held-out evaluations; 0 trains for exactly `steps`.
    min_steps : int, default 0
        No stop before this many steps.
    plateau : float, default 0.02
        Stop when the best held-out loss improved by less than this fraction over the last
        fifth of the steps taken...
    halvings : int, default 0
        ...and the learning rate has been halved at least this often (a noisy curve can
        look flat at a learning rate that is still too high to settle).
    patience : int, default 3
        Held-out evaluations without a 1 % gain before the learning rate halves.
    precision : str, default "float32"
        ``"float32"``, or ``"bfloat16"`` for autocast (weights and optimiser stay float32).
    channels_last : bool, default False
        Train in the channels-last memory format (faster convolutions on CPUs).
    mirror : bool, default False
        Flip a random half of each batch left-right; only for image classification, whose
        labels (which object, how many) a mirror leaves unchanged.
    """

    steps: int = 400
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    eval_every: int = 0
    min_steps: int = 0
    plateau: float = 0.02
    halvings: int = 0
    patience: int = 3
    precision: str = "float32"
    channels_last: bool = False
    mirror: bool = False


def task_kind(task: str) -> tuple[str, int]:
    """The kind and output channels of a renderer task.

    Parameters
    ----------
    task : str
        A key of `labels.TASKS`.

    Returns
    -------
    kind : str
        ``"dense_regression"``, ``"dense_classification"``, ``"image_classification"`` or
        ``"image_regression"``.
    channels : int
        Output channels (classes, for classification).
    """
    kind, channels, _ = labels.TASKS[task]
    return kind, channels


def task_input(task: str, images: np.ndarray, seed: int) -> np.ndarray:
    """The input the task's model sees for clean images: noisy, grey, masked or as is.

    Parameters
    ----------
    task : str
        A key of `labels.TASKS`.
    images : np.ndarray
        (N, H, W, 3) clean images in [0, 1].
    seed : int
        Seeds the denoising noise.

    Returns
    -------
    np.ndarray
        (N, H, W, 3), as `labels.task_input` makes it.
    """
    return labels.task_input(task, images, np.random.default_rng(seed))


def task_target(task: str, data: dict[str, np.ndarray], index: np.ndarray) -> torch.Tensor:
    """Training targets of a batch.

    Parameters
    ----------
    task : str
        A key of `labels.TASKS`.
    data : dict of str to np.ndarray
        A rendered data set (`render.render_batch`).
    index : np.ndarray
        The batch's scene indices, (N,).

    Returns
    -------
    torch.Tensor
        Float maps (N, C, H, W) for dense regression, int64 class maps (N, H, W) or classes (N,) for
        classification, float values (N, C) for image regression.
    """
    label = data[task][index]
    kind, _ = task_kind(task)
    if kind == "dense_regression":
        label = label[..., None] if label.ndim == 3 else label
        return torch.from_numpy(np.ascontiguousarray(label.transpose(0, 3, 1, 2))).float()
    if kind in ("dense_classification", "image_classification"):
        return torch.from_numpy(np.asarray(label)).long()
    return torch.from_numpy(np.asarray(label, dtype=np.float32).reshape(len(index), -1))


def loss_fn(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A task's training loss: cross-entropy for classification, mean squared error otherwise.

    For inpainting the centre of a full-size output is compared with the centre-patch target.

    Parameters
    ----------
    task : str
        A key of `labels.TASKS`.
    output : torch.Tensor
        The model's output for a batch.
    target : torch.Tensor
        The batch's targets (`task_target`).

    Returns
    -------
    torch.Tensor
        The mean loss, a scalar.
    """
    kind, _ = task_kind(task)
    if kind in ("dense_classification", "image_classification"):
        return F.cross_entropy(output, target)
    if output.ndim == 4 and output.shape[-2:] != target.shape[-2:]:
        # Inpainting: the target is the centre patch of a full-size output.
        h, w = target.shape[-2:]
        top, left = (output.shape[-2] - h) // 2, (output.shape[-1] - w) // 2
        output = output[..., top : top + h, left : left + w]
    return F.mse_loss(output, target)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Channel-last images as a channel-first float tensor.

    Parameters
    ----------
    images : np.ndarray
        (N, H, W, C).

    Returns
    -------
    torch.Tensor
        (N, C, H, W) float32.
    """
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()


def make_model(arch: str, task: str, **kwargs) -> nn.Module:
    """A fresh network of an architecture, with the output layer the task needs.

    Parameters
    ----------
    arch : str
        A key of `nets.ARCHITECTURES`.
    task : str
        A key of `labels.TASKS`: it sets ``out_channels`` and ``dense``.
    **kwargs
        The architecture's other keyword arguments (``width``, ``predict_size``, ...).

    Returns
    -------
    nn.Module
        The network.

    Raises
    ------
    ValueError
        An unknown architecture.
    """
    kind, channels = task_kind(task)
    return build(arch, out_channels=channels, dense=kind.startswith("dense"), **kwargs)


def train_model(
    model: nn.Module,
    task: str,
    data: dict[str, np.ndarray],
    input_size: int,
    recipe: Recipe = Recipe(),
    device: str = "cpu",
    log: bool = True,
    validation: dict[str, np.ndarray] | None = None,
) -> dict:
    """Train in place on `data` (a `render.render_batch` dict); returns the training record.

    With `recipe.eval_every` > 0, `validation` (scenes of another seed) gives the held-out
    curve that drives the learning rate, the stopping rule and the choice of the returned weights.

    Parameters
    ----------
    model : nn.Module
        The network; trained in place, and left in eval mode with the best validation weights.
    task : str
        A key of `labels.TASKS`.
    data : dict of str to np.ndarray
        The training scenes (`render.render_batch`).
    input_size : int
        The side the images are resized to before the network.
    recipe : Recipe, default Recipe()
        The training recipe.
    device : str, default "cpu"
        Where to train.
    log : bool, default True
        Print the losses as training goes.
    validation : dict of str to np.ndarray, optional
        Held-out scenes; needed when `recipe.eval_every` > 0.

    Returns
    -------
    dict
        ``"train_loss_last100"``, ``"seconds"`` and ``"steps"``; with `recipe.eval_every` also
        ``"curve"`` ([step, held-out loss] pairs), ``"converged"``, ``"last_fifth_gain"`` and ``"final_lr"``.

    Raises
    ------
    ValueError
        A recipe with `eval_every` but no validation scenes, or `mirror` for a task that is not
        image classification.
    """
    if recipe.eval_every and validation is None:
        raise ValueError("validation: a recipe with eval_every > 0 needs validation scenes")
    if recipe.mirror and task_kind(task)[0] != "image_classification":
        raise ValueError(f"recipe.mirror: {task!r} is not an image classification task, a mirror may change its label")
    transform = InputTransform((input_size, input_size), **WORLD_NORMALISATION)
    inputs = to_tensor(task_input(task, data["rgb"], recipe.seed))
    rng = np.random.default_rng(recipe.seed)
    torch.manual_seed(recipe.seed)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=recipe.precision == "bfloat16")
    start, losses, curve = time.time(), [], []
    best_state, lr, stale, halvings, converged = None, recipe.lr, 0, 0, False
    for step in range(1, recipe.steps + 1):
        index = rng.integers(0, len(inputs), recipe.batch)
        x = transform(inputs[index].to(device))
        if recipe.mirror:
            flip = torch.from_numpy(rng.random(recipe.batch) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = x.contiguous(memory_format=memory_format)
        with autocast:
            output = model(x)
        loss = loss_fn(task, output.float(), task_target(task, data, index).to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if recipe.eval_every and step % recipe.eval_every == 0:
            held_out = held_out_loss(model, task, validation, input_size, device=device)
            model.train()
            best = min((c[1] for c in curve), default=np.inf)
            curve.append((step, held_out))
            if held_out < best:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            stale = stale + 1 if held_out > best * 0.99 else 0
            if stale >= recipe.patience:
                lr, stale, halvings = lr / 2, 0, halvings + 1
                for group in optimiser.param_groups:
                    group["lr"] = lr
            change = plateau_change(curve)
            if log:
                print(f"    step {step}/{recipe.steps}  train {np.mean(losses[-recipe.eval_every:]):.4f}  "
                      f"held-out {held_out:.4f}  lr {lr:.2g}  last-fifth gain {change:.3f}", flush=True)
            if step >= recipe.min_steps and change < recipe.plateau and halvings >= recipe.halvings:
                converged = True
                break
        elif log and not recipe.eval_every and step % 100 == 0:
            print(f"    step {step}/{recipe.steps}  loss {np.mean(losses[-100:]):.4f}", flush=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    record = {"train_loss_last100": float(np.mean(losses[-100:])), "seconds": round(time.time() - start, 1),
              "steps": step}
    if recipe.eval_every:
        record.update(curve=[[s, float(f"{v:.6g}")] for s, v in curve], converged=converged,
                      last_fifth_gain=plateau_change(curve), final_lr=lr)
    return record


def plateau_change(curve: list[tuple[int, float]]) -> float:
    """Relative gain of the best held-out loss over the last fifth of the steps in `curve`.

    Parameters
    ----------
    curve : list of tuple of (int, float)
        (step, held-out loss) pairs, in step order.

    Returns
    -------
    float
        (best up to 4/5 of the last step − best overall) / best up to 4/5; 1.0 while the curve is
        too short to have a last fifth, 0.0 when that best is not positive.
    """
    if not curve:
        return 1.0
    last = curve[-1][0]
    earlier = [v for s, v in curve if s <= 0.8 * last]
    if not earlier:
        return 1.0
    before, now = min(earlier), min(v for _, v in curve)
    return float((before - now) / before) if before > 0 else 0.0


@torch.no_grad()
def held_out_loss(model: nn.Module, task: str, data: dict[str, np.ndarray], input_size: int, seed: int = 1,
                  device: str = "cpu", batch: int = 128) -> float:
    """Mean loss of a trained model on held-out scenes (its own task).

    Parameters
    ----------
    model : nn.Module
        The trained network (put in eval mode).
    task : str
        Its task.
    data : dict of str to np.ndarray
        The held-out scenes.
    input_size : int
        The side the images are resized to.
    seed : int, default 1
        Seeds the denoising noise.
    device : str, default "cpu"
        Where to run.
    batch : int, default 128
        Scenes per forward pass.

    Returns
    -------
    float
        The mean loss over the scenes.
    """
    return held_out_metrics(model, task, data, input_size, seed, device, batch)["loss"]


@torch.no_grad()
def held_out_metrics(model: nn.Module, task: str, data: dict[str, np.ndarray], input_size: int, seed: int = 1,
                     device: str = "cpu", batch: int = 128) -> dict[str, float]:
    """Loss of a trained model on held-out scenes (its own task), and its accuracy for classification.

    Parameters
    ----------
    model : nn.Module
        The trained network (put in eval mode).
    task : str
        Its task.
    data : dict of str to np.ndarray
        The held-out scenes.
    input_size : int
        The side the images are resized to.
    seed : int, default 1
        Seeds the denoising noise.
    device : str, default "cpu"
        Where to run.
    batch : int, default 128
        Scenes per forward pass.

    Returns
    -------
    dict of str to float
        ``"loss"``, and for a classification task ``"accuracy"`` (pixel accuracy for a dense one).
    """
    transform = InputTransform((input_size, input_size), **WORLD_NORMALISATION)
    inputs = to_tensor(task_input(task, data["rgb"], seed))
    classification = "classification" in task_kind(task)[0]
    model.eval()
    total, correct = 0.0, 0.0
    for start in range(0, len(inputs), batch):
        index = np.arange(start, min(start + batch, len(inputs)))
        out = model(transform(inputs[index].to(device)))
        target = task_target(task, data, index).to(device)
        total += float(loss_fn(task, out, target)) * len(index)
        if classification:
            correct += float((out.argmax(1) == target).float().mean()) * len(index)
    metrics = {"loss": total / len(inputs)}
    if classification:
        metrics["accuracy"] = correct / len(inputs)
    return metrics


def trivial_metrics(task: str, train_data: dict[str, np.ndarray], test_data: dict[str, np.ndarray]) -> dict[str, float]:
    """What a predictor that ignores the image reaches on the test scenes, fitted on the training scenes.

    Regression: the label variance (the loss of the best constant) and the loss of the per-pixel
    (or per-component) training mean. Classification: the majority class's accuracy and the
    cross-entropy of the training class frequencies.

    Parameters
    ----------
    task : str
        A key of `labels.TASKS`.
    train_data : dict of str to np.ndarray
        The training scenes.
    test_data : dict of str to np.ndarray
        The test scenes.

    Returns
    -------
    dict of str to float
        ``"variance"`` and ``"mean_predictor_loss"`` for regression; ``"majority_accuracy"`` and
        ``"prior_cross_entropy"`` for classification.
    """
    kind, channels = task_kind(task)
    test_index, train_index = np.arange(len(test_data["rgb"])), np.arange(len(train_data["rgb"]))
    if "classification" in kind:
        train_y = np.asarray(train_data[task]).ravel()
        test_y = np.asarray(test_data[task]).ravel()
        frequency = (np.bincount(train_y, minlength=channels) + 1.0) / (train_y.size + channels)
        majority = int(np.argmax(frequency))
        return {"majority_accuracy": float((test_y == majority).mean()),
                "prior_cross_entropy": float(-np.log(frequency[test_y]).mean())}
    test_y = task_target(task, test_data, test_index)
    mean = task_target(task, train_data, train_index).mean(0, keepdim=True)
    return {"variance": float(test_y.var(unbiased=False)), "mean_predictor_loss": float(F.mse_loss(mean.expand_as(test_y), test_y))}
