"""Lowering the layer form to recurrent cells, one target layer per stage (``targets.md`` §1.2, §4–§6), and
the ideal-mode constructions every cell shares.

A target whose layers are recurrent cells (``W_ih``/``W_hh`` weights, :mod:`.cells`) describes its cell with a
:class:`CellLowering` and calls :func:`lower_cells`.  In ideal mode every stage's units are *ReLU units* —
``ReLU(pre-activation)``, which each cell realises in its own way (:meth:`CellLowering.relu_units`):

* S stages use the Eq. 11 ± split where range analysis cannot prove a state coordinate's sign;
* R stages are one ReLU unit per coordinate;
* M stages: the cell's own product units (:meth:`CellLowering.ideal_products`); multiplications by a constant
  operand (the carriers ``v ⊙ 1`` that debranching puts into M stages) are linear, so they are carried by
  ReLU units (± split) instead of products.

Standard mode hands each stage to the cell's :class:`~.standard.StandardLowering`.
"""
from __future__ import annotations

import numpy as np

from ...ir.core import Module, Op
from ...ir.matrix import Matrix, Vector
from .common import (Decoder, Stage, UnitBlocks, decode_triplets, finish_module, layer_stages, plan_products,
                     relu_vec, sign_split, slot_matrix, split_rows, stage_state_bounds)
from .standard import CandidateValues

__all__ = ["CellLowering", "lower_cells", "ideal_state", "ideal_relu", "carriers"]


class CellLowering:
    """How one recurrent cell kind realises the layer form's stages (implemented by its target module)."""

    #: the op kind of the cell and the names of its gates (row blocks of ``W_ih``, in storage order)
    op_kind: str = ""
    gates: tuple = ()

    def relu_units(self, blocks: UnitBlocks, W: Matrix, b: Vector, *, rec=None, h0: Vector | None = None,
                   decode: Matrix | None = None, role: str = "") -> int:
        """Add ``W.shape[0]`` ideal units computing ``ReLU(W x + b [+ rec h])``; return the block's offset."""
        raise NotImplementedError

    def ideal_products(self, blocks: UnitBlocks, st: Stage, plan) -> list:
        """Add the units of the true products ``plan.prod`` of an M stage; return extra linear carriers
        ``(slot, row, bias, lo, hi)`` the construction needs (or raise CompileError when it cannot multiply)."""
        raise NotImplementedError

    def ideal_product_errors(self, st: Stage, plan) -> dict | None:
        """What the units of :meth:`ideal_products` add beyond the product's own rounding, as the stage op's
        :func:`~lsrl.passes.error_bound.local_error_entry` (``on_u`` per product, ``hidden``/``units`` of the
        terms a reader sums); None where a unit multiplies once and is read alone (the LSTM's)."""
        return None

    def standard(self, t_max: int | None):
        """The standard-mode lowering (a :class:`~.standard.StandardLowering`), or None when standard
        activations are the ideal ones (a ReLU cell)."""
        return None

    def layer_attrs(self, attrs: dict, width: int, activations: str) -> dict:
        """The op attributes of a built layer (``UnitBlocks.build``'s weights plus what the cell adds)."""
        return attrs


# ------------------------------------------------------------------------------------------ ideal stages

def ideal_state(blocks: UnitBlocks, cell: CellLowering, st: Stage, W: Matrix, c: Vector) -> None:
    """S stage: ``s' = A s + W h_in + c`` held as ReLU parts (Eq. 11 where the sign is unknown)."""
    k = st.out_dim
    lo, hi = stage_state_bounds(st)
    pos, neg = sign_split(lo, hi)
    rows_w, rows_b, Ds = split_rows(W, c, pos, neg)
    rec = split_rows(st.A @ Ds, Vector.zeros(k), pos, neg)[0]
    h0 = relu_vec(split_rows(Matrix.identity(k), st.init, pos, neg)[1])
    assert blocks.H == 0
    cell.relu_units(blocks, rows_w, rows_b, rec=[(rec, 0)] if rec.shape[0] else None, h0=h0, decode=Ds,
                    role="state")


def ideal_relu(blocks: UnitBlocks, cell: CellLowering, st: Stage, W: Matrix, c: Vector) -> None:
    cell.relu_units(blocks, W, c, decode=Matrix.identity(st.out_dim), role="relu")


