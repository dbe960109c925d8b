"""The reference twin: the same ``Network`` in plain NumPy.

This module is the spec the compiled kernels are tested against. It shares
the parameter layout, validation, initialisation and fit loop with
:class:`fastmlp.Network` (both derive from ``BaseNetwork``) and differs only in
the math below, written for reading rather than speed.

Forward, per layer ``l``: ``z = a_prev @ W + b``, ``a = f(z)``.
Backward: the output delta (``p - y`` for sigmoid/softmax with log loss,
exp with the Poisson deviance and identity with squared error; the
output-activation Jacobian times ``p - y`` otherwise), scaled by ``w_i / M``;
then ``delta_prev = (delta @ W.T) * f'(z_prev)``,
``dW = a_prev.T @ delta + (l2 / M) W + (l1 / M) sign(W)``, ``db = delta.sum(0)``,
where ``w`` are the sample weights (ones by default) and ``M = sum(w)``.
With dropout ``p`` (training only), each hidden layer's ``a`` and slopes
``f'(z)`` are multiplied by ``mask / (1 - p)`` (``fastmlp._dropout``'s masks)
right after the activation, so the backward pass's ``f'(z_prev)`` is the
dropped slopes and ``a_prev`` the dropped activations.
Updates follow scikit-learn's SGD (with momentum / Nesterov) and Adam, and
PyTorch's RMSprop and AdamW (see ``Network._apply``).
"""
import numpy as np

from . import _dropout, _shuffle
from ._base import BaseNetwork
from ._validation import GELU_C, GELU_K, LEAKY_SLOPE


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


def leaky_relu(z):
    """``z`` for z > 0, else ``0.01 z``."""
    return np.where(z > 0, z, z.dtype.type(LEAKY_SLOPE) * z)


def softplus(z):
    """``log(1 + exp(z))``, without overflow: ``max(z, 0) + log1p(exp(-|z|))``."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _gelu_q(z):
    """``(1 + tanh(u)) / 2 = sigmoid(2u)``, ``u = sqrt(2/pi) (z + 0.044715 z^3)``."""
    return sigmoid(2 * GELU_C * z * (1 + GELU_K * z * z))


def gelu(z):
    """GELU, tanh approximation: ``z/2 (1 + tanh(u))`` = ``z sigmoid(2u)``;
    0 below -40 (where it is below 1e-300)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(z < -40, 0, z * _gelu_q(z)).astype(z.dtype)


def gelu_slope(z):
    """d gelu / dz, from the pre-activation (gelu is not monotonic); 0 or 1
    past |z| = 40 (the formula's z^2 could overflow there)."""
    with np.errstate(over="ignore", invalid="ignore"):
        q = _gelu_q(z)
        s = q + z * q * (1 - q) * 2 * GELU_C * (1 + 3 * GELU_K * z * z)
        return np.where(np.abs(z) > 40, z > 0, s).astype(z.dtype)


# Hidden activations: (f(z), f'(z) from (z, a = f(z))). All but gelu's
# slopes are functions of the output a, as the kernels compute them.
HIDDEN = {
    "identity": (lambda z: z, lambda z, a: np.ones_like(a)),
    "sigmoid": (sigmoid, lambda z, a: a * (1 - a)),
    "tanh": (np.tanh, lambda z, a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (a > 0).astype(a.dtype)),
    "leaky_relu": (leaky_relu, lambda z, a: np.where(a > 0, 1, LEAKY_SLOPE).astype(a.dtype)),
    "gelu": (gelu, lambda z, a: gelu_slope(z).astype(a.dtype)),
    "softplus": (softplus, lambda z, a: -np.expm1(-a)),       # sigmoid(z) = 1 - e^-a
}
OUTPUT = {"identity": lambda z: z, "sigmoid": sigmoid, "softmax": softmax, "exp": np.exp}


def row_losses(output, loss, z, p, y):
    """The data loss of every row, in float64.

    Log loss is computed from the logits ``z`` so that it stays finite for
    any magnitude.
    """
    z, p, y = (np.asarray(a, dtype=np.float64) for a in (z, p, y))
    if loss == "squared_error":
        return 0.5 * np.sum((y - p) ** 2, axis=1)
    if loss == "poisson":
        # half Poisson deviance y log(y / e^z) - y + e^z (scikit-learn's, 0 at y = e^z)
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0)
        return np.sum(np.exp(z) - y * z + ylogy - y, axis=1)
    if output == "sigmoid":
        # -[y log p + (1-y) log(1-p)] with p = sigmoid(z) equals softplus(z) - y z
        return np.sum(np.logaddexp(0, z) - y * z, axis=1)
    mx = z.max(axis=1, keepdims=True)
    lse = mx + np.log(np.exp(z - mx).sum(axis=1, keepdims=True))
    return np.sum(y * (lse - z), axis=1)


