"""``rescale-units``: put every unit of the layer form back on the scale its program computes it at.

``debranch`` keeps each unit at whatever positive scale the affine normal form gave it: the two ReLUs of an
``f_step`` become ``2·ReLU(x)`` and ``2·ReLU(x − 1/μ)``, a conditional's product sits at ``2e-15`` times its
value, and the next stage reads them with weights such as ``5e5`` or ``0.001``.  In exact arithmetic the
scale of a unit is free (``ReLU(s·y) = s·ReLU(y)`` for ``s > 0``; a state or a product slot can be scaled
by any ``s ≠ 0`` and its readers by ``1/s``), but in floating point it decides which sums are exact.  The
program run op by op in float32 keeps every value at its natural scale — token ids, counters, step outputs
of exactly 0 or 1 — where the arithmetic on integers is exact; the compiled model, at the normal form's
scales, rounds every step (`docs/numerics.md`).

This pass chooses the scales (the map from the input to the output is unchanged):

* a group of ReLU units whose pre-activations are one row up to a positive factor (within debranch's rounding,
  ``10⁻¹⁴`` of the row), differ in the bias and are read together (the pair of a step, the units of a bump;
  steps of one value read by different rows are groups of their own) gets one common scale:
  the rows become bit-identical, so every executor computes one dot product for all of them, and the smallest
  difference of the biases becomes 1 (``ReLU(μx)`` and ``ReLU(μx − 1)``): on integer inputs the pair's
  difference is an exact 0 or 1 in float32, whatever rounding the shared dot product had;
* every other unit, product and state slot holding one program value times a coefficient (``layout`` of
  debranch) is divided by that coefficient, so it holds the program's value itself; a carrier (a value passed
  through the stage) joins no step group, so it too holds its value;
* then a unit outside a step group, a lone state slot and each factor of a product is multiplied by the least
  factor that puts its row on integers (``ReLU(y − 0.001)``, whose partner ``ReLU(1000 y)`` is linear for
  ``y ≥ 0``, becomes ``ReLU(1000 y − 1)``: exact for integer ``y`` where the program's ``0.999`` is not), a
  product's factors also divided by their common divisor — unless that turns an integer weight of the reader
  into a fraction or makes a weight above 2^24; a product whose reader refuses keeps its scale by giving a factor
  of a single term the reciprocal of the other's multiplier (the other, a step's difference, stays on integers).

Weights computed by debranch in float64 carry its rounding (``0.002000000000000001`` for 1/500); after
rescaling, an entry the scale changed that lies within ``snap_tolerance`` (relative) of a number with at most
seven significant digits is taken as that number — the value debranch rounded — so that integer weights are
integers again (an entry the pass leaves as it was is the program's own, and a step group's biases keep the
whole-number gaps they had before the snap).

The pass needs the layer form with debranch's ``layout`` metadata (run it right after ``debranch``).  An exact
module (``debranch{exact=true}``) is rescaled the same way: the scales are chosen on its float64 image and
applied to its exact constants as exact rationals (a snapped ``0.001`` is 1/1000; a step group's rows at
``common / |first entry|`` exactly, so that they stay equal), which leaves its exact map unchanged and gives its
float runs the constants a float module would hold (exact_shadow.py).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..errors import PassError
from ..ir.core import Op
from ..ir.error_free import divides_exactly, product_exact, sum_exact
from ..ir.layer_form import check_layer_form
from ..ir.matrix import Matrix, Vector
from . import Pass, register_pass
from .exact_shadow import ExactShadow, layout_coefficient, layout_number

__all__ = ["RescaleUnits", "rescale_units"]

_MAX_DIGITS = 7  # significant digits of the numbers weights are snapped back to
_DIGITS = np.arange(_MAX_DIGITS)[:, None]


_POWERS = (10.0 ** np.arange(23.0)).tolist()  # 10^|k| as the vectorised form computes it
# the largest factor, and the largest weight it may make, that puts a unit's row on integers (float32 holds them)
_LARGEST_INTEGER = 2.0 ** 24
_FEW = 16  # up to this many entries needing the search, a loop over them costs less than the vectorised form
# rows of one normal-form row computed by debranch in float64 agree to a few ulps (1.7e-16 relative in the
# paper's programs): rows further apart are different rows
_GROUP_TOLERANCE = 1e-14
# and each entry to a few ulps of itself (debranch forms an entry as a product, not a difference): a λ-row's small
# entries are far below 1e-14 of its largest, where two rows can differ by 5 % (−2/3 and −0.7 times a value)
_ENTRY_TOLERANCE = 1e-9
# offsets this close (relative to a set's smallest gap) to a whole number of gaps apart are steps of one set
_WHOLE_STEPS = 1e-6
# the layout roles of a value passed through a ReLU stage: one slot, or its two signed halves
_CARRIED = ("carrier", "plus", "minus")


def _snap(values, tolerance: float) -> np.ndarray:
    """Each entry replaced by the number with the fewest (≤ 7) significant digits within ``tolerance``
    (relative) of it, when there is one (``m·10^k`` is formed as ``m·10^k`` or ``m / 10^−k``: one rounding).

    An integer ``x`` with ``tolerance·|x| < 1`` is its own answer (``m·10^k`` is an integer: it is ``x`` or at
    least 1 away), so only the other entries are searched — most weights are integers, and the search costs
    ~30 array operations whatever the size: a few entries are searched one by one with the same float
    operations (:func:`_snap_all` is the vectorised search)."""
    x = np.array(values, dtype=np.float64)
    if x.size == 0:
        return x
    with np.errstate(invalid="ignore", over="ignore"):
        search = np.flatnonzero((x != np.rint(x)) | ~(np.abs(x) * tolerance < 1))
    if len(search) == 0:
        return x
    if len(search) > _FEW:
        x[search] = _snap_all(x[search], tolerance)
        return x
    sub = x[search]
    with np.errstate(divide="ignore", invalid="ignore"):
        exponents = np.floor(np.log10(np.abs(sub))).tolist()
    for i, v, e in zip(search.tolist(), sub.tolist(), exponents):
        if v == 0 or not math.isfinite(v):
            continue
        bound = tolerance * abs(v)
        for d in range(_MAX_DIGITS):
            k = e - d
            if abs(k) > 22:
                continue
            power = _POWERS[int(abs(k))]
            # |x/10^k|, |x·10^−k| < 10^7: round() is exact and rounds half to even, as np.round
            short = float(round(v / power)) * power if k >= 0 else float(round(v * power)) / power
            if abs(short - v) <= bound:
                x[i] = short
                break
    return x


def _snap_changed(values: np.ndarray, before: np.ndarray, tolerance: float) -> np.ndarray:
    """:func:`_snap` of the entries a scale changed (``values`` against the stored ``before``): an entry the pass
    leaves as it was holds the program's constant, or debranch's composition of them, and its short neighbour is
    another program — ``f_smaller(x, 1.9, scale=1)``'s second ReLU has the bias ``fl(1.9) − 1 =
    0.8999999999999999`` exactly, which snapped to ``0.9`` put the pair ``0.9999999999999999`` apart, and λ read
    the step's 1 as 1.1·10⁻⁶ off under a bound of 0."""
    out = values.copy()
    changed = np.flatnonzero(values != before)
    if changed.size:
        out[changed] = _snap(values[changed], tolerance)
    return out


