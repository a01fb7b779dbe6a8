"""Whole-model execution through the C++ kernel: one call runs a compiled model (or a program) over a batch
of sequences, with the time loop in C++.

An **execution plan** is a list of kernel node descriptors written once per module and dtype (weights
converted to CSR arrays of that dtype) and cached on the module; :func:`run` then makes one kernel call for the
whole batch.  The core ops (``linear``, ``relu``, ``multi``, ``concat``, ``slice``, ``linstate``) have their
descriptors here, so a program's own IR DAG runs too; a target's op kinds bring theirs (``OpDef.kernel``, in the
target's module).

The kernel computes what the numpy semantics compute (``OpDef.run``: :mod:`lsrl.ir.semantics` and the target
modules) with the same summation order for every sparse product; float64 results agree to the last bits except
where numpy uses BLAS (dense small recurrent matrices), i.e. far below 1e-12 relative.

States follow :meth:`lsrl.Model.stream`: a list with one entry per op of ``module.ops`` other than the input op
(``None`` for stateless ops), ``linstate`` → a ``(B, k)`` array, a target cell → the tuple of its
``OpDef.state_parts`` (e.g. ``(h,)`` or ``(h, c)``); a ``None`` entry means the op's initial state.

    ys, states = run(model.module, xs)                       # whole sequence
    ys2, states = run(model.module, more_xs, states)         # continue where it stopped
"""
from __future__ import annotations

import weakref
from typing import Iterable, Iterator

import numpy as np

from ..errors import ShapeError, VerifyError
from ..ir.core import OPS, Module, Op
from ..ir.sequences import as_sequences
from ..precision import DTYPES, dtype_of
from ..targets.shared.cells import csr_arrays, optional_vector, vector_array
from .. import scan as _scan

__all__ = ["run", "stream", "plan_for", "ExecutionPlan", "CORE_KINDS", "DTYPES"]

# the largest thread count or lane block the kernel takes (a C int)
_MAX_INT32 = 2 ** 31 - 1
#: the core op kinds the executor runs itself (target op kinds bring a kernel descriptor)
CORE_KINDS = ("input", "linear", "relu", "multi", "concat", "slice", "linstate")


def _kernel():
    kern = _scan._load_kernel()
    if kern is None:
        raise RuntimeError("lsrl.runtime.executor needs the C++ extension lsrl._kernel, which is not available "
                           f"({_scan._KERNEL_ERROR}); build it with `pip install .`")
    return kern


def _model_module(obj) -> Module | None:
    """The module of an ``lsrl.Model`` (recognised by its ``module``; None for anything else)."""
    inner = getattr(obj, "module", None)
    return inner if not isinstance(obj, Module) and isinstance(inner, Module) else None


def _refuse_a_model(module, who: str) -> None:
    if _model_module(module) is not None:
        raise TypeError(f"{who}: got an lsrl.Model, whose runs check what it was compiled for (t_max, the input "
                        "bounds, its dtype): run it with model(xs, backend='kernel') or model.stream(...), or pass "
                        "model.module to run its module without those checks")


def _as_module(module) -> Module:
    if isinstance(module, Module):
        return module
    inner = _model_module(module)
    if inner is None:
        inner = getattr(module, "ir", None)  # a program (lsrl.ForEach)
    if isinstance(inner, Module):
        return inner
    raise TypeError(f"executor: expected an lsrl.ir.Module or a program, got {type(module).__name__}")


# ------------------------------------------------------------------------------------------ the plan

def _descriptor(op: Op, inputs: list[int], dtype: np.dtype) -> dict:
    kind, a = op.kind, op.attrs
    if kind == "linear":
        node = {"kind": "affine", "W": csr_arrays(a["A"], dtype), "b": optional_vector(a["b"], dtype)}
    elif kind in ("relu", "multi", "concat"):
        node = {"kind": kind}
    elif kind == "slice":
        node = {"kind": kind, "start": int(a["start"])}
    elif kind == "linstate":
        node = {"kind": kind, "W": csr_arrays(a["B"], dtype), "b": optional_vector(a["bias"], dtype),
                "R": csr_arrays(a["A"], dtype), "init": vector_array(a["init"], dtype)}
    elif kind in OPS and OPS[kind].kernel is not None:
        node = OPS[kind].kernel(op, dtype)
    else:
        raise VerifyError(f"{op.describe()}: op kind {kind!r} has no kernel implementation (the core ops "
                          f"{', '.join(CORE_KINDS)} and target ops with a kernel descriptor run); use backend='numpy'")
    node.update(inputs=inputs, dim=int(op.dim), name=op.describe())
    return node


