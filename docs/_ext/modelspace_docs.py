"""modelspace's Sphinx extension: pages generated from the code and from result files, never pasted.

Directives (filled in by the docs work of issue 35):

- ``cli-reference``: the CLI reference, rendered from ``modelspace.cli``'s argparse parser;
- ``study-tables``: the study's tables, rendered from a ``modelspace study`` results.json.
"""

from __future__ import annotations


def setup(app):
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
