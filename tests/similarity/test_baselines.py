"""Baseline estimators: closed forms on constructed data, independent reference implementations
(written here from the papers' definitions), the matrix driver, and encoder activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from torch import nn

from modelspace.similarity import (
    BASELINES,
    RSA,
    SVCCA,
    LinearCKA,
    RBFCKA,
    Similarity,
    get_baseline,
    similarity_matrix,
)
from modelspace.maps import encoder_activations
from modelspace.errors import AttributionError, InputError
from modelspace.models.sources import LoadedModel
from modelspace.models.spec import ModelSpec
from modelspace.models.transforms import InputTransform

#: the baselines made from activations (a fusion is made from other estimators' matrices: tests/similarity/test_fusion.py)
ALL = sorted(name for name in BASELINES if not BASELINES[name].combines_estimators)
#: those whose matrix needs nothing but the activations (DEPARA also takes an attribution affinity)
ACTIVATIONS_ONLY = [name for name in ALL if not BASELINES[name].uses_affinity]



def rotation(d: int, seed: int = 1) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------ references


def reference_svcca(x: np.ndarray, y: np.ndarray, variance: float = 0.99) -> float:
    """Raghu et al.: PCA to `variance`, then CCA from explicit covariance matrices."""

    def reduce(z: np.ndarray) -> np.ndarray:
        zc = z - z.mean(axis=0)
        evals, evecs = np.linalg.eigh(zc.T @ zc / (len(z) - 1))
        order = np.argsort(evals)[::-1]
        evals, evecs = evals[order], evecs[:, order]
        # The cumulative share can end a rounding error short of 1.0; with no entry reaching the
        # target, argmax would give 0, i.e. one direction instead of all of them.
        k = int(np.argmax(np.cumsum(evals) / evals.sum() >= variance - 1e-12)) + 1
        return zc @ evecs[:, :k]

    a, b = reduce(x), reduce(y)
    n = len(a)
    s_aa, s_bb, s_ab = a.T @ a / (n - 1), b.T @ b / (n - 1), a.T @ b / (n - 1)
    m = np.linalg.inv(s_aa) @ s_ab @ np.linalg.inv(s_bb) @ s_ab.T
    rho2 = np.sort(np.linalg.eigvals(m).real)[::-1][: min(a.shape[1], b.shape[1])]
    return float(np.sqrt(np.clip(rho2, 0, 1)).mean())


def gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in its N×N Gram form with an explicit centring matrix H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l)))


def feature_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in its feature-space form on centred data."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


# -------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("name", ALL)
def test_identical_and_isotropic_scaling_give_one(rng, name):
    x = rng().standard_normal((60, 12))
    b = get_baseline(name)
    assert b(x, x) == pytest.approx(1.0, abs=1e-10)
    assert b(x, 7.5 * x) == pytest.approx(1.0, abs=1e-10)
    assert b(x, 1e-30 * x) == pytest.approx(1.0, abs=1e-10)  # no underflow in the norms


@pytest.mark.parametrize("name", ["svcca", "linear_cka", "rbf_cka"])
def test_rotation_invariant(rng, name):
    x = rng().standard_normal((80, 10))
    assert get_baseline(name)(x, x @ rotation(10)) == pytest.approx(1.0, abs=1e-10)


def test_rsa_correlation_invariances(rng):
    """Correlation distance is invariant to rotations fixing the all-ones feature direction (e.g.
    feature permutations) and to per-image affine maps, but not to a general rotation."""
    x = rng().standard_normal((40, 8))
    rsa = RSA()
    assert rsa(x, x[:, rng(2).permutation(8)]) == pytest.approx(1.0, abs=1e-10)
    # a rotation of the subspace orthogonal to the ones vector, identity along it
    ones = np.ones((8, 1)) / np.sqrt(8)
    basis = np.linalg.qr(np.hstack([ones, rng(3).standard_normal((8, 7))]))[0][:, 1:]
    fixing = ones @ ones.T + basis @ rotation(7) @ basis.T
    assert rsa(x, x @ fixing) == pytest.approx(1.0, abs=1e-10)
    per_image = x * rng(4).uniform(0.5, 2, (40, 1)) + rng(5).normal(size=(40, 1))
    assert rsa(x, per_image) == pytest.approx(1.0, abs=1e-10)
    assert rsa(x, x @ rotation(8)) < 0.99
    # the cosine and euclidean RDMs are rotation invariant
    for metric in ("cosine", "euclidean"):
        assert RSA(metric)(x, x @ rotation(8)) == pytest.approx(1.0, abs=1e-10)


def test_independent_representations_score_low_related_high(rng):
    r = rng()
    x, y = r.standard_normal((1000, 10)), r.standard_normal((1000, 10))
    related = x @ r.standard_normal((10, 40)) + 0.05 * r.standard_normal((1000, 40))
    assert LinearCKA()(x, y) < 0.05
    assert SVCCA()(x, y) < 0.25
    for name in ALL:
        b = get_baseline(name)
        assert b(x, related) > 0.8, name
        assert b(x, related) > b(x, y) + 0.5, name


# ------------------------------------------------------------------------------ SVCCA


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svcca_matches_covariance_definition(rng, seed):
    r = rng(seed)
    # 8 strong directions and 4 faint ones: 0.9 / 0.99 drop some, 1.0 keeps all 12
    x = r.standard_normal((2000, 8)) @ r.standard_normal((8, 12)) + 0.01 * r.standard_normal((2000, 12))
    x = x * np.linspace(0.2, 3, 12)
    y = x[:, :6] @ r.standard_normal((6, 9)) + 0.5 * r.standard_normal((2000, 9))
    for variance in (0.9, 0.99, 1.0):
        ours = SVCCA(variance=variance)(x, y)
        assert ours == pytest.approx(reference_svcca(x, y, variance), abs=1e-6)


def test_svcca_keeps_top_variance_directions(rng):
    x = np.zeros((200, 3))
    x[:, 0] = rng().standard_normal(200) * 10
    x[:, 1] = rng(1).standard_normal(200) * 0.01  # 1e-6 of the variance: dropped at 0.99
    assert SVCCA(0.99).prepare(x).data.shape[1] == 1
    assert SVCCA(1.0).prepare(x).data.shape[1] == 2  # the zero column is never a direction


def test_svcca_handles_more_features_than_images(rng):
    r = rng()
    x = r.standard_normal((30, 500))
    y = x @ r.standard_normal((500, 400))
    assert SVCCA()(x, y) == pytest.approx(1.0, abs=1e-8)  # same 29-dimensional sample space


# ------------------------------------------------------------------------------ linear CKA


@pytest.mark.parametrize("shapes", [((50, 5), (50, 7)), ((20, 60), (20, 90)), ((30, 10), (30, 45))])
def test_linear_cka_forms_agree(rng, shapes):
    """Both prepared forms (features when D < N, Gram otherwise) and the mixed case agree with
    the explicit Gram form and the feature form."""
    r = rng()
    x = r.standard_normal(shapes[0]) + 3
    y = x[:, :1] * r.standard_normal((1, shapes[1][1])) + r.standard_normal(shapes[1])
    ours = LinearCKA()(x, y)
    assert gram_cka(x, y) == pytest.approx(feature_cka(x, y), abs=1e-10)
    assert ours == pytest.approx(gram_cka(x, y), abs=1e-10)


def test_linear_cka_invariances(rng):
    x = rng().standard_normal((100, 6))
    cka = LinearCKA()
    assert cka(x, -3 * x @ rotation(6)) == pytest.approx(1.0, abs=1e-10)
    assert cka(x, x * np.array([1, 1, 1, 1, 1, 10.0])) < 0.9  # non-isotropic scaling changes it


# --------------------------------------------------------------------------------- RBF CKA


def test_rbf_cka_matches_explicit_kernels(rng):
    r = rng()
    x, y = r.standard_normal((40, 5)), r.standard_normal((40, 70))
    y[:, :5] += 3 * x

    def kernel(z, sigma):
        d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
        median = np.median(d[np.triu_indices(len(z), 1)])
        return np.exp(-d**2 / (2 * (sigma * median) ** 2))

    for sigma in (0.4, 0.8, 2.0):
        h = np.eye(40) - 1 / 40
        k, l = h @ kernel(x, sigma) @ h, h @ kernel(y, sigma) @ h
        expected = np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))
        assert RBFCKA(sigma=sigma)(x, y) == pytest.approx(expected, abs=1e-10)


# -------------------------------------------------------------------------------------- RSA


@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean"])
def test_rsa_equals_spearman_of_pdist(rng, metric):
    r = rng()
    x, y = r.standard_normal((25, 30)), r.standard_normal((25, 300))
    y[:, :30] += x
    expected = spearmanr(pdist(x, metric=metric), pdist(y, metric=metric)).statistic
    assert RSA(metric)(x, y) == pytest.approx(expected, abs=1e-10)


# ---------------------------------------------------------------------------- matrix driver


@pytest.mark.parametrize("name", ACTIVATIONS_ONLY)
def test_similarity_matrix_symmetric_with_unit_diagonal(rng, name):
    r = rng()
    base = r.standard_normal((30, 6))
    acts = [base, base @ r.standard_normal((6, 9)), r.standard_normal((30, 40)), r.standard_normal((30, 3))]
    s = similarity_matrix(acts, name, progress=False)
    assert s.shape == (4, 4) and s.dtype == np.float64
    np.testing.assert_array_equal(s, s.T)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-10)
    b = get_baseline(name)
    assert s[0, 1] == pytest.approx(b(acts[0], acts[1]), abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(ACTIVATIONS_ONLY))
def test_similarity_matrix_bounded(data, name):
    n = data.draw(st.integers(max(3, BASELINES[name].min_images), 8))
    # RSA's correlation distance needs two features per image
    dims = data.draw(st.lists(st.integers(2 if name == "rsa" else 1, 6), min_size=1, max_size=3))
    elements = st.floats(-10, 10, allow_nan=False, width=32)
    # fill=nothing: every element drawn, rather than mostly one repeated fill value (constant inputs)
    acts = [data.draw(arrays(np.float32, (n, d), elements=elements, fill=st.nothing())) for d in dims]
    try:
        s = similarity_matrix(acts, name, progress=False)
    except AttributionError as exc:  # a degenerate input is reported, never a NaN
        assert exc.bad_names
        event("degenerate input")
        return
    assert np.isfinite(s).all()
    np.testing.assert_array_equal(s, s.T)
    low = -1.0 if name in ("rsa", "dds") else 0.0  # Spearman's ρ; DDS's debiased CKA
    assert ((s >= low) & (s <= 1.0)).all()
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-8)


def test_degenerate_representations_are_named(rng):
    r = rng()
    good = r.standard_normal((10, 4))
    constant = np.tile(r.standard_normal(4), (10, 1))
    with pytest.raises(AttributionError, match="'flat'") as info:
        similarity_matrix([good, constant, np.zeros((10, 4))], "cka", progress=False,
                          names=["good", "flat", "zero"])
    assert info.value.bad_names == ["flat", "zero"]
    with pytest.raises(AttributionError, match="non-finite"):
        LinearCKA().prepare(np.where(good > 1, np.nan, good), "m")
    with pytest.raises(AttributionError, match="constant across features"):
        RSA().prepare(np.hstack([good[:, :1], good[:, :1]]), "m")
    with pytest.raises(AttributionError, match="median"):
        RBFCKA().prepare(np.vstack([np.zeros((8, 2)), np.ones((2, 2))]), "m")


def test_input_errors(rng):
    x = rng().standard_normal((10, 4))
    with pytest.raises(InputError, match="activations"):
        similarity_matrix([], "cka", progress=False)
    with pytest.raises(InputError, match="different image counts"):
        similarity_matrix([x, x[:8]], "cka", progress=False)
    with pytest.raises(InputError, match="same probe images"):
        LinearCKA().compare(LinearCKA().prepare(x), LinearCKA().prepare(x[:8]))
    with pytest.raises(InputError, match="unknown baseline"):
        get_baseline("nope")
    with pytest.raises(InputError, match="bandwidth"):
        get_baseline("rbf_cka", bandwidth=1.0)
    with pytest.raises(InputError, match="variance"):
        SVCCA(variance=1.5)
    with pytest.raises(InputError, match="sigma"):
        RBFCKA(sigma=0)
    with pytest.raises(InputError, match="metric"):
        RSA(metric="manhattan")
    with pytest.raises(InputError, match="shape"):
        LinearCKA().prepare(np.ones(5), "vec")
    with pytest.raises(InputError, match="prepare"):
        LinearCKA().compare(x, x)


def test_registry_and_ids():
    assert isinstance(get_baseline("cka"), LinearCKA)
    assert get_baseline("svcca", variance=0.9).id == "svcca(variance=0.9)"
    assert get_baseline("linear_cka").id == "linear_cka"
    b = RBFCKA(sigma=0.5)
    assert get_baseline(b) is b
    assert all(issubclass(cls, Similarity) for cls in BASELINES.values())


def test_stacked_array_and_higher_rank_activations(rng):
    """An (M, N, ...) array is M representations; each is flattened per image."""
    acts = rng().standard_normal((3, 12, 2, 3))
    s = similarity_matrix(acts, "svcca", progress=False)
    flat = similarity_matrix([a.reshape(12, -1) for a in acts], "svcca", progress=False)
    np.testing.assert_allclose(s, flat, atol=1e-12)


# --------------------------------------------------------------------- encoder activations


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 2))

    def forward(self, x):
        return self.head(self.encoder(x))


def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    module = Tiny().eval()
    transform = InputTransform((16, 16), (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
    return LoadedModel(spec=ModelSpec(name="m", source="python:x:y"), module=module, encoder="encoder",
                       transform=transform, key="k")


def test_encoder_activations_equal_encoder_on_transformed_images():
    model = tiny_model()
    images = torch.rand(7, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    acts = encoder_activations(model, images, batch_size=3, progress=False)
    with torch.no_grad():
        expected = model.module.encoder(model.transform(images)).reshape(7, -1).numpy()
    assert acts.dtype == np.float32 and acts.shape == (7, 4 * 8 * 8)
    np.testing.assert_allclose(acts, expected, rtol=1e-5, atol=1e-6)


def test_encoder_activations_errors():
    model = tiny_model()
    with pytest.raises(InputError, match="images"):
        encoder_activations(model, torch.rand(3, 20, 20), progress=False)
    with pytest.raises(InputError, match="batch_size"):
        encoder_activations(model, torch.rand(2, 3, 20, 20), batch_size=0, progress=False)
    nan_images = torch.rand(4, 3, 20, 20)
    nan_images[2] = float("nan")
    with pytest.raises(AttributionError, match="'m'.*1 of 4"):
        encoder_activations(model, nan_images, progress=False)


# -------------------------------------------------------------------------- kept in a store


@pytest.mark.parametrize("name", ALL + ["linear_cka_features"])
def test_pack_unpack_gives_the_same_comparisons_and_restrictions(rng, name):
    """What a store keeps of a prepared form (`pack`, plain arrays) compares and restricts as the form does."""
    n, d = (40, 6) if name == "linear_cka_features" else (30, 50)  # CKA keeps features when D < N
    b = get_baseline("linear_cka" if name == "linear_cka_features" else name)
    x, y = rng().standard_normal((n, d)), rng(1).standard_normal((n, d))
    px, py = b.prepare(x, "x"), b.prepare(y, "y")
    ux = b.unpack(b.pack(px), "x")
    assert ux.what == "x" and ux.n_images == n
    assert b.compare(ux, py) == b.compare(px, py)
    rows = np.arange(0, n, 2)
    restricted = b.restrict(px, rows)
    if restricted is not None:
        assert b.compare(b.restrict(ux, rows), b.restrict(py, rows)) == b.compare(restricted, b.restrict(py, rows))
    with pytest.raises(InputError, match="prepared form of 'x'"):
        b.unpack({"n_images": np.asarray(n)}, "x")


def test_a_form_of_other_data_is_not_packed(rng):
    class Odd(Similarity):
        name = "odd"

        def _prepare(self, x, what):
            return {"mean": x.mean()}

    assert Odd().pack(Odd().prepare(rng().standard_normal((5, 3)), "x")) is None
