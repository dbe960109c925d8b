# cython: language_level=3
"""Compiled core of fastmlp: forward pass, delta backpropagation and updates.

Conventions shared with :mod:`fastmlp.reference` (the spec):

* ``params`` is one flat, C-contiguous buffer.  Weight layer ``l`` occupies
  ``W_l`` (``sizes[l] * sizes[l+1]`` values, row-major ``(n_in, n_out)``)
  followed by ``b_l`` (``sizes[l+1]`` values).  Gradients and optimizer
  state use the same layout.
* Batches are row-major: ``Z = A @ W + b``.
* Codes: hidden activation 0 identity, 1 sigmoid, 2 tanh, 3 relu, 5
  leaky_relu, 6 gelu, 7 softplus; output 0 identity, 1 sigmoid, 2 softmax,
  3 exp; loss 0 squared error, 1 log loss, 2 Poisson deviance;
  optimizer 0 SGD (optional momentum / Nesterov), 1 Adam, 2 RMSprop, 3 AdamW.
* With sample weights ``w`` (all ones when absent) and ``M = sum(w)`` over a
  batch, the batch objective is
  ``sum_i w_i * loss_i / M + l2 / (2 M) * sum(W**2) + l1 / M * sum(|W|)``.

Every function here trusts its arguments: validation happens in Python
(:mod:`fastmlp._validation`) before any kernel runs.  Each call allocates its
own workspace, so calls from several threads never share scratch memory, and
the GIL is released while the math runs.
"""
cimport cython
from cython cimport floating
from libc.math cimport sqrt, pow, fabs, ceil, isfinite, INFINITY
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport uint64_t, int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv
from cpython.exc cimport PyErr_CheckSignals
cimport numpy as cnp

cnp.import_array()

include "_thresholds.pxi"
include "_layout.pxi"
include "_products.pxi"
include "_pointwise.pxi"
include "_dropout.pxi"
include "_passes.pxi"
include "_forward_chunks.pxi"
include "_optimizers.pxi"
include "_update_guard.pxi"
include "_step_rows.pxi"
include "_step_units.pxi"
include "_step_first.pxi"
include "_step_narrow.pxi"
include "_planner.pxi"
include "_fit_state.pxi"
include "_fused_update.pxi"
include "_step_layers.pxi"
include "_step_sparse.pxi"
include "_fit_loop.pxi"
include "_hooks.pxi"




def set_blas_thread_functions(size_t set_address, size_t get_address):
    """Install the BLAS library's thread-count setter and getter (addresses)."""
    fm_install_blas_threads(<void*>set_address, <void*>get_address)


def shuffle(Py_ssize_t[::1] order, uint64_t[::1] state):
    """Permute ``order`` in place (one epoch's shuffle), advancing ``state``."""
    with nogil:
        shuffle_index(&order[0], order.shape[0], &state[0])


def product(str ta, str tb, const floating[:, ::1] A, const floating[:, ::1] B,
            floating[:, ::1] C, double alpha=1.0, double beta=0.0, int path=0,
            Py_ssize_t repeat=1, int pool_threads=1):
    """``C = alpha * op(A) @ op(B) + beta * C`` through the kernels' product.

    ``path``: 0 as the kernels choose, 1 the C loops, 2 BLAS, 3 the register
    blocks of _gemm.h (on up to ``pool_threads`` threads of the pool).  For
    tests of every transposition case and for measuring where the switches
    belong.
    """
    cdef char cta = ord(ta), ctb = ord(tb)
    cdef int M = C.shape[0], N = C.shape[1]
    cdef int K = A.shape[1] if ta == "N" else A.shape[0]
    cdef Py_ssize_t r
    if A.shape[0] != (M if ta == "N" else K) or B.shape[0] != (K if tb == "N" else N) \
            or B.shape[1] != (N if tb == "N" else K):
        raise ValueError("product: shapes of A, B and C do not match")
    with nogil:
        for r in range(repeat):
            if path == 1:
                gemm_loops(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                           &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N)
            elif path == 2:
                gemm_blas(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                          &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N)
            elif path == 3:
                gemm_blocked(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                             &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N,
                             pool_threads)
            else:
                gemm_rm(cta, ctb, M, N, K, <floating>alpha, &A[0, 0], <int>A.shape[1],
                        &B[0, 0], <int>B.shape[1], <floating>beta, &C[0, 0], N,
                        pool_threads)


