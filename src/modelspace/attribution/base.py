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
        """The store key's version: the rules version.

        Returns
        -------
        tuple of (str, int)
            ("rules", `rules_version`).
        """
        return "rules", self.rules_version

    directions: int = 1
    """Maps per image: the number of tensors `seeds` returns (1: one map, compared by cosine)."""

    @property
    def cost(self) -> float:
        """Cost per image as a multiple of one forward+backward pass.

        An upper bound: K backward passes over one forward count as K. Saliency and gradient×input
        share theirs.
        """
        return 1.0

    @property
    def store_id(self) -> str:
        """The method's part of a store key (`identity.EstimatorId.store_key` at fp32)."""
        return self.ident.store_key

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        """Backward rules active while the forward pass builds the graph (none: plain autograd).

        Parameters
        ----------
        module : nn.Module
            The model the forward pass runs through.
        model_name : str
            Its name, for error messages.

        Returns
        -------
        ContextManager
            Entered around the forward pass (and the backward passes from it); a null context here.
        """
        return contextlib.nullcontext()

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        """Gradient of mean(R) with respect to R, per sample: 1/D everywhere.

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R, (B, ...) with D values per sample (detached).

        Returns
        -------
        torch.Tensor
            The seed of the backward pass, shaped like ``r``.
        """
        d = r[0].numel()
        return torch.full_like(r, 1.0 / d)

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        """The seeds of the backward passes, one per direction of R; each gives one map.

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R, (B, ...) (detached).

        Returns
        -------
        list of torch.Tensor
            `directions` seeds, each shaped like ``r``: by default the one seed of mean(R)
            (`backward_seed`).
        """
        return [self.backward_seed(r)]

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """Inputs to differentiate at, with the weight of each gradient (one pass by default).

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Yields
        ------
        x_pass : torch.Tensor
            An input to differentiate at, shaped like ``x``.
        weight : float
            The weight of its gradient in the sum `read` is given.
        """
        yield x, 1.0

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Turn the (weighted) gradient at the input into the attribution map.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``: the gradient itself here.
        """
        return grad

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        """The maps at probe size, after T_i⁻¹, as they are stored and compared.

        Runs per direction: N is B·K when there are K directions.

        Parameters
        ----------
        maps : torch.Tensor
            (N, C, S, S) maps at probe size S.

        Returns
        -------
        torch.Tensor
            The finished maps: ``maps`` as they are by default.
        """
        return maps

    @property
    def plain_gradient(self) -> bool:
        """True when only `read` and `finish` differ from the base.

        Such methods can share one backward pass (`backward_groups`).
        """
        cls = type(self)
        return self.directions == 1 and all(getattr(cls, part) is getattr(AttributionMethod, part)
                                            for part in ("rules", "backward_seed", "seeds", "passes"))


METHODS = Registry("attribution method")
register_method = METHODS.register

DEFAULT_METHODS = ("saliency", "gradient_x_input", "lrp_epsilon")
"""The seed paper's three methods: what `ModelSpace`, the CLI and the benchmarks use by default."""


def get_method(method: str | AttributionMethod, /, **params: Any) -> AttributionMethod:
    """A configured method from a name or alias ('saliency', 'gxi', 'lrp', ...), or the object as is.

    Parameters
    ----------
    method : str or AttributionMethod
        A name, an alias, an id (``'lrp_epsilon(epsilon=0.01)'``) or a method.
    **params
        Its parameters, beside those of the id.

    Returns
    -------
    AttributionMethod
        The configured method.

    Raises
    ------
    InputError
        An unknown name, a parameter the method does not take or a bad value (`registry.Registry.get`).
    """
    return METHODS.get(method, **params)


def list_methods() -> dict[str, str]:
    """Every registered method's name with the first line of its docstring, sorted by name.

    Returns
    -------
    dict of str to str
        Name -> the summary line of its docstring.
    """
    return METHODS.describe()


@contextlib.contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Parameters need no gradient: only the input does. Restores the flags afterwards.

    Parameters
    ----------
    module : nn.Module
        The model whose parameters stop requiring gradients while the context is open.

    Yields
    ------
    None
        Once, with the parameters frozen.
    """
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

    Parameters
    ----------
    methods : sequence of AttributionMethod
        The methods to run.

    Returns
    -------
    list of list of AttributionMethod
        The groups, each in the order of ``methods``.
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
    """Maps of several methods for one batch, keyed by method id.

    Each of `backward_groups` runs one forward+backward pass.

    Parameters
    ----------
    module : nn.Module
        The model, in eval mode.
    x : torch.Tensor
        The input batch (B, C, H, W), in the model's input space.
    methods : sequence of AttributionMethod
        The configured methods.
    encoder : str or Encoder, optional
        What `attribute` takes: the module whose output is R (None: the whole model output).
    model_name : str, default "model"
        The model's name, for error messages.

    Returns
    -------
    dict of str to torch.Tensor
        Method id -> its maps as `attribute` returns them, in the order of ``methods``.

    Raises
    ------
    InputError
        An input without a batch dimension.
    AttributionError
        An encoder output that is not a floating-point tensor, or a method whose seeds are not
        `directions` many.
    """
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

    Parameters
    ----------
    module : nn.Module
        The model, in eval mode; its parameters' gradient flags are restored afterwards.
    x : torch.Tensor
        The input batch (B, C, H, W), in the model's input space.
    method : str or AttributionMethod, default "saliency"
        A method, or what `get_method` takes.
    encoder : str or Encoder, optional
        The module name whose output is R, or an `Encoder`; None: the whole model output.
    model_name : str, default "model"
        The model's name, for error messages.

    Returns
    -------
    torch.Tensor
        The maps, shaped like ``x``, or (B, K, C, H, W) for K directions; zero where R does not
        depend on the input.

    Raises
    ------
    InputError
        An input without a batch dimension, or a method `get_method` refuses.
    AttributionError
        An encoder output that is not a floating-point tensor, or a method whose seeds are not
        `directions` many.
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
