"""``fastmlp train --mpi``: the train command on every rank of an ``mpiexec`` job.

Rank r of P reads the data rows r, r+P, r+2P, ... of the CSV file (the others
are skipped unparsed), holds out ``--test-size`` of its own rows (seeded by
``--seed`` and the rank), and trains with :func:`fastmlp.distributed.fit`
(``--batch-size`` rows per rank per step).  Everything decided from the data
is decided over all ranks: the task and the classes, the standardisation's
means and deviations, the held-out score.  Errors are agreed on before any
training collective, so every rank reports the same one; an unexpected
exception on one rank aborts the job (``MPI.Abort``) rather than leave the
others waiting.  Rank 0 prints and saves the model.
"""
import traceback

import numpy as np

from . import cli
from .cli import CLIError


def cmd_train_mpi(args, out, err):
    """Run ``fastmlp train`` as one rank of the job (see the module docstring)."""
    from . import distributed as dist
    from .errors import DivergenceError
    MPI = dist._mpi()
    comm = MPI.COMM_WORLD
    try:
        return _train(comm, args, out if comm.rank == 0 else _Null())
    except (CLIError, ValueError, TypeError, DivergenceError, dist.RankError, KeyboardInterrupt):
        raise                                # the same on every rank: reported by cli.main
    except BaseException:
        traceback.print_exc(file=err)
        print(f"fastmlp train: rank {comm.rank} failed; aborting every rank", file=err)
        err.flush()
        comm.Abort(1)


class _Null:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _agree(comm, error):
    """Every rank raises the first failing rank's error (one allgather)."""
    errors = comm.allgather(None if error is None else str(error))
    for rank, message in enumerate(errors):
        if message is not None:
            raise CLIError(f"rank {rank} of {comm.size}: {message}")


def _read(comm, args):
    try:
        header, data = cli.read_csv(args.data, shard=(comm.rank, comm.size))
        features, X, y = cli._target_column(args, header, data)
        hidden = cli._check_train_args(args)
        error = None
    except CLIError as exc:
        error, features, X, y, hidden = exc, None, None, None, None
    _agree(comm, error)
    return features, X, y, hidden


def _task_and_labels(comm, args, y):
    """The task and, for classification, (classes, labels), over every rank's rows."""
    integral = bool(np.all(y == np.round(y)))
    values = np.unique(y) if integral and len(np.unique(y)) <= cli._MAX_CLASSES else None
    gathered = comm.allgather((integral, values))
    every_integral = all(g[0] for g in gathered)
    if args.task == "auto":
        few = all(g[1] is not None for g in gathered)
        union = np.unique(np.concatenate([g[1] for g in gathered])) if few else None
        task = ("classification" if every_integral and few and len(union) <= cli._MAX_CLASSES
                else "regression")
    else:
        task = args.task
    if task != "classification":
        return task, None, None
    if not every_integral:
        raise CLIError(f"--task classification needs whole-number class labels in "
                       f"{args.target!r}")
    classes = np.unique(np.concatenate(comm.allgather(np.unique(y))))
    if len(classes) < 2:
        raise CLIError(f"the target {args.target!r} has a single class ({classes[0]:g}); "
                       "nothing to learn")
    return task, classes, np.searchsorted(classes, y)


def _split(comm, args, n):
    """This rank's held-out and training rows."""
    order = np.random.default_rng([args.seed, comm.rank]).permutation(n)
    n_test = int(round(args.test_size * n))
    error = None
    if args.test_size > 0 and (n_test < 1 or n - n_test < 1):
        error = CLIError(f"--test-size {args.test_size} of its {n} rows leaves {n_test} test "
                         f"and {n - n_test} training rows")
    _agree(comm, error)
    return order[:n_test], order[n_test:]


def _mean_sd(comm, A):
    """Column means and standard deviations over every rank's rows of A (two passes)."""
    from mpi4py import MPI
    A = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
    sums = np.concatenate([[len(A)], A.sum(axis=0)])
    comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
    mu = sums[1:] / sums[0]
    sq = ((A - mu) ** 2).sum(axis=0)
    comm.Allreduce(MPI.IN_PLACE, sq, op=MPI.SUM)
    return mu, np.sqrt(sq / sums[0])


