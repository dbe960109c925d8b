"""Pieces of the compiled core tested on their own: products, exp, finiteness."""
import numpy as np
import pytest

from fastmlp import _kernels

# (33, 17, 300): more rows of B than _gemm.h packs at once (256)
SHAPES = [(1, 1, 1), (4, 3, 2), (4000, 3, 1), (3, 1, 7), (1, 9, 5), (7, 5, 1), (33, 17, 9),
          (64, 48, 40), (32, 128, 64), (30, 37, 11), (257, 16, 3), (32, 10, 128),
          (128, 10, 32), (32, 128, 10), (6, 24, 5), (33, 17, 300)]

PATHS = [(path, ta, tb) for path in (0, 1, 2, 3) for ta in "NT" for tb in "NT"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path,ta,tb", PATHS,
                         ids=lambda v: {0: "auto", 1: "loops", 2: "blas", 3: "blocks"}.get(v, v))
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_product_every_transposition_and_path(M, N, K, ta, tb, path, dtype):
    rng = np.random.default_rng(M * 100 + N * 10 + K)
    A = rng.normal(size=(M, K) if ta == "N" else (K, M)).astype(dtype)
    B = rng.normal(size=(K, N) if tb == "N" else (N, K)).astype(dtype)
    C0 = rng.normal(size=(M, N)).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)]:
        C = C0.copy()
        _kernels.product(ta, tb, A, B, C, alpha=alpha, beta=beta, path=path)
        expected = alpha * ((A if ta == "N" else A.T).astype(np.float64)
                            @ (B if tb == "N" else B.T).astype(np.float64)) + beta * C0
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(C, expected, rtol=tol, atol=tol * np.sqrt(K) * 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ta,tb", [("N", "N"), ("T", "N"), ("N", "T"), ("T", "T")])
@pytest.mark.parametrize("M,N,K", [(32, 128, 64), (7, 100, 300), (64, 40, 33)])
def test_register_blocks_on_the_pool_equal_one_thread(M, N, K, ta, tb, dtype):
    # the column panels split over the pool: every column summed as on one thread
    rng = np.random.default_rng(7)
    A = rng.normal(size=(M, K) if ta == "N" else (K, M)).astype(dtype)
    B = rng.normal(size=(K, N) if tb == "N" else (N, K)).astype(dtype)
    C0 = rng.normal(size=(M, N)).astype(dtype)
    one = C0.copy()
    _kernels.product(ta, tb, A, B, one, alpha=-0.5, beta=0.75, path=3)
    for threads in (2, 3, 4):
        C = C0.copy()
        _kernels.product(ta, tb, A, B, C, alpha=-0.5, beta=0.75, path=3, pool_threads=threads)
        np.testing.assert_array_equal(C, one)
    expected = -0.5 * ((A if ta == "N" else A.T).astype(np.float64)
                       @ (B if tb == "N" else B.T).astype(np.float64)) + 0.75 * C0
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(one, expected, rtol=tol, atol=tol * np.sqrt(K) * 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_register_blocks_last_columns_ignore_the_next_rows(dtype):
    # the last N % 16 columns are copied as whole vectors that run into the
    # next row of B: non-finite values there must not reach those columns
    rng = np.random.default_rng(3)
    A = rng.normal(size=(9, 6)).astype(dtype)
    B = rng.normal(size=(6, 20)).astype(dtype)
    B[:, :4] = [np.inf, np.nan, -np.inf, np.nan]
    C = np.zeros((9, 20), dtype)
    _kernels.product("N", "N", A, B, C, path=3)
    expected = A.astype(np.float64) @ B[:, 4:].astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(C[:, 4:], expected, rtol=tol, atol=tol * 10)


def test_beta_zero_ignores_nan_in_the_output():
    A, B = np.ones((3, 2)), np.ones((2, 4))
    for path in (1, 2, 3):
        C = np.full((3, 4), np.nan)
        _kernels.product("N", "N", A, B, C, beta=0.0, path=path)
        assert np.array_equal(C, np.full((3, 4), 2.0))


@pytest.mark.parametrize("dtype,ulps", [(np.float64, 4), (np.float32, 4)])
def test_polynomial_exp_accuracy(dtype, ulps):
    lo, hi = (-700.0, 700.0) if dtype == np.float64 else (-86.0, 87.0)
    x = np.concatenate([np.linspace(lo, hi, 200001), np.linspace(-1, 1, 20001), [0.0]]).astype(dtype)
    y = x.copy()
    _kernels.exp_poly(y)
    exact = np.exp(x.astype(np.float64))
    rel = np.abs(y.astype(np.float64) - exact) / exact
    assert rel.max() < ulps * np.finfo(dtype).eps
    assert y[-1] == 1.0


@pytest.mark.parametrize("dtype,ulps", [(np.float64, 4), (np.float32, 4)])
def test_polynomial_tanh_accuracy(dtype, ulps):
    # relative to tanh computed in float64 (float32) or against np.tanh
    # (float64): small |x| (where 1 - e^(-2|x|) would cancel), the range
    # where e^(-2|x|) - 1 is scaled (n != 0), and saturation
    x = np.concatenate([np.linspace(-20, 20, 400001), np.geomspace(1e-30, 1, 20001),
                        -np.geomspace(1e-30, 1, 20001), [0.0, -0.0]]).astype(dtype)
    y = x.copy()
    _kernels.tanh_poly(y)
    exact = np.tanh(x.astype(np.float64))
    tiny = np.abs(exact) < np.finfo(dtype).tiny
    rel = np.abs(y.astype(np.float64) - exact) / np.where(tiny, 1.0, np.abs(exact))
    assert rel[~tiny].max() < ulps * np.finfo(dtype).eps
    assert np.all(np.abs(y) <= 1) and np.all(np.sign(y) == np.sign(x))
    special = np.array([np.inf, -np.inf, np.nan, 1e300 if dtype == np.float64 else 3e38],
                       dtype=dtype)
    _kernels.tanh_poly(special)
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2]) and special[3] == 1


