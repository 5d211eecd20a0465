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


# ------------------------------------------------------------------ 2. peak memory


# ------------------------------------------------------------------ 3. label scores on the page


# ------------------------------------------------------------------ 4. a typo in a model name


# ------------------------------------------------------------------ 5. offline hub


# ------------------------------------------------------------------ 6. a results folder that holds results


# ------------------------------------------------------------------ 7. the probe folder


# ------------------------------------------------------------------ 8. one set of defaults


def test_item8_the_api_computes_what_the_cli_computes_by_default(user, capsys) -> None:
    from modelspace import ModelSpace, load_zoo

    code, out, err = run(capsys, "run", "zoo.toml", "probe/", "--quiet")
    assert code == 0, err
    cli = json.loads(Path("modelspace-out/results.json").read_text())
    space = ModelSpace(store="api-store", progress=False).fit(load_zoo("zoo.toml"), "probe/")
    api = space.summary()
    assert api["methods"] == cli["methods"] and api["baselines"] == cli["baselines"]
    assert any(b.startswith("dds(") for b in api["baselines"])  # the default estimator, in both
    assert list(space.results_) == [*cli["methods"], *cli["baselines"]]


def test_item8_the_api_lowers_n_relevant_as_the_cli_does(user, caplog) -> None:
    from modelspace import ModelSpace, load_zoo

    truth = user["dir"] / "truth.csv"
    truth.write_text("target,rank1,rank2\na,b,c\nb,a,c\nc,a,b\n")
    space = ModelSpace(methods=["saliency"], baselines=(), progress=False).fit(load_zoo("zoo.toml"), "probe/")
    evaluation = space.evaluate(truth)  # 2 candidate sources per target: the default 5 is lowered to 2
    assert evaluation.n_relevant == 2 and "ranks only 2 candidate sources" in caplog.text
    assert "P@1" in str(evaluation) and "saliency" in str(evaluation)  # print(evaluation) is its table


def test_item8_the_readmes_set_up_commands_are_what_ci_runs() -> None:
    from docs_examples import blocks

    repo = Path(__file__).resolve().parents[1]
    quick = [b.text.strip() for b in blocks(repo / "README.md") if b.section == "Quick start" and b.language == "sh"]
    assert len(quick) == 2 and "modelspace demo" in quick[0] and "pytest" in quick[1]
    ci = (repo / ".ci" / "run").read_text().splitlines()
    for command in quick:
        assert command in ci, command


# ------------------------------------------------------------------ 9. the report


# ------------------------------------------------------------------ 10. the vision install


# ------------------------------------------------------------------ 11. timing claims
