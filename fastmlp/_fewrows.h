/* Products with few rows (one-sample predict), split by column blocks over
 * the spinning threads of _pool.h.
 *
 * Why: predicting one row of a 784-256-128-10 network reads 0.94 MB of
 * weights to do 0.24 M multiply-adds: the time is the time to stream the
 * weights, and one core streams them from L3.  Split by columns over two
 * cores, each core reads its own half from its own L2 (512 KB on the
 * machine measured), call after call (the pool gives each thread the same
 * blocks from call to call).
 *
 * Results do not depend on the thread count: a column block is always
 * computed by the same code in the same order, whichever thread takes it.
 */
#ifndef FASTMLP_FEWROWS_H
#define FASTMLP_FEWROWS_H

#include "_vmath.h"
#include "_pool.h"

#define FMR_MAX_ROWS 4          /* products with at most this many rows */

/* ------------------------------------------------------------------ */
/* Column-block kernels: C[:, j0:j0+width] = A @ B[:, j0:j0+width]     */
/* A is M x K (M <= FMR_MAX_ROWS), B is K x N, all row-major.          */
/* ------------------------------------------------------------------ */

typedef double fmr_vec_d __attribute__((vector_size(32)));
typedef float fmr_vec_f __attribute__((vector_size(32)));

#define FMR_NV 8                /* vectors per block: the block width */

/* Rows of B ahead of the one being read whose block is prefetched.  The
 * hardware prefetchers follow the 1 KB stride of a 784-256 layer's rows
 * too late: one-sample layer 1 on two threads took 8.7-9.5 us without,
 * 7.1-7.2 us with 4 rows ahead (2 and 3 rows: 7.6-8.0, 16 rows: 7.7-8.9;
 * C loop, best of 3 x 20000 calls).  A prefetch past B's end is harmless. */
#define FMR_PREFETCH_ROWS 4
#define FMR_PREFETCH(row, ldb, bytes)                                            \
    do {                                                                         \
        const char *q_ = (const char *)((uintptr_t)(row)                         \
                                        + FMR_PREFETCH_ROWS * (ldb) * sizeof(*(row))); \
        int l_;                                                                  \
        for (l_ = 0; l_ < (bytes); l_ += 64)                                     \
            __builtin_prefetch(q_ + l_);                                         \
    } while (0)

