# Tuning thresholds of the compiled core, together (measurements: bench/NOTES.md).
# Included by _kernels.pyx.

# all_finite reads arrays of at least FINITE_SPLIT values in FINITE_BLOCKS
# blocks on the pool (predict's check of 10000 x 784 float32 rows: 2.0 ms on
# one thread).


cdef Py_ssize_t FINITE_SPLIT = 1 << 20


# Products with M*N*K at or below this run as plain C loops; larger ones go to
# BLAS.  Measured by timing _kernels.product's two paths (2 cores, AMD EPYC
# Zen 3, scipy's OpenBLAS):
# BLAS wins from about 8x8x8 on; the loops only for XOR-sized layers and for
# rank-1 products (K == 1), where BLAS's packing costs more than the work.
cdef Py_ssize_t SMALL_PRODUCT = 128

# float32 products of at most this many multiply-adds run through _gemm.h's
# register blocks (B stays in L1/L2 while every 4 rows of A pass over it)
# when B is untransposed and at least 16 columns wide, or when at least 8
# rows share the cost of copying B's panels (B transposed, or fewer than 16
# columns: 1 x 128 @ 128 x 10 took 1.8 us copying, BLAS's gemv 0.5); bigger
# ones are BLAS's.
# Measured (2 cores, OpenBLAS 0.3.30 on its default 2 threads, us per call
# incl. ~1.9 us of Python): 32x64 @ 64x128 9.2 vs 12.8, 64x32^T @ 32x128
# 10.8 vs 14.8, 64x64 @ 64x128 14.8 vs 14.0; 128x256 @ 256x128 136 vs 99,
# 128x784 @ 784x256 1028 vs 448 (BLAS's cache blocking and threads win);
# float64 no gain (23.5 vs 24.0 at 32x64 @ 64x128).  The 10-wide output
# layer's products of a digits step (32x128 @ 128x10, 128x32^T @ 32x10,
# 32x10 @ (128x10)^T: 2-4 us each either way alone) took 22% of the fit's
# time in OpenBLAS (packing, thread hand-off), none here (fit 44 -> 32 ms,
# best of 30).
cdef Py_ssize_t BLOCKED_MAX_PRODUCT = 400000

# register-blocked products of at least this many multiply-adds split their
# column panels over fastmlp's pool (when the call allows more than one
# thread).  Measured (2 cores, us per product, best / median of 15):
# 32x64 @ 64x128 6.6 / 9.1 on one thread, 6.2 / 7.7 on two (3.8 in a C
# loop without Python's other threads); 64x64 @ 64x128 13.0 / 16.8 vs
# 10.0 / 13.8; 128x128 @ 128x256 159 / 164 vs 94 / 117.
cdef Py_ssize_t BLOCK_SPLIT_PRODUCT = 100000

# Rows a forward pass (predict) computes at a time: its workspace holds the
# activations of this many rows.
cdef Py_ssize_t FORWARD_ROWS = 2048
FORWARD_CHUNK = FORWARD_ROWS

# Forward products of at most FMR_MAX_ROWS rows, at least one column block
# wide and with at least this many multiply-adds per row run in _fewrows.h,
# split by columns over its spinning threads when the call allows more than
# one (one-sample predict).  Measured (784-256-128-10, float32, 2 cores):
# one row 784x256 15.8 us on one thread, 9.0 us on two (OpenBLAS's sgemv
# 17-20 us); 256x128 2.3 vs 1.4 us, 128x128 1.0 vs 0.9 us; 2-4 rows of
# 784x256 take 200 us in OpenBLAS's sgemm (it packs the whole of B).
cdef Py_ssize_t FEW_ROWS_PRODUCT = 32768

# The one-pass step splits a batch over threads only when each part gets at
# least this many forward multiply-adds (see narrow_parts).
cdef Py_ssize_t NARROW_PART_MACS = 100000

# Networks whose layers are all at most this wide train through the
# feature-major one-pass step of _narrow.h instead of per-layer products.
# Measured (bench/compare.py, callgrind): 2-3x faster on xor (2-3-1) and clf
# (20-8-3-1); no faster than BLAS on digits (64-128-10, batch 32), so wider
# networks keep the per-layer products.
cdef Py_ssize_t NARROW_MAX_WIDTH = 32
NARROW_WIDTH = NARROW_MAX_WIDTH
# Largest copy of the training data the one-pass step prepares (transposed
# into its chunk layout) once for all epochs; bigger data is transposed
# batch by batch (measured on clf in float32: 1.5x the instructions per
# epoch, 1.32M against 0.88M), so a fit's memory stays
# within the data plus 32 MB.
cdef size_t PREPARED_BYTES = 32 << 20


# A part's product on one thread, where BLAS runs on one thread too (the
# first-layer split, FirstSplitTask): with op(A) untransposed and B's K x N
# within CACHED_B_BYTES (half a core's L2), the register blocks read B in
# place from the core's cache and stream A's rows past it, where one-thread
# BLAS packs both again; the size limit of BLOCKED_MAX_PRODUCT (set against
# BLAS's two threads) does not apply.  Measured in mnist-shape's split step
# (us a part, averages over fits, BLAS -> register blocks): the first
# layer's 128x784 @ 784x128 290-309 -> 272-281, the later layers' forward
# pass over 64 rows (64x256 @ 256x128 its product) 61.0 -> 51.6, the first
# layer's deltas 128x128 @ (128x128)^T 53.4 -> 46.7; steps 758 -> 740 us
# (p10 of 30 fits of 15000 rows, interleaved).  With op(A) transposed the
# blocks lose (the update products: 128x784^T @ 128x128 277-281 -> 307-329,
# 128x128^T @ 128x128 48.6 -> 57.2 alone).
cdef size_t CACHED_B_BYTES = 512 << 10


# A minibatch step whose products all run in fastmlp's own kernels (float32
# register blocks or loops, no BLAS) computes its forward pass, loss and
# deltas in parts of its rows on the pool: rows are independent there, so
# each thread runs every layer on its rows, with one hand-off for all of it
# instead of one a product, and the work between the big products (hidden
# activations, the narrow output layer, softmax and its loss, the deltas) no
# longer runs on one core.  The parts depend on the batch's shape alone,
# never on the thread count, and a row's values do not depend on its part:
# results do not depend on the thread count.  A part gets at least
# ROW_PART_MACS forward multiply-adds and MIN_PART_ROWS rows.
cdef Py_ssize_t ROW_PART_MACS = 100000


# A plain-SGD step skips the copy of the parameters it would restore from
# (and the check of them after) when bounds prove it cannot make one of them
# non-finite (see sgd_safe).  Measured on mnist-shape, medians of 7-8 fits
# interleaved in one process: 844 -> 761 ms with copy and check removed;
# 939 -> 755 ms against set_safe_fraction(0) (the copy and check of 0.94 MB
# a step ran on one core while BLAS's other thread waited).  Bounds stay
# below this fraction of the largest finite value.
cdef double SAFE_FRACTION = 1e-2


cdef Py_ssize_t FIRST_PART_MACS = 8000000   # first-layer forward multiply-adds a part
