#!/usr/bin/env python
"""The configuration matrix of issue 23: fastmlp against its peers on the
networks users train (activations, optimizers, outputs, shapes, batch sizes,
dtypes), plus predict cells.

Every system runs every cell in ONE process, the systems interleaved within
each repeat (order rotated), each cell's median per system reported with

    ratio = median(fastmlp) / median(fastest peer)

(below 1: fastmlp is faster), fastmlp's achieved GFLOP/s (forward + backward
~ 3 x 2 x MACs a row an epoch) against the machine's GEMM ceiling of the cell's
dtype (numpy 2048x2048, measured once per run), and the step the planner chose
(``Network.plan``) beside the steps the fit ran (``History.steps``).
Targets: every cell <= 1.0x, geometric mean <= 0.7x.

    python bench/matrix.py                        # the full matrix (~10 min, 2 cores)
    python bench/matrix.py --quick                # smoke run, small sizes
    python bench/matrix.py --cells tab-tanh-mom,online-relu --repeats 9
    python bench/matrix.py --busy                 # beside a core kept busy, + n_threads=1
    python bench/matrix.py --json out.json --output out.txt
    python bench/matrix.py --from out.json --readme   # the README table of a saved run
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import compare  # noqa: E402  (timing, load monitor, table helpers)
import matrix_cells as mc  # noqa: E402
import matrix_peers as mp  # noqa: E402
import peers  # noqa: E402

BASE = "fastmlp"
ONE_THREAD = "fastmlp-1t"
CELL_LIMIT = 1.0
GEOMEAN_LIMIT = 0.7
LOSS_SPREAD = 0.01   # systems' final losses further apart than this are flagged
log = compare.log


# --------------------------------------------------------------------------
# the busy core and the ceiling
# --------------------------------------------------------------------------


@contextmanager
def busy_core(enabled, core=1):
    """While active (if enabled), a process spins on ``core``; killed at exit."""
    if not enabled:
        yield None
        return
    proc = subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c",
                             "while True: pass"], cwd=compare._EMPTY_DIR.name)
    log(f"[busy] pid {proc.pid} spinning on core {core}")
    try:
        time.sleep(0.2)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def gemm_ceiling(dtype, n, repeats):
    """GFLOP/s of numpy's n x n matmul in ``dtype`` (median of ``repeats``)."""
    rng = np.random.default_rng(0)
    A, B = (rng.random((n, n)).astype(dtype) for _ in range(2))
    C = np.empty((n, n), dtype)
    np.matmul(A, B, out=C)
    samples = []
    for _ in range(repeats):
        compare.MONITOR.settle()
        t = time.perf_counter()
        np.matmul(A, B, out=C)
        samples.append(time.perf_counter() - t)
    return 2.0 * n ** 3 / statistics.median(samples) / 1e9


def measure_ceilings(quick):
    """{dtype: GFLOP/s} of the GEMM ceiling, float32 and float64."""
    n, r = (512, 5) if quick else (2048, 7)
    out = {dt: gemm_ceiling(dt, n, r) for dt in ("float32", "float64")}
    log(f"[ceiling] sgemm {out['float32']:.1f}, dgemm {out['float64']:.1f} GFLOP/s")
    return out


# --------------------------------------------------------------------------
# one cell: set up, warm up, timed repeats
# --------------------------------------------------------------------------


def cell_systems(cell, systems):
    """The requested systems that apply to the cell's kind."""
    allowed = mp.TRAIN_SYSTEMS if cell.kind == "train" else mp.PREDICT_SYSTEMS
    return [s for s in systems if s in allowed]


def setup_train(cell, systems):
    """{system: Entry} with a trainer each, from the same initial weights."""
    data = mc.make_data(cell)
    Ws, bs, _ = peers.initial_params(cell)
    entries = {}
    for s in systems:
        e = entries[s] = compare.Entry(s)
        t0 = time.perf_counter()
        e.obj = compare._guard(e, mp.make_trainer, s, cell, data,
                               ([w.copy() for w in Ws], [b.copy() for b in bs]))
        if e.obj is not None:
            e.setup_s = time.perf_counter() - t0
            e.compile_s = e.obj.compile_s
    return entries, data


def setup_predict(cell, systems):
    """{system: Entry} with a predictor each, and the input rows."""
    Ws, bs, _ = peers.initial_params(cell)
    Ws = [w.astype(np.float32) for w in Ws]
    bs = [b.astype(np.float32) for b in bs]
    X = mc.make_data(cell).X.astype(cell.dtype)
    entries = {}
    for s in systems:
        e = entries[s] = compare.Entry(s)
        e.obj = compare._guard(e, mp.make_predictor, s, cell, Ws, bs)
    return entries, X


