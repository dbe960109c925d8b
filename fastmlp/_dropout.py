"""Inverted dropout's masks, in NumPy: the same bits as the kernels' (_dropout.pxi).

A hidden unit's mask is a pure function of the fit's key, the batch's
number ``t`` in the fit, the hidden layer ``l`` (from 0), the row ``i`` in
the batch and the unit ``j`` of a layer ``width`` units wide::

    k = mix(key ^ (t * DROP_T + l * DROP_L))
    h = mix(k + (i * width + j + 1) * DROP_GOLDEN)

(``mix``: splitmix64's finalizer; all arithmetic modulo 2**64).  The unit
is kept when ``h >> 11`` (53 uniform bits) is at least ``ceil(p * 2**53)``,
and kept values are multiplied by ``1 / (1 - p)``.
"""
import math

import numpy as np

DROP_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
DROP_T = np.uint64(0xD1B54A32D192ED03)
DROP_L = np.uint64(0x8CB92BA72F3D8DD7)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(z):
    """splitmix64's finalizer of uint64 values (arrays or scalars), wrapping."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def threshold(p):
    """The least 53-bit hash a kept unit has: ``ceil(p * 2**53)`` (exact)."""
    return math.ceil(p * 2.0 ** 53)


def keep_mask(key, t, layer, rows, width, p):
    """The ``(rows, width)`` boolean mask of the units hidden layer ``layer``
    keeps in batch ``t`` of a fit keyed by ``key`` with dropout ``p``."""
    with np.errstate(over="ignore"):
        k = mix64(np.uint64(key) ^ (np.uint64(t) * DROP_T + np.uint64(layer) * DROP_L))
        idx = np.arange(1, rows * width + 1, dtype=np.uint64).reshape(rows, width)
        h = mix64(k + idx * DROP_GOLDEN)
    return (h >> np.uint64(11)) >= np.uint64(threshold(p))


def factors(key, t, layer, rows, width, p, dtype):
    """The mask times ``1 / (1 - p)`` in ``dtype``: what the kept units'
    activations and slopes are multiplied by (0 for the dropped)."""
    dtype = np.dtype(dtype)
    return np.where(keep_mask(key, t, layer, rows, width, p),
                    dtype.type(1.0 / (1.0 - p)), dtype.type(0))
