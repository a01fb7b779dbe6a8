"""``separate-large-terms``: sum a row's λ-sized parts in a unit of their own before small terms meet them.

A conditional multiplies a condition by λ = 10¹⁰: ``f_ifelse(b, x, 2x + 1)`` has the rows ``ReLU(2x + 1 − λb)``
and ``ReLU(x − λ + λb)``.  Where ``b`` is one step, the layer form reads its exact 0/1 (``materialize-steps``)
and ``λ·0`` or ``λ·1 − λ`` leaves ``x`` exact.  Where ``b`` combines steps — a bump ``f_step(x − lb) −
f_step(x − ub)`` — debranch fuses the combination into the reader, which computes ``2x + 1 − λ·D₁ + λ·D₂`` from
the two steps' 0/1: above the bump both are 1 and the λ-terms cancel, but a dot product may first add ``2x + 1``
to ``−λ``, and float32 holds nothing below 1024 beside 10¹⁰.  The program forms ``b`` (an exact 0) before it
multiplies: op by op it is exact, and the compiled model answered 1 where the program answers 5.

This pass inserts, after a ReLU stage whose reader has rows with two or more λ-sized parts (a weight or a bias
of magnitude ``threshold`` or more) beside small ones, one more ReLU stage.  It carries the units the reader
reads with small weights (``ReLU(u) = u`` for a ReLU's output: exact) and forms each such row's λ-sized parts
divided by the smallest λ-sized weight ``g``, ``s = Σ (w_j/g)·u_j + β/g`` — on a step's exact 0/1 units with
ratios such as ±1, ``s`` is exact — as ``ReLU(s)`` and ``ReLU(−s)``, which the reader reads with ``g`` and ``−g``: where the parts
cancel, ``s`` is an exact 0 and the small terms are summed alone.  A side ``s`` never reaches is left out: the
error analysis then sees one unit that is 0 or far from the row's small terms.  The range of ``s`` comes from
``materialize-steps``' record of the step differences it formed (metadata ``step_differences``, which this pass
consumes): the differences of one step group, in the group's order, are ``gap·t_k`` with ``1 ≥ t_1 ≥ t_2 ≥ … ≥
0``, so ``Σ α_k t_k`` lies between 0 and the extreme partial sums of ``α`` (a bump ``D₁ − D₂`` is never
negative) — range analysis' intervals bound the other units (not an exact module's: they are its float
image's).  A bias that holds a branch's constant beside λ
(``1 − λ``) gives ``s`` the whole multiple of ``g`` and keeps the rest.  Rows whose ratios ``w_j/g`` float64 does
not hold exactly keep their terms.  The map is unchanged in exact arithmetic (``g·ReLU(s) − g·ReLU(−s) = g·s``).  Run it
right after ``materialize-steps``.  An exact module is rewritten the same way, decided on its float64 image:
the ratios are its exact weights over ``g``, and a row is rewritten only where float64 holds every ratio.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import PassError
from ..ir.core import Op
from ..ir.layer_form import check_layer_form
from ..ir.matrix import Matrix, Vector
from . import Pass, forget_analyses, register_pass
from .exact_shadow import ExactShadow
from .materialize_steps import LARGE_BIAS, _carried_slot, _csr_matrix, insert_stage, stage_metadata
from .range_analysis import RangeAnalysis

__all__ = ["SeparateLargeTerms", "separate_large_terms"]


@dataclasses.dataclass
class _Split:
    """A row's λ-sized parts ``g·(Σ ratios_j u_j + constant)`` and its small ones."""
    g: float
    ratios: dict
    constant: float
    small: dict
    small_bias: float
    exact_small: dict
    exact_small_bias: Fraction

    @functools.cached_property
    def key(self) -> tuple[tuple, float]:
        """The combination up to its sign (its first ratio positive), and that sign."""
        terms = tuple(sorted(self.ratios.items()))
        sign = 1.0 if terms[0][1] > 0 else -1.0
        return (tuple((j, sign * v) for j, v in terms), sign * self.constant), sign


