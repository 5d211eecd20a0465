"""modelspace's Sphinx extension: pages generated from the code and from result files, never pasted.

Directives (MyST pages only):

- ``cli-reference`` (no argument): the command-line reference, generated from ``modelspace.cli.build_parser``:
  the program's usage, then per subcommand a section with its usage, its description and a table of its
  arguments (each with its help and default) and its examples;
- ``study-tables PATH`` (a ``modelspace study`` results.json), option ``:sections:`` (a comma-separated list
  of `modelspace.world.study.STUDY_SECTIONS`; default all): the study's markdown
  (`modelspace.world.study.study_sections`), in the order of that list.

Every directive of the site that generates text is a `RenderedMarkdown` (``modelspace_world``'s too): it writes
Markdown and renders it in place, as MyST's own ``{include}`` does. Its headings are shifted under the heading
the directive stands in (a study's ``## `` becomes ``### `` under a page's ``## ``), so that they nest as
sections of the page, and the content after the directive continues in the last generated section. A file it
reads is named relative to the page (``/`` first: relative to ``docs/``), and the page is rebuilt when the
file changes.

For the API reference (docs/api/): `api_aliases`, numpydoc's aliases that link a docstring's types to their
entries; ``reexported-constants PACKAGE`` (reST, beside ``automodule``), the constants a package re-exports,
with the doc comments of the modules that define them; and type variables shown as text, not as references.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import pkgutil
import re
import textwrap
import typing
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

HEADING = re.compile(r"^(#{1,6}) ", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)
# Characters with a meaning in MyST inline Markdown (dollarmath included), escaped in argparse's plain help text
SPECIAL = re.compile(r"([\\*_\[\]<>|#!~{}$&])")
OPTION = re.compile(r"(?<![\w`-])(--[a-z][\w-]*)")
USAGE_WIDTH = 80  # argparse wraps usage lines at the terminal's width; the page's must not depend on it


def shift_headings(markdown: str, offset: int) -> str:
    """``markdown`` with each ATX heading outside fenced blocks ``offset`` levels deeper.

    Parameters
    ----------
    markdown : str
        MyST text whose headings start at any level.
    offset : int
        Levels to add, 0 or more.

    Returns
    -------
    str
        The same text, each heading line's ``#`` run ``offset`` longer.
    """
    out, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and offset and HEADING.match(line):
            line = "#" * offset + line
        out.append(line)
    return "\n".join(out)


def plain(text: str) -> str:
    """Argparse help text as inline Markdown: its `backtick spans` kept as code, every other special escaped.

    Parameters
    ----------
    text : str
        One line of help text (newlines are folded into spaces).

    Returns
    -------
    str
        Markdown that renders as the text, safe inside a table cell.
    """
    out = []
    for part in re.split(r"(`[^`]*`)", " ".join(text.split())):
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(part.replace("|", "\\|"))
        else:  # an option such as --out as code: in plain text it would be typeset with an en dash
            out.append(OPTION.sub(r"`\1`", SPECIAL.sub(r"\\\1", part)))
    return "".join(out)


def code(text: str) -> str:
    """``text`` as an inline code span that survives a table cell (its pipes escaped)."""
    ticks = "``" if "`" in text else "`"
    return f"{ticks}{text.replace('|', chr(92) + '|')}{ticks}"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _invocation(action: argparse.Action) -> str:
    """How an argument is written: ``zoo``, ``--methods METHOD [METHOD ...]``, ``-h, --help``."""
    formatter = argparse.HelpFormatter("modelspace", width=USAGE_WIDTH)
    return formatter._format_action_invocation(action)


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._HelpAction | argparse._VersionAction) or action.required:
        return "–"
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if not action.option_strings:  # a positional argument: given every time
        return "–"
    if action.default is None or action.default == []:
        return "none"
    value = " ".join(map(str, action.default)) if isinstance(action.default, list | tuple) else str(action.default)
    return code(value)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name, in the order they were added (aliases left out).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A parser with one ``add_subparsers`` group.

    Returns
    -------
    dict of str to argparse.ArgumentParser
        Each subcommand's own parser.
    """
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub not in found.values():
                    found[name] = sub
    return found


def _arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    # positional arguments first, then the options, as --help lists them
    for action in sorted(parser._actions, key=lambda action: bool(action.option_strings)):
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue  # a hidden alias (an option's old name) or the subcommands, listed as sections
        rows.append(f"| {code(_invocation(action))} | {_default(action)} | {plain(action.help or '')} |")
    return rows


