"""Savings aggregation: customer gross margining, member and market sums, funding, systemic view.

Real instruments on real data: the ZNU24 10-year note future and its cheapest-to-deliver on
2024-06-26, the 4 5/8% note of April 2031 (CUSIP 91282CKN0).  Expected figures are computed
here from the per-account margin arrays or the raw data files, never taken from the code
under test.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import InputError
from xmargin.margin.calculator import AccountMargins, compute_margins
from xmargin.margin.context import build_context
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Account, build_book
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
from xmargin.reference.futures import TreasuryFuture
from xmargin.reports.savings import FundingRate, funding_rate, savings_report

AS_OF = date(2024, 6, 26)
NOTE_CUSIP = "91282CKN0"
FACE = 100_000_000.0


def _sofr_from_file(data_dir: Path, day: date) -> float:
    """The SOFR fixing on or before ``day``, read straight from the CSV (percent)."""
    best: tuple[date, float] | None = None
    with (data_dir / "sofr" / "sofr.csv").open() as fh:
        for row in csv.reader(fh):
            try:
                d, v = date.fromisoformat(row[0]), float(row[1])
            except ValueError:
                continue
            if d <= day and (best is None or d > best[0]):
                best = (d, v)
    assert best is not None
    return best[1]


@pytest.fixture(scope="module")
def market(data_dir: Path):  # type: ignore[no-untyped-def]
    snap = load_snapshot(AS_OF, data_dir=data_dir)
    master = load_master(data_dir)
    note = master.definition(NOTE_CUSIP)
    future = TreasuryFuture("ZN", 2024, 9)
    dv01, _ = sensitivities(InstrumentUniverse.of([note, future]), snap, master)
    contracts = round(FACE * dv01[0] / dv01[1])  # DV01 hedge ratio
    assert 800 < contracts < 1200  # ~$59k per bp against ~$62 per contract
    return snap, master, note, future, float(contracts)


@pytest.fixture(scope="module")
def gross_case(market):  # type: ignore[no-untyped-def]
    """Member A: two customers, one long the note, one short the hedge; member B: one customer
    holding both; member C: the note in the house account, the futures in a customer account."""
    snap, master, note, future, n = market
    accounts = [
        Account("A-C1", "A", "customer", True), Account("A-C2", "A", "customer", True),
        Account("B-C1", "B", "customer", True),
        Account("C-H", "C", "house", True), Account("C-C1", "C", "customer", True),
    ]
    holdings = [(0, note, FACE), (1, future, -n), (2, note, FACE), (2, future, -n), (3, note, FACE), (4, future, -n)]
    book = build_book(accounts, holdings)
    margins = compute_margins(build_context(snap, master, book.universe), book)
    funding = funding_rate(snap, spread_bp=50.0)
    return book, margins, savings_report(book, margins, funding)


def test_customers_get_no_credit_from_each_other(gross_case) -> None:  # type: ignore[no-untyped-def]
    book, m, report = gross_case
    a = next(x for x in report.members if x.member == "A")
    # each customer has one side only: no reduction, so the member's customer margin is the
    # plain sum of the two stand-alone requirements
    assert m.applied_reduction_factor[0] == 0.0 and m.applied_reduction_factor[1] == 0.0
    assert a.customers.after == pytest.approx(m.total_before[0] + m.total_before[1], rel=1e-12)
    assert a.customers.savings == pytest.approx(0.0, abs=1e-6)
    assert a.customers.accounts == 2 and a.house.accounts == 0


def test_one_account_holding_both_sides_gets_the_credit(gross_case) -> None:  # type: ignore[no-untyped-def]
    book, m, report = gross_case
    a = next(x for x in report.members if x.member == "A")
    b = next(x for x in report.members if x.member == "B")
    # same stand-alone positions, so the same requirement before ...
    assert b.customers.before == pytest.approx(a.customers.before, rel=1e-9)
    # ... but a DV01-neutral basis trade in one account is cut by most of the 80% cap
    assert m.applied_reduction_factor[2] > 0.6
    assert b.customers.after < 0.4 * a.customers.after
    assert b.customers.savings == pytest.approx(m.total_before[2] - m.total_after[2], rel=1e-12)


def test_house_and_customer_are_never_netted(gross_case) -> None:  # type: ignore[no-untyped-def]
    book, m, report = gross_case
    c = next(x for x in report.members if x.member == "C")
    assert c.house.after == pytest.approx(m.total_before[3], rel=1e-12)
    assert c.customers.after == pytest.approx(m.total_before[4], rel=1e-12)
    assert c.total.savings == pytest.approx(0.0, abs=1e-6)
    a = next(x for x in report.members if x.member == "A")
    assert c.total.after == pytest.approx(a.total.after, rel=1e-9)


def test_stressed_loss_before_and_after(gross_case) -> None:  # type: ignore[no-untyped-def]
    book, m, report = gross_case
    a = next(x for x in report.members if x.member == "A")
    b = next(x for x in report.members if x.member == "B")
    # "before": each house's worst loss on its own side; the hedged account's combined loss is far smaller
    assert b.customers.stressed_loss_before == pytest.approx(m.stressed_loss_ficc[2] + m.stressed_loss_cme[2])
    assert b.customers.stressed_loss_after == pytest.approx(m.stressed_loss_combined[2])
    assert b.customers.stressed_loss_after < 0.5 * b.customers.stressed_loss_before
    assert a.customers.stressed_loss_before == pytest.approx(b.customers.stressed_loss_before, rel=1e-9)


def test_funding_rate_is_sofr_plus_spread(market, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    snap = market[0]
    sofr = _sofr_from_file(data_dir, AS_OF)
    rate = funding_rate(snap, spread_bp=50.0)
    assert rate.rate_pct == pytest.approx(sofr + 0.50, abs=1e-12)
    assert "SOFR" in rate.base
    assert funding_rate(snap, spread_bp=25.0, base_pct=4.0).rate_pct == pytest.approx(4.25)


def test_funding_saved_is_savings_times_rate(gross_case, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    book, m, report = gross_case
    b = next(x for x in report.members if x.member == "B")
    rate = (_sofr_from_file(data_dir, AS_OF) + 0.5) / 100.0
    expected = (m.total_before[2] - m.total_after[2]) * rate * 365.0 / 360.0
    assert b.total.funding_saved == pytest.approx(expected, rel=1e-12)
    freed = (m.ficc_standalone[2] - m.ficc_requirement[2]) + (m.cme_standalone[2] - m.cme_requirement[2])
    assert b.total.liquidity_freed_ficc + b.total.liquidity_freed_cme == pytest.approx(freed, rel=1e-12)


def test_bad_funding_inputs_name_the_problem(market) -> None:  # type: ignore[no-untyped-def]
    snap = market[0]
    with pytest.raises(InputError, match="spread"):
        funding_rate(snap, spread_bp=9999.0)
    with pytest.raises(InputError, match="base rate"):
        funding_rate(snap, base_pct=75.0)
    with pytest.raises(InputError, match="SOFR"):
        funding_rate(None)


# --- aggregation on hand-made figures -------------------------------------------------------------

def _hand_made() -> tuple[list[Account], AccountMargins]:
    rng = np.random.default_rng(3)
    accounts = []
    for mem in ("M1", "M2", "M3"):
        accounts.append(Account(f"{mem}-H", mem, "house", True, "house"))
        accounts.append(Account(f"{mem}-A", mem, "house", False, "affiliate"))
        accounts += [Account(f"{mem}-C{k}", mem, "customer", bool(k % 2), "basis" if k % 3 else "directional")
                     for k in range(7)]
    m = AccountMargins.empty(len(accounts))
    m.ficc_standalone[:] = rng.uniform(0, 5e6, len(accounts))
    m.cme_standalone[:] = rng.uniform(0, 5e6, len(accounts))
    m.ficc_requirement[:] = m.ficc_standalone * rng.uniform(0.2, 1.0, len(accounts))
    m.cme_requirement[:] = m.cme_standalone * rng.uniform(0.2, 1.0, len(accounts))
    m.total_before[:] = m.ficc_standalone + m.cme_standalone
    m.total_after[:] = m.ficc_requirement + m.cme_requirement
    m.stressed_loss_ficc[:] = rng.uniform(0, 9e6, len(accounts))
    m.stressed_loss_cme[:] = rng.uniform(0, 9e6, len(accounts))
    m.stressed_loss_combined[:] = rng.uniform(0, 4e6, len(accounts))
    m.total_before[5] = m.total_after[5] = np.nan  # M1-C3: an account without a number
    return accounts, m


def test_member_and_market_totals_are_sums_of_accounts() -> None:
    accounts, m = _hand_made()
    book = build_book(accounts, [])
    report = savings_report(book, m, FundingRate(5.0, "given", 5.0, 0.0))
    assert report.excluded == ("M1-C3",)
    expected: dict[tuple[str, str], list[float]] = {}
    for i, acc in enumerate(accounts):
        if np.isnan(m.total_before[i]):
            continue
        key = (acc.member, acc.account_type)
        row = [1, m.total_before[i], m.total_after[i], m.ficc_standalone[i], m.cme_requirement[i],
               m.stressed_loss_ficc[i] + m.stressed_loss_cme[i], m.stressed_loss_combined[i]]
        expected[key] = [a + b for a, b in zip(expected.get(key, [0.0] * 7), row, strict=True)]

    def got(f):  # type: ignore[no-untyped-def]
        return [f.accounts, f.before, f.after, f.ficc_before, f.cme_after, f.stressed_loss_before,
                f.stressed_loss_after]

    market = [0.0] * 7
    for mem in report.members:
        assert got(mem.house) == pytest.approx(expected[(mem.member, "house")], rel=1e-12)
        assert got(mem.customers) == pytest.approx(expected[(mem.member, "customer")], rel=1e-12)
        member_total = [a + b for a, b in zip(expected[(mem.member, "house")], expected[(mem.member, "customer")],
                                              strict=True)]
        assert got(mem.total) == pytest.approx(member_total, rel=1e-12)
        market = [a + b for a, b in zip(market, member_total, strict=True)]
    assert [m.member for m in report.members] == ["M1", "M2", "M3"]
    assert got(report.market) == pytest.approx(market, rel=1e-12)
    assert report.market.accounts == len(accounts) - 1
    total_savings = float(np.nansum(m.total_before) - np.nansum(m.total_after))
    assert report.market.savings == pytest.approx(total_savings, rel=1e-12)
    assert report.market.funding_saved == pytest.approx(total_savings * 0.05 * 365 / 360, rel=1e-12)
    assert report.market.savings_pct == pytest.approx(total_savings / np.nansum(m.total_before) * 100, rel=1e-12)
    basis = [i for i, a in enumerate(accounts) if a.archetype == "basis" and not np.isnan(m.total_before[i])]
    assert report.by_archetype["basis"].after == pytest.approx(sum(m.total_after[i] for i in basis), rel=1e-12)


def test_mismatched_inputs_are_rejected() -> None:
    accounts, m = _hand_made()
    with pytest.raises(InputError, match="margins cover 27 accounts but the book has 26"):
        savings_report(build_book(accounts[:-1], []), m, FundingRate(5.0, "given", 5.0, 0.0))
    odd = [Account("X", "M1", "omnibus")]
    with pytest.raises(InputError, match="unknown account type 'omnibus'"):
        savings_report(build_book(odd, []), AccountMargins.empty(1), FundingRate(5.0, "given", 5.0, 0.0))
