"""Inference workloads (predict-1, predict-batch) on the trained 784-256-128-10 net."""
import numpy as np
import pytest

from _suite import QUICK, peers, require


@pytest.fixture(scope="module")
def trained():
    return peers.predict_model(QUICK)


@pytest.mark.parametrize("workload", peers.PREDICT_WORKLOADS)
@pytest.mark.parametrize("system", [s for s in peers.SYSTEMS if s != "jax-f64"])
def test_predict(benchmark, trained, system, workload):
    require(system)
    Ws, bs, trained_by = trained
    wl = peers.get_workload(workload, QUICK)
    predictor = peers.make_predictor(system, wl, Ws, bs)
    X = np.ascontiguousarray(peers.predict_input(wl), dtype=peers.system_dtype(system))
    predictor(X)  # warm-up (jit, session, caches)
    benchmark.group = f"{workload}" + (" (quick)" if QUICK else "")
    benchmark.extra_info.update(system=system, rows=int(X.shape[0]),
                                trained_by=trained_by)
    out = benchmark(predictor, X)
    assert np.asarray(out).shape == (X.shape[0], wl.layers[-1])
