"""How the ranks of a distributed fit agree, so that a fault never hangs them.

Every rank checks its own arguments, then all ranks exchange one message
(``allgather``) before the first training collective: the error each rank
met (or None) and the settings each rank was given.  If any rank failed, or
the ranks were given different settings, every rank raises the same error,
naming the rank.  During training, each step's reduction carries two
counters (ranks interrupted by Ctrl-C, ranks that met an exception), so that
all ranks leave the loop after the same step; see :func:`raise_for_status`.
"""
import signal
import threading

import numpy as np


class RankError(RuntimeError):
    """Another rank of a distributed fit failed; this rank stopped with it.

    Attributes
    ----------
    rank : int
        The first rank that failed.
    kind : str
        The name of the exception it raised (``"ValueError"``, ...).
    """

    def __init__(self, message, rank, kind):
        super().__init__(message)
        self.rank = rank
        self.kind = kind


# Exception types raised under their own name on every rank when one rank's
# arguments are bad; anything else is a RankError there (the same on every rank).
_SHARED_KINDS = {"ValueError": ValueError, "TypeError": TypeError}


def _describe(exc):
    return None if exc is None else (type(exc).__name__, str(exc))


def agree_to_start(comm, error, settings, facts):
    """The one exchange before training: errors, settings, per-rank facts.

    Parameters
    ----------
    comm : mpi4py communicator
    error : Exception or None
        What this rank's argument checks raised.
    settings : dict
        Every setting that must be the same on all ranks (name -> value).
    facts : tuple
        Per-rank numbers the fit needs from every rank (rows, weight sums).

    Returns
    -------
    list
        ``facts`` of every rank, by rank.

    Raises
    ------
    ValueError, TypeError
        On every rank, with the same message, when a rank's arguments were
        bad (the message names the rank; on that rank the original error is
        the cause) or the ranks' settings differ.
    RankError
        When a rank failed with another kind of exception (a RuntimeError).
    """
    gathered = comm.allgather((_describe(error), settings, facts))
    for rank, (described, _, _) in enumerate(gathered):
        if described is not None:
            kind, message = described
            text = f"rank {rank} of {comm.size}: {message}"
            exc = (_SHARED_KINDS[kind](text) if kind in _SHARED_KINDS
                   else RankError(f"{text} ({kind})", rank, kind))
            raise exc from (error if rank == comm.rank else None)
    reference = gathered[0][1]
    for rank, (_, theirs, _) in enumerate(gathered[1:], start=1):
        for name in reference:
            if theirs.get(name) != reference[name]:
                raise ValueError(
                    f"every rank must call fit with the same {name}: rank 0 has "
                    f"{reference[name]}, rank {rank} has {theirs.get(name)}")
    return [facts for _, _, facts in gathered]


def raise_for_status(comm, interrupted, failed, error):
    """After a reduction: leave together if any rank was interrupted or failed.

    ``interrupted`` and ``failed`` are the reduced counts of ranks; ``error``
    is this rank's own exception (or None).  A failure outranks Ctrl-C.  The
    failing ranks re-raise their exception; the others raise
    :class:`RankError` naming the first failing rank and its message.
    """
    if failed:
        gathered = comm.allgather(_describe(error))
        if error is not None:
            raise error
        rank, (kind, message) = next((r, d) for r, d in enumerate(gathered) if d is not None)
        raise RankError(f"rank {rank} of {comm.size} failed with {kind}: {message}; "
                        "every rank stopped after the same step", rank, kind)
    if interrupted:
        raise KeyboardInterrupt


class Interrupts:
    """Ctrl-C during a distributed fit only sets a flag.

    Raising at once would leave the other ranks waiting in a collective; the
    flag is reduced with the next step's gradient instead, so every rank
    raises KeyboardInterrupt after the same step.
    """

    def __init__(self):
        self.flag = False
        self._previous = None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.flag = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def epoch_status(comm, stop, interrupts, error):
    """An epoch's end on every rank: stop if any rank's callback asked to.

    One small Allreduce of (stop requests, interrupts, failures); raises as
    :func:`raise_for_status` does.  Returns whether any rank asked to stop.
    """
    from mpi4py import MPI
    local = np.array([bool(stop), interrupts.flag, error is not None], dtype=np.intc)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=MPI.SUM)
    raise_for_status(comm, total[1], total[2], error)
    return bool(total[0])
