"""Which of a member's positions to place in the cross-margining account.

Model (**choice**, stated so the numbers can be reproduced): the member's house positions are
consolidated into one cross-margining account (``XM``) and one regular account (``REG``);
every eligible position (an ``(account, instrument)`` lot of a house account) goes to one of
the two, ineligible positions always sit in ``REG`` (they are margined stand-alone in any
case).  The objective is ``total_after(XM, cross-margined) + total_after(REG)`` (both houses,
dollars).  The current placement puts a lot in ``XM`` when its account elected
cross-margining.

* ``n <= exhaustive_limit`` (12) lots: **exact**, all ``2^n`` placements evaluated (two rows
  each, one batch).
* larger: **local search** (heuristic, no optimality guarantee): from the current placement,
  all-in and all-out, repeatedly apply the best single move (one lot in or out; all ``n``
  neighbours evaluated in one batch), and when none improves the best move of two lots
  (``n (n - 1) / 2`` neighbours), until neither improves; the best of the three runs.  Tests
  compare it with brute force on small books.

Customers are margined gross (each on its own), so a customer account's election is
independent of everything else: it benefits when its requirement cross-margined is below its
requirement without (``benefit`` in dollars).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.errors import InputError
from xmargin.margin.context import MarginContext
from xmargin.optimise import evaluate_rows
from xmargin.portfolio.book import Book

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PlacementProblem:
    """Lots (rows of ``lots``: quantities over the universe) and the fixed regular positions."""

    context: MarginContext
    labels: tuple[str, ...]  # "account:instrument"
    lots: sp.csr_matrix  # n x N
    fixed_regular: sp.csr_matrix  # 1 x N (ineligible house positions)

    def totals(self, placements: BoolArray) -> FloatArray:
        """Objective of each placement (rows of ``placements``, ``M x n``), dollars."""
        x = sp.csr_matrix(np.atleast_2d(placements).astype(np.float64))
        xm_rows = (x @ self.lots).tocsr()
        reg_rows = (sp.csr_matrix(1.0 - x.toarray()) @ self.lots + sp.vstack([self.fixed_regular] * x.shape[0])).tocsr()
        m = x.shape[0]
        values = evaluate_rows(self.context, sp.vstack([xm_rows, reg_rows]).tocsr(), np.r_[np.ones(m, bool), np.zeros(m, bool)])
        return values[:m] + values[m:]


@dataclass(frozen=True)
class PlacementResult:
    member: str
    labels: tuple[str, ...]
    current: BoolArray
    best: BoolArray
    margin_current: float
    margin_best: float
    method: str
    evaluated: int
    customers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def saving(self) -> float:
        return self.margin_current - self.margin_best

    def to_dict(self) -> dict[str, Any]:
        return {
            "member": self.member, "method": self.method, "placements_evaluated": self.evaluated,
            "margin_current": self.margin_current, "margin_best": self.margin_best, "saving": self.saving,
            "in_cross_margin_account": [lab for lab, b in zip(self.labels, self.best, strict=True) if b],
            "in_regular_account": [lab for lab, b in zip(self.labels, self.best, strict=True) if not b],
            "moved_in": [lab for lab, c, b in zip(self.labels, self.current, self.best, strict=True) if b and not c],
            "moved_out": [lab for lab, c, b in zip(self.labels, self.current, self.best, strict=True) if c and not b],
            "customers": self.customers,
        }


def placement_problem(context: MarginContext, book: Book, member: str) -> tuple[PlacementProblem, BoolArray]:
    """The member's house lots, fixed regular positions and current placement."""
    house = [i for i, a in enumerate(book.accounts) if a.member == member and a.account_type == "house"]
    if not house:
        raise InputError(f"member '{member}' has no house account in the portfolio", source=book.source or "portfolio",
                         field="member")
    coo = book.positions[house].tocoo()
    eligible = context.attributes.eligible[coo.col]
    n_univ = len(context.universe)
    lots = sp.csr_matrix((coo.data[eligible], (np.arange(eligible.sum()), coo.col[eligible])),
                         shape=(int(eligible.sum()), n_univ))
    fixed = sp.csr_matrix((coo.data[~eligible], (np.zeros((~eligible).sum(), dtype=int), coo.col[~eligible])),
                          shape=(1, n_univ))
    labels = tuple(f"{book.accounts[house[r]].account}:{context.universe.ids[c]}"
                   for r, c in zip(coo.row[eligible], coo.col[eligible], strict=True))
    current = np.array([book.accounts[house[r]].cross_margin for r in coo.row[eligible]], dtype=bool)
    return PlacementProblem(context, labels, lots, fixed), current


