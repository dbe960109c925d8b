"""fastmlp: fast, inspectable multilayer perceptrons on the CPU.

Public names: :class:`Network` (compiled kernels), :mod:`fastmlp.reference`
(the plain-NumPy twin), :func:`check_gradients`, :class:`History`,
:class:`DivergenceError` and the built-in :mod:`fastmlp.datasets`.
"""
from . import datasets, reference
from .errors import DivergenceError
from .gradcheck import GradientCheck, check_gradients
from .history import History
from .network import Network

__version__ = "0.1.0"

try:
    from ._build import BUILD as __build_info__
except ImportError:  # built by a tool that did not run setup.py's writer
    __build_info__ = "unknown"

__all__ = ["Network", "reference", "check_gradients", "GradientCheck", "History",
           "DivergenceError", "datasets", "__version__"]
