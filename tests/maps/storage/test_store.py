"""Tests of the map store: shards, integrity checks, removal, affinity cache, work units."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modelspace.errors import InputError, StoreError
from modelspace.maps import EntryKey, MapStore, ShardInfo, WorkUnit, plan_units

PROBE = "ab" * 32
METHOD = "lrp_epsilon(epsilon=1e-06)"
N, SHAPE = 10, (3, 4, 4)
F = 3 * 4 * 4


def key_for(model_key, method=METHOD, probe_hash=PROBE, size=4):
    return EntryKey(model_key=model_key, probe_hash=probe_hash, method=method, probe_size=size)


def unit_normalised(maps):
    """Expected stored rows: each flattened map divided by its L2 norm."""
    rows = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    with MapStore(tmp_path / "store") as s:
        yield s


@pytest.fixture
def maps():
    rng = np.random.default_rng(1)
    # Rows on very different scales, to show normalisation is per row.
    scale = 10.0 ** rng.uniform(-3, 3, size=(N, 1, 1, 1))
    return (rng.standard_normal((N, *SHAPE)) * scale).astype(np.float32)


def write_all(store, key, maps, shard_size=4, name="model"):
    units = plan_units(key, name, len(maps), shard_size=shard_size)
    infos = [store.write(u, maps[u.start:u.stop]) for u in units]
    return units, infos


def test_plan_units_covers_images_in_shards():
    key = key_for("m1")
    units = plan_units(key, "resnet", 10, shard_size=4)
    assert [(u.shard, u.start, u.stop) for u in units] == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert all(u.key == key and u.model_name == "resnet" for u in units)
    with pytest.raises(InputError, match="shard_size"):
        plan_units(key, "resnet", 10, shard_size=0)


def test_write_read_round_trip_normalises_rows(store, maps):
    key = key_for("m1")
    _, infos = write_all(store, key, maps)
    assert all(isinstance(i, ShardInfo) and Path(i.path).is_file() for i in infos)
    out = store.read(key)
    assert out.dtype == np.float32 and out.shape == (N, F)
    np.testing.assert_allclose(out, unit_normalised(maps), atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=2e-3)
    assert store.is_complete(key, N)


def test_tiny_gradients_do_not_underflow(store, maps):
    key = key_for("m1")
    tiny = torch.from_numpy(maps.astype(np.float64) * 1e-12)  # far below float16's range
    write_all(store, key, tiny)
    np.testing.assert_allclose(store.read(key), unit_normalised(maps), atol=2e-3)


def test_read_across_shard_boundaries(store, maps):
    key = key_for("m1")
    write_all(store, key, maps, shard_size=3)
    expected = unit_normalised(maps)
    np.testing.assert_allclose(store.read(key, 2, 8), expected[2:8], atol=2e-3)
    np.testing.assert_allclose(store.read(key, 9, 10), expected[9:10], atol=2e-3)
    assert store.read(key, 4, 4).shape == (0, F)
    with pytest.raises(StoreError, match="rows 10..11"):
        store.read(key, 8, 12)


def test_read_only_loads_overlapping_shards(store, maps):
    key = key_for("m1")
    _, infos = write_all(store, key, maps)
    os.remove(infos[0].path)  # shard 0 gone: rows 4..9 must still be readable
    np.testing.assert_allclose(store.read(key, 4, 10), unit_normalised(maps)[4:], atol=2e-3)


def test_zero_and_nonfinite_rows_are_counted_and_zeroed(store, maps):
    key = key_for("m1")
    maps[1] = 0.0
    maps[5, 0, 0, 0] = np.nan
    maps[6, 2, 1, 1] = np.inf
    _, infos = write_all(store, key, maps)
    assert [(i.n_zero, i.n_nonfinite) for i in infos] == [(1, 0), (0, 2), (0, 0)]
    assert store.health(key) == {"n_zero": 1, "n_nonfinite": 2}
    out = store.read(key)
    assert np.all(out[[1, 5, 6]] == 0) and np.isfinite(out).all()
    good = [0, 2, 3, 4, 7, 8, 9]
    np.testing.assert_allclose(out[good], unit_normalised(maps[good]), atol=2e-3)
    assert store.health(key_for("other")) == {"n_zero": 0, "n_nonfinite": 0}


def test_write_checks_batch_size_and_feature_count(store, maps):
    key = key_for("m1")
    unit = plan_units(key, "resnet50", N, shard_size=4)[0]
    with pytest.raises(StoreError, match="resnet50"):
        store.write(unit, maps[:3])
    store.write(unit, maps[:4])
    second = plan_units(key, "resnet50", N, shard_size=4)[1]
    with pytest.raises(StoreError, match="resnet50.*48"):
        store.write(second, maps[4:8, :2])


def test_missing_lists_absent_deleted_and_corrupt_units(store, maps):
    key = key_for("m1")
    units = plan_units(key, "m", N, shard_size=4)
    assert store.missing(units) == units
    infos = {u.shard: store.write(u, maps[u.start:u.stop]) for u in (units[0], units[2])}
    assert store.missing(units) == [units[1]]
    assert not store.is_complete(key, N)

    os.remove(infos[0].path)
    assert store.missing(units) == [units[0], units[1]]
    assert not store.is_complete(key, N)
    with pytest.raises(StoreError, match=f"shard_{0:05d}.npy"):
        store.read(key, 0, 4)

    corrupt = Path(infos[2].path)
    payload = bytearray(corrupt.read_bytes())
    payload[-3] ^= 0x01  # one flipped bit in the data, same size
    corrupt.write_bytes(bytes(payload))
    assert store.missing(units) == units
    assert store.missing(units, verify=False) == [units[0], units[1]]  # size check only
    with pytest.raises(StoreError, match=str(corrupt)):
        store.read(key, 8, 10)

    # A rerun recomputes exactly what is missing and the entry is whole again.
    for unit in store.missing(units):
        store.write(unit, maps[unit.start:unit.stop])
    assert store.missing(units) == []
    np.testing.assert_allclose(store.read(key), unit_normalised(maps), atol=2e-3)


def test_missing_when_shard_size_changed(store, maps):
    key = key_for("m1")
    write_all(store, key, maps, shard_size=4)
    resharded = plan_units(key, "m", N, shard_size=5)
    assert store.missing(resharded) == resharded  # same shard numbers, other ranges
    for unit in resharded:
        store.write(unit, maps[unit.start:unit.stop])
    # The old shard 2 (rows 8..9) overlapped the new shard 1 and was dropped with its file.
    assert store.missing(resharded) == []
    np.testing.assert_allclose(store.read(key), unit_normalised(maps), atol=2e-3)
    files = sorted(p.name for p in Path(store.root, "arrays").rglob("*.npy"))
    assert files == ["shard_00000.npy", "shard_00001.npy"]


def test_layout_and_method_slugs(store, maps):
    a, b = key_for("c0ffee", method="a(b)"), key_for("c0ffee", method="a_b_")
    info_a = store.write(plan_units(a, "m", 2)[0], maps[:2])
    info_b = store.write(plan_units(b, "m", 2)[0], maps[2:4])
    rel = Path(info_a.path).relative_to(store.root).parts
    assert rel[:3] == ("arrays", "c0", "c0ffee")
    assert rel[4:] == (f"{PROBE[:16]}_4", "shard_00000.npy")
    assert info_a.path != info_b.path  # similar method ids never share a folder
    np.testing.assert_allclose(store.read(a), unit_normalised(maps[:2]), atol=2e-3)
    np.testing.assert_allclose(store.read(b), unit_normalised(maps[2:4]), atol=2e-3)


def test_remove_entry_and_remove_model(store, maps):
    k1, k2, k3 = key_for("m1"), key_for("m2"), key_for("m3")
    other_method = key_for("m1", method="saliency")
    for k in (k1, k2, k3, other_method):
        store.register_model(k.model_key, f"name_{k.model_key}", {"source": "python:x"})
    files = {k: [i.path for i in write_all(store, k, maps)[1]] for k in (k1, k2, other_method)}
    store.put_affinities([(k1, k2, 0.5), (k1, k3, 0.25), (k2, k3, 0.75)])

    assert store.remove_entry(other_method) == 3
    assert not any(os.path.exists(p) for p in files[other_method])

    assert store.remove_model("m1") == 3
    assert not any(os.path.exists(p) for p in files[k1])
    assert not (store.root / "arrays" / "m1").exists()  # empty folders pruned
    assert all(os.path.exists(p) for p in files[k2])
    assert store.get_affinity(k1, k2) is None and store.get_affinity(k3, k1) is None
    assert store.get_affinity(k2, k3) == 0.75
    assert [m["model_key"] for m in store.models()] == ["m2", "m3"]
    assert store.missing(plan_units(k1, "m", N, 4)) == plan_units(k1, "m", N, 4)


def test_failures_are_kept_per_entry_and_go_with_their_model(tmp_path):
    import sqlite3

    root = tmp_path / "store"
    with MapStore(root) as store:
        pass
    with sqlite3.connect(root / "manifest.sqlite") as conn:  # a store written before failures were kept
        conn.execute("DROP TABLE failures")
    with MapStore(root) as store:
        lrp, sal, other = key_for("m1"), key_for("m1", method="saliency"), key_for("m2")
        store.put_failure(lrp, "m1: no rule for layer_norm")
        store.put_failure(other, "m2: all maps zero")
        assert store.failure(lrp) == "m1: no rule for layer_norm" and store.failure(sal) is None
        store.put_failure(lrp, "m1: newer reason")
        assert store.failure(lrp) == "m1: newer reason"
    with MapStore(root) as store:  # kept across processes
        assert store.failure(lrp) == "m1: newer reason"
        store.clear_failure(lrp)
        assert store.failure(lrp) is None
        store.put_failure(lrp, "again")
        store.remove_entry(lrp)
        assert store.failure(lrp) is None
        store.remove_model("m2")
        assert store.failure(other) is None


def test_affinity_cache_is_symmetric(store):
    a, b, c = key_for("aa"), key_for("bb"), key_for("cc")
    assert store.get_affinity(a, b) is None
    store.put_affinities([(b, a, 0.7), (a, a, 1.0)])
    assert store.get_affinity(a, b) == 0.7 and store.get_affinity(b, a) == 0.7
    assert store.get_affinity(a, a) == 1.0
    assert store.get_affinity(a, c) is None
    store.put_affinities([(a, b, 0.1)])  # recomputed value replaces the old one
    assert store.get_affinity(b, a) == 0.1
    # Other method or probe: a different cache slot, and pairs across them are refused.
    assert store.get_affinity(key_for("aa", method="saliency"), key_for("bb", method="saliency")) is None
    with pytest.raises(InputError, match="method"):
        store.get_affinity(a, key_for("bb", method="saliency"))
    with pytest.raises(InputError, match="value"):
        store.put_affinities([(a, c, float("nan"))])


def test_affinities_among_reads_the_cache_in_one_query(store):
    a, b, c, other = key_for("aa"), key_for("bb"), key_for("cc"), key_for("dd")
    store.put_affinities([(b, a, 0.7), (c, a, 0.2), (other, a, 0.9)])
    assert store.affinities_among([a, b, c]) == {(0, 1): 0.7, (0, 2): 0.2}
    assert store.affinities_among([c, b, a]) == {(1, 2): 0.7, (0, 2): 0.2}  # indices follow the order given
    assert store.affinities_among([]) == {}
    with pytest.raises(InputError, match="keys"):
        store.affinities_among([a, key_for("bb", method="saliency")])


def test_a_shard_changed_after_a_verified_read_is_verified_again(store, maps):
    # Repeated reads skip re-hashing an unchanged file; a file changed in place must not be trusted.
    key = key_for("m1")
    _, infos = write_all(store, key, maps)
    for info in infos:  # aged, as files of an earlier run are: fresh files are always re-hashed
        os.utime(info.path, ns=(time.time_ns() - 10**10,) * 2)
    np.testing.assert_allclose(store.read(key, 0, 4), store.read(key, 0, 4))  # second read: mapped
    corrupt = Path(infos[0].path)
    payload = bytearray(corrupt.read_bytes())
    payload[-3] ^= 0x01
    corrupt.write_bytes(bytes(payload))
    with pytest.raises(StoreError, match="checksum"):
        store.read(key, 0, 4)


def test_put_affinities_is_one_transaction(store):
    a, b = key_for("aa"), key_for("bb")
    bad = key_for("cc", probe_hash="ff" * 32)

    def pairs():
        yield a, b, 0.3
        yield a, bad, 0.4  # invalid pair: nothing of this batch may be stored

    with pytest.raises(InputError, match="probe_hash"):
        store.put_affinities(pairs())
    assert store.get_affinity(a, b) is None


def test_models_registry_upsert_and_latest(store):
    store.register_model("k1", "resnet", {"source": "timm:resnet18", "layer": "fc"})
    store.register_model("k2", "resnet", {"source": "timm:resnet18", "layer": "avgpool"})
    store.register_model("k3", "vit", {"source": "hf:vit"})
    assert store.model_key("resnet") == "k2"
    assert store.model_key("unknown") is None
    store.register_model("k1", "resnet", {"source": "timm:resnet18", "layer": "fc"})
    assert store.model_key("resnet") == "k1"
    models = store.models()
    assert [m["model_key"] for m in models] == ["k2", "k3", "k1"]
    assert models[2]["spec"] == {"source": "timm:resnet18", "layer": "fc"}
    with pytest.raises(InputError, match="vit"):
        store.register_model("k4", "vit", {"bad": object()})
    # `remove` and `gc` find models by key, name (every key under it) or unique key prefix.
    assert [m["model_key"] for m in store.match_models("k3")] == ["k3"]
    assert [m["model_key"] for m in store.match_models("resnet")] == ["k2", "k1"]
    assert [m["model_key"] for m in store.match_models("k")] == ["k2", "k3", "k1"]  # ambiguous prefix
    assert store.match_models("nothing") == [] and store.match_models("") == []


def test_a_store_that_must_exist_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="store 'nope' does not exist"):
        MapStore("nope", create=False)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="is not a map store"):
        MapStore(tmp_path / "plain", create=False)
    assert list((tmp_path / "plain").iterdir()) == []


def test_work_unit_json_round_trip():
    unit = WorkUnit(key_for("m1"), "resnet", shard=2, start=512, stop=600)
    text = json.dumps(unit.to_dict())
    assert WorkUnit.from_dict(json.loads(text)) == unit
    with pytest.raises(InputError, match="stop"):
        WorkUnit.from_dict({k: v for k, v in unit.to_dict().items() if k != "stop"})
    with pytest.raises(InputError, match="stop"):
        WorkUnit(key_for("m1"), "resnet", shard=0, start=5, stop=5)


def test_entry_key_validation():
    with pytest.raises(InputError, match="model_key"):
        key_for("../escape")
    with pytest.raises(InputError, match="probe_size"):
        key_for("m1", size=0)
    with pytest.raises(InputError, match="method"):
        key_for("m1", method="")


def test_reopened_store_sees_everything(tmp_path, maps):
    root = tmp_path / "store"
    key, other = key_for("m1"), key_for("m2")
    with MapStore(root) as first:
        first.register_model("m1", "resnet", {"source": "python:a"})
        write_all(first, key, maps)
        first.put_affinities([(key, other, 0.42)])
        before = first.read(key)
    with MapStore(root) as again:
        (model,) = again.models()
        assert {k: model[k] for k in ("model_key", "name", "spec")} == {"model_key": "m1", "name": "resnet",
                                                                         "spec": {"source": "python:a"}}
        assert model["n_shards"] == len(again.db.query("SELECT path FROM shards")) and model["first_stored"]
        assert again.model_key("resnet") == "m1"
        assert again.is_complete(key, N)
        np.testing.assert_array_equal(again.read(key), before)
        assert again.get_affinity(other, key) == 0.42
        assert again.missing(plan_units(key, "resnet", N, 4)) == []


def test_two_store_objects_share_one_root(tmp_path, maps):
    root = tmp_path / "store"
    key = key_for("m1")
    units = plan_units(key, "m", N, 4)
    with MapStore(root) as one, MapStore(root) as two:
        one.write(units[0], maps[0:4])
        two.write(units[1], maps[4:8])
        one.write(units[2], maps[8:10])
        assert two.missing(units) == [] and one.missing(units) == []
        np.testing.assert_array_equal(one.read(key), two.read(key))


def test_bad_root_and_bad_manifest_name_the_file(tmp_path):
    not_a_folder = tmp_path / "plain_file"
    not_a_folder.write_text("x")
    with pytest.raises(StoreError, match="plain_file"):
        MapStore(not_a_folder)
    root = tmp_path / "broken_store"
    root.mkdir()
    (root / "manifest.sqlite").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StoreError, match="manifest.sqlite"):
        MapStore(root)


def test_prepared_forms_round_trip_and_go_with_their_entry_and_model(store, caplog):
    """A model's prepared baseline forms are entries like its maps: kept with a checksum, dropped by
    `remove_entry` and `remove_model`, and a damaged file is named and given as missing."""
    dds, rsa = key_for("m1", method="prepared:dds"), key_for("m1", method="prepared:rsa")
    other = key_for("m2", method="prepared:dds")
    arrays = {"item0": np.arange(6.0).reshape(2, 3), "item1": np.asarray(2.5), "is_tuple": np.asarray(True)}
    for key in (dds, rsa, other):
        store.put_prepared(key, arrays)
    got = store.get_prepared(dds)
    assert set(got) == set(arrays) and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    assert store.get_prepared(key_for("m1", method="prepared:svcca")) is None

    path = next(p for p in (store.root / "arrays").rglob("prepared.npz") if "m2" in p.parts)
    path.write_bytes(path.read_bytes().replace(b"\x00", b"\x01", 1))
    with caplog.at_level("WARNING"):
        assert store.get_prepared(other) is None
    assert str(path) in caplog.text and "damaged" in caplog.text
    path.unlink()
    assert store.get_prepared(other) is None  # missing: computed again, also with a message
    store.put_prepared(other, arrays)
    assert store.get_prepared(other) is not None

    store.remove_entry(rsa)
    assert store.get_prepared(rsa) is None and store.get_prepared(dds) is not None
    store.remove_model("m1")
    assert store.get_prepared(dds) is None
    assert [p.parts[-5] for p in (store.root / "arrays").rglob("prepared.npz")] == ["m2"]


# ---------------------------------------------------------------------- units bound to their identity
def test_the_bound_checksum_covers_every_identity_field_and_the_bytes():
    from modelspace.maps.storage.keys import bound_checksum
    from modelspace.maps.storage.store import shard_identity

    identity = shard_identity(key_for("m1"), shard=1, start=4, stop=8, n_features=F, n_zero=0, n_nonfinite=0)
    checksum = bound_checksum(identity, "ab" * 32)
    assert bound_checksum(dict(reversed(identity.items())), "ab" * 32) == checksum  # canonical: order-free
    assert bound_checksum(identity, "ac" * 32) != checksum
    for field, value in identity.items():
        other = {**identity, field: value + 1 if isinstance(value, int) else value + "x"}
        assert bound_checksum(other, "ab" * 32) != checksum, field


def test_health_counts_only_rows_that_match_their_checksum(store, maps, caplog):
    """An edited count is not the maps' own: the row is named, counts nothing, and its unit is missing."""
    key = key_for("m1")
    units, infos = write_all(store, key, maps)
    with store.db.transaction() as cur:
        cur.execute("UPDATE shards SET n_nonfinite = 3 WHERE shard = 1")
    with caplog.at_level("WARNING"):
        assert store.health(key) == {"n_zero": 0, "n_nonfinite": 0}
        assert store.missing(units) == [units[1]]
    assert caplog.text.count(infos[1].path) == 1 and "does not match its checksum" in caplog.text
    with pytest.raises(StoreError, match="does not match its checksum"):
        store.read(key)


