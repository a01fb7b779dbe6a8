"""The LSRL language: primitives, operator sugar and ``ForEach`` programs.

Every constructor builds one SSA op of :mod:`lsrl.ir.core` immediately and returns a *variable* (an
instance of the constructor's class) that wraps it, so a program's graph *is* its IR.  All shape problems
are reported here, at construction, as :class:`lsrl.ShapeError` naming the op and the shapes.

Constants: numpy float arrays, nested lists of floats/ints and ``scipy.sparse`` matrices become float64
constants; entries that are not exactly float64 (``Fraction(1, 3)``, sympy rationals, integers above 2**53)
make the constant exact (see :mod:`lsrl.ir.matrix`).  A 1-D array given where a matrix is expected is read
as one row; a number given where a vector is expected fills the whole vector.
"""
from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .assumptions import FLOAT64_MAX, MAX_DIMENSION
from .errors import ParseError, ShapeError, VerifyError
from .inspection import dtype_name
from .ir.core import Module, Op, grid_problem
from .ir.matrix import Matrix, Vector, as_exact_scalar, is_exact_float

__all__ = ["Variable", "Input", "Linear", "LinState", "ReLU", "Concat", "Multiplicative", "Multi", "Slice",
           "ForEach", "Program"]


# ---------------------------------------------------------------------------- constants

