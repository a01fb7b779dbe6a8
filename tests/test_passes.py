"""Pass infrastructure (registry, pipeline parser, lsrl.opt.run) and the simple passes.

Each pass is checked on hand-built modules for the rewrite it should make, and differentially on random
programs (tests/strategies.py): the interpreter gives the same outputs before and after the pass — within
1e-9 in float, identically in exact arithmetic on exact-friendly programs.  Range analysis is checked for
soundness against every value the interpreter computes.
"""
from __future__ import annotations

import dataclasses
import io
from fractions import Fraction
from typing import Literal

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lsrl.opt as opt
from lsrl.errors import PassError, VerifyError
from lsrl.ir.core import Module, Op
from lsrl.ir.interpreter import interpret
from lsrl.ir.matrix import Matrix, Vector
from lsrl.passes import PASSES, Pass, format_pipeline, parse_pipeline, pass_options, register_pass
from lsrl.passes.range_analysis import compute_ranges, recorded_ranges
from strategies import T_MAX, profile_examples, programs, random_sequences

SIMPLE_PASSES = ["canonicalize", "canonicalize{use_ranges=true}", "constant-fold", "cse", "dce",
                 "dce{coordinates=false}", "fuse-linears", "fuse-linears{duplicate=true}", "range-analysis"]


# ------------------------------------------------------------------------------------------ helpers

def M(rows) -> Matrix:
    return Matrix.from_dense(np.array(rows, dtype=float))


def V(values) -> Vector:
    return Vector(np.array(values, dtype=float))


def inp(dim=2, lower=None, upper=None) -> Op:
    attrs = {"dim": dim}
    if lower is not None:
        attrs["lower"] = V(np.full(dim, lower, dtype=float))
    if upper is not None:
        attrs["upper"] = V(np.full(dim, upper, dtype=float))
    return Op("input", [], attrs, name="x")


def lin(x, a, b=None, name=None) -> Op:
    attrs = {"A": M(a)}
    if b is not None:
        attrs["b"] = V(b)
    return Op("linear", [x], attrs, name=name)


def kinds(module) -> list[str]:
    return [op.kind for op in module.ops]


def same_outputs(before: Module, after: Module, *, seed=0, length=7, exact=False):
    rng = np.random.default_rng(seed)
    xs = random_sequences(before, length, 3, rng, exact_friendly=exact)
    ref = interpret(before, xs, exact=exact)
    got = interpret(after, xs, exact=exact)
    assert got.shape == ref.shape
    if exact:
        assert (got == ref).all()
    else:
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * scale)


def run(module, pipeline, **kw):
    out = opt.run(module, pipeline, **kw)
    same_outputs(module, out)
    return out


# ------------------------------------------------------------------------------------------ registry / parser

@pytest.fixture
def scratch_pass():
    """Register throwaway passes and remove them afterwards."""
    added = []

    def add(cls):
        cls = register_pass(cls)
        added.append(cls.name)
        return cls

    yield add
    for name in added:
        PASSES.pop(name, None)


def test_builtin_passes_are_registered():
    names = {name for name, _, _ in opt.passes()}
    assert {"canonicalize", "constant-fold", "cse", "dce", "fuse-linears", "range-analysis"} <= names
    for name, summary, options in opt.passes():
        assert summary and "\n" not in summary
        for opt_name, typ, _default in options:
            assert opt_name.isidentifier() and typ


def test_parse_pipeline_options_and_types(scratch_pass):
    @scratch_pass
    @dataclasses.dataclass
    class Demo(Pass):
        name = "test-demo"
        summary = "a test pass"
        flag: bool = False
        count: int | None = None
        scale: float = 1.0
        mode: Literal["a", "b"] = "a"
        label: str = "x"

        def run(self, module):
            return None

    passes = parse_pipeline(' test-demo , test-demo{flag=true, count=3,scale=2.5e-1, mode=b, label="p,q{}"},'
                            'test-demo{count=none, flag=0}')
    assert [type(p) for p in passes] == [Demo] * 3
    assert passes[0] == Demo()
    assert passes[1] == Demo(flag=True, count=3, scale=0.25, mode="b", label="p,q{}")
    assert passes[2] == Demo(flag=False, count=None)
    # hyphenated option names are accepted
    assert parse_pipeline("test-demo{flag=yes}")[0].flag is True
    # round trip
    assert parse_pipeline(format_pipeline(passes)) == passes
    assert [o.name for o in pass_options(Demo)] == ["flag", "count", "scale", "mode", "label"]
    assert parse_pipeline("") == [] and parse_pipeline("   ") == []


@pytest.mark.parametrize("text, column, fragment", [
    ("cse,no-such-pass", 5, "unknown pass 'no-such-pass'; known passes:"),
    ("canonicalize{bogus=1}", 14, "pass 'canonicalize' has no option 'bogus'"),
    ("canonicalize{use_ranges=maybe}", 25, "expected a boolean"),
    ("range-analysis{t_max=ten}", 22, "expected an integer"),
    ("cse,", 5, "expected a pass name after ','"),
    ("cse dce", 5, "expected ',' between passes"),
    ("canonicalize{use_ranges=true", 29, "expected ',' or '}'"),
    ("canonicalize{use_ranges}", 24, "expected '='"),
    ("canonicalize{use_ranges=true,use_ranges=false}", 30, "given twice"),
    # option values a pass checks itself are refused where the pipeline is written, not when the pass runs
    ("cse,debranch{schedule=nope}", 5, "unknown schedule 'nope'; choose auto, all or one of asap"),
    ("debranch,lower{target=nope}", 10, "unknown target 'nope'; available targets:"),
])
def test_parse_pipeline_errors(text, column, fragment):
    with pytest.raises(PassError) as info:
        parse_pipeline(text)
    message = str(info.value)
    assert message.startswith(f"pipeline:1:{column}: error:"), message
    assert fragment in message
    caret_line = message.splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1


def test_unknown_pass_lists_known_ones():
    with pytest.raises(PassError, match=r"known passes: .*canonicalize.*cse.*dce"):
        parse_pipeline("nope")


def test_register_pass_rejects_duplicates_and_bad_options(scratch_pass):
    with pytest.raises(ValueError, match="registered twice"):
        @register_pass
        @dataclasses.dataclass
        class Again(Pass):
            name = "cse"
            summary = "clash"

    with pytest.raises(TypeError, match="not supported"):
        @register_pass
        @dataclasses.dataclass
        class BadOption(Pass):
            name = "test-bad-option"
            summary = "bad"
            weights: list = dataclasses.field(default_factory=list)
    PASSES.pop("test-bad-option", None)

    with pytest.raises(TypeError, match="summary"):
        @register_pass
        @dataclasses.dataclass
        class NoSummary(Pass):
            name = "test-no-summary"


# ------------------------------------------------------------------------------------------ lsrl.opt.run

