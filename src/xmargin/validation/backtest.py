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
  the whole book against its P&L over the longer of the two horizons (3 days: the joint
  liquidation period of :mod:`xmargin.validation.default`).

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
``workers > 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.config import PAR_YIELDS_FILE
from xmargin.margin.calculator import margins_for_positions
from xmargin.margin.calibration import calibrate_span
from xmargin.margin.context import (  # the context's own per-instrument inputs
    MarginContext,
    instrument_attributes,
)
from xmargin.margin.params import CmeParams, MarginParams
from xmargin.margin.span import SpanParameters
from xmargin.margin.var import tail_rank
from xmargin.market.curve import ZeroCurves
from xmargin.market.history import TENORS, ParYieldHistory, load_par_yields
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.portfolio.book import Account, Book
from xmargin.pricing.residual_pnl import residual_for_sets, with_residual
from xmargin.pricing.revalue import InstrumentUniverse, bumped_par_curves
from xmargin.pricing.scenario_pnl import InstrumentPnL, instrument_pnl
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster, load_master
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.historical import (
    ScenarioSet,
    ScenarioSpec,
    filled_history,
    most_severe_window,
    named_period,
)
from xmargin.scenarios.residual import ResidualParams, futures_history_for
from xmargin.validation import (
    Leg,
    coverage_summary,
    instrument_on,
    legs_of,
    nearby_index,
    roll_notes,
)
from xmargin.validation.actual_pnl import PNL_SOURCES, actual_realised, is_futures

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
    pnl: str = "actual"  # realised futures P&L: "actual" prices where the history has them, or "model"


@dataclass(frozen=True, eq=False)
class DayContext:
    """One day of the engine: the day's margin context, positions and realised unit P&L."""

    day: date
    context: MarginContext
    positions: sp.csr_matrix  # A x N
    realised: FloatArray  # N: dollars per unit over the horizon (NaN: unpriceable)
    actual: npt.NDArray[np.bool_] | None = None  # N: realised from actual futures prices


def _is_futures(inst: Instrument | None) -> TypeGuard[TreasuryFuture | RateFuture]:
    return isinstance(inst, TreasuryFuture | RateFuture)


def scenario_par(history: ParYieldHistory, snapshot: MarketSnapshot, spec: ScenarioSpec) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.bool_], tuple[date, date] | None]:
    """``(par S x n, window start rows, is_stress, stress period)``: the scenario par curves of
    :func:`build_scenarios` without bootstrapping them (same rows, same order)."""
    h, y = spec.horizon_days, filled_history(history)
    cols = [TENORS.index(t) for t in snapshot.tenors]
    as_of = np.datetime64(snapshot.as_of, "D")
    end_row = int(np.searchsorted(history.dates, as_of, side="right"))
    first_row = int(np.searchsorted(history.dates, as_of - np.timedelta64(int(round(spec.lookback_years * 365.25)), "D")))
    starts = np.arange(first_row, end_row - h)
    stress = np.array([], dtype=np.int64)
    if spec.stress == "auto":
        i, j = most_severe_window(history, h, spec.stress_window_days, snapshot.as_of)
        stress = np.arange(i, min(j, end_row - h))
    elif spec.stress != "none":
        lo, hi = named_period(spec.stress)
        i = int(np.searchsorted(history.dates, np.datetime64(lo, "D"), side="left"))
        stress = np.arange(i, min(int(np.searchsorted(history.dates, np.datetime64(hi, "D"), side="right")), end_row - h))
    period = (history.dates[stress[0]].astype(date), history.dates[stress[-1]].astype(date)) if len(stress) else None
    rows = np.concatenate([starts, stress])
    before, after = y[rows][:, cols] / 100.0, y[rows + h][:, cols] / 100.0  # the same operations, bit for bit
    base = snapshot.par_yields[None, :]
    if spec.shift == "absolute":
        par = base + (after - before)
    else:
        c = spec.relative_displacement_pct / 100.0
        par = (base + c) * (after + c) / (before + c) - c
    return par, rows, np.r_[np.zeros(len(starts), bool), np.ones(len(stress), bool)], period


