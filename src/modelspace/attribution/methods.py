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
        return grad.abs()


@register_method("gxi", "grad_input", "input_x_gradient")
@dataclass(frozen=True, repr=False)
class GradientXInput(AttributionMethod):
    """(x − x₀) ⊙ ∂ mean(R) / ∂x, with x the model's own (normalised) input; x₀ = 0 by default.

    Parameters
    ----------
    baseline : str
        x₀ (`input_baseline`): "zero" (the paper's gradient×input), "mean" or "blur".
    """

    name = "gradient_x_input"
    baseline: str = _baseline()

    def __post_init__(self) -> None:
        _check_baseline(self.baseline, self.name)

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x - input_baseline(x, self.baseline)) * grad


@register_method("lrp", "epsilon_lrp", "elrp")
@dataclass(frozen=True, repr=False)
class EpsilonLRP(AttributionMethod):
    """Genuine layer-wise ε-LRP (see `lrp.py`); relevance starts at R_k / D, mean(R)'s own terms.

    Parameters
    ----------
    epsilon : float
        The ε of the rule (> 0).
    """

    name = "lrp_epsilon"
    rules_version = 2  # 2: rules for norms, attention, gates and constant factors; identity on smooth activations
    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        self._set("epsilon", check_float(self.epsilon, "lrp_epsilon: epsilon"))

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        return epsilon_rules(module, self.epsilon, model_name)

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        return r / r[0].numel()


class Wrapping(AttributionMethod):
    """A pass over another method (its `method` field, any method): it runs that method's backward
    (rules, seeds, directions) at inputs of its own and finishes the maps as that method does.

    A subclass declares `points` (the inputs it differentiates at, with their weights) and may
    change `read`; for each of its points the wrapped method's own passes run, so wrappers nest.

    Parameters
    ----------
    method : str or AttributionMethod
        The wrapped method: a name, an alias, an id or an object (kept as the object).
    """

    method: Any

    def _wrap(self) -> None:
        self._set("method", get_method(self.method))

    @property
    def directions(self) -> int:  # type: ignore[override]
        return self.method.directions

    def points(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """The inputs this pass differentiates at, each with its weight (x itself by default)."""
        yield x, 1.0

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        return self.method.rules(module, model_name)

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        return self.method.backward_seed(r)

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        return self.method.seeds(r)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        for point, weight in self.points(x):
            for inner, inner_weight in self.method.passes(point):
                yield inner, weight * inner_weight

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self.method.read(x, grad)

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
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
        return self.steps * self.method.cost

    def points(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        x0 = input_baseline(x, self.baseline)
        for i in range(self.steps):
            yield x0 + ((i + 0.5) / self.steps) * (x - x0), 1.0 / self.steps

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x - input_baseline(x, self.baseline)) * self.method.read(x, grad)


@register_method()
@dataclass(frozen=True, repr=False)
class SmoothGrad(Wrapping):
    """A method's map of the mean gradient over noisy copies of x (Smilkov et al., 2017): |mean
    gradient| over saliency, by default; noise seeded for repeatability.

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
        return self.samples * self.method.cost

    def points(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
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
    """

    name = "modelgif"
    steps: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("steps", check_int(self.steps, "modelgif: steps"))
        self._set("seed", check_int(self.seed, "modelgif: seed", minimum=0))

    @property
    def cost(self) -> float:
        return float(self.steps)

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The shuffled image x₀ of each image of a batch (B, C, H, W): one seeded permutation of the
        H·W positions, the same for every channel and image."""
        if x.ndim != 4:
            raise InputError(f"modelgif: expected image batches (B, C, H, W), got shape {tuple(x.shape)}")
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        perm = torch.randperm(x.shape[2] * x.shape[3], generator=generator).to(x.device)
        return x.flatten(2)[:, :, perm].view_as(x)

    def backward_seed(self, r: torch.Tensor) -> torch.Tensor:
        if r.ndim <= 2:  # no spatial positions: each channel is its own maximum
            return torch.ones_like(r)
        flat = r.flatten(2)
        one_hot = torch.zeros_like(flat)
        one_hot.scatter_(2, flat.argmax(dim=2, keepdim=True), 1.0)
        return one_hot.view_as(r)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        x0 = self.baseline(x)
        for i in range(self.steps):
            yield x0 + ((i + 0.5) / self.steps) * (x - x0), 1.0 / self.steps

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x - self.baseline(x)) * grad

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=1, keepdim=True)


class ChannelDirections(AttributionMethod):
    """Gradient×input of K directions u_1..u_K of R's channels (`channel_directions`), compared as
    subspaces: the part the subspace and group variants share.

    Parameters
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
        return float(self.directions)

    def channel_directions(self, n_channels: int) -> torch.Tensor:
        """The (K, C) float64 matrix of directions for an R of C channels."""
        raise NotImplementedError

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        u = self.channel_directions(r.shape[1]).to(r.device, r.dtype)
        positions = r[0, 0].numel()
        shape = (1, r.shape[1]) + (1,) * (r.ndim - 2)
        return [(u_k / positions).view(shape).expand_as(r) for u_k in u]

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
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

    Cost: one forward and K backward passes per image, at most K forward+backward passes (measured
    against gradient×input by `modelspace study`: docs/study/table.md). The K backward passes run one
    after the other: batching them (``is_grads_batched``) was slower on a CPU (README, "The method, as
    implemented").
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
        K (8, as for the random directions, fixed before any measurement).
    """

    name = "gradient_x_input_groups"
    baseline: ClassVar[str] = "zero"
    directions: int = 8

    def __post_init__(self) -> None:
        self._set("directions", check_int(self.directions, "gradient_x_input_groups: directions", minimum=2))

    def channel_directions(self, n_channels: int) -> torch.Tensor:
        if n_channels < self.directions:
            raise AttributionError(f"gradient_x_input_groups: R has {n_channels} channels, fewer than "
                                   f"directions = {self.directions} groups")
        u = torch.zeros(self.directions, n_channels, dtype=torch.float64)
        for k, group in enumerate(torch.arange(n_channels).tensor_split(self.directions)):
            u[k, group] = 1.0 / len(group)
        return u


@dataclass(frozen=True)
class MapTransform:
    """How a map is finished at probe size before it is stored and compared, in this order:

    1. ``channel_mean``: the mean over the map's channels (the seed paper's channel-mean map);
    2. ``absolute``: its absolute value (whether the sign of an attribution matters);
    3. ``pool`` = p: every p×p block of pixels replaced by the block's mean (at the block's own
       resolution the cosine is the same: each value is repeated p² times, in both maps); blocks at
       the edge of an S not divisible by p average the pixels they hold.

    The identity when every field is at its default.
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
    channel_mean, absolute, pool
        `MapTransform`'s fields; at least one must change the maps.
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
        return self.method.cost

    @property
    def plain_gradient(self) -> bool:
        return self.method.plain_gradient

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        return self.method.passes(x)

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        return self.transform(self.method.finish(maps))
