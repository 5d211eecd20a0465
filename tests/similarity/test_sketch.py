"""The random-projection sketch estimates the exact affinity, with an error that shrinks with its length."""

from __future__ import annotations

import numpy as np
import pytest

from modelspace.similarity import affinity_naive
from modelspace.errors import InputError
from modelspace.similarity import MapSketcher, sketched_affinity
from modelspace.maps import Runtime


def correlated_maps(n_models=6, n_images=40, n_features=5000, seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n_images, n_features))
    return [shared * rng.uniform(0.2, 2.0) + rng.normal(size=(n_images, n_features)) * rng.uniform(0.3, 3.0)
            for _ in range(n_models)]


def test_sketch_error_shrinks_with_its_length():
    maps = correlated_maps()
    exact = affinity_naive(maps)
    errors = {}
    for dim in (32, 512):
        sketcher = MapSketcher(dim=dim, seed=1)
        est = sketched_affinity([sketcher.sketch(lambda s, e, m=m: m[s:e], len(m)) for m in maps])
        errors[dim] = np.abs(est - exact).max()
        np.testing.assert_allclose(np.diag(est), 1.0, rtol=1e-6)
        np.testing.assert_allclose(est, est.T)
    assert errors[512] < 0.03
    assert errors[512] < errors[32] / 2  # ~1/√k: 4× less error for 16× the length


def test_sketch_is_blockwise_consistent_and_scale_free():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(5, 9000))  # spans three projection blocks
    sketcher = MapSketcher(dim=64, seed=7)
    np.testing.assert_allclose(sketcher.sketch_rows(rows), sketcher.sketch_rows(rows * 3.5), rtol=1e-4, atol=1e-5)
    # Chunked reading gives the same sketch as one read; the same seed gives the same projection.
    whole = sketcher.sketch_rows(rows)
    np.testing.assert_allclose(MapSketcher(dim=64, seed=7, chunk=2).sketch(lambda s, e: rows[s:e], 5), whole, rtol=1e-4, atol=1e-5)
    assert not np.allclose(MapSketcher(dim=64, seed=8).sketch_rows(rows), whole)


def test_bad_sketch_input_is_named():
    with pytest.raises(InputError, match="dim"):
        MapSketcher(dim=0)
    with pytest.raises(InputError, match="'b'"):
        sketched_affinity([np.ones((3, 4)), np.ones((3, 5))], names=["a", "b"])
    with pytest.raises(InputError, match="'a'"):
        sketched_affinity([np.zeros((3, 4))], names=["a"])


# ------------------------------------------------------------------ the sketch inside a ModelSpace and its store


@pytest.fixture(scope="module")
def zoo_and_probe():
    import torch

    from modelspace.models import load_zoo
    from modelspace.probe import ProbeSet
    from modelspace.world.build import ZOO_DIR

    by_name = {s.name: s for s in load_zoo(ZOO_DIR / "zoo.toml")}
    specs = [by_name[n] for n in ("depth_z", "edges2d", "normals", "object_class")]
    gen = torch.Generator().manual_seed(2)
    return specs, ProbeSet.from_array(torch.randint(0, 256, (32, 3, 48, 48), dtype=torch.uint8, generator=gen))


@pytest.mark.slow
def test_modelspace_sketch_estimates_the_exact_space_and_never_rereads_sketched_maps(zoo_and_probe, tmp_path,
                                                                                    monkeypatch):
    from modelspace import ModelSpace
    from modelspace.maps import MapStore

    specs, probe = zoo_and_probe
    kw = dict(methods=["saliency"], progress=False, runtime=Runtime(batch_size=16))
    exact = ModelSpace(store=tmp_path / "exact", **kw).fit(specs, probe).results_["saliency"].affinity
    sketched = ModelSpace(store=tmp_path / "sketch", sketch=1024, **kw).fit(specs[:3], probe)
    np.testing.assert_allclose(np.diag(sketched.results_["saliency"].affinity), 1.0, rtol=1e-6)
    assert np.abs(sketched.results_["saliency"].affinity - exact[:3, :3]).max() < 0.05

    reads = []
    original = MapStore.read
    monkeypatch.setattr(MapStore, "read", lambda self, key, *a, **k: reads.append(key.model_key) or original(self, key, *a, **k))
    again = ModelSpace(store=tmp_path / "sketch", sketch=1024, **kw).fit(specs[:3], probe)
    assert reads == []  # maps and sketches are all stored: nothing is read but the sketches
    np.testing.assert_allclose(again.results_["saliency"].affinity, sketched.results_["saliency"].affinity)
    again.add(specs[3])
    assert set(reads) == {again.members_[specs[3].name].key}  # only the new model's maps, to sketch them
    assert np.abs(again.results_["saliency"].affinity - exact).max() < 0.05
    with pytest.raises(InputError, match="sketch"):
        ModelSpace(sketch=0, **kw).fit(specs[:1], probe)


def test_stored_sketches_follow_their_maps(tmp_path):
    from modelspace.maps import EntryKey, MapStore, plan_units

    store = MapStore(tmp_path)
    key = EntryKey("m" * 8, "p" * 16, "saliency", 4)
    units = plan_units(key, "m", 6, shard_size=3)
    maps = np.random.default_rng(0).normal(size=(6, 3, 4, 4)).astype(np.float32)
    for u in units:
        store.write(u, maps[u.start:u.stop])
    sketch = MapSketcher(dim=8).sketch(lambda s, e: store.read(key, s, e), 6)
    store.put_sketch(key, 8, 0, sketch)
    np.testing.assert_array_equal(store.get_sketch(key, 8, 0), sketch)
    assert store.get_sketch(key, 16, 0) is None and store.get_sketch(key, 8, 1) is None
    path = next(tmp_path.rglob("sketch_d8_s0.npy"))
    path.write_bytes(path.read_bytes()[:-4])  # corrupt: refused, so the caller recomputes it
    assert store.get_sketch(key, 8, 0) is None
    store.put_sketch(key, 8, 0, sketch)
    store.write(units[1], maps[3:6] * 2)  # new maps: the sketch made from the old ones is gone
    assert store.get_sketch(key, 8, 0) is None and not list(tmp_path.rglob("sketch_*.npy"))
    store.put_sketch(key, 8, 0, sketch)
    store.remove_model(key.model_key)
    assert store.get_sketch(key, 8, 0) is None and not list(tmp_path.rglob("sketch_*.npy"))
