/* Vectorisable element-wise math for fastmlp's kernels.
 *
 * exp is computed by Cody-Waite range reduction and a Taylor polynomial
 * (degree 12 in double: < 2 ulp; degree 7 in float: < 2 ulp), with rounding
 * done by the 1.5*2^52 trick, so that gcc vectorises every loop here without
 * -ffast-math and without libmvec.  Inputs are clamped to the range where
 * the result is a normal number: exp(-1000) returns about 3e-308 (double) or
 * 1.6e-38 (float) instead of 0, an absolute difference below any tolerance.
 *
 * On x86-64 with gcc, each array function is compiled three times (AVX-512,
 * AVX2 and baseline) and the loader picks the best one for the CPU at run
 * time (target_clones), so a portable wheel still uses wide vectors.
 * Activation codes: 0 identity, 1 sigmoid, 2 tanh, 3 relu, 4 softmax,
 * 5 leaky_relu, 6 gelu, 7 softplus, 8 exp (an output's: Poisson regression).
 */
#ifndef FASTMLP_VMATH_H
#define FASTMLP_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FASTMLP_NO_CLONES)
#define FM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_CLONES
#endif

#if defined(__GNUC__)
#define FM_INLINE static inline __attribute__((always_inline))
#else
#define FM_INLINE static inline
#endif

typedef ptrdiff_t fm_idx;

/* e^x = scale * (1 + q) for x clamped to [-708, 709]: scale = 2^n, q = e^r - 1
 * with r = x - n ln2, |r| <= ln2 / 2 (fm_exp_d, and fm_expm1_neg_d, which
 * needs q apart from the 1). */
FM_INLINE double fm_exp_parts_d(double x, double *scale)
{
    const double shift = 0x1.8p52;
    double kd = x * 1.4426950408889634 + shift;
    uint64_t ki;
    memcpy(&ki, &kd, 8);
    double n = kd - shift;
    double r = x - n * 0.6931471803691238;       /* ln2 high part (exact in n*hi) */
    r = r - n * 1.9082149292705877e-10;          /* ln2 low part */
    /* Taylor to r^13, its terms past 1 summed in Estrin's scheme (5
     * dependent steps, not 13), 1 added by the caller (no rounding of 1 + r) */
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double t = r + r2 * (0.5 + r * (1.0 / 6.0));
    double p47 = (1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5040.0));
    double p8b = (1.0 / 40320.0 + r * (1.0 / 362880.0))
                 + r2 * (1.0 / 3628800.0 + r * (1.0 / 39916800.0));
    double p8d = p8b + r4 * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0));
    uint64_t bits = (ki + 1023u) << 52;
    memcpy(scale, &bits, 8);
    return (t + r4 * p47) + r8 * p8d;
}

FM_INLINE double fm_exp_d(double x)
{
    double scale, q;
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    q = fm_exp_parts_d(x, &scale);
    return (1.0 + q) * scale;
}

/* fm_exp_parts_d for float, x clamped to [-87, 88]. */
FM_INLINE float fm_exp_parts_f(float x, float *scale)
{
    const float shift = 0x1.8p23f;
    float kf = x * 1.44269504f + shift;
    uint32_t ki;
    memcpy(&ki, &kf, 4);
    float n = kf - shift;
    float r = x - n * 0.693145752f;              /* ln2 high part */
    r = r - n * 1.42860677e-06f;                 /* ln2 low part */
    /* Taylor to r^7, its terms past 1 summed in Estrin's scheme (4
     * dependent steps, not 7), 1 added by the caller.  For latency-bound
     * loops: an XOR fit (5000 epochs, one chunk) 678-681 -> 637-640 us, best
     * of 300 fits in each of 3 alternating processes.  Largest error of
     * fm_exp over [-87, 88]: 1.8 ulp (Horner's form: 1.3); the double
     * version's over [-708, 709]: 2.0 ulp (Horner's: 3.2). */
    float r2 = r * r, r4 = r2 * r2;
    float t = r + r2 * (0.5f + r * (1.0f / 6.0f));
    float p47 = (1.0f / 24.0f + r * (1.0f / 120.0f))
                + r2 * (1.0f / 720.0f + r * (1.0f / 5040.0f));
    uint32_t bits = (ki + 127u) << 23;
    memcpy(scale, &bits, 4);
    return t + r4 * p47;
}

FM_INLINE float fm_exp_f(float x)
{
    float scale, q;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    q = fm_exp_parts_f(x, &scale);
    return (1.0f + q) * scale;
}

/* e^x up to the type's overflow, +inf past it, for exp outputs (predict
 * returns e^z) and the Poisson loss: above fm_exp's clamp (709, 88 in
 * float), e^(x - 1) e. */
FM_INLINE double fm_exp_out_d(double x)
{
    int hi = x > 709.0;
    double e = fm_exp_d(hi ? x - 1.0 : x) * (hi ? 2.718281828459045 : 1.0);
    return x > 709.782712893384 ? INFINITY : e;
}

FM_INLINE float fm_exp_out_f(float x)
{
    int hi = x > 88.0f;
    float e = fm_exp_f(hi ? x - 1.0f : x) * (hi ? 2.71828183f : 1.0f);
    return x > 88.7228391f ? INFINITY : e;
}

