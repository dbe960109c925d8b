"""Forward passes in fixed chunks claimed by the pool's threads
(_forward_chunks.pxi).

Under one BLAS thread, a predict of more rows than a chunk runs in chunks of
FORWARD_POOL_ROWS rows from the start of X (the last two to three chunks'
worth in quarter chunks), each on one thread, claimed by the pool's threads
one after another (a slowed thread takes fewer).  The
chunks follow the network, never the thread count: outputs are the same bits
on any number of threads, and match the reference twin to rounding."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _blas_threads, _kernels, reference

needs_openblas = pytest.mark.skipif(_blas_threads.BLAS_LIBRARY is None,
                                    reason="the BLAS thread count cannot be set here")

CHUNK = 1024            # FORWARD_POOL_ROWS


def _nets(sizes, dtype, activation, threads=(1, 2, 4)):
    kw = dict(activation=activation, output="softmax", loss="log_loss", dtype=dtype, seed=5)
    nets = [fastmlp.Network(sizes, n_threads=t, **kw) for t in threads]
    twin = reference.Network(sizes, **kw)
    twin.set_params(nets[0].params)
    return nets, twin


def test_the_chunk_is_the_documented_size():
    previous = _kernels.set_forward_pool_rows(CHUNK)
    assert previous == CHUNK
    with pytest.raises(ValueError, match="rows must be >= 0; got -1"):
        _kernels.set_forward_pool_rows(-1)


@needs_openblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
# one chunk and a row (its own path: _fewrows.h), a few rows more, chunks and
# a remainder, many chunks and a remainder
@pytest.mark.parametrize("rows", [CHUNK + 1, CHUNK + 5, 3 * CHUNK + 37, 2500])
def test_chunked_predict_is_bit_identical_on_1_2_4_threads_and_matches_the_twin(
        rows, activation, dtype):
    nets, twin = _nets([784, 512, 256, 10], dtype, activation)
    X = np.random.default_rng(rows).normal(size=(rows, 784)).astype(dtype)
    outs = [net.predict(X) for net in nets]
    for P in outs[1:]:
        np.testing.assert_array_equal(P, outs[0])
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(outs[0], twin.predict(X), rtol=tol, atol=tol)


@needs_openblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunks_are_fixed_from_the_start_of_X(dtype):
    # a row's outputs follow its chunk alone: the whole chunks at the start
    # of a shorter X (all but its last two to three chunks' rows) give the
    # bits of a longer one
    nets, _ = _nets([100, 256, 256, 3], dtype, "tanh", threads=(2,))
    X = np.random.default_rng(1).normal(size=(6 * CHUNK + 9, 100)).astype(dtype)
    whole = nets[0].predict(X)
    for rows, full in [(3 * CHUNK + 1, CHUNK), (5 * CHUNK + 9, 3 * CHUNK)]:
        np.testing.assert_array_equal(nets[0].predict(X[:rows])[:full], whole[:full])


@needs_openblas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_layer_and_few_row_predicts_are_unchanged(dtype):
    # one layer writes its chunks straight into the outputs; up to a chunk of
    # rows keeps the pass of before (products split over the pool)
    for sizes in ([300, 4], [300, 64, 4]):
        nets, twin = _nets(sizes, dtype, "relu")
        tol = 1e-12 if dtype == "float64" else 1e-5
        for rows in (1, 3, 37, CHUNK, 5 * CHUNK + 3):
            X = np.random.default_rng(rows).normal(size=(rows, sizes[0])).astype(dtype)
            outs = [net.predict(X) for net in nets]
            for P in outs[1:]:
                np.testing.assert_array_equal(P, outs[0])
            np.testing.assert_allclose(outs[0], twin.predict(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_predict_matches_the_pass_of_before(dtype):
    nets, _ = _nets([784, 512, 256, 10], dtype, "relu", threads=(2,))
    X = np.random.default_rng(3).normal(size=(3 * CHUNK + 11, 784)).astype(dtype)
    chunked = nets[0].predict(X)
    previous = _kernels.set_forward_pool_rows(0)
    try:
        before = nets[0].predict(X)
    finally:
        _kernels.set_forward_pool_rows(previous)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(chunked, before, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_non_finite_value_in_any_chunk_is_found(n_threads, dtype):
    net = fastmlp.Network([50, 300, 20, 2], dtype=dtype, seed=0, n_threads=n_threads)
    rows = 4 * CHUNK + 7
    X = np.random.default_rng(0).normal(size=(rows, 50)).astype(dtype)
    assert np.all(np.isfinite(net.predict(X)))
    for row in (0, CHUNK, 2 * CHUNK + 100, rows - 1):
        for bad in (np.nan, np.inf):
            Xb = X.copy()
            Xb[row, 7] = bad
            with pytest.raises(ValueError, match="X must be finite"):
                net.predict(Xb)
