"""The configuration matrix (bench/matrix.py): its cells cover every factor,
and a one-cell quick run writes the JSON fields the README table is made from
(``pytest bench/``; the package's own tests never collect bench/)."""
import json
import os
import subprocess
import sys

import pytest

from _suite import HERE
import matrix_cells as mc

CELL_FIELDS = ("description", "kind", "factors", "gflop", "systems", "fastest_peer",
               "ratio", "threads_ratio", "gflops", "ceiling_gflops", "ceiling_frac",
               "loss_spread", "plan", "steps", "solo_steps", "wall_s")


def test_at_least_24_training_cells_and_predict_cells():
    assert len(mc.TRAIN_CELLS) >= 24
    kinds = {(c.hidden, c.n_rows) for c in mc.PREDICT_CELLS}
    assert {("relu", 1), ("relu", 10000), ("tanh", 1), ("tanh", 10000)} <= kinds


@pytest.mark.parametrize("factor", list(mc.FACTORS))
def test_every_factor_value_met_at_least_twice(factor):
    counts = mc.coverage()[factor]
    allowed = set(mc.FACTORS[factor])
    assert set(counts) <= allowed, (factor, counts)
    for value in allowed:
        assert counts[value] >= 2, (factor, value, counts)


def test_every_value_meets_several_others():
    """Each factor value appears beside at least two values of every other
    factor (no value tested in one corner only)."""
    for f, values in mc.FACTORS.items():
        for v in values:
            cells = [c.factors() for c in mc.TRAIN_CELLS if c.factors()[f] == v]
            for g in mc.FACTORS:
                if g != f:
                    assert len({c[g] for c in cells}) >= 2, (f, v, g)


def test_issue_examples_present():
    issue = {(c.layers, c.hidden, c.optimizer, c.batch_size) for c in mc.TRAIN_CELLS
             if c.issue}
    assert ((8, 64, 64, 1), "tanh", "momentum", 32) in issue
    assert ((1024, 1024, 1024, 10), "relu", "adam", 128) in issue
    assert ((20, 32, 1), "relu", "sgd", 1) in issue
    assert len(issue) == 6


def test_cell_names_unique():
    assert len(set(mc.CELL_NAMES)) == len(mc.CELL_NAMES)


def test_quick_one_cell_run_writes_json(tmp_path):
    pytest.importorskip("fastmlp")
    out = tmp_path / "m.json"
    cmd = [sys.executable, os.path.join(HERE, "matrix.py"), "--quick", "--no-wait",
           "--cells", "tab-tanh-mom", "--repeats", "1", "--json", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res) == {"meta", "cells", "summary"}
    cell = res["cells"]["tab-tanh-mom"]
    for field in CELL_FIELDS:
        assert field in cell, field
    assert cell["systems"]["fastmlp"]["status"] == "ok"
    assert cell["plan"] in ("layers", "rows", "units", "first", "narrow",
                            "narrow-epochs")
    assert sum(cell["steps"].values()) > 0
    assert {"geomean", "cells_met", "missed"} <= set(res["summary"])
    assert "tab-tanh-mom" in p.stdout
