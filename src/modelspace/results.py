"""Results: the records a fit produces, and the output folder that holds them.

`MethodResult` is one estimator's model space (an attribution method or a baseline); `Failure`
says why a model is missing from one. The output folder is written and read here only, so file
names are decided in one place:

    results.json              settings, models, failures, any evaluation (`ModelSpace.summary`), and
                              under "files" every file of the run (itself included)
    affinity_<stem>.csv       the matrix, first row and column the model names
    ranking_<stem>.json       sources per target, best first, with the affinity
    tree_<stem>.nwk           the similarity tree (Newick)
    dendrogram_<stem>.png, heatmap_<stem>.png, grid_<stem>.png, pk_curves.png
    report.html               the page (`report`)
    label_scores.json         the label-based scores (`modelspace run --labels`)
    oracle_affinity.csv       a ground truth's similarity over tasks, for its tree (the demo writes it)
    evaluation_<stem>.json, pk_curves_<stem>.png   what `modelspace evaluate` writes

``<stem>`` is the estimator's name, or its full id made filesystem-safe when two ids share a
name (`file_stem`).

A run writes the folder as one unit (`OutputFolder`): its files are written into a staging folder
inside it, moved in, ``results.json`` last, and then the files that the previous run listed and
this one did not write are removed. Nothing else in the folder is touched: the store, the user's
own files, files no run listed. So at every moment ``results.json`` describes the files there.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import InputError, UnknownKeyError
from .evaluation import Evaluation
from .similarity.ranking import rank_sources
from .similarity.tree import leaf_order, similarity_tree, to_newick

KINDS = ("method", "baseline", "fusion")
"""An estimator is an attribution method, a baseline on encoder activations, or a fusion of others."""

RESULTS_JSON = "results.json"
CURVES_PNG = "pk_curves.png"
REPORT_HTML = "report.html"
LABEL_SCORES_JSON = "label_scores.json"
TRUTH_AFFINITY_CSV = "oracle_affinity.csv"
FILES = "files"
"""The field of ``results.json`` that lists every file its run wrote."""
_STAGING_PREFIX = ".modelspace-staging-"
_FIXED_NAMES = (RESULTS_JSON, CURVES_PNG, REPORT_HTML, LABEL_SCORES_JSON, TRUTH_AFFINITY_CSV)
_PATTERNS = {"affinity": "affinity_{}.csv", "ranking": "ranking_{}.json", "tree": "tree_{}.nwk",
             "dendrogram": "dendrogram_{}.png", "heatmap": "heatmap_{}.png", "grid": "grid_{}.png",
             "evaluation": "evaluation_{}.json", "curves": "pk_curves_{}.png"}


# --------------------------------------------------------------------------- records


class Keyed(dict):
    """A dict whose missing keys raise `UnknownKeyError` saying what the keys are, and, with ``resolve``,
    also finds an entry under another name for its key (an alias).

    Parameters
    ----------
    items : mapping or iterable of pairs
        The entries.
    what : str
        What the keys are, for the message ("target model names", "estimator ids").
    hint : str
        Appended to the message.
    resolve : callable, optional
        ``resolve(name) -> key``: the key another name stands for (raising InputError when none).
    """

    def __init__(self, items=(), what: str = "keys", resolve=None, hint: str = "") -> None:
        super().__init__(items)
        self.what = what
        self.resolve = resolve
        self.hint = hint

    def __missing__(self, key):
        if self.resolve is not None and isinstance(key, str):
            try:
                resolved = self.resolve(key)
            except InputError:
                resolved = None
            if resolved is not None and dict.__contains__(self, resolved):
                return dict.__getitem__(self, resolved)
        shown = ", ".join(repr(k) for k in list(self)[:20]) + (f" and {len(self) - 20} more" if len(self) > 20 else "")
        raise UnknownKeyError(f"{key!r} is not one of the {self.what}: {shown or '(none)'}{self.hint}")

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key) -> bool:  # `"lrp" in results_` agrees with `results_["lrp"]`
        if dict.__contains__(self, key):
            return True
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __reduce__(self):  # pickles (and copies) as a plain dict: a resolver may be a bound method
        return dict, (dict(self),)


@dataclass
class Failure:
    """Why a model is missing from a method's results.

    Attributes
    ----------
    model : str
        The model's name.
    method : str or None
        The estimator id, or None when the model failed before any (loading, encoder name).
    message : str
        The error, naming the model.
    """

    model: str
    method: str | None
    message: str

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return {"model": self.model, "method": self.method, "message": self.message}


@dataclass
class MethodResult:
    """The model space of one estimator: its affinity matrix, similarity tree and rankings.

    Attributes
    ----------
    id : str
        The estimator's id, e.g. ``"saliency"`` or ``"lrp_epsilon(epsilon=1e-06)"``.
    names : list of str
        The models, in matrix order.
    labels : list of str
        Each model's task label, matched against a ground truth.
    affinity : np.ndarray
        (N, N) float64.
    linkage : np.ndarray or None
        The similarity tree; computed (average linkage) when not given and N >= 2.
    ranking : dict
        Per target model, the other models best first with their affinity; computed when not given.
    kind : str
        "method" (attribution), "baseline" (from the encoder activations) or "fusion" (from other
        estimators' matrices, `similarity.Fusion`).
    confidence : dict or None
        Per target model, how far to trust its top-K sources (`similarity.confidence`):
        ``{"stability", "agreement", "confidence", "band"}`` (and a ``"note"`` when S or G is
        missing); None when none is given, and then `confidence_note` says why.
    confidence_note : str
        Why there is no confidence ("" when there is one).
    """

    id: str
    names: list[str]
    labels: list[str]
    affinity: np.ndarray
    linkage: np.ndarray | None = None
    ranking: dict[str, list[tuple[str, float]]] | None = None
    kind: str = "method"
    confidence: dict[str, dict] | None = None
    confidence_note: str = ""

    def __post_init__(self) -> None:
        self.names = list(self.names)
        self.labels = list(self.labels) if self.labels is not None else list(self.names)
        self.affinity = np.asarray(self.affinity, dtype=np.float64)
        if self.affinity.shape != (len(self.names), len(self.names)):
            raise InputError(f"estimator {self.id!r}: affinity of shape {self.affinity.shape} "
                             f"for {len(self.names)} models")
        if self.kind not in KINDS:
            raise InputError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.linkage is None and len(self.names) >= 2:
            self.linkage = similarity_tree(self.affinity)
        if self.ranking is None:
            self.ranking = rank_sources(self.affinity, self.names) if len(self.names) >= 2 else {}
        # Keyed by target *model name* (not task label): a wrong key says which names there are.
        self.ranking = Keyed(self.ranking, "target model names", hint=" (rankings are keyed by model name, "
                             "not task label)")

    @property
    def newick(self) -> str:
        """The tree in Newick form ("();" with fewer than two models)."""
        return to_newick(self.linkage, self.names) if self.linkage is not None else "();"

    @property
    def order(self) -> list[int]:
        """The models' order along the tree's leaves (matrix order without a tree)."""
        return leaf_order(self.linkage) if self.linkage is not None else list(range(len(self.names)))


# --------------------------------------------------------------------------- file names


def file_stem(estimator: str, estimators: Sequence[str]) -> str:
    """The file-name part for an estimator: its name, or its full id when two ids share a name."""
    name = estimator.split("(")[0]
    if sum(1 for e in estimators if e.split("(")[0] == name) > 1:
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in estimator).strip("_")
    return name


def file_name(kind: str, stem: str) -> str:
    """The name of one output file: ``kind`` is "affinity", "ranking", "tree", "dendrogram",
    "heatmap", "grid", "evaluation" or "curves"."""
    if kind not in _PATTERNS:
        raise InputError(f"kind: expected one of {', '.join(_PATTERNS)}, got {kind!r}")
    return _PATTERNS[kind].format(stem)


def stem_of(path: str | Path) -> str:
    """The estimator stem of an output file's path (``affinity_saliency.csv`` → ``saliency``)."""
    name = Path(path).name
    for pattern in _PATTERNS.values():
        prefix, suffix = pattern.split("{}")
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            return name[len(prefix):len(name) - len(suffix)]
    return Path(path).stem


# --------------------------------------------------------------------------- matrices


def write_matrix(path: str | Path, matrix: np.ndarray, names: Sequence[str]) -> None:
    """Write a square matrix as CSV: a header ``model,<names>``, then one row per model."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", *names])
        for name, row in zip(names, matrix):
            writer.writerow([name, *(f"{v:.6f}" for v in row)])


def read_matrix(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read a matrix written by `write_matrix` (an ``affinity_<stem>.csv``)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        names = rows[0][1:]
        # A header alone is the matrix of no models (an estimator every model failed).
        matrix = np.array([[float(v) for v in row[1:]] for row in rows[1:]]) if len(rows) > 1 else np.zeros((0, 0))
    except (OSError, IndexError, ValueError) as exc:
        raise InputError(f"{path}: not an affinity matrix CSV written by modelspace ({exc})") from exc
    if matrix.shape != (len(names), len(names)):
        raise InputError(f"{path}: expected a square matrix with {len(names)} rows, got shape {matrix.shape}")
    return matrix, names


# --------------------------------------------------------------------------- the folder


_log = logging.getLogger(__name__)  # under "modelspace": the CLI prints its records to stderr


class OutputFolder:
    """An output folder written as one run: files are staged, moved in, then ``results.json``.

    Used as a context manager; ``path(name)`` says where to write a file now (inside a staging
    folder in ``out``) and ``commit(summary)`` moves the written files in, writes ``results.json``
    (the summary with `FILES`, the list of every file of the run) and, last, removes the files that
    the previous ``results.json`` listed and this run did not write. Leaving the block without a
    commit (an error, an interrupt) removes the staging folder and leaves the folder as it was.

    Nothing else is ever removed: the store, files no run listed (the user's own, those of
    ``modelspace tree`` or ``evaluate``). A ``results.json`` of an older modelspace, without the
    list, removes nothing: the files of known names (`file_name`) that this run did not write
    are named in a warning.

    Parameters
    ----------
    out : path
        The folder (created).
    add : bool
        Add files (and summary fields) to the run whose ``results.json`` is there, instead of
        starting a new run: its files are kept and listed with the new ones (`add_files`).
    """

    def __init__(self, out: str | Path, add: bool = False) -> None:
        self.out = Path(out)
        self.add = add
        self.staging: Path | None = None
        self._names: list[str] = []

    def __enter__(self) -> "OutputFolder":
        self.out.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.out))
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write the run's file ``name`` (a plain file name, e.g. ``"report.html"``)."""
        if self.staging is None:
            raise InputError("OutputFolder.path: use the folder in a `with` block")
        if not _plain_name(name) or name == RESULTS_JSON:
            raise InputError(f"name: {name!r} is not a file name of an output folder (no folders; "
                             f"{RESULTS_JSON} is written by commit)")
        if name not in self._names:
            self._names.append(name)
        return self.staging / name

    def commit(self, summary: Mapping) -> Path:
        """Move the written files in, write ``results.json`` from ``summary``, then remove the previous
        run's files this one did not write; returns the folder."""
        previous = _previous_record(self.out)
        listed = previous.get(FILES) if previous is not None else None
        written = [n for n in self._names if (self.staging / n).exists()]
        for name in written:
            os.replace(self.staging / name, self.out / name)
        record = {"modelspace_version": __version__, **((previous or {}) if self.add else {}), **summary}
        record.pop(FILES, None)
        if self.add and previous is not None and listed is None:
            files = None  # an older folder's list is unknown: adding to it would claim it is complete
        else:
            files = sorted({RESULTS_JSON, *written, *(listed if self.add and listed else ())})
            record[FILES] = files
        if not self.add or previous is not None:
            staged = self.staging / RESULTS_JSON
            staged.write_text(json.dumps(record, indent=1))
            os.replace(staged, self.out / RESULTS_JSON)  # last: the folder is described before and after
        if not self.add and previous is not None:
            self._remove_previous(listed, set(files))
        return self.out

    def _remove_previous(self, listed: list[str] | None, kept: set[str]) -> None:
        if listed is None:  # written by an older modelspace: its files are not known for sure
            left = sorted(p.name for p in self.out.iterdir()
                          if p.name not in kept and p.is_file() and _known_name(p.name))
            if left:
                _log.warning("%s: its previous %s does not list its files (an older modelspace wrote it), so "
                             "none were removed; these may be stale, from an earlier run: %s. This run's files "
                             "are listed in %s from now on, and the next run replaces only those", self.out,
                             RESULTS_JSON, ", ".join(left), RESULTS_JSON)
            return
        for name in listed:
            path = self.out / name
            if name not in kept and _plain_name(name) and name != RESULTS_JSON and (path.is_file() or path.is_symlink()):
                path.unlink(missing_ok=True)


def _previous_record(out: Path) -> dict | None:
    """The ``results.json`` a modelspace run left in ``out``, or None (none, unreadable, or not one of ours)."""
    try:
        record = json.loads((out / RESULTS_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "modelspace_version" not in record:
        return None
    if not (isinstance(record.get(FILES), list) and all(isinstance(n, str) for n in record[FILES])):
        record.pop(FILES, None)
    return record


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and Path(name).name == name and "\\" not in name


def _known_name(name: str) -> bool:
    """Whether ``name`` is one a run writes (`_PATTERNS`, the fixed names)."""
    if name in _FIXED_NAMES:
        return True
    return any(name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)
               for prefix, suffix in (pattern.split("{}") for pattern in _PATTERNS.values()))


def add_files(out: str | Path, files: Mapping[str, Callable[[Path], object]], info: Mapping | None = None) -> Path:
    """Add files (and ``results.json`` fields) to the run that `save` wrote into ``out``: each
    ``files[name](path)`` writes one file, which ``results.json`` then lists with the run's others.

    Returns the folder.
    """
    with OutputFolder(out, add=True) as folder:
        for name, write in files.items():
            write(folder.path(name))
        return folder.commit(dict(info or {}))


def save(out: str | Path, results: Mapping[str, MethodResult], summary: dict,
         grids: Mapping[str, tuple[np.ndarray, dict[str, np.ndarray]]] | None = None,
         evaluation: Evaluation | None = None) -> Path:
    """Write an output folder: matrices, rankings, trees and their figures, and `results.json`.

    A folder that holds a previous run's results is written over as one unit (`OutputFolder`): the
    new files first, `results.json` last, listing them under ``"files"``; then the files the previous
    `results.json` listed and this run did not write (e.g. ``affinity_transformed.csv`` of a run with
    other methods) are removed. Nothing else in the folder is touched (the store ``OUT/store``, the
    user's own files), and a killed run leaves the previous `results.json` describing what is there.
    Writing over is the choice, rather than refusing a folder that holds results unless told to
    overwrite: a rerun into the same folder (the default ``modelspace-out/``) is the common case,
    and resuming from the store there is the point of a rerun.

    Parameters
    ----------
    out : path
        The folder (created).
    results : mapping of str to MethodResult
        Per estimator id, its model space.
    summary : dict
        The JSON-able settings and results (`ModelSpace.summary`).
    grids : mapping, optional
        Per attribution method, (probe images (n, 3, S, S), {model: maps}) for its attribution grid.
    evaluation : Evaluation, optional
        Drawn as `CURVES_PNG` when given.
    """
    from .report import plots  # matplotlib is imported only when something is drawn

    with OutputFolder(out) as folder:
        for estimator, r in results.items():
            stem = file_stem(estimator, list(results))
            write_matrix(folder.path(file_name("affinity", stem)), r.affinity, r.names)
            folder.path(file_name("ranking", stem)).write_text(json.dumps(r.ranking, indent=1))
            if len(r.names) >= 2:
                folder.path(file_name("tree", stem)).write_text(r.newick + "\n")
                plots.plot_dendrogram(r.linkage, r.names, folder.path(file_name("dendrogram", stem)),
                                      title=f"Similarity tree · {estimator}")
                plots.plot_heatmap(r.affinity, r.names, folder.path(file_name("heatmap", stem)), order=r.order,
                                   title=f"Attribution affinity · {estimator}")
            if grids and estimator in grids:
                images, maps = grids[estimator]
                plots.plot_attribution_grid(images, maps, folder.path(file_name("grid", stem)),
                                            max_images=len(images))
        if evaluation is not None:
            plots.plot_curves(evaluation, folder.path(CURVES_PNG))
        return folder.commit({**summary, "confidence": confidence_summary(results)})


def holds(folder: str | Path, settings: Mapping, name: str) -> bool:
    """Whether the output folder holds ``name`` among its results: listed in its ``results.json``
    (``settings``), or, for a ``results.json`` without the list (an older modelspace), present."""
    listed = settings.get(FILES)
    if isinstance(listed, list):
        return name in listed and (Path(folder) / name).is_file()
    return (Path(folder) / name).is_file()


def confidence_summary(results: Mapping[str, MethodResult]) -> dict:
    """``results.json``'s ``"confidence"``: per estimator id, ``{"targets": {target: {...}}}`` or
    ``{"note": why none}``."""
    out = {}
    for estimator, r in results.items():
        if r.confidence:
            out[estimator] = {"targets": r.confidence}
        elif r.confidence_note:
            out[estimator] = {"note": r.confidence_note}
    return out


def load(folder: str | Path) -> tuple[dict, dict[str, MethodResult], dict[str, bytes]]:
    """Read an output folder: (settings, results per estimator id, grid PNGs per method id). Only the
    files its ``results.json`` lists are read (`holds`).

    Raises
    ------
    InputError
        No or an unreadable `results.json`, or a matrix it lists is missing.
    """
    folder = Path(folder)
    results_file = folder / RESULTS_JSON
    try:
        settings = json.loads(results_file.read_text())
    except FileNotFoundError:
        raise InputError(f"{results_file}: not found; is {folder} a folder written by `modelspace run`?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{results_file}: unreadable ({exc})") from exc
    if not isinstance(settings, dict) or "methods" not in settings:
        raise InputError(f"{results_file}: no 'methods' field; not written by modelspace")
    tasks = {m["name"]: m.get("task", m["name"]) for m in settings.get("models", [])}
    ids = [*settings["methods"], *settings.get("baselines", [])]
    results, grids = {}, {}
    for estimator in ids:
        stem = file_stem(estimator, ids)
        csv_file = folder / file_name("affinity", stem)
        if not holds(folder, settings, csv_file.name):
            raise InputError(f"{csv_file}: missing (listed in {results_file.name} as {estimator!r})")
        matrix, names = read_matrix(csv_file)
        kind = ("method" if estimator in settings["methods"] else
                "fusion" if estimator in settings.get("fusions", ()) else "baseline")
        judged = settings.get("confidence", {}).get(estimator, {})
        results[estimator] = MethodResult(estimator, names, [tasks.get(n, n) for n in names], matrix, kind=kind,
                                          confidence=judged.get("targets"), confidence_note=judged.get("note", ""))
        grid_file = folder / file_name("grid", stem)
        if holds(folder, settings, grid_file.name):
            grids[estimator] = grid_file.read_bytes()
    return settings, results, grids
