"""The random-projection sketch estimates the exact affinity, with an error that shrinks with its length."""

from __future__ import annotations

import numpy as np
import pytest

from modelspace.affinity import affinity_naive
from modelspace.errors import InputError
from modelspace.sketch import MapSketcher, sketched_affinity


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