/* e^x - 1 for x <= 0, without the cancellation of fm_exp(x) - 1 near 0: the
 * same reduction and polynomial as fm_exp, its terms past 1 (q = e^r - 1)
 * scaled as 2^n q + (2^n - 1), both exact for n = 0 (|x| < ln2 / 2). */
FM_INLINE double fm_expm1_neg_d(double x)
{
    double scale, q;
    x = x < -708.0 ? -708.0 : x;
    q = fm_exp_parts_d(x, &scale);
    return scale * q + (scale - 1.0);
}

FM_INLINE float fm_expm1_neg_f(float x)
{
    float scale, q;
    x = x < -87.0f ? -87.0f : x;
    q = fm_exp_parts_f(x, &scale);
    return scale * q + (scale - 1.0f);
}

/* tanh as vectorisable arithmetic (libm's tanh is a scalar call: an
 * 8-64-64-1 tanh step took 76 us against relu's 12): with u = e^(-2|x|) - 1
 * (fm_expm1_neg, in [-1, 0]), tanh|x| = -u / (2 + u) -- one exp-like
 * polynomial and one division, as sigmoid costs (the odd Taylor series
 * for small |x| beside it cost 1.7x sigmoid's time in a 10k-row predict).
 * At most 1 (the update guard's bounds count on it); NaN stays NaN, +-inf
 * gives +-1. */
FM_INLINE double fm_tanh_d(double x)
{
    double ax = x < 0 ? -x : x;
    double u = fm_expm1_neg_d(-2.0 * ax);
    double t = -u / (2.0 + u);
    t = t > 1.0 ? 1.0 : t;
    return x < 0 ? -t : t;
}

FM_INLINE float fm_tanh_f(float x)
{
    float ax = x < 0 ? -x : x;
    float u = fm_expm1_neg_f(-2.0f * ax);
    float t = -u / (2.0f + u);
    t = t > 1.0f ? 1.0f : t;
    return x < 0 ? -t : t;
}

/* log1p(u) for u in [0, 1] (atanh series after a range split at sqrt(2) - 1;
 * < 2 ulp), vectorisable: the data loss of sigmoid outputs needs
 * softplus(z) = max(z, 0) + log1p(exp(-|z|)), and so does the softplus
 * activation.  The float version stops the series at s^11 (|s| < 0.18). */
FM_INLINE double fm_log1p_unit(double u)
{
    int hi = u > 0.41421356237309503;
    double f = hi ? (u - 1.0) * 0.5 : u;          /* exact: no rounding of 1 + u */
    double s = f / (2.0 + f), s2 = s * s;
    double p = 1.0 / 21;
    p = p * s2 + 1.0 / 19; p = p * s2 + 1.0 / 17; p = p * s2 + 1.0 / 15;
    p = p * s2 + 1.0 / 13; p = p * s2 + 1.0 / 11; p = p * s2 + 1.0 / 9;
    p = p * s2 + 1.0 / 7; p = p * s2 + 1.0 / 5; p = p * s2 + 1.0 / 3;
    p = p * s2 + 1.0;
    return (hi ? 0.6931471805599453 : 0.0) + 2.0 * s * p;
}

FM_INLINE float fm_log1p_unit_f(float u)
{
    int hi = u > 0.414213562f;
    float f = hi ? (u - 1.0f) * 0.5f : u;
    float s = f / (2.0f + f), s2 = s * s;
    float p = 1.0f / 11;
    p = p * s2 + 1.0f / 9; p = p * s2 + 1.0f / 7; p = p * s2 + 1.0f / 5;
    p = p * s2 + 1.0f / 3; p = p * s2 + 1.0f;
    return (hi ? 0.693147181f : 0.0f) + 2.0f * s * p;
}

/* The hidden activations past relu, and their slopes, element by element
 * (inlined into the vectorised loops below and into _narrow_impl.h).
 *
 * leaky_relu: x for x > 0, else FM_LEAKY_SLOPE * x (PyTorch's default
 * negative_slope); slope 1 or FM_LEAKY_SLOPE, read from the output's sign
 * (an output of 0 gets FM_LEAKY_SLOPE, as relu's gets 0: PyTorch's choice).
 *
 * softplus: log(1 + e^x) = max(x, 0) + log1p(e^-|x|) (no overflow for any
 * x); its slope, the logistic function of x, from the output a:
 * 1 - e^-a, by its series a (1 - a/2 (1 - a/3 (...))) below 0.5 (where
 * 1 - e^-a would cancel), else directly.
 *
 * gelu: the tanh approximation x/2 (1 + tanh(u)), u = sqrt(2/pi) (x +
 * 0.044715 x^3) (PyTorch's GELU(approximate="tanh"), jax.nn.gelu's default),
 * written x sigma(2u) (sigma the logistic function: no cancellation of
 * 1 + tanh(u) for negative x), and 0 below -40.  The slope is not a
 * function of the output (gelu is not monotonic), so it is computed here
 * from x, beside the output: sigma(2u) + x sigma'(2u) 2u'(x); past |x| = 40
 * it is 1 or 0 (exactly so in both float types; the formula's x^2 could
 * overflow there). */
