"""The fit loop shared by the compiled and reference networks.

It checks the training settings, owns the optimizer state, the learning-rate
schedule, validation, early stopping, callbacks, progress and Ctrl-C, and
calls the network's ``_train_epochs`` (the kernels, or NumPy) for the math.
Without per-epoch work (no validation, callbacks, progress or schedule) all
epochs run in one kernel call.
"""
import math
import os
import signal
import threading
import time
import warnings

try:        # the C functions signal.signal wraps (its enum conversions cost ~15 us a fit)
    import _signal as _sig
except ImportError:     # pragma: no cover - other Pythons
    _sig = signal

import numpy as np

from . import _validation as v
from ._sparse import take_rows
from .errors import STOP, DivergenceError, StopTraining
from .history import History


# Multiply-adds between two checks for Ctrl-C inside a kernel call.
_WORK_PER_SIGNAL_CHECK = 2e6
# Epochs one kernel call runs at most: its loss buffer (512 KB) is all a fit
# allocates for losses up front, whatever its epochs.
_EPOCHS_PER_CALL = 1 << 16
# Forward multiply-adds a row of one kernel call scoring validation data
# (two calls: loss and outputs) at most: Ctrl-C is answered between calls.
_VALIDATION_WORK = 1e7


class OptimizerState:
    """Optimizer settings plus their state buffers (kept between partial_fit
    calls): SGD's velocity (with momentum), RMSprop's mean square, Adam's and
    AdamW's moments (``state``, params layout, the first moments then the
    second) and their step count (``step``)."""

    rho, weight_decay = 0.9, 0.01       # (the defaults: states pickled before they existed)

    def __init__(self, name, momentum, nesterov, beta1, beta2, epsilon, rho, weight_decay,
                 n_params, dtype):
        self.name = name
        self.code = v.OPTIMIZERS[name]
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.rho, self.weight_decay = rho, weight_decay
        n_state = state_size(name, momentum, n_params)
        self.state = np.zeros(n_state, dtype=dtype) if n_state else None
        self.step = np.zeros(1, dtype=np.intp)

    def settings(self):
        return (self.name, self.momentum, self.nesterov, self.beta1, self.beta2, self.epsilon,
                self.rho, self.weight_decay)

    def snapshot(self):
        """Copies of the state buffers and step count (see :meth:`restored`)."""
        return (None if self.state is None else self.state.copy()), self.step.copy()

    def restored(self, snapshot):
        """A state with these settings holding ``snapshot``'s buffers."""
        again = object.__new__(type(self))
        again.__dict__.update(self.__dict__)
        again.state, again.step = snapshot
        return again


def state_size(name, momentum, n_params):
    """Values of the state buffer of optimizer ``name`` (0: none): Adam's and
    AdamW's two moments, RMSprop's mean square, SGD's velocity with momentum."""
    if name in ("adam", "adamw"):
        return 2 * n_params
    return n_params if name == "rmsprop" or momentum > 0 else 0


class Checkpoints:
    """``fit``'s checkpointing: after every ``every``-th epoch (and the last)
    to ``directory/epoch-N.npz``, or with ``every="best"`` to
    ``directory/best.npz`` whenever the monitored loss improves; each written
    atomically by ``save``, with the epoch and its scores as metadata, and
    the optimizer state (and samples seen) that goes with the weights
    written, for ``partial_fit`` to resume from."""

    def __init__(self, directory, every):
        self.directory = directory
        self.every = every
        self.paths = []

    def after_epoch(self, net, epoch, epochs, logs, best_params, best_optimizer=None):
        """Write what this epoch calls for; ``best_params`` (or None) are the
        weights of a new best epoch, ``best_optimizer`` (None: the current
        one) the optimizer's ``(snapshot, samples_seen)`` with those weights."""
        if self.every == "best":
            if best_params is not None:
                self._write(net, best_params, "best.npz", epoch, logs, best_optimizer)
        elif epoch % self.every == 0 or epoch == epochs:
            self._write(net, net.params, f"epoch-{epoch:0{len(str(epochs))}d}.npz", epoch, logs)

    def _write(self, net, params, name, epoch, logs, optimizer=None):
        snap = object.__new__(type(net))          # the network's settings, these weights
        snap.__dict__.update(net.__dict__)
        snap.params = params
        if optimizer is not None and net._optimizer is not None:
            snap._optimizer = net._optimizer.restored(optimizer[0])
            snap._samples_seen = optimizer[1]
        meta = {"epoch": epoch, **{k: float(v) for k, v in logs.items()
                                   if k != "seconds" and np.isfinite(v)}}   # lbfgs: no rate
        path = os.path.join(self.directory, name)
        if np.isfinite(params).all():
            snap.save(path, metadata=meta)
            self.paths.append(path)


