"""The command line of the scripts that time fastmlp against one alternative
case by case (fused_update.py, lbfgs.py): ``--repeats``, each case's ratio,
and their geometric mean."""
import argparse

import numpy as np


def main_over_cases(doc, run_case, cases, default_repeats, argv=None):
    """Parse ``--repeats``, run ``run_case(case, repeats)`` (it prints its line
    and returns its ratio) for every case, then print the ratios' geometric mean."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=default_repeats)
    args = parser.parse_args(argv)
    ratios = [run_case(case, args.repeats) for case in cases]
    print(f"geometric mean of the ratios: {np.exp(np.mean(np.log(ratios))):.3f}")
