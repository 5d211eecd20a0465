"""Exception types. Each names the file, model or field at fault.

`InputError` (and subclasses) means the user's input is wrong: the CLI exits with code 2.
Any other `ModelspaceError` is a failure inside a run: exit code 1.
"""


class ModelspaceError(Exception):
    """Base class of every error modelspace raises on purpose."""


class InputError(ModelspaceError, ValueError):
    """Bad user input: a zoo file, a probe folder, an argument."""


class ZooError(InputError):
    """A malformed zoo file or model specification (names the model and the field)."""


class ProbeError(InputError):
    """A probe set that cannot be used (names the folder or file)."""


class GroundTruthError(InputError):
    """A ground-truth file that cannot be read (names the file and the row)."""


class ModelLoadError(ModelspaceError):
    """A model that failed to load or to run (names the model)."""


class AttributionError(ModelspaceError):
    """An attribution that cannot be computed (names the model and the layer)."""


class DegenerateMapsError(AttributionError):
    """All-zero or non-finite attribution maps (names the model and the image count)."""


class StoreError(ModelspaceError):
    """A store that is unreadable or inconsistent (names the file)."""
