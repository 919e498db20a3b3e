"""Residual risk factors: what moves beyond the one Treasury par curve, on the same windows.

Every curve scenario replays the change between two history dates (``window_start``,
``window_end``); each residual factor's change is taken between the **same two dates**, so
the joint history of curve and residuals is kept (a March 2020 curve move comes with the
March 2020 basis move).  Factors (each switchable in ``[residual]`` of the margin TOML):

* ``basis:<root>`` (points per 100 face), Treasury futures basis: actual front-contract price
  minus the model fair value of the same contract, changed over the window with the contract held
  at its start (:mod:`xmargin.scenarios.futures_basis`, which also says how continuous series'
  delivery months are read).  A root without price history takes the nearest root's basis
  scaled by the ratio of CTD durations, and the context's notes say so.  Deferred contracts
  take their root's front-contract basis.
* ``sofr_treasury`` (percent): SOFR minus the 1-month Treasury par yield, smoothed over the
  last ``spread_smoothing_days`` business days (**choice**, 5: a one-day month-end spike of
  the overnight rate does not move a 1- or 3-month futures rate one for one), less the part
  of its window change explained by the window's own change of the 1-month yield (OLS slope
  over the set's windows): the 1-month bill prices policy moves that SOFR has not made yet,
  and the futures price them too (through the curve), so that part is no basis.  Before SOFR
  (2018-04-03) and in windows that start before it, the **proxy** is the same spread of the
  effective fed funds rate.  Moves SR1, SR3 and ZQ (the engine projects both overnight rates
  off the Treasury curve with a constant spread).
* ``sofr_effr`` (percent): SOFR minus EFFR, smoothed the same way; no proxy before SOFR
  (change 0).  Moves ZQ only: ``EFFR = SOFR - (SOFR - EFFR)``.

Instrument exposure (``loadings``, dollars per unit per factor unit): Treasury futures
``dollars_per_point`` on their basis; SOFR futures ``-w * dollars_per_point`` on
``sofr_treasury`` and fed funds futures the same plus ``+w * dollars_per_point`` on
``sofr_effr``, ``w`` the share of the reference period still to be projected at the as-of
date.  Cash and repo: none.  The residual P&L ``loadings @ changes`` is added to the curve
P&L of each scenario.  Not modelled: the basis of deferred contracts beyond the front,
delivery-month and repo specialness effects beyond what the front price shows.

Filtered mode: in a ``filtered`` scenario set each residual factor's look-back changes are
rescaled by the factor's own EWMA volatility, today's over the window end's
(:mod:`xmargin.scenarios.residual_filter`; ``[residual] filtered``, ``decay``, ``max_scale``), today's
volatility floored at ``vol_floor`` times the factor's root-mean-square one-day change over the set's
look-back (:func:`long_run_volatility`) and the multiplier at ``min_scale`` (docs/methodology.md 15.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xmargin.market.futures_history import (
    FuturesHistory,
    default_futures_path,
    load_futures_history,
)
from xmargin.market.history import TENORS, ParYieldHistory, RateHistory
from xmargin.market.snapshot import MarketSnapshot
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.futures_basis import (  # re-exported: the basis factor's one home is futures_basis
    DELIVERY_BASIS_LIMIT,
    EWMA_WARMUP_YEARS,
    PROXY_DURATION,
    WindowRows,
    _cached_basis_volatility,
    basis_change_series,
    basis_changes,
    basis_volatility,
    cached_daily_basis_changes,
    chained_basis_changes,
    daily_basis_changes,
    delivery_month_changes,
    ewma_start_year,
    fair_value_on,
    proxy_root,
    window_basis_changes,
    window_rows,
)
from xmargin.scenarios.residual_filter import (
    ResidualFilter,
    observed_ewma_volatility,
    residual_scales,
)

__all__ = ["DELIVERY_BASIS_LIMIT", "EWMA_WARMUP_YEARS", "PROXY_DURATION", "ResidualParams", "ResidualRisk",
           "SOFR_EFFR", "SOFR_TREASURY", "basis_change_series", "basis_changes", "basis_volatility",
           "daily_basis_changes", "delivery_month_changes", "ewma_start_year", "fair_value_on", "futures_history_for",
           "gather_residual", "proxy_root", "residual_risk", "spread_levels", "window_basis_changes"]

FloatArray = npt.NDArray[np.float64]
DateArray = npt.NDArray[np.datetime64]

SOFR_TREASURY, SOFR_EFFR = "sofr_treasury", "sofr_effr"


@dataclass(frozen=True)
class ResidualParams:
    """``[residual]`` of the margin TOML: which residual factors the scenarios carry."""

    futures_basis: bool = True
    sofr_effr: bool = True
    sofr_treasury: bool = True
    spread_smoothing_days: int = 5
    #: futures price file or directory; "" reads ``<data dir>/futures`` when present
    futures_history: str = ""
    #: FHS of the residual changes in ``filtered`` scenario sets (:mod:`.residual_filter`);
    #: **choice**: on, with the curve's default decay and cap (docs/methodology.md 15.1)
    filtered: bool = True
    decay: float = 0.97
    max_scale: float = 5.0
    #: the basis volatility also reads the expiring contract in its delivery month (continuous
    #: series), where the March 2020 dislocation is in the shared data (**choice**, 15.1)
    delivery_month_volatility: bool = True
    #: windows without the front contract's prices (a continuous series' delivery months, about a
    #: quarter of a look-back) take the expiring contract's basis change there (proxy,
    #: :mod:`.futures_basis`) instead of none (**choice**, docs/methodology.md 15.2)
    delivery_month_changes: bool = True
    #: basis tools of the filtered residual changes (docs/methodology.md 15.2; 0: off): today's
    #: volatility is at least ``vol_floor`` times the factor's long-run volatility (root mean square
    #: of its one-day changes over the set's look-back; in [0, 1]; **choice**: 1, a calm day does
    #: not replay the decade's basis moves below their typical size), and the FHS scale is at
    #: least ``min_scale`` (in [0, 1]; 1: a change is never scaled down; off)
    vol_floor: float = 1.0
    min_scale: float = 0.0
    #: windows that no contract spans (a continuous series' roll inside the window, about 5% of a
    #: look-back), still without a change after the delivery-month proxy, take the sum of their
    #: observed one-day basis changes instead of none (:func:`.futures_basis.chained_basis_changes`;
    #: **choice**, on since session 6: a missing change replayed as none is a defect,
    #: docs/methodology.md 15.2)
    roll_window_changes: bool = True
    #: which EWMA estimate devolatilises a filtered window change: ``"start"`` (before the window's
    #: moves, the curve's rule since issue 11's review, docs/methodology.md 4.1; **choice**, the
    #: default since session 6, measured in 15.1) or ``"end"`` (after them, the former rule)
    vol_date: str = "start"

    @property
    def any(self) -> bool:
        return self.futures_basis or self.sofr_effr or self.sofr_treasury


@dataclass(frozen=True, eq=False)
class ResidualRisk:
    """Residual factor exposures of a universe and their changes in two scenario sets."""

    factors: tuple[str, ...]
    loadings: FloatArray  # N x F, dollars per unit per factor unit
    ficc_changes: FloatArray  # F x S_ficc
    cme_changes: FloatArray  # F x S_cme
    notes: tuple[str, ...] = field(default=())
    coverage: dict[str, float] = field(default_factory=dict)  # factor -> share of windows observed

    def pnl(self, changes: FloatArray) -> FloatArray:
        """``N x S`` residual P&L, dollars per unit."""
        return self.loadings @ changes

    def stacked(self, other: ResidualRisk) -> ResidualRisk:
        """This universe's rows followed by ``other``'s (same scenario windows; the factors are
        the union of both, a factor's changes being the same whichever side computed them)."""
        factors = tuple(sorted({*self.factors, *other.factors}))
        loadings = np.zeros((self.loadings.shape[0] + other.loadings.shape[0], len(factors)))
        ficc = np.zeros((len(factors), self.ficc_changes.shape[1]))
        cme = np.zeros((len(factors), self.cme_changes.shape[1]))
        for side, rows in ((self, slice(0, self.loadings.shape[0])), (other, slice(self.loadings.shape[0], None))):
            for f, name in enumerate(side.factors):
                k = factors.index(name)
                loadings[rows, k] = side.loadings[:, f]
                ficc[k], cme[k] = side.ficc_changes[f], side.cme_changes[f]
        return ResidualRisk(factors, loadings, ficc, cme, tuple(dict.fromkeys([*self.notes, *other.notes])),
                            {**other.coverage, **self.coverage})

    def take(self, rows: npt.NDArray[np.int64] | list[int]) -> ResidualRisk:
        """The same factors over the universe rows ``rows`` (in that order)."""
        return replace(self, loadings=self.loadings[np.asarray(rows, dtype=np.int64)])


def gather_residual(parts: list[tuple[ResidualRisk, int]]) -> ResidualRisk:
    """Row ``k`` is row ``parts[k][1]`` of ``parts[k][0]``: the union of the sources' factors
    (a factor's changes are the same whichever source computed them, as in :meth:`ResidualRisk.stacked`)."""
    sources = list({id(r): r for r, _ in parts}.values())
    merged = sources[0].take([])
    for other in sources[1:]:
        merged = merged.stacked(other.take([]))
    loadings = np.zeros((len(parts), len(merged.factors)))
    for k, (r, i) in enumerate(parts):
        for f, name in enumerate(r.factors):
            loadings[k, merged.factors.index(name)] = r.loadings[i, f]
    return replace(merged, loadings=loadings)


def futures_history_for(data_dir: Path, params: ResidualParams) -> FuturesHistory | None:
    path = default_futures_path(data_dir, params.futures_history or None)
    return None if path is None else load_futures_history(path)


# ---------------------------------------------------------------- overnight spreads


def _trailing_mean(x: FloatArray, m: int) -> FloatArray:
    """Mean of the last ``m`` values (NaN until ``m`` finite values are in the window)."""
    if m <= 1:
        return x.copy()
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(x))])
    n = np.concatenate([[0], np.cumsum(np.isfinite(x))])
    out = np.full(len(x), np.nan)
    s = (c[m:] - c[:-m])
    k = (n[m:] - n[:-m])
    out[m - 1:] = np.where(k == m, s / np.maximum(k, 1), np.nan)
    return out


