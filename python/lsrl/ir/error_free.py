"""Error-free transformations of float64 arithmetic: whether a sum or a product was computed exactly, and a sum
of products rounded once.

The tests take Python floats and numpy arrays alike: the analyses check whole vectors of constants, and
``materialize-steps`` checks one folded bias at a time, where building arrays would cost more than the check.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["sum_exact", "product_exact", "fold_products", "lowest_bit", "divides_exactly"]

#: Veltkamp's splitter for float64 (2^27 + 1): a significand splits into two halves of at most 26 bits
_SPLITTER = 134217729.0
#: operands from this magnitude on overflow the splitting: their products count as inexact
_SPLIT_LIMIT = 1e290
#: below this magnitude the halves' products may underflow (they reach 2^-106 of the product): counted inexact
_SMALLEST_PRODUCT = 2.0 ** -960


def lowest_bit(x: np.ndarray) -> np.ndarray:
    """The exponent of the lowest set bit of each finite non-zero ``x`` (a large value for 0 or ±inf)."""
    out = np.full(x.shape, 1 << 20, dtype=np.int64)
    ok = np.isfinite(x) & (x != 0)
    if ok.any():
        m, e = np.frexp(np.abs(x[ok]))
        mant = (m * 2.0 ** 53).astype(np.int64)
        low = mant & (-mant)
        out[ok] = e.astype(np.int64) - 53 + np.log2(low.astype(np.float64)).astype(np.int64)
    return out


def _sum_error(a, b, s):
    """``a + b − s`` exactly for ``s = fl(a + b)`` (Knuth's TwoSum; exact unless a step overflows)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)


def _product_error(a, b, p):
    """``a·b − p`` exactly for ``p = fl(a·b)`` (Dekker's product on Veltkamp's halves; needs no FMA, exact within
    ``_SPLIT_LIMIT`` and above ``_SMALLEST_PRODUCT``)."""
    ca, cb = _SPLITTER * a, _SPLITTER * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _splits(a: float, b: float, p: float) -> bool:
    """Whether Dekker's test can take ``p = fl(a·b)`` of non-zero operands (no over- or underflow in its halves)."""
    return math.isfinite(p) and abs(a) < _SPLIT_LIMIT and abs(b) < _SPLIT_LIMIT and abs(p) >= _SMALLEST_PRODUCT


def sum_exact(a, b, s):
    """Whether ``s = fl(a + b)`` is exact: a bool for floats, a bool array for arrays."""
    if isinstance(s, float):
        return math.isfinite(s) and _sum_error(a, b, s) == 0
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(s) & (_sum_error(a, b, s) == 0)


def product_exact(a, b, p):
    """Whether ``p = fl(a·b)`` is exact: a bool for floats, a bool array for arrays (operands too large or a
    product too small for the test count as inexact: a bound built on it is merely looser)."""
    if isinstance(p, float):
        if a == 0 or b == 0:
            return p == 0
        return _splits(a, b, p) and _product_error(a, b, p) == 0
    with np.errstate(invalid="ignore", over="ignore"):
        zero = (a == 0) | (b == 0)
        splittable = (np.abs(a) < _SPLIT_LIMIT) & (np.abs(b) < _SPLIT_LIMIT) & (np.abs(p) >= _SMALLEST_PRODUCT)
        return np.where(zero, p == 0, np.isfinite(p) & splittable & (_product_error(a, b, p) == 0))


def divides_exactly(v: float, s: float) -> bool:
    """Whether float64 holds ``v / s`` exactly."""
    q = v / s
    return q * s == v and product_exact(q, s, q * s)


def fold_products(constant: float, products) -> tuple[float, list[float]]:
    """``constant + Σ a·b`` over the pairs ``(a, b)`` of ``products`` rounded once to float64, and the floats
    whose sum is what that rounding left out: empty where it is exact, ``ArithmeticError`` where part of it lies
    below the smallest subnormal, and ``±inf`` with no rest where the sum passes float64's range.  Folding terms
    into a bias one rounded addition at a time can miss by the bias' ulp: ``−10¹⁰ + 10000000001·0.99999…`` by
    7·10⁻⁷."""
    parts = [constant]
    for a, b in products:
        if a == 0 or b == 0:
            continue
        p = a * b
        if not _splits(a, b, p):
            return _fold_rational(constant, products)
        parts += (p, _product_error(a, b, p))
    try:
        total = math.fsum(parts)  # fsum rounds the exact sum of its parts once
    except OverflowError:  # an intermediate sum past float64's range
        return _fold_rational(constant, products)
    rest: list[float] = []
    if math.isfinite(total):
        parts.append(-total)
        while (left := math.fsum(parts)) != 0:  # each round takes the next 53 bits
            rest.append(left)
            parts.append(-left)
    return total, rest


def _fold_rational(constant: float, products) -> tuple[float, list[float]]:
    """:func:`fold_products` in rationals (for products the split cannot take)."""
    left = Fraction(constant) + sum((Fraction(a) * Fraction(b) for a, b in products), Fraction(0))
    try:
        total = float(left)
    except OverflowError:
        return (math.inf if left > 0 else -math.inf), []
    rest: list[float] = []
    left -= Fraction(total)
    while left:
        part = float(left)
        if part == 0:
            raise ArithmeticError("fold_products: part of the sum lies below float64's smallest subnormal")
        rest.append(part)
        left -= Fraction(part)
    return total, rest