def _small_module() -> Module:
    x = inp(2, 0.0, 1.0)
    a = lin(x, [[1, 2], [3, 4]], [1, 0], name="a")
    b = lin(a, [[1, 0], [0, -1]], name="b")
    r = Op("relu", [b], name="r")
    r2 = Op("relu", [r], name="r2")
    return Module.from_output(r2, name="small")


def test_run_clones_and_accepts_programs():
    module = _small_module()
    before = str(module)
    out = opt.run(module, "canonicalize")
    assert str(module) == before
    assert kinds(out) == ["input", "linear", "relu"]

    class Program:
        ir = module

    assert str(opt.run(Program(), "canonicalize")) == str(out)
    # a pipeline given as pass objects
    assert str(opt.run(module, parse_pipeline("canonicalize"))) == str(out)


def test_run_names_the_pass_that_breaks_the_ir(scratch_pass):
    @scratch_pass
    @dataclasses.dataclass
    class Breaker(Pass):
        name = "test-breaker"
        summary = "drops the output's operand"

        def run(self, module):
            module.ops = [op for op in module.ops if op is not module.output.operands[0]]

    with pytest.raises(VerifyError, match=r"pass 'test-breaker' \(position 2\) produced invalid IR"):
        opt.run(_small_module(), "cse,test-breaker")
    opt.run(_small_module(), "cse,test-breaker", verify=False)  # not verified: no error


def test_run_reports_crashing_pass(scratch_pass):
    @scratch_pass
    @dataclasses.dataclass
    class Crasher(Pass):
        name = "test-crasher"
        summary = "raises"

        def run(self, module):
            raise KeyError("boom")

    with pytest.raises(PassError, match=r"pass 'test-crasher' failed: KeyError"):
        opt.run(_small_module(), "test-crasher")


def test_check_mode_names_the_first_pass_that_changes_meaning(scratch_pass):
    @scratch_pass
    @dataclasses.dataclass
    class Wrong(Pass):
        name = "test-wrong"
        summary = "adds 1 to the output"

        def run(self, module):
            out = module.output
            new = Op("linear", [out], {"A": Matrix.identity(out.dim), "b": V(np.ones(out.dim))})
            module.ops.append(new)
            module.output = new

    opt.run(_small_module(), "canonicalize,cse", check=True)
    with pytest.raises(PassError, match=r"checking mode: pass 'test-wrong' \(position 2\) changed"):
        opt.run(_small_module(), "cse,test-wrong,dce", check=True)


def test_print_ir_after_change_and_all_and_timing():
    buf = io.StringIO()
    opt.run(_small_module(), "cse,canonicalize,cse", print_ir_after_change=True, out=buf)
    text = buf.getvalue()
    assert text.count("// -----// IR Dump After") == 1
    assert "// -----// IR Dump After canonicalize //----- //" in text
    buf = io.StringIO()
    opt.run(_small_module(), "cse,canonicalize{use_ranges=true},cse", print_ir_after_all=True, out=buf)
    text = buf.getvalue()
    assert text.count("// -----// IR Dump After") == 3
    assert "IR Dump After canonicalize{use_ranges=true} //" in text
    buf = io.StringIO()
    opt.run(_small_module(), "cse,dce", time_passes=True, out=buf)
    text = buf.getvalue()
    assert "Execution time report" in text and "Total Execution Time" in text
    assert " cse\n" in text and " dce\n" in text and "Total\n" in text


# ------------------------------------------------------------------------------------------ canonicalize

def test_canonicalize_folds_linear_chain_only_with_single_use():
    x = inp(2)
    a = lin(x, [[1, 2], [3, 4]], [1, -1])
    b = lin(a, [[2, 0], [1, 1]], [0, 5])
    out = run(Module.from_output(b), "canonicalize")
    assert kinds(out) == ["input", "linear"]
    (folded,) = out.ops[1:]
    np.testing.assert_array_equal(folded.attrs["A"].to_dense(), [[2, 4], [4, 6]])
    np.testing.assert_array_equal(folded.attrs["b"].values, [2, 5])
    # the inner linear has a second user: not folded (reference condition)
    c = Op("concat", [b, a])
    out = run(Module.from_output(c), "canonicalize")
    assert kinds(out).count("linear") == 2


def test_canonicalize_absorbs_linear_into_linstate_and_keeps_shared_linear():
    x = inp(1)
    a = lin(x, [[2], [-1]], [1, 0])
    s = Op("linstate", [a], {"A": M([[1, 0], [0, 0.5]]), "B": M([[1, 1], [0, 1]])})
    out = run(Module.from_output(s), "canonicalize")
    assert kinds(out) == ["input", "linstate"]
    state = out.ops[1]
    np.testing.assert_array_equal(state.attrs["B"].to_dense(), [[1], [-1]])
    np.testing.assert_array_equal(state.attrs["bias"].values, [1, 0])
    out = run(Module.from_output(Op("concat", [s, a])), "canonicalize")
    assert sorted(kinds(out)) == ["concat", "input", "linear", "linstate"]
    assert next(op for op in out.ops if op.kind == "linstate").operands[0].kind == "input"


def test_canonicalize_relu_relu_and_identity():
    x = inp(2)
    r = Op("relu", [Op("relu", [lin(x, [[1, 0], [0, 1]])])])
    out = run(Module.from_output(r), "canonicalize")
    assert kinds(out) == ["input", "relu"]
    assert out.ops[1].operands[0] is out.input


def test_canonicalize_slices_and_concats():
    x = inp(3)
    r = Op("relu", [x])
    s = Op("linstate", [x], {"A": Matrix.identity(2), "B": M([[1, 0, 0], [0, 1, 1]])})
    c = Op("concat", [r, s])  # dims 3 + 2
    whole_r = Op("slice", [c], {"start": 0, "end": 3})
    part = Op("slice", [c], {"start": 2, "end": 4})  # r[2] and s[0]
    inner = Op("slice", [Op("slice", [c], {"start": 1, "end": 5})], {"start": 2, "end": 4})  # c[3:5] = s
    out_c = Op("concat", [whole_r, part, inner])
    out = run(Module.from_output(out_c), "canonicalize")
    final = out.output
    assert final.kind == "concat"
    # nested concats are flattened: r, then r[2:3], s[0:1], then s
    assert [o.kind for o in final.operands] == ["relu", "slice", "slice", "linstate"]


def test_canonicalize_slice_of_linear_and_linear_of_slice():
    x = inp(3)
    a = lin(x, [[1, 0, 0], [0, 2, 0], [0, 0, 3]], [1, 2, 3])
    s = Op("slice", [a], {"start": 1, "end": 3})
    out = run(Module.from_output(Op("relu", [s])), "canonicalize")
    assert kinds(out) == ["input", "linear", "relu"]
    np.testing.assert_array_equal(out.ops[1].attrs["A"].to_dense(), [[0, 2, 0], [0, 0, 3]])
    sl = Op("slice", [Op("relu", [x])], {"start": 1, "end": 3})
    out = run(Module.from_output(lin(sl, [[1, -1]])), "canonicalize")
    assert kinds(out) == ["input", "relu", "linear"]
    np.testing.assert_array_equal(out.ops[2].attrs["A"].to_dense(), [[0, 1, -1]])


