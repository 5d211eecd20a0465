"""The tests' fixtures, shared by every folder of the tree; a fixture local to a subpackage's tests is
in that folder's conftest.py. Test modules never import from here: code they call directly (builders
used by module-level constants, helper functions and hypothesis strategies) is in ``support/``.

The tests folder is on the import path (pyproject's ``pythonpath``), so zoo files can name the toy
models as ``python:toy_models:tiny_cnn``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch

from support.chromium_cdp import Browser, find_chromium
from support.images import write_images
from support.zoos import NETS, zoo_text

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in one process per core (pytest-xdist's `-n auto`, the README's test command).
    # Torch's default of one thread per core in every worker, and in the subprocesses the tests start,
    # would have the workers' thread pools contend for the same cores.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _threads = max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


@pytest.fixture(scope="session")
def rng() -> Callable[..., np.random.Generator]:
    """Seeded NumPy generators: ``rng(seed=0)`` is a fresh generator, the same for the same seed.

    Returns
    -------
    Callable[[int], numpy.random.Generator]
        A factory, so that a test draws from several independent streams and a hypothesis test
        (which cannot take a function-scoped fixture) can use it too.
    """

    def generator(seed: int = 0) -> np.random.Generator:
        return np.random.default_rng(seed)

    return generator


@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """Every TCP connection attempted, each refused as if no network were reachable.

    Returns
    -------
    list of tuple
        The addresses asked for, in order.
    """
    import socket

    attempts: list[tuple] = []

    def unreachable(address, *args, **kwargs):
        attempts.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    return attempts


@pytest.fixture
def trial(tmp_path, monkeypatch) -> dict:
    """A zoo file with `mynets.py` beside it (not importable from anywhere else), probe images, and a
    working directory elsewhere; `mynets` is dropped from the import cache afterwards.

    Returns
    -------
    dict
        ``zoo`` (the zoo file), ``dir`` (its folder), ``probe`` (six 16 px images), ``work`` (the
        working directory).
    """
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    (zoo_dir / "mynets.py").write_text(NETS.format(extra=0))
    (zoo_dir / "zoo.toml").write_text(zoo_text())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    yield {"zoo": zoo_dir / "zoo.toml", "dir": zoo_dir, "probe": write_images(tmp_path / "probe"), "work": work}
    sys.modules.pop("mynets", None)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium over the DevTools protocol, one per test module (the report's and the site's tests).

    Without Debian's ``chromium`` the tests skip, except where $CI is set: CI must run them, not skip them.
    """
    executable = find_chromium()
    if executable is None:
        message = "chromium not found (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the browser test, not skip it")
        pytest.skip(message)
    with Browser(executable) as b:
        yield b
