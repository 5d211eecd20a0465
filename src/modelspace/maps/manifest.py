"""The store's manifest: one SQLite file (WAL mode) that every process sharing a store agrees on.

Tables: ``models`` (registered models), ``shards`` (one row per shard file, with its sha256),
``affinities`` (cached pair values, ``model_a <= model_b``), ``sketches``, ``failures`` (entries
that failed for a reason a rerun would meet again) and ``claims`` (units a process is computing,
see `claims`), ``heartbeats`` (when each claiming process last showed it was alive). Tables are only ever added, so stores written before a table existed still open. Every write is one short ``BEGIN IMMEDIATE`` transaction, so
the busy timeout, not an error, handles two processes writing at once.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..errors import InputError, StorageError, StoreError
from .keys import EntryKey

SCHEMA_VERSION = 1
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
    PRIMARY KEY (model_key, probe_hash, method, probe_size, shard)
);
CREATE TABLE IF NOT EXISTS affinities (
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (probe_hash, method, probe_size, model_a, model_b),
    CHECK (model_a <= model_b)
);
CREATE INDEX IF NOT EXISTS affinities_b ON affinities (model_b);
CREATE TABLE IF NOT EXISTS sketches (
    model_key TEXT NOT NULL,
    probe_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    probe_size INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    path TEXT NOT NULL,
    checksum TEXT NOT NULL,
    PRIMARY KEY (model_key, probe_hash, method, probe_size, dim, seed)
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

#: The WHERE clause selecting one entry's rows, in `key_tuple` order.
ENTRY = "model_key = ? AND probe_hash = ? AND method = ? AND probe_size = ?"


def key_tuple(key: EntryKey) -> tuple:
    """The EntryKey fields in manifest column order."""
    return (key.model_key, key.probe_hash, key.method, key.probe_size)


def pair_tuple(a: EntryKey, b: EntryKey) -> tuple:
    """(probe_hash, method, probe_size, model_a, model_b) of an unordered pair, model_a <= model_b."""
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
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.conn = _connect(path)

    def transaction(self) -> "Transaction":
        """A context manager running one short BEGIN IMMEDIATE ... COMMIT transaction."""
        return Transaction(self)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one read-only statement and return all rows."""
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
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the manifest's lock."""

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
            raise StorageError(f"manifest {str(m.path)!r} is locked, read-only or unreadable: {exc}") from exc
        return m.conn.cursor()

    def __exit__(self, exc_type, exc, tb) -> None:
        m = self.manifest
        try:
            m.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as err:
            if exc_type is None:
                raise StorageError(f"manifest {str(m.path)!r}: commit failed (read-only or full disk?): {err}") from err
        finally:
            m.lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"manifest {str(m.path)!r}: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the manifest in WAL mode with the schema in place."""
    try:
        # isolation_level=None: transactions are explicit (see Transaction), never implicit.
        conn = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"manifest {str(path)!r} cannot be opened: {exc}") from exc
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
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"manifest {str(path)!r} cannot be opened: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn
