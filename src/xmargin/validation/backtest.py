"""Backtesting the margin models on the real history: margin each day against realised P&L.

For every business day ``t`` of the window the book is margined exactly as ``xmargin margin
--as-of t`` would margin it (the day's snapshot, scenario sets whose look-back ends on ``t``,
the same :func:`~xmargin.margin.calculator.margins_for_positions`), and compared with the
**realised P&L** over the backtest horizon ``h``: the book revalued on the par curve
published ``h`` business days later minus its value on ``t``'s curve, both with ``t``'s dates
(the Basel "hypothetical" P&L: positions held constant, no carry, coupons or new trades, the
same definition as the model's scenarios, so an exception is a model failure, not a carry
artefact).  An exception is ``-P&L > margin``.  With ``pnl="actual"`` (the default) futures
positions are instead realised from actual futures prices where the price history has the
held contract on both days (:mod:`xmargin.validation.actual_pnl`), so the basis the curve
cannot see is in the realised P&L; each account reports ``pnl_source``.

Models (``model``) and horizons (default; ``horizon_days`` overrides):

* ``ficc``: the FICC requirement (VaR with stress, floor, concentration) of the FICC
  positions alone, against their ``ficc.scenarios.horizon_days`` (3) day P&L;
* ``cme``: the CME stand-alone requirement of the futures alone (SPAN: 1 day, its scanning
  ranges cover one-day moves; the CME VaR option: its ``var_scenarios`` horizon, 2 days);
* ``combined``: the cross-margined total (``total_after``, each account's own election) of
  the whole book, each leg tested at the horizon of the margin that covers it
  (:class:`SideHorizons`, :func:`realised_pnl`):

  - a FICC leg over the FICC horizon (3 days) and a CME leg over the horizon of the CME
    requirement actually charged (SPAN: 1 day; the VaR option: its horizon): each
    clearinghouse liquidates its own positions over its own margin period of risk, so an
    account with futures only is tested at 1 day, as under ``cme``;
  - the eligible legs of a cross-margining account on a day its reduction applies
    (``applied_reduction_factor > 0``) together over the joint horizon, the longer of the FICC
    horizon and the CME VaR horizon (3 days: the joint liquidation period of
    :mod:`xmargin.validation.default`).  The reduced margin is set by the combined-portfolio
    models (FICC's 3-day VaR of the combined portfolio, CME's VaR of it), and the hedge is
    only worth the reduction if it is liquidated whole ("joint liquidation by both
    clearinghouses is the preferred default-management method": CME FAQ, in
    ``../shared/methodology/README.md`` section 2); testing its cash legs at 3 days and its
    futures at 1 day would test an unhedged position no margin was set for.

  The public record gives FICC's 3-day horizon and SPAN's one-day calibration; the margin
  period of risk CME applies to the cross-margined portfolio is **not found**
  (``sources-2026-12.md``), so the joint horizon is a **choice** (docs/methodology.md).
  ``horizon_days`` sets every side.

Positions are held constant, futures roll and matured securities drop out as
:mod:`xmargin.validation` describes (the roll dates are listed in ``notes``).  The P&L of
day ``t`` always uses day ``t``'s contracts.

**Performance** (one full bootstrap of ~2,750 scenario curves costs ~1.4 s, two sets a day
over five years would take an hour).  Scenario par curves are built exactly as
:func:`~xmargin.scenarios.historical.build_scenarios` builds them (a sliding window of the
same par changes, plus the stressed period), and their zero curves are the day's curve
moved by the bootstrap's Jacobian ``d(-ln DF at nodes) / d(par)`` (central +-1 bp bumps,
:func:`~xmargin.pricing.revalue.bumped_par_curves`); instruments are then **fully revalued**
on those curves (convexity and CTD switches kept).  The first-order curve error is up to a few
percent of the P&L in a few scenarios (monotone-convex region switches), about 0.5% of VaR;
so every account figure's VaR scenario and the ``refine`` next worst (per scenario set, with
and without the stressed period) are re-bootstrapped exactly and repriced, which makes the
VaR exact whenever the true tail lies among them (tests compare with full revaluation on sample days).
``exact=True`` bootstraps every curve (slow; for checks).  SPAN parameters are recalibrated on
the first business day of each month (``span="monthly"``; CME reviews its margins
periodically, not daily), or ``"once"`` / ``"daily"``.  Days run in parallel processes with
``workers > 1`` (the first block in the parent, so the forked workers inherit its caches).

Work shared across days (each gives the same numbers as the per-day computation):
curve interpolation runs in the compiled loop of :mod:`xmargin.market.curve_kernel` (the
array code's formulas, to 2e-15); the futures-basis changes of the sliding windows are looked
up in one whole-history series per horizon (:func:`~xmargin.scenarios.residual.basis_changes`);
cash flow sets (:func:`~xmargin.reference.cashflows.resolve`) and deliverable baskets are
memoised; FHS volatilities are one recursive EWMA over the history
(:func:`~xmargin.scenarios.historical.factor_volatility`).  Within a day (each the same
numbers as before, to the bootstrap's tolerance where a solver is involved): the exact tail's
curves are solved from their first-order curves with a Newton step per curve
(:func:`exact_curves`, :mod:`xmargin.market.bootstrap_near`); the par bonds' flows, the as-of
values and the bumped-curve values are computed once per day and shared by the delta-gamma
P&L, the DV01s and the exact revaluation; SPAN is calibrated for the roots the book holds
(:func:`held_roots`); :func:`~xmargin.validation.multi.backtest_models` margins the three
models in one call.  The delta-gamma ranking expands each Treasury future per deliverable and
takes the basket's minimum (:func:`deliverable_taylor`), so a scenario that switches the CTD is
ranked on the new CTD's price (one expansion of the contract's price put a Lehman-week tail
scenario beyond the VaR rank + 32).  Compiled loops (:mod:`xmargin.market.curve_kernel`, the
same sums in the same order) do the bonds' flow sums (reading the curves' discount memo in place,
each basket's dates interpolated in one pass) and the exact tail's whole Newton, curve by curve
(:func:`~xmargin.market.curve_kernel.chord_newton`); the automatic stress window is one
whole-history running maximum; the par
bonds' unique flow times and the delivery-month basis proxy's whole-history series are shared;
each process uses one BLAS thread, and worker blocks are whole months (SPAN once a month).  ``tests/test_backtest_speed.py`` compares each with the path it
replaced.  ``python -m benchmarks.bench_backtest`` times it against main before this work
on the same days.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeGuard, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.config import PAR_YIELDS_FILE
from xmargin.errors import InputError, XMarginError
from xmargin.margin.calculator import _scale_columns, margins_for_positions
from xmargin.margin.calibration import calibrate_span
from xmargin.margin.context import (  # the context's own per-instrument inputs
    MarginContext,
    instrument_attributes,
)
from xmargin.margin.params import CmeParams, MarginParams
from xmargin.margin.span import SpanParameters
from xmargin.margin.var import tail_rank
from xmargin.market import curve_kernel
from xmargin.market.bootstrap_near import bootstrap_near
from xmargin.market.curve import ZeroCurves
from xmargin.market.history import TENORS, ParYieldHistory, load_par_yields
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Account, Book
from xmargin.pricing.futures import contract_basket, forward_clean_prices
from xmargin.pricing.residual_pnl import residual_for_sets, with_residual
from xmargin.pricing.revalue import (
    InstrumentUniverse,
    base_values,
    bumped_par_curves,
    bumped_values,
    linear_curves,
)
from xmargin.pricing.scenario_pnl import InstrumentPnL, _values_or_nan, instrument_pnl
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.historical import (
    ScenarioRows,
    ScenarioSet,
    factor_volatility,
    filled_history,
    scenario_par,
)
from xmargin.scenarios.residual import ResidualParams, futures_history_for
from xmargin.validation import (
    Leg,
    instrument_on,
    legs_of,
    nearby_index,
    roll_notes,
)
from xmargin.validation.actual_pnl import PNL_SOURCES, actual_realised, is_futures
from xmargin.validation.result import DAILY_COMPONENTS, BacktestResult, assemble  # noqa: F401 (re-exported)

FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")
MODELS = ("ficc", "cme", "combined")
ONE_BP = 1e-4


@dataclass(frozen=True)
class EngineSpec:
    """What the daily engine computes (see the module docstring)."""

    data_dir: Path
    params: MarginParams
    eligibility: EligibilityRules
    accounts: tuple[Account, ...]
    legs: tuple[Leg, ...]
    start: date
    horizon_days: int
    sets: tuple[str, ...] = ("ficc", "cme")
    span: str = "monthly"  # "none", "once", "monthly", "daily"
    exact: bool = False
    refine: int | None = 16  # None: no exact tail
    #: ``"curves"``: full revaluation on first-order scenario curves; ``"taylor"``: key-rate
    #: delta and diagonal gamma from the day's +-1 bp par bumps (no scenario curve at all).
    #: Either way the VaR tail is then revalued exactly (``refine``).
    approx: str = "curves"
    other_horizons: tuple[int, ...] = ()  # realised P&L also over these (shorter) horizons
    span_curves: str = "exact"  # SPAN calibration curves: "exact" or "linear" (calibrate_span)
    pnl: str = "actual"  # realised futures P&L: "actual" prices where the history has them, or "model"


@dataclass(frozen=True, eq=False)
class DayContext:
    """One day of the engine: the day's margin context, positions and realised unit P&L."""

    day: date
    context: MarginContext
    positions: sp.csr_matrix  # A x N
    realised: FloatArray  # N: dollars per unit over the horizon (NaN: unpriceable)
    realised_at: dict[int, FloatArray] = field(default_factory=dict)  # other horizons (EngineSpec)
    actual: npt.NDArray[np.bool_] | None = None  # N: realised (main horizon) from actual futures prices


