"""Target ``linear_rnn`` (targets.md §2–§3): the layer form itself is a stack of (gated) linear RNN layers.

The lowered module keeps the core ops (``linstate``, ``linear``, ``relu``, ``multi``) — they are the
architecture's equations (Eq. 3; Eq. 4 where a layer contains ``multi``) — and always ends with a
``linear`` readout (an identity one is appended when the layer form ends in a nonlinear op).  Exact in
both activation modes (a linear RNN has only ReLU).
"""
from __future__ import annotations

from ..errors import CompileError
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from ..passes.lower import register_lowering
from .common import _chain

__all__ = ["lower", "linear_rnn_layers"]


def linear_rnn_layers(module: Module) -> list[list[Op]]:
    """The ops of each layer (a ``linstate`` and the segment after it; ops before the first ``linstate``
    form a layer of their own), the readout excluded."""
    chain = [op for op in module.ops if op.kind != "input"]
    if chain and chain[-1] is module.output and chain[-1].kind == "linear":
        chain = chain[:-1]
    layers: list[list[Op]] = []
    for op in chain:
        if op.kind == "linstate" or not layers:
            layers.append([])
        layers[-1].append(op)
    return layers


def lower(module: Module, *, activations: str = "ideal", t_max: int | None = None) -> Module:
    if activations not in ("ideal", "standard"):
        raise CompileError(f"activations must be 'ideal' or 'standard', got {activations!r}")
    chain = _chain(module)
    ops = list(chain)
    last = ops[-1]
    if last.kind != "linear" or last is chain[0]:
        readout = Op("linear", [last], {"A": Matrix.identity(last.dim), "b": Vector.zeros(last.dim)},
                     name="readout")
        ops.append(readout)
    else:
        readout = last
        # a linear right after the input with nothing else is still a readout of the input
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
    out.metadata.update({"target": "linear_rnn", "activations": activations, "t_max": t_max})
    return out.verify()


register_lowering("linear_rnn", lower)
