"""P@K, R@K and Spearman's ρ against closed forms and hand-worked examples, the random and oracle
curves, and the evaluation's report and table."""

import json
from importlib import resources

import numpy as np
import pytest

from modelspace.errors import GroundTruthError, InputError
from modelspace.evaluation import (
    Curves,
    Evaluation,
    GroundTruth,
    evaluate,
    evaluation_report,
    format_table,
    oracle_curves,
    random_curves,
    spearman,
)
from modelspace.similarity import rank_sources

AFFINITY_CSV = resources.files("modelspace").joinpath("data").joinpath("truth").joinpath("taskonomy_affinity.csv")


# --------------------------------------------------------------------------- bundled Taskonomy


def test_truth_evaluated_against_itself_gives_the_oracle(taskonomy):
    curves, details = evaluate(taskonomy.ranking, taskonomy)
    assert len(details) == 18
    assert curves.ks == list(range(1, 20))
    expected_p = [1.0] * 5 + [5 / k for k in range(6, 20)]
    expected_r = [min(k, 5) / 5 for k in range(1, 20)]
    np.testing.assert_allclose(curves.precision, expected_p, atol=1e-12)
    np.testing.assert_allclose(curves.recall, expected_r, atol=1e-12)
    oracle = oracle_curves(19, 5)
    np.testing.assert_allclose(oracle.precision, expected_p, atol=1e-12)
    np.testing.assert_allclose(oracle.recall, expected_r, atol=1e-12)
    # ranked through from_matrix on the published affinities, too
    matrix_truth = GroundTruth.from_csv(AFFINITY_CSV)
    curves2, _ = evaluate(matrix_truth.ranking, taskonomy)
    np.testing.assert_allclose(curves2.precision, expected_p, atol=1e-12)


def test_reversed_truth_is_the_worst_ranking(taskonomy):
    # The 5 relevant sources land at positions 15..19: hits at K = max(0, K - 14).
    reversed_ranking = {t: r[::-1] for t, r in taskonomy.ranking.items()}
    curves, _ = evaluate(reversed_ranking, taskonomy)
    hits = np.maximum(0, np.arange(1, 20) - 14)
    np.testing.assert_allclose(curves.precision, hits / np.arange(1, 20), atol=1e-12)
    np.testing.assert_allclose(curves.recall, hits / 5, atol=1e-12)


def test_random_permutations_average_to_random_curves(taskonomy):
    rng = np.random.default_rng(0)
    reps = 300
    p = np.zeros(19)
    r = np.zeros(19)
    for _ in range(reps):
        ranking = {t: list(rng.permutation(c)) for t, c in taskonomy.ranking.items()}
        curves, _ = evaluate(ranking, taskonomy)
        p += curves.precision
        r += curves.recall
    expected = random_curves(19, 5)
    assert expected.precision[0] == pytest.approx(5 / 19)
    # Std of the mean P@1 over 18 targets × 300 reps is about 0.006; 0.03 is five of those.
    np.testing.assert_allclose(p / reps, expected.precision, atol=0.03)
    np.testing.assert_allclose(r / reps, expected.recall, atol=0.03)
    np.testing.assert_allclose(expected.recall, np.arange(1, 20) / 19)


# --------------------------------------------------------------------------- hand-worked example


TINY = "target,rank1,rank2,rank3\na,b,c,d\nb,c,a,d\n"


