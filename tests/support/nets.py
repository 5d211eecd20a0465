"""Small float64 networks and models for the attribution tests: CNNs with batch norm, max-pooling and
residual blocks whose sum is written in three styles (Captum can attach rules to them), and loaded models
with a head over probe images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelspace.models.sources import LoadedModel
from modelspace.models.spec import ModelSpec
from modelspace.models.transforms import InputTransform
from toy_models import randomise_bn


class Add(nn.Module):
    """A residual sum as a module: Captum can only attach a rule to modules."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Block(nn.Module):
    """A ResNet basic block whose sum is written in one of three styles."""

    def __init__(self, c: int, style: str) -> None:
        super().__init__()
        self.style = style
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.style == "module":
            out = self.add(out, x)
        elif self.style == "functional":
            out = out + x
        else:
            out += x
        return self.relu2(out)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 4, 1),
    )
    return randomise_bn(net, mean=0.5, var=(0.5, 2.0), bias=0.2).double().eval()


def resnet(style: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        Block(6, style), Block(6, style), nn.Conv2d(6, 5, 1),
    )
    return randomise_bn(net, mean=0.5, var=(0.5, 2.0), bias=0.2).double().eval()


def inputs(n: int = 3, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class Tiny(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))

    def forward(self, x):
        return self.head(self.encoder(x))


def tiny_models(n: int = 3) -> list[LoadedModel]:
    models = []
    for i in range(n):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(10 + i)
            module = Tiny(3 + i).eval()
        transform = InputTransform((12, 12), (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
        models.append(LoadedModel(spec=ModelSpec(name=f"m{i}", source="python:x:y"), module=module,
                                  encoder="encoder", transform=transform, key=f"key{i}"))
    return models


def probe_images(n: int = 6, size: int = 12) -> np.ndarray:
    return np.random.default_rng(6).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
