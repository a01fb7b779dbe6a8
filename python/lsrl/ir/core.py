"""SSA ops, the op registry and modules.

A :class:`Module` is a single block of single-result ops in topological order, with exactly one
``input`` op and one returned op.  Ops reference their operands directly (an op *is* its SSA value).
Every op kind, including the target dialects' ops, is described by an :class:`OpDef` in ``OPS``: its
attributes, operand count, result-dimension rule, its one numpy semantics (``run``, the core ops' in
:mod:`lsrl.ir.semantics`, a target's ops in the target's module) and, for ops the C++ kernel runs, its
kernel descriptor.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np

from ..errors import VerifyError
from .error_free import lowest_bit
from .matrix import Matrix, Vector

__all__ = ["Location", "AttrSpec", "OpDef", "OPS", "register_op", "Op", "Module", "VerifyError", "as_module",
           "fill_in_order", "grid_problem"]


@dataclass(frozen=True)
class Location:
    filename: str | None
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.filename or '<string>'}:{self.line}:{self.col}"


@dataclass(frozen=True)
class AttrSpec:
    """``kind`` is one of ``matrix``, ``vector``, ``int``, ``number``, ``str``."""
    kind: str
    required: bool = True
    doc: str = ""


class ShapeProblem(Exception):
    """Raised by an ``infer`` rule; turned into a :class:`VerifyError` naming the op."""


@dataclass
class OpDef:
    """An op kind.

    ``run(op, inputs, state, ctx) -> (output, state)`` is the op's meaning over whole sequences, the one the
    interpreter, :class:`lsrl.Model` and the kernel's differential tests all use: ``inputs`` holds one
    ``(B, T, d_i)`` array per operand (float64, or object arrays of Fractions when ``ctx.exact``), ``state`` is
    the op's state before the first step (None: its initial state; always None for stateless ops) and the
    result is ``(B, T, dim)`` in the same domain with the state after the last step (None when stateless).
    ``ctx`` is an :class:`lsrl.ir.semantics.EvalContext`.  ``run`` must not modify its inputs in place.

    ``kernel(op, dtype) -> dict`` writes the node descriptor the C++ executor runs the op as (None: the kernel
    cannot run it); ``state_parts`` names the arrays a stateful op's state is made of (``("h", "c")`` is the
    state tuple ``(h, c)``, each of width ``dim``); ``gates`` names the row blocks of a recurrent cell's stacked
    weight matrices, in storage order.
    """
    name: str
    summary: str
    infer: Callable[["Op"], int]
    attrs: dict = field(default_factory=dict)
    num_operands: int | None = 1  # None = variadic (at least one)
    stateful: bool = False
    run: Callable | None = None
    # default values of optional attributes, computed from the op (e.g. zero bias of the right length)
    defaults: Callable[["Op"], dict] | None = None
    kernel: Callable | None = None
    state_parts: tuple = ()
    gates: tuple = ()


OPS: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op kind {opdef.name!r} registered twice")
    OPS[opdef.name] = opdef
    return opdef


class Op:
    """One SSA op (and its result value)."""

    __slots__ = ("kind", "operands", "attrs", "dim", "name", "loc", "__weakref__")

    def __init__(self, kind: str, operands: Iterable["Op"] = (), attrs: dict | None = None, *,
                 dim: int | None = None, name: str | None = None, loc: Location | None = None):
        self.kind = kind
        self.operands = list(operands)
        self.attrs = dict(attrs or {})
        self.name = name
        self.loc = loc
        opdef = OPS.get(kind)
        if opdef is not None and opdef.defaults is not None:
            for k, v in opdef.defaults(self).items():
                if self.attrs.get(k) is None:
                    self.attrs[k] = v
        self.dim = dim if dim is not None else (self.infer_dim() if opdef is not None else None)

    @property
    def opdef(self) -> OpDef:
        try:
            return OPS[self.kind]
        except KeyError:
            raise VerifyError(f"{self.describe()}: unknown op kind {self.kind!r}") from None

    def infer_dim(self) -> int:
        try:
            return self.opdef.infer(self)
        except ShapeProblem as e:
            raise VerifyError(f"{self.describe()}: {e}") from None

    def describe(self) -> str:
        """``kind %name (file:line:col)`` for error messages."""
        text = self.kind
        if self.name:
            text += f" %{self.name}"
        if self.loc is not None:
            text += f" at {self.loc}"
        return text

    def __repr__(self) -> str:
        return f"<Op {self.kind} %{self.name or hex(id(self))} dim={self.dim}>"


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeProblem(message)


def _operand_dim(op: Op, i: int = 0) -> int:
    return op.operands[i].dim


# ---------------------------------------------------------------------------- core dialect

def _infer_input(op: Op) -> int:
    d = op.attrs.get("dim")
    _check(isinstance(d, numbers.Integral) and d >= 1, f"dim must be a positive integer, got {d!r}")
    for k in ("lower", "upper"):
        v = op.attrs.get(k)
        _check(v is None or len(v) == d, f"{k} has length {len(v) if v is not None else 0}, expected {d}")
    integer = op.attrs.get("integer", 0)
    _check(integer in (0, 1) and not isinstance(integer, float), f"integer must be 0 or 1, got {integer!r}")
    lows, highs = (op.attrs.get(k) for k in ("lower", "upper"))
    if lows is not None and highs is not None:
        empty = [i for i, (a, b) in enumerate(zip(lows.values.tolist(), highs.values.tolist()))
                 if not a <= b or a == math.inf or b == -math.inf]  # NaN compares false
        _check(not empty, f"empty domain at coordinate(s) {empty[:10]} (lower > upper, lower = +inf, upper = -inf or "
                          "a NaN bound)")
    grid = op.attrs.get("grid")
    if grid is not None:
        _check(len(grid) == d, f"grid has length {len(grid)}, expected {d}")
        _check(not integer, "grid and integer together: declare integer features with grid 1 instead")
        problem = grid_problem(lows, highs, grid)
        _check(problem is None, problem or "")
    return int(d)


#: a grid keeps every point, the bounds and their distance below 2^52 of its finest bit, so that a run's check
#: (``x − lower``, its quotient by the step, ``lower + k·step``) computes each exactly in float64
_GRID_BITS = 52


def grid_problem(lower, upper, grid) -> str | None:
    """What is wrong with an input's ``grid`` (a Vector; 0 = any value) for its ``lower``/``upper`` bounds, or None.

    A feature with step ``g > 0`` takes only the values ``lower + k·g`` (``k = 0, 1, …``) up to ``upper``: both
    bounds finite, and the step, the lower bound and every such value float64 numbers (a step of 1/16 on [0, 1]
    is one; 1/10 is not, nor is a range past 2^52 of the grid's finest bit)."""
    def entries(vector, missing: float) -> list:  # a float vector may hold ±inf, which has no exact value
        if vector is None:
            return [missing] * len(grid)
        return vector.array(True).tolist() if vector.exact else vector.values.tolist()
    steps, lows, highs = entries(grid, 0.0), entries(lower, -math.inf), entries(upper, math.inf)
    for i, (g, a, b) in enumerate(zip(steps, lows, highs)):
        if g == 0:
            continue
        where = f"grid[{i}] = {g}"
        if not g > 0 or not math.isfinite(float(g)) or Fraction(float(g)) != g:
            return f"{where}: a step must be 0 (any value) or a positive float64 number"
        if not (math.isfinite(float(a)) and math.isfinite(float(b))):
            return f"{where}: a gridded feature needs finite lower and upper bounds (its values are lower + k·step)"
        if Fraction(float(a)) != a:
            return f"{where}: the lower bound {a} is not a float64 number (the grid's values are lower + k·step)"
        step, start = Fraction(float(g)), Fraction(float(a))
        last = start + step * math.floor((Fraction(b) - start) / step)
        finest = int(np.min(lowest_bit(np.array([float(step), float(start)]))))  # the start may be 0
        reach = max(abs(start), abs(last), last - start)
        if reach >= Fraction(2) ** (finest + _GRID_BITS):
            return (f"{where}: the values lower + k·step from {float(start)} to {float(last)} are not all float64 "
                    f"numbers (the step's and the lower bound's finest bit is 2^{finest})")
    return None


def _defaults_input(op: Op) -> dict:
    d = int(op.attrs.get("dim", 0) or 0)
    return {"lower": Vector(np.full(d, -np.inf)), "upper": Vector(np.full(d, np.inf))}


def _infer_linear(op: Op) -> int:
    a, b = op.attrs["A"], op.attrs["b"]
    d = _operand_dim(op)
    _check(a.shape[1] == d, f"A is {a.shape[0]}x{a.shape[1]} but the operand has dim {d}")
    _check(a.shape[0] >= 1, "A must have at least one row")
    _check(len(b) == a.shape[0], f"b has length {len(b)} but A has {a.shape[0]} rows")
    return a.shape[0]


def _defaults_linear(op: Op) -> dict:
    a = op.attrs.get("A")
    return {"b": Vector.zeros(a.shape[0])} if isinstance(a, Matrix) else {}


def _infer_linstate(op: Op) -> int:
    a, b = op.attrs["A"], op.attrs["B"]
    d = _operand_dim(op)
    k = a.shape[0]
    _check(a.shape == (k, k), f"A must be square, got {a.shape[0]}x{a.shape[1]}")
    _check(b.shape == (k, d), f"B is {b.shape[0]}x{b.shape[1]}, expected {k}x{d} (state {k}, operand dim {d})")
    _check(k >= 1, "state dimension must be at least 1")
    for name in ("bias", "init"):
        v = op.attrs[name]
        _check(len(v) == k, f"{name} has length {len(v)}, expected {k}")
    return k


def _defaults_linstate(op: Op) -> dict:
    a = op.attrs.get("A")
    if not isinstance(a, Matrix):
        return {}
    return {"bias": Vector.zeros(a.shape[0]), "init": Vector.zeros(a.shape[0])}


def _infer_relu(op: Op) -> int:
    return _operand_dim(op)


def _infer_concat(op: Op) -> int:
    _check(len(op.operands) >= 1, "concat needs at least one operand")
    return sum(o.dim for o in op.operands)


def _infer_multi(op: Op) -> int:
    d = _operand_dim(op)
    _check(d % 2 == 0, f"operand dim {d} is odd (multi multiplies the first half by the second half)")
    return d // 2


def _infer_slice(op: Op) -> int:
    s, e = op.attrs["start"], op.attrs["end"]
    d = _operand_dim(op)
    _check(isinstance(s, numbers.Integral) and isinstance(e, numbers.Integral), "start/end must be integers")
    _check(0 <= s < e <= d, f"slice [{s}:{e}] out of range for operand dim {d}")
    return int(e - s)


register_op(OpDef("input", "the program input x_t", _infer_input,
                  attrs={"dim": AttrSpec("int"), "lower": AttrSpec("vector", False, "elementwise lower bound"),
                         "upper": AttrSpec("vector", False, "elementwise upper bound"),
                         "integer": AttrSpec("int", False, "1: every feature takes integer values only"),
                         "grid": AttrSpec("vector", False, "per feature: a step g > 0 — it takes only the values "
                                          "lower + k·g — or 0 (any value)")},
                  num_operands=0, defaults=_defaults_input))
register_op(OpDef("linear", "A x + b", _infer_linear,
                  attrs={"A": AttrSpec("matrix"), "b": AttrSpec("vector", False)}, defaults=_defaults_linear))
register_op(OpDef("relu", "max(0, x) elementwise", _infer_relu))
register_op(OpDef("linstate", "s_t = A s_{t-1} + B x_t + bias, s_0 = init", _infer_linstate,
                  attrs={"A": AttrSpec("matrix"), "B": AttrSpec("matrix"), "bias": AttrSpec("vector", False),
                         "init": AttrSpec("vector", False)}, stateful=True, defaults=_defaults_linstate))
register_op(OpDef("concat", "stack the operands", _infer_concat, num_operands=None))
register_op(OpDef("multi", "x[:h] * x[h:] elementwise", _infer_multi))
register_op(OpDef("slice", "x[start:end]", _infer_slice,
                  attrs={"start": AttrSpec("int"), "end": AttrSpec("int")}))


_ATTR_TYPES = {
    "matrix": (Matrix,),
    "vector": (Vector,),
    "int": (numbers.Integral,),
    "number": (numbers.Real, Fraction),
    "str": (str,),
}


# ---------------------------------------------------------------------------- module

class Module:
    """A program: ops in topological order, one ``input`` op, one returned op."""

    def __init__(self, ops: Iterable[Op], output: Op, name: str = "main", metadata: dict | None = None):
        self.ops = list(ops)
        self.output = output
        self.name = name
        # Facts about the module that are not ops (e.g. the layout of program values in compiled layers);
        # passes that change the ops a fact describes must update or drop it.
        self.metadata = dict(metadata or {})

    @staticmethod
    def from_output(output: Op, name: str = "main") -> "Module":
        """The module of every op the output depends on, in a deterministic topological order."""
        order: list[Op] = []
        state: dict[int, int] = {}  # id -> 1 visiting, 2 done
        stack = [(output, False)]
        while stack:
            op, expanded = stack.pop()
            if expanded:
                state[id(op)] = 2
                order.append(op)
                continue
            st = state.get(id(op))
            if st == 2:
                continue
            if st == 1:
                raise VerifyError(f"{op.describe()}: the graph has a cycle through this op")
            state[id(op)] = 1
            stack.append((op, True))
            for operand in reversed(op.operands):
                if state.get(id(operand)) != 2:
                    stack.append((operand, False))
        return Module(order, output, name)

    @property
    def input(self) -> Op:
        inputs = [op for op in self.ops if op.kind == "input"]
        if len(inputs) != 1:
            raise VerifyError(f"module @{self.name} must have exactly one input op, found {len(inputs)}")
        return inputs[0]

    def live_ops(self) -> list[Op]:
        """The ops the output depends on (itself included), in module order."""
        live = {id(self.output)}
        for op in reversed(self.ops):
            if id(op) in live:
                live.update(id(o) for o in op.operands)
        return [op for op in self.ops if id(op) in live]

    def users(self) -> dict:
        """``id(op) -> [ops using it]`` (an op using a value twice appears twice)."""
        out: dict[int, list[Op]] = {id(op): [] for op in self.ops}
        for op in self.ops:
            for o in op.operands:
                out.setdefault(id(o), []).append(op)
        return out

    def clone(self) -> "Module":
        """A copy whose ops can be mutated without touching this module (attribute values are immutable)."""
        mapping: dict[int, Op] = {}
        new_ops = []
        for op in self.ops:
            new = Op.__new__(Op)
            new.kind, new.attrs, new.dim, new.name, new.loc = op.kind, dict(op.attrs), op.dim, op.name, op.loc
            new.operands = [mapping[id(o)] for o in op.operands]
            mapping[id(op)] = new
            new_ops.append(new)
        return Module(new_ops, mapping[id(self.output)], self.name, self.metadata)

    def verify(self) -> "Module":
        """Raise :class:`VerifyError` naming the first op that breaks an invariant; return self."""
        seen: set[int] = set()
        n_inputs = 0
        for op in self.ops:
            opdef = op.opdef
            if op.kind == "input":
                n_inputs += 1
            if opdef.num_operands is None:
                if not op.operands:
                    raise VerifyError(f"{op.describe()}: needs at least one operand")
            elif len(op.operands) != opdef.num_operands:
                raise VerifyError(f"{op.describe()}: expects {opdef.num_operands} operand(s), "
                                  f"got {len(op.operands)}")
            for o in op.operands:
                if id(o) not in seen:
                    raise VerifyError(f"{op.describe()}: operand {o.describe()} is not defined before its use "
                                      "(ops must be in topological order, without cycles)")
            for key, spec in opdef.attrs.items():
                val = op.attrs.get(key)
                if val is None:
                    if spec.required:
                        raise VerifyError(f"{op.describe()}: missing attribute {key!r}")
                    continue
                if not isinstance(val, _ATTR_TYPES[spec.kind]) or isinstance(val, bool):
                    raise VerifyError(f"{op.describe()}: attribute {key!r} must be a {spec.kind}, "
                                      f"got {type(val).__name__}")
            unknown = set(op.attrs) - set(opdef.attrs)
            if unknown:
                raise VerifyError(f"{op.describe()}: unknown attribute(s) {sorted(unknown)}")
            dim = op.infer_dim()
            if op.dim != dim:
                raise VerifyError(f"{op.describe()}: result dim is {op.dim} but its operands give {dim}")
            seen.add(id(op))
        if n_inputs != 1:
            raise VerifyError(f"module @{self.name} must have exactly one input op, found {n_inputs}")
        if id(self.output) not in seen:
            raise VerifyError(f"module @{self.name}: the returned value {self.output.describe()} is not an op "
                              "of the module")
        return self

    def print(self, file=None) -> None:
        print(str(self), file=file)

    def __str__(self) -> str:
        from .printer import print_module
        return print_module(self)

    def __repr__(self) -> str:
        return f"<Module @{self.name}: {len(self.ops)} ops, {self.input.dim} -> {self.output.dim}>"


def as_module(module_or_program, who: str) -> Module:
    """The IR of ``module_or_program``: a :class:`Module`, or a program (anything whose ``.ir`` is one).

    ``who`` names the caller in the ``TypeError`` raised for anything else."""
    if isinstance(module_or_program, Module):
        return module_or_program
    ir = getattr(module_or_program, "ir", None)
    if isinstance(ir, Module):
        return ir
    raise TypeError(f"{who}: expected an lsrl.ir.Module or a program (lsrl.ForEach), "
                    f"got {type(module_or_program).__name__}")


def fill_in_order(op: Op, memo: dict, compute, pinned: dict) -> None:
    """``memo[id(x)] = compute(x)`` for ``op`` and every op it depends on that ``memo`` lacks, operands first
    (iteratively: graphs thousands of ops deep); ``pinned`` keeps the ops alive so their ids are not reused."""
    stack = [(op, False)]
    while stack:
        cur, ready = stack.pop()
        if id(cur) in memo:
            continue
        if not ready:
            stack.append((cur, True))
            stack.extend((o, False) for o in cur.operands if id(o) not in memo)
            continue
        memo[id(cur)] = compute(cur)
        pinned[id(cur)] = cur
