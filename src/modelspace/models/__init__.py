"""Models: specifications and the source registry (spec), zoo files (zoo), loaders (sources), encoder
capture (encoder) and input transforms (transforms)."""

from modelspace.models.encoder import EncoderTap, first_tensor, resolve_module
from modelspace.models.sources import LoadedModel, load_model, model_key, state_dict_hash
from modelspace.models.spec import SOURCES, ModelSpec, list_sources, register_source, spec_from_dict
from modelspace.models.transforms import InputTransform
from modelspace.models.zoo import load_zoo

__all__ = [
    "EncoderTap",
    "InputTransform",
    "LoadedModel",
    "ModelSpec",
    "SOURCES",
    "first_tensor",
    "load_model",
    "list_sources",
    "load_zoo",
    "model_key",
    "register_source",
    "resolve_module",
    "spec_from_dict",
    "state_dict_hash",
]
