"""Two estimators side by side, as the seed paper's Figures 3 and 5 compare them.

Figure 3 draws the difference matrix and the Correlation–Priority Curve, Figure 5 the two trees.

For a pair (A, B), A ranks the sources (the attribution affinity in the paper) and B gives the
representation similarity ρ (SVCCA in the paper):

- the **difference matrix** is B's matrix minus A's, each normalised first (`NORMALISATION`), so
  that two estimators on different scales can be subtracted;
- the **Correlation–Priority Curve** (CPC): for each priority p = 1 … N − 1,

      correlation(p) = (1/N) Σᵢ Σⱼ 𝟙(rankᵢ(j) = p) ρᵢⱼ,

  the mean over targets i of B's similarity to the source that A ranks p-th for i. A curve that
  falls as p grows says that the sources A ranks first are also the most similar by B. Beside it,
  the same curve for B's own ranking (the most it can fall), for the ground truth's ranking (the
  oracle's), and its value under a random order (flat). Each point has a bootstrap band over
  targets (`comparison.BOOTSTRAP`);
- the **agreement of the two trees**: the Pearson correlation of their cophenetic distances
  (`similarity.tree_agreement`).

`pair_comparisons` computes every figure of a run's pairs in one place: the report page, the output
folder's PNGs, ``results.json`` and ``modelspace report --compare`` read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..similarity.ranking import rank_sources
from ..similarity.tree import leaf_order, similarity_tree, tree_agreement
from .comparison import BOOTSTRAP, Bootstrap, bootstrap_intervals
from .truth import GroundTruth

__all__ = ["NORMALISATION", "Comparisons", "PairComparison", "PriorityCurve", "compare_pair", "correlation_priority",
           "default_pairs", "difference_matrix", "normalised", "oracle_priority", "pair_agreement", "pair_comparisons",
           "priority_order", "truth_order"]

NORMALISATION = ("each matrix min–max normalised over its off-diagonal pairs, (a − min) / (max − min), "
                 "so that both span 0 to 1")
"""How the difference matrix and the oracle's curves put two estimators on one scale."""


def normalised(matrix: np.ndarray) -> np.ndarray:
    """A similarity matrix min–max normalised over its off-diagonal entries (`NORMALISATION`).

    Parameters
    ----------
    matrix : np.ndarray
        An (N, N) finite matrix.

    Returns
    -------
    np.ndarray
        (N, N) float64: the off-diagonal entries mapped to [0, 1] (all 0 when they are all equal),
        the diagonal 1.

    Raises
    ------
    InputError
        A non-square or non-finite matrix.
    """
    a = _square(matrix, "matrix")
    off = ~np.eye(len(a), dtype=bool)
    out = np.zeros_like(a)
    if off.any():
        low, high = a[off].min(), a[off].max()
        if high > low:
            out[off] = (a[off] - low) / (high - low)
    np.fill_diagonal(out, 1.0)
    return out


def difference_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """B's normalised matrix minus A's (the paper's Figure 3, middle).

    Parameters
    ----------
    a, b : np.ndarray
        (N, N) matrices over the same models in the same order.

    Returns
    -------
    np.ndarray
        (N, N) float64 in [−1, 1], 0 on the diagonal: positive where B finds a pair more alike than A
        does, on the scale `normalised` gives each.

    Raises
    ------
    InputError
        Matrices of different shapes, not square or not finite.
    """
    x, y = _square(a, "a"), _square(b, "b")
    if x.shape != y.shape:
        raise InputError(f"b: shape {y.shape} differs from a's {x.shape}")
    return normalised(y) - normalised(x)


def priority_order(scores: np.ndarray, names: Sequence[str]) -> list[list[int]]:
    """Per target, the other models by descending score: the ranking whose positions are priorities.

    Parameters
    ----------
    scores : np.ndarray
        An (N, N) finite matrix; row i scores the sources of target i.
    names : sequence of str
        The N models' unique names; ties go by name, as `similarity.rank_sources` breaks them.

    Returns
    -------
    list of list of int
        ``order[i][p - 1]``: the index of the source at priority p for target i.
    """
    index = {n: k for k, n in enumerate(names)}
    ranking = rank_sources(scores, names)
    return [[index[s] for s, _ in ranking[n]] for n in names]


