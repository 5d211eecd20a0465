"""Every stored unit bound to its identity and bytes. Each test reproduces a trial through
`modelspace run` as a user types it, after editing the store with sqlite3 or on disk:
rows swapped between shards, a counter edited, a WAL file of another store, shard files damaged."""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from support.runs import map_units
from modelspace.cli import main
from modelspace.results import read_matrix

pytestmark = pytest.mark.slow  # end to end, each test a run or several: the fast loop leaves the file out

WIDTHS = {"a": 4, "b": 6, "c": 8, "d": 12}  # one toy model each: other weights, other maps
MODEL = ('[[model]]\nname = "{name}"\nsource = "python:toy_models:tiny_cnn"\nkwargs = {{ width = {width} }}\n'
         'input_size = 16\n\n')


@pytest.fixture
def files(tmp_path) -> dict:
    """A saved probe set of 8 images at 16 px, and a helper writing a zoo of toy models by name."""
    from modelspace import ProbeSet

    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.random.default_rng(0).uniform(0, 1, (8, 3, 16, 16)).astype(np.float32)).save(probe)

    def zoo(*names: str) -> Path:
        path = tmp_path / f"zoo_{''.join(names)}.toml"
        path.write_text("".join(MODEL.format(name=n, width=WIDTHS[n]) for n in names))
        return path

    return {"root": tmp_path, "probe": probe, "zoo": zoo}


def run(files: dict, names: str, store: str, out: str) -> int:
    """`modelspace run` of the models ``names`` in shards of 4 images (saliency only; warnings shown)."""
    root = files["root"]
    return main(["run", str(files["zoo"](*names)), str(files["probe"]), "--store", str(root / store),
                 "--out", str(root / out), "--methods", "saliency", "--shard-size", "4", "--no-report"])


def affinity(files: dict, out: str) -> np.ndarray:
    return read_matrix(files["root"] / out / "affinity_saliency.csv")[0]


def shard_rows(files: dict, store: str, name: str) -> list[tuple]:
    """(shard, path, checksum, nbytes) of a model's rows, by shard."""
    with sqlite3.connect(files["root"] / store / "manifest.sqlite") as conn:
        return conn.execute("SELECT shard, path, checksum, nbytes FROM shards WHERE model_key = "
                            "(SELECT model_key FROM models WHERE name = ?) ORDER BY shard", (name,)).fetchall()


@pytest.fixture
def clean(files) -> np.ndarray:
    """The saliency affinity of models a, b and c computed in a fresh store."""
    assert run(files, "abc", "clean_store", "clean") == 0
    return affinity(files, "clean")


# ---------------------------------------------------------------------- rows bound to their unit
def test_two_shard_rows_swapped_in_the_manifest_are_recomputed_not_read(files, clean, capsys) -> None:
    """Trial: the path, checksum and nbytes of two shard rows of one model swapped with sqlite3 (shards of
    4 images), then a run with one more model: it exited 0 with no warning, and the saliency affinity
    was 0.650605 where a clean run gives 0.649743. Each file matched its own row's checksum; nothing
    bound a row's image range, model and method to the bytes."""
    assert run(files, "ab", "store", "out") == 0
    (_, path0, sum0, size0), (_, path1, sum1, size1) = shard_rows(files, "store", "a")
    with sqlite3.connect(files["root"] / "store" / "manifest.sqlite") as conn:
        for path, checksum, nbytes, shard in ((path1, sum1, size1, 0), (path0, sum0, size0, 1)):
            conn.execute("UPDATE shards SET path = ?, checksum = ?, nbytes = ? WHERE shard = ? AND model_key = "
                         "(SELECT model_key FROM models WHERE name = 'a')", (path, checksum, nbytes, shard))
    capsys.readouterr()
    assert run(files, "abc", "store", "again") == 0
    err = capsys.readouterr().err
    np.testing.assert_allclose(affinity(files, "again"), clean, atol=1e-6)
    for path in (path0, path1):  # one warning per row, naming the file it named
        assert err.count(str(files["root"] / "store" / path)) == 1, err
    assert "bound to another unit" in err
    assert [row[1] for row in shard_rows(files, "store", "a")] == [path0, path1]  # rewritten in place


# ---------------------------------------------------------------------- counters under the checksum
def test_an_edited_nonfinite_counter_neither_fails_the_model_nor_is_remembered(files, clean, capsys) -> None:
    """Trial: ``shards.n_nonfinite`` set to 3 on an intact shard with sqlite3: the model was recorded as
    failed ("3 of 8 maps are not finite"), and later runs skipped it as failed before. A model fails
    only on what its maps hold."""
    assert run(files, "ab", "store", "out") == 0
    (_, path0, _, _), _ = shard_rows(files, "store", "a")
    with sqlite3.connect(files["root"] / "store" / "manifest.sqlite") as conn:
        conn.execute("UPDATE shards SET n_nonfinite = 3 WHERE shard = 0 AND model_key = "
                     "(SELECT model_key FROM models WHERE name = 'a')")
    capsys.readouterr()
    assert run(files, "abc", "store", "again") == 0
    err = capsys.readouterr().err
    assert "not finite" not in err
    assert err.count(str(files["root"] / "store" / path0)) == 1, err
    np.testing.assert_allclose(affinity(files, "again"), clean, atol=1e-6)
    assert run(files, "abc", "store", "third") == 0  # nothing recorded as failed before
    summary = json.loads((files["root"] / "third" / "results.json").read_text())
    assert summary["failures"] == [] and map_units(summary["work"]) == {"computed": 0, "reused": 6}


