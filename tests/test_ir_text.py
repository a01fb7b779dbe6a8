"""The textual IR: printer and parser round trips, literal forms, names, locations and parse errors."""
from __future__ import annotations

import math
import re
import time
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lsrl.errors import ParseError
from lsrl.ir.core import OPS, AttrSpec, Location, Module, Op, OpDef, register_op
from lsrl.ir.matrix import Matrix, Vector
from lsrl.ir.parser import parse
from lsrl.ir.printer import print_module
from strategies import profile_examples


# ------------------------------------------------------------------------------------------ helpers

def value_key(value):
    """An exact identity of an attribute value: domain, shape and the bits of every stored entry."""
    if isinstance(value, (Matrix, Vector)):
        return value.key()
    if isinstance(value, float):
        return ("float", np.float64(value).tobytes())
    return (type(value).__name__ if not isinstance(value, (int, Fraction)) else "exact", value)


def assert_same_module(a: Module, b: Module) -> None:
    """Same ops (kinds, dims, operands, attribute values bit for bit), same output and name.

    The input op is printed as the signature, so it is compared apart from the order of the other ops."""
    assert a.name == b.name
    order_a = [a.input] + [op for op in a.ops if op.kind != "input"]
    order_b = [b.input] + [op for op in b.ops if op.kind != "input"]
    assert len(order_a) == len(order_b)
    index_a = {id(op): i for i, op in enumerate(order_a)}
    index_b = {id(op): i for i, op in enumerate(order_b)}
    for x, y in zip(order_a, order_b):
        assert x.kind == y.kind
        assert x.dim == y.dim
        assert [index_a[id(o)] for o in x.operands] == [index_b[id(o)] for o in y.operands]
        assert set(x.attrs) == set(y.attrs), (x.kind, x.attrs.keys(), y.attrs.keys())
        for key in x.attrs:
            assert value_key(x.attrs[key]) == value_key(y.attrs[key]), (x.kind, key)
    assert index_a[id(a.output)] == index_b[id(b.output)]


def round_trip(module: Module) -> tuple[str, Module]:
    module.verify()
    text = print_module(module)
    parsed = parse(text, "round_trip.lsrl")
    assert print_module(parsed) == text
    assert_same_module(module, parsed)
    return text, parsed


def inp(dim, lower=None, upper=None, name="x"):
    attrs = {"dim": dim}
    if lower is not None:
        attrs["lower"] = lower
    if upper is not None:
        attrs["upper"] = upper
    return Op("input", [], attrs, name=name)


def linear(x, a, b=None, name=None):
    a = a if isinstance(a, Matrix) else Matrix.from_dense(a)
    attrs = {"A": a}
    if b is not None:
        attrs["b"] = b if isinstance(b, Vector) else Vector(b)
    return Op("linear", [x], attrs, name=name)


def single_linear_module(a: Matrix, b: Vector | None = None, lower=None, upper=None) -> Module:
    x = inp(a.shape[1], lower, upper)
    return Module.from_output(linear(x, a, b, name="y"), name="m")


# ------------------------------------------------------------------------------------------ the paper's Fig. 1

def more_ones_module() -> Module:
    x = inp(1, Vector([0.0]), Vector([1.0]))
    ones = Op("linstate", [x], {"A": Matrix.identity(1), "B": Matrix.from_dense([[1.0]])}, name="ones")
    neg = linear(x, [[-1.0]], [1.0])
    zeros = Op("linstate", [neg], {"A": Matrix.identity(1), "B": Matrix.from_dense([[1.0]])}, name="zeros")
    both = Op("concat", [ones, zeros])
    diff = linear(both, [[1.0, -1.0]])
    out = Op("relu", [diff], name="out")
    return Module.from_output(out, name="more_ones")


