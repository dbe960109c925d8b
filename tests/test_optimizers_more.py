"""Optimizers "rmsprop" (PyTorch's RMSprop, no momentum) and "adamw" (PyTorch's
AdamW): the compiled loop against the reference twin on every step kind the
planner takes, the fused update of step "layers", single steps computed by
hand from the formulas, the argument checks, and continued fits."""
import math
import pickle

import numpy as np
import pytest

import fastmlp
from fastmlp import _kernels, reference
from helpers import make_targets, randomise_biases, step_parity

OPTIMIZERS = {
    "rmsprop": dict(optimizer="rmsprop", learning_rate=1e-3, rho=0.8),
    "adamw": dict(optimizer="adamw", learning_rate=1e-3, weight_decay=0.5),
}
COMBOS = [("tanh", "softmax", "log_loss"), ("relu", "identity", "squared_error"),
          ("sigmoid", "sigmoid", "log_loss")]


# ------------------------------------------------------------ reference parity
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_layers_step_matches_reference(opt, dtype, act, out, loss):
    step_parity("layers", [12, 24, 3], 32, n=300, dtype=dtype, activation=act, output=out,
                loss=loss, fit=dict(OPTIMIZERS[opt], epochs=4), threads=(1, 3))


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_rows_step_matches_reference(opt, act, out, loss):
    # 64-row batches of 64-128-64-10 split into row parts (float32 only)
    step_parity("rows", [64, 128, 64, 10], 64, n=300, activation=act, output=out, loss=loss,
                fit=OPTIMIZERS[opt], threads=(1, 2, 4))


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_narrow_step_matches_reference(opt, dtype, act, out, loss):
    step_parity("narrow", [5, 12, 7, 3], 64, n=300, dtype=dtype, activation=act, output=out,
                loss=loss, fit=dict(OPTIMIZERS[opt], epochs=4), threads=(1, 2))


