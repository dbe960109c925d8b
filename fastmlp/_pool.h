/* A small pool of threads that spin between tasks, for work split into
 * blocks that take microseconds (one-sample predict, one batch of a narrow
 * network, a minibatch product's column panels), where waking a sleeping
 * thread would cost more than the work.
 *
 * fmp_run(fn, arg, n_blocks, threads) runs fn(arg, b) for every block b on
 * the caller and up to threads - 1 workers, and returns when all are done.
 * Workers spin for FMP_SPIN_NS after their last block before they sleep (as
 * ONNX Runtime's intra-op pool does).  Blocks are claimed from shared
 * counters, so a caller never waits for a worker that is asleep or
 * descheduled: it takes the remaining blocks itself and waits only for
 * blocks a worker has already started.  What a block computes must not
 * depend on the thread that runs it; then results do not depend on the
 * number of threads either.
 *
 * One caller uses the pool at a time; a concurrent caller runs its blocks
 * alone (same result).  After fork() the child starts without workers and
 * starts its own on first use.
 *
 * A worker descheduled in the middle of a block (another process wants the
 * core) makes the caller wait for it, often for a whole time slice: a
 * digits fit beside one busy process took 2.2x its time on one thread.  So
 * when the caller has waited longer than FMP_STALL_NS and longer than its
 * own blocks took, the pool counts as contended and the calls of the next
 * FMP_SOLO_NS run on the caller alone (same results), then try the workers
 * again; a stall within a second of the last one doubles that time (up to
 * 32 times).
 *
 * A worker that keeps running but slowly (its core shared with another
 * process's thread) never stalls that long, yet keeps the caller waiting on
 * every call: a digits fit on two threads then took 28 ms, against 22 ms on
 * one.  So the caller also adds up, over windows of FMP_SLOW_WINDOW_NS, the
 * time it spent on its own blocks and the time it then waited; a window
 * whose waits exceed its own time (with the blocks shared evenly, the caller
 * alone would have been faster) sends the calls of the next FMP_SOLO_NS to
 * the caller alone, that time never doubled: such phases came and went
 * within a few hundred milliseconds here (numpy's OpenBLAS threads spinning
 * after their work), and doubling would keep the pool alone for up to
 * 640 ms past one.
 */
#ifndef FASTMLP_POOL_H
#define FASTMLP_POOL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef void (*fmp_fn)(void *arg, int block);

/* The pool is one per process: its state and fmp_run are defined in the
 * Cython module's unit; the other C units of the extension (_narrow_*.c,
 * built in parallel) see only fmp_run's declaration. */
#if defined(__GNUC__)
#define FMP_API __attribute__((visibility("hidden")))
#else
#define FMP_API
#endif
FMP_API void fmp_run(fmp_fn fn, void *arg, int n_blocks, int threads);

#ifndef FMP_DECLARATIONS_ONLY
#define FMP_MAX_WORKERS 3       /* threads besides the caller */
#define FMP_SPIN_NS 300000      /* idle spin before a worker sleeps */
#define FMP_STALL_NS 1000000    /* a wait for a worker this long: it was descheduled */
#define FMP_SOLO_NS 20000000    /* then the caller runs alone this long */
#define FMP_SOLO_MAX_LEVEL 5    /* ... at most 2^5 times as long after stalls in a row */
#define FMP_SLOW_WINDOW_NS 2000000  /* the caller's own work and waits, added up this long */


/* Each participant (0 the caller, 1.. the workers) owns a range of the
 * blocks, kept in a claim word: generation (32 bits) | front (16) | back
 * (16), blocks front..back-1 left.  A participant takes blocks from the
 * front of its own range, then from the backs of the others' ranges (whose
 * owners are late or asleep).  So from call to call each thread computes
 * the same blocks and finds their data in its own cache. */
#define FMP_PARTS (FMP_MAX_WORKERS + 1)
#define FMP_GEN(c) ((uint32_t)((c) >> 32))
#define FMP_FRONT(c) ((int)(((c) >> 16) & 0xffff))
#define FMP_BACK(c) ((int)((c) & 0xffff))
#define FMP_MAX_BLOCKS 0x7fff

