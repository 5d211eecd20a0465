"""A user's repeated runs, reruns and reports: each friction reproduced through the CLI as a
user types it (`main([...])`), on a zoo of the toy models (`tests/toy_models.py`) and a probe folder
of small images. Timings are measured in `benchmarks/`, never asserted here."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from modelspace.cli import main
from support.images import write_images
from support.paths import REPO

pytestmark = pytest.mark.slow  # end to end, each test a run or several: the fast loop leaves the file out

ZOO = """
[[model]]
name = "cnn_a"
source = "python:toy_models:tiny_cnn"
task = "a"
input_size = 16

[[model]]
name = "cnn_b"
source = "python:toy_models:tiny_cnn"
kwargs = { width = 6 }
task = "b"
input_size = 16

[[model]]
name = "resnet_c"
source = "python:toy_models:tiny_resnet"
task = "c"
input_size = 16
"""


@pytest.fixture
def user(tmp_path, monkeypatch) -> dict:
    """A user's working folder: ``zoo.toml`` (three toy models at 16 px), ``probe/`` (24 images); the
    commands run in that folder, so the default ``modelspace-out/`` lands there too."""
    monkeypatch.chdir(tmp_path)
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(ZOO, encoding="utf-8")
    return {"dir": tmp_path, "zoo": zoo, "probe": write_images(tmp_path / "probe", n=24)}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``modelspace ARGV`` as typed: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ 1. a rerun with nothing new


@pytest.fixture
def forward_passes(monkeypatch) -> list[str]:
    """The models whose encoder activations a run computes for its baselines, one name per forward pass
    over the probe set (counted where `prepare_baselines` calls `encoder_activations`)."""
    import modelspace.maps.execution.activations as activations

    seen, real = [], activations.encoder_activations
    monkeypatch.setattr(activations, "encoder_activations",
                        lambda model, *a, **k: seen.append(model.name) or real(model, *a, **k))
    return seen


def work(user) -> dict:
    return json.loads((user["dir"] / "modelspace-out" / "results.json").read_text())["work"]


def prepared_files(user, model_key: str | None = None) -> list[Path]:
    store = user["dir"] / "modelspace-out" / "store" / "arrays"
    return sorted(p for p in store.rglob("prepared.npz") if model_key is None or model_key in p.parts)


def test_a_rerun_computes_no_encoder_activations(user, capsys, forward_passes):
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert sorted(forward_passes) == ["cnn_a", "cnn_b", "resnet_c"]
    first = (user["dir"] / "modelspace-out" / "affinity_dds.csv").read_text()
    assert len(prepared_files(user)) == 3  # one DDS form per model

    forward_passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert forward_passes == []
    assert work(user) == {"computed": 0, "reused": 9, "activations_computed": 0, "activations_reused": 3}
    assert "encoder activations of 0 models computed, 3 found in the store" in out  # what the user reads
    assert (user["dir"] / "modelspace-out" / "affinity_dds.csv").read_text() == first


def test_a_rerun_after_adding_a_model_computes_its_activations_only(user, capsys, forward_passes):
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    forward_passes.clear()
    with open(user["zoo"], "a", encoding="utf-8") as fh:
        fh.write('\n[[model]]\nname = "cnn_d"\nsource = "python:toy_models:tiny_cnn"\nkwargs = { width = 5 }\n'
                 'task = "d"\ninput_size = 16\n')
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert forward_passes == ["cnn_d"]
    assert work(user)["activations_computed"] == 1 and work(user)["activations_reused"] == 3
    dds = (user["dir"] / "modelspace-out" / "affinity_dds.csv").read_text()
    assert "cnn_d" in dds


def test_remove_drops_stored_activations_and_recompute_redoes_them(user, capsys, forward_passes):
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    stored = {m["name"]: m["key"] for m in json.loads(
        (user["dir"] / "modelspace-out" / "results.json").read_text())["models"]}
    assert len(prepared_files(user, stored["cnn_b"])) == 1

    code, out, err = run(capsys, "remove", "cnn_b", "--store", "modelspace-out/store")
    assert code == 0, err
    assert prepared_files(user, stored["cnn_b"]) == [] and len(prepared_files(user)) == 2
    forward_passes.clear()
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    assert forward_passes == ["cnn_b"]

    forward_passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--recompute", "resnet_c")
    assert code == 0, err
    assert forward_passes == ["resnet_c"]
    assert work(user)["activations_computed"] == 1


def test_a_damaged_stored_activation_form_is_recomputed_with_a_message(user, capsys, forward_passes):
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0
    damaged = prepared_files(user)[0]
    damaged.write_bytes(damaged.read_bytes()[:-8] + b"\0" * 8)
    forward_passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 0, err
    assert len(forward_passes) == 1
    assert str(damaged) in err and "damaged" in err
    forward_passes.clear()
    assert run(capsys, "run", "zoo.toml", "probe")[0] == 0 and forward_passes == []  # stored again, whole


# ------------------------------------------------------------------ 2. peak memory


@pytest.fixture
def passes(monkeypatch) -> list[tuple[int, int]]:
    """(images, bytes kept for the backward) of every forward+backward pass a run makes for its maps."""
    import modelspace.maps.execution.executor as executor

    seen, real_maps, real_exit = [], executor.compute_maps, executor.SavedBytes.__exit__
    images = []
    monkeypatch.setattr(executor, "compute_maps",
                        lambda model, x, *a, **k: images.append(len(x)) or real_maps(model, x, *a, **k))
    monkeypatch.setattr(executor.SavedBytes, "__exit__",
                        lambda self, *exc: seen.append((images[-1], self.bytes)) or real_exit(self, *exc))
    return seen


def test_a_pass_never_keeps_more_than_the_pass_memory_for_its_backward(user, capsys, passes):
    """The attribution's backward graph (what a pass keeps: autograd's saved tensors, counted, not timed)
    grows with its images; a batch runs in passes that keep at most --pass-memory, whatever --batch-size."""
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--out", "whole", "--quiet")
    assert code == 0, err
    # one image measures what an image keeps; toy models keep a few kB an image, so the default lets
    # the whole batch through in one pass
    assert [n for n, _ in passes] == [1, 24] * 6  # 3 models × 2 backward groups
    per_image = max(kept / n for n, kept in passes)
    budget = 5 * per_image
    passes.clear()
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--out", "bounded", "--quiet",
                         "--pass-memory", str(budget / 2**20))
    assert code == 0, err
    assert passes[0][0] == 1
    assert 1 < max(n for n, _ in passes) < 24 and sum(n for n, _ in passes) == 6 * (1 + 24)
    assert all(kept <= budget for n, kept in passes if n > 1)
    for name in ("saliency", "gradient_x_input", "lrp_epsilon", "dds"):
        whole = np.loadtxt(user["dir"] / "whole" / f"affinity_{name}.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
        bounded = np.loadtxt(user["dir"] / "bounded" / f"affinity_{name}.csv", delimiter=",", skiprows=1,
                             usecols=(1, 2, 3))
        np.testing.assert_allclose(bounded, whole, atol=1e-6)


# ------------------------------------------------------------------ 3. label scores on the page


def write_labelled(folder: Path, classes: int, per_class: int) -> Path:
    """``per_class`` images of each of ``classes`` classes, one subfolder per class (``--labels`` reads it)."""
    for c in range(classes):
        write_images(folder / f"class{c}", n=per_class, seed=100 + c)
    return folder


def page_section(html: str, ident: str) -> str:
    """The ``<section id=ident>`` of a report page."""
    start = html.index(f'<section id="{ident}">')
    return html[start:html.index("</section>", start)]


def test_label_scores_reach_results_json_and_the_page(user, capsys):
    # 20 images of 4 classes: more than D + 1 for every toy model's pooled features (D ≤ 8)
    write_labelled(user["dir"] / "labelled", classes=4, per_class=5)
    code, out, err = run(capsys, "run", user["zoo"], user["probe"], "--methods", "saliency", "--labels", "labelled")
    assert code == 0, err
    folder = user["dir"] / "modelspace-out"
    saved = json.loads((folder / "results.json").read_text())
    scores = saved["label_scores"]
    assert set(scores) == {"logme(regression=False)", "hscore", "transrate(eps=0.0001)", "gbc(covariance='spherical')"}
    assert all(set(v) == {"cnn_a", "cnn_b", "resnet_c"} for v in scores.values())
    assert json.loads((folder / "label_scores.json").read_text()) == scores  # the same numbers, kept for scripts
    assert saved["labels"]["n_images"] == 20 and saved["labels"]["n_classes"] == 4
    assert saved["labels"]["per_class"] == {"min": 5, "max": 5}
    assert saved["labels"]["cannot_rank"] == {score: [] for score in scores}
    assert "cannot rank" not in out

    page = (folder / "report.html").read_text(encoding="utf-8")
    section = page_section(page, "labels")
    assert "20 labelled images of 4 classes (5 per class)" in section and 'href="#labels"' in page
    for score, values in scores.items():  # each score's column lists the models best first
        column = [row.split("<td>")[1 + list(scores).index(score)].split("<span")[0]
                  for row in section.split('<td class="num">')[1:]]
        assert column == sorted(values, key=lambda m: -values[m]), score
    assert "⚠" not in section

    (folder / "report.html").unlink()  # `modelspace report` rebuilds the same section from the folder
    code, _, err = run(capsys, "report", folder)
    assert code == 0, err
    assert page_section((folder / "report.html").read_text(encoding="utf-8"), "labels") == section


def test_a_score_that_cannot_rank_the_models_says_so(user, capsys):
    # the trial's case in small: 3 classes × 2 images, fewer images than every model's features + 1,
    # where H-score is K − 1 for any features
    write_labelled(user["dir"] / "labelled", classes=3, per_class=2)
    code, out, err = run(capsys, "run", user["zoo"], user["probe"], "--methods", "saliency", "--labels", "labelled")
    assert code == 0, err
    folder = user["dir"] / "modelspace-out"
    saved = json.loads((folder / "results.json").read_text())
    assert saved["label_scores"]["hscore"] == pytest.approx(dict.fromkeys(["cnn_a", "cnn_b", "resnet_c"], 2.0))
    why = saved["labels"]["cannot_rank"]["hscore"]
    assert any("K − 1 = 2" in w and "every model" in w for w in why)
    assert any("every model scores 2," in w for w in why)
    hscore_lines = out.split("  hscore", 1)[1].split("\n  transrate", 1)[0]
    assert "cannot rank these models: with D ≥ N − 1 = 5 features" in hscore_lines
    section = page_section((folder / "report.html").read_text(encoding="utf-8"), "labels")
    assert '<p class="warn">⚠ <b>hscore</b> cannot rank these models' in section
    assert "<th class=blind>hscore ⚠</th>" in section


# ------------------------------------------------------------------ 4. a typo in a model name


FAST = ("--no-report", "--methods", "saliency")  # what these tests need of a run: its models loaded or not


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The names of the models a run loads, in order (`load_model` as the space calls it)."""
    import modelspace.space

    names: list[str] = []
    real = modelspace.space.load_model

    def counted(spec, *args, **kwargs):
        names.append(spec.name)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(modelspace.space, "load_model", counted)
    return names


