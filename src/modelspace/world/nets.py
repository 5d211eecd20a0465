"""Architectures of the built-in zoo.

Group 1 (Taskonomy-like) shares one encoder-decoder, `ResTaskNet`: a residual encoder of three
stages maps a 64×64 image to an 8×8×64 representation R (module `encoder`); a decoder brings R
to 32×32 predictions, upsampled bilinearly to the 64×64 labels, or a small MLP reads R for
image-level tasks.

Group 2 (beyond Taskonomy) varies the encoder: VGG-, ResNet- and MobileNet-style stacks of
different depth, width and input size, with their own encoder names (`features`, `layer3`),
and one shared kind of head that brings any feature map to the label resolution.

Every downsampling step of a strided network is anti-aliased (`BlurDown`, a binomial filter
before subsampling): a stride-2 3×3 convolution covers input pixels unevenly, and that
unevenness prints a checkerboard on attribution maps (`tests/world/test_build.py` measures it).
All constructors take plain keyword arguments so that a zoo file can name them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LABEL_SIZE = 64


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    """A convolution without bias ("same" padding) and a batch norm.

    Parameters
    ----------
    cin : int
        Input channels.
    cout : int
        Output channels.
    stride : int, default 1
        The convolution's stride.
    groups : int, default 1
        The convolution's groups (``cin`` for a depthwise one).
    kernel : int, default 3
        The kernel's side; padded by ``kernel // 2``.

    Returns
    -------
    nn.Sequential
        ``Conv2d, BatchNorm2d``.
    """
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


def conv_bn_relu(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    """`conv_bn` followed by a ReLU.

    Parameters
    ----------
    cin : int
        Input channels.
    cout : int
        Output channels.
    stride : int, default 1
        The convolution's stride.
    groups : int, default 1
        The convolution's groups.
    kernel : int, default 3
        The kernel's side.

    Returns
    -------
    nn.Sequential
        ``Conv2d, BatchNorm2d, ReLU``.
    """
    return nn.Sequential(*conv_bn(cin, cout, stride, groups, kernel), nn.ReLU(inplace=True))


class BlurDown(nn.Module):
    """Anti-aliased 2× downsampling: the binomial filter [1, 2, 1]ᵀ[1, 2, 1] / 16, then every second pixel.

    After Zhang, "Making convolutional networks shift-invariant again", 2019.

    Written as two 2×2 average pools (a box filter convolved with itself is the binomial one),
    which are fast in any precision and have an exact ε-LRP rule.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        x : torch.Tensor
            (B, C, H, W).

        Returns
        -------
        torch.Tensor
            (B, C, H // 2, W // 2): blurred, then every second row and column.
        """
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return F.avg_pool2d(F.avg_pool2d(x, 2, stride=1), 2, stride=2)


def downsample(antialias: bool) -> nn.Module:
    """A `BlurDown`, or the identity.

    Parameters
    ----------
    antialias : bool
        Whether to downsample.

    Returns
    -------
    nn.Module
        `BlurDown` when `antialias`, else ``nn.Identity``.
    """
    return BlurDown() if antialias else nn.Identity()


class DenseHead(nn.Module):
    """Any feature map → out_channels × 64 × 64.

    The convolutions run at `predict_size` (bilinear upsampling between them); with
    `predict_size` < 64 the prediction is then upsampled bilinearly to the label size, which
    keeps the costly full-resolution convolutions out of training.

    Parameters
    ----------
    cin : int
        Channels of the feature map.
    out_channels : int
        Channels of the prediction (classes, for a classification task).
    width : int, default 32
        Channels of the first convolution; the second has half as many.
    predict_size : int, default `LABEL_SIZE`
        The side at which the convolutions run.
    """

    def __init__(self, cin: int, out_channels: int, width: int = 32, predict_size: int = LABEL_SIZE) -> None:
        super().__init__()
        self.predict_size = predict_size
        self.pre = conv_bn_relu(cin, width)
        self.post = nn.Sequential(conv_bn_relu(width, width // 2), nn.Conv2d(width // 2, out_channels, 3, padding=1))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        r : torch.Tensor
            (B, cin, h, w) feature map.

        Returns
        -------
        torch.Tensor
            (B, out_channels, 64, 64) prediction.
        """
        size = (self.predict_size, self.predict_size)
        out = self.post(F.interpolate(self.pre(r), size=size, mode="bilinear", align_corners=False))
        if self.predict_size != LABEL_SIZE:
            out = F.interpolate(out, size=(LABEL_SIZE, LABEL_SIZE), mode="bilinear", align_corners=False)
        return out


class ImageHead(nn.Module):
    """Any feature map → out_channels scores (average-pooled to 4×4, then a two-layer MLP).

    Parameters
    ----------
    cin : int
        Channels of the feature map.
    out_channels : int
        Scores out (classes, or regression outputs).
    hidden : int, default 64
        Units of the MLP's hidden layer.
    """

    def __init__(self, cin: int, out_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_channels))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        r : torch.Tensor
            (B, cin, h, w) feature map (a ReLU is applied first).

        Returns
        -------
        torch.Tensor
            (B, out_channels) scores.
        """
        return self.mlp(self.pool(F.relu(r)))


def head(cin: int, out_channels: int, dense: bool, predict_size: int = LABEL_SIZE) -> nn.Module:
    """The head of a group 2 network: a `DenseHead` or an `ImageHead`.

    Parameters
    ----------
    cin : int
        Channels of the encoder's feature map.
    out_channels : int
        Channels (or scores) out.
    dense : bool
        A per-pixel task (`DenseHead`) or an image-level one (`ImageHead`).
    predict_size : int, default `LABEL_SIZE`
        The side at which a dense head's convolutions run.

    Returns
    -------
    nn.Module
        The head.
    """
    return DenseHead(cin, out_channels, predict_size=predict_size) if dense else ImageHead(cin, out_channels)


class VGGNet(nn.Module):
    """Group 2: `depth` conv layers per stage, three max-pooled stages; R = `features` output.

    Parameters
    ----------
    out_channels : int
        Channels (or scores) out.
    dense : bool, default True
        A per-pixel task, or an image-level one.
    width : int, default 16
        Channels of the first stage; each later stage doubles them.
    depth : int, default 2
        Convolutions per stage.
    predict_size : int, default `LABEL_SIZE`
        The side at which a dense head's convolutions run.
    """

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16, depth: int = 2,
                 predict_size: int = LABEL_SIZE) -> None:
        super().__init__()
        layers, cin = [], 3
        for stage in range(3):
            cout = width * 2**stage
            for _ in range(depth):
                layers.append(conv_bn_relu(cin, cout))
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = head(cin, out_channels, dense, predict_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        x : torch.Tensor
            (B, 3, H, W) images.

        Returns
        -------
        torch.Tensor
            (B, out_channels, 64, 64) for a dense task, else (B, out_channels).
        """
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and a shortcut.

    With `antialias`, a stride-2 block blurs and subsamples first, and both branches then run at stride 1.

    Parameters
    ----------
    cin : int
        Input channels.
    cout : int
        Output channels; the shortcut is a 1×1 convolution when they differ or the block strides.
    stride : int, default 1
        1, or 2 to halve the resolution.
    antialias : bool, default False
        Downsample with `BlurDown` before stride-1 branches instead of strided convolutions.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, antialias: bool = False) -> None:
        super().__init__()
        self.down = downsample(antialias and stride == 2)
        conv_stride = 1 if antialias else stride
        self.body = nn.Sequential(conv_bn_relu(cin, cout, conv_stride), conv_bn(cout, cout))
        reshape = stride != 1 or cin != cout
        self.shortcut = conv_bn(cin, cout, conv_stride, kernel=1) if reshape else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        x : torch.Tensor
            (B, cin, H, W).

        Returns
        -------
        torch.Tensor
            (B, cout, h, w): H and W halved by a stride-2 block, else kept.
        """
        x = self.down(x)
        out = self.body(x)
        out += self.shortcut(x)
        return self.relu(out)


class ResTaskNet(nn.Module):
    """Group 1: the shared encoder-decoder. R = `encoder` output, 8×8×widths[-1] at a 64×64 input.

    Encoder: a 3×3 stem at full resolution, then one stage per later width, each opening with an
    anti-aliased 2× downsampling and holding `blocks[i]` residual blocks.

    Parameters
    ----------
    out_channels : int
        Channels (or scores) out.
    dense : bool, default True
        A per-pixel task (a decoder to 32×32, upsampled to 64×64), or an image-level one (an `ImageHead`).
    widths : tuple of int, default (16, 32, 64, 64)
        Channels of the stem, then of each stage.
    blocks : tuple of int, default (1, 1, 2)
        Residual blocks per stage: one fewer entry than `widths`.
    predict_size : int, default 32
        The dense decoder's side; only 32 is built.

    Raises
    ------
    ValueError
        `blocks` not one entry shorter than `widths`, or a dense network with `predict_size` other than 32.
    """

    def __init__(self, out_channels: int, dense: bool = True, widths: tuple[int, ...] = (16, 32, 64, 64),
                 blocks: tuple[int, ...] = (1, 1, 2), predict_size: int = 32) -> None:
        super().__init__()
        if len(blocks) != len(widths) - 1:
            raise ValueError(f"blocks: expected {len(widths) - 1} stage depths for widths {tuple(widths)}, got {tuple(blocks)}")
        layers, cin = [conv_bn_relu(3, widths[0])], widths[0]
        for width, depth in zip(widths[1:], blocks):
            layers += [BasicBlock(cin, width, 2, antialias=True)]
            layers += [BasicBlock(width, width) for _ in range(depth - 1)]
            cin = width
        self.encoder = nn.Sequential(*layers)
        if dense:
            steps = [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv_bn_relu(cin, 48),
                     nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv_bn_relu(48, 32),
                     nn.Conv2d(32, out_channels, 3, padding=1)]
            if predict_size != 32:
                raise ValueError(f"predict_size: ResTaskNet predicts at 32×32 (4× its 8×8 R), got {predict_size}")
            steps.append(nn.Upsample(size=(LABEL_SIZE, LABEL_SIZE), mode="bilinear", align_corners=False))
            self.decoder = nn.Sequential(*steps)
        else:
            self.decoder = ImageHead(cin, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        x : torch.Tensor
            (B, 3, 64, 64) images.

        Returns
        -------
        torch.Tensor
            (B, out_channels, 64, 64) for a dense task, else (B, out_channels).
        """
        return self.decoder(self.encoder(x))


