"""A results folder written as one unit. Each test reproduces a trial with
real processes (killed with SIGKILL at every step of a run's commit, two runs at once into one
folder) or, for a full disk, with the writes of one file made to fail as a full disk fails them.

The zoo is two toy models at 16 px; the runs share one store outside their output folders, filled
once, so each run only reads its maps and writes its folder: an earlier run of 16 probe images and
two methods, and a later run of 8 images (the first 8 of the 16) and one method."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from support.runs import subprocess_env
from modelspace.cli import main
from modelspace.probe import ProbeSet

pytestmark = pytest.mark.slow  # end to end, each test a run or several: the fast loop leaves the file out

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
"""
#: The two runs: probe images and methods. The later one writes fewer files than the earlier one,
#: so its commit also removes files.
RUNS = {"earlier": (16, ["saliency", "gradient_x_input"]), "later": (8, ["saliency"])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The zoo, both probe sets, the filled store, and each run's folder as written uninterrupted."""
    root = tmp_path_factory.mktemp("runs")
    (root / "zoo.toml").write_text(ZOO)
    images = np.random.default_rng(0).uniform(0, 1, (16, 3, 16, 16)).astype(np.float32)
    files = {"root": root, "zoo": root / "zoo.toml", "store": root / "store"}
    for which, (n, _) in RUNS.items():
        ProbeSet.from_array(images[:n]).save(root / f"probe{n}.npz")
        files[which] = root / f"ref_{which}"
        assert main(run_argv(files, which, files[which])) == 0
    return files


def run_argv(files: dict, which: str, out: Path | None = None, quiet: bool = True) -> list[str]:
    """``modelspace run`` of the earlier or later run (into ``--out out``, or the default folder)."""
    n, methods = RUNS[which]
    return ["run", str(files["zoo"]), str(files["root"] / f"probe{n}.npz"), "--store", str(files["store"]),
            "--methods", *methods, *(["--quiet"] if quiet else []), *(["--out", str(out)] if out is not None else [])]


def run_of(out: Path, files: dict) -> str:
    """Which run the folder holds, "earlier" or "later", asserting that every file there is that run's:
    its list of files, their bytes, and the page's count of probe images."""
    settings = json.loads((out / "results.json").read_text())
    n = settings["probe"]["n_images"]
    which = {n: w for w, (n, _) in RUNS.items()}[n]
    ref = files[which]
    listed = set(settings["files"])
    assert listed == set(json.loads((ref / "results.json").read_text())["files"]), f"{which} run's list: {listed}"
    for name in sorted(listed - {"results.json", "report.html"}):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), \
            f"results.json of the {which} run ({n} images), {name} not of that run"
    there = {p.name for p in out.iterdir()}
    assert there == listed, f"the {which} run's files, and {sorted(there - listed)}; missing {sorted(listed - there)}"
    assert f"<b>{n}</b><span>probe images" in (out / "report.html").read_text(encoding="utf-8"), \
        f"the {which} run's files, and a page of another count of images"
    return which


# --------------------------------------------------------------------------- a killed run

# Runs the later run into copies of the earlier run's folder, each in a forked process that SIGKILLs
# itself at the k-th step of its commit: a rename or a removal in the folder itself.
KILLED_AT_EACH_STEP = r"""
import json, os, shutil, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)  # no thread pool in the forked processes
from modelspace.cli import main

args = json.loads(sys.argv[1])
root, earlier = Path(args["root"]), Path(args["earlier"])
real_replace, real_unlink = os.replace, os.unlink

def hook(out, limit):
    steps = [0]
    def step(path):
        if Path(path).parent == out:
            if steps[0] == limit:
                os.kill(os.getpid(), signal.SIGKILL)
            steps[0] += 1
    def replace(src, dst, *a, **k):
        step(dst)
        return real_replace(src, dst, *a, **k)
    def unlink(path, *a, **k):
        if not k.get("dir_fd"):
            step(path)
        return real_unlink(path, *a, **k)
    os.replace, os.unlink = replace, unlink
    return steps

def argv(out):
    return [a.replace("@OUT@", str(out)) for a in args["argv"]]

out = root / "counted"
shutil.copytree(earlier, out)
steps = hook(out, None)
assert main(argv(out)) == 0
os.replace, os.unlink = real_replace, real_unlink
outcomes = []
for k in range(steps[0]):
    out = root / f"killed_{k}"
    shutil.copytree(earlier, out)
    pid = os.fork()
    if pid == 0:
        hook(out, k)
        os._exit(main(argv(out)))
    _, status = os.waitpid(pid, 0)
    outcomes.append(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status))
print(json.dumps({"steps": steps[0], "outcomes": outcomes}))
"""


