"""A zoo of `python:` models kept beside the zoo file, as a user writes one: ``mynets.py`` and ``zoo.toml``."""

from __future__ import annotations


NETS = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        return self.encoder(x)


def tiny(width=4, seed=0):
    torch.manual_seed(seed)
    return Tiny(width + EXTRA)


EXTRA = {extra}
'''


def zoo_text(kwargs_of_tiny: str = "") -> str:
    entries = [("tiny", kwargs_of_tiny), ("tiny2", "seed = 1"), ("tiny3", "seed = 2")]
    return "".join(f'[[model]]\nname = "{name}"\nsource = "python:mynets:tiny"\ninput_size = 16\n'
                   + (f"kwargs = {{ {kw} }}\n" if kw else "") + "\n" for name, kw in entries)
