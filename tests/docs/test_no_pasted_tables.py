"""No page of the repository holds a table of the study written by hand: the documentation renders them
from `modelspace study`'s results files (the ``study-tables`` directive), so that they cannot drift.

Two checks over every Markdown file a reader meets (README, CHANGELOG, DEVELOPERS, docs/): no line is a
row of the tables `format_study` renders from a results file under docs/study/, and no table row starts
with an estimator of the study followed by P@K-like figures (a row copied, then edited or rounded). The
study's own output, the table.md beside each results file (docs/study/table.md, docs/study/modelgif/table.md), is exempt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelspace.world.study import format_study
from support.paths import REPO

STUDY = REPO / "docs" / "study"
# What the study itself wrote, beside each of its results files
EXEMPT = {results.with_name("table.md") for results in STUDY.rglob("results.json")}
CELL_SPLIT = re.compile(r"(?<!\\)\|")
FIGURE = re.compile(r"[+-]?[01]\.\d{2}(?!\d)")  # a P@K, R@K, ρ or interval end as the study prints them
MIN_FIGURES = 2


def results_files() -> list[Path]:
    """Every results file of the study kept in the repository (the main study's and any run of its own)."""
    found = sorted(STUDY.rglob("results.json"))
    assert STUDY / "results.json" in found, f"the study's results file is missing from {STUDY}"
    return found


def pages() -> list[Path]:
    """The Markdown files a reader meets, the study's own output left out."""
    docs = [p for p in (REPO / "docs").rglob("*.md") if "_build" not in p.relative_to(REPO / "docs").parts]
    found = [REPO / "README.md", REPO / "CHANGELOG.md", REPO / "DEVELOPERS.md", *docs]
    return sorted(p for p in found if p.is_file() and p not in EXEMPT)


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row (escaped pipes kept in their cell)."""
    return [c.strip() for c in CELL_SPLIT.split(line.strip().strip("|"))]


def study_rows(results: dict) -> set[str]:
    """The table rows `format_study` renders from ``results`` that hold a figure (headers left out)."""
    return {line.strip() for line in format_study(results).splitlines()
            if line.lstrip().startswith("|") and re.search(r"\d\.\d\d", line)}


def estimator_names(results: dict) -> set[str]:
    """Each estimator of a study's results as its table may name it: its id and its bare name."""
    ids = {e for d in results["domains"].values() for e in d["estimators"]}
    ids |= {e for d in results.get("which", {}).get("domains", {}).values() for e in d["rows"]}
    return ids | {re.split(r"[ (]", e, maxsplit=1)[0] for e in ids}


def names_an_estimator(cell: str, names: set[str]) -> bool:
    """Whether a first cell is an estimator of the study, with or without a remark after it."""
    bare = cell.replace("*", "").replace("`", "").strip()
    return any(bare == n or re.match(re.escape(n) + r"[ (,]", bare) for n in names)


def looks_like_study_row(line: str, names: set[str]) -> bool:
    """A table row whose first cell is an estimator and which holds P@K-like figures."""
    if not line.lstrip().startswith("|"):
        return False
    row = cells(line)
    return names_an_estimator(row[0], names) and sum(bool(FIGURE.match(c)) for c in row[1:]) >= MIN_FIGURES


@pytest.fixture(scope="module")
def study() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in results_files()]


def test_no_page_holds_a_row_of_the_studys_tables(study) -> None:
    rows = set().union(*(study_rows(r) for r in study))
    found = [f"{p.relative_to(REPO)}:{n}" for p in pages()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if line.strip() in rows]
    assert not found, f"rows of the study's tables pasted by hand (render them with study-tables): {found}"


def test_no_page_holds_a_table_row_of_an_estimators_figures(study) -> None:
    names = set().union(*(estimator_names(r) for r in study))
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()[:80]}" for p in pages()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if looks_like_study_row(line, names)]
    assert not found, f"table rows of an estimator's figures written by hand (render them with study-tables): {found}"


def test_the_checks_find_a_pasted_row_and_an_edited_one(study) -> None:
    """The two checks against rows as a page would paste them, and against the tables a page may hold."""
    results = study[0]
    names = estimator_names(results)
    rows = sorted(study_rows(results))
    candidates = [r for r in rows if cells(r)[0].replace("*", "") in results["which"]["domains"]["train"]["rows"]]
    assert candidates and rows, "format_study rendered no estimator row"
    pasted = candidates[0]
    assert pasted in rows and looks_like_study_row(pasted, names)
    # Rounded to one decimal and marked by hand: no longer a rendered row, still an estimator's figures.
    edited = "| **dds** (chosen) | 0.66 [0.53, 0.77] | 0.71 | 0.5 |"
    assert edited not in rows and looks_like_study_row(edited, names)
    # A table of methods and their costs, or of figures of something else, is not the study's.
    assert not looks_like_study_row(r"| `saliency` | \|∂ mean(R)/∂x\|, 3 channels | cosine | 1 (shared) |", names)
    assert not looks_like_study_row("| segment2d | 2 | segment25d | 1.41 | 153.0 |", names)
    assert not looks_like_study_row("| dds_like_name | 0.66 | 0.71 |", names)