def test_canonicalize_concat_of_repeated_value_and_adjacent_slices():
    x = inp(2)
    r = Op("relu", [x])
    out = run(Module.from_output(Op("concat", [r, r, r])), "canonicalize")
    assert kinds(out) == ["input", "relu", "linear"]
    np.testing.assert_array_equal(out.ops[2].attrs["A"].to_dense(), np.vstack([np.eye(2)] * 3))
    pieces = Op("concat", [Op("slice", [r], {"start": 0, "end": 1}), Op("slice", [r], {"start": 1, "end": 2})])
    out = run(Module.from_output(Op("linstate", [pieces], {"A": Matrix.identity(2), "B": Matrix.identity(2)})),
              "canonicalize")
    assert kinds(out) == ["input", "relu", "linstate"]


def test_canonicalize_multi_with_constant_half_becomes_linear():
    x = inp(2)
    const = lin(x, [[0, 0], [0, 0]], [3, -0.5])
    m = Op("multi", [Op("concat", [Op("relu", [x]), const])])
    out = run(Module.from_output(m), "canonicalize")
    assert kinds(out) == ["input", "relu", "linear"]
    np.testing.assert_array_equal(out.ops[2].attrs["A"].to_dense(), [[3, 0], [0, -0.5]])


def test_canonicalize_drops_relu_of_nonnegative_with_ranges():
    x = inp(1, 0.0, 1.0)
    counter = Op("linstate", [x], {"A": Matrix.identity(1), "B": M([[1]])})
    shifted = lin(counter, [[1], [-1]], [0.5, -0.5])
    r = Op("relu", [shifted])
    module = Module.from_output(r)
    assert "relu" in kinds(run(module, "canonicalize"))
    out = run(module, "canonicalize{use_ranges=true}")
    assert "relu" not in kinds(out)  # row 0 ≥ 0.5 passes, row 1 ≤ -0.5 is 0


# ------------------------------------------------------------------------------------------ constant-fold

def test_constant_fold_makes_canonical_constants():
    x = inp(2)
    zero = lin(Op("relu", [x]), [[0, 0]], [2])  # A = 0: a constant whatever its operand
    r = Op("relu", [lin(zero, [[-1], [3]], [0, 0])])  # relu([-2, 6]) = [0, 6]
    m = Op("multi", [Op("concat", [r, zero, zero])])  # [0·2, 6·2]
    out = run(Module.from_output(m), "constant-fold")
    assert kinds(out) == ["input", "linear"]
    const = out.output
    assert const.operands[0] is out.input and const.attrs["A"].nnz == 0
    np.testing.assert_array_equal(const.attrs["b"].values, [0, 12])


def test_constant_fold_moves_constant_columns_into_bias_and_folds_fixed_point_states():
    x = inp(1)
    c = lin(x, [[0]], [2])
    mixed = lin(Op("concat", [x, c]), [[1, 3]], [1])  # x + 7
    out = run(Module.from_output(mixed), "constant-fold,canonicalize")
    assert kinds(out) == ["input", "linear"]
    np.testing.assert_array_equal(out.output.attrs["b"].values, [7])
    # s_t = s_{t-1} + 0 with s_0 = 5 is the constant 5; s_t = 0·s + 4 is 4
    s = Op("linstate", [c], {"A": Matrix.identity(1), "B": M([[0]]), "init": V([5])})
    p = Op("linstate", [c], {"A": M([[0]]), "B": M([[2]]), "init": V([9])})
    out = run(Module.from_output(Op("concat", [s, p])), "constant-fold")
    assert kinds(out) == ["input", "linear"]
    np.testing.assert_array_equal(out.output.attrs["b"].values, [5, 4])


def test_constant_fold_is_exact_for_exact_constants():
    x = inp(1)
    third = Op("linear", [x], {"A": Matrix.zeros(1, 1), "b": Vector([Fraction(1, 3)])})
    three = Op("linear", [third], {"A": Matrix.from_dense(np.array([[3.0]])), "b": V([0])})
    out = opt.run(Module.from_output(three), "constant-fold")
    assert out.output.attrs["b"].values.tolist() == [1]
    assert interpret(out, np.zeros((2, 1)), exact=True).tolist() == [[1], [1]]


# ------------------------------------------------------------------------------------------ cse

def test_cse_merges_identical_ops_and_chains():
    x = inp(2)
    a1, a2 = lin(x, [[1, 2]], [1]), lin(x, [[1, 2]], [1])
    r1, r2 = Op("relu", [a1]), Op("relu", [a2])
    s1 = Op("linstate", [r1], {"A": M([[1]]), "B": M([[1]])})
    s2 = Op("linstate", [r2], {"A": M([[1]]), "B": M([[1]])})
    other = lin(x, [[1, 2]], [2])
    out = run(Module.from_output(Op("concat", [s1, s2, other])), "cse")
    assert kinds(out) == ["input", "linear", "relu", "linstate", "linear", "concat"]
    concat = out.output
    assert concat.operands[0] is concat.operands[1]


def test_cse_distinguishes_exact_and_float_constants():
    x = inp(1)
    a = Op("linear", [x], {"A": Matrix.from_dense([[0.5]]), "b": V([0])})
    b = Op("linear", [x], {"A": Matrix.from_dense([[Fraction(1, 2)]], exact=True), "b": V([0])})
    out = opt.run(Module.from_output(Op("concat", [a, b])), "cse")
    assert len(out.ops) == 4


# ------------------------------------------------------------------------------------------ dce

def test_dce_removes_dead_ops_rows_and_state_slots():
    x = inp(2)
    dead = Op("relu", [x])
    wide = lin(x, [[1, 0], [0, 1], [1, 1], [2, 0]], [0, 1, 2, 3])
    # slots: 0 reads slot 1 through A (kept), 2 is read by nobody, 3 reads slot 0 only (dead)
    state = Op("linstate", [wide], {"A": M([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]),
                                    "B": Matrix.identity(4), "init": V([1, 2, 3, 4])})
    out_val = lin(state, [[1, 0, 0, 0]])
    module = Module(ops=[x, dead, wide, state, out_val], output=out_val)
    out = run(module, "dce")
    assert kinds(out) == ["input", "linear", "linstate", "linear"]
    _, w, s, o = out.ops
    assert w.dim == 2 and s.dim == 2
    np.testing.assert_array_equal(s.attrs["A"].to_dense(), [[1, 1], [0, 1]])
    np.testing.assert_array_equal(s.attrs["init"].values, [1, 2])
    np.testing.assert_array_equal(o.attrs["A"].to_dense(), [[1, 0]])
    # whole-op mode only drops the dead relu
    out = run(module, "dce{coordinates=false}")
    assert kinds(out) == ["input", "linear", "linstate", "linear"] and out.ops[2].dim == 4


