"""The confidence of a ranking: halves, stability, agreement, the restricted baselines,
the streamed half affinities, and the confidence through a ModelSpace, results.json and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

import modelspace
from modelspace.results import load
from modelspace.similarity import (
    DDS,
    RSA,
    Estimate,
    LinearCKA,
    RBFCKA,
    SVCCA,
    affinity_halves,
    affinity_halves_row,
    affinity_matrix,
    agreement,
    compare_halves,
    half_masks,
    judge,
    top_k,
    top_k_stability,
)
from modelspace.similarity import confidence as conf
from modelspace.similarity.baselines import _centre_gram, _u_centre, _zscore
from modelspace.space import ModelSpace
from modelspace.maps import Runtime
from support.maps import Reader, names, readers_for
from support.reports import toy_probe, toy_specs


# ------------------------------------------------------------------------------ the registered constants


def test_constants_are_the_registered_ones() -> None:
    path = modelspace.__file__.replace("__init__.py", "data/world/candidates.toml")
    with open(path, "rb") as fh:
        registered = tomllib.load(fh)["confidence"]
    assert (conf.K, conf.HALVES, conf.SEED, conf.MIN_IMAGES) == (
        registered["k"], registered["halves"], registered["seed"], registered["min_images"])
    assert conf.BANDS == registered["bands"]


def test_half_masks_are_seeded_draws_of_half_the_images() -> None:
    masks = half_masks(25)
    assert masks.shape == (20, 25) and (masks.sum(axis=1) == 12).all()
    rng = np.random.default_rng(0)
    for row in masks:  # one draw without replacement per half, one after another from default_rng(0)
        assert set(np.flatnonzero(row)) == set(rng.choice(25, 12, replace=False))
    assert not (masks == masks[0]).all(axis=1)[1:].all()


def test_bands_and_k_for_small_runs() -> None:
    assert [conf.band(c) for c in (0.8, 0.79, 0.6, 0.59)] == ["high", "medium", "medium", "low"]
    assert [conf.confidence_k(n) for n in (2, 3, 6, 7, 100)] == [0, 1, 4, 5, 5]
    assert conf.too_few_images(20) is None
    assert conf.too_few_images(12) == "confidence: not given: 12 probe images, fewer than the 20 its halves need"


# ------------------------------------------------------------------------------ stability and agreement


def flip_maps() -> list[np.ndarray]:
    """4 models × 4 images of 3 values. Against model 0 (e1 everywhere), per image:
    model 1's cosine is 1, 1, 0, 0 (mean 0.5), model 2's is 0.6 always, model 3's 0."""
    e1, e2, e3 = np.eye(3)
    m0 = np.stack([e1] * 4)
    m1 = np.stack([e1, e1, e2, e2])
    m2 = np.stack([0.6 * e1 + 0.8 * e2] * 4)
    m3 = np.stack([e3] * 4)
    return [m0, m1, m2, m3]


