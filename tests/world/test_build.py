"""World v2's building blocks against independent references, and the build's miniature end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelspace.models.encoder import EncoderTap
from modelspace.models.transforms import InputTransform
from modelspace.world import build, nets, oracle, train
from modelspace.world.demo import run_demo
from modelspace.world.render import render_batch


def test_blur_down_is_the_binomial_filter_then_every_second_pixel() -> None:
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    w = np.array([1.0, 2.0, 1.0]) / 4
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 1), (0, 1)), mode="edge")
    rows, cols = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
    expected = np.zeros((2, 3, rows, cols))
    for i in range(rows):
        for j in range(cols):
            for a in range(3):
                for b in range(3):
                    r, c = min(2 * i + a, padded.shape[2] - 1), min(2 * j + b, padded.shape[3] - 1)
                    expected[:, :, i, j] += w[a] * w[b] * padded[:, :, r, c]
    got = nets.BlurDown()(x).numpy()
    # The pools see only whole 2×2 windows: compare the rows and columns they produce.
    np.testing.assert_allclose(got, expected[:, :, : got.shape[2], : got.shape[3]], rtol=1e-12, atol=1e-12)


def _nyquist_share(grad: torch.Tensor) -> float:
    """Share of a map's spectral energy at the Nyquist frequencies (a pixel-period checkerboard)."""
    spectrum = torch.fft.fft2(grad.sum(1)).abs() ** 2
    n = grad.shape[-1] // 2
    return float((spectrum[:, n, :].sum() + spectrum[:, :, n].sum()) / spectrum.sum())


@pytest.mark.parametrize("arch", ["resnet", "mobilenet"])
def test_antialiasing_removes_the_checkerboard_from_input_gradients(arch: str) -> None:
    x = torch.rand(4, 3, 64, 64, requires_grad=True)
    shares = {}
    for antialias in (False, True):
        torch.manual_seed(0)
        model = nets.build(arch, out_channels=1, antialias=antialias).eval()
        tap = EncoderTap(model, nets.ENCODERS[arch], arch)
        (grad,) = torch.autograd.grad(tap(x).mean(), x)
        shares[antialias] = _nyquist_share(grad)
    assert shares[True] < shares[False] / 5, shares


def test_rest_tasknet_shapes() -> None:
    dense = nets.build("restasknet", out_channels=3)
    image = nets.build("restasknet", out_channels=4, dense=False)
    x = torch.rand(2, 3, 64, 64)
    assert dense(x).shape == (2, 3, 64, 64) and image(x).shape == (2, 4)
    assert dense.encoder(x).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match="blocks"):
        nets.build("restasknet", out_channels=1, blocks=(1, 1))


def test_plateau_change_is_the_gain_of_the_best_loss_over_the_last_fifth() -> None:
    curve = [(250, 1.0), (500, 0.9), (750, 0.85), (1000, 0.84)]
    assert train.plateau_change(curve) == pytest.approx((0.85 - 0.84) / 0.85)
    assert train.plateau_change([(250, 1.0)]) == 1.0
    assert train.plateau_change([(250, 1.0), (500, 1.2), (750, 1.1), (1000, 1.3)]) == 0.0


def test_training_stops_on_a_plateau_and_keeps_the_best_held_out_weights() -> None:
    data, validation = render_batch(32, seed=5), render_batch(16, seed=6)
    torch.manual_seed(0)
    model = nets.build("restasknet", out_channels=1, widths=(4, 4, 4, 4), blocks=(1, 1, 1))
    recipe = train.Recipe(steps=400, batch=8, lr=1e-2, eval_every=5, min_steps=20, plateau=0.02, patience=1)
    record = train.train_model(model, "depth_z", data, 64, recipe, log=False, validation=validation)
    losses = [v for _, v in record["curve"]]
    if record["converged"]:
        assert record["steps"] < 400 and record["last_fifth_gain"] < 0.02
    assert train.held_out_loss(model, "depth_z", validation, 64) == pytest.approx(min(losses), rel=1e-4)
    with pytest.raises(ValueError, match="validation"):
        train.train_model(model, "depth_z", data, 64, recipe, log=False)


