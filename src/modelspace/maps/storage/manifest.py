"""The store's manifest: one SQLite file (WAL mode) that every process sharing a store agrees on.

Tables: ``models`` (registered models), ``shards`` (one row per shard file, with its sha256 and a
checksum binding it to its identity, see `keys.bound_checksum`), ``layouts`` (the shard size of
each entry, fixed by the first process that plans it), ``affinities`` (cached pair values,
``model_a <= model_b``, each with a checksum over its own fields), ``sketches``, ``prepared`` (a
model's encoder activations in a baseline's prepared form, one file each; both bound like shards),
``failures`` (entries that failed for a reason a rerun would meet again), ``load_failures`` (zoo
entries, by `models.spec_key`, whose model failed to load for such a reason), ``claims`` (units a
process is computing, see `claims`) and ``heartbeats`` (when each claiming process last showed it
was alive). Every write is one short ``BEGIN IMMEDIATE`` transaction, so the busy timeout, not an
error, handles two processes writing at once.

Schema changes: tables are added with ``CREATE TABLE IF NOT EXISTS`` and columns with ``ALTER TABLE``
when a store is opened (`_MIGRATIONS`), inside the transaction that checks the version, so a store
written by an older modelspace opens and is upgraded in place; a store of a newer schema than this
modelspace knows is refused. Version 2 added ``affinities.checksum`` (rows of version 1 have none
and are recomputed on first use) and ``layouts``; version 3 added ``prepared``; version 4 added
``sha256`` to ``shards``, ``sketches`` and ``prepared``: the file's own sha256, while ``checksum``
binds the file to its identity. Rows of version 3 have none, their ``checksum`` being the file's
sha256: the store re-signs such a row the first time its file checks out (`MapStore`).

A file in the manifest's place that does not start with SQLite's header is refused before SQLite
sees it: SQLite would take a file shorter than its header for a new database and overwrite it. A
manifest opened while its ``-wal`` or ``-shm`` file is there (a process ended without closing it,
another one has it open, or such a file came from elsewhere) first passes SQLite's
``PRAGMA integrity_check`` on a read-only connection, which neither writes nor checkpoints it; a
damaged manifest is refused, left as found, with the way to rebuild it from the store's files
(`MapStore.rebuild`, ``modelspace rebuild``).

A store this process cannot write (a read-only mount, or folder and files without write permission:
SQLite writes even to open the manifest, and makes its ``-wal`` and ``-shm`` files beside it) is
refused with a `StorageError` saying that it is read-only, once, naming the manifest; a caller that
only reads (``writes=False``) gets a read-only connection instead (SQLite's ``mode=ro``, else
``immutable=1`` when no write-ahead log holds data the file lacks).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from ...errors import InputError, StorageError, StoreError
from .keys import EntryKey

SCHEMA_VERSION = 4
_BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    model_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    n_features INTEGER NOT NULL,
    path TEXT NOT NULL,
    checksum TEXT NOT NULL,
    nbytes INTEGER NOT NULL,
    n_zero INTEGER NOT NULL,
    n_nonfinite INTEGER NOT NULL,
    created TEXT NOT NULL,
    sha256 TEXT,
    PRIMARY KEY (model_key, probe_hash, method, probe_size, shard)
);
CREATE TABLE IF NOT EXISTS affinities (
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    value REAL NOT NULL,
    checksum TEXT,
    PRIMARY KEY (probe_hash, method, probe_size, model_a, model_b),
    CHECK (model_a <= model_b)
);
CREATE INDEX IF NOT EXISTS affinities_b ON affinities (model_b);
CREATE TABLE IF NOT EXISTS layouts (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    shard_size INTEGER NOT NULL,
    PRIMARY KEY (model_key, probe_hash, method, probe_size)
);
CREATE TABLE IF NOT EXISTS sketches (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    path TEXT NOT NULL,
    checksum TEXT NOT NULL,
    sha256 TEXT,
    PRIMARY KEY (model_key, probe_hash, method, probe_size, dim, seed)
);
CREATE TABLE IF NOT EXISTS prepared (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    path TEXT NOT NULL,
    checksum TEXT NOT NULL,
    sha256 TEXT,
    PRIMARY KEY (model_key, probe_hash, method, probe_size)
);
CREATE TABLE IF NOT EXISTS failures (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (model_key, probe_hash, method, probe_size)
);
CREATE TABLE IF NOT EXISTS load_failures (
    spec_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (model_key, probe_hash, method, probe_size, shard)
);
CREATE TABLE IF NOT EXISTS heartbeats (
    owner TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started REAL NOT NULL,
    beat REAL NOT NULL
);
"""

