/* Register-blocked row-major products for operands that sit in L1/L2, such
 * as a minibatch of 32 rows through a 64-128-10 network, where OpenBLAS
 * spends about 40% of its time packing operands (measured: digits,
 * 32x64 @ 64x128 takes 14 us in sgemm, 7 us here).
 *
 *   C = alpha * op(A) @ B + beta * C,   op(A) = A (ta 'N') or A^T (ta 'T'),
 *   A: M x K (or K x M), B: K x N, C: M x N, all row-major.
 *
 * Tiles of up to 4 rows by 2 vectors of columns: 8 accumulators, one load
 * of B per row of the tile's column panel, the A values broadcast.  The
 * columns left over (N not a multiple of 2 vectors) go through plain loops.
 * beta == 0 never reads C (NaN there does not leak through).
 */
#ifndef FASTMLP_GEMM_H
#define FASTMLP_GEMM_H

#include "_vmath.h"

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

#define FMG_DEFINE(T, SUF)                                                       \
enum { FMG_VL_##SUF = 32 / sizeof(T) };                                          \
                                                                                 \
/* R rows (1-4, a constant where inlined) by 2 vectors of columns; A's       \
 * element (row r, k) is at A[r * sr + k * sk]. */                              \
FM_INLINE void fmg_tile_##SUF(const int R, fm_idx K, T alpha, const T *restrict A, \
                              fm_idx sr, fm_idx sk, const T *restrict B,         \
                              fm_idx ldb, T beta, T *restrict C, fm_idx ldc)     \
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
    FMG_STORE(T, SUF, C, c00);                                                   \
    FMG_STORE(T, SUF, C + FMG_VL_##SUF, c01);                                    \
    if (R > 1) {                                                                 \
        FMG_STORE(T, SUF, C + ldc, c10);                                         \
        FMG_STORE(T, SUF, C + ldc + FMG_VL_##SUF, c11);                          \
    }                                                                            \
    if (R > 2) {                                                                 \
        FMG_STORE(T, SUF, C + 2 * ldc, c20);                                     \
        FMG_STORE(T, SUF, C + 2 * ldc + FMG_VL_##SUF, c21);                      \
    }                                                                            \
    if (R > 3) {                                                                 \
        FMG_STORE(T, SUF, C + 3 * ldc, c30);                                     \
        FMG_STORE(T, SUF, C + 3 * ldc + FMG_VL_##SUF, c31);                      \
    }                                                                            \
}                                                                                \
                                                                                 \
FM_CLONES static void fm_gemm_rb_##SUF(char ta, fm_idx M, fm_idx N, fm_idx K, T alpha, \
                                       const T *A, fm_idx lda, const T *B,       \
                                       fm_idx ldb, T beta, T *C, fm_idx ldc)     \
{                                                                                \
    const fm_idx W = 2 * FMG_VL_##SUF;                                           \
    const fm_idx sr = ta == 'N' ? lda : 1, sk = ta == 'N' ? 1 : lda;             \
    fm_idx i, j, jj, p;                                                          \
    for (j = 0; j + W <= N; j += W) {      /* column panel: stays in L1 */      \
        for (i = 0; i + 4 <= M; i += 4)                                          \
            fmg_tile_##SUF(4, K, alpha, A + i * sr, sr, sk, B + j, ldb, beta,    \
                           C + i * ldc + j, ldc);                                \
        switch (M - i) {                                                         \
        case 3: fmg_tile_##SUF(3, K, alpha, A + i * sr, sr, sk, B + j, ldb, beta, \
                               C + i * ldc + j, ldc); break;                     \
        case 2: fmg_tile_##SUF(2, K, alpha, A + i * sr, sr, sk, B + j, ldb, beta, \
                               C + i * ldc + j, ldc); break;                     \
        case 1: fmg_tile_##SUF(1, K, alpha, A + i * sr, sr, sk, B + j, ldb, beta, \
                               C + i * ldc + j, ldc); break;                     \
        default: break;                                                          \
        }                                                                        \
    }                                                                            \
    for (i = 0; i < M && j < N; i++) {     /* the columns left over */           \
        for (jj = j; jj < N; jj++) {                                             \
            T t = 0;                                                             \
            for (p = 0; p < K; p++)                                              \
                t += A[i * sr + p * sk] * B[p * ldb + jj];                       \
            C[i * ldc + jj] = beta != 0 ? alpha * t + beta * C[i * ldc + jj] : alpha * t; \
        }                                                                        \
    }                                                                            \
}

FMG_DEFINE(double, d)
FMG_DEFINE(float, f)

#endif
