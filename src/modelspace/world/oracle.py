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

`measure_oracle` is the closed-form ridge readout of the first built-in zoo, whose shipped
losses it reproduces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..maps import encoder_activations
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
LAMBDAS = tuple(10.0 ** p for p in range(-2, 5))


def readout_targets(task: str, data: dict[str, np.ndarray]) -> np.ndarray:
    """Labels of `task` as the rows the readout predicts: (N, Q) float64."""
    kind, channels = train.task_kind(task)
    label = data[task]
    n = len(label)
    if kind == "dense_regression":
        maps = torch.from_numpy(np.array(label, dtype=np.float32).reshape(n, label.shape[1], label.shape[2], -1))
        maps = maps.permute(0, 3, 1, 2)
    elif kind == "dense_classification":
        maps = F.one_hot(torch.from_numpy(np.asarray(label)).long(), channels).permute(0, 3, 1, 2).float()
    elif kind == "image_classification":
        return np.eye(channels)[np.asarray(label)]
    else:
        return np.asarray(label, dtype=np.float64).reshape(n, -1)
    return F.adaptive_avg_pool2d(maps, READOUT_SIZE).reshape(n, -1).double().numpy()


def ridge_loss(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
               val_fraction: float = 0.2) -> tuple[float, float]:
    """Held-out normalised MSE of a ridge readout; the ridge strength is chosen on a validation split.

    Returns (loss, chosen lambda)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_mean = y_train.mean(0)
    y_centred, z_test = y_train - y_mean, y_test - y_mean
    variance = ((y_test - y_test.mean(0)) ** 2).mean()
    outside = 0.0
    if y_train.shape[1] > y_train.shape[0]:
        # Predictions are combinations of the training labels' rows, so the loss can be computed in
        # their row space (≤ n columns) plus a source-independent remainder: exact, and far cheaper
        # for dense class maps (e.g. 48 classes × 16 × 16 = 12288 columns).
        basis = np.linalg.svd(y_centred, full_matrices=False)[2]
        projected = z_test @ basis.T
        outside = float((z_test**2).sum() - (projected**2).sum())
        y_centred, z_test = y_centred @ basis.T, projected
    n_val = max(1, int(len(x_train) * val_fraction))
    fit_x, fit_y, val_x, val_y = x_train[n_val:], y_centred[n_val:], x_train[:n_val], y_centred[:n_val]
    best = min(LAMBDAS, key=lambda lam: _mse(_ridge(fit_x, fit_y, lam) @ val_x.T, val_y))
    residual = (_ridge(x_train, y_centred, best) @ x_test.T).T - z_test
    squared_error = float((residual**2).sum()) + outside
    return float(squared_error / y_test.size / max(variance, 1e-12)), best


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """(Q, D) weights of min ||xW - y||² + lam·||W||², in the cheaper of the primal or dual form."""
    n, d = x.shape
    if d <= n:
        return np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ y).T
    return (x.T @ np.linalg.solve(x @ x.T + lam * np.eye(n), y)).T


def _mse(prediction_t: np.ndarray, y: np.ndarray) -> float:
    return float(((prediction_t.T - y) ** 2).mean())


@dataclass
class OracleResult:
    tasks: list[str]
    loss: np.ndarray  # (targets, sources), mean of the two halves; diagonal = the target's own encoder
    loss_by_seed: list[np.ndarray]
    pixel_loss: dict[str, float]  # the same readout on raw pixels: a no-encoder reference
    top5_agreement: float  # mean over targets of |top5(seed 0) ∩ top5(seed 1)| / 5

    def ranking(self, loss: np.ndarray | None = None) -> dict[str, list[str]]:
        """Per target, the other tasks as sources, lowest loss first."""
        loss = self.loss if loss is None else loss
        return {t: [self.tasks[j] for j in np.argsort(loss[i], kind="stable") if j != i] for i, t in enumerate(self.tasks)}


def measure_oracle(models: dict[str, LoadedModel], train_data: dict, test_data: dict, progress: bool = True,
                   targets: list[str] | None = None, sources: list[str] | None = None) -> OracleResult:
    """Transfer losses for every ordered pair of the group-1 models (keyed by their task).

    `targets` and `sources` limit the entries measured (the others stay zero): a miniature of the
    full run that reproduces those entries exactly."""
    tasks = list(models)
    n = len(train_data["rgb"])
    halves = np.array_split(np.random.default_rng(0).permutation(n), 2)
    features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    loss_by_seed = [np.zeros((len(tasks), len(tasks))) for _ in halves]
    pixel_loss = {}
    for ti, target in enumerate(tasks):
        if targets is not None and target not in targets:
            continue
        variant = input_variant(target)
        inputs = (train.task_input(target, train_data["rgb"], 0), train.task_input(target, test_data["rgb"], 1))
        y_train, y_test = readout_targets(target, train_data), readout_targets(target, test_data)
        pixels = [_pixels(x) for x in inputs]
        pixel_loss[target] = float(np.mean([ridge_loss(pixels[0][h], y_train[h], pixels[1], y_test)[0] for h in halves]))
        for si, source in enumerate(tasks):
            if sources is not None and source not in sources:
                continue
            if (source, variant) not in features:
                features[(source, variant)] = tuple(
                    encoder_activations(models[source], train.to_tensor(x), progress=False).astype(np.float64) for x in inputs
                )
            x_train, x_test = features[(source, variant)]
            for seed, half in enumerate(halves):
                loss_by_seed[seed][ti, si] = ridge_loss(x_train[half], y_train[half], x_test, y_test)[0]
        if progress:
            best = [tasks[j] for j in np.argsort(loss_by_seed[0][ti] + loss_by_seed[1][ti]) if j != ti][:3]
            print(f"  oracle: {target:18s} best sources {', '.join(best)}", flush=True)
    result = OracleResult(tasks, (loss_by_seed[0] + loss_by_seed[1]) / 2, loss_by_seed, pixel_loss, 0.0)
    first, second = (result.ranking(loss) for loss in loss_by_seed)
    measured = tasks if targets is None else targets
    result.top5_agreement = float(np.mean([len(set(first[t][:5]) & set(second[t][:5])) / 5 for t in measured]))
    return result


def input_variant(task: str) -> str:
    """Which version of the image a task's model sees (tasks sharing one share the features)."""
    return task if task in ("denoising", "colorization", "inpainting") else "image"


