"""A network as an ONNX graph, with no network class (see :mod:`fastmlp.onnx`).

One ``Gemm`` per layer (``X @ W + b``), then the layer's activation:
``Sigmoid``, ``Tanh``, ``Relu``, ``LeakyRelu`` (alpha 0.01), softplus as
``Relu(z) + Log(1 + Exp(-Abs(z)))`` (ONNX Runtime's ``Softplus`` has no
float64 kernel), gelu's tanh approximation as
``z * Sigmoid(2 sqrt(2/pi) z (1 + 0.044715 z^2))`` (opset 20's ``Gelu`` is
newer than the oldest opset written) or nothing (identity) for hidden layers, ``Sigmoid``,
``Softmax`` (last axis), ``Exp`` or nothing for the output. The graph
computes in the network's dtype (float32 or float64); its input ``X`` is
``(N, n_in)`` for any ``N``, its output ``Y`` what ``predict`` returns.
Needs the ``onnx`` package (``pip install "fastmlp[onnx]"``), imported here
only when a graph is built.
"""
import os

import numpy as np

from . import _format
from . import _validation as v
from ._version import __version__

#: The oldest opset written (ONNX 1.12, 2022): Softmax over the last axis, Gemm with 1-D C.
MIN_OPSET = 17
_HIDDEN = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": None,
           "leaky_relu": "LeakyRelu", "softplus": "softplus", "gelu": "gelu"}
_OUTPUT = {"sigmoid": "Sigmoid", "softmax": "Softmax", "identity": None, "exp": "Exp"}


def _onnx():
    try:
        import onnx
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx package: pip install onnx "
                          "(or pip install \"fastmlp[onnx]\")") from err
    return onnx


def check_opset(opset):
    """An integer opset >= MIN_OPSET (ONNX defines the newest one)."""
    if not v.is_integer(opset) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}; got {opset!r}")
    return int(opset)


def build(net, opset=MIN_OPSET, name="fastmlp"):
    """The ``onnx.ModelProto`` of a network's forward pass (checked by onnx)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    opset = check_opset(opset)
    _format._check_savable(net)            # finite parameters of the layout's shape
    for what, name, known in (("activation", net.activation, _HIDDEN),
                              ("output", net.output, _OUTPUT)):
        if name not in known:
            raise ValueError(f"ONNX export supports {what} {', '.join(map(repr, known))}; "
                             f"got {what}={name!r}")
    dtype = np.dtype(net.dtype)
    elem = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}[dtype.type]
    nodes, inits, current = [], [], "X"
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        last = i == len(net.weights) - 1
        inits += [numpy_helper.from_array(np.array(W, dtype=dtype), f"W{i}"),
                  numpy_helper.from_array(np.array(b, dtype=dtype), f"b{i}")]
        op = _OUTPUT[net.output] if last else _HIDDEN[net.activation]
        z = "Y" if last and op is None else f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [z], name=f"layer{i}"))
        current = z
        if op is not None:
            a = "Y" if last else f"a{i}"
            more_nodes, more_inits = _activation(helper, numpy_helper, op, z, a, i, dtype)
            nodes += more_nodes
            inits += more_inits
            current = a
    sizes = list(net.layer_sizes)
    out_shape = ["N", sizes[-1]]
    if getattr(net, "flat_output", False):        # predict's (N,): squeeze the one column
        nodes[-1].output[0] = "Y_column"
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "squeeze_axes"))
        nodes.append(helper.make_node("Squeeze", ["Y_column", "squeeze_axes"], ["Y"],
                                      name="flat_output"))
        out_shape = ["N"]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("X", elem, ["N", sizes[0]])],
        [helper.make_tensor_value_info("Y", elem, out_shape)], inits)
    model = helper.make_model(graph, producer_name="fastmlp", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, _ir_version(onnx, opset))
    model.doc_string = (f"fastmlp {'-'.join(map(str, sizes))} network: {net.activation} hidden, "
                        f"{net.output} output, {dtype.name}")
    helper.set_model_props(model, {"layer_sizes": ",".join(map(str, sizes)),
                                   "activation": net.activation, "output": net.output,
                                   "loss": net.loss_name})
    onnx.checker.check_model(model, full_check=True)
    return model


def _chain(helper, numpy_helper, name, consts, steps, a, dtype):
    """Nodes computing ``a`` in ``steps`` ((op, inputs) each; the last one's
    output is ``a``, step j's is ``{name}_j``), with scalar ``consts``
    ({input name: value}) as initializers."""
    inits = [numpy_helper.from_array(np.array(c, dtype=dtype), n) for n, c in consts.items()]
    outs = [f"{name}_{j}" for j in range(len(steps) - 1)] + [a]
    nodes = [helper.make_node(op, ins, [out], name=f"{name}_{j}")
             for j, ((op, ins), out) in enumerate(zip(steps, outs))]
    return nodes, inits


def _activation(helper, numpy_helper, op, z, a, i, dtype):
    """The nodes (and constants) of ``a = op(z)`` in layer i."""
    if op == "gelu":          # z * sigmoid(2c z (1 + k z^2)), as _vmath.h computes it
        g = f"gelu{i}"
        consts = {f"{g}_k": v.GELU_K, f"{g}_one": 1.0, f"{g}_2c": 2 * v.GELU_C}
        steps = [("Mul", [z, z]), ("Mul", [f"{g}_0", f"{g}_k"]), ("Add", [f"{g}_1", f"{g}_one"]),
                 ("Mul", [f"{g}_2", z]), ("Mul", [f"{g}_3", f"{g}_2c"]), ("Sigmoid", [f"{g}_4"]),
                 ("Mul", [z, f"{g}_5"])]
        return _chain(helper, numpy_helper, g, consts, steps, a, dtype)
    if op == "softplus":      # max(z, 0) + log(1 + exp(-|z|)), as _vmath.h computes it
        s = f"softplus{i}"
        steps = [("Abs", [z]), ("Neg", [f"{s}_0"]), ("Exp", [f"{s}_1"]),
                 ("Add", [f"{s}_2", f"{s}_one"]), ("Log", [f"{s}_3"]), ("Relu", [z]),
                 ("Add", [f"{s}_5", f"{s}_4"])]
        return _chain(helper, numpy_helper, s, {f"{s}_one": 1.0}, steps, a, dtype)
    attrs = ({"axis": -1} if op == "Softmax" else
             {"alpha": v.LEAKY_SLOPE} if op == "LeakyRelu" else {})
    return [helper.make_node(op, [z], [a], name=f"{op.lower()}{i}", **attrs)], []


def _ir_version(onnx, opset):
    """The IR version of the release that brought ``opset``: the oldest runtime that
    knows the opset can read the file."""
    for row in onnx.helper.VERSION_TABLE:             # (release, ir, opset, ...)
        if row[2] >= opset:
            return row[1]
    return onnx.IR_VERSION


def write(model, path):
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename), as save does."""
    path = _format.fspath(path)
    data = model.SerializeToString()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _format._create_temp(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _format._fsync_directory(directory)
    return path
