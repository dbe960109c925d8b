# Forward and backward passes over one batch (or rows of one).
# Included by _kernels.pyx.

# --------------------------------------------------------------------------
# Forward and backward passes over one batch
# --------------------------------------------------------------------------

cdef inline bint forward_batch(Spec* s, const floating* params, const floating* X,
                               Py_ssize_t m, floating* acts, floating* zs, floating* zout,
                               bint check_x) noexcept nogil:
    """Forward pass of m rows: :func:`forward_part` of all of them."""
    return forward_part(s, params, X, m, 0, m, acts, zs, zout, check_x)


cdef bint forward_part(Spec* s, const floating* params, const floating* X, Py_ssize_t m,
                       Py_ssize_t r0, Py_ssize_t mr, floating* acts, floating* zs,
                       floating* zout, bint check_x) noexcept nogil:
    """Forward pass of rows r0 .. r0+mr-1 of a batch of m rows.

    IN:  params, X (m x sizes[0]).
    OUT: those rows of acts (A_1..A_L stacked, each m x sizes[l+1]); of zout
         (m x n_out) the output logits unless NULL; of zs (Z_1..Z_L, acts
         layout) unless NULL; with ``s.slope_off``, gelu's slopes of the
         hidden layers at acts + slope_off; with ``s.dropout`` (and slopes
         kept) the hidden activations and slopes dropped (_dropout.pxi).
         A row's values do not depend on the others.

    With ``check_x`` it returns False, the outputs unfinished, when the rows
    of X hold a value that is not finite; else True.  The first layer's
    products show it: a NaN or infinity in a row makes every product of that
    row NaN or infinite (no kernel skips a term), so X itself is read only
    when one of them is (X finite, an overflow or a non-finite weight: the
    pass goes on).  Reading the products costs a third of reading X for a
    784-256 layer and they are in cache (10000 x 784 float32 rows: X took
    0.9-2.4 ms to check on two threads, the products 0.05 ms a 2048-row
    chunk on one).
    """
    cdef Layer y = first_layer(s, m)
    cdef Py_ssize_t n_in, n_out
    cdef const floating* A_prev = X + r0 * s.sizes[0]
    cdef floating* A
    cdef floating* S
    cdef const floating* W
    cdef const floating* b
    cdef int act
    while y.l < s.L:
        n_in = y.n_in
        n_out = y.n_out
        W = params + y.w
        b = params + y.b
        A = acts + y.a + r0 * n_out
        if (mr <= FMR_MAX_ROWS and n_in * n_out >= FEW_ROWS_PRODUCT
                and n_out >= fmr_block_width(sizeof(floating))):
            fmr_product(floating is float, <int>mr, n_out, n_in, A_prev, n_in, W, n_out,
                        A, n_out, s.pool_threads)
        else:
            part_gemm(s.blas_one, c'N', c'N', <int>mr, <int>n_out, <int>n_in, <floating>1.0,
                      A_prev, <int>n_in, W, <int>n_out, <floating>0.0, A, <int>n_out,
                      s.pool_threads)
        if (check_x and y.l == 0 and not values_finite(A, mr * n_out, floating is float, 1)
                and not values_finite(X + r0 * n_in, mr * n_in, floating is float, 1)):
            return False
        S = NULL
        if y.l == s.L - 1:
            act = output_act(s.output)
            if zout != NULL:
                memcpy(zout + r0 * n_out, A, mr * n_out * sizeof(floating))
                bias_act(zout + r0 * n_out, b, mr, n_out, ACT_IDENTITY)
        else:
            act = s.hidden
            S = slopes_at(s, A)
        if zs != NULL:
            memcpy(zs + y.a + r0 * n_out, A, mr * n_out * sizeof(floating))
            bias_act(zs + y.a + r0 * n_out, b, mr, n_out, ACT_IDENTITY)
        pooled_bias_act(s, A, b, mr, n_out, act, S)
        if s.dropout and S != NULL:
            drop_units(s, A, S, r0, mr, n_out, y.l)
        A_prev = A
        next_layer(s, &y)
    return True


