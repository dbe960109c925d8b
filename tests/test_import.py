"""What `import fastmlp` loads, and that scipy still works beside it."""
import subprocess
import sys

import fastmlp

CHECK = """
import sys, time
t = time.perf_counter()
import fastmlp
seconds = time.perf_counter() - t
heavy = [m for m in ("scipy.linalg", "sklearn", "matplotlib", "torch", "tqdm", "mpi4py", "dask",
                     "distributed") if m in sys.modules]
assert not heavy, heavy
import scipy.linalg, numpy as np
assert scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"]
assert np.allclose(scipy.linalg.solve(np.eye(3) * 2, np.ones(3)), 0.5)
print(seconds)
"""


def test_import_is_light_and_scipy_linalg_still_works():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 2.0          # the speed claim lives in bench/; this catches gross regressions


def test_scipy_linalg_imported_first_is_fine():
    code = ("import scipy.linalg, sys, fastmlp, numpy as np\n"
            "assert scipy.linalg.cython_blas is sys.modules['scipy.linalg.cython_blas']\n"
            "print(fastmlp.Network([2, 1], seed=0).predict(np.ones((1, 2))).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 1)"


def _env():
    import os
    env = dict(os.environ)
    # the child must import the same fastmlp as this process (installed or in-place build)
    root = os.path.dirname(os.path.dirname(fastmlp.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