def test_each_file_carries_its_identity_and_its_model_in_a_sidecar(store, maps):
    key = key_for("m1")
    store.register_model("m1", "resnet", {"source": "python:a"})
    _, infos = write_all(store, key, maps)
    sidecar = json.loads(Path(infos[2].path).with_suffix(".json").read_text())
    assert sidecar["identity"] == {"kind": "shard", "model_key": "m1", "probe_hash": PROBE, "method": METHOD,
                                   "probe_size": 4, "shard": 2, "start": 8, "stop": 10, "n_features": F, "n_zero": 0,
                                   "n_nonfinite": 0}
    assert sidecar["model"] == {"name": "resnet", "spec": {"source": "python:a"}}
    from modelspace.maps.storage.files import file_sha256
    assert sidecar["sha256"] == file_sha256(Path(infos[2].path))
    store.remove_model("m1")
    assert not (store.root / "arrays" / "m1").exists()  # sidecars go with their files


def schema_3(root: Path) -> None:
    """Make a store what modelspace wrote before files carried their identity (schema version 3): rows
    whose checksum is their file's sha256, no ``sha256`` columns, no sidecars."""
    import sqlite3

    with sqlite3.connect(root / "manifest.sqlite") as conn:
        for table in ("shards", "sketches", "prepared"):
            conn.execute(f"UPDATE {table} SET checksum = sha256")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN sha256")
        conn.execute("PRAGMA user_version = 3")
    for sidecar in root.rglob("*.json"):
        sidecar.unlink()