typedef struct {
    uint64_t word;
    char pad[56];               /* one cache line each */
} fmp_claim;

static struct {
    fmp_claim claim[FMP_PARTS]; /* (atomic) */
    pthread_mutex_t lock;       /* pairs with wake; guards starting workers */
    pthread_cond_t wake;
    int started;                /* workers running */
    int sleeping;               /* workers waiting on wake (atomic) */
    int busy;                   /* a caller owns the pool (atomic) */
    int atfork_done;
    int64_t solo_until;         /* calls before this time run alone (atomic) */
    int64_t last_stall;         /* when the last stall was seen (by the pool's caller) */
    int stall_level;            /* the solo time of the last stall: FMP_SOLO_NS << level */
    int64_t own_ns;             /* this window's time of the caller on its blocks */
    int64_t wait_ns;            /* ... and waiting for the workers' (see the top) */
    int64_t own_total;          /* the caller's time on its blocks, all calls so far */
    int64_t wait_total;         /* ... and waiting for the workers' (fmp_caller_totals) */
    int slow_off;               /* 1: the windows are not kept (for measurements) */
    uint32_t gen;               /* generation of the latest task (atomic) */
    int done;                   /* blocks finished in this generation (atomic) */
    fmp_fn fn;                  /* the task: stable while its generation */
    void *arg;                  /* has blocks left */
} fmp_pool __attribute__((aligned(64))) = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static inline void fmp_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t fmp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Depth of pool blocks the calling thread is running: work inside a block
 * is never split over the pool again (see fmp_inside_block). */
static __thread int fmp_in_block;

/* 1 inside a block of fmp_run: a product there stays on this thread. */
static int fmp_inside_block(void)
{
    return fmp_in_block > 0;
}

static inline void fmp_run_block(fmp_fn fn, void *arg, int block)
{
    fmp_in_block++;
    fn(arg, block);
    fmp_in_block--;
}

/* Take one block of generation `gen` from participant `part`'s range (its
 * front or its back) and run it; 0 when none is left there. */
static int fmp_take_one(uint32_t gen, int part, int from_front)
{
    uint64_t *word = &fmp_pool.claim[part].word;
    uint64_t c = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    while (FMP_GEN(c) == gen && FMP_FRONT(c) < FMP_BACK(c)) {
        uint64_t next = from_front ? c + (1u << 16) : c - 1;
        if (__atomic_compare_exchange_n(word, &c, next, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            /* the generation cannot end before this block is done: its
             * task is stable */
            fmp_run_block(fmp_pool.fn, fmp_pool.arg,
                          from_front ? FMP_FRONT(c) : FMP_BACK(c) - 1);
            __atomic_add_fetch(&fmp_pool.done, 1, __ATOMIC_RELEASE);
            return 1;
        }
    }
    return 0;
}

/* Participant `self`'s share of generation `gen`: its own range, then what
 * is left of the others'. */
static void fmp_take_blocks(uint32_t gen, int self)
{
    int i;
    while (fmp_take_one(gen, self, 1))
        ;
    for (i = 1; i < FMP_PARTS; i++)
        while (fmp_take_one(gen, (self + i) % FMP_PARTS, 0))
            ;
}

static void *fmp_worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    uint32_t seen = __atomic_load_n(&fmp_pool.gen, __ATOMIC_ACQUIRE);
    int64_t idle_since = fmp_now_ns();
    unsigned spins = 0;
    for (;;) {
        uint32_t gen = __atomic_load_n(&fmp_pool.gen, __ATOMIC_ACQUIRE);
        if (gen != seen) {
            seen = gen;
            fmp_take_blocks(gen, self);
            idle_since = fmp_now_ns();
            continue;
        }
        fmp_relax();
        if (++spins % 64 == 0 && fmp_now_ns() - idle_since > FMP_SPIN_NS) {
            pthread_mutex_lock(&fmp_pool.lock);
            __atomic_add_fetch(&fmp_pool.sleeping, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&fmp_pool.gen, __ATOMIC_SEQ_CST) == seen)
                pthread_cond_wait(&fmp_pool.wake, &fmp_pool.lock);
            __atomic_sub_fetch(&fmp_pool.sleeping, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&fmp_pool.lock);
            idle_since = fmp_now_ns();
        }
    }
    return NULL;
}

