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

The ``range-analysis`` pass stores the result in ``module.metadata["ranges"]`` as a dict
``{op: (lo, hi)}`` keyed by the module's :class:`~lsrl.ir.core.Op` objects (valid for that module only: after
``clone()`` or a rewrite the keys are stale; use :func:`compute_ranges` to get fresh bounds), and with
``print=true`` writes one line per op to stderr: ``// range %name: [lo, hi]``.
"""
from __future__ import annotations

import dataclasses
import sys
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from . import Pass, register_pass

__all__ = ["compute_ranges", "RangeAnalysis", "RangeAnalysisPass", "DEFAULT_MAX_ITERATIONS"]

_U = 2.0 ** -53  # unit roundoff of float64
DEFAULT_MAX_ITERATIONS = 200  # interval iterations of a linstate before widening


def _finite_abs(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), np.abs(x), 0.0)


def _down(x: np.ndarray, err: np.ndarray) -> np.ndarray:
    return np.where(err > 0, x - err, x)


def _up(x: np.ndarray, err: np.ndarray) -> np.ndarray:
    return np.where(err > 0, x + err, x)


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


class _IntervalMap:
    """``x ↦ A x + b`` on boxes, with rounding-error widening (``A`` is rounded to float64 once)."""

    def __init__(self, a: Matrix, b: Vector | None = None):
        csr = a.scipy()
        pos = csr.maximum(0) if csr.nnz else csr
        neg = csr.minimum(0) if csr.nnz else csr
        self.pos = sp.csr_array(pos)
        self.neg = sp.csr_array(neg)
        self.absneg = sp.csr_array(-self.neg)
        self.rows = a.shape[0]
        if b is None:
            self.b = np.zeros(self.rows)
            self.b_err = np.zeros(self.rows)
        else:
            self.b = b.to_float().values.astype(np.float64)
            # an exact bias rounded to float is off by at most half an ulp
            self.b_err = np.abs(self.b) * _U if b.exact else np.zeros(self.rows)
        per_row = np.diff(csr.indptr) if csr.nnz else np.zeros(self.rows, dtype=np.int64)
        # |fl(Σ t_i) − Σ t_i| ≤ γ_n Σ|t_i| for n terms; +3 covers rounding of exact entries and of products
        self.gamma = (per_row + 3) * _U * 1.01

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore"):
            new_lo = self.pos @ lo + self.neg @ hi + self.b
            new_hi = self.pos @ hi + self.neg @ lo + self.b
        alo, ahi = _finite_abs(lo), _finite_abs(hi)
        mag_lo = self.pos @ alo + self.absneg @ ahi + np.abs(self.b)
        mag_hi = self.pos @ ahi + self.absneg @ alo + np.abs(self.b)
        new_lo = _down(new_lo, self.gamma * mag_lo + self.b_err)
        new_hi = _up(new_hi, self.gamma * mag_hi + self.b_err)
        # a sum of infinities of opposite signs cannot occur (lower bounds only add lower bounds), but guard
        new_lo = np.where(np.isnan(new_lo), -np.inf, new_lo)
        new_hi = np.where(np.isnan(new_hi), np.inf, new_hi)
        return new_lo, new_hi


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
    # one rounding per product: move non-zero finite bounds one ulp outward
    lo = np.where(np.isfinite(lo) & (lo != 0), np.nextafter(lo, -np.inf), lo)
    hi = np.where(np.isfinite(hi) & (hi != 0), np.nextafter(hi, np.inf), hi)
    return lo, hi


def _hull(a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(a[0], b[0]), np.maximum(a[1], b[1])


def _linstate_range(op: Op, xlo: np.ndarray, xhi: np.ndarray, t_max: int | None,
                    max_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``s_t`` over ``1 ≤ t ≤ t_max`` (all ``t`` when ``t_max`` is None).

    ``U = B x + bias`` is one box for every step.  Coordinates whose row of ``A`` is only a diagonal entry
    ``a ∈ [0, 1]`` (float) have closed forms (exact for counters ``a = 1`` given ``t_max``, and for decays and
    passthroughs); the others iterate ``R ← hull(R, A·hull(init, R) + U)`` starting from ``R = A·init + U``
    — after ``k`` iterations ``R`` holds ``s_1..s_{k+1}`` — and stop at a post-fixpoint.  When the iteration
    does not settle within ``max_iterations`` (or ``t_max``), it tries extrapolated boxes and finally widens
    the still-growing bounds to ``±inf``; only a verified post-fixpoint is returned then.
    """
    a_mat: Matrix = op.attrs["A"]
    k = op.dim
    ulo, uhi = _IntervalMap(op.attrs["B"], op.attrs["bias"])(xlo, xhi)
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
        with np.errstate(invalid="ignore"):
            nlo, nhi = flo + ulo, fhi + uhi
        # one more rounding for the addition of U
        nlo = _down(nlo, (_finite_abs(flo) + _finite_abs(ulo)) * _U * 1.01)
        nhi = _up(nhi, (_finite_abs(fhi) + _finite_abs(uhi)) * _U * 1.01)
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
    grow_lo = np.maximum(prev[0] - rlo, 0.0)
    grow_hi = np.maximum(rhi - prev[1], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # geometric growth with ratio ρ adds Δ·ρ/(1−ρ) more; estimate ρ from the last two steps
        ratio_lo = np.nan_to_num(grow_lo / np.maximum(prev2[0] - prev[0], 0.0), nan=1.0, posinf=1.0)
        ratio_hi = np.nan_to_num(grow_hi / np.maximum(prev[1] - prev2[1], 0.0), nan=1.0, posinf=1.0)
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
        l1 = a_ilo + ulo
        h1 = a_ihi + uhi
        l1 = _down(l1, (_finite_abs(a_ilo) + _finite_abs(ulo)) * 2 * _U * 1.01)
        h1 = _up(h1, (_finite_abs(a_ihi) + _finite_abs(uhi)) * 2 * _U * 1.01)
        one = a == 1
        # a < 1: the limit ulo / (1 − a) (three roundings)
        lim_lo = np.where(one, 0.0, ulo / np.where(one, 1.0, 1.0 - a))
        lim_hi = np.where(one, 0.0, uhi / np.where(one, 1.0, 1.0 - a))
        lim_lo = _down(lim_lo, _finite_abs(lim_lo) * 4 * _U)
        lim_hi = _up(lim_hi, _finite_abs(lim_hi) * 4 * _U)
        # a = 1: s_T = s_0 + Σ u ∈ [ilo + T·ulo, ihi + T·uhi]
        t_ulo = np.where(ulo == 0, 0.0, T * ulo)
        t_uhi = np.where(uhi == 0, 0.0, T * uhi)
        cnt_lo = ilo + t_ulo
        cnt_hi = ihi + t_uhi
        cnt_lo = _down(cnt_lo, (_finite_abs(ilo) + _finite_abs(t_ulo)) * 2 * _U * 1.01)
        cnt_hi = _up(cnt_hi, (_finite_abs(ihi) + _finite_abs(t_uhi)) * 2 * _U * 1.01)
        end_lo = np.where(one, cnt_lo, lim_lo)
        end_hi = np.where(one, cnt_hi, lim_hi)
        lo = np.minimum(l1, end_lo)
        hi = np.maximum(h1, end_hi)
    lo = np.where(np.isnan(lo), -np.inf, lo)
    hi = np.where(np.isnan(hi), np.inf, hi)
    return lo, hi


class RangeAnalysis:
    """Memoised interval bounds of ops, computed on demand (operands first, without recursion).

    Bounds of an op depend only on what the op computes, and semantics-preserving rewrites never change
    that, so one analysis can serve a whole rewriting session (new ops are analysed when first asked).
    """

    def __init__(self, module: Module, t_max: int | None = None,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS):
        self.module = module
        self.t_max = t_max
        self.max_iterations = max_iterations
        self._ranges: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pinned: dict[int, Op] = {}  # keeps analysed ops alive so their ids are not reused

    def __call__(self, op: Op) -> tuple[np.ndarray, np.ndarray]:
        hit = self._ranges.get(id(op))
        if hit is not None:
            return hit
        stack = [(op, False)]
        while stack:
            cur, ready = stack.pop()
            if id(cur) in self._ranges:
                continue
            if not ready:
                stack.append((cur, True))
                stack.extend((o, False) for o in cur.operands if id(o) not in self._ranges)
                continue
            self._ranges[id(cur)] = self._transfer(cur, [self._ranges[id(o)] for o in cur.operands])
            self._pinned[id(cur)] = cur
        return self._ranges[id(op)]

    def nonnegative(self, op: Op) -> bool:
        return bool(np.all(self(op)[0] >= 0))

    def _transfer(self, op: Op, ins: list) -> tuple[np.ndarray, np.ndarray]:
        kind = op.kind
        if kind == "input":
            return (_outward_vector(op.attrs["lower"], -1), _outward_vector(op.attrs["upper"], +1))
        if kind == "linear":
            return _IntervalMap(op.attrs["A"], op.attrs["b"])(*ins[0])
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
            return _interval_product(lo[:h], hi[:h], lo[h:], hi[h:])
        if kind == "linstate":
            return _linstate_range(op, *ins[0], self.t_max, self.max_iterations)
        return np.full(op.dim, -np.inf), np.full(op.dim, np.inf)


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

    def run(self, module: Module) -> None:
        analysis = RangeAnalysis(module, self.t_max)
        ranges = {op: analysis(op) for op in module.ops}
        module.metadata["ranges"] = ranges
        if self.print:
            from ..ir.printer import _Namer
            inputs = [op for op in module.ops if op.kind == "input"]
            ordered = inputs[:1] + [op for op in module.ops if op not in inputs[:1]]
            namer = _Namer(ordered)
            lines = []
            for op in ordered:
                lo, hi = ranges[op]
                pairs = ", ".join(f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(lo.tolist(), hi.tolist()))
                lines.append(f"// range %{namer(op)}: {pairs}\n")
            sys.stderr.write("".join(lines))
            sys.stderr.flush()
