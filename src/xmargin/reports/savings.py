"""Savings, liquidity and funding from cross-margining: per account, member and market.

Aggregation rules (CFTC Regulation 39.13(g)(8)(i), customer gross margining):

* every account is margined on its own positions (:func:`~xmargin.margin.calculator.compute_margins`);
* a member's **customer** requirement is the *sum* of each customer account's own requirement:
  no offset between customers, and never between house and customer;
* a member's **house** requirement is the sum of its house accounts (the member's own and its
  affiliates', each margined on its own positions: offsets stay inside each account);
* a member's total is house + customers; the market is the sum of the members.

So every aggregate is a plain sum of account figures (:meth:`Figures.total`); nothing is ever
re-margined at an aggregate level.

Figures (dollars unless stated):

* ``before``: stand-alone at both clearinghouses (``total_before``); ``after``: with the
  cross-margin reduction (``total_after``); by house: ``ficc_before`` / ``ficc_after``,
  ``cme_before`` / ``cme_after``;
* ``savings = before - after``, ``savings_pct`` in percent of ``before``;
* liquidity freed: the margin each clearinghouse hands back, ``ficc_before - ficc_after`` and
  ``cme_before - cme_after`` (they add up to the savings);
* ``funding_saved``: dollars per year, ``savings x rate x 365 / 360`` (money-market basis, like
  SOFR) at :class:`FundingRate` (default: the as-of SOFR fixing plus 50 bp, a **choice**);
* systemic view: ``stressed_loss_before`` = worst historical loss of the FICC positions plus
  that of the CME positions, each taken alone over the FICC scenario set (each clearinghouse's
  exposure without the arrangement), ``stressed_loss_after`` = worst loss of the combined
  positions.  Aggregates sum account figures (each account's own worst scenario: the
  conservative, account-by-account view, as margin is collected); ``coverage`` is margin over
  stressed loss.

Accounts without a number (an unpriced position) are left out of every total and listed in
``excluded``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from xmargin.errors import InputError
from xmargin.margin.calculator import AccountMargins
from xmargin.market.snapshot import MarketSnapshot
from xmargin.portfolio.book import Book

DAY_COUNT = 365.0 / 360.0  # a year of interest on the ACT/360 basis
DEFAULT_SPREAD_BP = 50.0


@dataclass(frozen=True)
class FundingRate:
    """Annual rate at which posted margin is funded: percent, ACT/360."""

    rate_pct: float
    base: str  # where the base rate comes from
    base_pct: float
    spread_bp: float

    @property
    def annual_factor(self) -> float:
        """Dollars of funding per dollar of margin held for a year."""
        return self.rate_pct / 100.0 * DAY_COUNT


def funding_rate(snapshot: MarketSnapshot | None = None, *, spread_bp: float = DEFAULT_SPREAD_BP,
                 base_pct: float | None = None) -> FundingRate:
    """``base + spread``: ``base_pct`` if given, else the SOFR fixing on or before the as-of date."""
    if not -500.0 <= spread_bp <= 5000.0:
        raise InputError(f"funding spread {spread_bp} bp is outside [-500, 5000]", field="funding spread")
    if base_pct is not None:
        label = "given"
    elif snapshot is not None and snapshot.sofr is not None:
        day, base_pct = snapshot.sofr.on_or_before(snapshot.as_of)
        label = f"SOFR fixing of {day.isoformat()}"
    else:
        raise InputError("no SOFR series in the data directory: give the funding rate explicitly",
                         field="funding rate")
    if not -5.0 <= base_pct <= 30.0:
        raise InputError(f"funding base rate {base_pct}% is outside [-5, 30]", field="funding rate")
    return FundingRate(base_pct + spread_bp / 100.0, label, base_pct, spread_bp)


ADDITIVE = ("accounts", "before", "after", "ficc_before", "ficc_after", "cme_before", "cme_after",
            "stressed_loss_before", "stressed_loss_after")


@dataclass(frozen=True)
class Figures:
    """Margin and risk of one account or a sum of accounts (dollars)."""

    accounts: int
    before: float
    after: float
    ficc_before: float
    ficc_after: float
    cme_before: float
    cme_after: float
    stressed_loss_before: float
    stressed_loss_after: float
    funding_factor: float  # dollars per year per dollar of margin (FundingRate.annual_factor)

    @classmethod
    def total(cls, parts: Iterable[Figures], funding_factor: float) -> Figures:
        """The plain sum of ``parts``: gross, no offsets between them."""
        items = list(parts)
        sums = {f: sum((getattr(p, f) for p in items), 0) for f in ADDITIVE}
        return cls(**sums, funding_factor=funding_factor)

    @property
    def savings(self) -> float:
        return self.before - self.after

    @property
    def savings_pct(self) -> float:
        """Savings in percent of the stand-alone requirement (0 when there is none)."""
        return self.savings / self.before * 100.0 if self.before > 0 else 0.0

    @property
    def liquidity_freed_ficc(self) -> float:
        return self.ficc_before - self.ficc_after

    @property
    def liquidity_freed_cme(self) -> float:
        return self.cme_before - self.cme_after

    @property
    def funding_saved(self) -> float:
        """Dollars per year no longer spent funding margin."""
        return self.savings * self.funding_factor

    @property
    def coverage_before(self) -> float:
        """Margin before / stressed loss before (NaN without a stressed loss)."""
        return self.before / self.stressed_loss_before if self.stressed_loss_before > 0 else float("nan")

    @property
    def coverage_after(self) -> float:
        return self.after / self.stressed_loss_after if self.stressed_loss_after > 0 else float("nan")

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "funding_factor"}
        for name in ("savings", "savings_pct", "liquidity_freed_ficc", "liquidity_freed_cme", "funding_saved",
                     "coverage_before", "coverage_after"):
            value = getattr(self, name)
            out[name] = None if not np.isfinite(value) else value  # type: ignore[assignment]
        return out


@dataclass(frozen=True)
class AccountSavings:
    account: str
    member: str
    account_type: str
    archetype: str
    cross_margin: bool
    figures: Figures


@dataclass(frozen=True)
class MemberSavings:
    """One clearing member: house and affiliate accounts, customers (gross) and their sum."""

    member: str
    house: Figures
    customers: Figures
    total: Figures


@dataclass(frozen=True)
class SavingsReport:
    funding: FundingRate
    accounts: tuple[AccountSavings, ...]
    members: tuple[MemberSavings, ...]
    market: Figures
    market_house: Figures
    market_customers: Figures
    by_archetype: dict[str, Figures]
    excluded: tuple[str, ...]

    def customers(self) -> list[AccountSavings]:
        return [a for a in self.accounts if a.account_type == "customer"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "funding": asdict(self.funding),
            "market": self.market.to_dict(),
            "market_house": self.market_house.to_dict(),
            "market_customers": self.market_customers.to_dict(),
            "members": [{"member": m.member, "house": m.house.to_dict(), "customers": m.customers.to_dict(),
                         "total": m.total.to_dict()} for m in self.members],
            "by_archetype": {k: v.to_dict() for k, v in self.by_archetype.items()},
            "excluded": list(self.excluded),
        }


def account_figures(margins: AccountMargins, i: int, funding: FundingRate) -> Figures:
    """Figures of account ``i`` (one row of the margin arrays)."""
    return Figures(
        accounts=1,
        before=float(margins.total_before[i]),
        after=float(margins.total_after[i]),
        ficc_before=float(margins.ficc_standalone[i]),
        ficc_after=float(margins.ficc_requirement[i]),
        cme_before=float(margins.cme_standalone[i]),
        cme_after=float(margins.cme_requirement[i]),
        stressed_loss_before=float(margins.stressed_loss_ficc[i] + margins.stressed_loss_cme[i]),
        stressed_loss_after=float(margins.stressed_loss_combined[i]),
        funding_factor=funding.annual_factor,
    )


def savings_report(book: Book, margins: AccountMargins, funding: FundingRate) -> SavingsReport:
    """Per account, per member (house, customers gross, total), per archetype and market-wide."""
    if len(margins.total_before) != book.size:
        raise InputError(f"margins cover {len(margins.total_before)} accounts but the book has {book.size}",
                         field="margins")
    for acc in book.accounts:
        if acc.account_type not in ("house", "customer", "affiliate"):
            raise InputError(f"account {acc.account}: unknown account type '{acc.account_type}'",
                             field="account_type")
    rows: list[AccountSavings] = []
    excluded: list[str] = []
    for i, acc in enumerate(book.accounts):
        fig = account_figures(margins, i, funding)
        if not np.isfinite([fig.before, fig.after]).all():
            excluded.append(acc.account)
            continue
        rows.append(AccountSavings(acc.account, acc.member, acc.account_type, acc.archetype or "(none)",
                                   acc.cross_margin, fig))
    k = funding.annual_factor
    members = []
    for member in book.members():
        # house: the member's own account and its affiliates' (each margined on its own)
        house = Figures.total((r.figures for r in rows if r.member == member and r.account_type in ("house", "affiliate")), k)
        # customer gross margining: each customer's own requirement, summed
        customers = Figures.total((r.figures for r in rows if r.member == member and r.account_type == "customer"), k)
        members.append(MemberSavings(member, house, customers, Figures.total([house, customers], k)))
    archetypes = sorted({r.archetype for r in rows})
    return SavingsReport(
        funding=funding,
        accounts=tuple(rows),
        members=tuple(members),
        market=Figures.total((m.total for m in members), k),
        market_house=Figures.total((m.house for m in members), k),
        market_customers=Figures.total((m.customers for m in members), k),
        by_archetype={a: Figures.total((r.figures for r in rows if r.archetype == a), k) for a in archetypes},
        excluded=tuple(excluded),
    )
