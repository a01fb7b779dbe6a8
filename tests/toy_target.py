"""A toy target written outside the package, the way a user adds an architecture (docs/adding_a_target.md):
a linear RNN that stores every state twice.

Op ``toy_twin_linstate``: ``s_t = A s_{t-1} + B x_t + bias`` (``s_0 = init``) with output and state
``[s_t; s_t]`` (width ``2k``).  Its kernel descriptor is a core ``linstate`` node with the doubled weights, so
the C++ executor runs it without new kernel code.  The lowering is the default target's, with every
``linstate`` replaced by the twin and a ``linear`` that keeps the first copy.

tests/test_target_plugin.py loads this file and compiles, runs, saves, loads and exports through it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lsrl.errors import CompileError
from lsrl.ir.core import OPS, AttrSpec, Module, Op, OpDef, ShapeProblem, register_op
from lsrl.ir.matrix import Matrix, Vector
from lsrl.ir.semantics import run_linstate
from lsrl.targets import Target, default_target, register_target
from lsrl.targets.shared.cells import csr_arrays, optional_vector, vector_array

KIND = "toy_twin_linstate"


def _infer(op: Op) -> int:
    a, b = op.attrs["A"], op.attrs["B"]
    k = a.shape[0]
    if a.shape != (k, k) or b.shape != (k, op.operands[0].dim):
        raise ShapeProblem(f"A is {a.shape}, B is {b.shape}: expected k x k and k x {op.operands[0].dim}")
    return 2 * k


def _run(op: Op, inputs: list, state, ctx):
    k = op.dim // 2
    states, last = run_linstate(op, inputs, None if state is None else state[:, :k], ctx)
    return np.concatenate([states, states], axis=-1), np.concatenate([last, last], axis=-1)


def _twice(op: Op) -> dict:
    """The doubled weights: a plain linstate of width 2k computing ``[s; s]``."""
    a = op.attrs
    return {"A": Matrix.from_scipy(sp.block_diag([a["A"].scipy()] * 2, format="csr")),
            "B": Matrix.from_scipy(sp.vstack([a["B"].scipy()] * 2, format="csr")),
            "bias": Vector.concat([a["bias"], a["bias"]]), "init": Vector.concat([a["init"], a["init"]])}


def _kernel(op: Op, dtype) -> dict:
    w = _twice(op)
    return {"kind": "linstate", "W": csr_arrays(w["B"], dtype), "b": optional_vector(w["bias"], dtype),
            "R": csr_arrays(w["A"], dtype), "init": vector_array(w["init"], dtype)}


if KIND not in OPS:
    register_op(OpDef(KIND, "linstate whose output and state are [s; s]", _infer,
                      attrs={"A": AttrSpec("matrix"), "B": AttrSpec("matrix"), "bias": AttrSpec("vector"),
                             "init": AttrSpec("vector")},
                      stateful=True, run=_run, kernel=_kernel))


class TwinLinearRnn(Target):
    name = "toy_twin"
    summary = "linear RNN with every state stored twice (a test plug-in)"
    op_kinds = frozenset({KIND, "linear", "relu", "multi"})
    exact_activations = ("ideal", "standard")

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        base = default_target().lower(module, activations=activations, t_max=t_max)
        ops, prev = [base.ops[0]], base.ops[0]
        for op in base.ops[1:]:
            if op.kind == "linstate":
                twin = Op(KIND, [prev], dict(op.attrs), name=op.name)
                k = op.dim
                first = Op("linear", [twin], {"A": Matrix.from_dense(np.eye(k, 2 * k)), "b": Vector.zeros(k)})
                ops += [twin, first]
                prev = first
            elif op.kind in self.op_kinds:
                prev = Op(op.kind, [prev], dict(op.attrs), name=op.name)
                ops.append(prev)
            else:
                raise CompileError(f"toy_twin: cannot lower {op.describe()}")
        meta = {k: v for k, v in base.metadata.items() if k not in ("layout", "stages")}
        meta.update(target=self.name, activations=activations)
        return Module(ops, prev, name=base.name, metadata=meta).verify()

    def layer_groups(self, ops: list[Op]) -> list[list[Op]]:
        groups: list[list[Op]] = []
        for op in ops:
            if op.kind == KIND or not groups:
                groups.append([])
            groups[-1].append(op)
        return groups

    def torch_layer(self, op: Op, activations: str):
        if op.kind != KIND:
            return default_target().torch_layer(op, activations)
        from lsrl.targets.shared.torch_export import core_torch_layer
        return core_torch_layer(Op("linstate", op.operands, _twice(op)))

    def onnx_layer(self, b, op: Op, x: str, activations: str) -> str:
        from lsrl.targets.shared.onnx_export import core_onnx_layer
        if op.kind != KIND:
            return core_onnx_layer(b, op, x)
        return core_onnx_layer(b, Op("linstate", op.operands, _twice(op)), x)


register_target(TwinLinearRnn())
