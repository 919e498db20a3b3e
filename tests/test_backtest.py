"""Backtesting: coverage statistics against published tables, and the daily engine against the
production margin calculation (full revaluation) on sample days of the real history.

References:
* Kupiec (1995) proportion-of-failures test; its 95% non-rejection regions as tabulated in
  Jorion, *Value at Risk* (3rd ed., 2007), Table 6-3: p = 1%: T = 510 -> 1 < N < 11,
  T = 1000 -> 4 < N < 17 (and N < 7 for T = 255); p = 5%: T = 255 -> 6 < N < 21,
  T = 510 -> 16 < N < 36, T = 1000 -> 37 < N < 65.
* Chi-square critical values (any statistics table): 3.841 (1 dof, 95%), 6.635 (1 dof, 99%),
  5.991 (2 dof, 95%).
* Basel Committee (1996), "Supervisory framework for the use of backtesting...", Table 1/2:
  250 observations at 99%: cumulative probabilities 89.22% (4 exceptions), 95.88% (5), 99.97%
  (9), 99.99% (10); green 0-4, yellow 5-9, red 10+.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import binom, chi2
from typer.testing import CliRunner

from xmargin.config import PAR_YIELDS_FILE
from xmargin.margin.calculator import margins_for_positions
from xmargin.margin.context import build_context
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import load_snapshot
from xmargin.pricing.revalue import unit_values
from xmargin.reference.futures import TreasuryFuture
from xmargin.validation import (
    christoffersen_independence,
    coverage_summary,
    kupiec_pof,
    live_contracts,
    nearby_index,
    traffic_light,
    transition_counts,
    window_zones,
    zone_boundaries,
)
from xmargin.validation.backtest import BacktestResult, backtest
from xmargin.workflow import Environment

# ---------------------------------------------------------------- statistics


def test_kupiec_by_hand() -> None:
    """N = 250, x = 10, p = 1%: LR = -2[240 ln 0.99 + 10 ln 0.01] + 2[240 ln 0.96 + 10 ln 0.04]
    = -2(-2.412081 - 46.051702) + 2(-9.797280 - 32.188758) = 96.927566 - 83.972076 = 12.9555,
    beyond the 99% critical value 6.635: rejected.  No exceptions in 250 days:
    LR = -2 x 250 ln 0.99 = 5.0252 > 3.841 (too conservative is rejected too)."""
    t = kupiec_pof(10, 250, 0.01)
    assert t.statistic == pytest.approx(12.9555, abs=1e-3)
    assert t.statistic > 6.635 and t.p_value < 0.01
    assert t.p_value == pytest.approx(float(chi2.sf(12.9555, 1)), rel=1e-3)
    z = kupiec_pof(0, 250, 0.01)
    assert z.statistic == pytest.approx(5.0252, abs=1e-3) and z.p_value < 0.05
    assert kupiec_pof(3, 300, 0.01).statistic == pytest.approx(0.0, abs=1e-12)  # x/N == p exactly


@pytest.mark.parametrize(
    ("p", "n", "lo", "hi"),
    [(0.01, 510, 2, 10), (0.01, 1000, 5, 16), (0.05, 255, 7, 20), (0.05, 510, 17, 35), (0.05, 1000, 38, 64)],
)
def test_kupiec_non_rejection_regions_match_published_table(p: float, n: int, lo: int, hi: int) -> None:
    """Jorion Table 6-3 (from Kupiec 1995): accepted exactly for lo..hi exceptions at 5%."""
    accepted = [x for x in range(0, 3 * hi) if not kupiec_pof(x, n, p).rejects(0.05)]
    assert (accepted[0], accepted[-1]) == (lo, hi)
    assert accepted == list(range(lo, hi + 1))


def test_kupiec_upper_bound_255_days() -> None:
    """Jorion: p = 1%, T = 255: N < 7 (six exceptions accepted, seven rejected)."""
    assert not kupiec_pof(6, 255, 0.01).rejects()
    assert kupiec_pof(7, 255, 0.01).rejects()


def test_basel_traffic_light_table() -> None:
    assert zone_boundaries(250, 0.01) == (5, 10)
    assert [traffic_light(x) for x in (0, 4, 5, 9, 10, 14)] == ["green", "green", "yellow", "yellow", "red", "red"]
    published = {4: 89.22, 5: 95.88, 9: 99.97, 10: 99.99}
    for x, pct in published.items():
        assert round(float(binom.cdf(x, 250, 0.01)) * 100, 2) == pct


def test_christoffersen_by_hand() -> None:
    """Hits 0 0 1 1 0 0 0 1 0 0 0: transitions 00,01,11,10,00,00,01,10,00,00 ->
    n00 = 5, n01 = 2, n10 = 2, n11 = 1; pi01 = 2/7, pi11 = 1/3, pi = 3/10.
    null: 7 ln 0.7 + 3 ln 0.3 = 7(-0.35667494) + 3(-1.20397280) = -6.10864299;
    alt: 5 ln(5/7) + 2 ln(2/7) + 2 ln(2/3) + ln(1/3)
       = 5(-0.33647224) + 2(-1.25276297) + 2(-0.40546511) - 1.09861229 = -6.09742965;
    LR = -2(-6.10864299) + 2(-6.09742965) = 0.0224267: no evidence of clustering."""
    hits = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0]
    assert transition_counts(hits) == (5, 2, 2, 1)
    t = christoffersen_independence(hits)
    assert t.statistic == pytest.approx(0.0224267, abs=1e-6)
    assert t.p_value == pytest.approx(float(chi2.sf(0.0224267, 1)), rel=1e-4)


def test_christoffersen_clustered_vs_spread() -> None:
    """Five exceptions in 250 days: in a row -> independence rejected at 1%; 50 days apart ->
    no two consecutive, LR small."""
    clustered = np.zeros(250, bool)
    clustered[100:105] = True
    spread = np.zeros(250, bool)
    spread[::50] = True
    assert christoffersen_independence(clustered).p_value < 0.01
    assert christoffersen_independence(spread).p_value > 0.5
    assert christoffersen_independence(np.zeros(250, bool)).statistic == 0.0


def test_coverage_summary_and_zones() -> None:
    """600 days: 3 exceptions in the first 250 days, 12 in the next 250 (red), none after."""
    pnl = np.zeros(600)
    margin = np.full(600, 10.0)
    pnl[[10, 100, 200]] = -11.0
    pnl[260:272] = -10.5
    pnl[5] = -10.0  # equal to the margin: not an exception
    s = coverage_summary(margin, pnl, 0.99, 3)
    assert s["exceptions"] == 15 and s["observations"] == 600
    assert s["coverage"] == pytest.approx(1 - 15 / 600)
    zones = s["zones"]
    assert [b["zone"] for b in zones["blocks"]] == ["green", "red"]
    # the trailing window of days 22..271 holds days 100, 200 and 260..271: 14 exceptions
    assert zones["worst_rolling"] == "red" and zones["max_rolling_exceptions"] == 14
    assert s["non_overlapping"]["observations"] == 200
    w = window_zones(np.zeros(100, bool), 0.01)
    assert w["blocks"] == [] and w["worst_rolling"] is None


# ---------------------------------------------------------------- the daily engine


def test_roll_rule_dates() -> None:
    """ZNH19: first delivery day 2019-03-01.  With h = 3 a position rolls once day + 5
    business days reaches it: 2019-02-21 + 5 = 2019-02-28 (keep), 2019-02-22 + 5 = 2019-03-01
    (roll to ZNM19)."""
    assert live_contracts("ZN", date(2019, 2, 21), 3, 1)[0] == TreasuryFuture("ZN", 2019, 3)
    assert live_contracts("ZN", date(2019, 2, 22), 3, 1)[0] == TreasuryFuture("ZN", 2019, 6)
    assert nearby_index(TreasuryFuture("ZN", 2019, 6), date(2019, 1, 2), 3) == 1
    assert nearby_index(TreasuryFuture("ZN", 2019, 3), date(2019, 2, 25), 3) == 0  # already rolled: front


BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS,M1,house,9128285C0,100000000,true
BASIS,M1,house,ZNH19,-869,true
NOTE10,M1,house,9128285M8,100000000,true
"""
START, END = date(2019, 2, 20), date(2019, 3, 4)
CHECK = date(2019, 3, 1)  # first business day of March: the monthly SPAN calibration day