def test_a_typo_in_a_model_name_fails_before_any_model_loads(user, capsys, loads):
    zoo = user["zoo"]
    zoo.write_text(ZOO.replace('"python:toy_models:tiny_resnet"', '"python:toy_models:tiny_cn"'), encoding="utf-8")
    code, out, err = run(capsys, "run", "zoo.toml", "probe")
    assert code == 2
    assert loads == []
    assert not (user["dir"] / "modelspace-out").exists()  # not even the store was made
    assert "zoo.toml: model 'resnet_c' (#3): field 'source'" in err
    assert "'tiny_cn'" in err and "did you mean 'tiny_cnn'" in err
    assert out == ""


def test_every_bad_entry_is_named_at_once(user, capsys, loads):
    (user["dir"] / "weights").mkdir()
    (user["dir"] / "weights" / "cnn.pt").write_bytes(b"")
    user["zoo"].write_text(ZOO.replace('"python:toy_models:tiny_resnet"', '"python:toy_modles:tiny_resnet"') + """
[[model]]
name = "from_file"
source = "checkpoint:weights/cnn.pth"
constructor = "python:toy_models:tiny_cnn"
""", encoding="utf-8")
    code, _, err = run(capsys, "embed", "zoo.toml", "probe", "--methods", "saliency")
    assert code == 2 and loads == []
    assert "2 zoo entries name models that do not exist" in err
    assert "model 'resnet_c' (#3)" in err and "did you mean 'toy_models'" in err
    assert "model 'from_file' (#4)" in err and "did you mean 'cnn.pt'" in err


