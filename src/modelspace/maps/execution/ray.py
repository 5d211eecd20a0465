"""Running a zoo on a Ray cluster: a pool of actors, one model each at a time; the driver the only writer of the store.

The mechanism is the local one moved onto a cluster, unit for unit (`run_units` is what an actor
runs), declared by one object, `RayExecutor`:

* **One model per actor at a time.** A pool of actors, one per slot (the cluster's CPUs or GPUs
  over one model's share, ``gpus_per_model`` may be a fraction so that small models share a GPU,
  counted when the run starts), takes the models one after another. An actor loads a model once and
  computes, shard by shard, every method of a backward group in one pass, as `LocalExecutor` does
  (`run_units`); it also prepares the model's baseline activations that the store lacks. Worker processes, their
  Python and torch start once per slot, not once per model, and the cluster never holds more models
  in memory than it has slots.
* **The driver is the store's only writer.** SQLite must not be written from several machines
  over a network filesystem, so workers never open the manifest: an actor returns each shard
  encoded (`encode_shard`: the ``.npy`` bytes and their sha256, computed on the worker). The
  driver streams results as they finish (``ray.wait``, one shard at a time, never all maps at
  once), checks each shard's bytes against its checksum, writes the file atomically and commits
  its manifest row (`MapStore.commit`).
* **Two ways home for a shard.** By default shards come back through Ray's object store (no
  shared filesystem needed; each shard is a few MB to a few tens of MB and is dropped once
  committed). With ``shared_store=True`` every node must see the store folder at the same path
  (NFS, a mounted bucket): the worker then writes the shard file into place itself, atomically,
  and the driver reads it back to verify its checksum before committing the row.
* **Claims as everywhere else.** The driver claims a shard's units before sending them (`claims`),
  beats while it runs and releases them once committed, so a local process and a Ray run sharing
  a store never compute a unit twice: each waits for the units the other holds.
* **Faults.** An actor whose worker process dies (``kill -9``, a lost node) is restarted by Ray
  up to ``max_retries`` times, reloading its model, and its unfinished calls are retried; after
  that the model is a recorded failure, never a crashed run. A model that fails to load or to run
  is a recorded per-model failure exactly as with the local executor. A driver killed mid-run
  leaves committed shards and claims of a dead process; the rerun computes only what is missing.
  A model removed from the store by another process meanwhile (`MapStore.remove_model`) is a
  failure of that model: nothing more of it is sent, and what comes back of it is not stored.

Ray is imported only here, and only when this executor is used (``pip install -e ".[ray]"``).

Ray's output: the workers' own output stays in Ray's log files (``log_to_driver=False``). Ray's driver
prints the errors that raylets report (``(raylet) Task ModelWorker.run failed ...`` when a worker
dies) on ``sys.stdout``, from a thread, as they arrive, and holds repeated ones back to print them
once with a count, at the latest when it disconnects; no option sends them elsewhere. A program whose
stdout carries results (the CLI's ``--json``) sends ``sys.stdout`` to stderr while it runs and calls
`disconnect` before it stops doing so.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ...errors import (InputError, ModelLoadError, ModelRemovedError, ModelspaceError, StorageError, StoreError,
                       check_int)
from ...models import LoadedModel, load_model, load_repeatable
from ...options import option
from ...progress import progress as progress_bar
from .activations import prepare_baselines
from .executor import POLL_S, Executor, repeatable, run_error, run_units, wrapped_error
from .runtime import Runtime, kept_torch_state
from ..storage import EncodedShard, MapStore, WorkUnit, atomic_write, encode_shard, shard_relpath

__all__ = ["RAY_EXTRA", "RayExecutor", "disconnect", "import_ray"]

#: What to install when Ray is missing.
RAY_EXTRA = "pip install -e '.[ray]' (from a checkout) or pip install 'modelspace[ray]'"


def import_ray():
    """The ``ray`` module, or InputError naming the extra that installs it.

    Returns
    -------
    module
        ``ray``, imported.

    Raises
    ------
    InputError
        Ray is not installed; the message names the extra that installs it.
    """
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"executor='ray' needs Ray, which is not installed here ({exc}); install the 'ray' extra: "
                         f"{RAY_EXTRA}") from None
    return ray


_connection: tuple[str, str] | None = None  # (node, job) of the connection a RayExecutor made (`disconnect`)


def disconnect() -> None:
    """End the connection to Ray that a `RayExecutor` of this process made, if it is still the one open.

    It calls `ray.shutdown`; a connection its caller made is left as it is. Ray prints no more of its
    lines here, and those it held back are printed now, on whatever ``sys.stdout`` is.
    """
    global _connection
    ray = sys.modules.get("ray")
    if _connection is not None and ray is not None and ray.is_initialized() and _connected_to(ray) == _connection:
        ray.shutdown()
    _connection = None


def _connected_to(ray) -> tuple[str, str]:
    """The driver's node and job: a new connection, even to a new instance on the same machine, differs."""
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


