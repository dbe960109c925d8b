# The general optimizer's update (momentum, Nesterov, Adam) fused into the
# weight-gradient products of step "layers": each layer's gradient is made
# in bands of W's rows and each band updated (_optim.h) right after its
# product, while it is in a core's cache, on the pool.  No separate pass
# reads the gradient for its norm or its update.
# Included by _kernels.pyx.

cdef bint FUSED_UPDATE_ON = True    # off: every step takes the separate pass (hook, for measurements)

cdef struct FusedLayer:
    fmo_task* t             # the optimizer's task (its buffers: the whole network)
    const void* A           # the layer's input, m x n_in
    const void* D           # its deltas, m x n_out
    const void* params
    void* grads
    Py_ssize_t m, n_in, n_out
    Py_ssize_t w            # the layer's weights' offset in params
    Py_ssize_t band         # rows of W a band
    double decay            # the L2 term's factor (l2 / M)


cdef Py_ssize_t fused_band_rows(bint is_float, Py_ssize_t n_in, Py_ssize_t n_out,
                                Py_ssize_t m) noexcept nogil:
    """Rows of W a band: FUSED_BAND_VALUES of the gradient, and a band for
    each of the machine's pool threads where the register blocks would split
    the product (BLOCK_SPLIT_PRODUCT); for a product BLAS runs, bands as
    :func:`gemm_split` makes them (each BLAS call packs the deltas again).
    From the shape and the machine alone: the same on any thread count."""
    cdef Py_ssize_t rows = max(1, FUSED_BAND_VALUES // n_out)
    cdef Py_ssize_t per_thread = (n_in + SPLIT_BLAS_MAX_BLOCKS - 1) // SPLIT_BLAS_MAX_BLOCKS
    if blas_product(is_float, c'N', n_in, n_out, m):
        # as gemm_split: no band under SPLIT_BLAS_MACS, a band a pool thread
        # (a layer of few values but many rows is still split: 128 x 128 x 4096)
        rows = max((SPLIT_BLAS_MACS + n_out * m - 1) // (n_out * m), per_thread)
    elif n_in * n_out * m >= BLOCK_SPLIT_PRODUCT:
        rows = min(rows, per_thread)
    return min(rows, n_in)


cdef Py_ssize_t l1_band_rows(bint is_float, Py_ssize_t rows, Py_ssize_t n_in,
                             Py_ssize_t n_out, Py_ssize_t m) noexcept nogil:
    """``rows`` (:func:`fused_band_rows`), fewer for a batch of at most
    FUSED_L1_MAX_ROWS rows whose product is not BLAS's: bands of
    FUSED_L1_BYTES, so the update reads the gradient from L1 (the product is
    cheap, the update's reads are not; a BLAS call a band would pack again)."""
    if m > FUSED_L1_MAX_ROWS or blas_product(is_float, c'N', n_in, n_out, m):
        return rows
    return min(rows, max(<Py_ssize_t>1, <Py_ssize_t>(FUSED_L1_BYTES // (<size_t>n_out * (4 if is_float else 8)))))


cdef void fused_band_f(void* arg, int block) noexcept nogil:
    fused_band(<FusedLayer*>arg, block, <float*>NULL)


cdef void fused_band_d(void* arg, int block) noexcept nogil:
    fused_band(<FusedLayer*>arg, block, <double*>NULL)


cdef inline void fused_band(FusedLayer* u, int block, floating* dtype) noexcept nogil:
    """Band ``block`` of a layer: its rows of ``A^T D`` (plus the L2 term, as
    :func:`backward_batch` computes them), then the optimizer's step on them."""
    cdef Py_ssize_t lo = <Py_ssize_t>block * u.band
    cdef Py_ssize_t rows = min(u.band, u.n_in - lo)
    cdef Py_ssize_t first = u.w + lo * u.n_out
    weight_gradient(<floating*>u.grads + first, <const floating*>u.params + first,
                    <floating>u.decay, <const floating*>u.A + lo, <const floating*>u.D,
                    rows, u.n_in, u.n_out, u.m, 1)
    fmo_step_range(u.t, first, first + rows * u.n_out)


cdef void fused_layers_update(Fit* f, floating* params, const floating* X, Py_ssize_t m,
                              double M) noexcept nogil:
    """Every layer's gradient from the deltas in the workspace, each band
    updated as it is made (the step's rate and bounds are set: see
    :func:`fused_optimizer_step`)."""
    cdef Spec* s = f.s
    cdef Layer y = first_layer(s, m)
    cdef floating* acts = <floating*>f.work.acts
    cdef floating* deltas = <floating*>f.work.deltas
    cdef floating* grads = <floating*>f.work.grads
    cdef FusedLayer u
    cdef int blocks, threads
    u.t = &f.opt_task
    u.params = params
    u.grads = grads
    u.m = m
    u.decay = f.opt.l2 / M
    while y.l < s.L:
        u.A = X if y.l == 0 else acts + input_offset(&y)
        u.D = deltas + y.a
        u.n_in, u.n_out, u.w = y.n_in, y.n_out, y.w
        u.band = fused_band_rows(floating is float, y.n_in, y.n_out, m)
        # the pool only where the bands before the L1 cut were several
        threads = s.pool_threads if u.band < y.n_in else 1
        u.band = l1_band_rows(floating is float, u.band, y.n_in, y.n_out, m)
        blocks = <int>((y.n_in + u.band - 1) // u.band)
        fmp_run(fused_band_f if floating is float else fused_band_d, &u, blocks, threads)
        colsum(deltas + y.a, m, y.n_out, grads + y.b)
        fmo_step_range(u.t, y.b, y.b + y.n_out)
        next_layer(s, &y)


cdef double gradient_bound(Spec* s, Py_ssize_t m, const double* sums, double decay,
                           double p_bound) noexcept nogil:
    """A bound on every |gradient value| of the batch, before the gradient
    exists, from the sums of :func:`safe_sums`: a weight's is at most
    sum|A| * sum|D| + decay * max|w|, a bias's sum|D| (NaN when a sum is not
    finite, which no bound proves safe)."""
    cdef double bound = 0, sum_a, term
    cdef Py_ssize_t l
    for l in range(s.L):
        if l > 0 and activation_bounded(s):
            sum_a = <double>(m * s.sizes[l])
        else:
            sum_a = sums[2 * l]
        term = sums[2 * l + 1] * (sum_a + 1)
        if term != term:
            return term
        bound = max(bound, term)
    return bound + decay * p_bound


cdef bint fused_optimizer_step(Fit* f, floating* params, Batch* b) noexcept nogil:
    """The optimizer's step fused into the weight-gradient products, after
    :func:`backward_deltas`; False (nothing changed) when it cannot be or
    does not pay: with clipping or an L1 term (they need the whole gradient
    first), a batch with more activations than the network has parameters
    (the bound's sums would cost more than the separate pass), or when the
    update guard's bounds (see :func:`step_proven`) cannot prove the step
    finite from :func:`gradient_bound` -- then the caller takes the separate
    pass, which checks every value."""
    cdef Settings* o = &f.opt
    cdef StepBounds nb
    cdef double g_max
    if not FUSED_UPDATE_ON or o.l1 != 0 or o.clip_norm > 0 or f.work.batch_sums == NULL:
        return False
    if b.m * f.s.per_row > f.s.n_params:
        # the bound's sums read more values than the norm's pass would
        # (4096 rows of 64-128x5-1: 10% slower fused, bench/NOTES.md)
        return False
    safe_sums(f.s, <const floating*>b.X, b.m, 0, b.m, <floating*>f.work.acts,
              <floating*>f.work.deltas, f.work.batch_sums)
    g_max = gradient_bound(f.s, b.m, f.work.batch_sums, o.l2 / b.M, f.step_bounds.p)
    set_step_rate(f, params, 1.0)
    if not step_proven(f, g_max, &nb):
        unset_step_rate(f)
        return False
    f.opt_task.p = params
    f.opt_task.g = f.work.grads
    fused_layers_update(f, params, <const floating*>b.X, b.m, b.M)
    f.step_bounds = nb
    f.fused_updates += 1
    return True
