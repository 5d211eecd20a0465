"""Report figures as PNG files: affinity heatmap, similarity dendrogram, attribution grid, P@K/R@K.

Figures are drawn on the Agg canvas through matplotlib's object API (`Figure`), never through
pyplot: nothing needs a display, no global figure list fills up in long runs, and the caller's
own pyplot backend (a notebook's, say) is left untouched. Every PNG is written with a palette of
at most 256 colours (`compact_png`): a figure of flat colours loses nothing visible and shrinks
three- to fivefold, which keeps the report page small. Model names are written with their control
characters escaped (`shown`), as on the terminal.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator
from scipy.cluster import hierarchy

from ..errors import InputError, check_int, printable
from ..evaluation import target_scores

MAX_TICK_LABELS = 60
"""At most this many model names label a heatmap axis; beyond, every k-th one shows (the page's
hover shows all)."""


def shown(names: Sequence) -> list[str]:
    """Names as a figure writes them: control characters escaped (`errors.printable`), which no font draws.

    Parameters
    ----------
    names : sequence
        The names (any objects: each is written as its ``str``).

    Returns
    -------
    list of str
        The names, escaped, in the same order.
    """
    return [printable(str(name)) for name in names]


def thin_labels(n: int, max_labels: int = MAX_TICK_LABELS) -> list[int]:
    """Indices of the labels to draw on an axis of n items: all, or every k-th one (k smallest that fits).

    Parameters
    ----------
    n : int
        The number of items on the axis.
    max_labels : int, default `MAX_TICK_LABELS`
        The most labels to draw.

    Returns
    -------
    list of int
        ``0, k, 2k, ...`` below `n`, at most `max_labels` of them.

    Raises
    ------
    InputError
        A negative `n`, or `max_labels` below 1.
    """
    if n < 0 or max_labels < 1:
        raise InputError(f"thin_labels: n must be ≥ 0 and max_labels ≥ 1, got {n}, {max_labels}")
    step = max(1, math.ceil(n / max_labels))
    return list(range(0, n, step))


GRID_FONT = 9
"""Points of the model names beside an attribution grid's rows."""

DIAGONAL_COLOUR = "0.8"
"""The heatmap's diagonal (1 by definition) is drawn in this grey, outside the colour scale."""


def off_diagonal_range(a: np.ndarray) -> tuple[float, float]:
    """The colour range of an affinity heatmap: the off-diagonal values only.

    The diagonal (1 by definition) would otherwise take the top of the scale and squeeze every real
    difference into a few shades; it is drawn grey instead (`draw_affinity`), so it is never mistaken
    for the top off-diagonal value.

    Parameters
    ----------
    a : np.ndarray
        An (N, N) affinity matrix.

    Returns
    -------
    low, high : float
        The smallest and largest off-diagonal values; the whole matrix's (NaN ignored) when there is
        no off-diagonal value, one is not finite, or they are all equal.
    """
    off = a[~np.eye(len(a), dtype=bool)]
    if off.size == 0 or not np.isfinite(off).all() or off.max() <= off.min():
        return float(np.nanmin(a)), float(np.nanmax(a))
    return float(off.min()), float(off.max())