@pytest.fixture(scope="module")
def env(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Environment, Path]:
    path = tmp_path_factory.mktemp("bt") / "book.csv"
    path.write_text(BOOK)
    return Environment.load(START, data_dir=data_dir), path


@pytest.fixture(scope="module")
def runs(env: tuple[Environment, Path]) -> dict[str, BacktestResult]:
    e, path = env
    book = e.read_book(path)
    kw = {"data_dir": e.snapshot.data_dir, "params": e.params, "eligibility": e.eligibility}
    out = {m: backtest(book, START, END, model=m, **kw) for m in ("combined", "ficc", "cme")}
    out["plain"] = backtest(book, CHECK, CHECK, model="combined", refine=None, **kw)
    return out


@pytest.fixture(scope="module")
def production(env: tuple[Environment, Path]):  # type: ignore[no-untyped-def]
    """The production calculation on CHECK: the book as it stands that day (ZN rolled to M19)."""
    e, path = env
    day = Environment.load(CHECK, data_dir=e.snapshot.data_dir)
    text = path.read_text().replace("ZNH19", "ZNM19")
    rolled = path.with_name("rolled.csv")
    rolled.write_text(text)
    book = day.read_book(rolled)
    return book, build_context(day.snapshot, day.master, book.universe, day.params, day.eligibility)


