"""The Network API: shapes, views, reproducibility, history, divergence."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

NETS = [fastmlp.Network, reference.Network]
IDS = ["compiled", "reference"]


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_shapes_and_views(cls):
    net = cls([4, 6, 3, 2], output="softmax", loss="log_loss", seed=0)
    assert [W.shape for W in net.weights] == [(4, 6), (6, 3), (3, 2)]
    assert [b.shape for b in net.biases] == [(6,), (3,), (2,)]
    assert net.n_params == 4 * 6 + 6 + 6 * 3 + 3 + 3 * 2 + 2 == net.params.size
    assert net.n_layers == 3
    for W, b in zip(net.weights, net.biases):
        assert np.shares_memory(W, net.params) and np.shares_memory(b, net.params)
        assert not b.any()
    net.weights[1][0, 0] = 42.0                    # views write through to params
    assert 42.0 in net.params
    X = np.ones((5, 4))
    P = net.predict(X)
    assert P.shape == (5, 2) and P.dtype == np.float64
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    grads = net.gradients(X, [0, 1, 1, 0, 1])
    assert [(dW.shape, db.shape) for dW, db in grads] == [((4, 6), (6,)), ((6, 3), (3,)), ((3, 2), (2,))]


@pytest.mark.parametrize("init,std", [("plain", 0.1), ("xavier", np.sqrt(1 / 400)), ("he", np.sqrt(2 / 400))])
def test_initialisation_scales(init, std):
    net = fastmlp.Network([400, 300, 1], init=init, seed=1)
    assert net.weights[0].std() == pytest.approx(std, rel=0.02)
    assert abs(net.weights[0].mean()) < 0.01 * std * 10
    assert not net.biases[0].any()


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_same_seed_same_run_bit_for_bit(cls):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30).astype(float)
    runs = []
    for _ in range(2):
        net = cls([3, 5, 1], output="sigmoid", loss="log_loss", seed=11)
        h = net.fit(X, y, epochs=7, learning_rate=0.3, batch_size=4, shuffle=True)
        runs.append((net.params.copy(), h.loss))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    other = cls([3, 5, 1], output="sigmoid", loss="log_loss", seed=12)
    assert not np.array_equal(other.params, runs[0][0])


def test_shuffle_changes_the_batch_order_but_not_full_batch_training():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.random(20)
    a = fastmlp.Network([3, 4, 1], seed=0)
    b = fastmlp.Network([3, 4, 1], seed=0)
    a.fit(X, y, epochs=3, learning_rate=0.5, batch_size=5, shuffle=True)
    b.fit(X, y, epochs=3, learning_rate=0.5, batch_size=5, shuffle=False)
    assert not np.allclose(a.params, b.params)
    c = fastmlp.Network([3, 4, 1], seed=0)
    d = fastmlp.Network([3, 4, 1], seed=0)
    c.fit(X, y, epochs=3, learning_rate=0.5, shuffle=True)
    d.fit(X, y, epochs=3, learning_rate=0.5, shuffle=False)
    assert np.array_equal(c.params, d.params)


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_history_records_the_objective_of_each_epoch(cls):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(16, 2)), rng.random(16)
    net = cls([2, 3, 1], l2=0.1, seed=0)
    start = net.loss(X, y)
    hist = net.fit(X, y, epochs=25, learning_rate=0.5)
    assert isinstance(hist, fastmlp.History) and len(hist) == hist.epochs == 25
    assert hist.loss[0] == pytest.approx(start, rel=1e-12)     # full batch: loss before the epoch
    assert hist.loss[-1] < hist.loss[0]
    assert hist.seconds > 0 and net.history is hist


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_loss_definitions(cls):
    X = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 0.0]])
    net = cls([2, 2], output="sigmoid", loss="log_loss", l2=0.4, seed=3)
    Y = np.array([[1, 0], [0, 1], [1, 1]], float)
    p = 1 / (1 + np.exp(-(X @ net.weights[0] + net.biases[0])))
    expected = -np.mean(np.sum(Y * np.log(p) + (1 - Y) * np.log(1 - p), axis=1))
    expected += 0.4 / (2 * 3) * np.sum(net.weights[0] ** 2)
    assert net.loss(X, Y) == pytest.approx(expected, rel=1e-12)

    net = cls([2, 3], output="softmax", loss="log_loss", seed=3)
    z = X @ net.weights[0] + net.biases[0]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([2, 0, 1])
    assert net.loss(X, labels) == pytest.approx(-np.mean(np.log(p[np.arange(3), labels])), rel=1e-12)

    net = cls([2, 2], output="identity", loss="squared_error", seed=3)
    Y = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    err = Y - (X @ net.weights[0] + net.biases[0])
    assert net.loss(X, Y) == pytest.approx(np.sum(err ** 2) / (2 * 3), rel=1e-12)


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_stable_for_huge_logits(cls):
    net = cls([1, 2], output="sigmoid", loss="log_loss", seed=0)
    net.weights[0][...] = [[1.0, -1.0]]
    X = np.array([[1e4], [-1e4]])
    Y = np.array([[1.0, 0.0], [1.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = net.loss(X, Y)
    assert loss == pytest.approx(1e4, rel=1e-12)     # the second row costs 2e4, averaged over 2
    P = net.predict(X)
    assert np.all(np.isfinite(P)) and P[0, 0] == 1.0 and 0 <= P[1, 0] < 1e-300
    soft = cls([1, 3], output="softmax", loss="log_loss", seed=0)
    soft.weights[0][...] = [[1.0, 0.0, -1.0]]
    assert soft.loss(np.array([[1e4]]), [2]) == pytest.approx(2e4, rel=1e-12)


@pytest.mark.parametrize("dtype,rel", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_softmax_log_loss_keeps_its_digits_when_confident(cls, dtype, rel):
    # margins 5..25: per-row losses log1p(sum exp(-margin)) from 1e-2 down
    # to 1e-11, each to the dtype's relative precision (not to absolute
    # rounding of a log-sum-exp near 1)
    margins = np.array([5.0, 10.0, 17.0, 25.0])
    net = cls([1, 3], output="softmax", loss="log_loss", dtype=dtype, seed=0)
    net.weights[0][...] = [[0.0, 0.0, 0.0]]
    for m in margins:
        net.biases[0][...] = [m, 0.0, -1.0]
        exact = np.log1p(np.exp(-m) + np.exp(-m - 1.0))
        assert net.loss(np.zeros((1, 1), dtype), [0]) == pytest.approx(exact, rel=rel)


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_softmax_log_loss_over_many_close_classes(cls):
    # sum_j p_j / p_max from 1 to ~k (log1p's argument past 1, up to 2^11);
    # soft targets and sample weights; rows enough for several blocks of
    # the kernel's loop (64 rows)
    rng = np.random.default_rng(3)
    for k, spread in [(3, 0.0), (10, 1.0), (300, 0.5), (2000, 0.01)]:
        net = cls([4, k], output="softmax", loss="log_loss", seed=0)
        net.weights[0][...] = rng.normal(scale=spread, size=(4, k))
        X = rng.normal(size=(150, 4))
        Y = rng.random((150, k))
        Y /= Y.sum(axis=1, keepdims=True)
        w = rng.random(150)
        z = X @ net.weights[0] + net.biases[0]
        lse = z.max(axis=1) + np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1))
        rows = np.sum(Y * (lse[:, None] - z), axis=1)
        assert net.loss(X, Y) == pytest.approx(rows.mean(), rel=1e-12)
        assert net.loss(X, Y, sample_weight=w) == pytest.approx(np.sum(w * rows) / w.sum(),
                                                                rel=1e-12)


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_no_call_modifies_its_inputs(cls):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(9, 3)).astype(np.float32)
    Y = rng.integers(0, 3, size=9)
    X0, Y0 = X.copy(), Y.copy()
    net = cls([3, 4, 3], output="softmax", loss="log_loss", dtype="float32", seed=0)
    net.predict(X)
    net.loss(X, Y)
    net.gradients(X, Y)
    net.trace(X, Y)
    net.fit(X, Y, epochs=3, learning_rate=0.1, batch_size=2)
    fastmlp.check_gradients(net, X, Y, eps=1e-2)
    assert np.array_equal(X, X0) and np.array_equal(Y, Y0)


def test_float32_network_keeps_float32():
    net = fastmlp.Network([3, 2, 1], dtype="float32", seed=0)
    assert net.params.dtype == np.float32
    assert net.predict(np.zeros((2, 3))).dtype == np.float32
    assert all(dW.dtype == np.float32 for dW, _ in net.gradients(np.zeros((2, 3)), np.zeros(2)))


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_divergence_raises_and_keeps_finite_weights(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(scale=10, size=(20, 4))
    y = rng.normal(scale=10, size=20)
    net = cls([4, 8, 1], activation="identity", output="identity", seed=0)
    with pytest.raises(fastmlp.DivergenceError, match=r"epoch \d+.*learning_rate") as info:
        net.fit(X, y, epochs=500, learning_rate=5.0)
    err = info.value
    assert 1 < err.epoch <= 500 and len(err.history.loss) == err.epoch - 1   # numbered from 1
    assert np.all(np.isfinite(err.history.loss))
    assert np.all(np.isfinite(net.params))


def test_reference_and_compiled_share_initialisation():
    a = fastmlp.Network([5, 4, 2], init="he", seed=9, dtype="float32")
    b = reference.Network([5, 4, 2], init="he", seed=9, dtype="float32")
    assert np.array_equal(a.params, b.params)
    c = fastmlp.Network([5, 4, 2], init="he", seed=9)
    np.testing.assert_allclose(c.params, a.params, rtol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_same_whether_X_is_ready_or_converted(dtype):
    # ready arrays take predict's one-call path; the rest are converted first
    net = fastmlp.Network([5, 70, 4], output="softmax", loss="log_loss", dtype=dtype, seed=3)
    twin = reference.Network([5, 70, 4], output="softmax", loss="log_loss", dtype=dtype)
    twin.set_params(net.params)
    # float32 values, so that every conversion below is exact
    X = np.random.default_rng(0).normal(size=(3, 5)).astype("float32").astype("float64")
    ready = X.astype(dtype)
    expected = twin.predict(ready)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for given in [ready, X.tolist(), X.astype("float32" if dtype == "float64" else "float64"),
                  np.asfortranarray(ready), ready.astype(ready.dtype.newbyteorder())]:
        P = net.predict(given)
        assert P.dtype == net.dtype and P.shape == (3, 4)
        np.testing.assert_allclose(P, expected, rtol=tol, atol=tol)
    for n_threads in (1, 2):            # a changed n_threads is taken up by the next call
        net.n_threads = n_threads
        np.testing.assert_allclose(net.predict(ready), expected, rtol=tol, atol=tol)
    ready[1, 2] = np.inf
    with pytest.raises(ValueError, match="X must be finite"):
        net.predict(ready)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_ready_targets_are_taken_as_they_are_and_still_checked(dtype, loss):
    # a 2-D Y of the network's dtype, C order and shape takes fit's fast check
    net = fastmlp.Network([3, 4, 2], output="sigmoid", loss=loss, dtype=dtype, seed=1)
    Y = np.array([[0, 1], [1, 0.5], [0.25, 0]], dtype=dtype)
    assert net._check_Y(Y, 3) is Y
    for bad, message in [(np.nan, "Y must be finite"), (np.inf, "Y must be finite")]:
        Z = Y.copy()
        Z[2, 1] = bad
        with pytest.raises(ValueError, match=message):
            net.fit(np.zeros((3, 3), dtype), Z, epochs=1)
    Z = Y.copy()
    Z[1, 0] = 1.5
    if loss == "log_loss":
        with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
            net.fit(np.zeros((3, 3), dtype), Z, epochs=1)
    else:
        assert net._check_Y(Z, 3) is Z
    with pytest.raises(ValueError, match="Y must have 3 rows"):
        net.fit(np.zeros((3, 3), dtype), Y[:2], epochs=1)


def test_shuffle_seed_is_integers_below_two_to_the_63():
    # fit draws its shuffle seed as the top 63 bits of one raw draw: the value
    # and generator state integers(0, 2**63) would give
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(1000):
        assert (a.bit_generator.random_raw() >> 1) == b.integers(0, 2**63)
    assert a.random() == b.random()


@pytest.mark.parametrize("cls", NETS, ids=IDS)
def test_predict_follows_the_params_of_its_own_copy(cls):
    # predict keeps its kernel arguments between calls: a copy made after a
    # predict must read its own params
    import copy
    import pickle
    net = cls([3, 5, 2], output="softmax", loss="log_loss", dtype="float32", seed=0)
    X = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    before = net.predict(X)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        other.params[:] = 0                     # every output: uniform 1/2
        np.testing.assert_array_equal(other.predict(X), np.full((4, 2), 0.5, "float32"))
        np.testing.assert_array_equal(net.predict(X), before)


@pytest.mark.parametrize("cls", NETS, ids=IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_params_start_on_a_cache_line_also_after_pickling(cls, dtype):
    import copy
    import pickle
    net = cls([3, 7, 2], dtype=dtype, seed=0)
    for other in (net, pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert other.params.ctypes.data % 64 == 0
        assert other.params.shape == (net.n_params,) and other.params.dtype == net.dtype
        np.testing.assert_array_equal(other.params, net.params)
        assert all(np.shares_memory(W, other.params) for W in other.weights)
    assert copy.copy(net).params is net.params          # a shallow copy still shares
