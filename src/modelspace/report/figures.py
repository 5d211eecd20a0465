"""The report's figures as PNG bytes, and the geometry its page needs to make them interactive.

The heatmap and the model-space map are drawn on axes at a fixed place in the figure (no layout
engine), so the page knows where each cell or point lands in the image and can show a tooltip
under the pointer by reading the matrix it embeds as JSON. The dendrogram, the P@K/R@K curves and
the attribution grid come from `plots.py` unchanged.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from scipy.cluster import hierarchy

from . import plots
from .errors import InputError

MAX_TICK_LABELS = 60
"""At most this many model names label a heatmap axis; beyond, every k-th one shows (hover shows all)."""

MAX_POINT_LABELS = 40
"""At most this many points of the model-space map carry their name; the others show on hover."""

ANNOTATE_CELLS = 12
"""Up to this many models, the heatmap writes each value in its cell."""

DPI = 100


def classical_mds(affinity: np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates (N × dims) whose distances approximate 1 − affinity (Torgerson's classical MDS).

    The distance is symmetrised and clipped at 0 like the tree's. Dimensions with a non-positive
    eigenvalue (a non-Euclidean distance, or fewer models than dims + 1) are left at 0.
    """
    a = np.asarray(affinity, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise InputError(f"affinity: expected a non-empty square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError("affinity: the matrix holds NaN or infinite values")
    d = np.clip(1.0 - (a + a.T) / 2.0, 0.0, None)
    np.fill_diagonal(d, 0.0)
    n = len(d)
    centring = np.eye(n) - 1.0 / n
    b = -0.5 * centring @ (d**2) @ centring  # double-centred squared distances: a Gram matrix
    values, vectors = np.linalg.eigh(b)
    top = np.argsort(values)[::-1][:dims]
    coords = np.zeros((n, dims))
    for k, i in enumerate(top):
        if values[i] > 1e-12:
            coords[:, k] = vectors[:, i] * np.sqrt(values[i])
    return coords


def thin_labels(n: int, max_labels: int = MAX_TICK_LABELS) -> list[int]:
    """Indices of the labels to draw on an axis of n items: all, or every k-th one (k smallest that fits)."""
    if n < 0 or max_labels < 1:
        raise InputError(f"thin_labels: n must be ≥ 0 and max_labels ≥ 1, got {n}, {max_labels}")
    step = max(1, math.ceil(n / max_labels))
    return list(range(0, n, step))


def clusters(linkage: np.ndarray | None, n: int) -> np.ndarray:
    """A flat clustering cut from the tree (about √(n/2) groups, 2 to 10) for colouring points."""
    if linkage is None or n < 3:
        return np.zeros(n, dtype=int)
    k = int(np.clip(round(math.sqrt(n / 2)), 2, 10))
    return hierarchy.fcluster(linkage, k, criterion="maxclust") - 1


def heatmap_png(matrix: np.ndarray, labels: Sequence[str], title: str) -> tuple[bytes, dict]:
    """The (already ordered) matrix as a heatmap; returns the PNG and the axes box in image fractions."""
    a = np.asarray(matrix, dtype=np.float64)
    n = len(a)
    ticks = thin_labels(n)
    font = plots._font_size(len(ticks))
    label_in = _label_width(labels, ticks, font)
    side = float(np.clip(3.0 + 0.06 * n, 4.0, 8.0))  # inches: 200 models → 8 in, 4 px per cell
    left, right, top, bottom = label_in + 0.15, 1.2, 0.45, label_in + 0.15
    width, height = left + side + right, top + side + bottom
    fig = plots._figure((width, height), layout=None)
    box = [left / width, bottom / height, side / width, side / height]
    ax = fig.add_axes(box)
    low, high = plots.off_diagonal_range(a)
    image = ax.imshow(a, cmap="viridis", interpolation="nearest", aspect="auto", vmin=low, vmax=high)
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=font)
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=font)
    if n <= ANNOTATE_CELLS:  # a handful of models: the values themselves, written in the cells
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if a[i, j] > (low + high) / 2 else "white")
    ax.set_title(title, fontsize=11)
    cax = fig.add_axes([(left + side + 0.15) / width, bottom / height, 0.18 / width, side / height])
    fig.colorbar(image, cax=cax, label="affinity", extend="max" if a.max() > high else "neither")
    return _png(fig), _box_from_bottom(box)


def mds_png(coords: np.ndarray, labels: Sequence[str], groups: np.ndarray, order: Sequence[int],
            title: str) -> tuple[bytes, dict]:
    """Scatter of the MDS map, coloured by tree cluster; returns the PNG and the axes box and limits."""
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    n = len(xy)
    centre = (xy.max(axis=0) + xy.min(axis=0)) / 2 if n else np.zeros(2)
    half = max(float(np.ptp(xy, axis=0).max()) / 2 if n else 0.0, 1e-6) * 1.15
    lim = [centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half]
    side, margin = 6.0, 0.6
    fig = plots._figure((side + 2 * margin, side + 2 * margin), layout=None)
    box = [margin / (side + 2 * margin), margin / (side + 2 * margin), side / (side + 2 * margin),
           side / (side + 2 * margin)]
    ax = fig.add_axes(box)
    palette = colormaps["tab10"]
    ax.scatter(xy[:, 0], xy[:, 1], c=[palette(int(g) % 10) for g in groups], s=36 if n <= 40 else 14,
               edgecolors="white", linewidths=0.5, zorder=2)
    shown = [order[i] for i in thin_labels(n, MAX_POINT_LABELS)] if n > MAX_POINT_LABELS else range(n)
    for i in shown:
        ax.annotate(str(labels[i]), xy[i], textcoords="offset points", xytext=(4, 3),
                    fontsize=8 if n <= 40 else 6, color="0.2")
    ax.set_xlim(lim[0], lim[1])
    ax.set_ylim(lim[2], lim[3])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.2)
    return _png(fig), {**_box_from_bottom(box), "xlim": lim[:2], "ylim": lim[2:]}


def dendrogram_png(linkage: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    buffer = io.BytesIO()
    plots.plot_dendrogram(linkage, labels, buffer, title=title)
    return buffer.getvalue()


def curves_png(evaluation: dict) -> bytes:
    buffer = io.BytesIO()
    plots.plot_curves(evaluation, buffer)
    return buffer.getvalue()


def grid_png(images: np.ndarray, maps: dict[str, np.ndarray], max_images: int) -> bytes:
    buffer = io.BytesIO()
    plots.plot_attribution_grid(images, maps, buffer, max_images=max_images)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so the page needs no file beside it and no network."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --------------------------------------------------------------------------- helpers


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _box_from_bottom(box: list[float]) -> dict:
    """matplotlib's axes box (left, bottom, width, height) as the page's (left, top, width, height)."""
    left, bottom, width, height = box
    return {"left": left, "top": 1.0 - bottom - height, "width": width, "height": height}


def _label_width(labels: Sequence[str], ticks: Sequence[int], font: float) -> float:
    # Inches that the longest drawn label needs: about 0.6 em per character.
    longest = max((len(str(labels[i])) for i in ticks), default=1)
    return min(0.6 * font / 72.0 * longest + 0.1, 2.6)
