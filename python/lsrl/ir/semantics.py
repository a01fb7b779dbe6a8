"""The numpy semantics of the core ops, and what every op's ``run`` shares (``OpDef.run``'s contract in
:class:`lsrl.ir.core.OpDef`).

This is the one definition of what an op computes: the interpreter (the oracle) runs a program with it,
:class:`lsrl.Model` runs a compiled model's layers with it (carrying states between chunks) and the C++
kernel's differential tests compare against it.  Exact and float evaluation come from the same functions:
float values are float64 arrays, exact values object arrays of :class:`fractions.Fraction`.

Float values are kept feature-major in memory (a ``(B, T, d)`` view of a ``(d, B*T)`` array) so that sparse
products, slices and concatenations touch contiguous rows; ``run`` functions see ordinary ``(B, T, d)``
arrays and need not care.  :func:`cached` memoises derived constants (CSR copies, exact rows …) per op.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from ..scan import linear_scan, scan_structure
from .core import OPS, Op
from .matrix import Matrix, Vector

__all__ = ["EvalContext", "run_op", "cached", "relu_values", "affine", "initial_rows", "exact_scan", "exact_affine",
           "float_affine", "csr_times", "feature_major", "from_feature_major", "run_linstate"]

_ZERO = Fraction(0)


@dataclass(frozen=True)
class EvalContext:
    """What an op's ``run`` may need besides its operands and state.

    ``backend`` is the resolved scan backend (``"kernel"`` or ``"numpy"``); ``batch`` and ``length`` are
    the ``B`` and ``T`` of the arrays being evaluated.
    """
    exact: bool
    backend: str
    batch: int
    length: int


# ------------------------------------------------------------------------------------------ caching

# op -> {key: (sources, derived)}.  Passes mutate ``op.attrs`` but attribute values (Matrix, Vector) are
# immutable, so a derived constant stays valid exactly as long as its source objects are the same ones.
_CACHE: "weakref.WeakKeyDictionary[Op, dict]" = weakref.WeakKeyDictionary()


def cached(op: Op, key: str, sources: tuple, make: Callable[[], object]):
    """``make()``, computed once per ``(op, key)`` while the objects in ``sources`` (immutable attribute
    values, compared by identity) stay the same."""
    entries = _CACHE.get(op)
    if entries is None:
        entries = {}
        _CACHE[op] = entries
    hit = entries.get(key)
    if hit is not None:
        old = hit[0]
        if len(old) == len(sources) and all(p is q for p, q in zip(old, sources)):
            return hit[1]
    value = make()
    entries[key] = (tuple(sources), value)
    return value


def _bias(vec: Vector, exact: bool) -> np.ndarray | None:
    """The vector's values, or None when it is zero (nothing to add)."""
    return None if vec.is_zero() else vec.array(exact)


def _exact_rows(mat: Matrix) -> tuple:
    """Rows as tuples of ``(col, Fraction)`` pairs."""
    return tuple(tuple(sorted(r.items())) for r in mat.exact_rows())


# ------------------------------------------------------------------------------------------ affine maps

try:  # the routine behind scipy's ``csr @ dense``; its operator dispatch costs several times the product
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - private scipy module moved
    _csr_matvecs = None


def feature_major(x: np.ndarray) -> np.ndarray:
    """``x`` (``(B, T, d)``) as a C-contiguous ``(d, B*T)`` array: a view when ``x`` already has the
    interpreter's preferred layout (see :func:`from_feature_major`), else a copy."""
    return np.ascontiguousarray(x.transpose(2, 0, 1)).reshape(x.shape[-1], -1)


def from_feature_major(values: np.ndarray, batch: int, length: int) -> np.ndarray:
    """The ``(B, T, d)`` view of a C-contiguous ``(d, B*T)`` array.

    Float values are stored feature-major (each coordinate's ``B*T`` samples contiguous): sparse products,
    slices and concatenations then work on whole contiguous rows, and elementwise numpy operations keep
    the layout of their operands."""
    return values.reshape(values.shape[0], batch, length).transpose(1, 2, 0)


