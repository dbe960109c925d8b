"""Inverted dropout (Network(dropout=p)): the compiled fits against the NumPy twin,
central-difference gradients of the masked network, the masks' statistics and
determinism, and the settings dropout refuses."""
import copy

import numpy as np
import pytest

import fastmlp
from fastmlp import _dropout, reference
from fastmlp.network import DROPOUT_REASON

from helpers import HIDDEN, make_targets

OUTS = [("sigmoid", "log_loss"), ("softmax", "log_loss"), ("identity", "squared_error")]
# (layer_sizes, rows, batch_size): batches of 1 row, uneven last batches, full
# batches (None), several hidden layers, products on both sides of the BLAS switch
SHAPES = [([3, 5, 2], 6, 1), ([4, 7, 6, 3], 23, 5), ([5, 9, 3], 12, None),
          ([12, 40, 33, 3], 70, 32)]
OPTIMIZERS = {"sgd": dict(optimizer="sgd"),
              "momentum": dict(optimizer="sgd", momentum=0.9),
              "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True),
              "adam": dict(optimizer="adam"), "rmsprop": dict(optimizer="rmsprop"),
              "adamw": dict(optimizer="adamw")}
TOL = {"float64": 1e-11, "float32": 2e-5}


def _pair(sizes, act, out, loss, dtype, p=0.3, seed=0, l2=0.0):
    if out == "softmax" and sizes[-1] < 2:
        sizes = sizes[:-1] + [2]
    kw = dict(activation=act, output=out, loss=loss, dtype=dtype, seed=seed, l2=l2,
              init="he", dropout=p)
    return fastmlp.Network(sizes, **kw), reference.Network(sizes, **kw)


def _data(net, n, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, net.layer_sizes[0])).astype(net.dtype)
    return X, make_targets(rng, n, net.layer_sizes[-1], net.output, net.loss_name, net.dtype)


def _assert_twins(fast, ref, h_fast, h_ref):
    tol = TOL[fast.dtype.name]
    scale = max(1.0, float(np.max(np.abs(ref.params))))
    np.testing.assert_allclose(fast.params, ref.params, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, rtol=tol * 10, atol=tol)
    assert h_fast.steps["layers"] > 0 and sum(h_fast.steps.values()) == h_fast.steps["layers"]


# ----------------------------------------------------------------- parity
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("out,loss", OUTS)
@pytest.mark.parametrize("act", HIDDEN)
def test_plain_sgd_fit_matches_the_twin(act, out, loss, shape, dtype):
    sizes, n, batch = SHAPES[shape]
    fast, ref = _pair(list(sizes), act, out, loss, dtype, seed=shape, l2=0.1)
    X, Y = _data(fast, n, seed=10 + shape)
    lr = 0.01 if out == "identity" or act == "identity" else 0.2
    fit = dict(epochs=3, learning_rate=lr, batch_size=batch)
    _assert_twins(fast, ref, fast.fit(X, Y, **fit), ref.fit(X, Y, **fit))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_every_optimizer_matches_the_twin(opt, shape, dtype):
    sizes, n, batch = SHAPES[shape]
    act = ("relu", "gelu", "tanh", "softplus")[shape]
    fast, ref = _pair(list(sizes), act, "softmax", "log_loss", dtype, p=0.25, seed=shape)
    X, Y = _data(fast, n, seed=20 + shape)
    fit = dict(epochs=3, learning_rate=0.01 if opt in ("adam", "rmsprop", "adamw") else 0.1,
               batch_size=batch, clip_norm=5.0 if opt == "momentum" else None,
               **OPTIMIZERS[opt])
    _assert_twins(fast, ref, fast.fit(X, Y, **fit), ref.fit(X, Y, **fit))


