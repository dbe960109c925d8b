"""fastmlp.estimators: scikit-learn's MLPClassifier / MLPRegressor on the compiled kernels."""
import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (load_iris, make_classification, make_moons,  # noqa: E402
                              make_multilabel_classification, make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp.estimators import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------- scikit-learn's own checks
# Every check passes with every solver, the sgd solver's adaptive schedule
# included, but one: scikit-learn's own MLPClassifier(solver="lbfgs") fails it
# too (its multilabel fit saturates some sigmoid outputs to exactly 1.0, which
# the check refuses). (Configurations that make a check inherently
# inapplicable, e.g. minibatches smaller than the data in
# check_sample_weight_equivalence_on_dense_data, fail for scikit-learn's own MLP
# as well and are not listed here.)
def _expected_failures(estimator):
    if isinstance(estimator, MLPClassifier) and estimator.solver == "lbfgs":
        return {"check_classifiers_multilabel_output_format_predict_proba":
                "fails for sklearn.neural_network.MLPClassifier(solver='lbfgs') too: "
                "predict_proba reaches exactly 1.0"}
    return {}


# xfail_strict (scikit-learn >= 1.8; Python 3.10 gets 1.7): an expected failure
# that passes is an error
_CHECK_OPTIONS = {"expected_failed_checks": _expected_failures}
if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters:
    _CHECK_OPTIONS["xfail_strict"] = True


@parametrize_with_checks([
    MLPClassifier(),
    MLPRegressor(),
    MLPClassifier(solver="sgd", learning_rate="adaptive", max_iter=100),
    MLPRegressor(solver="sgd"),
    MLPClassifier(solver="lbfgs"),
    MLPRegressor(solver="lbfgs"),
], **_CHECK_OPTIONS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ------------------------------------------- same procedure as scikit-learn's
@pytest.mark.parametrize("kwargs", [
    dict(),                                                           # adam
    dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    dict(solver="sgd", learning_rate_init=0.1),                       # nesterov momentum
    dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.1),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, momentum=0.0),
    dict(early_stopping=True, learning_rate_init=0.01),
    dict(activation="logistic", alpha=0.01, batch_size=32),
    dict(activation="tanh", shuffle=False),
])
def test_training_follows_sklearn_epoch_for_epoch(kwargs):
    """Same init, shuffling, optimizer and stopping rule: same weights, to rounding."""
    X, y = make_moons(300, noise=0.1, random_state=0)
    ours = MLPClassifier((16,), max_iter=40, random_state=0, **kwargs).fit(X, y)
    ref = SkMLPClassifier((16,), max_iter=40, random_state=0, **kwargs).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    if kwargs.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_)
        assert ours.best_validation_score_ == ref.best_validation_score_
    else:
        assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-7, atol=1e-9)


def test_adaptive_learning_rate_and_stopping_follow_sklearn():
    X, y = make_moons(200, noise=0.2, random_state=1)
    kw = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.2, tol=1e-2,
              n_iter_no_change=3, max_iter=300, random_state=0)
    ours = MLPClassifier((8,), **kw).fit(X, y)
    ref = SkMLPClassifier((8,), **kw).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_ < 300
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-8)


@pytest.mark.parametrize("kwargs", [dict(), dict(alpha=0.0), dict(batch_size=300, alpha=0.5),
                                    dict(early_stopping=True)])
def test_multi_output_loss_is_sklearns(kwargs):
    """scikit-learn averages the squared error over outputs (its gradient sums them)."""
    X, Y = make_regression(300, 6, n_targets=3, noise=0.1, random_state=0)
    Y = Y / Y.std(axis=0)
    kw = dict(hidden_layer_sizes=(32,), max_iter=30, random_state=0, **kwargs)
    ours, ref = MLPRegressor(**kw).fit(X, Y), SkMLPRegressor(**kw).fit(X, Y)
    assert ours.n_iter_ == ref.n_iter_
    # minibatches' L2 terms are interpolated within an epoch: 4e-10 off at alpha=1e-4
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-8)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-8)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-7, atol=1e-9)


def test_regressor_follows_sklearn_for_one_output():
    X, y = make_regression(200, 5, noise=1.0, random_state=0)
    y = y / y.std()
    ours = MLPRegressor(hidden_layer_sizes=(10,), max_iter=30, random_state=0).fit(X, y)
    ref = SkMLPRegressor(hidden_layer_sizes=(10,), max_iter=30, random_state=0).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-7, atol=1e-9)