def _pair(sizes, dtype, n=150, seed=1, l2=0.0, l1=0.0, act="tanh", out="softmax",
          loss="log_loss"):
    """A compiled network, its reference twin (same weights) and data."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = make_targets(rng, n, sizes[-1], out, loss, dtype)
    kw = dict(activation=act, output=out, loss=loss, dtype=dtype, seed=seed, l2=l2, l1=l1)
    net, ref = fastmlp.Network(sizes, **kw), reference.Network(sizes, **kw)
    randomise_biases(net, np.random.default_rng(seed + 1), 0.2)
    ref.params[...] = net.params
    return net, ref, X, Y


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [1, 7, 50, None])
def test_planned_steps_match_reference(opt, dtype, batch_size):
    # the planner's own choice for batches of one row, a short last batch,
    # and the full batch; weights, L2 and a shuffle
    net, ref, X, Y = _pair([6, 16, 3], dtype, l2=0.2)
    w = np.random.default_rng(5).random(len(X)) + 0.5
    fit = dict(OPTIMIZERS[opt], epochs=3, batch_size=batch_size, sample_weight=w)
    hist, ref_hist = net.fit(X, Y, **fit), ref.fit(X, Y, **fit)
    assert sum(hist.steps.values()) > 0
    tol = 1e-10 if dtype == "float64" else 3e-5
    np.testing.assert_allclose(net.params, ref.params, rtol=tol, atol=tol)
    np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=10 * tol)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("extra", [dict(clip_norm=0.05), dict(l1=1e-2)], ids=["clip", "l1"])
def test_clipping_and_l1_match_reference(opt, extra):
    # the separate pass (neither fuses into the products)
    net, ref, X, Y = _pair([8, 20, 3], "float64", l1=extra.get("l1", 0.0))
    net.strategy = "layers"
    fit = dict(OPTIMIZERS[opt], epochs=3, batch_size=16, clip_norm=extra.get("clip_norm"))
    hist, _ = net.fit(X, Y, **fit), ref.fit(X, Y, **fit)
    assert hist.steps["layers"] > 0 and hist.fused_updates == 0
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------ the fused update
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,batch_size", [([6, 9, 3], 4), ([64, 128, 64, 5], 64)])
def test_fused_update_runs_and_equals_the_separate_pass(opt, dtype, sizes, batch_size):
    runs = []
    for fused in (True, False):
        net, _, X, Y = _pair(sizes, dtype, n=200, l2=0.3)
        net.strategy = "layers"
        previous = _kernels.set_fused_update(fused)
        try:
            hist = net.fit(X, Y, epochs=2, batch_size=batch_size, **OPTIMIZERS[opt])
        finally:
            _kernels.set_fused_update(previous)
        runs.append((net.params.copy(), hist))
    (fused_params, fused_hist), (separate_params, separate_hist) = runs
    steps = fused_hist.steps["layers"]
    assert steps == -(-200 // batch_size) * 2
    assert fused_hist.fused_updates == steps and separate_hist.fused_updates == 0
    np.testing.assert_array_equal(fused_params, separate_params)
    assert fused_hist.loss == separate_hist.loss


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_fused_update_is_the_same_on_any_thread_count(opt):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(256, 64)).astype(np.float32)
    Y = make_targets(rng, 256, 5, "softmax", "log_loss", np.float32)
    runs = []
    for t in (1, 2, 3):
        net = fastmlp.Network([64, 128, 64, 5], activation="relu", output="softmax",
                              loss="log_loss", dtype="float32", seed=2, n_threads=t)
        net.strategy = "layers"
        hist = net.fit(X, Y, epochs=2, batch_size=64, **OPTIMIZERS[opt])
        assert hist.fused_updates == hist.steps["layers"] > 0
        runs.append(net.params.copy())
    for params in runs[1:]:
        np.testing.assert_array_equal(params, runs[0])


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_a_diverging_fit_keeps_its_last_finite_weights(opt):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(64, 8)) * 1e3).astype(np.float32)
    Y = make_targets(rng, 64, 3, "softmax", "log_loss", np.float32)
    net = fastmlp.Network([8, 32, 3], activation="relu", output="softmax", loss="log_loss",
                          dtype="float32", seed=0)
    fit = dict(OPTIMIZERS[opt], learning_rate=1e37)
    with pytest.raises(fastmlp.DivergenceError) as info:
        net.fit(X, Y, epochs=50, batch_size=8, **fit)
    assert np.isfinite(net.params).all()
    assert info.value.epoch >= 1 and np.isfinite(net._optimizer.state).all()


# ------------------------------------------------------------ by hand
# a 2-1 network, identity output, squared error, one row: z = x . W + b,
# g = (z - y) * [x, 1]
X1 = np.array([[1.0, 2.0]])
Y1 = np.array([[0.5]])
P0 = [0.3, -0.2, 0.1]


def _gradient(p):
    z = X1[0, 0] * p[0] + X1[0, 1] * p[1] + p[2]
    d = z - Y1[0, 0]
    return [X1[0, 0] * d, X1[0, 1] * d, d]


def _rmsprop_by_hand(steps, lr, rho, eps):
    p, v = list(P0), [0.0] * 3
    for _ in range(steps):
        g = _gradient(p)
        v = [rho * vi + (1 - rho) * gi * gi for vi, gi in zip(v, g)]
        p = [pi - lr * gi / (math.sqrt(vi) + eps) for pi, gi, vi in zip(p, g, v)]
    return p


def _adamw_by_hand(steps, lr, wd, b1, b2, eps):
    """torch.optim.AdamW's documented algorithm, line by line."""
    p, m, v = list(P0), [0.0] * 3, [0.0] * 3
    for t in range(1, steps + 1):
        g = _gradient(p)
        p = [pi * (1 - lr * wd) for pi in p]
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        m_hat = [mi / (1 - b1 ** t) for mi in m]
        v_hat = [vi / (1 - b2 ** t) for vi in v]
        p = [pi - lr * mh / (math.sqrt(vh) + eps) for pi, mh, vh in zip(p, m_hat, v_hat)]
    return p


