"""Reading models of other libraries into fastmlp's terms, with no network class.

:func:`from_sklearn` and :func:`from_torch` return a :class:`ModelSpec`: layer
sizes, activations, loss, dtype and the flat parameters; ``BaseNetwork``'s
class methods of the same names build the network around it, and
:mod:`fastmlp.interop` is the public side. scikit-learn is never imported (the
fitted model's attributes are read), torch only inside :func:`from_torch`.
"""
import warnings
from collections import namedtuple

import numpy as np

from . import _params

_SK_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SK_OUTPUT = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax", "exp": "exp"}


ModelSpec = namedtuple("ModelSpec", ["layer_sizes", "activation", "output", "loss",
                                     "dtype", "params", "l2", "flat_output", "dropout"],
                       defaults=(0.0, False, 0.0))
ModelSpec.__doc__ = """A model read from another library: the settings of a fastmlp network
(``layer_sizes``, ``activation``, ``output``, ``loss``, ``dtype`` name), its
flat parameters (an aligned array of that dtype, in fastmlp's layout), the L2
penalty ``l2`` (scikit-learn's ``alpha``, the same ``alpha / (2 n) sum(W**2)``)
``flat_output`` (predict gives shape (n,), as a single-output
scikit-learn regressor) and ``dropout`` (a PyTorch model's rate after every
hidden layer, for further training)."""


def _spec(Ws, bs, activation, output, loss, dtype, names=("coefs_", "intercepts_")):
    """Check that the layers chain, then copy them into one flat buffer.

    ``names`` say where the weights and biases came from, for the errors.
    Shapes must match exactly: nothing is broadcast.
    """
    wname, bname = names
    if not Ws or len(Ws) != len(bs):
        raise ValueError(f"{wname} and {bname} must hold one entry per layer (at least one); "
                         f"got {len(Ws)} and {len(bs)}")
    for i, (W, b) in enumerate(zip(Ws, bs)):
        for name, a in ((f"{wname}[{i}]", W), (f"{bname}[{i}]", b)):
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")
        if W.ndim != 2:
            raise ValueError(f"{wname}[{i}] must be a 2-D (n_in, n_out) array; got shape {W.shape}")
        if i and W.shape[0] != Ws[i - 1].shape[1]:
            raise ValueError(f"{wname}[{i}] has shape {W.shape}, but {wname}[{i - 1}] gives "
                             f"{Ws[i - 1].shape[1]} outputs: expected ({Ws[i - 1].shape[1]}, n_out)")
        if b.shape != (W.shape[1],):
            raise ValueError(f"{bname}[{i}] has shape {b.shape}; {wname}[{i}] of shape "
                             f"{W.shape} needs ({W.shape[1]},)")
    sizes = [Ws[0].shape[0]] + [W.shape[1] for W in Ws]
    params = _params.aligned_zeros(_params.n_params(sizes), dtype)
    weights, biases = _params.split(params, sizes)
    for i, (W, b) in enumerate(zip(Ws, bs)):
        weights[i][...] = W
        biases[i][...] = b
    if not np.isfinite(params).all():
        raise ValueError("the source model has non-finite weights (NaN or inf); "
                         "it cannot be served")
    return ModelSpec(sizes, activation, output, loss, dtype, params)


def _pick_dtype(dtype, arrays):
    if dtype is not None:
        name = np.dtype(dtype).name
        if name not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
        return name
    return "float32" if all(np.asarray(a).dtype == np.float32 for a in arrays) else "float64"


