"""Trade files and streams: the input of ``xmargin ingest`` and ``xmargin watch``.

One row per event, CSV (header required, any column order) or JSON lines (one object per
line).  The columns follow the portfolio file contract (:mod:`xmargin.portfolio.io`) plus the
trade's identity and time::

    trade_id,account,member,account_type,instrument,quantity,time
      [,cross_margin][,archetype][,repo_start,repo_end,repo_rate,cash_amount][,action][,source]

* ``action`` (optional, default ``trade``):

  - ``trade``: ``quantity`` is the signed change of the position (buy / repo positive), in
    the portfolio file's units (face dollars for cash and repo, whole contracts for futures);
  - ``cancel``: cancels the earlier trade ``trade_id`` (only ``trade_id`` and ``time`` are
    read; the position change is reversed);
  - ``collateral``: a collateral movement into (``quantity`` > 0) or out of (< 0) the
    account; ``instrument`` is ``CASH`` (dollars) or a Treasury identifier (face dollars);
    ``trade_id`` is the movement's id.

* ``time``: ISO 8601 (``2025-10-31T14:30:00Z``); a time without an offset is UTC.  It must lie
  in the as-of date's session or after it (from :data:`SESSION_OPEN` Chicago time on the
  calendar day before ``as_of``: CME Globex opens the trade date at 17:00 CT the evening
  before) and not in the future beyond :data:`CLOCK_TOLERANCE` (a sender's clock may run a
  little ahead).  Ordering is per account (:mod:`xmargin.clearing.session`), so a time at the
  edge of the tolerance never blocks another member's trades.
* ``source`` (optional): ``FICC`` or ``CME``; by default the clearinghouse of the instrument
  (collateral: ``FICC``, which holds the cross-margining account's collateral).
* repo rows fill all four repo fields; ``cross_margin`` defaults to ``true``.

Rows are validated one by one; every problem raises :class:`~xmargin.errors.InputError`
naming the file, the row (CSV: line number, header = 1; JSON lines: line number) and the
field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from xmargin.errors import InputError
from xmargin.portfolio.book import Account
from xmargin.portfolio.fields import (
    REPO_FIELDS,
    account_type_field,
    bool_field,
    position_instrument,
    quantity_field,
    text_field,
)
from xmargin.reference.eligibility import clearinghouse
from xmargin.reference.lookup import Instrument, parse_instrument
from xmargin.reference.repo import make_repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

REQUIRED = ("trade_id", "account", "member", "account_type", "instrument", "quantity", "time")
OPTIONAL = ("cross_margin", "archetype", *REPO_FIELDS, "action", "source")
ACTIONS = ("trade", "cancel", "collateral")
SOURCES = ("FICC", "CME")
CASH = "CASH"

#: How far ahead of this machine's clock a trade time may be (senders' clocks drift).
CLOCK_TOLERANCE = timedelta(minutes=5)
#: The as-of date's session opens at this local time on the calendar day before (CME Globex).
SESSION_OPEN = time(17, 0)
SESSION_ZONE = ZoneInfo("America/Chicago")


def format_time(t: datetime) -> str:
    """Canonical UTC text of a time, fixed width so text order is time order."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, *, source: str = "time", row: int | None = None, field: str = "time") -> datetime:
    try:
        t = datetime.fromisoformat(text.strip())
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return t.astimezone(UTC)
    except ValueError:
        raise InputError(f"'{text}' is not an ISO 8601 time (e.g. 2025-10-31T14:30:00Z)",
                         source=source, row=row, field=field) from None
    except OverflowError:  # year 1 or 9999 shifted past the range of a datetime by its offset
        raise InputError(f"'{text}' is out of range", source=source, row=row, field=field) from None


def session_open(as_of: date) -> datetime:
    """When the as-of date's session opens (UTC): :data:`SESSION_OPEN` Chicago time the day before."""
    return datetime.combine(as_of - timedelta(days=1), SESSION_OPEN, SESSION_ZONE).astimezone(UTC)


def check_time(when: datetime, *, as_of: date, now: datetime | None = None, source: str = "time",
               row: int | None = None, field: str = "time") -> datetime:
    """``when`` if it lies between the as-of session's open and now plus :data:`CLOCK_TOLERANCE`."""
    latest = (now or datetime.now(UTC)) + CLOCK_TOLERANCE
    if when > latest:
        raise InputError(f"{format_time(when)} is in the future (this clock reads {format_time(latest - CLOCK_TOLERANCE)}, "
                         f"tolerance {CLOCK_TOLERANCE.total_seconds():.0f} s)", source=source, row=row, field=field)
    opens = session_open(as_of)
    if when < opens:
        raise InputError(f"{format_time(when)} is before the {as_of} session (opens {format_time(opens)})",
                         source=source, row=row, field=field)
    return when