def _on_days(series: RateHistory | None, days: DateArray) -> FloatArray:
    if series is None:
        return np.full(len(days), np.nan)
    i = np.searchsorted(series.dates, days, side="right") - 1
    out = np.where(i >= 0, series.rates_pct[np.clip(i, 0, None)], np.nan)
    out[days < series.dates[0]] = np.nan
    return out


@lru_cache(maxsize=8)
def spread_levels(history: ParYieldHistory, sofr: RateHistory | None, effr: RateHistory | None,
                  smoothing: int) -> dict[str, FloatArray]:
    """Smoothed spread levels on every history row, percent: ``sofr_treasury`` (SOFR),
    ``sofr_treasury_proxy`` (EFFR) and ``sofr_effr``."""
    from xmargin.scenarios.historical import filled_history

    bill = filled_history(history)[:, TENORS.index("1M")]
    s = _on_days(sofr, history.dates)
    e = _on_days(effr, history.dates)
    return {"bill": bill,
            SOFR_TREASURY: _trailing_mean(s - bill, smoothing),
            SOFR_TREASURY + "_proxy": _trailing_mean(e - bill, smoothing),
            SOFR_EFFR: _trailing_mean(s - e, smoothing)}


def spread_changes(levels: dict[str, FloatArray], history: ParYieldHistory, name: str,
                   start: DateArray, end: DateArray) -> tuple[FloatArray, int]:
    """``(changes, windows using the proxy)`` of spread ``name`` (NaN: unobserved)."""
    i = np.searchsorted(history.dates, start)
    j = np.searchsorted(history.dates, end)
    ok = (i < len(history.dates)) & (j < len(history.dates))
    i, j = np.clip(i, 0, len(history.dates) - 1), np.clip(j, 0, len(history.dates) - 1)
    lv = levels[name]
    out = np.where(ok, lv[j] - lv[i], np.nan)
    used_proxy = 0
    if name == SOFR_TREASURY:
        px = levels[name + "_proxy"]
        missing = ~np.isfinite(out) & ok
        out[missing] = px[j[missing]] - px[i[missing]]
        used_proxy = int((missing & np.isfinite(out)).sum())
        # keep only the part the curve's own 1-month move does not explain (OLS over the windows)
        bill = levels["bill"]
        move = np.where(ok, bill[j] - bill[i], np.nan)
        seen = np.isfinite(out) & np.isfinite(move)
        if seen.sum() > 2 and np.var(move[seen]) > 0:
            beta = float(np.cov(out[seen], move[seen])[0, 1] / np.var(move[seen], ddof=1))
            out = out - beta * np.nan_to_num(move)
    return out, used_proxy


