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
    (dict(activation="softplus"), ValueError, r"activation must be one of 'identity', 'sigmoid', 'tanh', 'relu'; got 'softplus'"),
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