def all_finite(const floating[:, ::1] X, int threads=1):
    """True when every value of the C-contiguous 2-D array X is finite
    (read by up to ``threads`` threads of the pool when large)."""
    cdef Py_ssize_t n = X.shape[0] * X.shape[1]
    cdef bint ok
    if n == 0:
        return True
    with nogil:
        ok = values_finite(&X[0, 0], n, floating is float, threads)
    return ok


cdef void poly_in_place(floating[::1] x, bint tanh):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        if floating is float:
            x[i] = fm_tanh_f(x[i]) if tanh else fm_exp_f(x[i])
        else:
            x[i] = fm_tanh_d(x[i]) if tanh else fm_exp_d(x[i])


def tanh_poly(floating[::1] x):
    """The kernels' vectorisable tanh, element-wise in place (for accuracy tests)."""
    poly_in_place(x, True)


def exp_poly(floating[::1] x):
    """The kernels' vectorisable exp, element-wise in place (for accuracy tests)."""
    poly_in_place(x, False)


# --------------------------------------------------------------------------
# Python entry points (arguments validated by the caller)
# --------------------------------------------------------------------------


def forward(const floating[::1] params, const floating[:, ::1] X,
            const Py_ssize_t[::1] sizes, int hidden, int output,
            floating[:, ::1] out, Py_ssize_t chunk=FORWARD_ROWS, int threads=0,
            int pool_threads=1):
    """Write the network's outputs for every row of X into ``out``.

    ``threads`` > 0 sets the BLAS thread count for the call; ``pool_threads``
    the threads of fastmlp's pool (caller included) that split the products
    it computes itself (few rows, register blocks).
    """
    cdef Spec s = make_spec(sizes, hidden, output, 0)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L]
    cdef int status
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], -1, 0, None, 0)
    if out.shape[0] != n or out.shape[1] != n_out:
        raise ValueError(f"out must have shape ({n}, {n_out}); got ({out.shape[0]}, {out.shape[1]})")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")
    s.pool_threads = pool_threads
    with nogil:
        status = forward_rows(&s, &params[0], &X[0, 0], n, &out[0, 0], chunk, threads, False)
    if status != 0:
        raise MemoryError()


def forward_sparse(const floating[::1] params, tuple X, const Py_ssize_t[::1] sizes,
                   int hidden, int output, floating[:, ::1] out, int threads=0,
                   int pool_threads=1):
    """:func:`forward` of a CSR X (the tuple ``train`` takes): the first
    layer's products over the stored values (step "sparse"'s), a block of
    rows at a time (its workspace bounded as forward's)."""
    cdef Spec s = make_spec(sizes, hidden, output, 0)
    cdef Data d
    cdef Py_ssize_t n, n_cols, n_out = sizes[s.L], rows, start = 0, m, i
    cdef Py_ssize_t last = s.per_row - n_out
    cdef Py_ssize_t* index
    cdef floating* work
    cdef int before = 0
    memset(&d, 0, sizeof(Data))
    n, n_cols = data_x(&d, X, params)
    check_shapes(&s, params.shape[0], sizes, n, n_cols, -1, 0, None, 0)
    if out.shape[0] != n or out.shape[1] != n_out or pool_threads < 1:
        raise ValueError(f"out must have shape ({n}, {n_out}) and pool_threads be >= 1; got "
                         f"({out.shape[0]}, {out.shape[1]}), {pool_threads}")
    s.pool_threads = pool_threads
    d.n_in = n_cols
    rows = pass_rows(FORWARD_ROWS, n, s.per_row, sizeof(floating))
    work = <floating*>malloc(rows * s.per_row * sizeof(floating))
    index = <Py_ssize_t*>malloc(rows * sizeof(Py_ssize_t))
    try:
        if work == NULL or index == NULL:
            raise MemoryError()
        with nogil:
            before = threads_enter(threads)
            while start < n:
                m = min(rows, n - start)
                for i in range(m):
                    index[i] = start + i
                sparse_forward(&s, &d, index, m, &params[0], work, NULL)
                memcpy(&out[start, 0], work + m * last, m * n_out * sizeof(floating))
                start += m
    finally:
        threads_exit(before)
        free(work)
        free(index)


