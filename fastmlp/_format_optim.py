"""The optimizer state in a model file (``format_version`` 2).

The header's ``optimizer`` object holds the settings of the network's
optimizer state (as ``OptimizerState.settings()`` gives them), its step count
and the samples seen; the archive's ``optimizer_state`` array its buffer, when
the optimizer keeps one. This module builds them from a network, checks them
when a file is read, and gives a loaded network its optimizer back; reading
the arrays themselves is :mod:`fastmlp._format`'s.
"""
import numpy as np

from . import _params
from . import _validation as v
from ._training import OptimizerState, state_size
from .errors import ModelFileError

MEMBER = "optimizer_state"
SETTINGS = ("name", "momentum", "nesterov", "beta1", "beta2", "epsilon", "rho", "weight_decay")
KEYS = frozenset(SETTINGS + ("step", "samples_seen"))
_MAX_COUNT = int(np.iinfo(np.intp).max)        # the step count is an intp


def entry_for(net):
    """``(entry, state)``: the header's ``optimizer`` object for ``net`` and a
    copy of its state buffer (None when it keeps none); ``(None, None)`` for
    a network without optimizer state (never trained, or trained by lbfgs).
    Raises ValueError for a state that could not be loaded back."""
    opt = getattr(net, "_optimizer", None)
    if opt is None:
        return None, None
    name, momentum, nesterov, beta1, beta2, epsilon, rho, weight_decay = opt.settings()
    entry = {"name": str(name), "momentum": float(momentum), "nesterov": bool(nesterov),
             "beta1": float(beta1), "beta2": float(beta2), "epsilon": float(epsilon),
             "rho": float(rho), "weight_decay": float(weight_decay),
             "step": int(opt.step[0]), "samples_seen": int(net._samples_seen)}
    n = state_size(name, momentum, net.n_params)
    if n == 0:
        return entry, None
    _params.check_savable(opt.state, n, net.dtype, "the optimizer state",
                          f" (optimizer {name!r})")
    return entry, np.ascontiguousarray(opt.state).copy()   # a snapshot: no torn read


def check_entry(path, entry, n_params):
    """Validate a header's ``optimizer`` object; returns the values its
    ``optimizer_state`` array must hold (0: the file must have none)."""
    def bad(what):
        raise ModelFileError(path, f"header optimizer {what}")

    if not isinstance(entry, dict):
        bad(f"must be a JSON object; got {entry!r}")
    keys = set(entry)
    if keys != KEYS:
        what = []
        if KEYS - keys:
            what.append(f"missing keys {sorted(KEYS - keys)}")
        if keys - KEYS:
            what.append(f"unexpected keys {sorted(keys - KEYS)}")
        bad(f"has {' and '.join(what)}")
    if entry["name"] not in v.OPTIMIZERS:
        bad(f"name must be one of {sorted(v.OPTIMIZERS)}; got {entry['name']!r}")
    for key in SETTINGS[1:]:
        ok = isinstance(entry[key], bool) if key == "nesterov" else v.is_real(entry[key])
        if not ok:
            bad(f"{key} must be {'true or false' if key == 'nesterov' else 'a number'}; "
                f"got {entry[key]!r}")
    try:           # the checks fit makes of its optimizer arguments
        settings = v.check_optimizer(*(entry[k] for k in SETTINGS))
    except (TypeError, ValueError) as exc:
        bad(f"settings are not valid: {exc}")
    for key in ("step", "samples_seen"):
        x = entry[key]
        if not (isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= _MAX_COUNT):
            bad(f"{key} must be an integer in [0, {_MAX_COUNT}]; got {x!r}")
    if entry["step"] and entry["name"] not in ("adam", "adamw"):
        bad(f"step is {entry['step']} but optimizer {entry['name']!r} counts no steps "
            "(only adam and adamw do)")
    return state_size(settings[0], settings[1], n_params)


def check_state(path, entry, state, n_params):
    """The second moments (Adam's, AdamW's) and mean squares (RMSprop's)
    in ``state`` (finite, checked by the caller) are means of squares: >= 0."""
    name = entry["name"]
    squares = (state[n_params:] if name in ("adam", "adamw") else
               state if name == "rmsprop" else None)
    if squares is not None:
        negative = int(np.count_nonzero(squares < 0))
        if negative:
            what = "second moment" if name != "rmsprop" else "mean square"
            raise ModelFileError(path, f"{MEMBER!r} holds {negative} negative values in "
                                       f"{name}'s {what} (a mean of squares)")


def restore(net, entry, state):
    """Give a loaded ``net`` the optimizer state of a checked ``entry`` and
    its ``state`` array (None when the optimizer keeps none)."""
    settings = v.check_optimizer(*(entry[k] for k in SETTINGS))       # normalised
    opt = OptimizerState(*settings, net.n_params, net.dtype)
    if state is not None:
        opt.state = state
    opt.step[0] = entry["step"]
    net._optimizer = opt
    net._samples_seen = entry["samples_seen"]
