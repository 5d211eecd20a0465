"""The report page's conclusion, sources, failures, figures and size."""

from __future__ import annotations

import html
import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image
from support.reports import clustered_affinity, large_report

from modelspace.cli import main
from modelspace.errors import InputError
from modelspace.evaluation import Bootstrap, compare_estimators, evaluate_matrices, GroundTruth
from modelspace.report import ReportData, write_report
from modelspace.report import figures as figs
from modelspace.report import plots
from modelspace.report.page import hover_values, matrix_from_hover
from modelspace.results import MethodResult, save
from modelspace.similarity import classical_mds, clusters, leaf_order, mds_explained, similarity_tree, tree_agreement

PAGE_200_BOUND = 1_450_000
"""Bytes the 200-model synthetic page (two estimators, a truth) may take; docs/getting-started/report.md states the sizes. The pair of
estimators compared (its difference matrix with its hover data, its curves) takes about 0.26 MB of it."""


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize("n, least", [(30, 25), (200, 25)])
def test_mds_labels_never_overlap(n, least) -> None:
    a = clustered_affinity(n, 8)
    names = [f"model_{i:03d}_{'abcdefgh'[i % 8]}" for i in range(n)]
    z = similarity_tree(a)
    fig, _ = figs.mds_figure(classical_mds(a), names, clusters(z, n), leaf_order(z), "t", mds_explained(a))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert least <= len(boxes) <= figs.MAX_POINT_LABELS  # names are written, not all dropped
    frame = ax.get_window_extent(renderer)
    for b in boxes:
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
    for b1, b2 in itertools.combinations(boxes, 2):
        assert not (b1.x0 < b2.x1 and b2.x0 < b1.x1 and b1.y0 < b2.y1 and b2.y0 < b1.y1), (b1, b2)
    assert "of the variance" in ax.get_xlabel() and "of the variance" in ax.get_ylabel()


def test_mds_labels_of_coinciding_points_do_not_overlap() -> None:
    coords = np.zeros((12, 2))  # every point at one place: most names cannot be written
    fig, _ = figs.mds_figure(coords, [f"m{i}" for i in range(12)], np.zeros(12, int), list(range(12)), "t")
    fig.canvas.draw()
    boxes = [t.get_window_extent(fig.canvas.get_renderer()) for t in fig.axes[0].texts]
    assert 1 <= len(boxes) < 12
    assert not any(b1.overlaps(b2) for b1, b2 in itertools.combinations(boxes, 2))


def test_mds_points_coloured_by_task_when_tasks_are_shared() -> None:
    groups, legend = figs.colour_groups(["a1", "a2", "b1"], ["a", "a", "b"], None)
    assert list(groups) == [0, 0, 1] and legend == ["a", "b"]
    z = similarity_tree(clustered_affinity(9, 3))
    groups, legend = figs.colour_groups([f"m{i}" for i in range(9)], [f"m{i}" for i in range(9)], z)
    assert legend is None and list(groups) == list(clusters(z, 9))


def test_heatmap_top_value_and_diagonal_do_not_share_a_colour() -> None:
    a = np.array([[1.0, 0.65, 0.3], [0.65, 1.0, 0.4], [0.3, 0.4, 1.0]])
    png, box = figs.heatmap_png(a, ["a", "b", "c"], "t")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels, (w, h) = np.asarray(image, dtype=float), image.size

    def cell(i, j):  # the colour at the centre of cell (i, j), away from the value written in it
        x = int(w * (box["left"] + box["width"] * (j + 0.5) / 3))
        y = int(h * (box["top"] + box["height"] * (i + 0.2) / 3))
        return pixels[y, x]

    top = np.array(colormaps["viridis"](1.0)[:3]) * 255
    assert np.abs(cell(0, 1) - top).max() < 8  # 0.65, the largest off-diagonal value: the top colour
    assert np.abs(cell(0, 0) - cell(0, 1)).max() > 60  # 1.00 on the diagonal: grey, not the same colour
    assert np.abs(cell(0, 0) - 255 * 0.8).max() < 8
    assert np.abs(cell(0, 2) - cell(0, 1)).max() > 60  # the bottom of the scale differs from the top


