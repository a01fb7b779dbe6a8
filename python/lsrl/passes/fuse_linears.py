"""``fuse-linears``: merge chains of affine ops into one ``linear``.

In the layer form consecutive ``linear``s become one.  Rewrites (greedy, to a fixpoint):
``linear(linear(x))`` → one linear (when the inner one has a single use, or always with
``duplicate=true``), ``linear(slice(x))`` → columns scattered, ``slice(linear(x))`` → rows selected,
``slice(slice(x))`` → one slice, full slices and identity linears removed.  So chains that pass through
slices (``linear → slice → linear``) fuse too.
"""
from __future__ import annotations

import dataclasses

from ..ir.core import Module, Op
from . import Pass, register_pass
from .canonicalize import fold_linear_linear, fold_linear_slice, remove_identity_linear
from .rewrite import Rewriter, apply_patterns

__all__ = ["FuseLinears"]


def _fold_slices(rw: Rewriter, op: Op) -> Op | None:
    if op.kind != "slice":
        return None
    src = op.operands[0]
    start, end = op.attrs["start"], op.attrs["end"]
    if start == 0 and end == src.dim:
        return src
    if src.kind == "slice":
        s0 = src.attrs["start"]
        return rw.create("slice", [src.operands[0]], {"start": s0 + start, "end": s0 + end}, loc=op.loc)
    if src.kind == "linear":
        return rw.create("linear", [src.operands[0]], {"A": src.attrs["A"].rows(list(range(start, end))),
                                                        "b": src.attrs["b"][start:end]}, loc=op.loc)
    return None


def _linear_into_linear(rw: Rewriter, op: Op) -> Op | None:
    if op.kind != "linear" or op.operands[0].kind != "linear":
        return None
    inner = op.operands[0]
    a2, b2 = op.attrs["A"], op.attrs["b"]
    from ..ir.matrix import matvec
    return rw.create("linear", [inner.operands[0]],
                     {"A": a2 @ inner.attrs["A"], "b": matvec(a2, inner.attrs["b"]) + b2}, loc=op.loc)


def _linear_slice_only(rw: Rewriter, op: Op) -> Op | None:
    return fold_linear_slice(rw, op) if op.kind == "linear" else None


@register_pass
@dataclasses.dataclass
class FuseLinears(Pass):
    name = "fuse-linears"
    summary = "merge chains of linears (also through slices) into one linear"
    duplicate: bool = dataclasses.field(default=False, metadata={
        "help": "also fold a linear that has other users (duplicating its work into each consumer)"})

    def run(self, module: Module) -> None:
        patterns = [remove_identity_linear, _linear_into_linear if self.duplicate else fold_linear_linear,
                    _linear_slice_only, _fold_slices]
        apply_patterns(module, patterns)
