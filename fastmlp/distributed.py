"""Synchronous data-parallel training over MPI (``pip install "fastmlp[mpi]"``).

Run the same script on every rank, each rank holding its own shard of the
rows::

    # train.py -- run as: mpiexec -n 4 python -m mpi4py train.py
    from mpi4py import MPI
    import fastmlp, fastmlp.distributed as dist

    comm = MPI.COMM_WORLD
    rows = dist.shard(n_rows, comm)                 # this rank's slice of the rows
    net = fastmlp.Network([784, 256, 128, 10], activation="relu", output="softmax",
                          loss="log_loss", dtype="float32", seed=0)
    hist = dist.fit(net, X[rows], y[rows], comm=comm, epochs=10, batch_size=128,
                    learning_rate=1e-3, optimizer="adam")
    if comm.rank == 0:
        net.save("model.npz")

**What a step is.** Rank 0's parameters are broadcast to every rank first.
Each step every rank takes its next ``batch_size`` rows, computes the data
gradient of that local batch in the compiled kernels, and one Allreduce of
``[gradient summed over the batch, the batch's weight, its loss sum, two
status flags]`` gives every rank the gradient of the objective of the
concatenated batch (``M`` = the global batch weight; L1/L2 divided by that
``M``); every rank then takes the same optimizer step (clipping on the
global norm), so the parameters stay identical on every rank.

**Equivalence (the spec).** Training on p ranks equals single-process
training whose every batch is the concatenation, in rank order, of the
ranks' batches of that step (within float rounding): same losses, history,
schedules, early stopping, weights.  ``batch_size`` is per rank, so the
global batch is up to ``p * batch_size`` rows.  Shards may differ in size:
an epoch has as many steps as the largest shard needs, and a rank whose
shard has run out contributes no rows (zero weight) to the epoch's remaining
steps.  With ``shuffle=True`` each rank visits its own rows in a new order
each epoch (rank 0 exactly as a single process with the same seed would).

**Faults.** Every rank checks its arguments, then the ranks exchange one
message before any training collective: bad input or different settings on
any rank make every rank raise the same ``ValueError``/``TypeError``, naming
the rank.  Ctrl-C on any rank, or an exception in a rank's step or callback,
is carried by the next reduction, so all ranks stop after the same step
(``KeyboardInterrupt`` everywhere; the failing rank re-raises its exception,
the others raise :class:`RankError`).  A rank that dies outright is cleaned
up by ``mpiexec``.  Run scripts as ``python -m mpi4py script.py``, so that an
exception *outside* ``fit`` on one rank aborts the job instead of leaving
the others waiting.

**Speed.** Overlapping the gradient Allreduce with backpropagation (a
non-blocking Iallreduce per layer as each layer's gradient is ready, as DDP
and Horovod do) is not done: the kernels compute the whole net's gradient in
one call, so Python gets no layer's gradient before the last.  For slow
networks ``average_every=k`` trains k local steps per rank in one compiled
call, then averages the parameters (local SGD, one Allreduce per k steps).
It is not equivalent to the single-process fit; ``bench/DISTRIBUTED.md`` has
its measured trade-off.
"""
import numpy as np

from . import _validation as v
from ._sparse import is_sparse
from ._mpi_agree import RankError, agree_to_start
from ._training import OptimizerState

