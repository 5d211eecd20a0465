"""The embedded map store: a SQLite manifest plus one ``.npy`` file per shard, no server.

Layout under ``root``::

    manifest.sqlite                                   WAL mode; tables models, shards, affinities
    arrays/<mk[:2]>/<mk>/<method_slug>/<probe_hash[:16]>_<size>/shard_<shard:05d>.npy

``mk`` is the model key; ``method_slug`` is the method id made filesystem-safe plus the
first 8 hex digits of its sha256, so two method ids never share a folder.

An entry (``EntryKey``: model x probe set x method x probe size) is stored as shards of
consecutive probe images. Each shard file holds float16 (B, F) rows: the attribution maps
flattened and L2-normalised (rows that were all-zero or non-finite are stored as zeros
and counted). Files are written atomically (temp file, fsync, ``os.replace``) and their
sha256 is kept in the manifest, so a missing or corrupt file is noticed by ``missing`` /
``read`` and recomputed on the next run. Cached affinities are keyed by the unordered
model pair (``model_a <= model_b``) under one probe hash, method and size.

Several processes may share one store: each ``MapStore`` holds one connection with a
busy timeout, and every write is one short transaction. So that two processes embedding the
same models do not both compute a unit, a process first *claims* it (``claim``: a row in the
``claims`` table with its pid, host and a random owner token, taken in one ``BEGIN IMMEDIATE``
transaction) and releases it after writing; ``modelspace.locking.run_exclusive`` runs units
that way. A claim whose process is gone (same host, pid no longer alive, e.g. after
``kill -9``) or older than ``CLAIM_STALE_S`` is taken over. Claims live in SQLite rather than
in lock files because the manifest is already the one place every process agrees on, and a
row outlives a crash without leaving a lock held (an ``flock`` would be released by the
kernel too, but not on every network filesystem).

Crash safety: a shard file is complete before it is renamed into place, and its manifest row
(with the file's sha256) is committed after the rename, so a process killed at any moment
leaves either no row (the unit is recomputed), or a row whose file checks out. Temporary files
of a killed write (``.shard_*.npy.*.tmp``) are never read, and are deleted by the next process
that claims that unit.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import socket
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from modelspace.errors import InputError, StoreError

SCHEMA_VERSION = 1
# Filesystems stamp modification times in coarse ticks (a few ms on ext4, 2 s on FAT): a file
# modified less than this before it was verified is verified again on every read.
_STAMP_GRANULARITY_NS = 2_000_000_000
_BUSY_TIMEOUT_S = 60.0
# Keys become folder names: keep them to characters that are safe on every filesystem.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

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
"""

#: A claim older than this is taken over even when its process looks alive (another host, whose
#: pids cannot be checked from here, or a pid reused by an unrelated process).
CLAIM_STALE_S = 3600.0
_HOST = socket.gethostname()


# ---------------------------------------------------------------------- keys and units
@dataclass(frozen=True)
class EntryKey:
    """Identity of one stored entry: model x probe set x attribution method x probe size."""

    model_key: str
    probe_hash: str
    method: str
    probe_size: int

    def __post_init__(self):
        _check_safe_key(self.model_key, "model_key")
        _check_safe_key(self.probe_hash, "probe_hash")
        if not isinstance(self.method, str) or not self.method.strip():
            raise InputError(f"method: expected a non-empty str, got {self.method!r}")
        _check_int(self.probe_size, "probe_size", minimum=1)
        # numpy integers would break JSON and SQLite binding: keep plain ints.
        object.__setattr__(self, "probe_size", int(self.probe_size))


