/* Cache-blocked row-major products on fastmlp's pool, for products too big
 * for _gemm.h's L1/L2 register blocks (784-256 layers of a minibatch, a
 * 2048-row chunk of predict), in place of BLAS.
 *
 *   C = alpha * op(A) @ op(B) + beta * C,   op(X) = X ('N') or X^T ('T'),
 *   op(A): M x K, op(B): K x N, C: M x N, all row-major.
 *
 * op(B) is first copied into panels of 2 vectors of columns (16 floats),
 * each panel's K rows contiguous, so a slice of KC rows (16 KB) stays in L1
 * while the 4-row tiles of _gemm.h pass every row of a block of A over it;
 * a block of A (at most FMB_MC rows by KC) stays in L2.  B's rows unpacked
 * are 1 KB apart for a 256-wide layer and share 4 of L1's 64 sets.
 * Measured on one core (AMD EPYC Zen 3, C loop, best of 20-100): 128x784 @
 * 784x256 528 us (95% of the core's FMA peak) against 820 us for the
 * unblocked register blocks and 637 us for OpenBLAS's sgemm on one thread;
 * 2048x784 @ 784x256 9.7 ms against 10.8 ms (OpenBLAS); packing B 42 us.
 *
 * The pool's blocks are at most FMB_MC rows by every column, or, when there
 * are fewer than FMB_MANY_ROW_BLOCKS row blocks, by FMB_GROUP_PANELS panels
 * (ordered by column group, so each thread computes its own groups and keeps
 * their panels in its own L2).  A block of A is read once from memory:
 * reading it once per column group made 10000x784 @ 784x256 memory-bound
 * (2048-row chunks on two threads, C loop: 45 ms; one group a block: XXX).
 * With a single row block a pool block packs its own columns; else the
 * panels are packed first, as pool blocks of their own.
 * Every value of C is summed the same way on any split (the same K blocks in
 * the same order, each as one chain of multiply-adds): results do not
 * depend on the thread count.  K blocks after the first add to C, so a
 * value is rounded once a K block (K <= KC: exactly as _gemm.h sums it).
 */
#ifndef FASTMLP_GEMM_BIG_H
#define FASTMLP_GEMM_BIG_H

#include <pthread.h>
#include <stdlib.h>
#include "_gemm.h"

#ifndef FMB_KC
#define FMB_KC 256          /* most rows of a panel slice (16 KB in float32) */
#endif
#ifndef FMB_MC
#define FMB_MC 128          /* most rows of A per pool block */
#endif
#ifndef FMB_GROUP_PANELS
#define FMB_GROUP_PANELS 4  /* panels (of 2 vectors) per pool block ... */
#endif
#define FMB_MANY_ROW_BLOCKS 8   /* ... unless there are this many row blocks */

typedef struct {
    char ta, tb;
    int is_float;
    fm_idx M, N, K, lda, ldb, ldc;
    fm_idx kc;              /* rows of a K block (K split evenly) */
    fm_idx row_blocks, groups, group_panels;
    int pack_in_blocks;     /* one row block: each pool block packs its columns */
    double alpha, beta;
    const void *A, *B;
    void *C, *packed;
} fmb_task;

#define FMB_DEFINE(T, SUF)                                                       \
/* Panels p0..p1-1 of op(B) into t->packed (panel p at p * W * K, row k of   \
 * it at k * W, the lanes past N zero). */                                      \
