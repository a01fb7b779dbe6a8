"""SSA naming shared by the printer and passes that describe values.

An op prints as ``%name``: its own name when it has one (made an identifier and uniquified ``name``,
``name_1``, ...), else ``0, 1, ...`` in printed order.  Passes that describe values in metadata (the
layer form's layout, range dumps) use :func:`ssa_names` so that what they say matches the printed IR.
"""
from __future__ import annotations

import re

from .core import Module, Op

__all__ = ["IDENT_RE", "Namer", "print_order", "ssa_names"]

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]*\Z")
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.$-]")


def _base_name(op: Op) -> str | None:
    name = op.name
    if not isinstance(name, str) or not name:
        return None
    if IDENT_RE.match(name):
        return name
    cleaned = _INVALID_NAME_CHARS.sub("_", name)
    if not re.match(r"[A-Za-z_]", cleaned):
        cleaned = "_" + cleaned
    return cleaned


class Namer:
    """SSA names: the op's name when it has one (uniquified ``name``, ``name_1``, ...), else ``0, 1, ...``."""

    def __init__(self, ops: list[Op]):
        self.reserved = {b for b in map(_base_name, ops) if b is not None}
        self.used: set[str] = set()
        self.names: dict[int, str] = {}
        self.counter = 0

    def __call__(self, op: Op) -> str:
        name = self.names.get(id(op))
        if name is not None:
            return name
        base = _base_name(op)
        if base is None:
            name = str(self.counter)
            self.counter += 1
        elif base not in self.used:
            name = base
        else:
            k = 1
            while f"{base}_{k}" in self.used or f"{base}_{k}" in self.reserved:
                k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        self.names[id(op)] = name
        return name


def print_order(module: Module) -> tuple[Op | None, list[Op]]:
    """The signature's input (the first input op, or None) and the ops in printed order (that input first)."""
    signature_input = next((op for op in module.ops if op.kind == "input"), None)
    ordered = ([signature_input] if signature_input is not None else []) + \
        [op for op in module.ops if op is not signature_input]
    return signature_input, ordered


def ssa_names(module: Module) -> dict[int, str]:
    """``id(op) -> name`` for every op of ``module``, as :func:`~lsrl.ir.printer.print_module` names it
    (``%name``, without the ``%``): the op's own name when it has one (uniquified ``name``, ``name_1``,
    ...), else ``0, 1, ...``."""
    _, ordered = print_order(module)
    namer = Namer(ordered)
    return {id(op): namer(op) for op in ordered}