def cli_markdown(parser: argparse.ArgumentParser) -> str:
    """The command-line reference of ``parser`` as MyST Markdown, its headings starting at ``## ``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        ``modelspace.cli.build_parser()``, or any parser with subcommands.

    Returns
    -------
    str
        The program's usage, description and epilog (examples, exit codes), then a ``## `` section per
        subcommand: usage, description, the table of its arguments (help and default of each; arguments
        hidden from ``--help`` left out) and its examples.
    """
    lines = ["```text", _usage(parser), "```", "", plain(parser.description or ""), ""]
    if parser.epilog:
        lines += ["```text", parser.epilog.strip(), "```", ""]
    for name, sub in subcommands(parser).items():
        lines += [f"## {sub.prog}", "", "```text", _usage(sub), "```", "", plain(sub.description or ""), "",
                  *_arguments_table(sub), ""]
        if sub.epilog:
            lines += ["```text", textwrap.dedent(sub.epilog).strip(), "```", ""]
    return "\n".join(lines)


class RenderedMarkdown(SphinxDirective):
    """A directive whose output is Markdown, rendered in place under the heading it stands in.

    A subclass declares its arguments and options as any directive does and writes `markdown`.
    """

    def markdown(self) -> str:  # pragma: no cover - each directive has its own
        """The directive's output.

        Returns
        -------
        str
            MyST Markdown; its headings may start at any level.
        """
        raise NotImplementedError

    def read_json(self, name: str) -> typing.Any:
        """The JSON file ``name`` (relative to the page; ``/`` first: to ``docs/``), noted as the page's input.

        Parameters
        ----------
        name : str
            The file, as the directive's argument gives it.

        Returns
        -------
        Any
            Its content.

        Raises
        ------
        docutils.parsers.rst.DirectiveError
            When the file cannot be read or parsed; the message names the directive and the file.
        """
        relative, path = self.env.relfn2path(name, self.env.docname)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise self.error(f"{self.name}: cannot read {relative}: {exc}") from exc
        self.env.note_dependency(relative)
        return data

    def run(self) -> list[nodes.Node]:
        # MyST's renderer is the state's; a directive has no public way to add sections to the page, and
        # MyST's own {include} renders through it in the same way.
        renderer = getattr(self.state, "_renderer", None)
        if renderer is None:
            raise self.error(f"{self.name} is a MyST directive: use it in a Markdown page")
        level = sum(isinstance(node, nodes.section) for node in _ancestry(renderer.current_node))
        text = shift_headings(self.markdown(), max(level - 1, 0))
        renderer.nested_render_text(text, self.lineno)
        return []


def _ancestry(node: nodes.Node):
    while node is not None:
        yield node
        node = node.parent


class CliReference(RenderedMarkdown):
    """``cli-reference``: the whole ``modelspace`` command-line reference, from its argparse parser."""

    has_content = False
    required_arguments = 0

    def markdown(self) -> str:
        from modelspace.cli import build_parser

        return cli_markdown(build_parser())


def _section_list(argument: str) -> list[str]:
    from modelspace.world.study import STUDY_SECTIONS

    names = [name.strip() for name in argument.split(",") if name.strip()]
    unknown = [name for name in names if name not in STUDY_SECTIONS]
    if unknown or not names:
        raise ValueError(f"sections must be some of {', '.join(STUDY_SECTIONS)}; got {argument!r}")
    return names


class StudyTables(RenderedMarkdown):
    """``study-tables PATH``: the tables of a ``modelspace study`` results.json, generated at each build."""

    has_content = False
    required_arguments = 1
    option_spec = {"sections": _section_list}

    def markdown(self) -> str:
        from modelspace.world.study import STUDY_SECTIONS, study_sections

        parts = study_sections(self.read_json(self.arguments[0]))
        names = self.options.get("sections", list(STUDY_SECTIONS))
        missing = [name for name in names if name not in parts]
        if missing and "sections" in self.options:
            raise self.error(f"study-tables: {self.arguments[0]} holds no {', '.join(missing)}")
        return "\n\n".join(parts[name] for name in names if name in parts)


def api_aliases(package: str = "modelspace") -> dict[str, str]:
    """numpydoc's aliases: each public name of ``package`` (in any of its modules' ``__all__``) → a reference.

    A docstring's type ``ModelSpec`` becomes the reference ``.ModelSpec``, which Sphinx resolves to the one
    documented object whose full name ends so (``modelspace.models.ModelSpec``), wherever docs/api/ documents
    it; a public name documented nowhere fails the nitpicky build.

    Parameters
    ----------
    package : str, default "modelspace"
        The package to walk.

    Returns
    -------
    dict of str to str
        For ``numpydoc_xref_aliases``.
    """
    root = importlib.import_module(package)
    names = set(getattr(root, "__all__", ()))
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        names.update(getattr(importlib.import_module(info.name), "__all__", ()))
    return {name: f".{name}" for name in sorted(names) if not name.startswith("_")}


