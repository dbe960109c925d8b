"""Training features of fit: optimizers, penalties, weights, schedules, validation."""
import pickle
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from helpers import make_targets, randomise_biases

TOL = {"float64": 1e-11, "float32": 2e-5}

OPTIONS = [
    dict(optimizer="sgd", momentum=0.9),
    dict(optimizer="sgd", momentum=0.8, nesterov=True),
    dict(optimizer="adam"),
    dict(optimizer="adam", beta1=0.5, beta2=0.9, epsilon=1e-6),
    dict(optimizer="sgd", clip_norm=0.05),
    dict(optimizer="adam", clip_norm=0.1),
    dict(optimizer="sgd", sample_weight="random"),
    dict(optimizer="adam", momentum=0.0, sample_weight="random"),
]
NETS = [("tanh", "softmax", "log_loss"), ("relu", "sigmoid", "squared_error"),
        ("sigmoid", "identity", "squared_error")]


def setup(dtype, act, out, loss, l1=0.0, seed=0):
    kw = dict(activation=act, output=out, loss=loss, l2=0.05, l1=l1, dtype=dtype, seed=seed, init="he")
    fast, ref = fastmlp.Network([5, 6, 4, 3], **kw), reference.Network([5, 6, 4, 3], **kw)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(23, 5)).astype(dtype)
    Y = make_targets(rng, 23, 3, out, loss, dtype)
    return fast, ref, X, Y, rng


@pytest.mark.parametrize("step", [0, 1], ids=["per-layer", "one-pass"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("net", NETS, ids=lambda n: "-".join(n))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_optimizers_match_reference(options, net, dtype, step):
    fast, ref, X, Y, rng = setup(dtype, *net, l1=0.01)
    fast._narrow = step
    options = dict(options)
    if options.get("sample_weight") == "random":
        options["sample_weight"] = rng.random(23) * 2
        options["sample_weight"][3] = 0.0
    lr = 0.01 if options["optimizer"] == "adam" else 0.1
    hf = fast.fit(X, Y, epochs=4, learning_rate=lr, batch_size=5, **options)
    hr = ref.fit(X, Y, epochs=4, learning_rate=lr, batch_size=5, **options)
    scale = np.abs(ref.params).max()
    np.testing.assert_allclose(fast.params, ref.params, rtol=TOL[dtype], atol=TOL[dtype] * scale)
    np.testing.assert_allclose(hf.loss, hr.loss, rtol=TOL[dtype])
    assert not np.allclose(fast.params, setup(dtype, *net)[0].params)     # it trained


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
def test_weighted_and_l1_gradients_agree_with_central_differences(cls):
    rng = np.random.default_rng(4)
    net = cls([4, 5, 3], activation="tanh", output="softmax", loss="log_loss", l2=0.1, l1=0.05, seed=1)
    randomise_biases(net, rng)
    X = rng.normal(size=(7, 4))
    Y = make_targets(rng, 7, 3, "softmax", "log_loss")
    w = rng.random(7) * 3
    result = fastmlp.check_gradients(_Weighted(net, w), X, Y)
    assert result.max_rel_error < 1e-6


class _Weighted:
    """Presents a network with fixed sample weights to check_gradients."""

    def __init__(self, net, w):
        self.net, self.w = net, w
        self.params, self.layer_sizes = net.params, net.layer_sizes

    def loss(self, X, Y):
        return self.net.loss(X, Y, sample_weight=self.w)

    def gradients(self, X, Y):
        return self.net.gradients(X, Y, sample_weight=self.w)


def test_sample_weights_act_like_repeated_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    y = rng.random(6)
    net = fastmlp.Network([3, 4, 1], l2=0.2, seed=0)
    w = np.array([1, 2, 0, 1, 3, 1])
    repeated = np.repeat(np.arange(6), w)
    assert net.loss(X, y, sample_weight=w) == pytest.approx(net.loss(X[repeated], y[repeated]), rel=1e-12)
    for (a, b), (c, d) in zip(net.gradients(X, y, sample_weight=w), net.gradients(X[repeated], y[repeated])):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b, d, rtol=1e-12, atol=1e-15)


def test_l1_shrinks_useless_weights():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 6))
    y = X[:, 0] * 2.0 - X[:, 1] + rng.normal(size=60)      # columns 2..5 are noise
    plain = fastmlp.Network([6, 1], output="identity", seed=0)
    sparse = fastmlp.Network([6, 1], output="identity", l1=20.0, seed=0)
    plain.fit(X, y, epochs=300, learning_rate=0.1)
    sparse.fit(X, y, epochs=300, learning_rate=0.1)
    noise_plain = np.abs(plain.weights[0][2:]).sum()
    noise_sparse = np.abs(sparse.weights[0][2:]).sum()
    assert noise_sparse < 0.25 * noise_plain and noise_plain > 0.3
    assert abs(sparse.weights[0][0, 0]) > 1.5              # the real signal survives


def test_clipping_tames_an_exploding_rate():
    rng = np.random.default_rng(0)
    X = rng.normal(scale=10, size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    with pytest.raises(fastmlp.DivergenceError):            # lr * curvature ~ 5 > 2
        fastmlp.Network([3, 1], output="identity", seed=0).fit(X, y, epochs=600, learning_rate=0.05)
    net = fastmlp.Network([3, 1], output="identity", seed=0)
    hist = net.fit(X, y, epochs=600, learning_rate=0.05, clip_norm=1.0)
    assert np.all(np.isfinite(hist.loss)) and max(hist.loss) <= hist.loss[0] * 1.01
    assert hist.loss[-1] < 0.1 * hist.loss[0]


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(float)
    Xv = rng.normal(size=(40, 2))
    yv = rng.random(40)                          # unrelated targets: validation gets worse
    snapshots = []
    net = fastmlp.Network([2, 8, 1], loss="log_loss", seed=0)
    hist = net.fit(X, y, epochs=200, learning_rate=1.0, validation_data=(Xv, yv),
                   early_stopping=True, patience=5, tol=0.0,
                   callbacks=[lambda n, e, logs: snapshots.append(n.params.copy())])
    assert hist.stopped_early and len(hist.loss) < 200
    best = int(np.argmin(hist.val_loss))
    assert hist.best_epoch == best + 1             # epochs are numbered from 1
    assert np.array_equal(net.params, snapshots[best])
    assert net.loss(Xv, yv) == pytest.approx(min(hist.val_loss), rel=1e-12)
    assert len(hist.val_accuracy) == len(hist.val_loss) == len(hist.loss)


def test_validation_split_is_seeded_and_scored():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 3))
    y = rng.integers(0, 3, 50)
    runs = []
    for _ in range(2):
        net = fastmlp.Network([3, 5, 3], output="softmax", loss="log_loss", seed=5)
        runs.append(net.fit(X, y, epochs=5, learning_rate=0.5, validation_split=0.2))
    assert runs[0].val_loss == runs[1].val_loss and len(runs[0].val_loss) == 5
    assert all(0 <= a <= 1 for a in runs[0].val_accuracy)
    with pytest.raises(ValueError, match="validation_split"):
        fastmlp.Network([3, 3], output="softmax", loss="log_loss").fit(X, y, validation_split=1.5)


