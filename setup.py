"""Build the compiled kernels.

Environment switches (local builds only; wheels are built without them):

FASTMLP_DEBUG=1     bounds checking and wraparound back on, for debugging.
FASTMLP_NATIVE=1    compile with -march=native (never used for a distributed wheel).
"""
import glob
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
# selects of the element-wise loops; neither flag changes any result.  -g0
# drops the debug information Python's own CFLAGS ask for (-g): 15% of the
# compile and 60% of the module's size; symbols stay for profilers.
compile_args = (["-O3", "-g0", "-fno-trapping-math", "-fno-math-errno"] if not DEBUG
                else ["-O1", "-g"])
if NATIVE:
    compile_args.append("-march=native")

build_flags = "debug" if DEBUG else ("native" if NATIVE else "portable")
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastmlp", "_build.py"), "w") as fh:
    fh.write("# Written by setup.py at build time.\n")
    fh.write(f"BUILD = {build_flags!r}\nCOMPILE_ARGS = {compile_args!r}\n")



class ParallelBuildExt(build_ext):
    """Compile an extension's C units at the same time, one a core: the
    narrow steps' instances (_narrow_d1.c .. _narrow_f8.c) took three
    quarters of the single unit's compile.  The Cython module's unit, the
    longest, starts first.  Falls back to setuptools' serial compile where
    its compiler class lacks the hooks used here."""

    def build_extension(self, ext):
        compiler = self.compiler
        hooks = ("_setup_compile", "_get_cc_args", "_compile")
        if len(ext.sources) < 2 or not all(hasattr(compiler, h) for h in hooks):
            return super().build_extension(ext)
        serial = compiler.compile

        def compile_parallel(sources, output_dir=None, macros=None, include_dirs=None,
                             debug=0, extra_preargs=None, extra_postargs=None, depends=None):
            macros, objects, extra, pp_opts, build = compiler._setup_compile(
                output_dir, macros, include_dirs, sources, depends, extra_postargs)
            cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

            def one(obj):
                src, src_ext = build[obj]
                compiler._compile(obj, src, src_ext, cc_args, extra, pp_opts)

            with ThreadPoolExecutor(max_workers=min(len(objects), os.cpu_count() or 1)) as pool:
                list(pool.map(one, objects))
            return objects

        compiler.compile = compile_parallel
        try:
            return super().build_extension(ext)
        finally:
            compiler.compile = serial


extensions = [
    Extension(
        "fastmlp._kernels",
        # one extension: the pool and the BLAS thread lock are process-wide
        # state; the narrow steps' units are C beside the Cython module's
        ["fastmlp/_kernels.pyx"] + sorted(glob.glob("fastmlp/_narrow_[df][148].c")),
        depends=sorted(glob.glob("fastmlp/_*.h") + glob.glob("fastmlp/_*.pxi")
                       + ["fastmlp/_kernels.pxd"]),
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives),
      cmdclass={"build_ext": ParallelBuildExt})
