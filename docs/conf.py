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
from modelspace_docs import api_aliases  # noqa: E402

project = "modelspace"
author = "the modelspace developers"
copyright = "2026, the modelspace developers"
release = modelspace.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
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
# ... except to other projects' types: signatures name them (torch.Tensor, numpy.ndarray, pathlib.Path, the
# collections.abc protocols), numpydoc links Python's and NumPy's (str -> python:str, array-like ->
# numpy:array_like), and with no network there is no intersphinx inventory to link them to. Only external
# names are listed: a broken reference to one of modelspace's own names still fails the build. (Type
# variables, which have no page, are shown as plain text by docs/_ext/modelspace_docs.py.)
EXTERNAL_MODULES = ("torch", "numpy", "pathlib", "collections", "typing", "argparse")
nitpick_ignore_regex = ([(r"py:.*", rf"{module}(\..+)?") for module in EXTERNAL_MODULES]
                        + [(r".*", r"(python|numpy):.+")])  # intersphinx-prefixed: Python's and NumPy's docs
numpydoc_show_class_members = False
# A docstring's parameter and return types link to the API reference where they name one of modelspace's
# public names (`ModelSpec`, `ProbeSet`, `InputError`: every name of a module's __all__); other words of a
# type ("of", "optional", "(N, N)") stay text, and numpydoc's own aliases link Python's and NumPy's types.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = api_aliases()
numpydoc_class_members_toctree = False

intersphinx_mapping = {}  # no network where the docs are built and tested

html_theme = "pydata_sphinx_theme"
html_title = "modelspace"
html_static_path = ["_static"]
# The theme's light/dark switch starts from the reader's system setting; unset, its script logs an error
html_context = {"default_mode": "auto"}
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
