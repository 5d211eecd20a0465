"""The fidelity study's measures on constructed inputs, and the study end to end in miniature."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modelspace.attribution import DEFAULT_METHODS, METHODS
from modelspace.errors import InputError
from modelspace.evaluation import BOOTSTRAP, Bootstrap, GroundTruth, evaluate, leave_one_target_out
from modelspace.similarity import BASELINES
from modelspace.space import DEFAULT_ESTIMATOR, default_estimators
from modelspace.world import build, study, which
from modelspace.world.demo import chance_same_task_rate, same_task_rate
from modelspace.world.photos import PHOTOS, photo_batch
from modelspace.world.textures import texture_batch

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def test_same_task_rate_and_chance() -> None:
    labels = ["a", "a", "b", "b", "c"]
    affinity = np.array([
        [1.0, 0.9, 0.1, 0.1, 0.1],   # a → a  (hit)
        [0.9, 1.0, 0.1, 0.1, 0.95],  # a → c  (miss)
        [0.1, 0.1, 1.0, 0.8, 0.2],   # b → b  (hit)
        [0.1, 0.1, 0.8, 1.0, 0.2],   # b → b  (hit)
        [0.1, 0.95, 0.2, 0.2, 1.0],  # c has no partner: not counted
    ])
    assert same_task_rate(affinity, labels) == pytest.approx(3 / 4)
    assert chance_same_task_rate(labels) == pytest.approx(1 / 4)  # one partner among 4 others
    queries = [False, True, True, False, True]  # asked: the second a (miss), the first b (hit); c skipped
    assert same_task_rate(affinity, labels, queries) == pytest.approx(1 / 2)
    assert chance_same_task_rate(labels, queries) == pytest.approx(1 / 4)
    assert np.isnan(same_task_rate(affinity, labels, [False, False, False, False, True]))


def test_textures_are_deterministic_and_cover_every_family() -> None:
    a, b = texture_batch(24, seed=1), texture_batch(24, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24, 64, 64, 3) and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a, texture_batch(24, seed=2))
    # image i depends on (seed, i) only
    np.testing.assert_array_equal(texture_batch(5, seed=1), a[:5])


@pytest.mark.slow
def test_study_in_miniature(tmp_path) -> None:
    # cheap candidates of every kind (the registered list's subspace and path methods cost 8-16 passes)
    fusion = "fusion(members=('dds','gradient_x_input'))"
    results = study.run_study(tmp_path, n_probe=20, sizes=(6, 12), domains=("train", "textures"), progress=False,
                              methods=("saliency", "gradient_x_input", "gradient_x_input(baseline='mean')"),
                              baselines=("svcca", "rsa", "dds", "depara", fusion),
                              label_scores=("logme", "hscore", "leep"), label_sizes=(12,), bootstrap=Bootstrap(n_resamples=200))
    assert set(results["domains"]) == {"train", "textures"}
    rows = results["domains"]["train"]["estimators"]
    assert {"saliency", "gradient_x_input", "svcca(variance=0.99)"} <= set(rows)
    for row in rows.values():
        assert 0 <= row["P@1"] <= 1 and -1 <= row["rho"] <= 1 and 0 <= row["same_task_nn"] <= 1
    assert set(results["probe_size_curve"]["saliency"]) == {6, 12}
    assert "symmetric_oracle_ceiling" in results["asymmetry"]
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("P@K / R@K") and "| saliency |" in table and "| random |" in table
    assert (tmp_path / "probe_size_curve.png").exists()
    # the "which estimator when" table: every study estimator on every domain, DEPARA's λ cross-validated
    which_rows = results["which"]["domains"]["textures"]["rows"]
    assert {"saliency", "rsa", "dds", "depara", "depara (λ by LOO-CV)", "hscore (n=12)"} <= set(which_rows)
    assert which_rows["depara (λ by LOO-CV)"]["kind"] == "cross-validated"
    assert which_rows["hscore (n=12)"]["labels"] == 12 and which_rows["hscore (n=12)"]["figures"]["P@5"]["n"] == 2
    assert which_rows["saliency"]["cost"] > 0 and which_rows["saliency"]["passes"] == 1
    assert which_rows["rsa"]["twin"]["n_twins"] == len(build.GROUP3)  # world v2's seed twins, each checked
    assert "leep" in results["which"]["domains"]["train"]["not_applicable"]
    assert "## Which estimator when" in table and "### Recommendation" in table
    assert results["which"]["default_estimator"] == DEFAULT_ESTIMATOR
    # the fusion is a candidate like the others, and the rule's choice is one of the label-free rows
    assert which_rows["fusion"]["kind"] == "label-free" and "## Every candidate on every domain" in table
    assert which_rows[results["which"]["supported_estimator"]]["kind"] in ("attribution", "label-free")
    # the confidence beside the realised P@5 of every group-1 target, per estimator and domain
    pairs = results["confidence"]["pairs"]
    assert {p["domain"] for p in pairs} == {"train", "textures"} and len({p["target"] for p in pairs}) == 20
    assert all(0 <= p["confidence"] <= 1 and p["realised"] in (0, 0.2, 0.4, 0.6, 0.8, 1) for p in pairs)
    assert "the confidence, validated" in table and "every eligible estimator, pooled" in table


# ------------------------------------------------------------------ the "which estimator when" table


def test_label_targets_keep_only_components_with_variance() -> None:
    # 40 two-class 8×8 label maps drawn from 3 distinct maps: their 4×4 class fractions (32 columns)
    # span 2 dimensions after centring, so 2 components, not LABEL_COLUMNS, carry every distance
    r = np.random.default_rng(0)
    maps = r.integers(0, 2, (3, 8, 8))
    label = maps[r.integers(0, 3, 40)]
    y = study._regression_targets(label, "dense_classification", 2)
    assert y.shape == (40, 2) and (y.std(axis=0) > 0).all()
    fractions = np.stack([label == k for k in (0, 1)], -1).reshape(40, 4, 2, 4, 2, 2).mean(axis=(2, 4)).reshape(40, -1)
    distances = np.linalg.norm(fractions[:, None] - fractions[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(y[:, None] - y[None], axis=-1), distances, atol=1e-12)


def test_bootstrap_summary_matches_a_direct_transcription() -> None:
    values = {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.25}
    s = which.summarise(values, Bootstrap(n_resamples=500, seed=3))
    # by hand: draw 4 targets with replacement 500 times, mean each draw, take the 2.5 / 97.5 percentiles
    v = np.array([1.0, 0.0, 0.5, 0.25])
    rng = np.random.default_rng(3)
    means = np.array([v[rng.integers(0, 4, size=4)].mean() for _ in range(500)])
    assert s["mean"] == pytest.approx(0.4375)
    assert (s["low"], s["high"]) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert s["sd"] == pytest.approx(np.std(v, ddof=1)) and s["n"] == 4
    assert (s["q25"], s["q75"]) == pytest.approx((0.1875, 0.625))
    assert which.summarise({}) is None


def test_paired_comparison_with_the_best() -> None:
    per_target = {
        "strong": {f"t{i}": 0.8 for i in range(10)},
        "close": {f"t{i}": 0.8 - 0.02 * (i % 2) for i in range(10)},  # 0.01 behind, on alternate targets
        "weak": {f"t{i}": 0.2 for i in range(10)},
    }
    per_target["strong"]["t0"] = 0.76  # a 0.02 lead that one target can undo
    best, diffs = which.compare_with_best(per_target, Bootstrap(n_resamples=1000))
    assert best == "strong"
    assert not diffs["close"].distinguishable  # 0.02 apart: not called different
    assert diffs["weak"].distinguishable and diffs["weak"].mean == pytest.approx(0.596)
    # paired: the difference's interval, by hand
    d = np.array([per_target["strong"][t] - per_target["close"][t] for t in per_target["strong"]])
    rng = np.random.default_rng(BOOTSTRAP.seed)
    means = d[rng.integers(0, 10, size=(1000, 10))].mean(axis=1)
    assert (diffs["close"].low, diffs["close"].high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    # a score defined on 2 targets is not the best of 10-target estimators however high its mean
    best, diffs = which.compare_with_best({**per_target, "two targets": {"t1": 1.0, "t2": 1.0}}, Bootstrap(n_resamples=100))
    assert best == "strong" and diffs["two targets"].mean == pytest.approx(-0.2)


def test_leave_one_target_out_by_hand() -> None:
    # λ=a is best on t1 and t2, λ=b on t3 only; leaving t3 out chooses a; leaving t1 (or t2) out,
    # a: (t2 + t3)/2 = (0.8 + 0.0)/2 = 0.4, b: (0.5 + 0.9)/2 = 0.7, so b
    scores = {"a": {"t1": 0.9, "t2": 0.8, "t3": 0.0}, "b": {"t1": 0.6, "t2": 0.5, "t3": 0.9}}
    cv = leave_one_target_out(scores)
    assert cv.chosen == {"t1": "b", "t2": "b", "t3": "a"}
    assert cv.per_target == {"t1": 0.6, "t2": 0.5, "t3": 0.0}
    assert cv.mean == pytest.approx(1.1 / 3)  # below both values' in-sample means (0.567, 0.667): no peeking
    assert cv.counts == {"b": 2, "a": 1}
    tie = leave_one_target_out({"first": {"x": 1.0, "y": 1.0}, "second": {"x": 1.0, "y": 1.0}})
    assert set(tie.chosen.values()) == {"first"}  # ties go to the value declared first
    with pytest.raises(InputError):
        leave_one_target_out({"a": {"t1": 1.0}})
    with pytest.raises(InputError):
        leave_one_target_out({"a": {"t1": 1.0, "t2": 0.0}, "b": {"t1": 1.0}})


def test_cross_validated_row_carries_every_figure_of_the_chosen_value() -> None:
    def figures(p5):
        return {m: {t: (v if m == "P@5" else 10 * v) for t, v in p5.items()} for m in which.METRICS}
    grid = {0.25: figures({"t1": 0.9, "t2": 0.8, "t3": 0.0}), 1.0: figures({"t1": 0.6, "t2": 0.5, "t3": 0.9})}
    row = which.cross_validated_row(grid)
    assert row["chosen"] == {"t1": 1.0, "t2": 1.0, "t3": 0.25}
    assert row["per_target"]["P@5"] == {"t1": 0.6, "t2": 0.5, "t3": 0.0}
    assert row["per_target"]["rho"] == {"t1": 6.0, "t2": 5.0, "t3": 0.0}


def test_per_target_figures_from_evaluation_details() -> None:
    truth = GroundTruth({"t": ["a", "b", "c", "d", "e", "f", "g"]})
    _, details = evaluate({"t": ["a", "g", "b", "f", "c", "d", "e"]}, truth)
    f = which.per_target_figures(details)
    assert f["P@1"]["t"] == 1.0 and f["P@3"]["t"] == pytest.approx(2 / 3)
    assert f["P@5"]["t"] == pytest.approx(3 / 5) and f["R@5"]["t"] == pytest.approx(3 / 5)
    assert f["rho"]["t"] == pytest.approx(details["t"]["spearman"])


def test_twin_check() -> None:
    names = ["a", "b", "c", "a@seed1", "b@seed1"]
    affinity = np.array([
        [1.0, 0.2, 0.1, 0.9, 0.3],
        [0.2, 1.0, 0.5, 0.1, 0.4],
        [0.1, 0.5, 1.0, 0.2, 0.6],
        [0.9, 0.1, 0.2, 1.0, 0.1],   # a's twin: nearest a (hit)
        [0.3, 0.4, 0.6, 0.1, 1.0],   # b's twin: nearest c (miss)
    ])
    check = which.twin_check(affinity, names)
    assert check["n_twins"] == 2 and check["nn_hits"] == 1 and check["nn_original"] == 0.5
    # twin a@seed1 vs a over the other non-twins (b, c): (0.1, 0.2) vs (0.2, 0.1): ρ = −1;
    # b@seed1 vs b over (a, c): (0.3, 0.6) vs (0.2, 0.5): ρ = 1
    assert check["rank_agreement"] == pytest.approx(0.0)
    none = which.twin_check(affinity[:3, :3], names[:3])
    assert none["n_twins"] == 0 and none["nn_original"] is None and none["rank_agreement"] is None
    assert "n/a" in which.format_which(_tiny_which(twin=none))


def test_cost_measurement_is_a_ratio_of_wall_times() -> None:
    now = [0.0]

    def work(seconds):  # advances a fake clock: the ratio is exact whatever the machine's load
        def run():
            now[0] += seconds
        return run

    assert which.measure_cost(work(3.0), work(1.5), repeats=2, clock=lambda: now[0]) == pytest.approx(2.0)
    # the real clock: a 50 ms call costs more than a 5 ms one, however busy the machine
    assert which.measure_cost(lambda: time.sleep(0.05), lambda: time.sleep(0.005), repeats=1) > 1.5
    with pytest.raises(InputError):
        which.measure_cost(lambda: None, lambda: None, repeats=0)


def _row(kind, p5, labels=0, cost=1.0, twin=None):
    per_target = {m: dict(p5) for m in which.METRICS}
    return {"id": kind, "kind": kind, "labels": labels, "cost": cost, "per_target": per_target,
            "same_task_nn": 0.5 if labels == 0 else None, "twin": twin}


def _tiny_which(twin=None) -> dict:
    targets = [f"t{i}" for i in range(8)]
    rows = {
        "saliency": _row("attribution", {t: 0.2 + 0.05 * (i % 2) for i, t in enumerate(targets)}, cost=1.0, twin=twin),
        "rsa": _row("label-free", {t: 0.6 for t in targets}, cost=0.4),
        "dds": _row("label-free", {t: 0.6 + (0.04 if i % 2 else -0.02) for i, t in enumerate(targets)}, cost=0.6),
        "logme (n=50)": _row("label-based", {t: 0.3 for t in targets}, labels=50, cost=0.3),
        "logme (n=1000)": _row("label-based", {t: 0.9 for t in targets}, labels=1000, cost=0.5),
    }
    which.summarise_rows(rows, Bootstrap(n_resamples=300))
    domains = {"train": {"rows": rows, "n_targets": 8, "random_p5": 5 / 7, "chance_same_task_nn": 0.1,
                         "not_applicable": {"leep": "needs a classifier head on every source"}}}
    recommendation, supported = which.recommend({"train": rows}, "saliency", Bootstrap(n_resamples=300))
    return {"domains": domains, "recommendation": recommendation, "supported_estimator": supported,
            "cv": {"depara λ": {"train": {"0.25": 6, "1": 2}}}, "notes": ["a note"], "n_resamples": 300}


def test_which_table_and_recommendation() -> None:
    data = _tiny_which()
    rows = data["domains"]["train"]["rows"]
    # the best is the best label-free row (dds, 0.61); label-based rows are compared with it
    assert rows["dds"]["best"] and not rows["logme (n=1000)"]["best"]
    assert rows["saliency"]["vs_best"]["mean"] == pytest.approx(0.61 - 0.225)
    assert rows["logme (n=1000)"]["vs_best"]["mean"] == pytest.approx(0.61 - 0.9)
    # dds (0.61) and rsa (0.60) cannot be told apart: the higher mean is recommended, the cheaper named
    rec = data["recommendation"]
    assert data["supported_estimator"] == "dds"
    assert rec["no labels"].startswith("`dds`") and "`rsa` (0.4× fwd+bwd)" in rec["no labels"]
    assert rec["many models"].startswith("`rsa`")
    assert "do not beat `dds`" in rec["few labels"]  # 50 labels: 0.3 < 0.6
    assert rec["many labels"].startswith("use the label-based score")  # 1000 labels: 0.9
    assert "these numbers support `dds`" in rec["default"]
    table = which.format_which(data)
    lines = table.splitlines()
    assert lines[0] == "## Which estimator when" and "### Probe domain: train" in lines
    header = next(line for line in lines if line.startswith("| estimator |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "estimator", "kind", "labels", "cost", "targets", "P@1", "P@3", "P@5", "R@5", "ρ", "NN", "twin NN", "twin ρ",
        "vs best (P@5)"]
    rsa = next(line for line in lines if line.startswith("| rsa |"))
    cells = [c.strip() for c in rsa.strip("|").split("|")]
    assert cells[:5] == ["rsa", "label-free", "0", "0.4", "8"] and cells[7] == "0.60 [0.60, 0.60]"
    assert cells[-1].startswith("= -0.01")  # behind dds by 0.01 on average, not distinguishable
    cell = {line.split("|")[1].strip(): line.strip("|").split("|")[-1].strip() for line in lines
            if line.startswith("| ") and "estimator" not in line}
    assert cell["dds"] == "best" and cell["saliency"].startswith("< -0.39")
    assert cell["logme (n=1000)"].startswith("> +0.29 [")  # ahead of dds on every target
    order = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and "estimator" not in line]
    assert order[:5] == ["saliency", "rsa", "dds", "logme (n=50)", "logme (n=1000)"]  # kinds in table order
    assert "| leep |" in table and "n/a: needs a classifier head" in table
    assert "### Recommendation" in table and "- depara λ: train: 0.25 (6), 1 (2)" in table


def test_default_estimator_is_one_constant_and_what_it_needs_is_computed() -> None:
    # named once, in space.py (the study's recommendation refers to it), and a registered estimator
    assert DEFAULT_ESTIMATOR in METHODS or DEFAULT_ESTIMATOR in BASELINES or DEFAULT_ESTIMATOR.startswith("fusion(")
    assert default_estimators(DEFAULT_METHODS, "saliency") == ([], [])  # a method already computed
    assert default_estimators(DEFAULT_METHODS, "gxi_subspace") == (["gxi_subspace"], [])  # a method to add
    assert default_estimators(DEFAULT_METHODS, "gxi_subspace", add_methods=False) == ([], [])  # the user chose
    assert default_estimators(DEFAULT_METHODS, "linear_cka") == ([], ["linear_cka"])
    assert default_estimators(DEFAULT_METHODS, "depara") == ([], ["depara"])
    assert default_estimators(["saliency"], "depara") == ([], [])  # its node method's maps are not computed
    assert default_estimators(DEFAULT_METHODS, "no_such_estimator") == ([], [])
    # a default nobody asked for never fails a run: DDS's debiased estimate needs 4 probe images
    assert default_estimators(DEFAULT_METHODS, "dds", n_images=3) == ([], [])
    assert default_estimators(DEFAULT_METHODS, "dds", n_images=4) == ([], ["dds"])
    # a fusion brings its members, or is left out with one of them
    fusion = "fusion(members=('dds','gradient_x_input_subspace'))"
    assert default_estimators(DEFAULT_METHODS, fusion) == (["gradient_x_input_subspace"], ["dds", fusion])
    assert default_estimators(DEFAULT_METHODS, fusion, n_images=3) == ([], [])
    assert default_estimators(["gradient_x_input_subspace"], fusion, add_methods=False) == ([], ["dds", fusion])


def test_study_command_passes_its_choices_to_run_study(monkeypatch, tmp_path, capsys) -> None:
    from modelspace.cli import main

    calls = []
    monkeypatch.setattr(study, "run_study", lambda out, **kw: calls.append((out, kw)) or {"table": "T"})
    assert main(["study", "--out", str(tmp_path), "--quiet"]) == 0
    assert calls[-1] == (str(tmp_path), {"progress": False})  # the module's defaults
    assert main(["study", "--out", str(tmp_path), "--quiet", "--n-probe", "32", "--methods", "gradient_x_input",
                 "modelgif", "--baselines", "rsa", "dds", "--no-labels"]) == 0
    assert calls[-1][1] == {"progress": False, "n_probe": 32, "methods": ["gradient_x_input", "modelgif"],
                            "baselines": ["rsa", "dds"], "label_scores": ()}
    assert main(["study", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "T\n"  # the table is the command's stdout


# ------------------------------------------------------------------ registration, rule, photos


def test_the_study_scores_exactly_the_registered_candidates() -> None:
    registered = tomllib.loads((Path(study.__file__).parents[1] / "data" / "world" / "candidates.toml").read_text(encoding="utf-8"))
    assert study.STUDY_METHODS == tuple(registered["candidates"]["methods"])
    assert study.STUDY_BASELINES == (*registered["candidates"]["baselines"], *registered["candidates"]["fusions"])
    assert list(study.DOMAINS) == registered["domains"]["names"] and study.N_PROBE == registered["domains"]["n_probe"]
    assert study.RULE_TIE == registered["rule"]["tie"] == which.TIE
    for name in study.STUDY_METHODS:
        METHODS.get(name)  # every candidate is a declared, configurable method
    for name in study.STUDY_BASELINES:
        BASELINES.get(name)


def test_registered_rule_takes_the_highest_minimum_over_domains() -> None:
    targets = [f"t{i}" for i in range(4)]

    def row(p5, rho=0.5, cost=1.0):
        r = _row("label-free", {t: p5 for t in targets}, cost=cost)
        r["per_target"]["rho"] = {t: rho for t in targets}
        return r

    # a: the higher mean (0.65) but a worse worst domain (0.40); b: 0.55 on both
    domains = {"train": {"a": row(0.9), "b": row(0.55)}, "photos": {"a": row(0.4), "b": row(0.55)}}
    choice, worst = which.registered_choice(domains, ["a", "b"])
    assert choice == "b" and worst == {"a": pytest.approx(0.4), "b": pytest.approx(0.55)}
    # within the tie (0.005) the higher mean ρ wins, then the lower cost
    domains = {"train": {"a": row(0.552, rho=0.4), "b": row(0.55, rho=0.6)}}
    assert which.registered_choice(domains, ["a", "b"])[0] == "b"
    domains = {"train": {"a": row(0.55, cost=2.0), "b": row(0.551, cost=0.5)}}
    assert which.registered_choice(domains, ["a", "b"])[0] == "b"
    domains = {"train": {"a": row(0.56, cost=2.0), "b": row(0.55, cost=0.5)}}  # 0.01 apart: not tied
    assert which.registered_choice(domains, ["a", "b"])[0] == "a"


def test_photos_are_deterministic_crops_of_every_photograph() -> None:
    a = photo_batch(18, seed=3, size=32)
    assert a.shape == (18, 32, 32, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, photo_batch(18, seed=3, size=32))
    np.testing.assert_array_equal(photo_batch(4, seed=3, size=32), a[:4])  # image i depends on (seed, i) only
    assert not np.array_equal(a, photo_batch(18, seed=4, size=32))
    # the greyscale photographs (camera, coins, brick: images 6-8 mod 9) have equal channels, the others not
    grey = [np.allclose(x[..., 0], x[..., 1]) and np.allclose(x[..., 1], x[..., 2]) for x in a]
    assert grey == [i % len(PHOTOS) >= 6 for i in range(18)]


def test_confidence_validation_by_hand() -> None:
    pairs = [{"confidence": c, "stability": s, "agreement": None, "realised": p}
             for c, s, p in [(0.9, 1.0, 0.8), (0.85, 0.9, 0.6), (0.7, 0.5, 0.4), (0.5, 0.6, 0.2), (0.3, 0.2, 0.4)]]
    v = which.validate_confidence(pairs, {"high": 0.8, "medium": 0.6}, Bootstrap(n_resamples=200))
    # ranks of C: 5 4 3 2 1; of P@5: 5 4 2.5 1 2.5 -> Spearman 0.8207826816681233
    assert v["signals"]["confidence"]["rho"] == pytest.approx(0.8207826816681233)
    assert v["signals"]["agreement"] is None  # undefined everywhere: no number
    assert v["bands"]["high"] == {"n": 2, "mean": pytest.approx(0.7)}
    assert v["bands"]["medium"] == {"n": 1, "mean": pytest.approx(0.4)}
    assert v["bands"]["low"] == {"n": 2, "mean": pytest.approx(0.3)}
    low, high = v["signals"]["confidence"]["low"], v["signals"]["confidence"]["high"]
    assert -1 <= low <= v["signals"]["confidence"]["rho"] <= high <= 1
