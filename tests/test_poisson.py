"""Poisson regression: output 'exp' with loss 'poisson' (the half Poisson
deviance), in Network, the reference twin, every step kind, and MLPRegressor
against scikit-learn's MLPRegressor(loss="poisson")."""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from helpers import step_parity

KW = dict(output="exp", loss="poisson")


def _counts(n=120, n_in=4, n_out=1, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    rate = np.exp(0.3 * X[:, :1] - 0.2 * X[:, 1:2] + 0.5)
    Y = rng.poisson(np.repeat(rate, n_out, axis=1)).astype(float)
    return X.astype(dtype), Y.astype(dtype)


def test_objective_and_prediction_by_hand():
    # one layer, no hidden units: z = 2 x + 0.5
    net = fastmlp.Network([1, 1], activation="identity", **KW)
    net.weights[0][...] = 2.0
    net.biases[0][...] = 0.5
    X = np.array([[0.0], [1.0], [-1.0]])
    Y = np.array([[2.0], [0.0], [1.0]])
    z = np.array([0.5, 2.5, -1.5])
    np.testing.assert_allclose(net.predict(X)[:, 0], np.exp(z), rtol=1e-15)
    # y log(y / e^z) - y + e^z, 0 log 0 = 0
    rows = [2 * math.log(2 / math.exp(0.5)) - 2 + math.exp(0.5), math.exp(2.5),
            1 * math.log(1 / math.exp(-1.5)) - 1 + math.exp(-1.5)]
    assert net.loss(X, Y) == pytest.approx(sum(rows) / 3, rel=1e-14)
    (dW, db), = net.gradients(X, Y)
    delta = (np.exp(z) - Y[:, 0]) / 3                      # d/dz = e^z - y
    assert db[0] == pytest.approx(delta.sum(), rel=1e-14)
    assert dW[0, 0] == pytest.approx(np.dot(X[:, 0], delta), rel=1e-14)


def test_zero_at_a_perfect_prediction():
    net = fastmlp.Network([2, 1], activation="identity", **KW)
    net.weights[0][...] = [[0.4], [-0.3]]
    net.biases[0][...] = 0.1
    X = np.random.default_rng(0).normal(size=(20, 2))
    assert net.loss(X, net.predict(X)) == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_large_logits_overflow_to_inf_as_numpy_does(dtype):
    net = fastmlp.Network([1, 1], activation="identity", dtype=dtype, **KW)
    net.weights[0][...] = 1.0
    z = np.array([[-800.0], [0.0], [85.0], [88.5], [700.0], [709.5], [800.0]], dtype=dtype)
    with np.errstate(over="ignore"):
        want = np.exp(z.astype(np.float64)).astype(dtype)
    got = net.predict(z)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    # (the kernels' exp stops at e^-87 in float32, e^-708 in float64: 1.6e-38, 3e-308)
    np.testing.assert_allclose(got[finite], want[finite], rtol=3e-6 if dtype == "float32" else 1e-14,
                               atol=1e-37 if dtype == "float32" else 1e-307)


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
def test_negative_targets_and_wrong_pairings_are_refused(cls):
    net = cls([2, 3, 1], activation="tanh", **KW)
    X = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"Y must hold targets >= 0 for loss='poisson'.*-1"):
        net.fit(X, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"Y must hold targets >= 0"):
        net.loss(X, np.array([[1.0], [-0.5]]))
    with pytest.raises(ValueError, match=r"loss='poisson' and output='exp' go together"):
        cls([2, 1], output="identity", loss="poisson")
    with pytest.raises(ValueError, match=r"loss='poisson' and output='exp' go together"):
        cls([2, 1], output="exp", loss="squared_error")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["tanh", "relu", "gelu", "softplus"])