def test_more_ones_text_is_readable_and_round_trips():
    text, parsed = round_trip(more_ones_module())
    assert text.splitlines() == [
        "lsrl.module @more_ones(%x: 1 in [0.0, 1.0]) -> 1 {",
        "  %ones = linstate %x {A = identity<1>, B = identity<1>} : 1 -> 1",
        "  %0 = linear %x {A = [[-1.0]], b = [1.0]} : 1 -> 1",
        "  %zeros = linstate %0 {A = identity<1>, B = identity<1>} : 1 -> 1",
        "  %1 = concat %ones, %zeros : 1, 1 -> 2",
        "  %2 = linear %1 {A = [[1.0, -1.0]]} : 2 -> 1",
        "  %out = relu %2 : 1 -> 1",
        "  return %out : 1",
        "}",
    ]
    assert str(parsed) == text
    # names are kept, unnamed ops stay unnamed; every op knows where it was written
    assert [op.name for op in parsed.ops] == ["x", "ones", None, "zeros", None, None, "out"]
    assert parsed.ops[0].loc == Location("round_trip.lsrl", 1, 24)
    assert parsed.ops[1].loc == Location("round_trip.lsrl", 2, 3)


# ------------------------------------------------------------------------------------------ every core op, every form

def all_core_ops_module(exact: bool) -> Module:
    third = Fraction(1, 3)
    x = inp(3, Vector([0.0, -np.inf, -1.0]), Vector([1.0, np.inf, np.inf]))
    dense = Matrix.from_dense([[0.1, -2.5, 1e-300], [1e300, 0.0, -0.0], [5e-324, -1.7976931348623157e308, 3.0]])
    lin = linear(x, dense, Vector([0.1, -0.0, 1e16]), name="dense")
    exact_dense = Matrix.from_dense(np.array([[third, Fraction(-7, 1000), 0], [Fraction(2), 0, Fraction(10**30, 7)]],
                                             dtype=object))
    lin_exact = linear(lin, exact_dense, Vector([third, Fraction(0)], exact=True), name="exact_dense")
    r = Op("relu", [lin_exact], name="r")
    both = Op("concat", [r, lin, r], name="both")  # 2 + 3 + 2
    sl = Op("slice", [both], {"start": 1, "end": 5}, name="sl")
    m = Op("multi", [sl], name="prod")  # 2
    state = Op("linstate", [m], {
        "A": Matrix.diag([0.5, -0.25]) if not exact else Matrix.diag([third, Fraction(1, 2)]),
        "B": Matrix.identity(2, exact=exact),
        "bias": Vector.zeros(2, exact=exact),
        "init": Vector([1.0, -0.0]) if not exact else Vector([Fraction(1), third]),
    }, name="state")
    n = 40
    rows = list(range(0, n, 3))
    big_sparse = Matrix.from_entries((n, 2), rows, [i % 2 for i in rows], [0.1 * i - 1.0 for i in rows],
                                     exact=exact)
    wide = linear(state, big_sparse, name="wide")
    long_bias = np.zeros(n)
    long_bias[[3, 17]] = [2.0, -0.0]
    wide2 = linear(wide, Matrix.zeros(n, n, exact=exact), Vector(long_bias), name="wide")  # repeated name
    back = Op("slice", [wide2], {"start": 0, "end": 2})
    out = Op("concat", [back, Op("relu", [back])])
    dead = linear(x, Matrix.identity(3), name="unused")  # a dead op is kept
    module = Module.from_output(out, name="all_ops")
    module.ops.insert(1, dead)
    return module


@pytest.mark.parametrize("exact", [False, True])
def test_all_core_ops_round_trip(exact):
    text, parsed = round_trip(all_core_ops_module(exact))
    # bounds with infinities, per coordinate
    assert "(%x: 3 {lower = [0.0, -inf, -1.0], upper = [1.0, inf, inf]})" in text
    assert ("  %dense = linear %x {A = [\n"
            "      [0.1, -2.5, 1e-300],\n"
            "      [1e+300, 0.0, 0.0],\n"
            "      [5e-324, -1.7976931348623157e+308, 3.0]\n"
            "    ], b = [0.1, -0.0, 1e+16]} : 3 -> 3\n") in text
    assert "[2, 0, 1000000000000000000000000000000/7]\n    ], b = [1/3, 0]} : 3 -> 2" in text
    assert "%sl = slice %both {start = 1, end = 5} : 7 -> 4" in text
    assert "%prod = multi %sl : 4 -> 2" in text
    assert "%wide_1 = linear %wide {A = zeros<40x40" in text
    assert "b = sparse<40>{3: 2.0, 17: -0.0}" in text
    assert "sparse<40x2>{" in text
    if exact:
        assert "A = diag<[1/3, 1/2]>, B = identity<2, exact>, bias = zeros<2, exact>, init = [1, 1/3]" in text
        assert "zeros<40x40, exact>" in text
        assert next(op for op in parsed.ops if op.name == "state").attrs["bias"].exact
    else:
        # optional attributes equal to their defaults are left out
        assert "%state = linstate %prod {A = diag<[0.5, -0.25]>, B = identity<2>, init = [1.0, -0.0]} : 2 -> 2" \
            in text
    assert "%unused = linear %x {A = identity<3>} : 3 -> 3" in text
    # no float token in exact literals, no integer token in float literals
    wide = next(op for op in parsed.ops if op.name == "wide")
    assert wide.attrs["A"].exact == exact


