"""Task catalogue (`TASKS`) and the label computations that are not ray casting.

Image-based labels (2D edges, 2D keypoints) are computed from the rendered RGB; geometric ones
(occlusion edges, 3D keypoints, segments) from the ray caster's per-pixel buffers. The helpers
`noisy`, `to_grey`, `mask_centre` and `task_input` build the inputs of the self-supervised tasks.
All arrays are channel-last: one image is H×W×C, a batch N×H×W×C.
"""

from __future__ import annotations

import math

import numpy as np

from .scene import MAX_DEPTH, MAX_OBJECTS, N_CLASSES, OBJECT_TYPES

N_SEGMENTS = 48
"""`segment25d` / `segment2d` ids are < N_SEGMENTS (later segments share the last id)."""
CURVATURE_SCALE = 10.0
"""`curvature` = mean curvature (1/m) / CURVATURE_SCALE, clipped to [0, 1] (r = 0.1 m sphere -> 1)."""
SMOOTHED = {"edges2d": 2.0, "edges3d": 2.0, "curvature": 2.0, "keypoints3d": 3.0, "inpainting": 2.0}
"""Labels whose pixel-scale detail no model can place (one-pixel edges, curvature at silhouettes,
keypoint blobs, the texture of a hidden patch), smoothed by a Gaussian of this σ in pixels at 64×64
(scaled with the image size). A dense model predicts at 32×32; unsmoothed, these five tasks stayed
at a normalised held-out loss of 0.35–0.64 after training to convergence (their records:
``data/world/zoo/first-attempt/``). Each σ is the smallest of
1, 1.5, 2 and 3 at which those converged models' own predictions, smoothed alike, reach ≤ 0.3
(E[smooth(y) | x] = smooth(E[y | x])), rounded up to 2 px for those that needed less."""
N_LAYOUT = 9
LAYOUT_ANGLE = math.radians(30.0)  # room_layout maps yaw / pitch in ±30° to [0, 1]

DENSE_REGRESSION = "dense_regression"
DENSE_CLASSIFICATION = "dense_classification"
IMAGE_CLASSIFICATION = "image_classification"
IMAGE_REGRESSION = "image_regression"

TASKS: dict[str, tuple[str, int, str]] = {
    # name: (kind, channels, description). Channels are output channels a model needs: the number
    # of classes for classification tasks. Dense regression labels are float32 H×W×channels in
    # [0, 1]; dense classification labels int64 H×W; image labels int64 () or float32 (channels,).
    "depth_z": (DENSE_REGRESSION, 1, f"z-buffer depth (camera z) / {MAX_DEPTH:g} m"),
    "depth_euclidean": (DENSE_REGRESSION, 1, f"distance from the camera centre along the ray / {MAX_DEPTH:g} m"),
    "normals": (DENSE_REGRESSION, 3, "surface normal in the camera frame (x right, y up, z forward), (n + 1) / 2"),
    "reshading": (DENSE_REGRESSION, 1, "shading without albedo: ambient + light × lambert × shadow, clipped"),
    "edges2d": (DENSE_REGRESSION, 1, "Sobel gradient magnitude of the grey image / 4, clipped, smoothed"),
    "edges3d": (DENSE_REGRESSION, 1, "occlusion edges (1 on the near side of a silhouette, else 0), smoothed"),
    "curvature": (DENSE_REGRESSION, 1, f"mean curvature (1/m) / {CURVATURE_SCALE:g} (0 on planes, 1/r spheres), smoothed"),
    "keypoints2d": (DENSE_REGRESSION, 1, "Shi-Tomasi corner response of the grey image, 1 - exp(-λmin / k)"),
    "keypoints3d": (DENSE_REGRESSION, 1, "visible 3D keypoints (box/room corners, rims, apexes) as blobs, smoothed"),
    "segment_semantic": (DENSE_CLASSIFICATION, N_CLASSES, "per-pixel class, index into SEMANTIC_CLASSES"),
    "segment25d": (DENSE_CLASSIFICATION, N_SEGMENTS, "geometric segments: planar face / normal-binned patch ids"),
    "segment2d": (DENSE_CLASSIFICATION, N_SEGMENTS, "instance segments (room surface or object) ids"),
    "object_class": (IMAGE_CLASSIFICATION, len(OBJECT_TYPES), "type of the largest visible object (OBJECT_TYPES)"),
    "object_count": (IMAGE_CLASSIFICATION, MAX_OBJECTS + 1, "number of objects with at least one visible pixel"),
    "room_layout": (IMAGE_REGRESSION, N_LAYOUT, "vp x, vp y, yaw, pitch, wall/floor/ceiling/back distances"),
    "vanishing_point": (IMAGE_REGRESSION, 2, "room depth-direction vanishing point (x, y), image coords in [0, 1]"),
    "autoencoding": (DENSE_REGRESSION, 3, "the RGB image itself (input: the image)"),
    "denoising": (DENSE_REGRESSION, 3, "the clean RGB image (input: noisy(image))"),
    "colorization": (DENSE_REGRESSION, 3, "the RGB image (input: to_grey(image))"),
    "inpainting": (DENSE_REGRESSION, 3, "the image's centre patch, H/2×W/2, smoothed (input: mask_centre(image))"),
}
"""Task name -> (kind, channels, one-line description). Segment ids are numbered in order of first
appearance in raster order (row by row), so they are instance-like: compare them up to relabelling."""

