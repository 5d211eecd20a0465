"""Attribution maps of mean(R) with respect to the input (step 3 of the pipeline)."""

from . import methods as _methods  # noqa: F401  (registers the methods)
from .base import METHODS, AttributionMethod, attribute, attribute_many, get_method, register_method
from .lrp import epsilon_rules

__all__ = ["METHODS", "AttributionMethod", "attribute", "attribute_many", "get_method", "register_method", "epsilon_rules"]
