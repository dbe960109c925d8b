# Training step "first": the first layer split by its units, each part calling BLAS on one thread.
# Included by _kernels.pyx.

# A float32 plain-SGD step whose first layer's products go to BLAS (784-256
# on batches of 128: mnist-shape) gives every product to BLAS's own threads
# and runs the work between them on one core; BLAS's threads then meet on
# every product.  Instead the step runs in three
# hand-offs on the pool, each part calling BLAS on one thread:
#   1. by the first layer's units: the part's columns of A1 = act(X @ W1 + b1)
#      and sum|X| over its share of the rows;
#   2. by rows: the rest of the network's forward pass, loss and deltas down
#      to the second layer's (row_part on the layers after the first), with
#      the sums sgd_safe reads;
#   3. by the first layer's units again: the part's columns of the first
#      layer's deltas (from its rows of W2, before their update), its rows
#      of W2 and columns of W1 and b1 updated, and a share of the later
#      layers' rows of W and entries of b.
# Between 2 and 3 the caller adds up the objective and decides with sgd_safe
# whether the step is proven safe, as for the unsplit step.  A part keeps its
# columns of W1 from step to step (measured: bench/NOTES.md, step "first").
# The parts depend on the shape alone and every value is computed as the same
# sums: on 1 to `parts` threads results are the same.  On more threads than
# parts the step is not split (BLAS's own threads then use every core).
cdef enum:
    MAX_FIRST_PARTS = 4


cdef int first_split_parts(Spec* s, Py_ssize_t m, int threads) noexcept nogil:
    """Parts (1, 2 or 4) of the first layer's units for a float32 plain-SGD
    batch of m rows on ``threads`` of the pool (see FirstSplitTask): 1 (not
    split) unless the network has a hidden layer, the step takes neither
    the hidden-unit parts nor the row parts (whose products stay out of
    BLAS), the first layer's forward product goes to BLAS, each part gets
    FIRST_PART_MACS of it, UNIT_PANEL units and MIN_PART_ROWS rows at least,
    each part's share of W1 is below CACHED_B_BYTES (the step's gain: that share
    stays in its core's cache from step to step; without it the "layers"
    step with its products in bands on the pool was 25-90% faster), and
    there are no more threads than parts (more threads would sit idle where
    BLAS's own threads used them all).  On 1 to ``parts`` threads the results
    are the same."""
    cdef Py_ssize_t n_in, n_h
    cdef int parts = MAX_FIRST_PARTS
    if s.L < 2:
        return 1
    n_in = s.sizes[0]
    n_h = s.sizes[1]
    while parts > 1 and (m * n_in * n_h < parts * FIRST_PART_MACS
                         or n_h < parts * UNIT_PANEL or m < parts * MIN_PART_ROWS):
        parts //= 2
    if (parts == 1 or threads > parts or not blas_product(True, c'N', m, n_h, n_in)
            or <size_t>(n_in * n_h) * sizeof(float) >= parts * CACHED_B_BYTES
            or unit_parts(s, m) > 1 or row_parts(s, m, True) > 1):
        return 1
    return parts


cdef struct FirstSplitTask:
    Spec* s
    float* params
    int parts
    const float* X
    Py_ssize_t m
    float* acts             # the step's activations and deltas (forward_part's layout)
    float* deltas
    float lr
    float keep              # 1 - lr * decay
    float* sums             # parts x widest: each part's column sums
    Py_ssize_t widest       # the widest layer's size
    double xsum[MAX_FIRST_PARTS]    # sum|X| over each part's share of the rows


cdef void first_split_forward(void* arg, int k) noexcept nogil:
    """Hand-off 1 of FirstSplitTask's step, part k: sum|X| over its share of
    the rows, then its columns of the first layer's activations.

    Every part reads all of X; reading its share first brings it from memory
    on that core while the other core brings the rest (mnist-shape: the
    product 310 -> 299 us a part with the sum, 12 us of it, before it).  The
    part's columns of W1, when they fit CACHED_B_BYTES, are still in its
    core's cache from its last update: the register blocks read them in
    place where BLAS would pack them again (part_gemm).  Above that BLAS's
    blocking wins (_gemm.h's blocks read B once for every 4 rows of A, from
    L2 at best)."""
    cdef FirstSplitTask* t = <FirstSplitTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t n_in = s.sizes[0], n_h = s.sizes[1], m = t.m, i
    cdef Py_ssize_t u0 = unit_bound(n_h, t.parts, k), nu = unit_bound(n_h, t.parts, k + 1) - u0
    cdef Py_ssize_t r0 = m * k // t.parts, r1 = m * (k + 1) // t.parts
    cdef const float* b1 = t.params + n_in * n_h
    t.xsum[k] = abs_sum(t.X + r0 * n_in, (r1 - r0) * n_in)
    part_gemm(True, c'N', c'N', <int>m, <int>nu, <int>n_in, <float>1.0, t.X, <int>n_in,
              t.params + u0, <int>n_h, <float>0.0, t.acts + u0, <int>n_h, 1)
    for i in range(m):
        bias_act(t.acts + i * n_h + u0, b1 + u0, 1, nu, s.hidden,
                 slopes_at(s, t.acts + i * n_h + u0))


