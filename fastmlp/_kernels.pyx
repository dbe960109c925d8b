# cython: language_level=3
"""Compiled core of fastmlp: forward pass, delta backpropagation and SGD update.

Conventions shared with :mod:`fastmlp.reference` (the spec):

* ``params`` is one flat, C-contiguous buffer.  Weight layer ``l`` occupies
  ``W_l`` (``sizes[l] * sizes[l+1]`` values, row-major ``(n_in, n_out)``)
  followed by ``b_l`` (``sizes[l+1]`` values).
* Batches are row-major: ``Z = A @ W + b``.
* Activation codes: 0 identity, 1 sigmoid, 2 tanh, 3 relu (hidden);
  output codes: 0 identity, 1 sigmoid, 2 softmax; loss codes: 0 squared
  error, 1 log loss.
* A batch objective is ``data_loss_mean + l2 / (2 m) * sum(W**2)``.

Every function here trusts its arguments: validation happens in Python
(:mod:`fastmlp._validation`) before any kernel runs.
"""
cimport cython
from cython cimport floating
from libc.math cimport exp, log, log1p, tanh, isfinite
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

import numpy as np

# Products with M*N*K at or below this run as plain C loops; larger ones go to BLAS.
cdef Py_ssize_t SMALL_PRODUCT = 512

cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_SOFTMAX = 4   # output only

cdef enum:
    OUT_IDENTITY = 0
    OUT_SIGMOID = 1
    OUT_SOFTMAX = 2

cdef enum:
    LOSS_SQUARED = 0
    LOSS_LOG = 1

# --------------------------------------------------------------------------
# Matrix products
# --------------------------------------------------------------------------

