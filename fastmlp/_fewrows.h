/* Products with few rows (one-sample predict), split by columns over a small
 * pool of threads that spin between calls.
 *
 * Why: predicting one row of a 784-256-128-10 network reads 0.94 MB of
 * weights to do 0.24 M multiply-adds: the time is the time to stream the
 * weights, and one core streams them from L3.  Split by columns over two
 * cores, each core reads its own half from its own L2 (512 KB on the
 * machine measured), call after call.  Waking a sleeping thread costs more
 * than the whole product, so workers spin for FMR_SPIN_NS after their last
 * block before they sleep (as ONNX Runtime's intra-op pool does).
 *
 * Results do not depend on the thread count: a column block is always
 * computed by the same code in the same order, whichever thread takes it.
 * Blocks are claimed from a shared counter, so a caller never waits for a
 * worker that is asleep or descheduled: it takes the remaining blocks itself
 * and waits only for blocks a worker has already started.
 *
 * One caller uses the pool at a time; a concurrent caller computes its
 * product alone (same result).  After fork() the child starts without
 * workers and starts its own on first use.
 */
#ifndef FASTMLP_FEWROWS_H
#define FASTMLP_FEWROWS_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include "_vmath.h"

#define FMR_MAX_ROWS 4          /* products with at most this many rows */
#define FMR_MAX_WORKERS 3       /* threads besides the caller */
#define FMR_SPIN_NS 300000      /* idle spin before a worker sleeps */

/* ------------------------------------------------------------------ */
/* Column-block kernels: C[:, j0:j0+width] = A @ B[:, j0:j0+width]     */
/* A is M x K (M <= FMR_MAX_ROWS), B is K x N, all row-major.          */
/* ------------------------------------------------------------------ */

typedef double fmr_vec_d __attribute__((vector_size(32)));
typedef float fmr_vec_f __attribute__((vector_size(32)));

#define FMR_NV 8                /* vectors per block: the block width */

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
    for (p = 0; p < K; p++) {                                                         \
        const T *brow = B + p * ldb;                                             \
        T a;                                                                     \
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
/* The pool                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
    int M, is_float;
    fm_idx N, K, lda, ldb, ldc;
    const void *A, *B;
    void *C;
} fmr_task;

/* Each participant (0 the caller, 1.. the workers) owns a range of the
 * blocks, kept in a claim word: generation (32 bits) | front (16) | back
 * (16), blocks front..back-1 left.  A participant takes blocks from the
 * front of its own range, then from the backs of the others' ranges (whose
 * owners are late or asleep).  So from call to call each thread computes
 * the same columns and finds their weights in its own cache. */
#define FMR_PARTS (FMR_MAX_WORKERS + 1)
#define FMR_GEN(c) ((uint32_t)((c) >> 32))
#define FMR_FRONT(c) ((int)(((c) >> 16) & 0xffff))
#define FMR_BACK(c) ((int)((c) & 0xffff))
#define FMR_MAX_BLOCKS 0x7fff

typedef struct {
    uint64_t word;
    char pad[56];               /* one cache line each */
} fmr_claim;

static struct {
    fmr_claim claim[FMR_PARTS]; /* (atomic) */
    pthread_mutex_t lock;       /* pairs with wake; guards starting workers */
    pthread_cond_t wake;
    int started;                /* workers running */
    int sleeping;               /* workers waiting on wake (atomic) */
    int busy;                   /* a caller owns the pool (atomic) */
    int atfork_done;
    uint32_t gen;               /* generation of the latest task (atomic) */
    int done;                   /* blocks finished in this generation (atomic) */
    fmr_task task;              /* stable while its generation has blocks left */
} fmr_pool __attribute__((aligned(64))) = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static inline void fmr_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t fmr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fmr_run_block(const fmr_task *t, int block)
{
    if (t->is_float)
        fmr_block_f(t->M, t->N, t->K, (const float *)t->A, t->lda, (const float *)t->B,
                    t->ldb, (float *)t->C, t->ldc, (fm_idx)block * FMR_BW_f);
    else
        fmr_block_d(t->M, t->N, t->K, (const double *)t->A, t->lda, (const double *)t->B,
                    t->ldb, (double *)t->C, t->ldc, (fm_idx)block * FMR_BW_d);
}

/* Take one block of generation `gen` from participant `part`'s range (its
 * front or its back) and run it; 0 when none is left there. */
static int fmr_take_one(uint32_t gen, int part, int from_front)
{
    uint64_t *word = &fmr_pool.claim[part].word;
    uint64_t c = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    while (FMR_GEN(c) == gen && FMR_FRONT(c) < FMR_BACK(c)) {
        uint64_t next = from_front ? c + (1u << 16) : c - 1;
        if (__atomic_compare_exchange_n(word, &c, next, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            /* the generation cannot end before this block is done: its
             * task is stable */
            fmr_run_block(&fmr_pool.task, from_front ? FMR_FRONT(c) : FMR_BACK(c) - 1);
            __atomic_add_fetch(&fmr_pool.done, 1, __ATOMIC_RELEASE);
            return 1;
        }
    }
    return 0;
}

/* Participant `self`'s share of generation `gen`: its own range, then what
 * is left of the others'. */
static void fmr_take_blocks(uint32_t gen, int self)
{
    int i;
    while (fmr_take_one(gen, self, 1))
        ;
    for (i = 1; i < FMR_PARTS; i++)
        while (fmr_take_one(gen, (self + i) % FMR_PARTS, 0))
            ;
}

static void *fmr_worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    uint32_t seen = __atomic_load_n(&fmr_pool.gen, __ATOMIC_ACQUIRE);
    int64_t idle_since = fmr_now_ns();
    unsigned spins = 0;
    for (;;) {
        uint32_t gen = __atomic_load_n(&fmr_pool.gen, __ATOMIC_ACQUIRE);
        if (gen != seen) {
            seen = gen;
            fmr_take_blocks(gen, self);
            idle_since = fmr_now_ns();
            continue;
        }
        fmr_relax();
        if (++spins % 64 == 0 && fmr_now_ns() - idle_since > FMR_SPIN_NS) {
            pthread_mutex_lock(&fmr_pool.lock);
            __atomic_add_fetch(&fmr_pool.sleeping, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&fmr_pool.gen, __ATOMIC_SEQ_CST) == seen)
                pthread_cond_wait(&fmr_pool.wake, &fmr_pool.lock);
            __atomic_sub_fetch(&fmr_pool.sleeping, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&fmr_pool.lock);
            idle_since = fmr_now_ns();
        }
    }
    return NULL;
}

