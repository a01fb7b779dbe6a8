"""The paper's three programs (programs.md) run by the interpreter, and their data builders."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from lsrl.lang import ForEach
from lsrl.programs import (CONDITIONALS, cell_centre, continuous_approximator, continuous_graph,
                           continuous_prompt, continuous_query, create_test_target_function,
                           draw_queries, more_ones, random_token_map, rotation_counter_exact,
                           token_answer, token_map, token_map_graph, token_prompt)

# λ = 1e10 carries ~2e-6 of float64 rounding into the step-based form's outputs.
FLOAT_TOL = {"step_optimized": 1e-5}


def as_float(values) -> np.ndarray:
    return np.asarray(np.asarray(values, dtype=object).astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Fig. 1: more ones than zeros

def test_more_ones_notebook_example():
    bits = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=np.float64)
    out = more_ones()(bits.reshape(-1, 1))
    assert out.shape == (10, 1)
    np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])


def test_more_ones_random_bits_batch():
    rng = np.random.RandomState(1)
    bits = rng.randint(0, 2, size=(16, 40)).astype(np.float64)
    expected = (np.cumsum(bits, axis=1) > np.cumsum(1 - bits, axis=1)).astype(np.float64)
    out = more_ones()(bits[:, :, None])
    assert out.shape == (16, 40, 1)
    np.testing.assert_array_equal(out[:, :, 0], expected)


@pytest.mark.parametrize("scale", [1, 10])
def test_more_ones_exact_and_small_scale(scale):
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1], dtype=np.float64)
    expected = (np.cumsum(bits) > np.cumsum(1 - bits)).astype(int)
    out = more_ones(scale=scale)(bits.reshape(-1, 1), exact=True)
    assert [v == e for v, e in zip(out[:, 0], expected)] == [True] * len(bits)


# ---------------------------------------------------------------------------------------------
# Listing 1: continuous functions

def away_from_edges(rng, n, d_in, n_levels, margin):
    """Uniform queries in (0,1)^d_in at least ``margin`` from every cell boundary i/N."""
    out = []
    while len(out) < n:
        q = rng.rand(d_in)
        gap = np.abs(q * n_levels - np.round(q * n_levels)) / n_levels
        if np.all(gap >= margin):
            out.append(q)
    return np.array(out)


def continuous_inputs(queries, prompt, d_out):
    return np.stack([np.vstack([continuous_query(q, d_out), prompt]) for q in queries])


@pytest.mark.parametrize("conditional", CONDITIONALS)
@pytest.mark.parametrize("d_in,d_out", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_continuous_answer_is_cell_value(conditional, d_in, d_out):
    scale, n_levels = 1000, 6
    rng = np.random.RandomState(10 * d_in + d_out)
    f = create_test_target_function(d_in, d_out, rng=rng)
    prompt = continuous_prompt(f, d_in, d_out, n_levels)
    queries = away_from_edges(rng, 6, d_in, n_levels, 2 / scale)
    out = continuous_approximator(d_in, d_out, conditional, scale=scale)(
        continuous_inputs(queries, prompt, d_out))
    assert out.shape == (len(queries), n_levels ** d_in + 1, d_out)
    answers = out[:, -1, :]
    expected = np.array([f(cell_centre(q, n_levels)) for q in queries])
    np.testing.assert_allclose(answers, expected, rtol=0, atol=FLOAT_TOL.get(conditional, 1e-12))


@pytest.mark.parametrize("conditional", CONDITIONALS)
@pytest.mark.parametrize("d_in,d_out", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_continuous_error_bound_linear_target(conditional, d_in, d_out):
    """‖answer − f(q)‖₂ ≤ δ·L·√d_in / 2 (App. B) for a linear f with known L = ‖W‖₂."""
    scale, n_levels = 1000, 5
    rng = np.random.RandomState(3 + d_in * d_out)
    weight = rng.randn(d_out, d_in)
    bias = rng.randn(d_out) * 0.5

    def f(x):
        return weight @ np.asarray(x) + bias

    lipschitz = np.linalg.norm(weight, 2)
    bound = (1 / n_levels) * lipschitz * np.sqrt(d_in) / 2
    prompt = continuous_prompt(f, d_in, d_out, n_levels)
    queries = away_from_edges(rng, 8, d_in, n_levels, 2 / scale)
    out = continuous_approximator(d_in, d_out, conditional)(
        continuous_inputs(queries, prompt, d_out))
    errors = np.linalg.norm(out[:, -1, :] - np.array([f(q) for q in queries]), axis=1)
    assert np.all(errors <= bound + FLOAT_TOL.get(conditional, 1e-12))


def test_continuous_error_bound_test_target():
    """The same bound for the paper's target family, with L estimated from the gradient norm."""
    d_in, d_out, n_levels = 2, 2, 8
    rng = np.random.RandomState(0)
    f = create_test_target_function(d_in, d_out, rng=rng)
    grid = np.array(list(itertools.product(np.linspace(0, 1, 41), repeat=d_in)))
    h = 1e-6
    jac_norms = []
    for x in grid:
        jac = np.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(d_in)], axis=1)
        jac_norms.append(np.linalg.norm(jac, 2))
    lipschitz = 1.25 * max(jac_norms)  # margin for the grid's coarseness
    bound = lipschitz * np.sqrt(d_in) / (2 * n_levels)
    prompt = continuous_prompt(f, d_in, d_out, n_levels)
    queries = away_from_edges(rng, 10, d_in, n_levels, 2e-3)
    out = continuous_approximator(d_in, d_out)(continuous_inputs(queries, prompt, d_out))
    errors = np.linalg.norm(out[:, -1, :] - f(queries), axis=1)
    assert np.all(errors <= bound)