def test_callbacks_see_logs_and_can_stop():
    X, y = fastmlp.datasets.xor()
    seen = []

    def cb(net, epoch, logs):
        seen.append((epoch, sorted(logs)))
        return fastmlp.STOP if epoch == 5 else None

    hist = fastmlp.Network([2, 3, 1], seed=0).fit(X, y, epochs=100, learning_rate=1.0, callbacks=[cb])
    assert len(hist.loss) == 5 and hist.stopped_early
    assert seen[0] == (1, ["learning_rate", "loss", "seconds"])     # numbered from 1
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be callable"):
        fastmlp.Network([2, 1]).fit(X, y, callbacks=[42])


def test_schedules():
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    hist = net.fit(X, y, epochs=5, learning_rate=0.8, schedule="invscaling", power_t=0.5)
    np.testing.assert_allclose(hist.learning_rate, [0.8 / (4 * e + 1) ** 0.5 for e in range(5)])
    hist = fastmlp.Network([2, 3, 1], seed=0).fit(X, y, epochs=60, learning_rate=1e-4,
                                                  schedule="plateau", patience=3, tol=1.0)
    # after the first epoch none improves by tol=1: once more than 3 epochs have not
    # improved the rate falls 5x; training stops when it would fall below 1e-6
    np.testing.assert_allclose(hist.learning_rate, [1e-4] * 5 + [2e-5] * 4 + [4e-6] * 4)
    assert hist.stopped_early
    with pytest.raises(ValueError, match="schedule must be one of"):
        net.fit(X, y, schedule="cosine-annealing")


def test_partial_fit_keeps_the_optimizer_state():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.random(30)
    a = fastmlp.Network([3, 4, 1], seed=0)
    b = fastmlp.Network([3, 4, 1], seed=0)
    a.fit(X, y, epochs=3, learning_rate=0.01, batch_size=7, shuffle=False, optimizer="adam")
    for _ in range(3):
        hist = b.partial_fit(X, y, learning_rate=0.01, batch_size=7, shuffle=False, optimizer="adam")
    assert len(hist.loss) == 1
    np.testing.assert_array_equal(a.params, b.params)


def test_fit_continues_from_the_current_weights():
    X, y = fastmlp.datasets.xor()
    a, b = fastmlp.Network([2, 3, 1], seed=0), fastmlp.Network([2, 3, 1], seed=0)
    a.fit(X, y, epochs=200, learning_rate=1.0)
    a.fit(X, y, epochs=300, learning_rate=1.0)
    b.fit(X, y, epochs=500, learning_rate=1.0)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12)


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
def test_pickle_round_trip_keeps_views_and_predictions(cls):
    X, y = fastmlp.datasets.xor()
    net = cls([2, 3, 1], seed=0, l1=0.001)
    net.fit(X, y, epochs=50, learning_rate=1.0, optimizer="adam")
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.predict(X), net.predict(X))
    assert np.shares_memory(copy.weights[0], copy.params)
    copy.fit(X, y, epochs=5, learning_rate=1.0)        # the lock was rebuilt
    assert repr(copy) == repr(net)


def test_concurrent_fit_on_one_network_is_refused():
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    before = net.params.copy()
    with net._fit_lock:                                 # as if another thread were training
        with pytest.raises(RuntimeError, match="already training in another thread"):
            net.fit(X, y, epochs=5)
    assert np.array_equal(net.params, before)
    errors = []

    def train():
        try:
            net.fit(X, y, epochs=2000, learning_rate=1.0)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=train) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.all(np.isfinite(net.params))


def test_verbose_reports_progress(capsys):
    X, y = fastmlp.datasets.xor()
    fastmlp.Network([2, 3, 1], seed=0).fit(X, y, epochs=20, learning_rate=1.0, verbose=True)
    captured = capsys.readouterr()
    assert "20/20" in captured.out + captured.err


BAD_FIT = [
    (dict(optimizer="adagrad"), ValueError,
     "optimizer must be one of 'sgd', 'adam', 'rmsprop', 'adamw', 'lbfgs'; got 'adagrad'"),
    (dict(momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (dict(nesterov="yes"), TypeError, "nesterov must be True or False"),
    (dict(beta2=1.5), ValueError, "beta2"),
    (dict(epsilon=0), ValueError, "epsilon must be a finite number > 0"),
    (dict(clip_norm=-1), ValueError, "clip_norm must be a finite number > 0"),
    (dict(sample_weight=[1, 2]), ValueError, r"sample_weight must have shape \(4,\)"),
    (dict(sample_weight=[1, -1, 1, 1]), ValueError, "sample_weight must be finite and >= 0"),
    (dict(sample_weight=[0, 0, 0, 0]), ValueError, "positive sum"),
    (dict(validation_data=(np.zeros((2, 3)), np.zeros(2))), ValueError, "X must have 2 columns"),
    (dict(validation_data=np.zeros(3)), TypeError, "validation_data must be a tuple"),
    (dict(patience=0), ValueError, "patience must be >= 1"),
]


@pytest.mark.parametrize("kwargs,exc,message", BAD_FIT)
def test_bad_fit_settings_are_refused_before_training(kwargs, exc, message):
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(exc, match=message):
        net.fit(X, y, epochs=5, **kwargs)
    assert np.array_equal(net.params, before)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out,loss", [("sigmoid", "sigmoid", "squared_error"),
                                          ("tanh", "softmax", "log_loss"),
                                          ("relu", "identity", "squared_error"),
                                          ("identity", "sigmoid", "log_loss")])
@pytest.mark.parametrize("n,weighted", [(1, False), (4, False), (4, True), (7, False),
                                        (30, True)])
