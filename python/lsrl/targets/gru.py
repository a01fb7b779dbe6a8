"""Target ``gru`` (targets.md §6): one ``gru`` layer per stage of the layer form.

Op ``gru`` (PyTorch's ``nn.GRU``, gate order r, z, n; ``r`` applied to ``W_hn h + b_hn``)::

    r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h

``activations = "ideal"`` replaces every σ and tanh by ReLU (exact, also in rational arithmetic).

Ideal mode (App. C.1/C.2): a ReLU unit is ``z = 0``, ``r = 1`` ⇒ ``h' = n = ReLU(W_in x + b_in + W_hn h)``; a
product uses the leak-cancelling pair (D7) ``p' = (g/K)·v + (1 − g/K)·p``, ``q' = (1 − g/K)·p`` ⇒
``K(p' − q') = g·v`` for a gate operand shifted into ``[0, K]`` (``K`` a power of two from range analysis).

Standard mode (``h' = (1 − z) n + z h``; z = 0 and r = 1 saturated unless stated):

* S: ``n = tanh(E A E⁻¹ h + ε(B v + b))`` — a linearised tanh RNN (errors accumulate over time for
  eigenvalues of modulus 1; bounded through ``t_max``);
* R: the leak-cancelling pair (D7) with ``1 − z_p = σ(κx)``, ``n_p = tanh(εx)``, ``r_q = z_p``,
  ``n_q = tanh(r_q p)`` ⇒ ``p' − q' ≈ ε ReLU(x)``; a proven-non-negative ``x`` needs one unit;
* M: four pairs with ``1 − z = σ(±s ε_g g)`` (s = 1, 2), ``n = tanh(ε_v v)``, combined by the Richardson
  rule of :class:`~lsrl.targets.shared.standard.StandardLowering`; a select (a factor with a few candidate
  values) one R-like pair per gap between them, its gate saturated; carriers one unit.

The pairs make two checks necessary (:meth:`GruStandard.check_stage`): a stage reading pairs with a rounding
error above the accuracy limit is refused; a weight ≥ 2^24 on a pair — or on a unit whose float32 value the error
analysis does not prove exact (:meth:`GruStandard.finish`) — makes the model wrong in float32, which its metadata
records (``dtype_limits``: ``lsrl.compile(dtype="float32")`` refuses it, float32 runs and exports raise).

Exports: ``nn.GRU`` (standard mode only) and ONNX ``GRU`` with ``linear_before_reset=1`` (torch's convention;
gates reordered to z, r, h; ideal mode ``activations=["Relu","Relu"]``); standard mode and float64 as a ``Scan``.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..errors import CompileError
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from ..ir.semantics import EvalContext
from ..passes.error_bound import ROUNDING_HOPS, local_error_entry, output_error_bounds
from ..passes.range_analysis import RangeAnalysis
from .registry import Target, register_target
from .shared.cells import (Recurrent, activation_functions, cell_opdef, csr_arrays, empty_outputs, initial_state,
                           input_projection, optional_vector, vector_array)
from .shared.common import UnitBlocks, const_vector, pow2_at_least, signs_of, slot_matrix
from .shared.ideal import CellLowering, lower_cells
from .shared.standard import StandardLowering, describe_stage

__all__ = ["GruTarget"]

KIND = "gru"
GATES = ("r", "z", "n")
_ONNX_ORDER = (1, 0, 2)       # torch (r, z, n) → ONNX (z, r, h)
#: the largest float32 error bound, relative to its output's range, of a model whose λ-weights read units without
#: memory (GruStandard.finish): the issue's measure of a useful bound
USEFUL_BOUND = 1e-4
#: unit roundoffs: the rounding of a sum that reads ReLU pairs (see ``GruStandard.check_stage``)
FLOAT64_ROUNDOFF = 2.0 ** -53
FLOAT32_ROUNDOFF = 2.0 ** -24


# ------------------------------------------------------------------------------------------ the op

def run(op: Op, inputs: list, state, ctx: EvalContext):
    (x,) = inputs
    exact = ctx.exact
    (h,) = initial_state(op, x.shape[0], exact) if state is None else state
    H = op.dim
    sig, tanh = activation_functions(op, exact)
    b_hh = op.attrs["b_hh"].array(exact)
    pre = input_projection(op, x, op.attrs["b_ih"], exact)  # (B, T, 3H)
    rec = Recurrent(op.attrs["W_hh"], exact)
    batch, length = x.shape[0], x.shape[1]
    y = empty_outputs(batch, length, H, exact)
    one = Fraction(1) if exact else 1.0
    for t in range(length):
        hh = np.broadcast_to(b_hh, (batch, 3 * H)) if rec.zero else rec(h) + b_hh
        r = sig(pre[:, t, :H] + hh[:, :H])
        z = sig(pre[:, t, H:2 * H] + hh[:, H:2 * H])
        n = tanh(pre[:, t, 2 * H:] + r * hh[:, 2 * H:])
        h = (one - z) * n + z * h
        y[:, t] = h
    return y, (h,)


def kernel_node(op: Op, dtype: np.dtype) -> dict:
    a = op.attrs
    return {"kind": KIND, "W": csr_arrays(a["W_ih"], dtype), "b": optional_vector(a["b_ih"], dtype),
            "R": csr_arrays(a["W_hh"], dtype), "b2": vector_array(a["b_hh"], dtype),
            "init": vector_array(a["h0"], dtype), "ideal": a.get("activations", "ideal") == "ideal"}


cell_opdef(KIND, "GRU layer (torch gate order r, z, n; r applied to W_hn h + b_hn)", gates=GATES, run=run,
           kernel=kernel_node)


# ------------------------------------------------------------------------------------------ ideal lowering

def _num(x):
    """A scalar for exact-safe arithmetic: Fractions stay exact, floats become their exact value."""
    return x if isinstance(x, Fraction) else Fraction(float(x))


def gate_choice(plan, j: int):
    """For product ``j`` pick the operand used as the gate: ``(which, sign, shift, K)`` with
    ``sign·operand − shift ∈ [0, K]``; ``None`` when both operands are unbounded."""
    best = None
    for which, lo, hi in (("u", plan.ulo[j], plan.uhi[j]), ("v", plan.vlo[j], plan.vhi[j])):
        if not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        if lo >= 0:
            cand = (0, which, 1, 0.0, hi)
        elif hi <= 0:
            cand = (0, which, -1, 0.0, -lo)
        else:
            cand = (1, which, 1, lo, hi - lo)
        if best is None or cand[0] < best[0]:
            best = cand
    if best is None:
        return None
    _, which, sign, shift, span = best
    return which, sign, shift, (pow2_at_least(span) if span > 0 else 1.0)


class GruCell(CellLowering):
    op_kind = KIND
    gates = GATES

    def relu_units(self, blocks: UnitBlocks, W: Matrix, b: Vector, *, rec=None, h0=None, decode=None, role=""):
        n = W.shape[0]
        return blocks.add(n, W={"n": W}, b={"n": b, "r": const_vector(n, 1)}, rec={"n": rec} if rec else None,
                          h0=h0, decode=decode, role=role)

    def ideal_products(self, blocks: UnitBlocks, st, plan) -> list:
        """Leak-cancelling pairs (D7).  For ``g = sign·gate − shift ∈ [0, K]``:

        unit p: ``z_p = ReLU(1 − g/K)``, ``n_p = ReLU(s v)``            ⇒ ``p' = (g/K)·ReLU(s v) + (1 − g/K)·p``
        unit q: ``z_q = 0``, ``r_q = ReLU(1 − g/K)``, ``n_q = ReLU(r_q p)`` ⇒ ``q' = (1 − g/K)·p``

        so ``K·(p' − q') = g·ReLU(s v)``; ``u·v = sign·(g + shift)·v`` adds ``sign·shift·v`` as a linear
        carrier (returned)."""
        extra = []
        for j in plan.prod:
            choice = gate_choice(plan, j)
            if choice is None:
                raise CompileError(f"gru: {st.op.describe()} (stage {st.index} of the layer form) multiplies two "
                                   "operands that range analysis cannot bound; the GRU product needs a bounded "
                                   "operand (give the Input bounds and t_max)")
            which, sign, shift, K = choice
            G, cg = (plan.U, plan.cu) if which == "u" else (plan.V, plan.cv)
            Vr, cv = (plan.V, plan.cv) if which == "u" else (plan.U, plan.cu)
            vlo, vhi = (plan.vlo[j], plan.vhi[j]) if which == "u" else (plan.ulo[j], plan.uhi[j])
            g_row = G.rows([j]).scale(sign)
            g_bias = _num(cg.values[j]) * sign - _num(shift)
            gate_w = g_row.scale(-1 / _num(K))
            gate_b = Vector([1 - g_bias / _num(K)])
            for sv in signs_of(vlo, vhi):
                off_p = blocks.H
                v_row = Vr.rows([j]).scale(sv)
                v_b = Vector([_num(cv.values[j]) * sv])
                blocks.add(1, W={"z": gate_w, "n": v_row}, b={"z": gate_b, "n": v_b},
                           decode=slot_matrix(plan.h, [j], [sign * sv * K]), role="pair_p")
                blocks.add(1, W={"r": gate_w}, b={"r": gate_b}, rec={"n": [(Matrix.identity(1), off_p)]},
                           decode=slot_matrix(plan.h, [j], [-sign * sv * K]), role="pair_q")
            if shift != 0:
                extra.append((j, Vr.rows([j]).scale(sign * shift), _num(cv.values[j]) * sign * _num(shift),
                              sign * shift * vlo, sign * shift * vhi))
        return extra

    def ideal_product_errors(self, st, plan) -> dict:
        """A pair's value ``K·(p' − q')`` cancels two units of up to ``K·B_v`` (B_v bounds the other operand),
        each rounded where the cell computes it: ``p' = (g/K)·n + z·p`` three times at ``≤ B_v``, ``q' = z·p``
        once, and the gate ``z = 1 − g/K`` at magnitude ``≤ 2`` over its row — times ``K`` in the value.  A product
        of integers that fits the dtype is exact in the layer form, not in the pairs (7·10⁻¹⁵ measured at 36 in
        float64, where the bound was 0).  The reader sums both pairs of each sign and the shift's carrier."""
        on_u, hidden, units = np.zeros(st.out_dim), np.zeros(st.out_dim), np.ones(st.out_dim)
        for j in plan.prod:
            which, _, shift, K = gate_choice(plan, j)  # ideal_products refused an unbounded pair
            gate = plan.U if which == "u" else plan.V
            lo, hi = (plan.vlo[j], plan.vhi[j]) if which == "u" else (plan.ulo[j], plan.uhi[j])
            bound, signs = float(max(abs(lo), abs(hi))), len(signs_of(lo, hi))
            with np.errstate(over="ignore"):  # past the float range: inf, which the analysis reads as unbounded
                on_u[j] = ROUNDING_HOPS * signs * K * bound * (4 + 2 * (gate.rows([j]).nnz + 2))
                hidden[j] = 2 * signs * K * bound + (abs(shift) * bound if shift else 0.0)
            units[j] = 2 * signs + (len(signs_of(shift * lo, shift * hi)) if shift else 0)
        return local_error_entry(st.out_dim, on_u=on_u, hidden=hidden, units=units)

    def standard(self, t_max):
        return GruStandard(KIND, t_max=t_max)

    def layer_attrs(self, attrs: dict, width: int, activations: str) -> dict:
        attrs["activations"] = activations
        return attrs


