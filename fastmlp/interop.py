"""Serve models trained elsewhere through fastmlp's compiled kernels.

:func:`from_sklearn` takes a fitted scikit-learn ``MLPClassifier`` or
``MLPRegressor`` (or a fitted :class:`fastmlp.estimators.MLPClassifier` /
``MLPRegressor``); :func:`from_torch` takes a PyTorch ``nn.Sequential`` of
``nn.Linear`` layers and supported activations. Both return a
:class:`fastmlp.Network` holding copies of the weights, whose ``predict`` gives
the source model's outputs to float rounding:

* scikit-learn classifiers: ``predict_proba`` (for a binary classifier the
  network has one sigmoid output, the probability of ``classes_[1]``);
  regressors: ``predict``, of the same shape: ``(n,)`` for a single-output
  regressor, whose network is made with ``flat_output=True`` (its
  ``predict`` returns the one column; the flag is saved and loaded with the
  network, and the ONNX export's output is 1-D too). The model's ``alpha``
  becomes the network's ``l2``: the same penalty ``alpha / (2 n) sum(W**2)``,
  so ``loss`` and further training optimise scikit-learn's objective.
* PyTorch: ``model(x)``.

Neither library is imported by ``import fastmlp``, nor by this module: scikit-learn
is never imported at all (the fitted model's attributes are read), and torch
only inside :func:`from_torch`. The reading is ``fastmlp._convert``'s; the class
methods ``Network.from_sklearn`` and ``Network.from_torch``, which these functions
call, build the network.
"""
from ._base import BaseNetwork
from .network import Network

__all__ = ["from_sklearn", "from_torch"]


def _network_cls(network_cls):
    if network_cls is None:
        return Network
    if not (isinstance(network_cls, type) and issubclass(network_cls, BaseNetwork)):
        raise TypeError("network_cls must be fastmlp.Network or fastmlp.reference.Network; "
                        f"got {network_cls!r}")
    return network_cls


def from_sklearn(model, dtype=None, network_cls=None):
    """A :class:`fastmlp.Network` with the weights of a fitted scikit-learn MLP.

    Parameters
    ----------
    model : fitted ``sklearn.neural_network.MLPClassifier`` or ``MLPRegressor``
        (or fastmlp's own estimators, fitted).
    dtype : {'float32', 'float64'} or None
        Precision of the network; None takes the model's (float32 when it was
        trained on float32 data, else float64).
    network_cls : class, optional
        The network class to build, :class:`fastmlp.Network` by default
        (``fastmlp.reference.Network`` gives the NumPy twin).

    Returns
    -------
    Network
        Hidden activation mapped ``logistic`` -> ``sigmoid``; output from the
        model's ``out_activation_``; loss ``log_loss`` for a classifier,
        ``poisson`` for a regressor with ``loss='poisson'`` (exp output) and
        ``squared_error`` for the others; ``l2`` the model's ``alpha``. Its
        ``predict`` equals the model's ``predict_proba`` (binary: the column
        of ``classes_[1]``) or ``predict``, shape included: a single-output
        regressor's network has ``flat_output=True`` and predicts ``(n,)``.

    Raises
    ------
    TypeError
        ``model`` is not a scikit-learn MLP (a Pipeline, another estimator...).
    ValueError
        ``model`` is not fitted, or uses something the kernels do not have
        (the ``poisson`` loss's ``exp`` output).
    """
    return _network_cls(network_cls).from_sklearn(model, dtype=dtype)


def from_torch(model, dtype=None, loss=None, network_cls=None):
    """A :class:`fastmlp.Network` with the weights of a PyTorch MLP.

    Parameters
    ----------
    model : ``torch.nn.Sequential`` (nested Sequentials are flattened) or a
        single ``nn.Linear``
        ``Linear`` layers, with the same hidden activation after every hidden
        ``Linear`` (``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``,
        ``nn.LeakyReLU()`` with its default slope 0.01,
        ``nn.GELU(approximate='tanh')``, ``nn.Softplus()`` with beta 1 (its
        linear branch above ``threshold`` differs from fastmlp's exact
        ``log(1 + e^z)`` by less than 1e-8), or none), and
        optionally ``nn.Sigmoid`` or ``nn.Softmax(dim=-1 or 1)`` after the last.
        ``nn.Identity``, ``nn.Flatten`` on 2-D input, and ``nn.Dropout`` (the
        identity in eval mode) are skipped; one ``nn.Dropout(p)`` rate after
        every hidden layer becomes the network's ``dropout`` (for further
        training), any other arrangement of nonzero rates gives
        ``dropout=0`` and a warning.
    dtype : {'float32', 'float64'} or None
        None takes the model's (float32 unless its weights are float64).
    loss : {'squared_error', 'log_loss'} or None
        Loss for further training; None picks ``log_loss`` for a sigmoid or
        softmax output and ``squared_error`` for a linear one.
    network_cls : class, optional
        :class:`fastmlp.Network` by default.

    Returns
    -------
    Network
        Its ``predict(x)`` equals ``model(x)`` to float tolerance.

    Raises
    ------
    TypeError
        A layer fastmlp does not have (convolutions, LogSoftmax, normalisation...),
        or ``model`` is not a torch module.
    ValueError
        Different activations in different hidden layers, an activation
        with settings fastmlp's does not share (GELU's exact erf form, another
        LeakyReLU slope, a Softplus beta other than 1), an activation not
        between Linear layers, layer sizes that do not chain, or Softmax over
        another dimension.
    """
    return _network_cls(network_cls).from_torch(model, dtype=dtype, loss=loss)