@dataclass(frozen=True)
class Trade:
    """A trade: a signed change of one account's position in one instrument."""

    trade_id: str
    account: str
    member: str
    account_type: str
    instrument: str
    quantity: float
    time: datetime
    source: str
    cross_margin: bool = True
    archetype: str = ""
    repo_start: date | None = None
    repo_end: date | None = None
    repo_rate: float | None = None
    cash_amount: float | None = None

    @property
    def account_info(self) -> Account:
        return Account(self.account, self.member, self.account_type, self.cross_margin, self.archetype)

    @property
    def is_repo(self) -> bool:
        return self.repo_start is not None

    def payload(self) -> dict[str, Any]:
        """Plain data for the ledger (see :mod:`xmargin.ledger.hashing` for the encoding)."""
        out: dict[str, Any] = {
            "trade_id": self.trade_id,
            "account": self.account,
            "member": self.member,
            "account_type": self.account_type,
            "cross_margin": self.cross_margin,
            "instrument": self.instrument,
            "quantity": self.quantity,
            "time": format_time(self.time),
        }
        if self.archetype:
            out["archetype"] = self.archetype
        if self.is_repo:
            out |= {
                "repo_start": self.repo_start.isoformat(),  # type: ignore[union-attr]
                "repo_end": self.repo_end.isoformat(),  # type: ignore[union-attr]
                "repo_rate": self.repo_rate,
                "cash_amount": self.cash_amount,
            }
        return out

    @classmethod
    def from_payload(cls, data: Mapping[str, Any], source: str) -> Trade:
        repo = "repo_start" in data
        return cls(
            trade_id=data["trade_id"],
            account=data["account"],
            member=data["member"],
            account_type=data["account_type"],
            instrument=data["instrument"],
            quantity=float(data["quantity"]),
            time=parse_time(data["time"]),
            source=source,
            cross_margin=bool(data["cross_margin"]),
            archetype=data.get("archetype", ""),
            repo_start=date.fromisoformat(data["repo_start"]) if repo else None,
            repo_end=date.fromisoformat(data["repo_end"]) if repo else None,
            repo_rate=float(data["repo_rate"]) if repo else None,
            cash_amount=float(data["cash_amount"]) if repo else None,
        )


@dataclass(frozen=True)
class Cancel:
    """Cancellation of an earlier trade."""

    trade_id: str
    time: datetime
    source: str = ""  # filled from the cancelled trade when empty

    def payload(self) -> dict[str, Any]:
        return {"trade_id": self.trade_id, "time": format_time(self.time)}


@dataclass(frozen=True)
class CollateralMovement:
    """Collateral into (``amount`` > 0) or out of an account: ``CASH`` dollars or Treasury face."""

    movement_id: str
    account: str
    asset: str
    amount: float
    time: datetime
    source: str = "FICC"

    def payload(self) -> dict[str, Any]:
        return {"movement_id": self.movement_id, "account": self.account, "asset": self.asset,
                "amount": self.amount, "time": format_time(self.time)}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any], source: str) -> CollateralMovement:
        return cls(data["movement_id"], data["account"], data["asset"], float(data["amount"]),
                   parse_time(data["time"]), source)


Event = Trade | Cancel | CollateralMovement


# ----------------------------------------------------------------------------- rows


def _source(row: Mapping[str, Any], src: str, n: int, default: str) -> str:
    raw = str(row.get("source") or "").strip().upper()
    if not raw:
        return default
    if raw not in SOURCES:
        raise InputError(f"'{raw}' is not one of {SOURCES}", source=src, row=n, field="source")
    return raw


def parse_row(
    row: Mapping[str, Any],
    *,
    as_of: date,
    master: SecuritiesMaster,
    src: str,
    n: int,
    now: datetime | None = None,
) -> tuple[Event, Instrument | None]:
    """One validated event, with its resolved instrument (trades and collateral).

    ``now``: the clock the time is checked against (default: this machine's, UTC).
    """
    action = str(row.get("action") or "trade").strip().lower()
    if action not in ACTIONS:
        raise InputError(f"'{action}' is not one of {ACTIONS}", source=src, row=n, field="action")
    trade_id = text_field(row, "trade_id", src, n)
    when = check_time(parse_time(text_field(row, "time", src, n), source=src, row=n), as_of=as_of, now=now,
                      source=src, row=n)
    if action == "cancel":
        return Cancel(trade_id, when, _source(row, src, n, "")), None
    account = text_field(row, "account", src, n)
    qty = quantity_field(row, src, n)
    if qty == 0:
        raise InputError("quantity is zero: nothing to record", source=src, row=n, field="quantity")
    inst_text = text_field(row, "instrument", src, n).upper()
    if action == "collateral":
        inst: Instrument | None = None
        if inst_text != CASH:
            inst = parse_instrument(inst_text, as_of=as_of, master=master, source=src, row=n)
            if not isinstance(inst, TreasuryBill | TreasuryBond):
                raise InputError("collateral is CASH or a Treasury security", source=src, row=n, field="instrument")
        return CollateralMovement(trade_id, account, inst_text, qty, when, _source(row, src, n, "FICC")), inst
    member = text_field(row, "member", src, n)
    kind = account_type_field(row, src, n)
    xm = bool_field(row, "cross_margin", src, n, True)
    inst, repo = position_instrument(row, qty, as_of=as_of, master=master, source=src, n=n)
    trade = Trade(
        trade_id=trade_id,
        account=account,
        member=member,
        account_type=kind,
        instrument=inst_text,
        quantity=qty,
        time=when,
        source=_source(row, src, n, clearinghouse(inst)),
        cross_margin=xm,
        archetype=str(row.get("archetype") or "").strip(),
        **repo,
    )
    return trade, inst