def truth_order(truth: GroundTruth, labels: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """The ground truth's ranking (the oracle's) over models matched to its tasks by label.

    A task with several models (seed twins, other architectures) is represented by its first one,
    so that every source has one position in a target's ranking.

    Parameters
    ----------
    truth : GroundTruth
        The measured transfer ranking.
    labels : sequence of str
        The models' task labels.

    Returns
    -------
    kept : list of int
        The models matched to a task of the truth, in the given order.
    order : list of list of int
        Per kept model, positions into `kept` of the sources the truth ranks for its task, best first
        (empty when its task is a source only).
    """
    tasks = set(truth.ranking) | set(truth.sources)
    first: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in tasks and label not in first:
            first[label] = i
    kept = list(first.values())
    position = {labels[i]: k for k, i in enumerate(kept)}
    order = [[position[s] for s in truth.ranking.get(labels[i], []) if s in position and s != labels[i]]
             for i in kept]
    return kept, order


@dataclass(frozen=True)
class PriorityCurve:
    """A Correlation–Priority Curve with its bootstrap band over targets.

    Attributes
    ----------
    priorities : list of int
        p = 1 … the most sources a target ranks.
    mean : list of float
        correlation(p): the mean over the targets that rank a p-th source of its similarity.
    low, high : list of float
        The bootstrap percentile interval of each mean (resampling targets).
    n_targets : list of int
        The targets counted at each p (all of them unless the ranking leaves sources out).
    chance : float
        The value under a random order: the mean over targets of their candidates' mean similarity.
    """

    priorities: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    n_targets: list[int]
    chance: float

    def at(self, p: int) -> tuple[float, float, float]:
        """The curve at one priority.

        Parameters
        ----------
        p : int
            A priority in `priorities`.

        Returns
        -------
        tuple of float
            (mean, low, high).

        Raises
        ------
        InputError
            `p` is not one of the priorities.
        """
        if p not in self.priorities:
            raise InputError(f"p: {p!r} is not among the priorities 1..{len(self.priorities)}")
        i = self.priorities.index(p)
        return self.mean[i], self.low[i], self.high[i]

    def to_dict(self) -> dict:
        """The JSON form.

        Returns
        -------
        dict
            The attributes, floats rounded to 6 decimals.
        """
        return {"priorities": list(self.priorities), "mean": _rounded(self.mean), "low": _rounded(self.low),
                "high": _rounded(self.high), "n_targets": list(self.n_targets), "chance": round(self.chance, 6)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PriorityCurve":
        """A curve from `to_dict`'s output.

        Parameters
        ----------
        d : mapping
            What `to_dict` wrote.

        Returns
        -------
        PriorityCurve
            The curve.
        """
        return cls(list(d["priorities"]), list(d["mean"]), list(d["low"]), list(d["high"]), list(d["n_targets"]),
                   float(d["chance"]))


def correlation_priority(order: Sequence[Sequence[int]], similarity: np.ndarray,
                         bootstrap: Bootstrap = BOOTSTRAP) -> PriorityCurve:
    """The Correlation–Priority Curve of a ranking against a similarity (the paper's Figure 3, right).

    Parameters
    ----------
    order : sequence of sequence of int
        Per target i, the sources best first (`priority_order`, `truth_order`): ``order[i][p - 1]``
        is j with rankᵢ(j) = p.
    similarity : np.ndarray
        (N, N): ρᵢⱼ, row i the target.
    bootstrap : Bootstrap
        How each point's interval is drawn.

    Returns
    -------
    PriorityCurve
        correlation(p) = (1/N) Σᵢ Σⱼ 𝟙(rankᵢ(j) = p) ρᵢⱼ, where a ranking that leaves a target without a
        p-th source leaves that target out of the mean at p.

    Raises
    ------
    InputError
        A ranking of another number of targets than the matrix's, a source index out of range, or
        no target ranking any source.
    """
    rho = _square(similarity, "similarity")
    n = len(rho)
    if len(order) != n:
        raise InputError(f"order: {len(order)} targets for a similarity of {n} models")
    depth = max((len(o) for o in order), default=0)
    if depth == 0:
        raise InputError("order: no target ranks any source")
    table = np.full((n, depth), np.nan)
    chance = []
    for i, sources in enumerate(order):
        sources = [int(j) for j in sources]
        if any(j < 0 or j >= n or j == i for j in sources):
            raise InputError(f"order[{i}]: sources must be other models' indices in 0..{n - 1}")
        table[i, :len(sources)] = rho[i, sources]
        if sources:
            chance.append(float(rho[i, sources].mean()))
    ranked = ~np.all(np.isnan(table), axis=1)  # a target that ranks no source counts nowhere
    table = table[ranked]
    counts = (~np.isnan(table)).sum(axis=0)
    low, high = bootstrap_intervals(table, bootstrap)
    return PriorityCurve(list(range(1, depth + 1)), [float(v) for v in np.nanmean(table, axis=0)],
                         [float(v) for v in low], [float(v) for v in high], [int(c) for c in counts],
                         float(np.mean(chance)))


@dataclass(frozen=True)
class PairComparison:
    """Two estimators compared as the paper's Figures 3 and 5 do.

    Attributes
    ----------
    ranking : str
        Estimator A's id: its matrix ranks the sources; the difference subtracts its matrix.
    similarity : str
        Estimator B's id: its matrix gives ρ; the difference is its matrix minus A's.
    names : list of str
        The models both estimators hold, in the order of A's tree over them.
    difference : np.ndarray
        (len(names), len(names)): `difference_matrix` of A and B, in that order.
    agreement : float
        The cophenetic correlation of the two trees over `names` (NaN below three models).
    curves : dict of str to PriorityCurve
        The CPC against B's similarity of the sources ranked by ``"ranking"`` (A), ``"self"`` (B
        itself: the steepest fall a ranking can give) and, with a ground truth, ``"oracle"``.
    cpc_names : list of str
        The models the curves are over: with a ground truth those matched to its tasks
        (`truth_order`), so that the three rankings order the same sources; else `names`.
    """

    ranking: str
    similarity: str
    names: list[str]
    difference: np.ndarray
    agreement: float
    curves: dict[str, PriorityCurve]
    cpc_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON form (``results.json``'s ``"comparison"`` holds one per pair).

        Returns
        -------
        dict
            ``{"ranking", "similarity", "names", "difference", "agreement", "cpc_names", "curves"}``, the
            difference as rows rounded to 4 decimals, an undefined agreement as null.
        """
        return {"ranking": self.ranking, "similarity": self.similarity, "names": list(self.names),
                "difference": np.round(self.difference, 4).tolist(),
                "agreement": None if np.isnan(self.agreement) else round(float(self.agreement), 6),
                "cpc_names": list(self.cpc_names), "curves": {k: c.to_dict() for k, c in self.curves.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PairComparison":
        """A comparison from `to_dict`'s output.

        Parameters
        ----------
        d : mapping
            What `to_dict` wrote.

        Returns
        -------
        PairComparison
            The comparison.
        """
        agreement = d.get("agreement")
        return cls(d["ranking"], d["similarity"], list(d["names"]), np.asarray(d["difference"], dtype=np.float64),
                   float("nan") if agreement is None else float(agreement),
                   {k: PriorityCurve.from_dict(c) for k, c in d["curves"].items()}, list(d.get("cpc_names") or []))


@dataclass(frozen=True)
class Comparisons:
    """Every pair of a run compared, and the oracle's ranking against each estimator.

    Attributes
    ----------
    pairs : list of PairComparison
        The pairs, in the order the page offers them (the first is shown first).
    oracle : dict of str to PriorityCurve
        With a ground truth: per estimator id, the CPC of the truth's ranking against its normalised
        matrix (`NORMALISATION`), so that the curves share one scale: the similarity whose values fall
        fastest along the measured ranking is the one that predicts transfer.
    normalisation : str
        How the matrices are put on one scale.
    bootstrap : Bootstrap
        How the bands were drawn.
    """

    pairs: list[PairComparison]
    oracle: dict[str, PriorityCurve] = field(default_factory=dict)
    normalisation: str = NORMALISATION
    bootstrap: Bootstrap = BOOTSTRAP

    def pair(self, ranking: str, similarity: str) -> PairComparison | None:
        """The comparison of one ordered pair.

        Parameters
        ----------
        ranking, similarity : str
            A's and B's ids.

        Returns
        -------
        PairComparison or None
            None when the pair was not compared.
        """
        return next((p for p in self.pairs if (p.ranking, p.similarity) == (ranking, similarity)), None)

    def to_dict(self) -> dict:
        """The JSON form (``results.json``'s ``"comparison"``).

        Returns
        -------
        dict
            ``{"normalisation", "bootstrap", "pairs", "oracle"}``.
        """
        b = self.bootstrap
        return {"normalisation": self.normalisation,
                "bootstrap": {"n_resamples": b.n_resamples, "seed": b.seed, "level": b.level},
                "pairs": [p.to_dict() for p in self.pairs],
                "oracle": {k: c.to_dict() for k, c in self.oracle.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Comparisons":
        """Comparisons from `to_dict`'s output.

        Parameters
        ----------
        d : mapping
            What `to_dict` wrote.

        Returns
        -------
        Comparisons
            The comparisons.
        """
        return cls([PairComparison.from_dict(p) for p in d.get("pairs", [])],
                   {k: PriorityCurve.from_dict(c) for k, c in (d.get("oracle") or {}).items()},
                   d.get("normalisation", NORMALISATION), Bootstrap(**(d.get("bootstrap") or {})))


def pair_agreement(a, b) -> tuple[float, int]:
    """The agreement of two estimators' trees over the models both hold (the paper's Figure 5).

    Parameters
    ----------
    a, b : MethodResult
        Anything with ``names`` and ``affinity``.

    Returns
    -------
    tuple of (float, int)
        The cophenetic correlation of the two trees (`similarity.tree_agreement`; NaN below three
        shared models) and the number of shared models.
    """
    shared = [n for n in a.names if n in set(b.names)]
    if len(shared) < 2:
        return float("nan"), len(shared)
    ia, ib = [a.names.index(n) for n in shared], [b.names.index(n) for n in shared]
    return tree_agreement(similarity_tree(a.affinity[np.ix_(ia, ia)]),
                          similarity_tree(b.affinity[np.ix_(ib, ib)])), len(shared)


def compare_pair(a, b, truth: GroundTruth | None = None, bootstrap: Bootstrap = BOOTSTRAP) -> PairComparison:
    """Compare two estimators: A ranks the sources, B gives the similarity.

    Parameters
    ----------
    a, b : MethodResult
        Anything with ``id``, ``names``, ``labels`` and ``affinity`` (a `results.MethodResult`).
    truth : GroundTruth, optional
        Adds the oracle's curve and restricts the curves to the models matched to its tasks.
    bootstrap : Bootstrap
        How the bands are drawn.

    Returns
    -------
    PairComparison
        The difference matrix, the trees' agreement and the curves.

    Raises
    ------
    InputError
        Fewer than two models shared by the two estimators.
    """
    shared = [n for n in a.names if n in set(b.names)]
    if len(shared) < 2:
        raise InputError(f"{a.id} and {b.id}: {len(shared)} model(s) in common; a comparison needs two")
    ia, ib = [a.names.index(n) for n in shared], [b.names.index(n) for n in shared]
    ma, mb = a.affinity[np.ix_(ia, ia)], b.affinity[np.ix_(ib, ib)]
    tree_a, tree_b = similarity_tree(ma), similarity_tree(mb)
    order = leaf_order(tree_a)
    names = [shared[i] for i in order]
    difference = difference_matrix(ma, mb)[np.ix_(order, order)]
    keep, oracle = list(range(len(shared))), None
    if truth is not None:
        matched, oracle = truth_order(truth, [a.labels[i] for i in ia])
        if len(matched) >= 2 and any(oracle):
            keep = matched
        else:
            oracle = None
    sub_names = [shared[i] for i in keep]
    ka, kb = ma[np.ix_(keep, keep)], mb[np.ix_(keep, keep)]
    curves = {"ranking": correlation_priority(priority_order(ka, sub_names), kb, bootstrap),
              "self": correlation_priority(priority_order(kb, sub_names), kb, bootstrap)}
    if oracle is not None:
        curves["oracle"] = correlation_priority(oracle, kb, bootstrap)
    # the same trees as `pair_agreement`'s, already built here
    return PairComparison(a.id, b.id, names, difference, tree_agreement(tree_a, tree_b), curves, sub_names)


def oracle_priority(estimators: Sequence, truth: GroundTruth,
                    bootstrap: Bootstrap = BOOTSTRAP) -> dict[str, PriorityCurve]:
    """Per estimator, the CPC of the ground truth's ranking against its normalised matrix.

    Parameters
    ----------
    estimators : sequence of MethodResult
        Anything with ``id``, ``labels`` and ``affinity``.
    truth : GroundTruth
        The measured transfer ranking.
    bootstrap : Bootstrap
        How the bands are drawn.

    Returns
    -------
    dict of str to PriorityCurve
        Estimator id -> its curve; an estimator with fewer than two models matched to the truth is
        left out.
    """
    out = {}
    for e in estimators:
        kept, order = truth_order(truth, e.labels)
        if len(kept) < 2 or not any(order):
            continue
        out[e.id] = correlation_priority(order, normalised(e.affinity[np.ix_(kept, kept)]), bootstrap)
    return out


def default_pairs(estimators: Sequence, first: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The pairs a run compares: `first`, then the default attribution method against each other estimator.

    The default attribution method is the run's first (the first of `attribution.DEFAULT_METHODS`
    in a run with the default methods); the representation baselines come first among its partners,
    as in the paper's Figure 3, then the other methods.

    Parameters
    ----------
    estimators : sequence of MethodResult
        Anything with ``id`` and ``kind``.
    first : sequence of (str, str)
        Pairs of ids asked for (``modelspace report --compare A B``), kept in front.

    Returns
    -------
    list of (str, str)
        (A, B) pairs of ids, each once.

    Raises
    ------
    InputError
        A pair in `first` naming an estimator not among `estimators`, or the same one twice.
    """
    ids = [e.id for e in estimators]
    for a, b in first:
        for name in (a, b):
            if name not in ids:
                raise InputError(f"compare: {name!r} is not one of the estimators: {', '.join(ids)}")
        if a == b:
            raise InputError(f"compare: {a!r} twice; a comparison needs two estimators")
    methods = [e.id for e in estimators if e.kind == "method"]
    lead = methods[0] if methods else (ids[0] if ids else None)
    others = [e.id for e in estimators if e.kind != "method"] + [m for m in methods if m != lead]
    pairs = list(dict.fromkeys([*map(tuple, first), *((lead, o) for o in others)]))
    return [p for p in pairs if p[0] is not None]


def pair_comparisons(estimators: Sequence, truth: GroundTruth | None = None,
                     pairs: Sequence[tuple[str, str]] | None = None, bootstrap: Bootstrap = BOOTSTRAP,
                     known: Comparisons | None = None) -> Comparisons:
    """Every comparison of a run: its pairs (`default_pairs`) and the oracle's curves.

    Parameters
    ----------
    estimators : sequence of MethodResult
        Anything with ``id``, ``kind``, ``names``, ``labels`` and ``affinity``.
    truth : GroundTruth, optional
        The measured transfer ranking, for the oracle's curves.
    pairs : sequence of (str, str), optional
        Pairs of ids compared first; the defaults follow.
    bootstrap : Bootstrap
        How the bands are drawn.
    known : Comparisons, optional
        Pairs compared before (a run's ``results.json``), taken as they are when no truth is given,
        with their oracle's curves: a page drawn again from a folder keeps the run's figures.

    Returns
    -------
    Comparisons
        The pairs whose estimators share at least two models, and with a truth the oracle's curves.
    """
    by_id = {e.id: e for e in estimators}
    reuse = known if truth is None and known is not None and known.bootstrap == bootstrap else None
    done = []
    for a, b in default_pairs(estimators, pairs or ()):
        before = reuse.pair(a, b) if reuse is not None else None
        if before is not None:
            done.append(before)
        elif len(set(by_id[a].names) & set(by_id[b].names)) >= 2:
            done.append(compare_pair(by_id[a], by_id[b], truth, bootstrap))
    oracle = oracle_priority(estimators, truth, bootstrap) if truth is not None else dict(reuse.oracle if reuse else {})
    return Comparisons(done, oracle, NORMALISATION, bootstrap)


def _square(matrix: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"{what}: expected a square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what}: the matrix holds NaN or infinite values")
    return a


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 6) for v in values]
