"""``round-to-float``: round every exact rational constant to float64.

The weight algebra of the earlier passes may stay exact (``debranch{exact=true}``, ``lower{exact=true}``,
exact constants in the source); the float executors — numpy, the C++ kernel, torch, ONNX — read float64
weights, so :func:`lsrl.compile` ends with this pass unless it was asked for an exact model.  Rounding is
to nearest, once per constant (never an accumulation of roundings); infinite bounds are floats already.
"""
from __future__ import annotations

import dataclasses

from ..ir.core import Module
from ..ir.matrix import Matrix, Vector
from . import Pass, register_pass

__all__ = ["RoundToFloat"]


@register_pass
@dataclasses.dataclass
class RoundToFloat(Pass):
    name = "round-to-float"
    summary = "round every exact rational constant to float64 (what the float executors run)"

    def run(self, module: Module) -> None:
        for op in module.ops:
            for key, value in list(op.attrs.items()):
                if isinstance(value, (Matrix, Vector)) and value.exact:
                    op.attrs[key] = value.to_float()
