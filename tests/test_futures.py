"""Treasury futures: conversion factors, baskets, dates, symbols and fair value on real data."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmargin.errors import ExpiredContractError, MissingMarketDataError, UnknownInstrumentError
from xmargin.market.curve import ZeroCurves
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master
from xmargin.pricing.futures import treasury_future_details, treasury_future_prices
from xmargin.reference.calendar import add_months
from xmargin.reference.cashflows import resolve
from xmargin.reference.conventions import dirty_from_yield
from xmargin.reference.futures import (
    EXCLUDED_ISSUES,
    TREASURY_FUTURES,
    TreasuryFuture,
    conversion_factor,
    deliverable_basket,
    parse_future_symbol,
)
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBond

AS_OF = date(2024, 6, 26)  # the FedInvest price date


@pytest.fixture(scope="module")
def master(data_dir: Path) -> SecuritiesMaster:
    return load_master(data_dir)


@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> MarketSnapshot:
    return load_snapshot(AS_OF, data_dir=data_dir)


# --- conversion factors ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("root", "year", "month", "coupon", "maturity", "expected"),
    [
        # CME, "Calculating U.S. Treasury Futures Conversion Factors": the 4 1/8% note of
        # 2030-08-31 against the December 2023 10-Year contract.
        ("ZN", 2023, 12, 0.04125, date(2030, 8, 31), 0.9003),
        # CME-published factors for the December 2008 contracts (methodology section 8).
        ("ZT", 2008, 12, 0.015, date(2010, 10, 31), 0.9229),
        ("ZF", 2008, 12, 0.0275, date(2013, 10, 31), 0.8653),
        ("ZN", 2008, 12, 0.0375, date(2018, 11, 15), 0.8357),  # pre-2023 basket, same formula
        ("ZB", 2008, 12, 0.045, date(2038, 5, 15), 0.7943),
    ],
)
def test_conversion_factor_matches_cme(root: str, year: int, month: int, coupon: float,
                                       maturity: date, expected: float) -> None:
    assert conversion_factor(coupon, maturity, TreasuryFuture(root, year, month)) == expected


@given(
    root=st.sampled_from(sorted(TREASURY_FUTURES)),
    year=st.integers(2001, 2040),
    month=st.sampled_from([3, 6, 9, 12]),
    months=st.integers(21, 360),
    eighths=st.integers(1, 64),
)
def test_conversion_factor_is_price_at_six_percent(root: str, year: int, month: int, months: int,
                                                   eighths: int) -> None:
    """Independent check: the clean price per 1 at a 6% street yield of the same coupon with
    the rounded term, settled on the first day of the month.  CME counts the odd months as
    v/6 of a period where street convention counts days, so they agree to ~2e-4."""
    contract = TreasuryFuture(root, year, month)
    first = contract.first_delivery_day
    coupon = eighths / 800.0
    maturity = add_months(first, months).replace(day=15)
    step = contract.spec.cf_rounding_months
    rounded = months - months % step
    bond = TreasuryBond(coupon, add_months(first, rounded))
    cf = resolve([bond], first)
    clean = (dirty_from_yield(cf, [0.06])[0] - cf.accrued[0]) / 100.0
    factor = conversion_factor(coupon, maturity, contract)
    assert factor == pytest.approx(clean, abs=3e-4)
    assert (factor < 1.0) if coupon <= 0.055 else (factor > 1.0) if coupon >= 0.065 else True
    assert conversion_factor(coupon + 0.00125, maturity, contract) >= factor


# --- dates, symbols, specs -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("symbol", "last_trading", "last_delivery"),
    [
        # CME product calendars: 10-Year Sep-2024 last trade Thursday 2024-09-19, last delivery
        # Monday 2024-09-30; 2-Year Sep-2024 last trade 2024-09-30, delivery 3 days later.
        ("ZNU24", date(2024, 9, 19), date(2024, 9, 30)),
        ("ZTU24", date(2024, 9, 30), date(2024, 10, 3)),
        # Good Friday 2024-03-29 closes the bond market: March 2024 ends on the 28th.
        ("ZNH24", date(2024, 3, 19), date(2024, 3, 28)),
        ("ZTH24", date(2024, 3, 28), date(2024, 4, 3)),
        # Juneteenth (Wednesday 2024-06-19) is skipped when counting seven days back.
        ("ZNM24", date(2024, 6, 18), date(2024, 6, 28)),
        ("ZBZ24", date(2024, 12, 19), date(2024, 12, 31)),
        ("ZFU24", date(2024, 9, 30), date(2024, 10, 3)),
    ],
)
def test_last_trading_and_delivery_days(symbol: str, last_trading: date, last_delivery: date) -> None:
    contract = parse_future_symbol(symbol, date(2024, 1, 2))
    assert isinstance(contract, TreasuryFuture)
    assert (contract.last_trading_day, contract.last_delivery_day) == (last_trading, last_delivery)
    assert contract.first_delivery_day == date(contract.year, contract.month, 1)


@pytest.mark.parametrize("root", ["ZT", "ZF", "ZN", "ZB"])
def test_last_trading_day_matches_roll_in_real_front_series(data_dir: Path, root: str) -> None:
    """Yahoo's unadjusted front series shows the expiring contract (thin delivery-month
    volume) until it expires, then the next one: volume jumps twenty-fold on the old
    contract's last trading day.  Every contract 2016-2024 (36 per root) must agree."""
    rows = [(date.fromisoformat(r["date"]), float(r["volume"]))
            for r in csv.DictReader((data_dir / "futures" / f"{root}.csv").open())]
    mismatches = []
    for year in range(2016, 2025):
        for month in (3, 6, 9, 12):
            contract = TreasuryFuture(root, year, month)
            window = [r for r in rows if date(year, month, 1) <= r[0] <= contract.last_delivery_day]
            switch = next((d1 for (_, v0), (d1, v1) in zip(window, window[1:], strict=False)
                           if v1 > 20 * max(v0, 1.0) and v1 > 100_000), None)
            if switch != contract.last_trading_day:
                mismatches.append((contract.symbol, contract.last_trading_day, switch))
    assert mismatches == []


