"""Attribution methods as short declarations over `base.AttributionMethod`.

The seed paper's three: saliency, gradient×input and ε-LRP. Integrated gradients and
SmoothGrad are passes over any method (`Wrapping`): ``smoothgrad(method='lrp_epsilon')`` runs ε-LRP
at the noisy copies. Beyond the paper:

    modelgif                   ModelGiF's gradient field (Song et al., ICCV 2023): path-integrated
                               gradient×input of Σ_c max_pos R_c from a shuffled-image baseline
    gradient_x_input_subspace  gradient×input of K fixed random channel directions of R instead of
                               its mean, K maps per image compared as subspaces
    gradient_x_input_groups    the same with the means of K groups of R's channels as directions
    transformed                any method's maps, finished by a `MapTransform` (absolute value,
                               channel mean, p×p pooling) before they are stored and compared

Gradient×input, its subspace variant and integrated gradients take an input `baseline` x₀ and
read gradient × (x − x₀): "zero" (the paper's x itself), "mean" (each image's per-channel mean
removed) or "blur" (a Gaussian blur of the image removed, keeping its detail); `input_baseline`.

Cost per image, as a multiple of one forward+backward pass (`AttributionMethod.cost`):

    saliency, gradient_x_input, lrp_epsilon   1 (saliency and gradient×input share theirs)
    integrated_gradients(steps=n, method=m)   n × m's (m: the plain gradient by default)
    smoothgrad(samples=n, method=m)           n × m's (m: saliency by default)
    modelgif(steps=n)                         n (50 by default)
    gradient_x_input_subspace(directions=K)   ≤ K: one forward, K backward passes (8 by default)
    gradient_x_input_groups(directions=K)     the same
    transformed(method=m, ...)                m's (the transform is a few array operations)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, ContextManager, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AttributionError, InputError, check_choice, check_float, check_int
from ..registry import UNLESS_DEFAULT, param
from .base import AttributionMethod, get_method, register_method
from .lrp import epsilon_rules


INPUT_BASELINES = ("zero", "mean", "blur")
"""What gradient × (x − x₀) subtracts from the input x (`input_baseline`)."""
BLUR_FRACTION = 1 / 16
"""The "blur" baseline's Gaussian σ as a fraction of the input's shorter side (4 px at 64², 14 px
at 224²): fixed from the images' geometry before any estimate was scored (data/world/candidates.toml)."""


def input_baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The reference input x₀ of a batch (B, C, H, W) in the model's own input space.

    "zero": 0, so that x − x₀ is the input itself. "mean": every image's per-channel mean over its
    pixels. "blur": a separable Gaussian blur (σ = `BLUR_FRACTION` of the shorter side, reflected
    at the edges). The model's normalisation (x − μ) / σ is affine per channel, so with "mean" or
    "blur" x − x₀ no longer depends on the normalisation's μ: the map keeps the image's structure
    and loses its overall intensity.

    Parameters
    ----------
    x : torch.Tensor
        The input batch (B, C, H, W) ("zero" takes any shape).
    kind : str
        One of `INPUT_BASELINES`: "zero", "mean" or "blur".

    Returns
    -------
    torch.Tensor
        x₀, shaped like ``x``.

    Raises
    ------
    InputError
        "mean" or "blur" for a batch that is not 4-dimensional.
    """
    if kind == "zero":
        return torch.zeros_like(x)
    if x.ndim != 4:
        raise InputError(f"input baseline {kind!r}: expected image batches (B, C, H, W), got shape {tuple(x.shape)}")
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    sigma = BLUR_FRACTION * min(x.shape[2:])
    radius = min(int(3 * sigma + 0.5), min(x.shape[2:]) - 1)  # reflection needs radius < side
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _check_baseline(kind: Any, method: str) -> str:
    return check_choice(kind, f"{method}: baseline", INPUT_BASELINES)


def _baseline() -> Any:
    """The input-baseline field x₀: shown in the id only when it is not "zero", so the paper's ids stay."""
    return param("zero", shown=UNLESS_DEFAULT)


