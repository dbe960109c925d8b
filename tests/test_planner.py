"""The planner (_planner.pxi): which training step a fit takes, and why."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _kernels

# (layer sizes, batch size, rows, dtype, optimizer settings, threads) -> step of
# the full batches and of the last one.  Plain SGD is optimizer "sgd" without
# momentum, clipping or L1.
TABLE = [
    ([2, 3, 1], None, 4, "float64", {}, 2, "narrow-epochs", None),
    # fewer than NARROW_MIN_ROWS rows a batch: "layers" (but whole epochs in C)
    ([2, 3, 1], None, 4, "float64", {"momentum": 0.9}, 2, "layers", None),
    ([20, 32, 1], 1, 500, "float32", {}, 2, "layers", None),
    ([20, 32, 1], 32, 500, "float32", {}, 2, "narrow", "narrow"),
    ([20, 8, 3, 1], 32, 4000, "float32", {}, 2, "narrow", None),
    ([20, 8, 3, 1], 32, 4000, "float32", {"optimizer": "adam"}, 2, "narrow", None),
    ([64, 128, 10], 32, 1437, "float32", {}, 2, "units", "units"),
    ([64, 128, 10], 32, 1437, "float64", {}, 2, "layers", "layers"),
    ([64, 128, 10], 32, 1437, "float32", {"optimizer": "adam"}, 2, "rows", "rows"),
    ([64, 128, 64, 10], 64, 1000, "float32", {"momentum": 0.9}, 2, "rows", "rows"),
    ([64, 128, 64, 10], 64, 1000, "float32", {"momentum": 0.9}, 1, "rows", "rows"),
    ([64, 128, 64, 10], 16, 1000, "float32", {"momentum": 0.9}, 2, "rows", "layers"),
    ([784, 256, 128, 10], 128, 2048, "float32", {}, 2, "first", None),
    ([784, 256, 128, 10], 128, 2048, "float32", {}, 4, "layers", None),
    ([784, 256, 128, 10], 128, 2048, "float32", {"optimizer": "adam"}, 2, "layers", None),
    ([784, 256, 128, 10], 128, 2048, "float64", {}, 2, "layers", None),
    # W1 split in two would not fit a core's cache: "first" does not pay
    ([512, 1024, 10], 512, 8192, "float32", {}, 2, "layers", None),
    ([8, 64, 64, 1], 32, 1000, "float32", {"momentum": 0.9}, 2, "layers", "layers"),
]


@pytest.mark.parametrize("sizes,bs,n,dtype,opt,threads,step,last", TABLE)
def test_planner_table(sizes, bs, n, dtype, opt, threads, step, last):
    net = fastmlp.Network(sizes, dtype=dtype, n_threads=threads)
    plan = net.plan(n, bs, **opt)
    assert (plan["step"], plan["last_step"]) == (step, last)
    assert plan["reason"] == fastmlp.network.STEP_REASONS[step]
    assert plan["parts"] >= 1


@pytest.mark.parametrize("sizes,bs,n,dtype,opt,threads,step,last",
                         [row for row in TABLE if row[2] <= 2048])
def test_fit_records_the_planned_steps(sizes, bs, n, dtype, opt, threads, step, last):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, max(sizes[-1], 2), n)
    net = fastmlp.Network(sizes, dtype=dtype, n_threads=threads, seed=0,
                          output="softmax" if sizes[-1] > 1 else "sigmoid", loss="log_loss")
    hist = net.fit(X, y, epochs=2, learning_rate=0.01, batch_size=bs, **opt)
    batches = -(-n // (bs or n))
    full, short = (n // bs, 1) if bs and n % bs else (batches, 0)
    ran = {name: count for name, count in hist.steps.items() if count}
    if step == "narrow-epochs":
        assert ran == {"narrow-epochs": 2}
    elif last is None or last == step:
        assert ran == {step: 2 * batches}
    else:
        assert ran == {step: 2 * full, last: 2 * short}


def test_strategy_that_cannot_apply_is_an_error():
    X = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(float)
    net = fastmlp.Network([8, 16, 1], dtype="float32")
    before = net.params.copy()
    with pytest.raises(ValueError, match="strategy 'first' cannot run this fit"):
        net.plan(100, 10, strategy="first")
    net.strategy = "first"      # the first layer's products are far from BLAS's size
    with pytest.raises(ValueError, match="strategy 'first' cannot run this fit"):
        net.fit(X, y, epochs=1, batch_size=10)
    np.testing.assert_array_equal(net.params, before)
    net.strategy = ("first", "layers")
    assert net.fit(X, y, epochs=1, batch_size=10).steps["layers"] == 10


@pytest.mark.parametrize("strategy", ["fast", "", (), ("rows", "nope"), 3, None])
def test_unknown_strategy_names_the_choices(strategy):
    net = fastmlp.Network([2, 3, 1])
    with pytest.raises(ValueError, match="strategy must be 'auto', one of"):
        net.plan(4, strategy=strategy if strategy is not None else 1.5)


def test_last_batch_falls_back_to_layers_when_a_forced_step_does_not_split_it():
    # 1000 = 15 x 64 + 40: "rows" splits 64-row batches of 64-128-64-10; the
    # 5-row batch of 1029 = 16 x 64 + 5 has too few rows for two parts
    net = fastmlp.Network([64, 128, 64, 10], dtype="float32", n_threads=2)
    assert net.plan(1000, 64, strategy="rows")["last_step"] == "rows"
    plan = net.plan(1029, 64, strategy="rows")
    assert (plan["step"], plan["last_step"], plan["last_parts"]) == ("rows", "layers", 1)


def test_dropout_allows_layers_alone_for_every_row_of_the_table():
    for sizes, bs, n, dtype, opt, threads, _, _ in TABLE:
        net = fastmlp.Network(sizes, dtype=dtype, n_threads=threads, dropout=0.1)
        p = net.plan(n, bs, **opt)
        assert (p["step"], p["last_step"]) == ("layers", "layers" if n % (bs or n) else None)
        assert p["reason"].startswith("dropout: ")


def test_step_names_are_the_kernels():
    assert fastmlp.Network.STEPS == _kernels.STEP_NAMES
    assert set(fastmlp.network.STEP_REASONS) == set(_kernels.STEP_NAMES)


def test_reference_network_records_no_steps():
    from fastmlp import reference
    X, y = fastmlp.datasets.xor()
    hist = reference.Network([2, 3, 1], seed=0).fit(X, y, epochs=3)
    assert hist.steps == {}
