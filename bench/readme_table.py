#!/usr/bin/env python
"""Turn compare.py's JSON results into the README's Performance tables.

    python bench/readme_table.py bench/results/latest.json
    python bench/readme_table.py runE.json runF.json runG.json --names E,F,G --main G

One file (the first, or the run named by --main) gives the side-by-side table
(median of each system, and in brackets the ratio fastmlp-f32 / that system);
every file gives one column of the targets table (compare.py's own verdict on
each issue-3 target).  Nothing is timed here: the numbers are the ones
compare.py wrote.
"""
from __future__ import annotations

import argparse
import json
import math
import re

# (workload, README label, unit): unit "us" shows microseconds per call
WORKLOADS = [
    ("xor", "xor 2-3-1, 5000 epochs", None),
    ("clf", "clf 20-8-3-1, 4000 rows, 2000 epochs", None),
    ("digits", "digits 64-128-10, batch 32, 20 epochs", None),
    ("mnist-shape", "mnist-shape 784-256-128-10, 60k rows, batch 128, 1 epoch", None),
    ("predict-1", "predict-1 (µs per call, 784-256-128-10)", "us"),
    ("predict-batch", "predict-batch 10000 rows", None),
]
COLUMNS = [("fastmlp-f32", "fastmlp f32"), ("fastmlp-f64", "fastmlp f64"),
           ("jax", "JAX (jit)"), ("torch", "PyTorch"), ("numpy", "NumPy"),
           ("sklearn", "scikit-learn"), ("onnxruntime", "ONNX Runtime")]
BASE = "fastmlp-f32"


def significant(x, digits=3):
    """x to `digits` significant digits, without an exponent."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{decimals}f}"


def fmt_seconds(sec, unit=None):
    if unit == "us" or sec < 1e-3:
        return significant(sec * 1e6) + " µs"
    if sec < 1:
        return significant(sec * 1e3) + " ms"
    return significant(sec) + " s"


def fmt_ratio(r):
    return significant(r, 2)


def side_by_side(results):
    """The README's main table (markdown lines) from one compare.py result."""
    lines = ["| workload | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, label, unit in WORKLOADS:
        systems = results["workloads"].get(name, {}).get("systems", {})
        base = systems.get(BASE, {})
        base_s = base.get("median_s") if base.get("status") == "ok" else None
        cells = []
        for system, _ in COLUMNS:
            entry = systems.get(system, {})
            if entry.get("status") != "ok" or entry.get("median_s") is None:
                cells.append("–")
                continue
            cell = fmt_seconds(entry["median_s"], unit)
            if system not in (BASE, "fastmlp-f64") and base_s:
                cell += f" ({fmt_ratio(base_s / entry['median_s'])})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def targets(runs, names):
    """The targets table: one row per issue-3 target, one column per run."""
    cells = {}    # target -> {run name: (shown, met)}, in the order first seen
    for name, results in zip(names, runs):
        for t in results.get("targets", []):
            cells.setdefault(t["target"], {})[name] = (t["shown"], t["met"])
    lines = ["| target | " + " | ".join(f"run {n}" for n in names) + " | met in |",
             "|---" * (len(names) + 2) + "|"]
    for target, by_run in cells.items():
        row = [by_run.get(n, ("–", None)) for n in names]
        met = sum(1 for _, m in row if m)
        shown = [re.sub(r"(?<=\d) us\b", " µs", s) for s, _ in row]
        lines.append(f"| {target} | " + " | ".join(shown) + f" | {met} of {len(names)} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="compare.py --json files, one per run")
    ap.add_argument("--names", help="comma list of run names (default A, B, ...)")
    ap.add_argument("--main", help="the run (by name) whose side-by-side table is "
                    "printed (default: the first)")
    args = ap.parse_args(argv)
    runs = []
    for path in args.results:
        with open(path) as fh:
            runs.append(json.load(fh))
    names = args.names.split(",") if args.names else [chr(65 + i) for i in range(len(runs))]
    if len(names) != len(runs):
        ap.error(f"--names: expected {len(runs)} names, one per file, got {len(names)}")
    main_name = args.main or names[0]
    if main_name not in names:
        ap.error(f"--main: expected one of the run names {', '.join(names)}, got {main_name!r}")
    for run, path in zip(runs, args.results):
        meta = run.get("meta", {})
        build = meta.get("fastmlp", {})
        print(f"<!-- {path}: {meta.get('date', '?')}, source {meta.get('source', '?')}, "
              f"fastmlp {build.get('version', '?')} {build.get('build_info', '?')} -->")
    print("\n".join(side_by_side(runs[names.index(main_name)])))
    print()
    print("\n".join(targets(runs, names)))


if __name__ == "__main__":
    main()
