"""Historical-simulation scenarios from the real par yield history.

A scenario is the ``h``-business-day change of the par curve observed in history, applied to
the as-of curve.  For every business day ``d`` in the look-back window (ending on the as-of
date) the change ``Y[d + h] - Y[d]`` is one scenario (overlapping windows).  Shift types:

* ``absolute`` (default): ``y_scenario = y_as_of + (Y[d + h] - Y[d])``;
* ``relative``: ``y_scenario = (y_as_of + c) * (Y[d + h] + c) / (Y[d] + c) - c``, a displaced
  relative change; the displacement ``c`` (default 1 percentage point) keeps the ratio
  finite in the zero-rate years (2009-2015, 2020-2021).  Our choice, configurable.

Tenors Treasury did not publish on a past day (1M before 2001, 2M before 2018, 4M before
2022-10, 20Y in 1990-93, 30Y in 2002-06) are filled by linear interpolation in maturity
(flat beyond the ends) so every window has a change at every node of the as-of curve.

Stressed period: the most severe one-year window (``stress_window_days`` business days)
anywhere in the history, by the mean squared ``h``-day change across tenors, unless the user
names a period (``"2020-03"``, ``"2008"`` or ``"2008-09-01:2009-03-31"``).  Its scenarios are
appended and flagged; the VaR models take the larger of the VaR without and with them, so
the stress is used only when it raises the margin.  Every scenario keeps the dates of its
window, so any figure can be traced to the days that drove it.

Scenario mode (``ScenarioSpec.mode``): ``historical`` (plain historical simulation, as above)
or ``filtered`` (filtered historical simulation: each look-back change rescaled per tenor by
today's EWMA volatility over the volatility at the end of its own window,
:mod:`xmargin.scenarios.filtered`).  Stressed scenarios are never rescaled.  With
``floor = true`` in the filtered mode the unscaled look-back scenarios are appended too
(flagged ``is_floor``), so the VaR can be floored at the unscaled VaR (EMIR RTS 153/2013
art. 28(1)(c)); ``buffer`` and ``stress_weight`` are read by the VaR
(:func:`xmargin.margin.var.model_var`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from xmargin.errors import InputError
from xmargin.market.curve import ZeroCurves
from xmargin.market.history import TENOR_MONTHS, TENORS, ParYieldHistory
from xmargin.market.snapshot import MarketSnapshot
from xmargin.scenarios.filtered import (
    CORRELATION_FLOOR,
    SEED_DAYS,
    VOL_FLOOR,
    apply_scales,
    correlation_roots,
    decorrelated,
    ewma_correlation,
    ewma_volatility,
    filter_scales,
    recorrelated,
)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScenarioSpec:
    """How to build a historical scenario set (all choices documented in the module)."""

    horizon_days: int = 3
    lookback_years: float = 10.0
    shift: str = "absolute"  # or "relative"
    relative_displacement_pct: float = 1.0
    stress: str = "auto"  # "auto", "none", "YYYY", "YYYY-MM" or "YYYY-MM-DD:YYYY-MM-DD"
    stress_window_days: int = 250
    #: ``"historical"`` (plain) or ``"filtered"`` (FHS, :mod:`xmargin.scenarios.filtered`).
    mode: str = "historical"
    decay: float = 0.97  # EWMA decay of the FHS volatility (module filtered; docs/methodology.md 4.1)
    max_scale: float = 5.0  # cap on the FHS volatility ratio (choice)
    #: Which EWMA estimate devolatilises a look-back change (module :mod:`.filtered`): ``"start"``
    #: the estimate at the window's start, made before its moves (Hull and White 1998), ``"end"``
    #: the estimate after them (the rule before issue 11's review; docs/methodology.md 4.1).
    vol_date: str = "start"
    #: ``True``: filter the correlation between tenors too (:func:`.filtered.correlation_filtered`),
    #: not only each tenor's volatility (``False``: per-tenor FHS).
    correlation: bool = True
    #: Eigenvalue floor of the correlation matrices (:data:`.filtered.CORRELATION_FLOOR`, choice).
    correlation_floor: float = CORRELATION_FLOOR
    #: Anti-procyclicality tools, EMIR RTS 153/2013 article 28(1)(a)-(c):
    buffer: float = 0.0  # (a) margin buffer as a fraction of the VaR (0.25 = 25%)
    stress_weight: float = 0.0  # (b) weight of the stressed scenarios (0: max(VaR, VaR with stress))
    floor: bool = False  # (c) floor at the unscaled look-back VaR (filtered mode)

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise InputError("horizon must be at least one business day", field="horizon_days")
        if self.lookback_years <= 0:
            raise InputError("look-back must be positive", field="lookback_years")
        if self.lookback_years * 252 <= self.horizon_days:
            raise InputError(f"look-back of {self.lookback_years} years is shorter than the {self.horizon_days}-day "
                             "horizon", field="lookback_years")
        if self.stress_window_days < self.horizon_days:
            raise InputError(f"stress window of {self.stress_window_days} days is shorter than the "
                             f"{self.horizon_days}-day horizon", field="stress_window_days")
        if self.shift not in ("absolute", "relative"):
            raise InputError(f"shift type '{self.shift}' is not 'absolute' or 'relative'", field="shift")
        if self.mode not in ("historical", "filtered"):
            raise InputError(f"scenario mode '{self.mode}' is not 'historical' or 'filtered'", field="mode")
        if not 0.0 < self.decay < 1.0:
            raise InputError(f"decay {self.decay} is outside (0, 1)", field="decay")
        if self.vol_date not in ("start", "end"):
            raise InputError(f"vol_date '{self.vol_date}' is not 'start' or 'end'", field="vol_date")
        if not 0.0 < self.correlation_floor <= 1.0:
            raise InputError(f"correlation_floor {self.correlation_floor} is outside (0, 1]", field="correlation_floor")
        if not self.max_scale >= 1.0:
            raise InputError(f"max_scale {self.max_scale} is below 1", field="max_scale")
        if not 0.0 <= self.buffer <= 1.0:
            raise InputError(f"buffer {self.buffer} is outside [0, 1]", field="buffer")
        if not 0.0 <= self.stress_weight < 1.0:
            raise InputError(f"stress_weight {self.stress_weight} is outside [0, 1)", field="stress_weight")


@dataclass(frozen=True)
class ScenarioSet:
    """``S`` par-curve scenarios for one as-of date.

    ``par_yields[s]`` is the scenario par curve (decimal, at ``tenors``); ``window_start[s]``
    and ``window_end[s]`` the history dates whose change it replays; ``is_stress[s]`` flags
    the appended stressed period.  ``curves`` are the bootstrapped scenario curves.
    """

    as_of: date
    spec: ScenarioSpec
    tenors: tuple[str, ...]
    par_yields: FloatArray
    window_start: npt.NDArray[np.datetime64]
    window_end: npt.NDArray[np.datetime64]
    is_stress: npt.NDArray[np.bool_]
    stress_period: tuple[date, date] | None
    curves: ZeroCurves = field(repr=False)
    #: unscaled look-back copies appended for the VaR floor (filtered mode with ``floor``)
    is_floor: npt.NDArray[np.bool_] | None = None

    @property
    def size(self) -> int:
        return int(self.par_yields.shape[0])

    @property
    def floor_mask(self) -> npt.NDArray[np.bool_]:
        return np.zeros(self.size, bool) if self.is_floor is None else self.is_floor

    def label(self, s: int) -> str:
        """``"2020-03-09..2020-03-12"`` (``(stress)`` appended for stressed scenarios)."""
        text = f"{self.window_start[s]}..{self.window_end[s]}"
        if self.floor_mask[s]:
            return text + " (unscaled)"
        return text + " (stress)" if self.is_stress[s] else text


@lru_cache(maxsize=4)
def filled_history(history: ParYieldHistory) -> FloatArray:
    """The history on all 13 tenors, gaps filled by linear interpolation in maturity."""
    months = np.array(TENOR_MONTHS, dtype=float)
    out = history.yields_pct.copy()
    gaps = np.flatnonzero(np.isnan(out).any(axis=1))
    for i in gaps:
        ok = ~np.isnan(out[i])
        out[i, ~ok] = np.interp(months[~ok], months[ok], out[i, ok])
    return out


_PERIOD_RE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def named_period(text: str) -> tuple[date, date]:
    if ":" in text:
        a, b = text.split(":", 1)
        try:
            lo, hi = date.fromisoformat(a), date.fromisoformat(b)
        except ValueError:
            pass
        else:
            if lo <= hi:
                return lo, hi
    else:
        m = _PERIOD_RE.match(text)
        if m:
            year = int(m[1])
            if m[2] is None:
                return date(year, 1, 1), date(year, 12, 31)
            month = int(m[2])
            if not 1 <= month <= 12:
                raise InputError(f"stress period '{text}': month {month} is not 01..12", field="stress")
            nxt = date(year + (month == 12), month % 12 + 1, 1)
            return date(year, month, 1), nxt - timedelta(days=1)
    raise InputError(
        f"stress period '{text}' is not 'auto', 'none', YYYY, YYYY-MM or YYYY-MM-DD:YYYY-MM-DD", field="stress"
    )


def most_severe_window(history: ParYieldHistory, horizon_days: int, window_days: int,
                       until: date) -> tuple[int, int]:
    """Row range ``[i, j)`` of window start days with the largest mean squared change, among the
    windows whose changes end by ``until`` (the first such window on a tie)."""
    last = int(np.searchsorted(history.dates, np.datetime64(until, "D"), side="right"))
    n_scores = max(last - horizon_days, 0)
    if n_scores <= window_days:
        return 0, n_scores
    start = int(_severest_so_far(history, horizon_days, window_days)[n_scores - window_days])
    return start, start + window_days


@lru_cache(maxsize=8)
def _severest_so_far(history: ParYieldHistory, horizon_days: int, window_days: int) -> npt.NDArray[np.int64]:
    """``best[k]``: the start row of the most severe window among the window starts ``0..k`` (the
    first on a tie), over the whole history once: a backtest's days look up their own prefix (the
    rolling sums of a prefix are the whole history's first sums, cumulated in the same order)."""
    y = filled_history(history)
    change = y[horizon_days:] - y[: len(y) - horizon_days]
    score = (change**2).sum(axis=1)
    csum = np.concatenate([[0.0], np.cumsum(score)])
    rolling = csum[window_days:] - csum[:-window_days]
    record = np.r_[True, rolling[1:] > np.maximum.accumulate(rolling)[:-1]]  # a strictly larger window
    best = np.maximum.accumulate(np.where(record, np.arange(len(rolling)), 0))
    nan = np.flatnonzero(np.isnan(rolling))
    if len(nan):  # np.argmax's rule: the first NaN wins
        best[nan[0]:] = nan[0]
    return best


