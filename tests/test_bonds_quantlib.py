"""Treasury notes, bonds and bills: street-convention prices, accrued and yields against
QuantLib and Treasury's published formulas.

Independent references:

* QuantLib 1.44 ``FixedRateBond`` with ``ActualActual(ISMA)`` coupons and
  ``BondFunctions.cleanPrice`` / ``accruedAmount`` / ``bondYield`` / ``basisPointValue``.
  The bond is built on an explicit schedule of our pay dates (``NullCalendar``, unadjusted,
  6-month tenor, backward, end-of-month flag of the maturity) with the ``isRegular`` flags
  of each period, so QuantLib computes the coupon amounts, accrued interest and the yield
  discounting itself (ISMA reference periods).  Street convention (31 CFR 356 App. B and
  market practice): ``Compounded`` semiannual while more than one coupon remains,
  ``Simple`` in the final coupon period.
* 31 CFR Part 356, Appendix B, "Computation of Purchase Price, Discount Rate, and
  Investment Rate (Coupon-Equivalent Yield) for Treasury Bills": ``P = 100 (1 - d r / 360)``;
  investment rate ``i = (100 - P) / P * y / r`` for bills of not more than a half-year and
  ``i = (-2r/y + 2 sqrt((r/y)^2 - (2r/y - 1)(1 - 100/P))) / (2r/y - 1)`` beyond, written by
  hand below.  Treasury takes ``y = 366`` when the year after issue contains February 29;
  xmargin documents a 365-day year throughout (:mod:`xmargin.reference.conventions`), so the
  hand calculation uses ``y = 365``.  Published spot check (TreasuryDirect auction result
  of a 91-day bill): discount rate 4.975 %, investment rate 5.108 %, price 98.742431.

Limits of the QuantLib comparison (stated, not hidden): QuantLib's ISMA split of a *long*
first period steps back from the reference start with plain month arithmetic (no
end-of-month rule), and its reference period of a short first coupon is ``first coupon - 6M``
by the same arithmetic; so long first periods are drawn only for maturities on days 1-28
that are not month ends, and every non-month-end maturity is on days 1-28 (Treasury's are
on the 15th or a month end).
"""

from __future__ import annotations

import calendar
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin.masterdata import load_master
from xmargin.reference.cashflows import resolve
from xmargin.reference.conventions import (
    bill_bond_equivalent_yield,
    bill_discount_rate,
    bill_price_from_discount,
    dirty_from_yield,
    street_yield,
    yield_dv01,
)
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

ISMA = ql.ActualActual(ql.ActualActual.ISMA)
TOL = 1e-8  # per 100 face


def _qd(d: date) -> ql.Date:
    return ql.Date(d.day, d.month, d.year)


def quantlib_bond(bond: TreasuryBond, settle: date) -> ql.FixedRateBond:
    """The same security in QuantLib, on an explicit schedule from the accrual start."""
    first = bond.first_coupon_date()
    if first is None or settle >= first:
        k = bond.periods_before(settle)
        dates = [bond.regular_date(j) for j in range(k, -1, -1)]
        regular = [True] * (len(dates) - 1)
    else:
        assert bond.dated_date is not None
        fi = bond.periods_before(first)
        dates = [bond.dated_date] + [bond.regular_date(j) for j in range(fi, -1, -1)]
        regular = [bond.regular_date(fi + 1) == bond.dated_date] + [True] * (len(dates) - 2)
    schedule = ql.Schedule(
        [_qd(d) for d in dates],
        ql.NullCalendar(),
        ql.Unadjusted,
        ql.Unadjusted,
        ql.Period(6, ql.Months),
        ql.DateGeneration.Backward,
        bond.end_of_month,
        regular,
    )
    return ql.FixedRateBond(0, 100.0, schedule, [bond.coupon], ISMA)


def street_compounding(qbond: ql.FixedRateBond, settle: date) -> int:
    """Street convention: simple interest in the final coupon period."""
    remaining = sum(1 for c in qbond.cashflows() if ql.as_coupon(c) is not None and c.date() > _qd(settle))
    return ql.Compounded if remaining > 1 else ql.Simple


