"""fastmlp: fast, inspectable multilayer perceptrons on the CPU.

Public names: :class:`Network` (compiled kernels), :mod:`fastmlp.reference`
(the plain-NumPy twin), :func:`check_gradients`, :class:`History`,
:class:`DivergenceError`, the callback signals :class:`StopTraining` and
:data:`STOP`, and the built-in :mod:`fastmlp.datasets`.  Loaded on
first use, so that scikit-learn, matplotlib, tqdm and torch stay optional:
:class:`MLPClassifier` and :class:`MLPRegressor` (scikit-learn estimators),
:mod:`fastmlp.io` (``save`` / ``load``), :mod:`fastmlp.interop`,
:mod:`fastmlp.onnx` (``export``), :mod:`fastmlp.plot`, :mod:`fastmlp.progress`,
:mod:`fastmlp.distributed` (MPI) and :mod:`fastmlp.dask`.
"""
from . import _preload  # noqa: F401  (before _kernels: a fast import of scipy's BLAS)

try:
    from . import _kernels  # noqa: F401  (the compiled core: a clear error when it is not built)
except ImportError as exc:
    from .errors import missing_core_message
    raise ImportError(missing_core_message(__file__)) from exc
from . import datasets, reference
from .errors import STOP, DivergenceError, ModelFileError, StopTraining
from .gradcheck import GradientCheck, check_gradients
from .history import History
from ._version import __version__
from .network import Network

try:
    from ._build import BUILD as __build_info__
except ImportError:  # built by a tool that did not run setup.py's writer
    __build_info__ = "unknown"

__all__ = ["Network", "reference", "check_gradients", "GradientCheck", "History",
           "DivergenceError", "ModelFileError", "StopTraining", "STOP", "datasets",
           "__version__"]

_LAZY_MODULES = ("estimators", "interop", "plot", "progress", "io", "onnx", "distributed",
                 "dask")


def __getattr__(name):
    # scikit-learn, matplotlib and torch stay optional: what needs them loads on first use
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators
        return getattr(estimators, name)
    if name in ("save", "load"):
        from . import io
        return getattr(io, name)
    if name in _LAZY_MODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"MLPClassifier", "MLPRegressor", "save", "load", *_LAZY_MODULES})
