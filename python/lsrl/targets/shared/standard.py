"""Standard-mode constructions for gated cells (``targets.md`` §5, §6, decision D9).

The real activations are kept (σ for gates, tanh for candidates/cells), so the weights run unmodified in
the architecture's own executors (torch, ONNX).  Three tools (constants in
:class:`~lsrl.targets.common.StandardConstants`, all powers of two):

* **saturation** — a gate with pre-activation ±L (L = 1024) is exactly 1/0 in float64 and float32;
* **linearisation** — every carried value enters tanh scaled, ``tanh(ε v)`` with ``|ε v| ≤ ρ = 2^-20``
  (relative error ≤ ρ²/3); the next layer divides by ε in its input weights (ε per unit, from range analysis);
* **gated ReLU / products** — ``ReLU(x) ≈ σ(κx)·tanh(εx)`` (exact where κx saturates);
  a product ``g·v`` uses σ(a) − σ(−a) = tanh(a/2) with ``a = ε_g g`` (``|a| ≤ 2^-7``) at scales a and 2a
  (four units: (8 D(a) − D(2a))/3 = a − a⁵/30);
* **selects** — a product one of whose factors takes a few known values ``p_1 < … < p_m`` on the declared domain
  (a step of integer tokens, a token itself: the error analysis's candidates) is
  ``p_1 v + Σ_i (p_i − p_{i−1})·[g > (p_{i−1} + p_i)/2]·v``, each bracket a gate saturated exactly to 0 or 1:
  the product of the candidate and the carried ``v``, with none of the σ-difference's cancellation.

κ·max|x| = 2^80 keeps every weight below 2^120, finite in float32 (ONNX runs recurrent ops in float32).

A cell's module subclasses :class:`StandardLowering` with its units (its docstring lists them).

Every bound comes from range analysis; an unbounded value raises CompileError (give the Input bounds and
``t_max``).  docs/targets.md states the error bounds and the measured errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ...errors import CompileError
from ...ir.core import Module, Op
from ...ir.error_free import lowest_bit
from ...ir.matrix import Matrix, Vector
from ...passes.error_bound import UNIT_ROUNDOFF, ErrorAnalysis, local_error_entry
from ...passes.range_analysis import RangeAnalysis
from .common import (STANDARD, Stage, UnitBlocks, const_vector, ensure_bounded, eps_for, plan_products,
                     pow2_at_least, pow2_at_most, scale_rows, slot_matrix, stage_state_bounds, vneg)

__all__ = ["StandardLowering", "CandidateValues", "ACCURACY_LIMIT", "ACTIVATION_ULPS", "MAX_SELECT_POINTS",
           "describe_stage", "power_norm_sum"]

#: the largest worst-case local error of a standard-mode unit lowering accepts (the error the tests assert
#: end to end); beyond it the construction is refused with a CompileError instead of answering wrong
ACCURACY_LIMIT = 1e-6
#: the rounding of one unit's chain of activations (σ, tanh, their product, tanh), in units of the dtype's unit
#: roundoff relative to the value the unit carries: a few ulps each, with a margin
ACTIVATION_ULPS = 8.0
#: the most candidate values a product's factor may take for the product to be a select (one gated unit per gap
#: between them, where the σ-difference product takes four)
MAX_SELECT_POINTS = 16
#: float32's subnormals: their spacing and the smallest normal number (a unit that carries ``εv`` exactly rounds
#: only where ``|εv|`` is below the latter; the error analysis scales both for float64 runs)
FLOAT32_SUBNORMAL, FLOAT32_NORMAL = 2.0 ** -149, 2.0 ** -126
#: how far past the saturation magnitude L a step gate's argument must be for σ to round to exactly 1 (σ(37.5) is
#: 1 in float64, σ(17.5) in float32), with room for the gate row's rounding
SATURATION_MARGIN = 40.0
#: how far below 0 a gate's argument must be for σ to be exactly 0 in both dtypes (exp(710) overflows float64)
CLOSED_GATE = 710.0
#: how many times its computed argument's magnitude a gated ReLU unit is off its ReLU at most, its gate partly open:
#: ``σ·tanh(εx)`` is between ``εx`` and 0, and a GRU pair's ``p = fl(a + b)`` (``a`` that, ``b`` the held value ``q``
#: cancels) is within ``|a|`` of ``a + b`` — twice, with room for the activations' roundings.  An exact 0 passes 0.
PARTIAL_GAIN = 4.0


class CandidateValues:
    """The candidate exact values of a layer-form module's values (``lsrl.passes.error_bound``: token ids, the
    steps and sums computed from them), analysed on first use: called with ``(op, i)``, ``(points, slack)`` of
    coordinate ``i`` of ``op`` — every exact value within ``slack`` of a point — or None where they are unknown;
    :meth:`zero_gap` says where a coordinate may be exactly 0.
    Whether a run keeps a select's factor within its margin is the error bound's to say, per dtype."""

    def __init__(self, module: Module, t_max: int | None, ranges: RangeAnalysis | None = None):
        self.module, self.t_max, self.ranges = module, t_max, ranges
        self._analysis: ErrorAnalysis | None = None
        self._rows: dict[int, list] = {}

    def __call__(self, op: Op, i: int) -> tuple[np.ndarray, float] | None:
        v = self._values(op, i)
        return None if v.points is None else (v.points, v.slack)

    def zero_gap(self, op: Op, i: int) -> float | None:
        """Where coordinate ``i`` of ``op`` may be exactly 0 and float64 computes it without error (its candidates
        or its lattice): how far its nearest other value is from 0 (inf: none); else None."""
        v = self._values(op, i)
        if v.points is not None:
            if not (v.exact and np.any(v.points == 0)):
                return None
            others = np.abs(v.points[v.points != 0])
            return float(np.min(others)) if others.size else math.inf
        if v.grid is None or v.err != 0.0 or v.slack != 0.0:
            return None
        offset, step = v.grid
        if step == 0:
            return math.inf if offset == 0 else None
        return step if offset / step == round(offset / step) else None

    def row_terms(self, op: Op, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Where row ``i`` of the linear ``op`` may be exactly 0 (:meth:`zero_gap`) and the values it reads are
        known by their candidates: its candidate values and what its terms reach at each (``Σ |w·v| + |b|``, slack
        included); else None."""
        if op.kind != "linear" or self.zero_gap(op, i) is None:
            return None
        cols, weights = self.rows(op)[i]
        form = self._analysis._form(op.operands[0], cols, weights, float(op.attrs["b"].to_float().values[i]))
        if form.points is None or form.mags is None:
            return None
        return form.points, form.mags + form.slacks

    def rows(self, op: Op) -> list:
        """``(columns, weights)`` of every row of the linear ``op`` (read once)."""
        if id(op) not in self._rows:
            self._rows[id(op)] = list(ErrorAnalysis._rows(op.attrs["A"]))
        return self._rows[id(op)]

    def _values(self, op: Op, i: int):
        if self._analysis is None:
            self._analysis = ErrorAnalysis(self.module, "float64", self.t_max, ranges=self.ranges)
        return self._analysis[op].values[i]


