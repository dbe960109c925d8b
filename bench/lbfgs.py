"""solver="lbfgs" against scikit-learn's: the same estimator settings on the
same data, interleaved, medians of ``--repeats`` fits, as a ratio (< 1: fastmlp
is faster), with both fits' final loss and iteration count.

    python bench/lbfgs.py [--repeats 5]
"""
import time
import warnings

import numpy as np
from _ratios import main_over_cases
from sklearn.datasets import load_digits, make_classification, make_moons, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

from fastmlp import MLPClassifier, MLPRegressor


def cases():
    X, y = load_digits(return_X_y=True)
    yield "digits 64-64-10", X / 16.0, y, "clf", dict(hidden_layer_sizes=(64,), max_iter=200)
    X, y = make_moons(1000, noise=0.2, random_state=0)
    yield "moons 2-32-32-1 tanh", X, y, "clf", dict(hidden_layer_sizes=(32, 32),
                                                     activation="tanh", max_iter=300)
    X, y = make_classification(5000, 40, n_informative=20, n_classes=4, random_state=0)
    yield "clf 40-128-4 (5000 rows)", X, y, "clf", dict(hidden_layer_sizes=(128,), max_iter=100)
    X, y = make_regression(4000, 20, n_targets=2, noise=5.0, random_state=0)
    yield "regression 20-64-2", X, y / y.std(0), "reg", dict(hidden_layer_sizes=(64,),
                                                             max_iter=200)


def timed(est, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return time.perf_counter() - start, est


def run_case(case, repeats):
    name, X, y, kind, kw = case
    ours_cls, theirs_cls = ((MLPClassifier, SkMLPClassifier) if kind == "clf"
                            else (MLPRegressor, SkMLPRegressor))
    times = {"fastmlp": [], "sklearn": []}
    fits = {}
    for _ in range(repeats):
        for label, cls in (("fastmlp", ours_cls), ("sklearn", theirs_cls)):
            seconds, est = timed(cls(solver="lbfgs", random_state=0, **kw), X, y)
            times[label].append(seconds)
            fits[label] = est
    ours, theirs = np.median(times["fastmlp"]), np.median(times["sklearn"])
    print(f"{name:26s} fastmlp {ours * 1e3:8.1f} ms  scikit-learn {theirs * 1e3:8.1f} ms  "
          f"ratio {ours / theirs:.3f}  (loss {fits['fastmlp'].loss_:.6g} / "
          f"{fits['sklearn'].loss_:.6g}, iterations {fits['fastmlp'].n_iter_} / "
          f"{fits['sklearn'].n_iter_})")
    return ours / theirs


def main(argv=None):
    main_over_cases(__doc__, run_case, list(cases()), 5, argv)


if __name__ == "__main__":
    main()