def _column(result: BacktestResult, day: date) -> int:
    return int(np.flatnonzero(result.dates == np.datetime64(day, "D"))[0])


def test_margin_equals_production_full_revaluation(runs, production) -> None:  # type: ignore[no-untyped-def]
    """On CHECK, each model's margin equals ``margins_for_positions`` on the production context
    (every scenario curve bootstrapped exactly, SPAN calibrated that day) to 1e-9."""
    book, ctx = production
    is_cme = ctx.attributes.is_cme
    q = book.positions
    xm = np.array([a.cross_margin for a in book.accounts])
    combined = margins_for_positions(ctx, q, xm).total_after
    ficc = margins_for_positions(ctx, (q @ sp.diags((~is_cme).astype(float))).tocsr(), ~xm).ficc_standalone
    cme = margins_for_positions(ctx, (q @ sp.diags(is_cme.astype(float))).tocsr(), ~xm).cme_standalone
    for model, ref in (("combined", combined), ("ficc", ficc), ("cme", cme)):
        got = runs[model].components["model_margin"][:, _column(runs[model], CHECK)]
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6)
    assert combined[0] < 0.5 * ficc[0]  # the basis trade is cross-margined
    plain = runs["plain"].components["model_margin"][:, 0]  # first-order curves only, no exact tail
    np.testing.assert_allclose(plain, combined, rtol=0.02)