static void fmr_after_fork_in_child(void)
{
    /* the workers did not survive the fork; the lock may look held */
    pthread_mutex_init(&fmr_pool.lock, NULL);
    pthread_cond_init(&fmr_pool.wake, NULL);
    fmr_pool.started = 0;
    fmr_pool.sleeping = 0;
    fmr_pool.busy = 0;
}

/* Start workers until `want` run (at most FMR_MAX_WORKERS); failures leave
 * fewer workers, which only costs speed. */
static void fmr_start_workers(int want)
{
    pthread_attr_t attr;
    pthread_t tid;
    want = want > FMR_MAX_WORKERS ? FMR_MAX_WORKERS : want;
    if (__atomic_load_n(&fmr_pool.started, __ATOMIC_ACQUIRE) >= want)
        return;
    pthread_mutex_lock(&fmr_pool.lock);
    if (!fmr_pool.atfork_done) {
        pthread_atfork(NULL, NULL, fmr_after_fork_in_child);
        fmr_pool.atfork_done = 1;
    }
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        while (fmr_pool.started < want
               && pthread_create(&tid, &attr, fmr_worker,
                                 (void *)(intptr_t)(fmr_pool.started + 1)) == 0)
            __atomic_add_fetch(&fmr_pool.started, 1, __ATOMIC_RELEASE);
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&fmr_pool.lock);
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
    fm_idx bw = is_float ? FMR_BW_f : FMR_BW_d;
    int n_blocks = (int)((N + bw - 1) / bw), b, parts, i;
    uint32_t gen;
    if (threads < 2 || n_blocks < 2 || n_blocks > FMR_MAX_BLOCKS
            || __atomic_exchange_n(&fmr_pool.busy, 1, __ATOMIC_ACQUIRE)) {
        for (b = 0; b < n_blocks; b++)
            fmr_run_block(&t, b);
        return;
    }
    fmr_start_workers(threads - 1);
    parts = 1 + __atomic_load_n(&fmr_pool.started, __ATOMIC_ACQUIRE);
    parts = parts > threads ? threads : parts;
    fmr_pool.task = t;
    __atomic_store_n(&fmr_pool.done, 0, __ATOMIC_RELAXED);
    gen = __atomic_load_n(&fmr_pool.gen, __ATOMIC_RELAXED) + 1;
    for (i = 0; i < FMR_PARTS; i++) {
        uint64_t lo = i < parts ? (uint64_t)(n_blocks * i / parts) : 0;
        uint64_t hi = i < parts ? (uint64_t)(n_blocks * (i + 1) / parts) : 0;
        __atomic_store_n(&fmr_pool.claim[i].word, ((uint64_t)gen << 32) | (lo << 16) | hi,
                         __ATOMIC_RELAXED);
    }
    __atomic_store_n(&fmr_pool.gen, gen, __ATOMIC_SEQ_CST);   /* publishes all above */
    if (__atomic_load_n(&fmr_pool.sleeping, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&fmr_pool.lock);
        pthread_cond_broadcast(&fmr_pool.wake);
        pthread_mutex_unlock(&fmr_pool.lock);
    }
    fmr_take_blocks(gen, 0);
    while (__atomic_load_n(&fmr_pool.done, __ATOMIC_ACQUIRE) < n_blocks)
        fmr_relax();
    __atomic_store_n(&fmr_pool.busy, 0, __ATOMIC_RELEASE);
}

#endif
