"""The Treasury futures basis factor ``basis:<root>`` (points per 100 face) through history.

``b_d = F_d - FV_d``: the actual front-contract price (:mod:`xmargin.market.futures_history`)
minus the model fair value of the **same contract** on day ``d``; a window's change is
``b[end] - b[start]`` with the contract held at ``start`` on both dates (never across a roll;
unobserved: NaN).  The fair value is the cheapest-to-deliver forward price over conversion
factor, each deliverable's flows after the last delivery day ``T`` valued on day ``d`` at the
day's par yield interpolated (linear in months) at its maturity (street convention,
semi-annual) and carried to ``T`` at the par yield interpolated at ``T - d``: the engine's CTD
pricing without a bootstrap per history day; the tests bound its daily changes against the full
pricer.  A root without price history takes the basis of the root nearest by CTD duration,
scaled by the ratio of durations (``PROXY_DURATION``, **choice**).

Continuous series (one row a day, the vendor's front) do not say which contract a
delivery-month row is, so those rows never give the front contract's change: about a quarter of
a 10-year look-back is unobserved.  They are read, where the basis level stays within
:data:`DELIVERY_BASIS_LIMIT` (the expiring contract, not yet the next), for the EWMA volatility
(:func:`daily_basis_changes`) and, as a **proxy** for the windows without the front contract,
for scenario changes (:func:`delivery_month_changes`; ``[residual] delivery_month_changes``).
Units: points per 100 face; volatilities in points a day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xmargin.diskcache import cached, files_key, market_files_key, master_files_key
from xmargin.market.futures_history import RootPrices, make_contract
from xmargin.market.history import TENOR_MONTHS, ParYieldHistory
from xmargin.reference.cashflows import resolve
from xmargin.reference.futures import TreasuryFuture, deliverable_basket
from xmargin.reference.securities import SecuritiesMaster
from xmargin.scenarios.residual_filter import observed_ewma_volatility

FloatArray = npt.NDArray[np.float64]
DateArray = npt.NDArray[np.datetime64]

#: Approximate modified duration of each root's cheapest to deliver (years), used only to
#: scale a proxy basis (**choice**: typical values 2015-2025).
PROXY_DURATION = {"ZT": 1.9, "Z3N": 2.8, "ZF": 4.1, "ZN": 6.3, "TN": 8.5, "TWE": 13.0, "ZB": 14.5, "UB": 19.0}


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
                  start: DateArray, end: DateArray, at: WindowRows | None = None) -> FloatArray:
    """``b[end] - b[start]`` of the contract at the front on ``start`` (points); NaN where
    either end is unobserved.

    The change is elementwise in the windows, and a day's windows are ``h``-row windows of
    the par yield history that slide by one row a day: where every window is one, the
    values are looked up in :func:`basis_change_series` (computed once for the whole
    history by :func:`window_basis_changes`, the same arithmetic); other windows are computed
    directly.  ``at``: the windows' :func:`window_rows`, when the caller has them."""
    return _by_history_windows(prices, history, master, start, end, basis_change_series, window_basis_changes, at)


#: ``(first rows, last rows)`` of windows that start and end on history rows (:func:`window_rows`)
WindowRows = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


def window_rows(history: ParYieldHistory, start: DateArray, end: DateArray) -> WindowRows | None:
    """The history rows of each window's start and end, or ``None`` unless every window starts
    and ends on a history row (one lookup for every factor of a window set)."""
    start, end = np.asarray(start, dtype="datetime64[D]"), np.asarray(end, dtype="datetime64[D]")
    dates = history.dates
    rows = np.searchsorted(dates, start)
    ends = np.searchsorted(dates, end)
    inside = (rows < len(dates)) & (ends < len(dates))
    if len(start) and inside.all() and (dates[rows] == start).all() and (dates[ends] == end).all():
        return rows, ends
    return None


