"""Images for the tests: tensors for a model's input and folders of PNG files for a probe set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def images(b: int = 2, s: int = 16, seed: int = 0) -> torch.Tensor:
    """Random images in [0, 1], the same for the same seed.

    Parameters
    ----------
    b, s : int
        Batch size and side in pixels.
    seed : int
        Seed of the generator.

    Returns
    -------
    torch.Tensor
        Shape (b, 3, s, s).
    """
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed))


def write_images(folder: Path, n: int = 6, size: int = 16, seed: int = 0) -> Path:
    """Write ``n`` random RGB images of ``size``² as PNG files ``000.png`` ... into ``folder``.

    Parameters
    ----------
    folder : Path
        Created with its parents if missing.
    n, size : int
        Number of images and their side in pixels.
    seed : int
        Seed of the pixels: the same seed writes the same files.

    Returns
    -------
    Path
        ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder
