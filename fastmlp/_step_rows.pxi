# Training step "rows": a batch in parts of its rows on the pool, plain SGD in update blocks.
# Included by _kernels.pyx.
#
# A float32 batch whose products all run in fastmlp's own kernels (register
# blocks or loops, no BLAS) runs its forward pass, loss and deltas in parts of
# its rows on the pool: each thread runs every layer on its rows, one hand-off
# for all of it.  The parts depend on the batch's shape alone and a row's
# values not on its part: results do not depend on the thread count.

cdef enum:
    MAX_ROW_PARTS = 4
    MIN_PART_ROWS = 8       # > FMR_MAX_ROWS: parts never take _fewrows.h's path


cdef int row_parts(Spec* s, Py_ssize_t m, bint is_float) noexcept nogil:
    """Parts (1, 2 or 4) to split a batch of m rows into for its forward
    pass, loss and deltas: 1 unless every product of every part stays out
    of BLAS (whose own threads would then compete with the pool's)."""
    cdef Py_ssize_t l, macs = 0, mr
    cdef int parts = MAX_ROW_PARTS
    if not is_float:
        return 1
    for l in range(s.L):
        macs += s.sizes[l] * s.sizes[l + 1]
    while parts > 1 and (m * macs < parts * ROW_PART_MACS or m < parts * MIN_PART_ROWS):
        parts //= 2
    if parts == 1:
        return 1
    mr = m // parts             # the parts hold mr or mr + 1 rows
    for l in range(s.L):
        if (blas_product(True, c'N', mr, s.sizes[l + 1], s.sizes[l])
                or blas_product(True, c'N', mr + 1, s.sizes[l + 1], s.sizes[l])
                or (l > 0 and (blas_product(True, c'T', mr, s.sizes[l], s.sizes[l + 1])
                               or blas_product(True, c'T', mr + 1, s.sizes[l],
                                               s.sizes[l + 1])))):
            return 1
    return parts


cdef struct RowTask:
    Spec* s                 # pool_threads 1: a part runs on one thread
    const float* params
    const float* X
    const float* Y
    const float* w          # NULL: unit weights
    float* acts
    float* deltas
    float* zout             # NULL unless the loss reads the logits
    Py_ssize_t m
    double M                # the batch's total weight
    int parts
    double loss[MAX_ROW_PARTS]
    double* sums            # parts x 2L: each part's abs sums for sgd_safe, or NULL


cdef void row_part(void* arg, int part) noexcept nogil:
    """Pool block ``part`` of a RowTask: its rows' forward pass, their data
    loss (into ``loss[part]``) and deltas, and unless ``sums`` is NULL the
    abs sums :func:`sgd_safe` reads, over its rows."""
    cdef RowTask* t = <RowTask*>arg
    cdef Spec* s = t.s
    cdef Py_ssize_t r0 = t.m * part // t.parts
    cdef Py_ssize_t mr = t.m * (part + 1) // t.parts - r0
    cdef Py_ssize_t k = s.sizes[s.L]
    cdef const float* z = NULL if t.zout == NULL else t.zout + r0 * k
    forward_part(s, t.params, t.X, t.m, r0, mr, t.acts, <float*>NULL, t.zout, False)
    t.loss[part] = data_loss_sum(s, z, t.acts + t.m * (s.per_row - k) + r0 * k,
                                 t.Y + r0 * k, NULL if t.w == NULL else t.w + r0, mr)
    backward_delta_part(s, t.params, t.Y, t.w, t.m, r0, mr, t.M, t.acts, t.deltas)
    if t.sums != NULL:
        safe_sums(s, t.X, t.m, r0, mr, t.acts, t.deltas, t.sums + 2 * s.L * part)


cdef double run_row_parts(RowTask* t, const float* X, const float* Y, const float* w,
                          Py_ssize_t m, double M, int parts, int threads,
                          double* batch_sums) noexcept nogil:
    """A batch's row parts on up to ``threads`` threads: returns its data-loss
    sum; the parts' abs sums added up into ``batch_sums`` (2L values) unless
    ``t.sums`` is NULL.  Parts are added in order: the same on any thread
    count."""
    cdef double total = 0
    cdef Py_ssize_t i, j, n = 2 * t.s.L
    t.X = X
    t.Y = Y
    t.w = w
    t.m = m
    t.M = M
    t.parts = parts
    fmp_run(row_part, t, parts, threads)
    for j in range(parts):
        total += t.loss[j]
    if t.sums != NULL:
        for i in range(n):
            batch_sums[i] = 0
            for j in range(parts):
                batch_sums[i] += t.sums[n * j + i]
    return total


