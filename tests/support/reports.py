"""Reports to test: a real 5-model run over the toy models, and a synthetic 200-model space."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelspace.evaluation import GroundTruth
from modelspace.models.spec import ModelSpec
from modelspace.probe import ProbeSet
from modelspace.report import ReportData, evaluate_views, truth_affinity
from modelspace.report import figures as figs
from modelspace.results import MethodResult
from modelspace.space import ModelSpace
from modelspace.maps import Runtime

TASKS = ["alpha", "beta", "gamma", "delta", "epsilon"]

# A ground truth over the five toy tasks (rank1 best).
TRUTH = GroundTruth({
    "alpha": ["beta", "gamma", "delta", "epsilon"],
    "beta": ["alpha", "delta", "gamma", "epsilon"],
    "gamma": ["epsilon", "alpha", "beta", "delta"],
    "delta": ["alpha", "beta", "epsilon", "gamma"],
    "epsilon": ["gamma", "delta", "alpha", "beta"],
}, origin="toy truth")


def toy_specs() -> list[ModelSpec]:
    """Five small models of three architectures and several input sizes (tests/toy_models.py)."""
    rows = [("cnn_small", "tiny_cnn", {}, 32), ("cnn_wide", "tiny_cnn", {"width": 12}, 40),
            ("resnet", "tiny_resnet", {}, 32), ("resnet_wide", "tiny_resnet", {"width": 12}, 48),
            ("cnn_tiny", "tiny_cnn", {"width": 4}, 24)]
    return [ModelSpec(name=name, task=task, source=f"python:toy_models:{fn}", kwargs=kwargs, input_size=size,
                      encoder="layer2" if "resnet" in fn else None)
            for (name, fn, kwargs, size), task in zip(rows, TASKS)]


def toy_probe(n: int = 8, size: int = 32) -> ProbeSet:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 6, 3)
        images.append(np.stack([np.sin(a * xx + b * yy + c * k) for k in range(3)]) * 0.4 + 0.5)
    return ProbeSet.from_array(np.stack(images).astype(np.float32))


def toy_space(store: Path) -> ModelSpace:
    """A fitted, evaluated space of the five toy models (a few seconds on a CPU)."""
    space = ModelSpace(methods=["saliency", "gradient_x_input"], baselines=["linear_cka"], store=store,
                       runtime=Runtime(batch_size=8), progress=False)
    space.fit(toy_specs(), toy_probe())
    space.evaluate(TRUTH, n_relevant=2)
    return space


def clustered_affinity(n: int, k: int, seed: int = 0) -> np.ndarray:
    """A symmetric affinity with k clusters: cosines of noisy copies of k random directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 16))
    x = centres[np.arange(n) % k] + 0.7 * rng.normal(size=(n, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


DEMO_METHODS = ["saliency", "gradient_x_input", "lrp_epsilon(epsilon=1e-06)"]
DEMO_BASELINES = ["svcca(variance=0.99)", "linear_cka", "rbf_cka(sigma=0.8)", "rsa(metric='correlation')"]


def synthetic_grid(names: list[str], seed: int, n_images: int = 6, size: int = 64, n_models: int = 8) -> bytes:
    """An attribution grid of smooth random unit-norm maps (what the demo's grids look like, in bytes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = rng.uniform(0.2, 0.8, size=(n_images, 3, 1, 1)) * np.ones((1, 1, size, size))
    maps = {}
    for name in names[:n_models]:
        cx, cy = rng.uniform(0.2, 0.8, size=(2, n_images, 1, 1, 1))
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02) + 0.3 * rng.random((n_images, 3, size, size))
        maps[name] = blob / np.linalg.norm(blob.reshape(n_images, -1), axis=1)[:, None, None, None]
    return figs.grid_png(images.astype(np.float32), maps, n_images)


def large_report(n: int = 200, with_truth: bool = True, demo_like: bool = False) -> ReportData:
    """A synthetic n-model space (no maps computed), with a ground truth derived from it plus noise.

    With `demo_like`, the estimators and attribution grids of `modelspace demo` (three methods with a
    grid each, four baselines) instead of one method and one baseline.
    """
    names = [f"model_{i:03d}_{'abcdefgh'[i % 8]}" for i in range(n)]
    a, b = clustered_affinity(n, 8), clustered_affinity(n, 8, seed=1)
    methods, baselines = (DEMO_METHODS, DEMO_BASELINES) if demo_like else (["saliency"], ["linear_cka"])
    views = [MethodResult(m, names, names, a if k == 0 else clustered_affinity(n, 8, seed=10 + k))
             for k, m in enumerate(methods)]
    views += [MethodResult(m, names, names, b if k == 0 else clustered_affinity(n, 8, seed=20 + k), kind="baseline")
              for k, m in enumerate(baselines)]
    settings = {"probe": {"n_images": 1000, "size": 64, "hash": "0" * 64}, "methods": methods,
                "baselines": baselines, "models": [{"name": n_, "task": n_, "source": "synthetic"} for n_ in names]}
    grids = {m: synthetic_grid(names, k) for k, m in enumerate(methods)} if demo_like else {}
    if not with_truth:
        return ReportData(views, settings, title=f"{n} synthetic models", grids=grids)
    rng = np.random.default_rng(3)
    noisy = a + 0.3 * rng.random(a.shape)
    truth = GroundTruth({t: [names[j] for j in np.argsort(-noisy[i]) if j != i] for i, t in enumerate(names)},
                        origin="synthetic truth")
    return ReportData(views, settings, evaluate_views(views, truth), truth, truth_affinity(truth, names),
                      title=f"{n} synthetic models", grids=grids)


def capture_figures(monkeypatch) -> list:
    """Every matplotlib figure turned into a PNG (`plots.compact_png`) from now on, kept (its layout
    final) for `texts_outside`."""
    from modelspace.report import plots

    figures = []
    original = plots.compact_png

    def keep(fig, dpi=None):
        figures.append(fig)
        return original(fig, dpi)

    monkeypatch.setattr(plots, "compact_png", keep)
    return figures


def texts_outside(fig) -> list[str]:
    """The drawn texts of `fig` whose box leaves the figure: titles, axis labels, names, legends,
    annotations and the tick labels of ticks inside their axis's view (matplotlib keeps the others,
    undrawn)."""
    from matplotlib.text import Text

    undrawn = set()
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = sorted(limits)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if tick.get_loc() is None or not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    out = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text() or id(text) in undrawn:
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < frame.x0 or box.y0 < frame.y0 or box.x1 > frame.x1 or box.y1 > frame.y1:
            out.append(f"{text.get_text()!r} at {[round(v) for v in box.extents]} in {[round(v) for v in frame.extents]}")
    return out
