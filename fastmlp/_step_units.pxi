# Training step "units": one hidden layer split by its units, one hand-off a step.
# Included by _kernels.pyx.

# A float32 plain-SGD step of a network with one hidden layer whose products
# all run in fastmlp's own kernels splits the hidden units into parts, each
# a pool block that keeps its own columns of W1 (and entries of b1) and rows
# of W2 from step to step, so a part's weights stay in one core's cache (the
# pool gives a block to the same thread from call to call).  A part needs
# the others' work once a step: the output logits are the sum of the parts'
# H_p @ W2[p].  So one hand-off a step: each part adds the partial logits of
# batch t in order, computes the outputs, objective and output deltas
# (m x n_out, small; a part that starts after part 0 has them reads them),
# then its hidden deltas and updates, then the forward pass of batch t + 1
# with its own weights: its hidden activations and partial logits.
# (Measured against the row parts: bench/NOTES.md, step "units".)
# The parts depend on the shape alone, never on the thread count, and every
# value is computed as the same sums: results do not depend on the threads.
cdef enum:
    MAX_UNIT_PARTS = 4
    UNIT_PANEL = 16         # part boundaries fall on the register blocks' panels


cdef int unit_parts(Spec* s, Py_ssize_t m) noexcept nogil:
    """Parts (1, 2 or 4) of the hidden units for :func:`unit_hand_off` of a
    float32 batch of m rows: 1 (the step is not taken) unless the network
    has one hidden layer of at least UNIT_PANEL units a part, each part does
    ROW_PART_MACS forward multiply-adds at least, and no product of a part
    goes to BLAS (whose own threads would compete with the pool's)."""
    cdef Py_ssize_t n_in, n_h, n_out, nu, k
    cdef int parts = MAX_UNIT_PARTS
    if s.L != 2:
        return 1
    n_in = s.sizes[0]
    n_h = s.sizes[1]
    n_out = s.sizes[2]
    while parts > 1 and (m * n_h * (n_in + n_out) < parts * ROW_PART_MACS
                         or n_h < parts * UNIT_PANEL):
        parts //= 2
    if parts == 1:
        return 1
    for k in range(parts):
        nu = unit_bound(n_h, parts, k + 1) - unit_bound(n_h, parts, k)
        if (blas_product(True, c'N', m, nu, n_in) or blas_product(True, c'N', m, n_out, nu)
                or blas_product(True, c'T', m, nu, n_out)
                or blas_product(True, c'N', nu, n_out, m)
                or blas_product(True, c'N', n_in, nu, m)):
            return 1
    return parts


