"""Differential tests of ``debranch``: random valid programs → layer form → same outputs as the interpreter.

Default run: 850 programs (float64: relative 1e-9 of the output magnitude; exact mode: identical), plus the
layout metadata checked slot by slot against the interpreter's intermediate values.  ``-m slow``: 10,000
more programs.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from strategies import profile_examples, programs, random_sequences

from lsrl.ir import interpret
from lsrl.ir.layer_form import layer_form_problems
from lsrl.passes.debranch import debranch

FLOAT_RTOL = 1e-9


def layer_depth(module) -> int:
    """The layers the op graph needs: a ``linstate`` starts a new layer after everything it reads; ReLU/Multi
    work sits in a layer (the first one at least, which is a passthrough state when no state precedes it)."""
    depth = {}
    for op in module.ops:
        d = max((depth[id(o)] for o in op.operands), default=0)
        if op.kind == "linstate":
            d += 1
        elif op.kind in ("relu", "multi"):
            d = max(d, 1)
        depth[id(op)] = d
    return max(1, depth[id(module.output)])


def check_structure(source, compiled) -> None:
    problems = layer_form_problems(compiled)
    assert not problems, f"{problems}\n{compiled}"
    compiled.verify()
    n_layers = sum(op.kind == "linstate" for op in compiled.ops)
    # equal unless a dependency cancels in the affine normal form (e.g. through a zero matrix)
    assert 1 <= n_layers <= layer_depth(source)
    if not any(op.kind == "linstate" for op in source.ops):
        assert n_layers == 1
    assert compiled.input.dim == source.input.dim and compiled.output.dim == source.output.dim
    layout = compiled.metadata["layout"]
    assert len(layout) == len(compiled.ops)
    assert all(len(entry) == op.dim for entry, op in zip(layout, compiled.ops))
    assert len(compiled.metadata["stages"]) == len(compiled.ops)


def slot_values(layout_entry, values_by_name):
    """What the layout says each slot holds, computed from the source program's values (None: no claim)."""
    out = []
    for slot in layout_entry:
        role = slot["role"]
        if role not in ("value", "carrier", "plus", "minus"):
            out.append(None)
            continue
        total = float(slot.get("constant", 0))
        for name, index, coef in slot["terms"]:
            total = total + float(coef) * values_by_name[name][..., index]
        if role == "plus":
            total = np.maximum(total, 0.0)
        elif role == "minus":
            total = np.maximum(-total, 0.0)
        out.append(total)
    return out


def check_layout(source, compiled, xs, exact: bool = False) -> None:
    """Every slot holds what the layout says (``exact``: both modules interpreted in rationals, for layer forms
    whose λ-rows round at λ's ulp in float64)."""
    from lsrl.ir.names import ssa_names
    _, values = interpret(source, xs, exact=exact, return_values=True)
    names = ssa_names(source)
    by_name = {names[id(op)]: np.asarray(v, dtype=np.float64) for op, v in values.items()}
    _, compiled_values = interpret(compiled, xs, exact=exact, return_values=True)
    for op, entry in zip(compiled.ops, compiled.metadata["layout"]):
        got = np.asarray(compiled_values[op], dtype=np.float64)
        for j, want in enumerate(slot_values(entry, by_name)):
            if want is None:
                continue
            scale = max(1.0, float(np.abs(want).max(initial=0.0)))
            assert np.allclose(got[..., j], want, rtol=1e-7, atol=1e-7 * scale), (op.kind, j, entry[j])


def check_float(module, seed: int, *, layout: bool = False) -> None:
    compiled = debranch(module)
    check_structure(module, compiled)
    rng = np.random.default_rng(seed)
    xs = random_sequences(module, int(rng.integers(1, 16)), 3, rng,
                          style=str(rng.choice(["uniform", "integers", "bounds"])))
    want = interpret(module, xs)
    got = interpret(compiled, xs)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    assert np.allclose(got, want, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale), \
        f"max error {np.abs(got - want).max()}\n{module}\n{compiled}"
    if layout:
        check_layout(module, compiled, xs)


def check_exact(module, seed: int) -> None:
    compiled = debranch(module, exact=True)
    check_structure(module, compiled)
    rng = np.random.default_rng(seed)
    xs = random_sequences(module, int(rng.integers(1, 10)), 2, rng, exact_friendly=True)
    want = interpret(module, xs, exact=True)
    got = interpret(compiled, xs, exact=True)
    assert want.shape == got.shape and (want == got).all(), f"{module}\n{compiled}"


SEEDS = st.integers(0, 2**32 - 1)


@settings(max_examples=profile_examples(500))
@given(programs(max_ops=14), SEEDS)
def test_random_programs_float(module, seed):
    check_float(module, seed)


@settings(max_examples=profile_examples(100))
@given(programs(min_ops=12, max_ops=28), SEEDS)
def test_deep_random_programs_float_with_layout(module, seed):
    check_float(module, seed, layout=True)


@settings(max_examples=profile_examples(250))
@given(programs(max_ops=14, exact_friendly=True), SEEDS)
def test_random_programs_exact(module, seed):
    check_exact(module, seed)


@pytest.mark.slow
@settings(max_examples=profile_examples(7000))
@given(programs(max_ops=24), SEEDS)
def test_random_programs_float_slow(module, seed):
    check_float(module, seed, layout=seed % 4 == 0)


@pytest.mark.slow
@settings(max_examples=profile_examples(3000))
@given(programs(max_ops=20, exact_friendly=True), SEEDS)
def test_random_programs_exact_slow(module, seed):
    check_exact(module, seed)


# ---------------------------------------------------------------------------- reference mode (the 13 cases)

def check_reference(module, seed: int) -> None:
    compiled = debranch(module, mode="reference")
    problems = layer_form_problems(compiled)
    assert not problems, f"{problems}\n{compiled}"
    rng = np.random.default_rng(seed)
    xs = random_sequences(module, int(rng.integers(1, 12)), 3, rng)
    want = interpret(module, xs)
    got = interpret(compiled, xs)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    assert np.allclose(got, want, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale), f"{module}\n{compiled}"


@settings(max_examples=profile_examples(120))
@given(programs(max_ops=12), SEEDS)
def test_random_programs_reference_mode(module, seed):
    check_reference(module, seed)


@pytest.mark.slow
@settings(max_examples=profile_examples(1500))
@given(programs(max_ops=16), SEEDS)
def test_random_programs_reference_mode_slow(module, seed):
    check_reference(module, seed)
