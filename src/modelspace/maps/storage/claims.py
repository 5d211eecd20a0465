"""Claims: which process computes which unit of a shared store now.

Two processes embedding the same models into one store (two terminals, a job array, a rerun
started while the first run is still going) would otherwise both compute every unit. A process
first *claims* a shard's units (a row per unit in the manifest's ``claims`` table with its pid,
host and a random owner token, taken in one transaction), skips units another live process
holds, and comes back to them when it has nothing else to do: by then they are usually written,
and are read instead of recomputed. While it holds claims, a process *beats*: a thread stamps its
row of the ``heartbeats`` table every `HEARTBEAT_S`. A claim is taken over when its process is
gone (same host, pid no longer alive, e.g. after ``kill -9``) or its heartbeat is older than
`CLAIM_STALE_S` (a process on another host, or a pid reused by an unrelated process, once held a
leftover claim for an hour), so a crash never leaves a unit locked for long; no process waits
while holding a claim, so two cannot deadlock. A process that waits logs who holds the unit.

A unit is claimed only while its model is registered: the store's check (``check``) runs inside
the claiming transaction and refuses a unit of a model removed meanwhile, and a removal
(`MapStore.remove_model`) waits until no live claim of the model is left (`live_claims`). So
every shard file of a model is written while it is registered, and none after its removal.

Claims live in SQLite rather than in lock files because the manifest is already the one place
every process agrees on, and a row outlives a crash without leaving a lock held (an ``flock``
would be released by the kernel too, but not on every network filesystem).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .keys import WorkUnit
from .manifest import ENTRY, Manifest, key_tuple

#: A claim whose process has not beaten for this long is taken over even when the process looks
#: alive (another host, whose pids cannot be checked from here, or a pid reused by an unrelated one).
CLAIM_STALE_S = 120.0
#: How often a claiming process stamps its heartbeat (well inside `CLAIM_STALE_S`).
HEARTBEAT_S = 30.0
_HOST = socket.gethostname()


class Claims:
    """The manifest's ``claims`` table: which process computes which unit now.

    Parameters
    ----------
    manifest : Manifest
        The store's manifest.
    check : callable, optional
        ``check(cursor, units)``, run inside the transaction of every `claim` before anything is
        claimed; it raises to refuse the units (the store refuses those of a model removed meanwhile).
    """

    def __init__(self, manifest: Manifest,
                 check: Callable[[sqlite3.Cursor, Sequence[WorkUnit]], None] | None = None) -> None:
        self.manifest = manifest
        self.check = check

    def claim(self, units: Sequence[WorkUnit], owner: str) -> bool:
        """Claim all ``units`` for ``owner`` in one transaction.

        Claims of dead processes (`claim_alive`) are taken over, and ``owner``'s own claims renewed.

        Parameters
        ----------
        units : sequence of WorkUnit
            The units to claim, all or none.
        owner : str
            The claiming process's random owner token.

        Returns
        -------
        bool
            True when all ``units`` are now ``owner``'s; False, claiming nothing, when a live process
            holds any of them.

        Raises
        ------
        Exception
            Whatever the ``check`` given to `Claims` raises to refuse the units, nothing claimed (the
            store's check raises `ModelRemovedError` for a unit of a model removed meanwhile).
        """
        now = time.time()
        with self.manifest.transaction() as cur:
            if self.check is not None:
                self.check(cur, units)
            for unit in units:
                held = cur.execute(f"SELECT owner, pid, host, {_LAST_SEEN} FROM claims WHERE {ENTRY} AND shard = ?",
                                   (*key_tuple(unit.key), unit.shard)).fetchone()
                if held and held[0] != owner and claim_alive(*held[1:], now=now):
                    return False
            cur.executemany(
                "INSERT OR REPLACE INTO claims (model_key, probe_hash, method, probe_size, shard, owner, pid, "
                "host, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key_tuple(u.key), u.shard, owner, os.getpid(), _HOST, now) for u in units],
            )
        return True

    def release(self, units: Sequence[WorkUnit], owner: str) -> None:
        """Drop ``owner``'s claims on ``units`` (claims taken over by another owner are left alone).

        Parameters
        ----------
        units : sequence of WorkUnit
            The units to release.
        owner : str
            The owner token that claimed them.
        """
        with self.manifest.transaction() as cur:
            cur.executemany(f"DELETE FROM claims WHERE {ENTRY} AND shard = ? AND owner = ?",
                            [(*key_tuple(u.key), u.shard, owner) for u in units])

    def clear_stale(self) -> int:
        """Delete the claims of dead processes (left by a crash after its last write).

        Returns
        -------
        int
            How many claims were deleted.
        """
        now = time.time()
        with self.manifest.transaction() as cur:
            rows = cur.execute(f"SELECT rowid, pid, host, {_LAST_SEEN} FROM claims").fetchall()
            stale = [(rowid,) for rowid, *held in rows if not claim_alive(*held, now=now)]
            cur.executemany("DELETE FROM claims WHERE rowid = ?", stale)
        return len(stale)

    def holder(self, units: Sequence[WorkUnit]) -> dict | None:
        """Who holds the first of ``units`` that is claimed, for the message of a process that waits.

        Parameters
        ----------
        units : sequence of WorkUnit
            The units to look up, in order.

        Returns
        -------
        dict or None
            ``{"pid", "host", "since", "beat"}`` (unix times; ``beat`` is the last heartbeat, None for a
            process that does not beat), or None when none of ``units`` is claimed.
        """
        for unit in units:
            rows = self.manifest.query(
                f"SELECT pid, host, since, (SELECT beat FROM heartbeats h WHERE h.owner = claims.owner) "
                f"FROM claims WHERE {ENTRY} AND shard = ?", (*key_tuple(unit.key), unit.shard))
            if rows:
                return dict(zip(("pid", "host", "since", "beat"), rows[0]))
        return None

    @contextlib.contextmanager
    def heartbeat(self, owner: str, every: float | None = None) -> Iterator[None]:
        """Stamp ``owner``'s heartbeat now and every ``every`` seconds from a thread, until the block ends.

        A long shard (a big model on a CPU) keeps its claims alive meanwhile. A beat that fails in the
        thread is skipped; the heartbeat row is deleted when the block ends.

        Parameters
        ----------
        owner : str
            The owner token whose claims the beats keep alive.
        every : float, optional
            Seconds between beats; `HEARTBEAT_S` when None.
        """
        every = HEARTBEAT_S if every is None else every
        self._beat(owner, started=True)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    self._beat(owner)
                except Exception:  # noqa: BLE001 - best effort: the main thread meets a broken store itself
                    pass

        thread = threading.Thread(target=beat, name=f"modelspace-heartbeat-{owner[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with self.manifest.transaction() as cur:
                cur.execute("DELETE FROM heartbeats WHERE owner = ?", (owner,))

    def _beat(self, owner: str, started: bool = False) -> None:
        now = time.time()
        with self.manifest.transaction() as cur:
            if started:
                cur.execute("INSERT OR REPLACE INTO heartbeats (owner, pid, host, started, beat) VALUES (?, ?, ?, ?, ?)",
                            (owner, os.getpid(), _HOST, now, now))
            else:
                cur.execute("UPDATE heartbeats SET beat = ? WHERE owner = ?", (now, owner))

    def list(self) -> list[dict]:
        """Current claims, oldest first.

        Returns
        -------
        list of dict
            ``{"model_key", "method", "shard", "pid", "host", "since"}`` per claim (``since``: unix time).
        """
        fields = ("model_key", "method", "shard", "pid", "host", "since")
        rows = self.manifest.query(f"SELECT {', '.join(fields)} FROM claims ORDER BY since")
        return [dict(zip(fields, r)) for r in rows]


def live_claims(cur: sqlite3.Cursor, model_key: str) -> list[dict]:
    """The claims on a model's units whose process may still be computing them (`claim_alive`).

    Parameters
    ----------
    cur : sqlite3.Cursor
        A cursor of the manifest, inside the caller's transaction (a removal reads and deletes in one).
    model_key : str
        The model's store key.

    Returns
    -------
    list of dict
        ``{"pid", "host", "since"}`` per live claim (empty when none is left).
    """
    now = time.time()
    rows = cur.execute(f"SELECT pid, host, since, {_LAST_SEEN} FROM claims WHERE model_key = ?", (model_key,))
    return [{"pid": pid, "host": host, "since": since} for pid, host, since, seen in rows.fetchall()
            if claim_alive(pid, host, seen, now)]


# When a claim's process was last seen alive: its latest heartbeat, or, for a process of an older
# modelspace that does not beat, the time it claimed the unit.
_LAST_SEEN = "COALESCE((SELECT beat FROM heartbeats h WHERE h.owner = claims.owner), since)"


def claim_alive(pid: int, host: str, last_seen: float, now: float) -> bool:
    """Whether a claim's process may still be working on it.

    It must have been seen (heartbeat, or the claim's time) within `CLAIM_STALE_S` and, on this host,
    its pid must be alive and not a zombie; another host's pid cannot be checked and is trusted.

    Parameters
    ----------
    pid : int
        The claiming process's id.
    host : str
        The host name it ran on.
    last_seen : float
        Unix time of its last heartbeat (or of the claim).
    now : float
        The current unix time.

    Returns
    -------
    bool
        False when the claim may be taken over.
    """
    if now - last_seen > CLAIM_STALE_S:
        return False
    if host != _HOST:
        return True  # another machine's pids cannot be checked: trust the claim until it is stale
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