static void fmb_pack_##SUF(const fmb_task *t, fm_idx p0, fm_idx p1)              \
{                                                                                \
    enum { W = 2 * FMG_VL_##SUF };                                               \
    const T *B = (const T *)t->B;                                                \
    fm_idx p, k, q, j, nc, K = t->K, ldb = t->ldb;                               \
    for (p = p0; p < p1; p++) {                                                  \
        T *dst = (T *)t->packed + p * W * K;                                     \
        j = p * W;                                                               \
        nc = t->N - j < W ? t->N - j : W;                                        \
        if (t->tb == 'N') {                                                      \
            for (k = 0; k < K; k++) {                                            \
                const T *src = B + k * ldb + j;                                  \
                if (nc == W) {                                                   \
                    memcpy(dst + k * W, src, sizeof(T) * W);                     \
                } else {                                                         \
                    for (q = 0; q < nc; q++)                                     \
                        dst[k * W + q] = src[q];                                 \
                    for (; q < W; q++)                                           \
                        dst[k * W + q] = 0;                                      \
                }                                                                \
            }                                                                    \
        } else {                                                                 \
            if (nc < W)                                                          \
                memset(dst, 0, sizeof(T) * (size_t)(K * W));                     \
            for (q = 0; q < nc; q++) {                                           \
                const T *src = B + (j + q) * ldb;                                \
                for (k = 0; k < K; k++)                                          \
                    dst[k * W + q] = src[k];                                     \
            }                                                                    \
        }                                                                        \
    }                                                                            \
}                                                                                \
                                                                                 \
/* Rows i0..i0+mb-1 by panels p0..p1-1 of C, from the packed panels. */       \
FM_CLONES static void fmb_block_##SUF(const fmb_task *t, fm_idx i0, fm_idx mb,  \
                                      fm_idx p0, fm_idx p1)                      \
{                                                                                \
    enum { W = 2 * FMG_VL_##SUF };                                               \
    const T alpha = (T)t->alpha, *A = (const T *)t->A;                           \
    const T *packed = (const T *)t->packed;                                      \
    T *C = (T *)t->C + i0 * t->ldc;                                              \
    const fm_idx K = t->K, ldc = t->ldc;                                         \
    const fm_idx sr = t->ta == 'N' ? t->lda : 1, sk = t->ta == 'N' ? 1 : t->lda; \
    fm_idx k0, kb, p, nc;                                                        \
    A += i0 * sr;                                                                \
    for (k0 = 0; k0 < K; k0 += t->kc) {                                          \
        const T beta = k0 == 0 ? (T)t->beta : (T)1;                              \
        kb = K - k0 < t->kc ? K - k0 : t->kc;                                    \
        for (p = p0; p < p1; p++) {                                              \
            const T *Bp = packed + p * W * K + k0 * W;                           \
            nc = t->N - p * W < W ? t->N - p * W : W;                            \
            if (nc == W)   /* W a constant: the tiles keep their sums in registers */ \
                fmg_panel_##SUF(mb, kb, alpha, A + k0 * sk, sr, sk, Bp, W, beta, \
                                C + p * W, ldc, W);                              \
            else                                                                 \
                fmg_panel_##SUF(mb, kb, alpha, A + k0 * sk, sr, sk, Bp, W, beta, \
                                C + p * W, ldc, nc);                             \
        }                                                                        \
    }                                                                            \
}

FMB_DEFINE(double, d)
FMB_DEFINE(float, f)

/* Each thread's buffer for the panels, kept between calls (a fresh one a
 * call cost page faults: 8% of an mnist-shape fit's samples zeroing pages)
 * and freed when the thread ends. */
typedef struct {
    size_t bytes;
    void *mem;
} fmb_buffer;

static pthread_key_t fmb_key;
static pthread_once_t fmb_key_once = PTHREAD_ONCE_INIT;
static int fmb_key_ok;

static void fmb_free_buffer(void *p)
{
    fmb_buffer *b = (fmb_buffer *)p;
    free(b->mem);
    free(b);
}

static void fmb_make_key(void)
{
    fmb_key_ok = pthread_key_create(&fmb_key, fmb_free_buffer) == 0;
}

/* The calling thread's buffer, at least `bytes` long (64-byte aligned); NULL
 * when it cannot be had. */
