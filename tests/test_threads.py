"""Threads: one network used from many threads at once.

predict / loss / gradients allocate their scratch per call and release the
GIL in the kernels, so concurrent calls give exactly the serial answers and
really run in parallel. fit on a network another thread is fitting raises a
clear error instead of silently interleaving updates.
"""
import os
import threading
import time

import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from helpers import run_child

N_THREADS = 8


def _setup(cls, dtype, seed=0):
    rng = np.random.default_rng(seed)
    net = cls([20, 64, 32, 5], activation="tanh", output="softmax", loss="log_loss",
              l2=0.01, dtype=dtype, seed=seed)
    for b in net.biases:
        b[...] = rng.normal(scale=0.3, size=b.shape)
    # Different inputs per thread, of sizes on both sides of the kernels'
    # 1024-row chunking and the BLAS switch.
    inputs = []
    for t in range(N_THREADS):
        n = [1, 3, 50, 700, 1500, 2100, 17, 1025][t]
        X = rng.normal(size=(n, 20)).astype(dtype)
        y = rng.integers(0, 5, size=n)
        inputs.append((X, y))
    return net, inputs


def _answers(net, X, y):
    return (net.predict(X), net.loss(X, y),
            np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in net.gradients(X, y)]))


def _run_threads(target, n=N_THREADS):
    errors = []
    barrier = threading.Barrier(n)

    def wrapped(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:        # reported in the main thread
            errors.append((i, exc))

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
def test_concurrent_predict_loss_gradients_equal_serial_exactly(cls, dtype):
    net, inputs = _setup(cls, dtype)
    params = net.params.copy()
    serial = [_answers(net, X, y) for X, y in inputs]
    repeats = 3 if cls is fastmlp.Network else 2
    mismatches = []

    def work(i):
        for r in range(repeats):
            j = (i + r) % N_THREADS                 # every thread visits several inputs
            X, y = inputs[j]
            P, loss, g = _answers(net, X, y)
            if not (np.array_equal(P, serial[j][0]) and loss == serial[j][1]
                    and np.array_equal(g, serial[j][2])):
                mismatches.append((i, r, j))

    _run_threads(work)
    assert not mismatches, f"concurrent results differ from serial ones: {mismatches[:5]}"
    assert np.array_equal(net.params, params)


def test_kernels_release_the_gil():
    """While one thread is inside a long predict, the main thread keeps running:
    the longest pause between two of its heartbeats is far shorter than the call."""
    net = fastmlp.Network([256, 1024, 1024, 10], activation="relu", output="softmax",
                          dtype="float32", seed=0)
    X = np.random.default_rng(0).normal(size=(4096, 256)).astype(np.float32)
    t0 = time.perf_counter()
    net.predict(X)
    one_call = time.perf_counter() - t0
    calls = max(1, int(np.ceil(0.6 / one_call)))     # at least ~0.6 s inside kernels
    done = threading.Event()

    def busy():
        for _ in range(calls):
            net.predict(X)
        done.set()

    worker = threading.Thread(target=busy)
    beats = []
    worker.start()
    while not done.is_set():
        beats.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    total = beats[-1] - beats[0] if len(beats) > 1 else 0.0
    gaps = np.diff(beats) if len(beats) > 1 else np.array([0.0])
    # With the GIL held during each call the main thread would stall for a
    # whole call (one_call seconds) each time.
    assert len(beats) > 20, (len(beats), total)
    assert gaps.max() < max(0.05, one_call / 3), (gaps.max(), one_call)


def _long_fit_setup(seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 64)).astype(np.float32)
    y = rng.integers(0, 4, size=3000)
    make = lambda: fastmlp.Network([64, 256, 256, 4], activation="relu", output="softmax",  # noqa: E731
                                   loss="log_loss", dtype="float32", seed=seed)
    return make, X, y


