"""``debranch`` on hand-built programs and the paper's programs (compile.md §2, §5, §6, §9)."""
from __future__ import annotations

import numpy as np
import pytest

import lsrl
from lsrl.errors import PassError
from lsrl.ir import Matrix, Op, Vector, interpret
from lsrl.ir.core import Module
from lsrl.ir.layer_form import is_layer_form, layer_form_problems
from lsrl.passes.debranch import POLICIES, debranch, plan_schedules

CONDITIONALS = ("direct", "optimized", "step_optimized", "multiplicative", "multiplicative_optimized")


def n_layers(module) -> int:
    return sum(op.kind == "linstate" for op in module.ops)


def widest(module) -> int:
    return max(op.dim for op in module.ops[1:])


def nnz(module) -> int:
    total = 0
    for op in module.ops:
        if op.kind == "input":
            continue
        for value in op.attrs.values():
            if isinstance(value, (Matrix, Vector)):
                total += value.nnz
    return total


def dense_params(module) -> int:
    """The reference's ``parameter_count``: rows×cols of every matrix plus the bias lengths."""
    total = 0
    for op in module.ops:
        if op.kind == "linear":
            total += op.attrs["A"].shape[0] * op.attrs["A"].shape[1] + len(op.attrs["b"])
        elif op.kind == "linstate":
            total += op.attrs["A"].shape[0] ** 2 + op.attrs["B"].shape[0] * op.attrs["B"].shape[1]
            total += len(op.attrs["bias"])
    return total


def vec(values):
    return Vector(np.asarray(values, dtype=float))


def mat(values):
    return Matrix.from_dense(np.asarray(values, dtype=float))


def inp(dim, lower=None, upper=None):
    attrs = {"dim": dim}
    if lower is not None:
        attrs["lower"] = vec(np.broadcast_to(lower, (dim,)))
    if upper is not None:
        attrs["upper"] = vec(np.broadcast_to(upper, (dim,)))
    return Op("input", (), attrs, name="x")


def same_outputs(module, compiled, xs, rtol=1e-9):
    want = interpret(module, xs)
    got = interpret(compiled, xs)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# ---------------------------------------------------------------------------- Fig. 1

def test_more_ones_is_one_layer_counting_zeros_and_ones():
    from lsrl.programs import more_ones
    program = more_ones()
    compiled = debranch(program.ir)
    assert is_layer_form(compiled)
    assert [op.kind for op in compiled.ops] == ["input", "linstate", "linear", "relu", "linear"]
    state = compiled.ops[1]
    assert state.attrs["A"].is_identity()
    b = state.attrs["B"].to_dense().ravel()
    bias = state.attrs["bias"].values
    # one coordinate counts ones (B = 1, bias 0), the other zeros (B = -1, bias 1)
    assert sorted(zip(b.tolist(), bias.tolist())) == [(-1.0, 1.0), (1.0, 0.0)]
    assert dense_params(compiled) == 17
    layout = compiled.metadata["layout"][1]
    assert {tuple(s["terms"][0][:2]) for s in layout} == {("ones", 0), ("zeros", 0)}
    bits = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float).reshape(-1, 1)
    np.testing.assert_array_equal(interpret(compiled, bits).ravel(), [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])


def test_more_ones_exact_mode():
    from lsrl.programs import more_ones
    module = more_ones().ir
    compiled = debranch(module, exact=True)
    assert all(v.exact for op in compiled.ops[1:] for v in op.attrs.values() if isinstance(v, Matrix))
    bits = np.random.default_rng(0).integers(0, 2, size=(3, 25, 1)).astype(float)
    assert (interpret(module, bits, exact=True) == interpret(compiled, bits, exact=True)).all()


# ---------------------------------------------------------------------------- Listing 1

