"""The HTML report without a browser: its sections, its images, its data, MDS, label thinning, the CLI."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image
from support.reports import TASKS, TRUTH, large_report, toy_space

from modelspace.cli import main
from modelspace.errors import InputError
from modelspace.results import MethodResult
from modelspace.report import (
    ReportData,
    from_folder,
    from_space,
    write_report,
)
from modelspace.report.page import matrix_from_hover
from modelspace.report.plots import MAX_TICK_LABELS, thin_labels
from modelspace.similarity import classical_mds

pytestmark = pytest.mark.slow  # end to end, each test a run or several: the fast loop leaves the file out


class _Parts(HTMLParser):
    """Images, section ids, JSON blocks and every src/href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.sections, self.links, self.blocks, self._block = [], [], [], {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "script" and attrs.get("type") == "application/json":
            self._block = attrs["id"]

    def handle_data(self, data):
        if self._block:
            self.blocks[self._block] = json.loads(data)
            self._block = None


def parse(path: Path) -> _Parts:
    parts = _Parts()
    parts.feed(path.read_text(encoding="utf-8"))
    return parts


def decoded(img: dict) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix), img["src"][:40]
    image = Image.open(io.BytesIO(base64.b64decode(img["src"][len(prefix):])))
    image.load()  # decodes the whole PNG: a truncated one raises here
    return image


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    space = toy_space(root / "store")
    space.save(root / "out")
    return space, root


def test_classical_mds_recovers_a_known_configuration_up_to_rotation() -> None:
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.3, 0.3, size=(9, 2))
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    coords = classical_mds(1.0 - distance)
    # Same configuration: equal pairwise distances, and an orthogonal map (rotation/reflection) fits exactly.
    np.testing.assert_allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), distance, atol=1e-9)
    centred, target = coords - coords.mean(0), points - points.mean(0)
    u, _, vt = np.linalg.svd(centred.T @ target)
    np.testing.assert_allclose(centred @ (u @ vt), target, atol=1e-9)


def test_classical_mds_of_two_models_and_bad_input() -> None:
    coords = classical_mds(np.array([[1.0, 0.2], [0.2, 1.0]]))
    assert coords.shape == (2, 2) and np.isclose(np.linalg.norm(coords[0] - coords[1]), 0.8)
    assert np.all(coords[:, 1] == 0)  # one dimension is all the two points need
    with pytest.raises(InputError, match="square"):
        classical_mds(np.ones((2, 3)))


def test_labels_are_thinned_for_200_models_and_kept_for_5() -> None:
    assert thin_labels(5) == [0, 1, 2, 3, 4]
    shown = thin_labels(200)
    assert len(shown) <= MAX_TICK_LABELS and shown[0] == 0
    assert len(set(np.diff(shown))) == 1 and shown[-1] + np.diff(shown)[0] >= 200  # evenly spread to the end


def test_five_model_page_has_every_section_and_decodable_figures(toy, tmp_path) -> None:
    space, _ = toy
    page = write_report(from_space(space, truth=TRUTH), tmp_path / "report.html")
    parts = parse(page)
    assert parts.sections == ["summary", "maps", "space", "compare", "sources", "evaluation", "settings"]
    # 2 attribution grids; per estimator (3) heatmap, map, tree; two estimators compared (4 figures of Model
    # space shown again by the script, 2 per pair of the first method with each other, the oracle's curves);
    # curves; truth tree + 3 estimated trees; agreement.
    assert len(parts.images) == 2 + 3 * 3 + (4 + 2 * 2 + 1) + 1 + 1 + 3 + 1
    shown_again = [img for img in parts.images if "data-copy" in img]
    assert len(shown_again) == 4 and all("src" not in img for img in shown_again)
    assert all(decoded(img).size[0] > 100 for img in parts.images if "data-copy" not in img)
    assert all(link.startswith(("data:", "#")) for link in parts.links), "the page must not reach out"
    text = page.read_text(encoding="utf-8")
    assert space.probe_.hash in text and "toy truth" in text and "torch" in text
    for name in space.results_["saliency"].names:
        assert f'data-name="{name} ' in text  # one collapsible table per target
    # The hover data is the affinity itself, in the tree's order.
    matrices = [b for b in parts.blocks.values() if b["kind"] == "matrix"]
    result = space.results_["saliency"]
    order = [result.names.index(n) for n in matrices[0]["labels"]]
    shown = matrix_from_hover(matrices[0])
    np.testing.assert_allclose(shown, result.affinity[np.ix_(order, order)], atol=5e-4 + 1e-9)  # 3 decimals


def test_page_without_ground_truth_leaves_evaluation_out(tmp_path) -> None:
    parts = parse(write_report(large_report(12, with_truth=False), tmp_path / "report.html"))
    assert parts.sections == ["summary", "space", "compare", "sources", "settings"]
    drawn = [img for img in parts.images if "data-copy" not in img]  # the compared pair's figures shown again
    assert len(drawn) == 2 * 3 + 2 and all(decoded(img).size[1] > 100 for img in drawn)  # + one pair, no oracle


