"""Faults in a distributed fit never hang the ranks: bad input or different settings on one
rank give every rank the same error before any training collective; an exception, Ctrl-C
or a dead process on one rank ends every rank promptly.  Each scenario runs
tests/mpi_rank_faults.py on two ranks, under a timeout."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py")

import fastmlp  # noqa: E402
from mpi_support import child_env, mpi_command, run_ranks  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "mpi_rank_faults.py")


def _run(scenario, tmp_path, timeout=60):
    proc = run_ranks(2, [PROGRAM, scenario, str(tmp_path)], timeout=timeout)
    return proc, _results(tmp_path)


def _results(tmp_path):
    out = []
    for r in range(2):
        path = tmp_path / f"rank-{r}.json"
        out.append(json.loads(path.read_text()) if path.exists() else None)
    return out


def test_bad_input_on_one_rank_is_the_same_error_on_every_rank(tmp_path):
    proc, (r0, r1) = _run("bad-input", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert r0["error"] == r1["error"] == "ValueError"
    assert r0["message"] == r1["message"]
    assert r0["message"].startswith("rank 1 of 2: X must be finite; got NaN at X[3, 2]")


def test_different_settings_are_refused_before_training(tmp_path):
    proc, (r0, r1) = _run("settings", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert r0["error"] == r1["error"] == "ValueError"
    assert r0["message"] == r1["message"] == (
        "every rank must call fit with the same epochs: rank 0 has 5, rank 1 has 6")


@pytest.mark.parametrize("scenario, kind", [("callback-error", "RuntimeError"),
                                            ("step-error", "MemoryError")])
def test_an_exception_on_one_rank_stops_every_rank_after_the_same_step(tmp_path, scenario, kind):
    proc, (r0, r1) = _run(scenario, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert r1["error"] == kind
    assert r0["error"] == "RankError"
    assert r0["message"].startswith(f"rank 1 of 2 failed with {kind}: ")
    assert r0["params"] == r1["params"]          # the weights of the same last step


def test_ctrl_c_on_one_rank_interrupts_every_rank(tmp_path):
    proc = subprocess.Popen(mpi_command(2, [PROGRAM, "interrupt", str(tmp_path)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        pid = _wait_for(tmp_path / "pid-1", proc)
        time.sleep(0.5)                          # well inside the million epochs
        sent = time.perf_counter()
        os.kill(pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        elapsed = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    r0, r1 = _results(tmp_path)
    assert r0["error"] == r1["error"] == "KeyboardInterrupt"
    assert r0["epochs"] == r1["epochs"] and r0["params"] == r1["params"]
    assert elapsed < 10


def test_a_rank_that_dies_ends_the_job(tmp_path):
    start = time.perf_counter()
    proc, _ = _run("hard-exit", tmp_path, timeout=60)
    assert proc.returncode != 0
    assert time.perf_counter() - start < 30


def _wait_for(path, proc, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"the ranks ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


# ------------------------------------------------------------- one process
def test_only_the_compiled_network_trains_distributed():
    from mpi4py import MPI
    import fastmlp.distributed as dist
    net = fastmlp.reference.Network([2, 1], seed=0)
    with pytest.raises(TypeError, match=r"rank 0 of 1: net must be a fastmlp.Network"):
        dist.fit(net, np.ones((3, 2)), np.ones(3), comm=MPI.COMM_SELF, epochs=1)


def test_local_sgd_needs_a_batch_size():
    from mpi4py import MPI
    import fastmlp.distributed as dist
    net = fastmlp.Network([2, 1], seed=0)
    with pytest.raises(ValueError, match="average_every needs a batch_size"):
        dist.fit(net, np.ones((3, 2)), np.ones(3), comm=MPI.COMM_SELF, epochs=1, average_every=2)
    with pytest.raises(ValueError, match="average_every must be >= 1; got 0"):
        dist.fit(net, np.ones((3, 2)), np.ones(3), comm=MPI.COMM_SELF, epochs=1,
                 batch_size=1, average_every=0)


def test_shard_covers_every_row_once():
    from mpi4py import MPI
    import fastmlp.distributed as dist

    class Comm:
        def __init__(self, rank, size):
            self.rank, self.size = rank, size
    rows = [dist.shard(10, Comm(r, 3)) for r in range(3)]
    assert rows == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert dist.shard(5, MPI.COMM_SELF) == slice(0, 5)
