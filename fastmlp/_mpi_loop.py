"""The epoch loop of a distributed fit, run on every rank in lock step.

It mirrors the single-process loop (``fastmlp._training.run``): the
``invscaling`` and ``plateau`` schedules, validation after every epoch,
early stopping with the best weights kept, callbacks and the progress bar.
Every decision is taken from values every rank holds identically (reduced
losses), so no rank ever waits for a collective another rank skipped:
validation is evaluated collectively (one Allreduce of loss and weight
sums), and a callback's request to stop, Ctrl-C or an exception on any rank
is agreed on by one more small Allreduce at the epoch's end.
"""
import math
import time

import numpy as np

from . import _kernels, _training
from ._mpi_agree import Interrupts, epoch_status
from ._mpi_steps import LocalSteps, SyncSteps
from ._mpi_update import penalty
from ._training import _accuracy
from ._validation import REGRESSION_OUTPUTS
from .errors import DivergenceError
from .history import History


class Plan:
    """What every rank knows before the loop: shards, seeds, batches."""

    def __init__(self, comm, facts, batch_size, average_every):
        self.rows = [int(f[0]) for f in facts]          # rows of every rank's shard
        self.total_rows = sum(self.rows)
        self.total_weight = sum(float(f[1]) for f in facts)
        self.seed = int(facts[0][2])                      # rank 0's draw, for everyone
        n = self.rows[comm.rank]
        self.batch = n if batch_size is None else min(batch_size, n)
        per_round = None if batch_size is None else batch_size * (average_every or 1)
        self.n_steps = 1 if per_round is None else max(math.ceil(r / per_round) for r in self.rows)


def _rank_seed(seed, rank):
    # rank 0 shuffles as a single process with this seed would
    return (seed + rank * 0x632BE59BD9B4E019) & ((1 << 63) - 1)


def _evaluate(net, comm, validation):
    """Validation loss (and accuracy) over every rank's validation rows."""
    from mpi4py import MPI
    Xv, Yv, swv = validation
    hidden, output, loss = net._codes
    M = float(Xv.shape[0]) if swv is None else float(np.sum(swv, dtype=np.float64))
    data = _kernels.objective(net.params, Xv, Yv, swv, net._sizes, hidden, output, loss,
                              0.0, 0.0, threads=net._threads(Xv.shape[0])) if M > 0 else 0.0
    correct = 0.0
    if net.output not in REGRESSION_OUTPUTS:
        correct = _accuracy(net, net._forward(Xv), Yv) * Xv.shape[0]
    local = np.array([data * M, M, correct, Xv.shape[0]], dtype=np.float64)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=MPI.SUM)
    val_loss = (total[0] + penalty(net)) / total[1]
    return val_loss, (None if net.output in REGRESSION_OUTPUTS else total[2] / total[3])


def _make_steps(net, comm, X, Y, sw, plan, s, interrupts):
    if s["average_every"]:
        return LocalSteps(net, X, Y, sw, plan.batch, s["average_every"], plan.n_steps, comm,
                          net._optimizer, s["clip_norm"], interrupts)
    return SyncSteps(net, X, Y, sw, plan.batch, plan.n_steps, comm, net._optimizer,
                     s["clip_norm"], interrupts)


class _Watch:
    """Schedule and early stopping, as in the single-process loop."""

    def __init__(self, s):
        self.s = s
        self.best, self.best_params, self.best_epoch = np.inf, None, None
        self.waited = self.plateau_wait = 0

    def after_epoch(self, net, history, epoch, monitored, epoch_start, lr):
        """Returns (why to stop or None, new base learning rate or None)."""
        s, stop, new_lr = self.s, None, None
        if s["schedule"] == "plateau":
            if history.loss[-1] > min(history.loss[:-1], default=np.inf) - s["tol"]:
                self.plateau_wait += 1
            else:
                self.plateau_wait = 0
            if self.plateau_wait > s["patience"]:
                self.plateau_wait = 0
                new_lr = lr / 5
                stop = "plateau" if new_lr <= 1e-6 else None
        if s["early_stopping"]:
            self.waited = 0 if monitored < self.best - s["tol"] else self.waited + 1
            if monitored < self.best:
                self.best, self.best_epoch = monitored, epoch
                self.best_params = epoch_start if epoch_start is not None else net.params.copy()
            if self.waited >= s["patience"]:
                stop = "early_stopping"
        return stop, new_lr


