"""The affine normal form used by ``debranch`` (compile.md §7.1).

Every program value is rewritten as an affine function of **atoms**: the coordinates of the input and the
outputs of the nonlinear *units*.  Units are scalar where the op is elementwise and blocks where it is not:

* ``R`` — one ReLU coordinate ``relu(row)``;
* ``M`` — one Multi coordinate ``left · right`` (two rows);
* ``S`` — one weakly connected block of a LinState's ``A`` (``k`` coordinates, ``k`` input rows, the block of
  ``A`` and of ``init``);
* ``X`` — the input (``d_in`` atoms).

A *row* is a ``dict`` ``{column: coefficient}`` over atom columns, column :data:`CONST` being the constant 1.
Rows are never mutated once built, so they are shared freely.  Coefficients are Python floats (float mode)
or :class:`fractions.Fraction` (exact mode); the same code serves both domains.

While the normal form is built, ``Linear``/``Slice``/``Concat`` disappear (they only recombine rows) and the
nonlinear coordinates are simplified and hash-consed:

* ``relu(r)`` is ``r`` when ``r ≥ 0`` is provable, ``0`` when ``r ≤ 0`` is, a constant when ``r`` is one, and
  otherwise ``s · relu(r/s)`` for the positive scale ``s`` that makes the first coefficient ``±1`` — so
  ``relu(μx)`` and ``relu(x)`` are one unit (where the division would round the first row of a direction, ``s``
  is a power of two: ``NormalForm._unit_row``);
* ``l · r`` with a constant operand is affine; otherwise both operands are normalised (signed scales) and
  the pair is sorted (the product commutes);
* a LinState is split into the weakly connected blocks of its ``A``; identical blocks (same ``A``, input
  rows and ``init``) are one unit.

Bounds of every atom are tracked for the non-negativity proofs (interval arithmetic, tightened for sums of
ReLUs of one direction — ``f_step`` outputs lie in ``[0, 1]`` — and a fixed-point iteration for states).
Finally :meth:`NormalForm.prune` removes dead units and dead state coordinates.
"""
from __future__ import annotations

import math
from fractions import Fraction

from ..errors import PassError
from ..ir.error_free import divides_exactly, fold_products, product_exact
from .materialize_steps import LARGE_BIAS

CONST = 0  # column of the constant 1

_INF = math.inf
_REL_SLACK = 1e-12  # relative safety margin of float interval bounds (sound decisions near zero)
_MAX_GROUP = 64  # largest group of same-direction ReLUs bounded exactly
_EXACT_DEPTH = 100  # nested units an exact bound follows (beyond: the float bounds)
_NARROW = 256  # a step's pair whose offsets are closer than 1/_NARROW of its range stays two units
_BUILDS = 3  # normal forms built at most: a unit kept for one reason may give another (a kept ReLU shares a row)


class Unit:
    """A nonlinear unit (see the module docstring)."""

    __slots__ = ("index", "kind", "atoms", "rows", "A", "init")

    def __init__(self, index: int, kind: str, atoms: list, rows: list, A=None, init=None):
        self.index = index
        self.kind = kind
        self.atoms = atoms
        self.rows = rows
        self.A = A  # S: list of dict rows over local coordinates
        self.init = init  # S: list of numbers

    def deps(self, atom_unit: list) -> set:
        out = set()
        for row in self.rows:
            for a in row:
                if a != CONST:
                    out.add(atom_unit[a])
        return out

    def __repr__(self) -> str:
        return f"<Unit {self.kind}{self.index} atoms={self.atoms}>"


def row_key(row: dict) -> tuple:
    return tuple(sorted(row.items()))


def combine(terms, const=0) -> dict:
    """``Σ c · row + const`` over ``(c, row)`` pairs, zeros dropped."""
    acc: dict = {}
    get = acc.get
    for c, row in terms:
        if c == 0:
            continue
        if c == 1:
            for k, v in row.items():
                acc[k] = get(k, 0) + v
        else:
            for k, v in row.items():
                acc[k] = get(k, 0) + c * v
    if const != 0:
        acc[CONST] = get(CONST, 0) + const
    return {k: v for k, v in acc.items() if v != 0}


def _finite(v) -> bool:
    return isinstance(v, Fraction) or math.isfinite(v)


def _with_constant(row: dict, value: Fraction) -> dict:
    """``row`` with its constant replaced by ``value`` (dropped where 0)."""
    out = dict(row)
    if value:
        out[CONST] = value
    else:
        out.pop(CONST, None)
    return out


def scale_row(row: dict, c) -> dict:
    if c == 1:
        return row
    if c == 0:
        return {}
    out = {k: v * c for k, v in row.items()}
    return {k: v for k, v in out.items() if v != 0}


def is_constant(row: dict) -> bool:
    return not row or (len(row) == 1 and CONST in row)


def first_atom_coef(row: dict):
    """The coefficient of the smallest atom column (rows are not constant)."""
    return row[min(k for k in row if k != CONST)]


def normalise(row: dict, exact: bool, signed: bool):
    """``(s, row/s)`` with ``s`` the first atom coefficient (``|·|`` unless ``signed``).

    In float mode the division may round the other coefficients (by at most half an ulp each — the same
    order as the rounding of the dot product itself); in exchange every multiple of a direction gets the
    *same* normalised row, so pre-activations that share a direction also share its rounding (the
    ``f_step`` pair ``relu(μv)``, ``relu(v − 1/μ)`` then cancels as it does in the interpreter).
    """
    c = first_atom_coef(row)
    s = c if signed else abs(c)
    if s == 1:
        return s, row
    return s, {k: v / s for k, v in row.items()}