def test_fit_while_another_thread_fits_raises_and_corrupts_nothing():
    make, X, y = _long_fit_setup()
    X, y = X[:600], y[:600]
    in_fit, release = threading.Event(), threading.Event()

    def hold(net, epoch, logs):
        # Keeps the first fit in progress (between two epochs) until the main
        # thread has tried its own fit: no timing guesses.
        if epoch == 1:
            in_fit.set()
            release.wait(timeout=60)

    kwargs = dict(epochs=4, learning_rate=0.05, batch_size=64, callbacks=[hold])
    serial = make()
    serial.fit(X, y, **dict(kwargs, callbacks=[lambda *a: None]))
    in_fit.clear()
    net = make()
    result = {}

    def first():
        try:
            result["history"] = net.fit(X, y, **kwargs)
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=first)
    worker.start()
    assert in_fit.wait(timeout=60), "the first fit never reached its second epoch"
    before = net.params.copy()
    try:
        with pytest.raises(RuntimeError, match=r"already training in another thread"):
            net.fit(X, y, epochs=1, learning_rate=0.05, batch_size=64)
        with pytest.raises(RuntimeError, match=r"already training in another thread"):
            net.partial_fit(X, y, learning_rate=0.05)
        assert np.array_equal(net.params, before), "a refused fit changed the weights"
    finally:
        release.set()
        worker.join(timeout=300)
    assert "error" not in result, result.get("error")
    # the refused calls changed nothing: the first fit ran exactly as if alone
    assert np.array_equal(net.params, serial.params)
    assert net.history.loss == serial.history.loss
    # and the network can be trained again afterwards
    net.fit(X[:100], y[:100], epochs=1, learning_rate=0.05)


def test_predict_during_fit_is_safe():
    make, X, y = _long_fit_setup(seed=4)
    net = make()
    serial = make()
    X, y = X[:1500], y[:1500]
    serial.fit(X, y, epochs=20, learning_rate=0.05, batch_size=64)
    result = {}

    def first():
        try:
            net.fit(X, y, epochs=20, learning_rate=0.05, batch_size=64)
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=first)
    worker.start()
    outputs = []
    while worker.is_alive():
        try:
            outputs.append(net.predict(X[:200]))
        except RuntimeError as exc:              # allowed: a clear refusal
            assert "fit" in str(exc)
        time.sleep(0.01)
    worker.join()
    assert "error" not in result, result.get("error")
    for P in outputs:                            # some consistent-enough state: finite probabilities
        assert np.all(np.isfinite(P))
        np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-4)
    assert np.array_equal(net.params, serial.params), "predict disturbed the training run"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_pool_runs_alone_for_a_while_after_a_worker_stalls():
    # _pool.h: a worker that keeps the caller waiting (as when another
    # process takes its core in the middle of a block) makes the next calls
    # run on the caller alone for a while; a worker that keeps pace does not.
    # Each case gets a few tries: a real stall of this shared machine may
    # disturb one.
    from fastmlp import _kernels
    probe = _kernels._pool_stall_probe

    def worker_took_one(caller_s, worker_s):
        # forget past stalls, wait until a worker is up and spinning (it
        # takes one of two blocks), then probe
        assert any(probe(0.001, 0.001, forget=True)[0] == 1 for _ in range(50))
        return probe(caller_s, worker_s, forget=True)

    def stalled_then_alone():
        on_caller, solo = worker_took_one(0.002, 0.012)      # the caller waits 10 ms
        if not (on_caller == 1 and 0.005 < solo <= 0.020):
            return False
        on_caller, left = probe(0.0, 0.012, n_blocks=6)      # the next call: alone
        return on_caller == 6 and 0 < left <= solo

    try:
        assert any(worker_took_one(0.006, 0.003) == (1, 0.0) for _ in range(5))
        assert any(stalled_then_alone() for _ in range(5))
    finally:
        probe(0.0, 0.0, forget=True)


def test_pool_runs_alone_for_a_while_beside_a_slow_worker():
    # _pool.h: a worker that keeps running but slowly (its core shared) never
    # stalls for a millisecond, yet the caller waits longer than it works on
    # every call.  Over a window of 2 ms of calls the caller's own time and
    # its waits are added up; a window that waited longer than it worked
    # sends the next 20 ms of calls to the caller alone (never doubled).  The
    # window's arithmetic is fed here directly: real threads on this shared
    # host neither keep nor lose pace on demand.
    from fastmlp import _kernels
    window = _kernels._pool_window_probe
    try:
        # a worker at a third of the caller's speed: 0.1 ms own, 0.2 ms waited
        assert window(0.0001, 0.0002, 6) == 0.0             # 1.8 ms: no window yet
        assert 0.019 < window(0.0001, 0.0002, 7) <= 0.020   # 2.1 ms: alone
        time.sleep(0.025)                                   # ... then again:
        assert 0.019 < window(0.0001, 0.0002, 7, forget=False) <= 0.020  # not doubled
        # a worker that keeps pace, or one a little slower than the caller
        assert window(0.0001, 0.00001, 400) == 0.0
        assert window(0.0001, 0.000099, 400) == 0.0
        # switched off for measurements
        _kernels._pool_slow_windows(False)
        assert window(0.0001, 0.0002, 70) == 0.0
    finally:
        _kernels._pool_slow_windows(True)
        _kernels._pool_stall_probe(0.0, 0.0, forget=True)


