"""A store and a results folder written by an earlier version open with the current code.

``tests/data/old_store`` was written by commit 6760817 (``scripts/make_old_store.py`` says how): its
estimator ids, with aliases, parameters, a rules version, bf16 precision, SmoothGrad, integrated
gradients and a transform, must name the same stored maps now, so that a run over it computes no map
again and finds the affinities the earlier run found.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from modelspace import ModelSpace, load_zoo
from modelspace import results as results_module
from modelspace.maps import LocalExecutor, Runtime
from modelspace.probe import ProbeSet

DATA = Path(__file__).parent / "data" / "old_store"


def _script():
    spec = importlib.util.spec_from_file_location("make_old_store", DATA.parents[2] / "scripts" / "make_old_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def old(tmp_path):
    """A copy of the old data (a run writes to its store), with the run settings that wrote it."""
    shutil.copytree(DATA, tmp_path / "old")
    return tmp_path / "old", _script()


def _fit(folder: Path, methods, baselines=(), precision="fp32") -> ModelSpace:
    space = ModelSpace(methods=methods, baselines=baselines, store=folder / "store", runtime=Runtime(precision=precision),
                       executor=LocalExecutor(shard_size=3), progress=False)
    return space.fit(load_zoo(folder / "zoo.toml"), ProbeSet.load(folder / "probe.npz"))


def _stored_affinities(store: Path) -> dict[tuple[str, str, str], float]:
    """The pair affinities an earlier run cached, by (method key, model name, model name), read directly."""
    with contextlib.closing(sqlite3.connect(store / "manifest.sqlite")) as db:
        names = dict(db.execute("SELECT model_key, name FROM models"))
        return {(method, names[a], names[b]): value
                for method, a, b, value in db.execute("SELECT method, model_a, model_b, value FROM affinities")}


def test_a_store_written_before_resumes_with_nothing_computed(old):
    folder, script = old
    cached = _stored_affinities(folder / "store")
    _, written, _ = results_module.load(folder / "results")
    space = _fit(folder, script.FP32_METHODS, script.BASELINES)
    try:
        assert space.work_["computed"] == 0 and space.work_["reused"] == 3 * len(script.FP32_METHODS)
        # every estimator of the earlier run, under the id the earlier run gave it
        assert set(space.results_) == set(written)
        for method in space.methods_:
            now = space.results_[method.id]
            keys = {space.members_[n].entries[method.id].method for n in now.names}
            assert len(keys) == 1
            key = keys.pop()
            for i, a in enumerate(now.names):
                for j, b in enumerate(now.names[i + 1:], i + 1):
                    pair = (key, a, b) if (key, a, b) in cached else (key, b, a)
                    assert now.affinity[i, j] == cached[pair], (method.id, a, b)
        for estimator, earlier in written.items():  # the CSV keeps 6 decimals
            now = space.results_[estimator]
            assert now.names == earlier.names
            np.testing.assert_allclose(now.affinity, earlier.affinity, rtol=0, atol=5e-7, err_msg=estimator)
    finally:
        space.store_.close()


def test_bf16_maps_written_before_are_found_under_their_precision(old):
    folder, script = old
    space = _fit(folder, script.BF16_METHODS, precision="bf16")
    try:
        assert space.work_["computed"] == 0 and space.work_["reused"] == 3
        # the same method in fp32 is other data: none of it is stored
        assert [r.id for r in space.results_.values()] == ["lrp_epsilon(epsilon=0.01)"]
    finally:
        space.store_.close()
    fp32 = _fit(folder, script.BF16_METHODS)
    try:
        assert fp32.work_["computed"] == 3
        assert not np.array_equal(fp32.results_["lrp_epsilon(epsilon=0.01)"].affinity,
                                  space.results_["lrp_epsilon(epsilon=0.01)"].affinity)
    finally:
        fp32.store_.close()


def test_a_results_folder_written_before_loads(old):
    folder, _ = old
    settings, loaded, _ = results_module.load(folder / "results")
    written = json.loads((folder / "results" / "results.json").read_text())
    assert list(loaded) == [*written["methods"], *written["baselines"]]
    for estimator, result in loaded.items():
        stem = results_module.file_stem(estimator, list(loaded))
        matrix, names = results_module.read_matrix(folder / "results" / results_module.file_name("affinity", stem))
        assert result.names == names and np.array_equal(result.affinity, matrix)
    assert settings["methods"] == written["methods"]
