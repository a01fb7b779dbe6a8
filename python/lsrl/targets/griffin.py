"""Target ``griffin`` (targets.md §8, docs/recurrentgemma.md): Hugging Face ``RecurrentGemmaModel`` with its
default block cycle ``("recurrent", "recurrent", "attention")``.

As the recurrent-only model (:mod:`lsrl.targets.shared.recurrentgemma`), but every third HF block is an
``rg_attention_block`` whose local attention is the exact identity (``o_proj`` weight and bias 0: the residual
block adds 0); its gated MLP still runs an R/M stage.  S stages are scheduled on recurrent blocks only.
"""
from __future__ import annotations

from ..ir.core import Module, Op
from .registry import Target, register_target
from .shared.recurrentgemma import (ATTENTION, EMBED, FINAL_NORM, RECURRENT, block_layer_info, lower_stream,
                                    write_hf)

__all__ = ["GriffinTarget"]

BLOCK_TYPES = ["recurrent", "recurrent", "attention"]


class GriffinTarget(Target):
    name = "griffin"
    summary = "Griffin: HF RecurrentGemmaModel, recurrent/recurrent/attention (attention zeroed)"
    op_kinds = frozenset({EMBED, RECURRENT, ATTENTION, FINAL_NORM})
    exact_activations = ()

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        return lower_stream(module, target=self.name, activations=activations, t_max=t_max,
                            recurrent_at=lambda b: BLOCK_TYPES[b % 3] == "recurrent")

    def layer_info(self, group: list[Op]) -> dict:
        return block_layer_info(group)

    def to_hf(self, model, path) -> None:
        write_hf(model, path, block_types=BLOCK_TYPES)


register_target(GriffinTarget())