def test_epochs_in_one_c_loop_equal_epoch_by_epoch_exactly(n, weighted, act, out, loss, dtype):
    # full-batch plain SGD on data that fits one chunk runs all its epochs
    # in fm_narrow_sgd_epochs: the same numbers as the loop over epochs
    rng = np.random.default_rng(n)
    n_out = 3 if out == "softmax" else 2
    X = rng.normal(size=(n, 3)).astype(dtype)
    Y = make_targets(rng, n, n_out, out, loss, dtype)
    sw = rng.random(n) + 0.1 if weighted else None
    runs = []
    for in_c in (True, False):
        net = fastmlp.Network([3, 4, n_out], activation=act, output=out, loss=loss,
                              dtype=dtype, seed=1)
        net._narrow = 1         # the one-pass step either way (batches this small
        net._epochs_in_c = in_c     # would otherwise take "layers")
        hist = net.fit(X, Y, epochs=300, learning_rate=0.5, shuffle=False, sample_weight=sw)
        runs.append((net.params.copy(), np.asarray(hist.loss)))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1]) and len(runs[0][1]) == 300


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_epochs_in_one_c_loop_stop_where_the_epoch_loop_stops(dtype):
    # a rate that blows the weights up: both stop at the same epoch, with
    # the same weights kept and the same (non-finite) last entry
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
    Y = np.array([[0], [1], [1], [0]], dtype) * 1e3
    runs = []
    for in_c in (True, False):
        net = fastmlp.Network([2, 3, 1], output="identity", dtype=dtype, seed=0)
        net._narrow = 1         # the one-pass step either way (batches this small
        net._epochs_in_c = in_c     # would otherwise take "layers")
        with pytest.raises(fastmlp.DivergenceError) as caught:
            net.fit(X, Y, epochs=200, learning_rate=50.0, shuffle=False)
        runs.append((net.params.copy(), caught.value.epoch, np.asarray(caught.value.history.loss)))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.all(np.isfinite(runs[0][0]))
    assert runs[0][1] == runs[1][1] and 1 < runs[0][1] <= 200
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act,out,loss", [("sigmoid", "sigmoid", "log_loss"),
                                          ("tanh", "softmax", "log_loss"),
                                          ("relu", "identity", "squared_error")])
@pytest.mark.parametrize("batch_size,weighted", [(None, False), (None, True), (4000, False)])
def test_one_pass_batches_split_over_threads(batch_size, weighted, act, out, loss, dtype):
    # 5000 rows x 72 multiply-adds: batches big enough to be split into 2-3
    # parts; the result matches the reference and one thread to rounding,
    # and a given thread count repeats bit for bit
    rng = np.random.default_rng(7)
    n_out = 3 if out == "softmax" else 2
    X = rng.normal(size=(5000, 6)).astype(dtype)
    Y = make_targets(rng, 5000, n_out, out, loss, dtype)
    sw = rng.random(5000) + 0.1 if weighted else None
    kw = dict(activation=act, output=out, loss=loss, dtype=dtype, seed=2)
    fit = dict(epochs=5, learning_rate=0.3, batch_size=batch_size, shuffle=False,
               sample_weight=sw)
    ref = reference.Network([6, 8, n_out], **kw)
    ref_hist = ref.fit(X, Y, **fit)
    results = {}
    for threads in (1, 2, 3, 2):
        net = fastmlp.Network([6, 8, n_out], n_threads=threads, **kw)
        hist = net.fit(X, Y, **fit)
        np.testing.assert_allclose(net.params, ref.params, rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=TOL[dtype])
        if threads in results:
            assert np.array_equal(net.params, results[threads][0])
            assert hist.loss == results[threads][1]
        results[threads] = (net.params.copy(), hist.loss)
    # the parts really differ from one thread in the last bits (else this
    # test would not see the split)
    assert not np.array_equal(results[1][0], results[2][0])


def _same_on_any_thread_count_as_reference(sizes, kw, X, Y, fit, thread_counts=(1, 2, 4)):
    """Fit float32 networks on each of ``thread_counts``: each matches the
    reference to rounding, and all equal one another bit for bit."""
    ref = reference.Network(sizes, **kw)
    ref_hist = ref.fit(X, Y, **fit)
    results = []
    for threads in thread_counts:
        net = fastmlp.Network(sizes, n_threads=threads, **kw)
        hist = net.fit(X, Y, **fit)
        # (atol 2.5 x TOL: with OpenBLAS's Haswell kernels, as OPENBLAS_CORETYPE
        # selects on some hosts, the 512-wide first layer's float32 rounding in
        # the reference reached 2.25e-5 on 3 of 284426 values after 5 epochs)
        np.testing.assert_allclose(net.params, ref.params, rtol=TOL["float32"],
                                   atol=2.5 * TOL["float32"])
        np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=TOL["float32"])
        results.append((net.params.copy(), hist.loss))
    for params, loss_history in results[1:]:
        assert np.array_equal(params, results[0][0])
        assert loss_history == results[0][1]


@pytest.mark.parametrize("out,loss", [("softmax", "log_loss"), ("sigmoid", "squared_error")])
def test_register_blocked_minibatches_same_on_any_thread_count(out, loss):
    # digits-shaped float32 minibatches: the 64x128 products run through
    # _gemm.h's register blocks split over the pool; results equal one
    # thread's bit for bit, and match the reference
    rng = np.random.default_rng(11)
    X = rng.random(size=(300, 64)).astype("float32")
    Y = make_targets(rng, 300, 10, out, loss, "float32")
    kw = dict(activation="sigmoid", output=out, loss=loss, dtype="float32", seed=4)
    fit = dict(epochs=3, learning_rate=0.5, batch_size=32, shuffle=False)
    _same_on_any_thread_count_as_reference([64, 128, 10], kw, X, Y, fit)


@pytest.mark.parametrize("batch_size", [37, 50])
@pytest.mark.parametrize("hidden,out,loss", [("sigmoid", "softmax", "log_loss"),
                                             ("relu", "sigmoid", "squared_error"),
                                             ("tanh", "identity", "squared_error")])
@pytest.mark.parametrize("options", [dict(), dict(l2=0.2, weighted=True),
                                     dict(momentum=0.9, weighted=True)],
                         ids=["plain", "l2-weighted", "momentum-weighted"])
def test_minibatch_row_parts_match_reference_on_any_thread_count(batch_size, hidden, out,
                                                                 loss, options):
    # 64-96-24-10 float32 batches of 37 and 50 rows (and a last batch of 30):
    # enough work for 2 or 4 row parts, of unequal rows, through the forward
    # pass, loss and deltas, and plain SGD's update products in column panels
    # and row blocks on the pool; momentum takes the gradient path after the
    # parts' deltas.  Results match the reference and repeat bit for bit on
    # any thread count.
    rng = np.random.default_rng(13)
    X = rng.random(size=(400, 64)).astype("float32")
    Y = make_targets(rng, 400, 10, out, loss, "float32")
    options = dict(options)
    sw = rng.random(400) + 0.2 if options.pop("weighted", False) else None
    kw = dict(activation=hidden, output=out, loss=loss, dtype="float32", seed=6,
              l2=options.pop("l2", 0.0))
    fit = dict(epochs=3, learning_rate=0.02 if out == "identity" else 0.2,
               batch_size=batch_size, shuffle=False, sample_weight=sw, **options)
    _same_on_any_thread_count_as_reference([64, 96, 24, 10], kw, X, Y, fit)