def test_dce_drops_values_read_only_through_zero_columns_and_dead_concat_parts():
    x = inp(2)
    r = Op("relu", [x])
    s = Op("linstate", [x], {"A": Matrix.identity(2), "B": Matrix.identity(2)})
    c = Op("concat", [r, s])
    o = lin(c, [[1, 0, 0, 0], [0, 0, 0, 0]], [0, 1])  # reads r[0] only
    out = run(Module.from_output(o), "dce")
    assert kinds(out) == ["input", "relu", "linear"]
    m = Op("multi", [Op("concat", [x, s])])  # x ⊙ s
    out = run(Module.from_output(Op("slice", [m], {"start": 1, "end": 2})), "dce")
    assert next(op for op in out.ops if op.kind == "linstate").dim == 1


def test_dce_keeps_unchanged_module_identical():
    module = _small_module()
    out = opt.run(module, "dce")
    assert str(out) == str(module)


# ------------------------------------------------------------------------------------------ fuse-linears

def test_fuse_linears_through_slices():
    x = inp(3)
    a = lin(x, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], [0, 0, 0, 1])
    s = Op("slice", [a], {"start": 2, "end": 4})
    b = lin(s, [[1, -1]])
    r = Op("relu", [b])
    out = run(Module.from_output(r), "fuse-linears")
    assert kinds(out) == ["input", "linear", "relu"]
    np.testing.assert_array_equal(out.ops[1].attrs["A"].to_dense(), [[-1, -1, 0]])
    np.testing.assert_array_equal(out.ops[1].attrs["b"].values, [-1])


def test_fuse_linears_duplicate_option():
    x = inp(2)
    a = lin(x, [[1, 1]])
    b, c = lin(a, [[2]]), lin(a, [[3]])
    module = Module.from_output(Op("concat", [b, c]))
    assert kinds(run(module, "fuse-linears")).count("linear") == 3
    assert kinds(run(module, "fuse-linears{duplicate=true}")).count("linear") == 2


# ------------------------------------------------------------------------------------------ range analysis

def test_ranges_of_counters_decays_and_products():
    x = inp(1, 0.0, 1.0)
    counter = Op("linstate", [x], {"A": Matrix.identity(1), "B": M([[1]])})
    decay = Op("linstate", [x], {"A": M([[0.5]]), "B": M([[1]]), "init": V([4])})
    neg = lin(counter, [[-2]], [1])
    prod = Op("multi", [Op("concat", [neg, decay])])
    module = Module.from_output(Op("concat", [counter, decay, neg, prod, Op("relu", [neg])]))
    r = compute_ranges(module)
    assert r[id(counter)][0].tolist() == [0] and r[id(counter)][1].tolist() == [np.inf]
    assert r[id(decay)][0].tolist() == [0] and r[id(decay)][1].tolist() == [3]  # s_1 ≤ 0.5·4 + 1
    r = compute_ranges(module, t_max=10)
    assert r[id(counter)][1].tolist() == [10]
    assert r[id(neg)][0].tolist() == [-19] and r[id(neg)][1].tolist() == [1]
    assert r[id(prod)][0].tolist() == [-57] and r[id(prod)][1].tolist() == [3]


def test_ranges_of_squares_are_not_negative():
    """A product of a value with itself is ≥ 0 — read twice by a concat, or as two equal rows of a linear (in the
    exact domain compared as rationals: 1/3 and 1/3 + 2^-60 round to the same float)."""
    x = inp(1, -3.0, 2.0)
    twice = Op("multi", [Op("concat", [x, x])])
    rows = Op("multi", [lin(x, [[1], [1], [1], [-1]], [0.5, 0, 0.5, 0])])  # (x + 0.5)², x·(−x)
    third = Fraction(1, 3)
    near = Op("multi", [Op("linear", [x], {"A": Matrix.from_exact_rows((2, 1), [{0: third},
                                                                                {0: third + Fraction(1, 2 ** 60)}]),
                                           "b": Vector([Fraction(0), Fraction(0)])})])
    module = Module.from_output(Op("concat", [twice, rows, near]))
    r = compute_ranges(module)
    assert r[id(twice)][0].tolist() == [0] and r[id(twice)][1].tolist() == [9]
    assert r[id(rows)][0].tolist() == [0, -9] and r[id(rows)][1].tolist() == [6.25, 6]
    assert r[id(near)][0][0] < 0  # not a square


def test_ranges_of_rotations_are_sound_or_unbounded():
    x = inp(1, -1.0, 1.0)
    rot = Op("linstate", [x], {"A": M([[0.6, -0.8], [0.8, 0.6]]), "B": M([[1], [0]])})
    lo, hi = compute_ranges(Module.from_output(rot))[id(rot)]
    assert np.all(lo <= -1) and np.all(hi >= 1)


def _sugar_module(output):
    return Module.from_output(output.op)


@pytest.mark.parametrize("fused", [False, True])
def test_ranges_of_sugar_steps_are_tight(fused):
    from lsrl.lang import Concat, Input
    from lsrl.sugar import f_and, f_larger, f_step
    x = Input(2, lower=[-5, -5], upper=[5, 5])
    step, both, larger = f_step(x), f_and(x[0:1], x[1:2]), f_larger(x, 2.5)
    module = _sugar_module(Concat([step, both, larger]))
    if fused:  # after fusion the units read the input through one linear and a concat
        module = opt.run(module, "canonicalize,cse,dce,fuse-linears")
    r = compute_ranges(module)
    lo, hi = r[id(module.output)]
    assert lo.tolist() == [0.0] * 5 and hi.tolist() == [1.0] * 5
    if not fused:
        for v in (step, both, larger):
            assert r[id(v.op)][0].tolist() == [0.0] * v.dim and r[id(v.op)][1].tolist() == [1.0] * v.dim


def test_ranges_of_sugar_on_a_counter():
    from lsrl.lang import Input, LinState
    from lsrl.sugar import f_larger
    x = Input(1, lower=[0], upper=[1])
    counter = LinState(x, [[1]], [[1]])
    module = _sugar_module(f_larger(counter, 2.5))
    for t_max in (None, 10):
        lo, hi = compute_ranges(module, t_max=t_max)[id(module.output)]
        assert lo.tolist() == [0.0] and hi.tolist() == [1.0]
    # canonicalize with ranges keeps the program's meaning and the bound survives it
    out = opt.run(module, "canonicalize{use_ranges=true,t_max=10},cse,dce")
    lo, hi = compute_ranges(out, t_max=10)[id(out.output)]
    assert lo.tolist() == [0.0] and hi.tolist() == [1.0]


