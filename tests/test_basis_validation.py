"""The basis-book validation (validation/basis.py): quantile convention, books and one real day.

Hand references: the loss quantile from a sorted list; the raw futures P&L of a look-back
window from the shared ZN.csv closes (price change times $1,000 a point); the reduction
factor from its definition ``1 - F_comb / (F_sa + C_sa)`` (docs/methodology.md section 9).
"""

from __future__ import annotations

import csv
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.config import PAR_YIELDS_FILE
from xmargin.margin.params import MarginParams
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
from xmargin.reference.eligibility import load_eligibility
from xmargin.reference.lookup import instrument_id
from xmargin.validation import instrument_on
from xmargin.validation.backtest import EngineSpec, day_context
from xmargin.validation.basis import (
    BasisRun,
    basis_books,
    basis_days,
    comparison_markdown,
    coverage_markdown,
    loss_quantile,
    realised_distribution,
    reduction_markdown,
    replace_section,
    var_check,
    var_check_markdown,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_loss_quantile_by_hand() -> None:
    pnl = np.arange(-250.0, 250.0)  # 500 outcomes: losses 250, 249, ...
    observed = np.ones(500, bool)
    observed[0] = False  # the worst one is not observed: 499 left, k = ceil(4.99) = 5
    got, n = loss_quantile(pnl, observed, 0.99)
    losses = sorted((-x for x, o in zip(pnl, observed, strict=True) if o), reverse=True)
    assert n == 499 and got == losses[math.ceil(0.01 * 499) - 1] == 245.0
    assert math.isnan(loss_quantile(pnl, np.zeros(500, bool), 0.99)[0])


def test_replace_section() -> None:
    text = "a\n<!-- s:begin -->\nold\n<!-- s:end -->\nb\n"
    assert replace_section(text, "s", "new") == "a\n<!-- s:begin -->\nnew\n<!-- s:end -->\nb\n"
    with pytest.raises(ValueError, match="markers"):
        replace_section("a", "s", "x")


def test_var_check_counts_and_worst_day() -> None:
    fields = 12
    values = np.zeros((fields, 1, 3))
    values[2, 0] = [100.0, 100.0, 100.0]  # F_comb
    values[9, 0] = [90.0, 130.0, 100.0]  # q99: fails on day 2 by 30
    values[10, 0] = [50.0, 50.0, 150.0]  # raw: fails on day 3 by 50
    run = BasisRun(("X",), np.array(["2020-01-02", "2020-01-03", "2020-01-06"], dtype="datetime64[D]"), values)
    c = var_check(run, 0)
    assert c["holds"] == pytest.approx(2 / 3) and c["worst_shortfall"] == 30.0 and c["worst_day"] == "2020-01-03"
    assert c["holds_raw"] == pytest.approx(2 / 3) and c["worst_shortfall_raw"] == 50.0


def test_var_check_counts_a_floating_point_tie_as_held() -> None:
    """2019-05-03, 10-year book, EMIR floor on: F_comb and q99 are the same window's P&L summed in
    another order (the saved run's figures); a cent short is still short."""
    values = np.zeros((12, 1, 3))
    values[2, 0] = [504498.5575893603, 504498.55758941337 - 0.01, 100.0]  # F_comb
    values[9, 0] = [504498.55758941337, 504498.55758941337, 100.0 * (1 + 1e-12)]  # q99
    values[10, 0] = values[9, 0]
    run = BasisRun(("X",), np.array(["2019-05-03", "2019-05-06", "2019-05-07"], dtype="datetime64[D]"), values)
    c = var_check(run, 0)
    assert c["holds"] == pytest.approx(2 / 3) and c["worst_day"] == "2019-05-06"
    assert c["worst_shortfall"] == pytest.approx(0.01)


def test_books_are_dv01_neutral(data_dir: Path) -> None:
    accounts, legs = basis_books(data_dir, date(2021, 1, 4))
    snap = load_snapshot(date(2021, 1, 4), data_dir=data_dir)
    insts = [instrument_on(leg, 0, snap, 3) for leg in legs]
    dv01, _ = sensitivities(InstrumentUniverse.of(insts), snap, load_master(data_dir))  # type: ignore[arg-type]
    by_id = dict(zip(InstrumentUniverse.of(insts).ids, dv01, strict=True))
    for a in range(len(accounts)):
        mine = [(leg.quantity, by_id[instrument_id(i)]) for leg, i in zip(legs, insts, strict=True)  # type: ignore[arg-type]
                if leg.account == a]
        net = sum(q * d for q, d in mine)
        futures_dv01 = abs(mine[1][1])
        assert abs(net) <= futures_dv01  # within one contract
    assert [a.account for a in accounts] == ["NOTE10", "CTD"]


def test_one_day_against_hand_figures(data_dir: Path) -> None:
    day = date(2020, 3, 13)
    run = basis_days(data_dir, MarginParams(), load_eligibility(), day, day)
    g = {f: run.get(f)[:, 0] for f in ("ficc_standalone", "cme_standalone", "ficc_combined", "r_ficc", "q99", "windows")}
    np.testing.assert_allclose(g["r_ficc"], 1 - g["ficc_combined"] / (g["ficc_standalone"] + g["cme_standalone"]))
    assert (g["windows"] > 1500).all() and (g["windows"] < 2500).all()  # delivery months and gaps left out
    assert (g["q99"] > 0).all()
    # the raw futures P&L of one look-back window from the CSV closes (ZNM19 held 2019-05-06..09)
    accounts, legs = basis_books(data_dir, day)
    spec = EngineSpec(data_dir, MarginParams(), load_eligibility(), accounts, legs, day, 3, ("ficc", "cme"), "monthly")
    row = int(np.searchsorted(load_par_yields(data_dir / PAR_YIELDS_FILE).dates, np.datetime64(day, "D")))
    ctx = day_context(spec, row, [0, 0, 0, 0])
    adjusted, raw, observed = realised_distribution(ctx)
    zn = next(k for k, i in enumerate(ctx.context.universe.instruments) if getattr(i, "root", "") == "ZN")
    starts = ctx.context.ficc_scenarios.window_start[~ctx.context.ficc_scenarios.is_stress]
    w = int(np.flatnonzero(starts == np.datetime64("2019-05-06"))[0])
    closes = {r["date"]: float(r["close"]) for r in csv.DictReader((data_dir / "futures" / "ZN.csv").open())}
    assert raw[zn, w] == pytest.approx(1000.0 * (closes["2019-05-09"] - closes["2019-05-06"]), abs=1e-6)
    assert observed[zn, w] and np.isfinite(adjusted[zn, w])


def test_reports_from_a_synthetic_run() -> None:
    """Markdown tables of a hand-made run: an exception counted, the ratio 1 - r_F printed."""
    dates = np.array(["2020-03-02", "2020-03-03", "2020-04-01"], dtype="datetime64[D]")
    values = np.zeros((12, 2, 3))
    values[0] = 800.0  # F_sa
    values[1] = 200.0  # C_sa
    values[2] = [[100.0, 150.0, 120.0], [50.0, 50.0, 50.0]]  # F_comb: ratios 0.10, 0.15, 0.12
    values[4] = 1.0 - values[2] / 1000.0
    values[6] = 0.8
    values[7] = 200.0  # requirement after
    values[8] = [[-250.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # one exception for the first account
    values[9] = values[10] = 90.0
    run = BasisRun(("A", "B"), dates, values)
    text = reduction_markdown(run, 2020)
    assert "**A**: 1 exception(s)" in text and "**B**: 0 exception(s)" in text
    assert "| 2020-03 | 0.875 (0.850-0.900) |" in text and "0.125 (0.150)" in text
    assert "| 2020-03-03 | 0.850 | 0.000 | 0.150 |" in text
    assert "| A | 1 / 3 |" in coverage_markdown(run)
    assert "0.125; 0.875" in comparison_markdown([("x", run), ("y", run)], 2020)
    assert "| A | **all** | 3 | 100.0% |" in var_check_markdown(run)


def test_check_quantile_equals_full_revaluation_on_every_window(data_dir: Path) -> None:
    """The check's curve P&L (first-order curves, each account's tail repriced exactly) gives the
    same 99% loss quantile as exact bootstrapped curves on all windows (the pricer itself is
    tied to QuantLib in tests/test_pricing_quantlib.py).  2019-09-19: the second-order expansion
    used before put the CTD book's curve-only quantile at $398k against $302k."""
    from dataclasses import replace as dc_replace

    from xmargin.pricing.scenario_pnl import instrument_pnl
    from xmargin.scenarios.historical import scenario_par
    from xmargin.scenarios.residual import basis_changes, futures_history_for

    day = date(2019, 9, 19)
    accounts, legs = basis_books(data_dir, date(2019, 1, 2))
    base = MarginParams()  # a 2-year look-back keeps the exact reference to ~500 bootstraps
    params = dc_replace(base, ficc=dc_replace(base.ficc, scenarios=dc_replace(base.ficc.scenarios, lookback_years=2.0)))
    spec = EngineSpec(data_dir, params, load_eligibility(), accounts, legs, date(2019, 1, 2), 3, ("ficc",), "none")
    history = load_par_yields(data_dir / PAR_YIELDS_FILE)
    ctx = day_context(spec, int(np.searchsorted(history.dates, np.datetime64(day, "D"))), [0, 0, 0, 0])
    adjusted, _, observed = realised_distribution(ctx)
    c = ctx.context
    plain = scenario_par(history, c.snapshot, dc_replace(c.ficc_scenarios.spec, mode="historical", stress="none",
                                                        floor=False))
    exact = instrument_pnl(c.universe, c.snapshot, c.master, c.snapshot.curves_from_par(plain.par)).pnl
    prices = futures_history_for(data_dir, c.params.residual)
    assert prices is not None
    starts, ends = history.dates[plain.rows], history.dates[plain.rows + 3]
    for i, inst in enumerate(c.universe.instruments):
        if getattr(inst, "root", "") == "ZN":
            exact[i] += 1000.0 * np.nan_to_num(basis_changes(prices.roots["ZN"], history, c.master, starts, ends))
    q = ctx.positions.toarray()
    for a in range(2):
        rows = np.flatnonzero(q[a])
        ok = observed[rows].all(axis=0)
        got, n = loss_quantile(q[a, rows] @ adjusted[rows], ok, 0.99)
        want, _ = loss_quantile(q[a, rows] @ exact[rows], ok, 0.99)
        assert n > 300 and got == pytest.approx(want, abs=1.0)


def test_join_runs_in_date_order() -> None:
    def run(days: list[str], v: float) -> BasisRun:
        return BasisRun(("A",), np.array(days, dtype="datetime64[D]"), np.full((12, 1, len(days)), v), (days[0],))
    joined = BasisRun.join([run(["2021-01-04", "2021-01-05"], 2.0), run(["2020-01-02"], 1.0)])
    assert [str(d) for d in joined.dates] == ["2020-01-02", "2021-01-04", "2021-01-05"]
    assert joined.values[0, 0].tolist() == [1.0, 2.0, 2.0] and joined.books == ("2020-01-02", "2021-01-04")
    with pytest.raises(ValueError, match="overlap"):
        BasisRun.join([run(["2020-01-02"], 1.0), run(["2020-01-02"], 1.0)])