def _is_number(value) -> bool:
    """A real number (Python, numpy, Fraction or sympy), not a bool-array or a variable."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype != object


def _in_float_range(value, what: str):
    """``value`` itself; a ValueError when an exact constant has no float64 value (every weight needs one)."""
    if isinstance(value, (int, Fraction)) and abs(value) > FLOAT64_MAX:
        shown = f"about 10^{len(str(abs(int(value)))) - 1}" if abs(value) >= 1 else str(value)
        raise ValueError(f"{what}: the constant {shown} is beyond the float64 range (±1.8e308)")
    return value


def _number(value, what: str):
    """``value`` as ``int`` / ``float`` / ``Fraction``: exact kinds stay exact, real kinds become float."""
    return _in_float_range(_number_of_any_kind(value, what), what)


def _number_of_any_kind(value, what: str):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, numbers.Rational) or (isinstance(getattr(value, "p", None), int)
                                               and isinstance(getattr(value, "q", None), int)):
        return as_exact_scalar(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{what}: expected a real number, got {type(value).__name__} {value!r}")


def exact_number(value, what: str = "value") -> Fraction:
    """The exact rational value of a number (floats at their binary value)."""
    return as_exact_scalar(_number(value, what))


def _simplest(value: Fraction, what: str = "a constant computed by the program (e.g. 1/c of x / c)"):
    """``int`` or ``float`` when that holds ``value`` exactly, else the Fraction itself."""
    _in_float_range(value, what)
    if value.denominator == 1 and abs(value.numerator) <= 2**53:
        return int(value.numerator)
    if is_exact_float(value):
        return float(value)
    return value


def to_matrix(value, what: str) -> Matrix:
    """A :class:`Matrix` from any accepted matrix form (1-D = one row, number = 1x1)."""
    if isinstance(value, Matrix):
        return value
    if isinstance(value, Variable):
        raise TypeError(f"{what}: expected a constant matrix, got the variable {value.describe()}")
    if sp.issparse(value):
        if value.ndim != 2:
            raise ShapeError(f"{what}: expected a 2-D matrix, got a sparse array of shape {value.shape}")
        try:
            return Matrix.from_scipy(value)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    if isinstance(value, np.ndarray) and value.dtype != object:
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{what}: expected a real matrix, got dtype {value.dtype}")
        if value.dtype.kind in "iu" and value.size and int(np.max(np.abs(value.astype(object)))) > 2**53:
            value = value.astype(object)  # integers that float64 cannot hold exactly: take the exact path
        else:
            arr = _as_2d(np.asarray(value, dtype=np.float64), what)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{what}: matrix has non-finite entries")
            return Matrix.from_scipy(arr)
    if _is_number(value):
        value = [[value]]
    try:
        arr = np.asarray(value, dtype=object)
    except ValueError as e:  # ragged nested lists
        raise ShapeError(f"{what}: not a rectangular matrix ({e})") from None
    arr = _as_2d(arr, what)
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in arr.ravel().tolist()):
        raise ShapeError(f"{what}: not a rectangular matrix (rows of different lengths)")
    flat = [_number(v, what) for v in arr.ravel().tolist()]
    if any(isinstance(v, float) and not np.isfinite(v) for v in flat):
        raise ValueError(f"{what}: matrix has non-finite entries")
    normalised = np.empty(arr.shape, dtype=object)
    normalised.ravel()[:] = flat
    return Matrix.from_dense(normalised, exact=None)


def _as_2d(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    if arr.ndim == 1:
        return arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ShapeError(f"{what}: expected a 2-D matrix, got shape {arr.shape}")
    return arr


def to_vector(value, length: int, what: str) -> Vector:
    """A :class:`Vector` of ``length`` entries from ``(n,)``, ``(n, 1)``, ``(1, n)`` or a number (filled)."""
    if isinstance(value, Vector):
        vec = value
    elif isinstance(value, Variable):
        raise TypeError(f"{what}: expected a constant vector, got the variable {value.describe()}")
    elif _is_number(value):
        n = _number(value, what)
        if isinstance(n, float) and not np.isfinite(n):
            raise ValueError(f"{what}: non-finite value {n!r}")
        vec = Vector([n] * length, exact=None) if length else Vector(np.zeros(0))
    else:
        if sp.issparse(value):
            value = value.toarray()
        try:
            arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        except ValueError as e:
            raise ShapeError(f"{what}: not a vector ({e})") from None
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim == 1 and arr.dtype == object and any(isinstance(v, (list, tuple, np.ndarray))
                                                         for v in arr.tolist()):
            raise ShapeError(f"{what}: not a vector of numbers (nested sequences of different lengths)")
        if arr.ndim != 1:
            raise ShapeError(f"{what}: expected a vector of length {length} (shape ({length},) or "
                             f"({length}, 1)), got shape {arr.shape}")
        if arr.dtype != object:
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{what}: expected a real vector, got dtype {arr.dtype}")
            arr = arr.astype(object) if arr.dtype.kind in "iu" else arr.astype(np.float64)
        items = [_number(v, what) for v in arr.tolist()]
        if any(isinstance(v, float) and not np.isfinite(v) for v in items):
            raise ValueError(f"{what}: vector has non-finite entries")
        vec = Vector(items, exact=None) if items else Vector(np.zeros(0))
    if len(vec) != length:
        raise ShapeError(f"{what}: has length {len(vec)}, expected {length}")
    return vec


def _grid_vector(value, dim: int) -> Vector:
    """An input's grid steps: a number or a length-``dim`` sequence, None entries (any value) as 0."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"Input: grid must be a number or a sequence of numbers, got {value!r}")
    if _is_number(value):
        items = [value] * dim
    else:
        arr = np.asarray(value, dtype=object)
        if arr.ndim != 1 or arr.shape[0] != dim:
            raise ShapeError(f"Input: grid has shape {arr.shape}, expected a number or length {dim}")
        items = arr.tolist()
    if any(isinstance(v, (bool, np.bool_)) for v in items):
        raise TypeError(f"Input: grid entries must be numbers or None, got {value!r}")
    return Vector([0.0 if v is None else _number(v, "Input: grid") for v in items], exact=None)


def _bound_vector(value, dim: int, lower: bool) -> Vector | None:
    """Input bounds: numbers or length-``dim`` sequences, ``None`` (or None entries) = unbounded."""
    if value is None:
        return None
    what = f"Input: {'lower' if lower else 'upper'}"
    if _is_number(value):
        items = [value] * dim
    else:
        arr = np.asarray(value, dtype=object)
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim != 1 or arr.shape[0] != dim:
            raise ShapeError(f"{what} has shape {arr.shape}, expected a number or length {dim}")
        items = arr.tolist()
    inf = -np.inf if lower else np.inf
    nums = [inf if v is None else _number(v, what) for v in items]
    if any(isinstance(v, float) and np.isnan(v) for v in nums):
        raise ValueError(f"{what} contains NaN")
    infinite = any(isinstance(v, float) and np.isinf(v) for v in nums)
    if not infinite:
        return Vector(nums, exact=None)
    # ±inf cannot be exact: round finite exact bounds outwards so the promise still holds in float64
    out = []
    for v in nums:
        f = float(v)
        if not isinstance(v, float):
            exact = as_exact_scalar(v)
            if lower and Fraction(f) > exact:
                f = float(np.nextafter(f, -np.inf))
            elif not lower and Fraction(f) < exact:
                f = float(np.nextafter(f, np.inf))
        out.append(f)
    return Vector(np.array(out, dtype=np.float64))