def output_delta(output, loss, p, y):
    """dLoss/dz of the output layer, for the loss summed over rows."""
    if loss == "log_loss" and output == "softmax":
        return y.sum(axis=1, keepdims=True) * p - y
    if loss != "squared_error" or output == "identity":       # the canonical links
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

    def _forward_all(self, X, drop=None):
        """Every layer's z and a; with ``drop`` = (key, t), batch t's dropout
        on the hidden layers, and then also their dropped slopes."""
        zs, acts, slopes, a = [], [], [], X
        _, dact = HIDDEN[self.activation]
        for l, (W, b, f) in enumerate(self._layers()):
            z = a @ W + b
            a = f(z).astype(self.dtype, copy=False)
            if drop is not None and l < self.n_layers - 1:
                c = _dropout.factors(drop[0], drop[1], l, a.shape[0], a.shape[1],
                                     self.dropout, self.dtype)
                slopes.append(dact(z, a) * c)
                a = a * c
            zs.append(z)
            acts.append(a)
        return (zs, acts, slopes) if drop is not None else (zs, acts)

    def _forward(self, X):
        return self._forward_all(X)[1][-1]

    def _penalty(self, l2, l1):
        """``l2 / 2 * sum(W**2) + l1 * sum(|W|)``: divided by M where used."""
        if l2 == 0 and l1 == 0:
            return 0.0
        Ws = [W.astype(np.float64) for W in self.weights]
        return 0.5 * l2 * sum(np.sum(W ** 2) for W in Ws) + l1 * sum(np.sum(np.abs(W)) for W in Ws)

    @staticmethod
    def _total_weight(X, w):
        return float(X.shape[0]) if w is None else float(np.sum(w, dtype=np.float64))

    def _loss_terms(self, X, Y, sw):
        w, l2, l1 = self._weighting(sw)
        zs, acts = self._forward_all(X)
        rows = row_losses(self.output, self.loss_name, zs[-1], acts[-1], Y)
        total = rows.sum() if w is None else np.dot(w.astype(np.float64), rows)
        return float(total), self._penalty(l2, l1), self._total_weight(X, w)

    def _objective(self, X, Y, sw):
        total, penalty, M = self._loss_terms(X, Y, sw)
        return (total + penalty) / M

    def _gradient(self, X, Y, sw):
        return self._full_pass(X, Y, sw, keep_z=False)[-1]

    def _full_pass(self, X, Y, sw, keep_z, drop=None):
        w, l2, l1 = self._weighting(sw)
        M = self._total_weight(X, w)
        zs, acts, *slopes = self._forward_all(X, drop)
        rows = row_losses(self.output, self.loss_name, zs[-1], acts[-1], Y)
        obj = ((rows.sum() if w is None else np.dot(w.astype(np.float64), rows))
               + self._penalty(l2, l1)) / M
        _, dact = HIDDEN[self.activation]
        scale = np.full((X.shape[0], 1), 1 / M) if w is None else (w / M)[:, None]
        delta = output_delta(self.output, self.loss_name, acts[-1], Y) * scale.astype(self.dtype)
        deltas = [None] * self.n_layers
        grads = np.empty(self.n_params, dtype=self.dtype)
        gW, gb = self._split(grads)
        for l in range(self.n_layers - 1, -1, -1):
            deltas[l] = delta
            a_prev = X if l == 0 else acts[l - 1]
            W = self.weights[l]
            gW[l][...] = (a_prev.T @ delta + self.dtype.type(l2 / M) * W
                          + self.dtype.type(l1 / M) * np.sign(W))
            gb[l][...] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ W.T) * (slopes[0][l - 1] if slopes else
                                         dact(zs[l - 1], a_prev))
        return obj, acts, (zs if keep_z else None), deltas, grads

    @staticmethod
    def _norm(grads):
        """The L2 norm, finite whenever it is representable (as _optim.h's)."""
        g = grads.astype(np.float64)
        norm = np.sqrt(np.sum(g ** 2))
        if np.isfinite(norm) or not np.isfinite(g).all():
            return norm
        k = np.frexp(np.max(np.abs(g)))[1]
        return np.ldexp(np.sqrt(np.sum(np.ldexp(g, -k) ** 2)), k)

    def _step(self, grads, lr, optimizer, clip_norm):
        """Clip, then one optimizer step on the flat parameters (sklearn's
        rules); False, nothing changed, when a value would not be finite."""
        with np.errstate(over="ignore"):
            norm = self._norm(grads)
        if not np.isfinite(norm):
            return False
        if clip_norm > 0 and norm > clip_norm:
            grads = grads * self.dtype.type(clip_norm / norm)
        kept = [a.copy() for a in (self.params, optimizer.state, optimizer.step) if a is not None]
        with np.errstate(over="ignore", invalid="ignore"):
            self._apply(grads, lr, optimizer)
        state = [self.params] + ([] if optimizer.state is None else [optimizer.state])
        if all(np.isfinite(a).all() for a in state):
            return True
        for a, b in zip([a for a in (self.params, optimizer.state, optimizer.step)
                         if a is not None], kept):
            a[...] = b
        return False

    def _apply(self, grads, lr, optimizer):
        """One step of ``optimizer`` on the flat parameters:

        * ``sgd``: ``v = mu v - lr g``, ``p += mu v - lr g`` (Nesterov) or
          ``p += v``; ``p -= lr g`` without momentum (scikit-learn's);
        * ``adam``: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
          ``p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)`` (scikit-learn's);
        * ``adamw``: ``p *= 1 - lr weight_decay`` (every parameter, biases
          too), then Adam's moments and
          ``p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` (PyTorch's);
        * ``rmsprop``: ``v = rho v + (1 - rho) g^2``, ``p -= lr g / (sqrt(v) + eps)``
          (PyTorch's, without momentum).
        """
        t = self.dtype.type
        if optimizer.name in ("adam", "adamw"):
            optimizer.step[0] += 1
            k = int(optimizer.step[0])
            b1, b2 = t(optimizer.beta1), t(optimizer.beta2)
            m1, m2 = optimizer.state[:self.n_params], optimizer.state[self.n_params:]
            m1[...] = b1 * m1 + (1 - b1) * grads
            m2[...] = b2 * m2 + (1 - b2) * grads * grads
            c2 = np.sqrt(1 - optimizer.beta2 ** k)
            lr_t = t(lr * c2 / (1 - optimizer.beta1 ** k))
            eps = optimizer.epsilon
            if optimizer.name == "adamw":
                # PyTorch's sqrt(v) / c2 + eps, as (sqrt(v) + eps c2) / c2
                eps *= c2
                self.params[...] *= t(1 - lr * optimizer.weight_decay)
            self.params[...] -= lr_t * m1 / (np.sqrt(m2) + t(eps))
        elif optimizer.name == "rmsprop":
            rho = t(optimizer.rho)
            square = optimizer.state
            square[...] = rho * square + (1 - rho) * grads * grads
            self.params[...] -= t(lr) * grads / (np.sqrt(square) + t(optimizer.epsilon))
        elif optimizer.momentum > 0:
            mu = t(optimizer.momentum)
            velocity = optimizer.state
            velocity[...] = mu * velocity - t(lr) * grads
            if optimizer.nesterov:
                self.params[...] += mu * velocity - t(lr) * grads
            else:
                self.params[...] += velocity
        else:
            self.params[...] -= t(lr) * grads
        return True

    def _train_epochs(self, X, Y, sw, lr, batch_size, epochs, order, shuffle, rng_state,
                      out, optimizer, clip_norm, stop, check_every, counts=None,
                      dropout_state=None):
        # (counts: the compiled steps' tally; the reference has no steps;
        # dropout_state: dropout's key and the fit's batch count, advanced)
        n = len(order)
        shuffling = shuffle and batch_size < n
        gather = shuffling or n < X.shape[0]
        total_weight = n if sw is None else self._total_weight(None, sw[order] if gather else sw)
        for e in range(epochs):
            if shuffling:
                _shuffle.shuffle(order, rng_state)
            total = 0.0
            for start in range(0, n, batch_size):
                if stop is not None and stop[0]:
                    return e
                drop = None
                if dropout_state is not None:       # batch t's masks (see fastmlp._dropout)
                    drop = (int(dropout_state[0]), int(dropout_state[1]))
                    dropout_state[1] += 1
                rows = order[start:start + batch_size] if gather else slice(start, start + batch_size)
                Xb, Yb = X[rows], Y[rows]
                swb = None if sw is None else sw[rows]
                M = self._total_weight(Xb, swb)
                if M <= 0:                      # zero total weight: no gradient, no step
                    continue
                with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported below
                    obj, _, _, _, grads = self._full_pass(Xb, Yb, swb, keep_z=False, drop=drop)
                    obj *= M
                    if not np.isfinite(obj):
                        out[e] = obj
                        return e
                    total += obj
                    if not self._step(grads, lr, optimizer, clip_norm):
                        out[e] = np.inf
                        return e
            out[e] = total / total_weight
        return epochs
