"""The transfer oracle: measured transfers between the group-1 task models.

Protocol (Taskonomy's first-order transfer, in miniature), `PROTOCOL` below: for every ordered
pair (source s, target t), freeze s's encoder, compute its representation R of t's *input* (a
noisy image when t is denoising, a grey one for colorization, ...) once, and train a small
convolutional readout (`Readout`: one architecture and one budget, `ReadoutRecipe`, for every
pair) from R to t's labels. Dense labels are read at 16×16 (area-averaged; class maps as class
fractions), image-level labels as classes or values. The score is the readout's held-out loss
normalised by the loss of an image-blind predictor (for regression the per-position label
variance of the test scenes, i.e. predicting each pixel's or component's test mean; for
classification the cross-entropy of the training class frequencies): 0 is perfect, 1 is no
better than ignoring the image. Each pair is trained with two seeds; their spread is the
readout's noise.

Only trained transfers go into the oracle; no attribution or representation similarity does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.sources import LoadedModel
from . import train

READOUT_SIZE = 16
PROTOCOL = (
    "For each (target task, source model): the source encoder frozen; its representation R of the target's input "
    "(noisy, grey or masked for the self-supervised targets) cached; a readout (two 3x3 convolutions of 32 "
    "channels with batch norm and ReLU, then a 1x1 convolution at 16x16 for dense targets or a 4x4 pool and a "
    "linear layer for image targets) trained with Adam and a cosine schedule on the same scenes and budget for "
    "every pair; held-out loss on test scenes normalised by an image-blind predictor's (per-position "
    "test-label variance; cross-entropy of the training class prior). Two readout seeds per pair; the transfer loss is their mean."
)


def readout_targets(task: str, data: dict[str, np.ndarray]) -> np.ndarray:
    """Labels of `task` as the rows the readout predicts.

    Dense labels are area-averaged to `READOUT_SIZE`² (class maps as class fractions); image classes
    become one-hot rows, image values stay as they are.

    Parameters
    ----------
    task : str
        A task name of `labels.TASKS`.
    data : dict of str to np.ndarray
        The rendered data set: task name -> its N labels.

    Returns
    -------
    np.ndarray
        (N, Q) float64.
    """
    kind, channels = train.task_kind(task)
    label = data[task]
    n = len(label)
    if kind == "dense_regression":
        maps = torch.from_numpy(np.array(label, dtype=np.float32).reshape(n, label.shape[1], label.shape[2], -1))
        maps = maps.permute(0, 3, 1, 2)
    elif kind == "dense_classification":
        maps = F.one_hot(torch.from_numpy(np.array(label)).long(), channels).permute(0, 3, 1, 2).float()
    elif kind == "image_classification":
        return np.eye(channels)[np.asarray(label)]
    else:
        return np.asarray(label, dtype=np.float64).reshape(n, -1)
    return F.adaptive_avg_pool2d(maps, READOUT_SIZE).reshape(n, -1).double().numpy()


def input_variant(task: str) -> str:
    """Which version of the image a task's model sees (tasks sharing one share the features).

    Parameters
    ----------
    task : str
        A task name.

    Returns
    -------
    str
        The task itself for ``"denoising"``, ``"colorization"`` and ``"inpainting"``, else ``"image"``.
    """
    return task if task in ("denoising", "colorization", "inpainting") else "image"


# --------------------------------------------------------------------------------------------
# The trained convolutional readout (Taskonomy's protocol)


@dataclass(frozen=True)
class ReadoutRecipe:
    """One readout architecture and one budget for every (source, target) pair.

    Attributes
    ----------
    width : int, default 32
        Channels of the readout's two 3×3 convolutions.
    epochs : int, default 8
        Epochs of Adam training on the cached features of `n_train` scenes.
    batch : int, default 32
        Scenes per step.
    lr : float, default 2e-3
        Adam's learning rate, at the start of a cosine schedule.
    n_train : int, default 4000
        Training scenes the readouts see (the first ones of the rendered training set).
    seeds : tuple of int, default (0, 1)
        One readout per seed (initialisation and batch order); their spread is the noise.
    """

    width: int = 32  # the rule of scripts/world/readout_width.py: 64 channels did no better
    epochs: int = 8  # 1 000 steps: the rule of scripts/world/readout_budget.py, fixed before its results
    batch: int = 32  # at batch 256 two seeds of one pair differed by up to 0.05
    lr: float = 2e-3
    n_train: int = 4000  # the rule of scripts/world/readout_scenes.py, fixed before its results
    seeds: tuple[int, ...] = (0, 1)


class Readout(nn.Module):
    """Frozen features (C, h, w) → a target.

    Two 3×3 convolutions, then a 1×1 convolution at `READOUT_SIZE`² for dense targets, or a 4×4
    average pool and a linear layer for image targets.

    Parameters
    ----------
    cin : int
        Channels C of the features.
    out : int
        Outputs per position (dense) or per image.
    dense : bool
        A dense target or an image-level one.
    width : int, default 32
        Channels of the two convolutions.
    """

    def __init__(self, cin: int, out: int, dense: bool, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )
        self.dense = dense
        self.out = nn.Conv2d(width, out, 1) if dense else nn.Linear(width * 16, out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Read the target from the features.

        Parameters
        ----------
        features : torch.Tensor
            (B, C, h, w) frozen features.

        Returns
        -------
        torch.Tensor
            (B, out, `READOUT_SIZE`, `READOUT_SIZE`) for a dense target, else (B, out).
        """
        h = self.body(features)
        if self.dense:
            h = F.interpolate(h, size=(READOUT_SIZE, READOUT_SIZE), mode="bilinear", align_corners=False)
            return self.out(h)
        return self.out(F.adaptive_avg_pool2d(h, 4).flatten(1))


