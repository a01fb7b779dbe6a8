"""Parse the textual IR written by :mod:`lsrl.ir.printer` back into a :class:`~lsrl.ir.core.Module`.

The grammar (see docs/ir.md)::

    module    := 'lsrl.module' '@' NAME '(' signature ')' '->' DIM '{' op* return '}'
    signature := VALUE ':' DIM [ 'in' '[' number ',' number ']' | attrs ]
    op        := VALUE '=' KIND [ VALUE (',' VALUE)* ] [ attrs ] ':' dims '->' DIM
    dims      := '()' | DIM (',' DIM)*
    return    := 'return' VALUE ':' DIM
    attrs     := '{' NAME '=' value (',' NAME '=' value)* '}'
    value     := number | STRING | vector | matrix

The parser is generic over op kinds: attribute names and types come from ``OPS[kind].attrs``; each op is
checked with the op's own shape rule as soon as it is read, so an error points at the offending token
(or at the op's result name when the shape rule rejects the op).  Tokens are matched with compiled regular
expressions at the current offset; the bulk of a large module (sparse entries) goes through one regular
expression per entry.
"""
from __future__ import annotations

import bisect
import codecs
import difflib
import json
import re
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..assumptions import FLOAT64_MAX, MAX_DIMENSION
from ..errors import ParseError, VerifyError
from .core import OPS, Location, Module, Op
from .matrix import Matrix, Vector

__all__ = ["parse", "decode_source", "MAX_NUMBER_CHARS"]

#: the longest number literal (below Python's 4,300-digit limit on int conversion)
MAX_NUMBER_CHARS = 4000

_W = r"(?:\s|//[^\n]*)*+"  # whitespace and comments (possessive: never backtracks)
_NUMBER_BODY = (r"[-+]?(?>(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|inf|nan|\d+/\d+|\d+)"
                r"(?![A-Za-z0-9_.$]|/(?!/))")

_WS_RE = re.compile(_W, re.ASCII)
_NUMBER_RE = re.compile(_NUMBER_BODY, re.ASCII)
_INT_RE = re.compile(r"\d+(?![A-Za-z0-9_.$])", re.ASCII)
_DIM_INT_RE = re.compile(r"\d+", re.ASCII)  # inside `<2x3>` the `x` follows the digits directly
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]*", re.ASCII)
_KIND_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*", re.ASCII)
_VALUE_RE = re.compile(r"%([A-Za-z_][A-Za-z0-9_.$-]*|\d+)", re.ASCII)
_STRING_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"', re.ASCII)
_BAD_TOKEN_RE = re.compile(r"[-+]?[A-Za-z0-9_.$/]+", re.ASCII)
_SHOW_TOKEN_RE = re.compile(r"[A-Za-z0-9_.$%@/+-]+|\S", re.ASCII)

_NUM_ITEM_RE = re.compile(_W + "(" + _NUMBER_BODY + ")" + _W + r"([,\]])", re.ASCII)
_SPARSE_MATRIX_ENTRY_RE = re.compile(
    _W + r"\(" + _W + r"(\d+)" + _W + "," + _W + r"(\d+)" + _W + r"\)" + _W + ":" + _W
    + "(" + _NUMBER_BODY + ")" + _W + r"([,}])", re.ASCII)
_SPARSE_VECTOR_ENTRY_RE = re.compile(
    _W + r"(\d+)" + _W + ":" + _W + "(" + _NUMBER_BODY + ")" + _W + r"([,}])", re.ASCII)

_LITERAL_KEYWORDS = ("identity", "zeros", "diag", "sparse")


def _abbreviated(token: str) -> str:
    """A token short enough for a message (numbers may have thousands of digits)."""
    return token if len(token) <= 20 else token[:20] + "…"


def _is_exact_token(tok: str) -> bool:
    """Integer and rational tokens are exact; anything with '.', an exponent, inf or nan is a float."""
    return "/" in tok or tok.lstrip("+-").isdigit()


