"""Probe images of the real world: crops of photographs that ship with registry packages.

A user's probe images are photographs, never the zoo's own rendered rooms. This domain gives the
study such images without a download: the colour photographs bundled with scikit-image
(``skimage.data``: astronaut, chelsea the cat, coffee, rocket, the left image of the motorcycle
stereo pair) and matplotlib (its ``grace_hopper.jpg`` sample), and three greyscale ones of
scikit-image (camera, coins, brick) repeated over the three channels. Microscopy, astronomy, text
and pure textures among those packages' images are left out: they are not what a user photographs.

Image i is a square crop of photograph i mod 9, at a side drawn between 35 % and 90 % of the
photo's short side and a position drawn uniformly, mirrored with probability ½, then resized (area
averaging) to ``size``; deterministic by (seed, i), like the renderer. scikit-image is an optional
dependency (the ``photos`` extra, also in ``test``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelspaceError

__all__ = ["PHOTOS", "photo_batch"]

PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "grace_hopper",
                           "camera", "coins", "brick")
"""The photographs, in the order image i cycles through them."""
CROP_RANGE = (0.35, 0.90)
"""A crop's side as a fraction of the photo's short side (drawn uniformly)."""


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """One photograph as uint8 (H, W, 3)."""
    if name == "grace_hopper":
        import matplotlib
        from PIL import Image

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    try:
        from skimage import data
    except ImportError:
        raise ModelspaceError("the 'photos' probe domain needs scikit-image for its bundled photographs: "
                              "pip install scikit-image (or the package's 'photos' extra)") from None
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def photo_batch(n: int, seed: int, size: int = 64) -> np.ndarray:
    """N crops of real photographs; image i depends only on (seed, i).

    Parameters
    ----------
    n : int
        How many images.
    seed : int
        The seed of the crops: their side, place and mirroring (image i crops photograph
        ``PHOTOS[i % len(PHOTOS)]``).
    size : int, default 64
        The side of each image in pixels.

    Returns
    -------
    np.ndarray
        float32 (n, size, size, 3) in [0, 1].

    Raises
    ------
    ModelspaceError
        If scikit-image, which bundles the photographs, is not installed.
    """
    from PIL import Image

    images = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        photo = _photo(PHOTOS[i % len(PHOTOS)])
        h, w = photo.shape[:2]
        side = int(round(rng.uniform(*CROP_RANGE) * min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        resized = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BOX)
        images.append(np.asarray(resized, dtype=np.float32) / 255.0)
    return np.stack(images)
