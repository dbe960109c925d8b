"""Run every case of mpi_cases.py on this rank (under mpiexec); save what each rank got.

Usage: mpiexec -n P python -m mpi4py mpi_rank_equivalence.py OUT_DIR
Writes OUT_DIR/CASE-RANK.npz: params, loss, val_loss, learning_rate, best_epoch,
stopped_early.
"""
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpi_cases  # noqa: E402

import fastmlp.distributed as dist  # noqa: E402


def main(out_dir):
    comm = MPI.COMM_WORLD
    for name, case in mpi_cases.CASES.items():
        net = mpi_cases.network(case)
        if comm.rank:
            net.params[...] = 0          # rank 0's weights must reach every rank
        X, y, kwargs = mpi_cases.rank_args(case, comm.size, comm.rank)
        h = dist.fit(net, X, y, comm=comm, **kwargs)
        np.savez(os.path.join(out_dir, f"{name}-{comm.rank}.npz"), params=net.params,
                 loss=h.loss, val_loss=h.val_loss, learning_rate=h.learning_rate,
                 best_epoch=-1 if h.best_epoch is None else h.best_epoch,
                 stopped_early=h.stopped_early)


if __name__ == "__main__":
    main(sys.argv[1])
