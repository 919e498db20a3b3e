"""CBOT Treasury futures: contract terms, deliverable baskets, conversion factors, symbols.

Products (CME Globex roots), rulebook chapters and face value per contract:

======  ===========================================  ==================  ===========
root    product                                      CBOT Rulebook       face ($)
======  ===========================================  ==================  ===========
ZT      2-Year U.S. Treasury Note futures            chapter 21          200,000
Z3N     3-Year U.S. Treasury Note futures            chapter 39          200,000
ZF      5-Year U.S. Treasury Note futures            chapter 20          100,000
ZN      10-Year U.S. Treasury Note futures           chapter 19          100,000
TN      Ultra 10-Year U.S. Treasury Note futures     chapter 26          100,000
TWE     20-Year U.S. Treasury Bond futures           (20-Year chapter)   100,000
ZB      U.S. Treasury Bond futures                   chapter 18          100,000
UB      Ultra U.S. Treasury Bond futures             chapter 40          100,000
======  ===========================================  ==================  ===========

Contract months are March, June, September and December (H M U Z).  Prices are in points
per 100 face; one point is ``face / 100`` dollars per contract.

Deliverable grade (fixed-principal notes or bonds, remaining term measured from the first
calendar day of the contract month unless stated):

* ZT: original term <= 5y3m; remaining >= 1y9m, and <= 2y from the *last* day of the month;
* Z3N: original term <= 7y; remaining >= 2y9m, and <= 3y from the last day of the month;
* ZF: original term <= 5y3m; remaining >= 4y2m;
* ZN: notes with remaining >= 6y6m and < 8y from the September 2023 contract on (CME's
  2022 product change); >= 6y6m and <= 10y for earlier contracts;
* TN: original-issue 10-year notes (a note with >= 9y5m left can only be one), remaining
  >= 9y5m and <= 10y;
* TWE: bonds with remaining >= 19y2m and < 19y11m (recent 20-year and aging 30-year bonds);
* ZB: bonds with remaining >= 15y and < 25y from the March 2011 contract on; >= 15y before;
* UB: bonds with remaining >= 25y.

"Note" and "bond" are what Treasury called the security at issue (the securities master's
``kind``); original term is issue date to maturity.  Lower bounds are the same whether the
remaining term is exact or rounded down to whole months (both compare the maturity with the
first of a month plus whole months); upper bounds are applied as the chapters word them.
Callable bonds (none deliverable since 2014) are not modelled.

Delivery timetable: ZT, Z3N, ZF trade until the last business day of the contract month and
deliver until the third business day after it; the others trade until the seventh business
day before the last business day of the month and deliver until its last business day.
Business days are the U.S. government bond market calendar (:mod:`xmargin.reference.calendar`).

Conversion factor (CME, "Calculating U.S. Treasury Futures Conversion Factors"): the price
per 1 of face at a 6% yield with the time to maturity from the first day of the contract
month rounded down to whole months (ZT, Z3N, ZF) or quarters (the others); 4 decimals.  The
6% notional coupon applies from the March 2000 contracts.
"""

from __future__ import annotations

import calendar as _cal
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from xmargin.errors import ExpiredContractError, InputError, UnknownInstrumentError
from xmargin.reference.calendar import add_business_days, add_months, last_business_day_of_month
from xmargin.reference.securities import SecuritiesMaster, SecurityRecord
from xmargin.reference.stir import MONTH_CODES, QUARTERLY_MONTHS, RATE_FUTURES, RateFuture
from xmargin.reference.treasuries import TreasuryBond


