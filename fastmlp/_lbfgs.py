"""Full-batch L-BFGS: scipy's L-BFGS-B on the flat parameter vector.

Each evaluation of the objective and its gradient is one forward and backward
pass over all rows: one ``_kernels.full_pass`` call for the compiled network
(its ``_loss_and_gradient``), NumPy for the reference twin. scipy works in
float64; the network computes in its own dtype. Used by
``Network.fit(optimizer='lbfgs')`` (:func:`run`) and by the estimators'
``solver='lbfgs'`` (:class:`Objective` and :func:`minimize`, with
scikit-learn's ``maxiter``, ``maxfun`` and ``gtol``).
"""
import time

import numpy as np

from . import _training
from ._sparse import SparseRows
from ._validation import REGRESSION_OUTPUTS
from .errors import DivergenceError
from .history import History


class Objective:
    """``x -> (objective, gradient)`` of ``net`` on (X, Y), in float64 for scipy.

    Parameters
    ----------
    net : BaseNetwork
        Its ``params`` are overwritten with each ``x`` evaluated.
    X, Y, sw : arrays already checked (``sw`` may be None)
    data_scale : float
        Multiplies the data part of the returned value (not of the gradient,
        nor the penalties). scikit-learn's squared error averages the value
        over outputs but takes the gradient of the sum; ``1 / n_outputs``
        gives the optimizer exactly scikit-learn's function and gradient.
    """

    def __init__(self, net, X, Y, sw, data_scale=1.0):
        self.net = net
        self._pass = _pass_of(net, X, Y, sw)
        self.data_scale = float(data_scale)
        self._M = float(X.shape[0]) if sw is None else float(np.sum(sw, dtype=np.float64))
        self._weights = net._weight_index() if self.data_scale != 1.0 else None
        self._last = (None, None)           # scipy evaluates x0 once more: reuse it

    def _penalty(self):
        net = self.net
        if net.l2 == 0 and net.l1 == 0:
            return 0.0
        w = net.params[self._weights].astype(np.float64)
        return (0.5 * net.l2 * np.dot(w, w) + net.l1 * np.abs(w).sum()) / self._M

    def __call__(self, x):
        x_last, out = self._last
        if x_last is not None and np.array_equal(x, x_last):
            return out[0], out[1].copy()
        self.net.params[...] = x
        value, grad = self._pass()
        value = float(value)
        if self.data_scale != 1.0 and np.isfinite(value):
            pen = self._penalty()
            value = (value - pen) * self.data_scale + pen
        out = (value, grad.astype(np.float64))      # a copy: the pass reuses its buffer
        self._last = (np.array(x, dtype=np.float64), out)
        return out[0], out[1].copy()


def _pass_of(net, X, Y, sw):
    """The evaluation ``() -> (objective, gradient)`` over all rows of a
    checked X: the network's one pass for a dense X or a sparse one that
    fits in one dense block (densified once); else a sum over the sparse X's
    dense blocks, densified afresh each evaluation (see fastmlp._sparse)."""
    if not isinstance(X, SparseRows):
        return net._loss_and_gradient(X, Y, sw)
    n = X.shape[0]
    if X.chunk_rows() >= n:
        return net._loss_and_gradient(X[0:n], Y, sw)
    weights = net._weight_index()
    M = float(n) if sw is None else float(np.sum(sw, dtype=np.float64))

    def evaluate():
        # each block's pass is (data_c + pen) / M_c and (dData_c + dPen) / M_c:
        # weighted by M_c and summed, the penalty counts once per block
        value, grad, blocks = 0.0, np.zeros(net.n_params), 0
        for start, stop, block in X.chunks():
            swc = None if sw is None else sw[start:stop]
            Mc = float(stop - start) if swc is None else float(np.sum(swc, dtype=np.float64))
            if Mc <= 0:
                continue
            obj, g = net._loss_and_gradient(block, Y[start:stop], swc)()
            value += Mc * float(obj)
            grad += Mc * g
            blocks += 1
        W = net.params[weights].astype(np.float64)
        extra = max(blocks - 1, 0)
        value -= extra * (0.5 * net.l2 * np.dot(W, W) + net.l1 * np.abs(W).sum())
        grad[weights] -= extra * (net.l2 * W + net.l1 * np.sign(W))
        return value / M, grad / M
    return evaluate


def minimize(objective, x0, *, max_iter, max_fun, gtol, on_iteration=None):
    """scipy's L-BFGS-B from ``x0`` as scikit-learn's ``_fit_lbfgs`` runs it.

    ``on_iteration(x, value)`` is called after every iteration; raising
    StopIteration in it ends the run. Returns scipy's OptimizeResult.
    """
    import scipy.optimize       # here: ``import fastmlp`` stays fast

    callback = None
    if on_iteration is not None:
        def callback(intermediate_result):
            on_iteration(intermediate_result.x, float(intermediate_result.fun))
    return scipy.optimize.minimize(
        objective, np.asarray(x0, dtype=np.float64), method="L-BFGS-B", jac=True,
        callback=callback, options={"maxiter": max_iter, "maxfun": max_fun, "gtol": gtol})


def summary(result):
    """scipy's result without its arrays (x, jac, hess_inv)."""
    import scipy.optimize
    keep = ("success", "status", "message", "nit", "nfev", "njev", "fun")
    return scipy.optimize.OptimizeResult({k: result[k] for k in keep if k in result})