class ResNetSmall(nn.Module):
    """Group 2: a stride-2 stem and three residual stages; R = `layer3` output.

    Parameters
    ----------
    out_channels : int
        Channels (or scores) out.
    dense : bool, default True
        A per-pixel task, or an image-level one.
    width : int, default 16
        Channels of the stem and the first stage; the second and third double them in turn.
    blocks : int, default 1
        Residual blocks per stage.
    antialias : bool, default False
        Downsample with `BlurDown` instead of strided convolutions.
    predict_size : int, default `LABEL_SIZE`
        The side at which a dense head's convolutions run.
    """

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16, blocks: int = 1,
                 antialias: bool = False, predict_size: int = LABEL_SIZE) -> None:
        super().__init__()
        stem_stride = 1 if antialias else 2
        self.stem = nn.Sequential(*conv_bn_relu(3, width, stem_stride), downsample(antialias))

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(BasicBlock(cin, cout, stride, antialias),
                                 *[BasicBlock(cout, cout) for _ in range(blocks - 1)])

        self.layer1 = stage(width, width, 1)
        self.layer2 = stage(width, 2 * width, 2)
        self.layer3 = stage(2 * width, 4 * width, 2)
        self.head = head(4 * width, out_channels, dense, predict_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        x : torch.Tensor
            (B, 3, H, W) images.

        Returns
        -------
        torch.Tensor
            (B, out_channels, 64, 64) for a dense task, else (B, out_channels).
        """
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class MobileNetSmall(nn.Module):
    """Group 2: depthwise-separable convolutions (MobileNet v1 style); R = `features` output.

    Parameters
    ----------
    out_channels : int
        Channels (or scores) out.
    dense : bool, default True
        A per-pixel task, or an image-level one.
    width : int, default 16
        Channels of the stem; the separable blocks widen it to 8× in three steps.
    antialias : bool, default False
        Downsample with `BlurDown` after stride-1 convolutions instead of strided ones.
    predict_size : int, default `LABEL_SIZE`
        The side at which a dense head's convolutions run.
    """

    def __init__(self, out_channels: int, dense: bool = True, width: int = 16, antialias: bool = False,
                 predict_size: int = LABEL_SIZE) -> None:
        super().__init__()
        conv_stride = 1 if antialias else 2

        def strided(cin: int, cout: int, stride: int, groups: int = 1) -> nn.Sequential:
            # Anti-aliased: convolve at stride 1, then blur and subsample (module keys as without).
            if stride == 1:
                return conv_bn_relu(cin, cout, groups=groups)
            return nn.Sequential(*conv_bn_relu(cin, cout, conv_stride, groups=groups), downsample(antialias))

        def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(strided(cin, cin, stride, groups=cin), conv_bn_relu(cin, cout, kernel=1))

        self.features = nn.Sequential(
            strided(3, width, 2), separable(width, 2 * width, 1), separable(2 * width, 4 * width, 2),
            separable(4 * width, 4 * width, 1), separable(4 * width, 8 * width, 2),
        )
        self.head = head(8 * width, out_channels, dense, predict_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the module.

        Parameters
        ----------
        x : torch.Tensor
            (B, 3, H, W) images.

        Returns
        -------
        torch.Tensor
            (B, out_channels, 64, 64) for a dense task, else (B, out_channels).
        """
        return self.head(self.features(x))


ARCHITECTURES = {"restasknet": ResTaskNet, "vgg": VGGNet, "resnet": ResNetSmall,
                 "mobilenet": MobileNetSmall}
ENCODERS = {"restasknet": "encoder", "vgg": "features", "resnet": "layer3", "mobilenet": "features"}


def build(arch: str, **kwargs) -> nn.Module:
    """The zoo's constructor (`python:modelspace.world.nets:build` with kwargs arch=..., ...).

    Parameters
    ----------
    arch : str
        A key of `ARCHITECTURES`: ``"restasknet"``, ``"vgg"``, ``"resnet"`` or ``"mobilenet"``.
    **kwargs
        The architecture's keyword arguments (``out_channels``, ``dense``, ...).

    Returns
    -------
    nn.Module
        The network, freshly initialised.

    Raises
    ------
    ValueError
        An unknown architecture.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)
