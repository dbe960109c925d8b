#!/usr/bin/env python
"""Side-by-side benchmark of fastmlp against its peers (issue 3).

Runs every selected system on every selected workload in ONE process, the
systems interleaved within each repeat (their order rotated from repeat to
repeat), and prints per workload the median time per system and the ratio

    ratio = median(fastmlp-f32) / median(system)

which is the form the issue-3 targets are stated in: 0.5x means fastmlp float32
takes half the time of that system; below 1 fastmlp is faster.

Peak RSS of one fit on mnist-shape and the import time of fastmlp and its peers
are measured in fresh subprocesses. A peer that is not installed is reported as
"skipped", never as a failure.

    python bench/compare.py                 # full run (several minutes on 2 cores)
    python bench/compare.py --quick         # small sizes, smoke run (~1 min)
    python bench/compare.py --check         # also print final losses vs a float64 oracle
    python bench/compare.py --workloads xor,clf --systems fastmlp-f32,jax --repeats 9
    python bench/compare.py --json results/latest.json
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
import tempfile
import threading
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import peers  # noqa: E402

EXTRA = ("rss", "import")
ALL_CHOICES = peers.ALL_WORKLOADS + EXTRA
BASE = "fastmlp-f32"
IMPORT_MODULES = ("fastmlp", "torch", "jax", "sklearn", "onnxruntime", "numpy")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


# Child interpreters start in an empty directory: "-c" puts the working
# directory first on sys.path, where any stray file (an nt.py in /tmp, say)
# would shadow the standard library.
_EMPTY_DIR = tempfile.TemporaryDirectory(prefix="fastmlp-bench-")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    fl = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16")
                            if f in fl]
    except OSError:
        pass
    return []


def module_version(name):
    try:
        from importlib.metadata import version
        dist = {"sklearn": "scikit-learn"}.get(name, name)
        return version(dist)
    except Exception:
        return None


def source_commit():
    """The checkout's commit (``git describe --always --dirty``), or None
    outside a git checkout: which code a results file measured."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def fmt_time(sec, unit):
    if sec is None:
        return "-"
    if unit == "us":
        return f"{sec * 1e6:.2f} us"
    if unit == "ms":
        return f"{sec * 1e3:.3f} ms"
    if sec < 1e-3:
        return f"{sec * 1e6:.1f} us"
    if sec < 1:
        return f"{sec * 1e3:.2f} ms"
    return f"{sec:.3f} s"


def fmt_ratio(r):
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.3f}x" if r < 10 else f"{r:.1f}x"


# --------------------------------------------------------------------------
# timed runs
# --------------------------------------------------------------------------


