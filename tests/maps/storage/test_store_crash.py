"""Crashes and concurrency, with real processes.

- a `modelspace embed` subprocess is killed with SIGKILL once some shards are in the manifest; the
  rerun computes exactly the units that were not written, and the result equals an uninterrupted run;
- shard files corrupted on disk (a flipped byte, a truncation) and a temporary file left by a killed
  write are detected and recomputed / removed, never read as data;
- two `modelspace embed` processes started at once on one store finish with the same, complete
  result and compute every unit exactly once between them.

The kill is repeated at six random moments, each run resuming the last; two runs with
different --shard-size on one store (at once, or one after the other) share the entries' one layout.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support.runs import map_units, subprocess_env
from modelspace import ModelSpace, ProbeSet
from modelspace.maps import LocalExecutor
from modelspace.maps.execution import executor
from modelspace.errors import StoreError
from modelspace.models import load_zoo
from modelspace.results import file_name, file_stem, read_matrix
from modelspace.maps import EntryKey, MapStore, plan_units

N_IMAGES, SHARD = 8, 1
METHODS = ["saliency", "gradient_x_input"]


@pytest.fixture
def setup(tmp_path) -> dict:
    """A zoo of slow toy models (each forward pass sleeps, so units stay in flight long enough to
    be killed or raced) and a saved probe set."""
    zoo = tmp_path / "zoo.toml"
    zoo.write_text("".join(
        f'[[model]]\nname = "slow_{i}"\nsource = "python:toy_models:slow_cnn"\n'
        f'kwargs = {{ delay = 0.15, seed = {i} }}\ninput_size = 16\n\n' for i in range(3)))
    probe = ProbeSet.from_array(np.random.default_rng(3).uniform(0, 1, (N_IMAGES, 3, 16, 16)).astype(np.float32))
    probe.save(tmp_path / "probe.npz")
    return {"zoo": zoo, "probe": tmp_path / "probe.npz", "store": tmp_path / "store", "root": tmp_path}


def embed_cmd(s: dict, *extra: str, command: str = "embed", shard_size: int = SHARD) -> list[str]:
    return [sys.executable, "-m", "modelspace.cli", command, str(s["zoo"]), str(s["probe"]), "--store", str(s["store"]),
            "--shard-size", str(shard_size), "--methods", *METHODS, "--quiet", *extra]


def total_units() -> int:
    return 3 * len(METHODS) * (N_IMAGES // SHARD)


def manifest_rows(store: Path, table: str = "shards") -> int:
    try:
        with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def unit_just_claimed(store: Path, within: float = 0.05) -> bool:
    """Whether a unit was claimed less than ``within`` seconds ago. The slow models' forward pass alone
    sleeps 0.15 s, so a kill sent now lands while that unit is computed, its claim held."""
    try:
        with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
            (since,) = conn.execute("SELECT MAX(since) FROM claims").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return False
    return since is not None and time.time() - since < within


def count_computed(monkeypatch) -> list[tuple[str, str, int]]:
    computed: list[tuple[str, str, int]] = []
    original = executor.run_units

    def counting(units, *args, **kwargs):
        computed.extend((u.model_name, u.key.method, u.shard) for u in units)
        return original(units, *args, **kwargs)

    monkeypatch.setattr(executor, "run_units", counting)
    return computed


def reference_affinity(s: dict, store: Path) -> dict:
    space = ModelSpace(methods=METHODS, store=store, executor=LocalExecutor(shard_size=SHARD), progress=False)
    space.fit(load_zoo(s["zoo"]), ProbeSet.load(s["probe"]))
    return {k: r.affinity for k, r in space.results_.items()}


@pytest.mark.slow
def test_kill_9_mid_run_loses_only_the_unit_in_flight_and_a_rerun_resumes(setup, monkeypatch):
    s = setup
    proc = subprocess.Popen(embed_cmd(s), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        # Some shards written, most not, and a unit in flight: killed between two units (after one's
        # release, before the next claim), the process would leave no claim to test (2 runs in 10 did).
        while manifest_rows(s["store"]) < 5 or not unit_just_claimed(s["store"]):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the embed process wrote nothing in 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    written = manifest_rows(s["store"])
    assert 5 <= written < total_units()
    # The killed process held a claim on the shard it was computing: it must not block the rerun.
    assert manifest_rows(s["store"], "claims") >= 1

    computed = count_computed(monkeypatch)
    space = ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False)
    space.embed(load_zoo(s["zoo"]), ProbeSet.load(s["probe"]))
    assert space.failures_ == []
    # Exactly the missing units were computed, each once; nothing written before the kill was redone.
    assert len(computed) == len(set(computed)) == total_units() - written
    n_rerun = len(computed)
    assert map_units(space.work_) == {"computed": total_units() - written, "reused": written}
    with MapStore(s["store"]) as store:
        assert store.claims() == []
        assert list(store.root.rglob("*.tmp")) == []
    resumed = reference_affinity(s, s["store"])
    fresh = reference_affinity(s, s["root"] / "fresh_store")
    for method in resumed:
        np.testing.assert_allclose(resumed[method], fresh[method], atol=1e-6)
    print(f"\nkill -9 after {written}/{total_units()} units; rerun computed {n_rerun}")


KILLS = 6


def stored_units(store: Path) -> dict[tuple, tuple]:
    """Every shard row of the manifest with its file's identity: {(model, method, shard): (inode, mtime, sha256)}.
    A unit computed again is written to a new file (atomic rename): its inode changes."""
    with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT model_key, method, shard, path, checksum FROM shards").fetchall()
    found = {}
    for model_key, method, shard, rel, checksum in rows:
        stat = (store / rel).stat()
        found[(model_key, method, shard)] = (stat.st_ino, stat.st_mtime_ns, checksum)
    return found


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_only_the_units_in_flight(setup, monkeypatch):
    """`modelspace embed` killed with SIGKILL six times, each run resuming the last: each kill comes once
    the manifest holds a number of shards drawn at random (seeded), plus a random fraction of a unit's
    time, so that the kills land while computing, writing, committing or between claims. No stored
    unit is ever computed again, the last rerun computes exactly what the manifest lacks, and the maps
    and affinities equal an uninterrupted run's."""
    s = setup
    rng = np.random.default_rng(14)
    targets = sorted(rng.choice(np.arange(2, total_units() - 4), size=KILLS, replace=False).tolist())
    kept: dict[tuple, tuple] = {}
    history = []
    for target in targets:
        target = max(target, len(kept) + 1)  # every run gets somewhere
        proc = subprocess.Popen(embed_cmd(s), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 120
            while manifest_rows(s["store"]) < target:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.time() < deadline, f"the embed process did not reach {target} shards in 120 s"
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.15))  # not a wait for anything: where in a unit's cycle the kill lands
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
        now = stored_units(s["store"])
        # What was stored stays stored, untouched: no unit written before a kill was computed again.
        assert {k: now[k] for k in kept} == kept
        assert len(now) < total_units()
        history.append(len(now))
        kept = now

    computed = count_computed(monkeypatch)
    space = ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False)
    space.embed(load_zoo(s["zoo"]), ProbeSet.load(s["probe"]))
    assert space.failures_ == []
    assert len(computed) == len(set(computed)) == total_units() - len(kept)
    assert map_units(space.work_) == {"computed": total_units() - len(kept), "reused": len(kept)}
    final = stored_units(s["store"])
    assert len(final) == total_units() and {k: final[k] for k in kept} == kept
    with MapStore(s["store"]) as store, MapStore(s["root"] / "fresh_store") as fresh_store:
        assert store.claims() == []
        assert list(store.root.rglob("*.tmp")) == []  # every killed write's temp file was removed
        fresh = reference_affinity(s, fresh_store.root)
        for name, member in space.members_.items():
            for method, key in member.entries.items():
                np.testing.assert_array_equal(store.read(key), fresh_store.read(key), err_msg=f"{name} {method}")
    resumed = reference_affinity(s, s["store"])
    for method in resumed:
        np.testing.assert_allclose(resumed[method], fresh[method], atol=1e-6)
    print(f"\nkill -9 at {history} of {total_units()} units stored; the last rerun computed {total_units() - len(kept)}")


