"""Label-free rivals of the attribution affinity: DDS and DEPARA.

Each is checked against a transcription of its paper's definition written here with explicit
loops and explicit matrices (not the module's vectorised forms), plus the invariances the
definition implies. Tolerances: 1e-10 absolute on scores in [−1, 1] (float64 throughout; the
only differences are summation order).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from modelspace.errors import InputError
from modelspace.maps import encoder_activations
from modelspace.similarity import DDS, DEPARA, RSA, get_baseline, similarity_matrix
from modelspace.space import ModelSpace
from support.nets import probe_images, tiny_models

TOL = 1e-10



# ------------------------------------------------------------------------------ DDS reference


def reference_dds(x: np.ndarray, y: np.ndarray, kernel: str, debiased: bool, sigma: float = 0.5) -> float:
    """Dwivedi et al. (2020) as in their code: z-score each feature, kernel matrix, CKA with the
    U-centring of Székely & Rizzo (2014) (debiased) or H K H — every step an explicit loop."""

    def zscore(a):
        n, d = a.shape
        out = np.empty_like(a)
        for f in range(d):
            col = a[:, f]
            mean = sum(col) / n
            sd = np.sqrt(sum((v - mean) ** 2 for v in col) / n)
            out[:, f] = (col - mean) / sd
        return out

    def kernel_matrix(z):
        n, d = z.shape
        k = np.empty((n, n))
        dists = [np.sqrt(np.sum((z[i] - z[j]) ** 2)) for i in range(n) for j in range(i + 1, n)]
        median = np.median(dists)
        for i in range(n):
            for j in range(n):
                if kernel == "laplacian":
                    k[i, j] = np.exp(-np.sum(np.abs(z[i] - z[j])) / d)
                elif kernel == "rbf":
                    k[i, j] = np.exp(-np.sum((z[i] - z[j]) ** 2) / (2 * (sigma * median) ** 2))
                else:  # cosine, cosine_rdm
                    k[i, j] = z[i] @ z[j] / (np.linalg.norm(z[i]) * np.linalg.norm(z[j]))
        return k

    def centre(k):
        n = len(k)
        if not debiased:
            h = np.eye(n) - np.ones((n, n)) / n
            return h @ k @ h
        k = k.copy()
        np.fill_diagonal(k, 0)
        out = np.zeros_like(k)
        total = k.sum()
        for i in range(n):
            for j in range(n):
                if i != j:
                    out[i, j] = (k[i, j] - k[i].sum() / (n - 2) - k[:, j].sum() / (n - 2)
                                 + total / ((n - 1) * (n - 2)))
        return out

    kx, ky = kernel_matrix(zscore(x)), kernel_matrix(zscore(y))
    if kernel == "cosine_rdm":  # the authors' form: CKA of the dissimilarity matrices 1 − cos
        kx, ky = 1 - kx, 1 - ky
    a, b = centre(kx), centre(ky)
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


@pytest.mark.parametrize("debiased", [True, False])
@pytest.mark.parametrize("kernel", ["laplacian", "rbf", "cosine"])
def test_dds_matches_reference(rng, kernel, debiased):
    r = rng()
    x = r.standard_normal((9, 4)) * [1, 3, 0.2, 5] + [0, 2, -1, 7]
    y = np.tanh(x @ r.standard_normal((4, 6))) + 0.3 * r.standard_normal((9, 6))
    dds = DDS(kernel=kernel, debiased=debiased)
    assert dds(x, y) == pytest.approx(reference_dds(x, y, kernel, debiased), abs=TOL)
    assert dds(x, x) == pytest.approx(1.0, abs=TOL)
    if kernel == "cosine":
        assert dds(x, y) == pytest.approx(reference_dds(x, y, "cosine_rdm", debiased), abs=TOL)


def test_dds_defaults_and_id():
    dds = get_baseline("dds")
    assert (dds.kernel, dds.debiased) == ("cosine", True)
    assert dds.id == "dds(debiased=True,kernel='cosine')"
    assert DDS("rbf").id == "dds(debiased=True,kernel='rbf',sigma=0.5)"
    assert isinstance(get_baseline("duality_diagram"), DDS)


@pytest.mark.parametrize("kernel", ["laplacian", "rbf", "cosine"])
def test_dds_invariant_to_per_feature_affine_maps_and_permutations(rng, kernel):
    """z-scoring removes each feature's offset and (positive) scale; every kernel is symmetric in
    the features."""
    r = rng(1)
    x, y = r.standard_normal((12, 5)), r.standard_normal((12, 3))
    dds = DDS(kernel)
    scaled = x * r.uniform(0.01, 100, 5) + r.normal(0, 50, 5)
    assert dds(scaled, y) == pytest.approx(dds(x, y), abs=TOL)
    assert dds(x[:, r.permutation(5)], y) == pytest.approx(dds(x, y), abs=TOL)
    assert dds(x, scaled) == pytest.approx(1.0, abs=TOL)


def test_dds_drops_constant_features_and_checks_arguments(rng):
    x = rng(2).standard_normal((10, 3))
    padded = np.hstack([x, np.full((10, 2), 4.0)])
    assert DDS()(x, padded) == pytest.approx(1.0, abs=TOL)
    with pytest.raises(InputError, match="kernel"):
        DDS(kernel="linear")
    with pytest.raises(InputError, match="debiased"):
        DDS(debiased="yes")
    with pytest.raises(InputError, match="sigma"):
        DDS("rbf", sigma=-1)
    with pytest.raises(InputError, match="N >= 4"):
        DDS().prepare(x[:3], "m")


# ---------------------------------------------------------------------------- DEPARA reference


def edge_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2020), as their tools/spearman_edge.py: centre R over the images, cosine distances
    between images, Spearman's ρ of the two distance vectors (scipy)."""
    return spearmanr(pdist(x - x.mean(axis=0), "cosine"), pdist(y - y.mean(axis=0), "cosine")).statistic