def compare_with_quantlib(bond: TreasuryBond, settle: date, y: float) -> dict[str, float]:
    """Absolute differences xmargin - QuantLib: clean from yield, accrued, yield from clean, DV01."""
    ql.Settings.instance().evaluationDate = _qd(settle)
    cf = resolve([bond], settle)
    dirty = float(dirty_from_yield(cf, [y])[0])
    clean = dirty - float(cf.accrued[0])
    qb = quantlib_bond(bond, settle)
    comp = street_compounding(qb, settle)
    q_clean = ql.BondFunctions.cleanPrice(qb, y, ISMA, comp, ql.Semiannual, _qd(settle))
    q_accrued = ql.BondFunctions.accruedAmount(qb, _qd(settle))
    q_yield = ql.BondFunctions.bondYield(
        qb, ql.BondPrice(clean, ql.BondPrice.Clean), ISMA, comp, ql.Semiannual, _qd(settle), 1e-15, 500, 0.05
    )
    rate = ql.InterestRate(y, ISMA, comp, ql.Semiannual)
    # basisPointValue = -D_mod P dy + 1/2 C P dy^2 for dy = +1 bp (second-order Taylor, QuantLib's
    # CashFlows::basisPointValue); our yield_dv01 is the first-order price rise for a 1 bp fall.
    bpv = ql.BondFunctions.basisPointValue(qb, rate, _qd(settle))
    convexity = ql.BondFunctions.convexity(qb, rate, _qd(settle))
    first_order = -bpv + 0.5 * convexity * dirty * 1e-8
    return {
        "clean": abs(clean - q_clean),
        "accrued": abs(float(cf.accrued[0]) - q_accrued),
        "yield": abs(float(street_yield(cf, [dirty])[0]) - q_yield),
        "dv01": abs(float(yield_dv01(cf, [y])[0]) - first_order),
        "n_flows": float(cf.n_flows[0]),
    }


def _assert_close(diff: dict[str, float], what: object) -> None:
    assert diff["clean"] < TOL, (what, diff)
    assert diff["accrued"] < TOL, (what, diff)
    assert diff["yield"] < 1e-10, (what, diff)  # decimal yield: 1e-10 = 1e-6 bp
    assert diff["dv01"] < 1e-10, (what, diff)


# ---------------------------------------------------------------------------------------------
# random bonds
# ---------------------------------------------------------------------------------------------


@st.composite
def bonds_and_settlements(draw: st.DrawFn) -> tuple[TreasuryBond, date, float]:
    coupon = draw(st.integers(min_value=0, max_value=15 * 8 * 8)) / 6400.0  # 0..15 % in 1/64 %
    kind = draw(st.sampled_from(["regular", "short_first", "long_first"]))
    year = draw(st.integers(min_value=1995, max_value=2060))
    month = draw(st.integers(min_value=1, max_value=12))
    month_end = kind != "long_first" and draw(st.booleans())
    day = calendar.monthrange(year, month)[1] if month_end else draw(st.integers(min_value=1, max_value=28))
    maturity = date(year, month, day)
    probe = TreasuryBond(coupon, maturity)
    if kind == "regular":
        bond = probe
        start = maturity - timedelta(days=30 * 366)
    else:
        k = draw(st.integers(min_value=1, max_value=59))  # first coupon k periods before maturity
        first = probe.regular_date(k)
        if kind == "short_first":
            lo, hi = probe.regular_date(k + 1), first
            dated = lo + timedelta(days=draw(st.integers(min_value=0, max_value=(hi - lo).days - 1)))
            bond = TreasuryBond(coupon, maturity, dated_date=dated)
        else:
            lo, hi = probe.regular_date(k + 2), probe.regular_date(k + 1)
            dated = lo + timedelta(days=draw(st.integers(min_value=0, max_value=(hi - lo).days - 1)))
            bond = TreasuryBond(coupon, maturity, dated_date=dated, first_coupon=first)
        start = dated
    how = draw(st.sampled_from(["any", "on_coupon", "near_coupon"]))
    if how == "any":
        settle = start + timedelta(days=draw(st.integers(min_value=0, max_value=(maturity - start).days - 1)))
    else:
        j = draw(st.integers(min_value=0, max_value=bond.periods_before(start)))
        settle = bond.regular_date(j) + timedelta(days=0 if how == "on_coupon" else draw(st.integers(-3, 3)))
        settle = min(max(settle, start), maturity - timedelta(days=1))
    y = draw(st.integers(min_value=-100, max_value=2000)) / 10000.0 + draw(st.floats(0, 1e-4))
    return bond, settle, y


@given(bonds_and_settlements())
@settings(max_examples=300)
def test_random_bonds_match_quantlib(case: tuple[TreasuryBond, date, float]) -> None:
    bond, settle, y = case
    _assert_close(compare_with_quantlib(bond, settle, y), case)