def _scaled_vector(v: Vector, factors: np.ndarray):
    """:func:`_scaled_matrix` of a Vector: its values times ``factors``, the builder, its values now."""
    stored = v.to_float().values
    return stored * factors, Vector, stored


def _snap_all(values, tolerance: float) -> np.ndarray:
    """:func:`_snap`, vectorised over every entry."""
    x = np.array(values, dtype=np.float64)
    if x.size == 0:
        return x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nonzero = np.isfinite(x) & (x != 0)
        exponent = np.floor(np.log10(np.abs(np.where(nonzero, x, 1.0))))
        k = exponent[None, :] - _DIGITS  # one row per number of digits
        power = 10.0 ** np.abs(k)
        up = k >= 0
        mantissa = np.where(up, np.round(x / power), np.round(x * power))
        short = np.where(up, mantissa * power, mantissa / power)
        close = nonzero & (np.abs(k) <= 22) & (np.abs(short - x) <= tolerance * np.abs(x))
    first = np.argmax(close, axis=0)
    found = close[first, np.arange(x.size)]
    return np.where(found, short[first, np.arange(x.size)], x)


def snap_number(x: float, tolerance: float) -> float:
    """The number with the fewest (≤ 7) significant digits within ``tolerance`` (relative) of ``x``, else ``x``."""
    for digits in range(_MAX_DIGITS):
        short = float(f"{x:.{digits}e}")
        if abs(short - x) <= tolerance * abs(x):
            return short
    return x


def _scaled_matrix(m: Matrix, rows: np.ndarray | None, cols: np.ndarray | None, data: np.ndarray | None = None):
    """The stored values of ``diag(rows) · m · diag(cols)`` (either may be None; ``data`` replaces ``m``'s values),
    the function building the Matrix from (snapped) values — non-zero scales keep the canonical CSR structure, so
    it is reused as it is — and the values ``m`` stores now."""
    stored, indices, indptr = m.csr_parts()
    values = np.array(stored if data is None else data, dtype=np.float64)
    if rows is not None:
        values *= np.repeat(rows, np.diff(indptr))
    if cols is not None:
        values *= cols[indices]
    return values, lambda snapped: Matrix.from_canonical_arrays(m.shape, snapped, indices, indptr), stored


def _natural_scales(layout: list, ops: list, tolerance: float) -> list:
    """Per op, per slot ``1/|c|`` for a slot whose value is ``c · (program value) + …`` (1 for an empty slot)."""
    coeffs = []  # a flat list sliced per op: small arrays per op and np.split cost more than these few slots
    for op, slots in zip(ops, layout):
        slots = slots if isinstance(slots, list) else []
        row = [1.0] * op.dim
        for j, slot in enumerate(slots[:op.dim]):
            terms = slot.get("terms") if isinstance(slot, dict) else None
            coefficients = [layout_coefficient(term[2]) for term in terms or ()]
            sizes = [abs(float(c)) for c in coefficients if c != 0]
            if sizes:
                # a λ-row carried (``x − λ·c``) holds its value, ``x``: at the step's scale (``10⁻¹³·x − c``) its
                # reader takes ``x`` through another rounding than the program's other readers of ``x``
                row[j] = min(sizes) if max(sizes) >= _LARGEST_INTEGER * min(sizes) else sizes[0]
        coeffs.extend(row)
    scales = _snap(1.0 / np.array(coeffs, dtype=np.float64), tolerance)
    out, start = [], 0
    for op in ops:
        out.append(scales[start:start + op.dim])
        start += op.dim
    return out


