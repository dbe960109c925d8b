"""Sparse X (issue 25): fastmlp's sparse fit against scikit-learn's MLPClassifier
on the same sparse data and against fastmlp on the densified array; then the
first layer's two products a batch (what a sparse x dense kernel would replace)
densified as the fit does it (zero-fill + scatter, then BLAS) against scipy's
sparse x dense products, at densities 0.1% to 10%.

    python bench/sparse.py [--rows 20000] [--features 5000] [--repeats 3]
"""
import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp

import fastmlp


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


def fits(rows, features, density, hidden, epochs, repeats, dtype):
    """Seconds (best of ``repeats``) of the three fits, adam, batch 200 (sklearn's auto)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    X, y = sparse_data(rows, features, density, dtype)
    Xd = X.toarray()

    def ours(data):
        net = fastmlp.Network([features, hidden, 2], activation="relu", output="softmax",
                              dtype=dtype, seed=0)
        return lambda: net.fit(data, y, epochs=epochs, batch_size=200, optimizer="adam",
                               learning_rate=1e-3)

    def sklearn():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SkMLP(hidden_layer_sizes=(hidden,), max_iter=epochs, n_iter_no_change=epochs + 1,
                  random_state=0, tol=0).fit(X, y)
    return {"fastmlp sparse": best(ours(X), repeats), "fastmlp dense": best(ours(Xd), repeats),
            "sklearn sparse": best(sklearn, repeats)}


def first_layer(features, hidden, batch, density, repeats, dtype):
    """Seconds a batch of the first layer's forward (X_b @ W1) and weight
    gradient (X_b^T @ D1) products: densified into a buffer then BLAS, or
    scipy's sparse x dense products on the CSR rows."""
    X, _ = sparse_data(batch * 20, features, density, dtype)
    rng = np.random.default_rng(1)
    W = rng.standard_normal((features, hidden)).astype(dtype)
    D = rng.standard_normal((batch, hidden)).astype(dtype)
    buf = np.empty((batch, features), dtype=dtype)
    blocks = [X[i * batch:(i + 1) * batch] for i in range(20)]

    def densified():
        for b in blocks:
            buf[...] = 0
            buf[...] = b.toarray()      # (the kernels scatter in C: this overstates it)
            buf @ W
            buf.T @ D

    def scatter_only():
        for b in blocks:
            buf[...] = 0
            b.toarray(out=buf)

    def sparse_products():
        for b in blocks:
            b @ W
            b.T @ D
    return {name: best(fn, repeats) / 20 for name, fn in
            (("densify+BLAS", densified), ("densify only", scatter_only),
             ("sparse x dense", sparse_products))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=5000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    a = parser.parse_args()
    print(f"fits: {a.rows} x {a.features}, hidden {a.hidden}, adam, batch 200, "
          f"{a.epochs} epochs, {a.dtype} (seconds, best of {a.repeats})")
    for density in (0.001, 0.01, 0.1):
        t = fits(a.rows, a.features, density, a.hidden, a.epochs, a.repeats, a.dtype)
        print(f"  density {density:6.1%}: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()))
    print(f"first layer a batch of 200 rows x {a.features} -> {a.hidden} (ms)")
    for density in (0.001, 0.003, 0.01, 0.03, 0.1):
        t = first_layer(a.features, a.hidden, 200, density, a.repeats * 3, a.dtype)
        print(f"  density {density:6.1%}: " + ", ".join(f"{k} {1e3 * v:.3f}"
                                                      for k, v in t.items()))


if __name__ == "__main__":
    main()
