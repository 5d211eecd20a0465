"""EncoderTap (capture R by module name, stop early) and InputTransform (T_i and its inverse)."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import images
from modelspace.errors import InputError, ModelLoadError, ZooError
from modelspace.models import EncoderTap, InputTransform, ModelSpec, first_tensor, resolve_module
from toy_models import tiny_cnn, tiny_mlp, tiny_resnet


# ----------------------------------------------------------------------------------------- EncoderTap


def test_tap_matches_manual_submodule_path():
    model, x = tiny_resnet(), images()
    manual = model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))
    got = EncoderTap(model, "layer2", "resnet")(x)
    assert got.shape == (2, 16, 4, 4)
    torch.testing.assert_close(got, manual)


def test_tap_nested_name_and_sequential_encoder():
    model, x = tiny_cnn(), images()
    torch.testing.assert_close(EncoderTap(model, "encoder")(x), model.encoder(x))
    torch.testing.assert_close(EncoderTap(model, "encoder.2")(x), model.encoder[:3](x))


def test_tap_none_is_whole_output():
    model, x = tiny_mlp(), images(s=8)
    torch.testing.assert_close(EncoderTap(model, None)(x), model(x))


class Exploding(nn.Module):
    def forward(self, x):
        raise AssertionError("the head must not run")


def test_tap_stops_before_head():
    model, x = tiny_cnn(), images()
    model.head = Exploding()
    out = EncoderTap(model, "encoder", stop=True)(x)
    assert out.shape == (2, 8, 8, 8)
    with pytest.raises(AssertionError, match="must not run"):
        EncoderTap(model, "encoder", stop=False)(x)


def test_tap_removes_its_hook_and_keeps_gradients():
    model, x = tiny_cnn(), images().requires_grad_(True)
    tap = EncoderTap(model, "encoder")
    tap(x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not model.encoder._forward_hooks


def test_tap_runs_after_earlier_hooks():
    model, x = tiny_cnn(), images()
    handle = model.encoder.register_forward_hook(lambda m, i, o: o * 2.0)  # e.g. an LRP rule's rewrite
    try:
        torch.testing.assert_close(EncoderTap(model, "encoder")(x), 2.0 * model.encoder[:](x))
    finally:
        handle.remove()


class Outputs(nn.Module):
    """Returns a container, like many library models do."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "tuple":
            return (None, [y, y + 1])
        if self.kind == "dict":
            return {"aux": None, "features": y, "other": y + 1}
        return "no tensor"


class Wrapper(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.body = Outputs(kind)

    def forward(self, x):
        out = self.body(x)
        return out


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_tap_takes_first_tensor_of_containers(kind):
    model, x = Wrapper(kind), images()
    torch.testing.assert_close(EncoderTap(model, "body")(x), model.body.conv(x))


def test_tap_output_without_tensor_is_an_error():
    with pytest.raises(ModelLoadError, match=r"model 'w'.*'body'.*no tensor"):
        EncoderTap(Wrapper("none"), "body", "w")(images())


def test_first_tensor_handles_hf_style_model_output():
    transformers = pytest.importorskip("transformers")
    t = torch.ones(2)
    out = transformers.modeling_outputs.BaseModelOutput(last_hidden_state=t)
    assert first_tensor(out) is t


def test_bad_name_suggests_close_matches():
    with pytest.raises(ZooError) as info:
        EncoderTap(tiny_resnet(), "layer_2", "my-resnet")
    message = str(info.value)
    assert "'my-resnet'" in message and "'layer_2'" in message
    assert "'layer2'" in message  # the suggestion
    with pytest.raises(ZooError, match=r"did you mean .*'encoder.0'"):
        resolve_module(tiny_cnn(), "encoder.O", "cnn")


class SkipsBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Conv2d(3, 2, 1)
        self.unused = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.used(x)


def test_module_never_reached_is_an_error():
    with pytest.raises(ModelLoadError, match=r"model 'skip'.*'unused'"):
        EncoderTap(SkipsBranch(), "unused", "skip")(images())


# ---------------------------------------------------------------------------------------- TorchScript


def script_roundtrip(model: nn.Module, how: str) -> torch.jit.ScriptModule:
    scripted = torch.jit.trace(model, images()) if how == "trace" else torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    return torch.jit.load(buf)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_encoder_called_directly_on_input(how):
    model, x = tiny_cnn(), images()
    loaded = script_roundtrip(model, how)
    torch.testing.assert_close(EncoderTap(loaded, "encoder")(x), model.encoder(x))
    torch.testing.assert_close(EncoderTap(loaded, None)(x), model(x))
    xg = x.clone().requires_grad_(True)
    EncoderTap(loaded, "encoder")(xg).mean().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_encoder_not_on_input_is_refused(how):
    loaded = script_roundtrip(tiny_resnet(), how)
    with pytest.raises(ZooError, match=r"model 'ts'.*'layer2'.*not called on its parent's input"):
        EncoderTap(loaded, "layer2", "ts")
    with pytest.raises(ZooError, match="'encoder.4'"):  # inside the prefix, but fed by encoder.3, not x
        EncoderTap(script_roundtrip(tiny_cnn(), how), "encoder.4", "ts")
    EncoderTap(loaded, "conv1", "ts")  # the first layer is a valid prefix


def test_script_submodule_inside_python_model_is_refused():
    model = tiny_cnn()
    model.encoder = torch.jit.script(model.encoder)
    with pytest.raises(ZooError, match="TorchScript submodule"):
        EncoderTap(model, "encoder", "mixed")


# ------------------------------------------------------------------------------------- InputTransform


def test_transform_matches_manual_resize_and_normalise():
    t = InputTransform(size=(12, 10), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    x = images(s=16)
    manual = F.interpolate(x, size=(12, 10), mode="bilinear", align_corners=False, antialias=True)
    manual = (manual - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(t(x), manual)


def test_transform_same_size_only_normalises():
    t = InputTransform(size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = images(s=16)
    torch.testing.assert_close(t(x), x * 2 - 1)


def test_transform_upsamples_without_antialias():
    t = InputTransform(size=(24, 24), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = images(s=16)
    torch.testing.assert_close(t(x), F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False))


def test_transform_from_spec():
    spec = ModelSpec("m", "timm:a", input_size=(32, 48), mean=(0.0, 0.1, 0.2), std=(1.0, 2.0, 3.0))
    assert InputTransform.from_spec(spec) == InputTransform((32, 48), (0.0, 0.1, 0.2), (1.0, 2.0, 3.0))


def test_transform_rejects_bad_images():
    t = InputTransform(size=(8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="channels"):
        t(torch.rand(1, 1, 8, 8))
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        t(torch.rand(3, 8, 8))


@pytest.mark.parametrize("model_size", [(24, 24), (8, 8), (12, 20)])
def test_inverse_returns_to_probe_size(model_size):
    t = InputTransform(size=model_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    maps = torch.rand(2, 3, *model_size)
    back = t.inverse(maps, probe_size=16)
    assert back.shape == (2, 3, 16, 16)
    const = t.inverse(torch.full((2, 3, *model_size), 0.7), probe_size=16)
    torch.testing.assert_close(const, torch.full((2, 3, 16, 16), 0.7))


def test_inverse_is_identity_when_sizes_match():
    t = InputTransform(size=(16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    maps = torch.rand(2, 1, 16, 16)
    assert t.inverse(maps, probe_size=16) is maps


def test_inverse_matches_bilinear_upsampling():
    t = InputTransform(size=(8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    maps = torch.rand(1, 3, 8, 8)
    expected = F.interpolate(maps, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(t.inverse(maps, 16), expected)
