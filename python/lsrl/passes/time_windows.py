"""Bounds of every value at each step, for range analysis' registers (docs/passes.md, "Registers of gated values").

A register that sums a value gated to a few steps — the token program's query ``q_i = Σ_t x_t·[t ≤ n, m_t = i]``
— holds at most that many drives, not ``t_max`` of them: range analysis bounded ``q_i`` by ``9·t_max`` (3,690 at
``t_max = 410``) where it is at most ``9·n``.  Range analysis asks :meth:`TimeWindows.active_steps` for the
number of steps a register's drive can be non-zero.

What is known of each coordinate at the steps ``t = 1 … t_max`` (:class:`_Fact`) is a lower and an upper bound,
each a piecewise affine function of ``t`` on each residue class of ``t`` modulo a period ``p``: 1 for most
values, a permutation state's cycle length for the one-hot it cycles (the permutation counter's), and the common
period of what is computed from such states.  The two bounds are equal where the value is known exactly:
counters (``s_t = s_0 + d·t``), permutation states (a constant per residue), and the affine rows, ReLUs and
products of such values (a step of a counter is 0 up to a step and 1 after it; a test of the one-hot is 1 on one
residue).  Other values are bounded by range analysis' constants, and by 0 where they are 0: a register until
its drive can first be non-zero, a product where a factor is 0.  A row bounds its terms' sum by their bounds and
meets it with its own range (which sees a step's ReLU pair as one value), a ReLU clamps its bounds.

So the token program's ``started`` register, which adds the step number when a key matches at the first value of
an entry, sees its drive non-zero on one residue of ``2n`` only: the match condition is at most 1 there and
exactly 0 elsewhere, and with the λ-conditionals its complement is exactly 1 elsewhere, which holds the λ-row at
0.  Everything is exact rational arithmetic over the steps; values the analysis does not follow in time (inputs,
rotations, shift registers) are bounded by their ranges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..ir.core import Op, fill_in_order
from .range_analysis import float64_run

__all__ = ["TimeWindows"]

_ZERO = Fraction(0)
#: the most pieces kept per residue (more: one constant bound between the first and last non-zero step)
_MAX_PIECES = 64
#: the longest period followed (longer: the row is bounded by its range)
_MAX_PERIOD = 256
#: the longest constant-drive trajectory run, and the most multiply-adds spent on it (steps × states²)
_MAX_RUN_STEPS = 1 << 17
_MAX_RUN_COST = 1 << 26
#: the most residue sums of one row (period × terms; more: the row is bounded by its range) — exact sums per
#: residue of a dense d×d map over a d-cycle cost d³
_MAX_ROW_SUMS = 8192


@dataclass(frozen=True)
class _Fact:
    """Per residue ``r`` of the period ``p = len(lo)``: pieces ``((t0, t1, a, b), …)`` covering ``1 … T``, the
    bound ``a + b·t`` on the steps ``t0 ≤ t ≤ t1`` with ``t ≡ r (mod p)``.  The value lies in ``[lo, hi]``."""
    lo: tuple
    hi: tuple

    @property
    def period(self) -> int:
        return len(self.lo)


def _lcm(periods) -> int | None:
    """The common period of ``periods``, or None past :data:`_MAX_PERIOD`."""
    period = math.lcm(*periods)
    return period if period <= _MAX_PERIOD else None


def _lift(pieces: tuple, p: int) -> tuple:
    """Per-residue ``pieces`` per residue of ``p``, a multiple of their period."""
    q = len(pieces)
    return pieces if q == p else tuple(pieces[r % q] for r in range(p))


def _constant(value: Fraction, steps: int) -> tuple:
    return (((1, steps, value, _ZERO),),)


def _between(low, high, steps: int) -> _Fact | None:
    """The constant bounds ``[low, high]`` (floats), or None where one is infinite."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return _Fact(_constant(Fraction(low), steps), _constant(Fraction(high), steps))


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


def _merged(pieces: list) -> tuple:
    """Consecutive pieces of one affine function joined."""
    out = []
    for t0, t1, a, b in pieces:
        if out and out[-1][2] == a and out[-1][3] == b:
            out[-1] = (out[-1][0], t1, a, b)
        else:
            out.append((t0, t1, a, b))
    return tuple(out)