def _by_history_windows(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                        start: DateArray, end: DateArray,
                        series: Callable[[RootPrices, ParYieldHistory, SecuritiesMaster, int], FloatArray],
                        direct: Callable[[RootPrices, ParYieldHistory, SecuritiesMaster, DateArray, DateArray],
                                         FloatArray], at: WindowRows | None = None) -> FloatArray:
    """An elementwise window function ``direct`` of ``(start, end)``, read from its whole-history
    ``series`` of ``h``-row windows where every window starts and ends on history rows (the
    same numbers: each element is the same arithmetic on the same inputs)."""
    start, end = np.asarray(start, dtype="datetime64[D]"), np.asarray(end, dtype="datetime64[D]")
    if at is None:
        at = window_rows(history, start, end)
    if at is None:
        return direct(prices, history, master, start, end)
    rows, ends = at
    span = ends - rows
    out = np.empty(len(start))
    for h in ([span[0]] if (span == span[0]).all() else np.unique(span)):
        sel = span == h
        if h <= 0:
            out[sel] = direct(prices, history, master, start[sel], end[sel])
        else:
            out[sel] = series(prices, history, master, int(h))[rows[sel]]
    return out


def _every_window(windows: Callable[..., FloatArray], prices: RootPrices, history: ParYieldHistory,
                  master: SecuritiesMaster, h: int) -> FloatArray:
    """``windows`` of every ``h``-row window of the history, indexed by its first row (NaN for
    the last ``h`` rows); read-only."""
    dates = history.dates
    out = np.full(len(dates), np.nan)
    if len(dates) > h:
        out[: len(dates) - h] = windows(prices, history, master, dates[:-h], dates[h:])
    out.flags.writeable = False
    return out


@lru_cache(maxsize=32)
def basis_change_series(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                        h: int) -> FloatArray:
    """:func:`window_basis_changes` of every ``h``-row window of the history, indexed by its
    first row (NaN for the last ``h`` rows); read-only."""
    return _every_window(window_basis_changes, prices, history, master, h)


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
def delivery_month_level(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                         since: int = 0) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """``(level, contract, late)`` on every history row from 1 January of ``since``: a continuous
    series' basis to the contract its row is taken to be (NaN where there is no row or the level
    exceeds :data:`DELIVERY_BASIS_LIMIT`), that contract (-1: none) and whether the row is in
    the contract's delivery month (not usable for the front); all NaN / -1 for per-contract files."""
    d = history.dates
    level = np.full(len(d), np.nan)
    key = np.full(len(d), -1, dtype=np.int64)
    late = np.zeros(len(d), bool)
    if prices.continuous:
        first = int(np.searchsorted(d, np.datetime64(f"{max(since, 1900)}-01-01", "D")))
        r = np.searchsorted(d, prices.dates)
        ok = (r < len(d)) & (d[np.clip(r, 0, len(d) - 1)] == prices.dates) & (r >= first)
        r, contract, usable = r[ok], prices.contract[ok], prices.usable[ok]
        b = prices.price[ok] - fair_value_on(prices.root, contract, prices.dates[ok], history, master)
        b[np.abs(b) > DELIVERY_BASIS_LIMIT] = np.nan
        level[r], key[r] = b, contract
        late[r[~usable]] = True
    for x in (level, key, late):
        x.flags.writeable = False
    return level, key, late


def delivery_month_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                           start: DateArray, end: DateArray, at: WindowRows | None = None) -> FloatArray:
    """:func:`window_delivery_month_changes`, looked up in :func:`delivery_month_change_series` where
    every window is an ``h``-row window of the history (a backtest's sliding windows: the same
    numbers, priced once for the whole history instead of every day); ``at`` as in :func:`basis_changes`."""
    return _by_history_windows(prices, history, master, start, end, delivery_month_change_series,
                               window_delivery_month_changes, at)


@lru_cache(maxsize=32)
def delivery_month_change_series(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                                 h: int) -> FloatArray:
    """:func:`window_delivery_month_changes` of every ``h``-row window of the history, indexed by
    its first row (NaN for the last ``h`` rows); read-only."""
    return _every_window(window_delivery_month_changes, prices, history, master, h)


