"""Argument checking shared by the compiled and reference networks.

Everything that reaches the kernels passes through here first: settings are
mapped to integer codes and arrays are converted (never modified in place) to
C-contiguous arrays of the network's dtype.
"""
import math
import numbers
import os

import numpy as np

from . import _sparse

# The kernels' codes (_kernels.pxd: ACT_*, OUT_*, LOSS_*; 4 is softmax's).
HIDDEN_ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3,
                      "leaky_relu": 5, "gelu": 6, "softplus": 7}
OUTPUTS = {"identity": 0, "sigmoid": 1, "softmax": 2, "exp": 3}
LOSSES = {"squared_error": 0, "log_loss": 1, "poisson": 2}
# The activations' constants, as _vmath.h compiles them in: leaky_relu's slope
# below 0 (PyTorch's default negative_slope), gelu's tanh approximation
# x/2 (1 + tanh(GELU_C (x + GELU_K x^3))).
LEAKY_SLOPE = 0.01
GELU_C, GELU_K = math.sqrt(2 / math.pi), 0.044715
# Outputs of regressors (scored by R², no classes): the rest are classifiers'.
REGRESSION_OUTPUTS = ("identity", "exp")
INITS = ("plain", "xavier", "he")
DTYPES = {"float32": np.float32, "float64": np.float64}
OPTIMIZERS = {"sgd": 0, "adam": 1, "rmsprop": 2, "adamw": 3}     # the kernels' codes
FIT_OPTIMIZERS = ("sgd", "adam", "rmsprop", "adamw", "lbfgs")   # lbfgs: scipy, full batch
# the optimizers whose step a distributed fit's ranks take (fastmlp._mpi_update)
DISTRIBUTED_OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "invscaling", "plateau", "cosine")
DISTRIBUTED_SCHEDULES = ("constant", "invscaling", "plateau")
# The kernels' products take layer sizes as C ints.
MAX_LAYER_SIZE = 2**31 - 1
# Parameters the flat buffer can index (a signed 64-bit count of bytes).
MAX_PARAMS = 2**60
# Threads a network may ask for (BLAS libraries cap theirs far lower).
MAX_THREADS = 1024


def is_real(value):
    """A real number, not a bool (plain int and float first: the ABC check
    costs about a microsecond, and fit makes a dozen of these checks)."""
    t = type(value)
    if t is float or t is int:
        return True
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)


def is_integer(value):
    """An integer, not a bool (plain int first, as in is_real)."""
    if type(value) is int:
        return True
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Integral)


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
        if not is_integer(s) or s < 1:
            raise ValueError(
                f"layer_sizes[{i}] must be a positive integer; got {s!r} "
                f"in layer_sizes={list(layer_sizes)!r}"
            )
        if s > MAX_LAYER_SIZE:
            raise ValueError(
                f"layer_sizes[{i}] must be at most {MAX_LAYER_SIZE} (the kernels' products "
                f"take C ints); got {s!r} in layer_sizes={list(layer_sizes)!r}"
            )
        sizes.append(int(s))
    n_params = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))
    if n_params > MAX_PARAMS:
        raise ValueError(f"layer_sizes={sizes!r} need {n_params} parameters; at most "
                         f"{MAX_PARAMS} can be held")
    if len(sizes) < 2:
        raise ValueError(
            "layer_sizes needs at least an input and an output size, e.g. [2, 1]; "
            f"got {list(layer_sizes)!r}"
        )
    _choice("activation", activation, HIDDEN_ACTIVATIONS)
    _choice("output", output, OUTPUTS)
    _choice("loss", loss, LOSSES)
    _choice("init", init, INITS)
    dtype_name = _dtype_name(dtype)
    _choice("dtype", dtype_name, DTYPES)
    if loss == "log_loss" and output == "identity":
        raise ValueError(
            "loss='log_loss' needs output='sigmoid' or output='softmax'; "
            "got output='identity' (use loss='squared_error' for regression)"
        )
    if (loss == "poisson") != (output == "exp"):
        raise ValueError(
            "loss='poisson' and output='exp' go together (the exp output is the Poisson "
            f"regression's log link); got output={output!r} with loss={loss!r}"
        )
    if output == "softmax" and sizes[-1] < 2:
        raise ValueError(
            "output='softmax' needs at least 2 output units; got layer_sizes[-1]="
            f"{sizes[-1]} (use output='sigmoid' for a single binary output)"
        )
    l2 = check_nonnegative("l2", l2)
    return sizes, dtype_name, l2


