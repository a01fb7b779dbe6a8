"""``materialize-steps``: give a step's 0/1 a unit of its own before a large weight reads it.

A step ``f_step(x) = ReLU(μx) − ReLU(μx − 1)`` (and a bump, a group of such units) is, in the layer form, a
group of ReLU units with one shared row and biases one apart (``rescale-units`` makes them so).  The program
forms the step's value first — in float32 an exact 0 or 1 on a saturated step, whatever rounding ``x`` has —
and only then multiplies it: ``−λ·c`` with λ = 1e10, ``μ·(a + b − 1.5)`` in the next step.  The layer form
fuses the difference into its reader instead, which computes ``w·ReLU(μx) − w·ReLU(μx − 1)``: each product
rounds at ``|w|·μ|x|`` (for ``w = 1e10`` and ``μx ≈ 2500`` that is 2e6 in float32), so the exact 0/1 is lost
before the subtraction (docs/numerics.md, mechanisms 2–3).

This pass inserts, after a ReLU stage whose units a reader combines into bounded group differences, one more
ReLU stage that carries the units the reader still reads alone and adds a unit per adjacent difference of a
group, ``D = u_k − u_{k+1} = min(u_k, gap)`` (``gap`` the pair's bias gap).  The reader's weights on the group,
``Σ w_j u_j`` with ``Σ w_j = 0``, become ``Σ_k P_k D_k`` (``P_k`` the partial sums of ``w``; a share of ``Σ w_j``
left within ``cancel`` of the weights is read from the last unit as before).  ``D`` is read through its clamp,
``gap − C`` with ``C = ReLU(gap − u_k)`` (``u_{k+1} = ReLU(u_k − gap)`` for every input): on a saturated step
``C`` is an exact 0 or ``gap`` whatever rounding the step's input has, where ``ReLU(u_k − u_{k+1})`` rounds at
``|u_k|`` (a rotation counter's cos times 1000: 2e-12, which λ = 1e10 makes 0.02).  The constants
``Σ P_k·gap`` go into the reader's bias — where its bias cancels them (``−λ + λ·c``: the ``direct`` and
``step_optimized`` conditionals), so that no constant of size λ meets a small value, or where they are below
2^24 (each, or their sum: a bump's ``−λ + λ``, whose λ-sized terms ``separate-large-terms`` then sums apart); a
reader that would add a constant of size λ to a small value (``t − λ·c``, where ``c = 1`` drives the unit
far below 0 anyway) reads ``D = ReLU(u_k − u_{k+1})``, exact 0 where ``c = 0``.  A row's folded constants are
summed exactly and rounded once; what its bias cannot hold is read from a constant unit of 1 in the inserted
stage.  With ``clamp=false``, and where a reader's weight on a difference reaches ``clamp_limit`` (``lsrl.compile``
sets 2^24 for the standard GRU, whose clamp would be a ReLU pair holding ``u_k``'s whole range under its reader's
λ-weights), the units read ``ReLU(u_k − u_{k+1})`` and, where the bias cancels,
``ReLU(gap − u_k + u_{k+1})`` (``gap`` rounded up where the biases' float difference is not exact).  A single
bounded unit next to a bias ≥ 2^24 that cancels it (a 0/1 condition carried through a state) is read as
``ReLU(h − u)`` the same way, ``h`` its upper bound (from the units this pass made, rounded up, or range
analysis' where it has no interval slack to snap off).  Where no such bound cancels the bias (a placement that
carries a step's two ReLUs through different layers leaves range analysis a bound of 10^6 on a 0/1 condition),
``h`` is the value the bias cancels and the unit is read as ``h − ReLU(h − u) + ReLU(u − h)``: the same map for
every ``u`` (either ``h`` has so few bits that folding ``w·h`` into the bias is exact) — where ``h`` is a positive
power of two, as a rescaled step's 1 is; another ``h`` is no condition's value (``λμ·x − λ`` cancels at
``x = 0.001``), and ``u − h`` would round.  The readout keeps a group it reads with weights ±2^k and nothing else
(no other unit, no bias): its products and their sum are exact and nothing reads its rounding; beside another
value the sum would round that value at the units' magnitude (``x/3 + 1500 − 1499``).

The map from input to output is unchanged in exact arithmetic.  The model gets one layer more per rewritten
stage.  Run it after ``rescale-units`` (it finds the groups by their bit-identical rows).  An exact module is
rewritten the same way, every decision taken on its float64 image and every constant computed exactly too (the
partial sums, the pairs' exact bias gaps, the folded bias: the float64 value the folds give, the rest of the exact
sum on a constant unit); a group's pair is differenced only where its exact rows are equal, and a complemented
unit is always read with its excess, ``h − ReLU(h − u) + ReLU(u − h)``, exact whatever bound the image gives.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import PassError
from ..ir.core import Op
from ..ir.error_free import fold_products, sum_exact
from ..ir.layer_form import check_layer_form
from ..ir.matrix import Matrix, Vector
from . import Pass, forget_analyses, register_pass
from .range_analysis import RangeAnalysis
from .exact_shadow import ExactShadow, layout_coefficient, layout_number
from .rescale_units import snap_number

__all__ = ["MaterializeSteps", "materialize_steps"]


def _groups(producer: Op) -> list[list[int]]:
    """Rows of ``producer`` that are bit-identical apart from the bias, each group ordered by bias, largest
    first (so the units it feeds are ordered largest first).  A group may hold units that are one value (same
    bias too: a step's ReLU and the same ReLU its program reads elsewhere at another scale, which debranch keeps
    apart); a reader takes at most one of them into a difference (:func:`_rewrite_rows`)."""
    data, indices, indptr = producer.attrs["A"].csr_parts()
    bias = producer.attrs["b"].to_float().values.tolist()
    by_row: dict[tuple, list[int]] = {}
    # a row's key sliced from the whole arrays' bytes (the same bytes as the row's own tobytes())
    ptr, index_bytes, data_bytes = indptr.tolist(), indices.tobytes(), data.tobytes()
    wi, wd = indices.itemsize, data.itemsize
    for j in range(len(ptr) - 1):
        start, end = ptr[j], ptr[j + 1]
        if start < end:
            by_row.setdefault((index_bytes[start * wi:end * wi], data_bytes[start * wd:end * wd]), []).append(j)
    groups = []
    for members in by_row.values():
        if len(members) < 2:
            continue
        if len({bias[j] for j in members}) > 1:
            groups.append(sorted(members, key=lambda j: -bias[j]))
    return groups


#: a reader's bias from which a single unit it cancels is read as a complement: float32 has no room beside it
#: for the token values (ulp(2^24) = 2)
LARGE_BIAS = 2.0 ** 24


def _power_of_two(value: float) -> bool:
    return value != 0 and math.frexp(abs(value))[0] == 0.5


@dataclasses.dataclass
class _Difference:
    """Unit ``u_hi − u_lo`` (``lo`` None: ``u_hi`` alone) of the inserted stage; ``complement``: ``gap`` minus
    that (``gap`` = the bias gap of the pair, or the upper bound of a unit alone), computed as ``ReLU(gap − u_hi)``
    where ``clamped``, else from both units; ``excess``: ``u_hi − gap`` (the other half of a unit read as
    ``gap − u_hi`` without a proven upper bound)."""
    hi: int
    lo: int | None
    gap: float
    complement: bool
    excess: bool = False
    clamped: bool = False
    exact_gap: Fraction | None = None  # an exact module's: the pair's exact bias gap, or the unit's h


def _held(bias: float, folds: list, w: float, h: float, upward: bool) -> float:
    """``h``, or the number nearest it (above it where ``upward``: an upper bound stays one) with so few bits that
    ``bias + Σ folds + w·h`` is a float64 value: a bias of size λ cancels the unit exactly in float arithmetic only
    where it holds ``w·h`` (10¹⁰ − 14999998758.894537·0.3333333 is 10⁻⁶ from a float64)."""
    if not math.isfinite(h) or h == 0 or not fold_products(bias, folds + [(w, h)])[1]:
        return h
    bits = Fraction(w).numerator.bit_length()  # w's significant bits: h may have the rest of 53
    step = math.ldexp(1.0, math.frexp(h)[1] - max(53 - bits, 1))
    if step == 0:  # h among the subnormals
        return h
    held = (math.ceil(h / step) if upward else round(h / step)) * step
    return h if fold_products(bias, folds + [(w, held)])[1] else held


def _gap_above(top: float, bottom: float) -> tuple[float, bool]:
    """The smallest float64 ≥ ``top − bottom``, and whether it is that difference exactly: a complement
    ``ReLU(gap − u_hi + u_lo)`` with a gap below the pair's own (``1.4866 − 0.4866`` may round down) would clip a
    saturated step and change the map by ``P·ulp(gap)``."""
    gap = top - bottom
    if not math.isfinite(gap) or sum_exact(top, -bottom, gap):
        return gap, math.isfinite(gap)
    return (gap if Fraction(gap) > Fraction(top) - Fraction(bottom) else math.nextafter(gap, math.inf)), False


@dataclasses.dataclass
class _Exact:
    """The exact constants of a rewrite on an exact module (the decisions are the float image's): the reader's
    rows ``{column: Fraction}`` and biases, and ``gap(hi, lo)``, a pair's exact bias gap."""
    rows: list
    bias: list
    gap: object


def _rewrite_rows(read: Matrix, bias: np.ndarray, groups: list[list[int]], gap_of, cancel: float,
                  upper, bound_slack: float, exact_readout: bool, clamp: bool, clamp_limit: float,
                  exact: _Exact | None = None):
    """The reader's new terms: per row, ``{column: weight}`` over the old units (``("unit", j)``), the differences
    (``("diff", key)``) and the constant units (``("constant", k)``); the new biases, the differences used and
    the number of constant units.  ``gap_of(hi, lo)`` is a pair's bias gap (rounded up) and whether it is the
    biases' exact difference; ``upper(j)`` is unit ``j``'s upper bound and whether it is exact (not range
    analysis', which may carry interval slack), asked only when a row's bias may cancel the unit;
    ``exact_readout``: the reader is the module's output; ``clamp``: read a step's 0/1 through its clamp, where
    the reader's weights on it stay below ``clamp_limit``.

    With ``exact`` (an exact module: every decision is taken on the float image) the same terms and biases are
    also computed in exact arithmetic, returned as two more lists; a unit a row complements is then always read
    with its excess (``u = h − ReLU(h − u) + ReLU(u − h)``, exact for every ``u``), as a float bound of the
    image need not bound the exact unit."""
    row_terms, exact_terms, exact_bias = [], [], []
    new_bias = bias.copy()
    most_rest = 0  # constant units the rows' residues need
    differences: dict[tuple, _Difference] = {}
    group_of = {j: g for g, group in enumerate(groups) for j in group}
    data, indices, indptr = read.csr_parts()
    ptr, columns, values = indptr.tolist(), indices.tolist(), data.tolist()
    # rows that read alike (a step's two units in the next stage: one direction, biases apart) are rewritten alike,
    # or range analysis loses the pair (a bound of 4·10⁷ on a step of 1000 after one row complemented a group)
    row_keys = [(tuple(columns[ptr[r]:ptr[r + 1]]), tuple(values[ptr[r]:ptr[r + 1]])) for r in range(read.shape[0])]
    alike: dict[tuple, list[int]] = {}
    for r, key in enumerate(row_keys):
        alike.setdefault(key, []).append(r)
    decided: dict[tuple, tuple] = {}  # (row key, group) -> _group_reading of the rows that read it alike
    for r in range(read.shape[0]):
        start, end = ptr[r], ptr[r + 1]
        weights = dict(zip(columns[start:end], values[start:end]))
        xweights = dict(exact.rows[r]) if exact else {}
        terms: dict[tuple, float] = {}
        xterms: dict[tuple, Fraction] = {}
        folds: list[tuple[float, float]] = []  # the products folded into the row's bias
        xfolds: list[tuple[Fraction, Fraction]] = []
        fold = (float(bias[r]), [])  # fold_products(bias[r], folds): the new bias and what it cannot hold
        # the groups the row reads, in their order (a group it does not read has nothing to rewrite; groups are
        # disjoint, so rewriting one leaves the others' weights as they were)
        for g in sorted({group_of[j] for j in weights.keys() & group_of.keys()}):
            group = groups[g]
            read_here = [(j, weights[j]) for j in group if j in weights]
            loudest = max((abs(v) for _, v in read_here), default=0.0)
            # members read far more softly than the rest (a carrier sharing the step's row) stay as they are
            members = [j for j, v in read_here if abs(v) > cancel * loudest]
            # of units that are one value (one bias), the loudest joins the differences, the others stay as they are
            distinct: list[int] = []
            for j in members:
                twin = next((n for n, k in enumerate(distinct) if gap_of(k, j)[0] == 0), None)
                if twin is None:
                    distinct.append(j)
                elif abs(weights[j]) > abs(weights[distinct[twin]]):
                    distinct[twin] = j
            members = distinct
            if len(members) < 2:
                continue
            w = [weights[j] for j in members]
            partial = _partial_sums(w)
            if partial is None:
                continue  # Σ w_j u_j = Σ P_k D_k + P_last·u_last needs the partial sums P exactly
            total = partial.pop()
            if abs(total) > cancel * math.fsum(map(abs, w)):
                continue  # read with a share that does not cancel: no small value to form
            xpartial = list(itertools.accumulate(xweights.get(j, Fraction(0)) for j in members)) if exact else []
            xtotal = xpartial.pop() if exact else None
            # (p, exact p, hi, lo, gap, whether it is exact, exact gap): a pair read with weight 0 adds nothing
            gaps = [(p, xpartial[k] if exact else None, hi, lo, *gap_of(hi, lo), exact.gap(hi, lo) if exact else None)
                    for k, (p, hi, lo) in enumerate(zip(partial, members, members[1:]))
                    if p != 0 or (exact and xpartial[k] != 0)]
            pairs = [(p, hi, lo, gap) for p, _, hi, lo, gap, _, _ in gaps]
            # u_lo = ReLU(u_hi − gap) only with the gap of the stored biases itself (1.4866 − 0.4866 may round)
            exact_gaps = all(is_exact for *_, is_exact, _ in gaps)
            clamp_here = clamp and exact_gaps and all(abs(p) < clamp_limit for p, *_ in gaps)
            products = folds + [(p, gap) for p, _, _, gap in pairs]
            rows_alike = alike[row_keys[r]]
            if (row_keys[r], g) not in decided:
                decided[row_keys[r], g] = _group_reading(bias, rows_alike, folds, products, cancel)
            cancels, complement = _decide(bias, r, folds, products, cancel, clamp_here, decided[row_keys[r], g])
            if exact_readout and not cancels and all(_power_of_two(v) for v in w) and \
                    set(columns[start:end]) <= set(members) and bias[r] == 0:
                continue  # the readout's products by ±2^k are exact, its sum of them too, and nothing reads it later
            for j in members:
                del weights[j]
                xweights.pop(j, None)
            if total != 0:  # Σ w_j u_j = Σ P_k D_k + (Σ w_j)·u_last: the rest is read as it was
                weights[members[-1]] = total
            if exact and xtotal != 0:
                xweights[members[-1]] = xtotal
            clamped = clamp_here and complement
            for p, xp, hi, lo, gap, _, xgap in gaps:
                key = (hi, lo, complement, clamped)
                differences.setdefault(key, _Difference(hi, lo, gap, complement, clamped=clamped, exact_gap=xgap))
                terms[("diff", key)] = terms.get(("diff", key), 0.0) + (-p if complement else p)
                if exact:
                    xterms[("diff", key)] = xterms.get(("diff", key), Fraction(0)) + (-xp if complement else xp)
            if complement:
                folds = products
                fold = fold_products(bias[r], folds)
                new_bias[r] = fold[0]
                xfolds = xfolds + [(xp, xgap) for _, xp, _, _, _, _, xgap in gaps]
        # a bounded unit whose weight the bias cancels (−λ·(1 − c) written λ·c − λ): read its complement —
        # where the bias is large enough (≥ 2^24) that float32 cannot hold a value of 1 beside it (the bias changes
        # only when a unit is read so: a row whose bias starts small has none)
        for j, w in list(weights.items()) if abs(new_bias[r]) >= LARGE_BIAS else ():
            if abs(new_bias[r]) < LARGE_BIAS or abs(w) < abs(new_bias[r]) / 2:
                continue
            # interval arithmetic leaves slack on a bound (1.0000000011 for a step's 1): the complement is taken
            # from the value itself (below), or λ would multiply the slack
            bound, is_exact = upper(j)
            hi = _held(bias[r], folds, w, bound, upward=True)
            proven = np.isfinite(hi) and abs(new_bias[r] + w * hi) <= cancel * abs(new_bias[r]) and (
                is_exact or snap_number(bound, bound_slack) == bound)
            if not proven:
                # no upper bound that cancels the bias (a condition carried where range analysis loses it): read
                # u = h − ReLU(h − u) + ReLU(u − h) with the h the bias cancels — exact for every u, and for a
                # 0/1 condition the second unit is 0
                hi = _held(bias[r], folds, w, snap_number(-new_bias[r] / w, bound_slack), upward=False)
                # a condition is 0 or a power of two (rescale-units puts a step's gap at 1); any other h is not one
                # (a row λμ·x − λ of an integer x cancels at x = 0.001), and reading ReLU(u − h) would round
                # every other value of u, times λ
                if not (hi > 0 and _power_of_two(hi) and abs(new_bias[r] + w * hi) <= cancel * abs(new_bias[r])):
                    continue
            if not proven or exact:
                key = (j, None, "excess", hi)
                differences.setdefault(key, _Difference(j, None, hi, False, excess=True, exact_gap=Fraction(hi)))
                terms[("diff", key)] = terms.get(("diff", key), 0.0) + w
                if exact:
                    xterms[("diff", key)] = xterms.get(("diff", key), Fraction(0)) + xweights.get(j, Fraction(0))
            del weights[j]
            key = (j, None, True, hi)  # rows may complement one unit from different h
            differences.setdefault(key, _Difference(j, None, hi, True, exact_gap=Fraction(hi)))
            terms[("diff", key)] = terms.get(("diff", key), 0.0) - w
            folds.append((w, hi))
            fold = fold_products(bias[r], folds)
            new_bias[r] = fold[0]
            if exact:
                xw = xweights.pop(j, Fraction(0))
                xterms[("diff", key)] = xterms.get(("diff", key), Fraction(0)) - xw
                xfolds.append((xw, Fraction(hi)))
        # what the bias could not hold exactly is read from constant units of 1: the map stays the program's
        terms.update({("constant", k): v for k, v in enumerate(fold[1])})
        most_rest = max(most_rest, len(fold[1]))
        terms.update({("unit", j): v for j, v in weights.items()})
        row_terms.append(terms)
        if exact:
            # the exact bias is the float one the row's folds give (as a float module's); the rest of the exact
            # sum goes to a constant unit
            total = exact.bias[r] + sum((p * gap for p, gap in xfolds), Fraction(0))
            held = Fraction(float(new_bias[r])) if xfolds else total
            if total != held:
                xterms[("constant", 0)] = total - held
                most_rest = max(most_rest, 1)
            xterms.update({("unit", j): v for j, v in xweights.items()})
            exact_terms.append(xterms)
            exact_bias.append(held)
    if exact:
        return row_terms, new_bias, differences, most_rest, exact_terms, exact_bias
    return row_terms, new_bias, differences, most_rest


def _shift(folds: list, products: list) -> float:
    return math.fsum(p * gap for p, gap in products[len(folds):])


def _cancels(bias: np.ndarray, s: int, folds: list, shift: float, cancel: float) -> bool:
    b = fold_products(bias[s], folds)[0]
    return abs(b) > 0 and abs(b + shift) <= cancel * abs(b)


def _group_reading(bias: np.ndarray, rows: list[int], folds: list, products: list, cancel: float) -> tuple:
    """What ``rows`` (rows that read a group alike) decide together: whether the group's constants ``Σ P_k·gap``
    (``products`` beyond ``folds``) are small (each below 2^24, or their sum: a bump's ``−λ·1 + λ·1``, whose
    λ-sized parts separate-large-terms sums apart from the row's small terms), whether they cancel one of the
    rows' biases where they are, and whether every bias holds them exactly."""
    shift = _shift(folds, products)
    small = max(abs(p * gap) for p, gap in products[len(folds):]) < LARGE_BIAS or abs(shift) < LARGE_BIAS
    held = all(math.isfinite(value) and not rest for value, rest in (fold_products(bias[s], products) for s in rows))
    return small, small and any(_cancels(bias, s, folds, shift, cancel) for s in rows), held


def _decide(bias: np.ndarray, r: int, folds: list, products: list, cancel: float, clamp: bool,
            reading: tuple) -> tuple[bool, bool]:
    """Whether a group's constants ``Σ P_k·gap`` (``products`` beyond ``folds``) cancel the bias of row ``r``, and
    whether it reads the group's complement: where its bias cancels — so that no constant of size λ meets a small
    value — or, with ``clamp``, where the constants are small and every bias holds them exactly.  ``D = gap −
    ReLU(gap − u_hi)`` is an exact 0 or gap on a saturated step whatever rounding its input has (``u_hi − u_lo``
    rounds at ``|u_hi|``); folded into a bias that cannot hold it, ``2⁻⁶⁰ + 3`` would be 3: another map.

    ``reading`` is :func:`_group_reading` of the rows that read the group alike: a small group is decided for all
    of them at once (a step's two units in the next stage, biases apart: one complemented alone, range analysis
    loses the pair — a bound of 4·10⁷ on a step of 1000), a λ-sized one by each row's own bias: ``x + λ·c`` beside
    ``x − λ + λ·c`` would read ``λ − 3 + x₊ − λ·C`` (its carried ``x₊ = x + 3``), and float32 holds no 3 beside
    λ."""
    small, any_cancels, held = reading
    cancelled = any_cancels or _cancels(bias, r, folds, _shift(folds, products), cancel)
    return cancelled, cancelled or (clamp and small and held)


def _partial_sums(values: list[float]) -> list[float] | None:
    """The sums of every leading run of ``values`` where float64 computes each exactly, else None."""
    sums, total = [], 0.0
    for v in values:
        step = total + v
        if not sum_exact(total, v, step):
            return None
        sums.append(total := step)
    return sums


def materialize_steps(module, *, cancel: float = 2.0 ** -20, bound_slack: float = 1e-7, clamp: bool = True,
                      clamp_limit: float = math.inf):
    """Insert the difference stages in place (see the module docstring); returns the module; ``clamp``: read a
    step's 0/1 through its clamp where its reader's weights on it stay below ``clamp_limit``."""
    ops = check_layer_form(module, "materialize-steps", PassError)
    n_ops = len(ops)
    # an exact module: decided on its float image, rewritten in exact arithmetic too (exact_shadow.py)
    shadow = ExactShadow(ops) if ExactShadow.needed(ops) else None
    layout, stages = stage_metadata(module)
    analysis = None  # range analysis, built on the first unit no exact bound reaches (none on the paper's programs)
    known: dict[int, _InsertedBounds] = {}  # inserted relu -> its units' exact upper bounds
    group_cache: dict[int, list] = {}
    # unit -> _known_upper; an op is asked only once the ops before it are final (the pass rewrites readers
    # front to back, and a unit's bound reads only the ops before it)
    memo: dict[tuple[int, int], float | None] = {}
    # per inserted stage (its relu's position), the differences of step groups it forms, for separate-large-terms
    step_differences: list = []

    def groups_of(relu: Op) -> list:
        """The groups of the ReLU units ``relu`` outputs (none when no linear feeds it)."""
        producer = relu.operands[0]
        if id(relu) not in group_cache:
            group_cache[id(relu)] = _groups(producer) if producer.kind == "linear" and id(relu) not in known else []
        return group_cache[id(relu)]
    i = 1
    while i + 1 < len(ops):
        source, reader = ops[i], ops[i + 1]
        if source.kind not in ("relu", "linstate", "multi") or reader.kind not in ("linear", "linstate"):
            i += 1
            continue
        producer = ops[i - 1]
        groups = groups_of(source) if source.kind == "relu" else []
        if shadow is not None and groups:  # a pair's identity u_lo = ReLU(u_hi − gap) needs rows equal exactly
            groups = _exactly_equal(groups, shadow.held(producer))
        weights_name, bias_name = ("A", "b") if reader.kind == "linear" else ("B", "bias")
        bias = reader.attrs[bias_name].to_float().values
        if not groups and not (np.abs(bias) >= LARGE_BIAS).any():
            i += 1  # nothing to rewrite: no group to difference, no bias large enough to complement a unit
            continue
        read = reader.attrs[weights_name]
        producer_bias = producer.attrs["b"].to_float().values.tolist() if groups else None

        exact_bias = shadow.held(producer)["b"].values.tolist() if shadow is not None and groups else None

        def exact_gap(hi, lo, exact_bias=exact_bias):
            return exact_bias[hi] - exact_bias[lo]

        def gap_of(hi, lo, producer_bias=producer_bias, exact_bias=exact_bias):
            if exact_bias is not None:
                # an exact module's pair differs by its exact gap (its rows are exactly equal): the clamp holds
                # with it whether or not float64 holds the gap (a rotation counter's step, 1 + 2⁻⁵¹ apart), and
                # its float image reads the step's 0/1 as a float module's does
                return float(exact_gap(hi, lo)), True
            return _gap_above(producer_bias[hi], producer_bias[lo])

        def upper(j, source=source):
            nonlocal analysis
            bound = _known_upper(source, j, known, groups_of, memo)
            if bound is not None:
                return bound, True
            if analysis is None:
                analysis = RangeAnalysis(module)
            return float(analysis(source)[1][j]), False

        exact = None if shadow is None else _Exact(rows=list(shadow.held(reader)[weights_name].exact_rows()),
                                                   bias=shadow.held(reader)[bias_name].values.tolist(), gap=exact_gap)
        try:
            rewritten = _rewrite_rows(read, bias, groups, gap_of, cancel, upper, bound_slack,
                                      reader is module.output, clamp, clamp_limit, exact)
        except ArithmeticError:  # a fold whose rounding float64 cannot hold (below its subnormals): left as it is
            i += 1
            continue
        rows, new_bias, differences, n_constants = rewritten[:4]
        if not differences:
            i += 1
            continue
        carried = sorted({j for terms in (rows if exact is None else rows + rewritten[4])
                          for kind, j in terms if kind == "unit"})
        # a ReLU carries a unit exactly when it is ≥ 0; a state or product travels as ReLU(u) and ReLU(−u)
        # (asking range analysis whether it is signed would cost more than the unit it saves)
        signed = set() if source.kind == "relu" else set(carried)
        stage_entries, stage_bias = [], []  # per unit of the inserted stage: [(column, weight)], its bias
        unit_columns: dict[int, list[tuple[int, float]]] = {}
        slots = layout[i] if isinstance(layout, list) and isinstance(layout[i], list) else []
        new_slots = []
        for j in carried:
            for sign in ((1.0, -1.0) if j in signed else (1.0,)):
                c = len(stage_bias)
                stage_entries.append([(j, sign)]), stage_bias.append(0.0)
                unit_columns.setdefault(j, []).append((c, sign))
                new_slots.append(_carried_slot(slots, j, sign, j in signed))
        diff_columns = {}
        # [column, upper unit, lower unit, gap, complement] of every pair's difference that is exactly its gap times
        # a 0..1 step (its gap the biases' exact difference; not a complement of both units)
        ordered = []
        for key, d in differences.items():
            diff_columns[key] = len(stage_bias)
            exact_gap = d.exact_gap if d.exact_gap is not None else \
                Fraction(producer_bias[d.hi]) - Fraction(producer_bias[d.lo]) if d.lo is not None else None
            if d.lo is not None and (d.clamped or not d.complement) and Fraction(d.gap) == exact_gap:
                ordered.append([len(stage_bias), d.hi, d.lo, d.gap, d.complement])
            if d.clamped or d.lo is None:  # the ReLU of gap − u_hi supplies u_lo = ReLU(u_hi − gap)
                stage_entries.append([(d.hi, -1.0 if d.complement else 1.0)])
            else:
                sign = -1.0 if d.complement else 1.0
                stage_entries.append([(d.hi, sign), (d.lo, -sign)])
            stage_bias.append(d.gap if d.complement else -d.gap if d.excess else 0.0)
            new_slots.append(_difference_slot(slots, d))
        constant_columns = list(range(len(stage_bias), len(stage_bias) + n_constants))
        for _ in constant_columns:
            stage_entries.append([]), stage_bias.append(1.0)
            new_slots.append({"role": "constant", "terms": [], "constant": 1.0})
        n_out = len(stage_bias)
        linear = Op("linear", [source], {"A": _csr_matrix(stage_entries, (n_out, source.dim)),
                                         "b": Vector(np.array(stage_bias))})
        carrier_relu = Op("relu", [linear])
        known[id(carrier_relu)] = _InsertedBounds(source, carried, signed, differences, n_constants, known, groups_of,
                                                  memo)

        def entries_of(terms):
            entries = []
            for (kind, key), value in terms.items():
                if kind == "unit":  # (a sign times a Fraction stays exact)
                    entries += [(c, value if sign > 0 else -value) for c, sign in unit_columns[key]]
                else:
                    entries.append((diff_columns[key] if kind == "diff" else constant_columns[key], value))
            return entries
        reader.attrs[weights_name] = _csr_matrix([entries_of(terms) for terms in rows], (read.shape[0], n_out))
        reader.attrs[bias_name] = Vector(new_bias)
        reader.operands = [carrier_relu]
        if shadow is not None:
            exact_terms, exact_bias = rewritten[4:]
            shadow.track(linear)
            carried_units = len(stage_bias) - len(differences) - n_constants
            shadow.set(linear, "b", Vector(_exact_stage_bias(carried_units, differences, n_constants), exact=True))
            entries = [(r, c, v) for r, terms in enumerate(exact_terms) for c, v in entries_of(terms)]
            shadow.set(reader, weights_name, Matrix.from_entries((read.shape[0], n_out), *zip(*entries), exact=True)
                       if entries else Matrix.zeros(read.shape[0], n_out, exact=True))
            shadow.set(reader, bias_name, Vector(exact_bias, exact=True))

        insert_stage(ops, i, linear, carrier_relu, layout, stages, new_slots, "materialize-steps")
        if ordered:
            step_differences.append([i + 2, ordered])
        i += 3
    if len(ops) != n_ops:
        forget_analyses(module)  # the records are about the ops as they were
    module.ops = ops
    if step_differences:
        module.metadata["step_differences"] = step_differences
    if shadow is not None:
        shadow.restore()
    return module


def stage_metadata(module) -> tuple:
    """The module's ``layout`` and ``stages`` lists (None where it has none) as copies :func:`insert_stage` may edit
    (a cloned module shares its metadata's lists with the original)."""
    for key in ("layout", "stages"):
        if isinstance(module.metadata.get(key), list):
            module.metadata[key] = list(module.metadata[key])
    return module.metadata.get("layout"), module.metadata.get("stages")


def insert_stage(ops: list, i: int, linear: Op, relu: Op, layout, stages, slots: list, inserted_by: str) -> None:
    """Insert the ReLU stage ``linear``, ``relu`` after ``ops[i]``, with its entries in the metadata lists
    ``layout`` (``slots``: the relu's) and ``stages`` where the module has them (marked ``inserted_by``)."""
    ops[i + 1:i + 1] = [linear, relu]
    if isinstance(layout, list):
        layout[i + 1:i + 1] = [[{"role": "pre", "of": c} for c in range(linear.dim)], slots]
    if isinstance(stages, list):
        entry = {k: v for k, v in stages[i].items() if k in ("layer", "index")} if isinstance(stages[i], dict) else {}
        entry.update(stage="R", inserted=inserted_by)
        stages[i + 1:i + 1] = [dict(entry, part="linear"), dict(entry, part="relu")]


def _exactly_equal(groups: list, producer: dict) -> list:
    """The groups split where the exact rows differ (their float images are bit-identical): each part keeps the
    order by bias, and only parts of two or more units with different biases stay."""
    rows, bias = producer["A"].exact_rows(), producer["b"].values.tolist()
    out = []
    for group in groups:
        parts: dict[tuple, list] = {}
        for j in group:
            parts.setdefault(tuple(sorted(rows[j].items())), []).append(j)
        out += [part for part in parts.values() if len(part) > 1 and len({bias[j] for j in part}) > 1]
    return out


def _exact_stage_bias(carried: int, differences: dict, constants: int) -> list:
    """The inserted stage's exact biases: 0 for the carried units, each difference's exact gap (complement) or
    minus it (excess), 1 for the constant units."""
    return ([Fraction(0)] * carried
            + [d.exact_gap if d.complement else -d.exact_gap if d.excess else Fraction(0) for d in differences.values()]
            + [Fraction(1)] * constants)


def _known_upper(op: Op, j: int, known: dict, groups_of, memo: dict | None = None) -> float | None:
    """An exact upper bound of unit ``j`` of ``op`` without range analysis, or None: units of an inserted stage,
    and a state coordinate without recurrence or a ReLU whose row reads such units — or a group's differences,
    bounded by their bias gaps — with non-negative weights (ReLU units are ≥ 0, so negative weights on them
    only lower it; a state coordinate may be negative, so it must be read with a positive weight).  A 0/1
    condition carried through state layers (step_optimized's gates) is bounded this way, which range analysis
    did by iterating the states' counters.  ``memo`` caches the answers by unit (valid while the ops before
    ``op`` do not change)."""
    if id(op) in known:
        return known[id(op)].get(j)
    if memo is None:
        return _upper_from_row(op, j, known, groups_of, None)
    key = (id(op), j)
    if key not in memo:
        memo[key] = _upper_from_row(op, j, known, groups_of, memo)
    return memo[key]


def _upper_from_row(op: Op, j: int, known: dict, groups_of, memo: dict | None) -> float | None:
    """:func:`_known_upper` of a unit not in an inserted stage, from its row."""
    if op.kind == "linstate" and op.operands[0].kind in ("relu", "linstate"):
        a_indptr = op.attrs["A"].csr_parts()[2]
        if a_indptr[j] != a_indptr[j + 1]:
            return None  # a recurrence: its bound grows with t (range analysis' business)
        weights, bias = _row(op.attrs["B"], j), op.attrs["bias"].to_float().values[j]
    elif op.kind == "relu" and op.operands[0].kind == "linear" and op.operands[0].operands[0].kind in ("relu",
                                                                                                    "linstate"):
        weights, bias = _row(op.operands[0].attrs["A"], j), op.operands[0].attrs["b"].to_float().values[j]
    else:
        return None
    units = op.operands[0] if op.kind == "linstate" else op.operands[0].operands[0]
    products = []  # the bound is bias + Σ a·b over these, rounded up
    gaps = units.operands[0].attrs["b"].to_float().values if units.operands[0].kind == "linear" else None
    groups = groups_of(units) if units.kind == "relu" else []
    if memo is None:
        touched = groups
    else:  # only the groups the row reads (the same sums: a group it does not read adds nothing)
        index = memo.get(("groups", id(units)))
        if index is None:
            index = memo["groups", id(units)] = {m: g for g, group in enumerate(groups) for m in group}
        touched = [groups[g] for g in sorted({index[k] for k in weights if k in index})]
    for group in touched:
        w = [weights.pop(m, 0.0) for m in group]
        if not any(w):
            continue
        partial = _partial_sums(w)
        if partial is None or partial.pop() != 0:
            return None
        products += [(max(p, 0.0), _gap_above(float(gaps[hi]), float(gaps[lo]))[0])
                     for p, hi, lo in zip(partial, group, group[1:])]
    for k, w in weights.items():
        if w > 0:
            hi = _known_upper(units, k, known, groups_of, memo)
            if hi is None:
                return None
            products.append((w, hi))
        elif units.kind != "relu":
            return None  # a state coordinate may be negative: a negative weight on it needs its lower bound
    total, rest = fold_products(float(bias), products)
    if rest and rest[0] > 0:
        total = math.nextafter(total, math.inf)
    return max(total, 0.0) if op.kind == "relu" else total


def _csr_matrix(rows: list, shape: tuple[int, int]) -> Matrix:
    """The float Matrix with the given ``[(column, value)]`` per row, built in canonical CSR directly (what
    ``Matrix.from_scipy`` of the COO triplets gives: columns sorted, duplicates summed, zeros dropped)."""
    indptr, indices, data = [0], [], []
    for entries in rows:
        merged: dict[int, float] = {}
        for c, v in entries:
            merged[c] = merged[c] + v if c in merged else v
        for c in sorted(merged):
            if merged[c] != 0:
                indices.append(c), data.append(merged[c])
        indptr.append(len(data))
    values = np.array(data, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("matrix has non-finite entries")
    return Matrix.from_canonical_arrays(shape, values, np.array(indices, dtype=np.int64),
                                        np.array(indptr, dtype=np.int64))


def _row(matrix: Matrix, j: int) -> dict[int, float]:
    """Row ``j`` of a matrix as ``{column: value}`` (without building a one-row matrix)."""
    data, indices, indptr = matrix.csr_parts()
    start, end = indptr[j], indptr[j + 1]
    return dict(zip(indices[start:end].tolist(), data[start:end].tolist()))


class _InsertedBounds:
    """Exact upper bounds of an inserted stage's units (``get(column)``, None where unknown), in its order: a
    carried unit's from its source (computed when first asked: most are never asked), a difference's its gap, a
    constant unit's 1."""

    def __init__(self, source: Op, carried: list, signed: set, differences: dict, n_constants: int, known: dict,
                 groups_of, memo: dict | None = None):
        self._args = (source, known, groups_of, memo)
        self._carried: dict[int, int] = {}  # column -> source unit (the positive part of a signed unit)
        column = 0
        for j in carried:
            self._carried[column] = j
            column += 2 if j in signed else 1
        self._gaps = {column + k: d.gap for k, d in enumerate(differences.values()) if not d.excess}
        column += len(differences)
        self._gaps.update({column + k: 1.0 for k in range(n_constants)})

    def get(self, column: int) -> float | None:
        if column in self._gaps:
            return self._gaps[column]
        if column not in self._carried:
            return None
        source, known, groups_of, memo = self._args
        return _known_upper(source, self._carried[column], known, groups_of, memo)


def _carried_slot(slots: list, j: int, sign: float, split: bool) -> dict:
    """The layout of a carried unit: the unit's own slot, or its positive/negative part."""
    slot = slots[j] if j < len(slots) and isinstance(slots[j], dict) else {"role": "opaque"}
    if not split:
        return slot
    return dict(slot, role="plus" if sign > 0 else "minus")


def _difference_slot(slots: list, d: _Difference) -> dict:
    """The layout of a difference unit: the two units' program terms, subtracted (and complemented)."""
    def terms(j, negated: bool):
        slot = slots[j] if j < len(slots) and isinstance(slots[j], dict) else {}
        return [[name, index, _signed(coeff, negated)] for name, index, coeff in slot.get("terms", [])]
    entry = {"role": "difference",
             "terms": terms(d.hi, d.complement) + ([] if d.lo is None else terms(d.lo, not d.complement))}
    if d.complement or d.excess:
        entry["constant"] = _signed(d.gap if d.exact_gap is None else d.exact_gap, d.excess)
    return entry


def _signed(coeff, negated: bool):
    """A layout coefficient, negated or not: a float one as a float, an exact one ("p/q", a Fraction) exactly."""
    value = layout_coefficient(coeff)
    if isinstance(value, Fraction):
        return layout_number(-value if negated else value)
    return (-1.0 if negated else 1.0) * value


@register_pass
@dataclasses.dataclass
class MaterializeSteps(Pass):
    name: ClassVar[str] = "materialize-steps"
    summary: ClassVar[str] = ("one more ReLU stage where a reader combines a step's units: the step's 0/1 gets a "
                              "unit of its own before large weights read it (exact in float32 where the program is)")
    cancel: float = dataclasses.field(default=2.0 ** -20, metadata={
        "help": "a reader's bias counts as cancelling a group (read its complement) when the sum is within this "
                "fraction of the bias"})
    bound_slack: float = dataclasses.field(default=1e-7, metadata={
        "help": "relative slack of a unit's range bound taken as interval-arithmetic rounding when the bound is "
                "within it of a number of ≤ 7 digits (the complement of a step is read from that number)"})
    clamp: bool = dataclasses.field(default=True, metadata={
        "help": "read a step's 0/1 as gap − ReLU(gap − u): exact on a saturated step whatever u's rounding "
                "(false: never; clamp_limit: only below a weight)"})
    clamp_limit: float = dataclasses.field(default=math.inf, metadata={
        "help": "read a step through its clamp only where every weight reading it stays below this (lsrl.compile "
                "sets a target's clamp_limits: the standard GRU's pairs under λ-weights)"})

    def run(self, module):
        if not 0 <= self.cancel < 1:
            raise PassError(f"materialize-steps: cancel must be in [0, 1), got {self.cancel!r}")
        if not 0 <= self.bound_slack < 1e-3:
            raise PassError(f"materialize-steps: bound_slack must be in [0, 1e-3), got {self.bound_slack!r}")
        if not self.clamp_limit > 0:
            raise PassError(f"materialize-steps: clamp_limit must be > 0 (inf: any weight), got {self.clamp_limit!r}")
        return materialize_steps(module, cancel=self.cancel, bound_slack=self.bound_slack, clamp=self.clamp,
                                  clamp_limit=self.clamp_limit)
