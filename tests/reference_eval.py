"""A textbook per-token evaluator of core-dialect modules, used only by tests.

It follows the loop of ``language.md`` §1 literally — for every sequence, for every step ``t``, evaluate
the ops in order, a ``linstate`` reading its own value from step ``t-1`` — with dense matrices and no code
shared with ``lsrl.ir.interpreter``.  Float mode uses dense numpy float64; exact mode uses Python lists of
:class:`fractions.Fraction` (floats taken at their exact binary value).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from lsrl.ir.core import Module
from lsrl.ir.matrix import Matrix, Vector

__all__ = ["evaluate_per_token"]


def _dense(m: Matrix, exact: bool):
    if exact:
        return [[Fraction(v) for v in row] for row in m.to_dense_exact().tolist()]
    return np.array(m.to_float().to_dense(), dtype=np.float64)


def _vec(v: Vector, exact: bool):
    if exact:
        return [Fraction(x) for x in v.to_exact().values.tolist()]
    return np.array(v.to_float().values, dtype=np.float64)


def _exact_matvec(rows, v):
    return [sum((a * x for a, x in zip(row, v)), Fraction(0)) for row in rows]


def evaluate_per_token(module: Module, xs, exact: bool = False) -> np.ndarray:
    """Outputs of ``module`` on ``xs`` (``(T, d)``, ``(B, T, d)`` or ``(T,)``), shaped like the
    interpreter's: ``(T, d_out)`` or ``(B, T, d_out)``; float64, or an object array of Fractions."""
    arr = np.asarray(xs)
    rank = arr.ndim
    if rank == 1:
        arr = arr.reshape(1, -1, 1)
    elif rank == 2:
        arr = arr[None]
    n_seq, length, _ = arr.shape
    consts = {}
    for op in module.ops:
        if op.kind == "linear":
            consts[id(op)] = (_dense(op.attrs["A"], exact), _vec(op.attrs["b"], exact))
        elif op.kind == "linstate":
            consts[id(op)] = (_dense(op.attrs["A"], exact), _dense(op.attrs["B"], exact),
                              _vec(op.attrs["bias"], exact), _vec(op.attrs["init"], exact))

    d_out = module.output.dim
    out = np.empty((n_seq, length, d_out), dtype=object if exact else np.float64)
    for b in range(n_seq):
        state = {id(op): consts[id(op)][3] for op in module.ops if op.kind == "linstate"}
        for t in range(length):
            token = arr[b, t]
            val = {}
            for op in module.ops:
                args = [val[id(o)] for o in op.operands]
                if op.kind == "input":
                    if exact:
                        v = [Fraction(x) for x in token.tolist()]  # floats at their binary value
                    else:
                        v = np.array([float(x) for x in token.tolist()], dtype=np.float64)
                elif op.kind == "linear":
                    a, bias = consts[id(op)]
                    if exact:
                        v = [p + q for p, q in zip(_exact_matvec(a, args[0]), bias)]
                    else:
                        v = a @ args[0] + bias
                elif op.kind == "relu":
                    v = [x if x > 0 else Fraction(0) for x in args[0]] if exact else np.maximum(args[0], 0.0)
                elif op.kind == "concat":
                    v = [x for a in args for x in a] if exact else np.concatenate(args)
                elif op.kind == "slice":
                    v = args[0][op.attrs["start"]:op.attrs["end"]]
                elif op.kind == "multi":
                    h = len(args[0]) // 2
                    v = [p * q for p, q in zip(args[0][:h], args[0][h:])] if exact else args[0][:h] * args[0][h:]
                elif op.kind == "linstate":
                    a, bmat, bias, _ = consts[id(op)]
                    prev = state[id(op)]
                    if exact:
                        v = [p + q + r for p, q, r in zip(_exact_matvec(a, prev), _exact_matvec(bmat, args[0]), bias)]
                    else:
                        v = a @ prev + bmat @ args[0] + bias
                    state[id(op)] = v
                else:
                    raise NotImplementedError(f"reference evaluator: unsupported op kind {op.kind!r}")
                val[id(op)] = v
            y = val[id(module.output)]
            for i in range(d_out):
                out[b, t, i] = y[i]
    return out[0] if rank < 3 else out