@dataclass(frozen=True, slots=True)
class BasketRule:
    """Deliverable grade of a Treasury futures contract (applies from ``first_contract``).

    Remaining term bounds are in months from the first day of the contract month:
    ``maturity >= first + min_remaining_months``; the upper bound ``max_remaining_months``
    is applied as ``max_rule`` says: ``"lt"`` (maturity < first + max), ``"le"``
    (maturity <= first + max) or ``"le_month_end"`` (maturity <= last day of the month +
    max, the ZT/Z3N wording "not more than N years from the last day of the delivery month").
    ``max_original_months``: original term (issue to maturity) at most this many months.
    """

    kind: str  # "note" or "bond"
    min_remaining_months: int
    max_remaining_months: int | None = None
    max_rule: str = "lt"
    max_original_months: int | None = None
    first_contract: tuple[int, int] = (1900, 1)

    def admits(self, record: SecurityRecord, year: int, month: int) -> bool:
        """True when ``record`` is contract grade for the ``year``/``month`` contract."""
        if record.kind != self.kind or not isinstance(record.definition, TreasuryBond):
            return False
        first = date(year, month, 1)
        if record.maturity < add_months(first, self.min_remaining_months):
            return False
        if self.max_remaining_months is not None:
            if self.max_rule == "le_month_end":
                last = date(year, month, _cal.monthrange(year, month)[1])
                if record.maturity > add_months(last, self.max_remaining_months, end_of_month=True):
                    return False
            else:
                limit = add_months(first, self.max_remaining_months)
                if record.maturity > limit or (self.max_rule == "lt" and record.maturity == limit):
                    return False
        if self.max_original_months is not None:
            if record.maturity > add_months(record.issue_date, self.max_original_months):
                return False
        return True


@dataclass(frozen=True, slots=True)
class TreasuryFutureSpec:
    """Static terms of one Treasury futures product.

    ``contract_size``: face value per contract in dollars.  ``cf_rounding_months``: 1 (round
    the time to maturity down to the month) or 3 (to the quarter) in the conversion factor.
    ``short_dated``: ZT/Z3N/ZF delivery timetable (see module docstring).  ``rules``: the
    deliverable grade, oldest first, each applying from its ``first_contract``.
    """

    root: str
    name: str
    rulebook: str
    contract_size: float
    cf_rounding_months: int
    short_dated: bool
    rules: tuple[BasketRule, ...]

    @property
    def dollars_per_point(self) -> float:
        """Dollars per contract for a one-point (1 per 100 face) price change."""
        return self.contract_size / 100.0

    def rule_for(self, year: int, month: int) -> BasketRule:
        """The deliverable grade in force for the ``year``/``month`` contract."""
        current = self.rules[0]
        for rule in self.rules:
            if (year, month) >= rule.first_contract:
                current = rule
        return current


TREASURY_FUTURES: dict[str, TreasuryFutureSpec] = {
    "ZT": TreasuryFutureSpec(
        "ZT", "2-Year U.S. Treasury Note futures", "CBOT Rulebook chapter 21", 200_000.0, 1, True,
        (BasketRule("note", 21, 24, "le_month_end", max_original_months=63),),
    ),
    "Z3N": TreasuryFutureSpec(
        "Z3N", "3-Year U.S. Treasury Note futures", "CBOT Rulebook chapter 39", 200_000.0, 1, True,
        (BasketRule("note", 33, 36, "le_month_end", max_original_months=84),),
    ),
    "ZF": TreasuryFutureSpec(
        "ZF", "5-Year U.S. Treasury Note futures", "CBOT Rulebook chapter 20", 100_000.0, 1, True,
        (BasketRule("note", 50, None, max_original_months=63),),
    ),
    "ZN": TreasuryFutureSpec(
        "ZN", "10-Year U.S. Treasury Note futures", "CBOT Rulebook chapter 19", 100_000.0, 3, False,
        (
            BasketRule("note", 78, 120, "le"),
            BasketRule("note", 78, 96, "lt", first_contract=(2023, 9)),
        ),
    ),
    "TN": TreasuryFutureSpec(
        "TN", "Ultra 10-Year U.S. Treasury Note futures", "CBOT Rulebook chapter 26", 100_000.0, 3, False,
        (BasketRule("note", 113, 120, "le", max_original_months=120),),
    ),
    "TWE": TreasuryFutureSpec(
        "TWE", "20-Year U.S. Treasury Bond futures", "CBOT Rulebook, 20-Year U.S. Treasury Bond futures chapter",
        100_000.0, 3, False,
        (BasketRule("bond", 230, 239, "lt"),),
    ),
    "ZB": TreasuryFutureSpec(
        "ZB", "U.S. Treasury Bond futures", "CBOT Rulebook chapter 18", 100_000.0, 3, False,
        (
            BasketRule("bond", 180, None),
            BasketRule("bond", 180, 300, "lt", first_contract=(2011, 3)),
        ),
    ),
    "UB": TreasuryFutureSpec(
        "UB", "Ultra U.S. Treasury Bond futures", "CBOT Rulebook chapter 40", 100_000.0, 3, False,
        (BasketRule("bond", 300, None),),
    ),
}


