"""The paper's Listing 1: in-context approximation of a continuous function (programs.md §2).

The prompt is a piecewise-constant table of ``f`` (one token per grid cell: cell size, lower
corner, value at the centre), preceded by the query.  The program remembers the query, recognises
the cell that contains it and accumulates that cell's value; the answer is the output at the last
step.

Listing bugs fixed here (programs.md §2.4): the step counter is a scalar (the listing's
``A = ones(d_in, d_in)`` counter grows like ``d_in^t``) broadcast to ``d_in`` by a Linear, the
listing's undefined ``counter`` is that scalar, and ``active`` is broadcast to ``d_out`` before the
value conditional (there is no implicit broadcasting).
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np

from ..lang import ForEach, Input, Linear, LinState
from ..sugar import f_and, f_bump, f_constant, f_larger, f_smaller
from .conditional import check_conditional, gated, named

__all__ = ["continuous_approximator", "continuous_graph", "continuous_prompt", "continuous_query",
           "cell_centre", "repeated_cell_input", "greedy_rounding_input"]


def continuous_graph(d_in: int, d_out: int, conditional: str = "multiplicative", scale: float = 1000,
                     large_constant: float = 1e10, value_bound: float | None = None, n_levels: int | None = None):
    """Build Listing 1's graph; returns ``(output, nodes)`` with the named nodes of the node table."""
    if int(d_in) != d_in or int(d_out) != d_out or d_in < 1 or d_out < 1:
        raise ValueError(f"continuous_approximator: d_in and d_out must be positive integers, "
                         f"got d_in={d_in}, d_out={d_out}")
    d_in, d_out = int(d_in), int(d_out)
    check_conditional(conditional)
    if value_bound is None:
        value_lower, value_upper = -np.inf, np.inf
    else:
        if not value_bound >= 0:
            raise ValueError(f"continuous_approximator: value_bound must be >= 0, got {value_bound}")
        value_lower, value_upper = -float(value_bound), float(value_bound)
    lower = np.array([0.0] * (1 + d_in) + [value_lower] * d_out)
    upper = np.array([1.0] * (1 + d_in) + [value_upper] * d_out)
    cond_kw = dict(scale=scale, large_constant=large_constant)

    grid = None
    if n_levels is not None:
        levels = int(n_levels) if not isinstance(n_levels, bool) and int(n_levels) == n_levels else 0
        if levels < 1 or levels & (levels - 1):
            raise ValueError(f"continuous_approximator: n_levels must be a power of two (the grid of cell corners "
                             f"and centres, k/(2·n_levels), is then exact in floats), got {n_levels!r}")
        grid = [0.5 / levels] * (1 + d_in) + [0.0] * d_out
    x = Input(1 + d_in + d_out, lower=lower, upper=upper, name="x", grid=grid)
    one = f_constant(x, 1, name="one")
    ctr = LinState(one, A=[[1]], B=[[1]], init_state=[0], name="ctr")
    ctr_v = Linear(ctr, np.ones((d_in, 1)), name="ctr_v")
    query_in = named(x[0:d_in], "query_in")
    q_upd = gated(conditional, lambda nm: f_smaller(ctr_v, 1.5, scale=scale, name=nm), query_in,
                  negated=lambda nm: f_larger(ctr_v, 1.5, scale=scale, name=nm),
                  value_nonneg=True, name="q_upd", **cond_kw)
    q = LinState(q_upd, A=np.eye(d_in), B=np.eye(d_in), init_state=np.zeros(d_in), name="q")

    step = Linear(named(x[0], "delta"), np.ones((d_in, 1)), name="step")
    lb = named(x[1:1 + d_in], "lb")
    ub = named(lb + step, "ub")
    bump = f_bump(q, lb, ub, scale=scale, name="bump")
    bsum = Linear(bump, np.ones((1, d_in)), name="bsum")
    in_cell = f_larger(bsum, d_in - 0.5, scale=scale, name="in_cell")
    # The second factor is always 1 (the counter starts at 1); kept as in the listing.
    ctr_positive = f_larger(ctr, 0.5, scale=scale, name="ctr_positive")
    active = f_and(in_cell, ctr_positive, scale=scale, name="active")
    active_v = Linear(active, np.ones((d_out, 1)), name="active_v")
    value_in = named(x[1 + d_in:1 + d_in + d_out], "value_in")
    y_upd = gated(conditional, lambda nm: f_larger(active_v, 0.5, scale=scale, name=nm), value_in,
                  negated=lambda nm: f_smaller(active_v, 0.5, scale=scale, name=nm),
                  value_nonneg=False, name="y_upd", **cond_kw)
    y = LinState(y_upd, A=np.eye(d_out), B=np.eye(d_out), init_state=np.zeros(d_out), name="y")
    nodes = dict(x=x, one=one, ctr=ctr, ctr_v=ctr_v, q_upd=q_upd, q=q, step=step, lb=lb, ub=ub,
                 bump=bump, bsum=bsum, in_cell=in_cell, active=active, active_v=active_v,
                 y_upd=y_upd, y=y)
    return y, nodes