def test_a_run_killed_at_any_step_of_its_commit_leaves_one_run_s_results(runs, tmp_path) -> None:
    """Trial: `kill -9` of a `run` writing into a folder that held an earlier run (16 → 8 probe images):
    `report` then exited 0 with a page of 16 images beside CSVs of the 8-image run. Here the later run
    is killed at each step of its commit in turn; `report` on each folder then shows one run whole."""
    argv = [*run_argv(runs, "later", Path("@OUT@")), "--no-report"]  # `report` draws the page below
    proc = subprocess.run([sys.executable, "-c", KILLED_AT_EACH_STEP, json.dumps(
        {"root": str(tmp_path), "earlier": str(runs["earlier"]), "argv": argv})],
        env={**subprocess_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["steps"] >= 10 and result["outcomes"] == [9] * result["steps"], result  # SIGKILL at each
    seen, mixed = [], {}
    for out in [tmp_path / f"killed_{k}" for k in range(result["steps"])] + [tmp_path / "counted"]:
        try:
            assert main(["report", str(out), "--quiet"]) == 0, "report failed"
            seen.append(run_of(out, runs))
        except AssertionError as exc:  # every step's outcome is shown at once
            mixed[out.name] = str(exc).splitlines()[0]
    assert not mixed, mixed
    # Killed before its first step, the earlier run is whole; at its last step, and not killed, the later one.
    assert seen[0] == "earlier" and seen[-2:] == ["later", "later"], seen


# --------------------------------------------------------------------------- two runs at once

# One of two processes running into the same default folder (`modelspace-out/` of each try's folder),
# each try started together with the other process; every move into the folder is slowed down, so
# the two commits overlap as they would with larger folders.
AT_ONCE = r"""
import json, os, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
real_replace = os.replace

def replace(src, dst, *a, **k):
    if Path(dst).parent.name == "modelspace-out":
        time.sleep(0.1)
    return real_replace(src, dst, *a, **k)

os.replace = replace
from modelspace.cli import main

codes = []
for folder in args["tries"]:
    os.chdir(folder)
    Path(f"ready_{args['me']}").touch()
    while not Path(f"ready_{args['other']}").exists():
        time.sleep(0.01)
    codes.append(main(args["argv"]))
print(json.dumps(codes))
"""


def test_two_runs_at_once_into_one_folder_leave_one_run_s_results(runs, tmp_path) -> None:
    """Trial: two `run`s at once into the same (default) output folder, with 16 and 8 probe images, left
    the folder mixed once in 9 tries: one run's results.json beside the other's CSVs."""
    tries = [tmp_path / f"try_{i}" for i in range(3)]
    for folder in tries:
        folder.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", AT_ONCE, json.dumps(
        {"tries": [str(t) for t in tries], "me": which, "other": other, "argv": run_argv(runs, which)})],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for which, other in (("earlier", "later"), ("later", "earlier"))]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0 and json.loads(out.splitlines()[-1]) == [0] * len(tries), err[-3000:]
    for folder in tries:
        assert main(["report", str(folder / "modelspace-out"), "--quiet"]) == 0
        run_of(folder / "modelspace-out", runs)


