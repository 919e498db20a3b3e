"""Procyclicality: margin through the stressed periods, each anti-procyclicality tool on and off.

The daily engine of :mod:`xmargin.validation.backtest` margins a book on every business day
of each period (look-back ending that day).  From each day's scenario P&L of every account
(the FICC VaR model's horizon, 3 days, on the whole book) these margin series are formed;
the three tools are the options of EMIR RTS 153/2013 (Commission Delegated Regulation (EU)
No 153/2013), article 28(1)(a)-(c):

* ``base``: the VaR of the configured scenario mode with no tool: plain historical
  simulation over the last ``base_lookback_years`` (1 year: the procyclical benchmark), or,
  in the ``filtered`` mode, the FHS VaR over the model's look-back;
* ``buffer`` (28(1)(a)): ``base`` with a buffer of ``buffer`` (25%) drawn down when margin
  rises.  Rule (**choice**): the margin stays within ``[VaR, (1 + buffer) VaR]`` and moves
  only when it would leave that band, starting at the top; so rises of up to 25% are
  absorbed and the buffer is rebuilt as VaR falls;
* ``stress_weight`` (28(1)(b)): the larger of ``base`` and the VaR with the stressed
  period's scenarios weighted ``w`` (25%) and ``base``'s ``1 - w``
  (:func:`xmargin.margin.var.weighted_var`);
* ``floor`` (28(1)(c)): ``max(base, plain (unscaled) VaR over the last long_lookback_years
  (10))``;
* ``all``: the three together (the buffer released as above on ``max(stress_weight, floor)``);
* ``model``: xmargin's FICC VaR as configured (``[ficc.scenarios]``: mode, tools; a buffer
  there is held, not released) -- floors and add-ons left out, so the series compare like
  with like.

Measures per series (Murphy, Vasios and Vause, "An investigation into the procyclicality of
risk-based initial margin models", Bank of England Financial Stability Paper 29, 2014):
peak-to-trough ratio (largest / smallest margin in the period), the largest 1-, 5- and
30-day (business day) increases in percent, and the mean margin (the cost of the tool).
Default periods: 2008, the first half of 2020 (around March 2020), and 2022.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.margin.params import MarginParams
from xmargin.margin.var import historical_var, model_var, weighted_var
from xmargin.portfolio.book import Account
from xmargin.reference.eligibility import EligibilityRules
from xmargin.scenarios.historical import ScenarioSpec, named_period
from xmargin.validation import Leg
from xmargin.validation.backtest import DayContext, EngineSpec, run_days

FloatArray = npt.NDArray[np.float64]
VARIANTS = ("base", "buffer", "stress_weight", "floor", "all", "model")
DEFAULT_PERIODS = ("2008", "2020-01-01:2020-06-30", "2022")


def with_params(params: MarginParams, **ficc_scenarios: Any) -> MarginParams:
    """``params`` with FICC scenario-spec fields replaced (e.g. ``lookback_years``)."""
    return replace(params, ficc=replace(params.ficc, scenarios=replace(params.ficc.scenarios, **ficc_scenarios)))


@dataclass(frozen=True)
class ApcOptions:
    """Anti-procyclicality settings (fractions and years)."""

    base_lookback_years: float = 1.0
    long_lookback_years: float = 10.0
    stress_weight: float = 0.25
    buffer: float = 0.25
    model_spec: ScenarioSpec | None = None  # the configured FICC spec (set by :func:`procyclicality`)


def opts_spec(day_spec: ScenarioSpec, opts: ApcOptions) -> ScenarioSpec:
    """The configured spec the ``model`` series uses (the day's set has a longer look-back)."""
    return opts.model_spec or day_spec


def apc_margins(pnl: FloatArray, window_start: npt.NDArray[np.datetime64], is_stress: npt.NDArray[np.bool_],
                day: date, confidence: float, opts: ApcOptions, *, is_floor: npt.NDArray[np.bool_] | None = None,
                spec: ScenarioSpec | None = None) -> FloatArray:
    """``A x 5``: the path-independent series ``base, stress_weight, floor, all (before the
    buffer), model`` on one day (module docstring).  ``is_floor`` flags the unscaled copies of
    a filtered set; ``spec`` is the configured FICC scenario spec (default: plain)."""
    spec = spec or ScenarioSpec()
    today = np.datetime64(day, "D")
    years = (today - window_start.astype("datetime64[D]")).astype(np.int64) / 365.25
    floor_cols = np.zeros(len(is_stress), bool) if is_floor is None else is_floor
    filtered = bool(floor_cols.any())
    lookback = ~is_stress & ~floor_cols
    short = lookback & (years <= (spec.lookback_years if filtered else opts.base_lookback_years))
    unscaled = (floor_cols if filtered else lookback) & (years <= opts.long_lookback_years)
    base = historical_var(pnl[:, short], confidence)
    w = np.where(short, (1.0 - opts.stress_weight) / max(short.sum(), 1), 0.0)
    if is_stress.any():
        w = w + np.where(is_stress, opts.stress_weight / is_stress.sum(), 0.0)
    else:
        w = w / w.sum()
    weighted = np.maximum(base, weighted_var(pnl, w, confidence))
    floor = np.maximum(base, historical_var(pnl[:, unscaled], confidence))
    both = np.maximum(weighted, floor)
    in_model = (lookback & (years <= spec.lookback_years)) | (is_stress & (spec.stress != "none"))
    in_model |= floor_cols & (years <= spec.lookback_years) & spec.floor
    model, _ = model_var(pnl[:, in_model], is_stress[in_model], floor_cols[in_model], confidence,
                         stress_weight=spec.stress_weight, buffer=spec.buffer)
    return np.column_stack([base, weighted, floor, both, model])


def buffered(var_series: FloatArray, buffer: float) -> FloatArray:
    """Margin with a drawable buffer: stays in ``[VaR, (1 + buffer) VaR]`` (rows: accounts)."""
    out = np.empty_like(var_series)
    level = (1.0 + buffer) * var_series[:, 0]
    for t in range(var_series.shape[1]):  # path-dependent: one step per day
        level = np.clip(level, var_series[:, t], (1.0 + buffer) * var_series[:, t])
        out[:, t] = level
    return out


def procyclicality_measures(series: FloatArray, dates: npt.NDArray[np.datetime64]) -> dict[str, float | str]:
    """Peak, trough, peak-to-trough ratio, largest 1-, 5- and 30-day increases (%), mean (dollars)."""
    s = np.asarray(series, dtype=float)
    ok = np.isfinite(s)
    s, d = s[ok], dates[ok]
    if len(s) == 0:
        return {}
    peak, trough = float(s.max()), float(s.min())

    def rise(n: int) -> float:
        if len(s) <= n:
            return float("nan")
        prev = s[:-n]
        return float(np.max(np.where(prev > 0, s[n:] / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)) * 100.0)

    return {"mean": float(s.mean()), "peak": peak, "peak_date": str(d[int(np.argmax(s))]), "trough": trough,
            "trough_date": str(d[int(np.argmin(s))]), "peak_to_trough": peak / trough if trough > 0 else float("inf"),
            "max_1d_increase_pct": rise(1), "max_5d_increase_pct": rise(5), "max_30d_increase_pct": rise(30)}


def _reducer(day: DayContext, opts: ApcOptions) -> FloatArray:
    ctx = day.context
    pnl = np.asarray(day.positions @ ctx.ficc_pnl.filled)
    bad = np.asarray(abs(day.positions) @ (~ctx.ficc_pnl.priced).astype(float)).ravel() > 0
    sset = ctx.ficc_scenarios
    out = apc_margins(pnl, sset.window_start, sset.is_stress, day.day, ctx.params.ficc.confidence, opts,
                      is_floor=sset.is_floor, spec=opts_spec(ctx.params.ficc.scenarios, opts))
    out[bad] = np.nan
    return out


@dataclass(frozen=True, eq=False)
class PeriodResult:
    period: str
    dates: npt.NDArray[np.datetime64]
    margins: dict[str, FloatArray]  # variant -> A x D

    def measures(self, i: int) -> dict[str, dict[str, float | str]]:
        return {v: procyclicality_measures(self.margins[v][i], self.dates) for v in VARIANTS}


def procyclicality(
    accounts: Sequence[Account],
    legs_for: Callable[[date], Sequence[Leg]],
    *,
    data_dir: Path,
    params: MarginParams,
    eligibility: EligibilityRules,
    periods: Sequence[str] = DEFAULT_PERIODS,
    options: ApcOptions | None = None,
    workers: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[PeriodResult]:
    """Margin series of every variant through each period; ``legs_for(start)`` gives the book
    held through the period that starts on ``start`` (futures legs as of that day)."""
    opts = options or ApcOptions()
    spec = params.ficc.scenarios
    lookback = max(opts.long_lookback_years, spec.lookback_years)
    p = with_params(params, lookback_years=lookback, floor=spec.mode == "filtered",
                    stress="auto" if spec.stress == "none" else spec.stress)
    opts = replace(opts, model_spec=spec)
    out = []
    for text in periods:
        lo, hi = named_period(text)
        spec = EngineSpec(data_dir, p, eligibility, tuple(accounts), tuple(legs_for(lo)), lo,
                          p.ficc.scenarios.horizon_days, ("ficc",), "none")
        cb = (lambda d, t, text=text: progress(text, d, t)) if progress else None
        dates, res = run_days(spec, lo, hi, partial(_reducer, opts=opts), workers=workers, progress=cb)
        arr = np.stack(res, axis=2) if res else np.zeros((len(accounts), 5, 0))  # A x 5 x D
        margins = {"base": arr[:, 0], "stress_weight": arr[:, 1], "floor": arr[:, 2], "model": arr[:, 4]}
        margins["buffer"] = buffered(np.nan_to_num(arr[:, 0]), opts.buffer) if arr.shape[2] else arr[:, 0]
        margins["all"] = buffered(np.nan_to_num(arr[:, 3]), opts.buffer) if arr.shape[2] else arr[:, 3]
        out.append(PeriodResult(text, dates, margins))
    return out


def par_note_book(data_dir: Path, *, tenor_years: int = 10, face: float = 1e8, hedge_root: str | None = "ZN",
                  horizon_days: int = 3) -> tuple[tuple[Account, ...], Callable[[date], list[Leg]]]:
    """A constant-maturity book that exists in every period: account ``PAR{n}Y`` long ``face``
    of the ``n``-year par note (re-struck daily), and with ``hedge_root`` account
    ``PAR{n}Y-{root}``: the same note against the front contract, DV01-neutral on the
    period's first day (contracts then held constant, rolled)."""
    from xmargin.market.snapshot import load_snapshot
    from xmargin.masterdata import load_master
    from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
    from xmargin.validation import instrument_on, live_contracts

    months = 12 * tenor_years
    accounts = [Account(f"PAR{tenor_years}Y", "SYNTHETIC")]
    if hedge_root:
        accounts.append(Account(f"PAR{tenor_years}Y-{hedge_root}", "SYNTHETIC"))

    def legs_for(start: date) -> list[Leg]:
        legs = [Leg(0, face, par_tenor_months=months)]
        if hedge_root:
            snap = load_snapshot(start, data_dir=data_dir, previous_business_day=True)
            fut = live_contracts(hedge_root, snap.as_of, horizon_days, 1)[0]
            note = instrument_on(legs[0], 0, snap, horizon_days)
            dv01, _ = sensitivities(InstrumentUniverse.of([note, fut]), snap, load_master(data_dir))  # type: ignore[list-item]
            legs += [Leg(1, face, par_tenor_months=months), Leg(1, -float(round(face * dv01[0] / dv01[1])), fut)]
        return legs

    return tuple(accounts), legs_for


def to_dict(results: Sequence[PeriodResult], accounts: Sequence[Account], options: ApcOptions) -> dict[str, Any]:
    return {
        "options": {k: v for k, v in options.__dict__.items() if k != "model_spec"},
        "variants": list(VARIANTS),
        "periods": [
            {"period": r.period, "from": str(r.dates[0]) if len(r.dates) else None,
             "to": str(r.dates[-1]) if len(r.dates) else None,
             "accounts": [{"account": a.account, "measures": r.measures(i)} for i, a in enumerate(accounts)]}
            for r in results
        ],
    }
