/* BLAS thread count for the duration of a kernel call, safe across threads.
 *
 * OpenBLAS has one process-wide thread count, and its results can differ in
 * the last bit between counts.  A kernel call asks for a count; calls that
 * ask for the same count run together, a call that asks for another waits
 * until they are done.  So every call runs entirely under the count it asked
 * for, whatever other threads do, and its result is the serial one.  The
 * user's own setting is restored when no kernel call is running.
 * want == 0 means "the setting found when no kernel call was running".
 *
 * A thread's own turns are counted (thread-local), so that Python code run
 * from inside a kernel call (signal handlers, see check_signals) runs with
 * them released (fm_threads_pause / fm_threads_resume): a handler that calls
 * a kernel wanting another count would otherwise wait for itself forever.
 * A forked child has only the forking thread: it starts with that thread's
 * turns alone (the others' never end there) and the user's setting back.
 */
#ifndef FASTMLP_THREADS_H
#define FASTMLP_THREADS_H

#include <pthread.h>

typedef void (*fm_set_threads_fn)(int);
typedef int (*fm_get_threads_fn)(void);

static fm_set_threads_fn fm_blas_set = 0;
static fm_get_threads_fn fm_blas_get = 0;
static pthread_mutex_t fm_threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fm_threads_free = PTHREAD_COND_INITIALIZER;
static int fm_active = 0;     /* kernel calls running under fm_current */
static int fm_saved = 0;      /* the count to restore when fm_active drops to 0 */
static int fm_current = 0;
static int fm_restore = 0;    /* a forked child: set fm_saved before the next turn */
static int fm_atfork_done = 0;
static __thread int fm_held = 0;        /* turns this thread holds */
static __thread int fm_held_want = 0;   /* ... and the count they asked for */

static void fm_threads_after_fork_in_child(void)
{
    /* the other threads did not survive the fork; the lock may look held */
    pthread_mutex_init(&fm_threads_lock, NULL);
    pthread_cond_init(&fm_threads_free, NULL);
    if (fm_active > fm_held && fm_current != fm_saved)
        fm_restore = 1;
    fm_active = fm_held;
}

static void fm_install_blas_threads(void *set_fn, void *get_fn)
{
    pthread_mutex_lock(&fm_threads_lock);
    fm_blas_set = (fm_set_threads_fn)set_fn;
    fm_blas_get = (fm_get_threads_fn)get_fn;
    if (!fm_atfork_done) {
        pthread_atfork(NULL, NULL, fm_threads_after_fork_in_child);
        fm_atfork_done = 1;
    }
    pthread_mutex_unlock(&fm_threads_lock);
}

/* 1 when the BLAS library's thread count can be set (OpenBLAS found). */
static int fm_blas_threads_known(void)
{
    return fm_blas_set != 0;
}

/* Returns 1 when a count was taken (call fm_threads_exit after), else 0. */
static int fm_threads_enter(int want)
{
    if (fm_blas_set == 0 || want < 0)
        return 0;
    pthread_mutex_lock(&fm_threads_lock);
    for (;;) {
        if (fm_active == 0) {
            if (fm_restore) {
                fm_blas_set(fm_saved);
                fm_restore = 0;
            }
            fm_saved = fm_blas_get();
            fm_current = want > 0 ? want : fm_saved;
            if (fm_current != fm_saved)
                fm_blas_set(fm_current);
            break;
        }
        if ((want > 0 ? want : fm_saved) == fm_current)
            break;
        pthread_cond_wait(&fm_threads_free, &fm_threads_lock);
    }
    fm_active++;
    pthread_mutex_unlock(&fm_threads_lock);
    fm_held++;
    fm_held_want = want;
    return 1;
}

static void fm_threads_exit(int entered)
{
    if (!entered)
        return;
    fm_held--;
    pthread_mutex_lock(&fm_threads_lock);
    if (--fm_active == 0) {
        if (fm_current != fm_saved)
            fm_blas_set(fm_saved);
        pthread_cond_broadcast(&fm_threads_free);
    }
    pthread_mutex_unlock(&fm_threads_lock);
}

/* 1 when the calling thread runs a kernel call under one BLAS thread: its
 * big products can then be split over fastmlp's pool, each block a
 * one-thread BLAS call (see gemm_split in _products.pxi). */
static int fm_blas_single_here(void)
{
    return fm_held > 0 && fm_held_want == 1;
}

/* Release the calling thread's turns (before running Python code inside a
 * kernel call); returns how many, with the count they wanted in *want. */
static int fm_threads_pause(int *want)
{
    int held = fm_held, i;
    *want = fm_held_want;
    for (i = 0; i < held; i++)
        fm_threads_exit(1);
    return held;
}

/* Take back the turns fm_threads_pause released (waiting as enter does). */
static void fm_threads_resume(int held, int want)
{
    while (held-- > 0)
        fm_threads_enter(want);
}

#endif