def _split(weights: dict, bias: float, exact_weights: dict, exact_bias: Fraction, threshold: float) -> _Split | None:
    """A row's λ-sized parts and small ones (its float weights and bias, and their exact values), or None where it
    has fewer than two λ-sized parts, no small part, or an exact ratio to the smallest λ-sized magnitude that
    float64 does not hold."""
    large = [j for j, w in weights.items() if abs(w) >= threshold]
    large_bias = abs(bias) >= threshold
    small = {j: w for j, w in weights.items() if abs(w) < threshold}
    if len(large) + large_bias < 2 or not large:
        return None
    # the bias is no candidate for g: it may hold a small part beside λ (``1 − λ``), see _bias_parts
    g = min(abs(weights[j]) for j in large)
    ratios = {j: exact_weights[j] / Fraction(g) for j in large}
    if any(Fraction(float(r)) != r for r in ratios.values()):
        return None
    constant, rest = _bias_parts(exact_bias, Fraction(g), threshold) if large_bias else (Fraction(0), exact_bias)
    if constant is None or not (small or rest):
        return None
    return _Split(g, {j: float(r) for j, r in ratios.items()}, float(constant), small, float(rest),
                  {j: exact_weights[j] for j in small}, rest)


def _bias_parts(bias: Fraction, g: Fraction, threshold: float) -> tuple:
    """A λ-sized bias as ``g·constant + rest``: ``constant`` the ratio itself where float64 holds it, else the
    nearest whole number with a small ``rest`` that float64 holds (a branch's constant beside λ: ``1 − λ`` is
    ``−1·λ + 1``); ``(None, None)`` where neither."""
    ratio = bias / g
    if Fraction(float(ratio)) == ratio:
        return ratio, Fraction(0)
    whole = round(ratio)
    rest = bias - whole * g
    if float(whole) == whole and abs(rest) < threshold and Fraction(float(rest)) == rest:
        return Fraction(whole), rest
    return None, None


def _recorded_differences(relu: Op, entries: list, number: int) -> dict:
    """``{column: (group, rank, gap, complement)}`` of the step differences a record names for the inserted stage
    ``relu``, those that still are what it says: the stage's row is ``u_hi − u_lo`` (bias 0) or the clamp ``gap −
    u_hi`` (bias ``gap``), and the units' rows are one row with biases exactly ``gap`` apart.  A group is the
    units' row, a rank the upper unit's place in it (larger bias first); a record that no longer holds (a pass
    between the two) is not read."""
    stage = relu.operands[0]
    source = stage.operands[0]
    if stage.kind != "linear" or source.kind != "relu" or source.operands[0].kind != "linear":
        return {}
    data, indices, indptr = stage.attrs["A"].csr_parts()
    stage_bias = stage.attrs["b"].to_float().values
    units = source.operands[0]
    unit_data, unit_indices, unit_ptr = units.attrs["A"].csr_parts()
    unit_bias = units.attrs["b"].to_float().values

    def unit_row(j):
        return unit_indices[unit_ptr[j]:unit_ptr[j + 1]].tobytes() + unit_data[unit_ptr[j]:unit_ptr[j + 1]].tobytes()
    out = {}
    for column, hi, lo, gap, complement in entries:
        if not (0 <= column < stage.dim and 0 <= min(hi, lo) and max(hi, lo) < source.dim):
            continue
        row = dict(zip(indices[indptr[column]:indptr[column + 1]].tolist(),
                       data[indptr[column]:indptr[column + 1]].tolist()))
        formed = row == {hi: -1.0} and stage_bias[column] == gap if complement else \
            row == {hi: 1.0, lo: -1.0} and stage_bias[column] == 0
        if formed and unit_row(hi) == unit_row(lo) and unit_ptr[hi] < unit_ptr[hi + 1] and \
                Fraction(float(unit_bias[hi])) - Fraction(float(unit_bias[lo])) == Fraction(gap):
            out[column] = ((number, unit_row(hi)), -float(unit_bias[hi]), gap, complement)
    return out


def _candidates(data: np.ndarray, indptr: np.ndarray, bias: np.ndarray, threshold: float) -> np.ndarray:
    """Per row of a reader (its CSR ``data``, ``indptr`` and ``bias``): whether it has two or more λ-sized parts
    and a small weight or a bias (which may hold a small part: what :func:`_split` then looks at)."""
    rows = np.repeat(np.arange(bias.size), np.diff(indptr))
    large = np.abs(data) >= threshold
    large_bias = np.abs(bias) >= threshold
    n_large = np.bincount(rows[large], minlength=bias.size) + large_bias
    n_small = np.bincount(rows[~large], minlength=bias.size)
    return (n_large >= 2) & ((n_small > 0) | (bias != 0))


