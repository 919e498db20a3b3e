"""Peer comparison: the same FICC historical VaR computed by the Open Source Risk Engine (ORE).

ORE (https://opensourcerisk.org) is used through its Python bindings, the PyPI package
``open-source-risk-engine`` (module ``ORE``: SWIG over OREAnalytics, OREData, QuantExt and
the QuantLib it bundles).  It is an optional benchmark extra, never a runtime dependency; when
it is not installed this benchmark says so and the suite goes on.

What is compared, on the same book and the same scenario set:

* book: accounts of cash Treasuries (notes, bonds and two bills, real CUSIPs), none
  cross-margined, so xmargin's ``ficc_var`` is the historical VaR of the whole account;
* scenarios: xmargin's FICC scenario set for 2024-06-26 (3-day par-curve changes over ten
  years, plus the stressed year), i.e. the scenario *par curves*, given to both engines;
* xmargin: bootstrap of every scenario curve, full revaluation
  (:func:`xmargin.pricing.scenario_pnl.instrument_pnl`), account P&L, VaR with the stress
  rule (:func:`xmargin.margin.var.var_with_stress`);
* ORE: per scenario, QuantLib's bootstrap of the same instruments (bills as ACT/365F simple
  deposits up to 6M, semiannual par bonds from 1Y) with ``PiecewiseConvexMonotoneForward``,
  ``FixedRateBond`` / ``ZeroCouponBond`` dirty prices for T+1 settlement off a
  ``DiscountingBondEngine``; account P&L in numpy (ORE's Python API has no aggregation of a
  user's P&L vectors); VaR from ORE's ``HistoricalSimulationVarCalculator`` (99%, losses) on
  the base scenarios and on base + stress, the larger, floored at 0 (xmargin's rule).

Reported: time of each pipeline and their ratio; the largest difference in VaR and in the
FICC margin (``max(VaR, floor) + add-on`` with xmargin's floor and add-on on both VaRs); and the
reasons for differences, measured: (1) the first curve segment (as-of date to the first
node): ORE's forward there is flat at the first discrete forward, xmargin's starts from the
Hagan-West boundary value; beyond the first node the curves agree to ~1e-12, and valuing at
the as-of date without the securities that pay inside that segment the VaRs agree to ~1e-9;
(2) the curve parameters (QuantLib's default ``ConvexMonotone`` smooths the forwards; with
``quadraticity=0, monotonicity=1, forcePositive=False`` it is the basic Hagan-West method
xmargin implements, the setting used for the comparison), (3) the quantile: ORE's calculator
takes the ``ceil(N (1 - c))``-th largest loss in floating point, xmargin rounds ``N (1 - c)``
to 9 decimals first, so for ``N (1 - c)`` a whole number (N = 100, 2,500, ...) ORE takes the
next smaller loss (``1 - 0.99 = 0.010000000000000009`` in binary floating point).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date
from typing import Any

import numpy as np
import scipy.sparse as sp

AS_OF = date(2024, 6, 26)
CONFIDENCE = 0.99
PROBE_BUILDS = 300


def ore_module() -> tuple[Any | None, str]:
    """``(ORE module, version)`` or ``(None, why not)``."""
    try:
        import ORE  # type: ignore[import-not-found]
    except ImportError as exc:
        return None, (f"ORE Python bindings not importable ({exc}); install the benchmark extra: "
                      "pip install open-source-risk-engine")
    return ORE, str(getattr(ORE, "__version__", "unknown"))


class OreEngine:
    """QuantLib (as bundled in ORE) pricing driven by scenario par yields.

    Per scenario a fresh bootstrap (the par bonds' coupons are the scenario's par yields, so
    the helpers themselves change), relinked into one ``DiscountingBondEngine`` shared by
    every bond.  ``interpolation``: ``ConvexMonotone(quadraticity, monotonicity, forcePositive)``.
    """

    def __init__(self, o: Any, as_of: date, settle: date, tenor_months: tuple[int, ...], securities: list[Any],
                 interpolation: tuple[float, float, bool]) -> None:
        from xmargin.reference.calendar import add_months
        from xmargin.reference.treasuries import TreasuryBill

        self.o, self.as_of, self.interpolation = o, as_of, interpolation
        self.settle = self._qd(settle)
        self.df_settle = np.empty(0)
        o.Settings.instance().evaluationDate = self._qd(as_of)
        self.tenor_months = tenor_months
        self.schedules = {m: o.Schedule(self._qd(as_of), self._qd(add_months(as_of, m)), o.Period(6, o.Months),
                                        o.NullCalendar(), o.Unadjusted, o.Unadjusted, o.DateGeneration.Backward,
                                        False)
                          for m in tenor_months if m > 6}
        self.handle = o.RelinkableYieldTermStructureHandle()
        engine = o.DiscountingBondEngine(self.handle)
        self.bonds = []
        for sec in securities:
            if isinstance(sec, TreasuryBill):
                bond = o.ZeroCouponBond(1, o.NullCalendar(), 100.0, self._qd(sec.maturity))
            else:
                bond = o.FixedRateBond(1, 100.0, self._schedule(sec, as_of), [sec.coupon],
                                       o.ActualActual(o.ActualActual.ISMA))
            bond.setPricingEngine(engine)
            self.bonds.append(bond)
        self.curve: Any = None

    def _qd(self, d: date) -> Any:
        return self.o.Date(d.day, d.month, d.year)

    def _schedule(self, sec: Any, as_of: date) -> Any:
        """The bond's own coupon dates: regular periods back from maturity, or a first period."""
        o = self.o
        first = sec.first_coupon_date()
        if first is None or as_of >= first:
            k = sec.periods_before(as_of)
            dates = [sec.regular_date(j) for j in range(k, -1, -1)]
            regular = [True] * (len(dates) - 1)
        else:
            fi = sec.periods_before(first)
            dates = [sec.dated_date] + [sec.regular_date(j) for j in range(fi, -1, -1)]
            regular = [sec.regular_date(fi + 1) == sec.dated_date] + [True] * (len(dates) - 2)
        return o.Schedule([self._qd(d) for d in dates], o.NullCalendar(), o.Unadjusted, o.Unadjusted,
                          o.Period(6, o.Months), o.DateGeneration.Backward, sec.end_of_month, regular)

    def build_curve(self, par_row: np.ndarray) -> Any:
        o = self.o
        helpers = []
        for m, y in zip(self.tenor_months, par_row, strict=True):
            quote = o.QuoteHandle(o.SimpleQuote(float(y) if m <= 6 else 100.0))
            if m <= 6:
                helpers.append(o.DepositRateHelper(quote, o.Period(m, o.Months), 0, o.NullCalendar(), o.Unadjusted,
                                                   False, o.Actual365Fixed()))
            else:
                helpers.append(o.FixedRateBondHelper(quote, 0, 100.0, self.schedules[m], [float(y)],
                                                     o.ActualActual(o.ActualActual.ISMA), o.Unadjusted))
        curve = o.PiecewiseConvexMonotoneForward(self._qd(self.as_of), helpers, o.Actual365Fixed(), [], [],
                                                 o.ConvexMonotone(*self.interpolation))
        curve.enableExtrapolation()
        return curve

    def dirty_prices(self, par: np.ndarray) -> np.ndarray:
        """Dirty prices per 100 for T+1 settlement (securities x scenarios); ``df_settle`` keeps
        each curve's discount factor to the settlement date."""
        out = np.empty((len(self.bonds), par.shape[0]))
        self.df_settle = np.empty(par.shape[0])
        self.forward_at_0 = np.empty(par.shape[0])
        for s, row in enumerate(par):
            self.curve = self.build_curve(row)
            self.handle.linkTo(self.curve)
            self.df_settle[s] = self.curve.discount(self.settle)
            self.forward_at_0[s] = self.curve.forwardRate(1e-6, 1e-6, self.o.Continuous, self.o.NoFrequency).rate()
            for i, bond in enumerate(self.bonds):
                out[i, s] = bond.dirtyPrice()
        return out

    def settlement(self) -> date | None:
        if not self.bonds:
            return None
        d = self.bonds[0].settlementDate()
        return date(d.year(), d.month(), d.dayOfMonth())