def _combine_residue(terms: list, bias: Fraction, steps: int) -> tuple:
    """``Σ w·pieces + bias`` on one residue, as pieces."""
    terms = [(w, pieces) for w, pieces in terms if len(pieces) > 1 or pieces[0][2] or pieces[0][3]]  # not 0
    if not terms:
        return ((1, steps, bias, _ZERO),)
    out = []
    for t0, t1 in _breaks(*[p for _, p in terms]):
        a, b = bias, _ZERO
        for w, pieces in terms:
            pa, pb = _at(pieces, t0)
            if pa:
                a += w * pa
            if pb:
                b += w * pb
        out.append((t0, t1, a, b))
    return _merged(out)


def _combine(terms: list, bias: Fraction, steps: int) -> tuple | None:
    """``Σ w·pieces + bias`` per residue of the terms' common period (None: it is too long); residues whose
    terms are the same objects (:func:`_fact` shares equal residues) are summed once."""
    p = _lcm([len(pieces) for _, pieces in terms] or [1])
    if p is None:
        return None
    sums: dict[tuple, tuple] = {}
    out = []
    for r in range(p):
        residue = [(w, pieces[r % len(pieces)]) for w, pieces in terms]
        key = tuple(id(pieces) for _, pieces in residue)
        if key not in sums:
            sums[key] = _combine_residue(residue, bias, steps)
        out.append(sums[key])
    return tuple(out)


def _positive_steps(pieces: tuple) -> list:
    """The ``(t0, t1)`` intervals where the value is positive, on one residue."""
    out = []
    for t0, t1, a, b in pieces:
        if b == 0:
            lo, hi = (t0, t1) if a > 0 else (1, 0)
        elif b > 0:  # a + b t > 0  ⟺  t > −a/b
            lo, hi = max(t0, math.floor(-a / b) + 1), t1
        else:  # t < −a/b
            lo, hi = t0, min(t1, math.ceil(-a / b) - 1)
        if lo <= hi:
            out.append((lo, hi))
    return out


def _relu_residue(pieces: tuple) -> tuple:
    out = []
    for t0, t1, a, b in pieces:
        positive = _positive_steps(((t0, t1, a, b),))  # one interval at most: the value is affine
        lo, hi = positive[0] if positive else (t1 + 1, t1)
        if lo > t0:
            out.append((t0, lo - 1, _ZERO, _ZERO))
        if lo <= hi:
            out.append((lo, hi, a, b))
        if positive and hi < t1:
            out.append((hi + 1, t1, _ZERO, _ZERO))
    return _merged(out)


def _relu(pieces: tuple) -> tuple:
    return tuple(_relu_residue(res) for res in pieces)


def _ends(pieces: tuple) -> list:
    """The values of ``pieces`` at their pieces' ends (where an affine piece has its least and largest)."""
    return [a if b == 0 else a + b * t for res in pieces for t0, t1, a, b in res for t in (t0, t1)]


def _shifted(pieces: tuple, sign: int, shift: Fraction) -> tuple:
    """``sign·pieces + shift``."""
    return tuple(tuple((t0, t1, sign * a + shift, sign * b) for t0, t1, a, b in res) for res in pieces)


def _at_least(pieces: tuple, low: float) -> tuple:
    """``max(pieces, low)``: ``low + ReLU(pieces − low)``."""
    if not math.isfinite(low):
        return pieces
    low = Fraction(low)
    if min(_ends(pieces)) >= low:
        return pieces
    return _shifted(_relu(_shifted(pieces, 1, -low)), 1, low)


def _at_most(pieces: tuple, high: float) -> tuple:
    """``min(pieces, high)``: ``high − ReLU(high − pieces)``."""
    if not math.isfinite(high):
        return pieces
    high = Fraction(high)
    if max(_ends(pieces)) <= high:
        return pieces
    return _shifted(_relu(_shifted(pieces, -1, high)), -1, high)


