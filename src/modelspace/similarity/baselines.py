"""Label-free baseline estimators: similarities between models' encoder activations.

Where the attribution pipeline compares *how* models look at the probe images, these baselines
compare *what* the models compute there: the encoder output R of every model on the same N
probe images, flattened to an (N, D) matrix per model (`maps.execution.activations`).

Every baseline is a short declaration over one mechanism (`Similarity`):

    p = baseline.prepare(x)        # once per model: checks, then centring / SVD / Gram / RDM
    s = baseline.compare(p, q)     # once per pair: cheap, on the prepared forms

so an M-model matrix (`similarity_matrix`) costs M preparations and M(M+1)/2 comparisons.

    SVCCA      Raghu et al., 2017      mean canonical correlation of the top-variance subspaces
    LinearCKA  Kornblith et al., 2019  centred kernel alignment with linear kernels
    RBFCKA     Kornblith et al., 2019  ... with RBF kernels, bandwidth relative to the median distance
    RSA        Kriegeskorte et al.,    Spearman correlation of representational dissimilarity
               2008                    matrices (upper triangles)
    DDS        Dwivedi et al., 2020    debiased CKA between kernel matrices of z-scored features
    DEPARA     Song et al., 2020       attribution affinity + λ · Spearman correlation of the
                                       images' cosine-distance matrices

DEPARA is the one estimator here that needs more than activations: its node term is the
attribution affinity of one of the space's methods. Such an estimator sets `uses_affinity`, names
the method in its `method` parameter, and `combine`s that method's (M, M) affinity with its own
activation matrix; `similarity_matrix(..., affinity=...)` and `ModelSpace` pass it in. Its
`compare` (and calling it) gives the activation term alone.

SVCCA, the CKAs and RSA are invariant to an isotropic scaling of a representation, so `prepare` first divides
by the largest magnitude: it keeps float64 sums of fourth powers (CKA's norms) from under- or
overflowing whatever the activations' scale. A representation that is constant across the images
carries no information about them and makes every score undefined: `prepare` raises
`AttributionError` naming it.

Some probe sets leave a baseline undefined for every model alike: fewer images than it needs
(`min_images`), copies of one image (every model's activations are then copies too), or, for the RBF
kernels, more coinciding pairs of images than distinct ones (a median distance of 0 as bandwidth).
`Similarity.undefined_on` says so from the probe set's repeated images (`ProbeSet.copies`) before any
model runs, and `ModelSpace` names such a baseline as not computed, with the reason, instead of
failing it on every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.stats import rankdata
from ..progress import progress as progress_bar

from ..attribution import METHODS
from ..errors import AttributionError, InputError, check_bool, check_choice, check_float
from ..registry import Declared, Registry, param

__all__ = [
    "BASELINES",
    "DDS",
    "DEPARA",
    "LinearCKA",
    "Prepared",
    "RBFCKA",
    "RSA",
    "SVCCA",
    "Similarity",
    "compare_all",
    "compare_halves",
    "get_baseline",
    "list_baselines",
    "register_baseline",
    "similarity_matrix",
]

BASELINES = Registry("baseline")
register_baseline = BASELINES.register


# ----------------------------------------------------------------------------------- the mechanism


@dataclass(frozen=True)
class Prepared:
    """One representation in a baseline's own precomputed form (`Similarity.prepare`).

    Parameters
    ----------
    baseline : str
        The name of the baseline that prepared it.
    what : str
        The representation's name (a model), for messages.
    n_images : int
        The number of probe images, N.
    data : object
        The precomputed form, private to the baseline.
    """

    baseline: str
    what: str
    n_images: int
    data: Any


class Similarity(Declared):
    """Base declaration: a symmetric similarity between two representations of the same N images.

    Subclasses declare `_prepare` (per-representation work on a checked float64 (N, D) matrix)
    and `_compare` (per-pair work on two prepared forms). `prepare` and `compare` are the checked
    public entry points; calling the object compares two raw representations.
    """

    name: ClassVar[str]
    #: the fewest images for which the baseline is defined
    min_images: ClassVar[int] = 2
    #: why it needs `min_images`, for the message of `undefined_on`
    min_images_why: ClassVar[str] = "it compares how representations vary across the images"
    #: whether the score also needs the attribution affinity of the method named by `self.method`
    #: (then `combine` makes the score from that affinity and the activation matrix)
    uses_affinity: ClassVar[bool] = False
    #: whether it is made from other estimators' matrices, not from activations (`fusion.Fusion`)
    combines_estimators: ClassVar[bool] = False
    #: raised whenever `_prepare` comes to compute something else, so that prepared forms kept in a
    #: store under the old code are never reused: part of `store_id`, not of `id`
    prepare_version: ClassVar[int] = 0

    def version(self) -> tuple[str, int]:
        """The store key's version: the version of the prepared form.

        Returns
        -------
        tuple of (str, int)
            ``("prepare", prepare_version)``.
        """
        return "prepare", self.prepare_version

    @property
    def store_id(self) -> str:
        """The baseline's part of the store key of its prepared forms (`identity.EstimatorId.store_key` at fp32)."""
        return self.ident.store_key

    def undefined_on(self, copies: Sequence[int]) -> str | None:
        """Why the baseline is undefined on a probe set whatever the models, or None when it is defined there.

        Copies of one image give copies of every model's activations, so the baseline needs `min_images`
        images and two distinct ones at least; `_undefined_on` adds what a baseline needs besides.

        Parameters
        ----------
        copies : sequence of int
            How many times each distinct image of the probe set occurs (`ProbeSet.copies`).

        Returns
        -------
        str or None
            The reason, for a message; None when the baseline is defined on the probe set.
        """
        n = int(sum(copies))
        if n < self.min_images:
            return (f"{self.name} needs at least {self.min_images} probe images ({self.min_images_why}); "
                    f"the probe set has {n}")
        if len(copies) == 1:
            return (f"the {n} probe images are all the same image, so every model's encoder activations are the "
                    f"same for all of them, and {self.name} compares how they vary across the images")
        return self._undefined_on(list(copies))

    def prepare(self, x: np.ndarray, what: str = "representation") -> Prepared:
        """Check an (N, ...) representation of N images and precompute what `compare` needs.

        Parameters
        ----------
        x : np.ndarray
            (N, ...) the representation of N >= `min_images` images (flattened to (N, D)); a torch
            tensor is taken too.
        what : str, default "representation"
            Names the representation (a model) in error messages.

        Returns
        -------
        Prepared
            The baseline's precomputed form.

        Raises
        ------
        InputError
            Not a real numeric array of N >= `min_images` images with a value each.
        AttributionError
            Non-finite values, all zeros, or the same for all images (no similarity is defined).
        """
        checked = _check_representation(x, what, self.min_images)
        return Prepared(self.name, what, checked.shape[0], self._prepare(checked, what))

    def compare(self, a: Prepared, b: Prepared) -> float:
        """The similarity of two prepared representations of the same images.

        Parameters
        ----------
        a, b : Prepared
            Forms from this baseline's `prepare`.

        Returns
        -------
        float
            The similarity (1 for a representation and itself, up to rounding).

        Raises
        ------
        InputError
            A form another baseline prepared, or forms of different image counts.
        """
        for arg, p in (("a", a), ("b", b)):
            if not isinstance(p, Prepared) or p.baseline != self.name:
                raise InputError(f"{self.name}: argument {arg!r} must come from {self.name}.prepare, "
                                 f"got {type(p).__name__}")
        if a.n_images != b.n_images:
            raise InputError(f"{self.name}: {a.what!r} has {a.n_images} images but {b.what!r} has "
                             f"{b.n_images}; both must describe the same probe images")
        return float(self._compare(a.data, b.data))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        """Similarity of two raw representations of the same N images.

        Parameters
        ----------
        x, y : np.ndarray
            (N, ...) representations, as `prepare` takes them.

        Returns
        -------
        float
            ``compare(prepare(x), prepare(y))``.
        """
        return self.compare(self.prepare(x, "x"), self.prepare(y, "y"))

    def combine(self, affinity: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The (M, M) score from a method's attribution affinity and this baseline's own matrix.

        Only estimators with `uses_affinity` use the affinity; the base returns ``matrix``.

        Parameters
        ----------
        affinity : np.ndarray
            (M, M) the attribution affinity of the method the baseline names, over the M models.
        matrix : np.ndarray
            (M, M) the baseline's own matrix over the same models, in the same order.

        Returns
        -------
        np.ndarray
            (M, M) the score.
        """
        return matrix

    def restrict(self, p: Prepared, rows: np.ndarray) -> Prepared | None:
        """The prepared form of the same representation on some of the probe images only.

        This is how `similarity.confidence` recomputes a baseline on a half of the probe images
        without the activations, which a space does not keep.

        Parameters
        ----------
        p : Prepared
            A form from this baseline's `prepare`.
        rows : np.ndarray
            Sorted, distinct indices of the images to keep (at least `min_images`).

        Returns
        -------
        Prepared or None
            The restricted form; None when this baseline cannot derive it from its prepared form.

        Raises
        ------
        InputError
            Rows that are not sorted distinct indices below N, or fewer than `min_images`.
        """
        rows = np.asarray(rows, dtype=np.intp)
        if rows.ndim != 1 or len(rows) < self.min_images or np.any(np.diff(rows) <= 0) \
                or rows[0] < 0 or rows[-1] >= p.n_images:
            raise InputError(f"{self.name}: rows must be {self.min_images} or more sorted, distinct indices "
                             f"below {p.n_images}")
        data = self._restrict(p.data, rows)
        return None if data is None else Prepared(self.name, p.what, len(rows), data)

    def pack(self, p: Prepared) -> dict[str, np.ndarray] | None:
        """A prepared form as named arrays, which a store keeps without pickling (`unpack` reverses it).

        A baseline whose `_prepare` returns something else than an array or a tuple of arrays, numbers
        and strings overrides both.

        Parameters
        ----------
        p : Prepared
            A form from this baseline's `prepare`.

        Returns
        -------
        dict of str to np.ndarray or None
            The arrays; None when the data is not of those kinds (then it is not kept).
        """
        items = p.data if isinstance(p.data, tuple) else (p.data,)
        arrays = {"n_images": np.asarray(p.n_images), "is_tuple": np.asarray(isinstance(p.data, tuple))}
        for i, item in enumerate(items):
            plain = isinstance(item, (str, float, int, np.floating, np.integer)) and not isinstance(item, bool)
            if not (plain or isinstance(item, np.ndarray) and item.dtype != object and item.ndim > 0):
                return None
            arrays[f"item{i}"] = np.asarray(item)
        return arrays

    def unpack(self, arrays: dict[str, np.ndarray], what: str) -> Prepared:
        """The prepared form `pack` gave ``arrays`` for.

        Parameters
        ----------
        arrays : dict of str to np.ndarray
            What `pack` returned.
        what : str
            Names the representation (a model) in messages.

        Returns
        -------
        Prepared
            The prepared form.

        Raises
        ------
        InputError
            Not the arrays of a prepared form.
        """
        try:
            items, i = [], 0
            while f"item{i}" in arrays:
                a = arrays[f"item{i}"]
                items.append(a.item() if a.ndim == 0 else a)
                i += 1
            data = tuple(items) if bool(arrays["is_tuple"]) else items[0]
            n_images = int(arrays["n_images"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"{self.name}: not the arrays of a prepared form of {what!r} ({exc!r})") from None
        return Prepared(self.name, what, n_images, data)

    # -- to declare

    def _prepare(self, x: np.ndarray, what: str) -> Any:
        raise NotImplementedError

    def _compare(self, a: Any, b: Any) -> float:
        raise NotImplementedError

    def _restrict(self, data: Any, rows: np.ndarray) -> Any:
        """The prepared form restricted to the images `rows`; None: not derivable (the default)."""
        return None

    def _undefined_on(self, copies: list[int]) -> str | None:
        """`undefined_on` beyond the image counts: None (the default), or why the baseline is undefined."""
        return None


def get_baseline(name: str | Similarity, **params: Any) -> Similarity:
    """A configured baseline from a name or alias, or the object as is.

    Parameters
    ----------
    name : str or Similarity
        'svcca', 'cka', 'rbf_cka', 'rsa', ..., an alias or an id with its parameters
        (``"dds(kernel='rbf')"``), or a baseline (returned as is).
    **params
        The baseline's parameters (its fields).

    Returns
    -------
    Similarity
        The configured baseline.

    Raises
    ------
    InputError
        An unknown name, or a parameter the baseline does not take or refuses.
    """
    return BASELINES.get(name, **params)


def list_baselines() -> dict[str, str]:
    """Every registered baseline with a one-line description.

    Returns
    -------
    dict of str to str
        Per baseline name, sorted, the first line of its docstring.
    """
    return BASELINES.describe()


def similarity_matrix(
    activations: Sequence[np.ndarray],
    baseline: str | Similarity,
    progress: bool = True,
    names: Sequence[str] | None = None,
    affinity: np.ndarray | None = None,
) -> np.ndarray:
    """The (M, M) float64 matrix of a baseline between M representations of the same N images.

    Parameters
    ----------
    activations : sequence of np.ndarray
        M representations (N, ...) of the same N images, or a stacked (M, N, ...) array.
    baseline : str or Similarity
        The baseline, or its name, alias or id (`get_baseline`).
    progress : bool, default True
        Show progress bars.
    names : sequence of str, optional
        Labels the representations in error messages (default ``activations[i]``).
    affinity : np.ndarray, optional
        The (M, M) attribution affinity of the same models, in the same order, for a baseline with
        `uses_affinity` (DEPARA), and refused for any other.

    Returns
    -------
    np.ndarray
        (M, M) float64, exactly symmetric; the diagonal is each representation's computed
        self-similarity (1 up to rounding).

    Raises
    ------
    InputError
        No activations, mismatched image counts, a bad baseline, bad names, or an affinity missing,
        refused or of the wrong shape.
    AttributionError
        One or more degenerate representations; the message names every one,
        and ``err.bad_names`` lists them so that a caller can drop them.
    """
    baseline = get_baseline(baseline)
    if baseline.uses_affinity and affinity is None:
        raise InputError(f"affinity: {baseline.name} combines an attribution affinity with the activations; "
                         "pass the (M, M) affinity of its method")
    if affinity is not None and not baseline.uses_affinity:
        raise InputError(f"affinity: {baseline.name} uses the activations only; pass affinity=None")
    if isinstance(activations, np.ndarray) and activations.ndim >= 2:
        activations = list(activations)  # a stacked (M, N, D) array is M representations
    if len(activations) == 0:
        raise InputError("activations: expected at least one representation")
    m = len(activations)
    if names is None:
        names = [f"activations[{i}]" for i in range(m)]
    if isinstance(names, str) or len(names) != m:
        raise InputError(f"names: expected {m} names (one per representation), got "
                         f"{1 if isinstance(names, str) else len(names)}")

    prepared: list[Prepared] = []
    failures: list[tuple[str, str]] = []
    for x, what in progress_bar(list(zip(activations, names)), desc=f"{baseline.name} · prepare", unit="model",
                        disable=not progress, leave=False):
        try:
            prepared.append(baseline.prepare(x, what))
        except AttributionError as exc:  # collected, so one error names every degenerate model
            failures.append((what, str(exc)))
    if failures:
        err = AttributionError(f"{baseline.name}: {len(failures)} degenerate representation(s): "
                               + "; ".join(msg for _, msg in failures))
        err.bad_names = [what for what, _ in failures]
        raise err
    counts = {p.n_images for p in prepared}
    if len(counts) > 1:
        listing = ", ".join(f"{p.what!r}: {p.n_images}" for p in prepared)
        raise InputError(f"activations: representations of different image counts ({listing})")

    matrix = compare_all(baseline, prepared, progress)
    if affinity is None:
        return matrix
    affinity = np.asarray(affinity, dtype=np.float64)
    if affinity.shape != (m, m):
        raise InputError(f"affinity: expected an ({m}, {m}) matrix (one row per representation), "
                         f"got shape {affinity.shape}")
    return baseline.combine(affinity, matrix)


def compare_halves(baseline: Similarity, prepared: Sequence[Prepared], masks: np.ndarray,
                   progress: bool = False) -> np.ndarray | None:
    """`compare_all` on each of several subsets of the images (`Similarity.restrict`).

    A pair undefined on a subset (a representation constant there) scores -1, the bottom of any ranking.
    For `uses_affinity` baselines this is the activation term alone, as `compare_all` is.

    Parameters
    ----------
    baseline : Similarity
        The baseline that prepared the forms.
    prepared : sequence of Prepared
        M prepared representations of the same N images.
    masks : np.ndarray
        (B, N) boolean: each row marks one subset of the images.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    np.ndarray or None
        (B, M, M), one matrix per subset; None when the baseline cannot be restricted (or B is 0).
    """
    out = []
    for mask in progress_bar(np.asarray(masks, dtype=bool), desc=f"{baseline.name} · halves", unit="half",
                             disable=not progress, leave=False):
        rows = np.flatnonzero(mask)
        restricted = [baseline.restrict(p, rows) for p in prepared]
        if any(r is None for r in restricted):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(compare_all(baseline, restricted))
    return np.nan_to_num(np.stack(out), nan=-1.0) if out else None


def compare_all(baseline: Similarity, prepared: Sequence[Prepared], progress: bool = False) -> np.ndarray:
    """The (M, M) matrix of a baseline over M prepared representations (diagonal computed too).

    Parameters
    ----------
    baseline : Similarity
        The baseline that prepared the forms.
    prepared : sequence of Prepared
        M prepared representations of the same images.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    np.ndarray
        (M, M) float64, exactly symmetric; for `uses_affinity` baselines the activation term alone.
    """
    m = len(prepared)
    out = np.empty((m, m), dtype=np.float64)
    for i in progress_bar(range(m), desc=f"{baseline.name} · compare", unit="row", disable=not progress, leave=False):
        for j in range(i, m):
            out[i, j] = out[j, i] = baseline.compare(prepared[i], prepared[j])
    return out


# -------------------------------------------------------------------------------- shared helpers


def _check_representation(x: Any, what: str, min_images: int) -> np.ndarray:
    """float64 (N, D), scaled to max |x| = 1; InputError for a bad shape, AttributionError for bad values."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"representation {what!r}: not an array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"representation {what!r}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < 2 or arr.shape[0] < min_images or arr[0].size == 0:
        raise InputError(f"representation {what!r}: expected an array (N, D, ...) of N >= {min_images} "
                         f"images with D >= 1 values each, got shape {arr.shape}")
    # Differences below a few ulps of the input precision are rounding, not signal (a constant
    # float32 output can jitter by an ulp between batches).
    eps = np.finfo(arr.dtype).eps if np.issubdtype(arr.dtype, np.floating) else np.finfo(np.float64).eps
    arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
    bad = int((~np.isfinite(arr).all(axis=1)).sum())
    if bad:
        raise AttributionError(f"representation {what!r}: non-finite values for {bad} of {arr.shape[0]} images")
    peak = np.abs(arr).max()
    if peak == 0:
        raise AttributionError(f"representation {what!r}: all zero for all {arr.shape[0]} images")
    arr /= peak
    spread = np.linalg.norm(arr - arr.mean(axis=0))
    if spread <= 10 * eps * np.linalg.norm(arr):
        raise AttributionError(f"representation {what!r}: the same for all {arr.shape[0]} images "
                               "(no variance across images), so no similarity is defined")
    return arr


def _centre(x: np.ndarray) -> np.ndarray:
    """Subtract the mean image: every baseline here compares variation across images."""
    return x - x.mean(axis=0)


def _centre_gram(k: np.ndarray) -> np.ndarray:
    """H K H with H = I − 11ᵀ/N, without forming H."""
    k = k - k.mean(axis=0, keepdims=True)
    return k - k.mean(axis=1, keepdims=True)


def _frobenius(m: np.ndarray) -> float:
    """‖m‖_F by an element-wise sum.

    `np.linalg.norm`'s BLAS dot stalls on busy cores, and the halves of `compare_halves` take it B × M times.
    """
    return float(np.sqrt(np.sum(m * m)))


def _zero_median_distance(copies: list[int]) -> str | None:
    """Why an RBF bandwidth set by the median distance between images is 0 for every model, or None.

    It is when more than half of the pairs of probe images are one image twice.
    """
    n = sum(copies)
    pairs, same = n * (n - 1) // 2, sum(c * (c - 1) // 2 for c in copies)
    if 2 * same <= pairs:
        return None
    return (f"{same} of the {pairs} pairs of probe images are the same image twice, so the median distance "
            "between images, which sets the RBF bandwidth, is 0 for every model")


# ------------------------------------------------------------------------------------- baselines


@register_baseline()
@dataclass(frozen=True, repr=False)
class SVCCA(Similarity):
    """Singular vector CCA (Raghu et al., 2017).

    Per representation: centre over images, SVD, keep the top k directions that explain
    `variance` of the variance. Per pair: CCA between the two reduced subspaces; the score is the
    mean of the min(k_a, k_b) canonical correlations.

    CCA is invariant to any invertible linear map within a subspace, so the reduced data's own
    orthonormal basis, the top-k left singular vectors U_k, is all a representation needs; the
    canonical correlations are then the singular values of U_aᵀ U_b (cosines of the principal
    angles), which avoids inverting covariance matrices. The SVD of an (N, D) matrix works in
    sample space when D > N. Keep N well above k: with k close to N any two subspaces look
    correlated (CCA overfits), as Raghu et al. note.

    Parameters
    ----------
    variance : float, default 0.99
        The share of the variance, in (0, 1], the kept directions explain.

    Raises
    ------
    InputError
        A ``variance`` outside (0, 1].
    """

    name = "svcca"
    variance: float = 0.99

    def __post_init__(self) -> None:
        self._set("variance", check_float(self.variance, "svcca: variance", maximum=1.0))

    def _prepare(self, x: np.ndarray, what: str) -> np.ndarray:
        u, s, _ = np.linalg.svd(_centre(x), full_matrices=False)
        # Directions at rounding level are not part of the data (the centring alone removes one).
        rank = int((s > s[0] * max(x.shape) * np.finfo(np.float64).eps).sum())
        explained = np.cumsum(s[:rank] ** 2) / np.sum(s[:rank] ** 2)
        # The smallest k reaching the target; the slack keeps variance=1.0 from missing by rounding.
        k = min(int(np.searchsorted(explained, self.variance * (1 - 1e-12))) + 1, rank)
        return u[:, :k]

    def _compare(self, a: np.ndarray, b: np.ndarray) -> float:
        correlations = np.linalg.svd(a.T @ b, compute_uv=False)
        return float(np.clip(correlations, 0.0, 1.0).mean())


@register_baseline("cka")
@dataclass(frozen=True, repr=False)
class LinearCKA(Similarity):
    """Linear centred kernel alignment (Kornblith et al., 2019).

    CKA = ⟨K_c, L_c⟩_F / (‖K_c‖_F ‖L_c‖_F) with K_c = H X Xᵀ H, the centred linear Gram matrix.
    With X centred, ⟨K_c, L_c⟩_F = ‖Yᵀ X‖²_F, so a representation keeps whichever is smaller:
    its centred features (N, D) when D < N, else its centred Gram matrix (N, N).
    """

    name = "linear_cka"

    def _prepare(self, x: np.ndarray, what: str) -> tuple[str, np.ndarray, float]:
        xc = _centre(x)
        n, d = xc.shape
        if d < n:
            return "features", xc, float(np.linalg.norm(xc.T @ xc))
        gram = xc @ xc.T
        return "gram", gram, float(np.linalg.norm(gram))

    def _compare(self, a: tuple[str, np.ndarray, float], b: tuple[str, np.ndarray, float]) -> float:
        return float(np.clip(_linear_hsic(a, b) / (a[2] * b[2]), 0.0, 1.0))

    def _restrict(self, data: tuple[str, np.ndarray, float], rows: np.ndarray) -> tuple[str, np.ndarray, float]:
        # Exact: centring removes the mean image, and H_r (H K H)[rows] H_r = H_r K[rows] H_r, since
        # H K H differs from K by row and column terms that the second centring removes.
        kind, m, _ = data
        if kind == "features":
            xc = _centre(m[rows])
            return "features", xc, _frobenius(xc.T @ xc)
        gram = _centre_gram(m[np.ix_(rows, rows)])
        return "gram", gram, _frobenius(gram)


def _linear_hsic(a: tuple[str, np.ndarray, float], b: tuple[str, np.ndarray, float]) -> float:
    """⟨K_a, K_b⟩_F (unnormalised HSIC) from the two prepared forms, at the cheapest cost."""
    (kind_a, ma, _), (kind_b, mb, _) = a, b
    if kind_a == kind_b == "features":
        return float(np.sum((mb.T @ ma) ** 2))           # ‖X_bᵀ X_a‖²_F
    if kind_a == kind_b == "gram":
        return float(np.sum(ma * mb))                    # ⟨K_a, K_b⟩_F
    feats, gram = (ma, mb) if kind_a == "features" else (mb, ma)
    return float(np.sum((gram @ feats) * feats))         # tr(Xᵀ K X)


@register_baseline("cka_rbf")
@dataclass(frozen=True, repr=False)
class RBFCKA(Similarity):
    """CKA with RBF kernels (Kornblith et al., 2019).

    K_ij = exp(−‖x_i − x_j‖² / (2 (σ·m)²)) with m the median distance between distinct images, so
    the kernel, like the score, does not change under isotropic scaling or rotation of x.

    Parameters
    ----------
    sigma : float, default 0.8
        The bandwidth, relative to the median distance m.

    Raises
    ------
    InputError
        A ``sigma`` that is not a finite number > 0.
    """

    name = "rbf_cka"
    sigma: float = 0.8

    def __post_init__(self) -> None:
        self._set("sigma", check_float(self.sigma, "rbf_cka: sigma"))

    def _prepare(self, x: np.ndarray, what: str) -> tuple[np.ndarray, float]:
        xc = _centre(x)
        gram = xc @ xc.T  # N×N: distances in sample space whatever D
        sq_norms = np.diag(gram)
        sq_dist = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram, 0.0)
        upper = np.triu_indices(len(xc), 1)
        median = float(np.median(np.sqrt(sq_dist[upper])))
        # Below this, the median is rounding from the Gram-matrix identity, not a distance.
        if median <= 1e-6 * np.sqrt(sq_norms.mean()):
            raise AttributionError(f"representation {what!r}: more than half of the image pairs coincide "
                                   "(median pairwise distance 0), so the RBF bandwidth is undefined")
        kc = _centre_gram(np.exp(-sq_dist / (2.0 * (self.sigma * median) ** 2)))
        return kc, float(np.linalg.norm(kc))

    def _compare(self, a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
        return float(np.clip(np.sum(a[0] * b[0]) / (a[1] * b[1]), 0.0, 1.0))

    def _undefined_on(self, copies: list[int]) -> str | None:
        return _zero_median_distance(copies)

    def _restrict(self, data: tuple[np.ndarray, float], rows: np.ndarray) -> tuple[np.ndarray, float]:
        # Restricting and centring again is the centred kernel of the rows, except that the
        # bandwidth stays the one from the median distance over all images (the kernel values are
        # not recoverable with another one); the median of a random half is close to it.
        kc = _centre_gram(data[0][np.ix_(rows, rows)])
        return kc, _frobenius(kc)


@register_baseline("rsa_spearman")
@dataclass(frozen=True, repr=False)
class RSA(Similarity):
    """Representational similarity analysis (Kriegeskorte et al., 2008).

    Per representation: the representational dissimilarity matrix (RDM) between images, by
    default 1 − Pearson correlation of two images' feature vectors ("correlation"); "cosine"
    (1 − cosine) and "euclidean" distances are also offered. Per pair: the Spearman correlation
    of the two RDMs' upper triangles.

    Spearman's ρ is Pearson's r of the ranks, so a representation keeps its centred, unit-norm
    rank vector and a comparison is one dot product. Exactly tied dissimilarities get average
    ranks; ties broken by rounding in the Gram matrix do not.

    Parameters
    ----------
    metric : {"correlation", "cosine", "euclidean"}, default "correlation"
        The dissimilarity between two images.

    Raises
    ------
    InputError
        An unknown ``metric``.
    """

    name = "rsa"
    min_images = 3
    min_images_why = "one pair of images gives one dissimilarity, which has no correlation"
    metrics: ClassVar[tuple[str, ...]] = ("correlation", "cosine", "euclidean")
    metric: str = "correlation"

    def __post_init__(self) -> None:
        check_choice(self.metric, "rsa: metric", self.metrics)

    def _prepare(self, x: np.ndarray, what: str) -> np.ndarray:
        rdm = self._rdm(x, what)
        ranks = rankdata(rdm[np.triu_indices(len(x), 1)])
        ranks -= ranks.mean()
        norm = np.linalg.norm(ranks)
        if norm == 0:
            raise AttributionError(f"representation {what!r}: all pairs of images are equally dissimilar, "
                                   "so the RDM has no ranking to correlate")
        return ranks / norm

    def _compare(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.clip(a @ b, -1.0, 1.0))

    def _restrict(self, data: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return _restrict_ranks(data, rows)

    def _rdm(self, x: np.ndarray, what: str) -> np.ndarray:
        """The (N, N) dissimilarity matrix of the images (rows of x)."""
        if self.metric == "euclidean":
            xc = _centre(x)  # distances do not change; the Gram identity loses less to rounding
            gram = xc @ xc.T
            sq = np.diag(gram)
            return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))
        rows = x - x.mean(axis=1, keepdims=True) if self.metric == "correlation" else x
        norms = np.linalg.norm(rows, axis=1)
        scale = np.linalg.norm(x, axis=1)
        # Rows with nothing left after row-centring (a constant image vector) have no correlation.
        flat = norms <= 10 * np.finfo(np.float64).eps * np.maximum(scale, np.finfo(np.float64).tiny)
        if flat.any():
            kind = "constant across features" if self.metric == "correlation" else "all zero"
            raise AttributionError(f"representation {what!r}: {kind} for {int(flat.sum())} of "
                                   f"{len(x)} images, so the {self.metric} distance is undefined")
        unit = rows / norms[:, None]
        return 1.0 - unit @ unit.T