def _state_layout(op: Op, node: dict) -> list | None:
    """Per state part of ``op``: ``(shape per sequence, dtype)``; None for a linstate (one plain array).  The
    kernel keeps the parts flattened one after the other; a descriptor whose parts are not one ``(dim,)`` vector
    each says so under "state_layout"."""
    if "state_layout" in node:
        return [(tuple(shape), np.dtype(dt)) for shape, dt in node["state_layout"]]
    if not op.opdef.state_parts:
        return None
    return [((int(op.dim),), np.dtype(np.float64))] * len(op.opdef.state_parts)


class ExecutionPlan:
    """A module prepared for the kernel: the C++ ``Plan`` plus where each op's state lives.

    ``positions``: the ops whose states :func:`run` takes and returns (``module.ops`` without the input op);
    ``slots``: for every recurrent node of the kernel plan, its index in ``positions``."""

    def __init__(self, module: Module, dtype: np.dtype):
        inp = module.input
        live = module.live_ops()
        if inp not in live:  # an output that ignores the input still needs the input node
            live = [inp] + live
        order = [inp] + [op for op in live if op is not inp]
        index = {id(op): i for i, op in enumerate(order)}
        nodes = [{"kind": "input", "dim": int(inp.dim), "name": inp.describe()}]
        layouts = [None]
        for op in order[1:]:
            if op.kind == "input":
                raise VerifyError(f"module @{module.name} must have exactly one input op; found {op.describe()}")
            try:
                operands = [index[id(o)] for o in op.operands]
            except KeyError:
                raise VerifyError(f"{op.describe()}: an operand is not defined before its use "
                                  "(ops must be in topological order)") from None
            nodes.append(_descriptor(op, operands, dtype))
            layouts.append(_state_layout(op, nodes[-1]))
            nodes[-1].pop("state_layout", None)
        self.module_name = module.name  # not the module: the plan cache is weakly keyed by it
        self.dtype = dtype
        self.plan = _kernel().Plan(nodes, index[id(module.output)], dtype.name)
        self.positions = [op for op in module.ops if op is not inp]
        position = {id(op): i for i, op in enumerate(self.positions)}
        self.slots = [position[id(order[n])] for n in self.plan.state_nodes]
        self.parts = [order[n].opdef.state_parts for n in self.plan.state_nodes]
        self.dims = [int(order[n].dim) for n in self.plan.state_nodes]
        self.layouts = [layouts[n] for n in self.plan.state_nodes]

    def __repr__(self) -> str:
        return (f"<ExecutionPlan @{self.module_name} {self.dtype.name}: {self.plan.d_in} -> {self.plan.d_out}, "
                f"{len(self.slots)} recurrent nodes, work area {self.plan.arena_rows} rows>")


# module -> {dtype name: (sources, plan)}; a plan stays valid while the module's ops and their (immutable)
# attribute values are the same objects.
_PLANS: "weakref.WeakKeyDictionary[Module, dict]" = weakref.WeakKeyDictionary()


def _sources(module: Module) -> tuple:
    out: list = [module.output]
    for op in module.ops:
        out.append(op)
        out.extend(op.operands)
        out.extend(op.attrs.values())
    return tuple(out)


def plan_for(module, dtype=np.float64) -> ExecutionPlan:
    """The (cached) execution plan of ``module`` (a Module, a program, or an ``lsrl.Model``: its module's plan,
    which checks nothing) for ``dtype``."""
    module = _as_module(module)
    dt = dtype_of(dtype, "executor", TypeError)
    entries = _PLANS.get(module)
    if entries is None:
        entries = {}
        _PLANS[module] = entries
    sources = _sources(module)
    hit = entries.get(dt.name)
    if hit is not None and len(hit[0]) == len(sources) and all(p is q for p, q in zip(hit[0], sources)):
        return hit[1]
    plan = ExecutionPlan(module, dt)
    entries[dt.name] = (sources, plan)
    return plan


# ------------------------------------------------------------------------------------------ running

