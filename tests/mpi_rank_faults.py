"""One fault scenario on every rank (under mpiexec); each rank records how its fit ended.

Usage: mpiexec -n P python -m mpi4py mpi_rank_faults.py SCENARIO OUT_DIR
Writes OUT_DIR/rank-R.json: the exception's type and message (None if the fit
returned), the epochs in net.history and the parameters' sum.  Scenarios:
bad-input, settings, callback-error, step-error, interrupt (waits for a SIGINT
from the test), hard-exit.
"""
import json
import os
import sys
import time

import numpy as np
from mpi4py import MPI

import fastmlp
import fastmlp.distributed as dist
from fastmlp import _mpi_steps


def _data(rank):
    rng = np.random.default_rng(rank)
    X = rng.normal(size=(40, 6))
    return X, (X[:, 0] > 0).astype(float)


def _fail_later(rank, when):
    """A callback that raises (or kills the process) on ``rank`` at epoch ``when``."""
    def callback(net, epoch, logs):
        if MPI.COMM_WORLD.rank == rank and epoch == when:
            raise RuntimeError("callback failed on purpose")
    return callback


def _scenario(name, comm, X, y):
    kw = dict(comm=comm, epochs=5, batch_size=8, learning_rate=0.1)
    if name == "bad-input" and comm.rank == 1:
        X = X.copy()
        X[3, 2] = np.nan
    if name == "settings" and comm.rank == 1:
        kw["epochs"] = 6
    if name == "callback-error":
        kw["callbacks"] = [_fail_later(1, 2)]
    if name == "step-error" and comm.rank == 1:
        calls = []
        real = _mpi_steps.SyncSteps._full_pass

        def failing(self, *args):
            calls.append(1)
            if len(calls) == 7:
                raise MemoryError("out of memory on purpose")
            return real(self, *args)
        _mpi_steps.SyncSteps._full_pass = failing
    if name == "interrupt":
        open(os.path.join(OUT, f"pid-{comm.rank}"), "w").write(str(os.getpid()))
        kw["epochs"] = 10 ** 6
    if name == "hard-exit":
        kw["callbacks"] = [lambda net, epoch, logs: comm.rank == 1 and epoch == 2 and os._exit(3)]
    return X, y, kw


def main(name):
    comm = MPI.COMM_WORLD
    X, y = _data(comm.rank)
    net = fastmlp.Network([6, 16, 1], activation="relu", loss="log_loss", seed=0)
    X, y, kw = _scenario(name, comm, X, y)
    error, message = None, None
    start = time.perf_counter()
    try:
        dist.fit(net, X, y, **kw)
    except BaseException as exc:          # KeyboardInterrupt too: recorded, then exit
        error, message = type(exc).__name__, str(exc)
    result = dict(error=error, message=message, seconds=time.perf_counter() - start,
                  epochs=None if net.history is None else len(net.history),
                  params=float(np.sum(net.params, dtype=np.float64)))
    with open(os.path.join(OUT, f"rank-{comm.rank}.json"), "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    OUT = sys.argv[2]
    main(sys.argv[1])
