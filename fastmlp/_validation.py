"""Argument checking shared by the compiled and reference networks.

Everything that reaches the kernels passes through here first: settings are
mapped to integer codes and arrays are converted (never modified in place) to
C-contiguous arrays of the network's dtype.
"""
import numbers

import numpy as np

HIDDEN_ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3}
OUTPUTS = {"identity": 0, "sigmoid": 1, "softmax": 2}
LOSSES = {"squared_error": 0, "log_loss": 1}
INITS = ("plain", "xavier", "he")
DTYPES = {"float32": np.float32, "float64": np.float64}


def _choice(name, value, valid):
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(v) for v in valid)}; got {value!r}"
        )
    return value


def check_settings(layer_sizes, activation, output, loss, l2, init, dtype):
    """Validate constructor settings; return the normalised values."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(
            "layer_sizes must be a sequence of positive integers such as [2, 3, 1]; "
            f"got {layer_sizes!r}"
        )
    sizes = []
    for i, s in enumerate(layer_sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(
                f"layer_sizes[{i}] must be a positive integer; got {s!r} "
                f"in layer_sizes={list(layer_sizes)!r}"
            )
        sizes.append(int(s))
    if len(sizes) < 2:
        raise ValueError(
            "layer_sizes needs at least an input and an output size, e.g. [2, 1]; "
            f"got {list(layer_sizes)!r}"
        )
    _choice("activation", activation, HIDDEN_ACTIVATIONS)
    _choice("output", output, OUTPUTS)
    _choice("loss", loss, LOSSES)
    _choice("init", init, INITS)
    dtype_name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    _choice("dtype", dtype_name, DTYPES)
    if loss == "log_loss" and output == "identity":
        raise ValueError(
            "loss='log_loss' needs output='sigmoid' or output='softmax'; "
            "got output='identity' (use loss='squared_error' for regression)"
        )
    if output == "softmax" and sizes[-1] < 2:
        raise ValueError(
            "output='softmax' needs at least 2 output units; got layer_sizes[-1]="
            f"{sizes[-1]} (use output='sigmoid' for a single binary output)"
        )
    l2 = check_nonnegative("l2", l2)
    return sizes, dtype_name, l2


def check_nonnegative(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a non-negative real number; got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return value


def check_positive(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number; got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def check_count(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise TypeError(f"{name} must be {expected}; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value!r}")
    return int(value)


def _as_numeric_array(name, value):
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must hold numbers; got a boolean array (convert it with .astype(float))")
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers; got complex dtype {arr.dtype}")
    if kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    return arr


def check_X(X, n_in, dtype):
    """Return X as a C-contiguous (n, n_in) array of ``dtype`` (a copy if needed)."""
    arr = _as_numeric_array("X", X)
    if arr.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single sample)" if arr.ndim == 1 else ""
        raise ValueError(f"X must be 2-D, shape (n_samples, {n_in}); got {arr.ndim}-D shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"X must have at least one row; got shape {arr.shape}")
    if arr.shape[1] != n_in:
        raise ValueError(f"X must have {n_in} columns (the network's input size); got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError(
            f"X must be finite; it contains NaN or inf (or values too large for {np.dtype(dtype).name})"
        )
    return out


def check_Y(Y, n, n_out, output, loss, dtype):
    """Return targets as a C-contiguous (n, n_out) array of ``dtype``.

    A 1-D Y is a column when n_out == 1, and integer class labels in
    [0, n_out) (one-hot encoded here) when n_out > 1.
    """
    arr = _as_numeric_array("Y", Y)
    if arr.ndim == 1 and n_out == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim == 1:
        if arr.shape[0] != n:
            raise ValueError(f"Y must have {n} rows, one per row of X; got shape {arr.shape}")
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(
                f"a 1-D Y for {n_out} outputs must hold integer class labels in [0, {n_out}); "
                "got non-integer values"
            )
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_out:
            raise ValueError(
                f"class labels in Y must lie in [0, {n_out}) for {n_out} outputs; "
                f"got labels from {lo:g} to {hi:g}"
            )
        onehot = np.zeros((n, n_out), dtype=dtype)
        onehot[np.arange(n), arr.astype(np.intp)] = 1
        return onehot
    if arr.ndim != 2:
        raise ValueError(f"Y must be 1-D or 2-D, shape (n_samples, {n_out}); got {arr.ndim}-D shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"Y must have {n} rows, one per row of X; got shape {arr.shape}")
    if arr.shape[1] != n_out:
        raise ValueError(f"Y must have {n_out} columns (the network's output size); got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise ValueError("Y must be finite; it contains NaN or inf")
    if loss == "log_loss" and (out.min() < 0 or out.max() > 1):
        raise ValueError(
            "loss='log_loss' needs targets in [0, 1]; "
            f"got values from {out.min():g} to {out.max():g}"
        )
    return out