cdef inline void weight_gradient(floating* gW, const floating* W, floating decay,
                                 const floating* A, const floating* D, Py_ssize_t rows,
                                 Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t m,
                                 int threads) noexcept nogil:
    """``rows`` rows of a layer's weight gradient ``decay * W + A^T D`` into gW
    (A: m x n_in, its first ``rows`` columns used; D: m x n_out), on up to
    ``threads`` of the pool (:func:`backward_batch`, and the fused update's
    bands)."""
    cdef Py_ssize_t j
    if decay != 0:
        for j in range(rows * n_out):
            gW[j] = decay * W[j]
    gemm_rm(c'T', c'N', <int>rows, <int>n_out, <int>m, <floating>1.0, A, <int>n_in, D,
            <int>n_out, <floating>(1.0 if decay != 0 else 0.0), gW, <int>n_out, threads)


cdef void backward_batch(Spec* s, const floating* params, const floating* X,
                         const floating* Y, const floating* w, Py_ssize_t m, double M,
                         const floating* acts, floating* deltas, floating* grads,
                         double l2, bint deltas_ready=False) noexcept nogil:
    """Backpropagate the deltas of one batch, after :func:`forward_batch`,
    and write the gradient of the batch objective (without its L1 term) into
    ``grads``.  ``M`` is the batch's total sample weight.  (Plain SGD's step
    computes the deltas and applies them itself: :func:`backward_deltas`,
    :func:`sgd_layers`.)  ``deltas_ready``: the deltas are already there
    (:func:`row_part`).
    """
    cdef Layer y = last_layer(s, m)
    cdef floating decay = <floating>(l2 / M)
    if not deltas_ready:
        backward_deltas(s, params, Y, w, m, M, acts, deltas)
    while y.l >= 0:
        weight_gradient(grads + y.w, params + y.w, decay,
                        X if y.l == 0 else acts + input_offset(&y), deltas + y.a,
                        y.n_in, y.n_in, y.n_out, m, s.pool_threads)
        colsum(deltas + y.a, m, y.n_out, grads + y.b)
        prev_layer(s, &y)


cdef inline void backward_deltas(Spec* s, const floating* params, const floating* Y,
                                 const floating* w, Py_ssize_t m, double M,
                                 const floating* acts, floating* deltas) noexcept nogil:
    """Every layer's delta (dLoss/dZ of the batch-mean objective) into
    ``deltas`` (the layout of ``acts``), from the outputs back."""
    backward_delta_part(s, params, Y, w, m, 0, m, M, acts, deltas)


cdef void backward_delta_part(Spec* s, const floating* params, const floating* Y,
                              const floating* w, Py_ssize_t m, Py_ssize_t r0, Py_ssize_t mr,
                              double M, const floating* acts, floating* deltas) noexcept nogil:
    """Rows r0 .. r0+mr-1 of :func:`backward_deltas` (a batch of m rows)."""
    cdef Layer y = last_layer(s, m)
    cdef Py_ssize_t below
    output_delta(s, acts + y.a + r0 * y.n_out, Y + r0 * y.n_out,
                 NULL if w == NULL else w + r0, deltas + y.a + r0 * y.n_out, mr, 1.0 / M)
    while y.l > 0:
        below = input_offset(&y) + r0 * y.n_in     # the rows' block of the layer below
        part_gemm(s.blas_one, c'N', c'T', <int>mr, <int>y.n_in, <int>y.n_out, <floating>1.0,
                  deltas + y.a + r0 * y.n_out, <int>y.n_out, params + y.w, <int>y.n_out,
                  <floating>0.0, deltas + below, <int>y.n_in, s.pool_threads)
        pooled_times_dact(s, deltas + below, dact_source(s, acts + below), mr * y.n_in,
                          dact_code(s))
        prev_layer(s, &y)


