"""The command line and the demo (the main job)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
import fastmlp.io
from fastmlp import cli


def _strip_metadata(model):
    """Re-save ``model`` without its columns and classes (as saved before they
    were stored in the file, or by fastmlp.io.save)."""
    fastmlp.io.save(fastmlp.io.load(model), model)


def test_demo_xor_prints_loss_and_full_accuracy(capsys):
    assert cli.main(["demo", "xor"]) == 0
    out = capsys.readouterr().out
    assert out.count("loss") >= 10 and "accuracy 100%" in out


def test_demo_disk(capsys):
    assert cli.main(["demo", "disk"]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy ")[1].split("%")[0])
    assert acc >= 95.0


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_unknown_demo_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "mnist"])
    assert info.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_python_dash_m_runs_the_demo():
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "demo", "xor"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy 100%" in proc.stdout


# ------------------------------------------------------------ demo --plot
def test_demo_plot_writes_the_three_panels(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "xor.png"
    assert cli.main(["demo", "xor", "--plot", str(path)]) == 0
    assert f"plot: {path}" in capsys.readouterr().out
    assert path.stat().st_size > 10_000


def test_demo_plot_with_several_demos_names_files_per_demo(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "run_demo", lambda task, **kw: calls.append((task, kw["plot"])) or True)
    assert cli.main(["demo", "xor", "disk", "--plot", str(tmp_path / "out.png")]) == 0
    assert calls == [("xor", str(tmp_path / "out-xor.png")), ("disk", str(tmp_path / "out-disk.png"))]


# ------------------------------------------------------- train / predict
def _write_csv(path, header, rows):
    with open(path, "w") as fh:
        fh.write(",".join(header) + "\n")
        for r in rows:
            fh.write(",".join(repr(float(v)) if not float(v).is_integer() else str(int(v))
                              for v in r) + "\n")


def _read(path):
    import csv
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


@pytest.fixture
def blobs_csv(tmp_path):
    """Three classes labelled 3, 5, 7 around different centres, target in the middle column."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [4, 4, 0], [0, 4, 4]], float)
    labels = rng.integers(0, 3, size=300)
    X = centres[labels] + rng.normal(size=(300, 3))
    y = np.array([3, 5, 7])[labels]
    path = tmp_path / "blobs.csv"
    _write_csv(path, ["a", "label", "b", "c"], np.c_[X[:, 0], y, X[:, 1:]])
    return path, X, y


