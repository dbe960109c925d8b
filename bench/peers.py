"""Workloads of issue 3 and every system's implementation of them.

Shared by ``bench/compare.py`` (the side-by-side run) and the pytest-benchmark
suites ``bench/test_bench_*.py``.

Every training system implements exactly the same math:

* dense layers, row-major: ``Z = X @ W + b`` with ``W`` of shape (n_in, n_out);
* the workload's hidden activation and output / loss;
* plain SGD, no momentum, no L2, no shuffle, batches taken in order
  (the last batch may be smaller), the gradient of a batch is the mean over it;
* the same initial weights (copied from a ``fastmlp.Network`` built with seed 0
  when fastmlp is importable, otherwise from a NumPy xavier draw).

A system is made of two factories:

``make_trainer(system, workload, data, init)`` -> Trainer (``reset()``, ``run()``,
``params()``) and ``make_predictor(system, workload, weights, biases)`` ->
Predictor (``__call__(X)`` returning class probabilities as a NumPy array).

Peers that are not installed raise :class:`Unavailable` (an ImportError), which the
callers report as "skipped".
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "train" | "predict" | "sgemm"
    layers: tuple = ()
    hidden: str = "sigmoid"
    output: str = "sigmoid"
    loss: str = "squared_error"
    lr: float = 1.0
    batch_size: int | None = None  # None = full batch
    epochs: int = 1
    n_rows: int = 0  # rows of data (predict: rows per call)
    description: str = ""
    quick: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def n_classes(self):
        return self.layers[-1]


def _mnist_layers():
    return (784, 256, 128, 10)


def get_workload(name: str, quick: bool = False) -> Workload:
    """The workloads of issue 3; ``quick`` shrinks them for smoke runs."""
    q = quick
    if name == "xor":
        return Workload(
            "xor", "train", (2, 3, 1), "sigmoid", "sigmoid", "squared_error",
            lr=1.0, batch_size=None, epochs=500 if q else 5000, n_rows=4,
            description="2-3-1 sigmoid, squared error, 4 rows, full batch, lr 1",
            quick=q)
    if name == "clf":
        return Workload(
            "clf", "train", (20, 8, 3, 1), "sigmoid", "sigmoid", "log_loss",
            lr=1.0, batch_size=None, epochs=200 if q else 2000,
            n_rows=4000,
            description="make_classification (seed 001), 4000x20, 20-8-3-1 sigmoid, "
                        "log-loss, full batch, lr 1",
            quick=q)
    if name == "digits":
        return Workload(
            "digits", "train", (64, 128, 10), "sigmoid", "softmax", "log_loss",
            lr=0.5, batch_size=32, epochs=2 if q else 20, n_rows=1797,
            description="load_digits/16, 64-128-10, softmax+log-loss, batch 32, lr 0.5",
            quick=q)
    if name == "mnist-shape":
        return Workload(
            "mnist-shape", "train", _mnist_layers(), "sigmoid", "softmax", "log_loss",
            lr=0.1, batch_size=128, epochs=1, n_rows=6000 if q else 60000,
            description="random 60000x784 f32, 784-256-128-10, softmax+log-loss, "
                        "batch 128, lr 0.1, 1 epoch",
            quick=q)
    if name == "predict-1":
        return Workload(
            "predict-1", "predict", _mnist_layers(), "sigmoid", "softmax", "log_loss",
            n_rows=1, description="one-row predict on the trained 784-256-128-10 net",
            quick=q)
    if name == "predict-batch":
        return Workload(
            "predict-batch", "predict", _mnist_layers(), "sigmoid", "softmax",
            "log_loss", n_rows=1000 if q else 10000,
            description="predict on 10000x784 f32 rows, same net", quick=q)
    if name == "sgemm":
        return Workload("sgemm", "sgemm", n_rows=512 if q else 2048,
                        description="numpy float32 NxN matmul (the ceiling)", quick=q)
    raise KeyError(name)


TRAIN_WORKLOADS = ("xor", "clf", "digits", "mnist-shape")
PREDICT_WORKLOADS = ("predict-1", "predict-batch")
ALL_WORKLOADS = TRAIN_WORKLOADS + PREDICT_WORKLOADS + ("sgemm",)


def train_flops(wl: Workload, n_rows: int | None = None) -> float:
    """Floating-point operations of the three products of one epoch.

    forward X·W, weight gradient Aᵀ·Δ, back-propagated Δ·Wᵀ (not to the input).
    Elementwise work is not counted (it is small next to the products).
    """
    n = wl.n_rows if n_rows is None else n_rows
    sizes = list(zip(wl.layers[:-1], wl.layers[1:]))
    fwd = sum(a * b for a, b in sizes)
    back = sum(a * b for a, b in sizes[1:])
    return 2.0 * n * (2 * fwd + back) * wl.epochs


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


@dataclass
class Data:
    X: np.ndarray          # float64 (n, n_in)
    labels: np.ndarray     # int64 (n,) for softmax workloads, else None
    Y: np.ndarray          # float64 (n, n_out) targets: one-hot for softmax

    def cast(self, dtype):
        return np.ascontiguousarray(self.X, dtype=dtype), \
            np.ascontiguousarray(self.Y, dtype=dtype)


@functools.lru_cache(maxsize=8)
def make_data(name: str, quick: bool = False) -> Data:
    wl = get_workload(name, quick)
    if name == "xor":
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        Y = np.array([[0], [1], [1], [0]], dtype=np.float64)
        return Data(X, None, Y)
    if name == "clf":
        from sklearn.datasets import make_classification
        X, y = make_classification(n_samples=5000, n_features=20, n_informative=15,
                                   n_redundant=3, flip_y=0.05, class_sep=1.0,
                                   random_state=42)
        # the seed's 80/20 split, fixed: first 4000 rows train
        rng = np.random.RandomState(42)
        idx = rng.permutation(len(X))[:4000]
        return Data(np.ascontiguousarray(X[idx]), None,
                    y[idx].astype(np.float64).reshape(-1, 1))
    if name == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        X = d.data / 16.0
        labels = d.target.astype(np.int64)
        return Data(X, labels, one_hot(labels, 10))
    if name in ("mnist-shape", "predict-1", "predict-batch"):
        n = get_workload("mnist-shape", quick).n_rows if name == "mnist-shape" \
            else max(wl.n_rows, 1)
        rng = np.random.default_rng(1234 if name == "mnist-shape" else 99)
        X = rng.random((n, 784), dtype=np.float32)
        labels = rng.integers(0, 10, size=n).astype(np.int64)
        # kept float32 (not float64) so that a 60000x784 set costs 188 MB, not 376
        return Data(X, labels, one_hot(labels, 10, np.float32))
    raise KeyError(name)


def one_hot(labels, k, dtype=np.float64):
    Y = np.zeros((len(labels), k), dtype=dtype)
    Y[np.arange(len(labels)), labels] = 1
    return Y


def targets_for(system_dtype, wl: Workload, data: Data):
    """(X, Y) as a system takes them: softmax targets as int labels for fastmlp."""
    X, Y = data.cast(system_dtype)
    return X, Y


# --------------------------------------------------------------------------
# initial weights
# --------------------------------------------------------------------------


class Unavailable(ImportError):
    """A system that cannot run here (not installed, or not applicable)."""


def import_fastmlp():
    try:
        import fastmlp  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build
        raise Unavailable(f"fastmlp not importable: {exc!r}") from exc
    return fastmlp


def fastmlp_build_info():
    try:
        fm = import_fastmlp()
    except Unavailable as exc:
        return {"importable": False, "error": str(exc)}
    info = getattr(fm, "__build_info__", None)
    return {"importable": True, "version": getattr(fm, "__version__", "unknown"),
            "file": getattr(fm, "__file__", None),
            "build_info": info if info is not None else "unknown"}


def numpy_init(layers, seed=0):
    """Fallback initial weights (xavier: N(0, 1/n_in)), float64."""
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((a, b)) * math.sqrt(1.0 / a)
          for a, b in zip(layers[:-1], layers[1:])]
    bs = [np.zeros(b) for b in layers[1:]]
    return Ws, bs


@functools.lru_cache(maxsize=16)
def _initial_params(layers, hidden, output, loss, seed):
    try:
        fm = import_fastmlp()
        net = fm.Network(list(layers), activation=hidden, output=output, loss=loss,
                         l2=0.0, init="xavier", dtype="float64", seed=seed)
        Ws = [np.array(w, dtype=np.float64) for w in net.weights]
        bs = [np.array(b, dtype=np.float64).reshape(-1) for b in net.biases]
        return Ws, bs, "fastmlp.Network(init='xavier', seed=%d)" % seed
    except Unavailable:
        Ws, bs = numpy_init(layers, seed)
        return Ws, bs, "numpy xavier N(0,1/n_in), seed %d (fastmlp missing)" % seed


def initial_params(wl: Workload, seed=0):
    """(weights, biases, source): float64 copies every system starts from."""
    Ws, bs, src = _initial_params(tuple(wl.layers), wl.hidden, wl.output, wl.loss,
                                  seed)
    return [w.copy() for w in Ws], [b.copy() for b in bs], src


# --------------------------------------------------------------------------
# NumPy math (the seeds' way) — also the float64 oracle for --check
# --------------------------------------------------------------------------


def _act(Z, kind):
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-Z))
    if kind == "tanh":
        return np.tanh(Z)
    if kind == "relu":
        return np.maximum(Z, 0)
    if kind == "identity":
        return Z
    if kind == "softmax":
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    raise ValueError(kind)


def _dact_from_out(A, kind):
    if kind == "sigmoid":
        return A * (1.0 - A)
    if kind == "tanh":
        return 1.0 - A * A
    if kind == "relu":
        return (A > 0).astype(A.dtype)
    if kind == "identity":
        return np.ones_like(A)
    raise ValueError(kind)


def np_forward(Ws, bs, X, hidden, output):
    A = X
    L = len(Ws)
    with np.errstate(over="ignore"):
        for i, (W, b) in enumerate(zip(Ws, bs)):
            A = _act(A @ W + b, hidden if i < L - 1 else output)
    return A


def np_loss(Ws, bs, X, Y, wl: Workload):
    """The loss definitions of fastmlp, evaluated in float64."""
    Ws = [np.asarray(w, np.float64) for w in Ws]
    bs = [np.asarray(b, np.float64) for b in bs]
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    m = X.shape[0]
    P = np_forward(Ws, bs, X, wl.hidden, wl.output)
    if wl.loss == "squared_error":
        return float(0.5 * np.sum((Y - P) ** 2) / m)
    eps = 1e-300
    if wl.output == "softmax":
        return float(-np.sum(Y * np.log(np.maximum(P, eps))) / m)
    return float(-np.sum(Y * np.log(np.maximum(P, eps))
                         + (1 - Y) * np.log(np.maximum(1 - P, eps))) / m)


def batches(n, batch_size):
    if batch_size is None or batch_size >= n:
        return [(0, n)]
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def np_train(Ws, bs, X, Y, wl: Workload):
    """Plain NumPy SGD as the seeds write it: a Python loop per batch and layer."""
    L = len(Ws)
    hidden, output, loss, lr = wl.hidden, wl.output, wl.loss, wl.lr
    spans = batches(X.shape[0], wl.batch_size)
    with np.errstate(over="ignore"):
        for _ in range(wl.epochs):
            for s, e in spans:
                xb, yb = X[s:e], Y[s:e]
                m = e - s
                acts = [xb]
                for i in range(L):
                    acts.append(_act(acts[-1] @ Ws[i] + bs[i],
                                     hidden if i < L - 1 else output))
                P = acts[-1]
                if loss == "log_loss" or output == "identity":
                    delta = (P - yb) / m
                elif output == "sigmoid":
                    delta = (P - yb) * P * (1 - P) / m
                else:
                    raise NotImplementedError(f"{output} + {loss}")
                for i in range(L - 1, -1, -1):
                    gW = acts[i].T @ delta
                    gb = delta.sum(axis=0)
                    if i > 0:
                        delta = (delta @ Ws[i].T) * _dact_from_out(acts[i], hidden)
                    Ws[i] -= lr * gW
                    bs[i] -= lr * gb
    return Ws, bs


# --------------------------------------------------------------------------
# systems
# --------------------------------------------------------------------------

# name -> (dtype, module that must import, human description)
SYSTEMS = {
    "fastmlp-f32": ("float32", "fastmlp", "fastmlp.Network, float32"),
    "fastmlp-f64": ("float64", "fastmlp", "fastmlp.Network, float64"),
    "fastmlp-reference": ("float32", "fastmlp", "fastmlp.reference.Network, float32"),
    "numpy": ("float32", "numpy", "plain NumPy loops (seeds), float32"),
    "torch": ("float32", "torch", "PyTorch CPU eager, nn.Linear + autograd + optim.SGD"),
    "jax": ("float32", "jax", "JAX, whole training loop jitted (fori_loop + scan)"),
    "jax-f64": ("float64", "jax", "JAX as above, float64 (jax_enable_x64)"),
    "sklearn": ("float32", "sklearn", "scikit-learn MLPClassifier, solver sgd"),
    "onnxruntime": ("float32", "onnxruntime", "ONNX Runtime (Gemm+Sigmoid+Softmax)"),
}
DEFAULT_SYSTEMS = tuple(SYSTEMS)

# honest notes about where a peer does not do exactly the same thing
NOTES = {
    ("sklearn", "xor"): "MLPClassifier has no squared-error loss: trains with "
                        "log-loss (different trajectory; not comparable in --check)",
    ("sklearn", "*"): "computes the loss every batch and validates input per fit "
                      "(part of its public cost)",
    ("jax", "*"): "compile time reported apart, not in the median",
    ("jax-f64", "*"): "compile time reported apart, not in the median",
    ("onnxruntime", "train"): "inference only",
}


def system_dtype(system):
    return np.dtype(SYSTEMS[system][0])


def supports(system, wl: Workload):
    if wl.kind == "sgemm":
        return system == "numpy"
    if system == "onnxruntime":
        return wl.kind == "predict"
    if system == "jax-f64" and wl.kind == "predict":
        return False
    return True


class Trainer:
    """reset() restores the initial weights (untimed); run() trains (timed);
    params() returns the final weights and biases as float64 NumPy arrays."""

    compile_s = None
    note = ""

    def reset(self):
        pass

    def run(self):
        raise NotImplementedError

    def params(self):
        raise NotImplementedError

    def history_loss(self):
        return None


def _labels_or_onehot(wl, data, dtype):
    if wl.output == "softmax":
        return data.labels
    return np.ascontiguousarray(data.Y, dtype=dtype)


# ---- fastmlp ------------------------------------------------------------


class FastmlpTrainer(Trainer):
    def __init__(self, wl, data, init, dtype, reference=False):
        fm = import_fastmlp()
        cls = fm.reference.Network if reference else fm.Network
        self.wl = wl
        self.net = cls(list(wl.layers), activation=wl.hidden, output=wl.output,
                       loss=wl.loss, l2=0.0, init="xavier", dtype=str(dtype), seed=0)
        self.X = np.ascontiguousarray(data.X, dtype=dtype)
        self.Y = _labels_or_onehot(wl, data, dtype)
        self.W0, self.b0 = init
        self.hist = None
        self.reset()

    def reset(self):
        for w, w0 in zip(self.net.weights, self.W0):
            w[...] = w0.reshape(w.shape)
        for b, b0 in zip(self.net.biases, self.b0):
            b[...] = b0.reshape(b.shape)

    def run(self):
        self.hist = self.net.fit(self.X, self.Y, epochs=self.wl.epochs,
                                 learning_rate=self.wl.lr,
                                 batch_size=self.wl.batch_size, shuffle=False)

    def params(self):
        return ([np.array(w, np.float64) for w in self.net.weights],
                [np.array(b, np.float64).reshape(-1) for b in self.net.biases])

    def history_loss(self):
        h = getattr(self.hist, "loss", None)
        return float(h[-1]) if h else None


class FastmlpPredictor:
    def __init__(self, wl, Ws, bs, dtype, reference=False):
        fm = import_fastmlp()
        cls = fm.reference.Network if reference else fm.Network
        self.net = cls(list(wl.layers), activation=wl.hidden, output=wl.output,
                       loss=wl.loss, l2=0.0, init="xavier", dtype=str(dtype), seed=0)
        for w, w0 in zip(self.net.weights, Ws):
            w[...] = w0
        for b, b0 in zip(self.net.biases, bs):
            b[...] = b0.reshape(b.shape)
        self.predict = self.net.predict

    def __call__(self, X):
        return self.net.predict(X)


# ---- numpy ------------------------------------------------------------


class NumpyTrainer(Trainer):
    def __init__(self, wl, data, init, dtype):
        self.wl = wl
        self.dtype = dtype
        self.X = np.ascontiguousarray(data.X, dtype=dtype)
        self.Y = np.ascontiguousarray(data.Y, dtype=dtype)
        self.W0, self.b0 = init
        self.reset()

    def reset(self):
        self.Ws = [w.astype(self.dtype) for w in self.W0]
        self.bs = [b.astype(self.dtype) for b in self.b0]

    def run(self):
        np_train(self.Ws, self.bs, self.X, self.Y, self.wl)

    def params(self):
        return [w.astype(np.float64) for w in self.Ws], \
            [b.astype(np.float64) for b in self.bs]


class NumpyPredictor:
    def __init__(self, wl, Ws, bs, dtype):
        self.wl = wl
        self.Ws = [np.ascontiguousarray(w, dtype) for w in Ws]
        self.bs = [np.ascontiguousarray(b, dtype) for b in bs]

    def __call__(self, X):
        return np_forward(self.Ws, self.bs, X, self.wl.hidden, self.wl.output)


# ---- torch ------------------------------------------------------------


def import_torch():
    try:
        import torch
    except Exception as exc:
        raise Unavailable(f"torch not importable: {exc!r}") from exc
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _torch_act(torch, kind):
    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
            "identity": lambda z: z}[kind]


class TorchTrainer(Trainer):
    def __init__(self, wl, data, init, dtype):
        torch = self.torch = import_torch()
        import torch.nn.functional as F
        self.F = F
        self.wl = wl
        tdt = {np.dtype("float32"): torch.float32,
               np.dtype("float64"): torch.float64}[np.dtype(dtype)]
        self.lins = torch.nn.ModuleList(
            torch.nn.Linear(a, b, dtype=tdt) for a, b in zip(wl.layers[:-1],
                                                              wl.layers[1:]))
        self.act = _torch_act(torch, wl.hidden)
        self.X = torch.from_numpy(np.ascontiguousarray(data.X, dtype=dtype))
        if wl.output == "softmax" and wl.loss == "log_loss":
            self.Y = torch.from_numpy(data.labels)
        else:
            self.Y = torch.from_numpy(np.ascontiguousarray(data.Y, dtype=dtype))
        self.spans = batches(len(data.X), wl.batch_size)
        self.batches = [(self.X[s:e], self.Y[s:e]) for s, e in self.spans]
        self.opt = torch.optim.SGD(self.lins.parameters(), lr=wl.lr, momentum=0.0,
                                   weight_decay=0.0)
        self.W0, self.b0 = init
        self.reset()

    def reset(self):
        with self.torch.no_grad():
            for lin, w, b in zip(self.lins, self.W0, self.b0):
                lin.weight.copy_(self.torch.from_numpy(np.ascontiguousarray(w.T)))
                lin.bias.copy_(self.torch.from_numpy(b))

    def _loss(self, xb, yb):
        F, wl = self.F, self.wl
        h = xb
        for lin in self.lins[:-1]:
            h = self.act(lin(h))
        z = self.lins[-1](h)
        m = xb.shape[0]
        if wl.output == "softmax" and wl.loss == "log_loss":
            return F.cross_entropy(z, yb)
        if wl.output == "sigmoid" and wl.loss == "log_loss":
            return F.binary_cross_entropy_with_logits(z, yb, reduction="sum") / m
        p = self.torch.sigmoid(z) if wl.output == "sigmoid" else z
        return 0.5 * ((p - yb) ** 2).sum() / m

    def run(self):
        opt, lossf = self.opt, self._loss
        for _ in range(self.wl.epochs):
            for xb, yb in self.batches:
                opt.zero_grad(set_to_none=True)
                lossf(xb, yb).backward()
                opt.step()

    def params(self):
        return ([lin.weight.detach().numpy().T.astype(np.float64) for lin in self.lins],
                [lin.bias.detach().numpy().astype(np.float64) for lin in self.lins])


class TorchPredictor:
    def __init__(self, wl, Ws, bs, dtype):
        torch = self.torch = import_torch()
        self.lins = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(wl.layers[:-1], wl.layers[1:]))
        with torch.no_grad():
            for lin, w, b in zip(self.lins, Ws, bs):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T, dtype)))
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b, dtype)))
        self.act = _torch_act(torch, wl.hidden)
        self.out = wl.output

    def __call__(self, X):
        torch = self.torch
        with torch.inference_mode():
            h = torch.from_numpy(X)
            for lin in self.lins[:-1]:
                h = self.act(lin(h))
            z = self.lins[-1](h)
            if self.out == "softmax":
                z = torch.softmax(z, dim=1)
            elif self.out == "sigmoid":
                z = torch.sigmoid(z)
            return z.numpy()


# ---- jax ------------------------------------------------------------


def import_jax():
    try:
        import jax
        jax.config.update("jax_enable_x64", True)  # explicit dtypes everywhere
        import jax.numpy as jnp
    except Exception as exc:
        raise Unavailable(f"jax not importable: {exc!r}") from exc
    return jax, jnp


def _jax_forward_logits(jax, jnp, params, x, hidden):
    act = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu,
           "identity": lambda z: z}[hidden]
    h = x
    for W, b in params[:-1]:
        h = act(h @ W + b)
    W, b = params[-1]
    return h @ W + b


def jax_loss_fn(jax, jnp, hidden, output, loss):
    """loss(params, x, y): the batch mean of the workload's loss, from the logits."""
    def loss_fn(params, x, y):
        z = _jax_forward_logits(jax, jnp, params, x, hidden)
        m = x.shape[0]
        if output == "softmax" and loss == "log_loss":
            return -jnp.sum(y * jax.nn.log_softmax(z, axis=1)) / m
        if output == "sigmoid" and loss == "log_loss":
            return -jnp.sum(y * jax.nn.log_sigmoid(z)
                            + (1 - y) * jax.nn.log_sigmoid(-z)) / m
        p = jax.nn.sigmoid(z) if output == "sigmoid" else z
        return 0.5 * jnp.sum((p - y) ** 2) / m
    return loss_fn


