"""``debranch``: any program (a DAG of core ops) → the layer form (compile.md §2, decisions D5/D6).

The layer form is a chain ``input → L1 → … → Ln`` in which every op reads the previous one and only
``linstate``, ``linear``, ``relu`` and ``multi`` occur: every layer is one ``linstate`` followed by its
segment (``linear``/``relu``/``multi``), no two linears are adjacent, and the last op may be a ``linear``
readout.  The number of ``linstate`` ops is the longest chain of dependent state blocks (at least one; a
program without states gets one passthrough layer ``A = 0, B = I``).

Two modes:

* ``mode=schedule`` (default, D5): stage scheduling over the affine normal form — :mod:`.debranch_affine`
  (normal form, CSE, range facts, dead-code removal) and :mod:`.debranch_schedule` (stages, carriers,
  emission).  Several placements (ASAP/ALAP per kind and inside layers) are planned and the narrowest plan
  is emitted (ties: fewer non-zeros).
* ``mode=reference``: the paper's 13 local rewrite cases in the reference order, with the D6 progress fix
  (:mod:`.debranch_reference`), for the noise experiment (experiments.md D13).

``exact=true`` computes in exact rationals (constants taken at their exact value) and emits exact
constants, so the exact interpreter gives identical results; ``exact=false`` rounds coefficients to float64
first — unless a matrix of the program holds one float64 cannot (an exact ``4/3``: composed in float64 it
rounds the gaps of steps and the weights λ reads, which the error bound, stated against the layer form, does not
see: ``f_ifelse(f_larger(4/3·x + 2x + 1.12, 2.5), x, 0)`` answered 2.9·10⁻³ off under a bound of 0), or emitting the layer form would fold a carrier's shift into a λ-sized bias (≥ 2^24) that float64
cannot hold (``10¹⁰·x + 0.3`` with ``x`` carried shifted by 2: ``0.3 − 2·10¹⁰`` keeps the 0.3 only to λ's ulp;
a signed value beside a λ-sized *constant* is carried as its halves instead, with nothing to fold); such a
program is debranched in rationals, as with ``exact=true``, and the passes after (``rescale-units``,
``materialize-steps``) keep the small part exactly, so the float model ``round-to-float`` makes of it computes
what the program does.  The output carries ``metadata["layout"]`` (per chain op, what every slot holds) and
``metadata["stages"]`` (per chain op, its stage kind, stage index and layer) — see docs/compiler.md.
"""
from __future__ import annotations

import dataclasses
import gc
from typing import ClassVar, Literal

from ..errors import OptionError, PassError
from ..ir.names import ssa_names  # the printer's naming, so layouts match printed IR
from . import Pass, register_pass
from .debranch_affine import build_normal_form
from .debranch_schedule import (LargeConstantRounds, Plan, asap_layers, build_schedule, emit, place_layers,
                                plan_carriers, unit_graph)

__all__ = ["Debranch", "debranch", "POLICIES"]

# (name, S units late, R/M units late, late inside layers)
POLICIES = {
    "asap": (False, False, False),
    "asap-intra-alap": (False, False, True),
    "alap-rm": (False, True, False),
    "alap-rm-intra-alap": (False, True, True),
    "alap": (True, True, True),
    "alap-intra-asap": (True, True, False),
    "alap-s": (True, False, False),
    "alap-s-intra-alap": (True, False, True),
}
# the placements tried by schedule=auto: on the paper's programs the narrowest plan is always among them
AUTO_POLICIES = ("asap", "alap-rm-intra-alap", "alap")


def plan_schedules(module, *, exact: bool = False, schedule: str = "auto",
                   fold_memoryless_states: bool = False, signed_carriers: str = "shift"):
    """``(normal form, [plans])`` for the requested placement policies (all of them for ``auto``)."""
    if exact:
        module = _to_exact(module)
    if signed_carriers not in ("shift", "split"):
        raise PassError(f"debranch: signed_carriers must be shift or split, got {signed_carriers!r}")
    nf = build_normal_form(module, exact=exact, fold_memoryless_states=fold_memoryless_states,
                           shift_carriers=signed_carriers == "shift")
    deps, consumers = unit_graph(nf)
    asap = asap_layers(nf, deps)
    n_layers = max([1] + [asap[u] for u in range(1, len(nf.units)) if nf.units[u].kind == "S"])
    names = AUTO_POLICIES if schedule == "auto" else list(POLICIES) if schedule == "all" else [schedule]
    plans = []
    seen = set()
    placed = set()  # policies that place every unit alike give the same schedule: it is built once
    memo: dict = {}  # stage plans shared by schedules that end alike
    for name in names:
        if name not in POLICIES:
            raise PassError(f"debranch: unknown schedule {name!r}; choose auto, all or one of "
                            f"{', '.join(POLICIES)}")
        s_late, rm_late, intra_late = POLICIES[name]
        lay = place_layers(nf, deps, consumers, asap, n_layers, s_late, rm_late)
        if (tuple(lay), intra_late) in placed:
            continue
        placed.add((tuple(lay), intra_late))
        sched = build_schedule(nf, deps, consumers, lay, n_layers, intra_late, name)
        key = tuple((kind, tuple(m)) for kind, m in sched.stages)
        if key in seen:
            continue
        seen.add(key)
        plans.append(plan_carriers(nf, sched, memo))
    return nf, plans


