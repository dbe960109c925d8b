"""Two builds of fastmlp on the matrix's training cells, fastmlp alone, paired:
rounds of one process a build, the builds alternating, each process timing
every cell's fit (median over >= 5 fits and ``--min-time`` seconds); the
result is each cell's median of the per-round ratios new / old (< 1: the new
build is faster), with every round's ratio.  For "did this change make fits
faster", where the matrix's peers add nothing but noise.

    python bench/paired.py --old /path/to/old/checkout --new . \\
        --cells med-relu-mom-b1-f64,tab-relu-nest-b1-f64 --rounds 3

A checkout is any directory holding a built ``fastmlp`` package (e.g. a git
worktree with the extension built in place).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

def time_cells(names, min_time):
    """Median seconds of a fit of every named cell, in this process: the
    matrix's own fastmlp trainer (its optimizer settings and initial weights,
    reset before each fit, as bench/matrix.py times it)."""
    import matrix_cells
    import matrix_peers
    import peers

    cells = {c.name: c for c in matrix_cells.TRAIN_CELLS}
    times = {}
    for name in names:
        cell = cells[name]
        Ws, bs, _ = peers.initial_params(cell)
        trainer = matrix_peers.make_trainer("fastmlp", cell, matrix_cells.make_data(cell),
                                            (Ws, bs))
        runs, end = [], time.perf_counter() + min_time
        while len(runs) < 5 or time.perf_counter() < end:
            trainer.reset()
            start = time.perf_counter()
            trainer.run()
            runs.append(time.perf_counter() - start)
        times[name] = statistics.median(runs)
    return times


def run_build(root, names, min_time):
    """One process with ``root``'s fastmlp first on its path: {cell: seconds}."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(root), HERE]))
    out = subprocess.run([sys.executable, __file__, "--child", ",".join(names),
                          "--min-time", str(min_time)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", help="checkout of the build before the change")
    parser.add_argument("--new", default=os.path.dirname(HERE),
                        help="checkout of the build after it (default: this one)")
    parser.add_argument("--cells", help="comma list of the matrix's training cells")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="seconds of fits a cell a process (at least 5 fits)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(time_cells(args.child.split(","), args.min_time)))
        return 0
    if not args.old or not args.cells:
        parser.error("--old and --cells are required")
    names = args.cells.split(",")
    old, new = {n: [] for n in names}, {n: [] for n in names}
    for _ in range(args.rounds):
        for build, store in ((args.old, old), (args.new, new)):
            for name, seconds in run_build(build, names, args.min_time).items():
                store[name].append(seconds)
    print(f"{'cell':<26} {'old ms':>9} {'new ms':>9}  new/old  (rounds)")
    for name in names:
        ratios = [b / a for a, b in zip(old[name], new[name])]
        print(f"{name:<26} {1e3 * statistics.median(old[name]):9.3f} "
              f"{1e3 * statistics.median(new[name]):9.3f}  {statistics.median(ratios):.3f}"
              f"   ({' '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