def test_accuracy_close_to_sklearn_on_an_easy_task():
    """Independent seeds on both sides: mean test accuracy over 3 seeds within 3 points."""
    X, y = make_classification(1000, 20, n_informative=10, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)
    ours, ref = [], []
    for seed in range(3):
        ours.append(make_pipeline(StandardScaler(), MLPClassifier((32,), random_state=seed))
                    .fit(X_tr, y_tr).score(X_te, y_te))
        ref.append(make_pipeline(StandardScaler(), SkMLPClassifier((32,), random_state=seed + 10))
                   .fit(X_tr, y_tr).score(X_te, y_te))
    assert np.mean(ours) > 0.8
    assert abs(np.mean(ours) - np.mean(ref)) <= 0.03


# ------------------------------------------------------------ target kinds
def test_binary():
    X, y = make_moons(300, noise=0.1, random_state=0)
    labels = np.where(y == 1, "yes", "no")
    clf = MLPClassifier((16,), max_iter=500, learning_rate_init=0.01, random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == ["no", "yes"]
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.n_layers_ == 3 and clf.n_features_in_ == 2
    assert [c.shape for c in clf.coefs_] == [(2, 16), (16, 1)]
    P = clf.predict_proba(X)
    assert P.shape == (300, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P))
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert clf.score(X, labels) > 0.95


def test_multiclass():
    X, y = load_iris(return_X_y=True)
    clf = make_pipeline(StandardScaler(),
                        MLPClassifier((16,), max_iter=1000, random_state=0)).fit(X, y)
    mlp = clf[-1]
    assert mlp.out_activation_ == "softmax" and mlp.n_outputs_ == 3
    assert mlp.network_.output == "softmax" and mlp.network_.loss_name == "log_loss"
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1)
    assert clf.score(X, y) > 0.95


def test_multilabel():
    X, Y = make_multilabel_classification(300, n_features=10, n_classes=4, random_state=0)
    clf = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=500, random_state=0))
    clf.fit(X, Y)
    assert clf[-1].out_activation_ == "logistic" and clf[-1].n_outputs_ == 4
    pred = clf.predict(X)
    assert pred.shape == (300, 4) and set(np.unique(pred)) <= {0, 1}
    P = clf.predict_proba(X)
    assert P.shape == (300, 4) and ((P >= 0) & (P <= 1)).all()
    ref = make_pipeline(StandardScaler(), SkMLPClassifier((32,), max_iter=500, random_state=0))
    ref.fit(X, Y)
    assert np.mean(pred == Y) > 0.8
    np.testing.assert_allclose(P, ref.predict_proba(X), rtol=1e-6, atol=1e-8)


def test_multi_output_regression():
    X, Y = make_regression(300, 6, n_targets=3, noise=0.1, random_state=0)
    Y = Y / Y.std(axis=0)
    reg = make_pipeline(StandardScaler(),
                        MLPRegressor(hidden_layer_sizes=(32,), max_iter=1000, learning_rate_init=0.01,
                                     random_state=0)).fit(X, Y)
    assert reg.predict(X).shape == (300, 3)
    assert reg[-1].out_activation_ == "identity" and reg[-1].n_outputs_ == 3
    assert reg.score(X, Y) > 0.95


def test_float32_input_stays_float32():
    X, y = make_moons(200, noise=0.1, random_state=0)
    X32 = X.astype(np.float32)
    clf = MLPClassifier((8,), max_iter=50, random_state=0).fit(X32, y)
    assert clf.network_.dtype == np.float32
    assert clf.coefs_[0].dtype == np.float32
    assert clf.predict_proba(X32).dtype == np.float32
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X32, X32[:, 0])
    assert reg.predict(X32).dtype == np.float32
    reg64 = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, X[:, 0])
    assert reg64.network_.dtype == np.float64
    # float32 trains the same to float32 rounding
    np.testing.assert_allclose(reg.predict(X32), reg64.predict(X), rtol=1e-3, atol=1e-3)


