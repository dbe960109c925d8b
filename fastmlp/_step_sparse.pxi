# Training step "sparse": a CSR X's batch through the first layer by sparse x
# dense products over its rows' stored values (X is never densified), the
# later layers as step "layers" computes them; the gradient then steps as the
# narrow step's does (plain SGD's guarded pass, or the general update).
# Included by _kernels.pyx (after _step_layers.pxi's helpers it shares).

cdef void sparse_forward0(Data* d, const Py_ssize_t* rows, Py_ssize_t m, const floating* W,
                          Py_ssize_t n_out, floating* A) noexcept nogil:
    """A = X[rows] @ W (m x n_out, W n_in x n_out), from the CSR rows:
    each stored value times its row of W, added in stored order."""
    cdef Py_ssize_t i, k, j
    cdef const floating* values = <const floating*>d.X
    cdef const floating* Wr
    cdef floating* a
    cdef floating v
    memset(A, 0, m * n_out * sizeof(floating))
    for i in range(m):
        a = A + i * n_out
        for k in range(d.indptr[rows[i]], d.indptr[rows[i] + 1]):
            v = values[k]
            Wr = W + d.indices[k] * n_out
            for j in range(n_out):
                a[j] += v * Wr[j]


cdef void sparse_weight_grad0(Data* d, const Py_ssize_t* rows, Py_ssize_t m,
                              const floating* D, Py_ssize_t n_out, floating* gW) noexcept nogil:
    """gW = X[rows]^T @ D (n_in x n_out, D m x n_out), from the CSR rows:
    zeros, then each stored value times its row's delta added to its column's row."""
    cdef Py_ssize_t i, k, j
    cdef const floating* values = <const floating*>d.X
    cdef const floating* di
    cdef floating* g
    cdef floating v
    memset(gW, 0, d.n_in * n_out * sizeof(floating))
    for i in range(m):
        di = D + i * n_out
        for k in range(d.indptr[rows[i]], d.indptr[rows[i] + 1]):
            v = values[k]
            g = gW + d.indices[k] * n_out
            for j in range(n_out):
                g[j] += v * di[j]


cdef Spec rest_of(Spec* s) noexcept nogil:
    """The Spec of the layers after the first (s.L >= 2): their acts and
    params start at A_1's and at W_2's."""
    cdef Spec rest = spec_of(s.sizes + 1, s.L, s.hidden, s.output, s.loss)
    rest.pool_threads = s.pool_threads
    rest.blas_one = s.blas_one
    rest.slope_off = s.slope_off        # (the same workspace: gelu's slopes)
    return rest


cdef void sparse_forward(Spec* s, Data* d, const Py_ssize_t* rows, Py_ssize_t m,
                         const floating* params, floating* acts, floating* zout) noexcept nogil:
    """Forward pass of rows ``rows[0..m-1]`` of a CSR X: acts (forward_part's
    layout) and, unless NULL, zout (the output logits)."""
    cdef Py_ssize_t h = s.sizes[1], b0 = s.sizes[0] * s.sizes[1]
    cdef Spec rest
    sparse_forward0(d, rows, m, params, h, acts)
    if s.L == 1:
        if zout != NULL:
            memcpy(zout, acts, m * h * sizeof(floating))
            bias_act(zout, params + b0, m, h, ACT_IDENTITY)
        pooled_bias_act(s, acts, params + b0, m, h, output_act(s.output), <floating*>NULL)
        return
    pooled_bias_act(s, acts, params + b0, m, h, s.hidden, slopes_at(s, acts))
    rest = rest_of(s)
    forward_batch(&rest, params + b0 + h, acts, m, acts + m * h, NULL, zout, False)


cdef double step_sparse(Fit* f, floating* params, Batch* b) noexcept nogil:
    """One batch of a CSR X: its objective, or a non-finite value (see take_step)."""
    cdef Spec* s = f.s
    cdef Data* d = &f.data
    cdef const Py_ssize_t* rows = d.order + b.start
    cdef Py_ssize_t m = b.m, h = s.sizes[1], n_out = s.sizes[s.L]
    cdef Py_ssize_t b0 = s.sizes[0] * h, rest_at = b0 + h
    cdef floating* acts = <floating*>f.work.acts
    cdef floating* deltas = <floating*>f.work.deltas
    cdef floating* grads = <floating*>f.work.grads
    cdef floating* zout = <floating*>f.work.zout
    cdef Spec rest
    cdef double obj
    sparse_forward(s, d, rows, m, params, acts, zout)
    obj = data_loss_sum(s, zout, acts + m * (s.per_row - n_out), <const floating*>b.Y,
                        <const floating*>b.w, m)
    obj += penalty(s, params, f.opt.l2, f.opt.l1)
    if not isfinite(obj):
        return obj
    backward_deltas(s, params, <const floating*>b.Y, <const floating*>b.w, m, b.M, acts, deltas)
    if s.L > 1:
        rest = rest_of(s)
        backward_batch(&rest, params + rest_at, acts, <const floating*>b.Y,
                       <const floating*>b.w, m, b.M, acts + m * h, deltas + m * h,
                       grads + rest_at, 0.0, True)
    sparse_weight_grad0(d, rows, m, deltas, h, grads)
    colsum(deltas, m, h, grads + b0)
    if f.opt.l2 != 0:
        add_decay(s, params, grads, <floating>(f.opt.l2 / b.M))
    if f.plan.fused:
        return obj if sgd_step(params, grads, <floating*>f.work.backup,
                               <floating>f.opt.lr, s.n_params) else INFINITY
    return obj if optimizer_update(f, params, b) else INFINITY