def test_specs() -> None:
    sizes = {root: spec.contract_size for root, spec in TREASURY_FUTURES.items()}
    assert sizes == {"ZT": 200_000, "Z3N": 200_000, "ZF": 100_000, "ZN": 100_000, "TN": 100_000,
                     "TWE": 100_000, "ZB": 100_000, "UB": 100_000}
    assert TreasuryFuture("ZT", 2024, 9).dollars_per_point == 2000.0
    assert {r for r, s in TREASURY_FUTURES.items() if s.cf_rounding_months == 1} == {"ZT", "Z3N", "ZF"}
    assert TreasuryFuture("ZN", 2024, 6).symbol == "ZNM24"
    assert TreasuryFuture("UB", 2025, 12).symbol == "UBZ25"
    assert TreasuryFuture("Z3N", 2030, 3).symbol == "Z3NH30"


def test_parse_symbols() -> None:
    assert parse_future_symbol("znu24", AS_OF) == TreasuryFuture("ZN", 2024, 9)
    assert parse_future_symbol(" Z3NZ24 ", AS_OF) == TreasuryFuture("Z3N", 2024, 12)
    assert parse_future_symbol("TWEU24", AS_OF) == TreasuryFuture("TWE", 2024, 9)
    assert parse_future_symbol("ZNZ5", date(2025, 1, 2)) == TreasuryFuture("ZN", 2025, 12)
    assert parse_future_symbol("ZNH0", date(2027, 5, 3)) == TreasuryFuture("ZN", 2030, 3)
    assert parse_future_symbol("SR3H26", AS_OF) == RateFuture("SR3", 2026, 3)
    assert parse_future_symbol("ZQF25", AS_OF) == RateFuture("ZQ", 2025, 1)
    assert parse_future_symbol("SR1N24", AS_OF) == RateFuture("SR1", 2024, 7)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("XYZ24", "unknown futures root 'XY'"),
        ("ZNA24", "'A' is not a futures month code"),
        ("ZNF25", "ZN trades March, June, September, December only"),
        ("SR3F25", "SR3 trades March, June, September, December only"),
        ("ZN", "needs a month code and a year"),
        ("ZNZ2024", "expected ZN<month code><1 or 2 digit year>"),
    ],
)
def test_parse_errors_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(UnknownInstrumentError) as exc:
        parse_future_symbol(text, AS_OF, source="positions.csv", row=7)
    assert needle in str(exc.value)
    assert (exc.value.field, exc.value.source, exc.value.row) == ("instrument", "positions.csv", 7)


