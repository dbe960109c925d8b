# Optimizer updates on the flat parameter buffer.
# Included by _kernels.pyx.

cdef void sgd_layers(Spec* s, floating* params, const floating* X, Py_ssize_t m,
                     const floating* acts, const floating* deltas, floating decay,
                     floating lr, floating* scratch) noexcept nogil:
    """Plain SGD from the deltas, fused into the weight-gradient product:
    ``W <- (1 - lr*decay) W - lr * A^T D``, ``b <- b - lr * colsum(D)``."""
    cdef Layer y = first_layer(s, m)
    cdef Py_ssize_t j
    cdef floating* b
    while y.l < s.L:
        b = params + y.b
        gemm_rm(c'T', c'N', <int>y.n_in, <int>y.n_out, <int>m, -lr,
                X if y.l == 0 else acts + input_offset(&y), <int>y.n_in,
                deltas + y.a, <int>y.n_out, <floating>(1 - lr * decay), params + y.w,
                <int>y.n_out, s.pool_threads)
        colsum(deltas + y.a, m, y.n_out, scratch)
        for j in range(y.n_out):
            b[j] -= lr * scratch[j]
        next_layer(s, &y)


cdef enum:
    STEP_SGD = 0            # fmo_task kinds (_optim.h)
    STEP_MOMENTUM = 1
    STEP_NESTEROV = 2
    STEP_ADAM = 3           # (and AdamW: see set_step_rate)
    STEP_RMSPROP = 4


cdef bint optimizer_update(Fit* f, floating* params, Batch* b) noexcept nogil:
    """The general update from the gradient in the workspace: its L1 term,
    clipping to the global norm, then the optimizer's step (scikit-learn's
    definitions), one vectorised pass over the buffer on the pool (_optim.h):

    SGD: ``v = momentum * v - lr * g``; ``p += momentum * v - lr * g`` with
    Nesterov, else ``p += v`` (``p -= lr * g`` when momentum is 0).
    Adam (step ``t`` >= 1): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    AdamW (PyTorch's): ``p *= 1 - lr * weight_decay``, then Adam's moments and
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    RMSprop (PyTorch's): ``v = rho v + (1 - rho) g^2``, ``p -= lr * g / (sqrt(v) + eps)``.

    False, nothing changed, when the gradient is not finite or the step
    would leave a parameter or state value non-finite (see guarded_step)."""
    cdef Settings* o = &f.opt
    cdef fmo_task* t = &f.opt_task
    cdef double norm, scale = 1
    if o.l1 != 0:
        add_l1_gradient(f.s, params, <floating*>f.work.grads, <floating>(o.l1 / b.M))
    t.g = f.work.grads
    norm = fmo_norm(t, f.plan.step_threads)
    if not isfinite(norm):
        return False
    if o.clip_norm > 0 and norm > o.clip_norm:
        scale = o.clip_norm / norm
        norm = o.clip_norm
    set_step_rate(f, params, scale)
    if guarded_step(f, params, norm):
        return True
    unset_step_rate(f)
    return False


cdef inline bint counts_steps(int optimizer) noexcept nogil:
    """Whether the optimizer keeps a step count (its bias corrections)."""
    return optimizer == OPT_ADAM or optimizer == OPT_ADAMW


cdef void set_step_rate(Fit* f, floating* params, double scale) noexcept nogil:
    """The step's gradient factor ``scale`` (clipping) and learning rate;
    Adam's step count advances and its rate takes the bias corrections.
    AdamW's epsilon takes PyTorch's place, ``sqrt(v) / sqrt(1 - b2^t) + eps``
    = ``(sqrt(v) + eps * sqrt(1 - b2^t)) / sqrt(1 - b2^t)``, and its
    parameters the decay factor.  (``params``: the dtype only.)"""
    cdef Settings* o = &f.opt
    cdef fmo_task* t = &f.opt_task
    cdef double c2
    # scaled as grads[i] * <floating>scale was before the step
    t.scale = <floating>scale
    t.lr = <floating>o.lr
    if counts_steps(o.optimizer):
        o.t[0] += 1
        c2 = sqrt(1 - pow(o.beta2, <double>o.t[0]))
        t.lr = <floating>(o.lr * c2 / (1 - pow(o.beta1, <double>o.t[0])))
        if o.optimizer == OPT_ADAMW:
            t.eps = o.epsilon * c2
            t.keep = <floating>(1 - o.lr * o.weight_decay)


cdef void unset_step_rate(Fit* f) noexcept nogil:
    """Undo :func:`set_step_rate`'s step count (a step that did not run)."""
    if counts_steps(f.opt.optimizer):
        f.opt.t[0] -= 1


cdef void init_optimizer_task(Fit* f, bint is_float) noexcept nogil:
    """Point the optimizer's task at the parameters and state (see _optim.h)."""
    cdef Settings* o = &f.opt
    cdef fmo_task* t = &f.opt_task
    t.is_float = is_float
    t.n = f.s.n_params
    t.mu = o.momentum
    t.b1 = o.beta1
    t.b2 = o.beta2
    t.eps = o.epsilon
    t.keep = 1
    t.s1 = o.state
    t.s2 = NULL
    if counts_steps(o.optimizer):
        t.kind = STEP_ADAM
        t.s2 = <char*>o.state + f.s.n_params * (sizeof(float) if is_float else sizeof(double))
    elif o.optimizer == OPT_RMSPROP:
        t.kind = STEP_RMSPROP
        t.b2 = o.rho
    elif o.momentum == 0:
        t.kind = STEP_SGD
    else:
        t.kind = STEP_NESTEROV if o.nesterov else STEP_MOMENTUM
