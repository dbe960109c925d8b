"""Pictures of training: learning curves, decision boundaries, seed 000's three panels.

Needs matplotlib (``pip install fastmlp[plot]``), imported only when a function
here is called. Figures are made with matplotlib's object API on the Agg
canvas: nothing here touches pyplot's global state or needs a display, so it
works the same on a headless server, in a script and in a notebook (where a
returned :class:`~matplotlib.figure.Figure` shows itself).

Functions
---------
learning_curves(history)
    Loss (train and validation) and accuracy (validation, and train when
    recorded) per epoch.
decision_boundary(model, X, y)
    The predicted class over the plane of a 2-D classifier, with the data.
training_view(model, X, y, record)
    Seed 000's three panels: accuracy, decision boundary, loss.
record_training(net, X, y, epochs, ...)
    Train a :class:`fastmlp.Network` and record loss, accuracy and weight
    snapshots per epoch (the input of the two functions below).
animate_training(net, X, y, epochs, path, ...)
    An animated GIF of the three panels while training (Pillow writer).

Every function that draws takes an optional ``path``: when given, the figure is
also saved there (format from the suffix: .png, .svg, .pdf ...).
"""
from dataclasses import dataclass, field

import numpy as np

__all__ = ["learning_curves", "decision_boundary", "training_view", "record_training",
           "animate_training", "TrainingRecord"]

_CMAP = "RdBu"


def _mpl():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("fastmlp.plot needs matplotlib: pip install matplotlib "
                          "(or pip install fastmlp[plot])") from err
    return Figure, FigureCanvasAgg


def _figure(ncols, width=5.0, height=4.0):
    Figure, Canvas = _mpl()
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    Canvas(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig, path, dpi=100):
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


# ------------------------------------------------------------ learning curves
def _curves(history):
    """(loss, val_loss, accuracy, val_accuracy) lists from what fit produced."""
    if isinstance(history, dict):
        get = history.get
    else:
        def get(name, default=None):
            return getattr(history, name, default)
    loss = get("loss", None)
    if loss is None or np.ndim(loss) == 0:           # an estimator: loss_ is a float
        loss = get("loss_curve_", None)
    if loss is None:
        raise TypeError("learning_curves needs a History, a fitted fastmlp or scikit-learn "
                        "MLP estimator, a TrainingRecord or a dict with 'loss'; got "
                        f"{type(history).__name__}")
    val_loss = get("val_loss", None) or []
    accuracy = get("accuracy", None) or []
    val_accuracy = get("val_accuracy", None) or get("validation_scores_", None) or []
    best = get("best_epoch", None)
    best = int(best) if isinstance(best, (int, np.integer)) and 1 <= best <= len(loss) else None
    return list(loss), list(val_loss), list(accuracy), list(val_accuracy), best


def _mark_best(ax, best, curve):
    """A dashed line at the best epoch (the weights early stopping kept), with
    a dot on ``curve`` (the monitored one) there."""
    ax.axvline(best, color="0.35", linestyle="--", linewidth=1, label=f"best epoch {best}")
    if len(curve) >= best and np.isfinite(curve[best - 1]):
        ax.plot([best], [curve[best - 1]], "o", color="0.2", markersize=6, zorder=4)


