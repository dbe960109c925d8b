"""The cells of the configuration matrix (issue 23) and their synthetic data.

A cell is one network, one optimizer, one batch size and one dtype, trained
for a few epochs on synthetic data (training cells), or one network's
``predict`` on 1 or 10 000 rows (predict cells). Its attributes carry the
names ``peers.py``'s trainers and predictors read (``layers``, ``hidden``,
``output``, ``loss``, ``lr``, ``batch_size``, ``epochs``, ``n_rows``), so those
classes serve the matrix too.

The factors and their values, each met by several cells (``coverage``):

    activation  sigmoid, tanh, relu
    optimizer   sgd, momentum (plain or Nesterov), adam
    output      sigmoid+log, softmax+log, identity+squared
    shape       narrow (every layer <= 64 wide), medium, wide (a layer >= 1024),
                deep (>= 5 hidden layers)
    batch       1, 2-64, 65-1024, >= 4096, full
    dtype       float32, float64
"""
from __future__ import annotations

import dataclasses
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

import peers

OUTPUT_LOSS = {"sigmoid+log": ("sigmoid", "log_loss"),
               "softmax+log": ("softmax", "log_loss"),
               "identity+squared": ("identity", "squared_error")}

FACTORS = {
    "activation": ("sigmoid", "tanh", "relu"),
    "optimizer": ("sgd", "momentum", "adam"),
    "output": tuple(OUTPUT_LOSS),
    "shape": ("narrow", "medium", "wide", "deep"),
    "batch": ("1", "2-64", "65-1024", ">=4096", "full"),
    "dtype": ("float32", "float64"),
}

# learning rates: small enough that no cell diverges in its few epochs
LR = {"sgd": 0.05, "momentum": 0.01, "adam": 1e-3}
LR_ONLINE = {"sgd": 0.01, "momentum": 0.002, "adam": 1e-4}


@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix (a training fit or a predict call)."""

    name: str
    kind: str                  # "train" | "predict"
    layers: tuple
    hidden: str
    out: str                   # a key of OUTPUT_LOSS
    optimizer: str = "sgd"     # "sgd" | "momentum" | "adam"
    nesterov: bool = False
    batch_size: int | None = None   # None: full batch
    dtype: str = "float32"
    n_rows: int = 1000         # training rows, or rows per predict call
    epochs: int = 1
    issue: bool = False        # one of issue 23's example configurations
    quick: bool = False

    # -- the attribute names peers.py's classes read --------------------------
    @property
    def output(self):
        return OUTPUT_LOSS[self.out][0]

    @property
    def loss(self):
        return OUTPUT_LOSS[self.out][1]

    @property
    def lr(self):
        table = LR_ONLINE if self.batch_size == 1 else LR
        return table[self.optimizer]

    @property
    def momentum(self):
        return 0.9 if self.optimizer == "momentum" else 0.0

    @property
    def n_classes(self):
        return self.layers[-1]

    # -- description ----------------------------------------------------------
    @property
    def optimizer_label(self):
        if self.optimizer == "momentum":
            return "nesterov 0.9" if self.nesterov else "momentum 0.9"
        return self.optimizer

    @property
    def description(self):
        arch = "-".join(str(n) for n in self.layers)
        if self.kind == "predict":
            return f"{arch} {self.hidden} {self.out}, predict {self.n_rows} rows"
        batch = "full batch" if self.batch_size is None else f"batch {self.batch_size}"
        return (f"{arch} {self.hidden} {self.out}, {self.optimizer_label}, {batch}, "
                f"{self.dtype}, {self.n_rows} rows x "
                f"{self.epochs} epochs")

    def factors(self):
        """The cell's value of every factor (training cells)."""
        return {"activation": self.hidden, "optimizer": self.optimizer,
                "output": self.out, "shape": shape_class(self.layers),
                "batch": batch_class(self.batch_size), "dtype": self.dtype}


