"""The steps at which a value can be non-zero, for range analysis' registers (docs/passes.md, "Range analysis").

A register that sums a value gated to a few steps — the token program's query ``q_i = Σ_t x_t·[t ≤ n, m_t = i]``
— holds at most that many drives, not ``t_max`` of them: range analysis bounded ``q_i`` by ``9·t_max`` (3,690 at
``t_max = 410``) where it is at most ``9·n``.  Range analysis asks :meth:`TimeWindows.active_steps` for the
number of steps a register's drive can be non-zero.

What is known of each coordinate at the steps ``t = 1 … t_max`` (:class:`_Fact`):

* ``pieces``: its exact value as a piecewise affine function of ``t`` — counters (``s_t = s_0 + d·t``), the
  affine rows and ReLUs of such values (a step of a counter is 0 up to a step and 1 after it) and products where
  one factor is piecewise constant;
* else ``window``: the first and last step at which it may be non-zero (``None``: any step; ``EMPTY``: never).

Rows mixing both are non-zero only where the piecewise part can be (outside the other terms' windows) or where
it plus the others' largest value from range analysis can be positive (a ReLU).  Everything is exact rational
arithmetic over the steps; values the analysis does not follow in time (inputs, rotations, shift registers)
have the window ``None``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..ir.core import Op, fill_in_order

__all__ = ["TimeWindows"]

#: a window of a value that is 0 at every step
EMPTY = ()
_INF = math.inf
#: the most pieces kept per coordinate (more: only its window)
_MAX_PIECES = 64


@dataclass(frozen=True)
class _Fact:
    pieces: tuple | None  # ((t0, t1, a, b), ...) covering 1 … T: the value a + b·t on t0 ≤ t ≤ t1
    window: tuple | None  # (first, last), EMPTY, or None (any step)


_ANY = _Fact(None, None)


def _hull(windows) -> tuple | None:
    """The smallest window holding every window given (None absorbs)."""
    first, last = _INF, -_INF
    for w in windows:
        if w is None:
            return None
        if w != EMPTY:
            first, last = min(first, w[0]), max(last, w[1])
    return EMPTY if first == _INF else (int(first), int(last))


def _meet(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None:
        return b
    if b is None:
        return a
    if a == EMPTY or b == EMPTY or max(a[0], b[0]) > min(a[1], b[1]):
        return EMPTY
    return max(a[0], b[0]), min(a[1], b[1])


def _nonzero_window(pieces: tuple) -> tuple:
    return _hull((t0, t1) for t0, t1, a, b in pieces if a != 0 or b != 0)


def _breaks(*all_pieces) -> list:
    """The common refinement of several piece lists: the ``(t0, t1)`` intervals."""
    starts = sorted({p[0] for pieces in all_pieces for p in pieces})
    ends = starts[1:] + [all_pieces[0][-1][1] + 1]
    return [(s, e - 1) for s, e in zip(starts, ends)]


def _at(pieces: tuple, t: int) -> tuple:
    for t0, t1, a, b in pieces:
        if t0 <= t <= t1:
            return a, b
    raise AssertionError("pieces do not cover the step")


def _combine(terms: list, bias: Fraction, steps: int) -> tuple:
    """``Σ w·pieces + bias`` as pieces."""
    if not terms:
        return ((1, steps, bias, Fraction(0)),)
    out = []
    for t0, t1 in _breaks(*[p for _, p in terms]):
        a, b = bias, Fraction(0)
        for w, pieces in terms:
            pa, pb = _at(pieces, t0)
            a, b = a + w * pa, b + w * pb
        if out and out[-1][2] == a and out[-1][3] == b and out[-1][1] == t0 - 1:
            out[-1] = (out[-1][0], t1, a, b)
        else:
            out.append((t0, t1, a, b))
    return tuple(out)


def _positive_steps(pieces: tuple, shift: float) -> list:
    """The ``(t0, t1)`` intervals where ``value + shift > 0`` (``shift`` may be ``±inf``)."""
    if shift == _INF:
        return [(p[0], p[1]) for p in pieces]
    if shift == -_INF:
        return []
    shift = Fraction(shift)
    out = []
    for t0, t1, a, b in pieces:
        a = a + shift
        if b == 0:
            lo, hi = (t0, t1) if a > 0 else (1, 0)
        elif b > 0:  # a + b t > 0  ⟺  t > −a/b
            lo, hi = max(t0, math.floor(-a / b) + 1), t1
        else:  # t < −a/b
            lo, hi = t0, min(t1, math.ceil(-a / b) - 1)
        if lo <= hi:
            out.append((lo, hi))
    return out


def _relu_pieces(pieces: tuple) -> tuple:
    out = []
    for t0, t1, a, b in pieces:
        positive = _positive_steps(((t0, t1, a, b),), 0.0)  # one interval at most: the value is affine
        lo, hi = positive[0] if positive else (t1 + 1, t1)
        if lo > t0:
            out.append((t0, lo - 1, Fraction(0), Fraction(0)))
        if lo <= hi:
            out.append((lo, hi, a, b))
        if positive and hi < t1:
            out.append((hi + 1, t1, Fraction(0), Fraction(0)))
    return tuple(out)


def _fact(pieces: tuple) -> _Fact:
    """Pieces, or past :data:`_MAX_PIECES` only where they are non-zero."""
    return _Fact(pieces, None) if len(pieces) <= _MAX_PIECES else _Fact(None, _nonzero_window(pieces))


class TimeWindows:
    """Per op of a module analysed by ``ranges`` (a :class:`~lsrl.passes.range_analysis.RangeAnalysis` with a
    ``t_max``): what is known of each coordinate over the steps ``1 … t_max``."""

    def __init__(self, ranges, t_max: int):
        self.ranges = ranges
        self.steps = int(t_max)
        self._facts: dict[int, list] = {}
        self._pinned: dict[int, Op] = {}

    def active_steps(self, op: Op) -> list:
        """Per coordinate of the ``linstate`` ``op``: how many steps its drive ``B x + bias`` may be non-zero."""
        drive = self._rows(op.attrs["B"], op.attrs["bias"], op.operands[0], relu=False)
        counts = []
        for fact in drive:
            window = fact.window if fact.pieces is None else _nonzero_window(fact.pieces)
            counts.append(self.steps if window is None else 0 if window == EMPTY else window[1] - window[0] + 1)
        return counts

    def facts(self, op: Op) -> list:
        if id(op) not in self._facts:
            fill_in_order(op, self._facts, self._transfer, self._pinned)
        return self._facts[id(op)]

    def _transfer(self, op: Op) -> list:
        kind = op.kind
        if kind == "linear":
            return self._rows(op.attrs["A"], op.attrs["b"], op.operands[0], relu=False)
        if kind == "relu":
            (x,) = op.operands
            if x.kind == "linear":  # the ReLU of each row, with the row's terms at hand
                return self._rows(x.attrs["A"], x.attrs["b"], x.operands[0], relu=True)
            return [_fact(_relu_pieces(f.pieces)) if f.pieces is not None else f for f in self.facts(x)]
        if kind == "concat":
            return [f for o in op.operands for f in self.facts(o)]
        if kind == "slice":
            return self.facts(op.operands[0])[op.attrs["start"]:op.attrs["end"]]
        if kind == "multi":
            return self._products(self.facts(op.operands[0]), op.dim)
        if kind == "linstate":
            return self._states(op)
        return [_ANY] * op.dim

    def _products(self, factors: list, h: int) -> list:
        out = []
        for left, right in zip(factors[:h], factors[h:]):
            pieces = None
            if left.pieces is not None and right.pieces is not None:
                constant, other = (left, right) if all(p[3] == 0 for p in left.pieces) else (right, left)
                if all(p[3] == 0 for p in constant.pieces):
                    pieces = tuple((t0, t1, ca * a, ca * b) for t0, t1, ca, a, b in
                                   ((t0, t1, _at(constant.pieces, t0)[0], *_at(other.pieces, t0))
                                    for t0, t1 in _breaks(constant.pieces, other.pieces)))
            if pieces is not None:
                out.append(_fact(pieces))
                continue
            windows = [f.window if f.pieces is None else _nonzero_window(f.pieces) for f in (left, right)]
            out.append(_Fact(None, _meet(*windows)))
        return out

    def _states(self, op: Op) -> list:
        drive = self._rows(op.attrs["B"], op.attrs["bias"], op.operands[0], relu=False)
        a_rows = [self.ranges.exact_row(op.attrs["A"], i) for i in range(op.dim)]
        init = [self.ranges.exact_entry(op.attrs["init"], i) for i in range(op.dim)]
        out = []
        for i, (row, fact) in enumerate(zip(a_rows, drive)):
            if not row:  # s_t = the drive
                out.append(fact)
            elif row == {i: 1} and fact.pieces is not None and len(fact.pieces) == 1 and fact.pieces[0][3] == 0:
                out.append(_Fact(((1, self.steps, init[i], fact.pieces[0][2]),), None))  # s_t = s_0 + d·t
            elif row == {i: 1} and init[i] == 0:  # a register: 0 until its drive first is non-zero
                window = fact.window if fact.pieces is None else _nonzero_window(fact.pieces)
                out.append(_Fact(None, None if window is None else EMPTY if window == EMPTY
                                 else (window[0], self.steps)))
            else:
                out.append(_ANY)
        return out

    def _rows(self, a, b, x: Op, relu: bool) -> list:
        """Each row ``a·x + b`` (its ReLU where ``relu``): pieces where every term has them, else a window."""
        facts = self.facts(x)
        lo, hi = self.ranges(x)
        out = []
        for r in range(a.shape[0]):
            row = self.ranges.exact_row(a, r)
            bias = self.ranges.exact_entry(b, r) if b is not None else Fraction(0)
            exact = [(w, facts[c].pieces) for c, w in row.items() if facts[c].pieces is not None]
            rest = [(c, w) for c, w in row.items() if facts[c].pieces is None]
            pieces = _combine(exact, bias, self.steps)
            if not rest:
                out.append(_fact(_relu_pieces(pieces) if relu else pieces))
                continue
            if not relu:
                out.append(_Fact(None, _hull([_nonzero_window(pieces)] + [facts[c].window for c, _ in rest])))
                continue
            # the ReLU is positive only where the pieces plus the terms that can be positive are: those add at most
            # their largest value (range analysis) where they may be non-zero, else 0
            with np.errstate(invalid="ignore"):
                tops = [(c, max(float(w) * lo[c], float(w) * hi[c])) for c, w in rest]
            rising = [(c, top) for c, top in tops if not top <= 0]  # nan (0·inf) counts as rising
            rest_window = _hull(facts[c].window for c, _ in rising)
            largest = math.fsum(top for _, top in rising) if all(math.isfinite(top) for _, top in rising) else _INF
            largest = float(np.nextafter(largest, _INF)) if math.isfinite(largest) else largest
            inside = [] if rest_window == EMPTY else _positive_steps(pieces, largest)
            outside = _positive_steps(pieces, 0.0)
            if rest_window is not None:
                inside = [w for w in (_meet(s, rest_window) for s in inside) if w != EMPTY]
                outside = [s for s in outside if not (rest_window != EMPTY and rest_window[0] <= s[0]
                                                      and s[1] <= rest_window[1])]
            else:
                outside = []
            out.append(_Fact(None, _hull(inside + outside)))
        return out