class _Recorder(torch.nn.Module):
    """A linear classifier that keeps every input it is given."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.LazyLinear(classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_mirror_flips_about_half_of_each_batch_and_only_for_image_classification() -> None:
    rng = np.random.default_rng(0)
    data = {"rgb": rng.random((16, 8, 8, 3), dtype=np.float32), "object_class": rng.integers(0, 4, 16)}
    model = _Recorder(4)
    model(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer before the optimiser sees it
    model.seen.clear()
    train.train_model(model, "object_class", data, 8, train.Recipe(steps=4, batch=64, mirror=True), log=False)
    transform = InputTransform((8, 8), **train.WORLD_NORMALISATION)
    images = transform(train.to_tensor(data["rgb"]))
    mirrored = 0
    for x in torch.cat(model.seen):
        plain = bool(torch.isclose(images, x).flatten(1).all(1).any())
        flipped = bool(torch.isclose(images.flip(-1), x).flatten(1).all(1).any())
        assert plain != flipped  # each input is one training image, either as is or mirrored
        mirrored += flipped
    assert 0.35 < mirrored / 256 < 0.65
    with pytest.raises(ValueError, match="mirror"):
        train.train_model(model, "depth_z", render_batch(2, seed=1), 64, train.Recipe(steps=1, mirror=True), log=False)


def test_trivial_metrics_by_their_definitions() -> None:
    train_data, test_data = render_batch(24, seed=7), render_batch(12, seed=8)
    figures = train.trivial_metrics("object_count", train_data, test_data)
    counts = np.bincount(train_data["object_count"], minlength=9) + 1.0
    majority = int(np.argmax(counts))
    assert figures["majority_accuracy"] == pytest.approx(np.mean(test_data["object_count"] == majority))
    assert figures["prior_cross_entropy"] == pytest.approx(-np.mean(np.log(counts / counts.sum())[test_data["object_count"]]))
    depth = train.trivial_metrics("depth_z", train_data, test_data)
    assert depth["variance"] == pytest.approx(float(np.var(test_data["depth_z"].astype(np.float64))), rel=1e-5)


def _target(kind: str, n: int = 600, seed: int = 0) -> tuple[oracle.Target, torch.Tensor, torch.Tensor]:
    """A target whose labels are a function of the first feature channel's 8×8 map."""
    g = torch.Generator().manual_seed(seed)
    informative = torch.randn(n + 200, 8, 8, 8, generator=g)
    signal = informative[:, 0]
    if kind == "dense_regression":
        y = torch.nn.functional.interpolate(signal[:, None], size=16, mode="bilinear").flatten(1)
    elif kind == "image_classification":
        y = (signal.mean((1, 2)) > 0).long() + (signal.mean((1, 2)) > 0.2).long()
    else:
        logits = torch.stack([signal, -signal, torch.zeros_like(signal)], 1)
        y = torch.softmax(torch.nn.functional.interpolate(logits * 20, size=16, mode="bilinear"), 1)
    y_train, y_test = y[:n], y[n:]
    if kind == "image_classification":
        prior = (torch.bincount(y_train, minlength=3).double() + 1) / (n + 3)
        trivial = float(-prior.log()[y_test].mean())
        target = oracle.Target(kind, y_train, y_test, trivial, 3, dense=False)
    elif kind == "dense_classification":
        prior = y_train.mean((0, 2, 3)).double()
        trivial = float(-(y_test.double() * prior.log()[None, :, None, None]).sum(1).mean())
        target = oracle.Target(kind, y_train, y_test, trivial, 3, dense=True)
    else:
        target = oracle.Target(kind, y_train, y_test, float(y_test.var(unbiased=False)), 1, dense=True)
    return target, informative[:n], informative[n:]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense_regression", "image_classification", "dense_classification"])
def test_readout_loss_is_low_with_the_information_and_near_one_without(kind: str) -> None:
    target, x_train, x_test = _target(kind)
    recipe = oracle.ReadoutRecipe(width=16, epochs=25, batch=64, n_train=600)
    informed = oracle.readout_loss(target, (x_train, x_test), recipe, seed=0)
    blind = oracle.readout_loss(target, (torch.randn_like(x_train), torch.randn_like(x_test)), recipe, seed=0)
    assert informed < 0.5 * blind
    assert 0.85 < blind < 1.3


