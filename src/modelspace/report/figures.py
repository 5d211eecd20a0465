"""The report's figures as PNG bytes, and the geometry its page needs to make them interactive.

The heatmap and the model-space map are drawn on axes at a fixed place in the figure (no layout
engine), so the page knows where each cell or point lands in the image and can show a tooltip
under the pointer by reading the matrix it embeds as JSON. The dendrogram, the P@K/R@K curves and
the attribution grid come from `plots` unchanged; the MDS coordinates and clusters from `similarity.tree`.
Every PNG has a palette of at most 256 colours (`plots.compact_png`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D

from ..similarity import clusters
from . import plots

MAX_POINT_LABELS = 40
"""At most this many points of the model-space map carry their name; the others show on hover."""

MAX_COLOUR_GROUPS = 20
"""Points are coloured by task when the models share tasks among at most this many; else by cluster."""

ANNOTATE_CELLS = 12
"""Up to this many models, the heatmap writes each value in its cell."""

DPI = 100


def heatmap_png(matrix: np.ndarray, labels: Sequence[str], title: str) -> tuple[bytes, dict]:
    """The (already ordered) matrix as a heatmap, with the axes box the page places its tooltips by.

    Up to `ANNOTATE_CELLS` models each cell carries its value; the colour scale spans the off-diagonal
    values (`plots.draw_affinity`), the diagonal drawn grey.

    Parameters
    ----------
    matrix : np.ndarray
        An (N, N) affinity matrix, rows and columns already in the order to draw.
    labels : sequence of str
        The N model names, in the same order.
    title : str
        The title over the heatmap.

    Returns
    -------
    png : bytes
        The PNG (a palette of at most 256 colours, `DPI` dots per inch).
    box : dict
        The heatmap's axes in fractions of the image: ``{"left", "top", "width", "height"}``, measured
        from the image's top-left corner.
    """
    a = np.asarray(matrix, dtype=np.float64)
    n = len(a)
    labels = plots.shown(labels)
    ticks = plots.thin_labels(n)
    font = plots.font_size(len(ticks))
    label_in = _label_width(labels, ticks, font)
    side = float(np.clip(3.0 + 0.06 * n, 4.0, 8.0))  # inches: 200 models → 8 in, 4 px per cell
    over = plots.text_width([title], 11) / 2 - side / 2 + 0.1  # how far the title, centred, overhangs the axes
    left, right, top, bottom = max(label_in + 0.15, over), max(1.2, over), 0.45, label_in + 0.15
    width, height = left + side + right, top + side + bottom
    fig = plots.figure((width, height), layout=None)
    box = [left / width, bottom / height, side / width, side / height]
    ax = fig.add_axes(box)
    low, high = plots.off_diagonal_range(a)
    image = plots.draw_affinity(ax, a, aspect="auto")
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=font)
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=font)
    if n <= ANNOTATE_CELLS:  # a handful of models: the values themselves, written in the cells
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if a[i, j] > (low + high) / 2 else "white")
    ax.set_title(title, fontsize=11)
    cax = fig.add_axes([(left + side + 0.15) / width, bottom / height, 0.18 / width, side / height])
    fig.colorbar(image, cax=cax, label="affinity (diagonal grey)")
    return _png(fig), _box_from_bottom(box)


def colour_groups(names: Sequence[str], tasks: Sequence[str], linkage: np.ndarray | None) -> tuple[np.ndarray, list[str] | None]:
    """What the model-space map is coloured by: the task, or the tree's clusters.

    The task when models share tasks (at most `MAX_COLOUR_GROUPS` of them), with the task names for a
    legend; else the tree's clusters (`similarity.clusters`), with no legend.

    Parameters
    ----------
    names : sequence of str
        The N model names.
    tasks : sequence of str
        Each model's task, in the same order.
    linkage : np.ndarray or None
        The models' tree (a scipy linkage matrix), used when the tasks do not group the models.

    Returns
    -------
    groups : np.ndarray
        (N,) int: each model's group, an index into `legend` when there is one.
    legend : list of str or None
        The distinct tasks in order of first appearance, or None when the groups are clusters.
    """
    distinct = list(dict.fromkeys(tasks))
    if len(distinct) < len(names) and len(distinct) <= MAX_COLOUR_GROUPS:
        index = {t: i for i, t in enumerate(distinct)}
        return np.array([index[t] for t in tasks], dtype=int), distinct
    return clusters(linkage, len(names)), None


def mds_figure(coords: np.ndarray, labels: Sequence[str], groups: np.ndarray, order: Sequence[int], title: str,
               explained: Sequence[float] | None = None, legend: Sequence[str] | None = None):
    """The MDS map as a matplotlib figure, with the axes box and limits the page's tooltips need.

    Points are coloured by `groups` (named by `legend` when given); at most `MAX_POINT_LABELS` names
    are placed where they overlap no other name and no point (`place_labels`), the axes titled with
    the share of variance they hold. The axes are square and share one scale.

    Parameters
    ----------
    coords : np.ndarray
        (N, 2) or wider MDS coordinates; the first two columns are drawn.
    labels : sequence of str
        The N model names.
    groups : np.ndarray
        (N,) int: each point's colour group (`colour_groups`).
    order : sequence of int
        The models' indices in the order their names are placed (earlier names win a spot first).
    title : str
        The title over the map.
    explained : sequence of float, optional
        The share of the variance each axis holds (`similarity.mds_explained`), written in the axis labels.
    legend : sequence of str, optional
        The name of each group, shown in a legend to the right of the map.

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, on an Agg canvas.
    box : dict
        The axes in fractions of the image from its top-left corner (``"left"``, ``"top"``, ``"width"``,
        ``"height"``), and the data limits ``"xlim"`` and ``"ylim"`` as ``[low, high]``.
    """
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    n = len(xy)
    centre = (xy.max(axis=0) + xy.min(axis=0)) / 2 if n else np.zeros(2)
    half = max(float(np.ptp(xy, axis=0).max()) / 2 if n else 0.0, 1e-6) * 1.15
    lim = [centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half]
    side, margin, right = 6.0, 0.6, (2.0 if legend else 0.0)
    width, height = side + 2 * margin + right, side + 2 * margin
    fig = plots.figure((width, height), layout=None)
    box = [margin / width, margin / height, side / width, side / height]
    ax = fig.add_axes(box)
    palette = colormaps["tab10" if max(groups, default=0) < 10 else "tab20"]
    size = 36 if n <= MAX_POINT_LABELS else 14
    ax.scatter(xy[:, 0], xy[:, 1], c=[palette(int(g) % palette.N) for g in groups], s=size,
               edgecolors="white", linewidths=0.5, zorder=2)
    ax.set_xlim(lim[0], lim[1])
    ax.set_ylim(lim[2], lim[3])
    ax.set_xticks([])
    ax.set_yticks([])
    shares = list(explained) if explained is not None else []
    for k, setter in enumerate((ax.set_xlabel, ax.set_ylabel)):
        setter(f"MDS {k + 1}" + (f" ({shares[k]:.0%} of the variance)" if k < len(shares) else ""))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.2)
    if legend:
        handles = [Line2D([], [], marker="o", linestyle="", color=palette(i % palette.N), label=t)
                   for i, t in enumerate(plots.shown(legend))]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=((side + 2 * margin) / width, 0.5),
                   fontsize=8, frameon=False, title="task", title_fontsize=9)
    priority = [order[i] for i in plots.thin_labels(n, MAX_POINT_LABELS)] if n > MAX_POINT_LABELS else list(order)
    place_labels(ax, xy, labels, priority, fontsize=8 if n <= MAX_POINT_LABELS else 6,
                 marker_px=np.sqrt(size) / 2 * fig.dpi / 72)
    return fig, {**_box_from_bottom(box), "xlim": lim[:2], "ylim": lim[2:]}


def mds_png(coords: np.ndarray, labels: Sequence[str], groups: np.ndarray, order: Sequence[int], title: str,
            explained: Sequence[float] | None = None, legend: Sequence[str] | None = None) -> tuple[bytes, dict]:
    """`mds_figure` as a PNG.

    Parameters
    ----------
    coords : np.ndarray
        (N, 2) or wider MDS coordinates; the first two columns are drawn.
    labels : sequence of str
        The N model names.
    groups : np.ndarray
        (N,) int: each point's colour group (`colour_groups`).
    order : sequence of int
        The models' indices in the order their names are placed.
    title : str
        The title over the map.
    explained : sequence of float, optional
        The share of the variance each axis holds, written in the axis labels.
    legend : sequence of str, optional
        The name of each group, shown in a legend.

    Returns
    -------
    png : bytes
        The PNG (a palette of at most 256 colours, `DPI` dots per inch).
    box : dict
        The axes box and limits, as `mds_figure` gives them.
    """
    fig, box = mds_figure(coords, labels, groups, order, title, explained, legend)
    return _png(fig), box


def place_labels(ax, xy: np.ndarray, labels: Sequence[str], priority: Sequence[int], fontsize: float,
                 marker_px: float = 3.0) -> list[int]:
    """Write the names of the points in `priority` order, each where it overlaps nothing.

    Each name goes at the first of a few spots around its point where its box overlaps no name
    already written, no point and stays inside the axes; a name with no such spot is left out (the
    page shows it on hover).

    Greedy, in pixels: each name's box is measured once, then candidate offsets are tried in order
    (right-above, left-above, right-below, left-below, above, below, and the same farther out).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes the points are drawn on, with their limits set (the boxes are measured in its pixels).
    xy : np.ndarray
        (N, 2) point coordinates, in data units.
    labels : sequence of str
        The N names.
    priority : sequence of int
        Indices of the points whose names to write, in the order they claim a spot.
    fontsize : float
        Points of the names.
    marker_px : float, default 3.0
        The markers' half-side in pixels: a name keeps clear of every point by this much.

    Returns
    -------
    list of int
        The indices whose names were written, in `priority` order.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = ax.transData.transform(xy)
    obstacles = np.column_stack([points - marker_px, points + marker_px])  # (x0, y0, x1, y1) per point
    placed: list[np.ndarray] = []
    written = []
    to_points = 72.0 / ax.figure.dpi
    for i in priority:
        text = ax.annotate(plots.shown([labels[i]])[0], xy[i], textcoords="offset points", xytext=(0, 0),
                           fontsize=fontsize, color="0.2", ha="left", va="bottom", zorder=3)
        extent = text.get_window_extent(renderer)
        w, h = extent.width, extent.height
        spot = None
        for gap in (marker_px + 1.5, marker_px + 8.0):
            for dx, dy in ((gap, gap * 0.6), (-gap - w, gap * 0.6), (gap, -gap * 0.6 - h), (-gap - w, -gap * 0.6 - h),
                           (-w / 2, gap), (-w / 2, -gap - h)):
                x0, y0 = extent.x0 + dx, extent.y0 + dy  # the box at offset (0, 0), moved
                candidate = np.array([x0, y0, x0 + w, y0 + h])
                if not (frame.x0 <= candidate[0] and candidate[2] <= frame.x1 and frame.y0 <= candidate[1]
                        and candidate[3] <= frame.y1):
                    continue
                if _hits(candidate, obstacles) or (placed and _hits(candidate, np.array(placed))):
                    continue
                spot = (dx, dy, candidate)
                break
            if spot:
                break
        if spot is None:
            text.remove()
            continue
        text.xyann = (spot[0] * to_points, spot[1] * to_points)
        placed.append(spot[2])
        written.append(i)
    return written


