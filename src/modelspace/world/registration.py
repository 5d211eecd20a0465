"""The study's registration, ``data/world/candidates.toml``, read once.

It holds the estimators `modelspace study` scores, the rule that picks the default among them and the confidence signal, committed before any of them
was scored. The report reads the rule's tie from here too, without importing the study.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DATA_DIR", "REGISTRATION", "RULE_TIE"]

DATA_DIR: Path = Path(__file__).resolve().parents[1] / "data" / "world"
"""The world's data, apart from its code: the shipped zoo (``zoo/``) and the registration."""
REGISTRATION: dict = tomllib.loads((DATA_DIR / "candidates.toml").read_text(encoding="utf-8"))
"""``candidates.toml`` as a dict."""
RULE_TIE: float = REGISTRATION["rule"]["tie"]
"""Minima of mean P@5 within this of the highest count as tied (the registered rule)."""
