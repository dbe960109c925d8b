# cython: language_level=3
"""Compiled core of fastmlp: forward pass, delta backpropagation and updates.

Conventions shared with :mod:`fastmlp.reference` (the spec):

* ``params`` is one flat, C-contiguous buffer.  Weight layer ``l`` occupies
  ``W_l`` (``sizes[l] * sizes[l+1]`` values, row-major ``(n_in, n_out)``)
  followed by ``b_l`` (``sizes[l+1]`` values).  Gradients and optimizer
  state use the same layout.
* Batches are row-major: ``Z = A @ W + b``.
* Codes: hidden activation 0 identity, 1 sigmoid, 2 tanh, 3 relu; output 0
  identity, 1 sigmoid, 2 softmax; loss 0 squared error, 1 log loss;
  optimizer 0 SGD (optional momentum / Nesterov), 1 Adam.
* With sample weights ``w`` (all ones when absent) and ``M = sum(w)`` over a
  batch, the batch objective is
  ``sum_i w_i * loss_i / M + l2 / (2 M) * sum(W**2) + l1 / M * sum(|W|)``.

Every function here trusts its arguments: validation happens in Python
(:mod:`fastmlp._validation`) before any kernel runs.  Each call allocates its
own workspace, so calls from several threads never share scratch memory, and
the GIL is released while the math runs.
"""
cimport cython
from cython cimport floating
from libc.math cimport sqrt, pow, fabs, isfinite, INFINITY
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint64_t, int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv
from cpython.exc cimport PyErr_CheckSignals
cimport numpy as cnp

cnp.import_array()

cdef extern from "_vmath.h" nogil:
    void fm_bias_act_d(double* A, const double* b, Py_ssize_t m, Py_ssize_t k, int act)
    void fm_bias_act_f(float* A, const float* b, Py_ssize_t m, Py_ssize_t k, int act)
    void fm_times_dact_d(double* D, const double* A, Py_ssize_t n, int act)
    void fm_times_dact_f(float* D, const float* A, Py_ssize_t n, int act)
    void fm_colsum_d(const double* D, Py_ssize_t m, Py_ssize_t k, double* out)
    void fm_colsum_f(const float* D, Py_ssize_t m, Py_ssize_t k, float* out)
    void fm_colsum_ld_f(const float* D, Py_ssize_t m, Py_ssize_t k, Py_ssize_t ld, float* out)
    void fm_small_gemm_d(char ta, char tb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                         double alpha, const double* A, Py_ssize_t lda, const double* B,
                         Py_ssize_t ldb, double beta, double* C, Py_ssize_t ldc)
    void fm_small_gemm_f(char ta, char tb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                         float alpha, const float* A, Py_ssize_t lda, const float* B,
                         Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc)
    double fm_bce_sum_d(const double* z, const double* y, const double* w, Py_ssize_t m, Py_ssize_t k)
    double fm_bce_sum_f(const float* z, const float* y, const float* w, Py_ssize_t m, Py_ssize_t k)
    double fm_softmax_xent_sum_d(const double* z, const double* p, const double* y,
                                 const double* w, Py_ssize_t m, Py_ssize_t k)
    double fm_softmax_xent_sum_f(const float* z, const float* p, const float* y,
                                 const float* w, Py_ssize_t m, Py_ssize_t k)
    double fm_softmax_xent_delta_f(const float* zp, Py_ssize_t parts, Py_ssize_t zstride,
                                   const float* b, const float* y, const float* w,
                                   Py_ssize_t m, Py_ssize_t k, double inv_M, float* D)
    double fm_exp_d(double x)
    int fm_all_finite_d(const double* x, Py_ssize_t n)
    int fm_all_finite_f(const float* x, Py_ssize_t n)
    double fm_abs_sum_d(const double* x, Py_ssize_t n)
    double fm_abs_sum_f(const float* x, Py_ssize_t n)
    double fm_abs_max_d(const double* x, Py_ssize_t n)
    double fm_abs_max_f(const float* x, Py_ssize_t n)
    float fm_exp_f(float x)

cdef extern from "_gemm.h" nogil:
    void fm_gemm_rb(int is_float, char ta, char tb, Py_ssize_t M, Py_ssize_t N,
                    Py_ssize_t K, double alpha, const void* A, Py_ssize_t lda,
                    const void* B, Py_ssize_t ldb, double beta, void* C, Py_ssize_t ldc,
                    int threads)

cdef extern from "_pool.h" nogil:
    ctypedef void (*fmp_fn)(void* arg, int block) noexcept nogil
    void fmp_run(fmp_fn fn, void* arg, int n_blocks, int threads)
    int64_t fmp_now_ns()
    int64_t fmp_solo_left_ns()
    void fmp_forget_stalls()
    void fmp_set_slow_windows(int on)
    void fmp_add_to_window(int64_t own, int64_t wait, int64_t now)

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()
    int pthread_equal(pthread_t a, pthread_t b)

# all_finite reads arrays of at least FINITE_SPLIT values in FINITE_BLOCKS
# blocks on the pool (predict's check of 10000 x 784 float32 rows: 2.0 ms on
# one thread).
cdef enum:
    FINITE_BLOCKS = 8
cdef Py_ssize_t FINITE_SPLIT = 1 << 20

cdef extern from "_fewrows.h" nogil:
    int FMR_MAX_ROWS
    Py_ssize_t fmr_block_width(size_t elsize)
    void fmr_product(int is_float, int M, Py_ssize_t N, Py_ssize_t K, const void* A,
                     Py_ssize_t lda, const void* B, Py_ssize_t ldb, void* C, Py_ssize_t ldc,
                     int threads)

cdef extern from "_narrow.h" nogil:
    int FMN_MAX_LAYERS
    int FMN_MAX_PARTS
    size_t fm_narrow_work_bytes(const Py_ssize_t* sizes, int L)
    int fm_narrow_nv(Py_ssize_t m, size_t elsize)
    Py_ssize_t fm_narrow_chunk(int nv, size_t elsize)
    size_t fm_narrow_prep_bytes(Py_ssize_t n_x, Py_ssize_t n_y, Py_ssize_t m, int nv,
                                size_t elsize)
    void fm_narrow_prepare_d(int nv, Py_ssize_t n_x, Py_ssize_t n_y, const double* X,
                             const double* Y, const double* w, Py_ssize_t m, void* out)
    void fm_narrow_prepare_f(int nv, Py_ssize_t n_x, Py_ssize_t n_y, const float* X,
                             const float* Y, const float* w, Py_ssize_t m, void* out)
    void fm_narrow_init(void* work, const Py_ssize_t* sizes, int L, int nv)
    double fm_narrow_batch_d(void* work, int hidden, int output, int loss,
                             const double* params, const double* X, const double* Y,
                             const double* w, const void* prep, Py_ssize_t m, double inv_M,
                             double* grads, int parts)
    double fm_narrow_batch_f(void* work, int hidden, int output, int loss,
                             const float* params, const float* X, const float* Y,
                             const float* w, const void* prep, Py_ssize_t m, double inv_M,
                             float* grads, int parts)
    Py_ssize_t fm_narrow_sgd_epochs_d(void* work, int hidden, int output, int loss,
                                      double* params, const void* prep, Py_ssize_t m,
                                      double lr, Py_ssize_t epochs, double W_total,
                                      double* epoch_loss, double* grads, double* backup)
    Py_ssize_t fm_narrow_sgd_epochs_f(void* work, int hidden, int output, int loss,
                                      float* params, const void* prep, Py_ssize_t m,
                                      float lr, Py_ssize_t epochs, double W_total,
                                      double* epoch_loss, float* grads, float* backup)
    int fm_sgd_step_d(double* p, const double* g, double* backup, double lr, Py_ssize_t n)
    int fm_sgd_step_f(float* p, const float* g, float* backup, float lr, Py_ssize_t n)

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
NARROW_WIDTH = 32
# Largest copy of the training data the one-pass step prepares (transposed
# into its chunk layout) once for all epochs; bigger data is transposed
# batch by batch (measured on clf in float32: 1.5x the instructions per
# epoch, 1.32M against 0.88M), so a fit's memory stays
# within the data plus 32 MB.
cdef size_t PREPARED_BYTES = 32 << 20

cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_SOFTMAX = 4

cdef enum:
    OUT_IDENTITY = 0
    OUT_SIGMOID = 1
    OUT_SOFTMAX = 2

cdef enum:
    LOSS_SQUARED = 0
    LOSS_LOG = 1

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1


cdef struct Spec:
    const Py_ssize_t* sizes   # layer sizes, L + 1 of them
    int L                     # number of weight layers
    int hidden                # hidden activation code
    int output                # output code
    int loss                  # loss code
    Py_ssize_t per_row        # sum of sizes[1:]: activations per row
    Py_ssize_t n_params
    int pool_threads          # threads of fastmlp's pool for the products it computes
    bint blas_one             # BLAS runs on one thread: products whose B a core's cache
                              # holds go to the register blocks (see cached_product)


cdef Spec make_spec(const Py_ssize_t[::1] sizes, int hidden, int output, int loss) except *:
    if sizes.shape[0] < 2:
        raise ValueError("sizes must hold at least 2 layer sizes")
    return spec_of(&sizes[0], sizes.shape[0], hidden, output, loss)


cdef Spec spec_of(const Py_ssize_t* sizes, Py_ssize_t n_sizes, int hidden, int output,
                  int loss) noexcept:
    """The Spec of ``n_sizes`` (>= 2) layer sizes at ``sizes``."""
    cdef Spec s
    cdef Py_ssize_t l
    s.sizes = sizes
    s.L = <int>(n_sizes - 1)
    s.hidden = hidden
    s.output = output
    s.loss = loss
    s.per_row = 0
    s.n_params = 0
    s.pool_threads = 1
    s.blas_one = False
    for l in range(s.L):
        s.per_row += sizes[l + 1]
        s.n_params += sizes[l] * sizes[l + 1] + sizes[l + 1]
    return s


# --------------------------------------------------------------------------
# BLAS threads (functions found by fastmlp/_blas_threads.py)
# --------------------------------------------------------------------------

cdef extern from "_threads.h" nogil:
    void fm_install_blas_threads(void* set_fn, void* get_fn)
    int fm_threads_enter(int want)
    void fm_threads_exit(int entered)
    int fm_blas_threads_known()


cdef struct StallProbe:
    pthread_t caller
    int64_t caller_ns       # how long a block takes on the caller
    int64_t worker_ns       # ... on a worker (as if descheduled in the middle)
    int on_caller           # blocks the caller ran (written by the caller only)


cdef void stall_probe_block(void* arg, int block) noexcept nogil:
    cdef StallProbe* p = <StallProbe*>arg
    cdef int64_t until
    if pthread_equal(pthread_self(), p.caller):
        p.on_caller += 1
        until = fmp_now_ns() + p.caller_ns
    else:
        until = fmp_now_ns() + p.worker_ns
    while fmp_now_ns() < until:
        pass


def _pool_stall_probe(double caller_s, double worker_s, int n_blocks=2, int threads=2,
                      bint forget=False):
    """Test hook of _pool.h's stall handling: one pool call of ``n_blocks``
    blocks that take ``caller_s`` seconds each on the caller and ``worker_s``
    on a worker.  Past stalls are forgotten first with ``forget``.  Returns
    (blocks the caller ran, seconds the pool then runs alone)."""
    cdef StallProbe p
    p.caller = pthread_self()
    p.caller_ns = <int64_t>(caller_s * 1e9)
    p.worker_ns = <int64_t>(worker_s * 1e9)
    p.on_caller = 0
    with nogil:
        if forget:
            fmp_forget_stalls()
        fmp_run(stall_probe_block, &p, n_blocks, threads)
    return p.on_caller, fmp_solo_left_ns() / 1e9


def _pool_window_probe(double own_s, double wait_s, int calls, bint forget=True):
    """Test hook of _pool.h's slow-worker windows: add ``calls`` pool calls
    of ``own_s`` seconds on the caller's own blocks and ``wait_s`` waiting
    for the workers (past stalls forgotten first with ``forget``), and
    return the seconds the pool then runs alone."""
    cdef int i
    with nogil:
        if forget:
            fmp_forget_stalls()
        for i in range(calls):
            fmp_add_to_window(<int64_t>(own_s * 1e9), <int64_t>(wait_s * 1e9), fmp_now_ns())
    return fmp_solo_left_ns() / 1e9


def _pool_slow_windows(bint enabled):
    """Keep (True) or drop the pool's slow-worker windows (see _pool.h); for
    measurements, not thread-safe."""
    fmp_set_slow_windows(enabled)


def set_blas_thread_functions(size_t set_address, size_t get_address):
    """Install the BLAS library's thread-count setter and getter (addresses)."""
    fm_install_blas_threads(<void*>set_address, <void*>get_address)


cdef inline int threads_enter(int want) noexcept nogil:
    """Run under ``want`` BLAS threads (0: the user's setting) until threads_exit."""
    return fm_threads_enter(want)


cdef inline void threads_exit(int entered) noexcept nogil:
    fm_threads_exit(entered)


# --------------------------------------------------------------------------
# Matrix products
# --------------------------------------------------------------------------

