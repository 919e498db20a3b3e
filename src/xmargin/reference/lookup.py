"""Turn what a user types into an instrument definition.

Accepted identifiers:

* a CUSIP from the securities master (``91282CKQ3``), check digit validated;
* the explicit form ``UST:<coupon percent>:<maturity>[:<issue date>[:<first coupon>]]``,
  e.g. ``UST:4.375:2034-05-15`` (a zero coupon is a bill);
* a futures symbol: Treasury futures ``ZT Z3N ZF ZN TN TWE ZB UB``, SOFR ``SR3 SR1`` and
  Fed Funds ``ZQ`` with month code and year (``ZNZ25``, ``SR3H26``).

Repos are built from a collateral identifier plus their terms (:func:`xmargin.reference.repo.make_repo`).
"""

from __future__ import annotations

from datetime import date

from xmargin.errors import UnknownInstrumentError
from xmargin.reference.cusip import looks_like_cusip
from xmargin.reference.futures import TreasuryFuture, parse_future_symbol
from xmargin.reference.repo import Repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond, parse_ust

Cash = TreasuryBill | TreasuryBond
Instrument = TreasuryBill | TreasuryBond | Repo | TreasuryFuture | RateFuture


def parse_instrument(
    text: str,
    *,
    as_of: date,
    master: SecuritiesMaster,
    source: str = "instrument",
    row: int | None = None,
) -> TreasuryBill | TreasuryBond | TreasuryFuture | RateFuture:
    """Definition of the instrument named by ``text`` (see module docstring)."""
    code = text.strip().upper()
    if not code:
        raise UnknownInstrumentError("instrument is empty", source=source, row=row, field="instrument")
    if code.startswith("UST:"):
        return parse_ust(code, source=source, row=row)
    if looks_like_cusip(code):
        return master.definition(code, source=source, row=row)
    if code[:1].isalpha():
        return parse_future_symbol(code, as_of, source=source, row=row)
    raise UnknownInstrumentError(
        f"'{text}' is neither a CUSIP, a UST:<coupon>:<maturity> form nor a futures symbol",
        source=source,
        row=row,
        field="instrument",
    )


def instrument_id(instrument: Instrument) -> str:
    """The canonical identifier of a definition (CUSIP, UST form, symbol or REPO form)."""
    if isinstance(instrument, TreasuryFuture | RateFuture):
        return instrument.symbol
    return instrument.identifier
