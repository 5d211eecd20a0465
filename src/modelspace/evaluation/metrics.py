"""The metrics: P@K, R@K and Spearman's ρ of an estimated ranking against a ground truth.

For each target task, the truth's top `n_relevant` sources are the relevant ones (`truth`). An
estimated ranking of the same sources is scored at every cut-off K by

    P@K = (relevant sources among the estimate's top K) / K
    R@K = (relevant sources among the estimate's top K) / n_relevant,

per target (`target_scores`) and averaged over the targets (`Curves`). `random_curves` and
`oracle_curves` give the two reference lines. Beside them, ρ: per target, the Spearman correlation
between the estimate's order of the candidates it ranks and the truth's order of the same sources,
averaged over the targets (the anchor figure of the RSA / DDS line of work; random ranking gives 0
in expectation, the oracle 1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import GroundTruthError, InputError, check_int
from ..similarity.ranking import rank_sources
from .truth import DEFAULT_N_RELEVANT, GroundTruth, unmatched_names

__all__ = ["Curves", "Evaluation", "evaluate", "evaluate_matrices", "evaluation_report", "format_table",
           "oracle_curves", "random_curves", "spearman", "target_scores"]

_LOG = logging.getLogger(__name__)


@dataclass
class Curves:
    """Mean precision and recall at each cut-off K.

    Parameters
    ----------
    ks : list of int
        The cut-offs, 1..n_candidates.
    precision : list of float
        Mean P@K at each cut-off (NaN where no target has K candidates).
    recall : list of float
        Mean R@K at each cut-off.
    """

    ks: list[int]
    precision: list[float]
    recall: list[float]

    def at(self, k: int) -> tuple[float, float]:
        """The precision and recall at one cut-off.

        Parameters
        ----------
        k : int
            A cut-off in `ks`.

        Returns
        -------
        tuple of float
            (P@k, R@k).
        """
        if k not in self.ks:
            raise InputError(f"k: {k!r} is not among the cut-offs {self.ks[0]}..{self.ks[-1]}")
        i = self.ks.index(k)
        return self.precision[i], self.recall[i]

    def to_dict(self) -> dict:
        """A JSON-able dict of the curves.

        Returns
        -------
        dict
            ``{"ks": [...], "precision": [...], "recall": [...]}``.
        """
        return {"ks": [int(k) for k in self.ks], "precision": [float(p) for p in self.precision],
                "recall": [float(r) for r in self.recall]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Curves":
        """Curves from `to_dict`'s output.

        Parameters
        ----------
        d : mapping
            ``{"ks", "precision", "recall"}`` as `to_dict` writes it.

        Returns
        -------
        Curves
            The curves.
        """
        return cls(list(d["ks"]), list(d["precision"]), list(d["recall"]))


def evaluate(ranking: Mapping[str, Sequence[str]], truth: GroundTruth, n_relevant: int = DEFAULT_N_RELEVANT, *,
             restrict_to_estimated: bool = False) -> tuple[Curves, dict]:
    """Score an estimated ranking (target -> sources best first) against a ground truth.

    `ranking` values are source names, or the (name, score) pairs of `rank_sources`.

    The targets scored are those in both `ranking` and `truth.targets` (others are skipped: in
    Taskonomy, colorization and inpainting are sources only). For each target the estimate is
    restricted to the sources the truth ranks for it (the target itself excluded); the relevant
    sources are the truth's top `n_relevant`. K runs over 1..n_candidates, the largest number of
    candidate sources of a scored target (19 for Taskonomy). A candidate the estimate leaves out
    is never a hit.

    Parameters
    ----------
    ranking : mapping of str to sequence
        Target -> its sources best first: names, or the (name, score) pairs of `rank_sources`.
    truth : GroundTruth
        The measured transfer ranking.
    n_relevant : int, default DEFAULT_N_RELEVANT
        How many of the truth's top sources count as relevant.
    restrict_to_estimated : bool, default False
        Cut the truth's ranking down to the sources the estimate ranks first, so that a zoo covering
        part of the ground truth's tasks is not charged for the absent ones.

    Returns
    -------
    curves : Curves
        The mean curves.
    details : dict
        Per target: ``{"relevant", "ranked", "hits_at_k", "n_candidates", "spearman"}``
        (``spearman`` is None below two ranked candidates).

    Raises
    ------
    GroundTruthError
        no target in common (names both task lists).
    """
    check_int(n_relevant, "n_relevant")
    if not isinstance(ranking, Mapping):
        raise InputError(f"ranking: expected a mapping target -> sources, "
                         f"got {type(ranking).__name__}")
    targets = [t for t in truth.targets if t in ranking]
    if not targets:
        raise GroundTruthError(f"no target in common between the estimate ({sorted(ranking)}) "
                               f"and {truth.origin} ({truth.targets})")
    details = {}
    for target in targets:
        estimate = list(dict.fromkeys(_label(s, target) for s in ranking[target]))
        candidates = truth.ranking[target]
        if restrict_to_estimated:
            candidates = [s for s in candidates if s in set(estimate)]
        allowed = set(candidates)
        ranked = [s for s in estimate if s in allowed]
        relevant = candidates[:n_relevant]
        details[target] = {"relevant": relevant, "ranked": ranked,
                           "hits_at_k": _hits(ranked, set(relevant)),
                           "n_candidates": len(candidates),
                           "spearman": spearman(ranked, candidates)}

    n_candidates = max(d["n_candidates"] for d in details.values())
    if n_candidates == 0:
        raise GroundTruthError(f"no source in common between the estimate and {truth.origin}")
    ks = np.arange(1, n_candidates + 1)
    precision, recall = np.zeros(n_candidates), np.zeros(n_candidates)
    for d in details.values():
        # A short estimate (sources left out) keeps its last count: nothing more is found.
        d["hits_at_k"] = _pad(d["hits_at_k"], n_candidates)
        hits = np.array(d["hits_at_k"], dtype=np.float64)
        precision += hits / ks
        recall += hits / max(len(d["relevant"]), 1)
    n = len(details)
    curves = Curves([int(k) for k in ks], [float(p) for p in precision / n],
                    [float(r) for r in recall / n])
    return curves, details


def _label(entry, target: str) -> str:
    """A source label; a (name, score) pair, as `rank_sources` returns, gives its name."""
    if isinstance(entry, tuple) and len(entry) == 2:
        entry = entry[0]
    if not isinstance(entry, str):
        raise InputError(f"ranking[{target!r}]: expected source names, got {entry!r}")
    return entry


def _pad(hits: list[int], length: int) -> list[int]:
    return hits + [hits[-1] if hits else 0] * (length - len(hits))


def _hits(ranked: list[str], relevant: set[str]) -> list[int]:
    """Cumulative count of relevant sources in ranked[:K], K = 1..len(ranked)."""
    return [int(h) for h in np.cumsum([s in relevant for s in ranked])]


def target_scores(details: Mapping[str, Mapping], metric: str, k: int | None = None) -> dict[str, float]:
    """Per target, one figure of an estimator, from its per-target details (`evaluate`'s).

    Parameters
    ----------
    details : mapping
        Target -> ``{"relevant", "hits_at_k", "spearman", ...}`` as `evaluate` gives them.
    metric : {"precision", "recall", "rho"}
        P@k = hits among the top k / k; R@k = hits among the top k / relevant sources; ρ = the
        details' Spearman. A target with fewer than k candidates keeps its last count of hits
        (nothing more is found); a target without ρ (fewer than two ranked candidates) is left out.
    k : int, optional
        The cut-off; needed for P@k and R@k.

    Returns
    -------
    dict of str to float
        Target -> the figure.

    Raises
    ------
    InputError
        An unknown metric, or no k for P@k or R@k.
    """
    if metric == "rho":
        return {t: float(d["spearman"]) for t, d in details.items() if d.get("spearman") is not None}
    if metric not in ("precision", "recall"):
        raise InputError(f"metric: expected 'precision', 'recall' or 'rho', got {metric!r}")
    if k is None:
        raise InputError(f"k: the cut-off is needed for {metric}")
    k = check_int(k, "k")
    out = {}
    for target, d in details.items():
        hits = _pad(list(d["hits_at_k"]), k)[k - 1]
        out[target] = hits / k if metric == "precision" else hits / max(len(d["relevant"]), 1)
    return out


def spearman(ranked: Sequence[str], truth_order: Sequence[str]) -> float | None:
    """Spearman's ρ between the order of `ranked` and the order `truth_order` gives the same sources.

    Parameters
    ----------
    ranked : sequence of str
        The estimated order of some sources.
    truth_order : sequence of str
        The true order, holding at least every source of `ranked`.

    Returns
    -------
    float or None
        1 − 6 Σ d² / (n (n² − 1)) over rank positions (orders have no ties); None below two sources.
    """
    position = {s: i for i, s in enumerate(s for s in truth_order if s in set(ranked))}
    n = len(position)
    if n < 2:
        return None
    d = np.array([i - position[s] for i, s in enumerate(s for s in ranked if s in position)], dtype=np.float64)
    return float(1.0 - 6.0 * (d**2).sum() / (n * (n * n - 1)))


def random_curves(n_candidates: int, n_relevant: int = DEFAULT_N_RELEVANT) -> Curves:
    """Expected curves of a uniformly random ranking.

    Parameters
    ----------
    n_candidates : int
        The candidate sources per target.
    n_relevant : int, default DEFAULT_N_RELEVANT
        The relevant sources among them.

    Returns
    -------
    Curves
        P@K = n_rel / n_cand and R@K = K / n_cand, for K = 1..n_candidates.
    """
    _check_baseline_args(n_candidates, n_relevant)
    ks = list(range(1, n_candidates + 1))
    return Curves(ks, [n_relevant / n_candidates] * n_candidates, [k / n_candidates for k in ks])


def oracle_curves(n_candidates: int, n_relevant: int = DEFAULT_N_RELEVANT) -> Curves:
    """Curves of the perfect ranking.

    Parameters
    ----------
    n_candidates : int
        The candidate sources per target.
    n_relevant : int, default DEFAULT_N_RELEVANT
        The relevant sources among them.

    Returns
    -------
    Curves
        P@K = min(K, n_rel) / K and R@K = min(K, n_rel) / n_rel, for K = 1..n_candidates.
    """
    _check_baseline_args(n_candidates, n_relevant)
    ks = list(range(1, n_candidates + 1))
    return Curves(ks, [min(k, n_relevant) / k for k in ks],
                  [min(k, n_relevant) / n_relevant for k in ks])


def _check_baseline_args(n_candidates: int, n_relevant: int) -> None:
    check_int(n_candidates, "n_candidates")
    check_int(n_relevant, "n_relevant")
    if n_relevant > n_candidates:
        raise InputError(f"n_relevant: {n_relevant} exceeds the {n_candidates} candidate source(s) the truth ranks "
                         f"among these models; lower --n-relevant (n_relevant=) to at most {n_candidates}")


@dataclass(frozen=True)
class Evaluation(Mapping):
    """Every estimator's curves against one ground truth, beside the random and oracle references.

    Read it by attribute (``evaluation.methods["saliency"].at(5)``). It also reads like the JSON
    document `to_dict` gives (``evaluation["methods"]["saliency"]["precision"]``), so code written
    against a `results.json` works on it unchanged.

    Attributes
    ----------
    methods : dict of str to Curves
        Per estimator id, its mean curves.
    n_candidates : int
        The largest number of candidate sources of a scored target (the last K).
    n_relevant : int
        The truth's top sources counted relevant per target.
    per_target : dict
        Per estimator, per target: ``{"relevant", "ranked", "hits_at_k", "n_candidates"}``.
    """

    methods: dict[str, Curves]
    n_candidates: int
    n_relevant: int = DEFAULT_N_RELEVANT
    per_target: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return format_table(self)

    def __post_init__(self) -> None:
        for name, curves in self.methods.items():
            if not isinstance(curves, Curves):
                raise InputError(f"curves_by_method[{name!r}]: expected Curves, got {type(curves).__name__}")
        object.__setattr__(self, "n_candidates", check_int(self.n_candidates, "n_candidates"))
        object.__setattr__(self, "n_relevant", check_int(self.n_relevant, "n_relevant"))

    @property
    def random(self) -> Curves:
        """The expected curves of a uniformly random ranking."""
        return random_curves(self.n_candidates, self.n_relevant)

    @property
    def oracle(self) -> Curves:
        """The curves of the perfect ranking."""
        return oracle_curves(self.n_candidates, self.n_relevant)

    @property
    def rho(self) -> dict[str, float]:
        """Per estimator with `per_target` details: the mean over targets of Spearman's ρ.

        NaN when no target ranks two candidates. Random ranking gives 0 in expectation, the oracle 1.
        """
        out = {}
        for name, targets in self.per_target.items():
            values = [d["spearman"] for d in targets.values() if d.get("spearman") is not None]
            out[name] = float(np.mean(values)) if values else float("nan")
        return out

    def rho_rows(self) -> dict[str, float]:
        """`rho` with the references of `rows`.

        Returns
        -------
        dict of str to float
            Estimator -> mean ρ, then random 0 (its expectation) and oracle 1.
        """
        return {**self.rho, "random": 0.0, "oracle": 1.0}

    def rows(self) -> list[tuple[str, Curves]]:
        """The rows of the table.

        Returns
        -------
        list of (str, Curves)
            (name, curves) of every estimator, then random and oracle.
        """
        return [*self.methods.items(), ("random", self.random), ("oracle", self.oracle)]

    def to_dict(self) -> dict:
        """The JSON form.

        Returns
        -------
        dict
            ``{"n_candidates", "n_relevant", "methods", "random", "oracle"}`` (and ``"per_target"``
            and ``"rho"`` when there are details), each curves as `Curves.to_dict`.
        """
        out = {"n_candidates": self.n_candidates, "n_relevant": self.n_relevant,
               "methods": {str(name): c.to_dict() for name, c in self.methods.items()},
               "random": self.random.to_dict(), "oracle": self.oracle.to_dict()}
        if self.per_target:
            out["per_target"] = self.per_target
            out["rho"] = self.rho
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "Evaluation":
        """An evaluation from its JSON form.

        Parameters
        ----------
        d : mapping
            What `to_dict` wrote (a `results.json`'s ``"evaluation"``).

        Returns
        -------
        Evaluation
            The evaluation.
        """
        if not isinstance(d, Mapping) or not isinstance(d.get("methods"), Mapping):
            raise InputError("evaluation: expected a mapping with a 'methods' mapping")
        methods = {name: Curves.from_dict(c) for name, c in d["methods"].items()}
        return cls(methods, d["n_candidates"], d.get("n_relevant", DEFAULT_N_RELEVANT), dict(d.get("per_target") or {}))

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def evaluation_report(curves_by_method: Mapping[str, Curves], n_candidates: int, n_relevant: int = DEFAULT_N_RELEVANT) -> dict:
    """The JSON form of an `Evaluation` of these curves.

    Parameters
    ----------
    curves_by_method : mapping of str to Curves
        Each estimator's curves.
    n_candidates : int
        The candidate sources per target (for the random and oracle curves).
    n_relevant : int, default DEFAULT_N_RELEVANT
        The relevant sources per target.

    Returns
    -------
    dict
        As `Evaluation.to_dict`, with no per-target details.
    """
    return Evaluation(dict(curves_by_method), n_candidates, n_relevant).to_dict()


def evaluate_matrices(matrices: Mapping[str, tuple[np.ndarray, Sequence[str]]], truth: GroundTruth,
                      n_relevant: int = DEFAULT_N_RELEVANT, hint: str = "") -> Evaluation:
    """Score estimators given as {name: (affinity, task labels)} against `truth`.

    Each affinity is turned into per-target rankings by its task labels (which must be unique)
    and scored with `evaluate(..., restrict_to_estimated=True)`.

    Parameters
    ----------
    matrices : mapping of str to (np.ndarray, sequence of str)
        Estimator name -> (its (N, N) affinity, the N models' task labels).
    truth : GroundTruth
        The measured transfer ranking.
    n_relevant : int, default DEFAULT_N_RELEVANT
        How many of the truth's top sources count as relevant.
    hint : str, default ""
        Ends the error message about repeated labels (how the caller can avoid them).

    Returns
    -------
    Evaluation
        Every estimator's curves and per-target details, beside random and oracle.

    Raises
    ------
    InputError
        If an estimator's task labels repeat.
    GroundTruthError
        If an estimator shares no target or no source with the truth.
    """
    curves, details, n_candidates = {}, {}, 0
    every_label = [label for _, labels in matrices.values() for label in labels]
    unmatched = unmatched_names(truth, every_label)
    if unmatched and every_label:
        shown = ", ".join(repr(n) for n in unmatched[:20]) + (f" and {len(unmatched) - 20} more" if len(unmatched) > 20 else "")
        _LOG.warning("%s: %d name(s) match no model's task label and are left out of the scores: %s",
                     truth.origin, len(unmatched), shown)
    for name, (affinity, labels) in matrices.items():
        labels = list(labels)
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise InputError(f"task labels must be unique to evaluate; {name} repeats {', '.join(duplicates)}{hint}")
        curves[name], details[name] = evaluate(rank_sources(affinity, labels), truth, n_relevant,
                                               restrict_to_estimated=True)
        n_candidates = max(n_candidates, len(curves[name].ks))
    return Evaluation(curves, n_candidates, n_relevant, details)


def format_table(evaluation: Evaluation | Mapping, ks: Sequence[int] = (1, 3, 5),
                 columns: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """A plain-text table of an evaluation, per method and baseline, then random and oracle.

    A K beyond the number of candidates (P@5 with 3 candidate sources) has no value and shows "–",
    never NaN; the columns stay the same for every truth.

    Parameters
    ----------
    evaluation : Evaluation or mapping
        An evaluation or its JSON form.
    ks : sequence of int, default (1, 3, 5)
        The cut-offs of the P@K columns; R@K is shown at the last.
    columns : mapping, optional
        Named columns added, ``{column: {row name: value}}`` ("–" where a row has no value).

    Returns
    -------
    str
        The table, one line per row: P@K at `ks`, R@K at the last K, and ρ when the evaluation has
        per-target details.
    """
    if not isinstance(evaluation, Evaluation):
        evaluation = Evaluation.from_dict(evaluation)
    rows = evaluation.rows()
    extra = dict(columns or {})
    if evaluation.per_target:
        extra = {"ρ": evaluation.rho_rows(), **extra}
    width = max(len(name) for name, _ in rows)
    header = f"{'method':{width}s}  " + "  ".join(f"P@{k:<3d}" for k in ks) + f"  R@{ks[-1]:<3d}"
    header += "".join(f"  {c:>{max(6, len(c))}s}" for c in extra)
    lines = [header.rstrip()]
    for name, curves in rows:
        at = {k: (p, r) for k, p, r in zip(curves.ks, curves.precision, curves.recall)}
        cells = [at.get(k, (None, None)) for k in ks]
        line = (f"{name:{width}s}  " + "  ".join(_cell_text(p, f"P@{k:<3d}") for (p, _), k in zip(cells, ks))
                + f"  {_cell_text(cells[-1][1], f'R@{ks[-1]:<3d}')}")
        for c, values in extra.items():
            value = values.get(name)
            line += f"  {'–' if value is None else format(value, '.3f'):>{max(6, len(c))}s}"
        lines.append(line)
    return "\n".join(lines)


def _cell_text(value: float | None, column: str) -> str:
    """A table cell: the value to 3 decimals, or "–" (K beyond the candidates), as wide as ``column``."""
    return f"{value:.3f}" if value is not None else f"{'–':{len(column)}s}"