def _group_scales(producer, scales: np.ndarray, carried: np.ndarray, readers: list,
                  exact_offsets=None, column_scales: np.ndarray | None = None):
    """Scales giving rows equal up to a positive factor one common scale with their smallest bias gap 1; the
    producer's stored values with those rows already rescaled (one bit pattern for the whole group, so every
    executor computes one dot product for it); the factors still to apply to each row (1 for those); which
    rows are in such a group; their common scale (the row's first entry at it, exactly: a Fraction, 0 outside
    groups); and the groups' rows.
    ``column_scales`` (a float module's; per column: the scale rescale-units put the value it reads on, which
    divided this row's entries) give the units debranch wrote the rows in: a scale short there is taken where the
    stored rows give none (the step at 4/3 below, where ``ReLU(x)`` is read beside the step at 0.3 and so held as
    ``3000·ReLU(x)``: ``1000.00000000011`` of debranch's units, the same λ-reader; 1000 there gives ``1/3`` and λ
    exactly).  An exact module's gaps are exact: the float image's scale in
    debranch's units made an exact step at 0.25 (μ = 1/3) of ``3x − 1`` 5.6·10⁻⁷ off (float32: 2.0) where it
    had been exact.
    ``carried`` rows (values passed through the stage) join no group: they keep the value's own scale, which their
    readers read back exactly (a carrier of a counter ``g`` next to the step ``g ≥ 2.5`` would be held as
    ``1000 g`` and read back with ``0.001``), and neither does a row no reader reads beside another of its set
    (``readers``: per row, the reader rows that read it): ``ReLU(x)`` next to a step of ``x`` at 0.3 (μ = 3000)
    was held as ``3000·ReLU(x)``, read back with ``0.33333333333337`` by a step at 4/3 whose λ-reader became
    ``−9999999999.9989`` — 1.1·10⁻³ off the program under a bound of 2·10⁻¹⁴.  ``exact_offsets`` (row -> its
    bias over its first entry's magnitude, in rationals) give the gap itself, which the float image holds only to
    its offsets' ulps (the step at 100000.5: offsets ``100000.5`` and ``100000.501`` are ``10⁻³(1 − 3.8·10⁻⁹)``
    apart in float64, and the scale ``999.9999961582944`` kept that where the program's is 1000), where the float
    gap gives no short scale and the exact one does (an exact module's offsets, or a float module's biases as
    debranch computed them before rounding: the rounded rows of either hold a gap that is not short, the rotation
    counter's steps' `809.0169943749474`, as the float image computes it)."""
    stored, indices, indptr = producer.attrs["A"].csr_parts()
    units = np.ones(producer.attrs["A"].shape[1]) if column_scales is None else column_scales
    data = stored.astype(np.float64, copy=True)
    b = producer.attrs["b"].to_float().values.astype(np.float64)
    counts = np.diff(indptr)
    # each row's first entry's magnitude (1 for an empty row, which joins no group)
    norms = np.abs(data[np.minimum(indptr[:-1], max(len(data) - 1, 0))]) if len(data) else np.ones(len(counts))
    norms = np.where(counts > 0, norms, 1.0)
    directions = np.round(data / np.repeat(norms, counts), 12)  # rows of one normal-form row agree to ~1e-15
    groups: dict[tuple, list] = {}
    # the rows' keys sliced from the whole arrays' bytes (the same bytes as each row's own tobytes())
    ptr, norm_of, biases = indptr.tolist(), norms.tolist(), b.tolist()
    index_bytes, direction_bytes = indices.tobytes(), directions.tobytes()
    wi, wd = indices.itemsize, directions.itemsize
    for j in range(len(ptr) - 1):
        start, end = ptr[j], ptr[j + 1]
        if start < end and not carried[j]:
            key = (index_bytes[start * wi:end * wi], direction_bytes[start * wd:end * wd])
            groups.setdefault(key, []).append((j, norm_of[j]))
    scales = scales.copy()
    pending = scales.copy()
    grouped = np.zeros(len(scales), dtype=bool)
    commons: list = [0] * len(scales)
    chosen = []  # (members, exact common scale, the first member's row at that scale, common scale)
    # the units reader rows read together, then the sets of those whose offsets are commensurate (a set's units
    # whose partners went to another set are read alone in it)
    for members in (together for bucket in groups.values() for cluster in _equal_directions(bucket, data, ptr)
                    for read in _read_together(cluster, readers) for part in _commensurate(read, biases)
                    for together in _read_together(part, readers)):
        found = _smallest_gap([biases[j] / norm for j, norm in members])
        if found is None:
            continue
        # the gap is 1/μ computed in float64; the smallest one is taken from the biases exactly (on rows of norm
        # 10¹⁶, biases one apart, offsets divided in floats are 8·10⁻⁸ off their gap of 10⁻¹⁶)
        _, a, b = found
        (ja, norm_a), (jb, norm_b) = members[a], members[b]
        gap = _gap(biases[ja], norm_a, biases[jb], norm_b)
        upstream = float(units[indices[ptr[ja]]])
        scale, unit = snap_number(float(1 / gap), 1e-9), 1.0  # none short: the float gap's
        for candidate_gap, candidate_unit in _gap_candidates(gap, exact_offsets, ja, jb, upstream):
            held = snap_number(float(Fraction(candidate_unit) / candidate_gap), 1e-9)
            if _short(held):
                scale, unit = held, candidate_unit
                break
        common = scale / unit
        first, first_norm = members[0]
        chosen.append((members, _exact_scale(scale) / _exact_scale(unit),
                       data[ptr[first]:ptr[first + 1]] * (common / first_norm), common))
    if chosen:  # the rows snapped in one call (elementwise: the same as one call per row)
        snapped = _snap(np.concatenate([row for _, _, row, _ in chosen]), 1e-14)
        start = 0
        for members, exact_common, first_row, common in chosen:
            row = snapped[start:start + len(first_row)]
            start += len(first_row)
            for j, norm in members:
                scales[j], pending[j], grouped[j], commons[j] = common / norm, 1.0, True, exact_common
                data[ptr[j]:ptr[j + 1]] = row
    return scales, data, pending, grouped, commons, [[j for j, _ in members] for members, *_ in chosen]