def all_placements(n: int) -> BoolArray:
    """Every subset of ``n`` lots as rows (``2^n x n``), bit ``j`` of the row index = lot ``j``."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)


def local_search(problem: PlacementProblem, start: BoolArray, *, max_steps: int = 200) -> tuple[BoolArray, float, int]:
    """Best-improvement search over one- and two-lot moves from ``start``: ``(placement, total, evaluated)``."""
    n = len(start)
    x = start.copy()
    best = float(problem.totals(x[None, :])[0])
    evaluated = 1
    singles = np.eye(n, dtype=bool)
    i, j = np.triu_indices(n, 1)
    pairs = singles[i] ^ singles[j]
    for _ in range(max_steps):
        improved = False
        for moves in (singles, pairs):
            if not len(moves):
                continue
            cand = x[None, :] ^ moves
            values = problem.totals(cand)
            evaluated += len(cand)
            k = int(np.nanargmin(values)) if np.isfinite(values).any() else -1
            if k >= 0 and values[k] < best - 1e-6:
                x, best, improved = cand[k], float(values[k]), True
                break  # back to single moves
        if not improved:
            break
    return x, best, evaluated


def optimise_placement(context: MarginContext, book: Book, member: str, *, exhaustive_limit: int = 12) -> PlacementResult:
    """The placement of ``member``'s house lots that minimises its total margin, and the customer
    accounts that benefit from cross-margining (module docstring)."""
    problem, current = placement_problem(context, book, member)
    n = len(current)
    margin_current = float(problem.totals(current[None, :])[0]) if n else float(
        evaluate_rows(context, problem.fixed_regular, np.zeros(1, bool))[0])
    if n == 0:
        best, value, method, evaluated = current, margin_current, "nothing to place", 1
    elif n <= exhaustive_limit:
        cands = all_placements(n)
        values = problem.totals(cands)
        k = int(np.nanargmin(values))
        best, value, method, evaluated = cands[k], float(values[k]), "exhaustive", len(cands)
    else:
        runs = [local_search(problem, s) for s in (current, np.ones(n, bool), np.zeros(n, bool))]
        best, value, _ = min(runs, key=lambda r: r[1])
        method, evaluated = "local search (1- and 2-lot moves, 3 starts)", sum(r[2] for r in runs)
    if not value < margin_current:  # keep the current placement on ties
        best, value = current, margin_current
    return PlacementResult(member, problem.labels, current, best, margin_current, value, method, evaluated,
                           customer_benefits(context, book, member))


def customer_benefits(context: MarginContext, book: Book, member: str) -> list[dict[str, Any]]:
    """Per customer account of ``member``: requirement with and without cross-margining."""
    rows = [i for i, a in enumerate(book.accounts) if a.member == member and a.account_type == "customer"]
    if not rows:
        return []
    q = book.positions[rows]
    values = evaluate_rows(context, sp.vstack([q, q]).tocsr(), np.r_[np.ones(len(rows), bool), np.zeros(len(rows), bool)])
    out = []
    for k, i in enumerate(rows):
        with_xm, without = float(values[k]), float(values[len(rows) + k])
        out.append({"account": book.accounts[i].account, "elected": book.accounts[i].cross_margin,
                    "margin_cross_margined": with_xm, "margin_not_cross_margined": without,
                    "benefit": without - with_xm, "should_elect": bool(without - with_xm > 0)})
    return out
