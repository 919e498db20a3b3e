"""A repo-financed long through history: the par note bought and repo'd out, the repo rolled.

A member that is long a Treasury financed in repo has, at FICC's Government Securities
Division, a **repo** (it delivered the note against cash and owes the repurchase price):
one :class:`~xmargin.reference.repo.Repo` position, positive quantity in face dollars, worth
``dirty(note) - repurchase * DF(end) / DF(settle)`` (:mod:`xmargin.pricing.repo`).  The note
leg carries the price risk, the cash leg (a short cash-borrowing position collateralised by
the note) only the rate risk over its remaining term.  Holding the note outright as well
would count it twice: it is out on repo.

**Roll rule** (:class:`RolledRepo`).  Roll dates are the backtest's first day ``r_0`` and then
``r_{k+1} = following(r_k + term_days)`` (bond-market business days,
:mod:`xmargin.reference.calendar`): ``term_days = 1`` is an overnight repo re-opened every
business day (over a weekend or holiday it runs to the next business day), ``7`` a one-week
term repo rolled at maturity.  On a roll date ``r`` the member buys the then ``tenor_months``
par note (coupon = that day's par yield, as the ``OUT10Y`` leg) and repos it out:

* start ``settle(r)`` (T+1, when the purchase settles), end ``settle(r_{k+1})``, so the
  repos of successive rolls tile the settlement calendar without gap or overlap;
* rate: the overnight fixing published for ``r`` (SOFR; before its first fixing on
  2018-04-03, the effective fed funds rate, the documented proxy) plus ``spread_bp``;
* cash lent to the member: ``(1 - haircut) x`` the note's dirty price at ``settle(r)`` on
  ``r``'s curve (about par: the note is struck at par that day).

On any backtest day ``t`` the book holds the repo of the latest roll date ``r_k <= t``, so
its composition is a function of ``(r_0, t)`` alone, whichever process computes the day.

**Realised P&L.** The backtest's realised P&L is hypothetical (positions held constant, the
later curve, day ``t``'s dates: :mod:`xmargin.validation.backtest`): the note's price move
less the change in the present value of the repurchase price.  Neither the note's coupon
accrual nor the repo interest (carry) is in it, as for every other book and in the
scenarios.  The repo interest actually paid over a horizon is
:func:`financing_accrual`: ``sum_k cash_k x rate_k x days_k / 360`` over the repos in force
between ``settle(t)`` and ``settle(t_end)`` (ACT/360 simple interest, the U.S. money-market
convention; SIFMA Master Repurchase Agreement, annex: "Price Differential ... on the basis of
the actual number of days ... and a 360-day year").

**Why the margin is the outright note's.**  In a scenario moving the overnight zero rate by
``dz``, the cash leg moves by about ``R x dz x tau`` (``R``: repurchase price, ``tau``: its
remaining term in years); for an overnight repo on $100m and a 25 bp move, ``1e8 x 0.0025 /
365 = $685``, against a VaR of the note in the millions.  Left out: haircut changes and margin
calls on the repo itself (bilateral, not FICC's), fails and the repo counterparty's credit.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from xmargin.errors import InputError, MissingMarketDataError
from xmargin.market.curve import par_bond
from xmargin.market.history import RateHistory
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.pricing.bonds import dirty_prices
from xmargin.reference.calendar import add_months, following, settlement_date
from xmargin.reference.cashflows import resolve
from xmargin.reference.repo import Repo, make_repo

SOURCE = "reference book"
#: A fixing older than this (calendar days) before a roll date is stale: an error, not a rate.
STALE_FIXING_DAYS = 7


@dataclass(frozen=True)
class RolledRepo:
    """Long the ``tenor_months`` par note financed by a ``term_days`` repo, rolled at maturity
    from ``anchor`` (module docstring).  Held per $1 face of collateral, like a repo."""

    anchor: date
    tenor_months: int = 120
    term_days: int = 1
    haircut: float = 0.0
    spread_bp: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.tenor_months, int) or self.tenor_months <= 0:
            raise InputError(f"collateral tenor {self.tenor_months!r} months must be a positive whole number",
                             source=SOURCE, field="tenor_months")
        if not isinstance(self.term_days, int) or self.term_days < 1:
            raise InputError(f"repo term {self.term_days!r} must be a whole number of calendar days >= 1 "
                             "(1: overnight)", source=SOURCE, field="term_days")
        # the repo must end before the collateral matures (as make_repo requires of a portfolio row)
        latest_end = settlement_date(following(self.anchor + timedelta(days=self.term_days)))
        if latest_end >= add_months(self.anchor, self.tenor_months):
            raise InputError(f"repo term {self.term_days} days runs to {latest_end}, beyond the {self.tenor_months}-month "
                             f"collateral's maturity {add_months(self.anchor, self.tenor_months)}",
                             source=SOURCE, field="term_days")
        if not 0.0 <= self.haircut < 0.5:
            raise InputError(f"haircut {self.haircut!r} is outside [0, 0.5)", source=SOURCE, field="haircut")
        if not -500.0 <= self.spread_bp <= 500.0:
            raise InputError(f"spread {self.spread_bp!r} bp is outside [-500, 500]", source=SOURCE, field="spread_bp")

    @property
    def identifier(self) -> str:
        return f"ROLLED-REPO:{self.tenor_months}M:{self.term_days}D:{self.haircut:g}:{self.spread_bp:g}bp:{self.anchor}"

    def roll_dates(self, until: date) -> list[date]:
        """Every roll date from the anchor up to ``until`` (inclusive)."""
        rolls = _schedule(self.anchor, self.term_days, until)
        return rolls[: bisect_right(rolls, until)]

    def roll_date(self, day: date) -> date:
        """The roll date in force on ``day``: the latest ``r_k <= day``."""
        if day < self.anchor:
            raise InputError(f"day {day} is before the repo book's first roll date {self.anchor}",
                             source=SOURCE, field="anchor")
        rolls = _schedule(self.anchor, self.term_days, day)
        return rolls[bisect_right(rolls, day) - 1]

    def next_roll(self, roll: date) -> date:
        return following(roll + timedelta(days=self.term_days))

    def repo_on(self, snapshot: MarketSnapshot) -> Repo:
        """The repo the book holds on the snapshot's day (per 100 face of collateral)."""
        roll = self.roll_date(snapshot.as_of)
        return _repo_struck(self, roll, str(snapshot.data_dir))


