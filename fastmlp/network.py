"""The compiled network: :class:`Network`, whose math runs in ``_kernels``."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _preload  # noqa: F401  (before _kernels: a fast import of scipy's BLAS)
from . import _blas_threads, _kernels
from . import _validation as v
from ._base import BaseNetwork
from ._sparse import SparseRows

#: Why the planner takes each training step (see Network.plan and _planner.pxi).
STEP_REASONS = {
    "narrow-epochs": "plain SGD without L2 on data that fits one chunk of the one-pass step: "
                     "every epoch runs in one C loop",
    "narrow": "every layer is at most 32 units wide and batches have at least 32 rows: "
              "forward, loss and backward run in one feature-major pass over each batch",
    "units": "float32 plain SGD on one hidden layer whose products stay in fastmlp's own "
             "kernels: the hidden units are split into parts, one thread hand-off a step",
    "rows": "float32, and no product of a part goes to BLAS: each batch is split into parts "
            "of its rows on fastmlp's thread pool",
    "first": "float32 plain SGD whose first layer's products go to BLAS: that layer is split "
             "by its units, each part calling BLAS on one thread",
    "sparse": "a scipy.sparse X of low density: the first layer's products run over each "
              "batch's stored values, the later layers as in 'layers'",
    "layers": "the general step: layer by layer, small products in fastmlp's kernels and "
              "large ones in BLAS",
}
#: Why a fit with dropout takes "layers" (the planner allows no other step).
DROPOUT_REASON = ("dropout: its masks are applied in the general step 'layers' (the only "
                  "step that takes them), for every batch")


class Network(BaseNetwork):
    """A multilayer perceptron trained and run by compiled Cython kernels.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_in, hidden..., n_out]``; ``[n_in, n_out]`` (no hidden layer) gives
        logistic or linear regression.
    activation : {'sigmoid', 'tanh', 'relu', 'identity', 'leaky_relu', 'gelu', 'softplus'}
        Activation of every hidden layer. ``leaky_relu``: slope 0.01 below 0
        (PyTorch's default); ``gelu``: the tanh approximation
        ``z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))`` (PyTorch's
        ``GELU(approximate="tanh")``), 0 below -40; ``softplus``:
        ``log(1 + e^z)``, computed without overflow.
    output : {'sigmoid', 'softmax', 'identity', 'exp'}
        Activation of the output layer (``exp``: with ``loss='poisson'`` only).
    loss : {'squared_error', 'log_loss', 'poisson'}
        ``squared_error`` is ``(1/2m) sum (y - yhat)^2``; ``log_loss`` is the
        mean binary (sigmoid output) or categorical (softmax output)
        cross-entropy; ``poisson`` the mean half Poisson deviance
        ``sum y log(y / yhat) - y + yhat`` of ``yhat = exp(z)`` (targets >= 0).
    l2 : float
        L2 penalty ``l2 / (2m) * sum(W**2)`` over weights (not biases), part of
        the objective used by ``loss``, ``gradients`` and ``fit``.
    l1 : float
        L1 penalty ``l1 / m * sum(|W|)`` over weights, likewise.
    init : {'xavier', 'he', 'plain'}
        Weights drawn from N(0, 1/n_in), N(0, 2/n_in) or N(0, 0.1^2); biases 0.
    dtype : {'float64', 'float32'}
        Precision of parameters and computation.
    seed : int or None
        Seeds initialisation, shuffling and validation splits; the same seed
        gives the same run bit for bit (for a given ``n_threads``).
    n_threads : int or None
        BLAS threads for the products. None: one thread for calls whose
        largest product is small (where threads cost more than they save on
        a shared machine), the BLAS library's own setting for large ones.
        Also the threads (at most 4; None: the available cores, at most 4)
        of fastmlp's own pool, whose threads spin for 0.3 ms after each
        task: it splits one-sample predicts of wide layers, big training
        batches of narrow networks (all layers <= 32 wide) and float32
        minibatch products of at least 100k multiply-adds.
    flat_output : bool
        With one output, :meth:`predict` returns shape ``(n_samples,)``
        instead of ``(n_samples, 1)``, as scikit-learn's single-output
        regressors do (:func:`fastmlp.interop.from_sklearn` sets it for them).
        Only ``predict``'s shape changes (and the ONNX export's); ``fit``,
        ``loss``, ``score`` and the rest are as without it. Saved and loaded
        with the network.
    dropout : float in [0, 1)
        Inverted dropout on the hidden layers while ``fit`` and
        ``partial_fit`` train: each hidden unit's activation is zeroed with
        probability ``dropout`` and the kept ones are multiplied by
        ``1 / (1 - dropout)``. ``predict``, ``loss``, ``gradients``,
        ``score`` and validation scores use every unit. A unit's mask is a
        function of the fit's key (one draw of the seeded generator a fit),
        the batch, the layer, the row and the unit: the same seed gives the
        same run, on any thread count. The training loss a fit records is
        the dropped network's on each batch (as Keras and PyTorch report
        it). Such fits take step "layers" (see :meth:`plan`); not with
        ``optimizer='lbfgs'`` nor in distributed fits. Saved and loaded with
        the network.

    Attributes
    ----------
    weights, biases : list of ndarray
        Writable views into ``params``; ``weights[i]`` has shape
        ``(layer_sizes[i], layer_sizes[i+1])`` and ``Z = X @ W + b``.
    params : ndarray
        The flat parameter buffer (per layer: W row-major, then b).
    history : History or None
        What the last ``fit`` recorded.

    Examples
    --------
    >>> import numpy as np, fastmlp
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    >>> Y = np.array([0, 1, 1, 0], float)
    >>> net = fastmlp.Network([2, 3, 1], seed=0)
    >>> hist = net.fit(X, Y, epochs=5000, learning_rate=1.0)
    >>> (net.predict(X).ravel() > 0.5).astype(int).tolist()
    [0, 1, 1, 0]
    """

    #: The training steps a fit may take: "auto" (the planner's choice), one
    #: step name of :data:`STEPS`, or a sequence of them (see :meth:`plan`).
    strategy = "auto"
    # Older test switches, mapped onto the strategy by _strategy: _narrow -1
    # as planned, 0 no narrow step, 1 only the narrow steps; _epochs_in_c
    # False takes "narrow-epochs" out.
    _narrow = -1
    _epochs_in_c = True
    #: The names of the compiled training steps (see :meth:`plan`).
    STEPS = _kernels.STEP_NAMES
    _STEPS = STEPS

    def _strategy(self):
        """The strategy train gets: ``strategy``, less what the old switches exclude."""
        if self._narrow == -1 and self._epochs_in_c:
            return self.strategy
        names = set(self._STEPS if self.strategy == "auto" else
                    (self.strategy,) if isinstance(self.strategy, str) else self.strategy)
        if self._narrow == 0:
            names -= {"narrow", "narrow-epochs"}
        elif self._narrow == 1:
            names &= {"narrow", "narrow-epochs"}
        if not self._epochs_in_c:
            names.discard("narrow-epochs")
        return tuple(name for name in self._STEPS if name in names) or self.strategy

    def plan(self, n_samples: int, batch_size: int | None = None, *, optimizer: str = "sgd",
             momentum: float = 0.0, clip_norm: float | None = None, shuffle: bool = True,
             strategy: str | Sequence[str] | None = None,
             density: float | None = None) -> dict:
        """Which training step ``fit`` takes for these settings, and why.

        The compiled core's planner picks one step for the full batches and
        one for the last, shorter batch (when ``n_samples`` is not a multiple
        of ``batch_size``); ``fit`` records what ran in ``History.steps``.

        Parameters
        ----------
        n_samples : int
            Rows of the training data.
        batch_size, optimizer, momentum, clip_norm, shuffle
            As for :meth:`fit` (the network's ``l1`` and ``l2`` are used).
        strategy : str or sequence of str, optional
            Steps to choose from (default: the network's ``strategy``,
            ``"auto"``): any of :attr:`STEPS`.
        density : float in [0, 1], optional
            For a scipy.sparse X: its stored values / (rows x columns)
            (``X.nnz / (X.shape[0] * X.shape[1])``); None for a dense X.

        Returns
        -------
        dict
            ``step`` (the full batches' step name), ``parts`` (how many parts
            each batch is split into on the thread pool), ``last_step`` and
            ``last_parts`` (None without a shorter last batch),
            ``blas_threads`` (0: the BLAS library's own setting),
            ``pool_threads``, and ``reason``: why that step, in words.

        Raises
        ------
        ValueError
            For settings ``fit`` would refuse, or a strategy none of whose
            steps applies.
        """
        n_samples = v.check_count("n_samples", n_samples)
        batch_size = v.check_count("batch_size", batch_size, allow_none=True) or n_samples
        v.check_choice("optimizer", optimizer, v.OPTIMIZERS)
        fused = (optimizer == "sgd" and not momentum and not clip_norm and self.l1 == 0)
        density = -1.0 if density is None else v.check_fraction("density", density,
                                                                high_open=False)
        bs = min(batch_size, n_samples)
        p = _kernels.plan(self._sizes, n_samples, bs, self.dtype == np.float32, fused,
                          bool(shuffle), self.l2,
                          self._strategy() if strategy is None else strategy,
                          _blas_threads.threads_for(bs * self._widest_product, self.n_threads),
                          _blas_threads.pool_threads(self.n_threads), density,
                          self.dropout > 0)
        if p["error"] is not None:
            raise ValueError(p["error"])
        name, parts = ("narrow-epochs", 1) if p["step"] == "narrow-epochs" else p["full"]
        last = p["last"] or (None, None)
        return {"step": name, "parts": parts, "last_step": last[0], "last_parts": last[1],
                "blas_threads": p["blas_threads"], "pool_threads": p["pool_threads"],
                "reason": DROPOUT_REASON if self.dropout else STEP_REASONS[name]}

    def _check_X(self, X, sparse=False):
        # Fast path for the common case (the network's dtype, C order, the
        # right width, all finite, checked in C); anything else gets the full
        # checks and conversion.
        if (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2
                and X.shape[1] == self.layer_sizes[0] and X.shape[0] > 0
                and X.flags.c_contiguous
                and _kernels.all_finite(X, _blas_threads.pool_threads(self.n_threads))):
            return X
        return super()._check_X(X, sparse)

    def _check_Y(self, Y, n):
        # Fast path as for X: a 2-D Y of the network's dtype, C order and the
        # right shape, all finite (checked in C), in [0, 1] for log loss
        # (measured: 6.1 -> 1.4 us for XOR's 4 x 1 targets, a tenth of a
        # small partial_fit's fixed cost).
        if (type(Y) is np.ndarray and Y.dtype == self.dtype and Y.ndim == 2
                and Y.shape[0] == n and Y.shape[1] == self.layer_sizes[-1]
                and Y.flags.c_contiguous and _kernels.all_finite(Y)
                and (self.loss_name != "log_loss" or (Y.min() >= 0 and Y.max() <= 1))
                and (self.loss_name != "poisson" or Y.min() >= 0)):
            return Y
        return super()._check_Y(Y, n)

    # predict's kernel arguments: (params, n_threads, the rest), rebuilt when
    # params or n_threads change.  Building them on every call cost 0.6 us: a
    # 2-1 network's one-row predict 1.4 -> 0.8 us.
    _ready = (None, None)

    def predict(self, X: ArrayLike) -> np.ndarray:
        # One kernel call when X needs no conversion (checks included); the
        # shared path otherwise, whose errors say what is wrong.
        r = self._ready
        if r[0] is not self.params or r[1] != self.n_threads:
            hidden, output, _ = self._codes
            r = self._ready = (self.params, self.n_threads, self._sizes, hidden, output,
                               *_blas_threads.forward_threads(self._widest_product,
                                                              self.n_threads))
        out = _kernels.predict_ready(r[0], X, r[2], r[3], r[4], r[5], r[6], r[7], r[8])
        return self._outputs(self._check_X(X, sparse=True)) if out is None else out

    predict.__doc__ = BaseNetwork.predict.__doc__

    def _threads(self, rows):
        """BLAS threads for a call whose batches have ``rows`` rows."""
        return _blas_threads.threads_for(min(rows, _kernels.FORWARD_CHUNK) * self._widest_product,
                                         self.n_threads)

    @functools.cached_property
    def _widest_product(self):
        s = self.layer_sizes
        return max(s[i] * s[i + 1] for i in range(len(s) - 1))

    def _forward(self, X):
        out = np.empty((X.shape[0], self.layer_sizes[-1]), dtype=self.dtype)
        hidden, output, _ = self._codes
        _kernels.forward(self.params, X, self._sizes, hidden, output, out,
                         threads=self._threads(X.shape[0]),
                         pool_threads=_blas_threads.pool_threads(self.n_threads))
        return out

    def _outputs(self, X):
        # a sparse X of step "sparse"'s density: its first layer over the stored values
        if not isinstance(X, SparseRows) or X.density > _kernels.SPARSE_DENSITY:
            return super()._outputs(X)
        out = np.empty((X.shape[0], self.layer_sizes[-1]), dtype=self.dtype)
        hidden, output, _ = self._codes
        _kernels.forward_sparse(self.params, X.kernel_x(), self._sizes, hidden, output, out,
                                threads=self._threads(X.shape[0]),
                                pool_threads=_blas_threads.pool_threads(self.n_threads))
        return out

    def _objective(self, X, Y, sw):
        hidden, output, loss = self._codes
        w, l2, l1 = self._weighting(sw)
        return _kernels.objective(self.params, X, Y, w, self._sizes, hidden, output, loss,
                                  l2, l1, threads=self._threads(X.shape[0]))

    def _loss_terms(self, X, Y, sw):
        hidden, output, loss = self._codes
        w, l2, l1 = self._weighting(sw)
        return _kernels.objective(self.params, X, Y, w, self._sizes, hidden, output, loss,
                                  l2, l1, threads=self._threads(X.shape[0]), terms=True)

    def _gradient(self, X, Y, sw):
        hidden, output, loss = self._codes
        w, l2, l1 = self._weighting(sw)
        grads = np.empty(self.n_params, dtype=self.dtype)
        _kernels.gradient(self.params, X, Y, w, self._sizes, hidden, output, loss, l2, l1,
                          grads, threads=self._threads(X.shape[0]))
        return grads

    def _full_pass(self, X, Y, sw, keep_z):
        n = X.shape[0]
        total = n * int(self._sizes[1:].sum())
        acts = np.empty(total, dtype=self.dtype)
        deltas = np.empty(total, dtype=self.dtype)
        zs = np.empty(total, dtype=self.dtype) if keep_z else None
        grads = np.empty(self.n_params, dtype=self.dtype)
        hidden, output, loss = self._codes
        w, l2, l1 = self._weighting(sw)
        obj = _kernels.full_pass(self.params, X, Y, w, self._sizes, hidden, output, loss,
                                 l2, l1, acts, deltas, grads, zs,
                                 threads=_blas_threads.threads_for(n * self._widest_product,
                                                                   self.n_threads))
        return (obj, self._per_layer(acts, n), None if zs is None else self._per_layer(zs, n),
                self._per_layer(deltas, n), grads)

    def _loss_and_gradient(self, X, Y, sw):
        # one full_pass call an evaluation, on buffers made once per fit
        n = X.shape[0]
        total = n * int(self._sizes[1:].sum())
        acts = np.empty(total, dtype=self.dtype)
        deltas = np.empty(total, dtype=self.dtype)
        grads = np.empty(self.n_params, dtype=self.dtype)
        hidden, output, loss = self._codes
        threads = _blas_threads.threads_for(n * self._widest_product, self.n_threads)

        def evaluate():
            obj = _kernels.full_pass(self.params, X, Y, sw, self._sizes, hidden, output, loss,
                                     self.l2, self.l1, acts, deltas, grads, None,
                                     threads=threads)
            return obj, grads
        return evaluate

    def _per_layer(self, stacked, n):
        out, off = [], 0
        for k in self.layer_sizes[1:]:
            out.append(stacked[off:off + n * k].reshape(n, k))
            off += n * k
        return out

    def _train_epochs(self, X, Y, sw, lr, batch_size, epochs, order, shuffle, rng_state,
                      out, optimizer, clip_norm, stop, check_every, counts=None,
                      dropout_state=None):
        hidden, output, loss = self._codes
        w, l2, l1 = self._weighting(sw)
        if isinstance(X, SparseRows):
            X = X.kernel_x()        # the kernels densify each gathered batch
        return _kernels.train(
            self.params, X, Y, w, self._sizes, hidden, output, loss, lr, l2, l1,
            batch_size, epochs, order, shuffle, rng_state, out,
            optimizer.code, optimizer.momentum, optimizer.nesterov, optimizer.beta1,
            optimizer.beta2, optimizer.epsilon, clip_norm, optimizer.state, optimizer.step,
            optimizer.rho, optimizer.weight_decay, stop, check_every,
            threads=_blas_threads.threads_for(batch_size * self._widest_product, self.n_threads),
            strategy=self._strategy(), pool_threads=_blas_threads.pool_threads(self.n_threads),
            counts=counts, dropout=0.0 if dropout_state is None else self.dropout,
            dropout_state=dropout_state)
