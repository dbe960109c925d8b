"""The steps of one epoch of a distributed fit, on one rank.

:class:`SyncSteps` (the default): every step each rank computes the data
gradient of its next local minibatch in the kernels (``_kernels.full_pass``,
one call for the whole net), then **one Allreduce** of ``[gradient summed
over the batch's rows, batch weight, batch loss sum, interrupted, failed]``
gives every rank the gradient of the concatenated batch and the same update
(:class:`fastmlp._mpi_update.GlobalUpdate`).  A rank whose shard has run out
contributes zeros (no weight) for the epoch's remaining steps.

:class:`LocalSteps` (``average_every=k``): each rank takes k steps on its own
batches in one compiled ``train`` call, then one Allreduce averages the
parameters, each rank weighted by the sample weight it trained on.

Both return ``(loss_sum, diverged)`` from :meth:`epoch`, where ``loss_sum`` is
the sum over steps of each batch's objective times its weight, and raise
KeyboardInterrupt or the failing rank's error on every rank together.
"""
import math
import time

import numpy as np

from . import _blas_threads, _kernels
from ._mpi_agree import raise_for_status
from ._mpi_update import GlobalUpdate

_M, _LOSS, _INTERRUPTED, _FAILED, _DIVERGED = range(5)    # slots after the parameters


class Batches:
    """The rows of a rank's shard for step ``s``: views, or gathered copies when shuffled."""

    def __init__(self, X, Y, sw, rows_per_batch):
        self.X, self.Y, self.sw, self.n = X, Y, sw, X.shape[0]
        m = min(rows_per_batch, self.n)
        self.bX = np.empty((m, X.shape[1]), dtype=X.dtype)
        self.bY = np.empty((m, Y.shape[1]), dtype=Y.dtype)
        self.bw = None if sw is None else np.empty(m, dtype=sw.dtype)

    def take(self, order, start, stop):
        """(X, Y, sw, weight) of rows ``start:stop`` of the epoch's order; None if empty."""
        start, stop = min(start, self.n), min(stop, self.n)
        if start >= stop:
            return None
        if order is None:
            X, Y = self.X[start:stop], self.Y[start:stop]
            sw = None if self.sw is None else self.sw[start:stop]
        else:
            rows, m = order[start:stop], stop - start
            X = np.take(self.X, rows, axis=0, out=self.bX[:m])
            Y = np.take(self.Y, rows, axis=0, out=self.bY[:m])
            sw = None if self.sw is None else np.take(self.sw, rows, out=self.bw[:m])
        weight = float(X.shape[0]) if sw is None else float(np.sum(sw, dtype=np.float64))
        return X, Y, sw, weight


class SyncSteps:
    """Synchronous data-parallel SGD: one gradient Allreduce a step."""

    def __init__(self, net, X, Y, sw, batch_size, n_steps, comm, optimizer, clip_norm,
                 interrupts):
        self.net, self.comm, self.interrupts = net, comm, interrupts
        self.batch_size, self.n_steps = batch_size, n_steps
        self.batches = Batches(X, Y, sw, batch_size)
        self.update = GlobalUpdate(net, optimizer, clip_norm)
        n = net.n_params
        self.send = np.zeros(n + 5, dtype=net.dtype)
        self.recv = np.zeros(n + 5, dtype=net.dtype)
        per_row = int(sum(net.layer_sizes[1:])) * min(batch_size, X.shape[0])
        self.acts = np.empty(per_row, dtype=net.dtype)
        self.deltas = np.empty(per_row, dtype=net.dtype)
        self.seconds_reducing = 0.0

    def epoch(self, order, lr):
        from mpi4py import MPI
        n, total = self.net.n_params, 0.0
        for s in range(self.n_steps):
            batch = self.batches.take(order, s * self.batch_size, (s + 1) * self.batch_size)
            error = self._local_gradient(batch)
            t0 = time.perf_counter()
            self.comm.Allreduce(self.send, self.recv, op=MPI.SUM)
            self.seconds_reducing += time.perf_counter() - t0
            r = self.recv
            raise_for_status(self.comm, r[n + _INTERRUPTED], r[n + _FAILED], error)
            M = float(r[n + _M])
            if M <= 0:                       # no weight anywhere: no gradient, no step
                continue
            obj = float(r[n + _LOSS]) + self.update.penalty()
            if not math.isfinite(obj):
                return total, obj / M
            g = r[:n]
            self.update.finish(g, M)
            if not self.update.step(g, lr):
                return total, math.inf
            total += obj
        return total, None

    def _local_gradient(self, batch):
        """Fill the send buffer with this rank's batch; returns the error met, if any."""
        send, n = self.send, self.net.n_params
        send[:] = 0
        send[n + _INTERRUPTED] = self.interrupts.flag
        if batch is None or batch[3] <= 0:
            return None
        X, Y, sw, weight = batch
        try:
            obj = self._full_pass(X, Y, sw, send[:n])
        except Exception as exc:               # reported to every rank after the reduction
            send[:n + _INTERRUPTED] = 0
            send[n + _FAILED] = 1
            return exc
        send[:n] *= weight
        send[n + _M] = weight
        send[n + _LOSS] = obj * weight
        return None

    def _full_pass(self, X, Y, sw, grads):
        net, m = self.net, X.shape[0]
        k = m * int(sum(net.layer_sizes[1:]))
        hidden, output, loss = net._codes
        # the data term only (l2 = l1 = 0): penalties need the global weight M
        return _kernels.full_pass(
            net.params, X, Y, sw, net._sizes, hidden, output, loss, 0.0, 0.0,
            self.acts[:k], self.deltas[:k], grads,
            threads=_blas_threads.threads_for(m * net._widest_product, net.n_threads))


