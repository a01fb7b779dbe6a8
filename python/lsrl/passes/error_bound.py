"""A-priori error bounds: how far each value of a layer-form module, computed in float32 or float64, can be
from its exact value — for every input inside the declared bounds and every sequence up to ``t_max``
(docs/numerics.md, "Error bounds").

What is known of every coordinate of every op (:class:`_Values`):

* its candidate *exact* values where they can be listed — a sorted set of at most :data:`MAX_POINTS`, every
  exact value within the ``slack`` of one (per candidate: where this analysis's float64 arithmetic was exact
  there is none, so an inactive ReLU's 0 or a saturated step's sum of constants stays exact) — with the error
  of the computed value at each; else a lattice
  ``o + g·Z`` holding them, or nothing but the range ``[lo, hi]`` of
  :class:`~lsrl.passes.range_analysis.RangeAnalysis`.  Values start at inputs declared ``integer`` and flow
  through affine rows (sums over the values of the coordinates a row reads), ReLUs, products, recurrences
  whose states stay on a grid (counters, shift registers) and recurrences that follow one trajectory whatever
  the input (rotation counters: one float64 run of it);
* ``err``: the largest error, a bound on |computed − exact|.

Why values: a step ``ReLU(μy + 1) − ReLU(μy)`` is exact 0 or 1 wherever ``y`` keeps a margin from its ramp,
whatever small error ``y`` carries — both ReLUs are on the same side of their breakpoints in the exact and in
the computed run, and the error ``μ·ε_y`` they pass on cancels in the difference.  Interval bounds cannot see
this (every ramp of a useful step lies inside its input's range), so a bound built on them multiplies the error
by μ at every step and says nothing.  The ReLU units whose pre-activations are rows proportional to one
direction ``y = d·x`` (``k_i y + b_i``, and the units that carry or shift such a unit one layer on) are
therefore analysed together, at each candidate value of ``y``:
units proven active pass ``k_i ε_y + δ_i`` (``δ_i`` the rounding of their own row), units proven inactive pass
nothing, the others at most their full error.  A row reading them gets ``|Σ_active c_i k_i|·E_y +
Σ_active |c_i| δ_i + Σ_undecided |c_i| ê_i``, maximised over the candidates.

Rounding model (``u`` the unit roundoff of the dtype): a weight is stored as ``fl(w)``; a dot product of ``n``
terms is off by at most ``γ_n·Σ|terms|`` (``γ_n = n u / (1 − n u)``, any summation order, with or without FMA),
counted :data:`ROUNDING_HOPS` times because a target may compute a layer-form op through one more rounded
operation of the same magnitude (a cell's gate product, a carried value); a sum is exact when all of its terms
are multiples of ``2^g`` and their magnitudes sum below ``2^(g + p)`` (``p`` = 24 or 53 bits).  A recurrence's
error ``E_t = Â E_{t−1} + c_t`` is bounded block by block (strongly connected blocks of ``A``): a scalar by its
closed form, larger blocks by ``‖Â‖₂`` (by ``‖Â‖∞`` beyond range analysis' largest norm block).

Exact (rational) constants that float64 cannot hold are read as float64 like every executor reads them; the
distance moves the exact value of what they compute (``_rational_shift``: slack and error alike).

Ideal activations compute the layer form's ops, so their bound is rounding only. A target whose construction adds errors
of its own states them in the module's metadata ``local_errors`` (``{op position: {"on", "on_u", "off", "off_u",
"partial_gain", "hidden", "units", "hidden_step", "terms_total", "selector", "margin", "exact_from", "exact_from_u",
"closed_below", "closed_below_u", "underflow", "normal_from"}}``, one entry per coordinate, ``u`` the dtype's unit
roundoff): ``on + u·on_u`` is added where a unit is proven on (every coordinate of a state or a product) — except where
a ReLU unit's computed pre-activation is proven at least ``exact_from + u·exact_from_u`` (its gate saturated: the unit
is exact there) —, ``off + u·off_u`` where a ReLU unit is proven off — except where its computed pre-activation is
proven at most ``closed_below − u·closed_below_u`` (where ``gate_terms`` is given, at each value of the unit's argument
the analysis knows, ``u·(gate_fixed_u + gate_terms·r)`` in place of either ``u`` part where smaller, ``r`` what the
row's terms reach at that value: a gate row's partial sums round at what they sum there, and a λ-row's 10¹⁰ term is 0
where its condition is) —, the larger of the two where it is neither, and in every case at
most ``partial_gain`` times the computed pre-activation's magnitude (a gate partly open passes part of a value: an exact
0 adds nothing); ``underflow`` (stated for float32, scaled for float64) wherever the value a unit carries may be a
nonzero below ``normal_from`` (float32's subnormals), and whatever reads the op rounds over ``units`` terms of decoded
magnitude ``hidden`` beyond the value (the standard LSTM, GRU, Hawk and Griffin; docs/numerics.md, "Error bounds") —
nothing where those terms are multiples of ``hidden_step`` times what the unit carries and the reader's sum fits the
dtype: a select's (its candidates' gaps times the other factor, exact), a ReLU's (its own earlier values, held by a GRU
pair; where it is exact and its gates saturate at every value); the value and those terms together reach at most
``terms_total`` (each off by the value's error; inf: their sum) — a GRU pair's value is the difference of its two
halves, which reach twice the unit's bound, not three times. A ReLU that reads such a unit is analysed as a ReLU of the
unit's argument (a group carried on): a unit proven off must not pass a positive value — σ·tanh, a GRU pair, GELU and
SiLU pass at most a part of a non-positive argument. A product coordinate whose ``selector`` is 1 or 2 is a *select*:
its units multiply the other factor by each candidate value of that factor, and gates that saturate pick the candidate
wherever the computed factor lies within ``margin`` of it — so the factor's error drops out of the product where its
error and slack stay within the margin, and the bound is ``inf`` where they may not. A target whose executors read every
value it keeps (the input, ReLU, state and product results) in two parts, ``hi = fl_n(v)`` and ``fl_n(v − hi)`` of a
narrower dtype ``n``, states ``n`` as the metadata ``split_reads`` (Hawk, Griffin and Mamba: transformers computes parts
of a float64 model in float32): each read is then off by ``≤ u_n²·|v|``, and exact where ``v`` is computed exactly and
``n`` holds it; ``read_step`` (metadata, with it) is the smallest step such a read resolves in any dtype (a neutralised
RMSNorm scales by ``2^-50`` in ``n`` before scaling back, so its subnormals are ``2^50`` times coarser), and
``stream_norms`` (``{"eps", "squares", "width"}``) the neutralised norms every read passes, which drift from the
identity once the stream's ``mean(x²)`` is no longer small beside ``eps`` (:func:`_norm_drift`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import sys
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..assumptions import validate_t_max
from ..errors import OptionError
from ..ir.core import Module, Op
from ..ir.error_free import lowest_bit, product_exact, sum_exact
from ..ir.matrix import Matrix, Vector, is_exact_float
from . import Pass, register_pass
from .range_analysis import (_MAX_NORM_BLOCK, _NORM_MARGIN, RangeAnalysis, _block_order,
                             _spectral_norm_bound, float64_run)

__all__ = ["ErrorAnalysis", "ErrorBoundPass", "UNIT_ROUNDOFF", "MAX_POINTS", "ROUNDING_HOPS", "output_error_bounds",
           "local_error_entry", "zero_safe_product"]

#: the unit roundoff of each dtype models run in
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}
#: the most candidate values kept per coordinate (more: the coordinate is only known by its range)
MAX_POINTS = 2048
# the most values of a part of a sum that split the sum's lattice into intervals (_Values.spans)
_SPAN_POINTS = 64
# the ratio of |k y| between the ends of a piece a group's range is cut into around a breakpoint (_Group._candidates)
_PIECE_RATIO = 2.0 ** 8
#: rounded dot products a target may spend on one layer-form op (see the module docstring)
ROUNDING_HOPS = 2
# the analysis enumerates points in float64: its own rounding, relative to the magnitudes summed — 8 ulps, for the
# few float64 operations (a product and sums) behind each enumerated value
_ANALYSIS_U = 2.0 ** -50
# the bits of a row's weight ratios that decide whether ReLU units read one direction (a group)
_DIRECTION_BITS = 40
#: the longest constant-drive trajectory simulated for candidate states
_MAX_TRAJECTORY = 1 << 17


def _gamma(n: int, u: float) -> float:
    return n * u / (1.0 - n * u) if n * u < 0.5 else math.inf


def _magnitude(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lo), np.abs(hi))


def _low_bit(values: np.ndarray) -> int:
    """The exponent of the lowest set bit over ``values`` (large when all are 0)."""
    return int(np.min(lowest_bit(np.asarray(values, dtype=np.float64)), initial=1 << 20))


def zero_safe_product(a, b):
    """``a·b`` with ``0·inf = 0`` (a quantity that does not move carries none of an unbounded error)."""
    with np.errstate(invalid="ignore"):
        return np.where((np.asarray(a) == 0) | (np.asarray(b) == 0), 0.0, np.multiply(a, b))


def _analysis_rounding(exact: bool, magnitude: float) -> float:
    """The slack the analysis's own float64 arithmetic adds: none where it was exact."""
    return 0.0 if exact else _ANALYSIS_U * magnitude


def _float_gcd(values: np.ndarray) -> float | None:
    """The largest ``g`` whose integer multiples include every value (floats are dyadic rationals), or None
    when that needs more than 62 bits."""
    values = np.abs(values[values != 0])
    if values.size == 0:
        return 0.0
    e = _low_bit(values)
    ints = values / math.ldexp(1.0, e)  # exact: a power of two
    if float(np.max(ints)) >= 2.0 ** 62:
        return None
    return float(np.gcd.reduce(ints.astype(np.int64))) * math.ldexp(1.0, e)


def _grid_union(grids: list[tuple[float, float]]) -> tuple[float, float] | None:
    """One lattice ``o + g·Z`` holding every lattice of ``grids`` (``g = 0``: a single value), or None."""
    offsets = np.array([o for o, _ in grids])
    shifts = offsets - offsets[0]
    if not np.all(sum_exact(shifts, np.full(shifts.shape, offsets[0]), offsets)):
        return None
    step = _float_gcd(np.concatenate([np.array([g for _, g in grids]), shifts]))
    return None if step is None else (float(offsets[0]), step)


@dataclasses.dataclass
class _Values:
    """What is known of one quantity, every exact value within ``slack`` of a candidate: the candidates
    themselves (``points``, sorted, with the error of the computed value and the slack at each: ``errors``,
    ``slacks``), or a lattice ``grid`` = ``(offset, step)`` holding them, or neither; ``err`` is the largest error,
    ``slack`` the largest slack and ``size`` bounds |value|."""
    points: np.ndarray | None
    errors: np.ndarray | None
    slack: float
    err: float
    grid: tuple[float, float] | None = None
    size: float = math.inf
    # for a sum being formed, per point: Σ|terms| and the lowest set bit over the terms (its rounding)
    mags: np.ndarray | None = None
    grains: np.ndarray | None = None
    # per point: how far the exact values it stands for may be (an exact 0 of an inactive ReLU has none, whatever
    # the slack of the other candidates)
    slacks: np.ndarray | None = None
    # a sum being formed (_form) known by its lattice: intervals ``(m, 2)`` holding all of its values (None: its
    # range) — ``q − 10¹⁰ u`` of a counter and a 0/1 condition lies near q or near q − 10¹⁰, never between
    spans: np.ndarray | None = None

    def __post_init__(self):
        if self.points is not None:
            self.slacks = np.broadcast_to(np.asarray(self.slack if self.slacks is None else self.slacks,
                                                     dtype=np.float64), self.points.shape)
            self.slack = float(np.max(self.slacks, initial=0.0))

    @staticmethod
    def unknown(err: float, grid: tuple[float, float] | None = None, slack: float = math.inf,
                size: float = math.inf) -> "_Values":
        return _Values(None, None, slack if grid is not None else math.inf, err, grid, size)

    @staticmethod
    def of(points: np.ndarray, errors: np.ndarray, slack, mags: np.ndarray | None = None,
           grains: np.ndarray | None = None) -> "_Values":
        """Deduplicated (the largest error, slack, magnitude and the lowest bit of equal values); only their
        lattice past :data:`MAX_POINTS`.  ``slack``: one for every point, or one per point."""
        largest = float(np.max(errors, initial=0.0))
        unique, inverse = np.unique(points, return_inverse=True)
        inverse = inverse.ravel()
        slacks = np.broadcast_to(np.asarray(slack, dtype=np.float64), points.shape).ravel()
        most_slack = float(np.max(slacks, initial=0.0))
        size = float(np.max(np.abs(unique), initial=0.0)) + most_slack
        if unique.size > MAX_POINTS:
            return _Values.unknown(largest, _grid_of(unique), most_slack, size)
        worst = np.zeros(unique.size)
        np.maximum.at(worst, inverse, errors.ravel())
        loosest = np.zeros(unique.size)
        np.maximum.at(loosest, inverse, slacks)
        if mags is not None:
            most = np.zeros(unique.size)
            np.maximum.at(most, inverse, mags.ravel())
            low = np.full(unique.size, 1 << 20, dtype=np.int64)
            np.minimum.at(low, inverse, grains.ravel())
            mags, grains = most, low
        return _Values(unique, worst, most_slack, largest, None, size, mags, grains, loosest)

    def as_term(self) -> "_Values":
        """These values as one term of a sum: its magnitude and lowest bit at each point."""
        if self.points is None:
            return self
        return dataclasses.replace(self, mags=np.abs(self.points), grains=lowest_bit(self.points))

    @property
    def lattice(self) -> tuple[float, float] | None:
        return self.grid if self.points is None else _grid_of(self.points)

    def scaled(self, w: float) -> "_Values":
        if self.points is None:
            if self.grid is None:
                return _Values.unknown(abs(w) * self.err)
            (o, g), size = self.grid, self.size * abs(w)
            shift, step = o * w, g * abs(w)
            exact = bool(np.all(product_exact(np.array([o, g]), np.array([w, abs(w)]), np.array([shift, step]))))
            rounding = _analysis_rounding(exact, 2 * (abs(shift) + size))
            return _Values.unknown(abs(w) * self.err, (shift, step), abs(w) * self.slack + rounding, size)
        product = self.points * w
        rounding = np.where(product_exact(self.points, np.full(self.points.shape, w), product), 0.0,
                            _ANALYSIS_U * np.abs(product))
        return _Values.of(product, self.errors * abs(w), abs(w) * self.slacks + rounding)

    @property
    def exact(self) -> bool:
        """Known values computed without error."""
        return self.points is not None and self.slack == 0.0 and self.err == 0.0

    @property
    def exact_grain(self) -> int | None:
        """The lowest set bit of every value, where the values are computed without error and known by their
        candidates or their lattice (None otherwise)."""
        if self.exact:
            return _low_bit(self.points)
        if self.points is None and self.grid is not None and self.slack == 0.0 and self.err == 0.0:
            return _low_bit(np.array(self.grid))
        return None


