"""bench/paired.py: its fit options per optimizer and a one-round run of two
"builds" that are the same installed fastmlp (so every ratio is near 1)."""
import os

import pytest

import matrix_cells
import paired

fastmlp = pytest.importorskip("fastmlp")


def test_fit_options_follow_the_cell_optimizer():
    cells = {c.name: c for c in matrix_cells.TRAIN_CELLS}
    assert paired.fit_options(cells["tab-tanh-mom"]) == {"momentum": 0.9, "nesterov": False}
    assert paired.fit_options(cells["tab-relu-nest-b1-f64"]) == {"momentum": 0.9,
                                                                 "nesterov": True}
    assert paired.fit_options(cells["wide-relu-adam"]) == {"optimizer": "adam"}
    assert paired.fit_options(cells["online-relu"]) == {}


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