def jax_batches(data, batch_size, dtype):
    """(Xb, Yb, Xr, Yr): the full batches stacked for ``lax.scan`` (nb, bsz, .),
    and the remainder batch (possibly 0 rows), in order."""
    n = data.X.shape[0]
    bsz = batch_size if batch_size and batch_size < n else n
    nb = n // bsz
    X = np.ascontiguousarray(data.X, dtype=dtype)
    Y = np.ascontiguousarray(data.Y, dtype=dtype)
    full = nb * bsz
    Xb = X[:full].reshape(nb, bsz, X.shape[1])
    Yb = Y[:full].reshape(nb, bsz, Y.shape[1])
    return Xb, Yb, X[full:], Y[full:]


class JaxTrainer(Trainer):
    note = ""

    def __init__(self, wl, data, init, dtype):
        jax, jnp = self.jax, self.jnp = import_jax()
        self.wl = wl
        self.dtype = np.dtype(dtype)
        lax = jax.lax
        hidden, output, loss, lr, epochs = (wl.hidden, wl.output, wl.loss, wl.lr,
                                            wl.epochs)
        lr = self.dtype.type(lr)

        grad = jax.grad(jax_loss_fn(jax, jnp, hidden, output, loss))

        def step(params, x, y):
            g = grad(params, x, y)
            return jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g)

        Xb, Yb, Xr, Yr = jax_batches(data, wl.batch_size, dtype)
        nb, rem = Xb.shape[0], Xr.shape[0]

        def train(params, Xb, Yb, Xr, Yr):
            def one_epoch(_, p):
                if nb == 1:
                    p = step(p, Xb[0], Yb[0])
                else:
                    p, _ = lax.scan(lambda q, xy: (step(q, xy[0], xy[1]), None),
                                    p, (Xb, Yb))
                if rem:
                    p = step(p, Xr, Yr)
                return p
            return lax.fori_loop(0, epochs, one_epoch, params)

        self.args = tuple(jax.device_put(a) for a in (Xb, Yb, Xr, Yr))
        self.p0 = [(jax.device_put(np.asarray(w, dtype)),
                    jax.device_put(np.asarray(b, dtype))) for w, b in zip(*init)]
        import time
        t0 = time.perf_counter()
        self.compiled = jax.jit(train).lower(self.p0, *self.args).compile()
        self.compile_s = time.perf_counter() - t0
        self.out = None

    def run(self):
        self.out = self.compiled(self.p0, *self.args)
        self.jax.block_until_ready(self.out)

    def params(self):
        return ([np.asarray(w, np.float64) for w, _ in self.out],
                [np.asarray(b, np.float64) for _, b in self.out])