# --------------------------------------------------------- ecosystem fit
def test_pipeline_grid_search_and_cross_val_score():
    X, y = make_moons(200, noise=0.15, random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    grid.fit(X, y)
    assert grid.best_score_ > 0.85
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes",
                                      "mlpclassifier__alpha"}
    scores = cross_val_score(MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0),
                             X, X[:, 0] * X[:, 1], cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_clone_and_pickle():
    X, y = make_moons(200, noise=0.1, random_state=0)
    clf = MLPClassifier((8, 4), activation="tanh", alpha=1e-3, max_iter=100, random_state=0)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "network_")
    clf.fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.loss_curve_ == clf.loss_curve_
    # the unpickled network's per-layer arrays are still views of its flat buffer
    back.coefs_[0][...] = 0
    assert not np.array_equal(back.predict_proba(X), clf.predict_proba(X))
    # and it trains on
    back.partial_fit(X, y)
    assert back.n_iter_ == 1


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_dropout_reaches_the_network_and_is_seeded(Est):
    X, y = make_moons(120, noise=0.1, random_state=0)
    kw = dict(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    a, b = (Est(dropout=0.3, **kw).fit(X, y) for _ in range(2))
    plain = Est(**kw).fit(X, y)
    assert a.network_.dropout == 0.3 and plain.network_.dropout == 0.0
    np.testing.assert_array_equal(a.network_.params, b.network_.params)
    assert not np.allclose(a.network_.params, plain.network_.params)
    assert a.get_params()["dropout"] == 0.3 and clone(a).dropout == 0.3
    with pytest.raises(ValueError, match="solver='lbfgs'.*dropout=0.3"):
        Est(dropout=0.3, solver="lbfgs").fit(X, y)


def test_sample_weight_zero_equals_dropping_rows():
    X, y = make_moons(100, noise=0.1, random_state=0)
    w = np.ones(100)
    w[::3] = 0
    kw = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0, shuffle=False)
    a = MLPClassifier(**kw).fit(X, y, sample_weight=w)
    b = MLPClassifier(**kw).fit(X[w > 0], y[w > 0])
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier(**kw).fit(X, y, sample_weight=-w)


# ----------------------------------------------- warm start and partial fit
def test_warm_start_continues():
    X, y = make_moons(200, noise=0.1, random_state=0)
    clf = MLPClassifier((8,), max_iter=10, warm_start=True, random_state=0).fit(X, y)
    first = [c.copy() for c in clf.coefs_]
    clf.fit(X, y)
    assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 20
    assert clf.loss_curve_[10] < clf.loss_curve_[0]
    assert not np.array_equal(first[0], clf.coefs_[0])
    cold = MLPClassifier((8,), max_iter=10, random_state=0).fit(X, y)
    cold.fit(X, y)
    assert len(cold.loss_curve_) == 10


def test_warm_start_with_a_new_activation_continues_with_it():
    # as scikit-learn: the fitted weights go on under the activation now set
    X, y = make_moons(200, noise=0.1, random_state=0)
    clf = MLPClassifier((8,), max_iter=5, warm_start=True, random_state=0).fit(X, y)
    clf.set_params(activation="tanh", max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.network_.activation == "tanh" and len(clf.loss_curve_) == 6
    W0, W1 = clf.coefs_
    b0, b1 = clf.intercepts_
    manual = 1 / (1 + np.exp(-(np.tanh(X @ W0 + b0) @ W1 + b1)))
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], manual.ravel(), rtol=1e-12)


def test_invscaling_rate_that_underflows_keeps_training_going():
    X, y = make_moons(60, noise=0.1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((4,), solver="sgd", learning_rate="invscaling", power_t=300,
                            max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and np.isfinite(clf.loss_curve_).all()


def test_partial_fit_classifier():
    X, y = make_moons(200, noise=0.1, random_state=0)
    clf = MLPClassifier((16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(100):
        clf.partial_fit(X[:100], y[:100], classes=[0, 1])
        clf.partial_fit(X[100:], y[100:])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 200
    assert clf.score(X, y) > 0.85
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])


def test_partial_fit_regressor_matches_fit_with_one_epoch():
    X, y = make_regression(100, 3, random_state=0)
    a = MLPRegressor(hidden_layer_sizes=(5,), max_iter=1, random_state=0, shuffle=False).fit(X, y)
    b = MLPRegressor(hidden_layer_sizes=(5,), random_state=0, shuffle=False).partial_fit(X, y)
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0])


# ----------------------------------------------------------- parameters
@pytest.mark.parametrize("param, value", [
    ("hidden_layer_sizes", (4, 0)), ("activation", "softmax"), ("solver", "rmsprop"),
    ("alpha", -1.0), ("batch_size", 0), ("learning_rate", "cosine"),
    ("learning_rate_init", 0.0), ("max_iter", 0), ("momentum", 1.5),
    ("validation_fraction", 1.0), ("beta_1", 1.0), ("epsilon", 0.0),
    ("n_iter_no_change", 0), ("shuffle", "yes"), ("max_fun", 0), ("dropout", 1.0),
    ("dropout", -0.5), ("dropout", "0.1"),
])
def test_bad_parameters_raise_value_error_naming_them(param, value):
    X, y = make_moons(50, random_state=0)
    with pytest.raises(ValueError, match=param):
        MLPClassifier(**{param: value}).fit(X, y)


