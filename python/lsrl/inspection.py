"""What a compiled model holds, in words: labels of layout slots and units, and ``Model.summary()``.

Every row and column of a compiled layer has a meaning recorded in ``model.layout`` (docs/targets.md,
"Layout"; docs/compiler.md §5).  This module turns those records into short labels (``ones``,
``-m.cycler[0]``, ``0.002·out.pos``) that the summary, the DOT drawings and the weight pictures of
:mod:`lsrl.viz` share, so the same value reads the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir.core import Op
from .ir.matrix import Matrix, Vector

__all__ = ["LayoutNames", "LayerInfo", "layer_infos", "summary_dict", "summary_text", "op_nnz", "state_width",
           "op_dense_count", "has_exact_constants", "dtype_name", "held_text", "capped"]

# Longest label the summary and the pictures print for one slot, and for one list of held values.
MAX_SLOT_LABEL = 32
MAX_HOLDS = 60

# Unit roles whose name says nothing beyond the value the unit decodes to.
_PLAIN_UNIT_ROLES = {"state", "relu", "carrier"}


def state_width(op: Op) -> int:
    """The numbers ``op`` carries from one token to the next (per sequence): the widths of the state its
    semantics return after an empty sequence (its initial state), whatever its layout."""
    if not op.opdef.stateful:
        return 0
    from .ir.semantics import run_op
    state = run_op(op, [np.zeros((1, 0, op.operands[0].dim))])[1]
    parts = state if isinstance(state, tuple) else (state,)
    return sum(int(np.shape(part)[-1]) for part in parts)


def op_nnz(op: Op) -> int:
    """Stored non-zeros of an op's matrices and vectors."""
    return sum(v.nnz for v in op.attrs.values() if isinstance(v, (Matrix, Vector)))


def op_dense_count(op: Op) -> int:
    """Entries of an op's matrices and vectors as if stored densely."""
    total = 0
    for v in op.attrs.values():
        if isinstance(v, Matrix):
            total += v.shape[0] * v.shape[1]
        elif isinstance(v, Vector):
            total += len(v)
    return total


def has_exact_constants(ops) -> bool:
    """Whether some constant of ``ops`` is an exact rational that float64 cannot hold."""
    return any(isinstance(v, (Matrix, Vector)) and v.exact for op in ops for v in op.attrs.values())


def dtype_name(ops) -> str:
    """How :func:`repr` and the summary name the number type of ``ops``' constants."""
    return "exact" if has_exact_constants(ops) else "float64"


def capped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``…`` when cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _format_coef(coef) -> str:
    if isinstance(coef, str):  # an exact coefficient "p/q"
        return coef
    return f"{coef:.4g}"  # 4 digits: 1000 prints as 1000, not 1e+03


