"""Every margin model backtested in one pass over the days (the fast path).

:func:`backtest_models` runs the daily engine of :mod:`xmargin.validation.backtest` once
with both VaR scenario sets and SPAN, and reduces each day to the FICC, CME and combined
figures together, so the day's snapshot, scenario sets, P&L matrix and exact tail are built
once for the three models instead of three times.  Scenario P&L is second order in the
key-rate par changes (``approx="taylor"``: delta and diagonal gamma from the day's +-1 bp
bumps) and every VaR tail is then revalued exactly, as in the single-model backtest.  SPAN
is calibrated on first-order curves by default (``span_curves="linear"``: scanning ranges
within about 0.3% of the exact bootstrap; ``"exact"`` reproduces the single-model runs).

Differences from three :func:`~xmargin.validation.backtest.backtest` calls (stated in each
result's ``notes``): futures roll by the longest horizon's rule (3 days) for every model,
and the realised P&L of each model is over its own horizon on the same positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.margin.calculator import _scale_columns, margins_for_positions
from xmargin.margin.context import MarginContext
from xmargin.margin.params import MarginParams
from xmargin.portfolio.book import Account, Book
from xmargin.reference.eligibility import EligibilityRules
from xmargin.validation import Leg, legs_of, roll_notes
from xmargin.validation.backtest import (
    DAILY_COMPONENTS,
    MODELS,
    BacktestResult,
    DayContext,
    EngineSpec,
    _backtest_reducer,
    assemble,
    check_range,
    model_horizon,
    run_days,
)

FloatArray = npt.NDArray[np.float64]


def _model_mask(ctx: MarginContext, model: str) -> npt.NDArray[np.bool_]:
    """The instruments a model margins: all (combined), the futures (cme) or the rest (ficc)."""
    is_cme = ctx.attributes.is_cme
    return np.ones(len(is_cme), bool) if model == "combined" else (is_cme if model == "cme" else ~is_cme)


def _reducer(day: DayContext, models: tuple[str, ...], horizons: tuple[int, ...],
             elected: tuple[bool, ...]) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
    """Each model's ``(margin A, realised P&L A, components C x A)`` from **one**
    :func:`~xmargin.margin.calculator.margins_for_positions` call: the models' position
    matrices stacked as ``len(models) x A`` account rows (``_backtest_reducer``'s masks and
    elections per block).  Margins are computed account by account, so each block equals
    that model's own call (``tests/test_backtest_speed.py`` checks it on real days); one call
    instead of three saves the per-call sparse-matrix overhead that dominates a small book."""
    ctx, q = day.context, day.positions
    n = q.shape[0]
    blocks, xms = [], []
    for model in models:
        blocks.append(_scale_columns(q, _model_mask(ctx, model)))
        xms.append(np.array(elected, dtype=bool) if model == "combined" else np.zeros(n, dtype=bool))
    m = margins_for_positions(ctx, sp.vstack(blocks).tocsr(), np.concatenate(xms))
    comps = np.array([getattr(m, c) for c in DAILY_COMPONENTS], dtype=float)
    out = []
    for k, (model, h) in enumerate(zip(models, horizons, strict=True)):
        rows = slice(k * n, (k + 1) * n)
        margin = {"ficc": m.ficc_standalone, "cme": m.cme_standalone, "combined": m.total_after}[model][rows]
        pnl = np.asarray(q @ (day.realised_at[h] * _model_mask(ctx, model))).ravel()
        out.append((margin, pnl, comps[:, rows]))
    return out


def _reducer_per_model(day: DayContext, models: tuple[str, ...], horizons: tuple[int, ...],
                       elected: tuple[bool, ...]) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
    """:func:`_reducer` the slow way, one ``margins_for_positions`` call per model (for tests)."""
    out = []
    for model, h in zip(models, horizons, strict=True):
        margin, _, comps = _backtest_reducer(day, model, elected)
        pnl = np.asarray(day.positions @ (day.realised_at[h] * _model_mask(day.context, model))).ravel()
        out.append((margin, pnl, comps))
    return out


def backtest_models(
    book: Book | None,
    start: date,
    end: date,
    *,
    accounts: Sequence[Account] | None = None,
    legs: Sequence[Leg] | None = None,
    data_dir: Path,
    params: MarginParams,
    eligibility: EligibilityRules,
    models: Sequence[str] = MODELS,
    approx: str = "taylor",
    refine: int | None = 32,
    span: str = "monthly",
    span_curves: str = "linear",
    exact: bool = False,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, BacktestResult]:
    """``{model: BacktestResult}`` for ``models`` over ``[start, end]`` in one pass: the
    positions of ``book`` (read as of ``start``), or ``accounts`` and their ``legs``."""
    if book is not None:
        accounts, legs = book.accounts, legs_of(book)
    if accounts is None or legs is None:
        raise ValueError("give a book, or accounts and legs")
    models = tuple(models)
    for m in models:
        if m not in MODELS:
            raise ValueError(f"model must be one of {MODELS}")
    horizons = tuple(model_horizon(params, m) for m in models)
    h = max(horizons)
    span_needed = params.cme.standalone_model == "span" and any(m != "ficc" for m in models)
    sets = tuple(s for s in ("ficc", "cme") if s == "ficc" or "combined" in models
                 or ("cme" in models and not span_needed))
    others = tuple(sorted(set(horizons) - {h}))
    spec = EngineSpec(data_dir, params, eligibility, tuple(accounts), tuple(legs), start, h, sets,
                      span if span_needed else "none", exact, refine, approx, others, span_curves)
    check_range(data_dir, params, start, end, h)
    reducer = partial(_reducer, models=models, horizons=horizons, elected=tuple(a.cross_margin for a in accounts))
    dates, out = run_days(spec, start, end, reducer, workers=workers, progress=progress)
    method = ("one pass, exact" if exact else f"one pass, {approx} P&L" + ("" if refine is None else f", VaR tail + {refine} exact")
              + f", SPAN on {span_curves} curves")
    notes = tuple(roll_notes(spec.legs, start, h, dates))
    return {m: assemble(m, accounts, params, hm, dates, [day[k] for day in out], method,
                        notes + ((f"futures roll by the {h}-day rule",) if hm != h else ()))
            for k, (m, hm) in enumerate(zip(models, horizons, strict=True))}
