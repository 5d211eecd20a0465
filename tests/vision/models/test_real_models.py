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

from support.runs import key_before_preprocessing  # noqa: E402
from modelspace import ModelSpace, ProbeSet  # noqa: E402
from modelspace.attribution import attribute, get_method  # noqa: E402
from modelspace.errors import AttributionError  # noqa: E402
from modelspace.maps import encoder_activations  # noqa: E402
from modelspace.models import (  # noqa: E402
    InputTransform,
    ModelSpec,
    load_model,
    own_config,
    resolve_preprocessing,
    state_dict_hash,
)

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
        a = attribute(model.module, x, method, encoder=model.encoder_ref, model_name=model.name)
        assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0, method


@pytest.mark.parametrize("source", ["timm:resnet18", "timm:regnetx_002", "torchvision:resnet18"])
def test_epsilon_lrp_runs_on_plain_cnns(source: str) -> None:
    model = load_model(_spec(source))
    x = model.transform(_x())
    a = attribute(model.module, x, "lrp_epsilon", encoder=model.encoder_ref, model_name=model.name)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0


# ε-LRP on the families whose layer norms, attention, gates and smooth activations need the rules beyond
# linear layers (their correctness: tests/vision/attribution/test_lrp_references.py), each with its default encoder and R (ViT:
# the patch-token grid). One batch at 32–64 px keeps them fast.
SMALL_LRP = {  # source -> kwargs
    "timm:vit_small_patch16_224": {"img_size": 32}, "timm:convnext_tiny": {},
    "timm:efficientnet_b0": {}, "timm:mobilenetv3_large_100": {},
    "timm:swin_tiny_patch4_window7_224": {"img_size": 64, "window_size": 2},
    "torchvision:vit_b_16": {"image_size": 32}, "torchvision:convnext_tiny": {},
    "torchvision:efficientnet_b0": {}, "torchvision:mobilenet_v3_small": {},
}
# torchvision's EfficientNet at its random init shrinks activations ~40× per stage, to ~1e-14 at R: the
# default ε = 1e-6 would absorb all relevance there (maps of exact zeros), so it runs with a smaller ε.
EPSILON = {"torchvision:efficientnet_b0": 1e-20}


@pytest.mark.parametrize("source", list(SMALL_LRP))
def test_epsilon_lrp_runs_through_norms_attention_and_gates(source: str) -> None:
    kwargs = SMALL_LRP[source]
    size = kwargs.get("img_size", 32)
    model = load_model(ModelSpec(source.replace(":", "-"), source, pretrained=False, input_size=size, kwargs=kwargs))
    x = model.transform(torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)))
    method = get_method("lrp_epsilon", epsilon=EPSILON.get(source, 1e-6))
    a = attribute(model.module, x, method, encoder=model.encoder_ref, model_name=model.name)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0


def test_epsilon_lrp_refusal_names_the_operation_and_the_module() -> None:
    """gMLP's spatial gating multiplies two activations, u · proj(v), neither of them a gate."""
    model = load_model(ModelSpec("gmlp", "timm:gmlp_ti16_224", pretrained=False, input_size=32, kwargs={"img_size": 32}))
    x = model.transform(torch.rand(1, 3, 32, 32))
    with pytest.raises(AttributionError, match=r"gmlp: .*mul in module blocks\.\d+\.mlp_channels\.gate "
                                               r"\(SpatialGatingUnit\) \(a product of two activations"):
        attribute(model.module, x, "lrp_epsilon", encoder=model.encoder_ref, model_name=model.name)


def test_every_method_and_baseline_end_to_end(tmp_path) -> None:
    specs = [_spec(s) for s in ("timm:resnet18", "timm:convnext_atto", "timm:vit_tiny_patch16_224",
                                "torchvision:mobilenet_v3_small", "torchvision:swin_t")]
    probe = ProbeSet.from_array(np.random.default_rng(0).integers(0, 256, (4, 3, SIZE, SIZE), dtype=np.uint8))
    space = ModelSpace(methods=("saliency", "gradient_x_input", "lrp_epsilon"),
                       baselines=("svcca", "linear_cka", "rbf_cka", "rsa"), store=tmp_path / "store",
                       progress=False).fit(specs, probe)
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


