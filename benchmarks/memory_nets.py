"""The networks of `memory.py`'s 50-model zoo: timm's smallest test networks, each copy with weights of its own seed."""

import timm
import torch


def seeded(arch: str, seed: int) -> torch.nn.Module:
    """``timm.create_model(arch)`` with random weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False)