SELF_SUPERVISED = ("autoencoding", "denoising", "colorization", "inpainting")
IMAGE_TARGETS = ("autoencoding", "denoising", "colorization")
"""Tasks whose target is the RGB image itself; `render` returns them as the same array as "rgb"."""


# --------------------------------------------------------------------------------------------
# Inputs of the self-supervised tasks


def to_grey(image: np.ndarray) -> np.ndarray:
    """Luma (BT.601) of an image, repeated on 3 channels so RGB models can take it.

    Parameters
    ----------
    image : np.ndarray
        (..., H, W, 3) RGB in [0, 1].

    Returns
    -------
    np.ndarray
        (..., H, W, 3), the three channels equal, of the image's dtype.
    """
    grey = image @ np.array([0.299, 0.587, 0.114], dtype=image.dtype)
    return np.repeat(grey[..., None], 3, axis=-1)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    """``image`` plus Gaussian noise of std ``sigma``, clipped to [0, 1].

    Parameters
    ----------
    image : np.ndarray
        Any shape, values in [0, 1].
    rng : np.random.Generator
        Draws the noise.
    sigma : float, default 0.1
        The noise's standard deviation.

    Returns
    -------
    np.ndarray
        The noisy image, of the image's shape and dtype.
    """
    noise = rng.normal(0.0, sigma, size=image.shape).astype(image.dtype)
    return np.clip(image + noise, 0.0, 1.0)