def test_sparse_matrices_print_one_row_per_line():
    n = 3000
    rows = np.arange(n)
    a = Matrix.from_entries((n, n), np.r_[rows, rows[:-1]], np.r_[rows, rows[:-1] + 1],
                            np.r_[np.ones(n), -0.5 * np.ones(n - 1)])
    text, _ = round_trip(single_linear_module(a))
    lines = text.splitlines()
    assert lines[1] == "  %y = linear %x {A = sparse<3000x3000>{"
    assert lines[2] == "      (0, 0): 1.0, (0, 1): -0.5,"
    assert lines[3001] == "      (2999, 2999): 1.0"
    assert lines[3002] == "    }} : 3000 -> 3000"
    assert max(map(len, lines)) <= 100


def test_literal_forms_are_chosen_by_structure():
    def text_of(a):
        return print_module(single_linear_module(a)).splitlines()[1]

    assert "A = identity<4>" in text_of(Matrix.identity(4))
    assert "A = identity<4, exact>" in text_of(Matrix.identity(4, exact=True))
    assert "A = zeros<2x5>" in text_of(Matrix.zeros(2, 5))
    assert "A = diag<[2.0, 0.0, -1.0]>" in text_of(Matrix.diag([2.0, 0.0, -1.0]))
    assert "A = diag<sparse<50>{7: 1/3}>" in text_of(Matrix.diag([Fraction(1, 3) if i == 7 else 0 for i in range(50)]))
    assert "A = [[1.0, 2.0], [0.0, 0.0]]" in text_of(Matrix.from_dense([[1.0, 2.0], [0.0, 0.0]]))
    half = np.ones((16, 16))
    half[:, 8:] = 0
    assert "A = [\n" in print_module(single_linear_module(Matrix.from_dense(half)))
    assert "A = sparse<16x16>{(0, 3): 1.0}" in text_of(Matrix.from_entries((16, 16), [0], [3], [1.0]))
    for a in (Matrix.from_dense(half), Matrix.from_entries((16, 16), [0], [3], [1.0]),
              Matrix.from_dense(np.arange(300.0).reshape(10, 30))):
        round_trip(single_linear_module(a))
    # a vector turns sparse from 16 entries on (a quarter or fewer non-zero); 15 stay a list
    for n, sparse in ((15, False), (16, True)):
        b = np.zeros(n)
        b[[0, 5, 9, 14]] = [1.0, 2.0, 3.0, 4.0]
        x = Op("input", (), {"dim": 1}, name="x")
        text = print_module(Module.from_output(Op("linear", [x], {"A": Matrix.zeros(n, 1), "b": Vector(b)})))
        assert ("b = sparse<16>{0: 1.0, 5: 2.0, 9: 3.0, 14: 4.0}" in text) == sparse, text


def test_bounds_forms():
    uniform = inp(3, Vector(np.zeros(3)), Vector(np.full(3, 2.5)))
    text, _ = round_trip(Module.from_output(Op("relu", [uniform])))
    assert "(%x: 3 in [0.0, 2.5])" in text
    half_open = inp(2, Vector(np.zeros(2)))
    text, _ = round_trip(Module.from_output(Op("relu", [half_open])))
    assert "(%x: 2 in [0.0, inf])" in text
    exact = inp(2, Vector([Fraction(-1, 3)] * 2, exact=True), Vector([Fraction(1)] * 2, exact=True))
    text, parsed = round_trip(Module.from_output(Op("relu", [exact])))
    assert "(%x: 2 in [-1/3, 1])" in text and parsed.input.attrs["lower"].exact
    lower_only = inp(2, Vector([0.0, -1.0]))
    text, _ = round_trip(Module.from_output(Op("relu", [lower_only])))
    assert "(%x: 2 {lower = [0.0, -1.0]})" in text
    text, _ = round_trip(Module.from_output(Op("relu", [inp(2)])))
    assert "(%x: 2) -> 2 {" in text


