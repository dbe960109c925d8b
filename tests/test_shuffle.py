"""The C shuffle and its Python mirror draw the same permutations."""
import numpy as np

from fastmlp import _kernels, _shuffle


def test_c_and_python_shuffles_agree_over_many_epochs():
    for n in (1, 2, 7, 100):
        a = np.arange(n, dtype=np.intp)
        b = a.copy()
        sa = np.array([2**63 - 25], dtype=np.uint64)
        sb = sa.copy()
        for _ in range(5):
            _kernels.shuffle(a, sa)
            _shuffle.shuffle(b, sb)
            assert np.array_equal(a, b)
            assert sa[0] == sb[0]
        assert sorted(a.tolist()) == list(range(n))


def test_shuffle_is_not_the_identity_and_varies():
    a = np.arange(50, dtype=np.intp)
    s = np.array([1], dtype=np.uint64)
    _kernels.shuffle(a, s)
    first = a.copy()
    _kernels.shuffle(a, s)
    assert not np.array_equal(first, np.arange(50)) and not np.array_equal(first, a)
