/* Inverted dropout's mask pass, vectorisable (see _dropout.pxi for the masks'
 * definition, which fastmlp/_dropout.py computes the same way in NumPy).
 *
 * Rows r0 .. r0+mr-1 of a hidden layer k units wide: unit (i, j) hashes
 *     h = mix(key + (i * k + j + 1) * FM_DROP_GOLDEN)
 * (key: the layer's and batch's, mixed by the caller) and is kept when
 * h >> 11 >= threshold; its activation A and slope S are then multiplied by
 * keep = 1 / (1 - p), else by 0.  Each unit's hash stands alone, so gcc
 * vectorises the loop (AVX-512's 64-bit multiply: 8 hashes an instruction)
 * and any split over rows gives the same bits.
 */
#ifndef FASTMLP_DROPOUT_H
#define FASTMLP_DROPOUT_H

#include <stdint.h>
#include "_vmath.h"

#define FM_DROP_GOLDEN 0x9E3779B97F4A7C15ULL

/* splitmix64's finalizer: every input bit reaches every output bit. */
FM_INLINE uint64_t fm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

#define FM_DEFINE_DROP(T, SUF)                                                  \
FM_CLONES static void fm_drop_##SUF(T *restrict A, T *restrict S, fm_idx r0,    \
                                    fm_idx mr, fm_idx k, uint64_t key,          \
                                    uint64_t threshold, T keep)                 \
{                                                                               \
    fm_idx i, j;                                                                \
    for (i = 0; i < mr; i++) {                                                  \
        uint64_t idx = (uint64_t)((r0 + i) * k) + 1;                            \
        T *restrict a = A + i * k;                                              \
        T *restrict s = S + i * k;                                              \
        for (j = 0; j < k; j++) {                                               \
            uint64_t h = fm_mix64(key + (idx + (uint64_t)j) * FM_DROP_GOLDEN);  \
            T f = (h >> 11) >= threshold ? keep : (T)0;                         \
            a[j] *= f;                                                          \
            s[j] *= f;                                                          \
        }                                                                       \
    }                                                                           \
}

FM_DEFINE_DROP(double, d)
FM_DEFINE_DROP(float, f)

#endif
