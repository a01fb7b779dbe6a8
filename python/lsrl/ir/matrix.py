"""Immutable sparse matrices and dense vectors over float64 or exact rationals.

Every constant of the IR (weights, biases, initial states, bounds) is a :class:`Matrix` or a
:class:`Vector`.  A constant lives in one of two *domains*:

* ``"float"``: a float64 ``scipy.sparse.csr_array`` (fast algebra for the float pipeline);
* ``"exact"``: rationals (:class:`fractions.Fraction`) kept in CSR arrays of Python objects.

User-given floats are float constants; the language's sugar creates exact constants when a value
(``1/μ``, ``n - 0.5`` …) is not exactly a float64.  The float interpreter rounds exact constants to
float64 when it uses them; the exact interpreter takes float constants at their exact binary value.
scipy cannot hold Python objects, so exact algebra is implemented here on dictionaries of rows.
"""
from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["Matrix", "Vector", "as_exact_scalar", "is_exact_float", "matvec"]


def is_exact_float(value: Fraction) -> bool:
    """True when the rational ``value`` is exactly representable as a float64."""
    f = float(value)
    return np.isfinite(f) and Fraction(f) == value


def as_exact_scalar(value) -> Fraction:
    """The exact rational value of a number (floats at their exact binary value)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (bool, np.bool_)):
        return Fraction(int(value))
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not np.isfinite(f):
            raise ValueError(f"non-finite value {f!r} cannot be represented exactly")
        return Fraction(f)
    if isinstance(value, numbers.Rational):
        return Fraction(value.numerator, value.denominator)
    # sympy rationals and similar expose p/q
    p, q = getattr(value, "p", None), getattr(value, "q", None)
    if isinstance(p, int) and isinstance(q, int):
        return Fraction(p, q)
    raise TypeError(f"expected a real number, got {type(value).__name__} {value!r}")


def _needs_exact(values: Iterable) -> bool:
    for v in values:
        if isinstance(v, Fraction) or (isinstance(v, numbers.Rational) and not isinstance(v, numbers.Integral)):
            if not is_exact_float(as_exact_scalar(v)):
                return True
        elif isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
            if abs(int(v)) > 2**53:
                return True
        elif hasattr(v, "p") and hasattr(v, "q"):
            if not is_exact_float(as_exact_scalar(v)):
                return True
    return False


class Matrix:
    """An immutable ``(m, n)`` sparse matrix in the float or the exact domain."""

    __slots__ = ("shape", "_scipy", "_arrays", "_rows", "_key", "_float_cache")

    def __init__(self, shape, *, csr=None, rows=None, arrays=None):
        # Use the constructors (from_dense, from_scipy, from_entries, identity, zeros).
        self.shape = (int(shape[0]), int(shape[1]))
        self._scipy = csr  # float domain: canonical scipy csr_array (sorted, no explicit zeros)
        # float domain: canonical (data, indices, indptr) with int64 indices; the scipy array is built from them
        # only when asked for — building one costs ~17 µs of checks, more than the passes that only read the
        # arrays spend on a matrix (rescale-units replaces most matrices debranch makes)
        self._arrays = arrays
        self._rows = rows  # exact domain: tuple of dicts {col: Fraction != 0}
        self._key = None
        self._float_cache = None

    @property
    def _csr(self):
        if self._scipy is None and self._arrays is not None:
            data, indices, indptr = self._arrays
            csr = sp.csr_array((data, indices, indptr), shape=self.shape)
            csr.indptr, csr.indices = indptr, indices  # one index dtype (see from_canonical_arrays)
            self._scipy = csr
        return self._scipy

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def from_scipy(m) -> "Matrix":
        csr = sp.csr_array(m, dtype=np.float64, copy=True)
        csr.eliminate_zeros()
        csr.sum_duplicates()
        csr.sort_indices()
        # One index dtype, so that equal matrices have equal keys whatever built them.
        csr.indptr = csr.indptr.astype(np.int64, copy=False)
        csr.indices = csr.indices.astype(np.int64, copy=False)
        if csr.nnz and not np.all(np.isfinite(csr.data)):
            raise ValueError("matrix has non-finite entries")
        return Matrix(csr.shape, csr=csr)

    @staticmethod
    def from_canonical_arrays(shape, data, indices, indptr) -> "Matrix":
        """Wrap canonical CSR arrays without copying or checking their values.

        Precondition (the caller's guarantee; only the dtype is checked): ``data`` float64 and finite, column
        indices sorted within each row, no duplicate entries and no explicit zeros.  The index arrays are
        converted to int64 (every float Matrix uses one index dtype, so equal matrices have equal keys).  The
        Matrix takes the arrays over: do not modify them afterwards.  Use :meth:`from_scipy` for anything else."""
        data = np.asarray(data)
        if data.dtype != np.float64 or data.ndim != 1:
            raise ValueError(f"from_canonical_arrays: expected a 1-D float64 data array, got dtype {data.dtype} "
                             f"and shape {data.shape}")
        return Matrix(shape, arrays=(data, np.asarray(indices).astype(np.int64, copy=False),
                                     np.asarray(indptr).astype(np.int64, copy=False)))

    @staticmethod
    def from_exact_rows(shape, rows: Sequence[dict]) -> "Matrix":
        rows = tuple({int(c): as_exact_scalar(v) for c, v in r.items() if v != 0} for r in rows)
        if len(rows) != shape[0]:
            raise ValueError("row count does not match shape")
        return Matrix(shape, rows=rows)

    @staticmethod
    def from_entries(shape, rows, cols, values, *, exact: bool | None = None) -> "Matrix":
        """Build from COO triplets (duplicates are summed)."""
        values = list(values)
        if exact is None:
            exact = _needs_exact(values)
        if not exact:
            data = np.array([float(v) for v in values], dtype=np.float64)
            return Matrix.from_scipy(sp.coo_array((data, (np.asarray(rows, dtype=np.int64),
                                                          np.asarray(cols, dtype=np.int64))), shape=shape))
        out = [dict() for _ in range(shape[0])]
        for r, c, v in zip(rows, cols, values):
            r, c = int(r), int(c)
            if not (0 <= r < shape[0] and 0 <= c < shape[1]):
                raise ValueError(f"entry ({r}, {c}) outside a {shape[0]}x{shape[1]} matrix")
            out[r][c] = out[r].get(c, Fraction(0)) + as_exact_scalar(v)
        return Matrix.from_exact_rows(shape, out)

    @staticmethod
    def from_dense(a, *, exact: bool | None = None) -> "Matrix":
        """From a 2-D array-like (nested lists, ndarray, object array of rationals)."""
        if sp.issparse(a):
            return Matrix.from_scipy(a) if not exact else Matrix.from_scipy(a).to_exact()
        arr = np.asarray(a, dtype=object) if not isinstance(a, np.ndarray) else a
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D matrix, got shape {arr.shape}")
        if arr.dtype != object and exact is not True:
            return Matrix.from_scipy(np.asarray(arr, dtype=np.float64))
        flat = arr.ravel().tolist()
        if exact is None:
            exact = _needs_exact(flat)
        if not exact:
            return Matrix.from_scipy(np.array(flat, dtype=np.float64).reshape(arr.shape))
        rows = [{j: v for j, v in enumerate(arr[i].tolist()) if v != 0} for i in range(arr.shape[0])]
        return Matrix.from_exact_rows(arr.shape, rows)

    @staticmethod
    def identity(n: int, *, exact: bool = False) -> "Matrix":
        if exact:
            return Matrix((n, n), rows=tuple({i: Fraction(1)} for i in range(n)))
        return Matrix.from_scipy(sp.identity(n, dtype=np.float64, format="csr"))

    @staticmethod
    def zeros(m: int, n: int, *, exact: bool = False) -> "Matrix":
        if exact:
            return Matrix((m, n), rows=tuple({} for _ in range(m)))
        return Matrix.from_scipy(sp.csr_array((m, n), dtype=np.float64))

    @staticmethod
    def diag(values, *, exact: bool | None = None) -> "Matrix":
        values = list(values)
        n = len(values)
        return Matrix.from_entries((n, n), range(n), range(n), values, exact=exact)

    # ------------------------------------------------------------------ domain
    @property
    def exact(self) -> bool:
        return self._rows is not None

    @property
    def domain(self) -> str:
        return "exact" if self.exact else "float"

    def to_float(self) -> "Matrix":
        """Round to the float domain (identity for float matrices)."""
        if not self.exact:
            return self
        if self._float_cache is None:
            r, c, v = self.coo()
            self._float_cache = Matrix.from_entries(self.shape, r, c, [float(x) for x in v], exact=False)
        return self._float_cache

    def to_exact(self) -> "Matrix":
        """Exact rationals (floats at their binary value)."""
        if self.exact:
            return self
        csr = self._csr
        rows = []
        for i in range(self.shape[0]):
            lo, hi = csr.indptr[i], csr.indptr[i + 1]
            rows.append({int(j): Fraction(float(v)) for j, v in zip(csr.indices[lo:hi], csr.data[lo:hi])})
        return Matrix(self.shape, rows=tuple(rows))

    def in_domain(self, exact: bool) -> "Matrix":
        return self.to_exact() if exact else self.to_float()

    # ------------------------------------------------------------------ access
    @property
    def nnz(self) -> int:
        if self.exact:
            return sum(len(r) for r in self._rows)
        return len(self._arrays[0]) if self._arrays is not None else int(self._csr.nnz)

    def scipy(self) -> sp.csr_array:
        """The float64 CSR form (exact matrices are rounded)."""
        return self.to_float()._csr

    def csr_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(data, indices, indptr)`` of :meth:`scipy` (int64 indices), without building the scipy array; read only."""
        m = self.to_float()
        if m._arrays is not None:
            return m._arrays
        csr = m._csr
        return csr.data, csr.indices, csr.indptr

    def coo(self):
        """``(rows, cols, values)`` sorted by row then column; values floats or Fractions."""
        if self.exact:
            rs, cs, vs = [], [], []
            for i, r in enumerate(self._rows):
                for j in sorted(r):
                    rs.append(i)
                    cs.append(j)
                    vs.append(r[j])
            return np.asarray(rs, dtype=np.int64), np.asarray(cs, dtype=np.int64), vs
        c = self._csr
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(c.indptr))
        return rows, c.indices.astype(np.int64), c.data.tolist()

    def exact_rows(self) -> tuple:
        """Rows as dicts ``{col: Fraction}`` (exact view of any matrix)."""
        return self.to_exact()._rows

    def to_dense(self) -> np.ndarray:
        """float64 ndarray for float matrices, object ndarray of Fractions for exact ones."""
        if self.exact:
            out = np.full(self.shape, Fraction(0), dtype=object)
            for i, r in enumerate(self._rows):
                for j, v in r.items():
                    out[i, j] = v
            return out
        return self._csr.toarray()

    def to_dense_exact(self) -> np.ndarray:
        return self.to_exact().to_dense()

    def is_identity(self) -> bool:
        m, n = self.shape
        if m != n or self.nnz != m:
            return False
        r, c, v = self.coo()
        return bool(np.all(r == c)) and all(x == 1 for x in v)

    def is_diagonal(self) -> bool:
        r, c, _ = self.coo()
        return bool(np.all(r == c))

    def diagonal(self) -> list:
        n = min(self.shape)
        out = [Fraction(0) if self.exact else 0.0] * n
        r, c, v = self.coo()
        for i, j, x in zip(r.tolist(), c.tolist(), v):
            if i == j:
                out[i] = x
        return out

    # ------------------------------------------------------------------ algebra
    def _pair(self, other: "Matrix"):
        if self.exact or other.exact:
            return self.to_exact(), other.to_exact(), True
        return self, other, False

    def __matmul__(self, other: "Matrix") -> "Matrix":
        if not isinstance(other, Matrix):
            return NotImplemented
        if self.shape[1] != other.shape[0]:
            raise ValueError(f"cannot multiply {self.shape[0]}x{self.shape[1]} by {other.shape[0]}x{other.shape[1]}")
        a, b, exact = self._pair(other)
        if not exact:
            return Matrix.from_scipy(a._csr @ b._csr)
        out = []
        for ra in a._rows:
            acc: dict = {}
            for k, va in ra.items():
                for j, vb in b._rows[k].items():
                    acc[j] = acc.get(j, 0) + va * vb
            out.append({j: v for j, v in acc.items() if v != 0})
        return Matrix((a.shape[0], b.shape[1]), rows=tuple(out))

    def __add__(self, other: "Matrix") -> "Matrix":
        if not isinstance(other, Matrix):
            return NotImplemented
        if self.shape != other.shape:
            raise ValueError(f"cannot add {self.shape} and {other.shape}")
        a, b, exact = self._pair(other)
        if not exact:
            return Matrix.from_scipy(a._csr + b._csr)
        out = []
        for ra, rb in zip(a._rows, b._rows):
            acc = dict(ra)
            for j, v in rb.items():
                acc[j] = acc.get(j, 0) + v
            out.append({j: v for j, v in acc.items() if v != 0})
        return Matrix(a.shape, rows=tuple(out))

    def __neg__(self) -> "Matrix":
        return self.scale(-1)

    def __sub__(self, other: "Matrix") -> "Matrix":
        return self + (-other)

    def scale(self, c) -> "Matrix":
        """``c · self``; an exact non-float ``c`` moves the result to the exact domain."""
        cx = as_exact_scalar(c)
        if not self.exact and is_exact_float(cx):
            return Matrix.from_scipy(self._csr * float(cx))
        a = self.to_exact()
        return Matrix(a.shape, rows=tuple({j: v * cx for j, v in r.items() if v * cx != 0} for r in a._rows))

    @property
    def T(self) -> "Matrix":
        if not self.exact:
            return Matrix.from_scipy(self._csr.T)
        out = [dict() for _ in range(self.shape[1])]
        for i, r in enumerate(self._rows):
            for j, v in r.items():
                out[j][i] = v
        return Matrix((self.shape[1], self.shape[0]), rows=tuple(out))

    def rows(self, index) -> "Matrix":
        """Select (and reorder/repeat) rows."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        if not self.exact:
            return Matrix.from_scipy(self._csr[idx])
        return Matrix((idx.size, self.shape[1]), rows=tuple(dict(self._rows[i]) for i in idx.tolist()))

    def cols(self, index) -> "Matrix":
        """Select (and reorder/repeat) columns."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[1]):
            raise IndexError(f"column index out of range for {self.shape[1]} columns")
        if not self.exact:
            return Matrix.from_scipy(self._csr[:, idx])
        where: dict = {}
        for new, old in enumerate(idx.tolist()):
            where.setdefault(old, []).append(new)
        out = []
        for r in self._rows:
            nr = {}
            for j, v in r.items():
                for new in where.get(j, ()):
                    nr[new] = v
            out.append(nr)
        return Matrix((self.shape[0], idx.size), rows=tuple(out))

    @staticmethod
    def vstack(mats: Sequence["Matrix"]) -> "Matrix":
        if not mats:
            raise ValueError("vstack of nothing")
        n = mats[0].shape[1]
        if any(m.shape[1] != n for m in mats):
            raise ValueError(f"vstack: column counts differ: {[m.shape for m in mats]}")
        if not any(m.exact for m in mats):
            return Matrix.from_scipy(sp.vstack([m._csr for m in mats], format="csr"))
        rows = tuple(r for m in mats for r in m.to_exact()._rows)
        return Matrix((len(rows), n), rows=rows)

    @staticmethod
    def hstack(mats: Sequence["Matrix"]) -> "Matrix":
        if not mats:
            raise ValueError("hstack of nothing")
        m0 = mats[0].shape[0]
        if any(m.shape[0] != m0 for m in mats):
            raise ValueError(f"hstack: row counts differ: {[m.shape for m in mats]}")
        if not any(m.exact for m in mats):
            return Matrix.from_scipy(sp.hstack([m._csr for m in mats], format="csr"))
        out = [dict() for _ in range(m0)]
        off = 0
        for m in mats:
            for i, r in enumerate(m.to_exact()._rows):
                for j, v in r.items():
                    out[i][j + off] = v
            off += m.shape[1]
        return Matrix((m0, off), rows=tuple(out))

    @staticmethod
    def block_diag(mats: Sequence["Matrix"]) -> "Matrix":
        if not mats:
            return Matrix.zeros(0, 0)
        if not any(m.exact for m in mats):
            return Matrix.from_scipy(sp.block_diag([m._csr for m in mats], format="csr"))
        out, off = [], 0
        for m in mats:
            for r in m.to_exact()._rows:
                out.append({j + off: v for j, v in r.items()})
            off += m.shape[1]
        return Matrix((len(out), off), rows=tuple(out))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x @ self.T`` over the last axis: float for float ``x``, exact for object ``x``."""
        if x.dtype == object:
            rows = self.exact_rows()
            lead = x.shape[:-1]
            out = np.empty(lead + (self.shape[0],), dtype=object)
            for i, r in enumerate(rows):
                acc = np.full(lead, Fraction(0), dtype=object)
                for j, v in r.items():
                    acc = acc + x[..., j] * v
                out[..., i] = acc
            return out
        csr = self.scipy()
        flat = x.reshape(-1, x.shape[-1])
        return np.asarray((csr @ flat.T).T).reshape(x.shape[:-1] + (self.shape[0],))

    # ------------------------------------------------------------------ identity
    def key(self) -> tuple:
        """A hashable value identifying the matrix exactly (domain included)."""
        if self._key is None:
            if self.exact:
                self._key = ("exact", self.shape, tuple(tuple(sorted(r.items())) for r in self._rows))
            else:
                data, indices, indptr = self.csr_parts()
                self._key = ("float", self.shape, indptr.tobytes(), indices.tobytes(), data.tobytes())
        return self._key

    def __eq__(self, other) -> bool:
        return isinstance(other, Matrix) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"Matrix({self.shape[0]}x{self.shape[1]}, nnz={self.nnz}, {self.domain})"


class Vector:
    """An immutable dense vector: float64, or exact (object array of Fractions)."""

    __slots__ = ("values", "_key")

    def __init__(self, values, *, exact: bool | None = None):
        if isinstance(values, Vector):
            values = values.values
        if isinstance(values, np.ndarray) and values.dtype != object and exact is not True:
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim == 2 and 1 in arr.shape:
                arr = arr.reshape(-1)
            if arr.ndim != 1:
                raise ValueError(f"expected a vector, got shape {arr.shape}")
            self.values = arr.copy()
        else:
            flat = np.asarray(values, dtype=object)
            if flat.ndim == 2 and 1 in flat.shape:
                flat = flat.reshape(-1)
            if flat.ndim != 1:
                raise ValueError(f"expected a vector, got shape {flat.shape}")
            items = flat.tolist()
            if exact is None:
                exact = _needs_exact(items)
            if exact:
                self.values = np.empty(len(items), dtype=object)
                self.values[:] = [as_exact_scalar(v) for v in items]
            else:
                self.values = np.array([float(v) for v in items], dtype=np.float64)
        self.values.setflags(write=False)
        self._key = None

    @staticmethod
    def zeros(n: int, *, exact: bool = False) -> "Vector":
        return Vector([Fraction(0)] * n, exact=True) if exact else Vector(np.zeros(n))

    @property
    def exact(self) -> bool:
        return self.values.dtype == object

    def __len__(self) -> int:
        return self.values.shape[0]

    def to_float(self) -> "Vector":
        return self if not self.exact else Vector(np.array([float(v) for v in self.values], dtype=np.float64))

    def to_exact(self) -> "Vector":
        return self if self.exact else Vector([as_exact_scalar(v) for v in self.values.tolist()], exact=True)

    def in_domain(self, exact: bool) -> "Vector":
        return self.to_exact() if exact else self.to_float()

    def array(self, exact: bool = False) -> np.ndarray:
        """float64 array, or object array of Fractions when ``exact``."""
        return self.in_domain(exact).values

    def is_zero(self) -> bool:
        return all(v == 0 for v in self.values.tolist())

    @property
    def nnz(self) -> int:
        return sum(1 for v in self.values.tolist() if v != 0)

    def __getitem__(self, idx) -> "Vector":
        return Vector(self.values[idx], exact=self.exact)

    @staticmethod
    def concat(vecs: Sequence["Vector"]) -> "Vector":
        if any(v.exact for v in vecs):
            return Vector([x for v in vecs for x in v.to_exact().values.tolist()], exact=True)
        return Vector(np.concatenate([v.values for v in vecs]) if vecs else np.zeros(0))

    def __add__(self, other: "Vector") -> "Vector":
        if len(self) != len(other):
            raise ValueError(f"cannot add vectors of length {len(self)} and {len(other)}")
        if self.exact or other.exact:
            return Vector(self.to_exact().values + other.to_exact().values, exact=True)
        return Vector(self.values + other.values)

    def key(self) -> tuple:
        if self._key is None:
            self._key = ("exact", tuple(self.values.tolist())) if self.exact else ("float", self.values.tobytes())
        return self._key

    def __eq__(self, other) -> bool:
        return isinstance(other, Vector) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"Vector({self.values.tolist()!r})"


def matvec(m: Matrix, v: Vector) -> Vector:
    """``m @ v`` in the common domain."""
    if m.shape[1] != len(v):
        raise ValueError(f"cannot multiply {m.shape[0]}x{m.shape[1]} by a vector of length {len(v)}")
    if m.exact or v.exact:
        vals = v.to_exact().values.tolist()
        return Vector([sum((x * vals[j] for j, x in r.items()), Fraction(0)) for r in m.exact_rows()], exact=True)
    return Vector(m.scipy() @ v.values)
