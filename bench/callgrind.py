#!/usr/bin/env python
"""Instruction counts of fastmlp's workloads, under valgrind's callgrind.

Wall-clock times on a small shared machine spread by tens of percent from run
to run; instruction counts repeat.  Each workload runs in a process of its own
under ``valgrind --tool=callgrind``, twice: once doing only the set-up
(imports, data, network, one warm-up call) and once doing the set-up and then
the workload.  The difference of the two totals is the workload's own count.

    python bench/callgrind.py                                  # the installed fastmlp
    python bench/callgrind.py --root /path/to/checkout --json base.json
    python bench/callgrind.py --workloads xor,predict-1 --jobs 2
    python bench/callgrind.py --compare base.json new.json     # ratios, flags beyond ±1%

The first five workloads are compare.py's (bench/peers.py: the same networks,
data, float32, batch sizes and learning rates), trimmed to run in seconds under
callgrind; two small nets add the tanh and relu activations and the momentum
and Adam optimizers.  Everything runs on one thread (``n_threads=1``,
``OPENBLAS_NUM_THREADS=1``) with a fixed hash seed, so that the counts repeat.

valgrind shows the program a CPU without AVX-512: the kernels' x86-64-v3
(AVX2) clones run, and OpenBLAS is pinned to its Haswell kernels, so the counts
are those of the AVX2 code paths.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# compare.py's workloads (bench/peers.py) -> (epochs, rows) kept here (None:
# all rows).  mnist-shape: 8 batches of 128 and one of 96, as the last batch
# of its 60000-row epoch.
TRIMMED = {"xor": (5000, None), "clf": (20, None), "digits": (2, None),
           "mnist-shape": (1, 1120)}
PREDICT_CALLS = 2000
DTYPE = "float32"
TOLERANCE = 0.01

# The child processes' environment: one thread everywhere, a fixed hash seed
# (set and dict orders), OpenBLAS on kernels valgrind can run, and no
# bytecode caches written (so no child changes what the next one does).
CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
             "MKL_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "Haswell",
             "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


# --------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------


def peer_spec(name):
    """The spec of one of compare.py's training workloads, trimmed.

    Returns
    -------
    dict
        The network (layers, hidden, output, loss), the fit's settings
        (lr, batch_size, epochs, options), the rows and a description.
    """
    import peers
    wl = peers.get_workload(name)
    epochs, rows = TRIMMED[name]
    rows = rows or wl.n_rows
    batch = f"batch {wl.batch_size}" if wl.batch_size else "full batch"
    return {"kind": "train", "layers": list(wl.layers), "hidden": wl.hidden,
            "output": wl.output, "loss": wl.loss, "lr": wl.lr,
            "batch_size": wl.batch_size, "epochs": epochs, "rows": rows, "options": {},
            "description": f"{_arch(wl.layers, wl.hidden)}, {rows} rows, {batch}, "
                           f"lr {wl.lr:g}, {epochs} epoch{'s' * (epochs > 1)}"}


def predict_spec():
    """One-row predict on compare.py's mnist-shape net, PREDICT_CALLS calls."""
    spec = peer_spec("mnist-shape")
    spec.update(kind="predict", rows=1, calls=PREDICT_CALLS,
                description=f"{_arch(spec['layers'], spec['hidden'])}, "
                            f"{PREDICT_CALLS} one-row predicts")
    return spec


def variant_spec(layers, hidden, rows, batch_size, lr, epochs, options):
    """A regression net (identity output, squared error) on synthetic rows."""
    opts = ", ".join(f"{k} {v}" for k, v in options.items())
    return {"kind": "train", "layers": list(layers), "hidden": hidden,
            "output": "identity", "loss": "squared_error", "lr": lr,
            "batch_size": batch_size, "epochs": epochs, "rows": rows, "options": options,
            "description": f"{_arch(layers, hidden)}, {rows} rows, batch {batch_size}, "
                           f"lr {lr:g}, {opts}, {epochs} epoch{'s' * (epochs > 1)}"}


def _arch(layers, hidden):
    return "-".join(map(str, layers)) + f" {hidden}"


def all_specs():
    """Every workload's spec, by name, in the order of the table."""
    specs = {name: peer_spec(name) for name in TRIMMED}
    specs["predict-1"] = predict_spec()
    specs["tanh-momentum"] = variant_spec((8, 64, 64, 1), "tanh", 2048, 32, 0.01, 2,
                                          {"optimizer": "sgd", "momentum": 0.9})
    specs["relu-adam"] = variant_spec((256, 512, 256, 1), "relu", 512, 64, 0.001, 1,
                                      {"optimizer": "adam"})
    return specs


# --------------------------------------------------------------------------
# data (made here, outside valgrind; the children only load it)
# --------------------------------------------------------------------------


def peer_rows(name, rows):
    """compare.py's (X, Y) of a workload, its first ``rows`` rows, float32.

    Y holds integer labels for softmax nets (what fastmlp.Network.fit takes).
    """
    import numpy as np
    import peers
    # mnist-shape's quick set (6000 rows) holds the rows kept
    data = peers.make_data(name, quick=name == "mnist-shape")
    softmax = peers.get_workload(name).output == "softmax"
    Y = data.labels[:rows] if softmax else data.Y[:rows].astype(DTYPE)
    return np.ascontiguousarray(data.X[:rows], dtype=DTYPE), np.ascontiguousarray(Y)


