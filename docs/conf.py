"""Sphinx configuration of modelspace's documentation site (``make -C docs html``).

Sphinx, because the API reference is built from the NumPy docstrings that ``scripts/check_docstrings.py``
already validates with numpydoc; MyST, because the pages are Markdown whose code blocks the tests run
(tests/support/docs_examples.py); the PyData theme, the one NumPy, SciPy and scikit-learn use.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# The project's own Sphinx extensions (the CLI reference, the study's tables, the world's figures) live beside
# the pages.
sys.path.insert(0, str(DOCS / "_ext"))

import modelspace  # noqa: E402

project = "modelspace"
author = "the modelspace developers"
copyright = "2026, the modelspace developers"
release = modelspace.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "modelspace_docs",
    "modelspace_world",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "study"]  # study/: the study's output files, which trust.md renders

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# Every reference must resolve: the build runs with -W -n (warnings as errors, nitpicky).
nitpicky = True
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

intersphinx_mapping = {}  # no network where the docs are built and tested

html_theme = "pydata_sphinx_theme"
html_title = "modelspace"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
