"""Concurrency trials on a shared store, with real processes: `remove` and `gc` run while an `embed`
computes the model they remove; Ray's own lines when a worker dies under ``--json``; a store whose
folder is read-only."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support.runs import subprocess_env
from modelspace import ProbeSet
from modelspace.cli import main
from modelspace.maps import LocalExecutor

pytestmark = pytest.mark.slow  # end to end, each test a run or several: the fast loop leaves the file out

SLOW_MODEL = ('[[model]]\nname = "{name}"\nsource = "python:toy_models:slow_cnn"\n'
              'kwargs = {{ delay = 0.05, seed = {seed} }}\ninput_size = 16\n\n')
N_IMAGES = 16
#: Every table whose rows belong to one model key (affinities name two: model_a and model_b).
KEYED_TABLES = ("shards", "prepared", "sketches", "layouts", "failures", "claims")


@pytest.fixture
def zoo_run(tmp_path) -> dict:
    """Three slow toy models (a, b, c) and a saved probe set of 16 images: with one image per shard,
    each model's units stay in flight for a few seconds, long enough to remove it meanwhile."""
    def zoo(path: Path, *names: str) -> Path:
        path.write_text("".join(SLOW_MODEL.format(name=n, seed=i) for i, n in enumerate(names)))
        return path

    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (N_IMAGES, 3, 16, 16)).astype(np.float32)).save(probe)
    return {"root": tmp_path, "probe": probe, "store": tmp_path / "store", "zoo": zoo(tmp_path / "zoo.toml", "a", "b", "c"),
            "keep": zoo(tmp_path / "keep.toml", "a", "c")}


