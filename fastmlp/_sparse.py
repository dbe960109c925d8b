"""Sparse input: scipy.sparse CSR / CSC matrices and arrays as X.

A checked sparse X is a :class:`SparseRows`: the CSR form (CSC converted
once, in O(nnz)) with values in the network's dtype and intp indices.  It is
never densified whole: the compiled fit gathers each batch's rows into its
dense batch buffer (``_kernels.train`` takes :meth:`SparseRows.kernel_x`), and
everything else (predict, scores, losses, validation, L-BFGS's passes) works
on dense blocks of at most :data:`CHUNK_BYTES` (at least one row) at a time.
"""
import numpy as np

# The dense block of rows densified at a time outside the compiled fit:
# as many rows as fit in this many bytes (a multiple of the forward pass's
# 2048 rows when that many fit, so that the passes see the same row blocks
# as on a dense X).
CHUNK_BYTES = 1 << 24
_FORWARD_ROWS = 2048


def is_sparse(X):
    """Whether X is a scipy.sparse matrix or array (without importing scipy.sparse)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz") and hasattr(X, "format")


class SparseRows:
    """A checked CSR X: ``values`` (the dtype's), ``indices`` and ``indptr``
    (intp), ``shape``.  Indexing rows (``X[rows]``) gives them dense."""

    def __init__(self, values, indices, indptr, shape):
        self.values, self.indices, self.indptr = values, indices, indptr
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = values.dtype
        self._matrix = None

    def __len__(self):
        return self.shape[0]

    @property
    def nnz(self):
        return len(self.values)

    @property
    def density(self):
        """Stored values / (rows x columns)."""
        return self.nnz / (self.shape[0] * self.shape[1])

    def kernel_x(self):
        """X as ``_kernels.train`` takes a CSR matrix."""
        return (self.values, self.indices, self.indptr, self.shape[1])

    def _csr(self):
        """The scipy CSR matrix of these arrays (made once; scipy may keep
        int32 copies of the indices)."""
        if self._matrix is None:
            import scipy.sparse
            self._matrix = scipy.sparse.csr_matrix((self.values, self.indices, self.indptr),
                                                   shape=self.shape, copy=False)
        return self._matrix

    def __getitem__(self, rows):
        """Rows (a slice or an index array) as a dense C-contiguous array."""
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(self.shape[0])
            return self._dense_range(start, max(start, stop))
        rows = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else rows
        return self.subset(rows)._dense_range(0, len(rows))

    def _dense_range(self, start, stop):
        # scipy's toarray sums duplicate entries in stored order, as the
        # kernels' gather does
        return np.ascontiguousarray(self._csr()[start:stop].toarray())

    def subset(self, rows):
        """Rows (an index array) as a new SparseRows (O(their nnz))."""
        rows = np.asarray(rows, dtype=np.intp)
        counts = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.intp)
        np.cumsum(counts, out=indptr[1:])
        take = np.repeat(self.indptr[rows] - indptr[:-1], counts) + np.arange(indptr[-1])
        return SparseRows(self.values[take], self.indices[take], indptr,
                          (len(rows), self.shape[1]))

    def chunk_rows(self):
        """Rows of one dense block (see CHUNK_BYTES)."""
        rows = max(1, CHUNK_BYTES // max(1, self.shape[1] * self.dtype.itemsize))
        return rows - rows % _FORWARD_ROWS if rows >= _FORWARD_ROWS else rows

    def chunks(self):
        """``(start, stop, dense rows)`` blocks covering every row in order."""
        step = self.chunk_rows()
        for start in range(0, self.shape[0], step):
            stop = min(start + step, self.shape[0])
            yield start, stop, self._dense_range(start, stop)


def take_rows(X, rows):
    """Rows of X (dense or SparseRows) as a C-contiguous copy of the same kind."""
    if isinstance(X, SparseRows):
        return X.subset(rows)
    return np.ascontiguousarray(X[rows])


def check_sparse_X(X, n_in, dtype):
    """A scipy.sparse X as a checked :class:`SparseRows` of ``dtype``: 2-D,
    at least one row, ``n_in`` columns, every stored value finite."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, shape (n_samples, {n_in}); got a sparse "
                         f"{type(X).__name__} of shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"X must have at least one row; got shape {X.shape}")
    if X.shape[1] != n_in:
        raise ValueError(f"X must have {n_in} columns (the network's input size); "
                         f"got shape {X.shape}")
    csr = X.tocsr() if X.format != "csr" else X         # CSC and others: once, O(nnz)
    values = np.asarray(csr.data)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"X must hold real numbers (int or float); got a sparse "
                        f"{type(X).__name__} of dtype {values.dtype}")
    with np.errstate(over="ignore"):                 # overflow is reported below
        converted = np.ascontiguousarray(values, dtype=dtype)
    if not np.isfinite(converted).all():
        _not_finite(csr, values, converted, dtype)
    indices = np.ascontiguousarray(csr.indices, dtype=np.intp)
    indptr = np.ascontiguousarray(csr.indptr, dtype=np.intp)
    if (len(indptr) != X.shape[0] + 1 or indptr[0] != 0 or indptr[-1] != len(values)
            or len(indices) != len(values) or np.any(np.diff(indptr) < 0)
            or (len(indices) and (indices.min() < 0 or indices.max() >= n_in))):
        raise ValueError(f"X is a malformed sparse {type(X).__name__}: its indptr or "
                         "indices do not describe its shape (see its check_format())")
    return SparseRows(converted, indices, indptr, X.shape)


def _not_finite(csr, values, converted, dtype):
    """Raise ValueError naming the first non-finite stored value, as check_X does."""
    bad = np.flatnonzero(~np.isfinite(converted))
    k = int(bad[0])
    row = int(np.searchsorted(csr.indptr, k, side="right") - 1)
    where = f"X[{row}, {int(csr.indices[k])}] ({len(bad)} non-finite value{'s' if len(bad) != 1 else ''})"
    if values.dtype.kind == "f" and not np.isfinite(values[k]):
        what = "NaN" if np.isnan(values[k]) else ("inf" if values[k] > 0 else "-inf")
        raise ValueError(f"X must be finite; got {what} at {where}")
    raise ValueError(f"X must fit in the network's dtype {np.dtype(dtype).name} "
                     f"(|values| <= {np.finfo(dtype).max:.3g}); got inf at {where} after conversion")