def csr_times(csr, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``csr @ x`` for a C-contiguous float64 ``(d, n)`` block, written to ``out`` (C-contiguous ``(m, n)``,
    zeroed) when given.  Each entry is the sum of its row's products in index order, independent of the
    other columns: a token's result does not depend on the batch or the sequence it belongs to."""
    m, d = csr.shape
    n = x.shape[1]
    if _csr_matvecs is not None and csr.data.dtype == np.float64 and csr.indices.dtype == csr.indptr.dtype:
        if out is None:
            out = np.zeros((m, n))
        else:
            out[...] = 0.0
        try:
            _csr_matvecs(m, d, n, csr.indptr, csr.indices, csr.data, x.ravel(), out.ravel())
            return out
        except (TypeError, ValueError):  # pragma: no cover - private signature changed
            pass
    product = np.asarray(csr @ x)
    if out is None:
        return product
    out[...] = product
    return out


def float_affine(csr, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ A.T + bias`` over the last axis of a float ``(B, T, d)`` array, ``A`` a scipy CSR matrix;
    the result is feature-major."""
    batch, length, _ = x.shape
    out = csr_times(csr, feature_major(x))
    if bias is not None:
        out += bias[:, None]
    return from_feature_major(out, batch, length)


def exact_affine(rows: tuple, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Exact ``x @ A.T + bias`` over the last axis; ``rows[i]`` is row ``i`` of ``A`` as ``(col, Fraction)``
    pairs, ``x`` an object array of Fractions.  Vectorised over the leading axes."""
    lead = x.shape[:-1]
    out = np.empty(lead + (len(rows),), dtype=object)
    for i, row in enumerate(rows):
        acc = np.full(lead, bias[i] if bias is not None else _ZERO, dtype=object)
        for j, a in row:
            acc = acc + x[..., j] * a
        out[..., i] = acc
    return out


# ------------------------------------------------------------------------------------------ shared numerics

def relu_values(x: np.ndarray) -> np.ndarray:
    """``max(0, x)`` elementwise, in float or (object arrays of Fractions) exactly; every ReLU of every op
    kind (core ``relu``, the ideal-mode target cells) is this one function."""
    if x.dtype == object:
        out = np.empty(x.shape, dtype=object)
        positive = (x > 0).astype(bool) if x.size else np.zeros(x.shape, dtype=bool)
        out[...] = _ZERO
        out[positive] = x[positive]
        return out
    return np.maximum(x, 0.0)


def affine(op: Op, matrix: str, bias: str, x: np.ndarray, exact: bool) -> np.ndarray:
    """``x @ op.attrs[matrix].T + op.attrs[bias]`` over the last axis (derived constants cached per op)."""
    a, b = op.attrs[matrix], op.attrs[bias]
    if exact:
        rows, vec = cached(op, "exact:" + matrix, (a, b), lambda: (_exact_rows(a), _bias(b, True)))
        return exact_affine(rows, x, vec)
    csr, vec = cached(op, "float:" + matrix, (a, b), lambda: (a.scipy(), _bias(b, False)))
    return float_affine(csr, x, vec)


def initial_rows(vector: Vector, batch: int, exact: bool) -> np.ndarray:
    """A stored initial state broadcast to ``(batch, len(vector))`` (a fresh array)."""
    values = vector.array(exact)
    out = np.empty((batch, len(values)), dtype=values.dtype)
    out[...] = values
    return out


def exact_scan(rows: tuple, u: np.ndarray, init: np.ndarray) -> np.ndarray:
    """``s_t = A s_{t-1} + u_t`` in exact arithmetic: a loop over time, vectorised over the batch; ``rows``
    are ``A``'s rows as ``(col, Fraction)`` pairs and ``init`` is ``(k,)`` or ``(B, k)``."""
    batch, length, k = u.shape
    out = np.empty((batch, length, k), dtype=object)
    prev = np.empty((batch, k), dtype=object)
    prev[...] = init
    for t in range(length):
        cur = np.empty((batch, k), dtype=object)
        for i, row in enumerate(rows):
            acc = u[:, t, i]
            for j, a in row:
                acc = acc + prev[:, j] * a
            cur[:, i] = acc
        out[:, t] = cur
        prev = cur
    return out


# ------------------------------------------------------------------------------------------ core ops

def run_linear(op: Op, inputs: list, state, ctx: EvalContext):
    (x,) = inputs
    return affine(op, "A", "b", x, ctx.exact), None


def run_relu(op: Op, inputs: list, state, ctx: EvalContext):
    return relu_values(inputs[0]), None


def run_concat(op: Op, inputs: list, state, ctx: EvalContext):
    if len(inputs) == 1:
        return inputs[0], None
    if ctx.exact:
        return np.concatenate(inputs, axis=-1), None
    batch, length, _ = inputs[0].shape
    return from_feature_major(np.concatenate([x.transpose(2, 0, 1) for x in inputs], axis=0)
                              .reshape(op.dim, -1), batch, length), None


def run_multi(op: Op, inputs: list, state, ctx: EvalContext):
    (x,) = inputs
    half = x.shape[-1] // 2
    return x[..., :half] * x[..., half:], None


def run_slice(op: Op, inputs: list, state, ctx: EvalContext):
    (x,) = inputs
    return x[..., op.attrs["start"]:op.attrs["end"]], None


def _prepare_linstate_float(op: Op) -> tuple:
    """``(B csr, bias or None, init, scan structure, A for the scan)``.  The scan path is chosen once per
    matrix, and the dense path gets a dense array so no sparse conversion repeats per call (only small
    matrices take that path; diagonal and CSR ones stay sparse, however wide the state)."""
    a = op.attrs["A"].scipy()
    structure = scan_structure(a)
    return (op.attrs["B"].scipy(), _bias(op.attrs["bias"], False), op.attrs["init"].array(False), structure,
            a.toarray() if structure == "dense" else a)


def run_linstate(op: Op, inputs: list, state, ctx: EvalContext):
    """``s_t = A s_{t-1} + B x_t + bias`` from ``state`` (``(B, k)``; None: ``init``); the state is the last
    ``s_t``."""
    (x,) = inputs
    attrs = op.attrs
    sources = (attrs["A"], attrs["B"], attrs["bias"], attrs["init"])
    batch, length = x.shape[0], x.shape[1]
    if ctx.exact:
        a_rows, b_rows, bias, init = cached(op, "exact", sources, lambda: (
            _exact_rows(attrs["A"]), _exact_rows(attrs["B"]), _bias(attrs["bias"], True),
            attrs["init"].array(True)))
        start = init if state is None else state
        out = exact_scan(a_rows, exact_affine(b_rows, x, bias), start)
        return out, (out[:, -1] if length else initial_rows(attrs["init"], batch, True) if state is None else state)
    b_csr, bias, init, structure, a = cached(op, "float", sources, lambda: _prepare_linstate_float(op))
    start = init if state is None else np.ascontiguousarray(state, dtype=np.float64)
    if batch == 0 or length == 0:
        last = initial_rows(attrs["init"], batch, False) if state is None else start
        return np.zeros((batch, length, op.dim)), last
    states = linear_scan(a, float_affine(b_csr, x, bias), start, backend=ctx.backend, structure=structure)
    last = states[:, -1].copy()
    if op.dim == 1:
        return states, last
    # one transposing copy here instead of one in every consumer
    return from_feature_major(feature_major(states), batch, length), last


OPS["linear"].run = run_linear
OPS["relu"].run = run_relu
OPS["concat"].run = run_concat
OPS["multi"].run = run_multi
OPS["slice"].run = run_slice
OPS["linstate"].run = run_linstate


def run_op(op: Op, inputs: list, state=None, *, exact: bool = False, backend: str = "numpy"):
    """``op``'s semantics over ``inputs`` (``(B, T, d)`` arrays) from ``state`` (None: its initial state):
    ``(output, state after the last step)``."""
    x = inputs[0]
    ctx = EvalContext(exact=exact, backend=backend, batch=x.shape[0], length=x.shape[1])
    return op.opdef.run(op, list(inputs), state, ctx)
