"""The interpreter: runs a :class:`~lsrl.ir.core.Module` over whole sequences.

This is the oracle every later stage (passes, compiled models, experiments) is checked against, so it
implements the semantics of ``language.md`` §1 as directly as possible while staying fast:

* **op at a time over the whole sequence** (the equivalent order of §1): every value is a ``(B, T, d)``
  array; a non-state op maps its operands' arrays row-wise and a ``linstate`` is a linear scan over time
  (``lsrl.runtime.scan.linear_scan``).  There is no per-token Python loop in float mode.
* **dispatch through the op registry**: ``interpret`` calls ``OPS[op.kind].forward`` for every op, so
  dialect ops registered by other modules (targets) are interpreted exactly like the core ops.  The one
  exception is an optimisation: core ``linstate`` ops that cannot read each other (same number of states
  on their longest path from the input) are scanned together as one block-diagonal recurrence — unless
  ``OPS["linstate"].forward`` has been replaced, in which case every linstate goes through it.
* **layout**: float values are kept feature-major in memory (a ``(B, T, d)`` view of a ``(d, B*T)``
  array) so that sparse products, slices and concatenations touch contiguous rows; forwards see ordinary
  ``(B, T, d)`` arrays and need not care.

Forward-function contract (for anyone registering an op)::

    forward(op, inputs, exact) -> array          # or
    forward(op, inputs, exact, *, ctx) -> array  # when it needs the scan backend or (B, T)

``inputs`` holds one ``(B, T, d_i)`` array per operand (float64, or object arrays of
:class:`fractions.Fraction` when ``exact``); the result must be ``(B, T, op.dim)`` in the same domain.
Forwards must not modify their inputs in place (results may be views of them).  A forward receives
``ctx`` (an :class:`EvalContext`: ``exact``, ``backend``, ``batch``, ``length``) when its signature has a
``ctx`` parameter or ``**kwargs``.  :func:`cached` memoises derived constants (dense copies, exact rows …)
per op across calls.

Numeric domains: in float mode exact constants are rounded to float64 when used; in exact mode floats
(constants and inputs) are taken at their exact binary value (``docs/exact_arithmetic.md``).
"""
from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from ..assumptions import InputBounds, check_sequence_length, recorded_t_max
from ..errors import ShapeError, VerifyError
from .core import OPS, Module, Op, as_module
from .matrix import Matrix, Vector, as_exact_scalar
from .sequences import as_sequences

__all__ = ["interpret", "EvalContext", "cached", "exact_affine", "float_affine", "csr_times", "feature_major",
           "from_feature_major", "BACKENDS"]

BACKENDS = ("auto", "kernel", "numpy")

_ZERO = Fraction(0)


@dataclass(frozen=True)
class EvalContext:
    """What a forward function may need besides its operands.

    ``backend`` is the resolved scan backend (``"kernel"`` or ``"numpy"``); ``batch`` and ``length`` are
    the ``B`` and ``T`` of the arrays being evaluated.
    """
    exact: bool
    backend: str
    batch: int
    length: int


# ------------------------------------------------------------------------------------------ caching

# op -> {key: (sources, derived)}.  Passes mutate ``op.attrs`` but attribute values (Matrix, Vector) are
# immutable, so a derived constant stays valid exactly as long as its source objects are the same ones.
_CACHE: "weakref.WeakKeyDictionary[Op, dict]" = weakref.WeakKeyDictionary()


def cached(op: Op, key: str, sources: tuple, make: Callable[[], object]):
    """``make()``, computed once per ``(op, key)`` while the objects in ``sources`` (immutable attribute
    values, compared by identity) stay the same."""
    entries = _CACHE.get(op)
    if entries is None:
        entries = {}
        _CACHE[op] = entries
    hit = entries.get(key)
    if hit is not None:
        old = hit[0]
        if len(old) == len(sources) and all(p is q for p, q in zip(old, sources)):
            return hit[1]
    value = make()
    entries[key] = (tuple(sources), value)
    return value


def _bias(vec: Vector, exact: bool) -> np.ndarray | None:
    """The vector's values, or None when it is zero (nothing to add)."""
    return None if vec.is_zero() else vec.array(exact)


def _exact_rows(mat: Matrix) -> tuple:
    """Rows as tuples of ``(col, Fraction)`` pairs."""
    return tuple(tuple(sorted(r.items())) for r in mat.exact_rows())


# ------------------------------------------------------------------------------------------ affine maps

try:  # the routine behind scipy's ``csr @ dense``; its operator dispatch costs several times the product
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - private scipy module moved
    _csr_matvecs = None


