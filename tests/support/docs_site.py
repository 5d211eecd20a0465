"""The documentation site as `make -C docs html` builds it, built once per test session into a temporary folder.

The command is read out of docs/Makefile (its ``html`` rule and ``SPHINXOPTS``), so that the tests build with
the options the Makefile gives (warnings as errors, nitpicky) and the two cannot drift apart. Under
pytest-xdist the workers share one build: the first to need it builds, under a file lock, the others read it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from support.paths import REPO, SRC

DOCS = REPO / "docs"
MAKEFILE = DOCS / "Makefile"


def makefile_command(out: Path) -> list[str]:
    """The Makefile's ``html`` command, run by this interpreter's Sphinx and writing into ``out``."""
    text = MAKEFILE.read_text(encoding="utf-8")
    options = re.search(r"^SPHINXOPTS\s*\?=\s*(.*)$", text, re.MULTILINE).group(1)
    rule = re.search(r"^html:.*\n\t(.*)$", text, re.MULTILINE).group(1)
    argv = shlex.split(rule.replace("$(SPHINXOPTS)", options))
    assert argv[0] == "$(SPHINXBUILD)" and argv[-1] == "_build/html", rule
    return [sys.executable, "-m", "sphinx", *argv[1:-1], str(out)]


def build(root: Path) -> dict:
    """The site built into ``root/html`` once (later calls, from any process, read the first's record).

    Returns
    -------
    dict
        ``html`` (the folder), ``argv``, ``returncode``, ``output`` (stdout and stderr) and ``seconds``.
    """
    record = root / "build.json"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            argv = makefile_command(root / "html")
            start = time.monotonic()
            # autodoc documents this checkout's package, whatever the environment has installed
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
            done = subprocess.run(argv, cwd=DOCS, env=env, capture_output=True, text=True, timeout=900)
            record.write_text(json.dumps({"html": str(root / "html"), "argv": argv, "returncode": done.returncode,
                                          "output": done.stdout + done.stderr,
                                          "seconds": round(time.monotonic() - start, 1)}))
    result = json.loads(record.read_text())
    result["html"] = Path(result["html"])
    return result


class Page(HTMLParser):
    """One built HTML page: its ids, its links (``href``) and embedded resources (``src``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []  # (attribute, value)
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for name, value in attrs:
            if name == "id" or (name == "name" and tag == "a"):
                self.ids.add(value or "")
            elif name in ("href", "src") and value is not None:
                self.urls.append((name, value))


def extension(name: str = "modelspace_docs"):
    """A module of the site's Sphinx extensions (docs/_ext/NAME.py), imported from its file.

    It is registered under its name, as the build's import from docs/_ext would, so that an extension importing
    ``modelspace_docs`` finds it without docs/_ext on the path.
    """
    if name in sys.modules:
        return sys.modules[name]
    if name != "modelspace_docs":
        extension("modelspace_docs")
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
