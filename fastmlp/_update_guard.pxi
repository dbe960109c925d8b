# The update guard: proofs that a plain-SGD step stays finite, backup and restore.
# Included by _kernels.pyx.

cdef void exact_bounds(Spec* s, const floating* params, double* bounds) noexcept nogil:
    """bounds[l] = the largest |value| of layer l's weights and biases (NaN
    when one is not finite: then no step is proven safe)."""
    cdef Layer y = first_layer(s, 0)
    while y.l < s.L:
        if floating is float:
            bounds[y.l] = fm_abs_max_f(params + y.w, y.b + y.n_out - y.w)
        else:
            bounds[y.l] = fm_abs_max_d(params + y.w, y.b + y.n_out - y.w)
        next_layer(s, &y)


cdef inline bint activation_bounded(Spec* s) noexcept nogil:
    """Whether the hidden activations lie in [-1, 1] (see sgd_safe): sigmoid's
    and tanh's, unless dropout scales them by 1 / (1 - p) (then their sums
    are read, as the other activations' are)."""
    return (s.hidden == ACT_SIGMOID or s.hidden == ACT_TANH) and not s.dropout


cdef inline double slope_bound(int act) noexcept nogil:
    """A bound on |f'(z)| of a hidden activation, with room for rounding:
    1 for all but gelu, whose largest slope is 1.1289 (near z = 1.5)."""
    return 1.13 if act == ACT_GELU else 1.0


cdef inline double value_offset_bound(int act) noexcept nogil:
    """c with |f(z)| <= |z| + c for a hidden activation: 0 for all but
    softplus (log 2 at z = 0; softplus(z) <= max(z, 0) + log 2)."""
    return 0.6932 if act == ACT_SOFTPLUS else 0.0


cdef void safe_sums(Spec* s, const floating* X, Py_ssize_t m, Py_ssize_t r0, Py_ssize_t mr,
                    const floating* acts, const floating* deltas, double* sums) noexcept nogil:
    """The sums :func:`sgd_safe` reads, over rows r0 .. r0+mr-1 of a batch of
    m rows: each layer's sum|A| of its input (sums[2l]; not for sigmoid or
    tanh activations, bounded by their count) and sum|D| (sums[2l + 1])."""
    cdef Layer y = first_layer(s, m)
    while y.l < s.L:
        if y.l == 0:
            sums[0] = abs_sum(X + r0 * y.n_in, mr * y.n_in)
        elif not activation_bounded(s):
            sums[2 * y.l] = abs_sum(acts + input_offset(&y) + r0 * y.n_in, mr * y.n_in)
        sums[2 * y.l + 1] = abs_sum(deltas + y.a + r0 * y.n_out, mr * y.n_out)
        next_layer(s, &y)


cdef bint sgd_safe(Spec* s, Py_ssize_t m, bint is_float, double decay, double lr,
                   double* bounds, const double* sums) noexcept nogil:
    """Whether :func:`sgd_layers` with a batch of m rows whose deltas give
    ``sums`` (see :func:`safe_sums`) cannot make a parameter non-finite, in
    float32 (``is_float``) or float64, given bounds[l] >= every |parameter|
    of layer l; if so the bounds are advanced past the step (bounds holds
    2 * L values: the second half is workspace).

    Each update of a weight is lr * sum_p a_pi d_pj, at most lr * sum|A| *
    sum|D| in size (likewise the products' partial sums before the factor
    lr, and lr * sum|D| for a bias), so the new values are within
    max(|1 - lr*decay|, 1) * bound + lr * sum|D| * (sum|A| + 1).  Safe when
    every sum is finite and each of those stays below SAFE_FRACTION of the
    largest finite value, and so does sum|D| itself: a step whose deltas
    are bounded before they exist (unit_hand_off, FirstSplitTask) must not
    pass with deltas that overflow where sum|A| < 1 and lr is tiny.

    Sigmoid and tanh activations lie in [-1, 1], so sum|A| <= the count of
    A's values, known without reading A (the bounds' share of a digits fit's
    perf samples: 1.2% -> 0.8%).  A value of A that is not
    finite cannot pass unseen that way: it makes its row of every later
    layer's products, the output and the output deltas NaN, and sum|D| of
    the last layer fails the test."""
    cdef double limit = SAFE_FRACTION * (3.4028234663852886e38 if is_float
                                         else 1.7976931348623157e308)
    cdef double grow = max(fabs(1 - lr * decay), 1.0), sum_a, sum_d, step
    cdef double* next_bounds = bounds + s.L
    cdef Py_ssize_t l, n_in
    for l in range(s.L):
        n_in = s.sizes[l]
        if l > 0 and activation_bounded(s):
            sum_a = <double>(m * n_in)
        else:
            sum_a = sums[2 * l]
        sum_d = sums[2 * l + 1]
        step = lr * sum_d * (sum_a + 1)
        next_bounds[l] = grow * bounds[l] + step
        if not (sum_d < limit and sum_a * sum_d < limit and step < limit
                and next_bounds[l] < limit):
            return False            # (NaN fails every comparison)
    for l in range(s.L):
        bounds[l] = next_bounds[l]
    return True


