"""Runtime trials. Each test reproduces a trial: a model name that broke the
report's scripts, manifest paths outside the store, store errors reported as model failures, models
that end or poison a run, stdout that was not JSON, stale claims, and edited model code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from support.runs import map_units
from modelspace.cli import main
from modelspace.errors import StoreError
from modelspace.maps import EntryKey, LocalExecutor, MapStore, plan_units
from modelspace.report import ReportData, write_report
from modelspace.results import MethodResult

# A JSON block as the page writes it; the browser ends it at the first "</script" (any case).
BLOCK = re.compile(r'<script type="application/json" id="(d\d+)">(.*?)</script', re.S | re.I)


# ---------------------------------------------------------------------- report JSON blocks
def test_a_model_name_with_markup_leaves_every_json_block_intact(tmp_path) -> None:
    """Trial: a model named ``<!--<script>`` put the browser in HTML's "script data double escaped"
    state, so the block's ``</script>`` did not end it: no JSON block parsed and tabs, tooltips and
    the filter stopped working. Only ``</`` was escaped."""
    names = ["<!--<script>", "</script>", "a&b>c\u2028", "plain"]
    affinity = np.array([[1, .5, .2, .1], [.5, 1, .3, .2], [.2, .3, 1, .4], [.1, .2, .4, 1]])
    settings = {"probe": {"n_images": 4, "size": 16, "hash": "0" * 64}, "methods": ["saliency"], "baselines": [],
                "models": [{"name": n, "task": n, "source": "synthetic"} for n in names]}
    page = write_report(ReportData([MethodResult("saliency", names, names, affinity)], settings, title="t"),
                        tmp_path / "report.html", progress=False)
    html = page.read_text(encoding="utf-8")
    blocks = BLOCK.findall(html)
    assert blocks
    found = set()
    for ident, text in blocks:
        # Nothing in a block may be markup: "<!--", "<script" and "</script" switch the tokenizer's state.
        assert "<" not in text and ">" not in text and "&" not in text, (ident, text[:200])
        found |= {n for n in names if n in json.dumps(json.loads(text), ensure_ascii=False)}
    assert found == set(names)
    # The page's own script follows the data blocks and still opens and closes once.
    assert html.count("<script>") == 1


# ---------------------------------------------------------------------- manifest paths
def edited_store(root: Path, how: str) -> tuple[Path, EntryKey, Path]:
    """A store with one model of 4 shards (2 images each) whose shard 1 row was edited to name
    ``outside`` (absolute, ``../`` relative, or through a symbolic link at the shard's place)."""
    outside = root / "precious.txt"
    outside.write_text("not the store's")
    store_root = root / "store"
    key = EntryKey(model_key="ab" * 8, probe_hash="cd" * 32, method="saliency", probe_size=4)
    maps = np.random.default_rng(0).uniform(0.1, 1, (8, 3, 4, 4)).astype(np.float32)
    with MapStore(store_root) as store:
        store.register_model(key.model_key, "victim", {"source": "test"})
        for unit in plan_units(key, "victim", 8, shard_size=2):
            store.write(unit, maps[unit.start:unit.stop])
        rel = store.shard_relpath(key, 1)
        if how == "symlink":
            (store_root / rel).unlink()
            (store_root / rel).symlink_to(outside)
            path = rel
        else:
            path = str(outside) if how == "absolute" else "../" * rel.count("/") + "../precious.txt"
        with store.db.transaction() as cur:
            cur.execute("UPDATE shards SET path = ? WHERE shard = 1", (path,))
    return store_root, key, outside


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
def test_a_manifest_path_outside_the_store_is_never_deleted_or_read(tmp_path, how, caplog) -> None:
    """Trial: a shard row edited to an absolute path outside the store made `modelspace remove`
    delete that file; the cleanup of superseded shards in `write` had the same exposure."""
    store_root, key, outside = edited_store(tmp_path, how)
    with MapStore(store_root) as store:
        with pytest.raises(StoreError, match="outside the store"):
            store.read(key)
        assert [u.shard for u in store.missing(plan_units(key, "victim", 8, shard_size=2))] == [1]
        assert not store.is_complete(key, 8)
    assert main(["remove", "victim", "--store", str(store_root)]) == 0
    assert outside.read_text() == "not the store's"
    assert "precious.txt" in caplog.text and "outside the store" in caplog.text  # a warning names the file

    # write(): a shard of another size supersedes the edited row, whose file must survive.
    (tmp_path / "w").mkdir()
    store_root, key, outside = edited_store(tmp_path / "w", how)
    with MapStore(store_root) as store:
        unit = plan_units(key, "victim", 8, shard_size=8)[0]
        store.write(unit, np.ones((8, 3, 4, 4), np.float32))
        assert store.read(key).shape == (8, 48)
    assert outside.read_text() == "not the store's"


# ---------------------------------------------------------------------- exit codes
GOOD_MODEL = '[[model]]\nname = "{name}"\nsource = "python:toy_models:tiny_cnn"\ninput_size = 16\n\n'
BAD_ENCODER = '[[model]]\nname = "{name}"\nsource = "python:toy_models:tiny_cnn"\nencoder = "nope"\ninput_size = 16\n\n'


@pytest.fixture
def run_files(tmp_path) -> dict:
    """A saved probe set of 4 images at 16 px, and a helper writing zoo files of toy models."""
    from modelspace import ProbeSet

    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (4, 3, 16, 16)).astype(np.float32)).save(probe)

    def zoo(*entries: tuple[str, str]) -> Path:
        path = tmp_path / "zoo.toml"
        path.write_text("".join(template.format(name=name) for template, name in entries))
        return path

    return {"root": tmp_path, "probe": probe, "zoo": zoo}


