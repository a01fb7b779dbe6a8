"""Generators that reach, with a guaranteed share, the patterns the compiler rewrites — and say so.

The general program generator (tests/strategies.py) seldom builds a Multi with a constant half, a product that
survives to a target's M stage, a chain of counters read at their bound or a λ-conditional.  Each strategy here
builds one of those around a random program, every test records which pattern an example exercised
(``hypothesis.event``, shown by ``pytest --hypothesis-show-statistics``) and asserts the share it reached, so a
generator that stops reaching a rewrite fails instead of passing vacuously.  Example counts follow the active
hypothesis profile (tests/conftest.py).  Oracles: ``evaluate_per_token`` (tests/reference_eval.py) and bounds
worked out by hand.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import assume, event, given, strategies as st

import lsrl
from lsrl.ir import interpret, parse
from lsrl.ir.core import Module, Op
from lsrl.ir.matrix import Matrix, Vector
from lsrl.opt import run as run_pipeline
from lsrl.passes.range_analysis import compute_ranges
from lsrl.sugar import CONDITIONAL_VARIANTS, f_conditional, f_larger
from reference_eval import evaluate_per_token
from strategies import programs, random_sequences
from test_targets import rel_err


def _rebuild(ops: list[Op], output: Op) -> Module:
    for k, op in enumerate(ops):
        op.name = f"v{k}" if k else "x"
    return Module(ops, output, name="case").verify()


def _bounded_input(draw, dim: int) -> Op:
    lo = np.array([float(draw(st.integers(-2, 0))) for _ in range(dim)])
    hi = lo + np.array([float(draw(st.integers(1, 3))) for _ in range(dim)])
    return Op("input", (), {"dim": dim, "lower": Vector(lo), "upper": Vector(hi)})


def _dense_rows(rng, m: int, d: int, dynamic_columns: int | None = None) -> np.ndarray:
    """Random rows with a non-zero entry each among the first ``dynamic_columns`` columns (default: all) —
    columns that read a dynamic value, so the row is never a disguised constant."""
    rows = np.round(rng.uniform(-1, 1, size=(m, d)) * 4) / 4
    rows[np.arange(m), rng.integers(0, dynamic_columns or d, size=m)] = rng.choice([-1.0, -0.5, 0.5, 1.0], size=m)
    return rows


# ------------------------------------------------------------------------------------------ Multi with constant halves

HALF_LAYOUTS = ("constant first", "constant second", "mixed", "dynamic")


def _multi(rng, v: Op, dynamic_columns: int, layout: str, h: int) -> list[Op]:
    """``multi(concat(P, Q))`` of linears of ``v`` with, per output coordinate, a constant factor in ``P`` (the
    first half), in ``Q`` (the second) or in neither, as ``layout`` says."""
    if layout == "mixed":
        where = ["first", "second"] + [str(rng.choice(["first", "second"])) for _ in range(h - 2)]
    else:
        where = [{"constant first": "first", "constant second": "second", "dynamic": "none"}[layout]] * h
    halves = []
    for side in ("first", "second"):
        rows = _dense_rows(rng, h, v.dim, dynamic_columns=dynamic_columns)
        bias = np.round(rng.uniform(-2, 2, size=h) * 4) / 4
        for i, w in enumerate(where):
            if w == side:
                rows[i] = 0.0
                bias[i] = float(rng.choice([-1.5, -0.5, 0.5, 2.0, 3.0]))
        halves.append(Op("linear", [v], {"A": Matrix.from_dense(rows), "b": Vector(bias)}))
    pair = Op("concat", halves)
    return [*halves, pair, Op("multi", [pair])]


@st.composite
def multi_cases(draw):
    """A random program whose output, next to the input, feeds four Multis — one per layout of
    ``HALF_LAYOUTS`` — all read by the module's output: every example reaches both halves of the rewrite."""
    base = draw(programs(max_ops=4, allow_multi=False))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    h = draw(st.integers(2, 3))
    # the Multis read the input (dynamic on every coordinate) and the random program's output
    v = Op("concat", [base.input, base.output])
    ops = [*base.ops, v]
    multis = []
    for layout in HALF_LAYOUTS:
        ops += _multi(rng, v, base.input.dim, layout, h)
        multis.append(ops[-1])
    out = Op("concat", multis)
    return h, _rebuild([*ops, out], out)


CONSTANT_FIRST_HALF = """
lsrl.module @constant_first_half(%x: 2) -> 2 {
  %r = relu %x : 2 -> 2
  %k = linear %x {A = zeros<2x2>, b = [3.0, -0.5]} : 2 -> 2
  %c = concat %k, %r : 2, 2 -> 4
  %m = multi %c : 4 -> 2
  return %m : 2
}
"""