# ---------------------------------------------------------------------------- variables

def _check_name(name) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise TypeError(f"a variable name must be a non-empty string, got {name!r}")
    return name


class Variable:
    """A value of the program at every step; wraps the IR op that computes it.

    ``dim`` is its length, ``inputs`` the variables it reads, ``op`` the :class:`lsrl.ir.Op`.
    Operators (``+ - * / [ ]``) build new Linear/Concat/Slice variables (see :mod:`lsrl.lang` docs).
    """

    __slots__ = ("op", "inputs", "__weakref__")
    __array_ufunc__ = None  # make numpy defer to our operators instead of broadcasting elementwise
    kind = None  # the op kind a constructor of this class builds

    def __init__(self, *args, **kwargs):  # pragma: no cover - subclasses build their op
        raise TypeError("Variable is abstract: use Input, Linear, LinState, ReLU, Concat, Multi or Slice")

    @classmethod
    def _wrap(cls, op: Op, inputs: Sequence["Variable"]) -> "Variable":
        self = object.__new__(cls)
        self.op = op
        self.inputs = list(inputs)
        return self

    @classmethod
    def _build(cls, kind: str, inputs: Sequence["Variable"], attrs: dict, name: str | None) -> "Variable":
        try:
            op = Op(kind, [v.op for v in inputs], attrs, name=_check_name(name))
        except VerifyError as e:  # every shape is checked before; keep the contract if one slips through
            raise ShapeError(str(e)) from None
        return cls._wrap(op, inputs)

    # ------------------------------------------------------------------ description
    @property
    def dim(self) -> int:
        return self.op.dim

    @property
    def name(self) -> str | None:
        return self.op.name

    @name.setter
    def name(self, value) -> None:
        self.op.name = _check_name(value)

    def describe(self) -> str:
        text = f"{type(self).__name__}"
        if self.name:
            text += f" '{self.name}'"
        return f"{text} (dim {self.dim})"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def __iter__(self):
        raise TypeError(f"{self.describe()} is not iterable; index it with x[i] or x[i:j]")

    # ------------------------------------------------------------------ operator sugar
    def __add__(self, other):
        if isinstance(other, Variable):
            _same_dim("x + y", self, other)
            eye = Matrix.identity(self.dim)
            return Linear._build("linear", [Concat([self, other])],
                                 {"A": Matrix.hstack([eye, eye])}, None)
        c = _operand_number(other, "+")
        return Linear._build("linear", [self], {"A": Matrix.identity(self.dim),
                                                "b": to_vector(c, self.dim, "x + c")}, None)

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        if isinstance(other, Variable):
            _same_dim("x - y", self, other)
            eye = Matrix.identity(self.dim)
            return Linear._build("linear", [Concat([self, other])],
                                 {"A": Matrix.hstack([eye, -eye])}, None)
        c = _operand_number(other, "-")
        return Linear._build("linear", [self], {"A": Matrix.identity(self.dim),
                                                "b": to_vector(_negate(c), self.dim, "x - c")}, None)

    def __rsub__(self, other):
        c = _operand_number(other, "-")
        return Linear._build("linear", [self], {"A": -Matrix.identity(self.dim),
                                                "b": to_vector(c, self.dim, "c - x")}, None)

    def __mul__(self, other):
        if isinstance(other, Variable):
            raise TypeError(f"cannot multiply two variables ({self.describe()} * {other.describe()}) with '*': "
                            "the product of two values is Multi(Concat([x, y])) (elementwise x * y)")
        c = _operand_number(other, "*")
        return Linear._build("linear", [self], {"A": Matrix.identity(self.dim).scale(c)}, None)

    def __rmul__(self, other):
        return self.__mul__(other)

    def __truediv__(self, other):
        if isinstance(other, Variable):
            raise TypeError(f"cannot divide {self.describe()} by the variable {other.describe()}: "
                            "only division by a number is linear")
        c = exact_number(_operand_number(other, "/"), "x / c")
        if c == 0:
            raise ValueError(f"x / c: division of {self.describe()} by zero")
        return Linear._build("linear", [self], {"A": Matrix.identity(self.dim).scale(_simplest(1 / c))}, None)

    def __rtruediv__(self, other):
        raise TypeError(f"cannot divide by the variable {self.describe()}: c / x is not linear")

    def __neg__(self):
        return Linear._build("linear", [self], {"A": -Matrix.identity(self.dim)}, None)

    def __pos__(self):
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            if index.step is not None:
                raise ValueError(f"x[i:j:k]: slice steps are not supported (got step {index.step!r} on "
                                 f"{self.describe()}); build a Linear with a selection matrix instead")
            start = 0 if index.start is None else index.start
            end = self.dim if index.stop is None else index.stop
            return Slice(self, start, end)
        if isinstance(index, (numbers.Integral, np.integer)) and not isinstance(index, (bool, np.bool_)):
            i = int(index) + self.dim if index < 0 else int(index)
            if not 0 <= i < self.dim:
                raise ShapeError(f"x[{int(index)}]: index out of range for {self.describe()}")
            return Slice(self, i, i + 1)
        raise TypeError(f"variables are indexed by an int or a slice, got {type(index).__name__}")