@dataclass(frozen=True)
class _Select:
    """How product coordinate ``j`` of an M stage is a select: ``operand`` 0 (the first factor picks) or 1, its
    candidates ``points``, the distance ``margin`` its computed value may keep from them, and the gates' scale."""
    operand: int
    points: np.ndarray
    margin: float
    scale: float


def _rows(W: Matrix, idx: list[int]) -> Matrix:
    return W.rows(idx)


def _bias(c: Vector, idx: list[int]) -> Vector:
    return c[np.asarray(idx, dtype=np.int64)] if idx else Vector.zeros(0)


def _scaled(W: Matrix, c: Vector, idx: list[int], scales: list[float]) -> tuple[Matrix, Vector]:
    """Rows ``idx`` of ``(W, c)`` multiplied row-wise by ``scales``."""
    rows = scale_rows(_rows(W, idx), scales)
    bias = Vector([float(s) * x for s, x in zip(scales, _bias(c, idx).to_float().values.tolist())]) \
        if not c.exact else Vector([x * _frac(s) for s, x in zip(scales, _bias(c, idx).values.tolist())])
    return rows, bias


def describe_stage(st: Stage) -> str:
    """The stage in error messages: its op and its position in the layer form."""
    return f"{st.op.describe()} (stage {st.index} of the layer form, kind {st.kind})"


def power_norm_sum(A: Matrix, steps: float, exact_terms: int = 256) -> float:
    """An upper bound of ``Σ_{k<steps} ‖A^k‖∞``: the first ``K = exact_terms`` powers exactly (a nilpotent ``A``
    ends there).  Past them, with ``q = ‖A^K‖∞ < 1`` the whole sum is at most ``Σ_{k<K} ‖A^k‖∞ / (1 − q)``
    (``‖A^{jK+i}‖ ≤ q^j ‖A^i‖``), which also covers ``steps = inf``; otherwise every later power is bounded by
    the largest norm seen (range analysis has bounded the state, so its dynamics do not grow without limit)."""
    def norm(m) -> float:
        return float(np.max(np.asarray(abs(m).sum(axis=1)).ravel(), initial=0.0))

    power = sp.identity(A.shape[0], format="csr")
    a = sp.csr_matrix(A.scipy())
    total, largest, k = 0.0, 0.0, 0
    while k < min(steps, exact_terms):
        size = norm(power)
        if size == 0.0:
            return total
        total, largest, k = total + size, max(largest, size), k + 1
        power = power @ a
    if k >= steps:
        return total
    q = norm(power)
    return total / (1.0 - q) if q < 1.0 else total + (steps - k) * largest


def _row_terms(W: Matrix) -> np.ndarray:
    """The number of terms of each row of ``W`` (its non-zeros) and of its bias."""
    return np.diff(W.scipy().tocsr().indptr) + 1


def _exact_steps(points: np.ndarray) -> bool:
    """Whether float32 holds every candidate and every gap to the next, the gaps computed exactly in float64: a
    select's units then decode to the candidate exactly."""
    gaps = np.diff(points)
    held = np.all(points.astype(np.float32) == points) and np.all(gaps.astype(np.float32) == gaps)
    return bool(held) and all(Fraction(b) - Fraction(a) == Fraction(g) for a, b, g in
                              zip(points[:-1].tolist(), points[1:].tolist(), gaps.tolist()))