class LocalSteps:
    """Local SGD: ``every`` local steps per rank, then a weighted parameter average."""

    def __init__(self, net, X, Y, sw, batch_size, every, n_rounds, comm, optimizer,
                 clip_norm, interrupts):
        self.net, self.comm, self.interrupts = net, comm, interrupts
        self.batch_size, self.every, self.n_rounds = batch_size, every, n_rounds
        self.opt, self.clip_norm = optimizer, clip_norm
        self.batches = Batches(X, Y, sw, batch_size * every)
        n = net.n_params
        self.send = np.zeros(n + 5, dtype=net.dtype)
        self.recv = np.zeros(n + 5, dtype=net.dtype)
        self.averaged = net.params.copy()          # the last agreed parameters
        self.seconds_reducing = 0.0

    def epoch(self, order, lr):
        from mpi4py import MPI
        n, total, chunk = self.net.n_params, 0.0, self.batch_size * self.every
        for r in range(self.n_rounds):
            batch = self.batches.take(order, r * chunk, (r + 1) * chunk)
            error = self._local_steps(batch, lr)
            t0 = time.perf_counter()
            self.comm.Allreduce(self.send, self.recv, op=MPI.SUM)
            self.seconds_reducing += time.perf_counter() - t0
            out = self.recv
            if out[n + _FAILED] or out[n + _INTERRUPTED] or out[n + _DIVERGED]:
                self.net.params[...] = self.averaged     # the last completed average
            raise_for_status(self.comm, out[n + _INTERRUPTED], out[n + _FAILED], error)
            if out[n + _DIVERGED]:
                return total, math.inf
            M = float(out[n + _M])
            if M > 0:
                np.divide(out[:n], M, out=self.net.params)
                self.averaged[...] = self.net.params
                total += float(out[n + _LOSS])
        return total, None

    def _local_steps(self, batch, lr):
        """``every`` compiled steps on this rank's rows; fill the send buffer."""
        net, send, n = self.net, self.send, self.net.n_params
        send[:] = 0
        send[n + _INTERRUPTED] = self.interrupts.flag
        if batch is None or batch[3] <= 0:
            return None
        X, Y, sw, weight = batch
        loss = np.full(1, np.nan)
        try:
            done = net._train_epochs(
                X, Y, sw, lr, self.batch_size, 1, np.arange(X.shape[0], dtype=np.intp), False,
                np.zeros(1, dtype=np.uint64), loss, self.opt, self.clip_norm,
                np.zeros(1, dtype=np.intc), 1 << 30)
        except Exception as exc:
            send[n + _FAILED] = 1
            return exc
        if done < 1:
            send[n + _DIVERGED] = 1
            return None
        np.multiply(net.params, weight, out=send[:n])
        send[n + _M] = weight
        send[n + _LOSS] = loss[0] * weight
        return None
