"""The optimizer state in model files: save, load and partial_fit continue the
saved run bit for bit; fit's checkpoints resume; bad optimizer entries and
arrays are refused; files without optimizer state load as before."""
import json
import os

import numpy as np
import pytest

import fastmlp
from fastmlp import io as fio
from fastmlp import reference
from fastmlp.errors import ModelFileError

from helpers import make_targets, randomise_biases, refused

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CLASSES = [fastmlp.Network, reference.Network]
CLASS_IDS = ["compiled", "reference"]
OPTIMIZERS = {
    "momentum": dict(optimizer="sgd", momentum=0.9),
    "nesterov": dict(optimizer="sgd", momentum=0.8, nesterov=True),
    "adam": dict(optimizer="adam", beta1=0.8, beta2=0.99),
    "rmsprop": dict(optimizer="rmsprop", rho=0.8),
    "adamw": dict(optimizer="adamw", weight_decay=0.05),
    "invscaling": dict(optimizer="sgd", schedule="invscaling", power_t=0.4),   # samples seen
}


def problem(cls, dtype="float64", seed=0, sizes=(5, 7, 3)):
    net = cls(list(sizes), activation="tanh", output="softmax", loss="log_loss",
              dtype=dtype, seed=seed, l2=0.01, init="he")
    rng = np.random.default_rng(seed)
    randomise_biases(net, rng)
    X = rng.normal(size=(40, sizes[0]))
    Y = make_targets(rng, 40, sizes[-1], "softmax", "log_loss")
    return net, X, Y


def epochs(net, X, Y, k, **fit):
    """``k`` partial_fit epochs; their losses."""
    return [net.partial_fit(X, Y, **fit).loss[0] for _ in range(k)]


def same_optimizer(a, b):
    assert a._optimizer.settings() == b._optimizer.settings()
    assert a._samples_seen == b._samples_seen
    assert np.array_equal(a._optimizer.step, b._optimizer.step)
    if a._optimizer.state is None:
        assert b._optimizer.state is None
    else:
        assert a._optimizer.state.dtype == b._optimizer.state.dtype
        assert np.array_equal(a._optimizer.state, b._optimizer.state)


# ---------------------------------------------------------------- resuming
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_save_load_partial_fit_continues_bit_for_bit(tmp_path, cls, opt, dtype):
    """Fit A: k epochs, save, load, k more; fit B: 2k epochs. Equal."""
    fit = dict(OPTIMIZERS[opt], learning_rate=0.05, batch_size=8, shuffle=True)
    a, X, Y = problem(cls, dtype, seed=1)
    b, _, _ = problem(cls, dtype, seed=1)
    k = 3
    first = epochs(a, X, Y, k, **fit)
    fio.save(a, tmp_path / "a.npz")
    resumed = fio.load(tmp_path / "a.npz", cls=cls)
    same_optimizer(resumed, a)
    second = epochs(resumed, X, Y, k, **fit)
    assert epochs(b, X, Y, 2 * k, **fit) == first + second
    assert np.array_equal(resumed.params, b.params)
    same_optimizer(resumed, b)
    # without the state the run is another one (so the equality above says something)
    fio.save(a, tmp_path / "bare.npz", optimizer=False)
    bare = fio.load(tmp_path / "bare.npz", cls=cls)
    assert bare._optimizer is None
    epochs(bare, X, Y, k, **fit)
    assert not np.array_equal(bare.params, b.params)


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_a_dropout_network_resumes_bit_for_bit(tmp_path, cls):
    """Dropout's masks follow the network's generator, which the file keeps too."""
    fit = dict(learning_rate=0.05, batch_size=8, optimizer="adam")
    make = (lambda: cls([5, 12, 3], activation="relu", output="softmax", loss="log_loss",
                        seed=12, dropout=0.3))
    a, b = make(), make()
    _, X, Y = problem(cls, seed=12)
    epochs(a, X, Y, 2, **fit)
    a.save(tmp_path / "d.npz")
    resumed = cls.load(tmp_path / "d.npz")
    assert resumed.dropout == 0.3
    second = epochs(resumed, X, Y, 2, **fit)
    assert epochs(b, X, Y, 4, **fit)[2:] == second
    assert np.array_equal(resumed.params, b.params)