def _score(comm, args, net, task, X, y, labels, test, out):
    """Print the held-out accuracy, or R^2 and RMSE, over every rank's held-out rows."""
    from mpi4py import MPI
    P = net.predict(X[test]) if len(test) else np.zeros((0, net.layer_sizes[-1]))
    if task == "classification":
        pred = (P[:, 0] > 0.5).astype(int) if P.shape[1] == 1 else P.argmax(axis=1)
        s = np.array([np.sum(pred == labels[test]), len(test)], dtype=np.float64)
        comm.Allreduce(MPI.IN_PLACE, s, op=MPI.SUM)
        print(f"held-out accuracy {s[0] / s[1]:.1%} ({int(s[1])} rows)", file=out)
        return
    r, t = P[:, 0] - y[test], y[test]
    s = np.array([np.sum(r ** 2), np.sum(t), np.sum(t ** 2), len(test)], dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, s, op=MPI.SUM)
    ss = s[2] - s[1] ** 2 / s[3]
    r2 = 1 - s[0] / ss if ss > 0 else float("nan")
    print(f"held-out R^2 {r2:.4f}, RMSE {np.sqrt(s[0] / s[3]):.6g} ({int(s[3])} rows)", file=out)


def _train(comm, args, out):
    from . import distributed as dist
    from .network import Network
    features, X, y, hidden = _read(comm, args)
    task, classes, labels = _task_and_labels(comm, args, y)
    test, train = _split(comm, args, len(y))
    mu, sd = (_mean_sd(comm, X[train]) if args.standardize
              else (np.zeros(X.shape[1]), np.ones(X.shape[1])))
    sd = np.where(sd > 0, sd, 1.0)
    if task == "classification":
        k = len(classes)
        n_out, output, loss = (1, "sigmoid", "log_loss") if k == 2 else (k, "softmax", "log_loss")
        Y, y_mu, y_sd = labels.astype(np.float64), 0.0, 1.0
    else:
        n_out, output, loss = 1, "identity", "squared_error"
        y_mu, y_sd = _mean_sd(comm, y[train]) if args.standardize else (0.0, 1.0)
        y_mu, y_sd = float(np.ravel(y_mu)[0]), float(np.ravel(y_sd)[0]) or 1.0
        Y = (y - y_mu) / y_sd
    sizes = [X.shape[1]] + hidden + [n_out]
    net = Network(sizes, activation=args.activation, output=output, loss=loss, l2=args.l2,
                  init="he" if args.activation == "relu" else "xavier", dtype=args.dtype,
                  seed=args.seed)
    lr = args.lr if args.lr is not None else (0.001 if args.optimizer == "adam" else 0.01)
    kw = dict(epochs=args.epochs, learning_rate=lr, batch_size=args.batch_size, shuffle=True,
              optimizer=args.optimizer, verbose=not args.quiet)
    if args.optimizer == "sgd" and args.momentum:
        kw.update(momentum=args.momentum, nesterov=True)
    if args.early_stopping:
        kw.update(validation_split=0.1, early_stopping=True)
    n_rows = comm.allreduce(len(y))
    print(f"{args.data}: {n_rows} rows on {comm.size} ranks, {len(features)} inputs, target "
          f"{args.target!r}: {task}" + (f" with {len(classes)} classes" if task ==
                                         "classification" else ""), file=out)
    print(f"network {'-'.join(map(str, sizes))} {args.activation}, {output} output, {loss}, "
          f"{args.optimizer} lr {lr:g}, batches of {args.batch_size} per rank, {args.epochs} "
          f"epochs, {comm.allreduce(len(train))} training / {comm.allreduce(len(test))} "
          "held-out rows", file=out)
    out.flush()
    hist = dist.fit(net, ((X - mu) / sd)[train], Y[train], comm=comm, **kw)
    cli._fold_scaling(net, mu, sd, y_mu, y_sd)
    print(f"trained {len(hist.loss)} epochs in {hist.seconds:.2f} s on {comm.size} ranks, "
          f"final loss {hist.loss[-1]:.6g}" + (" (stopped early)" if hist.stopped_early else ""),
          file=out)
    if comm.allreduce(len(test)):
        _score(comm, args, net, task, X, y, labels, test, out)
    if comm.rank == 0:
        meta = {"fastmlp_cli": 1, "task": task, "target": args.target, "features": features,
                "classes": None if classes is None else [cli._label(c) for c in classes]}
        cli._save_model(net, args.out, meta)
        print(f"saved {args.out} (columns and classes in {cli._meta_path(args.out)})", file=out)
    return 0
