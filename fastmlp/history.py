"""Training history returned by ``fit``.

Epochs are numbered from 1 everywhere in fastmlp: epoch ``N`` is the N-th
pass over the data of a ``fit`` call, its loss is ``history.loss[N - 1]``,
callbacks get ``N`` after it, ``best_epoch`` and ``DivergenceError.epoch`` are
such numbers, and the progress bar and plots show them.
"""
import html
import math


def _fmt(value):
    """A short number for a repr: 0.002333, 1.2e-07."""
    return "-" if value is None else f"{value:.4g}"


def _best(name, values):
    """(value, epoch) of the best finite value (the largest accuracy, the
    smallest loss), or (None, None)."""
    sign = -1 if name.endswith("accuracy") else 1
    finite = [(sign * v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return None, None
    value, index = min(finite)
    return sign * value, index + 1


class History:
    """Per-epoch record of one call to ``fit`` (or ``partial_fit``).

    Attributes
    ----------
    loss : list of float
        Training objective of every epoch (data loss + penalties). For
        full-batch training it is the objective at the start of the epoch,
        before its update; for minibatches it is the weighted mean over the
        epoch's batches of each batch's objective measured before that
        batch's update; for ``optimizer='lbfgs'`` one entry per L-BFGS
        iteration, the objective at its end.
    val_loss, val_accuracy : list of float
        Objective and accuracy on the validation data after each epoch (empty
        without validation data; accuracy only for sigmoid/softmax outputs;
        NaN for an epoch interrupted by Ctrl-C while its validation was scored).
    learning_rate : list of float
        Step size used in each epoch (NaN for lbfgs, which has none).
    epoch_seconds : list of float
        Wall time of each epoch (epochs run together in one kernel call share
        that call's time evenly).
    seconds : float
        Wall time of the whole call.
    best_epoch : int or None
        Epoch (numbered from 1: its loss is ``loss[best_epoch - 1]``) whose
        weights early stopping kept; None without early stopping.
    stopped_early : bool
        Whether early stopping or a callback ended training.
    steps : dict
        Batches each training step of the compiled kernels ran (see
        :meth:`fastmlp.Network.plan`; "narrow-epochs" counts epochs); empty for
        the reference network.
    solo_steps : int
        Of those, the steps run on one thread because one thread was measured
        faster than the thread pool during the fit (a core busy with another
        process); the results are the same either way.
    fused_updates : int
        Of those, the steps whose optimizer update (momentum, Nesterov, Adam)
        ran inside the weight-gradient products, each layer's gradient
        updated in bands while in cache; the others (clipping, an L1 term,
        steps other than "layers", batches with more activations than the
        network has parameters, or a step the update guard's bounds could
        not prove finite in advance) read the whole gradient in a separate
        pass.
    optimizer_result : scipy.optimize.OptimizeResult or None
        For ``optimizer='lbfgs'``: scipy's result without its arrays
        (``success``, ``status``, ``message``, ``nit``, ``nfev``, ``fun``);
        None otherwise.
    """

    _FIELDS = ("loss", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds",
               "seconds", "best_epoch", "stopped_early")

    def __init__(self, loss=None, val_loss=None, val_accuracy=None, learning_rate=None,
                 epoch_seconds=None, seconds=0.0, best_epoch=None, stopped_early=False):
        as_list = (lambda values: [] if values is None else list(values))
        self._loss = as_list(loss)
        self._learning_rate = as_list(learning_rate)
        self._epoch_seconds = as_list(epoch_seconds)
        self._pending = []
        self.val_loss = as_list(val_loss)
        self.val_accuracy = as_list(val_accuracy)
        self.seconds = seconds
        self.best_epoch = best_epoch
        self.stopped_early = stopped_early
        self._step_names = ()
        self._step_counts = None
        self.optimizer_result = None

    def _count_steps(self, names, counts):
        """The training steps' names and the array the kernels count them in."""
        self._step_names = tuple(names)
        self._step_counts = counts

    @property
    def steps(self):
        if self._step_counts is None:
            return {}
        return dict(zip(self._step_names, (int(c) for c in self._step_counts)))

    @property
    def solo_steps(self):
        if self._step_counts is None:
            return 0
        return int(self._step_counts[len(self._step_names)])

    @property
    def fused_updates(self):
        if self._step_counts is None or len(self._step_counts) < len(self._step_names) + 2:
            return 0
        return int(self._step_counts[len(self._step_names) + 1])

    def _record(self, losses, learning_rate, seconds_each):
        """Epochs run by one kernel call: ``losses`` (a 1-D array) is kept as
        it is until a list is read (5000 Python floats cost ~0.1 ms a fit)."""
        if len(losses):
            self._pending.append((losses, learning_rate, seconds_each))

    def _flush(self):
        for losses, lr, sec in self._pending:
            self._loss.extend(losses.tolist())
            self._learning_rate.extend([lr] * len(losses))
            self._epoch_seconds.extend([sec] * len(losses))
        self._pending.clear()

    def _list(name):
        attr = "_" + name

        def get(self):
            self._flush()
            return getattr(self, attr)

        def set(self, value):
            self._flush()
            setattr(self, attr, value)
        return property(get, set)

    loss = _list("loss")
    learning_rate = _list("learning_rate")
    epoch_seconds = _list("epoch_seconds")
    del _list

    @property
    def epochs(self):
        """Number of epochs recorded."""
        return len(self._loss) + sum(len(p[0]) for p in self._pending)

    def __len__(self):
        return self.epochs

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    def _curves(self):
        """[(name, values)] of the recorded per-epoch scores."""
        return [(name, values) for name, values in
                (("loss", self.loss), ("val_loss", self.val_loss),
                 ("val_accuracy", self.val_accuracy)) if values]

    def _ending(self):
        """How training ended, or '' when it ran every epoch."""
        if self.best_epoch is not None:
            return f"stopped early, kept epoch {self.best_epoch}"
        return "stopped early" if self.stopped_early else ""

    def __repr__(self):
        """One line: epochs, first / last / best of each score, time."""
        parts = [f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"]
        for name, values in self._curves():
            best, at = _best(name, values)
            parts.append(f"{name} {_fmt(values[0])} -> {_fmt(values[-1])} "
                         f"(best {_fmt(best)} at epoch {at})")
        if self._ending():
            parts.append(self._ending())
        parts.append(f"{self.seconds:.3g} s")
        return "History(" + ", ".join(parts) + ")"

    def _repr_html_(self):
        """A table of each score's first, last and best epoch, for notebooks."""
        rows = []
        for name, values in self._curves():
            best, at = _best(name, values)
            rows.append(f"<tr><td>{name}</td><td>{_fmt(values[0])}</td><td>{_fmt(values[-1])}"
                        f"</td><td>{_fmt(best)}</td><td>{at}</td><td>{_sparkline(values)}</td></tr>")
        caption = f"History: {self.epochs} epochs in {self.seconds:.3g} s"
        if self._ending():
            caption += f", {self._ending()}"
        head = ("<tr><th></th><th>first</th><th>last</th><th>best</th><th>at epoch</th>"
                "<th></th></tr>")
        return (f"<table><caption>{html.escape(caption)}</caption>{head}{''.join(rows)}"
                "</table>")

    def __getstate__(self):
        self._flush()
        return self.__dict__.copy()

    def __setstate__(self, state):
        state = dict(state)
        for name in ("loss", "learning_rate", "epoch_seconds"):   # pickles of 0.1.0
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("_pending", [])
        state.setdefault("_step_names", ())
        state.setdefault("_step_counts", None)
        state.setdefault("optimizer_result", None)
        self.__dict__.update(state)


def _sparkline(values, width=120, height=20, points=200):
    """An inline SVG line of ``values`` (at most ``points`` of them, evenly picked)."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return ""
    step = max(1, len(finite) // points)
    picked = finite[::step]
    lo, hi = min(picked), max(picked)
    span = (hi - lo) or 1.0
    xy = " ".join(f"{i * width / (len(picked) - 1):.1f},{height - (v - lo) / span * height:.1f}"
                  for i, v in enumerate(picked))
    return (f'<svg width="{width}" height="{height}"><polyline points="{xy}" fill="none" '
            'stroke="currentColor" stroke-width="1"/></svg>')
