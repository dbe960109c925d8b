"""The epoch shuffle in plain Python: splitmix64 + Fisher-Yates.

This mirrors ``shuffle_index`` in ``_kernels.pyx`` bit for bit, so that the
reference network visits minibatches in the same order as the compiled one.
"""
import numpy as np

_MASK = (1 << 64) - 1


def _splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


def shuffle(order, state):
    """Permute the index array ``order`` in place, advancing ``state[0]``.

    Parameters
    ----------
    order : ndarray of intp
        The current visiting order; permuted in place.
    state : ndarray of uint64, shape (1,)
        Generator state; updated in place.
    """
    s = int(state[0])
    for i in range(len(order) - 1, 0, -1):
        s, r = _splitmix64(s)
        j = r % (i + 1)
        order[i], order[j] = order[j], order[i]
    state[0] = np.uint64(s)