# one hidden layer, float32 plain SGD: the step splits the hidden units into
# parts on the pool (2 parts of 48, of 64 and 66 units, 4 parts of 64, 2 of
# 32 with 16 outputs and batches of 50 rows, the most outputs and more rows
# than the one-pass softmax output layer takes in one block, and 2 parts of 32
# with more outputs than hidden units, past that layer's 16)
UNIT_SHAPES = [((64, 96, 10), 32, 2), ((40, 130, 8), 40, 2), ((64, 256, 10), 32, 4),
               ((48, 64, 16), 50, 2), ((64, 64, 100), 32, 2)]


@pytest.mark.parametrize("sizes,batch_size,parts", UNIT_SHAPES,
                         ids=["-".join(map(str, s[0])) for s in UNIT_SHAPES])
@pytest.mark.parametrize("hidden,out,loss", [("sigmoid", "softmax", "log_loss"),
                                             ("tanh", "sigmoid", "log_loss"),
                                             ("relu", "identity", "squared_error"),
                                             ("identity", "softmax", "squared_error"),
                                             ("sigmoid", "sigmoid", "squared_error")])
@pytest.mark.parametrize("options", [dict(), dict(l2=0.2, weighted=True, shuffle=True)],
                         ids=["plain", "l2-weighted-shuffled"])
def test_hidden_unit_parts_match_reference_on_any_thread_count(sizes, batch_size, parts,
                                                               hidden, out, loss, options):
    # the parts' partial logits are added in order, each part keeps its
    # columns of W1 and rows of W2; a last batch of 10 rows is too small to
    # split and takes the unsplit step.  Results match the reference and
    # repeat bit for bit on any thread count.
    from fastmlp import _kernels
    assert _kernels.unit_parts_of(np.array(sizes, dtype=np.intp), batch_size) == parts
    assert _kernels.unit_parts_of(np.array(sizes, dtype=np.intp), 10) == 1
    rng = np.random.default_rng(17)
    n = 6 * batch_size + 10
    X = rng.random(size=(n, sizes[0])).astype("float32")
    Y = make_targets(rng, n, sizes[-1], out, loss, "float32")
    options = dict(options)
    sw = rng.random(n) + 0.2 if options.pop("weighted", False) else None
    kw = dict(activation=hidden, output=out, loss=loss, dtype="float32", seed=8,
              l2=options.pop("l2", 0.0))
    # (a smaller rate for 100 outputs: at 0.3, tanh + sigmoid + log loss turns
    # rounding into 2e-3 differences from the reference by the third epoch on
    # the unsplit step too)
    lr = (0.02 if hidden in ("relu", "identity") else 0.3) * 10 / max(sizes[-1], 10)
    fit = dict(epochs=3, learning_rate=lr, batch_size=batch_size, sample_weight=sw,
               shuffle=options.pop("shuffle", False))
    _same_on_any_thread_count_as_reference(list(sizes), kw, X, Y, fit)


def test_hidden_unit_parts_are_not_taken_where_they_do_not_fit():
    from fastmlp import _kernels
    parts = lambda sizes, m: _kernels.unit_parts_of(np.array(sizes, dtype=np.intp), m)
    assert parts((64, 128, 10), 32) == 2            # digits
    assert parts((64, 128, 64, 10), 32) == 1        # two hidden layers: row parts
    assert parts((64, 24, 10), 200) == 1            # fewer than 2 x 16 hidden units
    assert parts((64, 128, 10), 8) == 1             # too little work to hand off
    assert parts((784, 256, 10), 128) == 1          # BLAS-sized products


def _diverging_run(dtype, out, loss, lr, X, Y, batch_size, epochs=200, hidden="identity",
                   width=36):
    net = fastmlp.Network([X.shape[1], width, Y.shape[1]], activation=hidden, output=out,
                          loss=loss, dtype=dtype, seed=4)
    net._narrow = 0              # the per-layer step, whose plain SGD is fused into backprop
    start = net.params.copy()
    with pytest.raises(fastmlp.DivergenceError) as info:
        net.fit(X, Y, epochs=epochs, learning_rate=lr, batch_size=batch_size)
    return net, info.value, start


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("hidden,out,loss,x_scale,lr32,lr64", [
    # the weights grow step by step until the objective overflows
    (hidden, "identity", "squared_error", 3.0, 3.0, 3.0) for hidden in ("identity", "sigmoid", "tanh")
] + [
    # the objective stays finite (log loss of sigmoid outputs from their
    # logits) while an update overflows: inputs ~1e4, a huge learning rate
    # (tanh saturates to exactly +-1 there and its deltas vanish: no overflow)
    (hidden, "sigmoid", "log_loss", 1e4, 1e36, 1e306) for hidden in ("identity", "sigmoid")
])
def test_plain_sgd_divergence_keeps_the_last_finite_step(dtype, batch_size, out, loss,
                                                         x_scale, lr32, lr64, hidden):
    # plain SGD skips its backup of the parameters when bounds prove an update
    # finite; a step whose update or objective is not finite must leave the
    # weights of the step before (measured: skipping the check on the bounds'
    # say-so left inf weights in the second case); bounded hidden activations
    # enter the bounds by their count, unread
    lr = lr32 if dtype == "float32" else lr64
    rng = np.random.default_rng(1)
    X = rng.normal(scale=x_scale, size=(40, 40)).astype(dtype)
    Y = (rng.random(size=(40, 2)) > 0.5).astype(dtype)
    net, err, start = _diverging_run(dtype, out, loss, lr, X, Y, batch_size, hidden=hidden)
    assert 1 <= err.epoch <= 200 and np.all(np.isfinite(net.params))
    assert len(err.history.loss) == err.epoch - 1 and np.all(np.isfinite(err.history.loss))
    if batch_size is None:
        # one batch an epoch: the parameters are those after the last completed epoch
        twin = fastmlp.Network(net.layer_sizes, activation=hidden, output=out, loss=loss,
                               dtype=dtype, seed=4)
        twin._narrow = 0
        if err.epoch > 1:
            twin.fit(X, Y, epochs=err.epoch - 1, learning_rate=lr)
        np.testing.assert_array_equal(net.params, twin.params)
    again, err2, _ = _diverging_run(dtype, out, loss, lr, X, Y, batch_size, hidden=hidden)
    assert err2.epoch == err.epoch
    np.testing.assert_array_equal(again.params, net.params)


