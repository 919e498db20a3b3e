"""Filtered historical simulation for the residual factors (futures basis, overnight spreads).

The curve's FHS (:mod:`xmargin.scenarios.filtered`) rescales each look-back change by today's
EWMA volatility over the volatility at the end of its window.  A residual factor's window
change is rescaled the same way by **its own** EWMA volatility, so a basis that is volatile
today (March 2020) is replayed at today's basis volatility, not at the calm decade's:

    sigma2[t] = decay * sigma2[t'] + (1 - decay) * d[t] ** 2      (t' the previous observed day)
    change'[s] = min(sigma[today] / max(sigma[end_s], VOL_FLOOR), max_scale) * change[s]

``d[t]`` is the factor's one-day change (points for a basis, percent for a spread), taken
over consecutive history rows with the same contract at both ends (never across a roll).
Days without an observation (a delivery month of a continuous series, a gap, before the
factor's history starts) **leave the variance unchanged** (no decay, no update): the EWMA runs
over the observed days only and is carried forward, so a month without prices is neither
read as calm nor as volatile.  Seed: the mean of ``d ** 2`` over the first ``seed_days``
observed days.  ``sigma`` is NaN before the first observation; a window ending there, or a
today without any, keeps its change unscaled (scale 1).

Basis tools (docs/methodology.md 15.2; both off at 0): ``sigma[today]`` is first raised to at
least ``vol_floor`` times the factor's long-run volatility (its root-mean-square one-day change over
the set's look-back), so a calm day does not replay the decade's basis moves below their typical
size, and the multiplier is at least ``min_scale``.

Which scenarios: only the look-back ones of a ``filtered`` scenario set (stressed scenarios
and the unscaled floor copies stay as they happened, as for the curve).  Units: ``sigma`` in
the factor's units per day.  Left out: a volatility that combines curve and residual (each
factor is filtered on its own, as the curve filters tenor by tenor).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from xmargin.scenarios.filtered import SEED_DAYS, ewma_variance, filter_scales

FloatArray = npt.NDArray[np.float64]
DateArray = npt.NDArray[np.datetime64]


@dataclass(frozen=True, eq=False)
class ResidualFilter:
    """How one scenario set's residual changes are rescaled (``None`` in place of it: unscaled)."""

    as_of: date
    decay: float
    max_scale: float
    rescale: npt.NDArray[np.bool_]  # S: True for the look-back scenarios (not stress, not floor)
    min_scale: float = 0.0  # the scale is at least this (0: off)
    vol_floor: float = 0.0  # today's volatility is at least this times the long-run one (0: off)
    #: ``"end"``: each change divided by the estimate at its window's end (after its moves);
    #: ``"start"``: at its window's start (before them, the curve's rule, docs/methodology.md 4.1)
    vol_date: str = "end"


def observed_ewma_volatility(daily: FloatArray, decay: float, seed_days: int = SEED_DAYS) -> FloatArray:
    """EWMA volatility after each row of ``daily`` (1-D, NaN = unobserved), same length.

    The recursion runs over the observed rows only and its value is carried forward over the
    unobserved ones; NaN before the first observation (module docstring)."""
    daily = np.asarray(daily, dtype=float)
    seen = np.flatnonzero(np.isfinite(daily))
    out = np.full(len(daily), np.nan)
    if not len(seen):
        return out
    var = ewma_variance(daily[seen][:, None], decay, seed_days)[:, 0]
    # row t takes the variance after the last observation on or before t
    last = np.searchsorted(seen, np.arange(len(daily)), side="right") - 1
    ok = last >= 0
    out[ok] = np.sqrt(var[last[ok]])
    return out


def residual_scales(vol: FloatArray, history_dates: DateArray, window_end: DateArray,
                    flt: ResidualFilter, long_run: float = float("nan")) -> FloatArray:
    """``S`` multipliers of one factor's window changes: ``min(sigma[today] / sigma[end], max_scale)``
    on the look-back scenarios (``flt.rescale``), 1 elsewhere and where either volatility is unknown.
    ``window_end``: the date whose estimate divides each change (its window's end, or its start
    when ``flt.vol_date`` is ``"start"``: the caller passes the one the rule names).
    ``vol`` is :func:`observed_ewma_volatility` on the history rows ``history_dates``.

    The basis tools (docs/methodology.md 15.2): ``sigma[today]`` is first raised to at least
    ``flt.vol_floor * long_run`` (the factor's long-run volatility, same units; NaN: no floor), and
    the multiplier is at least ``flt.min_scale``."""
    today = int(np.searchsorted(history_dates, np.datetime64(flt.as_of, "D"), side="right")) - 1
    ends = np.clip(np.searchsorted(history_dates, window_end.astype("datetime64[D]")), 0, len(history_dates) - 1)
    if today < 0:  # no volatility known today: every change unscaled
        return np.ones(len(ends))
    if flt.vol_floor > 0.0 and np.isfinite(long_run) and np.isfinite(vol[today]):
        vol = vol.copy()
        vol[today] = max(vol[today], flt.vol_floor * long_run)
    ratio = filter_scales(vol[:, None], ends, today, flt.max_scale)[:, 0]  # the curve's rule, one factor
    ratio = np.maximum(ratio, flt.min_scale)
    ok = flt.rescale & np.isfinite(ratio)
    return np.where(ok, ratio, 1.0)
