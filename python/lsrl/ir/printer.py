"""The MLIR-like textual form of a :class:`~lsrl.ir.core.Module` (the inverse of :mod:`lsrl.ir.parser`).

::

    lsrl.module @more_ones(%x: 1 in [0.0, 1.0]) -> 1 {
      %ones = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1
      %0 = linear %x {A = [[-1.0]], b = [1.0]} : 1 -> 1
      ...
      return %out : 1
    }

The printer is generic: every op is ``%result = kind operands {attrs} : operand dims -> result dim`` with the
attributes in the order of the op's ``OpDef.attrs`` and optional attributes that equal their default left
out.  Only the ``input`` op is special (it is the module signature).  Values print in a form that the
parser reads back bit-exactly: float-domain numbers with ``repr(float)`` (always containing ``.``, ``e``,
``inf`` or ``nan``), exact-domain numbers as integers or ``p/q`` rationals; shape-only literals
(``identity<n>``, ``zeros<...>``) carry an explicit ``, exact`` marker in the exact domain.  See docs/ir.md.

The printer never raises on a malformed module (missing attributes, unknown kinds, several inputs): it
prints what is there so a broken module can still be inspected; the parser then reports the problem.
"""
from __future__ import annotations

import json
import numbers
from fractions import Fraction

import numpy as np

from .core import OPS, Module, Op
from .matrix import Matrix, Vector
from .names import IDENT_RE, Namer, print_order

__all__ = ["print_module", "format_value", "format_matrix", "format_vector", "format_number"]

# Literal layout: a literal longer than this on one line is broken into several lines.
LINE_WIDTH = 96
# A literal shorter than this never breaks, however far right it starts.
MIN_BREAK = 40
# Dense matrix form: small, or dense enough and not too large.
DENSE_MAX_SMALL = 64
DENSE_MAX_HALF_FULL = 256
# Sparse vector form: at least this long and at most a quarter of the entries stored.
SPARSE_VECTOR_MIN_LEN = 16

_INDENT = "  "
_CONTINUATION = "    "


# ---------------------------------------------------------------------------- numbers

def format_number(value) -> str:
    """One scalar: floats with ``repr`` (round-trips), exact values as ``3`` or ``1/3``."""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, numbers.Rational):
        return str(Fraction(value.numerator, value.denominator))
    return repr(float(value))


def _float_tokens(values) -> list[str]:
    return [repr(v) for v in values]


def _exact_tokens(values) -> list[str]:
    return [str(v) for v in values]


# ---------------------------------------------------------------------------- layout helpers

def _wrap(items: list[str], indent: str) -> list[str]:
    """Join ``items`` with ``", "`` into lines of at most ~LINE_WIDTH characters (each prefixed by indent)."""
    lines: list[str] = []
    current: list[str] = []
    width = len(indent)
    for item in items:
        if current and width + len(item) + 2 > LINE_WIDTH:
            lines.append(indent + ", ".join(current) + ",")
            current, width = [], len(indent)
        current.append(item)
        width += len(item) + 2
    if current:
        lines.append(indent + ", ".join(current))
    return lines


def _bracketed(open_: str, items: list[str], close: str, indent: str, col: int) -> str:
    """``open_ items close`` on one line when it fits (starting at column ``col``), else a wrapped block
    indented under ``indent``."""
    one_line = open_ + ", ".join(items) + close
    if col + len(one_line) <= LINE_WIDTH or len(one_line) < MIN_BREAK:
        return one_line
    inner = indent + _CONTINUATION
    return open_ + "\n" + "\n".join(_wrap(items, inner)) + "\n" + indent + _INDENT + close


# ---------------------------------------------------------------------------- vectors

def _vector_explicit_mask(vec: Vector) -> np.ndarray:
    """Entries a sparse form must list: non-zero ones, and ``-0.0`` (distinct from ``0.0`` bitwise)."""
    if vec.exact:
        return np.array([v != 0 for v in vec.values.tolist()], dtype=bool)
    vals = vec.values
    return (vals != 0) | np.signbit(vals)


