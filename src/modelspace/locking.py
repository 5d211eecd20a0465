"""Running units of work once across processes that share a store.

Two processes embedding the same models into one store (two terminals, a job array, a rerun
started while the first run is still going) would otherwise both compute every unit. Here a
process claims a shard's units in the store's manifest before computing them (`MapStore.claim`),
skips units another live process holds, and comes back to them when it has nothing else to do:
by then the other process has usually written them, and they are read from the store instead
of recomputed. A claim of a dead process (``kill -9``) is taken over, so a crash never leaves a
unit locked. No process waits while holding a claim, so two processes cannot deadlock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

from .store import MapStore, WorkUnit

T = TypeVar("T")

#: Seconds between two looks at units another process holds.
POLL_S = 0.2


def run_exclusive(
    store: MapStore,
    groups: Sequence[Sequence[WorkUnit]],
    work: Callable[[list[WorkUnit]], list[T]],
    *,
    progress: bool = False,
    desc: str | None = None,
) -> list[T]:
    """Call ``work(units)`` for the still-missing units of each group, each group claimed first.

    A group is the set of units computed together (one probe shard of one model, all its
    methods). Returns the concatenated results of the ``work`` calls this process made; units
    found written (by another process, or before) are not passed to ``work``.
    """
    owner = uuid.uuid4().hex  # per call, so two threads of one process are told apart too
    store.clear_stale_claims()  # a process killed after its last write but before releasing leaves one
    pending = [list(g) for g in groups if g]
    results: list[T] = []
    with tqdm(total=len(pending), desc=desc, unit="shard", leave=False, disable=not progress) as bar:
        while pending:
            deferred = []
            for group in pending:
                if not store.claim(group, owner):
                    deferred.append(group)  # a live process computes it now: look again later
                    continue
                try:
                    todo = store.missing(group)  # it may have been written since the caller looked
                    if todo:
                        store.discard_partial(todo)
                        results.extend(work(todo))
                finally:
                    store.release(group, owner)
                bar.update(1)
            if deferred and len(deferred) == len(pending):
                time.sleep(POLL_S)  # every remaining group is held by others: wait for them
            pending = deferred
    return results