def _nonzero_steps(fact: _Fact) -> list:
    """Per residue, the ``(t0, t1)`` intervals on which the value may be non-zero."""
    out = []
    for lo, hi in zip(fact.lo, fact.hi):
        out.append([(t0, t1) for t0, t1 in _breaks(lo, hi) if _at(lo, t0) != (0, 0) or _at(hi, t0) != (0, 0)])
    return out


def _first_step(t0: int, r: int, p: int) -> int:
    """The first step ``t ≥ t0`` with ``t ≡ r (mod p)``."""
    return t0 + (r - t0) % p


def _count(t0: int, t1: int, r: int, p: int) -> int:
    """How many steps ``t0 ≤ t ≤ t1`` have ``t ≡ r (mod p)``."""
    first = _first_step(t0, r, p)
    return 0 if first > t1 else (t1 - first) // p + 1


def _fact(lo: tuple, hi: tuple, steps: int) -> _Fact:
    """The bounds (one residue where all residues agree); past :data:`_MAX_PIECES` pieces on a residue, its least
    and largest bound between the first and the last step at which it may be non-zero."""
    if len(lo) > 1:
        if all(a == lo[0] for a in lo) and all(b == hi[0] for b in hi):
            lo, hi = lo[:1], hi[:1]
        else:
            lo, hi = _shared(lo), _shared(hi)
    fact = _Fact(lo, hi)
    if max(len(res) for res in lo + hi) <= _MAX_PIECES:
        return fact
    p = fact.period
    coarse_lo, coarse_hi = [], []
    for r, (res_lo, res_hi, spans) in enumerate(zip(lo, hi, _nonzero_steps(fact))):
        steps_r = [(_first_step(t0, r, p), t1) for t0, t1 in spans if _count(t0, t1, r, p)]
        if not steps_r:
            coarse_lo.append(_constant(_ZERO, steps)[0])
            coarse_hi.append(_constant(_ZERO, steps)[0])
            continue
        first, last = steps_r[0][0], steps_r[-1][1]
        least, most = min(_ends((res_lo,)) + [_ZERO]), max(_ends((res_hi,)) + [_ZERO])
        for bound, out in ((least, coarse_lo), (most, coarse_hi)):
            out.append(_merged([(1, first - 1, _ZERO, _ZERO)] * (first > 1) + [(first, last, bound, _ZERO)]
                               + [(last + 1, steps, _ZERO, _ZERO)] * (last < steps)))
    return _Fact(tuple(coarse_lo), tuple(coarse_hi))


def _shared(pieces: tuple) -> tuple:
    """``pieces`` with equal residues the same object."""
    seen: dict[tuple, tuple] = {}
    return tuple(seen.setdefault(res, res) for res in pieces)


