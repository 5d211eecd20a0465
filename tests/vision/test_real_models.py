"""timm and torchvision models as users load them: real architectures with random weights.

These tests need torchvision, timm and Zennit, which do not import beside the CPU torch build of
the README's test command; `.ci/run` runs them in a second environment (see DEVELOPERS.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm", reason="the vision suite runs in .ci/run's second environment (DEVELOPERS.md)")
torchvision = pytest.importorskip("torchvision", reason="the vision suite runs in .ci/run's second environment")

from modelspace import ModelSpace, ProbeSet  # noqa: E402
from modelspace.attribution import attribute, get_method  # noqa: E402
from modelspace.errors import AttributionError  # noqa: E402
from modelspace.models import ModelSpec, load_model  # noqa: E402

CNNS = {  # source -> the module whose input is the global pool's (the last feature map before pooling)
    "timm:resnet18": None, "timm:convnext_atto": None, "timm:efficientnet_b0": None,
    "timm:mobilenetv3_small_050": None, "timm:regnetx_002": None,
    "torchvision:resnet18": "avgpool", "torchvision:convnext_tiny": "avgpool",
    "torchvision:efficientnet_b0": "avgpool", "torchvision:mobilenet_v3_small": "avgpool",
    "torchvision:regnet_y_400mf": "avgpool",
}
TRANSFORMERS = ["timm:vit_tiny_patch16_224", "timm:deit_tiny_patch16_224", "timm:swin_tiny_patch4_window7_224",
                "torchvision:vit_b_16", "torchvision:swin_t"]
SIZE = 224


def _spec(source: str, **fields) -> ModelSpec:
    return ModelSpec(source.replace(":", "-"), source, pretrained=False, input_size=SIZE, **fields)


def _x(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("source", list(CNNS))
def test_default_encoder_is_the_last_feature_map_before_pooling(source: str) -> None:
    model = load_model(_spec(source))
    x = model.transform(_x())
    r = model.tap()(x)
    if source.startswith("timm:"):
        expected = model.module.forward_features(x)  # timm's own pre-pooling features
    else:
        seen = []
        pool = model.module.get_submodule(CNNS[source])
        handle = pool.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        model.module(x)
        handle.remove()
        expected = seen[0]
    assert r.ndim == 4 and r.shape == expected.shape
    torch.testing.assert_close(r, expected)


@pytest.mark.parametrize("source", list(CNNS) + TRANSFORMERS)
def test_gradient_methods_run_on_every_family(source: str) -> None:
    model = load_model(_spec(source))
    x = model.transform(_x())
    for method in ("saliency", "gradient_x_input"):
        a = attribute(model.module, x, method, encoder=model.encoder, model_name=model.name)
        assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0, method


@pytest.mark.parametrize("source", ["timm:resnet18", "timm:regnetx_002", "torchvision:resnet18"])
def test_epsilon_lrp_runs_on_plain_cnns(source: str) -> None:
    model = load_model(_spec(source))
    x = model.transform(_x())
    a = attribute(model.module, x, "lrp_epsilon", encoder=model.encoder, model_name=model.name)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0


# ε-LRP on the families whose layer norms, attention, gates and smooth activations need the rules beyond
# linear layers (their correctness: test_lrp_references.py). One batch at 32 px keeps them fast; timm's
# ViT is built for that size, so its encoder is named (the default is found at the pretrained size).
SMALL_LRP = {  # source -> (kwargs, encoder)
    "timm:vit_small_patch16_224": ({"img_size": 32}, "norm"), "timm:convnext_tiny": ({}, None),
    "timm:efficientnet_b0": ({}, None), "timm:mobilenetv3_large_100": ({}, None),
    "timm:swin_tiny_patch4_window7_224": ({"img_size": 64, "window_size": 2}, "norm"),
    "torchvision:vit_b_16": ({"image_size": 32}, None), "torchvision:convnext_tiny": ({}, None),
    "torchvision:efficientnet_b0": ({}, None), "torchvision:mobilenet_v3_small": ({}, None),
}
# torchvision's EfficientNet at its random init shrinks activations ~40× per stage, to ~1e-14 at R: the
# default ε = 1e-6 would absorb all relevance there (maps of exact zeros), so it runs with a smaller ε.
EPSILON = {"torchvision:efficientnet_b0": 1e-20}


@pytest.mark.parametrize("source", list(SMALL_LRP))
def test_epsilon_lrp_runs_through_norms_attention_and_gates(source: str) -> None:
    kwargs, encoder = SMALL_LRP[source]
    size = kwargs.get("img_size", 32)
    model = load_model(ModelSpec(source.replace(":", "-"), source, pretrained=False, input_size=size, kwargs=kwargs,
                                 encoder=encoder))
    x = model.transform(torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)))
    method = get_method("lrp_epsilon", epsilon=EPSILON.get(source, 1e-6))
    a = attribute(model.module, x, method, encoder=model.encoder, model_name=model.name)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0


def test_epsilon_lrp_refusal_names_the_operation_and_the_module() -> None:
    """gMLP's spatial gating multiplies two activations, u · proj(v), neither of them a gate."""
    model = load_model(ModelSpec("gmlp", "timm:gmlp_ti16_224", pretrained=False, input_size=32, kwargs={"img_size": 32},
                                 encoder="norm"))
    x = model.transform(torch.rand(1, 3, 32, 32))
    with pytest.raises(AttributionError, match=r"gmlp: .*mul in module blocks\.\d+\.mlp_channels\.gate "
                                               r"\(SpatialGatingUnit\) \(a product of two activations"):
        attribute(model.module, x, "lrp_epsilon", encoder=model.encoder, model_name=model.name)


def test_every_baseline_and_gradient_method_end_to_end(tmp_path) -> None:
    specs = [_spec(s) for s in ("timm:resnet18", "timm:convnext_atto", "timm:vit_tiny_patch16_224",
                                "torchvision:mobilenet_v3_small", "torchvision:swin_t")]
    probe = ProbeSet.from_array(np.random.default_rng(0).integers(0, 256, (4, 3, SIZE, SIZE), dtype=np.uint8))
    space = ModelSpace(methods=("saliency", "gradient_x_input"), baselines=("svcca", "linear_cka", "rbf_cka", "rsa"),
                       store=tmp_path / "store", progress=False).fit(specs, probe)
    assert not space.failures_
    for estimator, result in space.results_.items():
        assert result.names == [s.name for s in specs], estimator
        assert np.isfinite(result.affinity).all() and np.allclose(np.diag(result.affinity), 1.0, atol=1e-3), estimator


def test_timm_pretrained_weights_from_a_local_file(tmp_path) -> None:
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    spec = ModelSpec("r18", "timm:resnet18", pretrained=True, input_size=SIZE,
                     kwargs={"pretrained_cfg_overlay": {"file": str(path)}})
    loaded = load_model(spec).module
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, msg=name)


def test_torchvision_pretrained_weights_from_the_local_hub_cache(tmp_path) -> None:
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    reference = torchvision.models.resnet18()
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        (tmp_path / "checkpoints").mkdir()
        torch.save(reference.state_dict(), tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[-1])
        loaded = load_model(ModelSpec("tv", "torchvision:resnet18", input_size=SIZE)).module
    finally:
        torch.hub.set_dir(old)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, msg=name)