def test_strategy_covers_the_edge_cases() -> None:
    """The drawn bonds include month-end maturities, short/long first periods, settlement on
    coupon dates and in the final (simple-interest) period, zero and 15 % coupons."""
    seen: set[str] = set()

    @given(bonds_and_settlements())
    @settings(max_examples=300)
    def collect(case: tuple[TreasuryBond, date, float]) -> None:
        bond, settle, _ = case
        first = bond.first_coupon_date()
        if bond.end_of_month:
            seen.add("month_end")
        if first is not None and settle < first:
            seen.add("long_first" if bond.first_coupon is not None else "short_first")
        if bond.regular_date(bond.periods_before(settle)) == settle:
            seen.add("on_coupon")
        if bond.periods_before(settle) == 1:
            seen.add("final_period")
        if bond.coupon == 0.0:
            seen.add("zero_coupon")
        if bond.coupon == 0.15:
            seen.add("max_coupon")

    collect()
    assert {"month_end", "short_first", "long_first", "on_coupon", "final_period"} <= seen, seen


@pytest.mark.parametrize(
    ("bond", "settle"),
    [
        # long first coupon: dated 2023-12-04, first coupon 2024-11-15 (two notional periods)
        (TreasuryBond(0.045, date(2033, 11, 15), dated_date=date(2023, 12, 4), first_coupon=date(2024, 11, 15)), date(2024, 2, 20)),
        (TreasuryBond(0.045, date(2033, 11, 15), dated_date=date(2023, 12, 4), first_coupon=date(2024, 11, 15)), date(2024, 6, 3)),
        # short first coupon, month-end maturity (February in a leap year)
        (TreasuryBond(0.04625, date(2026, 2, 28), dated_date=date(2024, 3, 15)), date(2024, 6, 27)),
        (TreasuryBond(0.04625, date(2026, 2, 28), dated_date=date(2024, 3, 15)), date(2024, 8, 31)),
        # final coupon period (simple interest), settlement on the coupon date
        (TreasuryBond(0.0275, date(2024, 11, 15)), date(2024, 5, 15)),
        (TreasuryBond(0.0275, date(2024, 11, 15)), date(2024, 11, 14)),
        # 30-year, 15 % coupon, zero coupon
        (TreasuryBond(0.15, date(2054, 5, 15)), date(2024, 6, 27)),
        (TreasuryBond(0.0, date(2034, 8, 31)), date(2024, 6, 27)),
    ],
    ids=lambda v: str(v) if isinstance(v, date) else (v.identifier if hasattr(v, "identifier") else None),
)
@pytest.mark.parametrize("y", [-0.002, 0.0, 0.0432, 0.11])
def test_hand_picked_edge_cases_match_quantlib(bond: TreasuryBond, settle: date, y: float) -> None:
    _assert_close(compare_with_quantlib(bond, settle, y), (bond, settle, y))


# ---------------------------------------------------------------------------------------------
# real CUSIPs from the securities master
# ---------------------------------------------------------------------------------------------

SETTLEMENTS = [date(2001, 9, 17), date(2008, 12, 31), date(2015, 2, 17), date(2020, 3, 10), date(2024, 6, 27)]


@pytest.mark.parametrize("settle", SETTLEMENTS, ids=str)
def test_real_cusips_match_quantlib(data_dir: Path, settle: date) -> None:
    """Every nominal note/bond of the master outstanding (issued on or before settlement and
    not matured), including the FedInvest-only 1990s bonds (regular schedule, no dated date)."""
    master = load_master(data_dir)
    bonds = [
        r.definition
        for r in master.notes_and_bonds()
        if isinstance(r.definition, TreasuryBond)
        and r.issue_date <= settle < r.maturity
        and (r.definition.dated_date is None or r.definition.dated_date <= settle)
    ]
    assert len(bonds) > 50
    rng = np.random.default_rng(settle.toordinal())
    worst: dict[str, float] = {}
    for bond in bonds:
        y = bond.coupon + float(rng.uniform(-0.01, 0.01))
        diff = compare_with_quantlib(bond, settle, y)
        _assert_close(diff, (bond.cusip, settle, y))
        for key, value in diff.items():
            worst[key] = max(worst.get(key, 0.0), value)
    assert worst["n_flows"] > 1


# ---------------------------------------------------------------------------------------------
# bills: 31 CFR 356 Appendix B by hand
# ---------------------------------------------------------------------------------------------


def cfr_price_from_discount(d: float, r: int) -> float:
    return 100.0 * (1.0 - d * r / 360.0)


def cfr_investment_rate(price: float, r: int, y: int = 365) -> float:
    if r <= 182:  # not more than one half-year to maturity
        return (100.0 - price) / price * y / r
    a = r / y
    return (-2 * a + 2 * math.sqrt(a * a - (2 * a - 1) * (1 - 100.0 / price))) / (2 * a - 1)


