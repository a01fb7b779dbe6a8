"""Stage scheduling, carriers and emission of the layer form (compile.md §7.2–§7.3).

Input: a pruned :class:`~lsrl.passes.debranch_affine.NormalForm`.  Output: the chain module.

**Stages.**  Every unit gets a stage of its kind: ``S`` (LinState blocks), ``R`` (ReLU coordinates) or ``M``
(Multi coordinates); stage 0 is the input.  Layer ``ℓ`` = one ``S`` stage followed by ``R``/``M`` stages.  A
unit's layer lies between its ASAP layer (``S``: one more than its latest dependency; ``R``/``M``: the latest
dependency's, at least 1) and its ALAP layer (the mirror image from the consumers); the number of layers is
the longest chain of dependent state blocks (at least 1).  Inside a layer the ``R``/``M`` units are list
scheduled: of the ready units, the kind of the one with the longest remaining in-layer chain opens the next
stage, which takes every ready unit of that kind (a mixed level costs two stages, but units of the kind
not chosen wait there for a later stage of their kind, so chains ``R R M`` and ``M`` share one ``M``
stage).  Units are then placed at the earliest (ASAP) or the latest (ALAP) stage of their kind that their
dependencies and consumers allow.

**Carriers.**  What stage ``k`` must output is computed backwards from the readout: the rows read by stage
``k+1`` (its units' rows and its carriers) restricted to atoms produced *before* stage ``k`` are the
*functionals* stage ``k`` carries.  Functionals equal up to a scale are one; then, per connected component
of the functional–atom incidence graph, the component is carried either as its functionals or as its
atoms, whichever costs fewer slots — a difference used by every consumer costs one slot, not two.  Slot
cost: 1 in ``S`` (passthrough state ``A = 0``) and ``M`` (``v ⊙ 1``, the 1 from the bias) stages; in ``R``
stages 1 if the value (or its negation) is provably non-negative (``ReLU(v) = v``), else 2 (``v⁺, v⁻``).

**Emission.**  Each need row is expressed over the stage's *values* (its units' atoms and its carried
functionals), then decoded to output slots (``v = v⁺ − v⁻`` for split carriers) — that is the next
stage's input matrix.  Constants are biases everywhere.  ``S`` → one ``linstate`` (block-diagonal ``A``,
passthrough rows ``A = 0``), ``R`` → ``linear`` + ``relu`` (the linear is left out when it is the
identity), ``M`` → ``linear`` (left halves, then right halves) + ``multi``, output → ``linear`` readout
(left out when the identity).
"""
from __future__ import annotations

import math

from fractions import Fraction

import numpy as np

from ..errors import PassError
from ..ir.core import Module, Op
from ..ir.error_free import fold_products
from ..ir.matrix import Matrix, Vector
from .debranch_affine import CONST, NormalForm, normalise, row_key
from .materialize_steps import LARGE_BIAS
from .exact_shadow import layout_coefficient, layout_number
from .rescale_units import snap_number


# A signed R-stage carrier with a lower bound ≥ −SHIFT_LIMIT (or an upper bound ≤ SHIFT_LIMIT) is carried
# shifted into one non-negative slot; beyond it the float rounding of the shift could matter, so it is split.
SHIFT_LIMIT = 1e6
# A signed R-stage carrier that a later ReLU reads where it turns at |value| = k is split where its shift is
# beyond FINE_SHIFT·k: the slot holds the value to the shift's precision, up to FINE_SHIFT + 1 times coarser there.
FINE_SHIFT = 4
# the float normal form's biases carry its cancellations (0.0025 − 0.002499 is not 1e-6): a bound within this
# (relative) of a number of at most seven digits is taken as that number, as rescale-units takes weights — a shift
# by 998.999999999916 instead of 999 rounds every value it moves (and float32 cannot even hold it)
SHIFT_SNAP = 1e-12


def _short_shift(bound: float, unit: float) -> float:
    """A shift by ``bound`` (a lower bound ``< 0`` or an upper bound ``> 0`` of a row whose first program value has
    the coefficient ``unit``) that is short where rescale-units puts the row on its program's scale: ``bound``
    itself where it has at most seven digits; the number of program units it is where that has at most seven
    digits (within ``SHIFT_SNAP``: the bound comes from float arithmetic); else the power of two of program units
    beyond it.  A bound like ``−0.000751289221806`` (λ times the ``1e-13`` slack of a rounded step)
    rounds every value carried; ``−2⁻¹⁰`` shifts a token exactly, and at most doubles the slot's offset."""
    if float(f"{bound:.6e}") == bound:
        return bound
    program = snap_number(bound / unit, SHIFT_SNAP)
    if not math.isfinite(program):  # a unit below the bound's range (1e-310)
        return bound
    if float(f"{program:.6e}") == program:
        return program * unit  # rescale-units snaps it back (999998.999999916 program units would stay so)
    shift = math.copysign(2.0 ** math.ceil(math.log2(abs(program))), bound) * unit
    return shift if abs(shift) >= abs(bound) else 2 * shift


class Schedule:
    """Stages as ``[(kind, [unit index, ...]), ...]``, stage 0 = ``("X", [0])``, plus the layer of each stage."""

    def __init__(self, stages: list, stage_layer: list, policy: str):
        self.stages = stages
        self.stage_layer = stage_layer
        self.policy = policy


# ---------------------------------------------------------------------------- layers

