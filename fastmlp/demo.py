"""The main job: train on built-in data, printing loss and accuracy."""
import time

import numpy as np

from . import datasets
from .network import Network


def _accuracy(net, X, y):
    p = net.predict(X)
    pred = (p[:, 0] > 0.5) if p.shape[1] == 1 else p.argmax(axis=1)
    return float(np.mean(pred == y))


def _train(net, X, y, epochs, reports, out, record=None, **fit_args):
    """Train in ``reports`` chunks, printing the loss after each.

    With ``record`` (a :class:`fastmlp.plot.TrainingRecord`), also note every
    epoch's loss and training accuracy for the plot.
    """
    step = max(1, epochs // reports)
    done, start = 0, time.perf_counter()
    if record is not None:
        def recorder(n, epoch, logs):
            record.epoch.append(len(record.epoch) + 1)
            record.loss.append(float(logs["loss"]))
            record.accuracy.append(_accuracy(n, X, y))
        fit_args = dict(fit_args, callbacks=(recorder,))
    while done < epochs:
        k = min(step, epochs - done)
        hist = net.fit(X, y, epochs=k, **fit_args)
        done += k
        print(f"  epoch {done:6d}   loss {hist.loss[-1]:.6f}", file=out)
    return time.perf_counter() - start


def _new_record(plot):
    if not plot:
        return None
    from .plot import TrainingRecord
    return TrainingRecord()


def _plot(plot, net, X, y, record, title, out):
    if not plot:
        return
    from .plot import training_view
    training_view(net, X, y, record, path=plot, title=title)
    print(f"  plot: {plot}", file=out)


def xor_demo(dtype="float64", seed=0, out=None, plot=None):
    """XOR with a 2-3-1 sigmoid network, squared error, lr 1, 5000 full-batch epochs.

    ``plot``: a path where seed 000's three panels (accuracy, decision boundary,
    loss) are drawn (needs matplotlib).
    """
    X, y = datasets.xor()
    net = Network([2, 3, 1], activation="sigmoid", output="sigmoid",
                  loss="squared_error", dtype=dtype, seed=seed)
    print("XOR: 2-3-1 sigmoid, squared error, lr 1.0, full batch, 5000 epochs", file=out)
    record = _new_record(plot)
    seconds = _train(net, X, y, 5000, 10, out, record, learning_rate=1.0)
    acc = _accuracy(net, X, y)
    print(f"  final loss {net.loss(X, y):.6f}   accuracy {acc:.0%}   "
          f"predictions {np.round(net.predict(X).ravel(), 3).tolist()}   ({seconds * 1e3:.1f} ms)",
          file=out)
    _plot(plot, net, X, y, record, "XOR: 2-3-1 sigmoid, squared error", out)
    return acc == 1.0


def disk_demo(dtype="float64", seed=0, out=None, plot=None):
    """Points inside a disk vs outside: 2-16-16-1 tanh, log loss, minibatches of 32."""
    X, y = datasets.disk(n_samples=2000, seed=seed)
    X_train, y_train, X_test, y_test = X[:1500], y[:1500], X[1500:], y[1500:]
    net = Network([2, 16, 16, 1], activation="tanh", output="sigmoid",
                  loss="log_loss", dtype=dtype, seed=seed)
    print("Disk: 2-16-16-1 tanh, log loss, lr 0.5, batches of 32, 300 epochs, "
          "1500 train / 500 test points", file=out)
    record = _new_record(plot)
    seconds = _train(net, X_train, y_train, 300, 10, out, record,
                     learning_rate=0.5, batch_size=32, shuffle=True)
    train_acc, test_acc = _accuracy(net, X_train, y_train), _accuracy(net, X_test, y_test)
    print(f"  train accuracy {train_acc:.1%}   test accuracy {test_acc:.1%}   "
          f"({seconds * 1e3:.1f} ms)", file=out)
    _plot(plot, net, X_train, y_train, record, "Disk: 2-16-16-1 tanh, log loss", out)
    return test_acc >= 0.95


DEMOS = {"xor": xor_demo, "disk": disk_demo}


def run_demo(name, dtype="float64", seed=0, out=None, plot=None):
    """Run one demo by name; returns True when it reached its expected accuracy.

    ``plot``: also draw the three-panel view of the training to this path.
    """
    ok = DEMOS[name](dtype=dtype, seed=seed, out=out, plot=plot)
    print(file=out)
    return ok
