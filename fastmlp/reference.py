"""The reference twin: the same ``Network`` in plain NumPy.

This module is the spec the compiled kernels are tested against. It shares
the parameter layout, validation, initialisation and fit loop with
:class:`fastmlp.Network` (both derive from ``BaseNetwork``) and differs only in
the math below, written for reading rather than speed.

Forward, per layer ``l``: ``z = a_prev @ W + b``, ``a = f(z)``.
Backward: the output delta (``p - y`` for sigmoid/softmax with log loss and
identity with squared error; the output-activation Jacobian times ``p - y``
otherwise), then ``delta_prev = (delta @ W.T) * f'(a_prev)``,
``dW = a_prev.T @ delta + (l2 / m) W``, ``db = delta.sum(0)``.
"""
import numpy as np

from . import _shuffle
from ._base import BaseNetwork


def sigmoid(z):
    """Logistic function, without overflow for any magnitude."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1 / (1 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1 + e)
    return out


def softmax(z):
    """Row-wise softmax, shifted by the row maximum."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


HIDDEN = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "sigmoid": (sigmoid, lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
}
OUTPUT = {"identity": lambda z: z, "sigmoid": sigmoid, "softmax": softmax}


def data_loss_sum(output, loss, z, p, y):
    """Sum over rows of the per-row data loss, in float64.

    Log loss is computed from the logits ``z`` so that it stays finite for
    any magnitude.
    """
    z, p, y = (np.asarray(a, dtype=np.float64) for a in (z, p, y))
    if loss == "squared_error":
        return 0.5 * np.sum((y - p) ** 2)
    if output == "sigmoid":
        # -[y log p + (1-y) log(1-p)] with p = sigmoid(z) equals softplus(z) - y z
        return np.sum(np.logaddexp(0, z) - y * z)
    mx = z.max(axis=1, keepdims=True)
    lse = mx + np.log(np.exp(z - mx).sum(axis=1, keepdims=True))
    return np.sum(y * (lse - z))


def output_delta(output, loss, p, y):
    """dLoss/dz of the output layer, for the loss summed over rows."""
    if loss == "log_loss" and output == "softmax":
        return y.sum(axis=1, keepdims=True) * p - y
    if loss == "log_loss" or output == "identity":
        return p - y
    g = p - y
    if output == "sigmoid":
        return g * p * (1 - p)
    return p * (g - (g * p).sum(axis=1, keepdims=True))       # softmax Jacobian


class Network(BaseNetwork):
    """Plain-NumPy twin of :class:`fastmlp.Network`: same API, same results.

    See :class:`fastmlp.Network` for the parameters.
    """

    def _layers(self):
        act, _ = HIDDEN[self.activation]
        fs = [act] * (self.n_layers - 1) + [OUTPUT[self.output]]
        return list(zip(self.weights, self.biases, fs))

    def _forward_all(self, X):
        zs, acts, a = [], [], X
        for W, b, f in self._layers():
            z = a @ W + b
            a = f(z).astype(self.dtype, copy=False)
            zs.append(z)
            acts.append(a)
        return zs, acts

    def _forward(self, X):
        return self._forward_all(X)[1][-1]

    def _weight_term(self, m):
        if self.l2 == 0:
            return 0.0
        return self.l2 / (2.0 * m) * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in self.weights)

    def _objective(self, X, Y):
        zs, acts = self._forward_all(X)
        m = X.shape[0]
        return data_loss_sum(self.output, self.loss_name, zs[-1], acts[-1], Y) / m + self._weight_term(m)

    def _full_pass(self, X, Y, keep_z):
        m = X.shape[0]
        zs, acts = self._forward_all(X)
        obj = data_loss_sum(self.output, self.loss_name, zs[-1], acts[-1], Y) / m + self._weight_term(m)
        _, dact = HIDDEN[self.activation]
        delta = output_delta(self.output, self.loss_name, acts[-1], Y) / self.dtype.type(m)
        deltas = [None] * self.n_layers
        grads = np.empty(self.n_params, dtype=self.dtype)
        gW, gb = self._split(grads)
        for l in range(self.n_layers - 1, -1, -1):
            deltas[l] = delta
            a_prev = X if l == 0 else acts[l - 1]
            gW[l][...] = a_prev.T @ delta + self.dtype.type(self.l2 / m) * self.weights[l]
            gb[l][...] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ self.weights[l].T) * dact(a_prev)
        return obj, acts, (zs if keep_z else None), deltas, grads

    def _train_epochs(self, X, Y, lr, batch_size, epochs, order, shuffle, rng_state, out):
        n = X.shape[0]
        gather = shuffle and batch_size < n
        lr = self.dtype.type(lr)
        for e in range(epochs):
            if gather:
                _shuffle.shuffle(order, rng_state)
            total = 0.0
            for start in range(0, n, batch_size):
                rows = order[start:start + batch_size] if gather else slice(start, start + batch_size)
                Xb, Yb = X[rows], Y[rows]
                m = Xb.shape[0]
                with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported below
                    obj, _, _, _, grads = self._full_pass(Xb, Yb, keep_z=False)
                if not np.isfinite(obj):
                    out[e] = obj
                    return e
                total += obj * m
                self.params -= lr * grads
            out[e] = total / n
        return epochs
