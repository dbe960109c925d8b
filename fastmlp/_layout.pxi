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
    for l in range(s.L):
        s.per_row += sizes[l + 1]
        s.n_params += sizes[l] * sizes[l + 1] + sizes[l + 1]
    return s
