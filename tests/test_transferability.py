"""Label-based transferability scores, each against an independent transcription of
its paper's definition on a tiny case (explicit matrices and inverses, loops over classes and
images, a brute-force maximisation for LogME), and `ModelSpace.score_with_labels`.

Tolerances: 1e-10 absolute where both sides are closed forms in float64 (only the summation order
differs); LogME's fixed point against a grid search: the grid's best evidence may not exceed the
fixed point's by more than 1e-9 and falls short of it by less than 1e-6 (the grid is refined
around its best point down to steps of ~1e-4 in log α and log β, where the evidence is flat to
second order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modelspace.errors import AttributionError, InputError
from modelspace.maps import encoder_activations, source_probabilities
from modelspace.models.sources import LoadedModel
from modelspace.models.spec import ModelSpec
from modelspace.models.transforms import InputTransform
from modelspace.space import ModelSpace
from modelspace.transferability import (
    GBC,
    LEEP,
    NCE,
    SCORES,
    HScore,
    LogME,
    TransRate,
    cannot_rank,
    get_score,
    list_scores,
    logme_evidence,
)

TOL = 1e-10



# ---------------------------------------------------------------------------------------- LogME


def evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """You et al. (2021), eq. for L(α, β), with A and its inverse and determinant formed explicitly."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.inv(a) @ f.T @ y
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - np.log(np.linalg.det(a)) / 2)


