"""Attribution estimators beyond the seed paper, each against an
independent reference:

* ModelGiF's gradient field against Captum's IntegratedGradients (midpoint Riemann sum, 50
  steps) with the shuffled image as its baseline and Σ_c max_pos R_c as its target: float64,
  rtol 1e-7, atol 1e-12 (Captum makes its step fractions and sizes in float32: ~2e-8 relative).
* The K random channel directions of gradient_x_input_subspace against central finite
  differences of u_kᵀ mean_pos R (h = 1e-6, float64): rtol 1e-6, atol 1e-9, as the existing
  finite-difference test.
* The subspace affinity against a per-image, per-pair loop transcribing
  ‖G_i G_jᵀ‖²_F / (‖G_i G_iᵀ‖_F ‖G_j G_jᵀ‖_F) in float64: atol 1e-6 (the streamed version
  multiplies float32 rows); its invariances (rotation, scaling) against the closed form.
* `MapTransform` against a numpy transcription (explicit block loops): atol 1e-6 (float32 maps).
* A whole `ModelSpace` with the new methods, its matrices against the loop reference on its own
  stored maps: atol 1e-5 (the same float16 rows, float32 products).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.maps import names, readers_for
from modelspace.attribution import MapTransform, attribute, attribute_many, backward_groups, get_method, list_methods
from modelspace.errors import AttributionError, InputError
from modelspace.similarity import affinity_matrix, affinity_row
from modelspace.space import ModelSpace
from support.nets import cnn, inputs, probe_images, resnet, tiny_models
from support.runs import run

captum_attr = pytest.importorskip("captum.attr")


# ------------------------------------------------------------------------------ ModelGiF


def test_modelgif_baseline_is_one_pixel_permutation_for_every_channel_and_image() -> None:
    x = inputs(n=3, size=6)
    x0 = get_method("modelgif").baseline(x)
    # float64 random values are distinct: channel 0 of image 0 gives the permutation outright
    order = torch.argsort(x[0, 0].flatten())
    perm = order[torch.argsort(torch.argsort(x0[0, 0].flatten()))]  # x0.flat[q] == x.flat[perm[q]]
    assert not torch.equal(perm, torch.arange(36))
    torch.testing.assert_close(x0, x.flatten(2)[:, :, perm].view_as(x), rtol=0, atol=0)
    torch.testing.assert_close(get_method("modelgif").baseline(x[1:2]), x0[1:2], rtol=0, atol=0)  # batch-free
    assert not torch.equal(get_method("modelgif", seed=1).baseline(x), x0)


@pytest.mark.parametrize("build", [cnn, lambda: resnet("functional")], ids=["cnn", "resnet"])
def test_modelgif_matches_captum_integrated_gradients(build) -> None:
    net, x = build(), inputs(n=2, size=8)
    method = get_method("modelgif")
    assert method.steps == 50 and method.cost == 50

    def target(z: torch.Tensor) -> torch.Tensor:  # Σ_c max over positions of R_c, per sample
        return net(z).flatten(2).amax(dim=2).sum(dim=1)

    ref = captum_attr.IntegratedGradients(target).attribute(
        x, baselines=method.baseline(x), n_steps=50, method="riemann_middle")
    got = attribute(net, x, method)
    # Captum's step fractions and sizes are float32 (torch.linspace, .float()): ~2e-8 relative
    torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-12)
    # the stored field: its mean over the input channels
    torch.testing.assert_close(method.finish(got), ref.mean(dim=1, keepdim=True), rtol=1e-7, atol=1e-12)


# ------------------------------------------------------------------------------ several directions


GROUPS_OF_4_IN_3 = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)


@pytest.mark.parametrize("name", ["gradient_x_input_subspace", "gradient_x_input_groups"])
def test_subspace_maps_match_finite_differences_of_each_direction(name: str) -> None:
    net, x = cnn(), inputs(n=1, size=6)  # R has 4 channels
    method = get_method(name, directions=3, **({"seed": 5} if name.endswith("subspace") else {}))
    assert get_method(name).directions == 8 and get_method(name).cost == 8
    got = attribute(net, x, method)
    assert got.shape == (1, 3, 3, 6, 6)
    with torch.no_grad():
        u = method.channel_directions(net(x).shape[1])
        if name.endswith("groups"):  # the definition: the means of channels {0, 1}, {2}, {3}
            torch.testing.assert_close(u, GROUPS_OF_4_IN_3, rtol=0, atol=0)

        def f(z: torch.Tensor, k: int) -> torch.Tensor:
            return (u[k] * net(z).flatten(2).mean(dim=2)).sum()

        h, flat = 1e-6, x.reshape(-1)
        for k in range(3):
            numeric = torch.zeros_like(flat)
            for i in range(flat.numel()):
                plus, minus = flat.clone(), flat.clone()
                plus[i] += h
                minus[i] -= h
                numeric[i] = (f(plus.view_as(x), k) - f(minus.view_as(x), k)) / (2 * h)
            torch.testing.assert_close(got[:, k], x * numeric.view_as(x), rtol=1e-6, atol=1e-9)


def test_subspace_directions_are_seeded_gaussian_and_fixed() -> None:
    a, b = get_method("subspace"), get_method("subspace", seed=1)
    torch.testing.assert_close(a.channel_directions(6), get_method("subspace").channel_directions(6), rtol=0, atol=0)
    assert a.channel_directions(6).shape == (8, 6) and not torch.equal(a.channel_directions(6), b.channel_directions(6))
    with pytest.raises(InputError, match="directions"):
        get_method("subspace", directions=1)
    with pytest.raises(AttributionError, match="3 channels, fewer than directions = 8"):
        get_method("gxi_groups").channel_directions(3)


def reference_subspace_affinity(maps: list[np.ndarray], k: int) -> np.ndarray:
    """The definition, per image and pair, in float64: maps[m] is (Np, K·P)."""
    n, n_images = len(maps), maps[0].shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            total = 0.0
            for image in range(n_images):
                gi = maps[i][image].astype(np.float64).reshape(k, -1)
                gj = maps[j][image].astype(np.float64).reshape(k, -1)
                total += (np.linalg.norm(gi @ gj.T) ** 2
                          / (np.linalg.norm(gi @ gi.T) * np.linalg.norm(gj @ gj.T)))
            out[i, j] = total / n_images
    return out


@pytest.mark.parametrize("budget", [10**9, 1])  # one chunk; one image per chunk
def test_subspace_affinity_matches_the_definition(budget: int) -> None:
    rng = np.random.default_rng(0)
    k, p, n_images = 3, 7, 5
    raw = [rng.normal(size=(n_images, k * p)) for _ in range(4)]
    raw[1] = raw[0] + 0.3 * rng.normal(size=raw[0].shape)  # a near neighbour
    ref = reference_subspace_affinity(raw, k)
    got = affinity_matrix(readers_for(raw), n_images, names(4), directions=k, memory_budget=budget, progress=False)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert np.allclose(np.diag(got), 1.0, atol=1e-6) and (got > 0).all() and (got <= 1 + 1e-6).all()
    row = affinity_row(readers_for(raw)[2], readers_for(raw)[:2] + readers_for(raw)[3:], n_images, names(4),
                       directions=k, memory_budget=budget, progress=False)
    np.testing.assert_allclose(row, ref[2, [0, 1, 3]], atol=1e-6)


def test_subspace_affinity_ignores_rotations_and_scales_of_each_models_directions() -> None:
    rng = np.random.default_rng(1)
    k, p, n_images = 4, 9, 3
    raw = [rng.normal(size=(n_images, k * p)) for _ in range(3)]
    turned = []
    for m in raw:  # per image: G → c · Q G, Q orthogonal (K × K), c > 0
        rows = []
        for g in m.reshape(n_images, k, p):
            q, _ = np.linalg.qr(rng.normal(size=(k, k)))
            rows.append((rng.uniform(0.1, 10) * q @ g).reshape(-1))
        turned.append(np.array(rows))
    a = affinity_matrix(readers_for(raw), n_images, names(3), directions=k, progress=False)
    b = affinity_matrix(readers_for(turned), n_images, names(3), directions=k, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_subspace_affinity_refuses_rows_that_do_not_split_into_directions() -> None:
    raw = [np.ones((2, 10)), np.ones((2, 10))]
    with pytest.raises(InputError, match="directions"):
        affinity_matrix(readers_for(raw), 2, names(2), directions=3, progress=False)


# ------------------------------------------------------------------------------ map transforms


def reference_transform(maps: np.ndarray, channel_mean: bool, absolute: bool, pool: int) -> np.ndarray:
    out = maps.astype(np.float64)
    if channel_mean:
        out = out.mean(axis=1, keepdims=True)
    if absolute:
        out = np.abs(out)
    result = np.empty_like(out)
    s = out.shape[-1]
    for top in range(0, s, pool):
        for left in range(0, s, pool):
            block = out[..., top:top + pool, left:left + pool]
            result[..., top:top + pool, left:left + pool] = block.mean(axis=(-2, -1), keepdims=True)
    return result


@pytest.mark.parametrize("channel_mean, absolute, pool", [(False, False, 4), (True, False, 1), (False, True, 3),
                                                         (True, True, 4)])
def test_map_transform_matches_a_transcription(channel_mean: bool, absolute: bool, pool: int) -> None:
    maps = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(3))  # 10: edge blocks for 3 and 4
    got = MapTransform(channel_mean=channel_mean, absolute=absolute, pool=pool)(maps)
    np.testing.assert_allclose(got.numpy(), reference_transform(maps.numpy(), channel_mean, absolute, pool), atol=1e-6)


def test_pooled_maps_have_the_cosine_of_their_block_means() -> None:
    a, b = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4)).unbind(0)
    pooled = MapTransform(pool=4)
    small = [torch.nn.functional.avg_pool2d(m[None], 4)[0].flatten() for m in (a, b)]
    big = [pooled(m[None]).flatten() for m in (a, b)]
    assert float(torch.cosine_similarity(*big, dim=0)) == pytest.approx(
        float(torch.cosine_similarity(*small, dim=0)), abs=1e-6)


def test_map_transform_checks_its_arguments() -> None:
    with pytest.raises(InputError, match="pool"):
        MapTransform(pool=0)
    with pytest.raises(InputError, match="absolute"):
        MapTransform(absolute=1)
    with pytest.raises(InputError, match="must change the maps"):
        get_method("transformed", method="gxi")


def test_transformed_method_shares_the_inner_pass_and_keeps_its_store_key_apart() -> None:
    net, x = resnet("functional"), inputs()
    pooled = get_method("transformed(method='gxi',pool=2)")
    assert pooled.id == "transformed(method='gradient_x_input',pool=2)" and get_method(pooled.id).id == pooled.id
    assert pooled.plain_gradient and len(backward_groups([get_method("saliency"), pooled])) == 1
    maps = attribute_many(net, x, [get_method("saliency"), pooled])
    torch.testing.assert_close(maps[pooled.id], attribute(net, x, "gxi"), rtol=0, atol=0)  # finished at probe size
    lrp = get_method("transformed", method="lrp_epsilon(epsilon=0.01)", absolute=True)
    assert lrp.store_id == f"transformed(absolute=True,method='lrp_epsilon(epsilon=0.01)#rules{get_method('lrp').rules_version}')"
    assert not lrp.plain_gradient and lrp.cost == 1


def test_registry_reads_ids_back() -> None:
    assert get_method("lrp_epsilon(epsilon=0.01)").epsilon == 0.01
    assert get_method("modelgif(steps=4)").id == "modelgif(seed=0,steps=4)"
    for bad in ("modelgif(4)", "modelgif(steps=range(3))", "modelgif(steps=", "modelgif(**{})"):
        with pytest.raises(InputError, match="name\\(key=value"):
            get_method(bad)
    with pytest.raises(InputError, match="both"):
        get_method("modelgif(steps=4)", steps=5)
    assert {"modelgif", "gradient_x_input_subspace", "transformed"} <= set(list_methods())


# ------------------------------------------------------------------------------ in a ModelSpace


def test_new_methods_in_a_space_match_the_reference_on_their_stored_maps() -> None:
    methods = ["saliency", "modelgif(steps=4)", "gradient_x_input_subspace(directions=3)",
               "transformed(method='gxi',channel_mean=True,pool=3)"]
    models = tiny_models()
    space = ModelSpace(methods=methods, progress=False, on_error="raise").fit(models, probe_images())
    n = len(space.probe_)
    gif, sub, pooled = (get_method(m).id for m in methods[1:])
    assert {k: v.shape for k, v in space.maps(gif).items()}["m0"] == (n, 1, 12, 12)
    assert space.maps(sub)["m0"].shape == (n, 9, 12, 12) and space.maps(pooled)["m0"].shape == (n, 1, 12, 12)
    stored = [space.maps(sub)[m].reshape(n, -1) for m in space.results_[sub].names]
    np.testing.assert_allclose(space.results_[sub].affinity, reference_subspace_affinity(stored, 3), atol=1e-5)
    cos = [space.maps(gif)[m].reshape(n, -1) for m in space.results_[gif].names]
    ref = [[np.mean([u @ v / np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(a, b)]) for b in cos] for a in cos]
    np.testing.assert_allclose(space.results_[gif].affinity, ref, atol=1e-5)
    # one row added later is the full matrix's row (the subspace path of affinity_row)
    grown = ModelSpace(methods=methods[2:3], progress=False, sketch=8, on_error="raise").fit(models[:2], probe_images())
    grown.add(models[2])
    np.testing.assert_allclose(grown.results_[sub].affinity, space.results_[sub].affinity, atol=1e-6)


def test_cli_takes_ids_with_parameters(trial, capsys) -> None:
    """--methods takes ids; --epsilon configures only an ε-LRP named plainly."""
    methods = ["transformed(method='gxi',pool=2)", "lrp_epsilon(epsilon=0.01)", "lrp"]
    code, out, err = run(capsys, "affinity", str(trial["zoo"]), str(trial["probe"]), "--store", "s", "--out", "res",
                         "--methods", *methods, "--epsilon", "0.1", "--json", "--quiet")
    assert code == 0, err
    written = sorted(p.name for p in (trial["work"] / "res").glob("affinity_*.csv"))
    assert len(written) == 4 and "affinity_dds.csv" in written, written  # the three, and the default estimator
    assert "epsilon=0.01" in out and "epsilon=0.1" in out and "pool=2" in out
