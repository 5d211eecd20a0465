"""Ground truth reading, P@K / R@K against closed forms, the bundled Taskonomy truth."""

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

TRUTH_DIR = resources.files("modelspace").joinpath("data").joinpath("truth")
AFFINITY_CSV = TRUTH_DIR.joinpath("taskonomy_affinity.csv")
RANKING_CSV = TRUTH_DIR.joinpath("taskonomy_ranking.csv")


@pytest.fixture(scope="module")
def taskonomy():
    return GroundTruth.named("taskonomy")


def write(tmp_path, text, name="truth.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- bundled Taskonomy


def test_bundled_taskonomy_shape(taskonomy):
    assert len(taskonomy.targets) == 18
    assert len(taskonomy.sources) == 20
    assert "colorization" in taskonomy.sources and "colorization" not in taskonomy.targets
    assert "inpainting_whole" in taskonomy.sources and "inpainting_whole" not in taskonomy.targets
    for target in taskonomy.targets:
        ranked = taskonomy.ranking[target]
        assert len(ranked) == 19 and target not in ranked
    # Spot checks read off the published table.
    assert taskonomy.relevant("autoencoder") == [
        "denoise", "inpainting_whole", "colorization", "segment2d", "keypoint2d"]
    assert taskonomy.ranking["curvature"][0] == "rgb2sfnorm"


def test_matrix_and_ranking_files_agree(taskonomy):
    from_matrix_file = GroundTruth.from_csv(AFFINITY_CSV)
    from_ranking_file = GroundTruth.from_csv(RANKING_CSV)
    assert from_matrix_file.ranking == from_ranking_file.ranking == taskonomy.ranking
    assert from_matrix_file.targets == from_ranking_file.targets
    assert set(from_matrix_file.sources) == set(from_ranking_file.sources)
    assert GroundTruth.load("taskonomy") == taskonomy
    assert GroundTruth.load(str(RANKING_CSV)) == taskonomy


def test_matrix_ranking_is_descending_score(taskonomy):
    # Independent check on the raw numbers: consecutive ranked sources have falling scores.
    lines = AFFINITY_CSV.read_text().strip().splitlines()
    sources = lines[0].split(",")[1:]
    for line in lines[1:]:
        target, *cells = line.split(",")
        score = dict(zip(sources, map(float, cells)))
        ranked = taskonomy.ranking[target]
        assert all(score[a] > score[b] for a, b in zip(ranked, ranked[1:]))
        assert set(ranked) == set(sources) - {target}


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


def test_tiny_example_by_hand(tmp_path):
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


def test_missing_candidates_are_never_hits(tmp_path):
    truth = GroundTruth.from_csv(write(tmp_path, TINY))
    curves, details = evaluate({"a": ["d", "c"]}, truth, n_relevant=2)  # b left out
    assert details["a"]["hits_at_k"] == [0, 1, 1]
    np.testing.assert_allclose(curves.recall, [0, 0.5, 0.5])
    np.testing.assert_allclose(curves.precision, [0, 0.5, 1 / 3])


def test_restrict_to_estimated(tmp_path):
    truth = GroundTruth.from_csv(write(tmp_path, TINY))
    # The zoo lacks b: a's truth becomes c, d, with c the single relevant source at n_relevant=1.
    curves, details = evaluate({"a": ["d", "c"]}, truth, n_relevant=1, restrict_to_estimated=True)
    assert details["a"]["relevant"] == ["c"]
    assert curves.ks == [1, 2]
    np.testing.assert_allclose(curves.precision, [0.0, 0.5])
    np.testing.assert_allclose(curves.recall, [0.0, 1.0])


def test_no_overlap_names_both_lists(tmp_path):
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


# --------------------------------------------------------------------------- formats and errors


def test_from_matrix_ties_by_name_and_nan_means_missing():
    m = np.array([[9.0, 1.0, 2.0, 2.0, np.nan]])
    gt = GroundTruth.from_matrix(m, ["t"], ["t", "z", "b", "a", "skip"])
    assert gt.ranking == {"t": ["a", "b", "z"]}  # target excluded, tie a/b by name, NaN dropped


def test_matrix_csv_variants(tmp_path):
    for corner in ("target\\source", "target/source", "target"):
        path = write(tmp_path, f"{corner},a,b,c\na,0.1,0.3,0.2\nb,,1,2\n")
        gt = GroundTruth.from_csv(path)
        assert gt.ranking == {"a": ["b", "c"], "b": ["c"]}  # empty cell: a not evaluated for b
        assert gt.sources == ["a", "b", "c"]


def test_ranking_csv_round_trip(tmp_path, taskonomy):
    out = tmp_path / "out.csv"
    taskonomy.to_ranking_csv(out)
    assert GroundTruth.from_csv(out) == taskonomy
    ragged = GroundTruth({"a": ["b", "c"], "b": ["a"]})
    ragged.to_ranking_csv(out)
    assert out.read_text().splitlines()[2] == "b,a,"
    assert GroundTruth.from_csv(out).ranking == ragged.ranking


@pytest.mark.parametrize("text, match", [
    ("target,rank1\na,b\na,c\n", r"row 3 .*'a'.*twice"),
    ("target,rank1,rank2\na,b,b\n", r"row 2 .*more than once"),
    ("target,rank1,rank2\na,a,b\n", r"row 2 .*ranks itself"),
    ("target,rank1,rank2\na,,b\n", r"row 2 .*empty cell"),
    ("target\\source,a,b\na,1,oops\n", r"row 2 .*'a'.*source 'b'.*'oops'"),
    ("target\\source,a,b\na,1\n", r"row 2 .*1 values for 2 sources"),
    ("target\\source,a,b\nb,1,inf\n", r"row 2 .*non-finite"),
    ("target\\source,a,a\nb,1,2\n", r"duplicate sources"),
    ("foo,bar\nx,y\n", r"row 1: unrecognised header"),
    ("", r"empty file"),
    ("target,rank1\n", r"no target rows"),
])
def test_malformed_files_name_file_and_row(tmp_path, text, match):
    path = write(tmp_path, text, "bad_truth.csv")
    with pytest.raises(GroundTruthError, match=match) as info:
        GroundTruth.from_csv(path)
    assert "bad_truth.csv" in str(info.value)


def test_unknown_names_and_paths(tmp_path):
    with pytest.raises(GroundTruthError, match=r"available: \['taskonomy'\]"):
        GroundTruth.named("imagenet")
    with pytest.raises(GroundTruthError, match="neither a bundled"):
        GroundTruth.load(tmp_path / "missing.csv")
    with pytest.raises(GroundTruthError, match="'nope'"):
        GroundTruth.named("taskonomy").relevant("nope")


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


def test_long_truth_with_or_without_header_equals_the_matrix(tmp_path):
    rows = "a,b,0.9\na,c,0.1\nb,a,0.5\nb,c,0.7\nc,a,0.2\nc,b,0.2\n"
    (tmp_path / "long.csv").write_text("target,source,score\n" + rows)
    (tmp_path / "bare.csv").write_text(rows)
    (tmp_path / "matrix.csv").write_text("target\\source,a,b,c\na,,0.9,0.1\nb,0.5,,0.7\nc,0.2,0.2,\n")
    truths = [GroundTruth.from_csv(tmp_path / f) for f in ("long.csv", "bare.csv", "matrix.csv")]
    assert truths[0] == truths[1] == truths[2]
    assert truths[0].ranking == {"a": ["b", "c"], "b": ["c", "a"], "c": ["a", "b"]}  # higher first; tie by name
    (tmp_path / "twice.csv").write_text("target,source,score\na,b,1\na,b,2\n")
    with pytest.raises(GroundTruthError, match=r"twice.csv: row 3 \(target 'a'\): source 'b' listed twice"):
        GroundTruth.from_csv(tmp_path / "twice.csv")
    # a matrix of two numbered sources is still a matrix, not a headerless long file
    (tmp_path / "numbered.csv").write_text("target,1,2\nx,0.5,0.7\n")
    assert GroundTruth.from_csv(tmp_path / "numbered.csv").ranking == {"x": ["2", "1"]}


def test_table_shows_a_dash_not_nan_beyond_the_candidates():
    truth = GroundTruth({"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]})
    curves, details = evaluate({"a": ["b", "c"], "b": ["c", "a"], "c": ["a", "b"]}, truth, 2)
    table = format_table(Evaluation({"m": curves}, len(curves.ks), 2, {"m": details}))
    assert "nan" not in table and table.splitlines()[1].split()[1:5] == ["1.000", "–", "–", "–"]
