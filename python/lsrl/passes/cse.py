"""``cse``: common subexpression elimination by hash-consing.

Two ops compute the same value when they have the same kind, the same operands (as objects, in order), the
same result dim and equal attributes (matrices and vectors compared exactly through ``key()``, domain
included).  Ops are visited in topological order, so operands are already deduplicated when an op is
looked at, and chains of duplicates collapse in one sweep.  ``linstate`` ops are merged too: the same
recurrence driven by the same input produces the same sequence.  The kept op is the first one in program
order; it keeps its name.
"""
from __future__ import annotations

import dataclasses

from ..ir.core import Module, Op
from . import Pass, forget_analyses, register_pass

__all__ = ["CSE", "op_key"]


def _attr_key(value):
    key = getattr(value, "key", None)
    if callable(key):
        return (type(value).__name__, key())
    return (type(value).__name__, value)


def op_key(op: Op, operand_ids: tuple) -> tuple:
    """The hash-consing key of an op whose operands have the (canonical) ids ``operand_ids``."""
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in op.attrs.items()))
    return (op.kind, op.dim, operand_ids, attrs)


@register_pass
@dataclasses.dataclass
class CSE(Pass):
    name = "cse"
    summary = "merge ops that compute the same value (same kind, operands and attributes)"

    def run(self, module: Module) -> None:
        table: dict[tuple, Op] = {}
        canonical: dict[int, Op] = {}
        kept: list[Op] = []
        for op in module.ops:
            if any(id(o) in canonical for o in op.operands):
                op.operands = [canonical.get(id(o), o) for o in op.operands]
            if op.kind == "input":
                kept.append(op)
                continue
            try:
                key = op_key(op, tuple(id(o) for o in op.operands))
                hash(key)
            except TypeError:  # an attribute value that cannot be hashed: never merged
                kept.append(op)
                continue
            first = table.get(key)
            if first is None:
                table[key] = op
                kept.append(op)
            else:
                canonical[id(op)] = first
        if canonical:
            module.output = canonical.get(id(module.output), module.output)
            module.ops = kept
            forget_analyses(module)