def test_names_are_uniquified_and_sanitized():
    x = inp(1, name="a")
    a1 = Op("relu", [x], name="a")
    a2 = Op("relu", [a1], name="a_1")
    a3 = Op("relu", [a2], name="x[0] value")
    a4 = Op("relu", [a3], name="7")
    a5 = Op("relu", [a4], name="")
    out = Op("concat", [a5, a1], name="a")
    text, parsed = round_trip(Module.from_output(out, name="names test"))
    assert text.splitlines()[:8] == [
        'lsrl.module @"names test"(%a: 1) -> 2 {',
        "  %a_2 = relu %a : 1 -> 1",
        "  %a_1 = relu %a_2 : 1 -> 1",
        "  %x_0__value = relu %a_1 : 1 -> 1",
        "  %_7 = relu %x_0__value : 1 -> 1",
        "  %0 = relu %_7 : 1 -> 1",
        "  %a_3 = concat %0, %a_2 : 1, 1 -> 2",
        "  return %a_3 : 2",
    ]
    assert [op.name for op in parsed.ops] == ["a", "a_2", "a_1", "x_0__value", "_7", None, "a_3"]


def test_comments_and_free_layout_are_accepted():
    text = """// the Fig. 1 program, written by hand
lsrl.module @hand(%x: 1 in [0, 1]) -> 1 {   // exact bounds
  %s = linstate %x {
    A = [[1]],        // a counter
    B = [[1.0]],
  } : 1 -> 1
  %t = linear %s {A = sparse<1x1>{(0, 0): 0.5,}, b = sparse<1>{0: 2}} : 1 -> 1
  return %t : 1  // done
}
// trailing comment
"""
    m = parse(text, "hand.lsrl")
    s, t = m.ops[1], m.ops[2]
    assert s.attrs["A"].exact and not s.attrs["B"].exact
    assert t.attrs["b"].exact and t.attrs["b"].values.tolist() == [Fraction(2)]
    assert t.loc == Location("hand.lsrl", 7, 3)
    assert m.input.attrs["lower"].exact
    round_trip(m)


def test_mixed_literal_is_exact_with_floats_at_their_binary_value():
    m = parse("lsrl.module @m(%x: 2) -> 1 {\n  %y = linear %x {A = [[0.1, 1/3]]} : 2 -> 1\n  return %y : 1\n}\n")
    a = m.ops[1].attrs["A"]
    assert a.exact and a.exact_rows()[0] == {0: Fraction(0.1), 1: Fraction(1, 3)}
    text, _ = round_trip(m)
    assert "3602879701896397/36028797018963968" in text


# ------------------------------------------------------------------------------------------ other dialects

def _register_gadget() -> str:
    kind = "textir_test.gadget"
    if kind not in OPS:
        def infer(op):
            return op.attrs["W"].shape[0]

        def defaults(op):
            w = op.attrs.get("W")
            return {"v": Vector.zeros(w.shape[0])} if isinstance(w, Matrix) else {}

        register_op(OpDef(kind, "a test op with every attribute kind", infer,
                          attrs={"W": AttrSpec("matrix"), "v": AttrSpec("vector", False),
                                 "k": AttrSpec("int"), "alpha": AttrSpec("number"),
                                 "label": AttrSpec("str"), "mode": AttrSpec("str", False)},
                          num_operands=2, defaults=defaults))
    return kind


@pytest.mark.parametrize("alpha", [0.1, -3, Fraction(1, 3), 1e300])
def test_registered_dialect_ops_print_and_parse_generically(alpha):
    kind = _register_gadget()
    x = inp(2)
    r = Op("relu", [x])
    g = Op(kind, [x, r], {"W": Matrix.from_dense([[1.0, 2.0]]), "k": -4, "alpha": alpha,
                          "label": 'quote " backslash \\ newline \n ünï'}, name="g")
    text, parsed = round_trip(Module.from_output(g))
    assert f"%g = {kind} %x, %0 {{W = [[1.0, 2.0]], k = -4, alpha = " in text
    got = parsed.ops[-1].attrs["alpha"]
    assert type(got) is type(alpha) and value_key(got) == value_key(alpha)
    assert parsed.ops[-1].attrs["label"] == g.attrs["label"]
    assert "mode" not in parsed.ops[-1].attrs or parsed.ops[-1].attrs["mode"] is None


