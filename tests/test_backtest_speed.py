"""The backtest engine's shortcuts (issue 11, item 5) against the slow path they replace, on real days.

Each shortcut must give the margins of the computation it replaces: to 1e-12 relative here
(the same arithmetic, reordered), so the engine's exactness checks (``tests/test_backtest.py``:
full revaluation of every scenario, the production margin call) keep covering the fast path.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xmargin.pricing.revalue import (
    InstrumentUniverse,
    bumped_par_curves,
    bumped_values,
    sensitivities,
    unit_values,
)
from xmargin.validation import Leg, legs_of, live_contracts
from xmargin.validation import multi as multi_module
from xmargin.validation.multi import backtest_models
from xmargin.workflow import Environment

# the benchmark's ten positions (benchmarks/bench_backtest.py): an elected basis account, an
# elected curve account and a non-elected outright account, cash and futures in each
BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS10,M1,house,UST:6.25:2030-05-15,100000000,true
BASIS10,M1,house,ZNH05,-1500,true
CURVE,M1,house,ZTH05,2000,true
CURVE,M1,house,ZBH05,-400,true
CURVE,M1,house,UST:6.0:2026-02-15,50000000,true
CURVE,M1,house,UST:5.375:2031-02-15,-30000000,true
OUTRIGHT,M2,house,ZFH05,500,false
OUTRIGHT,M2,house,ZBH05,200,false
OUTRIGHT,M2,house,UST:5.375:2031-02-15,40000000,false
OUTRIGHT,M2,house,UST:6.0:2026-02-15,-20000000,false
"""


@pytest.fixture(scope="module")
def book_legs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, tuple[Leg, ...], Environment]:
    env = Environment.load(date(2005, 1, 3), data_dir=data_dir)
    path = tmp_path_factory.mktemp("speed") / "book.csv"
    path.write_text(BOOK)
    book = env.read_book(path)
    return book, legs_of(book), env


@pytest.mark.parametrize("start,end", [(date(2008, 10, 9), date(2008, 10, 10)), (date(2020, 3, 16), date(2020, 3, 16))])
def test_one_margin_call_for_three_models_equals_three_calls(book_legs, monkeypatch, start: date, end: date) -> None:  # type: ignore[no-untyped-def]
    """``multi._reducer`` stacks the three models' positions into one ``margins_for_positions``
    call; on stressed real days (Lehman week, March 2020) every model's margin, realised P&L
    and daily components equal one call per model (``_reducer_per_model``, the previous code)."""
    book, legs, env = book_legs
    pairs: list[tuple[Any, Any]] = []
    fast_reducer = multi_module._reducer

    def both(day, models, horizons, elected):  # type: ignore[no-untyped-def]
        fast = fast_reducer(day, models, horizons, elected)
        pairs.append((fast, multi_module._reducer_per_model(day, models, horizons, elected)))
        return fast

    monkeypatch.setattr(multi_module, "_reducer", both)
    res = backtest_models(None, start, end, accounts=book.accounts, legs=legs, data_dir=env.snapshot.data_dir,
                          params=env.params, eligibility=env.eligibility)
    assert len(pairs) == len(res["combined"].dates) >= 1
    for fast, slow in pairs:
        assert len(fast) == len(slow) == 3
        for (m_f, p_f, c_f), (m_s, p_s, c_s) in zip(fast, slow, strict=True):
            np.testing.assert_allclose(m_f, m_s, rtol=1e-12, atol=1e-6)
            np.testing.assert_allclose(p_f, p_s, rtol=1e-12, atol=1e-6)
            np.testing.assert_allclose(c_f, c_s, rtol=1e-12, atol=1e-6)
    combined = res["combined"].margin
    assert np.all(combined[:2] > 0) and np.all(res["ficc"].margin > 0)  # elected accounts margined
    assert np.all(res["cme"].margin > 0)  # every account holds futures