class Job(Protocol):
    """What the driver of a Ray run asks of its caller (`ModelSpace`), model by model."""

    def admit(self, loaded: LoadedModel) -> list[tuple[list, list[WorkUnit]]]:
        """Register a model loaded by a worker and plan its work.

        Parameters
        ----------
        loaded : LoadedModel
            The worker's record of the model it loaded, without the module.

        Returns
        -------
        list of (list, list of WorkUnit)
            ``[(methods sharing a backward pass, their units)]``: every unit of the group's entries
            (`MapStore.plan`); the driver skips those found stored.
        """

    def failed(self, name: str, methods: list | None, error: Exception, remember: bool,
               loaded: LoadedModel | None) -> None:
        """Record a model's failure: to load (``methods`` None) or to run a group of methods.

        Parameters
        ----------
        name : str
            The model's name.
        methods : list or None
            The methods that failed (or ``["baselines"]``); None: the model failed to load.
        error : Exception
            What was raised (`ModelRemovedError`: another process removed the model meanwhile).
        remember : bool
            Record the failure in the store, so that a rerun skips it (a failure that would repeat).
        loaded : LoadedModel or None
            The model's record, when it loaded.
        """

    def settle(self, loaded: LoadedModel, failed: set[str], prepared: dict) -> None:
        """A model's work is done: it joins the results with its methods that did not fail.

        Parameters
        ----------
        loaded : LoadedModel
            The model's record.
        failed : set of str
            The ids of its methods that failed in this run.
        prepared : dict
            Its prepared baseline forms, by baseline id.
        """

    def counted(self, computed: int, reused: int) -> None:
        """Count units: computed in this run, and found stored.

        Parameters
        ----------
        computed : int
            Units computed and committed in this run.
        reused : int
            Units found already stored.
        """

    def stored(self, loaded: LoadedModel) -> tuple[dict, list]:
        """A model's prepared baseline forms found in the store, and the baselines a worker is to prepare.

        Parameters
        ----------
        loaded : LoadedModel
            The model's record.

        Returns
        -------
        tuple of (dict, list)
            The stored forms by baseline id, and the baselines still to prepare.
        """

    def prepared(self, loaded: LoadedModel, prepared: dict, errors: list) -> dict:
        """Record and store what a worker's `prepare_baselines` gave for a model.

        Parameters
        ----------
        loaded : LoadedModel
            The model's record.
        prepared : dict
            The prepared forms, by baseline id.
        errors : list
            ``(baseline, exception)`` for each baseline that failed.

        Returns
        -------
        dict
            The forms, by baseline id.
        """


