"""Every test a documentation page names as holding a promise (``tests/FILE.py::TEST``) exists: a page
that cites a renamed or deleted test would promise what nothing checks any more."""

from __future__ import annotations

import ast
import re

from support.paths import REPO

CITED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def cited_tests() -> dict[tuple[str, str], list[str]]:
    """``(file, test)`` → the pages that cite it, over every page under docs/."""
    found: dict[tuple[str, str], list[str]] = {}
    for page in sorted((REPO / "docs").rglob("*.md")):
        if "_build" in page.relative_to(REPO / "docs").parts:
            continue
        for match in CITED.finditer(page.read_text(encoding="utf-8")):
            found.setdefault(match.groups(), []).append(str(page.relative_to(REPO)))
    return found


def defined_tests(path: str) -> set[str]:
    """The names of the functions a test file defines at its top level."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_cited_test_exists() -> None:
    cited = cited_tests()
    assert any("docs/reliability.md" in pages for pages in cited.values()), "the reliability page cites no test"
    missing = [f"{file}::{name} (cited by {', '.join(pages)})" for (file, name), pages in cited.items()
               if not (REPO / file).is_file() or name not in defined_tests(file)]
    assert not missing, f"pages cite tests that do not exist: {missing}"
