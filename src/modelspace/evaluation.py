"""Scoring estimated transferability against a ground-truth transfer ranking: P@K and R@K.

For each target task, the ground truth ranks candidate source tasks best first; its top
`n_relevant` (5 in Song et al. 2019) are the relevant sources. An estimated ranking of the same
sources is scored at every cut-off K by

    P@K = (relevant sources among the estimate's top K) / K
    R@K = (relevant sources among the estimate's top K) / n_relevant,

averaged over the targets. `random_curves` and `oracle_curves` give the two reference lines.
Beside them, ρ: per target, the Spearman correlation between the estimate's order of the
candidates it ranks and the truth's order of the same sources, averaged over the targets (the
anchor figure of the RSA / DDS line of work; random ranking gives 0 in expectation, the oracle 1).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GroundTruthError, InputError, check_int
from .models import normalise_name
from .similarity.ranking import rank_sources

BUNDLED = {"taskonomy": "taskonomy_ranking.csv"}
DEFAULT_N_RELEVANT = 5
"""The true top sources counted relevant per target (the paper's top 5), unless the truth ranks fewer."""
"""Ground truths shipped in modelspace/data/truth, by name."""

_MATRIX_CORNERS = {"target\\source", "target/source", "target"}
_RANK_HEADER = re.compile(r"rank\d+", re.IGNORECASE)
_LONG_HEADER = ("target", "source", "score")
_LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------- ground truth


class GroundTruth:
    """Ground-truth transfer ranking: for each target task, candidate source tasks best first.

    Attributes
    ----------
    targets
        the target tasks, in file order.
    sources
        every task that appears as a source (file order of first appearance).
    ranking
        target -> its candidate sources, best first (the target itself excluded).
    """

    def __init__(self, ranking: Mapping[str, Sequence[str]], sources: Sequence[str] | None = None,
                 origin: str = "ground truth"):
        """Build from a ranking dict; `origin` (a file name) is used in error messages. Task names are kept
        in the normal form model names and task labels have (`models.normalise_name`), so that they match."""
        self.ranking: dict[str, list[str]] = {}
        written: dict[str, str] = {}
        for target, ranked in ranking.items():
            name = normalise_name(str(target))
            if name in written:  # two spellings that look alike
                raise GroundTruthError(f"{origin}: targets {ascii(written[name])} and {ascii(str(target))} are one "
                                       "name in Unicode normal form NFC")
            written[name] = str(target)
            self.ranking[name] = _checked_row(name, [normalise_name(str(s)) for s in ranked], origin)
        if not self.ranking:
            raise GroundTruthError(f"{origin}: no target rows")
        self.targets: list[str] = list(self.ranking)
        seen = dict.fromkeys(s for ranked in self.ranking.values() for s in ranked)
        if sources is not None:
            sources = [normalise_name(str(s)) for s in sources]
            extra = [s for s in seen if s not in set(sources)]
            if extra:
                raise GroundTruthError(f"{origin}: ranked sources {extra} are not in sources")
            seen = dict.fromkeys(sources)
        self.sources: list[str] = list(seen)
        self.origin = origin

    def __repr__(self) -> str:
        return (f"GroundTruth({self.origin!r}, {len(self.targets)} targets, "
                f"{len(self.sources)} sources)")

    def __eq__(self, other: object) -> bool:
        """Equal when both rank the same candidates in the same order for the same targets."""
        if not isinstance(other, GroundTruth):
            return NotImplemented
        return self.ranking == other.ranking

    @classmethod
    def from_csv(cls, path: str | Path) -> "GroundTruth":
        """Read a ground-truth CSV, detecting its format from the header.

        - matrix: first header cell ``target\\source``, ``target/source`` or ``target``, the other
          header cells source names; one row per target of numeric scores, higher = better
          source. An empty cell means "not evaluated" (the source is left out for that target).
        - ranking: header ``target,rank1,rank2,...``; each row a target and its sources best first.
        - long: header ``target,source,score`` (or no header: three columns, the third a number), one
          row per (target, source) pair, higher score = better source; a pair not listed is "not
          evaluated", a row with target = source is ignored. Equal scores are ordered by source name
          (as in a matrix), so ties never depend on the row order.

        Raises
        ------
        GroundTruthError
            an unreadable or malformed file, naming the file and the row.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise GroundTruthError(f"{path}: cannot read ground truth ({exc})") from exc
        return cls._parse(text, str(path))

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, targets: Sequence[str], sources: Sequence[str],
                    origin: str = "matrix") -> "GroundTruth":
        """Rank each target's sources by descending score (higher = better; ties by source name).

        A target's own column, when present, is excluded; NaN cells mean "not evaluated".
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (len(targets), len(sources)):
            raise GroundTruthError(f"{origin}: matrix shape {m.shape} does not match "
                                   f"{len(targets)} targets × {len(sources)} sources")
        if np.isinf(m).any():
            raise GroundTruthError(f"{origin}: the matrix holds infinite values")
        _check_unique(targets, "targets", origin)
        _check_unique(sources, "sources", origin)
        ranking = {}
        for target, row in zip(targets, m):
            scored = [(-v, str(s)) for s, v in zip(sources, row) if s != target and not np.isnan(v)]
            ranking[str(target)] = [s for _, s in sorted(scored)]
        return cls(ranking, sources=[str(s) for s in sources], origin=origin)

    @classmethod
    def named(cls, name: str) -> "GroundTruth":
        """Load a bundled ground truth by name (see `BUNDLED`)."""
        if name not in BUNDLED:
            raise GroundTruthError(f"unknown ground truth {name!r}; available: {sorted(BUNDLED)}")
        res = resources.files("modelspace").joinpath("data").joinpath("truth")
        res = res.joinpath(BUNDLED[name])
        return cls._parse(res.read_text(encoding="utf-8"), f"{name} ({BUNDLED[name]}, bundled)")

    @classmethod
    def load(cls, name_or_path: str | Path) -> "GroundTruth":
        """A bundled name (see `BUNDLED`) or the path of a CSV file."""
        if isinstance(name_or_path, str) and name_or_path in BUNDLED:
            return cls.named(name_or_path)
        path = Path(name_or_path)
        if not path.is_file():
            raise GroundTruthError(f"{name_or_path}: neither a bundled ground truth "
                                   f"({sorted(BUNDLED)}) nor an existing file")
        return cls.from_csv(path)

    def relevant(self, target: str, n_relevant: int = 5) -> list[str]:
        """The target's top `n_relevant` sources (fewer if it ranks fewer)."""
        check_int(n_relevant, "n_relevant")
        if target not in self.ranking:
            raise GroundTruthError(f"{self.origin}: no ground truth for target {target!r}; "
                                   f"targets: {self.targets}")
        return self.ranking[target][:n_relevant]

    def to_ranking_csv(self, path: str | Path) -> None:
        """Write the ranking format (``target,rank1,...``; short rows padded with empty cells)."""
        width = max(len(r) for r in self.ranking.values())
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["target", *(f"rank{i}" for i in range(1, width + 1))])
            for target, ranked in self.ranking.items():
                out.writerow([target, *ranked, *[""] * (width - len(ranked))])

    # ----------------------------------------------------------------------- parsing

    @classmethod
    def _parse(cls, text: str, origin: str) -> "GroundTruth":
        reader = csv.reader(io.StringIO(text))
        try:
            rows = [(i, [c.strip() for c in row]) for i, row in enumerate(reader, start=1)]
        except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (131 072 characters)
            raise GroundTruthError(f"{origin}: line {reader.line_num}: not readable as CSV ({exc})") from None
        rows = [(i, r) for i, r in rows if any(r)]  # blank lines carry nothing
        if not rows:
            raise GroundTruthError(f"{origin}: empty file")
        (header_line, header), body = rows[0], rows[1:]
        if not body:
            raise GroundTruthError(f"{origin}: a header but no target rows")
        tail = [c for c in header[1:] if c]
        if [c.lower() for c in header] == list(_LONG_HEADER):
            return cls._parse_long(body, origin)
        if (len(header) == 3 and all(len(r) == 3 for _, r in body) and _is_number(header[2])
                and header[0].lower() not in _MATRIX_CORNERS):  # `target,1,2`: a matrix of two numbered sources
            return cls._parse_long(rows, origin)  # no header: every row a (target, source, score) triple
        if header[0].lower() == "target" and tail and all(_RANK_HEADER.fullmatch(c) for c in tail):
            return cls._parse_ranking(body, origin)
        if header[0].lower() in _MATRIX_CORNERS:
            return cls._parse_matrix(header, body, origin)
        raise GroundTruthError(
            f"{origin}: row {header_line}: unrecognised header {header[:3]}...; expected "
            f"'target,rank1,rank2,...' (ranking), 'target\\source,<source>,...' (matrix) or "
            f"'target,source,score' (long)")

    @classmethod
    def _parse_long(cls, body, origin: str) -> "GroundTruth":
        scores: dict[str, dict[str, float]] = {}
        for line, row in body:
            if len(row) != 3:
                raise GroundTruthError(f"{origin}: row {line}: {len(row)} cells; the long format has three "
                                       f"(target,source,score)")
            target, source, text = row
            where = f"{origin}: row {line} (target {target!r})"
            if not target or not source:
                raise GroundTruthError(f"{origin}: row {line}: empty target or source name")
            if source in scores.get(target, {}):
                raise GroundTruthError(f"{where}: source {source!r} listed twice")
            scores.setdefault(target, {})[source] = _cell(text, source, where) if text else math.nan
        targets = list(scores)
        sources = list(dict.fromkeys(s for row in scores.values() for s in row))
        matrix = np.array([[scores[t].get(s, math.nan) for s in sources] for t in targets], dtype=np.float64)
        return cls.from_matrix(matrix, targets, sources, origin=origin)

    @classmethod
    def _parse_ranking(cls, body, origin: str) -> "GroundTruth":
        ranking: dict[str, list[str]] = {}
        for line, row in body:
            target, ranked = row[0], row[1:]
            while ranked and not ranked[-1]:
                ranked.pop()  # short rows are padded with empty cells
            where = f"{origin}: row {line} (target {target!r})"
            if not target:
                raise GroundTruthError(f"{origin}: row {line}: empty target name")
            if target in ranking:
                raise GroundTruthError(f"{where}: target listed twice")
            if "" in ranked:
                raise GroundTruthError(f"{where}: empty cell inside the ranking")
            ranking[target] = _checked_row(target, ranked, where)
        return cls(ranking, origin=origin)

    @classmethod
    def _parse_matrix(cls, header, body, origin: str) -> "GroundTruth":
        sources = header[1:]
        if not sources or "" in sources:
            raise GroundTruthError(f"{origin}: row 1 (header): empty or missing source name")
        _check_unique(sources, "sources (header)", origin)
        targets, values = [], []
        for line, row in body:
            where = f"{origin}: row {line} (target {row[0]!r})"
            if not row[0]:
                raise GroundTruthError(f"{origin}: row {line}: empty target name")
            if len(row) != len(header):
                raise GroundTruthError(f"{where}: {len(row) - 1} values for "
                                       f"{len(sources)} sources")
            targets.append(row[0])
            values.append([_cell(c, s, where) for c, s in zip(row[1:], sources)])
        _check_unique(targets, "targets", origin)
        return cls.from_matrix(np.array(values, dtype=np.float64), targets, sources, origin=origin)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _cell(text: str, source: str, where: str) -> float:
    if text == "":
        return math.nan  # not evaluated
    try:
        value = float(text)
    except ValueError:
        raise GroundTruthError(f"{where}, source {source!r}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise GroundTruthError(f"{where}, source {source!r}: non-finite value {text!r}")
    return value


def _checked_row(target: str, ranked: list[str], where: str) -> list[str]:
    if target in ranked:
        raise GroundTruthError(f"{where}: target {target!r} ranks itself as a source")
    if len(set(ranked)) != len(ranked):
        dup = sorted({s for s in ranked if ranked.count(s) > 1})
        raise GroundTruthError(f"{where}: target {target!r} ranks {dup} more than once")
    if not ranked:
        raise GroundTruthError(f"{where}: target {target!r} ranks no sources")
    return ranked


def _check_unique(names: Sequence[str], what: str, origin: str) -> None:
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if list(names).count(n) > 1})
        raise GroundTruthError(f"{origin}: duplicate {what}: {dup}")