cdef inline void gemm_rm(char ta, char tb, int M, int N, int K, floating alpha,
                  const floating* A, int lda, const floating* B, int ldb,
                  floating beta, floating* C, int ldc, int threads) noexcept nogil:
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C`` (``C`` is M x N).

    Tiny products run as C loops (a BLAS call costs more than the work),
    minibatch-sized ones whose B sits in cache through _gemm.h's register
    blocks (BLAS would spend as long packing as multiplying), the rest go to
    BLAS.  ``threads``: the most of fastmlp's pool to use (register blocks
    of at least BLOCK_SPLIT_PRODUCT multiply-adds).
    """
    if loop_product(M, N, K):
        gemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    elif not blas_product(floating is float, tb, M, N, K):
        gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                     threads if <Py_ssize_t>M * N * K >= BLOCK_SPLIT_PRODUCT else 1)
    else:
        gemm_blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)


cdef inline bint loop_product(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K) noexcept nogil:
    """Whether :func:`gemm_rm` computes this product as plain loops."""
    return M * N * K <= SMALL_PRODUCT or K == 1


cdef inline bint blas_product(bint is_float, char tb, Py_ssize_t M, Py_ssize_t N,
                              Py_ssize_t K) noexcept nogil:
    """Whether :func:`gemm_rm` hands this product to BLAS."""
    if loop_product(M, N, K):
        return False
    return not (is_float and M * N * K <= BLOCKED_MAX_PRODUCT
                and ((tb == c'N' and N >= 16) or (N >= 8 and M >= 8)))


cdef inline void gemm_blocked(char ta, char tb, int M, int N, int K, floating alpha,
                              const floating* A, int lda, const floating* B, int ldb,
                              floating beta, floating* C, int ldc, int threads) noexcept nogil:
    fm_gemm_rb(floating is float, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
               threads)


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


cdef inline bint cached_product(char ta, char tb, Py_ssize_t M, Py_ssize_t N,
                                Py_ssize_t K) noexcept nogil:
    """Whether a one-thread float32 product beside one-thread BLAS goes to
    the register blocks (see CACHED_B_BYTES): B held by a core's cache,
    op(A) untransposed, and the shape the blocks take (as blas_product)."""
    return (ta == c'N' and <size_t>(K * N) * sizeof(float) <= CACHED_B_BYTES
            and not loop_product(M, N, K) and ((tb == c'N' and N >= 16) or (N >= 8 and M >= 8)))


cdef inline void part_gemm(bint blas_one, char ta, char tb, int M, int N, int K,
                           floating alpha, const floating* A, int lda, const floating* B,
                           int ldb, floating beta, floating* C, int ldc,
                           int threads) noexcept nogil:
    """:func:`gemm_rm`, but with ``blas_one`` (one thread here and in BLAS)
    float32 products that :func:`cached_product` takes go to the register
    blocks on one thread whatever their size."""
    if floating is float and blas_one and cached_product(ta, tb, M, N, K):
        gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1)
    else:
        gemm_rm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads)


cdef inline void gemm_loops(char ta, char tb, int M, int N, int K, floating alpha,
                            const floating* A, int lda, const floating* B, int ldb,
                            floating beta, floating* C, int ldc) noexcept nogil:
    if floating is float:
        fm_small_gemm_f(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        fm_small_gemm_d(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)


cdef void gemm_blas(char ta, char tb, int M, int N, int K, floating alpha,
                    const floating* A, int lda, const floating* B, int ldb,
                    floating beta, floating* C, int ldc) noexcept nogil:
    """The BLAS side of :func:`gemm_rm`: gemv for vector shapes, else gemm
    with the operands swapped (a row-major matrix read as column-major is its
    transpose)."""
    cdef char trans
    cdef int one = 1, rows, cols, incx
    if M == 1:
        # a row vector times op(B): y(N) = op(B)^T a, B read column-major
        if tb == c'N':
            trans, rows, cols = c'N', N, K
        else:
            trans, rows, cols = c'T', K, N
        incx = 1 if ta == c'N' else lda
        if floating is float:
            sgemv(&trans, &rows, &cols, &alpha, <float*>B, &ldb, <float*>A, &incx,
                  &beta, C, &one)
        else:
            dgemv(&trans, &rows, &cols, &alpha, <double*>B, &ldb, <double*>A, &incx,
                  &beta, C, &one)
        return
    if N == 1:
        # op(A) times a column vector: y(M) = op(A) b, A read column-major
        if ta == c'N':
            trans, rows, cols = c'T', K, M
        else:
            trans, rows, cols = c'N', M, K
        incx = ldb if tb == c'N' else 1
        if floating is float:
            sgemv(&trans, &rows, &cols, &alpha, <float*>A, &lda, <float*>B, &incx,
                  &beta, C, &ldc)
        else:
            dgemv(&trans, &rows, &cols, &alpha, <double*>A, &lda, <double*>B, &incx,
                  &beta, C, &ldc)
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


# --------------------------------------------------------------------------
# Element-wise pieces (the vectorised loops live in _vmath.h)
# --------------------------------------------------------------------------

cdef inline void bias_act(floating* A, const floating* b, Py_ssize_t m, Py_ssize_t k,
                          int act) noexcept nogil:
    if floating is float:
        fm_bias_act_f(A, b, m, k, act)
    else:
        fm_bias_act_d(A, b, m, k, act)


cdef inline void times_dact(floating* D, const floating* A, Py_ssize_t n, int act) noexcept nogil:
    if act == ACT_IDENTITY:
        return
    if floating is float:
        fm_times_dact_f(D, A, n, act)
    else:
        fm_times_dact_d(D, A, n, act)


cdef inline void colsum(const floating* D, Py_ssize_t m, Py_ssize_t k, floating* out) noexcept nogil:
    if floating is float:
        fm_colsum_f(D, m, k, out)
    else:
        fm_colsum_d(D, m, k, out)


cdef double data_loss_sum(Spec* s, const floating* Z, const floating* P,
                          const floating* Y, const floating* w, Py_ssize_t m) noexcept nogil:
    """Weighted sum over the batch of the per-row data loss (not divided by M).

    Log loss is computed from the output logits ``Z`` (stable for any
    magnitude; softmax's also takes the ratios of ``P`` to its largest
    value, which are exp(z_j - z_max)); squared error from the outputs
    ``P``.  ``w`` NULL means unit weights.  (Softmax's in C with its log1p
    vectorised: the loss's share of a digits fit's perf samples was 2.6%
    as a loop here with libm's log1p.)
    """
    cdef Py_ssize_t i, j, k = s.sizes[s.L]
    cdef double total = 0, row, d
    if s.loss == LOSS_LOG and s.output == OUT_SIGMOID:
        if floating is float:
            return fm_bce_sum_f(Z, Y, w, m, k)
        else:
            return fm_bce_sum_d(Z, Y, w, m, k)
    if s.loss == LOSS_LOG:
        if floating is float:
            return fm_softmax_xent_sum_f(Z, P, Y, w, m, k)
        else:
            return fm_softmax_xent_sum_d(Z, P, Y, w, m, k)
    for i in range(m):                  # squared error
        row = 0
        for j in range(k):
            d = <double>Y[i * k + j] - <double>P[i * k + j]
            row += d * d
        row *= 0.5
        total += row if w == NULL else w[i] * row
    return total


cdef void output_delta(Spec* s, const floating* P, const floating* Y, const floating* w,
                       floating* D, Py_ssize_t m, double inv_M) noexcept nogil:
    """dObjective/dZ of the output layer for the batch (includes w_i / M)."""
    cdef Py_ssize_t i, j, k = s.sizes[s.L]
    cdef floating c, t, p, g
    for i in range(m):
        c = <floating>(inv_M if w == NULL else w[i] * inv_M)
        if s.loss == LOSS_LOG and s.output == OUT_SOFTMAX:
            # d/dz_j sum_k y_k (lse - z_k) = (sum_k y_k) p_j - y_j
            t = 0
            for j in range(k):
                t = t + Y[i * k + j]
            for j in range(k):
                D[i * k + j] = (t * P[i * k + j] - Y[i * k + j]) * c
        elif s.loss == LOSS_LOG or s.output == OUT_IDENTITY:
            # sigmoid + binary cross-entropy, identity + squared error: p - y
            for j in range(k):
                D[i * k + j] = (P[i * k + j] - Y[i * k + j]) * c
        elif s.output == OUT_SIGMOID:
            for j in range(k):
                p = P[i * k + j]
                D[i * k + j] = (p - Y[i * k + j]) * (p * (1 - p)) * c
        else:
            # softmax + squared error: J^T g with J = diag(p) - p p^T
            t = 0
            for j in range(k):
                t = t + (P[i * k + j] - Y[i * k + j]) * P[i * k + j]
            for j in range(k):
                p = P[i * k + j]
                D[i * k + j] = p * ((p - Y[i * k + j]) - t) * c


cdef inline double total_weight(const floating* w, Py_ssize_t n) noexcept nogil:
    """Sum of the sample weights (``n`` when ``w`` is NULL: unit weights)."""
    cdef double t = 0
    cdef Py_ssize_t i
    if w == NULL:
        return n
    for i in range(n):
        t += w[i]
    return t


cdef double penalty(Spec* s, const floating* params, double l2, double l1) noexcept nogil:
    """``l2 / 2 * sum(W**2) + l1 * sum(|W|)`` over weights (not biases)."""
    cdef double sq = 0, ab = 0
    cdef Py_ssize_t l, i, off = 0, nw
    if l2 == 0 and l1 == 0:
        return 0
    for l in range(s.L):
        nw = s.sizes[l] * s.sizes[l + 1]
        for i in range(nw):
            sq += <double>params[off + i] * params[off + i]
            ab += fabs(params[off + i])
        off += nw + s.sizes[l + 1]
    return 0.5 * l2 * sq + l1 * ab


cdef void add_l1_gradient(Spec* s, const floating* params, floating* grads,
                          floating c) noexcept nogil:
    """grads += c * sign(W) over the weights."""
    cdef Py_ssize_t l, i, off = 0, nw
    for l in range(s.L):
        nw = s.sizes[l] * s.sizes[l + 1]
        for i in range(nw):
            if params[off + i] > 0:
                grads[off + i] += c
            elif params[off + i] < 0:
                grads[off + i] -= c
        off += nw + s.sizes[l + 1]


# --------------------------------------------------------------------------
# Forward and backward passes over one batch
# --------------------------------------------------------------------------

cdef inline bint forward_batch(Spec* s, const floating* params, const floating* X,
                               Py_ssize_t m, floating* acts, floating* zs, floating* zout,
                               bint check_x) noexcept nogil:
    """Forward pass of m rows: :func:`forward_part` of all of them."""
    return forward_part(s, params, X, m, 0, m, acts, zs, zout, check_x)


cdef bint forward_part(Spec* s, const floating* params, const floating* X, Py_ssize_t m,
                       Py_ssize_t r0, Py_ssize_t mr, floating* acts, floating* zs,
                       floating* zout, bint check_x) noexcept nogil:
    """Forward pass of rows r0 .. r0+mr-1 of a batch of m rows.

    IN:  params, X (m x sizes[0]).
    OUT: those rows of acts (A_1..A_L stacked, each m x sizes[l+1]); of zout
         (m x n_out) the output logits unless NULL; of zs (Z_1..Z_L, acts
         layout) unless NULL.  A row's values do not depend on the others.

    With ``check_x`` it returns False, the outputs unfinished, when the rows
    of X hold a value that is not finite; else True.  The first layer's
    products show it: a NaN or infinity in a row makes every product of that
    row NaN or infinite (no kernel skips a term), so X itself is read only
    when one of them is (X finite, an overflow or a non-finite weight: the
    pass goes on).  Reading the products costs a third of reading X for a
    784-256 layer and they are in cache (10000 x 784 float32 rows: X took
    0.9-2.4 ms to check on two threads, the products 0.05 ms a 2048-row
    chunk on one).
    """
    cdef Py_ssize_t l, n_in, n_out, off = 0, aoff = 0
    cdef const floating* A_prev = X + r0 * s.sizes[0]
    cdef floating* A
    cdef const floating* W
    cdef const floating* b
    cdef int act
    for l in range(s.L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        W = params + off
        b = W + n_in * n_out
        A = acts + aoff + r0 * n_out
        if (mr <= FMR_MAX_ROWS and n_in * n_out >= FEW_ROWS_PRODUCT
                and n_out >= fmr_block_width(sizeof(floating))):
            fmr_product(floating is float, <int>mr, n_out, n_in, A_prev, n_in, W, n_out,
                        A, n_out, s.pool_threads)
        else:
            part_gemm(s.blas_one, c'N', c'N', <int>mr, <int>n_out, <int>n_in, <floating>1.0,
                      A_prev, <int>n_in, W, <int>n_out, <floating>0.0, A, <int>n_out,
                      s.pool_threads)
        if (check_x and l == 0 and not values_finite(A, mr * n_out, floating is float, 1)
                and not values_finite(X + r0 * n_in, mr * n_in, floating is float, 1)):
            return False
        if l == s.L - 1:
            act = ACT_SOFTMAX if s.output == OUT_SOFTMAX else s.output
            if zout != NULL:
                memcpy(zout + r0 * n_out, A, mr * n_out * sizeof(floating))
                bias_act(zout + r0 * n_out, b, mr, n_out, ACT_IDENTITY)
        else:
            act = s.hidden
        if zs != NULL:
            memcpy(zs + aoff + r0 * n_out, A, mr * n_out * sizeof(floating))
            bias_act(zs + aoff + r0 * n_out, b, mr, n_out, ACT_IDENTITY)
        bias_act(A, b, mr, n_out, act)
        A_prev = A
        off += n_in * n_out + n_out
        aoff += m * n_out
    return True


cdef void backward_batch(Spec* s, const floating* params, const floating* X,
                         const floating* Y, const floating* w, Py_ssize_t m, double M,
                         const floating* acts, floating* deltas, floating* grads,
                         double l2, bint deltas_ready=False) noexcept nogil:
    """Backpropagate the deltas of one batch, after :func:`forward_batch`,
    and write the gradient of the batch objective (without its L1 term) into
    ``grads``.  ``M`` is the batch's total sample weight.  (Plain SGD's step
    computes the deltas and applies them itself: :func:`backward_deltas`,
    :func:`sgd_layers`.)  ``deltas_ready``: the deltas are already there
    (:func:`row_part`).
    """
    cdef Py_ssize_t l, j, n_in, n_out, w_off = s.n_params, a_off = m * s.per_row
    cdef floating* gW
    cdef floating* gb
    cdef const floating* A_prev
    cdef floating decay = <floating>(l2 / M)
    if not deltas_ready:
        backward_deltas(s, params, Y, w, m, M, acts, deltas)
    for l in range(s.L - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        w_off -= n_in * n_out + n_out
        a_off -= m * n_out
        A_prev = X if l == 0 else acts + a_off - m * n_in
        gW = grads + w_off
        gb = gW + n_in * n_out
        if l2 != 0:
            for j in range(n_in * n_out):
                gW[j] = decay * params[w_off + j]
        gemm_rm(c'T', c'N', <int>n_in, <int>n_out, <int>m, <floating>1.0,
                A_prev, <int>n_in, deltas + a_off, <int>n_out,
                <floating>(1.0 if l2 != 0 else 0.0), gW, <int>n_out, s.pool_threads)
        colsum(deltas + a_off, m, n_out, gb)


cdef inline void backward_deltas(Spec* s, const floating* params, const floating* Y,
                                 const floating* w, Py_ssize_t m, double M,
                                 const floating* acts, floating* deltas) noexcept nogil:
    """Every layer's delta (dLoss/dZ of the batch-mean objective) into
    ``deltas`` (the layout of ``acts``), from the outputs back."""
    backward_delta_part(s, params, Y, w, m, 0, m, M, acts, deltas)


cdef void backward_delta_part(Spec* s, const floating* params, const floating* Y,
                              const floating* w, Py_ssize_t m, Py_ssize_t r0, Py_ssize_t mr,
                              double M, const floating* acts, floating* deltas) noexcept nogil:
    """Rows r0 .. r0+mr-1 of :func:`backward_deltas` (a batch of m rows)."""
    cdef Py_ssize_t l, n_in, n_out, w_off = s.n_params, a_off = m * s.per_row
    n_out = s.sizes[s.L]
    output_delta(s, acts + a_off - m * n_out + r0 * n_out, Y + r0 * n_out,
                 NULL if w == NULL else w + r0, deltas + a_off - m * n_out + r0 * n_out, mr,
                 1.0 / M)
    for l in range(s.L - 1, 0, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        w_off -= n_in * n_out + n_out
        a_off -= m * n_out
        part_gemm(s.blas_one, c'N', c'T', <int>mr, <int>n_in, <int>n_out, <floating>1.0,
                  deltas + a_off + r0 * n_out, <int>n_out, params + w_off, <int>n_out,
                  <floating>0.0, deltas + a_off - m * n_in + r0 * n_in, <int>n_in,
                  s.pool_threads)
        times_dact(deltas + a_off - m * n_in + r0 * n_in, acts + a_off - m * n_in + r0 * n_in,
                   mr * n_in, s.hidden)


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
cdef enum:
    MAX_ROW_PARTS = 4
    MIN_PART_ROWS = 8       # > FMR_MAX_ROWS: parts never take _fewrows.h's path


cdef int row_parts(Spec* s, Py_ssize_t m, bint is_float) noexcept nogil:
    """Parts (1, 2 or 4) to split a batch of m rows into for its forward
    pass, loss and deltas: 1 unless every product of every part stays out
    of BLAS (whose own threads would then compete with the pool's)."""
    cdef Py_ssize_t l, macs = 0, mr
    cdef int parts = MAX_ROW_PARTS
    if not is_float:
        return 1
    for l in range(s.L):
        macs += s.sizes[l] * s.sizes[l + 1]
    while parts > 1 and (m * macs < parts * ROW_PART_MACS or m < parts * MIN_PART_ROWS):
        parts //= 2
    if parts == 1:
        return 1
    mr = m // parts             # the parts hold mr or mr + 1 rows
    for l in range(s.L):
        if (blas_product(True, c'N', mr, s.sizes[l + 1], s.sizes[l])
                or blas_product(True, c'N', mr + 1, s.sizes[l + 1], s.sizes[l])
                or (l > 0 and (blas_product(True, c'T', mr, s.sizes[l], s.sizes[l + 1])
                               or blas_product(True, c'T', mr + 1, s.sizes[l],
                                               s.sizes[l + 1])))):
            return 1
    return parts


cdef struct RowTask:
    Spec* s                 # pool_threads 1: a part runs on one thread
    const float* params
    const float* X
    const float* Y
    const float* w          # NULL: unit weights
    float* acts
    float* deltas
    float* zout             # NULL unless the loss reads the logits
    Py_ssize_t m
    double M                # the batch's total weight
    int parts
    double loss[MAX_ROW_PARTS]
    double* sums            # parts x 2L: each part's abs sums for sgd_safe, or NULL


cdef void row_part(void* arg, int part) noexcept nogil:
    """Pool block ``part`` of a RowTask: its rows' forward pass, their data
    loss (into ``loss[part]``) and deltas, and unless ``sums`` is NULL the
    abs sums :func:`sgd_safe` reads, over its rows."""
    cdef RowTask* t = <RowTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t r0 = t.m * part // t.parts
    cdef Py_ssize_t mr = t.m * (part + 1) // t.parts - r0
    cdef Py_ssize_t k = s.sizes[s.L]
    cdef const float* z = NULL if t.zout == NULL else t.zout + r0 * k
    forward_part(s, t.params, t.X, t.m, r0, mr, t.acts, <float*>NULL, t.zout, False)
    t.loss[part] = data_loss_sum(s, z, t.acts + t.m * (s.per_row - k) + r0 * k,
                                 t.Y + r0 * k, NULL if t.w == NULL else t.w + r0, mr)
    backward_delta_part(s, t.params, t.Y, t.w, t.m, r0, mr, t.M, t.acts, t.deltas)
    if t.sums != NULL:
        safe_sums(s, t.X, t.m, r0, mr, t.acts, t.deltas, t.sums + 2 * s.L * part)


cdef void sgd_layers(Spec* s, floating* params, const floating* X, Py_ssize_t m,
                     const floating* acts, const floating* deltas, floating decay,
                     floating lr, floating* scratch) noexcept nogil:
    """Plain SGD from the deltas, fused into the weight-gradient product:
    ``W <- (1 - lr*decay) W - lr * A^T D``, ``b <- b - lr * colsum(D)``."""
    cdef Py_ssize_t l, j, n_in, n_out, w_off = 0, a_off = 0
    cdef floating* W
    cdef floating* b
    for l in range(s.L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        W = params + w_off
        b = W + n_in * n_out
        gemm_rm(c'T', c'N', <int>n_in, <int>n_out, <int>m, -lr,
                X if l == 0 else acts + a_off - m * n_in, <int>n_in,
                deltas + a_off, <int>n_out, <floating>(1 - lr * decay), W, <int>n_out,
                s.pool_threads)
        colsum(deltas + a_off, m, n_out, scratch)
        for j in range(n_out):
            b[j] -= lr * scratch[j]
        w_off += n_in * n_out + n_out
        a_off += m * n_out


cdef double run_row_parts(RowTask* t, const float* X, const float* Y, const float* w,
                          Py_ssize_t m, double M, int parts, int threads,
                          double* batch_sums) noexcept nogil:
    """A batch's row parts on up to ``threads`` threads: returns its data-loss
    sum; the parts' abs sums added up into ``batch_sums`` (2L values) unless
    ``t.sums`` is NULL.  Parts are added in order: the same on any thread
    count."""
    cdef double total = 0
    cdef Py_ssize_t i, j, n = 2 * t.s.L
    t.X = X
    t.Y = Y
    t.w = w
    t.m = m
    t.M = M
    t.parts = parts
    fmp_run(row_part, t, parts, threads)
    for j in range(parts):
        total += t.loss[j]
    if t.sums != NULL:
        for i in range(n):
            batch_sums[i] = 0
            for j in range(parts):
                batch_sums[i] += t.sums[n * j + i]
    return total


# Plain SGD's update products of such a step (each layer's
# W <- (1 - lr*decay) W - lr * A^T D and b <- b - lr * colsum(D)) go to the
# pool as one task: blocks of 16 columns for layers at least 32 wide, of 32
# rows of W for narrower ones (a 10-wide output layer), each block's bias
# entries with it.  Every value is summed as by the whole product on one
# thread, so results do not depend on the blocks or the threads.
cdef enum:
    UPDATE_PANEL = 16
    UPDATE_ROWS = 32


cdef inline Py_ssize_t update_blocks(Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """Blocks of one layer's update (see UpdateTask)."""
    if n_out >= 2 * UPDATE_PANEL:
        return (n_out + UPDATE_PANEL - 1) // UPDATE_PANEL
    return max((n_in + UPDATE_ROWS // 2) // UPDATE_ROWS, 1)


cdef bint update_on_pool(Spec* s, Py_ssize_t m) noexcept nogil:
    """Whether :func:`gemm_rm` would give every layer's whole update product
    to the register blocks (then :func:`update_block` computes its blocks
    there, each value as the whole product would)."""
    cdef Py_ssize_t l
    for l in range(s.L):
        if (loop_product(s.sizes[l], s.sizes[l + 1], m)
                or blas_product(True, c'T', s.sizes[l], s.sizes[l + 1], m)):
            return False
    return True


cdef struct UpdateTask:
    Spec* s
    float* params
    const float* X
    const float* acts
    const float* deltas
    Py_ssize_t m
    float lr
    float keep              # 1 - lr * decay


cdef void update_block(void* arg, int block) noexcept nogil:
    """Pool block ``block`` of an UpdateTask: the layers' blocks in order."""
    cdef UpdateTask* t = <UpdateTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t l, j, nb, n_in, n_out, j0, nc, i0, i1
    cdef Py_ssize_t w_off = 0, a_off = 0, m = t.m
    cdef float* W
    cdef float* b
    cdef const float* A
    cdef const float* D
    cdef float sums[2 * UPDATE_PANEL]       # a panel's columns, or a narrow layer's
    for l in range(s.L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        nb = update_blocks(n_in, n_out)
        if block < nb:
            W = t.params + w_off
            b = W + n_in * n_out
            A = t.X if l == 0 else t.acts + a_off - m * n_in
            D = t.deltas + a_off
            if n_out >= 2 * UPDATE_PANEL:
                j0 = block * UPDATE_PANEL
                nc = min(n_out - j0, <Py_ssize_t>UPDATE_PANEL)
                gemm_blocked(c'T', c'N', <int>n_in, <int>nc, <int>m, -t.lr, A, <int>n_in,
                             D + j0, <int>n_out, t.keep, W + j0, <int>n_out, 1)
                # row by row, as colsum sums the whole layer (n_out >= 8)
                fm_colsum_ld_f(D + j0, m, nc, n_out, sums)
                for j in range(nc):
                    b[j0 + j] -= t.lr * sums[j]
            else:
                i0 = n_in * block // nb
                i1 = n_in * (block + 1) // nb
                gemm_blocked(c'T', c'N', <int>(i1 - i0), <int>n_out, <int>m, -t.lr, A + i0,
                             <int>n_in, D, <int>n_out, t.keep, W + i0 * n_out, <int>n_out, 1)
                if block == 0:
                    colsum(D, m, n_out, sums)
                    for j in range(n_out):
                        b[j] -= t.lr * sums[j]
            return
        block -= <int>nb
        w_off += n_in * n_out + n_out
        a_off += m * n_out


# A plain-SGD step skips the copy of the parameters it would restore from
# (and the check of them after) when bounds prove it cannot make one of them
# non-finite (see sgd_safe).  Measured on mnist-shape, medians of 7-8 fits
# interleaved in one process: 844 -> 761 ms with copy and check removed;
# 939 -> 755 ms against set_safe_fraction(0) (the copy and check of 0.94 MB
# a step ran on one core while BLAS's other thread waited).  Bounds stay
# below this fraction of the largest finite value.
cdef double SAFE_FRACTION = 1e-2


def set_safe_fraction(double fraction):
    """Set SAFE_FRACTION (0: every plain-SGD step keeps a backup) and return
    the previous value.  For tests and measurements, not thread-safe."""
    global SAFE_FRACTION
    if not 0 <= fraction <= 1e-2:
        raise ValueError(f"fraction must be in [0, 1e-2]; got {fraction}")
    previous, SAFE_FRACTION = SAFE_FRACTION, fraction
    return previous


cdef double abs_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fm_abs_sum_f(x, n)
    else:
        return fm_abs_sum_d(x, n)


cdef void exact_bounds(Spec* s, const floating* params, double* bounds) noexcept nogil:
    """bounds[l] = the largest |value| of layer l's weights and biases (NaN
    when one is not finite: then no step is proven safe)."""
    cdef Py_ssize_t l, off = 0, n
    for l in range(s.L):
        n = s.sizes[l] * s.sizes[l + 1] + s.sizes[l + 1]
        if floating is float:
            bounds[l] = fm_abs_max_f(params + off, n)
        else:
            bounds[l] = fm_abs_max_d(params + off, n)
        off += n


cdef inline bint activation_bounded(int act) noexcept nogil:
    """Whether the activation's values lie in [-1, 1] (see sgd_safe)."""
    return act == ACT_SIGMOID or act == ACT_TANH


cdef void safe_sums(Spec* s, const floating* X, Py_ssize_t m, Py_ssize_t r0, Py_ssize_t mr,
                    const floating* acts, const floating* deltas, double* sums) noexcept nogil:
    """The sums :func:`sgd_safe` reads, over rows r0 .. r0+mr-1 of a batch of
    m rows: each layer's sum|A| of its input (sums[2l]; not for sigmoid or
    tanh activations, bounded by their count) and sum|D| (sums[2l + 1])."""
    cdef Py_ssize_t l, n_in, n_out, a_off = 0
    for l in range(s.L):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        if l == 0:
            sums[0] = abs_sum(X + r0 * n_in, mr * n_in)
        elif not activation_bounded(s.hidden):
            sums[2 * l] = abs_sum(acts + a_off - m * n_in + r0 * n_in, mr * n_in)
        sums[2 * l + 1] = abs_sum(deltas + a_off + r0 * n_out, mr * n_out)
        a_off += m * n_out


cdef bint sgd_safe(Spec* s, Py_ssize_t m, bint is_float, double decay, double lr,
                   double* bounds, const double* sums) noexcept nogil:
    """Whether :func:`sgd_layers` with a batch of m rows whose deltas give
    ``sums`` (see :func:`safe_sums`) cannot make a parameter non-finite, in
    float32 (``is_float``) or float64, given bounds[l] >= every |parameter|
    of layer l; if so the bounds are advanced past the step (bounds holds
    2 * L values: the second half is workspace).

    Each update of a weight is lr * sum_p a_pi d_pj, at most lr * sum|A| *
    sum|D| in size (likewise the products' partial sums before the factor
    lr, and lr * sum|D| for a bias), so the new values are within
    max(|1 - lr*decay|, 1) * bound + lr * sum|D| * (sum|A| + 1).  Safe when
    every sum is finite and each of those stays below SAFE_FRACTION of the
    largest finite value, and so does sum|D| itself: a step whose deltas
    are bounded before they exist (unit_hand_off, FirstSplitTask) must not
    pass with deltas that overflow where sum|A| < 1 and lr is tiny.

    Sigmoid and tanh activations lie in [-1, 1], so sum|A| <= the count of
    A's values, known without reading A (the bounds' share of a digits fit's
    perf samples: 1.2% -> 0.8%).  A value of A that is not
    finite cannot pass unseen that way: it makes its row of every later
    layer's products, the output and the output deltas NaN, and sum|D| of
    the last layer fails the test."""
    cdef double limit = SAFE_FRACTION * (3.4028234663852886e38 if is_float
                                         else 1.7976931348623157e308)
    cdef double grow = max(fabs(1 - lr * decay), 1.0), sum_a, sum_d, step
    cdef double* next_bounds = bounds + s.L
    cdef Py_ssize_t l, n_in
    for l in range(s.L):
        n_in = s.sizes[l]
        if l > 0 and activation_bounded(s.hidden):
            sum_a = <double>(m * n_in)
        else:
            sum_a = sums[2 * l]
        sum_d = sums[2 * l + 1]
        step = lr * sum_d * (sum_a + 1)
        next_bounds[l] = grow * bounds[l] + step
        if not (sum_d < limit and sum_a * sum_d < limit and step < limit
                and next_bounds[l] < limit):
            return False            # (NaN fails every comparison)
    for l in range(s.L):
        bounds[l] = next_bounds[l]
    return True


# --------------------------------------------------------------------------
# Plain SGD on one hidden layer, split by hidden units
# --------------------------------------------------------------------------

# A float32 plain-SGD step of a network with one hidden layer whose products
# all run in fastmlp's own kernels splits the hidden units into parts, each
# a pool block that keeps its own columns of W1 (and entries of b1) and rows
# of W2 from step to step, so a part's weights stay in one core's cache (the
# pool gives a block to the same thread from call to call).  A part needs
# the others' work once a step: the output logits are the sum of the parts'
# H_p @ W2[p].  So one hand-off a step: each part adds the partial logits of
# batch t in order, computes the outputs, objective and output deltas
# (m x n_out, small; a part that starts after part 0 has them reads them),
# then its hidden deltas and updates, then the forward pass of batch t + 1
# with its own weights: its hidden activations and partial logits.
# The row parts of row_part read all of W1 on each thread after the update
# blocks wrote it on both: half of it crossed between the cores every step,
# and they took two hand-offs a step.  Measured on digits (64-128-10, batch
# 32, 20 epochs), medians of 30 fits interleaved in one process: two threads
# 17.1 -> 14.8 ms (two hand-offs a step, outputs on the caller: 16.1), one
# thread 22.6 -> 22.0 ms.
# The parts depend on the shape alone, never on the thread count, and every
# value is computed as the same sums: results do not depend on the threads.
cdef enum:
    MAX_UNIT_PARTS = 4
    UNIT_PANEL = 16         # part boundaries fall on the register blocks' panels

cdef bint UNIT_SPLIT = True


def set_unit_split(bint enabled):
    """Turn the hidden-unit split of :func:`unit_parts` on or off and return
    the previous setting.  For measurements, not thread-safe."""
    global UNIT_SPLIT
    previous, UNIT_SPLIT = UNIT_SPLIT, enabled
    return previous


cdef int unit_parts(Spec* s, Py_ssize_t m) noexcept nogil:
    """Parts (1, 2 or 4) of the hidden units for :func:`unit_hand_off` of a
    float32 batch of m rows: 1 (the step is not taken) unless the network
    has one hidden layer of at least UNIT_PANEL units a part, each part does
    ROW_PART_MACS forward multiply-adds at least, and no product of a part
    goes to BLAS (whose own threads would compete with the pool's)."""
    cdef Py_ssize_t n_in, n_h, n_out, nu, k
    cdef int parts = MAX_UNIT_PARTS
    if s.L != 2 or not UNIT_SPLIT:
        return 1
    n_in = s.sizes[0]
    n_h = s.sizes[1]
    n_out = s.sizes[2]
    while parts > 1 and (m * n_h * (n_in + n_out) < parts * ROW_PART_MACS
                         or n_h < parts * UNIT_PANEL):
        parts //= 2
    if parts == 1:
        return 1
    for k in range(parts):
        nu = unit_bound(n_h, parts, k + 1) - unit_bound(n_h, parts, k)
        if (blas_product(True, c'N', m, nu, n_in) or blas_product(True, c'N', m, n_out, nu)
                or blas_product(True, c'T', m, nu, n_out)
                or blas_product(True, c'N', nu, n_out, m)
                or blas_product(True, c'N', n_in, nu, m)):
            return 1
    return parts


def unit_parts_of(const Py_ssize_t[::1] sizes, Py_ssize_t m):
    """The hidden-unit parts ``train`` splits a float32 plain-SGD batch of
    m rows into for these layer sizes (1: the step is not split that way)."""
    cdef Spec s = make_spec(sizes, ACT_SIGMOID, OUT_SOFTMAX, LOSS_LOG)
    return unit_parts(&s, m)


cdef inline Py_ssize_t unit_bound(Py_ssize_t n_h, int parts, int k) noexcept nogil:
    """The first hidden unit of part k (k = parts: n_h), on a panel boundary."""
    if k == 0:
        return 0
    if k == parts:
        return n_h
    return (n_h * k // parts + UNIT_PANEL // 2) // UNIT_PANEL * UNIT_PANEL


cdef extern from *:
    """
    static inline void fm_store_release(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int fm_load_acquire(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    """
    void fm_store_release(int* p, int v) nogil
    int fm_load_acquire(const int* p) nogil


cdef struct UnitTask:
    Spec* s
    float* params
    int parts
    Py_ssize_t bs           # rows of the largest batch: part k's rows of hid at bs * u_k
    float* hid              # hidden activations, part k's m x nu at bs * u_k
    float* dhid             # their deltas, the same layout
    float* zpart            # 2 x parts x bs x n_out partial logits (by step parity)
    float* outs             # parts x (3 bs n_out + n_out + n_h): each part's
                            # outputs, logits, output deltas and column sums
                            # (b2's, then its hidden units')
    float* backup           # every part's parameters before a step not proven safe
    const double* bounds    # the bounds of sgd_safe before the step (read only)
    double l2
    float lr
    # the step whose update this hand-off makes (unless update is False)
    bint update
    int par                 # its parity: its partial logits, sum|X| and penalty
    const float* X
    const float* Y
    const float* w
    Py_ssize_t m
    double M
    # the batch whose forward pass this hand-off makes (unless fwd is False)
    bint fwd
    const float* Xn
    Py_ssize_t mn
    # by step parity and part: sum|X| over the part's share of the rows, and
    # sum(W**2) over the part's weights
    double xsum[2][MAX_UNIT_PARTS]
    double sq[2][MAX_UNIT_PARTS]
    # part 0's report of the update: objective, status, advanced bounds;
    # out_ready (atomic) set once its outputs, objective and status are there
    double obj
    int status
    double bounds_out[4]
    int out_ready


cdef enum:
    UNIT_DONE = 0           # updated, proven safe
    UNIT_NOT_FINITE = 1     # the objective is not finite: nothing updated
    UNIT_UNSAFE = 2         # updated with the parts backed up: check and restore
    UNIT_RESTORED = 3       # (unit_hand_off) that update was not finite: restored


cdef void unit_block(void* arg, int k) noexcept nogil:
    """Block k of a hand-off of :func:`unit_hand_off`: part k's update for
    the step ``par`` (if ``update``), then its forward pass of the next batch
    (if ``fwd``).

    The update: every part adds the partial logits in order and computes the
    outputs, objective and output deltas of the whole batch (the same values
    in each), decides with sgd_safe whether the step is proven safe (else it
    backs up its parameters), then computes its hidden deltas and updates its
    rows of W2 and columns of W1 and b1.  b2 is left to the caller (each part
    reads it); part 0 reports the objective, the status, the advanced bounds
    and the output deltas' column sums.  The forward pass: its hidden
    activations, partial logits ``H_k @ W2[u_k:u_k+nu]``, sum|X| over its
    share of the rows and sum(W**2) over its weights (for the penalty).

    A part that starts after part 0 has its outputs (one thread runs the
    parts in turn) reads them instead of computing the same values again.
    """
    cdef UnitTask* t = <UnitTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t n_in = s.sizes[0], n_h = s.sizes[1], n_out = s.sizes[2]
    cdef Py_ssize_t u0 = unit_bound(n_h, t.parts, k), nu = unit_bound(n_h, t.parts, k + 1) - u0
    cdef Py_ssize_t m = t.m, mn = t.mn, bs = t.bs, i, j, r0, r1
    cdef Py_ssize_t zsize = bs * n_out
    cdef float* W1 = t.params
    cdef float* b1 = W1 + n_in * n_h
    cdef float* W2 = b1 + n_h
    cdef float* b2 = W2 + n_h * n_out
    cdef float* H = t.hid + bs * u0
    cdef float* DH = t.dhid + bs * u0
    cdef float* P = t.outs + k * (3 * zsize + n_out + n_h)
    cdef float* Z = P + zsize
    cdef float* D = Z + zsize
    cdef float* sums = D + zsize
    cdef const float* zk
    cdef double obj, sq = 0, sum_x = 0, sum_d
    cdef double bnd[4]
    cdef double safe_sums[4]
    cdef float lr = t.lr, keep
    cdef bint safe, one_pass_out
    cdef int nxt = t.par if not t.update else 1 - t.par
    if t.update and k > 0 and fm_load_acquire(&t.out_ready):
        if t.status == UNIT_NOT_FINITE:
            return
        safe = t.status == UNIT_DONE
        D = t.outs + 2 * zsize                  # part 0's output deltas
    elif t.update:
        one_pass_out = s.loss == LOSS_LOG and s.output == OUT_SOFTMAX and n_out <= 16
        if one_pass_out:    # outputs, objective and deltas in one pass
            obj = fm_softmax_xent_delta_f(t.zpart + t.par * t.parts * zsize, t.parts, zsize,
                                          b2, t.Y, t.w, m, n_out, 1.0 / t.M, D)
        else:
            memcpy(P, t.zpart + t.par * t.parts * zsize, m * n_out * sizeof(float))
            for j in range(1, t.parts):
                zk = t.zpart + (t.par * t.parts + j) * zsize
                for i in range(m * n_out):
                    P[i] += zk[i]
            if s.loss == LOSS_LOG:
                memcpy(Z, P, m * n_out * sizeof(float))
                bias_act(Z, b2, m, n_out, ACT_IDENTITY)
            bias_act(P, b2, m, n_out, ACT_SOFTMAX if s.output == OUT_SOFTMAX else s.output)
            obj = data_loss_sum(s, Z if s.loss == LOSS_LOG else <float*>NULL, P, t.Y, t.w, m)
        if t.l2 != 0:
            for j in range(t.parts):
                sq += t.sq[t.par][j]
            obj += 0.5 * t.l2 * sq
        if not isfinite(obj):
            if k == 0:
                t.obj = obj
                t.status = UNIT_NOT_FINITE
                fm_store_release(&t.out_ready, 1)
            return
        if not one_pass_out:
            output_delta(s, P, t.Y, t.w, D, m, 1.0 / t.M)
        # bound the step (see unit_hand_off)
        for j in range(t.parts):
            sum_x += t.xsum[t.par][j]
        sum_d = abs_sum(D, m * n_out)
        safe_sums[0] = sum_x
        safe_sums[1] = <double>n_h * t.bounds[1] * sum_d
        safe_sums[2] = <double>n_h * t.bounds[0] * (sum_x + <double>m)
        safe_sums[3] = sum_d
        memcpy(bnd, t.bounds, 2 * sizeof(double))
        safe = sgd_safe(s, m, True, t.l2 / t.M, lr, bnd, safe_sums)
        if k == 0:
            t.obj = obj
            t.status = UNIT_DONE if safe else UNIT_UNSAFE
            t.bounds_out[0] = bnd[0]
            t.bounds_out[1] = bnd[1]
            fm_store_release(&t.out_ready, 1)
            colsum(D, m, n_out, sums)           # b2's gradient, for the caller
    if t.update:
        if not safe:
            for i in range(n_in):
                memcpy(t.backup + i * n_h + u0, W1 + i * n_h + u0, nu * sizeof(float))
            memcpy(t.backup + n_in * n_h + u0, b1 + u0, nu * sizeof(float))
            memcpy(t.backup + (W2 - W1) + u0 * n_out, W2 + u0 * n_out,
                   nu * n_out * sizeof(float))
        keep = 1 - lr * <float>(t.l2 / t.M)
        gemm_rm(c'N', c'T', <int>m, <int>nu, <int>n_out, <float>1.0, D, <int>n_out,
                W2 + u0 * n_out, <int>n_out, <float>0.0, DH, <int>nu, 1)
        times_dact(DH, H, m * nu, s.hidden)
        gemm_rm(c'T', c'N', <int>nu, <int>n_out, <int>m, -lr, H, <int>nu, D, <int>n_out,
                keep, W2 + u0 * n_out, <int>n_out, 1)
        gemm_rm(c'T', c'N', <int>n_in, <int>nu, <int>m, -lr, t.X, <int>n_in, DH, <int>nu,
                keep, W1 + u0, <int>n_h, 1)
        colsum(DH, m, nu, sums + n_out)
        for j in range(nu):
            b1[u0 + j] -= lr * sums[n_out + j]
    if t.fwd:
        gemm_rm(c'N', c'N', <int>mn, <int>nu, <int>n_in, <float>1.0, t.Xn, <int>n_in,
                W1 + u0, <int>n_h, <float>0.0, H, <int>nu, 1)
        bias_act(H, b1 + u0, mn, nu, s.hidden)
        gemm_rm(c'N', c'N', <int>mn, <int>n_out, <int>nu, <float>1.0, H, <int>nu,
                W2 + u0 * n_out, <int>n_out, <float>0.0,
                t.zpart + (nxt * t.parts + k) * zsize, <int>n_out, 1)
        r0 = mn * k // t.parts
        r1 = mn * (k + 1) // t.parts
        t.xsum[nxt][k] = abs_sum(t.Xn + r0 * n_in, (r1 - r0) * n_in)
        if t.l2 != 0:
            sq = 0
            for i in range(n_in):
                for j in range(nu):
                    sq += <double>W1[i * n_h + u0 + j] * W1[i * n_h + u0 + j]
            for i in range(nu * n_out):
                sq += <double>W2[u0 * n_out + i] * W2[u0 * n_out + i]
            t.sq[nxt][k] = sq


cdef int unit_hand_off(UnitTask* t, int threads, double* bounds) noexcept nogil:
    """Run one hand-off of UnitTask's blocks (set up by the caller: the
    update of the step ``par`` and/or the forward pass of the next batch) and
    finish the update: b2's, then for a step not proven safe the check of
    every parameter (restored from the backup if one is not finite).

    Returns UNIT_DONE, UNIT_NOT_FINITE (the objective, in ``t.obj``, is not
    finite: nothing updated) or UNIT_RESTORED (the update made a parameter
    non-finite: all restored).  ``bounds`` (sgd_safe's, 4 values) are
    advanced past the step, or recomputed after a checked one.

    The step is guarded by sgd_safe as sgd_layers' steps are, with the
    hidden deltas' sum bounded before they exist (n_h * bound(W2) *
    sum|D_out|: |sigmoid'|, |tanh'|, |relu'| <= 1) and, for an unbounded
    activation, sum|H| too (n_h * bound(W1) * (sum|X| + m): |act(z)| <= |z|).
    """
    cdef Spec* s = t.s
    cdef Py_ssize_t n_out = s.sizes[2], j
    cdef float* b2 = t.params + s.n_params - n_out
    cdef float* g2 = t.outs + 3 * t.bs * n_out     # part 0's column sums
    t.bounds = bounds
    t.out_ready = 0
    fmp_run(unit_block, t, t.parts, threads)
    if not t.update:
        return UNIT_DONE
    if t.status == UNIT_NOT_FINITE:
        return UNIT_NOT_FINITE
    if t.status == UNIT_UNSAFE:
        memcpy(t.backup + s.n_params - n_out, b2, n_out * sizeof(float))
    for j in range(n_out):
        b2[j] -= t.lr * g2[j]
    if t.status == UNIT_DONE:
        bounds[0] = t.bounds_out[0]
        bounds[1] = t.bounds_out[1]
        return UNIT_DONE
    if not params_finite(t.params, s.n_params):
        memcpy(t.params, t.backup, s.n_params * sizeof(float))
        return UNIT_RESTORED
    exact_bounds(s, t.params, bounds)
    return UNIT_DONE


# --------------------------------------------------------------------------
# Plain SGD on a first layer whose products go to BLAS, split by its units
# --------------------------------------------------------------------------

# A float32 plain-SGD step whose first layer's products go to BLAS (784-256
# on batches of 128: mnist-shape) gives every product to BLAS's own threads
# and runs the work between them on one core; BLAS's threads then meet on
# every product (its threads waiting took 13-14% of an mnist-shape fit's perf
# samples, its packing another 22-24%).  Instead the step runs in three
# hand-offs on the pool, each part calling BLAS on one thread:
#   1. by the first layer's units: the part's columns of A1 = act(X @ W1 + b1)
#      and sum|X| over its share of the rows;
#   2. by rows: the rest of the network's forward pass, loss and deltas down
#      to the second layer's (row_part on the layers after the first), with
#      the sums sgd_safe reads;
#   3. by the first layer's units again: the part's columns of the first
#      layer's deltas (from its rows of W2, before their update), its rows
#      of W2 and columns of W1 and b1 updated, and a share of the later
#      layers' rows of W and entries of b.
# Between 2 and 3 the caller adds up the objective and decides with sgd_safe
# whether the step is proven safe, as for the unsplit step.  A part keeps its
# columns of W1 from step to step.  Measured on mnist-shape fits (1 epoch,
# two threads), 6 pairs of processes of 5 fits alternating: 368-398 against
# 385-405 ms in quiet minutes, 496-523 against 560-587 ms in the host's slow
# ones (before the first layer's product read W1 in place: a step's hand-offs
# then took ~325, now ~280 us a part for the first layer, ~72 for the rows
# and ~400 for the update).  On one thread (the parts in turn) ~3% slower.
# The parts depend on the shape alone and every value is computed as the same
# sums: on 1 to `parts` threads results are the same.  On more threads than
# parts the step is not split (BLAS's own threads then use every core).
cdef enum:
    MAX_FIRST_PARTS = 4

cdef Py_ssize_t FIRST_PART_MACS = 8000000   # first-layer forward multiply-adds a part
cdef bint FIRST_SPLIT = True


def set_first_split(bint enabled):
    """Turn the first-layer split of :func:`first_split_parts` on or off and
    return the previous setting.  For measurements and tests, not thread-safe."""
    global FIRST_SPLIT
    previous, FIRST_SPLIT = FIRST_SPLIT, enabled
    return previous


cdef int first_split_parts(Spec* s, Py_ssize_t m, int threads) noexcept nogil:
    """Parts (1, 2 or 4) of the first layer's units for a float32 plain-SGD
    batch of m rows on ``threads`` of the pool (see FirstSplitTask): 1 (not
    split) unless the network has a hidden layer, the step takes neither
    the hidden-unit parts nor the row parts (whose products stay out of
    BLAS), the first layer's forward product goes to BLAS, each part gets
    FIRST_PART_MACS of it, UNIT_PANEL units and MIN_PART_ROWS rows at least,
    and there are no more threads than parts (more threads would sit idle
    where BLAS's own threads used them all).  On 1 to ``parts`` threads the
    results are the same."""
    cdef Py_ssize_t n_in, n_h
    cdef int parts = MAX_FIRST_PARTS
    if s.L < 2 or not FIRST_SPLIT:
        return 1
    n_in = s.sizes[0]
    n_h = s.sizes[1]
    while parts > 1 and (m * n_in * n_h < parts * FIRST_PART_MACS
                         or n_h < parts * UNIT_PANEL or m < parts * MIN_PART_ROWS):
        parts //= 2
    if (parts == 1 or threads > parts or not blas_product(True, c'N', m, n_h, n_in)
            or unit_parts(s, m) > 1 or row_parts(s, m, True) > 1):
        return 1
    return parts


def first_split_parts_of(const Py_ssize_t[::1] sizes, Py_ssize_t m, int threads=2):
    """The first-layer parts ``train`` splits a float32 plain-SGD batch of m
    rows into for these layer sizes on ``threads`` of the pool (1: the step
    is not split that way)."""
    cdef Spec s = make_spec(sizes, ACT_SIGMOID, OUT_SOFTMAX, LOSS_LOG)
    return first_split_parts(&s, m, threads)


cdef struct FirstSplitTask:
    Spec* s
    float* params
    int parts
    const float* X
    Py_ssize_t m
    float* acts             # the step's activations and deltas (forward_part's layout)
    float* deltas
    float lr
    float keep              # 1 - lr * decay
    float* sums             # parts x widest: each part's column sums
    Py_ssize_t widest       # the widest layer's size
    double xsum[MAX_FIRST_PARTS]    # sum|X| over each part's share of the rows


cdef void first_split_forward(void* arg, int k) noexcept nogil:
    """Hand-off 1 of FirstSplitTask's step, part k: sum|X| over its share of
    the rows, then its columns of the first layer's activations.

    Every part reads all of X; reading its share first brings it from memory
    on that core while the other core brings the rest (mnist-shape: the
    product 310 -> 299 us a part with the sum, 12 us of it, before it).  The
    part's columns of W1, when they fit CACHED_B_BYTES, are still in its
    core's cache from its last update: the register blocks read them in
    place where BLAS would pack them again (part_gemm).  Above that BLAS's
    blocking wins (_gemm.h's blocks read B once for every 4 rows of A, from
    L2 at best)."""
    cdef FirstSplitTask* t = <FirstSplitTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t n_in = s.sizes[0], n_h = s.sizes[1], m = t.m, i
    cdef Py_ssize_t u0 = unit_bound(n_h, t.parts, k), nu = unit_bound(n_h, t.parts, k + 1) - u0
    cdef Py_ssize_t r0 = m * k // t.parts, r1 = m * (k + 1) // t.parts
    cdef const float* b1 = t.params + n_in * n_h
    t.xsum[k] = abs_sum(t.X + r0 * n_in, (r1 - r0) * n_in)
    part_gemm(True, c'N', c'N', <int>m, <int>nu, <int>n_in, <float>1.0, t.X, <int>n_in,
              t.params + u0, <int>n_h, <float>0.0, t.acts + u0, <int>n_h, 1)
    for i in range(m):
        bias_act(t.acts + i * n_h + u0, b1 + u0, 1, nu, s.hidden)


cdef void first_split_update(void* arg, int k) noexcept nogil:
    """Hand-off 3 of FirstSplitTask's step, part k: its columns of the first
    layer's deltas, then plain SGD on its rows of W2 and columns of W1 and
    b1, and on its share (by rows of W, by entries of b) of the later layers."""
    cdef FirstSplitTask* t = <FirstSplitTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t n_in = s.sizes[0], n_h = s.sizes[1], n_2 = s.sizes[2], m = t.m
    cdef Py_ssize_t u0 = unit_bound(n_h, t.parts, k), nu = unit_bound(n_h, t.parts, k + 1) - u0
    cdef Py_ssize_t i, j, l, i0, i1, j0, j1, n_a, n_b, w_off, a_off
    cdef float* W1 = t.params
    cdef float* b1 = W1 + n_in * n_h
    cdef float* W2 = b1 + n_h
    cdef const float* H = t.acts
    cdef float* DH = t.deltas
    cdef const float* D2 = t.deltas + m * n_h
    cdef float* sums = t.sums + k * t.widest
    cdef float* W
    cdef float* b
    cdef float lr = t.lr
    part_gemm(True, c'N', c'T', <int>m, <int>nu, <int>n_2, <float>1.0, D2, <int>n_2,
              W2 + u0 * n_2, <int>n_2, <float>0.0, DH + u0, <int>n_h, 1)
    for i in range(m):
        times_dact(DH + i * n_h + u0, H + i * n_h + u0, nu, s.hidden)
    gemm_rm(c'T', c'N', <int>nu, <int>n_2, <int>m, -lr, H + u0, <int>n_h, D2, <int>n_2,
            t.keep, W2 + u0 * n_2, <int>n_2, 1)
    gemm_rm(c'T', c'N', <int>n_in, <int>nu, <int>m, -lr, t.X, <int>n_in, DH + u0, <int>n_h,
            t.keep, W1 + u0, <int>n_h, 1)
    fm_colsum_ld_f(DH + u0, m, nu, n_h, sums)
    for j in range(nu):
        b1[u0 + j] -= lr * sums[j]
    w_off = n_in * n_h + n_h
    a_off = m * n_h
    for l in range(1, s.L):
        n_a = s.sizes[l]
        n_b = s.sizes[l + 1]
        W = t.params + w_off
        b = W + n_a * n_b
        if l >= 2:
            i0 = n_a * k // t.parts
            i1 = n_a * (k + 1) // t.parts
            if i1 > i0:
                gemm_rm(c'T', c'N', <int>(i1 - i0), <int>n_b, <int>m, -lr,
                        t.acts + a_off - m * n_a + i0, <int>n_a, t.deltas + a_off, <int>n_b,
                        t.keep, W + i0 * n_b, <int>n_b, 1)
        j0 = n_b * k // t.parts
        j1 = n_b * (k + 1) // t.parts
        if j1 > j0:
            fm_colsum_ld_f(t.deltas + a_off + j0, m, j1 - j0, n_b, sums)
            for j in range(j1 - j0):
                b[j0 + j] -= lr * sums[j]
        w_off += n_a * n_b + n_b
        a_off += m * n_b


# --------------------------------------------------------------------------
# The one-pass step for narrow networks (_narrow.h)
# --------------------------------------------------------------------------

cdef bint narrow_step(const Py_ssize_t[::1] sizes, int narrow):
    """Whether ``train`` takes the one-pass step (see its ``narrow``)."""
    cdef Py_ssize_t l
    if narrow == 0 or sizes.shape[0] - 1 > FMN_MAX_LAYERS:
        return False
    if narrow > 0:
        return True
    for l in range(sizes.shape[0]):
        if sizes[l] > NARROW_WIDTH:
            return False
    return True


cdef int narrow_parts(const Py_ssize_t[::1] sizes, Py_ssize_t bs, Py_ssize_t chunk,
                      int threads):
    """Parts to split the one-pass step's batches of bs rows into: at most
    ``threads``, one chunk each at least, and NARROW_PART_MACS forward
    multiply-adds each at least (below that, handing work to another
    thread costs more than it saves)."""
    cdef Py_ssize_t l, per_row = 0
    cdef int parts = min(threads, FMN_MAX_PARTS, <int>((bs + chunk - 1) // chunk))
    for l in range(sizes.shape[0] - 1):
        per_row += sizes[l] * sizes[l + 1]
    while parts > 1 and bs * per_row < parts * NARROW_PART_MACS:
        parts -= 1
    return max(parts, 1)


cdef inline double narrow_batch(Spec* s, void* work, const floating* params,
                                const floating* X, const floating* Y, const floating* w,
                                const void* prep, Py_ssize_t m, double inv_M,
                                floating* grads, int parts) noexcept nogil:
    """Forward, loss and backward of one batch in one pass (``work`` set up
    by fm_narrow_init, ``parts`` parts of it): returns the weighted data-loss
    sum and writes its gradient (w_i / M included, no penalty terms) into
    grads.  The rows come from prep (prepared chunk blocks) unless it is
    NULL, else from X, Y, w.  A batch of several chunks is split into
    ``parts`` parts on as many threads."""
    if floating is float:
        return fm_narrow_batch_f(work, s.hidden, s.output, s.loss, params, X, Y, w, prep, m,
                                 inv_M, grads, parts)
    else:
        return fm_narrow_batch_d(work, s.hidden, s.output, s.loss, params, X, Y, w, prep, m,
                                 inv_M, grads, parts)


cdef inline Py_ssize_t narrow_sgd_epochs(Spec* s, void* work, floating* params,
                                         const void* prep, Py_ssize_t m, floating lr,
                                         Py_ssize_t epochs, double W_total,
                                         double* epoch_loss, floating* grads,
                                         floating* backup) noexcept nogil:
    """Epochs of plain SGD on one prepared chunk of m rows (the whole data):
    returns the epochs completed (see fm_narrow_sgd_epochs in _narrow_impl.h)."""
    if floating is float:
        return fm_narrow_sgd_epochs_f(work, s.hidden, s.output, s.loss, params, prep, m,
                                      lr, epochs, W_total, epoch_loss, grads, backup)
    else:
        return fm_narrow_sgd_epochs_d(work, s.hidden, s.output, s.loss, params, prep, m,
                                      lr, epochs, W_total, epoch_loss, grads, backup)


cdef inline bint sgd_step(floating* p, const floating* g, floating* backup, floating lr,
                          Py_ssize_t n) noexcept nogil:
    """p -= lr * g; False (and p unchanged) if that made any value non-finite."""
    if floating is float:
        return fm_sgd_step_f(p, g, backup, lr, n) != 0
    else:
        return fm_sgd_step_d(p, g, backup, lr, n) != 0


cdef void add_decay(Spec* s, const floating* params, floating* grads, floating c) noexcept nogil:
    """grads += c * W over the weights (the L2 term's gradient)."""
    cdef Py_ssize_t l, i, off = 0, nw
    for l in range(s.L):
        nw = s.sizes[l] * s.sizes[l + 1]
        for i in range(nw):
            grads[off + i] += c * params[off + i]
        off += nw + s.sizes[l + 1]


# --------------------------------------------------------------------------
# Optimizer steps on the flat buffer
# --------------------------------------------------------------------------

cdef inline bint params_finite(const floating* p, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fm_all_finite_f(p, n) != 0
    else:
        return fm_all_finite_d(p, n) != 0


cdef double sq_norm(const floating* g, Py_ssize_t n) noexcept nogil:
    cdef double t = 0
    cdef Py_ssize_t i
    for i in range(n):
        t += <double>g[i] * g[i]
    return t


cdef void apply_step(int optimizer, floating* p, const floating* g, floating* state,
                     Py_ssize_t n, double lr, double momentum, bint nesterov,
                     double beta1, double beta2, double eps, Py_ssize_t t) noexcept nogil:
    """One optimizer step (scikit-learn's definitions).

    SGD: ``v = momentum * v - lr * g``; ``p += momentum * v - lr * g`` with
    Nesterov, else ``p += v`` (``p -= lr * g`` when momentum is 0).
    Adam (step ``t`` >= 1): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    """
    cdef Py_ssize_t i
    cdef floating f_lr = <floating>lr, mu = <floating>momentum
    cdef floating b1 = <floating>beta1, b2 = <floating>beta2, e = <floating>eps
    cdef floating lr_t, v
    cdef floating* m1
    cdef floating* m2
    if optimizer == OPT_SGD:
        if momentum == 0:
            for i in range(n):
                p[i] -= f_lr * g[i]
        elif nesterov:
            for i in range(n):
                v = mu * state[i] - f_lr * g[i]
                state[i] = v
                p[i] += mu * v - f_lr * g[i]
        else:
            for i in range(n):
                v = mu * state[i] - f_lr * g[i]
                state[i] = v
                p[i] += v
    else:
        m1 = state
        m2 = state + n
        lr_t = <floating>(lr * sqrt(1 - pow(beta2, <double>t)) / (1 - pow(beta1, <double>t)))
        for i in range(n):
            m1[i] = b1 * m1[i] + (1 - b1) * g[i]
            m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i]
            p[i] -= lr_t * m1[i] / (<floating>sqrt(m2[i]) + e)


# --------------------------------------------------------------------------
# Shuffling: splitmix64 + Fisher-Yates, mirrored in fastmlp/_shuffle.py
# --------------------------------------------------------------------------

cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef void shuffle_index(Py_ssize_t* order, Py_ssize_t n, uint64_t* state) noexcept nogil:
    cdef Py_ssize_t i, j, t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>(splitmix64(state) % <uint64_t>(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t


def shuffle(Py_ssize_t[::1] order, uint64_t[::1] state):
    """Permute ``order`` in place (one epoch's shuffle), advancing ``state``."""
    with nogil:
        shuffle_index(&order[0], order.shape[0], &state[0])


def product(str ta, str tb, const floating[:, ::1] A, const floating[:, ::1] B,
            floating[:, ::1] C, double alpha=1.0, double beta=0.0, int path=0,
            Py_ssize_t repeat=1, int pool_threads=1):
    """``C = alpha * op(A) @ op(B) + beta * C`` through the kernels' product.

    ``path``: 0 as the kernels choose, 1 the C loops, 2 BLAS, 3 the register
    blocks of _gemm.h (on up to ``pool_threads`` threads of the pool).  For
    tests of every transposition case and for measuring where the switches
    belong.
    """
    cdef char cta = ord(ta), ctb = ord(tb)
    cdef int M = C.shape[0], N = C.shape[1]
    cdef int K = A.shape[1] if ta == "N" else A.shape[0]
    cdef Py_ssize_t r
    if A.shape[0] != (M if ta == "N" else K) or B.shape[0] != (K if tb == "N" else N) \
            or B.shape[1] != (N if tb == "N" else K):
        raise ValueError("product: shapes of A, B and C do not match")
    with nogil:
        for r in range(repeat):
            if path == 1:
                gemm_loops(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                           &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N)
            elif path == 2:
                gemm_blas(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                          &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N)
            elif path == 3:
                gemm_blocked(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                             &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N,
                             pool_threads)
            else:
                gemm_rm(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                        &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N,
                        pool_threads)


cdef struct FiniteTask:
    const void* x
    Py_ssize_t n
    bint is_float
    int ok[FINITE_BLOCKS]


cdef void finite_block(void* arg, int b) noexcept nogil:
    cdef FiniteTask* t = <FiniteTask*>arg
    cdef Py_ssize_t lo = t.n * b // FINITE_BLOCKS, hi = t.n * (b + 1) // FINITE_BLOCKS
    if t.is_float:
        t.ok[b] = fm_all_finite_f(<const float*>t.x + lo, hi - lo)
    else:
        t.ok[b] = fm_all_finite_d(<const double*>t.x + lo, hi - lo)


cdef bint values_finite(const void* x, Py_ssize_t n, bint is_float, int threads) noexcept nogil:
    """Whether the n values at x are all finite; arrays of at least
    FINITE_SPLIT values are read by up to ``threads`` threads of _pool.h
    (reading is memory-bound: two cores read faster)."""
    cdef FiniteTask t
    cdef int ok = 1, b
    if n >= FINITE_SPLIT and threads > 1:
        t.x = x
        t.n = n
        t.is_float = is_float
        fmp_run(finite_block, &t, FINITE_BLOCKS, threads)
        for b in range(FINITE_BLOCKS):
            ok = ok and t.ok[b]
        return ok
    if is_float:
        return fm_all_finite_f(<const float*>x, n)
    return fm_all_finite_d(<const double*>x, n)


def all_finite(const floating[:, ::1] X, int threads=1):
    """True when every value of the C-contiguous 2-D array X is finite
    (read by up to ``threads`` threads of the pool when large)."""
    cdef Py_ssize_t n = X.shape[0] * X.shape[1]
    cdef bint ok
    if n == 0:
        return True
    with nogil:
        ok = values_finite(&X[0, 0], n, floating is float, threads)
    return ok


def exp_poly(floating[::1] x):
    """The kernels' vectorisable exp, element-wise in place (for accuracy tests)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        if floating is float:
            x[i] = fm_exp_f(x[i])
        else:
            x[i] = fm_exp_d(x[i])


# --------------------------------------------------------------------------
# Python entry points (arguments validated by the caller)
# --------------------------------------------------------------------------

cdef check_shapes(Spec* s, Py_ssize_t n_params, const Py_ssize_t[::1] sizes, Py_ssize_t x_rows,
                  Py_ssize_t x_cols, Py_ssize_t y_rows, Py_ssize_t y_cols, object sample_weight,
                  Py_ssize_t w_len):
    """Constant-time checks that the buffers match ``sizes``: the kernels
    index by ``sizes`` alone, so a mismatch would read or write out of bounds."""
    cdef Py_ssize_t l
    for l in range(sizes.shape[0]):
        if sizes[l] < 1:
            raise ValueError(f"sizes[{l}] must be >= 1; got {sizes[l]}")
    if n_params != s.n_params:
        raise ValueError(f"params has {n_params} values; layer sizes {list(sizes)} need {s.n_params}")
    if x_rows < 1 or x_cols != sizes[0]:
        raise ValueError(f"X must have shape (n >= 1, {sizes[0]}); got ({x_rows}, {x_cols})")
    if y_rows >= 0 and (y_rows != x_rows or y_cols != sizes[s.L]):
        raise ValueError(f"Y must have shape ({x_rows}, {sizes[s.L]}); got ({y_rows}, {y_cols})")
    if sample_weight is not None and w_len != x_rows:
        raise ValueError(f"sample_weight must have {x_rows} values; got {w_len}")


cdef const floating* weights_ptr(object sample_weight, floating[::1] view):
    return NULL if sample_weight is None else &view[0]


cdef int forward_rows(Spec* s, const floating* params, const floating* X, Py_ssize_t n,
                      floating* out, Py_ssize_t chunk, int threads, bint check_x) noexcept nogil:
    """Outputs of n rows of X into out (n x n_out), ``chunk`` rows at a time,
    under ``threads`` BLAS threads; -1 when the workspace cannot be allocated;
    with ``check_x``, 1 (out unfinished) when X holds a value that is not
    finite (see :func:`forward_batch`)."""
    cdef Py_ssize_t n_out = s.sizes[s.L], rows = min(chunk, n), start = 0, m
    cdef Py_ssize_t last = s.per_row - n_out
    cdef floating* work
    cdef int before, status = 0
    if s.L == 1:
        # one layer: write straight into out, no workspace
        before = threads_enter(threads)
        if not forward_batch(s, params, X, n, out, NULL, NULL, check_x):
            status = 1
        threads_exit(before)
        return status
    work = <floating*>malloc(rows * s.per_row * sizeof(floating))
    if work == NULL:
        return -1
    before = threads_enter(threads)
    while start < n:
        m = min(rows, n - start)
        if not forward_batch(s, params, X + start * s.sizes[0], m, work, NULL, NULL, check_x):
            status = 1
            break
        memcpy(out + start * n_out, work + m * last, m * n_out * sizeof(floating))
        start += m
    threads_exit(before)
    free(work)
    return status


def forward(const floating[::1] params, const floating[:, ::1] X,
            const Py_ssize_t[::1] sizes, int hidden, int output,
            floating[:, ::1] out, Py_ssize_t chunk=FORWARD_ROWS, int threads=0,
            int pool_threads=1):
    """Write the network's outputs for every row of X into ``out``.

    ``threads`` > 0 sets the BLAS thread count for the call; ``pool_threads``
    the threads of fastmlp's pool (caller included) that split the products
    it computes itself (few rows, register blocks).
    """
    cdef Spec s = make_spec(sizes, hidden, output, 0)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L]
    cdef int status
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], -1, 0, None, 0)
    if out.shape[0] != n or out.shape[1] != n_out:
        raise ValueError(f"out must have shape ({n}, {n_out}); got ({out.shape[0]}, {out.shape[1]})")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")
    s.pool_threads = pool_threads
    with nogil:
        status = forward_rows(&s, &params[0], &X[0, 0], n, &out[0, 0], chunk, threads, False)
    if status != 0:
        raise MemoryError()


def predict_ready(cnp.ndarray params, object X, cnp.ndarray sizes, int hidden, int output,
                  int pool_threads, Py_ssize_t many_rows, int threads_few, int threads_many):
    """The outputs for X (a new array), or None when X is not ready as it is.

    Ready: an ndarray (not a subclass) of params' dtype, 2-D, C-contiguous,
    aligned, native byte order, at least one row, ``sizes[0]`` columns, every
    value finite (seen in the first layer's products, see
    :func:`forward_batch`).  Anything else is the caller's to convert and
    check (with errors that say what is wrong).  The one-call fast path of
    ``Network.predict``: unpacking the memoryviews of :func:`all_finite` and
    :func:`forward` costs more than a one-sample forward pass's arithmetic.
    BLAS threads (as :func:`forward` takes them): ``threads_few`` when the
    batches (``min(n, FORWARD_CHUNK)`` rows) have fewer than ``many_rows`` rows, else
    ``threads_many``.
    """
    cdef cnp.ndarray x, out
    cdef Spec s
    cdef Py_ssize_t l, n
    cdef const Py_ssize_t* sz
    cdef cnp.npy_intp dims[2]
    cdef int typenum, status, threads
    if (not cnp.PyArray_IS_C_CONTIGUOUS(params) or cnp.PyArray_NDIM(params) != 1
            or cnp.PyArray_TYPE(params) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)
            or not cnp.PyArray_ISBEHAVED_RO(params)):
        raise ValueError(f"params must be an aligned C-contiguous 1-D float32 or float64 array; "
                         f"got {params.dtype} with shape {(<object>params).shape}")
    if (not cnp.PyArray_IS_C_CONTIGUOUS(sizes) or cnp.PyArray_NDIM(sizes) != 1
            or cnp.PyArray_TYPE(sizes) != cnp.NPY_INTP or cnp.PyArray_DIM(sizes, 0) < 2):
        raise ValueError(f"sizes must be a C-contiguous 1-D intp array of at least 2 sizes; "
                         f"got {sizes.dtype} with shape {(<object>sizes).shape}")
    sz = <const Py_ssize_t*>cnp.PyArray_DATA(sizes)
    for l in range(cnp.PyArray_DIM(sizes, 0)):
        if sz[l] < 1:
            raise ValueError(f"sizes[{l}] must be >= 1; got {sz[l]}")
    s = spec_of(sz, cnp.PyArray_DIM(sizes, 0), hidden, output, 0)
    if cnp.PyArray_DIM(params, 0) != s.n_params:
        raise ValueError(f"params has {cnp.PyArray_DIM(params, 0)} values; layer sizes "
                         f"{sizes.tolist()} need {s.n_params}")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")
    s.pool_threads = pool_threads
    typenum = cnp.PyArray_TYPE(params)
    if type(X) is not cnp.ndarray:
        return None
    x = <cnp.ndarray>X
    if (cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_TYPE(x) != typenum
            or not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_ISBEHAVED_RO(x)
            or cnp.PyArray_DIM(x, 0) < 1 or cnp.PyArray_DIM(x, 1) != sz[0]):
        return None
    n = cnp.PyArray_DIM(x, 0)
    dims[0] = n
    dims[1] = sz[s.L]
    out = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    threads = threads_few if min(n, FORWARD_ROWS) < many_rows else threads_many
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            status = forward_rows(&s, <const float*>cnp.PyArray_DATA(params),
                                  <const float*>cnp.PyArray_DATA(x), n,
                                  <float*>cnp.PyArray_DATA(out), FORWARD_ROWS, threads, True)
        else:
            status = forward_rows(&s, <const double*>cnp.PyArray_DATA(params),
                                  <const double*>cnp.PyArray_DATA(x), n,
                                  <double*>cnp.PyArray_DATA(out), FORWARD_ROWS, threads, True)
    if status == 1:
        return None
    if status != 0:
        raise MemoryError()
    return out


def objective(const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] Y, sample_weight, const Py_ssize_t[::1] sizes,
              int hidden, int output, int loss, double l2, double l1,
              Py_ssize_t chunk=FORWARD_ROWS, int threads=0):
    """The objective over all rows (one batch): see the module docstring."""
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L]
    cdef Py_ssize_t rows = min(chunk, n), start, m, last = s.per_row - n_out, i
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef double total = 0, M = 0
    cdef int before = 0
    cdef floating* work
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    work = <floating*>malloc((rows * s.per_row + rows * n_out) * sizeof(floating))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            before = threads_enter(threads)
            start = 0
            while start < n:
                m = min(rows, n - start)
                forward_batch(&s, &params[0], &X[start, 0], m, work, NULL, work + rows * s.per_row,
                              False)
                total += data_loss_sum(&s, work + rows * s.per_row, work + m * last,
                                       &Y[start, 0], NULL if w == NULL else w + start, m)
                start += m
            M = total_weight(w, n)
            total = (total + penalty(&s, &params[0], l2, l1)) / M
    finally:
        threads_exit(before)
        free(work)
    return total


def full_pass(const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] Y, sample_weight, const Py_ssize_t[::1] sizes,
              int hidden, int output, int loss, double l2, double l1,
              floating[::1] acts, floating[::1] deltas, floating[::1] grads,
              zs=None, int threads=0):
    """Forward + backward over all rows as one batch.

    OUT: acts, deltas (stacked per layer, n x sizes[l+1] each), grads
    (params layout, L1 term included), zs if given (pre-activations, acts
    layout).  Returns the objective.
    """
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L], i
    cdef Py_ssize_t last = n * (s.per_row - n_out)
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef floating[::1] zs_view
    cdef floating* zs_ptr = NULL
    cdef double total, M = 0
    cdef int before = 0
    cdef floating* zout
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if (acts.shape[0] != n * s.per_row or deltas.shape[0] != n * s.per_row
            or grads.shape[0] != s.n_params):
        raise ValueError("acts, deltas and grads must hold n * sum(sizes[1:]) and n_params values")
    if zs is not None:
        zs_view = zs
        if zs_view.shape[0] != n * s.per_row:
            raise ValueError("zs must hold n * sum(sizes[1:]) values")
        zs_ptr = &zs_view[0]
    zout = <floating*>malloc(n * n_out * sizeof(floating))
    if zout == NULL:
        raise MemoryError()
    try:
        with nogil:
            before = threads_enter(threads)
            M = total_weight(w, n)
            forward_batch(&s, &params[0], &X[0, 0], n, &acts[0], zs_ptr, zout, False)
            total = (data_loss_sum(&s, zout, &acts[last], &Y[0, 0], w, n)
                     + penalty(&s, &params[0], l2, l1)) / M
            backward_batch(&s, &params[0], &X[0, 0], &Y[0, 0], w, n, M,
                           &acts[0], &deltas[0], &grads[0], l2)
            if l1 != 0:
                add_l1_gradient(&s, &params[0], &grads[0], <floating>(l1 / M))
    finally:
        threads_exit(before)
        free(zout)
    return total


cdef void gather_rows(const floating[:, ::1] X, const floating[:, ::1] Y, const floating* w,
                      const Py_ssize_t* rows, Py_ssize_t m, floating* xbuf, floating* ybuf,
                      floating* wbuf) noexcept nogil:
    """Copy rows ``rows[0..m-1]`` of X, Y and w (unless NULL) into the buffers."""
    cdef Py_ssize_t i, n_in = X.shape[1], n_out = Y.shape[1]
    for i in range(m):
        memcpy(xbuf + i * n_in, &X[rows[i], 0], n_in * sizeof(floating))
        memcpy(ybuf + i * n_out, &Y[rows[i], 0], n_out * sizeof(floating))
        if w != NULL:
            wbuf[i] = w[rows[i]]


cdef int check_signals() except -1 with gil:
    """Run Python's signal handlers (Ctrl-C) from inside a nogil loop."""
    if PyErr_CheckSignals() < 0:
        return -1
    return 0


def train(floating[::1] params, const floating[:, ::1] X, const floating[:, ::1] Y,
          sample_weight, const Py_ssize_t[::1] sizes, int hidden, int output, int loss,
          double learning_rate, double l2, double l1, Py_ssize_t batch_size,
          Py_ssize_t epochs, Py_ssize_t[::1] order, bint shuffle,
          uint64_t[::1] rng_state, double[::1] epoch_loss,
          int optimizer=OPT_SGD, double momentum=0.0, bint nesterov=False,
          double beta1=0.9, double beta2=0.999, double epsilon=1e-8,
          double clip_norm=0.0, opt_state=None, Py_ssize_t[::1] step=None,
          int[::1] stop=None, Py_ssize_t check_every=0, int threads=0, int narrow=-1,
          bint epochs_in_c=True, int pool_threads=1):
    """Run ``epochs`` epochs of minibatch training on params, in place.

    Each epoch: optionally shuffle ``order`` (in C), then for each batch of
    ``batch_size`` rows (the last may be smaller): forward, batch objective,
    backward, then the update.  Plain SGD (no momentum, clipping or L1) is
    fused into the backward pass; otherwise the gradient goes to a buffer,
    is clipped to global norm ``clip_norm`` if that is > 0, and the optimizer
    step is taken with ``opt_state`` (n_params values for SGD with momentum,
    2 * n_params for Adam) and ``step[0]`` (Adam's step count, advanced).

    ``epoch_loss[e]`` gets the epoch's objective: the sum over its batches of
    ``M_B * objective_B`` divided by the total weight, each measured before
    that batch's update (for a full batch: the objective at the epoch's start).

    ``threads`` > 0 sets the BLAS thread count for the call.  ``narrow``
    picks the step: 1 the one-pass feature-major step of ``_narrow.h`` (any
    widths), 0 the per-layer products, -1 (default) the one-pass step when
    every layer is at most ``NARROW_WIDTH`` wide.  With ``epochs_in_c``,
    plain SGD on a data set that fits one chunk of the one-pass step runs its
    epochs in one C loop (same results; the per-epoch cost of the loop here
    is most of an XOR epoch).  ``pool_threads`` > 1 lets the one-pass step
    split batches of enough work into that many parts on the threads of
    ``_pool.h`` (results then depend on that number, not on timing), and the
    register-blocked products split their columns there; a float32 step
    without BLAS products runs its rows' forward pass, loss and deltas in
    parts there (see row_parts) and plain SGD's updates in blocks (see
    update_block), and plain SGD on one hidden layer runs in parts of its
    hidden units, one hand-off a step (see unit_parts, unit_block); plain
    SGD whose first layer's products go to BLAS runs that layer in parts of
    its units and the later ones in parts of the rows, each part calling
    BLAS on one thread (see first_split_parts, FirstSplitTask); results the
    same for any number.

    Returns the number of epochs completed.  A non-finite batch objective or
    gradient stops training before that batch's update; that epoch's entry
    is then the non-finite value and it is not counted.

    With ``check_every`` > 0, Python's signal handlers run every
    ``check_every`` batches; if one sets ``stop[0]`` (fit's Ctrl-C handler)
    training stops after the current batch and the partial epoch is not
    counted.  An exception raised by a handler propagates after the
    workspace is freed; params then hold the last completed step.
    """
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_in = sizes[0], n_out = sizes[s.L]
    cdef Py_ssize_t bs = min(batch_size, n), P = s.n_params
    cdef Py_ssize_t e, start, m, i, done = 0, batches = 0
    cdef int* stop_ptr = NULL if stop is None else &stop[0]
    cdef bint halted = False
    cdef int before = 0
    cdef bint gather = shuffle and bs < n
    cdef bint fused = optimizer == OPT_SGD and momentum == 0 and clip_norm <= 0 and l1 == 0
    cdef bint keep_z = loss == LOSS_LOG
    cdef RowTask rows
    cdef Spec part_spec
    cdef int n_row_parts = 1, n_update_blocks = 0
    cdef double* part_sums = NULL
    cdef double* batch_sums = NULL       # a batch's sums for sgd_safe (see safe_sums)
    cdef UpdateTask upd
    cdef UnitTask units
    cdef int n_units = 1, status, upar = 0
    cdef bint pending = False           # the batch's forward pass is done (unit_hand_off),
                                        # and when gathering, the batch is in xalt, yalt, walt
    cdef Py_ssize_t nxt, mn
    cdef bint unit_split = False        # some batch splits by hidden units (unit_parts)
    cdef float* zparts = NULL
    cdef float* unit_outs = NULL
    cdef FirstSplitTask fst
    cdef RowTask rest_rows              # first_split's row parts: the layers after the first
    cdef Spec rest_spec
    cdef int n_first = 1
    cdef bint first_split = False       # some batch splits by the first layer's units
    cdef float* first_sums = NULL
    cdef floating* xalt = NULL
    cdef floating* yalt = NULL
    cdef floating* walt = NULL
    cdef const floating* wn
    cdef floating lr = <floating>learning_rate
    cdef double batch_obj, total, M, W_total = 0, gnorm
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef floating[::1] state_view
    cdef floating* state = NULL
    cdef Py_ssize_t* t = NULL
    cdef const floating* Xb
    cdef const floating* Yb
    cdef const floating* wb
    cdef floating* acts = NULL
    cdef floating* deltas = NULL
    cdef floating* zout = NULL
    cdef Py_ssize_t widest = 0
    cdef floating* scratch = NULL
    cdef floating* grads = NULL
    cdef floating* xbuf = NULL
    cdef floating* ybuf = NULL
    cdef floating* wbuf = NULL
    cdef floating* backup = NULL
    cdef double* bounds = NULL
    cdef void* nwork = NULL
    cdef int parts = 1
    cdef bint one_pass = narrow_step(sizes, narrow)
    cdef int nv = fm_narrow_nv(bs, sizeof(floating))
    cdef Py_ssize_t chunk = fm_narrow_chunk(nv, sizeof(floating))
    cdef size_t block_bytes = (n_in + n_out + 1) * chunk * sizeof(floating)
    cdef void* prep = NULL
    cdef char* prep_base = NULL
    # unshuffled batches that start on chunk boundaries: their chunk blocks
    # are prepared once for every epoch (when that copy is not too big)
    cdef bint prepared = (one_pass and not gather and (bs >= n or bs % chunk == 0)
                          and fm_narrow_prep_bytes(n_in, n_out, n, nv, sizeof(floating))
                          <= PREPARED_BYTES)
    # every check before the first allocation: nothing leaks on an error
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0; got {batch_size}, {epochs}")
    if order.shape[0] != n or epoch_loss.shape[0] < epochs or rng_state.shape[0] < 1:
        raise ValueError("order must hold n indices and epoch_loss at least epochs values")
    for i in range(n):
        if order[i] < 0 or order[i] >= n:
            raise ValueError(f"order[{i}] = {order[i]} is not a row index of X")
    if opt_state is not None:
        state_view = opt_state
        if state_view.shape[0] < (2 * P if optimizer == OPT_ADAM else P):
            raise ValueError("opt_state is too short for this optimizer")
        state = &state_view[0]
    if step is not None:
        if step.shape[0] < 1:
            raise ValueError("step must hold one count")
        t = &step[0]
    if not fused and momentum != 0 and state == NULL:
        raise ValueError("opt_state is required for momentum")
    if optimizer == OPT_ADAM and (state == NULL or t == NULL):
        raise ValueError("opt_state and step are required for Adam")
    if stop is not None and stop.shape[0] < 1:
        raise ValueError("stop must hold one flag")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")
    s.pool_threads = pool_threads
    for i in range(s.L):
        n_update_blocks += <int>update_blocks(sizes[i], sizes[i + 1])
    for i in range(s.L):
        if bs * sizes[i] * sizes[i + 1] > BLOCKED_MAX_PRODUCT:
            # the step has BLAS products: the pool's threads, spinning after
            # each small product, would take the cores from BLAS's threads
            # (measured: mnist-shape, 6% of the fit spent spinning)
            s.pool_threads = 1
    if one_pass:
        parts = narrow_parts(sizes, bs, chunk, pool_threads)
        nwork = malloc(parts * fm_narrow_work_bytes(&sizes[0], s.L))
        if prepared:
            prep = malloc(fm_narrow_prep_bytes(n_in, n_out, n, nv, sizeof(floating)))
    else:
        acts = <floating*>malloc(bs * s.per_row * sizeof(floating))
        deltas = <floating*>malloc(bs * s.per_row * sizeof(floating))
        if keep_z:
            zout = <floating*>malloc(bs * n_out * sizeof(floating))
    if fused:
        backup = <floating*>malloc(P * sizeof(floating))
    if fused and not one_pass:
        bounds = <double*>malloc(2 * s.L * sizeof(double))
        part_sums = <double*>calloc((MAX_ROW_PARTS + 1) * 2 * s.L, sizeof(double))
        batch_sums = part_sums + MAX_ROW_PARTS * 2 * s.L
        if floating is float and bs > 0:
            unit_split = (unit_parts(&s, bs) > 1
                          or (n % bs != 0 and unit_parts(&s, n % bs) > 1))
        if unit_split:
            zparts = <float*>malloc(2 * MAX_UNIT_PARTS * bs * n_out * sizeof(float))
            unit_outs = <float*>malloc(MAX_UNIT_PARTS * (3 * bs * n_out + n_out + sizes[1])
                                       * sizeof(float))
        if floating is float and bs > 0 and fm_blas_threads_known():
            # (with a BLAS whose thread count fastmlp cannot set, the parts'
            # calls would each start that BLAS's threads)
            first_split = (first_split_parts(&s, bs, pool_threads) > 1
                           or (n % bs != 0 and first_split_parts(&s, n % bs, pool_threads) > 1))
    if not fused or one_pass:
        grads = <floating*>malloc(P * sizeof(floating))
    for i in range(sizes.shape[0]):
        widest = max(widest, sizes[i])
    scratch = <floating*>malloc(widest * sizeof(floating))
    if first_split:
        first_sums = <float*>malloc(MAX_FIRST_PARTS * widest * sizeof(float))
        rest_spec = spec_of(&sizes[1], s.L, hidden, output, loss)
        rest_spec.blas_one = True   # first_split's parts call BLAS on one thread
    if gather:
        xbuf = <floating*>malloc(bs * n_in * sizeof(floating))
        ybuf = <floating*>malloc(bs * n_out * sizeof(floating))
        if w != NULL:
            wbuf = <floating*>malloc(bs * sizeof(floating))
        if unit_split:                  # the next batch, gathered ahead (unit_hand_off)
            xalt = <floating*>malloc(bs * n_in * sizeof(floating))
            yalt = <floating*>malloc(bs * n_out * sizeof(floating))
            if w != NULL:
                walt = <floating*>malloc(bs * sizeof(floating))
    try:
        if ((one_pass and nwork == NULL) or (prepared and prep == NULL)
                or (not one_pass and (acts == NULL or deltas == NULL or (keep_z and zout == NULL)))
                or scratch == NULL
                or ((not fused or one_pass) and grads == NULL)
                or (fused and backup == NULL)
                or (fused and not one_pass and (bounds == NULL or part_sums == NULL))
                or (unit_split and (zparts == NULL or unit_outs == NULL))
                or (first_split and first_sums == NULL)
                or (unit_split and gather
                    and (xalt == NULL or yalt == NULL or (w != NULL and walt == NULL)))
                or (gather and (xbuf == NULL or ybuf == NULL or (w != NULL and wbuf == NULL)))):
            raise MemoryError()
        with nogil:
            # first_split's parts call BLAS on one thread each
            before = threads_enter(1 if first_split else threads)
            W_total = total_weight(w, n)
            if bounds != NULL:          # the per-layer step's plain SGD (see sgd_safe)
                exact_bounds(&s, &params[0], bounds)
            if floating is float:       # the pool's tasks of the per-layer step
                part_spec = s
                part_spec.pool_threads = 1
                rows.s = &part_spec
                rows.params = &params[0]
                rows.acts = acts
                rows.deltas = deltas
                rows.zout = zout
                rows.sums = part_sums
                upd.s = &s
                upd.params = &params[0]
                upd.acts = acts
                upd.deltas = deltas
                units.s = &s
                units.params = &params[0]
                units.bs = bs
                units.hid = acts
                units.dhid = deltas
                units.zpart = zparts
                units.outs = unit_outs
                units.backup = backup
                units.l2 = l2
                units.lr = lr
                fst.s = &s
                fst.params = &params[0]
                fst.acts = acts
                fst.deltas = deltas
                fst.sums = first_sums
                fst.widest = widest
                fst.lr = lr
                rest_rows.s = &rest_spec
                rest_rows.params = &params[0] + sizes[0] * sizes[1] + sizes[1]
                rest_rows.zout = zout
                rest_rows.sums = part_sums
            if one_pass:
                fm_narrow_init(nwork, &sizes[0], s.L, nv)
            if prepared:
                if floating is float:
                    fm_narrow_prepare_f(nv, n_in, n_out, &X[0, 0], &Y[0, 0], w, n, prep)
                else:
                    fm_narrow_prepare_d(nv, n_in, n_out, &X[0, 0], &Y[0, 0], w, n, prep)
                prep_base = <char*>((<size_t>prep + 31) & ~(<size_t>31))
            if epochs_in_c and prepared and fused and n <= chunk and l2 == 0 and W_total > 0:
                # the whole data set is one chunk and the step plain SGD: the
                # epochs run in C, a slice of check_every at a time
                while done < epochs and not halted:
                    m = epochs - done if check_every <= 0 else min(epochs - done, check_every)
                    e = narrow_sgd_epochs(&s, nwork, &params[0], prep_base, n, lr, m, W_total,
                                          &epoch_loss[done], grads, backup)
                    done += e
                    if e < m:
                        break
                    if check_every > 0 and done < epochs:
                        check_signals()
                        halted = stop_ptr != NULL and stop_ptr[0] != 0
                epochs = 0          # all done above
            for e in range(epochs):
                if gather:
                    shuffle_index(&order[0], n, &rng_state[0])
                if bounds != NULL and e > 0:
                    exact_bounds(&s, &params[0], bounds)    # tight again (see sgd_safe)
                pending = False
                total = 0
                start = 0
                while start < n:
                    m = min(bs, n - start)
                    if pending and gather:      # by the step before (unit_hand_off)
                        xbuf, xalt = xalt, xbuf
                        ybuf, yalt = yalt, ybuf
                        wbuf, walt = walt, wbuf
                    elif gather:
                        gather_rows(X, Y, w, &order[start], m, xbuf, ybuf, wbuf)
                    if gather:
                        Xb = xbuf
                        Yb = ybuf
                        wb = wbuf
                    else:
                        Xb = &X[start, 0]
                        Yb = &Y[start, 0]
                        wb = NULL if w == NULL else w + start
                    M = total_weight(wb, m)
                    if check_every > 0:
                        batches += 1
                        if batches >= check_every:
                            batches = 0
                            check_signals()
                            if stop_ptr != NULL and stop_ptr[0] != 0:
                                halted = True
                                break
                    if M <= 0:          # a batch of zero total weight carries no gradient
                        start += m
                        continue
                    if floating is float:
                        if unit_split:
                            n_units = unit_parts(&s, m)
                            if n_units > 1:
                                # this batch's update and the next one's forward
                                # pass in one hand-off when the next splits alike
                                units.parts = n_units
                                units.par = upar
                                if not pending:
                                    units.update = False
                                    units.fwd = True
                                    units.Xn = Xb
                                    units.mn = m
                                    unit_hand_off(&units, s.pool_threads, bounds)
                                units.update = True
                                units.X = Xb
                                units.Y = Yb
                                units.w = wb
                                units.m = m
                                units.M = M
                                units.fwd = False
                                nxt = start + m
                                mn = min(bs, n - nxt)
                                if nxt < n and unit_parts(&s, mn) == n_units:
                                    if gather:
                                        gather_rows(X, Y, w, &order[nxt], mn, xalt, yalt, walt)
                                        units.Xn = xalt
                                        wn = walt               # NULL when w is
                                    else:
                                        units.Xn = &X[nxt, 0]
                                        wn = NULL if w == NULL else w + nxt
                                    units.fwd = total_weight(wn, mn) > 0
                                    units.mn = mn
                                status = unit_hand_off(&units, s.pool_threads, bounds)
                                if status == UNIT_NOT_FINITE:
                                    total = units.obj
                                    break
                                if status == UNIT_RESTORED:
                                    total = INFINITY
                                    break
                                pending = units.fwd
                                if pending:
                                    upar = 1 - upar
                                start += m
                                total += units.obj
                                continue
                    n_first = 1
                    if floating is float:
                        if first_split:
                            n_first = first_split_parts(&s, m, pool_threads)
                        if n_first > 1:
                            # the first layer by units, the rest by rows (first_split_forward)
                            fst.parts = n_first
                            fst.X = Xb
                            fst.m = m
                            fmp_run(first_split_forward, &fst, n_first, pool_threads)
                            rest_rows.acts = acts + m * sizes[1]
                            rest_rows.deltas = deltas + m * sizes[1]
                            batch_obj = run_row_parts(&rest_rows, acts, Yb, wb, m, M, n_first,
                                                      pool_threads, batch_sums + 2)
                            # sum|X|, and the first layer's sum|D| bounded before it
                            # exists (see unit_hand_off)
                            batch_sums[0] = 0
                            for i in range(n_first):
                                batch_sums[0] += fst.xsum[i]
                            batch_sums[1] = <double>sizes[1] * bounds[1] * batch_sums[3]
                    if one_pass:
                        batch_obj = narrow_batch(
                            &s, nwork, &params[0], Xb, Yb, wb,
                            NULL if not prepared else prep_base + (start // chunk) * block_bytes,
                            m, 1.0 / M, grads, parts)
                    elif n_first == 1:
                        n_row_parts = row_parts(&s, m, floating is float)
                    if n_first > 1:
                        pass
                    elif not one_pass and n_row_parts > 1:
                        if floating is float:
                            batch_obj = run_row_parts(&rows, Xb, Yb, wb, m, M, n_row_parts,
                                                      s.pool_threads, batch_sums)
                    elif not one_pass:
                        forward_batch(&s, &params[0], Xb, m, acts, NULL, zout, False)
                        batch_obj = data_loss_sum(&s, zout, acts + m * (s.per_row - n_out), Yb, wb, m)
                    batch_obj += penalty(&s, &params[0], l2, l1)
                    if not isfinite(batch_obj):
                        total = batch_obj
                        break
                    start += m
                    total += batch_obj
                    if one_pass and l2 != 0:
                        add_decay(&s, &params[0], grads, <floating>(l2 / M))
                    if fused:
                        # plain SGD: fused into backprop, or one pass over the
                        # gradient; keep the weights, and put them back if the
                        # step made any of them non-finite
                        if one_pass:
                            if not sgd_step(&params[0], grads, backup, lr, P):
                                total = INFINITY
                                break
                            continue
                        if n_first == 1 and n_row_parts == 1:
                            backward_deltas(&s, &params[0], Yb, wb, m, M, acts, deltas)
                            safe_sums(&s, Xb, m, 0, m, acts, deltas, batch_sums)
                        if sgd_safe(&s, m, floating is float, l2 / M, lr, bounds, batch_sums):
                            if floating is float:
                                if n_first > 1:
                                    fst.keep = 1 - lr * <float>(l2 / M)
                                    fmp_run(first_split_update, &fst, n_first, pool_threads)
                                    continue
                                if s.pool_threads > 1 and update_on_pool(&s, m):
                                    upd.X = Xb
                                    upd.m = m
                                    upd.lr = lr
                                    upd.keep = 1 - lr * <float>(l2 / M)
                                    fmp_run(update_block, &upd, n_update_blocks,
                                            s.pool_threads)
                                    continue
                            sgd_layers(&s, &params[0], Xb, m, acts, deltas,
                                       <floating>(l2 / M), lr, scratch)
                            continue
                        memcpy(backup, &params[0], P * sizeof(floating))
                        if n_first > 1:
                            if floating is float:
                                fst.keep = 1 - lr * <float>(l2 / M)
                                fmp_run(first_split_update, &fst, n_first, pool_threads)
                        else:
                            sgd_layers(&s, &params[0], Xb, m, acts, deltas, <floating>(l2 / M),
                                       lr, scratch)
                        if not params_finite(&params[0], P):
                            memcpy(&params[0], backup, P * sizeof(floating))
                            total = INFINITY
                            break
                        exact_bounds(&s, &params[0], bounds)
                        continue
                    if not one_pass:
                        backward_batch(&s, &params[0], Xb, Yb, wb, m, M, acts, deltas,
                                       grads, l2, n_row_parts > 1)
                    if l1 != 0:
                        add_l1_gradient(&s, &params[0], grads, <floating>(l1 / M))
                    gnorm = sq_norm(grads, P)
                    if not isfinite(gnorm):
                        total = INFINITY
                        break
                    if clip_norm > 0 and gnorm > clip_norm * clip_norm:
                        gnorm = clip_norm / sqrt(gnorm)
                        for i in range(P):
                            grads[i] = grads[i] * <floating>gnorm
                    if optimizer == OPT_ADAM:
                        t[0] += 1
                        apply_step(optimizer, &params[0], grads, state, P, learning_rate,
                                   momentum, nesterov, beta1, beta2, epsilon, t[0])
                    else:
                        apply_step(optimizer, &params[0], grads, state, P, learning_rate,
                                   momentum, nesterov, beta1, beta2, epsilon, 0)
                if halted:
                    break
                if not isfinite(total):
                    epoch_loss[e] = total
                    break
                epoch_loss[e] = total / W_total
                done += 1
    finally:
        threads_exit(before)
        free(acts)
        free(deltas)
        free(zout)
        free(grads)
        free(xbuf)
        free(ybuf)
        free(wbuf)
        free(scratch)
        free(backup)
        free(bounds)
        free(part_sums)
        free(zparts)
        free(unit_outs)
        free(first_sums)
        free(xalt)
        free(yalt)
        free(walt)
        free(nwork)
        free(prep)
    return done
