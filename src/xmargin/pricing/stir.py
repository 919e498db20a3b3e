"""SOFR and Fed Funds futures prices: realised fixings plus rates projected off the curve.

Prices are in **points** (100 minus a rate in percent); multiply by
``RateFuture.dollars_per_point`` for dollars per contract.

Split of the reference period ``[start, end)`` at ``p = min(max(start, as_of), end)``, with
``as_of`` the snapshot's date (its own fixing is published the next morning, so it is not
yet known):

* **Realised, ``[start, p)``**, from ``snapshot.sofr`` / ``snapshot.fedfunds``.  SR3: each
  published fixing in ``[start, p)`` applies from its date to the next fixing date (or to
  ``p``); days from ``start`` to the first fixing take the latest fixing on or before
  ``start`` (the rate in effect, e.g. when the reference quarter starts on a holiday).
  SR1/ZQ: every calendar day takes the latest fixing on or before it (weekends and holidays
  carry the previous business day's rate).
* **Projected, ``[p, end)``**, from the projection curve (the Treasury zero curve smoothed
  by :func:`xmargin.market.curve.projection_curves`): the period is cut at U.S. government
  bond market business days into segments ``[a, b)`` (a business day to the next, the last
  one cut at ``end``), and each segment's rate is the simple ACT/360 forward of that curve
  plus the overnight spread ``sigma`` of the latest fixing over the projection curve
  (continuously compounded, ACT/365, held constant; :meth:`MarketSnapshot.overnight_spread`):

      1 + r_ab * (b - a) / 360 = DF(a) / DF(b) * exp(sigma * (b - a) / 365).

  Compounded over the segments this gives ``DF(p) / DF(end) * exp(sigma (end - p) / 365)``.

Contract rates (percent):

* SR3 (business-day compounded):
  ``R = (prod_k (1 + r_k n_k / 360) - 1) * 360 / D * 100`` over all segments (realised and
  projected), ``n_k`` calendar days of segment ``k``, ``D = end - start`` days;
* SR1, ZQ (arithmetic average): ``R = sum_k r_k n_k / D * 100``.

CME rounds final settlements (SR3 to 0.0001, ZQ and SR1 to 0.001 points); these prices are
not rounded.  A contract whose period is entirely before ``as_of`` prices at its realised
final value.  Everything is vectorised over the ``S`` curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from xmargin.errors import MissingMarketDataError
from xmargin.market.curve import ZeroCurves, projection_curves
from xmargin.market.history import RateHistory
from xmargin.market.snapshot import MarketSnapshot
from xmargin.reference.calendar import add_business_days, is_business_day
from xmargin.reference.stir import RateFuture

FloatArray = npt.NDArray[np.float64]


def _history(snapshot: MarketSnapshot, contract: RateFuture) -> RateHistory:
    history = snapshot.sofr if contract.series == "sofr" else snapshot.fedfunds
    if history is None:
        raise MissingMarketDataError(
            f"{contract.symbol}: its reference period has started but the data directory has no "
            f"{contract.series} fixings file"
        )
    return history


def _check_coverage(history: RateHistory, contract: RateFuture, p: date) -> None:
    """The series must reach the last business day before ``p`` (no stale carry-forward)."""
    needed = add_business_days(p, -1)
    last = history.dates[-1].astype(date)
    if last < needed:
        raise MissingMarketDataError(
            f"{contract.symbol}: {history.name} fixings in {history.source} end on {last}; "
            f"fixings through {needed} are needed"
        )


def _rate_on_or_before(history: RateHistory, days: npt.NDArray[np.datetime64], symbol: str) -> FloatArray:
    idx = np.searchsorted(history.dates, days, side="right") - 1
    if (idx < 0).any():
        raise MissingMarketDataError(
            f"{symbol}: no {history.name} fixing on or before {days[int(np.argmin(idx))]} in {history.source}"
        )
    return history.rates_pct[idx] / 100.0


def realised_segments(
    contract: RateFuture, history: RateHistory, p: date
) -> tuple[FloatArray, FloatArray]:
    """``(rates decimal, calendar days)`` of the realised segments of ``[start, p)``."""
    start = contract.reference_start
    if p <= start:
        return np.zeros(0), np.zeros(0)
    _check_coverage(history, contract, p)
    if contract.averaging == "arithmetic":
        days = np.arange(np.datetime64(start, "D"), np.datetime64(p, "D"))
        return _rate_on_or_before(history, days, contract.symbol), np.ones(len(days))
    dates, rates_pct = history.fixings(start, p)
    rates = rates_pct / 100.0
    if len(dates) == 0 or dates[0] > np.datetime64(start, "D"):
        lead = np.array([np.datetime64(start, "D")])
        rates = np.concatenate([_rate_on_or_before(history, lead, contract.symbol), rates])
        dates = np.concatenate([lead, dates])
    ends = np.concatenate([dates[1:], [np.datetime64(p, "D")]])
    return rates, (ends - dates).astype(np.int64).astype(float)


def projected_boundaries(p: date, end: date) -> npt.NDArray[np.datetime64]:
    """Segment boundaries of ``[p, end)``: ``p``, each business day after it, ``end``."""
    if p >= end:
        return np.array([], dtype="datetime64[D]")
    inner = [p + timedelta(days=k) for k in range(1, (end - p).days)]
    cuts = [p, *(d for d in inner if is_business_day(d)), end]
    return np.array(cuts, dtype="datetime64[D]")


def projected_growth(
    boundaries: npt.NDArray[np.datetime64], curves: ZeroCurves, spread: float
) -> tuple[FloatArray, FloatArray]:
    """``(growth S x K, days K)``: ``1 + r n / 360`` of each projected segment on each curve."""
    if len(boundaries) < 2:
        return np.ones((curves.n_curves, 0)), np.zeros(0)
    df = curves.discount_dates(boundaries)  # S x (K + 1)
    days = np.diff(boundaries).astype(np.int64).astype(float)
    growth = df[:, :-1] / df[:, 1:] * np.exp(spread * days / 365.0)
    return growth, days


def rate_future_rates(
    contracts: Sequence[RateFuture], snapshot: MarketSnapshot, curves: ZeroCurves
) -> FloatArray:
    """Contract rates in percent, ``(n, S)`` (price = 100 - rate)."""
    out = np.empty((len(contracts), curves.n_curves))
    projection = projection_curves(curves)
    base_projection = projection_curves(snapshot.curve)
    spreads: dict[str, float] = {}
    for k, contract in enumerate(contracts):
        start, end = contract.reference_start, contract.reference_end
        total = float((end - start).days)
        p = min(max(start, snapshot.as_of), end)
        real_rates, real_days = (
            realised_segments(contract, _history(snapshot, contract), p) if p > start else (np.zeros(0), np.zeros(0))
        )
        if contract.series not in spreads:
            spreads[contract.series] = snapshot.overnight_spread(contract.series, base_projection)
        growth, days = projected_growth(projected_boundaries(p, end), projection, spreads[contract.series])
        if contract.averaging == "compounded":
            realised = float(np.prod(1.0 + real_rates * real_days / 360.0))
            factor = realised * np.prod(growth, axis=1)
            out[k] = (factor - 1.0) * 360.0 / total * 100.0
        else:
            projected = ((growth - 1.0) * 360.0).sum(axis=1)  # sum of r_k n_k
            out[k] = (float(real_rates @ real_days) + projected) / total * 100.0
    return out


def rate_future_prices(
    contracts: Sequence[RateFuture], snapshot: MarketSnapshot, curves: ZeroCurves
) -> FloatArray:
    """Futures prices in points, ``(n, S)``: 100 minus the contract rate in percent."""
    return 100.0 - rate_future_rates(contracts, snapshot, curves)