def format_vector(vec: Vector, indent: str = _INDENT, col: int | None = None) -> str:
    """A vector literal; ``col`` is the column it starts at (for line breaking), ``indent`` the line's."""
    col = len(indent) if col is None else col
    n = len(vec)
    explicit = _vector_explicit_mask(vec)
    count = int(explicit.sum())
    if count == 0:
        return f"zeros<{n}, exact>" if vec.exact else f"zeros<{n}>"
    values = vec.values.tolist()
    tokens = _exact_tokens if vec.exact else _float_tokens
    if n >= SPARSE_VECTOR_MIN_LEN and 4 * count <= n:
        where = np.flatnonzero(explicit).tolist()
        items = [f"{i}: {t}" for i, t in zip(where, tokens([values[i] for i in where]))]
        return _bracketed(f"sparse<{n}>{{", items, "}", indent, col)
    return _bracketed("[", tokens(values), "]", indent, col)


# ---------------------------------------------------------------------------- matrices

def format_matrix(mat: Matrix, indent: str = _INDENT, col: int | None = None) -> str:
    """A matrix literal; ``col`` is the column it starts at (for line breaking), ``indent`` the line's."""
    col = len(indent) if col is None else col
    m, n = mat.shape
    suffix = ", exact" if mat.exact else ""
    nnz = mat.nnz
    if nnz == 0:
        return f"zeros<{m}x{n}{suffix}>"
    if m == n and mat.is_identity():
        return f"identity<{n}{suffix}>"
    if m == n and n >= 2 and mat.is_diagonal():
        diag = Vector(mat.diagonal(), exact=mat.exact)
        return f"diag<{format_vector(diag, indent, col + 5)}>"
    size = m * n
    if size <= DENSE_MAX_SMALL or (2 * nnz >= size and size <= DENSE_MAX_HALF_FULL):
        return _format_dense(mat, indent, col)
    return _format_sparse(mat, indent, col)


def _format_dense(mat: Matrix, indent: str, col: int) -> str:
    tokens = _exact_tokens if mat.exact else _float_tokens
    rows = [tokens(r) for r in mat.to_dense().tolist()]
    one_line = "[" + ", ".join("[" + ", ".join(r) + "]" for r in rows) + "]"
    if col + len(one_line) <= LINE_WIDTH or len(one_line) < MIN_BREAK:
        return one_line
    inner = indent + _CONTINUATION
    lines = []
    for i, r in enumerate(rows):
        sep = "," if i + 1 < len(rows) else ""
        row_lines = _wrap(r, inner + " ")
        row_lines[0] = inner + "[" + row_lines[0][len(inner) + 1:]
        row_lines[-1] += "]" + sep
        lines.extend(row_lines)
    return "[\n" + "\n".join(lines) + "\n" + indent + _INDENT + "]"


def _format_sparse(mat: Matrix, indent: str, col: int) -> str:
    m, n = mat.shape
    rows, cols, values = mat.coo()
    tokens = (_exact_tokens if mat.exact else _float_tokens)(values)
    items = [f"({i}, {j}): {t}" for i, j, t in zip(rows.tolist(), cols.tolist(), tokens)]
    head = f"sparse<{m}x{n}>{{"
    one_line = head + ", ".join(items) + "}"
    if col + len(one_line) <= LINE_WIDTH or len(one_line) < MIN_BREAK:
        return one_line
    # One matrix row per line (wrapped when a row alone is too long), so big matrices stay scannable.
    inner = indent + _CONTINUATION
    lines: list[str] = []
    bounds = np.flatnonzero(np.diff(rows)) + 1
    starts = [0] + bounds.tolist()
    ends = bounds.tolist() + [len(items)]
    for k, (lo, hi) in enumerate(zip(starts, ends)):
        row_lines = _wrap(items[lo:hi], inner)
        if k + 1 < len(starts):
            row_lines[-1] += ","
        lines.extend(row_lines)
    return head + "\n" + "\n".join(lines) + "\n" + indent + _INDENT + "}"


# ---------------------------------------------------------------------------- any attribute value

def format_value(value, indent: str = _INDENT, col: int | None = None) -> str:
    if isinstance(value, Matrix):
        return format_matrix(value, indent, col)
    if isinstance(value, Vector):
        return format_vector(value, indent, col)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (numbers.Number, np.number)):
        return format_number(value)
    return json.dumps(repr(value), ensure_ascii=False)


