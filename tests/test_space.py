"""End to end: a zoo of small models of different architectures and input sizes, generated
probe images, the CLI and the Python API, resuming, adding and removing models."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import modelspace.maps.execution.executor as executor
import modelspace.space as space_module
from modelspace.attribution import DEFAULT_METHODS, AttributionMethod
from modelspace.errors import AttributionError, ZooError
from support.runs import subprocess_env
from modelspace.cli import main
from modelspace.evaluation import GroundTruth
from modelspace.models import load_zoo
from modelspace.probe import ProbeSet
from modelspace.results import read_matrix
from modelspace.space import ModelSpace
from modelspace.maps import LocalExecutor, MapStore

METHODS = list(DEFAULT_METHODS)


def write_probe(folder: Path, n: int = 12, size: int = 40) -> Path:
    """Smooth random colour fields with a bright square: images with structure, not just noise."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b, c = rng.uniform(0, 6, 3)
        img = np.stack([np.sin(a * xx + b * yy + c * k) for k in range(3)], -1) * 0.4 + 0.5
        x0, y0 = rng.integers(0, size // 2, 2)
        img[y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.uniform(0.7, 1.0, 3)
        ext = ("png", "jpg", "bmp")[i % 3]
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray((img * 255).astype(np.uint8)).save(sub / f"img_{i:02d}.{ext}")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A zoo file over Python, TorchScript and Hugging Face sources, and a probe folder."""
    root = tmp_path_factory.mktemp("world")
    import toy_models

    scripted = torch.jit.trace(toy_models.tiny_cnn(width=6).encoder, torch.rand(1, 3, 24, 24))
    scripted.save(str(root / "encoder.pt"))
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3)
    torch.manual_seed(0)
    transformers.ResNetModel(config).eval().save_pretrained(root / "hf_resnet")
    (root / "zoo.toml").write_text(
        """
[[model]]
name = "cnn_small"
task = "alpha"
source = "python:toy_models:tiny_cnn"
input_size = 32

[[model]]
name = "cnn_wide"
task = "beta"
source = "python:toy_models:tiny_cnn"
kwargs = { width = 12 }
input_size = 48
normalize = "half"

[[model]]
name = "resnet"
task = "gamma"
source = "python:toy_models:tiny_resnet"
encoder = "layer2"
input_size = 40

[[model]]
name = "scripted"
task = "delta"
source = "torchscript:encoder.pt"
input_size = 24
normalize = "none"

[[model]]
name = "hf_resnet"
task = "epsilon"
source = "hf:hf_resnet"
input_size = 64
"""
    )
    # A ground truth over the five tasks (and one task that no model has, to be skipped).
    (root / "truth.csv").write_text(
        "target,rank1,rank2,rank3,rank4,rank5\n"
        "alpha,beta,gamma,delta,epsilon,zeta\n"
        "beta,alpha,delta,gamma,epsilon,zeta\n"
        "gamma,epsilon,alpha,beta,delta,zeta\n"
        "delta,alpha,beta,epsilon,gamma,zeta\n"
        "epsilon,gamma,delta,alpha,beta,zeta\n"
    )
    return {"root": root, "zoo": root / "zoo.toml", "probe": write_probe(root / "probe"), "truth": root / "truth.csv"}


@pytest.mark.slow
def test_cli_run_end_to_end(world, tmp_path) -> None:
    out = tmp_path / "out"
    code = main(["run", str(world["zoo"]), str(world["probe"]), "--out", str(out), "--store", str(tmp_path / "store"),
                 "--truth", str(world["truth"]), "--n-relevant", "2", "--probe-size", "32", "--quiet"])
    assert code == 1  # the scripted model's ε-LRP fails (below): exit 1, everything else written
    results = json.loads((out / "results.json").read_text())
    # ε-LRP cannot reach inside a TorchScript graph: that one model × method is refused, by name.
    assert [(f["model"], f["method"]) for f in results["failures"]] == [("scripted", "lrp_epsilon(epsilon=1e-06)")]
    assert "TorchScript" in results["failures"][0]["message"]
    assert results["probe"]["n_images"] == 12 and results["probe"]["size"] == 32
    for method in METHODS:
        names = ["cnn_small", "cnn_wide", "resnet", "scripted", "hf_resnet"]
        if method == "lrp_epsilon":
            names.remove("scripted")
        matrix, written = read_matrix(out / f"affinity_{method}.csv")
        assert written == names
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-3)
        assert np.all(np.abs(matrix) <= 1 + 1e-3)
        ranking = json.loads((out / f"ranking_{method}.json").read_text())
        assert sorted(ranking) == sorted(names) and all(len(v) == len(names) - 1 for v in ranking.values())
        newick = (out / f"tree_{method}.nwk").read_text()
        assert newick.strip().endswith(";") and all(n in newick for n in names)
        for png in (f"dendrogram_{method}.png", f"heatmap_{method}.png", f"grid_{method}.png"):
            assert Image.open(out / png).size[0] > 100
        curves = results["evaluation"]["methods"][f"{method}(epsilon=1e-06)" if method == "lrp_epsilon" else method]
        assert curves["ks"] == list(range(1, len(names)))
        assert all(0 <= p <= 1 for p in curves["precision"]) and curves["recall"][-1] == 1.0
    assert results["evaluation"]["oracle"]["precision"][:2] == [1.0, 1.0]
    assert (out / "pk_curves.png").exists()

    # The refusal is kept in the store: a rerun skips it, saying why, unless asked to retry.
    rerun = ["run", str(world["zoo"]), str(world["probe"]), "--out", str(tmp_path / "again"), "--store",
             str(tmp_path / "store"), "--probe-size", "32", "--quiet", "--no-report"]
    for extra, expected in (([], "skipped, failed before: "), (["--retry-failed"], "scripted")):
        assert main(rerun + extra) == 1  # skipped as failed before is still a failure
        (failure,) = json.loads((tmp_path / "again" / "results.json").read_text())["failures"]
        assert failure["message"].startswith(expected) and "TorchScript" in failure["message"]


def test_evaluation_of_a_truth_made_from_the_estimate_is_the_oracle(world, tmp_path) -> None:
    """The written rankings are the ones evaluated: grading an estimate against itself gives the oracle."""
    out = tmp_path / "out"
    assert main(["affinity", str(world["zoo"]), str(world["probe"]), "--out", str(out), "--methods", "saliency",
                 "--probe-size", "32", "--quiet"]) == 0
    matrix, names = read_matrix(out / "affinity_saliency.csv")
    self_truth = GroundTruth.from_matrix(matrix, names, names)
    self_truth.to_ranking_csv(tmp_path / "self.csv")
    assert main(["evaluate", str(out / "affinity_saliency.csv"), "--truth", str(tmp_path / "self.csv"),
                 "--n-relevant", "2", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "evaluation_saliency.json").read_text())
    assert report["methods"]["saliency"]["precision"] == report["oracle"]["precision"]
    assert main(["tree", str(out / "affinity_saliency.csv"), "--out", str(out), "--quiet"]) == 0
    assert (out / "tree_saliency.nwk").exists() and (out / "dendrogram_saliency.png").exists()


def count_units(monkeypatch) -> list[str]:
    """Record the model name of every unit of work that is actually computed."""
    computed: list[str] = []
    original = executor.run_units

    def counting(units, *args, **kwargs):
        computed.extend(u.model_name for u in units)
        return original(units, *args, **kwargs)

    monkeypatch.setattr(executor, "run_units", counting)
    return computed


def test_resume_after_deleting_one_entry_recomputes_only_that_model(world, tmp_path, monkeypatch) -> None:
    specs = load_zoo(world["zoo"])
    probe = ProbeSet.from_folder(world["probe"], size=32, progress=False)
    store = tmp_path / "store"
    first = ModelSpace(methods=["saliency"], store=store, executor=LocalExecutor(shard_size=5), progress=False).fit(specs, probe)
    computed = count_units(monkeypatch)
    again = ModelSpace(methods=["saliency"], store=store, executor=LocalExecutor(shard_size=5), progress=False).fit(specs, probe)
    assert computed == []  # everything came from the store
    np.testing.assert_allclose(again.results_["saliency"].affinity, first.results_["saliency"].affinity, atol=1e-6)

    with MapStore(store) as s:
        s.remove_entry(first.members_["resnet"].entries["saliency"])
    third = ModelSpace(methods=["saliency"], store=store, executor=LocalExecutor(shard_size=5), progress=False).fit(specs, probe)
    assert computed == ["resnet"] * 3  # 12 images in shards of 5
    np.testing.assert_allclose(third.results_["saliency"].affinity, first.results_["saliency"].affinity, atol=1e-6)


def test_adding_a_model_costs_its_maps_and_one_row(world, tmp_path, monkeypatch) -> None:
    specs = load_zoo(world["zoo"])
    probe = ProbeSet.from_folder(world["probe"], size=32, progress=False)
    full = ModelSpace(methods=["saliency"], store=tmp_path / "a", progress=False).fit(specs, probe)

    space = ModelSpace(methods=["saliency"], store=tmp_path / "b", progress=False).fit(specs[:-1], probe)
    computed = count_units(monkeypatch)
    rows: list[int] = []
    original_row = space_module.affinity_row

    def counting_row(new, others, *args, **kwargs):
        rows.append(len(others))
        return original_row(new, others, *args, **kwargs)

    monkeypatch.setattr(space_module, "affinity_row", counting_row)
    monkeypatch.setattr(space_module, "affinity_matrix", lambda *a, **k: pytest.fail("full matrix recomputed"))
    space.add(specs[-1])
    assert computed == [specs[-1].name]
    assert rows == [len(specs) - 1]
    np.testing.assert_allclose(space.results_["saliency"].affinity, full.results_["saliency"].affinity, atol=1e-6)

    space.remove("cnn_wide")
    assert "cnn_wide" not in space.results_["saliency"].names
    assert space.results_["saliency"].affinity.shape == (4, 4)


def test_a_failing_model_is_recorded_and_the_others_survive(world) -> None:
    zoo = world["root"] / "zoo_with_failures.toml"  # beside the original: relative paths still resolve
    zoo.write_text(world["zoo"].read_text().replace('encoder = "layer2"', 'encoder = "layer9"'))
    probe = ProbeSet.from_folder(world["probe"], size=32, progress=False)
    space = ModelSpace(methods=["saliency"], progress=False).fit(load_zoo(zoo), probe)
    failed = {f.model: f.message for f in space.failures_}
    assert set(failed) == {"resnet"}
    assert "layer9" in failed["resnet"]
    assert space.results_["saliency"].names == ["cnn_small", "cnn_wide", "scripted", "hf_resnet"]
    # a file that does not exist is bad input, found before any model loads
    zoo.write_text(zoo.read_text() + '\n[[model]]\nname = "missing"\nsource = "torchscript:nowhere.pt"\n')
    with pytest.raises(ZooError, match=r"model 'missing' \(#6\): field 'source': file not found: \S*nowhere.pt"):
        ModelSpace(methods=["saliency"], progress=False).fit(load_zoo(zoo), probe)


class RefusesOneModel(AttributionMethod):
    """The gradient, except for the model named `refused`, whose rules refuse it (as ε-LRP refuses
    an operation it has no rule for): a deterministic failure of one method on one model."""

    name = "refuses_one"

    def __init__(self, refused: str = "cnn_wide") -> None:
        self.refused, self.calls = refused, []  # no `params`: one id, whichever model it refuses

    def rules(self, module, model_name):
        self.calls.append(model_name)
        if model_name == self.refused:
            raise AttributionError(f"{model_name}: no rule for this model")
        return contextlib.nullcontext()


@pytest.mark.slow
def test_a_model_failing_one_method_keeps_the_others_and_the_failure_is_remembered(world, tmp_path, caplog) -> None:
    specs = load_zoo(world["zoo"])[:3]
    probe = ProbeSet.from_folder(world["probe"], size=32, progress=False)
    method = RefusesOneModel()
    space = ModelSpace(methods=["saliency", method], baselines=(), store=tmp_path / "store", progress=False).fit(specs, probe)
    names = ["cnn_small", "cnn_wide", "resnet"]
    assert space.names_ == {"saliency": names, method.id: ["cnn_small", "resnet"]}
    assert [(f.model, f.method) for f in space.failures_] == [("cnn_wide", method.id)]
    out = space.save(tmp_path / "out")
    assert read_matrix(out / "affinity_saliency.csv")[1] == names
    saved = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in saved["models"]] == names
    assert [(f["model"], f["method"]) for f in saved["failures"]] == [("cnn_wide", method.id)]

    # A rerun on the same store meets the recorded failure instead of running the model again...
    method.calls.clear()
    again = ModelSpace(methods=["saliency", method], baselines=(), store=tmp_path / "store").fit(specs, probe)
    assert "cnn_wide" not in method.calls
    (failure,) = again.failures_
    assert failure.message.startswith("skipped, failed before: ") and "no rule for this model" in failure.message
    assert "model 'cnn_wide': skipped, failed before" in caplog.text  # logged once (logger "modelspace")
    assert again.names_ == space.names_
    # ...unless asked to retry; a model that then succeeds is forgotten as failed.
    retried = ModelSpace(methods=["saliency", method], baselines=(), store=tmp_path / "store", retry_failed=True, progress=False)
    assert retried.fit(specs, probe).failures_[0].message.endswith("no rule for this model")
    assert method.calls.count("cnn_wide") == 1
    method.refused = "nobody"
    fixed = ModelSpace(methods=["saliency", method], store=tmp_path / "store", retry_failed=True, progress=False)
    assert fixed.fit(specs, probe).failures_ == [] and fixed.names_[method.id] == names
    assert MapStore(tmp_path / "store").failure(fixed.members_["cnn_wide"].entries[method.id]) is None


@pytest.mark.slow
def test_console_script_and_exit_codes(world, tmp_path) -> None:
    env = subprocess_env()
    ok = subprocess.run([sys.executable, "-m", "modelspace.cli", "methods"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "lrp_epsilon" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "modelspace.cli", "run", str(tmp_path / "nope.toml"), str(world["probe"]),
                          "--quiet"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "nope.toml" in bad.stderr