def feature_major(x: np.ndarray) -> np.ndarray:
    """``x`` (``(B, T, d)``) as a C-contiguous ``(d, B*T)`` array: a view when ``x`` already has the
    interpreter's preferred layout (see :func:`from_feature_major`), else a copy."""
    return np.ascontiguousarray(x.transpose(2, 0, 1)).reshape(x.shape[-1], -1)


def from_feature_major(values: np.ndarray, batch: int, length: int) -> np.ndarray:
    """The ``(B, T, d)`` view of a C-contiguous ``(d, B*T)`` array.

    Float values are stored feature-major (each coordinate's ``B*T`` samples contiguous): sparse products,
    slices and concatenations then work on whole contiguous rows, and elementwise numpy operations keep
    the layout of their operands."""
    return values.reshape(values.shape[0], batch, length).transpose(1, 2, 0)


def csr_times(csr, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``csr @ x`` for a C-contiguous float64 ``(d, n)`` block, written to ``out`` (C-contiguous ``(m, n)``,
    zeroed) when given.  Each entry is the sum of its row's products in index order, independent of the
    other columns: a token's result does not depend on the batch or the sequence it belongs to."""
    m, d = csr.shape
    n = x.shape[1]
    if _csr_matvecs is not None and csr.data.dtype == np.float64 and csr.indices.dtype == csr.indptr.dtype:
        if out is None:
            out = np.zeros((m, n))
        else:
            out[...] = 0.0
        try:
            _csr_matvecs(m, d, n, csr.indptr, csr.indices, csr.data, x.ravel(), out.ravel())
            return out
        except (TypeError, ValueError):  # pragma: no cover - private signature changed
            pass
    product = np.asarray(csr @ x)
    if out is None:
        return product
    out[...] = product
    return out


def float_affine(csr, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ A.T + bias`` over the last axis of a float ``(B, T, d)`` array, ``A`` a scipy CSR matrix;
    the result is feature-major."""
    batch, length, _ = x.shape
    out = csr_times(csr, feature_major(x))
    if bias is not None:
        out += bias[:, None]
    return from_feature_major(out, batch, length)


def exact_affine(rows: tuple, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Exact ``x @ A.T + bias`` over the last axis; ``rows[i]`` is row ``i`` of ``A`` as ``(col, Fraction)``
    pairs, ``x`` an object array of Fractions.  Vectorised over the leading axes."""
    lead = x.shape[:-1]
    out = np.empty(lead + (len(rows),), dtype=object)
    for i, row in enumerate(rows):
        acc = np.full(lead, bias[i] if bias is not None else _ZERO, dtype=object)
        for j, a in row:
            acc = acc + x[..., j] * a
        out[..., i] = acc
    return out


# ------------------------------------------------------------------------------------------ core forwards

def _forward_linear(op: Op, inputs: list, exact: bool) -> np.ndarray:
    (x,) = inputs
    a, b = op.attrs["A"], op.attrs["b"]
    if exact:
        rows, bias = cached(op, "exact", (a, b), lambda: (_exact_rows(a), _bias(b, True)))
        return exact_affine(rows, x, bias)
    csr, bias = cached(op, "float", (a, b), lambda: (a.scipy(), _bias(b, False)))
    return float_affine(csr, x, bias)


def _forward_relu(op: Op, inputs: list, exact: bool) -> np.ndarray:
    (x,) = inputs
    if exact:
        out = np.empty(x.shape, dtype=object)
        positive = (x > 0).astype(bool) if x.size else np.zeros(x.shape, dtype=bool)
        out[...] = _ZERO
        out[positive] = x[positive]
        return out
    return np.maximum(x, 0.0)


def _forward_concat(op: Op, inputs: list, exact: bool) -> np.ndarray:
    if len(inputs) == 1:
        return inputs[0]
    if exact:
        return np.concatenate(inputs, axis=-1)
    batch, length, _ = inputs[0].shape
    return from_feature_major(np.concatenate([x.transpose(2, 0, 1) for x in inputs], axis=0)
                              .reshape(op.dim, -1), batch, length)


def _forward_multi(op: Op, inputs: list, exact: bool) -> np.ndarray:
    (x,) = inputs
    half = x.shape[-1] // 2
    return x[..., :half] * x[..., half:]


def _forward_slice(op: Op, inputs: list, exact: bool) -> np.ndarray:
    (x,) = inputs
    return x[..., op.attrs["start"]:op.attrs["end"]]


def _prepare_linstate_float(op: Op) -> tuple:
    """``(B csr, bias or None, init, scan structure, A for the scan)``.  The scan path is chosen once per
    matrix, and the dense path gets a dense array so no sparse conversion repeats per call (only small
    matrices take that path; diagonal and CSR ones stay sparse, however wide the state)."""
    from ..runtime.scan import scan_structure

    a = op.attrs["A"].scipy()
    structure = scan_structure(a)
    return (op.attrs["B"].scipy(), _bias(op.attrs["bias"], False), op.attrs["init"].array(False), structure,
            a.toarray() if structure == "dense" else a)


def _forward_linstate(op: Op, inputs: list, exact: bool, *, ctx: EvalContext) -> np.ndarray:
    (x,) = inputs
    attrs = op.attrs
    sources = (attrs["A"], attrs["B"], attrs["bias"], attrs["init"])
    if exact:
        a_rows, b_rows, bias, init = cached(op, "exact", sources, lambda: (
            _exact_rows(attrs["A"]), _exact_rows(attrs["B"]), _bias(attrs["bias"], True),
            attrs["init"].array(True)))
        return _exact_scan(a_rows, exact_affine(b_rows, x, bias), init)
    b_csr, bias, init, structure, a = cached(op, "float", sources, lambda: _prepare_linstate_float(op))
    batch, length = x.shape[0], x.shape[1]
    if batch == 0 or length == 0:
        return np.zeros((batch, length, op.dim))
    from ..runtime.scan import linear_scan

    states = linear_scan(a, float_affine(b_csr, x, bias), init, backend=ctx.backend, structure=structure)
    if op.dim == 1:
        return states
    # one transposing copy here instead of one in every consumer
    return from_feature_major(feature_major(states), batch, length)


def _exact_scan(rows: tuple, u: np.ndarray, init: np.ndarray) -> np.ndarray:
    """``s_t = A s_{t-1} + u_t`` in exact arithmetic: a loop over time, vectorised over the batch."""
    batch, length, k = u.shape
    out = np.empty((batch, length, k), dtype=object)
    prev = np.empty((batch, k), dtype=object)
    prev[...] = init
    for t in range(length):
        cur = np.empty((batch, k), dtype=object)
        for i, row in enumerate(rows):
            acc = u[:, t, i]
            for j, a in row:
                acc = acc + prev[:, j] * a
            cur[:, i] = acc
        out[:, t] = cur
        prev = cur
    return out


# ------------------------------------------------------------------------------------------ fused scans

def _fusion_plan(group: list[Op]) -> list[tuple]:
    """How to scan several independent linstates at once: per structure class (diagonal ``A`` or not),
    ``(structure, block-diagonal A, concatenated init, members)`` with members ``(index, offset, k, B, bias)``."""
    import scipy.sparse as sp

    from ..runtime.scan import scan_structure

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
    from ..runtime.scan import linear_scan

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


OPS["linear"].forward = _forward_linear
OPS["relu"].forward = _forward_relu
OPS["concat"].forward = _forward_concat
OPS["multi"].forward = _forward_multi
OPS["slice"].forward = _forward_slice
OPS["linstate"].forward = _forward_linstate


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

_WANTS_CTX: dict = {}


def _wants_ctx(forward: Callable) -> bool:
    try:
        return _WANTS_CTX[forward]
    except (KeyError, TypeError):
        pass
    try:
        params = inspect.signature(forward).parameters.values()
        wants = any(p.name == "ctx" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):
        wants = False
    try:
        _WANTS_CTX[forward] = wants
    except TypeError:
        pass
    return wants


def _resolve_backend(backend: str, exact: bool) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"interpret: backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto" or exact:
        return backend
    from ..runtime.scan import kernel_available

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
    forward = op.opdef.forward
    if forward is None:
        raise VerifyError(f"{op.describe()}: op kind {op.kind!r} has no forward function registered "
                          "(import the module that defines it)")
    try:
        inputs = [values[id(o)] for o in op.operands]
    except KeyError:
        missing = next(o for o in op.operands if id(o) not in values)
        raise VerifyError(f"{op.describe()}: operand {missing.describe()} is not defined before its use "
                          "(ops must be in topological order)") from None
    out = forward(op, inputs, exact, ctx=ctx) if _wants_ctx(forward) else forward(op, inputs, exact)
    if not isinstance(out, np.ndarray) or out.shape != (ctx.batch, ctx.length, op.dim):
        raise RuntimeError(f"{op.describe()}: forward returned shape {np.shape(out)}, "
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
    # Core linstates are scanned together unless someone replaced their forward (e.g. to observe it).
    steps = _schedule(ops, fuse=not exact and OPS["linstate"].forward is _forward_linstate)
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