def test_stability_of_a_top_1_that_flips_on_one_half_of_three() -> None:
    # Worked by hand for target m0: on all images m2 (0.6) beats m1 (0.5). Half {0, 1}: m1 1.0 > m2 0.6,
    # a miss; half {2, 3}: m1 0 < 0.6, a hit; half {0, 2}: m1 0.5 < 0.6, a hit. S = 2/3.
    masks = np.zeros((3, 4), dtype=bool)
    for b, rows in enumerate([(0, 1), (2, 3), (0, 2)]):
        masks[b, list(rows)] = True
    full, halves = affinity_halves(readers_for(flip_maps()), 4, names(4), masks, progress=False)
    np.testing.assert_allclose(full[0], [1.0, 0.5, 0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(halves[:, 0, 1], [1.0, 0.0, 0.5], atol=1e-6)
    s = top_k_stability(full, halves, 1, names(4))
    assert s[0] == pytest.approx(2 / 3)
    assert top_k(full, names(4), 1)["m0"] == {"m2"}


def test_agreement_by_hand() -> None:
    tops = {"a": frozenset({"b", "c"}), "b": frozenset({"a", "c"})}
    others = [{"a": frozenset({"b", "d"}), "b": frozenset({"c", "d"})},
              {"a": frozenset({"c", "b"})}]  # ranks no "b": left out of b's mean
    assert agreement(tops, others, 2) == {"a": pytest.approx((0.5 + 1.0) / 2), "b": pytest.approx(0.5)}
    assert agreement(tops, [], 2) == {"a": None, "b": None}


def test_judge_pairs_each_kind_of_evidence_with_the_other() -> None:
    n = names(4)
    a = np.array([[1, .9, .5, .1], [.9, 1, .2, .3], [.5, .2, 1, .8], [.1, .3, .8, 1]])
    b = a[[0, 2, 1, 3]][:, [0, 2, 1, 3]]  # m1 and m2 swapped: a different ranking
    same_halves = np.stack([a, a])
    run = [Estimate("saliency", "method", n, a, same_halves), Estimate("lrp", "method", n, b, None, "no maps"),
           Estimate("dds", "baseline", n, b, np.stack([b, b])), Estimate("fused", "fusion", n, a, None, "a fusion")]
    judged = judge(run, 1)
    # saliency: S 1 (its halves agree with it); G against dds only (not lrp, the same kind)
    tops_a, tops_b = top_k(a, n, 1), top_k(b, n, 1)
    for t in n:
        g = float(tops_a[t] == tops_b[t])
        c = judged["saliency"][t]
        assert (c.stability, c.agreement, c.confidence) == (1.0, g, pytest.approx((1 + g) / 2))
        assert judged["lrp"][t].stability is None and "no maps" in judged["lrp"][t].note
        assert judged["lrp"][t].agreement == 1.0  # against dds, which ranks as it does
    # a fusion is judged by every other estimator: saliency, lrp and dds
    for t in n:
        expected = np.mean([float(tops_a[t] == o[t]) for o in (tops_a, tops_b, tops_b)])
        assert judged["fused"][t].agreement == pytest.approx(expected)
    # no estimator of the other kind: S alone
    alone = judge([Estimate("saliency", "method", n, a, same_halves)], 1)["saliency"]["m0"]
    assert (alone.confidence, alone.agreement, alone.band) == (1.0, None, "high")


# ------------------------------------------------------------------------------ streamed half affinities


def naive_halves(maps: list[np.ndarray], masks: np.ndarray, directions: int = 1) -> np.ndarray:
    """float64 reference: per half, the mean over its images of the per-image score of every pair."""
    flat = [m.reshape(len(m), -1).astype(np.float64) for m in maps]
    n, n_img = len(flat), len(flat[0])
    score = np.zeros((n_img, n, n))
    for k in range(n_img):
        for i in range(n):
            for j in range(n):
                if directions == 1:
                    u, v = flat[i][k], flat[j][k]
                    score[k, i, j] = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
                else:
                    gi, gj = flat[i][k].reshape(directions, -1), flat[j][k].reshape(directions, -1)
                    gi, gj = gi / np.linalg.norm(gi), gj / np.linalg.norm(gj)
                    score[k, i, j] = (np.linalg.norm(gi @ gj.T) ** 2
                                      / (np.linalg.norm(gi @ gi.T) * np.linalg.norm(gj @ gj.T)))
    return np.stack([score[mask].mean(axis=0) for mask in masks])


@pytest.mark.parametrize("directions", [1, 3])
def test_streamed_halves_equal_a_per_image_loop(directions: int) -> None:
    rng = np.random.default_rng(1)
    maps = [rng.normal(size=(23, directions, 8)) for _ in range(5)]
    masks = half_masks(23, halves=6, seed=3)
    readers = readers_for(maps)
    budget = 5 * directions * 8 * 4 * 4  # four images per chunk: six chunks, the last one short
    full, halves = affinity_halves(readers, 23, names(5), masks, memory_budget=budget, progress=False,
                                   directions=directions)
    assert all(max(stop - start for start, stop in r.calls[1:]) == 4 for r in readers)
    np.testing.assert_allclose(halves, naive_halves(maps, masks, directions), atol=2e-6)
    np.testing.assert_allclose(full, affinity_matrix(readers_for(maps), 23, names(5), progress=False,
                                                     directions=directions), atol=2e-6)


@pytest.mark.parametrize("directions", [1, 3])
def test_a_new_models_row_of_halves_equals_the_per_image_loop(directions: int) -> None:
    rng = np.random.default_rng(2)
    maps = [rng.normal(size=(23, directions, 8)) for _ in range(5)]
    masks = half_masks(23, halves=6, seed=3)
    budget = 5 * directions * 8 * 4 * 4  # four images per chunk, the last one short
    row, halves = affinity_halves_row(readers_for(maps[:1])[0], readers_for(maps[1:]), 23, names(5), masks,
                                      memory_budget=budget, progress=False, directions=directions)
    np.testing.assert_allclose(halves, naive_halves(maps, masks, directions)[:, 0, 1:], atol=2e-6)
    np.testing.assert_allclose(row, affinity_matrix(readers_for(maps), 23, names(5), progress=False,
                                                    directions=directions)[0, 1:], atol=2e-6)


def test_streamed_halves_refuse_an_empty_half() -> None:
    masks = np.zeros((2, 4), dtype=bool)
    masks[0, :2] = True
    with pytest.raises(modelspace.errors.InputError, match="hold no image"):
        affinity_halves([Reader(np.ones((4, 3), np.float32))], 4, ["m0"], masks, progress=False)


# ------------------------------------------------------------------------------ baselines on a half


def reps(seed: int = 0, n: int = 14, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, x @ rng.normal(size=(d, d + 3)) + 0.5 * rng.normal(size=(n, d + 3))


ROWS = np.array([0, 2, 3, 5, 8, 9, 11, 13])


@pytest.mark.parametrize("baseline", [RSA("correlation"), RSA("cosine"), RSA("euclidean"), LinearCKA()])
def test_restricted_prepared_form_scores_as_the_rows_activations(baseline) -> None:
    # exact: RSA's re-ranked pairs within the rows, linear CKA's features or Gram centred again
    for d in (4, 30):  # linear CKA keeps features when D < N, its Gram otherwise
        x, y = reps(d=d)
        got = baseline.compare(baseline.restrict(baseline.prepare(x), ROWS), baseline.restrict(baseline.prepare(y), ROWS))
        assert got == pytest.approx(baseline(x[ROWS], y[ROWS]), abs=1e-12)
    if isinstance(baseline, RSA):  # the prepared form itself, not only the score
        np.testing.assert_allclose(baseline.restrict(baseline.prepare(x), ROWS).data,
                                   baseline.prepare(x[ROWS]).data, atol=1e-12)


@pytest.mark.parametrize("debiased", [True, False])
def test_dds_restrict_is_the_centred_kernel_of_the_rows_with_the_z_scoring_held_fixed(debiased) -> None:
    x, _ = reps()
    dds = DDS(debiased=debiased)
    kernel = dds._kernel(_zscore(x / np.abs(x).max()), "x")  # the raw kernel of all images, z-scored over all
    centre = _u_centre if debiased else _centre_gram
    restricted = dds.restrict(dds.prepare(x), ROWS)
    np.testing.assert_allclose(restricted.data[0], centre(kernel[np.ix_(ROWS, ROWS)]), atol=1e-12)
    assert restricted.n_images == len(ROWS)


def test_rbf_cka_restrict_keeps_the_all_image_bandwidth_and_svcca_has_none() -> None:
    x, y = reps()
    rbf = RBFCKA()
    got = rbf.compare(rbf.restrict(rbf.prepare(x), ROWS), rbf.restrict(rbf.prepare(y), ROWS))
    assert 0.0 <= got <= 1.0 and abs(got - rbf(x[ROWS], y[ROWS])) < 0.1
    assert SVCCA().restrict(SVCCA().prepare(x), ROWS) is None
    assert compare_halves(SVCCA(), [SVCCA().prepare(x), SVCCA().prepare(y)], half_masks(14, 2)) is None
    halves = compare_halves(DDS(), [DDS().prepare(x), DDS().prepare(y)], half_masks(14, 3))
    assert halves.shape == (3, 2, 2) and np.allclose(halves[:, 0, 0], 1.0)


# ------------------------------------------------------------------------------ through a ModelSpace


def check_confidence(result, k: int) -> None:
    assert result.confidence_note == "" and set(result.confidence) == set(result.names)
    for c in result.confidence.values():
        parts = [v for v in (c["stability"], c["agreement"]) if v is not None]
        assert c["confidence"] == pytest.approx(np.mean(parts)) and c["band"] == conf.band(c["confidence"])
        assert all(0.0 <= v <= 1.0 for v in parts)
        if c["stability"] is not None:  # a whole number of hits out of 20 halves × k
            assert c["stability"] * k * 20 == pytest.approx(round(c["stability"] * k * 20))


@pytest.fixture(scope="module")
def judged_space(tmp_path_factory):
    store = tmp_path_factory.mktemp("confidence") / "store"
    space = ModelSpace(methods=["saliency", "gradient_x_input"], baselines=["dds", "svcca", "depara"], store=store,
                       runtime=Runtime(batch_size=8), progress=False)
    return space.fit(toy_specs(), toy_probe(n=24, size=24))


def test_every_estimator_of_a_space_gets_a_confidence(judged_space) -> None:
    k = 3  # five models: min(5, 5 - 2)
    for estimator in ("saliency", "gradient_x_input", "dds", "depara"):
        check_confidence(judged_space.results_[estimator], k)
        assert all(c["stability"] is not None for c in judged_space.results_[estimator].confidence.values())
    svcca = judged_space.results_["svcca"].confidence
    assert all(c["stability"] is None and "svcca cannot be recomputed" in c["note"] for c in svcca.values())
    # the method's G is its overlap with the three baselines' top-3
    tops = {e: top_k(r.affinity, r.names, k) for e, r in judged_space.results_.items()}
    for t, c in judged_space.results_["saliency"].confidence.items():
        expected = np.mean([len(tops["saliency"][t] & tops[judged_space.results_[b].id][t]) / k
                            for b in ("dds", "svcca", "depara")])
        assert c["agreement"] == pytest.approx(expected)


@pytest.mark.slow
def test_confidence_round_trips_through_results_json(judged_space, tmp_path) -> None:
    judged_space.save(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(written["confidence"]) == set(judged_space.results_)
    _, results, _ = load(tmp_path / "out")
    for estimator, r in judged_space.results_.items():
        assert results[estimator].confidence == r.confidence
        assert results[estimator].confidence_note == r.confidence_note


def test_too_few_probe_images_give_a_note_naming_the_count(tmp_path) -> None:
    space = ModelSpace(methods=["saliency"], baselines=["dds"], store=tmp_path / "s", runtime=Runtime(batch_size=8), progress=False)
    space.fit(toy_specs()[:4], toy_probe(n=12, size=24))
    for r in space.results_.values():
        assert r.confidence is None
        assert r.confidence_note == "confidence: not given: 12 probe images, fewer than the 20 its halves need"


def test_the_cli_prints_why_there_is_no_confidence(tmp_path, monkeypatch, capsys) -> None:
    from support.images import write_images
    from support.zoos import NETS, zoo_text
    from modelspace.cli import main

    (tmp_path / "mynets.py").write_text(NETS.format(extra=0))
    (tmp_path / "zoo.toml").write_text(zoo_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "mynets", raising=False)
    code = main(["run", str(tmp_path / "zoo.toml"), str(write_images(tmp_path / "probe", n=6)), "--methods",
                 "saliency", "--out", "res", "--store", "s", "--no-report"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "confidence: not given: 6 probe images, fewer than the 20 its halves need" in out
    saved = json.loads((tmp_path / "res" / "results.json").read_text())["confidence"]
    assert saved and all("6 probe images" in v["note"] for v in saved.values())
    __import__("sys").modules.pop("mynets", None)


def test_the_cli_summary_line_shows_the_band_with_s_and_g() -> None:
    from modelspace.cli import _confidence_text

    line = _confidence_text({"stability": 0.9, "agreement": None, "confidence": 0.9, "band": "high"})
    assert line == "   · confidence high 0.90 (S 0.90)"
    assert _confidence_text(None) == ""


def test_a_rerun_takes_the_halves_from_the_store_and_recompute_drops_them(tmp_path, monkeypatch) -> None:
    import modelspace.space as space_module

    def fit(**kw):
        return ModelSpace(methods=["saliency"], baselines=["dds"], store=tmp_path / "s", runtime=Runtime(batch_size=8), progress=False,
                          **kw).fit(toy_specs()[:4], toy_probe(n=24, size=24))

    first = fit()
    calls = []
    real = space_module.affinity_halves
    monkeypatch.setattr(space_module, "affinity_halves", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = fit()
    assert calls == []  # every half of every pair came from the pair cache: no map read for them
    assert again.results_["saliency"].confidence == first.results_["saliency"].confidence
    # its maps, affinities and half affinities are dropped; its row and the row's halves come back in one pass
    recomputed = fit(recompute=[toy_specs()[0].name])
    assert calls == [] and recomputed.results_["saliency"].confidence == first.results_["saliency"].confidence


def test_an_added_model_brings_its_row_of_halves(tmp_path, monkeypatch) -> None:
    import modelspace.space as space_module

    space = ModelSpace(methods=["saliency"], baselines=["dds"], store=tmp_path / "s", runtime=Runtime(batch_size=8), progress=False)
    space.fit(toy_specs()[:3], toy_probe(n=24, size=24))
    calls = []
    real = space_module.affinity_halves
    monkeypatch.setattr(space_module, "affinity_halves", lambda *a, **k: calls.append(1) or real(*a, **k))
    space.add(toy_specs()[3])
    assert calls == []  # one row and its halves, no pass over the whole matrix
    whole = ModelSpace(methods=["saliency"], baselines=["dds"], store=tmp_path / "t", runtime=Runtime(batch_size=8),
                       progress=False).fit(toy_specs()[:4], toy_probe(n=24, size=24))
    for target, c in whole.results_["saliency"].confidence.items():
        assert space.results_["saliency"].confidence[target]["stability"] == pytest.approx(c["stability"])


@pytest.mark.slow
def test_the_report_page_shows_each_targets_band_and_the_too_few_images_note(judged_space, tmp_path) -> None:
    from modelspace.report import from_space, write_report

    page = write_report(from_space(judged_space), tmp_path / "report.html").read_text(encoding="utf-8")
    dds = judged_space.results_["dds"]
    for target, c in dds.confidence.items():
        badge = f'{c["band"]} {c["confidence"]:.2f}</span>'
        assert badge in page, (target, badge)
        assert f'stability S {c["stability"]:.2f}, agreement G {c["agreement"]:.2f}' in page
    few = ModelSpace(methods=["saliency"], baselines=["dds"], store=tmp_path / "s2", runtime=Runtime(batch_size=8), progress=False)
    few.fit(toy_specs()[:4], toy_probe(n=12, size=24))
    page = write_report(from_space(few), tmp_path / "few.html").read_text(encoding="utf-8")
    assert "Confidence: not given: 12 probe images, fewer than the 20 its halves need." in page
    assert 'class="badge' not in page
