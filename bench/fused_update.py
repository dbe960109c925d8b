"""fastmlp's fused optimizer update (step "layers", _fused_update.pxi) against
the separate pass it replaces, on the matrix's optimizer cells' shapes: the
same fit with ``_kernels.set_fused_update(True / False)``, interleaved, as the
ratio of medians (< 1: the fused update is faster).

    python bench/fused_update.py [--repeats 9]
"""
import time

import numpy as np
from _ratios import main_over_cases

import fastmlp
from fastmlp import _kernels

# (layer sizes, activation, output, loss, batch, dtype, rows, epochs, fit options)
CASES = [
    ([1024, 1024, 1024, 10], "relu", "softmax", "log_loss", 128, "float32", 2048, 1,
     dict(optimizer="adam")),
    ([256, 512, 256, 1], "relu", "identity", "squared_error", 64, "float32", 4096, 1,
     dict(optimizer="adam")),
    ([100, 128, 10], "relu", "softmax", "log_loss", 1, "float64", 300, 1,
     dict(momentum=0.9)),
    ([32, 64, 64, 64, 64, 64, 64, 1], "relu", "sigmoid", "log_loss", 32, "float32", 4000, 2,
     dict(optimizer="adam")),
    ([8, 64, 64, 1], "tanh", "identity", "squared_error", 32, "float32", 4000, 5,
     dict(momentum=0.9)),
    ([10, 64, 64, 1], "relu", "identity", "squared_error", 1, "float64", 400, 1,
     dict(momentum=0.9, nesterov=True)),
    ([100, 256, 256, 1], "tanh", "sigmoid", "log_loss", 256, "float64", 8192, 1,
     dict(optimizer="adam")),
]


def data(sizes, output, dtype, rows):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, sizes[0])).astype(dtype)
    if output == "softmax":
        Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], rows)]
    else:
        Y = (rng.random((rows, sizes[-1])) > 0.5).astype(dtype)
    return X, Y


def run_case(case, repeats):
    sizes, act, output, loss, batch, dtype, rows, epochs, options = case
    X, Y = data(sizes, output, dtype, rows)
    times = {True: [], False: []}
    losses = {}
    for _ in range(repeats):
        for fused in (True, False):
            previous = _kernels.set_fused_update(fused)
            try:
                net = fastmlp.Network(sizes, activation=act, output=output, loss=loss,
                                      dtype=dtype, seed=0)
                start = time.perf_counter()
                hist = net.fit(X, Y, epochs=epochs, batch_size=batch, learning_rate=1e-3,
                               **options)
                times[fused].append(time.perf_counter() - start)
                losses[fused] = (hist.loss[-1], hist.fused_updates, sum(hist.steps.values()))
            finally:
                _kernels.set_fused_update(previous)
    fused, separate = np.median(times[True]), np.median(times[False])
    name = "-".join(map(str, sizes))
    print(f"{name:28s} {act:5s} {options} batch {batch} {dtype}: fused {fused * 1e3:8.2f} ms, "
          f"separate {separate * 1e3:8.2f} ms, ratio {fused / separate:.3f} "
          f"(fused steps {losses[True][1]} of {losses[True][2]}; final loss "
          f"{losses[True][0]:.6g} / {losses[False][0]:.6g})")
    return fused / separate


def main(argv=None):
    main_over_cases(__doc__, run_case, CASES, 9, argv)


if __name__ == "__main__":
    main()
