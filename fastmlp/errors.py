"""Exceptions raised by fastmlp, and the signals callbacks stop training with."""


class StopTraining(Exception):
    """Raise it in a ``fit`` callback to end training after the current epoch.

    The epoch's results are kept (``History.stopped_early`` is True); the
    callbacks after the raising one are not run for that epoch.
    """


class _Stop:
    """The type of :data:`STOP` (one instance)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "fastmlp.STOP"

    def __reduce__(self):
        return (_Stop, ())


#: Return it from a ``fit`` callback to end training after the current epoch
#: (any other return value, a path from ``save`` say, is ignored).
STOP = _Stop()


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss.

    The update that met the non-finite loss is never applied, so the network
    keeps the weights it had just before it.

    Attributes
    ----------
    epoch : int
        The epoch (numbered from 1) in which the loss stopped being finite:
        ``epoch - 1`` epochs were completed.
    history : History
        The losses of the epochs completed before the divergence.
    """

    def __init__(self, message, epoch, history):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


class ModelFileError(ValueError):
    """A model file cannot be loaded: not a fastmlp file, truncated, corrupted,
    of an unsupported format version, or tampered with (header and arrays
    disagree, unexpected arrays, wrong dtypes, non-finite values, pickled
    objects).

    The message names the file and what is wrong. Files that cannot be opened
    at all (missing, a directory, no permission) raise the usual ``OSError``
    instead.

    Attributes
    ----------
    path : str
        The file that was being loaded.
    """

    def __init__(self, path, problem):
        super().__init__(f"cannot load a fastmlp model from {str(path)!r}: {problem}")
        self.path = str(path)
        self.problem = problem


def missing_core_message(init_file):
    """The one-line message of the ImportError raised when the compiled core
    (``fastmlp._kernels``) cannot be imported from the package at ``init_file``."""
    import os
    here = os.path.dirname(os.path.abspath(init_file))
    return (f"fastmlp's compiled core (_kernels) is not built in {here}: if that is a "
            f"source checkout (running Python from its root imports it instead of the "
            f"installed package), run Python from another directory or build in place "
            f"with `python setup.py build_ext --inplace`; else reinstall with "
            f"`pip install --force-reinstall fastmlp`")
