"""Whole-model execution through the C++ kernel: one call runs a compiled model (or a program) over a batch
of sequences, with the time loop in C++.

An **execution plan** is a list of kernel node descriptors written once per module and dtype (weights
converted to CSR arrays of that dtype) and cached on the module; :func:`run` then makes one kernel call for the
whole batch.  Every op of a lowered module is supported -- ``linstate``, ``linear``, ``relu``, ``multi`` and the
target cells ``rnn_relu``, ``lstm``, ``gru`` (ideal and standard activations) -- and so are the remaining core ops
(``concat``, ``slice``), so a program's own IR DAG runs too.

The kernel computes what the numpy backend computes (``lsrl.model.run_layer``, ``lsrl.targets.ops.run_op``,
``lsrl.ir.interpret``) with the same summation order for every sparse product; float64 results agree to the last
bits except where numpy uses BLAS (dense small recurrent matrices), i.e. far below 1e-12 relative.

States follow :meth:`lsrl.Model.stream`: a list with one entry per op of ``module.ops`` other than the input op
(``None`` for stateless ops), ``linstate`` → a ``(B, k)`` array, ``rnn_relu``/``gru`` → ``(h,)``, ``lstm`` →
``(h, c)``; a ``None`` entry means the op's initial state.

    ys, states = run(model.module, xs)                       # whole sequence
    ys2, states = run(model.module, more_xs, states)         # continue where it stopped
"""
from __future__ import annotations

import weakref
from typing import Iterable, Iterator

import numpy as np

from ..errors import ShapeError, VerifyError
from ..ir.core import Module, Op
from ..ir.sequences import as_sequences
from ..precision import DTYPES, dtype_of
from . import scan as _scan

__all__ = ["run", "stream", "plan_for", "ExecutionPlan", "SUPPORTED_KINDS", "DTYPES"]

SUPPORTED_KINDS = ("input", "linear", "relu", "multi", "concat", "slice", "linstate", "rnn_relu", "lstm", "gru")
_STATEFUL = ("linstate", "rnn_relu", "lstm", "gru")


def _kernel():
    kern = _scan._load_kernel()
    if kern is None:
        raise RuntimeError("lsrl.runtime.executor needs the C++ extension lsrl._kernel, which is not available "
                           f"({_scan._KERNEL_ERROR}); build it with `pip install .`")
    return kern


def _as_module(module) -> Module:
    if isinstance(module, Module):
        return module
    for attr in ("module", "ir"):  # lsrl.Model, lsrl.ForEach
        inner = getattr(module, attr, None)
        if isinstance(inner, Module):
            return inner
    raise TypeError(f"executor: expected an lsrl.ir.Module, an lsrl.Model or a program, got {type(module).__name__}")


# ------------------------------------------------------------------------------------------ the plan

def _csr(matrix, dtype: np.dtype) -> tuple:
    """``(indptr, indices, data)`` of a Matrix in the storage order the numpy backend uses."""
    csr = matrix.scipy()
    return (np.ascontiguousarray(csr.indptr, dtype=np.int64), np.ascontiguousarray(csr.indices, dtype=np.int64),
            np.ascontiguousarray(csr.data, dtype=dtype))