cdef inline bint sgd_step(floating* p, const floating* g, floating* backup, floating lr,
                          Py_ssize_t n) noexcept nogil:
    """p -= lr * g; False (and p unchanged) if that made any value non-finite."""
    if floating is float:
        return fm_sgd_step_f(p, g, backup, lr, n) != 0
    else:
        return fm_sgd_step_d(p, g, backup, lr, n) != 0


cdef inline bint keep_if_finite(floating* params, const floating* backup,
                                Py_ssize_t n) noexcept nogil:
    """True when the n parameters are all finite; else they are put back from
    ``backup`` (the copy taken before the step): False."""
    if params_finite(params, n):
        return True
    memcpy(params, backup, n * sizeof(floating))
    return False


cdef bint plain_sgd_update(Fit* f, floating* params, Batch* b, int kind) noexcept nogil:
    """Plain SGD from the batch's deltas, guarded: unless sgd_safe proves the
    step keeps every parameter finite, a copy is kept, and put back if the
    step made one non-finite (False)."""
    cdef Spec* s = f.s
    cdef floating lr = <floating>f.opt.lr
    cdef double decay = f.opt.l2 / b.M
    cdef bint safe = sgd_safe(s, b.m, floating is float, decay, lr, f.work.bounds,
                              f.work.batch_sums)
    if not safe:
        memcpy(f.work.backup, params, s.n_params * sizeof(floating))
    sgd_apply(f, params, b, kind, lr, decay)
    if safe:
        return True
    if not keep_if_finite(params, <floating*>f.work.backup, s.n_params):
        return False
    exact_bounds(s, params, f.work.bounds)
    return True


cdef void sgd_apply(Fit* f, floating* params, Batch* b, int kind, floating lr,
                    double decay) noexcept nogil:
    """``W <- (1 - lr*decay) W - lr * A^T D``, ``b <- b - lr * colsum(D)``
    for every layer: on the "first" step's parts, in column blocks on the
    pool (every value summed as by the whole product), or layer by layer."""
    cdef Spec* s = f.s
    if floating is float:
        if kind == STEP_FIRST:
            f.fst.keep = 1 - lr * <float>decay
            fmp_run(first_split_update, &f.fst, f.fst.parts, f.plan.step_threads)
            return
        if s.pool_threads > 1 and update_on_pool(s, b.m):
            f.upd.X = <const float*>b.X
            f.upd.m = b.m
            f.upd.lr = lr
            f.upd.keep = 1 - lr * <float>decay
            fmp_run(update_block, &f.upd, f.n_update_blocks, s.pool_threads)
            return
    sgd_layers(s, params, <const floating*>b.X, b.m, <floating*>f.work.acts,
               <floating*>f.work.deltas, <floating>decay, lr, <floating*>f.work.scratch)


cdef double abs_max(const void* x, Py_ssize_t n, bint is_float) noexcept nogil:
    """max |x| over n values (NaN when one is not finite; 0 for none)."""
    if x == NULL or n == 0:
        return 0
    if is_float:
        return fm_abs_max_f(<const float*>x, n)
    return fm_abs_max_d(<const double*>x, n)


cdef void exact_step_bounds(Fit* f) noexcept nogil:
    """The general update's bounds from the values themselves."""
    cdef fmo_task* t = &f.opt_task
    f.step_bounds.p = abs_max(t.p, t.n, t.is_float)
    f.step_bounds.s1 = abs_max(t.s1, t.n, t.is_float)
    f.step_bounds.s2 = abs_max(t.s2, t.n, t.is_float)


