"""``constant-fold``: fold ops whose value does not depend on the input into canonical constants.

A coordinate is *constant* when it has the same value at every step of every input sequence.  The analysis
(:class:`ConstantAnalysis`) tracks constants per coordinate: ``linear`` rows that only read constant
coordinates, ``relu``/``slice``/``concat`` of constants, ``multi`` coordinates whose halves are constant
(or one of them exactly 0), ``linstate`` rows with a zero row of ``A`` that only read constants
(``s_t = B x + bias`` for ``t ≥ 1``), and whole states whose input is constant and whose ``init`` is a fixed
point (``A·init + u = init``).

Rewrites: an op all of whose coordinates are constant becomes ``linear %input {A = 0, b = value}``
(:func:`lsrl.passes.rewrite.make_constant`); a ``linear``/``linstate`` reading some constant coordinates
moves them into its bias (``b += A[:, c]·value``) and stops reading them, so ``dce`` can drop them.

Arithmetic follows the constants' domains: float constants fold in float64 (the order of the interpreter's
sums), and as soon as an exact constant takes part the fold is exact (floats at their binary value).
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from ..ir.core import Module, Op, fill_in_order
from ..ir.matrix import Matrix, Vector, matvec
from . import Pass, register_pass
from .rewrite import Rewriter, apply_patterns, is_constant

__all__ = ["ConstantAnalysis", "ConstantFold", "fold_constant_ops"]


def _exactly(values) -> bool:
    return any(isinstance(v, Fraction) for v in values)


def _as_fraction(v):
    return v if isinstance(v, Fraction) else Fraction(float(v))


def _dot(row: list[tuple[int, object]], vals: list, bias) -> object:
    """``Σ a_j · vals[j] + bias`` in float (interpreter order) or exactly when any term is exact."""
    terms = [a for _, a in row] + [vals[j] for j, _ in row] + [bias]
    if _exactly(terms):
        acc = Fraction(0)
        for j, a in row:
            acc += _as_fraction(a) * _as_fraction(vals[j])
        return acc + _as_fraction(bias)
    acc = 0.0
    for j, a in row:
        acc += float(a) * float(vals[j])
    return acc + float(bias)


def _rows(mat: Matrix) -> list[list[tuple[int, object]]]:
    r, c, v = mat.coo()
    out: list[list] = [[] for _ in range(mat.shape[0])]
    for i, j, x in zip(r.tolist(), c.tolist(), v):
        out[i].append((j, x))
    return out


def _is_zero(v) -> bool:
    return v is not None and v == 0


class ConstantAnalysis:
    """Memoised per-coordinate constants: ``analysis(op)`` is a list with the value (float or Fraction)
    of every constant coordinate and ``None`` elsewhere.  Values never change under semantics-preserving
    rewrites, so one analysis serves a whole rewriting session."""

    def __init__(self):
        self._memo: dict[int, list] = {}
        self._pinned: dict[int, Op] = {}

    def __call__(self, op: Op) -> list:
        if id(op) not in self._memo:
            fill_in_order(op, self._memo, lambda cur: self._transfer(cur, [self._memo[id(o)] for o in cur.operands]),
                          self._pinned)
        return self._memo[id(op)]

    def _transfer(self, op: Op, ins: list) -> list:
        kind = op.kind
        if kind == "linear":
            vals = ins[0]
            b = op.attrs["b"].values.tolist()
            return [_dot(row, vals, b[i]) if all(vals[j] is not None for j, _ in row) else None
                    for i, row in enumerate(_rows(op.attrs["A"]))]
        if kind == "relu":
            return [None if v is None else (v if v > 0 else (Fraction(0) if isinstance(v, Fraction) else 0.0))
                    for v in ins[0]]
        if kind == "slice":
            return ins[0][op.attrs["start"]:op.attrs["end"]]
        if kind == "concat":
            return [v for vals in ins for v in vals]
        if kind == "multi":
            vals, h = ins[0], op.dim
            out = []
            for x, y in zip(vals[:h], vals[h:]):
                if x is not None and y is not None:
                    out.append(_as_fraction(x) * _as_fraction(y) if _exactly([x, y]) else float(x) * float(y))
                elif _is_zero(x) or _is_zero(y):
                    out.append(x if _is_zero(x) else y)
                else:
                    out.append(None)
            return out
        if kind == "linstate":
            return self._linstate(op, ins[0])
        return [None] * (op.dim or 0)

    @staticmethod
    def _linstate(op: Op, vals: list) -> list:
        k = op.dim
        b_rows = _rows(op.attrs["B"])
        bias = op.attrs["bias"].values.tolist()
        u = [_dot(row, vals, bias[i]) if all(vals[j] is not None for j, _ in row) else None
             for i, row in enumerate(b_rows)]
        a: Matrix = op.attrs["A"]
        a_rows = _rows(a)
        out = [u[i] if not a_rows[i] else None for i in range(k)]
        if all(x is not None for x in u) and any(x is None for x in out):
            # the whole state is constant when init is a fixed point of s ↦ A s + u (checked exactly)
            init = op.attrs["init"].values.tolist()
            ex_init = [_as_fraction(x) for x in init]
            fixed = all(sum((_as_fraction(v) * ex_init[j] for j, v in row), Fraction(0)) + _as_fraction(u[i])
                        == ex_init[i] for i, row in enumerate(a_rows))
            if fixed:
                out = list(init)
        return out


def _vector(values: list) -> Vector:
    return Vector(np.array(values, dtype=object)) if _exactly(values) else Vector(np.array(values, dtype=float))


def _fold_reads(rw: Rewriter, op: Op, consts: ConstantAnalysis, mat_key: str, bias_key: str) -> Op | None:
    """Move the constant coordinates an affine op reads into its bias."""
    operand = op.operands[0]
    vals = consts(operand)
    if not any(v is not None for v in vals):
        return None
    mat: Matrix = op.attrs[mat_key]
    const_cols = [j for j, v in enumerate(vals) if v is not None]
    read = mat.cols(const_cols)
    if read.nnz == 0:
        return None
    value = _vector([vals[j] for j in const_cols])
    keep = [0.0 if vals[j] is not None else 1.0 for j in range(mat.shape[1])]
    attrs = dict(op.attrs)
    attrs[mat_key] = mat @ Matrix.diag(keep)  # the constant columns zeroed
    attrs[bias_key] = op.attrs[bias_key] + matvec(read, value)
    if attrs[mat_key].nnz == 0:
        if op.kind == "linear":
            return rw.constant(attrs[bias_key])
        attrs[mat_key] = Matrix.zeros(attrs[mat_key].shape[0], rw.input.dim)
        return rw.create(op.kind, [rw.input], attrs, loc=op.loc)
    return rw.create(op.kind, [operand], attrs, loc=op.loc)


def fold_constant_ops(consts: ConstantAnalysis):
    """The constant-folding pattern (shared with ``canonicalize``)."""

    def fold_constants(rw: Rewriter, op: Op) -> Op | None:
        if is_constant(op):
            if op.operands[0] is rw.input and op.attrs["A"].shape[1] == rw.input.dim:
                return None
            return rw.constant(op.attrs["b"])
        if op.kind == "input" or op.dim is None:
            return None
        vals = consts(op)
        if all(v is not None for v in vals):
            return rw.constant(_vector(vals))
        if op.kind == "linear":
            return _fold_reads(rw, op, consts, "A", "b")
        if op.kind == "linstate":
            return _fold_reads(rw, op, consts, "B", "bias")
        return None

    return fold_constants


@register_pass
@dataclasses.dataclass
class ConstantFold(Pass):
    name = "constant-fold"
    summary = "fold ops with no dynamic input into constants (linear %input {A = 0, b = value})"

    def run(self, module: Module) -> None:
        apply_patterns(module, [fold_constant_ops(ConstantAnalysis())])
