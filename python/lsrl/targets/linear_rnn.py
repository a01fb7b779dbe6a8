"""Target ``linear_rnn`` (targets.md §2–§3): the layer form itself is a stack of (gated) linear RNN layers.

The lowered module keeps the core ops (``linstate``, ``linear``, ``relu``, ``multi``) — they are the
architecture's equations (Eq. 3; Eq. 4 where a layer contains ``multi``) — and always ends with a
``linear`` readout (an identity one is appended when the layer form ends in a nonlinear op).  Exact in
both activation modes (a linear RNN has only ReLU).  A layer is a ``linstate`` and the ops after it.

Exports: torch has no linear RNN module, so each ``linstate`` is a scan module; ONNX runs it as an ``RNN``
with the ``Affine`` activation (float32) or a ``Scan`` (float64) — :mod:`lsrl.targets.shared.torch_export`,
:mod:`lsrl.targets.shared.onnx_export`.
"""
from __future__ import annotations

from ..errors import CompileError
from ..ir.core import Module, Op
from ..ir.layer_form import check_layer_form
from ..ir.matrix import Matrix, Vector
from .registry import Target, register_target

__all__ = ["LinearRnnTarget"]


class LinearRnnTarget(Target):
    name = "linear_rnn"
    summary = "(gated) linear RNN: the layer form's own ops"
    op_kinds = frozenset({"linstate", "linear", "relu", "multi"})
    exact_activations = ("ideal", "standard")  # ReLU is its only nonlinearity
    layer_form = True
    is_default = True  # the paper's architecture

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        chain = check_layer_form(module, "lower", CompileError)
        ops = list(chain)
        last = ops[-1]
        if last.kind != "linear" or last is chain[0]:
            # a linear right after the input with nothing else is still a readout of the input
            readout = Op("linear", [last], {"A": Matrix.identity(last.dim), "b": Vector.zeros(last.dim)},
                         name="readout")
            ops.append(readout)
        else:
            readout = last
        out = Module(ops, readout, name=module.name, metadata=dict(module.metadata))
        # the layer form's per-op layout and stages stay valid (same ops); extend them to the added readout
        layout, stages = out.metadata.get("layout"), out.metadata.get("stages")
        if len(ops) > len(chain):
            if isinstance(layout, list) and len(layout) == len(chain):
                out.metadata["layout"] = layout + [[{"role": "output", "index": j} for j in range(readout.dim)]]
            if isinstance(stages, list) and len(stages) == len(chain):
                out.metadata["stages"] = stages + [{"stage": "readout"}]
        if not isinstance(out.metadata.get("stages"), list) or len(out.metadata["stages"]) != len(ops):
            kinds = {"input": "X", "linstate": "S", "relu": "R", "multi": "M", "linear": "A"}
            out.metadata["stages"] = [{"stage": "readout" if op is readout else kinds[op.kind]} for op in ops]
        if not isinstance(out.metadata.get("layout"), list) or len(out.metadata["layout"]) != len(ops):
            out.metadata.pop("layout", None)
        out.metadata.update({"target": self.name, "activations": activations, "t_max": t_max})
        if activations == "standard":  # the same ops as ideal mode: they add no error of their own
            out.metadata["local_errors"] = {}
        return out.verify()

    def layer_info(self, group: list[Op]) -> dict:
        first = group[0]
        return {"kind": "gated_linear_rnn" if any(op.kind == "multi" for op in group) else "linear_rnn",
                "hidden_size": first.dim if first.kind == "linstate" else 0, "output_size": group[-1].dim,
                "ops": [(op.kind, op.dim) for op in group]}

    def torch_layer(self, op: Op, activations: str):
        from .shared.torch_export import core_torch_layer
        return core_torch_layer(op)

    def onnx_layer(self, b, op: Op, x: str, activations: str) -> str:
        from .shared.onnx_export import core_onnx_layer
        return core_onnx_layer(b, op, x)


register_target(LinearRnnTarget())