# ------------------------------------------------------------------------------------------ standard lowering

class GruStandard(StandardLowering):
    # a pair holds p = (1 − z)·n + z·p and cancels it with tanh(z·p), z = σ(L − κx): the unit passes n exactly only
    # where z is exactly 0 (exp overflows or underflows in float64 from 710 to 745), not only where σ(κx − L) is 1
    saturation_margin = 750.0

    def __init__(self, target: str, **options):
        super().__init__(target, **options)
        # ReLU pairs of the stage just lowered (unit -> bound), read by the next stage's check
        self._pair_bounds: dict[int, float] = {}
        # whether the next stage reads the input, and the stages reading units without memory with a weight ≥ 2^24
        self._reads_input = True
        self._loud_reads: list = []

    def units(self, blocks: UnitBlocks, n: int, *, r=True, z=False, nW=None, rec_n=None, h0=None, decode=None,
              role=""):
        """Add ``n`` units; ``r``/``z`` given as ``(W, b)`` are computed, ``True``/``False`` saturate on/off."""
        W, b = {}, {}
        for name, spec in (("r", r), ("z", z)):
            if spec is True:
                b[name] = self.on(n)
            elif spec is False:
                b[name] = self.off(n)
            else:
                W[name], b[name] = spec
        if nW is not None:
            W["n"], b["n"] = nW
        return blocks.add(n, W=W, b=b, rec={"n": rec_n} if rec_n else None, h0=h0, decode=decode, role=role)

    def check_stage(self, st) -> None:
        pairs, self._pair_bounds = self._pair_bounds, {}
        reads_input, self._reads_input = self._reads_input, False
        W = abs(st.W.scipy().tocsc())
        cols = np.array(sorted(pairs), dtype=np.int64)
        # product stages are exempt from the float32 check: their weights reach 5e8 in the multiplicative
        # programs, which are measured right in float32 (tests/test_materialize_steps.py)
        if st.kind != "M" and W.nnz and FLOAT32_ROUNDOFF * W.max() >= 1.0:
            loud = np.flatnonzero(np.asarray(W.max(axis=0).todense()).ravel() * FLOAT32_ROUNDOFF >= 1.0)
            on_pairs = np.intersect1d(loud, cols)
            if on_pairs.size:
                self._refuse_float32(f"{describe_stage(st)} reads a ReLU pair with a weight of "
                                     f"{float(W[:, on_pairs].max()):.3g} ≥ 2^24, so one float32 rounding of the "
                                     "pair outweighs a value of 1")
            elif reads_input:
                self._refuse_float32(f"{describe_stage(st)} reads the input with a weight of {float(W.max()):.3g} "
                                     "≥ 2^24")
            else:  # units without memory: right where float32 is proven exact (finish)
                self._loud_reads.append(st)
        if cols.size:
            self._check_pair_readers(st, np.asarray(W[:, cols] @ np.array([pairs[j] for j in cols.tolist()])).ravel())

    def _check_pair_readers(self, st, read: np.ndarray) -> None:
        """Refuse a stage whose rows read the leak-cancelling ReLU pairs of the stage before with a worst-case
        rounding error above :data:`~lsrl.targets.shared.standard.ACCURACY_LIMIT` of what the row resolves
        (``read``: per row, Σ |weight| × the pair's bound).  After the ReLU turns off, both units of a pair keep
        the last positive value, so the row's sum rounds an error of ``2^-53 · Σ |w| B`` (``B`` the pair's bound)
        into a value that only had to resolve its own bound — a λ-conditional ``ReLU(t − λ·c)`` (λ = 1e10,
        ``t ≤ 9``) reaches 1e-4 of it and the n = 10 token program answers wrong in every executor
        (docs/numerics.md); counters squared over a long ``t_max`` reach it as well."""
        # what a row must resolve: its positive side for a ReLU (the rest is cut off), its whole range otherwise
        resolved = np.maximum(st.pre_hi if st.kind == "R" else np.maximum(np.abs(st.pre_lo), np.abs(st.pre_hi)), 1.0)
        worst = int(np.argmax(read / resolved))
        self._require_accuracy(
            f"row {worst} of {describe_stage(st)}, which reads the GRU ReLU pairs of the stage before with "
            f"Σ |weight| × bound = {read[worst]:.3g} (a λ-conditional or a long counter), relative to its bound "
            f"{resolved[worst]:.3g}", FLOAT64_ROUNDOFF * read[worst] / resolved[worst])

    def _refuse_float32(self, why: str) -> None:
        """Record that the model cannot run in float32: a weight ≥ 2^24 (a λ-conditional's λ = 1e10) turns a
        float32 rounding of what it reads (2^-24 of a value of order 1) into an error ≥ 1 — the token program,
        its λ-rows reading the steps' ReLU pairs, answered 70–83 % wrong in float32 (the kernel at n = 10, torch
        at n = 3) although float64 was right."""
        self.dtype_limits.setdefault(
            "float32", f"gru standard mode cannot stay accurate in float32: {why} — a λ-conditional over the GRU's "
                       "ReLU pairs; use the multiplicative conditionals, a target without ReLU pairs, or "
                       "activations='ideal' (a token program: the permutation counter, which float32 is proven "
                       "exact with)")

    def finish(self, module) -> None:
        """A weight ≥ 2^24 on units without memory (not ReLU pairs) is right in float32 where the error analysis
        proves the model's outputs within :data:`USEFUL_BOUND` of their range in float32 — the token programs with
        the permutation counter (exact: their λ-rows read ``materialize-steps``' step units and their pairs the
        readers sum exactly), the continuous programs on a declared grid (``n_levels``); else the model is refused
        for float32 as a λ-read of a pair is (a λ-row feeding a product stage, whose roundings the products pass
        on: 2 and 3 off under a bound of 1.2·10⁴ in two of ``benchmarks/conditionals.py``'s integer programs).
        Only a model compiled for float32 is analysed (a float32 analysis costs about as much as the lowering); a
        float64 model with such weights records that its float32 runs are not proven."""
        if not self._loud_reads or "float32" in self.dtype_limits:
            return
        if self.dtype != "float32":  # its constants were chosen for float64: not analysed for float32 runs
            self._refuse_float32(f"{describe_stage(self._loud_reads[0])} reads units with a weight ≥ 2^24 (compiled "
                                 "with dtype='float32', the model is kept where float32 is proven exact)")
            return
        stated = module.metadata
        module.metadata = dict(stated, local_errors=self.local_errors)  # what the model's error bound will read
        try:
            ranges = RangeAnalysis(module, self.t_max) if self.candidates is None else self.candidates.ranges
            bounds = np.asarray(output_error_bounds(module, "float32", self.t_max, ranges))
        finally:
            module.metadata = stated
        lo, hi = ranges(module.output)
        with np.errstate(invalid="ignore"):
            useful = bounds <= USEFUL_BOUND * np.maximum(np.abs(lo), np.abs(hi))
        if not np.all((bounds == 0) | useful):
            worst = int(np.argmax(np.where((bounds == 0) | useful, -np.inf, bounds)))
            self._refuse_float32(f"{describe_stage(self._loud_reads[0])} reads units with a weight ≥ 2^24, and "
                                 f"float32 is not proven right there (the model's float32 error bound is "
                                 f"{bounds[worst]:.3g} on output {worst}, whose range reaches "
                                 f"{max(abs(lo[worst]), abs(hi[worst])):.3g})")

    def relu_reads(self, bound):
        return 2 * bound, 2  # p and q, each up to the bound once the ReLU is off

    def relu_terms_total(self, bound):
        # the value is p − q: p + q is at most 2·bound, the value's bound inside it
        return 2 * bound

    def product_reads(self, value_bound, eps_gate):
        # four pairs whose p and q each hold up to ε_v·B_v, decoded by 8/(3 ε_g ε_v) and 1/(3 ε_g ε_v)
        return 12 * value_bound / eps_gate, 8

    def state_units(self, blocks, k, *, drive, rec, h0, decode, integrators, diagonal):
        self.units(blocks, k, nW=drive, rec_n=[(rec, 0)] if rec.nnz else None, h0=h0, decode=decode, role="state")

    def relu_units(self, blocks, st, n, *, gate, value, decode, gated, eps):
        self._pair_bounds = {j: float(st.hi[j]) for j in gated}
        self._gated_pairs(blocks, n, gate, value, decode, "relu")

    def select_units(self, blocks, n, *, gate, value, decode, slot, held):
        self._pair_bounds[slot] = self._pair_bounds.get(slot, 0.0) + float(sum(held))
        self._gated_pairs(blocks, n, gate, value, decode, "select")

    def _gated_pairs(self, blocks, n, gate, value, decode, role):
        # pair: p' = σ(gate) tanh(value) + σ(−gate) p,  q' = tanh(σ(−gate) p)
        closed = self.negated(gate)
        off_p = self.units(blocks, n, r=True, z=closed, nW=value, decode=decode, role=role + "_p")
        self.units(blocks, n, r=closed, z=False, rec_n=[(Matrix.identity(n), off_p)], decode=-decode,
                   role=role + "_q")

    def carrier_units(self, blocks, n, *, value, decode, role):
        self.units(blocks, n, nW=value, decode=decode, role=role)

    def product_units(self, blocks, n, *, gate, value, decode, scale):
        # the pair with 1 − z = σ(+s a) minus the pair with 1 − z = σ(−s a)
        for sign, z, role in ((1, self.negated(gate), f"product{scale}+"), (-1, gate, f"product{scale}-")):
            side = decode if sign > 0 else -decode
            off_p = self.units(blocks, n, r=True, z=z, nW=value, decode=side, role=role + "_p")
            self.units(blocks, n, r=z, z=False, rec_n=[(Matrix.identity(n), off_p)], decode=-side, role=role + "_q")


