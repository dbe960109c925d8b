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
 */
#ifndef FASTMLP_NARROW_H
#define FASTMLP_NARROW_H

#include <stdint.h>
#include "_vmath.h"

#define FMN_MAX_LAYERS 16

typedef double fmn_vec_d __attribute__((vector_size(32)));
typedef float fmn_vec_f __attribute__((vector_size(32)));

/* chunks of 1 vector: batches of at most 2 vectors' worth of samples */
#define FMN_T double
#define FMN_SUF d
#define FMN_NV 1
#define FMN_EXP fm_exp_d
#define FMN_TANH tanh
#include "_narrow_impl.h"
#undef FMN_NV
#define FMN_NV 4
#include "_narrow_impl.h"
#undef FMN_NV
#undef FMN_T
#undef FMN_SUF
#undef FMN_EXP
#undef FMN_TANH

#define FMN_T float
#define FMN_SUF f
#define FMN_NV 1
#define FMN_EXP fm_exp_f
#define FMN_TANH tanhf
#include "_narrow_impl.h"
#undef FMN_NV
#define FMN_NV 4
#include "_narrow_impl.h"
#undef FMN_NV
#undef FMN_T
#undef FMN_SUF
#undef FMN_EXP
#undef FMN_TANH

/* Bytes of workspace fm_narrow_batch_* needs for these layer sizes and an
 * element of elsize bytes (the largest chunk, alignment included). */
static inline size_t fm_narrow_work_bytes(const fm_idx *sizes, int L)
{
    fm_idx l, widest = 0, units = 0, P = 0;
    for (l = 0; l <= L; l++) {
        units += sizes[l];
        widest = sizes[l] > widest ? sizes[l] : widest;
    }
    for (l = 0; l < L; l++)
        P += sizes[l] * sizes[l + 1] + sizes[l + 1];
    /* per chunk row: 4 vectors (NV = 4) of 32 bytes */
    return (size_t)(units + 2 * sizes[L] + 2 * widest) * 4 * 32 + (size_t)P * 32 + 32;
}

/* Vectors per chunk row for a batch of m samples of elements of elsize. */
static inline int fm_narrow_nv(fm_idx m, size_t elsize)
{
    return m <= (fm_idx)(2 * 32 / elsize) ? 1 : 4;
}

/* fm_narrow_batch_d / _f: one batch (see _narrow_impl.h), in chunks of 1
 * vector for batches of up to 2 vectors' worth of samples, else of 4. */
#define FMN_DISPATCH(T, SUF)                                                     \
static double fm_narrow_batch_##SUF(const fm_idx *sizes, int L, int hidden, int output, \
                                    int loss, const T *params, const T *X, const T *Y, \
                                    const T *w, fm_idx m, double inv_M, T *grads,  \
                                    void *work)                                  \
{                                                                                \
    if (fm_narrow_nv(m, sizeof(T)) == 1)                                         \
        return fm_narrow_batch_##SUF##1(sizes, L, hidden, output, loss, params, X, Y, w, \
                                        m, inv_M, grads, work);                  \
    return fm_narrow_batch_##SUF##4(sizes, L, hidden, output, loss, params, X, Y, w, \
                                    m, inv_M, grads, work);                      \
}
FMN_DISPATCH(double, d)
FMN_DISPATCH(float, f)

#endif
