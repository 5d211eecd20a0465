"""Estimators that a probe set leaves undefined, and hostile model names.

- 16 copies of one probe image, or a single image, through `modelspace run` with its default
  estimators, then `report`, `tree` and `evaluate` on the folder; every baseline on such probe sets;
- a model name holding ANSI escapes and ``\\r\\n`` on stderr, stdout and in progress lines;
- ``café`` in NFC and in NFD as two zoo entries.
"""

from __future__ import annotations

import html
import io
import json
import re
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelspace import ModelSpace, ModelSpec, ProbeSet
from modelspace.cli import main
from modelspace.evaluation import GroundTruth
from modelspace.progress import progress
from modelspace.results import read_matrix
from modelspace.similarity import get_baseline

ZOO_ENTRY = '[[model]]\nname = "{name}"\nsource = "python:toy_models:{source}"\ninput_size = 16\n{extra}\n'
MODELS = (("a", "tiny_cnn", ""), ("b", "tiny_resnet", 'encoder = "layer2"\n'), ("c", "tiny_cnn", "kwargs = { width = 4 }\n"))
TRUTH = "target,rank1,rank2\na,b,c\nb,a,c\nc,a,b\n"
# Control characters: C0 (newlines included), DEL and C1. Only the line ends between records may be raw.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def write_zoo(path: Path, models=MODELS) -> Path:
    path.write_text("".join(ZOO_ENTRY.format(name=n, source=s, extra=e) for n, s, e in models), encoding="utf-8")
    return path


def probe_folder(root: Path, images: list[np.ndarray]) -> Path:
    """A folder of PNG files, one per (16, 16, 3) uint8 array."""
    folder = root / "probe"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img{i:02d}.png")
    return folder


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- estimators a probe set leaves undefined
@pytest.mark.parametrize("copies, reason", [
    (16, "the 16 probe images are all the same image"),
    (1, "needs at least 4 probe images"),
])
@pytest.mark.slow
def test_a_probe_set_that_leaves_dds_undefined_names_it_and_renders_the_rest(tmp_path, capsys, copies, reason) -> None:
    """Trial: 16 copies of one probe image made `affinity_dds.csv` hold only its header, every model a DDS
    "failure" (exit 1), and `report` and `tree` fail with exit 2, "expected a square matrix with 0 rows".
    One image dropped DDS without a word."""
    zoo = write_zoo(tmp_path / "zoo.toml")
    probe = probe_folder(tmp_path, [random_image(0)] * copies)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "run", str(zoo), str(probe), "--out", str(out))
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    dds = next(iter(results["not_computed"]))
    assert dds.startswith("dds") and reason in results["not_computed"][dds], results["not_computed"]
    assert results["failures"] == [] and dds not in results["baselines"]
    assert not (out / "affinity_dds.csv").exists() and not (out / "ranking_dds.json").exists()
    # Said once on stderr, and beside the other estimators' results on stdout.
    assert len([line for line in err.splitlines() if f"{dds}: not computed" in line]) == 1, err
    assert f"{dds}: not computed: " in stdout and reason in stdout
    # The attribution methods are computed: identical images give identical maps, which compare fine.
    assert set(results["methods"]) == {"saliency", "gradient_x_input", "lrp_epsilon(epsilon=1e-06)"}
    for method in ("saliency", "gradient_x_input", "lrp_epsilon"):
        matrix, names = read_matrix(out / f"affinity_{method}.csv")
        assert names == ["a", "b", "c"] and np.isfinite(matrix).all()

    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 0, err
    page = re.sub(r"<[^>]+>", "", html.unescape((out / "report.html").read_text(encoding="utf-8")))
    assert f"{dds} was not computed: " in page and reason in page
    (tmp_path / "truth.csv").write_text(TRUTH)
    for csv_file in sorted(out.glob("affinity_*.csv")):
        code, _, err = run_cli(capsys, "tree", str(csv_file), "--out", str(tmp_path / "trees"))
        assert code == 0, (csv_file.name, err)
        code, _, err = run_cli(capsys, "evaluate", str(csv_file), "--truth", str(tmp_path / "truth.csv"),
                               "--out", str(tmp_path / "evaluation"))
        assert code == 0, (csv_file.name, err)
    code, _, err = run_cli(capsys, "report", str(out), "--truth", str(tmp_path / "truth.csv"))
    assert code == 0, err


ALL_BASELINES = {"svcca": "svcca", "linear_cka": "linear_cka", "rbf_cka": "rbf_cka", "rsa": "rsa", "dds": "dds",
                 "dds_rbf": "dds(kernel='rbf')", "depara": "depara", "fusion": "fusion(members=('dds','saliency'))"}


