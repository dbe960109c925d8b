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


cdef void apply_step(int optimizer, floating* p, const floating* g, floating* state,
                     Py_ssize_t n, double lr, double momentum, bint nesterov,
                     double beta1, double beta2, double eps, Py_ssize_t t) noexcept nogil:
    """One optimizer step (scikit-learn's definitions).

    SGD: ``v = momentum * v - lr * g``; ``p += momentum * v - lr * g`` with
    Nesterov, else ``p += v`` (``p -= lr * g`` when momentum is 0).
    Adam (step ``t`` >= 1): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    """
    cdef Py_ssize_t i
    cdef floating f_lr = <floating>lr, mu = <floating>momentum
    cdef floating b1 = <floating>beta1, b2 = <floating>beta2, e = <floating>eps
    cdef floating lr_t, v
    cdef floating* m1
    cdef floating* m2
    if optimizer == OPT_SGD:
        if momentum == 0:
            for i in range(n):
                p[i] -= f_lr * g[i]
        elif nesterov:
            for i in range(n):
                v = mu * state[i] - f_lr * g[i]
                state[i] = v
                p[i] += mu * v - f_lr * g[i]
        else:
            for i in range(n):
                v = mu * state[i] - f_lr * g[i]
                state[i] = v
                p[i] += v
    else:
        m1 = state
        m2 = state + n
        lr_t = <floating>(lr * sqrt(1 - pow(beta2, <double>t)) / (1 - pow(beta1, <double>t)))
        for i in range(n):
            m1[i] = b1 * m1[i] + (1 - b1) * g[i]
            m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i]
            p[i] -= lr_t * m1[i] / (<floating>sqrt(m2[i]) + e)


# --------------------------------------------------------------------------
# Shuffling: splitmix64 + Fisher-Yates, mirrored in fastmlp/_shuffle.py
# --------------------------------------------------------------------------


cdef bint optimizer_update(Fit* f, floating* params, Batch* b) noexcept nogil:
    """The general update from the gradient in the workspace (penalty-free
    L1 part added here): clipping to the global norm, then the optimizer's
    step.  False, nothing changed, when the gradient is not finite."""
    cdef floating* grads = <floating*>f.work.grads
    cdef Py_ssize_t P = f.s.n_params, i
    cdef double gnorm
    cdef Settings* o = &f.opt
    if o.l1 != 0:
        add_l1_gradient(f.s, params, grads, <floating>(o.l1 / b.M))
    gnorm = sq_norm(grads, P)
    if not isfinite(gnorm):
        return False
    if o.clip_norm > 0 and gnorm > o.clip_norm * o.clip_norm:
        gnorm = o.clip_norm / sqrt(gnorm)
        for i in range(P):
            grads[i] = grads[i] * <floating>gnorm
    if o.optimizer == OPT_ADAM:
        o.t[0] += 1
    apply_step(o.optimizer, params, grads, <floating*>o.state, P, o.lr, o.momentum,
               o.nesterov, o.beta1, o.beta2, o.epsilon,
               o.t[0] if o.optimizer == OPT_ADAM else 0)
    return True
