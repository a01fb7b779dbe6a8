"""Sugar functions: exact equations at their edge points, conditionals, modulo counters, names."""
from fractions import Fraction as F

import numpy as np
import pytest

import lsrl
from lsrl import (Concat, ForEach, Input, Linear, LinState, ShapeError, f_and, f_bump, f_conditional, f_constant,
                  f_eq, f_ifelse, f_ifelse_mul, f_ifelse_optimized, f_ifelse_step, f_ifeq, f_larger,
                  f_modulo_counter, f_neq, f_not, f_or, f_relu_identity, f_smaller, f_step)
from lsrl.sugar import CONDITIONAL_VARIANTS, modulo_counter_max_divisor

MU = 1000
LAM = 10**10


def evaluate(build, rows, exact=True, dim=None):
    """Run ``build(x)`` on the tokens ``rows`` (one row per step); exact rationals by default."""
    rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in rows]
    x = Input(dim or len(rows[0]))
    prog = ForEach(build(x))
    xs = np.empty((len(rows), len(rows[0])), dtype=object)
    for i, r in enumerate(rows):
        xs[i] = [F(v) if not isinstance(v, float) else v for v in r]
    out = prog(xs if exact else xs.astype(np.float64), exact=exact)
    return out


def col(out, j=0):
    return list(out[:, j])


def test_all_names_exported():
    for name in lsrl.sugar.__all__:
        assert getattr(lsrl, name) is getattr(lsrl.sugar, name)


# ---------------------------------------------------------------------------- f_constant

def test_f_constant():
    out = evaluate(lambda x: f_constant(x, [1, F(1, 3), -2]), [[5, 7], [0, 0]])
    assert out.tolist() == [[1, F(1, 3), -2]] * 2
    assert col(evaluate(lambda x: f_constant(x, 4), [9, 8])) == [4, 4]
    assert col(evaluate(lambda x: f_constant(x, np.array([2.5])), [1])) == [F(5, 2)]
    x = Input(2)
    c = f_constant(x, [1, 2])
    assert c.dim == 2 and c.A.nnz == 0 and c.name == "constant"


# ---------------------------------------------------------------------------- f_step / f_bump

def test_f_step_edges_exact():
    pts = [-1, 0, F(1, 2 * MU), F(1, MU), F(999, MU * 1000), 1, 10**6]
    assert col(evaluate(lambda x: f_step(x), pts)) == [0, 0, F(1, 2), 1, F(999, 1000), 1, 1]


def test_f_step_other_scale_and_float():
    pts = [-0.5, 0.0, 0.05, 0.1, 0.2]
    assert col(evaluate(lambda x: f_step(x, scale=10), pts)) == [0, 0, F(1, 2) + F(0.05) * 10 - F(1, 2), 1, 1]
    out = evaluate(lambda x: f_step(x, scale=10), pts, exact=False)
    np.testing.assert_allclose(out[:, 0], [0, 0, 0.5, 1, 1], atol=1e-12)
    assert col(evaluate(lambda x: f_step(x, scale=F(1, 2)), [1, 2, 3])) == [F(1, 2), 1, 1]


def test_f_step_constants_are_exact():
    x = Input(1)
    s = f_step(x)
    shifted = [v for v in ForEach(s).topological_sort() if v.name == "step.shifted"][0]
    assert shifted.b.exact and shifted.b.values[0] == F(-1, 1000)
    assert len(ForEach(s).topological_sort()) == 8  # input + the reference's 7 nodes


@pytest.mark.parametrize("scale", [0, -1, "10", None])
def test_f_step_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        f_step(Input(1), scale=scale)


def test_f_bump_half_open_membership():
    lb, ub = F(1, 4), F(1, 2)
    e = F(1, MU)
    pts = [0, lb, lb + e / 2, lb + e, F(3, 8), ub, ub + e / 2, ub + e, 1]
    assert col(evaluate(lambda x: f_bump(x, lb, ub), pts)) == [0, 0, F(1, 2), 1, 1, 1, F(1, 2), 0, 0]
    # a point on a shared boundary belongs to the lower cell only
    both = evaluate(lambda x: Concat([f_bump(x, 0, F(1, 2)), f_bump(x, F(1, 2), 1)]), [F(1, 2), 0])
    assert both.tolist() == [[1, 0], [0, 0]]