def _tiny(cls, dtype):
    net = cls([2, 1], output="identity", loss="squared_error", dtype=dtype, seed=0)
    net.params[...] = P0
    return net


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rmsprop_single_step_by_hand(cls, dtype):
    net = _tiny(cls, dtype)
    net.fit(X1, Y1, epochs=1, learning_rate=0.01, optimizer="rmsprop", rho=0.9, epsilon=1e-8)
    # g = (0 - 0.5) * [1, 2, 1]; v = 0.1 g^2; each value moves by lr / (sqrt(0.1) + eps / |g|)
    step = 0.01 / (math.sqrt(0.1) + 1e-8 / 0.5), 0.01 / (math.sqrt(0.1) + 1e-8 / 1.0)
    want = [0.3 + step[0], -0.2 + step[1], 0.1 + step[0]]
    assert want == pytest.approx([0.33162277, -0.16837723, 0.13162277], abs=1e-8)
    rtol = 1e-14 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(net.params, want, rtol=rtol)
    np.testing.assert_allclose(net._optimizer.state, [0.025, 0.1, 0.025], rtol=rtol)


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adamw_single_step_by_hand(cls, dtype):
    # epsilon 0.1: PyTorch's sqrt(v_hat) + eps (not scikit-learn's sqrt(v) + eps)
    net = _tiny(cls, dtype)
    net.fit(X1, Y1, epochs=1, learning_rate=0.01, optimizer="adamw", weight_decay=0.5,
            epsilon=0.1)
    # p *= 1 - 0.01 * 0.5; m_hat = g, v_hat = g^2; p -= lr g / (|g| + eps)
    want = [0.3 * 0.995 + 0.01 * 0.5 / 0.6, -0.2 * 0.995 + 0.01 * 1.0 / 1.1,
            0.1 * 0.995 + 0.01 * 0.5 / 0.6]
    assert want == pytest.approx([0.3068333333, -0.1899090909, 0.1078333333], abs=1e-9)
    rtol = 1e-14 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(net.params, want, rtol=rtol)
    assert int(net._optimizer.step[0]) == 1


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
def test_several_steps_follow_the_formulas(cls):
    net = _tiny(cls, "float64")
    net.fit(X1, Y1, epochs=5, learning_rate=0.05, optimizer="rmsprop", rho=0.7, epsilon=1e-3)
    np.testing.assert_allclose(net.params, _rmsprop_by_hand(5, 0.05, 0.7, 1e-3), rtol=1e-13)
    net = _tiny(cls, "float64")
    net.fit(X1, Y1, epochs=5, learning_rate=0.05, optimizer="adamw", weight_decay=0.3,
            beta1=0.8, beta2=0.95, epsilon=0.05)
    np.testing.assert_allclose(net.params, _adamw_by_hand(5, 0.05, 0.3, 0.8, 0.95, 0.05),
                               rtol=1e-13)