def _vec(vector, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(vector.array(False), dtype=dtype)


def _bias(vector, dtype: np.dtype):
    return None if vector.is_zero() else _vec(vector, dtype)


def _descriptor(op: Op, inputs: list[int], dtype: np.dtype) -> dict:
    kind, a = op.kind, op.attrs
    node = {"kind": kind, "inputs": inputs, "dim": int(op.dim), "name": op.describe()}
    if kind == "linear":
        node.update(kind="affine", W=_csr(a["A"], dtype), b=_bias(a["b"], dtype))
    elif kind in ("relu", "multi", "concat"):
        pass
    elif kind == "slice":
        node["start"] = int(a["start"])
    elif kind == "linstate":
        node.update(W=_csr(a["B"], dtype), b=_bias(a["bias"], dtype), R=_csr(a["A"], dtype),
                    init=_vec(a["init"], dtype))
    elif kind in ("rnn_relu", "lstm"):
        # the numpy forward adds the two biases first (as Vectors: exactly, for exact weights)
        node.update(W=_csr(a["W_ih"], dtype), b=_bias(a["b_ih"] + a["b_hh"], dtype), R=_csr(a["W_hh"], dtype))
        if kind == "lstm":
            node.update(init=np.concatenate([_vec(a["h0"], dtype), _vec(a["c0"], dtype)]),
                        ideal=a.get("activations", "ideal") == "ideal")
        else:
            node["init"] = _vec(a["h0"], dtype)
    elif kind == "gru":
        node.update(W=_csr(a["W_ih"], dtype), b=_bias(a["b_ih"], dtype), R=_csr(a["W_hh"], dtype),
                    b2=_vec(a["b_hh"], dtype), init=_vec(a["h0"], dtype),
                    ideal=a.get("activations", "ideal") == "ideal")
    else:
        raise VerifyError(f"{op.describe()}: op kind {kind!r} has no kernel implementation "
                          f"(supported: {', '.join(SUPPORTED_KINDS)}); use backend='numpy'")
    return node


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
        for op in order[1:]:
            if op.kind == "input":
                raise VerifyError(f"module @{module.name} must have exactly one input op; found {op.describe()}")
            try:
                operands = [index[id(o)] for o in op.operands]
            except KeyError:
                raise VerifyError(f"{op.describe()}: an operand is not defined before its use "
                                  "(ops must be in topological order)") from None
            nodes.append(_descriptor(op, operands, dtype))
        self.module = module
        self.dtype = dtype
        self.plan = _kernel().Plan(nodes, index[id(module.output)], dtype.name)
        self.positions = [op for op in module.ops if op is not inp]
        position = {id(op): i for i, op in enumerate(self.positions)}
        self.slots = [position[id(order[n])] for n in self.plan.state_nodes]
        self.kinds = [order[n].kind for n in self.plan.state_nodes]
        self.dims = [int(order[n].dim) for n in self.plan.state_nodes]

    def __repr__(self) -> str:
        return (f"<ExecutionPlan @{self.module.name} {self.dtype.name}: {self.plan.d_in} -> {self.plan.d_out}, "
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
    """The (cached) execution plan of ``module`` (a Module, Model or program) for ``dtype``."""
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

def _state_array(value, batch: int, dim: int, dtype: np.dtype, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"executor: {what} must be a real array, got dtype {arr.dtype}")
    if arr.shape == (dim,):
        arr = np.broadcast_to(arr, (batch, dim))
    if arr.shape != (batch, dim):
        raise ShapeError(f"executor: {what} has shape {arr.shape}, expected ({batch}, {dim})")
    values = np.ascontiguousarray(arr, dtype=dtype)
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
                         f"module @{plan.module.name}), got {len(states)}")
    out = []
    for slot, kind, dim in zip(plan.slots, plan.kinds, plan.dims):
        value = states[slot]
        what = f"the state of {plan.positions[slot].describe()}"
        if value is None:
            out.append(None)
        elif kind == "linstate":
            out.append(_state_array(value, batch, dim, plan.dtype, what))
        elif kind == "lstm":
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(f"executor: {what} must be a tuple (h, c)")
            out.append(np.concatenate([_state_array(value[0], batch, dim, plan.dtype, what + " (h)"),
                                       _state_array(value[1], batch, dim, plan.dtype, what + " (c)")], axis=1))
        else:
            if isinstance(value, (tuple, list)):
                if len(value) != 1:
                    raise TypeError(f"executor: {what} must be a tuple (h,)")
                value = value[0]
            out.append(_state_array(value, batch, dim, plan.dtype, what))
    return out


def _model_states(plan: ExecutionPlan, states, finals: list) -> list:
    out = list(states) if states is not None else [None] * len(plan.positions)
    for slot, kind, dim, value in zip(plan.slots, plan.kinds, plan.dims, finals):
        if kind == "linstate":
            out[slot] = value
        elif kind == "lstm":
            out[slot] = (value[:, :dim], value[:, dim:])
        else:
            out[slot] = (value,)
    return out


def run(module, xs, states=None, dtype=np.float64, *, num_threads: int = 0, lanes: int = 0):
    """Run ``module`` (a lowered or program Module, an ``lsrl.Model`` or a program) over ``xs`` in the kernel.

    ``xs``: ``(T, d_in)``, ``(B, T, d_in)``, or ``(T,)`` when ``d_in == 1``.  ``states``: ``None`` (initial
    states) or the list :meth:`lsrl.Model.stream` carries (one entry per op after the input; see the module
    docstring).  ``dtype``: float64 or float32 (weights, inputs and arithmetic).  ``num_threads``: 0 = automatic
    (threads split the batch), n = at most n.  ``lanes``: time steps × batch elements per block (0 = automatic).

    Returns ``(ys, final_states)``: ``ys`` shaped like ``xs`` with ``d_out`` features and dtype ``dtype``;
    ``final_states`` in the same layout as ``states`` (stateless entries and dead ops are passed through).
    """
    plan = plan_for(module, dtype)
    if not isinstance(num_threads, (int, np.integer)) or isinstance(num_threads, bool) or num_threads < 0:
        raise ValueError(f"executor: num_threads must be an int >= 0, got {num_threads!r}")
    if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes < 0:
        raise ValueError(f"executor: lanes must be an int >= 0, got {lanes!r}")
    x, batched = as_sequences(xs, plan.plan.d_in, who="executor", dtype=plan.dtype)
    kstates = _kernel_states(plan, states, x.shape[0])
    ys, finals = plan.plan.run(x, kstates, num_threads=int(num_threads), lanes=int(lanes))
    return (ys if batched else ys[0]), _model_states(plan, states, finals)


def stream(module, chunks: Iterable, dtype=np.float64, *, states=None, num_threads: int = 0,
           lanes: int = 0) -> Iterator[np.ndarray]:
    """Run over a long sequence given in consecutive chunks, carrying every state from chunk to chunk; yields
    each chunk's outputs.  Memory does not grow with the total length."""
    batch = None
    for chunk in chunks:
        b = np.shape(chunk)[0] if np.ndim(chunk) == 3 else 1
        if batch is None:
            batch = b
        elif b != batch:
            raise ShapeError(f"executor.stream: chunks must keep the batch size {batch}, got {b}")
        ys, states = run(module, chunk, states, dtype, num_threads=num_threads, lanes=lanes)
        yield ys