def test_relu_groups_with_opposite_signs_and_unbounded_scalar():
    # ReLU(y) − ReLU(−y) = y on an unbounded y stays unbounded; ReLU(y) + ReLU(−y) = |y| is ≥ 0;
    # ReLU(y − 1) − ReLU(y − 3) ∈ [0, 2] for every y
    x = inp(1, -np.inf, np.inf)
    units = Op("relu", [lin(x, [[1], [-1], [1], [1]], [0, 0, -1, -3])])
    out = lin(units, [[1, -1, 0, 0], [1, 1, 0, 0], [0, 0, 1, -1]], [0, 0, 0])
    lo, hi = compute_ranges(Module.from_output(out))[id(out)]
    assert lo.tolist() == [-np.inf, 0.0, 0.0] and hi.tolist() == [np.inf, np.inf, 2.0]


def test_carried_and_complemented_units_stay_in_their_group():
    # materialize-steps' shapes: the step pair u0 = ReLU(1000y), u1 = ReLU(1000y − 1) carried one layer on
    # (ReLU(u0)) and complemented (ReLU(999 − u1)); u0 − u1 ∈ [0, 1] survives both: the reader's
    # carrier(u0) + complement(u1) − 999 = u0 − u1 ∈ [0, 1] and carrier(u0) − ReLU(u1 − 2) ∈ [0, 3]
    x = inp(1, -1.0, 1.0)
    pair = Op("relu", [lin(x, [[1000], [1000]], [0, -1])])
    carried = Op("relu", [lin(pair, [[1, 0], [0, -1], [0, 1]], [0, 999, -2])])
    out = lin(carried, [[1, 1, 0], [1, 0, -1]], [-999, 0])
    lo, hi = compute_ranges(Module.from_output(out))[id(out)]
    assert lo.tolist() == [0.0, 0.0] and hi.tolist() == [1.0, 3.0]


@settings(max_examples=profile_examples(60))
@given(st.integers(0, 2**32 - 1))
def test_chains_of_carried_units_are_sound(seed):
    # random chains of ReLU(v·u + b) over one step pair, read by random rows: every value the interpreter
    # computes over a dense grid of the input lies inside its bounds
    rng = np.random.default_rng(seed)
    x = inp(1, -2.0, 2.0)
    units = Op("relu", [lin(x, [[1], [1], [-1]], rng.integers(-2, 3, size=3).tolist())])
    ops = [units]
    for _ in range(3):
        n = units.dim
        a = np.zeros((n, n))
        a[np.arange(n), rng.permutation(n)] = rng.choice([-2.0, -1.0, 0.5, 1.0, 3.0], size=n)
        units = Op("relu", [lin(units, a.tolist(), rng.integers(-3, 4, size=n).tolist())])
        ops.append(units)
    out = lin(units, rng.integers(-2, 3, size=(2, units.dim)).tolist(), [0, 0])
    module = Module.from_output(out)
    ranges = compute_ranges(module)
    grid = np.linspace(-2.0, 2.0, 4001).reshape(-1, 1, 1)
    for op in ops + [out]:
        values = interpret(Module.from_output(op), grid).reshape(len(grid), -1)
        lo, hi = ranges[id(op)]
        assert np.all(values >= lo - 1e-12) and np.all(values <= hi + 1e-12)


def test_relu_group_bounds_are_rounded_outward():
    # μ = 3: 1/μ is not a float; the exact range of ReLU(3x) − 3·ReLU(x − 1/3) is [0, 1]
    x = inp(1, 0.0, 1.0)
    units = Op("relu", [Op("linear", [x], {"A": Matrix.from_dense([[3], [1]], exact=True),
                                           "b": Vector([Fraction(0), Fraction(-1, 3)])})])
    out = Op("linear", [units], {"A": Matrix.from_dense([[Fraction(1, 10), Fraction(-3, 10)]], exact=True),
                                 "b": Vector([Fraction(0)])})
    lo, hi = compute_ranges(Module.from_output(out))[id(out)]
    assert lo[0] <= 0 and hi[0] >= 0.1 and hi[0] <= np.nextafter(0.1, 1)


def test_stepwise_boxes_bound_rotations_with_bounded_time():
    x = inp(1, -1.0, 1.0)
    rot = Op("linstate", [x], {"A": M([[0.6, -0.8], [0.8, 0.6]]), "B": M([[0], [0]]), "init": V([1, 0])})
    lo, hi = compute_ranges(Module.from_output(rot), t_max=20)[id(rot)]
    assert np.all(lo >= -1.0 - 1e-12) and np.all(hi <= 1.0 + 1e-12)


def _rotation(theta: float, radius: float = 1.0) -> Matrix:
    c, s = radius * np.cos(theta), radius * np.sin(theta)
    return M([[c, -s], [s, c]])


def _simulate_linstate(A, B, bias, init, xs):
    s, out = np.array(init, dtype=float), []
    for x in xs:
        s = A @ s + B @ x + bias
        out.append(s)
    return np.array(out)


@pytest.mark.parametrize("t_max", [10**3, 10**6, 10**12])
def test_rotation_bounds_hold_for_any_t_max_without_iterating(t_max):
    # a float rotation has ‖A‖₂ = 1 + O(2^-53): the norm bound stays within 1e-3 of the orbit's radius
    # for t_max = 10^12, where interval iteration (|cos| + |sin| > 1 per step) gives up
    x = inp(1, 0.0, 9.0)
    rot = Op("linstate", [x], {"A": _rotation(2 * np.pi / 7), "B": M([[0], [0]]), "init": V([1, 0])})
    lo, hi = compute_ranges(Module.from_output(rot), t_max=t_max)[id(rot)]
    assert np.all(lo <= -np.cos(np.pi / 7)) and np.all(hi >= np.cos(np.pi / 14))  # observed extremes
    assert np.all(hi <= 1.001) and np.all(lo >= -1.001)


def test_block_triangular_states_compose_block_bounds():
    # a rotation (its own block) drives a counter (a later block) and a contraction of it (a third block)
    x = inp(1, -1.0, 1.0)
    A = M([[np.cos(1.0), -np.sin(1.0), 0, 0], [np.sin(1.0), np.cos(1.0), 0, 0], [1, 0, 1, 0], [0, 1, 0, 0.5]])
    B, bias, init = M([[0], [0], [0], [1]]), V([0, 0, 0, 0]), V([1, 0, 0, 0])
    op = Op("linstate", [x], {"A": A, "B": B, "bias": bias, "init": init})
    t_max = 5000
    lo, hi = compute_ranges(Module.from_output(op), t_max=t_max)[id(op)]
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    rng = np.random.default_rng(0)
    traj = _simulate_linstate(A.to_dense(), B.to_dense(), np.zeros(4), [1, 0, 0, 0], rng.uniform(-1, 1, (t_max, 1)))
    assert np.all(traj >= lo) and np.all(traj <= hi)
    assert hi[2] <= t_max + 1 and hi[3] <= 4 * (1 + 1e-6)  # |s₃| ≤ (1 + 1)/(1 − 0.5)


