"""What the recurrent-cell op kinds of the targets share (``targets.md`` §4–§6).

A cell op reads one operand ``x`` and keeps a hidden state; its weights follow the PyTorch layout: ``W_ih``
(``gates·H × d``), ``W_hh`` (``gates·H × H``), ``b_ih``, ``b_hh`` (``gates·H``), the initial state ``h0``
(``H``; a cell with a memory cell also ``c0``) and, for cells with σ/tanh, ``activations`` — ``"ideal"`` (every σ and tanh
replaced by ReLU: the paper's appendices, exact also in rational arithmetic) or ``"standard"`` (the real
functions, float only).  :func:`cell_opdef` builds the :class:`~lsrl.ir.core.OpDef` of such a kind from its
gate names and its ``run``; the numpy pieces every cell's ``run`` is made of and the array conversions of a
kernel descriptor are here too, so each cell's module holds only its own equations.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import expit

from ...errors import LsrlError
from ...ir.core import AttrSpec, OPS, Op, OpDef, ShapeProblem, register_op
from ...ir.matrix import Matrix, Vector
from ...ir.semantics import initial_rows, relu_values

__all__ = ["ACTIVATIONS", "cell_opdef", "activation_functions", "input_projection", "Recurrent", "initial_state",
           "empty_outputs", "csr_arrays", "vector_array", "optional_vector"]

ACTIVATIONS = ("ideal", "standard")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeProblem(message)


def cell_opdef(kind: str, summary: str, *, gates: tuple[str, ...], run: Callable, kernel: Callable | None,
               state_parts: tuple[str, ...] = ("h",), activations: bool = True) -> OpDef:
    """Register (once) and return the op kind ``kind``: a cell with ``len(gates)`` stacked row blocks, state
    arrays ``state_parts`` (each stored initially as attribute ``<part>0``) and, when ``activations``, an
    ``activations`` attribute choosing ideal (ReLU) or standard (σ, tanh) functions."""
    if kind in OPS:
        return OPS[kind]
    n_gates = len(gates)
    initial = [part + "0" for part in state_parts]
    gate_text = f" (gates {', '.join(gates)})" if n_gates > 1 else ""
    attrs = {
        "W_ih": AttrSpec("matrix", doc=f"input weights{gate_text}"),
        "W_hh": AttrSpec("matrix", doc=f"recurrent weights{gate_text}"),
        "b_ih": AttrSpec("vector", False, "input bias"),
        "b_hh": AttrSpec("vector", False, "recurrent bias"),
    }
    for part, name in zip(state_parts, initial):
        attrs[name] = AttrSpec("vector", False, f"initial {part}")
    if activations:
        attrs["activations"] = AttrSpec("str", doc="'ideal' (σ, tanh → ReLU) or 'standard'")

    def infer(op: Op) -> int:
        w_ih, w_hh = op.attrs["W_ih"], op.attrs["W_hh"]
        d = op.operands[0].dim
        _check(w_ih.shape[0] % n_gates == 0 and w_ih.shape[0] >= n_gates,
               f"W_ih has {w_ih.shape[0]} rows, expected {n_gates}·H (H ≥ 1)")
        h = w_ih.shape[0] // n_gates
        _check(w_ih.shape[1] == d, f"W_ih is {w_ih.shape[0]}x{w_ih.shape[1]} but the operand has dim {d}")
        _check(w_hh.shape == (n_gates * h, h),
               f"W_hh is {w_hh.shape[0]}x{w_hh.shape[1]}, expected {n_gates * h}x{h}")
        for name in ("b_ih", "b_hh"):
            _check(len(op.attrs[name]) == n_gates * h,
                   f"{name} has length {len(op.attrs[name])}, expected {n_gates * h}")
        for name in initial:
            _check(len(op.attrs[name]) == h, f"{name} has length {len(op.attrs[name])}, expected {h}")
        if activations:
            _check(op.attrs.get("activations") in ACTIVATIONS,
                   f"activations must be one of {ACTIVATIONS}, got {op.attrs.get('activations')!r}")
        return h

    def defaults(op: Op) -> dict:
        w = op.attrs.get("W_ih")
        if not isinstance(w, Matrix):
            return {}
        h = w.shape[0] // n_gates
        out = {"b_ih": Vector.zeros(w.shape[0]), "b_hh": Vector.zeros(w.shape[0])}
        out.update({name: Vector.zeros(h) for name in initial})
        return out

    return register_op(OpDef(kind, summary, infer, attrs=attrs, stateful=True, run=run, defaults=defaults,
                             kernel=kernel, state_parts=tuple(state_parts), gates=tuple(gates)))


# ------------------------------------------------------------------------------------------ numerics

def activation_functions(op: Op, exact: bool) -> tuple[Callable, Callable]:
    """``(σ, tanh)`` of the op's activation mode: both ReLU in ideal mode."""
    if op.attrs.get("activations", "ideal") == "ideal":
        return relu_values, relu_values
    if exact:
        raise LsrlError(f"{op.describe()}: standard activations (sigmoid, tanh) cannot be evaluated in exact "
                        "arithmetic")
    return expit, np.tanh


def input_projection(op: Op, x: np.ndarray, bias: Vector, exact: bool) -> np.ndarray:
    """``W_ih x + bias`` for every step at once (``x`` is ``(B, T, d)``)."""
    return op.attrs["W_ih"].apply(x) + bias.array(exact)


class Recurrent:
    """``h ↦ W_hh h`` for a batch of hidden states (sparse, or dense when that is cheaper)."""

    def __init__(self, m: Matrix, exact: bool):
        self.zero = m.nnz == 0
        self.exact = exact
        self.m = m
        if not exact and not self.zero:
            csr = m.scipy()
            self.dense = csr.toarray().T.copy() if csr.nnz > 0.2 * csr.shape[0] * csr.shape[1] else None
            self.csr = csr

    def __call__(self, h: np.ndarray) -> np.ndarray:
        if self.exact:
            return self.m.apply(h)
        if self.dense is not None:
            return h @ self.dense
        return np.asarray(self.csr @ h.T).T


def initial_state(op: Op, batch: int, exact: bool) -> tuple:
    """The op's stored initial state broadcast to the batch: one ``(B, H)`` array per state part."""
    return tuple(initial_rows(op.attrs[part + "0"], batch, exact) for part in op.opdef.state_parts)


def empty_outputs(batch: int, length: int, width: int, exact: bool) -> np.ndarray:
    return np.empty((batch, length, width), dtype=object if exact else np.float64)


# ------------------------------------------------------------------------------------------ kernel descriptors

def csr_arrays(matrix: Matrix, dtype: np.dtype, rows: slice | None = None) -> tuple:
    """``(indptr, indices, data)`` of a Matrix (or of its ``rows``) in the storage order the numpy semantics use
    (so the kernel sums in the same order)."""
    csr = matrix.scipy() if rows is None else matrix.scipy()[rows]
    return (np.ascontiguousarray(csr.indptr, dtype=np.int64), np.ascontiguousarray(csr.indices, dtype=np.int64),
            np.ascontiguousarray(csr.data, dtype=dtype))


def vector_array(vector: Vector, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(vector.array(False), dtype=dtype)


def optional_vector(vector: Vector, dtype: np.dtype):
    """The vector, or None when it is zero (the kernel then adds nothing)."""
    return None if vector.is_zero() else vector_array(vector, dtype)
