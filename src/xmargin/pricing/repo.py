"""Repo valuation under many curves: collateral value minus the cash owed.

Per unit of collateral face (dollars per $1 face), for settlement on ``settle``:

* started repo (``start <= settle``): ``dirty(collateral) / 100 - repurchase / 100 * DF(end) / DF(settle)``
  (the collateral comes back at ``end`` and its coupons are passed through, so the holder
  keeps its full price risk);
* forward-starting repo: ``cash / 100 * DF(start) / DF(settle) - repurchase / 100 * DF(end) / DF(settle)``
  (the collateral goes out at ``start`` and returns at ``end``: no price risk, rate risk only).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import numpy.typing as npt

from xmargin.market.curve import ZeroCurves
from xmargin.pricing.bonds import dirty_prices
from xmargin.reference.cashflows import resolve
from xmargin.reference.repo import Repo

FloatArray = npt.NDArray[np.float64]


def repo_values(repos: Sequence[Repo], settle: date, curves: ZeroCurves) -> FloatArray:
    """Value per $1 face of collateral of each repo (row) under each curve (column)."""
    if not repos:
        return np.zeros((0, curves.n_curves))
    started = np.array([r.start <= settle for r in repos])
    collateral = dirty_prices(resolve([r.collateral for r in repos], settle), curves)  # N x S
    ends = np.array([r.end for r in repos], dtype="datetime64[D]")
    starts = np.array([max(r.start, settle) for r in repos], dtype="datetime64[D]")
    df_settle = curves.discount_dates(np.array([settle], dtype="datetime64[D]"))  # S x 1
    df_end = (curves.discount_dates(ends) / df_settle).T  # N x S
    df_start = (curves.discount_dates(starts) / df_settle).T
    repurchase = np.array([r.repurchase_per_100 for r in repos])[:, None]
    cash = np.array([r.cash_per_100 for r in repos])[:, None]
    asset = np.where(started[:, None], collateral, cash * df_start)
    return (asset - repurchase * df_end) / 100.0