# ---------------------------------------------------------------------- a WAL file of another store
def test_a_wal_file_of_another_store_is_refused_and_the_manifest_rebuilt_from_the_files(files, clean, capsys) -> None:
    """Trial: the ``-wal`` file of another store (copied while a connection held it open, so that it held
    frames) put beside a store's manifest: the run exited 0; ``PRAGMA integrity_check`` then reported
    rows missing from an index, and later runs kept exiting 0 on the corrupt manifest."""
    from modelspace.maps import EntryKey, MapStore, plan_units

    root = files["root"]
    assert run(files, "ab", "store", "out") == 0
    gc.collect()  # the run's store connection closes when collected: the manifest is closed cleanly
    manifest = root / "store" / "manifest.sqlite"
    assert not Path(f"{manifest}-wal").exists()
    other = root / "other"
    with MapStore(other) as store:  # another store with two models of its own
        for i, name in enumerate("cd"):
            key = EntryKey(f"{i}e" * 8, "ab" * 32, "saliency", 16)
            store.register_model(key.model_key, name, {"source": "test"})
            for unit in plan_units(key, name, 8, 4):
                store.write(unit, np.ones((4, 3, 16, 16), np.float32))
    held = sqlite3.connect(other / "manifest.sqlite")
    held.execute("PRAGMA wal_autocheckpoint = 0")
    held.execute("UPDATE models SET seq = seq + 1")
    held.commit()
    shutil.copy(other / "manifest.sqlite-wal", f"{manifest}-wal")
    held.close()
    before = manifest.read_bytes(), Path(f"{manifest}-wal").read_bytes()

    capsys.readouterr()
    assert run(files, "abc", "store", "again") == 3
    err = capsys.readouterr().err
    assert str(manifest) in err and "modelspace rebuild --store" in err, err
    assert (manifest.read_bytes(), Path(f"{manifest}-wal").read_bytes()) == before  # left as found

    assert main(["rebuild", "--store", str(root / "store"), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["models"], done["shards"], done["left_out"]) == (2, 4, [])
    assert (Path(done["kept"]).read_bytes(), Path(f"{done['kept']}-wal").read_bytes()) == before  # kept aside, whole
    with sqlite3.connect(manifest) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert run(files, "abc", "store", "rebuilt") == 0
    summary = json.loads((root / "rebuilt" / "results.json").read_text())
    assert map_units(summary["work"]) == {"computed": 2, "reused": 4}  # only c's maps computed
    np.testing.assert_allclose(affinity(files, "rebuilt"), clean, atol=1e-6)


# ---------------------------------------------------------------------- damaged files named
def damage(store: Path, how: str, paths: list[Path]) -> list[Path]:
    """Damage shard files of one model as ``how`` says; returns the files a message must name."""
    first, second = paths
    if how == "truncated":
        first.write_bytes(first.read_bytes()[:100])
    elif how == "flipped":
        data = bytearray(first.read_bytes())
        data[-5] ^= 0x40
        first.write_bytes(bytes(data))
    elif how == "deleted":
        first.unlink()
    else:  # two files swapped on disk
        tmp = first.with_name("swap")
        first.rename(tmp)
        second.rename(first)
        tmp.rename(second)
        return [first, second]
    return [first]


@pytest.mark.parametrize("how", ["truncated", "flipped", "deleted", "swapped"])
def test_a_damaged_shard_file_is_named_once_and_computed_again(files, clean, how, capsys) -> None:
    """Trial: a shard file truncated, with a byte flipped, deleted, or swapped with another on disk was
    computed again and the result was right, but no message named the file or said what was found."""
    assert run(files, "ab", "store", "out") == 0
    paths = [files["root"] / "store" / row[1] for row in shard_rows(files, "store", "a")]
    named = damage(files["root"] / "store", how, paths)
    capsys.readouterr()
    assert run(files, "abc", "store", "again") == 0
    err = capsys.readouterr().err
    for path in named:
        assert err.count(str(path)) == 1, err
    found = {"truncated": "truncated", "flipped": "checksum mismatch", "deleted": "missing",
             "swapped": "checksum mismatch"}[how]
    assert found in err and "computed again" in err, err
    np.testing.assert_allclose(affinity(files, "again"), clean, atol=1e-6)
    summary = json.loads((files["root"] / "again" / "results.json").read_text())
    assert map_units(summary["work"]) == {"computed": 2 + len(named), "reused": 4 - len(named)}