cdef inline double as_stored(double x, bint is_float) noexcept nogil:
    """x as the step's dtype holds it (the kernels' factors are cast so)."""
    return <double><float>x if is_float else x


cdef bint step_proven(Fit* f, double g_max, StepBounds* nb) noexcept nogil:
    """Whether the bounds on the parameters and state (kept in
    ``f.step_bounds``) prove that the optimizer's step (``f.opt_task``, every
    |gradient value| at most ``g_max``) leaves every value finite; ``nb``:
    the bounds after it.

    A step moves a parameter by at most lr * g_max (SGD),
    |v| <= mu * bound(v) + lr * g_max (momentum; Nesterov adds mu |v| +
    lr * g_max), or for Adam lr_t * |m| / sqrt(v), which with b1 < sqrt(b2)
    and the moments grown from zero is at most (1 - b1) / sqrt(1 - b2) /
    (1 - b1 / sqrt(b2)) (taken twice, for rounding), else |m| / eps; AdamW
    first scales the parameters by |keep|.  RMSprop's |g| / sqrt(v) is at
    most 1 / sqrt(1 - rho), its v having just taken (1 - rho) g^2 (twice
    that, for rounding), else |g| / eps.  The factors (1 - b2, 1 - rho) are
    those of the step's dtype: in float32 a rho near 1 rounds to 1."""
    cdef fmo_task* t = &f.opt_task
    cdef StepBounds* B = &f.step_bounds
    cdef double limit = SAFE_FRACTION * (3.4028234663852886e38 if t.is_float
                                         else 1.7976931348623157e308)
    cdef double delta, ratio
    cdef double b1 = as_stored(t.b1, t.is_float), b2 = as_stored(t.b2, t.is_float)
    nb[0] = B[0]
    if t.kind == STEP_SGD:
        delta = t.lr * g_max
    elif t.kind == STEP_ADAM:
        nb.s1 = b1 * B.s1 + (1 - b1) * g_max
        nb.s2 = b2 * B.s2 + (1 - b2) * g_max * g_max
        ratio = nb.s1 / t.eps
        if b1 < sqrt(b2) and b2 < 1:
            ratio = min(ratio, 2 * (1 - b1) / sqrt(1 - b2) / (1 - b1 / sqrt(b2)))
        delta = t.lr * ratio
    elif t.kind == STEP_RMSPROP:
        nb.s1 = b2 * B.s1 + (1 - b2) * g_max * g_max
        ratio = g_max / t.eps
        if b2 < 1:
            ratio = min(ratio, 2 / sqrt(1 - b2))
        delta = t.lr * ratio
    else:
        nb.s1 = t.mu * B.s1 + t.lr * g_max
        delta = nb.s1 if t.kind == STEP_MOMENTUM else t.mu * nb.s1 + t.lr * g_max
    nb.p = (fabs(t.keep) * B.p if t.kind == STEP_ADAM else B.p) + delta
    return nb.p < limit and nb.s1 < limit and nb.s2 < limit and delta < limit


cdef bint guarded_step(Fit* f, floating* params, double g_max) noexcept nogil:
    """The optimizer's step (``f.opt_task``, gradient norm ``g_max``),
    guarded as plain SGD's is: when :func:`step_proven` proves every value
    stays finite the step runs as it is; otherwise the parameters and state
    are copied first and put back if a value came out non-finite (False)."""
    cdef fmo_task* t = &f.opt_task
    cdef StepBounds nb
    cdef Py_ssize_t n_state = 0 if t.s1 == NULL else (2 * t.n if t.s2 != NULL else t.n)
    t.p = params
    if step_proven(f, g_max, &nb):
        fmo_step(t, f.plan.step_threads)
        f.step_bounds = nb
        return True
    memcpy(f.work.backup, params, t.n * sizeof(floating))
    if n_state:
        memcpy(<floating*>f.work.backup + t.n, t.s1, n_state * sizeof(floating))
    if not fmo_step(t, f.plan.step_threads):
        memcpy(params, f.work.backup, t.n * sizeof(floating))
        if n_state:
            memcpy(t.s1, <floating*>f.work.backup + t.n, n_state * sizeof(floating))
        return False
    exact_step_bounds(f)
    return True