@dataclass(frozen=True)
class WorkUnit:
    """One model x one shard of the probe set: the independent, serialisable unit of work
    (a distributed executor such as Ray can ship these to other processes/nodes)."""

    key: EntryKey
    model_name: str
    shard: int
    start: int
    stop: int

    def __post_init__(self):
        if not isinstance(self.key, EntryKey):
            raise InputError(f"key: expected an EntryKey, got {type(self.key).__name__}")
        if not isinstance(self.model_name, str):
            raise InputError(f"model_name: expected a str, got {self.model_name!r}")
        _check_int(self.shard, "shard", minimum=0)
        _check_int(self.start, "start", minimum=0)
        _check_int(self.stop, "stop", minimum=self.start + 1)
        for field in ("shard", "start", "stop"):
            object.__setattr__(self, field, int(getattr(self, field)))

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (plain str / int values only)."""
        return {
            "key": asdict(self.key),
            "model_name": self.model_name,
            "shard": self.shard,
            "start": self.start,
            "stop": self.stop,
        }

    @classmethod
    def from_dict(cls, d) -> "WorkUnit":
        """Rebuild a unit from ``to_dict``'s output; a missing field raises InputError naming it."""
        if not isinstance(d, dict):
            raise InputError(f"work unit: expected a dict, got {type(d).__name__}")
        fields = ("key", "model_name", "shard", "start", "stop")
        missing = [f for f in fields if f not in d]
        key = d.get("key")
        if not missing and isinstance(key, dict):
            missing = [f"key.{f}" for f in ("model_key", "probe_hash", "method", "probe_size") if f not in key]
        if missing:
            raise InputError(f"work unit: field {missing[0]!r} is missing")
        if not isinstance(key, dict):
            raise InputError(f"work unit: field 'key' must be a dict, got {type(key).__name__}")
        return cls(
            key=EntryKey(key["model_key"], key["probe_hash"], key["method"], key["probe_size"]),
            model_name=d["model_name"],
            shard=d["shard"],
            start=d["start"],
            stop=d["stop"],
        )


def plan_units(key: EntryKey, model_name: str, n_images: int, shard_size: int = 256) -> list[WorkUnit]:
    """Split images 0 .. n_images - 1 into consecutive shards of ``shard_size`` (the last may be shorter)."""
    _check_int(n_images, "n_images", minimum=1)
    _check_int(shard_size, "shard_size", minimum=1)
    return [
        WorkUnit(key, model_name, shard, start, min(start + shard_size, n_images))
        for shard, start in enumerate(range(0, n_images, shard_size))
    ]


@dataclass(frozen=True)
class ShardInfo:
    """What ``MapStore.write`` stored: degenerate-row counts, the absolute file path, its sha256."""

    n_zero: int
    n_nonfinite: int
    path: str
    checksum: str


