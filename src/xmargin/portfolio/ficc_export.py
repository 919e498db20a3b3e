"""A plain FICC position export (CSV: CUSIP, par, account) as a portfolio source.

The columns FICC's participant position extracts carry, matched case-insensitively and
ignoring spaces and underscores: ``CUSIP``; par as ``Par``, ``Par Amount``, ``Par Value`` or
``Face`` (dollars, long positive; a ``Side`` column of ``S``/``Short``/``Sell`` makes it
short); the account as ``Account``, ``Account ID`` or ``Account Number``; optionally the member
as ``Participant``, ``Participant ID`` or ``Member`` (default ``FICC``), ``Account Type``
(``house``/``customer``, default ``house``) and ``Cross Margin`` (default true).  A file is
recognised as an export by a header with a CUSIP and a par column and no ``instrument``
column.  Unknown CUSIPs raise :class:`~xmargin.errors.InputError` naming the row and the CUSIP.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from xmargin.errors import InputError
from xmargin.portfolio.book import Book
from xmargin.reference.cusip import looks_like_cusip
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.securities import SecuritiesMaster

_NAMES = {
    "instrument": ("cusip",),
    "quantity": ("par", "paramount", "parvalue", "face", "faceamount"),
    "account": ("account", "accountid", "accountnumber"),
    "member": ("participant", "participantid", "member", "memberid"),
    "account_type": ("accounttype",),
    "cross_margin": ("crossmargin",),
    "side": ("side",),
}
SHORT = frozenset({"s", "short", "sell", "sold"})


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _columns(header: list[str]) -> dict[str, str]:
    """Our field name -> the file's column name."""
    out = {}
    for h in header:
        for ours, names in _NAMES.items():
            if _norm(h) in names:
                out[ours] = h
    return out


def is_ficc_export(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    cols = _columns(header)
    return "instrument" in cols and "quantity" in cols and not any(_norm(h) == "instrument" for h in header)


def read_ficc_export(path: str | Path, *, as_of: date, master: SecuritiesMaster,
                     eligibility: EligibilityRules) -> Book:
    from xmargin.portfolio.text import _book_from_rows

    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = _columns(list(reader.fieldnames or []))
        for need in ("instrument", "quantity", "account"):
            if need not in cols:
                label = {"instrument": "CUSIP", "quantity": "par", "account": "account"}[need]
                raise InputError(f"a FICC position export needs a {label} column", source=path, row=1, field=label)
        rows = []
        for n, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            get = {ours: (row.get(theirs) or "").strip() for ours, theirs in cols.items()}
            if not looks_like_cusip(get["instrument"].upper()):
                raise InputError(f"'{get['instrument']}' is not a CUSIP", source=path, row=n, field=cols["instrument"])
            par = get["quantity"].replace(",", "")
            if get.get("side", "").lower() in SHORT and par and not par.startswith("-"):
                par = "-" + par
            rows.append((n, {"account": get["account"], "member": get.get("member") or "FICC",
                             "account_type": get.get("account_type") or "house", "instrument": get["instrument"],
                             "quantity": par, "cross_margin": get.get("cross_margin", "")}))
    return _book_from_rows(iter(rows), path, as_of=as_of, master=master, eligibility=eligibility)
