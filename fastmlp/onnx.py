"""Export networks to ONNX, to serve them with ONNX Runtime or any ONNX runtime.

Needs ``onnx`` (``pip install "fastmlp[onnx]"``, which adds ``onnxruntime``);
``import fastmlp`` imports neither.

>>> import fastmlp                                            # doctest: +SKIP
>>> net = fastmlp.Network([2, 3, 1], seed=0)                  # doctest: +SKIP
>>> fastmlp.onnx.export(net, "net.onnx")                      # doctest: +SKIP
'net.onnx'

The graph (opset 17 or newer) maps an input ``X`` of shape ``(N, n_in)`` to
``Y``, what ``predict`` returns, in the network's dtype: per layer a ``Gemm``
then the activation (see :mod:`fastmlp._onnx`: ``Sigmoid``, ``Tanh``, ``Relu``,
``LeakyRelu``, ``Softplus``, gelu in elementary ops, ``Softmax``, ``Exp``) or
nothing (identity). For a scikit-learn estimator (:class:`fastmlp.MLPClassifier`,
``MLPRegressor``) it is
its ``network_``: a classifier's class probabilities (one column, that of
``classes_[1]``, for two classes), a regressor's values as ``(N, n_outputs)``.
"""
from . import _onnx
from ._base import BaseNetwork
from ._onnx import MIN_OPSET

__all__ = ["export", "MIN_OPSET"]


def export(model, path=None, *, opset=MIN_OPSET):
    """Write a network (or a fitted fastmlp estimator's network) as an ONNX model.

    Parameters
    ----------
    model : fastmlp.Network, fastmlp.reference.Network, or fitted MLPClassifier / MLPRegressor
    path : str or os.PathLike, optional
        Where to write the ``.onnx`` file, atomically (a temporary file,
        fsynced, then renamed over ``path``). Without it nothing is written.
    opset : int
        The ONNX opset, at least 17.

    Returns
    -------
    str or onnx.ModelProto
        The path written, or without ``path`` the model itself.

    Raises
    ------
    TypeError
        ``model`` is neither a fastmlp network nor a fitted fastmlp estimator.
    ValueError
        ``opset`` below 17, or parameters that are not finite.
    ImportError
        The ``onnx`` package is not installed.
    """
    net = _network_of(model)
    proto = _onnx.build(net, opset=opset)
    return proto if path is None else _onnx.write(proto, path)


def _network_of(model):
    if isinstance(model, BaseNetwork):
        return model
    net = getattr(model, "network_", None)
    if isinstance(net, BaseNetwork):
        return net
    if type(model).__module__.startswith("fastmlp.") and hasattr(model, "get_params"):
        raise TypeError(f"{type(model).__name__} is not fitted yet: call fit before exporting it")
    raise TypeError(f"model must be a fastmlp Network or a fitted fastmlp MLPClassifier / "
                    f"MLPRegressor; got {type(model).__name__}")
