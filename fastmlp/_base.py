"""What the compiled and the reference networks share.

:class:`BaseNetwork` owns the settings, the flat parameter buffer and its
per-layer views, the initialisation, argument checking and the ``fit`` loop.
Subclasses supply only the math, through four methods:

``_forward(X)``
    outputs of the last layer, shape (n, n_out).
``_objective(X, Y)``
    data loss averaged over rows plus ``l2 / (2 n) * sum(W**2)``.
``_full_pass(X, Y, keep_z)``
    one forward and backward pass over all rows as a single batch; returns
    ``(objective, acts, zs, deltas, grads)``: per-layer lists of arrays and the
    flat gradient (``zs`` is None unless ``keep_z``).
``_train_epochs(X, Y, lr, batch_size, epochs, order, shuffle, rng_state, out)``
    minibatch SGD for ``epochs`` epochs, writing each epoch's loss into
    ``out``; returns the number of epochs completed (fewer on divergence).
"""
import time
from collections import namedtuple

import numpy as np

from . import _validation as v
from .errors import DivergenceError
from .history import History

LayerTrace = namedtuple("LayerTrace", ["z", "a", "delta", "dW", "db"])
LayerTrace.__doc__ = """Quantities of one layer for a batch, as the seed tutorials name them.

z : pre-activations X·W + b, shape (n, n_out).
a : activations f(z), shape (n, n_out).
delta : dLoss/dz for the batch-mean objective, shape (n, n_out).
dW, db : gradients of the objective for this layer's weights and biases.
"""

# Work per kernel call in the fit loop (multiply-adds, roughly): keeps Python
# between calls rare and yet returns often enough for progress and Ctrl-C.
_WORK_PER_CALL = 2e8