@dataclass
class Target:
    """A target task's labels as the readout predicts them, and its normaliser.

    Attributes
    ----------
    kind : str
        The task's kind (``"dense_regression"``, ``"image_classification"``, ...).
    y_train : torch.Tensor
        The training labels: (N, Q) float for regression, (N,) class indices for image
        classification, (N, K, s, s) class fractions for dense classification.
    y_test : torch.Tensor
        The test labels, laid out alike.
    trivial : float
        The loss of an image-blind predictor (the per-position variance of the test labels; the
        cross-entropy of the training class prior), so that a normalised loss of 1 means "no better
        than ignoring the image".
    channels : int
        The readout's outputs per position (dense) or per image.
    dense : bool
        Whether the readout predicts a map.
    """

    kind: str
    y_train: torch.Tensor
    y_test: torch.Tensor
    trivial: float
    channels: int
    dense: bool


def make_target(task: str, train_data: dict, test_data: dict, n_train: int) -> Target:
    """A task's training and test labels as the readout predicts them, with their normaliser.

    Parameters
    ----------
    task : str
        A task name of `labels.TASKS`.
    train_data : dict
        The rendered training set: task name -> labels.
    test_data : dict
        The rendered test set, laid out alike.
    n_train : int
        The first this many training scenes are used.

    Returns
    -------
    Target
        The labels and the image-blind predictor's loss.
    """
    kind, channels = train.task_kind(task)
    index = np.arange(n_train)
    if kind == "image_classification":
        y_train = torch.from_numpy(np.asarray(train_data[task])[index]).long()
        y_test = torch.from_numpy(np.array(test_data[task])).long()
        prior = (torch.bincount(y_train, minlength=channels).double() + 1) / (len(y_train) + channels)
        trivial = float(-prior.log()[y_test].mean())
        return Target(kind, y_train, y_test, trivial, channels, dense=False)
    if kind == "dense_classification":
        y_train, y_test = (torch.from_numpy(readout_targets(task, d)).float() for d in (_take(train_data, task, index), test_data))
        y_train, y_test = (y.reshape(len(y), channels, READOUT_SIZE, READOUT_SIZE) for y in (y_train, y_test))
        prior = (y_train.mean((0, 2, 3)).double() + 1e-6)
        prior = prior / prior.sum()
        trivial = float(-(y_test.double() * prior.log()[None, :, None, None]).sum(1).mean())
        return Target(kind, y_train, y_test, trivial, channels, dense=True)
    y_train = torch.from_numpy(readout_targets(task, _take(train_data, task, index))).float()
    y_test = torch.from_numpy(readout_targets(task, test_data)).float()
    trivial = float(((y_test - y_test.mean(0)) ** 2).mean())
    dense = kind == "dense_regression"
    width = y_train.shape[1] // (READOUT_SIZE * READOUT_SIZE) if dense else y_train.shape[1]
    return Target(kind, y_train, y_test, trivial, width, dense)