def test_train_and_predict_classification_end_to_end(tmp_path, blobs_csv, capsys):
    path, X, y = blobs_csv
    model = tmp_path / "blobs.npz"
    code = cli.main(["train", str(path), "--target", "label", "--hidden", "16,8",
                     "--epochs", "60", "--lr", "0.01", "--out", str(model), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "classification with 3 classes" in out and "3-16-8-3" in out
    acc = float(out.split("held-out accuracy ")[1].split("%")[0])
    assert acc >= 90
    # one file: the network and its columns and classes (no sidecar)
    assert model.exists() and not (tmp_path / "blobs.npz.json").exists()
    meta = fastmlp.io.read_header(model)["metadata"]
    assert meta["features"] == ["a", "b", "c"] and meta["classes"] == [3, 5, 7]

    preds = tmp_path / "preds.csv"
    assert cli.main(["predict", str(model), str(path), "--out", str(preds), "--proba"]) == 0
    header, rows = _read(preds)
    assert header == ["label", "p_3", "p_5", "p_7"]
    got = np.array([int(r[0]) for r in rows])
    assert set(got) <= {3, 5, 7} and np.mean(got == y) >= 0.9
    P = np.array([[float(v) for v in r[1:]] for r in rows])
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)


def test_train_and_predict_regression_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(400, 2)) * [100, 0.01]          # wildly different scales
    y = 3 * X[:, 0] / 100 - 200 * X[:, 1] + 50 + rng.normal(scale=0.05, size=400)
    data = tmp_path / "reg.csv"
    _write_csv(data, ["x1", "x2", "y"], np.c_[X, y])
    model = tmp_path / "reg.npz"
    assert cli.main(["train", str(data), "--target", "y", "--hidden", "16", "--activation", "tanh",
                     "--epochs", "80", "--lr", "0.01", "--dtype", "float64", "--out", str(model),
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "regression" in out
    r2 = float(out.split("held-out R^2 ")[1].split(",")[0])
    assert r2 > 0.95
    # the saved network takes raw rows and gives raw targets (scaling folded in)
    assert cli.main(["predict", str(model), str(data)]) == 0
    header, rows = _read_lines(capsys.readouterr().out)
    assert header == ["y"]
    pred = np.array([float(r[0]) for r in rows])
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.2 * y.std()


def test_train_with_dropout_saves_it_and_learns(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    data = tmp_path / "d.csv"
    _write_csv(data, ["a", "b", "y"], np.c_[X, y])
    model = tmp_path / "d.npz"
    assert cli.main(["train", str(data), "--target", "y", "--hidden", "16", "--epochs", "60",
                     "--dropout", "0.2", "--quiet", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert ", dropout 0.2" in out
    assert float(out.split("held-out accuracy ")[1].split("%")[0]) > 90
    assert fastmlp.io.load(model).dropout == 0.2


def test_mpi_train_refuses_dropout():
    args = cli.build_parser().parse_args(["train", "d.csv", "--target", "y", "--mpi",
                                          "--dropout", "0.2"])
    with pytest.raises(cli.CLIError, match="--dropout 0.2 runs in one process"):
        cli._check_train_args(args)


def _read_lines(text):
    import csv
    rows = list(csv.reader(text.splitlines()))
    return rows[0], rows[1:]


def test_binary_without_sidecar_uses_all_columns(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    data = tmp_path / "bin.csv"
    _write_csv(data, ["p", "q", "target"], np.c_[X, y])
    model = tmp_path / "bin.npz"
    assert cli.main(["train", str(data), "--target", "target", "--epochs", "100", "--lr", "0.01",
                     "--optimizer", "adam", "--test-size", "0", "--quiet",
                     "--out", str(model)]) == 0
    assert "held-out accuracy" not in capsys.readouterr().out
    # a model for predicting: Adam's moments (twice the parameters) are not saved
    from fastmlp import _format
    assert "optimizer" not in _format.read_header(str(model))
    _strip_metadata(model)
    inputs = tmp_path / "inputs.csv"
    _write_csv(inputs, ["p", "q"], X)
    assert cli.main(["predict", str(model), str(inputs)]) == 0
    header, rows = _read_lines(capsys.readouterr().out)
    assert header == ["prediction"]
    assert np.mean(np.array([int(r[0]) for r in rows]) == y) > 0.9
    # the file with the target has one column too many, and nothing says which
    assert cli.main(["predict", str(model), str(data)]) == 1
    err = capsys.readouterr().err
    assert "3 columns but the model takes 2 inputs" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "{missing}", "--target", "y"], "cannot read"),
    (["train", "{data}", "--target", "nope"], "'nope' is not a column"),
    (["train", "{bad}", "--target", "y"], "line 3, column 'x': 'abc' is not a number"),
    (["train", "{hole}", "--target", "y"], "a missing value is not a number"),
    (["train", "{data}", "--target", "y", "--hidden", "4,x"], "--hidden must be sizes"),
    (["train", "{data}", "--target", "y", "--task", "classification"], "whole-number"),
    (["train", "{data}", "--target", "y", "--epochs", "0"], "--epochs out of range"),
    (["train", "{data}", "--target", "y", "--dropout", "1"], "--dropout out of range: 1.0"),
    (["train", "{data}", "--target", "y", "--dropout", "-0.1"], "--dropout out of range"),
    (["predict", "{missing}", "{data}"], "does not exist"),
    (["predict", "{notamodel}", "{data}"], "notamodel"),
])
def test_errors_are_one_line_and_exit_1(tmp_path, capsys, argv, message):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,0.5\n2,1.5\n3,2.5\n4,3.25\n5,4.5\n6,5.5\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\nabc,3\n")
    hole = tmp_path / "hole.csv"
    hole.write_text("x,y\n1,2\n,3\n")
    notamodel = tmp_path / "notamodel.npz"
    notamodel.write_text("hello")
    paths = dict(missing=tmp_path / "missing.csv", data=data, bad=bad, hole=hole,
                 notamodel=notamodel)
    argv = [a.format(**paths) for a in argv]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"fastmlp {argv[0]}: error: ") and message in err


def test_usage_errors_are_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "data.csv"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--target" in err and "fastmlp train --help" in err


@pytest.mark.parametrize("command, words", [
    ([], ["demo", "train", "predict", "bench", "examples"]),
    (["demo"], ["xor", "disk", "--plot", "--dtype", "--seed"]),
    (["train"], ["--target", "--hidden", "--epochs", "--lr", "--batch-size", "--optimizer",
                 "--activation", "--task", "--test-size", "--early-stopping", "--out",
                 "--dtype", "--seed", "--l2", "--momentum", "--quiet", "--no-standardize",
                 "--delimiter", "words"]),
    (["predict"], ["MODEL.npz", "DATA.csv", "--out", "--proba", "--keep", "--delimiter"]),
    (["bench"], ["--quick", "--bench-dir", "compare.py"]),
])
def test_help_is_complete(capsys, command, words):
    with pytest.raises(SystemExit) as info:
        cli.main(command + ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for w in words:
        assert w in out, w


# ------------------------------------------------------------------ bench
def test_bench_without_the_bench_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["bench", "--bench-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bench/compare.py not found" in err and len(err.strip().splitlines()) == 1


def test_bench_runs_compare_py_on_the_no_install_workloads(tmp_path, capfd):
    (tmp_path / "compare.py").write_text(
        "import sys\nprint('ARGS', ' '.join(sys.argv[1:]))\nsys.exit(0)\n")
    assert cli.main(["bench", "--bench-dir", str(tmp_path), "--quick"]) == 0
    out = capfd.readouterr().out
    args = out.split("ARGS ")[1].split()
    assert args[args.index("--systems") + 1] == "fastmlp-f32,fastmlp-f64,numpy"
    workloads = args[args.index("--workloads") + 1].split(",")
    assert {"xor", "mnist-shape", "predict-1", "predict-batch", "sgemm"} <= set(workloads)
    assert "--quick" in args
    assert cli.main(["bench", "--bench-dir", str(tmp_path), "--", "--workloads", "xor",
                     "--repeats", "9"]) == 0
    args = capfd.readouterr().out.split("ARGS ")[1].split()
    assert args[args.index("--workloads") + 1] == "xor" and args.count("--workloads") == 1
    assert args[-2:] == ["--repeats", "9"]


def test_python_dash_m_train_and_predict(tmp_path, blobs_csv):
    path, _, _ = blobs_csv
    model = tmp_path / "m.npz"
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "train", str(path), "--target",
                           "label", "--epochs", "20", "--out", str(model)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy" in proc.stdout
    assert "20/20" in proc.stderr            # the progress bar
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "predict", str(model), str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "label" and len(proc.stdout.splitlines()) == 301


# ------------------------------------------------------------- issue 24 item 8
def _child_env():
    import os
    import fastmlp
    env = dict(os.environ)     # the child imports the fastmlp this process tests
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _one_line_error(capsys, argv, *words):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"fastmlp {argv[0]}: error: "), err
    for w in words:
        assert w in err, (w, err)
    return err


def test_duplicate_column_names_are_refused(tmp_path, capsys):
    # issue 24: trained on a,a,label, a predict on a,a rows (1, 100) gave the
    # model's output for [1, 1]
    dup = tmp_path / "dup.csv"
    _write_csv(dup, ["a", "a", "label"], [[i, 100 - i, i % 2] for i in range(20)])
    _one_line_error(capsys, ["train", str(dup), "--target", "label", "--out",
                             str(tmp_path / "m.npz")], "columns 1 and 2 are both named 'a'")
    good = tmp_path / "good.csv"
    _write_csv(good, ["a", "b", "label"], [[i, 100 - i, i % 2] for i in range(20)])
    assert cli.main(["train", str(good), "--target", "label", "--epochs", "2", "--quiet",
                     "--out", str(tmp_path / "m.npz")]) == 0
    capsys.readouterr()
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,b\n1,100,3\n")
    _one_line_error(capsys, ["predict", str(tmp_path / "m.npz"), str(rows)],
                    "columns 2 and 3 are both named 'b'")


LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))
from fastmlp import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("option, value, words", [
    ("--hidden", "100000000", ["--hidden", "2-100000000-1", "address-space limit is 4 GiB"]),
    ("--epochs", "1000000000", ["--epochs", "to record 1000000000 epochs"]),
])
def test_a_run_too_big_for_memory_is_one_clear_line(tmp_path, option, value, words):
    # issue 24: 17-23-line MemoryError tracebacks; here under a 4 GiB address-space limit
    data = tmp_path / "d.csv"
    _write_csv(data, ["p", "q", "y"], [[i, i % 3, i % 2] for i in range(10)])
    proc = subprocess.run([sys.executable, "-c", LIMITED, "train", str(data), "--target", "y",
                           option, value, "--quiet", "--out", str(tmp_path / "m.npz")],
                          capture_output=True, text=True, timeout=120, env=_child_env())
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp train: error: this run needs"), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "m.npz").exists()


