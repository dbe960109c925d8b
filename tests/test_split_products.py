"""BLAS products split over fastmlp's pool (gemm_split in _products.pxi).

A call that runs BLAS on one thread splits each big BLAS product into bands
of its result, one one-thread BLAS call a band, on the pool.  The bands
depend on the product's shape alone, so a fit, a prediction or a gradient
gives the same bits on any number of threads; and the planner keeps the
pool's threads for steps with BLAS products (before, BLAS threaded them and
the pool stood aside)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _blas_threads

from helpers import step_parity

needs_openblas = pytest.mark.skipif(_blas_threads.BLAS_LIBRARY is None,
                                    reason="the BLAS thread count cannot be set here")


def _data(n_in, n_out, rows, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, n_in)).astype(dtype)
    y = rng.integers(0, n_out, rows)
    return X, y


@needs_openblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", [{"optimizer": "adam"}, {"momentum": 0.9, "nesterov": True},
                                 {}])
def test_fit_is_bit_identical_on_one_two_and_three_threads(dtype, opt):
    # 256-512-384-10 in batches of 200: every product has >= 2 bands' worth
    # of multiply-adds, and the last batch (100 rows) other shapes
    X, y = _data(256, 10, 700, dtype)
    fits = []
    for threads in (1, 2, 3):
        net = fastmlp.Network([256, 512, 384, 10], activation="tanh", output="softmax",
                              loss="log_loss", dtype=dtype, seed=3, n_threads=threads)
        net.strategy = "layers"
        hist = net.fit(X, y, epochs=2, batch_size=200, learning_rate=0.01, **opt)
        fits.append((net.params.copy(), hist.loss))
    for params, loss in fits[1:]:
        np.testing.assert_array_equal(params, fits[0][0])
        assert loss == fits[0][1]


@needs_openblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", [{}, {"optimizer": "adam", "learning_rate": 1e-3}])
def test_split_fit_matches_the_reference(dtype, opt):
    # batches of 128 x 300 x 600: every product is split into bands
    step_parity("layers", [300, 600, 4], 128, n=256, dtype=dtype, threads=(1, 2),
                activation="relu", fit=dict(opt, epochs=2), seed=1)


@needs_openblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_and_gradients_are_bit_identical_across_threads(dtype):
    X, y = _data(784, 10, 3000, dtype, seed=2)
    outs = []
    for threads in (1, 2, 4):
        net = fastmlp.Network([784, 512, 256, 10], output="softmax", loss="log_loss",
                              dtype=dtype, seed=7, n_threads=threads)
        grads = net.gradients(X[:1500], y[:1500])
        flat = np.concatenate([np.ravel(g) for part in grads for g in part])
        outs.append((net.predict(X), flat))
    for P, G in outs[1:]:
        np.testing.assert_array_equal(P, outs[0][0])
        np.testing.assert_array_equal(G, outs[0][1])


@needs_openblas
def test_planner_keeps_the_pool_for_steps_with_blas_products():
    net = fastmlp.Network([1024, 1024, 10], dtype="float32", n_threads=2)
    plan = net.plan(4096, 256, optimizer="adam")
    assert plan["step"] == "layers"
    assert plan["blas_threads"] == 1 and plan["pool_threads"] == 2


@needs_openblas
def test_blas_runs_on_one_thread_when_the_pool_has_every_thread():
    assert _blas_threads.threads_for(10**9, 2) == 1
    assert _blas_threads.threads_for(10**9, 4) == 1
    # more threads than the pool has: BLAS threads the products itself
    assert _blas_threads.threads_for(10**9, 8) == 8