def synthetic_rows(n_rows, n_in, seed=7):
    """Standard-normal rows and a smooth target, float32 (regression)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_in))
    y = np.tanh(X @ rng.standard_normal(n_in) / np.sqrt(n_in))
    return X.astype(DTYPE), y.reshape(-1, 1).astype(DTYPE)


def workload_rows(name, spec):
    """(X, Y) of a workload: compare.py's data, or synthetic rows."""
    if name in TRIMMED or name == "predict-1":
        return peer_rows(name, spec["rows"])
    return synthetic_rows(spec["rows"], spec["layers"][0])


def write_inputs(name, spec, folder):
    """Write a workload's spec (JSON) and rows (.npy: no zip checksum for the
    children to compute); returns the spec's path."""
    import numpy as np
    X, Y = workload_rows(name, spec)
    path = os.path.join(folder, name)
    np.save(path + ".X.npy", X)
    np.save(path + ".Y.npy", Y)
    with open(path + ".json", "w") as fh:
        json.dump(spec, fh)
    return path + ".json"


# --------------------------------------------------------------------------
# the child: one workload, under valgrind
# --------------------------------------------------------------------------


def child_main(spec_path, phase, root):
    """Set up a workload and, in phase 'run', run it; print what was imported."""
    if root:
        sys.path.insert(0, os.path.abspath(root))
    import fastmlp
    spec, X, Y = load_inputs(spec_path)
    net = fastmlp.Network(spec["layers"], activation=spec["hidden"], output=spec["output"],
                          loss=spec["loss"], l2=0.0, init="xavier", dtype=DTYPE, seed=0,
                          n_threads=1)
    workload = make_workload(net, spec, X, Y)
    warm_up(net, spec, X, Y)
    # no garbage collection from here on: where the allocation counter
    # triggers one is not the workload's doing, and one inside it adds its
    # cost (with collections on, one clf run in about 15 counted 2.5% more)
    gc.collect()
    gc.disable()
    if phase == "run":
        workload()
    print(json.dumps({"file": fastmlp.__file__,
                      "build_info": getattr(fastmlp, "__build_info__", "unknown")}))


def load_inputs(spec_path):
    """A workload's spec and its rows (X, Y), written by write_inputs."""
    import numpy as np
    with open(spec_path) as fh:
        spec = json.load(fh)
    stem = spec_path[:-len(".json")]
    return spec, aligned(np.load(stem + ".X.npy")), aligned(np.load(stem + ".Y.npy"))


