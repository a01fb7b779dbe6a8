"""``lsrl.compile``: program → layer form → target model (api.md "Compilation").

The default pipeline debranches the program into the layer form, puts its units on their program's scale
(so that float32 runs keep the program's exact integer arithmetic), gives every step read by a large weight a
unit of its own (so that λ multiplies an exact 0 or 1; docs/numerics.md) and lowers it::

    debranch,rescale-units,materialize-steps,lower{target=…,activations=…}

``debranch`` works on the program's affine normal form, where folding, CSE and dead-code removal happen
anyway: running ``canonicalize,constant-fold,cse,dce`` first gives the same model (same widths and nnz on the
paper's programs) at about 8× the compile time (token_map n=10: 0.59 s against 0.07 s).

``pipeline=`` replaces the passes before ``lower`` (a pipeline that already ends in ``lower`` is used as
is).  Everything runs through :func:`lsrl.opt.run`, so ``lsrl-opt`` reproduces a compilation.
"""
from __future__ import annotations

import sys
import time

from . import targets as _targets  # noqa: F401  (registers the target op kinds and lowerings on import lsrl)
from .assumptions import validate_t_max
from .errors import CompileError
from .ir.core import as_module
from .model import Model

__all__ = ["compile"]

DEFAULT_PIPELINE = ("debranch", "rescale-units", "materialize-steps")
TARGETS = ("linear_rnn", "relu_rnn", "lstm", "gru")
_PLANNED = {"hawk", "griffin", "mamba"}
ACTIVATIONS = ("ideal", "standard")


def lowering_pipeline(target: str, activations: str, *, exact: bool = False, t_max: int | None = None,
                      pipeline: str | None = None) -> str:
    """The pipeline text :func:`compile` runs."""
    if pipeline is None:
        names = list(DEFAULT_PIPELINE)
        if exact:
            names = [p + "{exact=true}" if p == "debranch" else p for p in names]
        pre = ",".join(names)
    else:
        pre = pipeline.strip().rstrip(",")
        last = pre.rsplit(",", 1)[-1].strip()
        if last == "lower" or last.startswith("lower{"):
            return pre
    opts = [f"target={target}", f"activations={activations}"]
    if t_max is not None:
        opts.append(f"t_max={int(t_max)}")
    if exact:
        opts.append("exact=true")
    lower = "lower{" + ",".join(opts) + "}"
    return f"{pre},{lower}" if pre else lower


def _type_names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else k.__name__ for k in kinds)


def compile(program_or_module, target: str = "linear_rnn", *, activations: str = "ideal", exact: bool = False,
            pipeline: str | None = None, progress: bool = False, t_max: int | None = None) -> Model:
    """Compile a program (or an IR module) for ``target`` and return the :class:`lsrl.Model`.

    * ``target``: ``"linear_rnn"`` (gated layers where the program multiplies), ``"relu_rnn"``, ``"lstm"``,
      ``"gru"``.
    * ``activations``: ``"ideal"`` (σ/tanh replaced by ReLU; exact) or ``"standard"`` (the architecture's
      real activations, runnable in ``torch.nn.LSTM``/``GRU``; approximate, docs/targets.md states the bounds).
    * ``exact``: compute and keep the weights as exact rationals (ideal mode only).
    * ``t_max``: the longest sequence the model must handle; range analysis uses it to bound states
      (needed by standard mode when states grow, e.g. counters).
    * ``pipeline``: the passes to run before ``lower`` (default :data:`DEFAULT_PIPELINE`).
    * ``progress``: print each pass and its time to stderr.

    Raises :class:`lsrl.CompileError` for an unknown target or mode, a program the target cannot express
    (a multiplication on ``relu_rnn``) or values standard mode needs bounded but cannot bound.
    """
    from . import targets as _targets  # noqa: F401  (registers the lowerings)
    from . import opt

    for name, value, kind in (("target", target, str), ("activations", activations, str), ("exact", exact, bool),
                              ("progress", progress, bool), ("pipeline", pipeline, (str, type(None)))):
        if not isinstance(value, kind):
            raise TypeError(f"lsrl.compile: {name} must be {_type_names(kind)}, got {value!r}")
    if target in _PLANNED:
        raise CompileError(f"target {target!r} is not implemented yet; available: {', '.join(TARGETS)}")
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    if activations not in ACTIVATIONS:
        raise CompileError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
    if exact and activations == "standard" and target in ("lstm", "gru"):
        raise CompileError(f"{target} with standard activations (sigmoid, tanh) cannot be exact; use "
                           "activations='ideal' or exact=False")
    t_max = validate_t_max(t_max, "lsrl.compile", CompileError)
    module = source = as_module(program_or_module, "lsrl.compile")
    text = lowering_pipeline(target, activations, exact=exact, t_max=t_max, pipeline=pipeline)
    if progress:
        from .passes import parse_pipeline
        for p in parse_pipeline(text):
            t0 = time.perf_counter()
            module = opt.run(module, [p])
            print(f"[lsrl.compile] {p.pipeline_text()}: {time.perf_counter() - t0:.3f} s", file=sys.stderr)
    else:
        module = opt.run(module, text)
    if module.metadata.get("target") is None:
        raise CompileError(f"lsrl.compile: pipeline {text!r} did not end with a lowering (lower{{target=...}})")
    if not exact:
        from .targets.common import to_float_module
        to_float_module(module)
    return Model(module, source=source)