class ModelWorker:
    """A Ray actor's state: the probe set, and the one model it computes now, loaded once.

    An actor takes the models of a run one after another (a model per actor at a time, all of its
    shards), so that a worker process, its Python and torch start once per slot, not once per model.
    Returned errors, not raised ones: a model's failure is data for the driver, and a worker that
    died (``kill -9``) is told apart from a model that raised.

    Parameters
    ----------
    runtime : Runtime
        How the models run on this worker (its device is the worker's own).
    shared_root : str or None
        The store folder, when every node sees it at the same path (workers then write shard files
        into it); None: shards go back to the driver through Ray's object store.
    """

    def __init__(self, runtime: Runtime, shared_root: str | None) -> None:
        self.runtime, self.shared_root = runtime, shared_root
        self.probe_id, self.probe = None, None
        self.name: str | None = None
        self.loaded: LoadedModel | None = None

    def load(self, model: Any, probe: list) -> dict:
        """Load a model, unless it is the one loaded now, and return its record.

        Parameters
        ----------
        model : ModelSpec or LoadedModel
            The model (a LoadedModel is used as it is).
        probe : list
            ``[ref]``: the probe set's reference in Ray's object store.

        Returns
        -------
        dict
            ``{"loaded": LoadedModel without its module}``, or ``{"error", "remember"}`` when loading failed;
            either with ``"node"`` and ``"pid"``, where it ran.
        """
        name = _name(model)
        self._use(probe)
        try:
            loaded = self._loaded(model)
        except ModelspaceError as exc:
            return {"error": _portable(exc), "remember": load_repeatable(exc), **_where()}
        except BaseException as exc:  # noqa: BLE001 - e.g. SystemExit from a constructor that parses argv
            return {"error": _portable(wrapped_error(name, "failed while loading", exc)),
                    "remember": load_repeatable(exc), **_where()}
        return {"loaded": dataclasses.replace(loaded, module=None), **_where()}

    def run(self, model: Any, probe: list, units: list[dict], methods: list) -> dict:
        """Compute one probe shard of several methods sharing a backward pass.

        Parameters
        ----------
        model : ModelSpec or LoadedModel
            The model (loaded again after Ray restarted this actor).
        probe : list
            ``[ref]``: the probe set's reference in Ray's object store.
        units : list of dict
            The units' records (`WorkUnit.to_dict`), one per method, of one shard.
        methods : list of AttributionMethod
            The methods.

        Returns
        -------
        dict
            ``{"shards": [(unit record, EncodedShard)]}`` (without payload when the store is shared), or
            ``{"error", "remember"}``; either with ``"node"`` and ``"pid"``.
        """
        todo = [WorkUnit.from_dict(u) for u in units]
        try:
            self._use(probe)
            loaded = self._loaded(model)  # again after Ray restarted this actor in a fresh process
            sink = _Sink(self.shared_root)
            with kept_torch_state():
                run_units(todo, loaded, self.probe, methods, sink, self.runtime)
        except BaseException as exc:  # noqa: BLE001 - recorded per model by the driver
            error = run_error(self.loaded, exc) if self.name == _name(model) else wrapped_error(
                _name(model), "failed while loading", exc)
            return {"error": _portable(error), "remember": repeatable(exc), **_where()}
        return {"shards": sink.shards, **_where()}

    def baselines(self, model: Any, probe: list, baselines: list) -> dict:
        """The model's baseline activations, prepared (`prepare_baselines`).

        Parameters
        ----------
        model : ModelSpec or LoadedModel
            The model.
        probe : list
            ``[ref]``: the probe set's reference in Ray's object store.
        baselines : list
            The baselines to prepare.

        Returns
        -------
        dict
            ``{"prepared": forms by baseline id, "errors": [(baseline, exception)]}``, or ``{"error"}``
            when the model failed to load; either with ``"node"`` and ``"pid"``.
        """
        try:
            self._use(probe)
            loaded = self._loaded(model)
        except BaseException as exc:  # noqa: BLE001
            return {"error": _portable(wrapped_error(_name(model), "failed while loading", exc)), **_where()}
        with kept_torch_state():
            prepared, errors = prepare_baselines(loaded, baselines, self.probe, self.runtime)
        return {"prepared": prepared, "errors": [(what, _portable(exc)) for what, exc in errors], **_where()}

    def _use(self, probe: list) -> None:
        """The probe set, from the node's object store, once per process.

        Its ref comes with every call, inside a list so that Ray does not copy it in each time: a
        restarted actor needs no constructor argument kept alive in the object store.
        """
        if self.probe_id != probe[0].hex():
            import ray

            self.probe_id, self.probe = probe[0].hex(), ray.get(probe[0])

    def _loaded(self, model: Any) -> LoadedModel:
        if self.name != _name(model):
            self.name = self.loaded = None  # the previous model's memory goes before the next one loads
            with kept_torch_state():
                loaded = model if isinstance(model, LoadedModel) else load_model(model, self.runtime.device)
                self.runtime.prepare(loaded.module)
            self.name, self.loaded = _name(model), loaded
        return self.loaded


