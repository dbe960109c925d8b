"""`fastmlp train --mpi` under mpiexec: each rank reads its rows of the CSV file."""
import numpy as np
import pytest

pytest.importorskip("mpi4py")

import fastmlp  # noqa: E402
import fastmlp.io  # noqa: E402
from mpi_support import run_ranks  # noqa: E402


def _csv(path, n=400, bad_line=None):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{v}" for r, v in zip(X, y)]
    if bad_line is not None:
        lines[bad_line] = "1,2,oops,0"
    path.write_text("\n".join(lines) + "\n")
    return X, y


def test_train_on_two_ranks_saves_one_model_that_scores(tmp_path):
    X, y = _csv(tmp_path / "d.csv")
    model = tmp_path / "m.npz"
    proc = run_ranks(2, ["-m", "fastmlp", "train", str(tmp_path / "d.csv"), "--target", "label",
                         "--hidden", "8", "--epochs", "60", "--lr", "0.01", "--mpi", "--quiet",
                         "--out", str(model)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("400 rows on 2 ranks") == 1        # rank 0 alone prints
    assert "320 training / 80 held-out rows" in out
    accuracy = float(out.split("held-out accuracy ")[1].split("%")[0])
    assert accuracy > 90
    net = fastmlp.load(model)
    assert np.mean((net.predict(X)[:, 0] > 0.5) == y) > 0.9
    assert fastmlp.io.read_header(model)["metadata"]["classes"] == [0, 1]
    assert not (tmp_path / "m.npz.json").exists()          # one file


def test_word_labels_over_ranks_that_see_different_classes(tmp_path):
    # rank 0 reads the even rows (only 'east' and 'west'), rank 1 the odd ones (only 'north')
    rng = np.random.default_rng(2)
    rows = []
    names = [("east" if i % 4 == 0 else "west") if i % 2 == 0 else "north" for i in range(240)]
    centre = {"east": (4, 0), "west": (-4, 0), "north": (0, 4)}
    for name in names:
        x = np.array(centre[name]) + rng.normal(size=2)
        rows.append(f"{x[0]:.5f},{x[1]:.5f},{name}")
    (tmp_path / "w.csv").write_text("\n".join(["x1,x2,where"] + rows) + "\n")
    model = tmp_path / "w.npz"
    proc = run_ranks(2, ["-m", "fastmlp", "train", str(tmp_path / "w.csv"), "--target", "where",
                         "--hidden", "8", "--epochs", "40", "--lr", "0.01", "--mpi", "--quiet",
                         "--out", str(model)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "classification with 3 classes" in proc.stdout
    assert float(proc.stdout.split("held-out accuracy ")[1].split("%")[0]) > 90
    assert fastmlp.io.read_header(model)["metadata"]["classes"] == ["east", "north", "west"]


def test_a_bad_row_in_one_ranks_share_is_the_same_error_on_every_rank(tmp_path):
    _csv(tmp_path / "d.csv", n=40, bad_line=6)          # data row 5: rank 1's
    proc = run_ranks(2, ["-m", "fastmlp", "train", str(tmp_path / "d.csv"), "--target", "label",
                         "--mpi", "--quiet", "--out", str(tmp_path / "m.npz")], timeout=60)
    assert proc.returncode != 0
    # both ranks print the same one-line error (their writes may land on one
    # line of the shared stderr when they coincide, so count the message)
    message = "fastmlp train: error: rank 1 of 2: "
    assert proc.stderr.count(message) == 2, proc.stderr
    assert proc.stderr.count("line 7, column 'c': 'oops' is not a number") == 2


def test_regression_on_three_ranks_scales_and_scores_over_every_rank(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2)) * [1.0, 1000.0]
    y = 3 * X[:, 0] + X[:, 1] / 500 + 100
    lines = ["a,b,y"] + [f"{r[0]:.6f},{r[1]:.6f},{v:.6f}" for r, v in zip(X, y)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "r.npz"
    proc = run_ranks(3, ["-m", "fastmlp", "train", str(tmp_path / "r.csv"), "--target", "y",
                         "--hidden", "", "--epochs", "200", "--lr", "0.01", "--mpi", "--quiet",
                         "--out", str(model)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "300 rows on 3 ranks" in proc.stdout and ": regression" in proc.stdout
    r2 = float(proc.stdout.split("held-out R^2 ")[1].split(",")[0])
    assert r2 > 0.99
    net = fastmlp.load(model)                # the scaling folded in: raw rows, raw targets
    np.testing.assert_allclose(net.predict(X)[:, 0], y, atol=0.5)
