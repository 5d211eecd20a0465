"""Probe images unlike the rendered rooms: procedural textures and noise fields.

Used to test whether the estimate survives a probe domain the zoo never saw (the seed paper
reports robustness to the probe set's domain). Four families, drawn with equal probability:
1/f ("pink") colour noise, oriented sinusoidal gratings, random-colour checkerboards, and soft
Voronoi cells. Deterministic by (seed, index), like the renderer.
"""

from __future__ import annotations

import numpy as np


def _pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    freq = np.fft.fftfreq(size)
    radius = np.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius ** rng.uniform(0.8, 1.6)
        field = np.real(np.fft.ifft2(spectrum))
        channels.append((field - field.min()) / (np.ptp(field) + 1e-9))
    return np.stack(channels, -1)


def _grating(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 12), rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return wave[..., None] * a + (1 - wave[..., None]) * b


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = int(rng.integers(2, 10))
    yy, xx = np.mgrid[0:size, 0:size] * cells // size
    colours = rng.uniform(0, 1, (2, 3))
    return colours[(yy + xx) % 2]


def _voronoi(rng: np.random.Generator, size: int) -> np.ndarray:
    n = int(rng.integers(4, 16))
    seeds, colours = rng.uniform(0, size, (n, 2)), rng.uniform(0, 1, (n, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    weights = np.exp(-(d - d.min(-1, keepdims=True)) / (0.02 * size**2))
    return (weights @ colours) / weights.sum(-1, keepdims=True)


FAMILIES = (_pink_noise, _grating, _checker, _voronoi)


def texture_batch(n: int, seed: int, size: int = 64) -> np.ndarray:
    """N texture images; image i depends only on (seed, i).

    Parameters
    ----------
    n : int
        How many images.
    seed : int
        The seed of the textures.
    size : int, default 64
        The side of each image in pixels.

    Returns
    -------
    np.ndarray
        float32 (n, size, size, 3) in [0, 1].
    """
    images = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
        images.append(np.clip(family(rng, size), 0.0, 1.0))
    return np.stack(images).astype(np.float32)
