"""Realised P&L of futures positions from actual prices (the backtest's ``--pnl actual``).

For a futures contract ``c`` held on day ``t`` (the backtest's roll rule,
:mod:`xmargin.validation`), the realised P&L per contract over the horizon is

    (F_c[t + h] - F_c[t]) * dollars_per_point

with ``F_c`` the contract's own settlement (or the continuous series on the days it is
unambiguously ``c``, :mod:`xmargin.market.futures_history`), so no change is ever taken across
a roll.  Where the history has no usable price of ``c`` on either day (no file for the root,
a gap, or a continuous series that follows another contract then) the model's P&L (the
contract revalued on the later curve) is used for that position-day, and the account's
``pnl_source`` says ``"model"``.  Cash securities and repos always take the curve: the data
hold no price history per security.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt

from xmargin.market.futures_history import FuturesHistory, contract_key
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.stir import RateFuture

FloatArray = npt.NDArray[np.float64]
PNL_SOURCES = ("actual", "model")


def actual_realised(
    universe: InstrumentUniverse, prices: FuturesHistory | None, day: date, end: date, model: FloatArray
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(realised per unit, used_actual)``: ``model`` with every futures row that has actual
    prices on ``day`` and ``end`` replaced by the actual change (dollars per contract)."""
    out = model.copy()
    used = np.zeros(len(universe), dtype=bool)
    if prices is None:
        return out, used
    d0, d1 = np.datetime64(day, "D"), np.datetime64(end, "D")
    for i, inst in enumerate(universe.instruments):
        if not isinstance(inst, TreasuryFuture | RateFuture):
            continue
        series = prices.get(inst.root)
        if series is None:
            continue
        key = np.array([contract_key(inst.year, inst.month)] * 2, dtype=np.int64)
        p = series.price_on(key, np.array([d0, d1]))
        if np.isfinite(p).all():
            out[i] = float(p[1] - p[0]) * inst.dollars_per_point
            used[i] = True
    return out, used


def is_futures(universe: InstrumentUniverse) -> npt.NDArray[np.bool_]:
    return np.array([isinstance(i, TreasuryFuture | RateFuture) for i in universe.instruments], dtype=bool)