def unit_graph(nf: NormalForm):
    """``(deps, consumers)``: per unit, the units its rows read and the units reading it."""
    units = nf.units
    n = len(units)
    deps = [units[u].deps(nf.atom_unit) for u in range(n)]
    consumers: list = [[] for _ in range(n)]
    for u in range(n):
        for d in deps[u]:
            consumers[d].append(u)
    return deps, consumers


def asap_layers(nf: NormalForm, deps) -> list:
    units = nf.units
    lay = [0] * len(units)
    for u in range(1, len(units)):
        m = max((lay[d] for d in deps[u]), default=0)
        lay[u] = m + 1 if units[u].kind == "S" else max(1, m)
    return lay


def place_layers(nf: NormalForm, deps, consumers, asap: list, n_layers: int,
                 s_late: bool, rm_late: bool) -> list:
    """Layers with each kind ASAP or ALAP (ALAP relative to the consumers' chosen layers)."""
    units = nf.units
    lay = list(asap)
    for u in range(len(units) - 1, 0, -1):
        late = units[u].kind == "S" and s_late or units[u].kind != "S" and rm_late
        if not late:
            continue
        latest = n_layers
        for c in consumers[u]:
            latest = min(latest, lay[c] - 1 if units[c].kind == "S" else lay[c])
        lay[u] = max(latest, asap[u])
    return lay


def build_schedule(nf: NormalForm, deps, consumers, lay: list, n_layers: int, intra_late: bool,
                   policy: str) -> Schedule:
    units = nf.units
    by_layer_s: list = [[] for _ in range(n_layers + 1)]
    by_layer_rm: list = [[] for _ in range(n_layers + 1)]
    for u in range(1, len(units)):
        (by_layer_s if units[u].kind == "S" else by_layer_rm)[lay[u]].append(u)
    stages = [("X", [0])]
    stage_layer = [0]
    for layer in range(1, n_layers + 1):
        stages.append(("S", by_layer_s[layer]))
        stage_layer.append(layer)
        for kind, members in _order_layer(units, deps, consumers, by_layer_rm[layer], intra_late):
            stages.append((kind, members))
            stage_layer.append(layer)
    return Schedule(stages, stage_layer, policy)


def _order_layer(units, deps, consumers, members: list, intra_late: bool) -> list:
    if not members:
        return []
    inside = set(members)
    in_deps = {u: [d for d in deps[u] if d in inside] for u in members}
    in_cons = {u: [c for c in consumers[u] if c in inside] for u in members}
    height = {}
    for u in sorted(members, reverse=True):  # creation order is topological
        height[u] = 1 + max((height[c] for c in in_cons[u]), default=0)
    indeg = {u: len(in_deps[u]) for u in members}
    ready = [u for u in members if indeg[u] == 0]
    seq = []
    where = {}
    while ready:
        best = max(ready, key=lambda u: (height[u], units[u].kind == "R"))
        kind = units[best].kind
        chosen = [u for u in ready if units[u].kind == kind]
        rest = [u for u in ready if units[u].kind != kind]
        for u in chosen:
            where[u] = len(seq)
        seq.append((kind, chosen))
        for u in chosen:
            for c in in_cons[u]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    rest.append(c)
        ready = rest
    if intra_late:
        last = len(seq) - 1
        for u in sorted(members, reverse=True):
            latest = min((where[c] - 1 for c in in_cons[u]), default=last)
            kind = units[u].kind
            while seq[latest][0] != kind:
                latest -= 1
            where[u] = max(latest, where[u])
        seq = [(kind, []) for kind, _ in seq]
        for u in sorted(members):
            seq[where[u]][1].append(u)
        seq = [(kind, m) for kind, m in seq if m]
        # merge neighbours of one kind that emptied stages may have made adjacent
        merged = []
        for kind, m in seq:
            if merged and merged[-1][0] == kind and not _reads_any(units, deps, m, merged[-1][1]):
                merged[-1][1].extend(m)
            else:
                merged.append((kind, list(m)))
        seq = merged
    return seq


def _reads_any(units, deps, later, earlier) -> bool:
    earlier = set(earlier)
    return any(d in earlier for u in later for d in deps[u])


# ---------------------------------------------------------------------------- carriers

class StagePlan:
    """The values and slots of one stage's output."""

    __slots__ = ("kind", "units", "unit_atoms", "carriers", "carrier_keys", "carrier_sign", "carrier_split",
                 "carrier_offset", "carrier_kinks", "slots", "value_slots", "value_offsets", "need", "need_keys",
                 "exprs")

    def __init__(self, kind, units):
        self.kind = kind
        self.units = units
        self.unit_atoms: list = []  # atoms output by this stage's units, in slot order
        self.carriers: list = []  # functionals (rows without const) carried through this stage
        self.carrier_sign: list = []  # R stages: ±1 so that sign·f ≥ 0 (one slot); 0 otherwise
        self.carrier_split: list = []  # R stages: carried as (f⁺, f⁻)
        self.carrier_offset: list = []  # R stages: the slot holds sign·(f − offset)
        self.carrier_kinks: list = []  # per carrier: the smallest |f| at which a later ReLU row turns, or None
        self.slots = 0
        self.value_slots: list = []  # per value (unit atoms, then carriers): [(slot, coef), ...]
        self.value_offsets: list = []  # per value: value = Σ coef·slot + offset
        self.need: list = []  # rows the *next* stage reads from this stage's output
        self.need_keys: list = []  # row keys where known (the next stage's carriers), else None
        self.exprs: list = []  # per need row: ({value index: coef}, const)


class Plan:
    def __init__(self, schedule: Schedule, stages: list, widths: list, nnz: int):
        self.schedule = schedule
        self.stages = stages
        self.widths = widths
        self.nnz = nnz

    @property
    def cost(self):
        return (max(self.widths), self.nnz, len(self.widths))


