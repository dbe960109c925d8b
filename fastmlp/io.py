"""Save and load networks: one ``.npz`` file, a JSON header and the flat parameters.

File format (``format_version`` 1 and 2)
----------------------------------------
A zip archive as written by :func:`numpy.savez` (members stored, not
compressed) holding two arrays, and a third with an optimizer state
(version 2):

``header``
    1-D ``uint8`` array: UTF-8 JSON object with the keys

    ``format`` (``"fastmlp.Network"``), ``format_version`` (int),
    ``fastmlp_version`` (str, informative), ``layer_sizes`` (list of int),
    ``activation``, ``output``, ``loss``, ``init``, ``dtype`` (str),
    ``l2``, ``l1`` (finite floats >= 0), ``seed`` (int or null),
    ``n_params`` (int) and ``rng_state`` (the PCG64 state of the network's
    generator as numpy reports it, or null); optionally ``flat_output``
    (``true``, written only for a network made with ``flat_output=True``,
    whose ``predict`` returns shape ``(n,)``), ``dropout`` (a float in
    (0, 1), written only for a network made with ``dropout`` > 0),
    ``metadata``, a JSON object of the caller's own (see
    :func:`read_header`), nesting at most 100 levels of objects and arrays,
    and, in version 2, ``optimizer``: the optimizer
    state of the network's last ``fit`` / ``partial_fit``: an object with
    its settings ``name`` (``"sgd"``, ``"adam"``, ``"rmsprop"`` or
    ``"adamw"``), ``momentum``, ``nesterov``, ``beta1``, ``beta2``,
    ``epsilon``, ``rho``, ``weight_decay`` (as ``fit`` takes them), its
    ``step`` count (Adam's and AdamW's; 0 for the others) and
    ``samples_seen`` (the ``invscaling`` schedule's).
``params``
    1-D array of ``n_params`` finite numbers of ``dtype``: the flat
    parameter buffer (per layer: ``W`` row-major, then ``b``).
``optimizer_state``
    Version 2, when the optimizer keeps state: 1-D array of finite numbers of
    ``dtype``, the parameter layout: SGD's velocity (``momentum > 0``,
    ``n_params`` values), RMSprop's mean square (``n_params``, >= 0), or
    Adam's and AdamW's first moments then second moments
    (``2 * n_params``, the second >= 0).

:func:`save` writes version 1 (as fastmlp wrote before optimizer state,
so earlier versions read it) for a network without optimizer state (never
trained, trained by ``lbfgs``, or saved with ``optimizer=False``), version 2
otherwise; :func:`load` reads both.

Guarantees
----------
* :func:`save` is atomic: it writes a temporary file in the target's
  directory, flushes and fsyncs it, then renames it over the target. A crash
  or an error mid-save leaves the previous file (if any) untouched; on an
  error the temporary file is removed.
* :func:`load` never unpickles (``allow_pickle=False``) and never executes
  anything from the file. It reads only a regular file (a FIFO, device or
  socket is refused, never waited on) and only stored members (a compressed
  one is refused before anything is inflated, so nothing read can exceed the
  file's size). It checks the archive's members, their sizes before reading
  them, the header's keys, types and values (the optimizer's settings as
  ``fit`` checks them), the dtype and shape of ``params`` and
  ``optimizer_state`` against the header (its size is what the optimizer's
  settings and ``n_params`` imply), and that every value is finite. Anything
  wrong raises :class:`fastmlp.errors.ModelFileError` (a ``ValueError``)
  naming the file and the problem.
* :func:`load` holds one copy of the parameters: they are read in blocks
  straight into the buffer the network keeps (no initialisation, no copy).
* A loaded network predicts bit-identically to the saved one, and continues
  training with the same random stream (shuffling) the saved one would have
  used, and with its optimizer state (momentum's velocity, RMSprop's mean
  square, Adam's and AdamW's moments and step count, the samples seen):
  ``partial_fit`` with the same optimizer settings continues exactly as the
  saved network's would have (``fit`` starts a fresh optimizer state, as it
  always does).
"""
import os  # noqa: F401  (fio.os / fio.np: what _format writes with, for those who patch them)

import numpy as np  # noqa: F401

from . import _format
from ._base import BaseNetwork
from ._format import FORMAT_NAME, FORMAT_VERSION, SUPPORTED_VERSIONS  # noqa: F401
from .network import Network

__all__ = ["save", "load", "read_header", "FORMAT_NAME", "FORMAT_VERSION", "SUPPORTED_VERSIONS"]


def save(net, path, metadata=None, *, optimizer=True):
    """Write ``net`` and its optimizer state to ``path`` as one ``.npz`` file, atomically.

    The optimizer state is that of the network's last ``fit`` or
    ``partial_fit``, kept for ``partial_fit`` to continue: a network
    :func:`load` reads back and trains on with ``partial_fit`` and the same
    optimizer settings continues exactly as this one would have (``fit``
    always starts a fresh state). This is also how to resume from a
    checkpoint written by ``fit(checkpoint=...)``.

    Parameters
    ----------
    net : fastmlp.Network or fastmlp.reference.Network
    path : str or os.PathLike
        Written exactly as given: no ``.npz`` suffix is added (``.npz`` is the
        conventional name). An existing file there is replaced only once the
        new one is completely written and flushed to disk.
    metadata : dict, optional
        Anything JSON can hold (str keys; no NaN or inf), stored in the header
        and returned by :func:`read_header` (e.g. column names, class labels).
    optimizer : bool
        Write the optimizer state, if the network has one (default). It
        costs, beyond the parameters, as many values again for SGD with
        momentum and for RMSprop, twice as many for Adam and AdamW (a file
        about 3x the size). ``False`` writes the network alone (a smaller
        file for prediction, in format version 1, which older fastmlp reads);
        a network loaded from it starts a fresh optimizer state.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    TypeError
        ``net`` is not a fastmlp network, ``metadata`` is not a JSON object,
        or ``optimizer`` is not a bool.
    ValueError
        The parameters or the optimizer state are not finite (such a file
        could not be loaded).
    OSError
        The directory cannot be written; the previous file is untouched.
    """
    if not isinstance(net, BaseNetwork):
        raise TypeError(
            f"net must be a fastmlp.Network or fastmlp.reference.Network; got {type(net).__name__}")
    return _format.write(net, path, metadata=metadata, optimizer=optimizer)


def read_header(path):
    """The validated JSON header of a model file, as a dict (with the caller's
    ``metadata`` if :func:`save` was given some). The whole file is checked as
    :func:`load` checks it; no network is built."""
    return _format.read_header(path)


def load(path, cls=None):
    """Read a network written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
    cls : type, optional
        The class to build: ``fastmlp.Network`` (default) or
        ``fastmlp.reference.Network``.

    Returns
    -------
    Network
        With the saved settings and parameters; it predicts bit-identically to
        the saved network. With the file's optimizer state, if any:
        ``partial_fit`` with the same optimizer settings continues it (other
        settings, ``reset_optimizer=True`` or ``fit`` start a fresh one).
        Files of format version 1 (no optimizer state) load as before.

    Raises
    ------
    ModelFileError
        The file is not a fastmlp model, is truncated or corrupted, has an
        unsupported format version, or its contents disagree with its header.
    OSError
        The file cannot be opened (missing, a directory, no permission).
    """
    if cls is None:
        cls = Network
    if not (isinstance(cls, type) and issubclass(cls, BaseNetwork)):
        raise TypeError(f"cls must be fastmlp.Network or fastmlp.reference.Network; got {cls!r}")
    return cls.load(path)