def test_continuous_query_on_zero_lies_in_no_cell():
    f = create_test_target_function(2, 1, rng=np.random.RandomState(5))
    prompt = continuous_prompt(f, 2, 1, 4)
    xs = np.vstack([continuous_query([0.0, 0.4], 1), prompt])
    assert continuous_approximator(2, 1)(xs)[-1, 0] == 0


@pytest.mark.parametrize("conditional", ["multiplicative", "direct", "optimized"])
def test_continuous_exact_mode(conditional):
    d_in, d_out, n_levels = 2, 1, 3
    f = create_test_target_function(d_in, d_out, rng=np.random.RandomState(7))
    prompt = continuous_prompt(f, d_in, d_out, n_levels)
    q = np.array([0.7, 0.2])
    out = continuous_approximator(d_in, d_out, conditional)(
        np.vstack([continuous_query(q, d_out), prompt]), exact=True)
    answer = out[-1, 0]
    assert isinstance(answer, (Fraction, int)) or hasattr(answer, "numerator")
    # The cell (2/3, 1] × (0, 1/3] is row 2·3 + 0 of the prompt; its value is taken exactly.
    assert answer == Fraction(float(prompt[6, 1 + d_in]))
    assert float(prompt[6, 1 + d_in]) == pytest.approx(f(cell_centre(q, n_levels))[0], abs=1e-15)


def test_continuous_intermediates():
    d_in, d_out = 2, 1
    f = create_test_target_function(d_in, d_out, rng=np.random.RandomState(2))
    prompt = continuous_prompt(f, d_in, d_out, 4)
    q = np.array([0.6, 0.1])
    xs = np.vstack([continuous_query(q, d_out), prompt])
    _, nodes = continuous_graph(d_in, d_out)
    ctr = ForEach(nodes["ctr"])(xs)[:, 0]
    np.testing.assert_array_equal(ctr, np.arange(1, len(xs) + 1))
    stored = ForEach(nodes["q"])(xs)
    np.testing.assert_array_equal(stored, np.tile(q, (len(xs), 1)))
    in_cell = ForEach(nodes["in_cell"])(xs)[1:, 0]  # step 1 compares q with itself, skip it
    # cell (1/2, 3/4] × (0, 1/4] is row 2·4 + 0 of the prompt
    np.testing.assert_array_equal(np.flatnonzero(in_cell), [8])