def resolve_instrument(trade: Trade, *, as_of: date, master: SecuritiesMaster) -> Instrument:
    """The instrument of a (valid) trade, as :func:`parse_row` built it."""
    inst: Instrument = parse_instrument(trade.instrument, as_of=as_of, master=master,
                                        source=f"trade {trade.trade_id}")
    if trade.is_repo:
        assert isinstance(inst, TreasuryBill | TreasuryBond)
        inst = make_repo(inst, start=trade.repo_start, end=trade.repo_end,  # type: ignore[arg-type]
                         rate_pct=trade.repo_rate, cash_amount=trade.cash_amount,  # type: ignore[arg-type]
                         face=trade.quantity, as_of=as_of, source=f"trade {trade.trade_id}")
    return inst


def iter_rows(lines: Iterable[str], src: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, fields)`` of a CSV (with header) or JSON lines stream, read lazily.

    The format is told by the first non-blank line: ``{`` starts JSON lines, anything else
    is a CSV header.
    """
    it = iter(lines)
    first = None
    n = 0
    for line in it:
        n += 1
        if line.strip():
            first = line
            break
    if first is None:
        return
    if first.lstrip().startswith("{"):
        yield from _json_lines(first, n, it, src)
    else:
        yield from _csv_rows(first, n, it, src)


def _json_lines(first: str, n: int, it: Iterator[str], src: str) -> Iterator[tuple[int, dict[str, Any]]]:
    line: str | None = first
    while line is not None:
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON: {exc.msg}", source=src, row=n) from None
            if not isinstance(obj, dict):
                raise InputError("each line must be a JSON object", source=src, row=n)
            unknown = sorted(k for k in obj if k not in REQUIRED and k not in OPTIONAL)
            if unknown:
                raise InputError(f"unknown field(s) {unknown}", source=src, row=n, field=unknown[0])
            yield n, obj
        line = next(it, None)
        n += 1


def _csv_rows(first: str, n: int, it: Iterator[str], src: str) -> Iterator[tuple[int, dict[str, Any]]]:
    header = [h.strip() for h in next(csv.reader([first.lstrip("\ufeff")]))]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(f"duplicate column(s) {dupes}: which one holds the data is ambiguous", source=src, row=n,
                         field=dupes[0])
    for needed in ("trade_id", "time"):
        if needed not in header:
            raise InputError(f"missing column '{needed}'; expected {list(REQUIRED)}", source=src, row=n, field=needed)
    unknown = [c for c in header if c not in REQUIRED and c not in OPTIONAL]
    if unknown:
        raise InputError(f"unknown column(s) {unknown}", source=src, row=n, field=unknown[0])
    start = n
    reader = csv.reader(it)
    for cells in reader:
        row_n = start + reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            raise InputError("more fields than the header has", source=src, row=row_n)
        yield row_n, dict(zip(header, cells, strict=False))


def stream_rows(lines: Iterable[str], src: str) -> Iterator[tuple[int, dict[str, Any] | InputError]]:
    """Like :func:`iter_rows` for a live stream: one CSV row per line, and a bad line yields its
    :class:`InputError` instead of ending the stream (a bad CSV header still raises)."""
    it = iter(lines)
    n = 0
    header: list[str] | None = None
    is_json: bool | None = None
    for line in it:
        n += 1
        if not line.strip():
            continue
        if is_json is None:
            is_json = line.lstrip().startswith("{")
            if not is_json:
                for _ in _csv_rows(line, n, iter(()), src):  # validates the header (raises if bad)
                    pass
                header = [h.strip() for h in next(csv.reader([line.lstrip("\ufeff")]))]
                continue
        try:
            if is_json:
                yield next(_json_lines(line, n, iter(()), src))
            else:
                assert header is not None
                cells = next(csv.reader([line]))
                if len(cells) > len(header):
                    raise InputError("more fields than the header has", source=src, row=n)
                yield n, dict(zip(header, cells, strict=False))
        except InputError as exc:
            yield n, exc


def read_events(
    path: str | Path, *, as_of: date, master: SecuritiesMaster
) -> list[tuple[int, Event, Instrument | None]]:
    """Every row of a trades file, validated (nothing is returned unless all rows are valid)."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"cannot read trades file: {exc.strerror}", source=path) from None
    with fh:
        out: list[tuple[int, Event, Instrument | None]] = []
        try:
            for n, row in iter_rows(fh, str(path)):
                event, inst = parse_row(row, as_of=as_of, master=master, src=str(path), n=n)
                out.append((n, event, inst))
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8",
                             source=path) from None
        except csv.Error as exc:
            raise InputError(f"not a CSV file: {exc}", source=path, row=out[-1][0] + 1 if out else None) from None
    return out