cdef check_shapes(Spec* s, Py_ssize_t n_params, const Py_ssize_t[::1] sizes, Py_ssize_t x_rows,
                  Py_ssize_t x_cols, Py_ssize_t y_rows, Py_ssize_t y_cols, object sample_weight,
                  Py_ssize_t w_len):
    """Constant-time checks that the buffers match ``sizes``: the kernels
    index by ``sizes`` alone, so a mismatch would read or write out of bounds."""
    cdef Py_ssize_t l
    for l in range(sizes.shape[0]):
        if sizes[l] < 1:
            raise ValueError(f"sizes[{l}] must be >= 1; got {sizes[l]}")
    if n_params != s.n_params:
        raise ValueError(f"params has {n_params} values; layer sizes {list(sizes)} need {s.n_params}")
    if x_rows < 1 or x_cols != sizes[0]:
        raise ValueError(f"X must have shape (n >= 1, {sizes[0]}); got ({x_rows}, {x_cols})")
    if y_rows >= 0 and (y_rows != x_rows or y_cols != sizes[s.L]):
        raise ValueError(f"Y must have shape ({x_rows}, {sizes[s.L]}); got ({y_rows}, {y_cols})")
    if sample_weight is not None and w_len != x_rows:
        raise ValueError(f"sample_weight must have {x_rows} values; got {w_len}")


cdef const floating* weights_ptr(object sample_weight, floating[::1] view):
    return NULL if sample_weight is None else &view[0]


cdef inline Py_ssize_t pass_rows(Py_ssize_t chunk, Py_ssize_t n, Py_ssize_t values_per_row,
                                  size_t elsize) noexcept nogil:
    """Rows a pass over n rows computes at a time: at most ``chunk``, and
    within PASS_WORK_BYTES of workspace at ``values_per_row`` a row (>= 1)."""
    cdef Py_ssize_t fit = <Py_ssize_t>(PASS_WORK_BYTES // (<size_t>values_per_row * elsize))
    return max(<Py_ssize_t>1, min(min(chunk, n), fit))


cdef int forward_rows(Spec* s, const floating* params, const floating* X, Py_ssize_t n,
                      floating* out, Py_ssize_t chunk, int threads, bint check_x) noexcept nogil:
    """Outputs of n rows of X into out (n x n_out), ``chunk`` rows at a time
    (fewer when their workspace would exceed PASS_WORK_BYTES), under
    ``threads`` BLAS threads; -1 when the workspace cannot be allocated;
    with ``check_x``, 1 (out unfinished) when X holds a value that is not
    finite (see :func:`forward_batch`).  Rows that fill more than one chunk
    of :func:`chunk_rows`, under one BLAS thread, go to
    :func:`forward_chunks` (the pool's threads claim the chunks)."""
    cdef Py_ssize_t pooled = chunk_rows(s, chunk, sizeof(floating))
    cdef int before = threads_enter(threads), status
    if FORWARD_POOL_ROWS > 0 and n > pooled and fm_blas_single_here():
        status = forward_chunks(s, params, X, n, out, pooled, check_x)
    else:
        status = forward_serial(s, params, X, n, out, chunk, check_x)
    threads_exit(before)
    return status


cdef int forward_serial(Spec* s, const floating* params, const floating* X, Py_ssize_t n,
                        floating* out, Py_ssize_t chunk, bint check_x) noexcept nogil:
    """:func:`forward_rows`'s pass one chunk after another, each chunk's
    products split over the pool (or BLAS's threads)."""
    cdef Py_ssize_t n_out = s.sizes[s.L], start = 0, m
    cdef Py_ssize_t rows = pass_rows(chunk, n, s.per_row, sizeof(floating))
    cdef Py_ssize_t last = s.per_row - n_out
    cdef floating* work
    if s.L == 1:
        # one layer: write straight into out, no workspace
        return 0 if forward_batch(s, params, X, n, out, NULL, NULL, check_x) else 1
    work = <floating*>malloc(rows * s.per_row * sizeof(floating))
    if work == NULL:
        return -1
    while start < n:
        m = min(rows, n - start)
        if not forward_batch(s, params, X + start * s.sizes[0], m, work, NULL, NULL, check_x):
            free(work)
            return 1
        memcpy(out + start * n_out, work + m * last, m * n_out * sizeof(floating))
        start += m
    free(work)
    return 0
