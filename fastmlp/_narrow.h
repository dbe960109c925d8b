/* Training step kernels for narrow networks (every layer at most
 * FM_NARROW_WIDTH units wide, at most FMN_MAX_LAYERS weight layers).
 *
 * For such networks a BLAS call costs more than its arithmetic (its
 * packing and dispatch dominate a 4000 x 20 x 8 product), and row-major
 * activations leave most vector lanes idle (a layer of 3 units fills 3 of 8
 * float lanes).  Here samples run along the vector lanes instead: a chunk of
 * C samples goes forward, through the loss and back in one pass while it
 * sits in L1 cache, each product a register-blocked sum of broadcast weights
 * times whole vectors.  See _narrow_impl.h for the layout.
 *
 * Its instances (two element types x three chunk sizes x the ISA clones)
 * were three quarters of the module's compile time, so each is a unit of its
 * own, _narrow_d1.c .. _narrow_f8.c (FMN_IMPLEMENT 'd' / 'f', FMN_NV 1 / 4 /
 * 8), compiled beside the Cython module's, one a core; the module sees their
 * declarations and holds the dispatch on the chunk size.
 */
#ifndef FASTMLP_NARROW_H
#define FASTMLP_NARROW_H

#ifndef FMN_IMPLEMENT
#define FMN_IMPLEMENT 0     /* the Cython module: declarations */
#endif

#include <stdint.h>
#include "_vmath.h"
#include "_pool.h"

#define FMN_MAX_LAYERS 16

typedef double fmn_vec_d __attribute__((vector_size(32)));
typedef float fmn_vec_f __attribute__((vector_size(32)));
typedef int64_t fmn_mask_d __attribute__((vector_size(32)));
typedef int32_t fmn_mask_f __attribute__((vector_size(32)));

/* the first 32-byte boundary at or after p */
#define FMN_ALIGN(p) ((void *)(((uintptr_t)(p) + 31) & ~(uintptr_t)31))

/* Where the one-pass step keeps what, for one network: worked out once per
 * training call by fm_narrow_init at the start of the workspace.  Offsets
 * are in chunk rows (units) from the first aligned byte after the plan. */
typedef struct {
    fm_idx L, P, nv;
    fm_idx sizes[FMN_MAX_LAYERS + 1];
    fm_idx off[FMN_MAX_LAYERS + 1];     /* of each layer's W in params */
    fm_idx acts[FMN_MAX_LAYERS + 1];    /* activations of layers 1..L */
    fm_idx slope;                       /* from an activation's row to its slopes' (gelu) */
    fm_idx zout, d0, d1, blocks, gvec;  /* gvec: P vectors, in chunk rows */
    fm_idx part_bytes;                  /* workspace of one part of a split batch */
} fmn_plan;

#define FMN_MAX_PARTS 4     /* parts a batch is split into, at most */

/* sum of a vector's lanes, by halving (gcc's and clang's shuffle builtins
 * spell the same permutations differently) */
#if defined(__clang__)
#define FMN_SHUFFLE_D(x, a, b, c, d) __builtin_shufflevector(x, x, a, b, c, d)
#define FMN_SHUFFLE_F(x, a, b, c, d, e, f, g, h) __builtin_shufflevector(x, x, a, b, c, d, e, f, g, h)
#else
#define FMN_SHUFFLE_D(x, a, b, c, d) __builtin_shuffle(x, (fmn_mask_d){a, b, c, d})
#define FMN_SHUFFLE_F(x, a, b, c, d, e, f, g, h) \
    __builtin_shuffle(x, (fmn_mask_f){a, b, c, d, e, f, g, h})
#endif

FM_INLINE double fmn_hsum_d(fmn_vec_d x)
{
    x += FMN_SHUFFLE_D(x, 2, 3, 0, 1);
    x += FMN_SHUFFLE_D(x, 1, 0, 3, 2);
    return x[0];
}

FM_INLINE float fmn_hsum_f(fmn_vec_f x)
{
    x += FMN_SHUFFLE_F(x, 4, 5, 6, 7, 0, 1, 2, 3);
    x += FMN_SHUFFLE_F(x, 2, 3, 0, 1, 6, 7, 4, 5);
    x += FMN_SHUFFLE_F(x, 1, 0, 3, 2, 5, 4, 7, 6);
    return x[0];
}

/* chunks of 1 vector: batches of at most 2 vectors' worth of samples */
/* p -= lr * g; if any result is not finite, p is put back as it was and 0
 * returned (backup: n values of scratch).  Train's plain SGD step, and the
 * one of fm_narrow_sgd_epochs. */
#define FMN_DEFINE_SGD_STEP(T, SUF)                                              \
FM_INLINE int fmn_sgd_step_##SUF(T *restrict p, const T *restrict g,            \
                                 T *restrict backup, T lr, fm_idx n)             \
{                                                                                \
    fm_idx i;                                                                    \
    int bad = 0;                                                                 \
    for (i = 0; i < n; i++) {                                                    \
        T q = p[i] - lr * g[i];                                                  \
        backup[i] = p[i];                                                        \
        p[i] = q;                                                                \
        bad |= !(q - q == 0);                                                    \
    }                                                                            \
    if (bad)                                                                     \
        memcpy(p, backup, (size_t)n * sizeof(T));                                \
    return !bad;                                                                 \
}
FMN_DEFINE_SGD_STEP(double, d)
FMN_DEFINE_SGD_STEP(float, f)