@pytest.mark.parametrize("hidden,out,loss,x_scale,lr", [
    ("identity", "identity", "squared_error", 3.0, 3.0),
    ("sigmoid", "identity", "squared_error", 3.0, 3.0),
    ("identity", "sigmoid", "log_loss", 1e4, 1e36),
    ("sigmoid", "sigmoid", "log_loss", 1e4, 1e36),
    # softmax + log loss: the one-pass output layer's deltas feed an update that
    # overflows
    ("identity", "softmax", "log_loss", 1e4, 1e36),
    ("sigmoid", "softmax", "log_loss", 1e4, 1e36),
])
def test_hidden_unit_parts_divergence_keeps_the_last_finite_step(hidden, out, loss, x_scale,
                                                                 lr):
    # the split step bounds its hidden deltas before they exist; an update
    # that overflows all the same is undone on every part, and the
    # divergence repeats at the same batch on any thread count
    from fastmlp import _kernels
    rng = np.random.default_rng(1)
    X = rng.normal(scale=x_scale, size=(96, 64)).astype("float32")
    Y = (rng.random(size=(96, 8)) > 0.5).astype("float32")
    assert _kernels.unit_parts_of(np.array([64, 128, 8], dtype=np.intp), 32) == 2
    net, err, start = _diverging_run("float32", out, loss, lr, X, Y, 32, hidden=hidden,
                                     width=128)
    assert 1 <= err.epoch <= 200 and np.all(np.isfinite(net.params))
    assert len(err.history.loss) == err.epoch - 1 and np.all(np.isfinite(err.history.loss))
    for threads in (1, 2):
        again = fastmlp.Network([64, 128, 8], activation=hidden, output=out, loss=loss,
                                dtype="float32", seed=4, n_threads=threads)
        with pytest.raises(fastmlp.DivergenceError) as info:
            again.fit(X, Y, epochs=200, learning_rate=lr, batch_size=32)
        assert info.value.epoch == err.epoch
        np.testing.assert_array_equal(again.params, net.params)


def _split_divergence(set_split, sizes, batch_size, X, Y, epochs, lr, prepare=None,
                      shuffle=True, **kw):
    """Fit float32 networks of these sizes that diverge: split (by
    ``set_split``, a switch of _kernels) on 1 and 2 threads, then unsplit on
    2, each from the same weights (set by ``prepare(net)`` if given).  Each
    stops with finite weights and a finite history; returns their
    (DivergenceError, params)."""
    ends = []
    try:
        for split, threads in [(True, 1), (True, 2), (False, 2)]:
            set_split(split)
            net = fastmlp.Network(sizes, dtype="float32", seed=4, n_threads=threads, **kw)
            if prepare is not None:
                prepare(net)
            with pytest.raises(fastmlp.DivergenceError) as info:
                net.fit(X, Y, epochs=epochs, learning_rate=lr, batch_size=batch_size,
                        shuffle=shuffle)
            err = info.value
            assert 1 <= err.epoch <= epochs and np.all(np.isfinite(net.params))
            assert len(err.history.loss) == err.epoch - 1 and np.all(np.isfinite(err.history.loss))
            ends.append((err, net.params))
    finally:
        set_split(True)
    return ends