def test_corrupt_and_partial_shard_files_are_detected_and_recomputed(setup, monkeypatch):
    s = setup
    specs, probe = load_zoo(s["zoo"]), ProbeSet.load(s["probe"])
    first = ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False).fit(specs, probe)
    key = first.members_["slow_1"].entries["saliency"]
    units = plan_units(key, "slow_1", N_IMAGES, SHARD)
    with MapStore(s["store"]) as store:
        before = store.read(key)
        paths = [store.root / store.shard_relpath(key, u.shard) for u in units]
    flipped, truncated = paths[2], paths[5]
    data = bytearray(flipped.read_bytes())
    data[-10] ^= 0xFF  # inside the float16 payload: same size, different numbers
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:60])
    leftover = paths[6].parent / f".{paths[6].name}.abc123.tmp"  # what a write killed before its rename leaves
    leftover.write_bytes(b"half a shard")

    with MapStore(s["store"]) as store:  # read() refuses the damaged files: they are never taken as data
        with pytest.raises(StoreError, match="checksum|corrupt"):
            store.read(key, 2, 3)
        with pytest.raises(StoreError):
            store.read(key, 5, 6)

    computed = count_computed(monkeypatch)
    again = ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False).fit(specs, probe)
    assert sorted(computed) == [("slow_1", "saliency", 2), ("slow_1", "saliency", 5)]
    assert again.work_["computed"] == 2
    with MapStore(s["store"]) as store:
        np.testing.assert_array_equal(store.read(key), before)
    for method, result in again.results_.items():
        np.testing.assert_allclose(result.affinity, first.results_[method].affinity, atol=1e-6)
    # The temp file belongs to unit 6, which was intact: nobody claimed it, so it is ignored (never read);
    # a run that recomputes unit 6 removes it.
    assert leftover.exists()
    with MapStore(s["store"]) as store:
        assert store.discard_partial([units[6]]) == 1
    assert not leftover.exists()


