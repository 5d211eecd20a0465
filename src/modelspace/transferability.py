"""Label-based transferability scores: how well one model's features suit labelled target images.

Where the estimators of `similarity` compare models with one another and need no labels, these
score a single model against a target task for which the user has labelled images. They live in
their own module, beside `similarity` rather than in it, because they are a different kind of
thing: a function of (one model, labels) -> a number, not of (model, model) -> a matrix, with no
`prepare` / `compare` split, no tree and no ranking matrix. `ModelSpace.score_with_labels` runs
them on every model of a fitted space.

Every score is a small declaration with a fit-free ``__call__``; higher is better for all::

    LogME      You et al., ICML 2021       log marginal evidence of a Bayesian linear model on the
                                           features, maximised over its two precisions (α, β)
    HScore     Bao et al., ICIP 2019       tr(cov(f)⁻¹ cov(E[f | y]))
    TransRate  Huang et al., ICML 2022     coding rate of the features minus its class-conditional mean
    GBC        Pándy et al., CVPR 2022     −Σ Bhattacharyya coefficients between per-class Gaussians
    LEEP       Nguyen et al., ICML 2020    log expected empirical prediction of the source's head
    NCE        Tran et al., ICCV 2019      negative conditional entropy H(Y | Z) of target labels given
                                           the source head's hard labels

The first four take ``(features, labels)``: features an (N, D) array (`ModelSpace` uses the
global-average-pooled encoder output R), labels N class labels (any hashable values; LogME with
``regression=True`` takes float targets, (N,) or (N, K)). LEEP and NCE take
``(source_probs, labels)``: the source classifier's predicted distribution over its own Z classes,
an (N, Z) array whose rows sum to 1.

A score that gives every model the same value cannot rank them. `cannot_rank` says when: each score
declares the inputs on which its definition forces such a value (`TransferabilityScore.degenerate`,
e.g. H-score is K − 1 for any features of D >= N − 1 columns), and values equal to within the score's
`rtol` are flagged whatever the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .errors import AttributionError, InputError, check_bool, check_choice, check_float, check_int
from .registry import UNLESS_DEFAULT, Declared, Registry, param

__all__ = ["DEFAULT_SCORES", "GBC", "HScore", "LEEP", "LogME", "NCE", "SCORES", "TransRate", "TransferabilityScore",
           "cannot_rank", "get_score", "list_scores", "logme_evidence", "register_score"]

SCORES = Registry("transferability score")
register_score = SCORES.register

DEFAULT_SCORES: tuple[str, ...] = ("logme", "hscore", "transrate", "gbc")
"""The label-based scores computed unless others are asked for (`ModelSpace.score_with_labels`, the CLI's
``--label-scores``): those on features, which every model has; LEEP and NCE need a classifier head."""


class TransferabilityScore(Declared):
    """Base declaration: ``score(x, labels) -> float``, higher meaning a better transfer.

    `takes` says what x is: "features" (an (N, D) array) or "probs" (a source head's (N, Z)
    predicted distribution). Subclasses declare `_score` on checked float64 inputs and integer
    class indices 0..K−1 (or float targets, for a regression).
    """

    name: ClassVar[str]
    takes: ClassVar[str] = "features"
    rtol: ClassVar[float] = 1e-6
    """Models whose values are equal to within this (relative, and absolute below 1) are not told apart."""

    def degenerate(self, n_images: int, n_classes: int | None, dim: int) -> str:
        """Why this score's definition fixes its value whatever the model, or "".

        A score whose value the counts alone fix cannot rank models. The base declares no such condition.

        Parameters
        ----------
        n_images : int
            The labelled images.
        n_classes : int or None
            Their classes (None for regression targets).
        dim : int
            The columns of the score's input (feature dimension, or source classes).

        Returns
        -------
        str
            Why the value is fixed, for a message; "" when nothing fixes it.
        """
        return ""

    def __call__(self, x: Any, labels: Any) -> float:
        """Score one model on the labelled target images.

        Parameters
        ----------
        x : array_like
            With `takes` "features", an (N, D) array of N >= 2 images' features; with "probs", the source
            head's (N, Z) predicted distributions, rows summing to 1. A torch tensor is taken too.
        labels : array_like
            N class labels (any hashable values; `LogME` with ``regression=True`` takes float targets).

        Returns
        -------
        float
            The score; higher means a better transfer.

        Raises
        ------
        InputError
            Inputs of the wrong shape or type, probabilities that are not distributions, or labels
            that do not fit (`check_labels`).
        AttributionError
            Features that are not finite.
        """
        arr = _check_probs(x) if self.takes == "probs" else _check_features(x)
        y = self.check_labels(labels, len(arr))
        return float(self._score(arr, y))

    def check_labels(self, labels: Any, n: int) -> np.ndarray:
        """The labels checked, as class indices.

        Parameters
        ----------
        labels : array_like
            N class labels (any hashable values).
        n : int
            The number of images, N.

        Returns
        -------
        np.ndarray
            (N,) class indices 0..K−1, in sorted order of the labels.

        Raises
        ------
        InputError
            Not N labels in one dimension, or fewer than 2 classes.
        """
        arr = np.asarray(labels)
        if arr.ndim != 1 or len(arr) != n:
            raise InputError(f"labels: expected {n} labels (one per image), got shape {arr.shape}")
        classes, index = np.unique(arr, return_inverse=True)
        if len(classes) < 2:
            raise InputError(f"labels: expected at least 2 classes, got {len(classes)}")
        return index

    def _score(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError


def get_score(name: str | TransferabilityScore, **params: Any) -> TransferabilityScore:
    """A configured score from a name or alias.

    Parameters
    ----------
    name : str or TransferabilityScore
        'logme', 'hscore', 'transrate', 'gbc', 'leep', 'nce', an alias or an id with its parameters
        (``"logme(regression=True)"``), or a score (returned as is).
    **params
        The score's parameters (its fields).

    Returns
    -------
    TransferabilityScore
        The configured score.

    Raises
    ------
    InputError
        An unknown name, or a parameter the score does not take or refuses.
    """
    return SCORES.get(name, **params)


def list_scores() -> dict[str, str]:
    """Every registered score with a one-line description.

    Returns
    -------
    dict of str to str
        Per score name, sorted, the first line of its docstring.
    """
    return SCORES.describe()


def cannot_rank(score: TransferabilityScore, values: Mapping[str, float], n_images: int, n_classes: int | None,
                dims: Mapping[str, int]) -> list[str]:
    """Why the values of `score` cannot rank these models: [] when nothing says so.

    Parameters
    ----------
    score : TransferabilityScore
        The score the values are of.
    values : mapping of str to float
        Per model, its score.
    n_images, n_classes : int
        The labelled images and their classes (None for regression targets).
    dims : mapping of str to int
        Per model, the columns of the score's input (feature dimension, or source classes).

    Returns
    -------
    list of str
        The score's declared condition (`TransferabilityScore.degenerate`) for the models it holds
        for (named, unless it holds for all), and a note when every model's value is the same to
        within `score.rtol`.
    """
    reasons: dict[str, list[str]] = {}
    for model in values:
        reason = score.degenerate(n_images, n_classes, dims[model]) if model in dims else ""
        if reason:
            reasons.setdefault(reason, []).append(model)
    out = [f"{reason} ({'every model' if len(models) == len(values) else ', '.join(models)}: D = "
           f"{', '.join(str(dims[m]) for m in models)})" for reason, models in reasons.items()]
    v = np.array(list(values.values()), dtype=np.float64)
    if len(v) >= 2 and np.ptp(v) <= score.rtol * max(1.0, float(np.abs(v).max())):
        out.append(f"every model scores {float(np.median(v)):.6g}, the same to within {score.rtol:g}")
    return out


# -------------------------------------------------------------------------------- input checks


def _check_features(x: Any) -> np.ndarray:
    arr = _float_matrix(x, "features")
    if not np.isfinite(arr).all():
        raise AttributionError(f"features: {int((~np.isfinite(arr).all(axis=1)).sum())} image(s) have "
                               "non-finite features")
    return arr


def _check_probs(x: Any) -> np.ndarray:
    arr = _float_matrix(x, "source_probs")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise InputError("source_probs: expected finite probabilities >= 0")
    sums = arr.sum(axis=1)
    # float32 softmax rows sum to 1 within a few ulps; anything further off is not a distribution
    if np.abs(sums - 1).max() > 1e-4:
        raise InputError(f"source_probs: rows must sum to 1 (a predicted distribution, e.g. a softmax), "
                         f"got sums from {sums.min():.6g} to {sums.max():.6g}")
    return arr / sums[:, None]


def _float_matrix(x: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: not an array: {exc}") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise InputError(f"{what}: expected an (N, D) array of N >= 2 images, got shape {arr.shape}")
    return arr.astype(np.float64)


# -------------------------------------------------------------------------------------- scores


_LOGME_SOLVER = {"tol": 1e-3, "max_iter": 11, "eps": 1e-5}
"""LogME's stopping rule in its authors' released code (see `LogME`)."""


@register_score()
@dataclass(frozen=True, repr=False)
class LogME(TransferabilityScore):
    """LogME (You et al., ICML 2021): the maximised log evidence of a linear model, per image.

    For each target column y (one-hot columns of the K classes, or the K regression targets), the
    model y = F w + noise with prior w ~ N(0, α⁻¹ I_D) and noise N(0, β⁻¹) has log evidence::

        L(α, β) = n/2 log β + D/2 log α − n/2 log 2π − β/2 ‖F m − y‖² − α/2 ‖m‖² − 1/2 log |A|,

    A = α I + β FᵀF, m = β A⁻¹ Fᵀ y. It is maximised by the paper's fixed-point iteration
    (Algorithm 1, from MacKay's evidence framework), from α = β = 1:
    γ = Σ_i β σ_i² / (α + β σ_i²), α ← γ / (‖m‖² + ε), β ← (n − γ) / (‖F m − y‖² + ε), with σ_i² the
    eigenvalues of FᵀF, until λ = α / β changes by at most `tol` (relative), at most `max_iter` times.
    LogME = mean over the K columns of L / n.

    The paper iterates "until convergence" and does not say when to stop; the defaults are the
    authors' released code's (at most 11 steps, tol 1e-3 on λ, ε = 1e-5), so that scores are
    comparable with published ones. They matter where the evidence has no maximum inside the
    (α, β) plane: when the features interpolate the target (D >= n, or a target in F's column
    space) β grows without bound, and L is then the value where the iteration stops, finite but set
    by the stopping rule rather than by the data. ``LogME(max_iter=1000, tol=1e-12, eps=0)`` follows
    the iteration to the maximum where one exists. One SVD of F serves every column and iteration:
    O(n D min(n, D)) plus O(K min(n, D)) per iteration. Features are used as given (the paper does
    not normalise them).

    Where D >= n the features interpolate every target column, so the value is the solver's stopping
    rule's, not the data's (`degenerate`).

    Parameters
    ----------
    regression : bool, default False
        Labels are float regression targets, (N,) or (N, K), rather than class labels.
    tol : float, default 1e-3
        The iteration stops when λ = α / β changes by at most this (relative).
    max_iter : int, default 11
        At most this many fixed-point steps.
    eps : float, default 1e-5
        Added to the denominators of the α and β updates (0 allowed).

    Raises
    ------
    InputError
        A parameter of the wrong type or out of range.
    """

    name = "logme"

    def degenerate(self, n_images: int, n_classes: int | None, dim: int) -> str:
        """Why LogME's value is fixed: D >= N, where the features interpolate every label column.

        Parameters
        ----------
        n_images : int
            The labelled images.
        n_classes : int or None
            Their classes (None for regression targets).
        dim : int
            The columns of the score's input (feature dimension, or source classes).

        Returns
        -------
        str
            Why the value is fixed, for a message; "" when nothing fixes it.
        """
        if dim < n_images:
            return ""
        return (f"with D ≥ N = {n_images} features, the features interpolate every label column: the evidence has "
                "no maximum and the value is where the solver stops, not the data's; it needs more than D labelled "
                "images")

    regression: bool = False
    # the published stopping rule is the unnamed default
    tol: float = param(_LOGME_SOLVER["tol"], shown=UNLESS_DEFAULT)
    max_iter: int = param(_LOGME_SOLVER["max_iter"], shown=UNLESS_DEFAULT)
    eps: float = param(_LOGME_SOLVER["eps"], shown=UNLESS_DEFAULT)

    def __post_init__(self) -> None:
        self._set("regression", check_bool(self.regression, "logme: regression"))
        self._set("tol", check_float(self.tol, "logme: tol"))
        self._set("max_iter", check_int(self.max_iter, "logme: max_iter"))
        self._set("eps", check_float(self.eps, "logme: eps", zero=True))

    def check_labels(self, labels: Any, n: int) -> np.ndarray:
        """The labels checked: class indices, or with ``regression`` float targets.

        Parameters
        ----------
        labels : array_like
            N class labels, or with ``regression`` N targets, (N,) or (N, K).
        n : int
            The number of images, N.

        Returns
        -------
        np.ndarray
            (N,) class indices 0..K−1 in sorted order of the labels, or (N, K) float64 targets.

        Raises
        ------
        InputError
            Not N labels (fewer than 2 classes), or targets that are not N finite values per column.
        """
        if not self.regression:
            return super().check_labels(labels, n)
        arr = np.asarray(labels, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or len(arr) != n or not np.isfinite(arr).all():
            raise InputError(f"labels: expected {n} finite regression targets, (N,) or (N, K), got shape "
                             f"{np.shape(labels)}")
        return arr

    def _score(self, f: np.ndarray, y: np.ndarray) -> float:
        targets = y if self.regression else np.eye(int(y.max()) + 1)[y]
        svd = np.linalg.svd(f, full_matrices=False)
        return float(np.mean([self.evidence(f, t, svd)[0] / len(f) for t in targets.T]))

    def evidence(self, f: np.ndarray, y: np.ndarray, svd: tuple | None = None) -> tuple[float, float, float]:
        """Maximise the log evidence of one target column by the fixed-point iteration.

        Parameters
        ----------
        f : np.ndarray
            (n, D) features.
        y : np.ndarray
            (n,) one target column.
        svd : tuple, optional
            The thin SVD of f, ``(U, s, Vᵀ)``, when the caller has it.

        Returns
        -------
        evidence : float
            The log evidence L where the iteration stops (not divided by n).
        alpha : float
            The prior precision α there.
        beta : float
            The noise precision β there.
        """
        n = len(f)
        u, s, _ = np.linalg.svd(f, full_matrices=False) if svd is None else svd
        sigma2 = s ** 2
        uy = u.T @ y                               # y in the basis of F's left singular vectors
        rest = max(float(y @ y - uy @ uy), 0.0)    # the part of y outside F's column space: residual
        tiny = np.finfo(np.float64).tiny           # with eps = 0, a zero residual must not divide
        alpha, beta = 1.0, 1.0
        for _ in range(self.max_iter):
            # 1 − β σ²/(α + β σ²) computed as α/(α + β σ²): no cancellation when the fit is near exact
            keep = alpha / (alpha + beta * sigma2)
            gamma = float(np.sum(1 - keep))
            m2 = float(np.sum(((1 - keep) * uy) ** 2 / np.where(sigma2 > 0, sigma2, 1.0)))  # ‖m‖²
            res2 = float(np.sum((keep * uy) ** 2)) + rest                                  # ‖F m − y‖²
            new_alpha = gamma / max(m2 + self.eps, tiny)
            new_beta = (n - len(sigma2) + float(keep.sum())) / max(res2 + self.eps, tiny)  # (n − γ) / …
            lam, new_lam = alpha / beta, new_alpha / new_beta
            alpha, beta = new_alpha, new_beta
            if abs(new_lam - lam) <= self.tol * lam:
                break
        return logme_evidence(f, y, alpha, beta, (u, s)), alpha, beta


def logme_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float, svd: tuple | None = None) -> float:
    """LogME's log evidence L(α, β) of features for one target column (see `LogME`).

    Computed through the thin SVD of f.

    Parameters
    ----------
    f : np.ndarray
        (n, D) features.
    y : np.ndarray
        (n,) one target column.
    alpha : float
        The prior precision α of the weights.
    beta : float
        The noise precision β.
    svd : tuple, optional
        ``(U, s)`` (or the full thin SVD) of f, when the caller has it.

    Returns
    -------
    float
        L(α, β), not divided by n.
    """
    n, d = f.shape
    u, s = np.linalg.svd(f, full_matrices=False)[:2] if svd is None else svd[:2]
    sigma2 = s ** 2
    uy = u.T @ y
    rest = max(float(y @ y - uy @ uy), 0.0)
    keep = alpha / (alpha + beta * sigma2)
    m2 = float(np.sum(((1 - keep) * uy) ** 2 / np.where(sigma2 > 0, sigma2, 1.0)))
    res2 = float(np.sum((keep * uy) ** 2)) + rest
    # log|A|: the eigenvalues of A are α + β σ_i² for F's singular values and α for the other D − r
    log_det = float(np.sum(np.log(alpha + beta * sigma2))) + (d - len(sigma2)) * np.log(alpha)
    return float(n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                 - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)


@register_score("h_score")
@dataclass(frozen=True, repr=False)
class HScore(TransferabilityScore):
    """H-score (Bao et al., ICIP 2019): tr(cov(f)⁻¹ cov(E[f | y])).

    cov(f) is the covariance of the features over the images, cov(E[f | y]) that of each image's
    class mean (both with 1/n). The inverse is the Moore–Penrose pseudo-inverse, so that
    features with D >= N or collinear features (a singular covariance) keep a defined score.

    The score is tr(M P): P projects R^n onto the column space of the centred features, M onto the
    centred class indicators (rank K − 1), so it is at most K − 1, and exactly K − 1 whenever the
    centred features span every direction orthogonal to the constant, as D >= N − 1 features in
    general position do: then it is the same for every model (`degenerate`), and it takes more
    than D + 1 labelled images to tell models apart.
    """

    name = "hscore"

    def degenerate(self, n_images: int, n_classes: int | None, dim: int) -> str:
        """Why H-score's value is fixed: D >= N − 1 features, where it is K − 1 whatever the model.

        Parameters
        ----------
        n_images : int
            The labelled images.
        n_classes : int or None
            Their classes (None for regression targets).
        dim : int
            The columns of the score's input (feature dimension, or source classes).

        Returns
        -------
        str
            Why the value is fixed, for a message; "" when nothing fixes it.
        """
        if n_classes is None or dim < n_images - 1:
            return ""
        return (f"with D ≥ N − 1 = {n_images - 1} features, the centred features span every direction of the "
                f"{n_images} images, so H-score = K − 1 = {n_classes - 1} whatever the model; it needs more than "
                "D + 1 labelled images")

    def _score(self, f: np.ndarray, y: np.ndarray) -> float:
        fc = f - f.mean(axis=0)
        means = np.stack([fc[y == k].mean(axis=0) for k in range(int(y.max()) + 1)])
        g = means[y]  # each image's class mean (its mean over all images is 0: fc is centred)
        cov_f = fc.T @ fc / len(f)
        cov_g = g.T @ g / len(f)
        return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


@register_score()
@dataclass(frozen=True, repr=False)
class TransRate(TransferabilityScore):
    """TransRate (Huang et al., ICML 2022): R(Z, ε) − R(Z, ε | Y).

    With the features Z centred over the images, R(Z, ε) = ½ log det(I_D + ZᵀZ / (n ε)) is their
    coding rate and R(Z, ε | Y) = (1/K) Σ_k R(Z_k, ε) the mean rate of the K classes' features
    (each with its own n_k). ε = 1e-4 and the plain mean over classes are those of the code the paper
    publishes (its ε enters as n ε, i.e. the ε² of the paper's formula). The determinant is taken in
    the smaller of the feature and sample spaces (det(I_D + AᵀA) = det(I_n + AAᵀ)).

    No count of images, classes and features fixes its value (it moves with the features' singular
    values for any of them), so it declares no `degenerate` condition; `cannot_rank` still flags
    values equal across models.

    Parameters
    ----------
    eps : float, default 1e-4
        The distortion ε of the coding rate (entering as n ε).

    Raises
    ------
    InputError
        An ``eps`` that is not a finite number > 0.
    """

    name = "transrate"

    eps: float = 1e-4

    def __post_init__(self) -> None:
        self._set("eps", check_float(self.eps, "transrate: eps"))

    def _score(self, f: np.ndarray, y: np.ndarray) -> float:
        z = f - f.mean(axis=0)
        classes = range(int(y.max()) + 1)
        return self._rate(z) - float(np.mean([self._rate(z[y == k]) for k in classes]))

    def _rate(self, z: np.ndarray) -> float:
        n = len(z)
        gram = z @ z.T if n < z.shape[1] else z.T @ z
        _, logdet = np.linalg.slogdet(np.eye(len(gram)) + gram / (n * self.eps))
        return 0.5 * float(logdet)


@register_score()
@dataclass(frozen=True, repr=False)
class GBC(TransferabilityScore):
    """Gaussian Bhattacharyya coefficient (Pándy et al., CVPR 2022): −Σ_{i≠j} BC(c_i, c_j).

    Each class c is a Gaussian N(μ_c, Σ_c) fitted to its images' features, Σ_c diagonal (the
    per-feature variances) or spherical (σ_c² I, σ_c² their mean), the paper's two variants,
    spherical by default as in the authors' code. BC = exp(−D_B) with the Bhattacharyya distance
    D_B = ⅛ (μ_i − μ_j)ᵀ Σ⁻¹ (μ_i − μ_j) + ½ ln(det Σ / √(det Σ_i det Σ_j)), Σ = (Σ_i + Σ_j)/2,
    summed over ordered pairs of distinct classes: 0 at best (separated classes), more negative
    as classes overlap. Variances are the maximum-likelihood ones (1/n_c), floored at
    `min_variance` = 1e-4 as in the authors' code (a feature constant within a class, e.g. a dead
    ReLU channel, would otherwise make det Σ_c = 0).

    Two departures from the authors' code, both to keep to the paper's formula: for spherical
    Gaussians their code adds ½ ln of the scalar variances once rather than once per feature (the
    determinant of σ² I_D is σ^(2D)); here it is D times. And the paper first reduces the
    features by PCA to 64 dimensions in its experiments; that is not part of the score and is not
    done here.

    It saturates at 0 when every pair of classes lies far apart (each coefficient underflows), which
    the features decide, not the counts alone: no `degenerate` condition, and `cannot_rank` flags the
    equal values.

    Parameters
    ----------
    covariance : {"spherical", "diagonal"}, default "spherical"
        The form of each class's covariance.
    min_variance : float, default 1e-4
        The floor of each variance.

    Raises
    ------
    InputError
        An unknown ``covariance``, or a ``min_variance`` that is not a finite number > 0; when scoring,
        a class with fewer than 2 images.
    """

    name = "gbc"
    covariances: ClassVar[tuple[str, ...]] = ("diagonal", "spherical")

    covariance: str = "spherical"
    min_variance: float = param(1e-4, shown=UNLESS_DEFAULT)

    def __post_init__(self) -> None:
        check_choice(self.covariance, "gbc: covariance", self.covariances)
        self._set("min_variance", check_float(self.min_variance, "gbc: min_variance"))

    def _score(self, f: np.ndarray, y: np.ndarray) -> float:
        k = int(y.max()) + 1
        counts = np.bincount(y, minlength=k)
        if counts.min() < 2:
            raise InputError(f"labels: GBC fits a Gaussian per class and needs 2 images of each; class "
                             f"{int(np.argmin(counts))} (in sorted order) has {int(counts.min())}")
        mu = np.stack([f[y == c].mean(axis=0) for c in range(k)])
        var = np.stack([f[y == c].var(axis=0) for c in range(k)])
        var = np.maximum(var, self.min_variance)
        if self.covariance == "spherical":
            var = np.repeat(var.mean(axis=1, keepdims=True), f.shape[1], axis=1)
        total = 0.0
        for i in range(k):
            for j in range(i + 1, k):
                mean_var = (var[i] + var[j]) / 2
                distance = (np.sum((mu[i] - mu[j]) ** 2 / mean_var) / 8
                            + 0.5 * np.sum(np.log(mean_var) - 0.5 * (np.log(var[i]) + np.log(var[j]))))
                total += 2 * np.exp(-distance)  # BC is symmetric: (i, j) and (j, i)
        return -total


@register_score()
@dataclass(frozen=True, repr=False)
class LEEP(TransferabilityScore):
    """LEEP (Nguyen et al., ICML 2020): log expected empirical prediction.

    From the source head's predicted distributions θ(x_i) over its Z classes: the empirical joint
    P̂(y, z) = (1/n) Σ_{i: y_i = y} θ(x_i)_z, the conditional P̂(y | z) = P̂(y, z) / P̂(z), and

        LEEP = (1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z,

    the mean log-likelihood of the "expected empirical predictor". Source classes that no image
    gives any probability (P̂(z) = 0) contribute nothing and are left out.

    It reaches its bound 0 when the head's predictions determine the labels, which the head decides,
    not the counts: no `degenerate` condition (`cannot_rank` flags equal values).
    """

    name = "leep"
    takes = "probs"

    def _score(self, theta: np.ndarray, y: np.ndarray) -> float:
        onehot = np.eye(int(y.max()) + 1)[y]         # (n, K)
        joint = onehot.T @ theta / len(theta)         # (K, Z): P̂(y, z)
        marginal = joint.sum(axis=0)
        used = marginal > 0
        conditional = joint[:, used] / marginal[used]  # P̂(y | z)
        eep = np.sum(theta[:, used] * conditional[y], axis=1)
        return float(np.mean(np.log(eep)))


@register_score()
@dataclass(frozen=True, repr=False)
class NCE(TransferabilityScore):
    """NCE (Tran et al., ICCV 2019): the negative conditional entropy −H(Y | Z).

    Z is the source head's hard label of each image (the arg max of its predicted distribution),
    Y the target label; with P̂ the empirical joint distribution of the n pairs (y_i, z_i),
    NCE = Σ_{y, z} P̂(y, z) log P̂(y | z) (terms with P̂(y, z) = 0 are 0). 0 when the source label
    determines the target label; −H(Y) at worst. That bound is reached when each source label falls in
    one class, which the head decides, not the counts: no `degenerate` condition (`cannot_rank` flags
    equal values).
    """

    name = "nce"
    takes = "probs"

    def _score(self, theta: np.ndarray, y: np.ndarray) -> float:
        z = np.argmax(theta, axis=1)
        joint = np.zeros((int(y.max()) + 1, theta.shape[1]))
        np.add.at(joint, (y, z), 1.0 / len(y))
        marginal = joint.sum(axis=0)
        nz = joint > 0
        return float(np.sum(joint[nz] * np.log((joint / np.where(marginal > 0, marginal, 1.0))[nz])))
