"""modelspace: which pre-trained vision model transfers best to which task, without labels.

The pipeline, in the order of the package's modules: probe → models → attribution → store →
affinity → evaluation / tree → report. `ModelSpace` runs it all; the CLI (`modelspace`) wraps it.
"""

__version__ = "0.1.0"

from .attribution import attribute, get_method  # noqa: E402
from .evaluation import GroundTruth  # noqa: E402
from .models import LoadedModel, ModelSpec, load_model, load_zoo  # noqa: E402
from .probe import ProbeSet  # noqa: E402
from .space import ModelSpace  # noqa: E402

__all__ = ["ModelSpace", "ProbeSet", "ModelSpec", "LoadedModel", "GroundTruth", "load_zoo", "load_model",
           "attribute", "get_method", "__version__"]
