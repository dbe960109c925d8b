"""fastmlp.distributed: p ranks equal one process whose every batch is the ranks' batches
concatenated (the spec), under `mpiexec -n 2` and `-n 3` with uneven shards.

The ranks run tests/mpi_rank_equivalence.py once per rank count (every case of
tests/mpi_cases.py in one launch); each test rebuilds one case in this process, step
by step, with Network.partial_fit on the concatenated batches (or Network.fit on
reordered rows for the even-shard cases with schedules, validation and early stopping).
"""
import os

import numpy as np
import pytest

pytest.importorskip("mpi4py")

import fastmlp  # noqa: E402
from fastmlp import _shuffle  # noqa: E402
from fastmlp._mpi_loop import _rank_seed  # noqa: E402

import mpi_cases  # noqa: E402
from mpi_support import mpi_command, run_ranks  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module", params=[2, 3], ids=lambda p: f"{p}-ranks")
def ranks(request, tmp_path_factory):
    """(p, directory of the ranks' results): one mpiexec run per rank count."""
    p = request.param
    out = tmp_path_factory.mktemp(f"ranks{p}")
    proc = run_ranks(p, [os.path.join(HERE, "mpi_rank_equivalence.py"), str(out)], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return p, out


def _load(out, name, p):
    return [dict(np.load(out / f"{name}-{r}.npz")) for r in range(p)]


def _tolerance(case):
    return dict(rtol=1e-5, atol=1e-6) if case["dtype"] == "float32" else dict(rtol=1e-9, atol=1e-11)


def _orders(case, p, epochs):
    """Every rank's row order in every epoch, as the ranks shuffle them."""
    sizes, b = case["shards"][p], case["fit"]["batch_size"]
    seed = int(mpi_cases.network(case)._rng.bit_generator.random_raw() >> 1)
    orders = [np.arange(n, dtype=np.intp) for n in sizes]
    states = [np.array([_rank_seed(seed, r)], dtype=np.uint64) for r in range(p)]
    for _ in range(epochs):
        for r, n in enumerate(sizes):
            if case["fit"].get("shuffle", True) and b is not None and b < n:
                _shuffle.shuffle(orders[r], states[r])
        yield [o.copy() for o in orders]


def _step_by_step(case, p):
    """The single process: one partial_fit (one full-batch step) per concatenated batch."""
    X, y, w, _, _, off = mpi_cases.data(case, p)
    fit = dict(case["fit"])
    epochs, b = fit.pop("epochs"), fit.pop("batch_size")
    fit.pop("shuffle", None)
    fit.pop("average_every", None)
    net, losses, first = mpi_cases.network(case), [], True
    sizes = case["shards"][p]
    total_weight = len(X) if w is None else w.sum()
    for orders in _orders(case, p, epochs):
        total = 0.0
        steps = 1 if b is None else max(-(-n // b) for n in sizes)
        for s in range(steps):
            rows = np.concatenate([off[r] + o[slice(None) if b is None else slice(s * b, (s + 1) * b)]
                                   for r, o in enumerate(orders)])
            h = net.partial_fit(X[rows], y[rows], batch_size=None, shuffle=False,
                                sample_weight=None if w is None else w[rows],
                                reset_optimizer=first, **fit)
            first = False
            total += h.loss[0] * (len(rows) if w is None else w[rows].sum())
        losses.append(total / total_weight)
    return net.params, np.array(losses)


def _reordered_fit(case, p):
    """The single process for even shards: Network.fit on the rows in step order."""
    X, y, w, Xv, yv, off = mpi_cases.data(case, p)
    fit = dict(case["fit"])
    b, n = fit["batch_size"], case["shards"][p][0]
    rows = np.concatenate([np.arange(off[r] + s, off[r] + min(s + b, n))
                           for s in range(0, n, b) for r in range(p)])
    fit["batch_size"] = p * b
    net = mpi_cases.network(case)
    h = net.fit(X[rows], y[rows], sample_weight=None if w is None else w[rows],
                validation_data=(Xv, yv) if case.get("validation") else None, **fit)
    return net.params, h


@pytest.mark.parametrize("name", [n for n, c in mpi_cases.CASES.items() if c.get("compare", True)])
def test_ranks_equal_the_single_process_on_concatenated_batches(ranks, name):
    p, out = ranks
    case = mpi_cases.CASES[name]
    results = _load(out, name, p)
    for r in results[1:]:          # parameters and history identical on every rank
        assert np.array_equal(r["params"], results[0]["params"])
        assert np.array_equal(r["loss"], results[0]["loss"])
    got, tol = results[0], _tolerance(case)
    if case["shards"] is mpi_cases.EVEN:
        params, h = _reordered_fit(case, p)
        np.testing.assert_allclose(got["loss"], h.loss, **tol)
        np.testing.assert_allclose(got["val_loss"], h.val_loss, **tol)
        np.testing.assert_allclose(got["learning_rate"], h.learning_rate, **tol)
        assert got["best_epoch"] == (-1 if h.best_epoch is None else h.best_epoch)
        assert bool(got["stopped_early"]) == h.stopped_early
    else:
        params, losses = _step_by_step(case, p)
        np.testing.assert_allclose(got["loss"], losses, **tol)
    np.testing.assert_allclose(got["params"], params, **tol)


def test_local_sgd_keeps_ranks_identical_and_learns(ranks):
    p, out = ranks
    results = _load(out, "float32-local-3", p)
    for r in results[1:]:
        assert np.array_equal(r["params"], results[0]["params"])
    loss = results[0]["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


def test_one_rank_with_shuffling_is_network_fit_bit_for_bit():
    from mpi4py import MPI
    import fastmlp.distributed as dist
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    for kw in (dict(), dict(momentum=0.9, nesterov=True, clip_norm=0.5),
               dict(optimizer="adam", schedule="invscaling", validation_split=0.2,
                    early_stopping=True, patience=2)):
        a, b = (fastmlp.Network([4, 8, 1], activation="tanh", loss="log_loss", l2=0.1, l1=0.01,
                                seed=0) for _ in range(2))
        ha = dist.fit(a, X, y, comm=MPI.COMM_SELF, epochs=6, batch_size=8, learning_rate=0.05, **kw)
        hb = b.fit(X, y, epochs=6, batch_size=8, learning_rate=0.05, **kw)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
        assert ha.val_loss == pytest.approx(hb.val_loss, rel=1e-12)


def test_dropout_is_refused():
    from mpi4py import MPI
    import fastmlp.distributed as dist
    net = fastmlp.Network([3, 4, 1], seed=0, dropout=0.2)
    with pytest.raises(ValueError, match="distributed fit cannot train a network with dropout=0.2"):
        dist.fit(net, np.ones((4, 3)), np.ones(4), comm=MPI.COMM_SELF, epochs=1)


def test_divergence_is_reported_as_by_network_fit():
    from mpi4py import MPI
    import fastmlp.distributed as dist
    X = np.random.default_rng(1).normal(size=(30, 3)) * 100
    y = X.sum(axis=1)
    a, b = (fastmlp.Network([3, 8, 1], activation="relu", output="identity", seed=0)
            for _ in range(2))
    with pytest.raises(fastmlp.DivergenceError) as dist_err:
        dist.fit(a, X, y, comm=MPI.COMM_SELF, epochs=50, batch_size=10, learning_rate=1.0)
    with pytest.raises(fastmlp.DivergenceError) as fit_err:
        b.fit(X, y, epochs=50, batch_size=10, learning_rate=1.0)
    assert dist_err.value.epoch == fit_err.value.epoch
    assert np.isfinite(a.params).all()
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12)
    np.testing.assert_allclose(dist_err.value.history.loss, fit_err.value.history.loss, rtol=1e-12)


def test_mpiexec_is_found():
    assert mpi_command(2)[0]
