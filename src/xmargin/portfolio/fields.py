"""Field parsers shared by every row-based input: portfolio files, trade files, API bodies.

Each takes the row (a mapping of field name to raw value), the field name, the source (file
or label) and the row number, and raises :class:`~xmargin.errors.InputError` naming all
three when the value is unusable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

from xmargin.errors import InputError
from xmargin.portfolio.book import ACCOUNT_TYPES
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument, parse_instrument
from xmargin.reference.repo import make_repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

REPO_FIELDS = ("repo_start", "repo_end", "repo_rate", "cash_amount")

#: The largest absolute quantity any entry point accepts (files, trades, the API): face dollars for
#: cash and repo collateral, contracts for futures.  Ten trillion dollars face is beyond any real
#: position (the Treasury market is about 28 trillion) and keeps every margin figure finite.
MAX_QUANTITY = 1e13

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "xm"})
FALSE_WORDS = frozenset({"false", "no", "n", "0"})

Source = Any  # a path or a label


def text_field(row: Mapping[str, Any], key: str, source: Source, n: int | None) -> str:
    value = row.get(key)
    text = "" if value is None else str(value).strip()
    if not text:
        raise InputError("is missing or empty", source=source, row=n, field=key)
    return text


def number_field(row: Mapping[str, Any], key: str, source: Source, n: int | None) -> float:
    raw = row.get(key)
    if isinstance(raw, bool):  # JSON true/false would otherwise read as 1/0
        raise InputError(f"'{raw}' is not a number", source=source, row=n, field=key)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"'{raw}' is not a number", source=source, row=n, field=key) from None
    if not math.isfinite(value):
        raise InputError(f"'{raw}' is not a finite number", source=source, row=n, field=key)
    return value


def quantity_field(row: Mapping[str, Any], source: Source, n: int | None, key: str = "quantity") -> float:
    """A position or trade quantity: a finite number no larger than :data:`MAX_QUANTITY` in size."""
    value = number_field(row, key, source, n)
    if abs(value) > MAX_QUANTITY:
        raise InputError(f"{row.get(key)} is beyond the largest quantity accepted (±{MAX_QUANTITY:.0e})",
                         source=source, row=n, field=key)
    return value


def bool_field(row: Mapping[str, Any], key: str, source: Source, n: int | None, default: bool) -> bool:
    raw = row.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise InputError(f"'{raw}' is not true/false", source=source, row=n, field=key)


def date_field(row: Mapping[str, Any], key: str, source: Source, n: int | None) -> date:
    text = text_field(row, key, source, n)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"'{text}' is not a date (YYYY-MM-DD)", source=source, row=n, field=key) from None


def account_type_field(row: Mapping[str, Any], source: Source, n: int | None) -> str:
    kind = text_field(row, "account_type", source, n).lower()
    if kind not in ACCOUNT_TYPES:
        raise InputError(f"'{kind}' is not one of {ACCOUNT_TYPES}", source=source, row=n, field="account_type")
    return kind


def position_instrument(
    row: Mapping[str, Any],
    quantity: float,
    *,
    as_of: date,
    master: SecuritiesMaster,
    source: Source,
    n: int | None,
) -> tuple[Instrument, dict[str, Any]]:
    """The instrument a position row holds, and its repo terms (empty unless a repo).

    A row with any repo field is a repo on the named collateral and must fill all four;
    futures quantities must be whole contracts.
    """
    inst_text = text_field(row, "instrument", source, n)
    inst: Instrument = parse_instrument(inst_text, as_of=as_of, master=master, source=str(source), row=n)
    given = [f for f in REPO_FIELDS if str(row.get(f) if row.get(f) is not None else "").strip()]
    if not given:
        if isinstance(inst, TreasuryFuture | RateFuture) and quantity != round(quantity):
            raise InputError(f"{quantity} is not a whole number of contracts", source=source, row=n, field="quantity")
        return inst, {}
    missing = [f for f in REPO_FIELDS if f not in given]
    if missing:
        raise InputError(f"a repo row needs all of {list(REPO_FIELDS)}", source=source, row=n, field=missing[0])
    if not isinstance(inst, TreasuryBill | TreasuryBond):
        raise InputError("repo collateral must be a Treasury security", source=source, row=n, field="instrument")
    terms = {
        "repo_start": date_field(row, "repo_start", source, n),
        "repo_end": date_field(row, "repo_end", source, n),
        "repo_rate": number_field(row, "repo_rate", source, n),
        "cash_amount": quantity_field(row, source, n, "cash_amount"),
    }
    repo = make_repo(inst, start=terms["repo_start"], end=terms["repo_end"], rate_pct=terms["repo_rate"],
                     cash_amount=terms["cash_amount"], face=quantity, as_of=as_of, source=str(source), row=n)
    return repo, terms
