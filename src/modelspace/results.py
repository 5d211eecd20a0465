"""Results: the records a fit produces, and the output folder that holds them.

`MethodResult` is one estimator's model space (an attribution method or a baseline); `Failure`
says why a model is missing from one. The output folder is written and read here only, so file
names are decided in one place::

    results.json              settings, models, failures, any evaluation (`ModelSpace.summary`), under
                              "files" every file of the run (itself included), under "sha256" each
                              file's hash, and the run's "run_id"
    affinity_<stem>.csv       the matrix, first row and column the model names
    ranking_<stem>.json       sources per target, best first, with the affinity
    tree_<stem>.nwk           the similarity tree (Newick)
    dendrogram_<stem>.png, heatmap_<stem>.png, grid_<stem>.png, pk_curves.png
    report.html               the page (`report`)
    label_scores.json         the label-based scores (`modelspace run --labels`)
    oracle_affinity.csv       a ground truth's similarity over tasks, for its tree (the demo writes it)
    evaluation_<stem>.json, pk_curves_<stem>.png   what `modelspace evaluate` writes
    difference_<A>_vs_<B>.png, cpc_<A>_vs_<B>.png   two estimators compared (`evaluation.pairs`): the
                              difference of their normalised matrices and the Correlation–Priority
                              Curve; cpc_oracle.png, the truth's ranking against each estimator

``<stem>`` is the estimator's name, or its full id made filesystem-safe when two ids share a
name (`file_stem`).

A run writes the folder as one unit (`OutputFolder`): under the folder's lock (`locked`), so that
runs into one folder take turns, its files are written into a staging folder inside it, which is
then committed: renamed into a journal, whose files are moved in, ``results.json`` last, and the
files that the previous run listed and this one did not write removed. A run stopped at any moment
leaves the previous run's results or, completed by the next command on the folder, its own; never a
mix. Nothing else in the folder is touched: the store, the user's own files, files no run listed.
Reading a folder (`load`) checks that its files are the ones its ``results.json`` lists, by hash.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ._version import __version__
from . import identity
from .errors import InputError, StorageError, UnknownKeyError
from .evaluation import Evaluation, GroundTruth, pair_comparisons
from .maps import file_sha256
from .similarity.ranking import rank_sources
from .similarity.tree import leaf_order, similarity_tree, to_newick

try:
    import fcntl
except ImportError:  # Windows: runs into one folder are not serialised there
    fcntl = None

KINDS = ("method", "baseline", "fusion")
"""An estimator is an attribution method, a baseline on encoder activations, or a fusion of others."""

RESULTS_JSON = "results.json"
CURVES_PNG = "pk_curves.png"
REPORT_HTML = "report.html"
LABEL_SCORES_JSON = "label_scores.json"
TRUTH_AFFINITY_CSV = "oracle_affinity.csv"
FILES = "files"
"""The field of ``results.json`` that lists every file its run wrote."""
SHA256 = "sha256"
"""The field of ``results.json`` that maps each file of `FILES` but itself to its sha256 (`check_files`)."""
RUN_ID = "run_id"
"""The field of ``results.json`` that tells its run from any other: a random id."""
_RESERVED = ".modelspace-"  # modelspace's own entries of an output folder; no run file is named so
_STAGING_PREFIX = _RESERVED + "staging-"  # a run's files while it writes them
_COMMIT = _RESERVED + "commit"  # a run's files while they are moved in (`OutputFolder.commit`)
_JOURNAL = _RESERVED + "journal.json"  # in _COMMIT: what to move in and what to remove
_HOLDER = _RESERVED + "writer.json"  # who holds the folder's lock, while a run does
_FIXED_NAMES = (RESULTS_JSON, CURVES_PNG, REPORT_HTML, LABEL_SCORES_JSON, TRUTH_AFFINITY_CSV)
_PATTERNS = {"affinity": "affinity_{}.csv", "ranking": "ranking_{}.json", "tree": "tree_{}.nwk",
             "dendrogram": "dendrogram_{}.png", "heatmap": "heatmap_{}.png", "grid": "grid_{}.png",
             "evaluation": "evaluation_{}.json", "curves": "pk_curves_{}.png", "difference": "difference_{}.png",
             "cpc": "cpc_{}.png"}


# --------------------------------------------------------------------------- records


class Keyed(dict):
    """A dict whose missing keys raise `UnknownKeyError` saying what the keys are.

    With ``resolve``, it also finds an entry under another name for its key (an alias).

    Parameters
    ----------
    items : mapping or iterable of pairs
        The entries.
    what : str, default "keys"
        What the keys are, for the message ("target model names", "estimator ids").
    resolve : callable, optional
        ``resolve(name) -> key``: the key another name stands for (raising InputError when none).
    hint : str, default ""
        Appended to the message.
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
        """The entry of ``key`` (or of the key it stands for), or ``default``.

        Parameters
        ----------
        key : object
            The key, or a name ``resolve`` turns into one.
        default : object, optional
            What to return when there is no such entry.

        Returns
        -------
        object
            The entry, or ``default``.
        """
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
        """The failure as a JSON-able dict.

        Returns
        -------
        dict
            ``{"model", "method", "message"}``.
        """
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
    """The file-name part for an estimator (`identity.stem`).

    Its name, or its full id made filesystem-safe when two ids of the folder share a name.

    Parameters
    ----------
    estimator : str
        Its id.
    estimators : sequence of str
        The ids of the same output folder.

    Returns
    -------
    str
        The stem, as in ``affinity_<stem>.csv``.
    """
    return identity.stem(estimator, estimators)


