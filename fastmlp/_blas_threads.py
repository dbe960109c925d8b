"""Control of the BLAS thread count used by the kernels.

The kernels call scipy's BLAS (``scipy.linalg.cython_blas``). OpenBLAS
threads every product above a small size; on a 2-core machine that is
shared, two threads for a product that takes microseconds cost far more in
waiting than they save (measured: the seed-001 network, 4000x20 -> 8 -> 3 -> 1,
trains 5-8x slower with 2 threads than with 1 while another process runs).
So each kernel call runs under a thread count: 1 below a measured product
size, the library's own setting above it, or what the network's
``n_threads`` says. Calls asking for different counts never overlap
(``_threads.h``), so a call's result never depends on what other threads do.
The set/get functions are looked up once, here, and called from C.

Only OpenBLAS (scipy's bundled one, or a system one) is recognised; with any
other BLAS the thread count is left alone.
"""
import ctypes
import functools
import os

from . import _kernels

# Products (multiply-adds of the largest product in a call) below this run
# on one BLAS thread by default.
SINGLE_THREAD_BELOW = 4_000_000

_SYMBOLS = [("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads", "openblas_get_num_threads")]


def _loaded_openblas_paths():
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    # scipy's own copy first: it is the one cython_blas calls
    return sorted(paths, key=lambda p: ("scipy.libs" not in p, p))


def _install():
    for path in _loaded_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                set_fn, get_fn = getattr(lib, set_name), getattr(lib, get_name)
                _kernels.set_blas_thread_functions(
                    ctypes.cast(set_fn, ctypes.c_void_p).value,
                    ctypes.cast(get_fn, ctypes.c_void_p).value)
                return path
    return None


BLAS_LIBRARY = _install()


# Threads (the caller included) of the spinning pool of _pool.h: it splits
# the products of a forward pass of at most 4 rows (one-sample predict) by
# columns, the one-pass step's batches of narrow networks by chunks, and the
# register-blocked minibatch products of _gemm.h by column panels, and BLAS's
# products in bands when it runs them on one thread (pool_splits_blas).
# More than 4 would only add spinning threads for work this small.
CORES = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1))
POOL_THREADS = min(4, CORES)


# A BLAS product split over the pool has at most one band a pool thread: more
# bands each pack the shared operand again (bench/NOTES.md, SPLIT_BLAS_MACS).
# The bands follow the machine, not n_threads: results are the same on any.
BLAS_BAND_MACS = 2_000_000
_kernels.set_blas_bands(BLAS_BAND_MACS, POOL_THREADS)


def pool_threads(n_threads):
    """Threads of _pool.h for a call (the network's n_threads, at most 4)."""
    return POOL_THREADS if n_threads is None else min(n_threads, 4)


def pool_splits_blas(n_threads):
    """Whether a call's BLAS runs on one thread, its big products split over
    the pool instead (``gemm_split`` in _products.pxi): when OpenBLAS's count
    can be set and the pool has every thread the call may use.  The pool
    notices a slowed or descheduled thread; OpenBLAS's threads wait for it."""
    wanted = CORES if n_threads is None else n_threads
    return BLAS_LIBRARY is not None and pool_threads(n_threads) >= wanted


def threads_for(largest_product, n_threads):
    """The BLAS thread count to use for a call (0: the library's own setting)."""
    if pool_splits_blas(n_threads):
        return 1
    if n_threads is not None:
        return n_threads
    return 1 if largest_product < SINGLE_THREAD_BELOW else 0


@functools.lru_cache(maxsize=256)
def forward_threads(row_product, n_threads):
    """Thread counts of a forward pass whose rows cost ``row_product``
    multiply-adds in its largest product: ``(pool, many_rows, few, many)``,
    the pool's threads and the BLAS threads (as :func:`threads_for`) for
    batches of fewer than ``many_rows`` rows (``few``) and of more (``many``).
    """
    many_rows = -(-SINGLE_THREAD_BELOW // row_product)
    return (pool_threads(n_threads), many_rows, threads_for(0, n_threads),
            threads_for(SINGLE_THREAD_BELOW, n_threads))