def test_weighted_fit_with_validation_and_l1_matches_the_twin():
    # per-epoch kernel calls (validation): the batch count runs on across them
    fast, ref = _pair([6, 16, 8, 1], "tanh", "sigmoid", "log_loss", "float64", p=0.5)
    fast.l1 = ref.l1 = 0.01
    X, Y = _data(fast, 40)
    sw = np.random.default_rng(2).random(40)
    fit = dict(epochs=4, learning_rate=0.1, batch_size=7, sample_weight=sw,
               validation_split=0.25, optimizer="adam")
    h_fast, h_ref = fast.fit(X, Y, **fit), ref.fit(X, Y, **fit)
    _assert_twins(fast, ref, h_fast, h_ref)
    np.testing.assert_allclose(h_fast.val_loss, h_ref.val_loss, rtol=1e-11)


def test_epochs_in_one_kernel_call_equal_epochs_one_call_each():
    a, b = (fastmlp.Network([5, 12, 3], activation="relu", output="softmax", loss="log_loss",
                            seed=4, dropout=0.4) for _ in range(2))
    X, Y = _data(a, 30)
    a.fit(X, Y, epochs=5, batch_size=4)
    b.fit(X, Y, epochs=5, batch_size=4, callbacks=[lambda net, epoch, logs: None])
    assert np.array_equal(a.params, b.params)


def test_partial_fit_matches_the_twin_and_draws_a_key_a_call():
    fast, ref = _pair([4, 10, 2], "sigmoid", "softmax", "log_loss", "float64", p=0.2)
    X, Y = _data(fast, 17)
    for _ in range(3):
        h_fast = fast.partial_fit(X, Y, learning_rate=0.3, batch_size=6)
        h_ref = ref.partial_fit(X, Y, learning_rate=0.3, batch_size=6)
    _assert_twins(fast, ref, h_fast, h_ref)


def test_sparse_X_with_dropout_equals_the_dense_fit():
    sparse = pytest.importorskip("scipy.sparse")
    a, b = (fastmlp.Network([30, 16, 2], activation="relu", output="softmax", loss="log_loss",
                            seed=1, dropout=0.3) for _ in range(2))
    rng = np.random.default_rng(3)
    X = sparse.random(50, 30, density=0.03, random_state=3, format="csr")
    Y = np.eye(2)[rng.integers(0, 2, 50)]
    h = a.fit(X, Y, epochs=2, batch_size=8)
    b.fit(X.toarray(), Y, epochs=2, batch_size=8)
    assert h.steps["layers"] > 0 and h.steps["sparse"] == 0
    assert np.array_equal(a.params, b.params)


# ---------------------------------------------------------- gradient check
def _key_of_next_fit(net):
    """The dropout key the next fit of ``net`` draws (after the shuffle's seed)."""
    rng = copy.deepcopy(net._rng)
    rng.bit_generator.random_raw()
    return int(rng.bit_generator.random_raw())


@pytest.mark.parametrize("update", ["fused", "general"])
@pytest.mark.parametrize("out,loss", OUTS)
@pytest.mark.parametrize("act", HIDDEN)
def test_applied_gradient_is_the_masked_networks(act, out, loss, update):
    sizes = [4, 7, 6, 3]
    net = fastmlp.Network(sizes, activation=act, output=out, loss=loss, seed=5, init="he",
                          dropout=0.4, l2=0.05)
    X, Y = _data(net, 9, seed=6)
    twin = reference.Network(sizes, activation=act, output=out, loss=loss, l2=0.05,
                             dropout=0.4)
    twin.params[...] = net.params
    drop = (_key_of_next_fit(net), 0)
    before, lr = net.params.copy(), 1e-3
    momentum = 0.5 if update == "general" else 0.0      # first step: p -= lr * g either way
    h = net.fit(X, Y, epochs=1, learning_rate=lr, momentum=momentum)
    applied = (before - net.params) / lr

    def masked_loss(p):
        twin.params[...] = p
        return twin._full_pass(X, Y, None, False, drop=drop)[0]

    numeric, eps = np.empty(net.n_params), 1e-6
    for k in range(net.n_params):
        step = np.zeros(net.n_params)
        step[k] = eps
        numeric[k] = (masked_loss(before + step) - masked_loss(before - step)) / (2 * eps)
    # (the division by lr leaves the update's rounding, ~1e-16 / 1e-3, in the gradient)
    np.testing.assert_allclose(applied, numeric, rtol=1e-5, atol=1e-8)
    # the recorded loss is the dropped network's, at the starting weights
    assert h.loss[0] == pytest.approx(masked_loss(before), rel=1e-12)
    assert h.loss[0] != pytest.approx(twin.loss(X, Y), rel=1e-9)     # (not the full network's)


