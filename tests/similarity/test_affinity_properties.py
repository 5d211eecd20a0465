"""Property-based tests (hypothesis) of the affinity: the streamed matrix equals the naive per-pair loop,
is symmetric, has a unit diagonal, a model has affinity 1 with itself, and it is invariant to any
positive scaling of a model's maps (one factor per model or one per image), through the store's own
normalisation; negating a model's maps negates its row; adding a model by `affinity_row` gives the
matrix's row; permuting models permutes the matrix. Example counts are small so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from support.maps import names, store_readers
from modelspace.similarity import affinity_matrix, affinity_naive, affinity_row

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def model_maps(draw, max_models=5):
    """Maps of 1..max_models models over the same probe images; no row close to zero."""
    n_models = draw(st.integers(1, max_models))
    n_images = draw(st.integers(1, 7))
    n_features = draw(st.integers(2, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maps = [rng.normal(size=(n_images, n_features)) for _ in range(n_models)]
    return [m + np.sign(m) * 0.05 for m in maps]  # keeps every entry away from 0


# float16 storage: 11-bit mantissa, so cosines agree to about 1e-3.
TOL = 3e-3


@SETTINGS
@given(maps=model_maps(), budget=st.integers(1, 2000))
def test_streamed_matrix_matches_naive_and_is_a_proper_similarity(maps, budget):
    n = len(maps)
    a = affinity_matrix(store_readers(maps), len(maps[0]), names(n), memory_budget=budget, progress=False)
    assert a.shape == (n, n) and np.isfinite(a).all()
    assert np.array_equal(a, a.T)
    np.testing.assert_allclose(np.diag(a), 1.0, atol=TOL)
    assert np.all(np.abs(a) <= 1 + TOL)
    np.testing.assert_allclose(a, affinity_naive(maps), atol=TOL)


@SETTINGS
@given(maps=model_maps(max_models=3))
def test_a_model_has_affinity_one_with_itself(maps):
    twice = [maps[0], maps[0].copy()]
    np.testing.assert_allclose(affinity_matrix(store_readers(twice), len(maps[0]), ["a", "b"], progress=False), 1.0,
                               atol=TOL)
    np.testing.assert_allclose(affinity_naive(twice), 1.0, atol=1e-12)


@SETTINGS
@given(maps=model_maps(), data=st.data())
def test_invariant_to_positive_scaling_per_model_and_per_image(maps, data):
    n, n_images = len(maps), len(maps[0])
    exponents = st.floats(-6, 6, allow_nan=False)
    per_model = [10.0 ** data.draw(exponents) for _ in range(n)]
    per_image = [np.array([10.0 ** data.draw(exponents) for _ in range(n_images)])[:, None] for _ in range(n)]
    scaled = [m * c * s for m, c, s in zip(maps, per_model, per_image)]
    base = affinity_matrix(store_readers(maps), n_images, names(n), progress=False)
    np.testing.assert_allclose(affinity_matrix(store_readers(scaled), n_images, names(n), progress=False), base, atol=TOL)
    np.testing.assert_allclose(affinity_naive(scaled), affinity_naive(maps), atol=1e-9)
    # A negative factor is not a positive scaling: it flips the sign of the model's row.
    flipped = [-maps[0], *maps[1:]]
    sign = np.ones(n)
    sign[0] = -1
    expected = affinity_naive(maps) * sign[:, None] * sign[None, :]
    np.testing.assert_allclose(affinity_naive(flipped), expected, atol=1e-9)


@SETTINGS
@given(maps=model_maps(), budget=st.integers(1, 2000), data=st.data())
def test_added_row_and_permutation_agree_with_the_matrix(maps, budget, data):
    n, n_images = len(maps), len(maps[0])
    a = affinity_matrix(store_readers(maps), n_images, names(n), memory_budget=budget, progress=False)
    if n >= 2:
        r = store_readers(maps)
        row = affinity_row(r[0], r[1:], n_images, names(n), memory_budget=budget, progress=False)
        np.testing.assert_allclose(row, a[0, 1:], atol=1e-6)
    order = data.draw(st.permutations(range(n)))
    permuted = affinity_matrix(store_readers([maps[i] for i in order]), n_images, names(n), progress=False)
    np.testing.assert_allclose(permuted, a[np.ix_(order, order)], atol=1e-6)