static void fmp_after_fork_in_child(void)
{
    /* the workers did not survive the fork; the lock may look held */
    pthread_mutex_init(&fmp_pool.lock, NULL);
    pthread_cond_init(&fmp_pool.wake, NULL);
    fmp_pool.started = 0;
    fmp_pool.sleeping = 0;
    fmp_pool.busy = 0;
}

/* Start workers until `want` run (at most FMP_MAX_WORKERS); failures leave
 * fewer workers, which only costs speed. */
static void fmp_start_workers(int want)
{
    pthread_attr_t attr;
    pthread_t tid;
    want = want > FMP_MAX_WORKERS ? FMP_MAX_WORKERS : want;
    if (__atomic_load_n(&fmp_pool.started, __ATOMIC_ACQUIRE) >= want)
        return;
    pthread_mutex_lock(&fmp_pool.lock);
    if (!fmp_pool.atfork_done) {
        pthread_atfork(NULL, NULL, fmp_after_fork_in_child);
        fmp_pool.atfork_done = 1;
    }
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        while (fmp_pool.started < want
               && pthread_create(&tid, &attr, fmp_worker,
                                 (void *)(intptr_t)(fmp_pool.started + 1)) == 0)
            __atomic_add_fetch(&fmp_pool.started, 1, __ATOMIC_RELEASE);
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&fmp_pool.lock);
}

/* A worker kept the pool's caller waiting (see the top): calls run alone
 * for a while, longer after stalls in a row. */
static void fmp_stalled(int64_t now)
{
    int level = now - fmp_pool.last_stall < 1000000000 ? fmp_pool.stall_level + 1 : 0;
    fmp_pool.stall_level = level > FMP_SOLO_MAX_LEVEL ? FMP_SOLO_MAX_LEVEL : level;
    fmp_pool.last_stall = now;
    __atomic_store_n(&fmp_pool.solo_until, now + ((int64_t)FMP_SOLO_NS << fmp_pool.stall_level),
                     __ATOMIC_RELAXED);
}

/* Nanoseconds of running alone left (0: the workers are used). */
static int64_t fmp_solo_left_ns(void)
{
    int64_t left = __atomic_load_n(&fmp_pool.solo_until, __ATOMIC_RELAXED) - fmp_now_ns();
    return left > 0 ? left : 0;
}

/* Add a call's own time and wait to the window (see the top); after a
 * window that waited longer than it worked, calls run alone for
 * FMP_SOLO_NS.  By the pool's caller only. */
static void fmp_add_to_window(int64_t own, int64_t wait, int64_t now)
{
    fmp_pool.own_total += own;
    fmp_pool.wait_total += wait;
    if (fmp_pool.slow_off)
        return;
    fmp_pool.own_ns += own;
    fmp_pool.wait_ns += wait;
    if (fmp_pool.own_ns + fmp_pool.wait_ns < FMP_SLOW_WINDOW_NS)
        return;
    if (fmp_pool.wait_ns > fmp_pool.own_ns
            && now > __atomic_load_n(&fmp_pool.solo_until, __ATOMIC_RELAXED))
        __atomic_store_n(&fmp_pool.solo_until, now + FMP_SOLO_NS, __ATOMIC_RELAXED);
    fmp_pool.own_ns = 0;
    fmp_pool.wait_ns = 0;
}

/* The pool's caller's time on its own blocks and waiting for the workers',
 * added up over every call that used the workers (a fit's duel reads them
 * around its pooled window).  By the pool's caller only. */
