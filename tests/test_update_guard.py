"""The update guard (_update_guard.pxi): every optimizer leaves finite weights."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

OPTIONS = [dict(momentum=0.5), dict(momentum=0.5, nesterov=True), dict(optimizer="adam"),
           dict(clip_norm=1e30), dict(l1=1e-3), dict()]


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: "-".join(map(str, o)) or "sgd")
@pytest.mark.parametrize("epochs", [1, 3])
def test_overflowing_step_keeps_the_last_finite_weights(opt, epochs):
    # issue 24's reproducer: inputs at float32's edge and lr 10 overflow the
    # first update; momentum used to leave [-inf, 0] and return normally
    X = np.array([[3e38], [-3e38]], dtype=np.float32)
    y = np.array([0.0, 1.0])
    opt = dict(opt)
    net = fastmlp.Network([1, 1], output="sigmoid", loss="log_loss", dtype="float32", seed=0,
                          l1=opt.pop("l1", 0.0))
    start = net.params.copy()
    try:
        hist = net.fit(X, y, epochs=epochs, learning_rate=10.0, **opt)
    except fastmlp.DivergenceError as err:
        hist = err.history
        assert "learning_rate" in str(err)
    assert np.all(np.isfinite(net.params)), net.params
    assert np.all(np.isfinite(hist.loss))
    if len(hist.loss) == 0:
        np.testing.assert_array_equal(net.params, start)   # nothing applied


@pytest.mark.parametrize("opt", [dict(optimizer="adam"), dict(momentum=0.9)])
def test_float64_huge_learning_rate_keeps_finite_weights(opt):
    X = np.array([[1e200, 1.0], [-1e200, 2.0]])
    net = fastmlp.Network([2, 3, 1], seed=0)
    try:
        net.fit(X, [0, 1], epochs=3, learning_rate=1e308, **opt)
    except fastmlp.DivergenceError as err:
        assert np.all(np.isfinite(err.history.loss))
    assert np.all(np.isfinite(net.params))
    if opt.get("optimizer") == "adam":      # its first step moves every weight by ~lr
        with pytest.raises(fastmlp.DivergenceError):
            fastmlp.Network([2, 3, 1], seed=0).fit(X, [0, 1], epochs=3, learning_rate=1e308,
                                                   **opt)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learning_rate_beyond_the_dtype_is_refused(optimizer):
    net = fastmlp.Network([2, 3, 1], dtype="float32")
    before = net.params.copy()
    with pytest.raises(ValueError, match="learning_rate must be finite in the network's dtype"):
        net.fit(*fastmlp.datasets.xor(), epochs=2, learning_rate=1e39, optimizer=optimizer)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("opt", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                 dict(optimizer="adam", learning_rate=1e-3)])
def test_guarded_steps_change_nothing_in_range(opt):
    # the guard only decides whether a copy is kept: ordinary fits still
    # match the reference twin
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 5))
    y = rng.integers(0, 2, 64)
    kw = dict(activation="tanh", output="sigmoid", loss="log_loss", seed=3)
    fast, ref = fastmlp.Network([5, 40, 1], **kw), reference.Network([5, 40, 1], **kw)
    opt = dict(opt)
    lr = opt.pop("learning_rate", 0.05)
    fast.fit(X, y, epochs=5, learning_rate=lr, batch_size=16, **opt)
    ref.fit(X, y, epochs=5, learning_rate=lr, batch_size=16, **opt)
    np.testing.assert_allclose(fast.params, ref.params, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt", OPTIONS[:3], ids=["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("column", [0, 7, 12, 19])
def test_one_overflowing_weight_anywhere_is_caught(opt, column):
    # the optimizer's pass checks its values in 8 lanes and a tail: an
    # overflow in any lane or in the tail must still be seen (20 weights and
    # a bias: lanes 0-15, tail 16-20)
    X = np.ones((2, 20), dtype=np.float32)
    X[:, column] = [3e38, -3e38]
    net = fastmlp.Network([20, 1], output="sigmoid", loss="log_loss", dtype="float32", seed=0)
    start = net.params.copy()
    try:
        hist = net.fit(X, [0.0, 1.0], epochs=1, learning_rate=10.0, batch_size=1, **opt)
    except fastmlp.DivergenceError as err:
        hist = err.history
    assert np.all(np.isfinite(net.params)), net.params
    if len(hist.loss) == 0:
        np.testing.assert_array_equal(net.params, start)