def _pixels(images: np.ndarray) -> np.ndarray:
    """Raw pixels at 16×16 as readout features (the 'no encoder' reference)."""
    x = train.to_tensor(images)
    return F.adaptive_avg_pool2d(x, READOUT_SIZE).reshape(len(x), -1).double().numpy()



# --------------------------------------------------------------------------------------------
# The trained convolutional readout (Taskonomy's protocol)


@dataclass(frozen=True)
class ReadoutRecipe:
    """One readout architecture and one budget for every (source, target) pair.

    Attributes
    ----------
    width : channels of the readout's two 3×3 convolutions.
    epochs, batch, lr : Adam training on the cached features of `n_train` scenes.
    n_train : training scenes the readouts see (the first ones of the rendered training set).
    seeds : one readout per seed (initialisation and batch order); their spread is the noise.
    """

    width: int = 32
    epochs: int = 8
    batch: int = 32  # 500 steps; with 56 (batch 256) two seeds of one pair differ by up to 0.05
    lr: float = 2e-3
    n_train: int = 2000
    seeds: tuple[int, ...] = (0, 1)


class Readout(nn.Module):
    """Frozen features (C, h, w) → a target: two 3×3 convolutions, then a 1×1 convolution at
    READOUT_SIZE² for dense targets, or a 4×4 average pool and a linear layer for image targets."""

    def __init__(self, cin: int, out: int, dense: bool, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )
        self.dense = dense
        self.out = nn.Conv2d(width, out, 1) if dense else nn.Linear(width * 16, out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.body(features)
        if self.dense:
            h = F.interpolate(h, size=(READOUT_SIZE, READOUT_SIZE), mode="bilinear", align_corners=False)
            return self.out(h)
        return self.out(F.adaptive_avg_pool2d(h, 4).flatten(1))


@dataclass
class Target:
    """A target task's labels as the readout predicts them, and its normaliser.

    `y` is (N, Q) float for regression, (N,) class indices for image classification, (N, K, s, s)
    class fractions for dense classification. `trivial` is the loss of an image-blind predictor
    (the per-position variance of the test labels; the cross-entropy of the training class prior),
    so that a normalised loss of 1 means "no better than ignoring the image"."""

    kind: str
    y_train: torch.Tensor
    y_test: torch.Tensor
    trivial: float
    channels: int
    dense: bool


def make_target(task: str, train_data: dict, test_data: dict, n_train: int) -> Target:
    kind, channels = train.task_kind(task)
    index = np.arange(n_train)
    if kind == "image_classification":
        y_train = torch.from_numpy(np.asarray(train_data[task])[index]).long()
        y_test = torch.from_numpy(np.asarray(test_data[task])).long()
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
    """Held-out normalised loss of one readout trained on frozen `features` (train, test)."""
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
    """The encoder output R of `model` on `images` (N, H, W, 3) in [0, 1]: float32 (N, C, h, w)."""
    tap, x = model.tap(), train.to_tensor(images)
    return torch.cat([tap(model.transform(x[i:i + batch])).float() for i in range(0, len(x), batch)])


def standardise(train_features: torch.Tensor, test_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel z-scores with the training scenes' statistics, so every source starts on one scale."""
    mean = train_features.mean((0, 2, 3), keepdim=True)
    std = train_features.std((0, 2, 3), keepdim=True) + 1e-6
    return (train_features - mean) / std, (test_features - mean) / std


@dataclass
class TransferResult:
    """Normalised held-out losses of trained readouts: `loss[seed][target][source]`."""

    targets: list[str]
    sources: list[str]
    loss: dict[int, dict[str, dict[str, float]]]
    trivial: dict[str, float]

    def mean(self) -> np.ndarray:
        """(targets, sources) losses averaged over the readout seeds (NaN where not measured)."""
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
