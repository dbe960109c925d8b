# cython: language_level=3
"""Compiled core of fastmlp: forward pass, delta backpropagation and updates.

Conventions shared with :mod:`fastmlp.reference` (the spec):

* ``params`` is one flat, C-contiguous buffer.  Weight layer ``l`` occupies
  ``W_l`` (``sizes[l] * sizes[l+1]`` values, row-major ``(n_in, n_out)``)
  followed by ``b_l`` (``sizes[l+1]`` values).  Gradients and optimizer
  state use the same layout.
* Batches are row-major: ``Z = A @ W + b``.
* Codes: hidden activation 0 identity, 1 sigmoid, 2 tanh, 3 relu; output 0
  identity, 1 sigmoid, 2 softmax; loss 0 squared error, 1 log loss;
  optimizer 0 SGD (optional momentum / Nesterov), 1 Adam.
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
from libc.math cimport sqrt, pow, fabs, isfinite, INFINITY
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint64_t, int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv
from cpython.exc cimport PyErr_CheckSignals
cimport numpy as cnp

cnp.import_array()

include "_thresholds.pxi"
include "_layout.pxi"
include "_products.pxi"
include "_pointwise.pxi"
include "_passes.pxi"
include "_optimizers.pxi"
include "_update_guard.pxi"
include "_step_rows.pxi"
include "_step_units.pxi"
include "_step_first.pxi"
include "_step_narrow.pxi"
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


def exp_poly(floating[::1] x):
    """The kernels' vectorisable exp, element-wise in place (for accuracy tests)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        if floating is float:
            x[i] = fm_exp_f(x[i])
        else:
            x[i] = fm_exp_d(x[i])


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
              Py_ssize_t chunk=FORWARD_ROWS, int threads=0):
    """The objective over all rows (one batch): see the module docstring."""
    cdef Spec s = make_spec(sizes, hidden, output, loss)
    cdef Py_ssize_t n = X.shape[0], n_out = sizes[s.L]
    cdef Py_ssize_t rows = min(chunk, n), start, m, last = s.per_row - n_out, i
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef double total = 0, M = 0
    cdef int before = 0
    cdef floating* work
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
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
            total = (total + penalty(&s, &params[0], l2, l1)) / M
    finally:
        threads_exit(before)
        free(work)
    return total


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
    if zout == NULL:
        raise MemoryError()
    try:
        with nogil:
            before = threads_enter(threads)
            M = total_weight(w, n)
            forward_batch(&s, &params[0], &X[0, 0], n, &acts[0], zs_ptr, zout, False)
            total = (data_loss_sum(&s, zout, &acts[last], &Y[0, 0], w, n)
                     + penalty(&s, &params[0], l2, l1)) / M
            backward_batch(&s, &params[0], &X[0, 0], &Y[0, 0], w, n, M,
                           &acts[0], &deltas[0], &grads[0], l2)
            if l1 != 0:
                add_l1_gradient(&s, &params[0], &grads[0], <floating>(l1 / M))
    finally:
        threads_exit(before)
        free(zout)
    return total