@pytest.mark.parametrize("opt", ["adam", "momentum"])
def test_a_file_of_one_class_resumes_in_the_other(tmp_path, opt):
    fit = dict(OPTIMIZERS[opt], learning_rate=0.05, batch_size=8)
    net, X, Y = problem(fastmlp.Network, seed=2)
    epochs(net, X, Y, 2, **fit)
    net.save(tmp_path / "c.npz")
    ref = reference.Network.load(tmp_path / "c.npz")
    same_optimizer(ref, net)
    epochs(net, X, Y, 2, **fit)
    epochs(ref, X, Y, 2, **fit)
    np.testing.assert_allclose(ref.params, net.params, rtol=1e-10, atol=1e-12)


def test_other_settings_or_fit_start_a_fresh_state(tmp_path):
    fit = dict(learning_rate=0.05, batch_size=8, optimizer="adam")
    net, X, Y = problem(fastmlp.Network, seed=3)
    epochs(net, X, Y, 2, **fit)
    net.save(tmp_path / "m.npz")
    back = fio.load(tmp_path / "m.npz")
    back.partial_fit(X, Y, **fit)
    assert back._optimizer.step[0] == 15 and back._samples_seen == 120  # 3 epochs of 40 / 8
    for change in (dict(beta1=0.5), dict(reset_optimizer=True)):
        back = fio.load(tmp_path / "m.npz")
        back.partial_fit(X, Y, **fit, **change)
        assert back._optimizer.step[0] == 5, change           # a fresh Adam: one epoch's
    back = fio.load(tmp_path / "m.npz")
    back.fit(X, Y, epochs=1, **fit)
    assert back._optimizer.step[0] == 5 and back._samples_seen == 40


# ------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("batch_size", [8, None], ids=["minibatch", "full"])
@pytest.mark.parametrize("opt", ["adam", "nesterov", "rmsprop"])
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_every_checkpoint_resumes_to_the_next_epoch(tmp_path, cls, opt, batch_size):
    """fit(epochs=E, checkpoint_every=1) writes epoch-e.npz; loaded and given
    one partial_fit it holds the weights of epoch e + 1 of a partial_fit run.
    (shuffle=False: fit draws one row order for all its epochs, partial_fit
    one per call, so shuffled orders differ; the optimizer's steps do not.)"""
    fit = dict(OPTIMIZERS[opt], learning_rate=0.05, batch_size=batch_size, shuffle=False)
    E = 4
    net, X, Y = problem(cls, "float32", seed=4)
    run, _, _ = problem(cls, "float32", seed=4)
    net.fit(X, Y, epochs=E, checkpoint=tmp_path, checkpoint_every=1, **fit)
    weights = []
    for _ in range(E + 1):
        run.partial_fit(X, Y, **fit)
        weights.append(run.params.copy())          # weights[e - 1]: after epoch e
    assert np.array_equal(net.params, weights[E - 1])
    for e in range(1, E + 1):
        back = cls.load(tmp_path / f"epoch-{e}.npz")
        assert fio.read_header(tmp_path / f"epoch-{e}.npz")["metadata"]["epoch"] == e
        assert np.array_equal(back.params, weights[e - 1]), e
        back.partial_fit(X, Y, **fit)
        assert np.array_equal(back.params, weights[e]), e


@pytest.mark.parametrize("validation", [False, True])
def test_the_best_checkpoint_holds_the_optimizer_of_its_weights(tmp_path, validation):
    """best.npz without validation data holds the weights an epoch started
    from (its loss is measured there), so the optimizer state from before
    that epoch; with validation data, the weights and state after it."""
    fit = dict(learning_rate=0.02, optimizer="adam")
    E = 6
    net, X, Y = problem(fastmlp.Network, seed=5)
    run, _, _ = problem(fastmlp.Network, seed=5)
    extra = dict(validation_data=(X, Y)) if validation else {}
    hist = net.fit(X, Y, epochs=E, checkpoint=tmp_path, checkpoint_every="best", **extra, **fit)
    monitored = hist.val_loss if validation else hist.loss
    best = int(np.argmin(monitored)) + 1
    assert best == E                                  # a steady descent: the last is best
    assert fio.read_header(tmp_path / "best.npz")["metadata"]["epoch"] == best
    weights = [run.params.copy()]
    for _ in range(E + 1):
        run.partial_fit(X, Y, **fit)
        weights.append(run.params.copy())          # weights[e]: after epoch e
    held = best if validation else best - 1
    back = fio.load(tmp_path / "best.npz")
    assert np.array_equal(back.params, weights[held])
    assert back._optimizer.step[0] == held and back._samples_seen == 40 * held
    back.partial_fit(X, Y, **fit)
    assert np.array_equal(back.params, weights[held + 1])