def test_out_of_memory_anywhere_is_one_line(tmp_path, capsys, monkeypatch):
    import fastmlp

    def no_memory(self, *args, **kwargs):
        raise MemoryError("Unable to allocate 7.45 GiB for an array with shape (1000000000,)")

    monkeypatch.setattr(fastmlp.Network, "fit", no_memory)
    data = tmp_path / "d.csv"
    _write_csv(data, ["p", "y"], [[i, i % 2] for i in range(10)])
    _one_line_error(capsys, ["train", str(data), "--target", "y"],
                    "out of memory (Unable to allocate 7.45 GiB")


@pytest.mark.parametrize("sidecar, words", [
    ("[1, 2]", ["must hold a JSON object", "got a JSON array"]),
    ('"abc"', ["got a JSON string"]),
    ("3", ["got a JSON number"]),
    ('{"features": {"p": 1}}', ["'features' must be a list of column names"]),
    ('{"features": ["p", "p"]}', ["'features' names 'p' more than once"]),
    ('{"features": ["p"]}', ["names 1 input columns but the model takes 2"]),
    ('{"target": ["y"]}', ["'target' must be a column name"]),
    ('{"classes": {"0": "a"}}', ["'classes' must be a list of class labels"]),
    ('{"features": ["p", "q"], "classes": ["a", "b", "c"]}',
     ["lists 3 classes but the model tells 2 apart"]),
])
def test_a_malformed_sidecar_is_one_clear_line(tmp_path, capsys, sidecar, words):
    data, model = _small_model(tmp_path, capsys)
    _strip_metadata(model)                      # an older model: names in the sidecar
    (tmp_path / "m.npz.json").write_text(sidecar)
    _one_line_error(capsys, ["predict", str(model), str(data)], "m.npz.json", *words)