#define FM_LEAKY_SLOPE 0.01
#define FM_GELU_C 0.7978845608028654                    /* sqrt(2 / pi) */
#define FM_GELU_K 0.044715
#define FM_DEFINE_ACT_ELEMENTS(T, SUF, EXP, LOG1P_UNIT, SERIES)              \
FM_INLINE T fm_leaky_##SUF(T x)                                                 \
{                                                                               \
    return !(x <= 0) ? x : (T)FM_LEAKY_SLOPE * x;      /* NaN stays NaN */      \
}                                                                               \
FM_INLINE T fm_softplus_##SUF(T x)                                              \
{                                                                               \
    T ax = x < 0 ? -x : x;                                                      \
    return (x > 0 ? x : (T)0) + LOG1P_UNIT(EXP(-ax));                           \
}                                                                               \
FM_INLINE T fm_softplus_slope_##SUF(T a)                                        \
{                                                                               \
    T s = SERIES(T, a);                                                         \
    return a < (T)0.5 ? a * s : (T)1 - EXP(-a);                                 \
}                                                                               \
FM_INLINE T fm_gelu_q_##SUF(T x)            /* sigma(2u) */                      \
{                                                                               \
    T v = x * ((T)(2 * FM_GELU_C) + (T)(2 * FM_GELU_C * FM_GELU_K) * (x * x));  \
    return (T)1 / ((T)1 + EXP(-v));                                             \
}                                                                               \
FM_INLINE T fm_gelu_##SUF(T x)                                                  \
{                                                                               \
    return x < (T)-40 ? (T)0 : x * fm_gelu_q_##SUF(x);                          \
}                                                                               \
FM_INLINE T fm_gelu_slope_##SUF(T x)                                            \
{                                                                               \
    T q = fm_gelu_q_##SUF(x);                                                   \
    T dv = (T)(2 * FM_GELU_C) + (T)(6 * FM_GELU_C * FM_GELU_K) * (x * x);       \
    T s = q + x * (q * ((T)1 - q)) * dv;                                        \
    T far = x > 0 ? (T)1 : (T)0;                                                \
    return (x < (T)-40 || x > (T)40) ? far : s;                                 \
}
/* (1 - e^-a) / a for 0 <= a < 0.5: Horner's form of the series, to a^14 / 15!
 * in double (< 1e-18 left out), to a^7 / 8! in float (< 1e-8) */
#define FM_SP_STEP(T, a, s, n) (T)1 - a * (T)(1.0 / n) * (s)
#define FM_SOFTPLUS_SERIES_D(T, a)                                              \
    FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a,          \
    FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a,          \
    FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a,          \
    FM_SP_STEP(T, a, FM_SP_STEP(T, a, (T)1, 15), 14), 13), 12), 11), 10), 9), 8), \
    7), 6), 5), 4), 3), 2)
#define FM_SOFTPLUS_SERIES_F(T, a)                                              \
    FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a,          \
    FM_SP_STEP(T, a, FM_SP_STEP(T, a, FM_SP_STEP(T, a, (T)1, 8), 7), 6), 5), 4), 3), 2)
FM_DEFINE_ACT_ELEMENTS(double, d, fm_exp_d, fm_log1p_unit, FM_SOFTPLUS_SERIES_D)
FM_DEFINE_ACT_ELEMENTS(float, f, fm_exp_f, fm_log1p_unit_f, FM_SOFTPLUS_SERIES_F)

/* Activation in place over n contiguous values (any code but softmax);
 * for gelu, its slopes into S too unless S is NULL (see above). */
#define FM_DEFINE_ACT(T, SUF, EXP, TANH)                                        \
FM_INLINE void fm_act_flat_##SUF(T *restrict A, T *restrict S, fm_idx n, int act) \
{                                                                               \
    fm_idx i;                                                                   \
    if (act == 1) {                                                             \
        for (i = 0; i < n; i++) A[i] = (T)1 / ((T)1 + EXP(-A[i]));              \
    } else if (act == 2) {                                                      \
        for (i = 0; i < n; i++) A[i] = TANH(A[i]);                              \
    } else if (act == 3) {                                                      \
        for (i = 0; i < n; i++) A[i] = !(A[i] <= 0) ? A[i] : (T)0;   /* NaN stays NaN */                  \
    } else if (act == 5) {                                                      \
        for (i = 0; i < n; i++) A[i] = fm_leaky_##SUF(A[i]);                    \
    } else if (act == 6 && S) {                                                 \
        for (i = 0; i < n; i++) {                                               \
            S[i] = fm_gelu_slope_##SUF(A[i]);                                   \
            A[i] = fm_gelu_##SUF(A[i]);                                         \
        }                                                                       \
    } else if (act == 6) {                                                      \
        for (i = 0; i < n; i++) A[i] = fm_gelu_##SUF(A[i]);                     \
    } else if (act == 7) {                                                      \
        for (i = 0; i < n; i++) A[i] = fm_softplus_##SUF(A[i]);                 \
    } else if (act == 8) {                                                      \
        for (i = 0; i < n; i++) A[i] = fm_exp_out_##SUF(A[i]);                  \
    }                                                                           \
}

/* A = act(A + b) for an m x k row-major block (b broadcast over rows); for
 * gelu also S = act'(A + b) (the same layout) unless S is NULL.  Wide rows are done in one fused pass per row; narrow ones (k < 16, too
 * short to fill a vector) get the bias per row, then one flat pass. */
#define FM_DEFINE_BIAS_ACT(T, SUF, EXP, TANH)                                   \
FM_DEFINE_ACT(T, SUF, EXP, TANH)                                                \
/* Softmax of n rows of k values after the bias, each row's exponentials in   \
 * one flat loop over the n rows: narrow rows (k < 16, too short for a         \
 * vector) go 64 to a call (softmax of 32 x 10: 0.63 -> 0.36 us, the same      \
 * values as row by row). */                                                   \