def centre_slices(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the centre patch (half the size in each direction).

    Parameters
    ----------
    height : int
        The image's height H in pixels.
    width : int
        The image's width W in pixels.

    Returns
    -------
    rows, cols : slice
        ``H//4 : H//4 + H//2`` and ``W//4 : W//4 + W//2``.
    """
    return slice(height // 4, height // 4 + height // 2), slice(width // 4, width // 4 + width // 2)


def mask_centre(image: np.ndarray, fill: float = 0.5) -> np.ndarray:
    """A copy of ``image`` with its centre patch (`centre_slices`) set to ``fill``.

    Parameters
    ----------
    image : np.ndarray
        (..., H, W, C).
    fill : float, default 0.5
        The value of the masked pixels (mid grey).

    Returns
    -------
    np.ndarray
        The masked copy; the input is left as it is.
    """
    rows, cols = centre_slices(*image.shape[-3:-1])
    out = image.copy()
    out[..., rows, cols, :] = fill
    return out


def centre_patch(image: np.ndarray) -> np.ndarray:
    """The centre patch of an image (`centre_slices`): the `inpainting` target.

    Parameters
    ----------
    image : np.ndarray
        (..., H, W, C).

    Returns
    -------
    np.ndarray
        (..., H/2, W/2, C), a copy.
    """
    rows, cols = centre_slices(*image.shape[-3:-1])
    return image[..., rows, cols, :].copy()


def task_input(task: str, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """What a model for ``task`` sees: the image, or its noisy / grey / masked version.

    Parameters
    ----------
    task : str
        A name of `TASKS`; ``"denoising"``, ``"colorization"`` and ``"inpainting"`` change the image
        (`noisy`, `to_grey`, `mask_centre`), every other task sees it as it is.
    image : np.ndarray
        (..., H, W, 3) RGB in [0, 1].
    rng : np.random.Generator, optional
        Draws the denoising noise; by default ``np.random.default_rng(0)``.

    Returns
    -------
    np.ndarray
        The model's input, of the image's shape (the image itself for the other tasks).
    """
    if task == "denoising":
        return noisy(image, rng if rng is not None else np.random.default_rng(0))
    if task == "colorization":
        return to_grey(image)
    if task == "inpainting":
        return mask_centre(image)
    return image


# --------------------------------------------------------------------------------------------
# Image-based labels


def _filter3(img: np.ndarray, k_rows, k_cols) -> np.ndarray:
    """Separable 3×3 correlation of a 2-D image with edge padding (k_rows along y, k_cols along x)."""
    p = np.pad(img, 1, mode="edge")
    h = k_cols[0] * p[:, :-2] + k_cols[1] * p[:, 1:-1] + k_cols[2] * p[:, 2:]
    return k_rows[0] * h[:-2] + k_rows[1] * h[1:-1] + k_rows[2] * h[2:]


def sobel(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel responses of a 2-D image (edge padding): a unit step gives 4.

    Parameters
    ----------
    grey : np.ndarray
        (H, W) image.

    Returns
    -------
    gx, gy : np.ndarray
        (H, W) each: the horizontal and vertical responses.
    """
    gx = _filter3(grey, (1, 2, 1), (-1, 0, 1))
    gy = _filter3(grey, (-1, 0, 1), (1, 2, 1))
    return gx, gy


def edges2d(rgb: np.ndarray) -> np.ndarray:
    """Sobel magnitude of the luma, / 4 (a unit step -> 1), clipped to [0, 1].

    Parameters
    ----------
    rgb : np.ndarray
        (H, W, 3) RGB in [0, 1].

    Returns
    -------
    np.ndarray
        (H, W) edge strength in [0, 1] (unsmoothed: the label smooths it, `SMOOTHED`).
    """
    gx, gy = sobel(to_grey(rgb)[..., 0])
    return np.clip(np.hypot(gx, gy) / 4.0, 0.0, 1.0)


KEYPOINT_SCALE = 0.002  # λmin at which the corner response reaches 1 - 1/e


def keypoints2d(rgb: np.ndarray) -> np.ndarray:
    """Shi-Tomasi corner response: the smaller eigenvalue of the smoothed structure tensor.

    Parameters
    ----------
    rgb : np.ndarray
        (H, W, 3) RGB in [0, 1].

    Returns
    -------
    np.ndarray
        (H, W) ``1 - exp(-λmin / KEYPOINT_SCALE)``, in [0, 1).
    """
    gx, gy = sobel(to_grey(rgb)[..., 0])
    gx, gy = gx / 8.0, gy / 8.0  # per-pixel derivative estimates

    def window(a):  # binomial 3×3 window
        return _filter3(a, (0.25, 0.5, 0.25), (0.25, 0.5, 0.25))

    a, b, c = window(gx * gx), window(gx * gy), window(gy * gy)
    lam_min = (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)
    return 1.0 - np.exp(-np.maximum(lam_min, 0.0) / KEYPOINT_SCALE)


# --------------------------------------------------------------------------------------------
# Geometry-based labels


def relabel_by_appearance(keys: np.ndarray, k: int = N_SEGMENTS) -> np.ndarray:
    """Integer keys -> ids 0, 1, ... in order of first appearance (raster order), capped at k-1.

    Parameters
    ----------
    keys : np.ndarray
        (H, W) integer keys, one per segment.
    k : int, default `N_SEGMENTS`
        The number of ids; later segments share id k - 1.

    Returns
    -------
    np.ndarray
        (H, W) int64 ids.
    """
    uniq, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))
    return np.minimum(rank[inverse], k - 1).reshape(keys.shape)


