"""fit's callbacks stop training only on an explicit signal; built-in
checkpointing; what verbose says when training ends early."""
import os

import numpy as np
import pytest

import fastmlp
from fastmlp import io as fio
from fastmlp import reference

NETS = [fastmlp.Network, reference.Network]


def _disk():
    X, y = fastmlp.datasets.disk(300)
    Xv, yv = fastmlp.datasets.disk(100, seed=1)
    return X, y, Xv, yv


@pytest.mark.parametrize("cls", NETS)
def test_a_callback_returning_a_path_does_not_stop(cls, tmp_path):
    X, y = fastmlp.datasets.xor()
    net = cls([2, 3, 1], seed=0)
    hist = net.fit(X, y, epochs=5, learning_rate=1.0,
                   callbacks=[lambda n, e, logs: n.save(tmp_path / f"ep{e}.npz")])
    assert len(hist.loss) == 5 and not hist.stopped_early
    assert sorted(os.listdir(tmp_path)) == [f"ep{e}.npz" for e in range(1, 6)]


@pytest.mark.parametrize("cls", NETS)
def test_returning_stop_ends_training_after_that_epoch(cls):
    X, y = fastmlp.datasets.xor()
    later = []
    hist = cls([2, 3, 1], seed=0).fit(
        X, y, epochs=50, learning_rate=1.0,
        callbacks=[lambda n, e, logs: fastmlp.STOP if e == 3 else 1,
                   lambda n, e, logs: later.append(e)])
    assert len(hist.loss) == 3 and hist.stopped_early and later == [1, 2, 3]
    assert repr(fastmlp.STOP) == "fastmlp.STOP"


def test_raising_stop_training_skips_the_later_callbacks():
    X, y = fastmlp.datasets.xor()
    later = []

    def stop_at_two(net, epoch, logs):
        if epoch == 2:
            raise fastmlp.StopTraining

    hist = fastmlp.Network([2, 3, 1], seed=0).fit(
        X, y, epochs=50, learning_rate=1.0,
        callbacks=[stop_at_two, lambda n, e, logs: later.append(e)])
    assert len(hist.loss) == 2 and hist.stopped_early and later == [1]


def test_returning_true_warns_and_goes_on():
    X, y = fastmlp.datasets.xor()
    with pytest.warns(UserWarning, match="fastmlp.STOP"):
        hist = fastmlp.Network([2, 3, 1], seed=0).fit(
            X, y, epochs=4, learning_rate=1.0, callbacks=[lambda n, e, logs: True])
    assert len(hist.loss) == 4 and not hist.stopped_early


def test_other_exceptions_from_callbacks_propagate():
    X, y = fastmlp.datasets.xor()

    def broken(net, epoch, logs):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        fastmlp.Network([2, 3, 1], seed=0).fit(X, y, epochs=4, callbacks=[broken])


# ----------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("cls", NETS)
def test_checkpoint_every_k_epochs_and_the_last(cls, tmp_path):
    X, y, _, _ = _disk()
    weights = {}
    net = cls([2, 6, 1], loss="log_loss", seed=0)
    directory = tmp_path / "new" / "ck"
    net.fit(X, y, epochs=10, learning_rate=0.5, batch_size=32, checkpoint=directory,
            checkpoint_every=4,
            callbacks=[lambda n, e, logs: weights.__setitem__(e, n.params.copy())])
    assert sorted(os.listdir(directory)) == ["epoch-04.npz", "epoch-08.npz", "epoch-10.npz"]
    for epoch in (4, 8, 10):
        path = directory / f"epoch-{epoch:02d}.npz"
        loaded = fio.load(path, cls=cls)
        np.testing.assert_array_equal(loaded.params, weights[epoch])
        meta = fio.read_header(path)["metadata"]
        assert meta["epoch"] == epoch and meta["loss"] == net.history.loss[epoch - 1]


@pytest.mark.parametrize("validation", [True, False])
def test_checkpoint_best_holds_the_weights_early_stopping_keeps(tmp_path, validation):
    X, y, Xv, yv = _disk()
    kw = dict(validation_data=(Xv, yv)) if validation else {}
    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    hist = net.fit(X, y, epochs=60, learning_rate=2.0, batch_size=16, early_stopping=True,
                   patience=5, tol=0.0, checkpoint=str(tmp_path), **kw)
    assert os.listdir(tmp_path) == ["best.npz"]
    best = fastmlp.load(tmp_path / "best.npz")
    np.testing.assert_array_equal(best.params, net.params)
    meta = fio.read_header(tmp_path / "best.npz")["metadata"]
    assert meta["epoch"] == hist.best_epoch
    scores = hist.val_loss if validation else hist.loss
    assert meta["val_loss" if validation else "loss"] == min(scores)