FM_INLINE void fm_softmax_rows_##SUF(T *restrict blk, const T *restrict b,      \
                                     fm_idx n, fm_idx k)                        \
{                                                                               \
    fm_idx i, j, t;                                                             \
    for (i = 0; i < n; i++) {                                                   \
        T *restrict row = blk + i * k;                                          \
        T mx;                                                                   \
        for (j = 0; j < k; j++)                                                 \
            row[j] += b[j];                                                     \
        mx = row[0];                                                            \
        for (j = 1; j < k; j++)                                                 \
            mx = row[j] > mx ? row[j] : mx;                                     \
        for (j = 0; j < k; j++)                                                 \
            row[j] -= mx;                                                       \
    }                                                                           \
    for (t = 0; t < n * k; t++)                                                 \
        blk[t] = EXP(blk[t]);                                                   \
    for (i = 0; i < n; i++) {                                                   \
        T *restrict row = blk + i * k;                                          \
        T s = 0;                                                                \
        for (j = 0; j < k; j++)                                                 \
            s += row[j];                                                        \
        s = (T)1 / s;                                                           \
        for (j = 0; j < k; j++)                                                 \
            row[j] *= s;                                                        \
    }                                                                           \
}                                                                               \
                                                                                \
FM_CLONES static void fm_bias_act_##SUF(T *restrict A, const T *restrict b,     \
                                        fm_idx m, fm_idx k, int act,            \
                                        T *restrict S)                          \
{                                                                               \
    fm_idx i, j;                                                                \
    if (act == 4) {                                                             \
        if (k < 16) {           /* 64 rows to a block (see above) */            \
            for (i = 0; i < m; i += 64)                                         \
                fm_softmax_rows_##SUF(A + i * k, b, m - i < 64 ? m - i : 64, k); \
        } else {                                                                \
            for (i = 0; i < m; i++)                                             \
                fm_softmax_rows_##SUF(A + i * k, b, 1, k);                      \
        }                                                                       \
        return;                                                                 \
    }                                                                           \
    if (k < 16 || act == 0) {                                                   \
        for (i = 0; i < m; i++)                                                 \
            for (j = 0; j < k; j++)                                             \
                A[i * k + j] += b[j];                                           \
        fm_act_flat_##SUF(A, S, m * k, act);                                    \
        return;                                                                 \
    }                                                                           \
    for (i = 0; i < m; i++) {                                                   \
        T *restrict row = A + i * k;                                            \
        if (act == 1) {                                                         \
            for (j = 0; j < k; j++)                                             \
                row[j] = (T)1 / ((T)1 + EXP(-(row[j] + b[j])));                 \
        } else if (act == 2) {                                                  \
            for (j = 0; j < k; j++)                                             \
                row[j] = TANH(row[j] + b[j]);                                   \
        } else if (act == 5) {                                                  \
            for (j = 0; j < k; j++)                                             \
                row[j] = fm_leaky_##SUF(row[j] + b[j]);                         \
        } else if (act == 6 && S) {                                             \
            T *restrict srow = S + i * k;                                       \
            for (j = 0; j < k; j++) {                                           \
                T z = row[j] + b[j];                                            \
                srow[j] = fm_gelu_slope_##SUF(z);                               \
                row[j] = fm_gelu_##SUF(z);                                      \
            }                                                                   \
        } else if (act == 6) {                                                  \
            for (j = 0; j < k; j++)                                             \
                row[j] = fm_gelu_##SUF(row[j] + b[j]);                          \
        } else if (act == 7) {                                                  \
            for (j = 0; j < k; j++)                                             \
                row[j] = fm_softplus_##SUF(row[j] + b[j]);                      \
        } else if (act == 8) {                                                  \
            for (j = 0; j < k; j++)                                             \
                row[j] = fm_exp_out_##SUF(row[j] + b[j]);                       \
        } else {                                                                \
            for (j = 0; j < k; j++) {                                           \
                T z = row[j] + b[j];                                            \
                row[j] = !(z <= 0) ? z : (T)0;                                  \
            }                                                                   \
        }                                                                       \
    }                                                                           \
}

/* Small row-major products C = alpha * op(A) op(B) + beta * C, as plain loops
 * for the sizes where a BLAS call costs more than the arithmetic, and rank-1
 * products (K == 1: a batch-1 step's weight gradient) of any size: cloned
 * like the rest (inlined into the Cython code, which is built for the
 * baseline ISA, a 100x128 outer product took ~13 instructions a value). */