class JaxPredictor:
    def __init__(self, wl, Ws, bs, dtype):
        jax, jnp = import_jax()
        self.params = [(jax.device_put(np.asarray(w, dtype)),
                        jax.device_put(np.asarray(b, dtype))) for w, b in zip(Ws, bs)]
        hidden, output = wl.hidden, wl.output

        @jax.jit
        def fwd(params, x):
            z = _jax_forward_logits(jax, jnp, params, x, hidden)
            if output == "softmax":
                return jax.nn.softmax(z, axis=1)
            if output == "sigmoid":
                return jax.nn.sigmoid(z)
            return z
        self.fwd = fwd

    def __call__(self, X):
        return np.asarray(self.fwd(self.params, X))


# ---- scikit-learn ------------------------------------------------------


def import_sklearn():
    try:
        from sklearn.neural_network import MLPClassifier
    except Exception as exc:
        raise Unavailable(f"scikit-learn not importable: {exc!r}") from exc
    return MLPClassifier


def _sk_activation(kind):
    return {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu",
            "identity": "identity"}[kind]


def _sk_model(wl, n_rows, max_iter):
    MLPClassifier = import_sklearn()
    return MLPClassifier(
        hidden_layer_sizes=tuple(wl.layers[1:-1]), activation=_sk_activation(wl.hidden),
        solver="sgd", alpha=0.0, batch_size=wl.batch_size or n_rows,
        learning_rate="constant", learning_rate_init=wl.lr, max_iter=max_iter,
        shuffle=False, random_state=0, tol=1e-12, verbose=False, warm_start=True,
        momentum=0.0, nesterovs_momentum=False, early_stopping=False,
        n_iter_no_change=max_iter + 10)