def _mul_bound(a: float, b: float) -> float:
    if a == 0 or b == 0:
        return 0.0
    return a * b


def interval_product(l1, h1, l2, h2):
    cands = (_mul_bound(l1, l2), _mul_bound(l1, h2), _mul_bound(h1, l2), _mul_bound(h1, h2))
    return min(cands), max(cands)


def interval_square(lo, hi):
    """The range of ``v·v`` for ``v`` in ``[lo, hi]``: never negative (an interval product would allow
    ``lo·hi < 0``, and an R stage would then carry the square shifted by that bound)."""
    if lo <= 0 <= hi:
        return 0.0, max(_mul_bound(lo, lo), _mul_bound(hi, hi))
    low, high = sorted((abs(lo), abs(hi)))
    return _mul_bound(low, low), _mul_bound(high, high)


def _outward_product(l1, h1, l2, h2, square: bool):
    """:func:`interval_square` or :func:`interval_product` computed in rationals and rounded outwards."""
    ends = (l1, h1, l2, h2)
    if not all(math.isfinite(v) for v in ends):
        return interval_square(l1, h1) if square else interval_product(l1, h1, l2, h2)
    l1, h1, l2, h2 = (Fraction(v) for v in ends)
    lo, hi = interval_square(l1, h1) if square else interval_product(l1, h1, l2, h2)
    return _float_down(Fraction(lo)), _float_up(Fraction(hi))


def _float_rows(matrix) -> list:
    data, indices, indptr = matrix.csr_parts()
    indptr, indices, data = indptr.tolist(), indices.tolist(), data.tolist()
    return [dict(zip(indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]))
            for i in range(matrix.shape[0])]


def matrix_rows(matrix, exact: bool) -> list:
    """Rows of a :class:`~lsrl.ir.matrix.Matrix` as dicts, in the requested domain."""
    if exact:
        return [dict(r) for r in matrix.exact_rows()]
    return _float_rows(matrix)


def vector_values(vector, exact: bool) -> list:
    if not exact and not vector.exact:
        return vector.values.tolist()
    return vector.array(exact).tolist()


def constant_values(vector, exact: bool) -> list:
    """A bias vector's values for rows whose constants are summed exactly (:meth:`NormalForm._combined`): in float
    mode floats, and Fractions where the program's rational is no float (``−1/1000``)."""
    if exact or not vector.exact:
        return vector_values(vector, exact)
    return [float(v) if float(v) == v else v for v in vector.array(True).tolist()]


def _zero_sum_group_range(members) -> tuple | None:
    """The exact ``(lo, hi)`` of ``Σ c_i relu(p + k_i)`` over every ``p`` when ``Σ c_i = 0``, else None.

    The sum is then a bounded piecewise-linear function of ``p``, extreme at a breakpoint ``p = −k_j`` or in
    the limits (0 and ``Σ c_i k_i``), evaluated here in rationals: a step's pair is bounded by exactly
    ``[0, 1]`` (a float margin made it ``−5e-12``, and a carrier shifted by that rounded every carried 1)."""
    cs = [Fraction(c) for c, _ in members]
    if sum(cs) != 0:
        return None
    ks = [Fraction(k) for _, k in members]
    values = [Fraction(0), sum(c * k for c, k in zip(cs, ks))]
    values += [sum((c * (k - kj) for c, k in zip(cs, ks) if k > kj), Fraction(0)) for kj in ks]
    return min(values), max(values)


def _float_down(v: Fraction) -> float:
    f = float(v)
    return f if Fraction(f) <= v else math.nextafter(f, -math.inf)


def _float_up(v: Fraction) -> float:
    f = float(v)
    return f if Fraction(f) >= v else math.nextafter(f, math.inf)