# Plain SGD's update products of such a step (each layer's
# W <- (1 - lr*decay) W - lr * A^T D and b <- b - lr * colsum(D)) go to the
# pool as one task: blocks of 16 columns for layers at least 32 wide, of 32
# rows of W for narrower ones (a 10-wide output layer), each block's bias
# entries with it.  Every value is summed as by the whole product on one
# thread, so results do not depend on the blocks or the threads.
cdef enum:
    UPDATE_PANEL = 16
    UPDATE_ROWS = 32


cdef inline Py_ssize_t update_blocks(Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """Blocks of one layer's update (see UpdateTask)."""
    if n_out >= 2 * UPDATE_PANEL:
        return (n_out + UPDATE_PANEL - 1) // UPDATE_PANEL
    return max((n_in + UPDATE_ROWS // 2) // UPDATE_ROWS, 1)


cdef bint update_on_pool(Spec* s, Py_ssize_t m) noexcept nogil:
    """Whether :func:`gemm_rm` would give every layer's whole update product
    to the register blocks (then :func:`update_block` computes its blocks
    there, each value as the whole product would)."""
    cdef Py_ssize_t l
    for l in range(s.L):
        if (loop_product(s.sizes[l], s.sizes[l + 1], m)
                or blas_product(True, c'T', s.sizes[l], s.sizes[l + 1], m)):
            return False
    return True


cdef struct UpdateTask:
    Spec* s
    float* params
    const float* X
    const float* acts
    const float* deltas
    Py_ssize_t m
    float lr
    float keep              # 1 - lr * decay


cdef void update_block(void* arg, int block) noexcept nogil:
    """Pool block ``block`` of an UpdateTask: the layers' blocks in order."""
    cdef UpdateTask* t = <UpdateTask*>arg
    cdef Spec* s = t.s
    cdef Layer y = first_layer(s, t.m)
    cdef Py_ssize_t j, nb, n_in, n_out, j0, nc, i0, i1, m = t.m
    cdef float* W
    cdef float* b
    cdef const float* A
    cdef const float* D
    cdef float sums[2 * UPDATE_PANEL]       # a panel's columns, or a narrow layer's
    while y.l < s.L:
        n_in = y.n_in
        n_out = y.n_out
        nb = update_blocks(n_in, n_out)
        if block < nb:
            W = t.params + y.w
            b = t.params + y.b
            A = t.X if y.l == 0 else t.acts + input_offset(&y)
            D = t.deltas + y.a
            if n_out >= 2 * UPDATE_PANEL:
                j0 = block * UPDATE_PANEL
                nc = min(n_out - j0, <Py_ssize_t>UPDATE_PANEL)
                gemm_blocked(c'T', c'N', <int>n_in, <int>nc, <int>m, -t.lr, A, <int>n_in,
                             D + j0, <int>n_out, t.keep, W + j0, <int>n_out, 1)
                # row by row, as colsum sums the whole layer (n_out >= 8)
                fm_colsum_ld_f(D + j0, m, nc, n_out, sums)
                for j in range(nc):
                    b[j0 + j] -= t.lr * sums[j]
            else:
                i0 = n_in * block // nb
                i1 = n_in * (block + 1) // nb
                gemm_blocked(c'T', c'N', <int>(i1 - i0), <int>n_out, <int>m, -t.lr, A + i0,
                             <int>n_in, D, <int>n_out, t.keep, W + i0 * n_out, <int>n_out, 1)
                if block == 0:
                    colsum(D, m, n_out, sums)
                    for j in range(n_out):
                        b[j] -= t.lr * sums[j]
            return
        block -= <int>nb
        next_layer(s, &y)


cdef double step_rows(Fit* f, floating* params, Batch* b, int parts) noexcept nogil:
    """One batch in ``parts`` row parts (float32 only: the planner's rule):
    its objective, or a non-finite value (see take_step)."""
    cdef double obj = 0
    if floating is float:
        obj = run_row_parts(&f.rows, <const float*>b.X, <const float*>b.Y,
                            <const float*>b.w, b.m, b.M, parts, f.s.pool_threads,
                            f.work.batch_sums)
        obj += penalty(f.s, params, f.opt.l2, f.opt.l1)
        if not isfinite(obj):
            return obj
        if f.plan.fused:
            return obj if plain_sgd_update(f, params, b, STEP_ROWS) else INFINITY
        backward_batch(f.s, params, <const float*>b.X, <const float*>b.Y, <const float*>b.w,
                       b.m, b.M, <float*>f.work.acts, <float*>f.work.deltas,
                       <float*>f.work.grads, f.opt.l2, True)
        return obj if optimizer_update(f, params, b) else INFINITY
    return obj