@lru_cache(maxsize=16)
def daily_spread_changes(history: ParYieldHistory, sofr: RateHistory | None, effr: RateHistory | None,
                         smoothing: int, name: str) -> FloatArray:
    """One-day change of spread ``name`` on every history row (NaN: unobserved), percent."""
    levels = spread_levels(history, sofr, effr, smoothing)
    d = history.dates
    out = np.full(len(d), np.nan)
    out[1:] = spread_changes(levels, history, name, d[:-1], d[1:])[0]
    return out


@lru_cache(maxsize=16)
def spread_volatility(history: ParYieldHistory, sofr: RateHistory | None, effr: RateHistory | None,
                      smoothing: int, name: str, decay: float) -> FloatArray:
    """EWMA volatility of the one-day changes of spread ``name`` after every history row, percent."""
    return observed_ewma_volatility(daily_spread_changes(history, sofr, effr, smoothing, name), decay)


def long_run_volatility(daily: FloatArray, history_dates: DateArray, starts: DateArray, as_of: date) -> float:
    """Root mean square of the observed one-day changes ``daily`` (on the history rows) from the
    earliest of ``starts`` to ``as_of``: a factor's volatility over a set's look-back (NaN: none)."""
    if not len(starts):
        return float("nan")
    lo = int(np.searchsorted(history_dates, np.min(starts).astype("datetime64[D]")))
    hi = int(np.searchsorted(history_dates, np.datetime64(as_of, "D"), side="right"))
    x = daily[lo:hi]
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x * x))) if len(x) else float("nan")


