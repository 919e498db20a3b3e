"""Treasury quoting conventions: street yield and bill discount rate <-> price.

Street convention, as quoted on the Treasury market (and in 31 CFR 356, Appendix B):

* notes and bonds: semiannual compounding over ACT/ACT ICMA coupon periods,
  ``dirty = sum_j CF_j / (1 + y/2) ** (w + j)`` with ``w`` the fraction of the current
  period still to run; in the final coupon period simple interest,
  ``dirty = CF / (1 + w * y / 2)``;
* bills: quoted on a discount rate, ``price = 100 * (1 - d * days / 360)``; their yield is
  the bond-equivalent (investment) rate, ``(100 / price - 1) * 365 / days`` up to half a
  year and Treasury's quadratic formula beyond (with a 365-day year throughout).

Prices per 100 face, yields and rates as decimals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from xmargin.reference.cashflows import CashflowSet

FloatArray = npt.NDArray[np.float64]


def _days_to_maturity(cf: CashflowSet) -> FloatArray:
    maturities = np.array([s.maturity for s in cf.securities], dtype="datetime64[D]")
    return (maturities - np.datetime64(cf.settle, "D")).astype(np.int64).astype(np.float64)


def bill_bond_equivalent_yield(price: npt.ArrayLike, days: npt.ArrayLike) -> FloatArray:
    """Bond-equivalent (investment) yield of a bill, decimal, from its price per 100."""
    p = np.asarray(price, dtype=float)
    t = np.asarray(days, dtype=float) / 365.0
    short = (100.0 / p - 1.0) / t
    # Treasury's formula beyond half a year (31 CFR 356 App. B): solve
    # (t/2 - 0.25) y^2 + t y + (P - 100)/P = 0 with t = days/365.
    a = t / 2.0 - 0.25
    b = t
    c = (p - 100.0) / p
    with np.errstate(invalid="ignore", divide="ignore"):
        long_ = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    return np.where(np.asarray(days) <= 182, short, long_)


def bill_price_from_discount(discount_rate: npt.ArrayLike, days: npt.ArrayLike) -> FloatArray:
    """Bill price per 100 from its discount rate (decimal), ACT/360."""
    return 100.0 * (1.0 - np.asarray(discount_rate, dtype=float) * np.asarray(days, dtype=float) / 360.0)


def bill_discount_rate(price: npt.ArrayLike, days: npt.ArrayLike) -> FloatArray:
    """Discount rate (decimal, ACT/360) of a bill priced ``price`` per 100."""
    return (100.0 - np.asarray(price, dtype=float)) / 100.0 * 360.0 / np.asarray(days, dtype=float)


def dirty_from_yield(cf: CashflowSet, yields: npt.ArrayLike) -> FloatArray:
    """Dirty price per 100 from street yields (decimal), one per coupon security.

    Bills use the bond-equivalent yield (inverse of :func:`bill_bond_equivalent_yield`).
    """
    y = np.broadcast_to(np.asarray(yields, dtype=float), (cf.size,))
    amounts, periods, mask = cf.padded()
    price, _ = _price_and_slope(amounts, periods, mask, cf.n_flows, y)
    if cf.is_bill.any():
        days = _days_to_maturity(cf)[cf.is_bill]
        yb = y[cf.is_bill]
        t = days / 365.0
        short = 100.0 / (1.0 + yb * t)
        long_ = 100.0 / (1.0 + yb * t + (t / 2.0 - 0.25) * yb * yb)
        price = price.copy()
        price[cf.is_bill] = np.where(days <= 182, short, long_)
    return price


def _price_and_slope(
    amounts: FloatArray,
    periods: FloatArray,
    mask: npt.NDArray[np.bool_],
    n_flows: npt.NDArray[np.int64],
    y: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Street-convention dirty price and its derivative in the yield, per security."""
    half = 1.0 + y[:, None] / 2.0
    disc = np.where(mask, half ** (-periods), 0.0)
    price = (amounts * disc).sum(axis=1)
    slope = -(amounts * periods * disc / (2.0 * half)).sum(axis=1)
    last = n_flows == 1  # final coupon period: simple interest
    if last.any():
        w = periods[last, 0]
        a = amounts[last, 0]
        denom = 1.0 + w * y[last] / 2.0
        price[last] = a / denom
        slope[last] = -a * (w / 2.0) / denom**2
    return price, slope


def street_yield(cf: CashflowSet, dirty: npt.ArrayLike, *, tol: float = 1e-14) -> FloatArray:
    """Street yields (decimal) from dirty prices per 100, one per security.

    Coupon securities: Newton iteration on the street price-yield formula, vectorised over
    securities.  Bills: bond-equivalent yield.
    """
    target = np.broadcast_to(np.asarray(dirty, dtype=float), (cf.size,)).copy()
    amounts, periods, mask = cf.padded()
    coupon_guess = np.array([getattr(s, "coupon", 0.04) for s in cf.securities])
    y = np.where(coupon_guess > 0, coupon_guess, 0.04)
    for _ in range(100):
        price, slope = _price_and_slope(amounts, periods, mask, cf.n_flows, y)
        step = (price - target) / slope
        y = y - step
        if np.all(np.abs(step[~cf.is_bill]) < tol):
            break
    if cf.is_bill.any():
        y[cf.is_bill] = bill_bond_equivalent_yield(target[cf.is_bill], _days_to_maturity(cf)[cf.is_bill])
    return y


def yield_dv01(cf: CashflowSet, yields: npt.ArrayLike) -> FloatArray:
    """Price change per 100 face for a one basis point fall in the street yield (analytic)."""
    y = np.broadcast_to(np.asarray(yields, dtype=float), (cf.size,))
    amounts, periods, mask = cf.padded()
    _, slope = _price_and_slope(amounts, periods, mask, cf.n_flows, y)
    dv01 = -slope * 1e-4
    if cf.is_bill.any():  # bills: central difference of the bond-equivalent price formula
        bumped = dirty_from_yield(cf, y - 0.5e-4) - dirty_from_yield(cf, y + 0.5e-4)
        dv01[cf.is_bill] = bumped[cf.is_bill]
    return dv01