def _is_futures(inst: Instrument | None) -> TypeGuard[TreasuryFuture | RateFuture]:
    return isinstance(inst, TreasuryFuture | RateFuture)


def taylor_pnl(universe: InstrumentUniverse, snap: MarketSnapshot, master: SecuritiesMaster,
               par: FloatArray) -> FloatArray | None:
    """``N x S`` second-order P&L per unit for scenario par curves ``par`` (``S x n``):
    ``delta . dy + 1/2 gamma (w . dy)^2`` with the key-rate deltas from central +-1 bp par
    bumps, the parallel gamma ``gamma`` and ``w = delta / sum(delta)`` (convexity on the
    delta-weighted shift: per-tenor 1 bp second differences are dominated by the curve
    interpolation and useless).  An instrument that cannot be priced on the day's curve (SOFR
    futures before SOFR was published) gets a NaN row, as full revaluation gives it; ``None``
    if a row is priced on some bumped curves and not others (the caller revalues)."""
    bumped, _ = bumped_par_curves(snap)
    try:
        values = bumped_values(universe, snap, master)  # cached: the day's DV01s price the same bumps
        base = base_values(universe, snap, master)[:, 0]  # cached: the exact tail's revaluation too
    except XMarginError:
        values, _ = _values_or_nan(universe, snap, bumped, master)
        base = _values_or_nan(universe, snap, snap.curve, master)[0][:, 0]
    unpriced = ~np.isfinite(values).any(axis=1) & ~np.isfinite(base)
    if not np.isfinite(values[~unpriced]).all() or not np.isfinite(base[~unpriced]).all() or unpriced.all():
        return None
    delta = (values[:, 3::2] - values[:, 2::2]) / (2.0 * ONE_BP)  # N x n, per unit of par (decimal)
    gamma = (values[:, 0] + values[:, 1] - 2.0 * base) / ONE_BP**2  # N
    d = par - snap.par_yields[None, :]
    total = delta.sum(axis=1)
    w = np.divide(delta, total[:, None], out=np.zeros_like(delta), where=total[:, None] != 0)
    out = delta @ d.T + 0.5 * gamma[:, None] * (w @ d.T) ** 2
    for i, inst in enumerate(universe.instruments):
        if isinstance(inst, TreasuryFuture) and not unpriced[i]:
            out[i] = deliverable_taylor(inst, snap, master, d, base[i])
    out[unpriced] = np.nan
    return out


