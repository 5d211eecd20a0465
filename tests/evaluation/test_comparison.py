"""The paired comparison of estimators: the bootstrap interval and `compare_estimators` against hand
computations, and ties that are not distinguishable."""

from __future__ import annotations

import numpy as np
import pytest

from modelspace.errors import InputError
from modelspace.evaluation import (Bootstrap, Evaluation, GroundTruth, bootstrap_interval, compare_estimators,
                                   evaluate_matrices)


def test_bootstrap_interval_of_two_targets_is_their_range() -> None:
    # Two targets: a resample's mean is d1, (d1+d2)/2 or d2 with chances 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % points are d1 and d2 themselves.
    assert bootstrap_interval([0.0, 1.0], Bootstrap(n_resamples=2000, seed=0)) == (0.0, 1.0)
    assert bootstrap_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))  # no spread, no interval
    assert bootstrap_interval([0.5, -1.0, 2.0], Bootstrap(seed=3)) == bootstrap_interval([0.5, -1.0, 2.0], Bootstrap(seed=3))
    with pytest.raises(InputError, match="values"):
        bootstrap_interval([])
    with pytest.raises(InputError, match="level"):
        Bootstrap(level=1.5)
    with pytest.raises(InputError, match="n_resamples"):
        Bootstrap(n_resamples=0)


def tiny_evaluation() -> Evaluation:
    """Four tasks; 'good' ranks each target's truth exactly, 'poor' backwards, 'same' like 'good' on a and b."""
    tasks = ["a", "b", "c", "d"]
    truth = GroundTruth({"a": ["b", "c", "d"], "b": ["a", "c", "d"], "c": ["d", "a", "b"], "d": ["c", "b", "a"]})
    good = np.array([[1, .9, .5, .1], [.9, 1, .5, .1], [.5, .3, 1, .9], [.1, .5, .9, 1]])
    poor = np.array([[1, .1, .5, .9], [.1, 1, .5, .9], [.5, .9, 1, .1], [.9, .5, .1, 1]])
    return evaluate_matrices({"good": (good, tasks), "poor": (poor, tasks)}, truth, n_relevant=1)


def test_compare_estimators_against_a_hand_computation() -> None:
    ev = tiny_evaluation()
    # n_relevant 1, 3 candidates: P@1 of 'good' is 1 on every target, of 'poor' 0 on every target;
    # random's expectation is 1/3 per target.
    c = compare_estimators(ev, k=1)
    assert c.metric == "P@1" and c.best == "good" and c.n_targets == 4
    assert c.scores == pytest.approx({"good": 1.0, "poor": 0.0, "random": 1 / 3})
    assert (c.vs_runner_up.other, c.vs_runner_up.mean, c.vs_runner_up.low, c.vs_runner_up.high) == ("poor", 1, 1, 1)
    assert c.vs_random.mean == pytest.approx(2 / 3) and c.vs_random.distinguishable
    # ρ: 'good' orders every target's three candidates as the truth does (ρ = 1); 'poor' reverses each, e.g.
    # for c the truth is (d, a, b) and 'poor' gives b .9, a .5, d .1: rank differences (2, 0, 2), so
    # ρ = 1 − 6·8 / (3·8) = −1.
    r = compare_estimators(ev, metric="rho")
    assert r.metric == "ρ" and r.scores == pytest.approx({"good": 1.0, "poor": -1.0, "random": 0.0})
    assert r.vs_runner_up.mean == pytest.approx(2.0)


def test_a_tie_is_not_distinguishable() -> None:
    ev = tiny_evaluation()
    twin = Evaluation({**ev.methods, "twin": ev.methods["good"]}, ev.n_candidates, ev.n_relevant,
                      {**ev.per_target, "twin": ev.per_target["good"]})
    c = compare_estimators(twin, k=1)
    assert c.vs_runner_up.other == "twin" and c.vs_runner_up.mean == 0 and not c.vs_runner_up.distinguishable