class Entry:
    """One system on one workload: its runner and its samples."""

    def __init__(self, system):
        self.system = system
        self.status = "ok"
        self.reason = ""
        self.samples = []      # seconds per call
        self.inner = 1
        self.obj = None
        self.compile_s = None
        self.setup_s = None
        self.final_loss = None
        self.hist_loss = None
        self.max_abs_diff = None

    def fail(self, status, reason):
        self.status = status
        self.reason = reason
        self.obj = None

    def summary(self):
        d = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        if self.samples:
            d.update(median_s=statistics.median(self.samples), min_s=min(self.samples),
                     n_samples=len(self.samples), calls_per_sample=self.inner)
        for k in ("compile_s", "setup_s", "final_loss", "hist_loss", "max_abs_diff"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d

    @property
    def median(self):
        return statistics.median(self.samples) if self.samples else None


def _guard(entry, fn, *a):
    try:
        return fn(*a)
    except peers.Unavailable as exc:
        entry.fail("skipped", str(exc))
    except Exception as exc:  # a real failure of that system: report, go on
        entry.fail("error", f"{type(exc).__name__}: {exc}")
        log(f"  [{entry.system}] error:\n" + traceback.format_exc())
    return None


class LoadMonitor:
    """CPU time used by OTHER processes (the machine is shared with builds, CI...).

    ``busy_others(a, b)`` is the fraction of all cores that other processes used
    between two snapshots. Blocks run while others used more than ``limit`` are
    re-run (up to ``retries`` times) and counted; before each block we wait (up
    to ``max_wait`` s in all) for a quiet machine, then (up to ``settle_max`` s)
    for this process's other threads to stop running: the thread pools of the
    system timed before (OpenMP, OpenBLAS, ONNX Runtime and fastmlp's own spin
    for a while after their work) would otherwise take a core from the next.
    """

    def __init__(self, limit=0.10, max_wait=300.0, retries=3, enabled=True,
                 settle_max=0.5):
        self.limit, self.max_wait, self.retries = limit, max_wait, retries
        self.enabled = enabled and os.path.exists("/proc/stat")
        self.settle_max = settle_max
        self.waited = 0.0
        self.reruns = 0
        self.contended = 0
        self.settled = 0.0          # s spent waiting for this process's threads
        self.unsettled = 0          # blocks started beside a running thread

    @staticmethod
    def running_threads():
        """Threads of this process other than the caller that are running."""
        me, n = threading.get_native_id(), 0
        for tid in os.listdir("/proc/self/task"):
            if int(tid) == me:
                continue
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    n += fh.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:     # the thread ended
                pass
        return n

    def settle(self):
        """Wait up to ``settle_max`` s for this process's other threads to idle."""
        if not self.enabled:
            return
        t0 = time.perf_counter()
        while self.running_threads():
            if time.perf_counter() - t0 >= self.settle_max:
                self.unsettled += 1
                break
            time.sleep(0.002)
        self.settled += time.perf_counter() - t0

    @staticmethod
    def snap():
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)
        total = busy + f[3] + f[4]
        with open("/proc/self/stat") as fh:
            st = fh.read().rsplit(")", 1)[1].split()
        mine = int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
        return busy, total, mine

    @staticmethod
    def busy_others(a, b):
        d_all = max(b[1] - a[1], 1)
        others = (b[0] - a[0]) - (b[2] - a[2])
        # clock ticks are 10 ms: ignore up to 2 ticks of noise
        return max(others - 2, 0) / d_all

    def wait_quiet(self):
        if not self.enabled or self.waited >= self.max_wait:
            return
        while self.waited < self.max_wait:
            a = self.snap()
            time.sleep(0.1)
            if self.busy_others(a, self.snap()) <= self.limit:
                return
            log("  (machine busy: waiting for other processes to finish)")
            time.sleep(2.0)
            self.waited += 2.1

    def timed_block(self, fn):
        """Run fn() (which appends samples) on a quiet machine; returns True if
        it ran clean, False if it had to be kept under load."""
        for attempt in range(self.retries + 1):
            self.wait_quiet()
            self.settle()
            a = self.snap() if self.enabled else None
            mark = fn()
            if not self.enabled:
                return True
            if self.busy_others(a, self.snap()) <= self.limit:
                return True
            if (attempt < self.retries and mark is not None
                    and self.waited < self.max_wait):
                mark()  # drop the samples of the contended block and retry
                self.reruns += 1
        self.contended += 1
        return False


MONITOR = LoadMonitor(enabled=False)


def rotate(seq, k):
    k %= max(len(seq), 1)
    return list(seq[k:]) + list(seq[:k])