def brute_force_max(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """max over (α, β) of the evidence by a 41 × 41 log grid over e^±12, refined five times
    (tenfold) around its best point: the last step is 6e-6 in log α and log β."""
    centre, half = np.zeros(2), 12.0
    best = (-np.inf, 0.0, 0.0)
    for _ in range(6):
        grid = np.linspace(-half, half, 41)
        for la in centre[0] + grid:
            for lb in centre[1] + grid:
                value = evidence(f, y, np.exp(la), np.exp(lb))
                if value > best[0]:
                    best = (value, la, lb)
        centre, half = np.array(best[1:]), half / 10
    return best[0], float(np.exp(best[1])), float(np.exp(best[2]))


def test_logme_fixed_point_is_the_evidence_maximum(rng):
    r = rng(0)
    y = np.array([0, 0, 0, 1, 1, 1])
    # 6 × 2: a noisy label and a noisy constant (LogME has no intercept), so that the maximum of the
    # evidence is inside the (α, β) plane for both one-hot columns (without the second feature it
    # can lie at α → ∞, where the fixed point runs off too)
    f = np.column_stack([y + 0.6 * r.standard_normal(6), 1 + 0.3 * r.standard_normal(6)])
    logme = LogME(max_iter=1000, tol=1e-12, eps=0)  # followed to convergence
    per_class = []
    for k in (0, 1):
        t = (y == k).astype(float)
        value, alpha, beta = logme.evidence(f, t)
        grid_best, grid_alpha, grid_beta = brute_force_max(f, t)
        assert value == pytest.approx(evidence(f, t, alpha, beta), abs=TOL)  # same L at the same (α, β)
        assert grid_best <= value + 1e-9
        assert value - grid_best < 1e-6
        assert alpha == pytest.approx(grid_alpha, rel=2e-3) and beta == pytest.approx(grid_beta, rel=2e-3)
        per_class.append(value / 6)
    assert logme(f, y) == pytest.approx(np.mean(per_class), abs=TOL)
    assert logme(f, np.array(["b", "b", "b", "a", "a", "a"])) == pytest.approx(logme(f, y), abs=TOL)


def test_logme_regression_and_more_features_than_images(rng):
    r = rng(2)
    f = r.standard_normal((6, 2))
    t = f @ [1.5, -0.5] + 0.3 * r.standard_normal(6)
    value = LogME(regression=True, max_iter=1000, tol=1e-12, eps=0)(f, t)
    grid_best, _, _ = brute_force_max(f, t)
    assert value * 6 == pytest.approx(grid_best, abs=1e-6)
    # D > N: the D − N zero eigenvalues of FᵀF enter log|A| as log α each
    wide = r.standard_normal((5, 8))
    target = r.standard_normal(5)
    for alpha, beta in ((0.7, 3.0), (20.0, 0.1)):
        assert logme_evidence(wide, target, alpha, beta) == pytest.approx(evidence(wide, target, alpha, beta),
                                                                          abs=TOL)
    # a target the features interpolate: β → ∞; the published rule stops it where the authors' does
    value, alpha, beta = LogME(regression=True).evidence(wide, wide[:, 0])
    assert (value, alpha, beta) == pytest.approx(published_rule(wide, wide[:, 0]), rel=1e-9)
    assert np.isfinite(value)
    runs_off = LogME(regression=True, max_iter=100, tol=1e-12, eps=0).evidence(wide, wide[:, 0])[2]
    assert runs_off > 1e3 * beta  # no maximum: without the stopping rule β grows without bound


def published_rule(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The stopping rule of LogME's released code, written out with explicit matrices: from α = β = 1,
    at most 11 updates α ← γ / (‖m‖² + 1e-5), β ← (n − γ) / (‖Fm − y‖² + 1e-5) with m, γ at the current
    (α, β), stopping once λ = α/β moves by at most 1e-3 (relative); L at the last (α, β)."""
    n, d = f.shape
    alpha, beta = 1.0, 1.0
    for _ in range(11):
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.inv(a) @ f.T @ y
        gamma = d - alpha * np.trace(np.linalg.inv(a))
        lam = alpha / beta
        alpha, beta = gamma / (m @ m + 1e-5), (n - gamma) / (np.sum((f @ m - y) ** 2) + 1e-5)
        if abs(alpha / beta - lam) <= 1e-3 * lam:
            break
    return evidence(f, y, alpha, beta), alpha, beta


def test_logme_default_is_the_published_stopping_rule(rng):
    r = rng(5)
    # n = 12 images, D = 4 (a maximum exists) and D = 20 (D > n: the features interpolate any target)
    for d in (4, 20):
        f = r.standard_normal((12, d))
        y = r.integers(0, 3, 12)
        expected = np.mean([published_rule(f, (y == k).astype(float))[0] / 12 for k in range(3)])
        assert LogME()(f, y) == pytest.approx(expected, rel=1e-9)
    converged = LogME(max_iter=1000, tol=1e-12, eps=0)
    assert LogME().id == "logme(regression=False)"
    assert converged.id == "logme(eps=0.0,max_iter=1000,regression=False,tol=1e-12)"
    with pytest.raises(InputError, match="eps"):
        LogME(eps=-1.0)


# --------------------------------------------------------------------------------------- H-score


def test_hscore_matches_explicit_covariances(rng):
    r = rng(3)
    y = r.integers(0, 3, 30)
    f = r.standard_normal((30, 4)) + np.eye(3, 4)[y] * 2
    mean = f.mean(axis=0)
    cov_f = sum(np.outer(v - mean, v - mean) for v in f) / 30
    class_mean = {k: f[y == k].mean(axis=0) for k in range(3)}
    cov_g = sum(np.outer(class_mean[k] - mean, class_mean[k] - mean) for k in y) / 30
    expected = np.trace(np.linalg.inv(cov_f) @ cov_g)
    assert HScore()(f, y) == pytest.approx(expected, abs=TOL)
    # tr(Σ_f⁻¹ Σ_g) does not change under an invertible linear map of the features
    a = r.standard_normal((4, 4)) + 3 * np.eye(4)
    assert HScore()(f @ a + 5.0, y) == pytest.approx(expected, abs=1e-8)


# ------------------------------------------------------------------------------------- TransRate


@pytest.mark.parametrize("dim", [10, 20, 22, 23, 24, 40])
def test_hscore_is_k_minus_1_exactly_where_it_declares_so(rng, dim):
    # H-score = tr(M P) (M: projector on the centred class indicators, P: on the column space of the
    # centred features), computed here from those projectors; it is K − 1 for any features exactly
    # where `degenerate` says so (D ≥ N − 1), and below it elsewhere.
    n, k = 24, 6
    y = np.repeat(np.arange(k), n // k)
    for seed in range(3):
        f = rng(seed).normal(size=(n, dim))
        fc = f - f.mean(axis=0)
        p = fc @ np.linalg.pinv(fc)
        onehot = np.eye(k)[y]
        m = onehot @ np.linalg.inv(onehot.T @ onehot) @ onehot.T - np.ones((n, n)) / n
        assert HScore()(f, y) == pytest.approx(np.trace(m @ p), abs=1e-8)
        saturated = np.trace(m @ p) > k - 1 - 1e-8
        assert saturated == bool(HScore().degenerate(n, k, dim)), (dim, seed)


@pytest.mark.parametrize("dim", [8, 23, 24, 48])
def test_logme_declares_where_the_features_interpolate_the_labels(rng, dim):
    # Where `degenerate` says so (D ≥ N), least squares fits every one-hot column exactly (no residual:
    # the evidence grows with β to no maximum), and the score depends on where the solver stops.
    n, k = 24, 4
    y = np.repeat(np.arange(k), n // k)
    f = rng(1).normal(size=(n, dim))
    onehot = np.eye(k)[y]
    residual = np.linalg.norm(f @ np.linalg.lstsq(f, onehot, rcond=None)[0] - onehot)
    declared = bool(LogME().degenerate(n, k, dim))
    assert (residual < 1e-8) == declared
    if declared:
        assert abs(LogME()(f, y) - LogME(max_iter=1000, tol=1e-12)(f, y)) > 1e-3


def test_cannot_rank_names_the_models_and_equal_values():
    dims = {"a": 30, "b": 8, "c": 40}
    values = {"a": 5.0, "b": 3.2, "c": 5.0}
    out = cannot_rank(HScore(), values, 24, 6, dims)
    assert out == [HScore().degenerate(24, 6, 30) + " (a, c: D = 30, 40)"]
    assert cannot_rank(HScore(), values, 24, 6, {m: 4 for m in values}) == []
    same = {"a": 5.0, "b": 5.0 * (1 + 1e-9), "c": 5.0 * (1 - 1e-9)}
    assert cannot_rank(TransRate(), same, 24, 6, dims) == ["every model scores 5, the same to within 1e-06"]
    near_zero = {"a": -1e-200, "b": -1e-150, "c": 0.0}  # GBC of separated classes: 0 for all, in effect
    assert cannot_rank(GBC(), near_zero, 24, 6, dims)[0].startswith("every model scores")
    assert cannot_rank(GBC(), {"a": -1.0, "b": -1.001}, 24, 6, dims) == []
    assert cannot_rank(LogME(), {"a": 0.1}, 24, 6, dims) == [LogME().degenerate(24, 6, 30) + " (every model: D = 30)"]


def test_transrate_matches_coding_rates_in_feature_space(rng):
    r = rng(4)
    y = np.array([0] * 5 + [1] * 4 + [2] * 3)
    eps = 1e-4
    for d in (3, 20):  # D < N (the module works in feature space) and D > N (in sample space)
        f = r.standard_normal((12, d)) + np.eye(3, d)[y]
        z = f - f.mean(axis=0)

        def rate(block):
            n = len(block)
            return 0.5 * np.log(np.linalg.det(np.eye(d) + block.T @ block / (n * eps)))

        expected = rate(z) - np.mean([rate(z[y == k]) for k in range(3)])
        assert TransRate()(f, y) == pytest.approx(expected, abs=1e-8)
    assert TransRate(eps=1e-2).id == "transrate(eps=0.01)"


# ------------------------------------------------------------------------------------------- GBC


def reference_gbc(f: np.ndarray, y: np.ndarray, covariance: str, floor: float = 1e-4) -> float:
    """Pándy et al. (2022): per-class Gaussians with explicit covariance matrices (variances floored
    at 1e-4 as in the authors' code), the Bhattacharyya distance with an explicit inverse and
    determinants, summed over ordered pairs of classes."""
    classes = sorted(set(y))
    gauss = {}
    for c in classes:
        rows = f[y == c]
        mu = rows.mean(axis=0)
        var = np.array([max(v, floor) for v in ((rows - mu) ** 2).mean(axis=0)])
        if covariance == "spherical":
            var = np.full_like(var, var.mean())
        gauss[c] = (mu, np.diag(var))
    total = 0.0
    for i in classes:
        for j in classes:
            if i == j:
                continue
            (mi, si), (mj, sj) = gauss[i], gauss[j]
            s = (si + sj) / 2
            db = ((mi - mj) @ np.linalg.inv(s) @ (mi - mj) / 8
                  + 0.5 * np.log(np.linalg.det(s) / np.sqrt(np.linalg.det(si) * np.linalg.det(sj))))
            total += np.exp(-db)
    return -total


@pytest.mark.parametrize("covariance", ["diagonal", "spherical"])
def test_gbc_matches_explicit_bhattacharyya(rng, covariance):
    r = rng(5)
    y = np.repeat([0, 1, 2], 4)
    f = r.standard_normal((12, 3)) * [1.0, 2.0, 0.5] + np.eye(3)[y] * 1.5
    assert GBC(covariance)(f, y) == pytest.approx(reference_gbc(f, y, covariance), abs=TOL)
    # a feature constant within one class (a dead channel there): its variance is floored
    f[y == 1, 2] = 0.25
    assert GBC(covariance)(f, y) == pytest.approx(reference_gbc(f, y, covariance), abs=TOL)


def test_gbc_two_identical_classes_and_errors():
    """Two classes with the same Gaussian overlap fully: BC = 1 each way, GBC = −2."""
    f = np.array([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0], [2.0, 3.0]])
    assert GBC("diagonal")(f, [0, 0, 1, 1]) == pytest.approx(-2.0, abs=TOL)
    with pytest.raises(InputError, match="2 images"):
        GBC()(np.arange(6.0).reshape(3, 2), [0, 0, 1])
    with pytest.raises(InputError, match="covariance"):
        GBC("full")


# ----------------------------------------------------------------------------------- LEEP and NCE

THETA = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])


def reference_leep(theta: np.ndarray, y: np.ndarray) -> float:
    """Nguyen et al. (2020), with explicit loops over images and label pairs."""
    n, z_classes = theta.shape
    labels = sorted(set(y))
    joint = {(a, z): sum(theta[i, z] for i in range(n) if y[i] == a) / n for a in labels for z in range(z_classes)}
    marginal = {z: sum(joint[a, z] for a in labels) for z in range(z_classes)}
    total = 0.0
    for i in range(n):
        total += np.log(sum(joint[y[i], z] / marginal[z] * theta[i, z] for z in range(z_classes)))
    return total / n


def test_leep_hand_computed_example(rng):
    """P̂(y, z) = [[.425, .075], [.125, .375]], P̂(z) = [.55, .45]; EEP = .71212, .65152, .65152,
    .71212; LEEP = ½ (ln .712121 + ln .651515) = −0.38398 (by hand, to 5 digits)."""
    y = np.array([0, 0, 1, 1])
    assert LEEP()(THETA, y) == pytest.approx(reference_leep(THETA, y), abs=TOL)
    assert LEEP()(THETA, y) == pytest.approx(-0.38398, abs=1e-5)
    r = rng(6)
    theta = r.dirichlet(np.ones(5), 20)
    labels = r.integers(0, 3, 20)
    assert LEEP()(theta, labels) == pytest.approx(reference_leep(theta, labels), abs=TOL)


def reference_nce(theta: np.ndarray, y: np.ndarray) -> float:
    """Tran et al. (2019): −H(Y | Z) over the empirical joint of (target label, source arg max)."""
    n = len(y)
    z = [int(np.argmax(row)) for row in theta]
    total = 0.0
    for a in set(y):
        for b in set(z):
            p_ab = sum(1 for i in range(n) if y[i] == a and z[i] == b) / n
            p_b = sum(1 for i in range(n) if z[i] == b) / n
            if p_ab > 0:
                total += p_ab * np.log(p_ab / p_b)
    return total


def test_nce_hand_computed_examples(rng):
    # the source label determines the target label: H(Y | Z) = 0
    assert NCE()(THETA, [0, 0, 1, 1]) == pytest.approx(0.0, abs=TOL)
    # z = 0, 0, 1, 1 and y = 0, 1, 1, 1: H(Y | Z = 0) = ln 2 with P(Z = 0) = ½, so NCE = −½ ln 2
    assert NCE()(THETA, [0, 1, 1, 1]) == pytest.approx(-0.5 * np.log(2), abs=TOL)
    r = rng(7)
    theta = r.dirichlet(np.ones(4), 25)
    labels = r.integers(0, 3, 25)
    assert NCE()(theta, labels) == pytest.approx(reference_nce(theta, labels), abs=TOL)


# --------------------------------------------------------------------------------- registry, errors


def test_registry_and_errors(rng):
    assert sorted(list_scores()) == ["gbc", "hscore", "leep", "logme", "nce", "transrate"]
    assert isinstance(get_score("h_score"), HScore)
    assert get_score("gbc").id == "gbc(covariance='spherical')"
    assert {n for n, cls in SCORES.items() if cls.takes == "probs"} == {"leep", "nce"}
    f = rng().standard_normal((6, 3))
    with pytest.raises(InputError, match="labels"):
        LogME()(f, [0, 1, 0])
    with pytest.raises(InputError, match="2 classes"):
        HScore()(f, [1] * 6)
    with pytest.raises(InputError, match="sum to 1"):
        LEEP()(np.ones((4, 2)), [0, 0, 1, 1])
    with pytest.raises(InputError, match="features"):
        TransRate()(np.ones(6), [0, 1] * 3)
    with pytest.raises(AttributionError, match="non-finite"):
        HScore()(np.where(f > 1, np.inf, f), [0, 1] * 3)
    with pytest.raises(InputError, match="unknown transferability score"):
        get_score("nope")
    with pytest.raises(InputError, match="eps"):
        TransRate(eps=0)


# ------------------------------------------------------------------------ ModelSpace.score_with_labels


class Tiny(nn.Module):
    def __init__(self, width: int, classes: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

    def forward(self, x):
        return self.head(self.encoder(x))


class NoHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.encoder(x)


def loaded(name: str, module: nn.Module) -> LoadedModel:
    return LoadedModel(spec=ModelSpec(name=name, source="python:x:y"), module=module.eval(), encoder="encoder",
                       transform=InputTransform((12, 12), (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)), key=f"key-{name}")


def test_score_with_labels_uses_pooled_features_and_the_head(rng):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        models = [loaded("a", Tiny(4)), loaded("b", Tiny(6)), loaded("headless", NoHead())]
    probe = rng(8).integers(0, 256, (4, 3, 12, 12), dtype=np.uint8)
    space = ModelSpace(methods=["saliency"], progress=False).fit(models, probe)
    target = rng(9).integers(0, 256, (10, 3, 12, 12), dtype=np.uint8)
    labels = ["cat", "dog"] * 5
    # fitted from LoadedModel objects (their spec names no loadable source): passed again, by name
    out = space.score_with_labels(target, labels, scores=["logme", "hscore", "gbc", "leep", "nce"], models=models)
    assert out is space.label_scores_
    assert set(out) == {"logme(regression=False)", "hscore", "gbc(covariance='spherical')", "leep", "nce"}
    assert set(out["leep"]) == set(out["nce"]) == {"a", "b"}  # no classifier head: left out, recorded
    assert any(f.model == "headless" and "classifier" in f.method for f in space.failures_)
    images = torch.from_numpy(target).float() / 255
    for model in models[:2]:
        feats = encoder_activations(model, images, progress=False, pool=True)
        with torch.no_grad():
            expected = model.module.encoder(model.transform(images)).mean(dim=(2, 3)).numpy()
        np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
        assert out["logme(regression=False)"][model.name] == pytest.approx(LogME()(feats, labels), abs=1e-9)
        assert out["hscore"][model.name] == pytest.approx(HScore()(feats, labels), abs=1e-9)
        probs = source_probabilities(model, images, progress=False)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        assert out["leep"][model.name] == pytest.approx(LEEP()(probs, labels), abs=1e-9)
    with pytest.raises(InputError, match="labels"):
        space.score_with_labels(target, labels[:4], models=models)
    with pytest.raises(InputError, match="models"):
        space.score_with_labels(target, labels, models=[loaded("stranger", Tiny(4))])
    with pytest.raises(InputError, match="scores"):
        space.score_with_labels(target, labels, scores="logme")


# ----------------------------------------------------------------------------------- CLI --labels

NETS = """
import torch
from torch import nn


def tiny(width=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
"""


def write_png(path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


def test_cli_labels_folder_and_csv(tmp_path, monkeypatch, capsys):
    import json
    import sys

    from modelspace.cli import main

    (tmp_path / "mynets.py").write_text(NETS)
    (tmp_path / "zoo.toml").write_text("".join(
        f'[[model]]\nname = "{n}"\nsource = "python:mynets:tiny"\ninput_size = 16\nkwargs = {{ seed = {i} }}\n\n'
        for i, n in enumerate(["a", "b"])))
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    for i in range(4):
        write_png(tmp_path / "probe" / f"{i}.png", i)
    for i in range(6):
        write_png(tmp_path / "labelled" / ("cat" if i % 2 else "dog") / f"{i}.png", 10 + i)
    try:
        code = main(["run", str(tmp_path / "zoo.toml"), str(tmp_path / "probe"), "--methods", "saliency",
                     "--no-report", "--out", str(tmp_path / "out"), "--labels", str(tmp_path / "labelled"),
                     "--label-scores", "logme", "hscore"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "label-based scores on 6 labelled images" in out
        scores = json.loads((tmp_path / "out" / "label_scores.json").read_text())
        assert set(scores) == {"logme(regression=False)", "hscore"} and set(scores["hscore"]) == {"a", "b"}
        # the same labels as a CSV beside the images give the same scores
        (tmp_path / "labelled" / "labels.csv").write_text(
            "image,label\n" + "".join(f"{'cat' if i % 2 else 'dog'}/{i}.png,{'cat' if i % 2 else 'dog'}\n"
                                      for i in range(6)))
        code = main(["run", str(tmp_path / "zoo.toml"), str(tmp_path / "probe"), "--methods", "saliency",
                     "--no-report", "--out", str(tmp_path / "out2"), "--labels",
                     str(tmp_path / "labelled" / "labels.csv"), "--label-scores", "logme", "hscore", "--quiet"])
        assert code == 0, capsys.readouterr().err
        again = json.loads((tmp_path / "out2" / "label_scores.json").read_text())
        for score in scores:
            for model in scores[score]:
                assert again[score][model] == pytest.approx(scores[score][model], abs=1e-9)
        (tmp_path / "bad.csv").write_text("image,label\nnope.png,cat\n")
        code = main(["run", str(tmp_path / "zoo.toml"), str(tmp_path / "probe"), "--no-report",
                     "--out", str(tmp_path / "out3"), "--labels", str(tmp_path / "bad.csv")])
        assert code == 2 and "nope.png" in capsys.readouterr().err
    finally:
        sys.modules.pop("mynets", None)