def pair_stem(a: str, b: str, estimators: Sequence[str]) -> str:
    """The file-name part for a pair of estimators compared (`evaluation.pairs`).

    Parameters
    ----------
    a, b : str
        The ids of the estimator that ranks and of the one whose similarity is read.
    estimators : sequence of str
        Every estimator id of the run (`file_stem`).

    Returns
    -------
    str
        ``<stem of a>_vs_<stem of b>``.
    """
    return f"{file_stem(a, estimators)}_vs_{file_stem(b, estimators)}"


def file_name(kind: str, stem: str) -> str:
    """The name of one output file of an estimator.

    Parameters
    ----------
    kind : str
        "affinity", "ranking", "tree", "dendrogram", "heatmap", "grid", "evaluation", "curves",
        "difference" or "cpc".
    stem : str
        The estimator's stem (`file_stem`).

    Returns
    -------
    str
        The file name, e.g. ``affinity_saliency.csv``.

    Raises
    ------
    InputError
        An unknown ``kind``.
    """
    if kind not in _PATTERNS:
        raise InputError(f"kind: expected one of {', '.join(_PATTERNS)}, got {kind!r}")
    return _PATTERNS[kind].format(stem)


def stem_of(path: str | Path) -> str:
    """The estimator stem of an output file's path (``affinity_saliency.csv`` → ``saliency``).

    Parameters
    ----------
    path : str or Path
        An output file's path (only its name is read).

    Returns
    -------
    str
        The stem; the name without its extension for a name that is not an estimator's file.
    """
    name = Path(path).name
    for pattern in _PATTERNS.values():
        prefix, suffix = pattern.split("{}")
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            return name[len(prefix):len(name) - len(suffix)]
    return Path(path).stem


# --------------------------------------------------------------------------- matrices


def write_matrix(path: str | Path, matrix: np.ndarray, names: Sequence[str]) -> None:
    """Write a square matrix as CSV: a header ``model,<names>``, then one row per model.

    Parameters
    ----------
    path : str or Path
        The CSV file to write.
    matrix : np.ndarray
        (N, N); written with six decimals.
    names : sequence of str
        The N models, in matrix order.
    """
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", *names])
        for name, row in zip(names, matrix):
            writer.writerow([name, *(f"{v:.6f}" for v in row)])


