"""Sugar functions of LSRL (``language.md`` §7): steps, logic, comparisons, conditionals, counters.

Every function expands, at build time, into core variables (Linear, ReLU, LinState, Concat, Multi, Slice)
built with the §4 operators exactly as the equations are written, so the graph has the reference
implementation's shape (e.g. ``f_step`` is 7 nodes: ``x*μ``, ReLU, ``x − 1/μ``, ReLU, ``·μ``, and the
Concat + Linear of the difference).

Names: every function takes ``name=``; its result gets that name (default: the function's name without
``f_``, e.g. ``larger``) and each node it builds is named ``<name>.<role>`` (``larger.diff``,
``larger.scaled`` …); nested sugar extends the prefix (``is_eq.gt.diff``).  The IR printer makes the
names unique.

Constants are exact: ``1/μ`` is the rational ``1/μ``, λ and μ are taken at their exact value, and
numbers given for ``x``/``y`` (ints, floats at their binary value, Fractions, sympy rationals) are used
exactly.  Constants that float64 cannot hold make exact IR constants, rounded only by float evaluation.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .errors import ShapeError
from .ir.matrix import Matrix, Vector
from .lang import (Concat, Linear, LinState, Multi, ReLU, Variable, _is_number, _number, _simplest,
                   exact_number, to_vector)

__all__ = ["f_constant", "f_step", "f_bump", "f_not", "f_and", "f_or", "f_larger", "f_smaller", "f_eq", "f_neq",
           "f_ifeq", "f_ifelse", "f_ifelse_step", "f_ifelse_mul", "f_ifelse_optimized", "f_conditional",
           "f_relu_identity", "f_modulo_counter", "CONDITIONAL_VARIANTS", "modulo_counter_max_divisor"]

CONDITIONAL_VARIANTS = ("direct", "optimized", "step_optimized", "multiplicative", "multiplicative_optimized")


# ---------------------------------------------------------------------------- helpers

def _named(var: Variable, name: str) -> Variable:
    var.name = name
    return var


def _var(value, what: str) -> Variable:
    if not isinstance(value, Variable):
        raise TypeError(f"{what}: expected a variable, got {type(value).__name__} {value!r}")
    return value


def _positive(value, what: str) -> Fraction:
    if not _is_number(value):
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    x = exact_number(value, what)
    if x <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return x


def _const(value: Fraction):
    """A scalar for the operators: int/float when exact, else the Fraction (an exact IR constant)."""
    return _simplest(value)


def _scale_of(scale) -> Fraction:
    return _positive(scale, "scale (μ)")


def _lambda_of(large_constant) -> Fraction:
    return _positive(large_constant, "large_constant (λ)")


def _add(x: Variable, y: Variable, name: str) -> Variable:
    out = x + y
    out.inputs[0].name = f"{name}.cat"
    return _named(out, name)


def _sub(x: Variable, y: Variable, name: str) -> Variable:
    out = x - y
    out.inputs[0].name = f"{name}.cat"
    return _named(out, name)


def _difference(x, y, name: str, fn: str) -> Variable:
    """``x − y`` where either side may be a number (built with the §4 operators)."""
    xv, yv = isinstance(x, Variable), isinstance(y, Variable)
    if xv and yv:
        if x.dim != y.dim:
            raise ShapeError(f"{fn}: dims differ ({x.describe()} vs {y.describe()}); no broadcasting")
        return _sub(x, y, name)
    if xv:
        return _named(x - _const(exact_number(_number(y, f"{fn}: y"))), name)
    if yv:
        return _named(_const(exact_number(_number(x, f"{fn}: x"))) - y, name)
    raise TypeError(f"{fn}: at least one of x and y must be a variable, got {x!r} and {y!r}")


def _same_dims(fn: str, **variables) -> None:
    given = {k: v for k, v in variables.items() if v is not None}
    dims = {v.dim for v in given.values()}
    if len(dims) > 1:
        shown = ", ".join(f"{k}: {v.describe()}" for k, v in given.items())
        raise ShapeError(f"{fn}: arguments must have the same dim (no broadcasting), got {shown}")


# ---------------------------------------------------------------------------- §7.1 – §7.3

def f_constant(input, value, name=None):
    """``Linear(input, 0, value)``: the constant ``value`` (number or 1-D) at every step."""
    x = _var(input, "f_constant input")
    base = name or "constant"
    k = 1 if _is_number(value) else len(np.asarray(value, dtype=object).reshape(-1))
    b = to_vector(value, k, "f_constant: value")
    return Linear(x, Matrix.zeros(k, x.dim), b, name=base)


def f_step(x, scale=1000, name=None):
    """``ReLU(μx) − μ·ReLU(x − 1/μ)``: 0 for ``x ≤ 0``, ``μx`` on ``(0, 1/μ)``, 1 for ``x ≥ 1/μ``."""
    x = _var(x, "f_step x")
    mu = _scale_of(scale)
    return _step(x, mu, name or "step")


def _step(x: Variable, mu: Fraction, base: str) -> Variable:
    m = _const(mu)
    pos = ReLU(_named(x * m, f"{base}.scaled"), name=f"{base}.pos")
    over = ReLU(_named(x - _const(1 / mu), f"{base}.shifted"), name=f"{base}.over")
    return _sub(pos, _named(over * m, f"{base}.over_scaled"), base)


def f_bump(x, lb, ub, scale=1000, name=None):
    """``f_step(x − lb) − f_step(x − ub)``: 1 on ``[lb + 1/μ, ub]``, 0 outside ``(lb, ub + 1/μ)``."""
    x = _var(x, "f_bump x")
    mu = _scale_of(scale)
    base = name or "bump"
    lb_var, ub_var = isinstance(lb, Variable), isinstance(ub, Variable)
    if lb_var != ub_var or (not lb_var and not (_is_number(lb) and _is_number(ub))):
        raise ValueError(f"f_bump: lb and ub must both be numbers or both variables of dim {x.dim}, got "
                         f"{type(lb).__name__} and {type(ub).__name__}")
    if lb_var:
        _same_dims("f_bump", x=x, lb=lb, ub=ub)
    elif exact_number(lb, "f_bump lb") > exact_number(ub, "f_bump ub"):
        raise ValueError(f"f_bump: lb = {lb} is larger than ub = {ub}; the bump is 1 on [lb + 1/μ, ub]")
    lo = _step(_difference(x, lb, f"{base}.lo_diff", "f_bump"), mu, f"{base}.lo")
    hi = _step(_difference(x, ub, f"{base}.hi_diff", "f_bump"), mu, f"{base}.hi")
    return _sub(lo, hi, base)


# ---------------------------------------------------------------------------- §7.4 logic

def f_not(x, name=None):
    """``1 − x``."""
    x = _var(x, "f_not x")
    return _named(1 - x, name or "not")


def f_and(x, y, scale=1000, name=None):
    """``ReLU(f_step(x) + f_step(y) − 1)``: 1 iff both are ``≥ 1/μ`` (inputs assumed in {0, 1})."""
    x, y = _var(x, "f_and x"), _var(y, "f_and y")
    _same_dims("f_and", x=x, y=y)
    mu = _scale_of(scale)
    base = name or "and"
    sx = _step(x, mu, f"{base}.x")
    sy = _step(y, mu, f"{base}.y")
    total = _add(sx, sy, f"{base}.sum")
    return ReLU(_named(total - 1, f"{base}.pre"), name=base)


def f_or(x, y, scale=1000, name=None):
    """``f_step(x + y)``."""
    x, y = _var(x, "f_or x"), _var(y, "f_or y")
    _same_dims("f_or", x=x, y=y)
    mu = _scale_of(scale)
    base = name or "or"
    return _step(_add(x, y, f"{base}.sum"), mu, base)


# ---------------------------------------------------------------------------- §7.5 comparisons

def f_larger(x, y, scale=1000, name=None):
    """``f_step(x − y)``: 1 iff ``x − y ≥ 1/μ``, 0 iff ``x ≤ y``; ``x`` or ``y`` may be a number."""
    mu = _scale_of(scale)
    base = name or "larger"
    return _step(_difference(x, y, f"{base}.diff", "f_larger"), mu, base)


def f_smaller(x, y, scale=1000, name=None):
    """``f_step(y − x)``: 1 iff ``y − x ≥ 1/μ``, 0 iff ``x ≥ y``."""
    mu = _scale_of(scale)
    base = name or "smaller"
    return _step(_difference(y, x, f"{base}.diff", "f_smaller"), mu, base)


def f_eq(x, y, scale=1000, name=None):
    """``f_step(1 − f_step(x−y) − f_step(y−x))``: 1 iff ``|x−y| ≤ (1−1/μ)/μ``, 0 iff ``|x−y| ≥ 1/μ``."""
    mu = _scale_of(scale)
    base = name or "eq"
    gt = _step(_difference(x, y, f"{base}.gt.diff", "f_eq"), mu, f"{base}.gt")
    lt = _step(_difference(y, x, f"{base}.lt.diff", "f_eq"), mu, f"{base}.lt")
    inner = _sub(_named(1 - gt, f"{base}.not_gt"), lt, f"{base}.inner")
    return _step(inner, mu, base)


def f_neq(x, y, scale=1000, name=None):
    """``f_step(f_step(x−y) + f_step(y−x))``: 0 iff ``x = y``, 1 iff ``|x−y| ≥ 1/μ²``."""
    mu = _scale_of(scale)
    base = name or "neq"
    gt = _step(_difference(x, y, f"{base}.gt.diff", "f_neq"), mu, f"{base}.gt")
    lt = _step(_difference(y, x, f"{base}.lt.diff", "f_neq"), mu, f"{base}.lt")
    return _step(_add(gt, lt, f"{base}.sum"), mu, base)


def f_ifeq(x, y, t_val, f_val, scale=1000, large_constant=1e10, name=None):
    """``f_ifelse(f_eq(x, y), t_val, f_val, λ)``."""
    base = name or "ifeq"
    cond = f_eq(x, y, scale=scale, name=f"{base}.cond")
    return f_ifelse(cond, t_val, f_val, large_constant=large_constant, name=base)


# ---------------------------------------------------------------------------- §7.8 conditionals

def _branches(fn: str, cond, t_val, f_val) -> Variable:
    cond = _var(cond, f"{fn} cond")
    if t_val is None and f_val is None:
        raise ValueError(f"{fn}: t_val and f_val are both None (at least one branch must be given)")
    if t_val is not None:
        _var(t_val, f"{fn} t_val")
    if f_val is not None:
        _var(f_val, f"{fn} f_val")
    _same_dims(fn, cond=cond, t_val=t_val, f_val=f_val)
    return cond


def _term(gate_of, value: Variable, sign: int, base: str) -> Variable:
    """``ReLU(gate ± value)``; ``gate_of(name)`` builds this term's own gate (``−λ·c`` or its step form).

    Each term builds its gate anew, as the equations are written term by term: the graph keeps the reference
    implementation's shape (and node counts); CSE merges the duplicates when compiling.
    """
    gate = gate_of(f"{base}.gate")
    pre = _add(gate, value, f"{base}.pre") if sign > 0 else _sub(gate, value, f"{base}.pre")
    return ReLU(pre, name=base)


def _sum_terms(terms: list, base: str) -> Variable:
    """``t1 + t2 + … − s1 − s2 …`` left to right: positive terms first, as the equations are written."""
    ordered = [t for t in terms if t[0] > 0] + [t for t in terms if t[0] < 0]
    acc = ordered[0][1]  # every conditional has a positive term
    if len(ordered) == 1:
        return _named(acc, base)
    for k, (sign, term) in enumerate(ordered[1:], 1):
        step_name = base if k == len(ordered) - 1 else f"{base}.acc{k}"
        acc = _add(acc, term, step_name) if sign > 0 else _sub(acc, term, step_name)
    return acc


def _keep_terms(gate_of, value: Variable, base: str, signed: bool = True) -> list:
    """``ReLU(gate + v) [− ReLU(gate − v)]``: ``v`` where the gate is 0, 0 where the gate is ``≤ −|v|``."""
    terms = [(+1, _term(gate_of, value, +1, f"{base}_pos"))]
    if signed:
        terms.append((-1, _term(gate_of, value, -1, f"{base}_neg")))
    return terms


def f_ifelse(cond, t_val, f_val, large_constant=1e10, name=None):
    """``cond ? t_val : f_val`` for ``cond`` exactly 0/1 (the paper's Eq. 7, ``direct``).

    ``ReLU(−λc + f) + ReLU(−λc̄ + t) − ReLU(−λc − f) − ReLU(−λc̄ − t)`` with ``c̄ = 1 − c``; requires
    ``λ > |t|, |f|``.  A ``None`` branch is ≡ 0 and drops its two terms (the reference's optimised form).
    """
    cond = _branches("f_ifelse", cond, t_val, f_val)
    lam = _const(_lambda_of(large_constant))
    base = name or "ifelse"

    def gate_false(nm):  # −λc: 0 when c = 0, −λ when c = 1
        return _named(cond * (-lam), nm)

    def gate_true(nm):  # −λc̄
        return _named(f_not(cond, name=f"{nm}.not_cond") * (-lam), nm)

    terms = []
    if f_val is not None:
        terms += _keep_terms(gate_false, f_val, f"{base}.f")
    if t_val is not None:
        terms += _keep_terms(gate_true, t_val, f"{base}.t")
    return _sum_terms(terms, base)


def f_ifelse_optimized(neg_cond, t_val, t_nonneg=False, large_constant=1e10, name=None):
    """The ``optimized`` conditional ``neg_cond ? 0 : t_val`` with the negated condition given directly.

    ``neg_cond`` is ``c̄′`` (exactly 1 where the value must be dropped, 0 where ``t_val`` is kept), computed
    by the program itself (e.g. ``f_larger(ctr, 1.5)`` for "not ``ctr < 1.5``").  Returns
    ``ReLU(−λ·c̄′ + t)`` when ``t_nonneg`` (``t ≥ 0`` wherever it is kept), else
    ``ReLU(−λ·c̄′ + t) − ReLU(−λ·c̄′ − t)``.  Requires ``λ > |t|``.
    """
    neg_cond = _var(neg_cond, "f_ifelse_optimized neg_cond")
    t_val = _var(t_val, "f_ifelse_optimized t_val")
    _same_dims("f_ifelse_optimized", neg_cond=neg_cond, t_val=t_val)
    lam = _const(_lambda_of(large_constant))
    base = name or "ifelse_opt"

    def gate(nm):
        return _named(neg_cond * (-lam), nm)

    return _sum_terms(_keep_terms(gate, t_val, f"{base}.t", signed=not t_nonneg), base)


def f_ifelse_step(cond, t_val, f_val, large_constant=1e10, scale=1000, name=None):
    """Step-based conditional (Eq. 9): selects ``t`` for ``c ≥ ½ + 1/μ`` and ``f`` for ``c ≤ ½ − 1/μ``.

    ``ReLU(−λ + λ·f_step(½ − c) + f) + ReLU(−λ + λ·f_step(c − ½) + t) − ReLU(−λ + λ·f_step(½ − c) − f)
    − ReLU(−λ + λ·f_step(c − ½) − t)``; a ``None`` branch drops its two terms.
    """
    cond = _branches("f_ifelse_step", cond, t_val, f_val)
    lam = _const(_lambda_of(large_constant))
    mu = _scale_of(scale)
    base = name or "ifelse_step"
    half = Fraction(1, 2)

    def step_gate(x, y):
        def gate(nm):  # −λ + λ·f_step(x − y): 0 when the step is 1, −λ when it is 0
            stepped = _step(_difference(x, y, f"{nm}.diff", "f_ifelse_step"), mu, f"{nm}.step")
            return _named(_named(stepped * lam, f"{nm}.scaled") - lam, nm)
        return gate

    terms = []
    if f_val is not None:
        terms += _keep_terms(step_gate(half, cond), f_val, f"{base}.f")
    if t_val is not None:
        terms += _keep_terms(step_gate(cond, half), t_val, f"{base}.t")
    return _sum_terms(terms, base)


def f_ifelse_mul(cond, t_val, f_val, name=None):
    """Multiplicative conditional (Eq. 10): ``c ⊙ t + (1 − c) ⊙ f`` through one Multi.

    ``f_val=None`` gives ``Multi(Concat(c, t))``; ``t_val=None`` gives ``Multi(Concat(1 − c, f))``.
    """
    cond = _branches("f_ifelse_mul", cond, t_val, f_val)
    base = name or "ifelse_mul"
    if f_val is None:
        return Multi(Concat([cond, t_val], name=f"{base}.cat"), name=base)
    not_cond = f_not(cond, name=f"{base}.not_cond")
    if t_val is None:
        return Multi(Concat([not_cond, f_val], name=f"{base}.cat"), name=base)
    products = Multi(Concat([cond, not_cond, t_val, f_val], name=f"{base}.cat"), name=f"{base}.products")
    eye = Matrix.identity(cond.dim)
    return Linear(products, Matrix.hstack([eye, eye]), name=base)


def f_conditional(variant, cond, t_val, neg_cond=None, t_nonneg=False, scale=1000, large_constant=1e10,
                  name=None):
    """``cond ? t_val : 0`` in one of the Fig. 4 variants (``programs.md`` §4).

    ``direct``: ``f_ifelse(c, t, t*0)``; ``optimized``: :func:`f_ifelse_optimized` with ``neg_cond`` (default
    ``f_not(cond)``) and ``t_nonneg``; ``step_optimized``: ``f_ifelse_step(c, t, None)``; ``multiplicative``:
    ``f_ifelse_mul(c, t, t*0)``; ``multiplicative_optimized``: ``f_ifelse_mul(c, t, None)``.
    """
    if variant not in CONDITIONAL_VARIANTS:
        raise ValueError(f"f_conditional: unknown variant {variant!r}; expected one of {CONDITIONAL_VARIANTS}")
    cond = _var(cond, "f_conditional cond")
    t_val = _var(t_val, "f_conditional t_val")
    base = name or "cond"
    if variant == "direct":
        return f_ifelse(cond, t_val, _named(t_val * 0, f"{base}.zero"), large_constant=large_constant, name=base)
    if variant == "optimized":
        if neg_cond is None:
            neg_cond = f_not(cond, name=f"{base}.not_cond")
        return f_ifelse_optimized(neg_cond, t_val, t_nonneg=t_nonneg, large_constant=large_constant, name=base)
    if variant == "step_optimized":
        return f_ifelse_step(cond, t_val, None, large_constant=large_constant, scale=scale, name=base)
    if variant == "multiplicative":
        return f_ifelse_mul(cond, t_val, _named(t_val * 0, f"{base}.zero"), name=base)
    return f_ifelse_mul(cond, t_val, None, name=base)


# ---------------------------------------------------------------------------- §7.6, §7.9

def f_relu_identity(x, name=None):
    """``ReLU(x) − ReLU(−x) = x`` as ``Linear([I, −I])(Concat(ReLU(x), ReLU(−x)))`` (a ReLU bypass)."""
    x = _var(x, "f_relu_identity x")
    base = name or "relu_identity"
    pos = ReLU(x, name=f"{base}.pos")
    neg = ReLU(Linear(x, -Matrix.identity(x.dim), name=f"{base}.negated"), name=f"{base}.neg")
    eye = Matrix.identity(x.dim)
    return Linear(Concat([pos, neg], name=f"{base}.cat"), Matrix.hstack([eye, -eye]), name=base)


# A margin the rotation counter keeps above 1/μ so the drift of the float rotation (~t·1e-16) cannot
# eat it within any realistic sequence length.
_ROTATION_SAFETY = Fraction(1, 10**9)


def _rotation_threshold(divisor: int) -> float:
    return math.cos(math.pi / divisor)


def _rotation_is_exact(divisor: int, mu: Fraction) -> bool:
    return 1 - Fraction(_rotation_threshold(divisor)) - 1 / mu >= _ROTATION_SAFETY


def modulo_counter_max_divisor(scale=1000) -> int:
    """The largest divisor the rotation counter of ``f_modulo_counter`` counts exactly at this μ."""
    mu = _scale_of(scale)
    if not _rotation_is_exact(1, mu):
        return 0
    lo, hi = 1, 2
    while _rotation_is_exact(hi, mu):
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # 1 − cos(π/d) decreases in d
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _rotation_is_exact(mid, mu) else (lo, mid)
    return lo


def f_modulo_counter(dummy, divisor, scale=1000, method="rotation", name=None):
    """``(t − 1) mod divisor`` at step ``t`` (0, 1, …, d−1, 0, …); ``dummy`` only anchors the graph.

    ``method="rotation"`` (paper App. F.7): a 2-D rotating state by ``θ = 2π/d``, a ``d``-row indicator
    ``cos((t−1−i)θ)`` and ``f_larger(indicator, cos(θ/2))``.  cos/sin are float64 constants (exact mode
    takes their binary values); the result is exact while ``1 − cos(π/d) ≥ 1/μ`` (``d ≤ 70`` at μ = 1000),
    else ``ValueError``.  ``method="permutation"``: a cyclic-shift one-hot state — rational, any ``d``.
    """
    dummy = _var(dummy, "f_modulo_counter dummy")
    if isinstance(divisor, bool) or not isinstance(divisor, (int, np.integer)) or divisor < 1:
        raise ValueError(f"f_modulo_counter: divisor must be a positive integer, got {divisor!r}")
    d = int(divisor)
    base = name or "modulo_counter"
    if method == "permutation":
        shift = Matrix.from_entries((d, d), [(j + 1) % d for j in range(d)], range(d), [1] * d)
        init = Vector(np.eye(d)[d - 1])
        one_hot = LinState(dummy, shift, Matrix.zeros(d, dummy.dim), init_state=init, name=f"{base}.one_hot")
        return Linear(one_hot, np.arange(d, dtype=np.float64).reshape(1, d), name=base)
    if method != "rotation":
        raise ValueError(f"f_modulo_counter: method must be 'rotation' or 'permutation', got {method!r}")
    mu = _scale_of(scale)
    if not _rotation_is_exact(d, mu):
        raise ValueError(
            f"f_modulo_counter: the rotation counter is not exact for divisor {d} at scale μ={scale}: "
            f"1 − cos(π/{d}) = {1 - _rotation_threshold(d):.6g} < 1/μ = {float(1 / mu):.6g}, so the current "
            f"position would read ≈ {float(mu * (1 - Fraction(_rotation_threshold(d)))):.4g} instead of 1 "
            f"(the largest exact divisor at this μ is {modulo_counter_max_divisor(scale)}); use "
            "method='permutation' (exact for any divisor) or a larger scale")
    theta = 2 * math.pi / d
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    cycler = LinState(dummy, rotation, Matrix.zeros(2, dummy.dim), init_state=np.array([c, -s]),
                      name=f"{base}.cycler")
    rows = np.array([[math.cos(i * theta), math.sin(i * theta)] for i in range(d)])
    indicator = Linear(cycler, rows, name=f"{base}.indicator")
    one_hot = f_larger(indicator, _rotation_threshold(d), scale=scale, name=f"{base}.one_hot")
    return Linear(one_hot, np.arange(d, dtype=np.float64).reshape(1, d), name=base)
