"""Prediction over Dask collections (``pip install "fastmlp[dask]"``).

:func:`predict` runs a :class:`fastmlp.Network` or a fitted fastmlp
estimator over the partitions of a ``dask.array`` (``map_blocks``) or a
``dask.dataframe`` (``map_partitions``), lazily.  The model enters the task
graph once, as one ``dask.delayed`` object that every block's task depends
on, so a distributed scheduler ships it to each worker once rather than with
every task.  Results equal the in-memory ``predict`` row for row.

The estimators also work inside dask-ml's wrappers unchanged:
``dask_ml.wrappers.ParallelPostFit`` (fit in memory, predict over blocks),
``dask_ml.wrappers.Incremental`` (``partial_fit`` block after block) and
scikit-learn's ``GridSearchCV`` under ``joblib.parallel_backend("dask")``.

Example::

    from dask.distributed import Client, LocalCluster
    import dask.array as da, fastmlp.dask

    client = Client(LocalCluster(n_workers=2))
    X = da.from_array(big, chunks=(100_000, -1))
    labels = fastmlp.dask.predict(clf, X).compute()
"""
import numpy as np

from ._sparse import is_sparse

__all__ = ["predict"]

_METHODS = ("predict", "predict_proba", "predict_log_proba")


def _dask():
    try:
        import dask
    except ImportError as exc:          # pragma: no cover - the extra is missing
        raise ImportError('fastmlp.dask needs dask: pip install "fastmlp[dask]"') from exc
    return dask


def predict(model, data, method="predict"):
    """Lazily apply ``model.<method>`` to every partition of ``data``.

    Parameters
    ----------
    model : fastmlp.Network or fitted MLPClassifier / MLPRegressor
    data : dask.array.Array of shape (n_samples, n_features), or dask DataFrame
        Rows may be chunked at will; columns are joined into one chunk. A
        DataFrame's columns are the inputs, in order.
    method : {'predict', 'predict_proba', 'predict_log_proba'}
        The model's method to call (Network: 'predict' only).

    Returns
    -------
    dask.array.Array, or dask Series / DataFrame (for a DataFrame input)
        One row per input row, in the same partitions (and index).

    Raises
    ------
    ValueError
        For an unknown method, or data that is not 2-D.
    TypeError
        For data that is neither a dask Array nor a dask DataFrame.
    """
    if is_sparse(data) or is_sparse(getattr(data, "_meta", None)):
        raise ValueError("fastmlp.dask.predict takes dense dask arrays or DataFrames; got "
                         f"sparse data ({type(data).__name__}): call the model's "
                         f"{method} on a scipy.sparse matrix directly (it predicts in "
                         "bounded blocks of rows)")
    dask = _dask()
    if method not in _METHODS or not hasattr(model, method):
        raise ValueError(f"method must be one of {', '.join(m for m in _METHODS if hasattr(model, m))} "
                         f"for a {type(model).__name__}; got {method!r}")
    n_features = _n_features(model)
    sample = getattr(model, method)(np.zeros((1, n_features)))
    shipped = dask.delayed(model, pure=True, traverse=False)
    import dask.array as da
    if isinstance(data, da.Array):
        return _over_array(data, shipped, method, sample, n_features)
    try:
        import dask.dataframe as dd
    except ImportError:                 # pragma: no cover - dask without pandas
        dd = None
    if dd is not None and isinstance(data, dd.DataFrame):
        return _over_frame(data, shipped, method, sample, n_features)
    raise TypeError("data must be a dask.array.Array or a dask.dataframe.DataFrame; "
                    f"got {type(data).__module__}.{type(data).__name__}")


def _n_features(model):
    sizes = getattr(model, "layer_sizes", None)
    if sizes is not None:
        return sizes[0]
    if not hasattr(model, "n_features_in_"):
        raise ValueError(f"this {type(model).__name__} is not fitted yet: call fit first")
    return model.n_features_in_


def _apply(block, model, method):
    return getattr(model, method)(block)


def _over_array(X, shipped, method, sample, n_features):
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"data must have shape (n_samples, {n_features}); got {X.shape}")
    X = X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X
    if sample.ndim == 1:
        return X.map_blocks(_apply, shipped, method, drop_axis=1, dtype=sample.dtype,
                            meta=sample[:0])
    return X.map_blocks(_apply, shipped, method, chunks=(X.chunks[0], (sample.shape[1],)),
                        dtype=sample.dtype, meta=sample[:0])


def _apply_frame(frame, model, method, columns):
    import pandas as pd
    out = getattr(model, method)(frame.to_numpy())
    if out.ndim == 1:
        return pd.Series(out, index=frame.index, name=method)
    return pd.DataFrame(out, index=frame.index, columns=columns)


def _over_frame(df, shipped, method, sample, n_features):
    import pandas as pd
    if len(df.columns) != n_features:
        raise ValueError(f"data must have {n_features} columns; got {len(df.columns)}")
    if sample.ndim == 1:
        meta = pd.Series(sample[:0], name=method)
        columns = None
    else:
        columns = [f"{method}_{i}" for i in range(sample.shape[1])]
        meta = pd.DataFrame(sample[:0], columns=columns)
    return df.map_partitions(_apply_frame, shipped, method, columns, meta=meta)