def test_gradient_is_central_differences(act, dtype):
    X, Y = _counts(30, 3, 2, seed=1)
    net = fastmlp.Network([3, 5, 2], activation=act, dtype="float64", seed=3, l2=0.1, **KW)
    eps = 1e-6
    base = net.params.copy()
    numeric = np.empty_like(base)
    for i in range(base.size):
        net.params[...] = base
        net.params[i] += eps
        up = net.loss(X, Y)
        net.params[i] -= 2 * eps
        numeric[i] = (up - net.loss(X, Y)) / (2 * eps)
    net.params[...] = base
    grads = net.gradients(X, Y)
    flat = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    np.testing.assert_allclose(flat, numeric, rtol=1e-6, atol=1e-8)
    if dtype == "float32":           # the float32 kernels' gradient, to float32 rounding
        net32 = fastmlp.Network([3, 5, 2], activation=act, dtype="float32", seed=3, l2=0.1, **KW)
        net32.params[...] = base
        g32 = net32.gradients(X.astype(np.float32), Y.astype(np.float32))
        flat32 = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in g32])
        np.testing.assert_allclose(flat32, flat, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("step,sizes,bs,n,dtypes", [
    ("layers", [8, 40, 24, 2], 32, 150, ("float32", "float64")),
    ("rows", [64, 128, 64, 10], 64, 300, ("float32",)),
    ("units", [64, 128, 10], 32, 300, ("float32",)),
    ("first", [512, 256, 64, 8], 128, 300, ("float32",)),
    ("narrow", [5, 12, 7, 2], 64, 300, ("float32", "float64")),
])
def test_every_step_kind_matches_the_reference(step, sizes, bs, n, dtypes):
    for dtype in dtypes:
        step_parity(step, sizes, bs, n=n, dtype=dtype, activation="tanh", threads=(1, 2),
                    fit={"learning_rate": 0.002}, **KW)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_epochs_step_matches_the_reference(dtype):
    step_parity("narrow-epochs", [2, 3, 1], None, n=4, dtype=dtype, activation="tanh",
                threads=(1,), fit={"epochs": 100, "learning_rate": 0.05}, **KW)


def test_fit_learns_the_rate():
    X, Y = _counts(2000, 2, seed=4)
    net = fastmlp.Network([2, 8, 1], activation="tanh", seed=0, **KW)
    hist = net.fit(X, Y, epochs=60, batch_size=64, optimizer="adam", learning_rate=0.01)
    rate = np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1] + 0.5)
    # the deviance of the true rates is the floor (the counts' own noise)
    floor = np.mean(np.where(Y[:, 0] > 0, Y[:, 0] * np.log(np.maximum(Y[:, 0], 1) / rate), 0)
                    - Y[:, 0] + rate)
    assert hist.loss[-1] < hist.loss[0] and hist.loss[-1] < 1.03 * floor
    assert np.corrcoef(net.predict(X)[:, 0], rate)[0, 1] > 0.95
    assert 0 < net.score(X, Y) < 1                         # R², a regressor's score


def test_save_load_and_onnx(tmp_path):
    X, Y = _counts(50, 4, 2, seed=2, dtype="float32")
    net = fastmlp.Network([4, 6, 2], activation="softplus", dtype="float32", seed=1, **KW)
    net.fit(X, Y, epochs=3, learning_rate=0.01)
    back = fastmlp.load(net.save(tmp_path / "p.npz"))
    assert (back.output, back.loss_name) == ("exp", "poisson")
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    session = ort.InferenceSession(net.to_onnx().SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"X": X})[0], net.predict(X), rtol=1e-6,
                               atol=1e-6)


# ---------------------------------------------------- the scikit-learn estimator
sklearn = pytest.importorskip("sklearn")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kwargs", [dict(solver="sgd", learning_rate_init=0.01),
                                    dict(solver="adam", learning_rate_init=0.01, alpha=0.01),
                                    dict(solver="adam", batch_size=300, activation="tanh"),
                                    dict(solver="lbfgs", max_iter=15)])
def test_regressor_follows_sklearns_poisson_loss(kwargs):
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor
    from fastmlp.estimators import MLPRegressor
    X, Y = _counts(300, 4, 1, seed=7)
    kw = dict(loss="poisson", hidden_layer_sizes=(8,), random_state=0)
    kw.update({"max_iter": 25}, **kwargs)
    ours, ref = MLPRegressor(**kw).fit(X, Y[:, 0]), SkMLPRegressor(**kw).fit(X, Y[:, 0])
    assert ours.out_activation_ == ref.out_activation_ == "exp"
    assert ours.n_iter_ == ref.n_iter_
    if kwargs["solver"] != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-8)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-7)


def test_regressor_refuses_negative_targets_naming_y():
    from fastmlp.estimators import MLPRegressor
    X, Y = _counts(20, 2)
    with pytest.raises(ValueError, match=r"y must hold values >= 0 for loss='poisson'.*-2"):
        MLPRegressor(loss="poisson", hidden_layer_sizes=(3,)).fit(X, Y[:, 0] - 2 - Y[:, 0])
    with pytest.raises(ValueError, match=r"loss must be 'squared_error' or 'poisson'; got 'gamma'"):
        MLPRegressor(loss="gamma").fit(X, Y[:, 0])


def test_from_sklearn_converts_a_poisson_regressor():
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor
    from fastmlp import interop
    X, Y = _counts(100, 3, seed=3)
    sk = SkMLPRegressor(loss="poisson", hidden_layer_sizes=(5,), max_iter=20,
                        random_state=0).fit(X, Y[:, 0])
    net = interop.from_sklearn(sk)
    assert (net.output, net.loss_name) == ("exp", "poisson")
    # a single-output regressor's network predicts shape (n,), as scikit-learn
    np.testing.assert_allclose(net.predict(X), sk.predict(X), rtol=1e-12)