# ---------------------------------------------------------------------- the store
class MapStore:
    """Attribution maps and cached affinities on disk (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root).expanduser().absolute()
        self.arrays = self.root / "arrays"
        self.manifest = self.root / "manifest.sqlite"
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store root {str(self.root)!r} exists and is not a folder")
        self.arrays.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one connection, possibly shared by threads
        self._conn = _open_manifest(self.manifest)
        # Shard files whose checksum this process has verified, by relative path, with the
        # (inode, size, mtime) they had then. A streamed affinity reads each shard several
        # times (once per chunk it overlaps); hashing it every time cost most of `add`.
        # A rewritten file (atomic rename: new inode; in place: new mtime) is verified again.
        self._verified: dict[str, tuple[int, int, int]] = {}

    def close(self) -> None:
        """Close the manifest connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "MapStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MapStore({str(self.root)!r})"

    # ------------------------------------------------------------------ models
    def register_model(self, model_key: str, name: str, spec: dict) -> None:
        """Insert or update a model; it becomes the latest key registered under ``name``."""
        _check_safe_key(model_key, "model_key")
        if not isinstance(name, str) or not name:
            raise InputError(f"name: expected a non-empty str for model {model_key!r}, got {name!r}")
        try:
            spec_json = json.dumps(spec, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InputError(f"spec of model {name!r} is not JSON-serialisable: {exc}") from exc
        with self._transaction() as cur:
            (seq,) = cur.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM models").fetchone()
            cur.execute(
                "INSERT INTO models (model_key, name, spec, seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(model_key) DO UPDATE SET name = excluded.name, "
                "spec = excluded.spec, seq = excluded.seq",
                (model_key, name, spec_json, seq),
            )

    def models(self) -> list[dict]:
        """Registered models, oldest registration first: ``[{"model_key", "name", "spec"}]``."""
        rows = self._query("SELECT model_key, name, spec FROM models ORDER BY seq")
        return [{"model_key": k, "name": n, "spec": json.loads(s)} for k, n, s in rows]

    def model_key(self, name: str) -> str | None:
        """The key most recently registered under ``name``, or None."""
        rows = self._query("SELECT model_key FROM models WHERE name = ? ORDER BY seq DESC LIMIT 1", (name,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ shards
    def write(self, unit: WorkUnit, maps) -> ShardInfo:
        """Normalise, store and register the maps of one work unit (replaces an older copy)."""
        rows = _flatten(maps, unit)
        normalised, n_zero, n_nonfinite = _normalise_rows(rows)
        key = unit.key
        self._check_feature_count(unit, normalised.shape[1])

        rel = self._shard_relpath(key, unit.shard)
        path = self.root / rel
        payload = _npy_bytes(normalised.astype(np.float16))
        checksum = hashlib.sha256(payload).hexdigest()
        _atomic_write(path, payload)

        with self._transaction() as cur:
            stale = self._overlapping_shards(cur, unit)
            sketch_paths = self._drop_sketches(cur, "model_key = ? AND probe_hash = ? AND method = ? AND probe_size = ?",
                                               _key_tuple(key))  # made from the maps being replaced
            cur.executemany(
                "DELETE FROM shards WHERE model_key = ? AND probe_hash = ? AND method = ? "
                "AND probe_size = ? AND shard = ?",
                [(*_key_tuple(key), shard) for shard, _ in stale],
            )
            cur.execute(
                "INSERT OR REPLACE INTO shards (model_key, probe_hash, method, probe_size, shard, "
                "start, stop, n_features, path, checksum, nbytes, n_zero, n_nonfinite, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *_key_tuple(key), unit.shard, unit.start, unit.stop, normalised.shape[1],
                    rel, checksum, len(payload), n_zero, n_nonfinite,
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                ),
            )
        # Files of shards that a write with another shard size superseded.
        self._delete_files([rel_path for _, rel_path in stale if rel_path != rel] + sketch_paths)
        return ShardInfo(n_zero=n_zero, n_nonfinite=n_nonfinite, path=str(path), checksum=checksum)

    def missing(self, units: Sequence[WorkUnit], verify: bool = True, progress: bool = False) -> list[WorkUnit]:
        """The units whose shard is not usable: never written, another range, file gone or corrupt.

        ``verify=False`` skips the sha256 check and only compares file sizes (faster).
        """
        absent = []
        for unit in tqdm(list(units), desc="checking store", unit="shard", disable=not progress):
            row = self._query(
                "SELECT start, stop, path, checksum, nbytes FROM shards WHERE model_key = ? "
                "AND probe_hash = ? AND method = ? AND probe_size = ? AND shard = ?",
                (*_key_tuple(unit.key), unit.shard),
            )
            if not row or not self._shard_ok(unit, row[0], verify):
                absent.append(unit)
        return absent

    def read(self, key: EntryKey, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start`` .. ``stop - 1`` of an entry as float32 (n, F), checksums verified."""
        shards = self._query(
            "SELECT start, stop, n_features, path, checksum FROM shards WHERE model_key = ? "
            "AND probe_hash = ? AND method = ? AND probe_size = ? ORDER BY start",
            _key_tuple(key),
        )
        if not shards:
            raise StoreError(f"no maps stored for {_describe(key)} in {str(self.manifest)!r}")
        stop = shards[-1][1] if stop is None else stop
        _check_int(start, "start", minimum=0)
        _check_int(stop, "stop", minimum=start)
        n_features = shards[0][2]
        out = np.empty((stop - start, n_features), dtype=np.float32)
        covered = start
        for s_start, s_stop, s_features, rel, checksum in shards:
            if s_stop <= start or s_start >= stop:
                continue  # only load the shards that overlap the request
            if s_start > covered:
                break
            data = self._load_shard(rel, checksum, (s_stop - s_start, s_features))
            lo, hi = max(start, s_start), min(stop, s_stop)
            out[lo - start:hi - start] = data[lo - s_start:hi - s_start]
            covered = max(covered, hi)
        if covered < stop:
            raise StoreError(
                f"rows {covered}..{stop - 1} of {_describe(key)} are not in the store "
                f"{str(self.root)!r}; recompute them"
            )
        return out

    def is_complete(self, key: EntryKey, n_images: int) -> bool:
        """Whether the manifest covers rows 0 .. n_images - 1 and every shard file exists.

        Checksums are not verified here (``read`` and ``missing`` do that).
        """
        _check_int(n_images, "n_images", minimum=1)
        shards = self._query(
            "SELECT start, stop, path FROM shards WHERE model_key = ? AND probe_hash = ? "
            "AND method = ? AND probe_size = ? ORDER BY start",
            _key_tuple(key),
        )
        covered = 0
        for s_start, s_stop, rel in shards:
            if s_start > covered or not (self.root / rel).is_file():
                return False
            covered = max(covered, s_stop)
        return covered >= n_images

    def health(self, key: EntryKey) -> dict:
        """``{"n_zero", "n_nonfinite"}``: degenerate rows summed over the entry's shards."""
        (n_zero, n_nonfinite), = self._query(
            "SELECT COALESCE(SUM(n_zero), 0), COALESCE(SUM(n_nonfinite), 0) FROM shards "
            "WHERE model_key = ? AND probe_hash = ? AND method = ? AND probe_size = ?",
            _key_tuple(key),
        )
        return {"n_zero": int(n_zero), "n_nonfinite": int(n_nonfinite)}

    # ------------------------------------------------------------------ removal
    def remove_entry(self, key: EntryKey) -> int:
        """Delete an entry's shards (rows and files) and the affinities computed from it."""
        where = "model_key = ? AND probe_hash = ? AND method = ? AND probe_size = ?"
        with self._transaction() as cur:
            paths = [r[0] for r in cur.execute(f"SELECT path FROM shards WHERE {where}", _key_tuple(key))]
            cur.execute(f"DELETE FROM shards WHERE {where}", _key_tuple(key))
            cur.execute(
                "DELETE FROM affinities WHERE probe_hash = ? AND method = ? AND probe_size = ? "
                "AND (model_a = ? OR model_b = ?)",
                (key.probe_hash, key.method, key.probe_size, key.model_key, key.model_key),
            )
            sketch_paths = self._drop_sketches(cur, where, _key_tuple(key))
        self._delete_files(paths + sketch_paths)
        return len(paths)

    def remove_model(self, model_key: str) -> int:
        """Delete every entry, file, cached affinity and the registration of a model."""
        _check_safe_key(model_key, "model_key")
        with self._transaction() as cur:
            paths = [r[0] for r in cur.execute("SELECT path FROM shards WHERE model_key = ?", (model_key,))]
            cur.execute("DELETE FROM shards WHERE model_key = ?", (model_key,))
            cur.execute("DELETE FROM affinities WHERE model_a = ? OR model_b = ?", (model_key, model_key))
            cur.execute("DELETE FROM models WHERE model_key = ?", (model_key,))
            sketch_paths = self._drop_sketches(cur, "model_key = ?", (model_key,))
        self._delete_files(paths + sketch_paths)
        return len(paths)

    # ------------------------------------------------------------------ sketches (see `modelspace.sketch`)
    def put_sketch(self, key: EntryKey, dim: int, seed: int, sketch: np.ndarray) -> None:
        """Keep an entry's (Np, dim) random-projection sketch beside its maps (replaced when they are)."""
        rel = self._shard_relpath(key, 0).rsplit("/", 1)[0] + f"/sketch_d{int(dim)}_s{int(seed)}.npy"
        payload = _npy_bytes(np.asarray(sketch, dtype=np.float32))
        _atomic_write(self.root / rel, payload)
        with self._transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO sketches (model_key, probe_hash, method, probe_size, dim, seed, path, "
                "checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*_key_tuple(key), int(dim), int(seed), rel, hashlib.sha256(payload).hexdigest()),
            )

    def get_sketch(self, key: EntryKey, dim: int, seed: int) -> np.ndarray | None:
        """The entry's stored sketch, or None when there is none or its file fails its checksum
        (the caller then recomputes it from the maps)."""
        rows = self._query(
            "SELECT path, checksum FROM sketches WHERE model_key = ? AND probe_hash = ? AND method = ? "
            "AND probe_size = ? AND dim = ? AND seed = ?",
            (*_key_tuple(key), int(dim), int(seed)),
        )
        if not rows:
            return None
        try:
            payload = (self.root / rows[0][0]).read_bytes()
        except OSError:
            return None
        if hashlib.sha256(payload).hexdigest() != rows[0][1]:
            return None
        return np.load(io.BytesIO(payload), allow_pickle=False)

    @staticmethod
    def _drop_sketches(cur, where: str, params: tuple) -> list[str]:
        """Delete sketch rows matching ``where`` inside a transaction; returns their file paths."""
        paths = [r[0] for r in cur.execute(f"SELECT path FROM sketches WHERE {where}", params)]
        cur.execute(f"DELETE FROM sketches WHERE {where}", params)
        return paths

    # ------------------------------------------------------------------ claims (see the module docstring)
    def claim(self, units: Sequence[WorkUnit], owner: str) -> bool:
        """Claim all ``units`` for ``owner`` in one transaction; False (nothing claimed) when a live
        process holds any of them. Claims of dead processes are taken over."""
        now = time.time()
        with self._transaction() as cur:
            for unit in units:
                held = cur.execute(
                    "SELECT owner, pid, host, since FROM claims WHERE model_key = ? AND probe_hash = ? "
                    "AND method = ? AND probe_size = ? AND shard = ?",
                    (*_key_tuple(unit.key), unit.shard),
                ).fetchone()
                if held and held[0] != owner and _claim_alive(*held[1:], now=now):
                    return False
            cur.executemany(
                "INSERT OR REPLACE INTO claims (model_key, probe_hash, method, probe_size, shard, owner, pid, "
                "host, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*_key_tuple(u.key), u.shard, owner, os.getpid(), _HOST, now) for u in units],
            )
        return True

    def release(self, units: Sequence[WorkUnit], owner: str) -> None:
        """Drop ``owner``'s claims on ``units`` (claims taken over by another owner are left alone)."""
        with self._transaction() as cur:
            cur.executemany(
                "DELETE FROM claims WHERE model_key = ? AND probe_hash = ? AND method = ? AND probe_size = ? "
                "AND shard = ? AND owner = ?",
                [(*_key_tuple(u.key), u.shard, owner) for u in units],
            )

    def clear_stale_claims(self) -> int:
        """Delete the claims of dead processes (left by a crash after its last write); returns how many."""
        now = time.time()
        with self._transaction() as cur:
            rows = cur.execute("SELECT rowid, pid, host, since FROM claims").fetchall()
            stale = [(rowid,) for rowid, *held in rows if not _claim_alive(*held, now=now)]
            cur.executemany("DELETE FROM claims WHERE rowid = ?", stale)
        return len(stale)

    def claims(self) -> list[dict]:
        """Current claims (``{"model_key", "method", "shard", "pid", "host", "since"}``), for inspection."""
        rows = self._query("SELECT model_key, method, shard, pid, host, since FROM claims ORDER BY since")
        return [dict(zip(("model_key", "method", "shard", "pid", "host", "since"), r)) for r in rows]

    def discard_partial(self, units: Sequence[WorkUnit]) -> int:
        """Delete temporary files left by killed writes of these units; call only while holding their
        claims (otherwise a live writer's temp file could be removed). Returns the number deleted."""
        removed = 0
        for unit in units:
            path = self.root / self._shard_relpath(unit.key, unit.shard)
            for tmp in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
                try:
                    tmp.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # ------------------------------------------------------------------ affinities
    def get_affinity(self, a: EntryKey, b: EntryKey) -> float | None:
        """The cached affinity of an unordered pair of entries, or None."""
        rows = self._query(
            "SELECT value FROM affinities WHERE probe_hash = ? AND method = ? AND probe_size = ? "
            "AND model_a = ? AND model_b = ?",
            _pair_tuple(a, b),
        )
        return float(rows[0][0]) if rows else None

    def affinities_among(self, keys: Sequence[EntryKey]) -> dict[tuple[int, int], float]:
        """Every cached affinity among ``keys`` in one query: {(i, j): value} with i < j."""
        if not keys:
            return {}
        first = keys[0]
        scope = (first.probe_hash, first.method, first.probe_size)
        if any((k.probe_hash, k.method, k.probe_size) != scope for k in keys):
            raise InputError("keys: affinities are only cached among entries of one probe set, method and size")
        index = {k.model_key: i for i, k in enumerate(keys)}
        rows = self._query(
            "SELECT model_a, model_b, value FROM affinities WHERE probe_hash = ? AND method = ? AND probe_size = ?",
            scope,
        )
        found = {}
        for a, b, value in rows:
            if a in index and b in index and a != b:
                i, j = sorted((index[a], index[b]))
                found[(i, j)] = float(value)
        return found

    def put_affinities(self, pairs: Iterable[tuple[EntryKey, EntryKey, float]]) -> None:
        """Cache many pair affinities in one transaction (finite values only)."""
        rows = []
        for a, b, value in pairs:
            value = float(value)
            if not math.isfinite(value):
                raise InputError(f"value: affinity of {a.model_key} and {b.model_key} is {value}, not finite")
            rows.append((*_pair_tuple(a, b), value))
        with self._transaction() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO affinities (probe_hash, method, probe_size, model_a, model_b, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    # ------------------------------------------------------------------ internals
    def _transaction(self):
        """A context manager running one short BEGIN IMMEDIATE ... COMMIT transaction."""
        return _Transaction(self._conn, self._lock, self.manifest)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one read-only statement and return all rows."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"manifest {str(self.manifest)!r}: {exc}") from exc

    def _shard_relpath(self, key: EntryKey, shard: int) -> str:
        """The shard's path relative to the store root, POSIX form."""
        folder = f"{key.probe_hash[:16]}_{key.probe_size}"
        return (
            f"arrays/{key.model_key[:2]}/{key.model_key}/{_method_slug(key.method)}/"
            f"{folder}/shard_{shard:05d}.npy"
        )

    def _check_feature_count(self, unit: WorkUnit, n_features: int) -> None:
        """Refuse maps whose size differs from the entry's other shards."""
        rows = self._query(
            "SELECT DISTINCT n_features FROM shards WHERE model_key = ? AND probe_hash = ? "
            "AND method = ? AND probe_size = ? AND shard != ?",
            (*_key_tuple(unit.key), unit.shard),
        )
        other = [r[0] for r in rows if r[0] != n_features]
        if other:
            raise StoreError(
                f"model {unit.model_name!r}: shard {unit.shard} has {n_features} values per map "
                f"but the stored shards of this entry have {other[0]}"
            )

    @staticmethod
    def _overlapping_shards(cur, unit: WorkUnit) -> list[tuple[int, str]]:
        """Other shards of the entry whose rows overlap the unit's (left by another shard size)."""
        return cur.execute(
            "SELECT shard, path FROM shards WHERE model_key = ? AND probe_hash = ? AND method = ? "
            "AND probe_size = ? AND shard != ? AND start < ? AND stop > ?",
            (*_key_tuple(unit.key), unit.shard, unit.stop, unit.start),
        ).fetchall()

    def _shard_ok(self, unit: WorkUnit, row: tuple, verify: bool) -> bool:
        """Whether a manifest row matches the unit's range and its file is intact."""
        start, stop, rel, checksum, nbytes = row
        path = self.root / rel
        if (start, stop) != (unit.start, unit.stop):
            return False
        try:
            if path.stat().st_size != nbytes:
                return False
            return not verify or _file_sha256(path) == checksum
        except OSError:
            return False

    def _load_shard(self, rel: str, checksum: str, shape: tuple[int, int]) -> np.ndarray:
        """One shard file as a float16 array, its checksum and shape verified.

        The first read in this process hashes the whole file; later reads of the same,
        unchanged file map it into memory instead, so only the rows asked for are touched.
        """
        path = self.root / rel
        try:
            stamp = _file_stamp(path)
            if self._verified.get(rel) == stamp:
                data = np.load(path, mmap_mode="r", allow_pickle=False)
                if data.shape == shape:
                    return data
            payload = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"shard file {str(path)!r} cannot be read ({exc}); recompute it") from exc
        if hashlib.sha256(payload).hexdigest() != checksum:
            raise StoreError(f"shard file {str(path)!r} is corrupt (checksum mismatch); recompute it")
        try:
            data = np.load(io.BytesIO(payload), allow_pickle=False)
        except Exception as exc:
            raise StoreError(f"shard file {str(path)!r} is not a valid .npy file: {exc}") from exc
        if data.shape != shape:
            raise StoreError(f"shard file {str(path)!r} has shape {data.shape}, the manifest says {shape}")
        if time.time_ns() - stamp[2] > _STAMP_GRANULARITY_NS:
            self._verified[rel] = stamp  # a file this fresh could change again within one mtime tick
        return data

    def _delete_files(self, rel_paths: Iterable[str]) -> None:
        """Delete shard files and any folders left empty (best effort: files may already be gone)."""
        for rel in rel_paths:
            path = self.root / rel
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"shard file {str(path)!r} cannot be deleted: {exc}") from exc
            _prune_empty_dirs(path.parent, self.arrays)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the store's lock."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, manifest: Path):
        self._conn, self._lock, self._manifest = conn, lock, manifest

    def __enter__(self) -> sqlite3.Cursor:
        self._lock.acquire()
        try:
            # IMMEDIATE takes the write lock up front, so the busy timeout handles contention.
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"manifest {str(self._manifest)!r} is locked or unreadable: {exc}") from exc
        return self._conn.cursor()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._conn.execute("COMMIT")
            else:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            if exc_type is None:
                raise StoreError(f"manifest {str(self._manifest)!r}: commit failed: {err}") from err
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"manifest {str(self._manifest)!r}: {exc}") from exc