def test_realised_pnl_is_the_revaluation_on_the_later_curve(runs, production, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Realised 3-day P&L on CHECK: the day's book revalued on the par curve published three
    business days later (bootstrapped with CHECK's dates) minus its value on CHECK's curve."""
    book, ctx = production
    snap = ctx.snapshot
    later = load_snapshot(date(2019, 3, 6), data_dir=data_dir)
    assert later.tenors == snap.tenors
    values = unit_values(ctx.universe, snap, snap.curves_from_par(np.vstack([snap.par_yields, later.par_yields])),
                         ctx.master)
    expected = np.asarray(book.positions @ (values[:, 1] - values[:, 0])).ravel()
    k = _column(runs["combined"], CHECK)
    np.testing.assert_allclose(runs["combined"].pnl[:, k], expected, rtol=1e-9)
    is_cme = ctx.attributes.is_cme
    np.testing.assert_allclose(runs["ficc"].pnl[:, k], book.positions @ ((values[:, 1] - values[:, 0]) * ~is_cme),
                               rtol=1e-9)


def test_window_roll_and_horizons(runs) -> None:  # type: ignore[no-untyped-def]
    r = runs["combined"]
    assert r.horizon_days == 3 and runs["cme"].horizon_days == 1 and runs["ficc"].horizon_days == 3
    assert str(r.dates[0]) == "2019-02-20" and str(r.dates[-1]) == "2019-03-04"
    assert any("ZNH19 rolled to ZNM19" in n and n.startswith("2019-02-22") for n in r.notes)
    assert np.all(runs["cme"].margin[1] == 0)  # NOTE10 has no futures
    assert np.all(runs["ficc"].margin > 0)
    s = r.summary(0)
    assert s["account"] == "BASIS" and s["observations"] == len(r.dates)
    assert s["exceptions"] == int(r.exceptions[0].sum())


def test_cli_backtest(env: tuple[Environment, Path], tmp_path: Path) -> None:
    import typer

    from xmargin.cli import validation_cmd

    app = typer.Typer()
    validation_cmd.register(app)
    e, path = env
    chart = tmp_path / "bt.png"
    args = ["backtest", str(path), "--from", "2019-03-01", "--to", "2019-03-04", "--model", "ficc",
            "--data-dir", str(e.snapshot.data_dir), "--format", "json", "--chart", str(chart), "--workers", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{"):])
    assert payload["model"] == "ficc" and len(payload["accounts"]) == 2
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["backtest", str(path), "--from", "2019-03-01", "--to", "2019-03-04", "--model", "x"])
    assert bad.exit_code == 2
    # --daily: one row per account and day with the components; the JSON keeps its fields
    daily = tmp_path / "daily.csv"
    res = CliRunner().invoke(app, [*args[:-2], "--workers", "1", "--daily", str(daily)])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout[res.stdout.index("{"):])
    assert again["accounts"][0]["exceptions"] == payload["accounts"][0]["exceptions"]
    assert {"observations", "exceptions", "kupiec", "zones"} <= set(again["accounts"][0])
    import csv

    rows = list(csv.DictReader(daily.open()))
    assert len(rows) == 2 * payload["accounts"][0]["observations"]
    r0 = rows[0]
    total = float(r0["model_margin"]) + float(r0["portfolio_differential"]) + float(r0["backtesting_charge"])
    assert float(r0["margin"]) == pytest.approx(total)
    assert float(r0["ficc_var"]) > 0 and r0["date"] == "2019-03-01"
    # a range outside the data: an error naming the date, nothing written
    late = tmp_path / "late.csv"
    res = CliRunner().invoke(app, ["backtest", str(path), "--from", "2019-03-01", "--to", "2031-01-02",
                                   "--data-dir", str(e.snapshot.data_dir), "--daily", str(late)])
    assert res.exit_code == 2 and "2031-01-02" in res.output and "--to" in res.output and not late.exists()
    res = CliRunner().invoke(app, ["backtest", str(path), "--from", "1991-03-01", "--to", "1991-03-04",
                                   "--data-dir", str(e.snapshot.data_dir)])
    assert res.exit_code == 2 and "1991-03-01" in res.output and "--from" in res.output


def test_portfolio_differential_by_hand() -> None:
    """VaR 100, 120, 110, 150 with decay 0.5: increases 0, 20, 0, 40;
    PD = 0, 0.5 x 20 = 10, 0.5 x 10 = 5, 0.5 x 5 + 0.5 x 40 = 22.5."""
    from xmargin.margin.ficc_addons import portfolio_differential

    np.testing.assert_allclose(portfolio_differential(np.array([[100.0, 120.0, 110.0, 150.0]]), 0.5)[0],
                               [0.0, 10.0, 5.0, 22.5])


def test_backtesting_charge_by_hand() -> None:
    """Window 10 days, target 90% (k = floor(0.1 x n) + 1), horizon 1.  Deficiencies
    (loss - margin) 0,5,0,0,3,0,0,0,0,0: known on day t are days <= t - 1.  Day 2 knows days 0-1,
    one miss of 2 -> coverage 50% < 90%, k = floor(0.2) + 1 = 1: charge 5.  Day 5 knows 0-4,
    2 misses in 5 -> 60%, k = 1: 5.  Day 10 knows 0-9: 2 misses in 10 -> 80% < 90%,
    k = floor(1) + 1 = 2: the 2nd largest, 3.  Day 1 knows day 0 only (no miss): 0."""
    from xmargin.margin.ficc_addons import backtesting_charge

    margin = np.full((1, 11), 10.0)
    loss = np.array([0.0, 15.0, 0.0, 0.0, 13.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    out = backtesting_charge(margin, -loss[None, :], 1, target=0.9, window=10)[0]
    assert out[1] == 0.0 and out[2] == 5.0 and out[5] == 5.0 and out[10] == 3.0


# ---------------------------------------------------------------- procyclicality


def test_weighted_var_equal_weights_is_the_plain_var() -> None:
    from xmargin.margin.var import historical_var
    from xmargin.validation.procyclicality import weighted_var

    rng = np.random.default_rng(3)
    pnl = rng.normal(size=(3, 1000))
    np.testing.assert_array_equal(weighted_var(pnl, np.full(1000, 1e-3), 0.99), historical_var(pnl, 0.99))
    # 10 scenarios, weights 0.5 on the worst one: at 90% (tail 0.1) the worst alone covers it
    x = np.arange(10.0)[None, :] - 5.0  # -5 .. 4
    w = np.r_[0.5, np.full(9, 0.5 / 9)]
    assert weighted_var(x, w, 0.90)[0] == 5.0
    assert weighted_var(x, np.full(10, 0.1), 0.80)[0] == 4.0  # 2nd worst, as ceil(0.2 x 10) = 2


def test_buffer_band_and_measures_by_hand() -> None:
    """VaR 100, 110, 130, 120, 80 with a 25% buffer: start 125; 110 -> stays 125 (in
    [110, 137.5]); 130 -> 130 (buffer exhausted); 120 -> 130 (in [120, 150]); 80 -> 100 (cap
    1.25 x 80).  Peak/trough of the VaR: 130/80 = 1.625; largest 1-day rise 130/110 - 1."""
    from xmargin.validation.procyclicality import buffered, procyclicality_measures

    var = np.array([[100.0, 110.0, 130.0, 120.0, 80.0]])
    np.testing.assert_allclose(buffered(var, 0.25)[0], [125.0, 125.0, 130.0, 130.0, 100.0])
    m = procyclicality_measures(var[0], np.arange("2020-03-02", "2020-03-07", dtype="datetime64[D]"))
    assert m["peak_to_trough"] == pytest.approx(1.625)
    assert m["max_1d_increase_pct"] == pytest.approx((130 / 110 - 1) * 100)
    assert m["peak_date"] == "2020-03-04" and m["mean"] == pytest.approx(108.0)


def test_procyclicality_model_variant_is_the_ficc_var(data_dir: Path) -> None:
    """The ``model`` series of the constant-maturity 10-year note on 2020-03-16 equals the
    FICC VaR of that note from the production context; the floor is never below the base."""
    from xmargin.margin.calculator import compute_margins
    from xmargin.portfolio.book import build_book
    from xmargin.validation import instrument_on
    from xmargin.validation.procyclicality import par_note_book, procyclicality

    env = Environment.load(date(2020, 3, 16), data_dir=data_dir)
    accounts, legs_for = par_note_book(data_dir)
    res = procyclicality(accounts, legs_for, data_dir=data_dir, params=env.params, eligibility=env.eligibility,
                         periods=["2020-03-13:2020-03-16"])[0]
    assert [str(d) for d in res.dates] == ["2020-03-13", "2020-03-16"]
    note = instrument_on(legs_for(date(2020, 3, 16))[0], 0, env.snapshot, 3)
    book = build_book([accounts[0]], [(0, note, 1e8)])
    ctx = build_context(env.snapshot, env.master, book.universe, env.params, env.eligibility)
    assert res.margins["model"][0, 1] == pytest.approx(compute_margins(ctx, book).ficc_var[0], rel=1e-9)
    for v in ("floor", "stress_weight", "buffer"):
        assert np.all(res.margins[v] >= res.margins["base"] - 1e-6)
    assert np.all(res.margins["model"][1] < 0.5 * res.margins["model"][0])  # the ZN hedge cuts the VaR


def test_one_pass_three_models_equals_separate_runs(runs, env) -> None:  # type: ignore[no-untyped-def]
    """``backtest_models`` (one pass, second-order P&L ranking, exact VaR tail) gives the same
    margin as three single-model backtests (full revaluation on first-order curves, exact tail)
    on every day, and the same realised P&L for the 3-day models; SPAN is per root, so the
    CME margin is unchanged by the 3-day roll rule."""
    from xmargin.validation.multi import backtest_models

    e, path = env
    book = e.read_book(path)
    kw = {"data_dir": e.snapshot.data_dir, "params": e.params, "eligibility": e.eligibility}
    multi = backtest_models(book, START, END, span_curves="exact", **kw)
    fast = backtest_models(book, START, END, models=("cme",), **kw)  # SPAN on first-order curves
    np.testing.assert_allclose(fast["cme"].margin, runs["cme"].margin, rtol=5e-3)
    for m in ("ficc", "cme", "combined"):
        np.testing.assert_allclose(multi[m].components["model_margin"], runs[m].components["model_margin"],
                                   rtol=1e-9, atol=1e-6)
        assert multi[m].horizon_days == runs[m].horizon_days
    for m in ("ficc", "combined"):
        np.testing.assert_allclose(multi[m].pnl, runs[m].pnl, rtol=1e-9, atol=1e-6)


def test_span_recalibration_trigger(data_dir: Path) -> None:
    """Monthly: the first business day of the month; with a trigger, the last day the 10-year
    yield's EWMA volatility (decay 0.94) moved more than the trigger from the calibration in
    force (March 2020: volatility more than doubled within days)."""
    from xmargin.scenarios.historical import factor_volatility
    from xmargin.validation.backtest import recalibration_day

    history = load_par_yields(data_dir / PAR_YIELDS_FILE)
    assert recalibration_day(history, date(2020, 3, 31), 0.0) == date(2020, 3, 2)
    assert recalibration_day(history, date(2020, 3, 31), 100.0) == date(2020, 3, 2)
    day = recalibration_day(history, date(2020, 3, 31), 0.25)
    assert date(2020, 3, 2) < day <= date(2020, 3, 31)
    vol = factor_volatility(history, 0.94, False, 1.0)[:, 10]
    dates = [d.astype(date) for d in history.dates]
    calib = dates.index(date(2020, 3, 2))
    for t in range(calib + 1, dates.index(date(2020, 3, 31)) + 1):  # the chain, written out
        if abs(vol[t] / vol[calib] - 1.0) > 0.25:
            calib = t
    assert day == dates[calib]


def test_validation_report_on_a_few_days(data_dir: Path, tmp_path: Path) -> None:
    """The report's per-year row of each book equals the statistics recomputed from the
    backtest result (exceptions, zone by the Basel rule, mean margin); the file and chart
    are written."""
    from xmargin.validation import traffic_light
    from xmargin.validation.report import BOOKS, run_years, write_report

    env = Environment.load(date(2022, 1, 3), data_dir=data_dir)
    runs = run_years([2022], data_dir=data_dir, params=env.params, eligibility=env.eligibility,
                     until=date(2022, 1, 7), cache=tmp_path / "cache")
    res = runs[0].results["combined"]
    assert len(res.dates) == 5 and res.accounts == BOOKS
    out = write_report(runs, env.params, tmp_path / "validation.md", "xmargin validation-report")
    text = out.read_text()
    assert (tmp_path / "validation.png").read_bytes()[:4] == b"\x89PNG"
    i = BOOKS.index("BASIS")
    m, x = res.margin[i], res.pnl[i]
    k = int((-x > m).sum())
    row = f"| BASIS | 2022 | 5 | {k} |"
    assert row in text and f"| {traffic_light(k, 5, 0.01)} | {m.mean():,.0f} |" in text
    assert np.all(res.margin[BOOKS.index("OUT10Y")] > 0)
    # the repo-financed long (tests/test_repo_book.py): the note's margin to within the cash leg's rate risk
    np.testing.assert_allclose(res.margin[BOOKS.index("REPO10Y")], res.margin[BOOKS.index("OUT10Y")], rtol=5e-3)
    assert "| combined | REPO10Y |" in text
    assert "| combined | BASIS |" in text and "| ficc | ZN |" not in text  # no FICC position in the ZN book
    again = run_years([2022], data_dir=data_dir, params=env.params, eligibility=env.eligibility,
                      until=date(2022, 1, 7), cache=tmp_path / "cache")  # from the cache
    assert again[0].results["combined"].method == "cached"
    np.testing.assert_array_equal(again[0].results["combined"].margin, res.margin)
    (tmp_path / "b").mkdir()
    assert write_report(again, env.params, tmp_path / "b" / "validation.md",
                        "xmargin validation-report").read_text() == text
