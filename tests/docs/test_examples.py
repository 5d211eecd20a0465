"""Every code example of the documentation runs as written: each ``## `` section of every page with blocks to
run (tests/support/docs_examples.py says which) is one story, run in a fresh folder, and every command in it
must exit 0. The sections that a dedicated test runs, with what the page leaves to its reader's machine, are
listed in `RUN_ELSEWHERE`, and only those are left out here."""

from __future__ import annotations

import pytest

from support.docs_examples import DOCS, RUN_ELSEWHERE, blocks, pages, run_section, sections
from support.paths import REPO
from support.runs import subprocess_env


def _name(page) -> str:
    return page.relative_to(DOCS).as_posix() if page.is_relative_to(DOCS) else page.relative_to(REPO).as_posix()


STORIES = [(_name(page), title) for page in pages() for title in sections(page)
           if (_name(page), title) not in RUN_ELSEWHERE]


def test_every_page_parses_and_run_elsewhere_names_sections_that_exist() -> None:
    found = {}
    for page in pages():
        found[_name(page)] = {block.section for block in blocks(page)}
        sections(page)  # raises on a block whose info string is neither run, shown nor a directive
    assert len(found) >= 20
    for (page, title), test in RUN_ELSEWHERE.items():
        assert page in found, f"RUN_ELSEWHERE names {page}, which is not a page"
        assert title in found[page], f"RUN_ELSEWHERE names the section {title!r}, which {page} does not have"
        runnable = sections(DOCS / page)
        assert title in runnable, f"{page}: the section {title!r} has nothing to run"
        where = test.split()[0].rstrip(",;").split("::")[0]
        assert (REPO / where).exists(), f"{where}, which runs {page} {title!r}, does not exist"


@pytest.mark.slow
@pytest.mark.parametrize("page, title", STORIES)
def test_the_section_runs_as_written(page, title, tmp_path) -> None:
    path = DOCS / page if (DOCS / page).exists() else REPO / page
    run_section(sections(path)[title], tmp_path, subprocess_env())