# ------------------------------------------------------------------ masks
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_is_one_minus_p(p):
    n = 400 * 500
    for t, layer in [(0, 0), (7, 1), (123456, 2)]:
        kept = _dropout.keep_mask(2024, t, layer, 400, 500, p).mean()
        se = np.sqrt(p * (1 - p) / n)
        assert abs(kept - (1 - p)) < 4 * se, (t, layer, kept)


def test_masks_of_other_batches_layers_and_keys_are_independent():
    p, shape = 0.5, (300, 200)
    base = _dropout.keep_mask(1, 0, 0, *shape, p)
    for other in (_dropout.keep_mask(1, 1, 0, *shape, p), _dropout.keep_mask(1, 0, 1, *shape, p),
                  _dropout.keep_mask(2, 0, 0, *shape, p)):
        agree = (base == other).mean()          # 1/2 for independent masks
        assert abs(agree - 0.5) < 4 * np.sqrt(0.25 / base.size)


def test_threshold_is_exact_and_factors_scale_the_kept():
    assert _dropout.threshold(0.5) == 2 ** 52
    assert _dropout.threshold(2.0 ** -60) == 1
    f = _dropout.factors(9, 3, 0, 50, 40, 0.2, np.float32)
    assert f.dtype == np.float32
    assert set(np.unique(f)) == {np.float32(0), np.float32(1 / 0.8)}
    assert np.array_equal(f != 0, _dropout.keep_mask(9, 3, 0, 50, 40, 0.2))


def _fit(seed=0, n_threads=None, p=0.3, params=None, dtype="float64", sizes=(8, 32, 16, 3),
         rows=64, batch=16):
    net = fastmlp.Network(list(sizes), activation="relu", output="softmax", loss="log_loss",
                          seed=seed, n_threads=n_threads, dropout=p, dtype=dtype)
    if params is not None:
        net.params[...] = params
    X, Y = _data(net, rows, seed=7)
    net.fit(X, Y, epochs=3, batch_size=batch, learning_rate=0.1)
    return net


def test_same_seed_same_weights_other_seed_other_masks():
    a, b = _fit(seed=3), _fit(seed=3)
    assert np.array_equal(a.params, b.params)
    start = fastmlp.Network([8, 32, 16, 3], seed=3).params
    c = _fit(seed=4, params=start)      # the same start, another generator: other masks
    assert not np.allclose(a.params, c.params, rtol=1e-6)


def test_results_do_not_depend_on_the_thread_count():
    # batches of 128 x 256 hidden units: the activations split on the pool's threads
    sizes = (32, 256, 64, 10)
    assert fastmlp.Network(list(sizes), n_threads=2, dropout=0.3,
                           dtype="float32").plan(512, 128)["pool_threads"] == 2
    runs = [_fit(n_threads=t, dtype="float32", sizes=sizes, rows=512, batch=128).params
            for t in (1, 2, 4)]
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
    twin = reference.Network(list(sizes), activation="relu", output="softmax",
                             loss="log_loss", seed=0, dropout=0.3, dtype="float32")
    X, Y = _data(twin, 512, seed=7)
    twin.fit(X, Y, epochs=3, batch_size=128, learning_rate=0.1)
    np.testing.assert_allclose(runs[1], twin.params, rtol=1e-4, atol=1e-5)


def test_dropout_is_off_at_predict_loss_and_gradients():
    net = _fit(p=0.5)
    plain = fastmlp.Network([8, 32, 16, 3], activation="relu", output="softmax",
                            loss="log_loss")
    plain.params[...] = net.params
    X, Y = _data(net, 20, seed=8)
    assert np.array_equal(net.predict(X), plain.predict(X))
    assert net.loss(X, Y) == plain.loss(X, Y)
    for g, h in zip(net.gradients(X, Y), plain.gradients(X, Y)):
        assert np.array_equal(g[0], h[0]) and np.array_equal(g[1], h[1])