def test_continuous_prompt_layout():
    def f(x):
        return np.array([x[0] + 10 * x[1], -x[0]])

    prompt = continuous_prompt(f, 2, 2, 3)
    assert prompt.shape == (9, 5)
    np.testing.assert_allclose(prompt[:, 0], 1 / 3)
    lowers = np.array(list(itertools.product([0, 1 / 3, 2 / 3], repeat=2)))
    np.testing.assert_allclose(prompt[:, 1:3], lowers)  # first dimension outermost
    centres = lowers + 1 / 6
    np.testing.assert_allclose(prompt[:, 3:], np.array([f(c) for c in centres]))
    np.testing.assert_array_equal(continuous_query([0.25, 0.5], 2), [0.25, 0.5, 0, 0, 0])
    with pytest.raises(ValueError, match="d_out"):
        continuous_prompt(f, 2, 3, 2)


def test_continuous_ir_names_and_states():
    program = continuous_approximator(2, 2)
    text = str(program.ir)
    for name in ("ctr", "q", "bump", "in_cell", "active", "y"):
        assert name in text
    linstates = [op for op in program.ir.ops if op.kind == "linstate"]
    assert sorted(op.dim for op in linstates) == [1, 2, 2]
    np.testing.assert_array_equal(program.input.lower.array(),
                                  [0, 0, 0, -np.inf, -np.inf])
    bounded = continuous_approximator(1, 1, value_bound=3).input
    np.testing.assert_array_equal(bounded.upper.array(), [1, 1, 3])
    np.testing.assert_array_equal(bounded.lower.array(), [0, 0, -3])


# ---------------------------------------------------------------------------------------------
# Listing 2: token maps

def token_batch(queries, mapping):
    return np.stack([token_prompt(q, mapping) for q in queries])