def linear_curves(snapshot: MarketSnapshot, par: FloatArray) -> ZeroCurves:
    """Zero curves for scenario par curves, to first order around the snapshot's curve."""
    bumped, _ = bumped_par_curves(snapshot)
    jac = (bumped.node_logdf[3::2] - bumped.node_logdf[2::2]) / (2 * ONE_BP)  # tenors x nodes
    base = snapshot.curve
    return ZeroCurves(base.as_of, base.tenors, base.node_times, base.node_logdf + (par - snapshot.par_yields) @ jac)


@lru_cache(maxsize=2)
def _market(data_dir: Path) -> tuple[ParYieldHistory, SecuritiesMaster]:
    return load_par_yields(data_dir / PAR_YIELDS_FILE), load_master(data_dir)


@lru_cache(maxsize=8)
def _span_on(data_dir: Path, day: date, cme: CmeParams, residual: ResidualParams | None = None) -> SpanParameters:
    history, master = _market(data_dir)
    return calibrate_span(load_snapshot(day, data_dir=data_dir), master, history, cme, residual)


def _span_for(spec: EngineSpec, day: date, history: ParYieldHistory) -> SpanParameters:
    if spec.span == "none":
        return SpanParameters((), np.zeros(0), np.zeros(0), ())
    if spec.span == "monthly":  # the first business day of the month in the history
        first = np.datetime64(day.replace(day=1), "D")
        day = history.dates[int(np.searchsorted(history.dates, first))].astype(date)
    elif spec.span == "once":
        day = history.dates[int(np.searchsorted(history.dates, np.datetime64(spec.start, "D")))].astype(date)
    return _span_on(spec.data_dir, day, spec.params.cme, spec.params.residual if spec.params.residual.any else None)


def _subset(pnl: InstrumentPnL, cols: slice | npt.NDArray[np.int64]) -> InstrumentPnL:
    return InstrumentPnL(pnl.universe, pnl.base_values, pnl.pnl[:, cols], pnl.failures)