def test_cached_bump_values_are_the_fresh_revaluation(data_dir: Path) -> None:
    """:func:`bumped_values` (shared by the DV01s and the delta-gamma P&L) is ``unit_values`` on
    the bumped curves, and the DV01 from it is the central difference of a fresh revaluation
    (a hand check: (V(-1bp) - V(+1bp)) / 2 on the day's parallel bumps)."""
    env = Environment.load(date(2020, 3, 16), data_dir=data_dir)
    snap = env.snapshot
    zn = live_contracts("ZN", snap.as_of, 3, 1)[0]
    from xmargin.reference.lookup import parse_instrument

    note = parse_instrument("UST:1.5:2030-02-15", as_of=snap.as_of, master=env.master)
    universe = InstrumentUniverse.of([note, zn])
    fresh = unit_values(universe, snap, bumped_par_curves(snap)[0], env.master)
    cached = bumped_values(InstrumentUniverse.of([note, zn]), snap, env.master)
    np.testing.assert_array_equal(cached, fresh)
    assert not cached.flags.writeable
    from xmargin.pricing.revalue import base_values

    np.testing.assert_array_equal(base_values(universe, snap, env.master), unit_values(universe, snap, snap.curve, env.master))
    dv01, _ = sensitivities(universe, snap, env.master)
    np.testing.assert_allclose(dv01, (fresh[:, 0] - fresh[:, 1]) / 2.0, rtol=1e-15)
    assert dv01[0] > 0 and dv01[1] > 0  # long note, long future: gain when yields fall


def test_span_calibrated_for_the_held_roots_equals_the_full_calibration(data_dir: Path) -> None:
    """A backtest calibrates SPAN only for the roots its book holds; each root's scanning range
    and intra-commodity charge, and the credit of each pair of those roots (in the same
    order), equal the calibration of every root on the same day (2020-03-02, a month start)."""
    from xmargin.margin.calibration import calibrate_span
    from xmargin.validation.backtest import _market, held_roots

    env = Environment.load(date(2020, 3, 2), data_dir=data_dir)
    history, master = _market(data_dir)
    zn, sr3 = live_contracts("ZN", env.snapshot.as_of, 3, 1)[0], live_contracts("SR3", env.snapshot.as_of, 3, 1)[0]
    zb = live_contracts("ZB", env.snapshot.as_of, 3, 1)[0]
    roots = held_roots([Leg(0, 1.0, zn), Leg(0, 2.0, sr3), Leg(1, -1.0, zb), Leg(1, 1e6, par_tenor_months=120)])
    assert roots == ("SR3", "ZB", "ZN")
    kw = {"curves": "linear", "residual": env.params.residual}
    full = calibrate_span(env.snapshot, master, history, env.params.cme, **kw)  # type: ignore[arg-type]
    part = calibrate_span(env.snapshot, master, history, env.params.cme, roots=roots, **kw)  # type: ignore[arg-type]
    assert set(part.roots) == set(roots) and len(full.roots) > len(roots)
    for r in roots:
        i, j = full.roots.index(r), part.roots.index(r)
        assert part.scan_range[j] == full.scan_range[i] > 0
        assert part.intra_charge[j] == full.intra_charge[i]
    named_full = [(full.roots[p], full.roots[q], x) for p, q, x in full.inter_pairs
                  if full.roots[p] in roots and full.roots[q] in roots]
    named_part = [(part.roots[p], part.roots[q], x) for p, q, x in part.inter_pairs]
    assert named_part == named_full and named_full


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("day", [date(2008, 10, 10), date(2020, 3, 16), date(2022, 10, 3)])
def test_bootstrap_near_equals_the_cold_bootstrap(data_dir: Path, day: date, compiled: bool) -> None:
    """The exact VaR tail's curves (:func:`bootstrap_near` from first-order curves, the array
    Newton and the compiled one the backtest engine runs, ``curve_kernel.chord_newton``) equal the
    cold :func:`~xmargin.market.curve.bootstrap` of the same par curves to 1e-12 in ``-ln DF``
    on the 300 widest moves of the day's FICC scenario set (Lehman week, March 2020, October
    2022), and each 10-year par bond reprices to 100 by hand on them (coupons discounted)."""
    from contextlib import nullcontext

    from xmargin.market import curve_kernel
    from xmargin.market.bootstrap_near import bootstrap_near
    from xmargin.market.snapshot import load_snapshot
    from xmargin.pricing.revalue import linear_curves
    from xmargin.reference.cashflows import resolve_one
    from xmargin.scenarios.historical import scenario_par
    from xmargin.validation.backtest import _market

    env = Environment.load(day, data_dir=data_dir)
    history, _ = _market(data_dir)
    snap = load_snapshot(day, data_dir=data_dir)
    built = scenario_par(history, snap, env.params.ficc.scenarios)
    widest = np.argsort(-np.abs(built.par - snap.par_yields).max(axis=1))[:300]
    par = built.par[widest]
    cold = snap.curves_from_par(par)
    start = linear_curves(snap, par).node_logdf
    with curve_kernel.compiled() if compiled else nullcontext():
        near = bootstrap_near(snap.as_of, snap.tenors, snap.tenor_months, par, start)
    assert np.abs(start - cold.node_logdf).max() > 1e-6  # a real correction
    np.testing.assert_allclose(near.node_logdf, cold.node_logdf, rtol=0, atol=1e-12)
    k = snap.tenors.index("10Y")
    from xmargin.market.curve import par_bond

    for s in (0, 150, 299):  # price = sum of flows x DF(pay date), per 100 face, on the solved curve
        flows = resolve_one(par_bond(snap.as_of, snap.tenor_months[k], float(par[s, k])), snap.as_of)
        df = near.select([s]).discount_dates(np.array(flows.pay_dates, dtype="datetime64[D]"))[0]
        assert float(np.dot(flows.amounts, df)) == pytest.approx(100.0, abs=1e-9)


