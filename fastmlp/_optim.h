/* Optimizer steps over the flat parameter buffer: one vectorised pass per
 * step (target_clones, as _vmath.h), in fixed blocks of FMO_BLOCK values on
 * the pool of _pool.h when the buffer is large.  Every value is updated on
 * its own and the gradient's squared norm is summed block by block in a
 * fixed order, so results do not depend on the thread count.
 *
 * Kinds: 0 SGD, 1 momentum, 2 Nesterov momentum, 3 Adam (scikit-learn's
 * definitions, see _optimizers.pxi; AdamW is kind 3 with `keep` = 1 - lr *
 * weight_decay, Adam's `keep` is 1), 4 RMSprop (PyTorch's: b2 is its rho,
 * s1 the mean square).  The gradient is multiplied by `scale`
 * (clipping) as it is read.  Each step reports whether every value it wrote
 * (parameters and state) is finite.  The gradient's norm is finite whenever
 * it is representable (see fmo_norm). */
#ifndef FASTMLP_OPTIM_H
#define FASTMLP_OPTIM_H

#include "_vmath.h"
#include "_pool.h"

#define FMO_BLOCK ((fm_idx)32768)
#define FMO_MAX_BLOCKS 4096         /* larger buffers: bigger blocks */

typedef struct {
    int kind, is_float;
    void *p, *s1, *s2;
    const void *g;
    fm_idx n, block;
    double lr, mu, b1, b2, eps, scale;
    double keep;                /* Adam: parameters multiplied by it first (AdamW's decay) */
    double sq_scale;            /* fmo_norm: g is summed as g * sq_scale */
    int bad[FMO_MAX_BLOCKS];
    double sq[FMO_MAX_BLOCKS];
} fmo_task;

/* Run BODY (which adds x - x of every value x it writes to `chk`: 0 when x
 * is finite, NaN when not) for i in 0..n-1, with 8 check sums (one a lane,
 * so the loop vectorises: an int flag's or-reduction took ~20% longer). */
#define FMO_LOOP(T, BODY)                                                       \
    do {                                                                        \
        T lanes_[8] = {0}, chk;                                                 \
        fm_idx i0_;                                                             \
        int l_;                                                                 \
        for (i0_ = 0; i0_ + 8 <= n; i0_ += 8)                                   \
            for (l_ = 0; l_ < 8; l_++) {                                        \
                i = i0_ + l_;                                                   \
                chk = 0;                                                        \
                BODY;                                                           \
                lanes_[l_] += chk;                                              \
            }                                                                   \
        for (i = i0_, chk = 0; i < n; i++) {                                    \
            BODY;                                                               \
        }                                                                       \
        for (l_ = 0; l_ < 8; l_++)                                              \
            chk += lanes_[l_];                                                  \
        return !(chk == 0);                                                     \
    } while (0)