def train_call(e):
    """One timed fit (weights and optimizer reset first, untimed)."""
    e.obj.reset()
    t = time.perf_counter()
    e.obj.run()
    return time.perf_counter() - t


def predict_calls(e, X, n):
    """Seconds per call of ``n`` predict calls in a row."""
    f = e.obj
    t = time.perf_counter()
    for _ in range(n):
        f(X)
    return (time.perf_counter() - t) / n


def warm_up(cell, e, X, min_time):
    """One untimed run; sizes ``e.inner`` so that a repeat lasts ``min_time``."""
    if cell.kind == "train":
        t, cap = compare._guard(e, train_call, e), 50
    else:
        compare._guard(e, predict_calls, e, X, 3)
        t, cap = compare._guard(e, predict_calls, e, X, 1), 100000
    if t is not None:
        e.inner = int(min(cap, max(1, math.ceil(min_time / max(t, 1e-9)))))
    return t


def timed_block(cell, e, X):
    """The samples of one repeat of one system (dropped and re-run if another
    process disturbed them, as compare.py does)."""
    def one():
        n0 = len(e.samples)
        if cell.kind == "train":
            for _ in range(e.inner):
                e.samples.append(train_call(e))
        else:
            e.samples.append(predict_calls(e, X, e.inner))
        return lambda: e.samples.__delitem__(slice(n0, None))
    compare._guard(e, compare.MONITOR.timed_block, one)


def run_repeats(cell, entries, X, repeats):
    """Interleaved repeats, the systems' order rotated from repeat to repeat."""
    live = [s for s, e in entries.items() if e.obj is not None]
    for r in range(repeats):
        for s in compare.rotate(live, r):
            if entries[s].obj is not None:
                timed_block(cell, entries[s], X)


def final_losses(cell, entries, data):
    """Each trainer's final loss, evaluated in float64 (did they all train?)."""
    for e in entries.values():
        if e.obj is None:
            continue
        try:
            W, b = e.obj.params()
            e.final_loss = peers.np_loss(W, b, data.X, data.Y, cell)
        except Exception as exc:
            e.reason = f"final loss failed: {exc!r}"


def fastmlp_plan(entries):
    """The planner's choice and the steps the last fit ran (fastmlp, 1 thread)."""
    out = {}
    for s in (BASE, ONE_THREAD):
        obj = entries.get(s) and entries[s].obj
        if obj is not None and hasattr(obj, "plan"):
            out[s] = {"plan": obj.plan["step"], "plan_last": obj.plan["last_step"],
                      "steps": obj.steps, "solo_steps": obj.solo_steps}
    return out


def run_cell(cell, systems, repeats, min_time):
    """Every system on one cell: {system: summary} and fastmlp's plan."""
    systems = cell_systems(cell, systems)
    if cell.kind == "train":
        (entries, data), X = setup_train(cell, systems), None
    else:
        (entries, X), data = setup_predict(cell, systems), None
    for s, e in entries.items():
        if e.obj is not None and warm_up(cell, e, X, min_time) is not None:
            log(f"  {cell.name:26s} {s:11s} warm-up x{e.inner} per repeat")
    run_repeats(cell, entries, X, repeats)
    if data is not None:
        final_losses(cell, entries, data)
    plan = fastmlp_plan(entries)
    sysres = {s: e.summary() for s, e in entries.items()}
    for e in entries.values():
        e.obj = None
    return sysres, plan


# --------------------------------------------------------------------------
# a cell's figures
# --------------------------------------------------------------------------


def median_of(sysres, s):
    d = sysres.get(s, {})
    return d.get("median_s") if d.get("status") == "ok" else None


def fastest_peer(sysres):
    """(name, median) of the fastest peer that ran, or (None, None)."""
    times = [(median_of(sysres, s), s) for s in mp.PEERS if median_of(sysres, s)]
    if not times:
        return None, None
    t, s = min(times)
    return s, t


def cell_figures(cell, sysres, plan, ceilings):
    """Ratio to the fastest peer, GFLOP/s against the ceiling, 2 threads / 1."""
    base = median_of(sysres, BASE)
    peer, peer_t = fastest_peer(sysres)
    one = median_of(sysres, ONE_THREAD)
    work = mc.flops(cell)
    fig = {"description": cell.description, "kind": cell.kind, "issue": cell.issue,
           "factors": cell.factors() if cell.kind == "train" else None,
           "gflop": work / 1e9, "systems": sysres, "fastest_peer": peer,
           "ratio": base / peer_t if base and peer_t else None,
           "threads_ratio": base / one if base and one else None,
           "gflops": work / base / 1e9 if base else None,
           "ceiling_gflops": ceilings.get(cell.dtype)}
    fig["ceiling_frac"] = (fig["gflops"] / fig["ceiling_gflops"]
                           if fig["gflops"] and fig["ceiling_gflops"] else None)
    fig["loss_spread"] = loss_spread(sysres)
    fig.update(plan.get(BASE, {}))
    if ONE_THREAD in plan:
        fig["plan_1t"] = plan[ONE_THREAD]["plan"]
    return fig