def shape_class(layers):
    """narrow / medium / wide / deep, by the hidden layers' count and widths."""
    hidden = layers[1:-1]
    if len(hidden) >= 5:
        return "deep"
    if max(layers) >= 1024:
        return "wide"
    if max(hidden, default=0) <= 64 and layers[0] <= 64:
        return "narrow"
    return "medium"


def batch_class(batch_size):
    """The batch factor's bin of a batch size (None: full batch)."""
    if batch_size is None:
        return "full"
    if batch_size == 1:
        return "1"
    if batch_size <= 64:
        return "2-64"
    if batch_size <= 1024:
        return "65-1024"
    if batch_size >= 4096:
        return ">=4096"
    return "1025-4095"


def _t(name, layers, hidden, out, optimizer, batch, dtype, rows, epochs,
       nesterov=False, issue=False):
    return Cell(name, "train", tuple(layers), hidden, out, optimizer, nesterov, batch,
                dtype, rows, epochs, issue)


def _deep(n_in, width, depth, n_out):
    return (n_in,) + (width,) * depth + (n_out,)


S, L, Q = "sigmoid+log", "softmax+log", "identity+squared"
F32, F64 = "float32", "float64"

TRAIN_CELLS = (
    # issue 23's six examples
    _t("tab-tanh-mom", (8, 64, 64, 1), "tanh", Q, "momentum", 32, F32, 4000, 5,
       issue=True),
    _t("med-tanh-sgd-b100-f64", (50, 100, 3), "tanh", L, "sgd", 100, F64, 4000, 5,
       issue=True),
    _t("wide-relu-adam", (1024, 1024, 1024, 10), "relu", L, "adam", 128, F32, 2048, 1,
       issue=True),
    _t("med-relu-adam-sq", (256, 512, 256, 1), "relu", Q, "adam", 64, F32, 4096, 1,
       issue=True),
    _t("online-relu", (20, 32, 1), "relu", S, "sgd", 1, F32, 500, 2, issue=True),
    _t("med-relu-adam-4096", (64, 512, 2), "relu", L, "adam", 4096, F32, 16384, 2,
       issue=True),
    # narrow tabular
    _t("tab-sig-sgd-full", (20, 16, 16, 1), "sigmoid", S, "sgd", None, F32, 4000, 50),
    _t("tab-sig-adam-full-f64", (30, 64, 1), "sigmoid", Q, "adam", None, F64, 4000, 20),
    _t("tab-relu-nest-b1-f64", (10, 64, 64, 1), "relu", Q, "momentum", 1, F64, 400, 1,
       nesterov=True),
    _t("tab-sig-mom-b1", (16, 32, 3), "sigmoid", L, "momentum", 1, F32, 400, 1),
    _t("tab-relu-adam-8192", (32, 64, 64, 1), "relu", Q, "adam", 8192, F32, 32768, 2),
    _t("tab-tanh-sgd-b32-f64", (64, 32, 10), "tanh", L, "sgd", 32, F64, 4000, 3),
    # medium
    _t("med-sig-sgd-b128", (784, 256, 10), "sigmoid", L, "sgd", 128, F32, 8192, 1),
    _t("med-tanh-adam-b256-f64", (100, 256, 256, 1), "tanh", S, "adam", 256, F64, 8192, 1),
    _t("med-sig-mom-4096-f64", (200, 128, 128, 10), "sigmoid", L, "momentum", 4096, F64,
       8192, 2),
    _t("med-tanh-nest-full", (128, 256, 1), "tanh", Q, "momentum", None, F32, 4096, 10,
       nesterov=True),
    _t("med-relu-mom-b1-f64", (100, 128, 10), "relu", L, "momentum", 1, F64, 300, 1),
    # wide
    _t("wide-tanh-sgd-b512", (512, 1024, 10), "tanh", L, "sgd", 512, F32, 8192, 1),
    _t("wide-sig-mom-b32-f64", (256, 1024, 1), "sigmoid", S, "momentum", 32, F64, 2048, 1),
    _t("wide-relu-sgd-4096", (784, 1024, 10), "relu", L, "sgd", 4096, F32, 8192, 1),
    _t("wide-tanh-adam-full-f64", (64, 1024, 1024, 1), "tanh", Q, "adam", None, F64,
       1024, 3),
    # deep
    _t("deep-relu-adam-b32", _deep(32, 64, 6, 1), "relu", S, "adam", 32, F32, 4000, 2),
    _t("deep-tanh-mom-b256", _deep(100, 256, 5, 10), "tanh", L, "momentum", 256, F32,
       8192, 1),
    _t("deep-sig-sgd-full-f64", _deep(20, 32, 6, 1), "sigmoid", Q, "sgd", None, F64,
       4000, 20),
    _t("deep-relu-nest-4096-f64", _deep(64, 128, 5, 1), "relu", S, "momentum", 4096, F64,
       8192, 2, nesterov=True),
    _t("deep-relu-sgd-b1", _deep(16, 32, 5, 3), "relu", L, "sgd", 1, F32, 300, 1),
)