def test_lbfgs_checkpoints_and_files_hold_no_optimizer(tmp_path):
    net, X, Y = problem(fastmlp.Network, seed=6)
    net.fit(X, Y, epochs=3, optimizer="lbfgs", checkpoint=tmp_path, checkpoint_every=1)
    net.save(tmp_path / "m.npz")
    for name in ("epoch-1.npz", "m.npz"):
        header = fio.read_header(tmp_path / name)
        assert header["format_version"] == 1 and "optimizer" not in header
        assert fio.load(tmp_path / name)._optimizer is None


# -------------------------------------------------- the file's contents
@pytest.mark.parametrize("opt,n_state", [("adam", 2), ("adamw", 2), ("rmsprop", 1),
                                         ("momentum", 1), ("invscaling", 0)])
def test_the_file_holds_the_settings_and_the_state(tmp_path, opt, n_state):
    net, X, Y = problem(fastmlp.Network, "float32", seed=7)
    epochs(net, X, Y, 2, learning_rate=0.05, batch_size=16, **OPTIMIZERS[opt])
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        names = sorted(npz.files)
        state = npz["optimizer_state"] if n_state else None
    assert header["format_version"] == 2
    entry = header["optimizer"]
    assert tuple(entry[k] for k in ("name", "momentum", "nesterov", "beta1", "beta2", "epsilon",
                                    "rho", "weight_decay")) == net._optimizer.settings()
    assert entry["samples_seen"] == 80
    assert entry["step"] == (6 if opt in ("adam", "adamw") else 0)      # 2 epochs of 3 batches
    if n_state:
        assert names == ["header", "optimizer_state", "params"]
        assert state.dtype == np.float32 and state.shape == (n_state * net.n_params,)
        assert np.array_equal(state, net._optimizer.state) and state.any()
    else:
        assert names == ["header", "params"]


def test_an_adam_file_is_about_three_times_the_parameters(tmp_path):
    net, X, Y = problem(fastmlp.Network, sizes=(50, 200, 10), seed=8)
    net.partial_fit(X, Y, optimizer="adam")
    net.save(tmp_path / "with.npz")
    net.save(tmp_path / "without.npz", optimizer=False)
    ratio = os.path.getsize(tmp_path / "with.npz") / os.path.getsize(tmp_path / "without.npz")
    assert 2.9 < ratio < 3.05
    assert fio.read_header(tmp_path / "without.npz")["format_version"] == 1


def test_save_refuses_a_bad_state_and_a_bad_flag(tmp_path):
    net, X, Y = problem(fastmlp.Network, seed=9)
    net.partial_fit(X, Y, optimizer="adam")
    with pytest.raises(TypeError, match="optimizer must be True or False; got 'no'"):
        net.save(tmp_path / "m.npz", optimizer="no")
    net._optimizer.state[7] = np.inf
    with pytest.raises(ValueError, match="optimizer state contains NaN or inf"):
        net.save(tmp_path / "m.npz")
    net._optimizer.state = net._optimizer.state[:-1]
    with pytest.raises(ValueError, match=r"optimizer state must be a \(\d+,\) array"):
        fio.save(net, tmp_path / "m.npz")
    assert not os.listdir(tmp_path)
    fio.save(net, tmp_path / "m.npz", optimizer=False)        # the network alone is fine
    assert fio.load(tmp_path / "m.npz")._optimizer is None


# ------------------------------------------------------ files refused
@pytest.fixture
def adam_parts(tmp_path):
    """(header, params, state, directory) of a saved Adam network, [3, 4, 2]: 26 params."""
    net, X, Y = problem(fastmlp.Network, sizes=(3, 4, 2), seed=10)
    epochs(net, X, Y, 2, learning_rate=0.05, batch_size=10, optimizer="adam")
    net.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        params, state = npz["params"].copy(), npz["optimizer_state"].copy()
    return header, params, state, tmp_path


def write_npz(path, header, params, **extra):
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
             params=params, **extra)
    return path


def with_optimizer(header, **changes):
    h = json.loads(json.dumps(header))
    for k, val in changes.items():
        if val is KeyError:
            del h["optimizer"][k]
        else:
            h["optimizer"][k] = val
    return h


