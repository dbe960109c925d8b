"""The machine's own ceiling (numpy float32 sgemm) and import times."""
import subprocess
import sys
import tempfile

import pytest

from _suite import QUICK, peers


def test_sgemm(benchmark):
    wl = peers.get_workload("sgemm", QUICK)
    run, flops = peers.sgemm_runner(wl.n_rows)
    run()
    benchmark.group = "sgemm ceiling"
    benchmark.extra_info.update(n=wl.n_rows, flops=flops)
    benchmark(run)
    benchmark.extra_info["gflops_at_median"] = flops / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("module", ["fastmlp", "torch"])
def test_import_time(benchmark, module):
    pytest.importorskip(module)
    code = f"import {module}"
    cmd = [sys.executable, "-c", code]

    def run():  # a fresh interpreter per round (in an empty directory); includes start-up
        with tempfile.TemporaryDirectory() as empty:
            subprocess.run(cmd, check=True, cwd=empty)

    benchmark.group = "import (fresh interpreter, incl. start-up)"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