def test_contracting_rotation_is_bounded_for_unbounded_time():
    x = inp(2, -1.0, 1.0)
    op = Op("linstate", [x], {"A": _rotation(0.3, 0.9), "B": M([[1, 0], [0, 1]]), "init": V([5, -5])})
    lo, hi = compute_ranges(Module.from_output(op))[id(op)]
    radius = max(np.hypot(5, 5), np.sqrt(2) / (1 - 0.9))  # max(‖s₀‖, ‖u‖/(1 − ρ))
    assert np.all(hi <= radius * (1 + 1e-9)) and np.all(lo >= -radius * (1 + 1e-9))
    traj = _simulate_linstate(_rotation(0.3, 0.9).to_dense(), np.eye(2), np.zeros(2), [5, -5],
                              np.random.default_rng(1).choice([-1.0, 1.0], (2000, 2)))
    assert np.all(traj >= lo) and np.all(traj <= hi)


@settings(max_examples=profile_examples(40))
@given(st.integers(2, 4), st.floats(0.2, 1.0), st.integers(0, 2**32 - 1), st.sampled_from([None, 50, 10**5]))
def test_block_norm_bounds_are_sound(k, radius, seed, t_max):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(k, k)))  # orthogonal, scaled to spectral norm `radius`
    A = radius * q
    x = inp(1, -1.0, 1.0)
    B = rng.normal(size=(k, 1))
    init = rng.normal(size=k)
    op = Op("linstate", [x], {"A": M(A.tolist()), "B": M(B.tolist()), "init": V(init.tolist())})
    lo, hi = compute_ranges(Module.from_output(op), t_max=t_max)[id(op)]
    if radius < 1 or t_max is not None:
        assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    steps = 300 if t_max is None else min(t_max, 300)
    traj = _simulate_linstate(A, B, np.zeros(k), init, rng.choice([-1.0, 1.0], (steps, 1)))
    assert np.all(traj >= lo - 1e-9) and np.all(traj <= hi + 1e-9)


@settings(max_examples=profile_examples(60))
@given(st.lists(st.tuples(st.sampled_from([-3.0, -1.0, -0.5, 0.25, 1.0, 2.0, 1000.0]),
                          st.integers(-4, 4), st.sampled_from([-2.0, -1.0, 1.0, 0.5, 3.0])),
                min_size=2, max_size=6),
       st.sampled_from([(-5.0, 5.0), (0.0, 1.0), (-np.inf, 2.0), (-1.0, np.inf)]),
       st.integers(0, 2**32 - 1), st.booleans())
def test_relu_group_bounds_are_sound(units, box, seed, through_concat):
    # units c_k·ReLU(a_k·(x + 0.5·x') + o_k) of one scalar, read directly or through a concat of halves
    x = inp(2, *box)
    pre = lin(x, [[a, 0.5 * a] for a, _, _ in units], [o / 4 for _, o, _ in units])
    relu = Op("relu", [pre])
    if through_concat and len(units) > 2:
        relu = Op("concat", [Op("slice", [relu], {"start": 2, "end": len(units)}),
                             Op("slice", [relu], {"start": 0, "end": 2})])
        units = units[2:] + units[:2]
    out = lin(relu, [[c for _, _, c in units], [1.0] * len(units)], [0.5, 0.0])
    module = Module.from_output(Op("concat", [out, x]))
    rng = np.random.default_rng(seed)
    xs = random_sequences(module, 6, 3, rng, style="bounds")
    _check_sound(module, xs, None, exact=False)
    xs = random_sequences(module, 6, 3, rng, style="uniform")
    _check_sound(module, xs, None, exact=False)


def test_a_register_of_a_value_gated_to_a_few_steps_is_bounded_by_them():
    # q = Σ x·[g < 4.5] with the counter g = t − 1: at most 5 drives of 9, where t_max = 400 of them was the bound
    import lsrl
    from lsrl.sugar import f_constant, f_smaller
    x = lsrl.Input(1, lower=0, upper=9, integer=True)
    g = lsrl.LinState(f_constant(x, 1), A=[[1]], B=[[1]], init_state=[-1])
    q = lsrl.LinState(lsrl.Multi(lsrl.Concat([f_smaller(g, 4.5), x])), A=[[1]], B=[[1]], init_state=[0])
    module = lsrl.ForEach(q).ir
    assert compute_ranges(module, t_max=400)[id(module.output)][1].tolist() == [5.0 * 9]
    assert compute_ranges(module, t_max=None)[id(module.output)][1].tolist() == [np.inf]
    # the gated value the ReLU of an input unbounded below: bounded, so the gate's window still counts (it was 400·9)
    y = lsrl.Input(1, lower=-np.inf, upper=9)
    g = lsrl.LinState(f_constant(y, 1), A=[[1]], B=[[1]], init_state=[-1])
    q = lsrl.LinState(lsrl.Multi(lsrl.Concat([f_smaller(g, 4.5), lsrl.ReLU(y)])), A=[[1]], B=[[1]], init_state=[0])
    module = lsrl.ForEach(q).ir
    assert compute_ranges(module, t_max=400)[id(module.output)][1].tolist() == [5.0 * 9]


@settings(max_examples=profile_examples(60))
@given(st.integers(-3, 3), st.sampled_from([1.0, 2.0, -1.0, 0.5]), st.integers(-6, 12), st.integers(1, 8),
       st.sampled_from(["product", "signed", "lambda", "relu"]), st.sampled_from([(0.0, 9.0), (-4.0, 5.0)]),
       st.integers(-2, 2), st.integers(0, 2**32 - 1))
@example(0, -1.0, -1, 8, "signed", (0.0, 9.0), 0, 0)  # a falling counter: the known factor is −1 on 8 steps
def test_registers_of_gated_values_are_bounded_soundly(init, step, start, width, gating, box, s0, seed):
    # a counter g = init + step·t, a gate 1 on the steps where start ≤ g ≤ start + width (f_step bumps), a value
    # gated by it (a product, the ReLU of ±(value + g), a λ-row, or a ReLU of the value minus a large
    # multiple of the closed gate), summed
    import lsrl
    from lsrl.sugar import f_and, f_constant, f_larger, f_smaller
    x = lsrl.Input(1, lower=box[0], upper=box[1])
    g = lsrl.LinState(f_constant(x, 1), A=[[1]], B=[[step]], init_state=[init])
    gate = f_and(f_larger(g, start - 0.25), f_smaller(g, start + width + 0.25))
    q = _gated_register(gating, gate, x, g + x, s0)
    _check_gated_register(lsrl.ForEach(lsrl.Concat([q, g, gate])).ir, seed)


