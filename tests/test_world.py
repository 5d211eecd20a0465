"""The built-in world's shipped artifacts: zoo, oracle, and the demo end to end (quick mode)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelspace.cli import main
from modelspace.evaluation import GroundTruth
from modelspace.models import load_model, load_zoo
from modelspace.world import build, oracle, train
from modelspace.world.render import render_batch

ZOO = build.ZOO_DIR


@pytest.fixture(scope="module")
def shipped() -> dict:
    if not (ZOO / "oracle.json").exists():
        pytest.fail(f"the built-in zoo is missing from {ZOO}: run `python -m modelspace.world.build`")
    return {
        "specs": {s.name: s for s in load_zoo(ZOO / "zoo.toml")},
        "record": json.loads((ZOO / "zoo.json").read_text()),
        "oracle": json.loads((ZOO / "oracle.json").read_text()),
    }


def test_zoo_matches_its_definition(shipped) -> None:
    assert set(shipped["specs"]) == set(shipped["record"]["models"])
    groups = [m["group"] for m in shipped["record"]["models"].values()]
    assert groups.count(1) >= 16 and groups.count(2) >= 8
    archs = {m["arch"] for m in shipped["record"]["models"].values() if m["group"] == 2}
    assert {"vgg", "resnet", "mobilenet"} <= archs
    sizes = {shipped["specs"][n].input_size for n in shipped["specs"]}
    assert len(sizes) >= 3  # heterogeneous input sizes


def test_shipped_weights_load_safely_and_run(shipped) -> None:
    spec = shipped["specs"]["depth_z@resnet80"]
    assert not spec.trust_checkpoint  # weights_only=True
    model = load_model(spec)
    r = model.tap()(model.transform(torch.rand(2, 3, 64, 64)))
    assert r.ndim == 4 and torch.isfinite(r).all()


def test_oracle_files_agree(shipped) -> None:
    ranking = GroundTruth.from_csv(ZOO / "oracle_ranking.csv")
    matrix = GroundTruth.from_csv(ZOO / "transfer_matrix.csv")
    assert ranking.ranking == matrix.ranking
    info = shipped["oracle"]
    assert info["tasks"] == ranking.targets and len(info["tasks"]) >= 16
    loss = np.array(info["transfer_loss"])
    # a trained transfer beats the no-encoder pixel readout for most targets
    best = loss.min(axis=1)
    assert np.mean([b < info["pixel_readout_loss"][t] for b, t in zip(best, info["tasks"])]) > 0.5


def test_shipped_oracle_is_reproduced_in_miniature(shipped) -> None:
    """The regeneration code, run for 3 targets × 5 sources on the same scenes, gives the shipped entries."""
    info = shipped["oracle"]
    n_train, n_test = info["data"]["n_train"], info["data"]["n_test"]
    data = {"train": render_batch(n_train, build.SEEDS["train"]), "test": render_batch(n_test, build.SEEDS["test"])}
    models = {t: load_model(shipped["specs"][t]) for t in info["tasks"]}
    targets = ["room_layout", "object_class", "vanishing_point"]  # few label columns: quick to fit
    sources = ["depth_z", "normals", "edges2d", "segment_semantic", "autoencoding"]
    result = oracle.measure_oracle(models, data["train"], data["test"], progress=False, targets=targets, sources=sources)
    shipped_loss = np.array(info["transfer_loss"])
    for t in targets:
        for s in sources:
            i, j = info["tasks"].index(t), info["tasks"].index(s)
            assert result.loss[i, j] == pytest.approx(shipped_loss[i, j], rel=1e-4, abs=1e-5), (t, s)


def test_training_is_deterministic() -> None:
    data = render_batch(16, seed=5)

    def trained() -> dict:
        torch.manual_seed(0)
        model = train.make_model("tasknet", "normals")
        train.train_model(model, "normals", data, 64, train.Recipe(steps=3, batch=4), log=False)
        return model.state_dict()

    first, second = trained(), trained()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_demo_quick_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-probe", "12"]) == 0
    printed = capsys.readouterr().out
    for row in ("saliency", "gradient_x_input", "lrp_epsilon", "svcca", "random", "oracle"):
        assert row in printed
    results = json.loads((out / "results.json").read_text())
    assert results["probe"]["n_images"] == 12
    evaluation = results["evaluation"]
    assert evaluation["n_candidates"] == len(results["group1"]) - 1
    assert evaluation["oracle"]["precision"][0] == 1.0
    for name, curves in evaluation["methods"].items():
        assert len(curves["precision"]) == evaluation["n_candidates"], name
        assert all(0.0 <= p <= 1.0 for p in curves["precision"])
    for f in ("pk_curves.png", "dendrogram_oracle.png", "heatmap_saliency.png", "grid_lrp_epsilon.png"):
        assert (out / f).stat().st_size > 1000
    assert set(results["trees"]) >= {"oracle", "saliency"}


def test_ridge_readout_matches_the_direct_solution() -> None:
    """The row-space shortcut for wide label matrices equals plain ridge on every column."""
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(120, 16)), rng.normal(size=(40, 16))
    w = rng.normal(size=(16, 300))
    y, y_test = x @ w * 0.2 + rng.normal(size=(120, 300)), x_test @ w * 0.2 + rng.normal(size=(40, 300))
    loss, lam = oracle.ridge_loss(x, y, x_test, y_test)
    # direct: standardise, pick λ on the first 20 % of the training rows, refit on all, score the test rows
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs, xts, y_mean = (x - mean) / std, (x_test - mean) / std, y.mean(0)

    def fit(a, b, lam_):
        return np.linalg.solve(a.T @ a + lam_ * np.eye(a.shape[1]), a.T @ b)

    val = 24
    best = min(oracle.LAMBDAS, key=lambda l: ((xs[:val] @ fit(xs[val:], y[val:] - y_mean, l) - (y[:val] - y_mean)) ** 2).mean())
    prediction = xts @ fit(xs, y - y_mean, best) + y_mean
    expected = ((prediction - y_test) ** 2).mean() / ((y_test - y_test.mean(0)) ** 2).mean()
    assert lam == best and loss == pytest.approx(expected, rel=1e-10)
