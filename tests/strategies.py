"""Hypothesis strategies for random valid core-dialect programs and their input sequences.

``programs(...)`` builds :class:`lsrl.ir.core.Module` objects directly from ``Op`` (not through the front
end) with every core primitive: ``linear`` (dense, sparse, zero, selection, signed-identity matrices),
``relu``, ``linstate`` (identity, diagonal {0,1}, rotations, nilpotent shift, cyclic permutation, zero and
general small-norm ``A``; random ``B``, ``bias``, ``init``), ``concat`` (repeated operands allowed),
``slice`` and ``multi`` (with signed operands).  Values may be used by many ops, states may read states,
and some programs keep dead ops.  Dims stay small (1–6, concats up to 12).

Magnitudes stay bounded: every state matrix has ``‖A^t‖∞ ≤ √2`` for all ``t`` (spectral radius ≤ 1), and
the generator tracks a crude bound of every value over ``T ≤ 20`` steps, replacing a ``multi`` or
``linstate`` that would exceed it by a ``relu``.

Structure (op kinds, operands, dims, matrix families) is drawn through hypothesis so that it shrinks;
the numbers inside a matrix come from a numpy generator seeded by a drawn integer, which keeps generation
fast.  ``exact_friendly=True`` uses small dyadic constants (plus occasional non-dyadic rationals such as
1/3 or 3/5, which become exact-domain constants) so that exact evaluation stays fast.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import settings, strategies as st

from lsrl.ir.core import Module, Op
from lsrl.ir.matrix import Matrix, Vector

__all__ = ["programs", "conditional_programs", "sequences", "programs_and_sequences", "random_sequences",
           "profile_examples", "T_MAX", "INPUT_RANGE"]

T_MAX = 20  # the sequence length the magnitude bounds are computed for
INPUT_RANGE = 3.0  # |x| of generated inputs on unbounded coordinates
_MAG_LIMIT = 1e8
_MAX_DIM = 6
_MAX_CONCAT_DIM = 12

_KINDS = ("linear", "linear", "relu", "linstate", "linstate", "concat", "slice", "multi")
_LINEAR_FAMILIES = ("dense", "sparse", "sparse", "zero", "selection", "signed_identity")
_STATE_FAMILIES = ("identity", "diag01", "rotation", "shift", "permutation", "general", "general", "zero")
_PYTHAGOREAN = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25))


CI_EXAMPLES = 60  # max_examples of the default ``ci`` hypothesis profile (tests/conftest.py)


def profile_examples(at_ci: int) -> int:
    """An example count for a test whose budget differs from the profile's: ``at_ci`` under the ``ci``
    profile, scaled with the active profile (``dev`` a quarter, ``thorough`` ~17×), so a deeper profile
    also deepens the tests that set their own count."""
    return max(1, round(at_ci * settings.default.max_examples / CI_EXAMPLES))


# ------------------------------------------------------------------------------------------ numbers

def _entries(rng: np.random.Generator, shape, exact_friendly: bool, *, rational: bool = False) -> np.ndarray:
    """Random entries in [-1, 1]: float64, or (exact_friendly) multiples of 1/4 — or, when ``rational``,
    an object array that also holds thirds (non-dyadic, so the constant lands in the exact domain)."""
    if not exact_friendly:
        values = rng.uniform(-1.0, 1.0, size=shape)
        values[rng.random(size=shape) < 0.2] = 0.0
        return values
    if rational:
        numerators = rng.integers(-3, 4, size=shape)
        out = np.empty(shape, dtype=object)
        out.ravel()[:] = [Fraction(int(n), 3) for n in numerators.ravel()]
        return out
    return rng.integers(-4, 5, size=shape) / 4.0


def _matrix(values: np.ndarray) -> Matrix:
    return Matrix.from_dense(values)


def _vector(values: np.ndarray) -> Vector:
    return Vector(values)


def _abs_max(values) -> float:
    arr = np.asarray(values, dtype=object).ravel().tolist()
    return max((abs(float(v)) for v in arr), default=0.0)


def _row_norm(values) -> float:
    """‖A‖∞ (max absolute row sum) of a dense float or object array."""
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return 0.0
    return max(sum(abs(float(v)) for v in row) for row in arr.tolist())


def _linear_matrix(rng, family: str, m: int, d: int, exact_friendly: bool, rational: bool) -> np.ndarray:
    if family == "zero":
        return np.zeros((m, d))
    if family == "selection":
        out = np.zeros((m, d))
        out[np.arange(m), rng.integers(0, d, size=m)] = 1.0
        return out
    if family == "signed_identity":
        out = np.zeros((m, d))
        for i in range(m):
            out[i, i % d] = 1.0 if (i // d) % 2 == 0 else -1.0
        return out
    values = _entries(rng, (m, d), exact_friendly, rational=rational)
    if family == "sparse":
        mask = rng.random(size=(m, d)) < 0.3
        values = np.where(mask, values, 0) if values.dtype != object else _masked(values, mask)
    return values


def _masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[~mask] = Fraction(0)
    return out


def _state_matrix(rng, family: str, k: int, exact_friendly: bool) -> tuple[np.ndarray, float]:
    """A state matrix and a bound on ``max_t ‖A^t‖∞``."""
    if family == "identity":
        return np.eye(k), 1.0
    if family == "zero":
        return np.zeros((k, k)), 1.0
    if family == "diag01":
        return np.diag(rng.integers(0, 2, size=k).astype(float)), 1.0
    if family == "shift":  # S[i, i+1] = 1: the FIFO buffer idiom, nilpotent
        return np.eye(k, k, 1), 1.0
    if family == "permutation":  # cyclic shift: the exact modulo counter
        return np.roll(np.eye(k), 1, axis=0), 1.0
    if family == "rotation":
        out = np.zeros((k, k), dtype=object if exact_friendly else float)
        if exact_friendly:
            out[...] = Fraction(0)
        for i in range(0, k - 1, 2):
            if exact_friendly:
                a, b, c = _PYTHAGOREAN[int(rng.integers(0, len(_PYTHAGOREAN)))]
                cos, sin = Fraction(a, c), Fraction(b, c)
            else:
                theta = rng.uniform(0, 2 * math.pi)
                cos, sin = math.cos(theta), math.sin(theta)
            out[i, i], out[i, i + 1], out[i + 1, i], out[i + 1, i + 1] = cos, -sin, sin, cos
        if k % 2:
            out[k - 1, k - 1] = 1 if exact_friendly else 1.0
        return out, math.sqrt(2.0)
    # general: ‖A‖∞ ≤ 1 makes every power non-expansive
    if exact_friendly:
        numerators = rng.integers(-2, 3, size=(k, k))
        norm = max(int(np.abs(numerators).sum(axis=1).max()), 1)
        return numerators / float(2 ** math.ceil(math.log2(norm))), 1.0
    values = rng.uniform(-1.0, 1.0, size=(k, k))
    return values / max(np.abs(values).sum(axis=1).max(), 1.0) * rng.uniform(0.5, 1.0), 1.0


# ------------------------------------------------------------------------------------------ programs

@st.composite
def programs(draw, max_ops: int = 12, min_ops: int = 1, allow_multi: bool = True,
             exact_friendly: bool = False, allow_linstate: bool = True, bounded_input: bool | None = None,
             max_input_dim: int = 4) -> Module:
    """A random valid core-dialect :class:`Module` with ``min_ops..max_ops`` ops besides the input.

    ``bounded_input``: None = sometimes, True/False = always/never give the input op lower/upper bounds.
    """
    d_in = draw(st.integers(1, max_input_dim))
    lower, upper = np.full(d_in, -np.inf), np.full(d_in, np.inf)
    with_bounds = draw(st.booleans()) if bounded_input is None else bounded_input
    if with_bounds:
        for i in range(d_in):
            style = draw(st.sampled_from(("both", "both", "lower", "upper", "none")))
            lo = float(draw(st.integers(-2, 1)))
            if style in ("both", "lower"):
                lower[i] = lo
            if style in ("both", "upper"):
                upper[i] = lo + draw(st.integers(1, 3))
    x = Op("input", (), {"dim": d_in, "lower": Vector(lower), "upper": Vector(upper)}, name="x")
    ops: list[Op] = [x]
    mags: list[float] = [float(max(INPUT_RANGE, _abs_max(np.where(np.isfinite(lower), lower, 0)),
                                   _abs_max(np.where(np.isfinite(upper), upper, 0))))]
    kinds = tuple(k for k in _KINDS if (allow_multi or k != "multi") and (allow_linstate or k != "linstate"))
    hub = None  # a value many ops read (deep branching)
    n_ops = draw(st.integers(min_ops, max_ops))

    def pick(dim_filter=None) -> int:
        candidates = [i for i, op in enumerate(ops) if dim_filter is None or dim_filter(op.dim)]
        if not candidates:
            return -1
        how = draw(st.sampled_from(("recent", "any", "hub")))
        if how == "hub" and hub is not None and hub in candidates:
            return hub
        if how == "recent":
            return candidates[len(candidates) - 1 - draw(st.integers(0, min(2, len(candidates) - 1)))]
        return candidates[draw(st.integers(0, len(candidates) - 1))]

    def add(op: Op, mag: float) -> None:
        op.name = f"v{len(ops)}"
        ops.append(op)
        mags.append(mag)

    while len(ops) - 1 < n_ops:
        kind = draw(st.sampled_from(kinds))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        rational = exact_friendly and draw(st.integers(0, 7)) == 0
        if kind == "multi":
            i = pick(lambda d: d % 2 == 0)
            if i < 0 or draw(st.booleans()):
                a = pick()
                b = pick(lambda d, want=ops[a].dim: d == want)
                if ops[a].dim * 2 > _MAX_CONCAT_DIM:
                    kind = "relu"
                else:
                    add(Op("concat", [ops[a], ops[b]]), max(mags[a], mags[b]))
                    i = len(ops) - 1
            if kind == "multi" and mags[i] ** 2 <= _MAG_LIMIT:
                add(Op("multi", [ops[i]]), mags[i] ** 2)
                continue
            kind = "relu"
        if kind == "relu":
            i = pick()
            add(Op("relu", [ops[i]]), mags[i])
        elif kind == "linear":
            i = pick()
            m = draw(st.integers(1, _MAX_DIM))
            family = draw(st.sampled_from(_LINEAR_FAMILIES))
            a = _linear_matrix(rng, family, m, ops[i].dim, exact_friendly, rational)
            b = _entries(rng, m, exact_friendly) if draw(st.booleans()) else np.zeros(m)
            add(Op("linear", [ops[i]], {"A": _matrix(a), "b": _vector(b)}),
                _row_norm(a) * mags[i] + _abs_max(b))
        elif kind == "linstate":
            i = pick()
            k = draw(st.integers(1, _MAX_DIM))
            family = draw(st.sampled_from(_STATE_FAMILIES))
            a, growth = _state_matrix(rng, family, k, exact_friendly)
            bmat = _linear_matrix(rng, draw(st.sampled_from(("dense", "sparse", "selection"))), k, ops[i].dim,
                                  exact_friendly, rational)
            bias = _entries(rng, k, exact_friendly) if draw(st.booleans()) else np.zeros(k)
            init = _entries(rng, k, exact_friendly) if draw(st.booleans()) else np.zeros(k)
            mag = growth * (_abs_max(init) + T_MAX * (_row_norm(bmat) * mags[i] + _abs_max(bias)))
            if mag > _MAG_LIMIT:
                add(Op("relu", [ops[i]]), mags[i])
                continue
            add(Op("linstate", [ops[i]], {"A": _matrix(a), "B": _matrix(bmat), "bias": _vector(bias),
                                          "init": _vector(init)}), mag)
        elif kind == "concat":
            count = draw(st.integers(1, 3))
            chosen: list[int] = []
            for _ in range(count):
                j = pick()
                if sum(ops[c].dim for c in chosen) + ops[j].dim <= _MAX_CONCAT_DIM or not chosen:
                    chosen.append(j)
            add(Op("concat", [ops[j] for j in chosen]), max(mags[j] for j in chosen))
        elif kind == "slice":
            i = pick()
            d = ops[i].dim
            start = draw(st.integers(0, d - 1))
            end = draw(st.integers(start + 1, d))
            add(Op("slice", [ops[i]], {"start": start, "end": end}), mags[i])
        if hub is None and len(ops) > 2 and draw(st.integers(0, 3)) == 0:
            hub = len(ops) - 1

    output = ops[-1]
    if len(ops) > 2 and draw(st.integers(0, 2)) == 0:
        # every value reaches the output (no dead ops)
        used = {id(o) for op in ops for o in op.operands}
        sinks = [op for op in ops[1:] if id(op) not in used]
        if len(sinks) > 1 and sum(op.dim for op in sinks) <= 4 * _MAX_CONCAT_DIM:
            output = Op("concat", sinks)
            add(output, max(mags[1:]))
    return Module(ops, output, name="random").verify()


# ------------------------------------------------------------------------------------------ inputs

def random_sequences(module: Module, length: int, batch: int | None, rng: np.random.Generator, *,
                     exact_friendly: bool = False, style: str = "uniform") -> np.ndarray:
    """Inputs for ``module``: ``(batch, length, d_in)`` (or ``(length, d_in)`` when ``batch`` is None)
    inside the input op's bounds.  ``style``: ``uniform``, ``integers`` or ``bounds`` (mostly exactly on
    the bounds, the worst case for domain checks).  ``exact_friendly`` gives multiples of 1/4."""
    inp = module.input
    d = inp.dim
    lo = inp.attrs["lower"].to_float().values
    hi = inp.attrs["upper"].to_float().values
    lo = np.where(np.isfinite(lo), lo, np.where(np.isfinite(hi), hi - 2 * INPUT_RANGE, -INPUT_RANGE))
    hi = np.where(np.isfinite(inp.attrs["upper"].to_float().values), hi, lo + 2 * INPUT_RANGE)
    shape = (1 if batch is None else batch, length, d)
    if style == "integers":
        values = rng.integers(np.ceil(lo), np.floor(hi) + 1, size=shape).astype(float)
    elif style == "bounds":
        values = np.where(rng.random(size=shape) < 0.5, lo, hi)
        inner = rng.random(size=shape) < 0.3
        values = np.where(inner, lo + (hi - lo) * rng.random(size=shape), values)
    else:
        values = lo + (hi - lo) * rng.random(size=shape)
    if exact_friendly:
        values = np.clip(np.round(values * 4) / 4, lo, hi)
    return values[0] if batch is None else values


@st.composite
def conditional_programs(draw):
    """``(program, xs)``: :func:`lsrl.programs.random_conditional_program` of a drawn seed — the sugar's
    λ-conditionals, which :func:`programs` does not build: debranch fuses λ = 10¹⁰ with the steps' μ = 1000 in
    them."""
    from lsrl.programs import random_conditional_program

    return random_conditional_program(np.random.default_rng(draw(st.integers(0, 2**32 - 1))))


@st.composite
def sequences(draw, module: Module, length: int | None = None, batch: int | None = None,
              exact_friendly: bool = False, max_length: int = T_MAX) -> np.ndarray:
    """Inputs for ``module`` respecting its input bounds: ``(batch, T, d_in)``, or ``(T, d_in)`` when
    ``batch`` is None.  ``length`` None draws ``T`` in ``0..max_length``."""
    if length is None:
        length = draw(st.integers(0, max_length))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(("uniform", "integers", "bounds")))
    return random_sequences(module, length, batch, rng, exact_friendly=exact_friendly, style=style)


@st.composite
def programs_and_sequences(draw, max_ops: int = 12, allow_multi: bool = True, exact_friendly: bool = False,
                           length: int | None = None, batch: int | None = None, max_length: int = T_MAX):
    """``(module, xs)`` with ``xs`` drawn by :func:`sequences`."""
    module = draw(programs(max_ops=max_ops, allow_multi=allow_multi, exact_friendly=exact_friendly))
    xs = draw(sequences(module, length=length, batch=batch, exact_friendly=exact_friendly,
                        max_length=max_length))
    return module, xs


def token_prompts(n: int, entries: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` prompts of the token program (``n`` tokens a key, ``entries`` map entries, vocabulary 10) and
    their answers, from ``seed``."""
    from lsrl.programs import draw_queries, random_token_map, token_answer, token_prompt

    rng = np.random.default_rng(seed)
    mapping = random_token_map(n, entries, 10, rng)
    queries = draw_queries(mapping, batch, rng)
    xs = np.stack([token_prompt(q, mapping) for q in queries])
    return xs, np.array([token_answer(q, mapping) for q in queries], dtype=float)


def continuous_centre_case(n_levels: int, seed: int = 7, batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Prompts of the continuous program (2 → 1, ``n_levels`` per axis) for ``batch`` random queries, and ``f``
    at the centre of each query's cell — the value the program answers with."""
    from lsrl.programs import cell_centre, continuous_prompt, continuous_query, create_test_target_function

    rng = np.random.default_rng(seed)
    f = create_test_target_function(2, 1, rng=rng)
    queries = rng.uniform(0.02, 0.98, size=(batch, 2))
    prompt = continuous_prompt(f, 2, 1, n_levels)
    xs = np.stack([np.vstack([continuous_query(q, 1), prompt]) for q in queries])
    return xs, np.stack([f(cell_centre(q, n_levels)) for q in queries]).reshape(batch, -1)
