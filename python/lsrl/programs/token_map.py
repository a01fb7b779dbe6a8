"""The paper's Listing 2: in-context lookup in a token map ``V^n -> V^n`` (programs.md §3).

Input: the ``n`` query tokens, then for every entry its ``n`` key tokens and ``n`` value tokens.
The program stores the query, marks key tokens equal to the query token at the same offset, keeps
the last ``n + 1`` marks in a shift buffer, records the position of the first value token after a
fully matching key and copies the ``n`` value tokens that follow into registers; the last ``n``
outputs replay the registers.

Listing bug fixed here (programs.md §3.3): the offsets ``m = g mod n`` take values ``0..n−1``, so
the per-offset nodes are built for ``i = 0..n−1`` (the listing's comprehensions run over ``1..n``).

Modulo counters: the rotation counter (``f_modulo_counter``, App. F.7) is exact for a divisor ``d``
only while ``1 − cos(π/d) ≥ 1/scale`` (``2n ≤ 70`` at ``scale = 1000``).  ``counter="auto"`` (the
default) uses the reference's rotation counter when both divisors ``n`` and ``2n`` satisfy this and
the exact permutation counter otherwise; ``"rotation"`` / ``"permutation"`` force one.
"""
from __future__ import annotations

import numpy as np

from ..lang import Concat, ForEach, Input, Linear, LinState
from ..sugar import (f_and, f_constant, f_larger, f_modulo_counter, f_not, f_or, f_smaller,
                     modulo_counter_max_divisor)
from .conditional import check_conditional, gated, named

__all__ = ["token_map", "token_map_graph", "token_prompt", "token_answer", "COUNTERS",
           "rotation_counter_exact"]

COUNTERS = ("auto", "rotation", "permutation")


def rotation_counter_exact(divisor: int, scale: float = 1000) -> bool:
    """Whether the rotation modulo counter yields exact one-hots for ``divisor`` at this ``scale``."""
    return divisor <= modulo_counter_max_divisor(scale)


def _counter_method(counter: str, n: int, scale: float) -> str:
    if counter not in COUNTERS:
        raise ValueError(f"unknown counter {counter!r}; valid: {', '.join(COUNTERS)}")
    if counter != "auto":
        return counter
    return "rotation" if rotation_counter_exact(2 * n, scale) else "permutation"