def predict_ready(cnp.ndarray params, object X, cnp.ndarray sizes, int hidden, int output,
                  int pool_threads, Py_ssize_t many_rows, int threads_few, int threads_many):
    """The outputs for X (a new array), or None when X is not ready as it is.

    Ready: an ndarray (not a subclass) of params' dtype, 2-D, C-contiguous,
    aligned, native byte order, at least one row, ``sizes[0]`` columns, every
    value finite (seen in the first layer's products, see
    :func:`forward_batch`).  Anything else is the caller's to convert and
    check (with errors that say what is wrong).  The one-call fast path of
    ``Network.predict``: unpacking the memoryviews of :func:`all_finite` and
    :func:`forward` costs more than a one-sample forward pass's arithmetic.
    BLAS threads (as :func:`forward` takes them): ``threads_few`` when the
    batches (``min(n, FORWARD_CHUNK)`` rows) have fewer than ``many_rows`` rows, else
    ``threads_many``.
    """
    cdef cnp.ndarray x, out
    cdef Spec s
    cdef Py_ssize_t l, n
    cdef const Py_ssize_t* sz
    cdef cnp.npy_intp dims[2]
    cdef int typenum, status, threads
    if (not cnp.PyArray_IS_C_CONTIGUOUS(params) or cnp.PyArray_NDIM(params) != 1
            or cnp.PyArray_TYPE(params) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)
            or not cnp.PyArray_ISBEHAVED_RO(params)):
        raise ValueError(f"params must be an aligned C-contiguous 1-D float32 or float64 array; "
                         f"got {params.dtype} with shape {(<object>params).shape}")
    if (not cnp.PyArray_IS_C_CONTIGUOUS(sizes) or cnp.PyArray_NDIM(sizes) != 1
            or cnp.PyArray_TYPE(sizes) != cnp.NPY_INTP or cnp.PyArray_DIM(sizes, 0) < 2):
        raise ValueError(f"sizes must be a C-contiguous 1-D intp array of at least 2 sizes; "
                         f"got {sizes.dtype} with shape {(<object>sizes).shape}")
    sz = <const Py_ssize_t*>cnp.PyArray_DATA(sizes)
    for l in range(cnp.PyArray_DIM(sizes, 0)):
        if sz[l] < 1:
            raise ValueError(f"sizes[{l}] must be >= 1; got {sz[l]}")
    s = spec_of(sz, cnp.PyArray_DIM(sizes, 0), hidden, output, 0)
    if cnp.PyArray_DIM(params, 0) != s.n_params:
        raise ValueError(f"params has {cnp.PyArray_DIM(params, 0)} values; layer sizes "
                         f"{sizes.tolist()} need {s.n_params}")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")
    s.pool_threads = pool_threads
    typenum = cnp.PyArray_TYPE(params)
    if type(X) is not cnp.ndarray:
        return None
    x = <cnp.ndarray>X
    if (cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_TYPE(x) != typenum
            or not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_ISBEHAVED_RO(x)
            or cnp.PyArray_DIM(x, 0) < 1 or cnp.PyArray_DIM(x, 1) != sz[0]):
        return None
    n = cnp.PyArray_DIM(x, 0)
    dims[0] = n
    dims[1] = sz[s.L]
    out = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    threads = threads_few if min(n, FORWARD_ROWS) < many_rows else threads_many
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            status = forward_rows(&s, <const float*>cnp.PyArray_DATA(params),
                                  <const float*>cnp.PyArray_DATA(x), n,
                                  <float*>cnp.PyArray_DATA(out), FORWARD_ROWS, threads, True)
        else:
            status = forward_rows(&s, <const double*>cnp.PyArray_DATA(params),
                                  <const double*>cnp.PyArray_DATA(x), n,
                                  <double*>cnp.PyArray_DATA(out), FORWARD_ROWS, threads, True)
    if status == 1:
        return None
    if status != 0:
        raise MemoryError()
    return out


