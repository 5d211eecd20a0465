"""Source loaders: python, checkpoint, torchscript, hf (offline), timm / torchvision (where they import)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import images
from modelspace.errors import ModelLoadError, ZooError
from modelspace.models import (
    SOURCES,
    InputTransform,
    ModelSpec,
    load_model,
    register_source,
    state_dict_hash,
)
from modelspace.models.sources import _timm_weight_source, torchvision_default_encoder
from toy_models import tiny_cnn, tiny_resnet

VISION_SKIP = ("torchvision's release for torch 2.13 does not import with the CPU torch build here "
               "(and timm imports torchvision); .ci/run's second environment runs these tests (DEVELOPERS.md)")


class Meta:
    """A custom class: pickling it into a checkpoint makes weights_only loading refuse the file."""

    def __init__(self, epoch: int):
        self.epoch = epoch


def not_a_module() -> str:
    return "a string"


# ---------------------------------------------------------------------------------------------- python


def test_python_source():
    loaded = load_model(ModelSpec("cnn", "python:toy_models:tiny_cnn", kwargs={"width": 4}, input_size=16))
    assert loaded.name == "cnn"
    assert loaded.encoder == "encoder"  # the default when the module has an 'encoder' submodule
    assert not loaded.module.training
    assert not any(p.requires_grad for p in loaded.module.parameters())
    assert loaded.transform == InputTransform((16, 16), loaded.spec.mean, loaded.spec.std)
    x = images()
    torch.testing.assert_close(loaded.tap()(x), tiny_cnn(4).encoder(x))


def test_python_source_without_encoder_module_defaults_to_whole_output():
    assert load_model(ModelSpec("r", "python:toy_models:tiny_resnet")).encoder is None
    assert load_model(ModelSpec("r", "python:toy_models:tiny_resnet", encoder="layer2")).encoder == "layer2"


@pytest.mark.parametrize(
    "source, match",
    [
        ("python:test_sources:not_a_module", "not a torch.nn.Module"),
        ("python:no_such_package_xyz:build", "cannot import module 'no_such_package_xyz'"),
        ("python:toy_models:no_such_builder", "has no attribute 'no_such_builder'"),
    ],
)
def test_python_source_errors_name_the_model(source, match):
    with pytest.raises(ModelLoadError, match=match) as info:
        load_model(ModelSpec("bad", source))
    assert f"model 'bad' (source '{source}')" in str(info.value)


def test_bad_encoder_name_fails_at_load():
    with pytest.raises(ZooError, match=r"model 'cnn'.*'encodr'.*did you mean 'encoder'"):
        load_model(ModelSpec("cnn", "python:toy_models:tiny_cnn", encoder="encodr"))


def test_loader_exception_becomes_model_load_error_with_cause():
    @register_source("broken_test")
    def broken(spec, ref):
        raise KeyError("inner problem")

    try:
        with pytest.raises(ModelLoadError, match=r"model 'b' \(source 'broken_test:x'\).*inner problem") as info:
            load_model(ModelSpec("b", "broken_test:x"))
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(ValueError, match="already registered"):
            register_source("broken_test")(broken)
    finally:
        del SOURCES["broken_test"]


def test_unregistered_prefix_is_a_zoo_error():
    register_source("gone_test")(lambda spec, ref: (tiny_cnn(), None))
    spec = ModelSpec("g", "gone_test:x")
    del SOURCES["gone_test"]
    with pytest.raises(ZooError, match=r"model 'g'.*unknown source"):
        load_model(spec)


# ------------------------------------------------------------------------------------------ checkpoint


def checkpoint_spec(path, **extra) -> ModelSpec:
    return ModelSpec("ck", f"checkpoint:{path}", constructor="python:toy_models:tiny_resnet",
                     encoder="layer2", **extra)


def perturbed_resnet() -> nn.Module:
    """tiny_resnet with different weights, so a round trip cannot pass by rebuilding the same model."""
    model = tiny_resnet()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "data_parallel"])
def test_checkpoint_round_trip(tmp_path, wrap):
    model = perturbed_resnet()
    state = model.state_dict()
    payload = {
        "raw": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "data_parallel": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(payload, tmp_path / "w.pt")
    loaded = load_model(checkpoint_spec(tmp_path / "w.pt"))
    x = images()
    torch.testing.assert_close(loaded.module(x), model(x))
    assert loaded.key != load_model(ModelSpec("r", "python:toy_models:tiny_resnet")).key


def test_checkpoint_with_pickled_object_needs_trust(tmp_path):
    model = perturbed_resnet()
    torch.save({"state_dict": model.state_dict(), "meta": Meta(5)}, tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match=r"model 'ck'.*pickled.*trust_checkpoint = true"):
        load_model(checkpoint_spec(tmp_path / "w.pt"))
    loaded = load_model(checkpoint_spec(tmp_path / "w.pt", trust_checkpoint=True))
    torch.testing.assert_close(loaded.module(images()), model(images()))


def test_trusted_whole_module_checkpoint_without_constructor(tmp_path):
    model = perturbed_resnet()
    torch.save(model, tmp_path / "whole.pt")
    loaded = load_model(ModelSpec("whole", f"checkpoint:{tmp_path / 'whole.pt'}", trust_checkpoint=True))
    torch.testing.assert_close(loaded.module(images()), model(images()))


def test_checkpoint_mismatch_and_missing_file(tmp_path):
    torch.save(tiny_cnn().state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(ModelLoadError, match=r"model 'ck'.*does not match.*tiny_resnet"):
        load_model(checkpoint_spec(tmp_path / "cnn.pt"))
    with pytest.raises(ModelLoadError, match=r"model 'ck'.*not found"):
        load_model(checkpoint_spec(tmp_path / "absent.pt"))


def test_safetensors_checkpoint(tmp_path):
    st = pytest.importorskip("safetensors.torch", reason="safetensors is optional")
    model = perturbed_resnet()
    st.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = load_model(checkpoint_spec(tmp_path / "w.safetensors"))
    torch.testing.assert_close(loaded.module(images()), model(images()))


# -------------------------------------------------------------------------------------------- identity


def test_key_stable_across_loads_and_sensitive_to_weights(tmp_path):
    model = perturbed_resnet()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    first = load_model(checkpoint_spec(tmp_path / "w.pt"))
    second = load_model(checkpoint_spec(tmp_path / "w.pt"))
    assert first.key == second.key and len(first.key) == 64
    with torch.no_grad():
        model.fc.bias[0] += 1e-3
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert load_model(checkpoint_spec(tmp_path / "w.pt")).key != first.key
    # the spec is part of the identity too: same weights, other preprocessing
    assert load_model(checkpoint_spec(tmp_path / "w.pt", input_size=64)).key != first.key


def test_state_dict_hash_covers_dtype_and_buffers():
    a, b = tiny_cnn(), tiny_cnn()
    assert state_dict_hash(a) == state_dict_hash(b)
    b.encoder[1].running_mean[0] += 1.0  # a buffer, not a parameter
    assert state_dict_hash(a) != state_dict_hash(b)
    assert state_dict_hash(a) != state_dict_hash(tiny_cnn().to(torch.bfloat16))


# ------------------------------------------------------------------------------------------ torchscript


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_round_trip(tmp_path, how):
    model = tiny_cnn()
    scripted = torch.jit.trace(model, images()) if how == "trace" else torch.jit.script(model)
    scripted.save(str(tmp_path / "m.pt"))
    loaded = load_model(ModelSpec("ts", f"torchscript:{tmp_path / 'm.pt'}", encoder="encoder"))
    x = images()
    torch.testing.assert_close(loaded.module(x), model(x))
    torch.testing.assert_close(loaded.tap()(x), model.encoder(x))
    assert load_model(ModelSpec("ts", f"torchscript:{tmp_path / 'm.pt'}")).encoder is None
    assert not any(p.requires_grad for p in loaded.module.parameters())


# ------------------------------------------------------------------------------------------------- hf


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_hf_resnet_offline(tmp_path, offline):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    transformers.ResNetModel(config).save_pretrained(tmp_path)
    loaded = load_model(ModelSpec("hf-resnet", f"hf:{tmp_path}", input_size=32))
    assert loaded.encoder == "encoder"
    r = loaded.tap()(loaded.transform(images(s=32)))
    # embedder downsamples by 4, the second stage by 2 more: 32 -> 4
    assert r.shape == (2, 16, 4, 4)
    again = load_model(ModelSpec("hf-resnet", f"hf:{tmp_path}", input_size=32))
    assert again.key == loaded.key


def test_hf_vit_offline(tmp_path, offline):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=32)
    transformers.ViTModel(config).save_pretrained(tmp_path)
    loaded = load_model(ModelSpec("hf-vit", f"hf:{tmp_path}", input_size=32, encoder=None))
    x = loaded.transform(images(s=32))
    assert loaded.encoder in ("layers.1", "encoder")  # transformers 5.x / 4.x layout
    r = loaded.tap()(x)
    assert r.shape == (2, 17, 16)  # (B, 16 patches + CLS token, hidden)
    # R is the last block's output, before the final layer norm that the full forward applies
    full = loaded.module(x).last_hidden_state
    torch.testing.assert_close(loaded.module.layernorm(r), full)


def test_hf_missing_model_is_a_load_error(tmp_path, offline):
    pytest.importorskip("transformers")
    with pytest.raises(ModelLoadError, match=r"model 'hf'.*nothing is downloaded"):
        load_model(ModelSpec("hf", "hf:surely-not/a-cached-model-xyz"))


# ------------------------------------------------------------------------------------ timm / torchvision


def test_torchvision_default_encoders():
    assert torchvision_default_encoder("resnet50") == "layer4"
    assert torchvision_default_encoder("wide_resnet50_2") == "layer4"
    assert torchvision_default_encoder("regnet_y_400mf") == "trunk_output"
    assert torchvision_default_encoder("vit_b_16") == "encoder"
    assert torchvision_default_encoder("convnext_tiny") == "features"
    assert torchvision_default_encoder("squeezenet1_0") is None


def test_timm_weight_source():
    assert _timm_weight_source({"hf_hub_id": "timm/resnet18.a1_in1k"}) == "hf_hub_id"
    assert _timm_weight_source({"url": "", "hf_hub_id": None}) is None


def test_torchvision_source():
    pytest.importorskip("torchvision", reason=VISION_SKIP)
    loaded = load_model(ModelSpec("tv", "torchvision:resnet18", pretrained=False, input_size=64))
    assert loaded.encoder == "layer4"
    assert loaded.tap()(loaded.transform(images(s=64))).shape == (2, 512, 2, 2)


def test_torchvision_uncached_weights_are_refused(tmp_path):
    pytest.importorskip("torchvision", reason=VISION_SKIP)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))  # an empty cache
    try:
        with pytest.raises(ModelLoadError, match=r"model 'tv'.*not cached"):
            load_model(ModelSpec("tv", "torchvision:resnet18"))
    finally:
        torch.hub.set_dir(old)


def test_timm_source():
    pytest.importorskip("timm", reason=VISION_SKIP)
    loaded = load_model(ModelSpec("tm", "timm:resnet18", pretrained=False, input_size=64))
    assert loaded.encoder == "layer4"
    assert loaded.tap()(loaded.transform(images(s=64))).shape == (2, 512, 2, 2)
