"""Stored attribution maps: keys, the runtime, the executor, the store and its manifest.

The step between attribution and similarity: every model's maps over the probe set, computed once
per (model, probe set, method, probe size) and kept on disk in shards that survive crashes and are
shared by concurrent processes.
"""

from .activations import encoder_activations, prepare_baselines, source_probabilities
from .executor import (LocalExecutor, compute_maps, repeatable, run_error, run_exclusive, run_unit, run_units,
                       wrapped_error)
from .keys import EntryKey, WorkUnit, plan_units
from .runtime import PRECISIONS, Runtime, kept_torch_state
from .store import EncodedShard, MapStore, ShardInfo, encode_shard, half_key, shard_relpath

__all__ = ["EncodedShard", "EntryKey", "LocalExecutor", "MapStore", "PRECISIONS", "Runtime", "ShardInfo", "WorkUnit",
           "compute_maps", "encode_shard", "encoder_activations", "half_key", "kept_torch_state", "plan_units", "prepare_baselines", "repeatable", "run_error",
           "run_exclusive", "run_unit",
           "run_units", "shard_relpath", "source_probabilities", "wrapped_error"]
