"""The built-in world (world v2): criterion 1 on every trained model's record, the zoo against its
definition, the oracle's files and its validity criteria 2a-c and 3, each figure read from the shipped
files and checked against its definition; the oracle reproduced in miniature from the weights; training
determinism and the demo end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelspace.cli import main
from modelspace.evaluation import GroundTruth
from modelspace.models import load_model, load_zoo
from modelspace.world import build, oracle, train
from modelspace.world.render import render_batch
from support.paths import REPO

ZOO = build.ZOO_DIR
CHECKS = REPO / "scripts" / "world" / "records"  # the readout checks' records


@pytest.fixture(scope="module")
def records() -> dict:
    found = {p.stem: json.loads(p.read_text()) for p in sorted((ZOO / "records").glob("*.json"))}
    assert found, f"no training record in {ZOO / 'records'}: run `python -m modelspace.world.build`"
    return found


@pytest.fixture(scope="module")
def shipped() -> dict:
    if not (ZOO / "oracle.json").exists():
        pytest.fail(f"the built-in zoo is missing from {ZOO}: run `python -m modelspace.world.build`")
    return {
        "specs": {s.name: s for s in load_zoo(ZOO / "zoo.toml")},
        "record": json.loads((ZOO / "zoo.json").read_text()),
        "oracle": json.loads((ZOO / "oracle.json").read_text()),
    }


def oracle_validity(info: dict) -> dict:
    """Criteria 2a–c recomputed from the raw per-seed readout losses of oracle.json (not from the
    build's own summary of them)."""
    tasks = info["tasks"]
    by_seed = np.asarray(info["transfer_loss_by_seed"])  # (seeds, targets, sources)
    loss = by_seed.mean(0)
    own_rank, noise, gap_over_noise = {}, {}, {}
    for i, t in enumerate(tasks):
        own_rank[t] = 1 + int((loss[i] < loss[i, i]).sum())
        others = np.delete(loss[i], i)
        noise[t] = np.sqrt(np.mean(by_seed[:, i, :].var(0, ddof=1)))  # seed-to-seed std, pooled over sources
        gap_over_noise[t] = (np.median(others) - others.min()) / noise[t]
    retrain = info["zoo_retraining"]["targets"]
    return {"own_rank": own_rank, "noise": noise, "gap_over_noise": gap_over_noise,
            "retraining": {t: len(set(v["top5_first_copy"]) & set(v["top5_second_copy"])) / 5 for t, v in retrain.items()},
            "twinned": info["zoo_retraining"]["twinned_models"]}


def test_zoo_is_the_build_definition(shipped) -> None:
    """Every entry of `build.ZOO`, with its weights, in zoo.toml and zoo.json; the three groups,
    architectures, input sizes and domains the world promises."""
    models = shipped["record"]["models"]
    assert list(shipped["specs"]) == list(models) == [e.name for e in build.ZOO]
    for e in build.ZOO:
        assert (models[e.name]["task"], models[e.name]["arch"], models[e.name]["group"]) == (e.task, e.arch, e.group)
        assert (ZOO / f"{e.name}.pt").is_file()
    groups = [m["group"] for m in models.values()]
    assert groups.count(1) == 20 and groups.count(3) >= 6 and groups.count(2) >= 8
    assert {m["arch"] for m in models.values() if m["group"] == 2} >= {"vgg", "resnet", "mobilenet"}
    assert len({shipped["specs"][n].input_size for n in shipped["specs"]}) >= 3
    assert {m["domain"] for m in models.values()} == {"train", "shifted"}
    assert sum(p.stat().st_size for p in ZOO.glob("*.pt")) <= 30e6  # weights stay small


def test_every_model_converged_and_learned(records) -> None:
    """Criterion 1 from each model's record: its best held-out loss gained under 2 % over the last
    fifth of the steps (curve recorded), and its task is learned (regression: MSE / label variance
    ≤ 0.3; classification: accuracy at least twice the majority class's), recomputed here."""
    assert set(records) == {e.name for e in build.ZOO}
    for name, r in records.items():
        steps = [s for s, _ in r["curve"]]
        assert len(steps) >= 4 and steps[-1] == r["steps"] and r["converged"], name
        assert r["last_fifth_gain"] < 0.02, name
        held_out, trivial = r["held_out"], r["trivial"]
        if "accuracy" in held_out:
            assert held_out["accuracy"] >= 2 * trivial["majority_accuracy"], name
        else:
            assert held_out["loss"] / trivial["variance"] <= 0.3, name
        assert r["learned"], name


def test_shipped_weights_load_safely_and_run(shipped) -> None:
    spec = shipped["specs"]["depth_z@resnet80"]
    assert not spec.trust_checkpoint  # weights_only=True
    model = load_model(spec)
    r = model.tap()(model.transform(torch.rand(2, 3, 64, 64)))
    assert r.ndim == 4 and torch.isfinite(r).all()


def test_oracle_files_agree(shipped) -> None:
    info = shipped["oracle"]
    ranking = GroundTruth.from_csv(ZOO / "oracle_ranking.csv")
    matrix = GroundTruth.from_csv(ZOO / "transfer_matrix.csv")
    assert ranking.ranking == matrix.ranking
    assert info["tasks"] == ranking.targets == [e.task for e in build.GROUP1]
    loss = np.asarray(info["transfer_loss"])
    assert np.allclose(loss, np.asarray(info["transfer_loss_by_seed"]).mean(0), atol=2e-6)
    summary = info["validity"]
    recomputed = oracle_validity(info)
    # Every target is served by some source better than by ignoring the image (normalised loss 1), by
    # more than 5 × its readout's seed-to-seed noise, the unit of criterion 2b.
    margin = {t: (1 - loss[i].min()) / recomputed["noise"][t] for i, t in enumerate(info["tasks"])}
    assert min(margin.values()) > 5, margin
    assert {t: v["own_rank"] for t, v in summary.items()} == recomputed["own_rank"]
    assert info["own_best_count"] == sum(r == 1 for r in recomputed["own_rank"].values())


def declared_rung(results: dict, rungs: tuple[int, ...], gain: float = 0.02) -> int:
    """The readout checks' shared rule (`scripts/world/readout_*.py`): the smallest rung at which the
    next one lowers the sampled pairs' mean validation loss by under `gain`, else the last rung."""
    for a, b in zip(rungs, rungs[1:]):
        pairs = [v for v in results.values() if str(a) in v and str(b) in v]
        assert len(pairs) == 40, f"{len(pairs)} pairs measured at both {a} and {b}"
        before, after = np.mean([v[str(a)] for v in pairs]), np.mean([v[str(b)] for v in pairs])
        if (before - after) / before < gain:
            return a
    return rungs[-1]


def test_readout_recipe_is_what_its_declared_rules_chose(shipped) -> None:
    """The oracle's readout recipe against the three rules fixed before their results: 1 000 Adam steps
    (the budget rule, on 2 000 scenes), 4 000 scenes (the scenes rule) and 32 channels (the width rule)."""
    def read(rule: str) -> dict:
        return json.loads((CHECKS / f"readout_{rule}.json").read_text())

    recipe = oracle.ReadoutRecipe()
    epochs_on_2000 = declared_rung(read("budget"), (8, 16, 32, 64))
    assert recipe.epochs * recipe.n_train == epochs_on_2000 * 2000  # the same scene presentations, 1 000 steps
    assert recipe.n_train == declared_rung(read("scenes"), (2000, 4000, 8000))
    assert recipe.width == declared_rung(read("width"), (32, 64, 128))
    assert shipped["oracle"]["readout"] == {**vars(recipe), "seeds": list(recipe.seeds)}


def test_oracle_gaps_beyond_noise_and_repeatable_over_zoo_retraining(shipped) -> None:
    """Criteria 2b (best − median source more than 5 × the readout's seed-to-seed noise for every
    target), 2c (≥ 6 group-1 models retrained from another seed; top-5 agreement ≥ 0.8 on the targets
    they cover) and 3 (the twins are in the zoo)."""
    v = oracle_validity(shipped["oracle"])
    assert len(v["own_rank"]) == 20 and min(v["gap_over_noise"].values()) > 5, v["gap_over_noise"]
    assert len(v["twinned"]) >= 6 and np.mean(list(v["retraining"].values())) >= 0.8, v["retraining"]
    assert set(v["twinned"]) == {e.name for e in build.GROUP3} <= set(shipped["specs"])


@pytest.mark.xfail(strict=True, reason="criterion 2a is not met by the shipped oracle: the own encoder is the best "
                                       "source for 12 of 20 targets, and vanishing_point's is 4th (docs/world.md, "
                                       "'How valid the oracle is')")
def test_oracle_own_encoder_is_best_for_18_of_20_targets_and_never_below_third(shipped) -> None:
    """Criterion 2a."""
    ranks = oracle_validity(shipped["oracle"])["own_rank"]
    assert sum(r == 1 for r in ranks.values()) >= 18 and max(ranks.values()) <= 3, ranks


@pytest.mark.slow
def test_shipped_oracle_is_reproduced_in_miniature(shipped) -> None:
    """The oracle's code, run from the shipped weights on the same scenes, gives the shipped readout
    losses: one image-level target from two sources (its own encoder and another), the first readout
    seed (each seed's readout is trained on its own, so one seed reproduces as both would)."""
    info = shipped["oracle"]
    recipe = oracle.ReadoutRecipe(**{**info["readout"], "seeds": (info["readout"]["seeds"][0],)})
    # Rendered in two processes, as the build renders them: rendering is most of this test's time.
    data = {split: build.render_set(n, build.SEEDS[split], "train", None, chunk=-(-n // 2))
            for split, n in (("train", recipe.n_train), ("test", 1000))}
    target, sources = "vanishing_point", ["vanishing_point", "room_layout"]
    models = {s: load_model(shipped["specs"][s]) for s in sources}
    result = oracle.measure_transfers(models, {s: s for s in sources}, [(target, s) for s in sources],
                                      data["train"], data["test"], recipe, progress=False)
    by_seed = np.asarray(info["transfer_loss_by_seed"])
    i = info["tasks"].index(target)
    # Within a quarter of the readout's seed-to-seed noise for this target (the unit of criterion 2b):
    # 1 000 Adam steps carry float32 rounding, which differs with the thread count and the CPU's kernels
    # (the shipped readouts were measured by one-thread workers on an AVX-512 CPU), into the third digit:
    # on an AMD EPYC machine room_layout's readout came out 0.15 noise units from the shipped one.
    noise = oracle_validity(info)["noise"][target]
    off = {(seed, s): abs(result.loss[seed][target][s] - by_seed[k, i, info["tasks"].index(s)]) / noise
           for k, seed in enumerate(recipe.seeds) for s in sources}
    assert max(off.values()) < 0.25, off


def test_training_is_deterministic() -> None:
    data = render_batch(16, seed=5)

    def trained() -> dict:
        torch.manual_seed(0)
        model = train.make_model("restasknet", "normals")
        train.train_model(model, "normals", data, 64, train.Recipe(steps=3, batch=4), log=False)
        return model.state_dict()

    first, second = trained(), trained()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-probe", "12"]) == 0
    printed = capsys.readouterr().out
    for row in ("saliency", "gradient_x_input", "lrp_epsilon", "svcca", "random", "oracle"):
        assert row in printed
    results = json.loads((out / "results.json").read_text())
    assert results["probe"]["n_images"] == 12
    evaluation = results["evaluation"]
    assert evaluation["n_candidates"] == len(results["group1"]) - 1
    assert evaluation["oracle"]["precision"][0] == 1.0
    for name, curves in evaluation["methods"].items():
        assert len(curves["precision"]) == evaluation["n_candidates"], name
        assert all(0.0 <= p <= 1.0 for p in curves["precision"])
    for f in ("pk_curves.png", "dendrogram_oracle.png", "heatmap_saliency.png", "grid_lrp_epsilon.png"):
        assert (out / f).stat().st_size > 1000
    assert set(results["trees"]) >= {"oracle", "saliency"}