@dataclass(frozen=True, slots=True)
class TreasuryFuture:
    """One Treasury futures contract: ``root`` in :data:`TREASURY_FUTURES`, quarterly month."""

    root: str
    year: int
    month: int

    def __post_init__(self) -> None:
        if self.root not in TREASURY_FUTURES:
            raise UnknownInstrumentError(
                f"unknown Treasury futures root '{self.root}' (known: {', '.join(TREASURY_FUTURES)})",
                field="instrument",
            )
        if self.month not in QUARTERLY_MONTHS:
            raise UnknownInstrumentError(
                f"{self.root} contract months are March, June, September, December; got month {self.month}",
                field="instrument",
            )

    @property
    def spec(self) -> TreasuryFutureSpec:
        return TREASURY_FUTURES[self.root]

    @property
    def symbol(self) -> str:
        """CME symbol with a two-digit year, e.g. ``ZNM24``."""
        return f"{self.root}{MONTH_CODES[self.month - 1]}{self.year % 100:02d}"

    @property
    def contract_size(self) -> float:
        """Face value per contract, dollars."""
        return self.spec.contract_size

    @property
    def dollars_per_point(self) -> float:
        """Dollars per contract for a one-point price change."""
        return self.spec.dollars_per_point

    @property
    def first_delivery_day(self) -> date:
        """First calendar day of the contract month (the reference date of the basket rules
        and conversion factors; the first *business* day is the first possible delivery)."""
        return date(self.year, self.month, 1)

    @property
    def last_trading_day(self) -> date:
        last = last_business_day_of_month(self.year, self.month)
        return last if self.spec.short_dated else add_business_days(last, -7)

    @property
    def last_delivery_day(self) -> date:
        if self.spec.short_dated:
            return add_business_days(self.last_trading_day, 3)
        return last_business_day_of_month(self.year, self.month)

    def __str__(self) -> str:
        return self.symbol


def conversion_factor(coupon: float, maturity: date, contract: TreasuryFuture) -> float:
    """CBOT conversion factor of a ``coupon`` (decimal) security maturing on ``maturity``.

    ``n`` whole years and ``z`` months from the first day of the contract month to maturity,
    ``z`` rounded down to the month (ZT, Z3N, ZF) or the quarter (the others);
    ``v = z`` if ``z < 7`` else (3 for quarter-rounded contracts, ``z - 6`` otherwise);
    ``a = 1.03 ** (-v / 6)``, ``b = (c / 2) (6 - v) / 6``, ``C = 1.03 ** (-2n)`` if ``z < 7``
    else ``1.03 ** (-(2n + 1))``, ``d = (c / 0.06) (1 - C)``; factor ``a (c/2 + C + d) - b``
    rounded to 4 decimals (CME's published method).
    """
    first = contract.first_delivery_day
    months = (maturity.year - first.year) * 12 + maturity.month - first.month  # day >= 1: floor
    if months < 0:
        raise InputError(f"maturity {maturity} is before {contract.symbol}'s delivery month", field="instrument")
    n, z = divmod(months, 12)
    step = contract.spec.cf_rounding_months
    z -= z % step
    if z < 7:
        v = float(z)
        big_c = 1.03 ** float(-2 * n)
    else:
        v = 3.0 if step == 3 else float(z - 6)
        big_c = 1.03 ** float(-(2 * n + 1))
    c = coupon
    a = 1.03 ** (-v / 6.0)
    b = (c / 2.0) * (6.0 - v) / 6.0
    d = (c / 0.06) * (1.0 - big_c)
    factor: float = a * (c / 2.0 + big_c + d) - b
    return round(factor, 4)


