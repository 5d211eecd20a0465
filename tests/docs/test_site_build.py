"""The documentation builds as `make -C docs html` builds it, without one warning, and every link of it leads
somewhere: each local ``href`` and ``src`` of every built page names a file, and each ``#fragment`` an id of
the page it points to. The command is read out of docs/Makefile (tests/support/docs_site.py)."""

from __future__ import annotations

import argparse
import html
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from support.docs_site import DOCS, Page, makefile_command

from modelspace.cli import build_parser

pytestmark = pytest.mark.slow


def test_the_build_runs_the_makefiles_command_with_warnings_as_errors(tmp_path) -> None:
    argv = makefile_command(tmp_path)
    assert argv[-1] == str(tmp_path)
    assert {"-W", "-n", "--keep-going"} <= set(argv), argv  # warnings fail it, every reference is checked
    assert argv[argv.index("-b") + 1] == "html"


def test_the_site_builds_without_a_warning(site) -> None:
    assert site["returncode"] == 0, site["output"][-6000:]
    assert not re.search(r"WARNING|ERROR|CRITICAL", site["output"]), site["output"][-6000:]
    print(f"docs build: {site['seconds']} s")


def test_every_page_of_the_toctree_is_built(site) -> None:
    sources = {page.relative_to(DOCS).with_suffix("").as_posix() for page in DOCS.rglob("*.md")
               if not {"_build", "study"} & set(page.relative_to(DOCS).parts[:-1])}
    built = {page.relative_to(site["html"]).with_suffix("").as_posix() for page in site["html"].rglob("*.html")}
    assert sources <= built, sorted(sources - built)


def _local(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme in ("", "file") and not url.startswith("//")


def test_every_local_link_and_fragment_resolves(site) -> None:
    root: Path = site["html"]
    pages = {path.resolve(): Page(path) for path in root.rglob("*.html")
             if path.relative_to(root).parts[0] not in ("_static", "_sources")}  # the theme's templates are not pages
    assert len(pages) > 20
    broken, checked = [], 0
    for path, page in pages.items():
        for attribute, url in page.urls:
            if not _local(url) or url.startswith(("mailto:", "javascript:", "data:")):
                continue
            parts = urlsplit(url)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{path.relative_to(root)}: {attribute}={url!r}: no file {target}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else Page(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{path.relative_to(root)}: {attribute}={url!r}: no id {parts.fragment!r} there")
    assert checked > 500
    assert broken == [], "\n".join(broken[:40])


def _section_texts(page: Path) -> dict[str, str]:
    """Each ``<section id=...>``'s text up to the next section: tags removed, spaces collapsed."""
    text = page.read_text(encoding="utf-8")
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section[^>]*\bid="([^"]+)"', text)]
    out = {}
    for (start, name), (end, _) in zip(starts, [*starts[1:], (len(text), "")]):
        plain = html.unescape(re.sub(r"<[^>]+>", " ", text[start:end]))
        out[name] = " ".join(plain.split())
    return out


def _words(text: str) -> str:
    # Sphinx typesets quotes and dashes; compare the words
    return " ".join(re.findall(r"\w+", text.replace("\u2019", "'")))


def test_the_cli_reference_shows_every_subcommand_and_option_of_the_parser(site) -> None:
    sections = _section_texts(site["html"] / "guide" / "cli.html")
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(commands.choices) >= 14
    for name, sub in commands.choices.items():
        text = sections.get(f"modelspace-{name}")
        assert text is not None, f"no section for `modelspace {name}`: {sorted(sections)}"
        assert _words(sub.description) in _words(text), name
        for action in sub._actions:
            shown = action.option_strings or [action.dest]
            if action.help == argparse.SUPPRESS:  # an option's old name, hidden from --help and from the page
                assert not any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", text) for s in shown), shown
                continue
            for option in shown:
                assert option in text, f"modelspace {name}: {option} is not on the page"
            assert _words(action.help or "") in _words(text), f"modelspace {name} {shown}: its help is not on the page"
            default = action.default
            if action.option_strings and isinstance(default, int | float | str) and not isinstance(default, bool) \
                    and default != argparse.SUPPRESS:
                assert str(default) in text, f"modelspace {name} {shown}: default {default!r}"
    assert "--version" in sections["command-line-reference"]  # the program's own options and usage