cdef void first_split_update(void* arg, int k) noexcept nogil:
    """Hand-off 3 of FirstSplitTask's step, part k: its columns of the first
    layer's deltas, then plain SGD on its rows of W2 and columns of W1 and
    b1, and on its share (by rows of W, by entries of b) of the later layers."""
    cdef FirstSplitTask* t = <FirstSplitTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t n_in = s.sizes[0], n_h = s.sizes[1], n_2 = s.sizes[2], m = t.m
    cdef Py_ssize_t u0 = unit_bound(n_h, t.parts, k), nu = unit_bound(n_h, t.parts, k + 1) - u0
    cdef Py_ssize_t i, j, i0, i1, j0, j1, n_a, n_b
    cdef Layer y = first_layer(s, m)
    cdef float* W1 = t.params
    cdef float* b1 = W1 + n_in * n_h
    cdef float* W2 = b1 + n_h
    cdef const float* H = t.acts
    cdef float* DH = t.deltas
    cdef const float* D2 = t.deltas + m * n_h
    cdef float* sums = t.sums + k * t.widest
    cdef float* W
    cdef float* b
    cdef float lr = t.lr
    part_gemm(True, c'N', c'T', <int>m, <int>nu, <int>n_2, <float>1.0, D2, <int>n_2,
              W2 + u0 * n_2, <int>n_2, <float>0.0, DH + u0, <int>n_h, 1)
    for i in range(m):
        times_dact(DH + i * n_h + u0, dact_source(s, H + i * n_h + u0), nu, s.hidden)
    gemm_rm(c'T', c'N', <int>nu, <int>n_2, <int>m, -lr, H + u0, <int>n_h, D2, <int>n_2,
            t.keep, W2 + u0 * n_2, <int>n_2, 1)
    gemm_rm(c'T', c'N', <int>n_in, <int>nu, <int>m, -lr, t.X, <int>n_in, DH + u0, <int>n_h,
            t.keep, W1 + u0, <int>n_h, 1)
    fm_colsum_ld_f(DH + u0, m, nu, n_h, sums)
    for j in range(nu):
        b1[u0 + j] -= lr * sums[j]
    next_layer(s, &y)
    while y.l < s.L:       # the later layers: W's rows and b's entries by part
        n_a = y.n_in
        n_b = y.n_out
        W = t.params + y.w
        b = t.params + y.b
        if y.l >= 2:
            i0 = n_a * k // t.parts
            i1 = n_a * (k + 1) // t.parts
            if i1 > i0:
                gemm_rm(c'T', c'N', <int>(i1 - i0), <int>n_b, <int>m, -lr,
                        t.acts + input_offset(&y) + i0, <int>n_a, t.deltas + y.a, <int>n_b,
                        t.keep, W + i0 * n_b, <int>n_b, 1)
        j0 = n_b * k // t.parts
        j1 = n_b * (k + 1) // t.parts
        if j1 > j0:
            fm_colsum_ld_f(t.deltas + y.a + j0, m, j1 - j0, n_b, sums)
            for j in range(j1 - j0):
                b[j0 + j] -= lr * sums[j]
        next_layer(s, &y)


cdef double step_first(Fit* f, floating* params, Batch* b, int parts) noexcept nogil:
    """One plain-SGD batch with the first layer in ``parts`` parts (float32
    only): its objective, or a non-finite value (see take_step)."""
    cdef Spec* s = f.s
    cdef double* sums = f.work.batch_sums
    cdef Py_ssize_t m = b.m, i
    cdef double obj = 0
    if floating is float:
        # the first layer by units, the rest by rows (first_split_forward)
        f.fst.parts = parts
        f.fst.X = <const float*>b.X
        f.fst.m = m
        fmp_run(first_split_forward, &f.fst, parts, f.plan.step_threads)
        f.rest_rows.acts = <float*>f.work.acts + m * s.sizes[1]
        f.rest_rows.deltas = <float*>f.work.deltas + m * s.sizes[1]
        obj = run_row_parts(&f.rest_rows, <float*>f.work.acts, <const float*>b.Y,
                            <const float*>b.w, m, b.M, parts, f.plan.step_threads, sums + 2)
        # sum|X|, and the first layer's sum|D| bounded before it exists (see
        # unit_hand_off)
        sums[0] = 0
        for i in range(parts):
            sums[0] += f.fst.xsum[i]
        sums[1] = <double>s.sizes[1] * f.work.bounds[1] * sums[3] * slope_bound(s.hidden)
        obj += penalty(s, params, f.opt.l2, f.opt.l1)
        if not isfinite(obj):
            return obj
        return obj if plain_sgd_update(f, params, b, STEP_FIRST) else INFINITY
    return obj
