# Training steps "narrow" and "narrow-epochs": the feature-major one-pass step of _narrow.h.
# Included by _kernels.pyx.

# --------------------------------------------------------------------------
# The one-pass step for narrow networks (_narrow.h)
# --------------------------------------------------------------------------

cdef bint narrow_step(const Py_ssize_t[::1] sizes, int narrow):
    """Whether ``train`` takes the one-pass step (see its ``narrow``)."""
    cdef Py_ssize_t l
    if narrow == 0 or sizes.shape[0] - 1 > FMN_MAX_LAYERS:
        return False
    if narrow > 0:
        return True
    for l in range(sizes.shape[0]):
        if sizes[l] > NARROW_WIDTH:
            return False
    return True


cdef int narrow_parts(const Py_ssize_t[::1] sizes, Py_ssize_t bs, Py_ssize_t chunk,
                      int threads):
    """Parts to split the one-pass step's batches of bs rows into: at most
    ``threads``, one chunk each at least, and NARROW_PART_MACS forward
    multiply-adds each at least (below that, handing work to another
    thread costs more than it saves)."""
    cdef Py_ssize_t l, per_row = 0
    cdef int parts = min(threads, FMN_MAX_PARTS, <int>((bs + chunk - 1) // chunk))
    for l in range(sizes.shape[0] - 1):
        per_row += sizes[l] * sizes[l + 1]
    while parts > 1 and bs * per_row < parts * NARROW_PART_MACS:
        parts -= 1
    return max(parts, 1)


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