def _tail_columns(parts: sp.csr_matrix, pnl: FloatArray, is_stress: npt.NDArray[np.bool_], confidence: float,
                  extra: int) -> npt.NDArray[np.int64]:
    """Union over the rows of ``parts`` (account figures) of their VaR scenario and the
    ``extra`` next worst, with and without the stressed ones, and every column with a
    non-finite price."""
    account_pnl = np.asarray(parts @ np.nan_to_num(pnl))
    account_pnl = account_pnl[np.any(account_pnl != 0.0, axis=1)]
    cols = [np.flatnonzero(~np.isfinite(pnl).all(axis=0) & np.isfinite(pnl).any(axis=0))]
    for mask in (~is_stress, np.ones_like(is_stress)):
        idx = np.flatnonzero(mask)
        k = min(tail_rank(len(idx), confidence) + extra, len(idx))
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
    realised_par = filled_history(history)[row + h, cols][None, :] / 100.0
    pars = [built[n][0] for n in spec.sets]
    sizes = np.cumsum([0, *[len(x) for x in pars]])
    all_par = np.vstack(pars) if pars else np.zeros((0, len(cols)))
    if spec.exact or not len(all_par):
        exact = instrument_pnl(universe, snap, master, snap.curves_from_par(np.vstack([realised_par, all_par])))
        realised, pnl = exact.pnl[:, 0], exact.pnl[:, 1:]
    else:
        approx = instrument_pnl(universe, snap, master, linear_curves(snap, all_par))
        pnl = approx.pnl.copy()
        fut = np.array([_is_futures(i) for i in universe.instruments], dtype=float)
        elig = np.array([spec.eligibility.is_eligible(i) for i in universe.instruments], dtype=float)
        parts = sp.vstack([q, q @ sp.diags(fut), q @ sp.diags(1.0 - fut), q @ sp.diags(elig)]).tocsr()
        conf = {"ficc": p.ficc.confidence, "cme": p.cme.var_confidence}
        tails = [sizes[k] + _tail_columns(parts, pnl[:, sizes[k]:sizes[k + 1]], built[n][2], conf[n], spec.refine)
                 for k, n in enumerate(spec.sets)] if spec.refine is not None else []
        redo = np.unique(np.concatenate([np.zeros(0, np.int64), *tails]))
        exact = instrument_pnl(universe, snap, master, snap.curves_from_par(np.vstack([realised_par, all_par[redo]])))
        realised = exact.pnl[:, 0]
        pnl[:, redo] = exact.pnl[:, 1:]
    full = InstrumentPnL(universe, exact.base_values, pnl, exact.failures)
    sets: dict[str, tuple[ScenarioSet, InstrumentPnL]] = {}
    for k, name in enumerate(spec.sets):
        par, rows, stress, period = built[name]
        curves = ZeroCurves(snap.as_of, snap.tenors, snap.curve.node_times, np.zeros((0, len(cols))))  # not kept: use par
        sset = ScenarioSet(day, specs[name], snap.tenors, par, history.dates[rows],
                           history.dates[rows + specs[name].horizon_days], stress, period, curves)
        sets[name] = (sset, _subset(full, slice(sizes[k], sizes[k + 1])))
    if not sets:  # SPAN only: one zero scenario keeps the VaR parts at zero
        zero = np.array([np.datetime64(day, "D")])
        sset = ScenarioSet(day, specs["cme"], snap.tenors, snap.par_yields[None, :], zero, zero, np.zeros(1, bool),
                           None, snap.curve)
        sets["cme"] = (sset, InstrumentPnL(universe, exact.base_values, np.zeros((len(universe), 1)), exact.failures))
    residual = residual_for_sets(universe, snap, master, p.residual, [sets[n][0] for n in spec.sets])
    if residual is not None:  # residual factors over the same windows (xmargin.scenarios.residual)
        for k, name in enumerate(spec.sets):
            changes = residual.ficc_changes if k == 0 else residual.cme_changes
            sets[name] = (sets[name][0], with_residual(sets[name][1], residual.pnl(changes)))
    actual = None
    if spec.pnl == "actual":
        end_day = history.dates[row + h].astype(date)
        realised, actual = actual_realised(universe, futures_history_for(spec.data_dir, p.residual), day, end_day,
                                           realised)
    ficc = sets.get("ficc", sets.get("cme"))
    cme = sets.get("cme", ficc)
    assert ficc is not None and cme is not None
    span = _span_for(spec, day, history)
    attributes = instrument_attributes(universe, snap, master, p, spec.eligibility, span, exact.base_values)
    context = MarginContext(snap, master, p, spec.eligibility, universe, ficc[0], cme[0], ficc[1], cme[1], span,
                            attributes, residual)
    return DayContext(day, context, q, realised, actual)


