"""Batched linear-recurrence scans ``s_t = A s_{t-1} + u_t``.

This is the primitive every ``LinState`` (and every compiled linear-RNN layer) executes: the caller folds
``B x_t + bias`` into ``u_t`` and the scan runs the recurrence over time.

Two backends compute the same thing:

* ``"kernel"`` -- the C++ extension ``lsrl._kernel`` (diagonal, dense and CSR paths; float64 and float32;
  releases the GIL and may use threads over the batch);
* ``"numpy"`` -- a Python loop over time, vectorised over batch and state.

``backend="auto"`` picks the kernel when it is built and numpy otherwise.

For every row ``i`` both backends accumulate the products ``A[i, j] * s[j]`` and add ``u[i]`` last, so the
diagonal and CSR paths agree bit for bit; the dense path may differ in the last bits (BLAS summation order).

This module sits below ``lsrl.ir`` (the ``linstate`` semantics run on it) and knows nothing of the IR;
``lsrl.runtime`` (the whole-model executor, above ``ir``) loads the extension through :func:`_load_kernel`.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["linear_scan", "kernel_available", "scan_structure", "STRUCTURES", "BACKENDS"]

STRUCTURES = ("auto", "diag", "dense", "csr")
BACKENDS = ("kernel", "numpy", "auto")

# A matrix is run through the dense path when k*k is at most this ...
_DENSE_ALWAYS_MAX_ELEMS = 256
# ... or when it is at most this large and at least this fraction of it is non-zero.
_DENSE_MAX_K = 1024
_DENSE_MIN_FILL = 0.25

_KERNEL: Any = None
_KERNEL_ERROR: BaseException | None = None
_KERNEL_TRIED = False


def _load_kernel():
    global _KERNEL, _KERNEL_ERROR, _KERNEL_TRIED
    if not _KERNEL_TRIED:
        _KERNEL_TRIED = True
        try:
            _KERNEL = importlib.import_module("lsrl._kernel")
        except ImportError as exc:  # not built / not installed
            _KERNEL = None
            _KERNEL_ERROR = exc
    return _KERNEL


def kernel_available() -> bool:
    """True when the compiled extension ``lsrl._kernel`` can be imported."""
    return _load_kernel() is not None


# --------------------------------------------------------------------------------------------- validation


def _shape(x) -> str:
    return str(tuple(int(d) for d in np.shape(x)))


def _as_float_array(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind == "c":
        raise TypeError(f"linear_scan: {name} must be real, got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"linear_scan: {name} must be numeric, got dtype {arr.dtype}")
    return arr


def _result_dtype(dtype, *dtypes) -> np.dtype:
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise TypeError(f"linear_scan: dtype must be float64 or float32, got {dt}")
        return dt
    dt = np.result_type(*dtypes)
    if dt == np.dtype(np.float32):
        return dt
    # float16, ints, bools, mixes with float64, longdouble -> float64
    return np.dtype(np.float64)


def _check_square(A) -> int:
    shp = np.shape(A)
    if len(shp) != 2 or shp[0] != shp[1]:
        raise ValueError(f"linear_scan: A must be a square (k, k) matrix, got shape {_shape(A)}")
    return int(shp[0])


def _is_diagonal_sparse(Acoo) -> bool:
    return bool(np.all(Acoo.row == Acoo.col))


def scan_structure(A) -> str:
    """The kernel path ``linear_scan`` picks for ``A`` under ``structure="auto"``:
    ``"diag"``, ``"dense"`` or ``"csr"``."""
    k = _check_square(A)
    if sp.issparse(A):
        coo = A.tocoo()
        if _is_diagonal_sparse(coo):
            return "diag"
        nnz = int(np.count_nonzero(coo.data))
    else:
        dense = np.asarray(A)
        off = dense.copy()
        if k:
            np.fill_diagonal(off, 0)
        if not np.any(off):
            return "diag"
        nnz = int(np.count_nonzero(dense))
    if k * k <= _DENSE_ALWAYS_MAX_ELEMS or (k <= _DENSE_MAX_K and nnz >= _DENSE_MIN_FILL * k * k):
        return "dense"
    return "csr"


def _prepare(A, U, s0, dtype):
    """Validates and normalises the arguments.

    Returns (A, U3, s03, dt, squeeze) where U3 is (B, T, k), s03 is (B, k), both C-contiguous of
    dtype dt, and A is either a scipy sparse matrix or a dense ndarray (not yet cast)."""
    if A is None:
        raise TypeError("linear_scan: A must be a (k, k) matrix, got None")
    if sp.issparse(A):
        if A.ndim != 2:
            raise ValueError(f"linear_scan: A must be 2-D, got shape {_shape(A)}")
        A_dtype = A.dtype
        if A_dtype.kind == "c":
            raise TypeError(f"linear_scan: A must be real, got dtype {A_dtype}")
        if A_dtype.kind not in "biuf":
            raise TypeError(f"linear_scan: A must be numeric, got dtype {A_dtype}")
    else:
        A = _as_float_array(A, "A")
        A_dtype = A.dtype
    k = _check_square(A)

    U = _as_float_array(U, "U")
    if U.ndim == 2:
        squeeze = True
        U3 = U[None]
    elif U.ndim == 3:
        squeeze = False
        U3 = U
    else:
        raise ValueError(f"linear_scan: U must have shape (T, k) or (B, T, k), got shape {_shape(U)}")
    B, T, kU = U3.shape
    if kU != k:
        raise ValueError(
            f"linear_scan: U has shape {_shape(U)} (last axis {kU}) but A has shape {_shape(A)} (k = {k})"
        )

    if s0 is None:
        s0_dtype = U.dtype
        s03 = None
    else:
        s0 = _as_float_array(s0, "s0")
        s0_dtype = s0.dtype
        if s0.ndim == 1:
            if s0.shape[0] != k:
                raise ValueError(f"linear_scan: s0 has shape {_shape(s0)} but A has shape {_shape(A)} (k = {k})")
            s03 = np.broadcast_to(s0, (B, k))
        elif s0.ndim == 2:
            if squeeze:
                raise ValueError(
                    f"linear_scan: U has shape {_shape(U)} (one sequence) so s0 must have shape ({k},), "
                    f"got {_shape(s0)}"
                )
            if s0.shape != (B, k):
                raise ValueError(
                    f"linear_scan: s0 has shape {_shape(s0)} but U has shape {_shape(U)}; "
                    f"expected ({k},) or ({B}, {k})"
                )
            s03 = s0
        else:
            raise ValueError(f"linear_scan: s0 must have shape (k,) or (B, k), got shape {_shape(s0)}")

    dt = _result_dtype(dtype, A_dtype, U.dtype, s0_dtype)
    U3 = _converted(U3, dt, "U")
    s03 = np.zeros((B, k), dtype=dt) if s03 is None else _converted(s03, dt, "s0")
    return A, U3, s03, dt, squeeze


def _converted(values: np.ndarray, dt, what: str) -> np.ndarray:
    """``values`` as a contiguous array of ``dt``; a finite value past ``dt``'s range is an error (a NaN or inf
    already there runs on, as the scan documents), where the cast would make it inf."""
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(values, dtype=dt)
    overflowed = np.isinf(out) & np.isfinite(values)
    if overflowed.any():
        raise ValueError(f"linear_scan: {what} has values beyond {np.dtype(dt).name}'s range (largest "
                         f"{float(np.max(np.abs(values[overflowed]))):.3g}); run it in float64")
    return out


def _check_finite(values: np.ndarray, what: str) -> None:
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError(f"linear_scan: {what} must be finite (found NaN or inf)")


def _resolve(A, dt, structure: str):
    """Returns (structure, parameters) with parameters already of dtype dt:
    diag -> a (k,); dense -> A (k, k); csr -> scipy csr matrix."""
    if structure not in STRUCTURES:
        raise ValueError(f"linear_scan: structure must be one of {STRUCTURES}, got {structure!r}")
    k = int(A.shape[0])
    if structure == "auto":
        structure = scan_structure(A)
    if sp.issparse(A):
        if structure == "diag":
            coo = A.tocoo()
            if not _is_diagonal_sparse(coo):
                raise ValueError("linear_scan: structure='diag' but A has off-diagonal entries")
            _check_finite(np.asarray(coo.data), "A")
            a = np.zeros(k, dtype=np.float64)
            np.add.at(a, coo.row, np.asarray(coo.data, dtype=np.float64))  # sums duplicates
            return structure, _converted(a, dt, "A")
        if structure == "dense":
            _check_finite(np.asarray(A.tocoo().data), "A")
            return structure, _converted(A.toarray(), dt, "A")
        csr = sp.csr_matrix(A, dtype=np.float64, copy=True)
        csr.sum_duplicates()  # canonical: sorted indices, no duplicates
        _check_finite(csr.data, "A")
        csr.data = _converted(csr.data, dt, "A")
        return structure, csr
    # dense input
    _check_finite(A, "A")
    if structure == "diag":
        off = np.array(A, copy=True)
        if k:
            np.fill_diagonal(off, 0)
        if np.any(off):
            raise ValueError("linear_scan: structure='diag' but A has off-diagonal entries")
        return structure, _converted(np.diagonal(A), dt, "A")
    if structure == "dense":
        return structure, _converted(A, dt, "A")
    csr = sp.csr_matrix(_converted(A, dt, "A"))
    csr.sum_duplicates()
    return structure, csr


# --------------------------------------------------------------------------------------------- backends


def _numpy_scan(structure: str, P, U3: np.ndarray, s03: np.ndarray) -> np.ndarray:
    B, T, k = U3.shape
    S = np.empty_like(U3)
    prev = s03
    if structure == "diag":
        a = P
        for t in range(T):
            cur = a * prev
            cur += U3[:, t]
            S[:, t] = cur
            prev = cur
    elif structure == "dense":
        At = P.T
        for t in range(T):
            cur = prev @ At
            cur += U3[:, t]
            S[:, t] = cur
            prev = cur
    else:
        csr = P
        for t in range(T):
            # (A @ prev^T)^T: per row, products in storage order starting from 0 (as the kernel does)
            cur = np.asarray(csr @ prev.T).T
            cur = cur + U3[:, t]
            S[:, t] = cur
            prev = S[:, t]
    return S


def _kernel_scan(structure: str, P, U3: np.ndarray, s03: np.ndarray, num_threads: int) -> np.ndarray:
    kern = _load_kernel()
    if kern is None:
        raise RuntimeError(
            "linear_scan: backend='kernel' requested but the C++ extension lsrl._kernel is not available "
            f"({_KERNEL_ERROR}); build it with `pip install .` or use backend='numpy'"
        )
    if structure == "diag":
        return kern.linear_scan_diag(P, U3, s03, num_threads=num_threads)
    if structure == "dense":
        return kern.linear_scan_dense(P, U3, s03, num_threads=num_threads)
    return kern.linear_scan_csr(P.indptr, P.indices, P.data, U3, s03, num_threads=num_threads)


def linear_scan(
    A,
    U,
    s0=None,
    backend: str = "kernel",
    *,
    structure: str = "auto",
    dtype=None,
    num_threads: int = 0,
) -> np.ndarray:
    """Runs ``s_t = A s_{t-1} + u_t`` for ``t = 0..T-1`` from ``s_{-1} = s0``; returns all ``s_t``.

    Parameters
    ----------
    A : scipy.sparse matrix/array (any format) or array-like of shape (k, k); entries must be finite.
    U : (T, k) or (B, T, k) -- the per-step inputs (``B x_t + bias`` already applied).
    s0 : (k,) or (B, k) (a (k,) vector is shared by the whole batch); None means zeros.
         With a 2-D ``U`` only (k,) is accepted.
    backend : "kernel" (C++ extension; RuntimeError if it is not built), "numpy", or "auto" (the kernel
              when it is importable, else numpy).
    structure : "auto" (detect), "diag", "dense" or "csr" -- which scan path to use.
    dtype : float64 or float32; default: float32 if every argument is float32, else float64.
    num_threads : kernel only; 0 = automatic, n > 0 = at most n threads over the batch.

    Returns
    -------
    S with the shape of ``U`` ((T, k) or (B, T, k)) and dtype ``dtype``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"linear_scan: backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(num_threads, (int, np.integer)) or isinstance(num_threads, bool) or num_threads < 0:
        raise ValueError(f"linear_scan: num_threads must be an int >= 0, got {num_threads!r}")
    if backend == "auto":
        backend = "kernel" if kernel_available() else "numpy"
    A, U3, s03, dt, squeeze = _prepare(A, U, s0, dtype)
    structure, P = _resolve(A, dt, structure)
    if backend == "numpy":
        S = _numpy_scan(structure, P, U3, s03)
    else:
        S = _kernel_scan(structure, P, U3, s03, int(num_threads))
    return S[0] if squeeze else S