class NormalForm:
    """Build the affine normal form of a module (see the module docstring).

    After :meth:`build` and :meth:`prune`: ``units`` (live units, creation order = topological, ``units[0]``
    the input), ``atom_unit[a]`` / ``atom_local[a]`` (producer and coordinate in it), ``lo``/``hi`` (atom
    bounds, floats), ``origin[a]`` (``(op, coordinate, scale)``: the program value ``op[coordinate]`` equals
    ``scale · atom``; ``op`` None for the state that is 1 at every step) and ``output_rows``; ``one_atom`` is that
    state's atom (None where no row needs it).
    """

    def __init__(self, module, *, exact: bool = False, fold_memoryless_states: bool = False,
                 shift_carriers: bool = True, paired_linear_relus: frozenset = frozenset(),
                 scales_apart: frozenset = frozenset()):
        self.module = module
        self.paired_linear_relus = paired_linear_relus
        self.scales_apart = scales_apart  # keys of ReLU rows made one unit per scale (relus_at_two_scales)
        self._scale_merges: dict = {}  # key of a ReLU row -> its atom, where ReLUs of two scales share it
        self._linear_relus: list = []  # (id(op), coordinate, row) of each relu(row) with row ≥ 0 proven
        self.one_atom = None  # the atom of the constant-1 state (_one), made where a λ-sized constant needs it
        self.shift_carriers = shift_carriers
        self.exact = exact
        self.fold_memoryless_states = fold_memoryless_states
        self.units: list[Unit] = []
        self.atom_unit: list = [None]  # column 0 is CONST
        self.atom_local: list = [None]
        self.lo: list = [1.0]
        self.hi: list = [1.0]
        self.origin: list = [None]
        self.rgroup: list = [None]  # R atoms: (direction key, offset) of relu(direction + offset)
        self._cse: dict = {}
        self._directions: dict = {}  # normalised atoms -> (first coefficient, its scale, the row's atoms scaled)
        self._group_cache: dict = {}
        self._exact_group_cache: dict = {}
        self._exact_atom: dict = {}
        self.sign_cache: dict = {}  # row key or atom -> (slots, sign) of an R-stage carrier
        #: float mode: id of a ReLU unit's row -> its exact constant, where the row holds it rounded
        self.exact_row_constants: dict = {}
        self.values: dict = {}
        self.output_rows: list = []

    def linear_relus_with_a_partner(self) -> frozenset:
        """``(id(op), coordinate)`` of the ReLUs proven linear (``r ≥ 0``, so :meth:`build` made them their row
        ``r``) that share their direction with a ReLU that is not linear where the two are a step's pair —
        ``relu(μx)`` and ``relu(μx − 1)`` of ``f_larger(x, 0)`` on ``x ≥ 0`` — read by λ, or one so narrow that
        its difference cancels most of their bits (the offsets closer than ``1/_NARROW`` of the linear ReLU's
        range).  Built again with these kept as units (see :func:`build_normal_form`), the pair is a group that
        rescale-units puts on integer rows one apart and ``materialize-steps`` reads through its clamp.  Fused as
        a row, ``μx`` meets λ = 10¹⁰ in the reader, ``λμ·x + x`` is ``10¹³ + 1``, and float32 rounds it to
        ``10¹³`` (the reader loses ``x``); and a step times its value computed the step's 0/1 as
        ``2r − 2·relu(r − 0.001)``, which cancels where the program's ``1000r − 1000·relu(r − 0.001)`` rounds
        onto the integers (float32: 6·10⁻⁵ off)."""
        if not self._linear_relus:
            return frozenset()
        read_large = self._atoms_read_large()
        partners: dict = {}  # direction -> [(offset, read by λ)] of its ReLU units
        for unit in self.units:
            if unit.kind == "R":
                for a in unit.atoms:
                    direction, offset = self.rgroup[a]
                    partners.setdefault(direction, []).append((offset, a in read_large))
        paired = set()
        for op_id, i, row in self._linear_relus:
            direction, scale = self._direction_and_scale(row)
            offset, span = float(row.get(CONST, 0)) / scale, self.bounds(row)[1] / scale
            narrow = math.isfinite(span)  # a range not proven bounds no gap
            if any(large or narrow and abs(offset - other) * _NARROW <= span
                   for other, large in partners.get(direction, ())):
                paired.add((op_id, i))
        return frozenset(paired)

    def relus_at_two_scales(self) -> frozenset:
        """Keys of the ReLU rows that ops at two scales share (``relu(1000(1 − x))`` of a step and ``relu(1 − x)``
        read as a value) and a λ-sized weight reads.  Built again with one unit per scale for these (see
        :func:`build_normal_form`): shared, the reader's weight on the unit is ``λμ + 1``, which rounds where
        rescale-units puts the unit on the step's scale (``10¹⁰ + 0.001`` is no float64), and the value is lost."""
        if not self._scale_merges:
            return frozenset()
        read_large = self._atoms_read_large()
        return frozenset(key for key, a in self._scale_merges.items() if a in read_large)

    def _atoms_read_large(self) -> set:
        """The atoms some row reads with a λ-sized weight (≥ 2^24, its reader's scale included)."""
        return {a for row, scale in self._rows_and_scales() for a, c in row.items()
                if a != CONST and abs(c * scale) >= LARGE_BIAS}

    def _direction_and_scale(self, row: dict) -> tuple:
        """The direction ``rgroup`` would record for a unit of ``row``, and the scale :meth:`_unit_row` would divide
        it by (the atoms of the direction's first row where a power of two scaled it), without recording one."""
        s, divided = normalise(row, False, signed=False)
        direction = row_key({k: v for k, v in divided.items() if k != CONST})
        known = self._directions.get(direction)
        if known is not None and known[1] != known[0]:
            first, first_scale, first_atoms = known
            return row_key(first_atoms), s * first_scale / first
        return direction, s

    def _rows_and_scales(self):
        """Every row read, with the scale its reader multiplies it by: a ReLU's normalisation, and for both rows of
        a Multi the product of the two (too large for one of them: the pairing may keep a unit it need not)."""
        for unit in self.units:
            scale = abs(float(self.origin[unit.atoms[0]][2])) if unit.kind in ("R", "M") else 1.0
            for row in unit.rows:
                yield row, scale
        for row in self.output_rows:
            yield row, 1.0

    # ------------------------------------------------------------------ constants held exactly
    def _combined(self, terms: list, const) -> dict:
        """:func:`combine`; in float mode its constant summed exactly (a Fraction): the program's ``−1/1000`` and
        ``1000·1.12`` cancel in a step of a constant as they do in rationals, where a float sum left ``2·10⁻¹³``,
        which λ made 2.27 (a comparison of two equal values answered 1)."""
        row = combine(terms, const)
        if self.exact:
            return row
        parts = [(c, r[CONST]) for c, r in terms if CONST in r]
        if not parts:
            return row
        if type(const) is float and all(type(v) is float for _, v in parts):
            try:
                total, rest = fold_products(const, parts)
            except ArithmeticError:
                rest = True
            if not rest:  # float64 holds the sum: no rationals (they cost debranch half its time)
                return _with_constant(row, total)
        if not all(map(_finite, [const, *(v for _, v in parts), *(c for c, _ in parts)])):
            return row  # an infinite constant has no exact sum: the emitted weights are refused as non-finite
        value = Fraction(const)
        for c, v in parts:
            value += Fraction(c) * Fraction(v)
        return _with_constant(row, value)

    def _scaled(self, row: dict, c) -> dict:
        """:func:`scale_row`, with the constant scaled exactly in float mode."""
        out = scale_row(row, c)
        v = row.get(CONST)
        if self.exact or v is None or (type(v) is float and type(c) is float and product_exact(c, v, c * v)):
            return out
        return _with_constant(out, Fraction(c) * Fraction(v))

    def _held(self, row: dict) -> dict:
        """A row a unit or the output reads, its exact constant rounded to a float64 — and where that constant is
        λ-sized (≥ 2^24: float32 holds no unit beside it) and float64 cannot hold it, what the rounding leaves out
        read from the atom that is 1 at every step (:meth:`_one`).  A λ-row ``x + 1.12 − λ·(1 − c)`` keeps its
        1.12: its constant ``1.12 − λ`` rounds at λ's ulp (2·10⁻⁶), and materialize-steps, which folds λ back into
        it where it reads ``c``, would leave ``1.1200008`` where the program computes ``1.12``."""
        value = row.get(CONST)
        if self.exact or not isinstance(value, Fraction):
            return row
        out = dict(row)
        rounded = float(value)
        out[CONST] = rounded
        rest = value - Fraction(rounded)
        if rest and abs(rounded) >= LARGE_BIAS:
            one = self._one()
            share = out.get(one, 0.0) + float(rest)
            if share:
                out[one] = share
            else:
                out.pop(one, None)
        return out

    def _keep_exact_constant(self, row: dict, s, nrow: dict) -> None:
        """Float mode: round the constant of a ReLU unit's row ``nrow`` (``row`` normalised by ``s``) once, and
        record the exact one where that rounds it, so that emission can hand it to ``rescale-units``: a step at
        ``100000.5`` has the offsets ``100000.5`` and ``100000.501``, ``10⁻³(1 − 3.8·10⁻⁹)`` apart in float64, and the
        pair's scale chosen from that gap put the pair's rows one apart only to that precision (λ read it as 38).
        :meth:`_held` rounded the constant before the division rounded it again: the step at 1/3 (μ = 10⁵) had the
        offset ``0.33333333333333326``, not ``1/3`` as float64 holds it, and its pair, rescaled, was
        ``1.000000000007276`` apart."""
        value = row.get(CONST)
        if self.exact or value is None or not _finite(value) or abs(value) >= LARGE_BIAS:
            return
        if type(value) is float and type(s) is float and divides_exactly(value, s):
            if CONST in nrow:
                nrow[CONST] = (value / s) or 0.0
            return
        exact = Fraction(value) / Fraction(s)
        rounded = float(exact)
        if CONST in nrow:
            nrow[CONST] = rounded
        if Fraction(rounded) != exact:
            self.exact_row_constants[id(nrow)] = exact

    def _one(self) -> int:
        """The atom of a state that is 1 at every step (``A = 0``, input row the constant 1), made once."""
        if self.one_atom is None:
            unit = Unit(len(self.units), "S", [], [{CONST: 1.0}], A=[{}], init=[0.0])
            self.units.append(unit)
            (a,) = unit.atoms = self._new_atoms(unit.index, 1)
            self.lo[a] = self.hi[a] = 1.0
            self.origin[a] = (None, 0, 1)
            self.one_atom = a
        return self.one_atom

    # ------------------------------------------------------------------ atoms and bounds
    def _unit_row(self, row: dict, signed: bool):
        """``(s, row/s, key)`` for a unit's row: :func:`normalise`'s division by the first atom coefficient ``c``,
        keyed by its result (hash-consing), except that in float mode a direction whose atoms that division
        would round, or whose first row's λ-sized constant it would (``(2 − λ)/10¹³`` keeps the 2 to 4·10⁻⁷), is
        scaled by the power of two at or below ``c`` instead (exactly), and every later multiple of it by the ratio
        of the coefficients, keeping the first row's atoms.

        Dividing keeps its rounding in the row: a λ-row ``−10¹⁰ − 2⁻¹⁰ + …`` divided by ``5·10²¹`` and rescaled by
        ``rescale-units`` came back as ``−10000000000.00098``, which no float32 run of the program computes.
        Multiples of one direction still share its atoms (``relu(1000y)`` and ``relu(y − 0.001)`` of a step:
        their readers cancel as the interpreter's), as the division gave them."""
        s, divided = normalise(row, self.exact, signed)
        key = row_key(divided)
        if self.exact:
            return s, divided, key
        atoms = {k: v for k, v in divided.items() if k != CONST}
        direction = row_key(atoms)
        known = self._directions.get(direction)
        if known is None:
            scale = s
            constant = row.get(CONST, 0.0)
            if not all(divides_exactly(v, s) for k, v in row.items() if k != CONST) or \
                    abs(constant) >= LARGE_BIAS and not divides_exactly(float(constant), s):
                scale = math.copysign(math.ldexp(1.0, math.frexp(s)[1] - 1), s)
            known = self._directions[direction] = (s, scale, {k: v / scale for k, v in row.items() if k != CONST})
        first, first_scale, first_atoms = known
        if first_scale == first:
            return s, divided, key
        scale = first_scale if s == first else -first_scale if s == -first else s * first_scale / first
        nrow = dict(first_atoms)
        if CONST in row:
            nrow[CONST] = row[CONST] / scale
        return scale, nrow, key

    def _new_atoms(self, unit_index: int, n: int) -> list:
        start = len(self.atom_unit)
        for i in range(n):
            self.atom_unit.append(unit_index)
            self.atom_local.append(i)
            self.lo.append(-_INF)
            self.hi.append(_INF)
            self.origin.append(None)
            self.rgroup.append(None)
        return list(range(start, start + n))

    def bounds(self, row: dict):
        """Sound float bounds ``(lo, hi)`` of an affine row over the atoms.

        Each end is widened by a relative margin of the magnitudes summed into it (float rounding, and the
        rounding of exact coefficients to floats), so a bound of exactly 0 from exact zeros stays 0.
        """
        lo = hi = 0.0
        slack_lo = slack_hi = 0.0
        groups = None
        lo_a, hi_a, rgroup = self.lo, self.hi, self.rgroup
        for a, c in row.items():
            c = float(c)
            if a == CONST:
                lo += c
                hi += c
                slack_lo += abs(c)
                slack_hi += abs(c)
                continue
            g = rgroup[a]
            if g is not None:
                if groups is None:
                    groups = {}
                groups.setdefault(g[0], []).append((c, g[1], a))
                continue
            l, h = (c * lo_a[a], c * hi_a[a]) if c > 0 else (c * hi_a[a], c * lo_a[a])
            lo += l
            hi += h
            slack_lo += abs(l) if math.isfinite(l) else 0.0
            slack_hi += abs(h) if math.isfinite(h) else 0.0
        if groups:
            for members in groups.values():
                if len(members) == 1:
                    c, _, a = members[0]
                    l, h = (c * lo_a[a], c * hi_a[a]) if c > 0 else (c * hi_a[a], c * lo_a[a])
                    sl = abs(l) if math.isfinite(l) else 0.0
                    sh = abs(h) if math.isfinite(h) else 0.0
                else:
                    l, h, sl, sh = self._group_bounds(members)
                lo += l
                hi += h
                slack_lo += sl
                slack_hi += sh
        if math.isnan(lo):
            lo = -_INF
        if math.isnan(hi):
            hi = _INF
        if len(row) == 1 and not groups:
            (c,) = row.values()
            if c == 1 or c == -1:  # one exact term: nothing was rounded
                return lo, hi
        return lo - _REL_SLACK * slack_lo, hi + _REL_SLACK * slack_hi

    def exact_bounds(self, row: dict, depth: int = 0):
        """The bounds of :meth:`bounds` summed in rationals, without its margin, rounded outwards to floats, over
        the atoms' bounds computed the same way (:meth:`_exact_ends`).

        Where a carrier is shifted by its bound, a margin would make the shift a number like
        ``0.999023437501`` that rounds every value carried; the exact bound of a row of round numbers is round.
        Only carriers ask (decisions keep the margin), so the rationals cost little."""
        lo = hi = Fraction(0)
        lo_inf = hi_inf = False
        groups: dict = {}
        for a, c in row.items():
            c = Fraction(c)
            if a == CONST:
                lo += c
                hi += c
                continue
            g = self.rgroup[a]
            if g is not None:
                groups.setdefault(g[0], []).append((c, g[1], a))
                continue
            a_lo, a_hi = self._exact_ends(a, depth)
            ends = (a_lo, a_hi) if c > 0 else (a_hi, a_lo)
            for end, low in zip(ends, (True, False)):
                if math.isinf(end):
                    lo_inf, hi_inf = (True, hi_inf) if low else (lo_inf, True)
                elif low:
                    lo += c * Fraction(end)
                else:
                    hi += c * Fraction(end)
        for members in groups.values():
            span = None
            if len(members) > 1 and len(members) <= _MAX_GROUP:
                key = tuple((c, k) for c, k, _ in members)
                if key not in self._exact_group_cache:
                    self._exact_group_cache[key] = _zero_sum_group_range(key)
                span = self._exact_group_cache[key]
            if span is not None:
                lo += span[0]
                hi += span[1]
                continue
            for c, _, a in members:
                a_lo, a_hi = self._exact_ends(a, depth)
                l, h = (a_lo, a_hi) if c > 0 else (a_hi, a_lo)
                if math.isinf(l):
                    lo_inf = True
                else:
                    lo += c * Fraction(l)
                if math.isinf(h):
                    hi_inf = True
                else:
                    hi += c * Fraction(h)
        return (-_INF if lo_inf else _float_down(lo)), (_INF if hi_inf else _float_up(hi))

    def _exact_ends(self, a: int, depth: int) -> tuple[float, float]:
        """Atom ``a``'s bounds from its unit's rows in rationals (ReLU and product atoms; others, and past
        :data:`_EXACT_DEPTH` nested units, their float bounds), never looser than the float ones."""
        hit = self._exact_atom.get(a)
        if hit is not None:
            return hit
        unit = self.units[self.atom_unit[a]]
        if depth >= _EXACT_DEPTH or unit.kind not in ("R", "M"):
            return self.lo[a], self.hi[a]
        if unit.kind == "R":
            lo, hi = self.exact_bounds(unit.rows[0], depth + 1)
            lo, hi = max(0.0, lo), max(0.0, hi)
        else:
            left, right = unit.rows
            l1, h1 = self.exact_bounds(left, depth + 1)
            l2, h2 = self.exact_bounds(right, depth + 1)
            lo, hi = _outward_product(l1, h1, l2, h2, square=row_key(left) == row_key(right))
        hit = self._exact_atom[a] = (max(lo, self.lo[a]), min(hi, self.hi[a]))
        return hit

    def _group_bounds(self, members):
        """Bounds of ``Σ c_i relu(p + k_i)`` for ReLUs of one direction ``p``.

        When ``Σ c_i = 0`` the sum is a bounded piecewise-linear function of ``p``: its extremes are at the
        breakpoints ``p = −k_j`` or in the limits (``0`` and ``Σ c_i k_i``), independent of the range of
        ``p``.  Otherwise the sum is that of a zero-sum group and ``(Σ c_i)·relu(p + k_m)``, ``m`` the member of the
        least range: ``λμ·(relu(y) − relu(y − 1/μ)) + 2⁻⁴³·relu(y − 1/4)`` is bounded by ``λ`` plus a little, where
        member by member it was ``λμ·max y`` (a carrier shifted by that held ``3·10¹³`` beside its value).
        """
        csum = 0.0
        for c, _, _ in members:
            csum += c
        if csum != 0 and len(members) <= _MAX_GROUP:
            m = min(range(len(members)), key=lambda i: self.hi[members[i][2]] - self.lo[members[i][2]])
            c, k, a = members[m]
            balanced = -math.fsum(members[i][0] for i in range(len(members)) if i != m)
            rest = c - balanced
            zero_sum = members[:m] + [(balanced, k, a)] + members[m + 1:]
            if rest != 0 and sum(w for w, _, _ in zero_sum) == 0:
                lo, hi, slack_lo, slack_hi = self._group_bounds(zero_sum)
                l, h = (rest * self.lo[a], rest * self.hi[a]) if rest > 0 else (rest * self.hi[a], rest * self.lo[a])
                return lo + l, hi + h, slack_lo + abs(l), slack_hi + abs(h)
        if csum == 0 and len(members) <= _MAX_GROUP:
            key = tuple((c, k) for c, k, _ in members)
            hit = self._group_cache.get(key)
            if hit is not None:
                return hit
            ks = [float(k) for _, k, _ in members]
            cs = [c for c, _, _ in members]
            abs_c = 0.0
            limit = limit_mag = 0.0
            for c, k in zip(cs, ks):
                abs_c += abs(c)
                limit += c * k
                limit_mag += abs(c * k)
            # (value − margin, value + margin) at the limits (0 and Σ c_i k_i) and at every breakpoint
            lo_v = min(0.0, limit - _REL_SLACK * limit_mag)
            hi_v = max(0.0, limit + _REL_SLACK * limit_mag)
            for kj in ks:
                value = mag = 0.0
                for c, k in zip(cs, ks):
                    if k > kj:
                        t = c * (k - kj)
                        value += t
                        mag += abs(t)
                mag = _REL_SLACK * (mag + abs_c * abs(kj))
                lo_v = min(lo_v, value - mag)
                hi_v = max(hi_v, value + mag)
            hit = self._group_cache[key] = (lo_v, hi_v, 0.0, 0.0)
            return hit
        lo = hi = 0.0
        slack_lo = slack_hi = 0.0
        for c, _, a in members:
            l, h = (c * self.lo[a], c * self.hi[a]) if c > 0 else (c * self.hi[a], c * self.lo[a])
            lo += l
            hi += h
            slack_lo += abs(l) if math.isfinite(l) else 0.0
            slack_hi += abs(h) if math.isfinite(h) else 0.0
        return lo, hi, slack_lo, slack_hi

    # ------------------------------------------------------------------ building
    def build(self) -> "NormalForm":
        module = self.module
        exact = self.exact
        inp = module.input
        x = Unit(0, "X", [], [])
        self.units.append(x)
        x.atoms = self._new_atoms(0, inp.dim)
        lower = vector_values(inp.attrs["lower"], False)
        upper = vector_values(inp.attrs["upper"], False)
        for i, a in enumerate(x.atoms):
            self.lo[a], self.hi[a] = float(lower[i]), float(upper[i])
            self.origin[a] = (inp, i, 1)
        one = Fraction(1) if exact else 1.0
        values = self.values
        values[id(inp)] = [{a: one} for a in x.atoms]
        handlers = {"linear": self._linear, "slice": self._slice, "concat": self._concat, "relu": self._relu,
                    "multi": self._multi, "linstate": self._linstate}
        for op in module.ops:
            if op.kind == "input":
                if op is not inp:
                    raise PassError(f"debranch: {op.describe()}: a module has exactly one input op")
                continue
            handler = handlers.get(op.kind)
            if handler is None:
                raise PassError(f"debranch: {op.describe()}: only core ops (linear, relu, linstate, concat, multi, "
                                f"slice) can be debranched, found {op.kind!r}")
            values[id(op)] = handler(op, [values[id(o)] for o in op.operands])
        self.output_rows = [self._held(row) for row in values[id(module.output)]]
        return self

    def _linear(self, op, ins):
        (rows,) = ins
        a = matrix_rows(op.attrs["A"], self.exact)
        b = constant_values(op.attrs["b"], self.exact)
        out = []
        for i, ar in enumerate(a):
            if len(ar) == 1 and b[i] == 0:
                ((j, c),) = ar.items()
                out.append(rows[j] if c == 1 else self._scaled(rows[j], c))  # selections, scalings: no new sum
            else:
                out.append(self._combined([(c, rows[j]) for j, c in ar.items()], b[i]))
        return out

    def _slice(self, op, ins):
        return ins[0][op.attrs["start"]:op.attrs["end"]]

    def _concat(self, op, ins):
        out = []
        for rows in ins:
            out.extend(rows)
        return out

    def _relu(self, op, ins):
        (rows,) = ins
        out = []
        for i, row in enumerate(rows):
            if is_constant(row):
                c = row.get(CONST, 0)
                out.append({CONST: c} if c > 0 else {})
                continue
            lo, hi = self.bounds(row)
            if lo >= 0 and (id(op), i) not in self.paired_linear_relus:
                if not self.exact:
                    self._linear_relus.append((id(op), i, row))
                out.append(row)
                continue
            if hi <= 0:
                out.append({})
                continue
            s, nrow, key = self._unit_row(self._held(row), signed=False)
            key = ("R", key, s) if key in self.scales_apart else ("R", key)
            unit = self._cse.get(key)
            if unit is not None and not self.exact and s != self.origin[unit.atoms[0]][2]:
                self._scale_merges[key[1]] = unit.atoms[0]
            if unit is None:
                unit = Unit(len(self.units), "R", [], [nrow])
                self._keep_exact_constant(row, s, nrow)
                self.units.append(unit)
                (a,) = unit.atoms = self._new_atoms(unit.index, 1)
                nlo, nhi = self.bounds(nrow)
                self.lo[a], self.hi[a] = max(0.0, nlo), max(0.0, nhi)
                self.origin[a] = (op, i, s)
                direction = {k: v for k, v in nrow.items() if k != CONST}
                self.rgroup[a] = (row_key(direction), nrow.get(CONST, 0))
                self._cse[key] = unit
            out.append({unit.atoms[0]: s})
        return out

    def _multi(self, op, ins):
        (rows,) = ins
        h = len(rows) // 2
        out = []
        for i in range(h):
            left, right = rows[i], rows[h + i]
            if not left or not right:
                out.append({})
                continue
            if is_constant(left):
                out.append(self._scaled(right, left[CONST]))
                continue
            if is_constant(right):
                out.append(self._scaled(left, right[CONST]))
                continue
            sl, nl, kl = self._unit_row(self._held(left), signed=True)
            sr, nr, kr = self._unit_row(self._held(right), signed=True)
            if kr < kl:
                kl, kr, nl, nr = kr, kl, nr, nl
            key = ("M", kl, kr)
            unit = self._cse.get(key)
            if unit is None:
                unit = Unit(len(self.units), "M", [], [nl, nr])
                self.units.append(unit)
                (a,) = unit.atoms = self._new_atoms(unit.index, 1)
                l1, h1 = self.bounds(nl)
                l2, h2 = self.bounds(nr)
                self.lo[a], self.hi[a] = interval_square(l1, h1) if kl == kr else interval_product(l1, h1, l2, h2)
                self.origin[a] = (op, i, sl * sr)
                self._cse[key] = unit
            out.append({unit.atoms[0]: sl * sr})
        return out

    def _linstate(self, op, ins):
        (rows,) = ins
        exact = self.exact
        a_rows = matrix_rows(op.attrs["A"], exact)
        b_rows = matrix_rows(op.attrs["B"], exact)
        bias = constant_values(op.attrs["bias"], exact)
        init = vector_values(op.attrs["init"], exact)
        k = op.dim
        in_rows = [self._held(self._combined([(c, rows[j]) for j, c in br.items()], bias[i]))
                   for i, br in enumerate(b_rows)]
        # weakly connected blocks of A
        parent = list(range(k))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, ar in enumerate(a_rows):
            for j in ar:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[ri] = rj
        blocks: dict = {}
        for i in range(k):
            blocks.setdefault(find(i), []).append(i)
        out: list = [None] * k
        for coords in blocks.values():
            pos = {c: n for n, c in enumerate(coords)}
            block_a = [{pos[j]: v for j, v in a_rows[c].items()} for c in coords]
            if self.fold_memoryless_states and not any(block_a):
                for c in coords:
                    out[c] = in_rows[c]
                continue
            block_rows = [in_rows[c] for c in coords]
            block_init = [init[c] for c in coords]
            key = ("S", tuple(row_key(r) for r in block_a), tuple(row_key(r) for r in block_rows),
                   tuple(block_init))
            unit = self._cse.get(key)
            if unit is None:
                unit = Unit(len(self.units), "S", [], block_rows, A=block_a, init=block_init)
                self.units.append(unit)
                unit.atoms = self._new_atoms(unit.index, len(coords))
                for n, c in enumerate(coords):
                    self.origin[unit.atoms[n]] = (op, c, 1)
                self._state_bounds(unit)
                self._cse[key] = unit
            one = Fraction(1) if exact else 1.0
            for n, c in enumerate(coords):
                out[c] = {unit.atoms[n]: one}
        return out

    def _state_bounds(self, unit: Unit) -> None:
        """Interval invariant of a state block: the hull iteration ``J ← J ∪ (A·J + U)`` from ``init`` until
        ``A·J + U ⊆ J``; if it does not close, a widened candidate, then infinite bounds where it grows."""
        k = len(unit.atoms)
        in_b = [self.bounds(r) for r in unit.rows]
        a_rows = [[(j, float(v)) for j, v in ar.items()] for ar in unit.A]
        init_lo, init_hi = [], []
        for v in unit.init:  # an exact init that is not a float lies between two floats
            f = float(v)
            exact_float = not isinstance(v, Fraction) or Fraction(f) == v
            init_lo.append(f if exact_float else math.nextafter(f, -_INF))
            init_hi.append(f if exact_float else math.nextafter(f, _INF))

        def step(lo, hi):
            """``A·J + U`` with the magnitude summed into each end (for the rounding margin)."""
            nlo, nhi, mlo, mhi = [], [], [], []
            for i in range(k):
                l, h = in_b[i]
                ml, mh = abs(l) if math.isfinite(l) else 0.0, abs(h) if math.isfinite(h) else 0.0
                for j, v in a_rows[i]:
                    tl = v * (lo[j] if v > 0 else hi[j])
                    th = v * (hi[j] if v > 0 else lo[j])
                    if (lo[j] if v > 0 else hi[j]) != 0:
                        l += tl
                        ml += abs(tl) if math.isfinite(tl) else 0.0
                    if (hi[j] if v > 0 else lo[j]) != 0:
                        h += th
                        mh += abs(th) if math.isfinite(th) else 0.0
                nlo.append(-_INF if math.isnan(l) else l)
                nhi.append(_INF if math.isnan(h) else h)
                mlo.append(ml)
                mhi.append(mh)
            return nlo, nhi, mlo, mhi

        def closed(lo, hi):
            """Whether ``A·J + U ⊆ J`` holds even after widening the image by its rounding margin (sound)."""
            nlo, nhi, mlo, mhi = step(lo, hi)
            ok = all(nlo[i] - _REL_SLACK * mlo[i] >= lo[i] and nhi[i] + _REL_SLACK * mhi[i] <= hi[i]
                     for i in range(k))
            return ok, nlo, nhi

        lo, hi = init_lo, init_hi
        result = None
        moved_lo = moved_hi = [True] * k
        for _ in range(10):
            ok, nlo, nhi = closed(lo, hi)
            if ok:
                result = (lo, hi)
                break
            new_lo = [min(a, b) for a, b in zip(lo, nlo)]
            new_hi = [max(a, b) for a, b in zip(hi, nhi)]
            moved_lo = [a != b for a, b in zip(lo, new_lo)]
            moved_hi = [a != b for a, b in zip(hi, new_hi)]
            lo, hi = new_lo, new_hi
        if result is None:  # widen the ends that were still moving by a quarter of the width
            width = [h - l for l, h in zip(lo, hi)]
            cand_lo = [l - 0.25 * w - 1e-9 * (abs(l) + 1) if m else l for l, w, m in zip(lo, width, moved_lo)]
            cand_hi = [h + 0.25 * w + 1e-9 * (abs(h) + 1) if m else h for h, w, m in zip(hi, width, moved_hi)]
            ok, _, _ = closed(cand_lo, cand_hi)
            if ok:
                result = (cand_lo, cand_hi)
        if result is None:
            for _ in range(4 * k + 4):
                ok, nlo, nhi = closed(lo, hi)
                if ok:
                    result = (lo, hi)
                    break
                lo = [-_INF if n < l else l for l, n in zip(lo, nlo)]
                hi = [_INF if n > h else h for h, n in zip(hi, nhi)]
        if result is None:
            result = ([-_INF] * k, [_INF] * k)
        lo, hi = result  # sound as it is: J holds init and A·J + U ⊆ J with the rounding margin
        for n, a in enumerate(unit.atoms):
            self.lo[a] = lo[n]
            self.hi[a] = hi[n]

    # ------------------------------------------------------------------ liveness
    def prune(self) -> "NormalForm":
        """Drop units no output depends on; trim state blocks to the coordinates that are read (closed under
        ``A``: a live coordinate keeps every coordinate its update reads)."""
        live_atoms = set()
        for row in self.output_rows:
            live_atoms.update(a for a in row if a != CONST)
        kept = []
        for unit in reversed(self.units[1:]):
            if unit.kind == "S":
                live = [n for n, a in enumerate(unit.atoms) if a in live_atoms]
                if not live:
                    continue
                seen = set(live)
                stack = list(live)
                while stack:
                    i = stack.pop()
                    for j in unit.A[i]:
                        if j not in seen:
                            seen.add(j)
                            stack.append(j)
                keep = sorted(seen)
                if len(keep) < len(unit.atoms):
                    pos = {c: n for n, c in enumerate(keep)}
                    unit.A = [{pos[j]: v for j, v in unit.A[c].items()} for c in keep]
                    unit.rows = [unit.rows[c] for c in keep]
                    unit.init = [unit.init[c] for c in keep]
                    unit.atoms = [unit.atoms[c] for c in keep]
                    for n, a in enumerate(unit.atoms):
                        self.atom_local[a] = n
            elif unit.atoms[0] not in live_atoms:
                continue
            for row in unit.rows:
                live_atoms.update(a for a in row if a != CONST)
            kept.append(unit)
        kept.append(self.units[0])
        kept.reverse()
        for n, unit in enumerate(kept):
            unit.index = n
            for a in unit.atoms:
                self.atom_unit[a] = n
        self.units = kept
        return self


def build_normal_form(module, *, exact: bool = False, fold_memoryless_states: bool = False,
                      shift_carriers: bool = True) -> NormalForm:
    """The pruned normal form of ``module``; built again while a build finds a ReLU proven linear with a partner
    (:meth:`NormalForm.linear_relus_with_a_partner`: kept a unit) or a ReLU row that ops at two scales share and
    λ reads (:meth:`NormalForm.relus_at_two_scales`: one unit per scale), at most ``_BUILDS`` times."""
    options = dict(exact=exact, fold_memoryless_states=fold_memoryless_states, shift_carriers=shift_carriers)
    paired = apart = frozenset()
    for _ in range(_BUILDS):
        nf = NormalForm(module, paired_linear_relus=paired, scales_apart=apart, **options).build()
        more_paired, more_apart = paired | nf.linear_relus_with_a_partner(), apart | nf.relus_at_two_scales()
        if more_paired == paired and more_apart == apart:
            break
        paired, apart = more_paired, more_apart
    return nf.prune()
