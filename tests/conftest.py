"""Fixtures shared by the test suite.

The suite tests the *installed* package. Child Pythons started by tests
(``python -m fastmlp``, ``python -c ...``) would put the current directory on
sys.path and, run from a source checkout, import the uncompiled source tree;
PYTHONSAFEPATH (Python >= 3.11) and running from a scratch directory stop that.
"""
import os

import numpy as np
import pytest

os.environ["PYTHONSAFEPATH"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_source_tree(tmp_path_factory):
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
