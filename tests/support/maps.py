"""Attribution maps as the similarity code reads them: rows of unit norm, the store's float16 rows,
and readers over them that record the chunks asked for."""

from __future__ import annotations

import numpy as np

from modelspace.maps.storage.store import normalise_rows


def names(n: int) -> list[str]:
    """Model names m0 .. m{n-1}."""
    return [f"m{i}" for i in range(n)]


def unit_rows(maps: np.ndarray) -> np.ndarray:
    """(Np, ...) raw maps -> (Np, F) float32 rows of unit norm."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    return (flat / np.linalg.norm(flat, axis=1, keepdims=True)).astype(np.float32)


def store_rows(raw: np.ndarray) -> np.ndarray:
    """Rows as the store serves them: flattened, L2-normalised (in float64), kept as float16."""
    rows, n_zero, n_nonfinite = normalise_rows(raw.reshape(len(raw), -1))
    assert n_zero == n_nonfinite == 0
    return rows.astype(np.float16).astype(np.float32)


class Reader:
    """A map reader over in-memory rows that records the chunks asked for."""

    def __init__(self, rows: np.ndarray):
        self.rows, self.calls = rows, []

    def __call__(self, start: int, stop: int) -> np.ndarray:
        self.calls.append((start, stop))
        return self.rows[start:stop]


def readers_for(raw_maps, rows=unit_rows) -> list[Reader]:
    """One `Reader` per model over its maps turned into rows by ``rows`` (unit norm by default)."""
    return [Reader(rows(m)) for m in raw_maps]


def store_readers(raw_maps) -> list[Reader]:
    """One `Reader` per model over its maps as the store serves them (`store_rows`)."""
    return readers_for(raw_maps, store_rows)