@register_baseline("duality_diagram")
@dataclass(frozen=True, repr=False)
class DDS(Similarity):
    """Duality diagram similarity (Dwivedi et al., ECCV 2020).

    A representation is read through a duality diagram (X, Q, D): X's features z-scored over the
    images (Q), an (N, N) kernel between images (D), then the two kernel matrices are compared by
    centred kernel alignment. The defaults are those of the authors' code
    (``computeDDS_taskonomy.py``, ``utils.py``): z-scoring, CKA with the debiased (U-statistic)
    centring of Székely & Rizzo (2014) as in Kornblith et al.'s ``cka(..., debiased=True)`` (so
    scores can be slightly negative), and the cosine kernel, their best combination on Taskonomy
    (their notebook: z-scoring + cosine, correlation 0.862 with transfer performance; Laplacian
    0.860, RBF 0.842).

    A feature constant over the images has no z-score: it is left out, as scikit-learn's
    ``StandardScaler`` (which maps it to 0) effectively does.

    Parameters
    ----------
    kernel : {"cosine", "laplacian", "rbf"}, default "cosine"
        "cosine" the cosine similarity of z_i and z_j (CKA is the same on the distance 1 − cos,
        the authors' "cosine" RDM: centring removes the constant and the sign cancels);
        "laplacian" exp(−γ‖z_i − z_j‖₁) with γ = 1/D (the default γ of scikit-learn's
        ``laplacian_kernel``, which the authors' code calls); "rbf" exp(−‖z_i − z_j‖² / (2 (σ·m)²))
        with m the median distance between distinct images and σ = `sigma`.
    sigma : float, default 0.5
        The RBF bandwidth relative to m (0.5, the authors' threshold; their code, Kornblith et al.'s,
        takes the median of all N² squared distances, zeros of the diagonal included, which differs
        slightly for small N). Used, and shown in the id, only with the "rbf" kernel.
    debiased : bool, default True
        True: U-centring (the diagonal is dropped and the centring is unbiased for HSIC);
        False: the usual H K H, as `LinearCKA` / `RBFCKA`.

    Raises
    ------
    InputError
        An unknown ``kernel``, a ``sigma`` that is not a finite number > 0, or a ``debiased`` that is
        not a bool.
    """

    name = "dds"
    min_images = 4
    min_images_why = "its debiased estimate divides by N (N − 3)"
    kernels: ClassVar[tuple[str, ...]] = ("cosine", "laplacian", "rbf")
    kernel: str = "cosine"
    # sigma changes nothing for the other kernels
    sigma: float = param(0.5, shown=lambda dds: dds.kernel == "rbf")
    debiased: bool = True

    def __post_init__(self) -> None:
        check_choice(self.kernel, "dds: kernel", self.kernels)
        self._set("sigma", check_float(self.sigma, "dds: sigma"))
        self._set("debiased", check_bool(self.debiased, "dds: debiased"))

    def _prepare(self, x: np.ndarray, what: str) -> tuple[np.ndarray, float]:
        z = _zscore(x)
        k = self._kernel(z, what)
        kc = _u_centre(k) if self.debiased else _centre_gram(k)
        norm = float(np.linalg.norm(kc))
        if norm <= 1e-12 * max(float(np.linalg.norm(k)), np.finfo(np.float64).tiny):
            raise AttributionError(f"representation {what!r}: the {self.kernel} kernel matrix is constant "
                                   "after centring, so DDS is undefined")
        return kc, norm

    def _compare(self, a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
        return float(np.clip(np.sum(a[0] * b[0]) / (a[1] * b[1]), -1.0, 1.0))

    def _undefined_on(self, copies: list[int]) -> str | None:
        return _zero_median_distance(copies) if self.kernel == "rbf" else None

    def _restrict(self, data: tuple[np.ndarray, float], rows: np.ndarray) -> tuple[np.ndarray, float]:
        # Both centrings annihilate additive row and column terms, and the centred kernel differs
        # from the raw one by such terms (off the diagonal, which U-centring ignores), so centring
        # the restricted centred kernel again gives the centred kernel of the rows' raw kernel: exact.
        # What is not redone is the z-scoring (over all images, not the half's) and, for "rbf", the
        # median bandwidth: the half is read through the whole probe set's duality diagram.
        k = data[0][np.ix_(rows, rows)]
        kc = _u_centre(k) if self.debiased else _centre_gram(k)
        return kc, _frobenius(kc)

    def _kernel(self, z: np.ndarray, what: str) -> np.ndarray:
        if self.kernel == "laplacian":
            return np.exp(-cdist(z, z, "cityblock") / z.shape[1])
        if self.kernel == "cosine":
            norms = np.linalg.norm(z, axis=1)
            if (norms == 0).any():  # an image at the mean of every feature has no direction
                raise AttributionError(f"representation {what!r}: {int((norms == 0).sum())} image(s) equal the "
                                       "mean image, so their cosine similarity is undefined")
            unit = z / norms[:, None]
            return unit @ unit.T
        gram = z @ z.T
        sq = np.diag(gram)
        sq_dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
        median = float(np.median(np.sqrt(sq_dist[np.triu_indices(len(z), 1)])))
        if median <= 1e-6 * np.sqrt(sq.mean()):
            raise AttributionError(f"representation {what!r}: more than half of the image pairs coincide "
                                   "(median pairwise distance 0), so the RBF bandwidth is undefined")
        return np.exp(-sq_dist / (2.0 * (self.sigma * median) ** 2))


def _restrict_ranks(ranks: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """RSA's prepared form on the image pairs within `rows` (sorted), ranked again.

    The prepared form is the centred, unit-norm ranks of an RDM's upper triangle. This is exactly RSA's
    prepared form of the rows, because ranks are a strictly increasing function of the dissimilarities
    that keeps their ties, and each dissimilarity depends on its two images only.
    """
    n = int(round((1 + np.sqrt(1 + 8 * len(ranks))) / 2))  # len(ranks) = n (n − 1) / 2
    i, j = np.triu_indices(len(rows), 1)
    a, b = rows[i], rows[j]
    picked = rankdata(ranks[a * n - a * (a + 1) // 2 + (b - a - 1)])  # the condensed index of (a, b)
    picked -= picked.mean()
    norm = np.linalg.norm(picked)
    return picked / norm if norm > 0 else picked


def _zscore(x: np.ndarray) -> np.ndarray:
    """Each feature to mean 0 and (population) standard deviation 1 over the images.

    Features constant over the images (at rounding level) are dropped.
    """
    xc = _centre(x)
    sd = np.sqrt(np.mean(xc ** 2, axis=0))
    keep = sd > 10 * np.finfo(np.float64).eps * np.maximum(np.abs(x).max(axis=0), np.finfo(np.float64).tiny)
    return xc[:, keep] / sd[keep]


def _u_centre(k: np.ndarray) -> np.ndarray:
    """The U-centred kernel matrix (Székely & Rizzo, 2014).

    Diagonal 0, and off the diagonal K_ij − r_i/(N−2) − r_j/(N−2) + t/((N−1)(N−2)) with r the row sums
    and t the total of K with its diagonal zeroed; ⟨K̃, L̃⟩ / (N (N−3)) is then an unbiased estimate of HSIC.
    """
    n = len(k)
    k = k.copy()
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=1)
    out = k - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + rows.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(out, 0.0)
    return out


@register_baseline("deep_attribution_graph")
@dataclass(frozen=True, repr=False)
class DEPARA(Similarity):
    """Deep attribution graph (DEPARA; Song et al., CVPR 2020): node + λ · edge similarity.

    A model's DEPARA over the probe images is a graph with one node per image, carrying the
    image's attribution map, and edges weighted by the cosine distance between the images'
    representations R. Two graphs are compared by

        S = S_node + λ · S_edge

    S_node: the mean over images of the cosine between the two models' attribution maps, i.e.
    the seed paper's affinity, taken from the space's results for `method` (gradient×input, the
    node term of the authors' code; its maps are computed once for both). S_edge: the Spearman
    correlation of the two models' edge weights, the upper triangles of their cosine-distance
    matrices between images, which `compare` computes from the activations. As in the authors'
    code (``tools/spearman_edge.py``), R is centred over the images before the cosine distances,
    so the edge term does not change under a translation or an orthogonal map of R.

    λ = `edge_weight` = 0.25, the default of the authors' code (``prcurve/plot.py``), where it is
    the value for the Taskonomy probe images; they use 0.03 and 0.27 for their COCO and indoor
    probe sets. It is not tuned here.

    The matrix holds S / (1 + λ): the same order of every ranking, but a model's score with itself
    is 1 as for every other estimator, so that the tree and the map can read 1 − score as a
    distance (S itself reaches 1 + λ, and 1 − S would be clipped at 0).

    Parameters
    ----------
    method : str, default "gradient_x_input"
        The attribution method whose affinity is the node term, by name or alias, without
        parameters (only its name is kept).
    edge_weight : float, default 0.25
        λ, the weight of the edge term.

    Raises
    ------
    InputError
        A ``method`` that is not the name of an attribution method, or an ``edge_weight`` that is not
        a finite number > 0.
    """

    name = "depara"
    min_images = 3
    min_images_why = "its edge term correlates the dissimilarities of pairs of images, and one pair has none"
    uses_affinity = True
    method: str = "gradient_x_input"
    edge_weight: float = 0.25

    def __post_init__(self) -> None:
        try:
            ident = METHODS.resolve(self.method) if isinstance(self.method, str) else None
        except InputError:
            ident = None
        if ident is None or ident.params or ident.name not in METHODS:
            known = ", ".join(sorted(set(METHODS) | set(METHODS.aliases)))
            raise InputError(f"{self.name}: method must name an attribution method ({known}), got {self.method!r}")
        # Only the name is kept: the maps are those of the space's method of that name.
        self._set("method", ident.name)
        self._set("edge_weight", check_float(self.edge_weight, "depara: edge_weight"))

    def _prepare(self, x: np.ndarray, what: str) -> np.ndarray:
        # the edge weights are RSA's cosine RDM of the centred R; its prepared form is the ranks
        return RSA("cosine").prepare(_centre(x), what).data

    def _compare(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.clip(a @ b, -1.0, 1.0))

    def _restrict(self, data: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # As RSA's, except that R stays centred by its mean over all images (a half's mean would
        # need the activations); the node term on a half is its method's half affinity.
        return _restrict_ranks(data, rows)

    def combine(self, affinity: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """DEPARA's score, (S_node + λ · S_edge) / (1 + λ).

        Parameters
        ----------
        affinity : np.ndarray
            (M, M) the attribution affinity of `method`: S_node.
        matrix : np.ndarray
            (M, M) the edge term over the same models, in the same order: S_edge.

        Returns
        -------
        np.ndarray
            (M, M) the score, 1 for a model and itself.
        """
        return (affinity + self.edge_weight * matrix) / (1.0 + self.edge_weight)