def test_the_python_api_resolves_names_before_any_work(user, loads):
    from modelspace.errors import InputError
    from modelspace.models import ModelSpec, load_zoo
    from modelspace.space import ModelSpace

    specs = load_zoo(user["zoo"]) + [ModelSpec("typo", "python:toy_models:tiny_resnt")]
    with pytest.raises(InputError, match=r"model 'typo': field 'source'.*did you mean 'tiny_resnet'"):
        ModelSpace(methods=["saliency"], store=user["dir"] / "store", progress=False).fit(specs, user["probe"])
    assert loads == []


def test_a_model_that_cannot_load_is_skipped_on_the_rerun_until_retried_or_edited(user, capsys, loads):
    zoo = user["zoo"]
    zoo.write_text(ZOO.replace("kwargs = { width = 6 }", "kwargs = { widht = 6 }"), encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)  # the constructor refuses the keyword
    assert code == 1 and "cnn_b" in loads
    assert "TypeError" in err and "widht" in err

    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1
    assert loads == ["cnn_a", "resnet_c"]  # cnn_b is not loaded again
    assert "skipped, failed before:" in err and "widht" in err and "--retry-failed" in err

    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST, "--retry-failed")
    assert code == 1 and "cnn_b" in loads and "failed before" not in err  # tried again, failed again: recorded again
    loads.clear()
    assert run(capsys, "run", "zoo.toml", "probe", *FAST)[0] == 1 and "cnn_b" not in loads

    zoo.write_text(ZOO, encoding="utf-8")  # the entry edited: another spec, loaded again
    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 0 and "cnn_b" in loads and "failed before" not in err


