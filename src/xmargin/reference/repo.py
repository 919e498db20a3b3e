"""Repurchase agreements on Treasury collateral.

A repo is held per unit of collateral face.  Sign convention for the quantity (face dollars):

* positive: a **repo** (the member sold the collateral and will buy it back): it keeps the
  collateral's price risk and owes the repurchase price, so its exposure is
  ``collateral value - cash owed``;
* negative: a **reverse repo** (the member lent cash against collateral): the mirror image.

Money: ``cash_per_100`` is the cash leg per 100 face of collateral; the repurchase price is
``cash * (1 + rate * days / 360)`` (ACT/360 simple interest, the U.S. repo convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from xmargin.errors import InputError
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond


@dataclass(frozen=True, slots=True)
class Repo:
    collateral: TreasuryBill | TreasuryBond
    start: date
    end: date
    rate: float  # decimal, ACT/360
    cash_per_100: float  # cash leg per 100 face of collateral

    @property
    def identifier(self) -> str:
        return (
            f"REPO:{self.collateral.identifier}:{self.start.isoformat()}:{self.end.isoformat()}"
            f":{self.rate * 100:.12g}:{self.cash_per_100:.12g}"
        )

    @property
    def repurchase_per_100(self) -> float:
        """Cash due at ``end`` per 100 face of collateral."""
        return self.cash_per_100 * (1.0 + self.rate * (self.end - self.start).days / 360.0)


def make_repo(
    collateral: TreasuryBill | TreasuryBond,
    *,
    start: date,
    end: date,
    rate_pct: float,
    cash_amount: float,
    face: float,
    as_of: date,
    source: str = "portfolio",
    row: int | None = None,
) -> Repo:
    """Validate one repo row and express its cash leg per 100 face of collateral."""
    if end <= start:
        raise InputError(f"repo end {end} is not after its start {start}", source=source, row=row, field="repo_end")
    if end <= as_of:
        raise InputError(f"repo ended on {end}, before the as-of date {as_of}", source=source, row=row, field="repo_end")
    if end > collateral.maturity:
        raise InputError(
            f"repo end {end} is after the collateral's maturity {collateral.maturity}",
            source=source,
            row=row,
            field="repo_end",
        )
    if not -5.0 <= rate_pct <= 30.0:
        raise InputError(f"repo rate {rate_pct}% is outside [-5, 30]", source=source, row=row, field="repo_rate")
    if not cash_amount > 0:
        raise InputError("cash amount must be positive", source=source, row=row, field="cash_amount")
    if face == 0:
        raise InputError("repo collateral face must not be zero", source=source, row=row, field="quantity")
    # both terms rounded to the 12 significant digits the identifier shows, so that one
    # identifier always means one set of terms, however the row was read (file, ledger, API)
    rate = float(f"{rate_pct:.12g}") / 100.0
    cash_per_100 = float(f"{cash_amount / abs(face) * 100.0:.12g}")
    return Repo(collateral, start, end, rate, cash_per_100)