def test_hidden_unit_parts_objective_not_finite_in_the_output_layer():
    # inputs near float32's largest value overflow the logits within the first
    # epoch: the one-pass softmax output layer's objective is NaN (a restored
    # update would say inf), its step is not applied, the weights stay finite,
    # the split step stops at the same epoch with the same message as the
    # unsplit one, and with the same weights on 1 and 2 threads
    from fastmlp import _kernels
    rng = np.random.default_rng(1)
    X = rng.normal(scale=1e37, size=(96, 64)).astype("float32")
    Y = np.eye(8, dtype="float32")[rng.integers(0, 8, 96)]
    assert _kernels.unit_parts_of(np.array([64, 128, 8], dtype=np.intp), 32) == 2
    ends = _split_divergence(_kernels.set_unit_split, [64, 128, 8], 32, X, Y, 3, 0.1,
                             prepare=lambda net: setattr(net, "_narrow", 0),
                             activation="identity", output="softmax", loss="log_loss")
    for err, _ in ends:
        assert "the loss became nan" in str(err)
        assert err.epoch == 1 and err.history.loss == []
    np.testing.assert_array_equal(ends[0][1], ends[1][1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("l2,weighted", [(0.0, False), (0.3, True)])
def test_plain_sgd_same_with_or_without_its_backup(dtype, l2, weighted):
    # the bounds only decide whether a step keeps a copy to restore: the
    # weights come out the same either way
    from fastmlp import _kernels
    rng = np.random.default_rng(5)
    X = rng.normal(size=(150, 40)).astype(dtype)
    y = rng.integers(0, 3, 150)
    sw = rng.random(150) if weighted else None
    y8 = rng.integers(0, 8, 150)
    assert _kernels.unit_parts_of(np.array([40, 160, 8], dtype=np.intp), 32) == 2
    results = []
    for fraction, sizes in [(0.0, [40, 36, 20, 3]), (1e-2, [40, 36, 20, 3]),
                            (0.0, [40, 160, 8]), (1e-2, [40, 160, 8])]:
        # (float32's [40, 160, 8] takes the hidden-unit parts)
        net = fastmlp.Network(sizes, activation="tanh", output="softmax",
                              loss="log_loss", l2=l2, dtype=dtype, seed=2)
        net._narrow = 0
        previous = _kernels.set_safe_fraction(fraction)
        try:
            net.fit(X, y if sizes[-1] == 3 else y8, sample_weight=sw, epochs=5,
                    learning_rate=0.3, batch_size=32)
        finally:
            _kernels.set_safe_fraction(previous)
        results.append(net.params.copy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[2], results[3])
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1e-2\]; got 0.5"):
        _kernels.set_safe_fraction(0.5)


# float32 plain SGD whose first layer's products go to BLAS: the step splits
# the first layer's units into parts on the pool and the later layers by rows
# (2 parts of 128 units, of 96 and 104 units, 4 parts of 128, 2 parts with
# three later layers, whose updates split by rows of W and entries of b,
# 2 parts whose columns of W1 are too big to stay in cache: BLAS's product,
# and 2 parts whose W2 is: the rows' forward product and the first layer's
# deltas in BLAS, not the register blocks, see cached_product)
FIRST_SHAPES = [((512, 256, 64, 10), 128, 2), ((520, 200, 30, 3), 160, 2),
                ((640, 512, 10), 100, 4), ((600, 224, 48, 24, 5), 128, 2),
                ((1000, 256, 10), 64, 2), ((400, 384, 704, 10), 128, 2)]


def _first_parts(sizes, m, threads=2):
    from fastmlp import _kernels
    return _kernels.first_split_parts_of(np.array(sizes, dtype=np.intp), m, threads)


@pytest.mark.parametrize("sizes,batch_size,parts", FIRST_SHAPES,
                         ids=["-".join(map(str, s[0])) for s in FIRST_SHAPES])
@pytest.mark.parametrize("hidden,out,loss", [("sigmoid", "softmax", "log_loss"),
                                             ("tanh", "sigmoid", "log_loss"),
                                             ("relu", "identity", "squared_error"),
                                             ("identity", "softmax", "squared_error"),
                                             ("sigmoid", "sigmoid", "squared_error")])
@pytest.mark.parametrize("options", [dict(), dict(l2=0.2, weighted=True, shuffle=True)],
                         ids=["plain", "l2-weighted-shuffled"])
def test_first_layer_parts_match_reference_on_any_thread_count(sizes, batch_size, parts,
                                                               hidden, out, loss, options):
    # each part computes its columns of the first layer's activations and
    # deltas and keeps its columns of W1 and rows of W2; the later layers run
    # by rows; a last batch of 10 rows is too small to split and takes the
    # unsplit step.  Results match the reference and repeat bit for bit on
    # 1 to `parts` threads (on more, the step is not split).
    assert _first_parts(sizes, batch_size) == parts
    assert _first_parts(sizes, batch_size, threads=1) == parts
    assert _first_parts(sizes, batch_size, threads=4) == (parts if parts == 4 else 1)
    assert _first_parts(sizes, 10) == 1
    rng = np.random.default_rng(19)
    n = 3 * batch_size + 10
    X = rng.random(size=(n, sizes[0])).astype("float32")
    Y = make_targets(rng, n, sizes[-1], out, loss, "float32")
    options = dict(options)
    sw = rng.random(n) + 0.2 if options.pop("weighted", False) else None
    kw = dict(activation=hidden, output=out, loss=loss, dtype="float32", seed=9,
              l2=options.pop("l2", 0.0))
    lr = 0.01 if hidden in ("relu", "identity") else 0.2
    fit = dict(epochs=2, learning_rate=lr, batch_size=batch_size, sample_weight=sw,
               shuffle=options.pop("shuffle", False))
    _same_on_any_thread_count_as_reference(list(sizes), kw, X, Y, fit,
                                           [t for t in (1, 2, 4) if t <= parts])


def test_first_layer_parts_are_taken_only_where_they_fit():
    assert _first_parts((784, 256, 128, 10), 128) == 2     # mnist-shape
    assert _first_parts((784, 256, 128, 10), 128, threads=1) == 2
    assert _first_parts((784, 256, 128, 10), 128, threads=3) == 1   # more threads than parts
    assert _first_parts((784, 256, 10), 128) == 2          # one hidden layer
    assert _first_parts((784, 512, 10), 128) == 4
    assert _first_parts((784, 256, 128, 10), 10) == 1      # too few rows a part
    assert _first_parts((784, 256, 128, 10), 64) == 1      # too little work a part
    assert _first_parts((784, 16, 10), 2048) == 1          # too few units a part
    assert _first_parts((784, 10), 128) == 1               # no hidden layer
    assert _first_parts((64, 128, 10), 32) == 1            # digits: hidden-unit parts
    assert _first_parts((64, 96, 24, 10), 37) == 1         # row parts, no BLAS
    assert _first_parts((20, 4000, 10), 400) == 4          # few inputs, many units
    assert _first_parts((512, 1024, 10), 512) == 1         # W1's parts too big for a cache
    assert _first_parts((784, 1024, 10), 4096) == 1


def _first_split_divergence(X, Y, epochs, lr, **kw):
    """:func:`_split_divergence` of [512, 256, 8] networks on batches of 128
    rows, split by the first layer's units."""
    from fastmlp import _kernels
    assert _first_parts((512, 256, 8), 128) == 2
    return _split_divergence(_kernels.set_first_split, [512, 256, 8], 128, X, Y, epochs, lr,
                             **kw)


@pytest.mark.parametrize("hidden,out,loss,x_scale,lr", [
    ("identity", "identity", "squared_error", 3.0, 0.05),
    ("sigmoid", "identity", "squared_error", 3.0, 0.5),
    ("identity", "sigmoid", "log_loss", 1e4, 1e36),
    ("sigmoid", "softmax", "log_loss", 1e4, 1e36),
])
def test_first_layer_parts_divergence_keeps_the_last_finite_step(hidden, out, loss, x_scale,
                                                                 lr):
    # the split step bounds the first layer's deltas before they exist; an
    # update that overflows all the same is undone, and the divergence comes
    # at the same batch, with the same weights, on 1 and 2 threads and within
    # an epoch of the unsplit step's (the steps round differently: gcc's build
    # meets it at the same epoch, clang's one later)
    rng = np.random.default_rng(1)
    X = rng.normal(scale=x_scale, size=(384, 512)).astype("float32")
    Y = (rng.random(size=(384, 8)) > 0.5).astype("float32")
    ends = _first_split_divergence(X, Y, 200, lr, activation=hidden, output=out, loss=loss)
    assert ends[0][0].epoch == ends[1][0].epoch
    assert abs(ends[1][0].epoch - ends[2][0].epoch) <= 1
    np.testing.assert_array_equal(ends[0][1], ends[1][1])


def test_first_layer_parts_objective_not_finite():
    # inputs near float32's largest value overflow the products within the
    # first epoch: the rows' objective is NaN, that step is not applied, the
    # weights stay finite and the same on 1 and 2 threads, and the split step
    # stops as the unsplit one does
    rng = np.random.default_rng(1)
    X = rng.normal(scale=1e37, size=(256, 512)).astype("float32")
    Y = np.eye(8, dtype="float32")[rng.integers(0, 8, 256)]
    ends = _first_split_divergence(X, Y, 3, 0.1, activation="identity", output="softmax",
                                   loss="log_loss")
    for err, _ in ends:
        assert err.epoch == 1 and "the loss became nan" in str(err)
    np.testing.assert_array_equal(ends[0][1], ends[1][1])


@pytest.mark.parametrize("l2,weighted", [(0.0, False), (0.3, True)])
def test_first_layer_parts_same_with_or_without_their_backup(l2, weighted):
    # a step not proven safe keeps a copy and checks the weights after; the
    # bounds only decide that: the weights come out the same either way
    from fastmlp import _kernels
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 512)).astype("float32")
    y = rng.integers(0, 5, 300)
    sw = rng.random(300) if weighted else None
    assert _first_parts((512, 256, 32, 5), 128) == 2
    results = []
    for fraction in (0.0, 1e-2):
        net = fastmlp.Network([512, 256, 32, 5], activation="tanh", output="softmax",
                              loss="log_loss", l2=l2, dtype="float32", seed=2)
        previous = _kernels.set_safe_fraction(fraction)
        try:
            net.fit(X, y, sample_weight=sw, epochs=3, learning_rate=0.1, batch_size=128)
        finally:
            _kernels.set_safe_fraction(previous)
        results.append(net.params.copy())
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.allclose(results[0], fastmlp.Network([512, 256, 32, 5], seed=2,
                                                       dtype="float32").params)


@pytest.mark.parametrize("column", [100, 0])
def test_first_layer_update_overflow_is_undone(column):
    # W1 = 0 and b1 tiny: the first layer's relu activations are ~1e-30, so
    # the later layers' updates are tiny and proven safe; one huge input makes
    # the first layer's update overflow.  The step is not proven safe: it is
    # undone and the weights stay finite, as on the unsplit step (the bound
    # reads sum|X| over every row of the batch and the first layer's deltas)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(256, 512)).astype("float32")
    X[0, column] = 1e37
    Y = np.eye(8, dtype="float32")[rng.integers(0, 8, 256)]
    n_w1 = 512 * 256

    def start(net):
        net.params[:n_w1] = 0
        net.params[n_w1:n_w1 + 256] = 1e-30

    ends = _first_split_divergence(X, Y, 3, 1e6, activation="relu", output="softmax",
                                   loss="log_loss", prepare=start, shuffle=False)
    assert ends[0][0].epoch == ends[1][0].epoch == ends[2][0].epoch == 1
    np.testing.assert_array_equal(ends[0][1], ends[1][1])