def deliverable_taylor(future: TreasuryFuture, snap: MarketSnapshot, master: SecuritiesMaster, d: FloatArray,
                       base: float) -> FloatArray:
    """``S`` second-order P&L per contract of a Treasury future for par changes ``d`` (``S x n``,
    decimal): each deliverable's forward price over its conversion factor expanded as in
    :func:`taylor_pnl` (key-rate deltas, parallel gamma on the delta-weighted shift, from the
    day's +-1 bp bumps), then the basket's minimum, so a scenario that switches the cheapest
    to deliver is ranked on the new one's price (``base``: the contract's value per unit today)."""
    bumped, _ = bumped_par_curves(snap)
    curves = ZeroCurves(snap.as_of, snap.tenors, snap.curve.node_times,
                        np.vstack([snap.curve.node_logdf[:1], bumped.node_logdf]))
    basket = contract_basket(future, master, snap.as_of)
    factors = np.array([x.conversion_factor for x in basket])
    v = forward_clean_prices(basket, future.last_delivery_day, curves) / factors[:, None]  # K x (1 + 2 + 2n)
    delta = (v[:, 4::2] - v[:, 3::2]) / (2.0 * ONE_BP)
    gamma = (v[:, 1] + v[:, 2] - 2.0 * v[:, 0]) / ONE_BP**2
    total = delta.sum(axis=1)
    w = np.divide(delta, total[:, None], out=np.zeros_like(delta), where=total[:, None] != 0)
    # a deliverable whose expansion cannot reach today's cheapest one's in any scenario never
    # sets the minimum: |x . dy| <= |x|_1 max|dy| bounds the gap's move (the same minimum)
    ctd = int(np.argmin(v[:, 0]))
    big = float(np.abs(d).max()) if d.size else 0.0
    reach = (np.abs(delta - delta[ctd]).sum(axis=1) * big
             + 0.5 * np.abs(gamma) * (np.abs(w).sum(axis=1) * big) ** 2
             + 0.5 * abs(gamma[ctd]) * (np.abs(w[ctd]).sum() * big) ** 2)
    keep = v[:, 0] - v[ctd, 0] <= reach
    price = delta[keep] @ d.T  # K' x S, points
    convexity = w[keep] @ d.T
    convexity *= convexity
    convexity *= 0.5 * gamma[keep, None]
    price += convexity
    price += v[keep, :1]
    return (price.min(axis=0) / 100.0 * future.contract_size - base)  # type: ignore[no-any-return]