@pytest.mark.parametrize("compiled", [False, True])
def test_bootstrap_near_raises_when_it_cannot_converge(data_dir: Path, compiled: bool) -> None:
    from contextlib import nullcontext

    from xmargin.errors import CalculationError
    from xmargin.market import curve_kernel
    from xmargin.market.bootstrap_near import bootstrap_near
    from xmargin.market.snapshot import load_snapshot

    snap = load_snapshot(date(2020, 3, 16), data_dir=data_dir)
    far = np.zeros_like(snap.curve.node_logdf)  # a flat zero curve: far from 2020's rates
    with curve_kernel.compiled() if compiled else nullcontext(), pytest.raises(CalculationError, match="did not converge"):
        bootstrap_near(snap.as_of, snap.tenors, snap.tenor_months, snap.par_yields + 0.01, far, max_iter=1)
    with curve_kernel.compiled() if compiled else nullcontext(), pytest.raises(CalculationError, match="did not converge"):
        bootstrap_near(snap.as_of, snap.tenors, snap.tenor_months, snap.par_yields, np.full_like(far, np.nan))  # NaN: never settles


def test_days_in_month_is_the_calendar_module() -> None:
    """``days_in_month`` (used by ``add_months`` for every coupon date) against the standard
    library's ``calendar.monthrange`` for every month of 1600-2400 (leap centuries included)."""
    import calendar

    from xmargin.reference.calendar import add_months, days_in_month

    for year in range(1600, 2401):
        for month in range(1, 13):
            assert days_in_month(year, month) == calendar.monthrange(year, month)[1]
    assert days_in_month(2000, 2) == 29 and days_in_month(1900, 2) == 28 and days_in_month(2024, 2) == 29
    assert add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert add_months(date(2024, 2, 29), -6, end_of_month=True) == date(2023, 8, 31)


@pytest.mark.parametrize("day", [date(2020, 3, 16), date(2008, 10, 10)])
def test_fast_path_equals_full_revaluation_on_stress_days(book_legs, day: date) -> None:  # type: ignore[no-untyped-def]
    """The whole fast path (delta-gamma ranking with each futures basket expanded per
    deliverable, the exact tail of the portfolios each scenario set's margins use
    (``tail_portfolios``), its curves from ``bootstrap_near``, one margin call for three models,
    SPAN for the held roots) against ``exact=True`` (every scenario curve bootstrapped cold and
    revalued) on the benchmark's ten positions, March 2020 and Lehman week: every model's margin
    and daily components to 1e-9.  (Before the per-deliverable ranking, a Lehman-week scenario
    whose CTD switches fell beyond the VaR rank + 32 and the basis account's combined margin was
    0.717% off.)"""
    book, legs, env = book_legs
    kw = {"accounts": book.accounts, "legs": legs, "data_dir": env.snapshot.data_dir, "params": env.params,
          "eligibility": env.eligibility}
    fast = backtest_models(None, day, day, **kw)
    full = backtest_models(None, day, day, exact=True, **kw)
    assert full["combined"].method.startswith("one pass, exact")
    for m in ("ficc", "cme", "combined"):
        for name, value in fast[m].components.items():
            np.testing.assert_allclose(value, full[m].components[name], rtol=1e-9, atol=1e-6, err_msg=f"{m} {name}")
        np.testing.assert_allclose(fast[m].pnl, full[m].pnl, rtol=1e-9, atol=1e-6)
    assert np.all(fast["combined"].margin > 0)