def _continuous_inputs(d_in, d_out, n_levels=6, n_queries=4, seed=0):
    from lsrl.programs import continuous_prompt, continuous_query
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, size=(d_out, d_in))

    def f(x):
        return np.tanh(w @ np.asarray(x, dtype=float)) * 2

    prompt = continuous_prompt(f, d_in, d_out, n_levels)
    # queries well inside their cells (the programs need 1/μ of margin)
    cells = rng.integers(0, n_levels, size=(n_queries, d_in))
    q = (cells + rng.uniform(0.3, 0.7, size=cells.shape)) / n_levels
    xs = np.stack([np.vstack([continuous_query(qi, d_out)[None], prompt]) for qi in q])
    centres = (cells + 0.5) / n_levels
    expected = np.stack([f(c) for c in centres])
    return xs, expected


@pytest.mark.parametrize("conditional", CONDITIONALS)
@pytest.mark.parametrize("dims", [(1, 1), (2, 1), (2, 2)])
def test_continuous_approximator_three_layers(conditional, dims):
    from lsrl.programs import continuous_approximator
    d_in, d_out = dims
    module = continuous_approximator(d_in, d_out, conditional).ir
    compiled = debranch(module)
    assert is_layer_form(compiled)
    assert n_layers(compiled) == 3
    xs, expected = _continuous_inputs(d_in, d_out)
    want = interpret(module, xs)[:, -1]
    got = interpret(compiled, xs)[:, -1]
    # λ = 1e10 amplifies the rounding of the ReLU conditionals (about λ·ulp); Multi ones are exact
    tol = 1e-9 if conditional.startswith("multiplicative") else 1e-2
    np.testing.assert_allclose(want, expected, atol=tol)
    np.testing.assert_allclose(got, expected, atol=tol)
    assert widest(compiled) <= 30


def test_continuous_exact_mode_is_identical():
    from lsrl.programs import continuous_approximator
    module = continuous_approximator(1, 1, "multiplicative").ir
    compiled = debranch(module, exact=True)
    xs, _ = _continuous_inputs(1, 1, n_levels=4, n_queries=2)
    assert (interpret(module, xs, exact=True) == interpret(compiled, xs, exact=True)).all()


# ---------------------------------------------------------------------------- Listing 2

def _token_inputs(n, n_entries=12, n_queries=4, seed=0):
    from lsrl.programs import draw_queries, random_token_map, token_prompt
    rng = np.random.default_rng(seed)
    mapping = random_token_map(n, n_entries, 10, rng)
    queries = draw_queries(mapping, n_queries, rng)
    xs = np.stack([token_prompt(q, mapping) for q in queries])
    expected = np.array([mapping[q] for q in queries], dtype=float)
    return xs, expected


@pytest.mark.parametrize("conditional", CONDITIONALS)
def test_token_map_n3_five_layers(conditional):
    from lsrl.programs import token_map
    module = token_map(3, conditional).ir
    compiled = debranch(module)
    assert is_layer_form(compiled)
    assert n_layers(compiled) == 5
    xs, expected = _token_inputs(3)
    want = interpret(module, xs)[:, -3:, 0]
    got = interpret(compiled, xs)[:, -3:, 0]
    np.testing.assert_array_equal(np.round(want), expected)
    np.testing.assert_array_equal(np.round(got), expected)
    assert np.abs(got - want).max() < 0.05
    # compile.md §6 reference: widest 1,984 .. 250,470 and nnz 49,894 .. 4,007,120 (≥10× smaller wanted)
    assert widest(compiled) <= 60 and nnz(compiled) <= 2500


def test_token_map_n10_goals():
    from lsrl.programs import token_map
    module = token_map(10, "multiplicative_optimized").ir
    compiled = debranch(module)
    assert n_layers(compiled) == 5
    assert widest(compiled) <= 1500 and nnz(compiled) <= 36000
    xs, expected = _token_inputs(10, n_entries=6, n_queries=2)
    got = interpret(compiled, xs)[:, -10:, 0]
    np.testing.assert_array_equal(np.round(got), expected)
    same_outputs(module, compiled, xs, rtol=1e-9)


# ---------------------------------------------------------------------------- mechanisms

