"""Training the zoo's task models on rendered scenes.

A task is what the renderer labels (`render.TASKS`): its kind decides the output layer and the
loss, and the self-supervised tasks also change the input (denoising sees a noisy image,
colorization a grey one, inpainting one with its centre masked). Every model is trained with
the same budget (steps, batch, Adam learning rate) and seed discipline, so differences
between models come from their task, architecture or domain, not from the recipe.
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
    steps: int = 400
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0


def task_kind(task: str) -> tuple[str, int]:
    """(kind, output channels) of a renderer task (channels = classes for classification)."""
    kind, channels, _ = labels.TASKS[task]
    return kind, channels


def task_input(task: str, images: np.ndarray, seed: int) -> np.ndarray:
    """The input the task's model sees for clean images (N, H, W, 3): noisy, grey, masked or as is."""
    return labels.task_input(task, images, np.random.default_rng(seed))


def task_target(task: str, data: dict[str, np.ndarray], index: np.ndarray) -> torch.Tensor:
    """Training targets of a batch: float maps (N, C, H, W), class maps (N, H, W), classes or values."""
    label = data[task][index]
    kind, _ = task_kind(task)
    if kind == "dense_regression":
        label = label[..., None] if label.ndim == 3 else label
        return torch.from_numpy(np.ascontiguousarray(label.transpose(0, 3, 1, 2))).float()
    if kind in ("dense_classification", "image_classification"):
        return torch.from_numpy(np.asarray(label)).long()
    return torch.from_numpy(np.asarray(label, dtype=np.float32).reshape(len(index), -1))


def loss_fn(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()


def make_model(arch: str, task: str, **kwargs) -> nn.Module:
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
) -> dict:
    """Train in place on `data` (a `render.render_batch` dict); returns the training record."""
    transform = InputTransform((input_size, input_size), **WORLD_NORMALISATION)
    inputs = to_tensor(task_input(task, data["rgb"], recipe.seed))
    rng = np.random.default_rng(recipe.seed)
    torch.manual_seed(recipe.seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    start, losses = time.time(), []
    for step in range(recipe.steps):
        index = rng.integers(0, len(inputs), recipe.batch)
        x = transform(inputs[index].to(device))
        loss = loss_fn(task, model(x), task_target(task, data, index).to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if log and (step + 1) % 100 == 0:
            print(f"    step {step + 1}/{recipe.steps}  loss {np.mean(losses[-100:]):.4f}", flush=True)
    model.eval()
    return {"train_loss_last100": float(np.mean(losses[-100:])), "seconds": round(time.time() - start, 1)}


@torch.no_grad()
def held_out_loss(model: nn.Module, task: str, data: dict[str, np.ndarray], input_size: int, seed: int = 1,
                  device: str = "cpu", batch: int = 128) -> float:
    """Mean loss of a trained model on held-out scenes (its own task)."""
    transform = InputTransform((input_size, input_size), **WORLD_NORMALISATION)
    inputs = to_tensor(task_input(task, data["rgb"], seed))
    model.eval()
    total = 0.0
    for start in range(0, len(inputs), batch):
        index = np.arange(start, min(start + batch, len(inputs)))
        out = model(transform(inputs[index].to(device)))
        total += float(loss_fn(task, out, task_target(task, data, index).to(device))) * len(index)
    return total / len(inputs)