def loss_spread(sysres):
    """(max - min) / min of the systems' final losses: ~0 when all trained
    the same network the same way (Adam's epsilon placement aside)."""
    losses = [d["final_loss"] for d in sysres.values()
              if d.get("status") == "ok" and d.get("final_loss") is not None]
    if len(losses) < 2 or not all(map(math.isfinite, losses)) or min(losses) <= 0:
        return None
    return (max(losses) - min(losses)) / min(losses)


def geomean(values):
    vals = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def summarize(cells):
    """Geometric means and the targets over the cells that have a ratio."""
    ratios = {n: c["ratio"] for n, c in cells.items() if c.get("ratio")}
    train = [r for n, r in ratios.items() if cells[n]["kind"] == "train"]
    g = geomean(ratios.values())
    missed = sorted(n for n, r in ratios.items() if r > CELL_LIMIT)
    return {"cells_with_ratio": len(ratios), "geomean": g,
            "geomean_train": geomean(train),
            "geomean_met": None if g is None else g <= GEOMEAN_LIMIT,
            "missed": missed, "cells_met": len(ratios) - len(missed),
            "geomean_threads_ratio": geomean(c.get("threads_ratio")
                                             for c in cells.values())}


# --------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------


def fmt_cell_time(sec, kind):
    return compare.fmt_time(sec, "us" if kind == "predict" and sec and sec < 1e-3
                            else "s")


def fmt_steps(steps):
    return ",".join(f"{k}:{v}" for k, v in (steps or {}).items()) or "-"


def text_row(name, c, systems):
    """One line of the text table."""
    row = [name]
    for s in systems:
        row.append(fmt_cell_time(median_of(c["systems"], s), c["kind"]))
    row.append(compare.fmt_ratio(c["ratio"]))
    row.append(c["fastest_peer"] or "-")
    if any(s == ONE_THREAD for s in systems):
        row.append(compare.fmt_ratio(c.get("threads_ratio")))
    row.append("-" if not c["gflops"] else f"{c['gflops']:.1f}")
    row.append("-" if not c["ceiling_frac"] else f"{c['ceiling_frac']:.0%}")
    row.append(c.get("plan") or "-")
    row.append(fmt_steps(c.get("steps")))
    return row


def text_report(results, out):
    """The header, one row a cell, the skipped systems and the targets."""
    p = lambda *a: print(*a, file=out)  # noqa: E731
    meta = results["meta"]
    header(meta, p)
    systems = [s for s in meta["systems"]
               if any(s in c["systems"] for c in results["cells"].values())]
    heads = ["cell"] + systems + ["ratio", "vs"]
    if ONE_THREAD in systems:
        heads.append("2t/1t")
    heads += ["GFLOP/s", "ceil", "plan", "steps ran"]
    rows = [text_row(n, c, systems) for n, c in results["cells"].items()]
    compare.print_table(rows, heads, out)
    p("")
    skipped_lines(results, p)
    targets_lines(results["summary"], p)


def header(meta, p):
    p("fastmlp configuration matrix (issue 23)")
    p("=" * 72)
    p(f"date      {meta['date']}   wall {meta.get('wall_s', 0):.0f} s")
    p(f"command   {meta['command']}")
    p(f"machine   {meta['cpu']} | {meta['nproc']} cores | python {meta['python']}")
    fi = meta["fastmlp"]
    p(f"fastmlp   {fi.get('version')} build {fi.get('build_info')} "
      f"({fi.get('file')}); source {meta.get('source')}")
    p("peers     " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v))
    p(f"ceiling   sgemm {meta['ceilings']['float32']:.1f} GFLOP/s, dgemm "
      f"{meta['ceilings']['float64']:.1f} GFLOP/s (numpy, "
      f"{'512' if meta['quick'] else '2048'}^2; 'ceil' = fastmlp's GFLOP/s / the "
      f"cell dtype's)")
    p(f"repeats   {meta['repeats']} (interleaved, rotated), min {meta['min_time']} s "
      f"of calls a repeat; quick={meta['quick']}; busy core={meta['busy']}")
    ld = meta["load"]
    p(f"load      other processes used {ld['others_frac']:.0%} of all cores over the "
      f"run (the busy core's spinner included); waited {ld['waited_s']} s for quiet, "
      f"re-ran {ld['reruns']} disturbed blocks, kept {ld['contended_blocks']} under "
      f"load (limit {ld['limit']:.0%} of the cores); loadavg at end "
      f"{' '.join(ld['loadavg_end'] or [])}")
    p("ratio     = median(fastmlp) / median(fastest peer); 2t/1t = fastmlp / "
      "fastmlp n_threads=1; times: seconds per fit (train), per call (predict)")
    p("")


