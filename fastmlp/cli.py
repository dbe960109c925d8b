"""The ``fastmlp`` command line (also ``python -m fastmlp``)."""
import argparse
import sys

from . import __version__
from .demo import DEMOS, run_demo


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastmlp",
        description="Fast multilayer perceptrons on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="train on built-in data and report loss and accuracy",
        description="Train networks on built-in data (no download), printing the "
                    "loss as training goes and the final accuracy.")
    demo.add_argument("tasks", nargs="*", choices=sorted(DEMOS) + [[]], metavar="TASK",
                      help=f"which demos to run: {', '.join(sorted(DEMOS))} (default: all)")
    demo.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                      help="precision of the networks (default float64)")
    demo.add_argument("--seed", type=int, default=0, help="seed of initialisation and data (default 0)")
    return parser


def main(argv=None):
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        ok = True
        for task in args.tasks or list(DEMOS):
            ok &= run_demo(task, dtype=args.dtype, seed=args.seed, out=sys.stdout)
        return 0 if ok else 1
    parser.error(f"unknown command {args.command!r}")
