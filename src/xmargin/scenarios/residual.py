"""Residual risk factors: what moves beyond the one Treasury par curve, on the same windows.

Every curve scenario replays the change between two history dates (``window_start``,
``window_end``); each residual factor's change is taken between the **same two dates**, so
the joint history of curve and residuals is kept (a March 2020 curve move comes with the
March 2020 basis move).  Factors (each switchable in ``[residual]`` of the margin TOML):

* ``basis:<root>`` (points per 100 face), Treasury futures basis: ``b_d = F_d - FV_d``, the
  actual front-contract price (:mod:`xmargin.market.futures_history`) minus the model fair
  value of the **same contract** on day ``d``; the change is ``b[end] - b[start]`` with the
  contract held at ``start`` on both dates (never across a roll; unobserved: 0).  The fair
  value here is the cheapest-to-deliver forward price over conversion factor, each
  deliverable's flows after the last delivery day ``T`` valued on day ``d`` at the day's par
  yield interpolated (linear in months) at its maturity (street convention, semi-annual) and
  carried to ``T`` at the par yield interpolated at ``T - d``: the engine's CTD pricing
  without a bootstrap per history day; the tests bound its daily changes against the full
  pricer.  A root without price history takes the basis of the root nearest by CTD
  duration, scaled by the ratio of durations (``PROXY_DURATION``, **choice**), and the
  context's notes say so.  Deferred contracts take their root's front-contract basis.
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
(:mod:`xmargin.scenarios.residual_filter`; ``[residual] filtered``, ``decay``, ``max_scale``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xmargin.diskcache import cached, files_key, market_files_key, master_files_key
from xmargin.market.futures_history import (
    FuturesHistory,
    RootPrices,
    default_futures_path,
    load_futures_history,
    make_contract,
)
from xmargin.market.history import TENOR_MONTHS, TENORS, ParYieldHistory, RateHistory
from xmargin.market.snapshot import MarketSnapshot
from xmargin.reference.cashflows import resolve
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture, deliverable_basket
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.residual_filter import (
    ResidualFilter,
    observed_ewma_volatility,
    residual_scales,
)

FloatArray = npt.NDArray[np.float64]
DateArray = npt.NDArray[np.datetime64]

#: Approximate modified duration of each root's cheapest to deliver (years), used only to
#: scale a proxy basis (**choice**: typical values 2015-2025).
PROXY_DURATION = {"ZT": 1.9, "Z3N": 2.8, "ZF": 4.1, "ZN": 6.3, "TN": 8.5, "TWE": 13.0, "ZB": 14.5, "UB": 19.0}
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


# ---------------------------------------------------------------- futures basis


def _par_at(par: FloatArray, months: FloatArray) -> FloatArray:
    """Par yields (rows of ``par``) interpolated linearly at ``months`` (rows x K), flat beyond."""
    grid = np.array(TENOR_MONTHS, dtype=float)
    pos = np.clip(np.searchsorted(grid, months) - 1, 0, len(grid) - 2)
    w = np.clip((months - grid[pos]) / (grid[pos + 1] - grid[pos]), 0.0, 1.0)
    rows = np.arange(par.shape[0]).reshape((-1,) + (1,) * (months.ndim - 1))
    return par[rows, pos] * (1 - w) + par[rows, pos + 1] * w  # type: ignore[no-any-return]


def _screen(coupon: FloatArray, maturity: DateArray, factors: FloatArray, delivery: np.datetime64,
            y: FloatArray, keep_within: float = 0.75) -> npt.NDArray[np.bool_]:
    """Deliverables that may be cheapest on some day: a closed-form (regular coupons) forward
    price over CF within ``keep_within`` points of the cheapest, on any day."""
    n = (maturity - delivery).astype(np.int64) / 182.625  # half-years after T
    v = 1.0 / (1.0 + y / 2.0)
    annuity = np.where(np.abs(y) > 1e-9, (1.0 - v ** n) / np.maximum(y / 2.0, 1e-12), n)
    price = 100.0 * (coupon / 2.0 * annuity + v ** n)
    ratio = price / factors
    return (ratio <= ratio.min(axis=1, keepdims=True) + keep_within).any(axis=0)  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _fair_values(root: str, key: int, history: ParYieldHistory, master: SecuritiesMaster) -> tuple[DateArray, FloatArray]:
    """Model fair value (points) of one contract on the history days it can be held."""
    contract = make_contract(root, key)
    assert isinstance(contract, TreasuryFuture)
    delivery = np.datetime64(contract.last_delivery_day, "D")
    lo = int(np.searchsorted(history.dates, np.datetime64(contract.first_delivery_day, "D") - np.timedelta64(110, "D")))
    hi = int(np.searchsorted(history.dates, delivery))
    days = history.dates[lo:hi]
    if not len(days):
        return days, np.zeros(0)
    basket = deliverable_basket(contract, master, days[-1].astype(date))
    if not basket:
        return days, np.full(len(days), np.nan)
    from xmargin.scenarios.historical import (
        filled_history,  # the same gap filling as the curve scenarios
    )

    par = filled_history(history)[lo:hi] / 100.0  # D x 13
    factors = np.array([d.conversion_factor for d in basket])
    maturity = np.array([np.datetime64(d.bond.maturity, "D") for d in basket])
    months = (maturity[None, :] - days[:, None]).astype(np.int64) / 30.4375  # D x K
    keep = _screen(np.array([d.bond.coupon for d in basket]), maturity, factors, delivery, _par_at(par, months))
    basket = [d for d, k in zip(basket, keep, strict=True) if k]
    factors, maturity, months = factors[keep], maturity[keep], months[:, keep]
    bonds = [d.bond for d in basket]
    issued = np.array([np.datetime64(b.original_issue or date.min, "D") for b in bonds])
    cf = resolve(bonds, contract.last_delivery_day)
    amounts, periods, mask = cf.padded()
    y = _par_at(par, months)  # D x K
    # flows after T valued on day d at the bond's yield, carried to T at the day's short rate
    lead = 2.0 * (delivery - days).astype(np.int64) / 365.25  # half-years from d to T
    r = _par_at(par, np.maximum(lead * 6.0, 1.0))  # D
    disc = (1.0 + y[:, :, None] / 2.0) ** (-(periods[None, :, :] + lead[:, None, None]))
    carry = (1.0 + r / 2.0) ** lead
    dirty = np.where(mask[None], amounts[None] * disc, 0.0).sum(axis=2) * carry[:, None]
    ratio = (dirty - cf.accrued[None, :]) / factors[None, :]
    ratio[issued[None, :] > days[:, None]] = np.inf
    fair = ratio.min(axis=1)
    return days, np.where(np.isfinite(fair), fair, np.nan)


def fair_value_on(root: str, keys: npt.NDArray[np.int64], days: DateArray, history: ParYieldHistory,
                  master: SecuritiesMaster) -> FloatArray:
    """Fair value of contract ``keys[j]`` on ``days[j]`` (NaN where not priceable)."""
    out = np.full(len(days), np.nan)
    for key in np.unique(keys[keys > 0]):
        sel = np.flatnonzero(keys == key)
        fd, fv = _fair_values(root, int(key), history, master)
        if not len(fd):
            continue
        i = np.clip(np.searchsorted(fd, days[sel]), 0, len(fd) - 1)
        out[sel] = np.where(fd[i] == days[sel], fv[i], np.nan)
    return out


def basis_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                  start: DateArray, end: DateArray) -> FloatArray:
    """``b[end] - b[start]`` of the contract at the front on ``start`` (points); NaN where
    either end is unobserved.

    The change is elementwise in the windows, and a day's windows are ``h``-row windows of
    the par yield history that slide by one row a day: where every window is one, the
    values are looked up in :func:`basis_change_series` (computed once for the whole
    history by :func:`window_basis_changes`, the same arithmetic); other windows are computed
    directly."""
    start, end = np.asarray(start, dtype="datetime64[D]"), np.asarray(end, dtype="datetime64[D]")
    dates = history.dates
    rows = np.searchsorted(dates, start)
    ends = np.searchsorted(dates, end)
    inside = (rows < len(dates)) & (ends < len(dates))
    if len(start) and inside.all() and (dates[rows] == start).all() and (dates[ends] == end).all():
        out = np.empty(len(start))
        for h in np.unique(ends - rows):
            sel = (ends - rows) == h
            if h <= 0:
                out[sel] = window_basis_changes(prices, history, master, start[sel], end[sel])
            else:
                out[sel] = basis_change_series(prices, history, master, int(h))[rows[sel]]
        return out
    return window_basis_changes(prices, history, master, start, end)


@lru_cache(maxsize=32)
def basis_change_series(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                        h: int) -> FloatArray:
    """:func:`window_basis_changes` of every ``h``-row window of the history, indexed by its
    first row (NaN for the last ``h`` rows); read-only."""
    dates = history.dates
    out = np.full(len(dates), np.nan)
    if len(dates) > h:
        out[: len(dates) - h] = window_basis_changes(prices, history, master, dates[:-h], dates[h:])
    out.flags.writeable = False
    return out


def window_basis_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                         start: DateArray, end: DateArray) -> FloatArray:
    """:func:`basis_changes` computed window by window."""
    key = prices.front(start)
    b0 = prices.price_on(key, start) - fair_value_on(prices.root, key, start, history, master)
    b1 = prices.price_on(key, end) - fair_value_on(prices.root, key, end, history, master)
    out = b1 - b0
    out[key < 0] = np.nan
    return out


def proxy_root(root: str, available: Sequence[str]) -> str | None:
    """The available root nearest to ``root`` by CTD duration."""
    if not available:
        return None
    d = PROXY_DURATION.get(root, 6.3)
    return min(available, key=lambda r: abs(np.log(PROXY_DURATION.get(r, 6.3) / d)))


#: A delivery-month row whose basis to its assumed contract exceeds this (points) is taken to
#: be the next contract already (a vendor's early switch, e.g. Yahoo's ZF on 2008-12-22:
#: a calendar spread of about 3 points) and is not read (**choice**).
DELIVERY_BASIS_LIMIT = 1.5


@lru_cache(maxsize=16)
def daily_basis_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                        delivery_month: bool = False, since: int = 0) -> FloatArray:
    """One-day basis change on every history row (from the previous row; NaN: unobserved), points.

    ``delivery_month``: a continuous series' rows in the expiring contract's delivery month
    (never used for scenario changes) also give one-day changes of that contract, for the
    volatility only, where the basis level stays within :data:`DELIVERY_BASIS_LIMIT`.
    ``since``: rows before 1 January of that year are left NaN (not priced)."""
    d = history.dates
    out = np.full(len(d), np.nan)
    first = int(np.searchsorted(d, np.datetime64(f"{max(since, 1900)}-01-01", "D")))
    out[first + 1:] = basis_changes(prices, history, master, d[first:-1], d[first + 1:])
    if delivery_month and prices.continuous:
        r = np.searchsorted(d, prices.dates)
        ok = (r < len(d)) & (d[np.clip(r, 0, len(d) - 1)] == prices.dates) & (r >= first)
        r, contract, usable = r[ok], prices.contract[ok], prices.usable[ok]
        level = np.full(len(d), np.nan)
        key = np.full(len(d), -1, dtype=np.int64)
        b = prices.price[ok] - fair_value_on(prices.root, contract, prices.dates[ok], history, master)
        b[np.abs(b) > DELIVERY_BASIS_LIMIT] = np.nan
        level[r], key[r] = b, contract
        late = np.zeros(len(d), bool)
        late[r[~usable]] = True
        same = (key[1:] == key[:-1]) & (key[1:] > 0) & (late[1:] | late[:-1])
        step = np.where(same, level[1:] - level[:-1], np.nan)
        fill = np.isnan(out[1:]) & np.isfinite(step)
        out[1:][fill] = step[fill]
    return out


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
def basis_volatility(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                     decay: float, delivery_month: bool = True, since: int = 0) -> FloatArray:
    """EWMA volatility of the one-day basis changes after every history row (from ``since``), points."""
    return observed_ewma_volatility(daily_basis_changes(prices, history, master, delivery_month, since), decay)


#: The basis EWMA starts on 1 January this many years before the year of a set's earliest
#: window end (its seed then weighs 0.97^500, about 2e-7: forgotten); pricing the fair value
#: of every contract since 2000 would cost a cold context about a fifth more (**choice**).
EWMA_WARMUP_YEARS = 2


@lru_cache(maxsize=16)  # in process too: a backtest asks for the same series twice a day
def _cached_basis_volatility(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster, data_dir: Path,
                             decay: float, delivery_month: bool, since: int) -> FloatArray:
    """:func:`basis_volatility` through the on-disk cache (keyed by the price, curve and master
    files' contents), so a fresh process does not price a decade of contracts again."""
    key = {"root": prices.root, "prices": files_key([prices.source]), "market": market_files_key(data_dir),
           "master": master_files_key(data_dir), "decay": decay, "delivery_month": delivery_month, "since": since,
           "limit": DELIVERY_BASIS_LIMIT}
    return cached("residual-vol", key, lambda: basis_volatility(prices, history, master, decay, delivery_month, since))


def ewma_start_year(window_end: DateArray) -> int:
    """The year whose 1 January starts the basis EWMA of a set with these window ends."""
    return int(str(np.min(window_end).astype("datetime64[Y]"))) - EWMA_WARMUP_YEARS if len(window_end) else 0


@lru_cache(maxsize=16)
def spread_volatility(history: ParYieldHistory, sofr: RateHistory | None, effr: RateHistory | None,
                      smoothing: int, name: str, decay: float) -> FloatArray:
    """EWMA volatility of the one-day changes of spread ``name`` after every history row, percent."""
    return observed_ewma_volatility(daily_spread_changes(history, sofr, effr, smoothing, name), decay)


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
        for f, name in enumerate(factors):
            if name.startswith("basis:"):
                assert history_f is not None
                x = basis_changes(history_f.roots[name[6:]], history, master, start, end)
            else:
                x, proxied = spread_changes(levels, history, name, start, end)
                if proxied and not changes:
                    notes.append(f"{name}: {proxied} of {len(start)} windows use the EFFR proxy (before SOFR)")
            seen = np.isfinite(x)
            if not changes:
                coverage[name] = float(seen.mean()) if len(x) else 0.0
            ch[f] = np.where(seen, x, 0.0)
            if flt is not None:
                vol = (_cached_basis_volatility(history_f.roots[name[6:]], history, master, snapshot.data_dir,  # type: ignore[union-attr]
                                                flt.decay, params.delivery_month_volatility, ewma_start_year(end))
                       if name.startswith("basis:") else
                       spread_volatility(history, snapshot.sofr, snapshot.fedfunds, params.spread_smoothing_days,
                                         name, flt.decay))
                ch[f] *= residual_scales(vol, history.dates, end, flt)
        changes.append(ch)
    for name, share in coverage.items():
        if share < 1.0:
            notes.append(f"{name}: observed in {share:.0%} of the look-back windows; the others carry no change")
    ficc = changes[0] if changes else np.zeros((len(factors), 0))
    cme = changes[1] if len(changes) > 1 else ficc
    return ResidualRisk(factors, loadings, ficc, cme, tuple(dict.fromkeys(notes)), coverage)
