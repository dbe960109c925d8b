"""Every system's implementation of a matrix cell (``matrix_cells.Cell``).

``peers.py``'s trainers do plain SGD; these subclass them (or follow their
pattern) to add the cell's optimizer: SGD, momentum / Nesterov (scikit-learn's
form, the same steps as PyTorch's and optax's at a constant rate) or Adam.
Every system trains the same architecture from the same initial weights, in
the cell's dtype, batches in order (no shuffle), the same epochs, with a fresh
optimizer state at every timed run (``reset``, untimed).

Systems: ``fastmlp`` (``Network.fit``, the public API), ``fastmlp-1t`` (the
same with ``n_threads=1``), ``torch`` (eager, ``torch.optim``), ``jax`` (the
whole fit in one ``jax.jit``: epochs in ``lax.fori_loop``, batches in
``lax.scan``, the optimizer inside; optax if installed, else the same update
written out), ``sklearn`` (MLPClassifier / MLPRegressor where they express the
cell) and, for predict cells, ``onnxruntime``. A peer that is not installed,
or cannot express a cell, raises ``peers.Unavailable``.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

import peers

TRAIN_SYSTEMS = ("fastmlp", "fastmlp-1t", "torch", "jax", "sklearn")
PREDICT_SYSTEMS = ("fastmlp", "fastmlp-1t", "torch", "jax", "sklearn", "onnxruntime")
PEERS = ("torch", "jax", "sklearn", "onnxruntime")
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

# where a peer does not do exactly what fastmlp does
NOTES = {
    "torch": "Adam's epsilon is added to the bias-corrected sqrt(v) (sklearn's and "
             "fastmlp's to sqrt(v)): the same work",
    "jax": "compile time reported apart, not in the median",
    "sklearn": "computes the loss every batch and validates input per fit "
               "(part of its public cost)",
}


# ---- fastmlp ---------------------------------------------------------------


class FastmlpTrainer(peers.FastmlpTrainer):
    """``Network.fit`` with the cell's optimizer; records the planner's choice
    (``plan``) and the steps the last fit ran (``steps``, ``solo_steps``)."""

    def __init__(self, cell, data, init, dtype, n_threads=None):
        super().__init__(cell, data, init, dtype)
        if n_threads is not None:
            self.net.n_threads = n_threads
        self.plan = self.net.plan(cell.n_rows, cell.batch_size, shuffle=False,
                                  **self._plan_kwargs())

    def _plan_kwargs(self):
        c = self.wl
        return {"optimizer": "adam" if c.optimizer == "adam" else "sgd",
                "momentum": c.momentum}

    def _fit_kwargs(self):
        c = self.wl
        kw = self._plan_kwargs()
        if c.optimizer == "momentum":
            kw["nesterov"] = c.nesterov
        if c.optimizer == "adam":
            kw.update(beta1=BETA1, beta2=BETA2, epsilon=EPS)
        return kw

    def run(self):
        c = self.wl
        self.hist = self.net.fit(self.X, self.Y, epochs=c.epochs, learning_rate=c.lr,
                                 batch_size=c.batch_size, shuffle=False,
                                 **self._fit_kwargs())

    @property
    def steps(self):
        s = getattr(self.hist, "steps", None) or {}
        return {k: v for k, v in s.items() if v}

    @property
    def solo_steps(self):
        return getattr(self.hist, "solo_steps", None)


class FastmlpPredictor(peers.FastmlpPredictor):
    def __init__(self, cell, Ws, bs, dtype, n_threads=None):
        super().__init__(cell, Ws, bs, dtype)
        if n_threads is not None:
            self.net.n_threads = n_threads


# ---- torch -----------------------------------------------------------------


def torch_optimizer(torch, params, cell):
    """The cell's optimizer as users write it in PyTorch."""
    if cell.optimizer == "adam":
        return torch.optim.Adam(params, lr=cell.lr, betas=(BETA1, BETA2), eps=EPS)
    return torch.optim.SGD(params, lr=cell.lr, momentum=cell.momentum,
                           nesterov=cell.nesterov and cell.momentum > 0)


class TorchTrainer(peers.TorchTrainer):
    """peers' eager PyTorch loop with the cell's optimizer, fresh at each reset."""

    def reset(self):
        super().reset()
        self.opt = torch_optimizer(self.torch, self.lins.parameters(), self.wl)


# ---- jax -------------------------------------------------------------------


def _optax():
    try:
        import optax
    except Exception:
        return None
    return optax


def jax_update(jax, jnp, cell, dtype):
    """(init(params) -> state, update(params, grads, state) -> (params, state)):
    the cell's optimizer, from optax if installed, else written out."""
    optax = _optax()
    if optax is not None:
        return _optax_update(optax, cell)
    return _plain_update(jax, jnp, cell, dtype)


