"""Check the NumPy sections of the public API's docstrings with numpydoc's validator.

Usage: ``python scripts/check_docstrings.py [PATH ...]`` (default: ``src/modelspace``); exit status 1 and one
line per finding when a docstring misses a section, 0 otherwise. The checks are
``[tool.numpydoc_validation]`` in pyproject.toml.

numpydoc's own ``numpydoc lint`` also checks functions nested in other functions and asks properties for a
Returns section; this walks what ruff's pydocstyle rules call public instead: module-level functions and
classes, and the methods of public classes, in modules without a leading underscore.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
from pathlib import Path

from numpydoc import validate
from numpydoc.hooks.validate_docstrings import AstValidator, parse_config

ROOT = Path(__file__).resolve().parents[1]
# A property reads as an attribute: its docstring says what it is, not what a call returns.
PROPERTY_SKIPS = {"RT01"}


def decorator_names(node: ast.AST) -> set[str]:
    """The bare names of a node's decorators (``dataclass`` for ``@dataclasses.dataclass(frozen=True)``)."""
    out = set()
    for d in getattr(node, "decorator_list", []):
        d = d.func if isinstance(d, ast.Call) else d
        out.add(d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", None))
    return out


def dataclass_fields(node: ast.ClassDef, module: str | None = None) -> tuple[str, ...] | None:
    """A dataclass's init fields in order (ClassVars left out), or None for a class that is not one.

    With ``module`` (the class's importable module) the fields are the class's as Python sees them, those
    inherited from a dataclass base included; without it, the ones its own body declares.
    """
    if any(isinstance(c, ast.FunctionDef) and c.name == "__init__" for c in node.body):
        return None
    cls = _imported_class(module, node.name) if module else None
    if cls is not None:
        return tuple(f.name for f in dataclasses.fields(cls) if f.init) if dataclasses.is_dataclass(cls) else None
    if "dataclass" not in decorator_names(node):
        return None
    return tuple(c.target.id for c in node.body
                 if isinstance(c, ast.AnnAssign) and isinstance(c.target, ast.Name)
                 and "ClassVar" not in ast.unparse(c.annotation))


def _imported_class(module: str, name: str) -> type | None:
    try:
        value = getattr(importlib.import_module(module), name, None)
    except Exception:  # noqa: BLE001 - a file that cannot be imported is checked from its source alone
        return None
    return value if isinstance(value, type) else None


def module_name(path: Path) -> str:
    """The name ``path`` is imported by (``modelspace.maps.store``), its top folder put on ``sys.path``.

    The top folder is the first one up from the file without an ``__init__.py`` (``src/`` for the package).
    """
    path = path.resolve()
    parts, folder = ([] if path.stem == "__init__" else [path.stem]), path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # the classes of this file, whatever is installed
    return ".".join(parts)


class Validator(AstValidator):
    """numpydoc's AST validator, with a dataclass's fields as its class's parameters.

    A dataclass documents its fields under Parameters (a value its caller builds) or, with no
    Parameters section, under Attributes (a result it is handed); either is checked against the fields.
    """

    module: str | None = None  # set by check_file: where the class is imported from

    @property
    def signature_parameters(self):
        fields = dataclass_fields(self.node, self.module) if self.is_class else None
        return super().signature_parameters if fields is None else fields

    def _doc_parameters(self, sections):
        fields = dataclass_fields(self.node, self.module) if self.is_class else None
        if fields is not None and not self.doc["Parameters"] and self.doc["Attributes"]:
            sections = ["Attributes" if s == "Parameters" else s for s in sections]
        return super()._doc_parameters(sections)


def public_nodes(tree: ast.Module, module: str):
    """Yield ``(qualified name, node, ancestry)`` for the public functions, classes and methods of a module."""

    def walk(parent: ast.AST, ancestry: list[ast.AST], prefix: str):
        for node in parent.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_"):
                continue
            name = f"{prefix}.{node.name}"
            yield name, node, ancestry
            if isinstance(node, ast.ClassDef):
                yield from walk(node, ancestry + [node], name)

    yield module, tree, []
    yield from walk(tree, [tree], module)


def is_property(node: ast.AST) -> bool:
    """Whether a function is decorated as a property (``@property``, ``@functools.cached_property``)."""
    return bool(decorator_names(node) & {"property", "cached_property"})


def check_file(path: Path, config: dict) -> list[str]:
    """The findings of one file, as ``path:line: CODE message`` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    validator = type("FileValidator", (Validator,), {"module": module_name(path)})
    findings = []
    for name, node, ancestry in public_nodes(tree, path.stem):
        if config["exclude"] and config["exclude"].search(name):
            continue
        report = validate.validate(name, validator, ast_node=node, filename=str(path), ancestry=ancestry)
        for code, message in report["errors"]:
            if code not in config["checks"] or (is_property(node) and code in PROPERTY_SKIPS):
                continue
            override = config["overrides"].get(code)
            if override is not None and override.search(ast.get_docstring(node) or ""):
                continue
            findings.append(f"{path}:{report['file_line']}: {code} {name}: {message}")
    return findings


def main(argv: list[str]) -> int:
    """Check the files and folders in ``argv`` (default ``src/modelspace``); return the exit status."""
    config = parse_config(ROOT)
    paths = [Path(a) for a in argv] or [ROOT / "src" / "modelspace"]
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    checked = [
        f for f in files
        if not (f.stem.startswith("_") and f.stem != "__init__")
        and not (config["exclude_files"] and config["exclude_files"].match(f.resolve().as_posix()))
    ]
    findings = [line for f in checked for line in check_file(f, config)]
    print("\n".join(findings) or f"numpydoc sections: {len(checked)} files checked, no finding", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