def test_multi_with_a_constant_first_half_scales_the_second_half():
    module = parse(CONSTANT_FIRST_HALF)
    canonical = run_pipeline(module, "canonicalize")
    assert "multi" not in {op.kind for op in canonical.ops}, str(canonical)
    xs = np.array([[[2.0, -1.0], [-3.0, 4.0], [0.5, 0.25]]])
    expected = np.maximum(xs, 0.0) * [3.0, -0.5]  # (3, -0.5) ⊙ ReLU(x), worked out by hand
    np.testing.assert_array_equal(evaluate_per_token(canonical, xs), expected)
    np.testing.assert_array_equal(evaluate_per_token(module, xs), expected)


@given(case=multi_cases(), seed=st.integers(0, 2**31))
def test_canonicalize_multi_with_a_constant_half_keeps_its_value(case, seed):
    h, module = case
    event(f"multi width {h}")
    xs = random_sequences(module, 6, 2, np.random.default_rng(seed))
    reference = evaluate_per_token(module, xs)
    assume(np.all(np.isfinite(reference)))
    canonical = run_pipeline(module, "canonicalize")
    # the three Multis with a constant factor on every coordinate became linears; the dynamic one stays
    assert [op.kind for op in canonical.ops].count("multi") == 1, str(canonical)
    # measured max 5.2e-16 relative (a product reassociated as a linear)
    assert rel_err(evaluate_per_token(canonical, xs), reference) <= 5e-14, f"{module}\n{canonical}"


# ------------------------------------------------------------------------------------------ products in target models

@st.composite
def product_cases(draw):
    """A random program plus a product of two bounded dynamic operands read by the output: ``u`` a linear of the
    input, ``w`` a linear of the input, of a decaying state or of a counter (bounded through ``t_max``)."""
    d = draw(st.integers(1, 3))
    x = _bounded_input(draw, d)
    base = draw(programs(max_ops=4, bounded_input=True, max_input_dim=d))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ops, base_out = [x], None
    if base.input.dim == d:  # re-root the random program on our bounded input
        for op in base.ops[1:]:
            op.operands = [x if o is base.input else o for o in op.operands]
        ops += base.ops[1:]
        base_out = base.output
    k = draw(st.integers(1, 2))
    source = draw(st.sampled_from(("input", "decay", "counter")))
    operand = x
    if source != "input":
        a = 0.5 if source == "decay" else 1.0
        state = Op("linstate", [x], {"A": Matrix.from_dense(np.eye(k) * a), "B": Matrix.from_dense(_dense_rows(rng, k, d)),
                                     "bias": Vector(np.zeros(k)), "init": Vector(np.zeros(k))})
        ops.append(state)
        operand = state
    u = Op("linear", [x], {"A": Matrix.from_dense(_dense_rows(rng, k, d)), "b": Vector(np.zeros(k))})
    w = Op("linear", [operand], {"A": Matrix.from_dense(_dense_rows(rng, k, operand.dim)), "b": Vector(np.zeros(k))})
    pair = Op("concat", [u, w])
    prod = Op("multi", [pair])
    ops += [u, w, pair, prod]
    output = prod
    if base_out is not None and draw(st.booleans()):
        output = Op("concat", [prod, base_out])
        ops.append(output)
    return source, _rebuild(ops, output)


def product_unit_count(model) -> int:
    """Units of the compiled model that multiply two values (LSTM ``product±±``, GRU ``pair_p``)."""
    return sum(unit["end"] - unit["start"] for info in model.layout[1:] if isinstance(info, dict)
               for unit in info.get("units", ()) if unit["role"].startswith(("product", "pair_p")))


def test_compiled_models_have_product_stages():
    """At least 30 % of the compiled LSTM/GRU models multiply in an M stage, and all of them compute the
    program (ideal mode: exact up to float64 rounding)."""
    counts: Counter = Counter()

    @given(case=product_cases(), target=st.sampled_from(("lstm", "gru")), seed=st.integers(0, 2**31))
    def check(case, target, seed):
        source, module = case
        xs = random_sequences(module, 10, 2, np.random.default_rng(seed))
        reference = evaluate_per_token(module, xs)
        assume(np.all(np.isfinite(reference)))
        model = lsrl.compile(module, target, t_max=10)
        has_products = product_unit_count(model) > 0
        event(f"{target}, operand from {source}: {'a' if has_products else 'no'} product stage")
        counts["models"] += 1
        counts["with products"] += has_products
        # measured max 2.7e-16 (lstm), 4.2e-16 (gru: absolute precision 2^-53·K·|v|, K the gate operand's bound)
        assert rel_err(model(xs), reference) <= 4e-14, f"{target}\n{module}"

    check()
    assert counts["with products"] >= 0.3 * counts["models"], counts


