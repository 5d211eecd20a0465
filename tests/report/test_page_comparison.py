"""Two estimators compared in a run's output: the PNGs and results.json of the folder, the page's section
and its pair selector, and `modelspace report --compare A B`."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.reports import TRUTH, large_report, toy_space

from modelspace.cli import main
from modelspace.report import from_folder, from_space, write_report
from modelspace.report.page import comparisons_for
from modelspace.results import read_matrix

pytestmark = pytest.mark.slow  # end to end: a toy run fitted, saved and drawn; the fast loop leaves the file out


class _Page(HTMLParser):
    """The comparison section's images, select options and panels."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.options, self.panels, self.sections, self._select = [], {}, [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "select":
            self._select = attrs["id"]
            self.options[self._select] = []
        elif tag == "option":
            self.options[self._select].append([attrs["value"], "selected" in attrs, None])
        elif tag == "div" and "data-pair" in attrs:
            self.panels.append(attrs["data-pair"])

    def handle_data(self, data):
        if self._select and self.options[self._select] and self.options[self._select][-1][2] is None:
            self.options[self._select][-1][2] = data


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def selected(page: _Page, side: str) -> str:
    return next(name for _, chosen, name in page.options[f"pair-{side}"] if chosen)


def decodes(src: str) -> bool:
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image.width > 100 and image.height > 100


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    space = toy_space(root / "store")
    space.save(root / "out")
    return space, root


def test_the_folder_holds_each_pairs_figures_and_numbers(toy) -> None:
    space, root = toy
    out = root / "out"
    record = json.loads((out / "results.json").read_text())
    pngs = ["difference_saliency_vs_linear_cka.png", "cpc_saliency_vs_linear_cka.png",
            "difference_saliency_vs_gradient_x_input.png", "cpc_saliency_vs_gradient_x_input.png", "cpc_oracle.png"]
    for name in pngs:
        assert name in record["files"] and Image.open(out / name).width > 100
    comparison = record["comparison"]
    assert [(p["ranking"], p["similarity"]) for p in comparison["pairs"]] == [("saliency", "linear_cka"),
                                                                               ("saliency", "gradient_x_input")]
    assert set(comparison["oracle"]) == {"saliency", "gradient_x_input", "linear_cka"}
    # The saved curve, recomputed from the folder's CSVs by the paper's formula: (1/N) Σᵢ ρ(i, source ranked p-th).
    pair = comparison["pairs"][0]
    a, names = read_matrix(out / "affinity_saliency.csv")
    b, names_b = read_matrix(out / "affinity_linear_cka.csv")
    assert names == names_b and sorted(pair["cpc_names"]) == sorted(names)
    n = len(names)
    for p in (1, n - 1):
        direct = np.mean([b[i, [j for j in np.argsort(-a[i], kind="stable") if j != i][p - 1]] for i in range(n)])
        assert pair["curves"]["ranking"]["mean"][p - 1] == pytest.approx(direct, abs=1e-6)
    # The oracle's curve of linear CKA reads the truth's ranking on its min–max normalised matrix.
    off = b[~np.eye(n, dtype=bool)]
    scaled = (b - off.min()) / (off.max() - off.min())
    task = dict(zip(names, space.results_["linear_cka"].labels))
    index = {task[m]: i for i, m in enumerate(names)}
    first = np.mean([scaled[index[t], index[TRUTH.ranking[t][0]]] for t in TRUTH.ranking])
    assert comparison["oracle"]["linear_cka"]["mean"][0] == pytest.approx(first, abs=1e-6)
    assert comparison["normalisation"].startswith("each matrix min–max normalised")


def test_the_page_draws_both_figures_with_a_pair_selector(toy, tmp_path) -> None:
    space, _ = toy
    page = parse(write_report(from_space(space, truth=TRUTH), tmp_path / "report.html"))
    assert page.sections.index("compare") == page.sections.index("space") + 1
    ids = list(space.results_)
    assert [name for *_, name in page.options["pair-a"]] == ids == [name for *_, name in page.options["pair-b"]]
    assert (selected(page, "a"), selected(page, "b")) == ("saliency", "linear_cka")
    assert page.panels == ["0-2", "0-1"]
    alts = {img.get("alt"): img for img in page.images}
    for alt in ("Difference matrix, linear_cka − saliency", "Correlation–Priority Curve, saliency ranks, linear_cka "
                "similarity", "Difference matrix, gradient_x_input − saliency",
                "Correlation–Priority Curves of the oracle's ranking"):
        assert decodes(alts[alt]["src"]), alt
    # Figure 5's matrices and trees are the Model space figures shown again by the script: each is in the page once.
    copies = [img for img in page.images if "data-copy" in img]
    assert sorted((img["data-side"], img["data-copy"]) for img in copies) == [("a", "heat"), ("a", "tree"),
                                                                               ("b", "heat"), ("b", "tree")]
    assert all("src" not in img for img in copies)
    keys = {img["data-figure"] for img in page.images if "data-figure" in img}
    assert keys == {f"{what}-{k}" for what in ("heat", "tree") for k in range(len(ids))}


def test_cli_report_compare_opens_the_page_on_that_pair(toy, tmp_path, capsys) -> None:
    _, root = toy
    target = tmp_path / "pair.html"
    assert main(["report", str(root / "out"), "--compare", "linear_cka", "gradient_x_input", "--out", str(target),
                 "--quiet"]) == 0
    page = parse(target)
    assert (selected(page, "a"), selected(page, "b")) == ("linear_cka", "gradient_x_input")
    assert page.panels[0] == "2-1"
    assert main(["report", str(root / "out"), "--compare", "saliency", "svcca", "--out", str(target), "--quiet"]) == 2
    assert "'svcca' is not one of the estimators" in capsys.readouterr().err


def test_a_page_drawn_again_from_the_folder_keeps_the_oracles_curves(toy) -> None:
    _, root = toy
    saved = json.loads((root / "out" / "results.json").read_text())["comparison"]
    again = comparisons_for(from_folder(root / "out"))  # no truth given: the run's figures
    assert again.to_dict() == saved


def test_a_page_of_one_estimator_compares_nothing(tmp_path) -> None:
    data = large_report(6, with_truth=False)
    data.estimators = data.estimators[:1]
    page = parse(write_report(data, tmp_path / "one.html"))
    assert "compare" not in page.sections and not page.panels
