"""The ``taskonomy:`` source and the shipped zoo of the seed paper's 20 Taskonomy encoders, offline.

Facts come from outside modelspace: the state-dict keys and shapes of the published encoders
(tests/facts/, read from visualpriors' TaskonomyEncoder), the input conventions of the seed paper's code
(tools/deep_attribution.py: its ``low_sat_tasks``, ``to_light`` for colorization and
``context_encoder_input`` for inpainting), CIE L* from scikit-image, and the bundled Taskonomy truth.
No weights are downloaded: the published files are replaced by checkpoints saved here, under names of
the published form with their own checksums.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from support.images import images, write_images
from support.paths import TESTS
from modelspace import ModelSpace
from modelspace.cli import main
from modelspace.errors import MissingWeightsError, ModelLoadError, ZooError
from modelspace.evaluation import GroundTruth
from modelspace.models import ModelSpec, check_sources, load_model, load_zoo, spec_from_dict
from modelspace.models import taskonomy
from modelspace.models.taskonomy import TASKS, Task, TaskonomyEncoder
from modelspace.models.transforms import InputTransform
from modelspace.similarity import BASELINES, get_baseline

FACTS = TESTS / "facts" / "taskonomy_encoder_state_dict.txt"

#: The seed paper's code (tools/deep_attribution.py): the tasks whose input it clipped to [0.1, 0.9]
#: (``low_sat_tasks``), and the two whose configs prepare their input otherwise.
LOW_SATURATION = {"autoencoder", "curvature", "denoise", "edge2d", "edge3d", "keypoint2d", "keypoint3d", "reshade",
                  "rgb2depth", "rgb2mist", "rgb2sfnorm", "segment25d", "segment2d", "room_layout"}
OWN_INPUT = {"colorization": "lightness", "inpainting_whole": "centre_masked"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No weights folder from the environment, torch's hub cache in this test's folder, and no
    remembered probe of the download host."""
    monkeypatch.delenv(taskonomy.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(taskonomy, "_unreachable", {})


def saved(folder: Path, task: str, seed: int = 7, state: dict | None = None, extra: dict | None = None) -> Path:
    """A checkpoint of a Taskonomy encoder with random weights, saved as the published files are
    ({"state_dict": ...}) under ``<task>_encoder-<its sha256>.pth``."""
    if state is None:
        torch.manual_seed(seed)
        state = TaskonomyEncoder().state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "checkpoint.pth"
    torch.save({"state_dict": state, **(extra or {})}, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    return raw.rename(folder / f"{task}_encoder-{digest}.pth")


def with_fields(zoo: Path, **fields) -> list[ModelSpec]:
    """The zoo file's specs with ``fields`` set on each."""
    from dataclasses import replace

    return [replace(s, **fields) for s in load_zoo(zoo)]


def published_as(monkeypatch, path: Path) -> Task:
    """Make ``path`` the published file of its task for this test (the real ones cannot be fetched here)."""
    name, digest = path.stem.rsplit("_encoder-", 1)
    t = Task(name, digest, TASKS[name].truth)
    monkeypatch.setitem(TASKS, name, t)
    return t


# ------------------------------------------------------------------------------------- architecture


def test_state_dict_keys_and_shapes_are_the_published_checkpoints():
    facts = [line.split() for line in FACTS.read_text().splitlines() if line and not line.startswith("#")]
    ours = [(k, "x".join(map(str, v.shape)) or "scalar") for k, v in TaskonomyEncoder().state_dict().items()]
    assert ours == [(k, shape) for k, shape in facts]


def test_r_is_the_8x16x16_representation_of_a_256_input():
    loaded = load_model(ModelSpec("normal", "taskonomy:normal", pretrained=False))
    x = loaded.transform(images(b=1, s=64))
    assert tuple(x.shape) == (1, 3, 256, 256) and x.min() >= -1 and x.max() <= 1
    r = loaded.tap()(x)
    assert loaded.encoder == "relu1" and tuple(r.shape) == (1, 8, 16, 16)
    with torch.no_grad():  # R is before the group norm that the port's forward adds
        assert torch.equal(loaded.module.groupnorm(r), loaded.module(x))


def test_random_weights_differ_between_tasks_and_repeat_per_task():
    a, b, again = (load_model(ModelSpec(n, f"taskonomy:{t}", pretrained=False))
                   for n, t in (("a", "normal"), ("b", "curvature"), ("c", "normal")))
    assert not torch.equal(a.module.conv1.weight, b.module.conv1.weight)
    assert torch.equal(a.module.conv1.weight, again.module.conv1.weight)


# ------------------------------------------------------------------------------------ tasks and zoo


def test_tasks_map_to_the_bundled_truths_names():
    truth = GroundTruth.named("taskonomy")
    assert sorted(t.truth for t in TASKS.values() if t.truth is not None) == sorted(truth.sources)
    assert taskonomy.task("rgb2sfnorm") is taskonomy.task("normal") is TASKS["normal"]
    with pytest.raises(ZooError, match=r"no published Taskonomy encoder for task 'normals'; did you mean 'normal'"):
        taskonomy.task("normals")


def test_a_task_the_truth_does_not_rank_is_a_source(tmp_path):
    specs = [ModelSpec(name, f"taskonomy:{t}", pretrained=False, input_size=32)
             for name, t in (("jigsaw", "jigsaw"), ("rgb2sfnorm", "normal"), ("curvature", "curvature"))]
    probe = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    space = ModelSpace(methods=["saliency"], store=tmp_path / "store", progress=False).fit(specs, probe)
    space.evaluate(GroundTruth.named("taskonomy"), n_relevant=1)
    assert not space.failures_
    assert "jigsaw" in [source for source, _ in space.results_["saliency"].ranking["curvature"]]


def test_the_shipped_zoo_is_the_papers_20_encoders_with_their_input_conventions():
    specs = load_zoo("taskonomy")
    assert sorted(s.label for s in specs) == sorted(GroundTruth.named("taskonomy").sources)
    for spec in specs:
        assert taskonomy.task(spec.ref).truth == spec.label  # each name is its encoder's task in the truth
        expected = "low_saturation" if spec.label in LOW_SATURATION else OWN_INPUT.get(spec.label)
        assert spec.kwargs_dict().get("convention") == expected, spec.name
        assert spec.pretrained and spec.weights is None


# ------------------------------------------------------------------------------------ conventions


def _transform(convention: str | None) -> InputTransform:
    return InputTransform((256, 256), (0.5,) * 3, (0.5,) * 3, convention=convention)


def test_low_saturation_clips_the_image_to_the_papers_range():
    x = torch.rand(2, 3, 256, 256)
    torch.testing.assert_close(_transform("low_saturation")(x), 2 * x.clamp(0.1, 0.9) - 1)


def test_centre_masked_zeroes_the_model_input_in_the_centre_quarter():
    x = torch.rand(2, 3, 256, 256)
    out = _transform("centre_masked")(x)
    expected = 2 * x - 1
    expected[..., 64:192, 64:192] = 0  # context_encoder_input: img[H/4:3H/4, W/4:3W/4] = 0, after rescaling
    torch.testing.assert_close(out, expected)


def test_lightness_is_cie_lstar_on_every_channel():
    color = pytest.importorskip("skimage.color")
    x = torch.rand(2, 3, 256, 256, dtype=torch.float64)
    x[0, :, :8] = 0.0  # black and white, where L*'s two pieces meet their ends
    x[0, :, 8:16] = 1.0
    out = _transform("lightness")(x)
    lab = np.stack([color.rgb2lab(img.permute(1, 2, 0).numpy())[..., 0] for img in x])
    expected = torch.from_numpy(lab / 100 * 2 - 1).unsqueeze(1).expand_as(out)  # to_light: L from [0, 100] to [-1, 1]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_lightness_has_finite_gradients_at_black_and_white():
    x = torch.cat([torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.03)])
    x.requires_grad_(True)
    InputTransform((8, 8), (0.5,) * 3, (0.5,) * 3, convention="lightness")(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad > 0).all()


def test_a_convention_is_named_by_the_entrys_kwargs_and_checked():
    spec = ModelSpec("c", "taskonomy:colorization", pretrained=False, kwargs={"convention": "lightness"})
    loaded = load_model(spec)
    assert loaded.transform.convention == "lightness" and loaded.preprocessing["convention"] == "lightness"
    plain = load_model(ModelSpec("c", "taskonomy:colorization", pretrained=False))
    assert plain.transform.convention is None and plain.key != loaded.key  # the convention is part of the identity
    for kwargs, message in (({"convention": "grey"}, r"convention 'grey' is not one of centre_masked, lightness"),
                            ({"colour": 1}, r"a Taskonomy encoder takes only 'convention', not 'colour'")):
        with pytest.raises(ZooError, match=r"model 'c'.*field 'kwargs': " + message):
            check_sources([ModelSpec("c", "taskonomy:colorization", pretrained=False, kwargs=kwargs)])


# ------------------------------------------------------------------------------------------ weights


def test_a_checkpoint_under_a_published_name_with_its_checksum_loads(tmp_path):
    path = saved(tmp_path / "weights", "normal")
    spec = ModelSpec("normal", "taskonomy:normal", weights=str(path))
    check_sources([spec])
    loaded = load_model(spec)
    expected = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in expected.items())


