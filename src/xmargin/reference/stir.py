"""CME short-term interest rate futures: Three-Month SOFR, One-Month SOFR, 30-Day Fed Funds.

Contract terms (what the contract *says*; pricing is :mod:`xmargin.pricing.stir`):

* **SR3**, Three-Month SOFR futures (CME Rulebook chapter 460).  Price = 100 minus the
  business-day compounded SOFR over the *reference quarter*: from (and including) the third
  Wednesday of the named contract month to (and excluding) the third Wednesday of the third
  month after it (an ``SR3H24`` references 2024-03-20 .. 2024-06-19).  Contract unit $2,500
  times the IMM index: **$25 per basis point, $2,500 per price point**.  Trading terminates on
  the business day before the third Wednesday that ends the reference quarter (CME's
  "delivery month"), i.e. the last business day of the reference quarter.
* **SR1**, One-Month SOFR futures (CME Rulebook chapter 461).  Price = 100 minus the
  arithmetic average of daily SOFR over the calendar days of the contract month (a day
  without a publication takes the previous published rate).  **$41.67 per basis point, taken
  as $4,167 per price point**.  Trading terminates on the last business day of the month.
* **ZQ**, 30-Day Federal Funds futures (CBOT Rulebook chapter 22).  Price = 100 minus the
  average daily effective fed funds rate over the calendar days of the contract month.
  **$41.67 per basis point ($4,167 per point; $5,000,000 x 30/360)**.  Trading terminates on
  the last business day of the month.

Business days are the U.S. government bond market calendar of
:mod:`xmargin.reference.calendar` (SIFMA), the calendar on which SOFR is published; the
Federal Reserve's calendar (on which EFFR is published) differs from it on a few days such
as Good Friday, which matters only for ZQ's last trading day in a month ending on one.

Symbols are the CME Globex root, a month code and the year: ``SR3H26``, ``SR1F25``, ``ZQN24``.
"""

from __future__ import annotations

import calendar as _cal
from dataclasses import dataclass
from datetime import date, timedelta

from xmargin.errors import UnknownInstrumentError
from xmargin.reference.calendar import last_business_day_of_month, preceding

MONTH_CODES = "FGHJKMNQUVXZ"  # January .. December
QUARTERLY_MONTHS = (3, 6, 9, 12)


@dataclass(frozen=True, slots=True)
class RateFutureSpec:
    """Static terms of one STIR futures product.

    ``dollars_per_point`` is dollars per contract for a one-point (100 bp) price change;
    ``averaging`` is ``"compounded"`` (SR3) or ``"arithmetic"`` (SR1, ZQ); ``series`` names the
    overnight rate (``"sofr"`` or ``"fedfunds"``, the names :class:`MarketSnapshot` uses).
    """

    root: str
    name: str
    rulebook: str
    dollars_per_point: float
    averaging: str
    series: str
    months: tuple[int, ...]  # contract months the parser accepts

    @property
    def dollars_per_bp(self) -> float:
        return self.dollars_per_point / 100.0


RATE_FUTURES: dict[str, RateFutureSpec] = {
    "SR3": RateFutureSpec("SR3", "Three-Month SOFR futures", "CME Rulebook chapter 460",
                          2500.0, "compounded", "sofr", QUARTERLY_MONTHS),
    "SR1": RateFutureSpec("SR1", "One-Month SOFR futures", "CME Rulebook chapter 461",
                          4167.0, "arithmetic", "sofr", tuple(range(1, 13))),
    "ZQ": RateFutureSpec("ZQ", "30-Day Federal Funds futures", "CBOT Rulebook chapter 22",
                         4167.0, "arithmetic", "fedfunds", tuple(range(1, 13))),
}


def third_wednesday(year: int, month: int) -> date:
    """The third Wednesday of a month (the IMM date)."""
    first = date(year, month, 1)
    return first + timedelta(days=(2 - first.weekday()) % 7 + 14)


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    y, m0 = divmod(month - 1 + n, 12)
    return year + y, m0 + 1


@dataclass(frozen=True, slots=True)
class RateFuture:
    """One SOFR or Fed Funds futures contract (``root`` in :data:`RATE_FUTURES`)."""

    root: str
    year: int
    month: int

    def __post_init__(self) -> None:
        if self.root not in RATE_FUTURES:
            raise UnknownInstrumentError(
                f"unknown rate futures root '{self.root}' (known: {', '.join(RATE_FUTURES)})",
                field="instrument",
            )
        if not 1 <= self.month <= 12:
            raise UnknownInstrumentError(f"month {self.month} is not 1..12", field="instrument")

    @property
    def spec(self) -> RateFutureSpec:
        return RATE_FUTURES[self.root]

    @property
    def symbol(self) -> str:
        """CME symbol with a two-digit year, e.g. ``SR3H24``."""
        return f"{self.root}{MONTH_CODES[self.month - 1]}{self.year % 100:02d}"

    @property
    def dollars_per_point(self) -> float:
        """Dollars per contract for a one-point change in the price."""
        return self.spec.dollars_per_point

    @property
    def averaging(self) -> str:
        return self.spec.averaging

    @property
    def series(self) -> str:
        return self.spec.series

    @property
    def reference_start(self) -> date:
        """First day of the reference period (included)."""
        if self.root == "SR3":
            return third_wednesday(self.year, self.month)
        return date(self.year, self.month, 1)

    @property
    def reference_end(self) -> date:
        """End of the reference period (**excluded**): the period is ``[start, end)``."""
        if self.root == "SR3":
            return third_wednesday(*_add_months(self.year, self.month, 3))
        return date(self.year, self.month, _cal.monthrange(self.year, self.month)[1]) + timedelta(days=1)

    @property
    def reference_days(self) -> int:
        """Calendar days in the reference period."""
        return (self.reference_end - self.reference_start).days

    @property
    def last_trading_day(self) -> date:
        """SR3: business day before the third Wednesday ending the reference quarter;
        SR1 and ZQ: last business day of the contract month."""
        if self.root == "SR3":
            return preceding(self.reference_end - timedelta(days=1))
        return last_business_day_of_month(self.year, self.month)

    def __str__(self) -> str:
        return self.symbol
