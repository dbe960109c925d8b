"""Sparse X (issue 25): fastmlp's sparse fits (step "sparse", and the other
steps on batches densified as they are gathered) against fastmlp on the
densified array and scikit-learn's MLPClassifier on the same sparse X, at
densities 0.1% to 10%: where step "sparse" stops winning sets SPARSE_MAX_DENSITY.

    python bench/sparse_input.py [--rows 20000] [--features 5000] [--repeats 3]
"""
import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp

import fastmlp
from fastmlp import _kernels


def sparse_data(rows, features, density, dtype, seed=0):
    """A CSR X of about ``density`` and labels of 2 classes (a random linear rule)."""
    rng = np.random.default_rng(seed)
    per = max(1, int(round(features * density)))
    indices = np.sort(rng.integers(0, features, (rows, per)), axis=1)   # (repeats summed below)
    X = sp.csr_matrix((rng.standard_normal(rows * per).astype(dtype), indices.ravel(),
                       np.arange(rows + 1) * per), shape=(rows, features))
    X.sum_duplicates()
    w = rng.standard_normal(features)
    y = (X @ w > 0).astype(int)
    return X, y


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


GATHER = ("layers", "rows", "units", "first", "narrow")      # every step but "sparse"


def fits(rows, features, density, hidden, epochs, repeats, dtype, with_sklearn=True):
    """Seconds (best of ``repeats``) of the fits, adam, batch 200 (sklearn's auto):
    fastmlp's step "sparse" (whatever the density), fastmlp densifying each
    batch (the other steps), fastmlp on the densified array, scikit-learn on
    the sparse X."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    X, y = sparse_data(rows, features, density, dtype)
    Xd = X.toarray()

    def ours(data, strategy="auto"):
        net = fastmlp.Network([features, hidden, 2], activation="relu", output="softmax",
                              dtype=dtype, seed=0)
        net.strategy = strategy
        return lambda: net.fit(data, y, epochs=epochs, batch_size=200, optimizer="adam",
                               learning_rate=1e-3)

    def sklearn():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SkMLP(hidden_layer_sizes=(hidden,), max_iter=epochs, n_iter_no_change=epochs + 1,
                  random_state=0, tol=0).fit(X, y)
    old = _kernels.set_sparse_max_density(1.0)
    try:
        out = {"fastmlp step sparse": best(ours(X), repeats),
               "fastmlp densified batches": best(ours(X, GATHER), repeats),
               "fastmlp dense X": best(ours(Xd), repeats)}
    finally:
        _kernels.set_sparse_max_density(old)
    if with_sklearn:
        out["sklearn sparse X"] = best(sklearn, repeats)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=5000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--densities", default="0.001,0.003,0.01,0.03,0.1")
    a = parser.parse_args()
    print(f"fits: {a.rows} x {a.features}, hidden {a.hidden}, adam, batch 200, "
          f"{a.epochs} epochs, {a.dtype} (seconds, best of {a.repeats}); fastmlp "
          f"takes step sparse up to density {_kernels.SPARSE_DENSITY:.0%}")
    for density in map(float, a.densities.split(",")):
        t = fits(a.rows, a.features, density, a.hidden, a.epochs, a.repeats, a.dtype)
        print(f"  density {density:6.1%}: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()),
              flush=True)


if __name__ == "__main__":
    main()
