"""Running units of work: one model × one shard of the probe set → stored attribution maps.

`run_unit` is the whole job of a unit and needs nothing but the unit, the model, the probe set,
the store and the `Runtime`, so a distributed executor (Ray, a job array) can ship
`WorkUnit.to_dict()` to other processes and call it there against a shared store. `Executor` is
what every executor's configuration holds (the shard size); `LocalExecutor` runs the units in this
process, loading each model once, and `run_exclusive` makes several processes sharing a store
compute each unit once between them (see `claims`).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from ...progress import progress as progress_bar

from ...attribution import AttributionMethod, attribute_many
from ...models import LoadedModel
from ...errors import InputError, ModelLoadError, ModelspaceError, StoreError, check_int
from ...options import option
from ...probe import ProbeSet
from ..storage import CLAIM_STALE_S, MapStore, ShardInfo, WorkUnit
from .runtime import Runtime, SavedBytes

T = TypeVar("T")

_log = logging.getLogger(__name__)

#: Seconds between two looks at units another process holds.
POLL_S = 0.2


def compute_maps(
    model: LoadedModel,
    images: torch.Tensor,
    methods: Sequence[AttributionMethod],
    probe_size: int,
    runtime: Runtime | str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Maps of a batch of probe images per method: T_i, attribution, T_i⁻¹, then the method's `finish`.

    A method with K directions gives its K maps per image side by side along the channels:
    (B, K·C, S, S), C the channels `finish` leaves (3, or 1 after a channel mean).

    Parameters
    ----------
    model : LoadedModel
        The model, already on the runtime's device and in its memory layout (`Runtime.prepare`).
    images : torch.Tensor
        Probe images, float (B, 3, S, S) in [0, 1].
    methods : sequence of AttributionMethod
        The methods (those sharing a backward pass share it).
    probe_size : int
        S, the probe's side in pixels: the maps are brought back to it.
    runtime : Runtime or str or torch.device, default "cpu"
        How the model runs, or just a device.

    Returns
    -------
    dict of str to torch.Tensor
        Method id → float32 maps (B, K·C, S, S) on the CPU.
    """
    runtime = Runtime.of(runtime)
    x = runtime.inputs(model.transform, images)
    with runtime.autocast():
        maps = attribute_many(model.module, x, methods, encoder=model.encoder_ref, model_name=model.name)
    by_id = {m.id: m for m in methods}
    out = {}
    for method_id, v in maps.items():
        v = v.detach().float()
        batch = v.shape[0]
        if by_id[method_id].directions > 1:  # (B, K, C, H, W): each direction is a map of its own
            v = v.flatten(0, 1)
        finished = by_id[method_id].finish(model.transform.inverse(v, probe_size))
        out[method_id] = finished.reshape(batch, -1, *finished.shape[-2:]).cpu()
    return out


def run_units(
    units: Sequence[WorkUnit],
    model: LoadedModel,
    probe: ProbeSet,
    methods: Sequence[AttributionMethod],
    store: MapStore,
    runtime: Runtime | str | torch.device = "cpu",
) -> list[ShardInfo]:
    """Compute the units of one model covering the same shard (one per method) and write them to the store.

    The units are computed together in batches of `Runtime.batch_size` (methods that share a backward
    pass share it) and written one atomic write each. A batch runs in passes of as many images as
    `runtime` lets a pass keep for its backward (`Runtime.pass_images`), measured on the shard's first
    image and on every pass since.

    Parameters
    ----------
    units : sequence of WorkUnit
        The units, one per method, all of the same probe shard and model.
    model : LoadedModel
        The model, already on the runtime's device (`Runtime.prepare`).
    probe : ProbeSet
        The probe images.
    methods : sequence of AttributionMethod
        The methods; each unit's method key must be one of theirs at the runtime's precision.
    store : MapStore
        Where the maps go.
    runtime : Runtime or str or torch.device, default "cpu"
        How the model runs, or just a device.

    Returns
    -------
    list of ShardInfo
        The written shards, in the order of `units`.

    Raises
    ------
    InputError
        Units that do not all cover the same probe shard.
    """
    runtime = Runtime.of(runtime)
    by_id = {m.ident.at(runtime.precision).store_key: m for m in methods}
    todo = [by_id[u.key.method] for u in units]
    start, stop = units[0].start, units[0].stop
    if any((u.start, u.stop) != (start, stop) for u in units):
        raise InputError("units: they must cover the same probe shard")
    parts: dict[str, list[torch.Tensor]] = {m.id: [] for m in todo}
    per_image = 0.0  # what one image's passes keep for the backward, the most seen (`Runtime.pass_images`)
    if runtime.pass_budget is not None:  # measured on the shard's first image (its maps are made again in its batch)
        with SavedBytes(model.module) as saved:
            compute_maps(model, probe.batch(start, start + 1).to(runtime.device), todo, probe.size, runtime)
        per_image = saved.bytes
    for images in runtime.batches(probe, start, stop, runtime.batch_size):
        done = 0
        while done < len(images):
            n = runtime.pass_images(len(images) - done, per_image)
            with SavedBytes(model.module) as saved:
                batch = compute_maps(model, images[done:done + n], todo, probe.size, runtime)
            per_image = max(per_image, saved.bytes / n)
            done += n
            for method_id, maps in batch.items():
                parts[method_id].append(maps)
    return [store.write(u, torch.cat(parts[by_id[u.key.method].id])) for u in units]