def learning_curves(history, *, path=None, title=None, log_loss_axis=None):
    """Loss and accuracy per epoch, training and validation.

    Parameters
    ----------
    history : History, TrainingRecord, fitted MLP estimator, or dict
        ``fit``'s History (``loss``, ``val_loss``, ``val_accuracy``); a
        :class:`TrainingRecord` (adds training accuracy); a fitted
        ``MLPClassifier`` / ``MLPRegressor`` (``loss_curve_`` and
        ``validation_scores_``); or a dict with those keys. A History's
        ``best_epoch`` (early stopping's, or the best validation loss's) is
        marked with a dashed line and a dot on the monitored curve.
    path : str or path-like, optional
        Also save the figure there.
    title : str, optional
    log_loss_axis : bool or None
        Logarithmic loss axis; None chooses it when the loss spans more than
        two decades.

    Returns
    -------
    matplotlib.figure.Figure
        One panel (loss) or two (loss, accuracy) when there is an accuracy.
    """
    loss, val_loss, acc, val_acc, best = _curves(history)
    if not loss:
        raise ValueError("the history has no epochs to plot")
    fig, axes = _figure(2 if (acc or val_acc) else 1)
    ax = axes[0]
    epochs = np.arange(1, len(loss) + 1)
    ax.plot(epochs, loss, label="train", color="C0")
    if val_loss:
        ax.plot(np.arange(1, len(val_loss) + 1), val_loss, label="validation", color="C1")
    finite = np.asarray([v for v in loss + val_loss if np.isfinite(v) and v > 0])
    if log_loss_axis is None:
        log_loss_axis = finite.size > 0 and finite.max() / finite.min() > 100
    if log_loss_axis:
        ax.set_yscale("log")
    if best is not None:
        _mark_best(ax, best, val_loss or loss)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if acc or val_acc:
        ax = axes[1]
        if acc:
            ax.plot(np.arange(1, len(acc) + 1), acc, label="train", color="C0")
        if val_acc:
            ax.plot(np.arange(1, len(val_acc) + 1), val_acc, label="validation", color="C1")
        if best is not None:
            _mark_best(ax, best, val_acc or acc)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_title("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------- decision boundary
_MARKERS = "os^Dv<>pP*"


def _scores(model, X):
    """``(kind, scores)`` on the points: ``("binary", p)`` the probability (or
    score) of class 1, or ``("classes", P)`` one column per class."""
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        P = np.asarray(model.predict_proba(X))
        return ("binary", P[:, 1]) if P.shape[1] == 2 else ("classes", P)
    if hasattr(model, "layer_sizes") and hasattr(model, "predict"):      # a Network
        P = np.asarray(model.predict(X)).reshape(len(X), -1)
        return ("binary", P[:, 0]) if P.shape[1] == 1 else ("classes", P)
    if callable(model):
        P = np.asarray(model(X))
        if P.ndim == 2 and P.shape[1] > 1:
            return "classes", P
        return "binary", P.reshape(-1)
    raise TypeError("decision_boundary needs a fastmlp Network, a classifier with "
                    f"predict_proba, or a callable; got {type(model).__name__}")


def _labels(y):
    y = np.asarray(y)
    if y.ndim == 2:
        return y[:, 0] if y.shape[1] == 1 else y.argmax(axis=1)
    return y


def _class_colours(k):
    """``k`` class colours (RGB): RdBu's ends for two, tab10 (tab20) beyond."""
    import matplotlib
    if k <= 2:
        return np.array([matplotlib.colormaps[_CMAP](v)[:3] for v in (0.1, 0.9)])
    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(k)])


def _shade_classes(ax, gx, gy, P, colours):
    """Each grid point in the colours of the classes weighted by their
    probabilities (smooth, not an argmax's blocks), lightened towards white,
    and a line where the most probable class changes."""
    k = P.shape[1]
    W = np.clip(P, 0, None)
    W = W / np.where(W.sum(axis=1, keepdims=True) > 0, W.sum(axis=1, keepdims=True), 1)
    rgb = 0.45 + 0.55 * (W @ colours)                     # lighter: the points stand out
    image = ax.imshow(rgb.reshape(gx.shape + (3,)), origin="lower", aspect="auto",
                      interpolation="bilinear",
                      extent=(gx[0, 0], gx[0, -1], gy[0, 0], gy[-1, 0]))
    artists = [image]
    for c in range(k):          # class c's border: P_c equals the largest other probability
        margin = (P[:, c] - np.delete(P, c, axis=1).max(axis=1)).reshape(gx.shape)
        if margin.min() < 0 < margin.max():
            artists.append(ax.contour(gx, gy, margin, levels=[0], colors="k", linewidths=1.2))
    return artists


def _draw_points(ax, X, labels, classes, colours, names):
    """The points of each class in its colour and marker, with dark edges (they
    stay visible on their own class's shading), one legend entry per class."""
    few = len(X) <= 50
    size = 120 if few else (30 if len(X) <= 500 else 14)
    artists = []
    for i, c in enumerate(classes):
        rows = labels == c
        artists.append(ax.scatter(X[rows, 0], X[rows, 1], color=colours[i % len(colours)],
                                  marker=_MARKERS[i % len(_MARKERS)], s=size,
                                  edgecolors="k", linewidths=1.2 if few else 0.7,
                                  label=f"class {names[i]}", zorder=3))
    return artists


def _name(c):
    c = c.item() if hasattr(c, "item") else c
    return int(c) if isinstance(c, float) and c.is_integer() else c