def exact_curves(snap: MarketSnapshot, par: FloatArray) -> ZeroCurves:
    """The exact bootstrap of scenario par curves ``par`` (``S x n``, decimal), solved from their
    first-order curves (:func:`~xmargin.market.bootstrap_near.bootstrap_near`: the same
    equations and tolerance as ``snap.curves_from_par``, in fewer passes)."""
    return bootstrap_near(snap.as_of, snap.tenors, snap.tenor_months, par, linear_curves(snap, par).node_logdf)


@lru_cache(maxsize=2)
def _market(data_dir: Path) -> tuple[ParYieldHistory, SecuritiesMaster]:
    return load_par_yields(data_dir / PAR_YIELDS_FILE), load_master(data_dir)


@lru_cache(maxsize=8)
def _span_on(data_dir: Path, day: date, cme: CmeParams, curves: str = "exact",
             residual: ResidualParams | None = None, roots: tuple[str, ...] | None = None) -> SpanParameters:
    history, master = _market(data_dir)
    return calibrate_span(load_snapshot(day, data_dir=data_dir), master, history, cme, residual, curves=curves,
                          roots=roots)


def held_roots(legs: Sequence[Leg]) -> tuple[str, ...]:
    """The futures roots the legs hold (rolling keeps the root): SPAN is calibrated for these
    only (:func:`~xmargin.margin.calibration.calibrate_span`, the same figures per root)."""
    return tuple(sorted({leg.instrument.root for leg in legs if _is_futures(leg.instrument)}))


#: EWMA decay of the volatility that triggers an unscheduled SPAN recalibration (RiskMetrics daily).
TRIGGER_DECAY = 0.94


def recalibration_day(history: ParYieldHistory, day: date, trigger: float) -> date:
    """The SPAN calibration date in force on ``day``: the first business day of its month, or
    the last later day on which the 10-year par yield's EWMA volatility (decay 0.94) had moved
    more than ``trigger`` (a fraction) from its level at the calibration then in force."""
    first = int(np.searchsorted(history.dates, np.datetime64(day.replace(day=1), "D")))
    today = int(np.searchsorted(history.dates, np.datetime64(day, "D")))
    calib = first
    if trigger > 0 and today > first:
        vol = factor_volatility(history, TRIGGER_DECAY, False, 1.0)[:, TENORS.index("10Y")]
        for t in range(first + 1, today + 1):
            if abs(vol[t] / vol[calib] - 1.0) > trigger:
                calib = t
    return history.dates[calib].astype(date)


def _span_for(spec: EngineSpec, day: date, history: ParYieldHistory) -> SpanParameters:
    if spec.span == "none":
        return SpanParameters((), np.zeros(0), np.zeros(0), ())
    curves = spec.span_curves
    if spec.span == "monthly":  # the first business day of the month, or a volatility trigger since
        day = recalibration_day(history, day, spec.params.cme.span_vol_trigger)
    elif spec.span == "once":
        day = history.dates[int(np.searchsorted(history.dates, np.datetime64(spec.start, "D")))].astype(date)
    return _span_on(spec.data_dir, day, spec.params.cme, curves,
                    spec.params.residual if spec.params.residual.any else None, held_roots(spec.legs))


def _subset(pnl: InstrumentPnL, cols: slice | npt.NDArray[np.int64]) -> InstrumentPnL:
    return InstrumentPnL(pnl.universe, pnl.base_values, pnl.pnl[:, cols], pnl.failures)


#: positions x instruments up to which the tail portfolios are dense arrays (the same products)
DENSE_PORTFOLIOS = 100_000


def tail_portfolios(q: sp.csr_matrix, fut: npt.NDArray[np.bool_], elig: npt.NDArray[np.bool_],
                    scenario_set: str) -> FloatArray | sp.csr_matrix:
    """The account portfolios whose VaR a margin call takes on ``scenario_set``'s scenarios
    (rows of ``q`` masked by instrument), whatever the accounts' elections: on the FICC set
    each account whole (the procyclicality tools), its futures, its cash, its eligible part
    ``E``, and ``E``'s and the rest's cash (:func:`~xmargin.margin.calculator.margins_for_positions`);
    on the CME set under SPAN (``"cme-span"``) only ``E`` (the combined run's CME VaR), under
    the CME VaR model (``"cme"``) also each account's futures and their eligible and
    ineligible parts.  Their VaR scenarios are the ones revalued exactly (:func:`_tail_columns`)."""
    cash = ~fut
    masks = {"ficc": [None, fut, cash, elig, elig & cash, ~elig & cash],
             "cme-span": [elig],
             "cme": [None, fut, cash, elig, elig & fut, ~elig & fut]}[scenario_set]
    if q.shape[0] * q.shape[1] <= DENSE_PORTFOLIOS:  # a backtest's few accounts: dense rows
        whole = q.toarray()
        return np.vstack([whole if m is None else whole * m for m in masks])
    return sp.vstack([q if m is None else _scale_columns(q, m) for m in masks]).tocsr()