def _negate(c):
    return -c


def _operand_number(value, symbol: str):
    if not _is_number(value):
        raise TypeError(f"unsupported operand for '{symbol}': {type(value).__name__}; a variable combines with "
                        "another variable of the same dim or with a number (no broadcasting of arrays; use "
                        "Linear for a constant vector)")
    return _number(value, f"'{symbol}' operand")


def _same_dim(expr: str, x: Variable, y: Variable) -> None:
    if x.dim != y.dim:
        raise ShapeError(f"{expr}: dims differ ({x.describe()} vs {y.describe()}); there is no broadcasting "
                         "(broadcast a scalar v with Linear(v, ones((d, 1))))")


def _require_variable(value, what: str) -> "Variable":
    if not isinstance(value, Variable):
        raise TypeError(f"{what}: expected a variable (Input, Linear, ...), got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------- primitives

class Input(Variable):
    """``Input(dim, lower=None, upper=None, name=None, integer=False, grid=None)``: the token ``x_t``; bounds
    promise its domain, ``integer=True`` that every feature is an integer (token ids, counts), ``grid`` (a step,
    or one per feature, 0 or None for a feature that takes any value) that a feature takes only the values
    ``lower + k·step`` up to ``upper`` (grid cells' corners and centres) — the error bound then proves that
    comparisons between such values saturate (docs/numerics.md, "Error bounds"); a model checks both when it
    runs."""

    __slots__ = ()
    kind = "input"

    def __init__(self, dim, lower=None, upper=None, name=None, integer=False, grid=None):
        if not isinstance(integer, (bool, np.bool_)):
            raise TypeError(f"Input: integer must be True or False, got {integer!r}")
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (numbers.Integral, np.integer)) \
                or not 1 <= dim <= MAX_DIMENSION:
            raise ShapeError(f"Input: dim must be an integer in [1, {MAX_DIMENSION}], got {dim!r}")
        dim = int(dim)
        lo, hi = _bound_vector(lower, dim, True), _bound_vector(upper, dim, False)
        lows = lo.values.tolist() if lo is not None else [-np.inf] * dim
        highs = hi.values.tolist() if hi is not None else [np.inf] * dim
        empty = [i for i, (a, b) in enumerate(zip(lows, highs)) if a > b or a == np.inf or b == -np.inf]
        if empty:
            raise ValueError(f"Input: empty domain at coordinate(s) {empty[:10]} (lower > upper, lower = +inf "
                             "or upper = -inf)")
        attrs = {"dim": dim}
        if lo is not None:
            attrs["lower"] = lo
        if hi is not None:
            attrs["upper"] = hi
        if integer:
            attrs["integer"] = 1
        if grid is not None:
            if integer:
                raise ValueError("Input: grid and integer=True together: declare integer features with a grid "
                                 "step of 1 instead")
            steps = _grid_vector(grid, dim)
            problem = grid_problem(lo, hi, steps)
            if problem is not None:
                raise ValueError(f"Input: {problem}")
            attrs["grid"] = steps
        built = self._build("input", [], attrs, name)
        self.op, self.inputs = built.op, []

    @property
    def lower(self) -> Vector:
        return self.op.attrs["lower"]

    @property
    def upper(self) -> Vector:
        return self.op.attrs["upper"]