def _grid_of(points: np.ndarray) -> tuple[float, float] | None:
    """The finest lattice ``offset + step·Z`` holding ``points``."""
    shifts = points - points[0]
    if not np.all(sum_exact(shifts, np.full(shifts.shape, points[0]), points)):
        return None
    step = _float_gcd(shifts)
    return None if step is None else (float(points[0]), step)


def _sum(parts: list[_Values]) -> _Values:
    """The candidate values of a sum of independent parts (or their lattice), and their errors."""
    err = sum(p.err for p in parts)
    if any(p.points is None and p.grid is None for p in parts):
        return _Values.unknown(err)
    # a part that is an exact 0 adds nothing, unless it is formed from terms that do not (10¹⁰·u − 10¹⁰·u)
    parts = [p for p in parts if p.points is None or p.points.size != 1 or p.points[0] != 0.0
             or p.errors[0] != 0.0 or p.slack != 0.0 or (p.mags is not None and p.mags[0] != 0.0)]
    enumerable = all(p.points is not None for p in parts) and \
        math.prod(p.points.size for p in parts) <= 64 * MAX_POINTS
    if not enumerable:
        return _lattice_sum(parts, err)
    points, errors, mags, slacks = np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1)
    grains = np.full(1, 1 << 20, dtype=np.int64)
    for part in parts:
        part = part if part.mags is not None else part.as_term()
        a, b = np.broadcast_arrays(points[:, None], part.points[None, :])
        total = a + b
        sums = mags[:, None] + part.mags[None, :]
        # a partial sum rounds by at most an ulp of Σ|terms|
        rounding = np.where(sum_exact(a, b, total), 0.0, _ANALYSIS_U * sums)
        combined = _Values.of(total.ravel(), (errors[:, None] + part.errors[None, :]).ravel(),
                              (slacks[:, None] + part.slacks[None, :] + rounding).ravel(), sums.ravel(),
                              np.minimum(grains[:, None], part.grains[None, :]).ravel())
        if combined.points is None:
            return _lattice_sum(parts, err)
        points, errors, mags, grains, slacks = (combined.points, combined.errors, combined.mags, combined.grains,
                                                combined.slacks)
    return _Values(points, errors, 0.0, float(np.max(errors, initial=0.0)), None,
                   float(np.max(np.abs(points) + slacks, initial=0.0)), mags, grains, slacks)


def _lattice_sum(parts: list[_Values], err: float) -> _Values:
    grids = [p.lattice for p in parts]
    if any(g is None for g in grids) or not grids:
        return _Values.unknown(err)
    offsets = np.array([o for o, _ in grids])
    offset = float(np.sum(offsets))
    exact = sum(map(Fraction, offsets.tolist()), Fraction(0)) == Fraction(offset)
    step = _float_gcd(np.array([g for _, g in grids]))
    if step is None:
        return _Values.unknown(err)
    size = sum(p.size for p in parts)
    slack = sum(p.slack for p in parts) + _analysis_rounding(exact, len(parts) * float(np.sum(np.abs(offsets))))
    out = _Values.unknown(err, (offset, step), slack, size)
    out.spans = _spans(parts, slack)
    return out


def _spans(parts: list[_Values], slack: float) -> np.ndarray | None:
    """Intervals holding a sum of independent parts: around each value of the part with a few values that lie
    furthest apart, the range of the others (None when they leave no gap)."""
    few = [p for p in parts if p.points is not None and 1 < p.points.size <= _SPAN_POINTS]
    if not few:
        return None
    apart = max(few, key=lambda p: float(p.points[-1] - p.points[0]))
    low = high = 0.0
    for p in parts:
        if p is apart:
            continue
        if p.points is not None:
            low, high = low + float(p.points[0]) - p.slack, high + float(p.points[-1]) + p.slack
        else:
            low, high = low - p.size, high + p.size
    width = high - low
    if not math.isfinite(width):
        return None
    # this float64 arithmetic may round each end by an ulp: widened outwards
    starts = apart.points + low - slack - 4 * _ANALYSIS_U * (np.abs(apart.points) + abs(low))
    ends = apart.points + high + slack + 4 * _ANALYSIS_U * (np.abs(apart.points) + abs(high))
    merged = [[float(starts[0]), float(ends[0])]]
    for a, b in zip(starts[1:].tolist(), ends[1:].tolist()):
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.array(merged) if len(merged) > 1 else None