@pytest.mark.parametrize("conditional", CONDITIONALS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_token_map_answers(conditional, n):
    rng = np.random.RandomState(100 + n)
    vocab = 10
    mapping = random_token_map(n, 6, vocab, rng)
    queries = draw_queries(mapping, 4, rng)
    out = token_map(n, conditional, vocab_size=vocab)(token_batch(queries, mapping))
    assert out.shape == (4, n + 2 * n * 6, 1)
    answers = out[:, -n:, 0]
    np.testing.assert_allclose(answers, [token_answer(q, mapping) for q in queries],
                               rtol=0, atol=FLOAT_TOL.get(conditional, 1e-9))


LETTERS = {c: i + 1 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def word(text):
    return tuple(LETTERS[c] for c in text)


FIG3_MAP = {word(k): word(v) for k, v in
            [("AUS", "VIE"), ("BUL", "SOF"), ("CAN", "OTT"), ("DEN", "COP"), ("ENG", "LON")]}


@pytest.mark.parametrize("conditional", CONDITIONALS)
def test_token_map_fig3_answer(conditional):
    xs = token_prompt(word("CAN"), FIG3_MAP)
    assert xs.shape == (33, 1)
    out = token_map(3, conditional, vocab_size=27)(xs)
    np.testing.assert_allclose(out[-3:, 0], word("OTT"), rtol=0,
                               atol=FLOAT_TOL.get(conditional, 1e-9))


def test_token_map_fig3_trace():
    xs = token_prompt(word("CAN"), FIG3_MAP)
    _, nodes = token_map_graph(3, "multiplicative", vocab_size=27)

    def trace(node):
        return ForEach(node)(xs)

    np.testing.assert_array_equal(trace(nodes["g"])[:, 0], np.arange(33))
    q = trace(nodes["q"])
    np.testing.assert_array_equal(q[0], [3, 0, 0])
    np.testing.assert_array_equal(q[1], [3, 1, 0])
    np.testing.assert_array_equal(q[2:], np.tile(word("CAN"), (31, 1)))
    np.testing.assert_array_equal(np.flatnonzero(trace(nodes["match"])[:, 0]), [15, 16, 17, 23])
    np.testing.assert_array_equal(np.flatnonzero(trace(nodes["all_match"])[:, 0]), [18])
    started = trace(nodes["started"])[:, 0]
    np.testing.assert_array_equal(started, [0] * 18 + [18] * 15)
    np.testing.assert_array_equal(np.flatnonzero(trace(nodes["copy_on"])[:, 0]), [18, 19, 20])
    regs = np.hstack([trace(r) for r in nodes["reg"]])
    np.testing.assert_array_equal(regs[18], [LETTERS["O"], 0, 0])
    np.testing.assert_array_equal(regs[19], [LETTERS["O"], LETTERS["T"], 0])
    np.testing.assert_array_equal(regs[20:], np.tile(word("OTT"), (13, 1)))
    np.testing.assert_array_equal(trace(nodes["out"])[30:, 0], word("OTT"))


@pytest.mark.parametrize("counter", ["permutation", "auto"])
def test_token_map_exact_mode(counter):
    """Exact arithmetic; the rotation counter (``auto`` at n = 2) runs on the binary values of its
    float cos/sin, which stay exact enough for a short prompt."""
    rng = np.random.RandomState(4)
    mapping = random_token_map(2, 5, 10, rng)
    query = draw_queries(mapping, 1, rng)[0]
    out = token_map(2, "multiplicative", vocab_size=10, counter=counter)(
        token_prompt(query, mapping), exact=True)
    assert tuple(out[-2:, 0]) == token_answer(query, mapping)


def test_token_map_counter_choice():
    assert rotation_counter_exact(70) and not rotation_counter_exact(71)        # μ = 1000
    assert rotation_counter_exact(6, scale=10) and not rotation_counter_exact(7, scale=10)
    assert token_map_graph(3)[1]["counter"] == "rotation"
    assert token_map_graph(3, scale=10)[1]["counter"] == "rotation"   # 2n = 6 ≤ 6 at μ = 10
    assert token_map_graph(4, scale=10)[1]["counter"] == "permutation"
    with pytest.raises(ValueError, match="permutation"):
        token_map(4, scale=10, counter="rotation")  # f_modulo_counter refuses an inexact rotation
    with pytest.raises(ValueError, match="auto, rotation, permutation"):
        token_map(2, counter="modular")


@pytest.mark.parametrize("counter", ["rotation", "permutation"])
def test_token_map_counters_agree(counter):
    rng = np.random.RandomState(8)
    mapping = random_token_map(3, 5, 10, rng)
    queries = draw_queries(mapping, 3, rng)
    out = token_map(3, counter=counter)(token_batch(queries, mapping))
    np.testing.assert_allclose(out[:, -3:, 0], [token_answer(q, mapping) for q in queries],
                               atol=1e-9, rtol=0)


def test_token_map_large_n_uses_permutation_counter():
    n = 36
    rng = np.random.RandomState(9)
    mapping = random_token_map(n, 2, 10, rng)
    query = list(mapping)[1]
    output, nodes = token_map_graph(n)
    assert nodes["counter"] == "permutation"   # 2n = 72 > 70
    out = ForEach(output)(token_prompt(query, mapping))
    np.testing.assert_allclose(out[-n:, 0], token_answer(query, mapping), atol=1e-9, rtol=0)


def test_token_prompt_layout():
    mapping = {(1, 2): (3, 4), (5, 6): (7, 8)}
    np.testing.assert_array_equal(token_prompt((5, 6), mapping)[:, 0],
                                  [5, 6, 1, 2, 3, 4, 5, 6, 7, 8])
    with pytest.raises(ValueError):
        token_prompt((1, 2, 3), mapping)


def test_token_map_ir_names_and_states():
    program = token_map(3)
    text = str(program.ir)
    for name in ("g", "is_prompt", "is_key", "match", "buf", "all_match", "started", "copy_on",
                 "reg_0", "out_2"):
        assert name in text
    linstates = [op for op in program.ir.ops if op.kind == "linstate"]
    # g, two rotation counters, q, buf, started, n registers
    assert sorted(op.dim for op in linstates) == sorted([1, 2, 2, 3, 4, 1, 1, 1, 1])
    assert list(program.input.lower.array()) == [0] and list(program.input.upper.array()) == [np.inf]
    assert list(token_map(3, vocab_size=10).input.upper.array()) == [9]


# ---------------------------------------------------------------------------------------------
# Conditional variants and argument checks

@pytest.mark.parametrize("builder", [lambda c: continuous_approximator(1, 1, c),
                                     lambda c: token_map(2, c)])
def test_invalid_conditional(builder):
    with pytest.raises(ValueError, match="direct, optimized, step_optimized, multiplicative, "
                                         "multiplicative_optimized"):
        builder("original")


def count_kind(program, kind):
    return sum(op.kind == kind for op in program.ir.ops)


def test_variant_structure():
    """Multiplicative variants gate with Multi; the optimized form uses fewer ReLU ops than direct."""
    for n in (2,):
        programs = {c: token_map(n, c) for c in CONDITIONALS}
        assert count_kind(programs["multiplicative"], "multi") > 0
        assert count_kind(programs["multiplicative_optimized"], "multi") > 0
        for c in ("direct", "optimized", "step_optimized"):
            assert count_kind(programs[c], "multi") == 0
        assert count_kind(programs["optimized"], "relu") < count_kind(programs["direct"], "relu")


def test_reference_graph_sizes():
    """Node counts of the reference's graphs (compile.md §5–§6), so a reference-faithful compile
    starts from the same DAG: Fig. 1 13 nodes; Listing 1 89–141; Listing 2 as tabulated."""
    assert len(more_ones().ir.ops) == 13
    sizes = {c: len(continuous_approximator(2, 2, c).ir.ops) for c in CONDITIONALS}
    assert min(sizes.values()) == 89 and max(sizes.values()) == 141
    expected = {"direct": 980, "optimized": 630, "step_optimized": 1019, "multiplicative": 700,
                "multiplicative_optimized": 655}
    assert {c: len(token_map(3, c).ir.ops) for c in CONDITIONALS} == expected
    assert len(token_map(10, "multiplicative_optimized").ir.ops) == 1677


# ---------------------------------------------------------------------------------------------
# Data builders

def test_target_function_draw_order_and_range():
    np.random.seed(3)
    f = create_test_target_function(2, 3)
    queries = np.random.rand(4, 2)
    rng = np.random.RandomState(3)
    points = rng.rand(5, 2) * 1.2 - 0.1
    values = rng.rand(5, 3) * 6 - 3
    np.testing.assert_array_equal(f.control_points, points)
    np.testing.assert_array_equal(f.control_values, values)
    np.testing.assert_array_equal(queries, rng.rand(4, 2))
    x = np.array([0.3, 0.8])
    w = np.exp(-np.linalg.norm(x - points, axis=1))
    np.testing.assert_allclose(f(x), (w / w.sum()) @ values, rtol=1e-13)
    assert f(queries).shape == (4, 3)
    grid = np.random.rand(200, 2)
    assert np.all(np.abs(f(grid)) <= 3)


def test_random_token_map_and_queries():
    np.random.seed(0)
    mapping = random_token_map(2, 20, 10)
    np.random.seed(0)
    expected: dict = {}
    while len(expected) < 20:
        key = tuple(np.random.randint(0, 10, 2))
        expected[key] = tuple(np.random.randint(0, 10, 2))
    assert list(mapping.items()) == list(expected.items())
    rng = np.random.RandomState(1)
    again = random_token_map(2, 20, 10, rng)
    assert len(again) == 20 and all(0 <= t < 10 for k in again for t in k + again[k])
    queries = draw_queries(again, 5, rng)
    assert len(set(queries)) == 5 and all(q in again for q in queries)
    with pytest.raises(ValueError):
        random_token_map(1, 11, 10)
    with pytest.raises(ValueError):
        draw_queries(again, 21)


# ---------------------------------------------------------------------------------------------
# The noise experiment's instance sizes (experiments.md §1), interpreted in float64, σ = 0

@pytest.mark.parametrize("conditional", CONDITIONALS)
def test_token_map_paper_size(conditional):
    """The noise experiment's instance size: n = 10, 20 entries, vocab 10, 5 queries."""
    np.random.seed(0)
    mapping = random_token_map(10, 20, 10)
    queries = draw_queries(mapping, 5)
    out = token_map(10, conditional, vocab_size=10)(token_batch(queries, mapping))
    np.testing.assert_allclose(out[:, -10:, 0], [token_answer(q, mapping) for q in queries],
                               atol=FLOAT_TOL.get(conditional, 1e-9), rtol=0)


@pytest.mark.parametrize("conditional", CONDITIONALS)
def test_continuous_paper_size(conditional):
    """The noise experiment's instance: d_in = d_out = 2, N = 8, 10 queries (mean error ≈ 0.03)."""
    np.random.seed(0)
    f = create_test_target_function(2, 2)
    queries = np.random.rand(10, 2)
    prompt = continuous_prompt(f, 2, 2, 8)
    out = continuous_approximator(2, 2, conditional)(continuous_inputs(queries, prompt, 2))
    errors = np.linalg.norm(out[:, -1, :] - f(queries), axis=1)
    assert errors.mean() < 0.2


@pytest.mark.slow
def test_token_map_exact_all_variants():
    rng = np.random.RandomState(6)
    mapping = random_token_map(2, 4, 10, rng)
    query = draw_queries(mapping, 1, rng)[0]
    for conditional in CONDITIONALS:
        out = token_map(2, conditional, counter="permutation")(token_prompt(query, mapping),
                                                                exact=True)
        assert tuple(out[-2:, 0]) == token_answer(query, mapping), conditional


# ---------------------------------------------------------------------------------------------
# Larger sweeps

@pytest.mark.slow
@pytest.mark.parametrize("conditional", CONDITIONALS)
def test_token_map_sweep(conditional):
    for n in range(1, 8):
        for seed in range(3):
            rng = np.random.RandomState(1000 * n + seed)
            mapping = random_token_map(n, min(12, 10 ** n), 10, rng)
            queries = draw_queries(mapping, 6, rng)
            out = token_map(n, conditional, vocab_size=10)(token_batch(queries, mapping))
            np.testing.assert_allclose(out[:, -n:, 0],
                                       [token_answer(q, mapping) for q in queries],
                                       atol=FLOAT_TOL.get(conditional, 1e-9), rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("conditional", CONDITIONALS)
def test_continuous_sweep(conditional):
    for d_in, d_out, n_levels in [(1, 3, 20), (2, 2, 10), (3, 1, 5)]:
        for seed in range(3):
            rng = np.random.RandomState(seed)
            f = create_test_target_function(d_in, d_out, rng=rng)
            prompt = continuous_prompt(f, d_in, d_out, n_levels)
            queries = away_from_edges(rng, 10, d_in, n_levels, 2e-3)
            out = continuous_approximator(d_in, d_out, conditional)(
                continuous_inputs(queries, prompt, d_out))
            expected = np.array([f(cell_centre(q, n_levels)) for q in queries])
            np.testing.assert_allclose(out[:, -1, :], expected, rtol=0,
                                       atol=FLOAT_TOL.get(conditional, 1e-12))
