"""``dce``: dead code elimination, down to single coordinates.

1. Ops that do not reach the returned value are removed (the input op always stays).
2. **Coordinate liveness** flows backward from the output (every output coordinate is live):
   ``linear`` rows that are live read the columns where they have non-zeros (zero columns are never read);
   ``relu`` reads the same coordinates; ``slice``/``concat`` shift them; ``multi`` output ``i`` reads
   ``i`` and ``h + i``; a ``linstate`` keeps the live rows *closed under* ``A`` (a live slot keeps every slot
   it reads through ``A``) and reads the columns of ``B`` those rows use.  Ops of unknown kinds read all of
   their operands.
3. Every op is rebuilt on its **kept** coordinates (live ones, or a superset where that avoids a new op):
   linears lose dead rows and the columns of dropped operand coordinates; states lose dead slots (rows and
   columns of ``A``, rows of ``B``/``bias``/``init``); relus follow their operand; slices and concats are
   re-indexed (concat operands with nothing live are dropped); a multi whose operand keeps an asymmetric
   set of coordinates reads them through a selection ``linear``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir.core import Module, Op
from ..ir.matrix import Matrix
from . import Pass, forget_analyses, register_pass
from .rewrite import topological_order

__all__ = ["DCE", "live_coordinates"]


def _nonzero_cols(mat: Matrix, rows: np.ndarray) -> np.ndarray:
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    csr = mat.scipy()[rows]
    return np.unique(csr.indices).astype(np.int64)


def _state_closure(a: Matrix, rows: np.ndarray) -> np.ndarray:
    """The smallest set of slots containing ``rows`` and every slot a member reads through ``A``."""
    csr = a.scipy()
    live = np.zeros(a.shape[0], dtype=bool)
    live[rows] = True
    frontier = np.asarray(rows, dtype=np.int64)
    while frontier.size:
        cols = np.unique(csr[frontier].indices)
        new = cols[~live[cols]]
        live[new] = True
        frontier = new
    return np.flatnonzero(live)


def _reads(op: Op, live: np.ndarray) -> list[np.ndarray]:
    """For each operand of ``op``, the coordinates that the ``live`` coordinates of ``op`` read."""
    kind = op.kind
    if kind == "linear":
        return [_nonzero_cols(op.attrs["A"], live)]
    if kind == "relu":
        return [live]
    if kind == "slice":
        return [live + op.attrs["start"]]
    if kind == "concat":
        out, offset = [], 0
        for o in op.operands:
            sel = live[(live >= offset) & (live < offset + o.dim)] - offset
            out.append(sel)
            offset += o.dim
        return out
    if kind == "multi":
        return [np.concatenate([live, live + op.dim])]
    if kind == "linstate":
        rows = _state_closure(op.attrs["A"], live)
        return [_nonzero_cols(op.attrs["B"], rows)]
    return [np.arange(o.dim) for o in op.operands]


def live_coordinates(module: Module) -> dict[int, np.ndarray]:
    """``id(op) -> sorted live coordinates`` for every op reaching the output (backward analysis)."""
    order = topological_order(module.output, None, {id(op): (i,) for i, op in enumerate(module.ops)})
    live: dict[int, set] = {id(module.output): set(range(module.output.dim))}
    result: dict[int, np.ndarray] = {}
    for op in reversed(order):
        coords = np.array(sorted(live.get(id(op), ())), dtype=np.int64)
        if op.kind == "linstate":
            coords = _state_closure(op.attrs["A"], coords)
        result[id(op)] = coords
        for operand, read in zip(op.operands, _reads(op, coords)):
            live.setdefault(id(operand), set()).update(read.tolist())
    return result


@register_pass
@dataclasses.dataclass
class DCE(Pass):
    name = "dce"
    summary = "remove dead ops, dead rows of linears and dead state slots (shrinking their consumers)"
    coordinates: bool = dataclasses.field(default=True, metadata={
        "help": "also remove dead coordinates (rows, state slots); false: whole ops only"})

    def run(self, module: Module) -> None:
        input_op = module.input
        priority = {id(op): (i,) for i, op in enumerate(module.ops)}
        order = topological_order(module.output, input_op, priority)
        if not self.coordinates:
            if len(order) != len(module.ops):
                module.ops = order
                forget_analyses(module)
            return
        live = live_coordinates(module)
        # kept[id] = (new op, positions: old coordinate -> index in the new op, or -1)
        kept: dict[int, tuple[Op, np.ndarray]] = {}
        changed = len(order) != len(module.ops)
        new_ops: list[Op] = []

        def emit(op: Op) -> Op:
            new_ops.append(op)
            return op

        emitted: set[int] = set()
        for op in order:
            coords = live.get(id(op), np.arange(op.dim))
            if op.kind != "input" and coords.size == 0:
                # nothing reads this value (its users read none of its coordinates): it disappears
                kept[id(op)] = (None, np.full(op.dim, -1, dtype=np.int64))
                changed = True
                continue
            new, keep = self._rebuild(op, coords, kept, emit, input_op)
            if new is not op:
                changed = True
            pos = np.full(op.dim, -1, dtype=np.int64)
            pos[keep] = np.arange(len(keep))
            kept[id(op)] = (new, pos)
            if id(new) not in emitted:
                emitted.add(id(new))
                new_ops.append(new)
        if not changed:
            return
        output, pos = kept[id(module.output)]
        assert np.array_equal(pos, np.arange(module.output.dim)), "every output coordinate is live"
        module.output = output
        module.ops = topological_order(output, kept[id(input_op)][0],
                                       {id(op): (i,) for i, op in enumerate(new_ops)})
        forget_analyses(module)

    @staticmethod
    def _rebuild(op: Op, live: np.ndarray, kept: dict, emit, input_op: Op) -> tuple[Op, np.ndarray]:
        """``(op computing op[keep], keep)`` with ``keep ⊇ live`` (sorted)."""
        full = np.arange(op.dim)
        operands = [kept[id(o)] for o in op.operands]
        if op.kind in ("linear", "linstate") and operands[0][0] is None:
            # the operand vanished: none of its coordinates is read, so read the input through zero columns
            operands = [(kept[id(input_op)][0], np.full(0, -1, dtype=np.int64))]
        unchanged = all(new is o and np.all(pos >= 0) for o, (new, pos) in zip(op.operands, operands))
        kind = op.kind
        if kind == "input":
            return op, full

        def same_or(new_kind, new_operands, attrs, keep):
            if unchanged and len(keep) == op.dim:
                return op, full
            return Op(new_kind, new_operands, attrs, name=op.name, loc=op.loc), keep

        if kind == "linear":
            (src, pos), = operands
            cols = np.flatnonzero(pos >= 0)
            a = op.attrs["A"].rows(live).cols(cols) if pos.size else Matrix.zeros(len(live), src.dim)
            return same_or("linear", [src], {"A": a, "b": op.attrs["b"][live]}, live)
        if kind == "linstate":
            (src, pos), = operands
            cols = np.flatnonzero(pos >= 0)
            slots = live  # already closed under A
            bmat = op.attrs["B"].rows(slots).cols(cols) if pos.size else Matrix.zeros(len(slots), src.dim)
            attrs = {"A": op.attrs["A"].rows(slots).cols(slots), "B": bmat,
                     "bias": op.attrs["bias"][slots], "init": op.attrs["init"][slots]}
            return same_or("linstate", [src], attrs, slots)
        if kind == "relu":
            (src, pos), = operands
            keep = np.flatnonzero(pos >= 0)
            return same_or("relu", [src], {}, keep)
        if kind == "slice":
            (src, pos), = operands
            start, end = op.attrs["start"], op.attrs["end"]
            inside = pos[start:end]
            keep = np.flatnonzero(inside >= 0)
            first, last = int(inside[keep[0]]), int(inside[keep[-1]]) + 1
            if first == 0 and last == src.dim and not (unchanged and len(keep) == op.dim):
                return src, keep
            return same_or("slice", [src], {"start": first, "end": last}, keep)
        if kind == "concat":
            parts, keep, offset = [], [], 0
            for (o, (src, pos)) in zip(op.operands, operands):
                in_range = live[(live >= offset) & (live < offset + o.dim)]
                if in_range.size:
                    parts.append(src)
                    keep.extend((np.flatnonzero(pos >= 0) + offset).tolist())
                offset += o.dim
            keep = np.array(keep, dtype=np.int64)
            if len(parts) == 1 and not (unchanged and len(keep) == op.dim):
                return parts[0], keep
            return same_or("concat", parts, {}, keep)
        if kind == "multi":
            (src, pos), = operands
            h = op.dim
            first, second = pos[:h], pos[h:]
            if np.array_equal(first >= 0, second >= 0):
                keep = np.flatnonzero(first >= 0)
                return same_or("multi", [src], {}, keep)
            # asymmetric: select [x[live]; x[h + live]] explicitly
            picks = np.concatenate([first[live], second[live]])
            n = len(picks)
            sel = Matrix.from_entries((n, src.dim), range(n), picks.tolist(), [1.0] * n)
            from ..ir.matrix import Vector
            pre = emit(Op("linear", [src], {"A": sel, "b": Vector.zeros(n)}))
            return Op("multi", [pre], {}, name=op.name, loc=op.loc), live
        # unknown kinds read whole operands, which are then kept whole (they are fully live)
        return same_or(kind, [src for src, _ in operands], dict(op.attrs), full)