@lru_cache(maxsize=8)
def factor_volatility(history: ParYieldHistory, spec_decay: float, relative: bool, displacement: float) -> FloatArray:
    """EWMA volatility of every tenor after every history row (see :mod:`.filtered`)."""
    return ewma_volatility(filled_history(history), spec_decay, relative=relative, displacement=displacement)


@lru_cache(maxsize=4)
def factor_correlation_roots(history: ParYieldHistory, spec_decay: float, relative: bool, displacement: float,
                             cols: tuple[int, ...], floor: float = CORRELATION_FLOOR) -> tuple[FloatArray, FloatArray]:
    """``(C^(1/2), C^(-1/2))`` of the EWMA correlation of the tenors ``cols`` after every history
    row (row 0: the seed), aligned with :func:`factor_volatility`.  ``displacement`` in percent."""
    y = filled_history(history)[:, list(cols)]
    daily = np.log((y[1:] + displacement) / (y[:-1] + displacement)) if relative else y[1:] - y[:-1]
    corr = ewma_correlation(daily, spec_decay)
    seed = (daily[:SEED_DAYS, :, None] * daily[:SEED_DAYS, None, :]).mean(axis=0)
    sd = np.sqrt(np.maximum(np.diag(seed), VOL_FLOOR ** 2))
    return correlation_roots(np.concatenate([(seed / np.outer(sd, sd))[None], corr]), floor)


