"""Issue 7, item 7: property-based tests (hypothesis) of the affinity and the evaluation.

Affinity: the streamed matrix equals the naive per-pair loop, is symmetric, has a unit diagonal, a
model has affinity 1 with itself, and it is invariant to any positive scaling of a model's maps (one
factor per model or one per image), through the store's own normalisation; negating a model's maps
negates its row; adding a model by `affinity_row` gives the matrix's row; permuting models permutes
the matrix. Evaluation: P@K and R@K lie in [0, 1], R@K never decreases with K and reaches 1, P@K · K =
R@K · n_relevant (both count hits), and the oracle ranking scores exactly the oracle curves (1 on the
relevant set). Example counts are small so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from support.maps import names, store_readers
from modelspace.evaluation import GroundTruth, evaluate, oracle_curves
from modelspace.similarity import affinity_matrix, affinity_naive, affinity_row, rank_sources

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


# --------------------------------------------------------------------------- evaluation


@st.composite
def truth_and_estimate(draw):
    """A ground truth over n tasks (each target ranks all others), an estimated ranking, n_relevant."""
    n = draw(st.integers(2, 9))
    tasks = [f"t{i}" for i in range(n)]
    truth = {t: draw(st.permutations([s for s in tasks if s != t])) for t in tasks}
    estimate = {t: draw(st.permutations([s for s in tasks if s != t])) for t in tasks}
    n_relevant = draw(st.integers(1, n - 1))
    return GroundTruth(truth), estimate, n_relevant


@SETTINGS
@given(case=truth_and_estimate())
def test_precision_and_recall_are_bounded_and_consistent(case):
    truth, estimate, n_relevant = case
    curves, details = evaluate(estimate, truth, n_relevant)
    p, r, ks = np.array(curves.precision), np.array(curves.recall), np.array(curves.ks)
    assert list(ks) == list(range(1, len(truth.targets)))
    assert np.all((p >= 0) & (p <= 1 + 1e-12)) and np.all((r >= 0) & (r <= 1 + 1e-12))
    assert np.all(np.diff(r) >= -1e-12)  # recall never falls as K grows
    assert r[-1] == 1.0  # every candidate ranked: every relevant source found by the last K
    np.testing.assert_allclose(p * ks, r * n_relevant, atol=1e-9)  # both count the same hits
    for d in details.values():
        assert all(0 <= h <= min(k, n_relevant) for k, h in zip(ks, d["hits_at_k"]))


@SETTINGS
@given(case=truth_and_estimate())
def test_the_oracle_ranking_scores_the_oracle_curves(case):
    truth, _, n_relevant = case
    curves, _ = evaluate(truth.ranking, truth, n_relevant)
    oracle = oracle_curves(len(curves.ks), n_relevant)
    np.testing.assert_allclose(curves.precision, oracle.precision, atol=1e-12)
    np.testing.assert_allclose(curves.recall, oracle.recall, atol=1e-12)
    assert curves.at(n_relevant) == (1.0, 1.0)  # P@K = R@K = 1 exactly on the relevant set
    assert all(p == 1.0 for p in curves.precision[:n_relevant])


@SETTINGS
@given(case=truth_and_estimate(), data=st.data())
def test_an_affinity_that_orders_sources_like_the_truth_is_the_oracle(case, data):
    """Through rank_sources: any matrix whose row order follows the truth scores like the oracle,
    whatever the actual values (only the order matters)."""
    truth, _, n_relevant = case
    tasks = truth.targets
    n = len(tasks)
    a = np.eye(n)
    for i, t in enumerate(tasks):
        values = sorted((data.draw(st.floats(-1, 0.999)) for _ in range(n - 1)), reverse=True)
        if len(set(values)) < len(values):  # ties would be broken by name, not by the truth
            values = list(np.linspace(0.9, -0.9, n - 1))
        for value, source in zip(values, truth.ranking[t]):
            a[i, tasks.index(source)] = value
    curves, _ = evaluate(rank_sources(a, tasks), truth, n_relevant)
    np.testing.assert_allclose(curves.precision, oracle_curves(n - 1, n_relevant).precision, atol=1e-12)
