"""Issue 7, items 3 and 4: crashes and concurrency, with real processes.

- a `modelspace embed` subprocess is killed with SIGKILL once some shards are in the manifest; the
  rerun computes exactly the units that were not written, and the result equals an uninterrupted run;
- shard files corrupted on disk (a flipped byte, a truncation) and a temporary file left by a killed
  write are detected and recomputed / removed, never read as data;
- two `modelspace embed` processes started at once on one store finish with the same, complete
  result and compute every unit exactly once between them.
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

from conftest import subprocess_env
from modelspace import ModelSpace, ProbeSet
from modelspace.maps import executor
from modelspace.errors import StoreError
from modelspace.models import load_zoo
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


def embed_cmd(s: dict, *extra: str) -> list[str]:
    return [sys.executable, "-m", "modelspace.cli", "embed", str(s["zoo"]), str(s["probe"]), "--store", str(s["store"]),
            "--shard-size", str(SHARD), "--methods", *METHODS, "--quiet", *extra]


def total_units() -> int:
    return 3 * len(METHODS) * (N_IMAGES // SHARD)


def manifest_rows(store: Path, table: str = "shards") -> int:
    try:
        with sqlite3.connect(f"file:{store / 'manifest.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def count_computed(monkeypatch) -> list[tuple[str, str, int]]:
    computed: list[tuple[str, str, int]] = []
    original = executor.run_units

    def counting(units, *args, **kwargs):
        computed.extend((u.model_name, u.key.method, u.shard) for u in units)
        return original(units, *args, **kwargs)

    monkeypatch.setattr(executor, "run_units", counting)
    return computed


def reference_affinity(s: dict, store: Path) -> dict:
    space = ModelSpace(methods=METHODS, store=store, shard_size=SHARD, progress=False)
    space.fit(load_zoo(s["zoo"]), ProbeSet.load(s["probe"]))
    return {k: r.affinity for k, r in space.results_.items()}


def test_kill_9_mid_run_loses_only_the_unit_in_flight_and_a_rerun_resumes(setup, monkeypatch):
    s = setup
    proc = subprocess.Popen(embed_cmd(s), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while manifest_rows(s["store"]) < 5:  # some shards written, most not
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the embed process wrote nothing in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    written = manifest_rows(s["store"])
    assert 5 <= written < total_units()
    # The killed process held a claim on the shard it was computing: it must not block the rerun.
    assert manifest_rows(s["store"], "claims") >= 1

    computed = count_computed(monkeypatch)
    space = ModelSpace(methods=METHODS, store=s["store"], shard_size=SHARD, progress=False)
    space.embed(load_zoo(s["zoo"]), ProbeSet.load(s["probe"]))
    assert space.failures_ == []
    # Exactly the missing units were computed, each once; nothing written before the kill was redone.
    assert len(computed) == len(set(computed)) == total_units() - written
    n_rerun = len(computed)
    assert space.work_ == {"computed": total_units() - written, "reused": written}
    with MapStore(s["store"]) as store:
        assert store.claims() == []
        assert list(store.root.rglob("*.tmp")) == []
    resumed = reference_affinity(s, s["store"])
    fresh = reference_affinity(s, s["root"] / "fresh_store")
    for method in resumed:
        np.testing.assert_allclose(resumed[method], fresh[method], atol=1e-6)
    print(f"\nkill -9 after {written}/{total_units()} units; rerun computed {n_rerun}")


def test_corrupt_and_partial_shard_files_are_detected_and_recomputed(setup, monkeypatch):
    s = setup
    specs, probe = load_zoo(s["zoo"]), ProbeSet.load(s["probe"])
    first = ModelSpace(methods=METHODS, store=s["store"], shard_size=SHARD, progress=False).fit(specs, probe)
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
    again = ModelSpace(methods=METHODS, store=s["store"], shard_size=SHARD, progress=False).fit(specs, probe)
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
    space = ModelSpace(methods=["saliency"], store=s["store"], shard_size=SHARD, progress=False).fit(specs, probe)
    key = space.members_["slow_0"].entries["saliency"]
    with MapStore(s["store"]) as store:
        path = store.root / store.shard_relpath(key, 3)
        store.remove_entry(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    leftover = path.parent / f".{path.name}.dead01.tmp"
    leftover.write_bytes(b"\x93NUMPY partial")
    ModelSpace(methods=["saliency"], store=s["store"], shard_size=SHARD, progress=False).fit(specs, probe)
    assert not leftover.exists() and path.is_file()


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
