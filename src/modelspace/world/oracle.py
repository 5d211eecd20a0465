"""The transfer oracle: measured transfers between the group-1 task models.

Protocol (Taskonomy's first-order transfer, in miniature): for every ordered pair (source s,
target t), freeze s's encoder, read its representation R of t's *input* (a noisy image when t
is denoising, a grey one for colorization, ...), fit a readout of t's labels, and measure the
readout's loss on held-out scenes. The readout is ridge regression, solved in closed form
(ridge strength picked on a validation split, from the same grid for every pair), on the
flattened R; dense labels are read at 16×16 (area-averaged; class maps as class fractions),
image-level labels as one-hot classes or values. The loss is the normalised mean squared error
(mean squared error divided by the held-out labels' variance), so that losses of different
targets share a scale: 0 is perfect, 1 is no better than predicting the mean.

Only trained transfers go into the oracle; no attribution or representation similarity does.
Repeatability: the readouts are fitted twice, on two disjoint halves of the training scenes
(seeds 0 and 1); the agreement of the two top-5 source lists bounds what any estimator can
reach. The final transfer matrix averages the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..maps import encoder_activations
from ..models.sources import LoadedModel
from . import train

READOUT_SIZE = 16
LAMBDAS = tuple(10.0 ** p for p in range(-2, 5))


def readout_targets(task: str, data: dict[str, np.ndarray]) -> np.ndarray:
    """Labels of `task` as the rows the readout predicts: (N, Q) float64."""
    kind, channels = train.task_kind(task)
    label = data[task]
    n = len(label)
    if kind == "dense_regression":
        maps = torch.from_numpy(np.asarray(label, dtype=np.float32).reshape(n, label.shape[1], label.shape[2], -1))
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

