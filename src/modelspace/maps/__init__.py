"""Attribution maps, stored and computed.

Stored in `storage` (keys, store, manifest, files, claims); computed in `execution` (the runtime, the
local and Ray executors, encoder activations).

The step between attribution and similarity: every model's maps over the probe set, computed once
per (model, probe set, method, probe size) and kept on disk in shards that survive crashes and are
shared by concurrent processes.
"""

from .execution import (EXECUTORS, Executor, LocalExecutor, RayExecutor, Runtime, compute_maps,
                        encoder_activations, kept_torch_state, prepare_baselines, repeatable, run_error, run_exclusive,
                        run_unit, run_units, source_probabilities, wrapped_error)
from .storage import (EncodedShard, EntryKey, MapStore, ShardInfo, WorkUnit, encode_shard, file_sha256, half_key,
                      plan_units, shard_relpath)

__all__ = ["EXECUTORS", "EncodedShard", "EntryKey", "Executor", "LocalExecutor", "MapStore",
           "RayExecutor", "Runtime", "ShardInfo", "WorkUnit", "compute_maps", "encode_shard", "encoder_activations",
           "file_sha256", "half_key", "kept_torch_state", "plan_units", "prepare_baselines", "repeatable",
           "run_error", "run_exclusive", "run_unit", "run_units", "shard_relpath", "source_probabilities",
           "wrapped_error"]