def _tail_columns(parts: FloatArray | sp.csr_matrix, pnl: FloatArray, built: ScenarioRows, confidence: float,
                  extra: int, weighted: bool = False) -> npt.NDArray[np.int64]:
    """Union over the rows of ``parts`` (account figures) of their VaR scenario and the
    ``extra`` next worst, with and without the stressed ones (and in the unscaled floor
    scenarios; with a stress weight, the ``extra`` worst beyond the weighted quantile's reach),
    and every column with a non-finite price."""
    account_pnl = np.asarray(parts @ np.nan_to_num(pnl))
    account_pnl = account_pnl[np.any(account_pnl != 0.0, axis=1)]
    # columns where an instrument priced in some scenarios fails (never-priced instruments,
    # NaN in every column, are left to the unpriced-position rules of the margin models)
    sometimes = np.isfinite(pnl).any(axis=1)
    cols = [np.flatnonzero(~np.isfinite(pnl[sometimes]).all(axis=0) & np.isfinite(pnl).any(axis=0))]
    is_stress, is_floor = built.is_stress, built.is_floor
    masks = [~is_stress & ~is_floor, ~is_floor]
    if is_floor.any():
        masks.append(is_floor)
    for mask in masks:
        idx = np.flatnonzero(mask)
        k = min((1 + weighted) * tail_rank(len(idx), confidence) + extra, len(idx))
        if k and len(account_pnl):
            worst = np.argpartition(account_pnl[:, idx], k - 1, axis=1)[:, :k]
            cols.append(idx[worst.ravel()])
    return np.unique(np.concatenate(cols)).astype(np.int64)


