"""``lsrl.compile``: program → layer form → target model (api.md "Compilation").

The default pipeline debranches the program into the layer form, puts its units on their program's scale
(so that float32 runs keep the program's exact integer arithmetic), gives every step read by a large weight a
unit of its own (so that λ multiplies an exact 0 or 1; docs/numerics.md), sums a row's λ-sized parts in a unit
of their own (so that small terms never meet their cancelling sum), lowers it to the target and rounds exact
constants to float64::

    debranch,rescale-units,materialize-steps,separate-large-terms,lower{target=…,activations=…},round-to-float

``debranch`` works on the program's affine normal form, where folding, CSE and dead-code removal happen
anyway: running ``canonicalize,constant-fold,cse,dce`` first gives the same model (same widths and nnz on the
paper's programs) at about 8× the compile time (token_map n=10: 0.59 s against 0.07 s).

``pipeline=`` replaces the passes before ``lower`` (a pipeline that already contains ``lower`` is used as
is, followed by ``round-to-float``).  The passes run as objects through :func:`lsrl.opt.run`;
:func:`compile_pipeline` gives them and ``Model.pipeline`` records their text, so ``lsrl-opt -p '<text>'``
reproduces a compilation.  The target and its activation modes come from the registry (:mod:`lsrl.targets`).
"""
from __future__ import annotations

import math
import sys

from .assumptions import validate_t_max
from .errors import CompileError
from .ir.core import as_module
from .model import Model
from .precision import dtype_of
from .passes import Pass, format_pipeline, parse_pipeline
from .targets import default_target, get_target

__all__ = ["compile", "compile_pipeline", "DEFAULT_PIPELINE"]

DEFAULT_PIPELINE = ("debranch", "rescale-units", "materialize-steps", "separate-large-terms")


def compile_pipeline(target: str, activations: str, *, exact: bool = False, t_max: int | None = None,
                     pipeline: str | None = None, dtype: str = "float64") -> list[Pass]:
    """The pass objects :func:`compile` runs (``lsrl.passes.format_pipeline`` writes them as pipeline text)."""
    from .passes.debranch import Debranch
    from .passes.lower import Lower
    from .passes.materialize_steps import MaterializeSteps
    from .passes.round_to_float import RoundToFloat
    from .passes.separate_large_terms import SeparateLargeTerms

    if pipeline is None:
        passes = parse_pipeline(",".join(DEFAULT_PIPELINE))
        if exact:
            passes = [Debranch(exact=True) if isinstance(p, Debranch) else p for p in passes]
    else:
        passes = parse_pipeline(pipeline.strip().rstrip(","))
    lowers = [p for p in passes if isinstance(p, Lower)]
    if lowers:  # the lowering that runs is the pipeline's
        target, activations = _lowered_target(lowers[0]).name, lowers[0].activations
    clamp_limit = get_target(target, "lsrl.compile").clamp_limits.get(activations)
    if clamp_limit is not None:
        for p in passes:
            if isinstance(p, MaterializeSteps):
                p.clamp_limit = min(p.clamp_limit, clamp_limit)
            # a target that holds a unit read that loudly in a ReLU pair (the standard GRU) refuses the separated
            # parts' λ-reads of units of bound 1 (a relative 1e-6 where the row's value is small)
            if isinstance(p, SeparateLargeTerms) and clamp_limit <= p.threshold:
                p.threshold = math.inf
    if not lowers:
        passes.append(Lower(target=target, activations=activations, t_max=t_max, exact=exact, dtype=dtype))
    elif any(p.dtype != dtype for p in lowers):
        raise CompileError(f"lsrl.compile: dtype={dtype!r} but the pipeline's lower has dtype={lowers[0].dtype!r}")
    if not exact:
        passes.append(RoundToFloat())
    return passes


def _lowered_target(lower):
    """The target a pipeline's ``lower`` pass lowers to (its own, or the default one)."""
    return get_target(lower.target, "lsrl.compile") if lower.target else default_target()