@lru_cache(maxsize=8)
def decorrelated_windows(history: ParYieldHistory, spec_decay: float, relative: bool, displacement: float,
                         cols: tuple[int, ...], h: int, vol_date: str, floor: float = CORRELATION_FLOOR) -> FloatArray:
    """``T x F``: the ``h``-day change of the tenors ``cols`` from every history row, standardised
    and decorrelated on its volatility row (:func:`.filtered.decorrelated`); NaN where no window
    fits.  Independent of the as-of date, so a backtest's days share it."""
    y = filled_history(history)[:, list(cols)]
    n = len(y) - h
    change = np.log((y[h:] + displacement) / (y[:n] + displacement)) if relative else y[h:] - y[:n]
    vrows = np.arange(n) + (0 if vol_date == "start" else h)
    vol = factor_volatility(history, spec_decay, relative, displacement)[:, list(cols)]
    _, inv = factor_correlation_roots(history, spec_decay, relative, displacement, cols, floor)
    out = np.full(y.shape, np.nan)
    for lo in range(0, n, 2048):  # blocks: the S x F x F gather stays small
        r = vrows[lo:lo + 2048]
        out[lo:lo + len(r)] = decorrelated(change[lo:lo + len(r)], vol[r], inv[r])
    return out


@dataclass(frozen=True)
class ScenarioRows:
    """The par curves of a scenario set before bootstrapping (see :func:`scenario_par`)."""

    par: FloatArray  # S x n, decimal
    rows: npt.NDArray[np.int64]  # S: history row of each window's start
    is_stress: npt.NDArray[np.bool_]
    is_floor: npt.NDArray[np.bool_]
    stress_period: tuple[date, date] | None


