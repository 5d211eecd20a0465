"""Are the differences real? Paired comparisons of estimators over targets, with a bootstrap.

Two estimators scored on the same targets differ by a mean of per-target differences; how much
that mean depends on which targets were scored is told by a percentile bootstrap over targets
(`Bootstrap`: resamples, seed and coverage in one value, `BOOTSTRAP` the one default that the
study, the report page and its plots use). A lead whose interval contains 0 is not distinguishable
from no lead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, check_int
from .metrics import Evaluation, target_scores

__all__ = ["BOOTSTRAP", "Bootstrap", "Comparison", "Difference", "bootstrap_intervals", "compare_estimators",
           "paired_difference", "per_target_scores"]


@dataclass(frozen=True)
class Bootstrap:
    """How a bootstrap interval over targets is drawn.

    Targets are resampled with replacement `n_resamples` times (NumPy's default generator seeded
    with `seed`); the interval holds the central `level` of the resampled means.

    Parameters
    ----------
    n_resamples : int
        Number of resamples (at least 1).
    seed : int
        Seed of the generator.
    level : float
        Coverage, in (0, 1).

    Raises
    ------
    InputError
        A value out of range, naming the field.
    """

    n_resamples: int = 2000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_int(self.n_resamples, "n_resamples")
        check_int(self.seed, "seed", minimum=0)
        if not isinstance(self.level, (int, float)) or not 0.0 < self.level < 1.0:
            raise InputError(f"level: expected a coverage in (0, 1), got {self.level!r}")


BOOTSTRAP = Bootstrap()
"""The intervals of the study, the report page and its plots: 2000 resamples, seed 0, 95 %."""


@dataclass(frozen=True)
class Difference:
    """The mean difference of two estimators' per-target scores and its bootstrap interval.

    Attributes
    ----------
    other : str
        The estimator compared with the best ("random" for the reference).
    mean : float
        Mean over targets of best − other.
    low, high : float
        The bootstrap percentile interval of that mean.
    """

    other: str
    mean: float
    low: float
    high: float

    @property
    def distinguishable(self) -> bool:
        """False when the interval contains 0: the data cannot tell the two apart."""
        return not self.low <= 0.0 <= self.high


@dataclass(frozen=True)
class Comparison:
    """Which estimator scored best against a truth, and whether its lead is more than chance.

    Attributes
    ----------
    metric : str
        ``"P@K"`` (with the K) or ``"ρ"``.
    scores : dict of str to float
        Mean score per estimator, best first, then ``"random"``.
    best : str
        The estimator the comparison chose.
    vs_runner_up : Difference or None
        None with a single estimator.
    vs_random : Difference
        The best against random ranking's expectation.
    n_targets : int
        The targets every estimator scores.
    bootstrap : Bootstrap
        How the intervals were drawn.
    tied : tuple of str
        The estimators whose score is within `tie` of the highest, best first (the best alone when
        none ties with it): `best` is the one the tie-breaks chose among them.
    tie : float
        Scores this close count as tied.
    """

    metric: str
    scores: dict[str, float]
    best: str
    vs_runner_up: Difference | None
    vs_random: Difference
    n_targets: int
    bootstrap: Bootstrap = BOOTSTRAP
    tied: tuple[str, ...] = ()
    tie: float = 0.0


def bootstrap_interval(values: Sequence[float], bootstrap: Bootstrap = BOOTSTRAP) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-target `values` (e.g. paired differences).

    Parameters
    ----------
    values : sequence of float
        One finite value per target.
    bootstrap : Bootstrap
        How the interval is drawn.

    Returns
    -------
    tuple of float
        ``(low, high)``: the percentiles (1 − level) / 2 and (1 + level) / 2 of the resampled means.

    Raises
    ------
    InputError
        `values` empty, not 1-D or not finite.
    """
    d = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise InputError(f"values: expected a non-empty 1-D array of finite values, got shape {d.shape}")
    rng = np.random.default_rng(bootstrap.seed)
    means = d[rng.integers(0, len(d), size=(bootstrap.n_resamples, len(d)))].mean(axis=1)
    tail = (1.0 - bootstrap.level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(table: np.ndarray, bootstrap: Bootstrap = BOOTSTRAP) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap intervals of the column means of a (targets × columns) table.

    The targets (rows) are resampled as `bootstrap_interval` resamples them, the same draws for every
    column, so that the intervals of a curve's points come from one set of resampled target sets. A
    NaN is a target without a value in that column: the mean of a resample skips it.

    Parameters
    ----------
    table : np.ndarray
        (n_targets, n_columns), finite or NaN; every column has a finite value.
    bootstrap : Bootstrap
        How the intervals are drawn.

    Returns
    -------
    tuple of np.ndarray
        ``(low, high)``, each (n_columns,): the percentiles (1 − level) / 2 and (1 + level) / 2 of the
        resampled means (NaN where a resample drew no finite value of a column, that resample skipped).

    Raises
    ------
    InputError
        `table` not 2-D, with no row, holding an infinite value, or with a column of NaN only.
    """
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0 or np.isinf(t).any() or np.isnan(t).all(axis=0).any():
        raise InputError(f"table: expected a 2-D array of one row per target and a finite value in every column, "
                         f"got shape {t.shape}")
    rng = np.random.default_rng(bootstrap.seed)
    draws = rng.integers(0, len(t), size=(bootstrap.n_resamples, len(t)))
    tail = (1.0 - bootstrap.level) / 2 * 100
    low, high = np.empty(t.shape[1]), np.empty(t.shape[1])
    step = max(1, 4_000_000 // max(draws.size, 1))  # columns per chunk: bounded memory for large zoos
    for start in range(0, t.shape[1], step):
        block = t[:, start:start + step][draws]  # (resamples, targets, columns)
        counts = (~np.isnan(block)).sum(axis=1)
        means = np.where(counts > 0, np.nansum(block, axis=1) / np.maximum(counts, 1), np.nan)
        low[start:start + step], high[start:start + step] = np.nanpercentile(means, [tail, 100 - tail], axis=0)
    return low, high


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], bootstrap: Bootstrap = BOOTSTRAP,
                      other: str = "b") -> Difference | None:
    """Mean over the targets both score of a − b, with its bootstrap interval.

    Parameters
    ----------
    a, b : mapping of str to float
        Per target, one estimator's score.
    bootstrap : Bootstrap
        How the interval is drawn.
    other : str
        The name `Difference.other` gives `b`.

    Returns
    -------
    Difference or None
        None when no target is scored by both.
    """
    common = [t for t in a if t in b]
    if not common:
        return None
    d = np.array([a[t] - b[t] for t in common], dtype=np.float64)
    low, high = bootstrap_interval(d, bootstrap)
    return Difference(other, float(d.mean()), low, high)


def per_target_scores(evaluation: Evaluation, metric: str = "precision", k: int = 5) -> dict[str, dict[str, float]]:
    """Per estimator, per target: P@k (``metric="precision"``) or Spearman's ρ (``"rho"``).

    The same for ``"random"``: its expectation per target (relevant / candidates for P@k, 0 for ρ).

    Parameters
    ----------
    evaluation : Evaluation
        With per-target details (as `metrics.evaluate_matrices` gives).
    metric : {"precision", "rho"}
        The figure.
    k : int
        The cut-off of P@k, cut to the evaluation's last K.

    Returns
    -------
    dict
        Estimator (and ``"random"``) -> {target: score}; a target whose ρ is undefined (fewer than
        two ranked candidates) is left out.

    Raises
    ------
    InputError
        No per-target details, or an unknown metric.
    """
    if not evaluation.per_target:
        raise InputError("evaluation: no per-target details to compare estimators on")
    if metric not in ("precision", "rho"):
        raise InputError(f"metric: expected 'precision' or 'rho', got {metric!r}")
    k = min(check_int(k, "k"), evaluation.n_candidates)
    out: dict[str, dict[str, float]] = {"random": {}}
    for name, details in evaluation.per_target.items():
        out[name] = target_scores(details, metric, k)
        for target in out[name]:
            d = details[target]
            out["random"][target] = 0.0 if metric == "rho" else len(d["relevant"]) / max(d["n_candidates"], 1)
    return out


def compare_estimators(evaluation: Evaluation, metric: str = "precision", k: int = 5,
                       bootstrap: Bootstrap = BOOTSTRAP, tie: float = 0.0) -> Comparison:
    """Find the best estimator by mean P@k (or ρ), with bootstrap intervals of its lead.

    Its lead is drawn over the runner-up and over random ranking.

    Means within `tie` of the highest count as tied; a tie by P@k goes to the higher mean ρ (again
    within `tie`), and what is still tied to the estimator first in the evaluation's order. With
    ``tie = world.registration.RULE_TIE`` this is the rule registered in ``data/world/candidates.toml`` on one
    evaluation, less its last step (the lower cost), which needs measured costs.

    The differences are paired: each resample draws targets with replacement and takes the mean over
    them of best − other, so the intervals reflect how much the lead depends on which targets were
    scored.

    Parameters
    ----------
    evaluation : Evaluation
        With per-target details (as `metrics.evaluate_matrices` gives).
    metric : {"precision", "rho"}
        The figure compared.
    k : int
        The cut-off of P@k (cut to the last K of a smaller zoo).
    bootstrap : Bootstrap
        How the intervals are drawn.
    tie : float
        See above; 0 counts only equal means as tied.

    Returns
    -------
    Comparison
        The mean scores, the best estimator (and those tied with it), and the paired differences
        (mean and interval) of the best over the runner-up and over random.

    Raises
    ------
    InputError
        No target scored by every estimator.
    """
    scores = per_target_scores(evaluation, metric, k)
    names = [n for n in scores if n != "random"]
    targets = [t for t in scores["random"] if all(t in scores[n] for n in names)]
    if not names or not targets:
        raise InputError("evaluation: no target scored by every estimator")
    table = {n: {t: scores[n][t] for t in targets} for n in [*names, "random"]}
    means = {n: float(np.mean(list(table[n].values()))) for n in names}
    ranked = sorted(names, key=lambda n: -means[n])  # stable: ties keep the evaluation's order
    tied = [n for n in names if means[n] >= means[ranked[0]] - tie]  # in the evaluation's order
    chosen = tied
    if metric == "precision" and len(tied) > 1:
        rho = {n: evaluation.rho.get(n, float("nan")) for n in tied}
        top = max((r for r in rho.values() if np.isfinite(r)), default=None)
        chosen = [n for n in tied if top is not None and rho[n] >= top - tie] or tied
    best = chosen[0]
    ranked = [best, *(n for n in ranked if n != best)]

    def diff(other: str) -> Difference:
        return paired_difference(table[best], table[other], bootstrap, other)

    label = f"P@{min(k, evaluation.n_candidates)}" if metric == "precision" else "ρ"
    return Comparison(label, {**{n: means[n] for n in ranked}, "random": float(np.mean(list(table["random"].values())))},
                      best, diff(ranked[1]) if len(ranked) > 1 else None, diff("random"), len(targets), bootstrap,
                      tuple(n for n in ranked if n in tied), tie)