def _optax_update(optax, cell):
    if cell.optimizer == "adam":
        tx = optax.adam(cell.lr, b1=BETA1, b2=BETA2, eps=EPS)
    elif cell.momentum:
        tx = optax.sgd(cell.lr, momentum=cell.momentum, nesterov=cell.nesterov)
    else:
        tx = optax.sgd(cell.lr)

    def update(p, g, s):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s
    return tx.init, update


def _plain_update(jax, jnp, cell, dtype):
    """scikit-learn's update rules as JAX tree maps (no optax)."""
    tm = jax.tree_util.tree_map
    t = np.dtype(dtype).type
    lr, mu = t(cell.lr), t(cell.momentum)
    if cell.optimizer == "adam":
        def init(p):
            z = tm(jnp.zeros_like, p)
            return (z, z, jnp.zeros((), jnp.int32))

        def update(p, g, s):
            m, v, k = s
            k = k + 1
            m = tm(lambda a, b: BETA1 * a + (1 - BETA1) * b, m, g)
            v = tm(lambda a, b: BETA2 * a + (1 - BETA2) * b * b, v, g)
            kf = k.astype(dtype)
            lr_t = lr * jnp.sqrt(1 - BETA2 ** kf) / (1 - BETA1 ** kf)
            p = tm(lambda a, b, c: a - lr_t * b / (jnp.sqrt(c) + EPS), p, m, v)
            return p, (m, v, k)
        return init, update
    if cell.momentum:
        def update(p, g, v):
            v = tm(lambda a, b: mu * a - lr * b, v, g)
            if cell.nesterov:
                return tm(lambda a, b, c: a + mu * b - lr * c, p, v, g), v
            return tm(lambda a, b: a + b, p, v), v
        return (lambda p: tm(jnp.zeros_like, p)), update
    return (lambda p: ()), (lambda p, g, s: (tm(lambda a, b: a - lr * b, p, g), s))


class JaxTrainer(peers.Trainer):
    """The whole fit in one jitted call: epochs in ``fori_loop``, full batches
    in ``scan``, the remainder batch last, the optimizer's state carried."""

    def __init__(self, cell, data, init, dtype):
        jax, jnp = self.jax, self.jnp = peers.import_jax()
        self.wl = cell
        grad = jax.grad(peers.jax_loss_fn(jax, jnp, cell.hidden, cell.output, cell.loss))
        opt_init, opt_update = jax_update(jax, jnp, cell, dtype)
        Xb, Yb, Xr, Yr = peers.jax_batches(data, cell.batch_size, dtype)
        train = self._train_fn(jax, grad, opt_update, Xb.shape[0], Xr.shape[0],
                               cell.epochs)
        self.args = tuple(jax.device_put(a) for a in (Xb, Yb, Xr, Yr))
        self.p0 = [(jax.device_put(np.asarray(w, dtype)),
                    jax.device_put(np.asarray(b, dtype))) for w, b in zip(*init)]
        self.s0 = opt_init(self.p0)
        t0 = time.perf_counter()
        self.compiled = jax.jit(train).lower(self.p0, self.s0, *self.args).compile()
        self.compile_s = time.perf_counter() - t0
        self.out = None

    @staticmethod
    def _train_fn(jax, grad, opt_update, nb, rem, epochs):
        lax = jax.lax

        def step(carry, x, y):
            p, s = carry
            return opt_update(p, grad(p, x, y), s)

        def train(p, s, Xb, Yb, Xr, Yr):
            def one_epoch(_, carry):
                if nb == 1:
                    carry = step(carry, Xb[0], Yb[0])
                else:
                    carry, _ = lax.scan(lambda c, xy: (step(c, xy[0], xy[1]), None),
                                        carry, (Xb, Yb))
                if rem:
                    carry = step(carry, Xr, Yr)
                return carry
            return lax.fori_loop(0, epochs, one_epoch, (p, s))
        return train

    def run(self):
        self.out = self.compiled(self.p0, self.s0, *self.args)
        self.jax.block_until_ready(self.out)

    def params(self):
        p = self.out[0]
        return ([np.asarray(w, np.float64) for w, _ in p],
                [np.asarray(b, np.float64) for _, b in p])


# ---- scikit-learn ----------------------------------------------------------