#define FM_DEFINE_SMALL_GEMM(T, SUF)                                            \
FM_CLONES static void fm_small_gemm_##SUF(char ta, char tb, fm_idx M, fm_idx N, fm_idx K, \
                                T alpha, const T *restrict A, fm_idx lda,       \
                                const T *restrict B, fm_idx ldb, T beta,        \
                                T *restrict C, fm_idx ldc)                      \
{                                                                               \
    fm_idx i, j, p;                                                             \
    if (beta == 0 && K == 1) {    /* an outer product: C written once, not zeroed first */ \
        const fm_idx sa = ta == 'N' ? lda : 1, sb = tb == 'N' ? 1 : ldb;        \
        for (i = 0; i < M; i++) {                                               \
            T a = alpha * A[i * sa];                                            \
            T *restrict c = C + i * ldc;                                        \
            for (j = 0; j < N; j++) c[j] = a * B[j * sb];                       \
        }                                                                       \
        return;                                                                 \
    }                                                                           \
    if (beta == 0 && ldc == N && M * N > 64) {                                  \
        memset(C, 0, (size_t)(M * N) * sizeof(T));    /* one call, not one a row */ \
    } else if (beta != 1) {                                                     \
        for (i = 0; i < M; i++) {                                               \
            T *restrict c = C + i * ldc;                                        \
            if (beta == 0) { for (j = 0; j < N; j++) c[j] = 0; }                \
            else { for (j = 0; j < N; j++) c[j] *= beta; }                      \
        }                                                                       \
    }                                                                           \
    if (ta == 'N' && tb == 'N') {                                               \
        for (i = 0; i < M; i++) {                                               \
            T *restrict c = C + i * ldc;                                        \
            for (p = 0; p < K; p++) {                                           \
                T a = alpha * A[i * lda + p];                                   \
                const T *restrict brow = B + p * ldb;                           \
                for (j = 0; j < N; j++) c[j] += a * brow[j];                    \
            }                                                                   \
        }                                                                       \
    } else if (ta == 'T' && tb == 'N') {                                        \
        for (p = 0; p < K; p++) {                                               \
            const T *restrict arow = A + p * lda;                               \
            const T *restrict brow = B + p * ldb;                               \
            for (i = 0; i < M; i++) {                                           \
                T a = alpha * arow[i];                                          \
                T *restrict c = C + i * ldc;                                    \
                for (j = 0; j < N; j++) c[j] += a * brow[j];                    \
            }                                                                   \
        }                                                                       \
    } else if (ta == 'N' && tb == 'T' && K > 2) {                               \
        for (i = 0; i < M; i++) {                                               \
            const T *restrict arow = A + i * lda;                               \
            T *restrict c = C + i * ldc;                                        \
            for (j = 0; j < N; j++) {                                           \
                const T *restrict bcol = B + j * ldb;                           \
                T t = 0, acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                     \
                int r;                                                          \
                /* eight independent sums: vector lanes without reordering */  \
                for (p = 0; p + 8 <= K; p += 8)                                 \
                    for (r = 0; r < 8; r++) acc[r] += arow[p + r] * bcol[p + r]; \
                for (r = 0; r < 8; r++) t += acc[r];                            \
                for (; p < K; p++) t += arow[p] * bcol[p];                      \
                c[j] += alpha * t;                                              \
            }                                                                   \
        }                                                                       \
    } else if (ta == 'N') {               /* N, T with K <= 2: rank-1 updates */ \
        for (i = 0; i < M; i++) {                                               \
            T *restrict c = C + i * ldc;                                        \
            for (p = 0; p < K; p++) {                                           \
                T a = alpha * A[i * lda + p];                                   \
                for (j = 0; j < N; j++) c[j] += a * B[j * ldb + p];             \
            }                                                                   \
        }                                                                       \
    } else {                                                                    \
        for (i = 0; i < M; i++) {                                               \
            T *restrict c = C + i * ldc;                                        \
            for (p = 0; p < K; p++) {                                           \
                T a = alpha * A[p * lda + i];                                   \
                for (j = 0; j < N; j++) c[j] += a * B[j * ldb + p];             \
            }                                                                   \
        }                                                                       \
    }                                                                           \
}

/* D *= f'(z) over n values, written through the activations A = f(z), or
 * for gelu through its slopes (A = f'(z): fm_bias_act's S). */
#define FM_DEFINE_DACT(T, SUF)                                                  \
FM_CLONES static void fm_times_dact_##SUF(T *D, const T *A, fm_idx n, int act)  \
{                                                                               \
    fm_idx i;                                                                   \
    if (act == 1) {                                                             \
        for (i = 0; i < n; i++) D[i] *= A[i] * ((T)1 - A[i]);                   \
    } else if (act == 2) {                                                      \
        for (i = 0; i < n; i++) D[i] *= (T)1 - A[i] * A[i];                     \
    } else if (act == 3) {                                                      \
        for (i = 0; i < n; i++) D[i] = A[i] > 0 ? D[i] : (T)0;                  \
    } else if (act == 5) {                                                      \
        for (i = 0; i < n; i++) D[i] *= A[i] > 0 ? (T)1 : (T)FM_LEAKY_SLOPE;    \
    } else if (act == 6) {                                                      \
        for (i = 0; i < n; i++) D[i] *= A[i];                                   \
    } else if (act == 7) {                                                      \
        for (i = 0; i < n; i++) D[i] *= fm_softplus_slope_##SUF(A[i]);          \
    }                                                                           \
}

/* Column sums of an m x k block into out (overwritten).  Narrow blocks
 * (k < 8, too short for a vector) are summed 8 rows at a time as flat
 * vectors of 8k values, then folded. */
#define FM_DEFINE_COLSUM(T, SUF)                                                \
FM_INLINE void fm_colsum_rows_##SUF(const T *restrict D, fm_idx m, fm_idx k,    \
                                    fm_idx ld, T *restrict out)                 \
{                                                                               \
    fm_idx i, j;                                                                \
    for (j = 0; j < k; j++) out[j] = 0;                                         \
    for (i = 0; i < m; i++)                                                     \
        for (j = 0; j < k; j++) out[j] += D[i * ld + j];                        \
}                                                                               \
                                                                                \
