"""Ideal-mode constructions for the ReLU RNN, LSTM and GRU (``targets.md`` §4, §5, §6).

Every stage becomes one target layer whose units are *ReLU units*: a unit computes
``ReLU(pre-activation)``, realised as

* ReLU RNN: ``h = ReLU(W_ih x + b + W_hh h)`` directly;
* LSTM (App. D.1/D.2): ``f = 0``, ``i = 1``, ``g = 1`` ⇒ ``c = 1`` and ``h = o = ReLU(W_o x + b_o + U_o h)``;
* GRU (App. C.1/C.2, executor convention): ``z = 0``, ``r = 1`` ⇒ ``h' = n = ReLU(W_in x + b_in + W_hn h)``.

S stages use the Eq. 11 ± split where range analysis cannot prove a state coordinate's sign; R stages are
one ReLU unit per coordinate; M stages (LSTM/GRU only) use

* LSTM (D.3): ``f = 0``, ``o = 1``, ``i = ReLU(±u)``, ``g = ReLU(±w)`` ⇒ ``h = ReLU(u)·ReLU(w)``-type units,
  1, 2 or 4 per product depending on the operands' known signs (D8);
* GRU (D7): the leak-cancelling pair, ``p' = (g/K)·v + (1 − g/K)·p``, ``q' = (1 − g/K)·p`` ⇒
  ``K(p' − q') = g·v`` for a gate operand shifted into ``[0, K]`` (``K`` a power of two from range analysis).

Multiplications by a constant operand (the carriers ``v ⊙ 1`` that debranching puts into M stages) are
linear, so they are carried by ReLU units (± split) instead of products.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CompileError
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from .common import (Decoder, decode_triplets, Stage, UnitBlocks, const_vector, finish_module, layer_stages, plan_products,
                     pow2_at_least, relu_vec, sign_split, signs_of, slot_matrix, split_rows, stage_state_bounds,
                     vneg, vscale)

__all__ = ["GATES", "lower_recurrent", "relu_block"]

GATES = {"relu_rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
OP_KIND = {"relu_rnn": "rnn_relu", "lstm": "lstm", "gru": "gru"}
_RELU_GATE = {"relu_rnn": "h", "lstm": "o", "gru": "n"}


def relu_block(blocks: UnitBlocks, target: str, W: Matrix, b: Vector, *, rec=None, h0: Vector | None = None,
               decode: Matrix | None = None, role: str = "") -> int:
    """Add ``W.shape[0]`` ideal ReLU units computing ``ReLU(W x + b [+ rec h])``."""
    n = W.shape[0]
    gate = _RELU_GATE[target]
    Wd, bd = {gate: W}, {gate: b}
    if target == "lstm":
        bd["i"] = const_vector(n, 1)
        bd["g"] = const_vector(n, 1)
    elif target == "gru":
        bd["r"] = const_vector(n, 1)
    return blocks.add(n, W=Wd, b=bd, rec={gate: rec} if rec else None, h0=h0,
                      c0=Vector.zeros(n) if target == "lstm" else None, decode=decode, role=role)


# ------------------------------------------------------------------------------------------ stages

def ideal_state(blocks: UnitBlocks, target: str, st: Stage, W: Matrix, c: Vector) -> None:
    """S stage: ``s' = A s + W h_in + c`` held as ReLU parts (Eq. 11 where the sign is unknown)."""
    k = st.out_dim
    lo, hi = stage_state_bounds(st)
    pos, neg = sign_split(lo, hi)
    rows_w, rows_b, Ds = split_rows(W, c, pos, neg)
    rec = split_rows(st.A @ Ds, Vector.zeros(k), pos, neg)[0]
    h0 = relu_vec(split_rows(Matrix.identity(k), st.init, pos, neg)[1])
    assert blocks.H == 0
    relu_block(blocks, target, rows_w, rows_b, rec=[(rec, 0)] if rec.shape[0] else None, h0=h0, decode=Ds,
               role="state")


def ideal_relu(blocks: UnitBlocks, target: str, st: Stage, W: Matrix, c: Vector) -> None:
    relu_block(blocks, target, W, c, decode=Matrix.identity(st.out_dim), role="relu")


def carriers(blocks: UnitBlocks, target: str, plan, d_val: int) -> None:
    """Carry the linear terms of an M stage through ReLU units (± split by sign)."""
    if not plan.lin_slot:
        return
    pos, neg = sign_split(plan.lin_lo, plan.lin_hi)
    rows_w, rows_b, Ds = split_rows(plan.lin_rows, plan.lin_bias, pos, neg)
    place = slot_matrix(d_val, plan.lin_slot, [1] * len(plan.lin_slot))
    relu_block(blocks, target, rows_w, rows_b, decode=place @ Ds, role="carrier")