def _gated_register(gating, gate, x, moving, s0):
    """``Σ`` of ``x`` gated by the 0/1 ``gate``: a product; ``ReLU((1 − 2·gate)·moving)`` (a known factor of either
    sign, with ``moving`` bounds that move with t); a λ-row ``ReLU(x − 1e4·(1 − gate)) − ReLU(−x − 1e4·(1 − gate))``;
    or ``ReLU(x + 20·gate − 20)``."""
    import lsrl
    if gating == "product":
        gated = lsrl.Multi(lsrl.Concat([gate, x]))
    elif gating == "signed":
        gated = lsrl.ReLU(lsrl.Multi(lsrl.Concat([lsrl.Linear(gate, [[-2.0]], b=[1.0]), moving])))
    elif gating == "lambda":
        both = lsrl.Concat([x, gate])
        gated = (lsrl.ReLU(lsrl.Linear(both, [[1.0, 1e4]], [-1e4]))
                 - lsrl.ReLU(lsrl.Linear(both, [[-1.0, 1e4]], [-1e4])))
    else:
        gated = lsrl.ReLU(lsrl.Linear(lsrl.Concat([x, gate]), [[1.0, 20.0]], [-20.0]))
    return lsrl.LinState(gated, A=[[1]], B=[[1]], init_state=[s0])


def _check_gated_register(module, seed):
    """Range analysis and the time analysis' per-step bounds hold every value on prompts at the input bounds and
    inside them."""
    rng = np.random.default_rng(seed)
    for style in ("bounds", "uniform"):
        xs = random_sequences(module, T_MAX, 3, rng, style=style)
        _check_sound(module, xs, T_MAX, exact=False)
        _check_time_bounds(module, xs)


def test_a_register_gated_by_the_permutation_counter_is_bounded_by_its_residue():
    # q = Σ g·[t ≡ 3 (mod 5)] over 400 steps: 80 drives of at most 399 (the window alone gave 400 of them)
    import lsrl
    from lsrl.sugar import f_constant, f_larger, f_modulo_counter
    x = lsrl.Input(1, lower=0, upper=9, integer=True)
    g = lsrl.LinState(f_constant(x, 1), A=[[1]], B=[[1]], init_state=[-1])
    m = f_modulo_counter(x, 5, method="permutation")
    on_residue = lsrl.f_and(f_larger(m, 1.5), lsrl.f_smaller(m, 2.5))  # m = (t − 1) mod 5 = 2
    q = lsrl.LinState(lsrl.Multi(lsrl.Concat([on_residue, g])), A=[[1]], B=[[1]], init_state=[0])
    module = lsrl.ForEach(q).ir
    assert compute_ranges(module, t_max=400)[id(module.output)][1].tolist() == [80.0 * 399]
    # a gate that also reads the input (the token program's `all_match`) keeps the residue
    matched = lsrl.f_and(on_residue, f_larger(x, 4.5))
    q = lsrl.LinState(lsrl.Multi(lsrl.Concat([matched, g])), A=[[1]], B=[[1]], init_state=[0])
    module = lsrl.ForEach(q).ir
    assert compute_ranges(module, t_max=400)[id(module.output)][1].tolist() == [80.0 * 399]


def test_a_register_gated_by_the_rotation_counter_is_bounded_by_its_residue():
    # the paper's rotation counter is not periodic in exact arithmetic (float64 cos and sin), but a float64 run of
    # it widened by its drift bounds it on each residue of 5, so its one-hot is exactly 0 off residue 3 and the
    # register holds 80 drives of at most 399 (the window alone gave 400 of them)
    import lsrl
    from lsrl.sugar import f_constant, f_larger, f_modulo_counter
    x = lsrl.Input(1, lower=0, upper=9, integer=True)
    g = lsrl.LinState(f_constant(x, 1), A=[[1]], B=[[1]], init_state=[-1])
    m = f_modulo_counter(x, 5, method="rotation")
    on_residue = lsrl.f_and(f_larger(m, 1.5), lsrl.f_smaller(m, 2.5))
    q = lsrl.LinState(lsrl.Multi(lsrl.Concat([on_residue, g])), A=[[1]], B=[[1]], init_state=[0])
    module = lsrl.ForEach(lsrl.Concat([q, m])).ir
    assert compute_ranges(module, t_max=400)[id(module.output)][1].tolist()[0] == 80.0 * 399
    _check_gated_register(module, 0)


def test_a_followed_trajectory_counts_the_rounding_of_its_first_step():
    # s_1 = A·s_0 cancels 10^5-sized products to 1.2e-11, which a float64 run rounds to 5.6e-12: the run's drift
    # must be sized by the start, not by the states after it (a review: the gate ReLU(10^11·s − 0.8), exactly
    # 0.364 at t = 1, was bounded by 0 and the register summing it got the range [0, 0])
    import lsrl
    from lsrl.sugar import f_constant
    x = lsrl.Input(1, lower=0.0, upper=9.0)
    state = lsrl.LinState(f_constant(x, 1), A=0.1 * np.array([[1.0, -1.0], [1.0, -1.0]]), B=np.zeros((2, 1)),
                          init_state=[1e6, 1e6 - 2.0 ** -33])
    gate = lsrl.ReLU(lsrl.Linear(state, [[1e11, 0.0]], [-0.8]))
    q = lsrl.LinState(gate, A=[[1.0]], B=[[1.0]], init_state=[0.0])
    module = lsrl.ForEach(lsrl.Concat([q, gate])).ir
    xs = np.zeros((1, 20, 1))
    _check_sound(module, xs, 20, exact=True)
    _check_time_bounds(module, xs)


def test_a_growing_rotation_over_long_prompts_is_unbounded_not_an_overflow():
    # ‖A‖^t_max of a rotation by radius 1.2 over 5,000 steps passes the float range: a Python float power raised
    # OverflowError from range analysis (a review); the bound is inf
    import lsrl
    from lsrl.sugar import f_constant
    x = lsrl.Input(1, lower=0.0, upper=9.0)
    theta = 2 * np.pi / 7
    rotation = 1.2 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    state = lsrl.LinState(f_constant(x, 1), A=rotation, B=np.zeros((2, 1)), init_state=[1.0, 0.0])
    module = lsrl.ForEach(state).ir
    assert compute_ranges(module, t_max=5000)[id(module.output)][1].tolist() == [np.inf, np.inf]


@settings(max_examples=profile_examples(30))
@given(st.integers(2, 12), st.floats(0.9, 1.0), st.integers(0, 2**32 - 1))
def test_registers_gated_by_rotations_are_bounded_soundly(divisor, radius, seed):
    # a rotation by 2π/divisor (a contraction where radius < 1: no period, bounded by its range), a gate on its
    # first coordinate and the input, a value gated by it, summed
    import lsrl
    from lsrl.sugar import f_and, f_constant, f_larger
    x = lsrl.Input(1, lower=0.0, upper=9.0)
    theta = 2 * np.pi / divisor
    rotation = radius * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    state = lsrl.LinState(f_constant(x, 1), A=rotation, B=np.zeros((2, 1)), init_state=[1.0, 0.0])
    gate = f_and(f_larger(state[0], np.cos(theta / 2)), f_larger(x, 4.5))
    q = _gated_register("product", gate, x, None, 0)
    _check_gated_register(lsrl.ForEach(lsrl.Concat([q, state, gate])).ir, seed)


