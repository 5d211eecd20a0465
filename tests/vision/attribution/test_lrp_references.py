"""ε-LRP through LayerNorm, attention, gates and smooth activations, against independent references.

References (no test compares our ε-LRP with itself):

- lxt 2.1 (LRP-eXplains-Transformers, Achtibat et al., ICML 2024), its "efficient" form: gradient×input
  of a model whose forward lxt patches so that the nonlinear factors are constants (`stop_gradient` on
  LayerNorm's σ in `layer_norm_forward`, on Q and K in CP-LRP attention, and here on gates) and the
  element-wise activations follow the identity rule (`identity_rule_implicit_fn`: gradient y/(x + δ)).
  On the linear layers, sums and pooling, gradient×input *is* the ε rule at ε = 0; ours runs at
  ε = 1e-20 in float64, and lxt's identity rule gets δ = 1e-20 too (its default 1e-10 is meant for
  float32 language models, and an error of 1e-10/|x| at the smallest pre-activation x spreads to every
  input upstream of it). So both compute the same rules: ε → 0 on linear operations; LayerNorm with σ
  constant (ε rule over the layer, γ and β as weight and bias); attention weights constant (no
  relevance to Q, K); SE gates constant; identity rule on GELU, SiLU and hard swish. Tolerance 1e-9 of
  the largest relevance (measured: ≤ 3.2e-15). The torchvision ViT test takes lxt's preset unchanged
  (δ = 1e-10): 1e-6 there (measured: 1.4e-8).
- Zennit 0.5.1 on ResNet-18 and VGG-11: `Epsilon(ε)` on every convolution, BatchNorm, max pooling and
  residual sum (Zennit's `ResNetBasicBlockCanonizer` makes the sum a module; it does *not* merge BatchNorm
  into the convolution, so both keep BN as a layer of its own), `Pass` on ReLU, at ε = 0.1 in float64,
  where ε visibly changes the maps, so a misplaced stabiliser would show. Tolerance 1e-9 relative
  (measured: 0, the same floating-point operations in the same order). The same on a Taskonomy encoder
  (the `taskonomy:` source's architecture: bottlenecks whose shortcut may be a 1×1 max pooling, a
  ceil-mode stem pooling, R at ``relu1``), its sums made modules by Zennit's `ResNetBottleneckCanonizer`,
  whose forward is that of any ResNet bottleneck.
- Conservation: without biases, relevance at the input sums to mean(R) (the seed is R/D), to 1e-10
  relative at ε = 1e-20 in float64 (measured: ≤ 3.1e-14).

lxt patches classes globally; every patch here is undone at the end of its test (pytest's monkeypatch).
"""

from __future__ import annotations

import copy
import pathlib
import sys
import types

import pytest
import torch
from torch import nn
import torch.nn.functional as F

timm = pytest.importorskip("timm", reason="the vision suite runs in .ci/run's second environment (DEVELOPERS.md)")
torchvision = pytest.importorskip("torchvision", reason="the vision suite runs in .ci/run's second environment")
lxt = pytest.importorskip("lxt", reason="lxt is installed in the vision environment (DEVELOPERS.md)")
zennit = pytest.importorskip("zennit", reason="the vision suite runs in .ci/run's second environment")

from modelspace.attribution import attribute, get_method  # noqa: E402


def _lxt_efficient() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """lxt's rule modules. lxt 2.1's `lxt.efficient` package initialiser imports its patches for
    language models, which need transformers 4.x (this environment has 5.x); the rule modules
    themselves need only torch and torchvision, so they are loaded without that initialiser."""
    root = pathlib.Path(lxt.__file__).parent
    for package in ("lxt.efficient", "lxt.efficient.models"):
        if package not in sys.modules:
            stub = types.ModuleType(package)
            stub.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
            sys.modules[package] = stub
    from lxt.efficient import patches, rules
    from lxt.efficient.models import vit_torch

    return patches, rules, vit_torch


patches, rules, vit_torch = _lxt_efficient()

