"""The language front end: constructors, shape errors, operator sugar, ForEach programs."""
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

import lsrl
from lsrl import (Concat, ForEach, Input, Linear, LinState, Multi, Multiplicative, ReLU, ShapeError, Slice,
                  f_larger, f_not)
from lsrl.ir import Module
from lsrl.runtime import kernel_available


def run(output, xs, exact=False):
    return ForEach(output)(np.asarray(xs, dtype=object if exact else None), exact=exact)


def frac(a, b=1):
    return Fraction(a, b)


# ---------------------------------------------------------------------------- exports

def test_all_names_exported():
    for name in lsrl.lang.__all__:
        assert getattr(lsrl, name) is getattr(lsrl.lang, name)
    assert Multi is Multiplicative
    assert lsrl.Program is ForEach


# ---------------------------------------------------------------------------- Input

def test_input_basics_and_bounds():
    x = Input(3, name="tok")
    assert x.dim == 3 and x.name == "tok" and x.op.kind == "input"
    assert np.all(np.isinf(x.lower.values)) and np.all(x.upper.values == np.inf)
    y = Input(2, lower=0, upper=[1, 9])
    assert list(y.lower.values) == [0, 0] and list(y.upper.values) == [1, 9]
    z = Input(2, lower=[None, -1])
    assert z.lower.values[0] == -np.inf and z.lower.values[1] == -1
    e = Input(1, lower=Fraction(1, 3), upper=Fraction(2, 3))
    assert e.lower.exact and e.lower.values[0] == Fraction(1, 3)


def test_input_rounds_exact_bounds_outwards_next_to_infinity():
    v = Input(2, lower=[Fraction(1, 3), None], upper=[Fraction(1, 3), None])
    assert Fraction(float(v.lower.values[0])) <= Fraction(1, 3) <= Fraction(float(v.upper.values[0]))


@pytest.mark.parametrize("dim", [0, -1, 1.5, "3", True])
def test_input_bad_dim(dim):
    with pytest.raises(ShapeError, match="Input"):
        Input(dim)


def test_input_bad_bounds():
    with pytest.raises(ShapeError, match="lower"):
        Input(2, lower=[0, 0, 0])
    with pytest.raises(ValueError, match="lower > upper"):
        Input(2, lower=1, upper=0)


# ---------------------------------------------------------------------------- Linear

@pytest.mark.parametrize("A", [
    np.array([[1.0, 2.0], [3.0, 4.0]]),
    [[1, 2], [3, 4]],
    sp.csr_matrix(np.array([[1.0, 2.0], [3.0, 4.0]])),
    sp.coo_array(np.array([[1.0, 2.0], [3.0, 4.0]])),
    np.array([[1, 2], [3, 4]], dtype=np.int64),
])
def test_linear_matrix_forms(A):
    x = Input(2)
    y = Linear(x, A, [1, -1])
    assert y.dim == 2 and not y.A.exact
    np.testing.assert_array_equal(y.A.to_dense(), [[1, 2], [3, 4]])
    out = run(y, [[1.0, 1.0], [0.0, 2.0]])
    np.testing.assert_array_equal(out, [[4, 6], [5, 7]])


def test_linear_number_is_1x1_and_row_vector_is_one_row():
    x = Input(1)
    assert Linear(x, 3).A.shape == (1, 1)
    z = Input(3)
    y = Linear(z, [1, 1, 0])
    assert y.A.shape == (1, 3) and y.dim == 1


def test_linear_bias_forms():
    x = Input(2)
    for b in ([1, 2], np.array([1.0, 2.0]), np.array([[1.0], [2.0]]), [[1], [2]]):
        np.testing.assert_array_equal(Linear(x, np.eye(2), b).b.values, [1, 2])
    assert list(Linear(x, np.eye(2), 5).b.values) == [5, 5]  # a number fills the vector
    assert Linear(x, np.eye(2)).b.is_zero()