# Columns added after a table was first released: (table, column, declaration). Applied to a store
# whose table lacks the column; SQLite can only add columns that may be NULL or have a default.
_MIGRATIONS = [
    ("affinities", "checksum", "TEXT"),  # version 2
    ("shards", "sha256", "TEXT"),  # version 4
    ("sketches", "sha256", "TEXT"),
    ("prepared", "sha256", "TEXT"),
]

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"

#: The WHERE clause selecting one entry's rows, in `key_tuple` order.
ENTRY = "model_key = ? AND probe_hash = ? AND method = ? AND probe_size = ?"


def key_tuple(key: EntryKey) -> tuple:
    """The EntryKey fields in manifest column order.

    Parameters
    ----------
    key : EntryKey
        One entry of the store.

    Returns
    -------
    tuple
        ``(model_key, probe_hash, method, probe_size)``, the parameters of `ENTRY`.
    """
    return (key.model_key, key.probe_hash, key.method, key.probe_size)


def pair_tuple(a: EntryKey, b: EntryKey) -> tuple:
    """The manifest's key of an unordered pair of entries (the ``affinities`` table's columns).

    Parameters
    ----------
    a, b : EntryKey
        Two entries of one probe set, method and probe size, in either order.

    Returns
    -------
    tuple
        ``(probe_hash, method, probe_size, model_a, model_b)`` with ``model_a <= model_b``.

    Raises
    ------
    InputError
        The entries differ in probe set, method or probe size.
    """
    for field in ("probe_hash", "method", "probe_size"):
        if getattr(a, field) != getattr(b, field):
            raise InputError(
                f"{field}: an affinity pairs entries of one probe set, method and size; "
                f"got {getattr(a, field)!r} and {getattr(b, field)!r}"
            )
    low, high = sorted((a.model_key, b.model_key))
    return (a.probe_hash, a.method, a.probe_size, low, high)