def test_program_without_states_gets_one_passthrough_layer():
    x = inp(2)
    r = Op("relu", [Op("linear", [x], {"A": mat([[1, -1], [2, 1]]), "b": vec([0.5, -1])})])
    out = Op("linear", [r], {"A": mat([[1, 1]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    assert n_layers(compiled) == 1
    state = compiled.ops[1]
    assert state.kind == "linstate" and state.attrs["A"].nnz == 0
    same_outputs(module, compiled, np.random.default_rng(1).normal(size=(2, 7, 2)))


def test_affine_and_constant_programs():
    x = inp(2)
    module = Module.from_output(Op("linear", [x], {"A": mat([[1, -1]]), "b": vec([3])}))
    compiled = debranch(module)
    assert not layer_form_problems(compiled) and n_layers(compiled) == 1
    same_outputs(module, compiled, np.random.default_rng(2).normal(size=(2, 5, 2)))
    const = Module.from_output(Op("linear", [x], {"A": mat([[0, 0]]), "b": vec([4])}))
    compiled = debranch(const)
    assert not layer_form_problems(compiled)
    np.testing.assert_array_equal(interpret(compiled, np.ones((3, 2))), np.full((3, 1), 4.0))


def test_relu_carriers_split_only_signed_values():
    # x is signed and read after a ReLU stage: carried as x⁺, x⁻; a ReLU output is carried as itself
    x = inp(1)
    r = Op("relu", [x])
    r2 = Op("relu", [Op("linear", [r], {"A": mat([[1]]), "b": vec([-1])})])
    out = Op("linear", [Op("concat", [r2, x, r])], {"A": mat([[1, 1, 1]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    roles = [[s["role"] for s in entry] for entry in compiled.metadata["layout"]]
    assert any("plus" in r and "minus" in r for r in roles)
    same_outputs(module, compiled, np.random.default_rng(3).normal(size=(2, 6, 1)) * 3)


def test_nonnegative_input_needs_no_split():
    x = inp(1, lower=0.0, upper=5.0)
    r = Op("relu", [Op("linear", [x], {"A": mat([[1]]), "b": vec([-1])})])
    out = Op("linear", [Op("concat", [r, x])], {"A": mat([[1, 1]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    assert widest(compiled) == 2  # r and x side by side, no x⁻
    assert not any(s["role"] in ("plus", "minus") for e in compiled.metadata["layout"] for s in e)
    same_outputs(module, compiled, np.random.default_rng(4).uniform(0, 5, size=(2, 6, 1)))


def test_relu_of_nonnegative_value_is_dropped_and_scaled_relus_are_shared():
    x = inp(1)
    r = Op("relu", [x])
    again = Op("relu", [r])  # ReLU(ReLU(x)) = ReLU(x)
    scaled = Op("relu", [Op("linear", [x], {"A": mat([[4.0]]), "b": vec([0])})])  # 4·ReLU(x)
    out = Op("linear", [Op("concat", [again, scaled])], {"A": mat([[1, 1]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    assert [op.kind for op in compiled.ops] == ["input", "linstate", "relu", "linear"]
    assert widest(compiled) == 1
    same_outputs(module, compiled, np.random.default_rng(5).normal(size=(2, 6, 1)))


def test_multi_carriers_and_signed_operands():
    x = inp(2)
    prod = Op("multi", [x])  # x0 * x1, both signed
    sq = Op("multi", [Op("concat", [prod, prod])])  # (x0 x1)^2: a second M stage; x carried through it
    out = Op("linear", [Op("concat", [sq, x])], {"A": mat([[1, 1, -1]]), "b": vec([0.25])})
    module = Module.from_output(out)
    compiled = debranch(module)
    assert [op.kind for op in compiled.ops].count("multi") == 2
    layout = compiled.metadata["layout"]
    assert any(s["role"] == "one" for e in layout for s in e)
    same_outputs(module, compiled, np.random.default_rng(6).normal(size=(3, 5, 2)))


def test_states_reading_states_and_dead_coordinates():
    x = inp(1)
    s1 = Op("linstate", [x], {"A": mat([[1, 0], [0, 0.5]]), "B": mat([[1], [1]])})
    s2 = Op("linstate", [Op("slice", [s1], {"start": 0, "end": 1})],
            {"A": mat([[0.5, 0.25], [0, 1]]), "B": mat([[1], [0]]), "init": vec([1, 2])})
    out = Op("slice", [s2], {"start": 0, "end": 1})
    module = Module.from_output(out)
    compiled = debranch(module)
    assert n_layers(compiled) == 2
    # s1's second coordinate is dead; s2 keeps both (its first coordinate reads the second through A)
    assert compiled.ops[1].dim == 1 and compiled.ops[2].dim == 2
    same_outputs(module, compiled, np.random.default_rng(7).normal(size=(2, 9, 1)))


def test_identical_states_are_one_block():
    x = inp(1)
    a = Op("linstate", [x], {"A": mat([[1]]), "B": mat([[1]])})
    b = Op("linstate", [x], {"A": mat([[1]]), "B": mat([[1]])})
    out = Op("linear", [Op("concat", [a, b])], {"A": mat([[1, 2]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    state = compiled.ops[1]
    assert state.kind == "linstate" and state.dim == 1
    assert state.attrs["A"].to_dense().tolist() == [[1.0]] and state.attrs["B"].to_dense().tolist() == [[1.0]]
    # the readout reads the one counter with both coefficients summed
    assert compiled.output.attrs["A"].to_dense().tolist() == [[3.0]]
    same_outputs(module, compiled, np.random.default_rng(8).normal(size=(2, 6, 1)))


def test_schedules_and_options():
    from lsrl.programs import token_map
    module = token_map(3, "multiplicative").ir
    _, plans = plan_schedules(module, schedule="all")
    assert len(plans) >= 3
    best = debranch(module, schedule="all")
    assert widest(best) == min(p.cost[0] for p in plans)
    for name in ("asap", "alap"):
        assert n_layers(debranch(module, schedule=name)) == 5
    with pytest.raises(PassError):
        debranch(module, schedule="sideways")


def test_schedule_all_tries_distinct_placements():
    # every named policy is its own placement (S units, R/M units, inside layers: early or late)
    assert len(set(POLICIES.values())) == len(POLICIES) == 8


def test_pipeline_registration():
    import lsrl.opt
    from lsrl.programs import more_ones
    out = lsrl.opt.run(more_ones().ir, "debranch{exact=true}")
    assert is_layer_form(out)
    assert out.ops[1].attrs["A"].exact


def test_rejects_non_core_ops():
    from lsrl.ir.core import OPS, OpDef, register_op
    if "test.debranch_custom" not in OPS:
        register_op(OpDef("test.debranch_custom", "test op", lambda op: op.operands[0].dim))
    x = inp(1)
    module = Module.from_output(Op("test.debranch_custom", [x]))
    with pytest.raises(PassError, match="test.debranch_custom"):
        debranch(module)


# ---------------------------------------------------------------------------- reference mode

def test_reference_mode_more_ones_is_the_papers_path():
    from lsrl.programs import more_ones
    compiled = debranch(more_ones().ir, mode="reference")
    assert is_layer_form(compiled)
    assert [op.kind for op in compiled.ops] == ["input", "linstate", "linear", "relu", "linear"]
    assert dense_params(compiled) == 17  # compile.md §5: 5-node path, 17 dense parameters
    bits = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float).reshape(-1, 1)
    np.testing.assert_array_equal(interpret(compiled, bits).ravel(), [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("conditional", ["direct", "multiplicative"])
def test_reference_mode_continuous(conditional):
    from lsrl.programs import continuous_approximator
    module = continuous_approximator(2, 1, conditional).ir
    compiled = debranch(module, mode="reference")
    assert is_layer_form(compiled) and n_layers(compiled) == 3
    assert compiled.metadata["reference_cases"]  # the cases applied, by name
    xs, expected = _continuous_inputs(2, 1)
    tol = 1e-9 if conditional == "multiplicative" else 1e-2
    np.testing.assert_allclose(interpret(compiled, xs)[:, -1], expected, atol=tol)
    # the local rules are much wider than stage scheduling (compile.md §6)
    assert widest(compiled) > 5 * widest(debranch(module))


def test_reference_mode_d6_concat_progress():
    # every child of %x is a Concat that also reads another value: the reference stalls here (D6)
    x = inp(1)
    a = Op("relu", [x])
    c1 = Op("concat", [x, a])
    c2 = Op("concat", [a, x])
    out = Op("linear", [Op("concat", [c1, c2])], {"A": mat([[1, 2, 3, 4]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module, mode="reference")
    assert is_layer_form(compiled)
    same_outputs(module, compiled, np.random.default_rng(8).normal(size=(2, 5, 1)))


@pytest.mark.parametrize("conditional", ["direct", "multiplicative"])
def test_token_map_exact_mode_is_identical(conditional):
    from lsrl.programs import draw_queries, random_token_map, token_map, token_prompt
    module = token_map(3, conditional).ir
    compiled = debranch(module, exact=True)
    rng = np.random.default_rng(0)
    mapping = random_token_map(3, 3, 10, rng)
    query = draw_queries(mapping, 1, rng)[0]
    xs = token_prompt(query, mapping)[None]
    got = interpret(compiled, xs, exact=True)
    assert (interpret(module, xs, exact=True) == got).all()
    assert tuple(int(v) for v in got[0, -3:, 0]) == mapping[query]


def test_metadata_is_json():
    import json
    from lsrl.programs import continuous_approximator
    compiled = debranch(continuous_approximator(2, 1, "multiplicative").ir, exact=True)
    text = json.dumps({k: compiled.metadata[k] for k in ("layout", "stages", "schedule")})
    assert "carrier" in text and '"S"' in text


def test_fold_memoryless_states_option():
    x = inp(1)
    passthrough = Op("linstate", [x], {"A": mat([[0.0]]), "B": mat([[2.0]])})  # s_t = 2 x_t
    counter = Op("linstate", [passthrough], {"A": mat([[1.0]]), "B": mat([[1.0]])})
    module = Module.from_output(counter)
    assert n_layers(debranch(module)) == 2  # the program's LinState depth
    folded = debranch(module, fold_memoryless_states=True)
    assert n_layers(folded) == 1
    same_outputs(module, folded, np.random.default_rng(9).normal(size=(2, 6, 1)))


def test_state_bounds_are_sound_for_tiny_inputs():
    # s_t = s_{t-1} + 1e-15 grows forever: no bound may claim s <= 0 (which would drop the ReLU)
    x = inp(1, lower=0.0, upper=1.0)
    tiny = Op("linear", [x], {"A": mat([[0.0]]), "b": vec([1e-15])})
    s = Op("linstate", [tiny], {"A": mat([[1.0]]), "B": mat([[1.0]])})
    out = Op("linear", [Op("relu", [s])], {"A": mat([[1e15]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    xs = np.zeros((1, 6, 1))
    np.testing.assert_allclose(interpret(compiled, xs).ravel(), np.arange(1, 7), rtol=1e-9)
    same_outputs(module, compiled, xs)


def test_shifted_carrier_for_a_bounded_signed_value():
    # x in [-2, 3] is signed but bounded: it crosses the ReLU stage as x + 2 (one slot), not as x+, x-
    x = inp(1, lower=-2.0, upper=3.0)
    r = Op("relu", [Op("linear", [x], {"A": mat([[1]]), "b": vec([-1])})])
    out = Op("linear", [Op("concat", [r, x])], {"A": mat([[1, 1]]), "b": vec([0])})
    module = Module.from_output(out)
    compiled = debranch(module)
    assert widest(compiled) == 2
    carriers = [s for e in compiled.metadata["layout"] for s in e if s["role"] == "carrier" and "constant" in s]
    assert carriers and carriers[0]["constant"] == 2.0
    assert widest(debranch(module, signed_carriers="split")) == 3
    xs = np.random.default_rng(10).uniform(-2, 3, size=(2, 6, 1))
    same_outputs(module, compiled, xs)
    assert (interpret(module, xs, exact=True) == interpret(debranch(module, exact=True), xs, exact=True)).all()


def test_a_carrier_is_shifted_by_a_short_number_of_its_program_units():
    from lsrl.passes.debranch_schedule import _short_shift
    # λ·(1e-13 slack of a rounded step): not a number a token can be shifted by exactly; −2⁻¹⁰ is
    assert _short_shift(-0.0007512892218064504, 1.0) == -2.0 ** -10
    assert _short_shift(0.0007512892218064504, 1.0) == 2.0 ** -10
    # in normal-form units 2e-22 to the program's one: the shift is short once rescale-units divides it out
    unit = 2.0000000000000008e-22
    assert _short_shift(-0.0007512892218064504 * unit, unit) == -2.0 ** -10 * unit
    # a bound of a few digits, in either unit, stays the bound itself (999 shifts a token exactly)
    assert _short_shift(-999.0, 1.0) == -999.0
    assert _short_shift(-1.998e-09, 2.000000000000001e-09) == -1.998e-09
    assert _short_shift(-0.999 * unit, unit) == -0.999 * unit
    # a bound the normal form's float arithmetic left 8.4e-14 from 999999 program units: shifted by 999999 of them
    # (rescale-units snaps 999998.999999916 to nothing: it is beyond its tolerance)
    unit = 3.90625e-12
    assert _short_shift(999998.999999916 * unit, unit) == 999999 * unit


def test_a_direction_the_division_would_round_is_scaled_by_a_power_of_two():
    # 0.1 / 3 rounds: the first row of that direction is scaled by 2 (exactly, its bias −10¹⁰ − 2⁻¹⁰ included:
    # divided by 3 and multiplied back it missed by 10⁻⁶), and a later multiple keeps that row's atoms
    from lsrl.lang import ForEach, Input
    from lsrl.passes.debranch_affine import CONST, NormalForm
    x = Input(2, lower=-1, upper=1)
    nf = NormalForm(ForEach(x).ir)
    first = {1: 3.0, 2: 0.1, CONST: -1e10 - 2.0 ** -10}
    s, row, _ = nf._unit_row(first, signed=False)
    assert s == 2.0 and {k: v * s for k, v in row.items()} == first
    s, row, _ = nf._unit_row({1: -6.0, 2: -0.2, CONST: 5.0}, signed=True)
    assert s == -4.0 and row == {1: 1.5, 2: 0.05, CONST: -1.25}
    # a direction the division keeps exact is divided as before
    assert nf._unit_row({1: 4.0, 2: 2.0, CONST: 1.0}, signed=False)[:2] == (4.0, {1: 1.0, 2: 0.5, CONST: 0.25})


@pytest.mark.parametrize("first_one", [True, False])
def test_multiples_of_a_direction_share_a_unit_with_their_own_scale(first_one):
    # 0.9/3 == 0.3 keys relu(3x + 0.9y) with relu(x + 0.3y), but 0.3·3 != 0.9: the direction is scaled by 2, and a
    # row of first coefficient 1 must meet that record too (it skipped it: 2.6 for 3.9, 1.95 for 1.3), in either
    # order
    from lsrl.lang import Concat, ForEach, Input, Linear, ReLU
    x = Input(2, lower=-5, upper=5)
    one, three = ReLU(Linear(x, [[1.0, 0.3]], [0.0])), ReLU(Linear(x, [[3.0, 0.9]], [0.0]))
    program = ForEach(Concat([one, three] if first_one else [three, one]))
    xs = np.array([[[1.0, 1.0], [2.0, -1.0], [-1.0, 0.5]]])
    np.testing.assert_allclose(interpret(debranch(program.ir), xs), interpret(program.ir, xs), rtol=1e-15)


def test_constants_that_overflow_when_composed_are_refused():
    """``10·(y + 1e308) + 1``: the layer form's bias would be ``inf`` (it was, silently)."""
    y = lsrl.Input(1)
    program = lsrl.ForEach(lsrl.Linear(lsrl.Linear(y, [[1.0]], b=[1e308]), [[10.0]], b=[1.0]))
    with pytest.raises(lsrl.LsrlError, match="bias of the layer form is not finite"):
        lsrl.compile(program, t_max=3)