def test_make_target_normalisers_follow_their_definitions() -> None:
    train_data, test_data = render_batch(20, seed=9), render_batch(10, seed=10)
    seg = oracle.make_target("segment_semantic", train_data, test_data, n_train=20)
    fractions = torch.from_numpy(oracle.readout_targets("segment_semantic", train_data)).reshape(20, seg.channels, 16, 16)
    prior = fractions.mean((0, 2, 3)).double() + 1e-6
    prior = prior / prior.sum()
    test_fractions = torch.from_numpy(oracle.readout_targets("segment_semantic", test_data)).reshape(10, seg.channels, 16, 16)
    assert seg.trivial == pytest.approx(float(-(test_fractions * prior.log()[None, :, None, None]).sum(1).mean()))
    depth = oracle.make_target("depth_z", train_data, test_data, n_train=20)
    assert depth.y_train.shape == (20, 256) and depth.channels == 1
    # the image-blind predictor knows the position: its loss is the per-position variance, averaged
    test_depth = oracle.readout_targets("depth_z", test_data).astype(np.float64)
    assert depth.trivial == pytest.approx(float(test_depth.var(0).mean()), rel=1e-5)


def test_transfers_resume_without_retraining(monkeypatch) -> None:
    train_data, test_data = render_batch(16, seed=11), render_batch(8, seed=12)
    models = {}
    for name in ("depth_z", "normals"):
        torch.manual_seed(len(name))
        module = nets.build("restasknet", out_channels=1, widths=(4, 4, 4, 4), blocks=(1, 1, 1)).eval()
        models[name] = _Loaded(module)
    calls = []
    monkeypatch.setattr(oracle, "readout_loss", lambda target, f, recipe, seed: calls.append(seed) or 0.5)
    recipe = oracle.ReadoutRecipe(n_train=16, seeds=(0, 1))
    pairs = [("depth_z", "depth_z"), ("depth_z", "normals")]
    done = {0: {"depth_z": {"depth_z": 0.25}}}
    result = oracle.measure_transfers(models, {}, pairs, train_data, test_data, recipe, done=done, progress=False)
    assert len(calls) == 3  # one pair × seed was already measured
    assert result.loss[0]["depth_z"]["depth_z"] == 0.25
    assert result.mean()[0].tolist() == [pytest.approx(0.375), 0.5]


class _Loaded:
    """The part of LoadedModel the oracle uses: a tap on `encoder` and the world's transform."""

    def __init__(self, module) -> None:
        self.module, self.name = module, "toy"
        self.transform = InputTransform((64, 64), **train.WORLD_NORMALISATION)
        self._tap = lambda: EncoderTap(module, "encoder", "toy")

    def tap(self):
        return self._tap()


def test_oracle_summary_figures_by_their_definitions() -> None:
    entries = [build.Entry(t, t) for t in ("a", "b", "c", "d", "e", "f")] + [build.Entry("a@seed1", "a", group=3, seed=1)]
    rng = np.random.default_rng(0)
    tasks = [e.task for e in entries if e.group == 1]
    base = rng.uniform(0.2, 0.9, (6, 6))
    loss = {s: {t: {src: float(base[i, j] + 0.01 * s) for j, src in enumerate(tasks)} for i, t in enumerate(tasks)}
            for s in (0, 1)}
    for s in (0, 1):
        loss[s]["a"]["a@seed1"] = 0.05
    result = oracle.TransferResult(tasks + [], tasks + ["a@seed1"], loss, {t: 1.0 for t in tasks})
    info = build.oracle_summary(entries, result, oracle.ReadoutRecipe())
    mean = base + 0.005
    for i, t in enumerate(tasks):
        figures = info["validity"][t]
        assert figures["own_rank"] == 1 + int(np.sum(mean[i] < mean[i, i]))
        others = np.delete(mean[i], i)
        assert figures["best_minus_median"] == pytest.approx(np.median(others) - others.min())
        assert figures["readout_noise"] == pytest.approx(np.sqrt(0.01**2 / 2))
    # The twin replaces source "a" in target a's row; "a" itself is never its own candidate.
    first = [tasks[j] for j in np.argsort(mean[0]) if j != 0][:5]
    assert info["zoo_retraining"]["targets"]["a"]["top5_first_copy"] == first
    assert info["zoo_retraining"]["top5_agreement"] == 1.0
    # In the second copy, a's own encoder is its twin (0.05 + 0.005 below every other source).
    own = info["zoo_retraining"]["targets"]["a"]
    assert (own["own_rank_first_copy"], own["own_rank_second_copy"]) == (1 + int(np.sum(mean[0] < mean[0, 0])), 1)
    assert info["zoo_retraining"]["own_best_second_copy"] == 1


