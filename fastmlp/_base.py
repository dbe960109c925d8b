"""What the compiled and the reference networks share.

:class:`BaseNetwork` owns the settings, the flat parameter buffer and its
per-layer views, the initialisation, argument checking and the ``fit`` loop.
Subclasses supply only the math, through four methods:

``_forward(X)``
    outputs of the last layer, shape (n, n_out).
``_objective(X, Y, sw)``
    the objective over all rows (sample weights ``sw`` or None).
``_loss_terms(X, Y, sw)``
    ``(data, penalty, M)``: the weighted sum of the rows' data losses, the
    penalty ``l2 / 2 * sum(W**2) + l1 * sum(|W|)`` and the total weight (the
    objective is ``(data + penalty) / M``).
``_gradient(X, Y, sw)``
    the flat gradient of the objective (in bounded workspace where it can).
``_full_pass(X, Y, sw, keep_z)``
    one forward and backward pass over all rows as a single batch; returns
    ``(objective, acts, zs, deltas, grads)``: per-layer lists of arrays and the
    flat gradient (``zs`` is None unless ``keep_z``).
``_train_epochs(X, Y, sw, lr, batch_size, epochs, order, shuffle, rng_state,
out, optimizer, clip_norm, stop, check_every)``
    ``epochs`` epochs of minibatch training on the rows of ``order`` (all of
    X, or some: then every batch is gathered), writing each epoch's loss into
    ``out``; returns the number of epochs completed (fewer on divergence or
    when ``stop[0]`` was set by Ctrl-C).

With sample weights ``w`` (ones by default) and ``M = sum(w)``, the objective
of a batch is ``sum(w_i * loss_i) / M + l2 / (2M) * sum(W**2) + l1 / M * sum(|W|)``.
"""
from __future__ import annotations

import os
import threading
from collections import namedtuple
from typing import Any, Callable, Literal, Sequence, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _convert, _format, _format_optim, _onnx, _params, _training
from . import _validation as v
from ._sparse import SparseRows, take_rows
from .errors import ModelFileError
from .history import History

# the public API's annotations (typing.get_type_hints resolves them)
PathLike = Union[str, os.PathLike]
Callback = Callable[["BaseNetwork", int, dict], Any]
_Net = TypeVar("_Net", bound="BaseNetwork")

LayerTrace = namedtuple("LayerTrace", ["z", "a", "delta", "dW", "db"])
LayerTrace.__doc__ = """Quantities of one layer for a batch, as the seed tutorials name them.

z : pre-activations X·W + b, shape (n, n_out).
a : activations f(z), shape (n, n_out).
delta : dLoss/dz for the batch-mean objective, shape (n, n_out).
dW, db : gradients of the objective for this layer's weights and biases.
"""