/* A unit's instance: _narrow_<SUF><NV>.c defines FMN_IMPLEMENT ('d' or 'f')
 * and FMN_NV (1, 4 or 8) */
#if FMN_IMPLEMENT == 'd'
#define FMN_T double
#define FMN_SUF d
#define FMN_HSUM fmn_hsum_d
#define FMN_EXP fm_exp_d
#include "_narrow_impl.h"
#elif FMN_IMPLEMENT == 'f'
#define FMN_T float
#define FMN_SUF f
#define FMN_HSUM fmn_hsum_f
#define FMN_EXP fm_exp_f
#include "_narrow_impl.h"
#endif

/* Bytes of workspace the one-pass step needs for these layer sizes (any
 * element type and chunk size: counted in 32-byte vectors, 8 per chunk row
 * at most), per part of a split batch. */
static inline size_t fm_narrow_work_bytes(const fm_idx *sizes, int L)
{
    fm_idx l, widest = 0, units = 0, P = 0;
    for (l = 0; l <= L; l++) {
        units += sizes[l];
        widest = sizes[l] > widest ? sizes[l] : widest;
    }
    for (l = 0; l < L; l++)
        P += sizes[l] * sizes[l + 1] + sizes[l + 1];
    /* activations and their slopes (gelu's), logits, 2 deltas, one chunk
     * block (inputs, targets, weights); a multiple of 64 bytes, so that parts
     * of a split batch line up */
    size_t bytes = sizeof(fmn_plan) + 32
                   + (size_t)(2 * units + 2 * sizes[L] + 2 * widest + 1) * 8 * 32
                   + (size_t)P * 32;
    return (bytes + 63) & ~(size_t)63;
}

/* Lay out the workspace for layer sizes (L + 1 of them, L <= FMN_MAX_LAYERS)
 * and chunk rows of nv vectors. */
static inline void fm_narrow_init(void *work, const fm_idx *sizes, int L, int nv)
{
    fmn_plan *plan = (fmn_plan *)work;
    fm_idx l, widest = 0, rows = 0;
    plan->L = L;
    plan->nv = nv;
    plan->part_bytes = (fm_idx)fm_narrow_work_bytes(sizes, L);
    plan->P = 0;
    for (l = 0; l <= L; l++) {
        plan->sizes[l] = sizes[l];
        widest = sizes[l] > widest ? sizes[l] : widest;
        if (l > 0) {
            plan->acts[l] = rows;
            rows += sizes[l];
        }
    }
    for (l = 0; l < L; l++) {
        plan->off[l] = plan->P;
        plan->P += sizes[l] * sizes[l + 1] + sizes[l + 1];
    }
    plan->slope = rows;         /* the slopes of layer l's rows: rows on */
    rows += rows;
    plan->zout = rows;
    plan->d0 = rows + sizes[L];
    plan->d1 = plan->d0 + widest;
    plan->blocks = plan->d1 + widest;
    plan->gvec = plan->blocks + sizes[0] + sizes[L] + 1;
}

/* Vectors per chunk row for batches of up to m samples of elsize bytes:
 * 1 for tiny batches (at most 2 vectors' worth), 4 up to 4 vectors' worth,
 * else 8. */
static inline int fm_narrow_nv(fm_idx m, size_t elsize)
{
    fm_idx vl = (fm_idx)(32 / elsize);
    return m <= 2 * vl ? 1 : (m <= 4 * vl ? 4 : 8);
}

/* Samples per chunk for nv vectors per chunk row. */
static inline fm_idx fm_narrow_chunk(int nv, size_t elsize)
{
    return (fm_idx)(nv * 32 / elsize);
}

/* Bytes of prepared chunk blocks for m samples (alignment included). */
static inline size_t fm_narrow_prep_bytes(fm_idx n_x, fm_idx n_y, fm_idx m, int nv,
                                          size_t elsize)
{
    fm_idx C = fm_narrow_chunk(nv, elsize), chunks = (m + C - 1) / C;
    return (size_t)(chunks * (n_x + n_y + 1) * C) * elsize + 32;
}

/* The instances with NV (1, 4 or 8) vectors per chunk row (see
 * _narrow_impl.h): defined in their unit, declared everywhere. */
#define FMN_DECLARE_NV(T, SUF, NV)                                               \
FMP_API double fm_narrow_batch_##SUF##NV(void *work, int hidden, int output, int loss, \
                                         const T *params, const T *X, const T *Y, \
                                         const T *w, const void *prep, fm_idx m, \
                                         double inv_M, T *grads, int parts);     \
FMP_API fm_idx fm_narrow_sgd_epochs_##SUF##NV(void *work, int hidden, int output, \
                                              int loss, T *params, const void *prep, \
                                              fm_idx m, T lr, fm_idx epochs,     \
                                              double W_total, double *epoch_loss, \
                                              T *grads, T *backup);              \
