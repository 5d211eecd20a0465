"""Reports to test: a real 5-model run over the toy models, and a synthetic 200-model space."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelspace.evaluation import GroundTruth
from modelspace.models.spec import ModelSpec
from modelspace.probe import ProbeSet
from modelspace.report import ReportData, evaluate_views, truth_affinity
from modelspace.results import MethodResult
from modelspace.space import ModelSpace

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
                       batch_size=8, progress=False)
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


def large_report(n: int = 200, with_truth: bool = True) -> ReportData:
    """A synthetic n-model space (no maps computed), with a ground truth derived from it plus noise."""
    names = [f"model_{i:03d}_{'abcdefgh'[i % 8]}" for i in range(n)]
    a, b = clustered_affinity(n, 8), clustered_affinity(n, 8, seed=1)
    views = [MethodResult("saliency", names, names, a), MethodResult("linear_cka", names, names, b, kind="baseline")]
    settings = {"probe": {"n_images": 1000, "size": 64, "hash": "0" * 64}, "methods": ["saliency"],
                "baselines": ["linear_cka"], "models": [{"name": n_, "task": n_, "source": "synthetic"} for n_ in names]}
    if not with_truth:
        return ReportData(views, settings, title=f"{n} synthetic models")
    rng = np.random.default_rng(3)
    noisy = a + 0.3 * rng.random(a.shape)
    truth = GroundTruth({t: [names[j] for j in np.argsort(-noisy[i]) if j != i] for i, t in enumerate(names)},
                        origin="synthetic truth")
    return ReportData(views, settings, evaluate_views(views, truth), truth, truth_affinity(truth, names),
                      title=f"{n} synthetic models")
