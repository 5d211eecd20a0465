"""How attribution maps are computed: the runtime a model runs under and the executors that run units.

`Runtime` fixes how one model runs (device, precision, memory layout, batch); the local executor runs
a store's units in this process, the Ray executor (`ray`, imported only when used) on a cluster. Both
read and write through `maps.storage`, which knows nothing of them.
"""

from .activations import encoder_activations, prepare_baselines, source_probabilities
from .executor import (LocalExecutor, compute_maps, repeatable, run_error, run_exclusive, run_unit, run_units,
                       wrapped_error)
from .runtime import PRECISIONS, Runtime, kept_torch_state

__all__ = ["LocalExecutor", "PRECISIONS", "Runtime", "compute_maps", "encoder_activations", "kept_torch_state",
           "prepare_baselines", "repeatable", "run_error", "run_exclusive", "run_unit", "run_units",
           "source_probabilities", "wrapped_error"]
