"""Source loaders: python, checkpoint, torchscript, hf (offline), timm / torchvision (where they import)."""

from __future__ import annotations

import os
import re

import pytest
import torch
from torch import nn

from support.images import images
from support.runs import key_before_preprocessing
from modelspace.cli import main
from modelspace.errors import MissingWeightsError, ModelLoadError, ZooError
from modelspace.models import (
    SOURCES,
    InputTransform,
    ModelSpec,
    OwnConfig,
    TokenGrid,
    check_sources,
    describe_preprocessing,
    hub_offline_mode,
    load_model,
    load_repeatable,
    load_zoo,
    probe_size_for,
    register_source,
    state_dict_hash,
)
from modelspace.world.build import ZOO_DIR
from modelspace.models.sources import _timm_weight_source, hub_offline, torchvision_default_encoder
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


def test_keys_of_specs_that_set_every_field_are_unchanged():
    # The built-in world's zoo sets every preprocessing field: its stores, written before, are reused.
    for spec in load_zoo(ZOO_DIR / "zoo.toml"):
        loaded = load_model(spec)
        assert loaded.preprocessing["from"] == dict(input_size="zoo", mean="zoo", std="zoo", interpolation="default")
        assert loaded.key == key_before_preprocessing(spec.to_dict(), state_dict_hash(loaded.module)), spec.name
    # keys computed by modelspace before this change (toy models are seeded: their weights are fixed)
    explicit = ModelSpec("cnn", "python:toy_models:tiny_cnn", input_size=32, mean=(0.5, 0.5, 0.5),
                         std=(0.25, 0.25, 0.25), encoder="encoder", kwargs={"width": 6})
    assert load_model(explicit).key == "7f8f3d3a8dc4350ba632ddc89105252e5a0dd5901f06399cfb0d03e96d8add8f"
    # a spec that sets nothing and whose model says nothing resolves to the defaults it had then
    assert load_model(ModelSpec("cnn", "python:toy_models:tiny_cnn")).key == \
        "35e53b2eff986a0a99a9759e1527bbea648e3a98c7828165aad68e45007c6379"


@pytest.fixture
def configured_source():
    """A source whose model states its own preprocessing (and R's layout): what the dict it yields says
    when the model is loaded, as if the model's configuration file were edited between loads."""
    own: dict = {}

    @register_source("configured_test")
    def configured(spec, ref):
        stated = {k: (v, "test cfg") for k, v in own.items() if k != "prefix"}
        layout = TokenGrid(own["prefix"], (4, 4)) if "prefix" in own else None
        return tiny_cnn(), "encoder", OwnConfig(stated, layout)

    yield own
    del SOURCES["configured_test"]