def test_a_rerun_removes_the_temp_file_of_a_killed_write(setup):
    s = setup
    probe = ProbeSet.load(s["probe"])
    specs = load_zoo(s["zoo"])[:1]
    space = ModelSpace(methods=["saliency"], store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False).fit(specs, probe)
    key = space.members_["slow_0"].entries["saliency"]
    with MapStore(s["store"]) as store:
        path = store.root / store.shard_relpath(key, 3)
        store.remove_entry(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    leftover = path.parent / f".{path.name}.dead01.tmp"
    leftover.write_bytes(b"\x93NUMPY partial")
    ModelSpace(methods=["saliency"], store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False).fit(specs, probe)
    assert not leftover.exists() and path.is_file()


@pytest.mark.slow
def test_two_processes_embedding_into_one_store_compute_each_unit_once(setup):
    s = setup
    procs = [subprocess.Popen(embed_cmd(s, "--json"), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    infos = [json.loads(out) for out, _ in outputs]
    computed = [i["work"]["computed"] for i in infos]
    # Between them, every unit exactly once (without claims both would compute all of them).
    assert sum(computed) == total_units(), computed
    assert all(i["work"]["computed"] + i["work"]["reused"] == total_units() for i in infos)
    assert all(c > 0 for c in computed), f"the processes did not overlap: {computed}"
    assert infos[0]["models"] == infos[1]["models"] == ["slow_0", "slow_1", "slow_2"]
    assert infos[0]["failures"] == infos[1]["failures"] == []
    assert manifest_rows(s["store"]) == total_units()
    with MapStore(s["store"]) as store:
        assert store.claims() == []
        for spec in load_zoo(s["zoo"]):
            model_key = store.model_key(spec.name)
            for method in ("saliency", "gradient_x_input"):
                key = EntryKey(model_key, ProbeSet.load(s["probe"]).hash, method, 16)
                assert store.missing(plan_units(key, spec.name, N_IMAGES, SHARD)) == []  # checksums verified
    shared = reference_affinity(s, s["store"])
    fresh = reference_affinity(s, s["root"] / "fresh_store")
    for method in shared:
        np.testing.assert_allclose(shared[method], fresh[method], atol=1e-6)
    print(f"\ntwo processes computed {computed} of {total_units()} units")


# ---------------------------------------------------------------------- shard layouts
def layout_units(store: MapStore) -> int:
    """Units of every entry in the store's layouts table (each entry covers N_IMAGES)."""
    rows = store.db.query("SELECT shard_size FROM layouts")
    return sum(-(-N_IMAGES // size) for (size,) in rows)


@pytest.mark.slow
def test_two_processes_with_different_shard_sizes_share_one_layout(setup):
    """Trial: `modelspace affinity` run twice at once on one store, with --shard-size 1 and 3: each
    superseded the other's shards (a size-3 write deletes the three size-1 rows it overlaps), both
    computed every unit (48 and 18) and both exited 1 after all the work with "rows 1..7 of model
    '631407ed…' (method 'saliency' …) are not in the store"."""
    s = setup
    outs = [s["root"] / f"out{size}" for size in (1, 3)]
    procs = [subprocess.Popen(embed_cmd(s, "--json", "--out", str(out), command="affinity", shard_size=size),
                              env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out, size in zip(outs, (1, 3))]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    infos = [json.loads(out) for out, _ in outputs]
    with MapStore(s["store"]) as store:
        n_units = layout_units(store)
        assert len(store.db.query("SELECT 1 FROM layouts")) == 3 * len(METHODS)
        assert manifest_rows(s["store"]) == n_units  # nothing superseded, nothing left over
        probe = ProbeSet.load(s["probe"])
        for spec in load_zoo(s["zoo"]):
            for method in METHODS:
                key = EntryKey(store.model_key(spec.name), probe.hash, method, 16)
                assert store.missing(store.plan(key, spec.name, N_IMAGES, 2)) == []  # checksums verified
    # Both planned the same units (the first planner's layout per entry) and computed each once between them.
    assert [i["work"]["computed"] + i["work"]["reused"] for i in infos] == [n_units, n_units]
    assert sum(i["work"]["computed"] for i in infos) == n_units, infos
    assert infos[0]["failures"] == infos[1]["failures"] == []
    fresh = reference_affinity(s, s["root"] / "fresh_store")
    for out in outs:
        for method, matrix in fresh.items():
            written, names = read_matrix(out / file_name("affinity", file_stem(method, list(fresh))))
            assert names == ["slow_0", "slow_1", "slow_2"]
            np.testing.assert_allclose(written, matrix, atol=1e-6)
    print(f"\nshard sizes 1 and 3 at once: {n_units} units, computed {[i['work']['computed'] for i in infos]}")


@pytest.mark.slow
def test_a_rerun_with_another_shard_size_reuses_every_stored_shard(setup, monkeypatch, caplog):
    """Trial: a store filled with --shard-size 1, then run with 3 and with 1 again: each run recomputed
    everything (16, 6, 16 units of two models) and superseded the other's shards."""
    s = setup
    specs, probe = load_zoo(s["zoo"]), ProbeSet.load(s["probe"])
    first = ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=SHARD), progress=False).fit(specs, probe)
    computed = count_computed(monkeypatch)
    caplog.set_level("WARNING", logger="modelspace")
    again = ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=3), progress=False).fit(specs, probe)
    assert computed == [] and map_units(again.work_) == {"computed": 0, "reused": total_units()}
    told = [r.getMessage() for r in caplog.records if "shards of" in r.getMessage()]
    assert len(told) == 3 and all("shards of 1 images" in t and "shard size 3" in t for t in told), told
    for method, result in again.results_.items():  # the cached pairs (the first fit's diagonal is computed: ulps)
        np.testing.assert_allclose(result.affinity, first.results_[method].affinity, atol=1e-6)
    # A store written before layouts were recorded: the layout is read off shard 0.
    with MapStore(s["store"]) as store, store.db.transaction() as cur:
        cur.execute("DELETE FROM layouts")
    ModelSpace(methods=METHODS, store=s["store"], executor=LocalExecutor(shard_size=3), progress=False).fit(specs, probe)
    assert computed == []
    # --recompute drops the layout with the maps: they are planned again with the size asked for.
    redo = ModelSpace(methods=["saliency"], store=s["store"], executor=LocalExecutor(shard_size=3), recompute=["slow_0"],
                      progress=False).fit(specs[:1], probe)
    assert map_units(redo.work_) == {"computed": 3, "reused": 0}
    assert sorted(computed) == [("slow_0", "saliency", shard) for shard in range(3)]
