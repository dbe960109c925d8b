"""Central-difference gradient check, public so users can check their own setups."""
from dataclasses import dataclass

import numpy as np


@dataclass
class GradientCheck:
    """Outcome of :func:`check_gradients`.

    Attributes
    ----------
    max_rel_error : float
        Largest relative error over all parameters.
    layer : int
        Weight layer of that parameter.
    kind : str
        ``'W'`` or ``'b'``.
    index : tuple of int
        Position of that parameter within ``weights[layer]`` or ``biases[layer]``.
    analytic, numeric : ndarray
        Flat backprop and central-difference gradients (parameter layout).
    """

    max_rel_error: float
    layer: int
    kind: str
    index: tuple
    analytic: np.ndarray
    numeric: np.ndarray

    def __float__(self):
        return float(self.max_rel_error)


def check_gradients(net, X, Y, eps=1e-6):
    """Compare ``net.gradients`` with central differences of ``net.loss``.

    Every parameter ``p`` is moved to ``p ± eps`` in turn and
    ``(loss(p + eps) - loss(p - eps)) / (2 eps)`` is compared with backprop.
    The relative error of a parameter is ``|a - n| / max(|a|, |n|, floor)``
    where ``floor = 1e-3 * max|n|``: components far below the largest one are
    measured on its scale, since their differences are dominated by rounding.

    Parameters
    ----------
    net : fastmlp.Network or fastmlp.reference.Network
        Left unchanged (every parameter is restored exactly).
    X, Y : array-like
        Data as accepted by ``net.loss``.
    eps : float
        Step; 1e-6 suits float64. float32 networks need a larger step (≈1e-2)
        and give errors near 1e-3 at best.

    Returns
    -------
    GradientCheck
        ``float(result)`` is the largest relative error.
    """
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
    analytic = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in net.gradients(X, Y)])
    analytic = analytic.astype(np.float64)
    numeric = np.empty_like(analytic)
    params = net.params
    for i in range(params.size):
        saved = params[i]
        try:
            params[i] = saved + eps
            up = net.loss(X, Y)
            params[i] = saved - eps
            down = net.loss(X, Y)
        finally:
            params[i] = saved
        numeric[i] = (up - down) / (2 * eps)
    floor = 1e-3 * np.max(np.abs(numeric)) if numeric.size else 0.0
    denom = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    denom[denom == 0] = 1.0
    rel = np.abs(analytic - numeric) / denom
    worst = int(np.argmax(rel))
    layer, kind, index = _locate(net.layer_sizes, worst)
    return GradientCheck(float(rel[worst]), layer, kind, index, analytic, numeric)


def _locate(sizes, flat_index):
    off = 0
    for layer in range(len(sizes) - 1):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        if flat_index < off + n_in * n_out:
            return layer, "W", tuple(int(i) for i in divmod(flat_index - off, n_out))
        off += n_in * n_out
        if flat_index < off + n_out:
            return layer, "b", (int(flat_index - off),)
        off += n_out
    raise IndexError(flat_index)