def day_context(spec: EngineSpec, row: int, nearby: Sequence[int]) -> DayContext:
    """The margin context of history row ``row`` (see the module docstring)."""
    history, master = _market(spec.data_dir)
    day = history.dates[row].astype(date)
    snap = load_snapshot(day, data_dir=spec.data_dir)
    h, p = spec.horizon_days, spec.params
    held = [(leg, inst) for leg, k in zip(spec.legs, nearby, strict=True)
            if (inst := instrument_on(leg, k, snap, h)) is not None]
    universe = InstrumentUniverse.of(inst for _, inst in held)
    q = sp.csr_matrix(
        ([leg.quantity for leg, _ in held], ([leg.account for leg, _ in held], [universe.index(i) for _, i in held])),
        shape=(len(spec.accounts), len(universe)),
    )
    specs = {"ficc": p.ficc.scenarios, "cme": p.cme.var_scenarios}
    built = {name: scenario_par(history, snap, specs[name]) for name in spec.sets}
    cols = [TENORS.index(t) for t in snap.tenors]
    horizons = (h, *spec.other_horizons)
    realised_par = filled_history(history)[[row + x for x in horizons]][:, cols] / 100.0
    nr = len(horizons)
    pars = [built[n].par for n in spec.sets]
    sizes = np.cumsum([0, *[len(x) for x in pars]])
    all_par = np.vstack(pars) if pars else np.zeros((0, len(cols)))
    no_curves = ZeroCurves(snap.as_of, snap.tenors, snap.curve.node_times, np.zeros((0, len(cols))))  # not kept: use par
    scen = {name: ScenarioSet(day, specs[name], snap.tenors, b.par, history.dates[b.rows],
                              history.dates[b.rows + specs[name].horizon_days], b.is_stress, b.stress_period,
                              no_curves, b.is_floor) for name, b in built.items()}
    # residual factors over the same windows (xmargin.scenarios.residual); the exact tail is
    # chosen on the P&L with them, the P&L the VaR is taken of
    residual = residual_for_sets(universe, snap, master, p.residual, [scen[n] for n in spec.sets])
    extra = (np.hstack([residual.pnl(residual.ficc_changes if k == 0 else residual.cme_changes)
                        for k in range(len(spec.sets))]) if residual is not None and spec.sets else 0.0)
    if spec.exact or not len(all_par):
        exact = instrument_pnl(universe, snap, master, snap.curves_from_par(np.vstack([realised_par, all_par])))
        realised, pnl = exact.pnl[:, 0], exact.pnl[:, nr:]
    else:
        pnl = taylor_pnl(universe, snap, master, all_par) if spec.approx == "taylor" else None
        if pnl is None:
            pnl = instrument_pnl(universe, snap, master, linear_curves(snap, all_par)).pnl.copy()
        fut = np.array([_is_futures(i) for i in universe.instruments], dtype=bool)
        elig = np.array([spec.eligibility.is_eligible(i) for i in universe.instruments], dtype=bool)
        parts = {"ficc": tail_portfolios(q, fut, elig, "ficc"),
                 "cme": tail_portfolios(q, fut, elig, "cme" if p.cme.standalone_model == "var" else "cme-span")}
        conf = {"ficc": p.ficc.confidence, "cme": p.cme.var_confidence}
        with_extra = pnl + extra
        tails = [sizes[k] + _tail_columns(parts[n], with_extra[:, sizes[k]:sizes[k + 1]], built[n], conf[n], spec.refine,
                                          specs[n].stress_weight > 0)
                 for k, n in enumerate(spec.sets)] if spec.refine is not None else []
        redo = np.unique(np.concatenate([np.zeros(0, np.int64), *tails]))
        exact = instrument_pnl(universe, snap, master, exact_curves(snap, np.vstack([realised_par, all_par[redo]])))
        realised = exact.pnl[:, 0]
        pnl[:, redo] = exact.pnl[:, nr:]
    full = InstrumentPnL(universe, exact.base_values, pnl, exact.failures)
    sets: dict[str, tuple[ScenarioSet, InstrumentPnL]] = {}
    for k, name in enumerate(spec.sets):
        sets[name] = (scen[name], _subset(full, slice(sizes[k], sizes[k + 1])))
    if not sets:  # SPAN only: one zero scenario keeps the VaR parts at zero
        zero = np.array([np.datetime64(day, "D")])
        sset = ScenarioSet(day, specs["cme"], snap.tenors, snap.par_yields[None, :], zero, zero, np.zeros(1, bool),
                           None, snap.curve)
        sets["cme"] = (sset, InstrumentPnL(universe, exact.base_values, np.zeros((len(universe), 1)), exact.failures))
    if residual is not None:
        for k, name in enumerate(spec.sets):
            changes = residual.ficc_changes if k == 0 else residual.cme_changes
            sets[name] = (sets[name][0], with_residual(sets[name][1], residual.pnl(changes)))
    actual = None
    realised_at = {x: exact.pnl[:, k] for k, x in enumerate(horizons)}
    if spec.pnl == "actual":  # futures realised from actual prices where the history has them
        prices = futures_history_for(spec.data_dir, p.residual)
        for x in horizons:
            realised_at[x], used = actual_realised(universe, prices, day, history.dates[row + x].astype(date),
                                                   realised_at[x])
            if x == h:
                realised, actual = realised_at[x], used
    ficc = sets.get("ficc", sets.get("cme"))
    cme = sets.get("cme", ficc)
    assert ficc is not None and cme is not None
    span = _span_for(spec, day, history)
    attributes = instrument_attributes(universe, snap, master, p, spec.eligibility, span, exact.base_values)
    context = MarginContext(snap, master, p, spec.eligibility, universe, ficc[0], cme[0], ficc[1], cme[1], span,
                            attributes, residual)
    return DayContext(day, context, q, realised, realised_at, actual)


def _run_rows(spec: EngineSpec, rows: Sequence[int], nearby: Sequence[int], reducer: Callable[[DayContext], T]) -> list[T]:
    # compiled curve interpolation (the same formulas; in every worker process); one BLAS thread
    # (the products are small: OpenBLAS's threads cost ~10x on a busy machine, and processes
    # already run the days in parallel)
    with curve_kernel.compiled(), np.errstate(invalid="ignore", divide="ignore"), _one_blas_thread():
        return [reducer(day_context(spec, r, nearby)) for r in rows]


