"""pytest-benchmark suites of issue 3 (run: ``pytest bench/ --benchmark-only``).

The package's own test run never collects this folder (its pytest config has
``testpaths = ["tests"]``). Sizes are the quick ones unless FASTMLP_BENCH_FULL=1.
This folder is put on sys.path here for ``import peers`` whatever pytest's
import mode.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
