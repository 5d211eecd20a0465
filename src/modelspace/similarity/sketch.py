"""Random-projection sketches of attribution maps, for stores too large to stream exactly.

The exact affinity reads every model's Np × F maps for each matrix (or row). A sketch replaces
each L2-normalised map a (F values) by s = Pᵀa with P an F × k Gaussian matrix scaled by 1/√k
(Johnson–Lindenstrauss): inner products, hence cosines, are preserved in expectation, with an
error of order 1/√k per image that the mean over Np images shrinks further. A model's sketch is
Np × k floats (k = 256 against F = 12 288 for 64² maps: 48× smaller), computed once, and a new
model's row then costs N·Np·k instead of reading N·Np·F.

Every model must be sketched with the same P (same `dim`, `seed` and F); P is never held whole:
it is regenerated block by block from the seed, so memory stays at one block whatever F is.
`benchmarks/` reports the error of sketched against exact affinities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .affinity import MapReader
from ..errors import InputError, check_int

_FEATURE_BLOCK = 4096  # rows of P generated at a time


class MapSketcher:
    """Sketches maps with one fixed random projection.

    Parameters
    ----------
    dim : int
        k, the sketch length (error ∝ 1/√k).
    seed : int
        Seed of the projection; sketches are comparable only under the same seed and dim.
    chunk : int
        Probe images read per step.
    """

    def __init__(self, dim: int = 256, seed: int = 0, chunk: int = 128) -> None:
        self.dim, self.seed, self.chunk = check_int(dim, "dim"), int(seed), check_int(chunk, "chunk")

    def _blocks(self, n_features: int):
        """(start, stop, P[start:stop]) over the features, each block from its own seeded stream."""
        for b, start in enumerate(range(0, n_features, _FEATURE_BLOCK)):
            stop = min(start + _FEATURE_BLOCK, n_features)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + b)
            block = torch.randn(stop - start, self.dim, generator=gen) / np.sqrt(self.dim)
            yield start, stop, block.numpy()

    def sketch_rows(self, rows: np.ndarray) -> np.ndarray:
        """Sketch maps: project their L2-normalised rows.

        Parameters
        ----------
        rows : np.ndarray
            (n, F) maps, one flattened map a row.

        Returns
        -------
        np.ndarray
            (n, k) float32 sketches, k = `dim`; zero rows stay zero.

        Raises
        ------
        InputError
            If ``rows`` is not 2-D.
        """
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2:
            raise InputError(f"rows: expected a 2-D array (n, F), got shape {rows.shape}")
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.where(norms > 0, norms, 1.0)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for start, stop, block in self._blocks(rows.shape[1]):
            out += rows[:, start:stop] @ block
        return out

    def sketch(self, reader: MapReader, n_images: int) -> np.ndarray:
        """One model's sketch, read chunk by chunk (`chunk` images at a time) from its map reader.

        Parameters
        ----------
        reader : MapReader
            ``reader(start, stop)`` -> that model's (stop − start, F) maps.
        n_images : int
            Np, the number of probe images.

        Returns
        -------
        np.ndarray
            The (Np, k) float32 sketch.
        """
        parts = [self.sketch_rows(reader(s, min(s + self.chunk, n_images))) for s in range(0, n_images, self.chunk)]
        return np.concatenate(parts)


def sketched_affinity(sketches: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """The affinity estimated from sketches: the mean over images of the sketches' cosines.

    Parameters
    ----------
    sketches : sequence of np.ndarray
        One (Np, k) sketch per model, all of one shape (`MapSketcher.sketch`, same seed and dim).
    names : sequence of str, optional
        The models' names, for the messages; default ``sketches[i]``.

    Returns
    -------
    np.ndarray
        The (N, N) float64 affinity, symmetric; the diagonal exactly 1 (a sketch's cosine with itself).

    Raises
    ------
    InputError
        If there is no sketch, the shapes differ, or a sketch has an all-zero or non-finite row.
    """
    if len(sketches) == 0:
        raise InputError("sketches: expected at least one model's sketch")
    names = list(names) if names is not None else [f"sketches[{i}]" for i in range(len(sketches))]
    shape = np.shape(sketches[0])
    normalised = []
    for name, s in zip(names, sketches):
        s = np.asarray(s, dtype=np.float32)
        if s.shape != shape or s.ndim != 2:
            raise InputError(f"model {name!r}: sketch of shape {s.shape}, expected {shape}")
        norms = np.linalg.norm(s, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms) & (norms > 0)):
            raise InputError(f"model {name!r}: its sketch has all-zero or non-finite rows (degenerate maps)")
        normalised.append((s / norms).reshape(-1))
    flat = np.stack(normalised)
    gram = (flat @ flat.T).astype(np.float64) / shape[0]
    out = (gram + gram.T) / 2.0
    np.fill_diagonal(out, 1.0)  # by definition, not a float32 sum's 0.999998
    return out
