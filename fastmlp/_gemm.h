/* Register-blocked row-major products for operands that sit in L1/L2, such
 * as a minibatch of 32 rows through a 64-128-10 network, where OpenBLAS
 * spends about 40% of its time packing operands (measured: digits,
 * 32x64 @ 64x128 takes 14 us in sgemm, 7 us here).
 *
 *   C = alpha * op(A) @ op(B) + beta * C,   op(X) = X ('N') or X^T ('T'),
 *   op(A): M x K, op(B): K x N, C: M x N, all row-major.
 *
 * Tiles of up to 4 rows by 2 vectors of columns: 8 accumulators, one load
 * of B per row of the tile's column panel, the A values broadcast.  A panel
 * of B that is not 2 whole vectors of contiguous columns (B transposed, or
 * the last N % 2V columns) is first copied, K_PACK rows at a time, into a
 * panel on the stack; its tiles store only the real columns.  (The last
 * columns are copied as whole vectors where that stays inside B: their
 * lanes past N read the next row, whose sums are never stored.  A copy of
 * a few elements a row cost 1.5 us a call in memcpy's start-up.)
 * beta == 0 never reads C (NaN there does not leak through).
 *
 * fm_gemm_rb splits the column panels over the pool of _pool.h; a column's
 * sums do not depend on the split, so neither do the results.
 */
#ifndef FASTMLP_GEMM_H
#define FASTMLP_GEMM_H

#include "_vmath.h"
#include "_pool.h"

typedef double fmg_vec_d __attribute__((vector_size(32)));
typedef float fmg_vec_f __attribute__((vector_size(32)));

#define FMG_STORE(T, SUF, c, acc)                                                \
    do {                                                                         \
        fmg_vec_##SUF out_ = alpha * (acc), old_;                                \
        if (beta != 0) {                                                         \
            memcpy(&old_, (c), 32);                                              \
            out_ += beta * old_;                                                 \
        }                                                                        \
        memcpy((c), &out_, 32);                                                  \
    } while (0)

/* the first n (< 1 vector) columns of a tile row */
#define FMG_STORE_PART(T, SUF, c, acc, n)                                        \
    do {                                                                         \
        fmg_vec_##SUF out_ = alpha * (acc);                                      \
        T part_[32 / sizeof(T)];                                                 \
        fm_idx q_;                                                               \
        memcpy(part_, &out_, 32);                                                \
        for (q_ = 0; q_ < (n); q_++)                                             \
            (c)[q_] = beta != 0 ? part_[q_] + beta * (c)[q_] : part_[q_];        \
    } while (0)