def test_a_run_waits_for_the_run_writing_its_folder_and_names_it(runs, tmp_path, caplog) -> None:
    """Trial: a run started while another one was writing the same folder wrote into it at once, without a
    word (the mixed folders above)."""
    out = tmp_path / "out"
    shutil.copytree(runs["earlier"], out)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom modelspace.results import OutputFolder\n"
        "with OutputFolder(sys.argv[1]):\n"
        "    print('holding', flush=True)\n"
        "    while not Path(sys.argv[2]).exists():\n        time.sleep(0.05)\n"), str(out), str(tmp_path / "go")],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n", holder.stderr.read()
        codes = []
        second = threading.Thread(target=lambda: codes.append(main(run_argv(runs, "later", out, quiet=False))))
        second.start()
        deadline = time.time() + 60
        while "waiting" not in caplog.text and second.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        waited = caplog.text
        (tmp_path / "go").touch()
        second.join(120)
    finally:
        (tmp_path / "go").touch()
        holder.wait(60)
    assert f"pid {holder.pid}" in waited and str(out) in waited, waited
    assert codes == [0]
    assert waited.count("waiting") == 1  # said once
    assert run_of(out, runs) == "later"


# --------------------------------------------------------------------------- report refuses a mix


def test_report_refuses_a_folder_whose_files_are_not_its_run_s(runs, tmp_path, capsys) -> None:
    """Trial: a folder holding the results.json and page of the 16-image run and two CSVs of the 8-image
    run (what a killed or concurrent run left): `report` exited 0 and drew a page from both runs."""
    out = tmp_path / "out"
    shutil.copytree(runs["earlier"], out)
    for name in ("affinity_saliency.csv", "affinity_dds.csv"):
        shutil.copy(runs["later"] / name, out / name)
    (out / "grid_saliency.png").unlink()
    page = (out / "report.html").read_bytes()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    for name in ("affinity_saliency.csv", "affinity_dds.csv", "grid_saliency.png"):
        assert name in err, err
    assert "affinity_gradient_x_input.csv" not in err and "modelspace run" in err, err
    assert (out / "report.html").read_bytes() == page  # nothing written from the mix
    # `tree` reads one of its CSVs: refused too.
    assert main(["tree", str(out / "affinity_saliency.csv"), "--out", str(tmp_path / "t")]) == 2
    assert "affinity_saliency.csv" in capsys.readouterr().err


# --------------------------------------------------------------------------- a full disk


class FullDisk:
    """A file of the folder being written on a full disk: its first bytes are written, then ENOSPC
    (or another errno); its descriptor is hidden, so that PIL writes through `write` too."""

    def __init__(self, fh, error: int, after: int = 64):
        self._fh, self._error, self._left = fh, error, after

    def write(self, data):
        if len(data) > self._left:
            self._fh.write(data[:self._left])
            self._fh.flush()
            self._left = 0
            raise OSError(self._error, os.strerror(self._error))
        self._left -= len(data)
        return self._fh.write(data)

    def fileno(self):
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@pytest.mark.parametrize("name, error", [("grid_saliency.png", errno.ENOSPC), ("affinity_saliency.csv", errno.EDQUOT),
                                         ("report.html", errno.ENOSPC), ("results.json", errno.ENOSPC)])
def test_a_full_disk_under_out_is_exit_3_naming_the_file_and_keeps_the_previous_results(
        runs, tmp_path, capsys, monkeypatch, name, error) -> None:
    """Trial: a full disk under --out while the grid was saved gave exit 1, a traceback and a truncated
    grid_lrp_epsilon.png."""
    out = tmp_path / "out"
    shutil.copytree(runs["earlier"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_open = builtins.open
    hit = []

    def open_(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and Path(file).name == name and out in Path(file).parents \
                and any(c in mode for c in "wax+"):
            hit.append(str(file))
            return FullDisk(fh, error)
        return fh

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    code = main(run_argv(runs, "later", out))
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert hit, f"{name} was not written"
    assert code == 3, err
    assert str(out / name) in err and os.strerror(error) in err, err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no truncated file, no staging
    assert main(["report", str(out), "--quiet"]) == 0 and run_of(out, runs) == "earlier"


def test_an_output_folder_that_cannot_be_written_is_exit_3_naming_it(runs, tmp_path, capsys, monkeypatch) -> None:
    """Trial: --out on a read-only mount, where the run cannot make the folder it stages its files in:
    exit 1 and a traceback."""
    out = tmp_path / "out"
    shutil.copytree(runs["earlier"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code = main(run_argv(runs, "later", out))
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert code == 3, err
    assert str(out) in err and "Read-only file system" in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