def test_expired_contract() -> None:
    with pytest.raises(ExpiredContractError) as exc:
        parse_future_symbol("ZNM24", AS_OF, source="positions.csv", row=3)
    message = str(exc.value)
    assert "ZNM24" in message and "2024-06-18" in message and exc.value.field == "instrument"
    assert parse_future_symbol("ZNM24", date(2024, 6, 18)).symbol == "ZNM24"  # trades that day
    with pytest.raises(ExpiredContractError, match="SR3H24.*2024-06-18"):
        parse_future_symbol("SR3H24", AS_OF)


def test_parsed_contracts_are_kept_per_date() -> None:
    """A symbol parsed once on a date is answered from memory (the same contract), and only on
    that date: the day after its last trading day it is refused although it parsed the day
    before, and each refusal names its own row."""
    live = date(2024, 6, 18)
    first = parse_future_symbol("ZNM24", live)
    assert parse_future_symbol(" znm24 ", live) is first and first == TreasuryFuture("ZN", 2024, 6)
    for row in (3, 4):
        with pytest.raises(ExpiredContractError) as exc:
            parse_future_symbol("ZNM24", date(2024, 6, 19), source="positions.csv", row=row)
        assert exc.value.row == row
    with pytest.raises(UnknownInstrumentError):
        parse_future_symbol("ZNQ24", live)  # not listed: refused again, never kept
    with pytest.raises(UnknownInstrumentError):
        parse_future_symbol("ZNQ24", live)


# --- deliverable baskets ---------------------------------------------------------------------

def _fedinvest(data_dir: Path, kind: str) -> dict[str, date]:
    path = data_dir / "securities" / "fedinvest_prices_2024-06-26.csv"
    return {r["cusip"]: date.fromisoformat(r["maturity_date"]) for r in csv.DictReader(path.open())
            if r["security_type"] == f"MARKET BASED {kind.upper()}"}


@pytest.mark.parametrize(
    ("symbol", "kind", "lowest", "below"),
    [
        # ZN (post-Sept-2023 rule): notes with 6y6m <= remaining < 8y from 2024-09-01.
        ("ZNU24", "note", date(2031, 3, 1), date(2032, 9, 1)),
        # TN: 9y5m .. 10y (only original 10-year notes can have that long left).
        ("TNU24", "note", date(2034, 2, 1), date(2034, 9, 2)),
        # TWE: 19y2m <= remaining < 19y11m.
        ("TWEU24", "bond", date(2043, 11, 1), date(2044, 8, 1)),
        # ZB: 15y <= remaining < 25y; UB: >= 25y.
        ("ZBU24", "bond", date(2039, 9, 1), date(2049, 9, 1)),
        ("UBU24", "bond", date(2049, 9, 1), date(2100, 1, 1)),
    ],
)
def test_basket_is_exactly_the_rule_applied_to_fedinvest(data_dir: Path, master: SecuritiesMaster,
                                                         symbol: str, kind: str, lowest: date,
                                                         below: date) -> None:
    contract = parse_future_symbol(symbol, AS_OF)
    assert isinstance(contract, TreasuryFuture)
    basket = deliverable_basket(contract, master, AS_OF)
    expected = {c for c, mat in _fedinvest(data_dir, kind).items() if lowest <= mat < below}
    assert {d.identifier for d in basket} == expected
    assert len(expected) >= 2


def test_twe_basket_mixes_new_20_year_and_old_30_year_bonds(master: SecuritiesMaster) -> None:
    """CME ("Introducing 20-Year U.S. Treasury Bond futures", 2022): the basket holds three
    recently auctioned 20-year bonds and three aging 30-year bonds."""
    basket = deliverable_basket(TreasuryFuture("TWE", 2024, 9), master, AS_OF)
    terms = sorted(master.records[d.identifier].original_term for d in basket)
    assert terms == ["20-Year"] * 3 + ["30-Year"] * 3