def test_tail_portfolios_cover_every_var_the_margin_call_takes() -> None:
    """By hand, one elected account holding an eligible note, an ineligible bill and a future:
    the FICC set's rows are the account, its futures, its cash, E = eligible, E's cash and the
    rest's cash; under SPAN the CME set needs E only."""
    import scipy.sparse as sp

    from xmargin.validation.backtest import tail_portfolios

    q = sp.csr_matrix(np.array([[10.0, 20.0, 30.0]]))  # note (eligible), bill (ineligible), future
    fut, elig = np.array([False, False, True]), np.array([True, False, True])
    ficc = np.asarray(tail_portfolios(q, fut, elig, "ficc"))
    np.testing.assert_array_equal(ficc, [[10, 20, 30], [0, 0, 30], [10, 20, 0], [10, 0, 30], [10, 0, 0], [0, 20, 0]])
    np.testing.assert_array_equal(tail_portfolios(q, fut, elig, "cme-span"), [[10, 0, 30]])
    cme = np.asarray(tail_portfolios(q, fut, elig, "cme"))
    np.testing.assert_array_equal(cme[-2:], [[0, 0, 30], [0, 0, 0]])
    from xmargin.validation import backtest as bt

    big = bt.DENSE_PORTFOLIOS
    try:  # the sparse form for big books: the same rows
        bt.DENSE_PORTFOLIOS = 0
        np.testing.assert_array_equal(tail_portfolios(q, fut, elig, "ficc").toarray(), ficc)
    finally:
        bt.DENSE_PORTFOLIOS = big


def test_compiled_inverse_is_numpys_inverse() -> None:
    """``curve_kernel.inverse`` (the bootstrap Newton's per-curve Jacobian inverses) against
    :func:`numpy.linalg.inv` (LAPACK) on random well-conditioned 7 x 7 matrices and a 2 x 2 by
    hand (inverse of [[2, 1], [4, 3]] is [[1.5, -0.5], [-2, 1]], a pivot swap needed)."""
    from xmargin.market import curve_kernel

    with curve_kernel.compiled():
        a = np.random.default_rng(7).normal(size=(50, 7, 7)) + 4.0 * np.eye(7)
        np.testing.assert_allclose(curve_kernel.inverse(a), np.linalg.inv(a), rtol=1e-12, atol=1e-14)
        got = curve_kernel.inverse(np.array([[[2.0, 1.0], [4.0, 3.0]]]))
        np.testing.assert_allclose(got[0], [[1.5, -0.5], [-2.0, 1.0]], rtol=1e-15)
        assert not np.isfinite(curve_kernel.inverse(np.zeros((1, 2, 2)))).all()  # singular: no silent finite answer


def test_month_blocks_cut_only_at_month_starts() -> None:
    """By hand: 2 days of January, 3 of February, 2 of March, 1 of April in blocks of at least
    3 rows: [Jan + Feb], [Mar + Apr] (a block never splits a month, so a worker calibrates each
    SPAN month once)."""
    from xmargin.validation.backtest import month_blocks

    dates = np.array(["2020-01-30", "2020-01-31", "2020-02-03", "2020-02-04", "2020-02-28", "2020-03-02",
                      "2020-03-31", "2020-04-01"], dtype="datetime64[D]")
    rows = list(range(100, 108))
    assert month_blocks(dates, rows, 3) == [[100, 101, 102, 103, 104], [105, 106, 107]]
    assert month_blocks(dates, rows, 1) == [[100, 101], [102, 103, 104], [105, 106], [107]]
    assert month_blocks(dates[:0], [], 3) == []


