"""The exact constants of an exact layer form while a numerics pass works on its float64 image.

``rescale-units`` and ``materialize-steps`` decide everything on float64 values (which sums round, which rows are
bit-identical), because those decisions are about float runs.  On an exact module they run on its float image,
and every change they make is made here too in exact arithmetic (a scale, a partial sum, a bias gap), so that the
exact map stays the program's and the model's float runs read the constants a float module would hold.
"""
from __future__ import annotations

from fractions import Fraction

from ..ir.core import Op
from ..ir.matrix import Matrix, Vector

__all__ = ["ExactShadow", "layout_coefficient", "layout_number"]


def layout_coefficient(value):
    """A layout coefficient as a number: an exact layer form writes the rationals float64 cannot hold as "p/q"."""
    return Fraction(value) if isinstance(value, str) else value


def layout_number(value):
    """A coefficient as layouts write it (JSON): an int as it is, any other float as a float; an exact one as an
    int, a float64 that holds it, or "p/q"."""
    if not isinstance(value, Fraction):
        return value if isinstance(value, int) else float(value)
    if value.denominator == 1:
        return int(value)
    return float(value) if Fraction(float(value)) == value else str(value)


class ExactShadow:
    """The exact constants of the linear and state ops of a layer form: the ops hold their float64 images while a
    pass runs, :meth:`restore` puts the exact constants back."""

    def __init__(self, ops: list):
        self._held: dict[int, tuple[Op, dict]] = {}
        for op in ops:
            if op.kind in ("linear", "linstate"):  # the input's bounds may be infinite: no exact value
                self.track(op)

    @staticmethod
    def needed(ops: list) -> bool:
        """Whether some constant of ``ops`` is in the exact domain."""
        return any(isinstance(v, (Matrix, Vector)) and v.exact for op in ops for v in op.attrs.values())

    def track(self, op: Op) -> None:
        """Hold ``op``'s constants (a new op's too) and give the op their float images."""
        held = {name: v.to_exact() for name, v in op.attrs.items() if isinstance(v, (Matrix, Vector))}
        self._held[id(op)] = (op, held)
        op.attrs.update({name: v.to_float() for name, v in held.items()})

    def held(self, op: Op) -> dict:
        """``op``'s exact constants by name."""
        return self._held[id(op)][1]

    def set(self, op: Op, name: str, value) -> None:
        """A new exact constant of ``op``; the op gets its float image."""
        self.held(op)[name] = value.to_exact()
        op.attrs[name] = value.to_float()

    def scale_rows(self, op: Op, name: str, factors: list) -> None:
        value = self.held(op)[name]
        if isinstance(value, Vector):
            self.held(op)[name] = Vector([v * f for v, f in zip(value.values.tolist(), factors)], exact=True)
        else:
            self.held(op)[name] = Matrix.from_exact_rows(value.shape, [{c: v * f for c, v in row.items()}
                                                                       for row, f in zip(value.exact_rows(), factors)])

    def scale_columns(self, op: Op, name: str, factors: list) -> None:
        value = self.held(op)[name]
        self.held(op)[name] = Matrix.from_exact_rows(value.shape, [{c: v * factors[c] for c, v in row.items()}
                                                                   for row in value.exact_rows()])

    def restore(self) -> None:
        """The exact constants back in their ops, in the float domain where float64 holds every entry (as debranch
        emits them): a module whose scaled constants are all float64 values is a float module after it."""
        for op, held in self._held.values():
            op.attrs.update({name: _float_where_held(v) for name, v in held.items()})


def _float_where_held(value):
    """An exact-domain constant in the float domain where float64 holds every entry."""
    if isinstance(value, Vector):
        return Vector(value.values.tolist())
    r, c, v = value.coo()
    return Matrix.from_entries(value.shape, r, c, v)