def test_short_baskets_apply_original_term(data_dir: Path, master: SecuritiesMaster) -> None:
    """ZT: original term <= 5y3m, remaining >= 1y9m from 2024-09-01 and <= 2y from 2024-09-30:
    the 7-year notes maturing in the window are excluded."""
    basket = {d.identifier for d in deliverable_basket(TreasuryFuture("ZT", 2024, 9), master, AS_OF)}
    window = {c for c, mat in _fedinvest(data_dir, "note").items() if date(2026, 6, 1) <= mat <= date(2026, 9, 30)}
    long_original = {c for c in window if master.records[c].original_term_months > 63}
    assert long_original and basket == window - long_original
    z3n = deliverable_basket(TreasuryFuture("Z3N", 2024, 9), master, AS_OF)
    assert all(date(2027, 6, 1) <= d.bond.maturity <= date(2027, 9, 30) for d in z3n)
    assert all(master.records[d.identifier].original_term_months <= 84 for d in z3n) and z3n
    zf = deliverable_basket(TreasuryFuture("ZF", 2024, 9), master, AS_OF)
    assert zf and all(d.bond.maturity >= date(2028, 11, 1) for d in zf)
    assert all(master.records[d.identifier].original_term_months <= 63 for d in zf)


def test_basket_as_of_excludes_later_issues(master: SecuritiesMaster) -> None:
    """The 7-year notes issued 2024-07-01 and 2024-07-31 join ZNU24 only once issued."""
    contract = TreasuryFuture("ZN", 2024, 9)
    now = {d.identifier for d in deliverable_basket(contract, master, AS_OF)}
    later = {d.identifier: d.bond.maturity for d in deliverable_basket(contract, master)}
    assert {c: m for c, m in later.items() if c not in now} == {
        "91282CKW0": date(2031, 6, 30), "91282CLD1": date(2031, 7, 31)}


def test_rule_history(master: SecuritiesMaster) -> None:
    """ZN's basket shrank from 10y to 8y with the September 2023 contract; ZB gained its 25y
    cap with March 2011; CME excluded the 5 3/8% Feb-2031 bond from ZBM15..ZBZ15."""
    def years_left(contract: TreasuryFuture) -> float:
        basket = deliverable_basket(contract, master)
        return max((d.bond.maturity - contract.first_delivery_day).days for d in basket) / 365.25
    assert years_left(TreasuryFuture("ZN", 2022, 12)) > 9.5
    assert years_left(TreasuryFuture("ZN", 2023, 9)) < 8.0
    assert years_left(TreasuryFuture("ZB", 2010, 12)) > 29.0
    assert years_left(TreasuryFuture("ZB", 2011, 3)) < 25.0
    for month, excluded in ((3, False), (6, True), (9, True), (12, True)):
        ids = {d.identifier for d in deliverable_basket(TreasuryFuture("ZB", 2015, month), master)}
        assert ("912810FP8" not in ids) == excluded
    assert ("ZB", 2015, 6) in EXCLUDED_ISSUES


# --- fair value --------------------------------------------------------------------------------

def test_zn_fair_value_near_settlement(data_dir: Path, snapshot: MarketSnapshot,
                                       master: SecuritiesMaster) -> None:
    """ZNU24 (front on 2024-06-26) settled 110-02 (Yahoo close = CME settlement, see
    futures/SOURCE.md).  The curve fair value ignores the delivery options and the
    repo/Treasury-curve basis, so it is only a sanity bound (1.5 points)."""
    closes = {r["date"]: float(r["close"]) for r in csv.DictReader((data_dir / "futures" / "ZN.csv").open())}
    assert closes["2024-06-26"] == 110.0625
    details = treasury_future_details(TreasuryFuture("ZN", 2024, 9), snapshot, master)
    assert abs(details["price"] - 110.0625) < 1.5
    # The CTD is a plausible low-duration note: with yields below the 6% notional coupon the
    # shortest, high-coupon notes are cheapest (here the 4 5/8% of 2031-04-30).
    rows = details["deliverables"]
    ctd = next(r for r in rows if r["is_ctd"])
    assert ctd["instrument"] == details["ctd"] == details["ctd_min_forward_ratio"] == "91282CKN0"
    assert ctd["maturity"] <= min(r["maturity"] for r in rows if r["coupon_pct"] < 4.0)
    assert ctd["coupon_pct"] >= 4.0
    assert details["implied_repo_pct"] == max(r["implied_repo_pct"] for r in rows)
    assert details["conversion_factor"] == ctd["conversion_factor"] == 0.9269
    # The CTD's implied repo is the curve's own term rate to 2024-09-30 (SOFR was 5.33%).
    assert 5.0 < details["implied_repo_pct"] < 5.8
    assert ctd["forward_over_cf"] == pytest.approx(details["price"])
    for r in rows:  # the curve prices FedInvest's quotes to within a quarter point
        assert abs(r["spot_clean"] - r["market_clean"]) < 0.25