@pytest.mark.parametrize("start", range(5))
def test_a_permutation_states_residues_are_its_own(start):
    # over 7 steps the one-hot of a 5-cycle is at coordinate 0 on one or two steps, depending on where it starts:
    # the register's bound is 9 times that count, which all-nine prompts reach
    import lsrl
    from lsrl.sugar import f_larger
    x = lsrl.Input(1, lower=0, upper=9)
    cycle = np.roll(np.eye(5), 1, axis=1)  # s_t[i] = s_{t−1}[i + 1]
    state = lsrl.LinState(x, A=cycle, B=np.zeros((5, 1)), init_state=np.eye(5)[start])
    q = lsrl.LinState(lsrl.Multi(lsrl.Concat([f_larger(state[0], 0.5), x])), A=[[1]], B=[[1]], init_state=[0])
    module = lsrl.ForEach(q).ir
    reached = interpret(module, np.full((1, 7, 1), 9.0))[0, :, 0].max()
    assert compute_ranges(module, t_max=7)[id(module.output)][1].tolist() == [reached]


@settings(max_examples=profile_examples(60))
@given(st.permutations(range(5)), st.lists(st.integers(-2, 2), min_size=5, max_size=5), st.integers(0, 4),
       st.sampled_from(["product", "lambda", "relu"]), st.sampled_from([(0.0, 9.0), (-4.0, 5.0)]),
       st.integers(-2, 2), st.integers(0, 2**32 - 1))
def test_registers_gated_by_permutation_states_are_bounded_soundly(perm, init, coordinate, gating, box, s0, seed):
    # a state that permutes its coordinates (any permutation of 5, cycles of every length, integer inits), a gate
    # that is 1 where one coordinate is ≥ 1 and a condition on the input holds, a value gated by it, summed
    import lsrl
    from lsrl.sugar import f_and, f_larger
    x = lsrl.Input(1, lower=box[0], upper=box[1])
    shift = np.zeros((5, 5))
    shift[np.arange(5), perm] = 1.0
    state = lsrl.LinState(x, A=shift, B=np.zeros((5, 1)), init_state=np.array(init, dtype=float))
    gate = f_and(f_larger(state[coordinate], 0.5), f_larger(x, 0.5 * (box[0] + box[1])))
    q = _gated_register(gating, gate, x, None, s0)
    _check_gated_register(lsrl.ForEach(lsrl.Concat([q, state, gate])).ir, seed)


def test_range_analysis_pass_records_and_prints(capsys):
    module = _small_module()
    out = opt.run(module, "range-analysis{print=true}")
    recorded = recorded_ranges(out)
    assert recorded is not None and set(recorded) == {id(op) for op in out.ops}
    fresh = compute_ranges(out)
    for op in out.ops:
        assert np.array_equal(recorded[id(op)][0], fresh[id(op)][0])
    assert recorded_ranges(out.clone()) is not None
    assert recorded_ranges(opt.run(out, "canonicalize")) is None  # a rewrite drops the stale facts
    err = capsys.readouterr().err
    assert "// range %x: [0.0, 1.0], [0.0, 1.0]" in err
    assert "// range %b: [1.0, 4.0], [-7.0, 0.0]" in err


def _check_time_bounds(module, xs):
    """Every value at every step within the time analysis' bounds for that step (docs/passes.md, "Registers of
    gated values")."""
    from lsrl.passes.range_analysis import RangeAnalysis
    from lsrl.passes.time_windows import TimeWindows
    steps = xs.shape[1]
    windows = TimeWindows(RangeAnalysis(module, steps), steps)
    _, values = interpret(module, xs, return_values=True)
    for op in module.ops:
        for t in range(1, steps + 1):
            lo, hi = (np.array([float(v) for v in side]) for side in windows.bounds_at(op, t))
            val = values[op][:, t - 1, :]
            tol = 1e-9 * max(1.0, float(np.max(np.abs(val), initial=0.0)))
            assert np.all(val >= lo - tol) and np.all(val <= hi + tol), (op, t, lo, hi, val)


def _check_sound(module, xs, t_max, exact):
    ranges = compute_ranges(module, t_max=t_max)
    _, values = interpret(module, xs, exact=exact, return_values=True)
    for op in module.ops:
        lo, hi = ranges[id(op)]
        assert lo.shape == hi.shape == (op.dim,)
        assert np.all(lo <= hi)
        val = values[op]
        if exact:
            val = np.vectorize(float, otypes=[float])(val) if val.size else val.astype(float)
            tol = 0.0
        else:
            tol = 1e-9 * max(1.0, float(np.max(np.abs(val), initial=0.0)))
        assert np.all(val >= lo - tol), (op, lo, val.min(axis=(0, 1)))
        assert np.all(val <= hi + tol), (op, hi, val.max(axis=(0, 1)))


@given(programs(max_ops=12, exact_friendly=True), st.integers(0, 2**32 - 1), st.booleans(),
       st.sampled_from(["uniform", "integers", "bounds"]))
def test_range_analysis_is_sound_exact(module, seed, bounded_time, style):
    rng = np.random.default_rng(seed)
    xs = random_sequences(module, T_MAX if bounded_time else 12, 2, rng, exact_friendly=True, style=style)
    _check_sound(module, xs, T_MAX if bounded_time else None, exact=True)


@given(programs(max_ops=14), st.integers(0, 2**32 - 1), st.sampled_from([None, 5, T_MAX]),
       st.sampled_from(["uniform", "integers", "bounds"]))
def test_range_analysis_is_sound_float(module, seed, t_max, style):
    rng = np.random.default_rng(seed)
    xs = random_sequences(module, t_max or T_MAX, 3, rng, style=style)
    _check_sound(module, xs, t_max, exact=False)


# ------------------------------------------------------------------------------------------ differential

@pytest.mark.parametrize("pipeline", SIMPLE_PASSES + ["canonicalize,cse,dce,fuse-linears",
                                                      "constant-fold,cse,canonicalize{use_ranges=true},dce"])
@settings(max_examples=profile_examples(40))
@given(module=programs(max_ops=14), seed=st.integers(0, 2**32 - 1))
def test_pass_preserves_outputs_float(pipeline, module, seed):
    out = opt.run(module, pipeline)
    out.verify()
    same_outputs(module, out, seed=seed)


@pytest.mark.parametrize("pipeline", SIMPLE_PASSES + ["canonicalize,cse,dce,fuse-linears"])
@settings(max_examples=profile_examples(25))
@given(module=programs(max_ops=10, exact_friendly=True), seed=st.integers(0, 2**32 - 1))
def test_pass_preserves_outputs_exact(pipeline, module, seed):
    out = opt.run(module, pipeline)
    same_outputs(module, out, seed=seed, length=5, exact=True)


@settings(max_examples=profile_examples(30))
@given(module=programs(max_ops=14))
def test_passes_are_idempotent_enough(module):
    once = opt.run(module, "canonicalize,cse,dce")
    twice = opt.run(once, "canonicalize,cse,dce")
    assert len(twice.ops) <= len(once.ops)
    assert str(opt.run(twice, "cse,dce")) == str(twice)
