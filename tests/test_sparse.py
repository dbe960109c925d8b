"""Sparse X (scipy CSR / CSC, matrix and array classes), issue 25.

A CSR X of low density takes step "sparse" (the first layer's products over
the stored values: equal to the reference twin to rounding).  A denser one is
densified batch by batch as the batches are gathered, so the fit runs the same
steps on the same values as a dense one and its weights equal the dense fit's
bit for bit; everything else (predict, score, loss, validation, L-BFGS) works
on dense blocks of rows (fastmlp._sparse).
"""
import numpy as np
import pytest
import scipy.sparse as sp

import fastmlp
from fastmlp import _lbfgs as lbfgs
from fastmlp import _sparse, reference

FORMATS = [sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.csc_array]
DTYPES = ["float32", "float64"]


def sparse_data(n=240, d=30, density=0.08, n_out=3, dtype="float64", seed=0):
    X = sp.random(n, d, density=density, format="csr", dtype=dtype, random_state=seed)
    X.data *= 3
    y = np.random.default_rng(seed).integers(0, n_out, n)
    return X, y


# every step but "sparse": a sparse X's batches are then densified as gathered
GATHERED = tuple(name for name in fastmlp.Network.STEPS if name != "sparse")


def fit_pair(sizes, X, y, dtype, strategy=GATHERED, net_cls=fastmlp.Network, **fit):
    """The same fit on X densified and on X sparse: (dense net, sparse net, their Histories)."""
    nets, hists = [], []
    for data in (X.toarray(), X):
        net = net_cls(sizes, activation="tanh", output="softmax", seed=3, dtype=dtype)
        if net_cls is fastmlp.Network:
            net.strategy = strategy
        hists.append(net.fit(data, y, **fit))
        nets.append(net)
    return nets[0], nets[1], hists


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("batch_size", [None, 1, 16, 64])
def test_fit_on_sparse_equals_fit_on_dense_bit_for_bit(dtype, fmt, batch_size):
    X, y = sparse_data(dtype=dtype)
    dense, sparse, hists = fit_pair([30, 12, 3], fmt(X), y, dtype, epochs=3,
                                    batch_size=batch_size, optimizer="adam",
                                    learning_rate=0.01)
    np.testing.assert_array_equal(sparse.params, dense.params)
    np.testing.assert_array_equal(hists[1].loss, hists[0].loss)
    assert hists[1].steps == hists[0].steps
    np.testing.assert_array_equal(sparse.predict(fmt(X)), dense.predict(X.toarray()))
    assert not np.array_equal(sparse.params, fastmlp.Network(
        [30, 12, 3], activation="tanh", output="softmax", seed=3, dtype=dtype).params)


# every step kind the planner can pick, on networks and batches where it applies
STEP_CASES = [("layers", [30, 20, 8, 3], 32, DTYPES), ("rows", [64, 128, 64, 10], 64, ["float32"]),
              ("units", [64, 128, 10], 32, ["float32"]),
              ("first", [512, 256, 64, 8], 128, ["float32"]), ("narrow", [5, 12, 7, 3], 64, DTYPES)]


@pytest.mark.parametrize("step,sizes,batch_size,dtypes", STEP_CASES, ids=[c[0] for c in STEP_CASES])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_step_kind_trains_on_sparse_as_on_dense(step, sizes, batch_size, dtypes, shuffle):
    for dtype in dtypes:
        X, _ = sparse_data(n=300, d=sizes[0], density=0.1, dtype=dtype, seed=1)
        y = np.random.default_rng(1).integers(0, sizes[-1], 300)
        dense, sparse, hists = fit_pair(sizes, X, y, dtype, strategy=step, epochs=2,
                                        learning_rate=0.1, batch_size=batch_size,
                                        shuffle=shuffle)
        assert hists[1].steps[step] > 0, (step, hists[1].steps)
        assert hists[1].steps == hists[0].steps
        np.testing.assert_array_equal(sparse.params, dense.params)


