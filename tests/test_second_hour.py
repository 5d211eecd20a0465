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


# ------------------------------------------------------------------ 9. the report


# ------------------------------------------------------------------ 10. the vision install


# ------------------------------------------------------------------ 11. timing claims