def token_map_graph(n: int, conditional: str = "multiplicative", scale: float = 1000,
                    large_constant: float = 1e10, vocab_size: int | None = None,
                    counter: str = "auto"):
    """Build Listing 2's graph; returns ``(output, nodes)`` with the named nodes of the node table
    (per-offset nodes as lists, e.g. ``nodes["reg"][i]``; ``nodes["counter"]`` is the counter method
    used)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"token_map: n must be a positive integer, got {n!r}")
    n = int(n)
    check_conditional(conditional)
    if vocab_size is not None and (int(vocab_size) != vocab_size or vocab_size < 1):
        raise ValueError(f"token_map: vocab_size must be a positive integer, got {vocab_size!r}")
    method = _counter_method(counter, n, scale)
    cond_kw = dict(scale=scale, large_constant=large_constant)

    def larger(a, b, name):
        return f_larger(a, b, scale=scale, name=name)

    def smaller(a, b, name):
        return f_smaller(a, b, scale=scale, name=name)

    def both(a, b, name):
        return f_and(a, b, scale=scale, name=name)

    upper = None if vocab_size is None else int(vocab_size) - 1
    x = Input(1, lower=0, upper=upper, name="x", integer=True)
    one = f_constant(x, 1, name="one")
    g = LinState(one, A=[[1]], B=[[1]], init_state=[-1], name="g")
    m = f_modulo_counter(x, n, scale=scale, method=method, name="m")
    m2 = f_modulo_counter(x, 2 * n, scale=scale, method=method, name="m2")
    is_prompt = larger(g, n - 0.5, "is_prompt")
    is_key = larger(m2, n - 0.5, "is_key")
    is_val = both(is_prompt, f_not(is_key, name="not_key"), "is_val")
    is_first_val = both(is_val, smaller(m, 0.5, "m_is_0"), "is_first_val")
    def offset_is(i, nm):
        return both(larger(m, i - 0.5, f"{nm}.ge"), smaller(m, i + 0.5, f"{nm}.le"), nm)

    eq = [offset_is(i, f"eq_{i}") for i in range(n)]

    def not_eq(i):
        # ``optimized``'s directly computed "m != i"
        return lambda nm: f_or(larger(m, i + 0.5, f"{nm}.above"), smaller(m, i - 0.5, f"{nm}.below"),
                               scale=scale, name=nm)

    tq = gated(conditional, lambda nm: smaller(is_prompt, 0.5, nm), x,
               negated=lambda nm: larger(is_prompt, 0.5, nm), value_nonneg=True, name="tq",
               **cond_kw)
    # The query-side conditionals test ``m == i`` with their own copy of the test, as the listing
    # writes it inline (the reference's graph shape and node counts; CSE merges the copies).
    tq_i = [gated(conditional, lambda nm, i=i: offset_is(i, nm), tq, negated=not_eq(i),
                  value_nonneg=True, name=f"tq_{i}", **cond_kw) for i in range(n)]
    q = LinState(Concat(tq_i, name="tq_all"), A=np.eye(n), B=np.eye(n), init_state=np.zeros(n),
                 name="q")
    qs_i = [gated(conditional, lambda nm, i=i: offset_is(i, nm), named(q[i], f"q_{i}"),
                  negated=not_eq(i), value_nonneg=True, name=f"qs_{i}",
                  zero=lambda nm, i=i: named(named(q[i], f"{nm}.q") * 0, nm), **cond_kw)
            for i in range(n)]
    qc = Linear(Concat(qs_i, name="qs_all"), np.ones((1, n)), name="qc")
    token_ge = larger(x, named(qc - 0.5, "qc_lo"), "match.ge")
    token_le = smaller(x, named(qc + 0.5, "qc_hi"), "match.le")
    match = both(both(token_ge, token_le, "match.eq"), is_key, "match")

    shift = np.eye(n + 1, k=1)
    last = np.zeros((n + 1, 1))
    last[n, 0] = 1
    buf = LinState(match, A=shift, B=last, init_state=np.zeros(n + 1), name="buf")
    bsum = Linear(buf, np.array([[1.0] * n + [0.0]]), name="bsum")
    all_match = larger(bsum, n - 0.5, "all_match")
    start_upd = gated(conditional, lambda nm: both(all_match, is_first_val, nm), g,
                      negated=lambda nm: f_not(both(all_match, is_first_val, f"{nm}.and"), name=nm),
                      value_nonneg=True, name="start_upd", **cond_kw)
    started = LinState(start_upd, A=[[1]], B=[[1]], init_state=[0], name="started")
    copy_on = both(is_val, smaller(g, named(started + n, "copy_end"), "before_end"), "copy_on")

    def copying(i, nm):
        return both(copy_on, eq[i], f"{nm}.and")

    upd_i = [gated(conditional, lambda nm, i=i: larger(copying(i, nm), 0.5, nm), x,
                   negated=lambda nm, i=i: smaller(copying(i, nm), 0.5, nm), value_nonneg=True,
                   name=f"upd_{i}", **cond_kw) for i in range(n)]
    reg_i = [LinState(upd_i[i], A=[[1]], B=[[1]], init_state=[0], name=f"reg_{i}")
             for i in range(n)]
    out_i = [gated(conditional, lambda nm, i=i: larger(eq[i], 0.5, nm), reg_i[i],
                   negated=lambda nm, i=i: smaller(eq[i], 0.5, nm), value_nonneg=True,
                   name=f"out_{i}", **cond_kw) for i in range(n)]
    out = Linear(Concat(out_i, name="out_all"), np.ones((1, n)), name="out")
    nodes = dict(x=x, one=one, g=g, m=m, m2=m2, is_prompt=is_prompt, is_key=is_key, is_val=is_val,
                 is_first_val=is_first_val, eq=eq, tq=tq, tq_i=tq_i, q=q, qs=qs_i, qc=qc,
                 match=match, buf=buf, bsum=bsum, all_match=all_match, start_upd=start_upd,
                 started=started, copy_on=copy_on, upd=upd_i, reg=reg_i, out_i=out_i, out=out,
                 counter=method)
    return out, nodes


def token_map(n: int, conditional: str = "multiplicative", scale: float = 1000,
              large_constant: float = 1e10, vocab_size: int | None = None, counter: str = "auto"):
    """Listing 2 as a program over scalar tokens (ids ``≥ 0``).

    Input: ``token_prompt(query, mapping)``; the answer is the last ``n`` outputs.  Keys must be
    unique and the query must be a key (else the answer is zeros).  ``vocab_size`` (optional)
    declares tokens in ``[0, vocab_size − 1]`` for compilation.  ``counter`` picks the modulo
    counter (see the module docstring).
    """
    output, _ = token_map_graph(n, conditional, scale, large_constant, vocab_size, counter)
    return ForEach(output)


def token_prompt(query, mapping) -> np.ndarray:
    """``(n + 2n·len(mapping), 1)``: the query, then ``key + value`` for each entry in order."""
    query = [float(v) for v in query]
    n = len(query)
    if n == 0:
        raise ValueError("token_prompt: empty query")
    tokens = list(query)
    for key, value in mapping.items():
        if len(key) != n or len(value) != n:
            raise ValueError(f"token_prompt: entry {tuple(key)} -> {tuple(value)} does not have "
                             f"{n} key and {n} value tokens")
        tokens.extend(float(v) for v in key)
        tokens.extend(float(v) for v in value)
    return np.array(tokens, dtype=np.float64).reshape(-1, 1)


def token_answer(query, mapping) -> tuple:
    """The expected answer: ``mapping[query]`` (the program's last ``n`` outputs)."""
    return tuple(mapping[tuple(query)])
