"""FIXML (FIX 5.0 SP2) position reports as a portfolio (``xmargin margin positions.xml``).

Each ``PosRpt`` gives, with FIXML's abbreviations of the FIX fields,

* the account: ``@Acct`` (Account, tag 1) or else the ``Pty`` with ``R="24"`` (customer
  account) or ``R="38"`` (position account); the member: ``Pty R="4"`` (clearing firm);
  the account type: ``@AcctTyp`` (581) ``1`` (carried customer side) is a customer account,
  anything else the house;
* the instrument: ``Instrmt`` with ``@Sym`` or ``@ID`` (a Globex root such as ``ZN`` or CME's
  clearing code such as ``21``), ``@MMY`` (contract month YYYYMM) and ``@SecTyp`` ``FUT``;
* the quantity: ``Qty`` with ``@Long`` and ``@Short``, net ``Long - Short`` contracts, of
  type ``@Typ`` ``FIN`` (end of day) if present, else the first ``Qty``.

Cross-margin election is not in a position report: every account is taken as electing
(**choice**), as in our CSV default.  Unknown instruments raise
:class:`~xmargin.errors.InputError` naming the file, the line and the instrument.  The results
go back out as ``MgnReqmtRpt`` (:mod:`xmargin.reports.fixml`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from xmargin.errors import InputError, UnknownInstrumentError
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.portfolio.xmltree import Node, parse_tree
from xmargin.reference.cme_codes import PRODUCT_ALIASES
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.stir import RATE_FUTURES, RateFuture

ROOT_OF = {alias: root for root, names in PRODUCT_ALIASES.items() for alias in names}


def _party(node: Node, *roles: str) -> str | None:
    for role in roles:
        for pty in node.all("Pty"):
            if pty.attrs.get("R") == role and pty.attrs.get("ID"):
                return pty.attrs["ID"]
    return None


def _instrument(rpt: Node, source: str, as_of: date) -> Instrument:
    inst = rpt.one("Instrmt")
    if inst is None:
        raise InputError("PosRpt has no Instrmt", source=source, row=rpt.line, field="Instrmt")
    code = (inst.attrs.get("Sym") or inst.attrs.get("ID") or "").strip().upper()
    mmy = inst.attrs.get("MMY", "").strip()
    kind = inst.attrs.get("SecTyp", "FUT").upper()
    what = f"{code or '?'} {mmy or '?'}"
    if kind != "FUT":
        raise UnknownInstrumentError(f"instrument {what} of type {kind}: only futures positions are margined",
                                     source=source, row=inst.line, field="Instrmt/@SecTyp")
    root = ROOT_OF.get(code, code)
    if root not in TREASURY_FUTURES and root not in RATE_FUTURES:
        raise UnknownInstrumentError(f"unknown instrument {what}: product '{code}' is none of the Treasury or rate "
                                     f"futures ({', '.join(sorted(ROOT_OF))})", source=source, row=inst.line,
                                     field="Instrmt/@Sym")
    if len(mmy) < 6 or not mmy[:6].isdigit():
        raise InputError(f"contract month '{mmy}' of {code} is not YYYYMM", source=source, row=inst.line,
                         field="Instrmt/@MMY")
    year, month = int(mmy[:4]), int(mmy[4:6])
    try:
        contract: Instrument = TreasuryFuture(root, year, month) if root in TREASURY_FUTURES else RateFuture(root, year, month)
        if contract.last_trading_day < as_of:  # type: ignore[union-attr]
            raise InputError(f"{contract.symbol} expired on {contract.last_trading_day}",  # type: ignore[union-attr]
                             source=source, row=inst.line, field="Instrmt/@MMY")
    except InputError as exc:
        raise InputError(f"instrument {what}: {exc.reason}", source=source, row=inst.line, field="Instrmt") from None
    return contract


def _number(node: Node, attr: str, source: str) -> float:
    raw = node.attrs.get(attr, "0") or "0"
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"'{raw}' is not a number", source=source, row=node.line, field=f"Qty/@{attr}") from None


def read_fixml_positions(path: str | Path, *, as_of: date, eligibility: EligibilityRules) -> Book:
    """A book from a FIXML file of ``PosRpt`` messages (see the module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read FIXML positions: {exc.strerror}", source=path) from None
    source = str(path)
    reports = parse_tree(raw, source).iter("PosRpt")
    if not reports:
        raise InputError("no PosRpt message in the file", source=source, row=1)
    accounts: list[Account] = []
    index: dict[str, int] = {}
    holdings: list[tuple[int, Instrument, float]] = []
    warnings: list[str] = []
    for rpt in reports:
        name = rpt.attrs.get("Acct") or _party(rpt, "24", "38")
        if not name:
            raise InputError("PosRpt names no account (@Acct or Pty R=24/38)", source=source, row=rpt.line, field="Acct")
        member = _party(rpt, "4") or ""
        if not member:
            raise InputError("PosRpt names no clearing firm (Pty R=4)", source=source, row=rpt.line, field="Pty")
        kind = "customer" if rpt.attrs.get("AcctTyp") == "1" else "house"
        if name not in index:
            index[name] = len(accounts)
            accounts.append(Account(name, member, kind, True))
        elif (accounts[index[name]].member, accounts[index[name]].account_type) != (member, kind):
            raise InputError(f"account {name} appears with another clearing firm or account type", source=source,
                             row=rpt.line, field="Pty")
        inst = _instrument(rpt, source, as_of)
        qtys = rpt.all("Qty")
        if not qtys:
            raise InputError("PosRpt has no Qty", source=source, row=rpt.line, field="Qty")
        qty = next((q for q in qtys if q.attrs.get("Typ") == "FIN"), qtys[0])
        net = _number(qty, "Long", source) - _number(qty, "Short", source)
        if net != round(net):
            raise InputError(f"{net} is not a whole number of contracts", source=source, row=qty.line, field="Qty")
        if net:
            if not eligibility.is_eligible(inst):
                warnings.append(f"{source}, line {rpt.line}: {inst.symbol} is not cross-margin eligible")  # type: ignore[union-attr]
            holdings.append((index[name], inst, net))
    return build_book(accounts, holdings, source=source, warnings=warnings)