def _dtype_name(dtype):
    """'float32' / 'float64' for any spelling numpy understands ('f4', np.float32, ...)."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    try:
        return np.dtype(dtype).name
    except (TypeError, ValueError):
        return dtype          # reported by _choice with the valid names


def check_choice(name, value, valid):
    """``value`` must be one of the strings in ``valid``; the message lists them."""
    return _choice(name, value, valid)


def check_seed(seed):
    """None, a non-negative integer, a SeedSequence or a Generator (what
    ``np.random.default_rng`` takes, minus the ambiguous cases)."""
    if seed is None or isinstance(seed, (np.random.SeedSequence, np.random.Generator,
                                         np.random.BitGenerator)):
        return seed
    if not is_integer(seed):
        raise TypeError(f"seed must be None or a non-negative integer; got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer; got {seed!r}")
    return int(seed)


def check_fraction(name, value, low=0.0, high=1.0, low_open=False, high_open=True):
    """A real number in an interval, e.g. momentum in [0, 1) or beta in [0, 1)."""
    if not is_real(value):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    lo_ok = value > low if low_open else value >= low
    hi_ok = value < high if high_open else value <= high
    if not math.isfinite(value) or not lo_ok or not hi_ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return value


def check_optional_positive(name, value):
    """None (meaning off), or a finite number > 0 (e.g. a clipping norm)."""
    if value is None:
        return None
    if not is_real(value):
        raise TypeError(f"{name} must be None or a positive real number; got {value!r}")
    return check_positive(name, value)


def check_nonnegative(name, value):
    if not is_real(value):
        raise TypeError(f"{name} must be a non-negative real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return value


def check_positive(name, value):
    if not is_real(value):
        raise TypeError(f"{name} must be a positive real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def check_count(name, value, allow_none=False, high=None):
    """A positive integer (at most ``high`` when given), or None when allowed."""
    if value is None and allow_none:
        return None
    if not is_integer(value):
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise TypeError(f"{name} must be {expected}; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high}; got {value!r}")
    return int(value)


def _as_numeric_array(name, value):
    if isinstance(value, np.ma.MaskedArray) and np.ma.getmaskarray(value).any():
        raise ValueError(
            f"{name} must be a plain array of numbers; got a masked array with "
            f"{int(np.ma.getmaskarray(value).sum())} masked entries (fill or drop them first)")
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        raise TypeError(
            f"{name} must be a dense array of numbers; got a sparse {type(value).__name__} "
            "(convert it with .toarray())")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be an array-like of numbers with a regular shape; got "
            f"{type(value).__name__} that numpy cannot convert ({exc})") from None
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(
            f"{name} must hold numbers (int or float); got a boolean array "
            "(convert it with .astype(float))")
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers (int or float); got complex dtype {arr.dtype}")
    if kind == "O":
        raise TypeError(
            f"{name} must hold real numbers (int or float); got dtype object "
            "(mixed or non-numeric values; convert with np.asarray(..., dtype=float))")
    if kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (int or float); got dtype {arr.dtype}")
    return arr


def _where_not_finite(name, arr):
    """'NaN at X[3, 1] (2 non-finite values)' for the first bad entry."""
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    value = arr[first]
    what = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    index = ", ".join(map(str, first))
    return f"{what} at {name}[{index}] ({count} non-finite value{'s' if count != 1 else ''})"


def _check_finite(name, original, converted, dtype):
    if np.isfinite(converted).all():
        return
    if original.dtype.kind == "f" and not np.isfinite(original).all():
        raise ValueError(f"{name} must be finite; got {_where_not_finite(name, original)}")
    big = np.finfo(dtype).max
    raise ValueError(
        f"{name} must fit in the network's dtype {np.dtype(dtype).name} (|values| <= {big:.3g}); "
        f"got {_where_not_finite(name, converted)} after conversion")


def check_X(X, n_in, dtype, sparse=False):
    """Return X as a C-contiguous (n, n_in) array of ``dtype`` (a copy if needed);
    with ``sparse``, a scipy.sparse X as a checked :class:`_sparse.SparseRows`
    (else a sparse X is refused)."""
    if sparse and _sparse.is_sparse(X):
        return _sparse.check_sparse_X(X, n_in, dtype)
    arr = _as_numeric_array("X", X)
    if arr.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single sample)" if arr.ndim == 1 else ""
        raise ValueError(f"X must be 2-D, shape (n_samples, {n_in}); got {arr.ndim}-D shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"X must have at least one row; got shape {arr.shape}")
    if arr.shape[1] != n_in:
        raise ValueError(f"X must have {n_in} columns (the network's input size); got shape {arr.shape}")
    with np.errstate(over="ignore"):                 # overflow is reported below
        out = np.ascontiguousarray(arr, dtype=dtype)
    _check_finite("X", arr, out, dtype)
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
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(
                f"a 1-D Y for {n_out} outputs must hold integer class labels in [0, {n_out}); "
                f"got {_where_not_finite('Y', arr)}"
            )
        if not np.all(arr == np.round(arr)):
            first = int(np.argmax(arr != np.round(arr)))
            raise ValueError(
                f"a 1-D Y for {n_out} outputs must hold integer class labels in [0, {n_out}); "
                f"got non-integer values such as Y[{first}] = {float(arr[first])!r}"
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
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    _check_finite("Y", arr, out, dtype)
    if loss == "log_loss" and (out.min() < 0 or out.max() > 1):
        raise ValueError(
            "Y must hold targets in [0, 1] for loss='log_loss'; "
            f"got values from {out.min():g} to {out.max():g}"
        )
    if loss == "poisson" and out.min() < 0:
        raise ValueError(
            "Y must hold targets >= 0 for loss='poisson' (counts or rates); "
            f"got values down to {out.min():g}"
        )
    return out


# ------------------------------------------------------------ fit settings
def check_optimizer(optimizer, momentum, nesterov, beta1, beta2, epsilon, rho=0.9,
                    weight_decay=0.01):
    """The optimizer's settings, normalised: (name, momentum, nesterov, beta1,
    beta2, epsilon, rho, weight_decay)."""
    check_choice("optimizer", optimizer, FIT_OPTIMIZERS)
    momentum = check_fraction("momentum", momentum)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be True or False; got {nesterov!r}")
    beta1 = check_fraction("beta1", beta1)
    beta2 = check_fraction("beta2", beta2)
    epsilon = check_positive("epsilon", epsilon)
    rho = check_fraction("rho", rho)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    if optimizer in ("rmsprop", "adamw") and (momentum or nesterov):
        raise ValueError(f"momentum and nesterov apply to optimizer='sgd'; got "
                         f"momentum={momentum!r}, nesterov={bool(nesterov)!r} with "
                         f"optimizer={optimizer!r}")
    return (optimizer, momentum, bool(nesterov), beta1, beta2, epsilon, rho, weight_decay)


def check_sample_weight(sample_weight, n, dtype):
    """None, or a C-contiguous 1-D array of n finite weights >= 0 of ``dtype``
    whose sum is a finite number of the dtype and whose positive weights are
    normal numbers (at least the dtype's ``tiny``): so neither the total nor
    any batch's total with a positive weight overflows or is subnormal (the
    kernels divide by them)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"sample_weight must hold real numbers; got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row of X; got shape {w.shape}")
    with np.errstate(over="ignore"):                 # reported below
        w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and >= 0 (and fit in the network's dtype); "
                         "got negative or non-finite values")
    total = float(np.sum(w, dtype=np.float64))
    if total <= 0:
        raise ValueError("sample_weight must have a positive sum; got all zeros")
    info = np.finfo(dtype)
    smallest = float(w[w > 0].min())
    if smallest < info.tiny or total > info.max:
        raise ValueError(
            f"sample_weight's positive weights must be at least {info.tiny:.4g} and their sum at "
            f"most {info.max:.4g} (normal {np.dtype(dtype).name} numbers: the objective divides "
            f"by totals of weights); got weights from {smallest!r} summing to {total!r}. Only "
            "the weights' ratios and the penalties' scale (l2 / sum, l1 / sum) matter: rescale them")
    return w


