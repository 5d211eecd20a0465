"""Models: specifications, zoo files, loaders, encoder capture and input transforms.

Specifications and the source registry (spec), zoo files (zoo), loaders (sources, and the Taskonomy
encoders in taskonomy), encoder capture (encoder) and input transforms (transforms).
"""

from modelspace.models.encoder import ChannelsLast, Encoder, EncoderTap, TokenGrid, first_tensor, resolve_module
from modelspace.models.sources import (
    PROBE_SIZE_CAP,
    LoadedModel,
    OwnConfig,
    check_sources,
    hub_offline_mode,
    load_model,
    load_repeatable,
    model_key,
    offline_needed,
    own_config,
    probe_size_for,
    spec_key,
    state_dict_hash,
)
from modelspace.models.spec import (
    SOURCES,
    ModelSpec,
    describe_preprocessing,
    list_sources,
    normalise_name,
    register_source,
    resolve_preprocessing,
    spec_from_dict,
)
from modelspace.models.transforms import InputTransform
from modelspace.models.zoo import load_zoo
from modelspace.models import taskonomy  # noqa: E402,F401 - registers the taskonomy: source

__all__ = [
    "ChannelsLast",
    "Encoder",
    "EncoderTap",
    "InputTransform",
    "LoadedModel",
    "ModelSpec",
    "OwnConfig",
    "PROBE_SIZE_CAP",
    "SOURCES",
    "TokenGrid",
    "check_sources",
    "describe_preprocessing",
    "first_tensor",
    "hub_offline_mode",
    "load_model",
    "load_repeatable",
    "list_sources",
    "load_zoo",
    "model_key",
    "normalise_name",
    "offline_needed",
    "own_config",
    "probe_size_for",
    "register_source",
    "resolve_module",
    "resolve_preprocessing",
    "spec_from_dict",
    "spec_key",
    "state_dict_hash",
]
