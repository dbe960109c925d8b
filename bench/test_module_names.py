"""bench/'s modules must not share a name with an installed package.

Its tests put bench/ first on sys.path, so a module named like a package hides
it from everything in the same process: bench/distributed.py hid dask's
``distributed`` (the README's Dask block, run beside these tests, failed to
import ``Client``) and bench/sparse.py hid pydata's ``sparse`` (which dask
imports).
"""
import importlib.machinery
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = sorted(name[:-3] for name in os.listdir(HERE)
                 if name.endswith(".py") and not name.startswith(("test_", "conftest")))


@pytest.mark.parametrize("name", MODULES)
def test_no_bench_module_hides_a_package(name):
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    found = importlib.machinery.PathFinder.find_spec(name, others)
    assert found is None or name in sys.builtin_module_names, (
        f"bench/{name}.py has the name of {found.origin}: rename it")
