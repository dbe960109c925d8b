# Element-wise math: activations, losses, output deltas, penalties, sums.
# Included by _kernels.pyx.

# --------------------------------------------------------------------------
# Element-wise pieces (the vectorised loops live in _vmath.h)
# --------------------------------------------------------------------------

cdef inline int output_act(int output) noexcept nogil:
    """The activation code of an output code."""
    if output == OUT_SOFTMAX:
        return ACT_SOFTMAX
    if output == OUT_EXP:
        return ACT_EXP
    return output               # identity and sigmoid: the same codes


cdef inline bint hidden_slopes(int act) noexcept nogil:
    """Whether a training pass keeps the hidden activation's slopes f'(z)
    beside its values (Spec.slope_off): gelu's, not a function of its output.
    The others' slopes are read from the outputs (fm_times_dact)."""
    return act == ACT_GELU


cdef inline floating* slopes_at(Spec* s, floating* A) noexcept nogil:
    """Where the forward pass writes the slopes of the hidden activations at
    A (NULL when the pass keeps none)."""
    return NULL if s.slope_off == 0 else A + s.slope_off


cdef inline const floating* dact_source(Spec* s, const floating* A) noexcept nogil:
    """What :func:`times_dact` reads for the hidden activations at A: A
    itself, or for gelu their slopes."""
    return A + s.slope_off


cdef inline void bias_act(floating* A, const floating* b, Py_ssize_t m, Py_ssize_t k,
                          int act, floating* S=NULL) noexcept nogil:
    """A = act(A + b) (m x k, b over rows); gelu's slopes into S unless NULL."""
    if floating is float:
        fm_bias_act_f(A, b, m, k, act, S)
    else:
        fm_bias_act_d(A, b, m, k, act, S)


cdef inline void times_dact(floating* D, const floating* A, Py_ssize_t n, int act) noexcept nogil:
    if act == ACT_IDENTITY:
        return
    if floating is float:
        fm_times_dact_f(D, A, n, act)
    else:
        fm_times_dact_d(D, A, n, act)


# The element-wise work of a pass over many values runs in blocks of rows on
# the pool (each value is computed alone: any split gives the same results).
cdef struct PointwiseTask:
    void* D                 # bias_act: A (rows x k); times_dact: D
    const void* src         # bias_act: b; times_dact: A
    void* S                 # bias_act: gelu's slopes (A's layout) or NULL
    Py_ssize_t n, k, rows   # values (times_dact) or rows (bias_act), row width, rows a block
    int act
    bint is_float