def run_unit(
    unit: WorkUnit,
    model: LoadedModel,
    probe: ProbeSet,
    method: AttributionMethod,
    store: MapStore,
    runtime: Runtime | str | torch.device = "cpu",
) -> ShardInfo:
    """The whole job of one unit: what a distributed worker runs, given the unit's record.

    Parameters
    ----------
    unit : WorkUnit
        The unit (``WorkUnit.from_dict`` of the record a worker was sent).
    model : LoadedModel
        The unit's model, already on the runtime's device.
    probe : ProbeSet
        The probe images.
    method : AttributionMethod
        The unit's method.
    store : MapStore
        Where the maps go.
    runtime : Runtime or str or torch.device, default "cpu"
        How the model runs, or just a device.

    Returns
    -------
    ShardInfo
        The written shard.
    """
    return run_units([unit], model, probe, [method], store, runtime)[0]


def run_error(loaded: LoadedModel, exc: BaseException) -> Exception:
    """A modelspace error as is; anything else raised while running a model, wrapped to name it.

    Parameters
    ----------
    loaded : LoadedModel
        The model that was running.
    exc : BaseException
        What it raised.

    Returns
    -------
    Exception
        `exc` when it is a `ModelspaceError`, otherwise a `ModelLoadError` naming the model (with a hint
        when the input size looks too small for its layers).
    """
    if isinstance(exc, ModelspaceError):
        return exc
    hint = ""
    if "too small" in str(exc) or "Kernel size can't be greater" in str(exc):
        hint = f" (input_size {list(loaded.spec.input_size)} may be too small for this model's layers)"
    return wrapped_error(loaded.name, "failed while running", exc, hint)


def wrapped_error(name: str, doing: str, exc: BaseException, hint: str = "") -> ModelLoadError:
    """``exc`` (any exception, SystemExit included) as a ModelLoadError naming the model.

    Parameters
    ----------
    name : str
        The model's name.
    doing : str
        What the model did when it failed ("failed while running", ...).
    exc : BaseException
        What it raised; it becomes the new error's ``__cause__``.
    hint : str, default ""
        Text appended to the message.

    Returns
    -------
    ModelLoadError
        The error, to be raised by the caller.
    """
    error = ModelLoadError(f"model {name!r} {doing}: {type(exc).__name__}: {exc}{hint}")
    error.__cause__ = exc
    return error


def repeatable(exc: BaseException) -> bool:
    """Whether running the same model again would fail the same way.

    Not for a lack of memory or disk, or a store that could not be written.

    Parameters
    ----------
    exc : BaseException
        What running the model raised.

    Returns
    -------
    bool
        False for a memory, OS or store error, True otherwise.
    """
    return not isinstance(exc, (MemoryError, torch.OutOfMemoryError, OSError, StoreError))


@dataclass(frozen=True)
class Executor:
    """Where the units of work run: what every executor's configuration holds.

    An immutable value, checked when it is made; subclasses add their own fields (`LocalExecutor`,
    `ray.RayExecutor`).

    Parameters
    ----------
    shard_size : int, default 256
        Probe images per unit of work (the grain of resuming and of distribution). Maps already
        planned in the store (by an earlier or a concurrent run) keep the shard size they were
        planned with (`MapStore.plan`).

    Raises
    ------
    InputError
        A field out of its range; the message names the field.
    """

    #: The executor's name on the command line (``--executor``).
    name: ClassVar[str] = ""

    shard_size: int = option(256, "probe images per unit of work")

    def __post_init__(self) -> None:
        object.__setattr__(self, "shard_size", check_int(self.shard_size, "shard_size"))


