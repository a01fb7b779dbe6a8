"""The assumptions a module is compiled under, validated where they are given and checked where it runs.

Compilation relies on two facts about the inputs: every feature lies inside the input op's ``lower``/``upper``
bounds, and no sequence is longer than ``t_max`` (``module.metadata["t_max"]``; passes that assume a length,
``canonicalize{use_ranges=true,t_max=…}`` and ``lower{t_max=…}``, record it there).  ``t_max`` is validated
by :func:`validate_t_max` (the one place passes, :func:`lsrl.compile` and the model loader use), dimensions
against :data:`MAX_DIMENSION` (the language, the IR parser and the loader); runs are checked by
:func:`check_sequence_length`, :class:`InputBounds` and :func:`check_finite_outputs` (:class:`lsrl.Model` on
every call by default, :func:`lsrl.ir.interpret` for ``t_max``).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .errors import InputDomainError, LsrlError, NumericRangeError, OptionError, SequenceLengthError

__all__ = ["MAX_DIMENSION", "FLOAT64_MAX", "OPT_OUT", "validate_t_max", "tightest_t_max", "recorded_t_max",
           "check_sequence_length", "InputBounds", "check_finite_outputs"]


#: the largest dimension (features, units, rows) lsrl accepts anywhere: in the language, in IR text and in
#: saved models.  2^20 keeps the largest literal one dimension implies (an exact identity<n>, n Fractions)
#: at a few hundred MiB, so a typo or a hostile file fails clearly instead of exhausting memory
MAX_DIMENSION = 1 << 20
#: the largest magnitude of a constant: every weight, also an exact one, must have a float64 value
FLOAT64_MAX = Fraction(float(np.finfo(np.float64).max))


def validate_t_max(t_max, who: str, error: type[LsrlError] = OptionError) -> int | None:
    """``t_max`` as an int (None stays None); raises ``error`` unless it is a positive integer."""
    if t_max is None:
        return None
    if not isinstance(t_max, (int, np.integer)) or isinstance(t_max, (bool, np.bool_)) or t_max < 1:
        raise error(f"{who}: t_max must be a positive integer (the longest sequence the model must handle), "
                    f"got {t_max!r}")
    return int(t_max)


def tightest_t_max(*values: int | None) -> int | None:
    """The smallest of the given lengths (None = unbounded): assumptions only ever accumulate."""
    known = [v for v in values if v is not None]
    return min(known) if known else None


def recorded_t_max(module) -> int | None:
    """The ``t_max`` a module was transformed or compiled under (``module.metadata["t_max"]``), or None."""
    return validate_t_max(module.metadata.get("t_max"), f"module @{module.name} metadata")


OPT_OUT = " (check_assumptions=False skips this check)"


def check_sequence_length(t_max: int | None, length: int, who: str, *, first_step: int = 0,
                          hint: str = "") -> None:
    """Raise :class:`SequenceLengthError` when steps ``first_step … first_step + length − 1`` go past ``t_max``
    (``hint`` ends the message, e.g. :data:`OPT_OUT`)."""
    if t_max is not None and first_step + length > t_max:
        last = first_step + length - 1
        where = f"a sequence of {length} steps" if first_step == 0 else \
            f"the stream reached {last + 1} steps (this chunk covers steps {first_step}…{last})"
        raise SequenceLengthError(f"{who}: {where} is longer than t_max={t_max}, the length the module was "
                                  f"compiled or transformed under; later outputs are not guaranteed{hint}")


class InputBounds:
    """The ``lower``/``upper`` bounds of an input op, prepared once so that checking a run costs one min and
    one max per feature (only over the sides that are bounded); the location is searched only on failure."""

    def __init__(self, input_op):
        self.input_op = input_op
        # Python lists: comparing a few features in Python costs less than numpy's per-call overhead
        self.exact = {name: input_op.attrs[name].values.tolist() for name in ("lower", "upper")}
        self.float = {name: input_op.attrs[name].to_float().values.tolist() for name in ("lower", "upper")}
        self.bounded = {name: not all(math.isinf(v) for v in self.float[name]) for name in ("lower", "upper")}
        self.integer = bool(input_op.attrs.get("integer", 0))
        grid = input_op.attrs.get("grid")
        steps = [] if grid is None else grid.to_float().values.tolist()
        #: per gridded feature: (feature, lower, step) — the values it may take are lower + k·step
        self.grid = [(i, self.float["lower"][i], g) for i, g in enumerate(steps) if g > 0]

    def check(self, x: np.ndarray, who: str, *, first_step: int = 0, hint: str = "") -> None:
        """Raise :class:`InputDomainError` when some ``x[b, t, i]`` lies outside ``[lower_i, upper_i]`` (bounds
        included).  Exact (object) inputs are compared with the exact bounds, float inputs with the bounds
        rounded to float."""
        if x.size == 0:
            return
        exact = x.dtype == object
        flat = x.reshape(-1, x.shape[-1])
        for name, below in (("lower", True), ("upper", False)):
            if not (exact or self.bounded[name]):
                continue
            limit = self.exact[name] if exact else self.float[name]
            extreme = (flat.min(axis=0) if below else flat.max(axis=0)).tolist()
            for feature, (value, bound) in enumerate(zip(extreme, limit)):
                if value < bound if below else value > bound:
                    self._raise(x, name, limit, feature, who, first_step, hint)
        if self.integer:
            fractional = flat != np.floor(flat) if not exact else np.vectorize(lambda v: v != int(v), otypes=[bool])(flat)
            if np.any(fractional):
                row, feature = (int(v) for v in np.argwhere(fractional)[0])
                b, t = divmod(row, x.shape[1])
                raise InputDomainError(
                    f"{who}: input x[batch={b}, step={first_step + t}, coord={feature}] = {x[b, t, feature]} is not "
                    f"an integer, but {self.input_op.describe()} declares integer inputs; outputs are only "
                    f"guaranteed on the declared domain{hint}")
        for feature, start, step in self.grid:
            self._check_grid(x, feature, start, step, who, first_step, hint)

    def _check_grid(self, x: np.ndarray, feature: int, start: float, step: float, who: str, first_step: int,
                    hint: str) -> None:
        """Raise :class:`InputDomainError` where feature ``feature`` of ``x`` is not ``start + k·step`` (exact: the
        grid's declaration keeps each of these operations exact in float64; an exact input in rationals)."""
        column = x[:, :, feature] if x.dtype == object else np.asarray(x[:, :, feature], dtype=np.float64)
        if x.dtype == object:
            origin, spacing = Fraction(start), Fraction(step)
            off = np.vectorize(lambda v: ((Fraction(v) - origin) / spacing).denominator != 1, otypes=[bool])(column)
        else:
            k = np.rint((column - start) / step)
            off = start + k * step != column
        if np.any(off):
            b, t = (int(v) for v in np.argwhere(off)[0])
            raise InputDomainError(
                f"{who}: input x[batch={b}, step={first_step + t}, coord={feature}] = {x[b, t, feature]} is not on "
                f"the grid {start} + k·{step} that {self.input_op.describe()} declares for it; outputs are only "
                f"guaranteed on the declared domain{hint}")

    def _raise(self, x, name: str, limit: list, feature: int, who: str, first_step: int, hint: str):
        column = x[:, :, feature]
        bad = np.asarray(column < limit[feature] if name == "lower" else column > limit[feature], dtype=bool)
        b, t = (int(v) for v in np.argwhere(bad)[0])
        raise InputDomainError(
            f"{who}: input x[batch={b}, step={first_step + t}, coord={feature}] = {x[b, t, feature]} violates the "
            f"{name} bound {limit[feature]} of {self.input_op.describe()}; outputs are only guaranteed inside the "
            f"input bounds{hint}")


def check_finite_outputs(y: np.ndarray, who: str, *, first_step: int = 0, hint: str = "") -> None:
    """Raise :class:`NumericRangeError` when an output is inf or NaN (the run overflowed the float range);
    every backend then fails the same way instead of returning inf in one and NaN in another."""
    if y.dtype == object or y.size == 0 or np.isfinite(y).all():
        return
    b, t, i = (int(v) for v in np.argwhere(~np.isfinite(y))[0])
    raise NumericRangeError(f"{who}: output y[batch={b}, step={first_step + t}, coord={i}] = {y[b, t, i]}: the "
                            f"computation overflowed the float range (inputs or states too large for this model){hint}")


def check_dtype_range(x: np.ndarray, dtype: np.dtype, who: str, *, first_step: int = 0, hint: str = "") -> None:
    """Raise :class:`NumericRangeError` when an input does not fit ``dtype`` (float32 overflows to inf past
    3.4e38, which float64 inputs may hold): the run would start from inf instead of the value given."""
    if x.dtype == object or x.size == 0 or dtype == np.float64:
        return
    largest = float(np.finfo(dtype).max)
    too_large = np.abs(x) > largest
    if not too_large.any():
        return
    b, t, i = (int(v) for v in np.argwhere(too_large)[0])
    raise NumericRangeError(f"{who}: input x[batch={b}, step={first_step + t}, coord={i}] = {x[b, t, i]} does not "
                            f"fit {dtype.name} (largest {largest:.4g}){hint}")
