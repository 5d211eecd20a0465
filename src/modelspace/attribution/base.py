"""The one attribution mechanism every method is declared over.

An attribution of the scalar mean(R) with respect to the input x is, for every method here,
one forward pass to the encoder output R and one backward pass from it:

    R = encoder(x)                       # the forward stops at R
    g = backward(R, seed=method.backward_seed(R))  # d mean(R) / dx, possibly through modified rules
    A = method.read(x, g)                # |g|, x * g, the relevance itself, ...
    M = method.finish(T⁻¹(A))            # at probe size: the map as it is stored and compared

A method is a small declaration (a frozen dataclass, `registry.Declared`) of the parts that differ:
the seed of the backward pass (`backward_seed`, or several, `seeds`, one map per direction of R),
the rules active while the graph is built
(ε-LRP swaps the backward of linear operations), the input passes (several for integrated
gradients, SmoothGrad or ModelGiF), how the map is read off, and how it is finished at probe
size (`finish`: a channel mean, an absolute value, pooling; `methods.MapTransform`).

Several seeds (``directions`` = K > 1) give K maps per image: `attribute` returns them as
(B, K, C, H, W), the store keeps them as one row of K·F values, and the affinity compares two
models' K maps per image as subspaces (`similarity.affinity_matrix(..., directions=K)`).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, ContextManager, Iterator, Sequence

import torch
from torch import nn

from ..errors import AttributionError, InputError
from ..models.encoder import Encoder, EncoderTap
from ..registry import Declared, Registry


class AttributionMethod(Declared):
    """Base declaration: the gradient of mean(R), read off as-is. Subclasses override parts.

    A subclass is a frozen dataclass whose fields are its parameters (`registry.param`); its id and
    store key (`ident`) follow from them and from `rules_version`.
    """

    name: ClassVar[str] = "gradient"
    rules_version: ClassVar[int] = 0
    """Raised whenever a method's rules come to compute something else for some model, so that maps
    stored under the old rules are never reused: it is part of the store key (`store_id`), not of `id`."""

    def version(self) -> tuple[str, int]:
        """The store key's version: the rules version."""
        return "rules", self.rules_version

    directions: int = 1
    """Maps per image: the number of tensors `seeds` returns (1: one map, compared by cosine)."""

    @property
    def cost(self) -> float:
        """Cost per image as a multiple of one forward+backward pass (an upper bound: K backward
        passes over one forward count as K). Saliency and gradient×input share theirs."""
        return 1.0

    @property
    def store_id(self) -> str:
        """The method's part of a store key (`identity.EstimatorId.store_key` at fp32)."""
        return self.ident.store_key

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        """Backward rules active while the forward pass builds the graph (none: plain autograd)."""
        return contextlib.nullcontext()

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        """Gradient of mean(R) with respect to R, per sample: 1/D everywhere."""
        d = r[0].numel()
        return torch.full_like(r, 1.0 / d)

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        """The seeds of the backward passes, one per direction of R (`directions` of them); each
        gives one map. By default the one seed of mean(R)."""
        return [self.backward_seed(r)]

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """Inputs to differentiate at, with the weight of each gradient (one pass by default)."""
        yield x, 1.0

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Turn the (weighted) gradient at the input into the attribution map."""
        return grad

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        """The maps at probe size (N, C, S, S), after T_i⁻¹, as they are stored and compared
        (as they are by default). Runs per direction: N is B·K when there are K directions."""
        return maps

    @property
    def plain_gradient(self) -> bool:
        """True when only `read` and `finish` differ from the base: such methods can share one
        backward pass."""
        cls = type(self)
        return self.directions == 1 and all(getattr(cls, part) is getattr(AttributionMethod, part)
                                            for part in ("rules", "backward_seed", "seeds", "passes"))


METHODS = Registry("attribution method")
register_method = METHODS.register

DEFAULT_METHODS = ("saliency", "gradient_x_input", "lrp_epsilon")
"""The seed paper's three methods: what `ModelSpace`, the CLI and the benchmarks use by default."""


def get_method(method: str | AttributionMethod, /, **params: Any) -> AttributionMethod:
    """A configured method from a name or alias ('saliency', 'gxi', 'lrp', ...), or the object as is."""
    return METHODS.get(method, **params)


def list_methods() -> dict[str, str]:
    """Every registered method's name with the first line of its docstring, sorted by name."""
    return METHODS.describe()


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


def backward_groups(methods: Sequence[AttributionMethod]) -> list[list[AttributionMethod]]:
    """The methods grouped by the backward pass they can share.

    Methods that differ only in how they read the gradient (saliency, gradient×input) form one
    group, first; every other method is a group of its own, so that a method a model cannot
    support (ε-LRP through attention, say) fails by itself.
    """
    plain = [m for m in methods if m.plain_gradient]
    return ([plain] if plain else []) + [[m] for m in methods if not m.plain_gradient]


def attribute_many(
    module: nn.Module,
    x: torch.Tensor,
    methods: Sequence[AttributionMethod],
    encoder: str | Encoder | None = None,
    model_name: str = "model",
) -> dict[str, torch.Tensor]:
    """Maps of several methods for one batch, keyed by method id; each of `backward_groups` runs
    one forward+backward pass."""
    maps = {}
    for group in backward_groups(methods):
        if group[0].plain_gradient:
            grad = attribute(module, x, "gradient", encoder, model_name)
            maps.update({m.id: m.read(x.detach(), grad) for m in group})
        else:
            maps[group[0].id] = attribute(module, x, group[0], encoder, model_name)
    return {m.id: maps[m.id] for m in methods}


def attribute(
    module: nn.Module,
    x: torch.Tensor,
    method: str | AttributionMethod = "saliency",
    encoder: str | Encoder | None = None,
    model_name: str = "model",
) -> torch.Tensor:
    """Attribution maps of mean(R) w.r.t. a batch of model inputs `x` (B, C, H, W).

    `encoder` names the module whose output is R (None: the whole model output), or is an `Encoder`
    (a loaded model's `encoder_ref`), which also lays R out as a map. Returns a
    float32 tensor shaped like `x`, in the model's input space, one map per sample; samples
    are independent because the model runs in eval mode. A method with K = `directions` > 1
    seeds returns (B, K, C, H, W): K backward passes per forward pass (the graph is kept between
    them), one map per seed. `method.finish` is not applied here (it works at probe size).
    """
    method = get_method(method)
    if x.ndim < 2:
        raise InputError(f"{model_name}: input batch must have a batch dimension, got shape {tuple(x.shape)}")
    x = x.detach()
    k = method.directions
    totals = [torch.zeros_like(x) for _ in range(k)]
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
                seeds = method.seeds(r.detach())
                if len(seeds) != k:
                    raise AttributionError(f"{model_name}: method {method.id} declares {k} directions but "
                                           f"its seeds gave {len(seeds)}")
                for i, seed in enumerate(seeds):
                    (grad,) = torch.autograd.grad(r, x_pass, grad_outputs=seed, allow_unused=True,
                                                  retain_graph=i < k - 1)
                    if grad is not None:
                        totals[i] += weight * grad
    if k == 1:
        return method.read(x, totals[0])
    return torch.stack([method.read(x, total) for total in totals], dim=1)
