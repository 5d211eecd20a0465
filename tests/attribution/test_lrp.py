"""ε-LRP's rules beyond linear layers, against closed forms written out here.

Each reference is the rule's equation evaluated directly on small float64 tensors (no autograd):
the ε rule of a linear map z = x Wᵀ + b is R_x = x ⊙ ((R_z / (z + ε·sign z)) W). ε = 0.1, large enough
that a stabiliser in the wrong place shows; tolerance rtol 1e-12. The rules (lrp.py's docstring):
LayerNorm/GroupNorm with the scale 1/σ constant (Ali et al. 2022, LN rule); attention with the weights
constant (AH rule); gates, attention weights and divisors constant in products; identity rule on
element-wise activations. Comparisons with lxt and Zennit on real models: tests/vision/attribution/test_lrp_references.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from support.live import live_tensors
from modelspace.attribution import attribute, get_method
from modelspace.errors import AttributionError

EPS = 0.1


def lrp(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return attribute(model.double().eval(), x, get_method("lrp_epsilon", epsilon=EPS))


def stabilised(z: torch.Tensor) -> torch.Tensor:
    return z + EPS * torch.where(z >= 0, 1.0, -1.0).to(z)


def linear_rule(x: torch.Tensor, w: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """R_x for z = x Wᵀ (+ b) over the last axis."""
    return x * ((r / stabilised(z)) @ w)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def seeded(module: nn.Module) -> nn.Module:
    """Random affine parameters (and biases), so that no norm or bias is trivial."""
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(rand(*p.shape, seed=100 + i) * 0.5 + (1.0 if p.ndim == 1 and i == 0 else 0.0))
    return module.double()


# ---------------------------------------------------------------- normalisation: 1/σ constant


def norm_rule(x: torch.Tensor, groups: list[torch.Tensor], gamma: torch.Tensor, beta: torch.Tensor,
              eps_norm: float) -> torch.Tensor:
    """LN rule on flat per-sample vectors: y = γ (x − mean_G x)/σ_G + β, σ held constant, so
    J_G = diag(γ/σ_G)(I − 11ᵀ/|G|), and the ε rule over the whole layer with seed R_y = y / D."""
    relevance = torch.zeros_like(x)
    for n in range(len(x)):
        y = torch.empty_like(x[n])
        jac = torch.zeros(len(x[n]), len(x[n]), dtype=x.dtype)
        for g in groups:
            xg = x[n, g]
            sigma = (xg.var(unbiased=False) + eps_norm).sqrt()
            y[g] = gamma[g] * (xg - xg.mean()) / sigma + beta[g]
            centring = torch.eye(len(g), dtype=x.dtype) - 1.0 / len(g)
            jac[g.unsqueeze(1), g.unsqueeze(0)] = (gamma[g] / sigma).unsqueeze(1) * centring
        r = y / len(y)
        relevance[n] = x[n] * (jac.T @ (r / stabilised(y)))
    return relevance


def test_layer_norm_rule() -> None:
    model = seeded(nn.LayerNorm(6, eps=0.01))
    x = rand(3, 6)
    expected = norm_rule(x, [torch.arange(6)], model.weight.detach(), model.bias.detach(), 0.01)
    torch.testing.assert_close(lrp(model, x), expected, rtol=1e-12, atol=1e-14)


def test_group_norm_rule() -> None:
    model = seeded(nn.GroupNorm(2, 4, eps=0.01))
    x = rand(2, 4, 1, 3)
    flat = x.reshape(2, 12)  # channel-major: group 0 is channels 0-1, elements 0..5
    per_element = lambda p: p.detach().repeat_interleave(3)
    expected = norm_rule(flat, [torch.arange(6), torch.arange(6, 12)], per_element(model.weight),
                         per_element(model.bias), 0.01)
    torch.testing.assert_close(lrp(model, x), expected.reshape(x.shape), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- attention: the weights constant


class Attention(nn.Module):
    """Two-head self-attention written three ways: F.scaled_dot_product_attention, explicit
    softmax(QKᵀ/√d)·V, and nn.MultiheadAttention over the same weights."""

    def __init__(self, style: str, d: int = 4, heads: int = 2) -> None:
        super().__init__()
        self.style, self.heads = style, heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)

    def load(self) -> Attention:
        seeded(self)
        with torch.no_grad():
            self.mha.in_proj_weight.copy_(torch.cat([self.q.weight, self.k.weight, self.v.weight]))
            self.mha.in_proj_bias.copy_(torch.cat([self.q.bias, self.k.bias, self.v.bias]))
            self.mha.out_proj.weight.copy_(self.o.weight)
            self.mha.out_proj.bias.copy_(self.o.bias)
        return self

    def split(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, d) → (B, H, N, d/H)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style == "mha":
            return self.mha(x, x, x, need_weights=False)[0]
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        if self.style == "sdpa":
            z = F.scaled_dot_product_attention(q, k, v)
        else:
            z = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v
        return self.o(z.transpose(1, 2).flatten(2))


def attention_rule(m: Attention, x: torch.Tensor) -> torch.Tensor:
    """AH rule: A = softmax(QKᵀ/√d) held constant, so o = (A·V) W_oᵀ + b_o is linear in V = x W_vᵀ + b_v."""
    w = {name: (getattr(m, name).weight.detach(), getattr(m, name).bias.detach()) for name in "qkvo"}
    lin = lambda t, name: t @ w[name][0].T + w[name][1]
    q, k, v = m.split(lin(x, "q")), m.split(lin(x, "k")), m.split(lin(x, "v"))
    a = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    z = a @ v
    zf = z.transpose(1, 2).flatten(2)
    o = lin(zf, "o")
    r_z = m.split(linear_rule(zf, w["o"][0], o, o / o[0].numel()))
    r_v = v * (a.transpose(-2, -1) @ (r_z / stabilised(z)))  # ε rule of z = A·V in V
    vf = lin(x, "v")
    return linear_rule(x, w["v"][0], vf, r_v.transpose(1, 2).flatten(2))


@pytest.mark.parametrize("style", ["sdpa", "explicit", "mha"])
def test_attention_rule(style: str) -> None:
    model = Attention(style).load()
    x = rand(2, 5, 4)
    torch.testing.assert_close(lrp(model, x), attention_rule(model, x), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- gates, constants, divisors


class Gated(nn.Module):
    """A 1×1 convolution whose output is multiplied by a factor, written in several ways."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.conv, self.se = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        gate = torch.sigmoid(self.se(h.mean((2, 3), keepdim=True)))
        if self.style == "se":  # squeeze-excitation
            return h * gate
        if self.style == "se-first":  # torchvision's SqueezeExcitation: scale * input
            return gate * h
        if self.style == "hard-se":
            return h * F.hardsigmoid(self.se(h.mean((2, 3), keepdim=True)))
        if self.style == "se-reshaped":  # the gate reshaped before use: still a gate
            return h * gate.flatten(1).unsqueeze(-1).unsqueeze(-1)
        if self.style == "se-inplace":
            return h.mul_(gate)
        if self.style == "swish":  # SiLU written as x·σ(x)
            return h * h.sigmoid()
        if self.style == "constant":  # layer scale
            return h * self.se.bias.view(1, 3, 1, 1)
        if self.style == "divisor":  # a normalisation written out: the divisor is the scale
            return h / h.norm(dim=1, keepdim=True)
        raise ValueError(self.style)


