"""The models of the old store: a conv-bn-relu-conv encoder, seeded (written by scripts/make_old_store.py)."""

import torch
from torch import nn


def tiny_cnn(seed: int = 0, width: int = 4) -> nn.Module:
    """A small CNN whose weights and batch-norm statistics are drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                              nn.Conv2d(width, width, 3, padding=1, stride=2))
        bn = model[1]
        with torch.no_grad():
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()
