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
import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

from ._version import __version__
from .demo import DEMOS, run_demo

_MAX_CLASSES = 20        # --task auto: integer targets with at most this many values


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and points at --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


_FORMATTER = argparse.RawDescriptionHelpFormatter


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
    demo.add_argument("tasks", nargs="*", choices=sorted(DEMOS) + [[]], metavar="TASK",
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
                    "Every column but the target is an input. The inputs are standardised\n"
                    "(and, for regression, the target) with the training rows' mean and\n"
                    "standard deviation; the scaling is folded into the first (and last)\n"
                    "layer, so the saved network takes raw rows. A held-out part of the rows\n"
                    "is scored at the end (accuracy, or R^2 and RMSE).\n\n"
                    "classification: a sigmoid output for 2 classes, softmax for more, log\n"
                    "loss; regression: a linear output, squared error.",
        epilog="example:\n  fastmlp train iris.csv --target species --hidden 16 --epochs 200 "
               "--out iris.npz")
    train.add_argument("data", metavar="DATA.csv", help="training data: header row, numeric columns")
    train.add_argument("--target", required=True, metavar="COLUMN",
                       help="name of the column to predict")
    train.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                       help="auto (default): classification when the target holds at most "
                            f"{_MAX_CLASSES} distinct integers, else regression")
    train.add_argument("--hidden", default="32", metavar="N,N,...",
                       help="hidden layer sizes, comma separated; '' for none (default 32)")
    train.add_argument("--activation", choices=["relu", "tanh", "sigmoid", "identity"],
                       default="relu", help="hidden activation (default relu)")
    train.add_argument("--epochs", type=int, default=100, help="passes over the data (default 100)")
    train.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=None,
                       help="learning rate (default 0.001 for adam, 0.01 for sgd)")
    train.add_argument("--batch-size", type=int, default=32, help="rows per update (default 32)")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                       help="default adam")
    train.add_argument("--momentum", type=float, default=0.9,
                       help="sgd momentum (default 0.9; 0 for plain sgd)")
    train.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the weights (default 0)")
    train.add_argument("--early-stopping", action="store_true",
                       help="stop when the loss on 10%% of the training rows stops improving "
                            "and keep the best weights")
    train.add_argument("--test-size", type=float, default=0.2,
                       help="fraction of rows held out and scored (default 0.2; 0 for none)")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="precision (default float32)")
    train.add_argument("--seed", type=int, default=0, help="seed of split, initialisation and "
                                                           "shuffling (default 0)")
    train.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="train on the raw columns")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--out", metavar="MODEL.npz", default="model.npz",
                       help="where to save the network (default model.npz); the column names "
                            "and class labels go beside it in MODEL.npz.json")

    # --------------------------------------------------------------- predict
    predict = sub.add_parser(
        "predict", help="run a saved network on a CSV file",
        formatter_class=_FORMATTER,
        description="Predict with a network saved by 'fastmlp train' (or fastmlp.io.save) for\n"
                    "the rows of a CSV file. With the MODEL.npz.json written by 'train', the\n"
                    "input columns are picked by name (others, e.g. the target, are ignored)\n"
                    "and classes get their original labels; without it, every column is an\n"
                    "input, in order.",
        epilog="example:\n  fastmlp predict iris.npz new.csv --out predictions.csv --proba")
    predict.add_argument("model", metavar="MODEL.npz")
    predict.add_argument("data", metavar="DATA.csv", help="header row, numeric columns")
    predict.add_argument("--out", metavar="PREDS.csv",
                         help="write the predictions here (default: standard output)")
    predict.add_argument("--proba", action="store_true",
                         help="also write the class probabilities (classification)")

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


# ====================================================================== CSV
def read_csv(path):
    """Header names and a float64 matrix from a CSV file of numbers."""
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror or err}") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise CLIError(f"{path} is empty: expected a header row and data rows") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise CLIError(f"{path}: not a readable CSV file ({err})") from None
        header = [h.strip() for h in header]
        if not any(header):
            raise CLIError(f"{path}: the first row must name the columns")
        rows = []
        try:
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise CLIError(f"{path}, line {line}: {len(row)} values but the header "
                                   f"names {len(header)} columns")
                values = []
                for name, cell in zip(header, row):
                    try:
                        values.append(float(cell))
                    except ValueError:
                        what = "a missing value" if not cell.strip() else f"{cell.strip()!r}"
                        raise CLIError(f"{path}, line {line}, column {name!r}: {what} is not a "
                                       "number (every column must be numeric)") from None
                rows.append(values)
        except (csv.Error, UnicodeDecodeError) as err:
            raise CLIError(f"{path}: not a readable CSV file ({err})") from None
    if not rows:
        raise CLIError(f"{path} has a header but no data rows")
    data = np.array(rows, dtype=np.float64)
    if not np.isfinite(data).all():
        raise CLIError(f"{path} contains NaN or infinite values")
    return header, data