@pytest.mark.parametrize("style", ["se", "se-first", "hard-se", "se-reshaped", "se-inplace", "swish", "constant",
                                   "divisor"])
def test_factor_is_a_constant_in_products(style: str) -> None:
    """y = h·g with g held constant: R_h = h·g·R_y/(y + ε sign y), then the convolution's ε rule.
    (g is read off as y/h, hence rtol 1e-10.)"""
    model = seeded(Gated(style)).eval()
    x = rand(2, 3, 2, 2)
    with torch.no_grad():
        h = model.conv(x)
        y = model(x)
    factor = y / h  # g, elementwise (y = h·g exactly up to rounding)
    r_h = h * factor * (y / y[0].numel()) / stabilised(y)
    w = model.conv.weight.detach().flatten(1)  # 1×1 convolution = linear over channels
    expected = linear_rule(x.movedim(1, -1), w, h.movedim(1, -1), r_h.movedim(1, -1)).movedim(-1, 1)
    torch.testing.assert_close(lrp(model, x), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", [nn.GELU(), nn.SiLU(), nn.Hardswish(), nn.Tanh(), nn.ELU(), nn.Hardtanh(-0.5, 0.5),
                                        nn.Sigmoid(), nn.Hardswish(inplace=True)])
def test_identity_rule_for_elementwise_activations(activation: nn.Module) -> None:
    """R_h = R_y (AttnLRP eq. 9): with y the encoder output, R_h = y/D, then the linear layer's ε rule.
    (The gradient would scale R_y by the activation's slope, which is not 1 for any of these.)"""
    lin = seeded(nn.Linear(4, 5))
    x = rand(3, 4)
    with torch.no_grad():
        h = lin(x)
        y = activation(h.clone())
    expected = linear_rule(x, lin.weight.detach(), h, y / y.shape[1])
    torch.testing.assert_close(lrp(nn.Sequential(lin, activation), x), expected, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- outputs changed in place after the rule


class ChangedInPlace(nn.Module):
    """y = [h, h'] with h = lin(x) copied out first (cat does not keep h) and h' = h changed in place."""

    def __init__(self, change: str) -> None:
        super().__init__()
        self.change = change
        self.lin = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        before = torch.cat([h], 1)
        if self.change == "relu":
            h.relu_()
        elif self.change == "clamp":
            h.clamp_(min=-0.1)
        elif self.change == "part":
            h[:, :2].add_(1.0)
        else:
            raise ValueError(self.change)
        return torch.cat([before, h], 1)


@pytest.mark.parametrize("change", ["relu", "clamp", "part"])
def test_denominator_is_the_output_before_an_in_place_change(change: str) -> None:
    """The linear layer's ε rule divides by h as it left the layer, whatever changes h later.

    R_y = y/D splits into R₁ (the copy of h) and R₂ (h'). ReLU and clamp pass R₂ where they let h through;
    `h[:, :2] += 1` is a sum, whose ε rule gives those columns h·R₂/(h' + ε sign h'). So
    R_h = R₁ + that, and R_x = the linear rule over h itself.
    """
    model = seeded(ChangedInPlace(change)).eval()
    x = rand(3, 4)
    with torch.no_grad():
        h = model.lin(x)
        y = model(x)
    r = y / y.shape[1]
    r1, r2 = r[:, :5], r[:, 5:]
    if change == "relu":
        r_h = r1 + (h > 0) * r2
    elif change == "clamp":
        r_h = r1 + (h >= -0.1) * r2
    else:
        shifted = h + torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0], dtype=h.dtype)
        r_h = r1 + torch.where(torch.arange(5) < 2, h * r2 / stabilised(shifted), r2)
    assert (h < -0.1).any() and (r1 != 0).all()  # the cases that a wrong denominator would show
    expected = linear_rule(x, model.lin.weight.detach(), h, r_h)
    torch.testing.assert_close(lrp(model, x), expected, rtol=1e-12, atol=1e-14)