def test_f_bump_variable_bounds():
    def build(x):
        return f_bump(x[0], x[1], x[2])
    out = evaluate(build, [[F(3, 10), F(1, 10), F(4, 10)], [F(1, 10), F(1, 10), F(4, 10)],
                           [F(4, 10), F(1, 10), F(4, 10)]])
    assert col(out) == [1, 0, 1]


def test_f_bump_mixed_bounds_rejected():
    x = Input(2)
    with pytest.raises(ValueError, match="both be numbers or both variables"):
        f_bump(x, 0, x)
    with pytest.raises(ValueError):
        f_bump(x, x, 1)
    with pytest.raises(ShapeError):
        f_bump(x, x[0], x[1])


# ---------------------------------------------------------------------------- logic

def test_logic_truth_tables():
    table = [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert col(evaluate(lambda x: f_and(x[0], x[1]), table)) == [0, 0, 0, 1]
    assert col(evaluate(lambda x: f_or(x[0], x[1]), table)) == [0, 1, 1, 1]
    assert col(evaluate(lambda x: f_not(x), [0, 1, F(1, 3)])) == [1, 0, F(2, 3)]
    # AND treats >= 1/mu as true and <= 0 as false
    assert col(evaluate(lambda x: f_and(x[0], x[1]), [[F(1, MU), 5], [0, 5], [-3, 1]])) == [1, 0, 0]


def test_logic_dim_mismatch():
    x = Input(3)
    with pytest.raises(ShapeError, match="f_and"):
        f_and(x, x[0])
    with pytest.raises(ShapeError, match="f_or"):
        f_or(x[0:2], x)
    with pytest.raises(TypeError):
        f_and(x, 1)


# ---------------------------------------------------------------------------- comparisons

def test_f_larger_smaller_margins():
    e = F(1, MU)
    assert col(evaluate(lambda x: f_larger(x[0], x[1]), [[1, 1], [1 + e, 1], [1 + e / 2, 1], [0, 1]])) == \
        [0, 1, F(1, 2), 0]
    assert col(evaluate(lambda x: f_smaller(x[0], x[1]), [[1, 1], [1, 1 + e], [2, 1]])) == [0, 1, 0]
    # numbers on either side, exactly
    assert col(evaluate(lambda x: f_larger(x, 2.5), [2, 3, F(5, 2)])) == [0, 1, 0]
    assert col(evaluate(lambda x: f_larger(2.5, x), [2, 3])) == [1, 0]
    assert col(evaluate(lambda x: f_smaller(x, F(1, 3)), [0, F(1, 3)])) == [1, 0]
    with pytest.raises(TypeError):
        f_larger(1, 2)


def test_integer_against_half_integer_idiom():
    ints = list(range(-2, 6))
    assert col(evaluate(lambda x: f_larger(x, 3 - 0.5), ints)) == [int(v >= 3) for v in ints]
    eq3 = lambda x: f_and(f_larger(x, 3 - 0.5), f_smaller(x, 3 + 0.5))  # noqa: E731
    assert col(evaluate(eq3, ints)) == [int(v == 3) for v in ints]


def test_f_eq_and_f_neq_bands():
    e = F(1, MU)
    edge = (1 - e) / MU
    pts = [[0, 0], [edge, 0], [0, edge], [e, 0], [0, e], [5, 2], [(edge + e) / 2, 0]]
    eq = col(evaluate(lambda x: f_eq(x[0], x[1]), pts))
    assert eq[:6] == [1, 1, 1, 0, 0, 0] and 0 < eq[6] < 1
    e2 = e * e
    neq = col(evaluate(lambda x: f_neq(x[0], x[1]), [[0, 0], [e2, 0], [0, e2], [1, 3], [e2 / 2, 0]]))
    assert neq == [0, 1, 1, 1, F(1, 2)]
    assert col(evaluate(lambda x: f_eq(x, 4), [4, 3])) == [1, 0]


def test_f_ifeq():
    def build(x):
        return f_ifeq(x[0], x[1], x[2], x[3])
    assert col(evaluate(build, [[2, 2, -7, 5], [2, 3, -7, 5]])) == [-7, 5]


# ---------------------------------------------------------------------------- conditionals

CASES = [[1, -7, 5], [0, -7, 5], [1, 3, -4], [0, 3, -4], [1, 0, 9], [0, 0, 9]]


def _tf(rows):
    return [(r[1] if r[0] == 1 else r[2]) for r in rows], [(r[1] if r[0] == 1 else 0) for r in rows], \
        [(0 if r[0] == 1 else r[2]) for r in rows]


def test_f_ifelse_direct_and_two_relu_forms():
    both, t_only, f_only = _tf(CASES)
    assert col(evaluate(lambda x: f_ifelse(x[0], x[1], x[2]), CASES)) == both
    assert col(evaluate(lambda x: f_ifelse(x[0], x[1], None), CASES)) == t_only
    assert col(evaluate(lambda x: f_ifelse(x[0], None, x[2]), CASES)) == f_only
    out = evaluate(lambda x: f_ifelse(x[0], x[1], x[2]), CASES, exact=False)
    np.testing.assert_array_equal(out[:, 0], both)


def test_f_ifelse_relu_counts():
    x = Input(3)
    def relus(v):
        return sum(1 for u in ForEach(v).topological_sort() if u.op.kind == "relu")
    assert relus(f_ifelse(x[0], x[1], x[2])) == 4
    assert relus(f_ifelse(x[0], x[1], None)) == 2
    assert relus(f_ifelse_optimized(x[0], x[1], t_nonneg=True)) == 1


def test_f_ifelse_needs_lambda_above_values():
    # cond = 0 must drop t; with λ = 10 < |t| = 20 the term leaks
    leak = col(evaluate(lambda x: f_ifelse(x[0], x[1], None, large_constant=10), [[0, 20], [0, -20], [0, 5]]))
    assert leak[:2] == [10, -10] and leak[2] == 0
    ok = col(evaluate(lambda x: f_ifelse(x[0], x[1], None, large_constant=21), [[0, 20], [0, -20]]))
    assert ok == [0, 0]
    # the default λ is exactly 10**10
    huge = col(evaluate(lambda x: f_ifelse(x[0], x[1], None), [[0, 10**10 - 1], [0, 10**10 + 1]]))
    assert huge == [0, 1]


def test_f_ifelse_errors():
    x = Input(4)
    with pytest.raises(ValueError, match="both None"):
        f_ifelse(x[0], None, None)
    with pytest.raises(ValueError, match="both None"):
        f_ifelse_step(x[0], None, None)
    with pytest.raises(ValueError, match="both None"):
        f_ifelse_mul(x[0], None, None)
    with pytest.raises(ShapeError, match="f_ifelse"):
        f_ifelse(x[0], x[1:3], None)
    with pytest.raises(ShapeError, match="f_ifelse_mul"):
        f_ifelse_mul(x[0:2], x[1:3], x[3])
    with pytest.raises(ValueError, match="large_constant"):
        f_ifelse(x[0], x[1], None, large_constant=0)
    with pytest.raises(TypeError):
        f_ifelse(x[0], 1, None)


def test_f_ifelse_step_forms_and_robustness():
    both, t_only, f_only = _tf(CASES)
    assert col(evaluate(lambda x: f_ifelse_step(x[0], x[1], x[2]), CASES)) == both
    assert col(evaluate(lambda x: f_ifelse_step(x[0], x[1], None), CASES)) == t_only
    assert col(evaluate(lambda x: f_ifelse_step(x[0], None, x[2]), CASES)) == f_only
    e = F(1, MU)
    fuzzy = [[F(1, 2) + e, 3, -4], [F(1, 2) - e, 3, -4], [F(9, 10), -2, 8], [F(1, 10), -2, 8]]
    assert col(evaluate(lambda x: f_ifelse_step(x[0], x[1], x[2]), fuzzy)) == [3, -4, -2, 8]


def test_f_ifelse_mul_forms():
    both, t_only, f_only = _tf(CASES)
    assert col(evaluate(lambda x: f_ifelse_mul(x[0], x[1], x[2]), CASES)) == both
    assert col(evaluate(lambda x: f_ifelse_mul(x[0], x[1], None), CASES)) == t_only
    assert col(evaluate(lambda x: f_ifelse_mul(x[0], None, x[2]), CASES)) == f_only
    # an error eps in c gives a proportional error, no jump
    assert col(evaluate(lambda x: f_ifelse_mul(x[0], x[1], x[2]), [[F(1, 10), 10, 0]])) == [1]


def test_f_ifelse_optimized():
    rows = [[0, 3], [1, 3], [0, -3], [1, -3], [0, 0]]  # [negated condition, value]
    assert col(evaluate(lambda x: f_ifelse_optimized(x[0], x[1]), rows)) == [3, 0, -3, 0, 0]
    # the single-ReLU form is exact only for non-negative values
    assert col(evaluate(lambda x: f_ifelse_optimized(x[0], x[1], t_nonneg=True), rows)) == [3, 0, 0, 0, 0]


@pytest.mark.parametrize("variant", CONDITIONAL_VARIANTS)
def test_f_conditional_variants(variant):
    _, t_only, _ = _tf(CASES)
    assert col(evaluate(lambda x: f_conditional(variant, x[0], x[1]), CASES)) == t_only
    neg = lambda x: f_conditional(variant, x[0], x[1], neg_cond=f_smaller(x[0], 0.5))  # noqa: E731
    assert col(evaluate(neg, CASES)) == t_only


def test_f_conditional_vector_and_unknown_variant():
    x = Input(4)
    with pytest.raises(ValueError, match="variant"):
        f_conditional("fast", x[0], x[1])
    def build(x):
        return f_conditional("optimized", x[0:2], x[2:4], t_nonneg=True)
    assert evaluate(build, [[1, 0, 5, 6]]).tolist() == [[5, 0]]


# ---------------------------------------------------------------------------- relu identity

def test_f_relu_identity():
    pts = [[-3, F(1, 7)], [0, 2], [5, -1]]
    assert evaluate(lambda x: f_relu_identity(x), pts).tolist() == pts
    x = Input(2)
    v = f_relu_identity(x)
    assert v.A.shape == (2, 4) and v.inputs[0].dim == 4


# ---------------------------------------------------------------------------- modulo counter

def _counter_outputs(d, steps, exact, **kw):
    x = Input(1)
    prog = ForEach(f_modulo_counter(x, d, **kw))
    xs = np.zeros((steps, 1))
    return prog(xs, exact=exact)[:, 0]


@pytest.mark.parametrize("d", range(1, 71))
def test_rotation_counter_float(d):
    steps = 2 * d + 3
    out = _counter_outputs(d, steps, exact=False)
    np.testing.assert_allclose(out, [t % d for t in range(steps)], atol=1e-9)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6, 7, 8, 12, 35, 64, 69, 70])
