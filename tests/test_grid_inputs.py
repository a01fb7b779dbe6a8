"""Inputs declared on a grid (``Input(grid=...)``): validated where declared, kept through the IR text, saving and
compilation, checked when a model runs, and used by the error bound — the paper's continuous program with its
queries on the prompt's grid (``continuous_approximator(..., n_levels=8)``) gets bounds that say something, and
the standard GRU compiles its λ-conditionals for float32 there."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import lsrl
from lsrl import programs as P
from lsrl.ir.interpreter import interpret
from lsrl.ir.parser import parse as parse_module
from lsrl.ir.printer import print_module
from lsrl.runtime import kernel_available

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="float32 runs need the C++ kernel")
LEVELS = 8


@pytest.mark.parametrize("grid, kwargs, error, message", [
    (-1.0, {}, ValueError, r"grid\[0\] = -1.0: a step must be 0 \(any value\) or a positive float64 number"),
    (0.1, {}, ValueError, r"grid\[0\] = 0.1: the values lower \+ k·step from 0.0 to 0.9 are not all float64"),
    ([0.5], {}, lsrl.ShapeError, r"grid has shape \(1,\), expected a number or length 2"),
    (0.5, {"upper": None}, ValueError, r"a gridded feature needs finite lower and upper bounds"),
    (1.0, {"integer": True}, ValueError, r"grid and integer=True together"),
    (0.5, {"lower": [None, 0.0]}, ValueError, r"^Input: grid\[0\] = 0.5: a gridded feature needs finite lower"),
    (True, {}, TypeError, r"grid must be a number or a sequence of numbers, got True"),
    ("0.5", {}, TypeError, r"grid must be a number or a sequence of numbers, got '0.5'"),
])
def test_a_grid_is_validated_where_it_is_declared(grid, kwargs, error, message):
    arguments = {"lower": 0.0, "upper": 1.0, "grid": grid, **kwargs}
    with pytest.raises(error, match=message):
        lsrl.Input(2, **arguments)


def test_a_gridded_feature_may_sit_beside_unbounded_ones():
    # bounds of ±inf on a feature without a grid have no exact value; only a gridded feature's bounds are read
    x = lsrl.Input(2, lower=[0, None], upper=[1, None], grid=[0.5, 0])
    assert x.op.attrs["grid"].values.tolist() == [0.5, 0.0]
    program = P.continuous_approximator(2, 1, "multiplicative", n_levels=LEVELS)  # its value slots unbounded
    assert program.ir.input.attrs["grid"].values.tolist() == [1 / 16] * 3 + [0.0]


def test_a_grid_finer_than_float32_holds_is_charged_its_rounding():
    from lsrl.assumptions import InputBounds
    from lsrl.passes.error_bound import ErrorAnalysis
    # 2^30 + 1 values in [0, 1]: known by their lattice only, which float32 cannot hold (1 − 2^-30 is 1.0 there)
    module = parse_module("""lsrl.module @fine(%x: 1 {lower = [0.0], upper = [1.0], grid = [9.313225746154785e-10]}) -> 1 {
  return %x : 1
}""")
    assert ErrorAnalysis(module, "float64")[module.input].err[0] == 0.0
    assert ErrorAnalysis(module, "float32")[module.input].err[0] == 2.0 ** -24
    # the run's check is exact on a float32 array too (1.0625 is not on 1 + 2^-30 + k/16)
    offset = lsrl.Input(1, lower=1 + 2.0 ** -30, upper=2.0, grid=1 / 16)
    with pytest.raises(lsrl.InputDomainError, match="is not on the grid"):
        InputBounds(offset.op).check(np.array([[[1.0625]]], dtype=np.float32), "check")


def test_a_grid_survives_the_ir_text_and_a_bad_one_is_refused_with_its_location():
    x = lsrl.Input(3, lower=[0, 0, -2], upper=[1, 1, 2], grid=[1 / 16, 1 / 16, None])
    text = print_module(lsrl.ForEach(x[0:2] * 2).ir)
    assert "grid = [0.0625, 0.0625, 0.0]" in text
    assert parse_module(text).input.attrs["grid"].values.tolist() == [0.0625, 0.0625, 0.0]
    bad = text.replace("grid = [0.0625, 0.0625, 0.0]", "grid = [0.0625, 0.1, 0.0]")
    with pytest.raises(lsrl.ParseError, match=r"<string>:1:\d+: .*grid\[1\] = 0.1: the values lower \+ k·step"):
        parse_module(bad)


def _grid_case(conditional: str, n_levels: int | None = LEVELS, batch: int = 4):
    """The continuous program (2 → 1, values within 2) and prompts whose queries are their cells' centres, with the
    value of ``f`` there."""
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, size=(1, 2))

    def f(q):
        return np.tanh(w @ np.asarray(q)) * 2
    prompt = P.continuous_prompt(f, 2, 1, LEVELS)
    queries = [P.cell_centre(q, LEVELS) for q in rng.uniform(0, 1, (batch, 2))]
    xs = np.stack([np.vstack([P.continuous_query(q, 1)[None], prompt]) for q in queries])
    program = P.continuous_approximator(2, 1, conditional, value_bound=2.0, n_levels=n_levels)
    return program, xs, np.array([f(q)[0] for q in queries])


def test_a_model_refuses_an_input_off_its_grid(tmp_path):
    program, xs, _ = _grid_case("multiplicative")
    model = lsrl.compile(program, t_max=xs.shape[1])
    off = xs.copy()
    off[1, 0, 1] = 0.3  # a query coordinate between grid points
    message = r"x\[batch=1, step=0, coord=1\] = 0.3 is not on the grid 0.0 \+ k·0.0625 that input %x declares"
    with pytest.raises(lsrl.InputDomainError, match=message):
        model(off)
    with pytest.raises(lsrl.InputDomainError, match=message):
        interpret(program.ir, off, check_domain=True)
    model(off, check_assumptions=False)
    model.save(tmp_path / "m")
    loaded = lsrl.load(tmp_path / "m")
    assert loaded.module.input.attrs["grid"].values.tolist() == [0.0625] * 3 + [0.0]
    with pytest.raises(lsrl.InputDomainError, match=message):
        loaded(off)
    # a saved grid of the wrong length is a format error, not a crash
    document = json.loads((tmp_path / "m" / "model.json").read_text())
    document["input"]["grid"]["length"] = 3
    (tmp_path / "m" / "model.json").write_text(json.dumps(document))
    with pytest.raises(lsrl.ModelFormatError, match="input.grid"):
        lsrl.load(tmp_path / "m")


def test_an_exact_input_is_checked_against_its_grid_in_rationals():
    from fractions import Fraction
    program, xs, _ = _grid_case("multiplicative")
    exact = xs.astype(object)
    assert interpret(program.ir, exact, exact=True).shape == (4, xs.shape[1], 1)
    exact[0, 3, 1] = Fraction(1, 3)
    with pytest.raises(lsrl.InputDomainError, match=r"x\[batch=0, step=3, coord=1\] = 1/3 is not on the grid"):
        interpret(program.ir, exact, exact=True, check_domain=True)


@needs_kernel
@pytest.mark.parametrize("conditional", ["direct", "multiplicative"])
@pytest.mark.parametrize("target, activations", [("linear_rnn", "ideal"), ("lstm", "standard"),
                                                 ("gru", "standard")])
def test_a_declared_grid_gives_the_continuous_program_bounds_that_hold(target, activations, conditional):
    # measured (kernel, both conditionals): float64 bounds 6.5e-12 to 1.3e-8, float32 3.5e-3 to 9.1e-3 with the
    # grid; without it 100 to 9e21 and 5.6e10 to 2.4e30 (the queries may sit on a step's ramp)
    program, xs, _ = _grid_case(conditional)
    undeclared, _, _ = _grid_case(conditional, n_levels=None)
    for dtype, useful, useless in (("float64", 1e-7, 50.0), ("float32", 2e-2, 1e9)):
        model = lsrl.compile(program, target, activations=activations, t_max=xs.shape[1], dtype=dtype)
        bound = float(np.max(model.error_bound_in(dtype)))
        exact = np.asarray(interpret(model._layer_form, xs, exact=True), dtype=np.float64)
        error = float(np.max(np.abs(model(xs, backend="kernel", dtype=dtype) - exact)))
        assert error <= bound <= useful, (dtype, error, bound)
        try:
            before = lsrl.compile(undeclared, target, activations=activations, t_max=xs.shape[1], dtype=dtype)
        except lsrl.CompileError:  # the standard GRU's λ-conditionals in float32: refused without the grid
            assert (target, dtype, conditional) == ("gru", "float32", "direct")
            continue
        assert float(np.max(before.error_bound_in(dtype))) >= useless


def test_a_repeated_cell_prompt_answers_the_sum_of_its_values():
    program = P.continuous_approximator(2, 1, "multiplicative", value_bound=1.0, n_levels=LEVELS)
    values = [0.75, -0.25, 0.5]
    xs = P.repeated_cell_input([0.4, 0.7], values, LEVELS)[None]
    assert xs.shape == (1, 4, 4)
    assert interpret(program.ir, xs, exact=True, check_domain=True)[0, -1, 0] == sum(values)


@needs_kernel
@pytest.mark.parametrize("conditional", ["direct", "multiplicative"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_continuous_bound_is_within_100x_of_an_error_of_its_domain(conditional, dtype):
    # the paper's prompt (every cell once) errs 3·10⁴–6·10⁴ times below the bound; a prompt repeating the query's
    # cell with values just below 1, picked one by one to round the running sum furthest, is in the declared
    # domain too: measured bound / error 20.7–37.5 (linear_rnn, both dtypes and conditionals)
    program = P.continuous_approximator(2, 1, conditional, value_bound=1.0, n_levels=LEVELS)
    model = lsrl.compile(program, t_max=1 + LEVELS ** 2)
    bound = float(np.max(model.error_bound_in(dtype)))
    ulp = 2.0 ** (-24 if dtype == "float32" else -53)
    run = lambda xs: model(xs, backend="kernel", dtype=dtype)  # noqa: E731
    xs = P.greedy_rounding_input(run, [0.4, 0.7], LEVELS, 1 - ulp * np.arange(64), direction=-1.0)
    exact = np.asarray(interpret(model._layer_form, xs, exact=True), dtype=np.float64)
    error = float(np.max(np.abs(run(xs) - exact)))
    assert bound / 100 <= error <= bound, (error, bound)


def test_a_lambda_conditional_of_a_real_value_is_bounded_by_its_pieces():
    # x − 10¹⁰·(1 − c) with c ∈ {0, 1} from an integer feature: where c = 1 its terms reach 10¹⁰ and round at 10¹⁰'s
    # ulp, but there the unit is off by far; near its breakpoint the terms are small.  The group's range is cut
    # into pieces a factor 2^8 apart around the breakpoint (without them: 1.8e-5 in float64, 9.5e3 in float32)
    x = lsrl.Input(2, lower=[-2, 0], upper=[2, 3], grid=[0, 1])
    program = lsrl.ForEach(lsrl.f_ifelse(lsrl.f_larger(x[1], 1.5), x[0], x[0] * 0))
    rng = np.random.default_rng(0)
    xs = np.stack([rng.uniform(-2, 2, (3, 30)), rng.integers(0, 4, (3, 30))], axis=-1)
    for dtype, most in (("float64", 1e-13), ("float32", 1e-4)):  # measured 2.8e-14 and 1.5e-5
        model = lsrl.compile(program, t_max=30, dtype=dtype)
        bound = float(np.max(model.error_bound_in(dtype)))
        assert bound <= most, (dtype, bound)
        if kernel_available():
            exact = np.asarray(interpret(program.ir, xs, exact=True), dtype=np.float64)
            assert float(np.max(np.abs(model(xs, backend="kernel", dtype=dtype) - exact))) <= bound


def _onnx_run(model, xs):
    import onnxruntime as ort
    session = ort.InferenceSession(model.to_onnx(None).SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: xs.astype(np.float32).transpose(1, 0, 2)})[0].transpose(1, 0, 2)


@needs_kernel
@pytest.mark.parametrize("conditional", P.CONDITIONALS)
def test_the_standard_gru_answers_the_continuous_program_in_float32_on_a_declared_grid(conditional):
    program, xs, want = _grid_case(conditional)
    model = lsrl.compile(program, "gru", activations="standard", t_max=xs.shape[1], dtype="float32")
    # the bound the lowering keeps a λ-conditional under: 1e-4 of the output's range (measured 7.8e-3 to 9.1e-3 of
    # a range of 130 — the sum over 65 steps of values up to 2 — with λ; 4.7e-3 without)
    assert float(np.max(model.error_bound_in("float32"))) <= 1e-4 * 130
    runs = {"kernel": model(xs, backend="kernel", dtype="float32")}
    if importlib.util.find_spec("torch") is not None:
        import torch
        with torch.no_grad():
            runs["torch"] = model.to_torch().float()(torch.tensor(xs, dtype=torch.float32)).numpy()
    if importlib.util.find_spec("onnxruntime") is not None:
        runs["onnxruntime"] = _onnx_run(model, xs)
    for name, out in runs.items():  # measured: 8e-8 off f at the cells' centres (float32 holds f's values so)
        assert np.max(np.abs(out[:, -1, 0] - want)) <= 1e-6, name


def test_the_pass_checker_draws_its_inputs_on_the_grid():
    from lsrl.assumptions import InputBounds
    from lsrl.opt import check_inputs
    program, _, _ = _grid_case("direct")
    xs = check_inputs(program.ir, batch=6, steps=20)
    InputBounds(program.ir.input).check(xs, "check_inputs")  # raises for a value off the grid
    assert len(np.unique(xs[:, :, 0])) > 4  # spread over the grid, not one point