def _stage_rows(nf: NormalForm, kind: str, members: list) -> list:
    """The rows a stage reads, in emission order: R: one per unit; M: lefts then rights; S: block rows."""
    units = nf.units
    if kind == "M":
        return [units[u].rows[0] for u in members] + [units[u].rows[1] for u in members]
    rows = []
    for u in members:
        rows.extend(units[u].rows)
    return rows


def plan_carriers(nf: NormalForm, schedule: Schedule, memo: dict | None = None) -> Plan:
    """The carriers and slots of every stage of ``schedule``.

    A stage's plan depends only on the stages from it to the readout (its need rows come from the next stage),
    so schedules that end alike share those stages' plans: ``memo`` (one dict for the schedules of one normal
    form) keeps them by that suffix.  The shared :class:`StagePlan` objects are not modified afterwards."""
    units = nf.units
    exact = nf.exact
    stages = schedule.stages
    memo = {} if memo is None else memo
    plans: list = [None] * len(stages)
    need, need_keys = list(nf.output_rows), []
    # the next stage's kind, how many of the need rows are its units', its carriers' kinks; first the readout's
    readers = (None, len(need), [])
    suffix = None  # the memo's id of the stages after the current one
    for k in range(len(stages) - 1, -1, -1):
        kind, members = stages[k]
        key = (kind, tuple(members), suffix)
        hit = memo.get(key)
        if hit is None:
            plan = StagePlan(kind, members)
            for u in members:
                plan.unit_atoms.extend(units[u].atoms)
            plan.need, plan.need_keys = need, need_keys
            _choose_carriers(plan, nf, exact, readers)
            hit = memo[key] = (len(memo), plan)
        suffix, plan = hit
        plans[k] = plan
        if k > 0:
            unit_rows = _stage_rows(nf, kind, members)
            need = unit_rows + plan.carriers
            need_keys = [None] * len(unit_rows) + plan.carrier_keys
            readers = (kind, len(unit_rows), plan.carrier_kinks)
    widths, nnz = _measure(nf, plans)
    return Plan(schedule, plans, widths, nnz)


def _choose_carriers(plan: StagePlan, nf: NormalForm, exact: bool, readers: tuple) -> None:
    """Decide what the stage of ``plan`` carries for the next one, express its need rows and lay out its slots;
    ``readers``: the next stage's kind, how many of the need rows are its units' rows, and its carriers' kinks."""
    one = Fraction(1) if exact else 1.0
    n_own = len(plan.unit_atoms)
    funcs, func_keys, row_parts = _split_need_rows(plan, exact, nf.one_atom)
    comp_funcs, comp_atoms = _components(funcs)
    # functionals whose shift would be folded into a λ-sized constant: their own, or a reader's
    beside_large = {fid for _, const, fid, *_ in row_parts if fid is not None and abs(const) >= LARGE_BIAS}
    beside_large.update(fid for fid, f in enumerate(funcs) if abs(f.get(CONST, 0)) >= LARGE_BIAS)
    kinks = _reader_kinks(row_parts, *readers)
    func_carrier, atom_carrier = _pick_carriers(nf, plan, funcs, func_keys, comp_funcs, comp_atoms, one, exact,
                                                beside_large, kinks)
    plan.exprs = _express_need_rows(row_parts, n_own, func_carrier, atom_carrier)
    _lay_out_slots(plan, n_own, one)


def _reader_kinks(row_parts: list, reader_kind: str | None, n_unit_rows: int, carrier_kinks: list) -> dict:
    """Per functional, the smallest |value| at which a ReLU row reading it turns: a ReLU of the next stage that
    reads the functional alone (``s·f + c`` turns at ``|c/s|``), or one that reads a carrier of the next stage
    made of it, wherever that carrier is read."""
    kinks: dict = {}
    for n, (own, const, fid, s, _, share) in enumerate(row_parts):
        if fid is None or own:  # beside the stage's own values, the row turns wherever they put it
            continue
        if share is not None:  # the constant-1 state's share is part of the row's constant
            const = const + share[1]
        if n < n_unit_rows:
            if reader_kind != "R":
                continue
            kink = abs(float(const) / float(s))
        else:
            later = carrier_kinks[n - n_unit_rows]
            if later is None or const != 0:
                continue
            kink = later / abs(float(s))
        kinks[fid] = min(kinks.get(fid, math.inf), kink)
    return kinks