FMP_API void fm_narrow_prepare_##SUF##NV(fm_idx n_x, fm_idx n_y, const T *X,     \
                                         const T *Y, const T *w, fm_idx m, void *out);
FMN_DECLARE_NV(double, d, 1)
FMN_DECLARE_NV(double, d, 4)
FMN_DECLARE_NV(double, d, 8)
FMN_DECLARE_NV(float, f, 1)
FMN_DECLARE_NV(float, f, 4)
FMN_DECLARE_NV(float, f, 8)

/* fm_narrow_batch_d / _f, fm_narrow_sgd_epochs_d / _f and
 * fm_narrow_prepare_d / _f: the instance of the plan's (or nv's) chunk
 * size.  Defined in the Cython module. */
#define FMN_DECLARE(T, SUF)                                                      \
FMP_API double fm_narrow_batch_##SUF(void *work, int hidden, int output, int loss, \
                                     const T *params, const T *X, const T *Y,    \
                                     const T *w, const void *prep, fm_idx m,     \
                                     double inv_M, T *grads, int parts);         \
FMP_API fm_idx fm_narrow_sgd_epochs_##SUF(void *work, int hidden, int output, int loss, \
                                          T *params, const void *prep, fm_idx m, \
                                          T lr, fm_idx epochs, double W_total,   \
                                          double *epoch_loss, T *grads, T *backup); \
FMP_API void fm_narrow_prepare_##SUF(int nv, fm_idx n_x, fm_idx n_y, const T *X, \
                                     const T *Y, const T *w, fm_idx m, void *out);
FMN_DECLARE(double, d)
FMN_DECLARE(float, f)

#define FMN_DISPATCH(T, SUF)                                                     \
FMP_API double fm_narrow_batch_##SUF(void *work, int hidden, int output, int loss, \
                                    const T *params, const T *X, const T *Y,     \
                                    const T *w, const void *prep, fm_idx m,      \
                                    double inv_M, T *grads, int parts)           \
{                                                                                \
    if (((fmn_plan *)work)->nv == 1)                                             \
        return fm_narrow_batch_##SUF##1(work, hidden, output, loss, params, X, Y, w, \
                                        prep, m, inv_M, grads, parts);           \
    if (((fmn_plan *)work)->nv == 4)                                             \
        return fm_narrow_batch_##SUF##4(work, hidden, output, loss, params, X, Y, w, \
                                        prep, m, inv_M, grads, parts);           \
    return fm_narrow_batch_##SUF##8(work, hidden, output, loss, params, X, Y, w, \
                                    prep, m, inv_M, grads, parts);               \
}                                                                                \
FMP_API fm_idx fm_narrow_sgd_epochs_##SUF(void *work, int hidden, int output, int loss, \
                                         T *params, const void *prep, fm_idx m,  \
                                         T lr, fm_idx epochs, double W_total,    \
                                         double *epoch_loss, T *grads, T *backup) \
{                                                                                \
    if (((fmn_plan *)work)->nv == 1)                                             \
        return fm_narrow_sgd_epochs_##SUF##1(work, hidden, output, loss, params, prep, \
                                             m, lr, epochs, W_total, epoch_loss, \
                                             grads, backup);                     \
    if (((fmn_plan *)work)->nv == 4)                                             \
        return fm_narrow_sgd_epochs_##SUF##4(work, hidden, output, loss, params, prep, \
                                             m, lr, epochs, W_total, epoch_loss, \
                                             grads, backup);                     \
    return fm_narrow_sgd_epochs_##SUF##8(work, hidden, output, loss, params, prep, m, \
                                         lr, epochs, W_total, epoch_loss, grads, \
                                         backup);                                \
}                                                                                \
FMP_API void fm_narrow_prepare_##SUF(int nv, fm_idx n_x, fm_idx n_y, const T *X, \
                                    const T *Y, const T *w, fm_idx m, void *out) \
{                                                                                \
    if (nv == 1)                                                                 \
        fm_narrow_prepare_##SUF##1(n_x, n_y, X, Y, w, m, out);                   \
    else if (nv == 4)                                                            \
        fm_narrow_prepare_##SUF##4(n_x, n_y, X, Y, w, m, out);                   \
    else                                                                         \
        fm_narrow_prepare_##SUF##8(n_x, n_y, X, Y, w, m, out);                   \
}
#if !FMN_IMPLEMENT
FMN_DISPATCH(double, d)
FMN_DISPATCH(float, f)
/* p -= lr * g, checked: see fmn_sgd_step_d (the module's plain SGD step) */
#define FMN_DEFINE_CHECKED_STEP(T, SUF)                                          \
FM_CLONES static int fm_sgd_step_##SUF(T *restrict p, const T *restrict g,      \
                                       T *restrict backup, T lr, fm_idx n)       \
{                                                                                \
    return fmn_sgd_step_##SUF(p, g, backup, lr, n);                              \
}
FMN_DEFINE_CHECKED_STEP(double, d)
FMN_DEFINE_CHECKED_STEP(float, f)
#endif

#endif