@pytest.mark.parametrize("n_curves", [3, 400])
def test_compiled_flow_sums_equal_the_array_products(data_dir: Path, n_curves: int) -> None:
    """``curve_kernel.flow_values`` (``dirty_prices`` in the backtest engine) against the sparse
    product ``dirty_prices`` uses for big sets (flow matrix x DF / DF(settle)), bit for bit on the
    same discount factors: the ZB basket of June 2022 (44 bonds, up to 60 flows), settlement on
    the contract's last delivery day, on 3 and 400 curves; ``dirty_prices`` itself with the
    kernel on and off to rounding (the interpolation's compiled loop differs in the last place);
    one bond's price by hand (sum of flows x DF / DF(settle))."""
    from xmargin.market import curve_kernel
    from xmargin.market.snapshot import load_snapshot
    from xmargin.pricing.bonds import dirty_prices
    from xmargin.pricing.futures import contract_basket
    from xmargin.pricing.revalue import linear_curves
    from xmargin.reference.cashflows import resolve
    from xmargin.reference.futures import TreasuryFuture
    from xmargin.validation.backtest import _market

    snap = load_snapshot(date(2022, 3, 3), data_dir=data_dir)
    _, master = _market(data_dir)
    zb = TreasuryFuture("ZB", 2022, 6)
    bonds = [d.bond for d in contract_basket(zb, master, snap.as_of)]
    cf = resolve(bonds, zb.last_delivery_day)
    moves = np.random.default_rng(3).normal(scale=5e-4, size=(n_curves, len(snap.tenors)))
    plain = dirty_prices(cf, linear_curves(snap, snap.par_yields + moves))
    with curve_kernel.compiled():
        curves = linear_curves(snap, snap.par_yields + moves)
        fast = dirty_prices(cf, curves)
        matrix, dates = cf.matrix_on_dates()
        df = curves.discount_dates(dates)
        settle = curves.discount_dates(np.array([cf.settle], dtype="datetime64[D]"))
    assert len(bonds) > 30 and fast.shape == (len(bonds), n_curves)
    np.testing.assert_array_equal(np.asarray(matrix @ (df / settle).T), fast)
    np.testing.assert_allclose(fast, plain, rtol=1e-14)
    first = cf.flow_owner == 0
    by_hand = np.dot(cf.flow_amount[first], df[0, np.searchsorted(dates, cf.flow_date[first])] / settle[0, 0])
    assert fast[0, 0] == pytest.approx(float(by_hand), rel=1e-14)


def test_per_deliverable_ranking_follows_the_cheapest_to_deliver(data_dir: Path) -> None:
    """Lehman week (2008-10-10), ZNZ08 on the 300 widest 3-day moves of the FICC scenario set:
    the per-deliverable expansion (``deliverable_taylor``: each deliverable's forward / CF to
    second order, then the basket minimum) against full revaluation on cold-bootstrapped curves
    is within 2% of the largest P&L, and at least 3x closer than one expansion of the contract's
    own price (which misses the CTD switching to a shorter note as yields fall)."""
    from xmargin.market.snapshot import load_snapshot
    from xmargin.pricing.revalue import InstrumentUniverse, base_values, bumped_values, unit_values
    from xmargin.reference.futures import TreasuryFuture
    from xmargin.scenarios.historical import scenario_par
    from xmargin.validation.backtest import ONE_BP, _market, deliverable_taylor

    day, zn = date(2008, 10, 10), TreasuryFuture("ZN", 2008, 12)
    env = Environment.load(day, data_dir=data_dir)
    history, master = _market(data_dir)
    snap = load_snapshot(day, data_dir=data_dir)
    built = scenario_par(history, snap, env.params.ficc.scenarios)
    par = built.par[np.argsort(-np.abs(built.par - snap.par_yields).max(axis=1))[:300]]
    u = InstrumentUniverse.of([zn])
    base = float(base_values(u, snap, master)[0, 0])
    exact = unit_values(u, snap, snap.curves_from_par(par), master)[0] - base
    d = par - snap.par_yields
    per = deliverable_taylor(zn, snap, master, d, base)
    v = bumped_values(u, snap, master)[0]
    delta = (v[3::2] - v[2::2]) / (2 * ONE_BP)
    one = d @ delta + 0.5 * (v[0] + v[1] - 2 * base) / ONE_BP**2 * (d @ (delta / delta.sum())) ** 2
    err, err_one = np.abs(per - exact).max(), np.abs(one - exact).max()
    assert err < 0.02 * np.abs(exact).max() and 3 * err < err_one, (err, err_one)


@pytest.mark.parametrize("horizon,window", [(3, 250), (2, 250), (1, 60)])
def test_most_severe_window_from_the_whole_history_equals_the_day_by_day_search(
        data_dir: Path, horizon: int, window: int) -> None:
    """The automatic stress window looked up in one whole-history running maximum
    (``historical._severest_so_far``) equals the previous per-day computation (the rolling sums
    up to the day, their first maximum) on every 7th day of the history, the first days (too
    short a history for a window) included."""
    from xmargin.scenarios.historical import filled_history, most_severe_window
    from xmargin.validation.backtest import _market

    history, _ = _market(data_dir)
    y = filled_history(history)
    for row in range(horizon + 1, len(history.dates), 7):
        day = history.dates[row].astype(date)
        last = row + 1
        score = ((y[horizon:last] - y[: last - horizon]) ** 2).sum(axis=1)
        if len(score) <= window:
            expected = (0, len(score))
        else:
            csum = np.concatenate([[0.0], np.cumsum(score)])
            start = int(np.argmax(csum[window:] - csum[:-window]))
            expected = (start, start + window)
        assert most_severe_window(history, horizon, window, day) == expected