class LayoutNames:
    """Labels of layout slots.  A program value whose coordinates are all index 0 throughout the layout is
    shown by its bare name (``ones``), others with the coordinate (``m.cycler[1]``)."""

    def __init__(self, layout):
        self.layout = layout or []
        self._indexed: set[str] = set()
        for entry in self.layout:
            for slot in _entry_slots(entry):
                for name, index, _ in slot.get("terms", ()):
                    if index:
                        self._indexed.add(name)

    def term(self, name: str, index: int) -> str:
        return f"{name}[{index}]" if name in self._indexed else name

    def terms(self, terms, constant=None) -> str:
        """``Σ coef · name[index] (+ constant)`` with the coefficients to 4 digits (one that shows as ±1, e.g.
        1 + 2^-52 after rescaling, is left out)."""
        parts = []
        for name, index, coef in terms:
            value = self.term(name, index)
            text = _format_coef(coef)
            sign = "-" if text.startswith("-") else "+"
            magnitude = text.lstrip("-")
            parts.append((sign, value if magnitude == "1" else f"{magnitude}·{value}"))
        if constant not in (None, 0, 0.0, "0"):
            text = _format_coef(constant)
            parts.append(("-" if text.startswith("-") else "+", text.lstrip("-")))
        if not parts:
            return "0"
        first_sign, first = parts[0]
        out = ("-" if first_sign == "-" else "") + first
        for sign, text in parts[1:]:
            out += f" {sign} {text}"
        return out

    def slot(self, slot: dict, position: int, next_slots=None) -> str:
        """The label of one slot; ``next_slots`` are the next op's slots (read by ``pre``/``left``/``right``)."""
        role = slot.get("role")
        if role in ("value", "carrier", "constant"):
            return capped(self.terms(slot.get("terms", ()), slot.get("constant")), MAX_SLOT_LABEL)
        if role in ("plus", "minus"):
            constant = slot.get("constant")
            inner = self.terms(slot.get("terms", ()), constant)
            if len(slot.get("terms", ())) + (constant not in (None, 0, 0.0, "0")) > 1:
                inner = f"({inner})"
            return capped(inner + ("⁺" if role == "plus" else "⁻"), MAX_SLOT_LABEL)
        if role in ("pre", "left", "right"):
            of = slot.get("of")
            target = self.slot(next_slots[of], of) if next_slots is not None and of is not None else f"#{of}"
            prefix = "" if role == "pre" else f"{role}:"
            return capped(prefix + target, MAX_SLOT_LABEL)
        if role == "one":
            return "1"
        if role == "output":
            return f"y[{slot.get('index')}]"
        if role == "zero":
            return "0"
        return f"#{position}"  # opaque (reference-mode layouts do not track values)

    def slots(self, slots, next_slots=None) -> list[str]:
        return [self.slot(s, i, next_slots) for i, s in enumerate(slots)]

    def held(self, slots) -> tuple[list[str], list[str]]:
        """The program values ``slots`` compute and those they only carry, each without repeats, in order."""
        computed: dict[str, None] = {}
        carried: dict[str, None] = {}
        for slot in slots:
            role = slot.get("role")
            target = carried if role == "carrier" else computed if role in ("value", "plus", "minus") else None
            if target is not None:
                for name, _, _ in slot.get("terms", ()):
                    target.setdefault(name, None)
        return list(computed), [n for n in carried if n not in computed]

    def units(self, entry: dict, width: int) -> list[str]:
        """Labels of a recurrent layer's hidden units: the value each decodes to (``-`` when read negated),
        with the unit role when it says more (``product1+_p``)."""
        values = entry.get("values", [])
        value_labels = self.slots(values)
        decoded: list[list[str]] = [[] for _ in range(width)]
        for slot, unit, coef in entry.get("decode", ()):
            if 0 <= unit < width and 0 <= slot < len(value_labels):
                negative = (coef.startswith("-") if isinstance(coef, str) else coef < 0)
                decoded[unit].append(("-" if negative else "") + value_labels[slot])
        roles = [None] * width
        for block in entry.get("units", ()):
            for unit in range(block["start"], min(block["end"], width)):
                roles[unit] = block["role"]
        labels = []
        for unit in range(width):
            text = " / ".join(decoded[unit]) if decoded[unit] else (roles[unit] or f"#{unit}")
            if decoded[unit] and roles[unit] and roles[unit] not in _PLAIN_UNIT_ROLES:
                text += f" [{roles[unit]}]"
            labels.append(capped(text, MAX_SLOT_LABEL))
        return labels


def _entry_slots(entry) -> list:
    if isinstance(entry, dict):
        return entry.get("values", [])
    return entry or []


def held_text(computed: list[str], carried: list[str], limit: int = MAX_HOLDS) -> str:
    """``ones, zeros; carries x`` capped at ``limit`` characters (``…`` and the count left out)."""
    def listed(names: list[str], room: int) -> str:
        shown = []
        for i, name in enumerate(names):
            rest = len(names) - i - 1
            candidate = ", ".join(shown + [name]) + (f", … (+{rest})" if rest else "")
            if len(candidate) > room and shown:
                return ", ".join(shown) + f", … (+{len(names) - len(shown)})"
            shown.append(name)
        return ", ".join(shown)

    text = listed(computed, limit)
    if carried:
        prefix = "; carries " if text else "carries "
        text += prefix + listed(carried, max(12, limit - len(text) - len(prefix)))
    return text


@dataclass
class LayerInfo:
    """One target layer as the summary shows it."""
    index: int
    op: str
    stage: str
    input_size: int
    width: int
    state_size: int
    dense: int
    nnz: int
    holds: list[str] = field(default_factory=list)
    carries: list[str] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    layout_index: int = 0  # position of the layer's first op in model.module.ops (= in model.layout)


def _stage_text(stages: list[str]) -> str:
    """``S R R R M`` → ``S·R×3·M``."""
    runs: list[list] = []
    for s in stages:
        if runs and runs[-1][0] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    return "·".join(s if n == 1 else f"{s}×{n}" for s, n in runs)