OPTIMIZERS = [dict(), dict(optimizer="adam", learning_rate=0.01),
              dict(momentum=0.9, nesterov=True), dict(clip_norm=0.5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[40, 3], [40, 16, 3], [40, 16, 8, 3]], ids=str)
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=["sgd", "adam", "nesterov", "clip"])
def test_sparse_step_matches_the_reference_twin(dtype, sizes, opt):
    # a CSR X of 3% density: step "sparse" (the first layer over the stored values)
    X, _ = sparse_data(n=300, d=40, density=0.03, dtype=dtype, seed=2)
    y = np.random.default_rng(2).integers(0, 3, 300)
    sw = np.random.default_rng(3).uniform(0.2, 2.0, 300)
    tol = 1e-10 if dtype == "float64" else 3e-5
    for penalties in (dict(), dict(l2=0.3, l1=0.01)):
        kw = dict(activation="tanh", output="softmax", seed=1, dtype=dtype, **penalties)
        net, ref = fastmlp.Network(sizes, **kw), reference.Network(sizes, **kw)
        fit = dict(epochs=3, batch_size=32, sample_weight=sw, **opt)
        hist = net.fit(X, y, **fit)
        ref_hist = ref.fit(X.toarray(), y, **fit)
        assert hist.steps["sparse"] == 30, hist.steps
        scale = max(1.0, float(np.abs(ref.params).max()))
        np.testing.assert_allclose(net.params, ref.params, rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=tol * 10)
        assert not np.allclose(net.params, reference.Network(sizes, **kw).params)


@pytest.mark.parametrize("output,loss,n_out", [("identity", "squared_error", 2),
                                               ("sigmoid", "log_loss", 1)])
def test_sparse_step_regression_and_sigmoid_outputs(output, loss, n_out):
    X, _ = sparse_data(n=200, d=50, density=0.02, seed=4)
    Y = np.random.default_rng(4).uniform(0, 1, (200, n_out))
    kw = dict(activation="relu", output=output, loss=loss, seed=0)
    net, ref = fastmlp.Network([50, 20, n_out], **kw), reference.Network([50, 20, n_out], **kw)
    hist = net.fit(X, Y, epochs=4, batch_size=16, shuffle=False, learning_rate=0.05)
    ref.fit(X.toarray(), Y, epochs=4, batch_size=16, shuffle=False, learning_rate=0.05)
    assert hist.steps["sparse"] == 4 * 13
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation,output,loss,opt", [
    ("gelu", "softmax", "log_loss", dict(optimizer="rmsprop")),
    ("softplus", "exp", "poisson", dict(optimizer="adamw")),
    ("leaky_relu", "identity", "squared_error", dict(momentum=0.9)),
    ("gelu", "exp", "poisson", dict()),
], ids=["gelu-rmsprop", "softplus-poisson-adamw", "leaky-momentum", "gelu-poisson-sgd"])
def test_sparse_step_with_every_activation_output_and_optimizer(dtype, activation, output,
                                                                 loss, opt):
    # the "sparse" step's first layer keeps gelu's slopes and takes the exp
    # output and the newer optimizers as the other steps do
    X, _ = sparse_data(n=200, d=50, density=0.03, dtype=dtype, seed=5)
    rng = np.random.default_rng(5)
    Y = (rng.integers(0, 3, (200, 3)) if loss == "poisson" else
         np.eye(3)[rng.integers(0, 3, 200)] if output == "softmax" else rng.normal(size=(200, 3)))
    Y = Y.astype(dtype)
    for sizes in ([50, 3], [50, 16, 3]):
        kw = dict(activation=activation, output=output, loss=loss, seed=2, dtype=dtype)
        net, ref = fastmlp.Network(sizes, **kw), reference.Network(sizes, **kw)
        fit = dict(epochs=3, batch_size=20, learning_rate=0.01, **opt)
        hist = net.fit(X, Y, **fit)
        ref_hist = ref.fit(X.toarray(), Y, **fit)
        assert hist.steps["sparse"] == 30, hist.steps
        tol = 1e-10 if dtype == "float64" else 3e-5
        scale = max(1.0, float(np.abs(ref.params).max()))
        np.testing.assert_allclose(net.params, ref.params, rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=tol * 10)
        np.testing.assert_allclose(net.predict(X), ref.predict(X.toarray()), rtol=tol * 10,
                                   atol=tol)