class TimeWindows:
    """Per op of a module analysed by ``ranges`` (a :class:`~lsrl.passes.range_analysis.RangeAnalysis` with a
    ``t_max``): what is known of each coordinate over the steps ``1 … t_max`` (None: only its range)."""

    def __init__(self, ranges, t_max: int):
        self.ranges = ranges
        self.steps = int(t_max)
        self._facts: dict[int, list] = {}
        self._pinned: dict[int, Op] = {}

    def active_steps(self, op: Op) -> list:
        """Per coordinate of the ``linstate`` ``op``: how many steps its drive ``B x + bias`` may be non-zero."""
        counts = []
        for fact in self._drive(op):
            if fact is None:
                counts.append(self.steps)
                continue
            p = fact.period
            counts.append(sum(_count(t0, t1, r, p) for r, spans in enumerate(_nonzero_steps(fact))
                              for t0, t1 in spans))
        return counts

    def bounds_at(self, op: Op, t: int) -> tuple[list, list]:
        """The bounds of each coordinate of ``op`` at step ``t`` (exact rationals; ``±inf`` for a value the analysis
        does not follow whose range is unbounded)."""
        low, high = [], []
        for fact in self.facts(op):
            if fact is None:
                low.append(-math.inf)
                high.append(math.inf)
                continue
            for pieces, out in ((fact.lo, low), (fact.hi, high)):
                a, b = _at(pieces[t % fact.period], t)
                out.append(a + b * t)
        return low, high

    def facts(self, op: Op) -> list:
        """Per coordinate of ``op``: its :class:`_Fact`, or None where only its (unbounded) range is known."""
        if id(op) not in self._facts:
            fill_in_order(op, self._facts, self._transfer, self._pinned)
        return self._facts[id(op)]

    def _transfer(self, op: Op) -> list:
        kind = op.kind
        if kind == "linear":
            return self._rows(op.attrs["A"], op.attrs["b"], op.operands[0], self.ranges(op))
        if kind == "relu":  # an operand whose range is unbounded below may have a bounded ReLU
            lo, hi = self.ranges(op)
            return [_between(float(a), float(b), self.steps) if f is None
                    else _fact(_relu(f.lo), _relu(f.hi), self.steps)
                    for f, a, b in zip(self.facts(op.operands[0]), lo, hi)]
        if kind == "concat":
            return [f for o in op.operands for f in self.facts(o)]
        if kind == "slice":
            return self.facts(op.operands[0])[op.attrs["start"]:op.attrs["end"]]
        if kind == "multi":
            factors = self._bounded(op.operands[0])
            lo, hi = self.ranges(op)
            return [self._product(a, b, float(lo[j]), float(hi[j]))
                    for j, (a, b) in enumerate(zip(factors[:op.dim], factors[op.dim:]))]
        if kind == "linstate":
            return self._states(op)
        if kind == "input":  # its bounds, whatever the step
            lo, hi = self.ranges(op)
            return [_between(float(a), float(b), self.steps) for a, b in zip(lo, hi)]
        return [None] * op.dim

    def _bounded(self, op: Op) -> list:
        """:meth:`facts` of ``op``, a value it does not follow bounded by its range (None where that is unbounded)."""
        lo, hi = self.ranges(op)
        return [f if f is not None else _between(float(low), float(high), self.steps)
                for f, low, high in zip(self.facts(op), lo, hi)]

    def _drive(self, op: Op) -> list:
        return self._rows(op.attrs["B"], op.attrs["bias"], op.operands[0], self.ranges.drive(op))

    def _product(self, a: _Fact | None, b: _Fact | None, low: float, high: float) -> _Fact | None:
        """Bounds of ``a·b``: a known constant factor times the other's bounds, the corners of two constant
        bounds, 0 where a factor is 0, else the product's range ``[low, high]``."""
        if a is None or b is None:
            return _between(low, high, self.steps)
        p = _lcm([a.period, b.period])
        if p is None:
            return _between(low, high, self.steps)
        out_lo, out_hi = [], []
        for al, ah, bl, bh in zip(*(_lift(x, p) for x in (a.lo, a.hi, b.lo, b.hi))):
            res_lo, res_hi = [], []
            for t0, t1 in _breaks(al, ah, bl, bh):
                (al_a, al_b), (ah_a, ah_b), (bl_a, bl_b), (bh_a, bh_b) = (_at(x, t0) for x in (al, ah, bl, bh))
                if (al_a, al_b) == (ah_a, ah_b) == (0, 0) or (bl_a, bl_b) == (bh_a, bh_b) == (0, 0):
                    ends = ((_ZERO, _ZERO), (_ZERO, _ZERO))
                elif al_b == ah_b == bl_b == bh_b == 0:  # constant bounds: their corners
                    corners = [x * y for x in (al_a, ah_a) for y in (bl_a, bh_a)]
                    ends = ((min(corners), _ZERO), (max(corners), _ZERO))
                elif (al_a, al_b) == (ah_a, ah_b) and al_b == 0:  # a known constant c times b's bounds
                    ends = _scaled(al_a, (bl_a, bl_b), (bh_a, bh_b))
                elif (bl_a, bl_b) == (bh_a, bh_b) and bl_b == 0:
                    ends = _scaled(bl_a, (al_a, al_b), (ah_a, ah_b))
                elif math.isfinite(low) and math.isfinite(high):
                    ends = ((Fraction(low), _ZERO), (Fraction(high), _ZERO))
                else:
                    return None
                res_lo.append((t0, t1, *ends[0]))
                res_hi.append((t0, t1, *ends[1]))
            out_lo.append(_merged(res_lo))
            out_hi.append(_merged(res_hi))
        return _fact(tuple(out_lo), tuple(out_hi), self.steps)

    def _states(self, op: Op) -> list:
        drive = self._drive(op)
        a_rows = [self.ranges.exact_row(op.attrs["A"], i) for i in range(op.dim)]
        init = [self.ranges.exact_entry(op.attrs["init"], i) for i in range(op.dim)]
        lo, hi = self.ranges(op)
        followed = self._trajectories(a_rows, drive, init)
        out = []
        for i, (row, fact) in enumerate(zip(a_rows, drive)):
            if not row:  # s_t = the drive
                out.append(fact)
            elif row == {i: 1} and (step := _known_constant(fact)) is not None:  # s_t = s_0 + d·t
                counter = (((1, self.steps, init[i], step),),)
                out.append(_Fact(counter, counter))
            elif (orbit := _orbit(i, a_rows, drive)) is not None:  # s_t = s_0[π^t(i)], constant on each residue
                pieces = tuple(((1, self.steps, init[j], _ZERO),) for j in orbit)
                out.append(_Fact(pieces, pieces))
            elif i in followed:
                out.append(followed[i])
            elif row == {i: 1} and init[i] == 0 and fact is not None:  # a register: 0 until its drive may not be
                out.append(self._register(fact, float(lo[i]), float(hi[i])))
            else:
                out.append(_between(float(lo[i]), float(hi[i]), self.steps))
        return out

    def _trajectories(self, a_rows: list, drive: list, init: list) -> dict:
        """Per state coordinate that follows one trajectory whatever the input (its drive a known constant, its
        row of ``A`` reading only such coordinates) and comes back near its values with a period of at most
        :data:`_MAX_PERIOD` steps — a rotation counter's ``cos((t − 1)θ)``, which exact arithmetic does not
        repeat exactly: its bounds on each residue, the least and largest value of a float64 run there widened by
        the run's drift from the exact one.  Only where ``A``, the drive and the start are float64 values."""
        constant = [_known_constant(f) for f in drive]
        fixed = [c is not None for c in constant]
        changed = True
        while changed:  # a coordinate reading one that does not follow the trajectory does not either
            changed = False
            for i, row in enumerate(a_rows):
                if fixed[i] and not all(fixed[j] for j in row):
                    fixed[i], changed = False, True
        # counters and permutations have exact facts; what the others read is run with them
        wanted = [i for i, f in enumerate(fixed) if f and a_rows[i] and a_rows[i] != {i: 1}
                  and _orbit(i, a_rows, drive) is None]
        closure, stack = set(), list(wanted)
        while stack:
            i = stack.pop()
            if i not in closure:
                closure.add(i)
                stack.extend(a_rows[i])
        closure = sorted(closure)
        exact = all(Fraction(float(q)) == q for i in closure
                    for q in [constant[i], init[i], *a_rows[i].values()])
        if not wanted or not exact or self.steps > _MAX_RUN_STEPS or self.steps * len(closure) ** 2 > _MAX_RUN_COST:
            return {}
        where = {i: n for n, i in enumerate(closure)}
        block = np.zeros((len(closure), len(closure)))
        for i in closure:
            for j, q in a_rows[i].items():
                block[where[i], where[j]] = float(q)
        start = np.array([float(init[i]) for i in closure])
        shift = np.array([float(constant[i]) for i in closure])
        states, drift = float64_run(block, shift, start, self.steps)
        if not (math.isfinite(drift) and np.all(np.isfinite(states))):
            return {}
        drift = Fraction(drift)
        out = {}
        for i in wanted:
            bounds = _residue_bounds(states[:, where[i]], drift)
            if bounds is not None:
                out[i] = _fact(*bounds, self.steps)
        return out

    def _register(self, drive: _Fact, low: float, high: float) -> _Fact | None:
        p = drive.period
        firsts = [_first_step(t0, r, p) for r, spans in enumerate(_nonzero_steps(drive))
                  for t0, t1 in spans if _count(t0, t1, r, p)]
        if not firsts:
            return _Fact(_constant(_ZERO, self.steps), _constant(_ZERO, self.steps))
        if not (math.isfinite(low) and math.isfinite(high)):
            return None
        first = min(firsts)
        before = [(1, first - 1, _ZERO, _ZERO)] if first > 1 else []
        return _Fact(((*before, (first, self.steps, Fraction(low), _ZERO)),),
                     ((*before, (first, self.steps, Fraction(high), _ZERO)),))

    def _rows(self, a, b, x: Op, bounds: tuple) -> list:
        """Bounds of each row ``a·x + b``: its terms' bounds summed, met with the row's range ``bounds`` (only that
        range where a term is unbounded, or the row's residue sums pass :data:`_MAX_ROW_SUMS`)."""
        facts = self._bounded(x)
        out = []
        for r in range(a.shape[0]):
            low_end, high_end = float(bounds[0][r]), float(bounds[1][r])
            row = self.ranges.exact_row(a, r)
            terms = [(w, facts[c]) for c, w in row.items()]
            if any(f is None for _, f in terms) or \
                    len(terms) * (_lcm([f.period for _, f in terms]) or _MAX_ROW_SUMS) >= _MAX_ROW_SUMS:
                out.append(_between(low_end, high_end, self.steps))
                continue
            bias = self.ranges.exact_entry(b, r) if b is not None else _ZERO
            # the lcm is within _MAX_PERIOD, so both sums exist
            low = _combine([(w, f.lo if w > 0 else f.hi) for w, f in terms], bias, self.steps)
            high = _combine([(w, f.hi if w > 0 else f.lo) for w, f in terms], bias, self.steps)
            out.append(_fact(_at_least(low, low_end), _at_most(high, high_end), self.steps))
        return out