def test_max_iter_warns_convergence():
    X, y = make_moons(100, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier((4,), max_iter=2).fit(X, y)


def test_divergence_is_a_value_error():
    X, y = make_regression(100, 3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"^Solver produced non-finite parameter weights\. "
                                             r"The input data may contain large values and need "
                                             r"to be preprocessed\. \(fastmlp: .*iteration"):
            MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=10.0, momentum=0.0,
                         max_iter=50).fit(X * 1e3, y * 1e3)
        with pytest.raises(ValueError, match=r"^Solver produced non-finite parameter weights\."):
            MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs").fit(X * 1e300, y)


def test_divergence_with_early_stopping_restores_the_best_weights():
    """scikit-learn issue 29504: no exception, a NaN validation score, the best weights."""
    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(100,), activation="identity", solver="sgd",
              learning_rate_init=1.0, max_iter=20, early_stopping=True, random_state=0)
    with pytest.warns(ConvergenceWarning, match="diverged at iteration"):
        reg = MLPRegressor(**kw).fit(X, y)
    assert np.isnan(reg.validation_scores_[-1]) and isinstance(reg.validation_scores_[-1], float)
    assert len(reg.validation_scores_) == reg.n_iter_ == len(reg.loss_curve_)
    assert reg.best_validation_score_ == max(reg.validation_scores_[:-1])
    assert np.isfinite(reg.predict(X)).all()
    # the restored weights are those of the best validation score
    ref = MLPRegressor(**{**kw, "max_iter": int(np.argmax(reg.validation_scores_[:-1])) + 1,
                          "n_iter_no_change": 1000}).fit(X, y)
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), rtol=1e-12)


def test_early_stopping_keeps_best_weights():
    X, y = make_classification(400, 10, flip_y=0.3, random_state=0)
    clf = MLPClassifier((64,), early_stopping=True, n_iter_no_change=5, learning_rate_init=0.05,
                        max_iter=200, random_state=0).fit(X, y)
    assert clf.n_iter_ < 200 and clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


@pytest.mark.parametrize("kwargs", [dict(solver="sgd", max_iter=5),
                                    dict(early_stopping=True, max_iter=15, n_iter_no_change=2)])
def test_verbose_prints_sklearns_lines(capsys, kwargs):
    X, y = make_moons(100, noise=0.2, random_state=0)
    kw = dict(hidden_layer_sizes=(4,), verbose=True, random_state=0, **kwargs)
    MLPClassifier(**kw).fit(X, y)
    ours = capsys.readouterr().out
    SkMLPClassifier(**kw).fit(X, y)
    assert ours == capsys.readouterr().out
    assert "Iteration 1, loss = " in ours


def test_verbose_lbfgs_prints_a_line_per_iteration(capsys):
    X, y = make_moons(100, noise=0.2, random_state=0)
    clf = MLPClassifier((4,), solver="lbfgs", max_iter=7, verbose=True, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {i + 1}, loss = {v:.8f}" for i, v in enumerate(clf.loss_curve_)]
    assert len(lines) == clf.n_iter_ == 7


def test_early_stopping_split_is_stratified_as_sklearns():
    # the installed scikit-learn's own message (1.9 names the class as it
    # stratifies, 'True'; older releases word it otherwise)
    X, y = [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1]
    with pytest.raises(ValueError) as theirs:
        SkMLPClassifier(early_stopping=True).fit(X, y)
    with pytest.raises(ValueError) as ours:
        MLPClassifier(early_stopping=True).fit(X, y)
    assert str(ours.value).startswith(str(theirs.value))


# ---------------------------------------------------------------- lbfgs
@pytest.mark.parametrize("make, Ours, Ref, kw", [
    (lambda: make_moons(200, noise=0.2, random_state=0), MLPClassifier, SkMLPClassifier,
     dict(hidden_layer_sizes=(16,), activation="tanh")),
    (lambda: load_iris(return_X_y=True), MLPClassifier, SkMLPClassifier,
     dict(hidden_layer_sizes=(8,), alpha=1e-3)),
    (lambda: make_regression(200, 10, n_targets=3, random_state=11), MLPRegressor, SkMLPRegressor,
     dict(hidden_layer_sizes=(16,))),
])
def test_lbfgs_follows_sklearn(make, Ours, Ref, kw):
    """Same function and gradient, same scipy settings: the same iterates, to rounding
    (which L-BFGS amplifies over longer runs)."""
    X, y = make()
    if Ours is MLPRegressor:
        y = y / y.std(axis=0)
    for max_iter in (1, 10):
        ours = Ours(solver="lbfgs", max_iter=max_iter, random_state=0, **kw).fit(X, y)
        ref = Ref(solver="lbfgs", max_iter=max_iter, random_state=0, **kw).fit(X, y)
        assert ours.n_iter_ == ref.n_iter_
        assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-9)
        for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("Ours, Ref, make", [
    (MLPClassifier, SkMLPClassifier, lambda: make_classification(300, 8, random_state=0)),
    (MLPRegressor, SkMLPRegressor, lambda: make_regression(300, 8, noise=5.0, random_state=0)),
])
def test_lbfgs_reaches_sklearns_loss(Ours, Ref, make):
    X, y = make()
    X = StandardScaler().fit_transform(X)
    if Ours is MLPRegressor:
        y = y / y.std()
    kw = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=500, alpha=1e-2)
    ours = [Ours(random_state=seed, **kw).fit(X, y).loss_ for seed in range(3)]
    ref = [Ref(random_state=seed, **kw).fit(X, y).loss_ for seed in range(3)]
    assert np.median(ours) <= np.median(ref) * 1.05