def _split_need_rows(plan: StagePlan, exact: bool, one_atom: int | None):
    """Split each need row into this stage's own atoms, its constant and a functional over earlier atoms
    (a need row reads no atom of a later stage) — and the share of the constant-1 state ``one_atom``, which is
    carried as a value of its own: merged into a functional (``x − 8·10⁻⁷·one``), it gave the carrier a lower
    bound below 0, and the shift by 2⁻²⁰ that it then took rounded in the reader's λ-sized bias, the rounding the
    share is there to keep out.

    Returns ``(funcs, func_keys, row_parts)``: the distinct functionals (equal up to a scale are one) with
    their keys, and per need row ``(own {value: coef}, const, func id or None, scale, past row, share)``,
    ``share`` ``(func id, coefficient)`` of the constant-1 state or None."""
    own_index = {a: i for i, a in enumerate(plan.unit_atoms)}
    func_key: dict = {}
    funcs: list = []
    func_keys: list = []
    row_parts: list = []
    keys = plan.need_keys
    def functional_id(key, nrow) -> int:
        fid = func_key.get(key)
        if fid is None:
            fid = func_key[key] = len(funcs)
            funcs.append(nrow)
            func_keys.append(key)
        return fid

    for n, row in enumerate(plan.need):
        own = {}
        past = {}
        const = 0
        for a, c in row.items():
            if a == CONST:
                const = c
            elif a in own_index:
                own[own_index[a]] = c
            else:
                past[a] = c
        share = None
        if one_atom in past:
            share = (functional_id(((one_atom, 1.0),), {one_atom: 1.0}), past.pop(one_atom))
        if past:
            key = keys[n] if not own and n < len(keys) else None
            if _cancels_its_large_terms(past, const):
                # carried with its constant, unscaled: the reader's ``x + λ·c − λ`` keeps the ``−λ`` that cancels
                # ``λ·c`` beside the terms (materialize-steps then folds the two); carried alone, ``x + λ·c`` rounds
                # at λ and float32 loses ``x`` before the reader adds ``−λ`` (an exact layer form too: its float
                # runs would)
                past[CONST] = const
                const = 0
                s, nrow = 1, past
                key = row_key(past)
            elif key is not None:  # a carried functional, already normalised
                s, nrow = 1, past
            else:
                s, nrow = normalise(past, exact, signed=True)
                key = row_key(nrow)
            row_parts.append((own, const, functional_id(key, nrow), s, past, share))
        else:
            row_parts.append((own, const, None, 0, None, share))
    return funcs, func_keys, row_parts


def _cancels_its_large_terms(past: dict, const) -> bool:
    """Whether a row's constant and some of its coefficients are λ-sized beside its smallest coefficient (relative
    sizes: a unit's row is normalised): ``x + λ·c − λ``."""
    sizes = [abs(c) for c in past.values()]
    large = LARGE_BIAS * min(sizes)
    return abs(const) >= large and max(sizes) >= large


def _components(funcs: list):
    """Connected components of the functional–atom incidence graph: ``(root -> [fid], root -> [atom])``."""
    parent: dict = {}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for f in funcs:
        atoms = [a for a in f if a != CONST]
        for a in atoms:
            parent.setdefault(a, a)
        r0 = find(atoms[0])
        for a in atoms[1:]:
            ra = find(a)
            if ra != r0:
                parent[ra] = r0
    comp_funcs: dict = {}
    for fid, f in enumerate(funcs):
        comp_funcs.setdefault(find(next(a for a in f if a != CONST)), []).append(fid)
    comp_atoms: dict = {}
    for a in parent:
        comp_atoms.setdefault(find(a), []).append(a)
    return comp_funcs, comp_atoms


def _carrier_weight(nf: NormalForm, kind: str, key, row, beside_large: bool = False,
                    kink: float | None = None) -> tuple:
    """(slots, sign, offset) of a carrier: in R stages the slot holds ``sign·(f − offset)`` ≥ 0 — the value
    itself when it is one-signed, shifted by a bound when it has a moderate one, else a ± split.

    A signed carrier that a later ReLU reads where it turns at ``|f| = kink`` is split where the shift is beyond
    ``FINE_SHIFT·kink``: the slot holds ``f − offset`` to the offset's precision, not ``f``'s, and the ReLU
    passes that on (``f_larger(x, 0)`` of ``x ∈ [−3, 3]``: its second ReLU ``x − 0.001`` read from ``x + 3``
    became ``(x + 3) − 3.001``, which float32 holds 7·10⁻⁸ off, and the step passed it on times 1000).

    A signed carrier ``beside_large`` (its constant, or a reader's, λ-sized) is split: the reader would fold the
    shift into that constant, ``0.7x + 1 − λ(1 − c)`` reading ``x + 2`` gets ``−λ + 1 − 1.4``, which float64
    holds only to λ's ulp, where the program computes ``0.7x + 1`` (emission refuses such a fold in float mode:
    :func:`_shifted`)."""
    if kind != "R":
        return 1, 0, 0
    sign_cache = nf.sign_cache
    if beside_large:
        key = (key, "beside λ")
    hit = sign_cache.get(key)
    if hit is None:
        lo, hi = nf.bounds(row)
        if lo < 0 < hi:  # the float margin may hide a one-signed row; a shift is by the exact bound
            lo, hi = (snap_number(v, SHIFT_SNAP) for v in nf.exact_bounds(row))
        if lo >= 0:
            hit = (1, 1, 0)
        elif hi <= 0:
            hit = (1, -1, 0)
        elif beside_large:
            hit = (2, 0, 0)
        elif nf.shift_carriers and -SHIFT_LIMIT <= lo:
            hit = (1, 1, _short_shift(lo, _program_unit(nf, row)))
        elif nf.shift_carriers and hi <= SHIFT_LIMIT:
            hit = (1, -1, _short_shift(hi, _program_unit(nf, row)))
        else:
            hit = (2, 0, 0)
        sign_cache[key] = hit
    if hit[0] == 1 and kink is not None and abs(float(hit[2])) > FINE_SHIFT * kink:
        return 2, 0, 0
    return hit


def _program_unit(nf: NormalForm, row: dict) -> float:
    """The coefficient of the row's first program value (the scale rescale-units gives its slot), 1 without one."""
    atoms = sorted(a for a in row if a != CONST)
    scale = float(nf.origin[atoms[0]][2]) if atoms else 0.0
    unit = abs(float(row[atoms[0]]) / scale) if scale != 0 else 0.0
    return unit if math.isfinite(unit) and unit > 0 else 1.0


