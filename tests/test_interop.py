"""fastmlp.interop: serve scikit-learn and PyTorch MLPs through the kernels."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import interop


def test_import_interop_imports_neither_library():
    code = ("import sys, fastmlp, fastmlp.interop; "
            "bad = [m for m in ('sklearn', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------- scikit-learn
@pytest.fixture(scope="module")
def sk():
    pytest.importorskip("sklearn")
    from sklearn import datasets, neural_network
    return datasets, neural_network


def _fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_from_sklearn_classifier_predicts_the_same(sk, activation, task):
    datasets, nn = sk
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    if task == "binary":
        y = (X[:, 0] + X[:, 1] > 0).astype(int)
    elif task == "multiclass":
        y = np.digitize(X[:, 0], [-0.5, 0.5])
    else:
        y = (X[:, :3] > 0).astype(int)
    mlp = _fit_quietly(nn.MLPClassifier((7, 4), activation=activation, max_iter=30,
                                        random_state=0), X, y)
    net = interop.from_sklearn(mlp)
    assert isinstance(net, fastmlp.Network)
    assert net.activation == {"logistic": "sigmoid"}.get(activation, activation)
    assert net.loss_name == "log_loss"
    P = mlp.predict_proba(X)
    expected = P[:, 1:] if task == "binary" else P
    np.testing.assert_allclose(net.predict(X), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_targets", [1, 3])
def test_from_sklearn_regressor_predicts_the_same(sk, n_targets):
    datasets, nn = sk
    X, y = datasets.make_regression(100, 4, n_targets=n_targets, random_state=0)
    mlp = _fit_quietly(nn.MLPRegressor(hidden_layer_sizes=(6,), max_iter=50, random_state=0),
                       X, y / 100)
    net = interop.from_sklearn(mlp)
    assert (net.output, net.loss_name) == ("identity", "squared_error")
    # the shape of scikit-learn's predict: (n,) for one target, (n, k) for k
    assert net.predict(X).shape == mlp.predict(X).shape
    assert net.flat_output == (n_targets == 1)
    np.testing.assert_allclose(net.predict(X), mlp.predict(X), rtol=1e-12, atol=1e-12)
    # alpha is the same penalty as l2: alpha / (2 n) sum(W**2)
    assert net.l2 == mlp.alpha == 1e-4


def test_from_sklearn_float32_and_reference_twin(sk):
    datasets, nn = sk
    X, y = datasets.make_moons(100, random_state=0)
    X32 = X.astype(np.float32)
    mlp = _fit_quietly(nn.MLPClassifier((5,), max_iter=20, random_state=0), X32, y)
    net = interop.from_sklearn(mlp)
    assert net.dtype == np.float32
    np.testing.assert_allclose(net.predict(X32), mlp.predict_proba(X32)[:, 1:], rtol=1e-5,
                               atol=1e-6)
    ref = interop.from_sklearn(mlp, dtype="float64", network_cls=fastmlp.reference.Network)
    assert isinstance(ref, fastmlp.reference.Network) and ref.dtype == np.float64
    np.testing.assert_allclose(ref.predict(X), net.predict(X), rtol=1e-5, atol=1e-6)


def test_from_sklearn_no_hidden_layer(sk):
    datasets, nn = sk
    X, y = datasets.make_moons(100, random_state=0)
    mlp = _fit_quietly(nn.MLPClassifier((), max_iter=20, random_state=0), X, y)
    net = interop.from_sklearn(mlp)
    assert net.layer_sizes == (2, 1)
    np.testing.assert_allclose(net.predict(X), mlp.predict_proba(X)[:, 1:], rtol=1e-12)


def test_from_sklearn_accepts_fastmlp_estimators(sk):
    from fastmlp.estimators import MLPClassifier
    datasets, _ = sk
    X, y = datasets.load_iris(return_X_y=True)
    clf = _fit_quietly(MLPClassifier((8,), max_iter=20, random_state=0), X, y)
    net = interop.from_sklearn(clf)
    assert net is not clf.network_
    np.testing.assert_array_equal(net.predict(X), clf.predict_proba(X))
    assert not net.flat_output and net.l2 == clf.alpha
    from fastmlp.estimators import MLPRegressor
    reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), alpha=0.5, max_iter=20,
                                    random_state=0), X, X[:, 0])
    net = interop.from_sklearn(reg)
    assert net.flat_output and net.l2 == 0.5
    np.testing.assert_array_equal(net.predict(X), reg.predict(X))


def test_from_sklearn_clear_errors(sk):
    datasets, nn = sk
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = datasets.make_moons(60, random_state=0)
    with pytest.raises(TypeError, match="MLPClassifier or MLPRegressor; got .*LogisticRegression"):
        interop.from_sklearn(LogisticRegression().fit(X, y))
    with pytest.raises(TypeError, match="Pipeline"):
        interop.from_sklearn(make_pipeline(StandardScaler(), nn.MLPClassifier()))
    with pytest.raises(ValueError, match="fitted"):
        interop.from_sklearn(nn.MLPClassifier())
    with pytest.raises(ValueError, match="dtype"):
        interop.from_sklearn(_fit_quietly(nn.MLPClassifier((3,), max_iter=5), X, y),
                             dtype="int32")


@pytest.mark.parametrize("layer, shape, words", [
    ("coefs_", (1, 3), ["coefs_[1] has shape (1, 3)", "coefs_[0] gives 7 outputs", "(7, n_out)"]),
    ("coefs_", (7,), ["coefs_[1] must be a 2-D"]),
    ("intercepts_", (1,), ["intercepts_[1] has shape (1,)", "needs (3,)"]),
    ("intercepts_", (3, 1), ["intercepts_[1] has shape (3, 1)"]),
])
def test_from_sklearn_refuses_malformed_layers_instead_of_broadcasting(sk, layer, shape, words):
    # issue 24: a coefs_[1] of shape (1, 3) was broadcast over the (7, 3) layer
    datasets, nn = sk
    X, y = datasets.make_blobs(90, 4, centers=3, random_state=0)
    mlp = _fit_quietly(nn.MLPClassifier((7,), max_iter=5, random_state=0), X, y)
    getattr(mlp, layer)[1] = np.ones(shape)
    with pytest.raises(ValueError) as info:
        interop.from_sklearn(mlp)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    mlp.coefs_ = mlp.coefs_[:1]
    with pytest.raises(ValueError, match="one entry per layer"):
        interop.from_sklearn(mlp)


def test_a_converted_network_trains_on_as_one_built_and_overwritten(sk):
    # the network is built around the converted weights, not initialised; its
    # generator (shuffling) still starts where a freshly built one's does
    datasets, nn = sk
    X, y = datasets.make_moons(60, random_state=0)
    mlp = _fit_quietly(nn.MLPClassifier((5, 4), max_iter=5, random_state=0), X, y)
    net = interop.from_sklearn(mlp)
    fresh = fastmlp.Network([2, 5, 4, 1], activation=net.activation, output=net.output,
                            loss=net.loss_name, l2=mlp.alpha, seed=0)
    assert net._rng.bit_generator.state == fresh._rng.bit_generator.state
    fresh.params[...] = net.params
    h1 = net.fit(X, y, epochs=3, learning_rate=0.1, batch_size=8)
    h2 = fresh.fit(X, y, epochs=3, learning_rate=0.1, batch_size=8)
    assert h1.loss == h2.loss and np.array_equal(net.params, fresh.params)


# -------------------------------------------------------------------- torch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_out(model, X):
    import torch
    with torch.no_grad():
        return model(torch.as_tensor(X)).numpy()


# PyTorch's activation (with the settings fastmlp's namesake has) -> fastmlp's name
TORCH_ACTIVATIONS = {
    "Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "ReLU": ("relu", {}),
    "LeakyReLU": ("leaky_relu", {}), "GELU": ("gelu", {"approximate": "tanh"}),
    "Softplus": ("softplus", {}), None: ("identity", {}),
}


@pytest.mark.parametrize("act", list(TORCH_ACTIVATIONS))
@pytest.mark.parametrize("head", [None, "Sigmoid", "Softmax"])
def test_from_torch_predicts_the_same(torch, act, head):
    nn = torch.nn
    torch.manual_seed(0)
    name, settings = TORCH_ACTIVATIONS[act]
    layers = [nn.Linear(5, 8)]
    if act:
        layers.append(getattr(nn, act)(**settings))
    layers += [nn.Linear(8, 6)]
    if act:
        layers.append(getattr(nn, act)(**settings))
    layers.append(nn.Linear(6, 3))
    if head == "Softmax":
        layers.append(nn.Softmax(dim=-1))
    elif head:
        layers.append(getattr(nn, head)())
    model = nn.Sequential(*layers).double()
    X = np.random.default_rng(0).normal(size=(50, 5))
    net = interop.from_torch(model)
    assert net.dtype == np.float64
    assert net.layer_sizes == (5, 8, 6, 3)
    assert net.activation == name
    assert net.output == {None: "identity", "Sigmoid": "sigmoid", "Softmax": "softmax"}[head]
    assert net.loss_name == ("squared_error" if head is None else "log_loss")
    np.testing.assert_allclose(net.predict(X), _torch_out(model, X), rtol=1e-12, atol=1e-13)


def test_from_torch_softplus_beyond_torchs_threshold(torch):
    # PyTorch's Softplus returns z itself above z = 20; fastmlp's log(1 + e^z)
    # differs there by e^-z < 2.1e-9
    nn = torch.nn
    model = nn.Sequential(nn.Linear(2, 3), nn.Softplus(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[30.0, 0.0], [0.0, 25.0], [1.0, 1.0]]))
    X = np.array([[1.0, 1.0], [-1.0, 0.5], [0.9, -2.0]])
    net = interop.from_torch(model)
    assert net.activation == "softplus"
    np.testing.assert_allclose(net.predict(X), _torch_out(model, X), rtol=1e-8)


def test_from_torch_carries_one_dropout_rate_after_every_hidden_layer(torch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8),
                          nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))
    assert interop.from_torch(model).dropout == 0.3
    assert interop.from_torch(nn.Sequential(nn.Linear(4, 1))).dropout == 0.0


@pytest.mark.parametrize("layers", [
    lambda nn: [nn.Dropout(0.2), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)],      # input
    lambda nn: [nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 8), nn.ReLU(),
                nn.Linear(8, 1)],                                                  # one of two
    lambda nn: [nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 8), nn.ReLU(),
                nn.Dropout(0.5), nn.Linear(8, 1)],                                 # two rates
])
def test_from_torch_other_dropout_arrangements_warn_and_give_zero(torch, layers):
    model = torch.nn.Sequential(*layers(torch.nn)).eval()
    with pytest.warns(UserWarning, match="made with dropout=0"):
        net = interop.from_torch(model)
    assert net.dropout == 0.0
    X = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(net.predict(X), _torch_out(model, X), rtol=1e-5, atol=1e-6)


def test_from_torch_float32_nested_and_skipped_layers(torch):
    nn = torch.nn
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 16), nn.ReLU()),
                          nn.Dropout(0.5), nn.Linear(16, 2, bias=False), nn.Identity()).eval()
    X = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    net = interop.from_torch(model)
    assert net.dtype == np.float32 and net.layer_sizes == (4, 16, 2)
    np.testing.assert_array_equal(net.biases[1], 0)
    np.testing.assert_allclose(net.predict(X), _torch_out(model, X), rtol=1e-5, atol=1e-6)
    single = interop.from_torch(nn.Linear(4, 1), dtype="float64", loss="squared_error")
    assert single.layer_sizes == (4, 1) and single.dtype == np.float64


@pytest.mark.parametrize("build, error, match", [
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.LogSoftmax(dim=1)), TypeError, "LogSoftmax"),
    (lambda nn: nn.Sequential(nn.Conv1d(1, 1, 1)), TypeError, "Conv1d"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(),
                              nn.Linear(4, 1)), ValueError, "different activations"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), ValueError, "dim=0"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 1)), ValueError, "takes 5 inputs"),
    (lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(3, 1)), ValueError, "before the first"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.ReLU()), ValueError, "output activation"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1), nn.Linear(4, 2)),
     ValueError, "only supported after the last"),
    (lambda nn: nn.Sequential(), ValueError, "no nn.Linear"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 1)),
     ValueError, r"GELU\(approximate='tanh'\), got approximate='none'"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1)),
     ValueError, "slope 0.01 below 0; got negative_slope=0.2"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Softplus(beta=2), nn.Linear(4, 1)),
     ValueError, "got beta=2"),
    (lambda nn: nn.LSTM(3, 4), TypeError, "nn.Sequential"),
])
def test_from_torch_clear_errors(torch, build, error, match):
    with pytest.raises(error, match=match):
        interop.from_torch(build(torch.nn))


def test_from_torch_rejects_non_modules(torch):
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        interop.from_torch([1, 2, 3])


@pytest.mark.skipif(not hasattr(fastmlp.Network, "from_torch"),
                    reason="Network.from_torch / from_sklearn classmethods not wired yet")
def test_network_classmethods(torch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1), nn.Sigmoid()).double()
    net = fastmlp.Network.from_torch(model)
    assert type(net) is fastmlp.Network
    ref = fastmlp.reference.Network.from_torch(model)
    assert type(ref) is fastmlp.reference.Network
    X = np.random.default_rng(2).normal(size=(10, 2))
    np.testing.assert_allclose(net.predict(X), ref.predict(X), rtol=1e-12)


# ------------------------------------------- issue 26: a regressor's (n,) and alpha
@pytest.fixture
def sk_regressor(sk):
    datasets, nn = sk
    X, y = datasets.make_regression(80, 3, random_state=1)
    mlp = _fit_quietly(nn.MLPRegressor(hidden_layer_sizes=(5,), alpha=0.25, max_iter=40,
                                       random_state=0), X, y / 50)
    return mlp, X, y / 50


def test_from_sklearn_regressor_keeps_alpha_as_the_same_objective(sk_regressor):
    mlp, X, y = sk_regressor
    net = interop.from_sklearn(mlp)
    assert net.l2 == 0.25
    # scikit-learn's loss: 0.5 mean (y - p)^2 + alpha / (2 n) sum(W**2)
    p = mlp.predict(X)
    penalty = 0.25 / (2 * len(X)) * sum(np.sum(W ** 2) for W in mlp.coefs_)
    np.testing.assert_allclose(net.loss(X, y), 0.5 * np.mean((y - p) ** 2) + penalty,
                               rtol=1e-12)
    assert interop.from_sklearn(mlp, network_cls=fastmlp.reference.Network).l2 == 0.25


@pytest.mark.parametrize("cls", ["Network", "reference"])
def test_flat_output_networks_predict_1d_and_keep_it_through_files(tmp_path, sk_regressor, cls):
    import pickle
    import fastmlp.reference
    mlp, X, y = sk_regressor
    network_cls = fastmlp.Network if cls == "Network" else fastmlp.reference.Network
    net = interop.from_sklearn(mlp, network_cls=network_cls)
    assert net.flat_output and net.predict(X).shape == (80,) and net.predict(X[:1]).shape == (1,)
    np.testing.assert_allclose(net.predict(X), mlp.predict(X), rtol=1e-12, atol=1e-12)
    assert "flat_output=True" in repr(net)
    # the rest of the API is as without the flag
    assert net.score(X, y) == pytest.approx(mlp.score(X, y), rel=1e-10)
    assert net.gradients(X, y)[0][0].shape == (3, 5)
    # saved and loaded (io), pickled
    net.save(tmp_path / "r.npz")
    assert fastmlp.io.read_header(tmp_path / "r.npz")["flat_output"] is True
    back = network_cls.load(tmp_path / "r.npz")
    assert back.flat_output and np.array_equal(back.predict(X), net.predict(X))
    again = pickle.loads(pickle.dumps(net))
    assert again.flat_output and again.predict(X).shape == (80,)
    # a network without the flag: 2-D as always, and no key in its file
    plain = network_cls([3, 1], output="identity", seed=0)
    assert not plain.flat_output and plain.predict(X).shape == (80, 1)
    plain.save(tmp_path / "p.npz")
    assert "flat_output" not in fastmlp.io.read_header(tmp_path / "p.npz")


def test_flat_output_is_checked(tmp_path):
    with pytest.raises(ValueError, match="flat_output=True needs one output"):
        fastmlp.Network([2, 3], flat_output=True)
    with pytest.raises(TypeError, match="flat_output must be True or False"):
        fastmlp.Network([2, 1], flat_output=1)
    net = fastmlp.Network([2, 1], output="identity", flat_output=True, seed=0)
    assert net.predict(np.ones((4, 2))).shape == (4,)
    assert fastmlp.Network([2, 1], output="sigmoid", flat_output=True,
                           seed=0).predict_classes(np.ones((4, 2))).shape == (4,)


def test_flat_output_onnx_graph_gives_1d(tmp_path, sk_regressor):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    mlp, X, _ = sk_regressor
    net = interop.from_sklearn(mlp)
    path = net.to_onnx(tmp_path / "r.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"X": X.astype(net.dtype)})[0]
    assert out.shape == (80,)
    np.testing.assert_allclose(out, net.predict(X), rtol=1e-12)
