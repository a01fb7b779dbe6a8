"""``canonicalize``: greedy local rewrites to a fixpoint (``compile.md`` §3).

Patterns (each preserves the op's value exactly in exact arithmetic):

* ``linear(linear(x))`` → one linear ``(A₂A₁, A₂b₁ + b₂)`` when the inner linear has a single use (the
  reference condition) or is a constant;
* ``linstate(linear(x))`` → ``B ← B·A_lin``, ``bias ← B·b_lin + bias`` (the linear stays if others use it);
  ``linstate(slice(x))`` and ``linear(slice(x))`` read ``x`` through the scattered columns; a
  linear/linstate reading a concat through zero columns on some operands reads only the others;
* ``relu(relu(x))`` → the inner relu; with ``use_ranges=true``, ``relu(x)`` → ``x`` when range analysis
  proves ``x ≥ 0`` (coordinates proven ``≤ 0`` become 0: then a 0/1 diagonal linear);
* ``slice`` of the whole operand → the operand; ``slice(slice(x))`` → one slice; ``slice(concat(...))`` → the
  covered operand, or a concat of (slices of) the covered operands; ``slice(linear(x))`` → the linear's rows;
* ``concat`` of one operand → the operand; nested concats are flattened; adjacent slices of one value are
  merged; a concat whose operands are all one value ``v`` → ``linear(v, [I; …; I])``;
* identity linears (``A = I``, ``b = 0``) are removed;
* ``multi`` whose every output coordinate has a constant factor → ``linear`` (``diag(c)`` on the other half);
* constant folding (as the ``constant-fold`` pass).

Ops that no longer reach the output are dropped.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..assumptions import recorded_t_max, tightest_t_max, validate_t_max
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector, matvec
from . import Pass, register_pass
from .constant_fold import ConstantAnalysis, fold_constant_ops
from .rewrite import Rewriter, apply_patterns, is_constant

__all__ = ["Canonicalize", "canonicalize_patterns", "selection_matrix"]


def selection_matrix(rows: int, cols: int, picks, *, exact: bool = False) -> Matrix:
    """``S`` with ``S[i, picks[i]] = 1`` (``S x = x[picks]``)."""
    picks = list(picks)
    return Matrix.from_entries((rows, cols), range(rows), picks, [1.0] * rows, exact=exact)


def _slice_columns(mat: Matrix, start: int, end: int, width: int) -> Matrix:
    """``mat · S`` where ``S`` selects ``x[start:end]`` from a ``width``-vector: columns scattered."""
    n = end - start
    return mat @ selection_matrix(n, width, range(start, end))


# ---------------------------------------------------------------------------- linear patterns

def compose_linear_linear(rw: Rewriter, op: Op) -> Op | None:
    """``linear(linear(x))`` → one linear, whatever the inner linear's other uses (its work is then duplicated)."""
    if op.kind != "linear" or op.operands[0].kind != "linear":
        return None
    inner = op.operands[0]
    a2, b2 = op.attrs["A"], op.attrs["b"]
    a1, b1 = inner.attrs["A"], inner.attrs["b"]
    return rw.create("linear", [inner.operands[0]], {"A": a2 @ a1, "b": matvec(a2, b1) + b2}, loc=op.loc)


def fold_linear_linear(rw: Rewriter, op: Op) -> Op | None:
    """``linear(linear(x))`` → one linear when the inner linear has a single use or is a constant."""
    if op.kind != "linear":
        return None
    inner = op.operands[0]
    if inner.kind != "linear" or not (rw.single_use(inner) or is_constant(inner)):
        return None
    return compose_linear_linear(rw, op)


def fold_linear_slice(rw: Rewriter, op: Op) -> Op | None:
    if op.kind not in ("linear", "linstate"):
        return None
    inner = op.operands[0]
    if inner.kind != "slice":
        return None
    key = "A" if op.kind == "linear" else "B"
    src = inner.operands[0]
    attrs = dict(op.attrs)
    attrs[key] = _slice_columns(op.attrs[key], inner.attrs["start"], inner.attrs["end"], src.dim)
    return rw.create(op.kind, [src], attrs, loc=op.loc)