def layer_infos(model) -> list[LayerInfo]:
    """One :class:`LayerInfo` per target layer of ``model`` (the readout not included)."""
    names = LayoutNames(model.layout)
    layout = model.layout or []
    stages_meta = model.module.metadata.get("stages") or []
    out = []
    position = 1  # module.ops[0] is the input
    for info, group in zip(model.layers, model._layer_groups()):
        first = group[0]
        if model.architecture.layer_form:
            state = first.dim if first.kind == "linstate" else 0
            width = max(op.dim for op in group)
            chain = [stages_meta[position + k] for k in range(len(group)) if position + k < len(stages_meta)]
            stage = _stage_text([s.get("stage", "?") for s in chain if s.get("part") != "linear"]) or "?"
            slots = [slot for k in range(len(group)) if position + k < len(layout)
                     for slot in _entry_slots(layout[position + k])]
        else:
            state = sum(state_width(op) for op in group)
            width = first.dim
            stage = info.get("stage") or "?"
            entry = layout[position] if position < len(layout) else {}
            slots = _entry_slots(entry)
        computed, carried = names.held(slots)
        out.append(LayerInfo(index=info["index"], op=info["kind"], stage=stage, input_size=info["input_size"],
                             width=width, state_size=state, dense=sum(op_dense_count(op) for op in group),
                             nnz=sum(op_nnz(op) for op in group), holds=computed, carries=carried,
                             ops=list(group), layout_index=position))
        position += len(group)
    return out


def summary_dict(model) -> dict:
    """The summary as data: header facts, one dict per layer, the readout and the totals."""
    infos = layer_infos(model)
    readout = model.module.ops[-1]
    layers = [{"index": i.index, "op": i.op, "stage": i.stage, "input_size": i.input_size, "width": i.width,
               "state_size": i.state_size, "dense": i.dense, "nnz": i.nnz, "holds": i.holds,
               "carries": i.carries, "ops": [(op.kind, op.dim) for op in i.ops]} for i in infos]
    readout_row = {"op": "linear", "input_size": readout.operands[0].dim, "width": readout.dim,
                   "dense": op_dense_count(readout), "nnz": op_nnz(readout), "holds": ["output"]}
    return {
        "target": model.target,
        "activations": model.activations,
        "dtype": "exact" if has_exact_constants(model.module.ops) else model.dtype,
        "d_in": model.d_in,
        "d_out": model.d_out,
        "widest": max(model.widths),
        "layers": layers,
        "readout": readout_row,
        "totals": {"layers": len(layers), "state_size": sum(r["state_size"] for r in layers),
                   "dense": sum(r["dense"] for r in layers) + readout_row["dense"],
                   "nnz": sum(r["nnz"] for r in layers) + readout_row["nnz"]},
        "standard": model.module.metadata.get("standard"),
    }


def summary_text(model) -> str:
    """A header (target, mode, dtype, sizes) and a table with one row per layer, the readout and totals."""
    facts = summary_dict(model)
    totals = facts["totals"]
    lines = [f"lsrl.Model target={facts['target']} activations={facts['activations']} dtype={facts['dtype']} "
             f"d_in={facts['d_in']} d_out={facts['d_out']}",
             # benchmarks/kernel.py reads this line up to "widest="
             f"  layers={totals['layers']} widest={facts['widest']} parameters(nnz)={totals['nnz']} "
             f"dense={totals['dense']}"]
    rows = [[str(r["index"]), r["op"], r["stage"], str(r["input_size"]), str(r["width"]), str(r["state_size"]),
             str(r["dense"]), str(r["nnz"]), held_text(r["holds"], r["carries"])] for r in facts["layers"]]
    ro = facts["readout"]
    rows.append(["-", "readout", "-", str(ro["input_size"]), str(ro["width"]), "-", str(ro["dense"]),
                 str(ro["nnz"]), held_text(ro["holds"], [])])
    rows.append(["", "total", "", "", "", str(totals["state_size"]), str(totals["dense"]), str(totals["nnz"]), ""])
    header = ["#", "op", "stage", "in", "width", "state", "dense", "nnz", "holds"]
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    left_aligned = {1, 2, 8}

    def line(cells):
        parts = [cell.ljust(w) if c in left_aligned else cell.rjust(w)
                 for c, (cell, w) in enumerate(zip(cells, widths))]
        return "  " + "  ".join(parts).rstrip()

    lines.append(line(header))
    lines.extend(line(r) for r in rows)
    if facts["standard"]:
        lines.append(f"  standard-mode constants: {facts['standard']}")
    return "\n".join(lines)