def _check_lowering(passes: list, target: str | None, activations: str, t_max: int | None, exact: bool) -> None:
    """A ``lower`` in a user's pipeline must not contradict what :func:`compile` was asked for (a model for
    another target, or without the ``t_max`` it was asked to check); ``target``, ``activations``, ``t_max`` and
    ``exact`` left at their defaults defer to the pipeline (``dtype`` must agree: :func:`compile_pipeline`)."""
    from .passes.lower import Lower

    for lower in (p for p in passes if isinstance(p, Lower)):
        lowered = _lowered_target(lower)
        for name, asked, given in (("target", target and get_target(target, "lsrl.compile").name, lowered.name),
                                   ("activations", None if activations == "ideal" else activations,
                                    lower.activations),
                                   ("t_max", t_max, lower.t_max), ("exact", exact or None, lower.exact)):
            if asked is not None and asked != given:
                raise CompileError(f"lsrl.compile: {name}={asked!r} but the pipeline's lower has {name}={given!r}; "
                                   "give the lowering's options in one place")


def _type_names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else k.__name__ for k in kinds)


def compile(program_or_module, target: str | None = None, *, activations: str = "ideal", exact: bool = False,
            pipeline: str | None = None, progress: bool = False, t_max: int | None = None,
            dtype: str = "float64") -> Model:
    """Compile a program (or an IR module) for ``target`` and return the :class:`lsrl.Model`.

    * ``target``: a registered target (``lsrl.targets.available_targets()``; docs/targets.md lists them);
      None: the default target (``lsrl.targets.default_target()``, the paper's gated linear RNN).
    * ``activations``: ``"ideal"`` (σ/tanh replaced by ReLU; exact) or ``"standard"`` (the architecture's
      real activations, runnable in its own executors; approximate, docs/targets.md states the bounds).
    * ``exact``: compute and keep the weights as exact rationals (activation modes that are exact only).
    * ``t_max``: the longest sequence the model must handle; range analysis uses it to bound states
      (needed by standard mode when states grow, e.g. counters).
    * ``dtype``: the precision the model will run in, ``"float64"`` or ``"float32"`` — the default of its runs
      and exports (:attr:`lsrl.Model.dtype`).  A construction that cannot be right in ``dtype`` (a standard
      GRU with λ-weights in float32) is refused; compiled for float64, such a model records why
      (:attr:`lsrl.Model.dtype_limits`) and its float32 runs and exports raise :class:`lsrl.PrecisionError`.
    * ``pipeline``: the passes to run before ``lower`` (default :data:`DEFAULT_PIPELINE`).
    * ``progress``: print the pipeline (as ``lsrl-opt`` text) and each pass's time to stderr.

    Raises :class:`lsrl.CompileError` for an unknown target or mode, a program the target cannot express
    (a multiplication on a target that cannot multiply) or values standard mode needs bounded but cannot bound.
    """
    from . import opt

    for name, value, kind in (("target", target, (str, type(None))), ("activations", activations, str), ("exact", exact, bool),
                              ("progress", progress, bool), ("pipeline", pipeline, (str, type(None)))):
        if not isinstance(value, kind):
            raise TypeError(f"lsrl.compile: {name} must be {_type_names(kind)}, got {value!r}")
    architecture = default_target() if target is None else get_target(target, "lsrl.compile")
    requested, target = target, architecture.name
    if activations not in architecture.activations:
        raise CompileError(f"lsrl.compile: activations must be one of {architecture.activations}, got "
                           f"{activations!r}")
    if exact and activations not in architecture.exact_activations:
        modes = architecture.exact_activations
        raise CompileError(f"{target} with {activations} activations cannot be exact; use "
                           + (f"activations={modes[0]!r} or exact=False" if modes else
                              f"exact=False ({target} has no exact mode)"))
    t_max = validate_t_max(t_max, "lsrl.compile", CompileError)
    dtype = dtype_of(dtype, "lsrl.compile", CompileError).name
    if exact and dtype != "float64":
        raise CompileError(f"lsrl.compile: exact=True keeps rational weights; dtype={dtype!r} cannot go with it")
    module = source = as_module(program_or_module, "lsrl.compile")
    passes = compile_pipeline(target, activations, exact=exact, t_max=t_max, pipeline=pipeline, dtype=dtype)
    _check_lowering(passes, requested, activations, t_max, exact)
    text = format_pipeline(passes)
    if progress:
        print(f"[lsrl.compile] lsrl-opt -p '{text}'", file=sys.stderr)
    module = opt.run(module, passes, time_passes=progress)
    if module.metadata.get("target") is None:
        raise CompileError(f"lsrl.compile: pipeline {text!r} did not end with a lowering (lower{{target=...}})")
    model = Model(module, source=source)
    #: the pipeline that built the model, as ``lsrl-opt -p`` text
    model.pipeline = text
    return model