def from_sklearn(model, dtype=None):
    """The :class:`ModelSpec` of a fitted scikit-learn MLP (or of fastmlp's own
    fitted estimators); see :func:`fastmlp.interop.from_sklearn`."""
    name = type(model).__name__
    net = getattr(model, "network_", None)
    if net is not None and hasattr(net, "layer_sizes"):       # fastmlp's own estimators
        W = [np.array(w) for w in net.weights]
        b = [np.array(x) for x in net.biases]
        spec = _spec(W, b, net.activation, net.output, net.loss_name,
                     _pick_dtype(dtype, W + b) if dtype is not None else net.dtype.name,
                     names=("network_.weights", "network_.biases"))
        return spec._replace(l2=float(net.l2), flat_output=_flat(name, spec))
    if name not in ("MLPClassifier", "MLPRegressor") or not hasattr(model, "get_params"):
        raise TypeError(
            "from_sklearn needs a fitted sklearn.neural_network.MLPClassifier or "
            f"MLPRegressor; got {type(model).__module__}.{name} (for a Pipeline, pass "
            "its last step and apply the preprocessing yourself)")
    coefs, intercepts = getattr(model, "coefs_", None), getattr(model, "intercepts_", None)
    if coefs is None or intercepts is None:
        raise ValueError(f"from_sklearn needs a fitted {name}; call fit first "
                         "(it has no coefs_)")
    activation = getattr(model, "activation", None)
    if activation not in _SK_HIDDEN:
        raise ValueError(f"unsupported hidden activation {activation!r}; fastmlp has "
                         f"{', '.join(sorted(_SK_HIDDEN))}")
    out = getattr(model, "out_activation_", None)
    if out not in _SK_OUTPUT:
        raise ValueError(
            f"unsupported output activation {out!r} (from loss={getattr(model, 'loss', None)!r}); "
            f"fastmlp's outputs are {', '.join(sorted(_SK_OUTPUT))}")
    loss = ("log_loss" if name == "MLPClassifier" else
            "poisson" if out == "exp" else "squared_error")
    Ws = [np.asarray(W) for W in coefs]
    bs = [np.asarray(b) for b in intercepts]
    spec = _spec(Ws, bs, _SK_HIDDEN[activation], _SK_OUTPUT[out], loss,
                 _pick_dtype(dtype, Ws + bs))
    alpha = getattr(model, "alpha", 0.0)
    if not (isinstance(alpha, (int, float, np.number)) and np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"the model's alpha must be a finite number >= 0; got {alpha!r}")
    return spec._replace(l2=float(alpha), flat_output=_flat(name, spec))


def _flat(name, spec):
    """A regressor with one output predicts shape (n,) in scikit-learn (and in
    fastmlp's estimators): so does the network made from it."""
    return name == "MLPRegressor" and spec.layer_sizes[-1] == 1


def _flatten_torch(module, nn):
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _flatten_torch(child, nn)
    else:
        yield module


def _check_torch_activation(pos, layer, nn):
    """Refuse a PyTorch activation whose settings fastmlp's namesake does not share
    (its outputs would differ from the model's, not by rounding)."""
    if isinstance(layer, nn.LeakyReLU) and layer.negative_slope != 0.01:
        raise ValueError(f"layer {pos} ({layer}): fastmlp's leaky_relu has slope 0.01 below 0; "
                         f"got negative_slope={layer.negative_slope}")
    if isinstance(layer, nn.GELU) and layer.approximate != "tanh":
        raise ValueError(f"layer {pos} ({layer}): fastmlp's gelu is the tanh approximation; "
                         f"expected nn.GELU(approximate='tanh'), got "
                         f"approximate={layer.approximate!r}")
    if isinstance(layer, nn.Softplus) and layer.beta != 1:
        raise ValueError(f"layer {pos} ({layer}): fastmlp's softplus is log(1 + e^z) "
                         f"(beta=1); got beta={layer.beta}")