cdef void pooled_bias_act(Spec* s, floating* A, const floating* b, Py_ssize_t m,
                          Py_ssize_t k, int act, floating* S) noexcept nogil:
    """:func:`bias_act` on up to ``s.pool_threads`` of the pool, in blocks of
    rows of at least POINTWISE_SPLIT_VALUES values (not inside a pool block)."""
    cdef PointwiseTask t
    cdef Py_ssize_t blocks = min(<Py_ssize_t>64, m * k // POINTWISE_SPLIT_VALUES, m)
    if s.pool_threads < 2 or blocks < 2 or fmp_inside_block():
        bias_act(A, b, m, k, act, S)
        return
    t.D, t.src, t.S, t.n, t.k, t.act = A, b, S, m, k, act
    t.rows = (m + blocks - 1) // blocks
    t.is_float = floating is float
    fmp_run(bias_act_block, &t, <int>((m + t.rows - 1) // t.rows), s.pool_threads)


cdef void bias_act_block(void* arg, int block) noexcept nogil:
    cdef PointwiseTask* t = <PointwiseTask*>arg
    cdef Py_ssize_t r0 = block * t.rows, mr = min(t.rows, t.n - r0)
    if t.is_float:
        fm_bias_act_f(<float*>t.D + r0 * t.k, <const float*>t.src, mr, t.k, t.act,
                      NULL if t.S == NULL else <float*>t.S + r0 * t.k)
    else:
        fm_bias_act_d(<double*>t.D + r0 * t.k, <const double*>t.src, mr, t.k, t.act,
                      NULL if t.S == NULL else <double*>t.S + r0 * t.k)


cdef void pooled_times_dact(Spec* s, floating* D, const floating* A, Py_ssize_t n,
                            int act) noexcept nogil:
    """:func:`times_dact` on the pool, as :func:`pooled_bias_act`."""
    cdef PointwiseTask t
    cdef Py_ssize_t blocks = min(<Py_ssize_t>64, n // POINTWISE_SPLIT_VALUES)
    if act == ACT_IDENTITY:
        return
    if s.pool_threads < 2 or blocks < 2 or fmp_inside_block():
        times_dact(D, A, n, act)
        return
    t.D, t.src, t.n, t.act = D, A, n, act
    t.rows = ((n + blocks - 1) // blocks + 15) // 16 * 16     # whole vectors a block
    t.is_float = floating is float
    fmp_run(times_dact_block, &t, <int>((n + t.rows - 1) // t.rows), s.pool_threads)


cdef void times_dact_block(void* arg, int block) noexcept nogil:
    cdef PointwiseTask* t = <PointwiseTask*>arg
    cdef Py_ssize_t i0 = block * t.rows, n = min(t.rows, t.n - i0)
    if t.is_float:
        fm_times_dact_f(<float*>t.D + i0, <const float*>t.src + i0, n, t.act)
    else:
        fm_times_dact_d(<double*>t.D + i0, <const double*>t.src + i0, n, t.act)


cdef inline void colsum(const floating* D, Py_ssize_t m, Py_ssize_t k, floating* out) noexcept nogil:
    if floating is float:
        fm_colsum_f(D, m, k, out)
    else:
        fm_colsum_d(D, m, k, out)


cdef double data_loss_sum(Spec* s, const floating* Z, const floating* P,
                          const floating* Y, const floating* w, Py_ssize_t m) noexcept nogil:
    """Weighted sum over the batch of the per-row data loss (not divided by M).

    Log loss is computed from the output logits ``Z`` (stable for any
    magnitude; softmax's also takes the ratios of ``P`` to its largest
    value, which are exp(z_j - z_max)), and so is the Poisson deviance of
    exp outputs; squared error from the outputs ``P``.  ``w`` NULL means
    unit weights.  (Softmax's in C with its log1p
    vectorised: the loss's share of a digits fit's perf samples was 2.6%
    as a loop here with libm's log1p.)
    """
    cdef Py_ssize_t i, j, k = s.sizes[s.L]
    cdef double total = 0, row, d
    if s.loss == LOSS_POISSON:
        if floating is float:
            return fm_poisson_sum_f(Z, Y, w, m, k)
        else:
            return fm_poisson_sum_d(Z, Y, w, m, k)
    if s.loss == LOSS_LOG and s.output == OUT_SIGMOID:
        if floating is float:
            return fm_bce_sum_f(Z, Y, w, m, k)
        else:
            return fm_bce_sum_d(Z, Y, w, m, k)
    if s.loss == LOSS_LOG:
        if floating is float:
            return fm_softmax_xent_sum_f(Z, P, Y, w, m, k)
        else:
            return fm_softmax_xent_sum_d(Z, P, Y, w, m, k)
    for i in range(m):                  # squared error
        row = 0
        for j in range(k):
            d = <double>Y[i * k + j] - <double>P[i * k + j]
            row += d * d
        row *= 0.5
        total += row if w == NULL else w[i] * row
    return total


cdef void output_delta(Spec* s, const floating* P, const floating* Y, const floating* w,
                       floating* D, Py_ssize_t m, double inv_M) noexcept nogil:
    """dObjective/dZ of the output layer for the batch (includes w_i / M)."""
    cdef Py_ssize_t i, j, k = s.sizes[s.L]
    cdef floating c, t, p, g
    for i in range(m):
        c = <floating>(inv_M if w == NULL else w[i] * inv_M)
        if s.loss == LOSS_LOG and s.output == OUT_SOFTMAX:
            # d/dz_j sum_k y_k (lse - z_k) = (sum_k y_k) p_j - y_j
            t = 0
            for j in range(k):
                t = t + Y[i * k + j]
            for j in range(k):
                D[i * k + j] = (t * P[i * k + j] - Y[i * k + j]) * c
        elif s.loss != LOSS_SQUARED or s.output == OUT_IDENTITY:
            # sigmoid + binary cross-entropy, exp + Poisson deviance, identity +
            # squared error (the canonical links): p - y
            for j in range(k):
                D[i * k + j] = (P[i * k + j] - Y[i * k + j]) * c
        elif s.output == OUT_SIGMOID:
            for j in range(k):
                p = P[i * k + j]
                D[i * k + j] = (p - Y[i * k + j]) * (p * (1 - p)) * c
        else:
            # softmax + squared error: J^T g with J = diag(p) - p p^T
            t = 0
            for j in range(k):
                t = t + (P[i * k + j] - Y[i * k + j]) * P[i * k + j]
            for j in range(k):
                p = P[i * k + j]
                D[i * k + j] = p * ((p - Y[i * k + j]) - t) * c


cdef inline double total_weight(const floating* w, Py_ssize_t n) noexcept nogil:
    """Sum of the sample weights (``n`` when ``w`` is NULL: unit weights)."""
    cdef double t = 0
    cdef Py_ssize_t i
    if w == NULL:
        return n
    for i in range(n):
        t += w[i]
    return t


cdef double penalty(Spec* s, const floating* params, double l2, double l1) noexcept nogil:
    """``l2 / 2 * sum(W**2) + l1 * sum(|W|)`` over weights (not biases)."""
    cdef double sq = 0, ab = 0
    cdef Layer y = first_layer(s, 0)
    cdef Py_ssize_t i
    if l2 == 0 and l1 == 0:
        return 0
    while y.l < s.L:
        for i in range(y.w, y.b):
            sq += <double>params[i] * params[i]
            ab += fabs(params[i])
        next_layer(s, &y)
    return 0.5 * l2 * sq + l1 * ab


cdef void add_l1_gradient(Spec* s, const floating* params, floating* grads,
                          floating c) noexcept nogil:
    """grads += c * sign(W) over the weights."""
    cdef Layer y = first_layer(s, 0)
    cdef Py_ssize_t i
    while y.l < s.L:
        for i in range(y.w, y.b):
            if params[i] > 0:
                grads[i] += c
            elif params[i] < 0:
                grads[i] -= c
        next_layer(s, &y)


cdef double abs_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fm_abs_sum_f(x, n)
    else:
        return fm_abs_sum_d(x, n)


cdef void add_decay(Spec* s, const floating* params, floating* grads, floating c) noexcept nogil:
    """grads += c * W over the weights (the L2 term's gradient)."""
    cdef Layer y = first_layer(s, 0)
    cdef Py_ssize_t i
    while y.l < s.L:
        for i in range(y.w, y.b):
            grads[i] += c * params[i]
        next_layer(s, &y)


# --------------------------------------------------------------------------
# Optimizer steps on the flat buffer
# --------------------------------------------------------------------------


cdef inline bint params_finite(const floating* p, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fm_all_finite_f(p, n) != 0
    else:
        return fm_all_finite_d(p, n) != 0


cdef double sq_norm(const floating* g, Py_ssize_t n) noexcept nogil:
    cdef double t = 0
    cdef Py_ssize_t i
    for i in range(n):
        t += <double>g[i] * g[i]
    return t


cdef struct FiniteTask:
    const void* x
    Py_ssize_t n
    bint is_float
    int ok[FINITE_BLOCKS]


cdef void finite_block(void* arg, int b) noexcept nogil:
    cdef FiniteTask* t = <FiniteTask*>arg
    cdef Py_ssize_t lo = t.n * b // FINITE_BLOCKS, hi = t.n * (b + 1) // FINITE_BLOCKS
    if t.is_float:
        t.ok[b] = fm_all_finite_f(<const float*>t.x + lo, hi - lo)
    else:
        t.ok[b] = fm_all_finite_d(<const double*>t.x + lo, hi - lo)


cdef bint values_finite(const void* x, Py_ssize_t n, bint is_float, int threads) noexcept nogil:
    """Whether the n values at x are all finite; arrays of at least
    FINITE_SPLIT values are read by up to ``threads`` threads of _pool.h
    (reading is memory-bound: two cores read faster)."""
    cdef FiniteTask t
    cdef int ok = 1, b
    if n >= FINITE_SPLIT and threads > 1:
        t.x = x
        t.n = n
        t.is_float = is_float
        fmp_run(finite_block, &t, FINITE_BLOCKS, threads)
        for b in range(FINITE_BLOCKS):
            ok = ok and t.ok[b]
        return ok
    if is_float:
        return fm_all_finite_f(<const float*>x, n)
    return fm_all_finite_d(<const double*>x, n)