def skipped_lines(results, p):
    """Systems that did not run a cell, and why (one line per reason)."""
    seen = {}
    for n, c in results["cells"].items():
        for s, d in c["systems"].items():
            if d["status"] != "ok":
                seen.setdefault((s, d["status"], d.get("reason", "")[:90]), []).append(n)
    for (s, st, why), names in seen.items():
        p(f"  {s} {st} in {', '.join(names)}: {why}")
    if seen:
        p("")
    odd = [f"{n} ({c['loss_spread']:.1e})" for n, c in results["cells"].items()
           if (c.get("loss_spread") or 0) > LOSS_SPREAD]
    p(f"losses    final losses of the systems agree within {LOSS_SPREAD:.0%} in every "
      f"cell" if not odd else f"losses    final losses differ by more than "
      f"{LOSS_SPREAD:.0%} in: {', '.join(odd)}")


def targets_lines(sm, p):
    g, gt = sm["geomean"], sm["geomean_train"]
    p(f"targets   every cell <= {CELL_LIMIT}x the fastest peer: {sm['cells_met']} of "
      f"{sm['cells_with_ratio']} met; missed: {', '.join(sm['missed']) or 'none'}")
    if g is not None:
        train = "none" if gt is None else f"{gt:.3f}x"      # None: predict cells alone
        p(f"          geometric mean {g:.3f}x (training cells {train}) <= "
          f"{GEOMEAN_LIMIT}x: {'met' if sm['geomean_met'] else 'not met'}")
    if sm.get("geomean_threads_ratio"):
        p(f"          2 threads / 1 thread, geometric mean "
          f"{sm['geomean_threads_ratio']:.3f}x")


def readme_table(results, out):
    """The markdown table for the README: cell, ratio, met / not met."""
    p = lambda *a: print(*a, file=out)  # noqa: E731
    busy = any(c.get("threads_ratio") for c in results["cells"].values())
    heads = ["cell", "configuration", "fastmlp", "fastest peer", "ratio",
             f"≤ {CELL_LIMIT}×", "GFLOP/s (of ceiling)", "step"]
    if busy:
        heads.insert(6, "2 threads / 1 thread")
    p("| " + " | ".join(heads) + " |")
    p("|" + "---|" * len(heads))
    for n, c in results["cells"].items():
        p("| " + " | ".join(readme_row(n, c, busy)) + " |")
    sm = results["summary"]
    p("")
    p(f"Cells at ≤ {CELL_LIMIT}× the fastest peer: {sm['cells_met']} of "
      f"{sm['cells_with_ratio']}. Geometric mean: "
      + ("-" if sm["geomean"] is None else
         f"{sm['geomean']:.3f}× (≤ {GEOMEAN_LIMIT}×: "
         f"{'met' if sm['geomean_met'] else 'not met'})") + ".")


def readme_row(name, c, busy):
    peer = c["fastest_peer"]
    peer_t = median_of(c["systems"], peer) if peer else None
    ratio = c["ratio"]
    met = "-" if ratio is None else ("met" if ratio <= CELL_LIMIT else "not met")
    rate = "-" if not c["gflops"] else (
        f"{c['gflops']:.1f} ({c['ceiling_frac']:.0%})" if c["ceiling_frac"]
        else f"{c['gflops']:.1f}")
    row = [f"`{name}`", c["description"],
           fmt_cell_time(median_of(c["systems"], BASE), c["kind"]).replace("us", "µs"),
           "-" if not peer else f"{peer} "
           + fmt_cell_time(peer_t, c["kind"]).replace("us", "µs"),
           "-" if ratio is None else f"{ratio:.2f}×", met, rate, c.get("plan") or "-"]
    if busy:
        tr = c.get("threads_ratio")
        row.insert(6, "-" if tr is None else f"{tr:.2f}×")
    return row


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