def _frac(x):
    return Fraction(float(x))


class StandardLowering:
    """Builds one cell layer per stage with real activations.

    This class chooses every scale, bound and saturation constant and checks every error bound; a cell's
    subclass (in its target module) turns them into its own units through the ``*_units`` methods and may
    refuse a stage in :meth:`check_stage`."""

    #: how far past L a gated ReLU's gate argument must be for the unit to pass its value exactly: σ rounds to 1
    #: from :data:`SATURATION_MARGIN`; a cell that also computes the complement σ(−·) (the GRU's pair) needs it 0
    saturation_margin: float = SATURATION_MARGIN

    #: whether an S-stage coordinate with ``A`` row ``a·e_j`` (``a`` ∈ {0, 1}) is an integrator — the drive
    #: enters tanh on its own and the cell accumulates it in a memory cell, instead of a tanh recurrence
    integrates: bool = False

    def __init__(self, target: str, constants=STANDARD, *, t_max: int | None = None):
        self.target = target
        self.k = constants
        self.t_max = t_max
        self.scales: list[dict] = []
        #: dtype name -> why the model cannot be right when run in it (the first reason found); the model is
        #: still built, ``lsrl.compile(dtype=...)`` refuses it for that dtype and runs/exports in it raise
        self.dtype_limits: dict[str, str] = {}
        #: position of each layer-form op in its module (set by the driver), to key :attr:`local_errors`
        self.positions: dict[int, int] = {}
        #: layer-form op position -> the error its units add to each coordinate beyond the rounding of the layer
        #: form's own op (docs/targets.md, "Error bounds"), as ``approximation + u·rounding`` for a dtype's unit
        #: roundoff ``u``: ``on``/``on_u`` where a ReLU unit is on (every coordinate of other ops), ``off``/``off_u``
        #: where it is off (the analysis takes the larger where neither is proven); and what the next layer sums to
        #: read the coordinate:
        #: ``units`` terms of decoded magnitude ``hidden`` beyond the value itself (a product's Richardson units,
        #: a GRU pair holding its last value) — what :mod:`lsrl.passes.error_bound` adds — reaching ``terms_total``
        #: together with the value (a GRU pair's two halves: twice its bound, not three times)
        self.local_errors: dict[int, dict] = {}
        #: the layer form's candidate values (set by the driver; None: no product is a select)
        self.candidates: CandidateValues | None = None
        #: the dtype the model is compiled for (set by the driver)
        self.dtype = "float64"
        #: what each unit of the layer a stage reads may reach in magnitude (set by the driver per stage: the input's
        #: bounds, or ρ — every standard unit carries ε·v, a gate times it, or a pair holding it)
        self.column_reach: np.ndarray = np.zeros(0)

    def finish(self, module: Module) -> None:
        """Called once every stage of the layer form ``module`` is lowered (:attr:`local_errors` complete): a
        target's checks that need the whole model's error analysis."""

    def _require_accuracy(self, what: str, error_bound: float) -> None:
        """Refuse a unit whose documented worst-case error (docs/targets.md, "Error bounds") exceeds
        :data:`ACCURACY_LIMIT`: with huge bounds or ``t_max`` the construction would compile but answer wrong."""
        if not error_bound <= ACCURACY_LIMIT:
            raise CompileError(f"{self.target} standard mode cannot stay accurate: {what} has a worst-case error "
                               f"of {error_bound:.2g} (limit {ACCURACY_LIMIT:g}) with t_max={self.t_max}; compile "
                               "with a smaller t_max or tighter Input bounds, or use activations='ideal'")

    def _state_steps(self, j: int, A: Matrix, state_bound: float, drive_bound: float, integrator: float | None,
                     where: str) -> float:
        """How many steps' underflow state coordinate ``j`` carries on over ``t_max`` steps (docs/targets.md,
        "Error bounds"): its units carry the state exactly in a float run (saturated gates; ``tanh(εs) = εs``,
        which every executor computes for ``|εs| ≤ ρ``) but where float32's subnormals round a step.  Refuses a
        state whose real-arithmetic approximation (the tanh curvature, accumulated) exceeds
        :data:`ACCURACY_LIMIT`."""
        rho2 = self.k.rho ** 2
        steps = math.inf if self.t_max is None else float(self.t_max)
        if integrator == 0.0:  # c = tanh(ε u): no accumulation
            curvature, carried = rho2 * (drive_bound + state_bound) / 3, 1.0
        elif integrator == 1.0:  # c accumulates one input tanh per step (none without a drive)
            accumulated = steps * drive_bound if drive_bound else 0.0
            curvature, carried = rho2 * (accumulated + state_bound) / 3, steps if drive_bound else 1.0
        elif state_bound == 0.0:  # a state that is always 0 (its units carry nothing)
            curvature = carried = 0.0
        else:  # Σ_{k<T} ‖A^k‖∞ (2/3) ρ² B
            carried = power_norm_sum(A, steps)
            curvature = carried * 2 * rho2 * state_bound / 3
        self._require_accuracy(f"state coordinate {j} of {where}", curvature)
        return carried

    @staticmethod
    def _underflow(terms: int, eps: float) -> tuple[float, float]:
        """``(underflow, normal_from)`` of a unit of scale ``eps`` whose pre-activation sums ``terms`` terms: what
        float32's subnormals may round, decoded, and the smallest value they do not touch."""
        return (terms + 4) * FLOAT32_SUBNORMAL / eps, FLOAT32_NORMAL / eps

    def _record(self, st: Stage, **fields) -> None:
        self.local_errors[self.positions[id(st.op)]] = local_error_entry(st.out_dim, **fields)

    # ------------------------------------------------------------------ what a cell's units cost (error bounds)
    def relu_reads(self, bound: float) -> tuple[float, int]:
        """``(hidden magnitude, units)`` the next layer sums to read a gated ReLU of bound ``bound``: terms that are
        each ± one of the unit's earlier values (what a GRU pair holds)."""
        return 0.0, 1

    def relu_terms_total(self, bound: float) -> float:
        """What the terms the next layer sums to read a gated ReLU of bound ``bound`` reach together, its value
        included (inf: no more than the value and :meth:`relu_reads`' hidden magnitude)."""
        return math.inf

    def product_reads(self, value_bound: float, eps_gate: float) -> tuple[float, int]:
        """``(hidden magnitude, units)`` the next layer sums to read a product: its Richardson units, decoded by
        ``8/(3 ε_g ε_v)`` and ``1/(3 ε_g ε_v)`` (``eps_gate`` = ε_g ≤ ρ_g/B_g), so about ``B_v/ε_g`` each."""
        raise NotImplementedError

    def summary(self) -> dict:
        k = self.k
        return {"gate": k.gate, "rho": k.rho, "rho_gate": k.rho_gate, "kappa_span": k.kappa_span}

    @staticmethod
    def negated(weights: tuple) -> tuple:
        """``(−W, −b)``: the same rows with the opposite sign."""
        W, b = weights
        return -W, vneg(b)

    def on(self, n: int) -> Vector:
        """Gate biases saturating σ to exactly 1."""
        return const_vector(n, self.k.gate)

    def off(self, n: int) -> Vector:
        """Gate biases saturating σ to exactly 0."""
        return const_vector(n, -self.k.gate)

    # ------------------------------------------------------------------ what a cell provides
    def check_stage(self, st: Stage) -> None:
        """Refuse a stage the cell cannot lower accurately (CompileError); called before every stage."""

    def state_units(self, blocks: UnitBlocks, k: int, *, drive: tuple, rec: Matrix, h0: Vector, decode: Matrix,
                    integrators: list[int], diagonal: np.ndarray) -> None:
        """S stage: units with ``h ≈ ε s`` given the scaled drive ``(W, b)`` (``ε(B v + b)``), the scaled
        recurrence ``E A E⁻¹``, ``h0 = ε s0``; ``integrators`` (see :attr:`integrates`) with ``A``'s diagonal."""
        raise NotImplementedError

    def relu_units(self, blocks: UnitBlocks, st: Stage, n: int, *, gate: tuple, value: tuple, decode: Matrix,
                   gated: list[int], eps: list[float]) -> None:
        """R stage, arguments of unknown sign: units ``≈ σ(κx − L)·tanh(εx)`` from the step gate's ``(W, b)``
        (``κx − L``) and the value's ``(W, b)`` (``εx``); ``decode`` gives ``ReLU(x)`` back."""
        raise NotImplementedError

    def carrier_units(self, blocks: UnitBlocks, n: int, *, value: tuple, decode: Matrix, role: str) -> None:
        """Units carrying affine values linearly: ``≈ tanh(εa)`` from the scaled ``(W, b)``."""
        raise NotImplementedError

    def select_units(self, blocks: UnitBlocks, n: int, *, gate: tuple, value: tuple, decode: Matrix, slot: int,
                     held: list[float]) -> None:
        """M stage, a select's gated units ``≈ σ(gate)·tanh(value)`` (every gate saturated) adding to value
        coordinate ``slot``; ``held`` bounds what each unit carries, decoded."""
        raise NotImplementedError

    def product_units(self, blocks: UnitBlocks, n: int, *, gate: tuple, value: tuple, decode: Matrix,
                      scale: int) -> None:
        """M stage, one half of a Richardson pair: units whose difference is ``D(s a)·tanh(ε_v v)`` with
        ``D(a) = σ(a) − σ(−a)``; ``gate`` is ``(W, b)`` of ``s a`` and ``decode`` reads the ``+`` side."""
        raise NotImplementedError

    # ------------------------------------------------------------------ stages
    def stage(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> Vector:
        self.check_stage(st)
        if st.kind == "S":
            self._state(blocks, st, W, c)
            return Vector.zeros(st.out_dim)
        if st.kind == "R":
            self._relu(blocks, st, W, c)
            return Vector.zeros(st.out_dim)
        return self._product(blocks, st, W, c)

    def _state(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> None:
        k = st.out_dim
        slo, shi = stage_state_bounds(st)
        A = st.A
        rows, cols, vals = A.coo()
        diag_only = np.ones(k, dtype=bool)
        diag_val = np.zeros(k)
        for r_, c_, v in zip(rows.tolist(), cols.tolist(), vals):
            if r_ != c_:
                diag_only[r_] = False
            else:
                diag_val[r_] = float(v)
        integ = [j for j in range(k) if self.integrates and diag_only[j] and diag_val[j] in (0.0, 1.0)]
        eps = []
        underflow, normal_from = np.zeros(k), np.zeros(k)
        terms = _row_terms(W) + _row_terms(A)
        for j in range(k):
            bound = ensure_bounded(f"{self.target}: state coordinate {j} of {describe_stage(st)}",
                                   slo[j:j + 1], shi[j:j + 1])
            if j in integ:  # the drive enters tanh on its own
                bound = max(bound, ensure_bounded(f"{self.target}: input of state coordinate {j} of "
                                                  f"{describe_stage(st)}", st.pre_lo[j:j + 1], st.pre_hi[j:j + 1]))
            eps.append(eps_for(bound, self.k.rho))
            drive = float(max(abs(st.pre_lo[j]), abs(st.pre_hi[j])))
            steps = self._state_steps(j, A, float(max(abs(slo[j]), abs(shi[j]))), drive,
                                      diag_val[j] if j in integ else None, describe_stage(st))
            underflow[j], normal_from[j] = self._underflow(terms[j], eps[-1])
            underflow[j] *= steps
        self._record(st, underflow=underflow, normal_from=normal_from)
        inv = [1.0 / e for e in eps]
        drive_w, drive_b = _scaled(W, c, list(range(k)), eps)
        rec = scale_rows(A, eps) @ Matrix.diag(inv)
        init = st.init.to_float().values
        h0 = Vector([e * s for e, s in zip(eps, init.tolist())])
        decode = Matrix.diag(inv)
        self.scales.append({"stage": "S", "eps_min": min(eps), "eps_max": max(eps)})
        self.state_units(blocks, k, drive=(drive_w, drive_b), rec=rec, h0=h0, decode=decode, integrators=integ,
                         diagonal=diag_val)

    def _relu(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> None:
        d = st.out_dim
        lin, gated, eps_lin, eps_g, kap = [], [], [], [], []
        on, on_u, off, off_u, hidden, units, hidden_step, underflow, normal_from = (np.zeros(d) for _ in range(9))
        exact_from, closed_below, partial_gain = np.full(d, math.inf), np.full(d, -math.inf), np.full(d, math.inf)
        terms_total = np.full(d, math.inf)
        exact_from_u, closed_below_u = np.zeros(d), np.zeros(d)
        gate_fixed_u, gate_terms = np.zeros(d), np.zeros(d)
        terms = _row_terms(W)
        for j in range(d):
            lo, hi = st.pre_lo[j], st.pre_hi[j]
            if hi <= 0:
                continue  # ReLU ≡ 0
            bound = ensure_bounded(f"{self.target}: ReLU argument {j} of {describe_stage(st)}",
                                   st.pre_lo[j:j + 1], st.pre_hi[j:j + 1])
            if lo >= 0:
                lin.append(j)
                eps_lin.append(eps_for(bound, self.k.rho))
                underflow[j], normal_from[j] = self._underflow(terms[j], eps_lin[-1])  # a carrier: exact
            else:
                # only the positive side reaches the output (σ(κx) = 0 below), so ε comes from hi; κ from the
                # whole range so that κx stays finite
                gated.append(j)
                eps_g.append(eps_for(float(hi), self.k.rho))
                bias, reach, n = float(c.to_float().values[j]), self._row_reach(W, c, j), int(terms[j]) + 1
                widest = min(pow2_at_most(self.k.kappa_span / bound), self._weight_cap(W, c, j))
                kappa, closing = self._closing_kappa(st, j, bias, reach, n, bound, widest)
                kap.append(kappa)
                # below the saturation band σ(κx) is partial: the value error there is ≤ 0.28/κ, taken relative to
                # the argument's bound (a λ-conditional's |x| ≤ 1e10 has float64 resolution 1e-6 of its own)
                self._require_accuracy(f"the step gate of ReLU argument {j} of {describe_stage(st)} (|x| ≤ {bound:.3g}), "
                                       "relative to that bound", 0.28 / (kap[-1] * max(bound, 1.0)))
                # the gate's argument κx − L is computed with the rounding of its bias κc − L (u·2(κ|c| + L) in the
                # gate's units, which the value row's error does not hold: a λ-row's κc near 2^80 loses L entirely
                # in float32) and of its n partial sums, which may lose part of L each — at most L where the value
                # row is exact (its terms are on a grid whose sums the dtype holds; elsewhere the value row's error
                # holds that rounding), at most u·(κ·reach + L) anywhere: the first bound unless κ was lowered to
                # close the gate at an exact 0.  Exact (σ = 1) from 40 past that, closed (σ = 0) from 710 below it;
                # on the ramp between, x·σ ≤ x and the gate product rounds a few ulps of that, and a unit of x ≤ 0
                # passes at most |x|
                bias_rounding = 2 * (kap[-1] * abs(bias) + self.k.gate) / kap[-1]
                if closing:
                    # the partial sums' part scales with what the terms reach: the error analysis takes it at each
                    # value of the argument it knows (a λ-row's 10¹⁰ term is 0 where its condition is)
                    gate_fixed_u[j], gate_terms[j] = bias_rounding + n * self.k.gate / kap[-1], n
                    lost = gate_fixed_u[j] + n * reach
                    exact_from[j], exact_from_u[j] = (self.k.gate + self.saturation_margin) / kap[-1], lost
                    closed_below[j], closed_below_u[j] = (self.k.gate - CLOSED_GATE) / kap[-1], lost
                else:
                    exact_from[j] = ((n + 1) * self.k.gate + self.saturation_margin) / kap[-1]
                    closed_below[j] = -((n - 1) * self.k.gate + CLOSED_GATE) / kap[-1]
                    exact_from_u[j] = closed_below_u[j] = bias_rounding
                on[j], on_u[j] = exact_from[j], ACTIVATION_ULPS * exact_from[j] + 2 * exact_from_u[j]
                off[j], off_u[j] = max(-closed_below[j], 0.0), closed_below_u[j]
                partial_gain[j] = PARTIAL_GAIN
                underflow[j], normal_from[j] = self._underflow(terms[j], eps_g[-1])
                hidden[j], units[j] = self.relu_reads(float(hi))
                terms_total[j] = self.relu_terms_total(float(hi))
                hidden_step[j] = 1.0 if hidden[j] else 0.0
        self._record(st, on=on, on_u=on_u, off=off, off_u=off_u, partial_gain=partial_gain, hidden=hidden,
                     units=np.maximum(units, 1), hidden_step=hidden_step, terms_total=terms_total,
                     exact_from=exact_from, exact_from_u=exact_from_u, closed_below=closed_below,
                     closed_below_u=closed_below_u, underflow=underflow, normal_from=normal_from,
                     gate_fixed_u=gate_fixed_u, gate_terms=gate_terms)
        self.scales.append({"stage": "R", "units_linear": len(lin), "units_gated": len(gated)})
        if lin:
            self._carrier(blocks, W, c, lin, eps_lin, slot_matrix(d, lin, [1.0 / e for e in eps_lin]), "relu_identity")
        if not gated:
            return
        n = len(gated)
        g_w, g_b = _scaled(W, c, gated, eps_g)
        s_w, s_b = _scaled(W, c, gated, kap)
        # σ(κx − L) rather than σ(κx): exactly 0 for every x ≤ 0, including arguments that are 0 in exact
        # arithmetic and come out as ±(rounding noise), where σ(κ·noise) would be a gate value that depends on
        # how the executor computes σ (torch's 1/(1 + e^60) is 9e-27, a tanh-based σ gives 0)
        s_b = s_b + const_vector(n, -self.k.gate)
        self.relu_units(blocks, st, n, gate=(s_w, s_b), value=(g_w, g_b),
                        decode=slot_matrix(d, gated, [1.0 / e for e in eps_g]), gated=gated, eps=eps_g)

    def _candidate_reach(self, st: Stage, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The candidate values of ReLU argument ``j`` where it may be exactly 0, and what the terms of its row
        reach at each — the values' terms (:meth:`CandidateValues.row_terms`) and the hidden terms of the units
        they read (a GRU pair's halves hold its last value whatever its value); None where they are not known."""
        linear = st.op.operands[0]
        found = None if self.candidates is None else self.candidates.row_terms(linear, j)
        if found is None:
            return None
        points, reach = found
        entry = self.local_errors.get(self.positions.get(id(linear.operands[0])))
        if entry is not None:
            cols, weights = self.candidates.rows(linear)[j]
            reach = reach + float(np.abs(weights) @ np.asarray(entry["hidden"])[cols])
        return points, reach

    def _closing_kappa(self, st: Stage, j: int, bias: float, reach: float, n: int, bound: float,
                       kappa: float) -> tuple[float, bool]:
        """``(κ, closing)`` for the gated ReLU of argument ``j`` (bias ``bias``, its row's ``n`` terms reaching
        ``reach``, ``|x| ≤ bound``): ``(kappa, False)``, or, where the argument is computed exactly and may be
        exactly 0 (its candidates or its lattice), the largest power of two up to ``kappa`` at which the gate's
        rounding at 0 (its bias, and what its partial sums lose: what the terms reach there, where the candidates
        tell) stays below a quarter of ``L − 710`` in the model's dtype, so that σ is exactly 0 at 0 and the unit
        passes nothing — a GRU pair keeps its last value, which its readers then sum exactly — where every other
        value stays saturated at it with the rounding the terms reach there, and ``closing`` True: the gate's
        thresholds then count that rounding, not ``L`` per partial sum.  (At a larger κ the rounding leaves the
        gate anywhere at 0; a smaller κ widens the band where it is partly open, so only such arguments get it.)"""
        if self.candidates is None:
            return kappa, False
        gap = self.candidates.zero_gap(st.op.operands[0], j)
        if gap is None:
            return kappa, False
        known = self._candidate_reach(st, j)
        at_zero = reach if known is None else min(reach, float(np.max(known[1][known[0] == 0], initial=0.0)))
        u = UNIT_ROUNDOFF[self.dtype]
        room = (self.k.gate - CLOSED_GATE) / 4
        # u·(2(κ|c| + L) + n(κ·reach + L)) ≤ room, in the gate's units
        spare, spread = room / u - (n + 2) * self.k.gate, 2 * abs(bias) + n * at_zero
        if not (spare > 0 and spare >= spread):
            return kappa, False
        closing = kappa if spread == 0 else min(kappa, pow2_at_most(spare / spread))
        if 0.28 / (closing * max(bound, 1.0)) > ACCURACY_LIMIT:
            return kappa, False
        if known is None:  # every other value is at least the gap from 0: the gate saturates there
            saturated = gap >= (self.k.gate + self.saturation_margin + room) / closing
        else:  # each other value past its own rounding (the terms reach far more at some: a λ-row's 10¹⁰)
            points, terms = known
            rounding = u * (2 * (closing * abs(bias) + self.k.gate) / closing + n * (terms + self.k.gate / closing))
            saturated = bool(np.all((points == 0)
                                    | (points >= (self.k.gate + self.saturation_margin) / closing + rounding)
                                    | (points <= (self.k.gate - CLOSED_GATE) / closing - rounding)))
        return (closing, True) if saturated else (kappa, False)

    def _row_reach(self, W: Matrix, c: Vector, j: int) -> float:
        """What the terms of row ``j`` of ``(W, c)`` reach in magnitude: ``Σ |W_ji|·reach_i + |c_j|`` over the
        previous layer's units (:attr:`column_reach`)."""
        row = W.rows([j]).scipy().tocsr()
        return float(np.abs(row.data) @ self.column_reach[row.indices]) + abs(float(c.to_float().values[j]))

    def _weight_cap(self, W: Matrix, c: Vector, j: int) -> float:
        """The largest power of two κ keeping row ``j`` of ``κ·(W, c)`` below ``2^max_weight_log2``."""
        row = W.rows([j]).scipy().data
        biggest = max(float(np.max(np.abs(row), initial=0.0)), abs(float(c.to_float().values[j])))
        if biggest == 0:
            return 1.0
        return pow2_at_most(2.0 ** self.k.max_weight_log2 / biggest)

    def _carrier(self, blocks: UnitBlocks, W: Matrix, c: Vector, idx: list[int], eps: list[float], decode: Matrix,
                 role: str) -> None:
        """Units carrying rows ``idx`` of ``W x + c`` linearly, scaled by ``eps``."""
        self.carrier_units(blocks, len(idx), value=_scaled(W, c, idx, eps), decode=decode, role=role)

    def _select(self, st: Stage, plan, j: int) -> _Select | None:
        """How product ``j`` of M stage ``st`` is a select (of its factors with at most :data:`MAX_SELECT_POINTS`
        candidates that float32 holds with their gaps, the one with fewer), or None."""
        if self.candidates is None:
            return None
        factors = st.op.operands[0]
        best = None
        for operand in (0, 1):
            found = self.candidates(factors, j + operand * plan.h)
            if found is None or found[0].size > MAX_SELECT_POINTS or not _exact_steps(found[0]):
                continue
            points, slack = found
            if points.size == 1:  # a constant on the declared domain: the product is linear
                choice = _Select(operand, points, math.inf, 1.0)
            else:
                G, cg = (plan.U, plan.cu) if operand == 0 else (plan.V, plan.cv)
                lo, hi = (plan.ulo[j], plan.uhi[j]) if operand == 0 else (plan.vlo[j], plan.vhi[j])
                row = G.rows([j]).scipy()
                reach = float(max(abs(lo), abs(hi), np.max(np.abs(points))))
                gap = float(np.min(np.diff(points)))
                # a gate sums the factor's row and a midpoint: one term more than the factor's own rounding, which
                # the error analysis counts in the factor's error (float32's, whatever the model's dtype: a float64
                # model may run in float32)
                margin = gap / 4 - 4 * (row.nnz + 2) * UNIT_ROUNDOFF["float32"] * reach
                scale = pow2_at_least(4 * self.k.gate / gap)  # |gate| ≥ L wherever the factor keeps the margin
                biggest = max(float(np.max(np.abs(row.data), initial=0.0)),
                              abs(float(cg.to_float().values[j])) + reach)
                # the exact factor within half its margin of the candidate the units use
                if not (slack <= margin / 2 and scale * biggest <= 2.0 ** self.k.max_weight_log2):
                    continue
                choice = _Select(operand, points, margin, scale)
            if best is None or choice.points.size < best.points.size:
                best = choice
        return best

    def _select_units(self, blocks: UnitBlocks, plan, j: int, sel: _Select, bound: float) -> tuple:
        """The units of select ``sel`` for product ``j`` (the other factor bounded by ``bound``); returns its
        ``(underflow, normal_from, hidden, units, hidden_step)`` (``normal_from`` of the other factor, which its units
        carry; ``hidden_step`` the largest power of two dividing every constant its units multiply that factor by)."""
        G, cg = (plan.U, plan.cu) if sel.operand == 0 else (plan.V, plan.cv)
        R, cr = (plan.V, plan.cv) if sel.operand == 0 else (plan.U, plan.cu)
        ev = eps_for(bound, self.k.rho)
        p = sel.points.tolist()
        gaps = [b - a for a, b in zip(p, p[1:])]
        held = [abs(g) * bound for g in gaps]
        # every unit carries the other factor exactly (its gate saturated, tanh(ε_v v) = ε_v v) but for float32's
        # subnormals, decoded by each candidate's gap
        underflow, normal_from = self._underflow(int(_row_terms(R.rows([j]))[0]), ev)
        underflow *= sum(abs(g) for g in gaps) + abs(p[0])
        hidden = units = 0.0
        if gaps:
            n = len(gaps)
            gw, gb = _scaled(G, cg, [j] * n, [sel.scale] * n)
            gb = gb + Vector([-sel.scale * (a + b) / 2 for a, b in zip(p, p[1:])])
            self.select_units(blocks, n, gate=(gw, gb), value=_scaled(R, cr, [j] * n, [ev] * n),
                              decode=slot_matrix(plan.h, [j] * n, [g / ev for g in gaps]), slot=j, held=held)
            for carried in held:
                extra, count = self.relu_reads(carried)
                hidden, units = hidden + carried + extra, units + count
        if p[0] != 0:
            self._carrier(blocks, R, cr, [j], [ev], slot_matrix(plan.h, [j], [p[0] / ev]), "select_carrier")
            hidden, units = hidden + abs(p[0]) * bound, units + 1
        constants = np.abs(np.array(gaps + [p[0]]))
        hidden_step = 2.0 ** float(np.min(lowest_bit(constants[constants > 0]))) if np.any(constants) else 0.0
        return underflow, normal_from, hidden, max(units, 1.0), hidden_step

    def _product(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> Vector:
        plan = plan_products(st, W, c)
        h = plan.h
        on, on_u, hidden, units = np.zeros(h), np.zeros(h), np.zeros(h), np.ones(h)
        selector, margin, underflow, normal_from, hidden_step = (np.zeros(h) for _ in range(5))
        rho2 = self.k.rho ** 2
        # carriers (one operand constant): exact but for float32's subnormals
        if plan.lin_slot:
            keep, eps = [], []
            terms = _row_terms(plan.lin_rows)
            for i in range(len(plan.lin_slot)):
                bound = ensure_bounded(f"{self.target}: carried value of {describe_stage(st)}",
                                       plan.lin_lo[i:i + 1], plan.lin_hi[i:i + 1])
                if bound > 0:
                    keep.append(i)
                    eps.append(eps_for(bound, self.k.rho))
                    underflow[plan.lin_slot[i]], normal_from[plan.lin_slot[i]] = self._underflow(terms[i], eps[-1])
            if keep:
                self._carrier(blocks, plan.lin_rows, plan.lin_bias, keep, eps,
                              slot_matrix(h, [plan.lin_slot[i] for i in keep], [1.0 / e for e in eps]), "carrier")
        idx = []
        for j in plan.prod:
            bu = ensure_bounded(f"{self.target}: first operand {j} of {describe_stage(st)}",
                                plan.ulo[j:j + 1], plan.uhi[j:j + 1])
            bv = ensure_bounded(f"{self.target}: second operand {j} of {describe_stage(st)}",
                                plan.vlo[j:j + 1], plan.vhi[j:j + 1])
            sel = self._select(st, plan, j)
            if sel is None:
                idx.append(j)
                continue
            underflow[j], normal_from[j], hidden[j], units[j], hidden_step[j] = self._select_units(
                blocks, plan, j, sel, bv if sel.operand == 0 else bu)
            selector[j], margin[j] = sel.operand + 1, sel.margin
        eg, ev = [], []
        for j in idx:
            bu = float(max(abs(plan.ulo[j]), abs(plan.uhi[j])))
            bv = float(max(abs(plan.vlo[j]), abs(plan.vhi[j])))
            eg.append(eps_for(bu, self.k.rho_gate))
            ev.append(eps_for(bv, self.k.rho))
            # the Richardson pairs' truncation and the value tanh; each unit rounds a few ulps of its own magnitude,
            # 1/ρ_g times the product's (the cancellation of σ(a) − σ(−a))
            hidden[j], units[j] = self.product_reads(bv, eg[-1])
            on[j] = (self.k.rho_gate ** 4 / 30 + rho2) * bu * bv
            on_u[j] = ACTIVATION_ULPS * hidden[j]
        self._record(st, on=on, on_u=on_u, hidden=hidden, units=units, hidden_step=hidden_step, selector=selector,
                     margin=margin, underflow=underflow, normal_from=normal_from)
        if not idx:
            return plan.const
        n = len(idx)
        vw, vb = _scaled(plan.V, plan.cv, idx, ev)
        self.scales.append({"stage": "M", "products": n})
        # Richardson pair of pairs: with D(a) = σ(a) − σ(−a) = tanh(a/2),
        # (8 D(a) − D(2a)) / 3 = a − a⁵/30, so g·v ≈ (8 Δ₁ − Δ₂) / (3 ε_g ε_v) where Δ_s is the
        # difference of the two units whose gates are σ(±s ε_g g).
        for scale, weight in ((1, 8.0), (2, -1.0)):
            gw, gb = _scaled(plan.U, plan.cu, idx, [scale * e for e in eg])
            coef = [weight / (3.0 * a * b) for a, b in zip(eg, ev)]
            self.product_units(blocks, n, gate=(gw, gb), value=(vw, vb), decode=slot_matrix(h, idx, coef),
                               scale=scale)
        return plan.const
