"""A cost model of synchronous data-parallel SGD on p machines, from measured compute times.

    python bench/cost_model.py bench/results/distributed.json > table.md

One step on p machines, each with its own batch of b rows:

    t_step(p, b) = t_fixed + c * b + t_allreduce(p)
    t_allreduce(p) = 2 (p - 1) / p * bytes / bandwidth + 2 (p - 1) * latency    (ring)

``c`` (seconds per row) and ``t_fixed`` (the per-step cost that does not grow with
the batch: the Python step path's kernel call and the optimizer update over every
parameter) come from bench/mpi_scaling.py's single-thread runs on this machine:
``c`` from the compiled fit at batch 128, ``t_fixed`` from the distributed step path
at batch 128 minus that.  ``bytes`` is the float32 gradient (4 bytes a parameter).
Latency per message: 10 us for 10 Gbit/s Ethernet (TCP), 3 us for 100 Gbit/s (RDMA).
The allreduce is assumed not to overlap the computation (it cannot here: see
DISTRIBUTED.md), so these are what fastmlp.distributed would reach, not a bound.
"""
import json

NETS = {"mnist": [784, 256, 128, 10], "wide": [1024, 1024, 1024, 10]}
LINKS = {"10 Gbit/s": (10e9 / 8, 10e-6), "100 Gbit/s": (100e9 / 8, 3e-6)}
MACHINES = (2, 4, 8, 16, 32, 64)
BATCH = 128


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def allreduce_seconds(p, nbytes, bandwidth, latency):
    """Ring allreduce: reduce-scatter then allgather, 2(p-1) messages of nbytes/p."""
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def compute_model(results, net, scale=1.0):
    """(c seconds per row, t_fixed seconds per step) from the measured runs, times ``scale``."""
    compiled = next(r for r in results if r["net"] == net and r["mode"] == "single"
                    and r["threads"] == 1)
    python = next(r for r in results if r["net"] == net and r["mode"] == "python-step")
    c = 1 / compiled["steps_per_s"] / compiled["batch"]
    t_fixed = max(0.0, 1 / python["steps_per_s"] - 1 / compiled["steps_per_s"])
    return c * scale, t_fixed * scale


def step_seconds(p, b, c, t_fixed, nbytes, link):
    return t_fixed + c * b + allreduce_seconds(p, nbytes, *LINKS[link])


def table(results, net, scale=1.0):
    """Markdown: steps/s and speedup at 128 rows a machine, and where scaling stops paying."""
    c, t_fixed = compute_model(results, net, scale)
    nbytes = 4 * n_params(NETS[net]) + 20
    one = t_fixed + c * BATCH
    lines = [f"**{net}** {'-'.join(map(str, NETS[net]))}: {n_params(NETS[net]):,} parameters, "
             f"{nbytes / 1e6:.2f} MB a step; c = {c * 1e6:.2f} us a row, t_fixed = "
             f"{t_fixed * 1e6:.0f} us a step; one machine at batch {BATCH}: "
             f"{1 / one:.0f} steps/s", "",
             "| machines | link | allreduce | steps/s | samples/s | speedup | efficiency "
             "| b at 50% | global B where p beats 1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for link in LINKS:
        for p in MACHINES:
            ar = allreduce_seconds(p, nbytes, *LINKS[link])
            t = step_seconds(p, BATCH, c, t_fixed, nbytes, link)
            speedup = p * BATCH / t / (BATCH / one)
            b_half = max(0.0, (ar - t_fixed) / c)          # compute == communication
            b_even = ar / (c * (1 - 1 / p))                 # fixed global batch: p machines = 1
            lines.append(f"| {p} | {link} | {ar * 1e3:.2f} ms | {1 / t:.0f} | "
                         f"{p * BATCH / t:,.0f} | {speedup:.1f}x | {speedup / p:.0%} | "
                         f"{b_half:,.0f} | {b_even:,.0f} |")
    return "\n".join(lines)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="Cost-model tables from bench/mpi_scaling.py's JSON.")
    p.add_argument("results", nargs="?", default="bench/results/distributed.json")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the measured compute times (e.g. 0.29: a quiet machine)")
    args = p.parse_args(argv)
    with open(args.results) as fh:
        results = json.load(fh)
    for net in NETS:
        print(table(results, net, args.scale))
        print()


if __name__ == "__main__":
    main()