@pytest.mark.parametrize("opt", ["rmsprop", "adamw"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
def test_a_first_step_follows_the_central_difference_gradient(opt, act, out, loss):
    # the compiled loop's first full-batch step from the objective's
    # numerical gradient g: a large epsilon keeps the step's size g's
    # (v = (1 - rho) g^2, and AdamW's v_hat = g^2 at its first step)
    from fastmlp.gradcheck import check_gradients
    net, _, X, Y = _pair([3, 5, 2], "float64", n=30, l2=0.4, act=act, out=out, loss=loss)
    before = net.params.copy()
    g = check_gradients(net, X, Y).numeric
    lr, eps = 0.1, 0.5
    if opt == "rmsprop":
        want = before - lr * g / (np.sqrt(0.2) * np.abs(g) + eps)
        net.fit(X, Y, epochs=1, learning_rate=lr, optimizer=opt, rho=0.8, epsilon=eps)
    else:
        want = before * (1 - lr * 0.3) - lr * g / (np.abs(g) + eps)
        net.fit(X, Y, epochs=1, learning_rate=lr, optimizer=opt, weight_decay=0.3, epsilon=eps)
    np.testing.assert_allclose(net.params, want, rtol=1e-7, atol=1e-9)


def test_adamw_without_decay_is_adam_up_to_epsilon():
    # with weight_decay 0 and a negligible epsilon AdamW takes Adam's steps;
    # weight decay pulls every parameter toward 0 beside them
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Y = X @ np.array([[1.0], [-2.0], [0.5]])
    nets = {}
    for name, kw in [("adam", dict(optimizer="adam")),
                     ("adamw0", dict(optimizer="adamw", weight_decay=0.0)),
                     ("adamw", dict(optimizer="adamw", weight_decay=5.0))]:
        net = fastmlp.Network([3, 1], output="identity", seed=1)
        net.fit(X, Y, epochs=20, learning_rate=0.01, batch_size=8, epsilon=1e-12, **kw)
        nets[name] = net.params
    np.testing.assert_allclose(nets["adamw0"], nets["adam"], rtol=1e-9)
    assert np.abs(nets["adamw"]).sum() < np.abs(nets["adam"]).sum()


# ------------------------------------------------------------ arguments
@pytest.mark.parametrize("name,value,exc", [
    ("rho", 1.0, ValueError), ("rho", -0.1, ValueError), ("rho", float("nan"), ValueError),
    ("rho", "0.9", TypeError), ("weight_decay", -1e-3, ValueError),
    ("weight_decay", float("inf"), ValueError), ("weight_decay", None, TypeError),
    ("epsilon", 0.0, ValueError), ("momentum", 0.9, ValueError), ("nesterov", True, ValueError),
])
@pytest.mark.parametrize("opt", ["rmsprop", "adamw"])
def test_bad_settings_are_refused_naming_them(opt, name, value, exc):
    net = fastmlp.Network([2, 3, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(exc, match=name):
        net.fit(X1, Y1, epochs=1, optimizer=opt, **{name: value})
    np.testing.assert_array_equal(net.params, before)


def test_the_kernels_refuse_an_unknown_optimizer_code():
    net = fastmlp.Network([2, 1], seed=0)
    with pytest.raises(ValueError, match="optimizer must be a code 0 to 3; got 7"):
        _kernels.train(net.params, X1, Y1, None, net._sizes, 1, 1, 0, 0.1, 0.0, 0.0, 1, 1,
                       np.arange(1, dtype=np.intp), False, np.ones(1, dtype=np.uint64),
                       np.zeros(1), optimizer=7)


def test_estimators_keep_scikit_learns_solvers():
    from fastmlp.estimators import MLPRegressor
    with pytest.raises(ValueError, match="solver must be 'lbfgs', 'sgd' or 'adam'; got 'adamw'"):
        MLPRegressor(solver="adamw").fit(np.ones((4, 2)), np.ones(4))


def test_distributed_fits_refuse_them():
    MPI = pytest.importorskip("mpi4py.MPI")
    from fastmlp import distributed
    net = fastmlp.Network([2, 1], output="identity", seed=0)
    for opt in ("rmsprop", "adamw"):
        with pytest.raises(ValueError, match=f"distributed fit's optimizer .* got '{opt}'"):
            distributed.fit(net, X1, Y1, comm=MPI.COMM_SELF, epochs=1, optimizer=opt)


def test_plan_knows_them():
    net = fastmlp.Network([12, 24, 3], seed=0)
    for opt in ("rmsprop", "adamw"):
        assert net.plan(300, 32, optimizer=opt, strategy="layers")["step"] == "layers"


# ------------------------------------------------------------ continued fits
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_partial_fit_continues_the_state(opt):
    # full batches without a shuffle: fit's epochs are partial_fit's calls
    net, _, X, Y = _pair([4, 8, 3], "float64")
    twin = fastmlp.Network([4, 8, 3], activation="tanh", output="softmax", loss="log_loss",
                           seed=1)
    twin.params[...] = net.params
    net.fit(X, Y, epochs=3, shuffle=False, **OPTIMIZERS[opt])
    for _ in range(3):
        twin.partial_fit(X, Y, shuffle=False, **OPTIMIZERS[opt])
    np.testing.assert_array_equal(twin.params, net.params)
    # other settings: a fresh state
    twin.partial_fit(X, Y, shuffle=False, **dict(OPTIMIZERS[opt], epsilon=1e-4))
    assert twin._optimizer.epsilon == 1e-4


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_then_fit_equals_fitting_on(opt, dtype, tmp_path):
    # the file keeps the weights and the shuffle's generator; fit starts a
    # fresh optimizer state either way
    net, _, X, Y = _pair([6, 16, 3], dtype)
    twin = fastmlp.Network.load(net.save(tmp_path / "start.npz"))
    fit = dict(OPTIMIZERS[opt], epochs=2, batch_size=16)
    net.fit(X, Y, **fit)
    net.fit(X, Y, **fit)
    twin.fit(X, Y, **fit)
    resumed = fastmlp.Network.load(twin.save(tmp_path / "middle.npz"))
    resumed.fit(X, Y, **fit)
    np.testing.assert_array_equal(resumed.params, net.params)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_a_pickled_network_continues_its_optimizer_state(opt):
    net, _, X, Y = _pair([6, 16, 3], "float64")
    twin = pickle.loads(pickle.dumps(net))
    fit = dict(OPTIMIZERS[opt], batch_size=16)
    for _ in range(4):
        net.partial_fit(X, Y, **fit)
    twin.partial_fit(X, Y, **fit)
    twin.partial_fit(X, Y, **fit)
    resumed = pickle.loads(pickle.dumps(twin))
    assert resumed._optimizer.name == opt and resumed._optimizer.state.any()
    resumed.partial_fit(X, Y, **fit)
    resumed.partial_fit(X, Y, **fit)
    np.testing.assert_array_equal(resumed.params, net.params)
    # a fresh state (the file's) takes other steps
    fresh = pickle.loads(pickle.dumps(twin))
    fresh.partial_fit(X, Y, reset_optimizer=True, **fit)
    fresh.partial_fit(X, Y, **fit)
    assert not np.array_equal(fresh.params, net.params)


# ------------------------------------------------------------ command line
def _csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    path = tmp_path / "d.csv"
    rows = "\n".join(f"{a:.17g},{b:.17g},{a - 2 * b:.17g}" for a, b in X)
    path.write_text("p,q,y\n" + rows + "\n")
    return path


@pytest.mark.parametrize("opt", ["rmsprop", "adamw"])
def test_the_command_line_trains_with_them(opt, tmp_path, capsys):
    from fastmlp import cli
    code = cli.main(["train", str(_csv(tmp_path)), "--target", "y", "--hidden", "8",
                     "--epochs", "40", "--optimizer", opt, "--quiet",
                     "--out", str(tmp_path / "m.npz")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{opt} lr 0.001" in out                  # sgd's 0.01 is sgd's only


def test_the_command_line_refuses_them_with_mpi(tmp_path, capsys):
    pytest.importorskip("mpi4py")
    from fastmlp import cli
    code = cli.main(["train", str(_csv(tmp_path)), "--target", "y", "--optimizer", "adamw",
                     "--mpi", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "--optimizer adamw runs in one process: --mpi trains with adam or sgd" in err


def test_a_state_pickled_before_rho_and_weight_decay_continues():
    # an OptimizerState from an earlier version has neither attribute: the
    # class's defaults (fit's) stand in, so partial_fit keeps its moments
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(40, 4)), rng.random((40, 1))
    net = fastmlp.Network([4, 5, 1], seed=0)
    net.partial_fit(X, Y, learning_rate=1e-3, optimizer="adam")
    del net._optimizer.__dict__["rho"], net._optimizer.__dict__["weight_decay"]
    old = pickle.loads(pickle.dumps(net))
    net.partial_fit(X, Y, learning_rate=1e-3, optimizer="adam")
    old.partial_fit(X, Y, learning_rate=1e-3, optimizer="adam")
    assert int(old._optimizer.step[0]) == int(net._optimizer.step[0]) > 1
    np.testing.assert_array_equal(old.params, net.params)