def skip_unread_concat_operands(rw: Rewriter, op: Op) -> Op | None:
    """A linear/linstate reading a concat through zero columns on some operands reads only the others."""
    if op.kind not in ("linear", "linstate") or op.operands[0].kind != "concat":
        return None
    key = "A" if op.kind == "linear" else "B"
    mat: Matrix = op.attrs[key]
    concat = op.operands[0]
    read_cols = set(np.unique(mat.scipy().indices).tolist())
    kept, cols, offset = [], [], 0
    for operand in concat.operands:
        span = range(offset, offset + operand.dim)
        if any(c in read_cols for c in span):
            kept.append(operand)
            cols.extend(span)
        offset += operand.dim
    if len(kept) == len(concat.operands) or not kept:
        return None  # nothing to skip (an op reading nothing is constant folding's job)
    src = kept[0] if len(kept) == 1 else rw.create("concat", kept)
    attrs = dict(op.attrs)
    attrs[key] = mat.cols(cols)
    return rw.create(op.kind, [src], attrs, loc=op.loc)


def absorb_linear_into_linstate(rw: Rewriter, op: Op) -> Op | None:
    if op.kind != "linstate":
        return None
    inner = op.operands[0]
    if inner.kind != "linear":
        return None
    bmat = op.attrs["B"]
    attrs = dict(op.attrs)
    attrs["B"] = bmat @ inner.attrs["A"]
    attrs["bias"] = matvec(bmat, inner.attrs["b"]) + op.attrs["bias"]
    return rw.create("linstate", [inner.operands[0]], attrs, loc=op.loc)


def remove_identity_linear(rw: Rewriter, op: Op) -> Op | None:
    if op.kind == "linear" and op.attrs["A"].is_identity() and op.attrs["b"].is_zero():
        return op.operands[0]
    return None


# ---------------------------------------------------------------------------- relu

def fold_relu_relu(rw: Rewriter, op: Op) -> Op | None:
    if op.kind == "relu" and op.operands[0].kind == "relu":
        return op.operands[0]
    return None


def relu_of_nonnegative(ranges):
    """``relu(x)`` → ``x`` when ``x ≥ 0``; when every coordinate is either ``≥ 0`` or ``≤ 0`` → the linear
    that keeps the former and zeroes the latter."""
    def relu_of_nonnegative(rw: Rewriter, op: Op) -> Op | None:
        if op.kind != "relu":
            return None
        src = op.operands[0]
        lo, hi = ranges(src)
        if np.all(lo >= 0):
            return src
        passes, zero = lo >= 0, hi <= 0
        if not np.all(passes | zero):
            return None
        keep = np.flatnonzero(passes)
        a = Matrix.from_entries((op.dim, src.dim), keep, keep, [1.0] * len(keep))
        return rw.create("linear", [src], {"A": a, "b": Vector.zeros(op.dim)}, loc=op.loc)
    return relu_of_nonnegative


# ---------------------------------------------------------------------------- slices

def fold_slice_of_linear(rw: Rewriter, op: Op) -> Op | None:
    """``slice`` of the whole operand → the operand; ``slice(slice(x))`` → one slice; ``slice(linear(x))`` →
    the linear's rows."""
    if op.kind != "slice":
        return None
    start, end = op.attrs["start"], op.attrs["end"]
    src = op.operands[0]
    if start == 0 and end == src.dim:
        return src
    if src.kind == "slice":
        s0 = src.attrs["start"]
        return rw.create("slice", [src.operands[0]], {"start": s0 + start, "end": s0 + end}, loc=op.loc)
    if src.kind == "linear":
        rows = list(range(start, end))
        return rw.create("linear", [src.operands[0]],
                         {"A": src.attrs["A"].rows(rows), "b": src.attrs["b"][start:end]}, loc=op.loc)
    return None


def fold_slice(rw: Rewriter, op: Op) -> Op | None:
    """:func:`fold_slice_of_linear`, and ``slice(concat(...))`` → the covered operand, or a concat of (slices
    of) the covered operands."""
    folded = fold_slice_of_linear(rw, op)
    if folded is not None or op.kind != "slice":
        return folded
    start, end = op.attrs["start"], op.attrs["end"]
    src = op.operands[0]
    if src.kind == "concat":
        pieces = []
        offset = 0
        for operand in src.operands:
            lo, hi = offset, offset + operand.dim
            offset = hi
            a, b = max(lo, start), min(hi, end)
            if a >= b:
                continue
            if a == lo and b == hi:
                pieces.append(operand)
            else:
                pieces.append(rw.create("slice", [operand], {"start": a - lo, "end": b - lo}))
        if len(pieces) == 1:
            return pieces[0]
        return rw.create("concat", pieces, loc=op.loc)
    return None