def _reads_a_group(nf: NormalForm, funcs) -> bool:
    """Whether a functional reads two ReLUs of one direction (a step's pair).  Such a component is carried as its
    functionals even where its atoms take fewer slots: carried one by one, the pair reaches its reader as two
    values whose rows differ, and materialize-steps no longer finds the group to read through its clamp (a step
    whose units reach 1000s, read by λ, rounds at 1000·λ); carried as the functionals, the stage's own reader
    takes the difference."""
    rgroup = nf.rgroup
    for f in funcs:
        seen = set()
        for a in f:
            g = rgroup[a] if a != CONST else None
            if g is not None:
                if g[0] in seen:
                    return True
                seen.add(g[0])
    return False


def _pick_carriers(nf: NormalForm, plan: StagePlan, funcs: list, func_keys: list, comp_funcs: dict,
                   comp_atoms: dict, one, exact: bool, beside_large: set, kinks: dict):
    """Carry each component as its functionals or as its atoms, whichever costs fewer slots.

    Sets the plan's ``carrier*`` fields; returns ``(fid -> carrier, atom -> carrier)`` for the mode taken."""
    kind = plan.kind
    carriers, carrier_keys, signs, splits, offsets, carrier_kinks = [], [], [], [], [], []
    func_carrier: dict = {}
    atom_carrier: dict = {}

    def add(carrier, key, weight, kink):
        """Append one carrier with its weight's sign, split flag and offset (in the plan's domain), and its kink."""
        w, sign, off = weight
        carrier_kinks.append(kink)
        carriers.append(carrier)
        carrier_keys.append(key)
        signs.append(sign)
        splits.append(w == 2)
        offsets.append(Fraction(off) if exact else float(off))

    for root in sorted(comp_funcs, key=lambda r: min(comp_funcs[r])):
        fids = comp_funcs[root]
        atoms = sorted(comp_atoms[root])
        fw = [_carrier_weight(nf, kind, func_keys[f], funcs[f], f in beside_large, kinks.get(f)) for f in fids]
        large = any(f in beside_large for f in fids)
        # an atom of the component is read wherever its functionals are (an approximation: each with its weight)
        kink = min((kinks[f] for f in fids if f in kinks), default=None)
        aw = [_carrier_weight(nf, kind, a, {a: one}, large, kink) for a in atoms]
        if sum(w[0] for w in aw) < sum(w[0] for w in fw) and not _reads_a_group(nf, (funcs[f] for f in fids)):
            for a, weight in zip(atoms, aw):
                atom_carrier[a] = len(carriers)
                add({a: one}, ((a, one),), weight, kink)
        else:
            for f, weight in zip(fids, fw):
                func_carrier[f] = len(carriers)
                add(funcs[f], func_keys[f], weight, kinks.get(f))
    plan.carriers = carriers
    plan.carrier_keys = carrier_keys
    plan.carrier_sign = signs
    plan.carrier_split = splits
    plan.carrier_offset = offsets
    plan.carrier_kinks = carrier_kinks
    return func_carrier, atom_carrier


def _express_need_rows(row_parts: list, n_own: int, func_carrier: dict, atom_carrier: dict) -> list:
    """Each need row over the stage's values (own atoms, then carriers): ``[({value: coef}, const), ...]``."""
    exprs = []
    for own, const, fid, s, past, share in row_parts:
        expr = dict(own)
        if fid is not None:
            c = func_carrier.get(fid)
            if c is not None:
                expr[n_own + c] = s
            else:
                for a, v in past.items():
                    if a == CONST:
                        const = v
                    else:
                        expr[n_own + atom_carrier[a]] = v
        if share is not None:  # its component is the state alone: one slot either way, carried as the functional
            one_fid, coefficient = share
            slot = n_own + func_carrier[one_fid]
            expr[slot] = expr.get(slot, 0) + coefficient
        exprs.append((expr, const))
    return exprs


def _lay_out_slots(plan: StagePlan, n_own: int, one) -> None:
    """The output slots of each value: one per own atom and carrier, two for a split R-stage carrier."""
    kind = plan.kind
    value_slots = [[(i, one)] for i in range(n_own)]
    value_offsets = [0] * n_own
    slot = n_own
    for c in range(len(plan.carriers)):
        if kind == "R" and plan.carrier_split[c]:
            value_slots.append([(slot, one), (slot + 1, -one)])
            slot += 2
        elif kind == "R" and plan.carrier_sign[c] == -1:
            value_slots.append([(slot, -one)])
            slot += 1
        else:
            value_slots.append([(slot, one)])
            slot += 1
        value_offsets.append(plan.carrier_offset[c])
    plan.value_slots = value_slots
    plan.value_offsets = value_offsets
    plan.slots = slot


def _carrier_shifts(plan: StagePlan, expr: dict) -> list:
    """``(coefficient, offset)`` of each shifted carrier a need row's ``expr`` reads (its constant adds them)."""
    offsets = plan.value_offsets
    return [(c, offsets[v]) for v, c in expr.items() if offsets[v] != 0]


def _decoded(plan: StagePlan, i: int):
    """Need row ``i`` of ``plan`` over its output slots: ``(row, constant)``."""
    expr, const = plan.exprs[i]
    out = {}
    for v, c in expr.items():
        for slot, sc in plan.value_slots[v]:
            out[slot] = out.get(slot, 0) + c * sc
    shifts = _carrier_shifts(plan, expr)
    return {k: v for k, v in out.items() if v != 0}, _shifted(const, shifts) if shifts else const


