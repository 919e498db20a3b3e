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

ACCOUNT_TYPES = ("house", "customer")


@dataclass(frozen=True, slots=True)
class Account:
    """One margin account.

    ``account_type`` is ``house`` (the member's proprietary account) or ``customer`` (an
    end-user client of the member, margined gross: no offsets with other customers).
    ``cross_margin`` is the account's election into the cross-margining arrangement.
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

    def __post_init__(self) -> None:
        if self.positions.shape != (len(self.accounts), len(self.universe)):
            raise ValueError("positions shape does not match accounts x instruments")

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

    def scaled(self, factor: float) -> Book:
        return Book(self.accounts, self.universe, (self.positions * factor).tocsr(), self.source, self.warnings)

    def select(self, rows: Sequence[int] | npt.NDArray[np.int64]) -> Book:
        rows = np.asarray(rows, dtype=np.int64)
        return Book(tuple(self.accounts[i] for i in rows), self.universe, self.positions[rows].tocsr(), self.source)


def build_book(
    accounts: Sequence[Account],
    holdings: Sequence[tuple[int, Instrument, float]],
    *,
    universe: InstrumentUniverse | None = None,
    source: str = "",
    warnings: Sequence[str] = (),
) -> Book:
    """A book from ``(account index, instrument, quantity)`` triples (quantities add up)."""
    uni = (universe or InstrumentUniverse.of([])).extended(inst for _, inst, _ in holdings)
    rows = np.array([a for a, _, _ in holdings], dtype=np.int64)
    cols = np.array([uni.index(inst) for _, inst, _ in holdings], dtype=np.int64)
    qty = np.array([q for _, _, q in holdings], dtype=np.float64)
    matrix = sp.csr_matrix((qty, (rows, cols)), shape=(len(accounts), len(uni)))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return Book(tuple(accounts), uni, matrix, source, tuple(warnings))
