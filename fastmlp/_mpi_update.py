"""One optimizer step from the reduced gradient of a distributed fit.

The ranks reduce the data gradient summed over their rows (unnormalised);
this module turns it into the gradient of the single-process objective of
the concatenated batch, ``sum(w_i * loss_i) / M + l2 / (2M) * sum(W**2) +
l1 / M * sum(|W|)`` with ``M`` the *global* batch weight, then clips it on
its global norm and takes the optimizer step.  The arithmetic is the
reference twin's (``fastmlp.reference.Network._step``), in the network's
dtype, done in place on preallocated buffers.
"""
import numpy as np

from . import _validation as v


class GlobalUpdate:
    """Penalties, clipping and the optimizer step for one network.

    Parameters
    ----------
    net : fastmlp.Network
        Its ``params`` are updated in place.
    optimizer : fastmlp._training.OptimizerState
        Settings and state (momentum, Adam moments and step count).
    clip_norm : float
        0 for no clipping.
    """

    def __init__(self, net, optimizer, clip_norm):
        if optimizer.name not in v.DISTRIBUTED_OPTIMIZERS:
            raise ValueError(f"a distributed fit's optimizer must be one of "
                             f"{', '.join(map(repr, v.DISTRIBUTED_OPTIMIZERS))}; got "
                             f"{optimizer.name!r}")
        self.net = net
        self.opt = optimizer
        self.clip_norm = clip_norm
        self.t = net.dtype.type
        self.tmp = np.empty(net.n_params, dtype=net.dtype)
        self.tmp2 = (np.empty(net.n_params, dtype=net.dtype)
                     if optimizer.name == "adam" or optimizer.nesterov else None)
        self.spans = _weight_spans(net.layer_sizes)

    def penalty(self):
        """The penalty of the current weights: see :func:`penalty`."""
        return penalty(self.net, self.spans)

    def finish(self, g, M):
        """``g`` (the reduced data gradient sum) becomes the objective's gradient."""
        g /= M
        net, t = self.net, self.t
        if net.l2 == 0 and net.l1 == 0:
            return
        for a, b in self.spans:
            W, gW = net.params[a:b], g[a:b]
            if net.l2:
                gW += t(net.l2 / M) * W
            if net.l1:
                gW += t(net.l1 / M) * np.sign(W)

    def step(self, g, lr):
        """Clip ``g`` (in place) and take one step; False if its norm is not finite."""
        norm = self._norm(g)
        if not np.isfinite(norm):
            return False
        if self.clip_norm > 0 and norm > self.clip_norm:
            g *= self.t(self.clip_norm / norm)
        if self.opt.name == "adam":
            self._adam(g, lr)
        elif self.opt.momentum > 0:
            self._momentum(g, lr)
        else:
            np.multiply(g, self.t(lr), out=self.tmp)
            self.net.params -= self.tmp
        return True

    def _norm(self, g):
        # the reference measures in float64; float32's dot suffices unless it
        # overflows or the norm decides a clip
        if self.clip_norm > 0 or g.dtype != np.float32:
            return float(np.sqrt(np.dot(g.astype(np.float64, copy=False),
                                        g.astype(np.float64, copy=False))))
        sq = float(np.dot(g, g))
        if np.isfinite(sq):
            return np.sqrt(sq)
        g64 = g.astype(np.float64)
        return float(np.sqrt(np.dot(g64, g64)))

    def _momentum(self, g, lr):
        # the reference's order of operations, so that roundings match
        t, p, v = self.t, self.net.params, self.opt.state
        mu, step = t(self.opt.momentum), np.multiply(g, t(lr), out=self.tmp)
        v *= mu
        v -= step
        if self.opt.nesterov:
            np.multiply(v, mu, out=self.tmp2)
            self.tmp2 -= step
            p += self.tmp2
        else:
            p += v

    def _adam(self, g, lr):
        opt, t, p, tmp = self.opt, self.t, self.net.params, self.tmp
        n = p.size
        opt.step[0] += 1
        k = int(opt.step[0])
        b1, b2 = t(opt.beta1), t(opt.beta2)
        m1, m2 = opt.state[:n], opt.state[n:]
        m1 *= b1
        m1 += np.multiply(g, 1 - b1, out=tmp)
        m2 *= b2
        np.multiply(g, 1 - b2, out=tmp)
        tmp *= g
        m2 += tmp
        lr_t = t(lr * np.sqrt(1 - opt.beta2 ** k) / (1 - opt.beta1 ** k))
        np.multiply(m1, lr_t, out=self.tmp2)
        np.sqrt(m2, out=tmp)
        tmp += t(opt.epsilon)
        np.divide(self.tmp2, tmp, out=tmp)
        p -= tmp


def penalty(net, spans=None):
    """``l2 / 2 * sum(W**2) + l1 * sum(|W|)`` in float64 (divided by M where used)."""
    if net.l2 == 0 and net.l1 == 0:
        return 0.0
    total = 0.0
    for a, b in spans or _weight_spans(net.layer_sizes):
        W = net.params[a:b].astype(np.float64)
        total += 0.5 * net.l2 * np.dot(W, W) + net.l1 * np.abs(W).sum()
    return total


def _weight_spans(sizes):
    """(start, stop) of each layer's weights in the flat parameter layout."""
    spans, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        spans.append((off, off + n_in * n_out))
        off += n_in * n_out + n_out
    return spans