def test_a_schema_3_store_is_used_as_it_is_and_signed(tmp_path, maps, caplog):
    """Stores written before files carried their identity keep working with nothing recomputed: a row is
    used when its path is its identity's and its file checks out, then signed and given its sidecar. A
    row that fails (a count edited, a path of another shard) is named and its unit missing."""
    import sqlite3

    from modelspace.maps.storage.keys import bound_checksum

    root, key, other = tmp_path / "store", key_for("m1"), key_for("m2")
    arrays = {"item0": np.arange(6.0).reshape(2, 3)}
    with MapStore(root) as store:
        store.register_model("m1", "resnet", {"source": "python:a"})
        units, _ = write_all(store, key, maps)
        other_units, _ = write_all(store, other, maps)
        store.put_prepared(key_for("m1", method="prepared:dds"), arrays)
        store.put_sketch(key, 8, 0, np.ones((N, 8)))
        before = store.read(key)
    schema_3(root)
    with sqlite3.connect(root / "manifest.sqlite") as conn:
        conn.execute("UPDATE shards SET n_nonfinite = 1 WHERE model_key = 'm2' AND shard = 0")
        conn.execute("UPDATE shards SET path = (SELECT path FROM shards WHERE model_key = 'm2' AND shard = 2) "
                     "WHERE model_key = 'm2' AND shard = 1")
    with MapStore(root) as store, caplog.at_level("WARNING"):
        assert store.missing(units) == []
        assert store.missing(other_units) == other_units[:2]
        np.testing.assert_array_equal(store.read(key), before)
        assert store.get_prepared(key_for("m1", method="prepared:dds"))["item0"].tolist() == arrays["item0"].tolist()
        assert store.get_sketch(key, 8, 0).shape == (N, 8)
        rows = store.db.query("SELECT model_key, shard, checksum, sha256 FROM shards ORDER BY model_key, shard")
    assert "holds 0 all-zero maps" in caplog.text and "bound to another unit" in caplog.text
    signed = {(k, s): (c, d) for k, s, c, d in rows if d is not None}
    assert sorted(signed) == [("m1", 0), ("m1", 1), ("m1", 2), ("m2", 2)]
    sidecars = {}
    for (model, shard), (checksum, digest) in signed.items():
        sidecar = (root / store.shard_relpath(key_for(model), shard)).with_suffix(".json")
        sidecars[model] = json.loads(sidecar.read_text())
        assert sidecars[model]["sha256"] == digest and checksum == bound_checksum(sidecars[model]["identity"], digest)
    assert sidecars["m1"]["model"] == {"name": "resnet", "spec": {"source": "python:a"}}
    assert "model" not in sidecars["m2"]  # never registered
    with MapStore(root) as store:  # signed rows are used as any other
        assert store.missing(units) == [] and store.db.query("PRAGMA user_version") == [(4,)]


