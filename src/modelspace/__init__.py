"""modelspace: which pre-trained vision model transfers best to which task, without labels.

The pipeline, in the order of the package's modules: probe → models → attribution → maps →
similarity → evaluation → results / report. `ModelSpace` runs it all; the CLI (`modelspace`) wraps it.
"""

from ._version import __version__
from .attribution import attribute, get_method
from .evaluation import GroundTruth
from .maps import LocalExecutor, RayExecutor, Runtime
from .models import LoadedModel, ModelSpec, load_model, load_zoo
from .probe import ProbeSet
from .space import ModelSpace

__all__ = ["ModelSpace", "ProbeSet", "ModelSpec", "LoadedModel", "GroundTruth", "Runtime", "LocalExecutor",
           "RayExecutor", "load_zoo", "load_model", "attribute", "get_method", "__version__"]
