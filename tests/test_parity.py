"""The compiled kernels against the NumPy reference twin (the spec)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from helpers import COMBOS, make_targets, randomise_biases

# (layer_sizes, n_samples, batch_size): no hidden layer, several hidden layers,
# 1-sample batches, batches that do not divide n, products on both sides of
# the BLAS switch.
SHAPES = [
    ([3, 2], 5, 2),
    ([4, 1], 6, None),
    ([2, 3, 1], 4, None),
    ([5, 4, 3], 7, 1),
    ([6, 7, 5, 4], 11, 4),
    ([3, 5, 4, 6, 2], 9, 2),
    ([12, 33, 17, 3], 50, 16),
    ([40, 64, 10], 37, 10),
]
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=2e-6)}


def pair(sizes, act, out, loss, dtype, seed, l2=0.0):
    if out == "softmax" and sizes[-1] < 2:
        sizes = sizes[:-1] + [2]
    kw = dict(activation=act, output=out, loss=loss, dtype=dtype, seed=seed, l2=l2, init="he")
    return fastmlp.Network(sizes, **kw), reference.Network(sizes, **kw)


def data(rng, net, n, dtype):
    X = rng.normal(size=(n, net.layer_sizes[0])).astype(dtype)
    Y = make_targets(rng, n, net.layer_sizes[-1], net.output, net.loss_name, dtype)
    return X, Y


def flat(grads):
    return np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_forward_loss_gradients_match_reference(shape, act, out, loss, dtype):
    sizes, n, _ = SHAPES[shape]
    rng = np.random.default_rng(shape)
    fast, ref = pair(list(sizes), act, out, loss, dtype, seed=shape, l2=0.3)
    randomise_biases(fast, rng)
    ref.params[...] = fast.params
    X, Y = data(rng, fast, n, dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(fast.predict(X), ref.predict(X), **tol)
    np.testing.assert_allclose(fast.loss(X, Y), ref.loss(X, Y), **tol)
    np.testing.assert_allclose(flat(fast.gradients(X, Y)), flat(ref.gradients(X, Y)),
                               rtol=tol["rtol"], atol=tol["atol"] * 10)


@pytest.mark.parametrize("step", [0, 1], ids=["per-layer", "one-pass"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_training_matches_reference(shape, act, out, loss, dtype, step):
    sizes, n, batch = SHAPES[shape]
    rng = np.random.default_rng(100 + shape)
    fast, ref = pair(list(sizes), act, out, loss, dtype, seed=shape, l2=0.1)
    fast._narrow = step
    X, Y = data(rng, fast, n, dtype)
    # (exp outputs: e^z's gradient grows with it; a linear network's the most)
    lr = (1e-4 if act == "identity" else 1e-3) if out == "exp" else \
        0.05 if out == "identity" or act == "identity" else 0.2
    steps_per_epoch = -(-n // (batch or n))
    epochs = max(1, 20 // steps_per_epoch)
    h_fast = fast.fit(X, Y, epochs=epochs, learning_rate=lr, batch_size=batch, shuffle=True)
    h_ref = ref.fit(X, Y, epochs=epochs, learning_rate=lr, batch_size=batch, shuffle=True)
    tol = TOL[dtype]
    scale = np.max(np.abs(ref.params))
    np.testing.assert_allclose(fast.params, ref.params, rtol=tol["rtol"] * 10,
                               atol=tol["rtol"] * 10 * scale)
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, rtol=tol["rtol"] * 10, atol=tol["atol"])
    assert np.all(np.isfinite(h_fast.loss))


def test_trace_matches_reference_and_definitions(rng):
    fast, ref = pair([4, 5, 3, 2], "tanh", "softmax", "log_loss", "float64", seed=7, l2=0.2)
    randomise_biases(fast, rng)
    ref.params[...] = fast.params
    X, Y = data(rng, fast, 6, "float64")
    tf, tr = fast.trace(X, Y), ref.trace(X, Y)
    assert len(tf) == len(tr) == 3
    a_prev = X
    for layer, (f, r) in enumerate(zip(tf, tr)):
        for name in f._fields:
            np.testing.assert_allclose(getattr(f, name), getattr(r, name), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(f.z, a_prev @ fast.weights[layer] + fast.biases[layer], rtol=1e-12)
        np.testing.assert_allclose(f.dW, a_prev.T @ f.delta + 0.2 / 6 * fast.weights[layer], rtol=1e-12)
        np.testing.assert_allclose(f.db, f.delta.sum(axis=0), rtol=1e-12, atol=1e-15)
        a_prev = f.a
    np.testing.assert_allclose(tf[-1].delta, (tf[-1].a - Y) / 6, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tf[-1].a, fast.predict(X), rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_large_batch_products_use_blas_and_still_match(dtype):
    rng = np.random.default_rng(3)
    fast, ref = pair([100, 96, 64, 10], "sigmoid", "softmax", "log_loss", dtype, seed=1)
    X = rng.normal(size=(300, 100)).astype(dtype)
    y = rng.integers(0, 10, size=300)
    fast.fit(X, y, epochs=3, learning_rate=0.5, batch_size=64)
    ref.fit(X, y, epochs=3, learning_rate=0.5, batch_size=64)
    tol = TOL[dtype]
    np.testing.assert_allclose(fast.params, ref.params, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    np.testing.assert_allclose(fast.predict(X), ref.predict(X), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [8, 9, 16, 17, 1000, 1001])
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_one_pass_step_over_many_chunks_matches_reference(act, out, loss, n, dtype):
    # full batches of several chunks, with a partial last chunk or none, and
    # zero and non-unit sample weights: the one-pass step of _narrow.h
    rng = np.random.default_rng(n)
    fast, ref = pair([7, 9, 5, 3], act, out, loss, dtype, seed=2, l2=0.05)
    assert fast._narrow == -1      # narrow enough for the one-pass step by default
    X, Y = data(rng, fast, n, dtype)
    w = rng.random(n) * 2
    w[::5] = 0.0
    lr = 0.002 if out == "exp" else 0.05 if out == "identity" or act == "identity" else 0.3
    h_fast = fast.fit(X, Y, epochs=5, learning_rate=lr, sample_weight=w)
    h_ref = ref.fit(X, Y, epochs=5, learning_rate=lr, sample_weight=w)
    tol = TOL[dtype]
    scale = np.max(np.abs(ref.params))
    np.testing.assert_allclose(fast.params, ref.params, rtol=tol["rtol"] * 10,
                               atol=tol["rtol"] * 10 * scale)
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, rtol=tol["rtol"] * 10, atol=tol["atol"])


def test_one_pass_step_is_taken_only_for_narrow_networks():
    from fastmlp import _kernels
    assert _kernels.NARROW_WIDTH >= 8
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(float)
    runs = {}
    for step in (-1, 0, 1):
        net = fastmlp.Network([3, _kernels.NARROW_WIDTH + 1, 1], seed=0)
        net._narrow = step
        net.fit(X, y, epochs=3, learning_rate=0.5)
        runs[step] = net.params.copy()
    # wider than NARROW_WIDTH: the default is the per-layer step, bit for bit;
    # forced, the one-pass step agrees to rounding but sums in another order
    np.testing.assert_array_equal(runs[-1], runs[0])
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12, atol=1e-14)
    assert not np.array_equal(runs[1], runs[0])