def _one_blas_thread() -> AbstractContextManager[object]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_days(
    spec: EngineSpec,
    start: date,
    end: date,
    reducer: Callable[[DayContext], T],
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[npt.NDArray[np.datetime64], list[T]]:
    """Apply ``reducer`` (a picklable top-level callable) to every business day in
    ``[start, end]`` whose horizon end is in the history; returns ``(dates, results)``."""
    history, _ = _market(spec.data_dir)
    lo = int(np.searchsorted(history.dates, np.datetime64(start, "D")))
    hi = min(int(np.searchsorted(history.dates, np.datetime64(end, "D"), side="right")), len(history.dates) - spec.horizon_days)
    rows = list(range(lo, hi))
    nearby = [nearby_index(leg.instrument, spec.start, spec.horizon_days) if _is_futures(leg.instrument) else 0
              for leg in spec.legs]
    chunk = 20 if workers <= 1 else max(1, min(40, -(-len(rows) // workers)))
    results: list[T] = []
    if workers <= 1 or len(rows) <= chunk:
        for b in month_blocks(history.dates[rows], rows, chunk):
            results += _run_rows(spec, b, nearby, reducer)
            if progress:
                progress(len(results), len(rows))
    else:
        # the first day here: the processes forked after it inherit the warm caches (market
        # history, whole-history basis series, compiled curve code) instead of each building them
        blocks = [rows[:1], *month_blocks(history.dates[rows[1:]], rows[1:], chunk)]
        results += _run_rows(spec, blocks[0], nearby, reducer)
        if progress:
            progress(len(results), len(rows))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for out in pool.map(partial(_run_rows, spec, nearby=nearby, reducer=reducer), blocks[1:]):
                results += out
                if progress:
                    progress(len(results), len(rows))
    return history.dates[rows], results


def month_blocks(dates: npt.NDArray[np.datetime64], rows: Sequence[int], size: int) -> list[list[int]]:
    """``rows`` (on ``dates``) in contiguous blocks of whole calendar months, each at least
    ``size`` rows (the last may be shorter): a worker calibrates SPAN once for each month of
    its blocks, as a single process does, instead of again for a month split between blocks."""
    month = np.asarray(dates).astype("datetime64[M]")
    blocks: list[list[int]] = []
    for k, r in enumerate(rows):
        if not blocks or (len(blocks[-1]) >= size and month[k] != month[k - 1]):
            blocks.append([])
        blocks[-1].append(r)
    return blocks


@dataclass(frozen=True)
class SideHorizons:
    """Realised-P&L horizons of a model's backtest (business days; module docstring): FICC
    legs, CME legs, and the eligible legs of a cross-margining account on a day its reduction
    applies (``joint``: liquidated together with the FICC legs)."""

    ficc: int
    cme: int
    joint: int

    @property
    def longest(self) -> int:
        return max(self.ficc, self.cme, self.joint)

    @property
    def distinct(self) -> tuple[int, ...]:
        return tuple(sorted({self.ficc, self.cme, self.joint}))

    def to_dict(self) -> dict[str, int]:
        return {"ficc": self.ficc, "cme": self.cme, "joint": self.joint}


def model_horizons(params: MarginParams, model: str, override: int | None = None) -> SideHorizons:
    """Each side's backtest horizon under ``model`` (module docstring); ``override`` (the
    ``--horizon-days`` option) sets every side."""
    if override:
        return SideHorizons(override, override, override)
    ficc_h = params.ficc.scenarios.horizon_days
    cme_var_h = params.cme.var_scenarios.horizon_days
    cme_h = cme_var_h if params.cme.standalone_model == "var" else 1  # SPAN: one-day scanning ranges
    return {"ficc": SideHorizons(ficc_h, ficc_h, ficc_h), "cme": SideHorizons(cme_h, cme_h, cme_h),
            "combined": SideHorizons(ficc_h, cme_h, max(ficc_h, cme_var_h))}[model]


def realised_pnl(day: DayContext, q: sp.csr_matrix, joint: npt.NDArray[np.bool_],
                 horizons: SideHorizons) -> FloatArray:
    """Realised P&L per account (dollars): each leg over its side's horizon (FICC legs
    ``horizons.ficc``, CME legs ``horizons.cme``), except the cross-margin-eligible legs of the
    accounts flagged in ``joint`` (elected, reduction applied that day), which are liquidated
    together over ``horizons.joint``."""
    a = day.context.attributes
    side = np.where(a.is_cme, day.realised_at[horizons.cme], day.realised_at[horizons.ficc])
    if not joint.any():
        return np.asarray(q @ side).ravel()
    q_joint = (sp.diags(joint.astype(float)) @ q @ sp.diags(a.eligible.astype(float))).tocsr()
    return np.asarray((q - q_joint) @ side + q_joint @ day.realised_at[horizons.joint]).ravel()


def _backtest_reducer(day: DayContext, model: str, elected: tuple[bool, ...],
                      horizons: SideHorizons | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(margin A, realised P&L A, components C x A)`` of one day under ``model``
    (``elected``: cross-margin flags; components in :data:`DAILY_COMPONENTS` order); realised
    P&L per :func:`realised_pnl` over ``horizons``, or every leg over the engine's horizon."""
    ctx, q = day.context, day.positions
    is_cme = ctx.attributes.is_cme
    if model == "combined":
        xm = np.array(elected, dtype=bool)
        mask = np.ones(len(is_cme), bool)
    else:
        xm = np.zeros(q.shape[0], dtype=bool)
        mask = is_cme if model == "cme" else ~is_cme
    qm = (q @ sp.diags(mask.astype(float))).tocsr()
    m = margins_for_positions(ctx, qm, xm)
    margin = {"ficc": m.ficc_standalone, "cme": m.cme_standalone, "combined": m.total_after}[model]
    comps = np.array([getattr(m, c) for c in DAILY_COMPONENTS], dtype=float)
    if horizons is None:
        return margin, np.asarray(qm @ day.realised).ravel(), comps
    return margin, realised_pnl(day, qm, xm & (m.applied_reduction_factor > 0), horizons), comps


def _sourced_reducer(day: DayContext, model: str, elected: tuple[bool, ...],
                     horizons: SideHorizons | None = None) -> tuple[FloatArray, ...]:
    """:func:`_backtest_reducer` plus, per account, its futures positions held that day and
    those realised from actual prices (``A x 2``)."""
    margin, realised, comps = _backtest_reducer(day, model, elected, horizons)
    ctx, q = day.context, day.positions
    is_cme = ctx.attributes.is_cme
    mask = np.ones(len(is_cme), bool) if model == "combined" else (is_cme if model == "cme" else ~is_cme)
    fut = (is_futures(ctx.universe) & mask).astype(float)
    held = (abs(q) > 0).astype(float)
    used = fut * (day.actual.astype(float) if day.actual is not None else 0.0)
    counts = np.column_stack([np.asarray(held @ fut).ravel(), np.asarray(held @ used).ravel()])
    return margin, realised, comps, counts


def _pnl_notes(pnl: str, spec: EngineSpec) -> tuple[str, ...]:
    if pnl == "model":
        return ("realised P&L: every position revalued on the later curve (--pnl model)",)
    prices = futures_history_for(spec.data_dir, spec.params.residual)
    where = ("no futures price history: futures P&L from the model" if prices is None
             else f"futures prices from {prices.source}")
    return (f"realised P&L: futures from actual prices where the history has the held contract ({where}); "
            "cash and repo from the curve (no price history per security)",)


def backtest(
    book: Book,
    start: date,
    end: date,
    *,
    data_dir: Path,
    params: MarginParams,
    eligibility: EligibilityRules,
    model: str = "combined",
    horizon_days: int | None = None,
    exact: bool = False,
    refine: int | None = 16,
    span: str = "monthly",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    pnl: str = "actual",
) -> BacktestResult:
    """Backtest ``book`` (read as of ``start``) from ``start`` to ``end`` under ``model``;
    ``pnl``: realised futures P&L from ``"actual"`` prices (where the history has them) or the ``"model"``."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}")
    if pnl not in PNL_SOURCES:
        raise ValueError(f"pnl must be one of {PNL_SOURCES}")
    hz = model_horizons(params, model, horizon_days)
    h = hz.longest
    standalone_span = params.cme.standalone_model == "span"
    sets = {"ficc": ("ficc",), "cme": () if standalone_span else ("cme",), "combined": ("ficc", "cme")}[model]
    needs_span = model != "ficc" and standalone_span
    spec = EngineSpec(data_dir, params, eligibility, book.accounts, legs_of(book), start, h, sets,
                      span if needs_span else "none", exact, refine, other_horizons=hz.distinct[:-1], pnl=pnl)
    reducer = partial(_sourced_reducer, model=model, elected=tuple(a.cross_margin for a in book.accounts),
                      horizons=hz)
    check_range(data_dir, params, start, end, h)
    dates, out = run_days(spec, start, end, reducer, workers=workers, progress=progress)
    method = "exact" if exact else "linearised bootstrap" + ("" if refine is None else f", VaR tail + {refine} exact")
    result = assemble(model, book.accounts, params, h, dates, [o[:3] for o in out], method,
                      tuple(roll_notes(spec.legs, start, h, dates)) + _pnl_notes(pnl, spec), hz.to_dict())
    counts = sum((o[3] for o in out), np.zeros((len(book.accounts), 2)))
    return replace(result, futures_days=tuple((int(a), int(b)) for a, b in np.asarray(counts).reshape(-1, 2)))


def check_range(data_dir: Path, params: MarginParams, start: date, end: date, horizon_days: int) -> None:
    """Raise :class:`InputError` naming the date when ``[start, end]`` leaves the history: the
    first day needs a full look-back before it, the last its ``horizon_days`` after it."""
    history, _ = _market(data_dir)
    years = max(params.ficc.scenarios.lookback_years, params.cme.var_scenarios.lookback_years,
                params.cme.span_lookback_years)
    first = history.dates[0] + np.timedelta64(int(round(years * 365.25)), "D")
    last = history.dates[-1 - horizon_days] if len(history.dates) > horizon_days else history.dates[0]
    if np.datetime64(start, "D") < first:
        raise InputError(f"backtest start {start} is before {first}, the first day with a {years:g}-year look-back "
                         f"in the history ({history.dates[0]}..{history.dates[-1]})", source="command line",
                         field="--from")
    if np.datetime64(end, "D") > last:
        raise InputError(f"backtest end {end} is after {last}, the last day whose {horizon_days}-day P&L is in the "
                         f"history (ends {history.dates[-1]})", source="command line", field="--to")
    if end < start:
        raise InputError(f"backtest end {end} is before its start {start}", source="command line", field="--to")
