"""ONNX export: every activation and output, equal to predict in ONNX Runtime."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import reference

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

HIDDEN = ["sigmoid", "tanh", "relu", "identity", "leaky_relu", "gelu", "softplus"]
OUTPUTS = ["sigmoid", "softmax", "identity", "exp"]


def run(model, X):
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})[0]


def _net(cls, sizes, activation, output, dtype, seed=1):
    loss = "poisson" if output == "exp" else "squared_error"
    net = cls(sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape)
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation,output", list(itertools.product(HIDDEN, OUTPUTS)))
def test_every_activation_and_output_matches_predict(activation, output, dtype):
    net = _net(fastmlp.Network, [5, 16, 8, 3], activation, output, dtype)
    X = np.random.default_rng(2).normal(scale=2, size=(257, 5)).astype(dtype)
    model = net.to_onnx()
    assert model.opset_import[0].version >= 17
    Y = run(model, X)
    assert Y.dtype == np.dtype(dtype) and Y.shape == (257, 3)
    np.testing.assert_allclose(Y, net.predict(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(run(model, X[:1]), net.predict(X[:1]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("output", OUTPUTS)
def test_no_hidden_layer_and_the_reference_twin(output):
    n_out = 1 if output != "softmax" else 2
    for cls in (fastmlp.Network, reference.Network):
        net = _net(cls, [4, n_out], "relu", output, "float64")
        X = np.random.default_rng(3).normal(size=(20, 4))
        np.testing.assert_allclose(run(fastmlp.onnx.export(net), X), net.predict(X),
                                   rtol=1e-12, atol=1e-12)


def test_a_trained_network_written_to_a_file(tmp_path):
    X, y = fastmlp.datasets.disk()
    net = fastmlp.Network([2, 16, 1], activation="tanh", loss="log_loss", dtype="float32",
                          seed=0)
    net.fit(X, y, epochs=50, learning_rate=0.5, batch_size=32)
    path = tmp_path / "disk.onnx"
    assert net.to_onnx(path) == str(path)
    assert os.listdir(tmp_path) == ["disk.onnx"]               # no temporary file left
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded)
    props = {p.key: p.value for p in loaded.metadata_props}
    assert props["layer_sizes"] == "2,16,1" and loaded.producer_name == "fastmlp"
    X32 = X.astype(np.float32)
    np.testing.assert_allclose(run(str(path), X32), net.predict(X32), rtol=1e-6, atol=1e-6)


def test_estimators_export_their_network(tmp_path):
    pytest.importorskip("sklearn")
    from fastmlp import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    for y in (rng.integers(0, 2, 120), rng.integers(0, 3, 120)):
        with pytest.warns(Warning):
            clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
        proba = clf.predict_proba(X)
        Y = run(fastmlp.onnx.export(clf, tmp_path / "clf.onnx"), X)
        expected = proba[:, 1:] if Y.shape[1] == 1 else proba     # binary: P(classes_[1])
        np.testing.assert_allclose(Y, expected, rtol=1e-6, atol=1e-6)
    with pytest.warns(Warning):
        reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, X[:, 0])
    np.testing.assert_allclose(run(fastmlp.onnx.export(reg), X)[:, 0], reg.predict(X),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="MLPClassifier is not fitted yet"):
        fastmlp.onnx.export(MLPClassifier())


def test_opsets_and_errors(tmp_path, monkeypatch):
    net = fastmlp.Network([2, 3, 1], seed=0)
    assert net.to_onnx(opset=18).opset_import[0].version == 18
    for bad in (16, 17.0, "17", None):
        with pytest.raises(ValueError, match=f"opset must be an integer >= 17; got {bad!r}"):
            net.to_onnx(opset=bad)
    with pytest.raises(TypeError, match="model must be a fastmlp Network .*; got dict"):
        fastmlp.onnx.export({}, tmp_path / "x.onnx")
    from fastmlp import _onnx
    known = dict(_onnx._HIDDEN)
    del known["relu"]                             # as for an activation added to the kernels
    monkeypatch.setattr(_onnx, "_HIDDEN", known)
    with pytest.raises(ValueError, match="ONNX export supports activation 'sigmoid'.*got "
                                         "activation='relu'"):
        fastmlp.Network([2, 3, 1], activation="relu").to_onnx()
    net.params[0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        net.to_onnx(tmp_path / "x.onnx")
    assert os.listdir(tmp_path) == []


def test_without_onnx_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx"):
        fastmlp.Network([2, 1]).to_onnx()


def test_import_fastmlp_does_not_import_onnx():
    code = "import sys, fastmlp; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