#define FMO_DEFINE(T, SUF)                                                      \
FM_CLONES static int fmo_step_##SUF(int kind, T *restrict p, const T *restrict g, \
                                    T *restrict s1, T *restrict s2, fm_idx n,     \
                                    T lr, T mu, T b1, T b2, T eps, T scale,       \
                                    T keep)                                       \
{                                                                               \
    fm_idx i;                                                                   \
    T gi, v, q, c1 = (T)1 - b1, c2 = (T)1 - b2;                                 \
    if (kind == 0) {                                                            \
        FMO_LOOP(T, gi = g[i] * scale; q = p[i] - lr * gi; p[i] = q;            \
                 chk += q - q);                                                 \
    } else if (kind == 1) {                                                     \
        FMO_LOOP(T, gi = g[i] * scale; v = mu * s1[i] - lr * gi; s1[i] = v;     \
                 q = p[i] + v; p[i] = q; chk += (q - q) + (v - v));             \
    } else if (kind == 2) {                                                     \
        FMO_LOOP(T, gi = g[i] * scale; v = mu * s1[i] - lr * gi; s1[i] = v;     \
                 q = p[i] + (mu * v - lr * gi); p[i] = q;                       \
                 chk += (q - q) + (v - v));                                     \
    } else if (kind == 4) {                                                     \
        FMO_LOOP(T, gi = g[i] * scale; v = b2 * s1[i] + c2 * gi * gi; s1[i] = v; \
                 q = p[i] - lr * gi / (sqrt##SUF##_(v) + eps); p[i] = q;        \
                 chk += (q - q) + (v - v));                                     \
    } else {                                                                    \
        FMO_LOOP(T, gi = g[i] * scale; v = b1 * s1[i] + c1 * gi; s1[i] = v;     \
                 T w_ = b2 * s2[i] + c2 * gi * gi; s2[i] = w_;                  \
                 q = p[i] * keep - lr * v / (sqrt##SUF##_(w_) + eps); p[i] = q; \
                 chk += (q - q) + (v - v) + (w_ - w_));                         \
    }                                                                           \
}                                                                               \
                                                                                \
/* sum((g * c)**2) in 16 running double sums (which vectorise). */           \
FM_CLONES static double fmo_sq_sum_##SUF(const T *restrict g, fm_idx n, double c) \
{                                                                               \
    double acc[16] = {0}, total = 0, v;                                         \
    fm_idx i = 0;                                                               \
    int j;                                                                      \
    for (; i + 16 <= n; i += 16)                                                \
        for (j = 0; j < 16; j++) {                                              \
            v = (double)g[i + j] * c;                                           \
            acc[j] += v * v;                                                    \
        }                                                                       \
    for (; i < n; i++) {                                                        \
        v = (double)g[i] * c;                                                   \
        total += v * v;                                                         \
    }                                                                           \
    for (j = 0; j < 16; j++) total += acc[j];                                   \
    return total;                                                               \
}

#define sqrtd_(x) sqrt(x)
#define sqrtf_(x) sqrtf(x)
/* No fused multiply-adds: the vectorised lanes and the tail of FMO_LOOP
 * then compute every value alike (contracted, they can differ in the last
 * bit, and a value's result would depend on its offset in a band). */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
FMO_DEFINE(double, d)
FMO_DEFINE(float, f)
#pragma GCC pop_options

/* The step on values lo .. hi-1 of the task's buffers; nonzero when a value
 * written is not finite.  (Also the fused update's, _fused_update.pxi.) */
static int fmo_step_range(fmo_task *t, fm_idx lo, fm_idx hi)
{
    if (t->is_float)
        return fmo_step_f(t->kind, (float *)t->p + lo, (const float *)t->g + lo,
                          t->s1 ? (float *)t->s1 + lo : NULL,
                          t->s2 ? (float *)t->s2 + lo : NULL, hi - lo, (float)t->lr,
                          (float)t->mu, (float)t->b1, (float)t->b2, (float)t->eps,
                          (float)t->scale, (float)t->keep);
    return fmo_step_d(t->kind, (double *)t->p + lo, (const double *)t->g + lo,
                      t->s1 ? (double *)t->s1 + lo : NULL,
                      t->s2 ? (double *)t->s2 + lo : NULL, hi - lo, t->lr, t->mu,
                      t->b1, t->b2, t->eps, t->scale, t->keep);
}

static void fmo_step_block(void *arg, int b)
{
    fmo_task *t = (fmo_task *)arg;
    fm_idx lo = (fm_idx)b * t->block;
    fm_idx hi = lo + t->block < t->n ? lo + t->block : t->n;
    t->bad[b] = fmo_step_range(t, lo, hi);
}

static void fmo_sq_block(void *arg, int b)
{
    fmo_task *t = (fmo_task *)arg;
    fm_idx lo = (fm_idx)b * t->block;
    fm_idx hi = lo + t->block < t->n ? lo + t->block : t->n;
    t->sq[b] = t->is_float ? fmo_sq_sum_f((const float *)t->g + lo, hi - lo, t->sq_scale)
                           : fmo_sq_sum_d((const double *)t->g + lo, hi - lo, t->sq_scale);
}

static int fmo_blocks(fmo_task *t)
{
    t->block = FMO_BLOCK;
    while ((t->n + t->block - 1) / t->block > FMO_MAX_BLOCKS)
        t->block *= 2;
    return (int)((t->n + t->block - 1) / t->block);
}

/* sum((g * sq_scale)**2) over the task's n values, block by block in order. */
static double fmo_sq_sum(fmo_task *t, double sq_scale, int threads)
{
    int b, nb = fmo_blocks(t);
    double total = 0;
    t->sq_scale = sq_scale;
    fmp_run(fmo_sq_block, t, nb, nb > 1 ? threads : 1);
    for (b = 0; b < nb; b++) total += t->sq[b];
    return total;
}

/* The gradient's L2 norm (not finite when a value is not).  Squares of
 * float64 values beyond 1.3e154 overflow: then the sum is taken again of
 * g / 2^k (exact, 2^k the power of two just above max |g|) and the norm
 * scaled back, so it is finite whenever it is representable. */
static double fmo_norm(fmo_task *t, int threads)
{
    double total = fmo_sq_sum(t, 1.0, threads), big;
    int k;
    if (isfinite(total))
        return sqrt(total);
    big = t->is_float ? fm_abs_max_f((const float *)t->g, t->n)
                      : fm_abs_max_d((const double *)t->g, t->n);
    if (!isfinite(big))
        return big;
    frexp(big, &k);
    return ldexp(sqrt(fmo_sq_sum(t, ldexp(1.0, -k), threads)), k);
}

/* The step; 1 when every value written is finite. */
static int fmo_step(fmo_task *t, int threads)
{
    int b, nb = fmo_blocks(t), bad = 0;
    fmp_run(fmo_step_block, t, nb, nb > 1 ? threads : 1);
    for (b = 0; b < nb; b++) bad |= t->bad[b];
    return !bad;
}

#endif