def _exact_bias(plan: StagePlan, i: int, held: Fraction) -> Fraction | None:
    """The exact bias of need row ``i`` of ``plan`` (a ReLU unit's row whose exact constant ``held`` the normal form
    rounded), with the carriers' shifts: None where the row's constant went to a carried functional or float64
    holds the sum."""
    expr, const = plan.exprs[i]
    if const != float(held):
        return None
    value = held + sum(Fraction(c) * Fraction(o) for c, o in _carrier_shifts(plan, expr))
    return None if Fraction(float(value)) == value else value


class LargeConstantRounds(ArithmeticError):
    """A float-mode emission met a λ-sized constant that float64 cannot hold (:func:`_shifted`)."""


def _shifted(const, shifts: list):
    """``const + Σ c·offset`` over the carriers' shifts, rounded once in float mode: added one by one,
    ``−0.001 + 3 − 3`` (a step's offset beside two carriers shifted by 3) left ``−0.00099999999999989``, and the
    step's clamp, read by λ, answered 1.1 where the program answers 0.

    A λ-sized sum (≥ 2^24) that float64 cannot hold raises :class:`LargeConstantRounds`: ``10¹⁰·x + 0.3`` with
    ``x`` carried shifted by 2 has the constant ``0.3 − 2·10¹⁰``, which float64 keeps only to its ulp (4·10⁻⁶), so
    the layer form would be off the program by up to 2·10⁻⁶ (debranch then works in rationals; a λ-sized constant
    of the reader's own keeps a signed carrier from shifting: :func:`_carrier_weight`)."""
    if isinstance(shifts[0][1], Fraction):  # exact mode: rationals throughout (a float coefficient too)
        return const + sum(Fraction(c) * o for c, o in shifts)
    if type(const) is float and all(type(c) is float for c, _ in shifts):
        try:
            total, rest = fold_products(const, shifts)
            if not rest or abs(total) < LARGE_BIAS:
                return total
        except ArithmeticError:  # a part below float64's subnormals: the rationals below
            pass
    value = Fraction(const) + sum(Fraction(c) * Fraction(o) for c, o in shifts)
    rounded = float(value)
    if abs(rounded) >= LARGE_BIAS and Fraction(rounded) != value:
        raise LargeConstantRounds(value)
    return rounded


def _split_rows(before: StagePlan, i: int, row: dict):
    """The ``f`` and ``−f`` pre-activation rows of a split carrier whose need row is ``i`` of ``before``.

    When ``f`` is ``s`` times a value that ``before`` (an R stage) already holds split as ``(p, m)``, the rows
    read ``s·p`` and ``s·m`` (swapped for ``s < 0``) instead of ``±s·(p − m)``: ``p·m = 0``, so
    ``ReLU(s(p − m)) = s·p`` exactly — one entry per row instead of two."""
    expr, const = before.exprs[i]
    if const == 0 and len(expr) == 1 and before.kind == "R":
        ((v, sc),) = expr.items()
        slots = before.value_slots[v]
        if len(slots) == 2:
            (p, _), (m, _) = slots
            return ({p: sc}, {m: sc}) if sc > 0 else ({m: -sc}, {p: -sc})
    return row, {j: -x for j, x in row.items()}


def _measure(nf: NormalForm, plans: list):
    """Widths of the chain ops (input excluded) and an nnz estimate (matrix entries + non-zero biases)."""
    widths = []
    nnz = 0
    for k in range(1, len(plans)):
        prev, plan = plans[k - 1], plans[k]
        slots = max(1, plan.slots)
        entries = sum(len(e) + (1 if c != 0 else 0) for e, c in prev.exprs)
        if plan.kind == "S":
            widths.append(slots)
            nnz += entries + sum(len(a) for u in plan.units for a in nf.units[u].A)
        elif plan.kind == "R":
            widths.extend([slots, slots])
            n_units = len(plan.unit_atoms)
            for c, split in enumerate(plan.carrier_split):
                if split:
                    expr, const = prev.exprs[n_units + c]
                    simple = (const == 0 and len(expr) == 1 and prev.kind == "R"
                              and len(prev.value_slots[next(iter(expr))]) == 2)
                    nnz += 1 if simple else len(expr) + (1 if const != 0 else 0)
            nnz += entries
        else:
            widths.extend([2 * slots, slots])
            nnz += entries + len(plan.carriers)
    out_rows = len(plans[-1].exprs)
    widths.append(out_rows)
    nnz += sum(len(e) + (1 if c != 0 else 0) for e, c in plans[-1].exprs)
    return widths, nnz


# ---------------------------------------------------------------------------- emission

def _matrix(shape, rows: list, exact: bool) -> Matrix:
    if exact:
        return Matrix.from_exact_rows(shape, rows)
    indptr = [0]
    indices: list = []
    data: list = []
    for row in rows:
        columns = sorted(row)
        indices.extend(columns)
        data.extend([row[j] for j in columns])
        indptr.append(len(indices))
    values = np.asarray(data, dtype=np.float64)
    if not np.isfinite(values).all():
        raise PassError(f"debranch: a {shape[0]}x{shape[1]} matrix of the layer form has non-finite entries "
                        "(the program's constants overflow when composed)")
    # canonical already (sorted columns, no duplicates, no zeros), so the Matrix wraps the arrays as they are
    return Matrix.from_canonical_arrays(shape, values, np.asarray(indices, dtype=np.int64),
                                        np.asarray(indptr, dtype=np.int64))


def _vector(values: list, exact: bool) -> Vector:
    if exact:
        return Vector([Fraction(v) for v in values], exact=True)
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise PassError("debranch: a bias of the layer form is not finite (the program's constants overflow when "
                        "composed)")
    return Vector(array)