@dataclasses.dataclass
class _Group:
    """ReLU units whose pre-activations are ``k_i·y + b_i`` of one scalar ``y = d·x`` of the linear's operand.
    ``residual_i`` bounds the part of unit ``i``'s exact row that is not ``k_i d`` (times ``x``),
    ``delta_i`` the error of its row beyond ``k_i ε_y`` (its rounding, and the residual times ``x``'s error)."""
    units: np.ndarray
    k: np.ndarray
    b: np.ndarray
    residual: np.ndarray
    delta: np.ndarray
    y: _Values
    y_lo: float
    y_hi: float
    # per unit: what its construction adds to its output where it may pass its value (on) and where it is proven
    # off — a target's local errors (module metadata "local_errors"); none for the layer form's own ReLU
    on: np.ndarray | None = None
    off: np.ndarray | None = None
    # per unit (or per value of y × unit, where y has values): the computed pre-activations from which, and up to
    # which, its construction adds nothing (saturated gates), and how many times the computed pre-activation's
    # magnitude it adds at most (inf: no such bound)
    exact_from: np.ndarray | None = None
    closed_below: np.ndarray | None = None
    partial_gain: np.ndarray | None = None
    # per unit, where y is known by pieces of its range: the rounding of its row on a piece from a bound on |k y|
    # there (None: delta alone)
    piece_rounding: list | None = None
    # y's value at each step state of the operand's clock (_Facts.clock), where y depends on the step only
    y_at: np.ndarray | None = None
    # per value of y × unit (y has values): what the terms of the unit's row reach there (None: unknown)
    terms_reach: np.ndarray | None = None
    # per unit: what reading its value from an executor's stream adds where it may pass its value and where it is
    # proven off (:meth:`ErrorAnalysis._read_in_parts`) — saturated gates or not
    read_on: np.ndarray | None = None
    read_off: np.ndarray | None = None

    def __post_init__(self):
        self.on = np.zeros(self.units.size) if self.on is None else self.on
        self.off = np.zeros(self.units.size) if self.off is None else self.off
        self.exact_from = np.full(self.units.size, math.inf) if self.exact_from is None else self.exact_from
        self.closed_below = np.full(self.units.size, -math.inf) if self.closed_below is None else self.closed_below
        self.partial_gain = np.full(self.units.size, math.inf) if self.partial_gain is None else self.partial_gain
        self.read_on = np.zeros(self.units.size) if self.read_on is None else self.read_on
        self.read_off = np.zeros(self.units.size) if self.read_off is None else self.read_off

    def passes(self, pos) -> np.ndarray:
        """What the construction and the reads of units ``pos`` add where they are not proven on or off: either."""
        return np.maximum(self.on[pos], self.off[pos]) + np.maximum(self.read_on[pos], self.read_off[pos])

    @staticmethod
    def _reach(pre: np.ndarray, spread: np.ndarray, e_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ends of the computed pre-activations: the exact ones lie within ``spread`` of ``pre``, and the
        computed ones within ``e_hat`` of those."""
        with np.errstate(invalid="ignore"):
            return pre - spread - e_hat, pre + spread + e_hat

    def added(self, pos: np.ndarray, pre: np.ndarray, spread: np.ndarray, e_hat: np.ndarray) -> np.ndarray:
        """``(candidates × units)``: what the construction of units ``pos`` adds at exact pre-activations within
        ``spread`` of ``pre``, computed within ``e_hat`` of them (:func:`_construction_error`)."""
        low, high = self._reach(pre, spread, e_hat)
        read_on, read_off = self.read_on[pos][None, :], self.read_off[pos][None, :]
        with np.errstate(invalid="ignore"):
            read = np.where(high <= 0, read_off, np.where(low >= 0, read_on, np.maximum(read_on, read_off)))
        return read + _construction_error(low, high, self.on[pos][None, :], self.off[pos][None, :],
                                          _per_candidate(self.exact_from, pos), _per_candidate(self.closed_below, pos),
                                          self.partial_gain[pos][None, :])

    def saturated(self, pos: int) -> bool:
        """Whether unit ``pos``'s gates saturate wherever ``y`` may be: its computed pre-activation proven at least
        ``exact_from`` or at most ``closed_below`` (it passes its value or an exact 0, never a part)."""
        centres, half, y_err, _ = self._candidates(np.array([pos]))
        pre, _, spread, _ = self._pre_activations(np.array([pos]), centres, half)
        with np.errstate(invalid="ignore"):
            e_hat = abs(self.k[pos]) * y_err + self.delta_of(pos)
            low, high = self._reach(pre[:, 0], spread[:, 0], e_hat)
            return bool(np.all((high <= _per_candidate(self.closed_below, np.array([pos]))[:, 0])
                               | (low >= _per_candidate(self.exact_from, np.array([pos]))[:, 0])))

    def added_at(self, pos: int) -> np.ndarray:
        """:meth:`added` for unit ``pos`` at each value of ``y`` where it has values, else where it may be."""
        if self.y.points is None:
            return self.passes(pos)
        pre, _, spread, e_hat = self.decide(pos)
        return self.added(np.array([pos]), pre[:, None], spread[:, None], e_hat[:, None])[:, 0]

    def delta_of(self, pos) -> np.ndarray:
        """The rounding of unit ``pos``'s own row: per value of ``y`` where known there, else one number."""
        return self.delta[:, pos] if self.delta.ndim == 2 else self.delta[pos]

    def _candidates(self, pos: np.ndarray):
        """``(centres, half widths, error of y, lattice ends)`` covering every value ``y`` takes: its points, or
        the pieces of its range between the units' decision boundaries (snapped to its lattice, when it has one:
        ``lattice ends`` are each piece's first and last lattice point)."""
        if self.y.points is not None:
            return self.y.points, self.y.slacks, self.y.errors, None
        k, b = self.k[pos], self.b[pos]
        reach = np.abs(k) * self.y.err + self.delta_of(pos) + self.residual[pos]
        if self.piece_rounding is not None:  # near a breakpoint |k y| is about |b|: the rounding there
            near = np.array([self.piece_rounding[p](np.array([abs(c) + r]))[0]
                             for p, c, r in zip(pos.tolist(), b.tolist(), reach.tolist())])
            reach = np.abs(k) * self.y.err + np.minimum(self.delta_of(pos), near) + self.residual[pos]
        with np.errstate(divide="ignore", invalid="ignore"):
            cuts = np.concatenate([(-b - reach) / k, (-b + reach) / k])
            if self.piece_rounding is not None and math.isfinite(self.y_hi - self.y_lo):
                # pieces |k y| a factor _PIECE_RATIO apart on either side of each breakpoint where a row's rounding
                # grows with what its terms reach: a unit is decided on a piece near its breakpoint where the
                # rounding of its far end (x − 10¹⁰·c reaches 10¹⁰ where c = 1, and rounds at 10¹⁰'s ulp there)
                # would leave it undecided up to that rounding's distance from the breakpoint
                far = np.abs(k) * max(abs(self.y_lo), abs(self.y_hi))
                grows = np.array([self.piece_rounding[p](np.array([f]))[0] > 2 * r
                                  for p, f, r in zip(pos.tolist(), far.tolist(), reach.tolist())])
                # (an exact row has no reach at its breakpoint: its first piece is as narrow as this arithmetic's)
                near = np.where(grows, np.maximum(np.maximum(reach, _ANALYSIS_U * np.abs(b)) / np.abs(k),
                                                  _ANALYSIS_U * (self.y_hi - self.y_lo)), np.inf)
                rings = np.ceil(np.log(np.maximum((self.y_hi - self.y_lo) / near, 1.0)) / math.log(_PIECE_RATIO))
                steps = np.arange(1, int(np.nanmax(rings[np.isfinite(rings)], initial=0)) + 1)
                distances = (near[:, None] * _PIECE_RATIO ** steps[None, :]).ravel()
                centres = np.repeat(-b / k, steps.size)
                cuts = np.concatenate([cuts, centres - distances, centres + distances])
        cuts = cuts[np.isfinite(cuts) & (cuts > self.y_lo) & (cuts < self.y_hi)]
        if self.y.grid is not None and self.y.grid[1] > 0:
            # a lattice point at a cut is a piece of its own (an exact 0 there passes nothing), not the end of two
            cuts = np.concatenate([cuts - self.y.grid[1] / 2, cuts, cuts + self.y.grid[1] / 2])
        edges = np.unique(np.concatenate([[self.y_lo, self.y_hi], cuts]))
        lows, highs = (edges, edges) if edges.size == 1 else (edges[:-1], edges[1:])
        if self.y.spans is not None:  # only the parts of the pieces where y has values
            lows, highs = (np.maximum(lows[:, None], self.y.spans[None, :, 0]),
                           np.minimum(highs[:, None], self.y.spans[None, :, 1]))
            keep = lows <= highs
            lows, highs = lows[keep], highs[keep]
        ends = None
        if self.y.grid is not None and np.all(np.isfinite(edges)):
            offset, step = self.y.grid
            if step == 0:
                first = last = np.full(lows.shape, offset)
                keep = (lows - self.y.slack <= offset) & (offset <= highs + self.y.slack)
            else:
                first = offset + np.ceil((lows - self.y.slack - offset) / step) * step
                last = offset + np.floor((highs + self.y.slack - offset) / step) * step
                keep = first <= last
            lows, highs = first[keep], last[keep]
            ends = (lows, highs)
            half = (highs - lows) / 2 + self.y.slack
        else:
            half = (highs - lows) / 2
        with np.errstate(invalid="ignore"):  # an unbounded piece has no centre: nothing is decided on it
            centres = (lows + highs) / 2
        return centres, half, np.full(lows.shape, self.y.err), ends

    def evaluate(self, pos: np.ndarray, coeffs: np.ndarray) -> _Values:
        """``Σ coeffs·ReLU(k y + b)`` over the units at ``pos``: its values and errors at each value of ``y``.
        A unit proven active at a value passes ``k ε_y + δ``, one proven inactive passes nothing (it is an exact
        0), an undecided one at most ``|k| E_y + δ``."""
        found = self._evaluate(pos, coeffs)
        return found if isinstance(found, _Values) else _Values.of(*found)

    def at_points(self, pos: np.ndarray, coeffs: np.ndarray) -> tuple:
        """:meth:`evaluate` at each of ``y``'s points, in their order (``y`` has points): the values, errors,
        slacks, magnitudes and lowest bits."""
        return self._evaluate(pos, coeffs)

    def _evaluate(self, pos: np.ndarray, coeffs: np.ndarray) -> _Values | tuple:
        k, b = self.k[pos], self.b[pos]
        centres, half, y_err, ends = self._candidates(pos)
        y_slack = self.y.slacks if self.y.points is not None else np.full(centres.shape, self.y.slack)
        delta = np.broadcast_to(self.delta_of(pos), (centres.size, pos.size))
        if self.y.points is None and self.piece_rounding is not None:
            with np.errstate(invalid="ignore"):  # |k y| on each piece, y's error included
                reach = np.abs(k)[None, :] * (np.abs(centres) + half + y_err)[:, None]
            delta = np.minimum(delta, np.stack([self.piece_rounding[p](np.nan_to_num(reach[:, n], nan=np.inf))
                                                for n, p in enumerate(pos.tolist())], axis=1))
        pre, pre_exact, spread, pre_rounding = self._pre_activations(pos, centres, half)
        with np.errstate(invalid="ignore", over="ignore"):
            e_hat = np.abs(k)[None, :] * y_err[:, None] + delta
            active = pre - spread >= e_hat
            inactive = pre + spread <= -e_hat
            undecided = ~(active | inactive)
            gain = np.where(active, (coeffs * k)[None, :], 0.0).sum(axis=1)
            errors = (zero_safe_product(np.abs(gain), y_err) + np.where(active, np.abs(coeffs)[None, :] * delta, 0.0).sum(axis=1)
                      + np.where(undecided, np.abs(coeffs)[None, :] * e_hat, 0.0).sum(axis=1)
                      + zero_safe_product(np.abs(coeffs)[None, :], self.added(pos, pre, spread, e_hat)).sum(axis=1))
            # how far the exact value may be from the one computed at a candidate: inactive units are exactly 0,
            # active ones move together with y
            drift = (zero_safe_product(np.abs(gain), y_slack)
                     + np.where(undecided, zero_safe_product(np.abs(coeffs * k)[None, :], y_slack[:, None]), 0.0).sum(axis=1)
                     + np.where(inactive, 0.0, (np.abs(coeffs) * self.residual[pos])[None, :]).sum(axis=1))
        largest = float(np.max(errors, initial=0.0))
        if ends is not None:
            if undecided.any():
                return _Values.unknown(largest)
            intercept = (active * (coeffs * b)[None, :]).sum(axis=1)
            exact = (_sums_exact(active, coeffs * k, gain) and _sums_exact(active, coeffs * b, intercept)
                     and bool(np.all(product_exact(coeffs, k, coeffs * k) & product_exact(coeffs, b, coeffs * b))))
            return self._on_lattice(gain, intercept, ends, errors, float(np.max(drift, initial=0.0)), exact)
        if self.y.points is None:
            return _Values.unknown(largest)
        values, rounding = _relu_sum(pre, pre_exact | inactive, coeffs)
        # a unit not proven off is off its computed pre-activation by that arithmetic's rounding too (which may
        # cancel to a pre-activation of 0: ReLU(1 − 3·fl(1/3)) is 2⁻⁵⁴, not the 0 computed); a saturated step's
        # level is exact whatever it is
        slack = drift + rounding + np.where(inactive, 0.0, np.abs(coeffs)[None, :] * pre_rounding).sum(axis=1)
        level, level_exact = _level(coeffs, k, b, active, undecided)
        # a reader sums the terms c_i·u_i, not their total: it rounds at Σ|c_i u_i| (10¹⁰·7500 − 10¹⁰·7499 is
        # 10¹⁰, but float32 rounds each term at 7.5·10¹³) and at the lowest bit of any of them
        with np.errstate(invalid="ignore", over="ignore"):
            terms = coeffs[None, :] * np.maximum(pre, 0.0)
            mags = np.sum(np.abs(terms) + np.abs(coeffs)[None, :] * spread, axis=1)
        grains = np.min(lowest_bit(terms), axis=1, initial=1 << 20)
        return np.where(level_exact, level, values), errors, np.where(level_exact, drift, slack), mags, grains

    def _pre_activations(self, pos: np.ndarray, centres: np.ndarray, half: np.ndarray):
        """``(candidates × units)``: the pre-activations of units ``pos`` at ``y = centres`` (this float64
        arithmetic), whether it computed each exactly, how far the exact ones may be from them when ``y`` is
        within ``half`` of its centre, and the part of that distance which is this arithmetic's rounding."""
        k, b = self.k[pos], self.b[pos]
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = k[None, :] * centres[:, None]
            pre = scaled + b[None, :]
            exact = product_exact(*np.broadcast_arrays(k[None, :], centres[:, None]), scaled) \
                & sum_exact(*np.broadcast_arrays(scaled, b[None, :]), pre)
            rounding = np.where(exact, 0.0, _ANALYSIS_U * (np.abs(scaled) + np.abs(pre)))
            spread = np.abs(k)[None, :] * half[:, None] + self.residual[pos][None, :] + rounding
        return pre, exact, spread, rounding

    def decide(self, pos: int):
        """Per value of ``y`` (it has values): unit ``pos``'s exact pre-activation there, whether this float64
        arithmetic computed it exactly, how far the exact one may be from it, and its error bound."""
        pre, exact, spread, _ = self._pre_activations(np.array([pos]), self.y.points, self.y.slacks)
        return pre[:, 0], exact[:, 0], spread[:, 0], abs(self.k[pos]) * self.y.errors + self.delta_of(pos)

    def _on_lattice(self, slope, intercept, ends, errors, drift, exact: bool) -> _Values:
        """The values on the lattice pieces, affine in ``y`` on each (a lattice, or one value); ``exact``: the
        float64 slopes and intercepts are the exact sums of the units'."""
        largest = float(np.max(errors, initial=0.0))
        if errors.size == 0:
            return _Values.unknown(largest)
        step = self.y.grid[1]
        first, last = ends
        scaled = slope * first
        start = scaled + intercept
        steps = np.abs(slope) * step
        end = slope * last + intercept
        # the values run from start to end on each piece (end's own float64 rounding added)
        magnitude = float(np.max(np.maximum(np.abs(start), np.abs(end))
                                 + 4 * _ANALYSIS_U * (np.abs(slope * last) + np.abs(intercept)), initial=0.0))
        # this analysis's float64 arithmetic rounds nothing when the slopes, intercepts, starts and steps are exact
        exact = exact and bool(np.all(product_exact(slope, first, scaled) & sum_exact(scaled, intercept, start)
                                      & product_exact(np.abs(slope), np.full(slope.shape, step), steps)))
        rounding = 0.0 if exact else 4 * _ANALYSIS_U * magnitude
        slack = drift + rounding
        single = (slope == 0) | (first == last)
        if single.all():
            return _Values.of(start, errors, slack)
        grid = _grid_union([(float(o), 0.0 if one else float(g))
                            for o, g, one in zip(start.tolist(), steps.tolist(), single.tolist())])
        size = magnitude + slack
        return _Values.unknown(largest, grid, slack + (0.0 if exact else 4 * _ANALYSIS_U * size), size)


def _per_candidate(threshold: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``(candidates or 1) × units``: a group's per-unit saturation threshold (:attr:`_Group.exact_from`) at units
    ``pos``, per value of ``y`` where it has one there."""
    return threshold[:, pos] if threshold.ndim == 2 else threshold[pos][None, :]


def _with_hidden(mags, grains, hidden: float, grain: int | None, total: float = math.inf):
    """``(magnitudes, lowest bits)`` of a sum whose terms reach ``mags`` with lowest bits ``grains``, and which also
    sums hidden terms of magnitude ``hidden`` and lowest bit ``grain`` (None: never exact, an infinite magnitude);
    ``total`` bounds all the terms together (:meth:`ErrorAnalysis._reads`)."""
    if hidden == 0:
        return mags, grains
    if grain is None:
        return np.inf, grains
    return np.minimum(mags + hidden, total), np.minimum(grains, grain)


def _construction_error(low, high, on, off, exact, closed, gain):
    """What a target's ReLU unit adds to its value where its computed pre-activation lies in ``[low, high]``:
    nothing where its gates saturate (proven on from ``exact``, off up to ``closed``), else ``on`` where proven on,
    ``off`` where proven off, either where undecided — and at most ``gain`` times the computed pre-activation's
    magnitude (a gate partly open passes part of a value near 0: an exact 0 adds nothing)."""
    with np.errstate(invalid="ignore", over="ignore"):
        charge = np.where(high <= 0, np.where(high <= closed, 0.0, off),
                          np.where(low >= 0, np.where(low >= exact, 0.0, on), np.maximum(on, off)))
        # fmin: an unbounded piece (nan ends) keeps its charge
        return np.where(np.isfinite(gain), np.fmin(charge, gain * np.maximum(np.abs(low), np.abs(high))), charge)


def _direction_key(row: np.ndarray) -> bytes:
    """A key shared by rows equal up to a factor, also where float64 rounded one of them: ``1000·cos θ`` and
    ``cos θ`` scaled by 1000 later are one direction.  The ratios to the first weight are compared to
    :data:`_DIRECTION_BITS` bits; the group's residual (``_off_direction``) bounds what is left."""
    mantissa, exponent = np.frexp(row / row[0])
    return (np.round(np.ldexp(mantissa, _DIRECTION_BITS)).astype(np.int64) * 4096 + exponent).tobytes()


def _looked_up(v: _Values, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The errors and slacks of ``v`` at the exact values ``exact`` (its largest where it lists none of them)."""
    if v.points is None:
        return np.full(exact.shape, v.err), np.full(exact.shape, v.slack)
    at = np.minimum(np.searchsorted(v.points, exact), v.points.size - 1)
    found = v.points[at] == exact
    return np.where(found, v.errors[at], v.err), np.where(found, v.slacks[at], v.slack)


def _grain(weights: list, bias: float, values: list) -> int:
    """The lowest set bit of every term of ``Σ w·v + bias`` (each ``v`` with an :attr:`_Values.exact_grain`)."""
    return min([_low_bit(np.array([bias]))]
               + [_low_bit(np.array([w])) + v.exact_grain for w, v in zip(weights, values)])


def _sums_exact(active: np.ndarray, terms: np.ndarray, sums: np.ndarray) -> bool:
    """Whether each float sum of ``terms`` over the ``active`` units (one row per candidate) is exact."""
    for row, total in zip(active.tolist(), sums.tolist()):
        if Fraction(total) != sum((Fraction(t) for t, on in zip(terms.tolist(), row) if on), Fraction(0)):
            return False
    return True


def _exact_direction(first: np.ndarray, leading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d, k)`` with ``k_i d`` the rows of a group (``first`` the first row, ``leading`` every row's first
    weight), chosen so that float64 computes ``d`` and every ``k_i`` exactly where some choice does: ``d`` the
    first row divided by the smallest leading weight (``1000 y − 1`` and ``y`` share ``d = y``), or by a power of
    two (``1000 y₁ + y₂``: ``d = (1000 y₁ + y₂)/512``); else by its own leading weight."""
    smallest = leading[np.argmin(np.abs(leading))]
    power = math.ldexp(1.0, math.frexp(first[0])[1] - 1)
    for divisor in (math.copysign(abs(smallest), first[0]), math.copysign(power, first[0])):
        d = first / divisor
        k = leading / d[0]
        if np.all(product_exact(d, np.full(d.shape, divisor), first)) and np.all(
                product_exact(k, np.full(k.shape, d[0]), leading)):
            return d, k
    return first / first[0], leading


def _level(coeffs, k, b, active, undecided):
    """Per candidate: ``Σ_active c_i b_i`` and whether it is the exact value of ``Σ c_i ReLU(k_i y + b_i)`` for
    every ``y`` near it — every unit decided, ``Σ_active c_i k_i`` exactly 0 and both sums computed exactly: a
    saturated step is its constants' sum, not ``y``'s rounded arithmetic."""
    slopes, shifts = coeffs * k, coeffs * b
    units_exact = product_exact(coeffs, k, slopes) & product_exact(coeffs, b, shifts)
    exact = ~undecided.any(axis=1) & np.all(units_exact[None, :] | ~active, axis=1)
    gain, level = np.zeros(active.shape[0]), np.zeros(active.shape[0])
    for j in range(coeffs.size):
        slope, shift = np.where(active[:, j], slopes[j], 0.0), np.where(active[:, j], shifts[j], 0.0)
        new_gain, new_level = gain + slope, level + shift
        exact &= sum_exact(gain, slope, new_gain) & sum_exact(level, shift, new_level)
        gain, level = new_gain, new_level
    return level, exact & (gain == 0)


def _relu_sum(pre, known, coeffs):
    """``Σ c_i ReLU(pre_i)`` per candidate, and the slack of this float64 arithmetic there (none where it was
    exact); ``known``: where ``ReLU(pre_i)`` is exactly the unit's value (computed exactly, or proven off)."""
    relus = np.maximum(pre, 0.0)
    exact = np.all(known, axis=1)
    values = np.zeros(pre.shape[0])
    for j, c in enumerate(coeffs.tolist()):
        term = relus[:, j] * c
        total = values + term
        exact &= product_exact(relus[:, j], np.full(pre.shape[0], c), term) & sum_exact(values, term, total)
        values = total
    magnitude = (coeffs.size + 2) * np.sum(np.abs(coeffs)[None, :] * relus, axis=1)
    return values, np.where(exact, 0.0, _ANALYSIS_U * magnitude)


@dataclasses.dataclass
class _Facts:
    """Per coordinate of an op: its :class:`_Values` and its range; ReLU ops reading a linear also have their
    ``groups`` and, per unit, ``unit_of[unit] = (group, position)``.

    ``clock`` (states × coordinates, NaN for the others): the coordinates whose exact values depend on the step
    only, whatever the input — a rotation counter and what is computed from it — at each state the steps
    reach, listed jointly: a row ``cos(iθ)·x + sin(iθ)·y`` of a rotating ``(x, y)`` meets the 20 pairs a
    rotation by 18° reaches, not the 11 × 11 pairs of its coordinates' values, so a step reading it keeps its
    margin.  Every op computed from one recurrence's clock shares its states (rows)."""
    values: list
    lo: np.ndarray
    hi: np.ndarray
    groups: list | None = None
    unit_of: dict | None = None
    clock: np.ndarray | None = None

    @functools.cached_property
    def err(self) -> np.ndarray:
        return np.array([v.err for v in self.values])


class ErrorAnalysis:
    """Error bounds of every op of a layer-form ``module`` computed in ``dtype`` (``analysis[op]`` →
    :class:`_Facts`); ``t_max`` as for range analysis (None: the module's recorded one); ``ranges``: a
    :class:`RangeAnalysis` of ``module`` for that ``t_max`` to share (ranges do not depend on the dtype)."""

    def __init__(self, module: Module, dtype: str = "float64", t_max: int | None = None,
                 ranges: RangeAnalysis | None = None):
        if dtype not in UNIT_ROUNDOFF:
            raise ValueError(f"error analysis: dtype must be float64 or float32, got {dtype!r}")
        self.dtype = dtype
        self.u = UNIT_ROUNDOFF[dtype]
        self.bits = np.finfo(dtype).nmant + 1
        self.min_bit = int(np.log2(np.finfo(dtype).smallest_subnormal))
        self.subnormal_step = float(np.finfo(dtype).smallest_subnormal)
        # what a value or a term may reach before a run can give inf (half the largest float leaves room for the
        # rounding on the way)
        self._largest = float(np.finfo(dtype).max) / 2
        if t_max is None:
            t_max = validate_t_max(module.metadata.get("t_max"), f"module @{module.name} metadata")
        self.t_max = t_max
        self.ranges = RangeAnalysis(module, t_max) if ranges is None else ranges
        # a target's construction of an op may add errors of its own: per op position, per coordinate, on/off
        local = module.metadata.get("local_errors") or {}
        _check_local_errors(module, local)
        self.local: dict[int, tuple[np.ndarray, np.ndarray]] = {
            id(op): (np.asarray(local[i]["on"]) + self.u * np.asarray(local[i]["on_u"]),
                     np.asarray(local[i]["off"]) + self.u * np.asarray(local[i]["off_u"]))
            for i, op in enumerate(module.ops) if i in local}
        # per coordinate: the hidden magnitude, the units, the lowest bit of every hidden term (nan: unknown; a
        # select's, once its carried factor is analysed) and what all the terms reach, the value's included
        self.read_costs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {
            id(op): (np.asarray(local[i]["hidden"]), np.asarray(local[i]["units"]), np.full(op.dim, np.nan),
                     np.asarray(local[i]["terms_total"]))
            for i, op in enumerate(module.ops) if i in local}
        self.hidden_steps: dict[int, np.ndarray] = {
            id(op): np.asarray(local[i]["hidden_step"])
            for i, op in enumerate(module.ops) if i in local and np.any(local[i]["hidden_step"])}
        # per ReLU op whose units state it: the thresholds without their rounding, and that rounding's parts
        # (exact_from, closed_below, gate_fixed_u, gate_terms)
        self.gate_rounding: dict[int, tuple[np.ndarray, ...]] = {
            id(op): tuple(np.broadcast_to(np.asarray(local[i].get(name, 0.0), dtype=np.float64), (op.dim,))
                          for name in ("exact_from", "closed_below", "gate_fixed_u", "gate_terms"))
            for i, op in enumerate(module.ops) if i in local and np.any(local[i].get("gate_terms", 0))}
        self.saturation: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
            id(op): (np.asarray(local[i]["exact_from"]) + self.u * np.asarray(local[i]["exact_from_u"]),
                     np.asarray(local[i]["closed_below"]) - self.u * np.asarray(local[i]["closed_below_u"]),
                     np.asarray(local[i]["partial_gain"]))
            for i, op in enumerate(module.ops) if i in local}
        scale = (1.0, 1.0) if dtype == "float32" else (_FLOAT64_UNDERFLOW, _FLOAT64_NORMAL)
        self.underflows: dict[int, tuple[np.ndarray, np.ndarray]] = {
            id(op): (np.asarray(local[i]["underflow"]) * scale[0], np.asarray(local[i]["normal_from"]) * scale[1])
            for i, op in enumerate(module.ops) if i in local and np.any(local[i]["underflow"])}
        self.selects: dict[int, tuple[np.ndarray, np.ndarray]] = {
            id(op): (np.asarray(local[i]["selector"]).astype(np.int64), np.asarray(local[i]["margin"]))
            for i, op in enumerate(module.ops) if i in local and op.kind == "multi" and np.any(local[i]["selector"])}
        #: per state op a target computes as one sum over a delay line's taps: its conv fields (:meth:`_conv_rounding`)
        self.convs: dict[int, tuple[np.ndarray, ...]] = {
            id(op): tuple(np.broadcast_to(np.asarray(local[i][name], dtype=np.float64), (op.dim,))
                          for name in ("conv_terms", "conv_reach", "conv_gain", "conv_tap_bit", "conv_float32",
                                       "conv_rounding32" if dtype == "float32" else "conv_rounding64"))
            for i, op in enumerate(module.ops) if i in local and np.any(local[i].get("conv_terms", 0))}
        self.split_reads, self.read_step, norms = _split_reads_of(module)
        #: how far a read through the stream's norms may drift, relative to the value read: where they run in the
        #: narrow dtype (with the split) and where they run in the model's dtype (the kernel)
        self.parts_drift = _norm_drift(norms, float(np.finfo(self.split_reads).eps / 2)) if norms else 0.0
        self.whole_drift = _norm_drift(norms, self.u) if norms else 0.0
        #: with :attr:`split_reads`: the largest ``|lo|`` (:meth:`_read_in_parts`) of a value read inexactly so far
        self._residue = 0.0
        self.facts: dict[int, _Facts] = {}
        for op in module.ops:
            facts = self._with_local_errors(op, self._transfer(op))
            if self.split_reads is not None and op.kind in _KEPT_KINDS:
                facts = self._read_in_parts(facts)
            self.facts[id(op)] = self._overflowing(facts)

    def __getitem__(self, op: Op) -> _Facts:
        return self.facts[id(op)]

    def _overflowing(self, facts: _Facts) -> _Facts:
        """``facts`` with an unbounded error where a value may leave the dtype's range (a float32 run gives inf
        where the exact value is 1e42); half the largest value leaves room for the rounding on the way."""
        with np.errstate(invalid="ignore"):
            reach = _magnitude(facts.lo, facts.hi) + facts.err
        over = ~(reach < self._largest)
        if not over.any():
            return facts
        values = [_Values.unknown(math.inf) if o else v for v, o in zip(facts.values, over.tolist())]
        # readers read the values
        return dataclasses.replace(facts, values=values, groups=None, unit_of=None, clock=None)

    # ------------------------------------------------------------------ helpers
    def _fits(self, mags, grains) -> np.ndarray:
        """Whether a sum whose terms are multiples of ``2^grains`` and whose magnitudes stay below ``mags`` is exact
        in the dtype: the grains are not below its smallest subnormal, and the magnitudes fit its precision."""
        grains = np.asarray(grains, dtype=np.int64)
        return (grains >= self.min_bit) & (np.asarray(mags) < np.ldexp(1.0, np.minimum(grains + self.bits, 1000)))

    def _dot_error(self, n: int, magnitude):
        """What a target's rounded dot products of ``n`` terms reaching ``magnitude`` add: relative to the
        magnitude, and an absolute subnormal step per product and sum, which a result in the dtype's subnormal
        range rounds to whatever its magnitude (``γ·|value|`` alone is below that step there)."""
        return ROUNDING_HOPS * (_gamma(n + 1, self.u) * magnitude + (n + 1) * self.subnormal_step)

    def _stored(self, values: np.ndarray) -> np.ndarray:
        """``values`` as the dtype stores them (float64 values)."""
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=np.float64).astype(self.dtype).astype(np.float64)

    @staticmethod
    def _rows(a: Matrix):
        data, indices, indptr = a.csr_parts()
        for i in range(a.shape[0]):
            s, e = indptr[i], indptr[i + 1]
            yield indices[s:e], data[s:e]

    def _form(self, x: Op, cols: np.ndarray, coeffs: np.ndarray, bias: float = 0.0) -> _Values:
        """The exact form ``coeffs·x[cols] + bias``: its candidate values and the error it inherits from ``x``
        (the form's own rounding not included)."""
        return self._clocked_form(x, cols, coeffs, bias)[0]

    def _clocked_form(self, x: Op, cols: np.ndarray, coeffs: np.ndarray,
                      bias: float = 0.0) -> tuple[_Values, np.ndarray | None]:
        """:meth:`_form`, and its value at each state of ``x``'s clock where it reads clocked coordinates only
        (else None).  The clocked terms are summed state by state, the others as independent parts."""
        fx = self[x]
        clocked: list[tuple] = []  # per term, at each clock state: values, errors, slacks, magnitudes, lowest bits
        parts = []
        if fx.groups is not None:
            by_group: dict[int, list] = {}
            for c, w in zip(cols.tolist(), coeffs.tolist()):
                g, p = fx.unit_of[c]
                by_group.setdefault(g, []).append((p, w))
            for g, members in by_group.items():
                group = fx.groups[g]
                pos, weights = np.array([p for p, _ in members], dtype=np.int64), np.array([w for _, w in members])
                if group.y_at is None or fx.clock is None:
                    parts.append(group.evaluate(pos, weights))
                else:
                    at = np.searchsorted(group.y.points, group.y_at)
                    clocked.append(tuple(a[at] for a in group.at_points(pos, weights)))
        else:
            for c, w in zip(cols.tolist(), coeffs.tolist()):
                value = None if fx.clock is None else fx.clock[:, c]
                if value is None or np.isnan(value[0]):
                    # a product exact in float64 (else the slack denies exactness) has the lowest bit of its value
                    parts.append(fx.values[c].scaled(w).as_term())
                    continue
                errors, slacks = _looked_up(fx.values[c], value)
                term = value * w
                rounding = np.where(product_exact(value, np.full(value.shape, w), term), 0.0, _ANALYSIS_U * np.abs(term))
                clocked.append((term, errors * abs(w), slacks * abs(w) + rounding, np.abs(term), lowest_bit(term)))
        constant = _Values.of(np.array([bias]), np.zeros(1), 0.0).as_term()
        if fx.clock is None or (parts and not clocked):
            return _sum([constant] + parts), None
        states = fx.clock.shape[0]
        total = (np.full(states, bias), np.zeros(states), np.zeros(states), np.full(states, abs(bias)),
                 np.full(states, lowest_bit(np.array([bias]))[0]))
        for values, errors, slacks, mags, grains in clocked:
            summed = total[0] + values
            # a partial sum rounds by at most an ulp of Σ|terms|
            rounding = np.where(sum_exact(total[0], values, summed), 0.0, _ANALYSIS_U * (total[3] + mags))
            total = (summed, total[1] + errors, total[2] + slacks + rounding, total[3] + mags,
                     np.minimum(total[4], grains))
        joint = _Values.of(*total)
        if parts:
            return _sum([joint] + parts), None
        return joint, None if joint.points is None else total[0]

    def _rounding(self, terms: list[tuple[_Values, float, float]], bias: float,
                  reads: tuple[float, int, int | None, float] | None = None) -> float:
        """The error a dtype run adds to ``Σ w·v + bias`` over ``terms`` = ``(values, magnitude, w)``: weight
        storage and the rounded dot product (0 when every product and partial sum is representable); ``reads``:
        :meth:`_reads` of the terms (none: one plain term each)."""
        hidden, n, grain, total = (0.0, len(terms), None, math.inf) if reads is None else reads
        stored_bias = float(self._stored(bias))
        storage = abs(bias - stored_bias)
        magnitude = abs(stored_bias) + hidden
        exact = hidden == 0 or grain is not None
        for values, size, w in terms:
            stored = float(self._stored(w))
            with np.errstate(invalid="ignore", over="ignore"):
                storage += abs(w - stored) * (size + values.err)
                magnitude += abs(stored) * (size + values.err)
            exact = exact and values.exact_grain is not None
        magnitude = min(magnitude, abs(stored_bias) + total)
        if not math.isfinite(magnitude):
            return math.inf
        # weights stored as they are (no storage error): the grain of the terms computed
        if storage == 0.0 and exact and bool(self._fits(magnitude, min(
                _grain([w for *_, w in terms], bias, [v for v, *_ in terms]), 1 << 20 if grain is None else grain))):
            return 0.0
        return storage + self._dot_error(n, magnitude)

    def _reads(self, x: Op, cols: np.ndarray, weights: np.ndarray) -> tuple[float, int, int | None, float]:
        """What a row reading coordinates ``cols`` of ``x`` with ``weights`` sums beyond their values, from the
        target's construction of ``x``: the hidden magnitude (``Σ |w|·hidden``), the number of terms, the lowest
        bit of every hidden term where each is computed exactly (None: not known to be), and what all the terms
        reach, the values' included (inf: no more than their values and hidden terms tell) — a GRU pair's two
        halves are ``2B`` together, not its value's ``B`` beside them."""
        reads = self.read_costs.get(id(x))
        if reads is None:
            return 0.0, int(cols.size), None, math.inf
        hidden, units, grains, totals = reads
        weights = np.abs(np.asarray(weights, dtype=np.float64))
        with np.errstate(over="ignore"):
            summed = float(np.sum(weights * hidden[cols]))
        read = hidden[cols] != 0
        terms = grains[cols][read] + lowest_bit(weights[read])
        grain = int(np.min(terms)) if read.any() and not np.isnan(terms).any() else None
        total = math.inf
        if np.isfinite(totals[cols]).any():
            fx = self[x]
            err = fx.err[cols]
            with np.errstate(over="ignore", invalid="ignore"):  # each of a coordinate's terms may be off by its error
                reach = np.minimum(_magnitude(fx.lo[cols], fx.hi[cols]) + err + hidden[cols],
                                   totals[cols] + units[cols] * err)
                total = float(np.sum(zero_safe_product(weights, reach)))
        # terms that may leave the dtype's range make the sum inf whatever the value (a GRU pair's K·p̂)
        return (summed if summed < self._largest else math.inf), int(np.sum(units[cols])), grain, total

    def _set_hidden_grains(self, op: Op, grains: np.ndarray) -> None:
        """Record the lowest bit of the hidden terms of each coordinate of ``op`` (nan: not known exact), found once
        its values are analysed."""
        hidden, units, _, totals = self.read_costs[id(op)]
        self.read_costs[id(op)] = (hidden, units, grains, totals)

    def _read_rounding(self, x: Op) -> np.ndarray:
        """Per coordinate of ``x``: the rounding of reading it on its own (a unit reading it directly, the
        readout) — the sum over its units of their hidden magnitude (:meth:`_reads`), none where those terms and
        the value are exact and their sum fits the dtype."""
        reads = self.read_costs.get(id(x))
        if reads is None:
            return np.zeros(x.dim)
        hidden, units, grains, totals = reads
        fx = self[x]
        sizes = _magnitude(fx.lo, fx.hi)
        out = []
        for h, n, grain, v, size, total in zip(hidden.tolist(), units.tolist(), grains.tolist(), fx.values,
                                               sizes.tolist(), totals.tolist()):
            exact = h == 0 or (not math.isnan(grain) and v.exact_grain is not None
                               and bool(self._fits(min(h + size, total), min(int(grain), v.exact_grain))))
            out.append(0.0 if exact else math.inf if not h < self._largest else
                       self._dot_error(int(n), h))
        return np.array(out)

    def output_bounds(self, module: Module) -> np.ndarray:
        """The bound of each output coordinate of ``module``, read by its readout."""
        return self[module.output].err + self._read_rounding(module.output)

    def _rational_shift(self, x: Op, matrix: Matrix, bias: Vector,
                        reads: np.ndarray | None = None) -> np.ndarray | None:
        """How far ``matrix·x + bias`` with its exact (rational) constants can be from the same map with them
        rounded to float64, which is what the rest of the analysis reads (``reads``: the magnitude ``x`` reaches,
        by default its range and error), or None when every constant is a float64 value."""
        gap_w, gap_b = _rational_gap(matrix), _rational_gap(bias)
        if gap_w is None and gap_b is None:
            return None
        if reads is None:
            fx = self[x]
            reads = _magnitude(fx.lo, fx.hi) + fx.err
        shift = np.zeros(matrix.shape[0]) if gap_b is None else gap_b
        if gap_w is not None:
            with np.errstate(invalid="ignore"):  # the sparse product reads stored entries only
                shift = shift + gap_w @ reads
        return shift

    def _row_rounding(self, x: Op, cols: np.ndarray, weights: np.ndarray, bias: float) -> float:
        fx = self[x]
        size = _magnitude(fx.lo[cols], fx.hi[cols])
        terms = [(fx.values[c], float(m), float(w)) for c, m, w in zip(cols.tolist(), size.tolist(), weights.tolist())]
        return self._rounding(terms, bias, self._reads(x, cols, weights))

    def _piece_rounding(self, x: Op, cols: np.ndarray, weights: np.ndarray, bias: float):
        """The rounding of the row ``weights·x[cols] + bias`` as a function of a bound ``S`` on ``|weights·x|``:
        a term is at most ``S`` plus the others' largest magnitudes, so where ``S`` is small the row's large terms
        are small too — ``q − 10¹⁰·u`` with ``u ∈ {0, 1}`` sums ``|q|`` where it is near ``q``, exactly."""
        fx = self[x]
        terms = np.abs(weights) * (_magnitude(fx.lo[cols], fx.hi[cols]) + fx.err[cols])
        finite = np.isfinite(terms)
        rest, unbounded = float(np.sum(terms[finite])), int(np.count_nonzero(~finite))
        # the sum of the other terms' magnitudes (inf − inf would be nan)
        others = np.where(finite, np.inf if unbounded else rest - terms, rest if unbounded == 1 else np.inf)
        hidden, n, hidden_grain, total = self._reads(x, cols, weights)
        with np.errstate(invalid="ignore", over="ignore"):
            misstored = np.abs(weights - self._stored(weights))  # inf where the dtype cannot hold a weight
        bias_storage = abs(bias - float(self._stored(bias)))
        representable = not np.any(misstored) and bias_storage == 0.0
        values = [fx.values[c] for c in cols.tolist()]
        grain = None if (hidden and hidden_grain is None) or not representable \
            or any(v.exact_grain is None for v in values) else \
            min(_grain(weights.tolist(), bias, values), hidden_grain if hidden else 1 << 20)

        def rounding(reach: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", over="ignore"):
                bounded = np.minimum(terms[None, :], reach[:, None] + others[None, :])
                mags = np.minimum(bounded.sum(axis=1) + hidden, total) + abs(bias)
                storage = zero_safe_product(bounded, misstored[None, :]).sum(axis=1) + bias_storage
            rounded = storage + self._dot_error(n, mags)
            if grain is None:
                return rounded
            return np.where(self._fits(mags, grain), 0.0, rounded)
        return rounding

    def _with_local_errors(self, op: Op, facts: _Facts) -> _Facts:
        """``facts`` with what the target's construction adds to each coordinate of a state or a product (a ReLU
        op's, which depend on whether each unit is on, are added where it is analysed), and its ``underflow``
        wherever the value its units carry may be a nonzero below ``normal_from`` (a select's: the factor it
        carries)."""
        if id(op) not in self.local:
            return facts
        added = self.local[id(op)][0] if op.kind in ("linstate", "multi") else np.zeros(op.dim)
        if id(op) in self.underflows:
            underflow, normal_from = self.underflows[id(op)]
            carried = facts.values
            if op.kind == "multi" and id(op) in self.selects:
                selectors = self.selects[id(op)][0]
                factors = self[op.operands[0]].values
                carried = [factors[i + op.dim] if s == 1 else factors[i] if s == 2 else v
                           for i, (s, v) in enumerate(zip(selectors.tolist(), facts.values))]
            added = added + np.array([0.0 if _normal_or_zero(v, m) else a
                                      for v, a, m in zip(carried, underflow.tolist(), normal_from.tolist())])
        return dataclasses.replace(facts, values=[
            v if a == 0 else dataclasses.replace(v, err=v.err + a, errors=None if v.errors is None else v.errors + a)
            for v, a in zip(facts.values, added.tolist())])

    def _read_in_parts(self, facts: _Facts) -> _Facts:
        """``facts`` as a reader sees them when the executor keeps each value in a slot of a stream and reads the
        slot's content ``c`` as ``hi = fl_n(c)`` plus ``fl_n(c − hi)`` (``n`` = :attr:`split_reads`), then
        subtracts both to reuse the slot.  ``lo = c − hi`` is exact and within ``u_n|c|`` of 0 — and within the
        value's error and slack where its exact value is a number of ``n`` (``hi`` is the one nearest ``c``) — so
        a read is within ``u_n|lo|`` (and a subnormal step) of ``c``, and leaves a residue ``r`` of at most that
        in the slot, which a later value ``v`` sharing it reads too: ``c = v + r``.  Residues come from earlier
        values read inexactly (:attr:`_residue` bounds the ``|lo|`` they had), so a read of ``v`` is off by
        ``≤ u_n|lo| + u_n²·3|r| + |r|`` ``≤ u_n|lo| + u_n²·4·residue``, and by nothing where ``v`` is computed
        exactly, ``n`` holds it and no residue can exist yet.  Every read also passes a neutralised norm, which
        past its identity range is ``c(1 + δ')`` (``|δ'| ≤ δ``, :func:`_norm_drift`) and reads only an exact 0 as
        itself: an executor that reads in parts (transformers, whose norms run in ``n``) is off by the above with
        ``u_n|lo| + δ_n(1 + u_n²)|c|`` for ``u_n|lo|``, one that reads values whole through norms in the model's
        dtype (the kernel) by ``δ|c|`` instead; each read is charged the larger, and a drifting read leaves a
        residue of ``|c|``'s size.

        A model no wider than ``n`` computes its values in ``n``, so ``lo`` is 0; what remains is that the norms
        resolve a read to multiples of :attr:`read_step` ``s``, which moves a value below ``2^p·s`` (``p`` the
        bits of ``n``) by up to ``s/2`` and leaves that in its slot.  Such a residue vanishes in a later value's
        sum where that value is at least ``2^p·s`` (half its spacing is ``s/2``, a tie rounds to it) and in a read
        of an exact 0 (resolved to 0): a value computed as an exact 0 or at least ``2^p·s`` is read as itself,
        any other is charged ``2s``.  ReLU units analysed in groups (read through their groups) add it to the
        group's reads (:attr:`_Group.read_on`, ``read_off``: whether or not their gates saturate): where on, as
        above; where off, the residue's — and where the construction passes a part of a value there (a gelu
        ReLU short of saturation: not an exact 0), what a read of the unit at its candidate 0 costs."""
        narrow = np.finfo(self.split_reads)
        u_narrow = float(narrow.eps / 2)
        wide = self.bits > narrow.nmant + 1
        split = u_narrow ** 2 if wide else 0.0
        parts_drift, whole, floor = self.parts_drift * (1 + split), self.whole_drift, 2 * self.read_step
        ratio, drifts = max(split + parts_drift, whole), parts_drift > 0 or whole > 0
        resolved_from = math.ldexp(self.read_step, narrow.nmant + 1)
        residue = self._residue
        charges = []
        for v, size in zip(facts.values, _magnitude(facts.lo, facts.hi).tolist()):
            held = self._held_in(v, narrow, self.read_step)
            exact = held & self._computed_exactly(v)
            if v.points is not None:
                full, off = np.abs(v.points) + v.slacks + v.errors, v.slacks + v.errors
            else:
                full, off = np.array([min(size, v.size) + v.err]), np.array([v.slack + v.err])
            zero = exact & (full == 0)
            lo = np.where(held, np.minimum(full, off / u_narrow), full) if wide else np.zeros_like(full)
            parts_exact = (exact if wide else _normal_or_zero(v, resolved_from)) & (zero if parts_drift > 0 else True)
            whole_exact = zero if whole > 0 else True
            read = np.maximum(np.where(parts_exact, 0.0, split * lo + zero_safe_product(parts_drift, full)),
                              np.where(whole_exact, 0.0, zero_safe_product(whole, full)))
            exact_read = np.broadcast_to(parts_exact & whole_exact, full.shape)
            left = np.where(exact_read, 0.0, full if drifts else lo)  # lo is 0 in a model no wider than n
            self._residue = max(self._residue, float(np.max(left)))
            charges.append(np.where(~exact_read | (residue > 0.0),
                                    read + float(zero_safe_product(4 * ratio, residue)) + floor, 0.0))
        if not any(np.any(charge > 0) for charge in charges):
            return facts
        if facts.groups is not None:
            on = np.array([float(np.max(charge)) for charge in charges])
            # off is an exact 0 but where the construction passes a part of a value (a gelu not saturated): the
            # read of that part is charged as at its candidate 0
            off = np.array([float(np.max(charge if v.points is None else np.where(v.points == 0, charge, 0.0),
                                         initial=0.0)) for v, charge in zip(facts.values, charges)])
            off = np.maximum(off, float(zero_safe_product(4 * ratio, residue)) + floor if residue > 0.0 else 0.0)
            values: list = [None] * len(facts.values)
            for group in facts.groups:
                group.read_on, group.read_off = group.read_on + on[group.units], group.read_off + off[group.units]
            for unit, (g, pos) in facts.unit_of.items():
                values[unit] = facts.groups[g].evaluate(np.array([pos]), np.ones(1))
            return dataclasses.replace(facts, values=values)
        values = []
        for v, charge in zip(facts.values, charges):
            if v.points is not None:
                errors = v.errors + charge
                v = dataclasses.replace(v, errors=errors, err=float(np.max(errors, initial=0.0)))
            elif np.any(charge > 0):
                v = dataclasses.replace(v, err=v.err + float(np.max(charge)))
            values.append(v)
        return dataclasses.replace(facts, values=values)

    @staticmethod
    def _held_in(v: _Values, narrow, step: float) -> np.ndarray | bool:
        """Whether the exact values of ``v`` are numbers of the narrow dtype on multiples of ``step``: per
        candidate where it has candidates, else whether its lattice's points up to its size are."""
        if v.points is not None:
            with np.errstate(over="ignore"):
                return (v.points.astype(narrow.dtype).astype(np.float64) == v.points) & (np.mod(v.points, step) == 0)
        if v.grid is None or not math.isfinite(v.size):
            return False
        low = _low_bit(np.array(v.grid))
        return low >= math.log2(step) and v.size < math.ldexp(1.0, min(low + narrow.nmant + 1, narrow.maxexp))

    @staticmethod
    def _computed_exactly(v: _Values) -> np.ndarray | bool:
        """Whether ``v`` is computed without error at its exact value (per candidate where it has them)."""
        if v.points is not None:
            return (v.errors == 0) & (v.slacks == 0)
        return v.err == 0.0 and v.slack == 0.0

    def _unit_errors(self, op: Op) -> tuple:
        """Per unit of the ReLU op ``op``: what its construction adds where it may pass its value, where it is
        proven off, the computed pre-activations from which and up to which it adds nothing, and how many times its
        computed pre-activation it passes at most where off."""
        on, off = self.local.get(id(op), (np.zeros(op.dim), np.zeros(op.dim)))
        exact, closed, gain = self.saturation.get(id(op), (np.full(op.dim, math.inf), np.full(op.dim, -math.inf),
                                                            np.full(op.dim, math.inf)))
        return on, off, exact, closed, gain

    # ------------------------------------------------------------------ transfer functions
    def _transfer(self, op: Op) -> _Facts:
        lo, hi = self.ranges(op)
        kind = op.kind
        if kind in ("input", "linear", "relu", "multi", "linstate"):
            return getattr(self, "_" + kind)(op, lo, hi)
        if kind in ("concat", "slice"):
            values = [v for o in op.operands for v in self[o].values]
            parts = [self.read_costs.get(id(o), (np.zeros(o.dim), np.ones(o.dim), np.full(o.dim, np.nan),
                                                 np.full(o.dim, math.inf))) for o in op.operands]
            costs = tuple(np.concatenate([part[n] for part in parts]) for n in range(4))
            if kind == "slice":
                values = values[op.attrs["start"]:op.attrs["end"]]
                costs = tuple(a[op.attrs["start"]:op.attrs["end"]] for a in costs)
            if np.any(costs[0]):
                self.read_costs[id(op)] = costs
            return _Facts(values, lo, hi)
        # an op kind the analysis does not know (a target's op): nothing is bounded
        return _Facts([_Values.unknown(math.inf)] * op.dim, lo, hi)

    def _input(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> _Facts:
        integer = bool(op.attrs.get("integer", 0))
        grid = op.attrs.get("grid")
        # per feature: the lattice (origin, step) its values lie on, or None
        lattices = [(float(math.ceil(a)), 1.0) if integer and math.isfinite(a) else None for a in lo.tolist()]
        if grid is not None:  # a declared grid starts at the feature's lower bound (its declaration is exact)
            starts = op.attrs["lower"].to_float().values.tolist()
            lattices = [(a, g) if g > 0 else None for a, g in zip(starts, grid.to_float().values.tolist())]
        values = []
        for a, b, lattice in zip(lo.tolist(), hi.tolist(), lattices):
            count = math.floor((b - lattice[0]) / lattice[1]) + 1 if lattice is not None and math.isfinite(b) \
                else math.inf
            if a == b:
                points = np.array([a])
            elif count <= MAX_POINTS:
                points = lattice[0] + lattice[1] * np.arange(count, dtype=np.float64)
            else:
                points = None
            size = max(abs(a), abs(b))
            if points is not None:  # the inputs are rounded to the dtype
                values.append(_Values.of(points, np.abs(points - self._stored(points)), 0.0))
            elif lattice is not None and math.isfinite(size) and \
                    size < 2.0 ** (self.bits + _low_bit(np.array(lattice))):  # too many to list; the dtype holds them
                values.append(_Values.unknown(0.0, lattice, 0.0, size))
            else:
                values.append(_Values.unknown(0.0 if self.dtype == "float64" else self.u * size))
        return _Facts(values, lo, hi)

    def _linear(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> _Facts:
        (x,) = op.operands
        bias = op.attrs["b"].to_float().values.astype(np.float64)
        values = []
        clock = None if self[x].clock is None else np.full((self[x].clock.shape[0], op.dim), np.nan)
        for i, (cols, w) in enumerate(self._rows(op.attrs["A"])):
            form, at_states = self._clocked_form(x, cols, w, float(bias[i]))
            if at_states is not None:
                clock[:, i] = at_states
            if form.points is None:
                rounding = self._row_rounding(x, cols, w, float(bias[i]))
                values.append(_Values.unknown(form.err + rounding, form.grid, form.slack, form.size))
            else:
                errors = form.errors + self._point_rounding(x, cols, w, float(bias[i]), form)
                values.append(_Values(form.points, errors, form.slack, float(np.max(errors, initial=0.0)), None,
                                      form.size, slacks=form.slacks))
        shift = self._rational_shift(x, op.attrs["A"], op.attrs["b"])
        if shift is not None:  # the exact value moves by the shift, the computed one stays
            values = [dataclasses.replace(v, slack=v.slack + d, err=v.err + d,
                                          errors=None if v.errors is None else v.errors + d,
                                          slacks=None if v.slacks is None else v.slacks + d)
                      for v, d in zip(values, shift.tolist())]
        return _Facts(values, lo, hi, clock=clock)

    def _point_rounding(self, x: Op, cols: np.ndarray, weights: np.ndarray, bias: float, form: _Values) -> np.ndarray:
        """:meth:`_rounding` at each value of the row, from the magnitudes and lowest bits of its terms there."""
        hidden, n, grain, total = self._reads(x, cols, weights)
        # what the computed terms reach (form.mags holds the bias)
        mags = np.minimum(form.mags + float(np.sum(np.abs(weights) * self[x].err[cols])) + hidden, total + abs(bias))
        exact_mags, grains = _with_hidden(form.mags, form.grains, hidden, grain, total + abs(bias))
        return self._dot_rounding(weights, bias, form, mags, exact_mags, grains, n,
                                  form.errors if hidden == 0 else None)

    def _dot_rounding(self, weights, bias: float, values: _Values, mags, exact_mags, grains, n: int,
                      deviation=None) -> np.ndarray:
        """Per value of a row's form: ``mags`` (what its computed terms reach) times the rounding of a dot product
        of ``n`` terms and of storing the weights — none where the weights are stored as they are, the values
        exact, and the sum of ``exact_mags`` with lowest bit ``grains`` fits the dtype's precision.  Where only the
        values are not exact, at most ``(2^(n+1) − 1)·deviation`` (``deviation``: how far the computed terms are
        from the exact ones, ``Σ|w·e|``; None where the row reads hidden terms): the row computed from the exact
        values is then a dtype number at every product and partial sum, in any order, and a rounding goes to the
        nearest number, so a product at most doubles its term's distance and each of the ``n`` sums the distance
        built up — an executor's extra terms whose exact value is 0 (a split value's low part) add at most twice
        themselves and no level.  That is an error that a dtype-sized rounding ``u·|value|`` would otherwise be
        charged (an integer read with a 10⁻²⁵ error)."""
        representable = bool(np.array_equal(self._stored(weights), weights)) and float(self._stored(bias)) == bias
        storage = 0.0 if representable else self.u * mags
        fits = representable & (values.slacks == 0) & self._fits(exact_mags, grains)
        rounding = storage + self._dot_error(n, mags)
        if deviation is not None:
            doubled = zero_safe_product(2.0 ** (n + 1) - 1 if n < 1000 else math.inf, deviation)
            rounding = np.where(fits, np.minimum(rounding, doubled), rounding)
        return np.where(fits & (values.errors == 0), 0.0, rounding)

    def _relu(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> _Facts:
        (p,) = op.operands
        fp = self[p]
        unit_on, unit_off, unit_exact, unit_closed, unit_partial = self._unit_errors(op)
        if p.kind != "linear":
            reads = self._read_rounding(p)  # the unit reads its argument itself
            values = []
            for v, bottom, top, on, off, exact, closed, gain in zip(
                    fp.values, fp.lo.tolist(), fp.hi.tolist(), unit_on.tolist(), unit_off.tolist(),
                    unit_exact.tolist(), unit_closed.tolist(), unit_partial.tolist()):
                read = float(reads[len(values)])
                if v.points is None:
                    low, high = bottom - (v.err + read), top + v.err + read
                    err = (0.0 if high <= 0 else v.err + read) + \
                        float(_construction_error(low, high, on, off, exact, closed, gain))
                    grid = v.grid
                    on_zero = grid is not None and grid[1] > 0 and grid[0] / grid[1] == round(grid[0] / grid[1])
                    if grid is not None and not (bottom - v.slack >= 0 or on_zero):
                        grid = _grid_union([grid, (0.0, 0.0)])
                    values.append(_Values.of(np.zeros(1), np.full(1, err), 0.0) if top <= 0 else
                                  _Values.unknown(err, grid, v.slack, v.size))
                else:
                    e = v.errors + read
                    low, high = v.points - v.slacks - e, v.points + v.slacks + e
                    errors = np.where(high <= 0, 0.0, e) + _construction_error(low, high, on, off, exact, closed, gain)
                    # an exact value at or below 0 is an exact 0 after the ReLU
                    values.append(_Values.of(np.maximum(v.points, 0.0), errors,
                                             np.where(v.points + v.slacks <= 0, 0.0, v.slacks)))
            return _Facts(values, lo, hi, clock=None if fp.clock is None else np.maximum(fp.clock, 0.0))
        groups = self._groups(p)
        gates = self.gate_rounding.get(id(op))
        for group in groups:
            group.on = group.on + unit_on[group.units]
            group.off = group.off + unit_off[group.units]
            group.exact_from = np.minimum(group.exact_from, unit_exact[group.units])
            group.closed_below = np.maximum(group.closed_below, unit_closed[group.units])
            group.partial_gain = unit_partial[group.units]
            if gates is not None and group.terms_reach is not None:
                self._gate_rounding_per_candidate(group, gates)
        values: list = [None] * op.dim
        unit_of: dict = {}
        clock = None if fp.clock is None else np.full((fp.clock.shape[0], op.dim), np.nan)
        steps = self.hidden_steps.get(id(op))
        for g, group in enumerate(groups):
            at = None if group.y_at is None or clock is None else np.searchsorted(group.y.points, group.y_at)
            for pos, unit in enumerate(group.units.tolist()):
                unit_of[unit] = (g, pos)
                if at is None:
                    values[unit] = group.evaluate(np.array([pos]), np.ones(1))
                else:  # evaluated once at y's points: the unit's values, and its value at each clock state
                    found = group.at_points(np.array([pos]), np.ones(1))
                    values[unit] = _Values.of(*found)
                    clock[:, unit] = found[0][at]
        if steps is not None:
            # a unit's hidden terms are its own earlier values times its step: exact where it is computed exactly and
            # never passes part of a value (a GRU pair holds what it last passed)
            grains = np.full(op.dim, np.nan)
            for unit in np.flatnonzero(steps).tolist():
                g, pos = unit_of[unit]
                grain = values[unit].exact_grain
                if grain is not None and groups[g].saturated(pos):
                    grains[unit] = _low_bit(steps[unit:unit + 1]) + grain
            self._set_hidden_grains(op, grains)
        return _Facts(values, lo, hi, groups=groups, unit_of=unit_of, clock=clock)

    def _gate_rounding_per_candidate(self, group: _Group, gates: tuple) -> None:
        """Where the units' gate rounding has a part that scales with what their rows' terms reach, the group's
        thresholds at each value of ``y`` with what they reach there (never looser than the stated ones)."""
        exact_from, closed_below, fixed, terms = (a[group.units] for a in gates)
        rounding = self.u * (fixed[None, :] + terms[None, :] * group.terms_reach)
        scaled = terms > 0
        group.exact_from = np.where(scaled[None, :], np.minimum(group.exact_from[None, :], exact_from + rounding),
                                    group.exact_from[None, :])
        group.closed_below = np.where(scaled[None, :],
                                      np.maximum(group.closed_below[None, :], closed_below - rounding),
                                      group.closed_below[None, :])

    def _groups(self, p: Op) -> list[_Group]:
        """The units of ``relu(p)`` grouped by the direction of their rows in ``p`` (rows equal up to a factor)."""
        (x,) = p.operands
        fx, fp = self[x], self[p]
        bias = p.attrs["b"].to_float().values.astype(np.float64)
        size_x = _magnitude(fx.lo, fx.hi)
        err_x = fx.err
        by_key: dict = {}
        carried: dict = {}
        rows = list(self._rows(p.attrs["A"]))
        for i, (cols, w) in enumerate(rows):
            if fx.groups is not None and cols.size == 1 and w[0] > 0 and bias[i] <= 0:
                carried.setdefault(fx.unit_of[int(cols[0])][0], []).append(i)
                continue
            key = (cols.tobytes(), _direction_key(w)) if cols.size else ("constant", i)
            by_key.setdefault(key, []).append(i)
        groups = [self._carried_group(fx, p, g, members, bias, rows) for g, members in carried.items()]
        for members in by_key.values():
            cols, first_w = rows[members[0]]
            units = np.array(members, dtype=np.int64)
            if cols.size == 0:
                d, k = np.zeros(0), np.ones(units.size)
                y, y_at = _Values.of(np.zeros(1), np.zeros(1), 0.0), None
            else:
                d, k = _exact_direction(first_w, np.array([rows[i][1][0] for i in members]))
                y, y_at = self._clocked_form(x, cols, d)
            off = [self._off_direction(rows[i][1], k[n], d) for n, i in enumerate(members)]
            residual = np.array([float(np.sum(zero_safe_product(r, size_x[cols]))) for r in off])
            terms_reach = None
            if y.points is not None and cols.size:
                delta = np.stack([self._unit_rounding(x, cols, rows[i][1], float(bias[i]), k[n], d, y, r)
                                  for n, (r, i) in enumerate(zip(off, members))], axis=1)
                terms_reach = np.stack([self._unit_reach(x, cols, rows[i][1], float(bias[i]), k[n], d, y, r)[0]
                                        for n, (r, i) in enumerate(zip(off, members))], axis=1)
            else:
                delta = np.array([self._row_rounding(x, cols, rows[i][1], float(bias[i]))
                                  + float(np.sum(zero_safe_product(r, err_x[cols]))) for r, i in zip(off, members)])
            pieces = None
            if y.points is None and cols.size > 1 and not any(np.any(r) for r in off):
                pieces = [self._piece_rounding(x, cols, rows[i][1], float(bias[i])) for i in members]
            first = members[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                ends = sorted(((fp.lo[first] - bias[first]) / k[0], (fp.hi[first] - bias[first]) / k[0]))
            y_lo, y_hi = ends if all(np.isfinite(ends)) else (-math.inf, math.inf)
            groups.append(_Group(units, k, bias[units], residual, delta, y, y_lo, y_hi, piece_rounding=pieces,
                                 y_at=y_at, terms_reach=terms_reach))
        shift = self._rational_shift(x, p.attrs["A"], p.attrs["b"])
        if shift is not None:  # the exact rows move by the shift (residual), the computed ones stay (delta)
            for group in groups:
                moved = shift[group.units]
                group.residual = group.residual + moved
                group.delta = group.delta + moved
                if group.piece_rounding is not None:
                    group.piece_rounding = [lambda reach, f=f, m=float(m): f(reach) + m
                                            for f, m in zip(group.piece_rounding, moved.tolist())]
        return groups

    def _carried_group(self, fx: _Facts, p: Op, g: int, members: list[int], bias: np.ndarray, rows) -> _Group:
        """Units ``ReLU(v·u + b)`` (``v > 0 ≥ b``) of units ``u = ReLU(k y + c)`` of one group of the operand:
        ``ReLU(v k y + v c + b)`` of the same scalar ``y`` (for ``k y + c < 0`` both sides are 0), so the steps a
        layer carries or shifts stay one group with the units they came from."""
        (x,) = p.operands
        deep: _Group = fx.groups[g]
        k, b, residual, delta = [], [], [], []
        y_size = float(max(abs(deep.y_lo), abs(deep.y_hi)))
        for i in members:
            (c,), (v,) = rows[i]
            pos = fx.unit_of[int(c)][1]
            k.append(v * deep.k[pos])
            shifted = v * deep.b[pos]
            b.append(shifted + bias[i])
            exact = bool(np.all(product_exact(np.array([v, v]), np.array([deep.k[pos], deep.b[pos]]),
                                               np.array([k[-1], shifted])))) and \
                sum_exact(float(shifted), float(bias[i]), float(b[-1]))
            # k and b rounded by this float64 arithmetic: |Δk|·|y| + |Δb|
            slip = 0.0 if exact else 2 * _ANALYSIS_U * (abs(k[-1]) * y_size + abs(shifted) + abs(bias[i]))
            residual.append(v * deep.residual[pos] + slip)
            # what the unit's construction added to it (on or off) moves this row
            delta.append(v * (deep.delta_of(pos) + deep.added_at(pos))
                         + self._carry_rounding(deep, pos, v, float(bias[i]), x, int(c)))
        per_point = any(np.ndim(dl) for dl in delta)
        delta = np.stack([np.broadcast_to(dl, deep.y.points.shape) for dl in delta], axis=1) if per_point \
            else np.array(delta)
        return _Group(np.array(members, dtype=np.int64), np.array(k), np.array(b), np.array(residual),
                      delta, deep.y, deep.y_lo, deep.y_hi,
                      y_at=deep.y_at if self[p].clock is not None else None)

    def _unit_reach(self, x: Op, cols, row, bias: float, k: float, d, y: _Values, off) -> tuple:
        """What the computed terms of a unit's row ``k·(d·x) + bias`` reach at each value of ``y = d·x`` (its
        part off the direction, ``off``, and the hidden terms of what it reads included), and the parts the
        row's rounding needs: ``(reach, computed, hidden, terms, grain, total)``."""
        err = self[x].err[cols]
        hidden, n, grain, total = self._reads(x, cols, row)
        computed = abs(k) * (y.mags + float(np.sum(zero_safe_product(np.abs(d), err)))) + abs(bias)
        reach = np.minimum(computed + abs(k) * y.slacks + hidden + float(np.sum(zero_safe_product(np.abs(off),
                           _magnitude(self[x].lo[cols], self[x].hi[cols]) + err))), total + abs(bias))
        return reach, computed, hidden, n, grain, total

    def _unit_rounding(self, x: Op, cols, row, bias: float, k: float, d, y: _Values, off) -> np.ndarray:
        """The rounding of a unit's row ``k·(d·x) + bias`` at each value of ``y = d·x``, plus what its part off
        the direction (``off``) takes from ``x``'s error."""
        err = self[x].err[cols]
        _, computed, hidden, n, grain, total = self._unit_reach(x, cols, row, bias, k, d, y, off)
        grains = np.minimum(lowest_bit(np.array([k]))[0] + y.grains, lowest_bit(np.array([bias]))[0])
        mags = np.minimum(computed + hidden, total + abs(bias))
        exact_mags, grains = _with_hidden(computed, grains, hidden, grain, total + abs(bias))
        # a part off the direction is not among y's exact terms: never exact (an infinite magnitude)
        rounding = self._dot_rounding(row, bias, y, mags, np.inf if np.any(off) else exact_mags, grains, n,
                                      zero_safe_product(abs(k), y.errors) if hidden == 0 else None)
        return rounding + float(np.sum(zero_safe_product(off, err)))

    def _carry_rounding(self, deep: _Group, pos: int, v: float, bias: float, x: Op, col: int):
        """The rounding of ``v·u + bias`` for a unit ``u`` of ``deep``: none where ``u`` is an exact 0 or ``v`` a
        power of two without bias; per value of ``deep``'s ``y`` where it has values."""
        representable = float(self._stored(v)) == v and float(self._stored(bias)) == bias
        hidden, n, grain, total = self._reads(x, np.array([col]), np.array([v]))
        if representable and bias == 0 and math.frexp(v)[0] == 0.5 and n == 1 and hidden == 0:
            return 0.0
        if deep.y.points is None:
            return self._row_rounding(x, np.array([col]), np.array([v]), bias)
        pre, pre_exact, spread, e_hat = deep.decide(pos)
        added = deep.added_at(pos)
        e_hat = e_hat + added
        mags = np.minimum(abs(v) * (np.maximum(pre + spread, 0.0) + e_hat) + hidden, total) + abs(bias)
        off = (pre + spread <= -e_hat) & (added == 0) & (hidden == 0)  # an exact 0
        # where the unit is known exactly, v·u + bias is exact when its terms (and hidden ones) fit the dtype's
        # precision
        unit = np.maximum(pre, 0.0)
        known = (e_hat == 0) & (spread == 0) & pre_exact
        grains = np.minimum(lowest_bit(np.array([v]))[0] + lowest_bit(unit), lowest_bit(np.array([bias]))[0])
        fits = self._fits(*_with_hidden(abs(v) * unit + abs(bias), grains, hidden, grain, total + abs(bias)))
        storage = 0.0 if representable else self.u * mags
        return np.where((off | (known & fits)) & representable, 0.0,
                        storage + self._dot_error(n, mags))

    @staticmethod
    def _off_direction(row: np.ndarray, k: float, d: np.ndarray) -> np.ndarray:
        """``|row − k·d|`` per entry, rounded up (0 where ``k·d`` is exactly the row)."""
        if d.size == 0:
            return np.zeros(0)
        along = k * d
        exact = product_exact(np.full(d.shape, k), d, along)
        return np.abs(row - along) * (1 + 2 * _ANALYSIS_U) + np.where(exact, 0.0, 2 * _ANALYSIS_U * np.abs(along))

    @staticmethod
    def _product_grid(a: _Values, b: _Values, ma: float, mb: float):
        """``(grid, slack, size)`` of ``a·b`` when both factors lie on lattices: a few values of one times the
        other's lattice, else the product of the two lattices (``(o_a + g_a i)(o_b + g_b j)``)."""
        if b.points is not None and a.points is None:
            a, b, ma, mb = b, a, mb, ma
        if a.points is not None and a.points.size <= 64 and b.points is None and b.grid is not None:
            offset, step = b.grid
            n = a.points.size
            offsets = (a.points, np.full(n, offset))  # (left factors, right factors) of each lattice's offset
            steps = (np.abs(a.points), np.full(n, step))
        else:
            la, lb = a.lattice, b.lattice
            if la is None or lb is None:
                return None, math.inf, math.inf
            (oa, ga), (ob, gb) = la, lb
            offsets = (np.full(3, oa), np.full(3, ob))
            steps = (np.array([abs(oa), ga, ga]), np.array([gb, abs(ob), gb]))
        left, right = np.concatenate([offsets[0], steps[0]]), np.concatenate([offsets[1], steps[1]])
        products = left * right
        n = offsets[0].size
        grid = _grid_union(list(zip(products[:n].tolist(), products[n:].tolist())))
        rounding = 0.0 if bool(np.all(product_exact(left, right, products))) else 4 * _ANALYSIS_U * ma * mb
        return grid, ma * b.slack + mb * a.slack + a.slack * b.slack + rounding, ma * mb

    def _multi(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> _Facts:
        (x,) = op.operands
        fx = self[x]
        half = op.dim
        size = _magnitude(fx.lo, fx.hi)
        reads = self._read_rounding(x)  # the product's units read both operands themselves
        values = []
        clock = None if fx.clock is None else np.full((fx.clock.shape[0], half), np.nan)
        selectors, margins = self.selects.get(id(op), (np.zeros(half, dtype=np.int64), np.zeros(half)))
        steps = self.hidden_steps.get(id(op))
        grains = np.full(half, np.nan)
        for i in range(half):
            a, b = (v if r == 0 else dataclasses.replace(v, err=v.err + r, errors=None if v.errors is None
                                                         else v.errors + r)
                    for v, r in ((fx.values[i], reads[i]), (fx.values[i + half], reads[i + half])))
            if selectors[i]:
                selector = _selected(a if selectors[i] == 1 else b, float(margins[i]))
                if selector is None:  # its computed value may leave the margin: the gates pick anything
                    values.append(_Values.unknown(math.inf))
                    continue
                a, b = (selector, b) if selectors[i] == 1 else (a, selector)
                carried = (b if selectors[i] == 1 else a).exact_grain
                if steps is not None and steps[i] and carried is not None:
                    # its units' terms: multiples of the candidates' step times the carried factor, each exact
                    grains[i] = _low_bit(steps[i:i + 1]) + carried
            ma, mb = float(size[i]), float(size[i + half])
            if clock is not None and not np.isnan(fx.clock[0, i]) and not np.isnan(fx.clock[0, i + half]):
                # only the pairs of factors the clock's states reach
                at_a, at_b = fx.clock[:, i], fx.clock[:, i + half]
                (ea, sa), (eb, sb) = _looked_up(a, at_a), _looked_up(b, at_b)
                exact = (ea == 0) & (eb == 0) & (sa == 0) & (sb == 0) \
                    & self._fits(np.abs(at_a * at_b), lowest_bit(at_a) + lowest_bit(at_b))
                clock[:, i], product = self._product_of_pairs(at_a, ea, sa, at_b, eb, sb, exact)
                values.append(product)
            elif a.points is not None and b.points is not None and a.points.size * b.points.size <= 4 * MAX_POINTS:
                exact = a.exact and b.exact and bool(self._fits(ma * mb, _low_bit(a.points) + _low_bit(b.points)))
                values.append(self._product_of_pairs(a.points[:, None], a.errors[:, None], a.slacks[:, None],
                                                     b.points[None, :], b.errors[None, :], b.slacks[None, :],
                                                     exact)[1])
            else:
                ea, eb = a.err, b.err
                ga, gb = a.exact_grain, b.exact_grain
                exact = ga is not None and gb is not None and bool(self._fits(ma * mb, ga + gb))
                with np.errstate(invalid="ignore", over="ignore"):
                    rounding = 0.0 if exact else ROUNDING_HOPS * self.u * zero_safe_product(ma + ea, mb + eb)
                    err = float(zero_safe_product(ma, eb) + zero_safe_product(mb, ea) + zero_safe_product(ea, eb)
                                + rounding)
                values.append(_Values.unknown(err, *self._product_grid(a, b, ma, mb)))
        if not np.isnan(grains).all():
            self._set_hidden_grains(op, grains)
        return _Facts(values, lo, hi, clock=clock)

    def _product_of_pairs(self, xa, ea, sa, xb, eb, sb, exact) -> tuple[np.ndarray, _Values]:
        """``xa·xb`` over pairs of candidate factors (exact values, errors and slacks of each, in shapes that
        broadcast together; ``exact``: where the dtype computes the product exactly), and its values."""
        xa, ea, sa, xb, eb, sb = np.broadcast_arrays(xa, ea, sa, xb, eb, sb)
        product = xa * xb
        pa, pb = np.abs(xa), np.abs(xb)
        with np.errstate(invalid="ignore", over="ignore"):
            rounding = np.where(exact, 0.0, ROUNDING_HOPS * self.u * zero_safe_product(pa + ea, pb + eb))
            errors = zero_safe_product(pa, eb) + zero_safe_product(pb, ea) + zero_safe_product(ea, eb) + rounding
            slack = (zero_safe_product(pa, sb) + zero_safe_product(pb, sa) + sa * sb
                     + np.where(product_exact(xa, xb, product), 0.0, _ANALYSIS_U * np.abs(product)))
        return product, _Values.of(product.ravel(), errors.ravel(), slack.ravel())

    def _linstate(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> _Facts:
        (x,) = op.operands
        fx = self[x]
        k = op.dim
        a_mat: Matrix = op.attrs["A"]
        bias = op.attrs["bias"].to_float().values.astype(np.float64)
        init = op.attrs["init"].to_float().values.astype(np.float64)
        size_s = np.maximum(_magnitude(lo, hi), np.abs(init))
        size_x = _magnitude(fx.lo, fx.hi)
        a_rows = list(self._rows(a_mat))
        b_rows = list(self._rows(op.attrs["B"]))
        drives = [self._form(x, cols, w, float(bias[i])) for i, (cols, w) in enumerate(b_rows)]
        points, grids = self._grid_points(a_rows, drives, init, lo, hi)
        # exact constants float64 cannot hold move the exact state every step (the drive's and the recurrence's
        # on the state's magnitude; on its error: _accumulate) and at the start
        shift = np.zeros(k)
        for matrix, offset, reads in ((op.attrs["B"], op.attrs["bias"], None), (a_mat, Vector.zeros(k), size_s)):
            moved = self._rational_shift(x, matrix, offset, reads)
            shift = shift if moved is None else shift + moved
        init_gap = _rational_gap(op.attrs["init"])
        init_gap = np.zeros(k) if init_gap is None else init_gap
        # the drives' slack accumulates like an error without rounding
        blocks = _block_order(a_mat)
        slack = self._accumulate(a_mat, blocks, np.array([d.slack for d in drives]) + shift, init_gap, rounding=False)
        clock = self._trajectory_points(a_mat, a_rows, drives, init, points, slack)

        def step_rounding(i: int, states_exact: bool) -> float:
            # the state's own error is not counted here: _accumulate grows the rounding with it
            state_terms = [(_Values.of(points[c], np.zeros(points[c].size), float(slack[c]))
                            if states_exact and points[c] is not None else
                            _Values.unknown(0.0, grids[c], float(slack[c])) if states_exact else _Values.unknown(0.0),
                            float(size_s[c]), w)
                           for c, w in zip(a_rows[i][0].tolist(), a_rows[i][1].tolist())]
            drive_terms = [(fx.values[c], float(size_x[c]), w) for c, w in zip(b_rows[i][0].tolist(),
                                                                                 b_rows[i][1].tolist())]
            hidden, n, grain, _ = self._reads(x, *b_rows[i])  # the state's terms are beside the drive's
            return self._rounding(state_terms + drive_terms, float(bias[i]),
                                  (hidden, n + len(state_terms), grain, math.inf))

        local = np.array([step_rounding(i, True) for i in range(k)])
        # a row is exact only while every state it reads is: drop exactness along the dependencies
        inexact = (local > 0) | np.array([d.err > 0 for d in drives])
        for i in np.flatnonzero(_spread(a_rows, inexact) & ~inexact).tolist():
            local[i] = step_rounding(i, False)
        drive_err = np.array([d.err for d in drives])
        init_err = np.abs(init - self._stored(init)) + init_gap
        err = self._accumulate(a_mat, blocks, drive_err + local + shift, init_err) + self._conv_rounding(op)
        values = [_Values.unknown(float(e), grid, float(s), float(m)) if pts is None else
                  _Values(pts, np.full(pts.size, float(e)), float(s), float(e), None, float(m))
                  for pts, grid, e, s, m in zip(points, grids, err.tolist(), slack.tolist(), size_s.tolist())]
        return _Facts(values, lo, hi, clock=clock)

    def _conv_rounding(self, op: Op) -> np.ndarray:
        """What a target adds where it computes ``op``'s state each step as one sum over a delay line (the conv
        fields of its ``local_errors``, :func:`lsrl.targets.shared.common.conv_sum_fields` states them): per row,
        what the sum of ``conv_terms`` products rounds with every value at its bound, and ``u`` of each further
        partial sum where the values are off by their errors (through taps of ``conv_gain`` in all) — none where
        every value is exact on a grain, every tap a multiple of ``2^conv_tap_bit`` that the dtype stores
        (``conv_float32``, for a float32 run) and the sum fits.  Its steps do not feed each other, so this is not
        accumulated; the recurrence the analysis follows besides (a bound on the values' errors through the taps)
        rounds too, which only widens the bound."""
        if id(op) not in self.convs:
            return np.zeros(op.dim)
        terms, reach, gain, tap_bit, float32_taps, rounding = self.convs[id(op)]
        source, W = op.operands[0], op.attrs["B"].to_float().scipy()
        while source.kind == "linear":   # the conv reads the value the stage's linears read
            W = W @ source.attrs["A"].to_float().scipy()
            source, = source.operands
        values = [self[source].values[q] for q in np.unique(W.tocoo().col).tolist()]
        grains = [v.exact_grain for v in values]
        err = max([v.err for v in values], default=0.0)
        grain = min([g for g in grains if g is not None] + [0])   # the constant channel reads an exact 1
        out = np.zeros(op.dim)
        for i in np.flatnonzero(terms).tolist():
            stored = self.dtype == "float64" or float32_taps[i] == 1.0
            with np.errstate(invalid="ignore", over="ignore"):
                moved = float(zero_safe_product(gain[i], err))
            if stored and (gain[i] == 0 or None not in grains) \
                    and bool(self._fits(reach[i] + moved, int(tap_bit[i]) + (grain if gain[i] else 0))):
                continue
            out[i] = rounding[i] + _gamma(int(terms[i]) + 1, self.u) * moved
        return out

    def _grid_points(self, a_rows, drives: list[_Values], init, lo, hi) -> list:
        """Candidate states of coordinates that stay on a grid ``2^q·Z``: integer ``A`` rows whose drive (its
        values, or its lattice), initial value and read coordinates are multiples of ``2^q`` (counters, shift
        registers), listed within their range (only the grid where they are too many)."""
        k = len(a_rows)
        grain = np.zeros(k)
        usable = np.ones(k, dtype=bool)
        for i in range(k):
            w = a_rows[i][1]
            drive = drives[i]
            held = drive.points if drive.points is not None else \
                None if drive.lattice is None else np.array(drive.lattice)
            if held is None or not np.all(w == np.round(w)):
                usable[i] = False
                continue
            grain[i] = min(_low_bit(held), _low_bit(init[i:i + 1]))
        usable = ~_spread(a_rows, ~usable)
        changed = True
        while changed:  # a coordinate's grain is the finest among those it reads
            changed = False
            for i in np.flatnonzero(usable).tolist():
                cols = a_rows[i][0]
                if cols.size and grain[cols].min() < grain[i]:
                    grain[i], changed = grain[cols].min(), True
        points, grids = [], []
        for i in range(k):
            if not usable[i]:
                points.append(None)
                grids.append(None)
                continue
            step = math.ldexp(1.0, int(min(grain[i], 60)))
            grids.append((0.0, step))
            bounded = np.isfinite(lo[i]) and np.isfinite(hi[i])
            first, last = (math.ceil(lo[i] / step), math.floor(hi[i] / step)) if bounded else (0, MAX_POINTS)
            points.append(np.arange(first, last + 1, dtype=np.float64) * step if last - first < MAX_POINTS else None)
        return points, grids

    def _trajectory_points(self, a_mat: Matrix, a_rows, drives: list[_Values], init, points,
                           slack) -> np.ndarray | None:
        """Candidate states of the coordinates that follow one trajectory whatever the input (a constant drive,
        reading only such coordinates: rotation counters, clocks), from a float64 run of it clustered to at
        most :data:`MAX_POINTS` values; ``slack`` covers the run's rounding and the clustering.  Returns their
        clock (:attr:`_Facts.clock`; None where there is none or it has too many states)."""
        fixed = ~_spread(a_rows, ~np.array([d.points is not None and d.points.size == 1 and d.slack == 0.0
                                            for d in drives], dtype=bool))
        wanted = np.flatnonzero(fixed & np.array([p is None for p in points], dtype=bool))
        if wanted.size == 0 or self.t_max is None or self.t_max > _MAX_TRAJECTORY:
            return None
        closure = np.flatnonzero(fixed)
        block = a_mat.rows(closure).cols(closure).to_dense()
        drive = np.array([drives[i].points[0] for i in closure])
        states, drift = float64_run(block, drive, init[closure], self.t_max)
        where = {int(c): n for n, c in enumerate(closure.tolist())}
        clocked, labels = [], []  # per step, the cluster each clocked coordinate is in
        for i in wanted.tolist():
            run = states[:, where[i]]
            values = np.sort(run)
            tolerance = max(64 * drift, 1e-12 * float(np.max(np.abs(values), initial=0.0)))
            cuts = np.flatnonzero(np.diff(values) > tolerance) + 1
            clusters = np.split(values, cuts)
            if len(clusters) > MAX_POINTS:
                continue
            points[i] = np.array([(c[0] + c[-1]) / 2 for c in clusters])
            slack[i] += max((c[-1] - c[0]) / 2 for c in clusters) + drift  # on what exact constants add
            clocked.append(i)
            labels.append(np.searchsorted(values[cuts], run, side="right"))
        if not clocked:
            return None
        reached = np.unique(np.stack(labels, axis=1), axis=0)
        if reached.shape[0] > MAX_POINTS:
            return None
        clock = np.full((reached.shape[0], a_mat.shape[0]), np.nan)
        for n, i in enumerate(clocked):
            clock[:, i] = points[i][reached[:, n]]
        return clock

    def _accumulate(self, a_mat: Matrix, blocks: list, drive: np.ndarray, init_err: np.ndarray, *,
                    rounding: bool = True) -> np.ndarray:
        """Bounds of ``E_t = Â E_{t−1} + c`` over ``t ≤ t_max`` (|c| ≤ ``drive``, ``E_0`` ≤ ``init_err``), the
        rounding of each step growing with the error it reads (``γ·|Â|·E``)."""
        k = a_mat.shape[0]
        err = np.zeros(k)
        # the rounding of a step grows with the error of the state it reads, and A is stored rounded
        growth = ROUNDING_HOPS * _gamma(int(np.max(np.diff(a_mat.scipy().indptr), initial=0)) + 2, self.u) + self.u \
            if rounding else 0.0
        if rounding and _rational_gap(a_mat) is not None:  # A read as float64 first
            growth += UNIT_ROUNDOFF["float64"]
        steps = math.inf if self.t_max is None else float(self.t_max)
        stored = a_mat.scipy().astype(np.float64)
        if rounding:
            stored.data = self._stored(stored.data)
        stored.eliminate_zeros()
        abs_a = abs(stored).tocsr()
        for idx in blocks:
            # blocks come in dependency order, so err holds the earlier blocks' bounds and 0 elsewhere; the sparse
            # product multiplies stored entries only (an unbounded coordinate a row does not read stays out)
            with np.errstate(invalid="ignore", over="ignore"):
                c = drive[idx] + (abs_a[idx] @ err) * (1 + growth)
            e0 = init_err[idx]
            if not np.all(np.isfinite(c)):
                err[idx] = math.inf
                continue
            inner = abs_a[idx][:, idx]
            if idx.size == 1:
                rho = float(inner[0, 0]) * (1 + growth)
                cc, start = float(c[0]), float(e0[0])
            elif idx.size <= _MAX_NORM_BLOCK:  # the 2-norm, as range analysis bounds the block
                rho = _spectral_norm_bound(Matrix.from_scipy(stored[idx][:, idx])) \
                    + growth * float(np.sqrt(np.sum(inner.data ** 2)))
                cc, start = float(np.linalg.norm(c)) * _NORM_MARGIN, float(np.linalg.norm(e0)) * _NORM_MARGIN
            else:  # the ∞-norm: exact AᵀA of a large block would be slow
                rho = float(np.max(inner.sum(axis=1))) * (1 + growth) * _NORM_MARGIN
                cc, start = float(np.max(np.abs(c))), float(np.max(e0))
            if cc == 0.0 and start == 0.0:
                bound = 0.0
            elif rho < 1.0:
                bound = max(start, cc / (1.0 - rho)) * _NORM_MARGIN
            elif math.isinf(steps):
                bound = math.inf
            elif rho == 1.0:
                bound = start + steps * cc
            else:
                with np.errstate(over="ignore"):
                    power = float(np.power(rho, steps))
                bound = power * start + cc * (power - 1.0) / (rho - 1.0)
            err[idx] = bound
        return err


_LOCAL_FIELDS = ("on", "on_u", "off", "off_u", "partial_gain", "hidden", "units", "hidden_step", "terms_total",
                 "selector", "margin", "exact_from", "exact_from_u", "closed_below", "closed_below_u", "underflow",
                 "normal_from", "gate_fixed_u", "gate_terms", "conv_terms", "conv_reach", "conv_gain", "conv_tap_bit",
                 "conv_float32", "conv_rounding32", "conv_rounding64")
#: the fields a model saved before they existed may lack (none: 0)
_OPTIONAL_LOCAL_FIELDS = ("gate_fixed_u", "gate_terms", "conv_terms", "conv_reach", "conv_gain", "conv_tap_bit",
                          "conv_float32", "conv_rounding32", "conv_rounding64")
#: the local fields that may be negative: a pre-activation, and the exponent of a tap's lowest bit
_SIGNED_LOCAL_FIELDS = ("closed_below", "conv_tap_bit")
#: float32's subnormal spacing over float64's, and its smallest normal over float64's: a local ``underflow`` and
#: ``normal_from`` are stated for float32 runs and scaled by these for float64 ones
_FLOAT64_UNDERFLOW, _FLOAT64_NORMAL = 2.0 ** -925, 2.0 ** -896
#: ``selector`` of a product coordinate: none of its factors, the first, or the second selects (its units hold the
#: other factor times each candidate of the selector, saturated gates pick one)
_SELECTORS = (0, 1, 2)
#: the ops whose results a target keeps for later ops to read (linear ops are folded into their readers)
_KEPT_KINDS = ("input", "relu", "linstate", "multi")
#: the narrow dtypes a target's executors may read values in (metadata ``split_reads``)
_NARROW_DTYPES = ("float32",)
#: a norm's Σ r² past it may overflow float32 (its largest number is just below 2^128)
_FLOAT32_SQUARES = 2.0 ** 127


def _split_reads_of(module: Module) -> tuple[np.dtype | None, float, dict | None]:
    """The narrow dtype ``module``'s metadata ``split_reads`` names (None without one), its ``read_step`` (the
    narrow dtype's smallest subnormal when not given: a power of two at least that) and its ``stream_norms``
    (:func:`_norm_drift`; None when not given)."""
    name = module.metadata.get("split_reads")
    if name is None:
        return None, 0.0, None
    if name not in _NARROW_DTYPES:
        raise ValueError(f"module @{module.name} metadata split_reads: expected one of {', '.join(_NARROW_DTYPES)}, "
                         f"got {name!r}")
    smallest = float(np.finfo(name).smallest_subnormal)
    step = module.metadata.get("read_step", smallest)
    if not (isinstance(step, float) and math.isfinite(step) and step >= smallest and math.frexp(step)[0] == 0.5):
        raise ValueError(f"module @{module.name} metadata read_step: expected a power of two ≥ {smallest:g}, "
                         f"got {step!r}")
    norms = module.metadata.get("stream_norms")
    if norms is not None and not (
            isinstance(norms, dict) and set(norms) == {"eps", "squares", "width"}
            and all(isinstance(norms[k], (int, float)) and norms[k] >= 0 for k in norms)
            and norms["eps"] > 0 and norms["width"] >= 1):
        raise ValueError(f"module @{module.name} metadata stream_norms: expected eps > 0, squares ≥ 0 and width ≥ 1, "
                         f"got {norms!r}")
    return np.dtype(name), step, norms


def _norm_drift(norms: dict, u: float) -> float:
    """How far a read through a neutralised RMSNorm ``c·rsqrt(mean(r²) + eps)·√eps``, computed with the unit
    roundoff ``u``, may be from the value ``c`` read, relative to it, where ``norms`` bounds the stream's ``Σ r²``
    (``squares``) and gives its ``width`` and ``eps`` (metadata ``stream_norms``).  The norm is exactly the
    identity while ``mean + eps`` rounds to ``eps`` (a margin of 2: ``mean < eps·u/2``), and otherwise
    ``(1 + mean/eps)^(-1/2)`` — within ``mean/(2 eps)`` of 1 — up to the roundings of the sum, the square root, the
    reciprocal and the product with ``c`` (``4u``).  ``inf`` where ``Σ r²`` is unbounded or may overflow float32
    (transformers computes every norm in float32)."""
    if not norms["squares"] < _FLOAT32_SQUARES:
        return math.inf
    mean = norms["squares"] / norms["width"]
    return 0.0 if mean < norms["eps"] * u / 2 else mean / (2 * norms["eps"]) + 4 * u


def local_error_entry(dim: int, **fields) -> dict:
    """One op's entry of a module's ``local_errors``: ``fields`` given per coordinate, the others none (no error,
    no hidden magnitude, one unit per coordinate)."""
    unknown = set(fields) - set(_LOCAL_FIELDS)
    if unknown:
        raise ValueError(f"local_error_entry: unknown fields {sorted(unknown)}; expected {', '.join(_LOCAL_FIELDS)}")
    entry = {name: np.zeros(dim) for name in _LOCAL_FIELDS}
    entry["units"] = np.ones(dim)
    entry["exact_from"] = np.full(dim, math.inf)
    entry["closed_below"] = np.full(dim, -math.inf)
    entry["partial_gain"] = np.full(dim, math.inf)
    entry["terms_total"] = np.full(dim, math.inf)
    entry.update({name: np.asarray(values, dtype=np.float64) for name, values in fields.items()})
    return entry


def _normal_or_zero(v: _Values, smallest: float) -> bool:
    """Whether every value ``v`` may be computed as is an exact 0 or at least ``smallest`` in magnitude (its
    candidates, or the multiples of an exact lattice's step)."""
    if v.points is not None:
        exact_zero = (v.points == 0) & (v.errors == 0) & (v.slacks == 0)
        return bool(np.all(exact_zero | (np.abs(v.points) - v.slacks - v.errors >= smallest)))
    if v.grid is None or v.err != 0.0 or v.slack != 0.0:
        return False
    offset, step = v.grid
    if step == 0:
        return offset == 0 or abs(offset) >= smallest
    return step >= smallest and offset / step == round(offset / step)


def _selected(v: _Values, margin: float) -> _Values | None:
    """A select's factor ``v``: its candidates exactly where its computed value stays within ``margin`` of the
    candidate it stands for (the units multiply by that candidate; only the analysis's slack remains), else None."""
    if v.points is None or not v.err + v.slack <= margin:
        return None
    return dataclasses.replace(v, errors=v.slacks.copy(), err=v.slack)


def _check_local_errors(module: Module, local: dict) -> None:
    """A target's ``local_errors`` must name ops by position and give a number ≥ 0 (or inf; ``closed_below``: any)
    per coordinate for every field: a bound computed from anything else would not hold."""
    for position, fields in local.items():
        if not isinstance(position, int) or not 0 <= position < len(module.ops):
            raise ValueError(f"module @{module.name} metadata local_errors: key {position!r} is not the position "
                             f"of one of its {len(module.ops)} ops")
        op = module.ops[position]
        for name in _LOCAL_FIELDS:
            if name in _OPTIONAL_LOCAL_FIELDS and isinstance(fields, dict) and name not in fields:
                continue
            given = fields.get(name) if isinstance(fields, dict) else fields
            values = np.asarray(given if isinstance(fields, dict) else None, dtype=np.float64)
            signed = name in _SIGNED_LOCAL_FIELDS
            if values.shape != (op.dim,) or np.isnan(values).any() or (not signed and (values < 0).any()):
                raise ValueError(f"module @{module.name} metadata local_errors[{position}] ({op.describe()}): "
                                 f"{name!r} must be {op.dim} numbers{'' if signed else ' >= 0'}, got {given!r}")
        selector = np.asarray(fields["selector"], dtype=np.float64)
        if not np.isin(selector, _SELECTORS).all() or (op.kind != "multi" and selector.any()):
            raise ValueError(f"module @{module.name} metadata local_errors[{position}] ({op.describe()}): "
                             f"'selector' must be one of {_SELECTORS} per coordinate, and 0 except on a product; "
                             f"got {fields['selector']!r}")


def _spread(a_rows, flagged: np.ndarray) -> np.ndarray:
    """``flagged`` and every coordinate whose row of ``A`` (``a_rows``) reads a flagged one, to a fixed point."""
    flagged = flagged.copy()
    while True:
        reads = np.array([not flagged[i] and bool(flagged[cols].any()) for i, (cols, _) in enumerate(a_rows)],
                         dtype=bool)
        if not reads.any():
            return flagged
        flagged |= reads


def _rational_gap(value):
    """``|c − fl64(c)|`` (rounded up) per entry of an exact constant whose entries float64 cannot all hold — an
    array for a Vector, a sparse matrix for a Matrix — or None: the analysis reads every constant as float64."""
    if not value.exact:
        return None
    if isinstance(value, Vector):
        rows = cols = None
        entries = value.values.tolist()
    else:
        rows, cols, entries = value.coo()
    gap = np.array([math.nextafter(float(abs(c - Fraction(float(c)))), math.inf) if not is_exact_float(c) else 0.0
                    for c in entries])
    if not gap.any():
        return None
    return gap if rows is None else sp.csr_array((gap, (rows, cols)), shape=value.shape)


def output_error_bounds(module: Module, dtype: str, t_max: int | None = None,
                        ranges: RangeAnalysis | None = None) -> list[float]:
    """The error bound of each output coordinate of the layer-form ``module`` computed in ``dtype``."""
    analysis = ErrorAnalysis(module, dtype, t_max, ranges)
    return analysis.output_bounds(module).tolist()


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


@register_pass
class ErrorBoundPass(Pass):
    name = "error-bound"
    summary = ("a-priori bound of each output's rounding error in a dtype (metadata['error_bound']); "
               "print=true lists every value's bound on stderr")
    dtype: str = dataclasses.field(default="float64", metadata={"help": "the dtype the module is computed in "
                                                                       "(float64 or float32)"})
    t_max: int | None = dataclasses.field(default=None, metadata={
        "help": "longest input sequence the bound must hold for (none: the module's recorded t_max)"})
    print: bool = dataclasses.field(default=False, metadata={"help": "write '// error %v: e, ...' lines"})

    def __post_init__(self):
        self.t_max = validate_t_max(self.t_max, "error-bound")
        if self.dtype not in UNIT_ROUNDOFF:
            raise OptionError(f"error-bound: dtype must be float64 or float32, got {self.dtype!r}")

    def run(self, module: Module) -> None:
        analysis = ErrorAnalysis(module, self.dtype, self.t_max)
        bounds = dict(module.metadata.get("error_bound") or {})
        bounds[self.dtype] = analysis.output_bounds(module).tolist()
        module.metadata["error_bound"] = bounds
        if self.print:
            from ..ir.names import ssa_names
            names = ssa_names(module)
            lines = [f"// error %{names[id(op)]}: {', '.join(_fmt(e) for e in analysis[op].err.tolist())}\n"
                     for op in module.ops]
            sys.stderr.write("".join(lines))
            sys.stderr.flush()
