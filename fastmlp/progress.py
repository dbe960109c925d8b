"""A training progress bar: tqdm when it is installed, plain text otherwise.

The fit loop makes one :class:`ProgressBar` per call and reports every epoch::

    bar = ProgressBar(total_epochs)
    for epoch in range(total_epochs):
        ...                                  # train one epoch
        bar.update(epoch + 1, loss, learning_rate)
    bar.close()

``update`` is cheap enough to call every epoch of even the tiniest network: it
only compares a clock with the time of the last redraw (at most ``min_interval``
seconds apart, default 0.1 s) and returns; formatting and drawing happen only
when a redraw is due, and always for the last epoch and on ``close``.

With tqdm (``pip install fastmlp[progress]``) the bar is a tqdm bar with the loss
and learning rate in its postfix and epochs/s as its speed. Without it, the
fallback writes ``epoch 120/1000 [###-------]  12%  loss 0.012345  lr 0.1
3400 epochs/s`` lines: redrawn in place (carriage return) on a terminal, and as
separate lines, at most one per ``log_interval`` seconds (default 1 s), when the
output is a file or pipe.
"""
import math
import numbers
import sys
import time

__all__ = ["ProgressBar"]


def _have_tqdm():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt(value):
    """A short, readable number: 0.012346, 1.2e-07, 1234.5."""
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return repr(value)
    if value != 0 and (abs(value) < 1e-4 or abs(value) >= 1e6):
        return f"{value:.3e}"
    return f"{value:.6g}"


class ProgressBar:
    """Per-epoch progress of one training run.

    Parameters
    ----------
    total_epochs : int
        Epochs the run will do at most (early stopping may end it sooner).
    file : file-like, optional
        Where to draw; default ``sys.stderr``.
    use_tqdm : bool or None
        None (default) uses tqdm when it can be imported; False forces the
        plain-text fallback; True requires tqdm (ImportError without it).
    min_interval : float
        Least seconds between two redraws on a terminal (and tqdm).
    log_interval : float
        Least seconds between two lines when ``file`` is not a terminal.
    desc : str
        Label in front of the bar.

    Attributes
    ----------
    epoch, loss, rate : last values given to :meth:`update`.
    draws : int
        How many times the bar was drawn (tests use it to check throttling).
    """

    def __init__(self, total_epochs, file=None, use_tqdm=None, min_interval=0.1,
                 log_interval=1.0, desc="train"):
        if (isinstance(total_epochs, bool) or not isinstance(total_epochs, numbers.Integral)
                or total_epochs < 0):
            raise ValueError(f"total_epochs must be an integer >= 0; got {total_epochs!r}")
        self.total = int(total_epochs)
        self.file = sys.stderr if file is None else file
        if use_tqdm is None:
            use_tqdm = _have_tqdm()
        elif use_tqdm and not _have_tqdm():
            raise ImportError("use_tqdm=True needs tqdm: pip install tqdm (or fastmlp[progress])")
        self.use_tqdm = bool(use_tqdm)
        self.min_interval = float(min_interval)
        self.log_interval = float(log_interval)
        self.desc = desc
        self.epoch, self.loss, self.rate, self.extra = 0, None, None, {}
        self.draws = 0
        self.closed = False
        self._start = time.perf_counter()
        self._last_draw = -math.inf
        self._shown = 0          # epochs already given to tqdm
        try:
            self._tty = bool(self.file.isatty())
        except (AttributeError, ValueError):
            self._tty = False
        self._bar = None
        if self.use_tqdm:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.total, desc=desc, unit="epoch", file=self.file,
                             mininterval=self.min_interval, leave=True, dynamic_ncols=True)

    # ----------------------------------------------------------------- public
    def update(self, epoch, loss=None, rate=None, **metrics):
        """Record that ``epoch`` epochs are done (1-based), with the latest loss.

        Parameters
        ----------
        epoch : int
            Epochs completed so far, from 1 to ``total_epochs``.
        loss : float, optional
            The training objective of that epoch.
        rate : float, optional
            The learning rate in force (shown as ``lr``).
        **metrics : float
            More numbers to show, e.g. ``val_loss=0.1``.
        """
        self.epoch, self.loss, self.rate = int(epoch), loss, rate
        if metrics:
            self.extra = metrics
        now = time.perf_counter()
        interval = self.min_interval if (self.use_tqdm or self._tty) else self.log_interval
        if now - self._last_draw < interval and self.epoch < self.total:
            return
        self._draw(now)

    def close(self):
        """Draw the final state and release the bar (safe to call twice)."""
        if self.closed:
            return
        if self.epoch and (self.epoch, self.loss) != self._drawn:
            self._draw(time.perf_counter())
        if self._bar is not None:
            self._bar.close()
        elif self._tty and self.draws:
            self.file.write("\n")
            self.file.flush()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -------------------------------------------------------------- drawing
    def _postfix(self):
        parts = []
        if self.loss is not None:
            parts.append(("loss", _fmt(self.loss)))
        if self.rate is not None:
            parts.append(("lr", _fmt(self.rate)))
        parts.extend((k, _fmt(v)) for k, v in self.extra.items())
        return parts

    def _draw(self, now):
        if self._bar is not None:
            if self.epoch > self._shown:
                self._bar.update(self.epoch - self._shown)
                self._shown = self.epoch
            self._bar.set_postfix_str("  ".join(f"{k}={v}" for k, v in self._postfix()),
                                      refresh=False)
            self._bar.refresh()
        else:
            line = self._line(now)
            if self._tty:
                self.file.write("\r" + line)
            else:
                self.file.write(line + "\n")
            self.file.flush()
        self._last_draw = now
        self._drawn = (self.epoch, self.loss)
        self.draws += 1

    _drawn = None

    def _line(self, now):
        width = 20
        frac = self.epoch / self.total if self.total else 1.0
        frac = min(max(frac, 0.0), 1.0)
        filled = int(round(frac * width))
        elapsed = max(now - self._start, 1e-9)
        speed = self.epoch / elapsed
        digits = len(str(self.total))
        head = f"{self.desc} epoch {self.epoch:{digits}d}/{self.total} " \
               f"[{'#' * filled}{'-' * (width - filled)}] {frac:4.0%}"
        tail = "  ".join(f"{k} {v}" for k, v in self._postfix())
        return f"{head}  {tail}  {speed:.4g} epochs/s" if tail else f"{head}  {speed:.4g} epochs/s"