@register_method("grad", "vanilla_gradient")
@dataclass(frozen=True, repr=False)
class Gradient(AttributionMethod):
    """The signed gradient of mean(R)."""

    name = "gradient"


@register_method("sal")
@dataclass(frozen=True, repr=False)
class Saliency(AttributionMethod):
    """|∂ mean(R) / ∂x| (Simonyan et al., 2014)."""

    name = "saliency"

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The gradient's absolute value.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``.
        """
        return grad.abs()


@register_method("gxi", "grad_input", "input_x_gradient")
@dataclass(frozen=True, repr=False)
class GradientXInput(AttributionMethod):
    """(x − x₀) ⊙ ∂ mean(R) / ∂x, with x the model's own (normalised) input; x₀ = 0 by default.

    Parameters
    ----------
    baseline : str
        x₀ (`input_baseline`): "zero" (the paper's gradient×input), "mean" or "blur".

    Raises
    ------
    InputError
        An unknown baseline.
    """

    name = "gradient_x_input"
    baseline: str = _baseline()

    def __post_init__(self) -> None:
        _check_baseline(self.baseline, self.name)

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The gradient times x − x₀.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``.
        """
        return (x - input_baseline(x, self.baseline)) * grad


@register_method("lrp", "epsilon_lrp", "elrp")
@dataclass(frozen=True, repr=False)
class EpsilonLRP(AttributionMethod):
    """Genuine layer-wise ε-LRP (see `lrp.py`); relevance starts at R_k / D, mean(R)'s own terms.

    Parameters
    ----------
    epsilon : float
        The ε of the rule (> 0).

    Raises
    ------
    InputError
        ``epsilon`` not a finite number > 0.
    """

    name = "lrp_epsilon"
    rules_version = 2  # 2: rules for norms, attention, gates and constant factors; identity on smooth activations
    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        self._set("epsilon", check_float(self.epsilon, "lrp_epsilon: epsilon"))

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        """The ε rules (`lrp.epsilon_rules`) while the forward pass builds the graph.

        Parameters
        ----------
        module : nn.Module
            The model the forward pass runs through.
        model_name : str
            Its name, for error messages.

        Returns
        -------
        ContextManager
            `lrp.epsilon_rules` at this method's ε.
        """
        return epsilon_rules(module, self.epsilon, model_name)

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        """The relevance at R: R_k / D, each term of mean(R).

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R, (B, ...) with D values per sample (detached).

        Returns
        -------
        torch.Tensor
            The seed, shaped like ``r``.
        """
        return r / r[0].numel()


class Wrapping(AttributionMethod):
    """A pass over another method (its `method` field, any method).

    It runs that method's backward (rules, seeds, directions) at inputs of its own and finishes the
    maps as that method does. A subclass declares `points` (the inputs it differentiates at, with
    their weights) and may change `read`; for each of its points the wrapped method's own passes
    run, so wrappers nest.

    Attributes
    ----------
    method : str or AttributionMethod
        The wrapped method, a field of the subclass: a name, an alias, an id or an object (kept as
        the object, `get_method`'s, once the subclass's ``__post_init__`` has run).
    """

    method: Any

    def _wrap(self) -> None:
        self._set("method", get_method(self.method))

    @property
    def directions(self) -> int:  # type: ignore[override]
        """The wrapped method's directions."""
        return self.method.directions

    def points(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """The inputs this pass differentiates at, each with its weight (x itself by default).

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Yields
        ------
        point : torch.Tensor
            An input the wrapped method's passes run at, shaped like ``x``.
        weight : float
            The weight of the gradients there.
        """
        yield x, 1.0

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        """The wrapped method's rules.

        Parameters
        ----------
        module : nn.Module
            The model the forward pass runs through.
        model_name : str
            Its name, for error messages.

        Returns
        -------
        ContextManager
            What the wrapped method's `rules` returns.
        """
        return self.method.rules(module, model_name)

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        """The wrapped method's seed.

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R (detached).

        Returns
        -------
        torch.Tensor
            The seed, shaped like ``r``.
        """
        return self.method.backward_seed(r)

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        """The wrapped method's seeds, one per direction.

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R (detached).

        Returns
        -------
        list of torch.Tensor
            The seeds, each shaped like ``r``.
        """
        return self.method.seeds(r)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """The wrapped method's passes at each of `points`, their weights multiplied.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Yields
        ------
        x_pass : torch.Tensor
            An input to differentiate at, shaped like ``x``.
        weight : float
            The point's weight times the wrapped pass's.
        """
        for point, weight in self.points(x):
            for inner, inner_weight in self.method.passes(point):
                yield inner, weight * inner_weight

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The map as the wrapped method reads it off at x.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``.
        """
        return self.method.read(x, grad)

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        """The maps finished as the wrapped method finishes them.

        Parameters
        ----------
        maps : torch.Tensor
            (N, C, S, S) maps at probe size S.

        Returns
        -------
        torch.Tensor
            The finished maps.
        """
        return self.method.finish(maps)


@register_method("ig")
@dataclass(frozen=True, repr=False)
class IntegratedGradients(Wrapping):
    """(x − x₀) ⊙ the mean gradient on the straight path from x₀, midpoint Riemann sum.

    Over another method (``integrated_gradients(method='lrp_epsilon')``), the gradient on the path is
    that method's backward (its rules and seeds), read off by it at x, and times (x − x₀).

    Parameters
    ----------
    steps : int
        Points on the path: the cost in the wrapped method's passes per image.
    baseline : str
        x₀ (`input_baseline`): "zero" (the usual black image), "mean" or "blur".
    method : str or AttributionMethod
        The method whose backward is integrated: the plain gradient by default (then the id does not
        name it).

    Raises
    ------
    InputError
        ``steps`` not an integer >= 1, an unknown baseline, or a method `get_method` refuses.
    """

    name = "integrated_gradients"
    steps: int = 16
    baseline: str = _baseline()
    method: Any = param("gradient", shown=UNLESS_DEFAULT)

    def __post_init__(self) -> None:
        self._set("steps", check_int(self.steps, "integrated_gradients: steps"))
        _check_baseline(self.baseline, self.name)
        self._wrap()

    @property
    def cost(self) -> float:
        """`steps` times the wrapped method's cost."""
        return self.steps * self.method.cost

    def points(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """The midpoints of `steps` equal parts of the straight path from x₀ to x, each of weight 1/steps.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Yields
        ------
        point : torch.Tensor
            x₀ + (i + ½)/steps · (x − x₀), shaped like ``x``.
        weight : float
            1 / `steps`.
        """
        x0 = input_baseline(x, self.baseline)
        for i in range(self.steps):
            yield x0 + ((i + 0.5) / self.steps) * (x - x0), 1.0 / self.steps

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """(x − x₀) times the wrapped method's reading of the mean gradient.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``.
        """
        return (x - input_baseline(x, self.baseline)) * self.method.read(x, grad)


@register_method()
@dataclass(frozen=True, repr=False)
class SmoothGrad(Wrapping):
    """A method's map of the mean gradient over noisy copies of x (Smilkov et al., 2017).

    |mean gradient| over saliency, by default; noise seeded for repeatability.

    Parameters
    ----------
    samples : int
        Noisy copies: the cost in the wrapped method's passes per image.
    noise : float
        The noise's standard deviation, as a fraction of the batch's value range (>= 0).
    seed : int
        Seed of the noise.
    method : str or AttributionMethod
        The method run at the noisy copies and reading the mean off at x: saliency by default (then
        the id does not name it).

    Raises
    ------
    InputError
        ``samples`` not an integer >= 1, ``noise`` not a finite number >= 0, ``seed`` not an integer
        >= 0, or a method `get_method` refuses.
    """

    name = "smoothgrad"
    samples: int = 8
    noise: float = 0.15
    seed: int = 0
    method: Any = param("saliency", shown=UNLESS_DEFAULT)

    def __post_init__(self) -> None:
        self._set("samples", check_int(self.samples, "smoothgrad: samples"))
        self._set("noise", check_float(self.noise, "smoothgrad: noise", inclusive=True))
        self._set("seed", check_int(self.seed, "smoothgrad: seed", minimum=0))
        self._wrap()

    @property
    def cost(self) -> float:
        """`samples` times the wrapped method's cost."""
        return self.samples * self.method.cost

    def points(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """`samples` noisy copies of x, each of weight 1/samples, the noise drawn from `seed`.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Yields
        ------
        point : torch.Tensor
            x plus Gaussian noise of standard deviation `noise` × (max(x) − min(x)), shaped like ``x``.
        weight : float
            1 / `samples`.
        """
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        scale = self.noise * (x.amax() - x.amin()).item()
        for _ in range(self.samples):
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            yield x + scale * noise, 1.0 / self.samples


# ------------------------------------------------------------------------------ beyond the paper


@register_method("gif", "model_gif")
@dataclass(frozen=True, repr=False)
class ModelGiF(AttributionMethod):
    """ModelGiF's gradient field (Song et al., ICCV 2023): path-integrated gradient×input of Σ_c max R_c.

    From a shuffled-image baseline, averaged over the input channels. The target is the sum over
    R's channels of each channel's spatial maximum (instead of mean(R)); its gradient with respect
    to R is 1 at each channel's arg-max position and 0 elsewhere, found again at every point of the
    path (of tied positions, the first counts). The field is
    (x − x₀) ⊙ (1/n) Σ_i ∇target(x₀ + (i + ½)/n · (x − x₀)), the midpoint Riemann sum of the
    path integral, with x₀ the image with its pixel positions shuffled (every channel by the same
    permutation, so x₀ keeps the image's colours and loses its layout); `finish` takes its mean
    over the input channels, and two models' fields are compared by cosine, as ModelGiF does.

    Parameters
    ----------
    steps : int
        Points on the path (50: ModelGiF's value, fixed before any measurement here). Cost: `steps`
        forward+backward passes per image.
    seed : int
        Seed of the permutation. It is drawn once per input size (H·W), in the model's input space,
        and is the same for every image, so a map does not depend on the batch it is computed in;
        models of different input sizes get different permutations (a baseline is the image
        without its layout, whichever permutation removes it).

    Raises
    ------
    InputError
        ``steps`` not an integer >= 1, or ``seed`` not one >= 0.
    """

    name = "modelgif"
    steps: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("steps", check_int(self.steps, "modelgif: steps"))
        self._set("seed", check_int(self.seed, "modelgif: seed", minimum=0))

    @property
    def cost(self) -> float:
        """`steps`: one forward+backward pass per point of the path."""
        return float(self.steps)

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The shuffled image x₀ of each image of a batch.

        One seeded permutation of the H·W positions, the same for every channel and image.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W).

        Returns
        -------
        torch.Tensor
            x₀, shaped like ``x``.

        Raises
        ------
        InputError
            A batch that is not 4-dimensional.
        """
        if x.ndim != 4:
            raise InputError(f"modelgif: expected image batches (B, C, H, W), got shape {tuple(x.shape)}")
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        perm = torch.randperm(x.shape[2] * x.shape[3], generator=generator).to(x.device)
        return x.flatten(2)[:, :, perm].view_as(x)

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        """The gradient of Σ_c max_pos R_c with respect to R: 1 at each channel's first arg-max.

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R, (B, C, ...) (detached).

        Returns
        -------
        torch.Tensor
            The one-hot seed, shaped like ``r`` (all ones when R has no spatial positions).
        """
        if r.ndim <= 2:  # no spatial positions: each channel is its own maximum
            return torch.ones_like(r)
        flat = r.flatten(2)
        one_hot = torch.zeros_like(flat)
        one_hot.scatter_(2, flat.argmax(dim=2, keepdim=True), 1.0)
        return one_hot.view_as(r)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """The midpoints of `steps` equal parts of the path from the shuffled image to x.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Yields
        ------
        x_pass : torch.Tensor
            x₀ + (i + ½)/steps · (x − x₀), shaped like ``x``.
        weight : float
            1 / `steps`.
        """
        x0 = self.baseline(x)
        for i in range(self.steps):
            yield x0 + ((i + 0.5) / self.steps) * (x - x0), 1.0 / self.steps

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The mean gradient times x − x₀, x₀ the shuffled image.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``.
        """
        return (x - self.baseline(x)) * grad

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        """The mean over the input channels.

        Parameters
        ----------
        maps : torch.Tensor
            (N, C, S, S) maps at probe size S.

        Returns
        -------
        torch.Tensor
            (N, 1, S, S) maps.
        """
        return maps.mean(dim=1, keepdim=True)


class ChannelDirections(AttributionMethod):
    """Gradient×input of K directions u_1..u_K of R's channels, compared as subspaces.

    The part the subspace and group variants share; a subclass declares `channel_directions`.

    Attributes
    ----------
    directions : int
        K, a field of the subclass.
    baseline : str
        x₀ of gradient × (x − x₀) (`input_baseline`), a field of the subclass (or a class constant).
    """

    directions: int
    baseline: str

    @property
    def cost(self) -> float:
        """K: one forward and K backward passes, counted as K forward+backward passes."""
        return float(self.directions)

    def channel_directions(self, n_channels: int) -> torch.Tensor:
        """The (K, C) float64 matrix of directions for an R of C channels.

        Parameters
        ----------
        n_channels : int
            C, the number of R's channels.

        Returns
        -------
        torch.Tensor
            The (K, C) float64 directions, one per row.
        """
        raise NotImplementedError

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        """One seed per direction u_k: u_k over the channels, averaged over R's spatial positions.

        Parameters
        ----------
        r : torch.Tensor
            The encoder output R, (B, C, ...) (detached).

        Returns
        -------
        list of torch.Tensor
            K seeds, each shaped like ``r``.

        Raises
        ------
        AttributionError
            Where `channel_directions` raises it (too few channels for the groups).
        """
        u = self.channel_directions(r.shape[1]).to(r.device, r.dtype)
        positions = r[0, 0].numel()
        shape = (1, r.shape[1]) + (1,) * (r.ndim - 2)
        return [(u_k / positions).view(shape).expand_as(r) for u_k in u]

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The gradient times x − x₀.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.
        grad : torch.Tensor
            The weighted sum of the gradients over `passes`, shaped like ``x``.

        Returns
        -------
        torch.Tensor
            The maps, shaped like ``x``.
        """
        return (x - input_baseline(x, self.baseline)) * grad


@register_method("gxi_subspace", "subspace")
@dataclass(frozen=True, repr=False)
class GradientXInputSubspace(ChannelDirections):
    """Gradient×input of K fixed random channel directions of R, compared as subspaces.

    Instead of the one direction mean(R), K seeded Gaussian directions u_1..u_K of R's channels
    (each averaged over R's spatial positions, as the mean is): map k of an image is
    x ⊙ ∂(u_kᵀ mean_pos R)/∂x. An image's K maps G (K × P) span what the encoder's Jacobian does
    to the input in K random directions; two models are compared per image by
    ‖G_i G_jᵀ‖²_F / (‖G_i G_iᵀ‖_F ‖G_j G_jᵀ‖_F) (`similarity.affinity_matrix` with
    ``directions=K``), which does not change when either model's directions are rotated or
    scaled, as it must not: channel c of one model has nothing to do with channel c of another.
    It is the cosine between the P × P Grams G_iᵀG_i and G_jᵀG_j; as K grows (UᵀU / K → I for the
    (K, C) directions U) these tend to the Grams of the whole channel Jacobians (times x), so the
    K maps sketch what every channel of R, not only their mean, sees in the image.

    Cost: one forward and K backward passes per image, at most K forward+backward passes (measured
    against gradient×input by `modelspace study`: docs/study/table.md). The K backward passes run one
    after the other: batching them (``is_grads_batched``) was slower on a CPU (docs/method.md, "The
    attribution methods").

    Parameters
    ----------
    directions : int
        K (8, fixed before any measurement: enough directions to span more than the mean's one,
        few enough that the cost stays near that of a few passes).
    seed : int
        Seed of the directions, drawn per model from its channel count C (one (K, C) Gaussian
        matrix, the same for every image).
    baseline : str
        x₀ of gradient × (x − x₀) (`input_baseline`): "zero" (x itself), "mean" or "blur".

    Raises
    ------
    InputError
        ``directions`` not an integer >= 2, ``seed`` not one >= 0, or an unknown baseline.
    """

    name = "gradient_x_input_subspace"
    directions: int = 8
    seed: int = 0
    baseline: str = _baseline()

    def __post_init__(self) -> None:
        self._set("directions", check_int(self.directions, "gradient_x_input_subspace: directions", minimum=2))
        self._set("seed", check_int(self.seed, "gradient_x_input_subspace: seed", minimum=0))
        _check_baseline(self.baseline, self.name)

    def channel_directions(self, n_channels: int) -> torch.Tensor:
        """K Gaussian directions, drawn from `seed`.

        Parameters
        ----------
        n_channels : int
            C, the number of R's channels.

        Returns
        -------
        torch.Tensor
            The (K, C) float64 standard normal directions, the same for every call with the same C.
        """
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        return torch.randn(self.directions, n_channels, generator=generator, dtype=torch.float64)


@register_method("gxi_groups")
@dataclass(frozen=True, repr=False)
class GradientXInputGroups(ChannelDirections):
    """Gradient×input of the means of K groups of R's channels, compared as subspaces.

    As `gradient_x_input_subspace`, with the directions u_k = the mean of the k-th of K contiguous,
    near-equal groups of channels (``torch.tensor_split`` of 0..C−1: the first C mod K groups
    have one channel more) instead of random ones: per-channel means, pooled into K groups so that
    the cost stays K passes whatever C. Channel order is arbitrary in a network, so a group is an
    arbitrary set of channels, and the subspace comparison does not pair group k of one model with
    group k of another. Needs C ≥ K.

    Parameters
    ----------
    directions : int
        K (8, as for the random directions, fixed before any measurement; >= 2).

    Raises
    ------
    InputError
        ``directions`` not an integer >= 2.
    """

    name = "gradient_x_input_groups"
    baseline: ClassVar[str] = "zero"
    directions: int = 8

    def __post_init__(self) -> None:
        self._set("directions", check_int(self.directions, "gradient_x_input_groups: directions", minimum=2))

    def channel_directions(self, n_channels: int) -> torch.Tensor:
        """The means of K contiguous, near-equal groups of the C channels.

        Parameters
        ----------
        n_channels : int
            C, the number of R's channels (>= K).

        Returns
        -------
        torch.Tensor
            The (K, C) float64 directions: row k is 1/|group k| on the channels of group k, 0 elsewhere.

        Raises
        ------
        AttributionError
            Fewer channels than groups.
        """
        if n_channels < self.directions:
            raise AttributionError(f"gradient_x_input_groups: R has {n_channels} channels, fewer than "
                                   f"directions = {self.directions} groups")
        u = torch.zeros(self.directions, n_channels, dtype=torch.float64)
        for k, group in enumerate(torch.arange(n_channels).tensor_split(self.directions)):
            u[k, group] = 1.0 / len(group)
        return u


@dataclass(frozen=True)
class MapTransform:
    """How a map is finished at probe size before it is stored and compared.

    The steps run in the order of the fields; the identity when every field is at its default.

    Parameters
    ----------
    channel_mean : bool, default False
        First, the mean over the map's channels (the seed paper's channel-mean map).
    absolute : bool, default False
        Then its absolute value (whether the sign of an attribution matters).
    pool : int, default 1
        Last, p: every p×p block of pixels replaced by the block's mean (at the block's own
        resolution the cosine is the same: each value is repeated p² times, in both maps); blocks at
        the edge of an S not divisible by p average the pixels they hold. An integer >= 1.

    Raises
    ------
    InputError
        ``channel_mean`` or ``absolute`` not a bool, or ``pool`` not an integer >= 1.
    """

    channel_mean: bool = False
    absolute: bool = False
    pool: int = 1

    def __post_init__(self) -> None:
        for field in ("channel_mean", "absolute"):
            if not isinstance(getattr(self, field), bool):
                raise InputError(f"{field}: expected True or False, got {getattr(self, field)!r}")
        object.__setattr__(self, "pool", check_int(self.pool, "pool"))

    @property
    def is_identity(self) -> bool:
        """Whether the transform leaves maps as they are: every field at its default."""
        return not self.channel_mean and not self.absolute and self.pool == 1

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) maps → (N, C or 1, S, S)."""
        if self.channel_mean:
            maps = maps.mean(dim=1, keepdim=True)
        if self.absolute:
            maps = maps.abs()
        if self.pool > 1:
            p, (h, w) = self.pool, maps.shape[-2:]
            # Sums over the blocks divided by each block's own pixel count (edge blocks are smaller).
            sums = F.avg_pool2d(maps, p, stride=p, ceil_mode=True, divisor_override=1)
            counts = F.avg_pool2d(torch.ones_like(maps[:1, :1]), p, stride=p, ceil_mode=True, divisor_override=1)
            means = sums / counts
            maps = means.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)[..., :h, :w]
        return maps


@register_method("mapped")
@dataclass(frozen=True, repr=False)
class Transformed(Wrapping):
    """Any method's maps finished by a `MapTransform` (channel mean, absolute value, p×p pooling).

    Declared once for every method: ``transformed(method='gradient_x_input', pool=4)`` runs
    gradient×input exactly as it is (sharing its backward pass with saliency) and pools its maps
    4×4 at probe size before they are stored. The inner method's rules version is part of the
    store key. Cost: the inner method's.

    Parameters
    ----------
    method : str or AttributionMethod
        The method whose maps are transformed: a name, alias or id (``'lrp_epsilon(epsilon=0.01)'``).
    channel_mean : bool, default False
        `MapTransform`'s field: the mean over the map's channels.
    absolute : bool, default False
        `MapTransform`'s field: the absolute value.
    pool : int, default 1
        `MapTransform`'s field: p×p pooling. At least one of the three must change the maps.

    Raises
    ------
    InputError
        An unknown method, a field `MapTransform` refuses, or fields that leave the maps as they are.
    """

    name = "transformed"
    method: Any = "gradient_x_input"
    channel_mean: bool = param(False, shown=UNLESS_DEFAULT)
    absolute: bool = param(False, shown=UNLESS_DEFAULT)
    pool: int = param(1, shown=UNLESS_DEFAULT)

    def __post_init__(self) -> None:
        self._wrap()
        transform = MapTransform(channel_mean=self.channel_mean, absolute=self.absolute, pool=self.pool)
        if transform.is_identity:
            raise InputError("transformed: channel_mean, absolute or pool must change the maps "
                             "(with none of them the maps are the method's own)")
        self._set("pool", transform.pool)

    @property
    def transform(self) -> MapTransform:
        """The transform of the maps, from the fields."""
        return MapTransform(channel_mean=self.channel_mean, absolute=self.absolute, pool=self.pool)

    @property
    def cost(self) -> float:
        """The inner method's cost (the transform is a few array operations)."""
        return self.method.cost

    @property
    def plain_gradient(self) -> bool:
        """The inner method's: a transformed saliency or gradient×input shares their backward pass."""
        return self.method.plain_gradient

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """The inner method's passes, as they are.

        Parameters
        ----------
        x : torch.Tensor
            The input batch (B, C, H, W), detached.

        Returns
        -------
        Iterator of (torch.Tensor, float)
            The inner method's inputs to differentiate at, with their weights.
        """
        return self.method.passes(x)

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        """The inner method's finish, then `transform`.

        Parameters
        ----------
        maps : torch.Tensor
            (N, C, S, S) maps at probe size S.

        Returns
        -------
        torch.Tensor
            (N, C or 1, S, S) maps.
        """
        return self.transform(self.method.finish(maps))