static void fmp_caller_totals(int64_t *own, int64_t *wait)
{
    *own = fmp_pool.own_total;
    *wait = fmp_pool.wait_total;
}

/* Keep (1) or drop (0) the slow-worker windows (for measurements). */
static void fmp_set_slow_windows(int on)
{
    fmp_pool.slow_off = !on;
    fmp_pool.own_ns = 0;
    fmp_pool.wait_ns = 0;
}

/* Forget past stalls (for tests). */
static void fmp_forget_stalls(void)
{
    __atomic_store_n(&fmp_pool.solo_until, 0, __ATOMIC_RELAXED);
    fmp_pool.last_stall = 0;
    fmp_pool.stall_level = 0;
    fmp_pool.own_ns = 0;
    fmp_pool.wait_ns = 0;
}

/* Calls from this thread run their blocks alone while set (a fit's duel
 * between the pool and one thread, see _fit_loop.pxi: same results). */
static __thread int fmp_solo_here;

static void fmp_set_solo_here(int on)
{
    fmp_solo_here = on;
}

/* Run fn(arg, b) for b in 0..n_blocks-1 on up to `threads` threads (the
 * caller included); returns when every block is done. */
FMP_API void fmp_run(fmp_fn fn, void *arg, int n_blocks, int threads)
{
    int b, parts, i;
    uint32_t gen;
    unsigned spins = 0;
    int64_t start, own_end = 0, now;
    if (threads < 2 || n_blocks < 2 || n_blocks > FMP_MAX_BLOCKS || fmp_solo_here
            || (start = fmp_now_ns()) < __atomic_load_n(&fmp_pool.solo_until,
                                                          __ATOMIC_RELAXED)
            || __atomic_exchange_n(&fmp_pool.busy, 1, __ATOMIC_ACQUIRE)) {
        for (b = 0; b < n_blocks; b++)
            fmp_run_block(fn, arg, b);
        return;
    }
    fmp_start_workers(threads - 1);
    parts = 1 + __atomic_load_n(&fmp_pool.started, __ATOMIC_ACQUIRE);
    parts = parts > threads ? threads : parts;
    fmp_pool.fn = fn;
    fmp_pool.arg = arg;
    __atomic_store_n(&fmp_pool.done, 0, __ATOMIC_RELAXED);
    gen = __atomic_load_n(&fmp_pool.gen, __ATOMIC_RELAXED) + 1;
    for (i = 0; i < FMP_PARTS; i++) {
        uint64_t lo = i < parts ? (uint64_t)(n_blocks * i / parts) : 0;
        uint64_t hi = i < parts ? (uint64_t)(n_blocks * (i + 1) / parts) : 0;
        __atomic_store_n(&fmp_pool.claim[i].word, ((uint64_t)gen << 32) | (lo << 16) | hi,
                         __ATOMIC_RELAXED);
    }
    __atomic_store_n(&fmp_pool.gen, gen, __ATOMIC_SEQ_CST);   /* publishes all above */
    if (__atomic_load_n(&fmp_pool.sleeping, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&fmp_pool.lock);
        pthread_cond_broadcast(&fmp_pool.wake);
        pthread_mutex_unlock(&fmp_pool.lock);
    }
    fmp_take_blocks(gen, 0);
    own_end = fmp_now_ns();
    while (__atomic_load_n(&fmp_pool.done, __ATOMIC_ACQUIRE) < n_blocks) {
        fmp_relax();
        if (++spins % 256 == 0) {       /* ~ every few microseconds of waiting */
            now = fmp_now_ns();
            if (now - own_end > FMP_STALL_NS && now - own_end > own_end - start
                    && now > __atomic_load_n(&fmp_pool.solo_until, __ATOMIC_RELAXED))
                fmp_stalled(now);
        }
    }
    now = spins ? fmp_now_ns() : own_end;
    fmp_add_to_window(own_end - start, now - own_end, now);
    __atomic_store_n(&fmp_pool.busy, 0, __ATOMIC_RELEASE);
}

#endif /* FMP_DECLARATIONS_ONLY */
#endif
