"""``rescale-units``: same map, units on their program's scale, and the float32 runs that this makes right.

The float32 checks run the compiled token program through the C++ kernel in float32 and compare with the true
answers; the same check on the pipeline without the pass must fail, so the test shows what the pass does.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsrl
import lsrl.opt as opt
from lsrl.errors import PassError
from lsrl.ir.interpreter import interpret
from lsrl.ir.matrix import Matrix, Vector
from lsrl.lang import Concat, ForEach, Input, LinState
from lsrl.programs import token_map
from lsrl.runtime import kernel_available
from lsrl.runtime.executor import run as run_kernel
from lsrl.sugar import f_and, f_ifelse, f_larger, f_smaller
from strategies import conditional_programs, profile_examples, programs, random_sequences, token_prompts

MODES = [("linear_rnn", "ideal"), ("lstm", "ideal"), ("gru", "ideal"), ("lstm", "standard"), ("gru", "standard")]


def _rows_and_biases(linear):
    return linear.attrs["A"].to_dense(), linear.attrs["b"].to_float().values


def test_step_pairs_share_one_row_with_integer_biases_one_apart():
    x = Input(1, lower=0, upper=9)
    count = LinState(f_larger(x, 4.5), A=[[1]], B=[[1]], init_state=[0])
    program = ForEach(f_and(f_larger(count, 2.5), f_larger(x, 6.5)))
    module = opt.run(program.ir, "debranch,rescale-units")
    first = next(op for op in module.ops if op.kind == "relu").operands[0]
    A, b = _rows_and_biases(first)
    pairs = {}
    for j in range(A.shape[0]):
        pairs.setdefault(A[j].tobytes(), []).append(b[j])
    grouped = [np.sort(v) for v in pairs.values() if len(v) >= 2]
    assert grouped, "no step pair found"
    for biases in grouped:  # bit-identical rows; integer biases, the closest two exactly 1 apart
        assert all(float(v).is_integer() for v in biases) and np.min(np.diff(biases)) == 1.0


@settings(max_examples=profile_examples(40))
@given(module=programs(max_ops=14), seed=st.integers(0, 2**32 - 1))
def test_rescaling_keeps_the_map(module, seed):
    before = opt.run(module, "debranch")
    after = opt.run(module, "debranch,rescale-units")
    xs = random_sequences(module, 9, 3, np.random.default_rng(seed))
    ref, got = interpret(before, xs), interpret(after, xs)
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * scale)


@settings(max_examples=profile_examples(200), deadline=None)
@given(case=conditional_programs())
def test_rescaling_moves_conditional_programs_no_further_from_their_map(case):
    # rescale-units snaps debranch's float noise (0.75000000002 is 3/4 again), so the map may move by that much,
    # not more; two λ-rows made one moved it by the whole output
    program, xs = case
    want = np.asarray(interpret(program.ir, xs, exact=True), dtype=np.float64)
    before = np.asarray(interpret(opt.run(program.ir, "debranch"), xs, exact=True), dtype=np.float64)
    after = np.asarray(interpret(opt.run(program.ir, "debranch,rescale-units"), xs, exact=True), dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(after - want).max() <= max(10 * np.abs(before - want).max(), 1e-12 * scale)


def test_rows_further_apart_than_debranchs_rounding_stay_different_units():
    """f_ifelse(x > 0, x, x·x): two λ-rows around the step are 2·10⁻¹³ apart in direction and a reader takes their
    difference times 10¹³.  Made one row (their directions agree to 12 decimals) they changed the map: the model
    answered 0.002 where the program answers x, in every dtype and beyond its error bound.  (Rescaled, the rows
    are the program's map exactly: debranch's own reads ``1000·ReLU(x − 0.001)`` with 0.001 as a float, 2·10⁻⁷
    off at λ's scale, which rescale-units snaps to ``ReLU(1000x − 1)``.)"""
    x = Input(1, lower=0, upper=3, integer=True)
    program = ForEach(f_ifelse(f_larger(x, 0.0), x, lsrl.Multi(lsrl.Concat([x, x]))))
    xs = np.array([[[1.0], [2.0], [3.0], [0.0]]])
    after = opt.run(program.ir, "debranch,rescale-units")
    np.testing.assert_array_equal(interpret(after, xs, exact=True), interpret(program.ir, xs, exact=True))
    model = lsrl.compile(program, t_max=4)
    np.testing.assert_array_equal(model(xs), program(xs))  # measured: exact


_near_short = st.builds(lambda m, e, r: m * 10.0 ** e * (1 + r), st.integers(-10**7, 10**7), st.integers(-25, 25),
                        st.sampled_from([0.0, 1e-15, -3e-16, 2.0**-52, 1e-9]))


@settings(max_examples=profile_examples(300))
@given(values=st.lists(st.one_of(st.floats(), _near_short, st.integers(-10**16, 10**16).map(float),
                                 st.integers(-10**7, 10**7).map(lambda n: n + 0.5)), max_size=40),
       tolerance=st.sampled_from([0.0, 1e-14, 1e-9, 1e-7]))
def test_snap_searches_only_what_it_must(values, tolerance):
    """Integers are their own snap and a few other entries are searched one by one: bit for bit the vectorised
    search over every entry."""
    from lsrl.passes.rescale_units import _snap, _snap_all
    fast, full = _snap(values, tolerance), _snap_all(values, tolerance)
    np.testing.assert_array_equal(fast, full)
    np.testing.assert_array_equal(np.signbit(fast), np.signbit(full))


def test_needs_the_layer_form_and_its_layout():
    x = Input(1, lower=0, upper=1)
    program = ForEach(f_larger(x, 0.5))
    with pytest.raises(PassError, match="layer form"):
        opt.run(program.ir, "rescale-units")
    layer_form = opt.run(program.ir, "debranch")
    layer_form.metadata.pop("layout")
    with pytest.raises(PassError, match="layout"):
        opt.run(layer_form, "rescale-units")


def test_an_exact_module_is_rescaled_exactly():
    """The scales are chosen on the exact layer form's float image and applied to its exact constants: the exact
    map is unchanged, and the weights are the float pipeline's where float64 holds them (an exact module was
    left as debranch made it, and its float runs answered wrong: 9 of 40 λ-conditional programs in float64)."""
    from fractions import Fraction

    x = Input(2, lower=0, upper=9)
    program = ForEach(Concat([f_larger(x[0], Fraction(1, 3)), f_larger(x[1], 4.5)]))
    exact = opt.run(program.ir, "debranch{exact=true}")
    rescaled = opt.run(exact, "rescale-units")
    grid = np.stack(np.meshgrid(np.arange(0, 9.5, 0.5), np.arange(0, 9.5, 0.5)), axis=-1).reshape(1, -1, 2)
    np.testing.assert_array_equal(np.asarray(interpret(rescaled, grid, exact=True), dtype=object),
                                  np.asarray(interpret(exact, grid, exact=True), dtype=object))
    floats = opt.run(program.ir, "debranch,rescale-units")
    assert [op.kind for op in rescaled.ops] == [op.kind for op in floats.ops]
    for op, twin in zip(rescaled.ops, floats.ops):
        for name, value in op.attrs.items():
            if isinstance(value, (Matrix, Vector)) and name in twin.attrs:
                np.testing.assert_array_equal(value.to_float().to_dense() if isinstance(value, Matrix)
                                              else value.to_float().values,
                                              twin.attrs[name].to_dense() if isinstance(value, Matrix)
                                              else twin.attrs[name].values)
    steps = rescaled.ops[2]
    assert steps.attrs["b"].exact and Fraction(-1000, 3) in steps.attrs["b"].values.tolist()


def test_an_exact_modules_step_takes_its_scale_from_the_exact_gap():
    """A step at 100000.5: its pair's offsets ``100000.5`` and ``100000.501`` are ``10⁻³(1 − 3.8·10⁻⁹)`` apart in
    float64, and an exact module's scale came from that gap (``999.9999961582944``, rows of 15-digit rationals and
    a bound of 7.4·10³ where the model is exact); the exact offsets give 1000, integer rows and a bound of 0."""
    from fractions import Fraction

    x = Input(1, lower=0, upper=200000, integer=True)
    program = ForEach(f_ifelse(f_larger(x, 100000.5), lsrl.Linear(x, [[2.0]]), x))
    rescaled = opt.run(opt.run(program.ir, "debranch{exact=true}"), "rescale-units")
    first = next(op for op in rescaled.ops if op.kind == "relu").operands[0]
    rows = first.attrs["A"].exact_rows()
    biases = first.attrs["b"].array(True).tolist()
    step = sorted(b for row, b in zip(rows, biases) if row and min(row.items())[1] == 1000)
    assert step == [Fraction(-100000501), Fraction(-100000500)]
    model = lsrl.compile(program, "linear_rnn", exact=True, t_max=5)
    xs = np.array([[[100000.0], [100001.0], [99999.0], [5.0], [200000.0]]])
    assert model.error_bound_in("float64").tolist() == [0.0]
    np.testing.assert_array_equal(model(xs), np.asarray(interpret(program.ir, xs, exact=True), dtype=np.float64))


def test_rows_whose_exact_offsets_agree_take_the_float_gap():
    """A bump of ``2.5x + 1/3`` at ``1/3`` and ``1000 + 1/3`` (μ = 10⁴), exact: two rows whose float offsets differ
    have one exact offset, and taking the scale from their exact gap divided by 0 (a review's program)."""
    x = Input(1, lower=0, upper=200000, integer=True)
    value = lsrl.Linear(x, [[2.5]], b=[1 / 3])
    program = ForEach(f_ifelse(lsrl.f_bump(value, 1 / 3, 1000 + 1 / 3, scale=10000), x, x * 2))
    model = lsrl.compile(program, "linear_rnn", exact=True, t_max=6)
    xs = np.array([[[0.0], [1.0], [400.0], [200000.0]]])
    report = model.check(xs, oracle="exact")
    assert report.within_bound


def test_a_float_modules_step_takes_its_scale_from_the_biases_debranch_rounded():
    """The float module of the same step: debranch rounds the offset ``100000.501`` and records the exact bias in
    ``metadata["exact_biases"]``; rescale-units takes the gap from it, scales the pair by 1000 and rounds each bias
    once, at that scale (it had ``−100000499.61582752`` and ``−100000500.61582752`` at the scale 999.9999961582944),
    and drops the record."""
    x = Input(1, lower=0, upper=200000, integer=True)
    program = ForEach(f_larger(x, 100000.5))
    layer_form = opt.run(program.ir, "debranch")
    assert layer_form.metadata["exact_biases"] == [[2, [[1, "-100000501/1000"]]]]
    rescaled = opt.run(layer_form, "rescale-units")
    assert "exact_biases" not in rescaled.metadata
    A, b = _rows_and_biases(rescaled.ops[2])
    assert A[:, 0].tolist() == [1000.0, 1000.0] and sorted(b.tolist()) == [-100000501.0, -100000500.0]


@pytest.mark.parametrize("edge, scale, bias", [(1.9, 1, 0.8999999999999999), (1.1, 2, 1.2000000000000002)])
def test_a_constant_the_scale_does_not_round_is_not_snapped(edge, scale, bias):
    """``f_smaller(x, 1.9, scale=1)``: the step's second ReLU has the bias ``fl(1.9) − 1 = 0.8999999999999999``
    exactly, and its scale is 1.  Snapped to ``0.9`` (a number of one digit within 10⁻¹⁴), the pair was
    ``0.9999999999999999`` apart and λ read the step's 1 as 1.1·10⁻⁶ off the interpreter under a bound of 0.  At
    ``scale=2`` the pair is scaled by 2, exactly: ``2·(fl(1.1) − 1/2) = 1.2000000000000002`` and ``2·fl(1.1)`` were
    snapped to ``1.2`` and ``2.2``, ``1.0000000000000002`` apart (2.2·10⁻⁶ off).  Only the entries a scale changed
    are snapped now, and a step group's biases keep the whole-number gaps they had before the snap: the models
    answer exactly."""
    x = Input(1, lower=-4, upper=4, integer=True)
    program = ForEach(f_ifelse(f_smaller(x, edge, scale=scale), x, 2 * x + 1))
    rescaled = opt.run(program.ir, "debranch,rescale-units")
    _, b = _rows_and_biases(rescaled.ops[2])
    assert bias in b.tolist()
    xs = np.arange(-4.0, 5.0).reshape(-1, 1)
    model = lsrl.compile(program, "linear_rnn", t_max=len(xs))
    np.testing.assert_array_equal(model(xs), np.asarray(program(xs, exact=True), dtype=float))


@pytest.mark.skipif(not kernel_available(), reason="needs the C++ kernel")
@pytest.mark.parametrize("conditional", ["multiplicative", "multiplicative_optimized"])
@pytest.mark.parametrize("target, activations", MODES)
def test_token_map_answers_right_in_float32(target, activations, conditional):
    # measured: every answer right, |answer − token| ≤ 1.3e-4 (ideal) and ≤ 4.1e-4 (standard)
    xs, answers = token_prompts(3, 20, 4, seed=7)
    program = token_map(3, conditional, vocab_size=10)
    model = lsrl.compile(program, target, activations=activations, t_max=xs.shape[1])
    out = run_kernel(model.module, xs, dtype=np.float32)[0][:, -3:, 0]
    np.testing.assert_array_equal(np.round(out), answers)
    assert np.max(np.abs(out - answers)) <= 5e-3
    if (target, activations) == ("gru", "standard"):
        # at the normal form's scales a GRU weight reaches 5e14: refused for float32 rather than run wrong
        with pytest.raises(lsrl.CompileError, match="cannot stay accurate in float32"):
            lsrl.compile(program, target, activations=activations, t_max=xs.shape[1], pipeline="debranch",
                         dtype="float32")
        return
    without = lsrl.compile(program, target, activations=activations, t_max=xs.shape[1], pipeline="debranch")
    out = run_kernel(without.module, xs, dtype=np.float32)[0][:, -3:, 0]
    assert np.mean(np.round(out) != answers) > 0.5  # what the normal form's scales did (67–100 % wrong)


@pytest.mark.parametrize("step", [True, False])
def test_a_lone_unit_is_put_on_integers(step):
    # x ≥ 0, so 1000·ReLU(x − 1/1000) − 1000x has one unit: held as ReLU(1000 x − 1) its row and its reader's
    # weight are integers, where the program's 0.999 is not a float.  In f_larger(x, 0) the same unit has a linear
    # partner, ReLU(1000 x), 0.001 apart: debranch keeps the two a step's pair, one integer row, biases 0 and −1
    x = Input(1, lower=0, upper=9, integer=True)
    program = ForEach(f_larger(x, 0.0) if step else lsrl.Linear(lsrl.Concat([lsrl.ReLU(x - 0.001), x]),
                                                                 [[1000.0, -1000.0]]))
    module = opt.run(program.ir, "debranch,rescale-units")
    relu = next(op for op in module.ops if op.kind == "relu")
    A, b = _rows_and_biases(relu.operands[0])  # the pair, or the unit and the carrier of x
    assert (A.ravel().tolist(), b.tolist()) == (([1000.0, 1000.0], [0.0, -1.0]) if step else
                                                ([1000.0, 1.0], [-1.0, 0.0]))
    reader = module.ops[module.ops.index(relu) + 1]
    assert np.all(reader.attrs["A"].to_dense() == np.round(reader.attrs["A"].to_dense()))
    xs = np.arange(10.0).reshape(1, 10, 1)
    np.testing.assert_array_equal(interpret(module, xs), interpret(program.ir, xs))


def test_a_unit_is_not_put_on_integers_its_reader_would_read_as_a_fraction():
    # ReLU(x − 1/1000) read with weight 1 (not the step's 1000): as ReLU(1000 x − 1) it would be read with 0.001
    x = Input(1, lower=0, upper=9, integer=True)
    program = ForEach(lsrl.ReLU(lsrl.ReLU(x - 0.001) - 0.5))
    module = opt.run(program.ir, "debranch,rescale-units")
    relu = next(op for op in module.ops if op.kind == "relu")
    A, b = _rows_and_biases(relu.operands[0])
    assert A.ravel().tolist() == [1.0] and b.tolist() == [-0.001]


def test_a_product_is_held_with_integer_factors():
    # debranch scales a conditional's product factors by 10^12 and 10^-12; rescale-units takes both back to the
    # program's integers, so float32 multiplies x by an exact 0 or 1
    model = lsrl.compile(token_map(3, "multiplicative", vocab_size=10, counter="permutation"), t_max=123)
    factors = [op.operands[0] for op in model._layer_form.ops if op.kind == "multi"]
    weights = np.concatenate([f.attrs["A"].to_dense().ravel() for f in factors])
    weights = np.abs(weights[weights != 0])
    assert weights.max() <= 1000 and weights.min() >= 1e-3


def test_running_the_passes_leaves_their_input_as_it_was():
    # opt.run clones its input, but a clone shares the metadata's lists: the passes that edit the layout copy it
    layer_form = opt.run(token_map(3, "multiplicative").ir, "debranch")
    layout = [list(slots) for slots in layer_form.metadata["layout"]]
    first = str(opt.run(layer_form, "rescale-units,materialize-steps"))
    assert [list(slots) for slots in layer_form.metadata["layout"]] == layout
    assert str(opt.run(layer_form, "rescale-units,materialize-steps")) == first