def run_cmd(files: dict, zoo: Path, *extra: str) -> list[str]:
    return ["run", str(zoo), str(files["probe"]), "--out", str(files["root"] / "out"), "--methods", "saliency",
            "--no-report", *extra]


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_a_read_only_store_stops_the_run_with_exit_3_naming_the_path(run_files, how, monkeypatch, capsys) -> None:
    """Trial: with the store's `arrays/` read-only, `modelspace run` exited 0 and wrote a report with
    empty matrices, listing every model as "failed while running: OSError: [Errno 30] Read-only file
    system" (the folder was made outside the guarded block of the atomic write)."""
    import errno
    import os

    store = run_files["root"] / "store"
    arrays = store / "arrays"
    MapStore(store).close()
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        arrays.chmod(0o555)
    else:  # what a read-only mount does to every folder made under arrays/
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if arrays in self.parents and not self.exists():
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    zoo = run_files["zoo"]((GOOD_MODEL, "a"), (GOOD_MODEL.replace("16", "20"), "b"))
    try:
        code = main(run_cmd(run_files, zoo, "--store", str(store), "--quiet"))
    finally:
        arrays.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 3, err
    assert str(arrays) in err and ("Read-only file system" in err or "Permission denied" in err)
    assert "failed while running" not in err
    assert not (run_files["root"] / "out" / "results.json").exists()


def test_some_models_failing_is_exit_1_with_the_others_results_written(run_files, capsys) -> None:
    """Trial: `run` with a bad encoder name exited 0."""
    zoo = run_files["zoo"]((GOOD_MODEL, "a"), (BAD_ENCODER, "bad"), (GOOD_MODEL.replace("16", "20"), "b"))
    assert main(run_cmd(run_files, zoo, "--quiet")) == 1
    results = json.loads((run_files["root"] / "out" / "results.json").read_text())
    assert [f["model"] for f in results["failures"]] == ["bad"]
    assert (run_files["root"] / "out" / "affinity_saliency.csv").read_text().splitlines()[0] == "model,a,b"
    assert "1 of 3 models failed (bad)" in capsys.readouterr().err
    # Skipped as "failed before" on a rerun: still missing maps, still exit 1.
    assert main(run_cmd(run_files, zoo, "--quiet")) == 1