def run_train(wl, systems, repeats, min_time, check):
    entries = {s: Entry(s) for s in systems}
    try:
        data = peers.make_data(wl.name, wl.quick)
    except ImportError as exc:  # clf / digits data come from scikit-learn
        for e in entries.values():
            e.fail("skipped", f"data needs scikit-learn: {exc}")
        return entries, {}
    Ws, bs, src = peers.initial_params(wl)
    for s, e in entries.items():
        if not peers.supports(s, wl):
            e.fail("n/a", "inference only" if s == "onnxruntime" else "not applicable")
            continue
        t0 = time.perf_counter()
        e.obj = _guard(e, peers.make_trainer, s, wl, data, ([w.copy() for w in Ws],
                                                           [b.copy() for b in bs]))
        if e.obj is None:
            continue
        e.setup_s = time.perf_counter() - t0
        e.compile_s = e.obj.compile_s

        def warm(e=e):  # one untimed run: warms caches, sizes the inner loop
            e.obj.reset()
            t = time.perf_counter()
            e.obj.run()
            return time.perf_counter() - t
        t_warm = _guard(e, warm)
        if t_warm is None:
            continue
        e.inner = int(min(200, max(1, math.ceil(min_time / max(t_warm, 1e-9)))))
        log(f"  {wl.name:13s} {s:18s} warm-up {fmt_time(t_warm, 's'):>10s}  "
            f"x{e.inner} per repeat")
    live = [s for s in systems if entries[s].obj is not None]
    for r in range(repeats):
        for s in rotate(live, r):
            e = entries[s]
            if e.obj is None:
                continue

            def one(e=e):
                n0 = len(e.samples)
                for _ in range(e.inner):
                    e.obj.reset()
                    t = time.perf_counter()
                    e.obj.run()
                    e.samples.append(time.perf_counter() - t)
                return lambda: e.samples.__delitem__(slice(n0, None))
            _guard(e, MONITOR.timed_block, one)
    for e in entries.values():
        if e.obj is None:
            continue
        try:
            W, b = e.obj.params()
            e.final_loss = peers.np_loss(W, b, data.X, data.Y, wl)
            e.hist_loss = e.obj.history_loss()
        except Exception as exc:
            e.reason = f"final loss failed: {exc!r}"
        e.obj = None  # free memory before the next system / workload
    oracle = None
    if check:
        W0 = [w.copy() for w in Ws]
        b0 = [b.copy() for b in bs]
        X64 = np.asarray(data.X, np.float64)
        Y64 = np.asarray(data.Y, np.float64)
        peers.np_train(W0, b0, X64, Y64, wl)
        oracle = peers.np_loss(W0, b0, X64, Y64, wl)
    return entries, {"init": src, "oracle_loss": oracle}


def run_predict(wl, systems, repeats, min_time, check):
    Ws, bs, trained_by = peers.predict_model(wl.quick)
    X = peers.predict_input(wl)
    entries = {s: Entry(s) for s in systems}
    ref_out = None
    for s, e in entries.items():
        if not peers.supports(s, wl):
            e.fail("n/a", "not applicable")
            continue
        e.obj = _guard(e, peers.make_predictor, s, wl, Ws, bs)
        if e.obj is None:
            continue
        Xs = np.ascontiguousarray(X, dtype=peers.system_dtype(s))
        e.X = Xs

        def warm(e=e):
            for _ in range(3):
                out = e.obj(e.X)
            t = time.perf_counter()
            out = e.obj(e.X)
            return time.perf_counter() - t, np.asarray(out)
        res = _guard(e, warm)
        if res is None:
            continue
        t_warm, out = res
        e.out = out
        e.inner = int(min(100000, max(1, math.ceil(min_time / max(t_warm, 1e-9)))))
        log(f"  {wl.name:13s} {s:18s} warm-up {fmt_time(t_warm, 's'):>10s}  "
            f"x{e.inner} per repeat")
    live = [s for s in systems if entries[s].obj is not None]
    for r in range(repeats):
        for s in rotate(live, r):
            e = entries[s]
            if e.obj is None:
                continue

            def one(e=e):
                f, x, n = e.obj, e.X, e.inner
                t = time.perf_counter()
                for _ in range(n):
                    f(x)
                e.samples.append((time.perf_counter() - t) / n)
                return e.samples.pop
            _guard(e, MONITOR.timed_block, one)
    base = entries.get(BASE)
    if base is not None and getattr(base, "out", None) is not None:
        ref_out = base.out
    elif "numpy" in entries and getattr(entries["numpy"], "out", None) is not None:
        ref_out = entries["numpy"].out
    for e in entries.values():
        if getattr(e, "out", None) is not None and ref_out is not None:
            try:
                e.max_abs_diff = float(np.max(np.abs(
                    np.asarray(e.out, np.float64) - np.asarray(ref_out, np.float64))))
            except Exception as exc:
                e.reason = f"output compare failed: {exc!r}"
        e.obj = None
        e.X = None
        e.out = None
    return entries, {"trained_by": trained_by, "rows": int(X.shape[0])}


def run_sgemm(wl, repeats, min_time):
    e = Entry("numpy")
    run, flops = peers.sgemm_runner(wl.n_rows)
    run()
    t = time.perf_counter()
    run()
    t_warm = time.perf_counter() - t
    e.inner = int(max(1, math.ceil(min_time / t_warm)))
    for _ in range(repeats):
        def one():
            n0 = len(e.samples)
            for _ in range(e.inner):
                t = time.perf_counter()
                run()
                e.samples.append(time.perf_counter() - t)
            return lambda: e.samples.__delitem__(slice(n0, None))
        MONITOR.timed_block(one)
    gflops = flops / e.median / 1e9
    log(f"  sgemm {wl.n_rows}: {gflops:.1f} GFLOP/s")
    return {"numpy": e}, {"n": wl.n_rows, "gflops": gflops,
                          "best_gflops": flops / min(e.samples) / 1e9}