def _name(model: Any) -> str:
    return model.spec.name if isinstance(model, LoadedModel) else model.name


class _Sink:
    """What `run_units` writes to on a worker: encoded shards kept for the driver, never a manifest."""

    def __init__(self, shared_root: str | None) -> None:
        self.shared_root = shared_root
        self.shards: list[tuple[dict, EncodedShard]] = []

    def write(self, unit: WorkUnit, maps) -> None:
        shard = encode_shard(unit, maps)
        if self.shared_root is not None:  # the store folder is on every node: the file goes into place here
            atomic_write(Path(self.shared_root) / shard_relpath(unit.key, unit.shard), shard.payload)
            shard = shard.without_payload()
        self.shards.append((unit.to_dict(), shard))


def _where() -> dict:
    """Which node and process did the work (recorded per unit: where the work ran)."""
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling (it goes back to the driver), else a ModelLoadError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any exception type may refuse to pickle
        return ModelLoadError(str(error))


@dataclasses.dataclass
class _Model:
    """The driver's view of one model in flight."""

    name: str
    ref: Any  # the spec (or loaded model) in Ray's object store: shipped once per node, not per call
    actor: Any = None  # the actor computing it now
    loaded: LoadedModel | None = None
    waiting: deque = dataclasses.field(default_factory=deque)  # (methods, units of one shard) not yet sent
    running: int = 0  # calls in flight
    failed: set = dataclasses.field(default_factory=set)  # method ids that failed
    prepared: dict = dataclasses.field(default_factory=dict)
    methods_of: dict = dataclasses.field(default_factory=dict)  # object ref of a call -> its methods
    actor_dead: bool = False
    removed: bool = False  # removed from the store by another process: nothing more of it is sent or stored
    bar: Any = None  # its own progress bar, over its shards, open while it is in flight