def _hits(box: np.ndarray, others: np.ndarray, pad: float = 1.0) -> bool:
    """Whether `box` (x0, y0, x1, y1) comes within `pad` pixels of any of `others` (rows of the same)."""
    return bool(np.any((box[0] < others[:, 2] + pad) & (others[:, 0] < box[2] + pad)
                       & (box[1] < others[:, 3] + pad) & (others[:, 1] < box[3] + pad)))


def agreement_png(values: dict[str, float], title: str) -> bytes:
    """Horizontal bars: per estimator, the cophenetic correlation of its tree with the truth's.

    Parameters
    ----------
    values : dict of str to float
        Estimator -> its correlation; NaN is drawn as an empty bar marked "n/a".
    title : str
        The title over the bars.

    Returns
    -------
    bytes
        The PNG (a palette of at most 256 colours).
    """
    names = list(values)
    # The bars are at least as wide as the title and the axis label centred over them, beside the names.
    xlabel = "cophenetic correlation with the truth's tree (1 = the same tree)"
    bars = max(4.5, plots.text_width([title], 11), plots.text_width([xlabel], "medium")) + 0.3
    fig = plots.figure((max(7.0, plots.text_width(names, 8) + bars + 0.6), 0.9 + 0.32 * len(names)))
    ax = fig.add_subplot()
    shown = [0.0 if np.isnan(values[n]) else values[n] for n in names]
    ax.barh(range(len(names)), shown, color=[f"C{i % 10}" for i in range(len(names))], height=0.6)
    for i, n in enumerate(names):
        ax.text(max(shown[i], 0) + 0.01, i, "n/a" if np.isnan(values[n]) else f"{values[n]:.2f}", va="center",
                fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, min(shown, default=0.0)) - 0.05, 1.1)
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=11)
    return _png(fig)