def test_checkpoint_best_without_early_stopping_follows_the_minimum(tmp_path):
    X, y, Xv, yv = _disk()
    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    kept = {}
    hist = net.fit(X, y, epochs=20, learning_rate=0.5, validation_data=(Xv, yv),
                   checkpoint=tmp_path,
                   callbacks=[lambda n, e, logs: kept.__setitem__(e, n.params.copy())])
    best_epoch = int(np.argmin(hist.val_loss)) + 1
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "best.npz").params, kept[best_epoch])
    assert hist.best_epoch is None                      # nothing restored


def test_a_failed_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    X, y, Xv, yv = _disk()
    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    from fastmlp import _format
    real, calls = _format.np.savez, []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(_format.np, "savez", fail_second)
    with pytest.raises(OSError, match="disk full"):
        net.fit(X, y, epochs=10, learning_rate=0.5, checkpoint=tmp_path, checkpoint_every=1)
    assert os.listdir(tmp_path) == ["epoch-01.npz"]           # no temporary file left
    assert fio.read_header(tmp_path / "epoch-01.npz")["metadata"]["epoch"] == 1


def test_checkpoint_arguments_are_checked(tmp_path):
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="checkpoint must be a directory; got .*a file"):
        net.fit(X, y, checkpoint=a_file)
    with pytest.raises(TypeError, match="checkpoint must be None or a directory path"):
        net.fit(X, y, checkpoint=3)
    for bad in (0, "last", 2.5, True):
        with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
            net.fit(X, y, checkpoint=tmp_path, checkpoint_every=bad)
    assert os.listdir(tmp_path) == ["f"]


# ---------------------------------------------------------------- verbose ends
def _verbose_fit(capsys, **kw):
    X, y, Xv, yv = _disk()
    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    hist = net.fit(X, y, learning_rate=2.0, batch_size=16, verbose=True, **kw)
    return hist, capsys.readouterr().err.splitlines()[-1]


def test_verbose_says_where_early_stopping_stopped_and_what_it_restored(capsys):
    X, y, Xv, yv = _disk()
    hist, last = _verbose_fit(capsys, epochs=300, validation_data=(Xv, yv),
                              early_stopping=True, patience=3, tol=0.0)
    assert hist.stopped_early
    assert last == (f"stopped early at epoch {len(hist.loss)}, restored epoch "
                    f"{hist.best_epoch} (val_loss {min(hist.val_loss):.6g})")


def test_verbose_says_when_a_callback_stopped(capsys):
    hist, last = _verbose_fit(capsys, epochs=30,
                              callbacks=[lambda n, e, logs: fastmlp.STOP if e == 4 else None])
    assert last == "stopped at epoch 4 by a callback"


def test_verbose_says_nothing_more_when_every_epoch_ran(capsys):
    hist, last = _verbose_fit(capsys, epochs=5)
    assert not last.startswith("stopped") and "restored" not in last


# ------------------------------------------------------- the L-BFGS fit alike
def test_lbfgs_fit_stops_on_the_signal_and_checkpoints(tmp_path, capsys):
    X, y, Xv, yv = _disk()
    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    seen = []
    hist = net.fit(X, y, epochs=30, optimizer="lbfgs", tol=0.0, checkpoint=tmp_path,
                   checkpoint_every=2, verbose=True,
                   callbacks=[lambda n, e, logs: seen.append(e) or str(tmp_path),
                              lambda n, e, logs: fastmlp.STOP if e == 5 else None])
    assert seen == [1, 2, 3, 4, 5] and len(hist.loss) == 5 and hist.stopped_early
    assert sorted(os.listdir(tmp_path)) == ["epoch-02.npz", "epoch-04.npz"]
    assert capsys.readouterr().err.splitlines()[-1] == "stopped at epoch 5 by a callback"
    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    hist = net.fit(X, y, epochs=200, optimizer="lbfgs", tol=0.0, validation_data=(Xv, yv),
                   early_stopping=True, patience=3, checkpoint=tmp_path / "best")
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "best" / "best.npz").params,
                                  net.params)
    assert fio.read_header(tmp_path / "best" / "best.npz")["metadata"]["epoch"] == hist.best_epoch
