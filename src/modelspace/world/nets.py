"""Architectures of the built-in zoo.

Group 1 (Taskonomy-like) shares one encoder-decoder, `TaskNet`: the encoder maps a 64×64 image
to an 8×8×16 bottleneck (the representation R, module `encoder`), a decoder upsamples it back
to 64×64 for dense tasks, a small MLP reads it for image-level tasks.

Group 2 (beyond Taskonomy) varies the encoder: VGG-, ResNet- and MobileNet-style stacks of
different depth, width and input size, with their own encoder names (`features`, `layer3`),
and one shared kind of head that brings any feature map to the 64×64 label resolution.
All constructors take plain keyword arguments so that a zoo file can name them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LABEL_SIZE = 64


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


def conv_bn_relu(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(*conv_bn(cin, cout, stride, groups, kernel), nn.ReLU(inplace=True))


class DenseHead(nn.Module):
    """Any feature map → out_channels × 64 × 64 (bilinear upsampling between two convolutions)."""

    def __init__(self, cin: int, out_channels: int, width: int = 32) -> None:
        super().__init__()
        self.pre = conv_bn_relu(cin, width)
        self.post = nn.Sequential(conv_bn_relu(width, width // 2), nn.Conv2d(width // 2, out_channels, 3, padding=1))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(self.pre(r), size=(LABEL_SIZE, LABEL_SIZE), mode="bilinear", align_corners=False)
        return self.post(h)


class ImageHead(nn.Module):
    """Any feature map → out_channels scores (average-pooled to 4×4, then a two-layer MLP)."""

    def __init__(self, cin: int, out_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_channels))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(F.relu(r)))


def head(cin: int, out_channels: int, dense: bool) -> nn.Module:
    return DenseHead(cin, out_channels) if dense else ImageHead(cin, out_channels)


class TaskNet(nn.Module):
    """Group 1: the shared encoder-decoder. R = `encoder` output, 8×8×code at a 64×64 input."""

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16, code: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            conv_bn_relu(3, width, 2), conv_bn_relu(width, 2 * width, 2),
            conv_bn_relu(2 * width, 4 * width, 2), conv_bn(4 * width, code),
        )
        if dense:
            up = lambda cin, cout: nn.Sequential(nn.Upsample(scale_factor=2), conv_bn_relu(cin, cout))  # noqa: E731
            self.decoder = nn.Sequential(nn.ReLU(), up(code, 4 * width), up(4 * width, 2 * width), up(2 * width, width),
                                         nn.Conv2d(width, out_channels, 3, padding=1))
        else:
            self.decoder = ImageHead(code, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class VGGNet(nn.Module):
    """Group 2: `depth` conv layers per stage, three max-pooled stages; R = `features` output."""

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        layers, cin = [], 3
        for stage in range(3):
            cout = width * 2**stage
            for _ in range(depth):
                layers.append(conv_bn_relu(cin, cout))
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = head(cin, out_channels, dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, cout, stride), conv_bn(cout, cout))
        self.shortcut = conv_bn(cin, cout, stride, kernel=1) if (stride != 1 or cin != cout) else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        out += self.shortcut(x)
        return self.relu(out)


class ResNetSmall(nn.Module):
    """Group 2: a stride-2 stem and three residual stages; R = `layer3` output."""

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16, blocks: int = 1) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, width, 2)

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(BasicBlock(cin, cout, stride), *[BasicBlock(cout, cout) for _ in range(blocks - 1)])

        self.layer1 = stage(width, width, 1)
        self.layer2 = stage(width, 2 * width, 2)
        self.layer3 = stage(2 * width, 4 * width, 2)
        self.head = head(4 * width, out_channels, dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class MobileNetSmall(nn.Module):
    """Group 2: depthwise-separable convolutions (MobileNet v1 style); R = `features` output."""

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16) -> None:
        super().__init__()

        def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(conv_bn_relu(cin, cin, stride, groups=cin), conv_bn_relu(cin, cout, kernel=1))

        self.features = nn.Sequential(
            conv_bn_relu(3, width, 2), separable(width, 2 * width, 1), separable(2 * width, 4 * width, 2),
            separable(4 * width, 4 * width, 1), separable(4 * width, 8 * width, 2),
        )
        self.head = head(8 * width, out_channels, dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ARCHITECTURES = {"tasknet": TaskNet, "vgg": VGGNet, "resnet": ResNetSmall, "mobilenet": MobileNetSmall}
ENCODERS = {"tasknet": "encoder", "vgg": "features", "resnet": "layer3", "mobilenet": "features"}


def build(arch: str, **kwargs) -> nn.Module:
    """The zoo's constructor (`python:modelspace.world.nets:build` with kwargs arch=..., ...)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)