def test_dialect_attribute_errors():
    kind = _register_gadget()
    head = "lsrl.module @m(%x: 2) -> 1 {\n"
    ok = f'  %g = {kind} %x, %x {{W = [[1.0, 2.0]], k = 1, alpha = 1/2, label = "a"}} : 2, 2 -> 1\n'
    parse(head + ok + "  return %g : 1\n}\n")
    bad_int = ok.replace("k = 1", "k = 1.0")
    with pytest.raises(ParseError, match="attribute 'k' of 'textir_test.gadget' must be an integer, got a float"):
        parse(head + bad_int + "  return %g : 1\n}\n")
    bad_str = ok.replace('label = "a"', "label = 3")
    with pytest.raises(ParseError, match="must be a string, got an integer"):
        parse(head + bad_str + "  return %g : 1\n}\n")
    with pytest.raises(ParseError, match="inf is not a finite number"):  # constants are finite (issue 13)
        parse(head + ok.replace("alpha = 1/2", "alpha = inf") + "  return %g : 1\n}\n")


# ------------------------------------------------------------------------------------------ property tests

_finite_floats = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)
_rationals = st.fractions(max_denominator=10**6).filter(lambda f: abs(f.numerator) < 10**20)


@st.composite
def matrices(draw):
    m = draw(st.integers(1, 24))
    n = draw(st.integers(1, 24))
    exact = draw(st.booleans())
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.6, 1.0]))
    count = int(round(density * m * n))
    cells = draw(st.lists(st.tuples(st.integers(0, m - 1), st.integers(0, n - 1)), min_size=count,
                          max_size=count, unique=True))
    values = draw(st.lists(_rationals if exact else _finite_floats, min_size=len(cells), max_size=len(cells)))
    structure = draw(st.sampled_from(["random", "diag", "identity"]))
    if structure != "random" and m == n:
        if structure == "identity":
            return Matrix.identity(n, exact=exact)
        diag = draw(st.lists(_rationals if exact else _finite_floats, min_size=n, max_size=n))
        return Matrix.diag(diag, exact=exact)
    return Matrix.from_entries((m, n), [c[0] for c in cells], [c[1] for c in cells], values, exact=exact)


@st.composite
def vectors(draw, n, allow_infinity=False):
    """Constant vectors (finite, -0.0 included); ``allow_infinity`` for input bounds, the only ±inf ones."""
    exact = draw(st.booleans())
    fill = draw(st.sampled_from(["dense", "sparse", "zero"]))
    elements = _rationals if exact else st.floats(allow_nan=False, allow_infinity=allow_infinity)
    if fill == "dense":
        values = draw(st.lists(elements, min_size=n, max_size=n))
    else:
        values = [Fraction(0) if exact else 0.0] * n
        if fill == "sparse":
            for i in draw(st.lists(st.integers(0, n - 1), max_size=3, unique=True)):
                values[i] = draw(elements)
    return Vector(values, exact=exact)


@given(data=st.data())
def test_random_matrices_round_trip_bit_exactly(data):
    a = data.draw(matrices())
    b = data.draw(vectors(a.shape[0]))
    _, parsed = round_trip(single_linear_module(a, b))
    got = parsed.ops[-1]
    assert value_key(got.attrs["A"]) == value_key(a)
    assert value_key(got.attrs["b"]) == value_key(b)
    assert got.attrs["A"].exact == a.exact and got.attrs["b"].exact == b.exact


@given(data=st.data())
def test_random_bounds_round_trip(data):
    n = data.draw(st.integers(1, 20))
    first = data.draw(vectors(n, allow_infinity=True))
    second = data.draw(vectors(n, allow_infinity=True))
    pairs = [sorted(pair) for pair in zip(first.values.tolist(), second.values.tolist())]
    assume(all(a != math.inf and b != -math.inf for a, b in pairs))  # an empty domain is refused (tested above)
    exact = first.exact and second.exact
    lower, upper = (Vector([pair[k] for pair in pairs], exact=exact) for k in (0, 1))
    _, parsed = round_trip(Module.from_output(Op("relu", [inp(n, lower, upper)])))
    assert value_key(parsed.input.attrs["lower"]) == value_key(lower)
    assert value_key(parsed.input.attrs["upper"]) == value_key(upper)


