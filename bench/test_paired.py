"""bench/paired.py: it times the matrix's own fastmlp trainer, and a
one-round run of two "builds" that are the same installed fastmlp (so every
ratio is near 1)."""
import os

import numpy as np
import pytest

import matrix_peers
import paired

fastmlp = pytest.importorskip("fastmlp")


def test_times_the_matrix_trainer_from_its_initial_weights(monkeypatch):
    # the matrix's own trainer, reset before every fit
    runs = []
    original = matrix_peers.FastmlpTrainer.run

    def run(self):
        runs.append(self.net.params.copy())
        original(self)

    monkeypatch.setattr(matrix_peers.FastmlpTrainer, "run", run)
    times = paired.time_cells(["tab-relu-adam-8192"], 0.0)
    assert times["tab-relu-adam-8192"] > 0 and len(runs) == 5
    for params in runs[1:]:
        np.testing.assert_array_equal(params, runs[0])


def test_one_round_of_the_same_build_prints_a_ratio_a_cell(capsys):
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    assert paired.main(["--old", root, "--new", root, "--cells",
                        "online-relu,tab-sig-mom-b1", "--rounds", "1",
                        "--min-time", "0.01"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["cell", "old", "ms"]
    assert [line.split()[0] for line in lines[1:]] == ["online-relu", "tab-sig-mom-b1"]
    for line in lines[1:]:
        old_ms, new_ms, ratio = map(float, line.split()[1:4])
        assert old_ms > 0 and new_ms > 0 and 0.2 < ratio < 5


def test_old_and_cells_are_required():
    with pytest.raises(SystemExit):
        paired.main(["--cells", "online-relu"])
