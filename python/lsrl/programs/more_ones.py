"""The paper's Fig. 1 program: "are there more ones than zeros so far?" (programs.md §1)."""
from __future__ import annotations

from ..lang import ForEach, Input, LinState
from ..sugar import f_larger, f_not

__all__ = ["more_ones"]


def more_ones(scale: float = 1000):
    """Bits ``x_t ∈ {0, 1}`` in; 1 at step ``t`` iff strictly more 1s than 0s among ``x_1..x_t``.

    The counts are integers, so the output is exact for any ``scale ≥ 1``.
    """
    x = Input(1, lower=0, upper=1, name="x", integer=True)
    ones = LinState(x, A=[[1]], B=[[1]], init_state=[0], name="ones")
    is_zero = f_not(x, name="is_zero")
    zeros = LinState(is_zero, A=[[1]], B=[[1]], init_state=[0], name="zeros")
    out = f_larger(ones, zeros, scale=scale, name="out")
    return ForEach(out)
