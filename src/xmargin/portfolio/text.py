"""Portfolio text files: CSV and JSON, validated row by row before anything is computed.

CSV columns (header required, any order)::

    account,member,account_type,instrument,quantity[,cross_margin][,repo_start,repo_end,repo_rate,cash_amount]

* ``account_type``: ``house`` or ``customer``;
* ``instrument``: a CUSIP, ``UST:<coupon>:<maturity>`` or a futures symbol;
* ``quantity``: face dollars for cash (long positive) and repo collateral (positive = repo,
  negative = reverse repo), contracts for futures (whole numbers);
* ``cross_margin`` (optional, default ``true``): the account's election;
* ``elect`` (optional, default: the account's ``cross_margin``): whether this position sits in
  the account's cross-margining account (FICC Cross-Margining Customer Account / CME
  customer cross-margin account) or in its ordinary accounts, margined stand-alone.  A
  customer can hold both; ``elect=true`` in an account with ``cross_margin=false`` is an error;
* ``account_type`` may also be ``affiliate``: an eligible affiliate of the member, its own account;
* repo rows fill all four repo fields (dates YYYY-MM-DD, rate in percent, cash in dollars).

Parquet (``.parquet``, needs pyarrow): the same columns, see :mod:`xmargin.portfolio.parquet`
(which falls back on this reader); :func:`xmargin.portfolio.io.read_portfolio` picks by suffix.

JSON: either a list of objects with the same fields, or
``{"accounts": [{"account", "member", "account_type", "cross_margin", "positions": [{...}]}]}``.

Every problem raises :class:`~xmargin.errors.InputError` naming the file, the row (CSV line
number, header = 1; JSON: position number) and the field.  Nothing is returned until the
whole file is valid.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from xmargin.errors import InputError
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.portfolio.fields import (
    REPO_FIELDS,
    account_type_field,
    bool_field,
    position_instrument,
    quantity_field,
    text_field,
)
from xmargin.reference.eligibility import EligibilityRules, clearinghouse
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster

REQUIRED = ("account", "member", "account_type", "instrument", "quantity")
OPTIONAL = ("cross_margin", "archetype", "elect", *REPO_FIELDS)


def _json_rows(data: Any, path: Path | str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Rows of a parsed JSON portfolio (either form), numbered by position."""
    if isinstance(data, dict) and "accounts" in data:
        n = 0
        if not isinstance(data["accounts"], list):
            raise InputError("'accounts' must be a list", source=path, field="accounts")
        for acc in data["accounts"]:
            if not isinstance(acc, dict):
                raise InputError("each account must be an object", source=path)
            if not isinstance(acc.get("positions", []), list):
                raise InputError(f"'positions' of account {acc.get('account')!r} must be a list",
                                 source=path, field="positions")
            for pos in acc.get("positions", []):
                n += 1
                if not isinstance(pos, dict):
                    raise InputError("each position must be an object", source=path, row=n)
                clash = [k for k in pos if k in acc and k != "positions" and pos[k] != acc[k]]
                if clash:
                    raise InputError(
                        f"position disagrees with its enclosing account on '{clash[0]}'",
                        source=path,
                        row=n,
                        field=clash[0],
                    )
                yield n, {**pos, **{k: v for k, v in acc.items() if k != "positions"}}
    elif isinstance(data, list):
        for n, obj in enumerate(data, start=1):
            if not isinstance(obj, dict):
                raise InputError("each row must be an object", source=path, row=n)
            yield n, obj
    else:
        raise InputError("expected a list of positions or an object with 'accounts'", source=path)


def not_text(path: Path | str, exc: UnicodeDecodeError) -> InputError:
    """The one-line error for a file that is not UTF-8 text (Latin-1, a spreadsheet, binary)."""
    return InputError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8", source=path)


def _rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise not_text(path, exc) from None
        except OSError as exc:
            raise InputError(f"cannot read portfolio: {exc.strerror}", source=path) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} at line {exc.lineno}", source=path, row=exc.lineno) from None
        except RecursionError:
            raise InputError("not valid JSON: nested too deeply", source=path) from None
        yield from _json_rows(data, path)
        return
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read portfolio: {exc.strerror}", source=path) from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            yield from _csv_rows(reader, path)
        except UnicodeDecodeError as exc:
            raise not_text(path, exc) from None
        except csv.Error as exc:
            raise InputError(f"not a CSV file: {exc}", source=path, row=max(reader.line_num, 1)) from None