def read_matrix(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read a matrix written by `write_matrix` (an ``affinity_<stem>.csv``).

    One of the files of a run's folder is read only if it is the one the run wrote (`check_files`).

    Parameters
    ----------
    path : str or Path
        The CSV file.

    Returns
    -------
    matrix : np.ndarray
        (N, N) float64.
    names : list of str
        The N models, in matrix order.

    Raises
    ------
    InputError
        Not a square matrix CSV written by modelspace, or a file of a run's folder that is not the one
        its run wrote.
    """
    path = Path(path)
    with locked(path.parent):  # not while a run commits there
        record = _previous_record(path.parent)
        if record is not None:
            check_files(path.parent, record, [path.name])
    return _parse_matrix(path)


def _parse_matrix(path: Path) -> tuple[np.ndarray, list[str]]:
    """The matrix of a CSV `write_matrix` wrote, its hash not checked (the caller did)."""
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
_held = threading.local()  # the folders whose lock this thread holds: `locked` is reentrant


@contextlib.contextmanager
def locked(folder: str | Path) -> Iterator[None]:
    """Hold the output folder's lock: no run commits into ``folder`` meanwhile.

    Every run writing into a folder (`OutputFolder`) holds it from staging to commit, and `load`
    while it reads, so a second run into the same folder waits (saying once who holds it) instead
    of mixing its files with the first one's; its own commit then replaces the first run's results
    whole. The lock is ``flock`` on the folder itself, so no file is left in it and a killed holder
    never blocks (the kernel releases its lock). Taken, it first completes a commit that a killed
    run left half done and removes stale staging folders (`OutputFolder`). Reentrant within a thread.

    A folder that does not exist is not locked (there is nothing to read or complete), nor is one
    where ``flock`` is not available (Windows; some network mounts).

    Parameters
    ----------
    folder : str or Path
        The output folder.

    Yields
    ------
    None
        While the lock is held.

    Raises
    ------
    StorageError
        A commit that a killed run left cannot be completed.
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    held = _held.__dict__.setdefault("folders", set())
    if key in held:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not there, or not a folder: the caller says so
        fd = None
    if fd is None:
        yield
        return
    try:
        _acquire(fd, folder)
        held.add(key)
        try:
            _recover(folder)
            yield
        finally:
            held.discard(key)
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, folder: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    except OSError:  # a file system without flock: runs into the folder are not serialised there
        return
    try:
        holder = json.loads((folder / _HOLDER).read_text())
        since = datetime.fromtimestamp(holder["since"], timezone.utc).isoformat(timespec="seconds")
        who = f"pid {holder['pid']} on host {holder['host']} has been writing it since {since}"
    except (OSError, ValueError, KeyError, TypeError):  # a reader holds it, or the writer is just starting
        who = "another modelspace process is reading or writing it"
    _log.warning("waiting for %s: %s; this one goes on once that is done (its results are then replaced "
                 "whole, never mixed)", folder, who)
    fcntl.flock(fd, fcntl.LOCK_EX)


def _recover(out: Path) -> None:
    """Under the lock: complete a commit that a killed run left.

    Also remove the staging folders of killed runs and a killed writer's note of who held the lock.
    """
    if (out / _COMMIT).is_dir():
        _log.warning("%s: completing the commit of a run that was stopped while moving its files in", out)
        try:
            _roll_forward(out)
        except OSError as exc:
            raise StorageError(f"output folder {str(out)!r}: the commit of a stopped run in {_COMMIT} cannot be "
                               f"completed: {exc}. Make the folder writable, then run again") from exc
    for stale in out.glob(_STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / _HOLDER).unlink(missing_ok=True)


def _roll_forward(out: Path) -> None:
    """Move a commit's files from ``out/.modelspace-commit`` into ``out``, ``results.json`` last.

    Then remove the previous run's files it names. Each step can be repeated, so a commit stopped at
    any step is completed by doing it again.
    """
    commit = out / _COMMIT
    try:
        journal = json.loads((commit / _JOURNAL).read_text())
        move, remove = list(journal["move"]), list(journal["remove"])
        names = [*move, *remove]
    except FileNotFoundError:  # its last step, the removal of the folder, was under way
        shutil.rmtree(commit)
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"output folder {str(out)!r}: the journal of a stopped run's commit, {commit / _JOURNAL}, "
                           f"cannot be read ({exc}); move {commit} aside and run again") from exc
    if not all(isinstance(n, str) and _plain_name(n) and n != RESULTS_JSON for n in names):
        raise StorageError(f"{commit / _JOURNAL}: not a journal written by modelspace (a name that is not a plain "
                           f"file name); move {commit} aside and run again")
    for name in [*move, RESULTS_JSON]:  # results.json last: it describes the files once they are there
        if (commit / name).exists():
            os.replace(commit / name, out / name)
    for name in remove:
        path = out / name
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
    shutil.rmtree(commit)