def _take(data: dict, task: str, index: np.ndarray) -> dict:
    return {task: np.asarray(data[task])[index]}


def readout_loss(target: Target, features: tuple[torch.Tensor, torch.Tensor], recipe: ReadoutRecipe,
                 seed: int) -> float:
    """Held-out normalised loss of one readout trained on frozen features.

    The readout's output bias starts at the image-blind predictor, so the budget goes to using R.

    Parameters
    ----------
    target : Target
        The labels and normaliser (`make_target`).
    features : tuple of torch.Tensor
        (train, test) features, (N, C, h, w) each, as `standardise` returns them.
    recipe : ReadoutRecipe
        The readout's width and training budget.
    seed : int
        Seeds the initialisation and the batch order.

    Returns
    -------
    float
        The test loss over `target.trivial`: 0 is perfect, 1 no better than ignoring the image.
    """
    x_train, x_test = features
    torch.manual_seed(seed)
    model = Readout(x_train.shape[1], target.channels, target.dense, recipe.width)
    with torch.no_grad():  # start from the image-blind predictor, so the budget goes to using R
        model.out.bias.copy_(_blind_prediction(target))
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = recipe.epochs * max(1, len(x_train) // recipe.batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(recipe.epochs):
        permutation = torch.randperm(len(x_train), generator=order)
        for start in range(0, len(x_train) - recipe.batch + 1, recipe.batch):
            index = permutation[start:start + recipe.batch]
            loss = _readout_criterion(target, model(x_train[index]), target.y_train[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        total = sum(float(_readout_criterion(target, model(x_test[i:i + 512]), target.y_test[i:i + 512])) * len(x_test[i:i + 512])
                    for i in range(0, len(x_test), 512))
    return total / len(x_test) / max(target.trivial, 1e-12)


def _blind_prediction(target: Target) -> torch.Tensor:
    """Per output channel: the training labels' mean (regression) or log class frequency."""
    if target.kind == "image_classification":
        return (torch.bincount(target.y_train, minlength=target.channels).float() + 1).log()
    if target.kind == "dense_classification":
        return (target.y_train.mean((0, 2, 3)) + 1e-6).log()
    if target.dense:
        return target.y_train.reshape(len(target.y_train), target.channels, -1).mean((0, 2))
    return target.y_train.mean(0)


def _readout_criterion(target: Target, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if target.kind == "image_classification":
        return F.cross_entropy(output, y)
    if target.kind == "dense_classification":
        return -(y * F.log_softmax(output, dim=1)).sum(1).mean()
    return F.mse_loss(output.flatten(1), y)


@torch.no_grad()
def frozen_features(model: LoadedModel, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """The encoder output R of a model on images.

    Parameters
    ----------
    model : LoadedModel
        The source model; its encoder is tapped (`LoadedModel.tap`) and its transform applied.
    images : np.ndarray
        (N, H, W, 3) in [0, 1].
    batch : int, default 256
        Images per forward pass.

    Returns
    -------
    torch.Tensor
        float32 (N, C, h, w).
    """
    tap, x = model.tap(), train.to_tensor(images)
    return torch.cat([tap(model.transform(x[i:i + batch])).float() for i in range(0, len(x), batch)])


def standardise(train_features: torch.Tensor, test_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel z-scores with the training scenes' statistics, so every source starts on one scale.

    Parameters
    ----------
    train_features : torch.Tensor
        (N, C, h, w) features of the training scenes.
    test_features : torch.Tensor
        (M, C, h, w) features of the test scenes.

    Returns
    -------
    train, test : torch.Tensor
        Both sets, centred and scaled by the training set's per-channel mean and standard deviation.
    """
    mean = train_features.mean((0, 2, 3), keepdim=True)
    std = train_features.std((0, 2, 3), keepdim=True) + 1e-6
    return (train_features - mean) / std, (test_features - mean) / std


@dataclass
class TransferResult:
    """Normalised held-out losses of trained readouts.

    Attributes
    ----------
    targets : list of str
        The target tasks, in order of first appearance in the pairs.
    sources : list of str
        The source models, likewise.
    loss : dict
        ``loss[seed][target][source]``: the normalised held-out loss (`readout_loss`).
    trivial : dict of str to float
        Target -> the image-blind predictor's loss that normalises it.
    """

    targets: list[str]
    sources: list[str]
    loss: dict[int, dict[str, dict[str, float]]]
    trivial: dict[str, float]

    def mean(self) -> np.ndarray:
        """The losses averaged over the readout seeds.

        Returns
        -------
        np.ndarray
            (targets, sources) float64, NaN where not measured.
        """
        out = np.full((len(self.targets), len(self.sources)), np.nan)
        for i, t in enumerate(self.targets):
            for j, s in enumerate(self.sources):
                values = [by_seed[t][s] for by_seed in self.loss.values() if s in by_seed.get(t, {})]
                if values:
                    out[i, j] = float(np.mean(values))
        return out


def measure_transfers(models: dict[str, LoadedModel], tasks: dict[str, str], pairs: list[tuple[str, str]],
                      train_data: dict, test_data: dict, recipe: ReadoutRecipe = ReadoutRecipe(),
                      done: dict | None = None, on_target=None, progress: bool = True) -> TransferResult:
    """Train a readout for every (target task, source model) pair in `pairs`, for every seed.

    `models` maps source names to loaded models and `tasks` each source name to its task (the
    target of a pair is a task name). Features are computed once per source and input variant
    (the noisy, grey or masked image of a self-supervised target); one variant's features are
    held at a time. `done` (a `TransferResult.loss`-shaped dict) holds entries already measured,
    which are kept and not retrained; `on_target(result)` is called after each target, so that a
    caller can save progress and resume.

    Parameters
    ----------
    models : dict of str to LoadedModel
        Source name -> its loaded model.
    tasks : dict of str to str
        Source name -> its task.
    pairs : list of tuple of str
        (target task, source name) pairs to measure.
    train_data : dict
        The rendered training set: ``"rgb"`` and task name -> labels.
    test_data : dict
        The rendered test set, laid out alike.
    recipe : ReadoutRecipe, default ReadoutRecipe()
        The readout's width, training budget, scenes and seeds.
    done : dict, optional
        Losses already measured, shaped as `TransferResult.loss` (seeds as ints or strings).
    on_target : callable, optional
        Called with the `TransferResult` so far after each target.
    progress : bool, default True
        Print each target's three best sources and its time.

    Returns
    -------
    TransferResult
        Every pair's losses for every seed, with the targets' normalisers.
    """
    loss = {seed: {} for seed in recipe.seeds}
    for seed, by_target in (done or {}).items():
        for t, row in by_target.items():
            loss.setdefault(int(seed), {})[t] = dict(row)
    targets = list(dict.fromkeys(t for t, _ in pairs))
    sources = list(dict.fromkeys(s for _, s in pairs))
    result = TransferResult(targets, sources, loss, {})
    n = recipe.n_train
    for variant in dict.fromkeys(input_variant(t) for t in targets):
        variant_targets = [t for t in targets if input_variant(t) == variant]
        inputs = (train.task_input(variant_targets[0], train_data["rgb"][:n], 0),
                  train.task_input(variant_targets[0], test_data["rgb"], 1))
        features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for t in variant_targets:
            target = make_target(t, train_data, test_data, n)
            result.trivial[t] = target.trivial
            start = time.time()
            for s in [s for tt, s in pairs if tt == t]:
                todo = [seed for seed in recipe.seeds if s not in loss[seed].get(t, {})]
                if not todo:
                    continue
                if s not in features:
                    features[s] = standardise(*(frozen_features(models[s], x) for x in inputs))
                for seed in todo:
                    loss[seed].setdefault(t, {})[s] = readout_loss(target, features[s], recipe, seed)
            if progress:
                row = {s: np.mean([loss[seed][t][s] for seed in recipe.seeds]) for s in loss[recipe.seeds[0]].get(t, {})}
                best = sorted(row, key=row.get)[:3]
                print(f"  transfers to {t:18s} best {', '.join(f'{s} {row[s]:.3f}' for s in best)} "
                      f"({time.time() - start:.0f} s)", flush=True)
            if on_target is not None:
                on_target(result)
        del features
    return result