def _csv_rows(reader: csv.DictReader[str], path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    header = [h.strip() for h in (reader.fieldnames or [])]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(f"duplicate column(s) {dupes}: which one holds the data is ambiguous", source=path,
                         row=1, field=dupes[0])
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"missing column(s) {missing}; expected {list(REQUIRED)}", source=path, row=1, field=missing[0])
    unknown = [c for c in header if c not in REQUIRED and c not in OPTIONAL]
    if unknown:
        raise InputError(f"unknown column(s) {unknown}", source=path, row=1, field=unknown[0])
    reader.fieldnames = header
    for n, row in enumerate(reader, start=2):
        if None in row:
            raise InputError("more fields than the header has", source=path, row=n)
        if all(not (v or "").strip() for v in row.values()):
            continue
        yield n, row


def read_text_portfolio(
    path: str | Path,
    *,
    as_of: date,
    master: SecuritiesMaster,
    eligibility: EligibilityRules,
) -> Book:
    """Read and validate a CSV or JSON portfolio file into a :class:`Book`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("portfolio file not found", source=path)
    return _book_from_rows(_rows(path), path, as_of=as_of, master=master, eligibility=eligibility)


def read_portfolio_data(
    data: Any,
    *,
    as_of: date,
    master: SecuritiesMaster,
    eligibility: EligibilityRules,
    source: str = "request body",
) -> Book:
    """A portfolio already parsed from JSON (either form), validated like a file."""
    return _book_from_rows(_json_rows(data, source), source, as_of=as_of, master=master, eligibility=eligibility)


def _book_from_rows(
    rows: Iterator[tuple[int, Mapping[str, Any]]],
    path: Path | str,
    *,
    as_of: date,
    master: SecuritiesMaster,
    eligibility: EligibilityRules,
) -> Book:
    accounts: list[Account] = []
    index: dict[str, tuple[int, int]] = {}  # account -> (index, first row)
    holdings: list[tuple[int, Instrument, float]] = []
    elect_flags: list[bool] = []
    per_position = False  # some row says which account its position sits in
    warnings: list[str] = []
    for n, row in rows:
        name = text_field(row, "account", path, n)
        member = text_field(row, "member", path, n)
        kind = account_type_field(row, path, n)
        xm = bool_field(row, "cross_margin", path, n, True)
        archetype = str(row.get("archetype") or "").strip()
        if name in index:
            i, first = index[name]
            acc = accounts[i]
            if (acc.member, acc.account_type, acc.cross_margin) != (member, kind, xm):
                raise InputError(
                    f"account {name} was declared in row {first} as member {acc.member}, {acc.account_type}, "
                    f"cross_margin={acc.cross_margin}; this row disagrees",
                    source=path,
                    row=n,
                    field="member",
                )
        else:
            index[name] = (len(accounts), n)
            accounts.append(Account(name, member, kind, xm, archetype))
        qty = quantity_field(row, path, n)
        inst, _ = position_instrument(row, qty, as_of=as_of, master=master, source=path, n=n)
        given = row.get("elect") is not None and str(row.get("elect")).strip() != ""
        per_position |= given
        elect = bool_field(row, "elect", path, n, xm)
        if elect and not xm:
            raise InputError(f"account {name} has not elected cross-margining (cross_margin=false): no position "
                             "of it can sit in a cross-margining account", source=path, row=n, field="elect")
        if qty == 0:
            continue
        if elect and not eligibility.is_eligible(inst, as_of):
            warnings.append(
                f"{path}, row {n}: {row.get('instrument')} is not cross-margin eligible at {clearinghouse(inst)} "
                f"({eligibility.why(inst, as_of)[1]}); margined stand-alone in account {name}"
            )
        holdings.append((index[name][0], inst, qty))
        elect_flags.append(elect)
    if not accounts:
        raise InputError("no positions", source=path)
    return build_book(accounts, holdings, source=str(path), warnings=warnings,
                      elected=elect_flags if per_position else None,
                      first_rows=[first for _, first in index.values()])

