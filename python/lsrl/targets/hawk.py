"""Target ``hawk`` (targets.md §7, docs/recurrentgemma.md): Hugging Face ``RecurrentGemmaModel`` with
``block_types=["recurrent"]``.

The model is ``rg_embed → rg_recurrent_block × n → rg_final_norm → linear`` (op kinds in
:mod:`lsrl.targets.shared.recurrentgemma`, each holding exactly the HF tensors of its module).  S stages run in
the temporal blocks as delay lines of the depthwise conv (``conv1d_width ≥ t_max`` unless ``A`` is nilpotent),
R/M stages in the gated MLPs.  ``activations="ideal"``: ``hidden_activation="relu"`` (ReLUs, products and
identities exact up to float64 rounding); ``"standard"``: ``gelu_pytorch_tanh`` (identities and products exact
up to rounding, ReLUs ≈ gelu(κx)/κ with κ = 2^30).  No exact (rational) mode: RMSNorm takes a square root.
``model.to_hf(path)`` writes the HF directory (config.json, model.safetensors, lsrl_io.json).
"""
from __future__ import annotations

from ..ir.core import Module, Op
from .registry import Target, register_target
from .shared.recurrentgemma import EMBED, FINAL_NORM, RECURRENT, block_layer_info, lower_stream, write_hf

__all__ = ["HawkTarget"]


class HawkTarget(Target):
    name = "hawk"
    summary = "Hawk: HF RecurrentGemmaModel, recurrent blocks only"
    op_kinds = frozenset({EMBED, RECURRENT, FINAL_NORM})
    exact_activations = ()

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        return lower_stream(module, target=self.name, activations=activations, t_max=t_max,
                            recurrent_at=lambda b: True)

    def layer_info(self, group: list[Op]) -> dict:
        return block_layer_info(group)

    def to_hf(self, model, path) -> None:
        write_hf(model, path, block_types=["recurrent"])


register_target(HawkTarget())