def test_linear_exact_constants():
    x = Input(2)
    y = Linear(x, [[Fraction(1, 3), 0], [0, 1]], [Fraction(1, 10), 0])
    assert y.A.exact and y.b.exact
    assert y.A.to_dense()[0, 0] == Fraction(1, 3)
    # user floats stay float (their binary value), even 0.1
    f = Linear(x, [[0.1, 0.0], [0.0, 1.0]])
    assert not f.A.exact
    # a Fraction that is exactly a float stays in the float domain
    assert not Linear(x, [[Fraction(1, 2), 0], [0, 1]]).A.exact
    big = Linear(x, [[2**60 + 1, 0], [0, 1]])
    assert big.A.exact and big.A.to_dense()[0, 0] == 2**60 + 1


def test_linear_sympy_rationals():
    sympy = pytest.importorskip("sympy")
    x = Input(1)
    y = Linear(x, [[sympy.Rational(1, 3)]], [sympy.Integer(2)])
    assert y.A.exact and y.A.to_dense()[0, 0] == Fraction(1, 3)
    out = run(y, [[Fraction(3)]], exact=True)
    assert out[0, 0] == 3
    with pytest.raises(TypeError):
        Linear(x, [[sympy.pi]])
    assert Linear(x, [[sympy.Float(0.5)]]).A.to_dense()[0, 0] == 0.5


def test_linear_shape_errors_name_the_op_and_shapes():
    x = Input(3, name="x")
    with pytest.raises(ShapeError, match=r"Linear.*2x2.*dim 3"):
        Linear(x, np.eye(2))
    with pytest.raises(ShapeError, match=r"Linear 'foo'.*b.*length 3, expected 2"):
        Linear(x, np.ones((2, 3)), [1, 2, 3], name="foo")
    with pytest.raises(ShapeError, match="2-D"):
        Linear(x, np.ones((1, 1, 3)))
    with pytest.raises(ShapeError):
        Linear(x, [[1, 2, 3], [1, 2]])
    with pytest.raises(TypeError):
        Linear(np.ones(3), np.eye(3))
    with pytest.raises(ValueError, match="non-finite"):
        Linear(x, [[np.nan, 0, 0]])


# ---------------------------------------------------------------------------- LinState

def test_linstate_counter_and_defaults():
    x = Input(1)
    one = lsrl.f_constant(x, 1)
    g = LinState(one, [[1]], [[1]], init_state=[-1])
    assert g.bias.is_zero() and list(g.init_state.values) == [-1]
    np.testing.assert_array_equal(run(g, np.zeros((5, 1))).ravel(), [0, 1, 2, 3, 4])
    s = LinState(x, np.eye(1), np.eye(1))  # accumulator, init 0
    np.testing.assert_array_equal(run(s, [[1], [2], [3]]).ravel(), [1, 3, 6])
    acc = LinState(x, [[1]], [[1]], init_state=0, bias=[10])
    np.testing.assert_array_equal(run(acc, [[1], [2]]).ravel(), [11, 23])


def test_linstate_output_includes_current_input():
    x = Input(1)
    s = LinState(x, [[0.5]], [[1]], init_state=[8])
    np.testing.assert_array_equal(run(s, [[1], [0]]).ravel(), [5, 2.5])


def test_linstate_shape_errors():
    x = Input(2, name="x")
    with pytest.raises(ShapeError, match="LinState.*square.*2x3"):
        LinState(x, np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ShapeError, match=r"LinState.*B is 2x3, expected 2x2"):
        LinState(x, np.eye(2), np.ones((2, 3)))
    with pytest.raises(ShapeError, match="init_state.*length 3, expected 2"):
        LinState(x, np.eye(2), np.eye(2), init_state=[0, 0, 0])
    with pytest.raises(ShapeError, match="bias.*length 1, expected 2"):
        LinState(x, np.eye(2), np.eye(2), bias=[[0]])


# ---------------------------------------------------------------------------- ReLU / Concat / Multi / Slice