/* a tile row's 2 vectors, nc (1 to 2 vectors) columns of them real */
#define FMG_STORE_ROW(T, SUF, c, acc0, acc1, nc)                                 \
    do {                                                                         \
        if ((nc) == 2 * FMG_VL_##SUF) {                                          \
            FMG_STORE(T, SUF, c, acc0);                                          \
            FMG_STORE(T, SUF, (c) + FMG_VL_##SUF, acc1);                         \
        } else if ((nc) >= FMG_VL_##SUF) {                                       \
            FMG_STORE(T, SUF, c, acc0);                                          \
            FMG_STORE_PART(T, SUF, (c) + FMG_VL_##SUF, acc1, (nc) - FMG_VL_##SUF); \
        } else {                                                                 \
            FMG_STORE_PART(T, SUF, c, acc0, nc);                                 \
        }                                                                        \
    } while (0)

/* rows of B packed per panel (the panel is K_PACK x 2 vectors: 16 KB) */
#define FMG_K_PACK 256

#define FMG_DEFINE(T, SUF)                                                       \
enum { FMG_VL_##SUF = 32 / sizeof(T) };                                          \
                                                                                 \
/* R rows (1-4, a constant where inlined) by 2 vectors of columns, nc of     \
 * them stored; A's element (row r, k) is at A[r * sr + k * sk]. */             \
FM_INLINE void fmg_tile_##SUF(const int R, fm_idx K, T alpha, const T *restrict A, \
                              fm_idx sr, fm_idx sk, const T *restrict B,         \
                              fm_idx ldb, T beta, T *restrict C, fm_idx ldc,     \
                              const fm_idx nc)                                   \
{                                                                                \
    const fmg_vec_##SUF z = {0};                                                 \
    fmg_vec_##SUF c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, \
                  c31 = z, b0, b1;                                               \
    fm_idx p;                                                                    \
    for (p = 0; p < K; p++) {                                                    \
        const T *a = A + p * sk;                                                 \
        memcpy(&b0, B + p * ldb, 32);                                            \
        memcpy(&b1, B + p * ldb + FMG_VL_##SUF, 32);                             \
        c00 += a[0] * b0; c01 += a[0] * b1;                                      \
        if (R > 1) { c10 += a[sr] * b0; c11 += a[sr] * b1; }                     \
        if (R > 2) { c20 += a[2 * sr] * b0; c21 += a[2 * sr] * b1; }             \
        if (R > 3) { c30 += a[3 * sr] * b0; c31 += a[3 * sr] * b1; }             \
    }                                                                            \
    FMG_STORE_ROW(T, SUF, C, c00, c01, nc);                                      \
    if (R > 1)                                                                   \
        FMG_STORE_ROW(T, SUF, C + ldc, c10, c11, nc);                            \
    if (R > 2)                                                                   \
        FMG_STORE_ROW(T, SUF, C + 2 * ldc, c20, c21, nc);                        \
    if (R > 3)                                                                   \
        FMG_STORE_ROW(T, SUF, C + 3 * ldc, c30, c31, nc);                        \
}                                                                                \
                                                                                 \
/* every row of C against one panel of B (ldb apart, 2 vectors wide) */        \
FM_INLINE void fmg_panel_##SUF(fm_idx M, fm_idx K, T alpha, const T *A, fm_idx sr, \
                               fm_idx sk, const T *B, fm_idx ldb, T beta, T *C,  \
                               fm_idx ldc, const fm_idx nc)                      \
{                                                                                \
    fm_idx i;                                                                    \
    for (i = 0; i + 4 <= M; i += 4)                                              \
        fmg_tile_##SUF(4, K, alpha, A + i * sr, sr, sk, B, ldb, beta,            \
                       C + i * ldc, ldc, nc);                                    \
    switch (M - i) {                                                             \
    case 3: fmg_tile_##SUF(3, K, alpha, A + i * sr, sr, sk, B, ldb, beta,        \
                           C + i * ldc, ldc, nc); break;                         \
    case 2: fmg_tile_##SUF(2, K, alpha, A + i * sr, sr, sk, B, ldb, beta,        \
                           C + i * ldc, ldc, nc); break;                         \
    case 1: fmg_tile_##SUF(1, K, alpha, A + i * sr, sr, sk, B, ldb, beta,        \
                           C + i * ldc, ldc, nc); break;                         \
    default: break;                                                              \
    }                                                                            \
}                                                                                \
                                                                                 \
