"""The ``lower{target=…,activations=…}`` pass: layer form → a chain of target-architecture layers.

The pass knows no target itself: targets register a lowering function with :func:`register_lowering`
(``lsrl.targets`` registers ``linear_rnn``, ``relu_rnn``, ``lstm`` and ``gru`` when imported), so this
module never imports them.  A lowering is ``fn(module, *, activations, t_max) -> Module`` (with ``exact=true`` the pass first moves
every constant to the exact domain, so the weight algebra does not round); it receives the
layer form produced by ``debranch`` (a chain ``input → linstate → (linear|relu|multi)* → …``) and returns
a chain of target ops ending in a ``linear`` readout, with ``module.metadata`` describing the result.
"""
from __future__ import annotations

import importlib
from dataclasses import field
from typing import Callable, ClassVar, Literal

from ..assumptions import recorded_t_max, tightest_t_max, validate_t_max
from ..errors import CompileError
from . import Pass, register_pass

__all__ = ["LOWERINGS", "register_lowering", "Lower", "lowering"]

LOWERINGS: dict[str, Callable] = {}


def register_lowering(name: str, fn: Callable) -> Callable:
    """Register ``fn(module, *, activations, t_max) -> Module`` as the lowering of target ``name``."""
    existing = LOWERINGS.get(name)
    if existing is not None and (existing.__module__, existing.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"lowering for target {name!r} registered twice")
    LOWERINGS[name] = fn
    return fn


def lowering(name: str) -> Callable:
    """The registered lowering of target ``name`` (importing ``lsrl.targets`` first), or a CompileError."""
    if name not in LOWERINGS:
        try:
            importlib.import_module("lsrl.targets")
        except ModuleNotFoundError as e:  # pragma: no cover - the package ships with lsrl
            if e.name != "lsrl.targets":
                raise
    try:
        return LOWERINGS[name]
    except KeyError:
        raise CompileError(f"unknown target {name!r}; available targets: {', '.join(sorted(LOWERINGS))}") from None


@register_pass
class Lower(Pass):
    name: ClassVar[str] = "lower"
    summary: ClassVar[str] = "lower the layer form to target layers (linear_rnn, relu_rnn, lstm, gru)"

    target: str = field(default="linear_rnn", metadata={"help": "target architecture"})
    activations: Literal["ideal", "standard"] = field(
        default="ideal", metadata={"help": "'ideal' (σ, tanh → ReLU; exact) or 'standard' (real activations)"})
    t_max: int | None = field(default=None, metadata={
        "help": "longest sequence the model must handle (bounds states for range analysis)"})

    exact: bool = field(default=False, metadata={
        "help": "do the weight algebra in exact rationals (weights that are not floats stay exact)"})

    def __post_init__(self):
        self.t_max = validate_t_max(self.t_max, "lower")

    def run(self, module):
        fn = lowering(self.target)
        if self.exact:
            to_exact_module(module)
        # a length an earlier pass assumed (canonicalize{t_max=…}) binds the lowered model too
        return fn(module, activations=self.activations, t_max=tightest_t_max(recorded_t_max(module), self.t_max))


def to_exact_module(module):
    """Move every constant of ``module`` to the exact domain (in place); infinite bounds stay float."""
    from ..ir.matrix import Matrix, Vector

    for op in module.ops:
        for key, value in list(op.attrs.items()):
            if isinstance(value, Matrix):
                op.attrs[key] = value.to_exact()
            elif isinstance(value, Vector) and not value.exact:
                import numpy as np
                if np.all(np.isfinite(value.values)):
                    op.attrs[key] = value.to_exact()
    return module
