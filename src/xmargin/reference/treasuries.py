"""Treasury cash securities as contract terms: bills, fixed-coupon notes and bonds.

Definitions are small frozen records, what the security *says*; turning many of them into
cash-flow arrays for a settlement date happens in :mod:`xmargin.pricing.cashflows`.

Conventions (Treasury, 31 CFR 356 and street practice):

* notes and bonds pay semiannual fixed coupons on an unadjusted schedule stepped back from
  maturity by six months; a security maturing on a month end pays on month ends;
* accrued interest is ACT/ACT ICMA: the coupon times the fraction of the (reference)
  coupon period elapsed, with irregular first periods measured against notional regular
  periods;
* bills pay 100 at maturity and are quoted on a discount-rate basis (ACT/360).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from xmargin.errors import InputError
from xmargin.reference.calendar import add_months, is_end_of_month

COUPON_MONTHS = 6


@dataclass(frozen=True, slots=True)
class TreasuryBill:
    """A zero-coupon Treasury bill paying 100 per 100 face at ``maturity``."""

    maturity: date
    issue_date: date | None = None
    cusip: str | None = None

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        """Pickled as the constructor's arguments: loading calls ``__init__`` once instead of
        the dataclass ``__setstate__`` (which looks up the fields per object; the cached
        securities master holds thousands)."""
        return type(self), tuple(getattr(self, f) for f in self.__slots__)

    @property
    def identifier(self) -> str:
        return self.cusip or f"UST:0:{self.maturity.isoformat()}"


@dataclass(frozen=True, slots=True)
class TreasuryBond:
    """A fixed-coupon Treasury note or bond.

    ``coupon`` is the annual rate as a decimal (0.04375 for 4 3/8 %).  ``dated_date`` is the
    date interest starts to accrue; ``None`` means a regular schedule as far back as needed.
    ``first_coupon`` pins an irregular (short or long) first period ending on that date; it
    must sit on the regular schedule stepped back from maturity.
    """

    coupon: float
    maturity: date
    dated_date: date | None = None
    first_coupon: date | None = None
    cusip: str | None = None
    original_issue: date | None = None
    kind: str = "note"  # "note" or "bond": what Treasury called it at issue

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        """Pickled as the constructor's arguments: loading calls ``__init__`` once instead of
        the dataclass ``__setstate__`` (which looks up the fields per object; the cached
        securities master holds thousands)."""
        return type(self), tuple(getattr(self, f) for f in self.__slots__)

    @property
    def identifier(self) -> str:
        if self.cusip:
            return self.cusip
        text = f"UST:{self.coupon * 100:g}:{self.maturity.isoformat()}"
        if self.dated_date is not None:
            text += f":{self.dated_date.isoformat()}"
            if self.first_coupon is not None:
                text += f":{self.first_coupon.isoformat()}"
        return text

    @property
    def end_of_month(self) -> bool:
        return is_end_of_month(self.maturity)

    def regular_date(self, periods_back: int) -> date:
        """The regular coupon date ``periods_back`` six-month steps before maturity."""
        return add_months(self.maturity, -COUPON_MONTHS * periods_back, end_of_month=self.end_of_month)

    def periods_before(self, d: date) -> int:
        """Smallest ``k`` with ``regular_date(k) <= d`` (how many steps back reach ``d``)."""
        months = (self.maturity.year - d.year) * 12 + (self.maturity.month - d.month)
        k = max(months // COUPON_MONTHS - 1, 0)
        while self.regular_date(k) > d:
            k += 1
        while k > 0 and self.regular_date(k - 1) <= d:
            k -= 1
        return k

    def first_coupon_date(self) -> date | None:
        """End of the first coupon period (``None`` for an unbounded regular schedule)."""
        if self.first_coupon is not None:
            return self.first_coupon
        if self.dated_date is None:
            return None
        k = self.periods_before(self.dated_date)
        return self.regular_date(k - 1) if k > 0 else self.maturity


_UST_RE = re.compile(
    r"^UST:(?P<coupon>[0-9]+(?:\.[0-9]+)?):(?P<maturity>\d{4}-\d{2}-\d{2})"
    r"(?::(?P<issue>\d{4}-\d{2}-\d{2}))?(?::(?P<first>\d{4}-\d{2}-\d{2}))?$"
)


def parse_ust(text: str, *, source: str = "instrument", row: int | None = None) -> TreasuryBill | TreasuryBond:
    """Parse ``UST:<coupon percent>:<maturity>[:<issue date>[:<first coupon date>]]``.

    A zero coupon gives a bill.  The issue date, when given, is the date accrual starts
    (a short first period when it is off the regular schedule); the first coupon date, when
    given as well, makes the first period end there (short or long).
    """
    m = _UST_RE.match(text.strip().upper())
    if not m:
        raise InputError(
            f"'{text}' is not of the form UST:<coupon percent>:<maturity YYYY-MM-DD>[:<issue YYYY-MM-DD>]",
            source=source,
            row=row,
            field="instrument",
        )
    try:
        maturity = date.fromisoformat(m["maturity"])
        issue = date.fromisoformat(m["issue"]) if m["issue"] else None
        first = date.fromisoformat(m["first"]) if m["first"] else None
    except ValueError as exc:
        raise InputError(f"'{text}': {exc}", source=source, row=row, field="instrument") from None
    coupon_pct = float(m["coupon"])
    if coupon_pct > 30:
        raise InputError(f"'{text}': coupon {coupon_pct}% is not plausible", source=source, row=row, field="instrument")
    if issue is not None and issue >= maturity:
        raise InputError(f"'{text}': issue date is not before maturity", source=source, row=row, field="instrument")
    if coupon_pct == 0:
        return TreasuryBill(maturity=maturity, issue_date=issue)
    bond = TreasuryBond(coupon=coupon_pct / 100.0, maturity=maturity, dated_date=issue, first_coupon=first)
    if first is not None:
        validate_first_coupon(bond, source=source, row=row)
    return bond


def validate_first_coupon(bond: TreasuryBond, *, source: str = "instrument", row: int | None = None) -> None:
    """A pinned first coupon must be a regular date and after the dated date."""
    assert bond.first_coupon is not None
    k = bond.periods_before(bond.first_coupon)
    if bond.regular_date(k) != bond.first_coupon:
        raise InputError(
            f"first coupon {bond.first_coupon} is not on the semiannual schedule of maturity {bond.maturity}",
            source=source,
            row=row,
            field="instrument",
        )
    if bond.dated_date is None or bond.dated_date >= bond.first_coupon:
        raise InputError("a first coupon date needs an earlier issue date", source=source, row=row, field="instrument")
