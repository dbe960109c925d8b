"""The ``fastmlp`` command line (also ``python -m fastmlp``).

Commands
--------
demo     train on built-in data (the main job), optionally plotting it
train    train a network on a CSV file and save it
predict  run a saved network on a CSV file
bench    run bench/compare.py's workloads that need no extra install

Every error is reported as one line on stderr with a non-zero exit status
(2 for a bad command line, 1 for anything else; FASTMLP_TRACEBACK=1 in the
environment shows the traceback instead).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

from ._csv import CLIError, delimiter_of, read_csv, target_numbers, write_csv
from ._csv import cell as _cell
from ._version import __version__
from .demo import DEMOS, run_demo

_HE_ACTIVATIONS = ("relu", "leaky_relu", "gelu")     # the rest start from Xavier's init
_MAX_CLASSES = 20        # --task auto: integer targets with at most this many values


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and points at --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


_FORMATTER = argparse.RawDescriptionHelpFormatter


class _DemoChoices(argparse.Action):
    """``demo``'s tasks: any number of the demos' names (none: all of them)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            if value not in DEMOS:
                choices = ", ".join(repr(d) for d in sorted(DEMOS))
                parser.error(f"argument TASK: invalid choice: {value!r} (choose from {choices})")
        setattr(namespace, self.dest, values)


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _add_delimiter(parser):
    parser.add_argument("--delimiter", default=",", metavar="CHAR",
                        help="the character between the values (default ','; 'tab' for a tab)")