@dataclass(frozen=True, slots=True)
class Deliverable:
    """A security in a contract's basket and its conversion factor."""

    bond: TreasuryBond
    conversion_factor: float

    @property
    def identifier(self) -> str:
        return self.bond.identifier


#: Issues the exchange disallowed from particular contracts under its right to exclude an
#: issue (e.g. CBOT rule 18101.A): ``(root, year, month) -> CUSIPs``.  CME excluded the
#: 5 3/8% February 2031 bond (912810FP8) from the June, September and December 2015 Treasury
#: Bond contracts to close the 2001-2006 gap in 30-year issuance (CME SER-7191, "Solution to
#: Address Delivery Basket Gap in U.S. Treasury Bond Futures", 2014).
EXCLUDED_ISSUES: dict[tuple[str, int, int], frozenset[str]] = {
    ("ZB", 2015, 6): frozenset({"912810FP8"}),
    ("ZB", 2015, 9): frozenset({"912810FP8"}),
    ("ZB", 2015, 12): frozenset({"912810FP8"}),
}


@lru_cache(maxsize=4)
def _notes_and_bonds(master: SecuritiesMaster) -> tuple[SecurityRecord, ...]:
    """The master's notes and bonds by maturity (sorted once per master, not per basket)."""
    return tuple(master.notes_and_bonds())


def deliverable_basket(
    contract: TreasuryFuture, master: SecuritiesMaster, as_of: date | None = None
) -> list[Deliverable]:
    """Contract-grade securities of the master, by maturity, with conversion factors.

    A security must be issued by the contract's last delivery day; with ``as_of`` only
    securities issued on or before ``as_of`` count (no look-ahead to later auctions).
    TIPS, FRNs and bills never qualify; issues in :data:`EXCLUDED_ISSUES` are left out.  May be empty (see the pricer for the error).
    """
    last_delivery = contract.last_delivery_day
    cutoff = last_delivery if as_of is None else min(as_of, last_delivery)
    # the basket changes only on issue dates: key the work on the last issue date <= cutoff
    issued = _issue_dates(master)
    k = bisect_right(issued, cutoff)
    return list(_basket_issued_by(contract, master, issued[k - 1] if k else date.min))


@lru_cache(maxsize=4)
def _issue_dates(master: SecuritiesMaster) -> list[date]:
    return sorted({rec.issue_date for rec in _notes_and_bonds(master)})


@lru_cache(maxsize=2048)
def _basket_issued_by(contract: TreasuryFuture, master: SecuritiesMaster, cutoff: date) -> tuple[Deliverable, ...]:
    """:func:`deliverable_basket` of the securities issued on or before ``cutoff``."""
    rule = contract.spec.rule_for(contract.year, contract.month)
    excluded = EXCLUDED_ISSUES.get((contract.root, contract.year, contract.month), frozenset())
    last_delivery = contract.last_delivery_day
    out: list[Deliverable] = []
    for rec in _notes_and_bonds(master):
        if rec.issue_date > cutoff or rec.maturity <= last_delivery or rec.cusip in excluded:
            continue
        if rule.admits(rec, contract.year, contract.month):
            bond = rec.definition
            assert isinstance(bond, TreasuryBond)
            out.append(Deliverable(bond, conversion_factor(bond.coupon, bond.maturity, contract)))
    return tuple(out)


_ROOTS = sorted([*TREASURY_FUTURES, *RATE_FUTURES], key=len, reverse=True)
_TAIL_RE = re.compile(r"^(?P<code>[A-Z])(?P<year>\d{1,2})$")


