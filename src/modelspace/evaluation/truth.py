"""The ground truth: for each target task, a measured ranking of candidate source tasks, best first.

Its top `n_relevant` sources per target (5 in Song et al. 2019, `DEFAULT_N_RELEVANT`) are the
relevant ones that `metrics` counts. A truth is read from a CSV in one of three formats (matrix,
ranking, long; `GroundTruth.from_csv`), built from a score matrix, or bundled (`BUNDLED`); the
checks here say, before any map is computed, whether it can score a zoo's task labels.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import GroundTruthError, check_int
from ..models import normalise_name

__all__ = ["BUNDLED", "DEFAULT_N_RELEVANT", "GroundTruth", "check_truth", "count_candidates", "relevant_for",
           "unmatched_names"]

BUNDLED = {"taskonomy": "taskonomy_ranking.csv"}
"""Ground truths shipped in modelspace/data/truth, by name."""
DEFAULT_N_RELEVANT = 5
"""The true top sources counted relevant per target (the paper's top 5), unless the truth ranks fewer."""

_MATRIX_CORNERS = {"target\\source", "target/source", "target"}
_RANK_HEADER = re.compile(r"rank\d+", re.IGNORECASE)
_LONG_HEADER = ("target", "source", "score")
_LOG = logging.getLogger(__name__)


class GroundTruth:
    """Ground-truth transfer ranking: for each target task, candidate source tasks best first.

    Task names are kept in the normal form model names and task labels have
    (`models.normalise_name`), so that they match.

    Parameters
    ----------
    ranking : mapping of str to sequence of str
        Target -> its candidate sources, best first.
    sources : sequence of str, optional
        Every source task, in order; default: the ranked sources in order of first appearance.
    origin : str, default "ground truth"
        Where the truth comes from (a file name), used in error messages.

    Raises
    ------
    GroundTruthError
        If there is no target, two targets are one once normalised, or a ranked source is not in
        ``sources``.

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
        """Build from a ranking dict (the class docstring gives the parameters)."""
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
        r"""Read a ground-truth CSV, detecting its format from the header.

        - matrix: first header cell ``target\source``, ``target/source`` or ``target``, the other
          header cells source names; one row per target of numeric scores, higher = better
          source. An empty cell means "not evaluated" (the source is left out for that target).
        - ranking: header ``target,rank1,rank2,...``; each row a target and its sources best first.
        - long: header ``target,source,score`` (or no header: three columns, the third a number), one
          row per (target, source) pair, higher score = better source; a pair not listed is "not
          evaluated", a row with target = source is ignored. Equal scores are ordered by source name
          (as in a matrix), so ties never depend on the row order.

        Parameters
        ----------
        path : str or Path
            The CSV file.

        Returns
        -------
        GroundTruth
            The ranking, with the file as its origin.

        Raises
        ------
        GroundTruthError
            An unreadable or malformed file, naming the file and the row.
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

        Parameters
        ----------
        matrix : np.ndarray
            (targets, sources) scores, higher = better source.
        targets : sequence of str
            The rows' target tasks.
        sources : sequence of str
            The columns' source tasks.
        origin : str, default "matrix"
            Used in error messages.

        Returns
        -------
        GroundTruth
            The ranking.

        Raises
        ------
        GroundTruthError
            If the shape does not match the names, or the matrix holds infinite values.
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
        """Load a bundled ground truth by name.

        Parameters
        ----------
        name : str
            A key of `BUNDLED`, e.g. ``"taskonomy"``.

        Returns
        -------
        GroundTruth
            The bundled ranking.

        Raises
        ------
        GroundTruthError
            If no bundled truth has that name.
        """
        if name not in BUNDLED:
            raise GroundTruthError(f"unknown ground truth {name!r}; available: {sorted(BUNDLED)}")
        res = resources.files("modelspace").joinpath("data").joinpath("truth")
        res = res.joinpath(BUNDLED[name])
        return cls._parse(res.read_text(encoding="utf-8"), f"{name} ({BUNDLED[name]}, bundled)")

    @classmethod
    def load(cls, name_or_path: str | Path) -> "GroundTruth":
        """Load a bundled ground truth or a CSV file.

        Parameters
        ----------
        name_or_path : str or Path
            A bundled name (see `BUNDLED`) or the path of a CSV file (`from_csv`).

        Returns
        -------
        GroundTruth
            The ranking.

        Raises
        ------
        GroundTruthError
            If it is neither a bundled name nor an existing file, or the file is malformed.
        """
        if isinstance(name_or_path, str) and name_or_path in BUNDLED:
            return cls.named(name_or_path)
        path = Path(name_or_path)
        if not path.is_file():
            raise GroundTruthError(f"{name_or_path}: neither a bundled ground truth "
                                   f"({sorted(BUNDLED)}) nor an existing file")
        return cls.from_csv(path)

    def relevant(self, target: str, n_relevant: int = 5) -> list[str]:
        """The target's top `n_relevant` sources (fewer if it ranks fewer).

        Parameters
        ----------
        target : str
            A target task.
        n_relevant : int, default 5
            How many.

        Returns
        -------
        list of str
            The sources, best first.

        Raises
        ------
        GroundTruthError
            If the truth has no ranking for the target.
        InputError
            If ``n_relevant`` is not a positive integer.
        """
        check_int(n_relevant, "n_relevant")
        if target not in self.ranking:
            raise GroundTruthError(f"{self.origin}: no ground truth for target {target!r}; "
                                   f"targets: {self.targets}")
        return self.ranking[target][:n_relevant]

    def to_ranking_csv(self, path: str | Path) -> None:
        """Write the ranking format (``target,rank1,...``; short rows padded with empty cells).

        Parameters
        ----------
        path : str or Path
            The CSV file written.
        """
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


def unmatched_names(truth: GroundTruth, labels: Sequence[str]) -> list[str]:
    """The truth's targets and sources (in its order) that are no model's task label.

    `evaluate` leaves them out (a zoo may cover part of a ground truth), so a typo in a truth file
    changes P@K silently unless someone lists them: `evaluate_matrices` logs them as a warning.

    Parameters
    ----------
    truth : GroundTruth
        The ground truth.
    labels : sequence of str
        The models' task labels.

    Returns
    -------
    list of str
        The names, targets first, in the truth's order.
    """
    have = set(labels)
    return [n for n in dict.fromkeys([*truth.targets, *truth.sources]) if n not in have]


def count_candidates(truth: GroundTruth, labels: Sequence[str]) -> int:
    """The number of candidate sources the evaluation of models with these task `labels` has.

    Parameters
    ----------
    truth : GroundTruth
        The ground truth.
    labels : sequence of str
        The models' task labels.

    Returns
    -------
    int
        The most sources that any target of `truth` among the labels ranks among them (the last K
        of the curves).

    Raises
    ------
    GroundTruthError
        No target of the truth is a label.
    """
    have = set(labels)
    targets = [t for t in truth.targets if t in have]
    if not targets:
        raise GroundTruthError(f"{truth.origin}: no target is a model's task label; targets "
                               f"{truth.targets[:10]}, labels {sorted(have)[:10]}")
    return max(sum(s in have for s in truth.ranking[t]) for t in targets)


def relevant_for(truth: GroundTruth, labels: Sequence[str], n_relevant: int | None = None) -> int:
    """The number of true top sources counted relevant when `truth` scores models with these task `labels`.

    The API (`ModelSpace.evaluate`) and the CLI (``--n-relevant``) both take it from here.

    Parameters
    ----------
    truth : GroundTruth
        The ground truth.
    labels : sequence of str
        The models' task labels.
    n_relevant : int, optional
        Checked (`check_truth`) and returned; None for `DEFAULT_N_RELEVANT`, lowered with a warning
        to the number of candidate sources when the truth ranks fewer (a small zoo must not fail on
        the default).

    Returns
    -------
    int
        The number of relevant sources per target.

    Raises
    ------
    GroundTruthError
        If `check_truth` refuses the truth for these labels.
    """
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

    Parameters
    ----------
    truth : GroundTruth
        The ground truth.
    labels : sequence of str
        The models' task labels.
    n_relevant : int, default DEFAULT_N_RELEVANT
        The relevant sources per target that the evaluation will count.

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