def _run_callbacks(callbacks, net, epoch, logs):
    """Run every callback; True when one asked training to stop (returned
    STOP or raised StopTraining, which skips the callbacks after it)."""
    stop = False
    for cb in callbacks:
        try:
            result = cb(net, epoch, dict(logs))
        except StopTraining:
            return True
        if result is STOP:
            stop = True
        elif result is True:
            warnings.warn(
                "a callback returned True, which does not stop training: return "
                "fastmlp.STOP or raise fastmlp.StopTraining to stop", UserWarning, stacklevel=2)
    return stop


_STOPPED = {"early_stopping": "stopped early at epoch {}",
            "plateau": "stopped at epoch {}: the plateau schedule's learning rate fell below 1e-6",
            "callback": "stopped at epoch {} by a callback"}


def _end_message(why, epoch, restored, best, monitored_name):
    """What verbose prints after the bar: why training stopped before its
    last epoch (``why`` None: it did not) and which epoch's weights early
    stopping restored (``restored`` None: none); None when neither."""
    parts = [] if why is None else [_STOPPED[why].format(epoch)]
    if restored is not None and (why is not None or restored != epoch):
        parts.append(f"restored epoch {restored} ({monitored_name} {best:.6g})")
    return ", ".join(parts) or None


def _hits(net, P, Y):
    """Rows whose outputs P are classified as the targets Y say."""
    if net.output == "softmax":
        return int(np.count_nonzero(P.argmax(axis=1) == Y.argmax(axis=1)))
    return int(np.count_nonzero(np.all((P > 0.5) == (Y > 0.5), axis=1)))


def _accuracy(net, P, Y):
    """The fraction of rows classified right (see :func:`_hits`)."""
    return _hits(net, P, Y) / len(P)


def _invscaling(learning_rate, samples_seen, power_t):
    """``learning_rate / (samples_seen + 1) ** power_t``; 0.0 where the power
    overflows (the rate is then below the smallest float)."""
    try:
        return learning_rate / (samples_seen + 1) ** power_t
    except OverflowError:
        return 0.0


def cosine_rate(learning_rate, epoch, epochs, warmup_epochs):
    """The ``cosine`` schedule's rate for ``epoch`` (from 0) of ``epochs``: a
    linear warm-up over the first ``warmup_epochs`` up to ``learning_rate``,
    then half a cosine period from ``learning_rate`` towards 0."""
    if epoch < warmup_epochs:
        return learning_rate * (epoch + 1) / warmup_epochs
    span = epochs - warmup_epochs
    return learning_rate * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def _training_rows(net, X, Y, sw, validation, batch_size):
    """``(X, Y, sw, order, held_out)``: the data the kernels train on, the
    rows they visit (``order``, shuffled in place) and the validation data
    ``(X, Y, sw, rows)`` (``rows`` None: all of them; None without validation).

    ``validation`` given as a fraction holds out rows drawn by the network's
    generator.  Minibatches are then gathered from X by ``order`` one batch
    at a time, as shuffled ones are; a full batch is the training rows,
    copied once.
    """
    if not isinstance(validation, float):
        held_out = None if validation is None else (*validation, None)
        return X, Y, sw, np.arange(X.shape[0], dtype=np.intp), held_out
    train, val = net._split_rows(X.shape[0], sw, validation)
    held_out = (X, Y, sw, val)
    if batch_size is not None and batch_size < len(train):
        return X, Y, sw, train, held_out
    rows = (lambda a: take_rows(a, train))
    return (rows(X), rows(Y), None if sw is None else rows(sw),
            np.arange(len(train), dtype=np.intp), held_out)