@pytest.mark.parametrize("command", ["run", "embed"])
def test_every_model_failing_is_exit_1(run_files, command, capsys) -> None:
    """Trial: `run` and `embed` where every model fails exited 0."""
    zoo = run_files["zoo"]((BAD_ENCODER, "bad1"), (BAD_ENCODER, "bad2"))
    args = run_cmd(run_files, zoo, "--quiet") if command == "run" else [
        "embed", str(zoo), str(run_files["probe"]), "--store", str(run_files["root"] / "s"), "--quiet"]
    assert main(args) == 1
    assert "2 of 2 models failed" in capsys.readouterr().err


# ---------------------------------------------------------------------- models that end or poison a run
def test_a_model_cannot_end_the_run_or_change_torch_for_the_next(run_files, capsys) -> None:
    """Trial: a constructor that parses argv raised SystemExit, which ended the run with no message;
    a constructor that set torch's default dtype to float64 made every later model fail."""
    import torch

    from modelspace import ModelSpace, ModelSpec, ProbeSet

    probe = ProbeSet.load(run_files["probe"])
    good = [ModelSpec("a", "python:toy_models:tiny_cnn", input_size=16),
            ModelSpec("b", "python:toy_models:tiny_resnet", encoder="layer2", input_size=16)]
    before = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled(),
              torch.get_num_threads())
    clean = ModelSpace(methods=["saliency"], progress=False).fit(good, probe)
    models = [ModelSpec("poison", "python:toy_models:state_changing_cnn", input_size=16), good[0],
              ModelSpec("exits", "python:toy_models:argv_parsing_constructor", input_size=16), good[1]]
    space = ModelSpace(methods=["saliency"], progress=False).fit(models, probe)
    after = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled(),
             torch.get_num_threads())
    assert after == before
    assert [(f.model, f.message.split(": ")[-2:]) for f in space.failures_] == [("exits", ["SystemExit", "2"])]
    assert "failed while loading" in space.failures_[0].message
    assert space.names_["saliency"] == ["poison", "a", "b"]
    np.testing.assert_allclose(space.results_["saliency"].affinity[1:, 1:], clean.results_["saliency"].affinity,
                               atol=1e-6)
    # Through the CLI: a failed model, exit 1, not the constructor's exit status.
    zoo = run_files["zoo"]((GOOD_MODEL, "a"),
                           (GOOD_MODEL.replace("tiny_cnn", "argv_parsing_constructor"), "exits"))
    assert main(run_cmd(run_files, zoo, "--quiet")) == 1
    assert "failed (exits)" in capsys.readouterr().err
    (failure,) = json.loads((run_files["root"] / "out" / "results.json").read_text())["failures"]
    assert failure["model"] == "exits" and "SystemExit: 2" in failure["message"]


# ---------------------------------------------------------------------- stdout is the result only
@pytest.mark.parametrize("command", ["run", "embed"])
def test_json_stdout_is_one_document_whatever_the_models_print(run_files, command, capsys) -> None:
    """Trial: a model's own ``print`` went to stdout, so ``--json`` stdout was not JSON. Failures are
    printed once each (on stderr), naming the model once."""
    zoo = run_files["zoo"]((GOOD_MODEL.replace("tiny_cnn", "chatty_cnn"), "chatty"), (GOOD_MODEL, "plain"),
                           (BAD_ENCODER, "bad"))
    args = run_cmd(run_files, zoo, "--json") if command == "run" else [
        "embed", str(zoo), str(run_files["probe"]), "--store", str(run_files["root"] / "s"), "--json"]
    assert main(args) == 1
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert [f["model"] for f in document["failures"]] == ["bad"]
    assert "building chatty_cnn" in err and "forward on a batch" in err
    failure_lines = [line for line in err.splitlines() if "'bad'" in line]
    assert len(failure_lines) == 1 and failure_lines[0].count("bad") == 1, err