def _holds_state(op: Op) -> bool:
    """Whether some unit of GRU layer ``op`` may keep its state: an update gate not read as a constant σ = 0
    (σ(b) is exactly 0 in float32 and float64 for ``b ≤ −745``)."""
    H = op.dim
    rows = slice(H, 2 * H)  # nn.GRU's gate order r, z, n
    weights = (op.attrs["W_ih"].scipy()[rows].count_nonzero() + op.attrs["W_hh"].scipy()[rows].count_nonzero())
    bias = op.attrs["b_ih"].to_float().values[rows] + op.attrs["b_hh"].to_float().values[rows]
    return bool(weights or np.any(bias > -745.0))


# ------------------------------------------------------------------------------------------ the target

class GruTarget(Target):
    name = "gru"
    summary = "GRU (nn.GRU, ONNX GRU)"
    op_kinds = frozenset({KIND})
    # a clamp's pair holds a step's whole range under its readers' weights: refused under λ-weights
    # (_check_pair_readers), and wrong in float32 from 2^24 (check_stage)
    clamp_limits = {"standard": 2.0 ** 24}

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        return lower_cells(module, GruCell(), self.name, activations, t_max)

    def torch_layer(self, op: Op, activations: str):
        from .shared.torch_export import gated_cell_layer
        return gated_cell_layer(self.name, "GRU", op, activations)

    def torch_layers(self, model) -> list:
        """``nn.GRU`` for a layer whose every update gate is exactly 0 (``h' = n``); a layer that holds state
        (ReLU and product pairs: ``z = 1`` while their gate is closed) runs the same parameters' equations with
        the kernel's update (:class:`GruEquationsLayer`), because ``nn.GRU`` computes ``n + z·(h − n)``, which
        keeps a held ``h`` only up to an ulp of ``h − n``: the readers of the pairs amplify it (the token program
        compiled for float64 and run by torch in float32 answered 8 % wrong).  A model whose lowering recorded
        λ-weights on its pairs (``dtype_limits``) runs every layer that way (its layers between differ from the
        kernel's by 4e-7 relative in ``nn.GRU``)."""
        from .shared.torch_export import GruEquationsLayer
        layers = [self.torch_layer(op, model.activations) for op in model._ops[:-1]]
        return [GruEquationsLayer(layer.cell, op) if model.dtype_limits or _holds_state(op) else layer
                for layer, op in zip(layers, model._ops[:-1])]

    def onnx_layer(self, b, op: Op, x: str, activations: str) -> str:
        from .shared.onnx_export import dense, reorder_gates, vector
        dt, H = b.dtype, op.dim
        ideal = activations == "ideal"
        b_ih, b_hh = vector(op.attrs["b_ih"], dt), vector(op.attrs["b_hh"], dt)
        initial = [vector(op.attrs["h0"], dt)]
        if dt == np.float64 or not ideal:  # standard mode in float32 too: see ScanBody.tanh
            sig = "Relu" if ideal else "Sigmoid"

            def tanh(c, x):
                return c.node("Relu", [x]) if ideal else c.tanh(x)

            def step(c):  # torch convention (linear_before_reset): r multiplies W_hn h + b_hn
                r = c.node(sig, [c.node("Add", [c.part(c.pre, 0), c.part(c.rec, 0)])])
                z = c.node(sig, [c.node("Add", [c.part(c.pre, 1), c.part(c.rec, 1)])])
                n = tanh(c, c.node("Add", [c.part(c.pre, 2), c.node("Mul", [r, c.part(c.rec, 2)])]))
                one = c.const("one", np.ones(1, dt))
                return [c.node("Add", [c.node("Mul", [c.node("Sub", [one, z]), n]),
                                       c.node("Mul", [z, c.states[0]])])]

            # b_hn sits inside r ⊙ (·): the recurrent bias stays in the body
            return b.scan_cell(op, x, w_ih=op.attrs["W_ih"], w_hh=op.attrs["W_hh"], pre_bias=b_ih, rec_bias=b_hh,
                               initial=initial, gates=3, body=step)
        attrs = {"linear_before_reset": 1}
        if ideal:
            attrs["activations"] = ["Relu", "Relu"]
        return b.recurrent_op(
            "GRU", op, x, W=reorder_gates(dense(op.attrs["W_ih"], dt), _ONNX_ORDER, H)[None],
            R=reorder_gates(dense(op.attrs["W_hh"], dt), _ONNX_ORDER, H)[None],
            B=np.concatenate([reorder_gates(b_ih, _ONNX_ORDER, H), reorder_gates(b_hh, _ONNX_ORDER, H)])[None],
            initial=initial, n_out=2, **attrs)


register_target(GruTarget())