def plot_heatmap(affinity: np.ndarray, names: Sequence[str], path: str | Path,
                 order: Sequence[int] | None = None, title: str = "Attribution affinity") -> Path:
    """Draw the affinity matrix as a heatmap PNG, rows and columns in `order` (e.g. the tree's leaf order).

    Parameters
    ----------
    affinity : np.ndarray
        An (N, N) affinity matrix.
    names : sequence of str
        The N model names, in the matrix's order.
    path : str or Path
        Where to write the PNG (its folder is created); a writable binary buffer is accepted too, and
        returned.
    order : sequence of int, optional
        A permutation of ``0..N-1``: the order to draw the models in. By default, the matrix's.
    title : str, default "Attribution affinity"
        The title over the heatmap.

    Returns
    -------
    Path
        The PNG's path.

    Raises
    ------
    InputError
        A non-square matrix, not N names, or an `order` that is not a permutation of ``0..N-1``.
    """
    a = np.asarray(affinity, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"affinity: expected a square matrix, got shape {a.shape}")
    n = a.shape[0]
    _check_names(names, n, "affinity")
    idx = np.arange(n) if order is None else _checked_order(order, n)
    a = a[np.ix_(idx, idx)]
    labels = shown(names[i] for i in idx)

    side = min(4.0 + 0.12 * n, 24.0)
    fig = figure((max(side + 1.5, text_width([title], "large") + 0.5), side))  # no narrower than its title
    ax = fig.add_subplot()
    image = draw_affinity(ax, a)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="affinity (diagonal grey)")
    ticks = thin_labels(n)
    size = font_size(len(ticks))
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=size)
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=size)
    fig.suptitle(title, fontsize="large")  # centred on the figure, which is at least as wide
    return _save(fig, path)


def draw_affinity(ax, a: np.ndarray, aspect: str = "equal"):
    """Draw an affinity matrix on `ax`, its colour scale over the off-diagonal range.

    The diagonal is drawn in `DIAGONAL_COLOUR`, so no value is clipped to another's colour.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to draw on.
    a : np.ndarray
        An (N, N) affinity matrix.
    aspect : str, default "equal"
        matplotlib's ``imshow`` aspect (``"auto"`` fills the axes).

    Returns
    -------
    matplotlib.image.AxesImage
        The image, for a colour bar.
    """
    low, high = off_diagonal_range(a)
    diagonal = np.eye(len(a), dtype=bool) if len(a) > 1 else np.zeros_like(a, dtype=bool)
    cmap = colormaps["viridis"].with_extremes(bad=DIAGONAL_COLOUR)
    return ax.imshow(np.ma.masked_array(a, mask=diagonal), cmap=cmap, interpolation="nearest", aspect=aspect,
                     vmin=low, vmax=high)


