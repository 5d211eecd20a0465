"""Issue 32, the second hour of a user: each friction of the trial reproduced through the CLI as a
user types it (`main([...])`), on a zoo of the toy models (`tests/toy_models.py`) and a probe folder
of small images. Timings are measured in `benchmarks/`, never asserted here."""

from __future__ import annotations

import html
import json
import re
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


def _folder(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def _store_files(out: Path) -> dict[str, bytes]:
    """The store's map files and their bytes (its SQLite manifest changes as it is opened)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in (out / "store").rglob("*")
            if p.is_file() and ".sqlite" not in p.name}


def test_a_rerun_with_fewer_methods_removes_its_previous_files_and_nothing_else(user, capsys):
    out = user["dir"] / "modelspace-out"
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "gradient_x_input")
    assert code == 0, err
    assert {"affinity_gradient_x_input.csv", "heatmap_gradient_x_input.png", "grid_gradient_x_input.png"} <= _folder(out)
    (out / "notes.md").write_text("my notes on the first run\n")
    store = _store_files(out)

    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency")
    assert code == 0, err
    assert not any("gradient_x_input" in name for name in _folder(out))  # the first run's own files are gone
    assert (out / "notes.md").read_text() == "my notes on the first run\n"
    assert store and store.items() <= _store_files(out).items()  # every stored map kept, unchanged
    assert (out / "store" / "manifest.sqlite").is_file()
    listed = json.loads((out / "results.json").read_text())["files"]
    assert set(listed) == _folder(out) - {"notes.md", "store"}  # every file of the run listed, no staging left
    assert {"results.json", "report.html", "affinity_saliency.csv"} <= set(listed)

    code, _, err = run(capsys, "report", "modelspace-out")
    assert code == 0, err
    assert "results.json" in _folder(out) and set(json.loads((out / "results.json").read_text())["files"]) == set(listed)


def test_report_reads_only_the_files_results_json_lists(user, capsys):
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--no-report")
    assert code == 0, err
    out = user["dir"] / "modelspace-out"
    (out / "oracle_affinity.csv").write_text("not,a,matrix\n")  # a known name, but no run listed it
    code, _, err = run(capsys, "report", "modelspace-out")
    assert code == 0, err  # reading it would be an error: not an affinity matrix
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Oracle tree" not in page
    assert "report.html" in json.loads((out / "results.json").read_text())["files"]  # the folder's page is its file
    assert (out / "oracle_affinity.csv").read_text() == "not,a,matrix\n"


def test_an_older_results_json_without_the_list_leaves_files_and_says_so(user, capsys):
    out = user["dir"] / "modelspace-out"
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "gradient_x_input", "--no-report")
    assert code == 0, err
    older = json.loads((out / "results.json").read_text())
    del older["files"]  # as an older modelspace wrote it
    (out / "results.json").write_text(json.dumps(older))

    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--no-report")
    assert code == 0, err
    stale = sorted(n for n in _folder(out) if "gradient_x_input" in n)
    assert stale and {"affinity_gradient_x_input.csv", "tree_gradient_x_input.nwk"} <= set(stale)  # left in place
    message = err[err.index("does not list its files"):]
    assert all(name in message for name in stale)
    assert "affinity_saliency.csv" not in message.split("\n")[0]  # this run's files are not called stale
    assert "gradient_x_input" not in " ".join(json.loads((out / "results.json").read_text())["files"])


def test_a_run_stopped_while_writing_leaves_the_previous_results_whole(user, capsys, monkeypatch):
    from modelspace.report import plots

    out = user["dir"] / "modelspace-out"
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "gradient_x_input", "--no-report")
    assert code == 0, err
    before = {n: (out / n).read_bytes() for n in json.loads((out / "results.json").read_text())["files"]}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "plot_heatmap", interrupted)
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--no-report")
    assert code == 130, err
    assert _folder(out) == {*before, "store"}  # nothing removed, no staging folder left
    assert {n: (out / n).read_bytes() for n in before} == before


# ------------------------------------------------------------------ 7. the probe folder


def test_every_skipped_probe_file_is_said_with_its_reason_and_the_counts_agree(user, capsys):
    probe = user["probe"]
    (probe / "notes.txt").write_text("where these images come from\n")
    (probe / "corrupt.png").write_bytes((probe / "000.png").read_bytes()[:60])  # cut short
    (probe / "._001.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--out", "out")
    assert code == 0, err
    expected = {"notes.txt": "not an image", "corrupt.png": "corrupt or truncated", "._001.png": "hidden"}
    for path, kind in expected.items():
        assert re.search(rf"skipped {re.escape(path)}: {kind}", err), (path, err)

    results = json.loads((user["dir"] / "out" / "results.json").read_text())
    assert results["probe"]["n_images"] == 24
    assert {s["path"]: s["reason"].split(":")[0] for s in results["probe"]["skipped"]} == expected

    # the progress line counts every file considered, and says how many were read and skipped
    [line] = [line for line in err.splitlines() if line.startswith("modelspace: probe folder probe (")]
    read, skipped, files = map(int, re.search(r"\((\d+) images, (\d+) skipped\): (\d+) files", line).groups())
    assert (read, skipped, files) == (24, 3, 27)

    page = (user["dir"] / "out" / "report.html").read_text(encoding="utf-8")
    assert "3 probe files skipped" in page and '<details id="skipped" open>' in page
    for path in expected:
        assert html.escape(path) in page


def test_a_long_list_of_skipped_files_is_collapsed_on_the_page(user, capsys):
    for i in range(12):
        (user["probe"] / f"caption_{i:02d}.txt").write_text("a caption\n")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--out", "out")
    assert code == 0, err
    assert all(f"skipped caption_{i:02d}.txt: not an image" in err for i in range(12))
    page = (user["dir"] / "out" / "report.html").read_text(encoding="utf-8")
    assert "12 probe files skipped" in page and '<details id="skipped">' in page  # collapsed
    assert "caption_11.txt" in page


# ------------------------------------------------------------------ 8. one set of defaults


# ------------------------------------------------------------------ 9. the report


# ------------------------------------------------------------------ 10. the vision install


# ------------------------------------------------------------------ 11. timing claims