def test_first_layer_deltas_that_overflow_are_not_proven_safe():
    # sum|X| = 0 and a tiny rate: the bound on the first layer's deltas
    # (n1 * max|W2| * sum|D2|, known before they exist) is above float32's
    # range while every product with it stays below; such a step must keep
    # its backup (measured before the fix: b1 inf and W1 NaN after it)
    X = np.zeros((256, 512), dtype="float32")
    Y = np.full((256, 8), 1e15, dtype="float32")
    n_w1 = 512 * 256

    def start(net):
        net.params[:n_w1] = 0
        net.params[n_w1:n_w1 + 256] = 1e-30                     # relu active, A1 ~ 1e-30
        net.params[n_w1 + 256:n_w1 + 256 + 256 * 8] = 1e30      # W2
        net.params[n_w1 + 256 + 256 * 8:] = 0

    ends = _first_split_divergence(X, Y, 2, 1e-13, activation="relu", output="identity",
                                   loss="squared_error", prepare=start, shuffle=False)
    assert ends[0][0].epoch == ends[2][0].epoch == 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_first_layer_parts_last_batch_split_too(shuffle):
    # batches of 200 rows and a last one of 136: both split in 2 parts, the
    # last with its own layout (blocks of 136 rows a layer)
    sizes = [512, 256, 64, 10]
    assert _first_parts(sizes, 200) == 2 and _first_parts(sizes, 136) == 2
    rng = np.random.default_rng(12)
    n = 2 * 200 + 136
    X = rng.random(size=(n, 512)).astype("float32")
    Y = make_targets(rng, n, 10, "softmax", "log_loss", "float32")
    sw = rng.random(n) + 0.2
    kw = dict(activation="sigmoid", output="softmax", loss="log_loss", dtype="float32",
              seed=7, l2=0.1)
    _same_on_any_thread_count_as_reference(sizes, kw, X, Y, dict(
        epochs=2, learning_rate=0.3, batch_size=200, sample_weight=sw, shuffle=shuffle),
        (1, 2))


def test_first_layer_parts_and_hidden_unit_parts_in_one_fit():
    # 780-256-16: batches of 128 split by the first layer's units, the last
    # batch of 8 rows by hidden units (unit_hand_off)
    from fastmlp import _kernels
    sizes = [780, 256, 16]
    assert _first_parts(sizes, 128) == 2
    assert _kernels.unit_parts_of(np.array(sizes, dtype=np.intp), 8) > 1
    rng = np.random.default_rng(2)
    n = 2 * 128 + 8
    X = rng.random(size=(n, 780)).astype("float32")
    Y = make_targets(rng, n, 16, "softmax", "log_loss", "float32")
    kw = dict(activation="tanh", output="softmax", loss="log_loss", dtype="float32", seed=3)
    for shuffle in (False, True):
        _same_on_any_thread_count_as_reference(sizes, kw, X, Y, dict(
            epochs=3, learning_rate=0.1, batch_size=128, shuffle=shuffle), (1, 2))


def test_first_layer_parts_later_layer_narrower_than_parts():
    # 4 parts and a later layer of 3 units: some parts get no rows of W3 and
    # no entries of b2 or b3; a batch of zero weight is skipped
    sizes = [640, 512, 3, 2]
    assert _first_parts(sizes, 100, threads=4) == 4
    rng = np.random.default_rng(8)
    X = rng.random(size=(310, 640)).astype("float32")
    Y = make_targets(rng, 310, 2, "sigmoid", "log_loss", "float32")
    sw = rng.random(310) + 0.1
    sw[100:200] = 0
    kw = dict(activation="sigmoid", output="sigmoid", loss="log_loss", dtype="float32",
              seed=5, l2=0.5)
    _same_on_any_thread_count_as_reference(sizes, kw, X, Y, dict(
        epochs=2, learning_rate=0.5, batch_size=100, sample_weight=sw))


# ------------------------------------------------------------ issue 24
@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
def test_validation_split_trains_on_the_held_in_rows_in_place(cls):
    # minibatches are gathered from X by the training rows' indices: the same
    # fit, bit for bit, as on those rows copied out (what the split used to do)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    w = rng.random(90) + 0.1
    kw = dict(epochs=4, learning_rate=0.3, batch_size=16, optimizer="adam")
    net = cls([4, 6, 1], seed=7)
    hist = net.fit(X, y, validation_split=0.2, sample_weight=w, **kw)
    twin = cls([4, 6, 1], seed=7)
    perm = twin._rng.permutation(90)
    val, train = np.sort(perm[:18]), np.sort(perm[18:])
    expected = twin.fit(X[train], y[train], sample_weight=w[train],
                        validation_data=(X[val], y[val], w[val]), **kw)
    assert np.array_equal(net.params, twin.params)
    assert hist.loss == expected.loss and hist.val_loss == expected.val_loss
    assert hist.val_accuracy == expected.val_accuracy