class SklearnTrainer(Trainer):
    def __init__(self, wl, data, init, dtype):
        from sklearn.exceptions import ConvergenceWarning
        self.CW = ConvergenceWarning
        self.wl = wl
        if wl.output == "softmax":
            self.y = data.labels
        else:
            if wl.layers[-1] != 1:
                raise Unavailable("sklearn: multi-output sigmoid not mapped")
            self.y = data.Y.reshape(-1).astype(np.int64)
        self.X = np.ascontiguousarray(data.X, dtype=dtype)
        self.dtype = dtype
        self.model = _sk_model(wl, len(self.X), wl.epochs)
        # one untimed 1-iteration fit sets classes_, layer sizes, etc.
        self.model.set_params(max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(self.X, self.y)
        self.model.set_params(max_iter=wl.epochs)
        expect = ("softmax" if wl.output == "softmax" else "logistic")
        if self.model.out_activation_ != expect:
            raise Unavailable(f"sklearn output {self.model.out_activation_} != {expect}")
        self.W0, self.b0 = init
        self.reset()

    def reset(self):
        m = self.model
        m.coefs_ = [w.astype(self.dtype) for w in self.W0]
        m.intercepts_ = [b.astype(self.dtype) for b in self.b0]
        m.loss_curve_ = []
        m._no_improvement_count = 0
        m.best_loss_ = np.inf

    def run(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", self.CW)
            self.model.fit(self.X, self.y)

    def params(self):
        return ([w.astype(np.float64) for w in self.model.coefs_],
                [b.astype(np.float64) for b in self.model.intercepts_])

    def history_loss(self):
        return float(self.model.loss_curve_[-1]) if self.model.loss_curve_ else None


class SklearnPredictor:
    def __init__(self, wl, Ws, bs, dtype):
        from sklearn.exceptions import ConvergenceWarning
        k = wl.layers[-1]
        rng = np.random.default_rng(0)
        X = rng.random((max(k, 20), wl.layers[0])).astype(dtype)
        model = _sk_model(wl, len(X), 1)
        y = np.arange(len(X)) % k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        model.coefs_ = [np.ascontiguousarray(w, dtype) for w in Ws]
        model.intercepts_ = [np.ascontiguousarray(b, dtype) for b in bs]
        self.model = model

    def __call__(self, X):
        return self.model.predict_proba(X)


# ---- onnxruntime --------------------------------------------------------


def build_onnx_model(wl, Ws, bs, dtype=np.float32):
    """The network as an ONNX graph: Gemm + activation per layer, Softmax out."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except Exception as exc:
        raise Unavailable(f"onnx not importable: {exc!r}") from exc
    nodes, inits = [], []
    act_op = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
    prev = "X"
    L = len(Ws)
    for i, (W, b) in enumerate(zip(Ws, bs)):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(W, dtype), f"W{i}"))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b, dtype), f"b{i}"))
        z = f"Z{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [z]))
        kind = wl.hidden if i < L - 1 else wl.output
        out = "P" if i == L - 1 else f"A{i}"
        if kind == "softmax":
            nodes.append(helper.make_node("Softmax", [z], [out], axis=1))
        elif kind == "identity":
            nodes.append(helper.make_node("Identity", [z], [out]))
        else:
            nodes.append(helper.make_node(act_op[kind], [z], [out]))
        prev = out
    graph = helper.make_graph(
        nodes, "fastmlp_mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", wl.layers[0]])],
        [helper.make_tensor_value_info("P", TensorProto.FLOAT, ["N", wl.layers[-1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fastmlp-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class OnnxPredictor:
    def __init__(self, wl, Ws, bs, dtype):
        try:
            import onnxruntime as ort
        except Exception as exc:
            raise Unavailable(f"onnxruntime not importable: {exc!r}") from exc
        model = build_onnx_model(wl, Ws, bs)
        so = ort.SessionOptions()
        so.intra_op_num_threads = os.cpu_count() or 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(model.SerializeToString(), so,
                                         providers=["CPUExecutionProvider"])
        self.run = self.sess.run

    def __call__(self, X):
        return self.sess.run(None, {"X": X})[0]


# ---- factories --------------------------------------------------------


def make_trainer(system, wl: Workload, data: Data = None, init=None):
    if system not in SYSTEMS:
        raise KeyError(system)
    if not supports(system, wl) or wl.kind != "train":
        raise Unavailable(f"{system} does not run {wl.name}")
    data = make_data(wl.name, wl.quick) if data is None else data
    if init is None:
        Ws, bs, _ = initial_params(wl)
        init = (Ws, bs)
    dt = system_dtype(system)
    if system in ("fastmlp-f32", "fastmlp-f64"):
        return FastmlpTrainer(wl, data, init, dt)
    if system == "fastmlp-reference":
        return FastmlpTrainer(wl, data, init, dt, reference=True)
    if system == "numpy":
        return NumpyTrainer(wl, data, init, dt)
    if system == "torch":
        return TorchTrainer(wl, data, init, dt)
    if system in ("jax", "jax-f64"):
        return JaxTrainer(wl, data, init, dt)
    if system == "sklearn":
        return SklearnTrainer(wl, data, init, dt)
    raise Unavailable(f"{system} does not train")


def make_predictor(system, wl: Workload, Ws, bs):
    if system not in SYSTEMS:
        raise KeyError(system)
    if not supports(system, wl):
        raise Unavailable(f"{system} does not run {wl.name}")
    dt = system_dtype(system)
    if system in ("fastmlp-f32", "fastmlp-f64"):
        return FastmlpPredictor(wl, Ws, bs, dt)
    if system == "fastmlp-reference":
        return FastmlpPredictor(wl, Ws, bs, dt, reference=True)
    if system == "numpy":
        return NumpyPredictor(wl, Ws, bs, dt)
    if system == "torch":
        return TorchPredictor(wl, Ws, bs, dt)
    if system == "jax":
        return JaxPredictor(wl, Ws, bs, dt)
    if system == "sklearn":
        return SklearnPredictor(wl, Ws, bs, dt)
    if system == "onnxruntime":
        return OnnxPredictor(wl, Ws, bs, dt)
    raise Unavailable(system)


@functools.lru_cache(maxsize=2)
def predict_model(quick=False):
    """The 'trained 784-256-128-10 float32 network' of the predict workloads:
    one epoch of mnist-shape from the common initial weights, trained by
    fastmlp float32 if importable, else by the NumPy peer. Returns
    (weights, biases, trained_by) in float32."""
    wl = get_workload("mnist-shape", quick)
    data = make_data("mnist-shape", quick)
    try:
        tr = make_trainer("fastmlp-f32", wl)
        by = "fastmlp-f32"
    except Unavailable:
        tr = make_trainer("numpy", wl)
        by = "numpy"
    tr.run()
    Ws, bs = tr.params()
    return ([w.astype(np.float32) for w in Ws], [b.astype(np.float32) for b in bs], by)


def predict_input(wl: Workload):
    data = make_data(wl.name, wl.quick)
    return np.ascontiguousarray(data.X[: wl.n_rows], dtype=np.float32)


def sgemm_runner(n):
    rng = np.random.default_rng(0)
    A = rng.random((n, n), dtype=np.float32)
    B = rng.random((n, n), dtype=np.float32)
    C = np.empty((n, n), dtype=np.float32)

    def run():
        np.matmul(A, B, out=C)
    return run, 2.0 * n ** 3


def _owner(path):
    for key in ("numpy", "scipy", "torch", "jaxlib", "sklearn"):
        if f"/{key}" in path or f"{key}.libs" in path:
            return key
    return "?"


def blas_info():
    try:
        from threadpoolctl import threadpool_info
        return [dict({k: d.get(k) for k in ("user_api", "internal_api", "version",
                                            "num_threads", "architecture",
                                            "threading_layer")},
                     library=os.path.basename(d.get("filepath") or "?"),
                     loaded_by=_owner(d.get("filepath") or ""))
                for d in threadpool_info()]
    except Exception as exc:  # threadpoolctl missing
        return [{"error": f"threadpoolctl unavailable: {exc!r}"}]
