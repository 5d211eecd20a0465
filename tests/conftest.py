"""Shared helpers of the tests: map readers as the affinity code sees them, model names, the
environment of a subprocess running modelspace, and the toy-model fixtures.

The tests folder is on the import path (pyproject's ``pythonpath``), so zoo files can name the toy
models as ``python:toy_models:tiny_cnn`` and test modules import these helpers with
``from conftest import ...``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modelspace.maps.storage.store import normalise_rows

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in one process per core (pytest-xdist's `-n auto`, the README's test command).
    # Torch's default of one thread per core in every worker, and in the subprocesses the tests start,
    # would have the workers' thread pools contend for the same cores.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _threads = max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def images(b: int = 2, s: int = 16, seed: int = 0) -> torch.Tensor:
    """b random images (b, 3, s, s) in [0, 1], the same for the same seed."""
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed))


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


def map_units(work: dict) -> dict[str, int]:
    """The map units of a run's work line (``work_``, results.json's ``work``): computed and found stored.
    Its counts of encoder activations are the store tests' (tests/test_second_hour.py, item 1)."""
    return {"computed": work["computed"], "reused": work["reused"]}


def subprocess_env() -> dict[str, str]:
    """The environment of a `modelspace` subprocess: this checkout's sources and the toy models."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}



def key_before_preprocessing(spec: dict, state_hash: str) -> str:
    """A model's identity key as modelspace computed it before models stated their own preprocessing:
    sha256 of the canonical JSON of the eleven spec fields it had, a newline and the state-dict hash."""
    fields = ("name", "source", "task", "encoder", "input_size", "mean", "std", "constructor", "kwargs",
              "pretrained", "trust_checkpoint")
    text = json.dumps({k: spec[k] for k in fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((text + "\n" + state_hash).encode()).hexdigest()


@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """Every TCP connection attempted, each refused as if no network were reachable."""
    import socket

    attempts: list[tuple] = []

    def unreachable(address, *args, **kwargs):
        attempts.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    return attempts
