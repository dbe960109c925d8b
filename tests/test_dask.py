"""fastmlp on Dask: prediction over dask.array / dask.dataframe partitions, the estimators in
dask-ml's ParallelPostFit and Incremental, and GridSearchCV on the dask joblib backend; on a
LocalCluster of two worker processes (loopback only), results equal to the in-memory ones."""
import numpy as np
import pytest

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")
pytest.importorskip("dask_ml")

import fastmlp  # noqa: E402
import fastmlp.dask as fdask  # noqa: E402
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8)
    return X, y


@pytest.fixture(scope="module")
def classifier(data):
    X, y = data
    return MLPClassifier((16,), max_iter=30, random_state=0).fit(X, y)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_network_predict_over_array_blocks(client, data, dtype):
    X, _ = data
    net = fastmlp.Network([6, 12, 3], activation="tanh", output="softmax", loss="log_loss",
                          dtype=dtype, seed=0)
    got = fdask.predict(net, da.from_array(X, chunks=(130, 3)))       # columns joined
    assert got.shape == (600, 3) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.compute(), net.predict(X))


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_estimator_predict_over_array_and_dataframe(client, data, classifier, method):
    X, _ = data
    expected = getattr(classifier, method)(X)
    got = fdask.predict(classifier, da.from_array(X, chunks=(100, 6)), method=method)
    np.testing.assert_array_equal(got.compute(), expected)
    frame = dd.from_array(X, chunksize=150)
    out = fdask.predict(classifier, frame, method=method).compute()
    np.testing.assert_array_equal(np.asarray(out), expected)
    assert list(out.index) == list(range(600))


def test_the_model_is_one_node_every_block_depends_on(data, classifier):
    from dask.core import get_dependencies
    X, _ = data
    got = fdask.predict(classifier, da.from_array(X, chunks=(100, 6)))
    graph = dict(got.__dask_graph__())
    model_keys = [k for k in graph if str(k).startswith("MLPClassifier-")]
    assert len(model_keys) == 1
    blocks = [k for k in graph if isinstance(k, tuple) and k[0].startswith("_apply-")]
    assert len(blocks) == 6
    assert all(model_keys[0] in get_dependencies(graph, k) for k in blocks)


def test_worker_processes_get_the_model_over_loopback(data):
    X, _ = data
    net = fastmlp.Network([6, 12, 3], activation="relu", output="softmax", loss="log_loss",
                          dtype="float32", seed=1)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        got = c.compute(fdask.predict(net, da.from_array(X, chunks=(100, 6)))).result()
    np.testing.assert_array_equal(got, net.predict(X))


def test_bad_input_is_a_clear_error(data, classifier):
    X, _ = data
    with pytest.raises(ValueError, match=r"data must have shape \(n_samples, 6\); got \(600, 5\)"):
        fdask.predict(classifier, da.from_array(X[:, :5]))
    with pytest.raises(TypeError, match="dask.array.Array or a dask.dataframe.DataFrame; got numpy"):
        fdask.predict(classifier, X)
    with pytest.raises(ValueError, match="method must be one of predict for a Network"):
        fdask.predict(fastmlp.Network([6, 1]), da.from_array(X), method="predict_proba")


def test_parallel_post_fit(client, data):
    from dask_ml.wrappers import ParallelPostFit
    X, y = data
    wrapped = ParallelPostFit(MLPClassifier((16,), max_iter=30, random_state=0)).fit(X, y)
    plain = MLPClassifier((16,), max_iter=30, random_state=0).fit(X, y)
    dX = da.from_array(X, chunks=(150, 6))
    np.testing.assert_array_equal(wrapped.predict(dX).compute(), plain.predict(X))
    np.testing.assert_array_equal(wrapped.predict_proba(dX).compute(), plain.predict_proba(X))


def test_incremental_is_partial_fit_block_after_block(client, data):
    from dask_ml.wrappers import Incremental
    X, y = data
    X = X.astype(np.float32)
    inc = Incremental(MLPRegressor(hidden_layer_sizes=(8,), random_state=0, shuffle=False), shuffle_blocks=False)
    inc.fit(da.from_array(X, chunks=(200, 6)), da.from_array(y.astype(float), chunks=200))
    plain = MLPRegressor(hidden_layer_sizes=(8,), random_state=0, shuffle=False)
    for start in range(0, 600, 200):
        plain.partial_fit(X[start:start + 200], y[start:start + 200].astype(float))
    np.testing.assert_array_equal(inc.estimator_.predict(X), plain.predict(X))
    clf = Incremental(MLPClassifier((8,), random_state=0, shuffle=False), shuffle_blocks=False)
    clf.fit(da.from_array(X, chunks=(200, 6)), da.from_array(y, chunks=200), classes=[0, 1, 2])
    plain = MLPClassifier((8,), random_state=0, shuffle=False)
    for start in range(0, 600, 200):
        plain.partial_fit(X[start:start + 200], y[start:start + 200], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.estimator_.predict_proba(X), plain.predict_proba(X))


def test_grid_search_on_the_dask_backend_equals_in_memory(client, data):
    import joblib
    from sklearn.model_selection import GridSearchCV
    X, y = data
    grid = {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(8,), (16,)]}
    search = GridSearchCV(MLPClassifier(max_iter=20, random_state=0), grid, cv=2)
    with joblib.parallel_backend("dask"):
        on_dask = search.fit(X, y)
        scores = on_dask.cv_results_["mean_test_score"].copy()
        best = on_dask.best_params_
    local = GridSearchCV(MLPClassifier(max_iter=20, random_state=0), grid, cv=2).fit(X, y)
    np.testing.assert_array_equal(scores, local.cv_results_["mean_test_score"])
    assert best == local.best_params_