def manifest(store: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a read-only query on the store's manifest (none while it does not exist yet)."""
    try:
        with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def rows_of(store: Path, model_key: str) -> dict[str, int]:
    """How many rows of each keyed table (and of affinities) name ``model_key``."""
    counts = {t: manifest(store, f"SELECT COUNT(*) FROM {t} WHERE model_key = ?", (model_key,))[0][0]
              for t in KEYED_TABLES}
    counts["affinities"] = manifest(store, "SELECT COUNT(*) FROM affinities WHERE model_a = ? OR model_b = ?",
                                    (model_key, model_key))[0][0]
    return counts


def files_of(store: Path, model_key: str) -> list[str]:
    folder = store / "arrays" / model_key[:2] / model_key
    return sorted(str(p.relative_to(store)) for p in folder.rglob("*")) if folder.exists() else []


def key_in_flight(store: Path, name: str, shards: int = 2, timeout: float = 120.0) -> str:
    """The key of model ``name`` once the embed has stored ``shards`` of its units and holds a claim on
    another one (it is computing it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = manifest(store, "SELECT model_key FROM models WHERE name = ?", (name,))
        if found:
            key = found[0][0]
            stored = manifest(store, "SELECT COUNT(*) FROM shards WHERE model_key = ?", (key,))[0][0]
            claimed = manifest(store, "SELECT COUNT(*) FROM claims WHERE model_key = ?", (key,))[0][0]
            if stored >= shards and claimed:
                return key
        time.sleep(0.02)
    raise AssertionError(f"the embed did not start computing model {name!r} within {timeout} s")


# ---------------------------------------------------------------------- remove / gc while embed runs
@pytest.mark.parametrize("command", ["remove", "gc"])
def test_removing_a_model_while_embed_computes_it_leaves_nothing_of_it(zoo_run, command, capsys) -> None:
    """Trial: `remove b` (or `gc --keep-zoo` of a zoo without b) while an `embed` computed b's units
    left 12-14 shard rows and .npy files of b's key with no model row: `models` did not list them,
    `remove b` said "no model named or keyed 'b'", and `gc` removed 0 models."""
    store = zoo_run["store"]
    embed = subprocess.Popen(
        [sys.executable, "-m", "modelspace.cli", "embed", str(zoo_run["zoo"]), str(zoo_run["probe"]), "--store",
         str(store), "--shard-size", "1", "--methods", "saliency", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        key = key_in_flight(store, "b")
        argv = ["remove", "b"] if command == "remove" else ["gc", "--keep-zoo", str(zoo_run["keep"])]
        code = main([*argv, "--store", str(store), "--quiet"])
        assert code == 0, capsys.readouterr().err
        out, err = embed.communicate(timeout=300)
    finally:
        embed.kill()
        embed.wait()
    assert rows_of(store, key) == dict.fromkeys([*KEYED_TABLES, "affinities"], 0)
    assert files_of(store, key) == []
    assert manifest(store, "SELECT COUNT(*) FROM models WHERE model_key = ?", (key,)) == [(0,)]
    # The embed said once that b was removed while it ran and stopped computing it; a and c are whole.
    told = [line for line in err.splitlines() if "removed from the store" in line]
    assert len(told) == 1 and "'b'" in told[0], err
    document = json.loads(out)
    assert embed.returncode == 1
    assert [(f["model"], f["method"]) for f in document["failures"]] == [("b", None)]
    assert "removed from the store" in document["failures"][0]["message"]
    assert document["models"] == ["a", "c"]
    for name in ("a", "c"):
        (other,) = manifest(store, "SELECT model_key FROM models WHERE name = ?", (name,))
        assert manifest(store, "SELECT COUNT(*) FROM shards WHERE model_key = ?", other) == [(N_IMAGES,)]


def test_gc_removes_the_rows_and_files_of_keys_no_model_is_registered_under(zoo_run, capsys) -> None:
    """Trial: after such a removal, 14 shard rows, a prepared form and the .npy files of b's key were
    left without a model row: `models` did not list them, `remove b` said "no model named or keyed
    'b'" and `gc` removed 0 models. Here the removal is left as it was (b's model row deleted alone),
    with a file beside b's shards that no row names."""
    from modelspace import ModelSpace, ModelSpec

    store = zoo_run["store"]
    widths = {"a": 4, "b": 5, "c": 6}
    specs = [ModelSpec(n, "python:toy_models:tiny_cnn", input_size=16, kwargs={"width": w}) for n, w in widths.items()]
    ModelSpace(methods=["saliency"], store=store, executor=LocalExecutor(shard_size=4), progress=False).fit(
        specs, ProbeSet.load(zoo_run["probe"]))
    (key,) = manifest(store, "SELECT model_key FROM models WHERE name = 'b'")[0]
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        conn.execute("DELETE FROM models WHERE model_key = ?", (key,))
    sidecar = next((store / "arrays" / key[:2] / key).rglob("shard_00000.npy")).with_suffix(".extra")
    sidecar.write_text("no row names this file")
    left = rows_of(store, key)
    assert left["shards"] == N_IMAGES // 4 and left["prepared"] and left["affinities"] == 2
    # store files, each counted with its identity sidecar (.json) as one
    n_files = len([p for p in (store / "arrays" / key[:2] / key).rglob("*") if p.is_file() and p.suffix != ".json"])

    assert main(["models", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert key[:12] not in out
    assert "1 model key" in err and "no model is registered under" in err and "gc" in err, err

    keep = zoo_run["root"] / "keep_ac.toml"
    keep.write_text("".join(f'[[model]]\nname = "{n}"\nsource = "python:toy_models:tiny_cnn"\ninput_size = 16\n'
                            f'kwargs = {{ width = {w} }}\n\n' for n, w in widths.items() if n != "b"))
    gc = ["gc", "--keep-zoo", str(keep), "--store", str(store)]
    assert main([*gc, "--dry-run", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["orphans"] == [{"model_key": key, "rows": sum(left.values()), "files": n_files}]
    assert rows_of(store, key) == left  # a dry run deletes nothing

    assert main(gc) == 0
    out = capsys.readouterr().out
    assert f"removed 1 model key no model is registered under ({sum(left.values())} rows, {n_files} files)" in out
    assert "removed 0 models, kept 2 of 2" in out
    assert rows_of(store, key) == dict.fromkeys([*KEYED_TABLES, "affinities"], 0)
    assert files_of(store, key) == []
    assert main(["models", "--store", str(store)]) == 0
    assert "no model is registered under" not in capsys.readouterr().err

# ---------------------------------------------------------------------- Ray's lines and --json
DYING_MODEL = '''
import os

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x):
        os._exit(1)  # the Ray worker process dies on the model's first forward pass


def build():
    torch.manual_seed(0)
    return Net()
'''


def marked(marker: str) -> list[int]:
    """Pids of the live processes whose environment carries ``marker`` (the Ray processes a test started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the Ray processes it started in /proc")
def test_json_stdout_stays_one_document_when_a_ray_worker_dies(tmp_path) -> None:
    """Trial: `embed --executor ray --json` with a model whose Ray worker dies: Ray's
    ``(raylet) Task ModelWorker.run failed ...`` lines landed on stdout after the JSON document (Ray's
    driver prints the errors raylets report on stdout, and at exit the repeated ones it held back)."""
    import os
    import signal
    import uuid

    pytest.importorskip("ray", reason="needs the 'ray' extra")
    (tmp_path / "dying.py").write_text(DYING_MODEL)
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "dies"\nsource = "python:dying:build"\ninput_size = 16\n\n'
                   '[[model]]\nname = "fine"\nsource = "python:toy_models:tiny_cnn"\ninput_size = 16\n')
    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (4, 3, 16, 16)).astype(np.float32)).save(probe)
    marker = f"MODELSPACE_RAY_TRIAL={uuid.uuid4().hex}"
    env = subprocess_env()
    env.update({"PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(tmp_path)]), marker.split("=")[0]:
                marker.split("=")[1], "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                # Ray holds repeated lines back for this many seconds before printing them once with a count:
                # as on a machine where a worker's restarts come within its default 5 s.
                "RAY_DEDUP_LOGS_AGG_WINDOW_S": "600"})
    try:
        done = subprocess.run([sys.executable, "-m", "modelspace.cli", "embed", str(zoo), str(probe), "--store",
                               str(tmp_path / "store"), "--methods", "saliency", "--executor", "ray", "--json",
                               "--quiet"], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    finally:
        for pid in marked(marker):  # whatever of its Ray instance outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)  # the whole of stdout: one JSON document
    assert {f["model"] for f in document["failures"]} == {"dies"}
    assert all("Ray worker died" in f["message"] for f in document["failures"])
    # Ray's own lines stay visible, on stderr.
    assert "(raylet)" in done.stderr and "Task ModelWorker." in done.stderr, done.stderr


# ---------------------------------------------------------------------- a read-only store
TINY_MODEL = '[[model]]\nname = "tiny"\nsource = "python:toy_models:tiny_cnn"\ninput_size = 16\n'


def read_only_trial(root: Path) -> dict:
    """A store holding model "tiny" (embedded here), the zoo and probe set it came from, and each command
    of the trial: those that write the store, and `models`, which only reads it."""
    zoo, probe, store = root / "zoo.toml", root / "probe.npz", root / "store"
    zoo.write_text(TINY_MODEL)
    ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (4, 3, 16, 16)).astype(np.float32)).save(probe)
    assert main(["embed", str(zoo), str(probe), "--store", str(store), "--methods", "saliency", "--quiet"]) == 0
    (root / "out").mkdir()
    at = ["--store", str(store), "--methods", "saliency", "--quiet"]
    writes = {"embed": ["embed", str(zoo), str(probe), *at, "--recompute", "tiny"],
              "run": ["run", str(zoo), str(probe), *at, "--out", str(root / "out"), "--no-report", "--recompute", "tiny"],
              "remove": ["remove", "tiny", "--store", str(store)],
              "gc": ["gc", "--keep-zoo", str(root / "other.toml"), "--store", str(store)]}
    (root / "other.toml").write_text(TINY_MODEL.replace('"tiny"', '"other"') + "kwargs = { width = 4 }\n")
    return {"store": store, "writes": writes, "models": ["models", "--store", str(store), "--json"]}


def test_a_read_only_store_is_named_read_only(tmp_path, monkeypatch, capsys) -> None:
    """Trial: a store whose folder is read-only (its manifest cannot be opened for writing, its -wal and
    -shm files cannot be made): every command said "unable to open database file" or "attempt to write
    a readonly database", never that the store is read-only; `models` could not list it either.
    Simulated as a read-only folder acts on a user who is not root: SQLite opens the manifest read-only
    and the folder and its files are not writable (the real thing: the test after this one)."""
    import os

    trial = read_only_trial(tmp_path)
    store = trial["store"]
    shards = manifest(store, "SELECT model_key, shard, checksum FROM shards")
    real_connect, real_access = sqlite3.connect, os.access

    def connect(database, *args, uri=False, **kwargs):
        if not uri and Path(database).parent == store:
            database, uri = f"file:{database}?mode=ro", True
        return real_connect(database, *args, uri=uri, **kwargs)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and (Path(path) == store or store in Path(path).parents):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(os, "access", access)
    for command, argv in trial["writes"].items():
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 3, (command, err)
        assert f"store {str(store)!r} is read-only" in err and err.count(str(store / "manifest.sqlite")) == 1, err
        assert "unable to open database file" not in err
    assert main(trial["models"]) == 0
    out, err = capsys.readouterr()
    assert [m["name"] for m in json.loads(out)] == ["tiny"]
    assert f"store {str(store)!r} is read-only" in err and "opened for reading only" in err, err
    assert manifest(store, "SELECT name FROM models") == [("tiny",)]  # nothing was lost
    assert manifest(store, "SELECT model_key, shard, checksum FROM shards") == shards


def test_a_read_only_store_is_named_read_only_for_a_user_who_is_not_root(tmp_path) -> None:
    """The trial above for real: the store's folder and files made read-only with chmod, each command run
    as user nobody (setpriv), which chmod binds, unlike root."""
    import os
    import shutil
    import tempfile

    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv, to run the commands as another user")
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    if subprocess.run([*as_nobody, "-c", "import modelspace"], env=subprocess_env(), capture_output=True).returncode:
        pytest.skip("user nobody cannot run this Python and modelspace")
    root = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is root's own: nobody cannot enter it
    try:
        root.chmod(0o755)
        trial = read_only_trial(root)
        store = trial["store"]
        (root / "out").chmod(0o777)
        for path in [store, *store.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        for command in ("embed", "remove"):
            done = subprocess.run([*as_nobody, "-m", "modelspace.cli", *trial["writes"][command]], capture_output=True,
                                  text=True, env=subprocess_env(), cwd=root, timeout=300)
            assert done.returncode == 3, (command, done.stderr)
            assert f"store {str(store)!r} is read-only" in done.stderr, done.stderr
        done = subprocess.run([*as_nobody, "-m", "modelspace.cli", *trial["models"]], capture_output=True, text=True,
                              env=subprocess_env(), cwd=root, timeout=300)
        assert done.returncode == 0, done.stderr
        assert [m["name"] for m in json.loads(done.stdout)] == ["tiny"]
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(root)
