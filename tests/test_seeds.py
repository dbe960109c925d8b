"""The results the seed tutorials report, reproduced."""
import numpy as np
import pytest

import fastmlp


def test_xor_2_3_1_reaches_100_percent_and_seed_003_cost():
    X, y = fastmlp.datasets.xor()
    finals = []
    for seed in range(10):
        net = fastmlp.Network([2, 3, 1], activation="sigmoid", output="sigmoid",
                              loss="squared_error", init="xavier", seed=seed)
        hist = net.fit(X, y, epochs=5000, learning_rate=1.0, batch_size=None)
        assert np.array_equal((net.predict(X).ravel() > 0.5), y.astype(bool)), seed
        finals.append(net.loss(X, y))
        assert hist.loss[-1] == pytest.approx(finals[-1], rel=0.01)
    # Seed 003 reports a cost of about 0.0009; most starts land there, a few are
    # still on their way down at 5000 epochs (seed 0: 0.0023).
    assert np.median(finals) < 0.0012
    assert sum(f < 0.002 for f in finals) >= 9
    assert max(finals) < 0.003


def test_or_gate_without_hidden_layer():
    X, y = fastmlp.datasets.or_gate()
    net = fastmlp.Network([2, 1], output="sigmoid", loss="squared_error", seed=0)
    net.fit(X, y, epochs=5000, learning_rate=1.0)
    assert np.array_equal(net.predict(X).ravel() > 0.5, y.astype(bool))
    assert net.loss(X, y) < 0.01


@pytest.fixture(scope="module")
def seed_001_data():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.make_classification(
        n_samples=5000, n_features=20, n_informative=15, n_redundant=3, n_repeated=0,
        n_classes=2, flip_y=0.05, class_sep=1.0, shuffle=True, random_state=42)
    return X[:4000], y[:4000], X[4000:], y[4000:]


def accuracy(net, X, y):
    return float(np.mean((net.predict(X)[:, 0] > 0.5) == y))


def test_make_classification_hidden_8_3(seed_001_data):
    X_train, y_train, X_test, y_test = seed_001_data
    net = fastmlp.Network([20, 8, 3, 1], output="sigmoid", loss="log_loss", init="plain", seed=0)
    net.fit(X_train, y_train, epochs=2000, learning_rate=1.0)
    assert accuracy(net, X_train, y_train) >= 0.93      # seed 001: about 95%
    assert accuracy(net, X_test, y_test) >= 0.89        # seed 001: about 91%


def test_make_classification_no_hidden_layer(seed_001_data):
    X_train, y_train, X_test, y_test = seed_001_data
    net = fastmlp.Network([20, 1], output="sigmoid", loss="log_loss", init="plain", seed=0)
    net.fit(X_train, y_train, epochs=2000, learning_rate=1.0)
    assert 0.68 <= accuracy(net, X_test, y_test) <= 0.78   # seed 001: about 72%
