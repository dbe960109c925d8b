"""Shared helpers for the test suite (importable: pytest puts tests/ on sys.path)."""
import itertools

import numpy as np

HIDDEN = ["sigmoid", "tanh", "relu", "identity", "leaky_relu", "gelu", "softplus"]
OUTPUT_LOSS = [("sigmoid", "squared_error"), ("sigmoid", "log_loss"),
               ("softmax", "squared_error"), ("softmax", "log_loss"),
               ("identity", "squared_error"), ("exp", "poisson")]
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
    elif loss == "poisson":
        Y = rng.poisson(1.5, size=(n, n_out)).astype(float)       # counts, zeros among them
    else:
        Y = rng.normal(size=(n, n_out))
    return Y.astype(dtype)


def randomise_biases(net, rng, scale=0.5):
    """Give every bias a random value (fresh nets start at zero)."""
    for b in net.biases:
        b[...] = rng.normal(scale=scale, size=b.shape)


def step_parity(step, sizes, batch_size, n=300, dtype="float32", threads=(1, 2, 3, 4),
                activation="tanh", output="softmax", loss="log_loss", fit=None, seed=0):
    """Fit with ``strategy=step`` on each thread count: every fit takes that
    step (History.steps), matches the reference twin to rounding, and (but
    for "narrow", whose parts follow the thread count) equals the others bit
    for bit.  Returns the compiled fits' parameters."""
    import fastmlp
    from fastmlp import reference
    rng = np.random.default_rng(seed)
    n_out = sizes[-1]
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = make_targets(rng, n, n_out, output, loss, dtype)
    kw = dict(activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)
    fit = dict(dict(epochs=3, learning_rate=0.1, batch_size=batch_size), **(fit or {}))
    ref = reference.Network(sizes, **kw)
    ref_hist = ref.fit(X, Y, **fit)
    tol = 1e-10 if dtype == "float64" else 3e-5
    scale = max(1.0, float(np.max(np.abs(ref.params))))
    runs = []
    for t in threads:
        net = fastmlp.Network(sizes, n_threads=t, **kw)
        net.strategy = step
        hist = net.fit(X, Y, **fit)
        assert hist.steps[step] > 0, (step, t, hist.steps)
        np.testing.assert_allclose(net.params, ref.params, rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=tol * 10)
        runs.append(net.params.copy())
    if step != "narrow":
        for params in runs[1:]:
            np.testing.assert_array_equal(params, runs[0])
    return runs


def run_child(code, timeout=120):
    """Run ``code`` in a child Python that imports the very fastmlp this
    process imported; ``(returncode, stdout, stderr)``, returncode None when
    the child was still running after ``timeout`` seconds (then killed)."""
    import os
    import subprocess
    import sys

    import fastmlp
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, out, err


def refused(path, *words):
    """``fastmlp.io.load(path)`` raises ModelFileError, a ValueError, naming
    the file and ``words``; returns the message."""
    import pytest
    from fastmlp import io as fio
    from fastmlp.errors import ModelFileError

    with pytest.raises(ModelFileError) as info:
        fio.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for w in words:
        assert w in message, (w, message)
    assert isinstance(info.value, ValueError)
    return message
