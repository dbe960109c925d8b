# Tuning thresholds of the compiled core, together: each with its reason in a
# line; the measurements that set them are in bench/NOTES.md, "Thresholds of
# the compiled core" (one section a name).
# Included by _kernels.pyx.

# Products
cdef Py_ssize_t SMALL_PRODUCT = 128             # M*N*K at most this (or K == 1): C loops; a BLAS call costs more than the work
cdef Py_ssize_t BLOCKED_MAX_PRODUCT = 400000    # float32 products up to this: register blocks (_gemm.h); above, BLAS's cache blocking wins
cdef Py_ssize_t BLOCK_SPLIT_PRODUCT = 100000    # register-blocked products from this size split their panels over the pool
cdef size_t CACHED_B_BYTES = 512 << 10          # a one-thread part's B within half a core's L2: register blocks read it in place
cdef Py_ssize_t SPLIT_BLAS_MACS = 2000000       # a BLAS product split over the pool: at least this many MACs a band (a hand-off costs ~5-20 us)
cdef Py_ssize_t FUSED_BAND_VALUES = 16384       # the fused optimizer update: gradient values a band (64-128 KB, held by a core's cache from its product to its update)
cdef Py_ssize_t FUSED_L1_MAX_ROWS = 16          # ... batches of at most this many rows: bands of FUSED_L1_BYTES (the product is cheap, the update's reads are not)
cdef size_t FUSED_L1_BYTES = 16 << 10          # ... half a core's L1 data cache
cdef Py_ssize_t SPLIT_BLAS_MAX_BLOCKS = 2       # ... and at most this many bands: the pool's threads on this machine, set at import (each band packs the shared operand again)
cdef Py_ssize_t POINTWISE_SPLIT_VALUES = 32768  # activations / their derivatives on the pool: at least this many values a block
cdef Py_ssize_t FEW_ROWS_PRODUCT = 32768        # forward products of <= FMR_MAX_ROWS rows and this many MACs a row: _fewrows.h

# Predict and checks
cdef Py_ssize_t FORWARD_ROWS = 2048             # rows a forward pass computes at a time (its workspace's size)
FORWARD_CHUNK = FORWARD_ROWS
cdef Py_ssize_t FORWARD_POOL_ROWS = 1024       # rows of a chunk the pool's threads claim in a forward pass of more (forward_chunks; 0: off); 256 packed the weights for BLAS 4x as often (1-thread predict +4%)
cdef size_t PASS_WORK_BYTES = 16 << 20          # ... and at most this workspace (one row's if more): bounds predict / loss / gradients of wide layers
PASS_WORK = PASS_WORK_BYTES
cdef Py_ssize_t FINITE_SPLIT = 1 << 20          # arrays from this many values are checked for finiteness on the pool

# Training steps (see _planner.pxi)
cdef Py_ssize_t NARROW_MAX_WIDTH = 32           # every layer at most this wide: the one-pass "narrow" step (2-3x on xor, clf)
NARROW_WIDTH = NARROW_MAX_WIDTH
cdef Py_ssize_t NARROW_MIN_ROWS = 32            # ... and batches of at least this many rows (fewer: "layers" 1.1-5x faster)
cdef Py_ssize_t NARROW_PART_MACS = 100000       # "narrow" splits a batch over threads only with this many forward MACs a part
cdef size_t PREPARED_BYTES = 32 << 20           # largest copy of the data "narrow" prepares once for all epochs
cdef double SPARSE_MAX_DENSITY = 0.05         # a CSR X at most this dense: step "sparse" (its first layer's products over the stored values)
SPARSE_DENSITY = SPARSE_MAX_DENSITY
cdef Py_ssize_t ROW_PART_MACS = 100000          # "rows" / "units": forward MACs a part needs to pay for a hand-off
cdef Py_ssize_t FIRST_PART_MACS = 8000000       # "first": first-layer forward MACs a part needs
cdef double SAFE_FRACTION = 1e-2                # the update guard's bounds stay below this fraction of the largest finite value
