"""The duel between the pool and one thread (_fit_loop.pxi): it changes the
speed of a fit, never its results."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _kernels


def _fit(sizes, batch_size, opt, threads, window, quiet_wait=0.0):
    # quiet_wait 0: every pooled window is followed by a one-thread window
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 1500)
    previous = _kernels.set_duel_window(window)
    previous_wait = _kernels.set_duel_quiet_wait(quiet_wait)
    try:
        net = fastmlp.Network(sizes, dtype="float32", seed=1, n_threads=threads,
                              output="softmax", loss="log_loss")
        hist = net.fit(X, y, epochs=2, learning_rate=0.01, batch_size=batch_size, **opt)
    finally:
        _kernels.set_duel_window(previous)
        _kernels.set_duel_quiet_wait(previous_wait)
    return net.params.copy(), hist


@pytest.mark.parametrize("sizes,batch_size,step,opt", [
    ([64, 128, 10], 32, "units", {}),
    ([64, 128, 64, 10], 64, "rows", {"momentum": 0.9}),
    ([512, 256, 8], 128, "first", {}),
])
def test_duel_changes_no_result(sizes, batch_size, step, opt):
    # windows of 8 steps switch between the pool and one thread many times;
    # one-minute windows never leave the pool in a fit this short
    switching, switching_hist = _fit(sizes, batch_size, opt, 2, 0.0)
    pooled, pooled_hist = _fit(sizes, batch_size, opt, 2, 60.0)
    assert switching_hist.steps[step] > 0
    assert switching_hist.solo_steps >= 8 and pooled_hist.solo_steps == 0
    np.testing.assert_array_equal(switching, pooled)
    assert switching_hist.loss == pooled_hist.loss
    # BLAS runs on one thread, its products split by their shape alone
    alone, alone_hist = _fit(sizes, batch_size, opt, 1, 0.0)
    np.testing.assert_array_equal(switching, alone)
    assert alone_hist.solo_steps == 0


def test_pool_that_kept_up_wins_without_a_one_thread_window():
    # any wait counts as "kept up" at this fraction: no step runs on one thread
    # (the pooled window used the workers, so the caller's own time is > 0)
    # -- unless a real stall of this shared machine sent the pool's calls to
    # the caller alone (_pool.h) for the whole window: a few tries
    sizes, batch_size, opt = [64, 128, 64, 10], 64, {"momentum": 0.9}
    for _ in range(5):
        _kernels._pool_stall_probe(0.0, 0.0, forget=True)
        kept_up, kept_up_hist = _fit(sizes, batch_size, opt, 2, 0.0, quiet_wait=1e9)
        if kept_up_hist.solo_steps == 0:
            break
    measured, measured_hist = _fit(sizes, batch_size, opt, 2, 0.0, quiet_wait=0.0)
    assert kept_up_hist.solo_steps == 0
    assert measured_hist.solo_steps >= 8
    np.testing.assert_array_equal(kept_up, measured)


def _fit_after_a_remembered_choice(repeat, batch_size, quiet_wait):
    """A fit's History right after a duel chose one thread for ``repeat``
    windows (the duel's shortest window 0 s; the memory forgotten after)."""
    sizes = [64, 128, 64, 10]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 1500)
    previous = _kernels.set_duel_window(0.0)
    previous_wait = _kernels.set_duel_quiet_wait(quiet_wait)
    try:
        _kernels.remember_solo_choice(repeat)
        net = fastmlp.Network(sizes, dtype="float32", seed=1, n_threads=2,
                              output="softmax", loss="log_loss")
        return net.fit(X, y, epochs=1, learning_rate=0.01, batch_size=batch_size)
    finally:
        _kernels.set_duel_window(previous)
        _kernels.set_duel_quiet_wait(previous_wait)
        _kernels.forget_solo_choice()        # later tests' fits duel from their start


def test_a_one_thread_choice_is_remembered_by_the_next_fit():
    # a duel that chose one thread (held 256 windows) makes the next fit
    # (within a second) start on one thread: its steps count as solo from
    # the first
    hist = _fit_after_a_remembered_choice(256, 64, 0.0)
    assert hist.solo_steps == 1500 // 64


def test_a_remembered_short_hold_duels_again_within_the_fit():
    # a one-thread choice held 1 window (a passing slow core) makes the next
    # fit start on one thread for 1 x (8 + 8) steps only; then a pooled
    # window of 8 steps runs whatever the duel decides after it
    hist = _fit_after_a_remembered_choice(1, 16, 0.1)
    assert 16 <= hist.solo_steps <= 1500 // 16 - 8


def test_duel_hooks_check_their_arguments():
    with pytest.raises(ValueError, match="seconds must be in"):
        _kernels.set_duel_window(-1.0)
    with pytest.raises(ValueError, match="fraction must be in"):
        _kernels.set_duel_quiet_wait(-0.5)
    with pytest.raises(ValueError, match="repeat must be in"):
        _kernels.remember_solo_choice(0)