def _range(split: _Split, differences: dict, unit_range) -> tuple[Fraction, Fraction] | None:
    """The exact range of ``Σ ratios_j u_j + constant``: differences of one step group by their order (the
    partial sums of their coefficients in it), every other unit by its interval (``unit_range(j)``); None where an
    interval is unbounded."""
    low = high = Fraction(split.constant)
    by_group: dict = {}
    for j, ratio in split.ratios.items():
        r = Fraction(ratio)
        if j in differences:
            group, rank, gap, complement = differences[j]
            # the unit is gap·t (gap·(1 − t) where complemented), t in [0, 1] and non-increasing along the group
            alpha = r * Fraction(gap)
            if complement:
                low, high, alpha = low + alpha, high + alpha, -alpha
            by_group.setdefault(group, []).append((rank, alpha))
            continue
        lo, hi = unit_range(j)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        lo, hi = Fraction(lo), Fraction(hi)
        low, high = low + min(r * lo, r * hi), high + max(r * lo, r * hi)
    for terms in by_group.values():
        partial, least, most = Fraction(0), Fraction(0), Fraction(0)
        for _, alpha in sorted(terms, key=lambda term: term[0]):
            partial += alpha
            least, most = min(least, partial), max(most, partial)
        low, high = low + least, high + most
    return low, high