def _spaced_biases(biases: Vector, original: np.ndarray, exact_rows: dict, groups: list, rows: np.ndarray) -> Vector:
    """A float module's rescaled ``biases`` with each group's put whole numbers apart where its exact biases are
    (``exact_rows``: debranch's biases before it rounded them; the other rows' ``original`` ones are exact) and the
    rescaled ones are not: the step at 4/3 had ``−1333.3333333333333`` and ``−1334.3333333333335``, one apart but for
    2.3·10⁻¹³, which λ read as 2.3·10⁻³; and the snap broke a pair scaled exactly: ``f_smaller(x, 1.1,
    scale=2)``'s ``2·fl(1.1)`` and ``2·(fl(1.1) − 1/2)``, one apart, snapped to ``2.2`` and ``1.2``, were
    ``1.0000000000000002`` apart (λ read the step's 1 as 2.2·10⁻⁶ off under a bound of 0).  The first member's bias
    is rounded once and the others are it plus their whole distances, where float64 holds that.  Groups already so
    far apart, or whose exact biases are not whole numbers apart, keep theirs (the rotation counter's steps:
    ``−500.00000000000034`` exactly, which float debranch snapped to ``−500``)."""
    values = biases.values.copy()
    for members in groups:
        if len(members) < 2 or all(j not in exact_rows and values[j] == original[j] * rows[j] and
                                   product_exact(float(original[j]), float(rows[j]), float(values[j]))
                                   for j in members):
            continue  # the rescaled biases are the exact ones: they are as far apart as those
        exact = [exact_rows.get(j, Fraction(float(original[j]))) * Fraction(float(rows[j])) for j in members]
        apart = [e - exact[0] for e in exact]
        first = Fraction(float(values[members[0]]))
        if any(d.denominator != 1 for d in apart) or \
                all(Fraction(float(values[j])) - first == d for j, d in zip(members, apart)):
            continue
        base = float(exact[0])
        spaced = [base + float(d) for d in apart]
        if all(Fraction(v) == Fraction(base) + d for v, d in zip(spaced, apart)):
            for j, v in zip(members, spaced):
                values[j] = v
    return Vector(values)


def _read_together(members: list, readers: list) -> list:
    """``members`` (``(row, norm)``) split into the sets that reader rows read together (two members are in one
    set where some reader row reads both, or each beside a third), leaving out the members no reader row reads
    beside another.  Each set gets its own scale: ``f_larger(r, 2.2, scale=3000)`` and ``f_eq(r, 0, scale=100)``
    of one ``r`` made one set at 3000, the `f_eq` pair 30 apart, and its reader read their difference with
    ``10⁴/3000``, which float64 holds as ``3.333333333333333``: λ times its 8.9·10⁻¹⁵ was 8.9·10⁻⁵ off under a
    bound of 0."""
    rows_of: dict = {}
    for j, _ in members:
        for r in readers[j]:
            rows_of.setdefault(r, []).append(j)
    root = {j: j for j, _ in members}

    def find(j):
        while root[j] != j:
            root[j] = root[root[j]]
            j = root[j]
        return j
    shared = set()
    for read in rows_of.values():
        if len(read) > 1:
            shared.update(read)
            for j in read[1:]:
                root[find(j)] = find(read[0])
    sets: dict = {}
    for j, norm in members:
        if j in shared:
            sets.setdefault(find(j), []).append((j, norm))
    return list(sets.values())


def _reader_rows(reader, n: int) -> list:
    """Per slot of the ``n`` a ``reader`` (linear or linstate) reads: the rows that read it, in ascending order."""
    _, columns, indptr = reader.attrs["A" if reader.kind == "linear" else "B"].csr_parts()
    rows_of = [[] for _ in range(n)]
    for row, (start, end) in enumerate(zip(indptr[:-1].tolist(), indptr[1:].tolist())):
        for column in columns[start:end].tolist():
            rows_of[column].append(row)
    return rows_of


def _gap_candidates(gap, exact_offsets, ja: int, jb: int, upstream: float):
    """``(gap, unit)`` pairs to take a group's scale from, in order: the float gap's, else the exact gap's (the two
    rows may be one exactly: their gap is 0 then), in the stored rows' units, else in debranch's (``upstream``).
    The exact gap is computed only when the float gap's scale is not short."""
    yield gap, 1.0
    exact_gap = abs(exact_offsets(ja) - exact_offsets(jb)) if exact_offsets is not None else 0
    if exact_gap:
        yield exact_gap, 1.0
    if upstream != 1.0:
        yield gap, upstream
        if exact_gap:
            yield exact_gap, upstream