def continuous_approximator(d_in: int, d_out: int, conditional: str = "multiplicative",
                            scale: float = 1000, large_constant: float = 1e10,
                            value_bound: float | None = None, n_levels: int | None = None):
    """Listing 1 as a program over tokens of dimension ``1 + d_in + d_out``.

    Input: ``continuous_query(q, d_out)`` followed by ``continuous_prompt(f, d_in, d_out, N)``.
    The output at the last step is ``f`` at the centre of the grid cell ``Π (l_j, l_j + δ]`` that
    contains ``q`` (0 if none does, e.g. a coordinate equal to 0), provided ``q`` lies at least
    ``1/scale`` inside the cell.  ``value_bound`` (optional) declares ``|ȳ| ≤ value_bound`` for the
    value slots; the first ``1 + d_in`` slots are declared in ``[0, 1]``.  ``n_levels`` (optional, a power of two)
    declares the grid the prompt of ``continuous_prompt(f, d_in, d_out, n_levels)`` lies on and puts the query on
    it too (``Input(grid=1/(2·n_levels))`` on those slots: the cells' corners and centres — ``cell_centre(q,
    n_levels)`` is the query that answers ``f`` there): every comparison of the program is then between grid
    values, so the error bound proves the steps exact (docs/numerics.md, "Declared grids"), and the compiled
    model refuses a query off the grid when it runs.
    """
    output, _ = continuous_graph(d_in, d_out, conditional, scale, large_constant, value_bound, n_levels)
    return ForEach(output)


def continuous_prompt(f, d_in: int, d_out: int, n_levels: int) -> np.ndarray:
    """The prompt ``(n_levels**d_in, 1 + d_in + d_out)``: one row ``[δ, l_1..l_d_in, f(centre)]`` per
    cell, cells in lexicographic order with the first dimension outermost."""
    if int(n_levels) != n_levels or n_levels < 1:
        raise ValueError(f"continuous_prompt: n_levels must be a positive integer, got {n_levels}")
    n_levels = int(n_levels)
    edges = np.linspace(0.0, 1.0, n_levels + 1)
    lowers = edges[:-1]
    centres = (edges[:-1] + edges[1:]) / 2
    delta = 1.0 / n_levels
    rows = []
    for index in itertools.product(range(n_levels), repeat=d_in):
        index = list(index)
        value = np.asarray(f(centres[index]), dtype=np.float64).reshape(-1)
        if value.shape != (d_out,):
            raise ValueError(f"continuous_prompt: f returned {value.size} values, expected "
                             f"d_out={d_out}")
        rows.append(np.concatenate([[delta], lowers[index], value]))
    return np.array(rows, dtype=np.float64)


def continuous_query(q, d_out: int) -> np.ndarray:
    """The query token ``[q_1..q_d_in, 0 × (d_out + 1)]`` (the first row of the input)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    return np.concatenate([q, np.zeros(d_out + 1)])


def cell_centre(q, n_levels: int) -> np.ndarray:
    """Centre of the cell ``Π (l_j, l_j + 1/N]`` containing ``q`` (as the prompt computes it)."""
    q = np.asarray(q, dtype=np.float64)
    index = np.clip(np.ceil(q * n_levels) - 1, 0, n_levels - 1).astype(int)
    edges = np.linspace(0.0, 1.0, n_levels + 1)
    return (edges[index] + edges[index + 1]) / 2


def repeated_cell_input(q, values, n_levels: int) -> np.ndarray:
    """``(1 + len(values), 1 + d_in + 1)``: the query at the centre of ``q``'s cell, then one prompt token per
    value, every one that cell.  Such a prompt lies in the declared domain (``n_levels``' grid), and the answer
    on it is ``Σ values``, not one cell's value: the state sums as many values as tokens match, and an error bound
    holds for it too."""
    centre = cell_centre(q, n_levels)
    values = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    cell = np.concatenate([[1.0 / n_levels], centre - 0.5 / n_levels])
    tokens = np.hstack([np.broadcast_to(cell, (len(values), cell.size)), values])
    return np.vstack([continuous_query(centre, 1)[None], tokens])


def greedy_rounding_input(run, q, n_levels: int, candidates, length: int | None = None,
                          direction: float = 1.0) -> np.ndarray:
    """An input of ``continuous_approximator(d_in, 1, ..., n_levels=n_levels)`` on which ``run`` errs far, built
    token by token: each token is the query's cell (:func:`repeated_cell_input`) with the value of ``candidates``
    that puts ``run``'s output at the last step furthest from the exact answer (the exact sum of the values) in
    ``direction`` (the sign of output − answer).  ``run(xs)`` returns ``(batch, steps, 1)`` outputs (a model in
    the dtype measured); ``length`` defaults to ``n_levels**d_in`` tokens, the paper's prompt length.  Values just
    below 1 make the running sum round by up to half a unit each step; this is how close ``model.error_bound``
    comes to an error of the declared domain (docs/numerics.md, "Declared grids")."""
    values = np.asarray(candidates, dtype=np.float64).reshape(-1).tolist()
    length = n_levels ** np.atleast_1d(q).size if length is None else length
    chosen: list[float] = []
    answer = Fraction(0)
    for _ in range(length):
        batch = np.repeat(repeated_cell_input(q, chosen + [0.0], n_levels)[None], len(values), axis=0)
        batch[:, -1, -1] = values
        outputs = np.asarray(run(batch), dtype=np.float64)[:, -1, 0].tolist()
        deviations = [float(Fraction(out) - answer - Fraction(value)) * direction
                      for out, value in zip(outputs, values)]
        value = values[int(np.argmax(deviations))]
        chosen.append(value)
        answer += Fraction(value)
    return repeated_cell_input(q, chosen, n_levels)[None]