# ---------------------------------------------------------------------- helpers
def _open_manifest(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the manifest in WAL mode with the schema in place."""
    try:
        # isolation_level=None: transactions are explicit (see _Transaction), never implicit.
        conn = sqlite3.connect(
            str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StoreError(f"manifest {str(path)!r} cannot be opened: {exc}") from exc
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
        raise StoreError(f"manifest {str(path)!r} cannot be opened: {exc}") from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _claim_alive(pid: int, host: str, since: float, now: float) -> bool:
    """Whether a claim's process may still be working on it (see CLAIM_STALE_S)."""
    if now - since > CLAIM_STALE_S:
        return False
    if host != _HOST:
        return True  # cannot check another machine's pids: trust the claim until it is stale
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:  # a killed but not yet reaped child still answers signal 0: look at its state (Linux)
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _check_safe_key(value, name: str) -> None:
    """Raise InputError unless ``value`` is a str usable as a folder name."""
    if not isinstance(value, str) or not _SAFE_KEY.match(value):
        raise InputError(
            f"{name}: expected letters, digits, '_', '.' or '-' (starting with a letter or digit), "
            f"got {value!r}"
        )


def _check_int(value, name: str, minimum: int) -> None:
    """Raise InputError unless ``value`` is an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _key_tuple(key: EntryKey) -> tuple:
    """The EntryKey fields in manifest column order."""
    return (key.model_key, key.probe_hash, key.method, key.probe_size)


def _pair_tuple(a: EntryKey, b: EntryKey) -> tuple:
    """(probe_hash, method, probe_size, model_a, model_b) of an unordered pair, model_a <= model_b."""
    for field in ("probe_hash", "method", "probe_size"):
        if getattr(a, field) != getattr(b, field):
            raise InputError(
                f"{field}: an affinity pairs entries of one probe set, method and size; "
                f"got {getattr(a, field)!r} and {getattr(b, field)!r}"
            )
    low, high = sorted((a.model_key, b.model_key))
    return (a.probe_hash, a.method, a.probe_size, low, high)


def _describe(key: EntryKey) -> str:
    """A short human description of an entry for error messages."""
    return (
        f"model {key.model_key!r} (method {key.method!r}, probe {key.probe_hash[:12]}, "
        f"size {key.probe_size})"
    )


def _method_slug(method: str) -> str:
    """A filesystem-safe folder name for a method id; the hash suffix keeps distinct ids apart."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", method).strip("._-")[:48] or "method"
    return f"{readable}-{hashlib.sha256(method.encode('utf-8')).hexdigest()[:8]}"