def test_rotation_counter_exact(d):
    steps = d + 2
    assert _counter_outputs(d, steps, exact=True).tolist() == [t % d for t in range(steps)]


@pytest.mark.slow
def test_rotation_counter_exact_every_divisor():
    for d in range(1, 71):
        steps = d + 2
        out = _counter_outputs(d, steps, exact=True)
        assert out.tolist() == [t % d for t in range(steps)], d


@pytest.mark.slow
def test_rotation_counter_exact_long():
    for d, steps in ((3, 400), (7, 400), (70, 145)):
        assert _counter_outputs(d, steps, exact=True).tolist() == [t % d for t in range(steps)]
    np.testing.assert_allclose(_counter_outputs(70, 20000, exact=False), np.arange(20000) % 70, atol=1e-6)


def test_rotation_counter_refuses_inexact_divisors():
    with pytest.raises(ValueError, match="permutation"):
        f_modulo_counter(Input(1), 71)
    for mu, limit in [(10, 6), (100, 22), (1000, 70), (10**4, 222)]:
        assert modulo_counter_max_divisor(mu) == limit
        f_modulo_counter(Input(1), limit, scale=mu)
        with pytest.raises(ValueError, match=f"divisor {limit + 1}"):
            f_modulo_counter(Input(1), limit + 1, scale=mu)
    assert _counter_outputs(6, 14, exact=True, scale=10).tolist() == [t % 6 for t in range(14)]
    assert _counter_outputs(22, 30, exact=True, scale=100).tolist() == [t % 22 for t in range(30)]


