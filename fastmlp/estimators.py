"""scikit-learn estimators on fastmlp's compiled networks.

:class:`MLPClassifier` and :class:`MLPRegressor` take scikit-learn's
``sklearn.neural_network`` parameter names, defaults and meanings, expose the
same fitted attributes, and follow the same training procedure epoch for epoch
(Glorot-uniform initialisation drawn from ``random_state``, the same shuffling,
the same ``tol`` / ``n_iter_no_change`` stopping rule, ``invscaling`` and
``adaptive`` learning rates, early stopping on a stratified validation split
that keeps the best weights). Each epoch of ``sgd`` and ``adam`` runs in the
compiled kernels through :meth:`fastmlp.Network.partial_fit`; ``lbfgs`` is
scipy's L-BFGS-B with scikit-learn's settings (``max_iter``, ``max_fun``,
``tol`` as ``gtol``) on the objective and gradient of one compiled full-batch
pass (:mod:`fastmlp._lbfgs`). The network is ``network_``. Sparse X (CSR or
CSC) is taken as scikit-learn takes it, and never densified whole: the
compiled fit densifies each batch's rows as it gathers them, predictions and
L-BFGS's passes take a dense block of rows at a time (:mod:`fastmlp._sparse`).

The objective is scikit-learn's: log loss summed over outputs, and for
``MLPRegressor`` the half squared error averaged over outputs (its gradient,
as scikit-learn's, is that of the sum over outputs) or with ``loss='poisson'``
the half Poisson deviance of exp outputs summed over outputs, plus
``alpha / (2 n_samples) * sum(W**2)``.

This module needs scikit-learn (``pip install fastmlp[sklearn]``); ``import
fastmlp`` does not import it.

Differences from scikit-learn, all deliberate:

* ``MLPRegressor(loss='poisson')`` refuses negative targets (a ValueError
  naming y); scikit-learn takes them and its deviance is then NaN.
* ``partial_fit`` is hidden for ``solver='lbfgs'`` in both estimators
  (scikit-learn hides it only in ``MLPClassifier``; its ``MLPRegressor``
  runs a whole L-BFGS fit there).
* With ``solver='lbfgs'``, ``loss_curve_`` holds the objective after every
  iteration (scikit-learn sets no ``loss_curve_`` for lbfgs), and
  ``verbose`` prints an ``Iteration N, loss = ...`` line per iteration.
* Training that stops being finite raises scikit-learn's ValueError at once,
  instead of at the end of ``fit``; with ``early_stopping=True`` it ends
  training with a ConvergenceWarning instead (a NaN validation score is
  recorded for that iteration and the best weights are restored, as
  scikit-learn ends up doing).
* With several outputs and minibatches, ``MLPRegressor``'s ``loss_curve_``
  estimates the L2 term of the batches inside an epoch from the weights at
  the epoch's start and end (exact for full batches and ``alpha=0``).
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
import warnings
from typing import Sequence, TypeVar

import numpy as np
from numpy.typing import ArrayLike

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils import shuffle as _sk_shuffle
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.multiclass import (check_classification_targets, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as _err:                     # pragma: no cover - depends on the machine
    raise ImportError(
        "fastmlp.estimators (MLPClassifier, MLPRegressor) needs scikit-learn >= 1.6: "
        f"pip install 'fastmlp[sklearn]' ({_err})") from _err

from . import _lbfgs
from ._validation import is_integer, is_real
from .errors import DivergenceError
from .network import Network

_Est = TypeVar("_Est", bound="_BaseMLP")

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUT_NAMES = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity", "exp": "exp"}
_STOCHASTIC_SOLVERS = ("sgd", "adam")
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain "
               "large values and need to be preprocessed.")        # scikit-learn's words


# ----------------------------------------------------------------- helpers
def _check_real(name, value, low, high=None, low_open=False, high_open=False):
    if not is_real(value) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    bad = (value < low or (low_open and value == low) or
           (high is not None and (value > high or (high_open and value == high))))
    if bad:
        lo = "(" if low_open else "["
        hi = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise ValueError(f"{name} must be in {lo}{low}, {hi}; got {value!r}")


def _check_sample_weight(sample_weight, n, dtype):
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight)
    if sw.dtype.kind not in "iuf":
        raise ValueError(f"sample_weight must hold real numbers; got dtype {sw.dtype}")
    if sw.ndim == 0:
        sw = np.full(n, sw, dtype=dtype)
    sw = sw.astype(dtype)
    if sw.ndim != 1 or sw.shape[0] != n:
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n},)!")
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight must be finite; it contains NaN or inf")
    if (sw < 0).any():
        raise ValueError("sample_weight must be >= 0; negative weights are not supported")
    return sw


def _invscaling(learning_rate_init, t, power_t):
    """scikit-learn's ``learning_rate_init / (t + 1) ** power_t``; where that
    underflows (or its power overflows) the smallest positive float instead
    of 0, which ``partial_fit`` refuses: the steps are as nil."""
    try:
        lr = float(learning_rate_init) / (t + 1) ** power_t
    except OverflowError:
        lr = 0.0
    return max(lr, math.ulp(0.0))


def _repair_views(net):
    """Make ``weights`` / ``biases`` views of ``params`` again (after unpickling).

    A pickled Network stores its per-layer views as separate arrays; this puts
    them back into the flat buffer the kernels use. A no-op when they already
    are views.
    """
    if net is None or not hasattr(net, "params"):
        return
    if net.weights and np.shares_memory(net.weights[0], net.params):
        return
    net.weights, net.biases = net._split(net.params)


_PF_PARAMS = {}


def _partial_fit_params(net):
    """The keyword names of ``type(net).partial_fit`` (cached per class)."""
    cls = type(net)
    if cls not in _PF_PARAMS:
        pf = getattr(cls, "partial_fit", None)
        if pf is None:
            raise TypeError(f"{cls.__name__} has no partial_fit: this fastmlp build lacks "
                            "the training features the estimators need")
        _PF_PARAMS[cls] = set(inspect.signature(pf).parameters)
    return _PF_PARAMS[cls]


# ---------------------------------------------------------------- the base
class _BaseMLP(BaseEstimator):
    """What the classifier and regressor share: parameters, the epoch loop."""

    _out_activation = None          # set by subclasses / _output_for

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dropout=0.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout

    # ------------------------------------------------------------ checks
    def _hidden_sizes(self):
        h = self.hidden_layer_sizes
        if is_integer(h):
            h = [h]
        try:
            h = list(h)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints; "
                             f"got {self.hidden_layer_sizes!r}") from None
        for s in h:
            if not is_integer(s) or s <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}.")
        return [int(s) for s in h]

    def _check_params(self):
        if self.solver not in ("lbfgs", "sgd", "adam"):
            raise ValueError(f"solver must be 'lbfgs', 'sgd' or 'adam'; got {self.solver!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; "
                             f"got {self.activation!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError("learning_rate must be 'constant', 'invscaling' or 'adaptive'; "
                             f"got {self.learning_rate!r}")
        if not (self.batch_size == "auto" or (is_integer(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1; got {self.batch_size!r}")
        if not is_integer(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1; got {self.max_iter!r}")
        if not is_integer(self.max_fun) or self.max_fun < 1:
            raise ValueError(f"max_fun must be an int >= 1; got {self.max_fun!r}")
        nic = self.n_iter_no_change
        if not ((is_integer(nic) and nic >= 1) or (is_real(nic) and nic == np.inf)):
            raise ValueError(f"n_iter_no_change must be an int >= 1 or np.inf; got {nic!r}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool; got {getattr(self, name)!r}")
        _check_real("alpha", self.alpha, 0)
        _check_real("learning_rate_init", self.learning_rate_init, 0, low_open=True)
        _check_real("power_t", self.power_t, 0)
        _check_real("tol", self.tol, 0)
        _check_real("momentum", self.momentum, 0, 1)
        _check_real("validation_fraction", self.validation_fraction, 0, 1, high_open=True)
        _check_real("beta_1", self.beta_1, 0, 1, high_open=True)
        _check_real("beta_2", self.beta_2, 0, 1, high_open=True)
        _check_real("epsilon", self.epsilon, 0, low_open=True)
        _check_real("dropout", self.dropout, 0, 1, high_open=True)
        if self.dropout and self.solver == "lbfgs":
            raise ValueError(f"solver='lbfgs' needs a deterministic objective: it cannot train "
                             f"with dropout={self.dropout!r} (use solver 'adam' or 'sgd', or "
                             f"dropout=0)")
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise ValueError(f"verbose must be a bool or an int; got {self.verbose!r}")
        return self._hidden_sizes()

    # ------------------------------------------------------------- state
    @property
    def coefs_(self):
        """Weight matrices, ``coefs_[i]`` of shape (n_in, n_out): views into ``network_``."""
        check_is_fitted(self, "network_")
        return list(self.network_.weights)

    @property
    def intercepts_(self):
        """Bias vectors, views into ``network_``."""
        check_is_fitted(self, "network_")
        return list(self.network_.biases)

    def __setstate__(self, state):
        super().__setstate__(state)
        _repair_views(self.__dict__.get("network_"))

    def _initialize(self, Y, layer_units, dtype, output, loss):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = _OUT_NAMES[output]
        rs = self._random_state
        # the network's own generator (used by nothing here, as rows come shuffled)
        # is seeded from a copy, so that rs draws exactly what scikit-learn's would
        seed = int(copy.deepcopy(rs).randint(np.iinfo(np.int32).max))
        net = Network(layer_units, activation=_ACTIVATIONS[self.activation], output=output,
                      loss=loss, l2=float(self.alpha), init="xavier", dtype=dtype.name,
                      seed=seed, dropout=float(self.dropout))
        # scikit-learn's Glorot-uniform initialisation, drawn in the same order
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in zip(net.weights, net.biases):
            fan_in, fan_out = W.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = rs.uniform(-bound, bound, (fan_in, fan_out))
            b[...] = rs.uniform(-bound, bound, fan_out)
        net._origin = f"drawn by {type(self).__name__} (scikit-learn's Glorot-uniform init)"
        self.network_ = net
        self._lr = float(self.learning_rate_init)
        self._best_params = net.params.copy()
        self.loss_curve_ = []
        if self.solver in _STOCHASTIC_SOLVERS:
            self._init_stochastic_state()

    def _init_stochastic_state(self):
        """The stopping rule's attributes (scikit-learn sets them for sgd and adam only)."""
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    # -------------------------------------------------------------- fit
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self._check_params()
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        sample_weight = _check_sample_weight(sample_weight, n_samples, X.dtype)
        sample_weight = self._fold_class_weight(Y, sample_weight, incremental)
        layer_units = [n_features] + hidden + [Y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        output, loss = self._output_for(Y)
        if first_pass:
            self._initialize(Y, layer_units, X.dtype, output, loss)
        else:
            if list(self.network_.layer_sizes) != layer_units:
                raise ValueError(
                    f"the data and hidden_layer_sizes give layers {layer_units}, but the "
                    f"fitted network has {list(self.network_.layer_sizes)}; refit without "
                    "warm_start to change them")
            self._follow_settings(output, loss)
            if not incremental:
                self._lr = float(self.learning_rate_init)
        _repair_views(self.network_)
        self.network_.l2 = float(self.alpha)
        self.network_.dropout = float(self.dropout)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, sample_weight, incremental)
        if not np.isfinite(self.network_.params).all():   # pragma: no cover - kernels guard it
            raise ValueError(_NON_FINITE)
        return self

    def _data_scale(self):
        """scikit-learn's value of the data loss relative to fastmlp's: its squared
        error is averaged over outputs, fastmlp's summed."""
        return 1.0 / self.n_outputs_ if self.network_.loss_name == "squared_error" else 1.0

    def _check_solver(self):
        # partial_fit's availability (available_if), with scikit-learn's words
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # ------------------------------------------------------------ lbfgs
    def _lbfgs_objective(self, X, Y, sample_weight):
        return _lbfgs.Objective(self.network_, X, Y, sample_weight, self._data_scale())

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight=None, *buffers):
        """scikit-learn's objective and gradient, as its private method of this name.

        ``packed_coef_inter`` is in scikit-learn's order (every ``coefs_``
        flattened, then every ``intercepts_``), and so is the gradient; ``y``
        is the binarized target. The network's weights are set to the point.
        scikit-learn's work ``buffers`` are not needed.
        """
        net = self.network_
        X, Y, sw = net._check_XY(X, np.asarray(y, dtype=net.dtype).reshape(X.shape[0], -1),
                                 sample_weight, sparse=True)
        order = self._sklearn_order()
        x = np.empty(net.n_params)
        x[order] = packed_coef_inter
        value, grad = self._lbfgs_objective(X, Y, sw)(x)
        return value, grad[order]

    def _sklearn_order(self):
        """Positions in ``network_.params`` of scikit-learn's packed parameters."""
        net = self.network_
        weights = net._weight_index()
        biases = np.setdiff1d(np.arange(net.n_params), weights, assume_unique=True)
        return np.concatenate([weights, biases])

    def _fit_lbfgs(self, X, Y, sample_weight):
        net = self.network_
        X, Y, sample_weight = net._check_XY(X, Y, sample_weight,    # C order, weights' sum
                                            sparse=True)
        objective = self._lbfgs_objective(X, Y, sample_weight)
        if not np.isfinite(objective(net.params)[0]):
            raise ValueError(f"{_NON_FINITE} (fastmlp: the loss at the starting weights is "
                             "not finite; L-BFGS cannot start)")
        last = net.params.copy()
        self.n_iter_ = 0

        def on_iteration(x, value):
            last[...] = x
            self.n_iter_ += 1
            self.loss_curve_.append(value)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {value:.8f}")

        try:
            result = _lbfgs.minimize(objective, net.params, max_iter=self.max_iter,
                                     max_fun=self.max_fun, gtol=self.tol,
                                     on_iteration=on_iteration)
        except KeyboardInterrupt:          # as the stochastic solvers: warn, keep the weights
            self.loss_ = objective(last)[0]
            warnings.warn("Training interrupted by user.")
            return
        net.params[...] = result.x
        self.n_iter_ = min(result.nit, self.max_iter)
        self.loss_ = float(result.fun)
        if not np.isfinite(self.loss_):
            raise ValueError(f"{_NON_FINITE} (fastmlp: L-BFGS ended on a non-finite loss)")
        if result.status != 0:
            self._warn_lbfgs(result)

    def _warn_lbfgs(self, result):
        # scikit-learn's words (sklearn.utils.optimize._check_optimize_result)
        msg = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
               f"(status={result.status}):\n{result.message}\n")
        if self.n_iter_ == self.max_iter:
            msg += ("\nIncrease the number of iterations to improve the convergence "
                    f"(max_iter={self.max_iter}).")
        msg += ("\nYou might also want to scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html")
        warnings.warn(msg, ConvergenceWarning, stacklevel=5)

    # ------------------------------------------------------- sgd, adam
    def _fold_class_weight(self, Y, sample_weight, incremental):
        """Sample weights times class weights (the classifier's; none here)."""
        return sample_weight

    def _follow_settings(self, output, loss):
        """Continue from the fitted weights with the current ``activation``
        (as scikit-learn does): ``network_`` is rebuilt around its weights
        when a setting it holds has changed since it was made."""
        net = self.network_
        wanted = dict(activation=_ACTIVATIONS[self.activation], output=output, loss=loss)
        if all(getattr(net, k if k != "loss" else "loss_name") == value
               for k, value in wanted.items()):
            return
        _repair_views(net)
        settings = dict(wanted, l2=net.l2, init=net.init, dtype=net.dtype.name, seed=net.seed)
        self.network_ = Network._around(net.params.copy(), list(net.layer_sizes), settings,
                                        rng_state=net._rng.bit_generator.state)
        self.network_._origin = getattr(net, "_origin", None)
        self.out_activation_ = _OUT_NAMES[output]

    def _optimizer_kwargs(self):
        if self.solver == "sgd":
            return dict(optimizer="sgd", momentum=float(self.momentum),
                        nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        return dict(optimizer="adam", beta1=float(self.beta_1), beta2=float(self.beta_2),
                    epsilon=float(self.epsilon))

    def _one_epoch(self, X, Y, sw, batch_size):
        """One pass over (X, Y) in the kernels; returns the epoch's loss as
        scikit-learn reports it, NaN if it stopped being finite with early
        stopping on (ValueError without)."""
        net = self.network_
        known = _partial_fit_params(net)
        kwargs = dict(learning_rate=self._lr, batch_size=int(batch_size))
        kwargs.update(self._optimizer_kwargs())
        if "shuffle" in known:
            kwargs["shuffle"] = False                   # rows come shuffled already
        if sw is not None:
            kwargs["sample_weight"] = sw
        scale = self._data_scale()
        before = self._squared_weights() if scale != 1.0 else None
        try:
            result = net.partial_fit(X, Y, **kwargs)
        except DivergenceError as err:
            if self.early_stopping:
                return np.nan
            raise ValueError(
                f"{_NON_FINITE} (fastmlp: the loss stopped being finite at iteration "
                f"{self.n_iter_ + 1} with learning_rate_init={self.learning_rate_init!r}; "
                "lower learning_rate_init or scale the input data)") from err
        hist = result if hasattr(result, "loss") else net.history
        loss = float(hist.loss[-1])
        if scale != 1.0:
            loss = self._rescale_epoch_loss(loss, scale, before, X.shape[0], batch_size, sw)
        return loss

    def _squared_weights(self):
        return float(sum(np.dot(W.ravel(), W.ravel()) for W in self.network_.weights))

    def _rescale_epoch_loss(self, loss, scale, before, n, batch_size, sw):
        """The epoch's loss with its data part times ``scale``. The L2 term of
        each batch is interpolated between the weights at the epoch's start and
        end (exact for one batch)."""
        if self.alpha == 0:
            return loss * scale
        batches = -(-n // int(batch_size))
        total = batches * before + (batches - 1) / 2 * (self._squared_weights() - before)
        M = n if sw is None else float(np.sum(sw, dtype=np.float64))
        penalty = 0.5 * self.alpha * total / M
        return (loss - penalty) * scale + penalty

    def _validation_split(self, X, Y, sample_weight):
        # stratified on scikit-learn's binarized labels (booleans), as it does
        stratify = Y.astype(bool) if self._is_classifier() and self.n_outputs_ == 1 else None
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        return X_train, Y_train, sw_train, X_val, self._decode(Y_val), sw_val

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _fit_stochastic(self, X, Y, sample_weight, incremental):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not hasattr(self, "_no_improvement_count"):      # warm start after lbfgs
            self._init_stochastic_state()
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, Y_train, sw_train, X_val, y_val, sw_val = self._validation_split(
                X, Y, sample_weight)
        else:
            X_train, Y_train, sw_train = X, Y, sample_weight
            X_val = y_val = sw_val = None
        n_samples = X_train.shape[0]
        batch_size = self._batch_size(n_samples)
        sample_idx = np.arange(n_samples)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _sk_shuffle(sample_idx, random_state=self._random_state)
                    Xe, Ye = X_train[sample_idx], Y_train[sample_idx]
                    swe = None if sw_train is None else sw_train[sample_idx]
                else:
                    Xe, Ye, swe = X_train, Y_train, sw_train
                loss = self._one_epoch(Xe, Ye, swe, batch_size)
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += n_samples
                self.loss_curve_.append(loss)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                if np.isnan(loss):                      # diverged, with early stopping
                    self._diverged()
                    break
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._lr = _invscaling(self.learning_rate_init, self.t_, self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        "and the optimization hasn't converged yet.", ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:
            self.network_.params[...] = self._best_params

    def _diverged(self):
        """The loss stopped being finite with early stopping on: record a NaN
        validation score and stop (the best weights are restored after)."""
        self.validation_scores_.append(np.nan)
        if self.verbose:
            print("Validation score: nan")
        warnings.warn(
            f"Training diverged at iteration {self.n_iter_}: the loss stopped being finite "
            f"(learning_rate_init={self.learning_rate_init!r}). The weights of the best "
            "validation score were restored; lower learning_rate_init or scale the input "
            "data.", ConvergenceWarning)

    def _trigger_stopping(self, msg):
        if self.solver == "sgd" and self.learning_rate == "adaptive":
            if self._lr > 1e-6:
                self._lr /= 5.0
                if self.verbose:
                    print(msg + f" Setting learning rate to {self._lr:f}")
                return False
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        if self.verbose:
            print(msg + " Stopping.")
        return True

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
            score = self._score_nocheck(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self.network_.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _score_nocheck(self, X, y, sample_weight):
        pred = self._predict_raw(X)
        if not np.isfinite(pred).all():
            return np.nan
        return float(self._score_function(y, self._decode(pred), sample_weight=sample_weight))

    # ---------------------------------------------------------- predict
    def _forward(self, X):
        check_is_fitted(self, "network_")
        X = validate_data(self, X, dtype=(np.float64, np.float32), accept_sparse="csr",
                          reset=False)
        return self._predict_raw(X)

    def _predict_raw(self, X):
        return self.network_.predict(X)

    def fit(self: _Est, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> _Est:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 data trains a float32 network; anything else float64.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples in the loss.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


# -------------------------------------------------------------- classifier
class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastmlp's compiled kernels.

    Drop-in for ``sklearn.neural_network.MLPClassifier`` (same parameters,
    defaults and attributes; see the module notes for the differences).
    Binary and multilabel targets train sigmoid outputs, multiclass targets a
    softmax output, all with log loss.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'lbfgs' is scipy's L-BFGS-B on the full batch (scikit-learn's choice
        for small data sets); 'sgd' and 'adam' train minibatches.
    alpha : float, default=1e-4
        L2 penalty ``alpha / (2 n_samples) * sum(W**2)`` (the network's ``l2``).
    batch_size : int or 'auto', default='auto'
        ``min(200, n_samples)`` for 'auto'.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule of the sgd solver.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs at most; for 'lbfgs', iterations at most.
    shuffle : bool, default=True
    random_state : int, RandomState or None
    tol : float, default=1e-4
        Least improvement of the loss or validation score over
        ``n_iter_no_change`` epochs; for 'lbfgs', the largest gradient
        component at which it stops (scipy's ``gtol``).
    verbose : bool, default=False
        Print scikit-learn's ``Iteration N, loss = ...`` line for every epoch
        (every L-BFGS iteration), and its validation and stopping messages.
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        'lbfgs' only: the most loss evaluations.
    class_weight : dict, list of dict, 'balanced' or None, default=None
        Weights of the classes, folded into the sample weights as
        scikit-learn's classifiers do (``sklearn.utils.class_weight.
        compute_sample_weight``): ``{label: weight}``, or ``'balanced'``,
        ``n_samples / (n_classes * np.bincount(y))``. ``partial_fit`` takes a
        dict only.
    dropout : float in [0, 1), default=0.0
        fastmlp's own: inverted dropout on the hidden layers while training
        (the network's ``dropout``; not with 'lbfgs'). ``loss_curve_`` then
        holds the dropped network's losses; predictions and validation
        scores use every unit.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, t_, coefs_, intercepts_, n_features_in_,
    feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn (with 'lbfgs': ``loss_``, ``n_iter_``, ``t_`` and
        also ``loss_curve_``, one value per iteration). ``coefs_`` and
        ``intercepts_`` are views into the parameters of ``network_``.
    network_ : fastmlp.Network
        The trained network; ``network_.predict`` gives the output-layer
        probabilities.

    Examples
    --------
    >>> from fastmlp.estimators import MLPClassifier
    >>> from sklearn.datasets import make_moons
    >>> X, y = make_moons(300, noise=0.1, random_state=0)
    >>> clf = MLPClassifier((16,), max_iter=500, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    _score_function = staticmethod(accuracy_score)

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, class_weight=None, dropout=0.0):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dropout=dropout)
        self.class_weight = class_weight

    def _is_classifier(self):
        return True

    def _fold_class_weight(self, Y, sample_weight, incremental):
        cw = self.class_weight
        if cw is None:
            return sample_weight
        if not (isinstance(cw, (dict, list)) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight must be None, 'balanced', a dict {{label: weight}} "
                             f"or a list of them; got {cw!r}")
        if incremental and isinstance(cw, str):
            raise ValueError("class_weight='balanced' is not supported by partial_fit (one "
                             "batch's counts are not the data's): give a dict {label: weight}")
        weights = compute_sample_weight(cw, self._decode(Y)).astype(Y.dtype)
        return weights if sample_weight is None else weights * sample_weight

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             accept_sparse="csr", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        Y = self._label_binarizer.transform(y).astype(X.dtype)
        return X, Y

    def _output_for(self, Y):
        if self._label_binarizer.y_type_ == "multiclass":
            return "softmax", "log_loss"
        return "sigmoid", "log_loss"

    def _decode(self, P):
        """Class labels from output-layer values (probabilities or 0/1 targets)."""
        if P.shape[1] == 1:
            P = P.ravel()
        return self._label_binarizer.inverse_transform(P)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted classes, shape (n_samples,) or (n_samples, n_classes) for multilabel."""
        return self._decode(self._forward(X))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``.

        For multilabel targets, the probability of each label independently.
        """
        P = self._forward(X)
        if P.shape[1] == 1:
            p = P.ravel()
            return np.vstack([1 - p, p]).T
        return P

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: Sequence | np.ndarray | None = None) -> MLPClassifier:
        """One epoch over (X, y), keeping the optimizer's state between calls.

        Only for the stochastic solvers ('sgd', 'adam'), as in scikit-learn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class across all calls; required on the first call (not for
            multilabel y).

        Returns
        -------
        self
        """
        first = not hasattr(self, "classes_")
        if first:
            if classes is None and not type_of_target(y).startswith("multilabel"):
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(np.asarray(classes))
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on the first call to "
                             f"partial_fit: {self.classes_!r}")
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


# --------------------------------------------------------------- regressor
class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastmlp's compiled kernels.

    Drop-in for ``sklearn.neural_network.MLPRegressor``: ``loss='squared_error'``
    (identity output, half squared error averaged over outputs as
    scikit-learn's) or ``loss='poisson'`` (exp output, the log link, and the
    half Poisson deviance ``y log(y / p) - y + p`` summed over outputs, as
    scikit-learn >= 1.7's; targets must be >= 0); several outputs for a 2-D
    y. Parameters and attributes as :class:`MLPClassifier`, less
    ``classes_``; like scikit-learn's, the first positional parameter is
    ``loss``, so pass ``hidden_layer_sizes`` by keyword.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp.estimators import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", max_iter=2000, tol=1e-6,
    ...                    random_state=0).fit(X, X.ravel() ** 2)
    >>> reg.score(X, X.ravel() ** 2) > 0.9
    True
    """

    _score_function = staticmethod(r2_score)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dropout=0.0):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dropout=dropout)
        self.loss = loss

    def _is_classifier(self):
        return False

    def _check_params(self):
        if not isinstance(self.loss, str) or self.loss not in ("squared_error", "poisson"):
            raise ValueError(
                f"loss must be 'squared_error' or 'poisson'; got {self.loss!r} (as in "
                "scikit-learn, the first positional parameter is loss: pass "
                "hidden_layer_sizes by keyword)")
        return super()._check_params()

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), accept_sparse="csr", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=X.dtype)
        if not np.isfinite(Y).all():
            raise ValueError(f"y contains values too large for {X.dtype.name}")
        if self.loss == "poisson" and (Y < 0).any():
            raise ValueError(f"y must hold values >= 0 for loss='poisson' (counts or rates); "
                             f"got values down to {Y.min():g}")
        if hasattr(self, "n_outputs_") and not reset and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs but the fitted model has "
                             f"{self.n_outputs_}")
        return X, Y

    def _output_for(self, Y):
        return ("exp", "poisson") if self.loss == "poisson" else ("identity", "squared_error")

    def _decode(self, P):
        return P.ravel() if P.shape[1] == 1 else P

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        return self._decode(self._forward(X))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None) -> MLPRegressor:
        """One epoch over (X, y), keeping the optimizer's state between calls.

        Only for the stochastic solvers ('sgd', 'adam'); hidden for 'lbfgs'.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
