"""Network.score, Network.predict_classes and class_weight (fit and MLPClassifier)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

NETS = [fastmlp.Network, reference.Network]


def _data(n=120, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(n, n_in))


@pytest.mark.parametrize("cls", NETS)
def test_score_is_accuracy_for_classifiers(cls):
    metrics = pytest.importorskip("sklearn.metrics")
    rng, X = _data()
    y = rng.integers(0, 3, len(X))
    w = rng.random(len(X))
    net = cls([3, 4, 3], activation="tanh", output="softmax", loss="log_loss", seed=0)
    net.fit(X, y, epochs=30, learning_rate=0.5)
    pred = net.predict(X).argmax(axis=1)
    assert net.score(X, y) == pytest.approx(metrics.accuracy_score(y, pred), abs=1e-12)
    assert net.score(X, np.eye(3)[y], w) == pytest.approx(
        metrics.accuracy_score(y, pred, sample_weight=w), abs=1e-12)
    binary = cls([3, 1], output="sigmoid", loss="log_loss", seed=0)
    yb = (X[:, 0] > 0).astype(float)
    binary.fit(X, yb, epochs=50, learning_rate=1.0)
    assert binary.score(X, yb) == pytest.approx(
        metrics.accuracy_score(yb, binary.predict(X)[:, 0] > 0.5), abs=1e-12)


def test_score_of_several_sigmoid_outputs_needs_every_output_right():
    rng, X = _data()
    Y = (rng.random((len(X), 2)) > 0.5).astype(float)
    net = fastmlp.Network([3, 2], output="sigmoid", loss="log_loss", seed=0)
    right = np.all((net.predict(X) > 0.5) == (Y > 0.5), axis=1)
    assert net.score(X, Y) == pytest.approx(right.mean(), abs=1e-12)


@pytest.mark.parametrize("cls", NETS)
def test_score_is_r2_for_regressors(cls):
    metrics = pytest.importorskip("sklearn.metrics")
    rng, X = _data()
    Y = X @ rng.normal(size=(3, 2)) + 0.3 * rng.normal(size=(len(X), 2))
    w = rng.random(len(X))
    net = cls([3, 2], output="identity", seed=0)
    net.fit(X, Y, epochs=20, learning_rate=0.1)
    P = net.predict(X)
    assert net.score(X, Y) == pytest.approx(metrics.r2_score(Y, P), abs=1e-12)
    assert net.score(X, Y, w) == pytest.approx(metrics.r2_score(Y, P, sample_weight=w), abs=1e-12)
    one = cls([3, 1], output="identity", seed=0)
    assert one.score(X, np.full(len(X), 2.0)) == 0.0        # constant target, not fitted


@pytest.mark.parametrize("cls", NETS)
def test_predict_classes(cls):
    rng, X = _data()
    soft = cls([3, 3], output="softmax", loss="log_loss", seed=0)
    idx = soft.predict_classes(X)
    np.testing.assert_array_equal(idx, soft.predict(X).argmax(axis=1))
    np.testing.assert_array_equal(soft.predict_classes(X, labels=["a", "b", "c"]),
                                  np.array(["a", "b", "c"])[idx])
    sig = cls([3, 1], output="sigmoid", seed=0)
    p = sig.predict(X)[:, 0]
    np.testing.assert_array_equal(sig.predict_classes(X), (p > 0.5).astype(int))
    np.testing.assert_array_equal(sig.predict_classes(X, threshold=0.3), (p > 0.3).astype(int))
    np.testing.assert_array_equal(sig.predict_classes(X, labels=["no", "yes"]),
                                  np.where(p > 0.5, "yes", "no"))
    multi = cls([3, 2], output="sigmoid", seed=0)
    assert multi.predict_classes(X).shape == (len(X), 2)


def test_predict_classes_errors():
    _, X = _data(5)
    with pytest.raises(ValueError, match="needs a classifier.*got output='identity'"):
        fastmlp.Network([3, 1], output="identity").predict_classes(X)
    soft = fastmlp.Network([3, 3], output="softmax", loss="log_loss")
    with pytest.raises(ValueError, match="labels must be a sequence of 3 class names.*got"):
        soft.predict_classes(X, labels=["a", "b"])
    with pytest.raises(ValueError, match="labels must be a sequence of 2"):
        fastmlp.Network([3, 1]).predict_classes(X, labels="ab")
    with pytest.raises(ValueError, match="labels need one class per row"):
        fastmlp.Network([3, 2]).predict_classes(X, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\); got 1.0"):
        fastmlp.Network([3, 1]).predict_classes(X, threshold=1.0)


# ---------------------------------------------------------------- class_weight
def _pair(cls, output="softmax", n_out=3):
    kw = dict(activation="tanh", output=output, loss="log_loss", seed=1)
    return cls([3, 4, n_out], **kw), cls([3, 4, n_out], **kw)


@pytest.mark.parametrize("cls", NETS)
def test_class_weight_dict_is_folded_into_sample_weights(cls):
    rng, X = _data()
    y = rng.integers(0, 3, len(X))
    w = rng.random(len(X))
    a, b = _pair(cls)
    ha = a.fit(X, y, epochs=5, learning_rate=0.5, batch_size=16, sample_weight=w,
               class_weight={0: 2.0, 2: 0.5})
    hb = b.fit(X, y, epochs=5, learning_rate=0.5, batch_size=16,
               sample_weight=w * np.array([2.0, 1.0, 0.5])[y])
    np.testing.assert_array_equal(a.params, b.params)
    assert ha.loss == hb.loss


@pytest.mark.parametrize("output,n_out", [("softmax", 3), ("sigmoid", 1)])
def test_class_weight_balanced_is_scikit_learns(output, n_out):
    cw = pytest.importorskip("sklearn.utils.class_weight")
    rng, X = _data()
    y = (rng.random(len(X)) < np.where(X[:, 0] > 0, 0.8, 0.1)).astype(int)
    if n_out == 3:
        y = y + (X[:, 1] > 1)
    a, b = _pair(fastmlp.Network, output, n_out)
    a.fit(X, y, epochs=5, learning_rate=0.5, class_weight="balanced")
    b.fit(X, y, epochs=5, learning_rate=0.5, sample_weight=cw.compute_sample_weight("balanced", y))
    np.testing.assert_allclose(a.params, b.params, rtol=1e-12, atol=1e-15)


def test_class_weight_in_an_lbfgs_fit():
    rng, X = _data()
    y = rng.integers(0, 3, len(X))
    a, b = _pair(fastmlp.Network)
    a.fit(X, y, epochs=5, optimizer="lbfgs", class_weight={2: 3.0})
    b.fit(X, y, epochs=5, optimizer="lbfgs", sample_weight=np.where(y == 2, 3.0, 1.0))
    np.testing.assert_array_equal(a.params, b.params)


def test_class_weight_reaches_the_rows_of_a_validation_split():
    rng, X = _data()
    y = rng.integers(0, 3, len(X))
    a, b = _pair(fastmlp.Network)
    ha = a.fit(X, y, epochs=3, learning_rate=0.5, validation_split=0.2, class_weight={1: 3.0})
    hb = b.fit(X, y, epochs=3, learning_rate=0.5, validation_split=0.2,
               sample_weight=np.where(y == 1, 3.0, 1.0))
    assert ha.val_loss == hb.val_loss


def test_class_weight_errors():
    rng, X = _data(20)
    y = rng.integers(0, 3, 20)
    soft = fastmlp.Network([3, 3], output="softmax", loss="log_loss")
    with pytest.raises(ValueError, match=r"class_weight keys must be classes 0 \.\. 2.*got 3"):
        soft.fit(X, y, epochs=1, class_weight={3: 1.0})
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite number >= 0"):
        soft.fit(X, y, epochs=1, class_weight={1: -1})
    with pytest.raises(TypeError, match="class_weight must be None, 'balanced' or a dict"):
        soft.fit(X, y, epochs=1, class_weight="auto")
    with pytest.raises(ValueError, match="leaves every row of Y with weight 0"):
        soft.fit(X, y, epochs=1, class_weight={0: 0, 1: 0, 2: 0})
    with pytest.raises(ValueError, match="class labels \\(or one-hot rows\\).*Y\\[0\\]"):
        soft.fit(X, np.full((20, 3), 1 / 3), epochs=1, class_weight="balanced")
    with pytest.raises(ValueError, match="0/1 targets for a sigmoid output.*Y\\[0\\] = 0.5"):
        fastmlp.Network([3, 1]).fit(X, np.full(20, 0.5), epochs=1, class_weight="balanced")
    with pytest.raises(ValueError, match="needs a classifier.*output='identity'"):
        fastmlp.Network([3, 1], output="identity").fit(X, X[:, 0], epochs=1, class_weight={0: 1})
    with pytest.raises(ValueError, match="needs a classifier.*2 outputs"):
        fastmlp.Network([3, 2]).fit(X, np.ones((20, 2)), epochs=1, class_weight="balanced")


# -------------------------------------------------------------- the estimator
def test_mlp_classifier_class_weight_is_folded_into_sample_weights():
    pytest.importorskip("sklearn")
    from sklearn.utils.class_weight import compute_sample_weight
    from fastmlp import MLPClassifier
    rng, X = _data(200)
    y = np.where(rng.random(200) < 0.15, "rare", "common")
    kw = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0, tol=0.0)
    with pytest.warns(Warning):
        for cw in ("balanced", {"rare": 4.0}):
            a = MLPClassifier(class_weight=cw, **kw).fit(X, y)
            b = MLPClassifier(**kw).fit(X, y, sample_weight=compute_sample_weight(cw, y))
            np.testing.assert_array_equal(a.network_.params, b.network_.params)
    assert MLPClassifier(class_weight="balanced").get_params()["class_weight"] == "balanced"


def test_mlp_classifier_class_weight_errors():
    pytest.importorskip("sklearn")
    from fastmlp import MLPClassifier
    rng, X = _data(30)
    y = rng.integers(0, 2, 30)
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced', a dict"):
        MLPClassifier(class_weight=3, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    MLPClassifier(class_weight={1: 2.0}).partial_fit(X, y, classes=[0, 1])
