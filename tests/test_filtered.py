"""Filtered historical simulation and the anti-procyclicality VaR tools.

Expected values are computed here by hand or by plain-Python loops over the par yield CSV
(read with ``test_scenarios.Csv``, independently of :mod:`xmargin.market.history`):
the EWMA recursion is RiskMetrics' (Technical Document, 4th ed., 1996, eq. 5.3 form
``s2[t] = l s2[t-1] + (1 - l) r[t]^2``), the rescaling Barone-Adesi et al. (1999).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from test_scenarios import Csv

from xmargin.config import PAR_YIELDS_FILE
from xmargin.errors import InputError
from xmargin.margin.params import load_params
from xmargin.margin.var import historical_var, model_var, var_with_stress, weighted_var
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import load_snapshot
from xmargin.scenarios.filtered import (
    CORRELATION_FLOOR,
    SEED_DAYS,
    correlation_filtered,
    correlation_roots,
    ewma_correlation,
    ewma_variance,
    filter_scales,
)
from xmargin.scenarios.historical import ScenarioSpec, build_scenarios

AS_OF = date(2022, 10, 21)


def test_ewma_variance_by_hand() -> None:
    # seed = mean(1, 4, 0) = 5/3; 0.9 * 5/3 + 0.1 * 1 = 1.6; 0.9 * 1.6 + 0.1 * 4 = 1.84; 0.9 * 1.84 = 1.656
    out = ewma_variance(np.array([[1.0], [2.0], [0.0]]), 0.9, seed_days=3)
    np.testing.assert_allclose(out[:, 0], [1.6, 1.84, 1.656], rtol=1e-12)


def test_filter_scales_ratio_and_cap() -> None:
    vol = np.array([[1.0, 2.0], [4.0, 1.0], [2.0, 8.0]])
    s = filter_scales(vol, np.array([0, 1]), 2, max_scale=5.0)
    np.testing.assert_allclose(s, [[2.0, 4.0], [0.5, 5.0]])  # 8 / 1 = 8 capped at 5


def test_ewma_correlation_by_hand() -> None:
    # changes (1, 1), (1, -1), (2, 0); seed = their mean products over 3 days:
    # s11 = (1 + 1 + 4)/3 = 2, s22 = (1 + 1 + 0)/3 = 2/3, s12 = (1 - 1 + 0)/3 = 0
    # day 1 (decay 0.5): s11 = 0.5*2 + 0.5*1 = 1.5, s22 = 0.5*2/3 + 0.5 = 5/6, s12 = 0.5 -> r = 0.5/sqrt(1.25)
    # day 2: s11 = 1.25, s22 = 11/12, s12 = 0.25 - 0.5 = -0.25 -> r = -0.25/sqrt(1.25*11/12)
    d = np.array([[1.0, 1.0], [1.0, -1.0], [2.0, 0.0]])
    c = ewma_correlation(d, 0.5, seed_days=3)
    assert c[0, 0, 1] == pytest.approx(0.5 / math.sqrt(1.25), rel=1e-12)
    assert c[1, 1, 0] == pytest.approx(-0.25 / math.sqrt(1.25 * 11 / 12), rel=1e-12)
    np.testing.assert_allclose(np.einsum("tii->ti", c), 1.0)


def test_correlation_filter_by_hand() -> None:
    """Two tenors correlated 0.9 on the scenario's row, uncorrelated today.  C^(-1/2) of
    [[1, .9], [.9, 1]] has eigenvalues 1/sqrt(1.9) along (1, 1) and 1/sqrt(0.1) along (1, -1):
    a parallel move shrinks by 1/sqrt(1.9), a spread move grows by sqrt(10) (the spread's
    variance is 2 today against 0.2 then).  Volatility (1, 2) then, (2, 2) today."""
    corr = np.array([[[1.0, 0.9], [0.9, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    roots = correlation_roots(corr)
    vol = np.array([[1.0, 2.0], [2.0, 2.0]])
    change = np.array([[1.0, 2.0], [1.0, -2.0]])  # z = (1, 1) and (1, -1)
    out = correlation_filtered(change, vol, roots, np.array([0, 0]), 1, max_scale=5.0)
    np.testing.assert_allclose(out[0], [2.0 / math.sqrt(1.9)] * 2, rtol=1e-12)
    np.testing.assert_allclose(out[1], [2.0 * math.sqrt(10.0), -2.0 * math.sqrt(10.0)], rtol=1e-12)
    # today's correlation equal to the row's: the per-tenor filter, min(sigma ratio, cap) x change
    same = correlation_roots(np.array([corr[0], corr[0]]))
    np.testing.assert_allclose(correlation_filtered(change, vol, same, np.array([0, 0]), 1, 5.0),
                               change * filter_scales(vol, np.array([0, 0]), 1, 5.0), rtol=1e-12)
    # the cap: sigma today 20 against 1 -> at most 5 x sigma(row) per unit of z
    capped = correlation_filtered(change[:1], np.array([[1.0, 2.0], [20.0, 2.0]]), same, np.array([0]), 1, 5.0)
    assert capped[0, 0] == pytest.approx(5.0)


def test_correlation_filtered_scenarios_match_sqrtm(data_dir: Path) -> None:
    """Correlation-weighted FHS on the real curve (12 tenors as of 2022-10-18, before the 4-month
    bill's first print: no interpolated tenor in the look-back): the EWMA covariance run day by
    day in Python, each correlation matrix's eigenvalues floored at ``CORRELATION_FLOOR``, matrix
    roots by :func:`scipy.linalg.sqrtm` (a Schur method, not the eigen-decomposition)."""
    from scipy.linalg import sqrtm

    as_of = date(2022, 10, 18)
    history, snap, csv_ = load_par_yields(data_dir / PAR_YIELDS_FILE), load_snapshot(as_of, data_dir=data_dir), Csv(
        data_dir / PAR_YIELDS_FILE)
    spec = ScenarioSpec(horizon_days=3, lookback_years=2.0, mode="filtered", stress="none")
    assert spec.vol_date == "start" and spec.correlation  # the defaults
    s = build_scenarios(history, snap, spec)
    names = ("1M", "2M", "3M", "4M", "6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y", "20Y", "30Y")
    cols = [names.index(t) for t in snap.tenors]
    dates = [d for d in csv_.dates if d <= as_of]
    y = np.array([[csv_.filled(d)[c] for c in cols] for d in dates])
    r = y[1:] - y[:-1]
    cov = sum(np.outer(x, x) for x in r[:SEED_DAYS]) / SEED_DAYS
    at = {dates[0]: cov}
    for i, x in enumerate(r, start=1):
        cov = 0.97 * cov + 0.03 * np.outer(x, x)
        at[dates[i]] = cov

    def split(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sd = np.sqrt(np.diag(c))
        w, v = np.linalg.eigh(c / np.outer(sd, sd))
        return sd, (v * np.maximum(w, CORRELATION_FLOOR)) @ v.T

    sd_t, c_t = split(at[as_of])
    root_t = np.real(sqrtm(c_t))
    for j in (0, 211, s.size - 1):
        start, end = s.window_start[j].astype(date), s.window_end[j].astype(date)
        change = np.array(csv_.filled(end))[cols] - np.array(csv_.filled(start))[cols]
        sd_s, c_s = split(at[start])
        z = np.linalg.solve(np.real(sqrtm(c_s)), change / sd_s)
        expected = np.minimum(sd_t, 5.0 * sd_s) * (root_t @ z)
        np.testing.assert_allclose(s.par_yields[j], snap.par_yields + expected / 100.0, rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def market(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_par_yields(data_dir / PAR_YIELDS_FILE), load_snapshot(AS_OF, data_dir=data_dir), Csv(
        data_dir / PAR_YIELDS_FILE)


@pytest.mark.parametrize("vol_date", ["start", "end"])
def test_filtered_scenarios_match_a_plain_python_ewma(market, vol_date: str) -> None:  # type: ignore[no-untyped-def]
    """Per-tenor FHS: each look-back change of the 10-year (and 3-month) par yield times
    ``sigma(as-of) / sigma(window start)`` (Hull and White 1998: the estimate made before the
    window's moves) or, with ``vol_date = "end"``, ``/ sigma(window end)``, the EWMA (decay 0.97)
    run day by day over the CSV."""
    history, snap, csv_ = market
    spec = ScenarioSpec(horizon_days=3, lookback_years=2.0, mode="filtered", decay=0.97, max_scale=5.0, stress="none",
                        vol_date=vol_date, correlation=False)
    s = build_scenarios(history, snap, spec)
    dates = [d for d in csv_.dates if d <= AS_OF]
    for tenor in ("10Y", "3M"):
        k = snap.tenors.index(tenor)
        col = ("1M", "2M", "3M", "4M", "6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y", "20Y", "30Y").index(tenor)
        y = [csv_.filled(d)[col] for d in dates]
        r = [y[i] - y[i - 1] for i in range(1, len(y))]
        var = sum(x * x for x in r[:SEED_DAYS]) / SEED_DAYS
        sigma = {dates[0]: math.sqrt(var)}
        for i, x in enumerate(r, start=1):
            var = 0.97 * var + 0.03 * x * x
            sigma[dates[i]] = math.sqrt(var)
        for j in (0, 137, s.size - 1):
            start, end = s.window_start[j].astype(date), s.window_end[j].astype(date)
            change = csv_.filled(end)[col] - csv_.filled(start)[col]
            scale = min(sigma[AS_OF] / sigma[start if vol_date == "start" else end], 5.0)
            assert s.par_yields[j, k] == pytest.approx(snap.par_yields[k] + scale * change / 100.0, abs=1e-12)
    plain = build_scenarios(history, snap, ScenarioSpec(horizon_days=3, lookback_years=2.0, stress="none"))
    np.testing.assert_array_equal(s.window_start, plain.window_start)
    # October 2022 is volatile: on average the 2-year look-back's changes are scaled up
    assert np.abs(s.par_yields - snap.par_yields).mean() > np.abs(plain.par_yields - snap.par_yields).mean()


def test_floor_scenarios_are_the_unscaled_lookback(market) -> None:  # type: ignore[no-untyped-def]
    history, snap, _ = market
    spec = ScenarioSpec(horizon_days=3, lookback_years=1.0, mode="filtered", floor=True, stress="2020-03")
    s = build_scenarios(history, snap, spec)
    plain = build_scenarios(history, snap, ScenarioSpec(horizon_days=3, lookback_years=1.0, stress="2020-03"))
    n = plain.size
    assert s.size == n + int((~plain.is_stress).sum())
    np.testing.assert_array_equal(s.par_yields[n:], plain.par_yields[~plain.is_stress])
    np.testing.assert_array_equal(s.par_yields[:n][plain.is_stress], plain.par_yields[plain.is_stress])  # stress unscaled
    assert s.is_floor is not None and s.is_floor.sum() == n - plain.is_stress.sum() and not (s.is_floor & s.is_stress).any()
    assert s.label(n).endswith("(unscaled)")


def test_model_var_tools_by_hand() -> None:
    # 100 base scenarios: losses 1..100 (P&L -1..-100); 10 stressed: losses 200..209
    base = -np.arange(1.0, 101.0)
    stress = -np.arange(200.0, 210.0)
    pnl = np.concatenate([base, stress])[None, :]
    is_stress = np.r_[np.zeros(100, bool), np.ones(10, bool)]
    # plain rule: VaR(base) = 100 (k = 1), VaR(all 110) = 2nd worst = 208 -> 208
    v, used = model_var(pnl, is_stress, None, 0.99)
    assert v[0] == 208.0 and used[0]
    np.testing.assert_array_equal(v, var_with_stress(pnl, is_stress, 0.99)[0])
    # stress weight 25%: each stressed scenario weighs 2.5% >= 1%: the worst one, 209
    v, _ = model_var(pnl, is_stress, None, 0.99, stress_weight=0.25)
    assert v[0] == 209.0
    # buffer 25% on top
    v, _ = model_var(pnl, is_stress, None, 0.99, stress_weight=0.25, buffer=0.25)
    assert v[0] == pytest.approx(209.0 * 1.25)
    # floor: 50 unscaled scenarios with losses up to 500 (k = 1 of 50): 500 > 208
    floor_pnl = np.concatenate([pnl[0], -np.linspace(10.0, 500.0, 50)])[None, :]
    is_floor = np.r_[np.zeros(110, bool), np.ones(50, bool)]
    v, _ = model_var(floor_pnl, np.r_[is_stress, np.zeros(50, bool)], is_floor, 0.99)
    assert v[0] == 500.0


def test_weighted_var_partial_sort_equals_full_sort() -> None:
    rng = np.random.default_rng(7)
    pnl = rng.normal(size=(20, 600))
    w = np.r_[np.full(500, 0.75 / 500), np.full(100, 0.25 / 100)]
    w[3] = 0.0
    w[:500] *= 0.75 / w[:500].sum()
    order = np.argsort(pnl, axis=1, kind="stable")
    cum = np.cumsum(w[order], axis=1)
    ref = -pnl[np.arange(20), order[np.arange(20), np.argmax(cum >= 0.01 - 1e-12, axis=1)]]
    np.testing.assert_array_equal(weighted_var(pnl, w, 0.99), np.maximum(ref, 0.0))
    np.testing.assert_array_equal(weighted_var(pnl, np.full(600, 1 / 600), 0.99), historical_var(pnl, 0.99))


@pytest.mark.parametrize(("text", "field", "words"), [
    ("[ficc.scenarios]\ndecay = 1.5\n", "ficc.scenarios.decay", "outside (0.0, 1.0)"),
    ("[ficc.scenarios]\ndecay = 0\n", "ficc.scenarios.decay", "outside"),
    ("[ficc.scenarios]\nmode = 'garch'\n", "ficc.scenarios.mode", "historical"),
    ("[cme.scenarios]\nbuffer = 1.5\n", "cme.var_scenarios.buffer", "outside"),
    ("[ficc.scenarios]\nstress_weight = 1.0\n", "ficc.scenarios.stress_weight", "outside"),
    ("[ficc.scenarios]\nfloor = 1\n", "ficc.scenarios.floor", "true or false"),
    ("[ficc.scenarios]\nlookback_years = 0.005\nhorizon_days = 3\n", "ficc.scenarios.lookback_years", "shorter"),
    ("[ficc.scenarios]\nstress_window_days = 2\n", "ficc.scenarios.stress_window_days", "shorter"),
    ("[ficc]\npd_decay = 1.0\n", "ficc.pd_decay", "outside"),
    ("[ficc.scenarios]\nvol_date = 'today'\n", "ficc.scenarios.vol_date", "start"),
    ("[cme.scenarios]\ncorrelation = 'yes'\n", "cme.var_scenarios.correlation", "true or false"),
    ("[ficc.scenarios]\ncorrelation_floor = 0\n", "ficc.scenarios.correlation_floor", "outside (0.0, 1.0]"),
])
def test_scenario_settings_are_range_checked(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_params(path)
    assert info.value.field == field and words in str(info.value) and str(path) in str(info.value)


def test_scenario_settings_load(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[ficc.scenarios]\nmode = 'filtered'\ndecay = 0.94\nfloor = true\nbuffer = 0.25\n"
                    "stress_weight = 0.25\nvol_date = 'end'\ncorrelation = false\n[cme.scenarios]\nmode = 'filtered'\n"
                    "correlation_floor = 0.001\n")
    p = load_params(path)
    assert p.ficc.scenarios.vol_date == "end" and not p.ficc.scenarios.correlation  # the former per-tenor rule
    assert p.cme.var_scenarios.vol_date == "start" and p.cme.var_scenarios.correlation  # the defaults
    assert p.cme.var_scenarios.correlation_floor == 0.001 and p.ficc.scenarios.correlation_floor == 0.01
    assert p.ficc.scenarios.mode == "filtered" and p.ficc.scenarios.decay == 0.94 and p.ficc.scenarios.floor
    assert p.ficc.scenarios.buffer == 0.25 and p.ficc.scenarios.stress_weight == 0.25
    assert p.cme.var_scenarios.mode == "filtered"


def test_five_day_increase_by_hand() -> None:
    from xmargin.validation.procyclicality import procyclicality_measures

    s = np.array([100.0, 110.0, 130.0, 120.0, 80.0, 90.0, 200.0])
    m = procyclicality_measures(s, np.arange("2020-03-02", "2020-03-09", dtype="datetime64[D]"))
    assert m["max_5d_increase_pct"] == pytest.approx((200 / 110 - 1) * 100)  # day 6 vs day 1; day 5 vs 0 falls


def test_procyclicality_filtered_model_series_is_the_margin_var(data_dir: Path) -> None:
    """With ``[ficc.scenarios] mode = "filtered", floor = true`` the ``model`` series on
    2020-03-16 equals the FICC VaR of the production context built with those parameters;
    the tools never lower the base series, and the floor is the unscaled 10-year VaR."""
    from dataclasses import replace

    from xmargin.margin.calculator import compute_margins
    from xmargin.margin.context import build_context
    from xmargin.portfolio.book import build_book
    from xmargin.validation import instrument_on
    from xmargin.validation.procyclicality import par_note_book, procyclicality
    from xmargin.workflow import Environment

    env = Environment.load(date(2020, 3, 16), data_dir=data_dir)
    spec = replace(env.params.ficc.scenarios, mode="filtered", floor=True)
    params = replace(env.params, ficc=replace(env.params.ficc, scenarios=spec))
    accounts, legs_for = par_note_book(data_dir, hedge_root=None)
    res = procyclicality(accounts, legs_for, data_dir=data_dir, params=params, eligibility=env.eligibility,
                         periods=["2020-03-16:2020-03-16"])[0]
    note = instrument_on(legs_for(date(2020, 3, 16))[0], 0, env.snapshot, 3)
    book = build_book([accounts[0]], [(0, note, 1e8)])
    ctx = build_context(env.snapshot, env.master, book.universe, params, env.eligibility)
    assert res.margins["model"][0, 0] == pytest.approx(compute_margins(ctx, book).ficc_var[0], rel=1e-9)
    plain = build_context(env.snapshot, env.master, book.universe, env.params, env.eligibility)
    unscaled_10y = historical_var(np.asarray(book.positions @ plain.ficc_pnl.filled)[:, ~plain.ficc_scenarios.is_stress], 0.99)
    assert res.margins["floor"][0, 0] == pytest.approx(max(res.margins["base"][0, 0], unscaled_10y[0]), rel=1e-9)
    for v in ("floor", "stress_weight", "buffer", "all"):
        assert np.all(res.margins[v] >= res.margins["base"] - 1e-6)
