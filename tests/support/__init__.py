"""Code the tests share that is not a fixture: builders called from module-level constants, from helper
functions and from hypothesis strategies, where a fixture cannot reach. Fixtures are in conftest.py.

The tests folder is on the import path (pyproject's ``pythonpath``), so test modules import these as
``from support.maps import Reader``.
"""