def _stress_rows(history: ParYieldHistory, spec: ScenarioSpec, as_of: date, end_row: int) -> npt.NDArray[np.int64]:
    h = spec.horizon_days
    if spec.stress == "none":
        return np.array([], dtype=np.int64)
    if spec.stress == "auto":
        i, j = most_severe_window(history, h, spec.stress_window_days, as_of)
        return np.arange(i, min(j, end_row - h))
    lo, hi = named_period(spec.stress)
    i = int(np.searchsorted(history.dates, np.datetime64(lo, "D"), side="left"))
    j = int(np.searchsorted(history.dates, np.datetime64(hi, "D"), side="right"))
    rows = np.arange(i, min(j, end_row - h))
    if len(rows) == 0:
        raise InputError(f"stress period '{spec.stress}' has no history before {as_of}", field="stress")
    return rows


def scenario_par(history: ParYieldHistory, snapshot: MarketSnapshot, spec: ScenarioSpec) -> ScenarioRows:
    """The scenario par curves of ``snapshot.as_of`` in order: look-back (filtered in the
    ``filtered`` mode), stressed period, then the unscaled look-back copies for the floor."""
    h = spec.horizon_days
    y = filled_history(history)
    cols = [TENORS.index(t) for t in snapshot.tenors]
    end_row = int(np.searchsorted(history.dates, np.datetime64(snapshot.as_of, "D"), side="right"))
    start_day = np.datetime64(snapshot.as_of, "D") - np.timedelta64(int(round(spec.lookback_years * 365.25)), "D")
    first_row = int(np.searchsorted(history.dates, start_day, side="left"))
    if end_row - first_row <= h:
        raise InputError(
            f"not enough history before {snapshot.as_of} for a {spec.lookback_years}-year look-back", field="as_of"
        )
    starts = np.arange(first_row, end_row - h)
    stress_rows = _stress_rows(history, spec, snapshot.as_of, end_row)
    filtered = spec.mode == "filtered"
    floor_rows = starts if filtered and spec.floor else np.array([], dtype=np.int64)
    rows = np.concatenate([starts, stress_rows, floor_rows])
    before = y[rows][:, cols] / 100.0
    after = y[rows + h][:, cols] / 100.0
    base = snapshot.par_yields[None, :]
    relative = spec.shift == "relative"
    c = spec.relative_displacement_pct / 100.0
    if relative:
        par = (base + c) * (after + c) / (before + c) - c
    else:
        par = base + (after - before)
    if filtered:
        vol = factor_volatility(history, spec.decay, relative, spec.relative_displacement_pct)[:, cols]
        n = len(starts)
        vrows = starts if spec.vol_date == "start" else starts + h
        if spec.correlation:
            cp, key = spec.relative_displacement_pct, tuple(cols)
            fl = spec.correlation_floor
            root, _ = factor_correlation_roots(history, spec.decay, relative, cp, key, fl)
            w = decorrelated_windows(history, spec.decay, relative, cp, key, h, spec.vol_date, fl)[starts]
            # in the units of ``vol``: the displaced log ratio, or the change in percentage points
            x = recorrelated(w, vol[vrows], root[end_row - 1], vol[end_row - 1], spec.max_scale)
            par[:n] = (base + c) * np.exp(x) - c if relative else base + x / 100.0
        else:
            scales = filter_scales(vol, vrows, end_row - 1, spec.max_scale)
            par[:n] = apply_scales(before[:n], after[:n], base, scales, relative=relative, displacement=c)
    n_s, n_f = len(stress_rows), len(floor_rows)
    is_stress = np.r_[np.zeros(len(starts), bool), np.ones(n_s, bool), np.zeros(n_f, bool)]
    is_floor = np.r_[np.zeros(len(starts) + n_s, bool), np.ones(n_f, bool)]
    period = ((history.dates[stress_rows[0]].astype(date), history.dates[stress_rows[-1]].astype(date))
              if n_s else None)
    return ScenarioRows(par, rows, is_stress, is_floor, period)


def build_scenarios(history: ParYieldHistory, snapshot: MarketSnapshot, spec: ScenarioSpec) -> ScenarioSet:
    """The scenario set for ``snapshot.as_of`` (see the module docstring)."""
    built = scenario_par(history, snapshot, spec)
    rows, h = built.rows, spec.horizon_days
    return ScenarioSet(
        as_of=snapshot.as_of,
        spec=spec,
        tenors=snapshot.tenors,
        par_yields=built.par,
        window_start=history.dates[rows],
        window_end=history.dates[rows + h],
        is_stress=built.is_stress,
        stress_period=built.stress_period,
        curves=snapshot.curves_from_par(built.par),
        is_floor=built.is_floor,
    )
