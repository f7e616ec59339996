"""The chi-squared distribution without scipy: regularised incomplete gamma functions, tail and quantile."""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 1_000_000


def gammainc_lower(a: float, x: float) -> float:
    """The regularised lower incomplete gamma function P(a, x)."""
    _check(a, x)
    if x == 0:
        return 0.0
    if x < a + 1:
        return _series(a, x)
    return 1.0 - _continued_fraction(a, x)


def gammainc_upper(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) = 1 - P(a, x), accurate in the far tail."""
    _check(a, x)
    if x == 0:
        return 1.0
    if x < a + 1:
        return 1.0 - _series(a, x)
    return _continued_fraction(a, x)


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-squared with `dof` degrees of freedom (the test's p-value)."""
    if dof <= 0:
        raise ValueError("degrees of freedom must be positive")
    if statistic <= 0:
        return 1.0
    return gammainc_upper(dof / 2.0, statistic / 2.0)


def chi2_critical(dof: int, alpha: float) -> float:
    """The value c with chi2_sf(c, dof) = alpha (the upper critical value), by bisection."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    low, high = 0.0, max(1.0, 2.0 * dof)
    while chi2_sf(high, dof) > alpha:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if chi2_sf(middle, dof) > alpha:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


def _check(a: float, x: float) -> None:
    if not a > 0 or not x >= 0 or math.isinf(a):
        raise ValueError("need a > 0 and x >= 0")


def _prefactor(a: float, x: float) -> float:
    return math.exp(-x + a * math.log(x) - math.lgamma(a))


def _series(a: float, x: float) -> float:
    """P(a, x) by its power series; converges quickly for x < a + 1."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return min(1.0, total * _prefactor(a, x))


def _continued_fraction(a: float, x: float) -> float:
    """Q(a, x) by Legendre's continued fraction (modified Lentz); converges quickly for x > a + 1."""
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _EPS:
            break
    return min(1.0, _prefactor(a, x) * h)