def _draw_boundary(ax, model, X, y, resolution=200, padding=0.15):
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary needs 2-D points, X of shape (n, 2); got shape {X.shape}")
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - padding * span, hi + padding * span
    xs = np.linspace(lo[0], hi[0], resolution)
    ys = np.linspace(lo[1], hi[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.c_[gx.ravel(), gy.ravel()]
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, np.dtype):
        grid = grid.astype(dtype)
    kind, scores = _scores(model, grid)
    labels = _labels(y)
    names = list(getattr(model, "classes_", []))
    if kind == "binary":
        Z = scores.reshape(gx.shape).astype(float)
        k = 2
        artists = [ax.contourf(gx, gy, Z, levels=np.linspace(0, 1, 21), cmap=_CMAP,
                               alpha=0.6, vmin=0, vmax=1)]
        if Z.min() < 0.5 < Z.max():
            artists.append(ax.contour(gx, gy, Z, levels=[0.5], colors="k", linewidths=1.5))
    else:
        k = scores.shape[1]
        artists = _shade_classes(ax, gx, gy, scores.astype(float), _class_colours(k))
    # the classes of the points: 0..k-1 as the model numbers them (y as indices)
    classes = np.unique(labels) if labels.dtype.kind not in "iuf" else \
        np.union1d(np.arange(k), np.unique(labels))
    if len(names) != len(classes):
        names = [_name(c) for c in classes]
    artists += _draw_points(ax, X, labels, classes, _class_colours(max(k, len(classes))), names)
    legend = ax.legend(loc="upper right", fontsize="small", framealpha=0.8,
                       title="shade: P(class 1)" if kind == "binary" else None)
    artists.append(legend)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return artists


def decision_boundary(model, X, y, *, path=None, title="decision boundary", resolution=200,
                      padding=0.15):
    """The predicted class over the plane, with the data points on it.

    Parameters
    ----------
    model : fastmlp.Network, fitted classifier with predict_proba, or callable
        For one sigmoid output (or a binary classifier) the probability of
        class 1 is shaded, with its 0.5 contour; otherwise every point of the
        plane takes the class colours weighted by their probabilities, with a
        line where the most probable class changes. The points are drawn in
        their class's colour and marker, with dark edges, and a legend names
        the classes.
    X : array of shape (n, 2)
    y : array of shape (n,) (or one-hot (n, k))
        Colours of the points.
    path : optional, save there too
    resolution : int
        Grid points per axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax,) = _figure(1, 5.5, 4.5)
    _draw_boundary(ax, model, X, y, resolution, padding)
    if title:
        ax.set_title(title)
    return _save(fig, path)


# ------------------------------------------------------ recording training
@dataclass
class TrainingRecord:
    """Per-epoch record of :func:`record_training`.

    Attributes
    ----------
    epoch : list of int
        The epochs recorded, numbered from 1 (as everywhere in fastmlp).
    loss, accuracy : list of float
        Training objective (from fit) and accuracy on (X, y) after each epoch.
    snapshots : list of (int, ndarray)
        ``(epoch, params copy)`` every ``every`` epochs (and the last).
    history : History or None
        What ``fit`` returned.
    """

    epoch: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)
    history: object = None

    def __repr__(self):
        """One line: epochs, first and last loss and accuracy, snapshots."""
        parts = [f"{len(self.epoch)} epochs"]
        for name, values in (("loss", self.loss), ("accuracy", self.accuracy)):
            if values:
                parts.append(f"{name} {values[0]:.4g} -> {values[-1]:.4g}")
        parts.append(f"{len(self.snapshots)} snapshots")
        return "TrainingRecord(" + ", ".join(parts) + ")"


def _accuracy(net, X, y):
    P = net.predict(X)
    labels = _labels(y)
    pred = (P[:, 0] > 0.5) if P.shape[1] == 1 else P.argmax(axis=1)
    if np.asarray(y).ndim == 2 and np.asarray(y).shape[1] > 1 and P.shape[1] == 1:
        labels = np.asarray(y)[:, 0]
    return float(np.mean(pred == labels))


def record_training(net, X, y, epochs, *, snapshots=30, **fit_kwargs):
    """Train ``net`` with ``fit`` and record loss, accuracy and weights per epoch.

    Parameters
    ----------
    net : fastmlp.Network (or the reference twin)
    X, y : training data (accuracy is measured on it after every epoch)
    epochs : int
    snapshots : int
        About how many copies of the weights to keep, evenly spaced (the
        frames of :func:`animate_training`); the first epoch and the last are
        always among them.
    **fit_kwargs
        Passed to ``net.fit`` (learning_rate, batch_size, optimizer ...). A
        ``callbacks`` entry is kept and run after the recorder.

    Returns
    -------
    TrainingRecord
    """
    every = max(1, int(epochs) // max(1, int(snapshots)))
    rec = TrainingRecord()
    rec.snapshots.append((0, net.params.copy()))
    user_callbacks = tuple(fit_kwargs.pop("callbacks", ()) or ())

    def recorder(n, e, logs):                     # e: the epoch, numbered from 1
        rec.epoch.append(e)
        rec.loss.append(float(logs["loss"]))
        rec.accuracy.append(_accuracy(n, X, y))
        if e % every == 0 or e == epochs:
            rec.snapshots.append((e, n.params.copy()))

    rec.history = net.fit(X, y, epochs=epochs, callbacks=(recorder,) + user_callbacks,
                          **fit_kwargs)
    if rec.epoch and rec.snapshots[-1][0] != rec.epoch[-1]:
        rec.snapshots.append((rec.epoch[-1], net.params.copy()))
    return rec


# -------------------------------------------------------- seed 000's panels
class _Panels:
    """Seed 000's three axes, drawn once and then updated in place (fast frames)."""

    def __init__(self, axes, X, y, record, resolution):
        self.ax_acc, self.ax_db, self.ax_loss = axes
        self.X, self.y, self.record, self.resolution = X, y, record, resolution
        total = record.epoch[-1] if record.epoch else 1
        self.acc_line, = self.ax_acc.plot([], [], color="C2")
        self.ax_acc.set_xlim(0, total)
        self.ax_acc.set_ylim(-0.02, 1.02)
        self.ax_acc.set_xlabel("epoch")
        self.ax_acc.grid(True, alpha=0.3)
        self.loss_line, = self.ax_loss.plot([], [], color="C3")
        self.ax_loss.set_xlim(0, total)
        finite = [v for v in record.loss if np.isfinite(v)]
        top = max(finite) if finite else 1.0
        self.ax_loss.set_ylim(0, top * 1.05 if top > 0 else 1.0)
        self.ax_loss.set_xlabel("epoch")
        self.ax_loss.grid(True, alpha=0.3)
        self.boundary = []

    def update(self, model, upto=None):
        rec = self.record
        n = len(rec.epoch) if upto is None else upto
        ep = rec.epoch[:n]
        self.acc_line.set_data(ep, rec.accuracy[:n])
        self.loss_line.set_data(ep, rec.loss[:n])
        self.ax_acc.set_title("accuracy" + (f" {rec.accuracy[n - 1]:.1%}" if n else ""))
        self.ax_loss.set_title("loss" + (f" {rec.loss[n - 1]:.4g}" if n else ""))
        for artist in self.boundary:
            artist.remove()
        self.boundary = _draw_boundary(self.ax_db, model, self.X, self.y, self.resolution)
        self.ax_db.set_title("decision boundary" + (f" (epoch {ep[-1]})" if n else " (start)"))


def training_view(model, X, y, record, *, path=None, title=None, resolution=150):
    """Seed 000's three panels: accuracy, decision boundary and loss.

    Parameters
    ----------
    model : fastmlp.Network (or a classifier, see :func:`decision_boundary`)
        Its current weights draw the boundary.
    X, y : the 2-D training data
    record : TrainingRecord, or a dict with ``loss`` and ``accuracy`` lists
        (``epoch`` optional) as from :func:`record_training`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(record, dict):
        loss = list(record["loss"])
        record = TrainingRecord(epoch=list(record.get("epoch", range(1, len(loss) + 1))),
                                loss=loss, accuracy=list(record["accuracy"]))
    fig, axes = _figure(3, 4.5, 4.0)
    _Panels(axes, X, y, record, resolution).update(model)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def animate_training(net, X, y, epochs, path, *, frames=30, fps=6, dpi=72, title=None,
                     resolution=80, **fit_kwargs):
    """Train ``net`` and write an animated GIF of the three panels as it learns.

    Parameters
    ----------
    net : fastmlp.Network
        Trained in place (ends with the final weights).
    X, y : 2-D training data
    epochs : int
    path : str or path-like
        The ``.gif`` to write (matplotlib's Pillow writer; needs Pillow).
    frames : int
        About how many frames (evenly spaced epochs).
    fps : int
        Frames per second.
    **fit_kwargs
        Passed to ``net.fit``.

    Returns
    -------
    TrainingRecord
        What was recorded (the GIF's frames are ``record.snapshots``).
    """
    _mpl()
    try:
        from matplotlib.animation import PillowWriter
        import PIL  # noqa: F401
    except ImportError as err:
        raise ImportError("animate_training needs Pillow: pip install pillow") from err
    record = record_training(net, X, y, epochs, snapshots=frames, **fit_kwargs)
    final = net.params.copy()
    fig, axes = _figure(3, 4.5, 4.0)
    if title:
        fig.suptitle(title)
    panels = _Panels(axes, X, y, record, resolution)
    writer = PillowWriter(fps=fps)
    try:
        net.params[...] = record.snapshots[-1][1]
        panels.update(net)
        fig.canvas.draw()                 # lay out once, on the final frame ...
        fig.set_layout_engine("none")     # ... then keep it: frames only redraw
        with writer.saving(fig, str(path), dpi):
            for epoch, params in record.snapshots:
                net.params[...] = params
                panels.update(net, upto=epoch)
                writer.grab_frame()
    finally:
        net.params[...] = final
    return record