@pytest.mark.parametrize("images, undefined", [
    # One image: no pairs of images, so no similarity across them.
    ([0], set(ALL_BASELINES)),
    # Three distinct images: too few for DDS's debiased estimate (N (N - 3)), and so for its fusion.
    ([0, 1, 2], {"dds", "dds_rbf", "fusion"}),
    # Eight copies of one image: no variation across the images for any baseline.
    ([0] * 8, set(ALL_BASELINES)),
    # Six copies and two others: 15 of the 28 pairs coincide, so the median distance (the RBF bandwidth) is 0.
    ([0] * 6 + [1, 2], {"rbf_cka", "dds_rbf"}),
])
def test_every_baseline_that_a_probe_set_leaves_undefined_is_named_not_failed(tmp_path, images, undefined) -> None:
    """Trial: on such probe sets each baseline failed every model ("representation 'a': the same for all 8
    images"; "expected an array (N, D, ...) of N >= 4 images"), stored as failures of the models, while the
    probe set, not the models, leaves it undefined."""
    probe = ProbeSet.from_array(np.stack([random_image(i) for i in images]).transpose(0, 3, 1, 2))
    models = [ModelSpec(n, f"python:toy_models:{s}", input_size=16, encoder="layer2" if s == "tiny_resnet" else None)
              for n, s, _ in MODELS]
    space = ModelSpace(methods=["saliency", "gradient_x_input"], baselines=list(ALL_BASELINES.values()),
                       progress=False, store=tmp_path / "store").fit(models, probe)
    assert space.failures_ == []
    ids = {short: get_baseline(name).id for short, name in ALL_BASELINES.items()}
    assert set(space.not_computed_) == {ids[short] for short in undefined}, space.not_computed_
    assert all(reason.strip() for reason in space.not_computed_.values())
    for short, estimator in ids.items():
        if short in undefined:
            assert estimator not in list(space.results_)  # `in` alone finds a computed one of the same name
        else:
            assert space.results_[estimator].names == ["a", "b", "c"]
    assert space.summary()["not_computed"] == space.not_computed_
    assert all(space.results_[m].names == ["a", "b", "c"] for m in ("saliency", "gradient_x_input"))


def test_a_matrix_file_of_no_models_reads_as_an_empty_matrix(tmp_path) -> None:
    """Trial: `report` on a folder whose `affinity_dds.csv` held only its header (every model failed DDS, as
    the 16 copies did before) stopped with "expected a square matrix with 0 rows, got shape (0,)"."""
    (tmp_path / "affinity_dds.csv").write_text("model\n")
    matrix, names = read_matrix(tmp_path / "affinity_dds.csv")
    assert matrix.shape == (0, 0) and names == []


@pytest.mark.parametrize("images, judged", [
    ([0] * 24, False),  # 24 copies of one image: its halves are copies of each other
    ([i % 12 for i in range(24)], False),  # 24 images, 12 of them distinct
    (list(range(24)), True),  # 24 distinct images: the halves say something
])
def test_copies_of_a_few_images_give_no_confidence(tmp_path, images, judged) -> None:
    """Trial: 20 or more copies of one probe image gave every method's ranking the confidence "high, 1.0":
    the two halves of the images were copies of each other, so the top-K never moved."""
    probe = ProbeSet.from_array(np.stack([random_image(i) for i in images]).transpose(0, 3, 1, 2))
    models = [ModelSpec(n, f"python:toy_models:{s}", input_size=16, encoder="layer2" if s == "tiny_resnet" else None)
              for n, s, _ in MODELS] + [ModelSpec("d", "python:toy_models:tiny_cnn", input_size=16,
                                                  kwargs={"width": 6})]
    space = ModelSpace(methods=["saliency"], baselines=[], progress=False, store=tmp_path / "store").fit(models, probe)
    result = space.results_["saliency"]
    if judged:
        assert result.confidence and result.confidence_note == ""
    else:
        distinct = len(set(images))
        assert result.confidence is None
        assert result.confidence_note == (f"confidence: not given: 24 probe images, {distinct} of them distinct, "
                                          "fewer than the 20 its halves need")


# ---------------------------------------------------------------------- names
HOSTILE = "b\x1b[31mX\r\nmodelspace: forged"
SHOWN = "b\\x1b[31mX\\r\\nmodelspace: forged"