def write_csv(fh, header, columns):
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(header)
    for row in zip(*columns):
        w.writerow([_cell(v) for v in row])


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if not float(v).is_integer() or abs(v) >= 1e16 else str(int(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


# ================================================================= models
def _save_model(net, path, meta):
    try:
        from . import io as fio
    except ImportError:
        fio = None
    if fio is not None:
        fio.save(net, path)
    else:                                 # fastmlp without io: a minimal npz of the same idea
        header = json.dumps({"format": "fastmlp.cli", "layer_sizes": list(net.layer_sizes),
                             "activation": net.activation, "output": net.output,
                             "loss": net.loss_name, "dtype": net.dtype.name})
        np.savez(path, header=np.frombuffer(header.encode(), dtype=np.uint8), params=net.params)
    with open(_meta_path(path), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)


def _load_model(path):
    if not os.path.exists(path):
        raise CLIError(f"model file {path} does not exist")
    try:
        from . import io as fio
    except ImportError:
        fio = None
    if fio is not None:
        net = fio.load(path)
    else:
        from .network import Network
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(bytes(z["header"]).decode())
            net = Network(head["layer_sizes"], activation=head["activation"],
                          output=head["output"], loss=head["loss"], dtype=head["dtype"])
            net.set_params(z["params"])
    meta = None
    if os.path.exists(_meta_path(path)):
        try:
            with open(_meta_path(path), encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as err:
            raise CLIError(f"{_meta_path(path)} is not valid JSON: {err}") from None
    return net, meta


def _meta_path(path):
    return os.fspath(path) + ".json"


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


def _infer_task(y, task):
    if task != "auto":
        return task
    integral = np.all(y == np.round(y))
    return "classification" if integral and len(np.unique(y)) <= _MAX_CLASSES else "regression"


def cmd_train(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    from .network import Network

    header, data = read_csv(args.data)
    if args.target not in header:
        raise CLIError(f"--target {args.target!r} is not a column of {args.data}; its columns "
                       f"are {', '.join(header)}")
    if header.count(args.target) > 1:
        raise CLIError(f"{args.data} has several columns named {args.target!r}")
    t = header.index(args.target)
    features = [h for i, h in enumerate(header) if i != t]
    if not features:
        raise CLIError(f"{args.data} has no input column besides the target")
    X = np.delete(data, t, axis=1)
    y = data[:, t]
    hidden = _parse_hidden(args.hidden)
    for name, value, ok in (("--epochs", args.epochs, args.epochs >= 1),
                            ("--batch-size", args.batch_size, args.batch_size >= 1),
                            ("--test-size", args.test_size, 0 <= args.test_size < 1)):
        if not ok:
            raise CLIError(f"{name} out of range: {value!r}")
    task = _infer_task(y, args.task)
    classes = None
    if task == "classification":
        if not np.all(y == np.round(y)):
            raise CLIError(f"--task classification needs whole-number class labels in "
                           f"{args.target!r}; got values such as {y[y != np.round(y)][0]!r}")
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise CLIError(f"the target {args.target!r} has a single class ({classes[0]:g}); "
                           "nothing to learn")
    n = len(y)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    n_test = int(round(args.test_size * n))
    if args.test_size > 0 and (n_test < 1 or n - n_test < 2):
        raise CLIError(f"--test-size {args.test_size} of {n} rows leaves {n_test} test and "
                       f"{n - n_test} training rows")
    test, train = order[:n_test], order[n_test:]

    mu = X[train].mean(axis=0) if args.standardize else np.zeros(X.shape[1])
    sd = X[train].std(axis=0) if args.standardize else np.ones(X.shape[1])
    sd = np.where(sd > 0, sd, 1.0)
    Xs = (X - mu) / sd
    if task == "classification":
        k = len(classes)
        n_out, output, loss = (1, "sigmoid", "log_loss") if k == 2 else (k, "softmax", "log_loss")
        Y = labels.astype(np.float64)
        y_mu, y_sd = 0.0, 1.0
    else:
        n_out, output, loss = 1, "identity", "squared_error"
        y_mu = y[train].mean() if args.standardize else 0.0
        y_sd = y[train].std() if args.standardize else 1.0
        y_sd = y_sd if y_sd > 0 else 1.0
        Y = (y - y_mu) / y_sd
    sizes = [X.shape[1]] + hidden + [n_out]
    net = Network(sizes, activation=args.activation, output=output, loss=loss, l2=args.l2,
                  init="he" if args.activation == "relu" else "xavier", dtype=args.dtype,
                  seed=args.seed)
    lr = args.lr if args.lr is not None else (0.001 if args.optimizer == "adam" else 0.01)
    fit_kwargs = dict(epochs=args.epochs, learning_rate=lr, batch_size=args.batch_size,
                      shuffle=True, optimizer=args.optimizer, verbose=not args.quiet)
    if args.optimizer == "sgd" and args.momentum:
        fit_kwargs.update(momentum=args.momentum, nesterov=True)
    if args.early_stopping:
        fit_kwargs.update(validation_split=0.1, early_stopping=True)
    print(f"{args.data}: {n} rows, {len(features)} inputs, target {args.target!r}: {task}"
          + (f" with {len(classes)} classes" if classes is not None else ""), file=out)
    print(f"network {'-'.join(map(str, sizes))} {args.activation}, {output} output, {loss}, "
          f"{args.optimizer} lr {lr:g}, batches of {args.batch_size}, {args.epochs} epochs, "
          f"{len(train)} training / {len(test)} held-out rows", file=out)
    out.flush()
    hist = net.fit(Xs[train], Y[train], **fit_kwargs)
    _fold_scaling(net, mu, sd, y_mu, y_sd)
    msg = f"trained {len(hist.loss)} epochs in {hist.seconds:.2f} s, final loss {hist.loss[-1]:.6g}"
    if getattr(hist, "stopped_early", False):
        msg += " (stopped early)"
    print(msg, file=out)
    if len(test):
        P = net.predict(X[test])
        if task == "classification":
            pred = (P[:, 0] > 0.5).astype(int) if P.shape[1] == 1 else P.argmax(axis=1)
            print(f"held-out accuracy {np.mean(pred == labels[test]):.1%} ({len(test)} rows)", file=out)
        else:
            r = P[:, 0] - y[test]
            ss = np.sum((y[test] - y[test].mean()) ** 2)
            r2 = 1 - np.sum(r ** 2) / ss if ss > 0 else float("nan")
            print(f"held-out R^2 {r2:.4f}, RMSE {np.sqrt(np.mean(r ** 2)):.6g} ({len(test)} rows)",
                  file=out)
    meta = {"fastmlp_cli": 1, "task": task, "target": args.target, "features": features,
            "classes": None if classes is None else [_label(c) for c in classes]}
    _save_model(net, args.out, meta)
    print(f"saved {args.out} (columns and classes in {_meta_path(args.out)})", file=out)
    return 0


def _label(c):
    c = float(c)
    return int(c) if c.is_integer() else c


def _fold_scaling(net, mu, sd, y_mu, y_sd):
    """Make the network take raw inputs and give raw targets.

    Trained on ``(x - mu) / sd``: ``z = ((x - mu) / sd) W + b = x (W / sd) + (b - (mu / sd) W)``.
    A linear output trained on ``(y - y_mu) / y_sd`` is scaled back the same way.
    """
    W0, b0 = net.weights[0], net.biases[0]
    W = W0.astype(np.float64)
    b0[...] = b0.astype(np.float64) - (mu / sd) @ W
    W0[...] = W / sd[:, None]
    if net.output == "identity" and (y_mu != 0 or y_sd != 1):
        net.weights[-1][...] = net.weights[-1].astype(np.float64) * y_sd
        net.biases[-1][...] = net.biases[-1].astype(np.float64) * y_sd + y_mu


# ================================================================ predict
def cmd_predict(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    net, meta = _load_model(args.model)
    header, data = read_csv(args.data)
    n_in = net.layer_sizes[0]
    target = "prediction"
    if meta and meta.get("features"):
        missing = [f for f in meta["features"] if f not in header]
        if missing:
            raise CLIError(f"{args.data} lacks the model's input columns {', '.join(missing)}")
        X = data[:, [header.index(f) for f in meta["features"]]]
        target = meta.get("target") or target
    elif data.shape[1] == n_in:
        X = data
    else:
        raise CLIError(f"{args.data} has {data.shape[1]} columns but the model takes {n_in} "
                       f"inputs (and there is no {_meta_path(args.model)} naming them)")
    P = net.predict(X)
    classes = meta.get("classes") if meta else None
    columns, names = [], []
    if net.output == "identity":
        for j in range(P.shape[1]):
            names.append(target if P.shape[1] == 1 else f"{target}_{j}")
            columns.append(P[:, j].astype(np.float64))
    else:
        if P.shape[1] == 1:
            idx = (P[:, 0] > 0.5).astype(int)
            proba = np.c_[1 - P[:, 0], P[:, 0]]
        else:
            idx = P.argmax(axis=1)
            proba = P
        labels = classes if classes and len(classes) == proba.shape[1] else list(range(proba.shape[1]))
        names.append(target)
        columns.append([labels[i] for i in idx])
        if args.proba:
            for j, lab in enumerate(labels):
                names.append(f"p_{_cell(lab)}")
                columns.append(proba[:, j].astype(np.float64))
    if args.out:
        try:
            with open(args.out, "w", newline="", encoding="utf-8") as fh:
                write_csv(fh, names, columns)
        except OSError as e:
            raise CLIError(f"cannot write {args.out}: {e.strerror or e}") from None
        print(f"wrote {len(X)} predictions to {args.out}", file=err)
    else:
        write_csv(out, names, columns)
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
    except (CLIError, ValueError, TypeError, OSError, ImportError, ArithmeticError) as err:
        if os.environ.get("FASTMLP_TRACEBACK"):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(f"fastmlp {args.command}: error: {text}", file=sys.stderr)
        return 1
