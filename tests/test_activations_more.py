"""Hidden activations leaky_relu, gelu (tanh approximation) and softplus:
values by hand, slopes, large |z| in float32, every step kind against the twin."""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from helpers import make_targets, step_parity

NEW = ["leaky_relu", "gelu", "softplus"]
POINTS = np.array([-1e30, -100.0, -40.5, -20.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 20.0,
                   100.0, 1e30])


def _gelu(x):
    """By hand: x/2 (1 + tanh(u)) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x +
    0.044715 x^3) (the second form has no cancellation for x < 0), 0 below -40."""
    if x < -40:
        return 0.0
    two_u = 2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return x if two_u > 700 else x / (1 + math.exp(-two_u))


HAND = {
    "leaky_relu": lambda x: x if x > 0 else 0.01 * x,
    "softplus": lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))),
    "gelu": _gelu,
}


def _hidden_values(act, z, dtype):
    """The compiled forward pass of one hidden unit: a [1, 1, 1] network whose
    first layer is z = x and output the hidden value itself."""
    net = fastmlp.Network([1, 1, 1], activation=act, output="identity", dtype=dtype)
    net.weights[0][...] = 1
    net.weights[1][...] = 1
    return net.predict(np.asarray(z, dtype=dtype).reshape(-1, 1))[:, 0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", NEW)
def test_values_by_hand_including_large_magnitudes(act, dtype):
    z = POINTS.astype(dtype)
    got = _hidden_values(act, z, dtype)
    want = np.array([HAND[act](float(x)) for x in z])
    assert np.isfinite(got).all()
    # (float32: the kernels' exp stops at e^-87, so a value that tiny reads 1.6e-38, not
    # below; float64's stops at e^-708)
    rtol, atol = (1e-13, 1e-300) if dtype == "float64" else (3e-6, 1e-30)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(reference.HIDDEN[act][0](z), want, rtol=rtol, atol=atol)


def test_a_few_values_written_out():
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(_hidden_values("leaky_relu", z, "float64"),
                               [-0.02, -0.01, 0.0, 1.0, 2.0], rtol=1e-15)
    # (exact to 17 digits, from mpmath at 40)
    np.testing.assert_allclose(_hidden_values("softplus", z, "float64"),
                               [0.12692801104297250, 0.31326168751822283, 0.69314718055994531,
                                1.3132616875182228, 2.1269280110429725], rtol=1e-14)
    # tanh-approximate gelu (PyTorch's GELU(approximate="tanh"))
    np.testing.assert_allclose(_hidden_values("gelu", z, "float64"),
                               [-0.045402305912224981, -0.15880800939172330, 0.0,
                                0.84119199060827670, 1.9545976940877750], rtol=1e-14)


@pytest.mark.parametrize("act", NEW)
def test_nan_stays_nan_and_infinities(act):
    # pre-activations that overflow to +-inf (X itself must be finite), and a NaN bias
    for dtype in ("float32", "float64"):
        big = np.finfo(dtype).max
        net = fastmlp.Network([1, 1, 1], activation=act, output="identity", dtype=dtype)
        net.weights[0][...] = 4
        net.weights[1][...] = 1
        got = net.predict(np.array([[big], [-big]], dtype=dtype))[:, 0]   # 4 big: +-inf
        assert got[0] == np.inf
        if act == "leaky_relu":
            assert got[1] == -np.inf
        else:               # 0, or softplus's e^-87 (float32) / e^-708 (float64)
            assert 0 <= got[1] <= (2e-38 if dtype == "float32" else 4e-308)
        net.biases[0][...] = np.nan
        assert np.isnan(net.predict(np.zeros((1, 1), dtype=dtype))[0, 0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", NEW)
def test_slopes_are_central_differences_of_the_values(act, dtype):
    # the gradient of the [1, 1, 1] identity-output network's squared error with
    # respect to b1 (y = 0, unit weights) is a * f'(z): its slope times its value
    z = np.array([-60.0, -8.0, -2.5, -0.75, -0.1, 0.0, 0.1, 0.3, 0.6, 1.4, 4.0, 30.0, 60.0])
    f, slope = reference.HIDDEN[act]
    h = 1e-6 * np.maximum(1.0, np.abs(z))
    numeric = (f(z + h) - f(z - h)) / (2 * h)
    smooth = z != 0                      # (leaky_relu's kink: its slope there is 0.01)
    np.testing.assert_allclose(slope(z, f(z))[smooth], numeric[smooth], rtol=1e-7, atol=1e-9)
    for x in z:
        net = fastmlp.Network([1, 1, 1], activation=act, output="identity", dtype=dtype)
        net.weights[0][...] = 1
        net.weights[1][...] = 1
        net.biases[0][...] = x
        (_, db1), _ = net.gradients(np.zeros((1, 1), dtype=dtype), np.zeros((1, 1), dtype=dtype))
        a = f(np.float64(x))
        tol = 1e-12 if dtype == "float64" else 2e-6
        np.testing.assert_allclose(db1[0], a * slope(np.float64(x), a), rtol=tol,
                                   atol=tol * max(1.0, abs(a)))


def test_float32_large_magnitudes_train_without_nan():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(64, 4)) * 1e4).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    for act in NEW:
        net = fastmlp.Network([4, 8, 1], activation=act, output="sigmoid", loss="log_loss",
                              dtype="float32", seed=0)
        hist = net.fit(X, y, epochs=3, learning_rate=1e-6)
        assert np.isfinite(hist.loss).all() and np.isfinite(net.params).all()


def test_slope_bounds_of_the_update_guard():
    # _update_guard.pxi: |gelu'| <= 1.13, |softplus(z)| <= |z| + 0.6932, |leaky'| <= 1
    z = np.linspace(-12, 12, 240001)
    f, slope = reference.HIDDEN["gelu"]
    assert 1.128 < np.max(np.abs(slope(z, f(z)))) < 1.13
    assert np.max(reference.softplus(z) - np.abs(z)) == pytest.approx(math.log(2), abs=1e-12)


# -------------------------------------------------- every step kind vs the twin
@pytest.mark.parametrize("act", NEW)
@pytest.mark.parametrize("step,sizes,bs,n,dtypes,extra", [
    ("layers", [8, 40, 24, 3], 32, 150, ("float32", "float64"), {}),
    ("rows", [64, 128, 64, 10], 64, 300, ("float32",), {}),
    ("units", [64, 128, 10], 32, 300, ("float32",), {}),
    ("first", [512, 256, 64, 8], 128, 300, ("float32",), {"learning_rate": 0.02}),
    ("narrow", [5, 12, 7, 3], 64, 300, ("float32", "float64"), {}),
])
def test_every_step_kind_matches_the_reference(act, step, sizes, bs, n, dtypes, extra):
    for dtype in dtypes:
        step_parity(step, sizes, bs, n=n, dtype=dtype, activation=act, output="softmax",
                    loss="log_loss", threads=(1, 2), fit=extra)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", NEW)
def test_narrow_epochs_step_matches_the_reference(act, dtype):
    step_parity("narrow-epochs", [2, 3, 1], None, n=4, dtype=dtype, activation=act,
                output="sigmoid", loss="squared_error", threads=(1,),
                fit={"epochs": 100, "learning_rate": 0.5})


@pytest.mark.parametrize("act", NEW)
def test_optimizers_and_full_pass_match_the_reference(act):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 6))
    Y = make_targets(rng, 90, 3, "softmax", "log_loss")
    for opt in ({"optimizer": "adam", "learning_rate": 1e-2},
                {"momentum": 0.9, "nesterov": True, "learning_rate": 0.05, "clip_norm": 1.0}):
        kw = dict(activation=act, output="softmax", loss="log_loss", seed=1, l2=0.01)
        fast, ref = fastmlp.Network([6, 20, 9, 3], **kw), reference.Network([6, 20, 9, 3], **kw)
        fast.fit(X, Y, epochs=4, batch_size=16, **opt)
        ref.fit(X, Y, epochs=4, batch_size=16, **opt)
        np.testing.assert_allclose(fast.params, ref.params, rtol=1e-10, atol=1e-12)
        tf, tr = fast.trace(X[:7], Y[:7]), ref.trace(X[:7], Y[:7])
        for f, r in zip(tf, tr):
            for name in f._fields:
                np.testing.assert_allclose(getattr(f, name), getattr(r, name), rtol=1e-11,
                                           atol=1e-13)