class BaseNetwork:
    """A fully-connected network: parameters, settings and the fit loop."""

    def __init__(self, layer_sizes, activation="sigmoid", output="sigmoid",
                 loss="squared_error", l2=0.0, init="xavier", dtype="float64",
                 seed=None):
        sizes, dtype_name, l2 = v.check_settings(
            layer_sizes, activation, output, loss, l2, init, dtype)
        self.layer_sizes = tuple(sizes)
        self.activation = activation
        self.output = output
        self.loss_name = loss
        self.l2 = l2
        self.init = init
        self.dtype = np.dtype(v.DTYPES[dtype_name])
        self.seed = seed
        self.history = None
        self._sizes = np.asarray(sizes, dtype=np.intp)
        self._codes = (v.HIDDEN_ACTIVATIONS[activation], v.OUTPUTS[output], v.LOSSES[loss])
        self._rng = np.random.default_rng(seed)
        self.params = np.zeros(self.n_params, dtype=self.dtype)
        self.weights, self.biases = self._split(self.params)
        self._initialise()

    # ------------------------------------------------------------------ layout
    @property
    def n_layers(self):
        """Number of weight layers (hidden layers + 1)."""
        return len(self.layer_sizes) - 1

    @property
    def n_params(self):
        """Total number of weights and biases."""
        s = self.layer_sizes
        return sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1))

    def _split(self, flat):
        """Per-layer (W, b) views into a flat buffer of the parameter layout."""
        weights, biases, off = [], [], 0
        s = self.layer_sizes
        for i in range(len(s) - 1):
            n_in, n_out = s[i], s[i + 1]
            weights.append(flat[off:off + n_in * n_out].reshape(n_in, n_out))
            off += n_in * n_out
            biases.append(flat[off:off + n_out])
            off += n_out
        return weights, biases

    def _initialise(self):
        for W in self.weights:
            n_in, n_out = W.shape
            scale = {"plain": 0.1,
                     "xavier": np.sqrt(1.0 / n_in),
                     "he": np.sqrt(2.0 / n_in)}[self.init]
            W[...] = self._rng.standard_normal((n_in, n_out)) * scale
        for b in self.biases:
            b[...] = 0

    def get_params(self):
        """Return a copy of the flat parameter vector."""
        return self.params.copy()

    def set_params(self, flat):
        """Overwrite every parameter from a flat vector of length ``n_params``."""
        flat = np.asarray(flat)
        if flat.shape != (self.n_params,):
            raise ValueError(f"flat parameters must have shape ({self.n_params},); got {flat.shape}")
        if flat.dtype.kind not in "iuf" or not np.isfinite(flat).all():
            raise ValueError("flat parameters must be finite real numbers")
        self.params[...] = flat

    def __repr__(self):
        return (f"{type(self).__module__}.{type(self).__name__}({list(self.layer_sizes)}, "
                f"activation={self.activation!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, l2={self.l2!r}, init={self.init!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed!r})")

    # ------------------------------------------------------------- arguments
    def _check_X(self, X):
        return v.check_X(X, self.layer_sizes[0], self.dtype)

    def _check_XY(self, X, Y):
        X = self._check_X(X)
        Y = v.check_Y(Y, X.shape[0], self.layer_sizes[-1], self.output,
                      self.loss_name, self.dtype)
        return X, Y

    # ------------------------------------------------------------ public API
    def predict(self, X):
        """Output-layer activations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)

        Returns
        -------
        ndarray of shape (n_samples, n_out), the network's dtype
        """
        return self._forward(self._check_X(X))

    def loss(self, X, Y):
        """The objective on (X, Y): mean data loss plus ``l2 / (2 n) * sum(W**2)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)
        Y : array-like of shape (n_samples, n_out) or (n_samples,)
            For ``n_out > 1`` a 1-D Y holds integer class labels.

        Returns
        -------
        float
        """
        X, Y = self._check_XY(X, Y)
        return float(self._objective(X, Y))

    def gradients(self, X, Y):
        """Gradients of :meth:`loss` with respect to every parameter.

        Returns
        -------
        list of (dW, db)
            One pair per layer, shaped like ``weights[i]`` and ``biases[i]``.
        """
        X, Y = self._check_XY(X, Y)
        _, _, _, _, grads = self._full_pass(X, Y, keep_z=False)
        dW, db = self._split(grads)
        return list(zip(dW, db))

    def trace(self, X, Y):
        """Every intermediate quantity of one forward and backward pass.

        Returns
        -------
        list of LayerTrace
            Per weight layer: ``z``, ``a``, ``delta``, ``dW``, ``db`` for the
            batch (X, Y), the quantities the seed tutorials print.
        """
        X, Y = self._check_XY(X, Y)
        _, acts, zs, deltas, grads = self._full_pass(X, Y, keep_z=True)
        dW, db = self._split(grads)
        return [LayerTrace(z, a, d, gw, gb)
                for z, a, d, gw, gb in zip(zs, acts, deltas, dW, db)]

    def fit(self, X, Y, epochs=1000, learning_rate=0.1, batch_size=None, shuffle=True):
        """Train with minibatch stochastic gradient descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_in)
        Y : array-like of shape (n_samples, n_out) or (n_samples,)
        epochs : int
            Passes over the data.
        learning_rate : float
            Step size, > 0.
        batch_size : int or None
            Rows per update; None (or >= n_samples) means full batch.
        shuffle : bool
            Visit rows in a new random order each epoch (drawn from the
            network's seeded generator; irrelevant for full batches).

        Returns
        -------
        History
            The loss of every epoch.

        Raises
        ------
        DivergenceError
            If the loss stops being finite. The update that met the
            non-finite loss is not applied; the exception carries the
            history so far.
        """
        X, Y = self._check_XY(X, Y)
        epochs = v.check_count("epochs", epochs)
        lr = v.check_positive("learning_rate", learning_rate)
        batch_size = v.check_count("batch_size", batch_size, allow_none=True)
        n = X.shape[0]
        batch_size = n if batch_size is None else min(batch_size, n)
        rng_state = np.array([self._rng.integers(0, 2**63)], dtype=np.uint64)
        order = np.arange(n, dtype=np.intp)
        losses = np.full(epochs, np.nan)
        s = self.layer_sizes
        work_per_epoch = 3.0 * n * sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1))
        per_call = max(1, int(_WORK_PER_CALL / max(work_per_epoch, 1.0)))
        start, done = time.perf_counter(), 0
        while done < epochs:
            k = min(per_call, epochs - done)
            completed = self._train_epochs(X, Y, lr, batch_size, k, order,
                                           bool(shuffle), rng_state, losses[done:done + k])
            done += completed
            if completed < k:
                history = History(loss=losses[:done].tolist(), seconds=time.perf_counter() - start)
                self.history = history
                raise DivergenceError(
                    f"training diverged at epoch {done}: the loss became "
                    f"{losses[done]!r} with learning_rate={lr!r}; try a lower "
                    "learning_rate (the update that met it was not applied)",
                    epoch=done, history=history)
        self.history = History(loss=losses.tolist(), seconds=time.perf_counter() - start)
        return self.history
