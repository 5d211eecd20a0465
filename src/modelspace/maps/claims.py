"""Claims: which process computes which unit of a shared store now.

Two processes embedding the same models into one store (two terminals, a job array, a rerun
started while the first run is still going) would otherwise both compute every unit. A process
first *claims* a shard's units (a row per unit in the manifest's ``claims`` table with its pid,
host and a random owner token, taken in one transaction), skips units another live process
holds, and comes back to them when it has nothing else to do: by then they are usually written,
and are read instead of recomputed. A claim whose process is gone (same host, pid no longer
alive, e.g. after ``kill -9``) or older than `CLAIM_STALE_S` is taken over, so a crash never
leaves a unit locked; no process waits while holding a claim, so two cannot deadlock.

Claims live in SQLite rather than in lock files because the manifest is already the one place
every process agrees on, and a row outlives a crash without leaving a lock held (an ``flock``
would be released by the kernel too, but not on every network filesystem).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence

from .keys import WorkUnit
from .manifest import ENTRY, Manifest, key_tuple

#: A claim older than this is taken over even when its process looks alive (another host, whose
#: pids cannot be checked from here, or a pid reused by an unrelated process).
CLAIM_STALE_S = 3600.0
_HOST = socket.gethostname()


class Claims:
    """The manifest's ``claims`` table: which process computes which unit now."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def claim(self, units: Sequence[WorkUnit], owner: str) -> bool:
        """Claim all ``units`` for ``owner`` in one transaction.

        Returns False, claiming nothing, when a live process holds any of them; claims of dead
        processes are taken over.
        """
        now = time.time()
        with self.manifest.transaction() as cur:
            for unit in units:
                held = cur.execute(f"SELECT owner, pid, host, since FROM claims WHERE {ENTRY} AND shard = ?",
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
        """Drop ``owner``'s claims on ``units`` (claims taken over by another owner are left alone)."""
        with self.manifest.transaction() as cur:
            cur.executemany(f"DELETE FROM claims WHERE {ENTRY} AND shard = ? AND owner = ?",
                            [(*key_tuple(u.key), u.shard, owner) for u in units])

    def clear_stale(self) -> int:
        """Delete the claims of dead processes (left by a crash after its last write); returns how many."""
        now = time.time()
        with self.manifest.transaction() as cur:
            rows = cur.execute("SELECT rowid, pid, host, since FROM claims").fetchall()
            stale = [(rowid,) for rowid, *held in rows if not claim_alive(*held, now=now)]
            cur.executemany("DELETE FROM claims WHERE rowid = ?", stale)
        return len(stale)

    def list(self) -> list[dict]:
        """Current claims (``{"model_key", "method", "shard", "pid", "host", "since"}``), oldest first."""
        fields = ("model_key", "method", "shard", "pid", "host", "since")
        rows = self.manifest.query(f"SELECT {', '.join(fields)} FROM claims ORDER BY since")
        return [dict(zip(fields, r)) for r in rows]


def claim_alive(pid: int, host: str, since: float, now: float) -> bool:
    """Whether a claim's process may still be working on it (see `CLAIM_STALE_S`)."""
    if now - since > CLAIM_STALE_S:
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
