"""Target ``lstm`` (targets.md §5): one ``lstm`` layer per stage of the layer form.

Op ``lstm`` (PyTorch's ``nn.LSTM``, gate order i, f, g, o)::

    [i; f; g; o] = W_ih x + b_ih + W_hh h + b_hh;  i, f, o ← σ(·), g ← tanh(g)
    c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')

``activations = "ideal"`` replaces every σ and tanh by ReLU (exact, also in rational arithmetic).

Ideal mode (App. D.1–D.3): a ReLU unit is ``f = 0``, ``i = 1``, ``g = 1`` ⇒ ``c = 1`` and
``h = o = ReLU(W_o x + b_o + U_o h)``; a product unit is ``f = 0``, ``o = 1``, ``i = ReLU(±u)``,
``g = ReLU(±w)`` ⇒ ``h = ReLU(±u)·ReLU(±w)`` — 1, 2 or 4 units per product depending on the operands' known
signs (D8).

Standard mode (:class:`~lsrl.targets.shared.standard.StandardLowering` chooses the scales; f, i, o saturated
unless stated):

=============  =========================================================================  ===========
stage          unit                                                                         value
=============  =========================================================================  ===========
S, integrator  ``A`` row = ``a ∈ {0,1}`` on the diagonal: f = a, i = o = 1,                  ``h/ε``
               ``g = tanh(ε(B v + b))``, ``c0 = ε s0``  ⇒ ``c_t = a c + tanh(ε u) ≈ ε s_t``
S, general     f = 0, i = o = 1, ``g = tanh(E A E⁻¹ h + ε(B v + b))``  ⇒ ``h ≈ ε s``          ``h/ε``
R              f = 0, o = 1, ``i = σ(κx)``, ``g = tanh(εx)``  ⇒ ``h ≈ ε ReLU(x)``             ``h/ε``
               (``x ≥ 0`` proven: ``i = 1``; ``x ≤ 0`` proven: no unit)
M, product     units ``i = σ(±s ε_g g)`` (s = 1, 2), ``g = tanh(ε_v v)``; Δ_s = h₊ − h₋          ``(8Δ₁−Δ₂)/(3ε_gε_v)``
M, select      ``g`` takes candidates p_1 < … < p_m: per gap f = 0, o = 1,                 ``Σ Δp_k h_k/ε_v``
               ``i = σ(K(g − (p_k−1 + p_k)/2))`` (saturated), ``g = tanh(ε_v v)``           ``+ p_1 v``
M, carrier     (one operand constant) i = o = 1, ``g = tanh(ε a)``                          ``h/ε``
=============  =========================================================================  ===========

Exports: ``nn.LSTM`` (standard mode only: torch hard-codes σ and tanh) and ONNX ``LSTM`` (gates reordered to
ONNX's i, o, f, c; ideal mode ``activations=["Relu","Relu","Relu"]``), or a float64 ``Scan``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from ..ir.semantics import EvalContext
from .registry import Target, register_target
from .shared.cells import (Recurrent, activation_functions, cell_opdef, csr_arrays, empty_outputs, initial_state,
                           input_projection, optional_vector, vector_array)
from .shared.common import UnitBlocks, const_vector, signs_of, slot_matrix, vscale
from .shared.ideal import CellLowering, lower_cells
from .shared.standard import StandardLowering

__all__ = ["LstmTarget"]

KIND = "lstm"
GATES = ("i", "f", "g", "o")
_ONNX_ORDER = (0, 3, 1, 2)   # torch (i, f, g, o) blocks → ONNX (i, o, f, c)


# ------------------------------------------------------------------------------------------ the op

def run(op: Op, inputs: list, state, ctx: EvalContext):
    (x,) = inputs
    exact = ctx.exact
    h, c = initial_state(op, x.shape[0], exact) if state is None else state
    H = op.dim
    sig, tanh = activation_functions(op, exact)
    pre = input_projection(op, x, op.attrs["b_ih"] + op.attrs["b_hh"], exact)
    rec = Recurrent(op.attrs["W_hh"], exact)
    batch, length = x.shape[0], x.shape[1]
    y = empty_outputs(batch, length, H, exact)
    if rec.zero:
        # gates do not read h: compute them for all steps at once; only the cell recurrence is sequential
        i, f, g, o = sig(pre[..., :H]), sig(pre[..., H:2 * H]), tanh(pre[..., 2 * H:3 * H]), sig(pre[..., 3 * H:])
        ig = i * g
        cs = empty_outputs(batch, length, H, exact)
        f_is_zero = (not exact and not np.any(f)) or (exact and all(v == 0 for v in f.ravel().tolist()))
        if f_is_zero:
            cs[...] = ig
        else:
            for t in range(length):
                c = f[:, t] * c + ig[:, t]
                cs[:, t] = c
        if length:
            c = cs[:, -1]
        y[...] = o * tanh(cs)
        return y, ((y[:, -1] if length else h), c)
    for t in range(length):
        gates = pre[:, t] + rec(h)
        i, f, g, o = sig(gates[:, :H]), sig(gates[:, H:2 * H]), tanh(gates[:, 2 * H:3 * H]), sig(gates[:, 3 * H:])
        c = f * c + i * g
        h = o * tanh(c)
        y[:, t] = h
    return y, (h, c)


def kernel_node(op: Op, dtype: np.dtype) -> dict:
    a = op.attrs
    # the numpy run adds the two biases first (as Vectors: exactly, for exact weights)
    return {"kind": KIND, "W": csr_arrays(a["W_ih"], dtype), "b": optional_vector(a["b_ih"] + a["b_hh"], dtype),
            "R": csr_arrays(a["W_hh"], dtype),
            "init": np.concatenate([vector_array(a["h0"], dtype), vector_array(a["c0"], dtype)]),
            "ideal": a.get("activations", "ideal") == "ideal"}


cell_opdef(KIND, "LSTM layer (torch gate order i, f, g, o)", gates=GATES, run=run, kernel=kernel_node,
           state_parts=("h", "c"))


# ------------------------------------------------------------------------------------------ lowering

class LstmCell(CellLowering):
    op_kind = KIND
    gates = GATES

    def relu_units(self, blocks: UnitBlocks, W: Matrix, b: Vector, *, rec=None, h0=None, decode=None, role=""):
        n = W.shape[0]
        return blocks.add(n, W={"o": W}, b={"o": b, "i": const_vector(n, 1), "g": const_vector(n, 1)},
                          rec={"o": rec} if rec else None, h0=h0, c0=Vector.zeros(n), decode=decode, role=role)

    def ideal_products(self, blocks: UnitBlocks, st, plan) -> list:
        """Product units (D.3 + D8): ``f = 0``, ``o = 1``, ``i = ReLU(s_u u)``, ``g = ReLU(s_w w)``,
        ``h = ReLU(c) = ReLU(s_u u)·ReLU(s_w w)``; the decoder adds ``s_u s_w h``."""
        groups: dict[tuple[int, int], list[int]] = {}
        for j in plan.prod:
            for su in signs_of(plan.ulo[j], plan.uhi[j]):
                for sw in signs_of(plan.vlo[j], plan.vhi[j]):
                    groups.setdefault((su, sw), []).append(j)
        for (su, sw), idx in groups.items():
            n = len(idx)
            ix = np.asarray(idx)
            U, cu = plan.U.rows(idx).scale(su), vscale(plan.cu[ix], su)
            V, cv = plan.V.rows(idx).scale(sw), vscale(plan.cv[ix], sw)
            blocks.add(n, W={"i": U, "g": V}, b={"i": cu, "g": cv, "o": const_vector(n, 1)}, c0=Vector.zeros(n),
                       decode=slot_matrix(plan.h, idx, [su * sw] * n), role=f"product{'+' if su > 0 else '-'}"
                       f"{'+' if sw > 0 else '-'}")
        return []

    def standard(self, t_max):
        return LstmStandard(KIND, t_max=t_max)

    def layer_attrs(self, attrs: dict, width: int, activations: str) -> dict:
        attrs["activations"] = activations
        attrs.setdefault("c0", Vector.zeros(width))
        return attrs


class LstmStandard(StandardLowering):
    integrates = True

    def product_reads(self, value_bound, eps_gate):
        # four units tanh(σ(±s a)·tanh(ε_v v)) ≤ σ(2ρ_g)·ε_v B_v, decoded by 8/(3 ε_g ε_v) (s = 1) and
        # 1/(3 ε_g ε_v) (s = 2): Σ |coefficient|·|unit| ≤ 6 σ(2ρ_g) B_v/ε_g
        return 6 * float(expit(2 * self.k.rho_gate)) * value_bound / eps_gate, 4

    def units(self, blocks: UnitBlocks, n: int, *, i=None, f=None, g=None, o=None, rec_g=None, h0=None, c0=None,
              decode=None, role=""):
        """Add ``n`` units; a gate given as ``(W, b)`` is computed, ``True``/``False`` saturates it on/off."""
        W, b = {}, {}
        for name, spec in (("i", i), ("f", f), ("g", g), ("o", o)):
            if spec is True:
                b[name] = self.on(n)
            elif spec is False or spec is None:
                if name != "g":
                    b[name] = self.off(n)
            else:
                W[name], b[name] = spec
        return blocks.add(n, W=W, b=b, rec={"g": rec_g} if rec_g else None, h0=h0,
                          c0=c0 if c0 is not None else Vector.zeros(n), decode=decode, role=role)

    def state_units(self, blocks, k, *, drive, rec, h0, decode, integrators, diagonal):
        # per coordinate, integrator (forget gate = a_j) or general (forget 0, recurrence in g)
        integ_set = set(integrators)
        f_bias = Vector([self.k.gate if (j in integ_set and diagonal[j] == 1.0) else -self.k.gate
                         for j in range(k)])
        rec_general = Matrix.diag([0.0 if j in integ_set else 1.0 for j in range(k)]) @ rec
        c0 = Vector([h0.values[j] if j in integ_set else 0.0 for j in range(k)])
        drive_w, drive_b = drive
        blocks.add(k, W={"g": drive_w}, b={"i": self.on(k), "f": f_bias, "g": drive_b, "o": self.on(k)},
                   rec={"g": [(rec_general, 0)]} if rec_general.nnz else None, h0=h0, c0=c0, decode=decode,
                   role="state")

    def relu_units(self, blocks, st, n, *, gate, value, decode, gated, eps):
        self.units(blocks, n, i=gate, g=value, o=True, decode=decode, role="relu")

    def carrier_units(self, blocks, n, *, value, decode, role):
        self.units(blocks, n, i=True, g=value, o=True, decode=decode, role=role)

    def select_units(self, blocks, n, *, gate, value, decode, slot, held):
        self.units(blocks, n, i=gate, g=value, o=True, decode=decode, role="select")

    def product_units(self, blocks, n, *, gate, value, decode, scale):
        self.units(blocks, n, i=gate, g=value, o=True, decode=decode, role=f"product{scale}+")
        self.units(blocks, n, i=self.negated(gate), g=value, o=True, decode=-decode, role=f"product{scale}-")


# ------------------------------------------------------------------------------------------ the target

class LstmTarget(Target):
    name = "lstm"
    summary = "LSTM (nn.LSTM, ONNX LSTM)"
    op_kinds = frozenset({KIND})

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        return lower_cells(module, LstmCell(), self.name, activations, t_max)

    def torch_layer(self, op: Op, activations: str):
        from .shared.torch_export import gated_cell_layer
        return gated_cell_layer(self.name, "LSTM", op, activations)

    def onnx_layer(self, b, op: Op, x: str, activations: str) -> str:
        from .shared.onnx_export import dense, reorder_gates, vector
        dt, H = b.dtype, op.dim
        ideal = activations == "ideal"
        b_ih, b_hh = vector(op.attrs["b_ih"], dt), vector(op.attrs["b_hh"], dt)
        initial = [vector(op.attrs["h0"], dt), vector(op.attrs["c0"], dt)]
        if dt == np.float64 or not ideal:  # standard mode in float32 too: see ScanBody.tanh
            sig = "Relu" if ideal else "Sigmoid"

            def tanh(c, x):
                return c.node("Relu", [x]) if ideal else c.tanh(x)

            def step(c):
                gates = c.node("Add", [c.rec, c.pre])
                i, f, g, o = (c.part(gates, k) for k in range(4))
                i, f, o = c.node(sig, [i]), c.node(sig, [f]), c.node(sig, [o])
                g = tanh(c, g)
                cell = c.node("Add", [c.node("Mul", [f, c.states[1]]), c.node("Mul", [i, g])])
                return [c.node("Mul", [o, tanh(c, cell)]), cell]

            return b.scan_cell(op, x, w_ih=op.attrs["W_ih"], w_hh=op.attrs["W_hh"], pre_bias=b_ih + b_hh,
                               rec_bias=None, initial=initial, gates=4, body=step)
        attrs = {"activations": ["Relu", "Relu", "Relu"]} if ideal else {}
        return b.recurrent_op(
            "LSTM", op, x, W=reorder_gates(dense(op.attrs["W_ih"], dt), _ONNX_ORDER, H)[None],
            R=reorder_gates(dense(op.attrs["W_hh"], dt), _ONNX_ORDER, H)[None],
            B=np.concatenate([reorder_gates(b_ih, _ONNX_ORDER, H), reorder_gates(b_hh, _ONNX_ORDER, H)])[None],
            initial=initial, n_out=3, **attrs)


register_target(LstmTarget())
