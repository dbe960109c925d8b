"""readme_table.py: the README's tables from compare.py's JSON (not a benchmark)."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import readme_table  # noqa: E402


def _results(f32, jax, jax_status="ok", targets=()):
    return {
        "meta": {"date": "2026-01-01T00:00:00", "source": "abc1234",
                 "fastmlp": {"version": "0.1.0", "build_info": "portable"}},
        "workloads": {
            "xor": {"systems": {
                "fastmlp-f32": {"status": "ok", "median_s": f32},
                "fastmlp-f64": {"status": "ok", "median_s": 2 * f32},
                "jax": {"status": jax_status, "median_s": jax},
            }},
        },
        "targets": list(targets),
    }


def test_side_by_side_cells_and_ratios():
    lines = readme_table.side_by_side(_results(544e-6, 1.12e-3))
    xor = next(line for line in lines if line.startswith("| xor"))
    cells = [c.strip() for c in xor.strip("|").split("|")]
    # fastmlp f32, f64 (no ratio), JAX with the ratio 544/1120, the rest not run
    assert cells[1:4] == ["544 µs", "1.09 ms", "1.12 ms (0.49)"]
    assert cells[4:] == ["–"] * 4
    # a workload absent from the results is a row of dashes, not an error
    mnist = next(line for line in lines if line.startswith("| mnist-shape"))
    assert mnist.count("–") == len(readme_table.COLUMNS)


def test_skipped_peer_is_a_dash():
    lines = readme_table.side_by_side(_results(544e-6, None, jax_status="skipped"))
    xor = next(line for line in lines if line.startswith("| xor"))
    assert [c.strip() for c in xor.strip("|").split("|")][3] == "–"


def test_targets_table_counts_runs_met():
    t = lambda value, met: {"target": "xor: fastmlp-f32 / jax", "value": value,  # noqa: E731
                            "limit": 0.5, "met": met, "shown": f"{value:.3f}x"}
    runs = [_results(1, 1, targets=[t(0.41, True)]), _results(1, 1, targets=[t(0.57, False)])]
    lines = readme_table.targets(runs, ["A", "B"])
    assert lines[0] == "| target | run A | run B | met in |"
    assert lines[2] == "| xor: fastmlp-f32 / jax | 0.410x | 0.570x | 1 of 2 |"
    # latencies shown in "us" become µs; other text is left as it is
    lat = {"target": "predict-1: fastmlp-f32 latency", "met": True, "shown": "8.24 us"}
    rss = {"target": "rss: status", "met": True, "shown": "3.4 MB (thus)"}
    lines = readme_table.targets([_results(1, 1, targets=[lat, rss])], ["A"])
    assert lines[2:] == ["| predict-1: fastmlp-f32 latency | 8.24 µs | 1 of 1 |",
                         "| rss: status | 3.4 MB (thus) | 1 of 1 |"]


def test_significant_digits():
    assert readme_table.significant(0.123456) == "0.123"
    assert readme_table.significant(1234.5) == "1234"
    assert readme_table.significant(0.00041234, 2) == "0.00041"
    assert readme_table.fmt_seconds(1.31) == "1.31 s"
    assert readme_table.fmt_seconds(6.26e-6, "us") == "6.26 µs"


def test_main_reads_files_and_checks_names(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_results(544e-6, 1.12e-3)))
    readme_table.main([str(path)])
    out = capsys.readouterr().out
    assert "source abc1234" in out and "| xor 2-3-1, 5000 epochs | 544 µs" in out
    with pytest.raises(SystemExit) as exc:         # two names for one file
        readme_table.main([str(path), "--names", "A,B"])
    assert exc.value.code == 2


def test_main_prints_the_named_run(tmp_path, capsys):
    paths = []
    for name, f32 in (("A", 544e-6), ("B", 600e-6)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_results(f32, 1.2e-3)))
    readme_table.main([str(p) for p in paths] + ["--main", "B"])
    out = capsys.readouterr().out
    assert "| xor 2-3-1, 5000 epochs | 600 µs" in out and "| 544 µs" not in out
    with pytest.raises(SystemExit) as exc:         # an unknown --main run
        readme_table.main([str(p) for p in paths] + ["--main", "C"])
    assert exc.value.code == 2
