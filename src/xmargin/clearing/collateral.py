"""Collateral per account, its haircut value, and margin calls and excess.

Collateral is cash (dollars, no haircut) and Treasury securities (face dollars), valued at
their dirty price off the snapshot's curve less a haircut by remaining maturity
(:class:`HaircutSchedule`; **choice**, default below, configurable with a TOML file)::

    [haircuts]
    cash = 0.0
    table = [[1, 0.005], [3, 0.01], [5, 0.02], [10, 0.03], [20, 0.05], ["inf", 0.06]]

(``[max years to maturity, haircut]``, upper bounds inclusive, like the FICC floor table; the
bounds are positive and strictly increasing and the last is ``"inf"``; each haircut lies in
[0, 1).)  Remaining maturity in years is ``(maturity - as-of date)`` in days / 365.25.  Only
cash and Treasury securities maturing after the settlement date are eligible: anything else is
refused when it is posted, before the account's holdings change.

After each change of an account's requirement (``total_after``) or collateral,
:meth:`CollateralBook.assess` compares requirement ``R`` with collateral value ``V``:

* ``R > V``: a **margin call** for ``R - V`` when the account has no call outstanding or the
  deficit has grown beyond the last call (a smaller deficit issues no new call; what is due
  is always the current deficit, see ``LedgerSession.status``);
* ``V >= R``: the call, if any, is met; an **excess** ``V - R`` (that may be returned) is
  recorded when the account moves into excess (from a call or from nothing).

**Maturity.** A security held as collateral redeems at maturity: when the market moves to a
date on or after its maturity (:meth:`CollateralBook.set_snapshot`), the holding becomes cash at
its redemption value, 100 per 100 face for a bill and 100 plus the final half-year coupon for a
note or bond (Treasury pays the last coupon with the principal: TreasuryDirect, "Treasury Notes" and "Treasury Bonds").  The
conversion follows from the holdings and the market dates alone, so a replay of the ledger
makes the same one; ``CollateralBook.redemptions`` lists the last roll's conversions.
(Coupons paid before maturity are not credited: like the positions' P&L, the collateral is
valued at the dirty price on each date.)

Amounts are dollars; differences of half a cent or less are ignored (a deficit, a deficit's
growth beyond the last call, an excess from nothing).  An account whose
requirement cannot be computed (NaN) is not assessed.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from xmargin.engine.trades import CASH, CollateralMovement
from xmargin.errors import InputError
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.revalue import InstrumentUniverse, unit_values
from xmargin.reference.lookup import parse_instrument
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

HALF_CENT = 0.005

DEFAULT_HAIRCUTS: tuple[tuple[float, float], ...] = (
    (1.0, 0.005),
    (3.0, 0.01),
    (5.0, 0.02),
    (10.0, 0.03),
    (20.0, 0.05),
    (float("inf"), 0.06),
)


@dataclass(frozen=True)
class HaircutSchedule:
    table: tuple[tuple[float, float], ...] = DEFAULT_HAIRCUTS
    cash: float = 0.0

    def __post_init__(self) -> None:
        bounds = [b for b, _ in self.table]
        increasing = all(a < b for a, b in itertools.pairwise(bounds))  # False on a NaN bound
        if not self.table or not increasing or not bounds[0] > 0.0 or bounds[-1] != math.inf:
            raise InputError("haircut table must be sorted by maturity (positive, strictly increasing years) and "
                             "end with an open bucket ('inf')", field="haircuts.table")
        for h in [*(h for _, h in self.table), self.cash]:
            if not 0.0 <= h < 1.0:
                raise InputError(f"haircut {h} is outside [0, 1)", field="haircuts")

    def haircut(self, years_to_maturity: float) -> float:
        """The haircut (a fraction) of a security ``years_to_maturity`` years from maturity."""
        bounds = np.array([b for b, _ in self.table])  # the last bound is inf: the index is always in range
        return self.table[int(np.searchsorted(bounds, years_to_maturity, side="left"))][1]

    def to_dict(self) -> dict[str, Any]:
        return {"cash": self.cash, "table": [[None if b == float("inf") else b, h] for b, h in self.table]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HaircutSchedule:
        table = tuple((float("inf") if b in (None, "inf") else float(b), float(h)) for b, h in data["table"])
        return cls(table, float(data.get("cash", 0.0)))

    @classmethod
    def load(cls, path: str | Path | None) -> HaircutSchedule:
        if path is None:
            return cls()
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())["haircuts"]
            return cls.from_dict({"table": data.get("table", [[None if b == math.inf else b, h]
                                                               for b, h in DEFAULT_HAIRCUTS]),
                                  "cash": data.get("cash", 0.0)})
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise InputError(exc.reason, source=path, field=exc.field) from None
            raise InputError(f"cannot read haircut schedule ({exc!r}); expected [haircuts] table = [[years, haircut], ...]",
                             source=path) from None


@dataclass(frozen=True)
class Redemption:
    """A security held as collateral that matured: ``face`` dollars became ``cash`` dollars."""

    account: str
    asset: str
    maturity: date
    face: float
    cash: float


@dataclass
class _Status:
    kind: str | None = None  # "margin_call" | "excess" | None
    amount: float = 0.0


@dataclass
class CollateralBook:
    """Collateral held per account and the call / excess status of each."""

    snapshot: MarketSnapshot
    master: SecuritiesMaster
    schedule: HaircutSchedule = field(default_factory=HaircutSchedule)
    holdings: dict[str, dict[str, float]] = field(default_factory=dict)
    status: dict[str, _Status] = field(default_factory=dict)
    redemptions: list[Redemption] = field(default_factory=list)  # made by the last set_snapshot
    _price: dict[str, tuple[float, float]] = field(default_factory=dict)  # asset -> (dirty per $1 face, years)

    def set_snapshot(self, snapshot: MarketSnapshot) -> None:
        """Move to a new market date; securities that have matured by then become cash (module)."""
        self.redemptions = self._matured(snapshot.as_of)
        for r in self.redemptions:
            acc = self.holdings[r.account]
            del acc[r.asset]
            acc[CASH] = acc.get(CASH, 0.0) + r.cash
        self.snapshot = snapshot
        self._price.clear()

    def _matured(self, as_of: date) -> list[Redemption]:
        """The holdings that mature on or before ``as_of``, at their redemption value."""
        out = []
        for account, held in sorted(self.holdings.items()):
            for asset, face in sorted(held.items()):
                if asset == CASH:
                    continue
                inst = self._security(asset)
                if inst.maturity <= as_of:
                    final = inst.coupon / 2.0 if isinstance(inst, TreasuryBond) else 0.0
                    out.append(Redemption(account, asset, inst.maturity, face, face * (1.0 + final)))
        return out

    def _security(self, asset: str) -> TreasuryBill | TreasuryBond:
        """The Treasury ``asset`` names, as of the book's current market date."""
        inst = parse_instrument(asset, as_of=self.snapshot.as_of, master=self.master, source="collateral")
        if not isinstance(inst, TreasuryBill | TreasuryBond):
            raise InputError(f"{asset} is not a Treasury security", source="collateral", field="instrument")
        return inst

    def _unit(self, asset: str) -> tuple[float, float]:
        if asset not in self._price:
            inst = self._security(asset)
            price = float(unit_values(InstrumentUniverse.of([inst]), self.snapshot, self.snapshot.curve,
                                      self.master)[0, 0])
            years = (inst.maturity - self.snapshot.as_of).days / 365.25
            self._price[asset] = (price, years)
        return self._price[asset]

    def check(self, move: CollateralMovement) -> None:
        """Refuse a withdrawal of more than the account holds, or an asset that is neither cash
        nor an eligible Treasury (nothing changes)."""
        held = self.holdings.get(move.account, {}).get(move.asset, 0.0)  # never negative: so only a withdrawal
        if held + move.amount < -1e-9 * max(1.0, abs(held)):  # can fail (1e-9: float rounding of face amounts)
            raise InputError(f"collateral {move.movement_id}: account {move.account} holds {held:,.2f} of "
                             f"{move.asset}, cannot withdraw {-move.amount:,.2f}", field="quantity")
        if move.asset != CASH:
            self._unit(move.asset)

    def apply(self, move: CollateralMovement) -> None:
        self.check(move)
        acc = self.holdings.setdefault(move.account, {})
        left = acc.get(move.asset, 0.0) + move.amount
        if abs(left) <= 1e-9 * max(1.0, abs(move.amount)):
            acc.pop(move.asset, None)
        else:
            acc[move.asset] = left

    def value(self, account: str) -> float:
        """Collateral value after haircuts (dollars)."""
        total = 0.0
        for asset, amount in sorted(self.holdings.get(account, {}).items()):
            if asset == CASH:
                total += amount * (1.0 - self.schedule.cash)
            else:
                price, years = self._unit(asset)
                total += amount * price * (1.0 - self.schedule.haircut(years))
        return total

    def assess(self, account: str, requirement: float) -> tuple[str, dict[str, Any]] | None:
        """``(kind, data)`` of the margin call or excess event due now, or None (see module)."""
        if not math.isfinite(requirement):
            return None
        value = self.value(account)
        st = self.status.setdefault(account, _Status())
        deficit = requirement - value
        if deficit > HALF_CENT:
            if st.kind == "margin_call" and deficit <= st.amount + HALF_CENT:
                return None
            st.kind, st.amount = "margin_call", deficit
            return "margin_call", {"account": account, "requirement": requirement, "collateral_value": value,
                                   "amount_due": deficit}
        if st.kind == "excess":  # still in excess: nothing new (the status keeps the recorded amount)
            return None
        if st.kind is None and -deficit <= HALF_CENT:
            return None
        met = st.kind == "margin_call"
        excess = max(-deficit, 0.0)  # a call met to within half a cent: an excess of 0, never negative
        st.kind, st.amount = "excess", excess  # as restore() takes it back from the record
        return "excess", {"account": account, "requirement": requirement, "collateral_value": value,
                          "excess": excess, "call_met": met}

    def restore(self, kind: str, data: Mapping[str, Any]) -> None:
        """Take a recorded margin call / excess as the account's status (replay)."""
        st = self.status.setdefault(data["account"], _Status())
        st.kind = kind
        st.amount = float(data["amount_due"] if kind == "margin_call" else data["excess"])
