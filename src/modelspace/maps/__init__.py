"""Stored attribution maps: keys, the runtime, the executors, the store and its manifest.

The step between attribution and similarity: every model's maps over the probe set, computed once
per (model, probe set, method, probe size) and kept on disk in shards that survive crashes and are
shared by concurrent processes.
"""

from .activations import encoder_activations, prepare_baselines, source_probabilities
from .executor import (Executor, LocalExecutor, compute_maps, repeatable, run_error, run_exclusive, run_unit,
                       run_units, wrapped_error)
from .keys import EntryKey, WorkUnit, method_key, plan_units
from .ray_executor import RayExecutor
from .runtime import PRECISIONS, Runtime, kept_torch_state
from .store import EncodedShard, MapStore, ShardInfo, encode_shard, half_key, shard_relpath

#: The executors by their name on the command line (``--executor``).
EXECUTORS: dict[str, type[Executor]] = {cls.name: cls for cls in (LocalExecutor, RayExecutor)}

__all__ = ["EXECUTORS", "EncodedShard", "EntryKey", "Executor", "LocalExecutor", "MapStore", "PRECISIONS",
           "RayExecutor", "Runtime", "ShardInfo", "WorkUnit", "compute_maps", "encode_shard", "encoder_activations",
           "half_key", "kept_torch_state", "method_key", "plan_units", "prepare_baselines", "repeatable", "run_error",
           "run_exclusive", "run_unit", "run_units", "shard_relpath", "source_probabilities", "wrapped_error"]