# ---------------------------------------------------------------------- leftover claims
def leftover_claims(run_files, claims_of: list[tuple[int, str, float, float | None]]) -> tuple[Path, Path]:
    """A store where a first `embed` computed the 2 units of model "a", whose shard rows were then
    dropped and replaced by claims (pid, host, since, heartbeat or None) of another process."""
    import sqlite3
    import time

    from modelspace import ModelSpace, ModelSpec, ProbeSet

    store = run_files["root"] / "store"
    ModelSpace(methods=["saliency"], store=store, executor=LocalExecutor(shard_size=2), progress=False).embed(
        [ModelSpec("a", "python:toy_models:tiny_cnn", input_size=16)], ProbeSet.load(run_files["probe"]))
    now = time.time()
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        rows = conn.execute("SELECT model_key, probe_hash, method, probe_size, shard FROM shards").fetchall()
        conn.execute("DELETE FROM shards")
        for row, (pid, host, age, beat_age) in zip(rows, claims_of):
            conn.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, f"o{pid}", pid, host, now - age))
            if beat_age is not None:
                conn.execute("INSERT INTO heartbeats VALUES (?, ?, ?, ?, ?)", (f"o{pid}", pid, host, now - age,
                                                                              now - beat_age))
    return store, run_files["zoo"]((GOOD_MODEL, "a"))


@pytest.mark.slow
def test_a_leftover_claim_of_another_host_or_pid_1_is_taken_over(run_files) -> None:
    """Trial: a claim left by another host, or by pid 1 of this host (alive, but not a modelspace
    process), blocked the rerun silently for up to an hour."""
    import subprocess
    import sys
    import time

    from support.runs import subprocess_env

    store, zoo = leftover_claims(run_files, [(4242, "another-host", 300, None), (1, __import__("socket").gethostname(),
                                                                               200, 180)])
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "modelspace.cli", "embed", str(zoo), str(run_files["probe"]),
                           "--store", str(store), "--shard-size", "2", "--methods", "saliency", "--json", "--quiet"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=90)
    assert done.returncode == 0, done.stderr
    assert map_units(json.loads(done.stdout)["work"]) == {"computed": 2, "reused": 0}
    assert time.time() - start < 60


def test_a_fresh_claim_is_waited_for_naming_its_holder(run_files, monkeypatch, caplog) -> None:
    """A claim whose process beats is respected; the wait says who holds it, and once the heartbeat
    is older than the stale limit (shortened here to 1.5 s) the claim is taken over."""
    import time

    from modelspace import ModelSpace, ModelSpec, ProbeSet
    from modelspace.maps.storage import claims

    monkeypatch.setattr(claims, "CLAIM_STALE_S", 1.5)
    store, _ = leftover_claims(run_files, [(4242, "another-host", 0, 0)])
    start = time.time()
    space = ModelSpace(methods=["saliency"], store=store, executor=LocalExecutor(shard_size=2), progress=False).embed(
        [ModelSpec("a", "python:toy_models:tiny_cnn", input_size=16)], ProbeSet.load(run_files["probe"]))
    assert map_units(space.work_) == {"computed": 2, "reused": 0}
    assert time.time() - start > 1.0  # it waited for the fresh claim
    waits = [r.getMessage() for r in caplog.records if "waiting for a shard" in r.getMessage()]
    assert len(waits) == 1 and "pid 4242 on host another-host" in waits[0], caplog.text


# ---------------------------------------------------------------------- edited model code
EDITED_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.{act}(), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x):
        return self.encoder(x).mean((2, 3))


def build():
    torch.manual_seed(0)  # the same weights whatever the activation
    return Net()
