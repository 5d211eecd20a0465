"""Property-based tests (hypothesis) of the evaluation: P@K and R@K lie in [0, 1], R@K never decreases
with K and reaches 1, P@K · K = R@K · n_relevant (both count hits), and the oracle ranking scores exactly
the oracle curves (1 on the relevant set). Example counts are small so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelspace.evaluation import GroundTruth, evaluate, oracle_curves
from modelspace.similarity import rank_sources

SETTINGS = settings(max_examples=30, deadline=None)


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
