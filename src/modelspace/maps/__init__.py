"""Stored attribution maps: keys, the runtime, the executor, the store and its manifest.

The step between attribution and similarity: every model's maps over the probe set, computed once
per (model, probe set, method, probe size) and kept on disk in shards that survive crashes and are
shared by concurrent processes.
"""

from .activations import encoder_activations, source_probabilities
from .executor import LocalExecutor, compute_maps, run_exclusive, run_unit, run_units
from .keys import EntryKey, WorkUnit, method_key, plan_units
from .runtime import PRECISIONS, Runtime, kept_torch_state
from .store import MapStore, ShardInfo

__all__ = ["EntryKey", "LocalExecutor", "MapStore", "PRECISIONS", "Runtime", "ShardInfo", "WorkUnit",
           "compute_maps", "encoder_activations", "kept_torch_state", "method_key", "plan_units", "run_exclusive", "run_unit",
           "run_units", "source_probabilities"]