def dendrogram_png(linkage: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """`plots.plot_dendrogram` as PNG bytes.

    Parameters
    ----------
    linkage : np.ndarray
        A scipy linkage matrix over N leaves.
    labels : sequence of str
        The N leaf names.
    title : str
        The title over the tree.

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    InputError
        An invalid linkage matrix, or not N names.
    """
    buffer = io.BytesIO()
    plots.plot_dendrogram(linkage, labels, buffer, title=title)
    return buffer.getvalue()


def curves_png(evaluation: dict) -> bytes:
    """`plots.plot_curves` as PNG bytes.

    Parameters
    ----------
    evaluation : dict
        An `evaluation.evaluation_report` dict.

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    InputError
        A report without curves to plot, or with malformed ones.
    """
    buffer = io.BytesIO()
    plots.plot_curves(evaluation, buffer)
    return buffer.getvalue()


def grid_png(images: np.ndarray, maps: dict[str, np.ndarray], max_images: int) -> bytes:
    """`plots.plot_attribution_grid` as PNG bytes.

    Parameters
    ----------
    images : np.ndarray
        (n, 3, S, S) probe images, float in [0, 1] or uint8.
    maps : dict of str to np.ndarray
        Model name -> its maps of the same images, (n, C, S, S) or flattened (n, C·S·S).
    max_images : int
        The first this many images are shown.

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    InputError
        Images or maps of the wrong shape, no maps, or `max_images` not a positive integer.
    """
    buffer = io.BytesIO()
    plots.plot_attribution_grid(images, maps, buffer, max_images=max_images)
    return buffer.getvalue()


def difference_png(difference: np.ndarray, labels: Sequence[str], title: str) -> tuple[bytes, dict]:
    """The difference matrix of two estimators (`plots.difference_figure`) as a PNG with its axes box.

    Parameters
    ----------
    difference : np.ndarray
        (N, N), in the order to draw.
    labels : sequence of str
        The N models, in that order.
    title : str
        The figure's title.

    Returns
    -------
    tuple of (bytes, dict)
        The PNG and the axes box in image fractions (left, top, width, height), for the hover.
    """
    fig, box = plots.difference_figure(difference, labels, title)
    return _png(fig), _box_from_bottom(box)


def pair_priority_png(pair: dict) -> bytes:
    """The Correlation–Priority Curves of one pair (`plots.plot_pair_priority`) as a PNG.

    Parameters
    ----------
    pair : dict
        One pair as `evaluation.PairComparison.to_dict` writes it.

    Returns
    -------
    bytes
        The PNG.
    """
    buffer = io.BytesIO()
    plots.plot_pair_priority(pair, buffer)
    return buffer.getvalue()


def oracle_priority_png(curves: dict) -> bytes:
    """The oracle's ranking against each estimator's similarity (`plots.plot_oracle_priority`) as a PNG.

    Parameters
    ----------
    curves : dict
        Estimator id -> its curve as `evaluation.PriorityCurve.to_dict` writes it.

    Returns
    -------
    bytes
        The PNG.
    """
    buffer = io.BytesIO()
    plots.plot_oracle_priority(curves, buffer)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so the page needs no file beside it and no network.

    Parameters
    ----------
    png : bytes
        The image.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``.
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --------------------------------------------------------------------------- helpers


def _png(fig) -> bytes:
    return plots.compact_png(fig, dpi=DPI)


def _box_from_bottom(box: list[float]) -> dict:
    """Matplotlib's axes box (left, bottom, width, height) as the page's (left, top, width, height)."""
    left, bottom, width, height = box
    return {"left": left, "top": 1.0 - bottom - height, "width": width, "height": height}


def _label_width(labels: Sequence[str], ticks: Sequence[int], font: float) -> float:
    """Inches that the widest drawn label needs."""
    return plots.text_width([labels[i] for i in ticks], font) + 0.1
