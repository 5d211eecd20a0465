"""The study's registration, ``candidates.toml``, read once: the estimators `modelspace study` scores,
the rule that picks the default among them and the confidence signal, committed before any of them
was scored. The report reads the rule's tie from here too, without importing the study."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["REGISTRATION", "RULE_TIE"]

REGISTRATION: dict = tomllib.loads((Path(__file__).with_name("candidates.toml")).read_text(encoding="utf-8"))
"""``candidates.toml`` as a dict."""
RULE_TIE: float = REGISTRATION["rule"]["tie"]
"""Minima of mean P@5 within this of the highest count as tied (the registered rule)."""
