"""The report's figures as PNG bytes, and the geometry its page needs to make them interactive.

The heatmap and the model-space map are drawn on axes at a fixed place in the figure (no layout
engine), so the page knows where each cell or point lands in the image and can show a tooltip
under the pointer by reading the matrix it embeds as JSON. The dendrogram, the P@K/R@K curves and
the attribution grid come from `plots` unchanged; the MDS coordinates and clusters from `similarity.tree`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from . import plots

MAX_POINT_LABELS = 40
"""At most this many points of the model-space map carry their name; the others show on hover."""

ANNOTATE_CELLS = 12
"""Up to this many models, the heatmap writes each value in its cell."""

DPI = 100


def heatmap_png(matrix: np.ndarray, labels: Sequence[str], title: str) -> tuple[bytes, dict]:
    """The (already ordered) matrix as a heatmap; returns the PNG and the axes box in image fractions."""
    a = np.asarray(matrix, dtype=np.float64)
    n = len(a)
    ticks = plots.thin_labels(n)
    font = plots.font_size(len(ticks))
    label_in = _label_width(labels, ticks, font)
    side = float(np.clip(3.0 + 0.06 * n, 4.0, 8.0))  # inches: 200 models → 8 in, 4 px per cell
    left, right, top, bottom = label_in + 0.15, 1.2, 0.45, label_in + 0.15
    width, height = left + side + right, top + side + bottom
    fig = plots.figure((width, height), layout=None)
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
    fig = plots.figure((side + 2 * margin, side + 2 * margin), layout=None)
    box = [margin / (side + 2 * margin), margin / (side + 2 * margin), side / (side + 2 * margin),
           side / (side + 2 * margin)]
    ax = fig.add_axes(box)
    palette = colormaps["tab10"]
    ax.scatter(xy[:, 0], xy[:, 1], c=[palette(int(g) % 10) for g in groups], s=36 if n <= 40 else 14,
               edgecolors="white", linewidths=0.5, zorder=2)
    shown = [order[i] for i in plots.thin_labels(n, MAX_POINT_LABELS)] if n > MAX_POINT_LABELS else range(n)
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