# ------------------------------------------------------------------------------------------ state chains at their bound

@st.composite
def state_chain_cases(draw):
    """A chain of 1–3 states, each driven by the previous one (counters, decays, passthroughs), on a bounded
    input, with ``t_max`` and input sequences that sit at the input's bounds (where the states reach theirs)."""
    d = draw(st.integers(1, 2))
    x = _bounded_input(draw, d)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ops, states, prev = [x], [], x
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("counter", "counter", "decay", "passthrough")))
        k = draw(st.integers(1, 2))
        a = {"counter": 1.0, "decay": 0.5, "passthrough": 0.0}[kind]
        init = np.round(rng.uniform(-1, 1, size=k) * 2) / 2
        state = Op("linstate", [prev], {"A": Matrix.from_dense(np.eye(k) * a),
                                        "B": Matrix.from_dense(_dense_rows(rng, k, prev.dim)),
                                        "bias": Vector(np.round(rng.uniform(-1, 1, size=k) * 2) / 2),
                                        "init": Vector(init)})
        ops.append(state)
        states.append(kind)
        prev = state
    out = Op("concat", ops[1:]) if len(ops) > 2 else ops[1]
    if len(ops) > 2:
        ops.append(out)
    t_max = draw(st.integers(1, 12))
    lo, hi = x.attrs["lower"].values.astype(float), x.attrs["upper"].values.astype(float)
    corners = rng.integers(0, 2, size=(4, t_max, d)).astype(float)
    corners[0], corners[1] = 0.0, 1.0  # constant extremes: the counters' bounds are reached
    xs = lo + corners * (hi - lo)
    return states, _rebuild(ops, out), t_max, xs


@given(case=state_chain_cases())
def test_range_analysis_bounds_state_chains_at_their_extremes(case):
    states, module, t_max, xs = case
    event(f"chain of {len(states)}: {'+'.join(states)}")
    lo, hi = compute_ranges(module, t_max=t_max)[id(module.output)]
    values = evaluate_per_token(module, xs)
    assert np.all(values >= lo) and np.all(values <= hi), f"{module}\nranges {lo} {hi}\nvalues {values}"


# ------------------------------------------------------------------------------------------ λ-conditionals

@st.composite
def conditional_cases(draw):
    """``value if x0 > x1 else 0`` in one of the five Fig. 4 variants, on integer tokens."""
    variant = draw(st.sampled_from(CONDITIONAL_VARIANTS))
    x = lsrl.Input(3, lower=[0, 0, -4], upper=[4, 4, 4])
    cond = f_larger(x[0], x[1])
    value = x[2] * draw(st.sampled_from((1, 2, -3))) + draw(st.sampled_from((0, 1)))
    program = lsrl.ForEach(f_conditional(variant, cond, value, t_nonneg=False))
    return variant, program


@given(case=conditional_cases(), target=st.sampled_from(("relu_rnn", "lstm", "gru")), seed=st.integers(0, 2**31))
def test_lambda_conditionals_compile_to_their_value(case, target, seed):
    variant, program = case
    assume(not (target == "relu_rnn" and variant.startswith("multiplicative")))  # a product: refused
    event(f"{target}: {variant}")
    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.integers(0, 5, size=(2, 8, 2)), rng.integers(-4, 5, size=(2, 8, 1))], axis=2)
    xs = xs.astype(float)
    reference = evaluate_per_token(program.ir, xs)
    model = lsrl.compile(program, target, t_max=8)
    out = model(xs)
    np.testing.assert_array_equal(np.round(out), reference)
    # measured max absolute error: 0 for the λ-conditionals (direct, optimized, step_optimized), 1.4e-12 for the
    # multiplicative ones (LSTM, GRU) — over 200 examples
    assert np.max(np.abs(out - reference)) <= 1e-10


def test_default_pipeline_keeps_state_chain_values():
    """The compiler's own pipeline on a counter chain, run at the bound: the output at t_max is exact."""
    x = Op("input", (), {"dim": 1, "lower": Vector([0.0]), "upper": Vector([1.0])})
    s1 = Op("linstate", [x], {"A": Matrix.from_dense([[1.0]]), "B": Matrix.from_dense([[1.0]])})
    s2 = Op("linstate", [s1], {"A": Matrix.from_dense([[1.0]]), "B": Matrix.from_dense([[1.0]])})
    module = _rebuild([x, s1, s2], s2)
    xs = np.ones((1, 6, 1))
    for target in ("relu_rnn", "lstm", "gru"):
        model = lsrl.compile(module, target, t_max=6)
        np.testing.assert_array_equal(model(xs)[0, :, 0], [1, 3, 6, 10, 15, 21])
    assert np.array_equal(interpret(module, xs)[0, :, 0], [1, 3, 6, 10, 15, 21])
