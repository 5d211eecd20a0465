"""EncoderTap (capture R by module name, stop early), TorchScript encoders and token or channels-last layouts."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from support.images import images
from modelspace.errors import ModelLoadError, ZooError
from modelspace.attribution import attribute
from modelspace.models import (
    ChannelsLast,
    Encoder,
    EncoderTap,
    TokenGrid,
    first_tensor,
    resolve_module,
)
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


# ------------------------------------------------------------------------------------------- layouts


class Tokens(nn.Module):
    """(B, D, h, w) -> (B, h·w, D), row-major, as patch embeddings flatten their grid."""

    def forward(self, grid):
        return grid.flatten(2).transpose(1, 2)


class TinyViT(nn.Module):
    """ViT-shaped: 4-px patches by a strided convolution, ``prefix`` learned tokens before them, one block."""

    def __init__(self, prefix: int = 1, dim: int = 6, channels_last: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.tokens = nn.Parameter(torch.randn(1, prefix, dim))
        self.flat = Tokens()
        self.block = nn.Linear(dim, dim)
        self.channels_last = channels_last

    def forward(self, x):
        grid = self.patch(x)  # (B, D, h, w): what R must become
        if self.channels_last:  # Swin-like: the grid, channels last
            return self.block(grid.permute(0, 2, 3, 1)).mean()
        return self.block(torch.cat([self.tokens.expand(len(x), -1, -1), self.flat(grid)], 1)).mean()


def test_token_grid_drops_the_prefix_tokens_and_reshapes_the_patches():
    model, x = TinyViT(prefix=2), images(s=16)  # 16×12 input: a 4×3 grid of patches
    x = x[..., :12]
    tap = EncoderTap(model, Encoder("flat", TokenGrid(2, (4, 4))), "vit")
    torch.testing.assert_close(tap(x), model.patch(x))  # (B, h·w, D) patch tokens, before the prefix
    torch.testing.assert_close(EncoderTap(model, Encoder("patch", TokenGrid(2, (4, 4))))(x), model.patch(x))  # a map
    tokens = torch.cat([model.tokens.expand(2, -1, -1), model.patch(x).flatten(2).transpose(1, 2)], 1)
    expected = model.block(tokens)[:, 2:].transpose(1, 2).reshape(2, 6, 4, 3)
    torch.testing.assert_close(EncoderTap(model, Encoder("block", TokenGrid(2, (4, 4))), "vit")(x), expected)
    assert EncoderTap(model, "block", "vit")(x).shape == (2, 14, 6)  # a plain name: R as the module gives it


def test_token_grid_with_another_token_count_is_an_error_naming_the_model():
    model, x = TinyViT(prefix=1), images(s=16)
    with pytest.raises(ModelLoadError, match=r"model 'vit', encoder 'block': R has shape \(2, 17, 6\).*3 prefix"):
        EncoderTap(model, Encoder("block", TokenGrid(3, (4, 4))), "vit")(x)


def test_channels_last_is_permuted_to_a_map():
    model, x = TinyViT(channels_last=True), images(s=16)
    expected = model.block(model.patch(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(EncoderTap(model, Encoder("block", ChannelsLast()), "swin")(x), expected)


def test_attribution_through_an_encoder_ref_is_that_of_the_mean_over_the_patch_tokens():
    model, x = TinyViT(prefix=1), images(s=16)
    grad = attribute(model, x, "gradient", encoder=Encoder("block", TokenGrid(1, (4, 4))), model_name="vit")
    leaf = x.clone().requires_grad_(True)
    flat = model.patch(leaf).flatten(2).transpose(1, 2)
    patches = model.block(torch.cat([model.tokens.expand(2, -1, -1), flat], 1))[:, 1:]
    (expected,) = torch.autograd.grad(patches.mean(dim=(1, 2)).sum(), leaf)  # the class token plays no part
    torch.testing.assert_close(grad, expected)
