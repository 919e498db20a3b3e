"""A book as rows of the portfolio file contract (:mod:`xmargin.portfolio.text`).

The inverse of the readers: ``xmargin demo`` writes its book this way (``portfolio.csv``, which
``xmargin margin`` re-margins to the same totals) and ``xmargin serve`` records its opening book
from the same rows.  Quantities are written with 10 significant digits (face dollars for cash and
repo collateral, contracts for futures); repo rates in percent.
"""

from __future__ import annotations

from xmargin.portfolio.book import Book
from xmargin.reference.repo import Repo

PORTFOLIO_COLUMNS = ("account", "member", "account_type", "instrument", "quantity", "cross_margin", "elect",
                     "archetype", "repo_start", "repo_end", "repo_rate", "cash_amount")


def portfolio_rows(book: Book) -> list[dict[str, str]]:
    """The book as rows of the portfolio file contract (:mod:`xmargin.portfolio.io`): the demo
    can be re-margined with ``xmargin margin portfolio.csv``."""
    rows: list[dict[str, str]] = []
    elected = book.elected_positions()
    for i, acc in enumerate(book.accounts):
        base = {"account": acc.account, "member": acc.member, "account_type": acc.account_type,
                "cross_margin": "true" if acc.cross_margin else "false", "archetype": acc.archetype}
        row = book.positions.getrow(i)
        in_xm = dict(zip(elected.getrow(i).indices, elected.getrow(i).data, strict=True))
        parts = []
        for j, qty in zip(row.indices, row.data, strict=True):
            xm_qty = float(in_xm.get(j, 0.0))
            parts += [(j, q, flag) for q, flag in ((xm_qty, "true"), (qty - xm_qty, "false")) if q != 0]
        for j, qty, flag in parts:
            inst = book.universe.instruments[j]
            rec = {**base, "quantity": f"{qty:.10g}", "elect": flag, "repo_start": "", "repo_end": "",
                   "repo_rate": "", "cash_amount": ""}
            if isinstance(inst, Repo):
                rec |= {"instrument": inst.collateral.identifier, "repo_start": inst.start.isoformat(),
                        "repo_end": inst.end.isoformat(), "repo_rate": f"{inst.rate * 100:.6g}",
                        "cash_amount": f"{inst.cash_per_100 * abs(qty) / 100.0:.15g}"}
            else:
                rec["instrument"] = book.universe.ids[j]
            rows.append(rec)
    return rows