cdef inline Py_ssize_t unit_bound(Py_ssize_t n_h, int parts, int k) noexcept nogil:
    """The first hidden unit of part k (k = parts: n_h), on a panel boundary."""
    if k == 0:
        return 0
    if k == parts:
        return n_h
    return (n_h * k // parts + UNIT_PANEL // 2) // UNIT_PANEL * UNIT_PANEL


cdef extern from *:
    """
    static inline void fm_store_release(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int fm_load_acquire(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    """
    void fm_store_release(int* p, int v) nogil
    int fm_load_acquire(const int* p) nogil


cdef struct UnitTask:
    Spec* s
    float* params
    int parts
    Py_ssize_t bs           # rows of the largest batch: part k's rows of hid at bs * u_k
    float* hid              # hidden activations, part k's m x nu at bs * u_k
    float* dhid             # their deltas, the same layout
    float* zpart            # 2 x parts x bs x n_out partial logits (by step parity)
    float* outs             # parts x (3 bs n_out + n_out + n_h): each part's
                            # outputs, logits, output deltas and column sums
                            # (b2's, then its hidden units')
    float* backup           # every part's parameters before a step not proven safe
    const double* bounds    # the bounds of sgd_safe before the step (read only)
    double l2
    float lr
    # the step whose update this hand-off makes (unless update is False)
    bint update
    int par                 # its parity: its partial logits, sum|X| and penalty
    const float* X
    const float* Y
    const float* w
    Py_ssize_t m
    double M
    # the batch whose forward pass this hand-off makes (unless fwd is False)
    bint fwd
    const float* Xn
    Py_ssize_t mn
    # by step parity and part: sum|X| over the part's share of the rows, and
    # sum(W**2) over the part's weights
    double xsum[2][MAX_UNIT_PARTS]
    double sq[2][MAX_UNIT_PARTS]
    # part 0's report of the update: objective, status, advanced bounds;
    # out_ready (atomic) set once its outputs, objective and status are there
    double obj
    int status
    double bounds_out[4]
    int out_ready


cdef enum:
    UNIT_DONE = 0           # updated, proven safe
    UNIT_NOT_FINITE = 1     # the objective is not finite: nothing updated
    UNIT_UNSAFE = 2         # updated with the parts backed up: check and restore
    UNIT_RESTORED = 3       # (unit_hand_off) that update was not finite: restored


cdef void unit_block(void* arg, int k) noexcept nogil:
    """Block k of a hand-off of :func:`unit_hand_off`: part k's update for
    the step ``par`` (if ``update``), then its forward pass of the next batch
    (if ``fwd``).

    The update: every part adds the partial logits in order and computes the
    outputs, objective and output deltas of the whole batch (the same values
    in each), decides with sgd_safe whether the step is proven safe (else it
    backs up its parameters), then computes its hidden deltas and updates its
    rows of W2 and columns of W1 and b1.  b2 is left to the caller (each part
    reads it); part 0 reports the objective, the status, the advanced bounds
    and the output deltas' column sums.  The forward pass: its hidden
    activations, partial logits ``H_k @ W2[u_k:u_k+nu]``, sum|X| over its
    share of the rows and sum(W**2) over its weights (for the penalty).

    A part that starts after part 0 has its outputs (one thread runs the
    parts in turn) reads them instead of computing the same values again.
    """
    cdef UnitTask* t = <UnitTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t n_in = s.sizes[0], n_h = s.sizes[1], n_out = s.sizes[2]
    cdef Py_ssize_t u0 = unit_bound(n_h, t.parts, k), nu = unit_bound(n_h, t.parts, k + 1) - u0
    cdef Py_ssize_t m = t.m, mn = t.mn, bs = t.bs, i, j, r0, r1
    cdef Py_ssize_t zsize = bs * n_out
    cdef float* W1 = t.params
    cdef float* b1 = W1 + n_in * n_h
    cdef float* W2 = b1 + n_h
    cdef float* b2 = W2 + n_h * n_out
    cdef float* H = t.hid + bs * u0
    cdef float* DH = t.dhid + bs * u0
    cdef float* P = t.outs + k * (3 * zsize + n_out + n_h)
    cdef float* Z = P + zsize
    cdef float* D = Z + zsize
    cdef float* sums = D + zsize
    cdef const float* zk
    cdef double obj, sq = 0, sum_x = 0, sum_d
    cdef double bnd[4]
    cdef double safe_sums[4]
    cdef float lr = t.lr, keep
    cdef bint safe, one_pass_out
    cdef int nxt = t.par if not t.update else 1 - t.par
    if t.update and k > 0 and fm_load_acquire(&t.out_ready):
        if t.status == UNIT_NOT_FINITE:
            return
        safe = t.status == UNIT_DONE
        D = t.outs + 2 * zsize                  # part 0's output deltas
    elif t.update:
        one_pass_out = s.loss == LOSS_LOG and s.output == OUT_SOFTMAX and n_out <= 16
        if one_pass_out:    # outputs, objective and deltas in one pass
            obj = fm_softmax_xent_delta_f(t.zpart + t.par * t.parts * zsize, t.parts, zsize,
                                          b2, t.Y, t.w, m, n_out, 1.0 / t.M, D)
        else:
            memcpy(P, t.zpart + t.par * t.parts * zsize, m * n_out * sizeof(float))
            for j in range(1, t.parts):
                zk = t.zpart + (t.par * t.parts + j) * zsize
                for i in range(m * n_out):
                    P[i] += zk[i]
            if s.loss != LOSS_SQUARED:         # the loss reads the logits
                memcpy(Z, P, m * n_out * sizeof(float))
                bias_act(Z, b2, m, n_out, ACT_IDENTITY)
            bias_act(P, b2, m, n_out, output_act(s.output))
            obj = data_loss_sum(s, Z if s.loss != LOSS_SQUARED else <float*>NULL, P, t.Y, t.w, m)
        if t.l2 != 0:
            for j in range(t.parts):
                sq += t.sq[t.par][j]
            obj += 0.5 * t.l2 * sq
        if not isfinite(obj):
            if k == 0:
                t.obj = obj
                t.status = UNIT_NOT_FINITE
                fm_store_release(&t.out_ready, 1)
            return
        if not one_pass_out:
            output_delta(s, P, t.Y, t.w, D, m, 1.0 / t.M)
        # bound the step (see unit_hand_off)
        for j in range(t.parts):
            sum_x += t.xsum[t.par][j]
        sum_d = abs_sum(D, m * n_out)
        safe_sums[0] = sum_x
        safe_sums[1] = <double>n_h * t.bounds[1] * sum_d * slope_bound(s.hidden)
        safe_sums[2] = <double>n_h * (t.bounds[0] * (sum_x + <double>m)
                                      + <double>m * value_offset_bound(s.hidden))
        safe_sums[3] = sum_d
        memcpy(bnd, t.bounds, 2 * sizeof(double))
        safe = sgd_safe(s, m, True, t.l2 / t.M, lr, bnd, safe_sums)
        if k == 0:
            t.obj = obj
            t.status = UNIT_DONE if safe else UNIT_UNSAFE
            t.bounds_out[0] = bnd[0]
            t.bounds_out[1] = bnd[1]
            fm_store_release(&t.out_ready, 1)
            colsum(D, m, n_out, sums)           # b2's gradient, for the caller
    if t.update:
        if not safe:
            for i in range(n_in):
                memcpy(t.backup + i * n_h + u0, W1 + i * n_h + u0, nu * sizeof(float))
            memcpy(t.backup + n_in * n_h + u0, b1 + u0, nu * sizeof(float))
            memcpy(t.backup + (W2 - W1) + u0 * n_out, W2 + u0 * n_out,
                   nu * n_out * sizeof(float))
        keep = 1 - lr * <float>(t.l2 / t.M)
        gemm_rm(c'N', c'T', <int>m, <int>nu, <int>n_out, <float>1.0, D, <int>n_out,
                W2 + u0 * n_out, <int>n_out, <float>0.0, DH, <int>nu, 1)
        times_dact(DH, dact_source(s, H), m * nu, s.hidden)
        gemm_rm(c'T', c'N', <int>nu, <int>n_out, <int>m, -lr, H, <int>nu, D, <int>n_out,
                keep, W2 + u0 * n_out, <int>n_out, 1)
        gemm_rm(c'T', c'N', <int>n_in, <int>nu, <int>m, -lr, t.X, <int>n_in, DH, <int>nu,
                keep, W1 + u0, <int>n_h, 1)
        colsum(DH, m, nu, sums + n_out)
        for j in range(nu):
            b1[u0 + j] -= lr * sums[n_out + j]
    if t.fwd:
        gemm_rm(c'N', c'N', <int>mn, <int>nu, <int>n_in, <float>1.0, t.Xn, <int>n_in,
                W1 + u0, <int>n_h, <float>0.0, H, <int>nu, 1)
        bias_act(H, b1 + u0, mn, nu, s.hidden, slopes_at(s, H))
        gemm_rm(c'N', c'N', <int>mn, <int>n_out, <int>nu, <float>1.0, H, <int>nu,
                W2 + u0 * n_out, <int>n_out, <float>0.0,
                t.zpart + (nxt * t.parts + k) * zsize, <int>n_out, 1)
        r0 = mn * k // t.parts
        r1 = mn * (k + 1) // t.parts
        t.xsum[nxt][k] = abs_sum(t.Xn + r0 * n_in, (r1 - r0) * n_in)
        if t.l2 != 0:
            sq = 0
            for i in range(n_in):
                for j in range(nu):
                    sq += <double>W1[i * n_h + u0 + j] * W1[i * n_h + u0 + j]
            for i in range(nu * n_out):
                sq += <double>W2[u0 * n_out + i] * W2[u0 * n_out + i]
            t.sq[nxt][k] = sq


cdef int unit_hand_off(UnitTask* t, int threads, double* bounds) noexcept nogil:
    """Run one hand-off of UnitTask's blocks (set up by the caller: the
    update of the step ``par`` and/or the forward pass of the next batch) and
    finish the update: b2's, then for a step not proven safe the check of
    every parameter (restored from the backup if one is not finite).

    Returns UNIT_DONE, UNIT_NOT_FINITE (the objective, in ``t.obj``, is not
    finite: nothing updated) or UNIT_RESTORED (the update made a parameter
    non-finite: all restored).  ``bounds`` (sgd_safe's, 4 values) are
    advanced past the step, or recomputed after a checked one.

    The step is guarded by sgd_safe as sgd_layers' steps are, with the
    hidden deltas' sum bounded before they exist (n_h * bound(W2) *
    sum|D_out| * slope_bound) and, for an unbounded activation, sum|H| too
    (n_h * (bound(W1) * (sum|X| + m) + m * value_offset_bound): |act(z)| <=
    |z| + value_offset_bound).
    """
    cdef Spec* s = t.s
    cdef Py_ssize_t n_out = s.sizes[2], j
    cdef float* b2 = t.params + s.n_params - n_out
    cdef float* g2 = t.outs + 3 * t.bs * n_out     # part 0's column sums
    t.bounds = bounds
    t.out_ready = 0
    fmp_run(unit_block, t, t.parts, threads)
    if not t.update:
        return UNIT_DONE
    if t.status == UNIT_NOT_FINITE:
        return UNIT_NOT_FINITE
    if t.status == UNIT_UNSAFE:
        memcpy(t.backup + s.n_params - n_out, b2, n_out * sizeof(float))
    for j in range(n_out):
        b2[j] -= t.lr * g2[j]
    if t.status == UNIT_DONE:
        bounds[0] = t.bounds_out[0]
        bounds[1] = t.bounds_out[1]
        return UNIT_DONE
    if not params_finite(t.params, s.n_params):
        memcpy(t.params, t.backup, s.n_params * sizeof(float))
        return UNIT_RESTORED
    exact_bounds(s, t.params, bounds)
    return UNIT_DONE


cdef double step_units(Fit* f, floating* params, Batch* b, int parts) noexcept nogil:
    """One plain-SGD batch in ``parts`` parts of the hidden units (float32
    only): this batch's update and the next one's forward pass in one
    hand-off when the next splits alike.  Its objective, or a non-finite
    value (see take_step)."""
    cdef UnitTask* u = &f.units
    cdef Data* d = &f.data
    cdef Py_ssize_t nxt = b.start + b.m, mn = min(d.bs, d.n - nxt)
    cdef StepChoice next_step
    cdef const float* wn
    cdef int status
    if floating is float:
        u.parts = parts
        u.par = f.upar
        if not f.pending:
            u.update = False
            u.fwd = True
            u.Xn = <const float*>b.X
            u.mn = b.m
            unit_hand_off(u, f.s.pool_threads, f.work.bounds)
        u.update = True
        u.X = <const float*>b.X
        u.Y = <const float*>b.Y
        u.w = <const float*>b.w
        u.m = b.m
        u.M = b.M
        u.fwd = False
        if nxt < d.n:
            next_step = step_of(f, mn)
            if next_step.kind == STEP_UNITS and next_step.parts == parts:
                if d.gather:
                    gather_rows(d, d.order + nxt, mn, <float*>f.work.xalt,
                                <float*>f.work.yalt, <float*>f.work.walt)
                    u.Xn = <const float*>f.work.xalt
                    wn = <const float*>f.work.walt      # NULL when w is
                else:
                    u.Xn = <const float*>d.X + nxt * d.n_in
                    wn = NULL if d.w == NULL else <const float*>d.w + nxt
                u.fwd = total_weight(wn, mn) > 0
                u.mn = mn
        status = unit_hand_off(u, f.s.pool_threads, f.work.bounds)
        if status == UNIT_NOT_FINITE:
            return u.obj
        if status == UNIT_RESTORED:
            return INFINITY
        f.pending = u.fwd
        if f.pending:
            f.upar = 1 - f.upar
        return u.obj
    return 0