def _state_array(value, batch: int, shape: tuple, dtype: np.dtype, what: str) -> np.ndarray:
    """``value`` (one sequence's ``shape``, broadcast, or ``(batch,) + shape``) as ``(batch, prod(shape))``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"executor: {what} must be a real array, got dtype {arr.dtype}")
    if arr.shape == shape:
        arr = np.broadcast_to(arr, (batch,) + shape)
    if arr.shape != (batch,) + shape:
        raise ShapeError(f"executor: {what} has shape {arr.shape}, expected {(batch,) + shape}")
    values = np.ascontiguousarray(arr, dtype=dtype).reshape(batch, -1)
    if not np.isfinite(values).all():  # validated like the inputs (lsrl.ir.sequences.as_sequences)
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise ValueError(f"executor: {what} must be finite; found {values[bad]} at (batch, unit) = {bad}")
    return values


def _kernel_states(plan: ExecutionPlan, states, batch: int) -> list:
    if states is None:
        return [None] * len(plan.slots)
    states = list(states)
    if len(states) != len(plan.positions):
        raise ShapeError(f"executor: states must have one entry per op after the input ({len(plan.positions)} for "
                         f"module @{plan.module_name}), got {len(states)}")
    out = []
    for slot, parts, dim, layout in zip(plan.slots, plan.parts, plan.dims, plan.layouts):
        value = states[slot]
        what = f"the state of {plan.positions[slot].describe()}"
        if value is None:
            out.append(None)
        elif layout is None:  # linstate: the state array itself
            out.append(_state_array(value, batch, (dim,), plan.dtype, what))
        elif len(parts) == 1 and not isinstance(value, (tuple, list)):
            out.append(_state_array(value, batch, layout[0][0], plan.dtype, what))
        else:
            if not isinstance(value, (tuple, list)) or len(value) != len(parts):
                raise TypeError(f"executor: {what} must be a tuple ({', '.join(parts)}{',' * (len(parts) == 1)})")
            out.append(np.concatenate([_state_array(v, batch, shape, plan.dtype, f"{what} ({part})")
                                       for v, part, (shape, _) in zip(value, parts, layout)], axis=1))
    return out


def _model_states(plan: ExecutionPlan, states, finals: list) -> list:
    out = list(states) if states is not None else [None] * len(plan.positions)
    for slot, layout, value in zip(plan.slots, plan.layouts, finals):
        if layout is None:
            out[slot] = value
            continue
        parts, start = [], 0
        for shape, dt in layout:
            size = int(np.prod(shape, dtype=np.int64))
            part = value[:, start:start + size].reshape((value.shape[0],) + shape)
            parts.append(part.astype(dt) if dt.kind in "iu" else part)
            start += size
        out[slot] = tuple(parts)
    return out


def run(module, xs, states=None, dtype=np.float64, *, num_threads: int = 0, lanes: int = 0):
    """Run ``module`` (a lowered or program Module, or a program) over ``xs`` in the kernel, checking nothing of
    what a model was compiled for: an ``lsrl.Model`` is refused (TypeError), as its own runs check that.

    ``xs``: ``(T, d_in)``, ``(B, T, d_in)``, or ``(T,)`` when ``d_in == 1``.  ``states``: ``None`` (initial
    states) or the list :meth:`lsrl.Model.stream` carries (one entry per op after the input; see the module
    docstring).  ``dtype``: float64 or float32 (weights, inputs and arithmetic).  ``num_threads``: 0 = automatic
    (threads split the batch), n = at most n.  ``lanes``: time steps × batch elements per block (0 = automatic).

    Returns ``(ys, final_states)``: ``ys`` shaped like ``xs`` with ``d_out`` features and dtype ``dtype``;
    ``final_states`` in the same layout as ``states`` (stateless entries and dead ops are passed through).
    """
    _refuse_a_model(module, "executor.run")
    plan = plan_for(module, dtype)
    for name, value in (("num_threads", num_threads), ("lanes", lanes)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value <= _MAX_INT32:
            raise ValueError(f"executor: {name} must be an int in [0, {_MAX_INT32}], got {value!r}")
    x, batched = as_sequences(xs, plan.plan.d_in, who="executor", dtype=plan.dtype)
    kstates = _kernel_states(plan, states, x.shape[0])
    ys, finals = plan.plan.run(x, kstates, num_threads=int(num_threads), lanes=int(lanes))
    return (ys if batched else ys[0]), _model_states(plan, states, finals)


def stream(module, chunks: Iterable, dtype=np.float64, *, states=None, num_threads: int = 0,
           lanes: int = 0) -> Iterator[np.ndarray]:
    """Run over a long sequence given in consecutive chunks, carrying every state from chunk to chunk; yields
    each chunk's outputs.  Memory does not grow with the total length.  A Model is refused at the call, before
    the first chunk."""
    _refuse_a_model(module, "executor.stream")
    return _stream(module, chunks, dtype, states, num_threads, lanes)


def _stream(module, chunks: Iterable, dtype, states, num_threads: int, lanes: int) -> Iterator[np.ndarray]:
    batch = None
    for chunk in chunks:
        b = np.shape(chunk)[0] if np.ndim(chunk) == 3 else 1
        if batch is None:
            batch = b
        elif b != batch:
            raise ShapeError(f"executor.stream: chunks must keep the batch size {batch}, got {b}")
        ys, states = run(module, chunk, states, dtype, num_threads=num_threads, lanes=lanes)
        yield ys
