"""The optimizer's update fused into step "layers"' gradient products
(_fused_update.pxi): the same bits as the separate pass, on any thread count,
and the separate pass wherever the fused one cannot run."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _kernels, reference
from helpers import make_targets, randomise_biases

OPTIMIZERS = {
    "momentum": dict(optimizer="sgd", momentum=0.9),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True),
    "adam": dict(optimizer="adam"),
}


def _fit(sizes, batch_size, opt, dtype, fused=True, threads=2, n=300, l2=0.0,
         sample_weight=False, net_class=fastmlp.Network, lr=0.01, **extra):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = make_targets(rng, n, sizes[-1], "softmax", "log_loss", dtype)
    w = rng.random(n) + 0.5 if sample_weight else None
    kw = dict(activation="relu", output="softmax", loss="log_loss", dtype=dtype, seed=2,
              l2=l2, l1=extra.pop("l1", 0.0))
    if net_class is fastmlp.Network:
        kw["n_threads"] = threads
    net = net_class(sizes, **kw)
    randomise_biases(net, np.random.default_rng(4), 0.1)
    if net_class is fastmlp.Network:
        net.strategy = "layers"
    previous = _kernels.set_fused_update(fused)
    try:
        hist = net.fit(X, Y, epochs=2, batch_size=batch_size, learning_rate=lr,
                       sample_weight=w, **OPTIMIZERS[opt], **extra)
    finally:
        _kernels.set_fused_update(previous)
    return net, hist


# one band a layer; bands of FUSED_L1_BYTES (few rows); bands split for the
# pool; a batch of one row (products of K == 1) in one band and in several
# bands of FUSED_L1_BYTES; BLAS products in bands (batches with fewer
# activations than the network has parameters: see
# test_big_batches_of_few_parameters_take_the_separate_pass)
SHAPES = [([6, 9, 3], 4), ([20, 1024, 4], 8), ([64, 128, 64, 5], 64),
          ([30, 40, 3], 1), ([100, 128, 10], 1), ([100, 256, 10], 64)]


@pytest.mark.parametrize("sizes,batch_size", SHAPES)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_update_equals_the_separate_pass(sizes, batch_size, opt, dtype):
    fused, fused_hist = _fit(sizes, batch_size, opt, dtype, l2=0.3)
    separate, separate_hist = _fit(sizes, batch_size, opt, dtype, fused=False, l2=0.3)
    steps = fused_hist.steps["layers"]
    assert steps == -(-300 // batch_size) * 2
    assert fused_hist.fused_updates == steps and separate_hist.fused_updates == 0
    if sizes == [100, 256, 10] and dtype == "float32":
        # BLAS's products in bands of W's rows, where the separate pass's
        # bands are of its columns: OpenBLAS rounds some sums differently
        np.testing.assert_allclose(fused.params, separate.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fused_hist.loss, separate_hist.loss, rtol=1e-6)
    else:
        np.testing.assert_array_equal(fused.params, separate.params)
        assert fused_hist.loss == separate_hist.loss


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_fused_update_is_the_same_on_any_thread_count(opt):
    runs = [_fit([64, 128, 64, 5], 64, opt, "float32", threads=t, sample_weight=True)
            for t in (1, 2, 3)]
    for net, hist in runs[1:]:
        np.testing.assert_array_equal(net.params, runs[0][0].params)
    assert all(hist.fused_updates == hist.steps["layers"] for _, hist in runs)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_update_matches_the_reference(opt, dtype):
    net, hist = _fit([12, 24, 24, 3], 16, opt, dtype, l2=0.1, sample_weight=True)
    ref, ref_hist = _fit([12, 24, 24, 3], 16, opt, dtype, l2=0.1, sample_weight=True,
                         net_class=reference.Network)
    assert hist.fused_updates == hist.steps["layers"] > 0
    tol = 1e-10 if dtype == "float64" else 3e-5
    np.testing.assert_allclose(net.params, ref.params, rtol=tol, atol=tol)
    np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=10 * tol)


@pytest.mark.parametrize("extra", [dict(clip_norm=0.5), dict(l1=1e-3)])
def test_clipping_and_l1_take_the_separate_pass(extra):
    net, hist = _fit([12, 24, 3], 32, "adam", "float32", **extra)
    assert hist.steps["layers"] > 0 and hist.fused_updates == 0
    ref, _ = _fit([12, 24, 3], 32, "adam", "float32", net_class=reference.Network, **extra)
    np.testing.assert_allclose(net.params, ref.params, rtol=3e-5, atol=3e-5)


def test_big_batches_of_few_parameters_take_the_separate_pass():
    # 64 rows x 12 activations > the 93 parameters of 6-9-3: the bound's sums
    # would read more than the norm's pass; a batch of 4 rows fuses
    big, big_hist = _fit([6, 9, 3], 64, "adam", "float64")
    small, small_hist = _fit([6, 9, 3], 4, "adam", "float64")
    assert big_hist.steps["layers"] > 0 and big_hist.fused_updates == 0
    assert small_hist.fused_updates == small_hist.steps["layers"] > 0


def test_a_step_the_bounds_cannot_prove_takes_the_separate_pass():
    # SAFE_FRACTION 0 proves nothing: every step is guarded by the separate
    # pass, with the same results
    previous = _kernels.set_safe_fraction(0.0)
    try:
        unproven, unproven_hist = _fit([20, 64, 4], 16, "momentum", "float64")
    finally:
        _kernels.set_safe_fraction(previous)
    fused, fused_hist = _fit([20, 64, 4], 16, "momentum", "float64")
    assert unproven_hist.fused_updates == 0 and fused_hist.fused_updates > 0
    np.testing.assert_array_equal(unproven.params, fused.params)


def test_a_diverging_fit_keeps_its_last_finite_weights():
    # a learning rate that overflows within a few steps: the fused steps give
    # way to the guarded pass, which refuses the step that is not finite
    sizes = [8, 32, 3]
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(64, 8)) * 1e3).astype(np.float32)
    Y = make_targets(rng, 64, 3, "softmax", "log_loss", np.float32)
    net = fastmlp.Network(sizes, activation="relu", output="softmax", loss="log_loss",
                          dtype="float32", seed=0)
    with pytest.raises(fastmlp.DivergenceError):
        net.fit(X, Y, epochs=50, batch_size=8, learning_rate=1e30, momentum=0.9)
    assert np.isfinite(net.params).all()