def test_two_hundred_models_stay_legible(tmp_path) -> None:
    page = write_report(large_report(200), tmp_path / "report.html")
    parts = parse(page)
    heatmap = next(b for b in parts.blocks.values() if b["kind"] == "matrix")
    assert len(heatmap["labels"]) == 200 and len(heatmap["values"]) == 200
    assert heatmap["symmetric"] and len(heatmap["values"][150]) == 50  # the upper triangle only
    assert 0 < heatmap["box"]["left"] < 1 and 0 < heatmap["box"]["width"] < 1
    image = decoded(next(img for img in parts.images if img.get("data-hover")))
    assert image.size[0] <= 1200  # fits a laptop screen at 1:1; the thinned labels stay readable
    # The box the tooltip uses is where the cells are drawn: a cell's centre pixel has its value's colour
    # (to rendering noise at 4 px a cell; a box off by one cell would miss by far more, the matrix is noisy).
    values, box = matrix_from_hover(heatmap), heatmap["box"]
    pixels, (width, height) = np.asarray(image.convert("RGB"), dtype=float), image.size
    off = values[~np.eye(200, dtype=bool)]  # the colour scale spans the off-diagonal values
    scale = np.clip((values - off.min()) / (off.max() - off.min()), 0.0, 1.0)
    errors = []
    for i, j in np.random.default_rng(0).integers(0, 200, size=(60, 2)):
        if i == j:
            continue  # the diagonal is grey, outside the scale (test_plots checks it)
        x = int(width * (box["left"] + box["width"] * (j + 0.5) / 200))
        y = int(height * (box["top"] + box["height"] * (i + 0.5) / 200))
        errors.append(np.abs(pixels[y, x] - np.array(colormaps["viridis"](scale[i, j])[:3]) * 255).max())
    assert np.median(errors) < 3 and max(errors) < 25, errors
    assert page.read_text(encoding="utf-8").count('<details class="target"') == 200
    assert page.stat().st_size < 8_000_000


def test_from_folder_matches_the_saved_run_and_cli_report(toy, capsys) -> None:
    space, root = toy
    data = from_folder(root / "out")
    assert [v.id for v in data.estimators] == list(space.results_)
    np.testing.assert_allclose(data.estimators[0].affinity, space.results_["saliency"].affinity, atol=1e-6)
    assert data.estimators[0].labels == TASKS and data.evaluation["n_relevant"] == 2
    assert main(["report", str(root / "out"), "--json"]) == 0
    written = Path(json.loads(capsys.readouterr().out)["report"])
    assert written == root / "out" / "report.html" and "maps" in parse(written).sections


def test_report_of_a_bad_folder_names_it_and_exits_2(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "results.json").write_text('{"methods": ["saliency"]}')
    assert main(["report", str(tmp_path), "--quiet"]) == 2
    assert "affinity_saliency.csv" in capsys.readouterr().err
    with pytest.raises(InputError, match="affinity of shape"):
        MethodResult("x", ["a", "b"], ["a", "b"], np.eye(3))
    with pytest.raises(InputError, match="no estimator"):
        write_report(ReportData([]), tmp_path / "r.html")


def test_run_with_only_a_zoo_and_a_probe_folder(tmp_path, monkeypatch, capsys) -> None:
    from support.images import write_images

    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("models:\n"
                   "  - {name: small, source: 'python:toy_models:tiny_cnn', input_size: 32}\n"
                   "  - {name: wide, source: 'python:toy_models:tiny_cnn', kwargs: {width: 12}, input_size: 40}\n"
                   "  - {name: res, source: 'python:toy_models:tiny_resnet', encoder: layer2, input_size: 32}\n")
    write_images(tmp_path / "probe_dir", n=6, size=40)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "zoo.yaml", "probe_dir/", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout is one JSON document; bars go to stderr
    out = tmp_path / "modelspace-out"
    assert summary["report"] == str(Path("modelspace-out") / "report.html")
    assert summary["methods"] == ["saliency", "gradient_x_input", "lrp_epsilon(epsilon=1e-06)"]
    assert (out / "store").is_dir() and (out / "affinity_saliency.csv").exists()
    assert len(parse(out / "report.html").images) >= 3 * 3
    assert re.search(r"modelspace run zoo\.yaml probe_dir/", (out / "report.html").read_text(encoding="utf-8"))
    # no --probe-size: the zoo's largest input side (32, 40, 32), so no model sees upsampled probe images
    assert summary["probe"]["size"] == 40
    wide = next(m for m in summary["models"] if m["name"] == "wide")
    assert wide["preprocessing"]["input_size"] == [40, 40] and wide["preprocessing"]["from"]["input_size"] == "zoo"
    line = "40×40 bilinear imagenet (default; input_size: zoo)"  # a python: model states nothing itself
    assert line in (out / "report.html").read_text(encoding="utf-8")
    assert main(["models", "--store", "modelspace-out/store"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [row.split("\t")[::2] for row in listed if row.startswith("wide")] == [["wide", "python:toy_models:tiny_cnn"]]
    assert [row.split("\t")[-1] for row in listed if row.startswith("wide")] == [line]


@pytest.mark.parametrize("command", ["run", "probe", "embed", "affinity", "tree", "evaluate", "models", "remove", "gc",
                                     "rebuild", "methods", "report", "demo", "study"])
def test_every_command_has_help_with_examples(command, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    help_text = capsys.readouterr().out
    assert done.value.code == 0
    assert "examples:" in help_text and f"modelspace {command}" in help_text
    assert "--quiet" in help_text and "--json" in help_text


def test_bad_arguments_and_bad_files_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run"])  # argparse: missing arguments
    assert done.value.code == 2
    (tmp_path / "zoo.toml").write_text('[[model]]\nname = "m"\nsource = "python:toy_models:tiny_cnn"\n')
    assert main(["run", str(tmp_path / "zoo.toml"), str(tmp_path / "no_probe"), "--quiet"]) == 2
    assert "no_probe" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "zoo.toml"), str(tmp_path), "--truth", "nonesuch", "--quiet"]) == 2
    assert "nonesuch" in capsys.readouterr().err


def test_an_unexpected_exception_is_exit_1_with_its_traceback(monkeypatch, capsys) -> None:
    from modelspace import cli

    def boom(args):
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli, "cmd_methods", boom)
    assert main(["methods"]) == 1
    err = capsys.readouterr().err
    assert "kaput" in err and "Traceback" in err and "internal error" in err
