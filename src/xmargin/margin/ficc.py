"""FICC-style margin for cash Treasuries and repo: VaR, VaR floor and concentration add-on.

``requirement = max(VaR, floor) + concentration add-on`` (each reported):

* VaR: historical simulation at 99% over 3 days (:mod:`xmargin.margin.var`);
* floor: gross market value times a percentage by remaining maturity (a minimum charge for
  books whose VaR nets to almost nothing; table in :mod:`xmargin.margin.params`);
* concentration add-on: net DV01 per maturity bucket beyond a threshold, charged a few basis
  points of extra liquidation move (our stand-in for FICC's Margin Liquidity Adjustment).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def floor_rate(years_to_maturity: npt.ArrayLike, table: Sequence[tuple[float, float]]) -> FloatArray:
    """Floor as a fraction of market value for each remaining maturity (years)."""
    years = np.asarray(years_to_maturity, dtype=float)
    bounds = np.array([b for b, _ in table])
    rates = np.array([r for _, r in table])
    return rates[np.minimum(np.searchsorted(bounds, years, side="left"), len(rates) - 1)]


def maturity_bucket(years_to_maturity: npt.ArrayLike, table: Sequence[tuple[float, float]]) -> npt.NDArray[np.int64]:
    """Index of the floor-table bucket of each remaining maturity (the concentration buckets)."""
    bounds = np.array([b for b, _ in table])
    years = np.asarray(years_to_maturity, dtype=float)
    return np.minimum(np.searchsorted(bounds, years, side="left"), len(bounds) - 1).astype(np.int64)


def concentration_addon(bucket_dv01: FloatArray, threshold: float, cost_bp: float) -> FloatArray:
    """Add-on (dollars) from net DV01 per bucket (``A x B``, dollars per bp)."""
    excess = np.maximum(np.abs(bucket_dv01) - threshold, 0.0)
    return excess.sum(axis=1) * cost_bp


def ficc_requirement(var: FloatArray, floor: FloatArray, concentration: FloatArray) -> FloatArray:
    """``max(VaR, floor) + concentration``."""
    return np.maximum(var, floor) + concentration