def objective(const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] Y, sample_weight, const Py_ssize_t[::1] sizes,
              int hidden, int output, int loss, double l2, double l1,
              Py_ssize_t chunk=FORWARD_ROWS, int threads=0, bint terms=False):
    """The objective over all rows (one batch): see the module docstring.
    Computed ``chunk`` rows at a time (fewer for wide layers: see pass_rows).
    With ``terms``: ``(data, penalty, M)``, the weighted data-loss sum, the
    penalty and the total weight (the objective is ``(data + penalty) / M``)."""
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L]
    cdef Py_ssize_t rows, start, m, last = s.per_row - n_out, i
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef double total = 0, M = 0, pen = 0
    cdef int before = 0
    cdef floating* work
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    rows = pass_rows(chunk, n, s.per_row + n_out, sizeof(floating))
    work = <floating*>malloc((rows * s.per_row + rows * n_out) * sizeof(floating))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            before = threads_enter(threads)
            start = 0
            while start < n:
                m = min(rows, n - start)
                forward_batch(&s, &params[0], &X[start, 0], m, work, NULL, work + rows * s.per_row,
                              False)
                total += data_loss_sum(&s, work + rows * s.per_row, work + m * last,
                                       &Y[start, 0], NULL if w == NULL else w + start, m)
                start += m
            M = total_weight(w, n)
            pen = penalty(&s, &params[0], l2, l1)
    finally:
        threads_exit(before)
        free(work)
    if terms:
        return total, pen, M
    return (total + pen) / M


def full_pass(const floating[::1] params, const floating[:, ::1] X,
              const floating[:, ::1] Y, sample_weight, const Py_ssize_t[::1] sizes,
              int hidden, int output, int loss, double l2, double l1,
              floating[::1] acts, floating[::1] deltas, floating[::1] grads,
              zs=None, int threads=0):
    """Forward + backward over all rows as one batch.

    OUT: acts, deltas (stacked per layer, n x sizes[l+1] each), grads
    (params layout, L1 term included), zs if given (pre-activations, acts
    layout).  Returns the objective.
    """
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L], i
    cdef Py_ssize_t last = n * (s.per_row - n_out)
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef floating[::1] zs_view
    cdef floating* zs_ptr = NULL
    cdef double total, M = 0
    cdef int before = 0
    cdef floating* zout
    cdef floating* A = NULL     # the activations (with gelu's slopes: a workspace)
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if (acts.shape[0] != n * s.per_row or deltas.shape[0] != n * s.per_row
            or grads.shape[0] != s.n_params):
        raise ValueError("acts, deltas and grads must hold n * sum(sizes[1:]) and n_params values")
    if zs is not None:
        zs_view = zs
        if zs_view.shape[0] != n * s.per_row:
            raise ValueError("zs must hold n * sum(sizes[1:]) values")
        zs_ptr = &zs_view[0]
    zout = <floating*>malloc(n * n_out * sizeof(floating))
    if hidden_slopes(s.hidden):
        A = <floating*>malloc(2 * n * s.per_row * sizeof(floating))
        s.slope_off = n * s.per_row
    if zout == NULL or (hidden_slopes(s.hidden) and A == NULL):
        free(zout)
        free(A)
        raise MemoryError()
    try:
        with nogil:
            before = threads_enter(threads)
            M = total_weight(w, n)
            forward_batch(&s, &params[0], &X[0, 0], n, &acts[0] if A == NULL else A, zs_ptr,
                          zout, False)
            if A != NULL:
                memcpy(&acts[0], A, n * s.per_row * sizeof(floating))
            total = (data_loss_sum(&s, zout, &acts[last], &Y[0, 0], w, n)
                     + penalty(&s, &params[0], l2, l1)) / M
            backward_batch(&s, &params[0], &X[0, 0], &Y[0, 0], w, n, M,
                           &acts[0] if A == NULL else A, &deltas[0], &grads[0], l2)
            if l1 != 0:
                add_l1_gradient(&s, &params[0], &grads[0], <floating>(l1 / M))
    finally:
        threads_exit(before)
        free(zout)
        free(A)
    return total