def build_parser():
    parser = _Parser(
        prog="fastmlp", formatter_class=_FORMATTER,
        description="Fast multilayer perceptrons on the CPU: typed Cython kernels.",
        epilog="Run 'fastmlp COMMAND --help' for the options of each command.\n\n"
               "examples:\n"
               "  fastmlp demo                      XOR and the disk, printing loss and accuracy\n"
               "  fastmlp demo xor --plot xor.png   ... and draw accuracy, boundary and loss\n"
               "  fastmlp train data.csv --target label --hidden 64,32 --out model.npz\n"
               "  fastmlp predict model.npz new.csv --out predictions.csv\n"
               "  fastmlp bench --quick")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # ------------------------------------------------------------------ demo
    demo = sub.add_parser(
        "demo", help="train on built-in data and report loss and accuracy",
        formatter_class=_FORMATTER,
        description="Train networks on built-in data (no download), printing the loss as "
                    "training goes and the final accuracy.\n\n"
                    "  xor   2-3-1 sigmoid network, squared error, lr 1, 5000 full-batch epochs\n"
                    "  disk  2-16-16-1 tanh network, log loss, minibatches of 32, 300 epochs\n\n"
                    "Exit status 0 when every demo reaches its expected accuracy.")
    demo.add_argument("tasks", nargs="*", action=_DemoChoices, metavar="TASK",
                      help=f"which demos to run: {', '.join(sorted(DEMOS))} (default: all)")
    demo.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                      help="precision of the networks (default float64)")
    demo.add_argument("--seed", type=int, default=0, help="seed of initialisation and data (default 0)")
    demo.add_argument("--plot", metavar="PNG",
                      help="also draw seed 000's three panels (accuracy, decision boundary, "
                           "loss) to this image; with several demos the demo's name is added "
                           "to the file name (out-xor.png). Needs matplotlib.")

    # ----------------------------------------------------------------- train
    train = sub.add_parser(
        "train", help="train a network on a CSV file and save it",
        formatter_class=_FORMATTER,
        description="Train a network on a CSV file with a header row and numeric columns.\n"
                    "Every column but the target is an input. The target may hold class\n"
                    "labels that are words (species: setosa, versicolor...): they are\n"
                    "classes, and 'predict' prints them. The inputs are standardised\n"
                    "(and, for regression, the target) with the training rows' mean and\n"
                    "standard deviation; the scaling is folded into the first (and last)\n"
                    "layer, so the saved network takes raw rows. A held-out part of the rows\n"
                    "is scored at the end (accuracy, or R^2 and RMSE).\n\n"
                    "classification: a sigmoid output for 2 classes, softmax for more, log\n"
                    "loss; regression: a linear output, squared error.",
        epilog="example:\n  fastmlp train iris.csv --target species --hidden 16 --epochs 200 "
               "--out iris.npz")
    train.add_argument("data", metavar="DATA.csv",
                       help="training data: header row, numeric input columns")
    train.add_argument("--target", required=True, metavar="COLUMN",
                       help="name of the column to predict")
    train.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                       help="auto (default): classification when the target holds at most "
                            f"{_MAX_CLASSES} distinct integers or any word, else regression")
    train.add_argument("--hidden", default="32", metavar="N,N,...",
                       help="hidden layer sizes, comma separated; '' for none (default 32)")
    train.add_argument("--activation", choices=["relu", "tanh", "sigmoid", "identity",
                                                "leaky_relu", "gelu", "softplus"],
                       default="relu", help="hidden activation (default relu; relu, leaky_relu "
                                            "and gelu start from He's initialisation, the "
                                            "others from Xavier's)")
    train.add_argument("--epochs", type=int, default=100, help="passes over the data (default 100)")
    train.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=None,
                       help="learning rate (default 0.01 for sgd, else 0.001)")
    train.add_argument("--batch-size", type=int, default=32, help="rows per update (default 32)")
    train.add_argument("--optimizer", choices=["adam", "sgd", "rmsprop", "adamw"],
                       default="adam", help="default adam (rmsprop and adamw: not with --mpi)")
    train.add_argument("--momentum", type=float, default=0.9,
                       help="sgd momentum (default 0.9; 0 for plain sgd)")
    train.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the weights (default 0)")
    train.add_argument("--dropout", type=float, default=0.0, metavar="P",
                       help="drop each hidden unit with probability P while training "
                            "(inverted dropout; default 0; not with --mpi)")
    train.add_argument("--early-stopping", action="store_true",
                       help="stop when the loss on 10%% of the training rows stops improving "
                            "and keep the best weights")
    train.add_argument("--test-size", type=float, default=0.2,
                       help="fraction of rows held out and scored (default 0.2; 0 for none)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None,
                       help="precision (default float32, or float64 when a value of the data "
                            "or a scale the standardisation folds into the network is beyond "
                            "float32's range)")
    train.add_argument("--seed", type=int, default=0, help="seed of split, initialisation and "
                                                           "shuffling (default 0)")
    train.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="train on the raw columns")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--out", metavar="MODEL.npz", default="model.npz",
                       help="where to save the network (default model.npz), with the column "
                            "names and class labels in the same file")
    train.add_argument("--ignore", action="append", default=[], metavar="COLUMN[,COLUMN...]",
                       help="columns that are not inputs (e.g. --ignore id); repeatable")
    _add_delimiter(train)
    train.add_argument("--mpi", action="store_true",
                       help="data-parallel training under mpiexec (pip install 'fastmlp[mpi]'): "
                            "rank r reads the data rows r, r+P, r+2P, ...; --batch-size is per "
                            "rank; scaling, classes and scores are over all rows; rank 0 "
                            "prints and saves. mpiexec -n 4 fastmlp train data.csv --target "
                            "y --mpi")

    # --------------------------------------------------------------- predict
    predict = sub.add_parser(
        "predict", help="run a saved network on a CSV file",
        formatter_class=_FORMATTER,
        description="Predict with a network saved by 'fastmlp train' (or fastmlp.io.save) for\n"
                    "the rows of a CSV file. With the column names 'train' stores in the\n"
                    "model (or, from older versions, in MODEL.npz.json beside it), the input\n"
                    "columns are picked by name (any other column, e.g. the target or an id,\n"
                    "is ignored and need not be numeric) and classes get their original\n"
                    "labels; without them, every column but the --keep ones is an input, in\n"
                    "order. Values are written in the model's precision.",
        epilog="example:\n  fastmlp predict iris.npz new.csv --out predictions.csv --proba --keep id")
    predict.add_argument("model", metavar="MODEL.npz")
    predict.add_argument("data", metavar="DATA.csv", help="header row, numeric input columns")
    predict.add_argument("--out", metavar="PREDS.csv",
                         help="write the predictions here (default: standard output)")
    predict.add_argument("--proba", action="store_true",
                         help="also write the class probabilities (classification)")
    predict.add_argument("--keep", action="append", default=[], metavar="COLUMN[,COLUMN...]",
                         help="copy these columns of DATA.csv to the output, before the "
                              "predictions (e.g. --keep id); repeatable")
    _add_delimiter(predict)

    # ----------------------------------------------------------------- bench
    bench = sub.add_parser(
        "bench", help="run bench/compare.py's workloads that need no extra install",
        formatter_class=_FORMATTER,
        description="Run the side-by-side benchmark bench/compare.py (from a fastmlp source\n"
                    "checkout: bench/ is not installed with the package) on the systems\n"
                    "that need nothing beyond fastmlp's own dependencies: fastmlp float32\n"
                    "and float64 and plain NumPy, on the workloads xor, mnist-shape,\n"
                    "predict-1, predict-batch and sgemm (plus clf and digits when\n"
                    "scikit-learn is installed, for their data). A full run takes several\n"
                    "minutes on 2 cores; --quick about one.",
        epilog="Arguments after '--' go to compare.py unchanged, e.g.\n"
               "  fastmlp bench -- --workloads xor --repeats 9")
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    bench.add_argument("--bench-dir", metavar="DIR",
                       help="folder holding compare.py (default: ./bench, then the source "
                            "checkout this fastmlp was imported from)")
    bench.add_argument("extra", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


# ================================================================= models
def _save_model(net, path, meta):
    """The network and ``meta`` (column names, classes) in one file, atomically;
    not the optimizer state (the CLI never resumes a fit, and Adam's would
    triple the file: a Python user resumes from ``fit(checkpoint=...)``)."""
    from . import io as fio
    fio.save(net, path, metadata=meta, optimizer=False)


def _load_model(path):
    """``(net, meta, where)``: the network, its column names and classes (from
    the file's metadata, or the MODEL.npz.json sidecar of models saved before
    they were stored inside; None without either) and where ``meta`` came from."""
    from . import io as fio
    if not os.path.exists(path):
        raise CLIError(f"model file {path} does not exist")
    net = fio.load(path)
    meta = fio.read_header(path).get("metadata")
    where = f"{path}'s metadata"
    if meta is None and os.path.exists(_meta_path(path)):
        where = _meta_path(path)
        try:
            with open(where, encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as err:
            raise CLIError(f"{where} is not valid JSON: {err}") from None
    if meta is not None:
        _check_meta(meta, where)
    return net, meta, where


def _meta_path(path):
    return os.fspath(path) + ".json"


def _check_meta(meta, where):
    """The sidecar 'fastmlp train' writes: a JSON object whose 'features' (distinct
    column names), 'target' (a column name) and 'classes' (labels) have those types."""
    if not isinstance(meta, dict):
        raise CLIError(f"{where} must hold a JSON object naming the model's columns and "
                       f"classes (as 'fastmlp train' writes it); got a JSON {_json_kind(meta)}")
    features = meta.get("features")
    if features is not None:
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise CLIError(f"{where}: 'features' must be a list of column names; got "
                           f"{_short(features)}")
        twice = sorted({f for f in features if features.count(f) > 1})
        if twice:
            raise CLIError(f"{where}: 'features' names {', '.join(map(repr, twice))} more than once")
    target = meta.get("target")
    if target is not None and not isinstance(target, str):
        raise CLIError(f"{where}: 'target' must be a column name; got {_short(target)}")
    classes = meta.get("classes")
    if classes is not None and not (
            isinstance(classes, list)
            and all(isinstance(c, (int, float, str)) and not isinstance(c, bool) for c in classes)):
        raise CLIError(f"{where}: 'classes' must be a list of class labels (numbers or "
                       f"strings); got {_short(classes)}")


def _json_kind(value):
    kinds = ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"),
             ((int, float), "number"), (type(None), "null"))
    return next(name for t, name in kinds if isinstance(value, t))


def _short(value, width=60):
    text = json.dumps(value)
    return text if len(text) <= width else text[:width - 3] + "..."


# ================================================================== train
def _parse_hidden(text):
    text = text.strip()
    if not text:
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise CLIError(f"--hidden must be sizes separated by commas, like 64,32; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise CLIError(f"--hidden sizes must be >= 1; got {text!r}")
    return sizes


def _memory_limit():
    """The most memory this process can have, as (bytes, what says so): the
    machine's, or the process's address-space or data limit when lower; None
    when unknown."""
    limits = []
    try:
        limits.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                       "this machine's memory"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource
        for name, what in (("RLIMIT_AS", "the process's address-space limit"),
                           ("RLIMIT_DATA", "the process's data limit")):
            soft = resource.getrlimit(getattr(resource, name))[0]
            if soft != resource.RLIM_INFINITY:
                limits.append((soft, what))
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def _check_memory(sizes, dtype, batch_rows, args):
    """Refuse, before anything is allocated, a run that cannot fit in memory.

    Counts what a fit holds at once, at the least: the parameters, Adam's two
    moments or the momentum, the best weights with --early-stopping, one
    batch's activations of every layer, and per epoch 8 bytes of losses (fit
    allocates them up front) and 48 of History's lists once read (a Python
    float and three list slots).
    """
    limit = _memory_limit()
    if limit is None:
        return
    n_params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    state = {"adam": 2, "adamw": 2, "rmsprop": 1}.get(args.optimizer, 1 if args.momentum else 0)
    copies = 1 + state + bool(args.early_stopping)
    network = (copies * n_params + batch_rows * sum(sizes[1:])) * np.dtype(dtype).itemsize
    history = 56 * args.epochs
    if network + history > limit[0]:
        raise CLIError(
            f"this run needs at least {_bytes(network + history)} of memory: {_bytes(network)} "
            f"for the {'-'.join(map(str, sizes))} network's parameters, optimizer state and a "
            f"batch of {batch_rows} rows (--hidden, --batch-size), {_bytes(history)} to record "
            f"{args.epochs} epochs (--epochs); {limit[1]} is {_bytes(limit[0])}")


def _bytes(n):
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}"


def _classes(args, y, cells):
    """``(task, classes, labels)``: the task, the sorted class labels and each
    row's class index (None, None for regression). ``y`` is the target as
    numbers, or None when it holds words (``cells``, its text): those are
    classes."""
    if y is None:
        if args.task == "regression":
            word = next(c for c in cells if not _is_number(c))
            raise CLIError(f"--task regression needs a numeric target; {args.target!r} holds "
                           f"{word!r} (a class label?)")
        task, (classes, labels) = "classification", np.unique(np.array(cells), return_inverse=True)
    else:
        integral = bool(np.all(y == np.round(y)))
        task = args.task
        if task == "auto":
            few = integral and len(np.unique(y)) <= _MAX_CLASSES
            task = "classification" if few else "regression"
        if task == "regression":
            return task, None, None
        if not integral:
            raise CLIError(f"--task classification needs whole-number or word class labels in "
                           f"{args.target!r}; got values such as {y[y != np.round(y)][0]!r}")
        classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise CLIError(f"the target {args.target!r} has a single class ({_label(classes[0])!r}); "
                       "nothing to learn")
    return task, classes, labels


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _train_inputs(args, header):
    """train's input columns: every column but the target and --ignore's."""
    ignore = _column_names(args.ignore, "--ignore")
    for name, option in [(args.target, "--target")] + [(i, "--ignore") for i in ignore]:
        if name not in header:
            raise CLIError(f"{option} {name!r} is not a column of {args.data}; its "
                           f"columns are {', '.join(header)}")
    if args.target in ignore:
        raise CLIError(f"--ignore {args.target!r} is the --target")
    features = [h for h in header if h != args.target and h not in ignore]
    if not features:
        raise CLIError(f"{args.data} has no input column besides the target")
    return features


def _read_train(args, shard=None):
    """``(features, X, y, cells)`` of train's CSV file: input names and columns,
    the target as numbers (None when it holds words) and as text (read as
    text: its labels may be words)."""
    inputs = []

    def pick(header):
        inputs.extend(_train_inputs(args, header))
        return inputs, [args.target]

    _, X, text, lines = read_csv(args.data, shard=shard, delimiter=args.delimiter, pick=pick)
    cells = text[args.target]
    return inputs, X, target_numbers(args.data, args.target, cells, lines), cells


def _check_train_args(args):
    """Every check of train's options that needs no data, before anything is
    printed or read: the numbers' ranges, the delimiter, where the model goes.
    Returns the hidden layer sizes (and normalises ``args.delimiter``)."""
    hidden = _parse_hidden(args.hidden)
    if getattr(args, "mpi", False) and args.optimizer not in ("adam", "sgd"):
        raise CLIError(f"--optimizer {args.optimizer} runs in one process: --mpi trains with "
                       "adam or sgd")
    if getattr(args, "mpi", False) and args.dropout:
        raise CLIError(f"--dropout {args.dropout!r} runs in one process: --mpi trains "
                       "without dropout")
    finite = np.isfinite
    for name, value, ok in (
            ("--epochs", args.epochs, args.epochs >= 1),
            ("--batch-size", args.batch_size, args.batch_size >= 1),
            ("--test-size", args.test_size, 0 <= args.test_size < 1),
            ("--lr", args.lr, args.lr is None or (finite(args.lr) and args.lr > 0)),
            ("--momentum", args.momentum, finite(args.momentum) and 0 <= args.momentum < 1),
            ("--l2", args.l2, finite(args.l2) and args.l2 >= 0),
            ("--dropout", args.dropout, 0 <= args.dropout < 1),
            ("--seed", args.seed, args.seed >= 0)):
        if not ok:
            raise CLIError(f"{name} out of range: {value!r}")
    args.delimiter = delimiter_of(args.delimiter)
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise CLIError(f"--out {args.out}: the folder {folder} does not exist")
    if os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} is a folder; name the model file")
    return hidden