FM_CLONES static void fm_colsum_##SUF(const T *restrict D, fm_idx m, fm_idx k,  \
                                      T *restrict out)                          \
{                                                                               \
    fm_idx i, j, t;                                                             \
    if (k < 8 && m >= 32) {                                                     \
        for (j = 0; j < k; j++) out[j] = 0;                                     \
        T acc[64];                                                              \
        fm_idx L = 8 * k, blocks = m / 8, r;                                    \
        for (t = 0; t < L; t++) acc[t] = 0;                                     \
        for (i = 0; i < blocks; i++) {                                          \
            const T *restrict blk = D + i * L;                                  \
            for (t = 0; t < L; t++) acc[t] += blk[t];                           \
        }                                                                       \
        for (r = 0; r < 8; r++)                                                 \
            for (j = 0; j < k; j++) out[j] += acc[r * k + j];                   \
        for (i = blocks * 8; i < m; i++)                                        \
            for (j = 0; j < k; j++) out[j] += D[i * k + j];                     \
        return;                                                                 \
    }                                                                           \
    fm_colsum_rows_##SUF(D, m, k, k, out);                                      \
}

FM_DEFINE_BIAS_ACT(double, d, fm_exp_d, fm_tanh_d)
FM_DEFINE_BIAS_ACT(float, f, fm_exp_f, fm_tanh_f)
FM_DEFINE_DACT(double, d)
FM_DEFINE_DACT(float, f)
FM_DEFINE_COLSUM(double, d)
FM_DEFINE_COLSUM(float, f)

/* Column sums of k columns of an m-row block whose rows are ld apart, each
 * summed row by row: the values fm_colsum_f gives a block of k >= 8 columns. */
FM_CLONES static void fm_colsum_ld_f(const float *restrict D, fm_idx m, fm_idx k, fm_idx ld,
                                     float *restrict out)
{
    fm_colsum_rows_f(D, m, k, ld, out);
}
FM_DEFINE_SMALL_GEMM(double, d)
FM_DEFINE_SMALL_GEMM(float, f)

/* Sum over n = m * k logits z of a loss of each logit and its target y,
 * ELEM(z, y) in double, optionally weighted per row of k values,
 * accumulated in double. */
#define FM_DEFINE_ELEMENT_LOSS(NAME, ELEM, T, SUF)                              \
FM_CLONES static double NAME##_##SUF(const T *restrict z, const T *restrict y,  \
                                     const T *restrict w, fm_idx m, fm_idx k)   \
{                                                                               \
    fm_idx i, j;                                                                \
    double total = 0;                                                           \
    if (w == 0) {                                                               \
        for (i = 0; i < m * k; i++)                                             \
            total += ELEM((double)z[i], (double)y[i]);                          \
        return total;                                                           \
    }                                                                           \
    for (i = 0; i < m; i++) {                                                   \
        double row = 0;                                                         \
        for (j = 0; j < k; j++)                                                 \
            row += ELEM((double)z[i * k + j], (double)y[i * k + j]);            \
        total += (double)w[i] * row;                                            \
    }                                                                           \
    return total;                                                               \
}

/* Binary cross-entropy from a logit: softplus(z) - y z. */
FM_INLINE double fm_bce_elem(double z, double y)
{
    double a = z > 0 ? z : -z;
    return (z > 0 ? z : 0.0) + fm_log1p_unit(fm_exp_d(-a)) - y * z;
}
FM_DEFINE_ELEMENT_LOSS(fm_bce_sum, fm_bce_elem, double, d)
FM_DEFINE_ELEMENT_LOSS(fm_bce_sum, fm_bce_elem, float, f)

/* x = 2^e f with f in [1, 2), for x > 0 normal: returns f, e into *e.  The
 * exponent is read from the bits as a double (2^52 + e + 1023, minus the
 * offset): AVX2 has no int64 -> double conversion. */
FM_INLINE double fm_frexp1(double x, double *e)
{
    double f;
    uint64_t bits, fbits, ebits;
    memcpy(&bits, &x, sizeof bits);
    fbits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;   /* [1, 2) */
    ebits = (bits >> 52) | 0x4330000000000000ULL;                     /* 2^52 + e + 1023 */
    memcpy(&f, &fbits, sizeof f);
    memcpy(e, &ebits, sizeof *e);
    *e -= 4503599627371519.0;                                          /* 2^52 + 1023 */
    return f;
}

/* log1p(s) for s >= 0 (NaN and infinity pass through), vectorisable:
 * 1 + s = 2^e (1 + u) with u in [0, 1) (u = s itself when e = 0, no
 * rounding of 1 + s), so log1p(s) = e ln 2 + log1p(u). */
FM_INLINE double fm_log1p_pos(double s)
{
    double e, f = fm_frexp1(1.0 + s, &e);
    f = e == 0 ? s : f - 1.0;
    f = e * 0.6931471805599453 + fm_log1p_unit(f);
    return s <= 1.7976931348623157e308 ? f : s;
}

/* y log y for y >= 0 (0 at 0, its limit), vectorisable: y = 2^e f with f in
 * [1, 2), so log y = e ln 2 + log1p(f - 1).  A subnormal y gets a wrong
 * exponent, and y log y is then below 1e-305 either way. */
FM_INLINE double fm_xlogx(double y)
{
    double e, f = fm_frexp1(y, &e);
    f = y * (e * 0.6931471805599453 + fm_log1p_unit(f - 1.0));
    return y > 0 ? f : 0.0;
}

