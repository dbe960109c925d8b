# Inverted dropout on the hidden layers of a training pass.
# Included by _kernels.pyx (after _pointwise.pxi); the mask pass is _dropout.h's.
#
# A unit's mask is a pure function of (the fit's key, the batch's number t in
# the fit, the layer l, the row i in the batch, the unit j), so any split of
# a batch over threads gives the same bits, and fastmlp._dropout (the NumPy
# twin's) computes the same masks:
#     k = mix(key ^ (t * DROP_T + l * DROP_L))
#     h = mix(k + (i * width + j + 1) * FM_DROP_GOLDEN)      (_dropout.h)
# with mix splitmix64's finalizer; the unit is kept when (h >> 11), 53
# uniform bits, is at least ceil(p * 2^53), and then scaled by 1 / (1 - p).

cdef extern from "_dropout.h" nogil:
    uint64_t fm_mix64(uint64_t z)
    void fm_drop_d(double* A, double* S, Py_ssize_t r0, Py_ssize_t mr, Py_ssize_t k,
                   uint64_t key, uint64_t threshold, double keep)
    void fm_drop_f(float* A, float* S, Py_ssize_t r0, Py_ssize_t mr, Py_ssize_t k,
                   uint64_t key, uint64_t threshold, float keep)

cdef uint64_t DROP_T = 0xD1B54A32D192ED03
cdef uint64_t DROP_L = 0x8CB92BA72F3D8DD7


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
    cdef Py_ssize_t i, n = mr * k
    cdef uint64_t key = fm_mix64(s.drop_key ^ (s.drop_batch * DROP_T + <uint64_t>l * DROP_L))
    if s.hidden != ACT_GELU:
        for i in range(n):
            S[i] = 1
        times_dact(S, A, n, s.hidden)       # f'(z) from a = f(z), as the backward reads it
    if floating is float:
        fm_drop_f(A, S, r0, mr, k, key, s.drop_threshold, <float>s.drop_scale)
    else:
        fm_drop_d(A, S, r0, mr, k, key, s.drop_threshold, s.drop_scale)