def sklearn_model(cell, n_rows, max_iter):
    """MLPClassifier (sigmoid / softmax + log loss) or MLPRegressor (identity +
    squared error) with the cell's optimizer; Unavailable where sklearn cannot
    express the cell."""
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except Exception as exc:
        raise peers.Unavailable(f"scikit-learn not importable: {exc!r}") from exc
    if cell.out == "softmax+log" and cell.layers[-1] == 2:
        raise peers.Unavailable("sklearn: 2 classes get one logistic output, not softmax")
    if cell.out == "sigmoid+log" and cell.layers[-1] != 1:
        raise peers.Unavailable("sklearn: multi-output sigmoid not mapped")
    cls = MLPRegressor if cell.out == "identity+squared" else MLPClassifier
    solver = "adam" if cell.optimizer == "adam" else "sgd"
    return cls(hidden_layer_sizes=tuple(cell.layers[1:-1]),
               activation=peers._sk_activation(cell.hidden), solver=solver, alpha=0.0,
               batch_size=cell.batch_size or n_rows, learning_rate="constant",
               learning_rate_init=cell.lr, max_iter=max_iter, shuffle=False,
               random_state=0, tol=1e-12, verbose=False, warm_start=True,
               momentum=cell.momentum, nesterovs_momentum=cell.nesterov,
               beta_1=BETA1, beta_2=BETA2, epsilon=EPS, early_stopping=False,
               n_iter_no_change=max_iter + 10)


def _sklearn_targets(cell, data):
    if cell.out == "softmax+log":
        return data.labels
    if cell.out == "sigmoid+log":
        return data.Y.reshape(-1).astype(np.int64)
    return np.ascontiguousarray(data.Y.reshape(-1))


class SklearnTrainer(peers.SklearnTrainer):
    """peers' warm-started sklearn fit (reset / run / params reused), with the
    cell's estimator and solver."""

    def __init__(self, cell, data, init, dtype):
        from sklearn.exceptions import ConvergenceWarning
        self.CW = ConvergenceWarning
        self.wl = cell
        self.dtype = dtype
        self.X = np.ascontiguousarray(data.X, dtype=dtype)
        self.y = _sklearn_targets(cell, data)
        if self.y.dtype.kind == "f":
            self.y = self.y.astype(dtype)
        self.model = sklearn_model(cell, len(self.X), 1)
        with warnings.catch_warnings():  # sets classes_, layer sizes, out_activation_
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(self.X, self.y)
        self.model.set_params(max_iter=cell.epochs)
        expect = {"softmax": "softmax", "sigmoid": "logistic",
                  "identity": "identity"}[cell.output]
        if self.model.out_activation_ != expect:
            raise peers.Unavailable(f"sklearn output {self.model.out_activation_}")
        self.W0, self.b0 = init
        self.reset()


class SklearnPredictor:
    """predict_proba (classifier) or predict (regressor) with given weights."""

    def __init__(self, cell, Ws, bs, dtype):
        from sklearn.exceptions import ConvergenceWarning
        k = cell.layers[-1]
        X = np.random.default_rng(0).random((max(k, 20), cell.layers[0])).astype(dtype)
        y = (np.arange(len(X)) % k) if cell.out != "identity+squared" else X[:, 0]
        model = sklearn_model(cell, len(X), 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        model.coefs_ = [np.ascontiguousarray(w, dtype) for w in Ws]
        model.intercepts_ = [np.ascontiguousarray(b, dtype) for b in bs]
        self.call = model.predict if cell.out == "identity+squared" else \
            model.predict_proba

    def __call__(self, X):
        return self.call(X)


# ---- factories -------------------------------------------------------------


def make_trainer(system, cell, data, init):
    """A trainer (reset / run / params) of ``system`` for a training cell."""
    dt = np.dtype(cell.dtype)
    if system == "fastmlp":
        return FastmlpTrainer(cell, data, init, dt)
    if system == "fastmlp-1t":
        return FastmlpTrainer(cell, data, init, dt, n_threads=1)
    if system == "torch":
        return TorchTrainer(cell, data, init, dt)
    if system == "jax":
        return JaxTrainer(cell, data, init, dt)
    if system == "sklearn":
        return SklearnTrainer(cell, data, init, dt)
    raise peers.Unavailable(f"{system} does not train")


def make_predictor(system, cell, Ws, bs):
    """A callable X -> outputs of ``system`` for a predict cell."""
    dt = np.dtype(cell.dtype)
    if system == "fastmlp":
        return FastmlpPredictor(cell, Ws, bs, dt)
    if system == "fastmlp-1t":
        return FastmlpPredictor(cell, Ws, bs, dt, n_threads=1)
    if system == "torch":
        return peers.TorchPredictor(cell, Ws, bs, dt)
    if system == "jax":
        return peers.JaxPredictor(cell, Ws, bs, dt)
    if system == "sklearn":
        return SklearnPredictor(cell, Ws, bs, dt)
    if system == "onnxruntime":
        return peers.OnnxPredictor(cell, Ws, bs, dt)
    raise peers.Unavailable(f"{system} does not predict")
