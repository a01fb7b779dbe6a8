"""Target ``relu_rnn`` (targets.md §4): an Elman RNN with ReLU, one ``rnn_relu`` layer per stage of the layer form.

Op ``rnn_relu``: ``h' = ReLU(W_ih x + b_ih + W_hh h + b_hh)`` — PyTorch's ``nn.RNN(nonlinearity="relu")`` and
ONNX's ``RNN`` with ``activations=["Relu"]`` (``W = W_ih``, ``R = W_hh``, ``B = [b_ih, b_hh]``).  Every unit is
a ReLU unit, so both activation modes are the same exact construction; a ReLU RNN cannot multiply two values,
so programs with ``multi`` need a ReLU-based conditional (``conditional="optimized"``).
"""
from __future__ import annotations

import numpy as np

from ..errors import CompileError
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from ..ir.semantics import EvalContext, relu_values
from .registry import Target, available_targets, register_target
from .shared.cells import (Recurrent, cell_opdef, csr_arrays, empty_outputs, initial_state, input_projection,
                           optional_vector, vector_array)
from .shared.common import UnitBlocks
from .shared.ideal import CellLowering, lower_cells

__all__ = ["ReluRnnTarget"]

KIND = "rnn_relu"


def run(op: Op, inputs: list, state, ctx: EvalContext):
    (x,) = inputs
    exact = ctx.exact
    (h,) = initial_state(op, x.shape[0], exact) if state is None else state
    pre = input_projection(op, x, op.attrs["b_ih"] + op.attrs["b_hh"], exact)
    rec = Recurrent(op.attrs["W_hh"], exact)
    if rec.zero:
        y = relu_values(pre)
        return y, ((y[:, -1] if x.shape[1] else h),)
    y = empty_outputs(x.shape[0], x.shape[1], op.dim, exact)
    for t in range(x.shape[1]):
        h = relu_values(pre[:, t] + rec(h))
        y[:, t] = h
    return y, (h,)


def kernel_node(op: Op, dtype: np.dtype) -> dict:
    a = op.attrs
    # the numpy run adds the two biases first (as Vectors: exactly, for exact weights)
    return {"kind": KIND, "W": csr_arrays(a["W_ih"], dtype), "b": optional_vector(a["b_ih"] + a["b_hh"], dtype),
            "R": csr_arrays(a["W_hh"], dtype), "init": vector_array(a["h0"], dtype)}


cell_opdef(KIND, "Elman RNN with ReLU: h' = ReLU(W_ih x + b_ih + W_hh h + b_hh)", gates=("h",), run=run,
           kernel=kernel_node, activations=False)


class ReluCell(CellLowering):
    op_kind = KIND
    gates = ("h",)

    def relu_units(self, blocks: UnitBlocks, W: Matrix, b: Vector, *, rec=None, h0=None, decode=None, role=""):
        return blocks.add(W.shape[0], W={"h": W}, b={"h": b}, rec={"h": rec} if rec else None, h0=h0,
                          decode=decode, role=role)

    def ideal_products(self, blocks, st, plan):
        if not plan.prod:
            return []
        multiplying = [name for name, t in available_targets().items() if t.multiplies]
        raise CompileError(f"relu_rnn: {st.op.describe()} (stage {st.index} of the layer form) is a multiplication; "
                           "a ReLU RNN cannot multiply two values (use a target that can: "
                           f"{', '.join(multiplying)}, or a ReLU-based conditional such as "
                           "conditional='optimized')")


class ReluRnnTarget(Target):
    name = "relu_rnn"
    summary = "Elman RNN with ReLU (nn.RNN, ONNX RNN)"
    op_kinds = frozenset({KIND})
    exact_activations = ("ideal", "standard")  # ReLU is its standard activation
    multiplies = False

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        return lower_cells(module, ReluCell(), self.name, activations, t_max)

    def torch_layer(self, op: Op, activations: str):
        import torch
        from torch import nn

        from .shared.torch_export import CellLayer
        return CellLayer(nn.RNN(op.operands[0].dim, op.dim, nonlinearity="relu", batch_first=True,
                                dtype=torch.float64), op)

    def onnx_layer(self, b, op: Op, x: str, activations: str) -> str:
        from .shared.onnx_export import dense, vector
        dt = b.dtype
        b_ih, b_hh = vector(op.attrs["b_ih"], dt), vector(op.attrs["b_hh"], dt)
        if dt == np.float64:
            return b.scan_cell(op, x, w_ih=op.attrs["W_ih"], w_hh=op.attrs["W_hh"], pre_bias=b_ih + b_hh,
                               rec_bias=None, initial=[vector(op.attrs["h0"], dt)], gates=1,
                               body=lambda c: [c.node("Relu", [c.node("Add", [c.rec, c.pre])])])
        return b.recurrent_op("RNN", op, x, W=dense(op.attrs["W_ih"], dt)[None], R=dense(op.attrs["W_hh"], dt)[None],
                              B=np.concatenate([b_ih, b_hh])[None], initial=[vector(op.attrs["h0"], dt)], n_out=2,
                              activations=["Relu"])


register_target(ReluRnnTarget())
