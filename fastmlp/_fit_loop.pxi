# The fit loop: shuffling, batch gathering, signal checks.
# Included by _kernels.pyx.

cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef void shuffle_index(Py_ssize_t* order, Py_ssize_t n, uint64_t* state) noexcept nogil:
    cdef Py_ssize_t i, j, t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>(splitmix64(state) % <uint64_t>(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t


cdef void gather_rows(Data* d, const Py_ssize_t* rows, Py_ssize_t m, floating* xbuf,
                      floating* ybuf, floating* wbuf) noexcept nogil:
    """Copy rows ``rows[0..m-1]`` of X, Y and w (unless NULL) into the buffers."""
    cdef Py_ssize_t i, n_in = d.n_in, n_out = d.n_out
    cdef const floating* X = <const floating*>d.X
    cdef const floating* Y = <const floating*>d.Y
    cdef const floating* w = <const floating*>d.w
    if d.scatter:
        scatter_rows(d, rows, m, xbuf)
    for i in range(m):
        if not d.sparse:
            memcpy(xbuf + i * n_in, X + rows[i] * n_in, n_in * sizeof(floating))
        memcpy(ybuf + i * n_out, Y + rows[i] * n_out, n_out * sizeof(floating))
        if w != NULL:
            wbuf[i] = w[rows[i]]


cdef void scatter_rows(Data* d, const Py_ssize_t* rows, Py_ssize_t m,
                       floating* xbuf) noexcept nogil:
    """Rows ``rows[0..m-1]`` of the CSR matrix X, dense, into xbuf: zeros,
    then each stored value added at its column (duplicates summed, in their
    stored order, as scipy's toarray sums them)."""
    cdef Py_ssize_t i, k, stop
    cdef const floating* values = <const floating*>d.X
    cdef floating* row
    memset(xbuf, 0, m * d.n_in * sizeof(floating))
    for i in range(m):
        row = xbuf + i * d.n_in
        stop = d.indptr[rows[i] + 1]
        for k in range(d.indptr[rows[i]], stop):
            row[d.indices[k]] += values[k]


cdef int run_signal_handlers() except -1 with gil:
    if PyErr_CheckSignals() < 0:
        return -1
    return 0


cdef int check_signals() except -1 nogil:
    """Run Python's signal handlers (Ctrl-C) from inside a nogil loop, with
    this thread's BLAS thread-count turn released while they run: a handler
    may call kernels that want another count (_threads.h)."""
    cdef int want = 0
    cdef int held = fm_threads_pause(&want)
    try:
        run_signal_handlers()
    finally:
        fm_threads_resume(held, want)
    return 0


cdef bint alloc_work(Fit* f, size_t elsize) noexcept nogil:
    """The fit's workspace (all of it: nothing is allocated in the loop);
    False when an allocation failed (free_work frees what was made)."""
    cdef Work* w = &f.work
    cdef Spec* s = f.s
    cdef FitPlan* p = &f.plan
    cdef Py_ssize_t bs = f.data.bs, n_out = s.sizes[s.L], n_in = s.sizes[0], P = s.n_params
    cdef bint units = p.full.kind == STEP_UNITS or p.last.kind == STEP_UNITS
    cdef bint first = p.full.kind == STEP_FIRST or p.last.kind == STEP_FIRST
    cdef bint weighted = f.data.w != NULL
    cdef Py_ssize_t n_state = (0 if f.opt.state == NULL else
                               2 * P if counts_steps(f.opt.optimizer) else P)
    memset(w, 0, sizeof(Work))
    if p.one_pass:
        w.nwork = malloc(p.narrow_parts * fm_narrow_work_bytes(s.sizes, s.L))
        if p.prepared:
            w.prep = malloc(fm_narrow_prep_bytes(n_in, n_out, f.data.n, p.nv, elsize))
            if w.prep == NULL:
                return False
        if w.nwork == NULL:
            return False
    else:
        # (gelu, or dropout: the slopes beside the activations, bs * per_row values on)
        w.acts = malloc((2 if pass_keeps_slopes(s) else 1) * bs * s.per_row * elsize)
        w.deltas = malloc(bs * s.per_row * elsize)
        if w.acts == NULL or w.deltas == NULL:
            return False
        if pass_keeps_slopes(s):
            s.slope_off = bs * s.per_row
        if s.loss != LOSS_SQUARED:      # the loss reads the logits
            w.zout = malloc(bs * n_out * elsize)
            if w.zout == NULL:
                return False
    w.backup = malloc((P if p.fused else P + n_state) * elsize)
    if w.backup == NULL:
        return False
    if p.fused and not p.one_pass:
        w.bounds = <double*>malloc(2 * s.L * sizeof(double))
        if w.bounds == NULL:
            return False
    if not p.one_pass:      # (the general update's: fused_optimizer_step)
        w.part_sums = <double*>calloc((MAX_ROW_PARTS + 1) * 2 * s.L, sizeof(double))
        if w.part_sums == NULL:
            return False
        w.batch_sums = w.part_sums + MAX_ROW_PARTS * 2 * s.L
    if not p.fused or p.one_pass or p.sparse:
        w.grads = malloc(P * elsize)
        if w.grads == NULL:
            return False
    w.scratch = malloc(f.widest * elsize)
    if w.scratch == NULL:
        return False
    if units:
        w.zparts = <float*>malloc(2 * MAX_UNIT_PARTS * bs * n_out * sizeof(float))
        w.unit_outs = <float*>malloc(MAX_UNIT_PARTS * (3 * bs * n_out + n_out + s.sizes[1])
                                     * sizeof(float))
        if w.zparts == NULL or w.unit_outs == NULL:
            return False
    if first:
        w.first_sums = <float*>malloc(MAX_FIRST_PARTS * f.widest * sizeof(float))
        if w.first_sums == NULL:
            return False
    if f.data.gather:
        # (step "sparse" reads X's rows from the CSR arrays: one value of xbuf)
        if not alloc_batch(&w.xbuf, &w.ybuf, &w.wbuf, bs,
                           1 if f.data.sparse and not f.data.scatter else n_in, n_out,
                           weighted, elsize):
            return False
        if units and not alloc_batch(&w.xalt, &w.yalt, &w.walt, bs, n_in, n_out, weighted,
                                     elsize):
            return False
    return True


cdef bint alloc_batch(void** x, void** y, void** w, Py_ssize_t bs, Py_ssize_t n_in,
                      Py_ssize_t n_out, bint weighted, size_t elsize) noexcept nogil:
    """Buffers for one gathered batch (w only when weighted)."""
    x[0] = malloc(bs * n_in * elsize)
    y[0] = malloc(bs * n_out * elsize)
    if weighted:
        w[0] = malloc(bs * elsize)
    return x[0] != NULL and y[0] != NULL and (not weighted or w[0] != NULL)


cdef void free_work(Work* w) noexcept nogil:
    free(w.acts)
    free(w.deltas)
    free(w.zout)
    free(w.grads)
    free(w.backup)
    free(w.scratch)
    free(w.xbuf)
    free(w.ybuf)
    free(w.wbuf)
    free(w.xalt)
    free(w.yalt)
    free(w.walt)
    free(w.bounds)
    free(w.part_sums)
    free(w.zparts)
    free(w.unit_outs)
    free(w.first_sums)
    free(w.nwork)
    free(w.prep)
    memset(w, 0, sizeof(Work))


cdef Py_ssize_t run_epochs(Fit* f, floating* params, uint64_t* rng, double* epoch_loss,
                           Py_ssize_t epochs, Py_ssize_t check_every,
                           int* stop) except -1 nogil:
    """Run ``epochs`` epochs of the planned steps; returns the epochs completed
    (see ``train``)."""
    cdef Data* d = &f.data
    cdef Py_ssize_t e, start, m, batches = 0, done = 0
    cdef double total, obj
    cdef bint halted = False
    cdef Batch b
    for e in range(epochs):
        if d.shuffle:
            shuffle_index(d.order, d.n, rng)
        if f.work.bounds != NULL and e > 0:
            exact_bounds(f.s, params, f.work.bounds)    # tight again (see sgd_safe)
        if f.fused_updates > 0 and e > 0:
            exact_step_bounds(f)        # (gradient_bound's proofs loosen them)
        f.pending = False
        total = 0
        start = 0
        while start < d.n:
            m = min(d.bs, d.n - start)
            batch_rows(f, params, start, m, &b)
            if check_every > 0:
                batches += 1
                if batches >= check_every:
                    batches = 0
                    check_signals()
                    if stop != NULL and stop[0] != 0:
                        halted = True
                        break
            if f.drop != NULL:      # the batch's number in the fit: its dropout masks
                f.s.drop_batch = f.drop[1]
                f.drop[1] += 1
            if b.M <= 0:            # a batch of zero total weight carries no gradient
                start += m
                continue
            obj = take_step(f, params, &b)
            if not isfinite(obj):
                total = obj
                break
            start += m
            total += obj
        if halted:
            break
        if not isfinite(total):
            epoch_loss[e] = total
            break
        epoch_loss[e] = total / d.W_total
        done += 1
    return done


cdef void batch_rows(Fit* f, floating* params, Py_ssize_t start, Py_ssize_t m,
                     Batch* b) noexcept nogil:
    """Batch ``start .. start+m-1`` of the epoch's order: rows of the data in
    place, or gathered (by "units" one step ahead: then its buffers swap in)."""
    cdef Data* d = &f.data
    cdef Work* w = &f.work
    b.start = start
    b.m = m
    if d.gather:
        if f.pending:
            w.xbuf, w.xalt = w.xalt, w.xbuf
            w.ybuf, w.yalt = w.yalt, w.ybuf
            w.wbuf, w.walt = w.walt, w.wbuf
        else:
            gather_rows(d, d.order + start, m, <floating*>w.xbuf, <floating*>w.ybuf,
                        <floating*>w.wbuf)
        b.X = w.xbuf
        b.Y = w.ybuf
        b.w = w.wbuf
    else:
        b.X = <const floating*>d.X + start * d.n_in
        b.Y = <const floating*>d.Y + start * d.n_out
        b.w = NULL if d.w == NULL else <const floating*>d.w + start
    b.M = total_weight(<const floating*>b.w, m)


# The duel: a core slowed by another process makes every split step wait for
# it, so a fit compares its full steps on the pool with the same steps on one
# thread (every pool task gives the same results on any thread count) and
# keeps the faster.  Each side gets a window of at least DUEL_WINDOW steps
# and DUEL_WINDOW_NS (shorter windows measured the host's noise); the winner
# then runs DUEL_REPEAT times as many steps (one thread: DUEL_SOLO_FIRST
# times), twice that (up to DUEL_MAX times) while the same side keeps
# winning.  One thread's first hold is short because a slowed core is often
# a passing thing: numpy's OpenBLAS threads spin ~0.1 s after each product,
# and a 32-step fit started after one ran all its steps on one thread.  A
# pooled window in which the caller waited for the workers less than
# DUEL_QUIET_WAIT of its own time on the blocks wins without a one-thread
# window: the workers kept up, so one thread would have had their blocks to
# do as well (the one-thread window was a quarter of a one-epoch fit of a
# 1024-wide net, bench/NOTES.md).
cdef enum:
    DUEL_POOLED = 0
    DUEL_SOLO = 1
    DUEL_CHOSEN = 2
    DUEL_WINDOW = 8
    DUEL_REPEAT = 16
    DUEL_SOLO_FIRST = 2
    DUEL_MAX = 256
cdef int64_t DUEL_WINDOW_NS = 1500000
cdef double DUEL_MARGIN = 1.1
cdef double DUEL_QUIET_WAIT = 0.1
cdef double DUEL_SKIP_MIN_STEP_NS = 1e6     # ... for steps at least this long (see pool_kept_up)
# A busy core outlasts one fit: a fit starting within DUEL_MEMORY_NS of a duel
# that chose one thread starts on one thread, held as long as that choice was
# (then duels as usual, the hold doubling while one thread keeps winning).
cdef int64_t DUEL_MEMORY_NS = 1000000000
cdef int64_t last_solo_choice_ns = -DUEL_MEMORY_NS     # (races are benign)
cdef int last_solo_repeat = DUEL_SOLO_FIRST


cdef bint uses_pool(FitPlan* p, StepChoice c, Py_ssize_t n_params) noexcept nogil:
    """Whether a step of this choice hands work to the pool."""
    if c.kind == STEP_LAYERS:
        return p.pool_threads > 1 or (not p.fused and p.step_threads > 1
                                      and n_params > FMO_BLOCK)
    return c.kind >= 0 and c.parts > 1 and p.step_threads > 1


cdef void duel_start(Duel* d, FitPlan* p, Py_ssize_t n_params) noexcept nogil:
    memset(d, 0, sizeof(Duel))
    d.active = uses_pool(p, p.full, n_params)
    d.phase = DUEL_POOLED
    d.repeat = DUEL_REPEAT
    d.t0 = fmp_now_ns()
    fmp_caller_totals(&d.own0, &d.wait0)
    if d.active and d.t0 - last_solo_choice_ns < DUEL_MEMORY_NS:
        # as long as a side that keeps winning runs: each pooled window on a
        # busy core risks a worker's whole time slice (a 12 ms fit took 16)
        d.phase = DUEL_CHOSEN
        d.solo = True
        d.repeat = last_solo_repeat
        d.left = last_solo_repeat * 2 * DUEL_WINDOW
        fmp_set_solo_here(1)


cdef void duel_step(Duel* d) noexcept nogil:
    """Before a full step: end the phase whose time is up, set the mode."""
    cdef int64_t now
    d.done += 1
    if d.phase == DUEL_CHOSEN and d.done <= d.left:
        if d.solo:
            d.solo_steps += 1
        return
    now = fmp_now_ns()
    if d.phase != DUEL_CHOSEN and (d.done <= DUEL_WINDOW or now - d.t0 < DUEL_WINDOW_NS):
        if d.phase == DUEL_SOLO:
            d.solo_steps += 1
        return
    if d.phase == DUEL_POOLED:
        d.pooled_ns = (now - d.t0) / (d.done - 1)
        d.window = d.done - 1
        if pool_kept_up(d):
            duel_choose(d, False, now, 0)
        else:
            d.phase = DUEL_SOLO
    elif d.phase == DUEL_SOLO:
        # the pool must win by DUEL_MARGIN: its own fallback (_pool.h: after
        # a stall, calls run alone for a while) can make a pooled window as
        # fast as one thread, and the slow pooled steps then come back
        duel_choose(d, (now - d.t0) / (d.done - 1) < d.pooled_ns * DUEL_MARGIN, now,
                    d.done - 1)
    else:
        d.phase = DUEL_POOLED
        fmp_caller_totals(&d.own0, &d.wait0)
    d.done = 1
    d.t0 = now
    fmp_set_solo_here(d.phase == DUEL_SOLO or (d.phase == DUEL_CHOSEN and d.solo))
    if d.phase == DUEL_SOLO or (d.phase == DUEL_CHOSEN and d.solo):
        d.solo_steps += 1


cdef bint pool_kept_up(Duel* d) noexcept nogil:
    """Whether the pooled window's caller waited for the workers less than
    DUEL_QUIET_WAIT of its own time on the blocks (see the duel's comment),
    in steps of at least DUEL_SKIP_MIN_STEP_NS.  Shorter steps always get a
    one-thread window: beside a busy core the caller itself may be the slowed
    thread (its spinning worker holds the free core), and then it never
    waits; 8-64-64-1 and 32-64x6-1 fits ran 2x their one-thread time.  On one
    thread the worker sleeps and the caller moves to the free core."""
    cdef int64_t own, wait
    if d.pooled_ns < DUEL_SKIP_MIN_STEP_NS:
        return False
    fmp_caller_totals(&own, &wait)
    own -= d.own0
    wait -= d.wait0
    return own > 0 and wait < DUEL_QUIET_WAIT * own


cdef void duel_choose(Duel* d, bint solo, int64_t now, Py_ssize_t solo_window) noexcept nogil:
    """Hold the choice for ``d.repeat`` windows (doubled while the same side
    wins); ``solo_window``: the steps of the one-thread window (0 when none ran)."""
    global last_solo_choice_ns, last_solo_repeat
    if solo == d.solo:
        d.repeat = min(2 * d.repeat, <int>DUEL_MAX)
    else:
        d.repeat = DUEL_SOLO_FIRST if solo else DUEL_REPEAT
    d.solo = solo
    last_solo_choice_ns = now if solo else -DUEL_MEMORY_NS
    last_solo_repeat = d.repeat if solo else DUEL_SOLO_FIRST
    d.phase = DUEL_CHOSEN
    d.left = d.repeat * (d.window + solo_window)


cdef double take_step(Fit* f, floating* params, Batch* b) noexcept nogil:
    """One batch's planned step: its objective (before the update), or a
    value that is not finite when the objective or the update was not."""
    cdef StepChoice c = step_of(f, b.m)
    f.counts[c.kind] += 1
    if f.duel.active and b.m == f.data.bs:
        duel_step(&f.duel)
    if c.kind == STEP_NARROW:
        return step_narrow(f, params, b, c.parts)
    if c.kind == STEP_UNITS:
        return step_units(f, params, b, c.parts)
    if c.kind == STEP_ROWS:
        return step_rows(f, params, b, c.parts)
    if c.kind == STEP_FIRST:
        return step_first(f, params, b, c.parts)
    if c.kind == STEP_SPARSE:
        return step_sparse(f, params, b)
    return step_layers(f, params, b)


cdef double order_weight(Data* d, const floating* w) noexcept nogil:
    """The total sample weight of the rows trained on."""
    cdef double t = 0
    cdef Py_ssize_t i
    if w == NULL:
        return d.n
    if not d.gather:
        return total_weight(w, d.n)
    for i in range(d.n):
        t += w[d.order[i]]
    return t


cdef Py_ssize_t fit(Fit* f, floating* params, uint64_t* rng, double* epoch_loss,
                    Py_ssize_t epochs, Py_ssize_t check_every, int* stop) except -1 nogil:
    """Set up the workspace's contents and the tasks, then train (see ``train``)."""
    cdef Spec* s = f.s
    cdef Py_ssize_t done = 0
    f.data.W_total = order_weight(&f.data, <const floating*>f.data.w)
    if f.work.bounds != NULL:       # plain SGD's update guard (see sgd_safe)
        exact_bounds(s, params, f.work.bounds)
    if floating is float:
        setup_tasks(f, params)
    if not f.plan.fused:
        init_optimizer_task(f, floating is float)
        f.opt_task.p = params
        exact_step_bounds(f)
    if f.plan.one_pass:
        fm_narrow_init(f.work.nwork, s.sizes, s.L, f.plan.nv)
    if f.plan.prepared:
        if floating is float:
            fm_narrow_prepare_f(f.plan.nv, s.sizes[0], s.sizes[s.L], <const float*>f.data.X,
                                <const float*>f.data.Y, <const float*>f.data.w, f.data.n,
                                f.work.prep)
        else:
            fm_narrow_prepare_d(f.plan.nv, s.sizes[0], s.sizes[s.L], <const double*>f.data.X,
                                <const double*>f.data.Y, <const double*>f.data.w, f.data.n,
                                f.work.prep)
        f.work.prep_base = <char*>((<size_t>f.work.prep + 31) & ~(<size_t>31))
    if f.plan.epochs_in_c and f.data.W_total > 0:
        return narrow_epochs(f, params, epoch_loss, epochs, check_every, stop)
    duel_start(&f.duel, &f.plan, s.n_params)
    try:
        return run_epochs(f, params, rng, epoch_loss, epochs, check_every, stop)
    finally:
        fmp_set_solo_here(0)


cdef void setup_tasks(Fit* f, float* params) noexcept nogil:
    """Point the float32 steps' pool tasks at the parameters and workspace."""
    cdef Spec* s = f.s
    cdef Work* w = &f.work
    cdef Py_ssize_t l
    f.part_spec = s[0]
    f.part_spec.pool_threads = 1
    f.rows.s = &f.part_spec
    f.rows.params = params
    f.rows.acts = <float*>w.acts
    f.rows.deltas = <float*>w.deltas
    f.rows.zout = <float*>w.zout
    f.rows.sums = w.part_sums
    f.upd.s = s
    f.upd.params = params
    f.upd.acts = <float*>w.acts
    f.upd.deltas = <float*>w.deltas
    f.n_update_blocks = 0
    for l in range(s.L):
        f.n_update_blocks += <int>update_blocks(s.sizes[l], s.sizes[l + 1])
    f.units.s = s
    f.units.params = params
    f.units.bs = f.data.bs
    f.units.hid = <float*>w.acts
    f.units.dhid = <float*>w.deltas
    f.units.zpart = w.zparts
    f.units.outs = w.unit_outs
    f.units.backup = <float*>w.backup
    f.units.l2 = f.opt.l2
    f.units.lr = <float>f.opt.lr
    f.fst.s = s
    f.fst.params = params
    f.fst.acts = <float*>w.acts
    f.fst.deltas = <float*>w.deltas
    f.fst.sums = w.first_sums
    f.fst.widest = f.widest
    f.fst.lr = <float>f.opt.lr
    if s.L > 1:
        f.rest_spec = spec_of(s.sizes + 1, s.L, s.hidden, s.output, s.loss)
        f.rest_spec.slope_off = s.slope_off     # (the same workspace)
        f.rest_spec.blas_one = True     # the "first" step's parts call BLAS on one thread
        f.rest_rows.s = &f.rest_spec
        f.rest_rows.params = params + s.sizes[0] * s.sizes[1] + s.sizes[1]
        f.rest_rows.zout = <float*>w.zout
        f.rest_rows.sums = w.part_sums