class OutputFolder:
    """An output folder written as one run: files are staged, then committed in one step.

    Used as a context manager, which holds the folder's lock (`locked`); ``path(name)`` says where to
    write a file now (inside a staging folder in ``out``) and ``commit(summary)`` commits the run:

    1. ``results.json`` is staged: the summary, `RUN_ID`, `FILES` (every file of the run) and
       `SHA256` (each file's hash, which `load` checks);
    2. the staging folder is renamed ``.modelspace-commit``: the commit point;
    3. its files are moved in, ``results.json`` last, and the files that the previous ``results.json``
       listed and this run did not write are removed (`_roll_forward`).

    A run stopped before step 2 (an error, an interrupt, ``kill -9``) leaves the previous results as
    they were; one stopped after it is completed by the next command that takes the lock. So the
    folder always holds one run's results whole.

    An `OSError` while the run's files are written or moved (a full disk, a read-only folder) is a
    `StorageError` naming the file; the staging folder is removed, so no partial file is left.

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
    list_new : bool
        With ``add``, list files of names the run does not list as the run's (False: they are written
        beside the run's files, unlisted; a file of a name it lists still replaces the run's, hash and all).

    Raises
    ------
    StorageError
        On leaving the ``with`` block, for an `OSError` about the folder or a file in it.
    """

    def __init__(self, out: str | Path, add: bool = False, list_new: bool = True) -> None:
        self.out = Path(out)
        self.add = add
        self.list_new = list_new
        self.staging: Path | None = None
        self._names: list[str] = []
        self._writing: Path = self.out  # what an OSError is about, when it names no file
        self._stack = contextlib.ExitStack()
        self._holding = False

    def __enter__(self) -> "OutputFolder":
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._stack.enter_context(locked(self.out))
            self._holding = True
            _write_holder(self.out)
            self.staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.out))
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        try:
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
            if self._holding:  # before the lock is released: the note is this run's
                with contextlib.suppress(OSError):
                    (self.out / _HOLDER).unlink(missing_ok=True)
        finally:
            self._stack.close()
        if isinstance(exc, OSError) and self._concerns(exc):
            raise StorageError(self._unwritable(exc)) from exc

    def _concerns(self, exc: OSError) -> bool:
        """Whether ``exc`` is about this folder: a file in it, or no file at all (a write's error)."""
        if not isinstance(exc.filename, (str, os.PathLike)):
            return True
        path, out = Path(os.path.realpath(exc.filename)), Path(os.path.realpath(self.out))
        return path == out or out in path.parents

    def _unwritable(self, exc: OSError) -> str:
        """The message of a run's file that cannot be written: the path, the cause, what is kept."""
        path = Path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else self._writing
        if path.name.startswith(_RESERVED):  # the staging folder or the journal: the folder itself
            path = self.out
        elif path.parent.name.startswith(_RESERVED):  # a file being staged or moved in: the file it becomes
            path = self.out / path.name
        reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        what = "output folder" if path == self.out else "output file"
        if (self.out / _COMMIT).is_dir():
            kept = (f"this run's files are committed in {self.out / _COMMIT}; the next modelspace command on "
                    f"{self.out} completes the move once it can write there")
        else:
            kept = f"the results that were in {self.out} are kept as they were"
        return (f"{what} {str(path)!r} cannot be written: {reason}. Free disk space or make the folder writable "
                f"(or write elsewhere: --out), then run again; {kept}")

    def path(self, name: str) -> Path:
        """Where to write one of the run's files now.

        Parameters
        ----------
        name : str
            A plain file name, e.g. ``"report.html"``.

        Returns
        -------
        Path
            The file's path in the staging folder.

        Raises
        ------
        InputError
            Outside a ``with`` block, or a name that is a path, ``results.json`` or one of modelspace's own.
        """
        if self.staging is None:
            raise InputError("OutputFolder.path: use the folder in a `with` block")
        if not _plain_name(name) or name == RESULTS_JSON or name.startswith(_RESERVED):
            raise InputError(f"name: {name!r} is not a file name of an output folder (no folders; "
                             f"{RESULTS_JSON} is written by commit; names starting with {_RESERVED!r} are "
                             "modelspace's own)")
        if name not in self._names:
            self._names.append(name)
        self._writing = self.out / name
        return self.staging / name

    def commit(self, summary: Mapping) -> Path:
        """Commit the run (see the class).

        ``results.json`` is written from ``summary``, every written file moved in, and the previous run's
        files that this one did not write removed.

        Parameters
        ----------
        summary : mapping
            The JSON-able fields of ``results.json`` (with ``add``, added to the run's).

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        InputError
            Outside a ``with`` block, or a second commit.
        """
        if self.staging is None:
            raise InputError("OutputFolder.commit: use the folder in a `with` block, and commit once")
        previous = _previous_record(self.out)
        listed = previous.get(FILES) if previous is not None else None
        written = [n for n in self._names if (self.staging / n).exists()]
        record = {"modelspace_version": __version__, **((previous or {}) if self.add else {}), **summary}
        for key in (FILES, SHA256):
            record.pop(key, None)
        if not self.add:
            record[RUN_ID] = uuid.uuid4().hex
        remove: list[str] = []
        if self.add and previous is not None and listed is None:
            pass  # an older folder's list is unknown: adding to it would claim it is complete
        else:
            new = [n for n in written if not self.add or self.list_new or n in (listed or ())]
            files = sorted({RESULTS_JSON, *new, *(listed if self.add and listed else ())})
            hashes = dict(previous.get(SHA256, {})) if self.add and previous is not None else {}
            for name in new:
                self._writing = self.out / name
                hashes[name] = file_sha256(self.staging / name)
            record[FILES] = files
            record[SHA256] = {n: hashes[n] for n in files if n in hashes}
            if not self.add and previous is not None:
                remove = self._stale(listed, set(files))
        if not self.add or previous is not None:
            self._writing = self.out / RESULTS_JSON
            (self.staging / RESULTS_JSON).write_text(json.dumps(record, indent=1))
        self._writing = self.out
        (self.staging / _JOURNAL).write_text(json.dumps({"move": written, "remove": remove}))
        os.replace(self.staging, self.out / _COMMIT)  # the commit point
        self.staging = None
        _roll_forward(self.out)
        return self.out

    def _stale(self, listed: list[str] | None, kept: set[str]) -> list[str]:
        """The previous run's files to remove: those it listed that this run did not write."""
        if listed is None:  # written by an older modelspace: its files are not known for sure
            left = sorted(p.name for p in self.out.iterdir()
                          if p.name not in kept and p.is_file() and _known_name(p.name))
            if left:
                _log.warning("%s: its previous %s does not list its files (an older modelspace wrote it), so "
                             "none were removed; these may be stale, from an earlier run: %s. This run's files "
                             "are listed in %s from now on, and the next run replaces only those", self.out,
                             RESULTS_JSON, ", ".join(left), RESULTS_JSON)
            return []
        return [n for n in listed if n not in kept and _plain_name(n) and n != RESULTS_JSON]