FM_CLONES static void fm_gemm_rb_##SUF(char ta, char tb, fm_idx M, fm_idx N,    \
                                       fm_idx K, T alpha, const T *A, fm_idx lda, \
                                       const T *B, fm_idx ldb, T beta, T *C,     \
                                       fm_idx ldc)                               \
{                                                                                \
    enum { W = 2 * FMG_VL_##SUF };                                               \
    T panel[FMG_K_PACK * W] __attribute__((aligned(32)));                        \
    const fm_idx sr = ta == 'N' ? lda : 1, sk = ta == 'N' ? 1 : lda;             \
    fm_idx j, k0, kc, p, q, nc;                                                  \
    for (j = 0; j < N; j += W) {           /* column panel: stays in L1 */      \
        nc = N - j < W ? N - j : W;                                              \
        if (tb == 'N' && nc == W) {                                              \
            fmg_panel_##SUF(M, K, alpha, A, sr, sk, B + j, ldb, beta, C + j, ldc, W); \
            continue;                                                            \
        }                                                                        \
        for (k0 = 0; k0 < K; k0 += FMG_K_PACK) {                                 \
            kc = K - k0 < FMG_K_PACK ? K - k0 : FMG_K_PACK;                      \
            if (tb == 'N') {                                                     \
                for (p = 0; p < kc; p++) {                                       \
                    const T *src = B + (k0 + p) * ldb + j;                       \
                    if (k0 + p < K - 1 && W - nc <= ldb) {                       \
                        /* whole vectors, still inside B (the lanes past nc  \
                         * read the next row; their sums are never stored) */  \
                        memcpy(panel + p * W, src, 32);                          \
                        memcpy(panel + p * W + FMG_VL_##SUF, src + FMG_VL_##SUF, 32); \
                    } else {                                                     \
                        for (q = 0; q < nc; q++)                                 \
                            panel[p * W + q] = src[q];                           \
                        for (; q < W; q++)                                       \
                            panel[p * W + q] = 0;                                \
                    }                                                            \
                }                                                                \
            } else {                                                             \
                if (nc < W)                                                      \
                    memset(panel, 0, sizeof(T) * (size_t)(kc * W));              \
                for (q = 0; q < nc; q++)                                         \
                    for (p = 0; p < kc; p++)                                     \
                        panel[p * W + q] = B[(j + q) * ldb + k0 + p];            \
            }                                                                    \
            fmg_panel_##SUF(M, kc, alpha, A + k0 * sk, sr, sk, panel, W,         \
                            k0 == 0 ? beta : (T)1, C + j, ldc, nc);              \
        }                                                                        \
    }                                                                            \
}

FMG_DEFINE(double, d)
FMG_DEFINE(float, f)

/* ------------------------------------------------------------------ */
/* Column panels on the pool of _pool.h                                */
/* ------------------------------------------------------------------ */

typedef struct {
    char ta, tb;
    int is_float;
    fm_idx M, N, K, lda, ldb, ldc;
    double alpha, beta;
    const void *A, *B;
    void *C;
} fmg_task;

/* Columns j..j+n-1 of the task's product. */
static void fmg_columns(const fmg_task *t, fm_idx j, fm_idx n)
{
    fm_idx b_off = t->tb == 'N' ? j : j * t->ldb;
    if (t->is_float)
        fm_gemm_rb_f(t->ta, t->tb, t->M, n, t->K, (float)t->alpha, (const float *)t->A,
                     t->lda, (const float *)t->B + b_off, t->ldb, (float)t->beta,
                     (float *)t->C + j, t->ldc);
    else
        fm_gemm_rb_d(t->ta, t->tb, t->M, n, t->K, t->alpha, (const double *)t->A,
                     t->lda, (const double *)t->B + b_off, t->ldb, t->beta,
                     (double *)t->C + j, t->ldc);
}

/* Pool block b: the b-th column panel. */
static void fmg_run_panel(void *arg, int block)
{
    const fmg_task *t = (const fmg_task *)arg;
    fm_idx w = t->is_float ? 2 * FMG_VL_f : 2 * FMG_VL_d, j = (fm_idx)block * w;
    fmg_columns(t, j, t->N - j < w ? t->N - j : w);
}

/* fm_gemm_rb_f/_d (alpha and beta exact in the element type) with the
 * column panels on up to `threads` threads, the caller included. */
static void fm_gemm_rb(int is_float, char ta, char tb, fm_idx M, fm_idx N, fm_idx K,
                       double alpha, const void *A, fm_idx lda, const void *B, fm_idx ldb,
                       double beta, void *C, fm_idx ldc, int threads)
{
    fmg_task t = {ta, tb, is_float, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    fm_idx w = is_float ? 2 * FMG_VL_f : 2 * FMG_VL_d;
    if (threads < 2)
        fmg_columns(&t, 0, N);
    else
        fmp_run(fmg_run_panel, &t, (int)((N + w - 1) / w), threads);
}

#endif