def _strategies():
    return pytest.importorskip("strategies")


@settings(max_examples=profile_examples(40))
@given(data=st.data())
def test_random_programs_round_trip(data):
    strategies = _strategies()
    exact_friendly = data.draw(st.booleans())
    module = data.draw(strategies.programs(exact_friendly=exact_friendly))
    round_trip(module)


# ------------------------------------------------------------------------------------------ size

def test_large_sparse_module_parses_quickly():
    n = 5000
    a = Matrix.from_scipy(sp.random(n, n, density=100_000 / n / n, random_state=0, format="csr"))
    state = Matrix.from_scipy(sp.random(n, n, density=20_000 / n / n, random_state=1, format="csr"))
    x = inp(n)
    lin = linear(x, a, np.random.default_rng(0).standard_normal(n))
    s = Op("linstate", [lin], {"A": state, "B": Matrix.identity(n)})
    module = Module.from_output(s)
    start = time.perf_counter()
    text = print_module(module)
    printed = time.perf_counter()
    parsed = parse(text)
    parsed_at = time.perf_counter()
    assert print_module(parsed) == text
    assert_same_module(module, parsed)
    assert printed - start < 5 and parsed_at - printed < 10, (printed - start, parsed_at - printed)


# ------------------------------------------------------------------------------------------ errors

GOOD = """lsrl.module @m(%x: 2 in [0.0, 1.0]) -> 1 {
  %a = linear %x {A = [[1.0, 2.0]], b = [0.5]} : 2 -> 1
  %s = linstate %a {A = identity<1>, B = [[1.0]]} : 1 -> 1
  %c = concat %a, %s : 1, 1 -> 2
  %y = linear %c {A = sparse<1x2>{(0, 1): 2.0}} : 2 -> 1
  return %y : 1
}
"""


def test_good_text_parses():
    m = parse(GOOD, "good.lsrl")
    assert [op.kind for op in m.ops] == ["input", "linear", "linstate", "concat", "linear"]
    assert print_module(parse(print_module(m))) == print_module(m)


