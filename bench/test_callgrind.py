"""callgrind.py's parsing, tables and specs (not a benchmark: valgrind never runs)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callgrind  # noqa: E402


def _report(**counts):
    return {"workloads": {name: {"instructions": n, "description": name}
                          for name, n in counts.items()}}


def test_read_total_prefers_totals(tmp_path):
    path = tmp_path / "callgrind.out"
    path.write_text("# callgrind format\nevents: Ir\nsummary: 120\nfn=main\n0 5\ntotals: 123\n")
    assert callgrind.read_total(str(path)) == 123


def test_read_total_without_counts_raises(tmp_path):
    path = tmp_path / "callgrind.out"
    path.write_text("events: Ir\n")
    with pytest.raises(ValueError):
        callgrind.read_total(str(path))


def test_compare_flags_beyond_tolerance():
    old = _report(xor=1_000_000, clf=2_000_000, digits=3_000_000)
    new = _report(xor=1_005_000, clf=2_040_000, mnist=1)
    lines = callgrind.compare(old, new, 0.01)
    row = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert "1.0050" in row["xor"] and "OUTSIDE" not in row["xor"]
    assert "1.0200" in row["clf"] and "OUTSIDE ±1%" in row["clf"]
    assert "only in one" in row["digits"] and "only in one" in row["mnist"]


def test_table_in_millions():
    lines = callgrind.table(_report(xor=5_990_000)["workloads"])
    assert lines[-1] == "| xor | 5.99 | xor |"


def test_select_rejects_unknown_names():
    specs = {"xor": {}, "clf": {}}
    assert list(callgrind.select(specs, "clf, xor")) == ["clf", "xor"]
    with pytest.raises(SystemExit):
        callgrind.select(specs, "xor,nope")


def test_specs_mirror_peers():
    import peers
    specs = callgrind.all_specs()
    for name in callgrind.TRIMMED:
        wl = peers.get_workload(name)
        spec = specs[name]
        assert (tuple(spec["layers"]), spec["hidden"], spec["output"], spec["loss"],
                spec["lr"], spec["batch_size"]) == (wl.layers, wl.hidden, wl.output,
                                                     wl.loss, wl.lr, wl.batch_size)


def test_aligned_copy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1:]
    b = callgrind.aligned(np.ascontiguousarray(a))
    assert b.ctypes.data % 64 == 0 and np.array_equal(a, b)