def ore_var(o: Any, pnl: np.ndarray, is_stress: np.ndarray, confidence: float) -> np.ndarray:
    """VaR per row with ORE's calculator: the larger of base and base + stress, floored at 0."""
    base_cols = ~is_stress
    out = np.zeros(pnl.shape[0])
    for a, row in enumerate(pnl):
        if not np.any(row):
            continue
        base = o.HistoricalSimulationVarCalculator(row[base_cols].tolist()).var(confidence, False)
        full = o.HistoricalSimulationVarCalculator(row.tolist()).var(confidence, False)
        out[a] = max(base, full, 0.0)
    return out


def _book(master: Any, n_accounts: int, n_securities: int, seed: int = 5) -> tuple[Any, list[Any]]:
    from xmargin.portfolio.book import Account, build_book

    notes = [r.definition for r in master.notes_and_bonds(outstanding_on=AS_OF) if r.maturity > date(2024, 7, 31)]
    bills = sorted((r for r in master.records.values() if r.kind == "bill" and r.issue_date <= AS_OF < r.maturity
                    and r.maturity > date(2024, 7, 31)), key=lambda r: r.maturity)
    step = max(1, len(notes) // n_securities)
    secs = [*notes[::step][:n_securities], *(b.definition for b in bills[:2])]
    rng = np.random.default_rng(seed)
    accounts = [Account(f"O{i:05d}", f"M{i % 20:02d}", "house", False) for i in range(n_accounts)]
    holdings = []
    for a in range(n_accounts):
        for j in rng.choice(len(secs), size=int(rng.integers(2, 9)), replace=False):
            holdings.append((a, secs[j], float(rng.integers(-40, 41)) * 250_000.0 or 250_000.0))
    return build_book(accounts, holdings), secs


def run(quick: bool = False) -> list[dict[str, Any]]:
    o, version = ore_module()
    if o is None:
        return [{"benchmark": "ore", "case": "FICC historical VaR vs ORE", "skipped": version}]
    from xmargin.config import PAR_YIELDS_FILE
    from xmargin.margin.calculator import compute_margins
    from xmargin.margin.ficc import ficc_requirement
    from xmargin.margin.var import tail_rank, var_with_stress
    from xmargin.market.history import load_par_yields
    from xmargin.pricing.scenario_pnl import instrument_pnl
    from xmargin.scenarios.historical import build_scenarios
    from xmargin.workflow import Environment

    n_acc, n_sec = (300, 30) if quick else (2000, 120)
    env = Environment.load(AS_OF)
    snap, master = env.snapshot, env.master
    book, _ = _book(master, n_acc, n_sec)
    scen = build_scenarios(load_par_yields(snap.data_dir / PAR_YIELDS_FILE), snap, env.params.ficc.scenarios)
    par, is_stress = scen.par_yields, scen.is_stress

    # --- xmargin: bootstrap, revaluation, account P&L, VaR
    t0 = time.perf_counter()
    curves = snap.curves_from_par(par)
    t_xm_curves = time.perf_counter() - t0
    ipnl = instrument_pnl(book.universe, snap, master, curves)
    acc_pnl = np.asarray(book.positions @ ipnl.pnl)
    var_xm, _ = var_with_stress(acc_pnl, is_stress, CONFIDENCE)
    t_xm = time.perf_counter() - t0

    # --- ORE: the same steps with ORE / QuantLib objects (like-for-like interpolation)
    eng = OreEngine(o, AS_OF, snap.settle, snap.tenor_months, list(book.universe.instruments), (0.0, 1.0, False))
    t0 = time.perf_counter()
    base_o = eng.dirty_prices(snap.par_yields[None, :])
    df0_o = eng.df_settle.copy()
    scen_o = eng.dirty_prices(par)
    t_ore_pricing = time.perf_counter() - t0
    dfs_o = eng.df_settle.copy()
    f0_scen_o = eng.forward_at_0.copy()
    pnl_o = (scen_o - base_o) / 100.0
    acc_o = np.asarray(book.positions @ pnl_o)
    t1 = time.perf_counter()
    var_o = ore_var(o, acc_o, is_stress, CONFIDENCE)
    t_ore_var = time.perf_counter() - t1
    t_ore = time.perf_counter() - t0
    assert eng.settlement() == snap.settle, (eng.settlement(), snap.settle)

    # --- the engine's own margin figures for the same book (context: both scenario sets, SPAN)
    context = env.context(book)
    margins = compute_margins(context, book)
    engine_vs_pipeline = float(np.max(np.abs(margins.ficc_var - var_xm) / np.maximum(var_xm, 1.0)))
    floor, conc = margins.ficc_floor, margins.ficc_concentration
    margin_xm = margins.ficc_standalone
    margin_o = ficc_requirement(var_o, floor, conc)
    d_var = np.abs(var_o - var_xm)
    worst = int(np.argmax(d_var))
    d_margin = np.abs(margin_o - margin_xm)

    # --- why they differ: prices and the curve
    base_xm = ipnl.base_values * 100.0
    price_diff = float(np.max(np.abs(scen_o - (ipnl.pnl * 100.0 + base_xm[:, None]))))
    times = np.linspace(0.05, 29.9, 60)
    df_diff = float(np.max(np.abs(_curve_dfs(eng, snap.par_yields, times) - np.exp(-snap.curve.log_discount(times))[0])))
    # where the curves differ: the instantaneous forward at t = 0 (first segment) of every scenario
    from xmargin.market.curve import _node_forwards

    fd, fnode = _node_forwards(snap.curve.node_times, snap.curve.node_logdf)
    f0_x, fd1 = float(fnode[0, 0]), float(fd[0, 0])
    base_curve = eng.build_curve(snap.par_yields)
    f0_o = float(base_curve.forwardRate(1e-6, 1e-6, o.Continuous, o.NoFrequency).rate())
    probe = []  # determinism: the same base curve, rebuilt between scenario curves
    for k in range(0, 4 * PROBE_BUILDS, 4):
        eng.build_curve(par[k % len(par)]).discount(1.0)
        probe.append(float(eng.build_curve(snap.par_yields).forwardRate(1e-6, 1e-6, o.Continuous,
                                                                          o.NoFrequency).rate()))
    probe_a = np.array(probe)
    fd_s, f_s = _node_forwards(curves.node_times, curves.node_logdf)
    as_hw = np.abs(f0_scen_o - f_s[:, 0]) < 1e-9
    as_flat = np.abs(f0_scen_o - fd_s[:, 0]) < 1e-9
    t_node1 = float(snap.curve.node_times[0])
    inside, outside = np.linspace(1e-3, t_node1, 25), np.linspace(t_node1, 29.9, 200)
    worst_s = int(np.argmax(np.abs(scen_o - (ipnl.pnl * 100.0 + ipnl.base_values[:, None] * 100.0)).max(axis=0)))
    c_w = eng.build_curve(par[worst_s])
    x_w = curves.select(worst_s)
    df_first = float(np.max(np.abs(np.array([c_w.discount(float(t)) for t in inside]) - np.exp(-x_w.log_discount(inside))[0])))
    df_rest = float(np.max(np.abs(np.array([c_w.discount(float(t)) for t in outside]) - np.exp(-x_w.log_discount(outside))[0])))
    # the same P&L valued at the as-of date (PV = dirty x DF(settle)): takes out the one-day
    # forward through the first curve segment, where the two interpolations differ
    settle_d = np.array([snap.settle], dtype="datetime64[D]")
    df0_x = float(snap.curve.discount_dates(settle_d)[0, 0])
    dfs_x = curves.discount_dates(settle_d)[:, 0]
    pv_x = (ipnl.pnl + ipnl.base_values[:, None]) * dfs_x[None, :] - (ipnl.base_values * df0_x)[:, None]
    pv_o = (scen_o * dfs_o[None, :] - (base_o * df0_o[None, :])) / 100.0
    var_pv_x, _ = var_with_stress(np.asarray(book.positions @ pv_x), is_stress, CONFIDENCE)
    var_pv_o = ore_var(o, np.asarray(book.positions @ pv_o), is_stress, CONFIDENCE)
    d_pv = np.abs(var_pv_o - var_pv_x) / np.maximum(var_pv_x, 1.0)
    # ... and without the securities that pay a flow inside the first segment (before the 1M node)
    first_node = eng._qd(AS_OF) + o.Period(snap.tenor_months[0], o.Months)
    early = np.array([any(eng.settle < cf.date() < first_node for cf in bond.cashflows()) for bond in eng.bonds])
    keep = sp.diags((~early).astype(float))
    q_late = (book.positions @ keep).tocsr()
    var_late_x, _ = var_with_stress(np.asarray(q_late @ pv_x), is_stress, CONFIDENCE)
    var_late_o = ore_var(o, np.asarray(q_late @ pv_o), is_stress, CONFIDENCE)
    d_late = np.abs(var_late_o - var_late_x) / np.maximum(var_late_x, 1.0)
    # QuantLib's default ConvexMonotone (quadraticity 0.3, monotonicity 0.7, positive forwards)
    dflt = OreEngine(o, AS_OF, snap.settle, snap.tenor_months, list(book.universe.instruments), (0.3, 0.7, True))
    df_default = float(np.max(np.abs(_curve_dfs(dflt, snap.par_yields, times) - np.exp(-snap.curve.log_discount(times))[0])))
    sub = np.arange(0, par.shape[0], 1 if not quick else 4)
    p_dflt = (dflt.dirty_prices(par[sub]) - dflt.dirty_prices(snap.par_yields[None, :])) / 100.0
    var_dflt = ore_var(o, np.asarray(book.positions @ p_dflt), is_stress[sub], CONFIDENCE)
    var_xm_sub, _ = var_with_stress(acc_pnl[:, sub], is_stress[sub], CONFIDENCE)
    rel_dflt = np.abs(var_dflt - var_xm_sub) / np.maximum(var_xm_sub, 1.0)
    # the quantile conventions on a sample where N (1 - c) is a whole number
    losses = -np.arange(1.0, 101.0)
    k_xm = tail_rank(100, CONFIDENCE)
    ore_100 = o.HistoricalSimulationVarCalculator(losses.tolist()).var(CONFIDENCE, False)
    n_base, n_full = int((~is_stress).sum()), int(len(is_stress))
    return [{
        "benchmark": "ore", "case": f"{n_acc:,} accounts x {len(book.universe)} Treasuries x {len(is_stress):,} scenarios",
        "ore_version": version, "accounts": n_acc, "instruments": len(book.universe), "scenarios": n_full,
        "base_scenarios": n_base, "stress_scenarios": n_full - n_base,
        "xmargin_s": t_xm, "xmargin_bootstrap_s": t_xm_curves,
        "ore_s": t_ore, "ore_pricing_s": t_ore_pricing, "ore_var_s": t_ore_var,
        "ratio": t_ore / t_xm, "baseline": "ORE (QuantLib curve + bond engine, ORE VaR calculator)",
        "engine_ficc_var_vs_pipeline_max_rel": engine_vs_pipeline,
        "max_var_diff_usd": float(d_var.max()), "max_var_diff_rel": float(d_var[worst] / max(var_xm[worst], 1.0)),
        "max_margin_diff_usd": float(d_margin.max()),
        "max_margin_diff_rel": float(np.max(d_margin / np.maximum(margin_xm, 1.0))),
        "largest_var_usd": float(var_xm.max()),
        "accounts_var_equal_to_1e-6_rel": int(np.sum(d_var <= 1e-6 * np.maximum(var_xm, 1.0))),
        "max_price_diff_per_100": price_diff, "max_df_diff_hagan_west": df_diff,
        "first_segment": {
            "forward_at_0_xmargin": f0_x, "forward_at_0_ore": f0_o, "first_discrete_forward": fd1,
            "max_df_diff_first_month": df_first, "max_df_diff_after_first_month": df_rest,
            "max_var_diff_rel_valued_at_as_of": float(d_pv.max()),
            "securities_paying_inside_it": int(early.sum()),
            "ore_scenarios_hagan_west_boundary": int(as_hw.sum()),
            "ore_scenarios_flat_first_segment": int((as_flat & ~as_hw).sum()),
            "ore_scenarios_other": int((~as_flat & ~as_hw).sum()),
            "base_curve_rebuilds": PROBE_BUILDS,
            "rebuilds_flat": int(np.sum(np.abs(probe_a - fd1) < 1e-9)),
            "rebuilds_hagan_west": int(np.sum(np.abs(probe_a - f0_x) < 1e-9)),
            "max_var_diff_rel_as_of_without_them": float(d_late.max()),
        },
        "quantlib_default_convex_monotone": {
            "max_df_diff": df_default, "scenarios_used": int(len(sub)),
            "max_var_diff_rel": float(rel_dflt.max()), "median_var_diff_rel": float(np.median(rel_dflt)),
        },
        "quantile": {"n": 100, "xmargin_rank": k_xm, "xmargin_var": float(-np.sort(losses)[k_xm - 1]),
                     "ore_var": float(ore_100), "n_base_times_1mc": n_base * (1 - CONFIDENCE),
                     "n_full_times_1mc": n_full * (1 - CONFIDENCE)},
        "cpus": os.cpu_count(),
    }]


def _curve_dfs(eng: OreEngine, par_row: np.ndarray, times: np.ndarray) -> np.ndarray:
    curve = eng.build_curve(par_row)
    return np.array([curve.discount(float(t)) for t in times])


def report(rows: list[dict[str, Any]]) -> None:
    r = rows[0]
    if "skipped" in r:
        print(f"ORE comparison skipped: {r['skipped']}")
        return
    print(f"ORE {r['ore_version']}: {r['case']}")
    print(f"  time: xmargin {r['xmargin_s']:.2f} s, ORE {r['ore_s']:.2f} s (pricing {r['ore_pricing_s']:.2f}, "
          f"VaR {r['ore_var_s']:.2f}); ORE / xmargin = {r['ratio']:.0f}x")
    print(f"  VaR: max diff ${r['max_var_diff_usd']:.6f} ({r['max_var_diff_rel']:.1e} rel) on VaRs up to "
          f"${r['largest_var_usd']:,.0f}; FICC margin max diff ${r['max_margin_diff_usd']:.6f}")
    print(f"  prices: max diff {r['max_price_diff_per_100']:.1e} per 100; base curve DFs {r['max_df_diff_hagan_west']:.1e}")
    f = r["first_segment"]
    print(f"  first curve segment (as-of to 1M): forward at t=0 xmargin {f['forward_at_0_xmargin']:.7f} "
          f"(Hagan-West boundary), ORE {f['forward_at_0_ore']:.7f} (= first discrete forward "
          f"{f['first_discrete_forward']:.7f}); worst scenario DFs differ by {f['max_df_diff_first_month']:.1e} "
          f"inside it, {f['max_df_diff_after_first_month']:.1e} beyond")
    print(f"  ORE's first segment over the scenario curves: flat at the first discrete forward in "
          f"{f['ore_scenarios_flat_first_segment']}, Hagan-West boundary (as xmargin) in "
          f"{f['ore_scenarios_hagan_west_boundary']}, other {f['ore_scenarios_other']}; the base curve rebuilt "
          f"{f['base_curve_rebuilds']} times: flat {f['rebuilds_flat']}, Hagan-West {f['rebuilds_hagan_west']}")
    print(f"  valued at the as-of date instead of T+1 (no forward through that segment): max VaR diff "
          f"{f['max_var_diff_rel_valued_at_as_of']:.1e} rel; also without the {f['securities_paying_inside_it']} "
          f"securities paying inside it: {f['max_var_diff_rel_as_of_without_them']:.1e} rel")
    d = r["quantlib_default_convex_monotone"]
    print(f"  with QuantLib's default ConvexMonotone(0.3, 0.7, positive): DFs differ by up to {d['max_df_diff']:.1e}, "
          f"VaR by up to {d['max_var_diff_rel']:.1%} (median {d['median_var_diff_rel']:.2%})")
    q = r["quantile"]
    print(f"  quantile: N=100 losses 1..100 at 99%: xmargin {q['xmargin_var']:.0f}, ORE {q['ore_var']:.0f}; "
          f"here N(1-c) = {q['n_base_times_1mc']:.2f} (base), {q['n_full_times_1mc']:.2f} (full): same rank")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    report(run(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
