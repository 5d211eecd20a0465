"""Bad models. Each broken model is a real one (dead weights, NaN weights, a
constructor that raises, a garbage checkpoint, an input too small for its layers); each is named in
a per-model failure record or a clear error, and the other models' results are exactly those of a
run without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelspace.attribution import DEFAULT_METHODS
from modelspace import ModelSpace, ModelSpec, ProbeSet
from modelspace.cli import main
from modelspace.errors import ZooError
from modelspace.models import load_zoo


METHODS = list(DEFAULT_METHODS)
GOOD = [
    ModelSpec("good_cnn", "python:toy_models:tiny_cnn", input_size=16),
    ModelSpec("good_resnet", "python:toy_models:tiny_resnet", encoder="layer2", input_size=24),
    ModelSpec("good_wide", "python:toy_models:tiny_cnn", kwargs={"width": 12}, input_size=20),
]


@pytest.fixture(scope="module")
def probe() -> ProbeSet:
    return ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (6, 3, 16, 16)).astype(np.float32))


@pytest.fixture(scope="module")
def clean(probe) -> ModelSpace:
    return ModelSpace(methods=METHODS, baselines=["linear_cka"], progress=False).fit(GOOD, probe)


def bad_specs(tmp_path: Path) -> list[ModelSpec]:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"PK\x03\x04 this is no zip archive and no pickle")
    return [
        ModelSpec("dead", "python:toy_models:dead_cnn", input_size=16),
        ModelSpec("nan", "python:toy_models:nonfinite_cnn", input_size=16),
        ModelSpec("inf", "python:toy_models:nonfinite_cnn", kwargs={"value": "inf"}, input_size=16),
        ModelSpec("no_node", "python:toy_models:tiny_cnn", encoder="encoder.99", input_size=16),
        ModelSpec("raises", "python:toy_models:failing_constructor", input_size=16),
        ModelSpec("garbage_ckpt", f"checkpoint:{garbage}", constructor="python:toy_models:tiny_cnn", input_size=16),
        ModelSpec("tiny_input", "python:toy_models:tiny_resnet", encoder="layer2", input_size=1),
    ]


@pytest.mark.slow
def test_bad_models_are_recorded_by_name_and_the_others_are_intact(tmp_path, probe, clean):
    bad = bad_specs(tmp_path)
    mixed = [GOOD[0], *bad[:4], GOOD[1], *bad[4:], GOOD[2]]  # bad ones in between good ones
    space = ModelSpace(methods=METHODS, baselines=["linear_cka"], store=tmp_path / "store", progress=False)
    space.fit(mixed, probe)  # must not raise

    failed: dict[str, list] = {}
    for f in space.failures_:
        failed.setdefault(f.model, []).append(f)
    assert set(failed) == {s.name for s in bad}
    text = {name: " | ".join(f.message for f in fs) for name, fs in failed.items()}
    assert all(name in text[name] for name in failed)  # every message names its model
    assert "all zero" in text["dead"] and "does not depend on the input" in text["dead"]
    assert "not finite" in text["nan"] and "not finite" in text["inf"]
    assert "field 'encoder'" in text["no_node"] and "encoder.99" in text["no_node"]
    assert "broken on purpose" in text["raises"]
    assert "garbage.pt" in text["garbage_ckpt"]
    assert "too small" in text["tiny_input"] and "input_size [1, 1]" in text["tiny_input"]
    # Per-method failures carry the method; load failures carry None.
    assert {f.method for f in failed["no_node"]} == {None}
    assert {f.method for f in failed["dead"]} >= {"saliency", "gradient_x_input", "lrp_epsilon(epsilon=1e-06)"}

    for estimator, result in space.results_.items():
        reference = clean.results_[estimator]
        assert result.names == [s.name for s in GOOD], estimator
        assert np.isfinite(result.affinity).all()
        np.testing.assert_allclose(result.affinity, reference.affinity, atol=1e-6)
        assert {t: [n for n, _ in r] for t, r in result.ranking.items()} == \
            {t: [n for n, _ in r] for t, r in reference.ranking.items()}

    # The record reaches results.json.
    out = space.save(tmp_path / "out")
    saved = json.loads((out / "results.json").read_text())
    assert {f["model"] for f in saved["failures"]} == set(failed)


def test_on_error_raise_stops_at_the_first_bad_model(tmp_path, probe):
    with pytest.raises(Exception, match="'dead'"):
        ModelSpace(methods=["saliency"], on_error="raise", progress=False).fit([GOOD[0], bad_specs(tmp_path)[0]], probe)


@pytest.mark.parametrize("size", ["0", "-3", "[16, 0]", "2.5", '"big"', "true"])
def test_invalid_input_size_is_a_clear_error_naming_model_and_field(tmp_path, size):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "ok"\nsource = "python:toy_models:tiny_cnn"\n\n'
                   f'[[model]]\nname = "bad_size"\nsource = "python:toy_models:tiny_cnn"\ninput_size = {size}\n')
    with pytest.raises(ZooError) as info:
        load_zoo(zoo)
    assert "model 'bad_size'" in str(info.value) and "'input_size'" in str(info.value) and str(zoo) in str(info.value)


def test_cli_run_survives_bad_models_and_lists_them(tmp_path, capsys):
    folder = tmp_path / "probe"
    folder.mkdir()
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(
        '[[model]]\nname = "good_cnn"\nsource = "python:toy_models:tiny_cnn"\ninput_size = 16\n\n'
        '[[model]]\nname = "dead"\nsource = "python:toy_models:dead_cnn"\ninput_size = 16\n\n'
        '[[model]]\nname = "tiny_input"\nsource = "python:toy_models:tiny_resnet"\nencoder = "layer2"\ninput_size = 1\n\n'
        '[[model]]\nname = "good_resnet"\nsource = "python:toy_models:tiny_resnet"\nencoder = "layer2"\ninput_size = 24\n'
    )
    code = main(["run", str(zoo), str(folder), "--out", str(tmp_path / "out"), "--probe-size", "16",
                 "--methods", "saliency", "--quiet"])
    assert code == 1  # some models failed (the exit codes' promise); the others' results are written
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {f["model"] for f in results["failures"]} == {"dead", "tiny_input"}
    header = (tmp_path / "out" / "affinity_saliency.csv").read_text().splitlines()[0]
    assert header == "model,good_cnn,good_resnet"
