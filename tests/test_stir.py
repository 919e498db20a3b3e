"""SOFR and Fed Funds futures: contract terms and prices from real fixings and the curve."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import MissingMarketDataError, UnknownInstrumentError
from xmargin.market.curve import ZeroCurves, projection_curves
from xmargin.market.history import RateHistory
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.pricing.stir import rate_future_prices, rate_future_rates
from xmargin.reference.calendar import is_business_day
from xmargin.reference.stir import RATE_FUTURES, RateFuture, third_wednesday

AS_OF = date(2024, 6, 26)


@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> MarketSnapshot:
    return load_snapshot(AS_OF, data_dir=data_dir)


def _series(data_dir: Path, name: str) -> list[tuple[date, float]]:
    path = data_dir / ("sofr/sofr.csv" if name == "sofr" else "fedfunds/dff.csv")
    with path.open(newline="") as fh:
        return [(date.fromisoformat(r[0]), float(r[1])) for r in list(csv.reader(fh))[1:] if r and r[1]]


def _shifted(curve: ZeroCurves, bps: list[float]) -> ZeroCurves:
    """Parallel shifts of the continuously compounded (ACT/365) zero curve."""
    shift = np.array(bps)[:, None] * 1e-4 * curve.node_times[None, :]
    return ZeroCurves(curve.as_of, curve.tenors, curve.node_times, curve.node_logdf + shift)


# --- contract terms ---------------------------------------------------------------------------

def test_terms() -> None:
    sr3 = RateFuture("SR3", 2024, 3)
    assert sr3.symbol == "SR3H24"
    # CME chapter 460: reference quarter from the IMM Wednesday of March to (excluding) the
    # IMM Wednesday of June; trading ends the business day before.
    assert (sr3.reference_start, sr3.reference_end) == (date(2024, 3, 20), date(2024, 6, 19))
    assert sr3.last_trading_day == date(2024, 6, 18)
    assert sr3.reference_days == 91
    assert RateFuture("SR3", 2025, 12).last_trading_day == date(2026, 3, 17)
    zq = RateFuture("ZQ", 2024, 6)
    assert (zq.reference_start, zq.reference_end, zq.last_trading_day) == (
        date(2024, 6, 1), date(2024, 7, 1), date(2024, 6, 28))
    assert RateFuture("SR1", 2024, 2).reference_days == 29
    assert RateFuture("SR1", 2024, 3).last_trading_day == date(2024, 3, 28)  # Good Friday 29th
    assert third_wednesday(2024, 6) == date(2024, 6, 19) and third_wednesday(2025, 10) == date(2025, 10, 15)
    # $25 per bp on SR3, $41.67 per bp on SR1 and ZQ.
    assert RATE_FUTURES["SR3"].dollars_per_bp == 25.0
    assert RateFuture("SR1", 2024, 7).dollars_per_point == RateFuture("ZQ", 2024, 7).dollars_per_point == 4167.0
    with pytest.raises(UnknownInstrumentError, match="unknown rate futures root"):
        RateFuture("SR2", 2024, 3)


# --- realised periods against hand calculations from the data files ----------------------------

def test_sr3_past_quarter_is_compounded_realised_sofr(data_dir: Path, snapshot: MarketSnapshot) -> None:
    """SR3H24 (2024-03-20 .. 2024-06-19) lies before 2024-06-26: each published SOFR accrues
    from its date to the next publication, compounded over the quarter, ACT/360."""
    start, end = date(2024, 3, 20), date(2024, 6, 19)
    fixings = [(d, r) for d, r in _series(data_dir, "sofr") if start <= d < end]
    assert fixings[0][0] == start
    growth = 1.0
    for (d, r), nxt in zip(fixings, [d for d, _ in fixings[1:]] + [end], strict=True):
        growth *= 1.0 + r / 100.0 * (nxt - d).days / 360.0
    expected = 100.0 - (growth - 1.0) * 360.0 / (end - start).days * 100.0
    price = rate_future_prices([RateFuture("SR3", 2024, 3)], snapshot, _shifted(snapshot.curve, [0.0, 50.0]))
    np.testing.assert_allclose(price, [[expected, expected]], rtol=0, atol=1e-12)  # curve-free
    assert 94.6 < expected < 94.7


def test_zq_past_month_is_average_effr(data_dir: Path) -> None:
    """ZQM24: 100 - mean of the 30 calendar-day EFFR values of June 2024 (dff.csv)."""
    snap = load_snapshot(date(2024, 7, 1), data_dir=data_dir)
    june = [r for d, r in _series(data_dir, "fedfunds") if date(2024, 6, 1) <= d < date(2024, 7, 1)]
    assert len(june) == 30
    price = rate_future_prices([RateFuture("ZQ", 2024, 6)], snap, snap.curve)[0, 0]
    assert price == pytest.approx(100.0 - sum(june) / 30.0, abs=1e-12)


def test_sr1_past_month_carries_rates_over_weekends(data_dir: Path) -> None:
    snap = load_snapshot(date(2024, 7, 1), data_dir=data_dir)
    fixings = dict(_series(data_dir, "sofr"))
    total, last = 0.0, 0.0
    for k in range(30):
        day = date(2024, 6, 1) + timedelta(days=k)
        if day not in fixings:  # weekend or holiday: the previous published rate
            probe = day
            while probe not in fixings:
                probe -= timedelta(days=1)
            last = fixings[probe]
        else:
            last = fixings[day]
        total += last
    price = rate_future_prices([RateFuture("SR1", 2024, 6)], snap, snap.curve)[0, 0]
    assert price == pytest.approx(100.0 - total / 30.0, abs=1e-12)


def test_zq_partly_realised_on_a_flat_curve(data_dir: Path) -> None:
    """ZQN24 on 2024-07-15: July 1-14 from dff.csv, July 15-31 projected.  On a flat curve the
    forward over a business-day segment of n days is (exp((z + spread) n / 365) - 1) 360 / n
    (a flat curve is its own Nelson-Siegel projection; the spread is the latest fixing over
    the projection of the day's real curve)."""
    snap = load_snapshot(date(2024, 7, 15), data_dir=data_dir)
    z = 0.05
    flat = ZeroCurves(snap.as_of, snap.curve.tenors, snap.curve.node_times, z * snap.curve.node_times[None, :])
    spread = snap.overnight_spread("fedfunds", projection_curves(snap.curve))
    assert np.allclose(projection_curves(flat).node_logdf, flat.node_logdf, atol=1e-15)
    realised = [r / 100.0 for d, r in _series(data_dir, "fedfunds") if date(2024, 7, 1) <= d < date(2024, 7, 15)]
    cuts = [d for d in (date(2024, 7, 15) + timedelta(days=k) for k in range(17)) if is_business_day(d)]
    cuts.append(date(2024, 8, 1))
    projected = sum((np.exp((z + spread) * (b - a).days / 365.0) - 1.0) * 360.0
                    for a, b in zip(cuts, cuts[1:], strict=False))
    expected = 100.0 - (sum(realised) + projected) / 31.0 * 100.0
    assert len(realised) == 14
    assert rate_future_prices([RateFuture("ZQ", 2024, 7)], snap, flat)[0, 0] == pytest.approx(expected, abs=1e-10)


def test_sr3_quarter_starting_on_a_holiday(data_dir: Path) -> None:
    """SR3M24 starts on Juneteenth (2024-06-19, no SOFR): its first day takes the 18th's rate."""
    snap = load_snapshot(date(2024, 10, 1), data_dir=data_dir)
    start, end = date(2024, 6, 19), date(2024, 9, 18)
    series = _series(data_dir, "sofr")
    fixings = [(d, r) for d, r in series if start <= d < end]
    lead = [r for d, r in series if d < start][-1]
    growth = 1.0 + lead / 100.0 * (fixings[0][0] - start).days / 360.0
    for (d, r), nxt in zip(fixings, [d for d, _ in fixings[1:]] + [end], strict=True):
        growth *= 1.0 + r / 100.0 * (nxt - d).days / 360.0
    expected = 100.0 - (growth - 1.0) * 360.0 / 91.0 * 100.0
    assert rate_future_prices([RateFuture("SR3", 2024, 6)], snap, snap.curve)[0, 0] == pytest.approx(expected, abs=1e-12)


# --- projection -------------------------------------------------------------------------------

def test_sr3_moves_a_hundredth_per_basis_point(snapshot: MarketSnapshot) -> None:
    """$25 per bp: a 1 bp parallel rise in the projected rates lowers a forward-starting SR3 by
    about 0.01 point, $25 per contract.  The curve's basis point is continuously compounded
    ACT/365, the contract's simple ACT/360, hence the 360/365."""
    contracts = [RateFuture("SR3", 2024, 12), RateFuture("SR3", 2024, 6)]
    prices = rate_future_prices(contracts, snapshot, _shifted(snapshot.curve, [0.0, 1.0]))
    move = prices[:, 1] - prices[:, 0]
    assert move[0] == pytest.approx(-0.01 * 360.0 / 365.0, rel=0.02)
    assert move[0] * contracts[0].dollars_per_point == pytest.approx(-25.0, abs=0.6)
    # SR3M24 has a week of its quarter fixed already: only the projected part moves.
    projected_share = (date(2024, 9, 18) - AS_OF).days / 91.0
    assert move[1] == pytest.approx(-0.01 * 360.0 / 365.0 * projected_share, rel=0.02)


def test_prices_are_plausible_and_vectorised(snapshot: MarketSnapshot) -> None:
    contracts = [RateFuture("SR3", 2024, 9), RateFuture("SR3", 2025, 3), RateFuture("SR1", 2024, 7),
                 RateFuture("ZQ", 2024, 7), RateFuture("ZQ", 2024, 6)]
    curves = _shifted(snapshot.curve, [-25.0, 0.0, 10.0])
    prices = rate_future_prices(contracts, snapshot, curves)
    assert prices.shape == (5, 3)
    for s in range(3):
        np.testing.assert_allclose(prices[:, s], rate_future_prices(contracts, snapshot, curves.select([s]))[:, 0],
                                   rtol=0, atol=1e-12)
    base = prices[:, 1]
    # On 2024-06-26 SOFR and EFFR were 5.33%: near months price about 94.67.
    assert np.all(np.abs(base[2:] - 94.67) < 0.1)
    assert base[0] < base[1]  # the curve priced cuts into 2025
    np.testing.assert_allclose(rate_future_rates(contracts, snapshot, curves), 100.0 - prices)


def test_missing_fixings(snapshot: MarketSnapshot) -> None:
    started = RateFuture("SR3", 2024, 6)  # reference quarter began 2024-06-19
    with pytest.raises(MissingMarketDataError, match="SR3M24.*no sofr fixings"):
        rate_future_prices([started], replace(snapshot, sofr=None), snapshot.curve)
    sofr = snapshot.sofr
    assert sofr is not None
    cut = int(np.searchsorted(sofr.dates, np.datetime64("2024-06-20")))
    short = RateHistory(sofr.source, sofr.name, sofr.dates[:cut], sofr.rates_pct[:cut])
    with pytest.raises(MissingMarketDataError, match="end on 2024-06-18; fixings through 2024-06-25"):
        rate_future_prices([started], replace(snapshot, sofr=short), snapshot.curve)
    # A contract that has not started needs no fixings.
    assert np.isfinite(rate_future_prices([RateFuture("SR3", 2024, 9)], replace(snapshot, sofr=None),
                                          snapshot.curve)).all()