def aligned(a, align=64):
    """A copy of ``a`` whose data starts on an ``align``-byte boundary.

    The kernels take other paths (other counts) on other alignments of their
    inputs, and where np.load puts an array's data is left to chance.
    """
    import numpy as np
    buffer = np.empty(a.nbytes + align, dtype=np.uint8)
    start = -buffer.ctypes.data % align
    out = buffer[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def make_workload(net, spec, X, Y):
    """The measured call: a fit, or ``calls`` one-row predicts."""
    if spec["kind"] == "predict":
        def workload():
            for _ in range(spec["calls"]):
                net.predict(X)
        return workload

    def workload():
        net.fit(X, Y, epochs=spec["epochs"], learning_rate=spec["lr"],
                batch_size=spec["batch_size"], shuffle=False, **spec["options"])
    return workload


def warm_up(net, spec, X, Y):
    """One call of each kind the workload makes (lazy imports, first-call
    paths), on one batch; the initial weights are put back afterwards."""
    if spec["kind"] == "predict":
        net.predict(X)
        return
    start = net.params.copy()
    rows = spec["batch_size"] or X.shape[0]
    net.fit(X[:rows], Y[:rows], epochs=1, learning_rate=spec["lr"],
            batch_size=spec["batch_size"], shuffle=False, **spec["options"])
    net.params[...] = start


# --------------------------------------------------------------------------
# the parent: runs the children, reads their totals
# --------------------------------------------------------------------------


def child_command(spec_path, phase, root):
    """The command line of a child (this script, ``--child``)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", spec_path, "--phase", phase]
    return cmd + (["--root", root] if root else [])


def child_env():
    env = dict(os.environ)
    env.update(CHILD_ENV)
    return env


def run_child(cmd, valgrind_out=None):
    """Run a child, under callgrind when ``valgrind_out`` is a file name;
    returns its last stdout line (what it imported, JSON)."""
    if valgrind_out:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={valgrind_out}",
               "--log-file=" + valgrind_out + ".log"] + cmd
    out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}): {' '.join(cmd)}\n"
                           + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_total(path):
    """The instruction count of a callgrind output file (its totals line)."""
    found = {}
    with open(path) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("totals", "summary"):
                found[key] = int(value.split()[0])
    if not found:
        raise ValueError(f"no totals or summary line in {path}")
    return found.get("totals", found.get("summary"))


def measure(name, spec_path, root, folder):
    """A workload's counts: set-up alone, set-up and run, and their difference."""
    totals, seconds = {}, {}
    for phase in ("setup", "run"):
        out = os.path.join(folder, f"{name}.{phase}.out")
        t0 = time.perf_counter()
        run_child(child_command(spec_path, phase, root), out)
        seconds[phase] = round(time.perf_counter() - t0, 1)
        totals[phase] = read_total(out)
    return {"instructions": totals["run"] - totals["setup"], "setup": totals["setup"],
            "run": totals["run"], "seconds": seconds}


def measure_all(specs, root, folder, jobs):
    """Every workload's counts, ``jobs`` children at a time; by name, in order."""
    paths = {name: write_inputs(name, spec, folder) for name, spec in specs.items()}
    # a first run without valgrind: a broken build or --root fails in a
    # second, not after a valgrind start-up
    imported = run_child(child_command(next(iter(paths.values())), "setup", root))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {name: pool.submit(measure, name, path, root, folder)
                   for name, path in paths.items()}
        results = {}
        for name, future in futures.items():
            results[name] = dict(future.result(), description=specs[name]["description"])
            r = results[name]
            log(f"{name}: {r['instructions'] / 1e6:.2f} M instructions "
                f"(set-up {r['seconds']['setup']} s, set-up and run {r['seconds']['run']} s)")
    return results, imported


# --------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def source_commit(folder):
    """``git describe --always --dirty`` of the checkout holding ``folder``,
    or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"],
                             cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def valgrind_version():
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def metadata(root, imported, seconds):
    """What was measured, and how (stored beside the counts)."""
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "root": os.path.abspath(root) if root else None,
            "source": source_commit(os.path.dirname(imported["file"])),
            "fastmlp": imported, "valgrind": valgrind_version(),
            "python": sys.version.split()[0], "env": CHILD_ENV, "dtype": DTYPE,
            "seconds": round(seconds, 1)}


def table(results):
    """The table of counts (markdown lines): workload, M instructions, what."""
    lines = ["| workload | M instructions | what |", "| --- | ---: | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['instructions'] / 1e6:.2f} | {r['description']} |")
    return lines


def compare(old, new, tolerance):
    """Per-workload ratio new / old (markdown lines); beyond ±tolerance flagged."""
    lines = ["| workload | old M | new M | new/old | |", "| --- | ---: | ---: | ---: | --- |"]
    a, b = old["workloads"], new["workloads"]
    for name in list(a) + [n for n in b if n not in a]:
        if name not in a or name not in b:
            lines.append(f"| {name} | {_millions(a.get(name))} | {_millions(b.get(name))} "
                         "| - | only in one |")
            continue
        ratio = b[name]["instructions"] / a[name]["instructions"]
        flag = "OUTSIDE ±{:g}%".format(100 * tolerance) if abs(ratio - 1) > tolerance else ""
        lines.append(f"| {name} | {_millions(a[name])} | {_millions(b[name])} "
                     f"| {ratio:.4f} | {flag} |")
    return lines


def _millions(result):
    return "-" if result is None else f"{result['instructions'] / 1e6:.2f}"


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="checkout whose fastmlp to import (default: the "
                                  "installed package)")
    p.add_argument("--workloads", help="comma-separated subset (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="children at a time (default 1)")
    p.add_argument("--json", help="write the counts to this file")
    p.add_argument("--keep", metavar="DIR",
                   help="keep the inputs and callgrind outputs in DIR")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                   help="print the ratios of two --json files and stop")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="--compare flags ratios beyond 1 ± this (default 0.01)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=("setup", "run"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def select(specs, names):
    """The specs named in a comma-separated list (all when None)."""
    if not names:
        return specs
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in specs]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {list(specs)}")
    return {n: specs[n] for n in wanted}


@contextlib.contextmanager
def work_folder(keep):
    """The folder for inputs and callgrind outputs: ``keep`` (made if need
    be, left in place for callgrind_annotate), or a temporary one."""
    if keep:
        os.makedirs(keep, exist_ok=True)
        yield os.path.abspath(keep)
        return
    with tempfile.TemporaryDirectory(prefix="fastmlp-callgrind-") as folder:
        yield folder


def run_main(args):
    """Measure, print the table, write the JSON."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH")
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    specs = select(all_specs(), args.workloads)
    t0 = time.perf_counter()
    with work_folder(args.keep) as folder:
        results, imported = measure_all(specs, args.root, folder, max(1, args.jobs))
    report = {"meta": metadata(args.root, imported, time.perf_counter() - t0),
              "workloads": results}
    print(f"fastmlp {imported['file']} ({imported['build_info']}), "
          f"{report['meta']['valgrind']}, {report['meta']['seconds']} s")
    print("\n".join(table(results)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


def compare_main(args):
    with open(args.compare[0]) as fh:
        old = json.load(fh)
    with open(args.compare[1]) as fh:
        new = json.load(fh)
    print("\n".join(compare(old, new, args.tolerance)))


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        child_main(args.child, args.phase, args.root)
    elif args.compare:
        compare_main(args)
    else:
        run_main(args)


if __name__ == "__main__":
    main()