def _describe(args, sizes, output, loss, lr, per_rank=""):
    """train's network line: sizes, hidden activation, optimizer, batches, epochs."""
    hidden = args.activation if len(sizes) > 2 else "(no hidden layer)"
    return (f"network {'-'.join(map(str, sizes))} {hidden}, {output} output, {loss}, "
            f"{args.optimizer} lr {lr:g}, batches of {args.batch_size}{per_rank}, "
            f"{_plural(args.epochs, 'epoch')}"
            + (f", dropout {args.dropout:g}" if args.dropout else ""))


def _fit_kwargs(args):
    """(learning rate, fit's keyword arguments) of train's options."""
    lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 0.001)
    kw = dict(epochs=args.epochs, learning_rate=lr, batch_size=args.batch_size, shuffle=True,
              optimizer=args.optimizer, verbose=not args.quiet)
    if args.optimizer == "sgd" and args.momentum:
        kw.update(momentum=args.momentum, nesterov=True)
    if args.early_stopping:
        kw.update(validation_split=0.1, early_stopping=True)
    return lr, kw


def _trained(hist, ranks=""):
    return (f"trained {_plural(len(hist.loss), 'epoch')} in {hist.seconds:.2f} s{ranks}, "
            f"final loss {hist.loss[-1]:.6g}"
            + (" (stopped early)" if getattr(hist, "stopped_early", False) else ""))


