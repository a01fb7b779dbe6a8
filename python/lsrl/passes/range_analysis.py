"""Interval range analysis: elementwise bounds of every value from the input op's ``lower``/``upper``.

Bounds are float64 arrays that may hold ``±inf``.  They are *sound for the exact semantics*: for every
input sequence inside the input bounds (and, when ``t_max`` is given, of length at most ``t_max``) the
exact value of every coordinate at every step lies in ``[lo, hi]``.  Float rounding in the analysis itself is
covered by widening each computed bound by a bound on its rounding error (relative to the magnitudes of the
terms summed), so a bound that is exactly ``0`` in exact arithmetic stays ``0`` when all of its terms are
exactly ``0`` (e.g. a non-negative combination of ReLU outputs keeps ``lo = 0``).

Transfer functions: ``linear`` = interval matrix product (``lo = A⁺·lo + A⁻·hi + b``, ``hi = A⁺·hi + A⁻·lo + b``);
``relu`` clamps; ``multi`` = interval product of the halves; ``concat``/``slice`` rearrange; ``linstate``
iterates the interval recurrence ``s ← A s + B x + b`` (see :func:`_linstate_range`); op kinds the analysis
does not know (target dialects) are unbounded.

The ``range-analysis`` pass stores the result in ``module.metadata["ranges"]`` as plain data aligned with
``module.ops``: ``{"t_max": t_max, "lower": [[...], ...], "upper": [[...], ...]}`` (lists of floats, one list
per op in op order; ``clone()`` keeps it valid, rewriting passes drop it); :func:`recorded_ranges` reads it
back as ``{id(op): (lo, hi)}``.  With ``print=true`` it writes one line per op to stderr:
``// range %name: [lo, hi], ...`` (one interval per coordinate).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from fractions import Fraction

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph  # noqa: F401  (sp.csgraph)

from ..assumptions import validate_t_max
from ..ir.core import Module, Op, fill_in_order
from ..ir.error_free import lowest_bit, product_exact
from ..ir.matrix import Matrix, Vector
from . import Pass, register_pass

__all__ = ["compute_ranges", "recorded_ranges", "RangeAnalysis", "RangeAnalysisPass", "DEFAULT_MAX_ITERATIONS"]

_U = 2.0 ** -53  # unit roundoff of float64
DEFAULT_MAX_ITERATIONS = 200  # interval iterations of a linstate before widening


def _finite_abs(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), np.abs(x), 0.0)


def _down(x: np.ndarray, err: np.ndarray) -> np.ndarray:
    return np.where(err > 0, x - err, x)


def _up(x: np.ndarray, err: np.ndarray) -> np.ndarray:
    return np.where(err > 0, x + err, x)


def _segments(indptr: np.ndarray):
    starts = indptr[:-1]
    nonempty = starts < indptr[1:]
    return starts[nonempty], nonempty


def _seg_reduce(ufunc, values: np.ndarray, indptr: np.ndarray, empty) -> np.ndarray:
    rows = len(indptr) - 1
    out = np.full(rows, empty, dtype=values.dtype if values.size else np.asarray(empty).dtype)
    starts, nonempty = _segments(indptr)
    if starts.size:
        out[nonempty] = ufunc.reduceat(values, starts)
    return out


def _sum_error(terms: np.ndarray, exact: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row sums of ``terms`` (segments of ``indptr``) and a bound on their rounding error.

    The error is 0 when every term of the row is exact (``exact``) and all of them are multiples of
    ``2^e`` with ``Σ|t| < 2^(e+53)`` — then every partial sum is representable — and ``γ_n·Σ|t|`` otherwise
    (infinite terms make the sum infinite and need no bound)."""
    with np.errstate(invalid="ignore"):
        total = _seg_reduce(np.add, terms, indptr, 0.0)
    mag = _seg_reduce(np.add, _finite_abs(terms), indptr, 0.0)
    count = np.diff(indptr)
    inexact = _seg_reduce(np.add, (~exact).astype(np.int64), indptr, 0)
    lsb = _seg_reduce(np.minimum, lowest_bit(terms), indptr, 1 << 20)
    with np.errstate(over="ignore"):
        limit = np.ldexp(1.0, np.minimum(lsb + 52, 1100).astype(np.int64))
    is_exact = (inexact == 0) & (mag * (1 + 2.0 ** -40) < limit)
    err = np.where(is_exact, 0.0, (count + 2) * _U * 1.01 * mag)
    return total, err


def _fraction_down(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) <= q else float(np.nextafter(f, -np.inf))


def _fraction_up(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) >= q else float(np.nextafter(f, np.inf))


def _outward_vector(vec: Vector, direction: int) -> np.ndarray:
    """``vec`` as float64 rounded toward ``-inf`` (direction -1) or ``+inf`` (+1) when it is exact."""
    f = vec.to_float().values.astype(np.float64)
    if not vec.exact:
        return f.copy()
    out = f.copy()
    for i, (v, x) in enumerate(zip(vec.values.tolist(), f.tolist())):
        if np.isfinite(x) and Fraction(x) != v:
            if direction < 0 and Fraction(x) > v:
                out[i] = np.nextafter(x, -np.inf)
            elif direction > 0 and Fraction(x) < v:
                out[i] = np.nextafter(x, np.inf)
    return out


def _representable(values: list, floats: np.ndarray) -> np.ndarray:
    """Per entry: the exact value equals its float64 rounding."""
    return np.array([not isinstance(v, Fraction) or Fraction(float(f)) == v for v, f in zip(values, floats)],
                    dtype=bool)