def _flatten(maps, unit: WorkUnit) -> np.ndarray:
    """The maps as a real-valued (B, F) numpy array, B checked against the unit."""
    if isinstance(maps, torch.Tensor):
        tensor = maps.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.to(torch.float32)  # numpy has no bfloat16
        maps = tensor.numpy()
    arr = np.asarray(maps)
    expected = unit.stop - unit.start
    if arr.dtype.kind not in "fiu":
        raise StoreError(f"model {unit.model_name!r}: maps have dtype {arr.dtype}, expected real numbers")
    if arr.ndim < 2 or arr.shape[0] != expected:
        raise StoreError(
            f"model {unit.model_name!r}: shard {unit.shard} covers {expected} images "
            f"({unit.start}..{unit.stop - 1}) but the maps have shape {arr.shape}"
        )
    rows = arr.reshape(expected, -1)
    if rows.shape[1] == 0:
        raise StoreError(f"model {unit.model_name!r}: maps of shape {arr.shape} hold no values")
    return rows


def _normalise_rows(rows: np.ndarray) -> tuple[np.ndarray, int, int]:
    """L2-normalise each row in float64; zero and non-finite rows become zeros and are counted."""
    x = rows.astype(np.float64)
    finite = np.isfinite(x).all(axis=1)
    x[~finite] = 0.0
    # Dividing by the row's peak first keeps the norm free of underflow and overflow.
    peak = np.abs(x).max(axis=1)
    nonzero = peak > 0
    x[nonzero] /= peak[nonzero, None]
    norm = np.linalg.norm(x, axis=1)
    x[nonzero] /= norm[nonzero, None]
    n_nonfinite = int((~finite).sum())
    n_zero = int((finite & ~nonzero).sum())
    return x, n_zero, n_nonfinite


def _npy_bytes(array: np.ndarray) -> bytes:
    """The .npy serialisation of an array (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StoreError(f"shard file {str(path)!r} cannot be written: {exc}") from exc
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename on POSIX; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_stamp(path: Path) -> tuple[int, int, int]:
    """What changes when a file is replaced or rewritten: inode, size, modification time."""
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _prune_empty_dirs(folder: Path, stop_at: Path) -> None:
    """Remove ``folder`` and its parents while empty, never ``stop_at`` or above."""
    stop_at = stop_at.resolve()
    folder = folder.resolve()
    while folder != stop_at and stop_at in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty, or another process is writing into it
        folder = folder.parent