def from_torch(model, dtype=None, loss=None):
    """The :class:`ModelSpec` of a PyTorch ``nn.Sequential`` MLP; see
    :func:`fastmlp.interop.from_torch`."""
    try:
        import torch
        from torch import nn
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise ImportError("from_torch needs PyTorch: pip install torch") from err
    if not isinstance(model, nn.Module):
        raise TypeError(f"from_torch needs a torch.nn.Sequential; got {type(model).__name__}")
    if not isinstance(model, (nn.Sequential, nn.Linear)):
        raise TypeError(
            f"from_torch needs a torch.nn.Sequential of Linear layers and activations; got "
            f"{type(model).__name__} (wrap the layers in nn.Sequential)")
    hidden_acts = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu",
                   nn.LeakyReLU: "leaky_relu", nn.GELU: "gelu", nn.Softplus: "softplus"}
    skip = (nn.Identity, nn.Dropout, nn.Flatten)
    linears, after = [], []          # after[i]: activation names following linear i
    drops = []                       # (linears before it, p) of each nn.Dropout
    for pos, layer in enumerate(_flatten_torch(model, nn)):
        if isinstance(layer, nn.Linear):
            linears.append(layer)
            after.append([])
        elif isinstance(layer, skip):
            if isinstance(layer, nn.Dropout):
                drops.append((len(linears), float(layer.p)))
            if isinstance(layer, nn.Flatten) and linears:
                raise ValueError(f"layer {pos} ({layer}): nn.Flatten between Linear layers "
                                 "is not supported")
            continue
        elif type(layer) in hidden_acts or isinstance(layer, nn.Softmax):
            if not linears:
                raise ValueError(f"layer {pos} ({layer}) comes before the first nn.Linear; "
                                 "fastmlp networks start with a Linear layer")
            if isinstance(layer, nn.Softmax):
                if layer.dim not in (-1, 1, None):
                    raise ValueError(f"layer {pos}: nn.Softmax(dim={layer.dim}) is not over the "
                                     "features; only dim=-1 or dim=1 is supported")
                after[-1].append("softmax")
            else:
                _check_torch_activation(pos, layer, nn)
                after[-1].append(hidden_acts[type(layer)])
        else:
            raise TypeError(
                f"layer {pos} ({type(layer).__name__}) is not supported; from_torch takes "
                "nn.Linear, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU, "
                "nn.Softplus, nn.Softmax (last), nn.Identity, nn.Dropout and nn.Flatten (first)")
    if not linears:
        raise ValueError("the model has no nn.Linear layer")
    for i, acts in enumerate(after):
        if len(acts) > 1:
            raise ValueError(f"Linear layer {i} is followed by several activations {acts}; "
                             "fastmlp applies one per layer")
    hidden = [acts[0] if acts else "identity" for acts in after[:-1]]
    if "softmax" in hidden:
        raise ValueError("nn.Softmax is only supported after the last Linear layer")
    if len(set(hidden)) > 1:
        raise ValueError(f"the hidden layers use different activations {hidden}; fastmlp "
                         "uses one activation for every hidden layer")
    activation = hidden[0] if hidden else "sigmoid"
    if after[-1] and after[-1][0] not in ("sigmoid", "softmax"):
        raise ValueError(f"the output activation {after[-1][0]!r} is not supported; fastmlp's "
                         "outputs are sigmoid, softmax and identity (no activation)")
    output = after[-1][0] if after[-1] else "identity"
    if output == "softmax" and linears[-1].out_features < 2:
        raise ValueError("nn.Softmax over a single output is constant 1; use nn.Sigmoid")
    if loss is None:
        loss = "squared_error" if output == "identity" else "log_loss"
    Ws, bs = [], []
    with torch.no_grad():
        for i, lin in enumerate(linears):
            if i and lin.in_features != linears[i - 1].out_features:
                raise ValueError(f"Linear layer {i} takes {lin.in_features} inputs but the "
                                 f"layer before gives {linears[i - 1].out_features}")
            W = lin.weight.detach().cpu()
            Ws.append(W.to(torch.float64).numpy().T.copy())
            b = lin.bias
            bs.append(np.zeros(lin.out_features) if b is None
                      else b.detach().cpu().to(torch.float64).numpy().copy())
    if dtype is None:
        dtype = "float64" if linears[0].weight.dtype == torch.float64 else "float32"
    spec = _spec(Ws, bs, activation, output, loss, _pick_dtype(dtype, Ws),
                 names=("Linear weight.T", "Linear bias"))
    return spec._replace(dropout=_torch_dropout(drops, len(linears)))


def _torch_dropout(drops, n_linear):
    """The network's dropout from the model's nn.Dropout layers: their rate
    when one rate follows every hidden layer and none is elsewhere (fastmlp's
    dropout is one rate on every hidden layer); otherwise 0, with a warning
    when a rate is lost (predictions are the same either way: dropout is off
    in eval mode and in predict)."""
    rates = [p for _, p in drops if p > 0]
    if not rates:
        return 0.0
    hidden = {i: p for i, p in drops if 0 < i < n_linear}
    if (len(drops) == n_linear - 1 and sorted(hidden) == list(range(1, n_linear))
            and len(set(rates)) == 1):
        return rates[0]
    warnings.warn(f"the model's nn.Dropout layers (rates {rates}) are not one rate after "
                  "every hidden layer, which is what fastmlp's dropout is: the network is "
                  "made with dropout=0 (its predictions are the model's in eval mode)",
                  stacklevel=4)
    return 0.0
