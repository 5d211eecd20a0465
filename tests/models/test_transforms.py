"""InputTransform: T_i (resize and normalise) and its inverse back to the probe size."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from support.images import images
from modelspace.errors import InputError
from modelspace.models import (
    InputTransform,
    ModelSpec,
)


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
    bicubic = ModelSpec("m", "timm:a", input_size=8, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bicubic")
    assert InputTransform.from_spec(bicubic).interpolation == "bicubic"
    with pytest.raises(InputError, match=r"model 'm': field 'input_size' is not resolved"):
        InputTransform.from_spec(ModelSpec("m", "timm:a"))


@pytest.mark.parametrize("size", [(10, 12), (24, 24)])
def test_bicubic_transform_resizes_bicubic_and_inverts_bilinear(size):
    t = InputTransform(size=size, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bicubic")
    x = images(s=16)
    expected = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=size[0] < 16)
    torch.testing.assert_close(t(x), expected)
    maps = torch.rand(1, 3, *size)
    back = F.interpolate(maps, size=(16, 16), mode="bilinear", align_corners=False, antialias=size[0] > 16)
    torch.testing.assert_close(t.inverse(maps, 16), back)
    with pytest.raises(InputError, match="interpolation"):
        InputTransform(size=size, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="lanczos")


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