def test_rotation_counter_beyond_limit_really_is_inexact(monkeypatch):
    """What the refusal prevents: at d = 71 the current position only reaches ≈ 0.979 of the step."""
    monkeypatch.setattr(lsrl.sugar, "_rotation_is_exact", lambda d, mu: True)
    out = _counter_outputs(71, 3, exact=True)
    assert out[0] == 0 and 0.97 < out[1] < 0.99 and 1.9 < out[2] < 2.0


def test_permutation_counter():
    for d in (1, 2, 5, 71, 200):
        steps = d + 3
        assert _counter_outputs(d, steps, exact=True, method="permutation").tolist() == \
            [t % d for t in range(steps)]
        np.testing.assert_array_equal(_counter_outputs(d, 2 * d + 1, exact=False, method="permutation"),
                                      np.arange(2 * d + 1) % d)


def test_modulo_counter_errors_and_structure():
    x = Input(2)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="divisor"):
            f_modulo_counter(x, bad)
    with pytest.raises(ValueError, match="method"):
        f_modulo_counter(x, 3, method="clock")
    prog = ForEach(f_modulo_counter(x, 5, name="m"))
    states = prog.get_state_variables()
    assert len(states) == 1 and states[0].dim == 2 and states[0].name == "m.cycler"
    perm = ForEach(f_modulo_counter(x, 5, method="permutation")).get_state_variables()
    assert perm[0].dim == 5 and perm[0].A.is_diagonal() is False
    assert prog.output.dim == 1