def _residue_bounds(run: np.ndarray, drift: Fraction) -> tuple | None:
    """Constant bounds per residue of the shortest period ``p ≤ _MAX_PERIOD`` on which the float64 ``run`` (steps
    ``1 … T``) nearly repeats — each residue's values within ``2^-20`` of the run's largest magnitude — widened by
    ``drift``; None where no period does."""
    steps = run.size
    spread_allowed = 2.0 ** -20 * float(np.max(np.abs(run), initial=0.0))
    for p in range(1, min(_MAX_PERIOD, steps) + 1):
        if np.max(np.abs(run[p:] - run[:-p]), initial=0.0) > spread_allowed:
            continue  # not even step to step
        padded = np.full(-(-steps // p) * p, np.nan)
        padded[:steps] = run
        # column c holds the steps t = c + 1 + k·p, residue (c + 1) mod p
        low, high = np.nanmin(padded.reshape(-1, p), axis=0), np.nanmax(padded.reshape(-1, p), axis=0)
        if np.max(high - low) <= spread_allowed:
            columns = [(r - 1) % p for r in range(p)]
            return (tuple(_constant(Fraction(float(low[c])) - drift, steps)[0] for c in columns),
                    tuple(_constant(Fraction(float(high[c])) + drift, steps)[0] for c in columns))
    return None


def _known_constant(fact: _Fact | None) -> Fraction | None:
    """The value of a fact that is one known constant at every step, else None."""
    if fact is None or fact.lo != fact.hi or len(fact.lo) != 1 or len(fact.lo[0]) != 1 or fact.lo[0][0][3] != 0:
        return None
    return fact.lo[0][0][2]


def _scaled(c: Fraction, low: tuple, high: tuple) -> tuple:
    """``c·[low, high]`` for affine bounds ``(a, b)``."""
    low, high = (c * low[0], c * low[1]), (c * high[0], c * high[1])
    return (low, high) if c >= 0 else (high, low)


def _orbit(i: int, a_rows: list, drive: list) -> list | None:
    """``i, π(i), π²(i), …`` where the state only permutes these coordinates (each row of ``A`` a single 1, a
    drive that is 0) and comes back to ``i``; else None."""
    orbit = [i]
    while True:
        row, fact = a_rows[orbit[-1]], drive[orbit[-1]]
        if len(row) != 1 or next(iter(row.values())) != 1 or _known_constant(fact) != 0:
            return None
        (j,) = row
        if j == i:
            return orbit
        if j in orbit or len(orbit) >= _MAX_PERIOD:
            return None
        orbit.append(j)