def _meta(args, task, features, classes):
    return {"fastmlp_cli": 1, "task": task, "target": args.target, "features": features,
            "classes": None if classes is None else [_label(c) for c in classes]}


def cmd_train(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    from .network import Network

    if getattr(args, "mpi", False):
        return _train_mpi(args, out, err)
    hidden = _check_train_args(args)
    features, X, y, cells = _read_train(args)
    task, classes, labels = _classes(args, y, cells)
    n = len(cells)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    n_test = int(round(args.test_size * n))
    if args.test_size > 0 and (n_test < 1 or n - n_test < 2):
        raise CLIError(f"--test-size {args.test_size} of {n} rows leaves {n_test} test and "
                       f"{n - n_test} training rows")
    test, train = order[:n_test], order[n_test:]

    xs = _Standardisation(X[train], args.standardize)
    if task == "classification":
        k = len(classes)
        n_out, output, loss = (1, "sigmoid", "log_loss") if k == 2 else (k, "softmax", "log_loss")
        Y = labels[train].astype(np.float64)
        ys = None
    else:
        n_out, output, loss = 1, "identity", "squared_error"
        ys = _Standardisation(y[train, None], args.standardize)
        Y = ys.apply(y[train, None])
    sizes = [X.shape[1]] + hidden + [n_out]
    # float32 unless the saved network's raw inputs, scales or outputs need float64
    problem = _float32_problem(features, X, args.target, None if ys is None else y, xs, ys)
    if problem and args.dtype == "float32":
        raise CLIError(f"--dtype float32 cannot hold this data: {problem}; use --dtype float64 "
                       "(or leave --dtype out)")
    dtype = args.dtype or ("float64" if problem else "float32")
    _check_memory(sizes, dtype, min(args.batch_size, len(train)), args)
    net = Network(sizes, activation=args.activation, output=output, loss=loss, l2=args.l2,
                  init="he" if args.activation in _HE_ACTIVATIONS else "xavier", dtype=dtype,
                  seed=args.seed, dropout=args.dropout)
    lr, fit_kwargs = _fit_kwargs(args)
    print(f"{args.data}: {n} rows, {_plural(len(features), 'input')}, target {args.target!r}: {task}"
          + (f" with {len(classes)} classes" if classes is not None else ""), file=out)
    print(_describe(args, sizes, output, loss, lr)
          + f", {len(train)} training / {len(test)} held-out rows", file=out)
    if problem and not args.dtype:
        print(f"float64: {problem}", file=out)
    out.flush()
    hist = net.fit(xs.apply(X[train]), Y, **fit_kwargs)
    _fold_scaling(net, xs, ys, features, args.target)
    print(_trained(hist), file=out)
    if len(test):
        P = net.predict(X[test]).reshape(len(test), -1)
        if task == "classification":
            pred = (P[:, 0] > 0.5).astype(int) if P.shape[1] == 1 else P.argmax(axis=1)
            print(f"held-out accuracy {np.mean(pred == labels[test]):.1%} ({len(test)} rows)", file=out)
        else:
            r2, rmse = _r2_rmse(y[test], P[:, 0].astype(np.float64))
            print(f"held-out R^2 {r2:.4f}, RMSE {rmse:.6g} ({len(test)} rows)", file=out)
    _save_model(net, args.out, _meta(args, task, features, classes))
    print(f"saved {args.out} (with its columns and classes)", file=out)
    return 0


def _train_mpi(args, out, err):
    """``train --mpi``: this rank's part of the job (see fastmlp._cli_mpi)."""
    from . import _cli_mpi as cm
    from . import distributed as dist
    from .errors import DivergenceError
    comm = dist._mpi().COMM_WORLD
    agreed = (CLIError, ValueError, TypeError, DivergenceError, dist.RankError, KeyboardInterrupt)
    return cm.run_or_abort(comm, lambda: _train_ranks(args, comm, out if comm.rank == 0
                                                      else open(os.devnull, "w")), err, agreed)


def _error_of(check, *args):
    """The CLIError ``check(*args)`` raises, or None."""
    try:
        check(*args)
    except CLIError as exc:
        return exc
    return None


def _train_ranks(args, comm, out):
    from . import _cli_mpi as cm
    from . import distributed as dist
    from .network import Network
    error = features = X = y = cells = hidden = None
    try:
        hidden = _check_train_args(args)
        features, X, y, cells = _read_train(args, shard=(comm.rank, comm.size))
    except CLIError as exc:
        error = exc
    cm.agree(comm, error)
    task, classes, labels = cm.task_and_labels(comm, args.task, y, cells, args.target,
                                               _MAX_CLASSES)
    test, train = cm.split(comm, args.seed, args.test_size, len(cells))
    xs = cm.globalise(comm, _Standardisation(X[train], False), X[train], args.standardize)
    if task == "classification":
        k = len(classes)
        n_out, output, loss = (1, "sigmoid", "log_loss") if k == 2 else (k, "softmax", "log_loss")
        Y, ys = labels[train].astype(np.float64), None
    else:
        n_out, output, loss = 1, "identity", "squared_error"
        ys = cm.globalise(comm, _Standardisation(y[train, None], False), y[train, None],
                          args.standardize)
        Y = ys.apply(y[train, None])
    sizes = [X.shape[1]] + hidden + [n_out]
    problem = cm.first(comm, _float32_problem(features, X, args.target,
                                              None if ys is None else y, xs, ys))
    if problem and args.dtype == "float32":
        raise CLIError(f"--dtype float32 cannot hold this data: {problem}; use --dtype float64 "
                       "(or leave --dtype out)")
    dtype = args.dtype or ("float64" if problem else "float32")
    cm.agree(comm, _error_of(_check_memory, sizes, dtype, min(args.batch_size, len(train)), args))
    net = Network(sizes, activation=args.activation, output=output, loss=loss, l2=args.l2,
                  init="he" if args.activation in _HE_ACTIVATIONS else "xavier", dtype=dtype,
                  seed=args.seed)
    lr, kw = _fit_kwargs(args)
    print(f"{args.data}: {comm.allreduce(len(cells))} rows on {comm.size} ranks, "
          f"{_plural(len(features), 'input')}, target {args.target!r}: {task}"
          + (f" with {len(classes)} classes" if classes is not None else ""), file=out)
    print(_describe(args, sizes, output, loss, lr, per_rank=" per rank")
          + f", {comm.allreduce(len(train))} training / {comm.allreduce(len(test))} "
          "held-out rows", file=out)
    out.flush()
    hist = dist.fit(net, xs.apply(X[train]), Y, comm=comm, **kw)
    _fold_scaling(net, xs, ys, features, args.target)
    print(_trained(hist, ranks=f" on {comm.size} ranks"), file=out)
    if comm.allreduce(len(test)):
        truth = labels[test] if task == "classification" else y[test]
        print(cm.score(comm, task == "classification", net.predict(X[test]), truth), file=out)
    if comm.rank == 0:
        _save_model(net, args.out, _meta(args, task, features, classes))
        print(f"saved {args.out} (with its columns and classes)", file=out)
    return 0


def _label(c):
    """A class label as JSON keeps it: the word, or the number (whole ones as int)."""
    if isinstance(c, str):
        return str(c)                    # np.str_ too
    c = float(c)
    return int(c) if c.is_integer() else c


class _Standardisation:
    """Each column's mean and standard deviation over the training rows.

    Kept as ``scale * m`` and ``scale * s`` with ``scale`` the column's largest
    magnitude, and applied as ``(x / scale - m) / s``: nothing overflows for
    any finite data (values of 1e308 included), where ``x.mean()`` and
    ``x - mean`` would. A column constant over the training rows becomes 0.
    Disabled, it is the identity.
    """

    def __init__(self, a, enabled=True):
        n_cols = a.shape[1]
        if not enabled:
            self.scale, self.m, self.s = np.ones(n_cols), np.zeros(n_cols), np.ones(n_cols)
        else:
            scale = np.abs(a).max(axis=0)
            self.scale = np.where(scale > 0, scale, 1.0)
            u = a / self.scale
            self.m, self.s = u.mean(axis=0), u.std(axis=0)
        self.constant = self.s == 0

    @property
    def sd(self):
        return self.s * self.scale

    def apply(self, a):
        out = (a / self.scale - self.m) / np.where(self.constant, 1.0, self.s)
        out[:, self.constant] = 0.0
        return out


_F32_MAX = float(np.finfo(np.float32).max)
_HEADROOM = 1e4      # trained weights up to this size times a folded scale must fit float32


def _float32_problem(features, X, target, y, xs, ys):
    """Why a float32 network could not take the raw rows and give raw targets,
    or None: a value beyond float32's range, or a scale that folding the
    standardisation into the first or last layer would push beyond it."""
    def beyond(a):
        i = int(np.argmax(np.abs(a)))
        return a.flat[i] if abs(a.flat[i]) > _F32_MAX else None

    for j, name in enumerate(features):
        v = beyond(X[:, j])
        if v is not None:
            return f"column {name!r} holds {v:g}, beyond float32's range (+-{_F32_MAX:.3g})"
    if y is not None and beyond(y) is not None:
        return f"the target {target!r} holds {beyond(y):g}, beyond float32's range (+-{_F32_MAX:.3g})"
    with np.errstate(divide="ignore", over="ignore"):
        inverse = np.where(xs.constant, 0.0, 1 / xs.sd)
    j = int(np.argmax(inverse)) if len(inverse) else 0
    if len(inverse) and inverse[j] * _HEADROOM > _F32_MAX:
        return (f"column {features[j]!r} has a standard deviation of {xs.sd[j]:g}, too small "
                "for float32 once the standardisation is folded into the first layer")
    if ys is not None and ys.sd[0] * _HEADROOM > _F32_MAX:
        return (f"the target {target!r} has a standard deviation of {ys.sd[0]:g}, too large "
                "for float32 once it is folded into the output layer")
    return None


def _fold_scaling(net, xs, ys, features, target):
    """Make the network take raw inputs and give raw targets.

    Trained on ``(x - mu) / sd``: ``z = ((x - mu) / sd) W + b = x (W / sd) + (b - (mu / sd) W)``,
    with ``W / sd`` computed as ``W / s / scale`` and ``mu / sd`` as ``m / s`` so that
    nothing overflows on the way; a column that was constant (0 in training)
    gets zero weights. A linear output trained on ``(y - y_mu) / y_sd`` is
    scaled back the same way. Computed in float64; a result beyond the network's
    dtype is a CLIError, never an infinity in the saved file.
    """
    top = float(np.finfo(net.dtype).max)
    keep = ~xs.constant
    W = net.weights[0].astype(np.float64)
    with np.errstate(over="ignore"):
        W0 = np.where(keep[:, None], W / np.where(keep, xs.s, 1.0)[:, None]
                      / xs.scale[:, None], 0.0)
        b0 = net.biases[0].astype(np.float64) - (np.where(keep, xs.m / np.where(keep, xs.s, 1.0),
                                                          0.0) @ W)
    bad = ~(np.abs(W0) <= top).all(axis=1)
    if bad.any() or not (np.abs(b0) <= top).all():
        which = ", ".join(repr(f) for f, b in zip(features, bad) if b) or "the columns"
        raise CLIError(f"the trained network cannot take raw rows in {net.dtype.name}: folding "
                       f"the standardisation of {which} into it overflows; rescale the column, "
                       "use --no-standardize, or --dtype float64")
    net.weights[0][...] = W0
    net.biases[0][...] = b0
    if net.output == "identity" and ys is not None:
        s, m, scale = ys.s[0] if not ys.constant[0] else 1.0, ys.m[0], ys.scale[0]
        with np.errstate(over="ignore"):
            WL = net.weights[-1].astype(np.float64) * s * scale
            bL = (net.biases[-1].astype(np.float64) * s + m) * scale
        if not ((np.abs(WL) <= top).all() and (np.abs(bL) <= top).all()):
            raise CLIError(f"the trained network's outputs for the target {target!r} would be "
                           f"beyond {net.dtype.name}'s range; rescale the target or use "
                           "--no-standardize")
        net.weights[-1][...] = WL
        net.biases[-1][...] = bL


def _r2_rmse(y, p):
    """R^2 and RMSE of predictions ``p`` of ``y``, computed on ``/ max |.|`` so
    that any finite values work."""
    scale = max(float(np.abs(y).max()), float(np.abs(p).max())) or 1.0
    yu, r = y / scale, p / scale - y / scale
    ss = np.sum((yu - yu.mean()) ** 2)
    r2 = 1 - np.sum(r ** 2) / ss if ss > 0 else float("nan")
    return r2, float(np.sqrt(np.mean(r ** 2)) * scale)


# ================================================================ predict
def _column_names(items, option="--keep"):
    """The column names of a repeatable, comma-separated option, each once."""
    names = []
    for item in items:
        for name in item.split(","):
            name = name.strip()
            if not name:
                raise CLIError(f"{option} needs column names; got {item!r}")
            if name not in names:
                names.append(name)
    return names


def _predict_columns(args, n_in, features, keep, where):
    """``read_csv``'s pick for predict: the model's input columns (by name, or
    every column but the kept ones when the model names none) and the kept
    columns as text; any other column is not read."""
    def pick(header):
        missing = [k for k in keep if k not in header]
        if missing:
            raise CLIError(f"--keep {', '.join(missing)}: not a column of {args.data}; its "
                           f"columns are {', '.join(header)}")
        if features:
            missing = [f for f in features if f not in header]
            if missing:
                raise CLIError(f"{args.data} lacks the model's input columns "
                               f"{', '.join(missing)}")
            return features, keep
        inputs = [h for h in header if h not in keep]
        if len(inputs) != n_in:
            raise CLIError(f"{args.data} has {len(inputs)} columns"
                           + (" besides --keep's" if keep else "")
                           + f" but the model takes {n_in} inputs (and {where} names "
                           "none of them)")
        return inputs, keep
    return pick


def _prediction_columns(net, P, meta, where, proba, target):
    """(names, columns) of the predictions: the value(s) of a regressor; the
    class label, and with ``proba`` each class's probability, of a classifier.
    Numbers stay in the model's precision."""
    P = P.reshape(len(P), -1)
    if net.output == "identity":
        names = [target] if P.shape[1] == 1 else [f"{target}_{j}" for j in range(P.shape[1])]
        return names, [P[:, j] for j in range(P.shape[1])]
    if P.shape[1] == 1:
        idx = (P[:, 0] > 0.5).astype(int)
        proba_columns = [1 - P[:, 0], P[:, 0]]
    else:
        idx = P.argmax(axis=1)
        proba_columns = [P[:, j] for j in range(P.shape[1])]
    classes = meta.get("classes") if meta else None
    if classes is not None and len(classes) != len(proba_columns):
        raise CLIError(f"{where} lists {len(classes)} classes but the model tells "
                       f"{len(proba_columns)} apart")
    labels = classes if classes is not None else list(range(len(proba_columns)))
    names, columns = [target], [[labels[i] for i in idx]]
    if proba:
        names += [f"p_{_cell(lab)}" for lab in labels]
        columns += proba_columns
    return names, columns


def cmd_predict(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    delimiter = delimiter_of(args.delimiter)
    keep = _column_names(args.keep)
    net, meta, where = _load_model(args.model)
    if args.proba and net.output == "identity":
        raise CLIError(f"--proba needs a classifier; {args.model} is a regressor (a linear "
                       "output: it predicts values, not class probabilities)")
    n_in = net.layer_sizes[0]
    features = meta.get("features") if meta else None
    if features and len(features) != n_in:
        raise CLIError(f"{where} names {len(features)} input columns but the model takes "
                       f"{n_in} inputs")
    if meta is None:
        where = f"no {_meta_path(args.model)}"
    header, X, text, _ = read_csv(args.data, delimiter=delimiter,
                                  pick=_predict_columns(args, n_in, features, keep, where))
    inputs = features or [h for h in header if h not in keep]
    top = float(np.finfo(net.dtype).max)
    for j in range(X.shape[1]):
        i = int(np.argmax(np.abs(X[:, j])))
        if abs(X[i, j]) > top:
            raise CLIError(f"{args.data}, column {inputs[j]!r}: {X[i, j]:g} is beyond the "
                           f"{net.dtype.name} model's range (+-{top:.3g})")
    target = (meta.get("target") if meta else None) or "prediction"
    if target in keep:                     # the true value kept beside the prediction
        target = f"predicted_{target}"
    names, columns = _prediction_columns(net, net.predict(X), meta, where, args.proba, target)
    names, columns = keep + names, [text[k] for k in keep] + columns
    if args.out:
        try:
            with open(args.out, "w", newline="", encoding="utf-8") as fh:
                write_csv(fh, names, columns, delimiter)
        except OSError as e:
            raise CLIError(f"cannot write {args.out}: {e.strerror or e}") from None
        print(f"wrote {len(X)} predictions to {args.out}", file=err)
    else:
        write_csv(out, names, columns, delimiter)
    return 0


# ================================================================== bench
_BENCH_SYSTEMS = "fastmlp-f32,fastmlp-f64,numpy"
_BENCH_WORKLOADS = ["xor", "mnist-shape", "predict-1", "predict-batch", "sgemm"]


def _find_bench(bench_dir):
    if bench_dir is not None:
        candidates = [bench_dir]
    else:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        candidates = [os.path.join(os.getcwd(), "bench"), os.path.join(here, "bench")]
    for d in candidates:
        script = os.path.join(d, "compare.py")
        if os.path.isfile(script):
            return script
    where = bench_dir if bench_dir is not None else "./bench or next to the fastmlp package"
    raise CLIError(f"bench/compare.py not found ({where}): 'fastmlp bench' runs from a fastmlp "
                   "source checkout (bench/ is not installed with the package); cd into one "
                   "or pass --bench-dir")


def cmd_bench(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    script = _find_bench(args.bench_dir)
    workloads = list(_BENCH_WORKLOADS)
    if importlib.util.find_spec("sklearn") is not None:
        workloads[1:1] = ["clf", "digits"]        # their data come from scikit-learn
    extra = list(args.extra)
    if extra and extra[0] == "--":
        extra = extra[1:]
    cmd = [sys.executable, script]
    if not any(a.startswith("--systems") for a in extra):
        cmd += ["--systems", _BENCH_SYSTEMS]
    if not any(a.startswith("--workloads") for a in extra):
        cmd += ["--workloads", ",".join(workloads)]
    if args.quick:
        cmd.append("--quick")
    cmd += extra
    print("running: " + " ".join(cmd[1:]), file=err)
    err.flush()
    return subprocess.call(cmd)


# =================================================================== main
def _demo(args):
    tasks = args.tasks or list(DEMOS)
    ok = True
    for task in tasks:
        plot = args.plot
        if plot and len(tasks) > 1:
            stem, ext = os.path.splitext(plot)
            plot = f"{stem}-{task}{ext or '.png'}"
        ok &= run_demo(task, dtype=args.dtype, seed=args.seed, out=sys.stdout, plot=plot)
    return 0 if ok else 1


def main(argv=None):
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    commands = {"demo": _demo, "train": cmd_train, "predict": cmd_predict, "bench": cmd_bench}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, ImportError, ArithmeticError,
            MemoryError) as err:
        if os.environ.get("FASTMLP_TRACEBACK"):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, MemoryError):
            text = f"out of memory ({text})"
        print(f"fastmlp {args.command}: error: {text}", file=sys.stderr)
        return 1