def test_zn_fair_value_across_years(data_dir: Path, master: SecuritiesMaster) -> None:
    """Mid-quarter dates 2014-2024: the front ZN fair value stays within a point of the close
    (observed within 0.35; 2008-09 crisis dates are worse and left out)."""
    closes = {date.fromisoformat(r["date"]): float(r["close"])
              for r in csv.DictReader((data_dir / "futures" / "ZN.csv").open())}
    worst = 0.0
    for year in range(2014, 2025):
        for month in (2, 5, 8, 11):
            day = date(year, month, 15)
            while day not in closes:
                day += timedelta(days=1)
            snap = load_snapshot(day, data_dir=data_dir)
            contract = TreasuryFuture("ZN", year, month + 1)
            price = treasury_future_prices([contract], snap, snap.curve, master)[0, 0]
            worst = max(worst, abs(price - closes[day]))
    assert worst < 1.0


def test_prices_vectorised_over_curves(snapshot: MarketSnapshot, master: SecuritiesMaster) -> None:
    contracts = [TreasuryFuture(r, 2024, 9) for r in ("ZT", "Z3N", "ZF", "ZN", "TN", "TWE", "ZB", "UB")]
    base = snapshot.curve
    shifts = np.array([-0.005, 0.0, 0.001, 0.01])
    curves = ZeroCurves(base.as_of, base.tenors, base.node_times,
                        base.node_logdf + shifts[:, None] * base.node_times[None, :])
    prices = treasury_future_prices(contracts, snapshot, curves, master)
    assert prices.shape == (8, 4)
    assert np.all(np.diff(prices, axis=1) < 0)  # higher rates, lower futures prices
    one = treasury_future_prices(contracts, snapshot, curves.select([2]), master)
    np.testing.assert_allclose(one[:, 0], prices[:, 2], rtol=0, atol=1e-10)
    for k, contract in enumerate(contracts):
        assert prices[k, 1] == pytest.approx(treasury_future_details(contract, snapshot, master)["price"])
    # Longer contracts move more for the same shift.
    moves = prices[:, 1] - prices[:, 2]
    assert moves[0] < moves[2] < moves[3] < moves[6] < moves[7]


def test_empty_basket_and_expired(snapshot: MarketSnapshot, master: SecuritiesMaster) -> None:
    with pytest.raises(MissingMarketDataError, match="ZNZ30"):
        treasury_future_prices([TreasuryFuture("ZN", 2030, 12)], snapshot, snapshot.curve, master)
    empty = replace(master, records={})
    with pytest.raises(MissingMarketDataError, match="ZNU24: no deliverable notes"):
        treasury_future_details(TreasuryFuture("ZN", 2024, 9), snapshot, empty)
    # After its last trading day a contract can still be priced until its last delivery day.
    assert treasury_future_prices([TreasuryFuture("ZN", 2024, 6)], snapshot, snapshot.curve, master).shape == (1, 1)
    with pytest.raises(ExpiredContractError, match="ZNH24.*2024-03-28"):
        treasury_future_prices([TreasuryFuture("ZN", 2024, 3)], snapshot, snapshot.curve, master)


def test_constructor_validates() -> None:
    with pytest.raises(UnknownInstrumentError, match="unknown Treasury futures root 'ZZ'"):
        TreasuryFuture("ZZ", 2024, 9)
    with pytest.raises(UnknownInstrumentError, match="March, June, September, December"):
        TreasuryFuture("ZN", 2024, 8)
