"""The one check of a module's *chain* shape: the layer form (what ``debranch`` produces and ``lower`` reads) and
a lowered model (what ``lower`` produces, :class:`lsrl.Model` runs and serialization stores).

A chain is ``input → op₁ → … → opₙ`` in ``module.ops`` order, every op reading exactly the op before it, the
output the last op.  The layer form's ops are :data:`LAYER_FORM_KINDS`; a lowered model's are its target's
op kinds followed by a ``linear`` readout.  ``debranch`` promises more (:func:`layer_form_problems` with
``strict=True``): it opens with a ``linstate`` and never puts a ``linear`` before a ``linear`` or a
``linstate`` (those fold).
"""
from __future__ import annotations

from typing import Iterable

from ..errors import LsrlError
from .core import Module, Op

__all__ = ["LAYER_FORM_KINDS", "chain_problems", "layer_form_problems", "is_layer_form", "check_chain",
           "check_layer_form"]

#: the op kinds of the layer form besides its input
LAYER_FORM_KINDS = frozenset({"linstate", "linear", "relu", "multi"})


def chain_problems(module: Module, kinds: Iterable[str], *, readout: bool = False) -> list[str]:
    """Why ``module`` is not a chain of ``kinds`` ops after its input (empty when it is); ``readout=True``
    also requires a last op that is a ``linear`` readout (whatever ``kinds`` are)."""
    kinds = frozenset(kinds)
    ops = module.ops
    if not ops or ops[0].kind != "input":
        return ["the first op is not the input"]
    problems = []
    body = ops[1:-1] if readout else ops[1:]
    for i, op in enumerate(ops[1:], 1):
        if len(op.operands) != 1 or op.operands[0] is not ops[i - 1]:
            problems.append(f"{op.describe()} does not read the op before it")
    for op in body:
        if op.kind not in kinds:
            problems.append(f"{op.describe()} is not one of {', '.join(sorted(kinds))}")
    if readout and (len(ops) < 2 or ops[-1].kind != "linear"):
        problems.append("the last op is not a linear readout")
    if module.output is not ops[-1]:
        problems.append("the output is not the last op")
    return problems


def layer_form_problems(module: Module, *, strict: bool = True) -> list[str]:
    """Why ``module`` is not in the layer form (empty when it is); ``strict`` adds ``debranch``'s promises."""
    problems = chain_problems(module, LAYER_FORM_KINDS)
    ops = module.ops
    if strict and ops and ops[0].kind == "input":
        if len(ops) < 2 or ops[1].kind != "linstate":
            problems.append("the first op after the input is not a linstate")
        for op, after in zip(ops[1:], ops[2:]):
            if op.kind == "linear" and after.kind in ("linear", "linstate"):
                problems.append(f"{op.describe()} is a linear followed by a {after.kind}")
    return problems


def is_layer_form(module: Module) -> bool:
    return not layer_form_problems(module)


def check_chain(module: Module, kinds: Iterable[str], who: str, *, readout: bool = False,
                error: type = LsrlError, hint: str = "") -> list[Op]:
    """The ops of ``module`` when it is a chain (see :func:`chain_problems`), else ``error`` naming ``who``
    and the first problem."""
    problems = chain_problems(module, kinds, readout=readout)
    if problems:
        raise error(f"{who}: expected {'a lowered model' if readout else 'the layer form'} (a chain), but "
                    f"{problems[0]}{hint}")
    return module.ops


def check_layer_form(module: Module, who: str, error: type = LsrlError) -> list[Op]:
    """The ops of a layer-form module, or ``error`` saying why it is not one (run debranch first)."""
    return check_chain(module, LAYER_FORM_KINDS, who, error=error, hint="; run debranch first")