def gradient(const floating[::1] params, const floating[:, ::1] X,
             const floating[:, ::1] Y, sample_weight, const Py_ssize_t[::1] sizes,
             int hidden, int output, int loss, double l2, double l1, floating[::1] grads,
             Py_ssize_t chunk=FORWARD_ROWS, int threads=0):
    """The gradient of the objective over all rows (one batch) into ``grads``
    (params layout, L1 term included); returns the objective.  Computed
    ``chunk`` rows at a time (fewer for wide layers: see pass_rows), each
    chunk's gradient added up: the workspace is bounded, not n rows'."""
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L], rows, start = 0, m, i
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef double total = 0, M = 0
    cdef int before = 0
    cdef floating* acts = NULL
    cdef floating* deltas = NULL
    cdef floating* zout = NULL
    cdef floating* part = NULL
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if grads.shape[0] != s.n_params or chunk < 1:
        raise ValueError(f"grads must hold {s.n_params} values and chunk be >= 1; "
                         f"got {grads.shape[0]}, {chunk}")
    rows = pass_rows(chunk, n, (3 if hidden_slopes(s.hidden) else 2) * s.per_row + n_out,
                     sizeof(floating))
    try:
        # (gelu: its slopes beside the activations, rows * per_row values on)
        acts = <floating*>malloc((2 if hidden_slopes(s.hidden) else 1) * rows * s.per_row
                                 * sizeof(floating))
        if hidden_slopes(s.hidden):
            s.slope_off = rows * s.per_row
        deltas = <floating*>malloc(rows * s.per_row * sizeof(floating))
        zout = <floating*>malloc(rows * n_out * sizeof(floating))
        if rows < n:
            part = <floating*>malloc(s.n_params * sizeof(floating))
        if acts == NULL or deltas == NULL or zout == NULL or (rows < n and part == NULL):
            raise MemoryError()
        with nogil:
            before = threads_enter(threads)
            M = total_weight(w, n)
            while start < n:
                m = min(rows, n - start)
                forward_batch(&s, &params[0], &X[start, 0], m, acts, NULL, zout, False)
                total += data_loss_sum(&s, zout, acts + m * (s.per_row - n_out), &Y[start, 0],
                                       NULL if w == NULL else w + start, m)
                backward_batch(&s, &params[0], &X[start, 0], &Y[start, 0],
                               NULL if w == NULL else w + start, m, M, acts, deltas,
                               &grads[0] if start == 0 else part, l2 if start == 0 else 0.0)
                if start > 0:
                    for i in range(s.n_params):
                        grads[i] += part[i]
                start += m
            total = (total + penalty(&s, &params[0], l2, l1)) / M
            if l1 != 0:
                add_l1_gradient(&s, &params[0], &grads[0], <floating>(l1 / M))
    finally:
        threads_exit(before)
        free(acts)
        free(deltas)
        free(zout)
        free(part)
    return total