def normal_bin(normals: np.ndarray) -> np.ndarray:
    """Which of the 6 axis directions (±x, ±y, ±z) each normal is closest to.

    Parameters
    ----------
    normals : np.ndarray
        (..., 3) normals.

    Returns
    -------
    np.ndarray
        (...) ints 0..5: 2 × axis + (the component is positive).
    """
    axis = np.argmax(np.abs(normals), axis=-1)
    positive = np.take_along_axis(normals, axis[..., None], -1)[..., 0] > 0
    return 2 * axis + positive


def occlusion_edges(t: np.ndarray, solid: np.ndarray, near_floor: np.ndarray, floor_slack: np.ndarray) -> np.ndarray:
    """Occlusion edges (H, W) float32 in {0, 1}.

    Objects are convex and the room is seen from inside, so depth is discontinuous exactly where two
    4-neighbouring pixels see different solids (room = 0, object k = k + 1) — except where an object
    rests on the floor. There a floor pixel and an object pixel within about a pixel footprint of the
    floor (``near_floor``) form a crease when their distances ``t`` differ by less than the floor's own
    depth spread across a pixel (``floor_slack``, 0 off the floor). The nearer pixel of each
    discontinuous pair, the occluder, is marked.

    Parameters
    ----------
    t : np.ndarray
        (H, W) distance along each pixel's ray to what it sees.
    solid : np.ndarray
        (H, W) int: which solid each pixel sees (room = 0, object k = k + 1).
    near_floor : np.ndarray
        (H, W) bool: the pixel sees an object point within about a pixel footprint of the floor.
    floor_slack : np.ndarray
        (H, W) float: the floor's depth spread across the pixel (0 off the floor).

    Returns
    -------
    np.ndarray
        (H, W) float32, 1 on the near side of each occlusion edge, else 0.
    """
    edges = np.zeros(t.shape, dtype=bool)
    for axis in (0, 1):
        a, b = [slice(None)] * 2, [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        gap = np.abs(t[a] - t[b])
        contact = (near_floor[a] & (gap < floor_slack[b])) | (near_floor[b] & (gap < floor_slack[a]))
        jump = (solid[a] != solid[b]) & ~contact
        edges[a] |= jump & (t[a] <= t[b])
        edges[b] |= jump & (t[b] < t[a])
    return edges.astype(np.float32)


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian smoothing of an image over H and W: kernel radius round(3σ), edge padding.

    Parameters
    ----------
    image : np.ndarray
        (H, W) or (H, W, C); channels are smoothed apart.
    sigma : float
        The Gaussian's standard deviation in pixels (> 0).

    Returns
    -------
    np.ndarray
        The smoothed image, float64, of the image's shape.
    """
    radius = int(3 * sigma + 0.5)
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    pad = [(radius, radius)] * 2 + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image.astype(np.float64), pad, mode="edge")
    rows = sum(w * padded[:, k : k + image.shape[1]] for k, w in enumerate(taps))
    return sum(w * rows[k : k + image.shape[0]] for k, w in enumerate(taps))


def splat(points_xy: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Max of isotropic Gaussians (peak 1) at pixel coordinates ``points_xy``.

    Parameters
    ----------
    points_xy : np.ndarray
        (K, 2) the centres as (column, row), in pixels.
    size : int
        The side of the square image in pixels.
    sigma : float
        The Gaussians' standard deviation in pixels.

    Returns
    -------
    np.ndarray
        (size, size) float64 in [0, 1]; all 0 with no point.
    """
    out = np.zeros((size, size))
    if len(points_xy) == 0:
        return out
    grid = np.arange(size, dtype=float)
    gx = np.exp(-((grid[None, :] - points_xy[:, :1]) ** 2) / (2 * sigma**2))  # (K, W)
    gy = np.exp(-((grid[None, :] - points_xy[:, 1:]) ** 2) / (2 * sigma**2))  # (K, H)
    return (gy[:, :, None] * gx[:, None, :]).max(axis=0)
