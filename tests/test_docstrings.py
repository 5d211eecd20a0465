"""The docstring checks of CI: ruff's pydocstyle rules and numpydoc's sections (scripts/check_docstrings.py)."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_docstrings.py"

pytest.importorskip("numpydoc")

GOOD = '''\
"""A module."""

from dataclasses import dataclass
from typing import ClassVar


def scale(x, factor=2.0):
    """Multiply by a factor.

    Parameters
    ----------
    x : float
        The value.
    factor : float, default 2.0
        What to multiply by.

    Returns
    -------
    float
        ``x * factor``.
    """

    def nested(y):
        return y

    return nested(x) * factor


class Box:
    """A box.

    Parameters
    ----------
    size : int
        Its side.
    """

    def __init__(self, size):
        self.size = size

    @property
    def area(self):
        """The area, the side squared."""
        return self.size**2

    def _private(self, z):
        return z


@dataclass(frozen=True)
class Pair:
    """Two numbers: a dataclass's fields are its parameters, documented as Attributes here.

    Attributes
    ----------
    a : int
        The first.
    b : int
        The second.
    """

    a: int
    b: int = 0
    kind: ClassVar[str] = "pair"


@dataclass(frozen=True)
class Triple(Pair):
    """Three numbers: the fields a dataclass inherits are its parameters too.

    Parameters
    ----------
    a : int
        The first, inherited.
    b : int
        The second, inherited.
    c : int
        The third.
    """

    c: int = 0
'''


def run_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(path)], capture_output=True, text=True, cwd=ROOT)


def run_ruff(path: Path) -> subprocess.CompletedProcess:
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this Python (the test extra pins it)")
    return subprocess.run([str(ruff), "check", "--config", str(ROOT / "pyproject.toml"), str(path)],
                          capture_output=True, text=True, cwd=ROOT)


def test_a_complete_docstring_passes_and_nested_functions_properties_and_private_names_are_skipped(tmp_path):
    f = tmp_path / "good.py"
    f.write_text(GOOD)
    result = run_check(f)
    assert result.returncode == 0, result.stderr
    assert run_ruff(f).returncode == 0, run_ruff(f).stdout


@pytest.mark.parametrize("planted, code", [
    # a parameter left out of the Parameters section
    ("    factor : float, default 2.0\n        What to multiply by.\n", "PR01"),
    # no Returns section
    ("    Returns\n    -------\n    float\n        ``x * factor``.\n", "RT01"),
    # a public method with no docstring at all
    ('        """The area, the side squared."""\n', "GL08"),
    # a dataclass field left out
    ("    b : int\n        The second.\n", "PR01"),
    # a field inherited from a dataclass base left out
    ("    a : int\n        The first, inherited.\n    b : int\n        The second, inherited.\n", "PR01"),
])
def test_the_section_check_fails_on_a_planted_violation(tmp_path, planted, code):
    assert planted in GOOD
    f = tmp_path / "bad.py"
    f.write_text(GOOD.replace(planted, "", 1))
    result = run_check(f)
    assert result.returncode == 1
    assert re.search(rf"bad\.py:\d+: {code} ", result.stderr), result.stderr


def test_ruff_docstring_rules_fail_on_a_planted_violation(tmp_path):
    f = tmp_path / "bad.py"
    # a summary over two lines, with no blank line before the rest (D205), and a public function with none (D103)
    f.write_text(textwrap.dedent('''\
        """A module."""


        def f():
            """One line
            and another."""


        def g():
            pass
        '''))
    out = run_ruff(f).stdout
    assert "D205" in out and "D103" in out, out


def test_the_package_passes_both_checks():
    result = run_check(ROOT / "src" / "modelspace")
    assert result.returncode == 0, result.stderr
    ruff = run_ruff(ROOT / "src" / "modelspace")
    assert ruff.returncode == 0, ruff.stdout


def test_no_module_of_the_package_is_exempt_from_the_docstring_checks():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    per_file = config["tool"]["ruff"]["lint"]["per-file-ignores"]
    assert "D" in per_file["tests/**"], "the ruff list is read: it exempts the tests"
    ignored = {p for p, rules in per_file.items() if "D" in rules}
    excluded = [re.compile(p) for p in config["tool"]["numpydoc_validation"]["exclude_files"]]
    package = sorted((ROOT / "src" / "modelspace").rglob("*.py"))
    by_ruff = {f for f in package if any(f.relative_to(ROOT).match(p) for p in ignored)}
    by_numpydoc = {f for f in package if any(p.match(f.resolve().as_posix()) for p in excluded)}
    assert sorted(map(str, by_ruff | by_numpydoc)) == []