static void *fmb_thread_buffer(size_t bytes)
{
    fmb_buffer *b;
    pthread_once(&fmb_key_once, fmb_make_key);
    if (!fmb_key_ok)
        return NULL;
    b = (fmb_buffer *)pthread_getspecific(fmb_key);
    if (b == NULL) {
        b = (fmb_buffer *)calloc(1, sizeof(fmb_buffer));
        if (b == NULL)
            return NULL;
        if (pthread_setspecific(fmb_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->bytes < bytes) {
        void *mem = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (mem == NULL)
            return NULL;
        free(b->mem);
        b->mem = mem;
        b->bytes = bytes;
    }
    return b->mem;
}

static inline fm_idx fmb_width(const fmb_task *t)
{
    return t->is_float ? 2 * FMG_VL_f : 2 * FMG_VL_d;
}

/* First row of row block r (block starts on a multiple of 4 rows). */
static inline fm_idx fmb_row(const fmb_task *t, fm_idx r)
{
    return r >= t->row_blocks ? t->M : (t->M * r / t->row_blocks) / 4 * 4;
}

/* Pool block b of the packing phase: the b-th panel. */
static void fmb_run_pack(void *arg, int block)
{
    const fmb_task *t = (const fmb_task *)arg;
    if (t->is_float)
        fmb_pack_f(t, block, block + 1);
    else
        fmb_pack_d(t, block, block + 1);
}

/* Pool block b of the product: column group b / row_blocks, row block
 * b % row_blocks. */
static void fmb_run_block(void *arg, int block)
{
    const fmb_task *t = (const fmb_task *)arg;
    fm_idx w = fmb_width(t), panels = (t->N + w - 1) / w;
    fm_idx g = block / t->row_blocks, r = block % t->row_blocks;
    fm_idx p0 = g * t->group_panels;
    fm_idx p1 = p0 + t->group_panels < panels ? p0 + t->group_panels : panels;
    fm_idx i0 = fmb_row(t, r), mb = fmb_row(t, r + 1) - i0;
    if (t->is_float) {
        if (t->pack_in_blocks)
            fmb_pack_f(t, p0, p1);
        fmb_block_f(t, i0, mb, p0, p1);
    } else {
        if (t->pack_in_blocks)
            fmb_pack_d(t, p0, p1);
        fmb_block_d(t, i0, mb, p0, p1);
    }
}

/* C = alpha * op(A) @ op(B) + beta * C on up to `threads` threads of the
 * pool (alpha and beta exact in the element type; beta == 0 never reads
 * C).  Returns 0, or -1 (C untouched) when the panels' buffer cannot be
 * allocated.  The buffer (the calling thread's) stays for the next call. */
static int fm_gemm_big(int is_float, char ta, char tb, fm_idx M, fm_idx N, fm_idx K,
                       double alpha, const void *A, fm_idx lda, const void *B, fm_idx ldb,
                       double beta, void *C, fm_idx ldc, int threads)
{
    fmb_task t;
    fm_idx w, panels, k_blocks;
    size_t el = is_float ? sizeof(float) : sizeof(double);
    t.ta = ta;
    t.tb = tb;
    t.is_float = is_float;
    t.M = M;
    t.N = N;
    t.K = K;
    t.lda = lda;
    t.ldb = ldb;
    t.ldc = ldc;
    t.alpha = alpha;
    t.beta = beta;
    t.A = A;
    t.B = B;
    t.C = C;
    w = fmb_width(&t);
    panels = (N + w - 1) / w;
    k_blocks = (K + FMB_KC - 1) / FMB_KC;
    t.kc = (K + k_blocks - 1) / k_blocks;
    t.row_blocks = (M + FMB_MC - 1) / FMB_MC;
    t.group_panels = t.row_blocks >= FMB_MANY_ROW_BLOCKS ? panels : FMB_GROUP_PANELS;
    t.groups = (panels + t.group_panels - 1) / t.group_panels;
    t.pack_in_blocks = t.row_blocks == 1;
    t.packed = fmb_thread_buffer((size_t)(panels * w * K) * el);
    if (t.packed == NULL)
        return -1;
    if (!t.pack_in_blocks)
        fmp_run(fmb_run_pack, &t, (int)panels, threads);
    fmp_run(fmb_run_block, &t, (int)(t.groups * t.row_blocks), threads);
    return 0;
}

#endif
