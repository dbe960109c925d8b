# Training steps "narrow" and "narrow-epochs": the feature-major one-pass step of _narrow.h.
# Included by _kernels.pyx.

cdef inline double narrow_batch(Spec* s, void* work, const floating* params,
                                const floating* X, const floating* Y, const floating* w,
                                const void* prep, Py_ssize_t m, double inv_M,
                                floating* grads, int parts) noexcept nogil:
    """Forward, loss and backward of one batch in one pass (``work`` set up
    by fm_narrow_init, ``parts`` parts of it): returns the weighted data-loss
    sum and writes its gradient (w_i / M included, no penalty terms) into
    grads.  The rows come from prep (prepared chunk blocks) unless it is
    NULL, else from X, Y, w.  A batch of several chunks is split into
    ``parts`` parts on as many threads."""
    if floating is float:
        return fm_narrow_batch_f(work, s.hidden, s.output, s.loss, params, X, Y, w, prep, m,
                                 inv_M, grads, parts)
    else:
        return fm_narrow_batch_d(work, s.hidden, s.output, s.loss, params, X, Y, w, prep, m,
                                 inv_M, grads, parts)


cdef inline Py_ssize_t narrow_sgd_epochs(Spec* s, void* work, floating* params,
                                         const void* prep, Py_ssize_t m, floating lr,
                                         Py_ssize_t epochs, double W_total,
                                         double* epoch_loss, floating* grads,
                                         floating* backup) noexcept nogil:
    """Epochs of plain SGD on one prepared chunk of m rows (the whole data):
    returns the epochs completed (see fm_narrow_sgd_epochs in _narrow_impl.h)."""
    if floating is float:
        return fm_narrow_sgd_epochs_f(work, s.hidden, s.output, s.loss, params, prep, m,
                                      lr, epochs, W_total, epoch_loss, grads, backup)
    else:
        return fm_narrow_sgd_epochs_d(work, s.hidden, s.output, s.loss, params, prep, m,
                                      lr, epochs, W_total, epoch_loss, grads, backup)


cdef double step_narrow(Fit* f, floating* params, Batch* b, int parts) noexcept nogil:
    """One batch in one feature-major pass (``parts`` parts of its chunks):
    its objective, or a non-finite value (see take_step)."""
    cdef Spec* s = f.s
    cdef floating* grads = <floating*>f.work.grads
    cdef const void* prep = NULL
    cdef double obj
    if f.plan.prepared:
        # the batch's prepared chunk blocks: X, Y and w of ``chunk`` rows each
        prep = f.work.prep_base + ((b.start // f.plan.chunk) * f.plan.chunk
                                   * (s.sizes[0] + s.sizes[s.L] + 1) * sizeof(floating))
    obj = narrow_batch(s, f.work.nwork, params, <const floating*>b.X, <const floating*>b.Y,
                       <const floating*>b.w, prep, b.m, 1.0 / b.M, grads, parts)
    obj += penalty(s, params, f.opt.l2, f.opt.l1)
    if not isfinite(obj):
        return obj
    if f.opt.l2 != 0:
        add_decay(s, params, grads, <floating>(f.opt.l2 / b.M))
    if f.plan.fused:
        # plain SGD: one guarded pass over the gradient
        return obj if sgd_step(params, grads, <floating*>f.work.backup,
                               <floating>f.opt.lr, s.n_params) else INFINITY
    return obj if optimizer_update(f, params, b) else INFINITY


cdef Py_ssize_t narrow_epochs(Fit* f, floating* params, double* epoch_loss,
                              Py_ssize_t epochs, Py_ssize_t check_every,
                              int* stop) except -1 nogil:
    """Step "narrow-epochs": the whole data set is one prepared chunk and the
    step plain SGD: the epochs run in C, ``check_every`` at a time between
    signal checks.  Returns the epochs completed (see ``train``)."""
    cdef Py_ssize_t done = 0, e, m
    while done < epochs:
        m = epochs - done if check_every <= 0 else min(epochs - done, check_every)
        e = narrow_sgd_epochs(f.s, f.work.nwork, params, f.work.prep_base, f.data.n,
                              <floating>f.opt.lr, m, f.data.W_total, epoch_loss + done,
                              <floating*>f.work.grads, <floating*>f.work.backup)
        done += e
        f.counts[STEP_NARROW_EPOCHS] += e
        if e < m:
            break
        if check_every > 0 and done < epochs:
            check_signals()
            if stop != NULL and stop[0] != 0:
                break
    return done
