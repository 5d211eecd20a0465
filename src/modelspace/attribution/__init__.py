"""Attribution maps of mean(R) (or of other directions of R) with respect to the input.

One mechanism (`base`), methods declared over it (`methods`, `lrp`).
"""

from . import methods  # noqa: F401  (registers the methods)
from .base import (
    DEFAULT_METHODS,
    METHODS,
    AttributionMethod,
    attribute,
    attribute_many,
    backward_groups,
    get_method,
    list_methods,
    register_method,
)
from .lrp import epsilon_rules
from .methods import INPUT_BASELINES, MapTransform, input_baseline

__all__ = ["DEFAULT_METHODS", "INPUT_BASELINES", "METHODS", "AttributionMethod", "MapTransform", "attribute", "attribute_many",
           "backward_groups", "input_baseline",
           "epsilon_rules", "get_method", "list_methods", "register_method"]
