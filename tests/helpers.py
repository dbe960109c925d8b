"""Shared helpers for the test suite (importable: pytest puts tests/ on sys.path)."""
import itertools

import numpy as np

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUT_LOSS = [("sigmoid", "squared_error"), ("sigmoid", "log_loss"),
               ("softmax", "squared_error"), ("softmax", "log_loss"),
               ("identity", "squared_error")]
COMBOS = [(a, o, l) for a, (o, l) in itertools.product(HIDDEN, OUTPUT_LOSS)]


def make_targets(rng, n, n_out, output, loss, dtype=np.float64):
    """Targets a user would give for this output/loss pair."""
    if output == "softmax":
        labels = rng.integers(0, n_out, size=n)
        Y = np.eye(n_out)[labels]
    elif loss == "log_loss":
        Y = (rng.random((n, n_out)) < 0.5).astype(float)
    elif output == "sigmoid":
        Y = rng.random((n, n_out))
    else:
        Y = rng.normal(size=(n, n_out))
    return Y.astype(dtype)


def randomise_biases(net, rng, scale=0.5):
    """Give every bias a random value (fresh nets start at zero)."""
    for b in net.biases:
        b[...] = rng.normal(scale=scale, size=b.shape)