class BaseNetwork:
    """A fully-connected network: parameters, settings and the fit loop."""

    # names of the compiled training steps whose batches fit counts (History.steps)
    _STEPS = ()
    # predict returns shape (n,) instead of (n, 1) (see the constructor); a class
    # default, so that networks pickled before the flag existed read as False
    flat_output = False
    # the probability of dropping each hidden unit in training (a class default
    # as flat_output's: networks pickled before it existed have none)
    dropout = 0.0

    def __init__(self, layer_sizes: Sequence[int], activation: str = "sigmoid",
                 output: str = "sigmoid", loss: str = "squared_error", l2: float = 0.0,
                 init: str = "xavier", dtype: str | np.dtype = "float64",
                 seed: int | np.random.Generator | None = None, l1: float = 0.0,
                 n_threads: int | None = None, flat_output: bool = False,
                 dropout: float = 0.0) -> None:
        sizes, dtype_name, l2 = v.check_settings(
            layer_sizes, activation, output, loss, l2, init, dtype)
        if not isinstance(flat_output, (bool, np.bool_)):
            raise TypeError(f"flat_output must be True or False; got {flat_output!r}")
        if flat_output and sizes[-1] != 1:
            raise ValueError(f"flat_output=True needs one output (predictions of shape "
                             f"(n_samples,)); layer_sizes end with {sizes[-1]}")
        if flat_output:
            self._set_flat_output()
        self.l1 = v.check_nonnegative("l1", l1)
        self.dropout = v.check_fraction("dropout", dropout)
        seed = v.check_seed(seed)
        self.n_threads = v.check_count("n_threads", n_threads, allow_none=True,
                                       high=v.MAX_THREADS)
        self.layer_sizes = tuple(sizes)
        self.activation = activation
        self.output = output
        self.loss_name = loss
        self.l2 = l2
        self.init = init
        self.dtype = np.dtype(v.DTYPES[dtype_name])
        self.seed = seed
        self.history = None
        self._origin = None                 # where the weights came from, when not _initialise
        self._optimizer = None
        self._samples_seen = 0
        self._fit_lock = threading.Lock()
        self._sizes = np.asarray(sizes, dtype=np.intp)
        self._codes = (v.HIDDEN_ACTIVATIONS[activation], v.OUTPUTS[output], v.LOSSES[loss])
        self._rng = np.random.default_rng(seed)
        params = self.__dict__.pop("_adopted_params", None)     # set by _around
        if params is None:
            self.params = _params.aligned_zeros(self.n_params, self.dtype)
            self._initialise()
        else:
            self._adopt(params)

    @classmethod
    def _around(cls, params, layer_sizes, settings, rng_state=None, origin=None):
        """A network of this class built around ``params``: its parameter
        buffer is that array (no initialisation, and no copy when it is an
        aligned C-contiguous array of the network's dtype, as ``_format.read``
        and ``_convert`` make).

        ``settings`` are the constructor's keyword arguments (the constructor
        runs, a subclass's own included). The generator continues from
        ``rng_state`` (a PCG64 state), or from where initialisation would have
        left it: as if the network had been built and then given ``params``.
        ``origin`` says where the parameters came from (see :attr:`origin`).
        """
        net = cls.__new__(cls)
        net._adopted_params = params
        net.__init__(layer_sizes, **settings)
        net._origin = origin
        if rng_state is not None:
            net._rng.bit_generator.state = rng_state
        else:
            net._skip_initialisation_draws()
        return net

    def _adopt(self, params):
        if not isinstance(params, np.ndarray) or params.shape != (self.n_params,):
            raise ValueError(f"params must be an array of shape ({self.n_params},) for layer_sizes "
                             f"{list(self.layer_sizes)}; got {getattr(params, 'shape', params)!r}")
        if (params.dtype != self.dtype or not params.flags.c_contiguous
                or not params.flags.writeable or not _params.is_aligned(params)):
            copy = _params.aligned_empty(self.n_params, self.dtype)
            copy[...] = params
            params = copy
        self.params = params

    # ------------------------------------------------------------------ layout
    @property
    def params(self):
        """The flat parameter buffer (per layer: W row-major, then b).

        Assigning replaces it (and the ``weights`` and ``biases`` views): a
        writable, aligned, C-contiguous array of ``n_params`` values of the
        network's dtype, kept as it is (not copied).
        """
        return self._params

    @params.setter
    def params(self, value):
        if not isinstance(value, np.ndarray):
            raise TypeError(f"params must be a numpy array of {self.n_params} "
                            f"{self.dtype.name} values; got {type(value).__name__}")
        flags = value.flags
        if (value.shape != (self.n_params,) or value.dtype != self.dtype
                or not (flags.c_contiguous and flags.writeable and flags.aligned)):
            kind = ", ".join(k for k, ok in (("not C-contiguous", flags.c_contiguous),
                                             ("read-only", flags.writeable),
                                             ("unaligned", flags.aligned)) if not ok)
            raise ValueError(f"params must be a writable, aligned, C-contiguous array of shape "
                             f"({self.n_params},) and dtype {self.dtype.name}; got shape "
                             f"{value.shape}, dtype {value.dtype}{', ' + kind if kind else ''}")
        self._params = value
        self.weights, self.biases = self._split(value)

    def _weighting(self, sw):
        """The kernels' sample weights (an array, or None), ``l2`` and ``l1``."""
        return sw, self.l2, self.l1

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + 1)."""
        return len(self.layer_sizes) - 1

    @property
    def n_params(self) -> int:
        """Total number of weights and biases."""
        return _params.n_params(self.layer_sizes)

    def _split(self, flat):
        """Per-layer (W, b) views into a flat buffer of the parameter layout."""
        return _params.split(flat, self.layer_sizes)

    def _weight_index(self):
        """Positions of the weights (not biases) in the flat parameter vector."""
        s, parts, off = self.layer_sizes, [], 0
        for i in range(len(s) - 1):
            parts.append(np.arange(off, off + s[i] * s[i + 1]))
            off += s[i] * s[i + 1] + s[i + 1]
        return np.concatenate(parts)

    def _loss_and_gradient(self, X, Y, sw):
        """A function of no arguments: (objective, flat gradient) at the current
        ``params`` on (X, Y), for L-BFGS. The compiled network overrides it
        with one kernel call on buffers made once."""
        def evaluate():
            obj, _, _, _, grads = self._full_pass(X, Y, sw, keep_z=False)
            return obj, grads
        return evaluate

    def _initialise(self):
        for W in self.weights:
            n_in, n_out = W.shape
            scale = {"plain": 0.1,
                     "xavier": np.sqrt(1.0 / n_in),
                     "he": np.sqrt(2.0 / n_in)}[self.init]
            W[...] = self._rng.standard_normal((n_in, n_out)) * scale
        for b in self.biases:
            b[...] = 0

    def _skip_initialisation_draws(self):
        """Advance the generator past the normals :meth:`_initialise` draws
        (a Generator's normals come one after another, so drawing them in
        blocks consumes the same stream), without holding them."""
        block = 1 << 16
        for W in self.weights:
            left = W.size
            while left:
                self._rng.standard_normal(min(left, block))
                left -= min(left, block)

    def save(self, path: PathLike, metadata: dict | None = None, *,
             optimizer: bool = True) -> str:
        """Write this network, and its optimizer state, to one ``.npz`` file, atomically.

        See :func:`fastmlp.io.save`; :meth:`load` or :func:`fastmlp.load`
        reads it back, and ``partial_fit`` with the same optimizer settings
        continues as this network would have.
        """
        return _format.write(self, path, metadata=metadata, optimizer=optimizer)

    def to_onnx(self, path: PathLike | None = None, *, opset: int = 17) -> Any:
        """This network as an ONNX model (opset >= 17), written atomically to ``path``.

        See :func:`fastmlp.onnx.export`: the graph maps ``X`` of shape
        ``(N, n_in)`` to what :meth:`predict` returns, in this network's
        dtype. Needs the ``onnx`` package (``pip install "fastmlp[onnx]"``).

        Returns
        -------
        str or onnx.ModelProto
            The path written, or without ``path`` the model.
        """
        proto = _onnx.build(self, opset=opset)
        return proto if path is None else _onnx.write(proto, path)

    @classmethod
    def load(cls: type[_Net], path: PathLike) -> _Net:
        """A network of this class from a file written by :meth:`save`.

        See :func:`fastmlp.io.load`. The network keeps the array read from
        the file as its parameters: loading holds one copy of them. It gets
        the file's optimizer state, if any, for ``partial_fit`` to continue.
        """
        path = _format.fspath(path)
        header, params, state = _format.read(path)
        sizes, settings = _format.settings(header)
        try:
            net = cls._around(params, sizes, settings, rng_state=header["rng_state"],
                              origin=f"loaded from {path!r}")
        except (ValueError, TypeError) as exc:
            raise ModelFileError(path, f"the header's settings are not valid for "
                                       f"{cls.__module__}.{cls.__name__}: {exc}") from exc
        if "optimizer" in header:
            _format_optim.restore(net, header["optimizer"], state)
        return net

    @classmethod
    def from_sklearn(cls: type[_Net], model: Any, dtype: str | None = None) -> _Net:
        """A network of this class with the weights of a fitted scikit-learn MLP.

        See :func:`fastmlp.interop.from_sklearn`.
        """
        return cls._from_spec(_convert.from_sklearn(model, dtype=dtype), _source(model))

    @classmethod
    def from_torch(cls: type[_Net], model: Any, dtype: str | None = None,
                   loss: str | None = None) -> _Net:
        """A network of this class with the weights of a torch ``nn.Sequential``.

        See :func:`fastmlp.interop.from_torch`.
        """
        return cls._from_spec(_convert.from_torch(model, dtype=dtype, loss=loss), _source(model))

    @classmethod
    def _from_spec(cls, spec, source):
        # seed 0: a fixed generator for later shuffling; the weights are the source's
        return cls._around(spec.params, list(spec.layer_sizes),
                           dict(activation=spec.activation, output=spec.output, loss=spec.loss,
                                l2=spec.l2, dtype=spec.dtype, seed=0,
                                flat_output=spec.flat_output, dropout=spec.dropout),
                           origin=f"converted from {source}")

    def get_params(self) -> np.ndarray:
        """Return a copy of the flat parameter vector."""
        return self.params.copy()

    def set_params(self, flat: ArrayLike) -> None:
        """Overwrite every parameter from a flat vector of length ``n_params``."""
        flat = np.asarray(flat)
        if flat.shape != (self.n_params,):
            raise ValueError(f"flat parameters must have shape ({self.n_params},); got {flat.shape}")
        if flat.dtype.kind not in "iuf" or not np.isfinite(flat).all():
            raise ValueError("flat parameters must be finite real numbers")
        with np.errstate(over="ignore"):                # reported below
            cast = flat.astype(self.dtype)
        if not np.isfinite(cast).all():
            i = int(np.argmax(~np.isfinite(cast)))
            raise ValueError(f"flat parameters must fit in the network's dtype {self.dtype.name} "
                             f"(|values| <= {np.finfo(self.dtype).max:.4g}); got {flat[i]!r} "
                             f"at index {i}")
        self.params[...] = cast

    @property
    def origin(self) -> str | None:
        """Where the weights came from: None when this network's own
        initialisation drew them (``init``, ``seed``), else e.g.
        ``"loaded from 'model.npz'"`` or ``"converted from torch Sequential"``
        (then ``init`` and ``seed`` say nothing about them)."""
        return self.__dict__.get("_origin")

    def _call(self):
        """The constructor call of these settings (init and seed only when they made the weights)."""
        drawn = (f", init={self.init!r}", f", seed={self.seed!r}") if self.origin is None else ("", "")
        l1 = f", l1={self.l1!r}" if self.l1 else ""
        flat = ", flat_output=True" if self.flat_output else ""
        drop = f", dropout={self.dropout!r}" if self.dropout else ""
        return (f"{type(self).__module__}.{type(self).__name__}({list(self.layer_sizes)}, "
                f"activation={self.activation!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, l2={self.l2!r}{l1}{drawn[0]}, "
                f"dtype={self.dtype.name!r}{drawn[1]}{flat}{drop})")

    def summary(self) -> str:
        """A table of the layers: shapes, activations and parameter counts.

        Returns
        -------
        str
            The constructor call, one row per weight layer (``n_in -> n_out``,
            activation, weights, biases, parameters), the totals, the dtype
            and bytes of the parameters, and where the weights came from
            (:attr:`origin`). ``repr(net)`` is this text.
        """
        rows = [("layer", "shape", "activation", "weights", "biases", "parameters")]
        sizes = self.layer_sizes
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), 1):
            act = f"{self.output} (output)" if i == self.n_layers else self.activation
            rows.append((str(i), f"{n_in} -> {n_out}", act, f"{n_in * n_out:,}", f"{n_out:,}",
                         f"{n_in * n_out + n_out:,}"))
        n_b = sum(sizes[1:])
        rows.append(("total", "", "", f"{self.n_params - n_b:,}", f"{n_b:,}", f"{self.n_params:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = [self._call()]
        for r in rows:
            cells = [r[c].ljust(widths[c]) if c < 3 else r[c].rjust(widths[c]) for c in range(6)]
            lines.append("  ".join(cells).rstrip())
        weights = (f"init={self.init!r}, seed={self.seed!r}" if self.origin is None
                   else self.origin)
        lines.append(f"{self.dtype.name}: {self.params.nbytes:,} bytes of parameters; "
                     f"weights {weights}")
        return "\n".join(lines)

    def __repr__(self):
        return self.summary()

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("weights", "biases", "_fit_lock", "_ready", "predict"):
            state.pop(name, None)
        state["params"] = state.pop("_params")          # the format of earlier versions
        return state

    def __setstate__(self, state):
        state = dict(state)
        params = state.pop("params")
        self.__dict__.update(state)
        if not _params.is_aligned(params):              # unpickled: a fresh copy
            aligned = _params.aligned_zeros(params.size, params.dtype)
            aligned[...] = params
            params = aligned
        self._params = params
        self.weights, self.biases = self._split(params)
        self._fit_lock = threading.Lock()
        if self.flat_output:
            self._set_flat_output()

    # ------------------------------------------------------------- arguments
    def _check_X(self, X, sparse=False):
        return v.check_X(X, self.layer_sizes[0], self.dtype, sparse)

    def _check_Y(self, Y, n):
        return v.check_Y(Y, n, self.layer_sizes[-1], self.output, self.loss_name, self.dtype)

    def _check_XY(self, X, Y, sample_weight=None, sparse=False):
        X = self._check_X(X, sparse)
        Y = self._check_Y(Y, X.shape[0])
        sw = v.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        return X, Y, sw

    # ------------------------------------------------------------ public API
    def predict(self, X: ArrayLike) -> np.ndarray:
        """Output-layer activations.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_in)

        Returns
        -------
        ndarray of shape (n_samples, n_out), the network's dtype
            Of shape (n_samples,) for a network made with ``flat_output=True``
            (as scikit-learn's single-output regressors predict).
        """
        return self._outputs(self._check_X(X, sparse=True))

    def _outputs(self, X):
        """``_forward`` of a checked X: dense, or sparse one dense block of
        rows at a time (see fastmlp._sparse)."""
        if not isinstance(X, SparseRows):
            return self._forward(X)
        out = np.empty((X.shape[0], self.layer_sizes[-1]), dtype=self.dtype)
        for start, stop, block in X.chunks():
            out[start:stop] = self._forward(block)
        return out

    def _objective_of(self, X, Y, sw):
        """``_objective`` of a checked X: dense, or sparse block by block."""
        if not isinstance(X, SparseRows):
            return self._objective(X, Y, sw)
        data = weight = penalty = 0.0
        for start, stop, block in X.chunks():
            d, penalty, m = self._loss_terms(block, Y[start:stop],
                                             None if sw is None else sw[start:stop])
            data += d
            weight += m
        return (data + penalty) / weight

    def _flat_predict(self, X):
        """predict of a ``flat_output`` network: its one column, shape (n,)."""
        return type(self).predict(self, X)[:, 0]

    def _set_flat_output(self):
        # the instance's own predict: a network without the flag keeps the
        # class's predict untouched (no check in its 0.4 us one-row path)
        self.flat_output = True
        self.__dict__["predict"] = self._flat_predict

    def predict_classes(self, X: ArrayLike, labels: Sequence | None = None,
                        threshold: float = 0.5) -> np.ndarray:
        """Predicted classes: the most probable output of a softmax, or a
        sigmoid output above ``threshold``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_in)
        labels : sequence, optional
            The name of each class, to return instead of its index: one per
            softmax output, or two (below, above the threshold) for one
            sigmoid output.
        threshold : float in (0, 1)
            For sigmoid outputs.

        Returns
        -------
        ndarray of shape (n_samples,)
            Class indices (0 .. n_out-1, or 0/1), or ``labels`` picked by
            them; of shape (n_samples, n_out) of 0/1 for several sigmoid
            outputs (one decision per output; ``labels`` not allowed).
        """
        if self.output in v.REGRESSION_OUTPUTS:
            raise ValueError("predict_classes needs a classifier (output='sigmoid' or "
                             f"'softmax'); got output={self.output!r} (use predict)")
        threshold = v.check_fraction("threshold", threshold, low_open=True)
        P = self._forward(self._check_X(X))
        if self.output == "softmax":
            index = P.argmax(axis=1)
        else:
            index = (P > threshold).astype(np.intp)
            index = index[:, 0] if P.shape[1] == 1 else index
        return index if labels is None else self._labelled(index, labels)

    def _labelled(self, index, labels):
        n = self.layer_sizes[-1] if self.output == "softmax" else 2
        if index.ndim != 1:
            raise ValueError(f"labels need one class per row; this network has "
                             f"{self.layer_sizes[-1]} independent sigmoid outputs")
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__") or len(labels) != n:
            raise ValueError(f"labels must be a sequence of {n} class names "
                             f"({'one per output' if n > 2 else 'below, above the threshold'}); "
                             f"got {labels!r}")
        return np.asarray(labels)[index]

    def score(self, X: ArrayLike, Y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Accuracy of a classifier, R² of a regressor (as scikit-learn scores).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_in)
        Y : array-like of shape (n_samples, n_out) or (n_samples,)
            As for :meth:`fit` (class labels or one-hot rows, 0/1 targets).
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
            Sigmoid and softmax outputs: the (weighted) fraction of rows whose
            predicted classes (:meth:`predict_classes`) all match Y's (targets
            above 0.5 for sigmoid outputs); identity and exp outputs: the
            coefficient of determination R², averaged over outputs.
        """
        X, Y, sw = self._check_XY(X, Y, sample_weight, sparse=True)
        P = self._outputs(X)
        if self.output in v.REGRESSION_OUTPUTS:
            return _r2(Y, P, sw)
        if self.output == "softmax":
            right = P.argmax(axis=1) == Y.argmax(axis=1)
        else:
            right = np.all((P > 0.5) == (Y > 0.5), axis=1)
        return float(np.average(right, weights=sw))

    def loss(self, X: ArrayLike, Y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """The objective on (X, Y): mean data loss plus the penalties.

        ``sum(w_i * loss_i) / M + l2 / (2M) * sum(W**2) + l1 / M * sum(|W|)``
        with ``M = sum(w)`` (``M = n`` without sample weights).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_in)
        Y : array-like of shape (n_samples, n_out) or (n_samples,)
            For ``n_out > 1`` a 1-D Y holds integer class labels.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        X, Y, sw = self._check_XY(X, Y, sample_weight, sparse=True)
        return float(self._objective_of(X, Y, sw))

    def gradients(self, X: ArrayLike, Y: ArrayLike,
                  sample_weight: ArrayLike | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Gradients of :meth:`loss` with respect to every parameter.

        Returns
        -------
        list of (dW, db)
            One pair per layer, shaped like ``weights[i]`` and ``biases[i]``.

        Notes
        -----
        :class:`fastmlp.Network` works through the rows in chunks: besides
        the result it needs one gradient-sized buffer and at most 16 MB of
        workspace (one row's activations and deltas when they are more),
        whatever the number of rows.
        """
        X, Y, sw = self._check_XY(X, Y, sample_weight)
        dW, db = self._split(self._gradient(X, Y, sw))
        return list(zip(dW, db))

    def trace(self, X: ArrayLike, Y: ArrayLike) -> list[LayerTrace]:
        """Every intermediate quantity of one forward and backward pass.

        Returns
        -------
        list of LayerTrace
            Per weight layer: ``z``, ``a``, ``delta``, ``dW``, ``db`` for the
            batch (X, Y), the quantities the seed tutorials print.

        Notes
        -----
        The result holds ``3 * n * sum(layer_sizes[1:])`` values for n rows
        (every row's z, a and delta); the call needs little besides (the
        outputs' logits and the gradient). For large inputs use
        :meth:`gradients` or :meth:`predict`, whose memory is bounded.
        """
        X, Y, _ = self._check_XY(X, Y)
        _, acts, zs, deltas, grads = self._full_pass(X, Y, None, keep_z=True)
        dW, db = self._split(grads)
        return [LayerTrace(z, a, d, gw, gb)
                for z, a, d, gw, gb in zip(zs, acts, deltas, dW, db)]

    def fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 1000, learning_rate: float = 0.1,
            batch_size: int | None = None, shuffle: bool = True, *,
            optimizer: str = "sgd", momentum: float = 0.0, nesterov: bool = False,
            beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
            rho: float = 0.9, weight_decay: float = 0.01,
            schedule: str = "constant", power_t: float = 0.5, warmup_epochs: int = 0,
            clip_norm: float | None = None, sample_weight: ArrayLike | None = None,
            class_weight: dict[int, float] | Literal["balanced"] | None = None,
            validation_data: tuple | None = None, validation_split: float = 0.0,
            early_stopping: bool = False, patience: int = 10, tol: float = 1e-4,
            callbacks: Sequence[Callback] | Callback | None = (), verbose: bool = False,
            max_fun: int = 15000, checkpoint: PathLike | None = None,
            checkpoint_every: int | Literal["best"] = "best") -> History:
        """Train by minibatch gradient descent or L-BFGS, continuing from the current weights.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_in)
            A sparse X (CSR or CSC, matrix or array classes) is never
            densified whole: up to 5% density step "sparse" runs the first
            layer's products over the stored values; a denser X's batches
            are densified as they are gathered (the same steps then run as
            on dense rows, the weights equal to a dense fit's bit for bit).
            L-BFGS's passes and the validation scores take a dense block of
            rows at a time.
        Y : array-like of shape (n_samples, n_out) or (n_samples,)
            For ``n_out > 1`` a 1-D Y holds integer class labels.
        epochs : int
            Passes over the data; for ``optimizer='lbfgs'`` the most L-BFGS
            iterations (scipy's ``maxiter``).
        learning_rate : float
            Step size, > 0 (not used by lbfgs).
        batch_size : int or None
            Rows per update; None (or >= n_samples) means full batch. Must be
            None for lbfgs.
        shuffle : bool
            Visit rows in a new random order each epoch, drawn in C from the
            network's seeded generator (no effect on full batches).
        optimizer : {'sgd', 'adam', 'rmsprop', 'adamw', 'lbfgs'}
            A fresh optimizer state is made on every call (``partial_fit``
            keeps it). ``'rmsprop'`` and ``'adamw'`` follow PyTorch's
            ``torch.optim.RMSprop`` (no momentum) and ``torch.optim.AdamW``
            (distributed fits refuse them). ``'lbfgs'`` runs scipy's L-BFGS-B
            on the full batch, each objective and gradient one compiled pass
            over all rows (it keeps every layer's activations and deltas for
            all rows, as scikit-learn's does); ``momentum``, ``nesterov``, ``schedule``
            and ``clip_norm`` must keep their defaults, and the Adam settings,
            ``learning_rate``, ``power_t`` and ``shuffle`` are not used. It
            stops after ``epochs`` iterations, ``max_fun`` evaluations, or
            when the largest gradient component is at most ``tol``; each
            iteration is one entry of the History, whose
            ``optimizer_result`` says why it stopped.
        momentum : float in [0, 1)
            SGD momentum; ``nesterov=True`` uses Nesterov's form.
        beta1, beta2, epsilon : float
            Adam's settings (scikit-learn's definitions), and AdamW's
            (PyTorch's: ``epsilon`` is added to ``sqrt(v_hat)``, the
            bias-corrected second moment's root, where Adam adds it to
            ``sqrt(v)``); ``epsilon`` is also RMSprop's.
        rho : float in [0, 1)
            RMSprop's decay of the mean square (PyTorch's ``alpha``):
            ``v = rho * v + (1 - rho) * g**2``,
            ``w -= learning_rate * g / (sqrt(v) + epsilon)``. Other
            optimizers ignore it.
        weight_decay : float >= 0
            AdamW's decoupled decay: every step first multiplies every
            parameter (biases included) by ``1 - learning_rate * weight_decay``,
            then takes Adam's step on the gradient. Unlike the network's
            ``l2``, which adds ``l2 / M * W`` to the gradient (so Adam divides
            it by ``sqrt(v)`` with the rest), this decay is not rescaled by
            the moments; the two can be combined. Other optimizers ignore it.
        schedule : {'constant', 'invscaling', 'plateau', 'cosine'}
            ``invscaling``: ``learning_rate / (t + 1) ** power_t`` with ``t``
            the samples seen; ``plateau``: divide the rate by 5 when the
            training loss has not improved by ``tol`` for more than
            ``patience`` epochs, stopping once it falls below 1e-6;
            ``cosine``: epoch ``e`` (from 0) of the first ``warmup_epochs``
            uses ``learning_rate * (e + 1) / warmup_epochs``, epoch ``e`` of the
            ``E`` after them ``learning_rate * (1 + cos(pi * e / E)) / 2``.
        power_t : float
            Exponent of ``invscaling``.
        warmup_epochs : int
            Epochs of linear warm-up of the ``cosine`` schedule (0: none).
        clip_norm : float or None
            Rescale each batch gradient to at most this global L2 norm.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row in the loss.
        class_weight : dict, 'balanced' or None
            Weight of each class in the loss, folded into the sample weights
            (multiplied, row by row, as scikit-learn's classifiers do):
            ``{class: weight}`` (class indices 0 .. n_out-1, or 0/1 for one
            sigmoid output; classes not given weigh 1), or ``'balanced'``:
            ``n_samples / (n_classes * count of the class)``. Needs class
            targets. The rows of a ``validation_split`` keep their weights;
            ``validation_data`` is not reweighted.
        validation_data : tuple (X_val, Y_val) or (X_val, Y_val, w_val), optional
            Scored after every epoch (``History.val_loss``, ``val_accuracy``).
        validation_split : float in [0, 1)
            Hold out this fraction of the rows (chosen by the seeded
            generator) as validation data instead. Minibatches and
            validation rows are gathered from X, not copied (a full batch
            is the training rows, copied once).
        early_stopping : bool
            Stop when the validation loss (the training loss without
            validation data) has not improved by ``tol`` for ``patience``
            epochs, and keep the best weights seen.
        patience : int
        tol : float
            Least improvement that counts for early stopping; for lbfgs also
            scipy's ``gtol``.
        callbacks : sequence of callables
            ``cb(net, epoch, logs)`` after each epoch, ``epoch`` numbered from
            1 (as ``History.best_epoch``, the progress bar and the plots),
            ``logs`` a dict with ``loss``, ``learning_rate``, ``seconds`` and
            the validation scores. Training stops after the epoch when a
            callback returns :data:`fastmlp.STOP` or raises
            :class:`fastmlp.StopTraining`; any other return value is ignored.
        verbose : bool
            Show a progress bar (tqdm when installed, else plain lines) and,
            when training ends early or early stopping restores an earlier
            epoch, a line saying so ("stopped early at epoch N, restored
            epoch M (val_loss ...)").
        checkpoint : str or os.PathLike, optional
            A directory (made if missing) to save the network to during
            training, atomically as :meth:`save` does, with the epoch and its
            scores as metadata, and with the optimizer state (and samples
            seen) that goes with the weights written. To resume, load a
            checkpoint and continue with :meth:`partial_fit` and the same
            optimizer settings: the epoch after a checkpoint's weights is
            then the one an uninterrupted run of ``partial_fit`` would take
            (``fit`` itself starts a fresh optimizer state; the schedules
            ``plateau`` and ``cosine`` and a shuffled row order are per
            ``fit`` call and do not carry over).
        checkpoint_every : int or 'best'
            ``k``: after every k-th epoch and the last, to
            ``epoch-N.npz``; ``'best'``: to ``best.npz`` whenever the
            validation loss (the training loss without validation data)
            reaches a new minimum, with the weights early stopping would keep
            (without validation data, those the epoch started from, with the
            optimizer state of that moment).
        max_fun : int
            lbfgs only: the most objective evaluations (scipy's ``maxfun``).

        Returns
        -------
        History

        Raises
        ------
        DivergenceError
            If the loss stops being finite. The update that met the
            non-finite loss is not applied; the exception carries the
            history so far.
        KeyboardInterrupt
            On Ctrl-C, within a few milliseconds of work; the weights are
            those after the last completed step and ``net.history`` holds
            the completed epochs.
        RuntimeError
            If this network is already training in another thread.
        """
        if optimizer == "lbfgs":
            if self.dropout:
                raise ValueError(f"optimizer='lbfgs' needs a deterministic objective: it cannot "
                                 f"train a network with dropout={self.dropout!r} (use a "
                                 f"stochastic optimizer such as 'adam', or dropout=0)")
            return self._fit_lbfgs(X, Y, epochs, batch_size, momentum, nesterov, schedule,
                                   clip_norm, sample_weight, validation_data, validation_split,
                                   early_stopping, patience, tol, callbacks, verbose, max_fun,
                                   class_weight, checkpoint, checkpoint_every)
        return self._fit(X, Y, epochs, learning_rate, batch_size, shuffle,
                         (optimizer, momentum, nesterov, beta1, beta2, epsilon, rho,
                          weight_decay), schedule, power_t,
                         clip_norm, sample_weight, validation_data, validation_split,
                         early_stopping, patience, tol, callbacks, verbose, fresh=True,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         class_weight=class_weight, warmup_epochs=warmup_epochs)

    def partial_fit(self, X: ArrayLike, Y: ArrayLike, learning_rate: float = 0.1,
                    batch_size: int | None = None, shuffle: bool = True, *,
                    optimizer: str = "sgd", momentum: float = 0.0, nesterov: bool = False,
                    beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                    rho: float = 0.9, weight_decay: float = 0.01,
                    schedule: str = "constant", power_t: float = 0.5,
                    clip_norm: float | None = None, sample_weight: ArrayLike | None = None,
                    reset_optimizer: bool = False) -> History:
        """One epoch over (X, Y), keeping the optimizer state between calls.

        Same parameters as :meth:`fit`. The optimizer's state (momentum,
        RMSprop's mean square, Adam's and AdamW's moments and step) and the
        samples seen (for ``invscaling``) carry over from the previous ``partial_fit`` with the same optimizer
        settings; ``fit`` starts them afresh, and so does ``partial_fit``
        with ``reset_optimizer=True``. :meth:`save` writes them and
        :meth:`load` restores them: a loaded network (or a checkpoint of
        ``fit``) continues here as the saved one would have.

        Returns
        -------
        History
            One epoch.
        """
        return self._fit(X, Y, 1, learning_rate, batch_size, shuffle,
                         (optimizer, momentum, nesterov, beta1, beta2, epsilon, rho,
                          weight_decay), schedule, power_t,
                         clip_norm, sample_weight, None, 0.0, False, 10, 1e-4, (),
                         False, fresh=bool(reset_optimizer))

    def _fit(self, X, Y, epochs, learning_rate, batch_size, shuffle, optimizer_args,
             schedule, power_t, clip_norm, sample_weight,
             validation_data, validation_split, early_stopping, patience, tol, callbacks,
             verbose, fresh, checkpoint=None, checkpoint_every="best", class_weight=None,
             warmup_epochs=0):
        # the kernels read the caller's X in place (no copy); Y and the sample
        # weights are copied when they are the caller's (a callback rewriting
        # them must not bypass the checks)
        X, checked_Y, sw = self._check_XY(X, Y, sample_weight, sparse=True)
        Y = v.own(checked_Y, Y)
        sw = v.fold_class_weight(class_weight, Y, self.output, sw, self.dtype)
        sw = None if sw is None else v.own(sw, sample_weight)
        epochs = v.check_count("epochs", epochs)
        lr = v.check_positive("learning_rate", learning_rate)
        if lr > float(np.finfo(self.dtype).max):
            raise ValueError(f"learning_rate must be finite in the network's dtype "
                             f"({np.dtype(self.dtype).name}: at most {np.finfo(self.dtype).max:.4g}); "
                             f"got {learning_rate!r}")
        batch_size = v.check_count("batch_size", batch_size, allow_none=True)
        if not fresh and optimizer_args[0] == "lbfgs":
            raise ValueError("partial_fit runs one epoch of a stochastic optimizer: optimizer "
                             "must be 'sgd', 'adam', 'rmsprop' or 'adamw'; got 'lbfgs' "
                             "(use fit(optimizer='lbfgs'))")
        settings = v.check_optimizer(*optimizer_args)
        v.check_choice("schedule", schedule, v.SCHEDULES)
        power_t = v.check_nonnegative("power_t", power_t)
        warmup_epochs = v.check_warmup(warmup_epochs, schedule)
        clip_norm = v.check_optional_positive("clip_norm", clip_norm) or 0.0
        patience = v.check_count("patience", patience)
        tol = v.check_nonnegative("tol", tol)
        callbacks = v.check_callbacks(callbacks)
        checkpoint = v.check_checkpoint(checkpoint, checkpoint_every)
        validation = self._validation_set(validation_data, validation_split)
        self._acquire_fit_lock()
        try:
            checkpoint = self._checkpoints(checkpoint)
            if fresh or self._optimizer is None or self._optimizer.settings() != settings:
                self._optimizer = _training.OptimizerState(*settings, self.n_params, self.dtype)
                if fresh:
                    self._samples_seen = 0
            return _training.run(
                self, X, Y, sw, epochs=epochs, learning_rate=lr, batch_size=batch_size,
                shuffle=shuffle, optimizer=self._optimizer, schedule=schedule,
                power_t=power_t, warmup_epochs=warmup_epochs, clip_norm=clip_norm,
                validation=validation,
                early_stopping=bool(early_stopping), patience=patience, tol=tol,
                callbacks=callbacks, verbose=bool(verbose), checkpoint=checkpoint)
        finally:
            self._fit_lock.release()

    def _fit_lbfgs(self, X, Y, epochs, batch_size, momentum, nesterov, schedule, clip_norm,
                   sample_weight, validation_data, validation_split, early_stopping, patience,
                   tol, callbacks, verbose, max_fun, class_weight=None, checkpoint=None,
                   checkpoint_every="best"):
        from . import _lbfgs
        X, Y, sw = self._check_XY(X, Y, sample_weight, sparse=True)
        sw = v.fold_class_weight(class_weight, Y, self.output, sw, self.dtype)
        epochs = v.check_count("epochs", epochs)
        v.check_lbfgs_settings(batch_size, momentum, nesterov, schedule, clip_norm)
        max_fun = v.check_count("max_fun", max_fun)
        patience = v.check_count("patience", patience)
        tol = v.check_nonnegative("tol", tol)
        callbacks = v.check_callbacks(callbacks)
        checkpoint = v.check_checkpoint(checkpoint, checkpoint_every)
        validation = self._validation_set(validation_data, validation_split)
        self._acquire_fit_lock()
        try:
            if isinstance(validation, float):
                X, Y, sw, validation = self._split_validation(X, Y, sw, validation)
            checkpoint = self._checkpoints(checkpoint)
            self._optimizer, self._samples_seen = None, 0       # as any fit: a fresh state
            return _lbfgs.run(self, X, Y, sw, max_iter=epochs, max_fun=max_fun, tol=tol,
                              validation=validation, early_stopping=bool(early_stopping),
                              patience=patience, callbacks=callbacks, verbose=bool(verbose),
                              checkpoint=checkpoint)
        finally:
            self._fit_lock.release()

    @staticmethod
    def _checkpoints(checked):
        """fit's Checkpoints from checked (directory, every), the directory made; or None."""
        if checked is None:
            return None
        os.makedirs(checked[0], exist_ok=True)
        return _training.Checkpoints(*checked)

    def _acquire_fit_lock(self):
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError("this network is already training in another thread; "
                               "fit and partial_fit cannot run on it concurrently")

    def _validation_set(self, validation_data, validation_split):
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError("validation_data must be a tuple (X_val, Y_val) or "
                                f"(X_val, Y_val, sample_weight_val); got {type(validation_data).__name__}")
            Xv, Yv, swv = self._check_XY(*validation_data, sparse=True)
            given = validation_data[2] if len(validation_data) == 3 else None
            return Xv, v.own(Yv, validation_data[1]), None if swv is None else v.own(swv, given)
        split = v.check_fraction("validation_split", validation_split)
        return split if split > 0 else None

    def _split_rows(self, n, sw, fraction):
        """``(train, val)``: the sorted row indices ``validation_split`` keeps
        for training and holds out, drawn by the network's generator."""
        n_val = int(round(fraction * n))
        if n_val < 1 or n_val >= n:
            raise ValueError(f"validation_split={fraction!r} of {n} rows leaves "
                             f"{n_val} validation and {n - n_val} training rows; both must be >= 1")
        perm = self._rng.permutation(n).astype(np.intp, copy=False)
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        if sw is not None and (sw[train].sum() <= 0 or sw[val].sum() <= 0):
            raise ValueError("validation_split left the training or the validation rows with "
                             "zero total sample_weight; give validation_data explicitly")
        return train, val

    def _split_validation(self, X, Y, sw, fraction):
        """``validation_split`` as copies of the rows: ``(X, Y, sw)`` to train
        on and ``(X, Y, sw)`` to validate on (L-BFGS and distributed fits,
        whose passes take whole arrays; ``fit``'s minibatches gather instead)."""
        train, val = self._split_rows(X.shape[0], sw, fraction)
        take = (lambda a, rows: None if a is None else take_rows(a, rows))
        return (take(X, train), take(Y, train), take(sw, train),
                (take(X, val), take(Y, val), take(sw, val)))


def _source(model):
    """'torch Sequential', 'sklearn MLPClassifier': a model's library and class."""
    return f"{type(model).__module__.split('.')[0]} {type(model).__name__}"


def _r2(Y, P, sw):
    """R² of each output (1 for a perfect fit of a constant column, else 0
    there, as scikit-learn forces it finite), averaged over outputs."""
    w = np.ones(len(Y)) if sw is None else sw
    mean = np.average(Y, axis=0, weights=w)
    ss_res = np.einsum("i,ij->j", w, (Y - P) ** 2)
    ss_tot = np.einsum("i,ij->j", w, (Y - mean) ** 2)
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
    return float(r2.mean())