def test_zoo_fields_win_then_the_model_own_config_then_defaults(configured_source):
    configured_source.update(input_size=[40, 48], mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6],
                             interpolation="bicubic", crop_pct=0.875)
    loaded = load_model(ModelSpec("m", "configured_test:x"))
    assert loaded.transform == InputTransform((40, 48), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic")
    assert loaded.preprocessing == {"input_size": [40, 48], "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6],
                                    "interpolation": "bicubic", "crop_pct": 0.875,
                                    "from": dict.fromkeys(("input_size", "mean", "std", "interpolation", "crop_pct"),
                                                          "test cfg")}
    zoo = load_model(ModelSpec("m", "configured_test:x", input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                               interpolation="bilinear"))
    assert zoo.transform == InputTransform((32, 32), (0.5,) * 3, (0.5,) * 3, "bilinear")
    assert set(zoo.preprocessing["from"].values()) == {"zoo", "test cfg"}  # crop_pct is still the model's
    configured_source.clear()
    configured_source["interpolation"] = "lanczos"
    partial = load_model(ModelSpec("m", "configured_test:x", input_size=20))
    assert partial.transform == InputTransform((20, 20), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    assert partial.preprocessing["from"]["interpolation"].startswith("default (test cfg says 'lanczos'")
    assert describe_preprocessing(partial.preprocessing) == \
        "20×20 bilinear imagenet (default; input_size: zoo; interpolation: default (test cfg says 'lanczos', " \
        "which T_i does not offer))"


def test_a_bad_own_config_is_an_error_naming_the_model_the_field_and_where(configured_source):
    configured_source.update(mean=[0, 0, 0], std=[1, 0, 1])
    with pytest.raises(ModelLoadError, match=r"model 'm'.*test cfg: model 'm': field 'std': every value must be > 0"):
        load_model(ModelSpec("m", "configured_test:x"))


def test_key_follows_what_the_model_gets(configured_source):
    def key(**zoo) -> str:
        return load_model(ModelSpec("m", "configured_test:x", **zoo)).key

    plain = key()
    configured_source.update(mean=[0.5] * 3, std=[0.5] * 3)
    half = key()
    assert half != plain  # the model's own config changed: so did its input, and its key
    # the key is taken over the values used: a zoo that sets them keeps its key whatever the model says
    assert key(mean=(0.5,) * 3, std=(0.5,) * 3) == half
    explicit = key(mean=(0.2,) * 3, std=(0.3,) * 3)
    configured_source.clear()
    assert key(mean=(0.2,) * 3, std=(0.3,) * 3) == explicit
    assert key() == plain == key(interpolation="bilinear")
    configured_source["crop_pct"] = 0.9
    assert key() == plain  # recorded only: T_i is the same
    configured_source["interpolation"] = "bicubic"
    assert key() != plain
    configured_source.clear()
    configured_source["prefix"] = 1
    assert key() != plain  # R laid out otherwise: other maps


def test_probe_size_for_a_zoo(tmp_path, offline):
    sized = [ModelSpec(f"m{s}", "python:toy_models:tiny_cnn", input_size=s) for s in (32, (40, 56), 48)]
    assert probe_size_for(sized) == 56  # the largest input side: no model sees its probe images upsampled
    assert probe_size_for([*sized, ModelSpec("big", "python:toy_models:tiny_cnn", input_size=518)]) == 224
    assert probe_size_for([*sized, ModelSpec("unsized", "python:toy_models:tiny_cnn")]) == 224  # the default
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=64, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32)
    transformers.ViTModel(config).save_pretrained(tmp_path)
    assert probe_size_for([*sized, ModelSpec("vit", f"hf:{tmp_path}")]) == 64  # read from its config.json


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
    assert r.shape == (2, 16, 4, 4)  # (B, hidden, 4×4 patches of 8 px): the CLS token dropped
    # R is the last block's output (before the final layer norm), as transformers' own hidden states give it
    tokens = loaded.module(x, output_hidden_states=True).hidden_states[-1]
    assert tokens.shape == (2, 17, 16)
    torch.testing.assert_close(r, tokens[:, 1:].transpose(1, 2).reshape(2, 16, 4, 4))


def test_hf_weights_missing_from_the_checkpoint_keep_the_key_across_loads(tmp_path, offline):
    """A checkpoint saved without the pooler (what a ViT backbone's save_pretrained gives):
    transformers initialises the missing weights at random on every load. They used to change the
    model's key each time, so every run computed the model again under a second entry of its name."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    spec = ModelSpec("hf-vit", f"hf:{tmp_path}")
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    first, second = load_model(spec), load_model(spec)
    assert "pooler.dense.weight" in first.module.state_dict()  # newly initialised, so not in the file
    assert first.key == second.key
    torch.testing.assert_close(torch.rand(3), expected_next)  # the caller's RNG stream is untouched


def unseeded_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3))


def test_an_unseeded_python_constructor_keeps_its_key_across_loads():
    spec = ModelSpec("unseeded", f"python:{__name__}:unseeded_cnn", input_size=16)
    assert load_model(spec).key == load_model(spec).key


def test_hf_vit_takes_its_input_from_the_saved_image_processor(tmp_path, offline):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64)
    transformers.ViTModel(config).save_pretrained(tmp_path)
    bare = load_model(ModelSpec("hf-vit", f"hf:{tmp_path}"))  # no input_size in the zoo, no processor
    assert bare.spec.input_size == (64, 64) and bare.preprocessing["from"]["input_size"] == "hf config"
    processor = transformers.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.1, 0.2, 0.3],
                                               image_std=[0.4, 0.5, 0.6], resample=3)
    processor.save_pretrained(tmp_path)
    loaded = load_model(ModelSpec("hf-vit", f"hf:{tmp_path}"))
    assert loaded.transform == InputTransform((64, 64), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic")
    assert set(loaded.preprocessing["from"].values()) == {"hf image processor"}
    assert loaded.layout == TokenGrid(1, (8, 8)) and loaded.key != bare.key
    # what the processor itself makes of a 64-px image is what T_i makes of it
    image = (images(b=1, s=64) * 255).round().to(torch.uint8)
    expected = processor(images=image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(loaded.transform(image / 255.0), expected, atol=1e-5, rtol=1e-5)
    r = loaded.tap()(loaded.transform(images(s=64)))
    assert r.shape == (2, 32, 8, 8)  # 64 px in 8-px patches, the CLS token dropped


def test_hf_config_with_other_than_three_channels_is_refused(tmp_path, offline):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_channels=1)
    transformers.ViTModel(config).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"model 'gray'.*num_channels is 1"):
        load_model(ModelSpec("gray", f"hf:{tmp_path}"))


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


# ------------------------------------------------------------------------ names resolved before loading


def test_check_sources_names_every_bad_entry_with_the_closest_names(tmp_path, offline):
    (tmp_path / "cnn.pt").write_bytes(b"")
    good = [ModelSpec("ok", "python:toy_models:tiny_cnn"),
            ModelSpec("ck", f"checkpoint:{tmp_path / 'cnn.pt'}", constructor="python:toy_models:tiny_cnn")]
    check_sources(good)  # nothing raised, nothing loaded
    bad = [ModelSpec("attr", "python:toy_models:tiny_resnt"),
           ModelSpec("ck", f"checkpoint:{tmp_path / 'cnn.pth'}", constructor="python:toy_models:tiny_cnn"),
           ModelSpec("ctor", f"checkpoint:{tmp_path / 'cnn.pt'}", constructor="python:toy_models:tiny_cn"),
           ModelSpec("ts", f"torchscript:{tmp_path / 'nets.pt'}"),
           ModelSpec("hf", "hf:surely-not/a-cached-model-xyz")]
    with pytest.raises(ZooError) as info:
        check_sources(good + bad)
    # One line (a message is one record on stderr): the entries in order, each after "; ".
    lines = re.split(r"(?:: |; )(?=model ')", str(info.value))
    assert len(lines) == 6 and "\n" not in str(info.value)
    assert lines[0].startswith("5 zoo entries name models that do not exist")
    assert "model 'attr': field 'source'" in lines[1] and "did you mean 'tiny_resnet'" in lines[1]
    assert "model 'ck': field 'source': file not found" in lines[2] and "did you mean 'cnn.pt'" in lines[2]
    assert "model 'ctor': field 'constructor'" in lines[3] and "did you mean 'tiny_cnn'" in lines[3]
    assert "model 'ts': field 'source': file not found" in lines[4]
    assert "model 'hf': field 'source'" in lines[5] and "nothing is downloaded" in lines[5]


def test_a_zoo_entry_is_named_by_its_file_and_number(tmp_path):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "a"\nsource = "python:toy_models:tiny_cnn"\n\n'
                   '[[model]]\nname = "b"\nsource = "python:toy_models:tiny_cn"\n', encoding="utf-8")
    with pytest.raises(ZooError, match=r"^\S*zoo.toml: model 'b' \(#2\): field 'source': .*did you mean 'tiny_cnn'"):
        check_sources(load_zoo(zoo))


def failing(exc: BaseException):
    def build():
        raise exc
    return build


@pytest.mark.parametrize("exc, permanent", [
    (TypeError("tiny_cnn() got an unexpected keyword argument 'widht'"), True),
    (ValueError("bad width"), True),
    (MemoryError(), False),
    (OSError("disk"), False),
    (ModuleNotFoundError("No module named 'einops'"), False),
])
def test_load_failures_a_rerun_would_meet_again_are_told_apart(exc, permanent, monkeypatch):
    import toy_models

    monkeypatch.setattr(toy_models, "failing_build", failing(exc), raising=False)
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec("f", "python:toy_models:failing_build"))
    assert load_repeatable(info.value) is permanent


def test_encoder_mismatch_and_missing_weights_load_failures():
    with pytest.raises(ZooError) as info:
        load_model(ModelSpec("cnn", "python:toy_models:tiny_cnn", encoder="encodr"))
    assert load_repeatable(info.value)  # an edit of the entry fixes it
    assert not load_repeatable(MissingWeightsError("not cached"))  # a download fixes it


def test_hub_offline_mode_is_for_the_block_only(monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub_offline_mode():
        assert constants.HF_HUB_OFFLINE and hub_offline()
    assert not constants.HF_HUB_OFFLINE and not hub_offline() and "HF_HUB_OFFLINE" not in os.environ
    with hub_offline_mode(False):
        assert not hub_offline()


def vision_user(tmp_path, monkeypatch, zoo: str):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "zoo.toml").write_text(zoo, encoding="utf-8")
    (tmp_path / "probe").mkdir()
    rng = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = torch.randint(0, 255, (32, 32, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / "probe" / f"{i}.png")


def test_timm_and_torchvision_typos_fail_before_any_model_loads(tmp_path, capsys, monkeypatch):
    pytest.importorskip("timm", reason=VISION_SKIP)
    pytest.importorskip("torchvision", reason=VISION_SKIP)
    import modelspace.space

    monkeypatch.setattr(modelspace.space, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    vision_user(tmp_path, monkeypatch, '[[model]]\nname = "convnext"\nsource = "timm:convnxt_atto"\n\n'
                                       '[[model]]\nname = "resnet"\nsource = "torchvision:resnet_18"\n\n'
                                       '[[model]]\nname = "tagged"\nsource = "timm:resnet18.a1_in1kk"\n\n'
                                       '[[model]]\nname = "fine"\nsource = "timm:resnet18.a1_in1k"\n'
                                       'pretrained = false\n')
    assert main(["run", "zoo.toml", "probe"]) == 2
    err = capsys.readouterr().err
    assert "3 zoo entries name models that do not exist" in err
    assert "zoo.toml: model 'convnext' (#1): field 'source': timm has no model 'convnxt_atto'; did you mean " \
           "'convnext_atto'" in err
    assert "zoo.toml: model 'resnet' (#2): field 'source': torchvision has no model 'resnet_18'; did you mean " \
           "'resnet18'" in err
    assert "model 'tagged' (#3)" in err and "did you mean 'resnet18.a1_in1k'" in err
    assert "'fine'" not in err


@pytest.mark.parametrize("hub_offline_set", [False, True])
def test_timm_weights_not_cached_fail_at_once_offline(tmp_path, capsys, monkeypatch, connections, hub_offline_set):
    pytest.importorskip("timm", reason=VISION_SKIP)
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # nothing cached
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", hub_offline_set)  # as read from the variable on import
    if hub_offline_set:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    vision_user(tmp_path, monkeypatch, '[[model]]\nname = "r18"\nsource = "timm:resnet18"\ninput_size = 32\n')
    assert main(["run", "zoo.toml", "probe", "--no-report", "--methods", "saliency"]) == 1
    err = capsys.readouterr().err
    assert "model 'r18' (source 'timm:resnet18'): pretrained weights for timm model 'resnet18' could not" in err
    assert "Retrying" not in err
    assert connections == ([] if hub_offline_set else [("huggingface.co", 443)])  # the probe, once
