# Inverted dropout on the hidden layers of a training pass.
# Included by _kernels.pyx (after _pointwise.pxi).
#
# A unit's mask is a pure function of (the fit's key, the batch's number t in
# the fit, the layer l, the row i in the batch, the unit j), so any split of
# a batch over threads gives the same bits, and fastmlp._dropout (the NumPy
# twin's) computes the same masks:
#     k = mix(key ^ (t * DROP_T + l * DROP_L))
#     h = mix(k + (i * width + j + 1) * DROP_GOLDEN)
# with mix splitmix64's finalizer; the unit is kept when (h >> 11), 53
# uniform bits, is at least ceil(p * 2^53), and then scaled by 1 / (1 - p).

cdef uint64_t DROP_GOLDEN = 0x9E3779B97F4A7C15
cdef uint64_t DROP_T = 0xD1B54A32D192ED03
cdef uint64_t DROP_L = 0x8CB92BA72F3D8DD7


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    """splitmix64's finalizer: every input bit reaches every output bit."""
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline bint pass_keeps_slopes(Spec* s) noexcept nogil:
    """Whether a training pass keeps the hidden slopes beside the
    activations (Spec.slope_off): gelu's, and every activation's with
    dropout (the backward pass then multiplies by the dropped slopes)."""
    return hidden_slopes(s.hidden) or s.dropout


cdef inline int dact_code(Spec* s) noexcept nogil:
    """The code :func:`times_dact` takes for the hidden layers' slopes: with
    dropout they are kept (times the masks), and ACT_GELU multiplies by them."""
    return ACT_GELU if s.dropout else s.hidden


cdef void drop_units(Spec* s, floating* A, floating* S, Py_ssize_t r0, Py_ssize_t mr,
                     Py_ssize_t k, int l) noexcept nogil:
    """Dropout on rows r0 .. r0+mr-1 (of a batch) of hidden layer l, k units
    wide, right after its activation: A holds those rows' activations and S
    their slopes (gelu's already there; the others' made here from A).  Both
    are multiplied by mask / (1 - p), so that the backward pass's
    ``(D W^T) * S`` is dropout's and the next layer's products read the
    dropped activations."""
    cdef Py_ssize_t i, j, n = mr * k
    cdef uint64_t key = mix64(s.drop_key ^ (s.drop_batch * DROP_T + <uint64_t>l * DROP_L))
    cdef uint64_t idx
    cdef floating keep = <floating>s.drop_scale, factor
    if s.hidden != ACT_GELU:
        for i in range(n):
            S[i] = 1
        times_dact(S, A, n, s.hidden)       # f'(z) from a = f(z), as the backward reads it
    for i in range(mr):
        idx = <uint64_t>((r0 + i) * k) + 1
        for j in range(k):
            factor = keep if (mix64(key + (idx + <uint64_t>j) * DROP_GOLDEN) >> 11) >= s.drop_threshold else 0
            A[i * k + j] *= factor
            S[i * k + j] *= factor