def test_lbfgs_objective_is_sklearns():
    """scikit-learn's private _loss_grad_lbfgs: same value and gradient at a point."""
    X, y = load_iris(return_X_y=True)
    ours = MLPClassifier((5, 4), solver="lbfgs", alpha=0.1, max_iter=3, random_state=0).fit(X, y)
    ref = SkMLPClassifier((5, 4), solver="lbfgs", alpha=0.1, max_iter=3, random_state=0).fit(X, y)
    theta = np.random.default_rng(0).normal(size=ours.network_.n_params)
    Y = ref._label_binarizer.transform(y).astype(float)
    units = [4, 5, 4, 3]
    buffers = ([X] + [None] * 3, [None] * 3, [np.empty((a, b)) for a, b in zip(units, units[1:])],
               [np.empty(b) for b in units[1:]])
    v_ref, g_ref = ref._loss_grad_lbfgs(theta, X, Y, None, *buffers)
    v_ours, g_ours = ours._loss_grad_lbfgs(theta, X, Y, None)
    assert v_ours == pytest.approx(v_ref, rel=1e-12)
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_lbfgs_limits_warn_as_sklearn():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after 5 iteration\(s\) "
                                                r"\(status=1\):\nSTOP: TOTAL NO\. OF ITERATIONS "
                                                r"REACHED LIMIT\n\nIncrease the number"):
        clf = MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5 and clf.loss_ == clf.loss_curve_[-1]
    with pytest.warns(ConvergenceWarning, match="status=1"):
        clf = MLPClassifier((8,), solver="lbfgs", max_fun=7, random_state=0).fit(X, y)
    assert clf.n_iter_ <= 7
    assert not hasattr(clf, "best_loss_") and not hasattr(clf, "validation_scores_")


def test_lbfgs_hides_partial_fit_and_warm_starts():
    for Est in (MLPClassifier, MLPRegressor):
        assert not hasattr(Est(solver="lbfgs"), "partial_fit")
        assert hasattr(Est(solver="sgd"), "partial_fit") and hasattr(Est(), "partial_fit")
    with pytest.raises(AttributeError, match="no attribute 'partial_fit'") as info:
        MLPRegressor(solver="lbfgs").partial_fit
    assert "lbfgs is not stochastic" in str(info.value.__cause__)
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier((4,), solver="lbfgs", max_iter=10, warm_start=True, random_state=0)
    clf.fit(X, y)
    first = clf.loss_
    clf.fit(X, y)
    assert clf.loss_ < first and len(clf.loss_curve_) == 20
    clf.set_params(solver="sgd", max_iter=2).fit(X, y)      # and on with a stochastic solver
    assert clf.n_iter_ == 2 and clf.best_loss_ < np.inf


def test_lbfgs_float32_stays_float32():
    X, y = make_moons(200, noise=0.1, random_state=0)
    clf = MLPClassifier((16,), solver="lbfgs", random_state=0).fit(X.astype(np.float32), y)
    assert clf.network_.dtype == np.float32 and clf.coefs_[0].dtype == np.float32
    assert clf.score(X.astype(np.float32), y) > 0.95


# ----------------------------------------------------- optional dependency
def test_import_fastmlp_does_not_import_sklearn():
    code = ("import sys, fastmlp; net = fastmlp.Network([2, 1]); "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'; "
            "assert 'fastmlp.estimators' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not hasattr(fastmlp, "__getattr__"),
                    reason="lazy fastmlp.MLPClassifier export not wired in __init__ yet")
def test_lazy_top_level_names():
    assert fastmlp.MLPClassifier is MLPClassifier
    assert fastmlp.MLPRegressor is MLPRegressor