class Linear(Variable):
    """``Linear(input, A, b=None, name=None)``: ``A v + b`` (``A`` of shape ``(m, dim(input))``)."""

    __slots__ = ()
    kind = "linear"

    def __init__(self, input, A, b=None, name=None):
        v = _require_variable(input, "Linear input")
        a = to_matrix(A, "Linear: A")
        if a.shape[1] != v.dim:
            raise ShapeError(f"Linear{_label(name)}: A is {a.shape[0]}x{a.shape[1]} but the input "
                             f"{v.describe()} has dim {v.dim} (a 1-D A is read as one row)")
        if a.shape[0] < 1:
            raise ShapeError(f"Linear{_label(name)}: A has no rows")
        attrs = {"A": a}
        if b is not None:
            attrs["b"] = to_vector(b, a.shape[0], f"Linear{_label(name)}: b (A is {a.shape[0]}x{a.shape[1]})")
        built = self._build("linear", [v], attrs, name)
        self.op, self.inputs = built.op, built.inputs

    @property
    def A(self) -> Matrix:
        return self.op.attrs["A"]

    @property
    def b(self) -> Vector:
        return self.op.attrs["b"]


class LinState(Variable):
    """``LinState(input, A, B, init_state=None, bias=None, name=None)``: ``s_t = A s_{t-1} + B v_t + bias``."""

    __slots__ = ()
    kind = "linstate"

    def __init__(self, input, A, B, init_state=None, bias=None, name=None):
        v = _require_variable(input, "LinState input")
        a = to_matrix(A, "LinState: A")
        bm = to_matrix(B, "LinState: B")
        k = a.shape[0]
        where = f"LinState{_label(name)}"
        if a.shape != (k, k) or k < 1:
            raise ShapeError(f"{where}: A must be square, got {a.shape[0]}x{a.shape[1]}")
        if bm.shape != (k, v.dim):
            raise ShapeError(f"{where}: B is {bm.shape[0]}x{bm.shape[1]}, expected {k}x{v.dim} "
                             f"(A is {k}x{k}, input {v.describe()})")
        attrs = {"A": a, "B": bm}
        if init_state is not None:
            attrs["init"] = to_vector(init_state, k, f"{where}: init_state (state dim {k})")
        if bias is not None:
            attrs["bias"] = to_vector(bias, k, f"{where}: bias (state dim {k})")
        built = self._build("linstate", [v], attrs, name)
        self.op, self.inputs = built.op, built.inputs

    @property
    def A(self) -> Matrix:
        return self.op.attrs["A"]

    @property
    def B(self) -> Matrix:
        return self.op.attrs["B"]

    @property
    def init_state(self) -> Vector:
        return self.op.attrs["init"]

    @property
    def bias(self) -> Vector:
        return self.op.attrs["bias"]


class ReLU(Variable):
    """``ReLU(input, name=None)``: elementwise ``max(0, v)``."""

    __slots__ = ()
    kind = "relu"

    def __init__(self, input, name=None):
        v = _require_variable(input, "ReLU input")
        built = self._build("relu", [v], {}, name)
        self.op, self.inputs = built.op, built.inputs


class Concat(Variable):
    """``Concat([v1, ..., vm], name=None)``: the stacked vector (a variable may appear several times)."""

    __slots__ = ()
    kind = "concat"

    def __init__(self, inputs, name=None):
        if isinstance(inputs, Variable):
            raise TypeError("Concat expects a list of variables, e.g. Concat([x, y])")
        items = list(inputs)
        if not items:
            raise ShapeError("Concat: needs at least one variable")
        for i, v in enumerate(items):
            _require_variable(v, f"Concat item {i}")
        built = self._build("concat", items, {}, name)
        self.op, self.inputs = built.op, built.inputs


class Multiplicative(Variable):
    """``Multiplicative(input, name=None)`` (alias ``Multi``): ``v[:h] * v[h:]`` for an input of dim ``2h``."""

    __slots__ = ()
    kind = "multi"

    def __init__(self, input, name=None):
        v = _require_variable(input, "Multi input")
        if v.dim % 2:
            raise ShapeError(f"Multi{_label(name)}: the input {v.describe()} has odd dim {v.dim}; Multi multiplies "
                             "the first half by the second half")
        built = self._build("multi", [v], {}, name)
        self.op, self.inputs = built.op, built.inputs