# ----------------------------------------------- signal handlers and fork (issue 24)
SIGNAL_DURING_FIT = r"""
import os, signal, threading
import numpy as np
import fastmlp

class Stop(Exception):
    pass

# the fit takes BLAS turns of 1 thread, the handler's predict wants 2
big = fastmlp.Network([512, 1024, 10], seed=0, n_threads=2)
small = fastmlp.Network([8, 16, 1], seed=0, n_threads=1)
Xb = np.random.default_rng(0).standard_normal((4096, 512))
X = np.random.default_rng(1).standard_normal((2000, 8))
y = (X[:, 0] > 0).astype(float)
outputs = []

def handler(*args):
    outputs.append(big.predict(Xb).shape)
    raise Stop

signal.signal(signal.SIGUSR1, handler)
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
try:
    small.fit(X, y, epochs=10**6, batch_size=BATCH)
except Stop:
    print("STOPPED", outputs, np.isfinite(small.params).all())
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGUSR1"), reason="POSIX signals")
@pytest.mark.parametrize("batch_size", [32, None], ids=["minibatches", "epochs-in-C"])
def test_signal_handler_predicting_during_fit_does_not_deadlock(batch_size):
    # Python code run from inside a kernel call (the fit's signal checks)
    # runs with the call's BLAS thread-count turn released
    code, out, err = run_child(SIGNAL_DURING_FIT.replace("BATCH", repr(batch_size)), timeout=120)
    assert code is not None, "the signal handler's predict waited forever for the fit's turn"
    assert code == 0 and "STOPPED [(4096, 10)] True" in out, err


FORK_DURING_FIT = r"""
import ctypes, multiprocessing, os, threading, time
import numpy as np
import fastmlp
from fastmlp import _blas_threads

small = fastmlp.Network([8, 16, 1], seed=0, n_threads=1)
big = fastmlp.Network([512, 1024, 10], seed=0, n_threads=2)
X = np.random.default_rng(1).standard_normal((2000, 8))
y = (X[:, 0] > 0).astype(float)
Xb = np.random.default_rng(0).standard_normal((4096, 512))
blas = ctypes.CDLL(_blas_threads.BLAS_LIBRARY) if _blas_threads.BLAS_LIBRARY else None
get = (getattr(blas, "scipy_openblas_get_num_threads", None)
       or getattr(blas, "openblas_get_num_threads", None)) if blas else None
user_setting = get() if get else None

def child(queue):
    out = big.predict(Xb)
    queue.put((out.shape, get() if get else None))

# one kernel call for every epoch: the fit holds its turn (1 BLAS thread) throughout
fitting = threading.Thread(target=small.fit, args=(X, y), kwargs=dict(epochs=10**6),
                           daemon=True)
fitting.start()
time.sleep(0.5)
assert fitting.is_alive()
ctx = multiprocessing.get_context("fork")
queue = ctx.Queue()
proc = ctx.Process(target=child, args=(queue,))
proc.start()
proc.join(timeout=60)
if proc.is_alive():
    proc.kill()
    print("HANG", flush=True)
else:
    print("CHILD", queue.get(timeout=10), user_setting, flush=True)
os._exit(0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_forked_child_of_a_fitting_process_gets_its_own_blas_turns():
    # the fitting thread does not survive the fork: the child starts with no
    # turn taken and the user's BLAS thread count back
    code, out, err = run_child(FORK_DURING_FIT, timeout=180)
    assert code == 0 and "HANG" not in out, (out, err)
    line = next(line for line in out.splitlines() if line.startswith("CHILD"))
    _, rest = line.split(" ", 1)
    assert "((4096, 10)," in rest
    shape_and_count, user_setting = rest.rsplit(" ", 1)
    if user_setting != "None":
        assert shape_and_count.endswith(f", {user_setting})"), line
