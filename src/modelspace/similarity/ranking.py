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

    Returns
    -------
    dict of str to list of (str, float)
        Target name -> the other N − 1 models as (name, affinity) pairs, highest affinity first.

    Raises
    ------
    InputError
        If the matrix is not square or not finite, or the names do not match its rows or repeat.
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


HUB_SHARE = 1 / 3
"""A source that is the best source of more than this share of the targets is a hub."""


def top_sources(ranking: dict[str, list]) -> dict[str, str]:
    """Per target, its first-ranked source (targets ranking none are left out).

    Parameters
    ----------
    ranking : dict
        Per target, its sources best first (names, or (name, value) pairs as `rank_sources` gives).

    Returns
    -------
    dict of str to str
        Target -> the name of its best source.
    """
    return {t: (r[0][0] if isinstance(r[0], tuple) else r[0]) for t, r in ranking.items() if r}


def hubs(ranking: dict[str, list], share: float = HUB_SHARE) -> dict[str, int]:
    """Sources that are the top-1 source of more than `share` of the targets, with how many, most first.

    A hub says more about the estimate than about the models: one model that every other one is
    closest to (a generic, high-norm map) makes every target's best source the same.

    Parameters
    ----------
    ranking : dict
        Per target, its sources best first (names, or (name, value) pairs as `rank_sources` gives).
    share : float
        The fraction of the targets' top-1 slots above which a source counts as a hub, in (0, 1);
        default `HUB_SHARE` (a third).

    Returns
    -------
    dict of str to int
        Hub -> how many targets it is the top-1 source of, most first (ties by name); empty when none is a hub.

    Raises
    ------
    InputError
        If ``share`` is not in (0, 1).
    """
    if not 0.0 < share < 1.0:
        raise InputError(f"share: expected a fraction in (0, 1), got {share!r}")
    tops = list(top_sources(ranking).values())
    counts: dict[str, int] = {}
    for s in tops:
        counts[s] = counts.get(s, 0) + 1
    return {s: c for s, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c > share * len(tops)}