_SCHEDULES: dict[tuple[date, int], list[date]] = {}


def _schedule(anchor: date, term_days: int, until: date) -> list[date]:
    """Roll dates from ``anchor`` to beyond ``until`` (one growing list per book and process:
    a later call only extends it, so a 20-year daily backtest walks the calendar once)."""
    out = _SCHEDULES.setdefault((anchor, term_days), [anchor])
    step = timedelta(days=term_days)
    while out[-1] <= until:
        out.append(following(out[-1] + step))
    return out  # extends past ``until``: callers bisect


def overnight_fixing(snapshot: MarketSnapshot, day: date) -> tuple[str, date, float]:
    """``(series, fixing date, percent)``: SOFR for ``day``, or before SOFR's first fixing the
    effective fed funds rate (the documented proxy); an error when neither has a recent fixing."""
    sofr, effr = snapshot.sofr, snapshot.fedfunds
    series: RateHistory | None = sofr if sofr is not None and len(sofr.dates) and sofr.dates[0] <= np.datetime64(day) else effr
    if series is None:
        raise MissingMarketDataError(f"{snapshot.data_dir}: no SOFR or EFFR history for the repo rate on {day}")
    fixed_on, pct = series.on_or_before(day)
    if (day - fixed_on).days > STALE_FIXING_DAYS:
        raise MissingMarketDataError(f"{series.source}: the last {series.name} fixing on or before {day} is from "
                                     f"{fixed_on}, more than {STALE_FIXING_DAYS} days earlier (repo rate of the roll)")
    return series.name, fixed_on, pct


@lru_cache(maxsize=256)
def _repo_struck(book: RolledRepo, roll: date, data_dir: str) -> Repo:
    snap = load_snapshot(roll, data_dir=data_dir, previous_business_day=True)
    coupon = float(np.interp(book.tenor_months, snap.tenor_months, snap.par_yields))
    note = par_bond(snap.as_of, book.tenor_months, round(coupon, 8))
    start = settlement_date(roll)
    dirty = float(dirty_prices(resolve([note], start), snap.curve)[0, 0])
    _, _, pct = overnight_fixing(snap, roll)
    return make_repo(note, start=start, end=settlement_date(book.next_roll(roll)), rate_pct=pct + book.spread_bp / 100.0,
                     cash_amount=(1.0 - book.haircut) * dirty, face=100.0, as_of=roll, source=SOURCE)


def financing_accrual(book: RolledRepo, day: date, horizon_end: date, data_dir: str) -> float:
    """Repo interest paid per $1 face of collateral between ``settle(day)`` and
    ``settle(horizon_end)`` under the roll rule (positive: a cost to the repo-financed long):
    ``sum_k cash_k / 100 x rate_k x days_k / 360`` over the repos in force (ACT/360)."""
    lo, hi = settlement_date(day), settlement_date(horizon_end)
    total = 0.0
    rolls = _schedule(book.anchor, book.term_days, horizon_end)
    first = max(bisect_right(rolls, day) - 1, 0)
    for roll in rolls[first : bisect_right(rolls, horizon_end)]:
        repo = _repo_struck(book, roll, data_dir)
        days = (min(repo.end, hi) - max(repo.start, lo)).days
        if days > 0:
            total += repo.cash_per_100 / 100.0 * repo.rate * days / 360.0
    return total
