"""Build the compiled kernels.

Environment switches (local builds only; wheels are built without them):

FASTMLP_DEBUG=1     bounds checking and wraparound back on, for debugging.
FASTMLP_NATIVE=1    compile with -march=native (never used for a distributed wheel).
"""
import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTMLP_DEBUG", "") not in ("", "0")
NATIVE = os.environ.get("FASTMLP_NATIVE", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# -fno-trapping-math lets gcc if-convert (and so vectorise) the clamps and
# selects of the element-wise loops; neither flag changes any result.
compile_args = ["-O3", "-fno-trapping-math", "-fno-math-errno"] if not DEBUG else ["-O1", "-g"]
if NATIVE:
    compile_args.append("-march=native")

build_flags = "debug" if DEBUG else ("native" if NATIVE else "portable")
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastmlp", "_build.py"), "w") as fh:
    fh.write("# Written by setup.py at build time.\n")
    fh.write(f"BUILD = {build_flags!r}\nCOMPILE_ARGS = {compile_args!r}\n")

extensions = [
    Extension(
        "fastmlp._kernels",
        ["fastmlp/_kernels.pyx"],
        # one extension: the pool and the BLAS thread lock are process-wide state
        depends=sorted(glob.glob("fastmlp/_*.h") + glob.glob("fastmlp/_*.pxi")
                       + ["fastmlp/_kernels.pxd"]),
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
