"""fastmlp.plot: figures render headless to files with real content."""
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import fastmlp  # noqa: E402
from fastmlp import plot  # noqa: E402


def _pixels(path):
    """The image as a float array (every frame stacked for a GIF)."""
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
        frames = [np.asarray(f.convert("RGB"), dtype=float) for f in ImageSequence.Iterator(im)]
    return np.stack(frames)


def _assert_rich_image(path, min_bytes=10_000):
    assert path.stat().st_size > min_bytes
    px = _pixels(path)
    assert px.std() > 20                                   # not a blank canvas
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50  # many colours: curves, shading, text


@pytest.fixture(scope="module")
def xor_record():
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    rec = plot.record_training(net, X, y, 5000, learning_rate=1.0)
    return net, X, y, rec


def test_plot_module_does_not_import_matplotlib_until_called():
    code = ("import sys, fastmlp, fastmlp.plot; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_record_training(xor_record):
    net, X, y, rec = xor_record
    assert rec.epoch == list(range(1, 5001))
    assert len(rec.loss) == len(rec.accuracy) == 5000
    assert rec.loss == rec.history.loss
    assert rec.accuracy[-1] == 1.0 and rec.loss[-1] < rec.loss[0]
    epochs = [e for e, _ in rec.snapshots]
    assert epochs[0] == 0 and epochs[-1] == 5000 and 25 <= len(epochs) <= 40
    np.testing.assert_array_equal(rec.snapshots[-1][1], net.params)


def test_three_panel_view_png(tmp_path, xor_record):
    net, X, y, rec = xor_record
    path = tmp_path / "xor.png"
    fig = plot.training_view(net, X, y, rec, path=path, title="XOR 2-3-1")
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("accuracy 100") and titles[1].startswith("decision boundary")
    assert titles[2].startswith("loss")
    _assert_rich_image(path)


def test_three_panel_view_from_a_dict(tmp_path):
    X, y = fastmlp.datasets.disk(200, seed=0)
    net = fastmlp.Network([2, 8, 1], activation="tanh", loss="log_loss", seed=0)
    net.fit(X, y, epochs=50, learning_rate=0.5, batch_size=32)
    fig = plot.training_view(net, X, y, {"loss": [0.7, 0.5, 0.3], "accuracy": [0.5, 0.7, 0.9]},
                             path=tmp_path / "v.png")
    assert len(fig.axes) == 3
    _assert_rich_image(tmp_path / "v.png")


def test_learning_curves_with_validation(tmp_path):
    X, y = fastmlp.datasets.disk(300, seed=1)
    net = fastmlp.Network([2, 16, 1], activation="tanh", loss="log_loss", seed=0)
    hist = net.fit(X, y, epochs=40, learning_rate=0.5, batch_size=32, validation_split=0.25)
    path = tmp_path / "curves.png"
    fig = plot.learning_curves(hist, path=path, title="disk")
    loss_ax, acc_ax = fig.axes
    assert [l.get_label() for l in loss_ax.get_lines()] == ["train", "validation"]
    assert len(loss_ax.get_lines()[0].get_xdata()) == 40
    assert [l.get_label() for l in acc_ax.get_lines()] == ["validation"]
    _assert_rich_image(path)


def test_learning_curves_loss_only_and_record(tmp_path, xor_record):
    _, _, _, rec = xor_record
    X, y = fastmlp.datasets.xor()
    hist = fastmlp.Network([2, 3, 1], seed=0).fit(X, y, epochs=100, learning_rate=1.0)
    fig = plot.learning_curves(hist)
    assert len(fig.axes) == 1
    fig = plot.learning_curves(rec, path=tmp_path / "rec.png")
    assert [l.get_label() for l in fig.axes[1].get_lines()] == ["train"]
    _assert_rich_image(tmp_path / "rec.png")
    with pytest.raises(TypeError, match="History"):
        plot.learning_curves(42)
    with pytest.raises(ValueError, match="no epochs"):
        plot.learning_curves({"loss": []})


def test_learning_curves_from_an_estimator(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_moons
    from fastmlp.estimators import MLPClassifier
    X, y = make_moons(200, noise=0.2, random_state=0)
    clf = MLPClassifier((8,), early_stopping=True, max_iter=30, random_state=0).fit(X, y)
    fig = plot.learning_curves(clf, path=tmp_path / "est.png")
    assert len(fig.axes) == 2
    _assert_rich_image(tmp_path / "est.png")
    fig = plot.decision_boundary(clf, X, y, path=tmp_path / "est_db.png")
    _assert_rich_image(tmp_path / "est_db.png")


def test_decision_boundary_binary_and_multiclass(tmp_path):
    X, y = fastmlp.datasets.spirals(300, seed=0)
    net = fastmlp.Network([2, 32, 1], activation="tanh", loss="log_loss", seed=0)
    net.fit(X, y, epochs=100, learning_rate=0.5, batch_size=32)
    fig = plot.decision_boundary(net, X, y, path=tmp_path / "bin.png")
    assert len(fig.axes) == 1
    _assert_rich_image(tmp_path / "bin.png")

    rng = np.random.default_rng(0)
    X3 = rng.normal(size=(200, 2)).astype(np.float32)
    y3 = np.digitize(X3[:, 0], [-0.5, 0.5])
    net3 = fastmlp.Network([2, 8, 3], activation="relu", output="softmax", loss="log_loss",
                           dtype="float32", seed=0)
    net3.fit(X3, y3, epochs=50, learning_rate=0.5, batch_size=32)
    plot.decision_boundary(net3, X3, y3, path=tmp_path / "multi.png")
    _assert_rich_image(tmp_path / "multi.png")
    # any callable scoring points
    plot.decision_boundary(lambda P: P[:, 0] * P[:, 1] > 0, X, y, path=tmp_path / "fn.png")
    _assert_rich_image(tmp_path / "fn.png")


def test_decision_boundary_needs_2d_points():
    net = fastmlp.Network([3, 1], seed=0)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot.decision_boundary(net, np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(TypeError, match="Network"):
        plot.decision_boundary(object(), np.zeros((5, 2)), np.zeros(5))


def test_animated_gif_of_training(tmp_path):
    pytest.importorskip("PIL")
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    path = tmp_path / "xor.gif"
    rec = plot.animate_training(net, X, y, 2000, path, frames=6, fps=4, learning_rate=1.0)
    px = _pixels(path)
    assert px.shape[0] == len(rec.snapshots) >= 6
    assert np.abs(px[0] - px[-1]).mean() > 1       # the frames change as it learns
    _assert_rich_image(path)
    np.testing.assert_array_equal(net.params, rec.snapshots[-1][1])   # ends trained


# ------------------------------------------------------------- issue 26 items
def test_decision_boundary_has_a_class_legend_and_dark_edged_points(tmp_path):
    X, y = fastmlp.datasets.disk(300, seed=0)
    net = fastmlp.Network([2, 16, 1], activation="tanh", loss="log_loss", seed=0)
    net.fit(X, y, epochs=60, learning_rate=0.5, batch_size=32)
    fig = plot.decision_boundary(net, X, y)
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["class 0", "class 1"]
    assert legend.get_title().get_text() == "shade: P(class 1)"
    points = ax.collections[-2:]                      # one scatter per class
    assert [len(p.get_offsets()) for p in points] == [np.sum(y == 0), np.sum(y == 1)]
    for p in points:
        # dark edges: a point stays visible on the shading of its own class
        assert np.all(p.get_edgecolors()[:, :3] < 0.1)
    # different markers per class (their paths differ)
    assert not np.array_equal(points[0].get_paths()[0].vertices, points[1].get_paths()[0].vertices)


def test_decision_boundary_of_three_classes_is_smooth_with_named_classes(tmp_path):
    pytest.importorskip("sklearn")
    from fastmlp.estimators import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    names = np.array(["east", "north", "west"])
    y = names[np.digitize(np.arctan2(X[:, 1], X[:, 0]), [-1.5, 0.5, 2]) % 3]
    clf = MLPClassifier(hidden_layer_sizes=(16,), activation="tanh", max_iter=200,
                        random_state=0)
    import warnings
    with warnings.catch_warnings():              # "not converged" or not: drawn anyway
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    fig = plot.decision_boundary(clf, X, y, path=tmp_path / "three.png", resolution=120)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"class {n}" for n in names]
    image = ax.get_images()[0].get_array()
    # probability-weighted colours: far more than three (an argmax image has three)
    assert len(np.unique(np.round(image.reshape(-1, 3), 4), axis=0)) > 500
    # and the borders between the most probable classes are drawn as lines
    assert len(ax.collections) >= 3 + 2
    _assert_rich_image(tmp_path / "three.png")


def test_learning_curves_mark_the_best_epoch(tmp_path):
    X, y = fastmlp.datasets.disk(300, seed=1)
    net = fastmlp.Network([2, 16, 1], activation="tanh", loss="log_loss", seed=0)
    hist = net.fit(X, y, epochs=200, learning_rate=0.5, batch_size=32, validation_split=0.25,
                   early_stopping=True, patience=10)
    assert hist.best_epoch is not None and hist.best_epoch < len(hist.loss)
    fig = plot.learning_curves(hist, path=tmp_path / "best.png")
    for ax in fig.axes:
        marks = [line for line in ax.get_lines()
                 if line.get_label() == f"best epoch {hist.best_epoch}"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [hist.best_epoch] * 2
    dot = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert list(dot[0].get_ydata()) == [hist.val_loss[hist.best_epoch - 1]]
    # without a best epoch: no mark
    plain = fastmlp.Network([2, 3, 1], seed=0).fit(X, y, epochs=5, learning_rate=0.5)
    assert not any("best" in line.get_label() for line in
                   plot.learning_curves(plain).axes[0].get_lines())
