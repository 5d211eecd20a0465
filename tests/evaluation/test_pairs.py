"""Two estimators compared (evaluation.pairs): the difference matrix, the Correlation–Priority Curve and
the agreement of the trees, on a 4-model case worked out by hand and against the paper's formula
transcribed directly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from modelspace.errors import InputError
from modelspace.evaluation import (BOOTSTRAP, Bootstrap, Comparisons, GroundTruth, bootstrap_interval,
                                   bootstrap_intervals, compare_pair, correlation_priority, default_pairs,
                                   difference_matrix, normalised, pair_comparisons, priority_order, truth_order)
from modelspace.results import MethodResult

NAMES = ["a", "b", "c", "d"]
# A: the attribution affinity, which ranks the sources.
A = np.array([[1.0, 0.9, 0.5, 0.2],
              [0.9, 1.0, 0.4, 0.3],
              [0.5, 0.4, 1.0, 0.8],
              [0.2, 0.3, 0.8, 1.0]])
# B: the representation similarity (SVCCA in the paper), ρ.
B = np.array([[1.0, 0.6, 0.2, 0.4],
              [0.6, 1.0, 0.3, 0.1],
              [0.2, 0.3, 1.0, 0.7],
              [0.4, 0.1, 0.7, 1.0]])
TRUTH = GroundTruth({"a": ["c", "b", "d"], "b": ["a", "d", "c"], "c": ["d", "b", "a"], "d": ["c", "a", "b"]})


def paper_cpc(rank: dict[tuple[int, int], int], rho: np.ndarray, p: int) -> float:
    """correlation(p) = (1/N) Σᵢ Σⱼ 𝟙(rankᵢ(j) = p) ρᵢⱼ, as the paper writes it."""
    n = len(rho)
    return sum((1.0 if rank.get((i, j)) == p else 0.0) * rho[i, j] for i in range(n) for j in range(n)) / n


def ranks_by_hand() -> dict[tuple[int, int], int]:
    # By A: a → b (.9), c (.5), d (.2); b → a (.9), c (.4), d (.3); c → d (.8), a (.5), b (.4);
    # d → c (.8), b (.3), a (.2).
    ranked = {0: [1, 2, 3], 1: [0, 2, 3], 2: [3, 0, 1], 3: [2, 1, 0]}
    return {(i, j): p for i, order in ranked.items() for p, j in enumerate(order, start=1)}


def test_the_curve_of_the_hand_worked_case() -> None:
    # p = 1: ρ(a,b) + ρ(b,a) + ρ(c,d) + ρ(d,c) = .6 + .6 + .7 + .7 → 2.6 / 4
    # p = 2: ρ(a,c) + ρ(b,c) + ρ(c,a) + ρ(d,b) = .2 + .3 + .2 + .1 → 0.8 / 4
    # p = 3: ρ(a,d) + ρ(b,d) + ρ(c,b) + ρ(d,a) = .4 + .1 + .3 + .4 → 1.2 / 4
    by_hand = [0.65, 0.20, 0.30]
    curve = correlation_priority(priority_order(A, NAMES), B)
    assert curve.priorities == [1, 2, 3]
    assert np.allclose(curve.mean, by_hand)
    assert np.allclose(curve.mean, [paper_cpc(ranks_by_hand(), B, p) for p in (1, 2, 3)])
    assert curve.n_targets == [4, 4, 4]
    # Random order: each target's mean ρ over its three sources, averaged.
    assert curve.chance == pytest.approx(np.mean([(0.6 + 0.2 + 0.4) / 3, (0.6 + 0.3 + 0.1) / 3,
                                                  (0.2 + 0.3 + 0.7) / 3, (0.4 + 0.1 + 0.7) / 3]))


def test_each_band_is_the_bootstrap_over_targets_of_that_point() -> None:
    curve = correlation_priority(priority_order(A, NAMES), B)
    per_target = {1: [0.6, 0.6, 0.7, 0.7], 2: [0.2, 0.3, 0.2, 0.1], 3: [0.4, 0.1, 0.3, 0.4]}
    for p, values in per_target.items():
        low, high = bootstrap_interval(values, BOOTSTRAP)
        assert curve.at(p)[1:] == pytest.approx((low, high))
        assert low <= curve.at(p)[0] <= high


def test_the_oracles_curve_reads_the_truths_ranking() -> None:
    kept, order = truth_order(TRUTH, NAMES)
    assert kept == [0, 1, 2, 3]
    assert order == [[2, 1, 3], [0, 3, 2], [3, 1, 0], [2, 0, 1]]
    # p = 1: ρ(a,c) + ρ(b,a) + ρ(c,d) + ρ(d,c) = .2 + .6 + .7 + .7; p = 2: .6 + .1 + .3 + .4; p = 3: .4 + .3 + .2 + .1
    assert np.allclose(correlation_priority(order, B).mean, [2.2 / 4, 1.4 / 4, 1.0 / 4])


def test_a_target_ranking_fewer_sources_leaves_the_mean_at_that_priority() -> None:
    order = [[1, 2, 3], [0, 2, 3], [3, 0, 1], [2, 1]]  # d ranks two sources only
    curve = correlation_priority(order, B)
    assert curve.n_targets == [4, 4, 3]
    assert curve.mean[2] == pytest.approx((0.4 + 0.1 + 0.3) / 3)
    low, high = bootstrap_intervals(np.array([[0.4], [0.1], [0.3], [np.nan]]), Bootstrap(200, 1, 0.9))
    assert 0.1 <= low[0] <= high[0] <= 0.4


def test_the_difference_matrix_of_the_hand_worked_case() -> None:
    # A's off-diagonal spans .2 to .9 (÷ .7), B's .1 to .7 (÷ .6); B − A after each is normalised.
    by_hand = np.array([[0.0, 5 / 6 - 1, 1 / 6 - 3 / 7, 1 / 2 - 0],
                        [5 / 6 - 1, 0.0, 2 / 6 - 2 / 7, 0 - 1 / 7],
                        [1 / 6 - 3 / 7, 2 / 6 - 2 / 7, 0.0, 1 - 6 / 7],
                        [1 / 2 - 0, 0 - 1 / 7, 1 - 6 / 7, 0.0]])
    assert np.allclose(difference_matrix(A, B), by_hand)
    assert normalised(np.full((3, 3), 0.5)).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(InputError, match="shape"):
        difference_matrix(A, B[:3, :3])


def test_a_pair_compared_in_the_order_of_the_ranking_estimators_tree() -> None:
    a = MethodResult("saliency", NAMES, NAMES, A)
    b = MethodResult("svcca", NAMES, NAMES, B, kind="baseline")
    pair = compare_pair(a, b, TRUTH)
    assert pair.names == [NAMES[i] for i in hierarchy.leaves_list(a.linkage)]
    at = [NAMES.index(n) for n in pair.names]
    assert np.allclose(pair.difference, difference_matrix(A, B)[np.ix_(at, at)])
    assert np.allclose(pair.curves["ranking"].mean, [0.65, 0.20, 0.30])
    # B's own order: a .6/.4/.2, b .6/.3/.1, c .7/.3/.2, d .7/.4/.1 → 2.6, 1.4, 0.6 over 4
    assert np.allclose(pair.curves["self"].mean, [0.65, 0.35, 0.15])
    assert np.allclose(pair.curves["oracle"].mean, [0.55, 0.35, 0.25])
    cophenetic = [squareform(hierarchy.cophenet(r.linkage)) for r in (a, b)]
    upper = np.triu_indices(4, 1)
    assert pair.agreement == pytest.approx(np.corrcoef(cophenetic[0][upper], cophenetic[1][upper])[0, 1])


def test_default_pairs_and_the_json_form() -> None:
    runs = [MethodResult("saliency", NAMES, NAMES, A), MethodResult("lrp_epsilon", NAMES, NAMES, (A + B) / 2),
            MethodResult("svcca", NAMES, NAMES, B, kind="baseline")]
    assert default_pairs(runs) == [("saliency", "svcca"), ("saliency", "lrp_epsilon")]
    assert default_pairs(runs, [("svcca", "lrp_epsilon")])[0] == ("svcca", "lrp_epsilon")
    with pytest.raises(InputError, match="'dds' is not one of the estimators"):
        default_pairs(runs, [("saliency", "dds")])
    done = pair_comparisons(runs, TRUTH)
    assert [(p.ranking, p.similarity) for p in done.pairs] == [("saliency", "svcca"), ("saliency", "lrp_epsilon")]
    assert set(done.oracle) == {"saliency", "lrp_epsilon", "svcca"}
    # the oracle's curve against svcca's normalised matrix: B's values mapped by (ρ − .1) / .6
    assert np.allclose(done.oracle["svcca"].mean, [(np.array([0.2, 0.6, 0.7, 0.7]) - 0.1).mean() / 0.6,
                                                    (np.array([0.6, 0.1, 0.3, 0.4]) - 0.1).mean() / 0.6,
                                                    (np.array([0.4, 0.3, 0.2, 0.1]) - 0.1).mean() / 0.6])
    back = Comparisons.from_dict(done.to_dict())
    assert back.to_dict() == done.to_dict()
    assert np.allclose(back.pair("saliency", "svcca").difference, done.pairs[0].difference, atol=5e-5)
