"""FICC's path-dependent margin components: the Portfolio Differential and the Backtesting Charge.

Both need a member's history, so they are computed over a series of days (the backtest has
one); a single-day ``xmargin margin`` run has no history and reports neither.

* **Portfolio Differential** (DTCC, "FICC market risk" page: "an exponentially weighted moving
  average of the increase in a member's VaR charge calculated twice each business day").
  With one calculation a day (**choice**: end of day only):
  ``inc[t] = max(VaR[t] - VaR[t-1], 0)``, ``PD[t] = decay * PD[t-1] + (1 - decay) * inc[t]``,
  ``PD[0] = 0``, charged on day ``t``.  Decay 0.94 (**choice**: the RiskMetrics daily decay;
  DTCC does not publish its own).
* **Backtesting Charge** (FICC GSD rules as amended by SR-FICC-2016-005 and SR-FICC-2018-001:
  assessed when a member's 12-month backtesting coverage falls below the 99% target).  On day
  ``t`` the backtests already known are the days ``s <= t - h`` (their ``h``-day P&L has been
  realised) among the last ``window`` (250) such days; a deficiency is
  ``max(-pnl[s] - margin[s], 0)`` against the margin before this charge.  If the share of days
  without a deficiency is below ``target``, the charge is the ``k``-th largest deficiency,
  ``k = floor((1 - target) n) + 1`` (with ``n = 250``: the third largest): the smallest add-on
  that would have lifted the window's coverage to the target.  **Choice**: the stored copies
  of the filings do not show FICC's sizing formula.  Windows shorter than ``window`` (the
  start of a backtest) use the days they have.

Units: dollars, arrays ``A x D`` (accounts x days).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

FloatArray = npt.NDArray[np.float64]


def portfolio_differential(var_charge: FloatArray, decay: float) -> FloatArray:
    """EWMA of the day-over-day increases of ``var_charge`` (``A x D``), same shape."""
    v = np.nan_to_num(np.atleast_2d(np.asarray(var_charge, dtype=float)))
    inc = np.zeros_like(v)
    inc[:, 1:] = np.maximum(v[:, 1:] - v[:, :-1], 0.0)
    return np.asarray(lfilter([1.0 - decay], [1.0, -decay], inc, axis=1))


def backtesting_charge(margin: FloatArray, pnl: FloatArray, horizon_days: int, *, target: float = 0.99,
                       window: int = 250) -> FloatArray:
    """The Backtesting Charge of every account and day (``A x D``; module docstring)."""
    m = np.atleast_2d(np.asarray(margin, dtype=float))
    x = np.atleast_2d(np.asarray(pnl, dtype=float))
    deficiency = np.where(np.isfinite(m) & np.isfinite(x), np.maximum(-x - m, 0.0), 0.0)
    a, d = m.shape
    out = np.zeros((a, d))
    for t in range(horizon_days, d):
        known = deficiency[:, max(0, t - horizon_days + 1 - window): t - horizon_days + 1]
        n = known.shape[1]
        misses = (known > 0).sum(axis=1)
        short = 1.0 - misses / n < target
        if not short.any():
            continue
        k = int(np.floor(round((1.0 - target) * n, 9))) + 1
        kth = -np.partition(-known[short], k - 1, axis=1)[:, k - 1] if k <= n else np.zeros(int(short.sum()))
        out[short, t] = kth
    return out
