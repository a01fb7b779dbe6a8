"""The interpreter against the per-token reference evaluator, exact arithmetic, batching, backends and
input validation; plus one hand-written program per op kind with a known answer."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsrl.scan as scan_module
from lsrl.errors import ShapeError, VerifyError
from lsrl.ir.core import OPS, Module, Op, OpDef, register_op
from lsrl.ir.interpreter import EvalContext, interpret
from lsrl.ir.matrix import Matrix, Vector
from reference_eval import evaluate_per_token
from strategies import profile_examples, programs, programs_and_sequences, random_sequences, sequences

BACKENDS = ["numpy"] + (["kernel"] if scan_module.kernel_available() else [])


# ------------------------------------------------------------------------------------------ helpers

def make_input(dim, lower=None, upper=None):
    attrs = {"dim": dim}
    if lower is not None:
        attrs["lower"] = Vector(np.broadcast_to(np.asarray(lower, dtype=float), (dim,)))
    if upper is not None:
        attrs["upper"] = Vector(np.broadcast_to(np.asarray(upper, dtype=float), (dim,)))
    return Op("input", (), attrs, name="x")


def linear(x, a, b=None):
    a = Matrix.from_dense(np.asarray(a, dtype=object) if _has_fraction(a) else np.asarray(a, dtype=float))
    attrs = {"A": a}
    if b is not None:
        attrs["b"] = Vector(b)
    return Op("linear", [x], attrs)


def linstate(x, a, b, init=None, bias=None):
    attrs = {"A": Matrix.from_dense(np.asarray(a, dtype=float)), "B": Matrix.from_dense(np.asarray(b, dtype=float))}
    if init is not None:
        attrs["init"] = Vector(init)
    if bias is not None:
        attrs["bias"] = Vector(bias)
    return Op("linstate", [x], attrs)


def _has_fraction(a) -> bool:
    return any(isinstance(v, Fraction) for v in np.asarray(a, dtype=object).ravel().tolist())


def module_of(output) -> Module:
    return Module.from_output(output).verify()


def scale_of(values: dict) -> float:
    """The largest magnitude any value of the program reaches (tolerances are relative to it)."""
    return max([1.0] + [float(np.max(np.abs(v.astype(float)))) for v in values.values() if v.size])


def assert_close(actual, expected, scale):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=1e-9, atol=1e-9 * scale)


# ------------------------------------------------------------------------------------------ properties

@given(programs_and_sequences(max_ops=16, batch=2))
def test_matches_per_token_reference_float(module_and_xs):
    module, xs = module_and_xs
    out, values = interpret(module, xs, backend="numpy", return_values=True)
    assert out.dtype == np.float64 and out.shape == xs.shape[:2] + (module.output.dim,)
    assert_close(out, evaluate_per_token(module, xs), scale_of(values))


@given(programs_and_sequences(max_ops=10, exact_friendly=True, max_length=8))
def test_matches_per_token_reference_exact(module_and_xs):
    module, xs = module_and_xs
    out = interpret(module, xs, exact=True)
    expected = evaluate_per_token(module, xs, exact=True)
    assert out.dtype == object and out.shape == expected.shape
    assert all(isinstance(v, Fraction) for v in out.ravel().tolist())
    assert out.tolist() == expected.tolist()


@given(programs_and_sequences(max_ops=12, exact_friendly=True, batch=2, max_length=10))
def test_float_agrees_with_exact_on_friendly_programs(module_and_xs):
    module, xs = module_and_xs
    out, values = interpret(module, xs, backend="numpy", return_values=True)
    assert_close(out, interpret(module, xs, exact=True).astype(float), scale_of(values))


@given(programs_and_sequences(max_ops=8, max_length=5))
def test_float_agrees_with_exact_on_general_programs(module_and_xs):
    module, xs = module_and_xs
    out, values = interpret(module, xs, backend="numpy", return_values=True)
    assert_close(out, interpret(module, xs, exact=True).astype(float), scale_of(values))


@given(st.data(), programs(max_ops=14), st.integers(1, 4), st.integers(0, 12))
def test_batch_equals_stacked_single_runs(data, module, batch, length):
    xs = data.draw(sequences(module, length=length, batch=batch))
    for backend in BACKENDS:
        out = interpret(module, xs, backend=backend)
        singles = np.stack([interpret(module, xs[b], backend=backend) for b in range(batch)])
        np.testing.assert_allclose(out, singles, rtol=1e-13, atol=1e-13 * max(1.0, np.abs(singles).max(initial=0)))


@given(st.data(), programs(max_ops=14))
def test_prefix_is_causal(data, module):
    xs = data.draw(sequences(module, length=10))
    full = interpret(module, xs, backend="numpy")
    np.testing.assert_array_equal(interpret(module, xs[:6], backend="numpy"), full[:6])


@pytest.mark.skipif(len(BACKENDS) < 2, reason="the C++ kernel lsrl._kernel is not built")
@given(programs_and_sequences(max_ops=16, batch=3))
def test_kernel_and_numpy_backends_agree(module_and_xs):
    module, xs = module_and_xs
    a, values = interpret(module, xs, backend="numpy", return_values=True)
    b = interpret(module, xs, backend="kernel")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale_of(values))


@settings(max_examples=profile_examples(20))
@given(programs(max_ops=10, exact_friendly=True), st.sampled_from([0, 1]), st.booleans())
def test_short_sequences(module, length, exact):
    d_in, d_out = module.input.dim, module.output.dim
    rng = np.random.default_rng(0)
    xs = random_sequences(module, length, None, rng, exact_friendly=True)
    out = interpret(module, xs, exact=exact)
    assert out.shape == (length, d_out)
    batched = interpret(module, random_sequences(module, length, 3, rng, exact_friendly=True), exact=exact)
    assert batched.shape == (3, length, d_out)
    assert interpret(module, np.zeros((0, length, d_in)), exact=exact).shape == (0, length, d_out)
    if length:
        expected = evaluate_per_token(module, xs, exact=exact)
        if exact:
            assert out.tolist() == expected.tolist()
        else:
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=profile_examples(25))
@given(programs(max_ops=12), st.integers(0, 2**32 - 1))
def test_return_values_covers_every_op(module, seed):
    xs = random_sequences(module, 7, None, np.random.default_rng(seed))
    out, values = interpret(module, xs, backend="numpy", return_values=True)
    assert set(values) == set(module.ops)
    np.testing.assert_array_equal(values[module.output], out)
    np.testing.assert_array_equal(values[module.input], xs)
    for op, v in values.items():
        assert v.shape == (7, op.dim)


# ------------------------------------------------------------------------------------------ known answers

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exact", [False, True])
def test_global_counter_counts_from_zero(backend, exact):
    x = make_input(1)
    one = linear(x, [[0.0]], [1.0])
    counter = linstate(one, [[1.0]], [[1.0]], init=[-1.0])
    out = interpret(module_of(counter), np.zeros(6), exact=exact, backend=backend)
    assert out.shape == (6, 1)
    assert out.ravel().tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_accumulator_fifo_and_rotation(backend):
    x = make_input(1)
    acc = linstate(x, [[1.0]], [[1.0]])
    fifo = linstate(x, np.eye(3, 3, 1), [[0.0], [0.0], [1.0]])  # (x_{t-2}, x_{t-1}, x_t)
    rot = linstate(x, [[0.0, -1.0], [1.0, 0.0]], [[0.0], [0.0]], init=[0.0, -1.0])  # quarter turns
    xs = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    out = interpret(module_of(Op("concat", [acc, fifo, rot])), xs, backend=backend)
    np.testing.assert_array_equal(out[:, 0], [1, 3, 6, 10, 15])
    np.testing.assert_array_equal(out[:, 1:4], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
    np.testing.assert_array_equal(out[:, 4:], [[1, 0], [0, 1], [-1, 0], [0, -1], [1, 0]])


def test_state_reading_a_state_and_bias():
    x = make_input(1)
    counter = linstate(x, [[1.0]], [[0.0]], bias=[1.0])  # 1, 2, 3, ...
    sum_of_counts = linstate(counter, [[1.0]], [[1.0]])  # 1, 3, 6, ...
    out = interpret(module_of(sum_of_counts), np.zeros(5), exact=True)
    assert out.ravel().tolist() == [1, 3, 6, 10, 15]


@pytest.mark.parametrize("exact", [False, True])
def test_multi_of_signed_halves(exact):
    x = make_input(4)
    prod = Op("multi", [x])
    xs = np.array([[2.0, -3.0, -0.5, -4.0], [-1.0, 0.0, 7.0, 5.0]])
    out = interpret(module_of(prod), xs, exact=exact)
    assert out.tolist() == [[-1, 12], [-7, 0]]


@pytest.mark.parametrize("exact", [False, True])
def test_slice_concat_relu_linear(exact):
    x = make_input(3)
    middle = Op("slice", [x], {"start": 1, "end": 3})
    twice = Op("concat", [middle, x, middle])
    rectified = Op("relu", [twice])
    summed = linear(rectified, [[1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, -1]], [0.5, -1.0])
    xs = np.array([[1.0, -2.0, 3.0], [-1.0, 4.0, -5.0]])
    module = module_of(summed)
    out, values = interpret(module, xs, exact=exact, return_values=True)
    assert values[twice].tolist() == [[-2, 3, 1, -2, 3, -2, 3], [4, -5, -1, 4, -5, 4, -5]]
    assert values[rectified].tolist() == [[0, 3, 1, 0, 3, 0, 3], [4, 0, 0, 4, 0, 4, 0]]
    assert out.tolist() == [[10.5, -4], [12.5, 3]]


def test_exact_constants_and_binary_inputs():
    x = make_input(1)
    third = linear(x, [[Fraction(1, 3)]])
    module = module_of(third)
    assert third.attrs["A"].exact
    exact = interpret(module, [0.1, 3.0], exact=True).ravel().tolist()
    assert exact == [Fraction(0.1) / 3, Fraction(1)]  # 0.1 at its binary value, not 1/10
    assert exact[0] != Fraction(1, 30)
    floats = interpret(module, [0.1, 3.0]).ravel()
    np.testing.assert_array_equal(floats, [0.1 * (1 / 3), 3.0 * (1 / 3)])  # the constant rounded once
    # object arrays of rationals are accepted in both modes
    rational = np.array([[Fraction(1, 10)], [Fraction(6)]], dtype=object)
    assert interpret(module, rational, exact=True).ravel().tolist() == [Fraction(1, 30), Fraction(2)]
    np.testing.assert_allclose(interpret(module, rational).ravel(), [1 / 30, 2.0])


def test_output_does_not_alias_the_input():
    x = make_input(2)
    module = module_of(Op("slice", [x], {"start": 0, "end": 1}))
    xs = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = interpret(module, xs)
    out[...] = 0
    np.testing.assert_array_equal(xs, [[1.0, 2.0], [3.0, 4.0]])


def test_dead_ops_are_allowed():
    x = make_input(1)
    live = linear(x, [[2.0]])
    dead = Op("relu", [x])
    module = Module([x, dead, live], live).verify()
    np.testing.assert_array_equal(interpret(module, [1.0, -1.0]).ravel(), [2.0, -2.0])
    _, values = interpret(module, [1.0, -1.0], return_values=True)
    np.testing.assert_array_equal(values[dead].ravel(), [1.0, 0.0])


# ------------------------------------------------------------------------------------------ validation

def test_input_shape_errors():
    module = module_of(linear(make_input(2), [[1.0, 1.0]]))
    with pytest.raises(ShapeError, match="input has dim 2"):
        interpret(module, np.zeros((5, 3)))
    with pytest.raises(ShapeError, match="transpose"):
        interpret(module, np.zeros((2, 5)))
    with pytest.raises(ShapeError, match="1-D"):
        interpret(module, np.zeros(5))
    with pytest.raises(ShapeError, match="4-D"):
        interpret(module, np.zeros((1, 1, 5, 2)))
    with pytest.raises(ShapeError, match="dim 2"):
        interpret(module, np.zeros((2, 5, 1)))
    with pytest.raises(ShapeError):
        interpret(module, 3.0)


@pytest.mark.parametrize("exact", [False, True])
def test_input_value_errors(exact):
    module = module_of(linear(make_input(1), [[1.0]]))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite"):
            interpret(module, [[0.0], [bad]], exact=exact)
    with pytest.raises(ValueError, match="real"):
        interpret(module, np.array([[1j]]), exact=exact)
    with pytest.raises(ValueError, match="numbers"):
        interpret(module, np.array([["a"]]), exact=exact)
    with pytest.raises(ValueError):
        interpret(module, np.array([[object()]], dtype=object), exact=exact)


def test_bad_backend():
    module = module_of(linear(make_input(1), [[1.0]]))
    with pytest.raises(ValueError, match="backend"):
        interpret(module, [1.0], backend="cuda")


def test_check_domain():
    x = make_input(2, lower=[0.0, -1.0], upper=[1.0, np.inf])
    module = module_of(linear(x, [[1.0, 1.0]]))
    ok = np.array([[0.0, -1.0], [1.0, 100.0]])
    interpret(module, ok, check_domain=True)
    interpret(module, ok, check_domain=True, exact=True)
    with pytest.raises(ValueError, match=r"step=1, coord=0.*upper bound 1\.0"):
        interpret(module, np.array([[0.5, 0.0], [1.5, 0.0]]), check_domain=True)
    with pytest.raises(ValueError, match="lower bound"):
        interpret(module, np.array([[0.5, -1.0 - 2**-40]]), check_domain=True, exact=True)
    interpret(module, np.array([[5.0, -5.0]]))  # not checked unless asked


def test_module_errors():
    x = make_input(1)
    a = linear(x, [[1.0]])
    b = Op("relu", [a])
    with pytest.raises(VerifyError, match="topological"):
        interpret(Module([x, b, a], b), [1.0])
    with pytest.raises(VerifyError, match="not an op"):
        interpret(Module([x, a], b), [1.0])


# ------------------------------------------------------------------------------------------ dispatch

@pytest.fixture
def temporary_op_kinds():
    added = []

    def register(opdef):
        added.append(register_op(opdef).name)

    yield register
    for name in added:
        del OPS[name]


def test_run_dispatch_reaches_registered_dialect_ops(temporary_op_kinds):
    seen = {}

    def double(op, inputs, state, ctx):
        return inputs[0] * 2, None

    def running_sum(op, inputs, state, ctx):
        seen["ctx"] = ctx
        out = np.cumsum(inputs[0], axis=1) + (0 if state is None else state[:, None])
        return out, out[:, -1]

    temporary_op_kinds(OpDef("testdialect.double", "2x", lambda op: op.operands[0].dim, run=double))
    temporary_op_kinds(OpDef("testdialect.cumsum", "running sum", lambda op: op.operands[0].dim,
                             stateful=True, run=running_sum))
    temporary_op_kinds(OpDef("testdialect.norun", "no run", lambda op: op.operands[0].dim))
    x = make_input(1)
    out = Op("testdialect.cumsum", [Op("testdialect.double", [x])])
    module = module_of(out)
    np.testing.assert_array_equal(interpret(module, [1.0, 2.0, 3.0], backend="numpy").ravel(), [2, 6, 12])
    assert seen["ctx"] == EvalContext(exact=False, backend="numpy", batch=1, length=3)
    with pytest.raises(VerifyError, match="no run function"):
        interpret(module_of(Op("testdialect.norun", [x])), [1.0])


def test_run_returning_a_wrong_shape_is_reported(temporary_op_kinds):
    temporary_op_kinds(OpDef("testdialect.broken", "bad", lambda op: 2,
                             run=lambda op, inputs, state, ctx: (inputs[0], None)))
    with pytest.raises(RuntimeError, match=r"testdialect.broken.*expected \(1, 2, 2\)"):
        interpret(module_of(Op("testdialect.broken", [make_input(1)])), [1.0, 2.0])


def test_numpy_backend_never_loads_the_kernel(monkeypatch):
    def refuse():
        raise AssertionError("the C++ kernel was loaded")

    monkeypatch.setattr(scan_module, "_load_kernel", refuse)
    monkeypatch.setattr(scan_module, "kernel_available", refuse)
    counter = linstate(make_input(1), [[1.0]], [[1.0]])
    assert interpret(module_of(counter), [1.0, 1.0], backend="numpy").ravel().tolist() == [1.0, 2.0]


def test_constant_cache_follows_attribute_changes():
    x = make_input(1)
    op = linear(x, [[2.0]])
    module = module_of(op)
    assert interpret(module, [1.0], exact=True).ravel().tolist() == [2]
    op.attrs["A"] = Matrix.from_dense([[3.0]])  # passes replace attribute values
    assert interpret(module, [1.0], exact=True).ravel().tolist() == [3]
    assert interpret(module, [1.0]).ravel().tolist() == [3.0]


def test_replaced_linstate_run_sees_every_state(monkeypatch):
    """Independent linstates are normally scanned together; a replaced run must still see each one."""
    original = OPS["linstate"].run
    seen = []

    def observing(op, inputs, state, ctx):
        seen.append(op)
        return original(op, inputs, state, ctx)

    x = make_input(1)
    states = [linstate(x, [[1.0]], [[float(i)]]) for i in range(1, 4)]
    module = module_of(Op("concat", states))
    fused = interpret(module, [1.0, 1.0], backend="numpy")
    monkeypatch.setattr(OPS["linstate"], "run", observing)
    np.testing.assert_array_equal(interpret(module, [1.0, 1.0], backend="numpy"), fused)
    assert fused.tolist() == [[1, 2, 3], [2, 4, 6]]
    assert set(seen) == set(states) and len(seen) == 3