def test_tiny_example_by_hand(write, tmp_path):
    truth = GroundTruth.from_csv(write(tmp_path, TINY))
    estimate = {
        "a": ["zzz", "d", "a", "b", "c"],  # unknown source and the target itself are dropped
        "b": ["c", "d", "a"],
        "d": ["a", "b", "c"],  # not a ground-truth target: skipped
    }
    curves, details = evaluate(estimate, truth, n_relevant=2)
    # a: relevant {b, c}; ranked d, b, c -> hits 0, 1, 2
    # b: relevant {c, a}; ranked c, d, a -> hits 1, 1, 2
    assert details["a"]["ranked"] == ["d", "b", "c"]
    assert details["a"]["hits_at_k"] == [0, 1, 2]
    assert details["b"]["hits_at_k"] == [1, 1, 2]
    assert set(details) == {"a", "b"}
    assert curves.ks == [1, 2, 3]
    np.testing.assert_allclose(curves.precision, [(0 + 1) / 2, (1 / 2 + 1 / 2) / 2, 2 / 3])
    np.testing.assert_allclose(curves.recall, [(0 + 1 / 2) / 2, 1 / 2, 1.0])
    assert curves.at(2) == pytest.approx((0.5, 0.5))


def test_missing_candidates_are_never_hits(write, tmp_path):
    truth = GroundTruth.from_csv(write(tmp_path, TINY))
    curves, details = evaluate({"a": ["d", "c"]}, truth, n_relevant=2)  # b left out
    assert details["a"]["hits_at_k"] == [0, 1, 1]
    np.testing.assert_allclose(curves.recall, [0, 0.5, 0.5])
    np.testing.assert_allclose(curves.precision, [0, 0.5, 1 / 3])


def test_restrict_to_estimated(write, tmp_path):
    truth = GroundTruth.from_csv(write(tmp_path, TINY))
    # The zoo lacks b: a's truth becomes c, d, with c the single relevant source at n_relevant=1.
    curves, details = evaluate({"a": ["d", "c"]}, truth, n_relevant=1, restrict_to_estimated=True)
    assert details["a"]["relevant"] == ["c"]
    assert curves.ks == [1, 2]
    np.testing.assert_allclose(curves.precision, [0.0, 0.5])
    np.testing.assert_allclose(curves.recall, [0.0, 1.0])


def test_no_overlap_names_both_lists(write, tmp_path):
    truth = GroundTruth.from_csv(write(tmp_path, TINY))
    with pytest.raises(GroundTruthError, match=r"\['x', 'y'\].*\['a', 'b'\]"):
        evaluate({"x": ["a"], "y": ["b"]}, truth)


def test_rank_sources_orders_by_affinity_then_name():
    a = np.array([[1.0, 0.5, 0.7, 0.5],
                  [0.5, 1.0, 0.2, 0.9],
                  [0.7, 0.2, 1.0, 0.1],
                  [0.5, 0.9, 0.1, 1.0]])
    ranked = rank_sources(a, ["w", "y", "x", "b"])
    assert ranked["w"] == [("x", 0.7), ("b", 0.5), ("y", 0.5)]  # tie 0.5: b before y
    assert [s for s, _ in ranked["y"]] == ["b", "w", "x"]
    assert all("w" != s for s, _ in ranked["w"])
    with pytest.raises(InputError, match="names"):
        rank_sources(a, ["w", "y", "x"])
    with pytest.raises(InputError, match="duplicate"):
        rank_sources(a, ["w", "w", "x", "b"])


def test_rank_sources_feeds_evaluate(taskonomy):
    # An "affinity" that reproduces each target's truth order scores as the oracle.
    names = taskonomy.sources
    idx = {n: i for i, n in enumerate(names)}
    a = np.eye(len(names))
    for t, ranked in taskonomy.ranking.items():
        for pos, s in enumerate(ranked):
            a[idx[t], idx[s]] = 0.9 - 0.01 * pos
    curves, _ = evaluate(rank_sources(a, names), taskonomy)
    np.testing.assert_allclose(curves.precision, oracle_curves(19).precision)


# --------------------------------------------------------------------------- curves and report


@pytest.mark.parametrize("n_cand, n_rel", [(19, 5), (4, 1), (7, 7)])
def test_baseline_closed_forms(n_cand, n_rel):
    rnd, orc = random_curves(n_cand, n_rel), oracle_curves(n_cand, n_rel)
    for k in range(1, n_cand + 1):
        assert rnd.at(k) == pytest.approx((n_rel / n_cand, k / n_cand))
        assert orc.at(k) == pytest.approx((min(k, n_rel) / k, min(k, n_rel) / n_rel))
    assert orc.at(n_cand)[1] == rnd.at(n_cand)[1] == pytest.approx(1.0)