def test_published_91_day_bill() -> None:
    """TreasuryDirect auction result: 91-day bill, discount 4.975 %, investment 5.108 %."""
    price = float(bill_price_from_discount(0.04975, 91))
    assert round(price, 6) == 98.742431
    assert round(float(bill_bond_equivalent_yield(price, 91)) * 100, 3) == 5.108
    assert float(bill_discount_rate(98.742431, 91)) == pytest.approx(0.04975, abs=5e-8)


@given(st.integers(min_value=1, max_value=364), st.integers(min_value=0, max_value=9000))
@settings(max_examples=300)
def test_bill_formulas_match_cfr_by_hand(days: int, discount_steps: int) -> None:
    d = discount_steps * 1e-5  # 0 .. 9 % in 0.1 bp steps
    price = float(bill_price_from_discount(d, days))
    assert price == pytest.approx(cfr_price_from_discount(d, days), abs=1e-12)
    assert float(bill_discount_rate(price, days)) == pytest.approx(d, abs=1e-12)
    if d == 0.0:
        return
    bey = float(bill_bond_equivalent_yield(price, days))
    assert bey == pytest.approx(cfr_investment_rate(price, days), abs=1e-12)
    assert bey > d  # the investment rate always exceeds the discount rate


@given(st.integers(min_value=1, max_value=364), st.integers(min_value=-50, max_value=1500))
@settings(max_examples=200)
def test_bill_yield_price_round_trip_and_dv01(days: int, bey_bp: int) -> None:
    """A bill inside a CashflowSet: dirty price from BEY inverts the CFR investment rate,
    street_yield returns the BEY, and yield_dv01 equals the analytic derivative."""
    settle = date(2024, 6, 27)
    bill = TreasuryBill(maturity=settle + timedelta(days=days))
    y = bey_bp / 1e4
    cf = resolve([bill], settle)
    price = float(dirty_from_yield(cf, [y])[0])
    assert cfr_investment_rate(price, days) == pytest.approx(y, abs=1e-11)
    assert float(street_yield(cf, [price])[0]) == pytest.approx(y, abs=1e-11)
    t = days / 365.0
    quad_term = (t / 2.0 - 0.25) if days > 182 else 0.0
    derivative = 100.0 * (t + 2 * quad_term * y) / (1 + y * t + quad_term * y * y) ** 2
    assert float(yield_dv01(cf, [y])[0]) == pytest.approx(derivative * 1e-4, rel=1e-7)
    assert cf.accrued[0] == 0.0


@given(st.integers(min_value=1, max_value=182), st.integers(min_value=1, max_value=1500))
@settings(max_examples=100)
def test_short_bills_match_quantlib_zero_coupon_bond(days: int, bey_bp: int) -> None:
    """Up to a half-year the BEY is simple ACT/365F interest: QuantLib ZeroCouponBond."""
    settle = date(2024, 6, 27)
    maturity = settle + timedelta(days=days)
    ql.Settings.instance().evaluationDate = _qd(settle)
    zcb = ql.ZeroCouponBond(0, ql.NullCalendar(), 100.0, _qd(maturity))
    y = bey_bp / 1e4
    q_price = ql.BondFunctions.cleanPrice(zcb, y, ql.Actual365Fixed(), ql.Simple, ql.Annual, _qd(settle))
    cf = resolve([TreasuryBill(maturity=maturity)], settle)
    assert float(dirty_from_yield(cf, [y])[0]) == pytest.approx(q_price, abs=TOL)


def test_small_products_skip_scipy_with_the_same_bits(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dirty_prices`` multiplies small products in NumPy (no SciPy import for ``xmargin price``):
    every outstanding note and bond under 50 historical curves gives the same bits as SciPy's
    sparse product (the reference), so a row priced alone equals the row priced in a universe."""
    import numpy as np

    from xmargin.margin.context import _scenarios
    from xmargin.margin.params import MarginParams
    from xmargin.market.snapshot import load_snapshot
    from xmargin.masterdata import load_master
    from xmargin.pricing import bonds
    from xmargin.reference.cashflows import resolve

    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    master = load_master(snap.data_dir)
    cf = resolve([master.definition(r.cusip) for r in master.notes_and_bonds(outstanding_on=snap.as_of)],
                 date(2024, 6, 27))
    curves = _scenarios(snap, MarginParams().ficc.scenarios).curves.select(np.arange(50))
    monkeypatch.setattr(bonds, "DENSE_MAX_WORK", 0)
    sparse = bonds.dirty_prices(cf, curves)
    monkeypatch.setattr(bonds, "DENSE_MAX_WORK", 10**12)
    dense = bonds.dirty_prices(cf, curves)
    assert cf.size > 300 and sparse.shape == (cf.size, 50)
    np.testing.assert_array_equal(dense, sparse)