# --------------------------------------------------------------------------
# subprocess measurements: RSS of one fit, import time
# --------------------------------------------------------------------------


def _status_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_child(system, quick):
    """Runs in a fresh process: data + setup, then one fit; prints JSON."""
    import dataclasses
    import gc
    import resource
    warnings.simplefilter("ignore")
    out = {"system": system}
    try:
        wl = peers.get_workload("mnist-shape", quick)
        data = peers.make_data("mnist-shape", quick)
        out["data_mb"] = (data.X.nbytes + data.Y.nbytes + data.labels.nbytes) / 2**20
        n_params = sum(a * b + b for a, b in zip(wl.layers[:-1], wl.layers[1:]))
        out["params_mb_f32"] = n_params * 4 / 2**20
        tr = peers.make_trainer(system, wl, data)
        gc.collect()
        out["rss_before_mb"] = _status_kb("VmRSS") / 1024
        method = "VmHWM after clear_refs" if _reset_peak() else "ru_maxrss"
        tr.run()
        if method == "ru_maxrss":
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        else:
            peak = _status_kb("VmHWM") / 1024
        out.update(peak_mb=peak, growth_mb=peak - out["rss_before_mb"],
                   method=method,
                   process_peak_mb=resource.getrusage(
                       resource.RUSAGE_SELF).ru_maxrss / 1024)
        if system.startswith("fastmlp") and method != "ru_maxrss":
            # no growth with epochs: a 3-epoch fit must peak where a 1-epoch fit did
            tr.wl = dataclasses.replace(wl, epochs=3)
            gc.collect()
            before3 = _status_kb("VmRSS") / 1024
            _reset_peak()
            tr.reset()
            tr.run()
            out["growth_3_epochs_mb"] = _status_kb("VmHWM") / 1024 - before3
        out["status"] = "ok"
    except peers.Unavailable as exc:
        out.update(status="skipped", reason=str(exc))
    except Exception as exc:
        out.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    print("RSSJSON " + json.dumps(out), flush=True)


def run_rss(systems, quick):
    res = {}
    for s in systems:
        if not peers.supports(s, peers.get_workload("mnist-shape", quick)):
            res[s] = {"status": "n/a", "reason": "inference only"}
            continue
        MONITOR.wait_quiet()
        cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", s]
        if quick:
            cmd.append("--quick")
        t = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                               cwd=_EMPTY_DIR.name)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("RSSJSON ")]
            if line:
                res[s] = json.loads(line[-1][8:])
            else:
                res[s] = {"status": "error",
                          "reason": (p.stderr.strip().splitlines() or ["no output"])[-1]}
        except subprocess.TimeoutExpired:
            res[s] = {"status": "error", "reason": "timeout"}
        r = res[s]
        log(f"  rss {s:18s} {r.get('status')} peak "
            f"{r.get('peak_mb', float('nan')):.0f} MB ({time.perf_counter() - t:.1f} s)")
    return res