cdef void gemm_rm(char ta, char tb, int M, int N, int K, floating alpha,
                  const floating* A, int lda, const floating* B, int ldb,
                  floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major ``C = alpha * op(A) @ op(B) + beta * C`` (``C`` is M x N).

    Tiny products run as C loops (a BLAS call costs more than the work);
    the rest call BLAS with the operands swapped, since a row-major matrix
    read as column-major is its transpose.
    """
    cdef Py_ssize_t i, j, p
    cdef floating s, aip
    if <Py_ssize_t>M * N * K <= SMALL_PRODUCT or K == 0:
        for i in range(M):
            for j in range(N):
                C[i * ldc + j] = C[i * ldc + j] * beta if beta != 0 else 0
        for i in range(M):
            for p in range(K):
                aip = A[i * lda + p] if ta == c'N' else A[p * lda + i]
                aip = alpha * aip
                if tb == c'N':
                    for j in range(N):
                        C[i * ldc + j] += aip * B[p * ldb + j]
                else:
                    for j in range(N):
                        C[i * ldc + j] += aip * B[j * ldb + p]
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


# --------------------------------------------------------------------------
# Element-wise pieces
# --------------------------------------------------------------------------

cdef inline floating sigmoid(floating z) noexcept nogil:
    cdef floating e
    if z >= 0:
        e = exp(-z)
        return 1 / (1 + e)
    e = exp(z)
    return e / (1 + e)


cdef inline double softplus(double z) noexcept nogil:
    """log(1 + exp(z)) without overflow."""
    if z > 0:
        return z + log1p(exp(-z))
    return log1p(exp(z))


cdef void activate(int act, floating* Z, Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    """Apply an activation in place to the m x k block ``Z``."""
    cdef Py_ssize_t i, j, n = m * k
    cdef floating mx, s
    if act == ACT_SIGMOID:
        for i in range(n):
            Z[i] = sigmoid(Z[i])
    elif act == ACT_TANH:
        for i in range(n):
            Z[i] = tanh(Z[i])
    elif act == ACT_RELU:
        for i in range(n):
            if Z[i] < 0:
                Z[i] = 0
    elif act == ACT_SOFTMAX:
        for i in range(m):
            mx = Z[i * k]
            for j in range(1, k):
                if Z[i * k + j] > mx:
                    mx = Z[i * k + j]
            s = 0
            for j in range(k):
                Z[i * k + j] = exp(Z[i * k + j] - mx)
                s = s + Z[i * k + j]
            for j in range(k):
                Z[i * k + j] = Z[i * k + j] / s


cdef void times_derivative(int act, floating* D, const floating* A, Py_ssize_t n) noexcept nogil:
    """``D *= f'(z)`` written through the activation values ``A = f(z)``."""
    cdef Py_ssize_t i
    if act == ACT_SIGMOID:
        for i in range(n):
            D[i] = D[i] * (A[i] * (1 - A[i]))
    elif act == ACT_TANH:
        for i in range(n):
            D[i] = D[i] * (1 - A[i] * A[i])
    elif act == ACT_RELU:
        for i in range(n):
            if A[i] <= 0:
                D[i] = 0


cdef double data_loss_sum(int output, int loss, const floating* Z, const floating* P,
                          const floating* Y, Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    """Sum over the batch of the per-sample data loss (not yet divided by m).

    Log loss is computed from the output logits ``Z`` (stable for any
    magnitude); squared error from the outputs ``P``.
    """
    cdef Py_ssize_t i, j
    cdef double total = 0, d, mx, lse
    if loss == LOSS_SQUARED:
        for i in range(m * k):
            d = <double>Y[i] - <double>P[i]
            total += d * d
        return 0.5 * total
    if output == OUT_SIGMOID:
        for i in range(m * k):
            total += softplus(Z[i]) - <double>Y[i] * Z[i]
        return total
    # softmax + categorical cross-entropy: sum_j y_j * (logsumexp(z) - z_j)
    for i in range(m):
        mx = Z[i * k]
        for j in range(1, k):
            if Z[i * k + j] > mx:
                mx = Z[i * k + j]
        lse = 0
        for j in range(k):
            lse += exp(<double>Z[i * k + j] - mx)
        lse = mx + log(lse)
        for j in range(k):
            total += <double>Y[i * k + j] * (lse - Z[i * k + j])
    return total


cdef void output_delta(int output, int loss, const floating* P, const floating* Y,
                       floating* D, Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    """dLoss/dZ of the output layer for the batch mean (includes the 1/m)."""
    cdef Py_ssize_t i, j
    cdef floating inv_m = <floating>1.0 / m
    cdef floating g, s, p
    if loss == LOSS_LOG and output == OUT_SOFTMAX:
        # d/dz_j sum_k y_k (lse - z_k) = (sum_k y_k) p_j - y_j
        for i in range(m):
            s = 0
            for j in range(k):
                s = s + Y[i * k + j]
            for j in range(k):
                D[i * k + j] = (s * P[i * k + j] - Y[i * k + j]) * inv_m
    elif loss == LOSS_LOG or output == OUT_IDENTITY:
        # sigmoid + binary cross-entropy, identity + squared error: p - y
        for i in range(m * k):
            D[i] = (P[i] - Y[i]) * inv_m
    elif output == OUT_SIGMOID:
        for i in range(m * k):
            p = P[i]
            D[i] = (p - Y[i]) * (p * (1 - p)) * inv_m
    else:
        # softmax + squared error: J^T g with J = diag(p) - p p^T
        for i in range(m):
            s = 0
            for j in range(k):
                s = s + (P[i * k + j] - Y[i * k + j]) * P[i * k + j]
            for j in range(k):
                p = P[i * k + j]
                D[i * k + j] = p * ((p - Y[i * k + j]) - s) * inv_m


cdef double weight_sq_sum(const floating* params, const Py_ssize_t* sizes, int L) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t l, i, off = 0, nw
    for l in range(L):
        nw = sizes[l] * sizes[l + 1]
        for i in range(nw):
            total += <double>params[off + i] * params[off + i]
        off += nw + sizes[l + 1]
    return total


# --------------------------------------------------------------------------
# Forward and backward passes over one batch
# --------------------------------------------------------------------------

cdef void forward_batch(const floating* params, const Py_ssize_t* sizes, int L,
                        int hidden, int output, const floating* X, Py_ssize_t m,
                        floating* acts, floating* zs, floating* zout) noexcept nogil:
    """Forward pass of m rows.

    IN:  params, X (m x sizes[0]).
    OUT: acts (A_1..A_L stacked, each m x sizes[l+1]); zout (m x n_out, the
         output logits); zs (optional, NULL to skip: Z_1..Z_L, same layout).
    """
    cdef Py_ssize_t l, i, j, n_in, n_out, off = 0, aoff = 0
    cdef const floating* A_prev = X
    cdef floating* A
    cdef const floating* W
    cdef const floating* b
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        W = params + off
        b = W + n_in * n_out
        A = acts + aoff
        for i in range(m):           # bias first, then the product adds on top
            for j in range(n_out):
                A[i * n_out + j] = b[j]
        gemm_rm(c'N', c'N', <int>m, <int>n_out, <int>n_in, <floating>1.0,
                A_prev, <int>n_in, W, <int>n_out, <floating>1.0, A, <int>n_out)
        if zs != NULL:
            memcpy(zs + aoff, A, m * n_out * sizeof(floating))
        if l == L - 1:
            memcpy(zout, A, m * n_out * sizeof(floating))
            activate(ACT_SOFTMAX if output == OUT_SOFTMAX else output, A, m, n_out)
        else:
            activate(hidden, A, m, n_out)
        A_prev = A
        off += n_in * n_out + n_out
        aoff += m * n_out


cdef void backward_batch(floating* params, const Py_ssize_t* sizes, int L,
                         int hidden, int output, int loss, const floating* X,
                         const floating* Y, Py_ssize_t m, const floating* acts,
                         floating* deltas, floating* grads, double l2,
                         floating lr) noexcept nogil:
    """Backpropagate the deltas of one batch, after :func:`forward_batch`.

    With ``grads`` not NULL the gradient (same layout as params) is written
    there and params are left alone.  With ``grads`` NULL the SGD step is
    applied to params in place, fused into the weight-gradient product:
    ``W <- (1 - lr*l2/m) W - lr * A^T D``, ``b <- b - lr * colsum(D)``, each
    layer updated only after its weights were used for the previous delta.
    """
    cdef Py_ssize_t l, i, j, n_in, n_out, w_off = 0, a_off = 0
    cdef floating* W
    cdef floating* D
    cdef floating* D_prev
    cdef floating* gW
    cdef floating* gb
    cdef const floating* A_prev
    cdef floating decay = <floating>(l2 / m)
    cdef floating s
    for l in range(L):                   # offsets one past the last layer
        w_off += sizes[l] * sizes[l + 1] + sizes[l + 1]
        a_off += m * sizes[l + 1]
    n_out = sizes[L]
    output_delta(output, loss, acts + a_off - m * n_out, Y,
                 deltas + a_off - m * n_out, m, n_out)
    for l in range(L - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        w_off -= n_in * n_out + n_out
        a_off -= m * n_out
        W = params + w_off
        D = deltas + a_off
        A_prev = X if l == 0 else acts + a_off - m * n_in
        if l > 0:
            D_prev = deltas + a_off - m * n_in
            gemm_rm(c'N', c'T', <int>m, <int>n_in, <int>n_out, <floating>1.0,
                    D, <int>n_out, W, <int>n_out, <floating>0.0, D_prev, <int>n_in)
            times_derivative(hidden, D_prev, A_prev, m * n_in)
        if grads != NULL:
            gW = grads + w_off
            gb = gW + n_in * n_out
            if l2 != 0:
                for i in range(n_in * n_out):
                    gW[i] = decay * W[i]
            gemm_rm(c'T', c'N', <int>n_in, <int>n_out, <int>m, <floating>1.0,
                    A_prev, <int>n_in, D, <int>n_out,
                    <floating>(1.0 if l2 != 0 else 0.0), gW, <int>n_out)
            for j in range(n_out):
                gb[j] = 0
            for i in range(m):
                for j in range(n_out):
                    gb[j] += D[i * n_out + j]
        else:
            gemm_rm(c'T', c'N', <int>n_in, <int>n_out, <int>m, -lr,
                    A_prev, <int>n_in, D, <int>n_out,
                    <floating>(1 - lr * decay), W, <int>n_out)
            gb = W + n_in * n_out
            for j in range(n_out):
                s = 0
                for i in range(m):
                    s = s + D[i * n_out + j]
                gb[j] -= lr * s


# --------------------------------------------------------------------------
# Shuffling: splitmix64 + Fisher-Yates, mirrored in fastmlp/_shuffle.py
# --------------------------------------------------------------------------

cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef void shuffle_index(Py_ssize_t* order, Py_ssize_t n, uint64_t* state) noexcept nogil:
    cdef Py_ssize_t i, j, t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>(splitmix64(state) % <uint64_t>(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t


def shuffle(Py_ssize_t[::1] order, uint64_t[::1] state):
    """Permute ``order`` in place (one epoch's shuffle), advancing ``state``."""
    with nogil:
        shuffle_index(&order[0], order.shape[0], &state[0])


# --------------------------------------------------------------------------
# Python entry points (arguments validated by the caller)
# --------------------------------------------------------------------------

cdef Py_ssize_t act_total(const Py_ssize_t[::1] sizes):
    cdef Py_ssize_t l, total = 0
    for l in range(1, sizes.shape[0]):
        total += sizes[l]
    return total


def forward(const floating[::1] params, const floating[:, ::1] X,
            const Py_ssize_t[::1] sizes, int hidden, int output,
            floating[:, ::1] out, Py_ssize_t chunk=1024):
    """Write the network's outputs for every row of X into ``out``."""
    cdef Py_ssize_t n = X.shape[0], L = sizes.shape[0] - 1
    cdef Py_ssize_t n_in = sizes[0], n_out = sizes[L]
    cdef Py_ssize_t rows = min(chunk, n), start, m, per_row = act_total(sizes)
    cdef Py_ssize_t last = per_row - n_out
    cdef floating* work = <floating*>malloc((rows * per_row + rows * n_out) * sizeof(floating))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            start = 0
            while start < n:
                m = min(rows, n - start)
                forward_batch(&params[0], &sizes[0], <int>L, hidden, output,
                              &X[start, 0], m, work, NULL, work + rows * per_row)
                memcpy(&out[start, 0], work + m * last, m * n_out * sizeof(floating))
                start += m
    finally:
        free(work)


def objective(const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] Y, const Py_ssize_t[::1] sizes,
              int hidden, int output, int loss, double l2, Py_ssize_t chunk=1024):
    """Data loss averaged over rows plus ``l2 / (2 n) * sum(W**2)``."""
    cdef Py_ssize_t n = X.shape[0], L = sizes.shape[0] - 1
    cdef Py_ssize_t n_out = sizes[L]
    cdef Py_ssize_t rows = min(chunk, n), start, m, per_row = act_total(sizes)
    cdef Py_ssize_t last = per_row - n_out
    cdef double total = 0
    cdef floating* work = <floating*>malloc((rows * per_row + rows * n_out) * sizeof(floating))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            start = 0
            while start < n:
                m = min(rows, n - start)
                forward_batch(&params[0], &sizes[0], <int>L, hidden, output,
                              &X[start, 0], m, work, NULL, work + rows * per_row)
                total += data_loss_sum(output, loss, work + rows * per_row,
                                       work + m * last, &Y[start, 0], m, n_out)
                start += m
            total = total / n
            if l2 != 0:
                total += l2 / (2.0 * n) * weight_sq_sum(&params[0], &sizes[0], <int>L)
    finally:
        free(work)
    return total


def full_pass(const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] Y, const Py_ssize_t[::1] sizes,
              int hidden, int output, int loss, double l2,
              floating[::1] acts, floating[::1] deltas, floating[::1] grads,
              zs=None):
    """Forward + backward over all rows as one batch.

    OUT: acts, deltas (stacked per layer, m x sizes[l+1] each), grads
    (params layout), zs if given (pre-activations, acts layout).
    Returns the objective.
    """
    cdef Py_ssize_t n = X.shape[0], L = sizes.shape[0] - 1
    cdef Py_ssize_t n_out = sizes[L]
    cdef Py_ssize_t last = acts.shape[0] - n * n_out
    cdef floating[::1] zs_view
    cdef floating* zs_ptr = NULL
    cdef double total
    cdef floating* zout = <floating*>malloc(n * n_out * sizeof(floating))
    if zout == NULL:
        raise MemoryError()
    if zs is not None:
        zs_view = zs
        zs_ptr = &zs_view[0]
    try:
        with nogil:
            forward_batch(&params[0], &sizes[0], <int>L, hidden, output,
                          &X[0, 0], n, &acts[0], zs_ptr, zout)
            total = data_loss_sum(output, loss, zout, &acts[last], &Y[0, 0], n, n_out) / n
            if l2 != 0:
                total += l2 / (2.0 * n) * weight_sq_sum(&params[0], &sizes[0], <int>L)
            backward_batch(<floating*>&params[0], &sizes[0], <int>L, hidden, output, loss,
                           &X[0, 0], &Y[0, 0], n, &acts[0], &deltas[0], &grads[0],
                           l2, 0)
    finally:
        free(zout)
    return total


def train(floating[::1] params, const floating[:, ::1] X, const floating[:, ::1] Y,
          const Py_ssize_t[::1] sizes, int hidden, int output, int loss,
          double learning_rate, double l2, Py_ssize_t batch_size, Py_ssize_t epochs,
          Py_ssize_t[::1] order, bint shuffle, uint64_t[::1] rng_state,
          double[::1] epoch_loss):
    """Run ``epochs`` epochs of minibatch SGD on params, in place.

    Each epoch: optionally shuffle ``order`` (in C), then for each batch of
    ``batch_size`` rows (the last may be smaller): forward, batch objective,
    backward fused with the update.  ``epoch_loss[e]`` gets the epoch's
    objective: the sum over batches of ``m_B * objective_B`` divided by n,
    each measured before that batch's update (for a full batch, exactly the
    objective at the start of the epoch).

    Returns the number of epochs completed.  A non-finite batch objective
    stops training before that batch's update is applied; the epoch's entry
    is then NaN and it is not counted.
    """
    cdef Py_ssize_t n = X.shape[0], L = sizes.shape[0] - 1
    cdef Py_ssize_t n_in = sizes[0], n_out = sizes[L]
    cdef Py_ssize_t bs = min(batch_size, n), per_row = act_total(sizes)
    cdef Py_ssize_t last = per_row - n_out
    cdef Py_ssize_t e, start, m, i, done = 0
    cdef bint gather = shuffle and bs < n
    cdef floating lr = <floating>learning_rate
    cdef double batch_obj, total
    cdef const floating* Xb
    cdef const floating* Yb
    cdef floating* acts = NULL
    cdef floating* deltas = NULL
    cdef floating* zout = NULL
    cdef floating* xbuf = NULL
    cdef floating* ybuf = NULL
    acts = <floating*>malloc(bs * per_row * sizeof(floating))
    deltas = <floating*>malloc(bs * per_row * sizeof(floating))
    zout = <floating*>malloc(bs * n_out * sizeof(floating))
    if gather:
        xbuf = <floating*>malloc(bs * n_in * sizeof(floating))
        ybuf = <floating*>malloc(bs * n_out * sizeof(floating))
    try:
        if acts == NULL or deltas == NULL or zout == NULL or (gather and (xbuf == NULL or ybuf == NULL)):
            raise MemoryError()
        with nogil:
            for e in range(epochs):
                if gather:
                    shuffle_index(&order[0], n, &rng_state[0])
                total = 0
                start = 0
                while start < n:
                    m = min(bs, n - start)
                    if gather:
                        for i in range(m):
                            memcpy(xbuf + i * n_in, &X[order[start + i], 0], n_in * sizeof(floating))
                            memcpy(ybuf + i * n_out, &Y[order[start + i], 0], n_out * sizeof(floating))
                        Xb = xbuf
                        Yb = ybuf
                    else:
                        Xb = &X[start, 0]
                        Yb = &Y[start, 0]
                    forward_batch(&params[0], &sizes[0], <int>L, hidden, output,
                                  Xb, m, acts, NULL, zout)
                    batch_obj = data_loss_sum(output, loss, zout, acts + m * last, Yb, m, n_out)
                    if l2 != 0:
                        batch_obj += 0.5 * l2 * weight_sq_sum(&params[0], &sizes[0], <int>L)
                    if not isfinite(batch_obj):
                        total = batch_obj
                        break
                    total += batch_obj
                    backward_batch(&params[0], &sizes[0], <int>L, hidden, output, loss,
                                   Xb, Yb, m, acts, deltas, NULL, l2, lr)
                    start += m
                epoch_loss[e] = total / n
                if not isfinite(total):
                    epoch_loss[e] = total
                    break
                done += 1
    finally:
        free(acts)
        free(deltas)
        free(zout)
        free(xbuf)
        free(ybuf)
    return done