def test_a_transient_load_failure_is_tried_again(user, capsys, loads):
    (user["dir"] / "flaky.py").write_text("def build():\n    raise MemoryError('out of memory while building')\n")
    user["zoo"].write_text(ZOO + '\n[[model]]\nname = "flaky"\nsource = "python:flaky:build"\ninput_size = 16\n',
                           encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "out of memory while building" in err
    loads.clear()
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "flaky" in loads and "failed before" not in err


# ------------------------------------------------------------------ 5. offline hub


HUB_MODEL = "modelspace-tests/never-cached"


@pytest.fixture
def hub_source():
    """``hubtest:REPO``, a source that downloads its weights through the Hugging Face hub client, as timm
    does (with its retries), and declares the download; a zoo of one such model without a local copy."""
    pytest.importorskip("huggingface_hub")
    from modelspace.errors import MissingWeightsError
    from modelspace.models import SOURCES, register_source
    from modelspace.models.spec import SOURCE_DOWNLOADS
    from toy_models import tiny_cnn

    def load(spec, ref):
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(ref, "model.safetensors")
        except Exception as exc:
            raise MissingWeightsError(f"pretrained weights for {ref!r} could not be loaded; offline, they must "
                                      "already be in the Hugging Face cache") from exc
        return tiny_cnn(), "encoder"

    register_source("hubtest", downloads=lambda spec, ref: [f"https://huggingface.co/{ref}"])(load)
    yield ZOO + f'\n[[model]]\nname = "hubbed"\nsource = "hubtest:{HUB_MODEL}"\ninput_size = 16\n'
    del SOURCES["hubtest"]
    SOURCE_DOWNLOADS.pop("hubtest", None)


def test_offline_a_missing_download_fails_at_once(user, capsys, hub_source, connections, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as read from the variable on import
    user["zoo"].write_text(hub_source, encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1
    assert f"model 'hubbed' (source 'hubtest:{HUB_MODEL}'): pretrained weights for {HUB_MODEL!r} could not" in err
    assert connections == [("huggingface.co", 443)]  # the one probe: the hub client never tried
    assert "no network: huggingface.co:443 cannot be reached" in err
    assert "Retrying" not in err
    assert not huggingface_hub.constants.HF_HUB_OFFLINE  # offline for the run only

    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "failed before" not in err  # missing weights are fetched, not edited: not remembered


def test_with_the_hub_offline_nothing_is_probed(user, capsys, hub_source, connections, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    user["zoo"].write_text(hub_source, encoding="utf-8")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", *FAST)
    assert code == 1 and "pretrained weights for" in err
    assert connections == []


def test_no_probe_when_no_model_downloads(user, capsys, connections):
    assert run(capsys, "run", "zoo.toml", "probe", *FAST)[0] == 0
    assert connections == []


# ------------------------------------------------------------------ 6. a results folder that holds results


def _folder(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()}


def _store_files(out: Path) -> dict[str, bytes]:
    """The store's map files and their bytes (its SQLite manifest changes as it is opened)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in (out / "store").rglob("*")
            if p.is_file() and ".sqlite" not in p.name}


def test_a_rerun_with_fewer_methods_removes_its_previous_files_and_nothing_else(user, capsys):
    out = user["dir"] / "modelspace-out"
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "gradient_x_input")
    assert code == 0, err
    assert {"affinity_gradient_x_input.csv", "heatmap_gradient_x_input.png", "grid_gradient_x_input.png"} <= _folder(out)
    (out / "notes.md").write_text("my notes on the first run\n")
    store = _store_files(out)

    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency")
    assert code == 0, err
    assert not any("gradient_x_input" in name for name in _folder(out))  # the first run's own files are gone
    assert (out / "notes.md").read_text() == "my notes on the first run\n"
    assert store and store.items() <= _store_files(out).items()  # every stored map kept, unchanged
    assert (out / "store" / "manifest.sqlite").is_file()
    listed = json.loads((out / "results.json").read_text())["files"]
    assert set(listed) == _folder(out) - {"notes.md", "store"}  # every file of the run listed, no staging left
    assert {"results.json", "report.html", "affinity_saliency.csv"} <= set(listed)

    code, _, err = run(capsys, "report", "modelspace-out")
    assert code == 0, err
    assert "results.json" in _folder(out) and set(json.loads((out / "results.json").read_text())["files"]) == set(listed)


def test_report_reads_only_the_files_results_json_lists(user, capsys):
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--no-report")
    assert code == 0, err
    out = user["dir"] / "modelspace-out"
    (out / "oracle_affinity.csv").write_text("not,a,matrix\n")  # a known name, but no run listed it
    code, _, err = run(capsys, "report", "modelspace-out")
    assert code == 0, err  # reading it would be an error: not an affinity matrix
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Oracle tree" not in page
    assert "report.html" in json.loads((out / "results.json").read_text())["files"]  # the folder's page is its file
    assert (out / "oracle_affinity.csv").read_text() == "not,a,matrix\n"


def test_an_older_results_json_without_the_list_leaves_files_and_says_so(user, capsys):
    out = user["dir"] / "modelspace-out"
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "gradient_x_input", "--no-report")
    assert code == 0, err
    older = json.loads((out / "results.json").read_text())
    del older["files"]  # as an older modelspace wrote it
    (out / "results.json").write_text(json.dumps(older))

    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--no-report")
    assert code == 0, err
    stale = sorted(n for n in _folder(out) if "gradient_x_input" in n)
    assert stale and {"affinity_gradient_x_input.csv", "tree_gradient_x_input.nwk"} <= set(stale)  # left in place
    message = err[err.index("does not list its files"):]
    assert all(name in message for name in stale)
    assert "affinity_saliency.csv" not in message.split("\n")[0]  # this run's files are not called stale
    assert "gradient_x_input" not in " ".join(json.loads((out / "results.json").read_text())["files"])


def test_a_run_stopped_while_writing_leaves_the_previous_results_whole(user, capsys, monkeypatch):
    from modelspace.report import plots

    out = user["dir"] / "modelspace-out"
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "gradient_x_input", "--no-report")
    assert code == 0, err
    before = {n: (out / n).read_bytes() for n in json.loads((out / "results.json").read_text())["files"]}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "plot_heatmap", interrupted)
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--no-report")
    assert code == 130, err
    assert _folder(out) == {*before, "store"}  # nothing removed, no staging folder left
    assert {n: (out / n).read_bytes() for n in before} == before


# ------------------------------------------------------------------ 7. the probe folder


def test_every_skipped_probe_file_is_said_with_its_reason_and_the_counts_agree(user, capsys):
    probe = user["probe"]
    (probe / "notes.txt").write_text("where these images come from\n")
    (probe / "corrupt.png").write_bytes((probe / "000.png").read_bytes()[:60])  # cut short
    (probe / "._001.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden
    code, out, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--out", "out")
    assert code == 0, err
    expected = {"notes.txt": "not an image", "corrupt.png": "corrupt or truncated", "._001.png": "hidden"}
    for path, kind in expected.items():
        assert re.search(rf"skipped {re.escape(path)}: {kind}", err), (path, err)

    results = json.loads((user["dir"] / "out" / "results.json").read_text())
    assert results["probe"]["n_images"] == 24
    assert {s["path"]: s["reason"].split(":")[0] for s in results["probe"]["skipped"]} == expected

    # the progress line counts every file considered, and says how many were read and skipped
    [line] = [line for line in err.splitlines() if line.startswith("modelspace: probe folder probe (")]
    read, skipped, files = map(int, re.search(r"\((\d+) images, (\d+) skipped\): (\d+) files", line).groups())
    assert (read, skipped, files) == (24, 3, 27)

    page = (user["dir"] / "out" / "report.html").read_text(encoding="utf-8")
    assert "3 probe files skipped" in page and '<details id="skipped" open>' in page
    for path in expected:
        assert html.escape(path) in page


def test_a_long_list_of_skipped_files_is_collapsed_on_the_page(user, capsys):
    for i in range(12):
        (user["probe"] / f"caption_{i:02d}.txt").write_text("a caption\n")
    code, _, err = run(capsys, "run", "zoo.toml", "probe", "--methods", "saliency", "--out", "out")
    assert code == 0, err
    assert all(f"skipped caption_{i:02d}.txt: not an image" in err for i in range(12))
    page = (user["dir"] / "out" / "report.html").read_text(encoding="utf-8")
    assert "12 probe files skipped" in page and '<details id="skipped">' in page  # collapsed
    assert "caption_11.txt" in page


# ------------------------------------------------------------------ 8. one set of defaults


def test_the_api_computes_what_the_cli_computes_by_default(user, capsys) -> None:
    from modelspace import ModelSpace, load_zoo

    code, out, err = run(capsys, "run", "zoo.toml", "probe/", "--quiet")
    assert code == 0, err
    cli = json.loads(Path("modelspace-out/results.json").read_text())
    space = ModelSpace(store="api-store", progress=False).fit(load_zoo("zoo.toml"), "probe/")
    api = space.summary()
    assert api["methods"] == cli["methods"] and api["baselines"] == cli["baselines"]
    assert any(b.startswith("dds(") for b in api["baselines"])  # the default estimator, in both
    assert list(space.results_) == [*cli["methods"], *cli["baselines"]]


def test_save_writes_what_run_writes_the_page_included(user, capsys) -> None:
    from modelspace import ModelSpace, load_zoo

    code, out, err = run(capsys, "run", "zoo.toml", "probe/", "--quiet", "--out", "cli")
    assert code == 0, err
    ModelSpace(store="cli/store", progress=False).fit(load_zoo("zoo.toml"), "probe/").save("api")
    listed = {name: set(json.loads(Path(folder, "results.json").read_text())["files"]) for name, folder in
              (("cli", "cli"), ("api", "api"))}
    assert "report.html" in listed["api"] and listed["api"] == listed["cli"]
    page = Path("api/report.html").read_text(encoding="utf-8")
    assert "dds" in page and "cnn_a" in page


def test_the_api_lowers_n_relevant_as_the_cli_does(user, caplog) -> None:
    from modelspace import ModelSpace, load_zoo

    truth = user["dir"] / "truth.csv"
    truth.write_text("target,rank1,rank2\na,b,c\nb,a,c\nc,a,b\n")
    space = ModelSpace(methods=["saliency"], baselines=(), progress=False).fit(load_zoo("zoo.toml"), "probe/")
    evaluation = space.evaluate(truth)  # 2 candidate sources per target: the default 5 is lowered to 2
    assert evaluation.n_relevant == 2 and "ranks only 2 candidate sources" in caplog.text
    assert "P@1" in str(evaluation) and "saliency" in str(evaluation)  # print(evaluation) is its table


def test_the_set_up_commands_of_the_readme_and_the_install_page_are_what_ci_runs() -> None:
    from support.docs_examples import blocks

    repo = REPO
    quick = [b.text.strip() for b in blocks(repo / "README.md") if b.section == "Quick start" and b.language == "sh"]
    assert len(quick) == 2 and "modelspace demo" in quick[0] and "pytest" in quick[1]
    ci = (repo / ".ci" / "run").read_text().splitlines()
    for command in quick:
        assert command in ci, command
    install = repo / "docs" / "getting-started" / "install.md"
    assert [b.text.strip() for b in blocks(install) if b.section == "Set up" and b.language == "sh"] == quick


# ------------------------------------------------------------------ 9. the report


FLAT_MODELS = """
import torch
from torch import nn


class Flat(nn.Module):
    \"\"\"A 1×1 convolution: its saliency is one value per channel, the same at every pixel (where the
    store's float16 rounding moves a map's norm the same way at every pixel).\"\"\"

    def __init__(self, weights=(1.0, 2.0, 3.0)):
        super().__init__()
        self.encoder = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.tensor(weights).reshape(1, 3, 1, 1))

    def forward(self, x):
        return self.encoder(x)
"""


def test_affinity_csvs_have_exactly_1_on_the_diagonal(user, capsys, monkeypatch):
    import csv
    import sys

    (user["dir"] / "flat_models.py").write_text(FLAT_MODELS, encoding="utf-8")
    monkeypatch.delitem(sys.modules, "flat_models", raising=False)
    with open(user["zoo"], "a", encoding="utf-8") as fh:
        fh.write('\n[[model]]\nname = "flat_a"\nsource = "python:flat_models:Flat"\ninput_size = 16\n'
                 '\n[[model]]\nname = "flat_b"\nsource = "python:flat_models:Flat"\n'
                 'kwargs = { weights = [0.3, 1.7, 2.9] }\ninput_size = 16\n')
    try:
        code, _, err = run(capsys, "run", user["zoo"], user["probe"], "--no-report")
    finally:
        sys.modules.pop("flat_models", None)
    assert code == 0, err
    files = sorted((user["dir"] / "modelspace-out").glob("affinity_*.csv"))
    assert len(files) == 4  # the paper's three methods and DDS
    for path in files:
        rows = list(csv.reader(path.open()))[1:]
        assert [float(row[i + 1]) for i, row in enumerate(rows)] == [1.0] * 5, path.name


def write_folder(folder: Path) -> dict:
    """An output folder as `modelspace run` writes it, of 8 models and three estimators: "rsa" and "dds"
    both find each target's true top 5 (P@5 = 1 for both), dds in the truth's order, rsa in another
    (a lower ρ); rsa is listed first. Returns the truth (target -> sources, best first)."""
    from modelspace.results import MethodResult, save

    tasks = [f"task{i}" for i in range(8)]
    rng = np.random.default_rng(0)
    truth, dds, rsa = {}, np.eye(8), np.eye(8)
    for i, t in enumerate(tasks):
        order = [j for j in rng.permutation(8) if j != i]
        truth[t] = [tasks[j] for j in order]
        mixed = order[:5][::-1] + order[5:][::-1]  # the same top 5, in another order
        for pos, (j, k) in enumerate(zip(order, mixed)):
            dds[i, j] = rsa[i, k] = 0.9 - 0.1 * pos
    saliency = np.eye(8) + 0.5 * (1 - np.eye(8))  # every source alike: P@5 well below 1
    results = {"saliency": MethodResult("saliency", tasks, tasks, saliency),
               "rsa": MethodResult("rsa", tasks, tasks, rsa, kind="baseline"),
               "dds": MethodResult("dds", tasks, tasks, dds, kind="baseline")}
    settings = {"methods": ["saliency"], "baselines": ["rsa", "dds"], "probe": {"n_images": 24, "size": 16},
                "models": [{"name": t, "task": t} for t in tasks]}
    save(folder, results, settings)
    return truth


def test_a_tie_on_p_at_5_is_broken_by_the_registered_rule_stated_on_the_page(user, capsys):
    from modelspace.world.study import RULE_TIE

    truth = write_folder(user["dir"] / "out")
    (user["dir"] / "truth.csv").write_text(
        "target," + ",".join(f"rank{k}" for k in range(1, 8)) + "\n"
        + "".join(f"{t},{','.join(s)}\n" for t, s in truth.items()), encoding="utf-8")
    code, _, err = run(capsys, "report", "out", "--truth", "truth.csv")
    assert code == 0, err
    summary = page_section((user["dir"] / "out" / "report.html").read_text(encoding="utf-8"), "summary")
    assert "<b>dds</b> ranks sources best: P@5 1.00" in summary  # not rsa, listed first at the same P@5
    assert "It ties on P@5 (1.000) with rsa (1.000, ρ" in summary
    assert (f"data/world/candidates.toml</code>), on this one evaluation: the highest mean P@5; means within "
            f"{RULE_TIE:g} tie, and a tie goes to the higher mean Spearman ρ") in summary


def test_every_text_of_the_run_s_figures_lies_inside_them(user, capsys, monkeypatch):
    # the trial's names: a seed twin's name was cut at the left of the attribution grid
    from support.reports import capture_figures, texts_outside

    zoo = ZOO.replace('"cnn_a"', '"segment_semantic@seed1"').replace('"cnn_b"', '"depth_euclidean@seed2"')
    user["zoo"].write_text(zoo, encoding="utf-8")
    drawn = capture_figures(monkeypatch)
    code, _, err = run(capsys, "run", user["zoo"], user["probe"], "--methods", "saliency")
    assert code == 0, err
    assert len(drawn) >= 6  # per estimator a dendrogram and a heatmap (twice: file and page), the grid, the map
    for fig in drawn:
        assert texts_outside(fig) == [], fig.axes[0].get_title()


# ------------------------------------------------------------------ 10. the vision install


def test_the_vision_install_line_is_the_one_ci_builds_with() -> None:
    """One line for timm and torchvision, CPU and CUDA alike, on the install page; .ci/run builds the vision
    environment with its pins (tests/vision/test_examples_on_real_models.py then runs the pages' zoos in it)."""
    import re

    from support.docs_examples import blocks

    repo = REPO
    install = repo / "docs" / "getting-started" / "install.md"
    (line,) = [b.text.strip() for b in blocks(install) if "torchvision==" in b.text and "pip install" in b.text]
    pins = re.findall(r"\S+==\S+", line)
    ci = (repo / ".ci" / "run").read_text(encoding="utf-8")
    vision = re.search(r'VISION_PINS="([^"]+)"', ci).group(1).split()
    assert {p.split("==")[0] for p in pins} == {"torch", "torchvision", "timm"} and set(pins) <= set(vision)
    assert line.startswith("PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= ") and "export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS=" in ci


# ------------------------------------------------------------------ 11. timing claims


def test_every_time_the_readme_claims_says_the_load_it_was_measured_under() -> None:
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 5)]
    claims = [p for p in re.split(r"\n\s*\n", quick) if re.search(r"\d+ s\b", p)]
    assert len(claims) >= 2, quick  # the demo's and the tests'
    for paragraph in claims:
        assert re.search(r"load average \d", paragraph), paragraph