@dataclasses.dataclass(frozen=True)
class RayExecutor(Executor):
    """Embeds many models on a Ray cluster: a pool of actors, one model each at a time (see the module docstring).

    A configuration value: making one needs no Ray (it is imported when the executor runs), and it is
    checked when it is made; `check_runtime` checks it beside the runtime it is to run with.

    Parameters
    ----------
    shard_size : int, default 256
        Probe images per unit of work (`Executor`'s field).
    address : str or None, default None
        None starts a local Ray instance (unless this process is already connected to one, or
        ``RAY_ADDRESS`` names a cluster); "auto" joins the cluster this machine is a node of;
        "ray://head:10001" connects through Ray Client.
    gpus_per_model : float, default 0.0
        GPUs each model's actor asks for; a fraction (0.25) lets small models share a GPU. 0 runs on
        CPUs. Needs a CUDA device (`Runtime.device`), which on the workers is their own ``"cuda"``
        (Ray chooses the GPU and shows the actor that one only).
    cpus_per_model : float, default 1.0
        CPUs each model's actor asks for (Ray also caps its torch threads at this number).
    shared_store : bool, default False
        Workers write shard files into the store themselves (every node sees the store folder at
        the same path); False sends them back through Ray's object store.
    max_retries : int, default 3
        Restarts of a model's actor whose worker process died, each retrying its unfinished calls.
    runtime_env : dict or None, default None
        Ray's runtime environment for the workers (e.g. ``{"working_dir": "."}`` to ship the code of
        ``python:`` models to a remote cluster); used when this executor connects to Ray.

    Raises
    ------
    InputError
        A field out of its range or of the wrong type; the message names the field.
    """

    name: ClassVar[str] = "ray"

    address: str | None = option(None, "'auto' (the cluster this machine is in), ray://HOST:10001, or none to "
                                       "start a local Ray instance", flag="--ray-address", metavar="ADDR", type=str)
    gpus_per_model: float = option(0.0, "GPUs per model, a fraction shares one (e.g. 0.25), needs --device cuda",
                                   metavar="F")
    cpus_per_model: float = option(1.0, "CPUs per model", metavar="N")
    shared_store: bool = option(False, "every node sees --store at the same path; workers write shard files into "
                                       "it (default: shards come back through Ray's object store)")
    max_retries: int = 3
    runtime_env: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.address is not None and not isinstance(self.address, str):
            raise InputError(f"address: expected None, 'auto' or 'ray://HOST:PORT', got {self.address!r}")
        for name in ("gpus_per_model", "cpus_per_model"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"{name}: expected a number >= 0, got {value!r}")
        if self.gpus_per_model > 1 and self.gpus_per_model != int(self.gpus_per_model):
            raise InputError(f"gpus_per_model: a share of one GPU (0 < f <= 1) or a whole number, "
                             f"got {self.gpus_per_model!r}")
        if not self.cpus_per_model and not self.gpus_per_model:
            raise InputError("cpus_per_model: 0 with no GPUs would let Ray start every model at once; "
                             "give at least a share")
        if not isinstance(self.shared_store, bool):
            raise InputError(f"shared_store: expected True or False, got {self.shared_store!r}")
        object.__setattr__(self, "max_retries", check_int(self.max_retries, "max_retries", minimum=0))
        if self.runtime_env is not None and not isinstance(self.runtime_env, dict):
            raise InputError(f"runtime_env: expected a dict or None, got {type(self.runtime_env).__name__}")

    def check_runtime(self, runtime: Runtime) -> None:
        """InputError naming the field unless the per-model resources make sense with the runtime's device.

        Parameters
        ----------
        runtime : Runtime
            The runtime the workers are to run with.

        Raises
        ------
        InputError
            A CUDA device without GPUs per model, or GPUs per model on another device.
        """
        if runtime.device_type == "cuda" and not self.gpus_per_model:
            raise InputError("gpus_per_model: device is CUDA, but Ray shows an actor no GPU unless it asks for one; "
                             "give a share per model, e.g. RayExecutor(gpus_per_model=0.25) (--gpus-per-model 0.25)")
        if self.gpus_per_model and runtime.device_type != "cuda":
            raise InputError(f"gpus_per_model: {self.gpus_per_model!r} GPUs per model, but device is "
                             f"{runtime.device!r}; pass Runtime(device='cuda') (--device cuda)")

    def run(self, models: Sequence[Any], probe: Any, store: MapStore, job: Job,
            runtime: Runtime | None = None, progress: bool = True) -> list[dict]:
        """Load and compute every model on the cluster, committing shards to ``store`` as they arrive.

        Parameters
        ----------
        models : sequence of ModelSpec or LoadedModel
            The models, loaded on the workers (a LoadedModel is shipped as it is).
        probe : ProbeSet
            The probe images, put once in Ray's object store.
        store : MapStore
            The store; this process is its only writer.
        job : Job
            The caller's steps, model by model (`ModelSpace`'s).
        runtime : Runtime or None, default None
            How the models run on the workers; None: the default `Runtime`.
        progress : bool, default True
            One progress bar over all shards, with the models done in its description, and one per
            model in flight, over its shards (in a log: one line per model when it is done).

        Returns
        -------
        list of dict
            Where each computed unit ran: ``{"model", "method", "shard", "node", "pid"}`` per unit.

        Raises
        ------
        InputError
            Ray is not installed, or the resources do not fit the runtime.
        """
        runtime = Runtime() if runtime is None else runtime
        self.check_runtime(runtime)
        driver = _Driver(self, runtime, progress)
        driver.run(models, probe, store, job)
        return driver.placements