def test_the_fixture_loads(adam_parts):
    header, params, state, tmp = adam_parts
    back = fio.load(write_npz(tmp / "same.npz", header, params, optimizer_state=state))
    assert np.array_equal(back._optimizer.state, state) and back._optimizer.step[0] == 8
    swapped = fio.load(write_npz(tmp / "be.npz", header, params,
                                 optimizer_state=state.astype(">f8")))
    assert swapped._optimizer.state.dtype == np.float64
    assert np.array_equal(swapped._optimizer.state, state)


def test_a_state_array_not_matching_the_header(adam_parts):
    header, params, state, tmp = adam_parts
    cases = [
        (state[:-1], ["'optimizer_state' has shape (51,)", "optimizer 'adam'", "need (52,)"]),
        (np.append(state, 0.0), ["'optimizer_state' has shape (53,)"]),
        (state.reshape(2, 26), ["'optimizer_state' has shape (2, 26)"]),
        (state.astype(np.float32), ["'optimizer_state' has dtype float32", "float64"]),
        (state.astype(np.int64), ["'optimizer_state' has dtype int64"]),
        (state.astype(np.complex128), ["'optimizer_state' has dtype complex128"]),
    ]
    for i, (bad, words) in enumerate(cases):
        refused(write_npz(tmp / f"{i}.npz", header, params, optimizer_state=bad), *words)


def test_non_finite_or_negative_state_values(adam_parts):
    header, params, state, tmp = adam_parts
    nan = state.copy()
    nan[3], nan[40] = np.nan, np.inf
    refused(write_npz(tmp / "a.npz", header, params, optimizer_state=nan),
            "'optimizer_state' holds 2 NaN or inf values")
    negative = state.copy()
    negative[30] = -1e-3                              # in the second moments (26 ..)
    refused(write_npz(tmp / "b.npz", header, params, optimizer_state=negative),
            "1 negative values", "adam's second moment")
    first = state.copy()
    first[3] = -abs(first[3]) - 1.0                   # first moments may be negative
    assert fio.load(write_npz(tmp / "c.npz", header, params, optimizer_state=first))
    rms = with_optimizer(header, name="rmsprop", step=0)
    refused(write_npz(tmp / "d.npz", rms, params, optimizer_state=-np.abs(state[:26])),
            "26 negative values", "rmsprop's mean square")


def test_a_state_array_missing_or_not_wanted(adam_parts):
    header, params, state, tmp = adam_parts
    refused(write_npz(tmp / "a.npz", header, params),
            "optimizer 'adam' keeps 52 values of state", "no 'optimizer_state'")
    plain = with_optimizer(header, name="sgd", step=0)
    refused(write_npz(tmp / "b.npz", plain, params, optimizer_state=state[:26]),
            "holds 'optimizer_state'", "optimizer 'sgd' keeps no state")
    no_entry = dict(header)
    del no_entry["optimizer"]
    refused(write_npz(tmp / "c.npz", no_entry, params, optimizer_state=state),
            "holds 'optimizer_state'", "header has no optimizer")
    old = dict(no_entry, format_version=1)
    refused(write_npz(tmp / "d.npz", old, params, optimizer_state=state),
            "header has no optimizer")
    refused(write_npz(tmp / "e.npz", header, params, optimizer_state=state, velocity=state),
            "unexpected 'velocity'")


