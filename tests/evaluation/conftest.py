"""Fixtures of the evaluation's tests: the bundled Taskonomy truth and truth files written on the fly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelspace.evaluation import GroundTruth


@pytest.fixture(scope="module")
def taskonomy() -> GroundTruth:
    """The bundled Taskonomy truth (18 targets, 20 sources).

    Returns
    -------
    GroundTruth
    """
    return GroundTruth.named("taskonomy")


@pytest.fixture
def write() -> Callable[..., Path]:
    """A writer of truth files: ``write(folder, text, name="truth.csv")`` saves ``text`` and gives its path.

    Returns
    -------
    Callable[[Path, str, str], Path]
    """

    def write_text(folder: Path, text: str, name: str = "truth.csv") -> Path:
        path = folder / name
        path.write_text(text)
        return path

    return write_text