ERRORS = [
    # (what, old, new, message regex, line, col)
    ("unknown op kind", "%s = linstate", "%s = linstat", r"unknown op kind 'linstat' \(did you mean 'linstate'\?\)",
     3, 8),
    ("undefined value", "concat %a, %s", "concat %a, %t", r"use of undefined value %t", 4, 19),
    ("redefinition", "%c = concat", "%a = concat", r"redefinition of %a \(first defined at 2:3\)", 4, 3),
    ("unknown attribute", "B = [[1.0]]}", "B = [[1.0]], C = [1.0]}",
     r"unknown attribute 'C' for op 'linstate' \(expected one of: A, B, bias, init\)", 3, 51),
    ("missing attribute", "{A = identity<1>, B = [[1.0]]}", "{A = identity<1>}",
     r"op 'linstate' is missing required attribute\(s\): B", 3, 8),
    ("wrong attribute type", "b = [0.5]", "b = [[0.5]]", r"attribute 'b' of 'linear' must be a vector, got a matrix",
     2, 41),
    ("malformed number", "b = [0.5]", "b = [0.5.1]", r"malformed number literal '0\.5\.1'", 2, 42),
    ("zero denominator", "b = [0.5]", "b = [1/0]", r"zero denominator", 2, 42),
    ("ragged matrix", "A = [[1.0, 2.0]]", "A = [[1.0, 2.0], [3.0]]",
     r"ragged matrix: row 1 has 1 entries but row 0 has 2", 2, 36),
    ("sparse index", "(0, 1): 2.0", "(0, 2): 2.0", r"column index 2 out of range for a 1x2 sparse matrix", 5, 39),
    ("duplicate sparse entry", "(0, 1): 2.0}", "(0, 1): 2.0, (0, 1): 1.0}", r"duplicate sparse entry \(0, 1\)", 5, 49),
    ("shape rule", "A = [[1.0, 2.0]]", "A = [[1.0, 2.0, 3.0]]",
     r"linear %a: A is 1x3 but the operand has dim 2", 2, 3),
    ("operand dim", "concat %a, %s : 1, 1 -> 2", "concat %a, %s : 1, 3 -> 2",
     r"operand #1 of 'concat' has dim 1, but the type says 3", 4, 27),
    ("result dim", "concat %a, %s : 1, 1 -> 2", "concat %a, %s : 1, 1 -> 3",
     r"concat %c: the result dim is declared 3 but the op gives 2", 4, 32),
    ("operand count in type", "concat %a, %s : 1, 1 -> 2", "concat %a, %s : 1 -> 2",
     r"the type lists 1 operand dim\(s\) but 'concat' has 2 operand\(s\)", 4, 26),
    ("missing return", "  return %y : 1\n", "", r"missing 'return'", 6, 1),
    ("trailing garbage", "}\n", "}\nextra stuff\n", r"unexpected text after the end of the module: 'extra'", 8, 1),
    ("unterminated block", "}\n", "", r"unterminated module body: expected '\}' to close the block opened at 1:42",
     7, 1),
    ("more than one input (signature)", "(%x: 2 in [0.0, 1.0])", "(%x: 2 in [0.0, 1.0], %z: 1)",
     r"more than one input", 1, 37),
    ("more than one input (op)", "  %a = linear", "  %z = input {dim = 2} : () -> 2\n  %a = linear",
     r"more than one input: the module input is declared in the signature", 2, 8),
    ("inf in exact literal", "b = [0.5]", "b = [1, inf]", r"inf in an exact literal", 2, 45),
    # Input() refuses it (and a NaN bound, which the parser cannot write); the parser let it through, and every
    # run of the compiled model then failed
    ("empty input domain", "(%x: 2 in [0.0, 1.0])", "(%x: 2 in [1.0, 0.0])",
     r"input %x: empty domain at coordinate\(s\) \[0, 1\]", 1, 16),
    ("return dim", "return %y : 1", "return %y : 2", r"return type says 2 but %y has dim 1", 6, 15),
    ("module output dim", "-> 1 {", "-> 4 {", r"the module signature says '-> 4' but the returned %y has dim 1", 1, 40),
    ("op after return", "  return %y : 1\n", "  return %y : 1\n  %z = relu %y : 1 -> 1\n",
     r"expected '\}' after 'return'", 7, 3),
    ("operand count", "concat %a, %s", "multi %a, %s", r"op 'multi' takes 1 operand\(s\), got 2", 4, 8),
    ("integer attribute", "%y = linear %c {A = sparse<1x2>{(0, 1): 2.0}} : 2 -> 1",
     "%y = slice %c {start = 0, end = 1.0} : 2 -> 1", r"attribute 'end' of 'slice' must be an integer, got a float",
     5, 35),
]


@pytest.mark.parametrize("what,old,new,message,line,col", ERRORS, ids=[e[0] for e in ERRORS])
def test_parse_errors_point_at_the_offending_token(what, old, new, message, line, col):
    assert old in GOOD, what
    text = GOOD.replace(old, new, 1)
    with pytest.raises(ParseError) as info:
        parse(text, "bad.lsrl")
    err = info.value
    assert re.search(message, err.reason), (what, err.reason)
    assert (err.filename, err.line, err.col) == ("bad.lsrl", line, col), (what, str(err))
    # the message is "file:line:col: error: ...", then the source line and a caret under the column
    rendered = str(err).splitlines()
    assert rendered[0].startswith(f"bad.lsrl:{line}:{col}: error: ")
    source_lines = text.split("\n")
    assert rendered[1] == source_lines[line - 1]
    assert rendered[2] == " " * (col - 1) + "^"


def test_parse_error_without_filename_names_the_string():
    with pytest.raises(ParseError) as info:
        parse("lsrl.module @m(%x: 1) -> 1 {\n  return %q : 1\n}\n")
    assert str(info.value).startswith("<string>:2:10: error: use of undefined value %q")


def test_printer_survives_a_broken_module():
    x = inp(2)
    bad = Op("linear", [x], {"A": Matrix.identity(2)}, name="bad")
    bad.attrs["A"] = None  # a pass left the op without its matrix
    text = print_module(Module([x, bad], bad))
    assert "%bad = linear %x {b = zeros<2>} : 2 -> 2" in text
    with pytest.raises(ParseError, match="missing required attribute"):
        parse(text)
