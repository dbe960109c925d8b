"""Bad arguments are refused in Python with an error naming them."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

BAD_SETTINGS = [
    (dict(layer_sizes=[2, 0, 1]), ValueError, r"layer_sizes\[1\] must be a positive integer; got 0"),
    (dict(layer_sizes=[2.5, 1]), ValueError, r"layer_sizes\[0\]"),
    (dict(layer_sizes=[3]), ValueError, "at least an input and an output"),
    (dict(layer_sizes="21"), TypeError, "sequence of positive integers"),
    (dict(activation="swish"), ValueError, r"activation must be one of 'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'gelu', 'softplus'; got 'swish'"),
    (dict(output="tanh"), ValueError, "output must be one of"),
    (dict(loss="hinge"), ValueError, "loss must be one of 'squared_error', 'log_loss'"),
    (dict(init="zeros"), ValueError, "init must be one of 'plain', 'xavier', 'he'"),
    (dict(dtype="float16"), ValueError, "dtype must be one of"),
    (dict(l2=-1.0), ValueError, "l2 must be a finite number >= 0; got -1.0"),
    (dict(l2=float("nan")), ValueError, "l2 must be"),
    (dict(output="identity", loss="log_loss"), ValueError, "log_loss.*needs output='sigmoid' or output='softmax'"),
    (dict(layer_sizes=[2, 1], output="softmax"), ValueError, "softmax.*at least 2 output units"),
]


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
@pytest.mark.parametrize("kwargs,exc,message", BAD_SETTINGS)
def test_bad_settings(cls, kwargs, exc, message):
    kwargs = dict(kwargs)
    sizes = kwargs.pop("layer_sizes", [2, 3, 2])
    with pytest.raises(exc, match=message):
        cls(sizes, **kwargs)


X_OK = np.zeros((4, 2))


def bad_calls():
    net = fastmlp.Network([2, 3, 1], loss="log_loss", seed=0)
    soft = fastmlp.Network([2, 3, 3], output="softmax", loss="log_loss", seed=0)
    y = np.zeros(4)
    return [
        ("predict", net, (np.zeros(2),), ValueError, r"X must be 2-D.*got 1-D shape \(2,\).*reshape"),
        ("predict", net, (np.zeros((4, 3)),), ValueError, r"X must have 2 columns.*got shape \(4, 3\)"),
        ("predict", net, (np.zeros((0, 2)),), ValueError, "at least one row"),
        ("predict", net, (np.array([[np.nan, 0.0]]),), ValueError, "X must be finite"),
        ("predict", net, (np.array([["a", "b"]]),), TypeError, "X must hold real numbers"),
        ("predict", net, (np.ones((1, 2), dtype=bool),), TypeError, "boolean"),
        ("predict", net, (np.ones((1, 2), dtype=complex),), TypeError, "complex"),
        ("loss", net, (X_OK, np.zeros(3)), ValueError, r"Y must have 4 rows"),
        ("loss", net, (X_OK, np.zeros((4, 2))), ValueError, r"Y must have 1 columns"),
        ("loss", net, (X_OK, np.full(4, 2.0)), ValueError, r"targets in \[0, 1\].*got values from 2 to 2"),
        ("loss", net, (X_OK, np.array([0, np.inf, 0, 0])), ValueError, "Y must be finite"),
        ("loss", soft, (X_OK, np.array([0, 1, 3, 1])), ValueError, r"labels in Y must lie in \[0, 3\).*from 0 to 3"),
        ("loss", soft, (X_OK, np.array([0, 1, 0.5, 1])), ValueError, "integer class labels"),
        ("fit", net, (X_OK, y), dict(epochs=0), ValueError, "epochs must be >= 1; got 0"),
        ("fit", net, (X_OK, y), dict(learning_rate=0.0), ValueError, "learning_rate must be a finite number > 0"),
        ("fit", net, (X_OK, y), dict(learning_rate=float("inf")), ValueError, "learning_rate"),
        ("fit", net, (X_OK, y), dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        ("fit", net, (X_OK, y), dict(batch_size=2.5), TypeError, "batch_size must be a positive integer or None"),
        ("fit", net, (X_OK, y), dict(epochs=True), TypeError, "epochs must be a positive integer"),
    ]


@pytest.mark.parametrize("case", range(len(bad_calls())))
def test_bad_calls_raise_before_any_change(case):
    method, net, args, *rest = bad_calls()[case]
    kwargs = rest[0] if len(rest) == 3 else {}
    exc, message = rest[-2], rest[-1]
    before = net.params.copy()
    with pytest.raises(exc, match=message):
        getattr(net, method)(*args, **kwargs)
    assert np.array_equal(net.params, before)


def test_awkward_but_valid_arrays_give_the_plain_answer():
    net = fastmlp.Network([3, 4, 2], output="softmax", loss="log_loss", seed=0)
    X = np.random.default_rng(0).normal(size=(6, 3))
    plain = net.predict(X)
    wide = np.zeros((6, 6))
    wide[:, ::2] = X
    readonly = X.copy()
    readonly.setflags(write=False)
    for variant in (np.asfortranarray(X), wide[:, ::2], readonly, X.tolist(), X.astype(np.float32)):
        np.testing.assert_allclose(net.predict(variant), plain, rtol=1e-6)
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(net.predict(ints), net.predict(ints.astype(float)))


# ---------------------------------------------------------------------------
# Issue 5: every bad input, table-driven. Each row: what is called, the
# exception type, words its message must hold, and the argument it must name.
# Every message also says what was given ("got ...").
# ---------------------------------------------------------------------------
import inspect
import warnings


def _nets():
    return dict(
        bin=fastmlp.Network([2, 3, 1], loss="log_loss", seed=0),
        sq=fastmlp.Network([2, 3, 1], output="identity", loss="squared_error", seed=0),
        soft=fastmlp.Network([2, 3, 3], output="softmax", loss="log_loss", seed=0),
        f32=fastmlp.Network([2, 3, 1], dtype="float32", output="identity", seed=0),
    )


X4 = np.zeros((4, 2))
Y4 = np.zeros(4)
_ragged = [[1.0, 2.0], [3.0]]
_masked = np.ma.masked_array(np.zeros((4, 2)), mask=np.eye(4, 2, dtype=bool))
_nan_at_2_1 = np.zeros((4, 2))
_nan_at_2_1[2, 1] = np.nan

# (id, net, method, args, kwargs, exception, regex, argument named)
BAD_INPUTS = [
    # wrong number of dimensions
    ("X-1d", "bin", "predict", (np.zeros(2),), {}, ValueError, r"must be 2-D.*got 1-D shape \(2,\)", "X"),
    ("X-3d", "bin", "predict", (np.zeros((2, 2, 1)),), {}, ValueError, r"must be 2-D.*got 3-D", "X"),
    ("X-0d", "bin", "predict", (3.0,), {}, ValueError, r"must be 2-D.*got 0-D", "X"),
    ("X-empty-list", "bin", "predict", ([],), {}, ValueError, r"must be 2-D.*shape \(0,\)", "X"),
    ("Y-3d", "sq", "loss", (X4, np.zeros((4, 1, 1))), {}, ValueError, r"Y must be 1-D or 2-D.*got 3-D", "Y"),
    ("Y-0d", "sq", "loss", (X4, 0.0), {}, ValueError, r"Y must be 1-D or 2-D.*got 0-D", "Y"),
    # feature count, lengths, output columns
    ("X-features", "bin", "predict", (np.zeros((4, 3)),), {}, ValueError, r"must have 2 columns.*got shape \(4, 3\)", "X"),
    ("XY-lengths-1d", "bin", "loss", (X4, np.zeros(5)), {}, ValueError, r"must have 4 rows.*got shape \(5, 1\)", "Y"),
    ("XY-lengths-2d", "sq", "fit", (X4, np.zeros((3, 1))), {}, ValueError, r"must have 4 rows.*got shape \(3, 1\)", "Y"),
    ("XY-lengths-labels", "soft", "gradients", (X4, np.zeros(3)), {}, ValueError, r"must have 4 rows.*got shape \(3,\)", "Y"),
    ("Y-columns", "soft", "loss", (X4, np.zeros((4, 2))), {}, ValueError, r"must have 3 columns.*got shape \(4, 2\)", "Y"),
    # empty arrays
    ("X-no-rows", "bin", "predict", (np.zeros((0, 2)),), {}, ValueError, r"at least one row.*got shape \(0, 2\)", "X"),
    ("XY-no-rows", "bin", "fit", (np.zeros((0, 2)), np.zeros(0)), {}, ValueError, r"at least one row", "X"),
    ("Y-empty", "bin", "loss", (X4, []), {}, ValueError, r"must have 4 rows.*got shape \(0, 1\)", "Y"),
    # NaN and inf
    ("X-nan", "bin", "predict", (_nan_at_2_1,), {}, ValueError, r"must be finite; got NaN at X\[2, 1\] \(1 non-finite value\)", "X"),
    ("X-inf", "bin", "fit", (np.full((4, 2), np.inf), Y4), {}, ValueError, r"must be finite; got inf at X\[0, 0\] \(8 non-finite", "X"),
    ("X-neg-inf", "bin", "loss", (-np.full((4, 2), np.inf), Y4), {}, ValueError, r"got -inf", "X"),
    ("X-too-big-for-float32", "f32", "predict", (np.full((1, 2), 1e39),), {}, ValueError, r"must fit in the network's dtype float32.*got inf", "X"),
    ("Y-nan", "sq", "loss", (X4, np.array([0.0, np.nan, 0.0, 0.0])), {}, ValueError, r"must be finite; got NaN at Y\[1, 0\]", "Y"),
    ("Y-inf", "sq", "fit", (X4, np.array([0.0, 0.0, np.inf, 0.0])), {}, ValueError, r"must be finite; got inf", "Y"),
    ("Y-labels-nan", "soft", "loss", (X4, np.array([0.0, 1.0, np.nan, 2.0])), {}, ValueError, r"integer class labels.*got NaN at Y\[2\]", "Y"),
    # dtypes that are not real numbers
    ("X-strings", "bin", "predict", (np.array([["a", "b"]]),), {}, TypeError, r"must hold real numbers.*got dtype <U1", "X"),
    ("X-object", "bin", "predict", (np.array([[1.0, None]], dtype=object),), {}, TypeError, r"got dtype object", "X"),
    ("X-mixed-list", "bin", "predict", ([[1.0, "2"]],), {}, TypeError, r"must hold real numbers.*got dtype <U", "X"),
    ("X-ragged", "bin", "predict", (_ragged,), {}, ValueError, r"regular shape; got list", "X"),
    ("X-none", "bin", "predict", (None,), {}, TypeError, r"got dtype object", "X"),
    ("X-complex", "bin", "predict", (np.ones((1, 2), complex),), {}, TypeError, r"got complex dtype complex128", "X"),
    ("X-bool", "bin", "predict", (np.ones((1, 2), bool),), {}, TypeError, r"got a boolean array", "X"),
    ("X-datetime", "bin", "predict", (np.zeros((1, 2), "datetime64[s]"),), {}, TypeError, r"got dtype datetime64", "X"),
    ("X-masked", "bin", "predict", (_masked,), {}, ValueError, r"got a masked array with 2 masked entries", "X"),
    ("Y-object", "sq", "loss", (X4, np.array([1, "a", None, 2], dtype=object)), {}, TypeError, r"got dtype object", "Y"),
    ("Y-complex", "sq", "loss", (X4, np.zeros(4, complex)), {}, TypeError, r"complex", "Y"),
    ("Y-bool", "bin", "fit", (X4, np.zeros(4, bool)), {}, TypeError, r"boolean", "Y"),
    ("Y-strings", "soft", "loss", (X4, np.array(["a", "b", "c", "a"])), {}, TypeError, r"got dtype <U1", "Y"),
    # labels and targets out of range
    ("labels-too-high", "soft", "loss", (X4, np.array([0, 1, 3, 1])), {}, ValueError, r"labels in Y must lie in \[0, 3\).*from 0 to 3", "Y"),
    ("labels-negative", "soft", "fit", (X4, np.array([0, -1, 2, 1])), {}, ValueError, r"lie in \[0, 3\).*from -1 to 2", "Y"),
    ("labels-fractional", "soft", "gradients", (X4, np.array([0, 1, 0.5, 1])), {}, ValueError, r"integer class labels.*Y\[2\] = 0.5", "Y"),
    ("log-loss-targets-high", "bin", "loss", (X4, np.full(4, 2.0)), {}, ValueError, r"targets in \[0, 1\].*got values from 2 to 2", "Y"),
    ("log-loss-targets-negative", "bin", "fit", (X4, np.array([0, -0.5, 1, 1])), {}, ValueError, r"targets in \[0, 1\].*from -0.5 to 1", "Y"),
    ("log-loss-softmax-onehot-out-of-range", "soft", "loss", (X4, np.full((4, 3), 1.5)), {}, ValueError, r"targets in \[0, 1\]", "Y"),
    # fit settings
    ("epochs-0", "bin", "fit", (X4, Y4), dict(epochs=0), ValueError, r"epochs must be >= 1; got 0", "epochs"),
    ("epochs-negative", "bin", "fit", (X4, Y4), dict(epochs=-5), ValueError, r"epochs must be >= 1; got -5", "epochs"),
    ("epochs-float", "bin", "fit", (X4, Y4), dict(epochs=10.0), TypeError, r"epochs must be a positive integer; got 10.0", "epochs"),
    ("epochs-bool", "bin", "fit", (X4, Y4), dict(epochs=True), TypeError, r"epochs must be a positive integer; got True", "epochs"),
    ("epochs-none", "bin", "fit", (X4, Y4), dict(epochs=None), TypeError, r"epochs must be a positive integer; got None", "epochs"),
    ("batch-0", "bin", "fit", (X4, Y4), dict(batch_size=0), ValueError, r"batch_size must be >= 1; got 0", "batch_size"),
    ("batch-float", "bin", "fit", (X4, Y4), dict(batch_size=2.5), TypeError, r"batch_size must be a positive integer or None; got 2.5", "batch_size"),
    ("lr-0", "bin", "fit", (X4, Y4), dict(learning_rate=0.0), ValueError, r"learning_rate must be a finite number > 0; got 0.0", "learning_rate"),
    ("lr-negative", "bin", "fit", (X4, Y4), dict(learning_rate=-0.1), ValueError, r"> 0; got -0.1", "learning_rate"),
    ("lr-inf", "bin", "fit", (X4, Y4), dict(learning_rate=float("inf")), ValueError, r"> 0; got inf", "learning_rate"),
    ("lr-nan", "bin", "fit", (X4, Y4), dict(learning_rate=float("nan")), ValueError, r"> 0; got nan", "learning_rate"),
    ("lr-string", "bin", "fit", (X4, Y4), dict(learning_rate="0.1"), TypeError, r"positive real number; got '0.1'", "learning_rate"),
]


@pytest.mark.parametrize("row", BAD_INPUTS, ids=[r[0] for r in BAD_INPUTS])
def test_every_bad_input_is_refused_clearly(row):
    _, which, method, args, kwargs, exc, pattern, argument = row
    net = _nets()[which]
    before = net.params.copy()
    snapshots = [np.array(a, copy=True) if isinstance(a, np.ndarray) else None for a in args]
    with pytest.raises(exc, match=pattern) as info:
        getattr(net, method)(*args, **kwargs)
    message = str(info.value)
    assert argument in message and "got" in message, message
    assert np.array_equal(net.params, before), "params changed by a refused call"
    for a, snap in zip(args, snapshots):
        if snap is not None and snap.dtype.kind in "fiu":
            assert np.array_equal(a, snap, equal_nan=True), "an input was modified"


# (id, kwargs, exception, regex, argument named)
BAD_CONSTRUCTOR = [
    ("sizes-zero", dict(layer_sizes=[2, 0, 1]), ValueError, r"layer_sizes\[1\] must be a positive integer; got 0", "layer_sizes"),
    ("sizes-negative", dict(layer_sizes=[2, -3, 1]), ValueError, r"layer_sizes\[1\].*got -3", "layer_sizes"),
    ("sizes-float", dict(layer_sizes=[2.0, 1]), ValueError, r"layer_sizes\[0\].*got 2.0", "layer_sizes"),
    ("sizes-np-float", dict(layer_sizes=np.array([2.0, 1.0])), ValueError, r"layer_sizes\[0\]", "layer_sizes"),
    ("sizes-bool", dict(layer_sizes=[2, True]), ValueError, r"layer_sizes\[1\].*got True", "layer_sizes"),
    ("sizes-none-entry", dict(layer_sizes=[2, None]), ValueError, r"layer_sizes\[1\].*got None", "layer_sizes"),
    ("sizes-string-entry", dict(layer_sizes=[2, "3"]), ValueError, r"layer_sizes\[1\].*got '3'", "layer_sizes"),
    ("sizes-one", dict(layer_sizes=[3]), ValueError, r"at least an input and an output.*got \[3\]", "layer_sizes"),
    ("sizes-empty", dict(layer_sizes=[]), ValueError, r"at least an input and an output.*got \[\]", "layer_sizes"),
    ("sizes-string", dict(layer_sizes="21"), TypeError, r"sequence of positive integers.*got '21'", "layer_sizes"),
    ("sizes-int", dict(layer_sizes=5), TypeError, r"sequence of positive integers.*got 5", "layer_sizes"),
    ("activation", dict(activation="swish"), ValueError, r"one of 'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'gelu', 'softplus'; got 'swish'", "activation"),
    ("activation-none", dict(activation=None), ValueError, r"activation must be one of.*got None", "activation"),
    ("activation-list", dict(activation=["relu"]), ValueError, r"activation must be one of.*got \['relu'\]", "activation"),
    ("output", dict(output="tanh"), ValueError, r"output must be one of 'identity', 'sigmoid', 'softmax', 'exp'; got 'tanh'", "output"),
    ("loss", dict(loss="hinge"), ValueError, r"loss must be one of 'squared_error', 'log_loss', 'poisson'; got 'hinge'", "loss"),
    ("poisson-identity", dict(output="identity", loss="poisson"), ValueError, r"loss='poisson' and output='exp' go together.*got output='identity' with loss='poisson'", "loss"),
    ("exp-squared", dict(output="exp", loss="squared_error"), ValueError, r"loss='poisson' and output='exp' go together.*got output='exp' with loss='squared_error'", "output"),
    ("init", dict(init="zeros"), ValueError, r"init must be one of 'plain', 'xavier', 'he'; got 'zeros'", "init"),
    ("dtype-float16", dict(dtype="float16"), ValueError, r"dtype must be one of 'float32', 'float64'; got 'float16'", "dtype"),
    ("dtype-int", dict(dtype=int), ValueError, r"dtype must be one of.*got 'int64'", "dtype"),
    ("dtype-garbage", dict(dtype=123), ValueError, r"dtype must be one of.*got 123", "dtype"),
    ("l2-negative", dict(l2=-1.0), ValueError, r"l2 must be a finite number >= 0; got -1.0", "l2"),
    ("l2-nan", dict(l2=float("nan")), ValueError, r"l2 must be a finite number >= 0; got nan", "l2"),
    ("l2-inf", dict(l2=float("inf")), ValueError, r"got inf", "l2"),
    ("l2-string", dict(l2="0.1"), TypeError, r"l2 must be a non-negative real number; got '0.1'", "l2"),
    ("log-loss-identity", dict(output="identity", loss="log_loss"), ValueError, r"needs output='sigmoid' or output='softmax'; got output='identity'", "output"),
    ("softmax-one-unit", dict(layer_sizes=[2, 1], output="softmax"), ValueError, r"at least 2 output units; got layer_sizes\[-1\]=1", "softmax"),
]


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
@pytest.mark.parametrize("row", BAD_CONSTRUCTOR, ids=[r[0] for r in BAD_CONSTRUCTOR])
def test_every_bad_setting_is_refused_clearly(cls, row):
    _, kwargs, exc, pattern, argument = row
    kwargs = dict(kwargs)
    sizes = kwargs.pop("layer_sizes", [2, 3, 2])
    with pytest.raises(exc, match=pattern) as info:
        cls(sizes, **kwargs)
    assert argument in str(info.value) and "got" in str(info.value)


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (1.5, TypeError), ("abc", TypeError)])
def test_bad_seed_is_refused_naming_seed(seed, exc):
    # Needs BaseNetwork.__init__ to call _validation.check_seed(seed) (see the
    # report); numpy's own message ("entropy", "expected non-negative
    # integer") does not name the argument.
    with pytest.raises(exc, match=r"seed must be None or a non-negative integer; got"):
        fastmlp.Network([2, 1], seed=seed)


def test_good_dtype_spellings_are_accepted():
    for spelling, name in [("float32", "float32"), ("f4", "float32"), (np.float32, "float32"),
                           ("float64", "float64"), (float, "float64"), (np.dtype("<f8"), "float64")]:
        assert fastmlp.Network([2, 1], dtype=spelling, seed=0).dtype == np.dtype(name)


def test_unknown_optimizer_lists_the_valid_ones():
    net = fastmlp.Network([2, 3, 1], seed=0)
    if "optimizer" not in inspect.signature(net.fit).parameters:
        pytest.skip("fit has no optimizer argument yet")
    with pytest.raises(ValueError, match=r"optimizer must be one of .*'sgd'.*'adam'.*'rmsprop'"
                                         r".*'adamw'.*; got 'adagrad'"):
        net.fit(X4, Y4, optimizer="adagrad")


def test_validators_for_the_training_options():
    from fastmlp import _validation as v
    assert v.check_fraction("momentum", 0.9) == 0.9
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\); got 1.0"):
        v.check_fraction("momentum", 1.0)
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\); got 0.0"):
        v.check_fraction("validation_fraction", 0.0, low_open=True)
    with pytest.raises(TypeError, match=r"beta_1 must be a real number; got '0.9'"):
        v.check_fraction("beta_1", "0.9")
    assert v.check_optional_positive("clip_norm", None) is None
    assert v.check_optional_positive("clip_norm", 5) == 5.0
    with pytest.raises(ValueError, match=r"clip_norm must be a finite number > 0; got -1.0"):
        v.check_optional_positive("clip_norm", -1)
    with pytest.raises(ValueError, match=r"optimizer must be one of 'sgd', 'adam'; got 'rmsprop'"):
        v.check_choice("optimizer", "rmsprop", ("sgd", "adam"))
    assert v.check_seed(None) is None and v.check_seed(np.int64(3)) == 3


# ---------------------------------------------------------------------------
# Awkward but valid arrays give exactly the plain answer, everywhere.
# ---------------------------------------------------------------------------
def _variants(X, tmp_path):
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    readonly = X.copy()
    readonly.setflags(write=False)
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    mm[...] = X
    mm.flush()
    ro_mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    return {"fortran": np.asfortranarray(X), "strided": wide[:, ::2], "reversed": X[::-1][::-1],
            "readonly": readonly, "memmap": mm, "readonly-memmap": ro_mm, "list": X.tolist(),
            "big-endian": X.astype(X.dtype.newbyteorder(">"))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
def test_awkward_layouts_give_bit_identical_results(cls, dtype, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 3)).astype(dtype)
    y = rng.integers(0, 3, size=9)
    Y = np.eye(3, dtype=dtype)[y]
    base = cls([3, 4, 3], output="softmax", loss="log_loss", dtype=dtype, seed=0)
    plain_pred = base.predict(X)
    plain_loss = base.loss(X, Y)
    plain_grads = base.gradients(X, Y)
    fitted = cls([3, 4, 3], output="softmax", loss="log_loss", dtype=dtype, seed=0)
    fitted.fit(X, Y, epochs=3, learning_rate=0.3, batch_size=4)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    y_variants = _variants(Y, tmp_path / "y")
    for name, Xv in _variants(X, tmp_path / "x").items():
        Yv = y_variants[name]
        assert np.array_equal(base.predict(Xv), plain_pred), name
        assert base.loss(Xv, Yv) == plain_loss, name
        for (a, b), (c, d) in zip(base.gradients(Xv, y), plain_grads):
            assert np.array_equal(a, c) and np.array_equal(b, d), name
        other = cls([3, 4, 3], output="softmax", loss="log_loss", dtype=dtype, seed=0)
        other.fit(Xv, Yv, epochs=3, learning_rate=0.3, batch_size=4)
        assert np.array_equal(other.params, fitted.params), name


@pytest.mark.parametrize("int_dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64])
def test_integer_inputs_equal_their_float_conversion(int_dtype):
    net = fastmlp.Network([3, 4, 1], output="identity", seed=0)
    X = (np.arange(12).reshape(4, 3) % 7).astype(int_dtype)
    y = np.arange(4).astype(int_dtype)
    assert np.array_equal(net.predict(X), net.predict(X.astype(float)))
    assert net.loss(X, y) == net.loss(X.astype(float), y.astype(float))


# ------------------------------------------------------------ issue 24
@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
@pytest.mark.parametrize("kwargs,message", [
    (dict(layer_sizes=[2**63, 1]), r"layer_sizes\[0\] must be at most 2147483647"),
    (dict(layer_sizes=[2**31 - 1] * 4), r"layer_sizes=.* need \d+ parameters; at most"),
    (dict(n_threads=2**31), r"n_threads must be at most 1024; got 2147483648"),
])
def test_sizes_and_thread_counts_beyond_what_the_kernels_take(cls, kwargs, message):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=message):
        cls(kwargs.pop("layer_sizes", [2, 3, 1]), **kwargs)


@pytest.mark.parametrize("value,exc,message", [
    (None, TypeError, r"params must be a numpy array of 13 float64 values; got NoneType"),
    ([0.0] * 13, TypeError, r"got list"),
    (np.zeros(12), ValueError, r"shape \(13,\) and dtype float64; got shape \(12,\)"),
    (np.zeros(13, np.float32), ValueError, r"got shape \(13,\), dtype float32"),
    (np.zeros(26)[::2], ValueError, r"not C-contiguous"),
])
def test_replacing_params_is_checked(value, exc, message):
    net = fastmlp.Network([2, 3, 1], seed=0)
    before = net.params
    with pytest.raises(exc, match=message):
        net.params = value
    assert net.params is before


def test_replaced_params_carry_the_weight_views():
    net = fastmlp.Network([2, 3, 1], seed=0)
    new = np.arange(13.0)
    net.params = new
    assert np.shares_memory(net.weights[0], new) and net.biases[1][0] == 12.0
    assert net.predict(np.ones((1, 2))).shape == (1, 1)


def test_set_params_beyond_float32_is_refused_unchanged():
    net = fastmlp.Network([2, 3, 1], dtype="float32", seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"must fit in the network's dtype float32.*1e\+39"):
        net.set_params(np.full(net.n_params, 1e39))
    assert np.array_equal(net.params, before)
