"""Standard-mode constructions for the LSTM and GRU (``targets.md`` §5, §6, decision D9).

The real activations are kept (σ for gates, tanh for candidates/cells), so the weights run unmodified in
``torch.nn.LSTM``/``nn.GRU`` and ONNX ``LSTM``/``GRU``.  Three tools (constants in
:class:`~lsrl.targets.common.StandardConstants`, all powers of two):

* **saturation** — a gate with pre-activation ±L (L = 1024) is exactly 1/0 in float64 and float32;
* **linearisation** — every carried value enters tanh scaled, ``tanh(ε v)`` with ``|ε v| ≤ ρ = 2^-20``
  (relative error ≤ ρ²/3); the next layer divides by ε in its input weights (ε per unit, from range analysis);
* **gated ReLU / products** — ``ReLU(x) ≈ σ(κx)·tanh(εx)`` (exact where κx saturates);
  a product ``g·v`` uses σ(a) − σ(−a) = tanh(a/2) with ``a = ε_g g`` (``|a| ≤ 2^-7``) at scales a and 2a
  (four units: (8 D(a) − D(2a))/3 = a − a⁵/30).

κ·max|x| = 2^80 keeps every weight below 2^120, finite in float32 (ONNX runs these ops in float32).

LSTM units (f, i, o saturated unless stated; ``h = o·tanh(c)``):

=============  =========================================================================  ===========
stage          unit                                                                         value
=============  =========================================================================  ===========
S, integrator  ``A`` row = ``a ∈ {0,1}`` on the diagonal: f = a, i = o = 1,                  ``h/ε``
               ``g = tanh(ε(B v + b))``, ``c0 = ε s0``  ⇒ ``c_t = a c + tanh(ε u) ≈ ε s_t``
S, general     f = 0, i = o = 1, ``g = tanh(E A E⁻¹ h + ε(B v + b))``  ⇒ ``h ≈ ε s``          ``h/ε``
R              f = 0, o = 1, ``i = σ(κx)``, ``g = tanh(εx)``  ⇒ ``h ≈ ε ReLU(x)``             ``h/ε``
               (``x ≥ 0`` proven: ``i = 1``; ``x ≤ 0`` proven: no unit)
M, product     units ``i = σ(±s ε_g g)`` (s = 1, 2), ``g = tanh(ε_v v)``; Δ_s = h₊ − h₋          ``(8Δ₁−Δ₂)/(3ε_gε_v)``
M, carrier     (one operand constant) i = o = 1, ``g = tanh(ε a)``                          ``h/ε``
=============  =========================================================================  ===========

GRU units (``h' = (1 − z) n + z h``; z = 0 and r = 1 saturated unless stated):

* S: ``n = tanh(E A E⁻¹ h + ε(B v + b))`` — a linearised tanh RNN (errors accumulate over time for
  eigenvalues of modulus 1; bounded through ``t_max``);
* R: the leak-cancelling pair (D7) with ``1 − z_p = σ(κx)``, ``n_p = tanh(εx)``, ``r_q = z_p``,
  ``n_q = tanh(r_q p)`` ⇒ ``p' − q' ≈ ε ReLU(x)``; a proven-non-negative ``x`` needs one unit;
* M: four pairs with ``1 − z = σ(±s ε_g g)`` (s = 1, 2), ``n = tanh(ε_v v)``, combined as for the LSTM;
  carriers one unit.

Every bound comes from range analysis; an unbounded value raises CompileError (give the Input bounds and
``t_max``).  docs/targets.md states the error bounds and the measured errors.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import CompileError
from ..ir.matrix import Matrix, Vector
from .common import (STANDARD, Stage, UnitBlocks, const_vector, ensure_bounded, eps_for, plan_products,
                     pow2_at_most, row_is_constant, scale_rows, slot_matrix, stage_state_bounds, vscale)

__all__ = ["StandardLowering", "ACCURACY_LIMIT"]

#: the largest worst-case local error of a standard-mode unit lowering accepts (the error the tests assert
#: end to end); beyond it the construction is refused with a CompileError instead of answering wrong
ACCURACY_LIMIT = 1e-6
#: float64 unit roundoff: the rounding of a sum that reads GRU ReLU pairs (see ``_check_pair_readers``)
FLOAT64_ROUNDOFF = 2.0 ** -53
FLOAT32_ROUNDOFF = 2.0 ** -24


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


def _where(st: Stage) -> str:
    """The stage in error messages: its op and its position in the layer form."""
    return f"{st.op.describe()} (stage {st.index} of the layer form, kind {st.kind})"


def _power_norm_sum(A: Matrix, steps: float, exact_terms: int = 256) -> float:
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


def _frac(x):
    from fractions import Fraction
    return Fraction(float(x))


class StandardLowering:
    """Builds one LSTM/GRU layer per stage with real activations."""

    def __init__(self, target: str, constants=STANDARD, *, t_max: int | None = None):
        if target not in ("lstm", "gru"):
            raise CompileError(f"standard activations: no construction for target {target!r}")
        self.target = target
        self.k = constants
        self.t_max = t_max
        self.scales: list[dict] = []
        # GRU ReLU pairs of the stage just lowered (unit -> bound), read by the next stage's check
        self._pair_bounds: dict[int, float] = {}

    def _require_accuracy(self, what: str, error_bound: float) -> None:
        """Refuse a unit whose documented worst-case error (docs/targets.md, "Error bounds") exceeds
        :data:`ACCURACY_LIMIT`: with huge bounds or ``t_max`` the construction would compile but answer wrong."""
        if not error_bound <= ACCURACY_LIMIT:
            raise CompileError(f"{self.target} standard mode cannot stay accurate: {what} has a worst-case error "
                               f"of {error_bound:.2g} (limit {ACCURACY_LIMIT:g}) with t_max={self.t_max}; compile "
                               "with a smaller t_max or tighter Input bounds, or use activations='ideal'")

    def _check_pair_readers(self, st: Stage) -> None:
        """Refuse a stage whose rows read the GRU's leak-cancelling ReLU pairs of the stage before with a worst-case
        rounding error above :data:`ACCURACY_LIMIT` of what the row resolves.  After the ReLU turns off, both
        units of a pair keep the last positive value, so the row's sum rounds an error of ``2^-53 · Σ |w| B``
        (``B`` the pair's bound) into a value that only had to resolve its own bound — a λ-conditional
        ``ReLU(t − λ·c)`` (λ = 1e10, ``t ≤ 9``) reaches 1e-4 of it and the n = 10 token program answers wrong
        in every executor (docs/numerics.md); counters squared over a long ``t_max`` reach it as well."""
        pairs, self._pair_bounds = self._pair_bounds, {}
        if not pairs:
            return
        cols = np.array(sorted(pairs))
        read = np.asarray(abs(st.W.scipy()[:, cols]) @ np.array([pairs[j] for j in cols.tolist()])).ravel()
        # what a row must resolve: its positive side for a ReLU (the rest is cut off), its whole range otherwise
        resolved = np.maximum(st.pre_hi if st.kind == "R" else np.maximum(np.abs(st.pre_lo), np.abs(st.pre_hi)), 1.0)
        worst = int(np.argmax(read / resolved))
        self._require_accuracy(
            f"row {worst} of {_where(st)}, which reads the GRU ReLU pairs of the stage before with "
            f"Σ |weight| × bound = {read[worst]:.3g} (a λ-conditional or a long counter), relative to its bound "
            f"{resolved[worst]:.3g}", FLOAT64_ROUNDOFF * read[worst] / resolved[worst])

    def _check_float32_weights(self, st: Stage) -> None:
        """Refuse a GRU stage with a weight ≥ 2^24 (a λ-conditional's λ = 1e10).  The GRU carries every ReLU
        and state through leak-cancelling pairs whose float32 rounding (2^-24 of a value of order 1) such a
        weight turns into an error ≥ 1: the token program then answered 70–83 % wrong in float32 (the kernel at
        n = 10, torch at n = 3) although float64 is right.  The paper's other R/S weights stay ≤ 5e6."""
        loudest = float(abs(st.W.scipy()).max()) if st.W.shape[0] and st.W.shape[1] else 0.0
        if FLOAT32_ROUNDOFF * loudest >= 1.0:
            raise CompileError(
                f"gru standard mode cannot stay accurate in float32: {_where(st)} has a weight of {loudest:.3g} "
                "≥ 2^24, so one float32 rounding of a GRU ReLU pair outweighs a value of 1 — a λ-conditional; use "
                "the multiplicative conditionals, target 'lstm', or activations='ideal'")

    def _state_error(self, j: int, A: Matrix, state_bound: float, drive_bound: float, integrator: float | None,
                     where: str) -> None:
        """The error bound of state coordinate ``j`` over ``t_max`` steps (docs/targets.md, "Error bounds")."""
        rho2 = self.k.rho ** 2
        steps = math.inf if self.t_max is None else float(self.t_max)
        if integrator == 0.0:  # c = tanh(ε u): no accumulation
            error = rho2 * (drive_bound + state_bound) / 3
        elif integrator == 1.0:  # c accumulates one input tanh per step
            error = steps * rho2 * drive_bound / 3 + rho2 * state_bound / 3 if drive_bound else rho2 * state_bound / 3
        else:  # Σ_{k<T} ‖A^k‖∞ (2/3) ρ² B
            error = _power_norm_sum(A, steps) * 2 * rho2 * state_bound / 3
        self._require_accuracy(f"state coordinate {j} of {where}", error)

    def summary(self) -> dict:
        k = self.k
        return {"gate": k.gate, "rho": k.rho, "rho_gate": k.rho_gate, "kappa_span": k.kappa_span}

    # ------------------------------------------------------------------ gate helpers
    def _on(self, n: int) -> Vector:
        return const_vector(n, self.k.gate)

    def _off(self, n: int) -> Vector:
        return const_vector(n, -self.k.gate)

    def _lstm(self, blocks: UnitBlocks, n: int, *, i=None, f=None, g=None, o=None, rec_g=None, h0=None, c0=None,
              decode=None, role=""):
        """Add ``n`` LSTM units; a gate given as ``(W, b)`` is computed, ``True``/``False`` saturates it on/off."""
        W, b = {}, {}
        for name, spec in (("i", i), ("f", f), ("g", g), ("o", o)):
            if spec is True:
                b[name] = self._on(n)
            elif spec is False or spec is None:
                if name != "g":
                    b[name] = self._off(n)
            else:
                W[name], b[name] = spec
        return blocks.add(n, W=W, b=b, rec={"g": rec_g} if rec_g else None, h0=h0,
                          c0=c0 if c0 is not None else Vector.zeros(n), decode=decode, role=role)

    def _gru(self, blocks: UnitBlocks, n: int, *, r=True, z=False, nW=None, rec_n=None, h0=None, decode=None,
             role=""):
        W, b = {}, {}
        for name, spec in (("r", r), ("z", z)):
            if spec is True:
                b[name] = self._on(n)
            elif spec is False:
                b[name] = self._off(n)
            else:
                W[name], b[name] = spec
        if nW is not None:
            W["n"], b["n"] = nW
        return blocks.add(n, W=W, b=b, rec={"n": rec_n} if rec_n else None, h0=h0, decode=decode, role=role)

    # ------------------------------------------------------------------ stages
    def stage(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> Vector:
        # product stages are exempt: their weights reach 5e8 in the multiplicative programs, which are measured
        # right in float32 (tests/test_materialize_steps.py)
        if self.target == "gru" and st.kind != "M":
            self._check_float32_weights(st)
        self._check_pair_readers(st)
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
        integ = [j for j in range(k) if self.target == "lstm" and diag_only[j] and diag_val[j] in (0.0, 1.0)]
        eps = []
        for j in range(k):
            bound = ensure_bounded(f"{self.target}: state coordinate {j} of {_where(st)}",
                                   slo[j:j + 1], shi[j:j + 1])
            if j in integ:  # the drive enters tanh on its own
                bound = max(bound, ensure_bounded(f"{self.target}: input of state coordinate {j} of "
                                                  f"{_where(st)}", st.pre_lo[j:j + 1], st.pre_hi[j:j + 1]))
            eps.append(eps_for(bound, self.k.rho))
            drive = float(max(abs(st.pre_lo[j]), abs(st.pre_hi[j])))
            self._state_error(j, A, float(max(abs(slo[j]), abs(shi[j]))), drive,
                              diag_val[j] if j in integ else None, _where(st))
        inv = [1.0 / e for e in eps]
        drive_w, drive_b = _scaled(W, c, list(range(k)), eps)
        rec = scale_rows(A, eps) @ Matrix.diag(inv)
        init = st.init.to_float().values
        h0 = Vector([e * s for e, s in zip(eps, init.tolist())])
        decode = Matrix.diag(inv)
        self.scales.append({"stage": "S", "eps_min": min(eps), "eps_max": max(eps)})
        if self.target == "gru":
            self._gru(blocks, k, nW=(drive_w, drive_b), rec_n=[(rec, 0)] if rec.nnz else None, h0=h0,
                      decode=decode, role="state")
            return
        # LSTM: per coordinate, integrator (forget gate = a_j) or general (forget 0, recurrence in g)
        integ_set = set(integ)
        f_bias = Vector([self.k.gate if (j in integ_set and diag_val[j] == 1.0) else -self.k.gate
                         for j in range(k)])
        rec_general = Matrix.diag([0.0 if j in integ_set else 1.0 for j in range(k)]) @ rec
        c0 = Vector([h0.values[j] if j in integ_set else 0.0 for j in range(k)])
        blocks.add(k, W={"g": drive_w}, b={"i": self._on(k), "f": f_bias, "g": drive_b, "o": self._on(k)},
                   rec={"g": [(rec_general, 0)]} if rec_general.nnz else None, h0=h0, c0=c0, decode=decode,
                   role="state")

    def _relu(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> None:
        d = st.out_dim
        lin, gated, eps_lin, eps_g, kap = [], [], [], [], []
        for j in range(d):
            lo, hi = st.pre_lo[j], st.pre_hi[j]
            if hi <= 0:
                continue  # ReLU ≡ 0
            bound = ensure_bounded(f"{self.target}: ReLU argument {j} of {_where(st)}",
                                   st.pre_lo[j:j + 1], st.pre_hi[j:j + 1])
            if lo >= 0:
                lin.append(j)
                eps_lin.append(eps_for(bound, self.k.rho))
            else:
                # only the positive side reaches the output (σ(κx) = 0 below), so ε comes from hi; κ from the
                # whole range so that κx stays finite
                gated.append(j)
                eps_g.append(eps_for(float(hi), self.k.rho))
                kap.append(min(pow2_at_most(self.k.kappa_span / bound), self._weight_cap(W, c, j)))
                # below the saturation band σ(κx) is partial: the value error there is ≤ 0.28/κ, taken relative to
                # the argument's bound (a λ-conditional's |x| ≤ 1e10 has float64 resolution 1e-6 of its own)
                self._require_accuracy(f"the step gate of ReLU argument {j} of {_where(st)} (|x| ≤ {bound:.3g}), "
                                       "relative to that bound", 0.28 / (kap[-1] * max(bound, 1.0)))
        self.scales.append({"stage": "R", "units_linear": len(lin), "units_gated": len(gated)})
        if self.target == "gru":
            self._pair_bounds = {j: float(st.hi[j]) for j in gated}
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
        if self.target == "lstm":
            self._lstm(blocks, n, i=(s_w, s_b), g=(g_w, g_b), o=True,
                       decode=slot_matrix(d, gated, [1.0 / e for e in eps_g]), role="relu")
            return
        # GRU pair: p' = σ(κx) tanh(εx) + σ(-κx) p,  q' = tanh(σ(-κx) p)
        neg_w, neg_b = -s_w, Vector(-s_b.to_float().values) if not s_b.exact else Vector([-x for x in s_b.values])
        off_p = self._gru(blocks, n, r=True, z=(neg_w, neg_b), nW=(g_w, g_b),
                          decode=slot_matrix(d, gated, [1.0 / e for e in eps_g]), role="relu_p")
        self._gru(blocks, n, r=(neg_w, neg_b), z=False, rec_n=[(Matrix.identity(n), off_p)],
                  decode=slot_matrix(d, gated, [-1.0 / e for e in eps_g]), role="relu_q")

    def _weight_cap(self, W: Matrix, c: Vector, j: int) -> float:
        """The largest power of two κ keeping row ``j`` of ``κ·(W, c)`` below ``2^max_weight_log2``."""
        row = W.rows([j]).scipy().data
        biggest = max(float(np.max(np.abs(row), initial=0.0)), abs(float(c.to_float().values[j])))
        if biggest == 0:
            return 1.0
        return pow2_at_most(2.0 ** self.k.max_weight_log2 / biggest)

    def _carrier(self, blocks: UnitBlocks, W: Matrix, c: Vector, idx: list[int], eps: list[float], decode: Matrix,
                 role: str) -> None:
        """Units carrying affine values linearly: ``tanh(ε a)`` (LSTM: ``tanh(tanh(ε a))``)."""
        n = len(idx)
        w, b = _scaled(W, c, idx, eps)
        if self.target == "lstm":
            self._lstm(blocks, n, i=True, g=(w, b), o=True, decode=decode, role=role)
        else:
            self._gru(blocks, n, nW=(w, b), decode=decode, role=role)

    def _product(self, blocks: UnitBlocks, st: Stage, W: Matrix, c: Vector) -> Vector:
        plan = plan_products(st, W, c)
        h = plan.h
        # carriers (one operand constant)
        if plan.lin_slot:
            keep, eps = [], []
            for i in range(len(plan.lin_slot)):
                bound = ensure_bounded(f"{self.target}: carried value of {_where(st)}",
                                       plan.lin_lo[i:i + 1], plan.lin_hi[i:i + 1])
                if bound > 0:
                    keep.append(i)
                    eps.append(eps_for(bound, self.k.rho))
            if keep:
                self._carrier(blocks, plan.lin_rows, plan.lin_bias, keep, eps,
                              slot_matrix(h, [plan.lin_slot[i] for i in keep], [1.0 / e for e in eps]), "carrier")
        if not plan.prod:
            return plan.const
        idx = plan.prod
        n = len(idx)
        eg, ev = [], []
        for j in idx:
            bu = ensure_bounded(f"{self.target}: first operand {j} of {_where(st)}",
                                plan.ulo[j:j + 1], plan.uhi[j:j + 1])
            bv = ensure_bounded(f"{self.target}: second operand {j} of {_where(st)}",
                                plan.vlo[j:j + 1], plan.vhi[j:j + 1])
            eg.append(eps_for(bu, self.k.rho_gate))
            ev.append(eps_for(bv, self.k.rho))
        vw, vb = _scaled(plan.V, plan.cv, idx, ev)
        self.scales.append({"stage": "M", "products": n})
        # Richardson pair of pairs: with D(a) = σ(a) − σ(−a) = tanh(a/2),
        # (8 D(a) − D(2a)) / 3 = a − a⁵/30, so g·v ≈ (8 Δ₁ − Δ₂) / (3 ε_g ε_v) where Δ_s is the
        # difference of the two units whose gates are σ(±s ε_g g).
        for scale, weight in ((1, 8.0), (2, -1.0)):
            gw, gb = _scaled(plan.U, plan.cu, idx, [scale * e for e in eg])
            neg_gw = -gw
            neg_gb = Vector([-x for x in gb.values.tolist()], exact=gb.exact)
            coef = [weight / (3.0 * a * b) for a, b in zip(eg, ev)]
            if self.target == "lstm":
                self._lstm(blocks, n, i=(gw, gb), g=(vw, vb), o=True, decode=slot_matrix(h, idx, coef),
                           role=f"product{scale}+")
                self._lstm(blocks, n, i=(neg_gw, neg_gb), g=(vw, vb), o=True,
                           decode=slot_matrix(h, idx, [-x for x in coef]), role=f"product{scale}-")
                continue
            # GRU: the pair with 1 − z = σ(+s a) minus the pair with 1 − z = σ(−s a)
            for sign, za, role in ((1, (neg_gw, neg_gb), f"product{scale}+"), (-1, (gw, gb), f"product{scale}-")):
                off_p = self._gru(blocks, n, r=True, z=za, nW=(vw, vb),
                                  decode=slot_matrix(h, idx, [sign * x for x in coef]), role=role + "_p")
                self._gru(blocks, n, r=za, z=False, rec_n=[(Matrix.identity(n), off_p)],
                          decode=slot_matrix(h, idx, [-sign * x for x in coef]), role=role + "_q")
        return plan.const