# --------------------------------------------------------------------------- each model's own preprocessing


@pytest.mark.parametrize("name, kwargs", [("vit_tiny_patch16_224", {}), ("resnet18", {}),
                                          ("vit_small_patch14_reg4_dinov2", {"img_size": 56})])
def test_timm_models_get_their_own_preprocessing(name: str, kwargs: dict) -> None:
    model = load_model(ModelSpec(name, f"timm:{name}", pretrained=False, kwargs=kwargs))
    cfg = timm.data.resolve_data_config({}, model=timm.create_model(name, pretrained=False, **kwargs))
    # built with img_size=, a ViT takes that size, whatever its pretrained_cfg says
    size = tuple(kwargs.get("img_size", cfg["input_size"][1]) for _ in range(2))
    assert model.transform == InputTransform(size, cfg["mean"], cfg["std"], cfg["interpolation"])
    assert cfg["interpolation"] == "bicubic" and model.preprocessing["crop_pct"] == cfg["crop_pct"]
    assert model.preprocessing["from"]["mean"] == "timm pretrained_cfg"
    assert model.preprocessing["from"]["input_size"] == ("timm model img_size" if kwargs else "timm pretrained_cfg")
    # the weightless reading (for the probe size) says the same
    spec = ModelSpec(name, f"timm:{name}", kwargs=kwargs)
    assert resolve_preprocessing(spec, own_config(spec).stated)[1] == model.preprocessing


@pytest.mark.parametrize("name", ["resnet18", "swin_t", "vit_b_16"])
def test_torchvision_models_get_their_default_weights_transforms(name: str) -> None:
    model = load_model(ModelSpec(name, f"torchvision:{name}", pretrained=False))  # no weights: DEFAULT's metadata
    t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    assert model.transform == InputTransform((t.crop_size[0],) * 2, tuple(t.mean), tuple(t.std), t.interpolation.value)
    assert model.preprocessing["crop_pct"] == round(t.crop_size[0] / t.resize_size[0], 4)
    spec = ModelSpec(name, f"torchvision:{name}")
    assert resolve_preprocessing(spec, own_config(spec).stated)[1] == model.preprocessing


def test_zoo_fields_still_win_over_the_model() -> None:
    model = load_model(ModelSpec("r18", "timm:resnet18", pretrained=False, input_size=64, mean=(0.5,) * 3,
                                 std=(0.5,) * 3, interpolation="bilinear"))
    assert model.transform == InputTransform((64, 64), (0.5,) * 3, (0.5,) * 3, "bilinear")
    assert set(model.preprocessing["from"].values()) == {"zoo", "timm pretrained_cfg"}  # crop_pct recorded only


# --------------------------------------------------------------------------- ViT-style encoders: a token grid


@pytest.mark.parametrize("name, kwargs, prefix", [("vit_tiny_patch16_224", {}, 1),
                                                  ("deit_tiny_distilled_patch16_224", {}, 2),  # class + distillation
                                                  ("vit_small_patch14_reg4_dinov2", {"img_size": 56}, 5)])  # + 4 registers
def test_timm_vit_r_is_the_patch_token_grid_of_forward_features(name: str, kwargs: dict, prefix: int) -> None:
    model = load_model(ModelSpec(name, f"timm:{name}", pretrained=False, kwargs=kwargs))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x = model.transform(images)
    r = model.tap()(x)
    tokens = model.module.forward_features(x)  # timm's own features: every token, after the final norm
    h, w = model.module.patch_embed.grid_size
    assert model.module.num_prefix_tokens == prefix and tokens.shape[1] == prefix + h * w
    assert r.shape == (2, tokens.shape[2], h, w)
    torch.testing.assert_close(r, tokens[:, prefix:].transpose(1, 2).reshape(r.shape))
    # the baselines see the same R; the attribution seeds mean(R) over the patch tokens only
    np.testing.assert_allclose(encoder_activations(model, images, progress=False), r.reshape(2, -1).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    grad = attribute(model.module, x, "gradient", encoder=model.encoder_ref, model_name=model.name)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model.module.forward_features(leaf)[:, prefix:].mean(dim=(1, 2)).sum(), leaf)
    torch.testing.assert_close(grad, expected)


