"""The package's shape: no import cycle between its modules, no private name imported or reached across
them, and no test that edits the import path.

The import graph is read from the source with `ast` (nothing is imported): an edge A → B for every
`import`/`from ... import` of a modelspace module anywhere in A, function bodies included, since a
deferred import still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "modelspace"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an `ImportFrom` names (relative imports resolved against `module`)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, list[tuple[str, str | None]]]:
    """Per module, its (imported module, imported name or None) pairs inside the package."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: list[tuple[str, str | None]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges += [(alias.name, None) for alias in node.names if alias.name.startswith("modelspace")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_package, node)
                if not target.startswith("modelspace"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.append((sub, None) if sub in modules else (target, alias.name))
        found[module] = edges
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, edges in _imports(modules).items():
        for target, _ in edges:
            if target in modules and target != module:
                graph.setdefault(module, set()).add(target)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_private_name_is_imported_across_modules() -> None:
    modules = _modules()
    private = [f"{module} imports {name} from {target}"
               for module, edges in _imports(modules).items()
               for target, name in edges
               if name and name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


def test_no_private_attribute_is_reached_from_outside() -> None:
    """``obj._name`` only on the object's own class (self, cls, an autograd ctx): the report and the CLI
    use the public API of what they are given."""
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "ctx"))):
                found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def test_no_test_edits_the_import_path() -> None:
    """The tests folder is on the path through pyproject's `pythonpath`; no test module changes sys.path."""
    tests = Path(__file__).resolve().parent
    editing = [str(p.relative_to(tests)) for p in tests.rglob("*.py")
               if p.name != Path(__file__).name and "sys.path" in p.read_text(encoding="utf-8")]
    assert not editing, f"these test files touch sys.path: {editing}"


def test_no_test_imports_conftest_or_another_test_module() -> None:
    """Fixtures reach tests through pytest, shared code through tests/support: an import of conftest or
    of a test module would tie a test to another file's place in the tree."""
    tests = Path(__file__).resolve().parent
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.relative_to(tests)}:{node.lineno}: {name}" for name in names
                      if name.split(".")[0] == "conftest" or name.split(".")[-1].startswith("test_")]
    assert not found, "\n".join(found)


def test_no_extra_can_move_torch() -> None:
    """torchvision and timm, unpinned, make pip replace the user's torch with the newest release
    (measured: torch 2.13.0 -> 2.14.1 plus CUDA packages); no extra may name them."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            assert not requirement.lower().startswith(("torchvision", "timm")), (extra, requirement)