def type_variable(app, env, node, contnode):
    """A reference to one of modelspace's type variables (``T`` in a signature), shown as plain text.

    A type variable has no page to link to; any other unresolved reference is left to fail the build.

    Parameters
    ----------
    app, env : sphinx.application.Sphinx, sphinx.environment.BuildEnvironment
        Unused (the ``missing-reference`` event's signature).
    node : sphinx.addnodes.pending_xref
        The reference.
    contnode : docutils.nodes.Node
        Its text.

    Returns
    -------
    docutils.nodes.Node or None
        ``contnode`` for a type variable of modelspace, else None (still unresolved).
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("modelspace."):
        return None
    module_name, _, name = target.rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return None
    return contnode if isinstance(value, typing.TypeVar) else None


def origin_docs(module_name: str, name: str, depth: int = 0) -> list[str] | None:
    """The doc comment of ``module_name.name``, a constant, found where it is defined.

    Autodoc reads a constant's ``#:`` comment or string in the module being documented; a package that
    imports the constant from a submodule (``from .confidence import SEED as CONFIDENCE_SEED``) has none.
    The import is followed, to the module whose source documents it.

    Parameters
    ----------
    module_name : str
        The module (or package) whose name it is.
    name : str
        The name there.
    depth : int, default 0
        Imports followed so far (a cycle stops after 10).

    Returns
    -------
    list of str or None
        The doc comment's lines, or None where there is none.
    """
    from sphinx.pycode import ModuleAnalyzer

    try:
        analyzer = ModuleAnalyzer.for_module(module_name)
        docs = analyzer.find_attr_docs().get(("", name))
    except Exception:  # noqa: BLE001 - a module without source to analyse documents nothing
        return None
    if docs:
        return list(docs)
    if depth >= 10:
        return None
    module = importlib.import_module(module_name)
    package = module_name if hasattr(module, "__path__") else module_name.rpartition(".")[0]
    for statement in ast.parse(analyzer.code).body:
        if isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                if (alias.asname or alias.name) == name:
                    source = importlib.util.resolve_name("." * statement.level + (statement.module or ""), package) \
                        if statement.level else statement.module
                    return origin_docs(source, alias.name, depth + 1)
    return None


def reexported_constants(package: str) -> list[str]:
    """The constants of ``package``'s ``__all__`` that autodoc's ``:members:`` leaves out.

    Parameters
    ----------
    package : str
        A package's full name, e.g. ``modelspace.similarity``.

    Returns
    -------
    list of str
        The names (in ``__all__``'s order) of the constants and type aliases the package imports from the
        submodule that documents them: autodoc finds their doc comments only in the module it documents.
    """
    from sphinx.pycode import ModuleAnalyzer

    module = importlib.import_module(package)
    own = ModuleAnalyzer.for_module(package).find_attr_docs()
    names = []
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if isinstance(value, type) or (callable(value) and not _is_alias(value)) or ("", name) in own:
            continue
        if origin_docs(package, name):
            names.append(name)
    return names


class ReexportedConstants(SphinxDirective):
    """``reexported-constants PACKAGE`` (reST): ``autodata`` of each of `reexported_constants`' names."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        source = StringList()
        for name in reexported_constants(package):
            source.append(f".. autodata:: {package}.{name}", "<reexported-constants>")
            source.append("", "<reexported-constants>")
        container = nodes.container()
        self.state.nested_parse(source, self.content_offset, container)
        return container.children


def _is_alias(obj) -> bool:  # a type alias (MapReader = Callable[...]) is callable, yet a constant
    return type(obj).__module__ in ("typing", "types", "collections.abc")


def fill_reexported_constant(app, what, name, obj, options, lines):
    """Give a re-exported constant the doc comment of its defining module.

    The ``autodoc-process-docstring`` event.

    Parameters
    ----------
    app : sphinx.application.Sphinx
        Unused.
    what : str
        The object's kind (``data`` for a constant).
    name : str
        Its full name.
    obj : object
        The constant.
    options : dict
        The directive's options.
    lines : list of str
        Its docstring's lines, replaced in place.
    """
    if what == "data" and name.startswith("modelspace."):
        docs = origin_docs(*name.rsplit(".", 1))
        if docs:  # autodoc, finding none in the package, gives the value's type's docstring (int's)
            lines[:] = docs


def setup(app):
    """Register the directives (Sphinx's extension entry point)."""
    app.setup_extension("sphinx.ext.autodoc")  # its events, which the constants' docs hook into
    app.add_directive("cli-reference", CliReference)
    app.add_directive("study-tables", StudyTables)
    app.add_directive("reexported-constants", ReexportedConstants)
    app.connect("missing-reference", type_variable)
    app.connect("autodoc-process-docstring", fill_reexported_constant)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