def test_baselines_reject_bad_counts():
    with pytest.raises(InputError, match="n_relevant"):
        random_curves(3, 5)
    with pytest.raises(InputError, match="n_candidates"):
        oracle_curves(0)
    with pytest.raises(InputError, match="k"):
        random_curves(3, 1).at(4)


def test_report_is_json_and_holds_references(taskonomy):
    curves, _ = evaluate(taskonomy.ranking, taskonomy)
    report = evaluation_report({"truth": curves}, 19, 5)
    again = json.loads(json.dumps(report))
    assert again["methods"]["truth"]["precision"][0] == 1.0
    assert again["random"] == random_curves(19, 5).to_dict()
    assert again["oracle"] == oracle_curves(19, 5).to_dict()
    assert again["n_candidates"] == 19 and again["n_relevant"] == 5
    with pytest.raises(InputError, match="'bad'"):
        evaluation_report({"bad": [1, 2]}, 19)


def test_curves_to_dict():
    c = Curves([1, 2], [1.0, 0.5], [0.5, 0.5])
    assert c.to_dict() == {"ks": [1, 2], "precision": [1.0, 0.5], "recall": [0.5, 0.5]}


def test_spearman_matches_scipy_on_random_orders_with_left_out_sources():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    names = [f"s{i}" for i in range(12)]
    for _ in range(50):
        truth = list(rng.permutation(names))
        ranked = list(rng.permutation(names))[: rng.integers(2, 13)]
        shared = [s for s in ranked if s in truth]
        expected = spearmanr([ranked.index(s) for s in shared], [truth.index(s) for s in shared]).statistic
        assert spearman(ranked, truth) == pytest.approx(expected)
    assert spearman(["a"], ["a", "b"]) is None


def test_rho_is_one_for_the_truth_minus_one_reversed_and_near_zero_at_random(taskonomy):
    def rho(ranking):
        curves, details = evaluate(ranking, taskonomy)
        return Evaluation({"x": curves}, len(curves.ks), per_target={"x": details}).rho["x"]

    assert rho(taskonomy.ranking) == pytest.approx(1.0)
    assert rho({t: r[::-1] for t, r in taskonomy.ranking.items()}) == pytest.approx(-1.0)
    rng = np.random.default_rng(1)
    shuffled = [rho({t: list(rng.permutation(r)) for t, r in taskonomy.ranking.items()}) for _ in range(40)]
    assert abs(np.mean(shuffled)) < 0.05


def test_format_table_shows_rho_and_extra_columns(taskonomy):
    curves, details = evaluate(taskonomy.ranking, taskonomy)
    evaluation = Evaluation({"truth": curves}, len(curves.ks), per_target={"truth": details})
    lines = format_table(evaluation, columns={"twin NN": {"truth": 0.25}}).splitlines()
    assert lines[0].split()[-3:] == ["ρ", "twin", "NN"]
    assert lines[1].split()[-2:] == ["1.000", "0.250"]
    assert lines[2].split()[0] == "random" and lines[2].split()[-2:] == ["0.000", "–"]
    assert "ρ" not in format_table(Evaluation({"truth": curves}, len(curves.ks)))


def test_table_shows_a_dash_not_nan_beyond_the_candidates():
    truth = GroundTruth({"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]})
    curves, details = evaluate({"a": ["b", "c"], "b": ["c", "a"], "c": ["a", "b"]}, truth, 2)
    table = format_table(Evaluation({"m": curves}, len(curves.ks), 2, {"m": details}))
    assert "nan" not in table and table.splitlines()[1].split()[1:5] == ["1.000", "–", "–", "–"]