Multi = Multiplicative


class Slice(Variable):
    """``Slice(input, start, end, name=None)``: ``v[start:end]``; negative bounds count from the end."""

    __slots__ = ()
    kind = "slice"

    def __init__(self, input, start, end, name=None):
        v = _require_variable(input, "Slice input")
        for what, val in (("start", start), ("end", end)):
            if isinstance(val, (bool, np.bool_)) or not isinstance(val, (numbers.Integral, np.integer)):
                raise TypeError(f"Slice: {what} must be an int, got {val!r}")
        s, e = int(start), int(end)
        s2 = s + v.dim if s < 0 else s
        e2 = e + v.dim if e < 0 else e
        if not 0 <= s2 < e2 <= v.dim:
            raise ShapeError(f"Slice{_label(name)}: [{s}:{e}] is out of range or empty for {v.describe()} "
                             "(need -dim <= start < end <= dim after counting negatives from the end)")
        built = self._build("slice", [v], {"start": s2, "end": e2}, name)
        self.op, self.inputs = built.op, built.inputs

    @property
    def start(self) -> int:
        return self.op.attrs["start"]

    @property
    def end(self) -> int:
        return self.op.attrs["end"]


def _label(name) -> str:
    return f" '{name}'" if name else ""


class _OtherOp(Variable):
    """A variable around an op of a non-core kind (e.g. a target dialect op in loaded IR)."""

    __slots__ = ()


_CLASS_OF_KIND = {cls.kind: cls for cls in (Input, Linear, LinState, ReLU, Concat, Multiplicative, Slice)}


# ---------------------------------------------------------------------------- programs

class _Count(int):
    """An int that can also be called, so both ``p.parameter_count`` and ``p.parameter_count()`` work."""

    def __call__(self) -> int:
        return int(self)


