"""The distributed-fit cases: shared by the ranks (mpi_rank_equivalence.py) and the
test that rebuilds each case in one process (test_distributed.py).

Each case is a network, fit settings and shard sizes per rank count; the
global data set is the ranks' shards concatenated in rank order.
"""
import numpy as np

import fastmlp

# uneven shards: with batches of 4, rank 0 needs 3 steps an epoch, the last rank 1 or 2
UNEVEN = {1: [11], 2: [11, 6], 3: [11, 7, 3]}
EVEN = {1: [8], 2: [8, 8], 3: [8, 8, 8]}
N_IN, N_OUT = 5, 3


def _cases():
    optimizers = {
        "sgd": dict(optimizer="sgd", learning_rate=0.2),
        "momentum": dict(optimizer="sgd", momentum=0.9, learning_rate=0.05, clip_norm=0.3),
        "nesterov": dict(optimizer="sgd", momentum=0.8, nesterov=True, learning_rate=0.05),
        "adam": dict(optimizer="adam", learning_rate=0.02, clip_norm=0.5),
    }
    cases = {}
    for dtype in ("float64", "float32"):
        for name, fit in optimizers.items():
            cases[f"{dtype}-{name}"] = dict(
                dtype=dtype, net=dict(l2=0.05, l1=0.01), shards=UNEVEN, weights=True,
                fit=dict(fit, epochs=4, batch_size=4, shuffle=False))
    cases["float64-shuffled"] = dict(
        dtype="float64", net=dict(l2=0.02), shards=UNEVEN, weights=False,
        fit=dict(optimizer="sgd", momentum=0.5, learning_rate=0.1, epochs=4, batch_size=4,
                 shuffle=True))
    cases["float64-full-batch"] = dict(
        dtype="float64", net=dict(l1=0.02), shards=UNEVEN, weights=True,
        fit=dict(optimizer="adam", learning_rate=0.05, epochs=5, batch_size=None))
    # even shards: the single-process run is Network.fit on reordered rows
    cases["float64-plateau-validation"] = dict(
        dtype="float64", net=dict(l2=0.01), shards=EVEN, weights=True, validation=True,
        fit=dict(optimizer="sgd", learning_rate=3.0, epochs=12, batch_size=3, shuffle=False,
                 schedule="plateau", patience=1, tol=0.0))
    cases["float64-validation-early"] = dict(
        dtype="float64", net=dict(l1=0.01), shards=EVEN, weights=False, validation=True,
        fit=dict(optimizer="sgd", momentum=0.9, learning_rate=0.5, epochs=15, batch_size=3,
                 shuffle=False, early_stopping=True, patience=2))
    cases["float32-invscaling-early"] = dict(
        dtype="float32", net=dict(), shards=EVEN, weights=False,
        fit=dict(optimizer="adam", learning_rate=0.05, epochs=8, batch_size=3, shuffle=False,
                 schedule="invscaling", power_t=0.3, early_stopping=True, patience=2))
    # local SGD: k = 1 with plain SGD and no penalty is the synchronous fit
    cases["float64-local-1"] = dict(
        dtype="float64", net=dict(), shards=UNEVEN, weights=True,
        fit=dict(optimizer="sgd", learning_rate=0.2, epochs=4, batch_size=4, shuffle=False,
                 average_every=1))
    cases["float32-local-3"] = dict(
        dtype="float32", net=dict(), shards=UNEVEN, weights=False, compare=False,
        fit=dict(optimizer="adam", learning_rate=0.02, epochs=6, batch_size=2, shuffle=True,
                 average_every=3))
    return cases


CASES = _cases()


def network(case):
    """The case's network, freshly initialised (the same on every rank)."""
    return fastmlp.Network([N_IN, 6, N_OUT], activation="tanh", output="softmax",
                           loss="log_loss", dtype=case["dtype"], seed=3, **case["net"])


def data(case, p):
    """Global (X, y, w, X_val, y_val) and the shards' row offsets for p ranks."""
    sizes = case["shards"][p]
    n = sum(sizes)
    rng = np.random.default_rng(len(sizes) * 100 + n)
    X = rng.normal(size=(n, N_IN))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    w = rng.uniform(0.5, 1.5, size=n) if case["weights"] else None
    Xv = rng.normal(size=(2 * len(sizes), N_IN))
    yv = (Xv[:, 0] > 0).astype(int) + (Xv[:, 1] > 0.5).astype(int)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return X, y, w, Xv, yv, offsets


def rank_args(case, p, rank):
    """What rank ``rank`` of ``p`` passes to distributed.fit: X, y and keyword arguments."""
    X, y, w, Xv, yv, off = data(case, p)
    rows = slice(off[rank], off[rank + 1])
    kwargs = dict(case["fit"])
    if w is not None:
        kwargs["sample_weight"] = w[rows]
    if case.get("validation"):
        kwargs["validation_data"] = (Xv[2 * rank:2 * rank + 2], yv[2 * rank:2 * rank + 2])
    return X[rows], y[rows], kwargs