def test_curves_are_told_apart_and_show_the_spread() -> None:
    tasks = [f"t{i}" for i in range(8)]
    a = clustered_affinity(8, 2)
    truth = GroundTruth({t: [tasks[j] for j in np.argsort(-a[i]) if j != i] for i, t in enumerate(tasks)})
    ev = evaluate_matrices({"x": (a, tasks), "y": (a, tasks), "z": (clustered_affinity(8, 2, seed=4), tasks)},
                           truth, n_relevant=2)
    seen = {}
    original = plots._save

    def capture(fig, path):
        ax = fig.axes[0]
        seen["looks"] = [(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()[:3]]
        seen["bands"] = len(ax.collections)
        return original(fig, path)

    plots._save, saved = capture, plots._save
    try:
        figs.curves_png(ev)
    finally:
        plots._save = saved
    assert len(set(seen["looks"])) == 3  # x and y coincide, yet each has its own line style and marker
    assert seen["bands"] == 3  # one interquartile band per estimator


# --------------------------------------------------------------------------- the page


def sections(text: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', text)


@pytest.fixture(scope="module")
def page_30(tmp_path_factory):
    data = large_report(30)
    path = write_report(data, tmp_path_factory.mktemp("p30") / "report.html")
    return data, path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_summary_leads_with_the_best_estimator_and_its_intervals(page_30) -> None:
    data, text = page_30
    assert sections(text)[0] == "summary"
    c = compare_estimators(data.evaluation, k=5, bootstrap=Bootstrap(2000, 0))
    summary = text[text.index('<section id="summary"'):text.index("</section>", text.index('<section id="summary"'))]
    assert f"<b>{c.best}</b> ranks sources best" in summary
    assert f"P@5 {c.scores[c.best]:.2f} against {c.scores['random']:.2f} for random" in summary
    for d in (c.vs_random, c.vs_runner_up):
        assert f"{d.mean:+.2f} P@5 (95% interval {d.low:+.2f} to {d.high:+.2f}" in summary
        assert ("not distinguishable" in summary) or d.distinguishable


@pytest.mark.slow
def test_summary_says_not_distinguishable_for_a_tie(tmp_path) -> None:
    data = large_report(20)
    twin = MethodResult("twin", data.estimators[0].names, data.estimators[0].labels, data.estimators[0].affinity)
    data = ReportData([data.estimators[0], twin], data.settings, None, data.truth, data.truth_tree)
    from modelspace.report import evaluate_views

    data.evaluation = evaluate_views(data.estimators, data.truth)
    text = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "+0.00 P@5 (95% interval +0.00 to +0.00" in text and "<b>not distinguishable</b>" in text


def test_summary_without_truth_says_how_the_models_group(tmp_path) -> None:
    data = large_report(24, with_truth=False)
    text = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    v = data.estimators[0]
    a = v.affinity - 2 * np.eye(24)
    i, j = np.unravel_index(np.argmax(a), a.shape)
    assert "No ground truth was given" in text and "clusters cut from the tree" in text
    assert f"Closest pair: {v.names[i]} and {v.names[j]} (affinity {v.affinity[i, j]:.3f})" in text
    assert "Same nearest neighbour as saliency: linear_cka" in text


@pytest.mark.slow
def test_sources_use_the_best_or_the_chosen_estimator_and_open_the_first(page_30, tmp_path) -> None:
    data, text = page_30
    best = compare_estimators(data.evaluation).best
    assert text.count(f"best source by {best}:") == 30
    assert len(re.findall(r'<details class="target" open', text)) == 3
    other = next(v.id for v in data.estimators if v.id != best)
    chosen = write_report(data, tmp_path / "r.html", summary_estimator=other).read_text(encoding="utf-8")
    assert chosen.count(f"best source by {other}:") == 30
    with pytest.raises(InputError, match="not one of the estimators"):
        write_report(data, tmp_path / "r.html", summary_estimator="nonesuch")


def test_a_hub_is_named(tmp_path) -> None:
    a = clustered_affinity(30, 6)
    a[0, 1:] = a[1:, 0] = 0.99  # model 0 is everyone's nearest
    names = [f"m{i:02d}" for i in range(30)]
    text = write_report(ReportData([MethodResult("saliency", names, names, a)]), tmp_path / "r.html").read_text()
    assert "<b>m00</b> is the best source of 29 of 30 targets" in text
    assert "Hub: <b>m00</b>" in text


@pytest.mark.slow
def test_failures_are_linked_from_the_top_and_the_truth_has_a_readable_name(tmp_path) -> None:
    data = large_report(12)
    data.settings["failures"] = [{"model": "broken", "method": None, "message": "cannot load broken"}] * 3
    data.truth.origin = "/usr/lib/python3/site-packages/modelspace/data/truth/taskonomy_ranking.csv"
    text = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert sections(text)[:2] == ["summary", "failures"]
    assert re.search(r'<a href="#failures" class="fail"><b>3</b><span>failures</span></a>', text)
    assert f'<span title="{data.truth.origin}">built-in taskonomy</span>' in text
    import modelspace

    data.truth.origin = str(Path(modelspace.__file__).parent / "world" / "zoo" / "oracle_ranking.csv")  # the demo's
    text = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert f'<span title="{data.truth.origin}">built-in world oracle_ranking.csv</span>' in text
    for origin in ("/home/someone/truths/my_truth.csv", "/home/someone/modelspace/my_truth.csv"):  # a user's file
        data.truth.origin = origin
        text = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
        assert f'<span title="{origin}">my_truth.csv</span>' in text


def test_tree_agreement_on_the_page_is_the_cophenetic_correlation(page_30) -> None:
    data, text = page_30
    matrix, tasks, _ = data.truth_tree
    v = data.estimators[0]
    keep = [v.labels.index(t) for t in tasks]
    r = tree_agreement(similarity_tree(matrix), similarity_tree(v.affinity[np.ix_(keep, keep)]))
    assert f"cophenetic correlation with the truth's tree {r:.2f}" in html.unescape(text)
    assert 'alt="Tree agreement"' in text


@pytest.mark.slow
def test_cli_report_takes_a_summary_estimator(tmp_path, capsys) -> None:
    data = large_report(12)
    save(tmp_path / "out", {v.id: v for v in data.estimators},
         {**data.settings, "evaluation": data.evaluation.to_dict()})
    assert main(["report", str(tmp_path / "out"), "--summary-estimator", "linear_cka", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)["report"]
    assert open(page, encoding="utf-8").read().count("best source by linear_cka:") == 12
    assert main(["report", str(tmp_path / "out"), "--summary-estimator", "nonesuch", "--quiet"]) == 2
    assert "nonesuch" in capsys.readouterr().err


@pytest.mark.slow
def test_two_hundred_model_page_stays_small(tmp_path) -> None:
    page = write_report(large_report(200), tmp_path / "report.html")
    assert page.stat().st_size < PAGE_200_BOUND, page.stat().st_size


def test_hover_values_round_trip_to_three_decimals() -> None:
    a = clustered_affinity(7, 2)
    block = hover_values(a)
    assert block["symmetric"] and [len(r) for r in block["values"]] == [7, 6, 5, 4, 3, 2, 1]
    np.testing.assert_allclose(matrix_from_hover(block), a, atol=5e-4 + 1e-12)
    b = a.copy()
    b[0, 1] += 0.1  # an asymmetric estimate keeps every cell
    block = hover_values(b)
    assert not block["symmetric"] and len(block["values"][6]) == 7
    np.testing.assert_allclose(matrix_from_hover(block), b, atol=5e-4 + 1e-12)


@pytest.mark.parametrize("n_relevant, metric", [(2, "P@2"), (5, "ρ")])
def test_summary_leads_with_a_measure_that_can_tell_estimators_apart(tmp_path, n_relevant, metric) -> None:
    # Six tasks, five candidates each: with 2 relevant, P@5 is 2/5 for every order (P@2 is used); with all
    # 5 relevant, every P@K is 1 whatever the order, so the summary compares Spearman's ρ.
    tasks = [f"task{i}" for i in range(6)]
    views = [MethodResult("saliency", tasks, tasks, clustered_affinity(6, 2)),
             MethodResult("linear_cka", tasks, tasks, clustered_affinity(6, 2, seed=2), kind="baseline")]
    a = clustered_affinity(6, 2, seed=5)
    truth = GroundTruth({t: [tasks[j] for j in np.argsort(-a[i]) if j != i] for i, t in enumerate(tasks)})
    ev = evaluate_matrices({v.id: (v.affinity, tasks) for v in views}, truth, n_relevant=n_relevant)
    text = write_report(ReportData(views, {}, ev, truth), tmp_path / "r.html").read_text(encoding="utf-8")
    c = compare_estimators(ev, "rho") if metric == "ρ" else compare_estimators(ev, k=2)
    assert c.metric == metric
    assert f"ranks sources best: {metric} {c.scores[c.best]:.2f} against {c.scores['random']:.2f}" in text