/* The half Poisson deviance of a log-rate logit z and its count y:
 * y log(y / e^z) - y + e^z = e^z - y z + (y log y - y) (0 for a perfect
 * prediction, as scikit-learn's loss), in double (e^z too: no float32
 * rounding of the rate). */
FM_INLINE double fm_poisson_elem(double z, double y)
{
    return fm_exp_out_d(z) - y * z + (fm_xlogx(y) - y);
}
FM_DEFINE_ELEMENT_LOSS(fm_poisson_sum, fm_poisson_elem, double, d)
FM_DEFINE_ELEMENT_LOSS(fm_poisson_sum, fm_poisson_elem, float, f)

/* Sum over m rows of the categorical cross-entropy sum_j y_j (lse - z_j) of
 * logits z, from them and their softmax outputs p (each m x k row-major),
 * rows optionally weighted, accumulated in double: lse = z_max + log1p(S),
 * S the sum of the other outputs over the largest (p_j / p_max =
 * exp(z_j - z_max): no exp per value; stable for any logits).  The log1p
 * of a block of rows is one vectorised loop. */
#define FM_XENT_ROWS 64
#define FM_DEFINE_XENT(T, SUF)                                                  \
FM_CLONES static double fm_softmax_xent_sum_##SUF(const T *restrict z, const T *restrict p, \
                                                  const T *restrict y, const T *restrict w, \
                                                  fm_idx m, fm_idx k)           \
{                                                                               \
    double total = 0, lse[FM_XENT_ROWS], ysum[FM_XENT_ROWS], part[FM_XENT_ROWS]; \
    fm_idx i0, i, j, n;                                                         \
    for (i0 = 0; i0 < m; i0 += FM_XENT_ROWS) {                                  \
        n = m - i0 < FM_XENT_ROWS ? m - i0 : FM_XENT_ROWS;                      \
        for (i = 0; i < n; i++) {                                               \
            const T *zr = z + (i0 + i) * k, *pr = p + (i0 + i) * k, *yr = y + (i0 + i) * k; \
            fm_idx jm = 0;                                                      \
            double others = 0, ys = 0, yd = 0, mx;                              \
            for (j = 1; j < k; j++)                                             \
                jm = zr[j] > zr[jm] ? j : jm;                                   \
            mx = zr[jm];                                                        \
            for (j = 0; j < k; j++) {                                           \
                others += j != jm ? (double)pr[j] : 0.0;                        \
                ys += (double)yr[j];                                            \
                yd += (double)yr[j] * (mx - (double)zr[j]);                     \
            }                                                                   \
            lse[i] = others / (double)pr[jm];                                   \
            ysum[i] = ys;                                                       \
            part[i] = yd;                                                       \
        }                                                                       \
        for (i = 0; i < n; i++)                                                 \
            lse[i] = fm_log1p_pos(lse[i]);                                      \
        for (i = 0; i < n; i++) {                                               \
            double row = part[i] + ysum[i] * lse[i];                            \
            total += w == 0 ? row : (double)w[i0 + i] * row;                    \
        }                                                                       \
    }                                                                           \
    return total;                                                               \
}
FM_DEFINE_XENT(double, d)
FM_DEFINE_XENT(float, f)

/* The output layer of a softmax + log-loss network with k <= 16 outputs, for
 * m rows whose logits are the sum of `parts` partial products (part q's m x k
 * row-major block at zp + q * zstride, added in order) plus the bias b:
 * writes the output deltas D = ((sum_j y_j) p - y) * w_i * inv_M (w NULL:
 * unit weights) and returns the weighted log-loss sum.  The arithmetic is
 * that of the parts' sum, fm_bias_act's softmax, fm_softmax_xent_sum and the
 * row-wise delta (the same sum, bit for bit; a delta's multiply-subtract may
 * round once, fused).  Rows go FM_NARROW_ROWS at a time through a transposed
 * copy, so that every loop runs over rows, a vector at a time: row by row,
 * each row's max, sums and argmax wait on chains of k steps.  A digits
 * step's part (32 x 10, two parts) spent 1.48 us on its outputs with those
 * passes, 0.83 us with this one (0.69 us of it here).  NaN logits give a
 * NaN sum. */
