"""The built documentation site, shared by the tests of this folder (one build per session)."""

from __future__ import annotations

import os

import pytest

from support.docs_site import build


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> dict:
    """The site as `make -C docs html` builds it: ``html`` (the folder), ``returncode``, ``output``, ``seconds``.

    Returns
    -------
    dict
        `support.docs_site.build`'s record; under pytest-xdist every worker reads the one build.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's base is in the run's own folder, which they share
        base = base.parent
    return build(base / "docs-site")
