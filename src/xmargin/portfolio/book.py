"""Accounts and positions: who holds what, at which clearinghouse.

A :class:`Book` is a set of accounts over one instrument universe.  Positions are a sparse
``accounts x instruments`` matrix of quantities: face dollars for cash Treasuries and repo
collateral (long positive; a positive repo quantity is a repo, negative a reverse repo) and
contracts for futures.  An account's scenario P&L is its row times the instrument scenario
P&L matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import Instrument

ACCOUNT_TYPES = ("house", "customer", "affiliate")


@dataclass(frozen=True, slots=True)
class Account:
    """One margin account.

    ``account_type`` is ``house`` (the member's proprietary account), ``customer`` (an
    end-user client of the member, margined gross: no offsets with other customers) or
    ``affiliate`` (an eligible affiliate of the member, its own account linked to the member:
    margined on its own positions, never netted with the house; the 2025 amendment).
    ``cross_margin`` is the account's election into the cross-margining arrangement; which
    of its positions sit in the cross-margining account is :attr:`Book.elected`.
    """

    account: str
    member: str
    account_type: str = "house"
    cross_margin: bool = True
    archetype: str = ""


@dataclass(frozen=True)
class Book:
    accounts: tuple[Account, ...]
    universe: InstrumentUniverse
    positions: sp.csr_matrix  # accounts x instruments
    source: str = ""
    warnings: tuple[str, ...] = field(default=())
    #: Quantities held in each account's cross-margining account (same shape as
    #: ``positions``); ``None``: every position of an electing account is elected.  The rest
    #: of ``positions`` sits in the ordinary accounts and is margined stand-alone.
    elected: sp.csr_matrix | None = None
    #: First file row of each account (for errors naming the row); empty when not from a file.
    first_rows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.positions.shape != (len(self.accounts), len(self.universe)):
            raise ValueError("positions shape does not match accounts x instruments")
        if self.elected is not None and self.elected.shape != self.positions.shape:
            raise ValueError("elected shape does not match positions")

    @property
    def size(self) -> int:
        return len(self.accounts)

    def account_index(self) -> dict[str, int]:
        return {a.account: i for i, a in enumerate(self.accounts)}

    def members(self) -> list[str]:
        return sorted({a.member for a in self.accounts})

    def positions_of(self, i: int) -> list[tuple[str, float]]:
        """``(instrument id, quantity)`` of account ``i``."""
        row = self.positions.getrow(i)
        return [(self.universe.ids[j], float(q)) for j, q in zip(row.indices, row.data, strict=True) if q != 0]

    def elected_positions(self) -> sp.csr_matrix:
        """Quantities in the cross-margining accounts (all of an electing account's by default)."""
        if self.elected is not None:
            return self.elected
        xm = np.array([a.cross_margin for a in self.accounts], dtype=np.float64)
        return (sp.diags(xm) @ self.positions).tocsr()

    def scaled(self, factor: float) -> Book:
        elected = None if self.elected is None else (self.elected * factor).tocsr()
        return Book(self.accounts, self.universe, (self.positions * factor).tocsr(), self.source, self.warnings,
                    elected, self.first_rows)

    def select(self, rows: Sequence[int] | npt.NDArray[np.int64]) -> Book:
        rows = np.asarray(rows, dtype=np.int64)
        elected = None if self.elected is None else self.elected[rows].tocsr()
        first = tuple(self.first_rows[i] for i in rows) if self.first_rows else ()
        return Book(tuple(self.accounts[i] for i in rows), self.universe, self.positions[rows].tocsr(), self.source,
                    elected=elected, first_rows=first)


def build_book(
    accounts: Sequence[Account],
    holdings: Sequence[tuple[int, Instrument, float]],
    *,
    universe: InstrumentUniverse | None = None,
    source: str = "",
    warnings: Sequence[str] = (),
    elected: Sequence[bool] | None = None,
    first_rows: Sequence[int] = (),
) -> Book:
    """A book from ``(account index, instrument, quantity)`` triples (quantities add up).

    ``elected`` (aligned with ``holdings``): whether each holding sits in the account's
    cross-margining account; ``None`` keeps the per-account election.
    """
    uni = (universe or InstrumentUniverse.of([])).extended(inst for _, inst, _ in holdings)
    rows = np.array([a for a, _, _ in holdings], dtype=np.int64)
    cols = np.array([uni.index(inst) for _, inst, _ in holdings], dtype=np.int64)
    qty = np.array([q for _, _, q in holdings], dtype=np.float64)
    matrix = sp.csr_matrix((qty, (rows, cols)), shape=(len(accounts), len(uni)))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    xm_matrix = None
    if elected is not None:
        flags = np.array(list(elected), dtype=np.float64)
        xm_matrix = sp.csr_matrix((qty * flags, (rows, cols)), shape=matrix.shape)
        xm_matrix.sum_duplicates()
        xm_matrix.eliminate_zeros()
    return Book(tuple(accounts), uni, matrix, source, tuple(warnings), xm_matrix, tuple(first_rows))