def test_polynomial_exp_saturates_without_inf_or_nan():
    y = np.array([-1e4, -800.0, 800.0, 1e4])
    _kernels.exp_poly(y)
    assert np.all(np.isfinite(y)) and y[0] < 1e-300 and y[-1] > 1e307
    z = np.array([-1e4, 1e4], dtype=np.float32)
    _kernels.exp_poly(z)
    assert np.all(np.isfinite(z)) and z[0] < 1e-37 and z[1] > 1e38


def test_all_finite():
    X = np.zeros((3, 4))
    assert _kernels.all_finite(X)
    for bad in (np.nan, np.inf, -np.inf):
        Y = X.copy()
        Y[2, 3] = bad
        assert not _kernels.all_finite(Y)
    assert _kernels.all_finite(np.full((2, 2), 3e38, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_finite_on_several_threads(dtype):
    X = np.zeros((1100, 1000), dtype=dtype)         # above FINITE_SPLIT: split in blocks
    assert _kernels.all_finite(X, 2) and _kernels.all_finite(X, 4)
    for where in [(0, 0), (549, 999), (550, 0), (1099, 999)]:
        for bad in (np.nan, np.inf, -np.inf):
            X[where] = bad
            assert not _kernels.all_finite(X, 2) and not _kernels.all_finite(X, 1)
            X[where] = 0


def _ready_args(net):
    hidden, output, _ = net._codes
    return net.params, net._sizes, hidden, output


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [1, 3, 5, 2100])
def test_predict_ready_equals_forward(rows, dtype):
    import fastmlp
    net = fastmlp.Network([70, 65, 9, 3], output="softmax", loss="log_loss", dtype=dtype, seed=1)
    X = np.random.default_rng(rows).normal(size=(rows, 70)).astype(dtype)
    params, sizes, hidden, output = _ready_args(net)
    expected = np.empty((rows, 3), dtype)
    _kernels.forward(params, X, sizes, hidden, output, expected, threads=1, pool_threads=1)
    # every thread rule: the pool's threads and the BLAS threads below/above the row count
    for pool, many_rows, few, many in [(1, 10, 1, 1), (2, 1, 1, 0), (4, 5000, 2, 0)]:
        P = _kernels.predict_ready(params, X, sizes, hidden, output, pool, many_rows, few, many)
        assert P.dtype == dtype and P.shape == (rows, 3) and P.flags.c_contiguous
        np.testing.assert_allclose(P, expected, rtol=1e-12 if dtype == np.float64 else 1e-5,
                                   atol=1e-7)


def test_predict_ready_declines_what_needs_converting_or_checking():
    import fastmlp
    net = fastmlp.Network([4, 5, 2], dtype="float32", seed=0)
    params, sizes, hidden, output = _ready_args(net)
    good = np.ones((3, 4), np.float32)
    assert _kernels.predict_ready(params, good, sizes, hidden, output, 1, 10, 1, 1) is not None
    nan = good.copy()
    nan[2, 3] = np.nan
    inf = good.copy()
    inf[0, 0] = -np.inf

    class Sub(np.ndarray):
        pass

    unaligned = np.frombuffer(bytes(3 * 4 * 4 + 1), np.float32, count=12, offset=1).reshape(3, 4)
    assert not unaligned.flags.aligned
    for X in [good.tolist(), good.astype(np.float64), good[:, :3].copy(),
              good[:0], good.ravel(), good.view(Sub), good.astype(">f4"), nan, inf,
              np.asfortranarray(good), unaligned, np.ones((2, 6, 4), np.float32)]:
        assert _kernels.predict_ready(params, X, sizes, hidden, output, 1, 10, 1, 1) is None
    assert _kernels.predict_ready(params, nan, sizes, hidden, output, 2, 10, 1, 1) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes, hidden", [
    ([600, 64, 2], "relu"),         # few rows: column blocks over the pool (_fewrows.h)
    ([300, 64, 2], "relu"),         # register blocks (_gemm.h) or BLAS
    ([300, 2], "sigmoid"),          # one layer: straight into out
    ([300, 70, 9, 3], "sigmoid"),
    ([4, 5, 2], "sigmoid"),         # plain loops (fm_small_gemm)
    ([1, 40, 3], "tanh"),           # one input: K == 1
    ([3, 1], "sigmoid"),            # one unit: gemv
    ([50, 1, 2], "relu"),
])
@pytest.mark.parametrize("rows", [1, 3, 37, _kernels.FORWARD_CHUNK + 5])
def test_predict_ready_declines_any_non_finite_value_of_X(rows, sizes, hidden, dtype):
    # X is not read for the check: its non-finite values show in the first
    # layer's products, in every product kernel, in every chunk, and whatever
    # the weights or activation do
    import fastmlp
    n_in = sizes[0]
    net = fastmlp.Network(sizes, activation=hidden, dtype=dtype, seed=2)
    zero, large = {0, n_in // 2}, {n_in - 1}
    for p in zero:
        net.weights[0][p] = 0.0         # inf * 0 is NaN
    for p in large - zero:
        net.weights[0][p] = 1e3         # inf * 1e3 is inf: sigmoid(inf) would be 1
    params, sz, h, o = _ready_args(net)
    X = np.random.default_rng(rows).normal(size=(rows, n_in)).astype(dtype)
    assert _kernels.predict_ready(params, X, sz, h, o, 2, 10, 1, 0) is not None
    for row in sorted({0, rows // 2, rows - 1}):
        for col in sorted(zero | large):
            for bad in (np.nan, np.inf, -np.inf):
                Xb = X.copy()
                Xb[row, col] = bad
                assert _kernels.predict_ready(params, Xb, sz, h, o, 2, 10, 1, 0) is None, \
                    (row, col, bad)
    # finite X whose products overflow is predicted, not declined
    big = np.full((rows, n_in), np.finfo(dtype).max / 4, dtype)
    assert _kernels.predict_ready(params, big, sz, h, o, 2, 10, 1, 0) is not None


def test_predict_ready_rejects_bad_params_and_sizes_by_name():
    import fastmlp
    net = fastmlp.Network([4, 5, 2], dtype="float32", seed=0)
    params, sizes, hidden, output = _ready_args(net)
    X = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="params must be .* got int64 with shape"):
        _kernels.predict_ready(params.astype(np.int64), X, sizes, hidden, output, 1, 10, 1, 1)
    with pytest.raises(ValueError, match="params has 37 values; layer sizes \\[4, 5, 3\\] need 43"):
        _kernels.predict_ready(params, X, np.array([4, 5, 3], np.intp), hidden, output,
                               1, 10, 1, 1)
    with pytest.raises(ValueError, match="sizes must be .* got int32"):
        _kernels.predict_ready(params, X, sizes.astype(np.int32), hidden, output, 1, 10, 1, 1)
    with pytest.raises(ValueError, match="sizes\\[1\\] must be >= 1; got 0"):
        _kernels.predict_ready(params, X, np.array([4, 0, 2], np.intp), hidden, output,
                               1, 10, 1, 1)
    with pytest.raises(ValueError, match="pool_threads must be >= 1; got 0"):
        _kernels.predict_ready(params, X, sizes, hidden, output, 0, 10, 1, 1)