def test_rebuild_makes_the_manifest_anew_from_the_sidecars(tmp_path, maps, caplog):
    """`rebuild` keeps the old manifest aside and enters every unit whose file matches its sidecar; a file
    with no sidecar, bytes the sidecar does not hash to, or a count its maps do not hold is left out."""
    import sqlite3

    root = tmp_path / "store"
    keys = {name: key_for(name) for name in ("m1", "m2")}
    with MapStore(root) as store:
        for name, key in keys.items():
            store.register_model(name, f"net_{name}", {"source": f"python:{name}"})
            write_all(store, key, maps)
        store.put_prepared(key_for("m1", method="prepared:dds"), {"a": np.ones(3)})
        store.put_sketch(keys["m2"], 8, 0, np.ones((N, 8)))
        store.put_affinities([(keys["m1"], keys["m2"], 0.5)])
        store.put_failure(key_for("m1", method="saliency"), "no")
        units = {name: store.plan(key, name, N, 4) for name, key in keys.items()}
        expected = {name: store.read(key) for name, key in keys.items()}
        paths = {name: [root / store.shard_relpath(key, s) for s in range(3)] for name, key in keys.items()}
    paths["m2"][0].with_suffix(".json").unlink()  # no sidecar
    flipped = bytearray(paths["m2"][1].read_bytes())
    flipped[-2] ^= 0x10
    paths["m2"][1].write_bytes(bytes(flipped))  # bytes of another sha256
    sidecar = json.loads(paths["m2"][2].with_suffix(".json").read_text())
    sidecar["identity"]["n_zero"] = 2  # a count its maps do not hold
    paths["m2"][2].with_suffix(".json").write_text(json.dumps(sidecar))
    old = (root / "manifest.sqlite").read_bytes()

    with caplog.at_level("WARNING"):
        done = MapStore.rebuild(root)
    assert (done["models"], done["shards"], done["sketches"], done["prepared"]) == (2, 3, 1, 1)
    assert sorted(Path(item["path"]).name for item in done["left_out"]) == ["shard_00000.npy", "shard_00001.json",
                                                                          "shard_00002.json"]
    assert all(item["path"] in caplog.text for item in done["left_out"])
    assert Path(done["kept"]).read_bytes() == old
    with MapStore(root) as store:
        assert [(m["model_key"], m["name"], m["spec"]) for m in store.models()] == [
            ("m1", "net_m1", {"source": "python:m1"}), ("m2", "net_m2", {"source": "python:m2"})]
        assert store.missing(units["m1"]) == [] and store.missing(units["m2"]) == units["m2"]
        np.testing.assert_array_equal(store.read(keys["m1"]), expected["m1"])
        assert store.get_prepared(key_for("m1", method="prepared:dds"))["a"].tolist() == [1, 1, 1]
        assert store.get_sketch(keys["m2"], 8, 0) is not None
        assert store.get_affinity(keys["m1"], keys["m2"]) is None  # caches start empty
        assert store.failure(key_for("m1", method="saliency")) is None
    with sqlite3.connect(root / "manifest.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with pytest.raises(InputError, match="no arrays folder"):
        MapStore.rebuild(tmp_path / "nothing")


def test_a_manifest_left_open_by_a_killed_process_is_checked_and_opens(tmp_path, maps):
    """A ``-wal`` file with the last transactions of a process that never closed the manifest passes the
    integrity check, and its transactions are kept."""
    import shutil
    import sqlite3

    root, copy = tmp_path / "store", tmp_path / "copy"
    with MapStore(root) as store:
        write_all(store, key_for("m1"), maps)
        held = sqlite3.connect(root / "manifest.sqlite")
        held.execute("PRAGMA wal_autocheckpoint = 0")
        held.execute("INSERT INTO failures VALUES ('m2', ?, ?, 4, 'late', 'now')", (PROBE, METHOD))
        held.commit()
        shutil.copytree(root, copy)  # what a kill -9 leaves: the manifest and its WAL, never checkpointed
        held.close()
    assert (copy / "manifest.sqlite-wal").stat().st_size > 0
    with MapStore(copy) as store:
        assert store.failure(key_for("m2")) == "late"
        assert store.missing(plan_units(key_for("m1"), "m", N, 4)) == []


# ------------------------------------------------------------------ removal while another process computes
def test_a_model_removed_by_another_process_is_neither_claimed_nor_written_again(tmp_path, maps):
    from modelspace.errors import ModelRemovedError

    key = key_for("m1")
    with MapStore(tmp_path / "store") as embed, MapStore(tmp_path / "store") as other:
        embed.register_model("m1", "one", {"source": "python:x"})
        units = embed.plan(key, "one", N, 4)
        embed.write(units[0], maps[:4])
        assert other.remove_model("m1") == 1
        folder = embed.root / "arrays" / "m1"[:2] / "m1"
        assert not folder.exists()
        for attempt in (lambda: embed.write(units[1], maps[4:8]), lambda: embed.claims_.claim(units[1:], "owner"),
                        lambda: embed.plan(key, "one", N, 4), lambda: embed.put_failure(key, "reason"),
                        lambda: embed.put_prepared(key_for("m1", method="prepared:x"), {"a": np.ones(3)})):
            with pytest.raises(ModelRemovedError, match="model 'one' was removed from the store"):
                attempt()
        assert not folder.exists()  # the files written before the check were deleted
        for table in ("shards", "layouts", "failures", "prepared", "claims"):
            assert embed.db.query(f"SELECT COUNT(*) FROM {table}") == [(0,)]
        embed.register_model("m1", "one", {"source": "python:x"})  # registered again: written again
        embed.write(units[1], maps[4:8])
        other.write(plan_units(key_for("m2"), "two", 4, 4)[0], maps[:4])  # never registered here: as before
        assert embed.db.query("SELECT COUNT(*) FROM shards") == [(2,)]


def test_remove_model_waits_for_a_unit_in_flight_naming_its_holder(store, maps, caplog):
    key = key_for("m1")
    store.register_model("m1", "one", {"source": "python:x"})
    units = write_all(store, key, maps)[0]
    folder = store.root / "arrays" / "m1"[:2] / "m1"
    sidecar = Path(store.root / store.shard_relpath(key, 0)).with_suffix(".extra")
    sidecar.write_text("a file no row names")
    writing = sidecar.with_name(".shard_00001.npy.123.tmp")  # a write in progress (fresh): left to its writer
    left = sidecar.with_name(".shard_00002.npy.456.tmp")  # a killed write of long ago
    writing.write_bytes(b"x")
    left.write_bytes(b"x")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    now = time.time()
    with store.db.transaction() as cur:  # a process on another host computes unit 1, its heartbeat fresh
        cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*(key.model_key, key.probe_hash, key.method, key.probe_size), 1, "o", 4242, "elsewhere", now))
        cur.execute("INSERT INTO heartbeats VALUES (?, ?, ?, ?, ?)", ("o", 4242, "elsewhere", now, now))
    start = time.monotonic()
    assert store.remove_model("m1", wait=0.6) == len(units)
    assert time.monotonic() - start >= 0.6
    holder = [r.getMessage() for r in caplog.records if "pid 4242 on host elsewhere" in r.getMessage()]
    assert len(holder) == 2 and "waiting up to 1 s" in holder[0] and "still computes" in holder[1], holder
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [writing.name]
    assert store.models() == [] and store.db.query("SELECT COUNT(*) FROM shards") == [(0,)]
    assert store.db.query("SELECT pid FROM claims") == [(4242,)]  # its holder releases it