@pytest.fixture
def huge_csv(tmp_path):
    """Finite values up to +-1e308 in column a, a classification target."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] > 0).astype(int)
    X[:, 0] *= 2e307                           # at most ~8e307 here
    X[:2, 0] = [1e308, -1e308]
    y[:2] = [1, 0]
    path = tmp_path / "huge.csv"
    _write_csv(path, ["a", "b", "label"], np.c_[X, y])
    return path, X, y


def test_finite_values_up_to_1e308_train_and_predict(tmp_path, huge_csv, capsys):
    # issue 24: overflow warnings, then "got NaN at X[0, 0]"
    import warnings
    path, X, y = huge_csv
    model = tmp_path / "m.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no overflow warning anywhere
        assert cli.main(["train", str(path), "--target", "label", "--epochs", "30",
                         "--quiet", "--out", str(model)]) == 0
        out = capsys.readouterr().out
        assert "float64: column 'a' holds 1e+308, beyond float32's range" in out
        assert float(out.split("held-out accuracy ")[1].split("%")[0]) >= 90
        assert cli.main(["predict", str(model), str(path)]) == 0
    _, rows = _read_lines(capsys.readouterr().out)
    assert np.mean(np.array([int(r[0]) for r in rows]) == y) >= 0.9
    # asked for float32 explicitly: a clear error, not a guess
    _one_line_error(capsys, ["train", str(path), "--target", "label", "--dtype", "float32",
                             "--out", str(tmp_path / "f32.npz")],
                    "--dtype float32 cannot hold this data", "column 'a' holds 1e+308",
                    "--dtype float64")


def test_huge_values_for_a_float32_model_are_a_clear_error(tmp_path, huge_csv, capsys):
    path, X, y = huge_csv
    small = tmp_path / "small.csv"
    _write_csv(small, ["a", "b", "label"], np.c_[X[:, 0] / 1e270, X[:, 1], y])
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(small), "--target", "label", "--epochs", "2", "--quiet",
                     "--out", str(model)]) == 0
    assert "float64" not in capsys.readouterr().out          # the data fit float32
    _one_line_error(capsys, ["predict", str(model), str(path)],
                    "column 'a': 1e+308 is beyond the float32 model's range")


def test_a_regression_target_near_1e308(tmp_path, capsys):
    import warnings
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(300, 2))
    y = (2 * X[:, 0] - X[:, 1]) * 5e307
    data = tmp_path / "reg.csv"
    _write_csv(data, ["x1", "x2", "y"], np.c_[X, y])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["train", str(data), "--target", "y", "--hidden", "16", "--epochs", "60",
                         "--lr", "0.01", "--quiet", "--out", str(tmp_path / "r.npz")]) == 0
    out = capsys.readouterr().out
    assert "float64: the target 'y' holds" in out
    assert float(out.split("held-out R^2 ")[1].split(",")[0]) > 0.9


# ------------------------------------------------------------- issue 26: real CSV files
@pytest.fixture
def species_csv(tmp_path):
    """Three species named by words, an id column of words, the target last."""
    rng = np.random.default_rng(5)
    names = np.array(["setosa", "versicolor", "virginica"])
    k = rng.integers(0, 3, size=240)
    X = np.array([[0, 0], [5, 0], [0, 5]], float)[k] + rng.normal(size=(240, 2))
    path = tmp_path / "species.csv"
    with open(path, "w") as fh:
        fh.write("id,width,length,species\n")
        for i, (row, s) in enumerate(zip(X, names[k])):
            fh.write(f"r{i:03d},{float(row[0])!r},{float(row[1])!r},{s}\n")
    return path, X, names[k]


def test_word_class_labels_train_and_predict_as_words(tmp_path, species_csv, capsys):
    path, X, species = species_csv
    model = tmp_path / "species.npz"
    # the id column is text: train reads every column but the target as an input
    _one_line_error(capsys, ["train", str(path), "--target", "species", "--out", str(model)],
                    "line 2, column 'id': 'r000' is not a number")
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(",".join(line.split(",")[1:])
                               for line in path.read_text().splitlines()) + "\n")
    assert cli.main(["train", str(plain), "--target", "species", "--hidden", "8",
                     "--epochs", "40", "--lr", "0.01", "--quiet", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert "classification with 3 classes" in out
    assert float(out.split("held-out accuracy ")[1].split("%")[0]) >= 90
    assert fastmlp.io.read_header(model)["metadata"]["classes"] == ["setosa", "versicolor",
                                                                    "virginica"]
    # predict ignores the id and species columns (not numbers, not inputs) ...
    assert cli.main(["predict", str(model), str(path), "--proba"]) == 0
    header, rows = _read_lines(capsys.readouterr().out)
    assert header == ["species", "p_setosa", "p_versicolor", "p_virginica"]
    got = np.array([r[0] for r in rows])
    assert set(got) <= set(species) and np.mean(got == species) >= 0.9
    # ... and --keep passes them through, before the predictions
    assert cli.main(["predict", str(model), str(path), "--keep", "id", "--keep", "species"]) == 0
    header, rows = _read_lines(capsys.readouterr().out)
    assert header == ["id", "species", "predicted_species"]
    assert [r[0] for r in rows[:3]] == ["r000", "r001", "r002"]
    assert [r[1] for r in rows] == list(species)
    _one_line_error(capsys, ["predict", str(model), str(path), "--keep", "id,name"],
                    "--keep name: not a column of")


def test_word_labels_cannot_be_a_regression_target(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,a\n2,b\n3,a\n4,b\n5,a\n")
    _one_line_error(capsys, ["train", str(data), "--target", "y", "--task", "regression"],
                    "--task regression needs a numeric target; 'y' holds 'a'")
    data.write_text("x,y\n1,a\n2,a\n3,a\n")
    _one_line_error(capsys, ["train", str(data), "--target", "y"], "a single class ('a')")
    data.write_text("x,y\n1,a\n2,\n3,b\n")
    _one_line_error(capsys, ["train", str(data), "--target", "y"],
                    "line 3, column 'y': a missing value")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-Infinity"])
def test_a_non_finite_cell_names_its_line_and_column(tmp_path, capsys, cell):
    data = tmp_path / "nan.csv"
    data.write_text(f"x,z,y\n1,2,0\n3,{cell},1\n5,6,0\n")
    err = _one_line_error(capsys, ["train", str(data), "--target", "y"],
                          f"nan.csv, line 3, column 'z': '{cell}' is not a finite number")
    assert "contains NaN" not in err
    data.write_text(f"x,z,y\n1,2,0\n3,4,{cell}\n")              # the target too
    _one_line_error(capsys, ["train", str(data), "--target", "y"],
                    f"line 3, column 'y': '{cell}' is not a finite number")


def _small_model(tmp_path, capsys):
    """(data, model): a 20-row binary CSV d.csv and m.npz trained 2 epochs on it."""
    data = tmp_path / "d.csv"
    _write_csv(data, ["p", "q", "y"], [[i, i % 3, i % 2] for i in range(20)])
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(data), "--target", "y", "--epochs", "2", "--quiet",
                     "--out", str(model)]) == 0
    capsys.readouterr()
    return data, model


def test_predict_reads_only_the_model_columns(tmp_path, capsys):
    data, model = _small_model(tmp_path, capsys)
    rows = tmp_path / "rows.csv"
    rows.write_text("note,q,id,p\nhello,1,a,2\n,0,b,3\n")       # other order, text columns
    assert cli.main(["predict", str(model), str(rows), "--keep", "id"]) == 0
    header, got = _read_lines(capsys.readouterr().out)
    assert header == ["id", "y"] and [r[0] for r in got] == ["a", "b"]
    rows.write_text("q,id,p\n1,a,nan\n")
    _one_line_error(capsys, ["predict", str(model), str(rows)],
                    "line 2, column 'p': 'nan' is not a finite number")
    # without the names, the columns but --keep's are the inputs, in order
    _strip_metadata(model)
    rows.write_text("id,p,q\na,2,1\nb,3,0\n")
    assert cli.main(["predict", str(model), str(rows), "--keep", "id"]) == 0
    header, got = _read_lines(capsys.readouterr().out)
    assert header == ["id", "prediction"] and len(got) == 2
    _one_line_error(capsys, ["predict", str(model), str(rows)],
                    "has 3 columns but the model takes 2 inputs")


def test_old_sidecar_models_still_predict_with_their_labels(tmp_path, capsys):
    data, model = _small_model(tmp_path, capsys)
    _strip_metadata(model)
    (tmp_path / "m.npz.json").write_text(json.dumps(
        {"fastmlp_cli": 1, "task": "classification", "target": "label", "features": ["q", "p"],
         "classes": ["no", "yes"]}))
    assert cli.main(["predict", str(model), str(data)]) == 0
    header, got = _read_lines(capsys.readouterr().out)
    assert header == ["label"] and {r[0] for r in got} <= {"no", "yes"} and len(got) == 20


@pytest.mark.parametrize("delimiter, sep", [(";", ";"), ("tab", "\t"), ("\\t", "\t")])
def test_delimiter(tmp_path, capsys, delimiter, sep):
    data = tmp_path / "d.csv"
    data.write_text("p{0}q{0}y\n".format(sep)
                    + "".join(f"{i}{sep}{i % 3}{sep}{i % 2}\n" for i in range(20)))
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(data), "--target", "y", "--epochs", "2", "--quiet",
                     "--delimiter", delimiter, "--out", str(model)]) == 0
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(data), "--delimiter", delimiter,
                     "--keep", "p", "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == sep.join(["p", "y", "p_0", "p_1"]) and len(lines) == 21
    # the wrong one: one column named 'p;q;y', and a hint
    _one_line_error(capsys, ["train", str(data), "--target", "y"] if sep == "," else
                    ["predict", str(model), str(data)], "--delimiter")
    _one_line_error(capsys, ["train", str(data), "--target", "y", "--delimiter", ";;"],
                    "--delimiter must be one character")


def test_predictions_are_written_in_the_model_precision(tmp_path, blobs_csv, capsys):
    path, X, y = blobs_csv
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(path), "--target", "label", "--epochs", "5", "--quiet",
                     "--dtype", "float32", "--out", str(model)]) == 0
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(path), "--proba"]) == 0
    _, rows = _read_lines(capsys.readouterr().out)
    cells = [c for r in rows for c in r[1:]]
    P = fastmlp.io.load(model).predict(X[:, [0, 1, 2]].astype(np.float32))
    # each cell is the shortest text of the float32 value: it reads back exactly,
    # and no float64 digits (0.30000001192092896) are made up
    assert all(str(np.float32(c)) == c for c in cells)
    assert max(len(c.lstrip("-0.").replace(".", "").split("e")[0]) for c in cells) <= 9
    np.testing.assert_array_equal(np.array([[np.float32(c) for c in r[1:]] for r in rows]), P)


def test_proba_of_a_regressor_is_an_error(tmp_path, capsys):
    data = tmp_path / "d.csv"
    _write_csv(data, ["p", "y"], [[i, i * 0.37] for i in range(30)])
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(data), "--target", "y", "--epochs", "2", "--quiet",
                     "--out", str(model)]) == 0
    assert "regression" in capsys.readouterr().out
    _one_line_error(capsys, ["predict", str(model), str(data), "--proba"],
                    "--proba needs a classifier", "is a regressor")


def test_no_hidden_layer_and_one_epoch_are_said_so(tmp_path, capsys):
    data = tmp_path / "d.csv"
    _write_csv(data, ["p", "q", "y"], [[i, i % 3, i % 2] for i in range(20)])
    assert cli.main(["train", str(data), "--target", "y", "--hidden", "", "--epochs", "1",
                     "--quiet", "--out", str(tmp_path / "m.npz")]) == 0
    out = capsys.readouterr().out
    assert "network 2-1 (no hidden layer), sigmoid output" in out and "relu" not in out
    assert "batches of 32, 1 epoch," in out and "trained 1 epoch in" in out
    assert "epochs" not in out


@pytest.mark.parametrize("option, value", [
    ("--lr", "-1"), ("--lr", "nan"), ("--momentum", "1.5"), ("--l2", "-0.1"),
    ("--batch-size", "0"), ("--seed", "-3"), ("--out", "{tmp}/no/such/folder/m.npz"),
    ("--out", "{tmp}"), ("--delimiter", ""),
])
def test_every_option_is_checked_before_anything_prints(tmp_path, capsys, option, value):
    data = tmp_path / "d.csv"
    _write_csv(data, ["p", "q", "y"], [[i, i % 3, i % 2] for i in range(20)])
    assert cli.main(["train", str(data), "--target", "y", option, value.format(tmp=tmp_path),
                     "--out" if option != "--out" else "--quiet",
                     str(tmp_path / "m.npz") if option != "--out" else "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and option in captured.err


def test_demo_choices_are_listed_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "spirals"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'spirals' (choose from 'disk', 'xor')" in err and "[]" not in err


def test_train_ignores_columns(tmp_path, species_csv, capsys):
    path, X, species = species_csv
    model = tmp_path / "m.npz"
    assert cli.main(["train", str(path), "--target", "species", "--ignore", "id", "--epochs",
                     "3", "--quiet", "--out", str(model)]) == 0
    assert "240 rows, 2 inputs" in capsys.readouterr().out
    assert fastmlp.io.read_header(model)["metadata"]["features"] == ["width", "length"]
    assert cli.main(["train", str(path), "--target", "species", "--ignore", "id,length",
                     "--epochs", "3", "--quiet", "--out", str(model)]) == 0
    assert "240 rows, 1 input, target" in capsys.readouterr().out
    _one_line_error(capsys, ["train", str(path), "--target", "species", "--ignore", "nope"],
                    "--ignore 'nope' is not a column")
    _one_line_error(capsys, ["train", str(path), "--target", "species", "--ignore", "species"],
                    "--ignore 'species' is the --target")
