"""The cosine learning-rate schedule with linear warm-up (fit's schedule='cosine')."""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import reference
from fastmlp._training import cosine_rate


def test_cosine_rates():
    rates = [cosine_rate(0.1, e, 6, 2) for e in range(6)]
    assert rates[:2] == [0.05, 0.1]
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates[2:] == expected
    assert rates[2] == 0.1 and 0 < rates[-1] < rates[-2]
    np.testing.assert_allclose([cosine_rate(1.0, e, 3, 0) for e in range(3)], [1.0, 0.75, 0.25],
                               rtol=1e-15)


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cosine_fit_equals_one_epoch_fits_at_those_rates(cls, dtype):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5)).astype(dtype)
    y = rng.integers(0, 3, 60)
    kw = dict(activation="tanh", output="softmax", loss="log_loss", dtype=dtype, seed=2)
    scheduled = cls([5, 8, 3], **kw)
    hist = scheduled.fit(X, y, epochs=5, learning_rate=0.3, batch_size=16, shuffle=False,
                         schedule="cosine", warmup_epochs=2)
    stepped = cls([5, 8, 3], **kw)
    losses = []
    for e in range(5):
        losses += stepped.fit(X, y, epochs=1, learning_rate=cosine_rate(0.3, e, 5, 2),
                              batch_size=16, shuffle=False).loss
    np.testing.assert_array_equal(scheduled.params, stepped.params)
    assert hist.loss == losses
    assert hist.learning_rate == [cosine_rate(0.3, e, 5, 2) for e in range(5)]


def test_cosine_compiled_matches_reference():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 4))
    y = rng.integers(0, 2, 80)
    kw = dict(activation="relu", output="sigmoid", loss="log_loss", dtype="float64", seed=1)
    nets = [cls([4, 6, 1], **kw) for cls in (fastmlp.Network, reference.Network)]
    for net in nets:
        net.fit(X, y, epochs=7, learning_rate=0.2, batch_size=10, shuffle=False,
                schedule="cosine", warmup_epochs=3, momentum=0.5)
    np.testing.assert_allclose(nets[0].params, nets[1].params, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("warmup,schedule,match", [
    (-1, "cosine", "non-negative integer; got -1"),
    (1.5, "cosine", "non-negative integer; got 1.5"),
    (True, "cosine", "non-negative integer; got True"),
    (2, "constant", "schedule='cosine' only; got warmup_epochs=2 with schedule='constant'"),
])
def test_bad_warmup_is_refused_before_training(warmup, schedule, match):
    net = fastmlp.Network([2, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=match):
        net.fit(np.ones((4, 2)), np.ones(4), epochs=2, schedule=schedule, warmup_epochs=warmup)
    np.testing.assert_array_equal(net.params, before)


def test_unknown_schedule_names_cosine_among_the_choices():
    with pytest.raises(ValueError, match="cosine"):
        fastmlp.Network([2, 1]).fit(np.ones((4, 2)), np.ones(4), schedule="linear")


def test_distributed_fit_refuses_cosine_rather_than_ignoring_it():
    pytest.importorskip("mpi4py")
    from fastmlp import distributed
    net = fastmlp.Network([2, 1], seed=0)
    with pytest.raises(ValueError, match="schedule"):
        distributed.fit(net, np.ones((4, 2)), np.ones(4), epochs=2, schedule="cosine")