@pytest.mark.slow
def test_quick_build_end_to_end_and_resume(tmp_path, capsys) -> None:
    """The miniature of `python -m modelspace.world.build`: train, measure, write, then resume."""
    out, cache = tmp_path / "zoo", tmp_path / "cache"
    assert build.main(["--quick", "--out", str(out), "--cache", str(cache)]) == 0
    info = json.loads((out / "oracle.json").read_text())
    record = json.loads((out / "zoo.json").read_text())
    assert set(record["models"]) == {e.name for e in build.quick_zoo()}
    for name, model in record["models"].items():
        assert model["curve"] and "learned" in model and (out / f"{name}.pt").exists()
        assert model["recipe"]["precision"] == ("bfloat16" if build.native_bfloat16("cpu") else "float32")
    assert set(info["validity"]) == set(info["tasks"]) == set(build.QUICK_TASKS)
    assert info["zoo_retraining"]["twinned_models"] == ["depth_z@seed1"]
    assert (out / "oracle_ranking.csv").read_text().count("\n") == len(info["tasks"]) + 1
    # The demo on this zoo carries the oracle's validity figures to its summary and its page.
    summary = run_demo(tmp_path / "demo", n_probe=8, progress=False, zoo_dir=out)
    assert summary["oracle_validity"]["own_best_count"] == info["own_best_count"]
    page = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "How far the measured oracle can be trusted" in page
    assert all(f"<td>{t}</td>" in page for t in info["tasks"])
    assert f"own encoder best for {info['own_best_count']}/3 targets" in summary["table"]
    capsys.readouterr()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.pt")}
    assert build.main(["--quick", "--out", str(out), "--cache", str(cache), "--resume"]) == 0
    assert "restasknet" not in capsys.readouterr().out  # nothing retrained
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.pt")} == stamps


@pytest.mark.slow
def test_render_set_writes_chunks_into_the_cache_and_reads_them_back(tmp_path) -> None:
    direct = render_batch(7, seed=9)
    cached = build.render_set(7, 9, "train", tmp_path, workers=2, chunk=3)
    again = build.render_set(7, 9, "train", tmp_path)  # from the cache: no rendering
    folder = tmp_path / f"v{build.CACHE_VERSION}_train_9_7"
    assert (folder / "done").exists() and isinstance(again["rgb"], np.memmap)
    for key, value in direct.items():
        np.testing.assert_array_equal(cached[key], value, err_msg=key)
        np.testing.assert_array_equal(again[key], value, err_msg=key)