def run(net, comm, X, Y, sw, validation, plan, s):
    """Train on every rank; ``s`` holds the checked settings.  Returns the History."""
    history, lr, base_lr = History(), s["learning_rate"], s["learning_rate"]
    watch = _Watch(s)
    order = np.arange(X.shape[0], dtype=np.intp)
    gather = s["shuffle"] and plan.batch < X.shape[0]
    rng_state = np.array([_rank_seed(plan.seed, comm.rank)], dtype=np.uint64)
    bar = _progress(s["epochs"]) if s["verbose"] and comm.rank == 0 else None
    start = time.perf_counter()
    with Interrupts() as interrupts:
        steps = _make_steps(net, comm, X, Y, sw, plan, s, interrupts)
        try:
            stop = None
            for epoch in range(1, s["epochs"] + 1):       # numbered from 1, as fit's
                if s["schedule"] == "invscaling":
                    lr = base_lr / (net._samples_seen + 1) ** s["power_t"]
                epoch_start = (net.params.copy()
                               if s["early_stopping"] and validation is None else None)
                if gather:
                    _kernels.shuffle(order, rng_state)
                t0 = time.perf_counter()
                total, diverged = steps.epoch(order if gather else None, lr)
                if diverged is not None:
                    _diverge(net, history, start, epoch, diverged, lr)
                net._samples_seen += plan.total_rows
                history._record(np.array([total / plan.total_weight]), lr,
                                time.perf_counter() - t0)
                logs = _logs(net, comm, history, validation, lr, time.perf_counter() - t0)
                if bar is not None:
                    bar.update(epoch, history.loss[-1], lr,
                               **{k: logs[k] for k in ("val_loss", "val_accuracy") if k in logs})
                stop, new_lr = watch.after_epoch(net, history, epoch,
                                                 logs.get("val_loss", history.loss[-1]),
                                                 epoch_start, lr)
                if new_lr is not None:
                    base_lr = lr = new_lr
                if s["any_callbacks"]:         # some rank has callbacks: all agree
                    if _callbacks(net, comm, s["callbacks"], epoch, logs, interrupts):
                        stop = stop or "callback"
                if stop:
                    history.stopped_early = True
                    break
        except KeyboardInterrupt:
            history.seconds = time.perf_counter() - start
            net.history = history
            raise
        finally:
            if bar is not None:
                bar.close()
    if s["early_stopping"] and watch.best_params is not None:
        net.params[...] = watch.best_params
        history.best_epoch = watch.best_epoch
    if bar is not None:
        message = _training._end_message(stop, history.epochs, history.best_epoch, watch.best,
                                         "val_loss" if validation is not None else "loss")
        if message:
            print(message, file=bar.file, flush=True)
    history.seconds = time.perf_counter() - start
    history.allreduce_seconds = steps.seconds_reducing
    net.history = history
    return history


def _logs(net, comm, history, validation, lr, seconds):
    logs = {"loss": history.loss[-1], "learning_rate": lr, "seconds": seconds}
    if validation is not None:
        val_loss, val_accuracy = _evaluate(net, comm, validation)
        logs["val_loss"] = float(val_loss)
        history.val_loss.append(logs["val_loss"])
        if val_accuracy is not None:
            logs["val_accuracy"] = float(val_accuracy)
            history.val_accuracy.append(logs["val_accuracy"])
    return logs


def _callbacks(net, comm, callbacks, epoch, logs, interrupts):
    """Every rank's callbacks, then agree: any rank's stop stops all."""
    stop, error = False, None
    try:
        stop = _training._run_callbacks(callbacks, net, epoch, logs)   # STOP / StopTraining
    except Exception as exc:        # raised on this rank, RankError on the others
        error = exc
    return epoch_status(comm, stop, interrupts, error)


def _diverge(net, history, start, epoch, value, lr):
    history.seconds = time.perf_counter() - start
    net.history = history
    raise DivergenceError(
        f"training diverged at epoch {epoch}: the loss became {float(value)!r} with "
        f"learning_rate={lr!r}; try a lower learning_rate or clip_norm (the update that "
        "met it was not applied)", epoch=epoch, history=history)


def _progress(total):
    from .progress import ProgressBar
    return ProgressBar(total)