# ---------------------------------------------------------------------------- names

def test_sugar_names_are_readable():
    x = Input(1, name="x")
    g = LinState(f_constant(x, 1, name="one"), [[1]], [[1]], init_state=[-1], name="g")
    is_prompt = f_larger(g, 3 - 0.5, name="is_prompt")
    text = str(ForEach(f_and(is_prompt, f_not(is_prompt), name="both")).ir)
    for fragment in ("%one = linear", "%g = linstate", "%is_prompt.diff = linear", "%is_prompt.pos = relu",
                     "%is_prompt = linear", "%both.x.pos = relu", "%both = relu", "%not = linear"):
        assert fragment in text, fragment
    default = ForEach(f_larger(x, 1)).ir
    assert [op.name for op in default.ops][-1] == "larger"


def test_sugar_rejects_non_variables():
    with pytest.raises(TypeError):
        f_step(3)
    with pytest.raises(TypeError):
        f_relu_identity([1, 2])
    with pytest.raises(TypeError):
        f_constant(1, 2)


def test_direct_form_constant_lambda_is_integer_valued():
    x = Input(2)
    v = f_ifelse(x[0], x[1], None)
    gates = [u for u in ForEach(v).topological_sort() if u.name and u.name.endswith(".gate")]
    assert gates and all(g.A.to_dense_exact()[0, 0] == -LAM for g in gates)
    assert Linear(x, np.eye(2)).dim == 2