PREDICT_CELLS = (
    Cell("pred-relu-1", "predict", (784, 512, 256, 10), "relu", L, n_rows=1),
    Cell("pred-relu-10k", "predict", (784, 512, 256, 10), "relu", L, n_rows=10000),
    Cell("pred-tanh-1", "predict", (100, 256, 256, 1), "tanh", Q, n_rows=1),
    Cell("pred-tanh-10k", "predict", (100, 256, 256, 1), "tanh", Q, n_rows=10000),
)

CELLS = TRAIN_CELLS + PREDICT_CELLS
CELL_NAMES = tuple(c.name for c in CELLS)


def get_cell(name, quick=False):
    """The named cell; ``quick`` shrinks a training cell to a smoke run."""
    cell = {c.name: c for c in CELLS}[name]
    if not quick or cell.kind != "train":
        return dataclasses.replace(cell, quick=quick)
    rows = max(cell.n_rows // 8, min(cell.batch_size or 64, cell.n_rows), 32)
    return dataclasses.replace(cell, n_rows=rows, epochs=1, quick=True)


def coverage(cells=TRAIN_CELLS):
    """{factor: Counter(value -> cells)} over the training cells."""
    counts = {f: Counter() for f in FACTORS}
    for c in cells:
        for f, v in c.factors().items():
            counts[f][v] += 1
    return counts


def macs_per_row(layers):
    """Multiply-adds of one row's forward pass."""
    return sum(a * b for a, b in zip(layers[:-1], layers[1:]))


def flops(cell):
    """Work of a cell: forward + backward ~ 3 x 2 x MACs a row an epoch
    (training), 2 x MACs a row (predict). The training count includes the
    product back to the input, which no system computes: it overstates the
    work of a net whose first layer dominates."""
    per_row = 2.0 * macs_per_row(cell.layers)
    if cell.kind == "predict":
        return per_row * cell.n_rows
    return 3.0 * per_row * cell.n_rows * cell.epochs


def _seed(cell):
    return zlib.crc32(cell.name.encode())


def make_data(cell):
    """Synthetic standardised inputs and learnable targets for the cell's output:
    class labels from a random linear map (softmax / sigmoid), or a smooth
    function of one (identity). Returns a ``peers.Data`` in float64."""
    rng = np.random.default_rng(_seed(cell))
    n_in, n_out = cell.layers[0], cell.layers[-1]
    X = rng.standard_normal((cell.n_rows, n_in))
    proj = X @ rng.standard_normal((n_in, max(n_out, 1))) / np.sqrt(n_in)
    if cell.out == "softmax+log":
        labels = np.argmax(proj, axis=1).astype(np.int64)
        k = min(n_out, cell.n_rows)
        labels[:k] = np.arange(k)  # every class present (sklearn's classes_)
        return peers.Data(X, labels, peers.one_hot(labels, n_out))
    if cell.out == "sigmoid+log":
        Y = (proj > 0).astype(np.float64)
        return peers.Data(X, None, Y)
    Y = np.tanh(proj) + 0.1 * rng.standard_normal(proj.shape)
    return peers.Data(X, None, Y)