def _gap(bias_a: float, first_a: float, bias_b: float, first_b: float) -> float | Fraction:
    """``|offset_a − offset_b|`` of two rows (:func:`_offset`) exactly: a float where float64 divides both and
    subtracts exactly (the usual case: the floats then compute every quotient from it as the rationals would), else
    a Fraction."""
    if divides_exactly(bias_a, abs(first_a)) and divides_exactly(bias_b, abs(first_b)):
        qa, qb = bias_a / abs(first_a), bias_b / abs(first_b)
        if sum_exact(qa, -qb, qa - qb):
            return abs(qa - qb)
    return abs(_offset(bias_a, first_a) - _offset(bias_b, first_b))


def _offset(bias, first) -> Fraction:
    """A row's offset in rationals: its ``bias`` over the magnitude of its ``first`` entry (floats or Fractions)."""
    return Fraction(bias) / abs(Fraction(first))


def _held_offsets(producer: Op, exact_rows: dict):
    """Row ``j`` of a float module's ``producer`` -> its :func:`_offset`, of its exact bias where debranch rounded it
    (``exact_rows``; 0 for an empty row).  A function: only the rows of a step group's smallest gap are asked."""
    data, _, indptr = producer.attrs["A"].csr_parts()
    biases = producer.attrs["b"].values

    def offset(j: int) -> Fraction:
        if indptr[j] == indptr[j + 1]:
            return Fraction(0)
        return _offset(exact_rows.get(j, float(biases[j])), float(data[indptr[j]]))
    return offset


def _exact_offsets(shadow: ExactShadow, producer: Op):
    """Row ``j`` of an exact module's ``producer`` -> the :func:`_offset` of its exact constants (0 for an empty
    row)."""
    held = shadow.held(producer)
    rows, biases = held["A"].exact_rows(), held["b"].array(True).tolist()

    def offset(j: int) -> Fraction:
        return _offset(biases[j], min(rows[j].items())[1]) if rows[j] else Fraction(0)
    return offset


def _short(x: float) -> bool:
    """Whether ``x`` has at most seven significant digits (a number :func:`snap_number` may give)."""
    return float(f"{x:.{_MAX_DIGITS - 1}e}") == x


def _smallest_gap(offsets: list) -> tuple | None:
    """``(gap, a, b)``: the two offsets closest apart (None where all are equal)."""
    gaps = [(abs(x - y), a, b) for a, x in enumerate(offsets) for b, y in enumerate(offsets) if x != y]
    return min(gaps) if gaps else None


def _commensurate(members: list, biases: list) -> list:
    """``members`` (``(row, norm)`` of one direction) split into sets whose offsets are whole multiples of their
    set's smallest gap apart: two steps of one value at incommensurate edges (``x < 0.5`` and ``0.7x < 1.5``: gaps
    10⁻³ and 10⁻³/0.7) each get a scale that puts their own pair one apart — at the first's, the second pair's gap
    was ``1.428571428570649``, not ``1/0.7``, and λ = 10¹⁰ made that a 5.5·10⁻³ error where its step is 1.  Units
    of no such second set stay with the first."""
    sets, rest = [], list(members)
    while rest:
        offsets = [biases[j] / norm for j, norm in rest]
        found = _smallest_gap(offsets)
        if found is None:
            break
        gap, a, _ = found
        steps = [(o - offsets[a]) / gap for o in offsets]
        inside = [m for m, k in zip(rest, steps) if abs(k - round(k)) <= _WHOLE_STEPS]
        if len(inside) < 2:
            break
        sets.append(inside)
        rest = [m for m, k in zip(rest, steps) if abs(k - round(k)) > _WHOLE_STEPS]
    if not sets:
        return [members]
    sets[0].extend(rest)  # units of no set of their own stay with the first, as every unit of the direction was
    return sets


def _equal_directions(members: list, data: np.ndarray, ptr: list) -> list:
    """``members`` (``(row, norm)`` of rows whose directions agree to 12 decimals) split into the sets whose
    directions agree within :data:`_GROUP_TOLERANCE` of their largest entry and :data:`_ENTRY_TOLERANCE` of each
    entry.  A group gets one row, so a member joins only where that changes its unit by debranch's rounding: two
    rows 2·10⁻¹³ apart are different units when a reader takes their difference times 10¹³ (a λ-conditional around
    a step), and made one they answered 0.002 where the program answers 3; two λ-rows reading a value times −2/3
    and −0.7 agree to 4·10⁻¹⁵ of their largest entry, λ's, and made one the second answered −(2/3)·v + 1 where the
    program answers −0.7·v + 1."""
    clusters: list[tuple[np.ndarray, list]] = []
    for j, norm in members:
        direction = data[ptr[j]:ptr[j + 1]] / norm
        for first, cluster in clusters:
            apart = np.abs(direction - first)
            if np.max(apart) <= _GROUP_TOLERANCE * np.max(np.abs(first)) and \
                    np.all(apart <= _ENTRY_TOLERANCE * np.abs(first)):
                cluster.append((j, norm))
                break
        else:
            clusters.append((direction, [(j, norm)]))
    return [cluster for _, cluster in clusters]


def _short_fraction(value: float, seen: dict) -> Fraction:
    """``value`` as the number of at most seven significant digits it was snapped to (a program's ``0.001``);
    ``seen`` keeps the answers of one run of the pass."""
    hit = seen.get(value)
    if hit is None:
        hit = seen[value] = Fraction(repr(snap_number(value, 1e-9)))
    return hit


