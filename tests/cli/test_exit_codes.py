"""Bad input never gives a Python traceback (exit 1, "internal error"); each trial gives
exit 2 and one line naming the file, field or option. Every input is made for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from support.runs import subprocess_env
from modelspace.cli import main
from modelspace.errors import ProbeError
from modelspace.probe import ProbeSet

ZOO = '[[model]]\nname = "ok"\nsource = "python:toy_models:tiny_cnn"\n'
DEEP = 100_000


def _inputs(root: Path) -> dict[str, Path]:
    """The files of the trials, under ``root``."""
    images = root / "images"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    zoo = root / "zoo.toml"
    zoo.write_text(ZOO)
    (root / "a_file").write_text("not a folder")
    (root / "deep.toml").write_text("x = " + "[" * DEEP + "]" * DEEP + "\n")
    (root / "deep.yaml").write_text("models: " + "[" * DEEP + "]" * DEEP + "\n")
    (root / "latin1.toml").write_bytes(ZOO.replace('"ok"', '"café"').encode("latin-1"))
    (root / "latin1.yaml").write_bytes("models:\n  - name: café\n    source: python:toy_models:tiny_cnn\n"
                                       .encode("latin-1"))
    (root / "long_field.csv").write_text("target,rank1\n" + "t" * 131_073 + ",s\n")
    with open(root / "bad.npz", "wb") as fh:  # the fields save() writes, but 'skipped' is not (k, 2)
        np.savez(fh, images=np.zeros((1, 3, 8, 8), np.uint8), names=np.array(["a"]), skipped=np.array(["x", "y"]))
    return {"images": images, "zoo": zoo, "root": root}


# (trial, argv with {root}/{zoo}/{images} filled in, what the message must say)
TRIALS = [
    ("cuda without CUDA", ["embed", "{zoo}", "{images}", "--device", "cuda"], "--device cuda: CUDA is not available"),
    ("--out is a file", ["affinity", "{zoo}", "{images}", "--out", "{root}/a_file"],
     "--out {root}/a_file: exists and is not a folder"),
    ("probe --out is a folder", ["probe", "{images}", "--out", "{root}"], "is a folder; give a file name"),
    ("TOML nested 100 000 deep", ["embed", "{root}/deep.toml", "{images}"], "{root}/deep.toml: nested too deeply"),
    ("YAML nested 100 000 deep", ["embed", "{root}/deep.yaml", "{images}"], "{root}/deep.yaml: nested too deeply"),
    ("Latin-1 TOML zoo", ["embed", "{root}/latin1.toml", "{images}"], "{root}/latin1.toml: not UTF-8 text"),
    ("Latin-1 YAML zoo", ["embed", "{root}/latin1.yaml", "{images}"], "{root}/latin1.yaml: not UTF-8 text"),
    ("truth field over 131 072 characters", ["run", "{zoo}", "{images}", "--truth", "{root}/long_field.csv",
                                             "--out", "{root}/out"],
     "{root}/long_field.csv: line 2: not readable as CSV (field larger than field limit"),
    ("malformed .npz probe", ["embed", "{zoo}", "{root}/bad.npz"], "{root}/bad.npz': field 'skipped' must be"),
    ("probe side of 10^6", ["probe", "{images}", "--size", "1000000", "--out", "{root}/p.npz"],
     "size: 1000000 x 1000000 = 1000000000000 pixels per probe image exceeds"),
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA trial needs a machine without CUDA")
@pytest.mark.parametrize("trial, argv, message", TRIALS, ids=[t[0] for t in TRIALS])
def test_bad_input_is_a_message_and_exit_2_not_a_traceback(tmp_path, capsys, trial, argv, message):
    paths = _inputs(tmp_path)
    fill = {k: str(v) for k, v in paths.items()}
    extra = ["--methods", "saliency"] if argv[0] in ("embed", "affinity", "run") else []
    code = main([a.format(**fill) for a in argv] + ["--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert message.format(**fill) in err, err
    assert not (tmp_path / "out").exists()  # refused before any output


def test_a_huge_array_probe_side_is_refused_before_allocating():
    """ProbeSet.from_array(size=10**6) would ask for 10^12 pixels per image; refused from the number."""
    with pytest.raises(ProbeError, match=r"size: 1000000 x 1000000 .* exceeds"):
        ProbeSet.from_array(np.zeros((1, 3, 8, 8), np.uint8), size=1_000_000)
    assert ProbeSet.from_array(np.zeros((1, 3, 8, 8), np.uint8), size=16).size == 16


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="needs POSIX users")
def test_a_read_only_out_folder_is_a_message(tmp_path):
    """`--out` inside a folder the user cannot write: run as an unprivileged user (root writes anywhere)."""
    folder = Path(tempfile.mkdtemp(prefix="modelspace-ro-"))
    try:
        folder.chmod(0o755)
        (folder / "images").mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "images" / "a.png")
        (folder / "images").chmod(0o755)
        locked = folder / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        code = (
            "import os, sys\n"
            "from modelspace.cli import main\n"
            "if os.geteuid() == 0:\n"
            "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(main(['probe', sys.argv[1] + '/images', '--out', sys.argv[1] + '/locked/p.npz', '--quiet']))\n"
        )
        done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                              env=subprocess_env(), check=False, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert f"--out {locked}/p.npz: {locked} is not writable" in done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------- truth files that match too little
def _three_model_run(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / f"{i}.png")
    zoo = root / "zoo.toml"
    zoo.write_text("".join(f'[[model]]\nname = "{n}"\nsource = "python:toy_models:tiny_cnn"\nkwargs = {{width = {w}}}\n'
                           f"input_size = 16\n\n" for n, w in (("a", 4), ("b", 6), ("c", 8))))
    return zoo, images


def test_run_with_fewer_candidates_than_n_relevant_is_refused_before_computing(tmp_path, capsys):
    """`run --truth` whose truth ranks 2 candidates per target with --n-relevant 5
    computed every map, then exited 2 and wrote nothing. It is refused before any map is computed."""
    zoo, images = _three_model_run(tmp_path)
    truth = tmp_path / "truth.csv"
    truth.write_text("target,rank1,rank2\na,b,c\nb,a,c\nc,a,b\n")
    argv = ["run", str(zoo), str(images), "--truth", str(truth), "--out", str(tmp_path / "out"),
            "--store", str(tmp_path / "store"), "--methods", "saliency", "--quiet", "--no-report"]
    assert main([*argv, "--n-relevant", "5"]) == 2
    err = capsys.readouterr().err
    assert f"{truth}: n_relevant 5 exceeds the 2 candidate source(s)" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()  # nothing was computed
    assert main([*argv, "--n-relevant", "2"]) == 0  # the same run within the bound works


def test_truth_names_matching_no_model_are_listed_not_dropped_silently(caplog):
    """A truth CSV naming a source 'bb' (typo) or 'c\\x00' matched no model and was
    left out without a word, changing P@K. The names are logged as a warning; none matching is an error."""
    from modelspace.errors import GroundTruthError
    from modelspace.evaluation import GroundTruth, check_truth, evaluate_matrices

    truth = GroundTruth({"a": ["bb", "c\x00", "b"], "b": ["a", "c"], "c": ["a", "b"]}, origin="typo.csv")
    affinity = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    with caplog.at_level("WARNING", logger="modelspace.evaluation"):
        evaluate_matrices({"saliency": (affinity, ["a", "b", "c"])}, truth, n_relevant=1)
    [record] = [r for r in caplog.records if "match no model" in r.getMessage()]
    assert "typo.csv: 2 name(s)" in record.getMessage() and "'bb', 'c\\x00'" in record.getMessage()
    with pytest.raises(GroundTruthError, match="no target is a model's task label"):
        check_truth(truth, ["x", "y"], n_relevant=1)
