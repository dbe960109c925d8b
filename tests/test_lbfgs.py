"""fit(optimizer='lbfgs'): scipy's L-BFGS-B on one compiled full-batch pass an evaluation."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _kernels, reference

from helpers import COMBOS, make_targets

# L-BFGS amplifies rounding from step to step: after 15 iterations float64 runs
# agree to ~1e-13; float32 runs agree to ~4e-5 on one machine and up to 5.6e-4
# on another (an AVX2 one: softplus-softmax-squared_error), so float32 runs are
# compared after 8 iterations (<= 7% of TOL over COMBOS on the AVX2 machine).
TOL = {"float64": 1e-10, "float32": 5e-4}
ITERATIONS = {"float64": 15, "float32": 8}


def pair(dtype, act="tanh", out="softmax", loss="log_loss", l2=0.05, l1=0.0, n=40, seed=0):
    kw = dict(activation=act, output=out, loss=loss, l2=l2, l1=l1, dtype=dtype, seed=seed,
              init="he")
    fast, ref = fastmlp.Network([5, 6, 4, 3], **kw), reference.Network([5, 6, 4, 3], **kw)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(dtype)
    return fast, ref, X, make_targets(rng, n, 3, out, loss, dtype), rng


# ------------------------------------------------------- against the reference
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_lbfgs_matches_reference(act, out, loss, dtype):
    fast, ref, X, Y, _ = pair(dtype, act, out, loss)
    hf = fast.fit(X, Y, epochs=ITERATIONS[dtype], optimizer="lbfgs")
    hr = ref.fit(X, Y, epochs=ITERATIONS[dtype], optimizer="lbfgs")
    scale = np.abs(ref.params).max()
    np.testing.assert_allclose(fast.params, ref.params, rtol=TOL[dtype], atol=TOL[dtype] * scale)
    assert len(hf.loss) == len(hr.loss) > 0
    np.testing.assert_allclose(hf.loss, hr.loss, rtol=TOL[dtype])
    assert hf.loss[-1] == pytest.approx(fast.loss(X, Y), rel=TOL[dtype])     # the last iterate


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lbfgs_with_weights_and_l1_matches_reference(dtype):
    fast, ref, X, Y, rng = pair(dtype, "relu", "sigmoid", "squared_error", l1=0.01)
    w = rng.random(X.shape[0]) * 2
    w[3] = 0.0
    fast.fit(X, Y, epochs=10, optimizer="lbfgs", sample_weight=w)
    ref.fit(X, Y, epochs=10, optimizer="lbfgs", sample_weight=w)
    scale = np.abs(ref.params).max()
    np.testing.assert_allclose(fast.params, ref.params, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def test_one_kernel_call_an_evaluation(monkeypatch):
    fast, _, X, Y, _ = pair("float64")
    calls = []
    full_pass = _kernels.full_pass

    def counting(*args, **kwargs):
        calls.append(1)
        return full_pass(*args, **kwargs)

    monkeypatch.setattr(_kernels, "full_pass", counting)
    hist = fast.fit(X, Y, epochs=20, optimizer="lbfgs")
    assert len(calls) == hist.optimizer_result.nfev


# ------------------------------------------------------------ stopping rules
def test_converges_to_a_small_gradient():
    fast, _, X, Y, _ = pair("float64", n=60)
    hist = fast.fit(X, Y, epochs=5000, optimizer="lbfgs", tol=1e-6)
    assert hist.optimizer_result.success, hist.optimizer_result.message
    grads = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in fast.gradients(X, Y)])
    if "GRADIENT" in hist.optimizer_result.message:
        assert np.abs(grads).max() <= 1e-6
    assert np.abs(grads).max() < 1e-3
    assert hist.loss[-1] == pytest.approx(fast.loss(X, Y), rel=1e-12)


def test_epochs_and_max_fun_limit_the_run():
    fast, _, X, Y, _ = pair("float64")
    hist = fast.fit(X, Y, epochs=7, optimizer="lbfgs", tol=0.0)
    assert len(hist.loss) == 7 and hist.optimizer_result.status == 1
    fast, _, X, Y, _ = pair("float64")
    hist = fast.fit(X, Y, epochs=1000, optimizer="lbfgs", tol=0.0, max_fun=5)
    # scipy checks maxfun between iterations: one line search (<= 20 evaluations) may pass it
    assert hist.optimizer_result.status == 1 and hist.optimizer_result.nfev <= 5 + 20
    assert len(hist.loss) < 1000


def test_validation_early_stopping_and_callbacks():
    fast, _, X, Y, _ = pair("float64", n=80)
    seen = []
    hist = fast.fit(X[:60], Y[:60], epochs=200, optimizer="lbfgs", tol=0.0,
                    validation_data=(X[60:], Y[60:]), early_stopping=True, patience=3,
                    callbacks=[lambda net, epoch, logs: seen.append((epoch, logs["val_loss"]))])
    assert len(hist.val_loss) == len(hist.loss) == len(seen) == len(hist.val_accuracy)
    assert hist.stopped_early and hist.best_epoch == int(np.argmin(hist.val_loss)) + 1   # numbered from 1
    assert fast.loss(X[60:], Y[60:]) == pytest.approx(min(hist.val_loss), rel=1e-12)
    fast, _, X, Y, _ = pair("float64")
    hist = fast.fit(X, Y, epochs=100, optimizer="lbfgs", callbacks=[lambda n, e, logs: fastmlp.STOP if e == 5 else None])
    assert len(hist.loss) == 5 and hist.stopped_early
    assert hist.loss[-1] == pytest.approx(fast.loss(X, Y), rel=1e-12)


def test_interrupt_keeps_the_last_iteration():
    fast, _, X, Y, _ = pair("float64")
    kept = []

    def interrupt(net, epoch, logs):
        kept.append(net.params.copy())
        if epoch == 4:                       # the 4th iteration (numbered from 1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fast.fit(X, Y, epochs=100, optimizer="lbfgs", callbacks=[interrupt])
    np.testing.assert_array_equal(fast.params, kept[-1])
    assert len(fast.history.loss) == 4
    fast.fit(X, Y, epochs=3, optimizer="lbfgs")          # and trains on


def test_float32_stays_float32_and_verbose_shows_progress(capsys):
    fast, _, X, Y, _ = pair("float32")
    start = fast.loss(X, Y)
    hist = fast.fit(X, Y, epochs=20, optimizer="lbfgs", verbose=True)
    assert fast.params.dtype == np.float32 and hist.loss[-1] < start
    captured = capsys.readouterr()
    assert f"{len(hist.loss)}/20" in captured.out + captured.err


def test_non_finite_start_is_a_divergence_error():
    fast, _, X, Y, _ = pair("float64", "identity", "identity", "squared_error")
    with pytest.raises(fastmlp.DivergenceError) as info:
        fast.fit(X * 1e300, Y, epochs=10, optimizer="lbfgs")
    assert info.value.epoch == 1 and np.isfinite(fast.params).all()


# ------------------------------------------------------------- bad settings
BAD = [
    (dict(batch_size=32), "batch_size must be None; got 32"),
    (dict(momentum=0.9), "momentum must be 0.0; got 0.9"),
    (dict(nesterov=True), "nesterov must be False; got True"),
    (dict(schedule="plateau"), "schedule must be 'constant'; got 'plateau'"),
    (dict(clip_norm=1.0), "clip_norm must be None; got 1.0"),
    (dict(max_fun=0), "max_fun must be >= 1"),
    (dict(epochs=0), "epochs must be >= 1"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_lbfgs_settings_are_refused_before_training(kwargs, message):
    fast, _, X, Y, _ = pair("float64")
    before = fast.params.copy()
    with pytest.raises(ValueError, match=message):
        fast.fit(X, Y, **{"epochs": 5, "optimizer": "lbfgs", **kwargs})
    assert np.array_equal(fast.params, before)


def test_partial_fit_has_no_lbfgs():
    fast, _, X, Y, _ = pair("float64")
    with pytest.raises(ValueError, match="optimizer must be 'sgd', 'adam', 'rmsprop' or 'adamw'; "
                                         "got 'lbfgs'"):
        fast.partial_fit(X, Y, optimizer="lbfgs")
