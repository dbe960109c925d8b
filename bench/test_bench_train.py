"""Training workloads (xor, clf, digits, mnist-shape) for every system."""
import numpy as np
import pytest

from _suite import QUICK, peers, require, rounds_for, time_once

TRAIN_SYSTEMS = [s for s in peers.SYSTEMS if s != "onnxruntime"]


@pytest.mark.parametrize("workload", peers.TRAIN_WORKLOADS)
@pytest.mark.parametrize("system", TRAIN_SYSTEMS)
def test_train(benchmark, system, workload):
    require(system)
    if workload in ("clf", "digits"):
        pytest.importorskip("sklearn")  # the data sets come from scikit-learn
    wl = peers.get_workload(workload, QUICK)
    trainer = peers.make_trainer(system, wl)
    t = time_once(trainer.run, trainer.reset)  # warm-up, sizes the rounds
    benchmark.group = f"train {workload}" + (" (quick)" if QUICK else "")
    benchmark.extra_info.update(system=system, workload=workload,
                                epochs=wl.epochs, quick=QUICK)
    if trainer.compile_s is not None:
        benchmark.extra_info["compile_s"] = trainer.compile_s
    benchmark.pedantic(trainer.run, setup=trainer.reset, rounds=rounds_for(t),
                       iterations=1, warmup_rounds=0)
    data = peers.make_data(workload, QUICK)
    W, b = trainer.params()
    loss = peers.np_loss(W, b, data.X, data.Y, wl)
    benchmark.extra_info["final_loss"] = loss
    assert np.isfinite(loss)