def _write_holder(out: Path) -> None:
    """Note who holds the folder's lock, for a run that waits for it (`locked`); removed on release."""
    with contextlib.suppress(OSError):  # a note only: a folder that cannot take it fails on the staging next
        (out / _HOLDER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))


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
    if not (isinstance(record.get(SHA256), dict) and all(isinstance(h, str) for h in record[SHA256].values())):
        record.pop(SHA256, None)
    return record


def check_files(folder: str | Path, settings: Mapping, names: Sequence[str] | None = None) -> None:
    """Check that the files of the run in ``folder`` are the ones its run wrote, by hash.

    Not the page, which is drawn from the others (`modelspace report` draws it again), nor any file of
    a ``results.json`` of an older modelspace, without hashes.

    Parameters
    ----------
    folder : str or Path
        The output folder.
    settings : mapping
        Its ``results.json``.
    names : sequence of str, optional
        Check only these of the files it lists (default: all of them).

    Raises
    ------
    InputError
        Naming each file that is missing or differs from the hash ``settings`` records: files of
        another run, or edited.
    """
    folder = Path(folder)
    listed, hashes = settings.get(FILES), settings.get(SHA256)
    if not isinstance(listed, list) or not isinstance(hashes, dict):
        return
    bad = []
    for name in (listed if names is None else [n for n in names if n in listed]):
        if name in (RESULTS_JSON, REPORT_HTML) or not isinstance(hashes.get(name), str):
            continue
        try:
            if file_sha256(folder / name) != hashes[name]:
                bad.append(f"{name} (changed)")
        except FileNotFoundError:
            bad.append(f"{name} (missing)")
        except OSError as exc:
            bad.append(f"{name} (unreadable: {exc.strerror or exc})")
    if bad:
        raise InputError(f"{folder}: not the files its {RESULTS_JSON} lists, as its run wrote them: {', '.join(bad)}. "
                         f"The folder mixes runs or was edited; run `modelspace run` into it again for a consistent "
                         f"folder (the maps are read from the store, not computed again)")


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and Path(name).name == name and "\\" not in name


