"""The five conditional variants of the paper's Fig. 4, as the programs use them (programs.md §4).

Every conditional in the paper's programs has the shape "``value`` if ``cond`` else 0".  A program
describes one such node by its condition, its kept value and, for the ``optimized`` variant, the
negated condition ``c̄′`` computed directly (not as ``1 − c``).  Conditions are passed as builders
(``name -> variable``) so that only the nodes the chosen variant needs enter the graph: the
``optimized`` program holds no ``c``, the others no ``c̄′``.
"""
from __future__ import annotations

from typing import Callable

from ..sugar import CONDITIONAL_VARIANTS, f_conditional, f_ifelse, f_ifelse_mul, f_ifelse_optimized

__all__ = ["CONDITIONALS", "check_conditional", "gated", "named"]

CONDITIONALS = tuple(CONDITIONAL_VARIANTS)


def check_conditional(conditional: str) -> str:
    if conditional not in CONDITIONALS:
        raise ValueError(f"unknown conditional {conditional!r}; valid: {', '.join(CONDITIONALS)}")
    return conditional


def named(var, name: str):
    """Name a variable built by an operator (``x[i]``, ``a + b``), which takes no ``name=``."""
    var.name = name
    return var


def gated(conditional: str, cond: Callable, value, *, negated: Callable, value_nonneg: bool,
          scale: float, large_constant: float, name: str, zero: Callable | None = None):
    """``value`` where the condition holds, else 0, in the form of the chosen Fig. 4 variant.

    ``cond(name)`` builds the condition ``c``; ``negated(name)`` builds the directly computed ``c̄′``
    (used only by ``optimized``); ``value_nonneg`` says whether ``value ≥ 0`` on every input the
    program accepts (``optimized`` then uses its single-ReLU form).  ``zero(name)``, when given,
    builds the zero branch ``t*0`` of ``direct``/``multiplicative`` from its own copy of the value
    (as the reference writes ``q[i]`` twice), else it is ``value * 0``.
    """
    check_conditional(conditional)
    if conditional == "optimized":
        return f_ifelse_optimized(negated(f"{name}.neg_cond"), value, t_nonneg=value_nonneg,
                                  large_constant=large_constant, name=name)
    if zero is not None and conditional in ("direct", "multiplicative"):
        f_val = zero(f"{name}.zero")
        if conditional == "direct":
            return f_ifelse(cond(f"{name}.cond"), value, f_val, large_constant=large_constant,
                            name=name)
        return f_ifelse_mul(cond(f"{name}.cond"), value, f_val, name=name)
    return f_conditional(conditional, cond(f"{name}.cond"), value, scale=scale,
                         large_constant=large_constant, name=name)
