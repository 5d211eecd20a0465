"""Issue 32, the second hour of a user: each friction of the trial reproduced through the CLI as a
user types it (`main([...])`), on a zoo of the toy models (`tests/toy_models.py`) and a probe folder
of small images. Timings are measured in `benchmarks/`, never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelspace.cli import main

ZOO = """
[[model]]
name = "cnn_a"
source = "python:toy_models:tiny_cnn"
task = "a"
input_size = 16

[[model]]
name = "cnn_b"
source = "python:toy_models:tiny_cnn"
kwargs = { width = 6 }
task = "b"
input_size = 16

[[model]]
name = "resnet_c"
source = "python:toy_models:tiny_resnet"
task = "c"
input_size = 16
"""


def write_images(folder: Path, n: int = 24, size: int = 16, seed: int = 0) -> Path:
    """``n`` random RGB images of ``size``² as PNG files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def user(tmp_path, monkeypatch) -> dict:
    """A user's working folder: ``zoo.toml`` (three toy models at 16 px), ``probe/`` (24 images); the
    commands run in that folder, so the default ``modelspace-out/`` lands there too."""
    monkeypatch.chdir(tmp_path)
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(ZOO, encoding="utf-8")
    return {"dir": tmp_path, "zoo": zoo, "probe": write_images(tmp_path / "probe")}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``modelspace ARGV`` as typed: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ 1. a rerun with nothing new


@pytest.fixture
def forward_passes(monkeypatch) -> list[str]:
    """The models whose encoder activations a run computes for its baselines, one name per forward pass
    over the probe set (counted where `prepare_baselines` calls `encoder_activations`)."""
    import modelspace.maps.activations as activations

    seen, real = [], activations.encoder_activations
    monkeypatch.setattr(activations, "encoder_activations",
                        lambda model, *a, **k: seen.append(model.name) or real(model, *a, **k))
    return seen


def work(user) -> dict:
    return json.loads((user["dir"] / "modelspace-out" / "results.json").read_text())["work"]


def prepared_files(user, model_key: str | None = None) -> list[Path]:
    store = user["dir"] / "modelspace-out" / "store" / "arrays"
    return sorted(p for p in store.rglob("prepared.npz") if model_key is None or model_key in p.parts)


def test_a_rerun_computes_no_encoder_activations(user, capsys, forward_passes):
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert sorted(forward_passes) == ["cnn_a", "cnn_b", "resnet_c"]
    first = (user["dir"] / "modelspace-out" / "affinity_dds.csv").read_text()
    assert len(prepared_files(user)) == 3  # one DDS form per model

    forward_passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert forward_passes == []
    assert work(user) == {"computed": 0, "reused": 9, "activations_computed": 0, "activations_reused": 3}
    assert "encoder activations of 0 models computed, 3 found in the store" in out  # what the user reads
    assert (user["dir"] / "modelspace-out" / "affinity_dds.csv").read_text() == first


def test_a_rerun_after_adding_a_model_computes_its_activations_only(user, capsys, forward_passes):
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    forward_passes.clear()
    with open(user["zoo"], "a", encoding="utf-8") as fh:
        fh.write('\n[[model]]\nname = "cnn_d"\nsource = "python:toy_models:tiny_cnn"\nkwargs = { width = 5 }\n'
                 'task = "d"\ninput_size = 16\n')
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert forward_passes == ["cnn_d"]
    assert work(user)["activations_computed"] == 1 and work(user)["activations_reused"] == 3
    dds = (user["dir"] / "modelspace-out" / "affinity_dds.csv").read_text()
    assert "cnn_d" in dds


def test_remove_drops_stored_activations_and_recompute_redoes_them(user, capsys, forward_passes):
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    stored = {m["name"]: m["key"] for m in json.loads(
        (user["dir"] / "modelspace-out" / "results.json").read_text())["models"]}
    assert len(prepared_files(user, stored["cnn_b"])) == 1

    code, out, err = run(capsys, "remove", "cnn_b", "--store", "modelspace-out/store")
    assert code == 0, err
    assert prepared_files(user, stored["cnn_b"]) == [] and len(prepared_files(user)) == 2
    forward_passes.clear()
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    assert forward_passes == ["cnn_b"]

    forward_passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--recompute", "resnet_c")
    assert code == 0, err
    assert forward_passes == ["resnet_c"]
    assert work(user)["activations_computed"] == 1


def test_a_damaged_stored_activation_form_is_recomputed_with_a_message(user, capsys, forward_passes):
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    damaged = prepared_files(user)[0]
    damaged.write_bytes(damaged.read_bytes()[:-8] + b"\0" * 8)
    forward_passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert len(forward_passes) == 1
    assert str(damaged) in err and "damaged" in err
    forward_passes.clear()
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0 and forward_passes == []  # stored again, whole


# ------------------------------------------------------------------ 2. peak memory


@pytest.fixture
def passes(monkeypatch) -> list[tuple[int, int]]:
    """(images, bytes kept for the backward) of every forward+backward pass a run makes for its maps."""
    import modelspace.maps.executor as executor

    seen, real_maps, real_exit = [], executor.compute_maps, executor.SavedBytes.__exit__
    images = []
    monkeypatch.setattr(executor, "compute_maps",
                        lambda model, x, *a, **k: images.append(len(x)) or real_maps(model, x, *a, **k))
    monkeypatch.setattr(executor.SavedBytes, "__exit__",
                        lambda self, *exc: seen.append((images[-1], self.bytes)) or real_exit(self, *exc))
    return seen


def test_a_pass_never_keeps_more_than_the_pass_memory_for_its_backward(user, capsys, passes):
    """The attribution's backward graph (what a pass keeps: autograd's saved tensors, counted, not timed)
    grows with its images; a batch runs in passes that keep at most --pass-memory, whatever --batch-size."""
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--out", "whole", "--quiet")
    assert code == 0, err
    # one image measures what an image keeps; toy models keep a few kB an image, so the default lets
    # the whole batch through in one pass
    assert [n for n, _ in passes] == [1, 24] * 6  # 3 models × 2 backward groups
    per_image = max(kept / n for n, kept in passes)
    budget = 5 * per_image
    passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--out", "bounded", "--quiet",
                         "--pass-memory", str(budget / 2**20))
    assert code == 0, err
    assert passes[0][0] == 1
    assert 1 < max(n for n, _ in passes) < 24 and sum(n for n, _ in passes) == 6 * (1 + 24)
    assert all(kept <= budget for n, kept in passes if n > 1)
    for name in ("saliency", "gradient_x_input", "lrp_epsilon", "dds"):
        whole = np.loadtxt(user["dir"] / "whole" / f"affinity_{name}.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
        bounded = np.loadtxt(user["dir"] / "bounded" / f"affinity_{name}.csv", delimiter=",", skiprows=1,
                             usecols=(1, 2, 3))
        np.testing.assert_allclose(bounded, whole, atol=1e-6)


# ------------------------------------------------------------------ 3. label scores on the page


# ------------------------------------------------------------------ 4. a typo in a model name


# ------------------------------------------------------------------ 5. offline hub


# ------------------------------------------------------------------ 6. a results folder that holds results


# ------------------------------------------------------------------ 7. the probe folder


# ------------------------------------------------------------------ 8. one set of defaults


# ------------------------------------------------------------------ 9. the report


# ------------------------------------------------------------------ 10. the vision install


# ------------------------------------------------------------------ 11. timing claims
