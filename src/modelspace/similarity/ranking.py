"""Rankings read off an affinity matrix: for each target model, the other models best first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def rank_sources(affinity: np.ndarray, names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Per target (row), the other models by descending affinity (ties by name), with the value.

    Parameters
    ----------
    affinity : np.ndarray
        A square, finite (N, N) matrix.
    names : sequence of str
        The N model names (or task labels), unique.
    """
    a = np.asarray(affinity, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"affinity: expected a square matrix, got shape {a.shape}")
    if isinstance(names, str) or len(names) != a.shape[0]:
        raise InputError(f"names: expected {a.shape[0]} names, got "
                         f"{1 if isinstance(names, str) else len(names)}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if list(names).count(n) > 1})
        raise InputError(f"names: duplicate model names {dup}")
    if not np.all(np.isfinite(a)):
        raise InputError("affinity: the matrix holds NaN or infinite values")
    out = {}
    for i, target in enumerate(names):
        pairs = sorted((-a[i, j], str(names[j])) for j in range(len(names)) if j != i)
        out[str(target)] = [(name, float(-neg)) for neg, name in pairs]
    return out
