"""Attribution methods as short declarations over `base.AttributionMethod`.

The seed paper's three: saliency, gradient×input and ε-LRP. Integrated gradients and
SmoothGrad show how a multi-pass method is declared (a few lines each). Beyond the paper:

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
    integrated_gradients(steps=n)             n
    smoothgrad(samples=n)                     n
    modelgif(steps=n)                         n (50 by default)
    gradient_x_input_subspace(directions=K)   ≤ K: one forward, K backward passes (8 by default)
    gradient_x_input_groups(directions=K)     the same
    transformed(method=m, ...)                m's (the transform is a few array operations)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ContextManager, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AttributionError, InputError, check_int
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
    if kind not in INPUT_BASELINES:
        raise InputError(f"{method}: baseline must be one of {', '.join(INPUT_BASELINES)}, got {kind!r}")
    return kind


def _baseline_params(kind: str) -> dict[str, str]:
    """The baseline's part of a method's params: none for "zero", so the paper's ids stay as they were."""
    return {} if kind == "zero" else {"baseline": kind}


@register_method("grad", "vanilla_gradient")
class Gradient(AttributionMethod):
    """The signed gradient of mean(R)."""

    name = "gradient"


@register_method("sal")
class Saliency(AttributionMethod):
    """|∂ mean(R) / ∂x| (Simonyan et al., 2014)."""

    name = "saliency"

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.abs()


@register_method("gxi", "grad_input", "input_x_gradient")
class GradientXInput(AttributionMethod):
    """(x − x₀) ⊙ ∂ mean(R) / ∂x, with x the model's own (normalised) input; x₀ = 0 by default.

    Parameters
    ----------
    baseline : str
        x₀ (`input_baseline`): "zero" (the paper's gradient×input), "mean" or "blur".
    """

    name = "gradient_x_input"

    def __init__(self, baseline: str = "zero") -> None:
        self.baseline = _check_baseline(baseline, self.name)

    @property
    def params(self) -> dict[str, str]:
        return _baseline_params(self.baseline)

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x - input_baseline(x, self.baseline)) * grad


@register_method("lrp", "epsilon_lrp", "elrp")
class EpsilonLRP(AttributionMethod):
    """Genuine layer-wise ε-LRP (see `lrp.py`); relevance starts at R_k / D, mean(R)'s own terms."""

    name = "lrp_epsilon"
    rules_version = 2  # 2: rules for norms, attention, gates and constant factors; identity on smooth activations

    def __init__(self, epsilon: float = 1e-6) -> None:
        if not epsilon > 0:
            raise InputError(f"lrp_epsilon: epsilon must be > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)

    @property
    def params(self) -> dict[str, float]:
        return {"epsilon": self.epsilon}

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        return epsilon_rules(module, self.epsilon, model_name)

    def seed(self, r: torch.Tensor) -> torch.Tensor:
        return r / r[0].numel()


@register_method("ig")
class IntegratedGradients(AttributionMethod):
    """(x − x₀) ⊙ the mean gradient on the straight path from x₀, midpoint Riemann sum.

    Parameters
    ----------
    steps : int
        Points on the path: the cost in forward+backward passes per image.
    baseline : str
        x₀ (`input_baseline`): "zero" (the usual black image), "mean" or "blur".
    """

    name = "integrated_gradients"

    def __init__(self, steps: int = 16, baseline: str = "zero") -> None:
        self.steps = check_int(steps, "integrated_gradients: steps")
        self.baseline = _check_baseline(baseline, self.name)

    @property
    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, **_baseline_params(self.baseline)}

    @property
    def cost(self) -> float:
        return float(self.steps)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        x0 = input_baseline(x, self.baseline)
        for i in range(self.steps):
            yield x0 + ((i + 0.5) / self.steps) * (x - x0), 1.0 / self.steps

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x - input_baseline(x, self.baseline)) * grad


@register_method()
class SmoothGrad(AttributionMethod):
    """|mean gradient| over noisy copies of x (Smilkov et al., 2017); noise seeded for repeatability."""

    name = "smoothgrad"

    def __init__(self, samples: int = 8, noise: float = 0.15, seed: int = 0) -> None:
        self.samples, self.noise, self.seed_value = int(samples), float(noise), int(seed)

    @property
    def params(self) -> dict[str, float]:
        return {"samples": self.samples, "noise": self.noise, "seed": self.seed_value}

    @property
    def cost(self) -> float:
        return float(self.samples)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        generator = torch.Generator(device="cpu").manual_seed(self.seed_value)
        scale = self.noise * (x.amax() - x.amin()).item()
        for _ in range(self.samples):
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            yield x + scale * noise, 1.0 / self.samples

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.abs()


# ------------------------------------------------------------------------------ beyond the paper