def test_a_checkpoint_from_before_batch_norms_counted_their_batches_loads(tmp_path):
    torch.manual_seed(3)
    state = {k: v for k, v in TaskonomyEncoder().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = saved(tmp_path, "curvature", state=state)
    loaded = load_model(ModelSpec("curvature", "taskonomy:curvature", weights=str(path)))
    assert torch.equal(loaded.module.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_the_published_file_is_found_in_the_weights_folder_in_the_environment(tmp_path, monkeypatch):
    path = saved(tmp_path / "folder", "normal")
    published_as(monkeypatch, path)
    monkeypatch.setenv(taskonomy.WEIGHTS_DIR_ENV, str(path.parent))
    spec = ModelSpec("normal", "taskonomy:rgb2sfnorm")
    check_sources([spec])
    assert torch.equal(load_model(spec).module.conv1.weight, torch.load(path, weights_only=True)["state_dict"]["conv1.weight"])


def test_the_zoos_weights_come_before_the_folder_and_the_folder_before_the_hub_cache(tmp_path, monkeypatch):
    ours, published = saved(tmp_path / "ours", "normal", seed=1), saved(tmp_path / "folder", "normal", seed=2)
    published_as(monkeypatch, published)
    cached = tmp_path / "hub" / "checkpoints" / published.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the published file")  # read, it would be refused by its checksum
    monkeypatch.setenv(taskonomy.WEIGHTS_DIR_ENV, str(published.parent))
    conv1 = lambda path: torch.load(path, weights_only=True)["state_dict"]["conv1.weight"]  # noqa: E731
    assert torch.equal(load_model(ModelSpec("n", "taskonomy:normal", weights=str(ours))).module.conv1.weight, conv1(ours))
    assert torch.equal(load_model(ModelSpec("n", "taskonomy:normal")).module.conv1.weight, conv1(published))
    published.unlink()
    with pytest.raises(MissingWeightsError, match=rf"weights file {cached}: its sha256 is"):
        load_model(ModelSpec("n", "taskonomy:normal"))


def test_the_weights_location_is_not_part_of_the_models_key(tmp_path):
    path = saved(tmp_path / "a", "normal")
    moved = tmp_path / "b" / path.name
    moved.parent.mkdir()
    moved.write_bytes(path.read_bytes())
    keys = {load_model(ModelSpec("normal", "taskonomy:normal", weights=str(p))).key for p in (path, moved)}
    assert len(keys) == 1


def test_a_wrong_checksum_is_refused_by_name(tmp_path):
    path = saved(tmp_path, "normal")
    wrong = path.with_name("normal_encoder-" + "0" * 64 + ".pth")
    path.rename(wrong)
    with pytest.raises(MissingWeightsError, match=rf"weights file {wrong}: its sha256 is [0-9a-f]{{64}}, but its "
                                                  r"name says 0{64}: the file is damaged or not the published one"):
        load_model(ModelSpec("normal", "taskonomy:normal", weights=str(wrong)))


def test_a_published_name_with_a_wrong_checksum_fails_the_model_in_a_run(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "weights"
    saved(folder, "normal").rename(folder / TASKS["normal"].file)  # the published name, other content
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "rgb2sfnorm"\nsource = "taskonomy:normal"\ninput_size = 32\n')
    code = main(["run", str(zoo), str(write_images(tmp_path / "probe", n=4, size=24)), "--weights-dir", str(folder),
                 "--out", str(tmp_path / "out"), "--methods", "saliency", "--no-report"])
    err = capsys.readouterr().err
    assert code == 1 and f"weights file {folder / TASKS['normal'].file}: its sha256 is" in err


def test_weights_are_read_as_tensors_only(tmp_path):
    path = saved(tmp_path, "normal", extra={"note": Path("a")})  # a pickled object besides the tensors
    with pytest.raises(ModelLoadError, match=rf"weights file {path} cannot be read as tensors .*weights_only=True"):
        load_model(ModelSpec("normal", "taskonomy:normal", weights=str(path)))


def test_another_tasks_published_file_is_refused(tmp_path):
    path = tmp_path / TASKS["curvature"].file
    path.write_bytes(b"")
    with pytest.raises(ZooError, match=r"field 'weights': curvature_encoder-3767.*is the published 'curvature' "
                                       r"encoder, not the 'normal' one"):
        check_sources([ModelSpec("normal", "taskonomy:normal", weights=str(path))])


def test_weights_relative_to_the_zoo_file_and_only_where_a_source_takes_them(tmp_path):
    spec = spec_from_dict({"name": "n", "source": "taskonomy:normal", "weights": "w/n.pth"}, "zoo.toml", tmp_path)
    assert spec.weights == str(tmp_path / "w" / "n.pth")
    for entry, message in (
            ({"source": "taskonomy:normal", "weights": "../n.pth"}, r"field 'weights': relative path '\.\./n\.pth'"),
            ({"source": "python:toy_models:tiny_cnn", "weights": "n.pth"}, r"field 'weights': only used with 'taskonomy:'"),
            ({"source": "taskonomy:normal", "weights": "n.pth", "pretrained": False},
             r"field 'weights': names weights, but pretrained = false")):
        with pytest.raises(ZooError, match=r"zoo\.toml: model 'n': " + message):
            spec_from_dict({"name": "n", **entry}, "zoo.toml", tmp_path)


# ----------------------------------------------------------------------------- missing weights, CLI


def test_a_missing_file_exits_2_at_once_naming_it_and_its_url(tmp_path, capsys, connections):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "rgb2sfnorm"\nsource = "taskonomy:normal"\nweights = "gone.pth"\n')
    start = time.monotonic()
    code = main(["run", str(zoo), str(write_images(tmp_path / "probe", n=4, size=24)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - start < 10
    assert f"field 'weights': file not found: {tmp_path / 'gone.pth'}" in err and TASKS["normal"].url in err
    assert connections == []  # a file the zoo names is not downloaded


def test_missing_published_weights_offline_exit_2_after_one_probe(tmp_path, capsys, connections):
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[model]]\nname = "rgb2sfnorm"\nsource = "taskonomy:normal"\n'
                   '[[model]]\nname = "curvature"\nsource = "taskonomy:curvature"\n')
    start = time.monotonic()
    code = main(["run", str(zoo), str(write_images(tmp_path / "probe", n=4, size=24)), "--out", str(tmp_path / "out"),
                 "--weights-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - start < 10
    for name in ("normal", "curvature"):
        assert TASKS[name].file in err and TASKS[name].url in err
    assert f"are not in {tmp_path}, {tmp_path / 'hub' / 'checkpoints'}" in err
    assert connections == [("github.com", 443)]  # probed once, and not again for the second model


def test_weights_dir_must_be_a_folder(tmp_path, capsys):
    code = main(["run", "taskonomy", str(write_images(tmp_path / "probe", n=4, size=24)), "--weights-dir", str(tmp_path / "none")])
    assert code == 2 and f"--weights-dir {tmp_path / 'none'}: no such folder" in capsys.readouterr().err


def _small_shipped_zoo(tmp_path: Path, names: set[str] | None = None) -> Path:
    """The shipped zoo's entries (names, sources, conventions), or those of ``names``, at a 32² input
    instead of 256², for the tests' CPU budget: R is then 8×2×2."""
    import tomllib

    shipped = Path(taskonomy.__file__).parent.parent / "data" / "zoos" / "taskonomy.toml"
    entries = [e for e in tomllib.loads(shipped.read_text())["model"] if names is None or e["name"] in names]
    small = tmp_path / "taskonomy.toml"
    small.write_text("".join(f'[[model]]\nname = "{e["name"]}"\nsource = "{e["source"]}"\ninput_size = 32\n'
                             + (f'kwargs = {{ convention = "{e["kwargs"]["convention"]}" }}\n' if "kwargs" in e else "")
                             for e in entries))
    return small


@pytest.mark.slow
def test_the_shipped_zoo_runs_the_three_methods_through_the_cli_with_random_weights(tmp_path, capsys):
    """Three probe images: too few for DDS, the default estimator, which the next test runs."""
    zoo, probe, out = _small_shipped_zoo(tmp_path), write_images(tmp_path / "probe", n=3, size=24), tmp_path / "out"
    code = main(["run", str(zoo), str(probe), "--random-weights", "--truth", "taskonomy", "--out", str(out),
                 "--methods", "saliency", "gradient_x_input", "lrp_epsilon", "--no-report", "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0 and summary["random_weights"] is True
    assert "--random-weights: 20 models with random weights" in captured.err
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == [s.name for s in load_zoo("taskonomy")]
    assert not results["failures"] and results["work"]["computed"] == 20 * 3
    assert [m["preprocessing"].get("convention") for m in results["models"]] == \
        [s.kwargs_dict().get("convention") for s in load_zoo("taskonomy")]
    assert [m.split("(")[0] for m in summary["evaluation"]["methods"]] == ["saliency", "gradient_x_input", "lrp_epsilon"]


@pytest.mark.slow
def test_every_label_free_baseline_runs_on_the_architecture(tmp_path):
    """One entry of the shipped zoo per input convention, with every baseline (a fusion is not one)."""
    zoo = _small_shipped_zoo(tmp_path, {"autoencoder", "colorization", "inpainting_whole", "class_1000"})
    baselines = [b for b in BASELINES if not get_baseline(b).combines_estimators]
    space = ModelSpace(methods=["gradient_x_input"], baselines=baselines, store=tmp_path / "store", progress=False)
    space.fit(with_fields(zoo, pretrained=False), write_images(tmp_path / "probe", n=4, size=24))
    assert not space.failures_ and len(space.members_) == 4
    assert sorted(space.results_) == sorted(["gradient_x_input", *(get_baseline(b).id for b in baselines)])
