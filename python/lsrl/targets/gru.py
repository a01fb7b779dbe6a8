"""Target ``gru`` (targets.md): one ``gru`` layer per stage of the layer form; see :mod:`lsrl.targets.ideal`
and :mod:`lsrl.targets.standard` for the constructions."""
from __future__ import annotations

from ..passes.lower import register_lowering
from .ideal import lower_recurrent

__all__ = ["lower"]


def lower(module, *, activations: str = "ideal", t_max: int | None = None):
    return lower_recurrent(module, "gru", activations, t_max)


register_lowering("gru", lower)
