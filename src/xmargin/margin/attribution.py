"""Position-level attribution of an account's margin: Euler contributions and incremental margin.

**Component (Euler) contributions to a historical VaR.**  VaR is positively homogeneous in
the positions, so ``VaR = sum_i q_i dVaR/dq_i`` (Euler's theorem).  For historical simulation
the VaR is minus the account P&L in one scenario ``s*`` (the ``k``-th worst, see
:mod:`xmargin.margin.var`; with the stressed scenarios when they raise it), and where the
ranking is locally stable ``dVaR/dq_i = -pnl_i(s*)``.  So:

* ``method="scenario"`` (default): contribution of position ``i`` = ``-q_i pnl_i(s*)``, its
  loss in the VaR scenario.  These sum to the VaR **exactly** (up to floating point); a single
  scenario makes them noisy from day to day.
* ``method="kernel"``: the average of ``-q_i pnl_i(s)`` over the ``2m + 1`` scenarios ranked
  ``k - m .. k + m`` around the VaR scenario (a flat kernel, as in Epperlein and Smillie,
  "Cracking VAR with kernels", Risk 2006), rescaled so that the contributions sum to the VaR
  (the unscaled average sums to the average loss of those scenarios).

A VaR floored at zero (the account gains in its tail) has all contributions zero.

**Incremental margin** of a position: the account's cross-margined requirement
(``total_after``) with the position minus without it, every "without" book evaluated in one
call of :func:`~xmargin.margin.calculator.margins_for_positions` (one row each).  Incremental
margins need not sum to the total (the requirement is not additive: floors, SPAN, the
cross-margin reduction and its cap).

The figures attributed mirror :mod:`xmargin.margin.calculator`: ``ficc_var`` (the FICC VaR of
the FICC positions, the eligible ``E`` and the rest ``R`` each a VaR, so contributions are
summed over both), ``ficc_combined`` and ``cme_combined`` (the two houses' VaR on the
cross-margined portfolio ``E``), and ``cme_var`` when the CME stand-alone model is the VaR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.margin.calculator import margins_for_positions
from xmargin.margin.context import MarginContext
from xmargin.margin.var import tail_rank, var_with_stress
from xmargin.portfolio.book import Book

FloatArray = npt.NDArray[np.float64]
METHODS = ("scenario", "kernel")


def euler_contributions(
    position_pnl: FloatArray,
    is_stress: npt.NDArray[np.bool_],
    confidence: float,
    *,
    method: str = "scenario",
    neighbours: int = 2,
) -> tuple[float, FloatArray]:
    """``(VaR, contributions)`` of the rows of ``position_pnl`` (``N x S`` dollars: quantity
    times unit P&L of each position) to the VaR of their sum (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    pnl = np.nan_to_num(np.atleast_2d(position_pnl))
    account = pnl.sum(axis=0)
    var, used = var_with_stress(account[None, :], is_stress, confidence)
    if var[0] <= 0:
        return 0.0, np.zeros(pnl.shape[0])
    cols = np.arange(len(account)) if used[0] or not is_stress.any() else np.flatnonzero(~is_stress)
    order = cols[np.argsort(account[cols], kind="stable")]
    k = tail_rank(len(cols), confidence)
    if method == "scenario":
        return float(var[0]), -pnl[:, order[k - 1]]
    window = order[max(0, k - 1 - neighbours) : k + neighbours]
    avg = -pnl[:, window].mean(axis=1)
    total = avg.sum()
    return float(var[0]), avg * (var[0] / total) if total > 0 else -pnl[:, order[k - 1]]


@dataclass(frozen=True)
class AccountAttribution:
    """Per position of one account: Euler contributions to each VaR figure, incremental margin."""

    account: str
    instruments: tuple[str, ...]
    quantities: FloatArray
    method: str
    figures: dict[str, tuple[float, FloatArray]] = field(default_factory=dict)  # name -> (VaR, contributions)
    total_after: float = float("nan")
    incremental: FloatArray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dollars)."""
        return {
            "account": self.account,
            "method": self.method,
            "total_after": _num(self.total_after),
            "positions": [
                {"instrument": ins, "quantity": float(q), "incremental_margin": _num(self.incremental[j]),
                 "euler": {name: float(c[j]) for name, (_, c) in self.figures.items()}}
                for j, (ins, q) in enumerate(zip(self.instruments, self.quantities, strict=True))
            ],
            "figures": {name: {"var": v, "sum_of_contributions": float(c.sum())} for name, (v, c) in self.figures.items()},
        }


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def incremental_margins(context: MarginContext, q_row: sp.csr_matrix, cross_margin: bool) -> tuple[float, FloatArray]:
    """``(total_after, incremental per held position)`` of one account (its nonzero columns in
    column order): requirement with the position minus without it."""
    row = sp.csr_matrix(q_row)
    cols = row.indices[row.data != 0]
    n = len(cols)
    rows = sp.vstack([row] * (n + 1)).tolil()
    for j, c in enumerate(cols):  # one "without" row per position (n is a handful: book rows, not scenarios)
        rows[j + 1, c] = 0.0
    m = margins_for_positions(context, rows.tocsr(), np.full(n + 1, cross_margin))
    return float(m.total_after[0]), m.total_after[0] - m.total_after[1:]


def attribute_account(context: MarginContext, book: Book, i: int, *, method: str = "scenario") -> AccountAttribution:
    """Euler contributions and incremental margins of every position of account ``i``."""
    row = book.positions[i]
    cols = row.indices[row.data != 0]
    qty = np.asarray(row[:, cols].todense()).ravel()
    a, p = context.attributes, context.params
    xm = book.accounts[i].cross_margin
    in_e = a.eligible[cols] & xm
    ficc, cme = ~a.is_cme[cols], a.is_cme[cols]
    pos_f = qty[:, None] * np.nan_to_num(context.ficc_pnl.pnl[cols])
    pos_c = qty[:, None] * np.nan_to_num(context.cme_pnl.pnl[cols])
    sf, sc = context.ficc_scenarios.is_stress, context.cme_scenarios.is_stress
    figures: dict[str, tuple[float, FloatArray]] = {}

    def split(pnl: FloatArray, mask: npt.NDArray[np.bool_], stress: npt.NDArray[np.bool_], conf: float) -> tuple[float, FloatArray]:
        """Sum of the Euler decompositions of the E and R parts of ``mask``."""
        total, contrib = 0.0, np.zeros(len(cols))
        for part in (mask & in_e, mask & ~in_e):
            if part.any():
                v, c = euler_contributions(np.where(part[:, None], pnl, 0.0), stress, conf, method=method)
                total, contrib = total + v, contrib + c
        return total, contrib

    if ficc.any():
        figures["ficc_var"] = split(pos_f, ficc, sf, p.ficc.confidence)
    if p.cme.standalone_model == "var" and cme.any():
        figures["cme_var"] = split(pos_c, cme, sc, p.cme.var_confidence)
    if in_e.any():
        e = in_e[:, None]
        figures["ficc_combined"] = euler_contributions(np.where(e, pos_f, 0.0), sf, p.ficc.confidence, method=method)
        figures["cme_combined"] = euler_contributions(np.where(e, pos_c, 0.0), sc, p.cme.var_confidence, method=method)
    total, incremental = incremental_margins(context, row, xm)
    return AccountAttribution(book.accounts[i].account, tuple(context.universe.ids[c] for c in cols), qty, method,
                              figures, total, incremental)


def attribution_payload(context: MarginContext, book: Book, *, method: str = "scenario") -> list[dict[str, Any]]:
    """Attribution of every account (the API / dashboard entry point)."""
    return [attribute_account(context, book, i, method=method).to_dict() for i in range(book.size)]
