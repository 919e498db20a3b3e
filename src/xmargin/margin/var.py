"""Historical-simulation value-at-risk on scenario P&L.

Quantile convention: with ``S`` scenarios and confidence ``a``, VaR is the ``k``-th largest
loss, ``k = ceil((1 - a) * S)`` (the empirical quantile, no interpolation): at 99% and 2,500
scenarios the 25th worst loss.  VaR is floored at zero (a book that gains in every tail
scenario needs no VaR margin).  Stressed scenarios are used only when they raise the VaR:
``VaR = max(VaR(base scenarios), VaR(base + stressed scenarios))``.

Anti-procyclicality (EMIR RTS 153/2013, Commission Delegated Regulation (EU) No 153/2013,
article 28(1)): :func:`model_var` adds to that rule the three tools the article names, each
off by default and set per scenario set (``ScenarioSpec``): (b) a weight ``w`` on the stressed
scenarios, the VaR then being the larger of the look-back VaR and the weighted empirical
quantile with the look-back scenarios weighted ``(1 - w)`` and the stressed ones ``w``
(:func:`weighted_var`); (c) a floor at the VaR of the unscaled look-back scenarios (filtered
mode); (a) a buffer: the VaR times ``1 + buffer``.  How a buffer is *released* in stress is a
path over days, applied by :func:`xmargin.validation.procyclicality.buffered`.

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


def weighted_var(pnl: FloatArray, weights: FloatArray, confidence: float) -> FloatArray:
    """VaR (dollars, >= 0) of each row of ``pnl`` (``A x S``) with scenario ``weights`` (``S``,
    summing to 1; zero-weight scenarios ignored): the loss of the first scenario, worst first,
    at which the cumulative weight reaches ``1 - confidence``.  Only the ``K`` worst columns
    of each row can reach it, ``K`` from the smallest positive weight, so those are sorted."""
    pnl = np.atleast_2d(pnl)
    s = pnl.shape[1]
    target = round(1.0 - confidence, 12) - 1e-12
    positive = weights[weights > 0]
    n_zero = s - len(positive)
    k = s if len(positive) == 0 else min(s, int(math.ceil(target / positive.min())) + 1 + n_zero)
    if k < s:
        part = np.argpartition(pnl, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(pnl, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(s), pnl.shape)
        vals = pnl
    order = np.argsort(vals, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    cum = np.cumsum(weights[cols], axis=1)
    idx = np.argmax(cum >= target, axis=1)
    return np.maximum(-np.take_along_axis(vals, order, axis=1)[np.arange(len(pnl)), idx], 0.0)


def model_var(
    pnl: FloatArray,
    is_stress: npt.NDArray[np.bool_],
    is_floor: npt.NDArray[np.bool_] | None,
    confidence: float,
    *,
    stress_weight: float = 0.0,
    buffer: float = 0.0,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(VaR, stress_used)`` with the anti-procyclicality tools (module docstring).

    Without floor columns, a zero stress weight and no buffer this is :func:`var_with_stress`.
    """
    pnl = np.atleast_2d(pnl)
    if is_floor is not None and is_floor.any():
        main = ~is_floor
        var, used = model_var(pnl[:, main], is_stress[main], None, confidence, stress_weight=stress_weight)
        var = np.maximum(var, historical_var(pnl[:, is_floor], confidence))
    elif stress_weight > 0.0 and is_stress.any():
        base_cols = ~is_stress
        base = historical_var(pnl[:, base_cols], confidence)
        w = np.where(base_cols, (1.0 - stress_weight) / base_cols.sum(), stress_weight / is_stress.sum())
        weighted = weighted_var(pnl, w, confidence)
        var, used = np.maximum(base, weighted), weighted > base
    else:
        var, used = var_with_stress(pnl, is_stress, confidence)
    return (var * (1.0 + buffer) if buffer else var), used
