# The fit loop: shuffling, batch gathering, signal checks.
# Included by _kernels.pyx.

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


cdef void gather_rows(const floating[:, ::1] X, const floating[:, ::1] Y, const floating* w,
                      const Py_ssize_t* rows, Py_ssize_t m, floating* xbuf, floating* ybuf,
                      floating* wbuf) noexcept nogil:
    """Copy rows ``rows[0..m-1]`` of X, Y and w (unless NULL) into the buffers."""
    cdef Py_ssize_t i, n_in = X.shape[1], n_out = Y.shape[1]
    for i in range(m):
        memcpy(xbuf + i * n_in, &X[rows[i], 0], n_in * sizeof(floating))
        memcpy(ybuf + i * n_out, &Y[rows[i], 0], n_out * sizeof(floating))
        if w != NULL:
            wbuf[i] = w[rows[i]]


cdef int check_signals() except -1 with gil:
    """Run Python's signal handlers (Ctrl-C) from inside a nogil loop."""
    if PyErr_CheckSignals() < 0:
        return -1
    return 0