def _integer_multiplier(row: np.ndarray, primitive: bool, seen: dict) -> float:
    """The least ``m > 0`` putting every entry of ``row`` (numbers of at most seven significant digits, as
    snapped) on an integer — with ``primitive`` also below 1, so that the integers have no common divisor (a
    product's factors ``10¹² x`` and ``10⁻¹² c`` become ``x`` and ``c``) — if the entries it makes stay within
    :data:`_LARGEST_INTEGER` (and, unless ``primitive``, ``m`` too); else 1."""
    values = row.tolist()
    numbers = [_short_fraction(v, seen) for v in values]
    denominator = math.lcm(*(f.denominator for f in numbers))
    if denominator > _LARGEST_INTEGER and not primitive:
        return 1.0
    divisor = math.gcd(*(f.numerator * (denominator // f.denominator) for f in numbers)) if primitive else 1
    m = denominator / (divisor or 1)
    return m if max(map(abs, values), default=0.0) * m <= _LARGEST_INTEGER else 1.0


def _row_multipliers(entries: np.ndarray, indptr: np.ndarray, constants: list, rows: np.ndarray, primitive: bool,
                     seen: dict) -> np.ndarray:
    """Per row of a CSR matrix (``entries``, ``indptr``) and its per-row ``constants`` (a bias, an initial value):
    :func:`_integer_multiplier` of the ``rows`` that have a fraction (with ``primitive``, also an entry above 1:
    a common divisor), 1 for the others."""
    counts = np.diff(indptr)
    row_of = np.repeat(np.arange(counts.size), counts)
    candidates = np.zeros(counts.size, dtype=bool)
    for constant in constants:
        candidates |= constant != np.round(constant)
    candidates[row_of[entries != np.round(entries)]] = True
    if primitive:
        candidates[row_of[np.abs(entries) > 1]] = True
    multipliers = np.ones(counts.size)
    ptr = indptr.tolist()
    for j in np.flatnonzero(candidates & rows).tolist():
        row = np.concatenate([entries[ptr[j]:ptr[j + 1]], [constant[j] for constant in constants]])
        multipliers[j] = _integer_multiplier(row, primitive, seen)
    return multipliers


def _integer_multipliers(producer, pending: np.ndarray, data, skip: np.ndarray, primitive: bool,
                         seen: dict) -> np.ndarray:
    """Per row of ``producer`` (its values ``data``, when given, scaled by ``pending``): the least factor putting
    the row on integers (1 for ``skip`` rows; ``primitive``: see :func:`_integer_multiplier`) — ``ReLU(y − 0.001)``
    is held as ``ReLU(1000 y − 1)``, exact for every integer ``y`` where the program's ``0.999`` is not."""
    stored, _, indptr = producer.attrs["A"].csr_parts()
    entries = np.array(stored if data is None else data, dtype=np.float64) * np.repeat(pending, np.diff(indptr))
    b = producer.attrs["b"].to_float().values.astype(np.float64) * pending
    return _row_multipliers(entries, indptr, [b], ~skip, primitive, seen)


def _harms_readers(reader, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per slot: whether holding it at scale ``after`` instead of ``before`` turns an integer weight of the
    ``reader`` into a fraction — a unit put on integers whose reader then reads it with ``0.001`` only moves the
    rounding one layer on (and every layer after it would hold values ever larger) — or makes a weight larger
    than :data:`_LARGEST_INTEGER` (a GRU's ReLU pairs, say, cannot carry it in float32)."""
    matrix = reader.attrs["A" if reader.kind == "linear" else "B"]
    stored, columns, _ = matrix.csr_parts()
    weights = np.asarray(stored, dtype=np.float64)
    was, now = weights / before[columns], weights / after[columns]
    integral = lambda v: np.abs(v - np.round(v)) <= 1e-12 * np.maximum(1.0, np.abs(v))  # noqa: E731
    out = np.zeros(before.size, dtype=bool)
    out[columns[integral(was) & ~integral(now)]] = True
    out[columns[(np.abs(now) > _LARGEST_INTEGER) & (np.abs(now) > np.abs(was))]] = True
    return out


def _balance_factors(producer, multipliers: np.ndarray, refused: np.ndarray) -> list:
    """For each product whose factors' integer multipliers its reader ``refused``: where one factor is a single
    term (no sum to cancel in), it takes the reciprocal of the other's multiplier, the product keeps its scale and
    the other factor its integers — ``(0.002·u)·(0.001·u − v)`` is ``(2·10⁻⁶·u)·(u − 1000 v)``, whose difference
    of a step's two units float32 forms exactly where ``0.001·u`` rounds.  Updates ``multipliers`` in place,
    clears ``refused`` where it balances and returns those products as ``(product, single row, other row)``."""
    n = refused.size
    matrix = producer.attrs["A"]
    terms = np.diff(matrix.csr_parts()[2]) + (producer.attrs["b"].to_float().values != 0)
    balanced = []
    for j in np.flatnonzero(refused).tolist():
        for single, other in ((j, n + j), (n + j, j)):
            if terms[single] == 1 and multipliers[other] != 1.0:
                multipliers[single] = 1.0 / multipliers[other]
                refused[j] = False
                balanced.append((j, single, other))
                break
    return balanced


def _state_multipliers(op, scales: np.ndarray, seen: dict) -> np.ndarray:
    """Per state slot of ``op`` held at ``scales``: the least factor putting its drive row, bias and initial value
    on integers, for slots no other slot's update reads and that read no other slot (carriers, integrators)."""
    _, columns, pointers = op.attrs["A"].csr_parts()
    rows = np.repeat(np.arange(op.dim), np.diff(pointers))
    off = rows != columns
    coupled = np.zeros(op.dim, dtype=bool)
    coupled[rows[off]] = coupled[columns[off]] = True
    stored, _, indptr = op.attrs["B"].csr_parts()
    entries = np.asarray(stored, dtype=np.float64) * np.repeat(scales, np.diff(indptr))
    constants = [op.attrs[key].to_float().values.astype(np.float64) * scales for key in ("bias", "init")]
    return _row_multipliers(entries, indptr, constants, ~coupled, False, seen)


def rescale_units(module, *, snap_tolerance: float = 1e-14):
    """Rescale the units of a layer-form module in place (see the module docstring); returns the module."""
    ops = check_layer_form(module, "rescale-units", PassError)
    # an exact module: the scales are chosen on its float image, as for a float module, and applied to its exact
    # constants (any positive scale leaves the exact map unchanged), so that its float runs read them as a float
    # module's would
    shadow = ExactShadow(ops) if ExactShadow.needed(ops) else None
    layout = module.metadata.get("layout")
    if not isinstance(layout, list) or len(layout) != len(ops):
        raise PassError("rescale-units: the module has no layout of the layer form (metadata['layout'] from "
                        "debranch); run it in the same pipeline right after debranch")
    layout = module.metadata["layout"] = list(layout)  # edited below; a cloned module shares the original's list
    # debranch's exact constants of the biases it emitted rounded: {op position: {row: Fraction}}
    exact_biases = {position: {row: Fraction(value) for row, value in entries}
                    for position, entries in module.metadata.pop("exact_biases", [])}
    natural = _natural_scales(layout, ops, snap_tolerance)
    seen: dict = {}  # number -> its short fraction
    value_scales: dict = {}  # id(op) -> the scale each of its values was put on
    for i, op in enumerate(ops):
        if op.kind not in ("relu", "multi", "linstate") or i + 1 >= len(ops):
            continue  # the output keeps its scale
        reader = ops[i + 1]
        producer = op.operands[0]
        if reader.kind not in ("linear", "linstate") or (op.kind != "linstate" and producer.kind != "linear"):
            continue  # no weights to absorb the scale on one side
        slots = layout[i] if isinstance(layout[i], list) else []
        scales = natural[i]
        data, pending = None, scales
        if op.kind == "relu":
            carried = np.array([isinstance(slot, dict) and slot.get("role") in _CARRIED for slot in slots[:op.dim]]
                               + [False] * (op.dim - len(slots)), dtype=bool)
            # a record the bias no longer rounds to is stale (a pass between debranch and this one): not read
            original = producer.attrs["b"].to_float().values
            exact_rows = {j: v for j, v in exact_biases.get(i - 1, {}).items()
                          if j < len(original) and float(v) == original[j]}
            scales, data, pending, grouped, commons, groups = _group_scales(
                producer, scales, carried, _reader_rows(reader, op.dim),
                _exact_offsets(shadow, producer) if shadow is not None else
                _held_offsets(producer, exact_rows) if exact_rows else None,
                value_scales.get(id(producer.operands[0])) if shadow is None else None)
            multipliers = _integer_multipliers(producer, pending, data, grouped, False, seen)
            if np.any(multipliers != 1.0):
                multipliers[_harms_readers(reader, scales, scales * multipliers)] = 1.0
            scales, pending, rows = scales * multipliers, pending * multipliers, scales * multipliers
        elif op.kind == "multi":  # a product scales with its first factor, and with what puts each on integers
            rows = np.concatenate([scales, np.ones(op.dim)])
            balanced = []
            multipliers = _integer_multipliers(producer, rows, None, np.zeros(rows.size, dtype=bool), True, seen)
            if np.any(multipliers != 1.0):
                refused = _harms_readers(reader, scales, scales * multipliers[:op.dim] * multipliers[op.dim:])
                balanced = _balance_factors(producer, multipliers, refused)
                multipliers[np.concatenate([refused, refused])] = 1.0
            rows = rows * multipliers
            scales, pending = rows[:op.dim] * rows[op.dim:], rows
        else:
            multipliers = _state_multipliers(op, scales, seen)
            if np.any(multipliers != 1.0):
                multipliers[_harms_readers(reader, scales, scales * multipliers)] = 1.0
            scales = scales * multipliers
        if np.all(scales == 1.0) and data is None:
            continue
        value_scales[id(op)] = scales
        slot_scales = scales.tolist() if shadow is None else \
            _rescale_exact(shadow, op, producer, reader, scales, rows if op.kind != "linstate" else None,
                           commons if op.kind == "relu" else None, balanced if op.kind == "multi" else ())
        updates = []  # (attribute owner, name, new values, builder, the values stored before)
        if op.kind in ("relu", "multi"):
            updates.append((producer, "A", *_scaled_matrix(producer.attrs["A"], pending, None, data)))
            updates.append((producer, "b", *_scaled_vector(producer.attrs["b"], rows)))
        else:  # a state s' = F s: A' = F A F⁻¹, B' = F B, bias' = F bias, init' = F init
            updates.append((op, "A", *_scaled_matrix(op.attrs["A"], scales, 1.0 / scales)))
            updates.append((op, "B", *_scaled_matrix(op.attrs["B"], scales, None)))
            for key in ("bias", "init"):
                updates.append((op, key, *_scaled_vector(op.attrs[key], scales)))
        weights = "A" if reader.kind == "linear" else "B"
        updates.append((reader, weights, *_scaled_matrix(reader.attrs[weights], None, 1.0 / scales)))
        snapped = _snap_changed(np.concatenate([values for _, _, values, *_ in updates]),
                                np.concatenate([before for *_, before in updates]), snap_tolerance)
        offset = 0
        for owner, name, values, build, _ in updates:
            owner.attrs[name] = build(snapped[offset:offset + len(values)])
            offset += len(values)
        if op.kind == "relu":
            producer.attrs["b"] = _spaced_biases(producer.attrs["b"], original, exact_rows, groups, rows)
        layout[i] = [_scaled_slot(slot, s) for slot, s in zip(slots, slot_scales)] + slots[op.dim:]
    if shadow is not None:
        shadow.restore()
    return module


def _scaled_slot(slot, scale):
    """A layout slot describing the value ``scale`` (a float, or a Fraction for an exact module) times larger."""
    if not isinstance(slot, dict) or scale == 1:
        return slot
    exact = isinstance(scale, Fraction)

    def times(coeff):
        return layout_number(Fraction(layout_coefficient(coeff)) * scale) if exact else coeff * scale
    out = dict(slot)
    if "terms" in out:
        out["terms"] = [[name, index, times(coeff)] for name, index, coeff in out["terms"]]
    if "constant" in out and out["constant"] is not None:
        out["constant"] = times(out["constant"])
    return out


def _exact_scale(value: float) -> Fraction:
    """A scale chosen in floats as an exact rational: the decimal it prints as (a snapped ``0.001`` is 1/1000)."""
    return Fraction(repr(float(value)))


def _exact_row_scale(value: float, entries: list) -> Fraction:
    """The exact scale of a row chosen as ``value``: the decimal it prints as, or the float64 ``value`` itself where
    that leaves more of the row's exact ``entries`` float64 values.  A program's ``0.7·x + 1 − λ(1 − c)`` is
    ``x + (1 − λ(1 − c))/0.7`` in the normal form: at 7/10 its λ-weight is ``λ·(7/10)/0.7``, a rational float64
    cannot hold (the analysis then charges its rounding wherever ``c`` may be 1); at the float 0.7 it is λ again."""
    decimal = _exact_scale(value)
    binary = Fraction(value)
    if binary == decimal:
        return decimal

    def floats(scale: Fraction) -> int:
        return sum(Fraction(float(v)) == v for v in (e * scale for e in entries))
    return binary if floats(binary) > floats(decimal) else decimal


def _rescale_exact(shadow: ExactShadow, op: Op, producer: Op, reader: Op, scales: np.ndarray,
                   rows: np.ndarray | None, commons: np.ndarray | None, balanced=()) -> list:
    """Apply the float pass's choice for ``op`` to the exact constants: a ReLU's or a product's producer rows times
    ``rows`` (a grouped ReLU row at its group's ``commons``, ``common / |its first entry|`` exactly, so that the
    group's rows stay equal; a ``balanced`` product's single factor at the product's scale over the other's, so
    that the product keeps the scale the float pass gave it), a state's ``F A F⁻¹, F B, F bias, F init``; the
    reader's columns divided by the value's scale.  Returns the exact scales of ``op``'s values (for the
    layout)."""
    if op.kind == "linstate":
        value_scales = [_exact_scale(v) for v in scales.tolist()]
        inverse = [1 / f for f in value_scales]
        shadow.scale_rows(op, "A", value_scales)
        shadow.scale_columns(op, "A", inverse)
        for name in ("B", "bias", "init"):
            shadow.scale_rows(op, name, value_scales)
    else:
        exact_rows = shadow.held(producer)["A"].exact_rows()
        biases = shadow.held(producer)["b"].array(True).tolist()
        first = [min(row.items())[1] if row else Fraction(1) for row in exact_rows]
        groups = commons if commons is not None else [0] * len(rows)
        row_scales = [common / abs(lead) if common else _exact_row_scale(r, [*row.values(), bias])
                      for r, common, lead, row, bias in zip(rows.tolist(), groups, first, exact_rows, biases)]
        for j, single, other in balanced:
            row_scales[single] = _exact_scale(scales[j]) / row_scales[other]
        shadow.scale_rows(producer, "A", row_scales)
        shadow.scale_rows(producer, "b", row_scales)
        value_scales = row_scales if op.kind == "relu" else \
            [a * b for a, b in zip(row_scales[:op.dim], row_scales[op.dim:])]
    shadow.scale_columns(reader, "A" if reader.kind == "linear" else "B", [1 / f for f in value_scales])
    return value_scales


@register_pass
@dataclasses.dataclass
class RescaleUnits(Pass):
    name: ClassVar[str] = "rescale-units"
    summary: ClassVar[str] = ("put layer-form units on their program's scale (step pairs share one row, gap 1) "
                              "so that float32 arithmetic on them is exact where the program's is")
    snap_tolerance: float = dataclasses.field(default=1e-14, metadata={
        "help": "relative distance within which a rescaled weight is snapped to a number of ≤ 7 digits"})

    def run(self, module):
        if not 0 <= self.snap_tolerance < 1e-6:
            raise PassError(f"rescale-units: snap_tolerance must be in [0, 1e-6), got {self.snap_tolerance!r}")
        return rescale_units(module, snap_tolerance=self.snap_tolerance)