def own(checked, given):
    """``checked`` (a checked array), copied when it may be ``given``'s memory:
    what the kernels read during a fit must not change behind the checks
    (a callback rewriting the caller's array)."""
    if checked is not given and checked.flags.owndata:
        return checked
    return checked.copy()


def check_lbfgs_settings(batch_size, momentum, nesterov, schedule, clip_norm):
    """Settings of the stochastic optimizers that full-batch L-BFGS cannot honour."""
    unused = [("batch_size", batch_size, None), ("momentum", momentum, 0.0),
              ("nesterov", nesterov, False), ("schedule", schedule, "constant"),
              ("clip_norm", clip_norm, None)]
    for name, value, default in unused:
        if value != default:
            raise ValueError(f"optimizer='lbfgs' trains on the full batch with no step size: "
                             f"{name} must be {default!r}; got {value!r}")


def check_callbacks(callbacks):
    """A list of callables ``cb(net, epoch, logs)`` (one callable or None accepted)."""
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}] must be callable as cb(net, epoch, logs); got {cb!r}")
    return callbacks


def check_checkpoint(checkpoint, every):
    """None, or (directory as a str, every: an int >= 1 or 'best') for fit's checkpoints."""
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, bytes)) and not hasattr(checkpoint, "__fspath__"):
        raise TypeError(f"checkpoint must be None or a directory path (str or os.PathLike); "
                        f"got {type(checkpoint).__name__}")
    directory = os.fsdecode(os.fspath(checkpoint))
    if not directory:
        raise ValueError("checkpoint must name a directory; got ''")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint must be a directory; got {directory!r}, which is a file")
    if every != "best" and not (is_integer(every) and every >= 1):
        raise ValueError(f"checkpoint_every must be a positive integer (every k epochs) or "
                         f"'best'; got {every!r}")
    return directory, (every if every == "best" else int(every))


