"""The interpreter: runs a :class:`~lsrl.ir.core.Module` over whole sequences.

This is the oracle every later stage (passes, compiled models, experiments) is checked against, so it
implements the semantics of ``language.md`` §1 as directly as possible while staying fast:

* **op at a time over the whole sequence** (the equivalent order of §1): every value is a ``(B, T, d)``
  array; a non-state op maps its operands' arrays row-wise and a ``linstate`` is a linear scan over time
  (:func:`lsrl.scan.linear_scan`).  There is no per-token Python loop in float mode.
* **dispatch through the op registry**: ``interpret`` calls ``OPS[op.kind].run`` (from each op's initial
  state; :mod:`lsrl.ir.semantics` defines the core ops', a target module its own ops'), so target ops are
  interpreted exactly like the core ops.  The one exception is an optimisation: core ``linstate`` ops that
  cannot read each other (same number of states on their longest path from the input) are scanned together as
  one block-diagonal recurrence — unless ``OPS["linstate"].run`` has been replaced, in which case every
  linstate goes through it.

Numeric domains: in float mode exact constants are rounded to float64 when used; in exact mode floats
(constants and inputs) are taken at their exact binary value (``docs/exact_arithmetic.md``).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..assumptions import InputBounds, check_sequence_length, recorded_t_max
from ..errors import VerifyError
from ..scan import kernel_available, linear_scan, scan_structure
from .core import OPS, Module, Op, as_module
from .matrix import as_exact_scalar
from .semantics import (EvalContext, _bias, cached, csr_times, feature_major, from_feature_major, run_linstate)
from .sequences import as_sequences

__all__ = ["interpret", "EvalContext", "BACKENDS"]

BACKENDS = ("auto", "kernel", "numpy")


# ------------------------------------------------------------------------------------------ fused scans

def _fusion_plan(group: list[Op]) -> list[tuple]:
    """How to scan several independent linstates at once: per structure class (diagonal ``A`` or not),
    ``(structure, block-diagonal A, concatenated init, members)`` with members ``(index, offset, k, B, bias)``."""
    import scipy.sparse as sp

    classes: dict[bool, list[int]] = {}
    for index, op in enumerate(group):
        classes.setdefault(op.attrs["A"].is_diagonal(), []).append(index)
    plan = []
    for diagonal, indices in classes.items():
        members, offset = [], 0
        for index in indices:
            op = group[index]
            members.append((index, offset, op.dim, op.attrs["B"].scipy(), _bias(op.attrs["bias"], False)))
            offset += op.dim
        a = sp.block_diag([group[i].attrs["A"].scipy() for i in indices], format="csr")
        structure = "diag" if diagonal else scan_structure(a)
        init = np.concatenate([group[i].attrs["init"].array(False) for i in indices])
        plan.append((structure, a if structure in ("diag", "csr") else a.toarray(), init, offset, members))
    return plan


def _fused_linstates(group: list[Op], inputs: list, ctx: EvalContext) -> list:
    """The values of independent linstates (none reads another), scanned together: one scan per class
    instead of one per op.  Diagonal and CSR paths give the same bits as separate scans."""
    batch, length = ctx.batch, ctx.length
    if batch == 0 or length == 0:
        return [np.zeros((batch, length, op.dim)) for op in group]
    sources = tuple(group) + tuple(op.attrs[k] for op in group for k in ("A", "B", "bias", "init"))
    outputs: list = [None] * len(group)
    for structure, a, init, width, members in cached(group[0], "fused", sources, lambda: _fusion_plan(group)):
        u = np.empty((width, batch * length))
        for index, offset, k, b_csr, bias in members:
            block = u[offset:offset + k]
            csr_times(b_csr, feature_major(inputs[index]), out=block)
            if bias is not None:
                block += bias[:, None]
        states = linear_scan(a, from_feature_major(u, batch, length), init, backend=ctx.backend,
                             structure=structure)
        states = feature_major(states)
        for index, offset, k, _, _ in members:
            outputs[index] = from_feature_major(states[offset:offset + k], batch, length)
    return outputs


def _schedule(ops: list[Op], fuse: bool) -> list[list[Op]]:
    """Evaluation steps in a topological order: one op, or several linstates to scan together.

    With ``fuse``, the ops are ordered by *stage* (the number of linstates on the longest path from the
    input, counting the op itself): linstates of one stage cannot read each other, and every other op of
    that stage comes after them."""
    if not fuse:
        return [[op] for op in ops]
    stage: dict[int, int] = {}
    stages: dict[int, tuple[list, list]] = {}
    for op in ops:
        try:
            s = max((stage[id(o)] for o in op.operands), default=0)
        except KeyError:  # not topologically ordered: the plain order reports it
            return [[op] for op in ops]
        state = op.kind == "linstate"
        s += state
        stage[id(op)] = s
        states, others = stages.setdefault(s, ([], []))
        (states if state else others).append(op)
    steps: list[list[Op]] = []
    for s in sorted(stages):
        states, others = stages[s]
        if states:
            steps.append(states)
        steps.extend([op] for op in others)
    return steps




# ------------------------------------------------------------------------------------------ inputs

def _prepare_inputs(module: Module, xs, exact: bool) -> tuple[np.ndarray, bool]:
    """``xs`` as a fresh ``(B, T, d_in)`` array in the requested domain, and whether it was batched."""
    arr, batched = as_sequences(xs, module.input.dim, who="interpret", subject="the program's input",
                                keep_exact=True, copy=True)
    if arr.dtype == object:
        try:
            exact_values = np.frompyfunc(as_exact_scalar, 1, 1)(arr) if arr.size else arr.copy()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"interpret: invalid input value: {exc}") from None
        if exact:
            return np.asarray(exact_values, dtype=object).reshape(arr.shape), batched
        return np.array([float(v) for v in exact_values.ravel().tolist()],
                        dtype=np.float64).reshape(arr.shape), batched
    if exact:
        if arr.dtype.kind == "f":  # already float64 and finite
            conv = np.frompyfunc(Fraction, 1, 1)(arr) if arr.size else np.empty(arr.shape, object)
        else:  # integers/bools: exact without the float detour
            conv = np.frompyfunc(as_exact_scalar, 1, 1)(arr) if arr.size else np.empty(arr.shape, object)
        return np.asarray(conv, dtype=object).reshape(arr.shape), batched
    values = np.asarray(arr, dtype=np.float64)
    batch, length, _ = values.shape
    return from_feature_major(feature_major(values), batch, length), batched  # a copy: outputs may be views


# ------------------------------------------------------------------------------------------ driver

def _resolve_backend(backend: str, exact: bool) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"interpret: backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto" or exact:
        return backend
    return "kernel" if kernel_available() else "numpy"


def _release_schedule(steps: list[list[Op]], output: Op) -> list[list[int]]:
    """For every step, the values no later step reads (freed as soon as possible to bound memory)."""
    last_use: dict[int, int] = {}
    for index, step in enumerate(steps):
        for op in step:
            for o in op.operands:
                last_use[id(o)] = index
    last_use.pop(id(output), None)
    release: list[list[int]] = [[] for _ in steps]
    for key, index in last_use.items():
        release[index].append(key)
    return release


def _evaluate(op: Op, values: dict, exact: bool, ctx: EvalContext, module: Module, input_op: Op) -> np.ndarray:
    if op.kind == "input":
        raise VerifyError(f"module @{module.name} must have exactly one input op; found {op.describe()} "
                          f"besides {input_op.describe()}")
    run = op.opdef.run
    if run is None:
        raise VerifyError(f"{op.describe()}: op kind {op.kind!r} has no run function registered "
                          "(import the module that defines it)")
    try:
        inputs = [values[id(o)] for o in op.operands]
    except KeyError:
        missing = next(o for o in op.operands if id(o) not in values)
        raise VerifyError(f"{op.describe()}: operand {missing.describe()} is not defined before its use "
                          "(ops must be in topological order)") from None
    out = run(op, inputs, None, ctx)[0]
    if not isinstance(out, np.ndarray) or out.shape != (ctx.batch, ctx.length, op.dim):
        raise RuntimeError(f"{op.describe()}: run returned shape {np.shape(out)}, "
                           f"expected {(ctx.batch, ctx.length, op.dim)}")
    return out


def interpret(module: Module, xs, exact: bool = False, backend: str = "auto", *,
              check_domain: bool = False, return_values: bool = False):
    """Run ``module`` on ``xs`` and return its outputs.

    ``xs``: ``(T, d_in)``, a batch ``(B, T, d_in)``, or 1-D ``(T,)`` when ``d_in == 1``; any ``T >= 0``.
    Returns ``(T, d_out)`` / ``(B, T, d_out)`` — float64, or with ``exact=True`` an object array of
    :class:`fractions.Fraction` (float inputs and constants taken at their exact binary value).
    States start from their ``init`` on every call.

    ``backend`` selects the scan of ``linstate`` ops: ``"kernel"`` (the C++ extension, required),
    ``"numpy"`` (never touches the extension) or ``"auto"`` (the kernel when it is built, else numpy).
    ``check_domain=True`` raises :class:`lsrl.InputDomainError` (a ``ValueError``) when an input violates
    the input op's bounds; a sequence longer than the ``t_max`` recorded in ``module.metadata`` always
    raises :class:`lsrl.SequenceLengthError`.
    ``return_values=True`` returns ``(outputs, values)`` where ``values`` maps every op of the module
    (dead ones included) to its value, shaped like the outputs (``(T, dim)`` or ``(B, T, dim)``).

    Raises :class:`lsrl.ShapeError` when ``xs`` does not match the input dim, ``ValueError`` for
    non-finite or non-numeric inputs, :class:`lsrl.ir.VerifyError` for a malformed module.
    """
    module = as_module(module, "interpret")
    exact = bool(exact)
    backend = _resolve_backend(backend, exact)
    x, batched = _prepare_inputs(module, xs, exact)
    # a module rewritten under a length assumption (canonicalize{use_ranges=true,t_max=…}) is only valid up to it
    check_sequence_length(recorded_t_max(module), x.shape[1], "interpret")
    if check_domain:
        InputBounds(module.input).check(x, "interpret")
    batch, length = x.shape[0], x.shape[1]
    ctx = EvalContext(exact=exact, backend=backend, batch=batch, length=length)

    ops = module.ops if return_values else module.live_ops()
    # Core linstates are scanned together unless someone replaced their run (e.g. to observe it).
    steps = _schedule(ops, fuse=not exact and OPS["linstate"].run is run_linstate)
    release = None if return_values else _release_schedule(steps, module.output)

    input_op = module.input
    values: dict[int, np.ndarray] = {}
    for index, step in enumerate(steps):
        if len(step) > 1:
            outs = _fused_linstates(step, [values[id(op.operands[0])] for op in step], ctx)
            for op, out in zip(step, outs):
                values[id(op)] = out
        else:
            op = step[0]
            if op is input_op:
                out = x
            else:
                out = _evaluate(op, values, exact, ctx, module, input_op)
            values[id(op)] = out
        if release is not None:
            for dead in release[index]:
                del values[dead]
    try:
        result = values[id(module.output)]
    except KeyError:
        raise VerifyError(f"module @{module.name}: the returned value {module.output.describe()} is not an op "
                          "of the module") from None

    def shaped(arr: np.ndarray) -> np.ndarray:
        return arr if batched else arr[0]

    if not exact:
        result = np.ascontiguousarray(result, dtype=np.float64)
    if return_values:
        return shaped(result), {op: shaped(values[id(op)]) for op in module.ops}
    return shaped(result)