def train(floating[::1] params, const floating[:, ::1] X, const floating[:, ::1] Y,
          sample_weight, const Py_ssize_t[::1] sizes, int hidden, int output, int loss,
          double learning_rate, double l2, double l1, Py_ssize_t batch_size,
          Py_ssize_t epochs, Py_ssize_t[::1] order, bint shuffle,
          uint64_t[::1] rng_state, double[::1] epoch_loss,
          int optimizer=OPT_SGD, double momentum=0.0, bint nesterov=False,
          double beta1=0.9, double beta2=0.999, double epsilon=1e-8,
          double clip_norm=0.0, opt_state=None, Py_ssize_t[::1] step=None,
          int[::1] stop=None, Py_ssize_t check_every=0, int threads=0, int narrow=-1,
          bint epochs_in_c=True, int pool_threads=1):
    """Run ``epochs`` epochs of minibatch training on params, in place.

    Each epoch: optionally shuffle ``order`` (in C), then for each batch of
    ``batch_size`` rows (the last may be smaller): forward, batch objective,
    backward, then the update.  Plain SGD (no momentum, clipping or L1) is
    fused into the backward pass; otherwise the gradient goes to a buffer,
    is clipped to global norm ``clip_norm`` if that is > 0, and the optimizer
    step is taken with ``opt_state`` (n_params values for SGD with momentum,
    2 * n_params for Adam) and ``step[0]`` (Adam's step count, advanced).

    ``epoch_loss[e]`` gets the epoch's objective: the sum over its batches of
    ``M_B * objective_B`` divided by the total weight, each measured before
    that batch's update (for a full batch: the objective at the epoch's start).

    ``threads`` > 0 sets the BLAS thread count for the call.  ``narrow``
    picks the step: 1 the one-pass feature-major step of ``_narrow.h`` (any
    widths), 0 the per-layer products, -1 (default) the one-pass step when
    every layer is at most ``NARROW_WIDTH`` wide.  With ``epochs_in_c``,
    plain SGD on a data set that fits one chunk of the one-pass step runs its
    epochs in one C loop (same results; the per-epoch cost of the loop here
    is most of an XOR epoch).  ``pool_threads`` > 1 lets the one-pass step
    split batches of enough work into that many parts on the threads of
    ``_pool.h`` (results then depend on that number, not on timing), and the
    register-blocked products split their columns there; a float32 step
    without BLAS products runs its rows' forward pass, loss and deltas in
    parts there (see row_parts) and plain SGD's updates in blocks (see
    update_block), and plain SGD on one hidden layer runs in parts of its
    hidden units, one hand-off a step (see unit_parts, unit_block); plain
    SGD whose first layer's products go to BLAS runs that layer in parts of
    its units and the later ones in parts of the rows, each part calling
    BLAS on one thread (see first_split_parts, FirstSplitTask); results the
    same for any number.

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
    cdef Py_ssize_t n = X.shape[0], n_in = sizes[0], n_out = sizes[s.L]
    cdef Py_ssize_t bs = min(batch_size, n), P = s.n_params
    cdef Py_ssize_t e, start, m, i, done = 0, batches = 0
    cdef int* stop_ptr = NULL if stop is None else &stop[0]
    cdef bint halted = False
    cdef int before = 0
    cdef bint gather = shuffle and bs < n
    cdef bint fused = optimizer == OPT_SGD and momentum == 0 and clip_norm <= 0 and l1 == 0
    cdef bint keep_z = loss == LOSS_LOG
    cdef RowTask rows
    cdef Spec part_spec
    cdef int n_row_parts = 1, n_update_blocks = 0
    cdef double* part_sums = NULL
    cdef double* batch_sums = NULL       # a batch's sums for sgd_safe (see safe_sums)
    cdef UpdateTask upd
    cdef UnitTask units
    cdef int n_units = 1, status, upar = 0
    cdef bint pending = False           # the batch's forward pass is done (unit_hand_off),
                                        # and when gathering, the batch is in xalt, yalt, walt
    cdef Py_ssize_t nxt, mn
    cdef bint unit_split = False        # some batch splits by hidden units (unit_parts)
    cdef float* zparts = NULL
    cdef float* unit_outs = NULL
    cdef FirstSplitTask fst
    cdef RowTask rest_rows              # first_split's row parts: the layers after the first
    cdef Spec rest_spec
    cdef int n_first = 1
    cdef bint first_split = False       # some batch splits by the first layer's units
    cdef float* first_sums = NULL
    cdef floating* xalt = NULL
    cdef floating* yalt = NULL
    cdef floating* walt = NULL
    cdef const floating* wn
    cdef floating lr = <floating>learning_rate
    cdef double batch_obj, total, M, W_total = 0, gnorm
    cdef floating[::1] wv = sample_weight
    cdef const floating* w = weights_ptr(sample_weight, wv)
    cdef floating[::1] state_view
    cdef floating* state = NULL
    cdef Py_ssize_t* t = NULL
    cdef const floating* Xb
    cdef const floating* Yb
    cdef const floating* wb
    cdef floating* acts = NULL
    cdef floating* deltas = NULL
    cdef floating* zout = NULL
    cdef Py_ssize_t widest = 0
    cdef floating* scratch = NULL
    cdef floating* grads = NULL
    cdef floating* xbuf = NULL
    cdef floating* ybuf = NULL
    cdef floating* wbuf = NULL
    cdef floating* backup = NULL
    cdef double* bounds = NULL
    cdef void* nwork = NULL
    cdef int parts = 1
    cdef bint one_pass = narrow_step(sizes, narrow)
    cdef int nv = fm_narrow_nv(bs, sizeof(floating))
    cdef Py_ssize_t chunk = fm_narrow_chunk(nv, sizeof(floating))
    cdef size_t block_bytes = (n_in + n_out + 1) * chunk * sizeof(floating)
    cdef void* prep = NULL
    cdef char* prep_base = NULL
    # unshuffled batches that start on chunk boundaries: their chunk blocks
    # are prepared once for every epoch (when that copy is not too big)
    cdef bint prepared = (one_pass and not gather and (bs >= n or bs % chunk == 0)
                          and fm_narrow_prep_bytes(n_in, n_out, n, nv, sizeof(floating))
                          <= PREPARED_BYTES)
    # every check before the first allocation: nothing leaks on an error
    check_shapes(&s, params.shape[0], sizes, X.shape[0], X.shape[1], Y.shape[0], Y.shape[1],
                 sample_weight, 0 if sample_weight is None else wv.shape[0])
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0; got {batch_size}, {epochs}")
    if order.shape[0] != n or epoch_loss.shape[0] < epochs or rng_state.shape[0] < 1:
        raise ValueError("order must hold n indices and epoch_loss at least epochs values")
    for i in range(n):
        if order[i] < 0 or order[i] >= n:
            raise ValueError(f"order[{i}] = {order[i]} is not a row index of X")
    if opt_state is not None:
        state_view = opt_state
        if state_view.shape[0] < (2 * P if optimizer == OPT_ADAM else P):
            raise ValueError("opt_state is too short for this optimizer")
        state = &state_view[0]
    if step is not None:
        if step.shape[0] < 1:
            raise ValueError("step must hold one count")
        t = &step[0]
    if not fused and momentum != 0 and state == NULL:
        raise ValueError("opt_state is required for momentum")
    if optimizer == OPT_ADAM and (state == NULL or t == NULL):
        raise ValueError("opt_state and step are required for Adam")
    if stop is not None and stop.shape[0] < 1:
        raise ValueError("stop must hold one flag")
    if pool_threads < 1:
        raise ValueError(f"pool_threads must be >= 1; got {pool_threads}")
    s.pool_threads = pool_threads
    for i in range(s.L):
        n_update_blocks += <int>update_blocks(sizes[i], sizes[i + 1])
    for i in range(s.L):
        if bs * sizes[i] * sizes[i + 1] > BLOCKED_MAX_PRODUCT:
            # the step has BLAS products: the pool's threads, spinning after
            # each small product, would take the cores from BLAS's threads
            # (measured: mnist-shape, 6% of the fit spent spinning)
            s.pool_threads = 1
    if one_pass:
        parts = narrow_parts(sizes, bs, chunk, pool_threads)
        nwork = malloc(parts * fm_narrow_work_bytes(&sizes[0], s.L))
        if prepared:
            prep = malloc(fm_narrow_prep_bytes(n_in, n_out, n, nv, sizeof(floating)))
    else:
        acts = <floating*>malloc(bs * s.per_row * sizeof(floating))
        deltas = <floating*>malloc(bs * s.per_row * sizeof(floating))
        if keep_z:
            zout = <floating*>malloc(bs * n_out * sizeof(floating))
    if fused:
        backup = <floating*>malloc(P * sizeof(floating))
    if fused and not one_pass:
        bounds = <double*>malloc(2 * s.L * sizeof(double))
        part_sums = <double*>calloc((MAX_ROW_PARTS + 1) * 2 * s.L, sizeof(double))
        batch_sums = part_sums + MAX_ROW_PARTS * 2 * s.L
        if floating is float and bs > 0:
            unit_split = (unit_parts(&s, bs) > 1
                          or (n % bs != 0 and unit_parts(&s, n % bs) > 1))
        if unit_split:
            zparts = <float*>malloc(2 * MAX_UNIT_PARTS * bs * n_out * sizeof(float))
            unit_outs = <float*>malloc(MAX_UNIT_PARTS * (3 * bs * n_out + n_out + sizes[1])
                                       * sizeof(float))
        if floating is float and bs > 0 and fm_blas_threads_known():
            # (with a BLAS whose thread count fastmlp cannot set, the parts'
            # calls would each start that BLAS's threads)
            first_split = (first_split_parts(&s, bs, pool_threads) > 1
                           or (n % bs != 0 and first_split_parts(&s, n % bs, pool_threads) > 1))
    if not fused or one_pass:
        grads = <floating*>malloc(P * sizeof(floating))
    for i in range(sizes.shape[0]):
        widest = max(widest, sizes[i])
    scratch = <floating*>malloc(widest * sizeof(floating))
    if first_split:
        first_sums = <float*>malloc(MAX_FIRST_PARTS * widest * sizeof(float))
        rest_spec = spec_of(&sizes[1], s.L, hidden, output, loss)
        rest_spec.blas_one = True   # first_split's parts call BLAS on one thread
    if gather:
        xbuf = <floating*>malloc(bs * n_in * sizeof(floating))
        ybuf = <floating*>malloc(bs * n_out * sizeof(floating))
        if w != NULL:
            wbuf = <floating*>malloc(bs * sizeof(floating))
        if unit_split:                  # the next batch, gathered ahead (unit_hand_off)
            xalt = <floating*>malloc(bs * n_in * sizeof(floating))
            yalt = <floating*>malloc(bs * n_out * sizeof(floating))
            if w != NULL:
                walt = <floating*>malloc(bs * sizeof(floating))
    try:
        if ((one_pass and nwork == NULL) or (prepared and prep == NULL)
                or (not one_pass and (acts == NULL or deltas == NULL or (keep_z and zout == NULL)))
                or scratch == NULL
                or ((not fused or one_pass) and grads == NULL)
                or (fused and backup == NULL)
                or (fused and not one_pass and (bounds == NULL or part_sums == NULL))
                or (unit_split and (zparts == NULL or unit_outs == NULL))
                or (first_split and first_sums == NULL)
                or (unit_split and gather
                    and (xalt == NULL or yalt == NULL or (w != NULL and walt == NULL)))
                or (gather and (xbuf == NULL or ybuf == NULL or (w != NULL and wbuf == NULL)))):
            raise MemoryError()
        with nogil:
            # first_split's parts call BLAS on one thread each
            before = threads_enter(1 if first_split else threads)
            W_total = total_weight(w, n)
            if bounds != NULL:          # the per-layer step's plain SGD (see sgd_safe)
                exact_bounds(&s, &params[0], bounds)
            if floating is float:       # the pool's tasks of the per-layer step
                part_spec = s
                part_spec.pool_threads = 1
                rows.s = &part_spec
                rows.params = &params[0]
                rows.acts = acts
                rows.deltas = deltas
                rows.zout = zout
                rows.sums = part_sums
                upd.s = &s
                upd.params = &params[0]
                upd.acts = acts
                upd.deltas = deltas
                units.s = &s
                units.params = &params[0]
                units.bs = bs
                units.hid = acts
                units.dhid = deltas
                units.zpart = zparts
                units.outs = unit_outs
                units.backup = backup
                units.l2 = l2
                units.lr = lr
                fst.s = &s
                fst.params = &params[0]
                fst.acts = acts
                fst.deltas = deltas
                fst.sums = first_sums
                fst.widest = widest
                fst.lr = lr
                rest_rows.s = &rest_spec
                rest_rows.params = &params[0] + sizes[0] * sizes[1] + sizes[1]
                rest_rows.zout = zout
                rest_rows.sums = part_sums
            if one_pass:
                fm_narrow_init(nwork, &sizes[0], s.L, nv)
            if prepared:
                if floating is float:
                    fm_narrow_prepare_f(nv, n_in, n_out, &X[0, 0], &Y[0, 0], w, n, prep)
                else:
                    fm_narrow_prepare_d(nv, n_in, n_out, &X[0, 0], &Y[0, 0], w, n, prep)
                prep_base = <char*>((<size_t>prep + 31) & ~(<size_t>31))
            if epochs_in_c and prepared and fused and n <= chunk and l2 == 0 and W_total > 0:
                # the whole data set is one chunk and the step plain SGD: the
                # epochs run in C, a slice of check_every at a time
                while done < epochs and not halted:
                    m = epochs - done if check_every <= 0 else min(epochs - done, check_every)
                    e = narrow_sgd_epochs(&s, nwork, &params[0], prep_base, n, lr, m, W_total,
                                          &epoch_loss[done], grads, backup)
                    done += e
                    if e < m:
                        break
                    if check_every > 0 and done < epochs:
                        check_signals()
                        halted = stop_ptr != NULL and stop_ptr[0] != 0
                epochs = 0          # all done above
            for e in range(epochs):
                if gather:
                    shuffle_index(&order[0], n, &rng_state[0])
                if bounds != NULL and e > 0:
                    exact_bounds(&s, &params[0], bounds)    # tight again (see sgd_safe)
                pending = False
                total = 0
                start = 0
                while start < n:
                    m = min(bs, n - start)
                    if pending and gather:      # by the step before (unit_hand_off)
                        xbuf, xalt = xalt, xbuf
                        ybuf, yalt = yalt, ybuf
                        wbuf, walt = walt, wbuf
                    elif gather:
                        gather_rows(X, Y, w, &order[start], m, xbuf, ybuf, wbuf)
                    if gather:
                        Xb = xbuf
                        Yb = ybuf
                        wb = wbuf
                    else:
                        Xb = &X[start, 0]
                        Yb = &Y[start, 0]
                        wb = NULL if w == NULL else w + start
                    M = total_weight(wb, m)
                    if check_every > 0:
                        batches += 1
                        if batches >= check_every:
                            batches = 0
                            check_signals()
                            if stop_ptr != NULL and stop_ptr[0] != 0:
                                halted = True
                                break
                    if M <= 0:          # a batch of zero total weight carries no gradient
                        start += m
                        continue
                    if floating is float:
                        if unit_split:
                            n_units = unit_parts(&s, m)
                            if n_units > 1:
                                # this batch's update and the next one's forward
                                # pass in one hand-off when the next splits alike
                                units.parts = n_units
                                units.par = upar
                                if not pending:
                                    units.update = False
                                    units.fwd = True
                                    units.Xn = Xb
                                    units.mn = m
                                    unit_hand_off(&units, s.pool_threads, bounds)
                                units.update = True
                                units.X = Xb
                                units.Y = Yb
                                units.w = wb
                                units.m = m
                                units.M = M
                                units.fwd = False
                                nxt = start + m
                                mn = min(bs, n - nxt)
                                if nxt < n and unit_parts(&s, mn) == n_units:
                                    if gather:
                                        gather_rows(X, Y, w, &order[nxt], mn, xalt, yalt, walt)
                                        units.Xn = xalt
                                        wn = walt               # NULL when w is
                                    else:
                                        units.Xn = &X[nxt, 0]
                                        wn = NULL if w == NULL else w + nxt
                                    units.fwd = total_weight(wn, mn) > 0
                                    units.mn = mn
                                status = unit_hand_off(&units, s.pool_threads, bounds)
                                if status == UNIT_NOT_FINITE:
                                    total = units.obj
                                    break
                                if status == UNIT_RESTORED:
                                    total = INFINITY
                                    break
                                pending = units.fwd
                                if pending:
                                    upar = 1 - upar
                                start += m
                                total += units.obj
                                continue
                    n_first = 1
                    if floating is float:
                        if first_split:
                            n_first = first_split_parts(&s, m, pool_threads)
                        if n_first > 1:
                            # the first layer by units, the rest by rows (first_split_forward)
                            fst.parts = n_first
                            fst.X = Xb
                            fst.m = m
                            fmp_run(first_split_forward, &fst, n_first, pool_threads)
                            rest_rows.acts = acts + m * sizes[1]
                            rest_rows.deltas = deltas + m * sizes[1]
                            batch_obj = run_row_parts(&rest_rows, acts, Yb, wb, m, M, n_first,
                                                      pool_threads, batch_sums + 2)
                            # sum|X|, and the first layer's sum|D| bounded before it
                            # exists (see unit_hand_off)
                            batch_sums[0] = 0
                            for i in range(n_first):
                                batch_sums[0] += fst.xsum[i]
                            batch_sums[1] = <double>sizes[1] * bounds[1] * batch_sums[3]
                    if one_pass:
                        batch_obj = narrow_batch(
                            &s, nwork, &params[0], Xb, Yb, wb,
                            NULL if not prepared else prep_base + (start // chunk) * block_bytes,
                            m, 1.0 / M, grads, parts)
                    elif n_first == 1:
                        n_row_parts = row_parts(&s, m, floating is float)
                    if n_first > 1:
                        pass
                    elif not one_pass and n_row_parts > 1:
                        if floating is float:
                            batch_obj = run_row_parts(&rows, Xb, Yb, wb, m, M, n_row_parts,
                                                      s.pool_threads, batch_sums)
                    elif not one_pass:
                        forward_batch(&s, &params[0], Xb, m, acts, NULL, zout, False)
                        batch_obj = data_loss_sum(&s, zout, acts + m * (s.per_row - n_out), Yb, wb, m)
                    batch_obj += penalty(&s, &params[0], l2, l1)
                    if not isfinite(batch_obj):
                        total = batch_obj
                        break
                    start += m
                    total += batch_obj
                    if one_pass and l2 != 0:
                        add_decay(&s, &params[0], grads, <floating>(l2 / M))
                    if fused:
                        # plain SGD: fused into backprop, or one pass over the
                        # gradient; keep the weights, and put them back if the
                        # step made any of them non-finite
                        if one_pass:
                            if not sgd_step(&params[0], grads, backup, lr, P):
                                total = INFINITY
                                break
                            continue
                        if n_first == 1 and n_row_parts == 1:
                            backward_deltas(&s, &params[0], Yb, wb, m, M, acts, deltas)
                            safe_sums(&s, Xb, m, 0, m, acts, deltas, batch_sums)
                        if sgd_safe(&s, m, floating is float, l2 / M, lr, bounds, batch_sums):
                            if floating is float:
                                if n_first > 1:
                                    fst.keep = 1 - lr * <float>(l2 / M)
                                    fmp_run(first_split_update, &fst, n_first, pool_threads)
                                    continue
                                if s.pool_threads > 1 and update_on_pool(&s, m):
                                    upd.X = Xb
                                    upd.m = m
                                    upd.lr = lr
                                    upd.keep = 1 - lr * <float>(l2 / M)
                                    fmp_run(update_block, &upd, n_update_blocks,
                                            s.pool_threads)
                                    continue
                            sgd_layers(&s, &params[0], Xb, m, acts, deltas,
                                       <floating>(l2 / M), lr, scratch)
                            continue
                        memcpy(backup, &params[0], P * sizeof(floating))
                        if n_first > 1:
                            if floating is float:
                                fst.keep = 1 - lr * <float>(l2 / M)
                                fmp_run(first_split_update, &fst, n_first, pool_threads)
                        else:
                            sgd_layers(&s, &params[0], Xb, m, acts, deltas, <floating>(l2 / M),
                                       lr, scratch)
                        if not params_finite(&params[0], P):
                            memcpy(&params[0], backup, P * sizeof(floating))
                            total = INFINITY
                            break
                        exact_bounds(&s, &params[0], bounds)
                        continue
                    if not one_pass:
                        backward_batch(&s, &params[0], Xb, Yb, wb, m, M, acts, deltas,
                                       grads, l2, n_row_parts > 1)
                    if l1 != 0:
                        add_l1_gradient(&s, &params[0], grads, <floating>(l1 / M))
                    gnorm = sq_norm(grads, P)
                    if not isfinite(gnorm):
                        total = INFINITY
                        break
                    if clip_norm > 0 and gnorm > clip_norm * clip_norm:
                        gnorm = clip_norm / sqrt(gnorm)
                        for i in range(P):
                            grads[i] = grads[i] * <floating>gnorm
                    if optimizer == OPT_ADAM:
                        t[0] += 1
                        apply_step(optimizer, &params[0], grads, state, P, learning_rate,
                                   momentum, nesterov, beta1, beta2, epsilon, t[0])
                    else:
                        apply_step(optimizer, &params[0], grads, state, P, learning_rate,
                                   momentum, nesterov, beta1, beta2, epsilon, 0)
                if halted:
                    break
                if not isfinite(total):
                    epoch_loss[e] = total
                    break
                epoch_loss[e] = total / W_total
                done += 1
    finally:
        threads_exit(before)
        free(acts)
        free(deltas)
        free(zout)
        free(grads)
        free(xbuf)
        free(ybuf)
        free(wbuf)
        free(scratch)
        free(backup)
        free(bounds)
        free(part_sums)
        free(zparts)
        free(unit_outs)
        free(first_sums)
        free(xalt)
        free(yalt)
        free(walt)
        free(nwork)
        free(prep)
    return done