def run_import(modules, repeats):
    code = ("import time; t = time.perf_counter(); import {m}; "
            "print('IMPORTT', time.perf_counter() - t)")
    samples = {m: [] for m in modules}
    status = {m: "ok" for m in modules}
    reason = {}
    for r in range(repeats + 1):  # the first round only warms the file cache
        for m in rotate(list(modules), r):
            if status[m] != "ok":
                continue
            MONITOR.wait_quiet()
            p = subprocess.run([sys.executable, "-c", code.format(m=m)],
                               capture_output=True, text=True, timeout=300,
                               cwd=_EMPTY_DIR.name)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("IMPORTT")]
            if p.returncode != 0 or not line:
                status[m] = "skipped" if "ModuleNotFoundError" in p.stderr else "error"
                reason[m] = (p.stderr.strip().splitlines() or ["?"])[-1]
                continue
            if r > 0:
                samples[m].append(float(line[0].split()[1]))
    out = {}
    for m in modules:
        d = {"status": status[m]}
        if m in reason:
            d["reason"] = reason[m]
        if samples[m]:
            d.update(median_s=statistics.median(samples[m]), min_s=min(samples[m]),
                     n_samples=len(samples[m]))
        out[m] = d
        log(f"  import {m:12s} {d['status']} "
            f"{fmt_time(d.get('median_s'), 's') if samples[m] else ''}")
    return out


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def print_table(rows, headers, out):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line.rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        last = len(widths) - 1
        print("  ".join(str(c).ljust(w) if i < 2 or i == last else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip(), file=out)


def ratio(results, wname, num, den):
    w = results["workloads"].get(wname, {}).get("systems", {})
    a, b = w.get(num, {}).get("median_s"), w.get(den, {}).get("median_s")
    if a is None or b is None:
        return None
    return a / b


def evaluate_targets(results):
    t = []
    W = results["workloads"]

    def add(name, value, limit, fmt, how):
        met = None if value is None else value <= limit
        t.append({"target": name, "value": value, "limit": limit, "met": met,
                  "shown": "-" if value is None else fmt(value), "how": how})

    r = lambda v: f"{v:.3f}x"  # noqa: E731
    add("xor: fastmlp-f32 / jax", ratio(results, "xor", BASE, "jax"), 0.5, r,
        "median time ratio")
    add("clf: fastmlp-f32 / jax", ratio(results, "clf", BASE, "jax"), 0.3, r,
        "median time ratio")
    add("clf: fastmlp-f64 / jax-f64", ratio(results, "clf", "fastmlp-f64", "jax-f64"),
        0.3, r, "median time ratio")
    add("digits: fastmlp-f32 / jax", ratio(results, "digits", BASE, "jax"), 0.5, r,
        "median time ratio")
    add("mnist-shape: fastmlp-f32 / jax", ratio(results, "mnist-shape", BASE, "jax"),
        0.8, r, "median time ratio")
    add("mnist-shape: fastmlp-f32 / torch",
        ratio(results, "mnist-shape", BASE, "torch"), 0.3, r, "median time ratio")
    frac = None
    m = W.get("mnist-shape", {})
    sg = W.get("sgemm", {}).get("info", {}).get("gflops")
    g = m.get("systems", {}).get(BASE, {}).get("gflops")
    if g and sg:
        frac = g / sg
    # expressed as "1 - fraction <= 0.4" would be odd; compare directly
    t.append({"target": "mnist-shape: achieved GFLOP/s / sgemm ceiling",
              "value": frac, "limit": 0.6, "met": None if frac is None else frac >= 0.6,
              "shown": "-" if frac is None else f"{frac:.1%} ({g:.1f} of {sg:.1f})",
              "how": ">= 60%"})
    p1 = W.get("predict-1", {}).get("systems", {}).get(BASE, {}).get("median_s")
    add("predict-1: fastmlp-f32 latency", None if p1 is None else p1 * 1e6, 10.0,
        lambda v: f"{v:.2f} us", "<= 10 us")
    add("predict-batch: fastmlp-f32 / onnxruntime",
        ratio(results, "predict-batch", BASE, "onnxruntime"), 0.9, r,
        "median time ratio")
    rss = results.get("rss", {}).get(BASE, {})
    if rss.get("status") == "ok":
        # growth while fitting: parameters + gradients + one batch's workspace
        # (far below the data), and no growth with epochs
        g1 = rss.get("growth_mb")
        g3 = rss.get("growth_3_epochs_mb")
        lim = 0.1 * rss.get("data_mb", 0)
        t.append({"target": "rss: fit growth beyond data (1 epoch)", "value": g1,
                  "limit": lim, "met": g1 <= lim,
                  "shown": f"{g1:.1f} MB (data {rss.get('data_mb', 0):.0f} MB)",
                  "how": "< 10% of the data: no copy of X"})
        if g3 is not None:
            t.append({"target": "rss: growth 3 epochs vs 1 epoch", "value": g3 - g1,
                      "limit": 1.0, "met": (g3 - g1) <= 1.0,
                      "shown": f"{g3:.1f} MB vs {g1:.1f} MB", "how": "<= +1 MB"})
    imp = results.get("import", {}).get("fastmlp", {}).get("median_s")
    add("import fastmlp", imp, 0.3, lambda v: f"{v:.3f} s", "<= 0.3 s")
    return t


def report(results, out=sys.stdout, check=False):
    meta = results["meta"]
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("fastmlp benchmark — issue 3 workloads")
    p("=" * 72)
    p(f"date      {meta['date']}")
    p(f"command   {meta['command']}")
    p(f"machine   {meta['cpu']} | {meta['nproc']} cores | flags {','.join(meta['cpu_flags'])}"
      f" | {meta['platform']}")
    p(f"python    {meta['python']}")
    fi = meta["fastmlp"]
    if fi.get("importable"):
        p(f"fastmlp   {fi.get('version')}  build: {fi.get('build_info')}  ({fi.get('file')})")
    else:
        p(f"fastmlp   NOT importable: {fi.get('error')}")
    if meta.get("source"):
        p(f"source    {meta['source']} (the checkout bench/ ran from; the installed "
          f"build should match it)")
    p("peers     " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v))
    for b in meta["blas"]:
        p("blas      " + ", ".join(f"{k}={v}" for k, v in b.items() if v is not None))
    if meta.get("openblas_env"):
        p(f"env       {meta['openblas_env']}")
    p(f"repeats   {meta['repeats']} (systems interleaved, order rotated per repeat); "
      f"min {meta['min_time']} s of calls per repeat; quick={meta['quick']}")
    ld = meta.get("load")
    if ld:
        p(f"load      other processes' CPU watched: {ld['monitor']}; waited "
          f"{ld['waited_s']} s; re-ran {ld['reruns']} disturbed blocks; "
          f"{ld['contended_blocks']} blocks kept under load")
        if "settled_s" in ld:
            p(f"threads   before each block, waited for this process's other threads to "
              f"idle (at most {ld['settle_max_s']} s): {ld['settled_s']} s in all; "
              f"{ld['unsettled_blocks']} blocks started beside a running thread")
    p("ratio     = median(fastmlp-f32) / median(system): < 1 means fastmlp-f32 is "
      "faster (issue-3 targets use this form)")
    p("")
    for wname, w in results["workloads"].items():
        wl_info = w.get("info", {})
        p(f"## {wname}: {w.get('description', '')}")
        extra = []
        for k in ("init", "trained_by", "rows", "epochs", "flops_per_fit"):
            if k in wl_info and wl_info[k] is not None:
                extra.append(f"{k}={wl_info[k]}")
        if extra:
            p("   " + "  ".join(extra))
        unit = "us" if wname == "predict-1" else "s"
        base = w["systems"].get(BASE, {}).get("median_s")
        rows = []
        for s, d in w["systems"].items():
            if d["status"] != "ok" or "median_s" not in d:
                if d["status"] == "n/a":
                    continue
                rows.append([s, d["status"], "-", "-", "-", "", d.get("reason", "")[:70]])
                continue
            med = d["median_s"]
            rat = base / med if base else None
            notes = []
            if d.get("compile_s") is not None:
                notes.append(f"compile {d['compile_s']:.2f} s")
            if d.get("gflops") is not None:
                notes.append(f"{d['gflops']:.1f} GFLOP/s")
            if wname == "sgemm":
                notes.append(f"{wl_info.get('gflops', 0):.1f} GFLOP/s")
            n = peers.NOTES.get((s, wname)) or peers.NOTES.get((s, "*"))
            if n and (s, wname) in peers.NOTES:
                notes.append(n)
            per_epoch = ""
            if wname == "xor" and wl_info.get("epochs"):
                per_epoch = f"{med / wl_info['epochs'] * 1e6:.3f} us/epoch"
                notes.insert(0, per_epoch)
            rows.append([s, "ok", fmt_time(med, unit), fmt_time(d["min_s"], unit),
                         fmt_ratio(rat) if wname != "sgemm" else "",
                         str(d["n_samples"]), "; ".join(notes)])
        print_table(rows, ["system", "status", "median", "min", "ratio", "n",
                           "notes"], out)
        p("")
    if "rss" in results:
        p("## rss: peak resident memory of one fit on mnist-shape (fresh process each)")
        rows = []
        for s, d in results["rss"].items():
            if d.get("status") != "ok":
                if d.get("status") != "n/a":
                    rows.append([s, d.get("status"), "-", "-", "-", "",
                                 d.get("reason", "")[:60]])
                continue
            g3 = d.get("growth_3_epochs_mb")
            rows.append([s, "ok", f"{d['peak_mb']:.1f} MB", f"{d['rss_before_mb']:.1f} MB",
                         f"{d['growth_mb']:.1f} MB",
                         "" if g3 is None else f"{g3:.1f} MB",
                         f"data {d['data_mb']:.0f} MB, params "
                         f"{d['params_mb_f32']:.2f} MB (f32)"])
        print_table(rows, ["system", "status", "peak", "before fit", "fit growth",
                           "3-epoch growth", "notes"], out)
        p("   peak = high-water RSS of the fit (reset just before it); before fit = "
          "RSS after import, data and setup")
        p("")
    if "import" in results:
        p("## import: `import X` in a fresh interpreter (median)")
        rows = []
        base = results["import"].get("fastmlp", {}).get("median_s")
        for m, d in results["import"].items():
            if "median_s" in d:
                rows.append([m, d["status"], fmt_time(d["median_s"], "s"),
                             fmt_ratio(base / d["median_s"]) if base else "-",
                             str(d["n_samples"])])
            else:
                rows.append([m, d["status"], "-", "-", d.get("reason", "")[:60]])
        print_table(rows, ["module", "status", "median", "fastmlp/x", "n"], out)
        p("")
    if results.get("targets"):
        p("## issue-3 targets" + ("  (QUICK sizes: not the issue's workloads)"
                                   if meta["quick"] else ""))
        rows = []
        for t in results["targets"]:
            met = {True: "MET", False: "not met", None: "n/a"}[t["met"]]
            lim = t["how"] if t["how"] != "median time ratio" else f"<= {t['limit']}x"
            rows.append([t["target"], met, t["shown"], lim])
        print_table(rows, ["target", "status", "value", "limit"], out)
        p("")
    if check:
        p("## check: final training loss per system (evaluated in float64 from each "
          "system's final weights)")
        p("   oracle = plain NumPy float64 from the same initial weights; "
          "rel = |loss - oracle| / oracle")
        rows = []
        for wname, w in results["workloads"].items():
            o = w.get("info", {}).get("oracle_loss")
            for s, d in w["systems"].items():
                if "final_loss" in d:
                    rel = abs(d["final_loss"] - o) / abs(o) if o else None
                    flag = ""
                    if rel is not None:
                        tol = 1e-9 if s in ("fastmlp-f64", "jax-f64") else 1e-3
                        flag = "ok" if rel <= tol else "MISMATCH"
                        if (s, wname) in peers.NOTES and s == "sklearn":
                            flag = "different loss (expected)"
                    hl = d.get("hist_loss")
                    rows.append([wname, s, f"{d['final_loss']:.10g}",
                                 "-" if o is None else f"{o:.10g}",
                                 "-" if rel is None else f"{rel:.2e}",
                                 "-" if hl is None else f"{hl:.8g}", flag])
                elif "max_abs_diff" in d:
                    rows.append([wname, s, "-", "-",
                                 f"max|p-p_f32| {d['max_abs_diff']:.2e}", "-",
                                 "ok" if d["max_abs_diff"] < 1e-4 else "MISMATCH"])
        print_table(rows, ["workload", "system", "final loss", "oracle f64", "rel",
                           "history[-1]", "verdict"], out)
        p("   tolerance: 1e-9 relative for float64 systems, 1e-3 for float32; "
          "history[-1] is the system's own last-epoch loss where it reports one")
        p("")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_list(s, choices, what):
    if s is None:
        return list(choices)
    items = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in items if x not in choices]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)}; choose from "
                         f"{', '.join(choices)}")
    return items


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", help="comma list of " + ",".join(ALL_CHOICES)
                    + " (default: all)")
    ap.add_argument("--systems", help="comma list of " + ",".join(peers.SYSTEMS)
                    + " (default: all)")
    ap.add_argument("--repeats", type=int, help="timed repeats per system "
                    "(default 7, --quick 3)")
    ap.add_argument("--min-time", type=float, help="seconds of calls per repeat "
                    "(default 0.2, --quick 0.05); short fits run several times")
    ap.add_argument("--quick", action="store_true", help="small sizes: smoke run")
    ap.add_argument("--check", action="store_true",
                    help="print each system's final loss beside a float64 oracle")
    ap.add_argument("--json", metavar="PATH", help="also write results as JSON")
    ap.add_argument("--output", metavar="PATH", help="also write the report to PATH")
    ap.add_argument("--no-wait", action="store_true",
                    help="do not wait for / re-run blocks disturbed by other "
                         "processes' CPU use")
    ap.add_argument("--max-wait", type=float, default=600.0,
                    help="seconds in all to wait for a quiet machine (default 600)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.rss_child:
        rss_child(args.rss_child, args.quick)
        return 0

    workloads = parse_list(args.workloads, ALL_CHOICES, "workload")
    systems = parse_list(args.systems, tuple(peers.SYSTEMS), "system")
    repeats = args.repeats or (3 if args.quick else 7)
    min_time = args.min_time if args.min_time is not None else (
        0.05 if args.quick else 0.2)
    warnings.simplefilter("ignore")
    global MONITOR
    MONITOR = LoadMonitor(max_wait=args.max_wait, enabled=not args.no_wait)

    t_start = time.perf_counter()
    versions = {}
    for m in ("numpy", "scipy", "torch", "jax", "jaxlib", "sklearn", "onnx",
              "onnxruntime", "threadpoolctl"):
        versions[m] = module_version(m)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python bench/compare.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "nproc": os.cpu_count(),
        "platform": platform.platform(), "python": sys.version.split()[0],
        "fastmlp": peers.fastmlp_build_info(), "source": source_commit(),
        "versions": versions,
        "blas": peers.blas_info(), "repeats": repeats, "min_time": min_time,
        "quick": args.quick,
        "openblas_env": " ".join(f"{k}={os.environ[k]}" for k in
                                 ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                  "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                                 if k in os.environ),
    }
    results = {"meta": meta, "workloads": {}}

    for wname in workloads:
        if wname in EXTRA:
            continue
        wl = peers.get_workload(wname, args.quick)
        log(f"[{wname}] {wl.description}")
        t0 = time.perf_counter()
        if wl.kind == "train":
            entries, info = run_train(wl, systems, repeats, min_time, args.check)
            info["epochs"] = wl.epochs
            info["flops_per_fit"] = f"{peers.train_flops(wl) / 1e9:.3g} GFLOP"
        elif wl.kind == "predict":
            entries, info = run_predict(wl, systems, repeats, min_time, args.check)
        else:
            entries, info = run_sgemm(wl, repeats, min_time)
        sysres = {s: e.summary() for s, e in entries.items()}
        if wl.kind == "train" and wname == "mnist-shape":
            fl = peers.train_flops(wl)
            for d in sysres.values():
                if "median_s" in d:
                    d["gflops"] = fl / d["median_s"] / 1e9
        results["workloads"][wname] = {"description": wl.description, "info": info,
                                       "systems": sysres,
                                       "wall_s": time.perf_counter() - t0}
    if "rss" in workloads:
        log("[rss] one fit of mnist-shape per system, fresh process each")
        results["rss"] = run_rss([s for s in systems if s != "jax-f64"], args.quick)
    if "import" in workloads:
        log("[import] fresh interpreter per sample")
        mods = [m for m in IMPORT_MODULES
                if m in ("fastmlp", "numpy") or any(
                    s.startswith(m) for s in systems)]
        results["import"] = run_import(mods, 3 if args.quick else 5)
    results["targets"] = evaluate_targets(results)
    meta["load"] = {"monitor": MONITOR.enabled, "waited_s": round(MONITOR.waited, 1),
                    "reruns": MONITOR.reruns, "contended_blocks": MONITOR.contended,
                    "settled_s": round(MONITOR.settled, 1), "settle_max_s": MONITOR.settle_max,
                    "unsettled_blocks": MONITOR.unsettled,
                    "loadavg_end": open("/proc/loadavg").read().split()[:3]
                    if os.path.exists("/proc/loadavg") else None}
    meta["wall_s"] = time.perf_counter() - t_start

    report(results, sys.stdout, check=args.check)
    print(f"(total wall time {meta['wall_s']:.0f} s)")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as fh:
            report(results, fh, check=args.check)
            print(f"(total wall time {meta['wall_s']:.0f} s)", file=fh)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
