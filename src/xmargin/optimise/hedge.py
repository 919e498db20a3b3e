"""The futures hedge that lowers one account's margin most.

Candidates: the front contract of each root (by default the eight Treasury futures; any
eligible CME root may be named) that a position would hold on the as-of date under the roll
rule of :mod:`xmargin.validation.backtest` (not in or about to enter its delivery month).  For each root the DV01-neutral size is
``c* = -DV01(account) / DV01(contract)``; every whole number of contracts in ``[-R, R]``,
``R = max(2 |c*|, 10)``, is evaluated (on a coarser step when that range has more than
``max_grid`` points; ``R`` doubles, up to four times, while the best point is at an end: the
cross-margin cap and SPAN's inter-commodity credits can make adding risk lower the
requirement), followed by every contract within one step of the best point.
Every candidate book (the account plus ``c`` contracts, in the same account, so it is
cross-margined when the account elected it) is a row of one sparse matrix evaluated by
:func:`~xmargin.margin.calculator.margins_for_positions`.  The result is the exact optimum
over that grid; margin as a function of ``c`` is close to piecewise linear and convex around
``c*`` but not guaranteed convex, which is why the whole range is scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.margin.context import MarginContext
from xmargin.optimise import evaluate_rows
from xmargin.portfolio.book import Book
from xmargin.reference.futures import TREASURY_FUTURES
from xmargin.reference.lookup import Instrument
from xmargin.validation import live_contracts

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HedgeResult:
    account: str
    margin_before: float
    symbol: str | None
    contracts: int
    margin_after: float
    per_symbol: list[dict[str, Any]] = field(default_factory=list)

    @property
    def saving(self) -> float:
        return self.margin_before - self.margin_after

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "margin_before": self.margin_before, "symbol": self.symbol,
                "contracts": self.contracts, "margin_after": self.margin_after, "saving": self.saving,
                "per_symbol": self.per_symbol}


def _grid(target: float, reach: int, max_grid: int) -> tuple[npt.NDArray[np.int64], int]:
    step = max(1, int(np.ceil(2 * reach / max_grid)))
    return np.unique(np.r_[np.arange(-reach, reach + 1, step), reach, int(round(target)), 0]), step


def best_futures_hedge(
    context: MarginContext,
    book: Book,
    i: int,
    *,
    roots: Sequence[str] = tuple(TREASURY_FUTURES),
    max_grid: int = 400,
) -> tuple[HedgeResult, MarginContext]:
    """The (symbol, contracts) that minimises account ``i``'s ``total_after`` (module docstring).

    Returns the result and the context extended with the candidate contracts (reuse it)."""
    h = context.params.ficc.scenarios.horizon_days
    contracts = [live_contracts(r, context.snapshot.as_of, h, 1)[0] for r in roots]
    more: list[Instrument] = [*contracts]
    ctx = context.extended(more)
    n = len(ctx.universe)
    row = sp.csr_matrix(book.positions[i])
    row = sp.csr_matrix((row.data, row.indices, row.indptr), shape=(1, n))  # old columns keep their index
    xm = book.accounts[i].cross_margin
    before = float(evaluate_rows(ctx, row, np.array([xm]))[0])
    dv01 = np.nan_to_num(ctx.attributes.dv01)
    account_dv01 = float((row @ dv01)[0])
    usable = [(c, ctx.universe.index(c)) for c in contracts]
    usable = [(c, j) for c, j in usable if ctx.attributes.span_root[j] >= 0 and dv01[j] != 0 and ctx.ficc_pnl.priced[j]]

    def evaluate(pairs: list[tuple[int, int]]) -> FloatArray:
        cols = np.array([j for j, _ in pairs])
        sizes = np.array([s for _, s in pairs], dtype=float)
        extra = sp.csr_matrix((sizes, (np.arange(len(pairs)), cols)), shape=(len(pairs), n))
        q = (sp.vstack([row] * len(pairs)) + extra).tocsr()
        return evaluate_rows(ctx, q, np.full(len(pairs), xm))

    first: list[tuple[int, int]] = []
    values = np.zeros(0)
    steps: dict[int, int] = {}
    reach = {j: max(int(np.ceil(2 * abs(account_dv01 / dv01[j]))), 10) for _, j in usable}
    todo = [j for _, j in usable]
    for _ in range(5):  # widen while the best point sits at an end of the range
        batch = []
        for j in todo:
            grid, steps[j] = _grid(-account_dv01 / dv01[j], reach[j], max_grid)
            batch += [(j, int(s)) for s in grid]
        first, values = first + batch, np.r_[values, evaluate(batch) if batch else np.zeros(0)]
        todo = []
        for j in reach:
            mine = [k for k, (jj, _) in enumerate(first) if jj == j and np.isfinite(values[k])]
            if mine and abs(first[min(mine, key=lambda m: values[m])][1]) >= reach[j]:
                reach[j] *= 2
                todo.append(j)
        if not todo:
            break
    per_symbol: list[dict[str, Any]] = []
    refine: list[tuple[int, int]] = []
    for _, j in usable:
        mine = [k for k, (jj, _) in enumerate(first) if jj == j]
        k = mine[int(np.nanargmin(values[mine]))] if np.isfinite(values[mine]).any() else mine[0]
        centre = first[k][1]
        refine += [(j, s) for s in range(centre - steps[j] + 1, centre + steps[j]) if s != centre]
    values2 = evaluate(refine) if refine else np.zeros(0)
    pairs, vals = first + refine, np.r_[values, values2]
    best: tuple[str | None, int, float] = (None, 0, before)
    for c, j in usable:
        mine = [k for k, (jj, _) in enumerate(pairs) if jj == j and np.isfinite(vals[k])]
        if not mine:
            continue
        k = min(mine, key=lambda m: (vals[m], abs(pairs[m][1])))
        per_symbol.append({"symbol": c.symbol, "dv01_neutral_contracts": -account_dv01 / dv01[j],
                           "contracts": pairs[k][1], "margin_after": float(vals[k]), "saving": before - float(vals[k])})
        if vals[k] < best[2] - 1e-6:
            best = (c.symbol, pairs[k][1], float(vals[k]))
    per_symbol.sort(key=lambda d: d["margin_after"])
    return HedgeResult(book.accounts[i].account, before, best[0], int(best[1]), best[2], per_symbol), ctx