'''


@pytest.mark.slow
def test_edited_model_code_is_recomputed_on_request(run_files) -> None:
    """Trial: a ``python:`` model whose activation changed from ReLU to tanh, with the same weights,
    silently reused the maps of the old code (the store key covers spec and weights, not code).
    `--recompute NAME` drops and recomputes them; without it the maps are reused, as documented."""
    import sqlite3
    import subprocess
    import sys

    from support.runs import subprocess_env

    package = run_files["root"] / "pkg"
    package.mkdir()
    source = package / "edited_model.py"
    zoo = run_files["zoo"]((GOOD_MODEL.replace("toy_models:tiny_cnn", "edited_model:build"), "edited"))
    env = subprocess_env()
    env["PYTHONPATH"] += f"{__import__('os').pathsep}{package}"

    def embed(store: str, *extra: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "modelspace.cli", "embed", str(zoo), str(run_files["probe"]),
                               "--store", str(run_files["root"] / store), "--methods", "saliency", "--json",
                               "--quiet", *extra], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return map_units(json.loads(done.stdout)["work"])

    def checksums(store: str) -> list[str]:
        with sqlite3.connect(run_files["root"] / store / "manifest.sqlite") as conn:
            return [r[0] for r in conn.execute("SELECT checksum FROM shards ORDER BY shard")]

    source.write_text(EDITED_MODEL.format(act="ReLU"))
    assert embed("store") == {"computed": 1, "reused": 0}
    relu = checksums("store")
    source.write_text(EDITED_MODEL.format(act="Tanh"))
    assert embed("store") == {"computed": 0, "reused": 1}  # the key did not change: documented reuse
    assert embed("store", "--recompute", "edited") == {"computed": 1, "reused": 0}
    assert embed("fresh") == {"computed": 1, "reused": 0}
    assert checksums("store") == checksums("fresh") != relu
    done = subprocess.run([sys.executable, "-m", "modelspace.cli", "embed", str(zoo), str(run_files["probe"]),
                           "--store", str(run_files["root"] / "store"), "--recompute", "edtied", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "edtied" in done.stderr


# ---------------------------------------------------------------------- cached affinities
def test_an_edited_cached_affinity_is_recomputed_not_used(run_files, caplog) -> None:
    """Trial: a value of the manifest's ``affinities`` table edited with sqlite3 (0.99 in place of the
    computed value) was served as is by `get_affinity`, `affinities_among` and the next fit."""
    import sqlite3

    from modelspace import ModelSpace, ProbeSet
    from modelspace.models import load_zoo

    zoo = run_files["zoo"]((GOOD_MODEL, "a"), (GOOD_MODEL.replace("16", "20"), "b"), (GOOD_MODEL, "c"))
    store, probe = run_files["root"] / "store", ProbeSet.load(run_files["probe"])
    clean = ModelSpace(methods=["saliency"], store=store, progress=False).fit(load_zoo(zoo), probe)
    keys = [clean.members_[n].entries[clean.methods_[0].id] for n in "abc"]
    with MapStore(store) as st:
        assert st.affinities_among(keys) == {(0, 1): clean.results_["saliency"].affinity[0, 1],
                                             (0, 2): clean.results_["saliency"].affinity[0, 2],
                                             (1, 2): clean.results_["saliency"].affinity[1, 2]}
    low, high = sorted((keys[0].model_key, keys[1].model_key))
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        assert conn.execute("UPDATE affinities SET value = 0.99 WHERE model_a = ? AND model_b = ?",
                            (low, high)).rowcount == 1
    caplog.set_level("WARNING", logger="modelspace")
    with MapStore(store) as st:
        assert st.get_affinity(keys[0], keys[1]) is None
        assert (0, 1) not in st.affinities_among(keys) and len(st.affinities_among(keys)) == 2
    warnings = [r.getMessage() for r in caplog.records if "cached affinity" in r.getMessage()]
    assert len(warnings) == 3 and all(str(store / "manifest.sqlite") in w and ": 1 cached" in w for w in warnings)
    again = ModelSpace(methods=["saliency"], store=store, progress=False).fit(load_zoo(zoo), probe)
    # One row recomputed (affinity_row rounds in another order than the full matrix: float32 ulps).
    np.testing.assert_allclose(again.results_["saliency"].affinity, clean.results_["saliency"].affinity, atol=1e-6)
    with MapStore(store) as st:  # recomputed and replaced with a good row
        assert st.get_affinity(keys[0], keys[1]) == pytest.approx(clean.results_["saliency"].affinity[0, 1], abs=1e-6)


def test_a_version_1_store_opens_and_its_unchecked_affinities_are_recomputed(run_files, caplog) -> None:
    """A store written before affinities carried a checksum (schema version 1: no such column) opens,
    is migrated in place, and its cached values are recomputed rather than trusted."""
    import sqlite3

    from modelspace import ModelSpace, ProbeSet
    from modelspace.maps.storage.manifest import SCHEMA_VERSION
    from modelspace.models import load_zoo

    zoo = run_files["zoo"]((GOOD_MODEL, "a"), (GOOD_MODEL.replace("16", "20"), "b"))
    store, probe = run_files["root"] / "store", ProbeSet.load(run_files["probe"])
    clean = ModelSpace(methods=["saliency"], store=store, progress=False).fit(load_zoo(zoo), probe)
    truth = clean.results_["saliency"].affinity
    with sqlite3.connect(store / "manifest.sqlite") as conn:  # the table as version 1 made it, with a wrong value
        rows = conn.execute("SELECT probe_hash, method, probe_size, model_a, model_b FROM affinities").fetchall()
        conn.execute("DROP TABLE affinities")
        conn.execute("DROP TABLE layouts")
        conn.execute("CREATE TABLE affinities (probe_hash TEXT NOT NULL, method TEXT NOT NULL, probe_size INTEGER NOT "
                     "NULL, model_a TEXT NOT NULL, model_b TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (probe_hash, "
                     "method, probe_size, model_a, model_b), CHECK (model_a <= model_b))")
        conn.executemany("INSERT INTO affinities VALUES (?, ?, ?, ?, ?, 0.5)", rows)
        conn.execute("PRAGMA user_version = 1")
    caplog.set_level("WARNING", logger="modelspace")
    again = ModelSpace(methods=["saliency"], store=store, progress=False).fit(load_zoo(zoo), probe)
    np.testing.assert_allclose(again.results_["saliency"].affinity, truth, atol=1e-6)
    assert any("1 cached affinity value(s) ignored" in r.getMessage() for r in caplog.records)
    assert map_units(again.work_) == {"computed": 0, "reused": 2}  # the maps were kept
    with sqlite3.connect(store / "manifest.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute("SELECT COUNT(*) FROM affinities WHERE checksum IS NOT NULL").fetchone()[0] == 1


# ---------------------------------------------------------------------- a manifest that is not SQLite
@pytest.mark.parametrize("size", [1, 15, 16, 100, 4096])
def test_a_manifest_of_random_bytes_is_refused_and_left_untouched(tmp_path, size) -> None:
    """Trial: a manifest.sqlite of one random byte opened as an empty store (SQLite took it for a new
    database and overwrote it to 64 KiB): the store's content was lost without a word. Sizes from 16
    bytes on were already refused by SQLite ("file is not a database")."""
    import os

    from modelspace.errors import StorageError

    (tmp_path / "arrays").mkdir()
    manifest = tmp_path / "manifest.sqlite"
    content = os.urandom(size)
    manifest.write_bytes(content)
    with pytest.raises(StorageError, match="is not an SQLite database") as info:
        MapStore(tmp_path)
    message = str(info.value)
    assert str(manifest) in message and "Move it aside" in message and "arrays" in message
    assert manifest.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays", "manifest.sqlite"]  # no -wal / -shm made


def test_cli_on_a_manifest_of_random_bytes_is_exit_3_naming_it(run_files, capsys) -> None:
    store = run_files["root"] / "store"
    store.mkdir()
    (store / "manifest.sqlite").write_bytes(b"\x07")
    zoo = run_files["zoo"]((GOOD_MODEL, "a"))
    code = main(["embed", str(zoo), str(run_files["probe"]), "--store", str(store), "--methods", "saliency", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert str(store / "manifest.sqlite") in err and "not an SQLite database" in err
    assert (store / "manifest.sqlite").read_bytes() == b"\x07"