def test_control_characters_in_names_are_escaped_on_every_channel(tmp_path, capsys) -> None:
    """Trial: a model named ``b<ESC>[31mX\\r\\nmodelspace: forged`` went raw to the terminal: its progress
    line turned the rest red and forged a ``modelspace:`` log line; a failing model's raw name cleared the
    screen from the summary line; the stdout rankings and `models` table held the raw name, and the figures
    drew it (matplotlib warning on stderr of each glyph it lacks)."""
    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.stack([random_image(i) for i in range(4)]).transpose(0, 3, 1, 2)).save(probe)
    zoo = tmp_path / "zoo.toml"
    entries = ((HOSTILE, "input_size = 16\n"), ("bad\x1b[2J", 'encoder = "nope"\n'), ("c", "input_size = 20\n"))
    # TOML's basic strings take JSON's escapes (\u001b, \r, \n): the file holds the characters themselves.
    zoo.write_text("".join(f'[[model]]\nname = {json.dumps(n)}\nsource = "python:toy_models:tiny_cnn"\n{e}\n'
                           for n, e in entries), encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:  # what Python prints on stderr, outside pytest
        warnings.simplefilter("always")
        code, out, err = run_cli(capsys, "run", str(zoo), str(probe), "--out", str(tmp_path / "out"), "--methods",
                                 "saliency")
    assert code == 1, err  # the model "bad..." failed
    # The figures write the escapes: matplotlib warned of each control character it has no glyph for.
    assert not [str(w.message) for w in caught if "Glyph" in str(w.message)]
    for stream in (err, out):
        assert not CONTROL.search(stream), repr(stream)
        assert not any(line.startswith("modelspace: forged") for line in stream.splitlines()), stream
    assert SHOWN in err and "bad\\x1b[2J" in err  # a progress line, and the summary of failures
    assert SHOWN in out

    code, out, _ = run_cli(capsys, "models", "--store", str(tmp_path / "out" / "store"))
    assert code == 0 and not CONTROL.search(out.replace("\t", " ")) and len(out.splitlines()) == 2
    assert out.splitlines()[0].startswith(SHOWN + "\t")
    code, out, _ = run_cli(capsys, "models", "--store", str(tmp_path / "out" / "store"), "--json")
    assert code == 0 and HOSTILE in [m["name"] for m in json.loads(out)]  # JSON escapes by itself

    # An error message holding a raw path (the zoo file's), through main's printing.
    code, _, err = run_cli(capsys, "embed", str(tmp_path / "zoo\x1b[2J\r\nmodelspace: x.toml"), str(probe))
    assert code == 2 and not CONTROL.search(err) and "zoo\\x1b[2J\\r\\nmodelspace: x.toml" in err, repr(err)
    assert len(err.splitlines()) == 1

    # A progress bar on a terminal (tqdm) shows its description escaped too.
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    for _ in progress(range(2), desc=HOSTILE, file=screen):
        pass
    assert SHOWN in screen.getvalue() and HOSTILE not in screen.getvalue()

    # The page writes the escapes too, HTML-escaped; its JSON blocks escape by themselves.
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert not CONTROL.search(page) and html.escape(SHOWN) in page


NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


def test_names_equal_after_unicode_normalisation_are_one_name(tmp_path, capsys) -> None:
    """Trial: ``café`` in NFC and in NFD were two models with identical labels everywhere (tables, trees,
    the page), told apart by nothing a reader could see."""
    assert NFC != NFD
    probe = tmp_path / "probe.npz"
    ProbeSet.from_array(np.stack([random_image(i) for i in range(4)]).transpose(0, 3, 1, 2)).save(probe)
    zoo = write_zoo(tmp_path / "zoo.toml", [(NFC, "tiny_cnn", ""), (NFD, "tiny_cnn", "kwargs = { width = 4 }\n")])
    code, _, err = run_cli(capsys, "run", str(zoo), str(probe), "--out", str(tmp_path / "out"), "--methods",
                           "saliency")
    assert code == 2, err
    assert str(zoo) in err and "#1" in err and "#2" in err and "'caf\\xe9'" in err and "'cafe\\u0301'" in err, err

    # One spelling everywhere a name is taken: specs, the space's remove, a ground truth.
    spec = ModelSpec(NFD, "python:toy_models:tiny_cnn", input_size=16)
    assert spec.name == NFC and ModelSpec("m", "python:toy_models:tiny_cnn", task=NFD).label == NFC
    space = ModelSpace(methods=["saliency"], progress=False, store=tmp_path / "store")
    space.fit([spec, ModelSpec("tea", "python:toy_models:tiny_cnn", input_size=16, kwargs={"width": 4})], probe)
    assert list(space.members_) == [NFC, "tea"]
    assert space.evaluate(GroundTruth({NFD: ["tea"], "tea": [NFD]})).n_candidates == 1
    space.remove(NFD)
    assert list(space.members_) == ["tea"]
    code, out, err = run_cli(capsys, "remove", NFD, "--store", str(tmp_path / "store"))
    assert code == 0 and out.startswith(f"removed {NFC} "), err