class _IntervalMap:
    """``x ↦ A x + b`` on boxes (``lo = A⁺·lo + A⁻·hi + b``), widened by a bound on the rounding error of
    the float computation (zero where the computation is provably exact)."""

    def __init__(self, a: Matrix, b: Vector | None = None):
        csr = a.scipy()
        m = a.shape[0]
        self.rows = m
        self.data = csr.data.astype(np.float64)
        self.indices = csr.indices.astype(np.int64)
        if a.exact:
            _, _, exact_vals = a.coo()  # same (row, col) order as the csr of the rounded matrix
            self.entry_exact = _representable(exact_vals, self.data) if len(exact_vals) == len(self.data) \
                else np.zeros(len(self.data), dtype=bool)
        else:
            self.entry_exact = np.ones(len(self.data), dtype=bool)
        if b is None:
            self.b = np.zeros(m)
            self.b_exact = np.ones(m, dtype=bool)
        else:
            self.b = b.to_float().values.astype(np.float64)
            self.b_exact = _representable(b.values.tolist(), self.b) if b.exact else np.ones(m, dtype=bool)
        # the bias is one more term at the end of every row
        counts = np.diff(csr.indptr) + 1
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.bias_pos = self.indptr[1:] - 1
        self.entry_pos = np.setdiff1d(np.arange(self.indptr[-1]), self.bias_pos)
        self.pos = self.data > 0

    def _side(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        x = np.where(self.pos, near[self.indices], far[self.indices])
        with np.errstate(invalid="ignore", over="ignore"):
            prod = self.data * x
        terms = np.empty(self.indptr[-1])
        exact = np.empty(self.indptr[-1], dtype=bool)
        terms[self.entry_pos] = prod
        exact[self.entry_pos] = self.entry_exact & product_exact(self.data, x, prod)
        terms[self.bias_pos] = self.b
        exact[self.bias_pos] = self.b_exact
        total, err = _sum_error(terms, exact, self.indptr)
        return total, err

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tlo, elo = self._side(lo, hi)
        thi, ehi = self._side(hi, lo)
        new_lo, new_hi = _down(tlo, elo), _up(thi, ehi)
        # lower bounds only add lower bounds, so inf − inf cannot occur; guard anyway
        new_lo = np.where(np.isnan(new_lo), -np.inf, new_lo)
        new_hi = np.where(np.isnan(new_hi), np.inf, new_hi)
        return new_lo, new_hi


def _add_terms(*terms_and_flags) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise ``Σ terms`` with an error bound; arguments are ``(term, exact_flag)`` pairs."""
    n = len(terms_and_flags)
    k = terms_and_flags[0][0].shape[0]
    terms = np.stack([t for t, _ in terms_and_flags], axis=1).reshape(-1)
    flags = np.stack([np.broadcast_to(f, (k,)) for _, f in terms_and_flags], axis=1).reshape(-1)
    indptr = np.arange(0, n * k + 1, n, dtype=np.int64)
    return _sum_error(terms, flags, indptr)


def _interval_product(alo, ahi, blo, bhi) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise interval product; ``0 · ±inf`` counts as 0 (values are finite, the inf is a bound)."""
    with np.errstate(invalid="ignore"):
        cands = []
        for x in (alo, ahi):
            for y in (blo, bhi):
                p = x * y
                p = np.where((x == 0) | (y == 0), 0.0, p)
                cands.append(p)
    stack = np.stack(cands)
    lo, hi = stack.min(axis=0), stack.max(axis=0)
    # one rounding per product: move inexact bounds one ulp outward
    for x in (alo, ahi):
        for y in (blo, bhi):
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.where((x == 0) | (y == 0), 0.0, x * y)
            inexact = np.isfinite(p) & ~product_exact(x, y, p) & (x != 0) & (y != 0)
            lo = np.where(inexact & (p == lo), np.nextafter(lo, -np.inf), lo)
            hi = np.where(inexact & (p == hi), np.nextafter(hi, np.inf), hi)
    return lo, hi


def _squares(operand: Op, h: int) -> np.ndarray:
    """Per product ``j`` of a ``multi`` reading ``operand``: whether its two factors are the same value — rows
    ``j`` and ``h + j`` of a ``linear`` operand are equal (weights and bias), or a ``concat`` reads one op twice."""
    if operand.kind == "linear":
        A, b = operand.attrs["A"], operand.attrs["b"]
        if A.exact or b.exact:  # compared as rationals: two rows may round to the same floats
            rows, bias = A.exact_rows(), b.to_exact().values
            return np.array([bias[j] == bias[h + j] and rows[j] == rows[h + j] for j in range(h)], dtype=bool)
        rows, bias = A.scipy().tocsr(), b.values
        return np.array([bias[j] == bias[h + j] and (rows[j] != rows[h + j]).nnz == 0 for j in range(h)], dtype=bool)
    if operand.kind == "concat" and len(operand.operands) == 2 and operand.operands[0] is operand.operands[1]:
        return np.ones(h, dtype=bool)
    return np.zeros(h, dtype=bool)


def _linstate_range(op: Op, ulo: np.ndarray, uhi: np.ndarray, t_max: int | None,
                    max_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``s_t`` over ``1 ≤ t ≤ t_max`` (all ``t`` when ``t_max`` is None).

    ``U = [ulo, uhi]`` bounds the drive ``B x + bias`` of every step.  The result is the hull-iteration
    box described below intersected with the step-wise hull of :func:`_stepwise_hull` when that one
    concludes.  Coordinates whose row of ``A`` is only a diagonal entry
    ``a ∈ [0, 1]`` (float) have closed forms (exact for counters ``a = 1`` given ``t_max``, and for decays and
    passthroughs); the others iterate ``R ← hull(R, A·hull(init, R) + U)`` starting from ``R = A·init + U``
    — after ``k`` iterations ``R`` holds ``s_1..s_{k+1}`` — and stop at a post-fixpoint.  When the iteration
    does not settle within ``max_iterations`` (or ``t_max``), it tries extrapolated boxes and finally widens
    the still-growing bounds to ``±inf``; only a verified post-fixpoint is returned then.  Last,
    :func:`_block_range` bounds rotations, contractions and the states that read them by norms, for any ``t_max``.
    """
    lo, hi = _hull_iteration_range(op, ulo, uhi, t_max, max_iterations)
    for stepwise in (_stepwise_hull, _stepwise_hull_fixed_point):
        steps = stepwise(op, ulo, uhi, t_max, max_iterations)
        if steps is not None:
            nlo, nhi = np.maximum(lo, steps[0]), np.minimum(hi, steps[1])
            if np.all(nlo <= nhi):  # both are sound; an empty meet only comes from empty input bounds
                lo, hi = nlo, nhi
    return _block_range(op, ulo, uhi, t_max, lo, hi)


_MAX_NORM_BLOCK = 64  # larger strongly connected blocks get no norm bound (exact AᵀA would be slow)
_NORM_MARGIN = 1.0 + 1e-12  # covers the float rounding of the few sums and square roots below


def _block_order(a_mat: Matrix) -> list[np.ndarray]:
    """The strongly connected blocks of ``A``'s dependency graph, each after the blocks it reads."""
    csr = a_mat.scipy()
    count, labels = sp.csgraph.connected_components(csr, directed=True, connection="strong")
    coo = csr.tocoo()
    cross = labels[coo.row] != labels[coo.col]
    reads = [set() for _ in range(count)]
    for r, c in zip(labels[coo.row[cross]].tolist(), labels[coo.col[cross]].tolist()):
        reads[r].add(c)
    members = [[] for _ in range(count)]
    for i, lab in enumerate(labels.tolist()):
        members[lab].append(i)
    order, done = [], [False] * count
    for start in range(count):
        stack = [(start, False)]
        while stack:
            b, ready = stack.pop()
            if done[b]:
                continue
            if ready:
                done[b] = True
                order.append(np.array(members[b], dtype=np.int64))
                continue
            stack.append((b, True))
            stack.extend((c, False) for c in reads[b] if not done[c])
    return order


def _spectral_norm_bound(block: Matrix) -> float:
    """An upper bound of ``‖M‖₂``: ``√`` of Gershgorin's bound on the exact ``MᵀM`` (tight for
    orthogonal blocks such as rotations, where ``|cos θ| + |sin θ|`` bounds would grow without end)."""
    rows = block.exact_rows() if block.exact else None
    k = block.shape[0]
    if rows is None:
        dense = block.to_dense()
        rows = tuple({j: Fraction(float(dense[i, j])) for j in range(k) if dense[i, j] != 0} for i in range(k))
    gram = [[Fraction(0)] * k for _ in range(k)]
    for row in rows:
        items = [(j, Fraction(v)) for j, v in row.items()]
        for j, vj in items:
            for l, vl in items:
                gram[j][l] += vj * vl
    squared = max((sum(abs(v) for v in g) for g in gram), default=Fraction(0))
    return float(np.nextafter(np.sqrt(_q_up(squared)), np.inf))  # IEEE sqrt is correctly rounded


def float64_run(block: np.ndarray, drive: np.ndarray, init: np.ndarray, steps: int) -> tuple[np.ndarray, float]:
    """A float64 run of ``s_t = A s_{t−1} + c`` from ``s_0 = init`` over ``steps`` steps (``A`` = ``block`` and ``c`` =
    ``drive``, all as float64 holds them): the states ``s_1 … s_steps`` and a bound on how far they are from the
    exact ones.  Each step rounds by at most ``γ·(|A||s_{t−1}| + |c|)`` — the start included, whose product may
    cancel to a state far smaller — and earlier errors pass through ``‖A‖₂`` (2-norm, so it bounds every
    coordinate)."""
    states = np.empty((steps, block.shape[0]))
    state = init
    for t in range(steps):
        state = block @ state + drive
        states[t] = state
    k = block.shape[0]
    size = max(float(np.max(np.abs(states), initial=0.0)), float(np.max(np.abs(init), initial=0.0))) * 2.0 + 1e-300
    row_sum = float(np.max(np.abs(block).sum(axis=1), initial=0.0))
    n = (k + 2) * _U
    local = n / (1.0 - n) * (row_sum * size + float(np.max(np.abs(drive), initial=0.0)))
    if k <= _MAX_NORM_BLOCK:  # in the 2-norm, which bounds every coordinate
        local, rho = local * math.sqrt(k), _spectral_norm_bound(Matrix.from_dense(block))
    else:  # in the ∞-norm: exact AᵀA of a large block would be slow
        rho = row_sum * _NORM_MARGIN
    if rho <= 1.0:
        return states, steps * local
    with np.errstate(over="ignore"):
        return states, local * float(np.expm1(steps * np.log(rho)) / (rho - 1.0))


def _block_range(op: Op, ulo: np.ndarray, uhi: np.ndarray, t_max: int | None,
                 lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tighten the bounds block by block (strongly connected blocks of ``A`` in dependency order; a block's
    drive includes what it reads of the blocks before it, as the hull of their init and bounds): blocks of
    several coordinates, and single coordinates that read other blocks or are still unbounded.  A
    one-coordinate block ``a ∈ [0, 1]`` has the closed form of :func:`_closed_form`; any other block gets the
    norm bound ``‖s_t‖₂ ≤ ρ^t ‖s_0‖₂ + Σ_{j<t} ρ^j ‖u‖₂`` with ``ρ ≥ ‖M‖₂`` — bounded for every ``t`` when
    ``ρ < 1``, and for ``t ≤ t_max`` otherwise, without iterating over time.  The result is met with the given
    bounds."""
    a_mat: Matrix = op.attrs["A"]
    init_vec: Vector = op.attrs["init"]
    ilo, ihi = _outward_vector(init_vec, -1), _outward_vector(init_vec, +1)
    lo, hi = lo.copy(), hi.copy()
    unbounded = ~(np.isfinite(lo) & np.isfinite(hi))
    reads_others = np.diff(a_mat.scipy().indptr) > (a_mat.scipy().diagonal() != 0)
    for idx in _block_order(a_mat):
        if idx.size == 1 and not unbounded[idx[0]] and not reads_others[idx[0]]:
            continue  # its closed form (or interval iteration) already gave the bound
        rows = a_mat.rows(idx)
        outside = np.setdiff1d(np.arange(op.dim), idx)
        dlo, dhi = ulo[idx], uhi[idx]
        coupling = rows.cols(outside)
        if coupling.nnz:
            clo, chi = _IntervalMap(coupling)(np.minimum(ilo[outside], lo[outside]),
                                              np.maximum(ihi[outside], hi[outside]))
            t_lo, e_lo = _add_terms((dlo, True), (clo, True))
            t_hi, e_hi = _add_terms((dhi, True), (chi, True))
            dlo, dhi = _down(t_lo, e_lo), _up(t_hi, e_hi)
            dlo, dhi = np.where(np.isnan(dlo), -np.inf, dlo), np.where(np.isnan(dhi), np.inf, dhi)
        block = rows.cols(idx)
        if idx.size == 1:
            entry = block.exact_rows()[0].get(0, 0) if block.exact else block.to_dense()[0, 0]
            a = float(entry)
            if 0 <= a <= 1 and (not block.exact or Fraction(a) == entry):
                blo, bhi = _closed_form(np.array([a]), ilo[idx], ihi[idx], dlo, dhi, t_max)
                lo[idx], hi[idx] = np.maximum(lo[idx], blo), np.minimum(hi[idx], bhi)
                continue
        if idx.size > _MAX_NORM_BLOCK:
            continue
        radius = _norm_radius(_spectral_norm_bound(block), ilo[idx], ihi[idx], dlo, dhi, t_max)
        lo[idx], hi[idx] = np.maximum(lo[idx], -radius), np.minimum(hi[idx], radius)
    return lo, hi


def _norm_radius(rho: float, ilo, ihi, dlo, dhi, t_max: int | None) -> float:
    """An upper bound of ``‖s_t‖₂`` over ``1 ≤ t ≤ t_max`` for ``s_t = M s_{t−1} + u_t``, ``‖M‖₂ ≤ rho``."""
    with np.errstate(over="ignore", invalid="ignore"):
        start = float(np.sqrt(np.sum(np.maximum(np.abs(ilo), np.abs(ihi)) ** 2))) * _NORM_MARGIN
        drive = float(np.sqrt(np.sum(np.maximum(np.abs(dlo), np.abs(dhi)) ** 2))) * _NORM_MARGIN
    if not (np.isfinite(start) and np.isfinite(drive)):
        return np.inf
    if rho < 1:
        # ρ^t‖s_0‖ + ‖u‖(1 − ρ^t)/(1 − ρ) is a convex combination of ‖s_0‖ and ‖u‖/(1 − ρ)
        return max(start, drive / float(np.nextafter(1.0 - rho, 0.0))) * _NORM_MARGIN
    if t_max is None:
        return np.inf
    steps = float(max(t_max, 1))
    with np.errstate(over="ignore"):  # a Python float power raises past the float range; numpy's is inf
        return float(np.power(rho, steps)) * (start + steps * drive) * _NORM_MARGIN ** 2


_FIXED_BITS = 200  # fractional bits of the fixed-point step-wise boxes


def _stepwise_hull_fixed_point(op: Op, ulo: np.ndarray, uhi: np.ndarray, t_max: int | None,
                               max_iterations: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_stepwise_hull` in exact integer arithmetic on the grid ``2^-200`` (each term rounded
    outward), for the coordinates with a finite drive that read only such coordinates.

    The float version widens every step by a rounding bound, and ``|A|`` amplifies that widening even
    where the boxes themselves stay thin — a rotation's deterministic state (``|cos θ| + |sin θ| > 1``)
    gains ~1e-11 in 50 steps; on the fixed-point grid the same amplification stays far below float
    resolution.  None when no coordinate qualifies or the iteration does not conclude."""
    finite = np.isfinite(ulo) & np.isfinite(uhi)
    if not finite.any():
        return None
    a_mat: Matrix = op.attrs["A"]
    rows, cols, vals = a_mat.coo()
    keep = finite.copy()
    while True:  # drop coordinates reading a dropped one
        bad = rows[~keep[cols]]
        new = keep.copy()
        new[bad] = False
        if np.array_equal(new, keep):
            break
        keep = new
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return None
    local = np.full(op.dim, -1, dtype=np.int64)
    local[idx] = np.arange(idx.size)
    sel = keep[rows]
    e_rows, e_cols = local[rows[sel]], local[cols[sel]]
    fracs = [Fraction(v) for v, k in zip(vals, sel.tolist()) if k]
    num = np.array([f.numerator for f in fracs] + [0], dtype=object)[:-1]
    den = np.array([f.denominator for f in fracs] + [0], dtype=object)[:-1]
    pos = np.array([f > 0 for f in fracs], dtype=bool)
    n = idx.size
    one = 1 << _FIXED_BITS

    def fix_down(q):
        return (q.numerator * one) // q.denominator

    def fix_up(q):
        return -((-q.numerator * one) // q.denominator)

    init = op.attrs["init"]
    init_q = [Fraction(v) for v in (init.values.tolist() if init.exact else init.values.astype(float).tolist())]
    slo = np.array([fix_down(init_q[i]) for i in idx] + [0], dtype=object)[:-1]
    shi = np.array([fix_up(init_q[i]) for i in idx] + [0], dtype=object)[:-1]
    u_lo = np.array([fix_down(Fraction(float(ulo[i]))) for i in idx] + [0], dtype=object)[:-1]
    u_hi = np.array([fix_up(Fraction(float(uhi[i]))) for i in idx] + [0], dtype=object)[:-1]
    order = np.argsort(e_rows, kind="stable")
    e_rows, e_cols, num, den, pos = e_rows[order], e_cols[order], num[order], den[order], pos[order]
    starts = np.searchsorted(e_rows, np.arange(n))
    has = np.bincount(e_rows, minlength=n) > 0

    def row_sums(terms):
        out = np.zeros(n, dtype=object)
        out[:] = 0
        if terms.size:
            out[has] = np.add.reduceat(terms, starts[has])
        return out

    lo = hi = None
    limit = max_iterations if t_max is None else min(max(t_max, 1), max_iterations)
    for t in range(1, limit + 1):
        near_lo = np.where(pos, slo[e_cols], shi[e_cols])
        near_hi = np.where(pos, shi[e_cols], slo[e_cols])
        nlo = row_sums((num * near_lo) // den) + u_lo
        nhi = -row_sums((-(num * near_hi)) // den) + u_hi
        lo = nlo if lo is None else np.minimum(lo, nlo)
        hi = nhi if hi is None else np.maximum(hi, nhi)
        stationary = bool(np.all(nlo == slo) and np.all(nhi == shi))
        slo, shi = nlo, nhi
        if stationary or (t_max is not None and t >= t_max):
            out_lo, out_hi = np.full(op.dim, -np.inf), np.full(op.dim, np.inf)
            out_lo[idx] = [_q_down(Fraction(v, one)) for v in lo.tolist()]
            out_hi[idx] = [_q_up(Fraction(v, one)) for v in hi.tolist()]
            return out_lo, out_hi
    return None


def _stepwise_hull(op: Op, ulo: np.ndarray, uhi: np.ndarray, t_max: int | None,
                   max_iterations: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``hull(S_1 .. S_T)`` of the per-step boxes ``S_t = A S_{t-1} + U`` (``S_0 = init``), which holds
    ``s_t``; tighter than a hull iteration where ``A`` mixes coordinates (rotations, shifts).  Only when it
    reaches ``t_max`` within ``max_iterations`` steps or the boxes become stationary (then all later ones
    equal the last); None otherwise."""
    init_vec: Vector = op.attrs["init"]
    slo, shi = _outward_vector(init_vec, -1), _outward_vector(init_vec, +1)
    step = _IntervalMap(op.attrs["A"])
    lo, hi = np.full(op.dim, np.inf), np.full(op.dim, -np.inf)
    limit = max_iterations if t_max is None else min(max(t_max, 1), max_iterations)
    for t in range(1, limit + 1):
        flo, fhi = step(slo, shi)
        t_lo, e_lo = _add_terms((flo, True), (ulo, True))
        t_hi, e_hi = _add_terms((fhi, True), (uhi, True))
        nlo, nhi = _down(t_lo, e_lo), _up(t_hi, e_hi)
        nlo = np.where(np.isnan(nlo), -np.inf, nlo)
        nhi = np.where(np.isnan(nhi), np.inf, nhi)
        lo, hi = np.minimum(lo, nlo), np.maximum(hi, nhi)
        if t > 1 and np.array_equal(nlo, slo) and np.array_equal(nhi, shi):
            return lo, hi  # S_{t+1} = S_t: stationary from here on
        slo, shi = nlo, nhi
        if t_max is not None and t >= t_max:
            return lo, hi
    return None


def _hull_iteration_range(op: Op, ulo: np.ndarray, uhi: np.ndarray, t_max: int | None,
                          max_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    a_mat: Matrix = op.attrs["A"]
    k = op.dim
    init_vec: Vector = op.attrs["init"]
    ilo, ihi = _outward_vector(init_vec, -1), _outward_vector(init_vec, +1)

    csr = a_mat.scipy()
    rows_nnz = np.diff(csr.indptr)
    coo = csr.tocoo()
    offdiag_rows = np.zeros(k, dtype=bool)
    offdiag_rows[coo.row[coo.row != coo.col]] = True
    diag = csr.diagonal()
    closed = ~offdiag_rows & (diag >= 0) & (diag <= 1)
    if a_mat.exact:  # closed forms use a exactly: only where the exact entry is the float one
        exact_diag = a_mat.diagonal()
        for i in np.flatnonzero(closed):
            if Fraction(float(diag[i])) != exact_diag[i]:
                closed[i] = False
    del rows_nnz

    lo = np.full(k, -np.inf)
    hi = np.full(k, np.inf)
    if closed.any():
        c = np.flatnonzero(closed)
        clo, chi = _closed_form(diag[c], ilo[c], ihi[c], ulo[c], uhi[c], t_max)
        lo[c], hi[c] = clo, chi
    open_ = np.flatnonzero(~closed)
    if open_.size == 0:
        return lo, hi

    step = _IntervalMap(a_mat)

    def apply(rlo, rhi):
        # reads s_{t-1} ∈ hull(init, R); closed coordinates read their closed hull
        slo, shi = np.minimum(ilo, rlo), np.maximum(ihi, rhi)
        if closed.any():
            slo[closed] = np.minimum(ilo[closed], lo[closed])
            shi[closed] = np.maximum(ihi[closed], hi[closed])
        flo, fhi = step(slo, shi)
        t_lo, e_lo = _add_terms((flo, True), (ulo, True))
        t_hi, e_hi = _add_terms((fhi, True), (uhi, True))
        nlo, nhi = _down(t_lo, e_lo), _up(t_hi, e_hi)
        nlo = np.where(np.isnan(nlo), -np.inf, nlo)
        nhi = np.where(np.isnan(nhi), np.inf, nhi)
        return nlo, nhi

    # R_1 = bounds of s_1
    rlo, rhi = apply(ilo.copy(), ihi.copy())
    rlo, rhi = np.where(closed, lo, rlo), np.where(closed, hi, rhi)
    budget = max_iterations if t_max is None else min(max_iterations, max(t_max - 1, 0))
    prev = prev2 = (rlo, rhi)
    settled = False
    for _ in range(budget):
        flo, fhi = apply(rlo, rhi)
        nlo = np.where(closed, lo, np.minimum(rlo, flo))
        nhi = np.where(closed, hi, np.maximum(rhi, fhi))
        if np.array_equal(nlo, rlo) and np.array_equal(nhi, rhi):
            settled = True
            break
        prev2, prev = prev, (rlo, rhi)
        rlo, rhi = nlo, nhi
    if settled or (t_max is not None and t_max - 1 <= budget):
        return rlo, rhi

    def narrow(clo, chi):
        # every s_t (t ≥ 1) lies in a post-fixpoint R, hence in A·hull(init, R) + U as well: intersect
        for _ in range(max_iterations):
            flo, fhi = apply(clo, chi)
            nlo = np.where(closed, lo, np.maximum(clo, flo))
            nhi = np.where(closed, hi, np.minimum(chi, fhi))
            if np.array_equal(nlo, clo) and np.array_equal(nhi, chi):
                break
            clo, chi = nlo, nhi
        return clo, chi

    def post_fixpoint(clo, chi) -> bool:
        flo, fhi = apply(clo, chi)
        return bool(np.all(flo[~closed] >= clo[~closed]) and np.all(fhi[~closed] <= chi[~closed]))

    # extrapolate the last growth; accept a box only when it is a verified post-fixpoint
    with np.errstate(invalid="ignore"):  # inf − inf where a bound was already infinite: no growth
        grow_lo = np.nan_to_num(np.maximum(prev[0] - rlo, 0.0), nan=0.0)
        grow_hi = np.nan_to_num(np.maximum(rhi - prev[1], 0.0), nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # geometric growth with ratio ρ adds Δ·ρ/(1−ρ) more; estimate ρ from the last two steps
        ratio_lo = np.nan_to_num(grow_lo / np.maximum(prev2[0] - prev[0], 0.0), nan=1.0, posinf=1.0)
        ratio_hi = np.nan_to_num(grow_hi / np.maximum(prev[1] - prev2[1], 0.0), nan=1.0, posinf=1.0)
        ratio_lo = np.where(grow_lo > 0, ratio_lo, 0.0)  # only bounds that still move say how fast
        ratio_hi = np.where(grow_hi > 0, ratio_hi, 0.0)
    guesses = []
    rho = max(float(np.max(ratio_lo, initial=0.0)), float(np.max(ratio_hi, initial=0.0)))
    if rho < 0.999:
        guesses.append(1.5 * rho / (1.0 - rho) + 1.0)
    guesses += [1e1, 1e3, 1e6]
    for factor in guesses:
        with np.errstate(invalid="ignore", over="ignore"):
            clo = rlo - factor * grow_lo - np.abs(rlo) * 1e-6 * (grow_lo > 0)
            chi = rhi + factor * grow_hi + np.abs(rhi) * 1e-6 * (grow_hi > 0)
        clo, chi = np.where(closed, lo, clo), np.where(closed, hi, chi)
        if post_fixpoint(clo, chi):
            return narrow(clo, chi)
    # widening: bounds still moving go to infinity, then iterate to a post-fixpoint
    clo = np.where(grow_lo > 0, -np.inf, rlo)
    chi = np.where(grow_hi > 0, np.inf, rhi)
    clo, chi = np.where(closed, lo, clo), np.where(closed, hi, chi)
    for _ in range(2 * k + 2):
        for _ in range(max_iterations):
            flo, fhi = apply(clo, chi)
            nlo = np.where(closed, lo, np.minimum(clo, flo))
            nhi = np.where(closed, hi, np.maximum(chi, fhi))
            if np.array_equal(nlo, clo) and np.array_equal(nhi, chi):
                return narrow(clo, chi)
            moved_lo, moved_hi = nlo < clo, nhi > chi
            clo, chi = nlo, nhi
        clo = np.where(moved_lo, -np.inf, clo)
        chi = np.where(moved_hi, np.inf, chi)
    return np.where(closed, lo, -np.inf), np.where(closed, hi, np.inf)


def _closed_form(a, ilo, ihi, ulo, uhi, t_max):
    """Bounds over ``1 ≤ t ≤ T`` of ``s_t = a s_{t-1} + u_t``, ``u_t ∈ [ulo, uhi]``, ``s_0 ∈ [ilo, ihi]``,
    ``0 ≤ a ≤ 1``.  The extreme sequences ``l_t = a l_{t-1} + ulo`` (resp. ``h``) are monotone in ``t``, so
    the range is ``hull(l_1, l_T)`` / ``hull(h_1, h_T)``; for ``a < 1`` the limit replaces ``l_T``."""
    T = np.inf if t_max is None else float(max(t_max, 1))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # a ≥ 0, so a·[ilo, ihi] = [a·ilo, a·ihi]; a = 0 ignores an infinite init
        a_ilo = np.where(a == 0, 0.0, a * ilo)
        a_ihi = np.where(a == 0, 0.0, a * ihi)
        l1, e = _add_terms((a_ilo, (a == 0) | product_exact(a, ilo, a_ilo)), (ulo, True))
        l1 = _down(l1, e)
        h1, e = _add_terms((a_ihi, (a == 0) | product_exact(a, ihi, a_ihi)), (uhi, True))
        h1 = _up(h1, e)
        one = a == 1
        # a < 1: the limit u / (1 − a); widened unless 1 − a and the quotient are exact
        d = np.where(one, 1.0, 1.0 - a)
        bb = d - 1.0
        d_exact = ((1.0 - (d - bb)) + (-a - bb)) == 0  # TwoSum error of 1 + (−a)
        lims = []
        for u, direction in ((ulo, -1), (uhi, +1)):
            q = np.where(one, 0.0, u / d)
            qd = q * d
            exact = d_exact & (~np.isfinite(q) | (product_exact(q, d, qd) & (qd == u)))
            err = np.where(exact, 0.0, _finite_abs(q) * 4 * _U)
            lims.append(_down(q, err) if direction < 0 else _up(q, err))
        lim_lo, lim_hi = lims
        # a = 1: s_T = s_0 + Σ u ∈ [ilo + T·ulo, ihi + T·uhi]
        t_ulo = np.where(ulo == 0, 0.0, T * ulo)
        t_uhi = np.where(uhi == 0, 0.0, T * uhi)
        cnt_lo, e = _add_terms((ilo, True), (t_ulo, (ulo == 0) | product_exact(np.full_like(ulo, T), ulo, t_ulo)))
        cnt_lo = _down(cnt_lo, e)
        cnt_hi, e = _add_terms((ihi, True), (t_uhi, (uhi == 0) | product_exact(np.full_like(uhi, T), uhi, t_uhi)))
        cnt_hi = _up(cnt_hi, e)
        end_lo = np.where(one, cnt_lo, lim_lo)
        end_hi = np.where(one, cnt_hi, lim_hi)
        lo = np.minimum(l1, end_lo)
        hi = np.maximum(h1, end_hi)
    lo = np.where(np.isnan(lo), -np.inf, lo)
    hi = np.where(np.isnan(hi), np.inf, hi)
    return lo, hi


# ------------------------------------------------------------------------------------------ ReLU groups
#
# An interval bound of ``Σ_k c_k ReLU(p_k)`` treats the units as independent, but units whose
# pre-activations are affine functions of one scalar ``y`` are not: ``μ·ReLU(x) − μ·ReLU(x − 1/μ)``
# (the sugar's step) lies in [0, 1], while intervals give ``[−μ·hi(x), μ·hi(x)]``.  So the analysis
# remembers, per ReLU-derived coordinate, the *unit* it is: ``scale · ReLU(sign·y + offset)`` with ``y`` a
# normalised linear form of source coordinates (first coefficient 1; the key), and a linear map reading two
# or more units of one key in a row bounds their sum by the exact range of that piecewise-linear function
# of ``y``.  All of it is computed in rationals (floats convert exactly) and rounded outward once at the
# end, so it is sound under rounding without an error analysis of its own.

_INF = float("inf")
_MAX_FORM_TERMS = 256  # pre-activations with more terms are not tracked (a shared one is then unlikely)


@dataclasses.dataclass(frozen=True)
class _Unit:
    """A coordinate equal to ``const + Σ k·ReLU(sign·y + o)`` (``terms``: ``(k, sign, o)`` Fractions) where
    ``y = Σ coeff·source`` (``key``: sorted ``((id(source op), index), coeff)`` pairs, the first coeff 1) and
    ``y ∈ [ylo, yhi]`` (Fractions, or ±inf floats when unbounded); ``nonnegative``: the form is ≥ 0 for every
    ``y`` (a ReLU's output).  A ReLU of one scalar is one term with ``const = 0``."""
    key: tuple
    terms: tuple
    const: Fraction
    ylo: object
    yhi: object
    nonnegative: bool

    def scaled(self, w: Fraction) -> "_Unit":
        return dataclasses.replace(self, terms=tuple((w * k, sign, o) for k, sign, o in self.terms),
                                   const=w * self.const, nonnegative=self.nonnegative and w > 0)

    def relu_of(self, v: Fraction, b: Fraction) -> "_Unit | None":
        """``ReLU(v·self + b)`` as a form of the same scalar, where that is a short one: ``v·self`` for
        ``b = 0`` and ``self ≥ 0``; for a single ``self = k·ReLU(z)`` (``k > 0``) with ``v > 0 ≥ b``,
        ``v k·ReLU(z + b/(v k))``, and with ``v < 0 < b`` the clamped ramp ``b − |v|k·ReLU(z) +
        |v|k·ReLU(z − b/(|v|k))`` (``ReLU(ReLU(z) − c) = ReLU(z − c)`` for ``c ≥ 0``)."""
        if b == 0 and v > 0 and self.nonnegative:
            return self.scaled(v)
        if len(self.terms) != 1 or self.const != 0 or self.terms[0][0] <= 0:
            return None
        (k, sign, o), = self.terms
        if v > 0 > b:
            terms = ((v * k, sign, o + b / (v * k)),)
            return dataclasses.replace(self, terms=terms, const=Fraction(0), nonnegative=True)
        if v < 0 < b:
            m = -v * k
            terms = ((-m, sign, o), (m, sign, o - b / m))
            return dataclasses.replace(self, terms=terms, const=b, nonnegative=True)
        return None

    def range(self, ylo, yhi):
        lo, hi = _pwl_range(list(self.terms), ylo, yhi)
        return _add_bound(lo, self.const), _add_bound(hi, self.const)


def _q(x: float):
    """A float bound as a Fraction (±inf stay floats)."""
    return Fraction(x) if np.isfinite(x) else float(x)


def _q_down(q) -> float:
    """The largest float ``≤ q`` (q a Fraction or ±inf)."""
    if isinstance(q, float):
        return q
    try:
        f = float(q)
    except OverflowError:
        return -_INF
    if Fraction(f) > q:
        f = float(np.nextafter(f, -np.inf))
    return f


def _q_up(q) -> float:
    if isinstance(q, float):
        return q
    try:
        f = float(q)
    except OverflowError:
        return _INF
    if Fraction(f) < q:
        f = float(np.nextafter(f, np.inf))
    return f


def _scaled_interval(c: Fraction, lo, hi):
    """``c · [lo, hi]`` for bounds that may be ±inf floats (``0 · inf = 0``)."""
    def mul(e):
        if isinstance(e, float):
            return e if c > 0 else -e
        return c * e

    if c == 0:
        return Fraction(0), Fraction(0)
    return (mul(lo), mul(hi)) if c > 0 else (mul(hi), mul(lo))


def _pwl_range(terms: list, ylo, yhi):
    """Exact range of ``f(y) = Σ k·ReLU(sign·y + o)`` over ``y ∈ [ylo, yhi]`` (``terms``: ``(k, sign, o)``
    Fractions; bounds Fractions or ±inf floats).  ``f`` is linear between the breakpoints ``y = −sign·o``,
    so its extremes are at breakpoints inside the interval and finite ends; an infinite end adds the limit
    of the outermost piece (slope ``Σ k`` of the units active there)."""
    def f(y):
        total = Fraction(0)
        for k, sign, o in terms:
            v = sign * y + o
            if v > 0:
                total += k * v
        return total

    points = [y for y in (ylo, yhi) if not isinstance(y, float)]
    points += [-sign * o for _, sign, o in terms if ylo <= -sign * o <= yhi]
    values = [f(y) for y in points]
    lo = min(values) if values else _INF
    hi = max(values) if values else -_INF
    if isinstance(yhi, float):  # y → +inf: the units with sign +1 are active
        slope = sum((k for k, sign, _ in terms if sign > 0), Fraction(0))
        if slope > 0:
            hi = _INF
        elif slope < 0:
            lo = -_INF
    if isinstance(ylo, float):  # y → −inf: the units with sign −1 are active, growing as y falls
        slope = sum((k for k, sign, _ in terms if sign < 0), Fraction(0))
        if slope > 0:
            hi = _INF
        elif slope < 0:
            lo = -_INF
    return lo, hi


def _within_box(u: _Unit, lo_p, hi_p) -> _Unit:
    """A one-term unit ``scale·ReLU(sign·y + offset)`` with its ``y`` range met with what the box
    ``[lo_p, hi_p]`` of its pre-activation ``scale·(sign·y + offset)`` allows."""
    (scale, sign, offset), = u.terms
    lo_v = lo_p if isinstance(lo_p, float) else lo_p / scale - offset
    hi_v = hi_p if isinstance(hi_p, float) else hi_p / scale - offset
    if sign < 0:
        lo_v, hi_v = -hi_v, -lo_v
    return dataclasses.replace(u, ylo=max(u.ylo, lo_v), yhi=min(u.yhi, hi_v))


def _add_bound(acc, term):
    """``acc + term`` for Fractions and ±inf floats (the infinities of one side never cancel)."""
    if isinstance(term, float) or isinstance(acc, float):
        return term if isinstance(term, float) else acc
    return acc + term


class RangeAnalysis:
    """Memoised interval bounds of ops, computed on demand (operands first, without recursion).

    Bounds of an op depend only on what the op computes, and semantics-preserving rewrites never change
    that, so one analysis can serve a whole rewriting session (new ops are analysed when first asked).

    Besides boxes, the analysis tracks which coordinates are ReLU units of a shared scalar (see
    :class:`_Unit`): a ``linear`` (or a ``linstate``'s drive ``B x + bias``) reading several units of one
    scalar — directly or through ``concat``/``slice``, possibly scaled by single-entry linear rows — bounds
    their combined contribution exactly and intersects with the plain interval result.
    """

    def __init__(self, module: Module, t_max: int | None = None,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS):
        self.module = module
        self.t_max = validate_t_max(t_max, "range analysis")
        self.max_iterations = max_iterations
        self._ranges: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pinned: dict[int, Op] = {}  # keeps analysed ops alive so their ids are not reused
        self._units: dict[int, dict[int, tuple]] = {}  # relu/linear op -> coordinate -> its unit views
        self._drives: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._concat_offsets: dict[int, np.ndarray] = {}
        self._exact_rows: dict[int, list] = {}
        self._windows = None  # TimeWindows, built for the first register with a drive

    def __call__(self, op: Op) -> tuple[np.ndarray, np.ndarray]:
        if id(op) not in self._ranges:
            fill_in_order(op, self._ranges, self._analyse, self._pinned)
        return self._ranges[id(op)]

    def _analyse(self, op: Op) -> tuple[np.ndarray, np.ndarray]:
        """The bounds of ``op`` (its operands analysed), and its ReLU units."""
        bounds = self._transfer(op, [self._ranges[id(o)] for o in op.operands])
        if op.kind in ("relu", "linear"):
            units = self._relu_units(op) if op.kind == "relu" else self._scaled_units(op)
            if units:
                self._units[id(op)] = units
                if op.kind == "relu":
                    bounds = self._unit_tighten(units, *bounds)
        return bounds

    def affine_range(self, a: Matrix, b: Vector | None, operand: Op) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``a · operand + b`` (ReLU groups of the operand bounded exactly)."""
        lo, hi = self(operand)
        plain = _IntervalMap(a, b)(lo, hi)
        return self._group_tighten(a, b, operand, *plain)

    def drive(self, op: Op) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of a ``linstate``'s per-step drive ``B x + bias``."""
        hit = self._drives.get(id(op))
        if hit is None:
            hit = self.affine_range(op.attrs["B"], op.attrs["bias"], op.operands[0])
            self._drives[id(op)] = hit
            self._pinned[id(op)] = op
        return hit

    # ---------------------------------------------------------------------------- ReLU groups

    def _origin(self, op: Op, j: int) -> tuple[Op, int]:
        """The op and coordinate that coordinate ``j`` of ``op`` reads through concats and slices."""
        while True:
            if op.kind == "slice":
                j += op.attrs["start"]
                op = op.operands[0]
            elif op.kind == "concat":
                offsets = self._concat_offsets.get(id(op))
                if offsets is None:
                    offsets = np.cumsum([0] + [o.dim for o in op.operands])
                    self._concat_offsets[id(op)] = offsets
                i = int(np.searchsorted(offsets, j, side="right")) - 1
                j -= int(offsets[i])
                op = op.operands[i]
            else:
                return op, j

    def exact_row(self, a: Matrix, r: int) -> dict:
        """Row ``r`` of ``a`` as ``{col: Fraction}``."""
        if a.exact:
            rows = self._exact_rows.get(id(a))
            if rows is None:
                rows = a.exact_rows()
                self._exact_rows[id(a)] = rows
                self._pinned[id(a)] = a
            return rows[r]
        csr = a.scipy()
        start, end = csr.indptr[r], csr.indptr[r + 1]
        return {int(c): Fraction(float(v)) for c, v in zip(csr.indices[start:end], csr.data[start:end])}

    @staticmethod
    def exact_entry(vec: Vector, i: int) -> Fraction:
        """Entry ``i`` of ``vec`` as a Fraction."""
        return Fraction(vec.values[i]) if vec.exact else Fraction(float(vec.values[i]))

    def _relu_units(self, op: Op) -> dict[int, tuple]:
        """Each coordinate of a relu as a unit of the scalar its pre-activation is an affine function of (the
        *direct* view), and — where that function is ``v·u + b`` of one unit ``u`` of a deeper scalar — also as
        a form of that scalar when :meth:`_Unit.relu_of` has one (the *deep* view), so carriers, shifted copies
        and complements of a step's units still meet their group in later readers."""
        plo, phi = self._ranges[id(op.operands[0])]
        units = {}
        for j in range(op.dim):
            base, i = self._origin(op.operands[0], j)
            if base.kind == "linear":
                row = self.exact_row(base.attrs["A"], i)
                if not row or len(row) > _MAX_FORM_TERMS:
                    continue
                bias = self.exact_entry(base.attrs["b"], i)
                form = {}
                for c, v in row.items():
                    src = self._origin(base.operands[0], c)
                    form[src] = form.get(src, Fraction(0)) + v
                form = {src: v for src, v in form.items() if v != 0}
                if not form:
                    continue
            else:
                form, bias = {(base, i): Fraction(1)}, Fraction(0)
            ordered = sorted(form.items(), key=lambda kv: (id(kv[0][0]), kv[0][1]))
            first = ordered[0][1]
            scale, sign = abs(first), (1 if first > 0 else -1)
            key = tuple(((id(src), idx), v / first) for (src, idx), v in ordered)
            # y from the sources' boxes ...
            ylo, yhi = Fraction(0), Fraction(0)
            for (src, idx), v in ordered:
                slo, shi = self._ranges[id(src)]
                tlo, thi = _scaled_interval(v / first, _q(slo[idx]), _q(shi[idx]))
                ylo, yhi = _add_bound(ylo, tlo), _add_bound(yhi, thi)
            # ... and from the pre-activation's own box
            direct = _Unit(key, ((scale, sign, bias / scale),), Fraction(0), ylo, yhi, True)
            views = (_within_box(direct, _q(plo[j]), _q(phi[j])),)
            if len(ordered) == 1:
                (src, idx), _ = ordered[0]
                deeper = self._units.get(id(src), {}).get(idx)
                # (the box does not narrow the deep view's y: where the inner ReLU is off, p is the bias)
                lifted = deeper[-1].relu_of(first, bias) if deeper is not None else None
                if lifted is not None:
                    views += (lifted,)
            units[j] = views
        return units

    @staticmethod
    def _unit_tighten(units: dict, lo: np.ndarray, hi: np.ndarray):
        """A ReLU's box met with its units' exact ranges over ``y`` (the sources' boxes combine exactly
        there, while the box of the pre-activation carries the rounding widening of a float sum)."""
        lo, hi = lo.copy(), hi.copy()
        for j, views in units.items():
            for u in views:
                if u.ylo > u.yhi:
                    continue
                bottom, top = u.range(u.ylo, u.yhi)
                lo[j], hi[j] = max(lo[j], _q_down(bottom)), min(hi[j], _q_up(top))
        return lo, hi

    def _scaled_units(self, op: Op) -> dict[int, tuple]:
        """Rows of a linear that are one unit times a constant (no bias) stay units."""
        operand = op.operands[0]
        a: Matrix = op.attrs["A"]
        rows, cols, _ = a.coo()
        if len(rows) == 0:
            return {}
        counts = np.bincount(rows, minlength=a.shape[0])
        b = op.attrs["b"]
        bias_zero = b.is_zero() if hasattr(b, "is_zero") else False
        units = {}
        for r, c in zip(rows.tolist(), cols.tolist()):
            if counts[r] != 1:
                continue
            base, i = self._origin(operand, c)
            views = self._units.get(id(base), {}).get(i)
            if views is None:
                continue
            if not bias_zero and self.exact_entry(b, r) != 0:
                continue
            w = self.exact_row(a, r)[c]
            units[r] = tuple(u.scaled(w) for u in views)
        return units

    def _group_tighten(self, a: Matrix, b: Vector | None, operand: Op, lo: np.ndarray, hi: np.ndarray):
        """Tighten the interval bounds ``lo, hi`` of ``a · operand + b`` on rows reading two or more units of
        one scalar, in the direct and then in the deep view (each is sound; the results meet)."""
        col_views = {}
        for c in range(operand.dim):
            base, i = self._origin(operand, c)
            views = self._units.get(id(base), {}).get(i)
            if views is not None:
                col_views[c] = views
        if len(col_views) < 2:
            return lo, hi
        lo, hi = self._view_tighten(a, b, operand, lo, hi, {c: v[0] for c, v in col_views.items()})
        if any(len(v) > 1 for v in col_views.values()):
            lo, hi = self._view_tighten(a, b, operand, lo, hi, {c: v[-1] for c, v in col_views.items()})
        return lo, hi

    def _view_tighten(self, a: Matrix, b: Vector | None, operand: Op, lo: np.ndarray, hi: np.ndarray,
                      col_units: dict):
        """One view of :meth:`_group_tighten`: the units' sum per scalar bounded by :func:`_pwl_range`, the
        other columns by intervals."""
        rows, cols, _ = a.coo()
        seen: dict[int, dict] = {}
        grouped_rows = set()
        for r, c in zip(rows.tolist(), cols.tolist()):
            u = col_units.get(c)
            if u is None:
                continue
            keys = seen.setdefault(r, {})
            keys[u.key] = keys.get(u.key, 0) + 1
            if keys[u.key] > 1:
                grouped_rows.add(r)
        if not grouped_rows:
            return lo, hi
        olo, ohi = self._ranges[id(operand)]
        lo, hi = lo.copy(), hi.copy()
        for r in sorted(grouped_rows):
            row = self.exact_row(a, r)
            acc_lo = acc_hi = self.exact_entry(b, r) if b is not None else Fraction(0)
            groups: dict[tuple, list] = {}
            for c, w in row.items():
                u = col_units.get(c)
                if u is not None and seen[r][u.key] > 1:
                    groups.setdefault(u.key, []).append((w, u))
                    continue
                tlo, thi = _scaled_interval(w, _q(olo[c]), _q(ohi[c]))
                acc_lo, acc_hi = _add_bound(acc_lo, tlo), _add_bound(acc_hi, thi)
            empty = False
            for members in groups.values():
                ylo = max(u.ylo for _, u in members)
                yhi = min(u.yhi for _, u in members)
                if ylo > yhi:  # no value of y is possible: only with empty input bounds; keep intervals
                    empty = True
                    break
                glo, ghi = _pwl_range([(w * k, sign, o) for w, u in members for k, sign, o in u.terms], ylo, yhi)
                constant = sum((w * u.const for w, u in members), Fraction(0))
                acc_lo, acc_hi = _add_bound(acc_lo, glo + constant if not isinstance(glo, float) else glo), \
                    _add_bound(acc_hi, ghi + constant if not isinstance(ghi, float) else ghi)
            if empty:
                continue
            new_lo, new_hi = max(lo[r], _q_down(acc_lo)), min(hi[r], _q_up(acc_hi))
            if new_lo <= new_hi:
                lo[r], hi[r] = new_lo, new_hi
        return lo, hi

    def nonnegative(self, op: Op) -> bool:
        return bool(np.all(self(op)[0] >= 0))

    def _transfer(self, op: Op, ins: list) -> tuple[np.ndarray, np.ndarray]:
        kind = op.kind
        if kind == "input":
            return (_outward_vector(op.attrs["lower"], -1), _outward_vector(op.attrs["upper"], +1))
        if kind == "linear":
            plain = _IntervalMap(op.attrs["A"], op.attrs["b"])(*ins[0])
            return self._group_tighten(op.attrs["A"], op.attrs["b"], op.operands[0], *plain)
        if kind == "relu":
            lo, hi = ins[0]
            return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        if kind == "concat":
            return np.concatenate([i[0] for i in ins]), np.concatenate([i[1] for i in ins])
        if kind == "slice":
            s, e = op.attrs["start"], op.attrs["end"]
            return ins[0][0][s:e].copy(), ins[0][1][s:e].copy()
        if kind == "multi":
            lo, hi = ins[0]
            h = op.dim
            plo, phi = _interval_product(lo[:h], hi[:h], lo[h:], hi[h:])
            # a coordinate times itself is never negative (the interval product allows lo·hi)
            return np.where(_squares(op.operands[0], h) & (plo < 0), 0.0, plo), phi
        if kind == "linstate":
            lo, hi = _linstate_range(op, *self.drive(op), self.t_max, self.max_iterations)
            return self._register_range(op, lo, hi)
        return np.full(op.dim, -np.inf), np.full(op.dim, np.inf)

    def _register_range(self, op: Op, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[lo, hi]`` met with ``s_0 + W·[min(u_lo, 0), max(u_hi, 0)]`` for each register ``s_t = s_{t−1} + u_t``
        whose drive ``u`` may be non-zero at only ``W < t_max`` steps (:mod:`.time_windows`)."""
        if self.t_max is None:
            return lo, hi
        reads = np.diff(op.attrs["B"].scipy().indptr)  # a register without a B row has a constant drive
        ulo, uhi = self.drive(op)
        registers = [i for i in np.flatnonzero(reads).tolist() if self.exact_row(op.attrs["A"], i) == {i: 1}
                     and np.isfinite(ulo[i]) and np.isfinite(uhi[i])]  # an unbounded drive bounds nothing
        if not registers:
            return lo, hi
        if self._windows is None:
            from .time_windows import TimeWindows
            self._windows = TimeWindows(self, self.t_max)
        counts = self._windows.active_steps(op)
        lo, hi = lo.copy(), hi.copy()
        for i in registers:
            steps = counts[i]
            if steps >= self.t_max:
                continue
            s0 = self.exact_entry(op.attrs["init"], i)
            low = _fraction_down(s0 + steps * Fraction(min(float(ulo[i]), 0.0)))
            high = _fraction_up(s0 + steps * Fraction(max(float(uhi[i]), 0.0)))
            lo[i], hi[i] = max(lo[i], low), min(hi[i], high)
        return lo, hi


def compute_ranges(module: Module, t_max: int | None = None,
                   max_iterations: int = DEFAULT_MAX_ITERATIONS) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``id(op) -> (lo, hi)`` (float64 arrays, possibly ``±inf``) for every op of ``module``.

    Sound for input sequences inside the input op's bounds and, when ``t_max`` is given, of at most
    ``t_max`` steps (``None``: any length).
    """
    analysis = RangeAnalysis(module, t_max, max_iterations)
    return {id(op): analysis(op) for op in module.ops}


def _fmt(x: float) -> str:
    if x == np.inf:
        return "inf"
    if x == -np.inf:
        return "-inf"
    return repr(float(x))


@register_pass
@dataclasses.dataclass
class RangeAnalysisPass(Pass):
    name = "range-analysis"
    summary = "interval bounds of every value (metadata['ranges']); print=true lists them on stderr"
    t_max: int | None = dataclasses.field(default=None, metadata={
        "help": "longest input sequence the bounds must hold for (none: any length)"})
    print: bool = dataclasses.field(default=False, metadata={"help": "write '// range %v: [lo, hi]' lines"})

    def __post_init__(self):
        self.t_max = validate_t_max(self.t_max, "range-analysis")

    def run(self, module: Module) -> None:
        analysis = RangeAnalysis(module, self.t_max)
        ranges = [analysis(op) for op in module.ops]
        module.metadata["ranges"] = {"t_max": self.t_max,
                                     "lower": [lo.tolist() for lo, _ in ranges],
                                     "upper": [hi.tolist() for _, hi in ranges]}
        if self.print:
            from ..ir.names import ssa_names
            names = ssa_names(module)
            lines = []
            for op, (lo, hi) in zip(module.ops, ranges):
                pairs = ", ".join(f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(lo.tolist(), hi.tolist()))
                lines.append(f"// range %{names[id(op)]}: {pairs}\n")
            sys.stderr.write("".join(lines))
            sys.stderr.flush()


def recorded_ranges(module: Module) -> dict[int, tuple[np.ndarray, np.ndarray]] | None:
    """The bounds the ``range-analysis`` pass recorded for ``module`` (``id(op) -> (lo, hi)``), or None when
    there are none or they do not fit the module's ops any more."""
    rec = module.metadata.get("ranges")
    if not isinstance(rec, dict) or len(rec.get("lower", ())) != len(module.ops):
        return None
    out = {}
    for op, lo, hi in zip(module.ops, rec["lower"], rec["upper"]):
        if len(lo) != op.dim:
            return None
        out[id(op)] = (np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    return out