class Manifest:
    """One connection to the manifest, shared by the threads of a process.

    Parameters
    ----------
    path : Path
        The SQLite file; created, with the schema, when missing.
    writes : bool, default True
        False for a caller that only reads: a manifest this process cannot write is then opened
        read-only (`read_only` is True) instead of refused.

    Raises
    ------
    StorageError
        The file is not an SQLite database, a folder, damaged (checked when its ``-wal`` or ``-shm``
        file is there), or cannot be opened or written (with ``writes=True``).
    StoreError
        The manifest has a newer schema than this modelspace reads.
    """

    def __init__(self, path: Path, writes: bool = True) -> None:
        self.path = path
        self.lock = threading.RLock()
        #: Whether the connection is read-only (``writes=False`` on a store this process cannot write).
        self.read_only = False
        try:
            self.conn = _connect(path)
        except StorageError:
            if writes or read_only_reason(path) is None:
                raise
            self.conn = _connect_read_only(path)
            self.read_only = True

    def transaction(self) -> "Transaction":
        """A context manager running one short BEGIN IMMEDIATE ... COMMIT transaction.

        Returns
        -------
        Transaction
            Entered, it gives a cursor; the block commits on success and rolls back on an error.
        """
        return Transaction(self)

    @contextlib.contextmanager
    def cursor(self) -> Iterator[sqlite3.Cursor]:
        """A cursor for reads under the manifest's lock, outside any transaction.

        A read-only connection can take no transaction, so its reads go through this.

        Yields
        ------
        sqlite3.Cursor
            A cursor of the shared connection, valid until the block ends.

        Raises
        ------
        StorageError
            An SQLite error inside the block.
        """
        with self.lock:
            try:
                yield self.conn.cursor()
            except sqlite3.Error as exc:
                raise StorageError(f"manifest {str(self.path)!r}: {exc}") from exc

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one read-only statement and return all rows.

        Parameters
        ----------
        sql : str
            One SQL statement, with ``?`` placeholders.
        params : tuple, default ()
            The placeholders' values.

        Returns
        -------
        list of tuple
            All rows of the result.

        Raises
        ------
        StorageError
            SQLite refuses the statement, or the manifest cannot be read.
        """
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"manifest {str(self.path)!r}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the manifest's lock.

    Entered, it gives a cursor of the manifest's connection.

    Parameters
    ----------
    manifest : Manifest
        The manifest to write.

    Raises
    ------
    StorageError
        The transaction cannot begin or commit (locked past the busy timeout, read-only, full disk), or
        an SQLite error inside the block; the message says when the store is read-only.
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def __enter__(self) -> sqlite3.Cursor:
        m = self.manifest
        m.lock.acquire()
        try:
            # IMMEDIATE takes the write lock up front, so the busy timeout handles contention.
            m.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            m.lock.release()
            raise _error(m.path, exc, f"manifest {str(m.path)!r} is locked, read-only or unreadable: {exc}") from exc
        return m.conn.cursor()

    def __exit__(self, exc_type, exc, tb) -> None:
        m = self.manifest
        try:
            m.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as err:
            if exc_type is None:
                raise _error(m.path, err, f"manifest {str(m.path)!r}: commit failed (read-only or full disk?): "
                                          f"{err}") from err
        finally:
            m.lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"manifest {str(m.path)!r}: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the manifest in WAL mode with the schema in place.

    SQLite does not call its busy handler for every lock it meets while a database is created or
    switched to WAL by another process at the same moment, so "database is locked" can come at once
    (two runs starting on a new store); the whole opening is then tried again until the busy timeout.
    """
    _check_header(path)
    _check_integrity(path)
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            return _open(path)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise _error(path, exc, f"manifest {str(path)!r} cannot be opened: {exc}") from exc
            time.sleep(0.05)
        except sqlite3.Error as exc:
            raise _error(path, exc, f"manifest {str(path)!r} cannot be opened: {exc}") from exc


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a manifest this process cannot write (`Manifest` with ``writes=False``).

    SQLite's ``mode=ro`` still needs the ``-shm`` file, which a read-only folder may lack; ``immutable=1``
    needs nothing, but ignores the write-ahead log, so it is used only when no ``-wal`` file holds data.
    """
    wal = path.with_name(path.name + "-wal")
    modes = ["mode=ro"] + (["immutable=1"] if not wal.exists() or wal.stat().st_size == 0 else [])
    for mode in modes:
        conn = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, check_same_thread=False, isolation_level=None)
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            conn.execute("SELECT COUNT(*) FROM models").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            error = exc
            continue
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"manifest {str(path)!r} has schema version {version}; this modelspace reads up to "
                             f"{SCHEMA_VERSION}")
        return conn
    raise _error(path, error, f"manifest {str(path)!r} cannot be read: {error}")


def read_only_reason(path: Path) -> str | None:
    """What this process cannot write of the manifest at ``path``, for "this user cannot write ...".

    Looked at: the manifest, its ``-wal`` or ``-shm`` file, and the folder SQLite makes them in
    (permissions, a read-only mount).

    Parameters
    ----------
    path : Path
        The manifest's file.

    Returns
    -------
    str or None
        The unwritable part, worded to follow "cannot write", or None when all of it is writable.
    """
    if path.exists() and not os.access(path, os.W_OK):
        return f"its manifest {str(path)!r}"
    for file in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and not os.access(file, os.W_OK):
            return f"{str(file)!r}, beside its manifest"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"in its folder, where SQLite makes the -wal and -shm files of its manifest {str(path)!r}"
    return None


def _error(path: Path, exc: sqlite3.Error, otherwise: str) -> StorageError:
    """The StorageError of an SQLite error on the manifest.

    Its message says that the store is read-only when it is (`read_only_reason`), else is ``otherwise``.
    """
    reason = read_only_reason(path)
    if reason is None:
        return StorageError(otherwise)
    return StorageError(f"store {str(path.parent)!r} is read-only: this user cannot write {reason} (SQLite: {exc}); "
                        "nothing was written. Make the store writable, or pass another --store")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _open(path: Path) -> sqlite3.Connection:
    """One attempt of `_connect` (sqlite3 errors propagate; the connection is closed on any error)."""
    # isolation_level=None: transactions are explicit (see Transaction), never implicit.
    conn = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"manifest {str(path)!r} has schema version {version}; this modelspace "
                    f"reads up to {SCHEMA_VERSION}"
                )
            # One statement at a time: executescript would commit the open transaction.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            for table, column, declaration in _MIGRATIONS:
                if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def _check_header(path: Path) -> None:
    """StorageError, leaving the file as it is, unless ``path`` is missing, empty or an SQLite database.

    SQLite itself refuses most other files ("file is not a database"), but takes one shorter than its
    100-byte header for a new database and overwrites it, so the header is checked first.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return  # a new store
    except IsADirectoryError:
        raise StorageError(f"manifest {str(path)!r} is a folder, not a file; move it aside and run again") from None
    except OSError as exc:
        raise StorageError(f"manifest {str(path)!r} cannot be read: {exc}") from exc
    if head and head != SQLITE_HEADER:
        raise StorageError(
            f"manifest {str(path)!r} is not an SQLite database (its first bytes are not SQLite's header; it was "
            f"left untouched). Move it aside (e.g. to {path.name}.damaged) and run again: a new manifest is created "
            f"and the maps are computed again; the files under {str(path.parent / 'arrays')!r} are kept"
        )