def test_relu_concat_multi():
    x = Input(2)
    r = ReLU(x - 1)
    c = Concat([x, r, x])
    assert c.dim == 6 and c.inputs == [x, r, x]
    m = Multi(Concat([x, x]))
    assert m.dim == 2
    out = run(Concat([r, m]), [[3.0, -2.0]])
    np.testing.assert_array_equal(out, [[2, 0, 9, 4]])


def test_concat_and_multi_errors():
    x = Input(3)
    with pytest.raises(ShapeError, match="Concat"):
        Concat([])
    with pytest.raises(TypeError, match="list"):
        Concat(x)
    with pytest.raises(TypeError):
        Concat([x, np.ones(3)])
    with pytest.raises(ShapeError, match=r"Multi.*odd dim 3"):
        Multiplicative(x)


def test_slices_and_negative_indices():
    x = Input(5, name="x")
    assert (x[1:3].start, x[1:3].end) == (1, 3)
    s = x[-2:]
    assert isinstance(s, Slice) and (s.start, s.end) == (3, 5)
    assert (x[-1].start, x[-1].end) == (4, 5)
    assert (x[:-1].start, x[:-1].end) == (0, 4)
    assert (x[:].start, x[:].end) == (0, 5)
    assert (x[np.int64(2)].start, Slice(x, -3, -1).end) == (2, 4)
    out = run(Concat([x[-2:], x[0], x[1:3]]), [[0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(out, [[3, 4, 0, 1, 2]])


@pytest.mark.parametrize("key", [5, -6, slice(3, 2), slice(0, 6), slice(2, 2), slice(-7, 2)])
def test_slice_out_of_range(key):
    x = Input(5, name="x")
    with pytest.raises(ShapeError, match=r"x\[|Slice"):
        x[key]


def test_slice_step_and_bad_index():
    x = Input(4)
    with pytest.raises(ValueError, match="step"):
        x[0:4:2]
    with pytest.raises(TypeError):
        x[1.0]
    with pytest.raises(TypeError):
        Slice(x, 0, 2.0)
    with pytest.raises(TypeError, match="iterable"):
        list(x)


# ---------------------------------------------------------------------------- operators

def test_variable_arithmetic_values():
    x = Input(2)
    y = Linear(x, [[0, 1], [1, 0]])  # swap
    exprs = [x + y, x - y, x + 1.5, 1.5 + x, x - 2, 3 - x, 2 * x, x * 2, x / 4, -x, +x]
    xs = [[1.0, 10.0], [-3.0, 0.5]]
    expected = [[11, -9, 2.5, 2.5, -1, 2, 2, 2, 0.25, -1, 1], [-2.5, -3.5, -1.5, -1.5, -5, 6, -6, -6, -0.75, 3, -3]]
    outs = [run(e, xs)[:, 0] for e in exprs]
    np.testing.assert_allclose(np.array(outs).T, expected)
    assert (+x) is x


def test_operator_constants_are_exact():
    x = Input(1)
    third = x / 3
    assert third.A.exact and third.A.to_dense()[0, 0] == Fraction(1, 3)
    assert not (x / 4).A.exact
    out = run(third * 3, [[Fraction(1)], [Fraction(7)]], exact=True)
    assert list(out[:, 0]) == [1, 7]
    shifted = x - Fraction(1, 10)
    assert shifted.b.exact and shifted.b.values[0] == Fraction(-1, 10)
    half = x - 0.5
    assert not half.b.exact and half.b.values[0] == -0.5
    assert (x * Fraction(2, 3)).A.exact
    # a float operand is taken at its exact binary value
    assert (x + 0.1).b.to_exact().values[0] == Fraction(0.1)


def test_operator_errors():
    x, y = Input(2), Input(2)
    z = Linear(x, np.ones((3, 2)))
    with pytest.raises(ShapeError, match=r"x \+ y.*dim 2.*dim 3"):
        x + z
    with pytest.raises(ShapeError, match="x - y"):
        z - x
    with pytest.raises(TypeError, match="Multi"):
        x * y
    with pytest.raises(ValueError, match="zero"):
        x / 0
    with pytest.raises(ValueError, match="zero"):
        x / Fraction(0)
    with pytest.raises(TypeError):
        1 / x
    with pytest.raises(TypeError):
        x + np.ones(2)
    with pytest.raises(TypeError):
        np.ones(2) + x
    with pytest.raises(TypeError):
        x + "a"


def test_zero_idiom():
    x = Input(3)
    zero = x * 0
    assert zero.dim == 3 and zero.A.nnz == 0
    np.testing.assert_array_equal(run(zero, [[1, 2, 3]]), [[0, 0, 0]])


# ---------------------------------------------------------------------------- ForEach

def more_ones():
    x = Input(1, lower=0, upper=1, name="x")
    ones = LinState(x, A=[[1]], B=[[1]], init_state=[0], name="ones")
    zeros = LinState(f_not(x, name="is_zero"), A=[[1]], B=[[1]], init_state=[0], name="zeros")
    return ForEach(f_larger(ones, zeros, name="out"))


def test_more_ones_program():
    prog = more_ones()
    xs = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float)
    expected = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(prog(xs).ravel(), expected)
    np.testing.assert_array_equal(prog(xs.reshape(-1, 1)).ravel(), expected)
    exact = prog(xs, exact=True)
    assert exact.dtype == object and list(exact.ravel()) == expected
    batch = prog(np.stack([xs, 1 - xs])[..., None])
    assert batch.shape == (2, 10, 1)
    np.testing.assert_array_equal(batch[1].ravel(), [1, 0, 0, 0, 1, 1, 1, 0, 1, 1])
    # every call resets the states
    np.testing.assert_array_equal(prog(xs).ravel(), expected)
    prog.reset()
    assert len(prog.topological_sort()) == 13  # the reference's DAG has 13 nodes
    assert prog.input_dim == 1 and prog.output_dim == 1


def test_program_structure_methods():
    prog = more_ones()
    order = prog.topological_sort()
    position = {id(v): i for i, v in enumerate(order)}
    for v in order:
        assert all(position[id(u)] < position[id(v)] for u in v.inputs)
    assert order[0] is prog.input and order[-1] is prog.output
    states = prog.get_state_variables()
    assert [s.name for s in states] == ["ones", "zeros"]
    graph = prog.graph()
    assert set(map(id, graph)) == set(map(id, order))
    assert [v.name for v in graph[prog.input]] == ["ones", "is_zero"]
    assert graph[prog.output] == []
    assert prog.validate_graph() is True
    assert isinstance(prog.ir, Module) and prog.ir.output is prog.output.op
    assert [op.name for op in prog.ir.ops][:4] == ["x", "ones", "is_zero", "zeros"]


def test_parameter_count_and_nnz():
    x = Input(2)
    lin = Linear(x, [[1, 0], [0, 0], [2, 3]], [0, 1, 0])    # dense 6 + 3, nnz 3 + 1
    st = LinState(lin, np.eye(3), np.ones((3, 3)), bias=[1, 0, 0])  # dense 9 + 9 + 3, nnz 3 + 9 + 1
    sl = st[1:3]                                             # dense 2*3 + 2, nnz 2
    prog = ForEach(ReLU(sl))
    assert prog.parameter_count == 9 + 21 + 8
    assert prog.parameter_count() == 38
    assert prog.nnz == 4 + 13 + 2


def test_foreach_two_inputs_rejected():
    x, y = Input(1, name="a"), Input(1, name="b")
    with pytest.raises(ValueError, match="exactly one Input.*found 2"):
        ForEach(x + y)
    with pytest.raises(TypeError):
        ForEach(np.ones(2))


def test_foreach_input_is_program():
    x = Input(2)
    prog = ForEach(x)
    np.testing.assert_array_equal(prog([[1, 2]]), [[1, 2]])


def test_foreach_shape_errors_on_call():
    prog = more_ones()
    with pytest.raises(ShapeError):
        prog(np.zeros((3, 2)))


def test_foreach_from_module_and_names():
    prog = more_ones()
    again = ForEach(prog.ir)
    assert [type(v).__name__ for v in again.topological_sort()] == \
        [type(v).__name__ for v in prog.topological_sort()]
    assert [s.name for s in again.get_state_variables()] == ["ones", "zeros"]
    xs = np.array([1, 1, 0], dtype=float)
    np.testing.assert_array_equal(again(xs), prog(xs))


def test_deep_graph_does_not_recurse():
    x = Input(1)
    v = x
    for _ in range(2000):
        v = v + 1
    prog = ForEach(v)
    assert len(prog.topological_sort()) == 2001
    assert prog([[0.0]])[0, 0] == 2000


def test_save_and_load(tmp_path):
    pytest.importorskip("lsrl.ir.parser")
    prog = more_ones()
    path = tmp_path / "more_ones.lsrl"
    prog.save(path)
    text = path.read_text()
    assert "linstate" in text and "pickle" not in text
    loaded = ForEach.load(path)
    xs = np.array([0, 1, 1, 0, 1, 1], dtype=float)
    np.testing.assert_array_equal(loaded(xs), prog(xs))
    assert loaded(xs, exact=True).tolist() == prog(xs, exact=True).tolist()
    assert loaded.parameter_count == prog.parameter_count
    assert str(loaded.ir) == str(prog.ir)


def test_save_load_keeps_exact_constants(tmp_path):
    pytest.importorskip("lsrl.ir.parser")
    x = Input(1)
    prog = ForEach(lsrl.f_step(x / 3))
    path = tmp_path / "p.lsrl"
    prog.save(path)
    loaded = ForEach.load(path)
    xs = np.array([[Fraction(3, 1000)], [Fraction(1, 1000)]], dtype=object)
    assert loaded(xs, exact=True).tolist() == prog(xs, exact=True).tolist() == [[1], [Fraction(1, 3)]]


def test_call_passes_interpreter_options():
    prog = more_ones()
    with pytest.raises(ValueError):
        prog(np.array([0.0, 2.0]), check_domain=True)
    np.testing.assert_array_equal(prog(np.array([1.0, 1.0]), backend="numpy").ravel(), [1, 1])


@pytest.mark.skipif(not kernel_available(), reason="lsrl._kernel is not built")
@pytest.mark.parametrize("conditional", ["multiplicative", "optimized"])
def test_kernel_backend_runs_the_whole_program_like_the_interpreter(conditional):
    from lsrl.programs import token_map, token_prompt

    program = token_map(3, conditional=conditional)
    mapping = {(1, 2, 3): (4, 5, 6), (3, 2, 1): (7, 8, 9)}
    prompt = token_prompt((3, 2, 1), mapping)
    batch = np.stack([prompt, token_prompt((1, 2, 3), mapping)])
    np.testing.assert_allclose(program(prompt, backend="kernel"), program(prompt), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(program(batch, backend="kernel"), program(batch), rtol=1e-12, atol=1e-12)
    assert np.round(program(prompt, backend="kernel")[-3:, 0]).tolist() == [7, 8, 9]


def test_simplify_rewrites_in_place_into_a_path_with_the_same_outputs():
    from lsrl.programs import more_ones

    program = more_ones()
    bits = np.random.default_rng(3).integers(0, 2, size=(4, 30, 1)).astype(float)
    before = program(bits)
    assert program.simplify() is program
    ops = program.ir.ops
    assert all(len(op.operands) == 1 and op.operands[0] is prev for prev, op in zip(ops, ops[1:]))
    assert sum(op.kind == "linstate" for op in ops) == 1
    np.testing.assert_allclose(program(bits), before, rtol=0, atol=1e-12)