def plot_dendrogram(linkage: np.ndarray, names: Sequence[str], path: str | Path,
                    title: str = "Model similarity tree") -> Path:
    """Draw the tree horizontally as a PNG (leaves on the right, names written left to right).

    Parameters
    ----------
    linkage : np.ndarray
        A scipy linkage matrix over N leaves (`similarity.similarity_tree`).
    names : sequence of str
        The N leaf names, in the order of the linkage's leaves.
    path : str or Path
        Where to write the PNG (its folder is created); a writable binary buffer is accepted too, and
        returned.
    title : str, default "Model similarity tree"
        The title over the tree.

    Returns
    -------
    Path
        The PNG's path.

    Raises
    ------
    InputError
        An invalid linkage matrix, or not N names.
    """
    z = np.asarray(linkage, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 4 or not hierarchy.is_valid_linkage(z, throw=False):
        raise InputError(f"linkage: not a valid scipy linkage matrix (shape {z.shape})")
    n = z.shape[0] + 1
    _check_names(names, n, "linkage")
    labels = shown(names)
    # the title is centred over the tree, beside the names: the tree is at least as wide as the title
    tree = max(5.0, text_width([title], "large") + 0.3)
    fig = figure((max(8.0, tree + text_width(labels, font_size(n)) + 0.8), min(2.0 + 0.22 * n, 60.0)))
    ax = fig.add_subplot()
    hierarchy.dendrogram(z, labels=labels, orientation="left", ax=ax, leaf_font_size=font_size(n), color_threshold=0)
    ax.set_xlabel("1 − affinity")
    ax.set_title(title)
    return _save(fig, path)


def plot_attribution_grid(images: np.ndarray, maps: Mapping[str, np.ndarray], path: str | Path,
                          max_images: int = 6, signed: bool = False) -> Path:
    """The paper's Figure 2: probe images on top, one row of attribution heatmaps per model.

    Every map of the grid shares one colour scale, shown by a colour bar: the stored maps are unit
    vectors, so the colours compare models and images too, not only places within one map. The
    scale's top is the 99.5th percentile of the grid's values (`shared_scale`: a few hot pixels do
    not blank the rest); brighter pixels take the top colour.

    Parameters
    ----------
    images : np.ndarray
        (n, 3, S, S) float in [0, 1] (uint8 in [0, 255] is accepted too).
    maps : mapping of str to np.ndarray
        Model name -> its maps for the same images, (n, C, S, S) or flattened (n, C·S·S).
    path : str or Path
        Where to write the PNG (its folder is created); a writable binary buffer is accepted too, and
        returned.
    max_images : int, default 6
        The first this many images are shown.
    signed : bool, default False
        Sum the channels keeping the sign (blue-white-red); by default Σ|·| (dark-to-hot).

    Returns
    -------
    Path
        The PNG's path.

    Raises
    ------
    InputError
        Images not (n, 3, S, S) with n >= 1 or not finite, no maps, maps that do not match the images,
        or `max_images` not a positive integer.
    """
    imgs = _checked_images(images)
    if not maps:
        raise InputError("maps: expected at least one model's maps")
    check_int(max_images, "max_images")
    n_show = min(len(imgs), max_images)
    rows = {name: _heat(_checked_maps(m, name, imgs.shape), signed)[:n_show]
            for name, m in maps.items()}
    labels = ["image", *shown(rows)]
    top = shared_scale(list(rows.values()))

    # A fixed layout: the constrained solver takes seconds on a grid of a hundred small images. A cell is
    # as many pixels as the probe image has (48 to 112): upsampled noise would only make the file larger.
    # The names, right-aligned beside their rows, take the left margin: as wide as the widest is drawn.
    cell, bar, pad = float(np.clip(imgs.shape[-1], 48, 112)) / 100.0, 0.9, 0.1
    left = text_width(labels, GRID_FONT) + 0.15
    width, height = cell * n_show + left + 0.1 + bar, cell * (len(rows) + 1) + 2 * pad
    fig = figure((width, height), layout=None)
    fig.subplots_adjust(left=left / width, right=1.0 - bar / width, bottom=pad / height, top=1 - pad / height,
                        wspace=0.04, hspace=0.04)
    axes = fig.subplots(len(rows) + 1, n_show, squeeze=False)
    for c in range(n_show):
        axes[0, c].imshow(np.clip(imgs[c].transpose(1, 2, 0), 0.0, 1.0), interpolation="nearest")
    image = None
    for r, (name, heat) in enumerate(rows.items(), start=1):
        for c in range(n_show):
            cmap, low = ("bwr", -top) if signed else ("hot", 0.0)
            image = axes[r, c].imshow(heat[c], cmap=cmap, vmin=low, vmax=top, interpolation="nearest")
    for r, label in enumerate(labels):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=GRID_FONT)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    cax = fig.add_axes([1.0 - (bar - 0.12) / width, pad / height, 0.14 / width,
                        cell * len(rows) / height])  # beside the map rows, not the image row
    fig.colorbar(image, cax=cax, extend="both" if signed else "max")
    cax.tick_params(labelsize=7)
    cax.set_ylabel("Σ channels (signed)" if signed else "Σ|channels|", fontsize=8)
    return _save(fig, path)


def shared_scale(heats: Sequence[np.ndarray], percentile: float = 99.5) -> float:
    """The top of a grid's one colour scale: the `percentile` of every |value| in it.

    Parameters
    ----------
    heats : sequence of np.ndarray
        The grid's heatmaps, any shapes.
    percentile : float, default 99.5
        The percentile of the absolute values taken as the top.

    Returns
    -------
    float
        The percentile; the largest |value| when the percentile is 0, and 1 when every value is 0.
    """
    values = np.abs(np.concatenate([np.ravel(h) for h in heats])) if heats else np.zeros(1)
    top = float(np.percentile(values, percentile)) if values.size else 0.0
    if top <= 0:
        top = float(values.max()) if values.size else 0.0
    return top if top > 0 else 1.0


