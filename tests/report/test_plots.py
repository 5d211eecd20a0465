"""Report figures: valid PNGs for small and large zoos, clear errors on mismatched input."""

import numpy as np
import pytest
from PIL import Image

from modelspace.report import plots
from modelspace.errors import InputError
from modelspace.evaluation import evaluation_report, oracle_curves, random_curves
from modelspace.similarity import leaf_order, similarity_tree
from support.reports import capture_figures, texts_outside


def affinity(n, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def assert_png(path, returned):
    assert returned == path and path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 0 and im.size[1] > 0
        return im.size


@pytest.mark.parametrize("n", [3, 120])
def test_heatmap_and_dendrogram(tmp_path, n):
    a = affinity(n)
    names = [f"model_{i}" for i in range(n)]
    z = similarity_tree(a)
    heat = tmp_path / f"heat{n}.png"
    assert_png(heat, plots.plot_heatmap(a, names, heat, order=leaf_order(z)))
    tree = tmp_path / f"tree{n}.png"
    assert_png(tree, plots.plot_dendrogram(z, names, tree))


def test_heatmap_thins_tick_labels(tmp_path, monkeypatch):
    # Capture the axes' tick labels by wrapping the save step.
    seen = {}

    def capture(fig, path):
        ax = fig.axes[0]
        seen["x"] = [t.get_text() for t in ax.get_xticklabels()]
        return original(fig, path)

    original = plots._save
    monkeypatch.setattr(plots, "_save", capture)
    names = [f"m{i}" for i in range(120)]
    plots.plot_heatmap(affinity(120), names, tmp_path / "h.png")
    assert len(seen["x"]) == 60 and seen["x"][:3] == ["m0", "m2", "m4"]  # every 2nd of 120
    order = list(range(2, -1, -1))
    plots.plot_heatmap(affinity(3), ["a", "b", "c"], tmp_path / "h3.png", order=order)
    assert seen["x"] == ["c", "b", "a"]  # all shown, in the given order


def test_attribution_grid(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(8, 3, 16, 16)).astype(np.float32)
    maps = {"resnet": rng.normal(size=(8, 3, 16, 16)), "vit": np.zeros((8, 3, 16, 16)),
            "flat": rng.normal(size=(8, 3 * 16 * 16))}
    path = tmp_path / "grid.png"
    size = assert_png(path, plots.plot_attribution_grid(images, maps, path, max_images=4))
    signed = tmp_path / "grid_signed.png"
    size2 = assert_png(signed, plots.plot_attribution_grid(
        (images * 255).astype(np.uint8), maps, signed, max_images=10, signed=True))
    assert size2[0] > size[0]  # 8 columns are wider than 4


def test_heat_sums_channels_and_a_grid_shares_one_scale():
    m = np.zeros((2, 3, 2, 2))
    m[0, 0, 0, 0] = 4.0
    m[0, 1, 0, 0] = -2.0
    m[0, 2, 1, 1] = 1.0
    absolute = plots._heat(m, signed=False)
    np.testing.assert_allclose(absolute[0], [[6.0, 0.0], [0.0, 1.0]])  # not rescaled per map
    np.testing.assert_allclose(absolute[1], 0.0)
    np.testing.assert_allclose(plots._heat(m, signed=True)[0], [[2.0, 0.0], [0.0, 1.0]])
    # One scale for the grid: a weak map stays dim beside a strong one instead of being stretched to white.
    assert plots.shared_scale([absolute], percentile=100) == 6.0
    assert plots.shared_scale([np.zeros((2, 2))]) == 1.0  # an all-zero grid still has a scale


def test_attribution_grid_has_one_colour_bar(tmp_path, monkeypatch):
    seen = {}
    original = plots._save

    def capture(fig, path):
        images = [im for ax in fig.axes for im in ax.get_images()]
        seen["limits"] = {im.get_clim() for im in images if im.get_cmap().name == "hot"}
        seen["axes"] = len(fig.axes)
        return original(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    rng = np.random.default_rng(0)
    maps = {"strong": rng.normal(size=(3, 3, 8, 8)) * 10, "weak": rng.normal(size=(3, 3, 8, 8))}
    plots.plot_attribution_grid(rng.uniform(size=(3, 3, 8, 8)), maps, tmp_path / "g.png", max_images=3)
    assert len(seen["limits"]) == 1  # every map on the same scale
    assert seen["axes"] == 3 * 3 + 1  # the images, the two model rows, and one colour bar


def test_curves(tmp_path):
    report = evaluation_report({"attribution": oracle_curves(19), "worse": random_curves(19)}, 19)
    path = tmp_path / "sub" / "curves.png"
    assert_png(path, plots.plot_curves(report, path))
    assert_png(path, plots.plot_curves(report, path, k_max=10))


def test_mismatched_inputs_are_rejected(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(InputError, match="names"):
        plots.plot_heatmap(affinity(4), ["a", "b"], out)
    with pytest.raises(InputError, match="square"):
        plots.plot_heatmap(np.ones((3, 4)), ["a", "b", "c"], out)
    with pytest.raises(InputError, match="order"):
        plots.plot_heatmap(affinity(3), ["a", "b", "c"], out, order=[0, 0, 1])
    with pytest.raises(InputError, match="names"):
        plots.plot_dendrogram(similarity_tree(affinity(4)), ["a"], out)
    images = np.zeros((2, 3, 8, 8))
    with pytest.raises(InputError, match="images"):
        plots.plot_attribution_grid(np.zeros((2, 1, 8, 8)), {"m": np.zeros((2, 3, 8, 8))}, out)
    with pytest.raises(InputError, match=r"maps\['m'\]"):
        plots.plot_attribution_grid(images, {"m": np.zeros((2, 3, 4, 4))}, out)
    with pytest.raises(InputError, match=r"maps\['m'\]"):
        plots.plot_attribution_grid(images, {"m": np.zeros((3, 3, 8, 8))}, out)
    with pytest.raises(InputError, match="report"):
        plots.plot_curves({"random": {}}, out)
    assert not out.exists()


def test_heatmap_colour_range_leaves_out_the_diagonal():
    from modelspace.report.plots import off_diagonal_range

    a = np.array([[1.0, 0.2, 0.5], [0.2, 1.0, 0.3], [0.5, 0.3, 1.0]])
    assert off_diagonal_range(a) == (0.2, 0.5)
    flat = np.array([[1.0, 0.4], [0.4, 1.0]])  # nothing to spread: the full range
    assert off_diagonal_range(flat) == (0.4, 1.0)


# ------------------------------------------------------------------ every text inside its figure

LONG_NAMES = [f"{task}@seed{i % 3}" for i, task in enumerate(
    ["segment_semantic", "depth_euclidean", "surface_normals", "keypoints2d", "edge_occlusion", "reshading",
     "curvature", "autoencoding", "class_object", "room_layout", "a_long_hub_organisation/vit_base_patch16_224"]
    * 4)][:37]
LONG_IDS = ["fusion(members=('dds','rsa','gradient_x_input_subspace'))", "gradient_x_input_subspace(baseline='blur')",
            "dds"]


def test_every_text_of_every_figure_lies_inside_it(monkeypatch):
    # Long names (a hub organisation's, a seed twin's) and long estimator ids in titles: the trial cut
    # "segment_semantic@seed1" in the grid and the agreement chart's title and axis label.
    from io import BytesIO

    from modelspace.report import figures as figs
    from modelspace.similarity import classical_mds, clusters

    drawn = capture_figures(monkeypatch)
    a = affinity(len(LONG_NAMES))
    z = similarity_tree(a)
    rng = np.random.default_rng(0)
    figs.dendrogram_png(z, LONG_NAMES, f"Similarity tree · {LONG_IDS[0]}")
    figs.dendrogram_png(similarity_tree(affinity(3)), LONG_NAMES[-3:], f"Estimated tree · {LONG_IDS[0]}")
    figs.heatmap_png(a[np.ix_(leaf_order(z), leaf_order(z))], [LONG_NAMES[i] for i in leaf_order(z)], "Affinity · x")
    plots.plot_heatmap(a, LONG_NAMES, BytesIO(), title=f"Attribution affinity · {LONG_IDS[1]}")
    figs.grid_png(rng.random((6, 3, 16, 16)), {n: rng.random((6, 3, 16, 16)) for n in LONG_NAMES[:8]}, 6)
    title = "Agreement of each estimated tree with the truth's"
    figs.agreement_png(dict(zip(LONG_IDS, [0.5, float("nan"), -0.1])), title)
    figs.agreement_png({"saliency": 0.9, "dds": 0.7}, title)
    figs.mds_png(classical_mds(a), LONG_NAMES, clusters(z, len(LONG_NAMES)), leaf_order(z), f"Model space · {LONG_IDS[0]}")
    report = evaluation_report({name: oracle_curves(19) for name in LONG_IDS} | {"worse": random_curves(19)}, 19)
    figs.curves_png(report)
    assert len(drawn) == 9
    for fig in drawn:
        assert texts_outside(fig) == [], fig.axes[0].get_title()

