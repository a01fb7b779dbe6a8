"""How far a compiled model is from its program, in the precision it runs in (docs/numerics.md, "Checking a
model").

:meth:`lsrl.Model.check` runs three things on the same inputs: the program in the float64 interpreter (the
oracle), the model in the dtype asked for, and — as the yardstick of what that dtype can do at all — the
program itself op by op in that dtype (the C++ executor).  A model whose error is far above the program's own
shows that compilation lost precision; one whose program is as far off shows that the dtype is too coarse for
the program.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PrecisionReport", "DEFAULT_TOLERANCE", "DTYPES", "dtype_of"]

#: the dtypes models run in (the C++ executor's)
DTYPES = (np.dtype(np.float64), np.dtype(np.float32))

#: relative tolerance (error / max |oracle output|) when the caller gives none: float64 keeps standard mode's
#: accuracy limit (targets/standard.py); float32 allows 2^-10 — the paper's token program (multiplicative
#: conditionals, n = 3) measures ≤ 7.7e-5 of its largest token on every target, and a wrong token is ≥ 1/9 off
DEFAULT_TOLERANCE = {"float64": 1e-6, "float32": 2.0 ** -10}


def dtype_of(dtype, who: str, error: type = ValueError) -> np.dtype:
    """``dtype`` (a name or a numpy type) as float64 or float32; ``error`` naming ``who`` otherwise."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:  # a name numpy does not know ("fp32"); None is not such a name: np.dtype(None) is float64
        resolved = None
    if resolved is None or dtype is None or resolved not in DTYPES:
        raise error(f"{who}: dtype must be float64 or float32, got {dtype!r}")
    return resolved


@dataclass(frozen=True)
class PrecisionReport:
    """The outcome of :meth:`lsrl.Model.check`.

    ``error``: max |model − oracle| over every output; ``scale``: max |oracle|; ``relative_error``:
    ``error / scale`` (``error`` when the oracle is all zero); ``program_error``: the program's own error run op
    by op in ``dtype`` (None without the C++ kernel); ``within``: ``relative_error <= tolerance``."""
    dtype: str
    error: float
    scale: float
    relative_error: float
    program_error: float | None
    tolerance: float
    bound: float | None = None
    within_bound: bool | None = None

    @property
    def within(self) -> bool:
        return bool(self.relative_error <= self.tolerance)

    def __bool__(self) -> bool:
        return self.within

    def describe(self) -> str:
        text = (f"{self.dtype}: max error {self.error:.3g} = {self.relative_error:.3g} of the largest output "
                f"{self.scale:.3g} (tolerance {self.tolerance:.3g})")
        if self.program_error is not None:
            text += f"; the program run op by op in {self.dtype} is off by {self.program_error:.3g}"
        if self.bound is not None:
            text += f"; a-priori bound {self.bound:.3g} ({'held' if self.within_bound else 'EXCEEDED'})"
        return text


def measure(model_out: np.ndarray, oracle: np.ndarray, program_out: np.ndarray | None, dtype: np.dtype,
            tolerance: float | None, bound: np.ndarray | None = None) -> PrecisionReport:
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE[dtype.name]
    elif not (isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and tolerance >= 0):
        raise ValueError(f"Model.check: tolerance must be a number >= 0, got {tolerance!r}")
    oracle = np.asarray(oracle, dtype=np.float64)
    deviation = np.asarray(model_out, dtype=np.float64) - oracle
    error = _max_abs(deviation)
    scale = _max_abs(oracle)
    program_error = None if program_out is None else _max_abs(np.asarray(program_out, dtype=np.float64) - oracle)
    # a NaN deviation compares False: outside every bound
    within_bound = None if bound is None else bool(np.all(np.abs(deviation) <= bound))
    return PrecisionReport(dtype=dtype.name, error=error, scale=scale,
                           relative_error=error / scale if scale > 0 else error,
                           program_error=program_error, tolerance=float(tolerance),
                           bound=None if bound is None else float(np.max(bound, initial=0.0)),
                           within_bound=within_bound)


def _max_abs(values: np.ndarray) -> float:
    # NaN counts as infinitely wrong rather than vanishing from the max
    return float(np.max(np.where(np.isnan(values), np.inf, np.abs(values)))) if values.size else 0.0

