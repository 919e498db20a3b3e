"""Turn what a user types into an instrument definition.

Accepted identifiers:

* a CUSIP from the securities master (``91282CKQ3``), check digit validated;
* the explicit form ``UST:<coupon percent>:<maturity>[:<issue date>[:<first coupon>]]``,
  e.g. ``UST:4.375:2034-05-15`` (a zero coupon is a bill);
* a futures symbol: Treasury futures ``ZT Z3N ZF ZN TN TWE ZB UB``, SOFR ``SR3 SR1`` and
  Fed Funds ``ZQ`` with month code and year (``ZNZ25``, ``SR3H26``).

Repos are built from a collateral identifier plus their terms (:func:`xmargin.reference.repo.make_repo`).

Bounds, the same at every entry point (files, trades, the API): a security that has matured on
or before the as-of date is refused like an expired future; an explicit ``UST:`` security must
mature within :data:`MAX_TERM_YEARS` years of the as-of date (the longest Treasury is 30 years,
plus a year of slack) with a coupon within [0, :data:`MAX_COUPON_PCT`] percent.  Beyond them
nothing real exists and pricing only costs time.
"""

from __future__ import annotations

from datetime import date, timedelta

from xmargin.errors import ExpiredContractError, InputError, UnknownInstrumentError
from xmargin.reference.cusip import looks_like_cusip
from xmargin.reference.futures import TreasuryFuture, parse_future_symbol
from xmargin.reference.repo import Repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond, parse_ust

Cash = TreasuryBill | TreasuryBond

MAX_TERM_YEARS = 31
MAX_COUPON_PCT = 20.0
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
        ust = parse_ust(code, source=source, row=row)
        return _check_cash(_check_explicit(ust, code, as_of, source, row), code, as_of, source, row)
    if looks_like_cusip(code):
        return _check_cash(master.definition(code, source=source, row=row), code, as_of, source, row)
    if code[:1].isalpha():
        return parse_future_symbol(code, as_of, source=source, row=row)
    raise UnknownInstrumentError(
        f"'{text}' is neither a CUSIP, a UST:<coupon>:<maturity> form nor a futures symbol",
        source=source,
        row=row,
        field="instrument",
    )


def _check_cash(inst: Cash, code: str, as_of: date, source: str, row: int | None) -> Cash:
    if inst.maturity <= as_of:
        raise ExpiredContractError(f"{code} has matured: it matured on {inst.maturity}, on or before the as-of date "
                                   f"{as_of}", source=source, row=row, field="instrument")
    return inst


def _check_explicit(inst: Cash, code: str, as_of: date, source: str, row: int | None) -> Cash:
    coupon_pct = inst.coupon * 100.0 if isinstance(inst, TreasuryBond) else 0.0
    if not 0.0 <= coupon_pct <= MAX_COUPON_PCT:
        raise InputError(f"{code}: coupon {coupon_pct:g}% is outside [0, {MAX_COUPON_PCT:g}]%", source=source,
                         row=row, field="instrument")
    try:
        last = as_of.replace(year=as_of.year + MAX_TERM_YEARS)
    except ValueError:  # 29 February
        last = as_of.replace(year=as_of.year + MAX_TERM_YEARS, day=28)
    if inst.maturity > last:
        raise InputError(f"{code}: maturity {inst.maturity} is more than {MAX_TERM_YEARS} years after the as-of "
                         f"date {as_of}", source=source, row=row, field="instrument")
    return inst


def position_end(instrument: Instrument) -> date:
    """The first date on which a position in ``instrument`` no longer exists to be margined.

    A bill, note or bond on its maturity date (it has redeemed); a repo on its end date (the
    collateral has come back); a Treasury future on its last delivery day (the date from which
    :func:`xmargin.pricing.futures.contract_basket` refuses to price it); a SOFR or Fed Funds
    future on the day after its last trading day (trading has ended and the contract settles
    in cash on its reference period's rates: nothing is left to liquidate).
    """
    if isinstance(instrument, Repo):
        return instrument.end
    if isinstance(instrument, TreasuryFuture):
        return instrument.last_delivery_day
    if isinstance(instrument, RateFuture):
        return instrument.last_trading_day + timedelta(days=1)
    return instrument.maturity


def instrument_id(instrument: Instrument) -> str:
    """The canonical identifier of a definition (CUSIP, UST form, symbol or REPO form)."""
    if isinstance(instrument, TreasuryFuture | RateFuture):
        return instrument.symbol
    return instrument.identifier