def _to_exact(module):
    """A clone whose matrix/vector constants are in the exact domain."""
    from ..ir.matrix import Matrix, Vector
    m = module.clone()
    for op in m.ops:
        if op.kind == "input":  # bounds may be infinite; they are only used as float facts
            continue
        for k, v in list(op.attrs.items()):
            if isinstance(v, Matrix) or isinstance(v, Vector):
                op.attrs[k] = v.to_exact()
    return m


def _rational_coefficients(module) -> bool:
    """Whether a matrix of ``module`` holds an exact coefficient float64 cannot (``Fraction(4, 3)``)."""
    from fractions import Fraction

    from ..ir.matrix import Matrix
    return any(isinstance(v, Matrix) and v.exact and any(Fraction(float(c)) != c for row in v.exact_rows()
                                                         for c in row.values())
               for op in module.ops for v in op.attrs.values())


def debranch(module, *, mode: str = "schedule", exact: bool = False, schedule: str = "auto",
             fold_memoryless_states: bool = False, signed_carriers: str = "shift"):
    """The layer form of ``module`` (a new module; the argument is not modified)."""
    if mode == "reference":
        from .debranch_reference import reference_debranch
        return reference_debranch(module, exact=exact)
    if mode != "schedule":
        raise PassError(f"debranch: unknown mode {mode!r} (schedule or reference)")
    if not exact and _rational_coefficients(module):
        exact = True
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the planner allocates many small dicts and no cycles; collections only cost time
    try:
        nf, plans = plan_schedules(module, exact=exact, schedule=schedule,
                                   fold_memoryless_states=fold_memoryless_states,
                                   signed_carriers=signed_carriers)
        best: Plan = min(plans, key=lambda p: p.cost)
        try:
            out = emit(nf, best, ssa_names(nf.module))
        except LargeConstantRounds:
            return debranch(module, exact=True, schedule=schedule, fold_memoryless_states=fold_memoryless_states,
                            signed_carriers=signed_carriers)
    finally:
        if gc_was_enabled:
            gc.enable()
    out.metadata["schedule"] = best.schedule.policy
    return out


@register_pass
@dataclasses.dataclass
class Debranch(Pass):
    name: ClassVar[str] = "debranch"
    summary: ClassVar[str] = "turn the program DAG into the layer form (a chain of linstate/linear/relu/multi)"

    mode: Literal["schedule", "reference"] = dataclasses.field(
        default="schedule", metadata={"help": "schedule: stage scheduling (narrow, fast); reference: the paper's "
                                              "13 rewrite cases in the reference order (D13)"})
    exact: bool = dataclasses.field(
        default=False, metadata={"help": "compute and emit exact rational constants (else round to float64, but for "
                                      "programs whose layer form would round a λ-sized bias)"})
    schedule: str = dataclasses.field(
        default="auto", metadata={"help": "placement policy: auto (the narrowest of " + ", ".join(AUTO_POLICIES)
                                          + "), all (the narrowest of every policy) or one of " + ", ".join(POLICIES)})
    signed_carriers: Literal["shift", "split"] = dataclasses.field(
        default="shift", metadata={"help": "a signed value with a known bound crosses a ReLU stage shifted into one "
                                           "slot (shift) or always as v+, v- (split)"})
    fold_memoryless_states: bool = dataclasses.field(
        default=False, metadata={"help": "treat state blocks with A = 0 as affine values (fewer layers than the "
                                         "program's LinState depth)"})

    def __post_init__(self):
        if self.schedule not in ("auto", "all", *POLICIES):  # named where the pipeline is written
            raise OptionError(f"debranch: unknown schedule {self.schedule!r}; choose auto, all or one of "
                              f"{', '.join(POLICIES)}")

    def run(self, module):
        return debranch(module, mode=self.mode, exact=self.exact, schedule=self.schedule,
                        fold_memoryless_states=self.fold_memoryless_states, signed_carriers=self.signed_carriers)