class _Monitor:
    """What ``fit`` does after each L-BFGS iteration: the history, validation,
    early stopping, callbacks and progress, as the epoch loop does them."""

    def __init__(self, net, validation, early_stopping, patience, tol, callbacks, bar,
                 checkpoint=None, max_iter=None):
        self.net, self.validation, self.bar = net, validation, bar
        self.early_stopping, self.patience, self.tol = early_stopping, patience, tol
        self.callbacks = callbacks
        self.checkpoint, self.max_iter = checkpoint, max_iter
        self.track_best = early_stopping or (checkpoint is not None and checkpoint.every == "best")
        self.stop = None                    # why training ended early, for verbose
        self.history = History()
        self.last = net.params.copy()       # the weights of the last completed iteration
        self.best, self.best_params, self.best_epoch, self.waited = np.inf, None, None, 0
        self._t = time.perf_counter()

    def __call__(self, x, value):
        net, history = self.net, self.history
        net.params[...] = x
        self.last[...] = net.params
        now = time.perf_counter()
        history._record(np.array([value]), float("nan"), now - self._t)
        self._t = now
        epoch = history.epochs                   # numbered from 1, as fit's epochs
        logs = {"loss": value, "learning_rate": float("nan"), "seconds": history.epoch_seconds[-1]}
        monitored = value
        if self.validation is not None:
            monitored = self._validate(logs)
        if self.bar is not None:
            self.bar.update(epoch, value, None,
                            **{k: logs[k] for k in ("val_loss", "val_accuracy") if k in logs})
        new_best = self._track_best(monitored, epoch)
        stop = "early_stopping" if self._early_stop() else None
        if self.checkpoint is not None:
            self.checkpoint.after_epoch(net, epoch, self.max_iter, logs, new_best)
        if _training._run_callbacks(self.callbacks, net, epoch, logs):
            stop = stop or "callback"
        if stop:
            self.stop = stop
            history.stopped_early = True
            raise StopIteration

    def _validate(self, logs):
        from ._training import _accuracy
        net, history = self.net, self.history
        Xv, Yv, swv = self.validation
        logs["val_loss"] = float(net._objective_of(Xv, Yv, swv))
        history.val_loss.append(logs["val_loss"])
        if net.output not in REGRESSION_OUTPUTS:
            logs["val_accuracy"] = _accuracy(net, net._outputs(Xv), Yv)
            history.val_accuracy.append(logs["val_accuracy"])
        return logs["val_loss"]

    def _track_best(self, monitored, epoch):
        """The best weights so far (a new best's, or None when this is no better)."""
        if not self.track_best:
            return None
        self.waited = 0 if monitored < self.best - self.tol else self.waited + 1
        if monitored < self.best:
            self.best, self.best_epoch = monitored, epoch
            self.best_params = self.net.params.copy()
            return self.best_params
        return None

    def _early_stop(self):
        return self.early_stopping and self.waited >= self.patience


def run(net, X, Y, sw, *, max_iter, max_fun, tol, validation, early_stopping, patience,
        callbacks, verbose, checkpoint=None):
    """``fit(optimizer='lbfgs')``: train ``net`` in place, return the History.

    Arguments are already checked. ``tol`` is scipy's ``gtol`` and the early
    stopping's tolerance.
    """
    objective = Objective(net, X, Y, sw)
    start = time.perf_counter()
    value0 = objective(net.params)[0]
    if not np.isfinite(value0):
        net.history = History()
        raise DivergenceError(
            f"the objective at the starting weights is {value0!r}: L-BFGS cannot start "
            "(scale the input data or re-initialise the network)", epoch=1, history=net.history)
    bar = _progress(max_iter) if verbose else None
    monitor = _Monitor(net, validation, early_stopping, patience, tol, callbacks, bar,
                       checkpoint, max_iter)
    try:
        result = minimize(objective, net.params, max_iter=max_iter, max_fun=max_fun,
                          gtol=tol, on_iteration=monitor)
    except BaseException:        # Ctrl-C: the weights of the last completed iteration
        net.params[...] = monitor.last
        _finish(net, monitor.history, start)
        raise
    finally:
        if bar is not None:
            bar.close()
    history = monitor.history
    net.params[...] = result.x
    history.optimizer_result = summary(result)
    if not (np.isfinite(result.fun) and np.isfinite(net.params).all()):
        net.params[...] = monitor.last
        _finish(net, history, start)
        raise DivergenceError(f"L-BFGS ended on a non-finite objective ({result.fun!r}); "
                              "scale the input data", epoch=history.epochs + 1, history=history)
    if early_stopping and monitor.best_params is not None:
        net.params[...] = monitor.best_params
        history.best_epoch = monitor.best_epoch
    if bar is not None:
        message = _training._end_message(monitor.stop, history.epochs, history.best_epoch,
                                         monitor.best,
                                         "val_loss" if validation is not None else "loss")
        if message:
            print(message, file=bar.file, flush=True)
    return _finish(net, history, start)


def _finish(net, history, start):
    history.seconds = time.perf_counter() - start
    net.history = history
    return history


def _progress(total):
    from .progress import ProgressBar
    return ProgressBar(total)