#define FM_NARROW_ROWS 32
FM_CLONES static double fm_softmax_xent_delta_f(const float *restrict zp, fm_idx parts,
                                                fm_idx zstride, const float *restrict b,
                                                const float *restrict y,
                                                const float *restrict w, fm_idx m,
                                                fm_idx k, double inv_M, float *restrict D)
{
    enum { R = FM_NARROW_ROWS };
    float zsum[16 * R], zt[16][R], et[16][R], yt[16][R], mx[R], inv[R], pm[R], ys[R], c[R];
    double others[R], ysd[R], yd[R];
    int jm[R];
    double total = 0;
    fm_idx i0, n, r, j, q;
    for (i0 = 0; i0 < m; i0 += R) {
        n = m - i0 < R ? m - i0 : R;
        for (r = 0; r < n * k; r++)
            zsum[r] = zp[i0 * k + r];
        for (q = 1; q < parts; q++)
            for (r = 0; r < n * k; r++)
                zsum[r] += zp[q * zstride + i0 * k + r];
        for (r = 0; r < n; r++)
            for (j = 0; j < k; j++) {
                zt[j][r] = zsum[r * k + j] + b[j];
                yt[j][r] = y[(i0 + r) * k + j];
            }
        for (; r < R; r++)
            for (j = 0; j < k; j++)
                zt[j][r] = yt[j][r] = 0;
        for (r = 0; r < R; r++) {
            mx[r] = zt[0][r];
            jm[r] = 0;
        }
        for (j = 1; j < k; j++)
            for (r = 0; r < R; r++) {
                float v = zt[j][r];
                jm[r] = v > mx[r] ? (int)j : jm[r];
                mx[r] = v > mx[r] ? v : mx[r];
            }
        for (j = 0; j < k; j++)
            for (r = 0; r < R; r++)
                et[j][r] = fm_exp_f(zt[j][r] - mx[r]);
        for (r = 0; r < R; r++)
            inv[r] = 0;
        for (j = 0; j < k; j++)
            for (r = 0; r < R; r++)
                inv[r] += et[j][r];
        for (r = 0; r < R; r++) {
            inv[r] = 1.0f / inv[r];
            pm[r] = 0;
            ys[r] = 0;
            others[r] = ysd[r] = yd[r] = 0;
            c[r] = (float)(w == 0 ? inv_M : (double)w[i0 + (r < n ? r : 0)] * inv_M);
        }
        for (j = 0; j < k; j++)
            for (r = 0; r < R; r++) {
                float p = et[j][r] * inv[r], t = yt[j][r];
                et[j][r] = p;
                pm[r] = jm[r] == j ? p : pm[r];
                others[r] += jm[r] != j ? (double)p : 0.0;
                ys[r] = ys[r] + t;
                ysd[r] += (double)t;
                yd[r] += (double)t * ((double)mx[r] - (double)zt[j][r]);
            }
        for (r = 0; r < R; r++)
            others[r] = fm_log1p_pos(others[r] / (double)pm[r]);
        for (r = 0; r < n; r++) {
            double row = yd[r] + ysd[r] * others[r];
            total += w == 0 ? row : (double)w[i0 + r] * row;
        }
        for (j = 0; j < k; j++)
            for (r = 0; r < R; r++)
                et[j][r] = (ys[r] * et[j][r] - yt[j][r]) * c[r];
        for (r = 0; r < n; r++)
            for (j = 0; j < k; j++)
                D[(i0 + r) * k + j] = et[j][r];
    }
    return total;
}

/* 1 when all n values are finite: x - x is 0 for finite x, NaN otherwise;
 * an integer OR reduction, which vectorises. */
#define FM_DEFINE_ALL_FINITE(T, SUF)                                            \
FM_CLONES static int fm_all_finite_##SUF(const T *restrict x, fm_idx n)         \
{                                                                               \
    fm_idx i;                                                                   \
    int bad = 0;                                                                \
    for (i = 0; i < n; i++) bad |= !(x[i] - x[i] == 0);                         \
    return !bad;                                                                \
}
FM_DEFINE_ALL_FINITE(double, d)
FM_DEFINE_ALL_FINITE(float, f)

/* sum(|x|) over n values, in 16 running sums of T (which vectorise); NaN or
 * inf in x, or a running sum past T's range, give a non-finite result.  For
 * bounds: its rounding error (a few n * eps relative) is the caller's margin. */
#define FM_DEFINE_ABS_SUM(T, SUF)                                               \
FM_CLONES static double fm_abs_sum_##SUF(const T *restrict x, fm_idx n)         \
{                                                                               \
    T acc[16] = {0};                                                            \
    double total = 0;                                                           \
    fm_idx i = 0;                                                               \
    int j;                                                                      \
    for (; i + 16 <= n; i += 16)                                                \
        for (j = 0; j < 16; j++) acc[j] += x[i + j] < 0 ? -x[i + j] : x[i + j]; \
    for (; i < n; i++) total += x[i] < 0 ? -x[i] : x[i];                        \
    for (j = 0; j < 16; j++) total += acc[j];                                   \
    return total;                                                               \
}
FM_DEFINE_ABS_SUM(double, d)
FM_DEFINE_ABS_SUM(float, f)

/* max(|x|) over n values (16 running maxima, which vectorise); NaN when a
 * value is not finite. */
#define FM_DEFINE_ABS_MAX(T, SUF)                                               \
FM_CLONES static double fm_abs_max_##SUF(const T *restrict x, fm_idx n)         \
{                                                                               \
    T acc[16] = {0}, a;                                                         \
    double big = 0;                                                             \
    fm_idx i = 0;                                                               \
    int j, bad = 0;                                                             \
    for (; i + 16 <= n; i += 16)                                                \
        for (j = 0; j < 16; j++) {                                              \
            a = x[i + j] < 0 ? -x[i + j] : x[i + j];                            \
            acc[j] = acc[j] > a ? acc[j] : a;                                   \
            bad |= !(a - a == 0);                                               \
        }                                                                       \
    for (; i < n; i++) {                                                        \
        a = x[i] < 0 ? -x[i] : x[i];                                            \
        big = big > a ? big : a;                                                \
        bad |= !(a - a == 0);                                                   \
    }                                                                           \
    for (j = 0; j < 16; j++) big = big > acc[j] ? big : acc[j];                 \
    return bad ? NAN : big;                                                     \
}
FM_DEFINE_ABS_MAX(double, d)
FM_DEFINE_ABS_MAX(float, f)

#endif