def run_meta(args, repeats, min_time, systems):
    versions = {m: compare.module_version(m) for m in
                ("numpy", "scipy", "torch", "jax", "jaxlib", "optax", "sklearn",
                 "onnxruntime")}
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": "python bench/matrix.py " + " ".join(args.argv),
            "cpu": compare.cpu_model(), "nproc": os.cpu_count(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "fastmlp": peers.fastmlp_build_info(), "source": compare.source_commit(),
            "versions": versions, "blas": peers.blas_info(), "repeats": repeats,
            "min_time": min_time, "quick": args.quick, "busy": args.busy,
            "systems": systems}


def load_meta(monitor, start):
    """How busy the machine was: other processes' share of the cores, waits."""
    return {"others_frac": compare.LoadMonitor.busy_others(start, monitor.snap()),
            "limit": monitor.limit, "waited_s": round(monitor.waited, 1),
            "reruns": monitor.reruns, "contended_blocks": monitor.contended,
            "loadavg_end": open("/proc/loadavg").read().split()[:3]
            if os.path.exists("/proc/loadavg") else None}


def run_matrix(cells, systems, args, repeats, min_time):
    """Every selected cell; returns the results dict (meta, cells, summary)."""
    meta = run_meta(args, repeats, min_time, systems)
    t0, start = time.perf_counter(), compare.LoadMonitor.snap()
    meta["ceilings"] = measure_ceilings(args.quick)
    res = {}
    for cell in cells:
        log(f"[{cell.name}] {cell.description}")
        t = time.perf_counter()
        sysres, plan = run_cell(cell, systems, repeats, min_time)
        res[cell.name] = cell_figures(cell, sysres, plan, meta["ceilings"])
        res[cell.name]["wall_s"] = time.perf_counter() - t
        log(f"  ratio {compare.fmt_ratio(res[cell.name]['ratio'])} "
            f"({time.perf_counter() - t:.1f} s)")
    meta["load"] = load_meta(compare.MONITOR, start)
    meta["wall_s"] = time.perf_counter() - t0
    return {"meta": meta, "cells": res, "summary": summarize(res)}


def select_cells(spec, quick):
    names = compare.parse_list(spec, mc.CELL_NAMES, "cell")
    return [mc.get_cell(n, quick) for n in names]


def select_systems(spec, busy):
    default = [s for s in mp.PREDICT_SYSTEMS if busy or s != ONE_THREAD]
    return compare.parse_list(spec, mp.PREDICT_SYSTEMS, "system") if spec else default


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", help="comma list of cells (default: all): "
                    + ",".join(mc.CELL_NAMES))
    ap.add_argument("--systems", help="comma list of " + ",".join(mp.PREDICT_SYSTEMS))
    ap.add_argument("--repeats", type=int, help="timed repeats (default 5, quick 2)")
    ap.add_argument("--min-time", type=float, help="seconds of calls a repeat "
                    "(default 0.1, quick 0.02); short fits run several times")
    ap.add_argument("--quick", action="store_true", help="small sizes: smoke run")
    ap.add_argument("--busy", action="store_true",
                    help="spin a process on core 1 during the run, and time fastmlp "
                         "with n_threads=1 too")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--output", metavar="PATH", help="also write the text report")
    ap.add_argument("--readme", action="store_true",
                    help="print the README's markdown table after the text table")
    ap.add_argument("--from", dest="from_json", metavar="PATH",
                    help="report a saved --json run instead of running")
    ap.add_argument("--no-wait", action="store_true",
                    help="do not wait for, or re-run blocks disturbed by, other "
                         "processes")
    ap.add_argument("--max-wait", type=float, default=60.0,
                    help="seconds in all to wait for a quiet machine (default 60)")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


def make_monitor(args):
    """compare.py's load monitor; beside the busy core, its spinner's share of
    the cores is allowed on top of the limit."""
    limit = 0.10 + (1.0 / (os.cpu_count() or 1) if args.busy else 0.0)
    return compare.LoadMonitor(limit=limit, max_wait=args.max_wait,
                               enabled=not args.no_wait)


def write_outputs(results, args):
    compare.log("")
    text_report(results, sys.stdout)
    if args.readme:
        print()
        readme_table(results, sys.stdout)
    if args.output:
        with open(args.output, "w") as fh:
            text_report(results, fh)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            write_outputs(json.load(fh), argparse.Namespace(
                readme=args.readme, output=args.output, json=None))
        return 0
    cells = select_cells(args.cells, args.quick)
    systems = select_systems(args.systems, args.busy)
    repeats = args.repeats or (2 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (
        0.02 if args.quick else 0.1)
    warnings.simplefilter("ignore")
    compare.MONITOR = make_monitor(args)
    with busy_core(args.busy):
        results = run_matrix(cells, systems, args, repeats, min_time)
    write_outputs(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