def window_delivery_month_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                                  start: DateArray, end: DateArray) -> FloatArray:
    """Basis change of the contract a continuous series holds at both ``start`` and ``end`` where
    either is in that contract's delivery month and the basis level stays within
    :data:`DELIVERY_BASIS_LIMIT` (the **proxy** for windows without the front contract, module
    docstring), points; NaN elsewhere and for per-contract files.  Only the given windows' rows are
    priced (``history`` is the curve history the fair values are taken on)."""
    start, end = np.asarray(start, dtype="datetime64[D]"), np.asarray(end, dtype="datetime64[D]")
    out = np.full(len(start), np.nan)
    if not len(start) or not prices.continuous or not len(prices.dates):
        return out
    order = np.argsort(prices.dates, kind="stable")  # a continuous series has one row a day
    dates = prices.dates[order]
    rows = []
    for day in (start, end):
        k = np.clip(np.searchsorted(dates, day), 0, len(dates) - 1)
        rows.append((order[k], dates[k] == day))
    (i, ok_i), (j, ok_j) = rows
    late = ~prices.usable
    same = ok_i & ok_j & (prices.contract[i] == prices.contract[j]) & (late[i] | late[j])
    if not same.any():
        return out
    key = prices.contract[i[same]]
    b0 = prices.price[i[same]] - fair_value_on(prices.root, key, start[same], history, master)
    b1 = prices.price[j[same]] - fair_value_on(prices.root, key, end[same], history, master)
    inside = (np.abs(b0) <= DELIVERY_BASIS_LIMIT) & (np.abs(b1) <= DELIVERY_BASIS_LIMIT)
    out[same] = np.where(inside, b1 - b0, np.nan)
    return out


def chained_basis_changes(daily: FloatArray, first: npt.NDArray[np.int64], last: npt.NDArray[np.int64]) -> FloatArray:
    """Sum of the observed one-day basis changes ``daily`` (one per history row, from the previous
    row; NaN: unobserved) over the rows ``first + 1 .. last`` of each window, points; NaN where
    none is observed.  The **proxy** for a window that no contract spans (``[residual]
    roll_window_changes``): a continuous series switching contract inside it has no price of one
    contract at both ends, but each of its other days is one contract's change (the roll day's is
    missing, not zero)."""
    x = np.asarray(daily, dtype=float)
    total = np.r_[0.0, np.cumsum(np.nan_to_num(x))]
    seen = np.r_[0, np.cumsum(np.isfinite(x))]
    n = seen[last + 1] - seen[first + 1]
    return np.where(n > 0, total[last + 1] - total[first + 1], np.nan)


@lru_cache(maxsize=16)
def daily_basis_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster,
                        delivery_month: bool = False, since: int = 0) -> FloatArray:
    """One-day basis change on every history row (from the previous row; NaN: unobserved), points.

    ``delivery_month``: a continuous series' rows in the expiring contract's delivery month
    also give one-day changes of that contract (:func:`delivery_month_level`) where the front
    has none.  ``since``: rows before 1 January of that year are left NaN (not priced)."""
    d = history.dates
    out = np.full(len(d), np.nan)
    first = int(np.searchsorted(d, np.datetime64(f"{max(since, 1900)}-01-01", "D")))
    out[first + 1:] = basis_changes(prices, history, master, d[first:-1], d[first + 1:])
    if delivery_month and prices.continuous:
        level, key, late = delivery_month_level(prices, history, master, since)
        same = (key[1:] == key[:-1]) & (key[1:] > 0) & (late[1:] | late[:-1])
        step = np.where(same, level[1:] - level[:-1], np.nan)
        fill = np.isnan(out[1:]) & np.isfinite(step)
        out[1:][fill] = step[fill]
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


@lru_cache(maxsize=16)  # in process too: a backtest reads it for every scenario set every day
def cached_daily_basis_changes(prices: RootPrices, history: ParYieldHistory, master: SecuritiesMaster, data_dir: Path,
                               delivery_month: bool, since: int) -> FloatArray:
    """:func:`daily_basis_changes` through the on-disk cache (the same key as the volatility's); read-only."""
    key = {"root": prices.root, "prices": files_key([prices.source]), "market": market_files_key(data_dir),
           "master": master_files_key(data_dir), "delivery_month": delivery_month, "since": since,
           "limit": DELIVERY_BASIS_LIMIT}
    out = np.array(cached("residual-daily", key, lambda: daily_basis_changes(prices, history, master, delivery_month,
                                                                              since)))
    out.flags.writeable = False
    return out


def ewma_start_year(window_end: DateArray) -> int:
    """The year whose 1 January starts the basis EWMA of a set with these window ends."""
    return int(str(np.min(window_end).astype("datetime64[Y]"))) - EWMA_WARMUP_YEARS if len(window_end) else 0