def test_orphans_are_the_keys_no_model_is_registered_under_and_no_live_process_claims(store, maps):
    store.register_model("kept", "kept", {"source": "python:x"})
    for model_key in ("kept", "gone", "busy"):
        write_all(store, key_for(model_key), maps)
    store.put_affinities([(key_for("kept"), key_for("gone"), 0.5)])
    stray = store.root / "arrays" / "st" / "stray"
    stray.mkdir(parents=True)
    (stray / "file.npy").write_bytes(b"x")
    now = time.time()
    with store.db.transaction() as cur:  # a live process computes a unit of "busy" (registered after it)
        cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ("busy", PROBE, METHOD, 4, 0, "o", 4242, "elsewhere", now))
        cur.execute("INSERT INTO heartbeats VALUES (?, ?, ?, ?, ?)", ("o", 4242, "elsewhere", now, now))
    expected = {"gone": {"rows": 3 + 1, "files": 3}, "stray": {"rows": 0, "files": 1}}  # its shards and its pair
    assert store.orphans() == expected
    assert store.remove_orphans() == expected
    assert store.orphans() == {}
    assert not (store.root / "arrays" / "go").exists() and not (store.root / "arrays" / "st").exists()
    assert store.get_affinity(key_for("kept"), key_for("gone")) is None
    assert store.read(key_for("kept")).shape == (N, F) and store.read(key_for("busy")).shape == (N, F)