def separate_large_terms(module, *, threshold: float = LARGE_BIAS):
    """Insert the separating stages in place (see the module docstring); returns the module."""
    ops = check_layer_form(module, "separate-large-terms", PassError)
    n_ops = len(ops)
    recorded = module.metadata.pop("step_differences", None) or []
    # an exact module: decided on its float image, its exact constants rewritten alike (exact_shadow.py)
    shadow = ExactShadow(ops) if ExactShadow.needed(ops) else None
    # {id(relu): {column: (group, rank, gap, complement)}}
    differences = {id(ops[position]): _recorded_differences(ops[position], entries, number)
                   for number, (position, entries) in enumerate(recorded)
                   if isinstance(position, int) and 0 < position < len(ops) and ops[position].kind == "relu"}
    layout, stages = stage_metadata(module)
    analysis = None
    i = 1
    while i + 1 < len(ops):
        source, reader = ops[i], ops[i + 1]
        if source.kind != "relu" or reader.kind != "linear":
            i += 1
            continue
        read = reader.attrs["A"]
        bias = reader.attrs["b"].to_float().values
        data, indices, indptr = read.csr_parts()
        if not _candidates(data, indptr, bias, threshold).any():
            i += 1
            continue
        rows = [dict(zip(indices[indptr[r]:indptr[r + 1]].tolist(), data[indptr[r]:indptr[r + 1]].tolist()))
                for r in range(read.shape[0])]
        if shadow is not None:
            exact_rows = shadow.held(reader)["A"].exact_rows()
            exact_bias = shadow.held(reader)["b"].array(True).tolist()
        else:  # a float module's constants are their float64 values
            exact_rows = [{j: Fraction(w) for j, w in weights.items()} for weights in rows]
            exact_bias = [Fraction(b) for b in bias.tolist()]
        splits = [_split(weights, b, exact_weights, exact_b, threshold)
                  for weights, b, exact_weights, exact_b in zip(rows, bias.tolist(), exact_rows, exact_bias)]
        if not any(splits):
            i += 1
            continue

        def unit_range(j, source=source):
            nonlocal analysis
            if analysis is None:
                # one analysis serves the whole pass: a rewrite keeps what each op computes, and the ops it adds
                # are analysed when first asked
                module.ops = ops
                analysis = RangeAnalysis(module)
            lo, hi = analysis(source)
            return float(lo[j]), float(hi[j])
        # a small weight on a large unit is a λ-sized term too (``3333333·u`` of a unit up to 7000, a step's pair
        # 3000 apart read with λ/3000): such a row keeps its terms
        splits = [None if split is None or any(not abs(w) * unit_range(j)[1] < threshold
                                               for j, w in split.small.items()) else split for split in splits]
        if not any(splits):
            i += 1
            continue

        # each distinct combination (up to its sign) gives the units of the sides it reaches
        combinations: dict[tuple, list] = {}
        for split in splits:
            if split is not None:
                key, sign = split.key
                if key not in combinations:
                    # an exact module's intervals are its float image's, which need not bound its exact units
                    reach = _range(split, differences.get(id(source), {}),
                                   unit_range if shadow is None else lambda j: (-math.inf, math.inf))
                    low, high = (-1, 1) if reach is None else reach
                    combinations[key] = [low, high] if sign > 0 else [-high, -low]
        carried = sorted({j for weights, split in zip(rows, splits) for j in (weights if split is None else split.small)})
        entries = [[(j, 1.0)] for j in carried]
        stage_bias = [0.0] * len(carried)
        columns: dict[tuple, tuple] = {}  # key -> (column of ReLU(s) or None, column of ReLU(−s) or None)
        for (terms, constant), (low, high) in combinations.items():
            sides = []
            for sign, reached in ((1.0, high > 0), (-1.0, low < 0)):
                sides.append(len(stage_bias) if reached else None)
                if reached:
                    entries.append([(j, sign * v) for j, v in terms])
                    stage_bias.append(sign * constant or 0.0)  # not −0.0
            columns[terms, constant] = tuple(sides)
        n_out = len(stage_bias)
        column_of = {j: c for c, j in enumerate(carried)}
        new_rows, new_bias, new_exact_rows, new_exact_bias = [], bias.copy(), [], list(exact_bias)
        for r, (weights, split) in enumerate(zip(rows, splits)):
            if split is None:
                new_rows.append([(column_of[j], w) for j, w in weights.items()])
                new_exact_rows.append({column_of[j]: w for j, w in exact_rows[r].items()})
                continue
            key, sign = split.key
            positive, negative = columns[key]
            sides = ([(positive, sign * split.g)] if positive is not None else []) + \
                ([(negative, -sign * split.g)] if negative is not None else [])
            new_rows.append([(column_of[j], w) for j, w in split.small.items()] + sides)
            new_exact_rows.append({column_of[j]: w for j, w in split.exact_small.items()}
                                  | {c: Fraction(w) for c, w in sides})
            new_bias[r] = split.small_bias
            new_exact_bias[r] = split.exact_small_bias
        linear = Op("linear", [source], {"A": _csr_matrix(entries, (n_out, source.dim)),
                                         "b": Vector(np.array(stage_bias))})
        relu = Op("relu", [linear])
        reader.attrs["A"] = _csr_matrix(new_rows, (read.shape[0], n_out))
        reader.attrs["b"] = Vector(new_bias)
        reader.operands = [relu]
        if shadow is not None:
            shadow.track(linear)  # its constants are float64 values
            shadow.set(reader, "A", Matrix.from_exact_rows((read.shape[0], n_out), new_exact_rows))
            shadow.set(reader, "b", Vector(new_exact_bias, exact=True))
        slots = layout[i] if isinstance(layout, list) and isinstance(layout[i], list) else []
        new_slots = [_carried_slot(slots, j, 1.0, False) for j in carried] + \
            [{"role": "opaque"}] * (n_out - len(carried))
        insert_stage(ops, i, linear, relu, layout, stages, new_slots, "separate-large-terms")
        i += 3
    if len(ops) != n_ops:
        forget_analyses(module)
    module.ops = ops
    if shadow is not None:
        shadow.restore()
    return module


@register_pass
@dataclasses.dataclass
class SeparateLargeTerms(Pass):
    name: ClassVar[str] = "separate-large-terms"
    summary: ClassVar[str] = ("sum a row's λ-sized parts in a unit of their own (one more ReLU stage), so that "
                              "small terms never meet their cancelling sum")
    threshold: float = dataclasses.field(default=LARGE_BIAS, metadata={
        "help": "magnitude from which a weight or a bias is a λ-sized part"})

    def run(self, module):
        if not self.threshold > 0:
            raise PassError(f"separate-large-terms: threshold must be > 0, got {self.threshold!r}")
        return separate_large_terms(module, threshold=self.threshold)