@pytest.mark.parametrize("changes,words", [
    (dict(name="lbfgs"), ["optimizer name must be one of", "'lbfgs'"]),
    (dict(name=None), ["optimizer name must be one of"]),
    (dict(momentum=1.5), ["settings are not valid", "momentum must be in [0, 1)"]),
    (dict(momentum="0.5"), ["optimizer momentum must be a number"]),
    (dict(beta2=True), ["optimizer beta2 must be a number"]),
    (dict(epsilon=0.0), ["settings are not valid", "epsilon must be a finite number > 0"]),
    (dict(weight_decay=-1.0), ["weight_decay must be a finite number >= 0"]),
    (dict(nesterov=1), ["optimizer nesterov must be true or false"]),
    (dict(step=-1), ["optimizer step must be an integer in [0, "]),
    (dict(step=2.0), ["optimizer step must be an integer"]),
    (dict(step=2 ** 64), ["optimizer step must be an integer"]),
    (dict(samples_seen=-40), ["optimizer samples_seen must be an integer"]),
    (dict(samples_seen=None), ["optimizer samples_seen must be an integer"]),
    (dict(step=KeyError), ["optimizer has missing keys ['step']"]),
    (dict(lr=0.1), ["optimizer has unexpected keys ['lr']"]),
    # settings that disagree with each other or with the array
    (dict(name="rmsprop", momentum=0.5, step=0), ["momentum and nesterov apply to optimizer='sgd'"]),
    (dict(name="sgd", step=3), ["step is 3 but optimizer 'sgd' counts no steps"]),
    (dict(name="sgd", momentum=0.9, step=0), ["'optimizer_state' has shape (52,)",
                                              "optimizer 'sgd' (momentum 0.9)", "need (26,)"]),
    (dict(name="rmsprop", step=0), ["'optimizer_state' has shape (52,)", "need (26,)"]),
])
def test_tampered_optimizer_entry(adam_parts, changes, words):
    header, params, state, tmp = adam_parts
    path = write_npz(tmp / "t.npz", with_optimizer(header, **changes), params,
                     optimizer_state=state)
    message = refused(path, *words)
    with pytest.raises(ModelFileError) as info:
        fio.read_header(path)                       # the same checks, no network built
    assert str(info.value) == message


def test_an_optimizer_entry_that_is_not_an_object(adam_parts):
    header, params, state, tmp = adam_parts
    refused(write_npz(tmp / "t.npz", dict(header, optimizer=[1, 2]), params, optimizer_state=state),
            "header optimizer must be a JSON object")


def test_every_single_byte_corruption_is_refused_or_harmless(adam_parts):
    """As test_io's sweep, over a file holding an Adam state: each flipped
    byte is refused with a ModelFileError or changes nothing loaded."""
    header, params, state, tmp = adam_parts
    blob = open(tmp / "good.npz", "rb").read()
    bad = tmp / "bad.npz"
    outcomes = {"refused": 0, "same": 0}
    for i in range(len(blob)):
        data = bytearray(blob)
        data[i] ^= 0x01
        bad.write_bytes(bytes(data))
        try:
            net = fio.load(bad)
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        assert np.array_equal(net.params, params), i
        assert np.array_equal(net._optimizer.state, state), i
        assert net._optimizer.settings() == tuple(header["optimizer"][k] for k in (
            "name", "momentum", "nesterov", "beta1", "beta2", "epsilon", "rho", "weight_decay"))
        assert net._optimizer.step[0] == header["optimizer"]["step"], i
        outcomes["same"] += 1
    assert outcomes["refused"] > outcomes["same"]


# ------------------------------------------------ files without the state
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_a_network_never_trained_is_written_as_version_1(tmp_path, cls):
    net, X, Y = problem(cls, seed=11)
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["header", "params"]
        header = json.loads(npz["header"].tobytes())
    assert header["format_version"] == 1 and "optimizer" not in header
    back = fio.load(tmp_path / "m.npz", cls=cls)
    assert back._optimizer is None and back._samples_seen == 0
    back.partial_fit(X, Y, optimizer="adam")
    net.partial_fit(X, Y, optimizer="adam")
    assert np.array_equal(back.params, net.params)


def test_a_file_written_by_main_before_optimizer_state_loads():
    """tests/data/main-1cadbee-adam-v1.npz: written by fastmlp's main branch
    at 1cadbee (format_version 1, which dropped the optimizer state), a
    reference.Network after 3 partial_fit epochs of Adam (see its metadata)."""
    path = os.path.join(DATA, "main-1cadbee-adam-v1.npz")
    header = fio.read_header(path)
    assert header["format_version"] == 1 and "optimizer" not in header
    assert "1cadbee" in header["metadata"]["made_by"]
    with np.load(path, allow_pickle=False) as npz:
        params = npz["params"].copy()
    for cls in CLASSES:
        net = fio.load(path, cls=cls)
        assert np.array_equal(net.params, params) and net._optimizer is None
        assert net.layer_sizes == (3, 4, 2) and net.activation == "tanh"
        X = np.random.default_rng(0).normal(size=(6, 3))
        assert np.allclose(net.predict(X).sum(axis=1), 1.0)
        net.partial_fit(X, np.eye(2)[[0, 1, 0, 1, 0, 1]], optimizer="adam")
        assert net._optimizer.step[0] == 1                    # a fresh Adam