# --------------------------------------------------------------------------- curves


@dataclass
class Curves:
    """Mean precision and recall at each cut-off K."""

    ks: list[int]
    precision: list[float]
    recall: list[float]

    def at(self, k: int) -> tuple[float, float]:
        """(P@k, R@k)."""
        if k not in self.ks:
            raise InputError(f"k: {k!r} is not among the cut-offs {self.ks[0]}..{self.ks[-1]}")
        i = self.ks.index(k)
        return self.precision[i], self.recall[i]

    def to_dict(self) -> dict:
        """A JSON-able dict: {"ks": [...], "precision": [...], "recall": [...]}."""
        return {"ks": [int(k) for k in self.ks], "precision": [float(p) for p in self.precision],
                "recall": [float(r) for r in self.recall]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Curves":
        """Curves from `to_dict`'s output."""
        return cls(list(d["ks"]), list(d["precision"]), list(d["recall"]))


def evaluate(ranking: Mapping[str, Sequence[str]], truth: GroundTruth, n_relevant: int = 5, *,
             restrict_to_estimated: bool = False) -> tuple[Curves, dict]:
    """Score an estimated ranking (target -> sources best first) against a ground truth.

    `ranking` values are source names, or the (name, score) pairs of `rank_sources`.

    The targets scored are those in both `ranking` and `truth.targets` (others are skipped: in
    Taskonomy, colorization and inpainting are sources only). For each target the estimate is
    restricted to the sources the truth ranks for it (the target itself excluded); the relevant
    sources are the truth's top `n_relevant`. K runs over 1..n_candidates, the largest number of
    candidate sources of a scored target (19 for Taskonomy). A candidate the estimate leaves out
    is never a hit.

    With ``restrict_to_estimated=True`` the truth's ranking is first cut down to the sources the
    estimate ranks, so that a zoo covering part of the ground truth's tasks is not charged for
    the absent ones.

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


def spearman(ranked: Sequence[str], truth_order: Sequence[str]) -> float | None:
    """Spearman's ρ between the order of `ranked` and the order `truth_order` gives the same
    sources: 1 − 6 Σ d² / (n (n² − 1)) over rank positions (orders have no ties). None below two."""
    position = {s: i for i, s in enumerate(s for s in truth_order if s in set(ranked))}
    n = len(position)
    if n < 2:
        return None
    d = np.array([i - position[s] for i, s in enumerate(s for s in ranked if s in position)], dtype=np.float64)
    return float(1.0 - 6.0 * (d**2).sum() / (n * (n * n - 1)))


def random_curves(n_candidates: int, n_relevant: int = 5) -> Curves:
    """Expected curves of a uniformly random ranking: P@K = n_rel/n_cand, R@K = K/n_cand."""
    _check_baseline_args(n_candidates, n_relevant)
    ks = list(range(1, n_candidates + 1))
    return Curves(ks, [n_relevant / n_candidates] * n_candidates, [k / n_candidates for k in ks])


def oracle_curves(n_candidates: int, n_relevant: int = 5) -> Curves:
    """Curves of the perfect ranking: P@K = min(K, n_rel)/K, R@K = min(K, n_rel)/n_rel."""
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
    n_relevant: int = 5
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
        """Per estimator with `per_target` details: the mean over targets of Spearman's ρ (NaN
        when no target ranks two candidates). Random ranking gives 0 in expectation, the oracle 1."""
        out = {}
        for name, targets in self.per_target.items():
            values = [d["spearman"] for d in targets.values() if d.get("spearman") is not None]
            out[name] = float(np.mean(values)) if values else float("nan")
        return out

    def rho_rows(self) -> dict[str, float]:
        """`rho` with the references of `rows`: random 0 (its expectation) and oracle 1."""
        return {**self.rho, "random": 0.0, "oracle": 1.0}

    def rows(self) -> list[tuple[str, Curves]]:
        """(name, curves) of every estimator, then random and oracle."""
        return [*self.methods.items(), ("random", self.random), ("oracle", self.oracle)]

    def to_dict(self) -> dict:
        """The JSON form: ``{"n_candidates", "n_relevant", "methods", "random", "oracle"}`` (and
        ``"per_target"`` and ``"rho"`` when there are details), each curves as `Curves.to_dict`."""
        out = {"n_candidates": self.n_candidates, "n_relevant": self.n_relevant,
               "methods": {str(name): c.to_dict() for name, c in self.methods.items()},
               "random": self.random.to_dict(), "oracle": self.oracle.to_dict()}
        if self.per_target:
            out["per_target"] = self.per_target
            out["rho"] = self.rho
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "Evaluation":
        """An evaluation from its JSON form (a `results.json`'s ``"evaluation"``)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("methods"), Mapping):
            raise InputError("evaluation: expected a mapping with a 'methods' mapping")
        methods = {name: Curves.from_dict(c) for name, c in d["methods"].items()}
        return cls(methods, d["n_candidates"], d.get("n_relevant", 5), dict(d.get("per_target") or {}))

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def evaluation_report(curves_by_method: Mapping[str, Curves], n_candidates: int, n_relevant: int = 5) -> dict:
    """The JSON form of an `Evaluation` of these curves (see `Evaluation.to_dict`)."""
    return Evaluation(dict(curves_by_method), n_candidates, n_relevant).to_dict()


def unmatched_names(truth: GroundTruth, labels: Sequence[str]) -> list[str]:
    """The truth's targets and sources (in its order) that are no model's task label.

    `evaluate` leaves them out (a zoo may cover part of a ground truth), so a typo in a truth file
    changes P@K silently unless someone lists them: `evaluate_matrices` logs them as a warning.
    """
    have = set(labels)
    return [n for n in dict.fromkeys([*truth.targets, *truth.sources]) if n not in have]


def count_candidates(truth: GroundTruth, labels: Sequence[str]) -> int:
    """The number of candidate sources the evaluation of models with these task `labels` has: the most
    that any target of `truth` among the labels ranks among them (the last K of the curves).

    Raises
    ------
    GroundTruthError
        no target of the truth is a label.
    """
    have = set(labels)
    targets = [t for t in truth.targets if t in have]
    if not targets:
        raise GroundTruthError(f"{truth.origin}: no target is a model's task label; targets "
                               f"{truth.targets[:10]}, labels {sorted(have)[:10]}")
    return max(sum(s in have for s in truth.ranking[t]) for t in targets)


def relevant_for(truth: GroundTruth, labels: Sequence[str], n_relevant: int | None = None) -> int:
    """The number of true top sources counted relevant when `truth` scores models with these task
    `labels`: `n_relevant` checked (`check_truth`); None, `DEFAULT_N_RELEVANT`, lowered with a warning to
    the number of candidate sources when the truth ranks fewer (a small zoo must not fail on the
    default). The API (`ModelSpace.evaluate`) and the CLI (``--n-relevant``) both take it from here."""
    if n_relevant is None:
        n_candidates = count_candidates(truth, labels)
        n_relevant = min(DEFAULT_N_RELEVANT, n_candidates)
        if n_relevant < DEFAULT_N_RELEVANT:
            sources = "candidate source" if n_candidates == 1 else "candidate sources"
            _LOG.warning("%s ranks only %d %s among these models: each target's top %d count as relevant "
                         "(n_relevant defaults to %d)", truth.origin, n_candidates, sources, n_relevant,
                         DEFAULT_N_RELEVANT)
    check_truth(truth, labels, n_relevant)
    return n_relevant


def check_truth(truth: GroundTruth, labels: Sequence[str], n_relevant: int = DEFAULT_N_RELEVANT) -> None:
    """Check, before any map is computed, that `truth` can score models with these task `labels`.

    Raises
    ------
    GroundTruthError
        no target of the truth is a label, or no scored target ranks `n_relevant` of the labels
        (the evaluation would fail only after the whole run).
    """
    check_int(n_relevant, "n_relevant")
    n_candidates = count_candidates(truth, labels)
    if n_candidates < n_relevant:
        raise GroundTruthError(f"{truth.origin}: n_relevant {n_relevant} exceeds the {n_candidates} candidate "
                               f"source(s) it ranks among the models' task labels; lower --n-relevant "
                               f"(n_relevant=) to at most {n_candidates} or add models")


def evaluate_matrices(matrices: Mapping[str, tuple[np.ndarray, Sequence[str]]], truth: GroundTruth,
                      n_relevant: int = 5, hint: str = "") -> Evaluation:
    """Score estimators given as {name: (affinity, task labels)} against `truth`.

    Each affinity is turned into per-target rankings by its task labels (which must be unique)
    and scored with `evaluate(..., restrict_to_estimated=True)`. `hint` ends the error message
    about repeated labels (how the caller can avoid them).
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
    """A plain-text table: P@K at `ks` and R@K at the last K, and ρ when the evaluation has
    per-target details, per method and baseline, then random and oracle. Takes an `Evaluation`
    or its JSON form. `columns` adds named columns, {column: {row name: value}} ("–" where a row
    has no value). A K beyond the number of candidates (P@5 with 3 candidate sources) has no value
    and shows "–", never NaN; the columns stay the same for every truth."""
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


# --------------------------------------------------------------------------- are the differences real?


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
    vs_runner_up : Difference or None
        None with a single estimator.
    vs_random : Difference
    n_targets, n_resamples, seed, level
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
    n_resamples: int
    seed: int
    level: float
    tied: tuple[str, ...] = ()
    tie: float = 0.0


def bootstrap_interval(differences: Sequence[float], n_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired per-target `differences`.

    Targets are resampled with replacement `n_resamples` times (NumPy's default generator seeded
    with `seed`); the interval holds the central `level` of the resampled means.

    Parameters
    ----------
    differences : sequence of float
        One value per target (e.g. P@5 of one estimator minus another's).
    n_resamples, seed, level
        Number of resamples, generator seed, coverage in (0, 1).

    Returns
    -------
    (low, high) : tuple of float
    """
    d = np.asarray(differences, dtype=np.float64)
    check_int(n_resamples, "n_resamples")
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise InputError(f"differences: expected a non-empty 1-D array of finite values, got shape {d.shape}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level: expected a coverage in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def per_target_scores(evaluation: Evaluation, metric: str = "precision", k: int = 5) -> dict[str, dict[str, float]]:
    """Per estimator, per target: P@k (``metric="precision"``) or Spearman's ρ (``"rho"``), and the
    same for ``"random"`` (its expectation per target: relevant / candidates for P@k, 0 for ρ).

    Needs the evaluation's `per_target` details. A target whose ρ is undefined (fewer than two ranked
    candidates) is left out; k beyond the candidates is cut to the last K.
    """
    if not evaluation.per_target:
        raise InputError("evaluation: no per-target details to compare estimators on")
    if metric not in ("precision", "rho"):
        raise InputError(f"metric: expected 'precision' or 'rho', got {metric!r}")
    k = min(check_int(k, "k"), evaluation.n_candidates)
    out: dict[str, dict[str, float]] = {"random": {}}
    for name, targets in evaluation.per_target.items():
        out[name] = {}
        for target, d in targets.items():
            if metric == "rho":
                if d.get("spearman") is not None:
                    out[name][target] = float(d["spearman"])
                    out["random"][target] = 0.0
            else:
                hits = _pad(list(d["hits_at_k"]), k)
                out[name][target] = hits[k - 1] / k
                out["random"][target] = len(d["relevant"]) / max(d["n_candidates"], 1)
    return out


def compare_estimators(evaluation: Evaluation, metric: str = "precision", k: int = 5, n_resamples: int = 2000,
                       seed: int = 0, level: float = 0.95, tie: float = 0.0) -> Comparison:
    """The best estimator by mean P@k (or ρ), and bootstrap intervals of its lead over the runner-up
    and over random ranking.

    Means within `tie` of the highest count as tied; a tie by P@k goes to the higher mean ρ (again
    within `tie`), and what is still tied to the estimator first in the evaluation's order. With
    ``tie = world.registration.RULE_TIE`` this is the rule registered in ``world/candidates.toml`` on one
    evaluation, less its last step (the lower cost), which needs measured costs.

    The differences are paired: each resample draws targets with replacement and takes the mean over
    them of best − other, so the intervals reflect how much the lead depends on which targets were
    scored. A lead whose interval contains 0 is not distinguishable from no lead.

    Parameters
    ----------
    evaluation : Evaluation
        With per-target details (as `evaluate_matrices` gives).
    metric : {"precision", "rho"}
    k : int
        The cut-off of P@k (cut to the last K of a smaller zoo).
    n_resamples, seed, level
        See `bootstrap_interval`.
    tie : float
        See above; 0 counts only equal means as tied.
    """
    scores = per_target_scores(evaluation, metric, k)
    names = [n for n in scores if n != "random"]
    targets = [t for t in scores["random"] if all(t in scores[n] for n in names)]
    if not names or not targets:
        raise InputError("evaluation: no target scored by every estimator")
    table = {n: np.array([scores[n][t] for t in targets]) for n in [*names, "random"]}
    means = {n: float(table[n].mean()) for n in names}
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
        d = table[best] - table[other]
        low, high = bootstrap_interval(d, n_resamples, seed, level)
        return Difference(other, float(d.mean()), low, high)

    label = f"P@{min(k, evaluation.n_candidates)}" if metric == "precision" else "ρ"
    return Comparison(label, {**{n: means[n] for n in ranked}, "random": float(table["random"].mean())}, best,
                      diff(ranked[1]) if len(ranked) > 1 else None, diff("random"), len(targets), n_resamples,
                      seed, level, tuple(n for n in ranked if n in tied), tie)


# --------------------------------------------------------------------------- choosing a parameter fairly


@dataclass(frozen=True)
class CrossValidated:
    """A free parameter chosen by leave-one-target-out cross-validation, and the score it earns.

    Attributes
    ----------
    per_target : dict of str to float
        Each held-out target's score under the value chosen without it.
    chosen : dict
        Each held-out target -> the value chosen on the other targets.
    mean : float
        Mean of `per_target`: the cross-validated score.
    """

    per_target: dict[str, float]
    chosen: dict[str, Any]
    mean: float

    @property
    def counts(self) -> dict[Any, int]:
        """How often each value was chosen, in order of first choice."""
        out: dict[Any, int] = {}
        for value in self.chosen.values():
            out[value] = out.get(value, 0) + 1
        return out


def leave_one_target_out(scores: Mapping[Any, Mapping[str, float]]) -> CrossValidated:
    """Choose a free parameter without scoring any target with a value chosen on it.

    For each target t: the value whose mean score over the *other* targets is highest is chosen,
    and t is scored with it. The mean of those held-out scores says what choosing the parameter
    this way earns, an honest figure beside a value fixed beforehand, where picking the best
    value on all targets would report the maximum over the grid (biased upward).

    Parameters
    ----------
    scores : mapping
        Parameter value -> {target: score} (P@5 or ρ, higher is better), every value scoring the
        same targets (at least 2). Ties go to the value that comes first, so list the grid in a
        pre-declared order (the fixed default first).

    Returns
    -------
    CrossValidated
    """
    if not isinstance(scores, Mapping) or not scores:
        raise InputError("scores: expected a non-empty mapping parameter value -> {target: score}")
    values = list(scores)
    targets = list(scores[values[0]])
    for value in values:
        if set(scores[value]) != set(targets):
            raise InputError(f"scores: value {value!r} scores other targets than {values[0]!r}")
    if len(targets) < 2:
        raise InputError(f"scores: leaving one target out needs at least 2 targets, got {len(targets)}")
    table = np.array([[float(scores[v][t]) for t in targets] for v in values])  # (values, targets)
    if not np.isfinite(table).all():
        raise InputError("scores: expected finite scores")
    totals = table.sum(axis=1)
    per_target, chosen = {}, {}
    for j, target in enumerate(targets):
        rest = (totals - table[:, j]) / (len(targets) - 1)
        best = int(np.argmax(rest))  # the first maximum: ties go to the earlier value
        chosen[target] = values[best]
        per_target[target] = float(table[best, j])
    return CrossValidated(per_target, chosen, float(np.mean(list(per_target.values()))))