def test_depara_edge_term_is_spearman_of_cosine_distances(rng):
    r = rng(3)
    x, y = r.standard_normal((10, 6)) + 2.0, r.standard_normal((10, 4))
    assert DEPARA()(x, y) == pytest.approx(edge_reference(x, y), abs=TOL)
    assert DEPARA().id == "depara(edge_weight=0.25,method='gradient_x_input')"


def test_depara_edge_term_invariances(rng):
    """Cosine distances between centred images do not change under an orthogonal map of the feature
    space, a translation or an isotropic scaling; they do change under a per-image rescaling."""
    r = rng(4)
    x = r.standard_normal((15, 6))
    q, _ = np.linalg.qr(r.standard_normal((6, 6)))
    depara = DEPARA()
    assert depara(x, 3.0 * x @ q) == pytest.approx(1.0, abs=TOL)
    assert depara(x, x + r.normal(0, 5, 6)) == pytest.approx(1.0, abs=TOL)
    assert depara(x, x * r.uniform(0.1, 10, (15, 1))) < 0.99


def test_depara_combines_affinity_and_edge_term(rng):
    r = rng(5)
    acts = [r.standard_normal((8, 5)) for _ in range(3)]
    affinity = np.array([[1.0, 0.4, 0.1], [0.4, 1.0, 0.7], [0.1, 0.7, 1.0]])
    s = similarity_matrix(acts, DEPARA(edge_weight=0.5), progress=False, affinity=affinity)
    for i in range(3):
        for j in range(3):
            edge = edge_reference(acts[i], acts[j])
            assert s[i, j] == pytest.approx((affinity[i, j] + 0.5 * edge) / 1.5, abs=TOL)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=TOL)  # scaled by 1 / (1 + λ): self-similarity 1
    with pytest.raises(InputError, match="affinity"):
        similarity_matrix(acts, "depara", progress=False)
    with pytest.raises(InputError, match="affinity"):
        similarity_matrix(acts, "depara", progress=False, affinity=affinity[:2, :2])
    with pytest.raises(InputError, match="affinity"):
        similarity_matrix(acts, "rsa", progress=False, affinity=affinity)
    with pytest.raises(InputError, match="method"):
        DEPARA(method="nope")
    with pytest.raises(InputError, match="edge_weight"):
        DEPARA(edge_weight=0)
    assert DEPARA(method="gxi").method == "gradient_x_input"


# ---------------------------------------------------------------------- DEPARA in a ModelSpace


def test_depara_in_a_space_is_node_plus_lambda_edge_over_one_plus_lambda():
    """The space's DEPARA matrix against the definition from the space's own maps and activations:
    node = mean over images of the maps' cosines (explicit loop), edge = scipy's Spearman."""
    models = tiny_models()
    space = ModelSpace(methods=["gxi"], baselines=[DEPARA(edge_weight=0.5)], progress=False)
    space.fit(models, probe_images())
    maps = space.maps("gradient_x_input")
    images = space.probe_.batch(0, len(space.probe_))
    acts = {m.name: encoder_activations(m, images, progress=False) for m in models}
    result = space.results_["depara"]
    assert result.kind == "baseline" and result.names == ["m0", "m1", "m2"]
    for i, a in enumerate(result.names):
        for j, b in enumerate(result.names):
            flat_a, flat_b = maps[a].reshape(len(images), -1), maps[b].reshape(len(images), -1)
            node = np.mean([u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) for u, v in zip(flat_a, flat_b)])
            edge = edge_reference(acts[a], acts[b])
            # float16 maps in the store (cosines within ~1e-3) and float32 activations (ranks of
            # nearly tied distances may swap): 1e-2 is the bound for this tiny case.
            assert result.affinity[i, j] == pytest.approx((node + 0.5 * edge) / 1.5, abs=1e-2)
    # exactly: (the method's affinity + λ · the cosine RSA of the same centred activations) / (1 + λ)
    edges = similarity_matrix([acts[n] - acts[n].mean(axis=0) for n in result.names], RSA("cosine"),
                              progress=False)
    np.testing.assert_allclose(1.5 * result.affinity - space.results_["gradient_x_input"].affinity, 0.5 * edges,
                               atol=1e-6)


def test_depara_needs_its_method_in_the_space():
    with pytest.raises(InputError, match="gradient_x_input"):
        ModelSpace(methods=["saliency"], baselines=["depara"], progress=False).fit(tiny_models(2), probe_images())
