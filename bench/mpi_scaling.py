"""Data-parallel training on one machine: 2 MPI ranks x 1 thread against 1 process x 2 threads.

    python bench/mpi_scaling.py all --json bench/results/distributed.json   # everything below
    python bench/mpi_scaling.py single --net mnist --threads 2              # one process
    mpiexec -n 2 python -m mpi4py bench/mpi_scaling.py mpi --net mnist --batch 64

(Not named distributed.py: bench/ is on sys.path in its tests, where that name hid
dask's ``distributed`` package from the README's Dask block run in the same process.)

Networks: mnist-shape 784-256-128-10 (235k parameters) and a wide 1024-1024-1024-10
(2.1M), relu + softmax + log loss, float32, plain SGD, random data (8192 rows).
Each configuration trains a few epochs, three times; the best run's figures are kept
(the machine is shared).  Reported per run: steps/s, samples/s (rows of the global
batch), the share of the step spent in the gradient Allreduce (waiting for the other
rank included), and the bare Allreduce of the gradient buffer on its own.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

NETS = {"mnist": [784, 256, 128, 10], "wide": [1024, 1024, 1024, 10]}
ROWS = 8192
LR = 0.05
HERE = os.path.dirname(os.path.abspath(__file__))


def _data(sizes, rank=0):
    """Rows of this rank (rank -1: held-out rows); labels from a fixed random teacher."""
    teacher = np.random.default_rng(99).normal(size=(sizes[0], sizes[-1]))
    X = np.random.default_rng(rank + 1).normal(size=(ROWS, sizes[0])).astype(np.float32)
    return X, np.argmax(X @ teacher, axis=1)


def _eval_loss(net):
    X, y = _data(net.layer_sizes, -1)
    return float(net.loss(X[:2048], y[:2048]))


def _net(sizes, threads):
    import fastmlp
    return fastmlp.Network(sizes, activation="relu", output="softmax", loss="log_loss",
                           init="he", dtype="float32", seed=0, n_threads=threads)


def single(args):
    """One process: Network.fit's compiled loop (or, with --python-step, one rank of
    fastmlp.distributed on COMM_SELF: the per-step path the MPI fit takes)."""
    sizes = NETS[args.net]
    X, y = _data(sizes)
    best = None
    for _ in range(args.repeats):
        net = _net(sizes, args.threads)
        t0 = time.perf_counter()
        if args.python_step:
            from mpi4py import MPI
            import fastmlp.distributed as dist
            dist.fit(net, X, y, comm=MPI.COMM_SELF, epochs=args.epochs, batch_size=args.batch,
                     learning_rate=LR, shuffle=True)
        else:
            net.fit(X, y, epochs=args.epochs, batch_size=args.batch, learning_rate=LR)
        seconds = time.perf_counter() - t0
        best = seconds if best is None else min(best, seconds)
    steps = args.epochs * -(-ROWS // args.batch)
    return dict(mode="python-step" if args.python_step else "single", net=args.net,
                threads=args.threads, batch=args.batch, global_batch=args.batch,
                steps_per_s=steps / best, samples_per_s=steps * args.batch / best,
                loss=float(net.history.loss[-1]), eval_loss=_eval_loss(net),
                load=os.getloadavg()[0])


def _bare_allreduce(comm, n, repeats=50):
    from mpi4py import MPI
    a, b = np.ones(n + 5, np.float32), np.empty(n + 5, np.float32)
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(repeats):
        comm.Allreduce(a, b, op=MPI.SUM)
    return (time.perf_counter() - t0) / repeats


def mpi(args):
    """Every rank: fastmlp.distributed.fit on its own 8192 rows."""
    from mpi4py import MPI
    import fastmlp.distributed as dist
    comm = MPI.COMM_WORLD
    sizes = NETS[args.net]
    X, y = _data(sizes, comm.rank)
    best = None
    for _ in range(args.repeats):
        net = _net(sizes, 1)
        comm.Barrier()
        t0 = time.perf_counter()
        h = dist.fit(net, X, y, comm=comm, epochs=args.epochs, batch_size=args.batch,
                     learning_rate=LR, average_every=args.average_every)
        seconds = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        if best is None or seconds < best[0]:
            best = (seconds, h.allreduce_seconds, float(h.loss[-1]))
    seconds, reducing, loss = best
    steps = args.epochs * -(-ROWS // args.batch)
    bare = _bare_allreduce(comm, net.n_params)
    if comm.rank == 0:
        return dict(mode="mpi", net=args.net, ranks=comm.size, threads=1, batch=args.batch,
                    global_batch=args.batch * comm.size, average_every=args.average_every,
                    steps_per_s=steps / seconds,
                    samples_per_s=steps * args.batch * comm.size / seconds,
                    allreduce_share=reducing / seconds, bare_allreduce_ms=bare * 1e3,
                    loss=loss, eval_loss=_eval_loss(net), load=os.getloadavg()[0])
    return None


def _run(cmd, env):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all(args):
    """Every configuration, each in its own process(es); a list of result dicts."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    me = [sys.executable, os.path.abspath(__file__)]
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    results = []
    for net in ("mnist", "wide"):
        epochs = str(3 if net == "mnist" else 1)
        common = ["--net", net, "--epochs", epochs, "--repeats", str(args.repeats)]
        for threads in (1, 2):
            e = dict(env, OPENBLAS_NUM_THREADS=str(threads))
            results.append(_run(me + ["single", "--threads", str(threads), "--batch", "128"]
                                + common, e))
        results.append(_run(me + ["single", "--python-step", "--batch", "128"] + common, env))
        for batch, every in ((64, None), (128, None), (128, 4), (128, 16)):
            extra = [] if every is None else ["--average-every", str(every)]
            results.append(_run([mpiexec, "-n", "2"] + [sys.executable, "-m", "mpi4py"] + me[1:]
                                + ["mpi", "--batch", str(batch)] + common + extra, env))
        for r in results[-7:]:
            print(_line(r), file=sys.stderr)
    return results


def _line(r):
    who = (f"{r['ranks']} ranks x 1 thread" if r["mode"] == "mpi"
           else f"1 process x {r['threads']} thread{'s' * (r['threads'] > 1)}"
           + (" (distributed step path)" if r["mode"] == "python-step" else ""))
    k = f", average_every={r['average_every']}" if r.get("average_every") else ""
    share = f", Allreduce {100 * r['allreduce_share']:.0f}% of the time" if "allreduce_share" in r else ""
    return (f"{r['net']:5s} {who}, batch {r['batch']}{k} (global {r['global_batch']}): "
            f"{r['steps_per_s']:.0f} steps/s, {r['samples_per_s']:.0f} samples/s{share}, "
            f"held-out loss {r['eval_loss']:.3f} (load {r['load']:.1f})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["all", "single", "mpi"])
    p.add_argument("--net", choices=sorted(NETS), default="mnist")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--average-every", type=int, default=None)
    p.add_argument("--python-step", action="store_true")
    p.add_argument("--json", metavar="PATH", help="(all) also write the results here")
    args = p.parse_args(argv)
    if args.mode == "all":
        results = run_all(args)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)
        return
    result = single(args) if args.mode == "single" else mpi(args)
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