class _Driver:
    """One run of a `RayExecutor`: the connection, the actor pool and the shards in flight."""

    def __init__(self, config: "RayExecutor", runtime: Runtime, progress: bool) -> None:
        self.config, self.runtime, self.progress = config, runtime, progress
        self.placements: list[dict] = []

    def run(self, models: Sequence[Any], probe: Any, store: MapStore, job: Job) -> None:
        """Load and compute every model on the cluster, committing shards to ``store`` as they arrive."""
        ray = import_ray()
        self._connect(ray)
        self._ray = ray
        self._worker = ray.remote(max_restarts=self.config.max_retries, max_task_retries=self.config.max_retries)(ModelWorker)
        self._probe = [ray.put(probe)]  # once: every actor reads the same copy from its node's object store
        self._shared_root = str(store.root) if self.config.shared_store else None
        models = list(models)
        idle = deque(self._new_actor() for _ in range(min(self._slots(ray), len(models))))
        owner = uuid.uuid4().hex
        store.claims_.clear_stale()
        queue = deque(models)
        live: dict[str, _Model] = {}
        pending: dict[Any, tuple[str, str]] = {}  # object ref -> (model name, kind)
        held: dict[Any, list[WorkUnit]] = {}  # object ref of a run call -> the units claimed for it
        settled = 0
        try:
            with store.claims_.heartbeat(owner), progress_bar(total=0, desc=f"ray · 0 of {len(models)} models",
                                                              unit="shard", disable=not self.progress) as bar:
                while queue or live:
                    # Free actors go to new models first; models whose shards another process holds (it is
                    # computing them) get one back when no new model is left.
                    while idle and queue:
                        model = queue.popleft()
                        m = _Model(_name(model), ray.put(model), idle.popleft())
                        live[m.name] = m
                        pending[m.actor.load.remote(m.ref, self._probe)] = (m.name, "load")
                    for m in live.values():
                        if idle and m.actor is None and m.waiting:
                            m.actor = idle.popleft()
                    for m in live.values():
                        if m.actor is not None and m.loaded is not None:
                            for ref, units in self._dispatch(m, store, owner, job):
                                pending[ref], held[ref] = (m.name, "run"), units
                    if pending:
                        deferred = any(m.waiting and not m.running for m in live.values())
                        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S if deferred else 5.0)
                    else:
                        ready = []
                        time.sleep(POLL_S)  # every remaining shard is claimed by another process
                    for ref in ready:
                        name, kind = pending.pop(ref)
                        m = live[name]
                        if kind == "load":
                            self._loaded(ref, m, job, pending)
                            planned = sum(len(group) for _, group in m.waiting)  # known once it is planned
                            bar.total += planned
                            if planned:
                                m.bar = progress_bar(total=planned, desc=f"ray · {m.name}", unit="shard",
                                                     leave=False, disable=not self.progress)
                        elif kind == "baselines":
                            self._prepared(ref, m, job)
                        else:
                            m.running -= 1
                            try:
                                self._committed(ref, m, store, job)
                            finally:
                                units = held.pop(ref)
                                store.claims_.release(units, owner)
                            bar.update(len(units))
                            if m.bar is not None:
                                m.bar.update(len(units))
                    for m in list(live.values()):
                        if m.actor is not None and m.loaded is not None and not m.actor_dead:
                            for ref, units in self._dispatch(m, store, owner, job):  # e.g. just planned
                                pending[ref], held[ref] = (m.name, "run"), units
                        if m.actor is None or m.running or any(n == m.name for n, _ in pending.values()):
                            continue
                        # Nothing in flight: the model is done, or waits for shards another process holds.
                        idle.append(m.actor if not m.actor_dead else self._new_actor())
                        m.actor = None
                        if m.waiting and m.loaded is not None and not m.failed.issuperset(
                                meth.id for methods, _ in m.waiting for meth in methods):
                            continue  # shards another process holds: back to it when they are free or written
                        del live[m.name]
                        if m.bar is not None:
                            m.bar.close()
                        if m.loaded is not None and not m.removed:
                            try:
                                job.settle(m.loaded, m.failed, m.prepared)
                            except ModelRemovedError as exc:
                                self._removed(m, exc, job)
                        settled += 1
                        bar.set_description(f"ray · {settled} of {len(models)} models (last: {m.name})")
        finally:
            for units in held.values():  # an interrupted driver leaves no claim of a live process behind
                store.claims_.release(units, owner)
            for m in live.values():
                if m.bar is not None:
                    m.bar.close()
            for actor in [*idle, *(m.actor for m in live.values() if m.actor is not None)]:
                ray.kill(actor)

    def _new_actor(self):
        return self._worker.options(num_cpus=self.config.cpus_per_model, num_gpus=self.config.gpus_per_model).remote(
            self._worker_runtime(), self._shared_root)

    def _connect(self, ray) -> None:
        global _connection
        if ray.is_initialized():
            return  # the caller connected (to a cluster of its choice): leave the connection as it is
        kwargs: dict[str, Any] = {"log_to_driver": False}
        if self.config.runtime_env is not None:
            kwargs["runtime_env"] = self.config.runtime_env
        if self.config.address is None:
            kwargs["include_dashboard"] = False  # a local instance: nothing to look at, a process less
        ray.init(address=self.config.address, **kwargs)
        _connection = _connected_to(ray)

    def _slots(self, ray) -> int:
        """How many models the cluster can compute at once: its CPUs or GPUs over a model's share.

        At least 1: the size of the actor pool, fixed when the run starts.
        """
        resources = ray.cluster_resources()
        slots = resources.get("CPU", 1.0) / self.config.cpus_per_model if self.config.cpus_per_model else float("inf")
        if self.config.gpus_per_model:
            slots = min(slots, resources.get("GPU", 0.0) / self.config.gpus_per_model)
        return max(1, int(slots))

    def _worker_runtime(self) -> Runtime:
        if self.config.gpus_per_model:
            return dataclasses.replace(self.runtime, device="cuda")  # Ray shows the actor its GPU as cuda:0
        return self.runtime

    def _loaded(self, ref, m: _Model, job: Job, pending: dict) -> None:
        out = self._get(ref, m, "failed while loading")
        if "error" in out:
            m.actor_dead = "pid" not in out  # its actor died for good: the pool gets a fresh one
            job.failed(m.name, None, out["error"], out["remember"], None)
            return
        m.loaded = out["loaded"]
        try:
            for methods, units in job.admit(m.loaded):
                shards: dict[tuple[int, int], list[WorkUnit]] = {}
                for unit in units:
                    shards.setdefault((unit.start, unit.stop), []).append(unit)
                m.waiting.extend((methods, group) for group in shards.values())
            m.prepared, todo = job.stored(m.loaded)
        except ModelRemovedError as exc:
            self._removed(m, exc, job)
            return
        if todo:  # the others are in the store: no forward pass for them
            pending[m.actor.baselines.remote(m.ref, self._probe, todo)] = (m.name, "baselines")

    def _prepared(self, ref, m: _Model, job: Job) -> None:
        out = self._get(ref, m, "failed while preparing baselines")
        if m.removed:
            return
        if "error" in out:
            job.failed(m.name, ["baselines"], out["error"], False, m.loaded)
            return
        try:
            m.prepared.update(job.prepared(m.loaded, out["prepared"], out["errors"]))
        except ModelRemovedError as exc:
            self._removed(m, exc, job)

    def _dispatch(self, m: _Model, store: MapStore, owner: str, job: Job) -> list[tuple[Any, list]]:
        """Send the shards of ``m`` that are missing and free to claim; keep those another process holds."""
        sent, keep = [], deque()
        while m.waiting:
            methods, group = m.waiting.popleft()
            if any(meth.id in m.failed for meth in methods):
                continue  # its group failed on another shard: as locally, the rest of the group is dropped
            try:
                if not store.claims_.claim(group, owner):
                    keep.append((methods, group))  # a live process computes it now: look again later
                    continue
            except ModelRemovedError as exc:
                self._removed(m, exc, job)
                return sent
            todo = store.missing(group)  # it may have been written since it was planned
            if not todo:
                store.claims_.release(group, owner)
                job.counted(0, len(group))
                continue
            store.discard_partial(todo)
            job.counted(0, len(group) - len(todo))
            m.running += 1
            ref = m.actor.run.remote(m.ref, self._probe, [u.to_dict() for u in todo], methods)
            sent.append((ref, todo))
            m.methods_of[ref] = methods
        m.waiting = keep
        return sent

    def _committed(self, ref, m: _Model, store: MapStore, job: Job) -> None:
        """Verify and commit the shards of one returned call."""
        methods = m.methods_of.pop(ref)
        out = self._get(ref, m, "failed while running")
        if "error" in out:
            m.actor_dead = m.actor_dead or "pid" not in out
            if not m.removed:  # a removed model is reported once, as removed
                self._group_failed(m, methods, out["error"], out["remember"], job)
            return
        committed = 0
        for unit_dict, shard in out["shards"]:
            unit = WorkUnit.from_dict(unit_dict)
            try:
                store.commit(unit, shard, in_place=self.config.shared_store)
            except StorageError:
                raise  # the store itself: stop the run, as locally
            except ModelRemovedError as exc:  # sent before the removal: not stored (a file written in place is deleted)
                self._removed(m, exc, job)
                continue
            except StoreError as exc:  # a shard corrupted on its way: recorded, recomputed by the next run
                self._group_failed(m, methods, exc, False, job)
                break
            committed += 1
            self.placements.append({"model": m.name, "method": unit.key.method, "shard": unit.shard,
                                    "node": out["node"], "pid": out["pid"]})
        job.counted(committed, 0)

    def _removed(self, m: _Model, error: ModelRemovedError, job: Job) -> None:
        """The model was removed from the store by another process: reported once, nothing more of it sent."""
        if not m.removed:
            m.removed = True
            m.waiting.clear()
            job.failed(m.name, None, error, False, m.loaded)

    def _group_failed(self, m: _Model, methods: list, error: Exception, remember: bool, job: Job) -> None:
        fresh = [meth for meth in methods if meth.id not in m.failed]
        if fresh:  # once per method, however many of its shards were in flight
            m.failed.update(meth.id for meth in fresh)
            job.failed(m.name, fresh, error, remember, m.loaded)

    def _get(self, ref, m: _Model, doing: str) -> dict:
        """A call's result, or ``{"error"}`` (without "pid") when its actor died too often.

        Too often: more often than it may be restarted (`RayExecutor.max_retries`).
        """
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:
            error = ModelLoadError(f"model {m.name!r} {doing}: its Ray worker died {self.config.max_retries + 1} times "
                                   f"(max_retries={self.config.max_retries}): {str(exc).splitlines()[0]}")
            return {"error": error, "remember": False}