class ForEach:
    """``ForEach(output)``: the program that runs the graph ending in ``output`` over each token.

    ``program(xs, exact=False)`` evaluates it on ``(T, d_in)`` or ``(B, T, d_in)`` (time-major; every call
    starts from the initial states); ``program.ir`` is the verified :class:`lsrl.ir.Module`.
    """

    def __init__(self, output, name: str = "main"):
        if isinstance(output, Module):
            self._init_from_module(output)
            return
        _require_variable(output, "ForEach")
        module = Module.from_output(output.op, name=name)  # the ops in topological order
        by_op = _variables_by_op(output)
        self._variables = [by_op[id(op)] for op in module.ops]
        inputs = [v for v in self._variables if v.op.kind == "input"]
        if len(inputs) != 1:
            if not inputs:
                raise ValueError("ForEach: the output does not depend on any Input")
            names = ", ".join(v.describe() for v in inputs)
            raise ValueError(f"ForEach: a program has exactly one Input, found {len(inputs)}: {names}")
        module.verify()
        self.ir = module
        self.input = inputs[0]
        self.output = output

    def _init_from_module(self, module: Module) -> None:
        module.verify()
        by_op: dict[int, Variable] = {}
        variables = []
        for op in module.ops:
            cls = _CLASS_OF_KIND.get(op.kind, _OtherOp)
            var = cls._wrap(op, [by_op[id(o)] for o in op.operands])
            by_op[id(op)] = var
            variables.append(var)
        self.ir = module
        self._variables = variables
        self.input = by_op[id(module.input)]
        self.output = by_op[id(module.output)]

    def simplify(self) -> "ForEach":
        """Kept for porting: rewrite the program, in place, into the path form the reference's ``simplify()``
        produced — the paper's 13 debranching cases in the reference order (``debranch{mode=reference}``,
        docs/compiler.md §4).  That mode always makes progress, so there is no step limit.  Returns ``self``."""
        from .opt import run

        self._init_from_module(run(self.ir, "debranch{mode=reference}"))
        return self

    @classmethod
    def from_module(cls, module: Module) -> "ForEach":
        """The program of an IR module (wraps its ops; they are shared, not copied)."""
        return cls(module)

    # ------------------------------------------------------------------ running
    def __call__(self, xs, exact: bool = False, **options):
        """Outputs ``(T, d_out)`` / ``(B, T, d_out)``.

        By default the interpreter (the oracle) runs the program; ``options`` go to
        :func:`lsrl.ir.interpret` (``backend=``, ``check_domain=``, ``return_values=``).  ``backend="kernel"``
        alone runs the whole program in one call of the C++ executor instead (float64).
        """
        if options.get("backend") == "kernel" and exact:  # as Model does: the kernel has no rationals
            raise ValueError("ForEach: exact=True evaluates in rationals with numpy; backend='kernel' cannot")
        if options == {"backend": "kernel"}:
            from .runtime.executor import run

            return run(self.ir, xs)[0]
        from .ir.interpreter import interpret

        return interpret(self.ir, xs, exact=exact, **options)

    def reset(self) -> None:
        """Kept for porting: every call already starts from the initial states."""

    # ------------------------------------------------------------------ structure
    @property
    def input_dim(self) -> int:
        return self.input.dim

    @property
    def output_dim(self) -> int:
        return self.output.dim

    def topological_sort(self) -> list[Variable]:
        """All variables, each after the variables it reads (the IR's op order)."""
        return list(self._variables)

    def graph(self) -> dict:
        """``{variable: [variables that read it]}`` (a variable read twice by one node appears twice)."""
        out: dict = {v: [] for v in self._variables}
        for v in self._variables:
            for u in v.inputs:
                out[u].append(v)
        return out

    def validate_graph(self) -> bool:
        """Re-check the program (one Input, acyclic, shapes); raises on a violation, else True."""
        self.ir.verify()
        if self.ir.output is not self.output.op or self.ir.input is not self.input.op:
            raise VerifyError("ForEach: the program's input/output no longer match its IR")
        return True

    def get_state_variables(self) -> list[Variable]:
        """The LinState variables in topological order."""
        return [v for v in self._variables if v.op.kind == "linstate"]

    @property
    def parameter_count(self) -> int:
        """The reference's dense count: rows x cols of every Linear/Slice A and b and LinState A, B, bias."""
        total = 0
        for v in self._variables:
            op = v.op
            if op.kind == "linear":
                total += op.attrs["A"].shape[0] * op.attrs["A"].shape[1] + len(op.attrs["b"])
            elif op.kind == "slice":
                rows = op.attrs["end"] - op.attrs["start"]
                total += rows * op.operands[0].dim + rows
            elif op.kind == "linstate":
                k = op.attrs["A"].shape[0]
                total += k * k + op.attrs["B"].shape[0] * op.attrs["B"].shape[1] + k
        return _Count(total)

    @property
    def nnz(self) -> int:
        """Stored non-zeros of the same parameters (a Slice stores one 1 per selected coordinate)."""
        total = 0
        for v in self._variables:
            op = v.op
            if op.kind == "linear":
                total += op.attrs["A"].nnz + op.attrs["b"].nnz
            elif op.kind == "slice":
                total += op.attrs["end"] - op.attrs["start"]
            elif op.kind == "linstate":
                total += op.attrs["A"].nnz + op.attrs["B"].nnz + op.attrs["bias"].nnz
        return _Count(total)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the program as IR text (``.lsrl``); :meth:`load` reads it back."""
        from .ir.printer import print_module

        with open(path, "w", encoding="utf-8") as f:
            f.write(print_module(self.ir))

    @classmethod
    def load(cls, path) -> "ForEach":
        """Read a program saved by :meth:`save` (plain IR text; no code is executed)."""
        from .ir.parser import decode_source, parse

        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:  # as lsrl-opt says it
            raise ParseError(f"cannot read {path}: {e.strerror}", filename=str(path)) from None
        return cls(parse(decode_source(data, str(path)), filename=str(path)))

    def __str__(self) -> str:
        return str(self.ir)

    def __repr__(self) -> str:
        return (f"<lsrl.ForEach @{self.ir.name} dtype={dtype_name(self.ir.ops)}: {self.input_dim} -> "
                f"{self.output_dim}, {len(self._variables)} ops, {len(self.get_state_variables())} LinState, "
                f"nnz {self.nnz}>")


Program = ForEach


def _variables_by_op(output: Variable) -> dict[int, Variable]:
    """``id(op) -> variable`` for every variable ``output`` depends on (the order is Module.from_output's)."""
    by_op = {id(output.op): output}
    stack = [output]
    while stack:
        for u in stack.pop().inputs:
            if id(u.op) not in by_op:
                by_op[id(u.op)] = u
                stack.append(u)
    return by_op
