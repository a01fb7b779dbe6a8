"""Random programs of the sugar's λ-conditionals, for robustness studies of compilation in finite precision.

The paper's programs use λ-conditionals in a few fixed shapes; these draw them in many: ``f_ifelse``,
``f_ifelse_step``, a comparison with a conditional, a step times a value, on comparisons (``f_larger``,
``f_smaller``, ``f_eq``) of the input, its square or a shifted ReLU of it.  Inputs are integers in [0, 3] or
reals on quarters in [−3, 3], so comparisons also sit on their edges.  They put λ = 10¹⁰ beside steps of
μ = 1000 in every combination a compiler fuses.
"""
from __future__ import annotations

import numpy as np

from ..lang import Concat, ForEach, Input, Linear, Multi, ReLU
from ..sugar import f_eq, f_ifelse, f_ifelse_step, f_larger, f_smaller

__all__ = ["random_conditional_program"]

_EDGES = (0.0, 0.5, 1.0, 1.5, -1.0, 2.0)


def random_conditional_program(rng: np.random.Generator, length: int = 6,
                               batch: int = 2) -> tuple[ForEach, np.ndarray]:
    """``(program, xs)``: a random λ-conditional program and ``batch`` prompts of ``length`` steps for it."""
    integer = bool(rng.integers(2))
    width = int(rng.integers(1, 3))
    x = Input(width, lower=0 if integer else -3, upper=3, integer=integer)
    values = [x[i] for i in range(width)] if width > 1 else [x]
    if rng.integers(2):
        values.append(Multi(Concat([values[0], values[-1]])))
    if rng.integers(2):
        values.append(ReLU(Linear(values[0], [[float(rng.choice([1.0, -1.0, 2.0]))]],
                                  b=[float(rng.choice([0.0, 1.12, -0.5, 1.0]))])))

    def pick():
        return values[int(rng.integers(len(values)))]

    steps = []
    for _ in range(int(rng.integers(1, 3))):
        value, edge, kind = pick(), float(rng.choice(_EDGES)), int(rng.integers(3))
        steps.append(f_larger(value, edge) if kind == 0 else f_smaller(value, edge) if kind == 1 else
                     f_eq(value, pick()))
    outputs = []
    for _ in range(int(rng.integers(1, 3))):
        step, a, b = steps[int(rng.integers(len(steps)))], pick(), pick()
        kind = int(rng.integers(4))
        outputs.append(f_ifelse(step, a, b) if kind == 0 else f_ifelse_step(step, a, b) if kind == 1 else
                       f_larger(a, f_ifelse(step, a, b)) if kind == 2 else Multi(Concat([step, a])))
    shape = (batch, length, width)
    xs = rng.integers(0, 4, shape).astype(float) if integer else np.round(rng.uniform(-3, 3, shape) * 4) / 4
    return ForEach(Concat(outputs) if len(outputs) > 1 else outputs[0]), xs