def test_timm_swin_r_is_forward_features_channels_first() -> None:
    model = load_model(_spec("timm:swin_tiny_patch4_window7_224"))
    x = model.transform(_x())
    features = model.module.forward_features(x)  # (B, H, W, C) in timm 1.x
    r = model.tap()(x)
    assert features.shape == (2, 7, 7, 768) and r.shape == (2, 768, 7, 7)  # 224 / 32 = 7: one cell per final patch
    torch.testing.assert_close(r, features.permute(0, 3, 1, 2))


def test_torchvision_vit_r_is_the_encoder_output_without_the_class_token() -> None:
    model = load_model(_spec("torchvision:vit_b_16"))
    x = model.transform(_x())
    vit = model.module
    with torch.no_grad():  # the ViT forward spelled out: patches, class token first, encoder, head on token 0
        patches = vit.conv_proj(x).flatten(2).transpose(1, 2)
        tokens = vit.encoder(torch.cat([vit.class_token.expand(2, -1, -1), patches], 1))
        torch.testing.assert_close(vit.heads(tokens[:, 0]), vit(x))
        r = model.tap()(x)
    assert r.shape == (2, 768, 14, 14)
    torch.testing.assert_close(r, tokens[:, 1:].transpose(1, 2).reshape(2, 768, 14, 14))


def test_torchvision_swin_r_is_features_channels_first() -> None:
    model = load_model(_spec("torchvision:swin_t"))
    x = model.transform(_x())
    swin = model.module
    with torch.no_grad():
        features = swin.features(x)
        torch.testing.assert_close(swin.head(swin.flatten(swin.avgpool(swin.permute(swin.norm(features))))), swin(x))
        r = model.tap()(x)
    assert features.shape == (2, 7, 7, 768) and r.shape == (2, 768, 7, 7)
    torch.testing.assert_close(r, features.permute(0, 3, 1, 2))


def test_store_keys_change_only_where_r_or_the_input_changes() -> None:
    explicit = {"mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear"}  # and input_size: _spec
    for source in ("timm:resnet18", "torchvision:resnet18", "timm:convnext_atto"):  # R unchanged: the key too
        model = load_model(_spec(source, **explicit))
        assert model.layout is None
        assert model.key == key_before_preprocessing(model.spec.to_dict(), state_dict_hash(model.module)), source
    for source in ("timm:vit_tiny_patch16_224", "torchvision:swin_t"):  # R is now a map: another key
        model = load_model(_spec(source, **explicit))
        assert model.layout is not None and model.spec.interpolation == "bilinear"
        assert model.key != key_before_preprocessing(model.spec.to_dict(), state_dict_hash(model.module)), source


def test_hf_vit_without_input_size_runs_end_to_end(tmp_path, monkeypatch) -> None:
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64)
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                                   image_std=[0.25] * 3).save_pretrained(tmp_path / "vit")
    specs = [ModelSpec("hf_vit", f"hf:{tmp_path / 'vit'}"), _spec("timm:deit_tiny_distilled_patch16_224")]
    probe = ProbeSet.from_array(np.random.default_rng(0).integers(0, 256, (4, 3, 96, 96), dtype=np.uint8))
    space = ModelSpace(methods=("saliency",), baselines=("linear_cka",), store=tmp_path / "store",
                       progress=False).fit(specs, probe)
    assert not space.failures_
    vit = space.summary()["models"][0]["preprocessing"]
    assert vit["input_size"] == [64, 64] and vit["mean"] == [0.5] * 3 and vit["std"] == [0.25] * 3
    assert set(vit["from"].values()) == {"hf image processor"}