def _is_identity(rows: list, bias: list, n_in: int) -> bool:
    if len(rows) != n_in or any(b != 0 for b in bias):
        return False
    return all(len(r) == 1 and r.get(i) == 1 for i, r in enumerate(rows))


def emit(nf: NormalForm, plan: Plan, names: dict) -> Module:
    """The chain module of a plan, with ``metadata["layout"]`` and ``metadata["stages"]``."""
    chain = _Chain(nf, plan, names)
    for k in range(1, len(plan.stages)):
        chain.emit_stage(k)
    chain.emit_readout()
    return chain.module()


def _decoded_rows(plan: StagePlan):
    """The need rows of ``plan`` over its output slots, as ``(rows, constants)``."""
    decoded = [_decoded(plan, i) for i in range(len(plan.exprs))]
    return [r for r, _ in decoded], [c for _, c in decoded]


class _Chain:
    """The chain module under construction: its ops, their layout and stage entries, and the op read next."""

    def __init__(self, nf: NormalForm, plan: Plan, names: dict):
        self.nf = nf
        self.plan = plan
        self.exact = nf.exact
        self.describe = _Describer(nf, names)
        src_input = nf.module.input
        inp = Op("input", (), dict(src_input.attrs, dim=src_input.dim), name=src_input.name)
        self.ops = [inp]
        self.layout = [self.describe.values(plan.stages[0], "value")]
        self.stage_meta = [{"stage": "X", "index": 0, "layer": 0}]
        self.prev = inp
        self.exact_biases: list = []  # [op position, [[row, "p/q"], ...]]

    def _append(self, op: Op, layout: list, meta: dict) -> None:
        """Chain ``op`` after the current last op, recording its layout and stage entries."""
        self.ops.append(op)
        self.layout.append(layout)
        self.stage_meta.append(meta)
        self.prev = op

    def emit_stage(self, k: int) -> None:
        """Stage ``k``'s ops, reading the output slots of stage ``k − 1``."""
        before, st = self.plan.stages[k - 1], self.plan.stages[k]
        n_in = max(1, before.slots)
        rows, consts = _decoded_rows(before)
        meta = {"index": k, "layer": self.plan.schedule.stage_layer[k]}
        if st.kind == "S":
            self._emit_state(st, rows, consts, n_in, meta)
        elif st.kind == "R":
            self._emit_relu(before, st, rows, consts, n_in, meta)
        else:
            self._emit_multi(st, rows, consts, n_in, meta)

    def _emit_state(self, st: StagePlan, rows: list, consts: list, n_in: int, meta: dict) -> None:
        """One ``linstate``: the units' blocks on the diagonal of ``A``, then passthrough carriers (``A = 0``)."""
        exact = self.exact
        zero = Fraction(0) if exact else 0.0
        a_rows, init = [], []
        off = 0
        for u in st.units:
            unit = self.nf.units[u]
            for ar in unit.A:
                a_rows.append({off + j: v for j, v in ar.items()})
            init.extend(unit.init)
            off += len(unit.atoms)
        b_rows, bias = rows, consts
        a_rows.extend({} for _ in st.carriers)
        init.extend(zero for _ in st.carriers)
        if not b_rows:  # nothing is live: one zero state keeps the chain well formed
            b_rows, bias, a_rows, init = [{}], [zero], [{}], [zero]
        k_dim = len(b_rows)
        op = Op("linstate", [self.prev], {"A": _matrix((k_dim, k_dim), a_rows, exact),
                                          "B": _matrix((k_dim, n_in), b_rows, exact),
                                          "bias": _vector(bias, exact), "init": _vector(init, exact)})
        self._append(op, self.describe.values(st, "value") if st.slots else [{"role": "zero", "terms": []}],
                     dict(meta, stage="S"))

    def _emit_relu(self, before: StagePlan, st: StagePlan, rows: list, consts: list, n_in: int,
                   meta: dict) -> None:
        """A ``linear`` (left out when the identity) that shifts, negates or splits carriers, then ``relu``."""
        exact = self.exact
        n_units = len(st.units)
        lin_rows, lin_bias = [], []
        exact_biases = []  # [unit, "p/q"]: biases emitted rounded (rescale-units reads them)
        for i in range(n_units):
            lin_rows.append(rows[i])
            lin_bias.append(consts[i])
            held = self.nf.exact_row_constants.get(id(before.need[i]))
            if held is not None:
                bias = _exact_bias(before, i, held)
                if bias is not None:
                    exact_biases.append([i, str(bias)])
        for c in range(len(st.carriers)):
            i = n_units + c
            if st.carrier_split[c]:
                plus, minus = _split_rows(before, i, rows[i])
                lin_rows.append(plus)
                lin_bias.append(consts[i])
                lin_rows.append(minus)
                lin_bias.append(-consts[i])
            elif st.carrier_sign[c] == -1:  # the slot holds offset − f
                lin_rows.append({j: -v for j, v in rows[i].items()})
                lin_bias.append(_shifted(-consts[i], [(1.0, st.carrier_offset[c])]))
            else:  # the slot holds f − offset
                lin_rows.append(rows[i])
                lin_bias.append(_shifted(consts[i], [(-1.0, st.carrier_offset[c])]))
        post = self.describe.values(st, "value")
        if not _is_identity(lin_rows, lin_bias, n_in):
            op = Op("linear", [self.prev], {"A": _matrix((len(lin_rows), n_in), lin_rows, exact),
                                            "b": _vector(lin_bias, exact)})
            self._append(op, [{"role": "pre", "of": j} for j in range(len(lin_rows))],
                         dict(meta, stage="R", part="linear"))
            if exact_biases:
                self.exact_biases.append([len(self.ops) - 1, exact_biases])
        self._append(Op("relu", [self.prev]), post, dict(meta, stage="R", part="relu"))

    def _emit_multi(self, st: StagePlan, rows: list, consts: list, n_in: int, meta: dict) -> None:
        """A ``linear`` (left halves, then right halves; carriers times a constant 1), then ``multi``."""
        exact = self.exact
        one = Fraction(1) if exact else 1.0
        n_units = len(st.units)
        lefts = rows[:n_units] + rows[2 * n_units:]
        left_bias = consts[:n_units] + consts[2 * n_units:]
        rights = rows[n_units:2 * n_units] + [{} for _ in st.carriers]
        right_bias = consts[n_units:2 * n_units] + [one for _ in st.carriers]
        lin_rows = lefts + rights
        h = len(lefts)
        op = Op("linear", [self.prev], {"A": _matrix((2 * h, n_in), lin_rows, exact),
                                        "b": _vector(left_bias + right_bias, exact)})
        self._append(op, [{"role": "left", "of": j} for j in range(h)]
                     + [{"role": "right" if j < n_units else "one", "of": j} for j in range(h)],
                     dict(meta, stage="M", part="linear"))
        self._append(Op("multi", [op]), self.describe.values(st, "value"), dict(meta, stage="M", part="multi"))

    def emit_readout(self) -> None:
        """The output ``linear``, left out when the identity unless the chain would be the bare input."""
        plans = self.plan.stages
        last = plans[-1]
        n_in = max(1, last.slots)
        out_rows, out_bias = _decoded_rows(last)
        if not _is_identity(out_rows, out_bias, n_in) or self.prev.kind == "input":
            op = Op("linear", [self.prev], {"A": _matrix((len(out_rows), n_in), out_rows, self.exact),
                                            "b": _vector(out_bias, self.exact)})
            self._append(op, [{"role": "output", "index": j} for j in range(len(out_rows))],
                         {"stage": "readout", "index": len(plans), "layer": self.plan.schedule.stage_layer[-1]})

    def module(self) -> Module:
        """The finished chain, keeping the source module's metadata."""
        module = Module(self.ops, self.prev, self.nf.module.name)
        module.metadata = dict(self.nf.module.metadata)
        module.metadata["layout"] = self.layout
        module.metadata["stages"] = self.stage_meta
        if self.exact_biases:
            module.metadata["exact_biases"] = self.exact_biases
        return module