def _run_rows(spec: EngineSpec, rows: Sequence[int], nearby: Sequence[int], reducer: Callable[[DayContext], T]) -> list[T]:
    with np.errstate(invalid="ignore", divide="ignore"):  # curve module: masked 0/0 in region formulas
        return [reducer(day_context(spec, r, nearby)) for r in rows]


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
    # contiguous blocks: a worker then recalibrates SPAN only for the months of its blocks
    chunk = 20 if workers <= 1 else max(1, min(60, -(-len(rows) // workers)))
    blocks = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
    results: list[T] = []
    if workers <= 1 or len(blocks) <= 1:
        for b in blocks:
            results += _run_rows(spec, b, nearby, reducer)
            if progress:
                progress(len(results), len(rows))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for out in pool.map(partial(_run_rows, spec, nearby=nearby, reducer=reducer), blocks):
                results += out
                if progress:
                    progress(len(results), len(rows))
    return history.dates[rows], results


def model_horizon(params: MarginParams, model: str) -> int:
    """Default backtest horizon of a model (business days; module docstring)."""
    ficc_h = params.ficc.scenarios.horizon_days
    cme_h = params.cme.var_scenarios.horizon_days if params.cme.standalone_model == "var" else 1
    return {"ficc": ficc_h, "cme": cme_h, "combined": max(ficc_h, params.cme.var_scenarios.horizon_days)}[model]


def _backtest_reducer(day: DayContext, model: str, elected: tuple[bool, ...]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(margin A, realised P&L A, futures positions A x 2)`` of one day under ``model``
    (``elected``: cross-margin flags); the last counts each account's futures positions and
    those realised from actual prices."""
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
    fut = is_futures(ctx.universe).astype(float)
    held = (abs(qm) > 0).astype(float)
    used = fut * (day.actual.astype(float) if day.actual is not None else 0.0)
    counts = np.column_stack([np.asarray(held @ fut).ravel(), np.asarray(held @ used).ravel()])
    return margin, np.asarray(qm @ day.realised).ravel(), counts


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Margin and realised P&L per account (rows) and day (columns), dollars."""

    model: str
    confidence: float
    horizon_days: int
    accounts: tuple[str, ...]
    dates: npt.NDArray[np.datetime64]
    margin: FloatArray
    pnl: FloatArray
    method: str
    notes: tuple[str, ...] = field(default=())
    #: per account: futures position-days, and those realised from actual prices
    futures_days: tuple[tuple[int, int], ...] = field(default=())

    def pnl_source(self, i: int) -> str:
        """``"actual"`` when every futures position-day of account ``i`` used actual prices."""
        if not self.futures_days:
            return "model"
        total, actual = self.futures_days[i]
        return "actual" if total > 0 and actual == total else "model"

    @property
    def exceptions(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.margin) & np.isfinite(self.pnl) & (-self.pnl > self.margin)

    def summary(self, i: int) -> dict[str, Any]:
        out = coverage_summary(self.margin[i], self.pnl[i], self.confidence, self.horizon_days)
        for b in out["zones"]["blocks"]:  # type: ignore[index]
            b["start"], b["end"] = str(self.dates[b["start"]]), str(self.dates[b["end"]])
        fd = self.futures_days[i] if self.futures_days else (0, 0)
        return {"account": self.accounts[i], "pnl_source": self.pnl_source(i),
                "futures_position_days": fd[0], "futures_position_days_actual": fd[1], **out,
                "exception_dates": [str(d) for d in self.dates[self.exceptions[i]]]}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "confidence": self.confidence, "horizon_days": self.horizon_days,
                "method": self.method, "from": str(self.dates[0]) if len(self.dates) else None,
                "to": str(self.dates[-1]) if len(self.dates) else None, "notes": list(self.notes),
                "accounts": [self.summary(i) for i in range(len(self.accounts))]}


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
    """Backtest ``book`` (read as of ``start``) from ``start`` to ``end`` under ``model``."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}")
    if pnl not in PNL_SOURCES:
        raise ValueError(f"pnl must be one of {PNL_SOURCES}")
    h = horizon_days or model_horizon(params, model)
    standalone_span = params.cme.standalone_model == "span"
    sets = {"ficc": ("ficc",), "cme": () if standalone_span else ("cme",), "combined": ("ficc", "cme")}[model]
    needs_span = model != "ficc" and standalone_span
    spec = EngineSpec(data_dir, params, eligibility, book.accounts, legs_of(book), start, h, sets,
                      span if needs_span else "none", exact, refine, pnl)
    reducer = partial(_backtest_reducer, model=model, elected=tuple(a.cross_margin for a in book.accounts))
    dates, out = run_days(spec, start, end, reducer, workers=workers, progress=progress)
    margin = np.array([o[0] for o in out]).T.reshape(len(book.accounts), len(dates))
    realised = np.array([o[1] for o in out]).T.reshape(len(book.accounts), len(dates))
    counts = sum((o[2] for o in out), np.zeros((len(book.accounts), 2)))
    conf = params.ficc.confidence if model != "cme" else (params.cme.span_confidence if standalone_span else params.cme.var_confidence)
    return BacktestResult(model, conf, h, tuple(a.account for a in book.accounts), dates, margin, realised,
                          "exact" if exact else "linearised bootstrap" + ("" if refine is None else f", VaR tail + {refine} exact"),
                          tuple(roll_notes(spec.legs, start, h, dates)) + _pnl_notes(pnl, spec),
                          tuple((int(a), int(b)) for a, b in np.asarray(counts).reshape(-1, 2)))


def _pnl_notes(pnl: str, spec: EngineSpec) -> tuple[str, ...]:
    if pnl == "model":
        return ("realised P&L: every position revalued on the later curve (--pnl model)",)
    prices = futures_history_for(spec.data_dir, spec.params.residual)
    where = "no futures price history: futures P&L from the model" if prices is None else f"futures prices from {prices.source}"
    return (f"realised P&L: futures from actual prices where the history has the held contract ({where}); "
            "cash and repo from the curve (no price history per security)",)
