"""The embedded map store: a SQLite manifest plus one ``.npy`` file per shard, no server.

Layout under ``root``::

    manifest.sqlite                                   see `manifest`
    arrays/<mk[:2]>/<mk>/<method folder>/<probe_hash[:16]>_<size>/shard_<shard:05d>.npy
    arrays/<mk[:2]>/<mk>/<method folder>/<probe_hash[:16]>_<size>/shard_<shard:05d>.json

``mk`` is the model key; the method folder is `keys.method_folder` of the method key. Each shard
file holds float16 (B, F) rows: the attribution maps flattened and L2-normalised (rows that were
all-zero or non-finite are stored as zeros and counted).

Every stored file is bound to its identity: its ``.json`` sidecar holds the identity
(`keys.unit_identity`: model key, method, probe hash and size, and for a shard its number, image
range, values per map and counts of zero and non-finite maps), the file's sha256 and the model's
registration (name, spec), and its manifest row keeps that sha256 and a checksum over both
(`keys.bound_checksum`). A row is used only when its path is the one its identity names, its fields
match its checksum and its file has that size and sha256; anything else (a file missing, truncated
or changed, a row naming another unit's file, an edited count) is named in one warning per file and
computed again, so a model fails only on what its maps hold. Files are written atomically, the
sidecar after its file and the row last. A path read from the manifest is used only if it resolves
(through any ``..`` and symbolic links) to a file inside ``arrays/``: an edited row never makes the
store read or delete a file elsewhere. Rows of a store written before files carried their identity
(schema version 3: the checksum is the file's sha256) are used when their path is their identity's
and their file checks out (a shard's maps also their shape and count of all-zero maps), and are then
signed as above and given their sidecar.

A manifest that SQLite finds damaged is refused (see `manifest`); `MapStore.rebuild` (``modelspace
rebuild``) moves it aside, kept, and rebuilds the models' registrations and the rows of shards,
sketches and prepared forms from the files' sidecars, verifying each file; cached affinities,
failures, layouts and claims start empty. A file that does not verify is named and left in place
(its unit is computed again when needed, over it).

An entry's shard size is fixed by the first `plan` of it, in any process. The store also caches pair
affinities (each row with a checksum over its fields: a row that fails it is recomputed) and
random-projection sketches (`similarity.sketch`), both dropped when the maps they came from are
replaced; keeps each model's encoder activations in the prepared form of each baseline
(`put_prepared`: an entry whose method part names the baseline, one ``.npz`` beside where its maps
would be), so that a rerun runs no forward pass for them; and remembers entries that failed for a
deterministic reason (`put_failure`), and zoo entries whose model failed to load for one
(`put_load_failure`), so that reruns need not meet the same error again.

Crash safety: a shard file is complete before it is renamed into place, and its manifest row
(with the file's sha256) is committed after the rename, so a process killed at any moment
leaves either no row (the unit is recomputed) or a row whose file checks out. Temporary files
of a killed write are never read, and are deleted by the next process that claims that unit.

Removal while another process computes: `remove_model` deletes a model's rows (its registration
included) in one transaction, waits a while for the units other processes hold of it (`claims`),
then deletes its folder ``arrays/<mk[:2]>/<mk>/``, every file in it. A process that registered the
model checks, inside the transaction of each claim and of each row it writes (shard, layout,
prepared form, sketch, failure), that the registration is still there: otherwise it stores
nothing, deletes the file it just wrote and raises `ModelRemovedError`, so no row or file of the
removed model outlives the removal. `orphans` finds rows and folders of keys no model is registered
under (left by a process without these checks, or by an edited manifest), and `remove_orphans`
deletes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from ...progress import progress as progress_bar

from ...errors import InputError, ModelRemovedError, StorageError, StoreError, check_int
from .claims import CLAIM_STALE_S, HEARTBEAT_S, Claims, live_claims
from .files import (atomic_write, file_sha256, file_stamp, is_partial_write, npy_bytes, npz_bytes, partial_writes,
                    prune_empty_dirs, sha256)
from .keys import (EntryKey, WorkUnit, bound_checksum, check_safe_key, identity_key, is_safe_key, method_folder,
                   plan_units, unit_identity)
from .manifest import ENTRY, Manifest, key_tuple, pair_tuple, read_only_reason

# Filesystems stamp modification times in coarse ticks (a few ms on ext4, 2 s on FAT): a file
# modified less than this before it was verified is verified again on every read.
_STAMP_GRANULARITY_NS = 2_000_000_000

#: How long `remove_model` waits for the units of the model that other processes are computing: they
#: store nothing of it once it is removed, and delete the file of their unit themselves if it lasts longer.
REMOVE_WAIT_S = HEARTBEAT_S
_REMOVE_POLL_S = 0.2
#: Tables whose rows belong to one model key (``affinities`` name two, ``models`` registers it).
_KEYED_TABLES = ("shards", "prepared", "sketches", "layouts", "failures", "claims")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardInfo:
    """What ``MapStore.write`` stored.

    Attributes
    ----------
    n_zero : int
        Maps that were all zero (stored as zeros).
    n_nonfinite : int
        Maps holding NaN or infinite values (stored as zeros).
    path : str
        The shard file's absolute path.
    checksum : str
        The checksum its manifest row keeps, over the unit's identity and the file's sha256
        (`keys.bound_checksum`).
    """

    n_zero: int
    n_nonfinite: int
    path: str
    checksum: str


# ---------------------------------------------------------------------- the store
class MapStore:
    """Attribution maps and cached affinities on disk (see the module docstring).

    Parameters
    ----------
    root : str or Path
        The store folder.
    create : bool, default True
        Make the folder and an empty manifest when there is none (the default, for commands that
        compute); False refuses a path that holds no store with an `InputError` naming it (for
        commands that only read or delete, where a mistyped path must not become a new store).
    writes : bool, default True
        False for a caller that only reads (`modelspace models`): a store this process cannot write
        is opened read-only, with a warning, instead of refused (see `manifest`), and nothing is made.

    Raises
    ------
    StoreError
        ``root`` exists and is not a folder, or the manifest's schema is newer than this modelspace reads.
    InputError
        ``create=False`` and ``root`` holds no store.
    StorageError
        The folder cannot be created, or the manifest cannot be opened (damaged, read-only with
        ``writes=True``; see `manifest`).
    """

    def __init__(self, root, create: bool = True, writes: bool = True):
        self.root = Path(root).expanduser().absolute()
        self.arrays = self.root / "arrays"
        self.manifest = self.root / "manifest.sqlite"
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store root {str(self.root)!r} exists and is not a folder")
        if not create and not self.manifest.is_file():
            # A mistyped path must not become a new, empty store that then lists "(no models)".
            what = "does not exist" if not self.root.exists() else "is not a map store (it has no manifest.sqlite)"
            raise InputError(f"store {str(root)!r} {what}")
        try:
            if writes:
                self.arrays.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"store folder {str(self.arrays)!r} cannot be created: {exc}") from exc
        self.db = Manifest(self.manifest, writes=writes)
        if self.db.read_only:
            _log.warning("store %r is read-only: this user cannot write %s; it is opened for reading only, nothing "
                         "is written", str(self.root), read_only_reason(self.manifest))
        # Models this store registered, key -> name: rows of one whose registration is gone (removed by
        # another process meanwhile) are not written (`_check_registered`).
        self._registered: dict[str, str] = {}
        self.claims_ = Claims(self.db, check=self._check_claimable)
        # Shard files whose sha256 this process has verified, by relative path, with the
        # (inode, size, mtime) they had then and that sha256. A streamed affinity reads each shard
        # several times (once per chunk it overlaps); hashing it on every read would dominate `add`.
        # A rewritten file (atomic rename: new inode; in place: new mtime) is verified again.
        self._verified: dict[str, tuple[tuple[int, int, int], str]] = {}
        # (model name, shard size asked, size stored) already logged by `plan`: one line per model.
        self._told: set[tuple[str, int, int]] = set()
        # (file, what was found) already logged as unusable: one warning per file, not one per look.
        self._told_unusable: set[tuple[str, str]] = set()

    def close(self) -> None:
        """Close the manifest connection."""
        self.db.close()

    def __enter__(self) -> "MapStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MapStore({str(self.root)!r})"

    # ------------------------------------------------------------------ rebuilding the manifest
    @classmethod
    def rebuild(cls, root) -> dict:
        """Move a store's manifest aside, kept, and make a new one from the files under ``arrays/``.

        The old manifest, with its ``-wal`` and ``-shm`` files, is kept as
        ``manifest.sqlite.before-rebuild-<UTC time>``.

        Each shard, sketch and prepared form comes from its sidecar, once its path is the one its identity
        names and its file has the sidecar's sha256 (a shard's maps also their shape and count of all-zero
        maps); each model's registration from its newest sidecar. Cached affinities, failures,
        shard layouts and claims start empty. A file that does not verify is named in a warning and left in
        place; its unit is computed again when needed. Run it while no other process uses the store.

        Parameters
        ----------
        root : str or Path
            The store folder.

        Returns
        -------
        dict
            ``{"store", "kept", "models", "shards", "sketches", "prepared", "left_out"}``: the store, where the
            old manifest went (None when there was none), how many of each were rebuilt, and the files left out
            (``{"path", "reason"}``).

        Raises
        ------
        InputError
            ``root`` has no ``arrays/`` folder.
        """
        root = Path(root).expanduser().absolute()
        if not (root / "arrays").is_dir():
            raise InputError(f"store {str(root)!r} has no arrays folder: there are no files to rebuild a manifest from")
        kept = _move_aside(root / "manifest.sqlite")
        models, units, left_out = _rows_from_sidecars(root)
        with cls(root) as store, store.db.transaction() as cur:
            cur.executemany("INSERT INTO models (model_key, name, spec, seq) VALUES (?, ?, ?, ?)", models)
            for kind, rows in units.items():
                columns = (*_SHARD_COLUMNS, "created") if kind == "shard" else (*_key_columns(kind), "path", "checksum",
                                                                                "sha256")
                cur.executemany(f"INSERT INTO {_TABLES[kind]} ({', '.join(columns)}) "
                                f"VALUES ({', '.join('?' * len(columns))})", rows)
        for item in left_out:
            _log.warning("rebuild: %r is left out of the manifest (%s); it stays in place, its unit is computed "
                         "again when needed", item["path"], item["reason"])
        return {"store": str(root), "kept": kept, "models": len(models),
                **{_TABLES[kind]: len(rows) for kind, rows in units.items()}, "left_out": left_out}

    # ------------------------------------------------------------------ models
    def register_model(self, model_key: str, name: str, spec: dict) -> None:
        """Insert or update a model; it becomes the latest key registered under ``name``.

        Its files' sidecars keep the registration too, for `rebuild`.

        Parameters
        ----------
        model_key : str
            The model's key (`models.model_key`); a safe file-name component.
        name : str
            The model's name.
        spec : dict
            The model's resolved spec (`ModelSpec.to_dict`), JSON-serialisable.

        Raises
        ------
        InputError
            An unsafe key, an empty name, or a spec that is not JSON-serialisable.
        """
        check_safe_key(model_key, "model_key")
        if not isinstance(name, str) or not name:
            raise InputError(f"name: expected a non-empty str for model {model_key!r}, got {name!r}")
        try:
            spec_json = json.dumps(spec, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InputError(f"spec of model {name!r} is not JSON-serialisable: {exc}") from exc
        with self.db.transaction() as cur:
            (seq,) = cur.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM models").fetchone()
            cur.execute(
                "INSERT INTO models (model_key, name, spec, seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(model_key) DO UPDATE SET name = excluded.name, "
                "spec = excluded.spec, seq = excluded.seq",
                (model_key, name, spec_json, seq),
            )
        self._registered[model_key] = name

    def models(self) -> list[dict]:
        """Registered models, oldest registration first.

        Returns
        -------
        list of dict
            ``{"model_key", "name", "spec", "n_shards", "first_stored"}`` per model (``first_stored``: when
            its first shard was written, ISO time in UTC; None without shards).
        """
        rows = self.db.query(
            "SELECT m.model_key, m.name, m.spec, COUNT(s.path), MIN(s.created) FROM models m "
            "LEFT JOIN shards s ON s.model_key = m.model_key GROUP BY m.model_key ORDER BY m.seq")
        return [{"model_key": k, "name": n, "spec": json.loads(s), "n_shards": c, "first_stored": t}
                for k, n, s, c, t in rows]

    def match_models(self, query: str) -> list[dict]:
        """The registered models ``query`` names.

        Parameters
        ----------
        query : str
            A model key, a model name, or the start of a key.

        Returns
        -------
        list of dict
            `models` records: the one whose key it is, else every model registered under that name
            (several once a model's spec or weights changed), else those whose key starts with it. More
            than one means ``query`` is ambiguous; none, that nothing matches.
        """
        models = self.models()
        for match in ([m for m in models if m["model_key"] == query], [m for m in models if m["name"] == query],
                      [m for m in models if query and m["model_key"].startswith(query.lower())]):
            if match:
                return match
        return []

    def model_key(self, name: str) -> str | None:
        """The key most recently registered under ``name``.

        Parameters
        ----------
        name : str
            The model's name.

        Returns
        -------
        str or None
            The key, or None when no model has that name.
        """
        rows = self.db.query("SELECT model_key FROM models WHERE name = ? ORDER BY seq DESC LIMIT 1", (name,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ shards
    def write(self, unit: WorkUnit, maps) -> ShardInfo:
        """Normalise, store and register the maps of one work unit (replaces an older copy).

        Parameters
        ----------
        unit : WorkUnit
            The unit (entry, shard number, image range).
        maps : np.ndarray or torch.Tensor
            The unit's (B, ...) maps, B = ``unit.stop - unit.start``, real-valued.

        Returns
        -------
        ShardInfo
            What was stored.

        Raises
        ------
        StoreError
            Maps of the wrong dtype or count, or of another size than the entry's other shards.
        ModelRemovedError
            The model was removed from the store meanwhile (nothing is kept).
        StorageError
            The file or the manifest cannot be written.
        """
        return self.commit(unit, encode_shard(unit, maps))

    def commit(self, unit: WorkUnit, shard: "EncodedShard", in_place: bool = False) -> ShardInfo:
        """Register a shard encoded elsewhere (`encode_shard`, e.g. on a Ray worker).

        Its bytes are checked against its checksum, written atomically, then its manifest row is committed.

        Only the process that owns the manifest calls this (SQLite is never written from several
        machines). ``in_place=True`` takes a shard whose file a worker already wrote atomically at its
        place in the store (a filesystem every node sees): the file is read back and verified instead.

        Parameters
        ----------
        unit : WorkUnit
            The unit the shard holds.
        shard : EncodedShard
            The encoded maps (without payload when ``in_place``).
        in_place : bool, default False
            The file is already at its place in the store.

        Returns
        -------
        ShardInfo
            What was stored.

        Raises
        ------
        StoreError
            The bytes (or the file written in place) do not match the checksum, the file cannot be read,
            or the maps' size differs from the entry's other shards.
        ModelRemovedError
            The model was removed from the store meanwhile (the file just written is deleted).
        StorageError
            The file or the manifest cannot be written.
        """
        key = unit.key
        self._check_feature_count(unit, shard.n_features)
        identity = shard_identity(key, unit.shard, unit.start, unit.stop, shard.n_features, shard.n_zero,
                                  shard.n_nonfinite)
        rel = self.shard_relpath(key, unit.shard)
        path = self.root / rel
        if in_place:
            try:
                got = file_sha256(path)
            except OSError as exc:
                raise StoreError(f"shard file {str(path)!r} written by a worker cannot be read ({exc})") from exc
            nbytes = path.stat().st_size
        else:
            got, nbytes = sha256(shard.payload), len(shard.payload)
        if got != shard.checksum:
            raise StoreError(f"model {unit.model_name!r}: shard {unit.shard} does not match the checksum its worker "
                             "computed (corrupted on the way); it is not stored and will be recomputed")
        if not in_place:
            atomic_write(path, shard.payload)
        self._write_sidecar(rel, identity, got)
        checksum = bound_checksum(identity, got)

        with self._unless_removed(rel), self.db.transaction() as cur:
            self._check_registered(cur, key.model_key)
            stale = self._overlapping_shards(cur, unit)
            sketch_paths = self._drop_derived(cur, ENTRY, key_tuple(key), ["sketches"])  # made from the maps replaced
            cur.executemany(
                f"DELETE FROM shards WHERE {ENTRY} AND shard = ?",
                [(*key_tuple(key), number) for number, _ in stale],
            )
            cur.execute(
                f"INSERT OR REPLACE INTO shards ({', '.join(_SHARD_COLUMNS)}, created) "
                f"VALUES ({', '.join('?' * (len(_SHARD_COLUMNS) + 1))})",
                (
                    *key_tuple(key), unit.shard, unit.start, unit.stop, shard.n_features,
                    rel, checksum, nbytes, shard.n_zero, shard.n_nonfinite, got,
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                ),
            )
        # Files of shards that a write with another shard size superseded: their own, whatever their rows name.
        self._delete_files([self.shard_relpath(key, number) for number, _ in stale] + sketch_paths)
        return ShardInfo(n_zero=shard.n_zero, n_nonfinite=shard.n_nonfinite, path=str(path), checksum=checksum)

    def plan(self, key: EntryKey, model_name: str, n_images: int, shard_size: int) -> list[WorkUnit]:
        """The work units of an entry, in the entry's one shard layout.

        The first process to plan an entry fixes its shard size (an entry stored before layouts
        were recorded keeps the size of its shard 0); every later plan, in any process, uses that
        size whatever ``shard_size`` it asks for, so that runs with different ``--shard-size`` on
        one store share units instead of superseding each other's shards. A differing request is
        logged once per model. `remove_entry` and `remove_model` forget the layout.

        Parameters
        ----------
        key : EntryKey
            The entry.
        model_name : str
            The model's name, for the units and the log.
        n_images : int
            The number of probe images, >= 1.
        shard_size : int
            Images per shard asked for, >= 1 (the entry's fixed size wins).

        Returns
        -------
        list of WorkUnit
            The entry's units, in image order.

        Raises
        ------
        InputError
            ``n_images`` or ``shard_size`` is not an int >= 1.
        ModelRemovedError
            The model is no longer registered.
        """
        check_int(n_images, "n_images", minimum=1)
        check_int(shard_size, "shard_size", minimum=1)
        with self.db.transaction() as cur:
            self._check_registered(cur, key.model_key)
            row = cur.execute(f"SELECT shard_size FROM layouts WHERE {ENTRY}", key_tuple(key)).fetchone()
            if row is None:
                first = cur.execute(f"SELECT start, stop FROM shards WHERE {ENTRY} AND shard = 0",
                                    key_tuple(key)).fetchone()
                size = first[1] - first[0] if first and first[0] == 0 and first[1] > 0 else shard_size
                cur.execute(
                    "INSERT INTO layouts (model_key, probe_hash, method, probe_size, shard_size) VALUES (?, ?, ?, ?, ?)",
                    (*key_tuple(key), size),
                )
            else:
                size = row[0]
        if min(size, n_images) != min(shard_size, n_images) and (model_name, shard_size, size) not in self._told:
            self._told.add((model_name, shard_size, size))
            _log.warning("model %r: its maps in %r were planned in shards of %d images (by an earlier or concurrent "
                         "run); that layout is kept, shard size %d applies to maps not planned yet", model_name,
                         str(self.root), size, shard_size)
        return plan_units(key, model_name, n_images, size)

    def missing(self, units: Sequence[WorkUnit], verify: bool = True, progress: bool = False) -> list[WorkUnit]:
        """The units whose shard is not usable.

        Not usable: never written, written in another range, or its row or file not what its identity
        says (see the module docstring; one warning per such file names it).

        Parameters
        ----------
        units : sequence of WorkUnit
            The units to check.
        verify : bool, default True
            False skips the sha256 check of files already signed and only compares sizes (faster).
        progress : bool, default False
            Show a progress bar.

        Returns
        -------
        list of WorkUnit
            The units to compute, in the order given.
        """
        absent = []
        for unit in progress_bar(list(units), desc="checking store", unit="shard", disable=not progress):
            rows = self.db.query(f"SELECT {', '.join(_SHARD_COLUMNS)} FROM shards WHERE {ENTRY} AND shard = ?",
                                 (*key_tuple(unit.key), unit.shard))
            row = _ShardRow(*rows[0]) if rows else None
            if row is None or (row.start, row.stop) != (unit.start, unit.stop):
                absent.append(unit)  # never written, or written in another layout: the write replaces it
            elif (problem := self._shard_problem(row, verify)) is not None:
                self._tell_unusable(row.path, problem,
                                    f"model {unit.model_name!r}, {unit.key.method}, shard {unit.shard}")
                absent.append(unit)
        return absent

    def read(self, key: EntryKey, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start`` .. ``stop - 1`` of an entry as float32 (n, F), checksums verified.

        Parameters
        ----------
        key : EntryKey
            The entry.
        start : int, default 0
            The first row (probe image).
        stop : int, optional
            One past the last row; None: the end of the entry's last shard.

        Returns
        -------
        np.ndarray
            (stop - start, F) float32, each row an L2-normalised map (zeros for a degenerate one).

        Raises
        ------
        StoreError
            No maps are stored for the entry, some rows are not, or a shard file is missing or fails
            its check.
        InputError
            ``start`` or ``stop`` is not an int, or ``stop < start``.
        """
        shards = [_ShardRow(*row) for row in self.db.query(
            f"SELECT {', '.join(_SHARD_COLUMNS)} FROM shards WHERE {ENTRY} ORDER BY start", key_tuple(key))]
        if not shards:
            raise StoreError(f"no maps stored for {key.describe()} in {str(self.manifest)!r}")
        stop = shards[-1].stop if stop is None else stop
        check_int(start, "start", minimum=0)
        check_int(stop, "stop", minimum=start)
        n_features = shards[0].n_features
        out = np.empty((stop - start, n_features), dtype=np.float32)
        covered = start
        for row in shards:
            s_start, s_stop = row.start, row.stop
            if s_stop <= start or s_start >= stop:
                continue  # only load the shards that overlap the request
            if s_start > covered:
                break
            data = self._load_shard(row)
            lo, hi = max(start, s_start), min(stop, s_stop)
            out[lo - start:hi - start] = data[lo - s_start:hi - s_start]
            covered = max(covered, hi)
        if covered < stop:
            raise StoreError(
                f"rows {covered}..{stop - 1} of {key.describe()} are not in the store "
                f"{str(self.root)!r}; recompute them"
            )
        return out

    def is_complete(self, key: EntryKey, n_images: int) -> bool:
        """Whether the manifest covers rows 0 .. n_images - 1 and every shard file exists.

        Checksums are not verified here (``read`` and ``missing`` do that).

        Parameters
        ----------
        key : EntryKey
            The entry.
        n_images : int
            The number of probe images, >= 1.

        Returns
        -------
        bool
            True when every row is covered by a shard whose file is inside the store.

        Raises
        ------
        InputError
            ``n_images`` is not an int >= 1.
        """
        check_int(n_images, "n_images", minimum=1)
        shards = self.db.query(
            f"SELECT start, stop, path FROM shards WHERE {ENTRY} ORDER BY start",
            key_tuple(key),
        )
        covered = 0
        for s_start, s_stop, rel in shards:
            if s_start > covered or not self._inside(rel) or not (self.root / rel).is_file():
                return False
            covered = max(covered, s_stop)
        return covered >= n_images

    def health(self, key: EntryKey) -> dict:
        """Degenerate rows summed over the entry's shards whose rows match their checksum.

        Their counts are those of the maps their file holds; a row that does not match is named in a
        warning and counts nothing (`missing` gives its unit to compute again).

        Parameters
        ----------
        key : EntryKey
            The entry.

        Returns
        -------
        dict
            ``{"n_zero": int, "n_nonfinite": int}``.
        """
        n_zero = n_nonfinite = 0
        for row in self.db.query(f"SELECT {', '.join(_SHARD_COLUMNS)} FROM shards WHERE {ENTRY}", key_tuple(key)):
            row = _ShardRow(*row)
            problem = self._shard_problem(row, verify=False)
            if problem is None:
                n_zero, n_nonfinite = n_zero + row.n_zero, n_nonfinite + row.n_nonfinite
            else:
                self._tell_unusable(row.path, problem, f"{key.describe()}, shard {row.shard}")
        return {"n_zero": n_zero, "n_nonfinite": n_nonfinite}

    # ------------------------------------------------------------------ failures
    def put_failure(self, key: EntryKey, reason: str) -> None:
        """Remember that computing this entry failed for ``reason`` (replacing an older reason).

        Parameters
        ----------
        key : EntryKey
            The entry.
        reason : str
            The failure, as shown to the user on a rerun.

        Raises
        ------
        ModelRemovedError
            The model is no longer registered.
        """
        with self.db.transaction() as cur:
            self._check_registered(cur, key.model_key)
            cur.execute(
                "INSERT OR REPLACE INTO failures (model_key, probe_hash, method, probe_size, reason, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (*key_tuple(key), str(reason), datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )

    def failure(self, key: EntryKey) -> str | None:
        """The reason this entry failed before.

        Parameters
        ----------
        key : EntryKey
            The entry.

        Returns
        -------
        str or None
            The recorded reason, or None when no failure is recorded.
        """
        rows = self.db.query(f"SELECT reason FROM failures WHERE {ENTRY}", key_tuple(key))
        return rows[0][0] if rows else None

    def clear_failure(self, key: EntryKey) -> None:
        """Forget a recorded failure (the entry is to be, or has been, computed again).

        Parameters
        ----------
        key : EntryKey
            The entry.
        """
        with self.db.transaction() as cur:
            cur.execute(f"DELETE FROM failures WHERE {ENTRY}", key_tuple(key))

    def put_load_failure(self, spec_key: str, name: str, reason: str) -> None:
        """Remember that the model of a zoo entry failed to load for ``reason``.

        Parameters
        ----------
        spec_key : str
            The zoo entry's key (`models.spec_key`).
        name : str
            The model's name.
        reason : str
            The failure, as shown to the user on a rerun.
        """
        with self.db.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO load_failures (spec_key, name, reason, created) VALUES (?, ?, ?, ?)",
                        (spec_key, name, str(reason), datetime.now(timezone.utc).isoformat(timespec="seconds")))

    def load_failure(self, spec_key: str) -> str | None:
        """The reason the model of this zoo entry failed to load before.

        Parameters
        ----------
        spec_key : str
            The zoo entry's key (`models.spec_key`).

        Returns
        -------
        str or None
            The recorded reason, or None when none is recorded.
        """
        rows = self.db.query("SELECT reason FROM load_failures WHERE spec_key = ?", (spec_key,))
        return rows[0][0] if rows else None

    def clear_load_failure(self, spec_key: str) -> None:
        """Forget that the model of this zoo entry failed to load (it is to be loaded again).

        Parameters
        ----------
        spec_key : str
            The zoo entry's key (`models.spec_key`).
        """
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM load_failures WHERE spec_key = ?", (spec_key,))

    # ------------------------------------------------------------------ removal
    def remove_entry(self, key: EntryKey) -> int:
        """Delete an entry's shards (rows and files) and what was made from them.

        Also deleted: its shard layout, the affinities (its halves' included) and sketches computed from
        it, its prepared form and any failure. Only files in the entry's own folder are deleted.

        Parameters
        ----------
        key : EntryKey
            The entry.

        Returns
        -------
        int
            The number of shards deleted.
        """
        with self.db.transaction() as cur:
            paths = [r[0] for r in cur.execute(f"SELECT path FROM shards WHERE {ENTRY}", key_tuple(key))]
            cur.execute(f"DELETE FROM shards WHERE {ENTRY}", key_tuple(key))
            cur.execute(f"DELETE FROM failures WHERE {ENTRY}", key_tuple(key))
            cur.execute(f"DELETE FROM layouts WHERE {ENTRY}", key_tuple(key))
            # the entry's own pair affinities and those of its halves (`half_key`), made from the same maps
            cur.execute(
                "DELETE FROM affinities WHERE probe_hash = ? AND (method = ? OR substr(method, 1, ?) = ?) "
                "AND probe_size = ? AND (model_a = ? OR model_b = ?)",
                (key.probe_hash, key.method, len(key.method) + len(HALF_MARK), key.method + HALF_MARK, key.probe_size,
                 key.model_key, key.model_key),
            )
            derived = self._drop_derived(cur, ENTRY, key_tuple(key))
        # only files in the entry's own folder: an edited row may name another unit's file
        self._delete_files([p for p in paths + derived if p.startswith(_entry_folder(key))])
        return len(paths)

    def remove_model(self, model_key: str, wait: float | None = None) -> int:
        """Delete everything of a model, its registration included.

        That is every entry, file, shard layout, cached affinity, sketch, prepared form and recorded failure.

        The rows go in one transaction. Units of the model that other processes compute now are then
        waited for, up to ``wait`` seconds (`REMOVE_WAIT_S`), with one line naming each holder: they store
        nothing more of it (see the module docstring). Then its folder is deleted with every file in it,
        except a temporary file still being written, which its writer deletes.

        Parameters
        ----------
        model_key : str
            The model's key.
        wait : float, optional
            Seconds to wait for other processes' units; `REMOVE_WAIT_S` when None.

        Returns
        -------
        int
            The number of shards deleted.

        Raises
        ------
        InputError
            ``model_key`` is not a safe key.
        """
        check_safe_key(model_key, "model_key")
        with self.db.transaction() as cur:
            found = cur.execute("SELECT name FROM models WHERE model_key = ?", (model_key,)).fetchone()
            n_shards, _ = self._drop_key(cur, model_key)
        self._registered.pop(model_key, None)
        self._wait_for_holders(model_key, found[0] if found else model_key, REMOVE_WAIT_S if wait is None else wait)
        self._delete_model_folder(model_key)  # every file of the model lies there, whatever its rows named
        return n_shards

    def orphans(self) -> dict[str, dict[str, int]]:
        """Model keys that rows or folders of the store name but no model is registered under.

        Keys a live process claims a unit of are left out. A removal while a process without the checks
        of the module docstring computed the model leaves such rows and files; nothing lists or reads
        them. `remove_orphans` deletes them.

        Returns
        -------
        dict
            ``{model_key: {"rows": n, "files": n}}``: the rows and files naming each orphan key.
        """
        registered = {k for (k,) in self.db.query("SELECT model_key FROM models")}
        tables = {t for (t,) in self.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows: dict[str, int] = {}
        counts = [f"SELECT model_key, COUNT(*) FROM {table} GROUP BY model_key" for table in _KEYED_TABLES
                  if table in tables]  # a read-only store of an older schema may lack some
        counts += [f"SELECT {column}, COUNT(*) FROM affinities GROUP BY {column}" for column in ("model_a", "model_b")]
        for sql in counts:
            for key, n in self.db.query(sql):
                if key not in registered:
                    rows[key] = rows.get(key, 0) + n
        files = {key: n for key, n in self._model_folders().items() if key not in registered}
        if not rows and not files:
            return {}
        with self.db.cursor() as cur:
            live = {key for key in {*rows, *files} if live_claims(cur, key)}
        return {key: {"rows": rows.get(key, 0), "files": files.get(key, 0)}
                for key in sorted({*rows, *files} - live)}

    def remove_orphans(self) -> dict[str, dict[str, int]]:
        """Delete the rows and folders of `orphans`.

        A key registered or claimed again since it was found is skipped.

        Returns
        -------
        dict
            What was deleted, as `orphans` gives it.
        """
        removed = {}
        for key, found in self.orphans().items():
            with self.db.transaction() as cur:
                if cur.execute("SELECT 1 FROM models WHERE model_key = ?", (key,)).fetchone() or live_claims(cur, key):
                    continue  # registered or claimed again since it was found: not an orphan any more
                _, paths = self._drop_key(cur, key)
            removed[key] = {"rows": found["rows"], "files": self._delete_files(paths) + self._delete_model_folder(key)}
        return removed

    # ------------------------------------------------------------------ sketches (see `similarity.sketch`)
    def put_sketch(self, key: EntryKey, dim: int, seed: int, sketch: np.ndarray) -> None:
        """Keep an entry's (Np, dim) random-projection sketch beside its maps (replaced when they are).

        Parameters
        ----------
        key : EntryKey
            The entry the sketch was made from.
        dim : int
            The sketch's dimension.
        seed : int
            The seed of its random projection.
        sketch : np.ndarray
            The (Np, dim) sketch, stored as float32.

        Raises
        ------
        ModelRemovedError
            The model was removed from the store meanwhile (nothing is kept).
        """
        self._put_derived("sketch", key, npy_bytes(np.asarray(sketch, dtype=np.float32)), dim=dim, seed=seed)

    def get_sketch(self, key: EntryKey, dim: int, seed: int) -> np.ndarray | None:
        """The entry's stored sketch.

        Parameters
        ----------
        key : EntryKey
            The entry.
        dim : int
            The sketch's dimension.
        seed : int
            The seed of its random projection.

        Returns
        -------
        np.ndarray or None
            The (Np, dim) float32 sketch, or None when there is none or its file is missing or fails its
            checksum (the caller then recomputes it from the maps; a warning names the file).
        """
        payload = self._get_derived("sketch", key, "sketch", dim=dim, seed=seed)
        return None if payload is None else np.load(io.BytesIO(payload), allow_pickle=False)

    # ------------------------------------------------------------------ prepared baseline forms
    def put_prepared(self, key: EntryKey, arrays: dict[str, np.ndarray]) -> None:
        """Keep a model's encoder activations in a baseline's prepared form; replaces an older copy.

        Parameters
        ----------
        key : EntryKey
            An entry whose method part names the baseline.
        arrays : dict of str to np.ndarray
            The prepared form (`Similarity.pack`: named arrays), stored as one .npz.

        Raises
        ------
        ModelRemovedError
            The model was removed from the store meanwhile (nothing is kept).
        """
        self._put_derived("prepared", key, npz_bytes(arrays))

    def get_prepared(self, key: EntryKey) -> dict[str, np.ndarray] | None:
        """The arrays `put_prepared` kept.

        Parameters
        ----------
        key : EntryKey
            The entry `put_prepared` was given.

        Returns
        -------
        dict of str to np.ndarray or None
            The named arrays, or None when there are none or their file is missing, fails its checksum or
            is no .npz (the caller then computes them again; a warning names the file).
        """
        payload = self._get_derived("prepared", key, "prepared baseline form")
        if payload is None:
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable content is a damaged entry
            _log.warning("prepared baseline form %r cannot be read (%s); it is computed again",
                         str(self.root / unit_relpath(unit_identity("prepared", key))), exc)
            return None

    # ------------------------------------------------------------------ files derived from an entry
    # Sketches and prepared forms: one file each beside the entry's shards, bound to their identity as shards are.
    def _put_derived(self, kind: str, key: EntryKey, payload: bytes, **fields: int) -> None:
        identity = unit_identity(kind, key, **fields)
        rel, digest = unit_relpath(identity), sha256(payload)
        atomic_write(self.root / rel, payload)
        self._write_sidecar(rel, identity, digest)
        columns = [*_key_columns(kind), "path", "checksum", "sha256"]
        with self._unless_removed(rel), self.db.transaction() as cur:
            self._check_registered(cur, key.model_key)
            cur.execute(f"INSERT OR REPLACE INTO {_TABLES[kind]} ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})",
                        (*(identity[c] for c in _key_columns(kind)), rel, bound_checksum(identity, digest), digest))

    def _get_derived(self, kind: str, key: EntryKey, what: str, **fields: int) -> bytes | None:
        """The bytes of a derived file, or None when there is none or it is unusable (a warning names it)."""
        identity = unit_identity(kind, key, **fields)
        where = " AND ".join(f"{column} = ?" for column in _key_columns(kind))
        rows = self.db.query(f"SELECT path, checksum, sha256 FROM {_TABLES[kind]} WHERE {where}",
                             tuple(identity[c] for c in _key_columns(kind)))
        if not rows:
            return None
        rel, checksum, digest = rows[0]
        problem = self._row_problem(identity, rel, checksum, digest)
        if problem is None:
            try:
                payload = (self.root / rel).read_bytes()
            except FileNotFoundError:
                problem = "is missing"
            except OSError as exc:
                problem = f"cannot be read ({exc})"
            else:
                problem = self._bytes_problem(identity, rel, checksum, digest, payload)
        if problem is not None:
            self._tell_unusable(rel, problem, what)
            return None
        return payload

    @staticmethod
    def _drop_derived(cur, where: str, params: tuple, tables: Sequence[str] = ("sketches", "prepared")) -> list[str]:
        """Delete the rows of derived files matching ``where`` inside a transaction; returns their file paths."""
        paths = []
        for table in tables:
            paths += [r[0] for r in cur.execute(f"SELECT path FROM {table} WHERE {where}", params)]
            cur.execute(f"DELETE FROM {table} WHERE {where}", params)
        return paths

    # ------------------------------------------------------------------ a model's rows and folder
    def _drop_key(self, cur, model_key: str) -> tuple[int, list[str]]:
        """Delete every row of a model key inside a transaction.

        Its registration and the claims of dead processes are included (live ones stay: their holders
        release them); returns the number of shards and the paths of the files the rows named.
        """
        params = (model_key,)
        paths = [r[0] for r in cur.execute("SELECT path FROM shards WHERE model_key = ?", params)]
        for table in ("shards", "failures", "layouts", "models"):
            cur.execute(f"DELETE FROM {table} WHERE model_key = ?", params)
        cur.execute("DELETE FROM affinities WHERE model_a = ? OR model_b = ?", (model_key, model_key))
        live = {(c["pid"], c["host"]) for c in live_claims(cur, model_key)}
        dead = [(rowid,) for rowid, pid, host in cur.execute("SELECT rowid, pid, host FROM claims WHERE model_key = ?",
                                                             params).fetchall() if (pid, host) not in live]
        cur.executemany("DELETE FROM claims WHERE rowid = ?", dead)
        return len(paths), paths + self._drop_derived(cur, "model_key = ?", params)

    def _check_registered(self, cur, model_key: str) -> None:
        """ModelRemovedError if this store registered the model and its registration is gone.

        Another process removed it; called inside the transaction that would write a row of it.
        """
        name = self._registered.get(model_key)
        if name is not None and cur.execute("SELECT 1 FROM models WHERE model_key = ?", (model_key,)).fetchone() is None:
            raise ModelRemovedError(f"model {name!r} was removed from the store {str(self.root)!r} while this run "
                                    "computed it (`modelspace remove` or `gc`, in another process): nothing more of "
                                    "it is computed or stored")

    def _check_claimable(self, cur, units: Sequence[WorkUnit]) -> None:
        """The claims' check (`Claims`): no unit of a model whose registration is gone is claimed."""
        for model_key in dict.fromkeys(u.key.model_key for u in units):
            self._check_registered(cur, model_key)

    @contextlib.contextmanager
    def _unless_removed(self, rel: str) -> Iterator[None]:
        """Delete the file ``rel`` when the transaction registering it finds the model removed.

        The file is deleted before `ModelRemovedError` goes on.
        """
        try:
            yield
        except ModelRemovedError:
            self._delete_files([rel])
            raise

    def _wait_for_holders(self, model_key: str, name: str, wait: float) -> None:
        """Wait up to ``wait`` seconds until no live process claims a unit of the model, naming each holder once."""
        deadline = time.monotonic() + wait
        told: set[tuple[int, str]] = set()
        while True:
            with self.db.cursor() as cur:
                held = live_claims(cur, model_key)
            if not held:
                return
            for claim in held:
                if (claim["pid"], claim["host"]) not in told:
                    told.add((claim["pid"], claim["host"]))
                    _log.warning("model %r is removed while pid %d on host %s computes a unit of it: that run "
                                 "stores nothing more of it; waiting up to %.0f s for it to finish the unit", name,
                                 claim["pid"], claim["host"], wait)
            if time.monotonic() >= deadline:
                _log.warning("model %r: pid %d on host %s still computes a unit of it; that run deletes the "
                             "unit's file itself when it finds the model removed", name, held[0]["pid"],
                             held[0]["host"])
                return
            time.sleep(_REMOVE_POLL_S)

    def _model_folder(self, model_key: str) -> Path:
        return self.arrays / model_key[:2] / model_key

    def _model_folders(self) -> dict[str, int]:
        """The model folders under ``arrays/`` (``<mk[:2]>/<mk>``), by model key, with how many files each holds."""
        found = {}
        groups = sorted(self.arrays.iterdir()) if self.arrays.is_dir() else []
        for group in (p for p in groups if p.is_dir() and not p.is_symlink()):
            for folder in sorted(group.iterdir()):
                if folder.is_dir() and folder.name[:2] == group.name and is_safe_key(folder.name):
                    found[folder.name] = sum(1 for p in folder.rglob("*") if not p.is_dir() and not _is_sidecar(p))
        return found

    def _delete_model_folder(self, model_key: str) -> int:
        """Delete ``arrays/<mk[:2]>/<mk>/`` with every file in it (whatever rows name them).

        A temporary file written less than `CLAIM_STALE_S` ago is kept: its writer renames or deletes it.
        Returns the number of files deleted, sidecars not counted.
        """
        folder = self._model_folder(model_key)
        if not folder.is_dir() or folder.resolve() != self.arrays.resolve() / model_key[:2] / model_key:
            return 0  # nothing there, or a symbolic link on the way, never followed: it may lead to other files
        deleted, now = 0, time.time()
        for parent, dirs, files in os.walk(folder, topdown=False):
            for name in files:
                path = Path(parent) / name
                try:
                    if is_partial_write(path) and now - path.lstat().st_mtime < CLAIM_STALE_S:
                        continue
                    path.unlink()
                    deleted += not _is_sidecar(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StorageError(f"store file {str(path)!r} cannot be deleted: {exc}") from exc
            for name in dirs:
                path = Path(parent) / name
                try:
                    if path.is_symlink():
                        path.unlink()
                    else:
                        path.rmdir()
                except OSError:
                    pass  # not empty: a file being written is left in it
        prune_empty_dirs(folder, self.arrays)
        return deleted

    # ------------------------------------------------------------------ claims (see `claims`)
    def claims(self) -> list[dict]:
        """Current claims, for inspection (`Claims.list`).

        Returns
        -------
        list of dict
            ``{"model_key", "method", "shard", "pid", "host", "since"}`` per claim, oldest first.
        """
        return self.claims_.list()

    def discard_partial(self, units: Sequence[WorkUnit]) -> int:
        """Delete temporary files left by killed writes of these units.

        Call only while holding their claims (otherwise a live writer's temp file could be removed).

        Parameters
        ----------
        units : sequence of WorkUnit
            The units whose shard and sidecar temporary files are deleted.

        Returns
        -------
        int
            The number of files deleted.
        """
        removed = 0
        for unit in units:
            rel = self.shard_relpath(unit.key, unit.shard)
            for tmp in partial_writes(self.root / rel) + partial_writes(self.root / sidecar_relpath(rel)):
                try:
                    tmp.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # ------------------------------------------------------------------ affinities
    def get_affinity(self, a: EntryKey, b: EntryKey) -> float | None:
        """The cached affinity of an unordered pair of entries.

        Parameters
        ----------
        a, b : EntryKey
            The two entries, of one probe set, method and size, in either order.

        Returns
        -------
        float or None
            The value, or None when none is cached or the row fails its checksum (then it is to be
            recomputed, and `put_affinities` replaces it).

        Raises
        ------
        InputError
            The entries differ in probe set, method or size.
        """
        pair = pair_tuple(a, b)
        rows = self.db.query(
            "SELECT value, checksum FROM affinities WHERE probe_hash = ? AND method = ? AND probe_size = ? "
            "AND model_a = ? AND model_b = ?",
            pair,
        )
        good = self._checked_affinities([(pair, value, checksum) for value, checksum in rows])
        return good[0] if good else None

    def affinities_among(self, keys: Sequence[EntryKey]) -> dict[tuple[int, int], float]:
        """Every cached affinity among ``keys`` in one query.

        Rows failing their checksum are left out (see `get_affinity`).

        Parameters
        ----------
        keys : sequence of EntryKey
            Entries of one probe set, method and size.

        Returns
        -------
        dict
            ``{(i, j): value}`` with i < j, indices into ``keys``.

        Raises
        ------
        InputError
            The keys differ in probe set, method or size.
        """
        if not keys:
            return {}
        first = keys[0]
        scope = (first.probe_hash, first.method, first.probe_size)
        if any((k.probe_hash, k.method, k.probe_size) != scope for k in keys):
            raise InputError("keys: affinities are only cached among entries of one probe set, method and size")
        index = {k.model_key: i for i, k in enumerate(keys)}
        rows = self.db.query(
            "SELECT model_a, model_b, value, checksum FROM affinities "
            "WHERE probe_hash = ? AND method = ? AND probe_size = ?",
            scope,
        )
        wanted = [(a, b, value, checksum) for a, b, value, checksum in rows if a in index and b in index and a != b]
        good = self._checked_affinities([((*scope, a, b), value, checksum) for a, b, value, checksum in wanted])
        found = {}
        for (a, b, value, _), ok in zip(wanted, good):
            if ok is not None:
                i, j = sorted((index[a], index[b]))
                found[(i, j)] = ok
        return found

    def put_affinities(self, pairs: Iterable[tuple[EntryKey, EntryKey, float]]) -> None:
        """Cache many pair affinities in one transaction, each with its checksum.

        Parameters
        ----------
        pairs : iterable of (EntryKey, EntryKey, float)
            The two entries (of one probe set, method and size) and their affinity.

        Raises
        ------
        InputError
            A value that is not finite, or a pair of entries of another probe set, method or size
            (nothing is cached).
        """
        rows = []
        for a, b, value in pairs:
            value = float(value)
            if not math.isfinite(value):
                raise InputError(f"value: affinity of {a.model_key} and {b.model_key} is {value}, not finite")
            pair = pair_tuple(a, b)
            rows.append((*pair, value, affinity_checksum(pair, value)))
        with self.db.transaction() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO affinities (probe_hash, method, probe_size, model_a, model_b, value, checksum) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _checked_affinities(self, rows: list[tuple[tuple, float, str | None]]) -> list[float | None]:
        """Each (pair, value, checksum) row's value, or None where the checksum is missing or wrong.

        One warning names the manifest and the number of rows ignored.
        """
        values = [float(value) if _affinity_ok(pair, value, checksum) else None for pair, value, checksum in rows]
        ignored = values.count(None)
        if ignored:
            _log.warning("manifest %r: %d cached affinity value(s) ignored and recomputed: checksum missing "
                         "(stored before values carried one) or wrong (the row was edited)", str(self.manifest), ignored)
        return values

    # ------------------------------------------------------------------ internals
    def shard_relpath(self, key: EntryKey, shard: int) -> str:
        """The shard's path relative to the store root, POSIX form (`shard_relpath`).

        Parameters
        ----------
        key : EntryKey
            The entry.
        shard : int
            The shard's number.

        Returns
        -------
        str
            The path.
        """
        return shard_relpath(key, shard)

    def _check_feature_count(self, unit: WorkUnit, n_features: int) -> None:
        """Refuse maps whose size differs from the entry's other shards."""
        rows = self.db.query(
            f"SELECT DISTINCT n_features FROM shards WHERE {ENTRY} AND shard != ?",
            (*key_tuple(unit.key), unit.shard),
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
            f"SELECT shard, path FROM shards WHERE {ENTRY} AND shard != ? AND start < ? AND stop > ?",
            (*key_tuple(unit.key), unit.shard, unit.stop, unit.start),
        ).fetchall()

    def _shard_problem(self, row: "_ShardRow", verify: bool) -> str | None:
        """What makes a shard row unusable, as a phrase after "file PATH" ("is missing", ...), or None.

        ``verify=False`` checks a signed row's file by its size only. A row written before files
        carried their identity is checked against its file's bytes, and signed when they match.
        """
        try:
            identity = row.identity()
        except InputError as exc:
            return f"has a manifest row that is not valid ({exc})"
        problem = self._row_problem(identity, row.path, row.checksum, row.sha256)
        if problem is not None:
            return problem
        path = self.root / row.path
        try:
            stamp = file_stamp(path)
            if stamp[1] != row.nbytes:
                return (f"is truncated ({stamp[1]} of {row.nbytes} bytes)" if stamp[1] < row.nbytes
                        else f"has {stamp[1]} bytes where its manifest row says {row.nbytes}")
            if row.sha256 is None:
                return self._bytes_problem(identity, row.path, row.checksum, None, path.read_bytes(), stamp)
            if verify and self._verified.get(row.path) != (stamp, row.sha256):
                if file_sha256(path) != row.sha256:
                    return "is damaged (checksum mismatch)"
                self._remember_verified(row.path, stamp, row.sha256)
        except FileNotFoundError:
            return "is missing"
        except OSError as exc:
            return f"cannot be read ({exc})"
        return None

    def _row_problem(self, identity: dict, rel: str, checksum: str, digest: str | None) -> str | None:
        """What makes a row unusable before its file is looked at; None when it names its own file.

        Unusable: a path outside the store or not its identity's, or fields that do not match its checksum.
        """
        if not self._inside(rel):
            return f"lies outside the store's arrays folder (it resolves to {str((self.root / str(rel)).resolve())!r})"
        if rel != unit_relpath(identity):
            return "is bound to another unit: the manifest row names another unit's file"
        if digest is not None and checksum != bound_checksum(identity, digest):
            return "has a manifest row that does not match its checksum (its fields were edited)"
        return None

    def _bytes_problem(self, identity: dict, rel: str, checksum: str, digest: str | None, payload: bytes,
                       stamp: tuple[int, int, int] | None = None) -> str | None:
        """What makes a file's bytes unusable for its row (None when they match).

        A row without ``sha256`` (written before files carried their identity) matches when its checksum
        is the bytes' sha256 and a shard's maps are what its row says; it is then signed.
        """
        got = sha256(payload)
        if got != (checksum if digest is None else digest):
            return "is damaged (checksum mismatch)"
        if digest is None:
            problem = _content_problem(payload, identity) if identity["kind"] == "shard" else None
            if problem is not None:
                return problem
            self._sign(identity, rel, got, checksum)
        if stamp is not None:
            self._remember_verified(rel, stamp, got)
        return None

    def _sign(self, identity: dict, rel: str, digest: str, old_checksum: str) -> None:
        """Bind the row of a file written before files carried their identity: its sidecar, then its row."""
        self._write_sidecar(rel, identity, digest)
        kind = identity["kind"]
        where = " AND ".join(f"{column} = ?" for column in (*_key_columns(kind), "path", "checksum"))
        with self.db.transaction() as cur:
            cur.execute(f"UPDATE {_TABLES[kind]} SET checksum = ?, sha256 = ? WHERE {where}",
                        (bound_checksum(identity, digest), digest, *(identity[c] for c in _key_columns(kind)), rel,
                         old_checksum))

    def _write_sidecar(self, rel: str, identity: dict, digest: str) -> None:
        """Write the file's identity, its sha256 and its model's registration beside it, atomically.

        That is what `rebuild` reads. Only the process holding a shard's claim writes its sidecar.
        """
        record = {"identity": identity, "sha256": digest}
        rows = self.db.query("SELECT name, spec FROM models WHERE model_key = ?", (identity["model_key"],))
        if rows:
            record["model"] = {"name": rows[0][0], "spec": json.loads(rows[0][1])}
        atomic_write(self.root / sidecar_relpath(rel), _json_bytes(record))

    def _remember_verified(self, rel: str, stamp: tuple[int, int, int], digest: str) -> None:
        if time.time_ns() - stamp[2] > _STAMP_GRANULARITY_NS:
            self._verified[rel] = (stamp, digest)  # a file this fresh could change again within one mtime tick

    def _tell_unusable(self, rel: str, problem: str, what: str) -> None:
        """One warning per file and problem: what was found, and that the unit is computed again."""
        if (rel, problem) in self._told_unusable:
            return
        self._told_unusable.add((rel, problem))
        _log.warning("%s: file %r %s; it is computed again", what, str(self.root / rel), problem)

    def _load_shard(self, row: "_ShardRow") -> np.ndarray:
        """One shard file as a float16 array, its row, checksum and shape verified.

        The first read in this process hashes the whole file; later reads of the same,
        unchanged file map it into memory instead, so only the rows asked for are touched.
        """
        path = self._file(row.path)
        problem = self._shard_problem(row, verify=False)
        if problem is not None:
            raise StoreError(f"shard {row.shard} of model {row.model_key!r} ({row.method}): file {str(path)!r} "
                             f"{problem}; the next run computes it again")
        shape = (row.stop - row.start, row.n_features)
        digest = row.checksum if row.sha256 is None else row.sha256  # a row just signed kept its file's sha256
        try:
            stamp = file_stamp(path)
            if self._verified.get(row.path) == (stamp, digest):
                data = np.load(path, mmap_mode="r", allow_pickle=False)
                if data.shape == shape:
                    return data
            payload = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"shard file {str(path)!r} cannot be read ({exc}); recompute it") from exc
        if sha256(payload) != digest:
            raise StoreError(f"shard file {str(path)!r} is corrupt (checksum mismatch); recompute it")
        try:
            data = np.load(io.BytesIO(payload), allow_pickle=False)
        except Exception as exc:
            raise StoreError(f"shard file {str(path)!r} is not a valid .npy file: {exc}") from exc
        if data.shape != shape:
            raise StoreError(f"shard file {str(path)!r} has shape {data.shape}, the manifest says {shape}")
        self._remember_verified(row.path, stamp, digest)
        return data

    def _inside(self, rel: str) -> bool:
        """Whether a path from the manifest resolves to a place inside ``arrays/``."""
        try:
            self._file(rel)
        except StoreError:
            return False
        return True

    def _file(self, rel: str) -> Path:
        """The file of a path read from the manifest, if it resolves to a place inside ``arrays/``.

        Otherwise (through ``..`` and symbolic links) a StoreError names it: an absolute path or ``../``
        in an edited row would make `read` serve, and `remove_model` delete, any file the user can write.
        """
        path = self.root / str(rel)  # an absolute ``rel`` replaces the root
        resolved = path.resolve()
        if not resolved.is_relative_to(self.arrays.resolve()):
            raise StoreError(
                f"manifest {str(self.manifest)!r} names the shard file {str(rel)!r}, which lies outside the "
                f"store's arrays folder (it resolves to {str(resolved)!r}); it is neither read nor deleted. Was "
                "the manifest edited? `modelspace remove NAME` drops the model's rows, the next run recomputes it"
            )
        return path

    def _delete_files(self, rel_paths: Iterable[str]) -> int:
        """Delete store files, their sidecars and any folders left empty.

        Best effort: files may already be gone; returns how many store files (sidecars not counted) were deleted.

        A manifest path outside ``arrays/`` is never deleted: its row is gone, the file is left and
        a warning names it.
        """
        deleted = 0
        for rel in rel_paths:
            try:
                path = self._file(rel)
            except StoreError as exc:
                _log.warning("%s", exc)
                continue
            for file in dict.fromkeys((path, self.root / sidecar_relpath(str(rel)))):  # a file and its sidecar
                try:
                    file.unlink()
                    deleted += file == path
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StorageError(f"store file {str(file)!r} cannot be deleted: {exc}") from exc
            prune_empty_dirs(path.parent, self.arrays)
        return deleted


@dataclass(frozen=True)
class EncodedShard:
    """One unit's maps as the bytes of its shard file, ready for `MapStore.commit` anywhere.

    Parameters
    ----------
    payload : bytes
        The ``.npy`` file (float16, rows L2-normalised); empty when a worker wrote the file into a
        shared store itself.
    checksum : str
        Its sha256, computed where the maps were made.
    n_features : int
        Values per map (F).
    n_zero : int
        Maps that were all zero.
    n_nonfinite : int
        Maps holding NaN or infinite values.
    """

    payload: bytes
    checksum: str
    n_features: int
    n_zero: int
    n_nonfinite: int

    def without_payload(self) -> "EncodedShard":
        """The same record without the bytes (the file is already at its place in the store).

        Returns
        -------
        EncodedShard
            A copy with an empty ``payload``.
        """
        return EncodedShard(b"", self.checksum, self.n_features, self.n_zero, self.n_nonfinite)


def encode_shard(unit: WorkUnit, maps) -> EncodedShard:
    """Normalise one unit's (B, ...) maps into the bytes of its shard file; touches no store.

    Parameters
    ----------
    unit : WorkUnit
        The unit the maps are of.
    maps : np.ndarray or torch.Tensor
        (B, ...) real-valued maps, B = ``unit.stop - unit.start``; flattened to (B, F).

    Returns
    -------
    EncodedShard
        The file's bytes, their sha256 and the counts of degenerate maps (`normalise_rows`).

    Raises
    ------
    StoreError
        Maps that are not real numbers, or not B of them.
    """
    normalised, n_zero, n_nonfinite = normalise_rows(_flatten(maps, unit))
    payload = npy_bytes(normalised.astype(np.float16))
    return EncodedShard(payload, sha256(payload), normalised.shape[1], n_zero, n_nonfinite)


def shard_relpath(key: EntryKey, shard: int) -> str:
    """A shard's path relative to a store's root, POSIX form (the same on every node).

    Parameters
    ----------
    key : EntryKey
        The entry.
    shard : int
        The shard's number.

    Returns
    -------
    str
        ``arrays/<mk[:2]>/<mk>/<method folder>/<probe_hash[:16]>_<size>/shard_<shard:05d>.npy``.
    """
    return _entry_folder(key) + f"shard_{shard:05d}.npy"


def _entry_folder(key: EntryKey) -> str:
    return (f"arrays/{key.model_key[:2]}/{key.model_key}/{method_folder(key.method)}/"
            f"{key.probe_hash[:16]}_{key.probe_size}/")


def shard_identity(key: EntryKey, shard: int, start: int, stop: int, n_features: int, n_zero: int,
                   n_nonfinite: int) -> dict:
    """The identity a shard file is bound to (`keys.unit_identity`).

    Parameters
    ----------
    key : EntryKey
        The entry.
    shard : int
        The shard's number.
    start, stop : int
        The shard's image range, ``start`` .. ``stop - 1``.
    n_features : int
        Values per map.
    n_zero, n_nonfinite : int
        How many of its maps were all zero, or not finite (stored as zeros).

    Returns
    -------
    dict
        The identity record, as its sidecar keeps it.
    """
    return unit_identity("shard", key, shard=shard, start=start, stop=stop, n_features=n_features, n_zero=n_zero,
                         n_nonfinite=n_nonfinite)


def unit_relpath(identity: dict) -> str:
    """The one path, relative to a store's root, of the file a `keys.unit_identity` record names.

    Parameters
    ----------
    identity : dict
        A shard's, sketch's or prepared form's identity record.

    Returns
    -------
    str
        The POSIX path: the shard's, ``sketch_d<dim>_s<seed>.npy`` or ``prepared.npz`` in the entry's folder.
    """
    key, kind = identity_key(identity), identity["kind"]
    if kind == "shard":
        return shard_relpath(key, identity["shard"])
    if kind == "sketch":
        return _entry_folder(key) + f"sketch_d{identity['dim']}_s{identity['seed']}.npy"
    return _entry_folder(key) + "prepared.npz"


def sidecar_relpath(rel: str) -> str:
    """Where the identity of the file at ``rel`` is kept: beside it, named alike, ``.json``.

    Parameters
    ----------
    rel : str
        A stored file's path relative to the store's root.

    Returns
    -------
    str
        The sidecar's path, relative alike.
    """
    return rel.rsplit(".", 1)[0] + ".json"


def _is_sidecar(path: Path) -> bool:
    """Whether a file in a model's folder is a sidecar (counted with its file, not as a file of its own)."""
    return path.suffix == ".json"


# The tables of stored files, by kind, and the fields (beyond the entry's key) that tell a kind's files apart.
_TABLES = {"shard": "shards", "sketch": "sketches", "prepared": "prepared"}
_PARTS = {"shard": ("shard",), "sketch": ("dim", "seed"), "prepared": ()}
_IDENTITY_FIELDS = {"shard": ("shard", "start", "stop", "n_features", "n_zero", "n_nonfinite"),
                    "sketch": ("dim", "seed"), "prepared": ()}
_SHARD_COLUMNS = ("model_key", "probe_hash", "method", "probe_size", "shard", "start", "stop", "n_features", "path",
                  "checksum", "nbytes", "n_zero", "n_nonfinite", "sha256")


def _key_columns(kind: str) -> tuple[str, ...]:
    """The primary-key columns of the table of ``kind``'s files."""
    return ("model_key", "probe_hash", "method", "probe_size", *_PARTS[kind])


@dataclass(frozen=True)
class _ShardRow:
    """One row of the ``shards`` table as read (`_SHARD_COLUMNS`); any field may have been edited."""

    model_key: str
    probe_hash: str
    method: str
    probe_size: int
    shard: int
    start: int
    stop: int
    n_features: int
    path: str
    checksum: str
    nbytes: int
    n_zero: int
    n_nonfinite: int
    sha256: str | None

    def identity(self) -> dict:
        """The identity its fields describe (InputError when one is not valid)."""
        key = EntryKey(self.model_key, self.probe_hash, self.method, self.probe_size)
        return shard_identity(key, self.shard, self.start, self.stop, self.n_features, self.n_zero, self.n_nonfinite)


def _describe(identity: dict) -> str:
    """A stored unit in a message: model key, method and part."""
    part = {"shard": lambda: f"shard {identity['shard']} (images {identity['start']}..{identity['stop'] - 1})",
            "sketch": lambda: f"sketch (dim {identity['dim']}, seed {identity['seed']})",
            "prepared": lambda: "prepared form"}[identity["kind"]]()
    return f"{part} of model {identity['model_key'][:12]} ({identity['method']})"


def _rows_from_sidecars(root: Path) -> tuple[list[tuple], dict[str, list[tuple]], list[dict]]:
    """What `MapStore.rebuild` enters.

    That is the ``models`` rows, each kind's rows (`_unit_row`), and the files left out (``{"path", "reason"}``).
    """
    units, left_out = {kind: [] for kind in _TABLES}, []
    seen: dict[str, list[tuple[int, str, str]]] = {}  # model key: (mtime, name, spec) of each sidecar naming it
    for path in sorted((root / "arrays").rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            kind, row = _unit_row(root, record, path.relative_to(root).as_posix())
        except (OSError, ValueError, TypeError, KeyError, StoreError) as exc:  # InputError is a ValueError
            left_out.append({"path": str(path), "reason": str(exc)})
            continue
        units[kind].append(row)
        model = record.get("model")
        if isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"]:
            seen.setdefault(record["identity"]["model_key"], []).append(
                (path.stat().st_mtime_ns, model["name"], json.dumps(model.get("spec"), sort_keys=True)))
    for path in sorted((root / "arrays").rglob("*.np[yz]")):  # temporary files of killed writes end in .tmp
        if not path.with_suffix(".json").exists():
            left_out.append({"path": str(path), "reason": "no identity sidecar beside it"})
    # Each model as its newest sidecar registers it, in the order their files were first written.
    order = sorted(seen, key=lambda key: min(seen[key])[0])
    return [(key, *max(seen[key])[1:], seq) for seq, key in enumerate(order, 1)], units, left_out


def _unit_row(root: Path, record: dict, sidecar: str) -> tuple[str, tuple]:
    """The kind and manifest row of the file a sidecar describes, verified (StoreError saying what differs)."""
    if not isinstance(record, dict) or not isinstance(record.get("identity"), dict):
        raise StoreError("not an identity sidecar (no 'identity' record)")
    given, digest = record["identity"], record.get("sha256")
    kind = given.get("kind")
    if kind not in _TABLES:
        raise StoreError(f"unknown kind {kind!r}")
    identity = unit_identity(kind, identity_key(given), **{f: given[f] for f in _IDENTITY_FIELDS[kind]})
    if identity != given:
        raise StoreError("its identity record has fields of no stored unit")
    rel = unit_relpath(identity)
    if sidecar_relpath(rel) != sidecar:
        raise StoreError(f"it is bound to another unit: {_describe(identity)} is kept at {rel!r}")
    path = root / rel
    payload = path.read_bytes()
    if sha256(payload) != digest:
        raise StoreError(f"{rel!r} does not match the sha256 its sidecar holds")
    if kind == "shard" and (problem := _content_problem(payload, identity)) is not None:
        raise StoreError(f"{rel!r} {problem}")
    checksum = bound_checksum(identity, digest)
    if kind != "shard":
        return kind, (*(identity[c] for c in _key_columns(kind)), rel, checksum, digest)
    created = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return kind, (*(identity[c] for c in _key_columns(kind)), identity["start"], identity["stop"],
                  identity["n_features"], rel, checksum, len(payload), identity["n_zero"], identity["n_nonfinite"],
                  digest, created)


def _move_aside(manifest: Path) -> str | None:
    """Rename a manifest and its ``-wal`` and ``-shm`` files to ``manifest.sqlite.before-rebuild-<UTC time>``.

    They are kept together, so that SQLite opens them as one; returns that path, or None when there was
    no manifest.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside, n = manifest.with_name(f"{manifest.name}.before-rebuild-{stamp}"), 1
    while any(Path(f"{aside}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        n += 1
        aside = manifest.with_name(f"{manifest.name}.before-rebuild-{stamp}-{n}")
    moved = None
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{manifest}{suffix}")
        if source.exists():
            try:
                os.replace(source, f"{aside}{suffix}")
            except OSError as exc:
                raise StorageError(f"manifest file {str(source)!r} cannot be moved aside: {exc}") from exc
            moved = moved or str(aside)
    return moved


def _json_bytes(record: dict) -> bytes:
    return (json.dumps(record, sort_keys=True, indent=1) + "\n").encode("utf-8")


def _content_problem(payload: bytes, identity: dict) -> str | None:
    """What differs between a shard file's maps and its identity; None when nothing does.

    Looked at: dtype, shape, and the number of all-zero maps (zero and non-finite maps are stored as zeros).
    """
    try:
        data = np.load(io.BytesIO(payload), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable content is a damaged file
        return f"is not a valid .npy file ({exc})"
    shape = (identity["stop"] - identity["start"], identity["n_features"])
    if data.dtype != np.float16 or data.shape != shape:
        return f"holds {data.dtype} maps of shape {data.shape}, where {_describe(identity)} has float16 {shape}"
    zero = int((~data.any(axis=1)).sum())
    if zero != identity["n_zero"] + identity["n_nonfinite"]:
        return (f"holds {zero} all-zero maps, where its manifest row counts {identity['n_zero']} zero and "
                f"{identity['n_nonfinite']} non-finite")
    return None


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


HALF_MARK = "~half"
"""Marks the method of a half's key: the pair cache holds a method's affinities on subsets of the
probe images (the confidence's halves) beside its own, so that a rerun reads no map for them."""


def half_key(key: EntryKey, half: int, halves: int, seed: int) -> EntryKey:
    """The key under which an entry's affinities on one half of the probe images are cached.

    Parameters
    ----------
    key : EntryKey
        The entry.
    half : int
        The half's number.
    halves : int
        How many halves were drawn.
    seed : int
        The seed they were drawn with.

    Returns
    -------
    EntryKey
        ``key`` with `HALF_MARK` and the half's description appended to its method.
    """
    return EntryKey(key.model_key, key.probe_hash, f"{key.method}{HALF_MARK}{half}of{halves}seed{seed}", key.probe_size)


def affinity_checksum(pair: tuple, value: float) -> str:
    """sha256 over an affinity row's fields.

    Parameters
    ----------
    pair : tuple
        The pair as `pair_tuple` gives it.
    value : float
        The affinity; hashed by its repr (exact for a float, which SQLite keeps as an 8-byte IEEE double).

    Returns
    -------
    str
        The hex digest.
    """
    text = "\x1f".join([*(str(f) for f in pair), repr(float(value))])
    return sha256(text.encode("utf-8"))


def _affinity_ok(pair: tuple, value, checksum) -> bool:
    """Whether a cached affinity row is as `put_affinities` wrote it (a value edited to text is not)."""
    return isinstance(value, float) and checksum == affinity_checksum(pair, value)


def normalise_rows(rows: np.ndarray) -> tuple[np.ndarray, int, int]:
    """L2-normalise each row in float64; zero and non-finite rows become zeros and are counted.

    Parameters
    ----------
    rows : np.ndarray
        (B, F) real-valued maps.

    Returns
    -------
    normalised : np.ndarray
        (B, F) float64, each row of unit norm or zero.
    n_zero : int
        Rows that were all zero.
    n_nonfinite : int
        Rows that held NaN or infinite values.
    """
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
