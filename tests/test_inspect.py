"""Objects a person can inspect: compact reprs, Network.summary, where the
weights came from, and one epoch numbering (from 1) everywhere."""
import io
import pickle

import numpy as np
import pytest

import fastmlp
from fastmlp import reference


@pytest.fixture(scope="module")
def xor_fit():
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    return net, net.fit(X, y, epochs=5000, learning_rate=1.0)


def test_history_repr_is_one_short_line(xor_fit):
    _, hist = xor_fit
    text = repr(hist)
    assert len(text) < 200 and "\n" not in text
    first, last = hist.loss[0], hist.loss[-1]
    assert text.startswith("History(5000 epochs, loss ")
    assert f"{first:.4g} -> {last:.4g}" in text
    best = int(np.argmin(hist.loss)) + 1
    assert f"(best {min(hist.loss):.4g} at epoch {best})" in text
    assert repr(fastmlp.History()) == "History(0 epochs, 0 s)"


def test_history_repr_with_validation_and_early_stopping():
    X, y = fastmlp.datasets.disk(400)
    hist = fastmlp.Network([2, 8, 1], loss="log_loss", seed=0).fit(
        X, y, epochs=300, learning_rate=0.5, batch_size=32, validation_split=0.25,
        early_stopping=True, patience=3)
    text = repr(hist)
    best = int(np.argmin(hist.val_loss)) + 1
    assert hist.best_epoch == best
    assert f"val_loss {hist.val_loss[0]:.4g} -> {hist.val_loss[-1]:.4g}" in text
    assert f"at epoch {best})" in text and f"stopped early, kept epoch {best}" in text
    best_acc = int(np.argmax(hist.val_accuracy)) + 1
    assert f"(best {max(hist.val_accuracy):.4g} at epoch {best_acc})" in text


def test_history_html_for_notebooks(xor_fit):
    _, hist = xor_fit
    page = hist._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>") and len(page) < 6000
    assert "<td>loss</td>" in page and "5000 epochs" in page and "<svg" in page
    assert "<table>" in fastmlp.History()._repr_html_()


def test_training_record_repr_is_short():
    pytest.importorskip("matplotlib")
    from fastmlp import plot
    X, y = fastmlp.datasets.xor()
    rec = plot.record_training(fastmlp.Network([2, 3, 1], seed=0), X, y, epochs=500,
                               learning_rate=1.0)
    text = repr(rec)
    assert text.startswith("TrainingRecord(500 epochs, loss ") and len(text) < 120
    assert f"accuracy {rec.accuracy[0]:.4g} -> {rec.accuracy[-1]:.4g}" in text
    assert rec.epoch[0] == 1 and rec.epoch[-1] == 500 and rec.snapshots[-1][0] == 500


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network])
def test_summary_lists_layers_and_counts(cls):
    net = cls([4, 5, 3], activation="tanh", output="softmax", loss="log_loss",
              dtype="float32", seed=3)
    text = net.summary()
    lines = text.splitlines()
    assert lines[0] == net._call() and "init='xavier'" in lines[0] and "seed=3" in lines[0]
    assert lines[1].split() == ["layer", "shape", "activation", "weights", "biases", "parameters"]
    assert lines[2].split() == ["1", "4", "->", "5", "tanh", "20", "5", "25"]
    assert lines[3].split() == ["2", "5", "->", "3", "softmax", "(output)", "15", "3", "18"]
    assert lines[4].split() == ["total", "35", "8", "43"]
    assert lines[5] == "float32: 172 bytes of parameters; weights init='xavier', seed=3"
    assert repr(net) == text and net.origin is None


def test_summary_survives_pickling(xor_fit):
    net, _ = xor_fit
    copy = pickle.loads(pickle.dumps(net))
    assert repr(copy) == repr(net) and len(net.summary().splitlines()) == 6


def test_loaded_and_converted_networks_do_not_claim_an_init(tmp_path, xor_fit):
    net, _ = xor_fit
    path = tmp_path / "m.npz"
    net.save(path)
    loaded = fastmlp.load(path)
    assert loaded.origin == f"loaded from {str(path)!r}"
    for text in (repr(loaded), loaded.summary()):
        assert "init=" not in text and "seed=" not in text and "loaded from" in text
    sk = pytest.importorskip("sklearn.neural_network")
    X, y = fastmlp.datasets.xor()
    with pytest.warns(Warning):                  # not converged: no matter
        model = sk.MLPClassifier((3,), max_iter=5, random_state=0).fit(X, y)
    converted = fastmlp.Network.from_sklearn(model)
    assert converted.origin == "converted from sklearn MLPClassifier"
    assert "init=" not in repr(converted) and "seed=" not in repr(converted)


def test_estimator_networks_say_who_drew_their_weights():
    pytest.importorskip("sklearn")
    from fastmlp import MLPClassifier
    X, y = fastmlp.datasets.xor()
    with pytest.warns(Warning):                  # not converged: no matter
        clf = MLPClassifier((3,), max_iter=5, random_state=0).fit(X, y)
    assert "MLPClassifier" in clf.network_.origin and "init=" not in repr(clf.network_)


def test_torch_conversion_origin():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    net = fastmlp.Network.from_torch(model)
    assert net.origin == "converted from torch Sequential"
    assert "init=" not in repr(net) and "converted from torch Sequential" in repr(net)


# ------------------------------------------------------- epochs counted from 1
def test_callbacks_best_epoch_and_bar_count_from_one():
    X, y = fastmlp.datasets.disk(200)
    Xv, yv = fastmlp.datasets.disk(100, seed=1)
    seen, bar_lines = [], io.StringIO()
    from fastmlp import progress
    original = progress.ProgressBar.__init__

    def to_buffer(self, total, **kw):
        original(self, total, file=bar_lines, use_tqdm=False, log_interval=0)

    net = fastmlp.Network([2, 6, 1], loss="log_loss", seed=0)
    progress.ProgressBar.__init__ = to_buffer
    try:
        hist = net.fit(X, y, epochs=7, learning_rate=0.5, validation_data=(Xv, yv),
                       early_stopping=True, patience=50, verbose=True,
                       callbacks=[lambda n, e, logs: seen.append((e, logs["val_loss"]))])
    finally:
        progress.ProgressBar.__init__ = original
    assert [e for e, _ in seen] == list(range(1, 8))
    assert [v for _, v in seen] == hist.val_loss
    assert hist.val_loss[hist.best_epoch - 1] == min(hist.val_loss)
    assert "epoch 1/7" in bar_lines.getvalue() and "epoch 7/7" in bar_lines.getvalue()


def test_divergence_epoch_counts_from_one():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    Y = np.array([0, 1, 1, 0], float) * 1e3
    net = fastmlp.Network([2, 3, 1], output="identity", seed=0)
    with pytest.raises(fastmlp.DivergenceError) as info:
        net.fit(X, Y, epochs=200, learning_rate=50.0, shuffle=False)
    err = info.value
    assert len(err.history.loss) == err.epoch - 1 and f"at epoch {err.epoch}:" in str(err)