@pytest.mark.parametrize("act", NEW)
def test_save_load_round_trip(act, tmp_path):
    net = fastmlp.Network([3, 5, 2], activation=act, output="softmax", loss="log_loss", seed=2)
    X = np.random.default_rng(0).normal(size=(10, 3))
    net.fit(X, np.arange(10) % 2, epochs=2, learning_rate=0.1)
    path = net.save(tmp_path / "m.npz")
    back = fastmlp.load(path)
    assert back.activation == act
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_time_against_relu_and_tanh():
    """The new activations' fit time relative to relu's (a gross-regression guard:
    measured ratios are in the report; here each must stay within 3x of tanh's)."""
    import time
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=2048)
    best = {}
    for act in ["relu", "tanh"] + NEW:
        net = fastmlp.Network([64, 256, 256, 10], activation=act, output="softmax",
                              loss="log_loss", dtype="float32", seed=0, n_threads=1)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            net.fit(X, y, epochs=2, batch_size=128, learning_rate=0.01)
            times.append(time.perf_counter() - t0)
        best[act] = min(times)
    for act in NEW:
        assert best[act] < 3 * best["tanh"], best


@pytest.mark.parametrize("act", NEW)
def test_cli_trains_with_the_new_activations(act, tmp_path, capsys):
    from fastmlp import cli
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(300, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[X, y], delimiter=",", header="a,b,y", comments="", fmt="%.6g")
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(data), "--target", "y", "--hidden", "16", "--activation", act,
                     "--epochs", "100", "--lr", "0.01", "--out", str(model), "--quiet"]) == 0
    net = fastmlp.load(model)
    assert net.activation == act
    assert net.init == ("xavier" if act == "softplus" else "he")
    accuracy = float(capsys.readouterr().out.split("held-out accuracy ")[1].split("%")[0])
    assert accuracy > 80
