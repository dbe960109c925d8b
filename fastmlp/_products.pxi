# Matrix products: C loops, register blocks (_gemm.h) or BLAS.
# Included by _kernels.pyx.

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
    of at least BLOCK_SPLIT_PRODUCT multiply-adds, and BLAS products split
    by :func:`gemm_split`).
    """
    if loop_product(M, N, K):
        gemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    elif not blas_product(floating is float, tb, M, N, K):
        gemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                     threads if <Py_ssize_t>M * N * K >= BLOCK_SPLIT_PRODUCT else 1)
    else:
        gemm_split(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads)


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
# BLAS products split over the pool
# --------------------------------------------------------------------------
# A kernel call that runs BLAS on one thread splits each big BLAS product into
# bands of C on fastmlp's pool, each band one one-thread BLAS call.  The pool
# claims blocks dynamically and notices a stalled or slowed worker (_pool.h),
# which BLAS's own threads do not: beside a busy core, a fit whose products
# BLAS threaded itself ran 1.7-6x slower on two threads than on one.  And the
# training duel can then run the same blocks on one thread (same results).

cdef struct SplitProduct:
    bint by_rows            # blocks are bands of C's rows (else of its columns)
    int step                # rows (columns) a block
    char ta, tb
    int M, N, K, lda, ldb, ldc
    double alpha, beta
    const void* A
    const void* B
    void* C


cdef void gemm_split(char ta, char tb, int M, int N, int K, floating alpha,
                     const floating* A, int lda, const floating* B, int ldb,
                     floating beta, floating* C, int ldc, int threads) noexcept nogil:
    """:func:`gemm_blas`, in bands of C of at least SPLIT_BLAS_MACS
    multiply-adds on up to ``threads`` of the pool when this call holds one
    BLAS thread and is not itself inside a pool block (else one BLAS call).
    The bands depend on the shape alone, not on ``threads``: results are the
    same on any number of threads."""
    cdef Py_ssize_t macs = <Py_ssize_t>M * N * K, blocks
    cdef int dim, align = 16 if floating is float else 8
    cdef SplitProduct t
    if macs < 2 * SPLIT_BLAS_MACS or not fm_blas_single_here() or fmp_inside_block():
        gemm_blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    t.by_rows = M >= N
    dim = M if t.by_rows else N
    blocks = min(SPLIT_BLAS_MAX_BLOCKS, macs // SPLIT_BLAS_MACS, (dim + align - 1) // align)
    t.step = <int>(((dim + blocks - 1) // blocks + align - 1) // align * align)
    blocks = (dim + t.step - 1) // t.step
    if blocks < 2:
        gemm_blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    t.ta, t.tb, t.M, t.N, t.K = ta, tb, M, N, K
    t.lda, t.ldb, t.ldc = lda, ldb, ldc
    t.alpha, t.beta = alpha, beta
    t.A, t.B, t.C = A, B, C
    fmp_run(split_product_block_f if floating is float else split_product_block_d,
            &t, <int>blocks, threads)


cdef void split_product_block_f(void* arg, int block) noexcept nogil:
    split_band(<SplitProduct*>arg, block, <float*>NULL)


cdef void split_product_block_d(void* arg, int block) noexcept nogil:
    split_band(<SplitProduct*>arg, block, <double*>NULL)


cdef inline void split_band(SplitProduct* t, int block, floating* dtype) noexcept nogil:
    """Band ``block`` of a :class:`SplitProduct` (``dtype``: its type only)."""
    cdef const floating* A = <const floating*>t.A
    cdef const floating* B = <const floating*>t.B
    cdef floating* C = <floating*>t.C
    cdef Py_ssize_t lo = <Py_ssize_t>block * t.step
    cdef int n
    if t.by_rows:
        n = <int>min(<Py_ssize_t>t.step, t.M - lo)
        gemm_blas(t.ta, t.tb, n, t.N, t.K, <floating>t.alpha,
                  A + (lo * t.lda if t.ta == c'N' else lo), t.lda, B, t.ldb,
                  <floating>t.beta, C + lo * t.ldc, t.ldc)
    else:
        n = <int>min(<Py_ssize_t>t.step, t.N - lo)
        gemm_blas(t.ta, t.tb, t.M, n, t.K, <floating>t.alpha, A, t.lda,
                  B + (lo if t.tb == c'N' else lo * t.ldb), t.ldb,
                  <floating>t.beta, C + lo, t.ldc)