def _is_default(value, default) -> bool:
    if default is None:
        return False
    if isinstance(value, (Matrix, Vector)) or isinstance(default, (Matrix, Vector)):
        return type(value) is type(default) and value.key() == default.key()
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:
        return False


def _printed_attrs(op: Op, skip: tuple = ()) -> list[tuple[str, object]]:
    """``(name, value)`` pairs to print: spec order, then unknown keys; defaults and ``None`` left out."""
    opdef = OPS.get(op.kind)
    specs = opdef.attrs if opdef is not None else {}
    defaults = {}
    if opdef is not None and opdef.defaults is not None:
        try:
            defaults = opdef.defaults(op) or {}
        except Exception:  # a malformed op still prints, with every attribute spelled out
            defaults = {}
    out = []
    keys = [k for k in specs if k in op.attrs] + [k for k in op.attrs if k not in specs]
    for key in keys:
        if key in skip:
            continue
        value = op.attrs[key]
        if value is None:
            continue
        spec = specs.get(key)
        if spec is not None and not spec.required and _is_default(value, defaults.get(key)):
            continue
        out.append((key, value))
    return out


def _format_attr_dict(pairs, indent: str, col: int) -> str:
    """``{k = v, ...}`` starting at column ``col`` of a line indented by ``indent``."""
    if not pairs:
        return ""
    text = "{"
    for k, v in pairs:
        if len(text) > 1:
            text += ", "
        head = f"{k} = "
        start = col + len(text) if "\n" not in text else len(text) - text.rindex("\n") - 1
        text += head + format_value(v, indent, start + len(head))
    return text + "}"


# ---------------------------------------------------------------------------- names

def _dim(op: Op) -> str:
    return "?" if op.dim is None else str(op.dim)


def _module_name(name) -> str:
    name = "main" if name is None else str(name)
    return "@" + name if IDENT_RE.match(name) else "@" + json.dumps(name, ensure_ascii=False)


# ---------------------------------------------------------------------------- module

def _uniform_scalar(vec) -> object | None:
    """The single value of a vector whose entries are all bitwise equal (``None`` otherwise)."""
    if not isinstance(vec, Vector) or len(vec) == 0:
        return None
    if vec.exact:
        vals = vec.values.tolist()
        return vals[0] if all(v == vals[0] for v in vals) else None
    raw = vec.values.view(np.uint64)
    return float(vec.values[0]) if bool(np.all(raw == raw[0])) else None


def _format_signature(op: Op, namer: Namer, col: int) -> str:
    text = f"%{namer(op)}: {_dim(op)}"
    pairs = _printed_attrs(op, skip=("dim",))
    if not pairs:
        return text
    keys = {k for k, _ in pairs}
    if keys <= {"lower", "upper"}:
        lower, upper = op.attrs.get("lower"), op.attrs.get("upper")
        lo, hi = _uniform_scalar(lower), _uniform_scalar(upper)
        if lo is not None and hi is not None and len(lower) == len(upper) == op.dim:
            return f"{text} in [{format_number(lo)}, {format_number(hi)}]"
    return f"{text} {_format_attr_dict(pairs, _INDENT, col + len(text) + 1)}"


def _format_op(op: Op, namer: Namer) -> str:
    text = f"{_INDENT}%{namer(op)} = {op.kind}"
    if op.operands:
        text += " " + ", ".join("%" + namer(o) for o in op.operands)
    attrs = _format_attr_dict(_printed_attrs(op), _INDENT, len(text) + 1)
    if attrs:
        text += " " + attrs
    operand_dims = ", ".join(_dim(o) for o in op.operands) if op.operands else "()"
    return f"{text} : {operand_dims} -> {_dim(op)}"


def print_module(module: Module) -> str:
    """The textual form of ``module`` (ends with a newline)."""
    signature_input, ordered = print_order(module)
    namer = Namer(ordered)
    head = f"lsrl.module {_module_name(module.name)}("
    sig = _format_signature(signature_input, namer, len(head)) if signature_input is not None else ""
    output = module.output
    lines = [f"{head}{sig}) -> {_dim(output) if output is not None else '?'} {{"]
    for op in ordered[1 if signature_input is not None else 0:]:
        lines.append(_format_op(op, namer))
    if output is not None:
        lines.append(f"{_INDENT}return %{namer(output)} : {_dim(output)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