@dataclass(frozen=True)
class LocalExecutor(Executor):
    """Runs the models one after another in this process, shard by shard, all methods of a shard together.

    Parameters
    ----------
    shard_size : int, default 256
        Probe images per unit of work (`Executor`'s field, its only one).

    Raises
    ------
    InputError
        A ``shard_size`` that is not a positive integer.
    """

    name: ClassVar[str] = "local"

    def run(
        self,
        model: LoadedModel,
        methods: Sequence[AttributionMethod],
        units: Sequence[WorkUnit],
        probe: ProbeSet,
        store: MapStore,
        runtime: Runtime | str | torch.device = "cpu",
        progress: bool = False,
    ) -> list[ShardInfo]:
        """Compute the units of one model, claimed shard by shard, and write them to the store.

        Parameters
        ----------
        model : LoadedModel
            The model, already on the runtime's device (`Runtime.prepare`).
        methods : sequence of AttributionMethod
            The methods the units are of (sharing a backward pass).
        units : sequence of WorkUnit
            The units to compute (those found written meanwhile are skipped).
        probe : ProbeSet
            The probe images.
        store : MapStore
            Where the maps go.
        runtime : Runtime or str or torch.device, default "cpu"
            How the model runs, or just a device.
        progress : bool, default False
            Show a bar over the shards.

        Returns
        -------
        list of ShardInfo
            The shards this call wrote.
        """
        runtime = Runtime.of(runtime)
        shards: dict[tuple[int, int], list[WorkUnit]] = {}
        for unit in units:
            shards.setdefault((unit.start, unit.stop), []).append(unit)
        # Claimed shard by shard, so that two processes sharing the store never compute a unit twice.
        return run_exclusive(store, list(shards.values()),
                             lambda group: run_units(group, model, probe, methods, store, runtime),
                             progress=progress, desc=f"{model.name} · {'+'.join(m.name for m in methods)}")


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
    methods). Units found written (by another process, or before) are not passed to ``work``; a
    group another live process holds is looked at again every `POLL_S` seconds until it is written
    or its claim goes stale (`claims`).

    Parameters
    ----------
    store : MapStore
        The store the units belong to, whose claims keep processes apart.
    groups : sequence of sequence of WorkUnit
        The groups (empty ones are skipped).
    work : callable
        Computes and writes a list of units; returns a list of results.
    progress : bool, default False
        Show a bar over the groups.
    desc : str or None, default None
        The bar's label.

    Returns
    -------
    list
        The concatenated results of the ``work`` calls this process made.
    """
    owner = uuid.uuid4().hex  # per call, so that two threads of one process are told apart too
    store.claims_.clear_stale()  # a process killed after its last write but before releasing leaves one
    pending = [list(g) for g in groups if g]
    results: list[T] = []
    told: set[tuple] = set()  # holders already named: one line per holder, not one per poll
    with store.claims_.heartbeat(owner), \
            progress_bar(total=len(pending), desc=desc, unit="shard", leave=False, disable=not progress) as bar:
        while pending:
            deferred = []
            for group in pending:
                if not store.claims_.claim(group, owner):
                    deferred.append(group)  # a live process computes it now: look again later
                    _tell_holder(store, group, told)
                    continue
                try:
                    todo = store.missing(group)  # it may have been written since the caller looked
                    if todo:
                        store.discard_partial(todo)
                        results.extend(work(todo))
                finally:
                    store.claims_.release(group, owner)
                bar.update(1)
            if deferred and len(deferred) == len(pending):
                time.sleep(POLL_S)  # every remaining group is held by others: wait for them
            pending = deferred
    return results


def _tell_holder(store: MapStore, group: Sequence[WorkUnit], told: set[tuple]) -> None:
    """Log, once per holder, who holds a unit this process waits for and when it will be taken over."""
    held = store.claims_.holder(group)
    if held is None or (held["host"], held["pid"], held["since"]) in told:
        return
    told.add((held["host"], held["pid"], held["since"]))
    since = datetime.fromtimestamp(held["since"], timezone.utc).isoformat(timespec="seconds")
    seen = held["beat"] if held["beat"] is not None else held["since"]
    unit = group[0]
    _log.warning("waiting for %s shard %d (%s): claimed by pid %d on host %s since %s, last heartbeat %.0f s ago; "
                 "taken over once it is %.0f s old (or at once if that process is gone)", unit.model_name,
                 unit.shard, unit.key.method, held["pid"], held["host"], since, time.time() - seen,
                 CLAIM_STALE_S)