__all__ = ["fit", "shard", "RankError"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:          # pragma: no cover - the extra is missing
        raise ImportError("fastmlp.distributed needs mpi4py and an MPI library: "
                          'pip install "fastmlp[mpi]"') from exc
    return MPI


def shard(n_rows, comm=None):
    """This rank's contiguous slice of ``n_rows`` rows (the first ranks get one more).

    Parameters
    ----------
    n_rows : int
        Rows of the whole data set.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.

    Returns
    -------
    slice
    """
    n_rows = v.check_count("n_rows", n_rows)
    comm = _mpi().COMM_WORLD if comm is None else comm
    size, rank = comm.size, comm.rank
    base, extra = divmod(n_rows, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def fit(net, X, Y, *, comm=None, epochs=1000, learning_rate=0.1, batch_size=None,
        shuffle=True, optimizer="sgd", momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
        epsilon=1e-8, schedule="constant", power_t=0.5, clip_norm=None, sample_weight=None,
        validation_data=None, validation_split=0.0, early_stopping=False, patience=10,
        tol=1e-4, callbacks=(), verbose=False, average_every=None):
    """Train ``net`` on every rank of ``comm``, each rank on its own shard.

    Call it on every rank with that rank's rows.  Parameters are those of
    :meth:`fastmlp.Network.fit`, per rank, plus:

    Parameters
    ----------
    net : fastmlp.Network
        The same architecture and dtype on every rank; rank 0's weights are
        broadcast to the others first.
    X, Y, sample_weight
        This rank's shard (at least one row).
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    batch_size : int or None
        Rows per step *per rank* (None: each rank's whole shard, one step an
        epoch).
    validation_data, validation_split
        This rank's validation rows (every rank gives them, or none does);
        the validation loss and accuracy are over all ranks' rows.
    callbacks
        Run on every rank, as ``fit``'s (epochs numbered from 1); training
        stops when any rank's callback returns :data:`fastmlp.STOP` or raises
        :class:`fastmlp.StopTraining`.
    verbose : bool
        Progress bar on rank 0.
    average_every : int or None
        None: synchronous SGD (one gradient Allreduce a step; equivalent to
        the single-process fit).  k: local SGD, k compiled steps on each
        rank's own batches, then a parameter average weighted by the rows'
        sample weight (optimizer state stays per rank).  Needs a
        ``batch_size``.

    Returns
    -------
    History
        The same on every rank; ``allreduce_seconds`` is the time this rank
        spent in the steps' Allreduce (waiting for slower ranks included).

    Raises
    ------
    ValueError, TypeError
        On every rank, when any rank's arguments are bad or the ranks'
        settings differ (the message names the rank).
    DivergenceError
        On every rank, as for ``Network.fit``.
    KeyboardInterrupt
        On every rank, after the same step, when any rank got Ctrl-C.
    RankError
        On the other ranks when one rank's step or callback raised.
    """
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    args = dict(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                shuffle=shuffle, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                beta1=beta1, beta2=beta2, epsilon=epsilon, schedule=schedule,
                power_t=power_t, clip_norm=clip_norm, early_stopping=early_stopping,
                patience=patience, tol=tol, verbose=verbose, average_every=average_every)
    error, locked, checked = None, False, None
    try:
        checked = _check(net, X, Y, sample_weight, validation_data, validation_split,
                         callbacks, args)
        locked = net._fit_lock.acquire(blocking=False)
        if not locked:
            raise RuntimeError("this network is already training in another thread; "
                               "fit and partial_fit cannot run on it concurrently")
    except Exception as exc:                 # every rank raises it, after the exchange
        error = exc
    try:
        return _train(net, comm, error, checked, args, callbacks)
    finally:
        if locked:
            net._fit_lock.release()


def _train(net, comm, error, checked, args, callbacks):
    from . import _mpi_loop
    settings = _shared_settings(net, args, checked)
    if checked is None:
        facts = (0, 0.0, 0, bool(callbacks))
    else:
        X, _, sw, _, _ = checked
        weight = float(X.shape[0]) if sw is None else float(np.sum(sw, dtype=np.float64))
        facts = (X.shape[0], weight, int(net._rng.bit_generator.random_raw() >> 1),
                 bool(callbacks))
    facts = agree_to_start(comm, error, settings, facts)
    X, Y, sw, validation, s = checked
    s["any_callbacks"] = any(f[3] for f in facts)
    comm.Bcast(net.params, root=0)
    net._optimizer = OptimizerState(*s["optimizer"], net.n_params, net.dtype)
    net._samples_seen = 0
    plan = _mpi_loop.Plan(comm, facts, s["batch_size"], s["average_every"])
    return _mpi_loop.run(net, comm, X, Y, sw, validation, plan, s)


def _shared_settings(net, args, checked):
    """What must be equal on every rank (checked values when the checks passed)."""
    shared = dict(args) if checked is None else {k: checked[4][k] for k in args}
    shared.pop("verbose")
    if hasattr(net, "layer_sizes"):
        shared["network"] = (net.layer_sizes, net.activation, net.output, net.loss_name,
                             net.l2, net.l1, net.dtype.name)
    shared["validation"] = None if checked is None else checked[3] is not None
    return {k: repr(val) for k, val in shared.items()}


def _check(net, X, Y, sample_weight, validation_data, validation_split, callbacks, args):
    """This rank's checks: (X, Y, sw, validation, settings) or an exception."""
    from .network import Network
    if not isinstance(net, Network):
        raise TypeError("net must be a fastmlp.Network (the compiled network); "
                        f"got {type(net).__module__}.{type(net).__name__}")
    if net.dropout:
        raise ValueError(f"a distributed fit cannot train a network with dropout="
                         f"{net.dropout!r}: its ranks' steps take no dropout masks (train it "
                         "with net.fit, or set net.dropout = 0)")
    val_X = validation_data[0] if isinstance(validation_data, (tuple, list)) else None
    if is_sparse(X) or is_sparse(val_X):
        raise ValueError(f"distributed.fit takes dense arrays; got a sparse "
                         f"{type(X if is_sparse(X) else val_X).__name__} (train on sparse X "
                         "with net.fit, or densify each rank's shard with .toarray())")
    X, Y, sw = net._check_XY(X, Y, sample_weight)
    s = dict(args)
    s["epochs"] = v.check_count("epochs", args["epochs"])
    s["learning_rate"] = v.check_positive("learning_rate", args["learning_rate"])
    s["batch_size"] = v.check_count("batch_size", args["batch_size"], allow_none=True)
    if args["optimizer"] in v.FIT_OPTIMIZERS and args["optimizer"] not in v.DISTRIBUTED_OPTIMIZERS:
        raise ValueError(f"a distributed fit's optimizer must be one of "
                         f"{', '.join(map(repr, v.DISTRIBUTED_OPTIMIZERS))}; got "
                         f"{args['optimizer']!r} (Network.fit runs it in one process)")
    s["optimizer"] = v.check_optimizer(args["optimizer"], args["momentum"], args["nesterov"],
                                       args["beta1"], args["beta2"], args["epsilon"])
    v.check_choice("schedule", args["schedule"], v.DISTRIBUTED_SCHEDULES)
    s["power_t"] = v.check_nonnegative("power_t", args["power_t"])
    s["clip_norm"] = v.check_optional_positive("clip_norm", args["clip_norm"]) or 0.0
    s["patience"] = v.check_count("patience", args["patience"])
    s["tol"] = v.check_nonnegative("tol", args["tol"])
    s["shuffle"], s["early_stopping"] = bool(args["shuffle"]), bool(args["early_stopping"])
    s["verbose"] = bool(args["verbose"])
    s["callbacks"] = v.check_callbacks(callbacks)
    s["average_every"] = v.check_count("average_every", args["average_every"], allow_none=True)
    if s["average_every"] and s["batch_size"] is None:
        raise ValueError("average_every needs a batch_size (local steps are minibatch "
                         f"steps); got average_every={s['average_every']!r}, batch_size=None")
    validation = net._validation_set(validation_data, validation_split)
    if isinstance(validation, float):
        X, Y, sw, validation = net._split_validation(X, Y, sw, validation)
    return X, Y, sw, validation, s
