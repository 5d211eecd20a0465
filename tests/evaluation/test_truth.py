"""The ground truth: the bundled Taskonomy files, reading matrix, ranking and long CSV files, and the
errors that name the file and row."""

import numpy as np
import pytest
from importlib import resources

from modelspace.errors import GroundTruthError
from modelspace.evaluation import GroundTruth

TRUTH_DIR = resources.files("modelspace").joinpath("data").joinpath("truth")
AFFINITY_CSV = TRUTH_DIR.joinpath("taskonomy_affinity.csv")
RANKING_CSV = TRUTH_DIR.joinpath("taskonomy_ranking.csv")


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


# --------------------------------------------------------------------------- formats and errors


def test_from_matrix_ties_by_name_and_nan_means_missing():
    m = np.array([[9.0, 1.0, 2.0, 2.0, np.nan]])
    gt = GroundTruth.from_matrix(m, ["t"], ["t", "z", "b", "a", "skip"])
    assert gt.ranking == {"t": ["a", "b", "z"]}  # target excluded, tie a/b by name, NaN dropped


def test_matrix_csv_variants(write, tmp_path):
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
def test_malformed_files_name_file_and_row(write, tmp_path, text, match):
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
