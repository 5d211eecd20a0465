"""Models: specifications and the source registry (spec), zoo files (zoo), loaders (sources), encoder
capture (encoder) and input transforms (transforms)."""

from modelspace.models.encoder import EncoderTap, first_tensor, resolve_module
from modelspace.models.sources import (
    SOURCES,
    LoadedModel,
    load_model,
    model_key,
    register_source,
    state_dict_hash,
)
from modelspace.models.spec import ModelSpec, spec_from_dict
from modelspace.models.zoo import load_zoo
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
