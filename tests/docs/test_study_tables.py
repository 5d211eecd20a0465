"""The study's tables on the documentation's pages are generated from its results.json at each build: the
``study-tables`` directive renders `modelspace.world.study.study_sections`, its headings nested under the
heading it stands in; and the committed docs/study/table.md is exactly what `format_study` writes from the
committed results.json, so neither is written by hand."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import pytest

from support.docs_site import DOCS, extension
from support.paths import SRC

from modelspace.world.study import STUDY_SECTIONS, format_study, study_sections

RESULTS = DOCS / "study" / "results.json"


def test_the_committed_table_is_what_format_study_writes_from_the_committed_results() -> None:
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert format_study(results) + "\n" == (DOCS / "study" / "table.md").read_text(encoding="utf-8")


def test_format_study_is_its_sections_in_order() -> None:
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    parts = study_sections(results)
    assert list(parts) == list(STUDY_SECTIONS)  # this results.json holds every part
    text = format_study(results)
    at = [text.index(part) for part in parts.values()]
    assert at == sorted(at) and at[0] == 0
    assert all(not part.startswith("\n") and not part.endswith("\n") for part in parts.values())
    assert parts["which"].startswith("## Which estimator when") and "### Recommendation" in parts["which"]
    assert not any(line.startswith("#") for name in ("estimators", "probe-size", "symmetry")
                   for line in parts[name].splitlines())


CONF = """
extensions = ["myst_parser", "modelspace_docs"]
myst_heading_anchors = 3
nitpicky = True
"""

PAGE = """# The study

Some words.

## Results

```{study-tables} results.json
:sections: estimators, which
```

## After the tables

Words after.
"""


@pytest.fixture(scope="module")
def small_site(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("small-site")
    (root / "conf.py").write_text(CONF)
    (root / "index.md").write_text(PAGE)
    (root / "results.json").write_bytes(RESULTS.read_bytes())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DOCS / "_ext"), str(SRC)])}  # the extension, this checkout
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q", str(root),
                           str(root / "html")], capture_output=True, text=True, timeout=600, env=env)
    return {"done": done, "page": (root / "html" / "index.html")}


@pytest.mark.slow
def test_the_directive_renders_the_chosen_sections_nested_under_the_page(small_site) -> None:
    done = small_site["done"]
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
    page = small_site["page"].read_text(encoding="utf-8")
    page = page[page.index('role="main"'):page.index('class="sphinxsidebar"')]  # the body, not the theme's sidebar
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    # The headings: the page's h1, its h2 sections, the study's '## ' one level down, its '### ' two.
    headings = [(int(level), " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split()).rstrip("¶#").strip())
                for level, text in re.findall(r"<h([1-6])>(.*?)</h\1>", page, re.DOTALL)]
    domains = list(results["which"]["domains"])
    assert headings == [(1, "The study"), (2, "Results"), (3, "Which estimator when"),
                        *[(4, f"Probe domain: {d}") for d in domains], (4, "Recommendation"), (4, "Notes"),
                        (2, "After the tables")]
    assert "Every candidate on every domain" not in page and "How far to trust" not in page  # not asked for
    # every table of the two sections, rendered as a table: the estimators' one and one per domain
    assert page.count("<table") == 1 + len(domains)
    first_estimator = next(iter(results["domains"][domains[0]]["estimators"]))
    assert first_estimator.split("(")[0] in page
    # the section after the directive is the page's own, a sibling of "Results", not inside the study's
    results_section = re.search(r'<section id="results">', page).start()
    after = re.search(r'<section id="after-the-tables">', page).start()
    assert page.count("</section>", results_section, after) >= 1 + len(domains) + 2


def test_an_unknown_section_name_is_refused() -> None:
    StudyTables = extension().StudyTables
    with pytest.raises(ValueError, match="sections must be some of estimators, probe-size"):
        StudyTables.option_spec["sections"]("estimators, tables")
