"""U.S. government bond market calendar (SIFMA recommended full closes) and date arithmetic.

Rules follow QuantLib's ``UnitedStates(GovernmentBond)`` calendar, which the tests use as the
reference for 1990-2040:

* weekends;
* New Year's Day (Monday if on a Sunday; not moved back when on a Saturday);
* Martin Luther King Jr. Day (third Monday of January, from 1983);
* Washington's Birthday (third Monday of February);
* Good Friday, except from 1996 when it falls on the first Friday of the month (the
  payroll-report day, an early close rather than a full close);
* Memorial Day (last Monday of May);
* Juneteenth (from 2022; Monday if Sunday, Friday if Saturday);
* Independence Day and Christmas (Monday if Sunday, Friday if Saturday);
* Labor Day (first Monday of September), Columbus Day (second Monday of October);
* Veterans Day (Monday if on a Sunday; not moved when on a Saturday);
* Thanksgiving (fourth Thursday of November);
* special closings listed in ``SPECIAL_CLOSINGS``.

The special closings add three days QuantLib lacks, each confirmed by the absence of a
Treasury par yield curve in the real data: 1994-04-27 (President Nixon's funeral) and
2001-09-11/12 (the attacks).
"""

from __future__ import annotations

import calendar as _cal
from datetime import date, timedelta
from functools import lru_cache

SPECIAL_CLOSINGS: frozenset[date] = frozenset(
    {
        date(1994, 4, 27),  # Nixon funeral (no Treasury curve published)
        date(2001, 9, 11),  # September 11 attacks (no Treasury curve published)
        date(2001, 9, 12),
        date(2004, 6, 11),  # Reagan funeral
        date(2012, 10, 30),  # Hurricane Sandy
        date(2018, 12, 5),  # President G.H.W. Bush funeral
    }
)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (Monday=0) of a month; ``n=-1`` for the last one."""
    if n > 0:
        first = date(year, month, 1)
        offset = (weekday - first.weekday()) % 7
        return first + timedelta(days=offset + 7 * (n - 1))
    last = date(year, month, _cal.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _observed_both_ways(d: date) -> date:
    """Saturday holidays observed on Friday, Sunday ones on Monday."""
    if d.weekday() == 5:
        return d - timedelta(days=1)
    if d.weekday() == 6:
        return d + timedelta(days=1)
    return d


def _observed_sunday_only(d: date) -> date:
    return d + timedelta(days=1) if d.weekday() == 6 else d


@lru_cache(maxsize=256)
def holidays(year: int) -> frozenset[date]:
    """All weekday full closes of the U.S. government bond market in ``year``."""
    days = {
        _observed_sunday_only(date(year, 1, 1)),
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _observed_both_ways(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _observed_sunday_only(date(year, 11, 11)),  # Veterans Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed_both_ways(date(year, 12, 25)),
    }
    if year >= 1983:
        days.add(_nth_weekday(year, 1, 0, 3))  # Martin Luther King Jr. Day
    if year >= 2022:
        days.add(_observed_both_ways(date(year, 6, 19)))  # Juneteenth
    good_friday = easter_sunday(year) - timedelta(days=2)
    if year < 1996 or good_friday.day > 7:
        days.add(good_friday)
    days.update(d for d in SPECIAL_CLOSINGS if d.year == year)
    return frozenset(d for d in days if d.weekday() < 5)


def is_business_day(d: date) -> bool:
    """True when the U.S. government bond market is open on ``d``."""
    return d.weekday() < 5 and d not in holidays(d.year)


def following(d: date) -> date:
    """``d`` itself if a business day, else the next business day."""
    while not is_business_day(d):
        d += timedelta(days=1)
    return d


def preceding(d: date) -> date:
    """``d`` itself if a business day, else the previous business day."""
    while not is_business_day(d):
        d -= timedelta(days=1)
    return d


def add_business_days(d: date, n: int) -> date:
    """Move ``n`` business days forward (``n > 0``) or back (``n < 0``) from ``d``."""
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    while remaining:
        d += timedelta(days=step)
        if is_business_day(d):
            remaining -= 1
    return d


def last_business_day_of_month(year: int, month: int) -> date:
    return preceding(date(year, month, _cal.monthrange(year, month)[1]))


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(year: int, month: int) -> int:
    """``calendar.monthrange(year, month)[1]`` without its weekday (coupon schedules ask often)."""
    return 29 if month == 2 and _cal.isleap(year) else _MONTH_DAYS[month]


def is_end_of_month(d: date) -> bool:
    """Calendar month end (not business month end)."""
    return d.day == days_in_month(d.year, d.month)


def add_months(d: date, months: int, *, end_of_month: bool = False) -> date:
    """Add calendar months, clipping the day to the month's length.

    With ``end_of_month`` the result is the last day of the target month (the Treasury rule
    for securities that mature on a month end).
    """
    y, m0 = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m0 + 1
    last = days_in_month(year, month)
    return date(year, month, last if end_of_month else min(d.day, last))


def settlement_date(trade_date: date, lag_days: int = 1) -> date:
    """Regular Treasury settlement: T+1 business day in the bond calendar."""
    return add_business_days(trade_date, lag_days)