def ideal_products_lstm(blocks: UnitBlocks, st: Stage, plan) -> None:
    """LSTM product units (D.3 + D8): ``f = 0``, ``o = 1``, ``i = ReLU(s_u u)``, ``g = ReLU(s_w w)``,
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


def gate_choice(plan, j: int):
    """For product ``j`` pick the operand used as the GRU gate: ``(which, sign, shift, K)`` with
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


def ideal_products_gru(blocks: UnitBlocks, st: Stage, plan, lin_extra: list) -> None:
    """GRU leak-cancelling pairs (D7).  For ``g = sign·gate − shift ∈ [0, K]``:

    unit p: ``z_p = ReLU(1 − g/K)``, ``n_p = ReLU(s v)``            ⇒ ``p' = (g/K)·ReLU(s v) + (1 − g/K)·p``
    unit q: ``z_q = 0``, ``r_q = ReLU(1 − g/K)``, ``n_q = ReLU(r_q p)`` ⇒ ``q' = (1 − g/K)·p``

    so ``K·(p' − q') = g·ReLU(s v)``; ``u·v = sign·(g + shift)·v`` adds ``sign·shift·v`` as a linear carrier
    (appended to ``lin_extra``)."""
    for j in plan.prod:
        choice = gate_choice(plan, j)
        if choice is None:
            raise CompileError(f"gru: {st.op.describe()} (stage {st.index} of the layer form) multiplies two operands that range analysis cannot "
                               "bound; the GRU product needs a bounded operand (give the Input bounds and "
                               "t_max)")
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
            lin_extra.append((j, Vr.rows([j]).scale(sign * shift), _num(cv.values[j]) * sign * _num(shift),
                              sign * shift * vlo, sign * shift * vhi))


def _num(x):
    """A scalar for exact-safe arithmetic: Fractions stay exact, floats become their exact value."""
    from fractions import Fraction
    return x if isinstance(x, Fraction) else Fraction(float(x))


def ideal_product_stage(blocks: UnitBlocks, target: str, st: Stage, W: Matrix, c: Vector) -> Vector:
    plan = plan_products(st, W, c)
    if target == "lstm":
        ideal_products_lstm(blocks, st, plan)
    else:
        extra: list = []
        ideal_products_gru(blocks, st, plan, extra)
        for j, row, bias, lo, hi in extra:
            plan.lin_rows = Matrix.vstack([plan.lin_rows, row])
            plan.lin_bias = Vector.concat([plan.lin_bias, Vector([bias])])
            plan.lin_slot.append(j)
            plan.lin_lo = np.append(plan.lin_lo, min(lo, hi))
            plan.lin_hi = np.append(plan.lin_hi, max(lo, hi))
    carriers(blocks, target, plan, plan.h)
    return plan.const


# ------------------------------------------------------------------------------------------ driver

def lower_recurrent(module: Module, target: str, activations: str = "ideal", t_max: int | None = None) -> Module:
    """Lower a layer-form module to ``relu_rnn`` / ``lstm`` / ``gru``: one target layer per stage."""
    if activations not in ("ideal", "standard"):
        raise CompileError(f"activations must be 'ideal' or 'standard', got {activations!r}")
    form = layer_stages(module, t_max)
    standard = activations == "standard" and target != "relu_rnn"
    if standard:
        from .standard import StandardLowering
        std = StandardLowering(target, t_max=t_max)
    prev: Op = form.input
    dec = Decoder.identity(form.input.dim)
    ops: list[Op] = []
    stages_meta: list[dict] = []
    for st in form.stages:
        W, c = dec.compose(st.W, st.c)
        blocks = UnitBlocks(GATES[target], prev.dim, st.out_dim)
        e = Vector.zeros(st.out_dim)
        if st.kind == "M" and target == "relu_rnn":
            raise CompileError(f"relu_rnn: {st.op.describe()} (stage {st.index} of the layer form) is a multiplication; a ReLU RNN cannot multiply two "
                               "values (use target 'lstm', 'gru' or 'linear_rnn', or a ReLU-based conditional "
                               "such as conditional='optimized')")
        if standard:
            e = std.stage(blocks, st, W, c)
        elif st.kind == "S":
            ideal_state(blocks, target, st, W, c)
        elif st.kind == "R":
            ideal_relu(blocks, target, st, W, c)
        else:
            e = ideal_product_stage(blocks, target, st, W, c)
        attrs, D, roles = blocks.build()
        if target != "relu_rnn":
            attrs["activations"] = activations
        if target == "lstm" and "c0" not in attrs:
            attrs["c0"] = Vector.zeros(blocks.H)
        op = Op(OP_KIND[target], [prev], attrs, name=f"L{len(ops)}")
        ops.append(op)
        stages_meta.append({"stage": st.kind, "source": st.op.name or st.op.kind, "width": op.dim,
                            "units": roles, "decode": decode_triplets(D)})
        dec = Decoder(D, e)
        prev = op
    extra = {"t_max": t_max}
    if standard:
        extra["standard"] = std.summary()
    return finish_module(form, ops, prev, dec, target=target, activations=activations, stages_meta=stages_meta,
                         extra_meta=extra)
