"""Historical-simulation value-at-risk on scenario P&L.

Quantile convention: with ``S`` scenarios and confidence ``a``, VaR is the ``k``-th largest
loss, ``k = ceil((1 - a) * S)`` (the empirical quantile, no interpolation): at 99% and 2,500
scenarios the 25th worst loss.  VaR is floored at zero (a book that gains in every tail
scenario needs no VaR margin).  Stressed scenarios are used only when they raise the VaR:
``VaR = max(VaR(base scenarios), VaR(base + stressed scenarios))``.

All functions work on ``A x S`` arrays (accounts x scenarios), in dollars.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def tail_rank(n_scenarios: int, confidence: float) -> int:
    """``k``: VaR is the ``k``-th largest loss among ``n_scenarios``."""
    return max(1, math.ceil(round((1.0 - confidence) * n_scenarios, 9)))


def historical_var(pnl: FloatArray, confidence: float) -> FloatArray:
    """VaR (dollars, >= 0) of each row of scenario P&L ``pnl`` (``A x S``)."""
    pnl = np.atleast_2d(pnl)
    s = pnl.shape[1]
    k = tail_rank(s, confidence)
    # k-th largest loss == k-th smallest P&L
    kth = np.partition(pnl, k - 1, axis=1)[:, k - 1]
    return np.maximum(-kth, 0.0)


def var_with_stress(
    pnl: FloatArray, is_stress: npt.NDArray[np.bool_], confidence: float
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(VaR, stress_used)``: the larger of the VaR without and with the stressed scenarios.

    Rows that are identically zero (no position) get 0 without sorting anything.  When the
    stressed scenarios are the trailing columns (as :mod:`xmargin.scenarios` builds them)
    one partial sort of the base columns serves both figures: the full-set VaR is the
    ``k``-th smallest of the base set's ``k`` smallest values and the stressed ones.
    """
    pnl = np.atleast_2d(pnl)
    n, s = pnl.shape
    var = np.zeros(n)
    used = np.zeros(n, dtype=bool)
    active = np.flatnonzero(np.any(pnl != 0.0, axis=1))
    if len(active) == 0:
        return var, used
    rows = pnl[active] if len(active) < n else pnl
    n_stress = int(is_stress.sum())
    if n_stress == 0:
        var[active] = historical_var(rows, confidence)
        return var, used
    n_base = s - n_stress
    if not is_stress[n_base:].all():  # stressed columns not trailing: the plain way
        base = historical_var(rows[:, ~is_stress], confidence)
        full = historical_var(rows, confidence)
    else:
        k_base = tail_rank(n_base, confidence)
        k_full = tail_rank(s, confidence)
        head = np.partition(rows[:, :n_base], sorted({k_base - 1, min(k_full, n_base) - 1}), axis=1)
        base = np.maximum(-head[:, k_base - 1], 0.0)
        pool = np.concatenate([head[:, : min(k_full, n_base)], rows[:, n_base:]], axis=1)
        full = np.maximum(-np.partition(pool, k_full - 1, axis=1)[:, k_full - 1], 0.0)
    var[active] = np.maximum(base, full)
    used[active] = full > base
    return var, used


def var_scenario(pnl_row: FloatArray, is_stress: npt.NDArray[np.bool_], confidence: float) -> int:
    """Index of the scenario whose loss *is* the VaR of one account (for explanations)."""
    var, used = var_with_stress(pnl_row[None, :], is_stress, confidence)
    cols = np.arange(len(pnl_row)) if used[0] or not is_stress.any() else np.flatnonzero(~is_stress)
    k = tail_rank(len(cols), confidence)
    order = np.argsort(pnl_row[cols], kind="stable")
    return int(cols[order[k - 1]])


def worst_scenarios(pnl_row: FloatArray, count: int) -> npt.NDArray[np.int64]:
    """Indices of the ``count`` largest losses of one account, worst first."""
    count = min(count, len(pnl_row))
    idx = np.argpartition(pnl_row, count - 1)[:count]
    return idx[np.argsort(pnl_row[idx], kind="stable")]