def plot_curves(report: Mapping, path: str | Path, k_max: int | None = None) -> Path:
    """P@K and R@K side by side for every method of an `evaluation_report` dict.

    Random and oracle references are dashed. Each estimator has its own colour, marker and line
    style, so coinciding curves stay apart; with per-target details in the report, a band shows the
    interquartile range over targets around each estimator's mean (`target_quartiles`).

    Parameters
    ----------
    report : mapping
        An `evaluation.evaluation_report` dict: ``"methods"`` (name -> ``{"ks", "precision",
        "recall"}``), optionally ``"random"``, ``"oracle"`` and ``"per_target"``.
    path : str or Path
        Where to write the PNG (its folder is created); a writable binary buffer is accepted too, and
        returned.
    k_max : int, optional
        Cut the K axis here; by default every K of the report.

    Returns
    -------
    Path
        The PNG's path.

    Raises
    ------
    InputError
        A report with no ``"methods"`` mapping or no curves, curves without ``"ks"``, ``"precision"``
        or ``"recall"`` or with lists of different lengths, or `k_max` not a positive integer.
    """
    methods = _checked_report(report)
    check_int(k_max, "k_max", optional=True)
    per_target = report.get("per_target") or {}
    lines = [(name, c, _STYLES[i % len(_STYLES)], f"C{i % 10}", _MARKERS[i % len(_MARKERS)])
             for i, (name, c) in enumerate(methods.items())]
    lines += [(ref, report[ref], "--", colour, None) for ref, colour in _REFERENCES if ref in report]

    fig = figure((11.0, 4.2))
    ax_p, ax_r = fig.subplots(1, 2)
    for name, curves, style, colour, marker in lines:
        ks = np.asarray(curves["ks"])
        keep = ks <= k_max if k_max is not None else np.ones(len(ks), dtype=bool)
        spread = target_quartiles(per_target.get(name), ks) if name in methods else None
        for ax, key in ((ax_p, "precision"), (ax_r, "recall")):
            ax.plot(ks[keep], np.asarray(curves[key])[keep], linestyle=style, marker=marker, markersize=4,
                    markerfacecolor="none", color=colour, label=name, linewidth=1.3)
            if spread is not None:
                low, high = spread[key]
                ax.fill_between(ks[keep], low[keep], high[keep], color=colour, alpha=0.08, linewidth=0)
    for ax, label in ((ax_p, "P@K"), (ax_r, "R@K")):
        ax.set_xlabel("K")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_ylim(0.0, 1.05)
        ax.grid(alpha=0.3)
    ax_r.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def target_quartiles(details: Mapping | None, ks: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The 25th and 75th percentiles over targets of P@K and R@K at each K in `ks`.

    Parameters
    ----------
    details : mapping or None
        One estimator's per-target details, as `evaluation.evaluate` gives them (read through
        `evaluation.target_scores`).
    ks : np.ndarray
        The cut-offs.

    Returns
    -------
    dict or None
        ``{"precision": (q25, q75), "recall": (q25, q75)}``, each array as long as `ks`; None when
        there are no details.
    """
    if not details:
        return None
    out = {}
    for metric in ("precision", "recall"):
        table = np.array([list(target_scores(details, metric, int(k)).values()) for k in ks], dtype=np.float64)
        out[metric] = (np.percentile(table, 25, axis=1), np.percentile(table, 75, axis=1))
    return out


def difference_figure(difference: np.ndarray, names: Sequence[str], title: str) -> tuple[Figure, list[float]]:
    """The difference of two normalised matrices on a diverging colour scale centred on 0.

    A fixed layout (no layout engine), so that the page knows where each cell lands.

    Parameters
    ----------
    difference : np.ndarray
        (N, N), already in the order to draw (the tree's), 0 on the diagonal.
    names : sequence of str
        The N models, in that order.
    title : str
        The figure's title.

    Returns
    -------
    tuple of (Figure, list of float)
        The figure and its axes box (left, bottom, width, height) in figure fractions.

    Raises
    ------
    InputError
        A non-square matrix or names of the wrong length.
    """
    d = np.asarray(difference, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise InputError(f"difference: expected a square matrix, got shape {d.shape}")
    n = len(d)
    _check_names(names, n, "difference")
    labels = shown(names)
    ticks = thin_labels(n)
    font = font_size(len(ticks))
    label_in = text_width([labels[i] for i in ticks], font) + 0.25
    side = float(np.clip(3.0 + 0.06 * n, 4.0, 8.0))
    over = text_width([title], 11) / 2 - side / 2 + 0.1
    left, right, top, bottom = max(label_in, over), max(1.3, over), 0.45, label_in
    width, height = left + side + right, top + side + bottom
    fig = figure((width, height), layout=None)
    box = [left / width, bottom / height, side / width, side / height]
    ax = fig.add_axes(box)
    off = d[~np.eye(n, dtype=bool)]
    reach = float(np.abs(off).max()) if off.size and np.abs(off).max() > 0 else 1.0
    cmap = colormaps["RdBu_r"].with_extremes(bad=DIAGONAL_COLOUR)
    image = ax.imshow(np.ma.masked_array(d, mask=np.eye(n, dtype=bool)), cmap=cmap, vmin=-reach, vmax=reach,
                      interpolation="nearest", aspect="auto")
    ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90, fontsize=font)
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=font)
    if n <= 12:  # a handful of models: the values themselves
        for i in range(n):
            for j in range(n):
                if i != j:
                    ax.text(j, i, f"{d[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(d[i, j]) > reach * 0.6 else "black")
    ax.set_title(title, fontsize=11)
    cax = fig.add_axes([(left + side + 0.15) / width, bottom / height, 0.18 / width, side / height])
    fig.colorbar(image, cax=cax, label="B − A, normalised (diagonal grey)")
    return fig, box


def plot_difference(difference: np.ndarray, names: Sequence[str], path: str | Path | BinaryIO,
                    title: str = "Difference of the normalised matrices") -> Path | BinaryIO:
    """Draw `difference_figure` to a PNG file or buffer.

    Parameters
    ----------
    difference : np.ndarray
        (N, N), in the order to draw.
    names : sequence of str
        The N models, in that order.
    path : path or binary buffer
        Where the PNG goes.
    title : str
        The figure's title.

    Returns
    -------
    Path or buffer
        `path`.
    """
    fig, _ = difference_figure(difference, names, title)
    return _save(fig, path)


def plot_priority(curves: Mapping[str, Mapping], path: str | Path | BinaryIO, title: str,
                  ylabel: str = "ρ", chance: float | None = None) -> Path | BinaryIO:
    """Correlation–Priority Curves, each with its bootstrap band over targets.

    Parameters
    ----------
    curves : mapping of str to mapping
        Legend label -> a curve as `evaluation.PriorityCurve.to_dict` writes it (``"priorities"``,
        ``"mean"``, ``"low"``, ``"high"``); a label starting with "oracle" is drawn black, one ending
        with "(own ranking)" dashed.
    path : path or binary buffer
        Where the PNG goes.
    title : str
        The figure's title.
    ylabel : str
        What ρ is.
    chance : float, optional
        The value under a random order, drawn as a grey dotted line.

    Returns
    -------
    Path or buffer
        `path`.

    Raises
    ------
    InputError
        No curve, or a curve whose lists differ in length.
    """
    if not curves:
        raise InputError("curves: no curve to plot")
    # the legend beside the axes, never over the curves
    legend_in = text_width(shown(curves), 8) + 0.9
    fig = figure((max(7.0, text_width([title], 11) + 1.0) + legend_in, 4.2))
    ax = fig.add_subplot()
    colour = 0
    for label, c in curves.items():
        p, mean, low, high = (np.asarray(c[k], dtype=np.float64) for k in ("priorities", "mean", "low", "high"))
        if not len(p) == len(mean) == len(low) == len(high):
            raise InputError(f"curves[{label!r}]: lists of different lengths")
        if label.startswith("oracle"):
            col = "black"
        else:
            col, colour = f"C{colour % 10}", colour + 1
        style = "--" if label.endswith("(own ranking)") else "-"
        ax.plot(p, mean, linestyle=style, marker=_MARKERS[colour % len(_MARKERS)] if style == "-" else None,
                markersize=3, color=col, label=shown([label])[0], linewidth=1.3)
        ax.fill_between(p, low, high, color=col, alpha=0.12, linewidth=0)
    if chance is not None:
        ax.axhline(chance, color="0.5", linestyle=":", linewidth=1.2, label="random order")
    ax.set_xlabel("priority p (the source's position in the ranking)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def plot_pair_priority(pair: Mapping, path: str | Path | BinaryIO) -> Path | BinaryIO:
    """The CPC figure of one pair: B's similarity along A's ranking, B's own and the oracle's.

    Parameters
    ----------
    pair : mapping
        One pair as `evaluation.PairComparison.to_dict` writes it.
    path : path or binary buffer
        Where the PNG goes.

    Returns
    -------
    Path or buffer
        `path`.
    """
    a, b, c = pair["ranking"], pair["similarity"], pair["curves"]
    shown_curves = {f"ranked by {a}": c["ranking"], f"ranked by {b} (own ranking)": c["self"]}
    if "oracle" in c:
        shown_curves["oracle's ranking (measured transfers)"] = c["oracle"]
    return plot_priority(shown_curves, path, f"Correlation–Priority Curve · ρ: {b}", ylabel=f"ρ by {b}",
                         chance=c["ranking"]["chance"])


def plot_oracle_priority(curves: Mapping[str, Mapping], path: str | Path | BinaryIO) -> Path | BinaryIO:
    """The CPC of the ground truth's ranking against each estimator's normalised matrix.

    Parameters
    ----------
    curves : mapping of str to mapping
        Estimator id -> its curve (`evaluation.PriorityCurve.to_dict`).
    path : path or binary buffer
        Where the PNG goes.

    Returns
    -------
    Path or buffer
        `path`.
    """
    return plot_priority(dict(curves), path, "Each similarity along the oracle's ranking",
                         ylabel="similarity, min–max normalised")


# --------------------------------------------------------------------------- helpers

_REFERENCES = (("random", "0.5"), ("oracle", "black"))  # grey and black: apart from the methods
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_STYLES = ("-", "-.", ":", (0, (5, 1)))  # cycled apart from the markers: no two estimators look alike


def figure(size: tuple[float, float], layout: str | None = "constrained") -> Figure:
    """A figure on its own Agg canvas, outside pyplot (no display, no global figure list).

    Parameters
    ----------
    size : tuple of float
        (width, height) in inches.
    layout : str or None, default "constrained"
        matplotlib's layout engine; None places the axes where the caller puts them.

    Returns
    -------
    Figure
        The figure, at 100 dots per inch.
    """
    fig = Figure(figsize=size, dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def compact_png(fig: Figure, dpi: float | None = None) -> bytes:
    """The figure as a PNG of at most 256 colours (a palette image), compressed as far as zlib goes.

    Matplotlib's own PNG is 32-bit RGBA; a figure's flat fills, lines and colour maps (256 entries)
    need no more than a palette, and the file shrinks three- to fivefold.

    Parameters
    ----------
    fig : Figure
        The figure.
    dpi : float, optional
        Dots per inch; by default the figure's own.

    Returns
    -------
    bytes
        The PNG.
    """
    from PIL import Image

    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=dpi)
    image = Image.open(io.BytesIO(raw.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, format="PNG",
                                                                                      optimize=True)
    return out.getvalue()


def _save(fig: Figure, path: str | Path | BinaryIO) -> Path | BinaryIO:
    png = compact_png(fig)
    if hasattr(path, "write"):  # a buffer: the HTML report embeds the PNG without a file
        path.write(png)
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def text_width(texts: Sequence[str], size: float | str) -> float:
    """Inches that the widest of `texts` takes at a font size, as the Agg canvas draws it.

    Figures size their margins by it, so no name is cut.

    Parameters
    ----------
    texts : sequence of str
        The texts.
    size : float or str
        The font size: points, or a name such as ``"large"``.

    Returns
    -------
    float
        The widest text's width in inches; 0 for no text.
    """
    renderer = RendererAgg(1, 1, 72)  # at 72 dpi a pixel is a point
    font = FontProperties(size=size)
    widths = [renderer.get_text_width_height_descent(str(t), font, ismath=False)[0] for t in texts]
    return max(widths, default=0.0) / 72.0


def font_size(n_labels: int) -> float:
    """The font size of an axis's labels: from 10 pt for a handful of labels to 5 pt for a crowded axis.

    Parameters
    ----------
    n_labels : int
        The number of labels drawn on the axis.

    Returns
    -------
    float
        Points, 10 − n_labels / 12 clipped to [5, 10].
    """
    return float(np.clip(10.0 - n_labels / 12.0, 5.0, 10.0))


def _check_names(names: Sequence[str], n: int, what: str) -> None:
    if isinstance(names, str) or len(names) != n:
        got = 1 if isinstance(names, str) else len(names)
        raise InputError(f"names: {got} names for the {n} models of {what}")


def _checked_order(order: Sequence[int], n: int) -> np.ndarray:
    idx = np.asarray(order)
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer) \
            or not np.array_equal(np.sort(idx), np.arange(n)):
        raise InputError(f"order: expected a permutation of 0..{n - 1}")
    return idx


def _checked_images(images: np.ndarray) -> np.ndarray:
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[1] != 3 or imgs.shape[2] != imgs.shape[3] or len(imgs) == 0:
        raise InputError(f"images: expected shape (n, 3, S, S) with n ≥ 1, got {imgs.shape}")
    if imgs.dtype == np.uint8:
        return imgs.astype(np.float32) / 255.0
    imgs = imgs.astype(np.float32)
    if not np.all(np.isfinite(imgs)):
        raise InputError("images: NaN or infinite pixel values")
    return imgs


def _checked_maps(maps: np.ndarray, name: str, image_shape: tuple) -> np.ndarray:
    """Return model `name`'s maps as (n, C, S, S), accepting the store's flattened rows."""
    m = np.asarray(maps, dtype=np.float32)
    n, _, s, _ = image_shape
    if m.ndim == 2 and m.shape[0] == n and m.shape[1] % (s * s) == 0 and m.shape[1] > 0:
        m = m.reshape(n, -1, s, s)
    if m.ndim != 4 or m.shape[0] != n or m.shape[2:] != (s, s):
        raise InputError(f"maps[{name!r}]: shape {m.shape} does not match {n} images of "
                         f"{s}×{s} (expected (n, C, S, S) or (n, C·S·S))")
    return m


def _heat(maps: np.ndarray, signed: bool) -> np.ndarray:
    """Channel sum per map (|.| or signed), unscaled: the grid shares one scale (`shared_scale`)."""
    heat = maps.sum(axis=1) if signed else np.abs(maps).sum(axis=1)
    return np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0)


def _checked_report(report: Mapping) -> dict:
    if not isinstance(report, Mapping) or not isinstance(report.get("methods"), Mapping):
        raise InputError("report: expected an evaluation_report dict with a 'methods' mapping")
    curves = {**report["methods"], **{r: report[r] for r in ("random", "oracle") if r in report}}
    if not curves:
        raise InputError("report: no curves to plot")
    for name, c in curves.items():
        if not isinstance(c, Mapping) or not all(k in c for k in ("ks", "precision", "recall")):
            raise InputError(f"report: curves {name!r} lack 'ks', 'precision' or 'recall'")
        if not len(c["ks"]) == len(c["precision"]) == len(c["recall"]):
            raise InputError(f"report: curves {name!r} have lists of different lengths")
    return dict(report["methods"])