def parse(text: str | bytes, filename: str | None = None) -> Module:
    """Parse one module (``bytes`` are decoded as UTF-8); raises :class:`lsrl.errors.ParseError` with
    ``filename:line:col`` and a caret for any malformed text, and nothing else."""
    if isinstance(text, (bytes, bytearray)):
        text = decode_source(bytes(text), filename)
    if not isinstance(text, str):
        raise TypeError(f"lsrl.ir.parse expects IR text (str or bytes), got {type(text).__name__}")
    parser = _Parser(text, filename)
    try:
        return parser.module()
    except (ArithmeticError, MemoryError, RecursionError) as e:
        # the parser's limits (MAX_DIMENSION, MAX_NUMBER_CHARS, finite constants) keep numbers and dimensions
        # small; this reports whatever slips past them (a literal nested thousands of levels deep) at the token
        # being read, so that any text gives a ParseError
        parser.fail(f"cannot parse the text here: {type(e).__name__}: {e}", parser.pos)


def decode_source(data: bytes, filename: str | None = None) -> str:
    """``data`` decoded as UTF-8 (without the byte order mark some editors write first); a :class:`ParseError`
    pointing at the first byte that is not UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        good = data[:e.start].decode("utf-8")
        line = good.count("\n") + 1
        col = len(good) - (good.rfind("\n") + 1) + 1
        raise ParseError(f"the text is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})", filename,
                         line, col) from None


class _Parser:
    def __init__(self, text: str, filename: str | None):
        self.text = text
        self.filename = filename
        self.pos = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # ------------------------------------------------------------------ positions and errors
    def line_col(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, pos)
        return line, pos - self.line_starts[line - 1] + 1

    def location(self, pos: int) -> Location:
        line, col = self.line_col(pos)
        return Location(self.filename, line, col)

    def fail(self, message: str, pos: int):
        pos = min(max(pos, 0), len(self.text))
        line, col = self.line_col(pos)
        start = self.line_starts[line - 1]
        end = self.text.find("\n", start)
        source_line = self.text[start:end if end >= 0 else len(self.text)].rstrip("\r")
        raise ParseError(message, self.filename, line, col, source_line)

    def where(self, pos: int) -> str:
        line, col = self.line_col(pos)
        return f"{line}:{col}"

    def show(self, pos: int) -> str:
        if pos >= len(self.text):
            return "end of input"
        m = _SHOW_TOKEN_RE.match(self.text, pos)
        tok = m.group(0) if m else self.text[pos]
        if len(tok) > 40:
            tok = tok[:37] + "..."
        return repr(tok)

    # ------------------------------------------------------------------ tokens
    def skip(self) -> int:
        self.pos = _WS_RE.match(self.text, self.pos).end()
        return self.pos

    def at(self, s: str) -> bool:
        self.skip()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.at(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str, context: str = "") -> int:
        pos = self.skip()
        if not self.text.startswith(s, pos):
            self.fail(f"expected '{s}'{context}, found {self.show(pos)}", pos)
        self.pos = pos + len(s)
        return pos

    def ident(self, what: str, regex=_IDENT_RE) -> tuple[str, int]:
        pos = self.skip()
        m = regex.match(self.text, pos)
        if m is None:
            self.fail(f"expected {what}, found {self.show(pos)}", pos)
        self.pos = m.end()
        return m.group(0), pos

    def integer(self, what: str, regex=_INT_RE) -> tuple[int, int]:
        pos = self.skip()
        m = regex.match(self.text, pos)
        if m is None:
            self.fail(f"expected {what} (a non-negative integer), found {self.show(pos)}", pos)
        digits = m.group(0).lstrip("0")
        if len(digits) > len(str(MAX_DIMENSION)) or int(digits or 0) > MAX_DIMENSION:
            self.fail(f"{what} {_abbreviated(m.group(0))} is larger than the limit {MAX_DIMENSION} on dimensions "
                      "and indices", pos)
        self.pos = m.end()
        return int(m.group(0)), pos

    def number(self) -> tuple[str, int]:
        pos = self.skip()
        m = _NUMBER_RE.match(self.text, pos)
        if m is None:
            self.fail_number(pos)
        self.pos = m.end()
        self.check_number(m.group(0), pos)
        return m.group(0), pos

    def fail_number(self, pos: int):
        bad = _BAD_TOKEN_RE.match(self.text, pos)
        if bad is not None and re.match(r"[-+]?[0-9.]", bad.group(0)):
            self.fail(f"malformed number literal {bad.group(0)!r}", pos)
        self.fail(f"expected a number, found {self.show(pos)}", pos)

    def check_number(self, tok: str, pos: int) -> None:
        if len(tok) > MAX_NUMBER_CHARS:
            self.fail(f"number literal of {len(tok)} characters (at most {MAX_NUMBER_CHARS})", pos)
        if "/" in tok and not tok.split("/")[1].strip("0"):
            self.fail(f"malformed number literal {tok!r}: zero denominator", pos)

    def value_ref(self) -> tuple[str, int]:
        pos = self.skip()
        m = _VALUE_RE.match(self.text, pos)
        if m is None:
            self.fail(f"expected a value name like %x, found {self.show(pos)}", pos)
        self.pos = m.end()
        return m.group(1), pos

    def string(self) -> tuple[str, int]:
        pos = self.skip()
        m = _STRING_RE.match(self.text, pos)
        if m is None:
            self.fail("unterminated or malformed string literal", pos)
        try:
            value = json.loads(m.group(0))
        except ValueError as e:
            self.fail(f"malformed string literal: {e}", pos)
        self.pos = m.end()
        return value, pos

    # ------------------------------------------------------------------ scalars
    def exact_value(self, tok: str, pos: int) -> Fraction:
        if _is_exact_token(tok):
            value = Fraction(tok)
            if abs(value) > FLOAT64_MAX:  # every constant must also have a float64 value
                self.fail(f"{_abbreviated(tok)} is beyond the float64 range", pos)
            return value
        f = float(tok)
        if not np.isfinite(f):
            self.fail(f"{tok} in an exact literal (a literal with an integer or rational entry is exact, "
                      "and exact values are finite)", pos)
        return Fraction(f)

    def convert(self, toks: list[str], positions) -> tuple[list, bool]:
        """Values of a literal's tokens in its domain: exact when any token is an integer or rational."""
        exact = any(map(_is_exact_token, toks))
        if exact:
            return [self.exact_value(t, p) for t, p in zip(toks, positions)], True
        return [float(t) for t in toks], False

    # ------------------------------------------------------------------ literals
    def value(self) -> tuple[object, int, str]:
        """Any attribute value: ``(value, position, type name)``."""
        pos = self.skip()
        text = self.text
        c = text[pos:pos + 1]
        if c == "[":
            inner = _WS_RE.match(text, pos + 1).end()
            if text.startswith("[", inner):
                return self.dense_matrix(), pos, "matrix"
            return self.dense_vector(), pos, "vector"
        if c == '"':
            s, _ = self.string()
            return s, pos, "string"
        m = _IDENT_RE.match(text, pos)
        if m is not None and m.group(0) in _LITERAL_KEYWORDS:
            self.pos = m.end()
            return getattr(self, "literal_" + m.group(0))(pos)
        if m is not None and m.group(0) not in ("inf", "nan"):
            self.fail(f"expected a value (number, string, vector or matrix), found {self.show(pos)}", pos)
        tok, _ = self.number()
        if "/" in tok:
            return Fraction(tok), pos, "rational number"
        if _is_exact_token(tok):
            return int(tok), pos, "integer"
        return float(tok), pos, "float"

    def shape(self, keyword: str, allow_matrix: bool = True, allow_vector: bool = True):
        """``<n>`` or ``<mxn>`` with an optional ``, exact`` / ``, float``: ``(m, n or None, exact)``."""
        self.expect("<", f" after '{keyword}'")
        m, _ = self.integer("a dimension", _DIM_INT_RE)
        n = None
        npos = self.pos
        if self.text.startswith("x", self.pos):
            self.pos += 1
            npos = self.pos
            n, _ = self.integer("a column count", _DIM_INT_RE)
        if n is not None and not allow_matrix:
            self.fail(f"'{keyword}' takes one dimension, not a matrix shape", npos)
        if n is None and not allow_vector:
            self.fail(f"'{keyword}' needs a matrix shape like <3x4>", npos)
        exact = False
        if self.accept(","):
            domain, dpos = self.ident("'exact' or 'float'")
            if domain not in ("exact", "float"):
                self.fail(f"expected 'exact' or 'float', found {domain!r}", dpos)
            exact = domain == "exact"
        self.expect(">", f" to close '{keyword}<'")
        return m, n, exact

    def literal_identity(self, pos):
        n, _, exact = self.shape("identity", allow_matrix=False)
        return Matrix.identity(n, exact=exact), pos, "matrix"

    def literal_zeros(self, pos):
        m, n, exact = self.shape("zeros")
        if n is None:
            return Vector.zeros(m, exact=exact), pos, "vector"
        return Matrix.zeros(m, n, exact=exact), pos, "matrix"

    def literal_diag(self, pos):
        self.expect("<", " after 'diag'")
        vec, vpos, tname = self.value()
        if tname != "vector":
            self.fail(f"diag<...> takes a vector, got a {tname}", vpos)
        self.check_finite_value(vec, tname, vpos)
        self.expect(">", " to close 'diag<'")
        return Matrix.diag(vec.values.tolist(), exact=vec.exact), pos, "matrix"

    def number_list(self, close: str) -> tuple[list[str], list[int]]:
        """Numbers separated by commas up to ``close`` (a trailing comma is allowed); '[' already read."""
        toks: list[str] = []
        positions: list[int] = []
        text = self.text
        if self.accept(close):
            return toks, positions
        while True:
            m = _NUM_ITEM_RE.match(text, self.pos)
            if m is not None:
                tok = m.group(1)
                if "/" in tok or len(tok) > MAX_NUMBER_CHARS:
                    self.check_number(tok, m.start(1))
                toks.append(tok)
                positions.append(m.start(1))
                self.pos = m.end()
                if m.group(2) == close:
                    return toks, positions
                if self.accept(close):
                    return toks, positions
                continue
            tok, tpos = self.number()
            toks.append(tok)
            positions.append(tpos)
            if self.accept(","):
                if self.accept(close):
                    return toks, positions
                continue
            pos = self.skip()
            self.fail(f"expected ',' or '{close}', found {self.show(pos)}", pos)

    def dense_vector(self) -> Vector:
        self.expect("[")
        toks, positions = self.number_list("]")
        values, exact = self.convert(toks, positions)
        if exact:
            return Vector(values, exact=True)
        return Vector(np.array(values, dtype=np.float64))

    def dense_matrix(self) -> Matrix:
        self.expect("[")
        rows: list[list[str]] = []
        all_positions: list[int] = []
        width = None
        while True:
            row_pos = self.expect("[", " to start a matrix row")
            toks, positions = self.number_list("]")
            if width is None:
                width = len(toks)
            elif len(toks) != width:
                self.fail(f"ragged matrix: row {len(rows)} has {len(toks)} entries but row 0 has {width}",
                          row_pos)
            rows.append(toks)
            all_positions.extend(positions)
            if self.accept(","):
                if self.accept("]"):
                    break
                continue
            if self.accept("]"):
                break
            pos = self.skip()
            self.fail(f"expected ',' or ']' after a matrix row, found {self.show(pos)}", pos)
        flat = [t for r in rows for t in r]
        values, exact = self.convert(flat, all_positions)
        shape = (len(rows), width)
        if exact:
            return Matrix.from_exact_rows(shape, [{j: values[i * width + j] for j in range(width)}
                                                  for i in range(len(rows))])
        arr = np.array(values, dtype=np.float64)
        self.check_finite(arr, all_positions)
        return Matrix.from_scipy(arr.reshape(shape))

    def check_finite_value(self, value, tname: str, pos: int, allow_infinite: bool = False) -> None:
        """Constants are finite (as in the language and in saved models); only input bounds may be ±inf."""
        if tname == "float" and not np.isfinite(value):
            self.fail(f"{value} is not a finite number", pos)
        if tname == "vector" and not value.exact:
            arr = value.values
            bad = np.flatnonzero(np.isnan(arr) if allow_infinite else ~np.isfinite(arr))
            if bad.size:
                allowed = "bounds may be ±inf but not nan" if allow_infinite else "vector entries must be finite"
                self.fail(f"{allowed}: entry {int(bad[0])} is {arr[bad[0]]}", pos)

    def check_finite(self, arr: np.ndarray, positions) -> None:
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            self.fail("matrix entries must be finite", positions[int(bad[0])])

    def literal_sparse(self, pos):
        m, n, exact_marker = self.shape("sparse")
        self.expect("{", " to start the sparse entries")
        if n is None:
            return self.sparse_vector_entries(m, exact_marker), pos, "vector"
        return self.sparse_matrix_entries(m, n, exact_marker), pos, "matrix"

    def sparse_entries(self, fast_entry: re.Pattern, read_key, check_key) -> tuple[list, list, list]:
        """The entries of a sparse literal up to its '}': ``(keys, value tokens, value positions)``.

        ``fast_entry`` matches one whole well-formed entry (groups: the key's integers, the value, the closing
        ',' or '}'); where it does not match, ``read_key()`` reads the key token by token (up to and including
        its ':') so a malformed entry gets a precise error.  ``check_key(key, key_positions)`` validates each
        key's range as it is read; repeated keys are rejected here."""
        text = self.text
        keys: list[tuple] = []
        toks: list[str] = []
        tok_positions: list[int] = []
        seen: set[tuple] = set()
        n_key = fast_entry.groups - 2
        while True:
            entry = fast_entry.match(text, self.pos)
            if entry is not None:
                key = tuple(int(entry.group(g)) for g in range(1, n_key + 1))
                key_positions = tuple(entry.start(g) for g in range(1, n_key + 1))
                tok, tpos, closing = entry.group(n_key + 1), entry.start(n_key + 1), entry.group(n_key + 2)
                self.pos = entry.end()
                if "/" in tok or len(tok) > MAX_NUMBER_CHARS:
                    self.check_number(tok, tpos)
            else:
                if self.accept("}"):
                    break
                key, key_positions = read_key()
                tok, tpos = self.number()
                if self.accept(","):
                    closing = ","
                else:
                    self.expect("}", " or ',' after a sparse entry")
                    closing = "}"
            check_key(key, key_positions)
            if key in seen:
                shown = f"({key[0]}, {key[1]})" if len(key) == 2 else str(key[0])
                self.fail(f"duplicate sparse entry {shown}", key_positions[0])
            seen.add(key)
            keys.append(key)
            toks.append(tok)
            tok_positions.append(tpos)
            if closing == "}":
                break
        return keys, toks, tok_positions

    def sparse_matrix_entries(self, m: int, n: int, exact_marker: bool) -> Matrix:
        def read_key():
            self.expect("(", " to start a sparse entry '(row, col): value'")
            i, ipos = self.integer("a row index")
            self.expect(",", " between row and column index")
            j, jpos = self.integer("a column index")
            self.expect(")", " after the column index")
            self.expect(":", " after '(row, col)'")
            return (i, j), (ipos, jpos)

        def check_key(key, positions):
            if key[0] >= m:
                self.fail(f"row index {key[0]} out of range for a {m}x{n} sparse matrix", positions[0])
            if key[1] >= n:
                self.fail(f"column index {key[1]} out of range for a {m}x{n} sparse matrix", positions[1])

        keys, toks, tok_positions = self.sparse_entries(_SPARSE_MATRIX_ENTRY_RE, read_key, check_key)
        values, exact = self.convert(toks, tok_positions)
        if exact or (exact_marker and not toks):
            out: list[dict] = [dict() for _ in range(m)]
            for (i, j), v in zip(keys, values):
                out[i][j] = v
            return Matrix.from_exact_rows((m, n), out)
        data = np.array(values, dtype=np.float64)
        self.check_finite(data, tok_positions)
        index = np.array(keys, dtype=np.int64).reshape(-1, 2)
        return Matrix.from_scipy(sp.coo_array((data, (index[:, 0], index[:, 1])), shape=(m, n)))

    def sparse_vector_entries(self, n: int, exact_marker: bool) -> Vector:
        def read_key():
            i, ipos = self.integer("an index")
            self.expect(":", " after the index")
            return (i,), (ipos,)

        def check_key(key, positions):
            if key[0] >= n:
                self.fail(f"index {key[0]} out of range for a sparse vector of length {n}", positions[0])

        keys, toks, tok_positions = self.sparse_entries(_SPARSE_VECTOR_ENTRY_RE, read_key, check_key)
        values, exact = self.convert(toks, tok_positions)
        if exact or (exact_marker and not toks):
            full = [Fraction(0)] * n
            for (i,), v in zip(keys, values):
                full[i] = v
            return Vector(full, exact=True)
        full = np.zeros(n)
        full[np.array([i for (i,) in keys], dtype=np.int64)] = np.array(values, dtype=np.float64)
        return Vector(full)

    # ------------------------------------------------------------------ attributes
    def attr_dict(self, kind: str, skip: tuple = ()) -> dict:
        """``{name = value, ...}`` checked against ``OPS[kind].attrs``; '{' is next."""
        specs = OPS[kind].attrs
        attrs: dict = {}
        self.expect("{")
        if self.accept("}"):
            return attrs
        while True:
            name, npos = self.ident("an attribute name")
            if name not in specs or name in skip:
                allowed = [k for k in specs if k not in skip]
                hint = f" (expected one of: {', '.join(allowed)})" if allowed else " (it takes none)"
                if name in skip:
                    hint = f" ({name!r} is given by the signature)"
                self.fail(f"unknown attribute {name!r} for op '{kind}'{hint}", npos)
            if name in attrs:
                self.fail(f"attribute {name!r} given twice", npos)
            self.expect("=", f" after attribute name {name!r}")
            value, vpos, tname = self.value()
            want = specs[name].kind
            if not _attr_type_ok(want, tname):
                self.fail(f"attribute {name!r} of '{kind}' must be {_ARTICLE[want]}, got {_with_article(tname)}",
                          vpos)
            self.check_finite_value(value, tname, vpos,
                                    allow_infinite=kind == "input" and name in ("lower", "upper"))
            attrs[name] = value
            if self.accept(","):
                if self.accept("}"):
                    return attrs
                continue
            pos = self.skip()
            if self.accept("}"):
                return attrs
            self.fail(f"expected ',' or '}}' in the attributes of '{kind}', found {self.show(pos)}", pos)

    # ------------------------------------------------------------------ module structure
    def module(self) -> Module:
        kw, kpos = self.ident("'lsrl.module'")
        if kw != "lsrl.module":
            self.fail(f"expected 'lsrl.module', found {kw!r}", kpos)
        self.expect("@", " before the module name")
        if self.text.startswith('"', self.pos):
            name, _ = self.string()
        else:
            m = _IDENT_RE.match(self.text, self.pos)
            if m is None:
                self.fail(f"expected a module name after '@', found {self.show(self.pos)}", self.pos)
            name = m.group(0)
            self.pos = m.end()
        self.values: dict[str, tuple[Op, int]] = {}
        self.ops: list[Op] = []
        self.expect("(", " to open the module signature")
        if self.at(")"):
            self.fail("the module has no input: the signature must declare one, like (%x: 3)", self.pos)
        self.signature()
        if self.at(","):
            self.pos += 1
            self.fail("more than one input: a module has exactly one input", self.skip())
        self.expect(")", " to close the module signature")
        self.expect("->", " after the module signature")
        out_dim, out_dim_pos = self.integer("the output dimension")
        open_pos = self.expect("{", " to open the module body")
        output = None
        while True:
            pos = self.skip()
            if pos >= len(self.text):
                self.fail(f"unterminated module body: expected '}}' to close the block opened at "
                          f"{self.where(open_pos)}", pos)
            if self.text.startswith("}", pos):
                self.fail("missing 'return': the module body must end with 'return %value : dim'", pos)
            word = _IDENT_RE.match(self.text, pos)
            if word is not None and word.group(0) == "return":
                self.pos = word.end()
                output = self.return_op(out_dim, out_dim_pos)
                break
            if not self.text.startswith("%", pos):
                self.fail(f"expected an op ('%name = kind ...') or 'return', found {self.show(pos)}", pos)
            self.op()
        pos = self.skip()
        if pos >= len(self.text):
            self.fail(f"unterminated module body: expected '}}' to close the block opened at "
                      f"{self.where(open_pos)}", pos)
        if not self.text.startswith("}", pos):
            self.fail(f"expected '}}' after 'return' (return must be the last op), found {self.show(pos)}", pos)
        self.pos = pos + 1
        pos = self.skip()
        if pos < len(self.text):
            self.fail(f"unexpected text after the end of the module: {self.show(pos)}", pos)
        module = Module(self.ops, output, name)
        try:
            module.verify()
        except VerifyError as e:  # every op was checked while reading; kept as a safety net
            self.fail(str(e), kpos)
        return module

    def define(self, name: str, pos: int, op: Op) -> None:
        previous = self.values.get(name)
        if previous is not None:
            self.fail(f"redefinition of %{name} (first defined at {self.where(previous[1])})", pos)
        self.values[name] = (op, pos)

    def signature(self) -> Op:
        name, npos = self.value_ref()
        self.expect(":", f" after the input %{name}")
        dim, dim_pos = self.integer("the input dimension")
        attrs: dict = {"dim": dim}
        if self.at("{"):
            attrs.update(self.attr_dict("input", skip=("dim",)))
        else:
            word = _IDENT_RE.match(self.text, self.pos)
            if word is not None and word.group(0) == "in":
                self.pos = word.end()
                self.expect("[", " to open the input interval '[lower, upper]'")
                bounds = []
                for what in ("lower", "upper"):
                    tok, tpos = self.number()
                    if tok.lstrip("+-") == "nan":
                        self.fail(f"the {what} bound is nan", tpos)
                    if _is_exact_token(tok):
                        bounds.append(Vector([Fraction(tok)] * dim, exact=True))
                    else:
                        bounds.append(Vector(np.full(dim, float(tok))))
                    if what == "lower":
                        self.expect(",", " between the lower and upper bound")
                self.expect("]", " to close the input interval")
                attrs["lower"], attrs["upper"] = bounds
        return self.make_op("input", [], attrs, dim, name, npos, None)

    def make_op(self, kind: str, operands: list, attrs: dict, declared_dim: int, name: str, name_pos: int,
                dim_pos: int | None) -> Op:
        op_name = None if name.isdigit() else name
        try:
            op = Op(kind, operands, attrs, dim=declared_dim, name=op_name)
            inferred = op.infer_dim()
        except VerifyError as e:
            self.fail(str(e), name_pos)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            self.fail(f"{kind} %{name}: invalid op ({type(e).__name__}: {e})", name_pos)
        if inferred != declared_dim:
            self.fail(f"{kind} %{name}: the result dim is declared {declared_dim} but the op gives {inferred}",
                      dim_pos if dim_pos is not None else name_pos)
        op.loc = self.location(name_pos)
        self.define(name, name_pos, op)
        self.ops.append(op)
        return op

    def op(self) -> Op:
        name, name_pos = self.value_ref()
        if name in self.values:
            self.define(name, name_pos, None)  # reports the redefinition
        self.expect("=", f" after %{name}")
        kind, kind_pos = self.ident("an op kind", _KIND_RE)
        opdef = OPS.get(kind)
        if opdef is None:
            close = difflib.get_close_matches(kind, list(OPS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.fail(f"unknown op kind {kind!r}{hint}", kind_pos)
        if kind == "input":
            self.fail("more than one input: the module input is declared in the signature", kind_pos)
        operands: list[Op] = []
        if self.at("%"):
            while True:
                ref, ref_pos = self.value_ref()
                entry = self.values.get(ref)
                if entry is None:
                    self.fail(f"use of undefined value %{ref}", ref_pos)
                operands.append(entry[0])
                if not self.accept(","):
                    break
        if opdef.num_operands is None:
            if not operands:
                self.fail(f"op '{kind}' needs at least one operand", kind_pos)
        elif len(operands) != opdef.num_operands:
            self.fail(f"op '{kind}' takes {opdef.num_operands} operand(s), got {len(operands)}", kind_pos)
        attrs = self.attr_dict(kind) if self.at("{") else {}
        missing = [k for k, spec in opdef.attrs.items() if spec.required and k not in attrs]
        if missing:
            self.fail(f"op '{kind}' is missing required attribute(s): {', '.join(missing)}", kind_pos)
        self.expect(":", f" before the type of '{kind}' (like ': 3 -> 2')")
        dims: list[tuple[int, int]] = []
        if self.accept("("):
            self.expect(")", " (an empty operand list is written '()')")
        elif not self.at("->"):
            while True:
                dims.append(self.integer("an operand dimension"))
                if not self.accept(","):
                    break
        arrow_pos = self.expect("->", " before the result dimension")
        if len(dims) != len(operands):
            where = dims[len(operands)][1] if len(dims) > len(operands) else arrow_pos
            self.fail(f"the type lists {len(dims)} operand dim(s) but '{kind}' has {len(operands)} operand(s)",
                      where)
        for k, ((d, dpos), operand) in enumerate(zip(dims, operands)):
            if d != operand.dim:
                self.fail(f"operand #{k} of '{kind}' has dim {operand.dim}, but the type says {d}", dpos)
        result_dim, dim_pos = self.integer("the result dimension")
        return self.make_op(kind, operands, attrs, result_dim, name, name_pos, dim_pos)

    def return_op(self, out_dim: int, out_dim_pos: int) -> Op:
        ref, ref_pos = self.value_ref()
        entry = self.values.get(ref)
        if entry is None:
            self.fail(f"use of undefined value %{ref}", ref_pos)
        output = entry[0]
        self.expect(":", " after the returned value (like 'return %y : 2')")
        dim, dim_pos = self.integer("the returned dimension")
        if dim != output.dim:
            self.fail(f"return type says {dim} but %{ref} has dim {output.dim}", dim_pos)
        if out_dim != output.dim:
            self.fail(f"the module signature says '-> {out_dim}' but the returned %{ref} has dim {output.dim}",
                      out_dim_pos)
        return output


_ARTICLE = {"matrix": "a matrix", "vector": "a vector", "int": "an integer", "number": "a number",
            "str": "a string"}


def _with_article(tname: str) -> str:
    return ("an " if tname[0] in "aeiou" else "a ") + tname


def _attr_type_ok(want: str, tname: str) -> bool:
    if want == "matrix":
        return tname == "matrix"
    if want == "vector":
        return tname == "vector"
    if want == "int":
        return tname == "integer"
    if want == "number":
        return tname in ("integer", "rational number", "float")
    if want == "str":
        return tname == "string"
    return True
