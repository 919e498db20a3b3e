"""Residual risk factors: futures basis, SOFR-EFFR and SOFR-Treasury, on the curve windows.

References: the engine's full CTD pricer (bootstrapped curve, :func:`treasury_future_prices`)
bounds the basis module's history fair value; SOURCE.md spot fixings (SOFR 5.25 and EFFR 2.30
on 2019-09-17) check the spread levels by hand; turning every factor off must give back the
curve-only P&L exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.config import PAR_YIELDS_FILE
from xmargin.errors import InputError
from xmargin.margin.calibration import calibrate_span
from xmargin.margin.context import build_context
from xmargin.margin.params import CmeParams, MarginParams, load_params
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.pricing.futures import treasury_future_prices
from xmargin.pricing.residual_pnl import factor_split
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.residual import (
    SOFR_EFFR,
    ResidualParams,
    fair_value_on,
    residual_risk,
    spread_levels,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def market(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_par_yields(data_dir / PAR_YIELDS_FILE), load_master(data_dir)


@pytest.mark.parametrize(("day", "nxt", "key"), [("2020-02-03", "2020-02-04", 202003), ("2023-05-01", "2023-05-02", 202306),
                                                 ("2019-07-10", "2019-07-11", 201909)])
def test_history_fair_value_tracks_the_full_pricer(data_dir: Path, market, day: str, nxt: str, key: int) -> None:  # type: ignore[no-untyped-def]
    """Level within 0.03 point and one-day change within 0.015 point (about 1% of a
    1.25-point day, 2023-05-02) of the engine's bootstrapped CTD price of the same contract."""
    history, master = market
    contract = TreasuryFuture("ZN", key // 100, key % 100)
    days = [date.fromisoformat(day), date.fromisoformat(nxt)]
    engine = np.array([treasury_future_prices([contract], s := load_snapshot(d, data_dir=data_dir), s.curve, master)[0, 0]
                       for d in days])
    mine = fair_value_on("ZN", np.array([key, key]), np.array(days, dtype="datetime64[D]"), history, master)
    assert np.abs(mine - engine).max() < 0.03
    assert abs(np.diff(mine)[0] - np.diff(engine)[0]) < 0.015


def test_spread_levels_by_hand(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    history, _ = market
    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    levels = spread_levels(history, snap.sofr, snap.fedfunds, 1)
    row = int(np.searchsorted(history.dates, np.datetime64("2019-09-17")))
    assert levels[SOFR_EFFR][row] == pytest.approx(5.25 - 2.30)  # SOURCE.md spot values
    assert np.isnan(levels[SOFR_EFFR][int(np.searchsorted(history.dates, np.datetime64("2017-06-01")))])
    smooth = spread_levels(history, snap.sofr, snap.fedfunds, 5)[SOFR_EFFR]
    assert smooth[row] == pytest.approx(np.mean(levels[SOFR_EFFR][row - 4 : row + 1]))


def test_exposures_and_missing_history(data_dir: Path, market, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    history, master = market
    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    insts = [TreasuryFuture("ZN", 2024, 9), TreasuryFuture("UB", 2024, 9), RateFuture("SR1", 2024, 12),
             RateFuture("ZQ", 2024, 12)]
    w = (np.array(["2024-06-03"], dtype="datetime64[D]"), np.array(["2024-06-06"], dtype="datetime64[D]"))
    risk = residual_risk(insts, snap, master, history, ResidualParams(), [w, w])
    f = {name: k for k, name in enumerate(risk.factors)}
    assert risk.loadings[0, f["basis:ZN"]] == 1000.0
    assert risk.loadings[1, f["basis:ZB"]] == pytest.approx(1000.0 * 19.0 / 14.5)  # proxy, scaled
    assert any("UB has no price history" in n for n in risk.notes)
    # SR1 and ZQ December 2024: whole period still projected: -$4,167 a point of spread
    assert risk.loadings[2, f["sofr_treasury"]] == -4167.0 and risk.loadings[2, f[SOFR_EFFR]] == 0.0
    assert risk.loadings[3, f[SOFR_EFFR]] == 4167.0
    bare = residual_risk(insts, replace(snap, data_dir=tmp_path), master, history, ResidualParams(), [w, w])
    assert not any(name.startswith("basis:") for name in bare.factors)
    assert any("no futures price history" in n for n in bare.notes)
    off = residual_risk(insts, snap, master, history, ResidualParams(False, False, False), [w, w])
    assert off.factors == () and any("switched off" in n for n in off.notes)


def test_switching_off_gives_the_curve_only_pnl_and_on_adds_basis(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    history, master = market
    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    universe = InstrumentUniverse.of([TreasuryFuture("ZN", 2024, 9), RateFuture("SR1", 2024, 12), RateFuture("ZQ", 2024, 12)])
    on = build_context(snap, master, universe, MarginParams())
    off = build_context(snap, master, universe, replace(MarginParams(), residual=ResidualParams(False, False, False)))
    assert off.residual is None
    assert on.residual is not None
    diff = on.cme_pnl.pnl - off.cme_pnl.pnl
    np.testing.assert_allclose(diff, on.residual.pnl(on.residual.cme_changes), atol=1e-9)
    # SR1 against ZQ was a zero-risk pair on the one curve; now the SOFR-EFFR basis moves it
    q = np.array([0.0, 100.0, -100.0])
    assert np.abs(q @ off.cme_pnl.pnl).max() < 1e-6
    spread = q @ on.cme_pnl.pnl
    assert np.abs(spread).max() > 1000.0
    worst = int(np.argmin(spread))
    split = factor_split(on.residual, q, on.residual.cme_changes, spread, worst)
    assert sum(float(s["loss"]) for s in split) == pytest.approx(-spread[worst])
    # the pair has no net SOFR-Treasury exposure (SR1 and ZQ cancel): only the curve and SOFR-EFFR
    assert {s["factor"] for s in split} == {"treasury_curve", "sofr_effr"}


def test_sr1_zq_credit_comes_from_the_data(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    history, master = market
    snap = load_snapshot(date(2021, 6, 28), data_dir=data_dir)
    cme = CmeParams()
    with_res = calibrate_span(snap, master, history, cme, ResidualParams(futures_basis=False))
    without = calibrate_span(snap, master, history, cme)
    rate = {(with_res.roots[p], with_res.roots[q]): r for p, q, r in with_res.inter_pairs}
    rate0 = {(without.roots[p], without.roots[q]): r for p, q, r in without.inter_pairs}
    assert rate0[("SR1", "ZQ")] == cme.max_inter_credit  # one curve: the cap
    assert 0.5 < rate[("SR1", "ZQ")] < cme.max_inter_credit


def test_residual_toml(tmp_path: Path) -> None:
    good = tmp_path / "ok.toml"
    good.write_text("[residual]\nfutures_basis = false\nspread_smoothing_days = 20\n")
    p = load_params(good)
    assert p.residual == ResidualParams(futures_basis=False, spread_smoothing_days=20)
    bad = tmp_path / "bad.toml"
    bad.write_text('[residual]\nsofr_effr = "yes"\n')
    with pytest.raises(InputError) as err:
        load_params(bad)
    assert err.value.field == "residual.sofr_effr"
    bad.write_text("[residual]\nspread_smoothing_days = 0\n")
    with pytest.raises(InputError, match="outside"):
        load_params(bad)


def test_warnings_are_quiet_outside_tests() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ResidualParams().any


def test_extended_context_equals_a_full_build(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    """Adding instruments to a context (the live engine's path) stacks the residual exposures
    on the union of factors and gives the same P&L as building the bigger universe at once."""
    _, master = market
    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    first = [TreasuryFuture("ZN", 2024, 9)]
    more = [RateFuture("ZQ", 2024, 12), TreasuryFuture("ZB", 2024, 9)]
    ctx = build_context(snap, master, InstrumentUniverse.of(first), MarginParams())
    ext = ctx.extended(more)
    full = build_context(snap, master, InstrumentUniverse.of([*first, *more]), MarginParams())
    assert ext.residual is not None and full.residual is not None
    assert ext.residual.factors == full.residual.factors
    np.testing.assert_allclose(ext.cme_pnl.pnl, full.cme_pnl.pnl, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ext.residual.loadings, full.residual.loadings)


def _finite_on_most_days(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).mean() > 0.5)  # the history has the contracts on most days


def _finite_in_delivery_months(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).sum() > 20)  # ZN's delivery months are in these years


@pytest.mark.parametrize(("lookup", "direct", "series", "enough"), [
    ("basis_changes", "window_basis_changes", "basis_change_series", _finite_on_most_days),
    ("delivery_month_changes", "window_delivery_month_changes", "delivery_month_change_series",
     _finite_in_delivery_months),
])
def test_basis_series_lookups_equal_window_by_window(data_dir: Path, market, lookup, direct, series,  # type: ignore[no-untyped-def]
                                                     enough) -> None:
    """The sliding-window lookups (one series per horizon for the whole history: the futures
    basis changes and the delivery-month proxy) give exactly the window-by-window figures: 1- and
    3-day windows over 2008 and 2020 (ZN's delivery months included), and a window set with an
    end off the history rows (a Saturday: the direct path)."""
    from xmargin.scenarios import futures_basis
    from xmargin.scenarios.residual import futures_history_for

    fast_of, slow_of, series_of = (getattr(futures_basis, n) for n in (lookup, direct, series))
    history, master = market[0], market[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prices = futures_history_for(data_dir, ResidualParams()).roots["ZN"]
    d = history.dates
    rows = np.r_[np.flatnonzero((d >= np.datetime64("2020-01-02")) & (d <= np.datetime64("2020-12-31"))),
                 np.flatnonzero((d >= np.datetime64("2008-06-02")) & (d <= np.datetime64("2008-12-31")))]
    for h in (1, 3):
        fast = fast_of(prices, history, master, d[rows], d[rows + h])
        slow = slow_of(prices, history, master, d[rows], d[rows + h])
        np.testing.assert_array_equal(fast, slow)
        assert enough(fast)
        assert not series_of(prices, history, master, h).flags.writeable
    mixed_end = d[rows + 3].copy()
    mixed_end[0] = np.datetime64("2020-01-04")  # a Saturday: not a history row
    np.testing.assert_array_equal(fast_of(prices, history, master, d[rows], mixed_end),
                                  slow_of(prices, history, master, d[rows], mixed_end))