def carriers(blocks: UnitBlocks, cell: CellLowering, plan, d_val: int) -> None:
    """Carry the linear terms of an M stage through ReLU units (± split by sign)."""
    if not plan.lin_slot:
        return
    pos, neg = sign_split(plan.lin_lo, plan.lin_hi)
    rows_w, rows_b, Ds = split_rows(plan.lin_rows, plan.lin_bias, pos, neg)
    place = slot_matrix(d_val, plan.lin_slot, [1] * len(plan.lin_slot))
    cell.relu_units(blocks, rows_w, rows_b, decode=place @ Ds, role="carrier")


def ideal_product_stage(blocks: UnitBlocks, cell: CellLowering, st: Stage, W: Matrix,
                        c: Vector) -> tuple[Vector, dict | None]:
    """The M stage's units; returns the decoder's constant and the stage's local errors (or None)."""
    plan = plan_products(st, W, c)
    for j, row, bias, lo, hi in cell.ideal_products(blocks, st, plan):
        plan.lin_rows = Matrix.vstack([plan.lin_rows, row])
        plan.lin_bias = Vector.concat([plan.lin_bias, Vector([bias])])
        plan.lin_slot.append(j)
        plan.lin_lo = np.append(plan.lin_lo, min(lo, hi))
        plan.lin_hi = np.append(plan.lin_hi, max(lo, hi))
    carriers(blocks, cell, plan, plan.h)
    return plan.const, cell.ideal_product_errors(st, plan)


# ------------------------------------------------------------------------------------------ driver

def lower_cells(module: Module, cell: CellLowering, target: str, activations: str,
                t_max: int | None = None) -> Module:
    """Lower a layer-form module to a chain of ``cell.op_kind`` layers, one per stage, for target ``target``."""
    form = layer_stages(module, t_max)
    std = cell.standard(t_max) if activations == "standard" else None
    if std is not None:
        dtype = module.metadata.get("dtype", "float64")
        std.k, std.dtype = std.k.for_dtype(dtype), dtype
        std.positions = {id(op): i for i, op in enumerate(module.ops)}
        std.candidates = CandidateValues(module, t_max, form.ranges)
    positions = {id(op): i for i, op in enumerate(module.ops)}
    ideal_errors: dict[int, dict] = {}
    prev: Op = form.input
    dec = Decoder.identity(form.input.dim)
    ops: list[Op] = []
    stages_meta: list[dict] = []
    for st in form.stages:
        W, c = dec.compose(st.W, st.c)
        blocks = UnitBlocks(cell.gates, prev.dim, st.out_dim)
        e = Vector.zeros(st.out_dim)
        if std is not None:
            std.column_reach = np.full(prev.dim, std.k.rho) if ops else np.maximum(
                np.abs(prev.attrs["lower"].to_float().values), np.abs(prev.attrs["upper"].to_float().values))
            e = std.stage(blocks, st, W, c)
        elif st.kind == "S":
            ideal_state(blocks, cell, st, W, c)
        elif st.kind == "R":
            ideal_relu(blocks, cell, st, W, c)
        else:
            e, entry = ideal_product_stage(blocks, cell, st, W, c)
            if entry is not None:
                ideal_errors[positions[id(st.op)]] = entry
        attrs, D, roles = blocks.build()
        op = Op(cell.op_kind, [prev], cell.layer_attrs(attrs, blocks.H, activations), name=f"L{len(ops)}")
        ops.append(op)
        stages_meta.append({"stage": st.kind, "source": st.op.name or st.op.kind, "width": op.dim,
                            "units": roles, "decode": decode_triplets(D)})
        dec = Decoder(D, e)
        prev = op
    # a cell without a standard construction of its own (a ReLU cell) computes the layer form's ops in both modes
    extra = {"t_max": t_max, "local_errors": {}} if activations == "standard" else {"t_max": t_max}
    if ideal_errors:
        extra["local_errors"] = ideal_errors
    if std is not None:
        std.finish(module)
        extra["standard"] = std.summary()
        if std.dtype_limits:
            extra["dtype_limits"] = dict(std.dtype_limits)
        extra["local_errors"] = std.local_errors
    return finish_module(form, ops, prev, dec, target=target, activations=activations, stages_meta=stages_meta,
                         extra_meta=extra)
