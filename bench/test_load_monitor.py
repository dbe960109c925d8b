"""Not a benchmark: compare.py's LoadMonitor re-runs a block after which the
host slowed a core, and keeps it once its retries are spent (skipped under
``--benchmark-only``)."""
import os

import pytest

import compare

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"),
                                reason="needs sched_getaffinity")


def _monitor(speeds):
    """A monitor whose probes after a block report the given slowdowns in
    turn (then 1.0); no waiting before blocks, no other processes."""
    m = compare.LoadMonitor(max_wait=10.0, retries=2, settle_max=0.0)
    m.wait_quiet = lambda: None
    seq = iter(speeds)
    m.probe = lambda: next(seq, 1.0)
    m.busy_others = staticmethod(lambda a, b: 0.0)
    return m


def _block(samples):
    def one():
        n0 = len(samples)
        samples.append(len(samples))
        return lambda: samples.__delitem__(slice(n0, None))
    return one


def test_block_after_a_slowed_core_is_run_again():
    m = _monitor([2.0, 1.0])
    samples = []
    assert m.timed_block(_block(samples)) is True
    assert samples == [0]               # the first run's sample was dropped
    assert (m.slow_reruns, m.slow_kept, m.reruns, m.contended) == (1, 0, 0, 0)


def test_block_is_kept_when_retries_are_spent():
    m = _monitor([2.0, 2.0, 2.0])
    samples = []
    assert m.timed_block(_block(samples)) is False
    assert samples == [0]               # kept: the last run's sample
    assert (m.slow_reruns, m.slow_kept) == (2, 1)


def test_probe_measures_every_core_against_its_best():
    m = compare.LoadMonitor(max_wait=0.0)
    mask = os.sched_getaffinity(0)
    ratio = m.probe()
    assert ratio >= 1.0
    assert set(m.best) == set(m.cores) == set(mask)
    assert all(t > 0 for t in m.best.values())
    assert os.sched_getaffinity(0) == mask      # the caller's cores are restored