# ---------------------------------------------------------------------------- concat

def fold_concat(rw: Rewriter, op: Op) -> Op | None:
    if op.kind != "concat":
        return None
    operands = op.operands
    if len(operands) == 1:
        return operands[0]
    if any(o.kind == "concat" for o in operands):
        flat = [x for o in operands for x in (o.operands if o.kind == "concat" else [o])]
        return rw.create("concat", flat, loc=op.loc)
    # adjacent slices of one value that continue each other → one slice
    merged: list[Op] = []
    changed = False
    for o in operands:
        prev = merged[-1] if merged else None
        if (prev is not None and o.kind == "slice" and prev.kind == "slice"
                and o.operands[0] is prev.operands[0] and prev.attrs["end"] == o.attrs["start"]):
            merged[-1] = rw.create("slice", [o.operands[0]], {"start": prev.attrs["start"], "end": o.attrs["end"]})
            changed = True
        else:
            merged.append(o)
    if changed:
        return merged[0] if len(merged) == 1 else rw.create("concat", merged, loc=op.loc)
    first = operands[0]
    if all(o is first for o in operands):
        k, d = len(operands), first.dim
        a = selection_matrix(k * d, d, [i % d for i in range(k * d)])
        return rw.create("linear", [first], {"A": a, "b": Vector.zeros(k * d)}, loc=op.loc)
    return None


# ---------------------------------------------------------------------------- multi

def multi_with_constant_factor(consts: ConstantAnalysis):
    def multi_with_constant_factor(rw: Rewriter, op: Op) -> Op | None:
        if op.kind != "multi":
            return None
        src = op.operands[0]
        vals = consts(src)
        h = op.dim
        rows, cols, coefs = [], [], []
        for i in range(h):
            x, y = vals[i], vals[h + i]
            if x is not None and y is not None:
                return None  # a constant product: constant folding's job
            if y is not None:
                coef, col = y, i
            elif x is not None:
                coef, col = x, h + i
            else:
                return None
            if coef != 0:
                rows.append(i)
                cols.append(col)
                coefs.append(coef)
        a = Matrix.from_entries((h, 2 * h), rows, cols, coefs)
        return rw.create("linear", [src], {"A": a, "b": Vector(np.zeros(h))}, loc=op.loc)
    return multi_with_constant_factor


def canonicalize_patterns(*, consts: ConstantAnalysis | None = None, ranges=None) -> list:
    """The pattern list of ``canonicalize`` (``ranges``: a :class:`RangeAnalysis` to drop provably idle
    ReLUs)."""
    consts = consts or ConstantAnalysis()
    patterns = [
        fold_constant_ops(consts),
        remove_identity_linear,
        fold_linear_linear,
        fold_linear_slice,
        skip_unread_concat_operands,
        absorb_linear_into_linstate,
        fold_relu_relu,
        fold_slice,
        fold_concat,
        multi_with_constant_factor(consts),
    ]
    if ranges is not None:
        patterns.append(relu_of_nonnegative(ranges))
    return patterns


@register_pass
@dataclasses.dataclass
class Canonicalize(Pass):
    name = "canonicalize"
    summary = "fold Lin∘Lin, Lin→LinState, ReLU∘ReLU, slices/concats, constants (greedy, to a fixpoint)"
    use_ranges: bool = dataclasses.field(default=False, metadata={
        "help": "drop ReLUs of values that range analysis proves non-negative"})
    t_max: int | None = dataclasses.field(default=None, metadata={
        "help": "sequence length the range analysis may assume (none: any)"})

    def __post_init__(self):
        self.t_max = validate_t_max(self.t_max, "canonicalize")

    def run(self, module: Module) -> None:
        ranges = None
        if self.use_ranges:
            from .range_analysis import RangeAnalysis
            t_max = tightest_t_max(recorded_t_max(module), self.t_max)
            ranges = RangeAnalysis(module, t_max)
            # the rewrites are only valid up to t_max: record it, so interpret() and compiled models enforce it
            if t_max is not None:
                module.metadata["t_max"] = t_max
        apply_patterns(module, canonicalize_patterns(ranges=ranges))
