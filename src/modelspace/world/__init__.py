"""A miniature Taskonomy: procedural indoor scenes, an exact ray caster, and 20 task labels.

    >>> from modelspace.world import render_batch, TASKS
    >>> batch = render_batch(8, seed=0)            # batch["rgb"]: 8×64×64×3 float32
    >>> batch["depth_z"].shape, TASKS["depth_z"][0]
    ((8, 64, 64, 1), 'dense_regression')

Conventions (frames, units, ranges) are documented in `modelspace.world.render`.
"""

import importlib

from .labels import (
    CURVATURE_SCALE,
    N_SEGMENTS,
    SMOOTHED,
    TASKS,
    centre_patch,
    mask_centre,
    noisy,
    task_input,
    to_grey,
)
from .scene import (
    DOMAINS,
    MAX_DEPTH,
    MAX_OBJECTS,
    N_CLASSES,
    OBJECT_TYPES,
    ROOM_SURFACES,
    SEMANTIC_CLASSES,
    Domain,
    Scene,
    sample_scene,
)

# The renderer is imported on first use, so that ``python -m modelspace.world.render`` runs it fresh.
_RENDER_NAMES = ("AUX_KEYS", "camera_rays", "render", "render_batch", "render_index", "room_layout", "scene_rng")


def __getattr__(name: str):
    if name not in _RENDER_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.render")
    # Importing the submodule binds the name "render" to it here; rebind the public names instead.
    globals().update({n: getattr(module, n) for n in _RENDER_NAMES})
    return globals()[name]


__all__ = [
    "AUX_KEYS",
    "CURVATURE_SCALE",
    "DOMAINS",
    "MAX_DEPTH",
    "MAX_OBJECTS",
    "N_CLASSES",
    "N_SEGMENTS",
    "SMOOTHED",
    "OBJECT_TYPES",
    "ROOM_SURFACES",
    "SEMANTIC_CLASSES",
    "TASKS",
    "Domain",
    "Scene",
    "camera_rays",
    "centre_patch",
    "mask_centre",
    "noisy",
    "render",
    "render_batch",
    "render_index",
    "room_layout",
    "sample_scene",
    "scene_rng",
    "task_input",
    "to_grey",
]