#define FMR_STORE4(T, SUF, c, v0, v1, v2, v3)                                   \
    do {                                                                         \
        memcpy((c), &(v0), 32);                                                  \
        memcpy((c) + FMR_VL_##SUF, &(v1), 32);                                   \
        memcpy((c) + 2 * FMR_VL_##SUF, &(v2), 32);                               \
        memcpy((c) + 3 * FMR_VL_##SUF, &(v3), 32);                               \
    } while (0)

#define FMR_DEFINE_BLOCK(T, SUF)                                                 \
enum { FMR_VL_##SUF = 32 / sizeof(T), FMR_BW_##SUF = FMR_NV * (32 / sizeof(T)) }; \
                                                                                 \
FM_INLINE void fmr_half_block_##SUF(const int M, fm_idx K, const T *restrict A,  \
                                    fm_idx lda, const T *restrict B, fm_idx ldb, \
                                    T *restrict C, fm_idx ldc)                   \
{                                                                                \
    /* named accumulators (an array of them is spilled to the stack) */        \
    const fmr_vec_##SUF z = {0};                                                 \
    fmr_vec_##SUF c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, \
                  c13 = z, c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, \
                  c32 = z, c33 = z, b0, b1, b2, b3;                              \
    fm_idx p;                                                                    \
    for (p = 0; p < K; p++) {                                                    \
        const T *brow = B + p * ldb;                                             \
        T a;                                                                     \
        FMR_PREFETCH(brow, ldb, 4 * 32);                                         \
        memcpy(&b0, brow, 32);                                                   \
        memcpy(&b1, brow + FMR_VL_##SUF, 32);                                    \
        memcpy(&b2, brow + 2 * FMR_VL_##SUF, 32);                                \
        memcpy(&b3, brow + 3 * FMR_VL_##SUF, 32);                                \
        a = A[p];                                                                \
        c00 += a * b0; c01 += a * b1; c02 += a * b2; c03 += a * b3;              \
        if (M > 1) {                                                             \
            a = A[lda + p];                                                      \
            c10 += a * b0; c11 += a * b1; c12 += a * b2; c13 += a * b3;          \
        }                                                                        \
        if (M > 2) {                                                             \
            a = A[2 * lda + p];                                                  \
            c20 += a * b0; c21 += a * b1; c22 += a * b2; c23 += a * b3;          \
        }                                                                        \
        if (M > 3) {                                                             \
            a = A[3 * lda + p];                                                  \
            c30 += a * b0; c31 += a * b1; c32 += a * b2; c33 += a * b3;          \
        }                                                                        \
    }                                                                            \
    FMR_STORE4(T, SUF, C, c00, c01, c02, c03);                                   \
    if (M > 1) FMR_STORE4(T, SUF, C + ldc, c10, c11, c12, c13);                  \
    if (M > 2) FMR_STORE4(T, SUF, C + 2 * ldc, c20, c21, c22, c23);              \
    if (M > 3) FMR_STORE4(T, SUF, C + 3 * ldc, c30, c31, c32, c33);              \
}                                                                                \
                                                                                 \
/* one row: eight accumulators (eight chains of adds hide their latency) */   \
FM_INLINE void fmr_one_row_##SUF(fm_idx K, const T *restrict A,                  \
                                 const T *restrict B, fm_idx ldb, T *restrict C) \
{                                                                                \
    const fmr_vec_##SUF z = {0};                                                 \
    fmr_vec_##SUF c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z, c6 = z, c7 = z, b; \
    fm_idx p;                                                                    \
    for (p = 0; p < K; p++) {                                                    \
        const T *brow = B + p * ldb;                                             \
        T a = A[p];                                                              \
        FMR_PREFETCH(brow, ldb, 8 * 32);                                         \
        memcpy(&b, brow, 32); c0 += a * b;                                       \
        memcpy(&b, brow + FMR_VL_##SUF, 32); c1 += a * b;                        \
        memcpy(&b, brow + 2 * FMR_VL_##SUF, 32); c2 += a * b;                    \
        memcpy(&b, brow + 3 * FMR_VL_##SUF, 32); c3 += a * b;                    \
        memcpy(&b, brow + 4 * FMR_VL_##SUF, 32); c4 += a * b;                    \
        memcpy(&b, brow + 5 * FMR_VL_##SUF, 32); c5 += a * b;                    \
        memcpy(&b, brow + 6 * FMR_VL_##SUF, 32); c6 += a * b;                    \
        memcpy(&b, brow + 7 * FMR_VL_##SUF, 32); c7 += a * b;                    \
    }                                                                            \
    FMR_STORE4(T, SUF, C, c0, c1, c2, c3);                                       \
    FMR_STORE4(T, SUF, C + 4 * FMR_VL_##SUF, c4, c5, c6, c7);                    \
}                                                                                \
                                                                                 \
/* a full block of rows 2-4: two halves of four vectors (4 x 4 accumulators) */ \
FM_INLINE void fmr_full_block_##SUF(const int M, fm_idx K, const T *restrict A,  \
                                    fm_idx lda, const T *restrict B, fm_idx ldb, \
                                    T *restrict C, fm_idx ldc)                   \
{                                                                                \
    const fm_idx half = 4 * FMR_VL_##SUF;                                        \
    fmr_half_block_##SUF(M, K, A, lda, B, ldb, C, ldc);                          \
    fmr_half_block_##SUF(M, K, A, lda, B + half, ldb, C + half, ldc);            \
}                                                                                \
                                                                                 \
FM_CLONES static void fmr_block_##SUF(int M, fm_idx N, fm_idx K, const T *A,     \
                                      fm_idx lda, const T *B, fm_idx ldb, T *C,  \
                                      fm_idx ldc, fm_idx j0)                     \
{                                                                                \
    fm_idx width = N - j0 < FMR_BW_##SUF ? N - j0 : FMR_BW_##SUF, j, p;          \
    int r;                                                                       \
    if (width == FMR_BW_##SUF) {                                                 \
        /* constant row counts, so the accumulators live in registers */        \
        switch (M) {                                                             \
        case 1: fmr_one_row_##SUF(K, A, B + j0, ldb, C + j0); return;                \
        case 2: fmr_full_block_##SUF(2, K, A, lda, B + j0, ldb, C + j0, ldc); return; \
        case 3: fmr_full_block_##SUF(3, K, A, lda, B + j0, ldb, C + j0, ldc); return; \
        default: fmr_full_block_##SUF(4, K, A, lda, B + j0, ldb, C + j0, ldc); return; \
        }                                                                        \
    }                                                                            \
    for (r = 0; r < M; r++) {             /* the last, narrower block */         \
        T *restrict c = C + r * ldc + j0;                                        \
        for (j = 0; j < width; j++)                                              \
            c[j] = 0;                                                            \
        for (p = 0; p < K; p++) {                                                \
            T a = A[r * lda + p];                                                \
            const T *restrict brow = B + p * ldb + j0;                           \
            for (j = 0; j < width; j++)                                          \
                c[j] += a * brow[j];                                             \
        }                                                                        \
    }                                                                            \
}

FMR_DEFINE_BLOCK(double, d)
FMR_DEFINE_BLOCK(float, f)

/* ------------------------------------------------------------------ */
/* Blocks on the pool of _pool.h                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    int M, is_float;
    fm_idx N, K, lda, ldb, ldc;
    const void *A, *B;
    void *C;
} fmr_task;

static void fmr_run_block(void *arg, int block)
{
    const fmr_task *t = (const fmr_task *)arg;
    if (t->is_float)
        fmr_block_f(t->M, t->N, t->K, (const float *)t->A, t->lda, (const float *)t->B,
                    t->ldb, (float *)t->C, t->ldc, (fm_idx)block * FMR_BW_f);
    else
        fmr_block_d(t->M, t->N, t->K, (const double *)t->A, t->lda, (const double *)t->B,
                    t->ldb, (double *)t->C, t->ldc, (fm_idx)block * FMR_BW_d);
}

/* Columns per block for elements of `elsize` bytes. */
static inline fm_idx fmr_block_width(size_t elsize)
{
    return elsize == sizeof(float) ? FMR_BW_f : FMR_BW_d;
}

/* C = A @ B for row-major A (M x K, M <= FMR_MAX_ROWS), B (K x N) and
 * C (M x N), on up to `threads` threads (the caller included). */
static void fmr_product(int is_float, int M, fm_idx N, fm_idx K, const void *A, fm_idx lda,
                        const void *B, fm_idx ldb, void *C, fm_idx ldc, int threads)
{
    fmr_task t = {M, is_float, N, K, lda, ldb, ldc, A, B, C};
    fm_idx bw = fmr_block_width(is_float ? sizeof(float) : sizeof(double));
    fmp_run(fmr_run_block, &t, (int)((N + bw - 1) / bw), threads);
}

#endif
