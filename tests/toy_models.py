"""Small deterministic models for the tests (import as ``toy_models``; also a ``python:`` source).

Each builder seeds its own RNG (without disturbing the global one), randomises batch-norm statistics so
that batch norm is not an identity, and returns the model in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn


def _build(seed: int, cls: type, *args: int) -> nn.Module:
    """``cls(*args)`` built under ``torch.manual_seed(seed)`` in a forked RNG (the global one is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(*args)
        randomise_bn(model)
    return model.eval()


def randomise_bn(model: nn.Module, mean: float = 0.2, var: tuple[float, float] = (0.5, 1.5),
                 bias: float = 0.1) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that eval-mode BN changes its input.

    Running means are drawn from U(-mean, mean), variances from U(*var), weights from U(0.5, 1.5) and
    biases from U(-bias, bias). Returns the model.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-mean, mean)
                m.running_var.uniform_(*var)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-bias, bias)
    return model


class MeanHead(nn.Module):
    """encoder → mean(R) as a fixed 1×1-output convolution with weights 1/D (for Captum)."""

    def __init__(self, encoder: nn.Module, r_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.encoder = encoder
        c, h, w = r_shape
        self.head = nn.Conv2d(c, 1, (h, w), bias=False).double()
        nn.init.constant_(self.head.weight, 1.0 / (c * h * w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)).flatten(1)


class TinyCNN(nn.Module):
    """``encoder`` (conv-bn-relu-maxpool-conv) followed by ``head`` (global average pool + linear)."""

    def __init__(self, width: int = 8, classes: int = 5):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def tiny_cnn(width: int = 8) -> nn.Module:
    """TinyCNN; encoder name ``encoder``, R of shape (B, width, S/2, S/2)."""
    return _build(0, TinyCNN, width)


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn, then a functional residual add ``out + identity`` and a ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()  # a separate module from relu1, so per-module hooks can tell them apart
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        out = out + identity
        return self.relu2(out)


class TinyResNet(nn.Module):
    """Stem (conv+bn+relu), maxpool, ``layer1``, ``layer2`` (stride 2), avgpool, fc."""

    def __init__(self, width: int = 8, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_resnet(width: int = 8) -> nn.Module:
    """TinyResNet; encoder name ``layer2``, R of shape (B, 2·width, S/4, S/4)."""
    return _build(1, TinyResNet, width)


class TinyMLP(nn.Module):
    """``encoder`` (flatten, linear, relu) and ``head`` (linear), for 3×8×8 inputs."""

    def __init__(self, size: int = 8, hidden: int = 16, classes: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def tiny_mlp() -> nn.Module:
    """TinyMLP for 8×8 inputs; encoder name ``encoder``, R of shape (B, 16)."""
    return _build(2, TinyMLP)


# ----------------------------------------------------------------------------- broken models


def dead_cnn() -> nn.Module:
    """A TinyCNN whose encoder output is 0 for every input (zero weights, negative bias, ReLU):
    its encoder output does not depend on the input, so every attribution map is all zero."""
    model = tiny_cnn()
    with torch.no_grad():
        last = model.encoder[-1]
        last.weight.zero_()
        last.bias.fill_(-1.0)
    model.encoder.append(nn.ReLU())
    return model


def nonfinite_cnn(value: str = "nan") -> nn.Module:
    """A TinyCNN with one weight set to NaN (or inf): its encoder output and maps are not finite."""
    model = tiny_cnn()
    with torch.no_grad():
        model.encoder[0].weight[0, 0, 0, 0] = float(value)
    return model


def failing_constructor() -> nn.Module:
    """A constructor that raises, as a broken user factory would."""
    raise RuntimeError("this factory is broken on purpose")


def argv_parsing_constructor() -> nn.Module:
    """A constructor that parses the command line, as research scripts do: ``SystemExit(2)`` under
    any other program's arguments."""
    import argparse

    parser = argparse.ArgumentParser(prog="toy_model_script")
    parser.add_argument("--config", required=True)
    parser.parse_args()
    return tiny_cnn()


class _ChattyCNN(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print(f"forward on a batch of {len(x)}")  # as research code does
        return super().forward(x)


def chatty_cnn() -> nn.Module:
    """A TinyCNN that prints to stdout when built and on every forward pass."""
    print("building chatty_cnn, loading weights ... done")
    return _build(0, _ChattyCNN)


def state_changing_cnn() -> nn.Module:
    """A working TinyCNN whose constructor leaves torch's global state changed: float64 default dtype,
    grad mode off, deterministic algorithms on, and another CPU thread count than it found."""
    model = tiny_cnn()
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(torch.get_num_threads() + 1)
    return model


class _SlowCNN(TinyCNN):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(self.delay)  # stands for a big model: keeps a unit of work in flight long enough to race
        return super().forward(x)


def slow_cnn(delay: float = 0.05, seed: int = 0) -> nn.Module:
    """TinyCNN that sleeps ``delay`` seconds per forward pass (for crash and concurrency tests)."""
    return _build(seed, _SlowCNN, delay)
