"""Running a program on several MPI ranks from pytest: mpiexec beside this Python
(pip's mpich puts it in the venv's bin/) or on PATH; the child ranks import the same
fastmlp as the tests; every run has a timeout, so a hang fails instead of blocking."""
import os
import shutil
import subprocess
import sys

import pytest

import fastmlp


def mpiexec():
    """Path of mpiexec, or skip the test when there is none."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install 'fastmlp[mpi]')")
    return found


def mpi_command(p, python_args=()):
    """The command line: ``mpiexec -n p python -m mpi4py ...``."""
    return [mpiexec(), "-n", str(p), sys.executable, "-m", "mpi4py", *python_args]


def child_env(**extra):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # `python -m mpi4py script` replaces sys.path[0] by the script's folder: under
    # PYTHONSAFEPATH that entry is PYTHONPATH's first (scripts run from tests/ are safe)
    env.pop("PYTHONSAFEPATH", None)
    env.setdefault("OMP_NUM_THREADS", "1")           # two cores shared by the ranks
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.update(extra)
    return env


def run_ranks(p, python_args, timeout, **env):
    """Run ``python -m mpi4py ARGS`` on p ranks; returns the CompletedProcess."""
    return subprocess.run(mpi_command(p, python_args), capture_output=True, text=True,
                          timeout=timeout, env=child_env(**env))