@register_method("gif", "model_gif")
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

    def __init__(self, steps: int = 50, seed: int = 0) -> None:
        self.steps = check_int(steps, "modelgif: steps")
        self.seed_value = check_int(seed, "modelgif: seed", minimum=0)

    @property
    def params(self) -> dict[str, float]:
        return {"seed": self.seed_value, "steps": self.steps}

    @property
    def cost(self) -> float:
        return float(self.steps)

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The shuffled image x₀ of each image of a batch (B, C, H, W): one seeded permutation of the
        H·W positions, the same for every channel and image."""
        if x.ndim != 4:
            raise InputError(f"modelgif: expected image batches (B, C, H, W), got shape {tuple(x.shape)}")
        generator = torch.Generator(device="cpu").manual_seed(self.seed_value)
        perm = torch.randperm(x.shape[2] * x.shape[3], generator=generator).to(x.device)
        return x.flatten(2)[:, :, perm].view_as(x)

    def seed(self, r: torch.Tensor) -> torch.Tensor:
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


@register_method("gxi_subspace", "subspace")
class GradientXInputSubspace(AttributionMethod):
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

    def __init__(self, directions: int = 8, seed: int = 0, baseline: str = "zero") -> None:
        self.directions = check_int(directions, "gradient_x_input_subspace: directions", minimum=2)
        self.seed_value = check_int(seed, "gradient_x_input_subspace: seed", minimum=0)
        self.baseline = _check_baseline(baseline, self.name)

    @property
    def params(self) -> dict[str, Any]:
        return {"directions": self.directions, "seed": self.seed_value, **_baseline_params(self.baseline)}

    @property
    def cost(self) -> float:
        return float(self.directions)

    def channel_directions(self, n_channels: int) -> torch.Tensor:
        """The (K, C) float64 matrix of directions for an R of C channels."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed_value)
        return torch.randn(self.directions, n_channels, generator=generator, dtype=torch.float64)

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        u = self.channel_directions(r.shape[1]).to(r.device, r.dtype)
        positions = r[0, 0].numel()
        shape = (1, r.shape[1]) + (1,) * (r.ndim - 2)
        return [(u_k / positions).view(shape).expand_as(r) for u_k in u]

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (x - input_baseline(x, self.baseline)) * grad


@register_method("gxi_groups")
class GradientXInputGroups(GradientXInputSubspace):
    """Gradient×input of the means of K groups of R's channels, compared as subspaces.

    As `gradient_x_input_subspace`, with the directions u_k = the mean of the k-th of K contiguous,
    near-equal groups of channels (``torch.tensor_split`` of 0..C−1: the first C mod K groups
    have one channel more) instead of random ones: the
    issue's "per-channel means", pooled into K groups so that the cost stays K passes whatever C.
    Channel order is arbitrary in a network, so a group is an arbitrary set of channels, and the
    subspace comparison does not pair group k of one model with group k of another. Needs C ≥ K.

    Parameters
    ----------
    directions : int
        K (8, as for the random directions, fixed before any measurement).
    """

    name = "gradient_x_input_groups"

    def __init__(self, directions: int = 8) -> None:
        super().__init__(directions=directions)

    @property
    def params(self) -> dict[str, float]:
        return {"directions": self.directions}

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
class Transformed(AttributionMethod):
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

    def __init__(self, method: Any = "gradient_x_input", channel_mean: bool = False, absolute: bool = False,
                 pool: int = 1) -> None:
        self.inner = get_method(method)
        self.transform = MapTransform(channel_mean=channel_mean, absolute=absolute, pool=pool)
        if self.transform.is_identity:
            raise InputError("transformed: channel_mean, absolute or pool must change the maps "
                             "(with none of them the maps are the method's own)")
        self.directions = self.inner.directions

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"method": self.inner.id}
        params.update({k: v for k, v in vars(self.transform).items() if v != MapTransform.__dataclass_fields__[k].default})
        return params

    @property
    def store_id(self) -> str:
        if self.inner.store_id == self.inner.id:
            return self.id
        params = {**self.params, "method": self.inner.store_id}
        return f"{self.name}({','.join(f'{k}={v!r}' for k, v in sorted(params.items()))})"

    @property
    def cost(self) -> float:
        return self.inner.cost

    @property
    def plain_gradient(self) -> bool:
        return self.inner.plain_gradient

    def rules(self, module: nn.Module, model_name: str) -> ContextManager:
        return self.inner.rules(module, model_name)

    def seed(self, r: torch.Tensor) -> torch.Tensor:
        return self.inner.seed(r)

    def seeds(self, r: torch.Tensor) -> list[torch.Tensor]:
        return self.inner.seeds(r)

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        return self.inner.passes(x)

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self.inner.read(x, grad)

    def finish(self, maps: torch.Tensor) -> torch.Tensor:
        return self.transform(self.inner.finish(maps))