def test_planner_takes_sparse_step_up_to_its_density():
    from fastmlp import _kernels
    top = _kernels.SPARSE_DENSITY
    sizes = np.array([5000, 64, 2], dtype=np.intp)
    for density, step in ((0.001, "sparse"), (top, "sparse"), (top * 1.01, "layers"),
                          (-1.0, "layers")):
        p = _kernels.plan(sizes, 20000, 200, True, False, True, 0.0, density=density)
        assert p["full"][0] == step, (density, p)
    net = fastmlp.Network([5000, 64, 2], dtype="float32")
    assert net.plan(20000, 200, optimizer="adam", density=0.001)["step"] == "sparse"
    assert net.plan(20000, 200, optimizer="adam", density=0.5)["step"] == "layers"
    assert "stored values" in net.plan(20000, 200, density=0.01)["reason"]
    with pytest.raises(ValueError, match="density"):
        net.plan(20000, 200, density=1.5)
    # a strategy without it: the batches are densified into the other steps
    net = fastmlp.Network([40, 16, 3], output="softmax", seed=0)
    net.strategy = ("layers", "rows")
    X, y = sparse_data(d=40, density=0.01)
    assert net.fit(X, y, epochs=1, batch_size=32).steps["layers"] == 8
    net.strategy = "sparse"
    with pytest.raises(ValueError, match="strategy 'sparse' cannot run this fit"):
        net.fit(X.toarray(), y, epochs=1, batch_size=32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_twin_takes_sparse_X_too(dtype):
    X, y = sparse_data(dtype=dtype)
    compiled = fit_pair([30, 12, 3], X, y, dtype, epochs=2, batch_size=32,
                        learning_rate=0.1)[1]
    dense, sparse, _ = fit_pair([30, 12, 3], X, y, dtype, net_cls=reference.Network, epochs=2,
                                batch_size=32, learning_rate=0.1)
    np.testing.assert_array_equal(sparse.params, dense.params)
    tol = 1e-10 if dtype == "float64" else 3e-5
    np.testing.assert_allclose(compiled.params, sparse.params, rtol=tol, atol=tol)
    np.testing.assert_allclose(sparse.predict(X), dense.predict(X.toarray()), rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_partial_fit_keeps_parity_across_calls(dtype):
    X, y = sparse_data(dtype=dtype)
    nets = [fastmlp.Network([30, 10, 3], output="softmax", seed=0, dtype=dtype) for _ in range(2)]
    for start in range(0, 240, 80):
        rows = slice(start, start + 80)
        nets[0].partial_fit(X[rows].toarray(), y[rows], batch_size=16, momentum=0.9,
                            nesterov=True, learning_rate=0.05)
        nets[1].partial_fit(sp.csc_matrix(X[rows]), y[rows], batch_size=16, momentum=0.9,
                            nesterov=True, learning_rate=0.05)
    np.testing.assert_array_equal(nets[1].params, nets[0].params)
    assert nets[1]._samples_seen == 240


def test_validation_split_early_stopping_and_sample_weights_on_sparse():
    X, y = sparse_data(n=400)
    sw = np.random.default_rng(2).uniform(0.5, 2.0, 400)
    dense, sparse, hists = fit_pair([30, 12, 3], X, y, "float64", epochs=6, batch_size=32,
                                    learning_rate=0.2, sample_weight=sw, validation_split=0.25,
                                    early_stopping=True, patience=2)
    np.testing.assert_array_equal(sparse.params, dense.params)
    assert len(hists[1].val_loss) == len(hists[0].val_loss) > 0
    np.testing.assert_allclose(hists[1].val_loss, hists[0].val_loss, rtol=1e-12)
    Xv, yv = sparse_data(n=60, seed=5)
    nets = [fastmlp.Network([30, 12, 3], output="softmax", seed=3) for _ in range(2)]
    h0 = nets[0].fit(X.toarray(), y, epochs=3, batch_size=32, validation_data=(Xv.toarray(), yv))
    h1 = nets[1].fit(X, y, epochs=3, batch_size=32, validation_data=(sp.csc_array(Xv), yv))
    np.testing.assert_array_equal(nets[1].params, nets[0].params)
    np.testing.assert_allclose(h1.val_loss, h0.val_loss, rtol=1e-12)
    assert h1.val_accuracy == h0.val_accuracy


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_score_and_loss_work_in_dense_blocks(monkeypatch, dtype):
    X, y = sparse_data(n=500, dtype=dtype)
    net = fastmlp.Network([30, 12, 3], output="softmax", seed=0, dtype=dtype)
    net.fit(X, y, epochs=2, batch_size=50)
    whole = (net.predict(X), net.score(X, y), net.loss(X, y))
    Xd = X.toarray()
    # the default blocks (multiples of the forward pass's 2048 rows): as dense, bit for bit
    np.testing.assert_array_equal(whole[0], net.predict(Xd))
    assert whole[1] == net.score(Xd, y)
    assert whole[2] == net.loss(Xd, y)
    # blocks of 3 rows: 167 dense blocks, never more than 3 rows densified at once
    monkeypatch.setattr(_sparse, "CHUNK_BYTES", 3 * 30 * np.dtype(dtype).itemsize)
    sizes = []
    forward = net._forward
    monkeypatch.setattr(net, "_forward", lambda block: sizes.append(len(block)) or forward(block))
    P = net.predict(X)
    assert max(sizes) == 3 and sum(sizes) == 500
    # (a few rows take other product paths: equal to rounding)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(P, whole[0], rtol=tol, atol=tol)
    assert net.score(X, y) == whole[1]
    np.testing.assert_allclose(net.loss(X, y), whole[2], rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[60, 2], [60, 24, 3], [60, 24, 12, 3]], ids=str)
def test_predict_of_low_density_runs_the_first_layer_over_stored_values(dtype, sizes):
    X, y = sparse_data(n=5000, d=60, density=0.02, n_out=sizes[-1], dtype=dtype, seed=7)
    kw = dict(activation="relu", output="softmax", seed=2, dtype=dtype)
    net, ref = fastmlp.Network(sizes, **kw), reference.Network(sizes, **kw)
    ref.params[...] = net.params
    P = net.predict(X)                      # 5000 rows: three blocks of the forward pass
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(P, ref.predict(X.toarray()), rtol=tol, atol=tol)
    np.testing.assert_allclose(P, net.predict(X.toarray()), rtol=tol, atol=tol)
    assert net.score(X, y) == float(np.mean(P.argmax(1) == y))
    sizes_seen = []
    net._forward = lambda block: sizes_seen.append(len(block))      # not called: no dense blocks
    net.predict(sp.csc_matrix(X))
    assert sizes_seen == []


@pytest.mark.parametrize("blocks", ["one", "many"])
def test_lbfgs_on_sparse(monkeypatch, blocks):
    X, y = sparse_data(n=300)
    sw = np.random.default_rng(4).uniform(0.5, 2.0, 300)
    net_kw = dict(output="softmax", seed=0, l2=0.3, l1=0.01)
    if blocks == "many":                # 7 blocks of 48 rows: the penalty counted once
        monkeypatch.setattr(_sparse, "CHUNK_BYTES", 48 * 30 * 8)
    nets = [fastmlp.Network([30, 8, 3], **net_kw) for _ in range(2)]
    Y = nets[0]._check_Y(y, 300)
    obj = [lbfgs.Objective(nets[0], X.toarray(), Y, sw),
           lbfgs.Objective(nets[1], nets[1]._check_X(X, sparse=True), Y, sw)]
    x0 = np.random.default_rng(0).normal(size=nets[0].n_params)
    (v0, g0), (v1, g1) = obj[0](x0), obj[1](x0)
    np.testing.assert_allclose(v1, v0, rtol=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-12)
    dense, sparse = [fastmlp.Network([30, 8, 3], **net_kw) for _ in range(2)]
    dense.fit(X.toarray(), y, epochs=15, optimizer="lbfgs", sample_weight=sw)
    sparse.fit(X, y, epochs=15, optimizer="lbfgs", sample_weight=sw)
    if blocks == "one":
        np.testing.assert_array_equal(sparse.params, dense.params)
    else:
        np.testing.assert_allclose(sparse.params, dense.params, rtol=1e-6, atol=1e-8)


def test_duplicate_entries_are_summed_as_toarray_sums_them():
    # a CSR matrix with duplicate (row, column) entries, not in canonical form
    X = sp.csr_matrix((np.array([1.0, 2.0, 0.5, -1.0, 4.0]), np.array([0, 0, 2, 1, 1]),
                       np.array([0, 3, 3, 5])), shape=(3, 4))
    assert not X.has_canonical_format
    y = np.array([0.0, 1.0, 1.0])
    nets = [fastmlp.Network([4, 3, 1], seed=0) for _ in range(2)]
    nets[0].fit(X.toarray(), y, epochs=5, batch_size=2)
    nets[1].fit(X, y, epochs=5, batch_size=2)
    np.testing.assert_array_equal(nets[1].params, nets[0].params)
    rows = fastmlp.Network([4, 3, 1])._check_X(X, sparse=True)
    np.testing.assert_array_equal(rows[[2, 0]], X.toarray()[[2, 0]])
    np.testing.assert_array_equal(rows.subset([2, 0])[0:2], X.toarray()[[2, 0]])


def test_float64_sparse_into_float32_network_is_converted():
    X, y = sparse_data()
    nets = [fastmlp.Network([30, 6, 3], output="softmax", seed=0, dtype="float32")
            for _ in range(2)]
    nets[0].fit(X.toarray().astype(np.float32), y, epochs=2, batch_size=20)
    nets[1].fit(X.astype(np.float64), y, epochs=2, batch_size=20)
    np.testing.assert_array_equal(nets[1].params, nets[0].params)
    assert nets[1].predict(X).dtype == np.float32


@pytest.mark.parametrize("bad,what", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_sparse_values_are_refused_as_dense_ones(bad, what):
    X, y = sparse_data()
    X = X.tocsr(copy=True)
    X.data[5] = bad
    row = int(np.searchsorted(X.indptr, 5, side="right") - 1)
    net = fastmlp.Network([30, 4, 3], output="softmax")
    for call in (lambda: net.fit(sp.csc_matrix(X), y, epochs=1), lambda: net.predict(X),
                 lambda: net.score(X, y), lambda: net.partial_fit(X, y)):
        with pytest.raises(ValueError, match=rf"X must be finite; got {what} at "
                                             rf"X\[{row}, {X.indices[5]}\] \(1 non-finite value\)"):
            call()
    X.data[5] = 1e300
    with pytest.raises(ValueError, match="fit in the network's dtype float32"):
        fastmlp.Network([30, 4, 3], dtype="float32").predict(X)


def test_wrong_width_and_shape_errors_match_the_dense_ones():
    X, y = sparse_data()
    net = fastmlp.Network([31, 4, 3], output="softmax")
    for data in (X, X.toarray()):
        with pytest.raises(ValueError, match=r"X must have 31 columns \(the network's input "
                                             r"size\); got shape \(240, 30\)"):
            net.fit(data, y, epochs=1)
        with pytest.raises(ValueError, match="X must have 31 columns"):
            net.predict(data)
    with pytest.raises(ValueError, match="X must have at least one row"):
        fastmlp.Network([30, 3]).predict(sp.csr_matrix((0, 30)))


def test_sparse_targets_and_unsupported_calls_are_refused_clearly():
    X, y = sparse_data()
    net = fastmlp.Network([30, 4, 3], output="softmax")
    Y = sp.csr_matrix(np.eye(3)[y])
    with pytest.raises(TypeError, match="Y must be a dense array of numbers; got a sparse "
                                        "csr_matrix"):
        net.fit(X, Y, epochs=1)
    # the inspection calls keep every row's quantities: dense X only, as before
    with pytest.raises(TypeError, match=r"X must be a dense array .*\.toarray\(\)"):
        net.gradients(X, y)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.predict(sp.csr_matrix(np.ones((2, 30), dtype=complex)))


def test_distributed_and_dask_refuse_sparse_with_a_value_error():
    from fastmlp import dask, distributed
    X, y = sparse_data()
    net = fastmlp.Network([30, 4, 3], output="softmax")
    with pytest.raises(ValueError, match="distributed.fit takes dense arrays; got a sparse "
                                         "csr_matrix"):
        distributed.fit(net, X, y, epochs=1)
    with pytest.raises(ValueError, match="dask.predict takes dense dask arrays"):
        dask.predict(net, X)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_estimators_on_sparse_equal_estimators_on_dense(fmt, solver):
    pytest.importorskip("sklearn")
    from fastmlp import MLPClassifier, MLPRegressor
    X, y = sparse_data(n=200, dtype="float32")
    kw = dict(hidden_layer_sizes=(10,), solver=solver, random_state=0, max_iter=8,
              early_stopping=solver != "lbfgs")
    with pytest.warns(Warning):             # ConvergenceWarning: max_iter is small
        clf = [MLPClassifier(**kw).fit(data, y) for data in (X.toarray(), fmt(X))]
    assert clf[1].network_.dtype == np.float32
    np.testing.assert_array_equal(clf[1].network_.params, clf[0].network_.params)
    np.testing.assert_array_equal(clf[1].predict_proba(fmt(X)), clf[0].predict_proba(X.toarray()))
    assert clf[1].score(fmt(X), y) == clf[0].score(X.toarray(), y)
    target = np.asarray(X.sum(axis=1)).ravel()
    with pytest.warns(Warning):
        reg = [MLPRegressor(**kw).fit(data, target) for data in (X.toarray(), fmt(X))]
    np.testing.assert_array_equal(reg[1].predict(fmt(X)), reg[0].predict(X.toarray()))
    # 1% density: step "sparse", equal to rounding
    X1, _ = sparse_data(n=200, density=0.01, dtype="float32", seed=6)
    with pytest.warns(Warning):
        low = [MLPClassifier(**kw).fit(data, y) for data in (X1.toarray(), fmt(X1))]
    np.testing.assert_allclose(low[1].network_.params, low[0].network_.params,
                               rtol=1e-4, atol=1e-5)
    if solver != "lbfgs":
        assert low[1].network_.history.steps["sparse"] > 0
    if solver != "lbfgs":
        kw["early_stopping"] = False
        inc = [MLPClassifier(**kw) for _ in range(2)]
        for est, data in zip(inc, (X.toarray(), fmt(X))):
            for rows in (slice(0, 120), slice(120, 200)):
                est.partial_fit(data[rows], y[rows], classes=np.arange(3))
        np.testing.assert_array_equal(inc[1].network_.params, inc[0].network_.params)