def test_dropout_zero_fits_draw_and_run_as_before():
    a = fastmlp.Network([4, 8, 1], seed=2)
    b = fastmlp.Network([4, 8, 1], seed=2, dropout=0.0)
    X, Y = _data(a, 64)
    ha, hb = a.fit(X, Y, epochs=3, batch_size=32), b.fit(X, Y, epochs=3, batch_size=32)
    assert np.array_equal(a.params, b.params) and ha.steps == hb.steps
    assert ha.steps["narrow"] > 0               # (the narrow step, not forced to "layers")
    # one raw draw a fit (the shuffle's seed); dropout draws its key after it
    rng = np.random.default_rng(2)
    fastmlp.Network([4, 8, 1], seed=rng)        # the initialisation's draws
    rng.bit_generator.random_raw()
    assert a._rng.bit_generator.state == rng.bit_generator.state


# ------------------------------------------------------------ plan, errors
def test_plan_reports_layers_and_the_dropout_reason():
    # (without dropout: "narrow" and "units")
    narrow = fastmlp.Network([4, 8, 1], dropout=0.2)
    units = fastmlp.Network([64, 256, 10], dtype="float32", dropout=0.2, n_threads=2)
    for net, n, bs in ((narrow, 1000, 64), (units, 4096, 64)):
        p = net.plan(n, bs)
        assert p["step"] == "layers" and p["reason"] == DROPOUT_REASON
        net.dropout = 0.0
        assert net.plan(n, bs)["step"] != "layers"


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_dropout_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got"):
        fastmlp.Network([2, 3, 1], dropout=bad)
    with pytest.raises(ValueError, match="dropout"):
        reference.Network([2, 3, 1], dropout=bad)


def test_non_number_dropout_is_a_type_error():
    with pytest.raises(TypeError, match="dropout must be a real number; got '0.5'"):
        fastmlp.Network([2, 3, 1], dropout="0.5")


def test_lbfgs_and_forced_steps_refuse_dropout():
    net = fastmlp.Network([3, 6, 1], dropout=0.1)
    X, Y = _data(net, 10)
    with pytest.raises(ValueError, match="lbfgs.*deterministic.*dropout=0.1"):
        net.fit(X, Y, optimizer="lbfgs")
    net.strategy = "narrow"
    with pytest.raises(ValueError, match="cannot run a fit with dropout.*'layers'"):
        net.fit(X, Y, epochs=1)
    with pytest.raises(ValueError, match="cannot run a fit with dropout"):
        net.plan(10, strategy=("rows", "units"))
    net.strategy = ("layers", "narrow")
    assert net.fit(X, Y, epochs=1).steps["layers"] == 1


def test_saved_shown_and_pickled():
    import pickle
    net = fastmlp.Network([3, 4, 2], seed=0, dropout=0.35)
    assert "dropout=0.35" in repr(net) and "dropout=0.35" in net.summary()
    assert "dropout" not in repr(fastmlp.Network([3, 4, 2]))
    assert pickle.loads(pickle.dumps(net)).dropout == 0.35


@pytest.mark.parametrize("opt", [dict(), dict(momentum=0.5), dict(optimizer="adam")],
                         ids=["sgd", "momentum", "adam"])
def test_overflowing_steps_keep_finite_weights(opt):
    # sigmoid units scaled by 1 / (1 - 0.9) = 10: the update guard's bounds read
    # their sums instead of assuming |a| <= 1
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(32, 4)) * 1e18).astype(np.float32)
    net = fastmlp.Network([4, 16, 1], activation="sigmoid", output="identity",
                          dtype="float32", seed=0, dropout=0.9)
    try:
        net.fit(X, rng.normal(size=32) * 1e18, epochs=3, batch_size=8, learning_rate=1e3, **opt)
    except fastmlp.DivergenceError as err:
        assert np.all(np.isfinite(err.history.loss))
    assert np.all(np.isfinite(net.params))
