"""The one attribution mechanism every method is declared over.

An attribution of the scalar mean(R) with respect to the input x is, for every method here,
one forward pass to the encoder output R and one backward pass from it:

    R = encoder(x)                       # the forward stops at R
    g = backward(R, seed=method.seed(R)) # d mean(R) / dx, possibly through modified rules
    A = method.read(x, g)                # |g|, x * g, the relevance itself, ...

A method is a small declaration of the parts that differ: the seed of the backward pass, the
rules active while the graph is built (ε-LRP swaps the backward of linear operations), the
input passes (several for integrated gradients or SmoothGrad) and how the map is read off.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Callable, ClassVar, ContextManager, Iterator

import torch
from torch import nn

from ..errors import AttributionError, InputError
from ..models.encoder import EncoderTap

METHODS: dict[str, type["AttributionMethod"]] = {}
ALIASES: dict[str, str] = {}


def register_method(*aliases: str) -> Callable[[type["AttributionMethod"]], type["AttributionMethod"]]:
    """Class decorator adding a method to the registry under its `name` (and aliases)."""

    def add(cls: type[AttributionMethod]) -> type[AttributionMethod]:
        METHODS[cls.name] = cls
        for alias in aliases:
            ALIASES[alias] = cls.name
        return cls

    return add


class AttributionMethod:
    """Base declaration: the gradient of mean(R), read off as-is. Subclasses override parts."""

    name: ClassVar[str] = "gradient"

    def __init__(self, **params: float) -> None:
        allowed = {p for p in inspect.signature(type(self).__init__).parameters if p != "self"}
        unknown = set(params) - allowed
        if unknown:
            raise InputError(f"method {self.name!r} has no parameter(s) {sorted(unknown)}")

    @property
    def params(self) -> dict[str, float]:
        """Parameters that change the maps (part of the store key)."""
        return {}

    @property
    def id(self) -> str:
        """Canonical identity, e.g. 'saliency' or 'lrp_epsilon(epsilon=1e-06)'."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"

    def __repr__(self) -> str:
        return self.id

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        """Backward rules active while the forward pass builds the graph (none: plain autograd)."""
        return contextlib.nullcontext()

    def seed(self, r: torch.Tensor) -> torch.Tensor:
        """Gradient of mean(R) with respect to R, per sample: 1/D everywhere."""
        d = r[0].numel()
        return torch.full_like(r, 1.0 / d)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """Inputs to differentiate at, with the weight of each gradient (one pass by default)."""
        yield x, 1.0

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Turn the (weighted) gradient at the input into the attribution map."""
        return grad


def get_method(method: str | AttributionMethod, **params: float) -> AttributionMethod:
    """Look a method up by name or alias ('saliency', 'gxi', 'lrp', ...) and configure it."""
    if isinstance(method, AttributionMethod):
        if params:
            raise InputError("pass parameters either to the method object or to get_method, not both")
        return method
    if not isinstance(method, str):
        raise InputError(f"method must be a name or an AttributionMethod, got {type(method).__name__}")
    key = ALIASES.get(method, method)
    if key not in METHODS:
        known = sorted(set(METHODS) | set(ALIASES))
        raise InputError(f"unknown attribution method {method!r}; known: {', '.join(known)}")
    return METHODS[key](**params)


@contextlib.contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Parameters need no gradient: only the input does. Restores the flags afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def attribute(
    module: nn.Module,
    x: torch.Tensor,
    method: str | AttributionMethod = "saliency",
    encoder: str | None = None,
    model_name: str = "model",
) -> torch.Tensor:
    """Attribution maps of mean(R) w.r.t. a batch of model inputs `x` (B, C, H, W).

    `encoder` names the module whose output is R (None: the whole model output). Returns a
    float32 tensor shaped like `x`, in the model's input space, one map per sample; samples
    are independent because the model runs in eval mode.
    """
    method = get_method(method)
    if x.ndim < 2:
        raise InputError(f"{model_name}: input batch must have a batch dimension, got shape {tuple(x.shape)}")
    x = x.detach()
    total = torch.zeros_like(x)
    tap = EncoderTap(module, encoder, model_name=model_name)
    with frozen_parameters(module), torch.enable_grad():
        for x_pass, weight in method.passes(x):
            x_pass = x_pass.detach().requires_grad_(True)
            with method.rules(module, model_name):
                r = tap(x_pass)
                if not isinstance(r, torch.Tensor) or not r.is_floating_point():
                    raise AttributionError(f"{model_name}: the encoder output is not a floating-point tensor")
                if not r.requires_grad:
                    # R does not depend on the input: every map is zero, reported downstream.
                    continue
                (grad,) = torch.autograd.grad(r, x_pass, grad_outputs=method.seed(r.detach()), allow_unused=True)
            if grad is not None:
                total += weight * grad
    return method.read(x, total)
