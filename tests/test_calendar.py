"""The U.S. government bond calendar against QuantLib and against the real par-yield history.

Independent references:

* QuantLib's ``UnitedStates(UnitedStates.GovernmentBond)`` calendar (SIFMA recommended full
  closes), QuantLib 1.44 (``ql/time/calendars/unitedstates.cpp``);
* the dates on which U.S. Treasury published its daily par yield curve
  (``yields/par_yield_curve.csv``, see its ``SOURCE.md``): Treasury publishes a curve on
  every day the bond market is open and on no other day.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import QuantLib as ql
from hypothesis import given
from hypothesis import strategies as st

from xmargin.market.history import load_par_yields
from xmargin.reference import calendar as xcal

FIRST_YEAR, LAST_YEAR = 1990, 2040
QL_CALENDAR = ql.UnitedStates(ql.UnitedStates.GovernmentBond)

#: Closings QuantLib does not have, documented in ``xmargin.reference.calendar``.
ADDED_TO_QUANTLIB = {date(1994, 4, 27), date(2001, 9, 11), date(2001, 9, 12)}


def _py(d: ql.Date) -> date:
    return date(d.year(), d.month(), d.dayOfMonth())


def _ql(d: date) -> ql.Date:
    return ql.Date(d.day, d.month, d.year)


def _quantlib_holidays() -> set[date]:
    days = QL_CALENDAR.holidayList(ql.Date(1, 1, FIRST_YEAR), ql.Date(31, 12, LAST_YEAR), False)
    return {_py(d) for d in days}


def _our_holidays() -> set[date]:
    out: set[date] = set()
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        out |= xcal.holidays(year)
    return out


def test_holidays_equal_quantlib_except_documented_special_closings() -> None:
    """Weekday closes 1990-2040 equal QuantLib's, plus exactly the documented additions."""
    ours, theirs = _our_holidays(), _quantlib_holidays()
    assert theirs - ours == set(), "holidays QuantLib has and we lack"
    assert ours - theirs == ADDED_TO_QUANTLIB
    assert ADDED_TO_QUANTLIB <= xcal.SPECIAL_CLOSINGS
    # the other special closings are ones QuantLib has as well
    assert xcal.SPECIAL_CLOSINGS - ADDED_TO_QUANTLIB <= theirs
    assert len(ours) > 9 * (LAST_YEAR - FIRST_YEAR + 1)  # sanity: ~10 a year


def test_is_business_day_matches_quantlib_every_day() -> None:
    """Day by day 1990-2040 (weekends included), apart from the documented additions."""
    d, end = date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)
    mismatches = []
    while d <= end:
        if xcal.is_business_day(d) != QL_CALENDAR.isBusinessDay(_ql(d)) and d not in ADDED_TO_QUANTLIB:
            mismatches.append(d)
        d += timedelta(days=1)
    assert mismatches == []


def test_known_rules_spot_checks() -> None:
    """Rules from the module docstring (every date here is also covered by the real-data test)."""
    assert not xcal.is_business_day(date(2024, 3, 29))  # Good Friday, not the first Friday
    assert xcal.is_business_day(date(2021, 4, 2))  # Good Friday that is the first Friday (payroll)
    assert xcal.is_business_day(date(2021, 12, 31))  # New Year's Day 2022 on a Saturday: open
    assert not xcal.is_business_day(date(2023, 6, 19))  # Juneteenth
    assert xcal.is_business_day(date(2021, 6, 18))  # before Juneteenth became a bond holiday
    assert xcal.is_business_day(date(2023, 11, 10))  # Veterans Day on a Saturday: not moved
    assert not xcal.is_business_day(date(2012, 10, 30))  # Hurricane Sandy
    assert not xcal.is_business_day(date(2018, 12, 5))  # G.H.W. Bush funeral


@given(
    st.dates(min_value=date(FIRST_YEAR, 1, 1), max_value=date(LAST_YEAR - 1, 6, 30)),
    st.integers(min_value=-40, max_value=40),
)
def test_date_arithmetic_matches_quantlib(d: date, n: int) -> None:
    """``add_business_days``, ``following`` and ``preceding`` against ``Calendar.advance``/``adjust``.

    One documented difference: QuantLib's ``advance(d, 0, Days)`` rolls a holiday forward,
    ours returns ``d`` unchanged (zero steps), so ``n = 0`` is compared on business days only.
    """
    if any(abs((d - s).days) < 70 for s in ADDED_TO_QUANTLIB):
        return  # QuantLib lacks those closings; covered by the holiday tests
    if n != 0 or xcal.is_business_day(d):
        assert xcal.add_business_days(d, n) == _py(QL_CALENDAR.advance(_ql(d), n, ql.Days))
    else:
        assert xcal.add_business_days(d, 0) == d
    assert xcal.following(d) == _py(QL_CALENDAR.adjust(_ql(d), ql.Following))
    assert xcal.preceding(d) == _py(QL_CALENDAR.adjust(_ql(d), ql.Preceding))


def test_every_business_day_has_a_curve_and_no_holiday_has_one(data_dir: Path) -> None:
    """Real-data check: over the whole par-yield file, curve dates == our business days.

    Treasury publishes a curve on every bond-market business day; the one row it lists with
    no rates (2010-10-11, Columbus Day) is kept out of the history as an empty row.
    """
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    curve_dates = set(history.dates.astype(object))
    d, end = history.first_date, history.last_date
    business: set[date] = set()
    while d <= end:
        if xcal.is_business_day(d):
            business.add(d)
        d += timedelta(days=1)
    assert sorted(business - curve_dates) == [], "business days without a Treasury curve"
    assert sorted(curve_dates - business) == [], "curves published on a weekend or holiday"
    assert history.empty_rows == (date(2010, 10, 11),)
    assert not xcal.is_business_day(date(2010, 10, 11))
    # each closing we add to QuantLib's calendar is confirmed by a missing curve
    for special in ADDED_TO_QUANTLIB:
        assert special not in curve_dates
        assert QL_CALENDAR.isBusinessDay(_ql(special))
