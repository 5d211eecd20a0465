"""Attribution methods as short declarations over `base.AttributionMethod`.

The seed paper's three: saliency, gradient×input and ε-LRP. Integrated gradients and
SmoothGrad show how a multi-pass method is declared (a few lines each).
"""

from __future__ import annotations

from typing import ContextManager, Iterator

import torch
from torch import nn

from ..errors import InputError, check_int
from .base import AttributionMethod, register_method
from .lrp import epsilon_rules


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
    """x ⊙ ∂ mean(R) / ∂x, with x the model's own (normalised) input."""

    name = "gradient_x_input"

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return x * grad


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
    """(x − x₀) ⊙ the mean gradient on the straight path from x₀ = 0, midpoint Riemann sum."""

    name = "integrated_gradients"

    def __init__(self, steps: int = 16) -> None:
        self.steps = check_int(steps, "integrated_gradients: steps")

    @property
    def params(self) -> dict[str, float]:
        return {"steps": self.steps}

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        for i in range(self.steps):
            yield x * ((i + 0.5) / self.steps), 1.0 / self.steps

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return x * grad


@register_method()
class SmoothGrad(AttributionMethod):
    """|mean gradient| over noisy copies of x (Smilkov et al., 2017); noise seeded for repeatability."""

    name = "smoothgrad"

    def __init__(self, samples: int = 8, noise: float = 0.15, seed: int = 0) -> None:
        self.samples, self.noise, self.seed_value = int(samples), float(noise), int(seed)

    @property
    def params(self) -> dict[str, float]:
        return {"samples": self.samples, "noise": self.noise, "seed": self.seed_value}

    def passes(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        generator = torch.Generator(device="cpu").manual_seed(self.seed_value)
        scale = self.noise * (x.amax() - x.amin()).item()
        for _ in range(self.samples):
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            yield x + scale * noise, 1.0 / self.samples

    def read(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.abs()
