"""``lsrl.ir.error_free``: exactness tests of float64 sums and products, and sums of products rounded once,
against rational arithmetic."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsrl.ir.error_free import fold_products, product_exact, sum_exact

finite = st.floats(allow_nan=False, allow_infinity=False)
# numbers whose products and sums are often exact: few significant bits, spread exponents
short = st.builds(lambda m, e: math.ldexp(m, e), st.integers(-2 ** 12, 2 ** 12), st.integers(-40, 40))
numbers = st.one_of(finite, short, st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e10, 1e-300, 1e300]))


@given(a=numbers, b=numbers)
def test_product_exact_says_whether_the_product_is_exact(a, b):
    p = a * b
    expected = math.isfinite(p) and Fraction(p) == Fraction(a) * Fraction(b)
    answer = product_exact(a, b, p)
    # the test may call an exact product inexact (its operands or product out of the split's range), never
    # the other way round
    assert answer <= expected
    if expected and abs(a) < 1e290 and abs(b) < 1e290 and (p == 0 or abs(p) >= 2.0 ** -960):
        assert answer
    assert bool(product_exact(np.array([a]), np.array([b]), np.array([p]))[0]) == answer


@given(a=numbers, b=numbers)
def test_sum_exact_says_whether_the_sum_is_exact(a, b):
    s = a + b
    expected = math.isfinite(s) and Fraction(s) == Fraction(a) + Fraction(b)
    assert sum_exact(a, b, s) == expected
    assert bool(sum_exact(np.array([a]), np.array([b]), np.array([s]))[0]) == expected


def test_an_underflowed_product_is_not_exact():
    # 1e-200·1e-200 is 0 in float64: Dekker's halves underflow too, so their error term reads 0
    assert not product_exact(1e-200, 1e-200, 0.0)
    assert not product_exact(np.array([1e-200]), np.array([1e-200]), np.array([0.0]))[0]
    assert product_exact(0.0, 1e300, 0.0)


@given(constant=numbers.filter(lambda v: abs(v) < 1e300),
       products=st.lists(st.tuples(numbers, numbers).filter(lambda ab: abs(ab[0] * ab[1]) < 1e300), max_size=4))
def test_fold_rounds_once_and_returns_the_rest(constant, products):
    exact = Fraction(constant) + sum((Fraction(a) * Fraction(b) for a, b in products), Fraction(0))
    total, rest = fold_products(constant, products)
    assert total == float(exact)  # the exact sum rounded once
    assert Fraction(total) + sum(map(Fraction, rest), Fraction(0)) == exact
    assert all(rest) and all(abs(later) < abs(earlier) for earlier, later in zip(rest, rest[1:]))


def test_a_fold_one_addition_at_a_time_would_round_at_the_bias():
    # −10¹⁰ + 10000000001·0.9999999999999: the rounded product and sum miss by 8.6·10⁻⁷; the fold is exact
    constant, products = -1e10, [(10000000001.0, 0.9999999999999)]
    exact = Fraction(constant) + Fraction(products[0][0]) * Fraction(products[0][1])
    assert abs(Fraction(constant + products[0][0] * products[0][1]) - exact) > Fraction(1, 10 ** 7)
    total, rest = fold_products(constant, products)
    assert Fraction(total) == exact and not rest


def test_fold_edges():
    assert fold_products(1.0, [(0.0, 1e305)]) == (1.0, [])  # a zero term, beside one the split cannot take
    assert fold_products(1e308, [(1e289, 1e19)]) == (math.inf, [])  # past float64's range
    with pytest.raises(ArithmeticError, match="below float64's smallest subnormal"):
        fold_products(1.0, [(1e-200, 1e-200)])  # its rounding cannot be held (it looped forever)
