# Forward passes of many rows in fixed chunks that the pool's threads claim.
# Included by _kernels.pyx.
#
# Split over two threads in equal halves (each product's bands, or BLAS's own
# threads), a predict beside a busy core waited for the half on the slowed
# core: 10,000 rows of a 784-512-256-10 network took 1.15-1.3x their time on
# one thread.  Here each pool block claims the next chunk of rows from a
# counter until none is left and runs that chunk's forward pass on its own
# thread (one-thread BLAS): a slowed thread just takes fewer chunks.  The
# last rows (two chunks' worth to three) go in quarter chunks, so that the
# threads finish within a quarter chunk of each other.  The chunks are fixed
# from the start of X (their sizes follow the network and the row count,
# never the thread count) and a row's outputs depend on its chunk alone, so
# results do not depend on the number of threads.  (The register blocks that
# step "rows" gives products whose B a core's cache holds, blas_one, were
# slower than BLAS on chunks this tall: a 10,000-row 100-256-256-1 predict
# took 18.0 ms of CPU against 17.7.)

cdef Py_ssize_t POOL_CHUNK_BLOCKS = 4   # the pool's most threads (_blas_threads): workspaces


cdef struct ChunkTask:
    Spec s                  # the call's, on one thread (pool_threads 1)
    const void* params
    const void* X
    void* out
    void* work              # a workspace a block (rows x per_row each); NULL for one layer
    Py_ssize_t n            # rows of X
    Py_ssize_t rows         # rows a chunk (the workspaces' size) ...
    Py_ssize_t n_whole      # ... for this many chunks from the start of X,
    Py_ssize_t small        # then chunks of this many (the last: what is left)
    Py_ssize_t n_chunks
    Py_ssize_t next_chunk   # the next chunk to claim (atomic)
    int failed              # a chunk's rows of X held a non-finite value (atomic)
    bint check_x


cdef extern from *:
    """
    static inline Py_ssize_t fm_claim_next(Py_ssize_t *counter) {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    static inline void fm_flag_set(int *p) { __atomic_store_n(p, 1, __ATOMIC_RELAXED); }
    static inline int fm_flag_get(const int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    """
    Py_ssize_t fm_claim_next(Py_ssize_t* counter) nogil
    void fm_flag_set(int* p) nogil
    int fm_flag_get(const int* p) nogil


cdef inline Py_ssize_t chunk_rows(Spec* s, Py_ssize_t chunk, size_t elsize) noexcept nogil:
    """Rows of a chunk of :func:`forward_chunks`: at most ``chunk`` and
    FORWARD_POOL_ROWS, and POOL_CHUNK_BLOCKS workspaces within PASS_WORK_BYTES
    (>= 1).  Not the thread count: the chunks are the same on any."""
    cdef Py_ssize_t fit = <Py_ssize_t>(PASS_WORK_BYTES
                                       // (<size_t>(POOL_CHUNK_BLOCKS * s.per_row) * elsize))
    return max(<Py_ssize_t>1, min(min(chunk, FORWARD_POOL_ROWS), fit))


cdef int forward_chunks(Spec* s, const floating* params, const floating* X, Py_ssize_t n,
                        floating* out, Py_ssize_t rows, bint check_x) noexcept nogil:
    """:func:`forward_rows`'s pass in chunks of ``rows`` rows (the last ones
    of a quarter of that, see the top) claimed by up to
    ``s.pool_threads`` pool blocks, each chunk on one thread (the caller holds
    one BLAS thread).  Returns 0, -1 when the workspaces cannot be
    allocated, 1 when X holds a value that is not finite (``check_x``)."""
    cdef ChunkTask t
    cdef int blocks = <int>min(<Py_ssize_t>s.pool_threads, POOL_CHUNK_BLOCKS)
    t.s = s[0]
    t.s.pool_threads = 1
    t.params, t.X, t.out = params, X, out
    t.n, t.rows, t.check_x = n, rows, check_x
    t.n_whole = max(<Py_ssize_t>0, (n - 2 * rows) // rows)     # leave 2-3 chunks' rows
    t.small = max(<Py_ssize_t>1, rows // 4)
    t.n_chunks = t.n_whole + (n - t.n_whole * rows + t.small - 1) // t.small
    t.next_chunk = 0
    t.failed = 0
    blocks = <int>min(<Py_ssize_t>blocks, t.n_chunks)
    t.work = NULL
    if s.L > 1:
        t.work = malloc(blocks * rows * s.per_row * sizeof(floating))
        if t.work == NULL:
            return -1
    fmp_run(chunk_block_f if floating is float else chunk_block_d, &t, blocks,
            s.pool_threads)
    free(t.work)
    return 1 if t.failed else 0


cdef void chunk_block_f(void* arg, int block) noexcept nogil:
    run_chunks(<ChunkTask*>arg, block, <float*>NULL)


cdef void chunk_block_d(void* arg, int block) noexcept nogil:
    run_chunks(<ChunkTask*>arg, block, <double*>NULL)


cdef inline void run_chunks(ChunkTask* t, int block, floating* dtype) noexcept nogil:
    """Pool block ``block`` of a ChunkTask: chunks claimed one after another
    into its own workspace, their outputs copied to ``out``, until none is
    left or a chunk found a non-finite value (``dtype``: its type only)."""
    cdef Spec* s = &t.s
    cdef const floating* params = <const floating*>t.params
    cdef const floating* X = <const floating*>t.X
    cdef floating* out = <floating*>t.out
    cdef floating* work = NULL
    cdef Py_ssize_t n_out = s.sizes[s.L], r0, m
    cdef Py_ssize_t last = s.per_row - n_out
    cdef Py_ssize_t c
    cdef bint ok
    if t.work != NULL:
        work = <floating*>t.work + block * t.rows * s.per_row
    while not fm_flag_get(&t.failed):
        c = fm_claim_next(&t.next_chunk)
        if c >= t.n_chunks:
            return
        if c < t.n_whole:
            r0, m = c * t.rows, t.rows
        else:
            r0 = t.n_whole * t.rows + (c - t.n_whole) * t.small
            m = min(t.small, t.n - r0)
        if work == NULL:
            # one layer: its rows of out are the chunk's activations
            ok = forward_part(s, params, X, t.n, r0, m, out, NULL, NULL, t.check_x)
        else:
            ok = forward_batch(s, params, X + r0 * s.sizes[0], m, work, NULL, NULL,
                               t.check_x)
            if ok:
                memcpy(out + r0 * n_out, work + m * last, m * n_out * sizeof(floating))
        if not ok:
            fm_flag_set(&t.failed)