TINY = 1e-20  # ε for the comparisons with ε = 0 references: far below every |z| here
CLOSE = 1e-9  # of the largest relevance, against lxt (see the module docstring)


def lxt_patch(mp: pytest.MonkeyPatch, cls: type, forward, keep_original: bool = True) -> None:
    """lxt's `patch_method` on a class, undone by `mp` at the end of the test."""
    mp.setattr(cls, "forward", cls.forward)  # recorded, so that teardown restores it
    mp.setattr(cls, "original_forward", None, raising=False)  # removed at teardown
    assert patches.patch_method(forward, cls, keep_original=keep_original)


def identity_rule(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """lxt's identity rule for an element-wise activation, its stabiliser δ at TINY."""
    return rules.identity_rule_implicit_fn.apply(self.original_forward, x, TINY)


def held_gate(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A gate's output as a constant, with lxt's `stop_gradient` (its CP-LRP treatment of gates)."""
    return rules.stop_gradient(self.original_forward(x))


def layer_norm_2d(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """lxt's `layer_norm_forward` over the channels of an NCHW map (LayerNorm2d)."""
    return patches.layer_norm_forward(self, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def gradient_x_input(forward, x: torch.Tensor) -> torch.Tensor:
    """x ⊙ ∂ mean(R) / ∂x with R = forward(x), by plain autograd: lxt's efficient LRP read-out."""
    x = x.clone().requires_grad_(True)
    r = forward(x)
    (grad,) = torch.autograd.grad(r, x, torch.full_like(r, 1.0 / r[0].numel()))
    return (x * grad).detach()


def agreement(ours: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    scale = ref.abs().max().item()
    corr = torch.corrcoef(torch.stack([ours.flatten(), ref.flatten()]))[0, 1].item()
    return {"max_abs": (ours - ref).abs().max().item(), "rel_to_max": (ours - ref).abs().max().item() / scale,
            "corr": corr}


def _x(size: int, n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def built(factory, *args, **kwargs) -> nn.Module:
    """factory(*args, **kwargs) with its random weights drawn from seed 0 (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return factory(*args, **kwargs)


def randomise(model: nn.Module, seed: int = 0, biases: bool = True) -> nn.Module:
    """float64, eval, and non-trivial norms: γ ~ U(0.5, 1.5), β ~ U(-0.2, 0.2) (or 0), BN statistics random.

    With biases=False every bias, BN shift, position embedding and class token is zero, so that
    nothing but the input holds relevance (conservation)."""
    g = torch.Generator().manual_seed(seed)
    uniform = lambda t, lo, hi: t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) * (hi - lo) + lo)
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias" or leaf in ("pos_embed", "cls_token", "class_token", "pos_embedding"):
                uniform(p, -0.2, 0.2) if biases else p.zero_()
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) and m.weight is not None:
                uniform(m.weight, 0.5, 1.5)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                uniform(m.running_var, 0.5, 1.5)
                uniform(m.running_mean, -0.2, 0.2) if biases else m.running_mean.zero_()
    return model


# ------------------------------------------------------------------------------------------ against lxt


def test_torchvision_vit_matches_lxt_cp_lrp(monkeypatch) -> None:
    """lxt's own preset for torchvision's ViT (`vit_torch.cp_LRP`: identity rule on GELU, LayerNorm
    with σ constant, nn.MultiheadAttention with Q and K constant), unchanged."""
    model = randomise(built(torchvision.models.VisionTransformer, image_size=32, patch_size=8, num_layers=2,
                            num_heads=2, hidden_dim=16, mlp_dim=32))
    x = _x(32)
    ours = attribute(model, x, get_method("lrp", epsilon=TINY), encoder="encoder")

    def encoder(x: torch.Tensor) -> torch.Tensor:  # VisionTransformer.forward up to its encoder
        tokens = model._process_input(x)
        return model.encoder(torch.cat([model.class_token.expand(len(x), -1, -1), tokens], dim=1))

    with monkeypatch.context() as mp:
        for cls, patch in vit_torch.cp_LRP.items():
            mp.setattr(cls, "forward", cls.forward)
            mp.setattr(cls, "original_forward", None, raising=False)
            assert patch(cls)
        ref = gradient_x_input(encoder, x)
    assert nn.LayerNorm.forward.__module__ == "torch.nn.modules.normalization"  # lxt's patches are undone
    found = agreement(ours, ref)
    assert found["rel_to_max"] < 1e-6, found


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit-softmax"])
def test_timm_vit_matches_lxt(monkeypatch, fused: bool) -> None:
    """timm's ViT-tiny (img 32, patch 8, depth 2). Ours either through F.scaled_dot_product_attention
    or through timm's explicit q @ kᵀ → softmax → @ v; lxt's reference always through SDPA with its
    `stop_gradient` on Q and K (as its `cp_wrap_attention_forward` does for attention functions)."""
    model = randomise(built(timm.create_model, "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2))
    for block in model.blocks:
        block.attn.fused_attn = fused
    x = _x(32)
    ours = attribute(model, x, get_method("lrp", epsilon=TINY), encoder="norm")
    for block in model.blocks:
        block.attn.fused_attn = True
    sdpa = F.scaled_dot_product_attention
    with monkeypatch.context() as mp:
        lxt_patch(mp, nn.GELU, identity_rule)
        lxt_patch(mp, timm.layers.LayerNorm, patches.layer_norm_forward)
        mp.setattr(F, "scaled_dot_product_attention",
                   lambda q, k, v, *a, **kw: sdpa(rules.stop_gradient(q), rules.stop_gradient(k), v, *a, **kw))
        ref = gradient_x_input(model.forward_features, x)
    found = agreement(ours, ref)
    assert found["rel_to_max"] < CLOSE, found


def test_timm_convnext_matches_lxt(monkeypatch) -> None:
    """timm's ConvNeXt-atto: LayerNorm2d with σ constant, identity rule on GELU, layer scale a constant."""
    model = randomise(built(timm.create_model, "convnext_atto", pretrained=False))
    x = _x(32)
    ours = attribute(model, x, get_method("lrp", epsilon=TINY), encoder="norm_pre")
    with monkeypatch.context() as mp:
        lxt_patch(mp, timm.layers.activations.GELU, identity_rule)
        lxt_patch(mp, timm.layers.LayerNorm2d, layer_norm_2d)
        ref = gradient_x_input(model.forward_features, x)
    found = agreement(ours, ref)
    assert found["rel_to_max"] < CLOSE, found


@pytest.mark.parametrize("name, encoder", [("efficientnet_b0", "bn2"), ("mobilenetv3_small_100", "blocks")])
def test_timm_gated_cnns_match_lxt(monkeypatch, name: str, encoder: str) -> None:
    """Squeeze-excitation gates (sigmoid, hard sigmoid) constant, identity rule on SiLU and hard swish."""
    model = randomise(built(timm.create_model, name, pretrained=False))
    x = _x(32)
    ours = attribute(model, x, get_method("lrp", epsilon=TINY), encoder=encoder)
    reference = copy.deepcopy(model)
    for m in reference.modules():  # lxt's identity rule reads the input after the call: no in-place
        if hasattr(m, "inplace"):
            m.inplace = False
    with monkeypatch.context() as mp:
        for act in (nn.SiLU, nn.Hardswish):
            lxt_patch(mp, act, identity_rule)
        for gate in (nn.Sigmoid, nn.Hardsigmoid):  # in these models, only the SE gates
            lxt_patch(mp, gate, held_gate)
        ref = gradient_x_input(reference.forward_features, x)
    found = agreement(ours, ref)
    assert found["rel_to_max"] < CLOSE, found


# ------------------------------------------------------------------------------------------ against Zennit


def _zennit_epsilon(model: nn.Module, features, x: torch.Tensor, epsilon: float, canonizer=None) -> torch.Tensor:
    from zennit.composites import LayerMapComposite
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Pass
    from zennit.torchvision import ResNetBasicBlockCanonizer

    composite = LayerMapComposite(
        layer_map=[(nn.ReLU, Pass()), ((nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, Sum), Epsilon(epsilon))],
        canonizers=[canonizer or ResNetBasicBlockCanonizer()],
    )
    x = x.clone().requires_grad_(True)
    with composite.context(model):
        r = features(x)
        (relevance,) = torch.autograd.grad(r, x, r / r[0].numel())  # Zennit's gradient is the relevance
    return relevance


@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_plain_cnns_match_zennit(arch: str) -> None:
    model = randomise(built(torchvision.models.get_model, arch))
    encoder = "layer4" if arch == "resnet18" else "features"
    features = nn.Sequential(*list(model.children())[:-2]) if arch == "resnet18" else model.features
    x = _x(64)
    eps = 0.1
    ours = attribute(copy.deepcopy(model), x, get_method("lrp", epsilon=eps), encoder=encoder)
    ref = _zennit_epsilon(model, features, x, eps)
    found = agreement(ours, ref)
    assert found["rel_to_max"] < 1e-9 and found["corr"] > 1 - 1e-12, found
    # ε matters at this size: the test would see a stabiliser in the wrong place
    assert (ours - attribute(model, x, get_method("lrp", epsilon=TINY), encoder=encoder)).abs().max() > 1e-3 * ref.abs().max()


def test_taskonomy_encoder_matches_zennit() -> None:
    from zennit.layer import Sum
    from zennit.torchvision import ResNetBottleneckCanonizer

    from modelspace.models.taskonomy import Bottleneck, TaskonomyEncoder

    class TaskonomyBottlenecks(ResNetBottleneckCanonizer):
        """Zennit's bottleneck canonizer, matching the Taskonomy encoder's bottleneck class instead of
        torchvision's (the two have the same layers and forward)."""

        @classmethod
        def _attribute_map(cls, name, module):
            if isinstance(module, Bottleneck):
                return {"forward": ResNetBottleneckCanonizer.forward.__get__(module), "canonizer_sum": Sum()}
            return None

    model = randomise(built(TaskonomyEncoder))

    def up_to_r(x: torch.Tensor) -> torch.Tensor:
        captured = []
        handle = model.relu1.register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            model(x)
        finally:
            handle.remove()
        return captured[0]

    x = _x(64)  # R is 8×4×4
    eps = 0.1
    ours = attribute(copy.deepcopy(model), x, get_method("lrp", epsilon=eps), encoder="relu1")
    ref = _zennit_epsilon(model, up_to_r, x, eps, canonizer=TaskonomyBottlenecks())
    found = agreement(ours, ref)
    assert found["rel_to_max"] < 1e-9 and found["corr"] > 1 - 1e-12, found
    assert (ours - attribute(model, x, get_method("lrp", epsilon=TINY), encoder="relu1")).abs().max() > 1e-3 * ref.abs().max()


# ------------------------------------------------------------------------------------------ conservation


@pytest.mark.parametrize("name, kwargs, encoder", [
    ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2}, "norm"),
    ("convnext_atto", {}, "norm_pre"),
    ("efficientnet_b0", {}, "bn2"),
    ("mobilenetv3_small_100", {}, "blocks"),
])
def test_relevance_is_conserved_without_biases(name: str, kwargs: dict, encoder: str) -> None:
    """Σ input relevance = mean(R) per sample once nothing but the input can hold relevance."""
    model = randomise(built(timm.create_model, name, pretrained=False, **kwargs), biases=False)
    x = _x(32)
    relevance = attribute(model, x, get_method("lrp", epsilon=TINY), encoder=encoder).sum(dim=(1, 2, 3))
    with torch.no_grad():
        r = model.forward_features(x)
    torch.testing.assert_close(relevance, r.mean(dim=tuple(range(1, r.ndim))), rtol=1e-10, atol=0)

