"""What ``fastmlp train --mpi`` decides over every rank's rows (the collective steps).

``cli.cmd_train`` runs the command on every rank of an ``mpiexec`` job: rank r of
P reads the data rows r, r+P, r+2P, ... of the CSV file, holds out
``--test-size`` of its own rows and trains with :func:`fastmlp.distributed.fit`
(``--batch-size`` rows per rank per step).  This module holds the steps that
need every rank: agreeing on errors before any training collective (every rank
reports the same one), the task and the classes, the standardisation's scales,
means and deviations, and the held-out score.  An unexpected exception on one
rank aborts the job (``MPI.Abort``) rather than leave the others waiting.
"""
import traceback

import numpy as np


def run_or_abort(comm, run, err, agreed):
    """``run()``; an exception not of the ``agreed`` kinds (those every rank
    raises together) is printed and aborts every rank."""
    try:
        return run()
    except agreed:
        raise
    except BaseException:
        traceback.print_exc(file=err)
        print(f"fastmlp train: rank {comm.rank} failed; aborting every rank", file=err)
        err.flush()
        comm.Abort(1)


def agree(comm, error):
    """Every rank raises the first failing rank's error as a ValueError (one allgather)."""
    errors = comm.allgather(None if error is None else " ".join(str(error).split()))
    for rank, message in enumerate(errors):
        if message is not None:
            raise ValueError(f"rank {rank} of {comm.size}: {message}")


def first(comm, value):
    """The first rank's non-None ``value``, on every rank (or None)."""
    return next((v for v in comm.allgather(value) if v is not None), None)


def task_and_labels(comm, task, y, cells, target, max_classes):
    """(task, classes, this rank's labels) decided over every rank's targets:
    ``y`` the rank's target numbers, or None when its ``cells`` hold words
    (class labels on every rank then, compared as text)."""
    if any(comm.allgather(y is None)):
        if task == "regression":
            raise ValueError(f"--task regression needs a numeric target; {target!r} holds "
                             "words (class labels?)")
        classes = np.unique(np.concatenate([np.asarray(c, dtype=str)
                                            for c in comm.allgather(list(set(cells)))]))
        if len(classes) < 2:
            raise ValueError(f"the target {target!r} has a single class ({classes[0]!r}); "
                             "nothing to learn")
        return "classification", classes, np.searchsorted(classes, np.asarray(cells, dtype=str))
    integral = bool(np.all(y == np.round(y)))
    values = np.unique(y)
    gathered = comm.allgather((integral, values if len(values) <= max_classes else None))
    every_integral = all(g[0] for g in gathered)
    few = all(g[1] is not None for g in gathered)
    classes = np.unique(np.concatenate([g[1] for g in gathered])) if few else None
    if task == "auto":
        task = ("classification" if every_integral and few and len(classes) <= max_classes
                else "regression")
    if task != "classification":
        return task, None, None
    if not every_integral:
        raise ValueError(f"--task classification needs whole-number or word class labels in "
                         f"{target!r}")
    if classes is None:
        classes = np.unique(np.concatenate(comm.allgather(values)))
    if len(classes) < 2:
        raise ValueError(f"the target {target!r} has a single class ({classes[0]:g}); "
                         "nothing to learn")
    return task, classes, np.searchsorted(classes, y)


def split(comm, seed, test_size, n):
    """This rank's (held-out, training) rows: ``test_size`` of its own, seeded by rank."""
    order = np.random.default_rng([seed, comm.rank]).permutation(n)
    n_test = int(round(test_size * n))
    error = None
    if test_size > 0 and (n_test < 1 or n - n_test < 1):
        error = ValueError(f"--test-size {test_size} of its {n} rows leaves {n_test} test "
                           f"and {n - n_test} training rows")
    agree(comm, error)
    return order[:n_test], order[n_test:]


def globalise(comm, xs, a, enabled):
    """Make standardisation ``xs`` (scale, m, s, constant) that of every rank's rows ``a``."""
    from mpi4py import MPI
    if not enabled:
        return xs
    scale = np.abs(a).max(axis=0) if len(a) else np.zeros(a.shape[1])
    comm.Allreduce(MPI.IN_PLACE, scale, op=MPI.MAX)
    xs.scale = np.where(scale > 0, scale, 1.0)
    u = a / xs.scale
    sums = np.concatenate([[len(u)], u.sum(axis=0)])
    comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
    xs.m = sums[1:] / sums[0]
    sq = ((u - xs.m) ** 2).sum(axis=0)
    comm.Allreduce(MPI.IN_PLACE, sq, op=MPI.SUM)
    xs.s = np.sqrt(sq / sums[0])
    xs.constant = xs.s == 0
    return xs


def score(comm, classification, P, truth):
    """The held-out line over every rank's held-out rows (accuracy, or R^2 and RMSE)."""
    from mpi4py import MPI
    if classification:
        pred = (P[:, 0] > 0.5).astype(int) if P.shape[1] == 1 else P.argmax(axis=1)
        s = np.array([np.sum(pred == truth), len(truth)], dtype=np.float64)
        comm.Allreduce(MPI.IN_PLACE, s, op=MPI.SUM)
        return f"held-out accuracy {s[0] / s[1]:.1%} ({int(s[1])} rows)"
    p = P[:, 0].astype(np.float64)
    top = max(float(np.abs(truth).max(initial=0)), float(np.abs(p).max(initial=0)))
    scale = comm.allreduce(top, op=MPI.MAX) or 1.0      # sums of / max |.|: no overflow
    yu, r = truth / scale, p / scale - truth / scale
    s = np.array([np.sum(r ** 2), np.sum(yu), np.sum(yu ** 2), len(truth)], dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, s, op=MPI.SUM)
    ss = s[2] - s[1] ** 2 / s[3]
    r2 = 1 - s[0] / ss if ss > 0 else float("nan")
    return (f"held-out R^2 {r2:.4f}, RMSE {np.sqrt(s[0] / s[3]) * scale:.6g} "
            f"({int(s[3])} rows)")