def _validation_scores(net, held_out):
    """``(val_loss, val_accuracy)`` of ``held_out`` = (X, Y, sw, rows); the
    accuracy None for an identity output.  Scored in kernel calls of at most
    ``_VALIDATION_WORK`` multiply-adds each, so Ctrl-C is answered between
    them; the rows of ``rows`` are gathered one call's worth at a time."""
    X, Y, sw, rows = held_out
    n = X.shape[0] if rows is None else len(rows)
    sizes = net.layer_sizes
    macs = sum(sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1))
    step = max(1, int(_VALIDATION_WORK // macs))
    total = weight = penalty = 0.0
    hits = 0
    for start in range(0, n, step):
        part = slice(start, start + step) if rows is None else rows[start:start + step]
        Xc, Yc = X[part], Y[part]
        data, penalty, m = net._loss_terms(Xc, Yc, None if sw is None else sw[part])
        total += data
        weight += m
        if net.output not in v.REGRESSION_OUTPUTS:
            hits += _hits(net, net._forward(Xc), Yc)
    accuracy = None if net.output in v.REGRESSION_OUTPUTS else hits / n
    return (total + penalty) / weight, accuracy


def _pad_validation(history, net, held_out):
    """NaN scores for an epoch whose validation was interrupted, so that
    the history's lists stay the same length."""
    if held_out is None:
        return
    while len(history.val_loss) < history.epochs:
        history.val_loss.append(float("nan"))
    while net.output not in v.REGRESSION_OUTPUTS and len(history.val_accuracy) < history.epochs:
        history.val_accuracy.append(float("nan"))


class _CtrlC:
    """Ctrl-C during a fit: inside a kernel call it sets a flag the kernel
    checks between batches (so the weights stop at the end of a step); in
    Python code between calls it raises KeyboardInterrupt at once."""

    def __init__(self):
        self.flag = np.zeros(1, dtype=np.intc)
        self.in_kernel = False
        self._previous = None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and _sig.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = _sig.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.flag[0] = 1
        if not self.in_kernel:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            _sig.signal(signal.SIGINT, self._previous)
        return False


def run(net, X, Y, sample_weight, *, epochs, learning_rate, batch_size, shuffle,
        optimizer, schedule, power_t, clip_norm, validation, early_stopping,
        patience, tol, callbacks, verbose, checkpoint=None, warmup_epochs=0):
    """Train ``net`` in place; returns the History.  Arguments already checked;
    ``validation`` is None, (X, Y, sw) or the fraction of validation_split;
    ``checkpoint`` is a :class:`Checkpoints` or None.

    On Ctrl-C or divergence ``net.history`` holds the epochs completed (an
    empty History when none was), consistent with the weights.
    """
    history = History()
    start = time.perf_counter()
    with _CtrlC() as ctrl_c:
        try:
            X, Y, sw, order, held_out = _training_rows(net, X, Y, sample_weight, validation,
                                                       batch_size)
        except KeyboardInterrupt:
            net.history = history
            raise
        bar = _progress(epochs) if verbose else None
        try:
            message = _epochs(net, X, Y, sw, order, history, ctrl_c, bar, epochs=epochs,
                              learning_rate=learning_rate, batch_size=batch_size,
                              shuffle=shuffle, optimizer=optimizer, schedule=schedule,
                              power_t=power_t, warmup_epochs=warmup_epochs,
                              clip_norm=clip_norm, held_out=held_out,
                              early_stopping=early_stopping, patience=patience, tol=tol,
                              callbacks=callbacks, checkpoint=checkpoint)
        except (KeyboardInterrupt, DivergenceError):
            _pad_validation(history, net, held_out)
            raise
        finally:
            history.seconds = time.perf_counter() - start
            net.history = history
            if bar is not None:
                bar.close()
    if bar is not None and message:
        print(message, file=bar.file, flush=True)
    return history


def _epochs(net, X, Y, sw, order, history, ctrl_c, bar, *, epochs, learning_rate, batch_size,
            shuffle, optimizer, schedule, power_t, clip_norm, held_out, early_stopping,
            patience, tol, callbacks, checkpoint, warmup_epochs=0):
    """The epochs of :func:`run`, recorded in ``history`` as they complete;
    returns verbose's end message (or None)."""
    n = len(order)
    batch_size = n if batch_size is None else min(batch_size, n)
    # the shuffle's seed: integers(0, 2**63)'s value (Lemire's method with a
    # power-of-two range is the top 63 bits of one raw draw), in 0.6 us, not 4.5
    rng_state = np.array([net._rng.bit_generator.random_raw() >> 1], dtype=np.uint64)
    # dropout's masks: the fit's key (one more raw draw, only with dropout, so
    # that fits without it draw what they always did) and its batch count
    dropout_state = (np.array([net._rng.bit_generator.random_raw(), 0], dtype=np.uint64)
                     if net.dropout else None)
    s = net.layer_sizes
    work_per_row = 3.0 * sum(s[i] * s[i + 1] for i in range(len(s) - 1))
    check_every = max(1, int(_WORK_PER_SIGNAL_CHECK / (work_per_row * batch_size)))
    # Python runs between epochs only when something needs it there; a
    # progress bar alone just needs the kernel to come back now and then.
    per_epoch = (held_out is not None or early_stopping or bool(callbacks)
                 or schedule != "constant" or checkpoint is not None)
    track_best = early_stopping or (checkpoint is not None and checkpoint.every == "best")
    chunk = 1 if per_epoch else (max(1, epochs // 100) if bar is not None else epochs)
    chunk = min(chunk, _EPOCHS_PER_CALL)
    counts = np.zeros(len(net._STEPS) + 2, dtype=np.intp) if net._STEPS else None
    history._count_steps(net._STEPS, counts)
    lr = learning_rate
    best, best_params, best_epoch, waited, plateau_wait = np.inf, None, None, 0, 0
    epoch_start, optimizer_start, stop = None, None, None
    done = 0
    while done < epochs:
        if schedule == "invscaling":
            lr = _invscaling(learning_rate, net._samples_seen, power_t)
        elif schedule == "cosine":
            lr = cosine_rate(learning_rate, done, epochs, warmup_epochs)
        k = min(chunk, epochs - done)
        if track_best and held_out is None:
            # the training loss of an epoch is measured on the weights it starts from
            epoch_start = net.params.copy()
            if checkpoint is not None and checkpoint.every == "best":   # best.npz's optimizer
                optimizer_start = (optimizer.snapshot(), net._samples_seen)
        losses = np.full(k, np.nan)          # per call: memory grows with the epochs run
        t0 = time.perf_counter()
        ctrl_c.in_kernel = True
        try:
            completed = net._train_epochs(
                X, Y, sw, lr, batch_size, k, order, bool(shuffle), rng_state, losses,
                optimizer, clip_norm, ctrl_c.flag, check_every, counts,
                dropout_state=dropout_state)
        except BaseException:
            # an exception from a signal handler inside the kernel: the epochs
            # it completed have their losses written (the rest are still NaN)
            finite = np.isfinite(losses)
            completed = k if finite.all() else int(np.argmax(~finite))
            history._record(losses[:completed], lr, (time.perf_counter() - t0) / max(completed, 1))
            net._samples_seen += completed * n
            raise
        finally:
            ctrl_c.in_kernel = False
        elapsed = time.perf_counter() - t0
        net._samples_seen += completed * n
        history._record(losses[:completed], lr, elapsed / max(completed, 1))
        done += completed
        if ctrl_c.flag[0]:
            raise KeyboardInterrupt
        if completed < k:
            raise DivergenceError(
                f"training diverged at epoch {done + 1}: the loss became "
                f"{float(losses[completed])!r} with learning_rate={lr!r}; try a lower "
                "learning_rate or clip_norm (the update that met it was not applied)",
                epoch=done + 1, history=history)
        if not per_epoch:
            if bar is not None:
                bar.update(done, history.loss[-1], lr)
            continue
        epoch = done                    # numbered from 1 (see fastmlp.history)
        logs = {"loss": history.loss[-1], "learning_rate": lr, "seconds": elapsed}
        monitored = history.loss[-1]
        if held_out is not None:
            logs["val_loss"], accuracy = _validation_scores(net, held_out)
            history.val_loss.append(logs["val_loss"])
            monitored = logs["val_loss"]
            if accuracy is not None:
                logs["val_accuracy"] = accuracy
                history.val_accuracy.append(accuracy)
        if bar is not None:
            bar.update(done, history.loss[-1], lr,
                       **{k: logs[k] for k in ("val_loss", "val_accuracy") if k in logs})
        stop, new_best = None, None
        if schedule == "plateau":
            if history.loss[-1] > min(history.loss[:-1], default=np.inf) - tol:
                plateau_wait += 1
            else:
                plateau_wait = 0
            if plateau_wait > patience:
                plateau_wait = 0
                learning_rate = lr = lr / 5
                if lr <= 1e-6:
                    stop = "plateau"
        if track_best:
            # the best weights are kept on any improvement; tol only decides
            # whether an epoch counts as progress for the patience
            waited = 0 if monitored < best - tol else waited + 1
            if monitored < best:
                best, best_epoch = monitored, epoch
                best_params = epoch_start if held_out is None else net.params.copy()
                new_best = best_params
            if early_stopping and waited >= patience:
                stop = "early_stopping"
        if checkpoint is not None:
            checkpoint.after_epoch(net, epoch, epochs, logs, new_best,
                                   optimizer_start if held_out is None else None)
        if _run_callbacks(callbacks, net, epoch, logs):
            stop = stop or "callback"
        if stop:
            history.stopped_early = True
            break
    if early_stopping and best_params is not None:
        net.params[...] = best_params
        history.best_epoch = best_epoch
    return _end_message(stop or None, done, history.best_epoch, best,
                        "val_loss" if held_out is not None else "loss")


def _progress(total):
    from .progress import ProgressBar
    return ProgressBar(total)
