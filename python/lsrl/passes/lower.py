"""The ``lower{target=…,activations=…}`` pass: layer form → a chain of target-architecture layers.

The pass knows no target itself: targets register a lowering function with :func:`register_lowering`
(every target of ``lsrl.targets`` does when the package is imported), so this module never imports them.  A lowering is ``fn(module, *, activations, t_max) -> Module`` (with ``exact=true`` the pass first moves
every constant to the exact domain, so the weight algebra does not round); it receives the
layer form produced by ``debranch`` (a chain ``input → linstate → (linear|relu|multi)* → …``) and returns
a chain of target ops ending in a ``linear`` readout, with ``module.metadata`` describing the result.
"""
from __future__ import annotations

from dataclasses import field
from typing import Callable, ClassVar, Literal

from ..assumptions import recorded_t_max, tightest_t_max, validate_t_max
from ..errors import CompileError, OptionError
from . import Pass, forget_analyses, register_pass

__all__ = ["LOWERINGS", "register_lowering", "unregister_lowering", "Lower", "lowering"]

LOWERINGS: dict[str, Callable] = {}
_DEFAULT: list[str] = []  # the target lowered to when the pass names none


def register_lowering(name: str, fn: Callable, *, default: bool = False) -> Callable:
    """Register ``fn(module, *, activations, t_max) -> Module`` as the lowering of target ``name``
    (``default``: the one ``lower`` uses when no target is named)."""
    existing = LOWERINGS.get(name)
    if existing is not None and (existing.__module__, existing.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"lowering for target {name!r} registered twice")
    LOWERINGS[name] = fn
    if default and name not in _DEFAULT:
        _DEFAULT.append(name)
    return fn


def unregister_lowering(name: str) -> None:
    LOWERINGS.pop(name, None)
    if name in _DEFAULT:
        _DEFAULT.remove(name)


def lowering(name: str | None) -> Callable:
    """The registered lowering of target ``name`` (None: the default target), or a CompileError.  The
    targets are registered by then: importing any ``lsrl`` module imports the package, which imports them."""
    if name is None:
        if len(_DEFAULT) != 1:
            raise CompileError(f"lower: name a target (target=...); available targets: {', '.join(sorted(LOWERINGS))}")
        name = _DEFAULT[0]
    try:
        return LOWERINGS[name]
    except KeyError:
        raise CompileError(_unknown_target(name)) from None


def _unknown_target(name: str) -> str:
    return f"unknown target {name!r}; available targets: {', '.join(sorted(LOWERINGS))}"


@register_pass
class Lower(Pass):
    name: ClassVar[str] = "lower"
    summary: ClassVar[str] = "lower the layer form to the layers of a registered target architecture"

    target: str | None = field(default=None, metadata={"help": "target architecture (default: the default target)"})
    activations: Literal["ideal", "standard"] = field(
        default="ideal", metadata={"help": "'ideal' (σ, tanh → ReLU; exact) or 'standard' (real activations)"})
    t_max: int | None = field(default=None, metadata={
        "help": "longest sequence the model must handle (bounds states for range analysis)"})

    exact: bool = field(default=False, metadata={
        "help": "do the weight algebra in exact rationals (weights that are not floats stay exact)"})
    dtype: Literal["float64", "float32"] = field(default="float64", metadata={
        "help": "the precision the model will run in: constants are chosen for it, and a construction that "
                "cannot be right in it is refused"})

    def __post_init__(self):
        self.t_max = validate_t_max(self.t_max, "lower")
        if self.target is not None and self.target not in LOWERINGS:  # named where the pipeline is written
            raise OptionError(f"lower: {_unknown_target(self.target)}")

    def run(self, module):
        fn = lowering(self.target)
        if self.exact:
            to_exact_module(module)
        module.metadata = dict(module.metadata, dtype=self.dtype)  # what the lowering chooses constants for
        # a length an earlier pass assumed (canonicalize{t_max=…}) binds the lowered model too
        t_max = tightest_t_max(recorded_t_max(module), self.t_max)
        # what lsrl.Model's error bound analyses (passes.error_bound) on demand: ideal activations compute the
        # layer form's ops; other modes add approximation errors, which their lowering may state per op
        # (metadata "local_errors", empty where the mode computes the layer form's ops too) for it to add
        layer_form = module.clone()
        lowered = fn(module, activations=self.activations, t_max=t_max)
        limits = {**_range_limits(lowered), **lowered.metadata.get("dtype_limits", {})}
        if limits:
            lowered.metadata["dtype_limits"] = limits
        limit = limits.get(self.dtype)
        if limit is not None:
            raise CompileError(f"lower{{dtype={self.dtype}}}: {limit}")
        # what was recorded for the layer form (or the program) does not describe the target's layers
        metadata = dict(lowered.metadata, dtype=self.dtype)
        local_errors = metadata.pop("local_errors", None)
        # how its executors read every kept value: in two narrower parts, resolving a step, through which norms
        reads = {key: metadata.pop(key) for key in ("split_reads", "read_step", "stream_norms") if key in metadata}
        lowered.metadata = metadata
        forget_analyses(lowered)
        if self.activations == "ideal" or local_errors is not None:
            layer_form.metadata = dict(layer_form.metadata, t_max=t_max, **reads)
            if local_errors:
                layer_form.metadata["local_errors"] = local_errors
            lowered.layer_form = layer_form
        return lowered


def _range_limits(module) -> dict:
    """Why the lowered ``module`` cannot run in a dtype, per dtype: a weight past float32's largest number, which a
    float32 run reads as inf (a product's decoding of two operands bounded near 10^13), or a nonzero weight below
    the dtype's smallest normal number, which it stores with an error no longer relative to the weight (a small
    weight scaled by a unit's ε beside a large input)."""
    import numpy as np

    from ..ir.matrix import Matrix, Vector

    limits: dict = {}
    for op in module.ops:
        if op.kind == "input":  # its bounds are checked against the dtype where inputs are
            continue
        for key, value in op.attrs.items():
            if not isinstance(value, (Matrix, Vector)):
                continue
            floats = value.to_float()
            numbers = np.abs(floats.scipy().data if isinstance(value, Matrix) else floats.values)
            numbers = numbers[np.isfinite(numbers) & (numbers != 0)]
            if not numbers.size:
                continue
            biggest, smallest = float(np.max(numbers)), float(np.min(numbers))
            for dtype in ("float32", "float64"):
                info = np.finfo(dtype)
                if dtype == "float32" and biggest > float(info.max):
                    why = f"past float32's largest number ({float(info.max):.3g}): a float32 run would read inf"
                    found = biggest
                elif smallest < float(info.tiny):
                    why = (f"below {dtype}'s smallest normal number ({float(info.tiny):.3g}): a {dtype} run would "
                           "round it by more than its precision")
                    found = smallest
                else:
                    continue
                limits.setdefault(dtype, f"{op.describe()} has a weight {key} of {found:.3g}, {why}; tighten the "
                                         "Input bounds or t_max, or rescale the program's weights")
    return limits


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
