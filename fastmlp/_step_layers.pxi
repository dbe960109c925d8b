# Training step "layers": the forward pass, loss and backward pass layer by
# layer, each product as gemm_rm chooses (loops, register blocks or BLAS).
# Included by _kernels.pyx.

cdef double step_layers(Fit* f, floating* params, Batch* b) noexcept nogil:
    """One batch: its objective, or a non-finite value (see take_step)."""
    cdef Spec* s = f.s
    cdef Py_ssize_t m = b.m, n_out = s.sizes[s.L]
    cdef const floating* X = <const floating*>b.X
    cdef const floating* Y = <const floating*>b.Y
    cdef const floating* w = <const floating*>b.w
    cdef floating* acts = <floating*>f.work.acts
    cdef floating* deltas = <floating*>f.work.deltas
    cdef double obj
    forward_batch(s, params, X, m, acts, NULL, <floating*>f.work.zout, False)
    obj = data_loss_sum(s, <floating*>f.work.zout, acts + m * (s.per_row - n_out), Y, w, m)
    obj += penalty(s, params, f.opt.l2, f.opt.l1)
    if not isfinite(obj):
        return obj
    if f.plan.fused:
        backward_deltas(s, params, Y, w, m, b.M, acts, deltas)
        safe_sums(s, X, m, 0, m, acts, deltas, f.work.batch_sums)
        return obj if plain_sgd_update(f, params, b, STEP_LAYERS) else INFINITY
    backward_deltas(s, params, Y, w, m, b.M, acts, deltas)
    if fused_optimizer_step(f, params, b):
        return obj
    backward_batch(s, params, X, Y, w, m, b.M, acts, deltas, <floating*>f.work.grads,
                   f.opt.l2, True)
    return obj if optimizer_update(f, params, b) else INFINITY
