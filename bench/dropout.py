"""Dropout's cost: the same fit with ``dropout=0.2`` and with ``dropout=0``
forced onto step "layers" (the step dropout takes), interleaved, as the ratio
of medians (> 1: dropout is slower; the masks' hashes and the kept slopes),
plus the planner's own step without dropout for reference.

    python bench/dropout.py [--repeats 5]
"""
import time

import numpy as np
from _ratios import main_over_cases

import fastmlp

# (layer sizes, batch, dtype, rows, epochs, fit options)
CASES = [
    ([784, 256, 10], 128, "float32", 10000, 2, dict()),
    ([784, 256, 10], 128, "float32", 10000, 2, dict(optimizer="adam")),
    ([784, 256, 10], 128, "float64", 10000, 2, dict()),
    ([64, 128, 128, 10], 32, "float32", 4000, 2, dict(optimizer="adam")),
]


def data(sizes, dtype, rows):
    rng = np.random.default_rng(0)
    X = rng.random((rows, sizes[0])).astype(dtype)
    return X, np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], rows)]


def fit_time(sizes, dtype, X, Y, batch, epochs, options, dropout, strategy):
    net = fastmlp.Network(sizes, activation="relu", output="softmax", loss="log_loss",
                          init="he", dtype=dtype, seed=0, dropout=dropout)
    net.strategy = strategy
    start = time.perf_counter()
    hist = net.fit(X, Y, epochs=epochs, batch_size=batch, learning_rate=1e-2, **options)
    return time.perf_counter() - start, max(hist.steps, key=hist.steps.get)


def run_case(case, repeats):
    sizes, batch, dtype, rows, epochs, options = case
    X, Y = data(sizes, dtype, rows)
    runs = {"dropout": (0.2, "auto"), "layers": (0.0, "layers"), "planned": (0.0, "auto")}
    times = {k: [] for k in runs}
    steps = {}
    for _ in range(repeats):
        for k, (p, strategy) in runs.items():
            seconds, steps[k] = fit_time(sizes, dtype, X, Y, batch, epochs, options, p, strategy)
            times[k].append(seconds)
    med = {k: np.median(v) for k, v in times.items()}
    name = "-".join(map(str, sizes))
    print(f"{name:18s} {options} batch {batch} {dtype}: dropout 0.2 {med['dropout'] * 1e3:7.1f} ms, "
          f"0 on 'layers' {med['layers'] * 1e3:7.1f} ms, ratio {med['dropout'] / med['layers']:.3f}"
          f" (planned without dropout: '{steps['planned']}' {med['planned'] * 1e3:7.1f} ms)")
    return med["dropout"] / med["layers"]


def main(argv=None):
    main_over_cases(__doc__, run_case, CASES, 5, argv)


if __name__ == "__main__":
    main()