@pytest.mark.slow
def test_oracle_split_over_workers_then_merged_and_a_retrained_source_measured_again(tmp_path, monkeypatch) -> None:
    out, cache = tmp_path / "zoo", tmp_path / "cache"
    quick = ["--quick", "--out", str(out), "--cache", str(cache)]
    for i in (0, 1):
        assert build.main([*quick, "--skip-oracle", "--worker", f"{i}/2"]) == 0
    for i in (0, 1):
        assert build.main([*quick, "--oracle-only", "--worker", f"{i}/2"]) == 0
    parts = [json.loads((out / f"transfers-{i}of2.json").read_text())["loss"]["0"] for i in (0, 1)]
    pairs = build.oracle_pairs(build.quick_zoo())
    sources = list(dict.fromkeys(s for _, s in pairs))
    own = [{(t, s) for t, s in pairs if s in sources[i::2]} for i in (0, 1)]
    measured = [{(t, s) for t, row in part.items() for s in row} for part in parts]
    assert own[0] and own[1] and measured[0] == own[0]  # the first worker measured its own sources only
    assert measured[1] == own[0] | own[1]  # the second kept what the first had saved, and measured its own

    def no_training(*args, **kwargs):
        raise AssertionError("a readout was trained again")

    monkeypatch.setattr(oracle, "readout_loss", no_training)
    assert build.main([*quick, "--resume"]) == 0  # merges: nothing left to measure
    merged = json.loads((out / "transfers.json").read_text())["loss"]["0"]
    assert merged == {t: {**parts[0].get(t, {}), **parts[1].get(t, {})} for t in {*parts[0], *parts[1]}}

    calls = []
    monkeypatch.setattr(oracle, "readout_loss", lambda target, features, recipe, seed: calls.append(seed) or 0.5)
    state = torch.load(out / "depth_z.pt", weights_only=True)  # depth_z changes, as a retrained model would
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first] + 0.01
    torch.save(state, out / "depth_z.pt")
    record = {**json.loads((out / "zoo.json").read_text()), "written_by": "the training run"}
    (out / "zoo.json").write_text(json.dumps(record))
    assert build.main([*quick, "--oracle-only"]) == 0  # measures depth_z's readouts again, only those
    pairs_from_depth_z = [p for p in build.oracle_pairs(build.quick_zoo()) if p[1] == "depth_z"]
    assert len(calls) == len(pairs_from_depth_z) * len(oracle.ReadoutRecipe().seeds)
    assert json.loads((out / "zoo.json").read_text()) == record  # the models' training record is left alone


def test_resumed_workers_share_the_unfinished_entries_evenly(tmp_path, monkeypatch) -> None:
    entries = [build.Entry(f"m{k}", "depth_z") for k in range(7)]
    (tmp_path / "records").mkdir()
    for k in (0, 2, 4):  # finished: weights and record
        (tmp_path / f"m{k}.pt").write_bytes(b"")
        (tmp_path / "records" / f"m{k}.json").write_text("{}")
    (tmp_path / "m1.pt").write_bytes(b"")  # weights without a record: not finished

    def fake_train(e, *args):
        trained[-1].append(e.name)
        return {"held_out": {"loss": 0.1}, "normalised_loss": 0.1, "steps": 1, "converged": True, "seconds": 0}

    monkeypatch.setattr(build, "train_entry", fake_train)
    trained = []
    for i in (0, 1):
        trained.append([])
        build.train_zoo(entries, tmp_path, {}, {}, build.RECIPE, "cpu", resume=True, worker=(i, 2))
    assert trained == [["m1", "m5"], ["m3", "m6"]]


def test_a_resumed_worker_skips_an_entry_another_process_finished_meanwhile(tmp_path, monkeypatch) -> None:
    entries = [build.Entry(f"m{k}", "depth_z") for k in range(3)]
    trained = []

    def fake_train(e, out, *args):
        trained.append(e.name)
        if e.name == "m0":  # while m0 trains, another process (a run with --only m2) finishes m2
            (out / "records").mkdir(exist_ok=True)
            (out / "records" / "m2.json").write_text("{}")
        return {"held_out": {"loss": 0.1}, "normalised_loss": 0.1, "steps": 1, "converged": True, "seconds": 0}

    monkeypatch.setattr(build, "train_entry", fake_train)
    build.train_zoo(entries, tmp_path, {}, {}, build.RECIPE, "cpu", resume=True)
    assert trained == ["m0", "m1"]


def test_a_shifted_domain_model_is_stopped_and_judged_on_its_own_domain() -> None:
    scenes = {"train": 10, "validation": 2, "test": 3}
    data = {"train": "t", "validation": "v", "test": "s", ("train", 10): "t",
            ("shifted", 10): "T*", ("validation", "shifted"): "V*", ("test", "shifted"): "S*"}
    shifted = build.entry_sets(build.Entry("depth_z@shifted", "depth_z", domain="shifted", group=2), data, scenes)
    assert shifted == {"train": "T*", "validation": "V*", "test": "S*"}
    assert build.entry_sets(build.Entry("depth_z", "depth_z"), data, scenes) == {"train": "t", "validation": "v", "test": "s"}
