"""Importing fastmlp from a source checkout whose compiled core is not built
(Python run from the checkout root after `pip install .`) fails with one line
saying what to do, not a partially-initialised-module error."""
import os
import shutil
import subprocess
import sys

import fastmlp
from fastmlp.errors import missing_core_message


def test_unbuilt_checkout_says_what_to_do(tmp_path):
    package = os.path.dirname(fastmlp.__file__)
    copy = tmp_path / "fastmlp"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__",
                                                                 "*.c"))
    proc = subprocess.run([sys.executable, "-c", "import fastmlp"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "ImportError: " + missing_core_message(str(copy / "__init__.py"))
    assert "build_ext --inplace" in last and str(copy) in last
    assert "partially initialized" not in last
