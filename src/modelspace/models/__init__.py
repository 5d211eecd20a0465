"""Models: zoo specifications, the source registry, encoder capture and input transforms."""

from modelspace.models.encoder import EncoderTap, first_tensor, resolve_module
from modelspace.models.sources import (
    SOURCES,
    LoadedModel,
    load_model,
    model_key,
    register_source,
    state_dict_hash,
)
from modelspace.models.spec import ModelSpec, load_zoo, spec_from_dict
from modelspace.models.transforms import InputTransform

__all__ = [
    "EncoderTap",
    "InputTransform",
    "LoadedModel",
    "ModelSpec",
    "SOURCES",
    "first_tensor",
    "load_model",
    "load_zoo",
    "model_key",
    "register_source",
    "resolve_module",
    "spec_from_dict",
    "state_dict_hash",
]