@pytest.mark.parametrize("batch_size", [16, None])
def test_validation_split_unshuffled_and_full_batch_match_the_reference(batch_size):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(70, 3))
    y = rng.integers(0, 3, 70)
    kw = dict(epochs=3, learning_rate=0.2, batch_size=batch_size, shuffle=False,
              validation_split=0.3)
    nets = [cls([3, 5, 3], output="softmax", loss="log_loss", seed=1)
            for cls in (fastmlp.Network, reference.Network)]
    hists = [net.fit(X, y, **kw) for net in nets]
    np.testing.assert_allclose(nets[0].params, nets[1].params, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(hists[0].val_loss, hists[1].val_loss, rtol=1e-11)


def test_validation_scores_are_the_same_in_chunks(monkeypatch):
    # validation data is scored in kernel calls of bounded work (Ctrl-C is
    # answered between them); the sums come to the loss of one call
    from fastmlp import _training
    rng = np.random.default_rng(5)
    X, Xv = rng.normal(size=(40, 3)), rng.normal(size=(101, 3))
    y, yv = rng.integers(0, 2, 40), rng.integers(0, 2, 101)
    wv = rng.random(101)
    runs = []
    for work in (1e7, 7 * 15):                  # one call; calls of 7 rows
        monkeypatch.setattr(_training, "_VALIDATION_WORK", work)
        net = fastmlp.Network([3, 5, 1], l2=0.1, seed=2)
        runs.append(net.fit(X, y, epochs=2, validation_data=(Xv, yv, wv)))
    np.testing.assert_allclose(runs[0].val_loss, runs[1].val_loss, rtol=1e-13)
    assert runs[0].val_accuracy == runs[1].val_accuracy
    assert runs[0].val_loss[-1] == pytest.approx(net.loss(Xv, yv, wv), rel=1e-13)


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
@pytest.mark.parametrize("weight", [1e-300, 1e306])
def test_uniform_sample_weights_of_any_normal_size_give_the_unweighted_results(cls, weight):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(float)
    w = np.full(20, weight)
    kw = dict(output="sigmoid", loss="log_loss", seed=3)
    plain, weighted = cls([3, 4, 1], **kw), cls([3, 4, 1], **kw)
    assert weighted.loss(X, y, w) == pytest.approx(plain.loss(X, y), rel=1e-13)
    for (gw, gb), (pw, pb) in zip(weighted.gradients(X, y, w), plain.gradients(X, y)):
        np.testing.assert_allclose(gw, pw, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gb, pb, rtol=1e-12, atol=1e-15)
    h1 = weighted.fit(X, y, epochs=3, batch_size=8, sample_weight=w, optimizer="adam")
    h0 = plain.fit(X, y, epochs=3, batch_size=8, optimizer="adam")
    np.testing.assert_allclose(h1.loss, h0.loss, rtol=1e-12)
    np.testing.assert_allclose(weighted.params, plain.params, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype,weights", [
    ("float64", np.full(20, 5e-324)),           # subnormal: 1 / total overflows
    ("float64", np.full(20, 1.7e308)),          # the total overflows
    ("float64", np.full(20, 1e307)),
    ("float32", np.full(20, 1e-40)),
    ("float32", np.r_[np.full(18, 1.0), 2e38, 2e38]),
])
def test_sample_weights_whose_totals_are_not_normal_numbers_are_refused(cls, dtype, weights):
    # they used to give a loss of 0.0 or NaN, NaN or zero gradients, a history of zeros
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(float)
    net = cls([3, 4, 1], dtype=dtype, seed=0)
    before = net.params.copy()
    for call in (lambda: net.loss(X, y, weights), lambda: net.gradients(X, y, weights),
                 lambda: net.fit(X, y, epochs=2, sample_weight=weights)):
        with pytest.raises(ValueError, match=r"sample_weight's positive weights must be at "
                                             r"least .* and their sum at most .*; got weights"):
            call()
    assert np.array_equal(net.params, before)


def test_sample_weights_with_penalties_keep_the_objective():
    # l2 / (2M) and l1 / M use the given weights' total, whatever the scaling
    rng = np.random.default_rng(7)
    X = rng.normal(size=(12, 3))
    y = rng.normal(size=12)
    w = rng.random(12) * 1e-200
    net = fastmlp.Network([3, 2, 1], output="identity", l2=1e-210, l1=1e-212, seed=0)
    ref = reference.Network([3, 2, 1], output="identity", l2=1e-210, l1=1e-212, seed=0)
    M = w.sum()
    data = np.dot(w, 0.5 * (net.predict(X).ravel() - y) ** 2)
    Ws = net.weights
    penalty = 0.5e-210 * sum((W ** 2).sum() for W in Ws) + 1e-212 * sum(abs(W).sum() for W in Ws)
    assert net.loss(X, y, w) == pytest.approx((data + penalty) / M, rel=1e-12)
    assert ref.loss(X, y, w) == pytest.approx((data + penalty) / M, rel=1e-12)


@pytest.mark.parametrize("kw", [dict(clip_norm=1.0), dict(momentum=0.9), dict(optimizer="adam", clip_norm=1.0)],
                         ids=["clip", "momentum", "adam-clip"])
def test_gradient_norm_beyond_the_square_root_of_the_largest_float_is_finite(kw):
    # float64 gradients of ~1e199: their squares overflow, their norm does not
    rng = np.random.default_rng(8)
    X = rng.standard_normal((50, 3)) * 1e200
    y = (X[:, 0] > 0).astype(float)
    nets = [cls([3, 1], output="sigmoid", loss="log_loss", seed=0)
            for cls in (fastmlp.Network, reference.Network)]
    hists = [net.fit(X, y, epochs=3, batch_size=10, learning_rate=1e-300, **kw) for net in nets]
    assert np.isfinite(hists[0].loss).all() and np.isfinite(nets[0].params).all()
    np.testing.assert_allclose(nets[0].params, nets[1].params, rtol=1e-12)
    np.testing.assert_allclose(hists[0].loss, hists[1].loss, rtol=1e-12)


def test_invscaling_rate_below_the_smallest_float_is_zero_not_an_error():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(float)
    net = fastmlp.Network([2, 3, 1], seed=0)
    hist = net.fit(X, y, epochs=3, learning_rate=0.5, schedule="invscaling", power_t=300)
    assert hist.learning_rate == [0.5, 0.0, 0.0]     # 31**300 overflows a float
    after_first = fastmlp.Network([2, 3, 1], seed=0)
    after_first.fit(X, y, epochs=1, learning_rate=0.5)
    assert np.array_equal(net.params, after_first.params)


def test_many_epochs_run_in_kernel_calls_of_bounded_length(monkeypatch):
    # the losses are allocated per call; the calls continue one another exactly
    from fastmlp import _training
    X, y = fastmlp.datasets.xor()
    whole = fastmlp.Network([2, 3, 1], seed=0)
    h_whole = whole.fit(X, y, epochs=50, batch_size=2, learning_rate=1.0)
    monkeypatch.setattr(_training, "_EPOCHS_PER_CALL", 7)
    parts = fastmlp.Network([2, 3, 1], seed=0)
    h_parts = parts.fit(X, y, epochs=50, batch_size=2, learning_rate=1.0)
    assert np.array_equal(whole.params, parts.params) and h_whole.loss == h_parts.loss


@pytest.mark.parametrize("what", ["Y", "sample_weight"])
def test_callback_rewriting_the_callers_arrays_does_not_reach_the_kernels(what):
    # what the kernels read is checked once: Y and the weights are the fit's own
    rng = np.random.default_rng(10)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(float).reshape(-1, 1)
    w = rng.random(40)
    def spoil(net, epoch, logs):
        (y if what == "Y" else w)[:] = 5.0 if what == "Y" else -1.0
    runs = []
    for callbacks in ([], [spoil]):
        yc, wc = y.copy(), w.copy()
        y, w = yc, wc
        net = fastmlp.Network([3, 4, 1], output="sigmoid", loss="log_loss", seed=0)
        runs.append(net.fit(X, y, epochs=4, batch_size=8, sample_weight=w,
                            validation_data=(X, y, w), callbacks=callbacks))
    assert runs[0].loss == runs[1].loss and runs[0].val_loss == runs[1].val_loss
    assert min(runs[1].loss) > 0