def _known_name(name: str) -> bool:
    """Whether ``name`` is one a run writes (`_PATTERNS`, the fixed names)."""
    if name in _FIXED_NAMES:
        return True
    return any(name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)
               for prefix, suffix in (pattern.split("{}") for pattern in _PATTERNS.values()))


def add_files(out: str | Path, files: Mapping[str, Callable[[Path], object]], info: Mapping | None = None,
              list_new: bool = True) -> Path:
    """Add files (and ``results.json`` fields) to the run that `save` wrote into ``out``.

    Parameters
    ----------
    out : str or Path
        The output folder.
    files : mapping of str to callable
        ``files[name](path)`` writes one file, which ``results.json`` then lists with the run's others.
    info : mapping, optional
        Fields to add to ``results.json``.
    list_new : bool, default True
        False: list a file only if the run lists that name already (see `OutputFolder`).

    Returns
    -------
    Path
        The folder.
    """
    with OutputFolder(out, add=True, list_new=list_new) as folder:
        for name, write in files.items():
            write(folder.path(name))
        return folder.commit(dict(info or {}))


def save(out: str | Path, results: Mapping[str, MethodResult], summary: dict,
         grids: Mapping[str, tuple[np.ndarray, dict[str, np.ndarray]]] | None = None,
         evaluation: Evaluation | None = None, files: Mapping[str, Callable[[Path], object]] | None = None,
         truth: GroundTruth | None = None) -> Path:
    """Write an output folder: matrices, rankings, trees and their figures, and `results.json`.

    A folder that holds a previous run's results is written over as one unit (`OutputFolder`): the
    new files first, `results.json` last, listing them under ``"files"``; then the files the previous
    `results.json` listed and this run did not write (e.g. ``affinity_transformed.csv`` of a run with
    other methods) are removed. Nothing else in the folder is touched (the store ``OUT/store``, the
    user's own files), and a killed run leaves the previous run's results or its own, whole.
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
    files : mapping, optional
        More files of the run (the page, the label scores): ``files[name](path)`` writes one.
    truth : GroundTruth, optional
        The ground truth evaluated against: its ranking's Correlation–Priority Curves join the
        comparisons of estimators (`write_comparisons`).

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    StorageError
        A file of the run cannot be written (see `OutputFolder`).
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
        comparison = write_comparisons(folder.path, results, truth)
        for name, write in (files or {}).items():
            write(folder.path(name))
        return folder.commit({**summary, "confidence": confidence_summary(results), "comparison": comparison})


def write_comparisons(path: Callable[[str], Path], results: Mapping[str, MethodResult],
                      truth: GroundTruth | None = None) -> dict:
    """Compare the run's pairs of estimators (`evaluation.pair_comparisons`) and draw them.

    Per pair, ``difference_<A>_vs_<B>.png`` and ``cpc_<A>_vs_<B>.png``; with a truth,
    ``cpc_oracle.png``.

    Parameters
    ----------
    path : callable
        ``path(name)``: where the file of that name is written (`OutputFolder.path`).
    results : mapping of str to MethodResult
        Per estimator id, its model space.
    truth : GroundTruth, optional
        The ground truth, for the oracle's curves.

    Returns
    -------
    dict
        ``results.json``'s ``"comparison"``: `evaluation.Comparisons.to_dict`.
    """
    from .report import plots

    comparisons = pair_comparisons(list(results.values()), truth)
    ids = list(results)
    for pair in comparisons.pairs:
        stem = pair_stem(pair.ranking, pair.similarity, ids)
        plots.plot_difference(pair.difference, pair.names, path(file_name("difference", stem)),
                              title=f"{pair.similarity} − {pair.ranking}, normalised")
        plots.plot_pair_priority(pair.to_dict(), path(file_name("cpc", stem)))
    if comparisons.oracle:
        plots.plot_oracle_priority({k: c.to_dict() for k, c in comparisons.oracle.items()},
                                   path(file_name("cpc", "oracle")))
    return comparisons.to_dict()


def holds(folder: str | Path, settings: Mapping, name: str) -> bool:
    """Whether the output folder holds ``name`` among its results.

    Parameters
    ----------
    folder : str or Path
        The output folder.
    settings : mapping
        Its ``results.json``.
    name : str
        A file name.

    Returns
    -------
    bool
        Whether the file is there and ``results.json`` lists it; for a ``results.json`` without the
        list (an older modelspace), whether it is there.
    """
    listed = settings.get(FILES)
    if isinstance(listed, list):
        return name in listed and (Path(folder) / name).is_file()
    return (Path(folder) / name).is_file()


def confidence_summary(results: Mapping[str, MethodResult]) -> dict:
    """The ``"confidence"`` field of ``results.json``.

    Parameters
    ----------
    results : mapping of str to MethodResult
        Per estimator id, its model space.

    Returns
    -------
    dict
        Per estimator id, ``{"targets": {target: {...}}}`` or ``{"note": why none}``; estimators with
        neither are left out.
    """
    out = {}
    for estimator, r in results.items():
        if r.confidence:
            out[estimator] = {"targets": r.confidence}
        elif r.confidence_note:
            out[estimator] = {"note": r.confidence_note}
    return out


def load(folder: str | Path) -> tuple[dict, dict[str, MethodResult], dict[str, bytes]]:
    """Read an output folder.

    Only the files its ``results.json`` lists are read (`holds`), and only if they are the ones its run
    wrote (`check_files`); read under the folder's lock (`locked`), so never while a run commits there.

    Parameters
    ----------
    folder : str or Path
        The output folder.

    Returns
    -------
    settings : dict
        Its ``results.json``.
    results : dict of str to MethodResult
        Per estimator id, its model space.
    grids : dict of str to bytes
        Per attribution method id, its attribution grid's PNG.

    Raises
    ------
    InputError
        No or an unreadable `results.json`, a matrix it lists is missing, or a file it lists is missing
        or differs from its hash.
    """
    with locked(folder):
        return _load(Path(folder))


def _load(folder: Path) -> tuple[dict, dict[str, MethodResult], dict[str, bytes]]:
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
    check_files(folder, settings)
    tasks = {m["name"]: m.get("task", m["name"]) for m in settings.get("models", [])}
    ids = [*settings["methods"], *settings.get("baselines", [])]
    results, grids = {}, {}
    for estimator in ids:
        stem = file_stem(estimator, ids)
        csv_file = folder / file_name("affinity", stem)
        if not holds(folder, settings, csv_file.name):
            raise InputError(f"{csv_file}: missing (listed in {results_file.name} as {estimator!r})")
        matrix, names = _parse_matrix(csv_file)  # checked with the run's other files above
        kind = ("method" if estimator in settings["methods"] else
                "fusion" if estimator in settings.get("fusions", ()) else "baseline")
        judged = settings.get("confidence", {}).get(estimator, {})
        results[estimator] = MethodResult(estimator, names, [tasks.get(n, n) for n in names], matrix, kind=kind,
                                          confidence=judged.get("targets"), confidence_note=judged.get("note", ""))
        grid_file = folder / file_name("grid", stem)
        if holds(folder, settings, grid_file.name):
            grids[estimator] = grid_file.read_bytes()
    return settings, results, grids