#: How many of SQLite's integrity problems a refusal quotes.
_PROBLEMS_QUOTED = 3


def _check_integrity(path: Path) -> None:
    """StorageError, leaving the files as found, when an uncleanly closed manifest is damaged.

    Unclean: its ``-wal`` or ``-shm`` file is there; damaged: SQLite's integrity check says so.
    The check runs on a read-only connection: it reads the WAL but never checkpoints it into the
    manifest, so a WAL that does not belong there (copied from another store) changes nothing.
    """
    unclean = [f"{path.name}{suffix}" for suffix in ("-wal", "-shm") if Path(f"{path}{suffix}").exists()]
    if not unclean:
        return
    if not path.exists():  # SQLite would apply a WAL left behind to the new, empty manifest
        raise StorageError(f"manifest {str(path)!r} is missing but {' and '.join(unclean)} is there: move it aside, "
                           f"or run `modelspace rebuild --store {str(path.parent)}` to rebuild the manifest from the "
                           "maps' files")
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise _error(path, exc, f"manifest {str(path)!r} cannot be opened: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        problems = [row[0] for row in conn.execute(f"PRAGMA integrity_check({_PROBLEMS_QUOTED + 1})")]
    except sqlite3.OperationalError as exc:
        if _is_busy(exc) or "unable to open" in str(exc) or read_only_reason(path) is not None:
            raise _error(path, exc, f"manifest {str(path)!r} cannot be opened: {exc}") from exc
        problems = [str(exc)]
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", "file is not a database"
        problems = [str(exc)]
    finally:
        conn.close()
    if problems != ["ok"]:
        quoted = "; ".join(problems[:_PROBLEMS_QUOTED]) + ("; ..." if len(problems) > _PROBLEMS_QUOTED else "")
        raise StorageError(
            f"manifest {str(path)!r} is damaged: it was not closed cleanly ({' and '.join(unclean)} beside it) and "
            f"SQLite's integrity check reports: {quoted}. It was left as found. Run `modelspace rebuild --store "
            f"{str(path.parent)}` while no other modelspace process uses the store: it moves the manifest aside "
            "(kept) and rebuilds it from the maps' files, each verified; cached affinities are computed again"
        )
