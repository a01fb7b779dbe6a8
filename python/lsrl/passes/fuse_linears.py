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
from .canonicalize import (compose_linear_linear, fold_linear_linear, fold_linear_slice, fold_slice_of_linear,
                           remove_identity_linear)
from .rewrite import Rewriter, apply_patterns

__all__ = ["FuseLinears"]


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
        patterns = [remove_identity_linear, compose_linear_linear if self.duplicate else fold_linear_linear,
                    _linear_slice_only, fold_slice_of_linear]
        apply_patterns(module, patterns)
