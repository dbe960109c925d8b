# Network layout: the Spec of layer sizes and codes.
# Included by _kernels.pyx.

cdef Spec make_spec(const Py_ssize_t[::1] sizes, int hidden, int output, int loss) except *:
    if sizes.shape[0] < 2:
        raise ValueError("sizes must hold at least 2 layer sizes")
    return spec_of(&sizes[0], sizes.shape[0], hidden, output, loss)


cdef Spec spec_of(const Py_ssize_t* sizes, Py_ssize_t n_sizes, int hidden, int output,
                  int loss) noexcept nogil:
    """The Spec of ``n_sizes`` (>= 2) layer sizes at ``sizes``."""
    cdef Spec s
    cdef Py_ssize_t l
    s.sizes = sizes
    s.L = <int>(n_sizes - 1)
    s.hidden = hidden
    s.output = output
    s.loss = loss
    s.per_row = 0
    s.n_params = 0
    s.pool_threads = 1
    s.blas_one = False
    s.slope_off = 0
    s.dropout = False
    s.drop_threshold = 0
    s.drop_scale = 1
    s.drop_key = 0
    s.drop_batch = 0
    for l in range(s.L):
        s.per_row += sizes[l + 1]
        s.n_params += sizes[l] * sizes[l + 1] + sizes[l + 1]
    return s


# The one walk over the layers: every loop over them steps a Layer.
#     y = first_layer(s, m)                 y = last_layer(s, m)
#     while y.l < s.L:                      while y.l >= 0:
#         ...                                   ...
#         next_layer(s, &y)                     prev_layer(s, &y)
cdef struct Layer:
    int l                   # the layer, 0 .. L-1 (L or -1: past the end)
    Py_ssize_t n_in         # sizes[l]
    Py_ssize_t n_out        # sizes[l + 1]
    Py_ssize_t w            # offset of W_l (n_in x n_out, row-major) in params and grads
    Py_ssize_t b            # offset of b_l (n_out values, after W_l)
    Py_ssize_t a            # offset of A_l (m x n_out) in a batch's acts and deltas
    Py_ssize_t m            # rows of that batch


cdef inline void set_layer(Spec* s, Layer* y) noexcept nogil:
    y.n_in = s.sizes[y.l]
    y.n_out = s.sizes[y.l + 1]
    y.b = y.w + y.n_in * y.n_out


cdef inline Layer first_layer(Spec* s, Py_ssize_t m) noexcept nogil:
    cdef Layer y
    y.l = 0
    y.w = 0
    y.a = 0
    y.m = m
    set_layer(s, &y)
    return y


cdef inline void next_layer(Spec* s, Layer* y) noexcept nogil:
    y.w = y.b + y.n_out
    y.a += y.m * y.n_out
    y.l += 1
    if y.l < s.L:
        set_layer(s, y)


cdef inline Layer last_layer(Spec* s, Py_ssize_t m) noexcept nogil:
    cdef Layer y
    y.l = s.L - 1
    y.m = m
    y.w = s.n_params - s.sizes[s.L - 1] * s.sizes[s.L] - s.sizes[s.L]
    y.a = m * (s.per_row - s.sizes[s.L])
    set_layer(s, &y)
    return y


cdef inline void prev_layer(Spec* s, Layer* y) noexcept nogil:
    y.l -= 1
    if y.l >= 0:
        y.n_out = s.sizes[y.l + 1]
        y.a -= y.m * y.n_out
        y.n_in = s.sizes[y.l]
        y.w -= y.n_in * y.n_out + y.n_out
        y.b = y.w + y.n_in * y.n_out


cdef inline Py_ssize_t input_offset(Layer* y) noexcept nogil:
    """Offset in acts of layer l's input A_{l-1} (l >= 1; X for layer 0)."""
    return y.a - y.m * y.n_in
