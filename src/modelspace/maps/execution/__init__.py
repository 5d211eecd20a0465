"""How attribution maps are computed: the runtime a model runs under and the executors that run units.

`Runtime` fixes how one model runs (device, precision, memory layout, batch); an executor says where the
units run: `LocalExecutor` in this process, `RayExecutor` (`ray`, which imports Ray only when it runs) on
a cluster. Both are configuration values whose fields are the CLI's options. They read and write through
`maps.storage`, which knows nothing of them.
"""

from .activations import encoder_activations, prepare_baselines, source_probabilities
from .executor import (Executor, LocalExecutor, compute_maps, repeatable, run_error, run_exclusive, run_unit,
                       run_units, wrapped_error)
from .ray import RayExecutor
from .runtime import Runtime, kept_torch_state

EXECUTORS: dict[str, type[Executor]] = {cls.name: cls for cls in (LocalExecutor, RayExecutor)}
"""The executors by their name on the command line (``--executor``)."""

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "Runtime", "compute_maps",
           "encoder_activations", "kept_torch_state", "prepare_baselines", "repeatable", "run_error", "run_exclusive",
           "run_unit", "run_units", "source_probabilities", "wrapped_error"]
