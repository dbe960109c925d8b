"""Forward passes of at most 4 rows (one-sample predict): the column-split
products of _fewrows.h, on one thread and on its spinning pool."""
import multiprocessing
import threading
import time

import numpy as np
import pytest

import fastmlp
from fastmlp import reference
from helpers import randomise_biases

# layer shapes that take the few-rows product (n_in * n_out >= 32768 and at
# least one column block) in some layers, with narrower last blocks, and
# layers that do not
SHAPES = [(200, 200, 180, 3), (300, 130, 70, 5), (784, 64, 10), (40, 900, 2)]
ROWS = [1, 2, 3, 4]


def _pair(shape, act, out, dtype, n_threads):
    kw = dict(activation=act, output=out, dtype=dtype, seed=3, n_threads=n_threads)
    net, ref = fastmlp.Network(shape, **kw), reference.Network(shape, **kw)
    randomise_biases(net, np.random.default_rng(0))
    ref.params[...] = net.params
    return net, ref


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out", [("sigmoid", "softmax"), ("tanh", "sigmoid"),
                                     ("relu", "identity"), ("identity", "softmax")])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_few_rows_match_reference_and_do_not_depend_on_threads(shape, act, out, dtype):
    rng = np.random.default_rng(len(shape))
    X = rng.normal(size=(max(ROWS), shape[0])).astype(dtype)
    nets = [_pair(shape, act, out, dtype, t) for t in (1, 2, 3)]
    ref = nets[0][1]
    tol = 1e-12 if dtype == "float64" else 2e-5
    for m in ROWS:
        expected = ref.predict(X[:m])
        got = [net.predict(X[:m]) for net, _ in nets]
        np.testing.assert_allclose(got[0], expected, rtol=tol, atol=tol)
        for other in got[1:]:
            assert np.array_equal(other, got[0]), f"{m} rows: result depends on n_threads"
    # a row predicted alone, in a group of 4 and in a big batch agree to rounding
    big = nets[1][0].predict(np.repeat(X[:1], 50, axis=0))
    np.testing.assert_allclose(got[0][0], big[0], rtol=tol, atol=tol)


def test_workers_that_fell_asleep_still_answer():
    net, ref = _pair((784, 256, 128, 10), "sigmoid", "softmax", "float32", 2)
    x = np.random.default_rng(1).random((1, 784), dtype=np.float32)
    first = net.predict(x)
    for pause in (0.0, 0.002, 0.02):          # beyond the spin: workers sleep
        time.sleep(pause)
        assert np.array_equal(net.predict(x), first)
    np.testing.assert_allclose(first, ref.predict(x), rtol=2e-5, atol=2e-6)


def test_concurrent_few_row_predicts_equal_serial_exactly():
    nets = [_pair((300, 256, 64, 3), "tanh", "softmax", dt, 2)[0] for dt in ("float32", "float64")]
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=(m, 300)).astype(net.dtype) for net in nets for m in (1, 3)]
    serial = [nets[i // 2].predict(X) for i, X in enumerate(inputs)]
    bad, errors = [], []

    def work(k):
        try:
            for r in range(200):
                i = (k + r) % len(inputs)
                if not np.array_equal(nets[i // 2].predict(inputs[i]), serial[i]):
                    bad.append((k, r))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors and not bad, (errors, bad[:5])


def _predict_in_child(conn, params, x):
    net = fastmlp.Network((784, 256, 128, 10), output="softmax", dtype="float32", n_threads=2)
    net.params[...] = params
    conn.send(net.predict(x))
    conn.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs fork()")
def test_a_forked_child_predicts_with_its_own_workers():
    net, _ = _pair((784, 256, 128, 10), "sigmoid", "softmax", "float32", 2)
    x = np.random.default_rng(4).random((1, 784), dtype=np.float32)
    expected = net.predict(x)                 # the parent's workers are running
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_predict_in_child, args=(child, net.params, x))
    proc.start()
    assert parent.poll(60), "the forked child did not answer"
    got = parent.recv()
    proc.join(30)
    assert proc.exitcode == 0
    assert np.array_equal(got, expected)