def _class_of_rows(Y, output):
    """The class (0 .. n_classes-1) of each row of validated targets, for
    class_weight: 0/1 targets of one sigmoid output, one-hot softmax rows."""
    if output == "softmax":
        onehot = np.all((Y == 0) | (Y == 1), axis=1) & (Y.sum(axis=1) == 1)
        if not onehot.all():
            row = int(np.argmin(onehot))
            raise ValueError(f"class_weight needs class labels (or one-hot rows) in Y; got "
                             f"Y[{row}] = {Y[row].tolist()!r}")
        return Y.argmax(axis=1)
    if output == "sigmoid" and Y.shape[1] == 1:
        binary = (Y[:, 0] == 0) | (Y[:, 0] == 1)
        if not binary.all():
            row = int(np.argmin(binary))
            raise ValueError(f"class_weight needs 0/1 targets for a sigmoid output; got "
                             f"Y[{row}] = {float(Y[row, 0])!r}")
        return Y[:, 0].astype(np.intp)
    raise ValueError(f"class_weight needs a classifier: one sigmoid output or a softmax output; "
                     f"got output={output!r} with {Y.shape[1]} outputs")


def class_weights(class_weight, n_classes, classes):
    """Weight of each class 0 .. n_classes-1 from a dict {class: weight} (others 1)
    or 'balanced' (n_samples / (n_present_classes * count), scikit-learn's rule)."""
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.bincount(classes, minlength=n_classes)
        present = np.count_nonzero(counts)
        return np.where(counts > 0, len(classes) / (present * np.maximum(counts, 1)), 1.0)
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}; "
                        f"got {class_weight!r}")
    weights = np.ones(n_classes)
    for label, weight in class_weight.items():
        if not is_integer(label) or not 0 <= label < n_classes:
            raise ValueError(f"class_weight keys must be classes 0 .. {n_classes - 1} of this "
                             f"network; got {label!r}")
        if not is_real(weight) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"class_weight[{label!r}] must be a finite number >= 0; "
                             f"got {weight!r}")
        weights[int(label)] = float(weight)
    return weights


def fold_class_weight(class_weight, Y, output, sample_weight, dtype):
    """``sample_weight`` times each row's class weight (None: unchanged)."""
    if class_weight is None:
        return sample_weight
    classes = _class_of_rows(Y, output)
    n_classes = max(2, Y.shape[1])
    rows = class_weights(class_weight, n_classes, classes)[classes].astype(dtype)
    if sample_weight is not None:
        rows *= sample_weight
    if rows.sum() <= 0:
        raise ValueError(f"class_weight={class_weight!r} leaves every row of Y with weight 0")
    return np.ascontiguousarray(rows)


def check_warmup(warmup_epochs, schedule):
    """``warmup_epochs``: a non-negative int, and 0 unless ``schedule`` is 'cosine'."""
    if not is_integer(warmup_epochs) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer; got {warmup_epochs!r}")
    if warmup_epochs and schedule != "cosine":
        raise ValueError(f"warmup_epochs applies to schedule='cosine' only; got "
                         f"warmup_epochs={warmup_epochs} with schedule={schedule!r}")
    return int(warmup_epochs)
