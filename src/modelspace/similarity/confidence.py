"""How far to trust a ranking, without an oracle.

Stability over halves of the probe images, and agreement with estimators built on the other kind of
evidence.

For each target model and each estimator of a run (the definition registered in
``data/world/candidates.toml``, section ``[confidence]``, before any of it was scored):

    stability S   mean over B random halves of the probe images of |top-K on the half ∩ top-K on
                  all images| / K, the estimator recomputed on the half's images only;
    agreement G   mean, over every other estimator of the run built on the other kind of evidence
                  (attribution maps against representations; an estimator of any other kind, a
                  fusion, against all the others), of |top-K ∩ its top-K| / K;
    confidence C  (S + G) / 2, or S alone when the run has no estimator of the other kind, or G
                  alone when the estimator cannot be recomputed on a half (the result says so);
    band          "high" C >= 0.8, "medium" 0.6 <= C < 0.8, "low" otherwise.

A top-K here is the first K sources of `rank_sources` (descending score, ties by name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["BANDS", "HALVES", "K", "MIN_IMAGES", "SEED", "Confidence", "Estimate", "agreement", "band", "confidence_k",
           "half_masks", "judge", "too_few_images", "top_k", "top_k_stability"]

# The registered constants: they must equal ``data/world/candidates.toml`` [confidence] (a test checks).
K = 5
"""Sources judged per target; ``min(K, models − 2)`` in runs of fewer than K + 2 models."""
HALVES = 20
"""Random halves of the probe images the stability is measured over."""
SEED = 0
"""Seed of ``numpy.random.default_rng`` that draws the halves."""
MIN_IMAGES = 20
"""Below this many probe images no confidence is given (a half would hold under 10 images)."""
BANDS = {"high": 0.8, "medium": 0.6}
"""Lower bounds of the bands, highest first; below the last the band is "low"."""

#: the kinds of evidence whose estimators judge each other (any other kind is judged by all)
_OPPOSITE = {"method": "baseline", "baseline": "method"}


@dataclass(frozen=True)
class Confidence:
    """How far to trust one target's top-K under one estimator.

    Attributes
    ----------
    stability : float or None
        S; None when the estimator cannot be recomputed on a half (then `note` says why).
    agreement : float or None
        G; None when the run has no estimator of the other kind.
    confidence : float
        C.
    band : str
        "high", "medium" or "low".
    note : str
        Why S or G is missing ("" when both are there).
    """

    stability: float | None
    agreement: float | None
    confidence: float
    band: str
    note: str = ""

    def to_dict(self) -> dict:
        """A JSON-able dict of the fields.

        Returns
        -------
        dict
            ``stability``, ``agreement``, ``confidence``, ``band``, and ``note`` only when there is one.
        """
        out = {"stability": self.stability, "agreement": self.agreement, "confidence": self.confidence,
               "band": self.band}
        return {**out, "note": self.note} if self.note else out

    @classmethod
    def from_dict(cls, d: Mapping) -> "Confidence":
        """The inverse of `to_dict`.

        Parameters
        ----------
        d : mapping
            A dict `to_dict` wrote.

        Returns
        -------
        Confidence
            The value it describes.
        """
        return cls(d.get("stability"), d.get("agreement"), float(d["confidence"]), str(d["band"]), d.get("note", ""))


def half_masks(n_images: int, halves: int = HALVES, seed: int = SEED) -> np.ndarray:
    """Random halves of the probe images, as masks.

    Parameters
    ----------
    n_images : int
        The probe images.
    halves : int, default HALVES
        How many halves.
    seed : int, default CONFIDENCE_SEED
        The seed of ``numpy.random.default_rng``, which draws the rows one after another.

    Returns
    -------
    np.ndarray
        bool (halves, n_images): row b marks a random subset of floor(n_images / 2) images, drawn
        without replacement.
    """
    if n_images < 2:
        raise InputError(f"n_images: a half needs at least 2 probe images, got {n_images}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((halves, n_images), dtype=bool)
    for b in range(halves):
        masks[b, rng.choice(n_images, n_images // 2, replace=False)] = True
    return masks


def confidence_k(n_models: int) -> int:
    """K for a run of `n_models` models.

    Parameters
    ----------
    n_models : int
        The models of the run.

    Returns
    -------
    int
        min(K, n_models − 2), at least 0 (0: too few models to judge).
    """
    return max(0, min(K, n_models - 2))


def too_few_images(n_images: int, n_distinct: int | None = None) -> str | None:
    """The message a run of `n_images` probe images carries instead of a confidence, or None.

    Parameters
    ----------
    n_images : int
        The probe images.
    n_distinct : int, optional
        How many of them differ (`probe.ProbeSet.copies`); halves of copies of a few images agree
        with each other whatever the estimate is worth, so these are what must reach `MIN_IMAGES`.

    Returns
    -------
    str or None
        "confidence: not given: ..." naming the counts, or None when there are enough images.
    """
    n_distinct = n_images if n_distinct is None else n_distinct
    if n_distinct >= MIN_IMAGES:
        return None
    images = f"{n_images} probe image{'' if n_images == 1 else 's'}"
    if n_distinct < n_images:
        images += f", {n_distinct} of them distinct"
    return f"confidence: not given: {images}, fewer than the {MIN_IMAGES} its halves need"


def top_k(matrix: np.ndarray, names: Sequence[str], k: int) -> dict[str, frozenset[str]]:
    """Per target (row), its k best sources as a set.

    Parameters
    ----------
    matrix : np.ndarray
        (N, N) scores, higher is closer; row i ranks the sources of target i.
    names : sequence of str
        The N models' names.
    k : int
        How many sources.

    Returns
    -------
    dict of str to frozenset of str
        Target -> its k best other models (descending score, ties by name, itself excluded).
    """
    a = np.asarray(matrix, dtype=np.float64)
    out = {}
    for i, target in enumerate(names):
        order = sorted((-a[i, j], str(names[j])) for j in range(len(names)) if j != i)
        out[str(target)] = frozenset(name for _, name in order[:k])
    return out


def top_k_stability(full_matrix: np.ndarray, half_matrices: np.ndarray, k: int,
                    names: Sequence[str] | None = None) -> np.ndarray:
    """S per target: the mean over the halves of ``|top-k on the half ∩ top-k on all images| / k``.

    Parameters
    ----------
    full_matrix : (N, N) array
        The estimator on all probe images.
    half_matrices : (B, N, N) array
        The estimator on each half's images only.
    k : int
        Sources judged, 1 <= k <= N − 1.
    names : sequence of str, optional
        Model names (they break ties, as in `rank_sources`); default "0", "1", ....

    Returns
    -------
    np.ndarray
        (N,) float64, in [0, 1].
    """
    full = np.asarray(full_matrix, dtype=np.float64)
    halves = np.asarray(half_matrices, dtype=np.float64)
    n = full.shape[0]
    if full.shape != (n, n) or halves.ndim != 3 or halves.shape[1:] != (n, n) or not len(halves):
        raise InputError(f"expected an (N, N) matrix and (B, N, N) halves, got {full.shape} and {halves.shape}")
    if not 1 <= k <= n - 1:
        raise InputError(f"k: expected 1 <= k <= {n - 1}, got {k}")
    names = [str(i) for i in range(n)] if names is None else [str(x) for x in names]
    reference = top_k(full, names, k)
    overlap = np.zeros(n)
    for half in halves:
        tops = top_k(half, names, k)
        overlap += [len(tops[t] & reference[t]) for t in names]
    return overlap / (len(halves) * k)


def agreement(tops: Mapping[str, frozenset[str]], others: Sequence[Mapping[str, frozenset[str]]],
              k: int) -> dict[str, float | None]:
    """G per target: the mean over `others` of ``|its top-k ∩ that estimator's top-k| / k``.

    Parameters
    ----------
    tops : mapping
        Target -> top-k sources of the estimator judged (`top_k`).
    others : sequence of mappings
        The same for each estimator it is judged against; one that does not rank a target (the
        model failed there) is left out of that target's mean.
    k : int
        The K of the run (the divisor).

    Returns
    -------
    dict
        Target -> G, or None when no other estimator ranks the target.
    """
    out = {}
    for target, top in tops.items():
        scores = [len(top & other[target]) / k for other in others if target in other]
        out[target] = float(np.mean(scores)) if scores else None
    return out


def band(value: float) -> str:
    """The band of a confidence value.

    Parameters
    ----------
    value : float
        A confidence C in [0, 1].

    Returns
    -------
    str
        The first band of `BANDS` whose lower bound ``value`` reaches, else "low".
    """
    for name, lower in BANDS.items():
        if value >= lower:
            return name
    return "low"


@dataclass(frozen=True)
class Estimate:
    """One estimator of a run as `judge` reads it.

    Attributes
    ----------
    id, kind : str
        The estimator's id and kind ("method", "baseline", or another: judged by all the others).
    names : list of str
        Its models, in matrix order.
    matrix : (N, N) array
        Its scores on all probe images.
    halves : (B, N, N) array or None
        Its scores on each half; None when it cannot be recomputed on one.
    why_no_halves : str
        Why `halves` is None.
    """

    id: str
    kind: str
    names: Sequence[str]
    matrix: np.ndarray
    halves: np.ndarray | None = None
    why_no_halves: str = ""


def judge(estimates: Sequence[Estimate], k: int) -> dict[str, dict[str, Confidence]]:
    """Every estimator's `Confidence` per target, each judged against the estimators of the other kind.

    Parameters
    ----------
    estimates : sequence of Estimate
        The run's estimators.
    k : int
        The run's K (`confidence_k`), >= 1.

    Returns
    -------
    dict
        Estimator id -> target -> Confidence; an estimator with neither halves nor an estimator of
        the other kind, or with fewer than k + 1 models, gets none (an empty dict).
    """
    if k < 1:
        raise InputError(f"k: expected at least 1, got {k}")
    tops = {e.id: top_k(e.matrix, e.names, k) for e in estimates}
    out: dict[str, dict[str, Confidence]] = {}
    for e in estimates:
        out[e.id] = {}
        if len(e.names) < k + 1:
            continue
        judges = [tops[o.id] for o in estimates
                  if o.id != e.id and (o.kind == _OPPOSITE[e.kind] if e.kind in _OPPOSITE else True)]
        g = agreement(tops[e.id], judges, k)
        s = (dict(zip(map(str, e.names), top_k_stability(e.matrix, e.halves, k, e.names)))
             if e.halves is not None else None)
        for target in tops[e.id]:
            stab = None if s is None else float(s[target])
            agree = g[target]
            parts = [v for v in (stab, agree) if v is not None]
            if not parts:
                continue
            notes = []
            if stab is None:
                notes.append(f"no stability: {e.why_no_halves}" if e.why_no_halves else "no stability")
            if agree is None:
                notes.append("no agreement: no estimator of the other kind of evidence ranks this target")
            c = float(np.mean(parts))
            out[e.id][target] = Confidence(stab, agree, c, band(c), "; ".join(notes))
    return out