class _Describer:
    """Layout entries: which program values a slot holds (see docs/compiler.md, "Layout")."""

    def __init__(self, nf: NormalForm, names: dict):
        self.nf = nf
        self.names = names
        self._atom_cache: dict = {}
        self._functional_cache: dict = {}  # id(row) -> (row, terms); carried rows persist across stages

    def atom(self, a: int) -> list | None:
        """``[name, coordinate, scale]`` of the program value an atom is, None for the constant-1 state (no
        program value: it holds what a λ-sized constant's rounding left out)."""
        hit = self._atom_cache.get(a)
        if hit is None:
            op, coord, scale = self.nf.origin[a]
            if op is None:
                return None
            hit = [self.names.get(id(op), op.name or op.kind), int(coord), layout_number(1 / scale if scale != 0 else 0)]
            self._atom_cache[a] = hit
        return hit

    def functional(self, row: dict) -> list:
        hit = self._functional_cache.get(id(row))
        if hit is not None and hit[0] is row:
            return hit[1]
        terms = self._functional(row)
        self._functional_cache[id(row)] = (row, terms)
        return terms

    def _functional(self, row: dict) -> list:
        terms = []
        for a, c in sorted(row.items()):
            described = self.atom(a) if a != CONST else None
            if described is None:  # the constant-1 state: :meth:`values` adds its share to the label's constant
                continue
            name, coord, inv = described
            terms.append([name, coord, layout_number(c * layout_coefficient(inv))])
        return terms

    def values(self, st: StagePlan, role: str) -> list:
        out = []
        for a in st.unit_atoms:
            described = self.atom(a)
            out.append({"role": role, "terms": [described]} if described is not None else
                       {"role": "constant", "terms": [], "constant": 1.0})
        for c, f in enumerate(st.carriers):
            terms = self.functional(f)
            # a carried constant (its own, or the constant-1 state's share) and an R stage's shift
            constant = layout_coefficient(f.get(CONST, 0)) + layout_coefficient(f.get(self.nf.one_atom, 0))
            if st.kind == "R" and st.carrier_split[c]:
                for role in ("plus", "minus"):
                    out.append(_labelled({"role": role, "terms": terms}, constant))
            elif st.kind == "R" and st.carrier_sign[c] == -1:
                entry = {"role": "carrier", "terms": [[n, i, layout_number(-layout_coefficient(v))] for n, i, v in terms]}
                out.append(_labelled(entry, layout_coefficient(st.carrier_offset[c]) - constant))
            else:
                offset = layout_coefficient(st.carrier_offset[c]) if st.kind == "R" else 0
                out.append(_labelled({"role": "carrier", "terms": terms}, constant - offset))
        return out


def _labelled(entry: dict, constant) -> dict:
    """A layout entry with ``constant`` added to what its slot holds (none where 0)."""
    if constant != 0:
        entry["constant"] = layout_number(constant)
    return entry