class ThroughReLU(nn.Module):
    """h = lin1(x), then lin2 over ReLU(h): ReLU in place, or not; in "also" h itself is an output too."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.lin1 = nn.Linear(4, 5)
        self.lin2 = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin1(x)
        if self.kind == "in place":
            return self.lin2(h.relu_())
        out = self.lin2(F.relu(h))
        return torch.cat([out, h], 1) if self.kind == "also" else out


@pytest.mark.parametrize("kind", ["in place", "new tensor", "also"])
def test_denominator_after_a_relu(kind: str) -> None:
    """Relevance reaching h through a ReLU only is zero where h ≤ 0; where h is also read otherwise
    ("also": h is an output, its relevance h/D reaches h < 0 too), h + ε·sign(h) divides it there.

    R_h = (h > 0)·R_y + R_direct, with R_y lin2's ε rule over y = ReLU(h); R_x the linear rule over h.
    """
    model = seeded(ThroughReLU(kind)).eval()
    x = rand(6, 4)
    with torch.no_grad():
        h = model.lin1(x)
        y = h.clamp(min=0)
        z2 = model.lin2(y)
        out = model(x)
    r = out / out.shape[1]
    r_y = linear_rule(y, model.lin2.weight.detach(), z2, r[:, :3])
    r_h = (h > 0) * r_y + (r[:, 3:] if kind == "also" else 0)
    assert (h < 0).any() and (h > 0).any()  # the cases that a wrong denominator would show
    expected = linear_rule(x, model.lin1.weight.detach(), h, r_h)
    torch.testing.assert_close(lrp(model, x), expected, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- refusals name the operation and module


def test_softmax_that_receives_relevance_is_refused_by_name() -> None:
    """softmax has a rule only as attention weights (a constant factor); refusals of other operations
    and of products of two activations: tests/attribution/test_methods.py."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Softmax(dim=1)).double().eval()
    with pytest.raises(AttributionError, match=r"toy: .*softmax.* in module 1 \(Softmax\)"):
        attribute(model, rand(2, 3, 4, 4), "lrp", model_name="toy")


def test_division_by_an_activation_alone_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Softplus()).double()

    class Reciprocal(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 1.0 / model(x)

    with pytest.raises(AttributionError, match=r"__rdiv__.*\(a division by an activation\)"):
        attribute(Reciprocal().double(), rand(2, 3, 4, 4), "lrp")


class _Residual(nn.Module):
    """conv → BN → ReLU, a residual sum and an in-place ReLU: every kind of z the rules keep."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv1(x)))
        return F.relu_(self.conv2(h) + h)


@pytest.mark.parametrize("method", ["lrp_epsilon", "gradient_x_input", "saliency"])
def test_a_call_keeps_none_of_its_tensors_alive(method: str) -> None:
    """ε-LRP keeps each operation's output for its division by a hook on that output; once the call
    returns, nothing of its forward pass may stay alive (a run calls it once per batch). The gradient
    methods, beside it, show the check's baseline."""
    model = _Residual().double().eval()
    x = rand(2, 3, 8, 8)
    run = lambda: attribute(model, x, get_method(method))  # noqa: E731
    run()  # warm-up: caches made once
    before = len(live_tensors())
    for _ in range(3):
        run()
    assert len(live_tensors()) == before
