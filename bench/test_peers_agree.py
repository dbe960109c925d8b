"""Not a benchmark: every installed system trains the quick workloads to the same
loss as a float64 NumPy oracle started from the same weights (skipped under
``--benchmark-only``)."""
import numpy as np
import pytest

from _suite import peers, require

TOL = {"float32": 1e-3, "float64": 1e-9}


@pytest.mark.parametrize("workload", ["xor", "clf", "digits"])
@pytest.mark.parametrize("system", [s for s in peers.SYSTEMS
                                    if s not in ("onnxruntime",)])
def test_final_loss_matches_oracle(system, workload):
    require(system)
    pytest.importorskip("sklearn")
    if (system, workload) == ("sklearn", "xor"):
        pytest.skip("MLPClassifier has no squared-error loss")
    wl = peers.get_workload(workload, quick=True)
    data = peers.make_data(workload, True)
    W0, b0, _ = peers.initial_params(wl)
    Wo, bo = peers.np_train([w.copy() for w in W0], [b.copy() for b in b0],
                            data.X, data.Y, wl)
    oracle = peers.np_loss(Wo, bo, data.X, data.Y, wl)
    tr = peers.make_trainer(system, wl)
    tr.run()
    W, b = tr.params()
    loss = peers.np_loss(W, b, data.X, data.Y, wl)
    tol = TOL[str(peers.system_dtype(system))]
    assert abs(loss - oracle) <= tol * abs(oracle), (system, workload, loss, oracle)


def test_predictors_agree():
    pytest.importorskip("sklearn")
    wl = peers.get_workload("predict-batch", quick=True)
    Ws, bs, _ = peers.predict_model(True)
    X = peers.predict_input(wl)
    ref = peers.np_forward([w.astype(np.float64) for w in Ws],
                           [b.astype(np.float64) for b in bs],
                           X.astype(np.float64), wl.hidden, wl.output)
    for system in peers.SYSTEMS:
        if not peers.supports(system, wl):
            continue
        try:
            p = peers.make_predictor(system, wl, Ws, bs)
        except peers.Unavailable:
            continue
        out = np.asarray(p(np.ascontiguousarray(X, peers.system_dtype(system))))
        assert np.max(np.abs(out - ref)) < 1e-5, system