def _resolve_year(digits: str, as_of: date) -> int:
    """Two digits: the year within 50 of ``as_of``; one digit: the first year >= ``as_of``'s
    year ending in that digit (``ZNZ5`` at 2025 is 2025, ``ZNH0`` at 2027 is 2030)."""
    if len(digits) == 2:
        year = as_of.year - as_of.year % 100 + int(digits)
        if year > as_of.year + 50:
            year -= 100
        elif year < as_of.year - 50:
            year += 100
        return year
    year = as_of.year - as_of.year % 10 + int(digits)
    return year + 10 if year < as_of.year else year


#: (symbol, as-of date) -> its contract, for symbols that parsed: a Treasury contract's last
#: trading day alone costs ~20 us of business-day arithmetic, and a service parses the same few
#: symbols on every trade what-if.  Refusals are not kept (their errors name the row).
_LIVE_CONTRACTS: dict[tuple[str, date], TreasuryFuture | RateFuture] = {}
_LIVE_CONTRACTS_MAX = 4096


def parse_future_symbol(
    text: str, as_of: date, *, source: str = "instrument", row: int | None = None
) -> TreasuryFuture | RateFuture:
    """Parse a CME futures symbol (``ZNM24``, ``UBZ5``, ``SR3H26``, ``ZQF25``) live at ``as_of``.

    Raises :class:`UnknownInstrumentError` (field ``instrument``) for an unknown root, a bad
    month code or a month the product does not list, and :class:`ExpiredContractError` when
    the contract's last trading day is before ``as_of``.
    """
    code = text.strip().upper()
    known = _LIVE_CONTRACTS.get((code, as_of))
    if known is not None:  # parsed before for this date: the same (frozen) contract
        return known

    def fail(message: str) -> UnknownInstrumentError:
        return UnknownInstrumentError(message, source=source, row=row, field="instrument")

    root = next((r for r in _ROOTS if code.startswith(r) and _TAIL_RE.match(code[len(r):])), None)
    if root is None:
        root = next((r for r in _ROOTS if code.startswith(r) and len(code) > len(r)), None)
    if root is None and code in _ROOTS:
        raise fail(f"'{text}': {code} needs a month code and a year, e.g. {code}Z25")
    if root is None:
        guess = re.sub(r"[A-Z]?\d{1,2}$", "", code) or code
        raise fail(
            f"'{text}': unknown futures root '{guess}' (known: {', '.join(sorted(_ROOTS))}); "
            "expected <root><month code><year>, e.g. ZNZ25"
        )
    m = _TAIL_RE.match(code[len(root):])
    if m is None:
        raise fail(f"'{text}': expected {root}<month code><1 or 2 digit year>, e.g. {root}Z25")
    month_code = m["code"]
    if month_code not in MONTH_CODES:
        raise fail(f"'{text}': '{month_code}' is not a futures month code (F G H J K M N Q U V X Z)")
    month = MONTH_CODES.index(month_code) + 1
    year = _resolve_year(m["year"], as_of)
    contract: TreasuryFuture | RateFuture
    if root in TREASURY_FUTURES:
        if month not in QUARTERLY_MONTHS:
            raise fail(f"'{text}': month code '{month_code}': {root} trades March, June, September, "
                       "December only (H, M, U, Z)")
        contract = TreasuryFuture(root, year, month)
    else:
        if month not in RATE_FUTURES[root].months:
            raise fail(f"'{text}': month code '{month_code}': {root} trades March, June, September, "
                       "December only (H, M, U, Z)")
        contract = RateFuture(root, year, month)
    if contract.last_trading_day < as_of:
        raise ExpiredContractError(
            f"{contract.symbol} has expired: its last trading day was {contract.last_trading_day}, "
            f"before the as-of date {as_of}",
            source=source,
            row=row,
            field="instrument",
        )
    if len(_LIVE_CONTRACTS) >= _LIVE_CONTRACTS_MAX:
        _LIVE_CONTRACTS.clear()
    _LIVE_CONTRACTS[(code, as_of)] = contract
    return contract