# ---------------------------------------------------------------- exposures


def projected_share(contract: RateFuture, as_of: date) -> float:
    """Share of the reference period still to be projected at ``as_of`` (0 once fixed)."""
    start, end = contract.reference_start, contract.reference_end
    p = min(max(start, as_of), end)
    return (end - p).days / max((end - start).days, 1)


def residual_risk(
    universe_instruments: Sequence[Instrument],
    snapshot: MarketSnapshot,
    master: SecuritiesMaster,
    history: ParYieldHistory,
    params: ResidualParams,
    windows: Sequence[tuple[DateArray, DateArray]],
    filters: Sequence[ResidualFilter | None] | None = None,
) -> ResidualRisk:
    """Exposures of the instruments and factor changes over each ``(start, end)`` window set;
    ``filters[k]`` (when given and not ``None``) rescales window set ``k``'s changes by each
    factor's own EWMA volatility (:mod:`xmargin.scenarios.residual_filter`)."""
    notes: list[str] = []
    insts = list(universe_instruments)
    roots = sorted({i.root for i in insts if isinstance(i, TreasuryFuture)})
    rates = [i for i in insts if isinstance(i, RateFuture)]
    factor_rows: dict[str, list[tuple[int, float]]] = {}
    history_f: FuturesHistory | None = None
    if params.futures_basis and roots:
        history_f = futures_history_for(snapshot.data_dir, params)
        if history_f is not None:
            notes += list(history_f.warnings)
        if history_f is None:
            notes.append("futures basis: no futures price history (<data dir>/futures or --futures-history); "
                         f"the basis of {', '.join(roots)} is not in the scenarios")
        else:
            have = [r for r in TREASURY_FUTURES if r in history_f.roots]
            for k, inst in enumerate(insts):
                if not isinstance(inst, TreasuryFuture):
                    continue
                if inst.root in have:
                    factor_rows.setdefault(f"basis:{inst.root}", []).append((k, inst.dollars_per_point))
                    continue
                proxy = proxy_root(inst.root, have)
                if proxy is None:
                    notes.append(f"futures basis: no price history of any Treasury root; {inst.root} has no basis")
                    continue
                scale = PROXY_DURATION.get(inst.root, 6.3) / PROXY_DURATION[proxy]
                factor_rows.setdefault(f"basis:{proxy}", []).append((k, inst.dollars_per_point * scale))
                notes.append(f"futures basis: {inst.root} has no price history; it takes the {proxy} basis "
                             f"scaled by {scale:.2f} (ratio of CTD durations)")
    elif not params.futures_basis and roots:
        notes.append("futures basis: switched off ([residual] futures_basis = false)")
    if rates:
        notes.append(f"rate futures basis: not in the scenarios ({', '.join(sorted({i.root for i in rates}))}): the "
                     "futures price's own basis to the projected rate (term premium, convexity) needs a futures price "
                     "history of the contracts (SR3 from 2018-05; Eurodollar prices carry LIBOR credit, no proxy)")
        missing = [n for n, s in (("SOFR", snapshot.sofr), ("EFFR", snapshot.fedfunds)) if s is None]
        if missing:
            notes.append(f"overnight spreads: no {' or '.join(missing)} fixings in the data directory; "
                         "the spreads that need them are not in the scenarios")
        for k, inst in enumerate(insts):
            if not isinstance(inst, RateFuture):
                continue
            w = projected_share(inst, snapshot.as_of) * inst.dollars_per_point
            if params.sofr_treasury:
                factor_rows.setdefault(SOFR_TREASURY, []).append((k, -w))
            if params.sofr_effr and inst.series == "fedfunds":
                factor_rows.setdefault(SOFR_EFFR, []).append((k, w))
        for name, flag in ((SOFR_TREASURY, params.sofr_treasury), (SOFR_EFFR, params.sofr_effr)):
            if not flag:
                notes.append(f"{name}: switched off ([residual] {name} = false)")
    factors = tuple(sorted(factor_rows))
    loadings = np.zeros((len(insts), len(factors)))
    for f, name in enumerate(factors):
        for k, x in factor_rows[name]:
            loadings[k, f] = x
    levels = (spread_levels(history, snapshot.sofr, snapshot.fedfunds, params.spread_smoothing_days)
              if any(f in (SOFR_TREASURY, SOFR_EFFR) for f in factors) else {})
    changes: list[FloatArray] = []
    coverage: dict[str, float] = {}
    for k, (start, end) in enumerate(windows):
        flt = filters[k] if filters is not None and k < len(filters) else None
        ch = np.zeros((len(factors), len(start)))
        at: WindowRows | None | bool = False  # not looked up yet
        for f, name in enumerate(factors):
            if name.startswith("basis:"):
                assert history_f is not None
                rp = history_f.roots[name[6:]]
                if at is False:
                    at = window_rows(history, start, end)  # once for every basis factor of the set
                x = basis_changes(rp, history, master, start, end, at)
                if params.delivery_month_changes and rp.continuous:
                    miss = np.flatnonzero(~np.isfinite(x))
                    proxy = np.full(len(x), np.nan)
                    proxy[miss] = delivery_month_changes(rp, history, master, start[miss], end[miss],
                                                         None if at is None else (at[0][miss], at[1][miss]))
                    use = np.isfinite(proxy)
                    x = np.where(use, proxy, x)
                    if use.any() and not changes:
                        notes.append(f"{name}: {int(use.sum())} of {len(start)} windows without the front contract "
                                     "take the expiring contract's delivery-month basis change (proxy)")
                if params.roll_window_changes and rp.continuous and isinstance(at, tuple):
                    miss = np.flatnonzero(~np.isfinite(x))
                    daily = cached_daily_basis_changes(rp, history, master, snapshot.data_dir,
                                                       params.delivery_month_volatility, ewma_start_year(end))
                    x = x.copy()
                    x[miss] = chained_basis_changes(daily, at[0][miss], at[1][miss])
                    if len(miss) and not changes:
                        notes.append(f"{name}: {int(np.isfinite(x[miss]).sum())} of {len(start)} windows that no "
                                     "contract spans take the sum of their observed one-day basis changes (proxy)")
            else:
                x, proxied = spread_changes(levels, history, name, start, end)
                if proxied and not changes:
                    notes.append(f"{name}: {proxied} of {len(start)} windows use the EFFR proxy (before SOFR)")
            seen = np.isfinite(x)
            if not changes:
                coverage[name] = float(seen.mean()) if len(x) else 0.0
            ch[f] = np.where(seen, x, 0.0)
            if flt is not None:
                basis = name.startswith("basis:")
                vol = (_cached_basis_volatility(history_f.roots[name[6:]], history, master, snapshot.data_dir,  # type: ignore[union-attr]
                                                flt.decay, params.delivery_month_volatility, ewma_start_year(end))
                       if basis else
                       spread_volatility(history, snapshot.sofr, snapshot.fedfunds, params.spread_smoothing_days,
                                         name, flt.decay))
                long_run = float("nan")
                if flt.vol_floor > 0.0:
                    daily = (cached_daily_basis_changes(history_f.roots[name[6:]], history, master,  # type: ignore[union-attr]
                                                        snapshot.data_dir, params.delivery_month_volatility,
                                                        ewma_start_year(end)) if basis else
                             daily_spread_changes(history, snapshot.sofr, snapshot.fedfunds,
                                                  params.spread_smoothing_days, name))
                    long_run = long_run_volatility(daily, history.dates, start[flt.rescale], flt.as_of)
                ch[f] *= residual_scales(vol, history.dates, start if flt.vol_date == "start" else end, flt, long_run)
        changes.append(ch)
    for name, share in coverage.items():
        if share < 1.0:
            notes.append(f"{name}: observed in {share:.0%} of the look-back windows; the others carry no change")
    ficc = changes[0] if changes else np.zeros((len(factors), 0))
    cme = changes[1] if len(changes) > 1 else ficc
    return ResidualRisk(factors, loadings, ficc, cme, tuple(dict.fromkeys(notes)), coverage)
