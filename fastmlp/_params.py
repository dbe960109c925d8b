"""The flat parameter buffer both networks, the file format and the model
converters share: per layer ``W`` (``(n_in, n_out)``, row-major), then ``b``,
in one buffer whose data starts on a 64-byte boundary. (The compiled core's
view of the layer sizes is ``_layout.pxi``.)"""
import numpy as np

PARAMS_ALIGN = 64


def n_params(sizes):
    """Weights and biases of a network with these layer sizes."""
    return sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))


def split(flat, sizes):
    """Per-layer (W, b) views into a flat buffer of the parameter layout."""
    weights, biases, off = [], [], 0
    for i in range(len(sizes) - 1):
        n_in, n_out = sizes[i], sizes[i + 1]
        weights.append(flat[off:off + n_in * n_out].reshape(n_in, n_out))
        off += n_in * n_out
        biases.append(flat[off:off + n_out])
        off += n_out
    return weights, biases


def aligned_zeros(n, dtype, align=PARAMS_ALIGN):
    """Zeros in a 1-D array whose data starts on an ``align``-byte boundary.

    The kernels read the parameters as vectors of 32 bytes: from a cache line
    boundary, the rows of a layer whose width is a multiple of 16 do not
    straddle lines (measured, one-sample forward of 784-256-128-10 float32,
    medians of 15 interleaved rounds: 28.1 -> 25.5 us on one thread,
    21.1 -> 19.5 us on two).
    """
    dtype = np.dtype(dtype)
    spare = align // dtype.itemsize
    buffer = np.zeros(n + spare, dtype=dtype)
    start = (-buffer.ctypes.data % align) // dtype.itemsize
    return buffer[start:start + n]


def is_aligned(a, align=PARAMS_ALIGN):
    return a.ctypes.data % align == 0


def aligned_empty(n, dtype, align=PARAMS_ALIGN):
    """Like :func:`aligned_zeros`, uninitialised (for a buffer about to be filled)."""
    dtype = np.dtype(dtype)
    spare = align // dtype.itemsize
    buffer = np.empty(n + spare, dtype=dtype)
    start = (-buffer.ctypes.data % align) // dtype.itemsize
    return buffer[start:start + n]


def check_savable(a, n, dtype, what, hint=""):
    """Raise ValueError unless ``a`` is an ``(n,)`` array of ``dtype`` holding
    finite values only (what a model file can store and load back)."""
    dtype = np.dtype(dtype)
    if not isinstance(a, np.ndarray) or a.shape != (n,) or a.dtype != dtype:
        raise ValueError(f"{what} must be a ({n},) array of {dtype.name}; got "
                         f"{type(a).__name__} {getattr(a, 'dtype', '')} "
                         f"{getattr(a, 'shape', '')}{hint}")
    if not np.isfinite(a).all():
        raise ValueError(f"cannot save: {what} contains NaN or inf "
                         "(a file holding them could not be loaded)")