def train(floating[::1] params, object X, const floating[:, ::1] Y,
          sample_weight, const Py_ssize_t[::1] sizes, int hidden, int output, int loss,
          double learning_rate, double l2, double l1, Py_ssize_t batch_size,
          Py_ssize_t epochs, Py_ssize_t[::1] order, bint shuffle,
          uint64_t[::1] rng_state, double[::1] epoch_loss,
          int optimizer=OPT_SGD, double momentum=0.0, bint nesterov=False,
          double beta1=0.9, double beta2=0.999, double epsilon=1e-8,
          double clip_norm=0.0, opt_state=None, Py_ssize_t[::1] step=None,
          double rho=0.9, double weight_decay=0.0, int[::1] stop=None,
          Py_ssize_t check_every=0, int threads=0,
          object strategy="auto", int pool_threads=1, Py_ssize_t[::1] counts=None,
          double dropout=0.0, uint64_t[::1] dropout_state=None):
    """Run ``epochs`` epochs of minibatch training on params, in place.

    X: a C-contiguous 2-D array of params' dtype, or a CSR matrix as the
    tuple ``(values, indices, indptr, n_columns)`` (values of params' dtype,
    indices and indptr intp, checked by the caller: columns in range, indptr
    non-decreasing from 0); its batches are always gathered, each row
    densified into the batch buffer (the steps then run as on dense rows).

    The rows trained on are ``order``'s: all of X (any order of its rows),
    or some of them (each at most once; then every batch is gathered, as
    shuffled ones are).  Each epoch: optionally shuffle ``order`` (in C),
    then for each batch of ``batch_size`` rows of it (the last may be
    smaller): forward, batch objective,
    backward, then the update.  Plain SGD (no momentum, clipping or L1) is
    fused into the backward pass; otherwise the gradient goes to a buffer,
    is clipped to global norm ``clip_norm`` if that is > 0, and the optimizer
    step is taken with ``opt_state`` (n_params values for SGD with momentum
    and RMSprop, 2 * n_params for Adam and AdamW) and ``step[0]`` (Adam's
    and AdamW's step count, advanced); ``rho``: RMSprop's, ``weight_decay``:
    AdamW's (see optimizer_update).

    ``epoch_loss[e]`` gets the epoch's objective: the sum over its batches of
    ``M_B * objective_B`` divided by the total weight, each measured before
    that batch's update (for a full batch: the objective at the epoch's start).

    ``strategy``: "auto", a step name of STEP_NAMES or a sequence of them;
    the planner (_planner.pxi, :func:`plan`) picks each batch's step among
    them.  Results depend on the step and on ``pool_threads`` for the
    "narrow" step only, never on timing.  ``threads`` > 0 sets the BLAS
    thread count for the call.  OUT: ``counts`` (N_STEPS + 1 or + 2 values,
    added to) the batches each step ran (for "narrow-epochs": epochs), the
    steps the duel ran on one thread (see duel_step), then (if there) the
    steps whose optimizer update ran fused (see fused_optimizer_step).

    ``dropout`` in (0, 1): inverted dropout on the hidden layers (step
    "layers" alone; see _dropout.pxi), its key ``dropout_state[0]`` and the
    fit's batch count ``dropout_state[1]``, advanced by every batch reached.

    Returns the number of epochs completed.  A non-finite batch objective or
    gradient stops training before that batch's update; that epoch's entry
    is then the non-finite value and it is not counted.

    With ``check_every`` > 0, Python's signal handlers run every
    ``check_every`` batches; if one sets ``stop[0]`` (fit's Ctrl-C handler)
    training stops after the current batch and the partial epoch is not
    counted.  An exception raised by a handler propagates after the
    workspace is freed; params then hold the last completed step.
    """
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Fit f
    cdef floating[::1] wv = sample_weight
    cdef floating[::1] state_view
    cdef Py_ssize_t done = 0, k
    cdef int before = 0
    cdef bint fused = optimizer == OPT_SGD and momentum == 0 and clip_norm <= 0 and l1 == 0
    cdef Py_ssize_t x_rows, x_cols
    cdef double density
    memset(&f, 0, sizeof(Fit))
    x_rows, x_cols = data_x(&f.data, X, params)
    check_shapes(&s, params.shape[0], sizes, x_rows, x_cols, Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    check_train_args(&s, x_rows, batch_size, epochs, order, epoch_loss, rng_state, stop,
                     counts, pool_threads)
    f.s = &s
    if opt_state is not None:
        state_view = opt_state
    f.opt = settings_of(&s, optimizer, learning_rate, l2, l1, momentum, nesterov, beta1,
                        beta2, epsilon, rho, weight_decay, clip_norm,
                        NULL if opt_state is None else &state_view[0],
                        -1 if opt_state is None else state_view.shape[0], step, fused)
    f.data.Y = &Y[0, 0]
    f.data.w = weights_ptr(sample_weight, wv)
    f.data.n = order.shape[0]
    f.data.n_in = sizes[0]
    f.data.n_out = sizes[s.L]
    f.data.bs = min(batch_size, f.data.n)
    f.data.order = &order[0]
    f.data.shuffle = shuffle and f.data.bs < f.data.n
    f.data.gather = f.data.shuffle or f.data.n < x_rows or f.data.sparse
    density = (-1.0 if not f.data.sparse else
               (f.data.indptr[x_rows] / (<double>x_rows * x_cols)))
    for k in range(s.L + 1):
        f.widest = max(f.widest, sizes[k])
    if dropout != 0:
        set_dropout(&s, dropout, dropout_state)
        f.drop = &dropout_state[0]
    f.plan = plan_fit(&s, f.data.n, f.data.bs, floating is float, fused, f.data.gather, l2,
                      strategy_mask(strategy), threads, pool_threads, density, s.dropout)
    # step "sparse" reads the CSR rows itself: the batches' X is not densified
    f.data.scatter = f.data.sparse and not f.plan.sparse
    if plan_error(&f.plan, strategy) is not None:
        raise ValueError(plan_error(&f.plan, strategy))
    s.pool_threads = f.plan.pool_threads
    try:
        if not alloc_work(&f, sizeof(floating)):
            raise MemoryError()
        with nogil:
            before = threads_enter(f.plan.blas_threads)
            done = fit(&f, &params[0], &rng_state[0], &epoch_loss[0] if epochs > 0 else NULL,
                       epochs, check_every,
                       NULL if stop is None else &stop[0])
    finally:
        threads_exit(before)
        free_work(&f.work)
        if counts is not None:
            for k in range(N_STEPS):
                counts[k] += f.counts[k]
            counts[N_STEPS] += f.duel.solo_steps
            if counts.shape[0] > N_STEPS + 1:
                counts[N_STEPS + 1] += f.fused_updates
    return done


cdef set_dropout(Spec* s, double p, uint64_t[::1] state):
    """Dropout of probability p (in (0, 1)) in train's passes, keyed by state[0]."""
    if not 0 < p < 1 or state is None or state.shape[0] < 2:
        raise ValueError(f"dropout must be in (0, 1) with a dropout_state of 2 values; "
                         f"got {p!r}")
    s.dropout = True
    s.drop_threshold = <uint64_t>ceil(p * 9007199254740992.0)     # p * 2^53, exact
    s.drop_scale = 1.0 / (1.0 - p)
    s.drop_key = state[0]


cdef tuple data_x(Data* d, object X, const floating[::1] params):
    """Point ``d`` at train's X (dense, or the CSR tuple: see ``train``);
    returns X's (rows, columns).  X must outlive the fit."""
    cdef const floating[:, ::1] dense
    cdef const floating[::1] values
    cdef const Py_ssize_t[::1] indices, indptr
    if not isinstance(X, tuple):
        dense = X
        d.X = &dense[0, 0] if dense.shape[0] > 0 and dense.shape[1] > 0 else NULL
        return dense.shape[0], dense.shape[1]
    if len(X) != 4:
        raise ValueError("a sparse X must be (values, indices, indptr, n_columns)")
    values, indices, indptr = X[0], X[1], X[2]
    if (indptr.shape[0] < 1 or indices.shape[0] != values.shape[0]
            or indptr[0] != 0 or indptr[indptr.shape[0] - 1] != values.shape[0]):
        raise ValueError("a sparse X needs indptr from 0 to len(values) and one index a value")
    d.sparse = True
    d.X = &values[0] if values.shape[0] > 0 else NULL
    d.indices = &indices[0] if indices.shape[0] > 0 else NULL
    d.indptr = &indptr[0]
    return indptr.shape[0] - 1, <Py_ssize_t>X[3]


cdef check_train_args(Spec* s, Py_ssize_t n, Py_ssize_t batch_size, Py_ssize_t epochs,
                      Py_ssize_t[::1] order, double[::1] epoch_loss, uint64_t[::1] rng_state,
                      int[::1] stop, Py_ssize_t[::1] counts, int pool_threads):
    """train's checks of its buffers and counts (before anything is allocated)."""
    cdef Py_ssize_t i
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0; got {batch_size}, {epochs}")
    if (order.shape[0] < 1 or order.shape[0] > n or epoch_loss.shape[0] < epochs
            or rng_state.shape[0] < 1):
        raise ValueError("order must hold 1 to n row indices and epoch_loss at least "
                         "epochs values")
    for i in range(order.shape[0]):
        if order[i] < 0 or order[i] >= n:
            raise ValueError(f"order[{i}] = {order[i]} is not a row index of X")
    if stop is not None and stop.shape[0] < 1:
        raise ValueError("stop must hold one flag")
    if counts is not None and counts.shape[0] < N_STEPS + 1:
        raise ValueError(f"counts must hold {N_STEPS + 1} values; got {counts.shape[0]}")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")


cdef Settings settings_of(Spec* s, int optimizer, double lr, double l2, double l1,
                          double momentum, bint nesterov, double beta1, double beta2,
                          double epsilon, double rho, double weight_decay,
                          double clip_norm, void* state,
                          Py_ssize_t n_state, Py_ssize_t[::1] step, bint fused) except *:
    """The optimizer's settings, its state checked against the network."""
    cdef Settings o
    o.optimizer = optimizer
    o.lr = lr
    o.l2 = l2
    o.l1 = l1
    o.momentum = momentum
    o.nesterov = nesterov
    o.beta1 = beta1
    o.beta2 = beta2
    o.epsilon = epsilon
    o.rho = rho
    o.weight_decay = weight_decay
    o.clip_norm = clip_norm
    o.state = state
    o.t = NULL
    if optimizer < OPT_SGD or optimizer > OPT_ADAMW:
        raise ValueError(f"optimizer must be a code 0 to 3; got {optimizer}")
    if state != NULL and n_state < (2 * s.n_params if counts_steps(optimizer) else s.n_params):
        raise ValueError("opt_state is too short for this optimizer")
    if step is not None:
        if step.shape[0] < 1:
            raise ValueError("step must hold one count")
        o.t = &step[0]
    if not fused and momentum != 0 and o.state == NULL:
        raise ValueError("opt_state is required for momentum")
    if counts_steps(optimizer) and (o.state == NULL or o.t == NULL):
        raise ValueError("opt_state and step are required for Adam and AdamW")
    if optimizer == OPT_RMSPROP and o.state == NULL:
        raise ValueError("opt_state is required for RMSprop")
    return o


def plan(const Py_ssize_t[::1] sizes, Py_ssize_t n, Py_ssize_t batch_size, bint is_float,
         bint fused, bint shuffle, double l2, object strategy="auto", int threads=0,
         int pool_threads=1, double density=-1.0, bint dropout=False):
    """What ``train`` would run for a fit of n rows: a dict of the full
    batches' step and parts, the last batch's (None when all are full), whether
    the epochs run in C ("narrow-epochs", given a positive total weight), the
    BLAS and pool threads, and the planner's error for a strategy that cannot
    run (else None).  ``fused``: plain SGD (no momentum, clipping or L1);
    ``density``: a CSR X's stored values / (rows x columns), -1 for a dense X;
    ``dropout``: the fit drops hidden units (step "layers" alone)."""
    cdef Spec s = make_spec(sizes, 0, 0, 0)
    cdef Py_ssize_t bs = min(batch_size, n)
    cdef FitPlan p
    if n < 1 or batch_size < 1 or pool_threads < 1:
        raise ValueError(f"n, batch_size and pool_threads must be >= 1; "
                         f"got {n}, {batch_size}, {pool_threads}")
    p = plan_fit(&s, n, bs, is_float, fused, (shuffle and bs < n) or density >= 0, l2,
                 strategy_mask(strategy), threads, pool_threads, density, dropout)
    full = None if p.full.kind < 0 else (STEP_NAMES[p.full.kind], p.full.parts)
    return {
        "step": "narrow-epochs" if p.epochs_in_c else full,
        "full": full,
        "last": None if p.last.kind < 0 else (STEP_NAMES[p.last.kind], p.last.parts),
        "blas_threads": p.blas_threads,
        "pool_threads": p.pool_threads,
        "error": plan_error(&p, strategy),
    }
