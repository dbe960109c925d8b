"""Helpers shared by the pytest-benchmark suites."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pytest  # noqa: E402

import peers  # noqa: E402

#: quick sizes by default; FASTMLP_BENCH_FULL=1 runs the issue's full sizes
QUICK = os.environ.get("FASTMLP_BENCH_FULL", "") in ("", "0")
#: seconds of timed rounds aimed at per benchmark (rounds are 3..50)
TARGET_S = float(os.environ.get("FASTMLP_BENCH_SECONDS", "0.5"))


def require(system):
    """Skip (never fail) when a peer is not installed."""
    module = peers.SYSTEMS[system][1]
    pytest.importorskip(module)
    if system == "onnxruntime":
        pytest.importorskip("onnx")


def rounds_for(seconds_per_call, lo=3, hi=50):
    return int(min(hi, max(lo, TARGET_S / max(seconds_per_call, 1e-9))))


def time_once(fn, setup=None):
    if setup is not None:
        setup()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
