"""Attribution affinity: the mean over probe images of per-image cosine similarities.

Affinity(i, j) = (1 / Np) · Σ_k cos(A_ik, A_jk), where A_ik is model i's attribution map for
probe image k, flattened to F features.

The maps of a zoo do not fit in memory (N models × Np images × F = 3·S·S floats), so
`affinity_matrix` streams over the probe images in chunks: each model's reader yields the rows of
one chunk, the chunk is stacked as an (N, chunk, F) block and Σ_k M_k M_kᵀ is accumulated with a
single matrix product. Peak memory is bounded by `memory_budget`, not by N · Np · F.

Adding one model to a computed matrix costs one row: `affinity_row`. `affinity_halves` computes,
in the same single pass, the affinity over random subsets of the images as well (the stability
of `similarity.confidence`).

Methods with K maps per image (``directions`` = K > 1, e.g. ``gradient_x_input_subspace``) store
them side by side in one row of K·P values. Two models are then compared per image as subspaces,

    s_k(i, j) = ‖G_ik G_jkᵀ‖²_F / (‖G_ik G_ikᵀ‖_F · ‖G_jk G_jkᵀ‖_F),    G_ik: the K × P maps,

which lies in [0, 1], is 1 when G_jkᵀG_jk ∝ G_ikᵀG_ik, and does not change when either model's K
maps are rotated or scaled; Affinity(i, j) is its mean over the images. The per-image products
are (N·K) × (N·K) Grams of the chunk's maps; the same streaming bounds the memory. With K = 1
the formula would give cos², not the signed cosine, so K = 1 keeps the cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ..progress import progress as progress_bar

from ..errors import DegenerateMapsError, InputError, check_int

MapReader = Callable[[int, int], np.ndarray]
"""(start, stop) -> float array (stop - start, F): one model's maps for probe images start..stop-1,
one flattened, L2-normalised map per row (an all-zero row is a degenerate map)."""

DEFAULT_MEMORY_BUDGET = 512 * 2**20
_BYTES_PER_VALUE = 4  # the stacked chunk is float32


def affinity_matrix(
    readers: Sequence[MapReader],
    n_images: int,
    names: Sequence[str],
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    directions: int = 1,
) -> np.ndarray:
    """Return the (N, N) float64 affinity matrix of N models, streamed over the probe images.

    The matrix is exactly symmetric; its diagonal is exactly 1, a map's cosine with itself (and a
    subspace's score with itself), by definition rather than a float32 sum's 0.999998.

    Parameters
    ----------
    readers : sequence of MapReader
        One `MapReader` per model.
    n_images : int
        The number of probe images Np; every reader serves rows 0..Np-1.
    names : sequence of str
        One label per model, used in error messages.
    memory_budget : int, default `DEFAULT_MEMORY_BUDGET`
        Bytes allowed for one stacked chunk (N × chunk × F × 4); at least one image
        per chunk is read whatever the budget.
    progress : bool, default True
        Show a progress bar over chunks.
    directions : int, default 1
        Maps per image K (the method's `directions`): each row holds K maps of F / K values,
        compared as subspaces (see the module docstring); 1 compares one map by cosine.

    Returns
    -------
    np.ndarray
        (N, N) float64: Affinity(i, j), the mean over the probe images of the per-image score.

    Raises
    ------
    InputError
        Bad arguments (no reader, a reader not callable, not N names, `n_images`, `memory_budget` or
        `directions` not a positive integer, F not a multiple of `directions`), or a reader returning
        an array of the wrong shape.
    DegenerateMapsError
        Some maps are all-zero or non-finite. The message names every such
        model with its count of bad images; ``err.bad_counts`` maps name -> count so that the
        caller can drop those models.
    """
    _check_common(readers, n_images, names, memory_budget, "readers")
    n_features = _probe_features(readers[0], names[0])
    _check_directions(directions, n_features, names[0])
    chunk = _chunk_size(len(readers), n_features, n_images, memory_budget)

    gram = np.zeros((len(readers), len(readers)), dtype=np.float64)
    scan = _ChunkScanner(readers, names, n_images, n_features, chunk)
    for flat in scan.blocks(progress, desc="affinity"):
        if directions > 1:
            gram += _subspace_scores(flat, n_features, directions)
            continue
        # One GEMM over (N, chunk·F) equals Σ_k M_k M_kᵀ: the per-image products are summed by
        # the contraction. float32 product, float64 accumulation across chunks.
        gram += (flat @ flat.T).astype(np.float64)
    scan.raise_if_degenerate()

    gram /= n_images
    return _unit_diagonal((gram + gram.T) / 2.0)


def affinity_halves(
    readers: Sequence[MapReader],
    n_images: int,
    names: Sequence[str],
    masks: np.ndarray,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    directions: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The affinity over all probe images and over each of B subsets of them, in one streamed pass.

    What `similarity.confidence` recomputes an attribution method's ranking on: Affinity_b(i, j)
    is the mean over the images of subset b of the same per-image score as `affinity_matrix`.
    Each chunk's per-image scores (chunk, N, N) are summed into the whole matrix and, with one
    product ``masks[:, chunk] @ scores``, into the (B, N, N) subset sums, so nothing of size
    Np × N × N is ever held: memory grows by chunk·N² + B·N² floats over `affinity_matrix`.

    Parameters
    ----------
    readers : sequence of MapReader
        One `MapReader` per model.
    n_images : int
        The number of probe images Np; every reader serves rows 0..Np-1.
    names : sequence of str
        One label per model, used in error messages.
    masks : np.ndarray
        (B, Np) boolean: row b marks the images of subset b (`confidence.half_masks`); every
        subset must hold at least one image.
    memory_budget : int, default `DEFAULT_MEMORY_BUDGET`
        Bytes allowed for one stacked chunk, as in `affinity_matrix`.
    progress : bool, default True
        Show a progress bar over chunks.
    directions : int, default 1
        Maps per image K, as in `affinity_matrix`.

    Returns
    -------
    full : np.ndarray
        (N, N) float64, as `affinity_matrix` up to float32 rounding.
    halves : np.ndarray
        (B, N, N) float64, each exactly symmetric with a unit diagonal.

    Raises
    ------
    InputError
        As in `affinity_matrix`; also for masks that are not a boolean (B, Np) array, or an empty subset.
    DegenerateMapsError
        As in `affinity_matrix`.
    """
    _check_common(readers, n_images, names, memory_budget, "readers")
    sizes = _check_masks(masks, n_images)
    n_features = _probe_features(readers[0], names[0])
    _check_directions(directions, n_features, names[0])
    n = len(readers)
    chunk = _chunk_size(n, n_features, n_images, memory_budget)

    def scores(flat: np.ndarray) -> np.ndarray:
        if directions > 1:
            return _subspace_scores(flat, n_features, directions, per_image=True)
        # The chunk's per-image Grams M_k M_kᵀ as c batched products of (N, F) blocks: the same
        # products `affinity_matrix` contracts in one GEMM, kept apart so the halves can weigh them.
        by_image = flat.reshape(n, -1, n_features).transpose(1, 0, 2)
        return by_image @ by_image.transpose(0, 2, 1)

    scan = _ChunkScanner(readers, names, n_images, n_features, chunk)
    total, sums = _summed_with_halves(scan, masks, scores, progress, "affinity + halves")
    gram = total.reshape(n, n) / n_images
    halves = sums.reshape(-1, n, n) / sizes[:, None, None]
    return _unit_diagonal((gram + gram.T) / 2.0), _unit_diagonal((halves + halves.transpose(0, 2, 1)) / 2.0)


def affinity_halves_row(
    new: MapReader,
    others: Sequence[MapReader],
    n_images: int,
    names: Sequence[str],
    masks: np.ndarray,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    directions: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """`affinity_row` and the same row on each of B subsets of the images, in one streamed pass.

    How a model joins a computed space with its confidence's halves (`affinity_halves`) for one row.

    Parameters
    ----------
    new : MapReader
        The new model's reader.
    others : sequence of MapReader
        The readers of the models already in the matrix.
    n_images : int
        The number of probe images Np.
    names : sequence of str
        ``[new_name, *other_names]`` (length ``len(others) + 1``), used in error messages.
    masks : np.ndarray
        (B, Np) boolean, as in `affinity_halves`.
    memory_budget : int, default `DEFAULT_MEMORY_BUDGET`
        Bytes allowed for one stacked chunk, as in `affinity_matrix`.
    progress : bool, default True
        Show a progress bar over chunks.
    directions : int, default 1
        Maps per image K, as in `affinity_matrix`.

    Returns
    -------
    row : np.ndarray
        (len(others),) float64, as `affinity_row` up to float32 rounding.
    halves : np.ndarray
        (B, len(others)) float64.

    Raises
    ------
    InputError
        As in `affinity_halves`; also when `others` is not a non-empty sequence.
    DegenerateMapsError
        As in `affinity_matrix` (the new model and the others are all checked).
    """
    if not isinstance(others, Sequence) or len(others) == 0:
        raise InputError("others: expected a non-empty sequence of map readers")
    readers = [new, *others]
    _check_common(readers, n_images, names, memory_budget, "new/others")
    sizes = _check_masks(masks, n_images)
    n_features = _probe_features(new, names[0])
    _check_directions(directions, n_features, names[0])
    n = len(readers)
    chunk = _chunk_size(n, n_features, n_images, memory_budget)

    def scores(flat: np.ndarray) -> np.ndarray:
        if directions > 1:
            return _subspace_scores(flat, n_features, directions, row_only=True, per_image=True)
        by_model = flat.reshape(n, -1, n_features)
        return np.einsum("cf,mcf->cm", by_model[0], by_model[1:])  # (image, other model)

    scan = _ChunkScanner(readers, names, n_images, n_features, chunk)
    row, sums = _summed_with_halves(scan, masks, scores, progress, "affinity row + halves")
    return row / n_images, sums / sizes[:, None]


def affinity_row(
    new: MapReader,
    others: Sequence[MapReader],
    n_images: int,
    names: Sequence[str],
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    directions: int = 1,
) -> np.ndarray:
    """Return the affinity of one new model with each of `others`.

    This is how a model is added to an existing matrix: one row, O(len(others)) work per image.

    Parameters
    ----------
    new : MapReader
        The new model's reader.
    others : sequence of MapReader
        The readers of the models already in the matrix.
    n_images : int
        The number of probe images Np.
    names : sequence of str
        ``[new_name, *other_names]`` (length ``len(others) + 1``), used in error messages.
    memory_budget : int, default `DEFAULT_MEMORY_BUDGET`
        Bytes allowed for one stacked chunk, as in `affinity_matrix`.
    progress : bool, default True
        Show a progress bar over chunks.
    directions : int, default 1
        Maps per image K, as in `affinity_matrix`.

    Returns
    -------
    np.ndarray
        (len(others),) float64: the new model's affinity with each of the others.

    Raises
    ------
    InputError
        As in `affinity_matrix`; also when `others` is not a non-empty sequence.
    DegenerateMapsError
        As in `affinity_matrix` (the new model and the others are all checked).
    """
    if not isinstance(others, Sequence) or len(others) == 0:
        raise InputError("others: expected a non-empty sequence of map readers")
    readers = [new, *others]
    _check_common(readers, n_images, names, memory_budget, "new/others")
    n_features = _probe_features(new, names[0])
    _check_directions(directions, n_features, names[0])
    chunk = _chunk_size(len(readers), n_features, n_images, memory_budget)

    row = np.zeros(len(others), dtype=np.float64)
    scan = _ChunkScanner(readers, names, n_images, n_features, chunk)
    for flat in scan.blocks(progress, desc="affinity row"):
        if directions > 1:
            row += _subspace_scores(flat, n_features, directions, row_only=True)
            continue
        row += (flat[1:] @ flat[0]).astype(np.float64)
    scan.raise_if_degenerate()
    return row / n_images


def affinity_naive(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Reference implementation: a per-pair loop of per-image cosines on raw maps.

    Slow and memory-hungry on purpose (everything in float64, nothing streamed): it exists to
    check `affinity_matrix` and to benchmark it.

    Parameters
    ----------
    maps : sequence of np.ndarray
        One array per model, shape (Np, ...) with the same shape for every model; maps need
        not be normalised.

    Returns
    -------
    np.ndarray
        (N, N) float64: the mean over the images of the per-image cosines (the diagonal as computed,
        not set to 1).

    Raises
    ------
    InputError
        No maps, mismatched shapes, or no probe images.
    DegenerateMapsError
        A zero-norm or non-finite map.
    """
    if len(maps) == 0:
        raise InputError("maps: expected at least one model's maps")
    flat = [np.asarray(m, dtype=np.float64).reshape(len(m), -1) for m in maps]
    for i, m in enumerate(flat):
        if m.shape != flat[0].shape:
            raise InputError(f"maps[{i}]: shape {m.shape} differs from maps[0] {flat[0].shape}")
        if m.shape[0] == 0:
            raise InputError(f"maps[{i}]: no probe images")
    norms = [np.linalg.norm(m, axis=1) for m in flat]
    bad = {f"maps[{i}]": int(np.sum(~(np.isfinite(n) & (n > 0)))) for i, n in enumerate(norms)}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        raise _degenerate_error(bad, flat[0].shape[0])

    n = len(flat)
    out = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(n):
            cosines = np.sum(flat[i] * flat[j], axis=1) / (norms[i] * norms[j])
            out[i, j] = cosines.mean()
    return out


# --------------------------------------------------------------------------- streaming machinery


def _subspace_scores(flat: np.ndarray, n_features: int, k: int, row_only: bool = False,
                     per_image: bool = False) -> np.ndarray:
    """Σ over a chunk's images of the subspace scores s(i, j).

    (N, N), or with `row_only` model 0 against the others, (N - 1,); with `per_image` the scores
    unsummed, (c, N, N) or (c, N - 1). `flat` is the scanner's (N, c·F) block, F = K·P per image.
    """
    n = flat.shape[0]
    g = flat.reshape(n, -1, k, n_features // k)  # (model, image, direction, P)
    # ‖G_i G_iᵀ‖_F per model and image, from the K × K Grams (float64 sums of float32 products).
    own = np.einsum("nckp,nclp->nckl", g, g)
    norm = np.sqrt(np.einsum("nckl,nckl->nc", own, own, dtype=np.float64))
    norm[norm == 0] = 1.0  # only on zeroed degenerate rows, whose error the scanner raises
    g = g.transpose(1, 0, 2, 3)  # (image, model, direction, P)
    if row_only:
        cross = np.einsum("ckp,cmlp->cmkl", g[:, 0], g[:, 1:])  # (image, model, K, K)
        sq = np.einsum("cmkl,cmkl->cm", cross, cross, dtype=np.float64)
        scores = sq / (norm[0][:, None] * norm[1:].T)
        return scores if per_image else scores.sum(axis=0)
    stacked = g.reshape(g.shape[0], n * k, -1)
    cross = (stacked @ stacked.transpose(0, 2, 1)).reshape(-1, n, k, n, k)  # (image, N, K, N, K)
    sq = np.einsum("cikjl,cikjl->cij", cross, cross, dtype=np.float64)
    scores = sq / (norm.T[:, :, None] * norm.T[:, None, :])
    return scores if per_image else scores.sum(axis=0)


def _summed_with_halves(scan: "_ChunkScanner", masks: np.ndarray, scores, progress: bool, desc: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Σ over all images of each chunk's per-image `scores(flat)`, and their sums over each subset.

    The per-image scores (c, ...) are flattened; the sums over each subset of `masks` (B, Np) take one
    product ``masks[:, chunk] @ scores`` per chunk, so no (Np, ...) array of per-image scores is ever
    held. Raises the scanner's degenerate-maps error.
    """
    weights = np.asarray(masks, dtype=np.float64)
    total, sums, start = 0.0, 0.0, 0
    for flat in scan.blocks(progress, desc=desc):
        per_image = scores(flat)
        per_image = per_image.reshape(per_image.shape[0], -1).astype(np.float64)
        total = total + per_image.sum(axis=0)
        sums = sums + weights[:, start:start + len(per_image)] @ per_image
        start += len(per_image)
    scan.raise_if_degenerate()
    return total, sums


class _ChunkScanner:
    """Reads every model's rows chunk by chunk into one reused (N, chunk, F) float32 buffer.

    Each row is re-normalised in place (the store keeps float16, so stored norms are only ≈1) and
    checked: zero-norm or non-finite rows are counted per model. Once any bad row is seen the
    scanner stops yielding blocks (no point multiplying) but keeps reading, so that the final
    error reports the complete count for every model.
    """

    def __init__(self, readers, names, n_images, n_features, chunk):
        self.readers, self.names = readers, list(names)
        self.n_images, self.n_features, self.chunk = n_images, n_features, chunk
        self.bad = np.zeros(len(readers), dtype=np.int64)

    def blocks(self, progress: bool, desc: str):
        """Yield each chunk as a normalised (N, c·F) float32 view, while no degenerate row was seen.

        The buffer is 2-D so that the view of a short last chunk is strided, not copied, when it
        goes into the matrix product.
        """
        n_models, n_feat = len(self.readers), self.n_features
        buf = np.empty((n_models, self.chunk * n_feat), dtype=np.float32)
        buf3 = buf.reshape(n_models, self.chunk, n_feat)  # the same memory, by model and image
        starts = range(0, self.n_images, self.chunk)
        for start in progress_bar(starts, desc=desc, unit="chunk", disable=not progress):
            stop = min(start + self.chunk, self.n_images)
            flat, block = buf[:, : (stop - start) * n_feat], buf3[:, : stop - start]
            for m, reader in enumerate(self.readers):
                block[m] = self._read(m, reader, start, stop)
                self._normalise(m, block[m])
            if not self.bad.any():
                yield flat

    def _read(self, m: int, reader: MapReader, start: int, stop: int) -> np.ndarray:
        rows = np.asarray(reader(start, stop))
        if rows.shape != (stop - start, self.n_features):
            raise InputError(
                f"model {self.names[m]!r}: reader({start}, {stop}) returned shape {rows.shape}, "
                f"expected {(stop - start, self.n_features)}"
            )
        return rows

    def _normalise(self, m: int, rows: np.ndarray) -> None:
        """Divide model m's rows by their norms in place; count (and zero) its degenerate rows."""
        # float64 sum of squares: cheap next to the product, and immune to float32 overflow.
        sq = np.einsum("kf,kf->k", rows, rows, dtype=np.float64)
        ok = np.isfinite(sq) & (sq > 0)
        self.bad[m] += int((~ok).sum())
        rows[~ok] = 0.0  # keeps NaN/inf out of the arithmetic; the error is raised at the end
        rows *= (1.0 / np.sqrt(np.where(ok, sq, 1.0))).astype(np.float32)[:, None]

    def raise_if_degenerate(self) -> None:
        """Raise DegenerateMapsError naming every model with bad rows, if any."""
        if self.bad.any():
            counts = {self.names[m]: int(c) for m, c in enumerate(self.bad) if c}
            raise _degenerate_error(counts, self.n_images)


def _degenerate_error(counts: dict[str, int], n_images: int) -> DegenerateMapsError:
    parts = ", ".join(f"{name!r} ({c} of {n_images} images)" for name, c in counts.items())
    err = DegenerateMapsError(
        f"all-zero or non-finite attribution maps for {len(counts)} model(s): {parts}"
    )
    err.bad_counts = dict(counts)  # structured copy of the message, for callers that drop models
    return err


def _check_common(readers, n_images, names, memory_budget, what: str) -> None:
    """Validate the arguments shared by `affinity_matrix` and `affinity_row`."""
    if len(readers) == 0:
        raise InputError(f"{what}: expected at least one map reader")
    if not all(callable(r) for r in readers):
        raise InputError(f"{what}: every map reader must be callable (start, stop) -> array")
    check_int(n_images, "n_images")
    if isinstance(names, str) or len(names) != len(readers):
        raise InputError(
            f"names: expected {len(readers)} model names (one per reader), got "
            f"{1 if isinstance(names, str) else len(names)}"
        )
    check_int(memory_budget, "memory_budget")


def _check_masks(masks, n_images: int) -> np.ndarray:
    """Each subset's image count, after checking `masks` is a boolean (B, n_images) array with no empty row."""
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.shape[1] != n_images or masks.dtype != bool:
        raise InputError(f"masks: expected a boolean (B, {n_images}) array, got {masks.dtype} {masks.shape}")
    sizes = masks.sum(axis=1)
    if (sizes == 0).any():
        raise InputError(f"masks: subset(s) {np.flatnonzero(sizes == 0).tolist()} hold no image")
    return sizes


def _probe_features(reader: MapReader, name: str) -> int:
    """Read one row to learn the map length F (readers expose nothing else)."""
    row = np.asarray(reader(0, 1))
    if row.ndim != 2 or row.shape[0] != 1 or row.shape[1] < 1:
        raise InputError(f"model {name!r}: reader(0, 1) returned shape {row.shape}, expected (1, F)")
    return int(row.shape[1])


def _check_directions(directions, n_features: int, name: str) -> None:
    """Raise InputError unless `directions` is an int >= 1 that divides the map length F."""
    check_int(directions, "directions")
    if n_features % directions:
        raise InputError(f"directions: model {name!r} has maps of {n_features} values, not a multiple of "
                         f"directions = {directions}")


def _chunk_size(n_models: int, n_features: int, n_images: int, memory_budget: int) -> int:
    """Images per chunk: n_models × chunk × F × 4 bytes ≤ memory_budget, at least 1, at most Np."""
    fit = int(memory_budget) // (n_models * n_features * _BYTES_PER_VALUE)
    return max(1, min(fit, n_images))


def _unit_diagonal(a: np.ndarray) -> np.ndarray:
    """`a` (…, N, N) with 1 on the diagonal of each matrix: the score of a model's maps with themselves."""
    n = a.shape[-1]
    a[..., np.arange(n), np.arange(n)] = 1.0
    return a
