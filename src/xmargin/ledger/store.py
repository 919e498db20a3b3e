"""The ledger store: an append-only, hash-chained event log in a SQL database.

``Ledger(url)`` opens (and by default creates) the log.  URLs: ``sqlite:///path.db`` (the
embedded default, ``sqlite:///xmargin-ledger.db``; a bare file path means the same), and
``postgresql://user@host:port/db`` (driven by psycopg 3; ``postgresql+psycopg://`` works too).
SQLite runs in WAL mode with ``synchronous=FULL``; writers take the write lock up front
(``BEGIN IMMEDIATE``) and wait up to 30 s for one another.

:meth:`Ledger.append` writes **groups** of events (a trade with the margin result and the
margin call it caused) in one database transaction: either all of them are recorded or none
(an error or a killed process leaves the log as it was).  Within it:

* idempotency: a group whose first event has a ``ref`` already recorded under the same kind
  with the same content is skipped and reported as a duplicate (a trade id is recorded
  once); the same id with different content is refused (:class:`ConflictError`); a repeated
  cancel is a duplicate whatever its time;
* a cancel must name a trade already recorded (or earlier in the batch):
  :class:`UnknownTradeError`;
* order: an event's business ``time`` may not be earlier than the latest one already recorded
  from the same source **and scope** (:class:`OutOfOrderError`).  The scope is the account
  (:mod:`xmargin.clearing` sets it), so one member's late or early clock never blocks
  another's trades; events without a scope are ordered per source.  The scope is an index
  column, not part of the hashed payload (the payload holds the account it is made from);
* sequence numbers continue from the head without gaps; the unique constraints on ``seq`` and
  ``(kind, ref)`` back these checks inside the database.

Any refusal raises before anything is written; the whole batch is rolled back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)

from xmargin.errors import XMarginError
from xmargin.ledger.hashing import GENESIS, canonical_json, entry_hash, normalize
from xmargin.ledger.schema import (
    FORMAT,
    POSTGRES_TRIGGERS,
    SCOPE_MIGRATION,
    SQLITE_TRIGGERS,
    entries,
    head,
    metadata,
)

DEFAULT_URL = "sqlite:///xmargin-ledger.db"
SOURCES = ("FICC", "CME", "engine")
KINDS = (
    "trade",
    "cancel",
    "collateral",
    "market_snapshot",
    "margin_result",
    "margin_call",
    "excess",
    "position_snapshot",
    "checkpoint",
)
FAILPOINT_ENV = "XMARGIN_LEDGER_FAILPOINT"
NOTIFY_CHANNEL = "xmargin_ledger"  # PostgreSQL: NOTIFY on every append, payload the new head's seq
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


class LedgerError(XMarginError):
    """A ledger operation that was refused or failed; nothing was written."""


class ConflictError(LedgerError):
    """An id already recorded with different content."""


class UnknownTradeError(LedgerError):
    """A cancel of a trade the ledger does not hold."""


class OutOfOrderError(LedgerError):
    """An event older than the latest one recorded from its source."""


@dataclass(frozen=True)
class Event:
    """An event to record.  ``time`` is the business time (canonical UTC text) or None."""

    kind: str
    source: str
    data: Mapping[str, Any]
    ref: str | None = None
    time: str | None = None
    scope: str | None = None  # ordering scope (an account); None: ordered per source


@dataclass(frozen=True)
class Entry:
    """A recorded entry (``data`` is the decoded payload ``data``: floats are strings)."""

    seq: int
    timestamp: str
    source: str
    kind: str
    ref: str | None
    time: str | None
    payload: str
    prev_hash: str
    hash: str
    scope: str | None = None  # ordering scope column (not hashed)

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.payload)["data"]

    def export(self) -> dict[str, Any]:
        """The JSON-lines export record (the payload verbatim, so anyone can recheck the hash)."""
        return {"seq": self.seq, "timestamp": self.timestamp, "source": self.source, "kind": self.kind,
                "ref": self.ref, "time": self.time, "payload": self.payload, "prev_hash": self.prev_hash,
                "hash": self.hash}


@dataclass
class AppendResult:
    recorded: list[Entry] = field(default_factory=list)
    duplicates: list[Entry] = field(default_factory=list)  # the entries already holding skipped groups


def normalize_url(url: str | Path) -> str:
    """A SQLAlchemy URL for what the user typed (see the module docstring)."""
    text_url = str(url)
    if "://" not in text_url:
        return f"sqlite:///{text_url}"
    if text_url.startswith("postgres://"):
        text_url = "postgresql://" + text_url[len("postgres://"):]
    if text_url.startswith("postgresql://"):
        text_url = "postgresql+psycopg://" + text_url[len("postgresql://"):]
    return text_url


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_append_calls = 0


def _failpoint(name: str) -> None:
    """Test hook: with ``XMARGIN_LEDGER_FAILPOINT=before_commit[:N]`` the N-th (default first)
    append of this process stops just before its commit, says so on stderr and waits to be
    killed.  Unset (always, outside tests) it does nothing."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point == name and _append_calls == int(nth or 1):
        sys.stderr.write(f"FAILPOINT {name} reached\n")
        sys.stderr.flush()
        time.sleep(3600)


class Ledger:
    """The event log at ``url`` (see the module docstring)."""

    def __init__(self, url: str | Path = DEFAULT_URL, *, create: bool = True) -> None:
        self._poll: Any = None  # the DB-API connection kept for head_seq
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise LedgerError(f"--ledger {url}: not a database URL ({exc})") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise LedgerError(f"--ledger {url}: only sqlite:/// and postgresql:// ledgers are supported")
        self._shown = parsed.render_as_string(hide_password=True)
        if self.dialect == "sqlite":
            db = parsed.database or ""
            if db in ("", ":memory:"):
                raise LedgerError(f"--ledger {url}: the SQLite ledger must be a file")
            if not create and not Path(db).is_file():
                raise LedgerError(f"no ledger at {db} (nothing has been ingested there)")
            self._engine = create_engine(self.url, connect_args={"timeout": 30})
            _sqlite_setup(self._engine)
        else:
            try:
                self._engine = create_engine(self.url, pool_pre_ping=True)
            except (ArgumentError, ImportError) as exc:
                raise LedgerError(f"--ledger {self._shown}: {exc}") from None
        try:
            self._ensure_schema(create)
        except DBAPIError as exc:  # also "file is not a database" (sqlite3.DatabaseError)
            self._engine.dispose()
            raise LedgerError(f"cannot open ledger {self._shown}: {_reason(exc)}") from None

    def __repr__(self) -> str:
        return f"Ledger({self._shown!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._drop_poll()
        self._engine.dispose()

    def _drop_poll(self) -> None:
        poll, self._poll = self._poll, None
        if poll is not None:
            with contextlib.suppress(Exception):
                poll.close()

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- schema ------------------------------------------------------------------------

    def _ensure_schema(self, create: bool) -> None:
        if inspect(self._engine).has_table("ledger_head"):
            with self._engine.connect() as conn:
                row = conn.execute(select(head).where(head.c.id == 1)).first()
            if row is None or row.format != FORMAT:
                raise LedgerError(f"{self._shown} is not an {FORMAT} ledger (head row missing or of another format)")
            insp = inspect(self._engine)
            if "scope" not in {c["name"] for c in insp.get_columns("ledger_entries")}:
                with self._write() as conn, conn.begin():
                    for ddl in SCOPE_MIGRATION:
                        conn.exec_driver_sql(ddl)
            if not insp.has_table("ledger_checkpoints_signed"):
                with self._write() as conn, conn.begin():
                    metadata.create_all(conn, checkfirst=True)
            return
        if not create:
            raise LedgerError(f"no ledger at {self._shown} (nothing has been ingested there)")
        with self._write() as conn, conn.begin():
            metadata.create_all(conn, checkfirst=True)
            for ddl in SQLITE_TRIGGERS if self.dialect == "sqlite" else POSTGRES_TRIGGERS:
                conn.exec_driver_sql(ddl)
            if conn.execute(select(head.c.id)).first() is None:
                conn.execute(insert(head).values(id=1, seq=0, hash=GENESIS, format=FORMAT))

    def _write(self):  # type: ignore[no-untyped-def]
        return self._engine.connect().execution_options(ledger_write=True)

    # -- reading -----------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """``(last seq, last hash)`` as the head row records them."""
        with self._engine.connect() as conn:
            row = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
        return int(row.seq), str(row.hash)

    def head_seq(self) -> int:
        """The last seq, as :meth:`head` reads it, by one statement on a DB-API connection kept
        for it: what a follower polls (20 times a second on SQLite), at about a tenth of
        :meth:`head`'s CPU (which builds a statement and checks a connection out and back each
        time).  Each look ends its transaction, so the next sees what others committed since.
        One caller at a time (the follower); a failed connection is dropped and re-opened on
        the next look."""
        try:
            if self._poll is None:
                self._poll = self._engine.raw_connection()
            cur = self._poll.cursor()
            try:
                cur.execute("SELECT seq FROM ledger_head WHERE id = 1")
                row = cur.fetchone()
            finally:
                cur.close()
            self._poll.rollback()
        except Exception as exc:  # noqa: BLE001 - the driver's own errors (sqlite3, psycopg) are not wrapped
            self._drop_poll()
            raise LedgerError(f"cannot read the head of {self._shown}: {exc}") from None
        if row is None:
            raise LedgerError(f"{self._shown} has no head row")
        return int(row[0])

    def entries(self, start: int = 1, *, page: int = 2000) -> Iterator[Entry]:
        """Every entry from ``seq >= start`` in sequence order (read page by page)."""
        last = start - 1
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(entries).where(entries.c.seq > last).order_by(entries.c.seq).limit(page)
                ).all()
            for r in rows:
                yield _entry(r)
            if len(rows) < page:
                return
            last = int(rows[-1].seq)

    def find(self, kind: str, ref: str) -> Entry | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(entries).where(entries.c.kind == kind, entries.c.ref == ref)).first()
        return None if row is None else _entry(row)

    def last_time(self, source: str) -> str | None:
        with self._engine.connect() as conn:
            return conn.execute(select(func.max(entries.c.event_time)).where(entries.c.source == source)).scalar()

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(entries)).scalar() or 0)

    # -- writing -------------------------------------------------------------------------------

    def append(self, groups: Sequence[Sequence[Event]]) -> AppendResult:
        """Record groups of events in one transaction (see the module docstring)."""
        global _append_calls
        _append_calls += 1
        data = {id(ev): _check_event(ev) for group in groups for ev in group}  # normalized once
        result = AppendResult()
        try:
            with self._write() as conn, conn.begin():
                seq, prev = conn.execute(
                    select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()
                ).one()
                seq = int(seq)
                last_ts = conn.execute(select(entries.c.recorded_at).where(entries.c.seq == seq)).scalar() or ""
                known = _find_many(conn, {(ev.kind, ev.ref) for group in groups for ev in group if ev.ref is not None}
                                   | {("trade", ev.ref) for group in groups for ev in group
                                      if ev.kind == "cancel" and ev.ref is not None})
                batch: dict[tuple[str, str], Event] = {}
                last_times = _latest_times(conn, {(ev.source, ev.scope) for group in groups for ev in group
                                                  if ev.time is not None})
                rows: list[dict[str, Any]] = []
                for group in groups:
                    if not group:
                        continue
                    first = group[0]
                    if first.ref is not None:
                        dup = self._existing(conn, batch, first, known)
                        if dup is not None:
                            result.duplicates.append(dup)
                            continue
                    for ev in group:
                        if ev is not first and ev.ref is not None and self._existing(conn, batch, ev, known) is not None:
                            raise ConflictError(f"{ev.kind} {ev.ref} is already recorded")
                        if ev.kind == "cancel" and ev.ref is not None:
                            if ("trade", ev.ref) not in batch and known.get(("trade", ev.ref)) is None:
                                raise UnknownTradeError(f"cannot cancel trade {ev.ref}: the ledger holds no such trade")
                        if ev.time is not None:
                            key = (ev.source, ev.scope)
                            latest = last_times[key]
                            if latest is not None and ev.time < latest:
                                what = f"{ev.kind} {ev.ref}" if ev.ref else ev.kind
                                scope = f" for {ev.scope}" if ev.scope is not None else ""
                                raise OutOfOrderError(
                                    f"out of order: {what} at {ev.time} is earlier than the latest {ev.source} event"
                                    f"{scope} already recorded ({latest}); nothing from this batch was recorded"
                                )
                            last_times[key] = ev.time
                        seq += 1
                        now = _now()
                        last_ts = now if now > last_ts else last_ts
                        payload = _payload(seq, last_ts, ev, data[id(ev)])
                        digest = entry_hash(prev, payload)
                        row = {"seq": seq, "recorded_at": last_ts, "source": ev.source, "kind": ev.kind,
                               "ref": ev.ref, "event_time": ev.time, "payload": payload, "prev_hash": prev,
                               "hash": digest, "scope": ev.scope}
                        rows.append(row)
                        if ev.ref is not None:
                            batch[(ev.kind, ev.ref)] = ev
                        prev = digest
                if rows:
                    conn.execute(insert(entries), rows)
                    conn.execute(update(head).where(head.c.id == 1).values(seq=seq, hash=prev))
                    self._notify(conn, seq)
                _failpoint("before_commit")
        except IntegrityError as exc:
            raise LedgerError(f"ledger {self._shown} refused the batch (another writer recorded the same id or "
                              f"sequence number): {_reason(exc)}; nothing from this batch was recorded") from None
        except (OperationalError, DBAPIError) as exc:
            raise LedgerError(f"cannot write to ledger {self._shown}: {_reason(exc)}; "
                              "nothing from this batch was recorded") from None
        result.recorded = [_entry_from_row(r) for r in rows]
        return result

    def append_verbatim(self, rows: Sequence[Entry]) -> int:
        """Copy entries of another replica as they are (same seq, timestamps and hashes), after the head.

        Each must continue the chain: ``seq`` = head + 1, previous hash = the head's hash, and
        ``hash = SHA-256(previous hash + payload)``; otherwise nothing is written.
        """
        if not rows:
            return 0
        try:
            with self._write() as conn, conn.begin():
                seq, prev = conn.execute(
                    select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()
                ).one()
                out = []
                for e in rows:
                    if e.seq != int(seq) + 1 or e.prev_hash != prev or entry_hash(prev, e.payload) != e.hash:
                        raise LedgerError(f"entry {e.seq} does not continue the chain of {self._shown} at "
                                          f"entry {seq} (hash {prev[:12]}...); nothing was copied")
                    out.append({"seq": e.seq, "recorded_at": e.timestamp, "source": e.source, "kind": e.kind,
                                "ref": e.ref, "event_time": e.time, "payload": e.payload, "prev_hash": e.prev_hash,
                                "hash": e.hash, "scope": e.scope})
                    seq, prev = e.seq, e.hash
                conn.execute(insert(entries), out)
                conn.execute(update(head).where(head.c.id == 1).values(seq=seq, hash=prev))
                self._notify(conn, int(seq))
        except IntegrityError as exc:
            raise LedgerError(f"ledger {self._shown} refused the copy: {_reason(exc)}; nothing was copied") from None
        except (OperationalError, DBAPIError) as exc:
            raise LedgerError(f"cannot write to ledger {self._shown}: {_reason(exc)}; nothing was copied") from None
        return len(out)

    def _notify(self, conn: Any, seq: int) -> None:
        """PostgreSQL: ``NOTIFY`` :data:`NOTIFY_CHANNEL` with the new head's sequence number, in
        the appending transaction (delivered at its commit, never for a rolled-back batch), so
        the processes following this ledger wake at once instead of polling
        (:func:`xmargin.clearing.follow.listen`).  SQLite: nothing (followers poll)."""
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_notify(:channel, :seq)"), {"channel": NOTIFY_CHANNEL, "seq": str(seq)})

    def _existing(self, conn: Any, batch: dict[tuple[str, str], Event], ev: Event,
                  known: dict[tuple[str, str], Entry]) -> Entry | None:
        """The entry already holding ``ev``'s ref if it is the same event; raise if it differs."""
        assert ev.ref is not None
        prior = batch.get((ev.kind, ev.ref))
        if prior is not None:
            if ev.kind == "cancel" or (prior.source, canonical_json(prior.data)) == (ev.source, canonical_json(ev.data)):
                return Entry(0, "", prior.source, prior.kind, prior.ref, prior.time, "", "", "")
            raise ConflictError(f"{ev.kind} {ev.ref} appears twice in the batch with different content")
        found = known.get((ev.kind, ev.ref))
        if found is None:
            return None
        if ev.kind == "cancel":
            return found
        stored = json.loads(found.payload)
        if stored["source"] == ev.source and canonical_json(stored["data"]) == canonical_json(ev.data):
            return found
        raise ConflictError(
            f"{ev.kind} {ev.ref} is already recorded (seq {found.seq}) with different content: "
            f"recorded {canonical_json(stored['data'])}, now {canonical_json(ev.data)}"
        )


def _find_many(conn: Any, keys: set[tuple[str, str]], chunk: int = 500) -> dict[tuple[str, str], Entry]:
    """The recorded entries of ``(kind, ref)`` pairs, by pair: one query per ``chunk`` ids
    instead of one per event (a batch of thousands of trades)."""
    out: dict[tuple[str, str], Entry] = {}
    for kind in sorted({k for k, _ in keys}):  # kind = ? AND ref IN (...): the (kind, ref) index
        refs = sorted(r for k, r in keys if k == kind)
        for i in range(0, len(refs), chunk):
            for row in conn.execute(select(entries).where(entries.c.kind == kind,
                                                          entries.c.ref.in_(refs[i:i + chunk]))):
                out[(row.kind, row.ref)] = _entry(row)
    return out


def _latest_times(conn: Any, keys: set[tuple[str, str | None]], chunk: int = 500) -> dict[tuple[str, str | None],
                                                                                           str | None]:
    """The latest business time recorded per ``(source, scope)`` (None: none yet), in one
    grouped query per source and ``chunk`` scopes (the (source, scope, time) index)."""
    out: dict[tuple[str, str | None], str | None] = dict.fromkeys(keys)
    for source in sorted({src for src, _ in keys}):
        scopes = sorted(sc for src, sc in keys if src == source and sc is not None)
        for i in range(0, len(scopes), chunk):
            q = (select(entries.c.scope, func.max(entries.c.event_time))
                 .where(entries.c.source == source, entries.c.scope.in_(scopes[i:i + chunk]))
                 .group_by(entries.c.scope))
            for scope, latest in conn.execute(q):
                out[(source, scope)] = latest
        if (source, None) in keys:
            out[(source, None)] = conn.execute(select(func.max(entries.c.event_time)).where(
                entries.c.source == source, entries.c.scope.is_(None))).scalar()
    return out


def _payload(seq: int, timestamp: str, ev: Event, data: Any) -> str:
    """The canonical payload of ``ev`` (``data``: its data already normalized), as
    ``canonical_json`` of the whole document gives it."""
    return json.dumps({"seq": seq, "timestamp": timestamp, "source": ev.source, "kind": ev.kind, "ref": ev.ref,
                       "time": ev.time, "data": data}, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _entry(r: Any) -> Entry:
    return Entry(int(r.seq), r.recorded_at, r.source, r.kind, r.ref, r.event_time, r.payload, r.prev_hash, r.hash,
                 getattr(r, "scope", None))


def _entry_from_row(r: Mapping[str, Any]) -> Entry:
    return Entry(r["seq"], r["recorded_at"], r["source"], r["kind"], r["ref"], r["event_time"], r["payload"],
                 r["prev_hash"], r["hash"], r.get("scope"))


def _check_event(ev: Event) -> Any:
    """Checks ``ev`` (:class:`LedgerError` naming it); returns its data normalized (canonical form)."""
    if ev.kind not in KINDS:
        raise LedgerError(f"unknown event kind {ev.kind!r}; expected one of {KINDS}")
    if ev.source not in SOURCES:
        raise LedgerError(f"unknown source {ev.source!r} for {ev.kind}; expected one of {SOURCES}")
    if ev.scope is not None and (not isinstance(ev.scope, str) or not ev.scope or len(ev.scope) > 256):
        raise LedgerError(f"{ev.kind}: the scope must be 1 to 256 characters, got {ev.scope!r}")
    if ev.ref is not None and (not isinstance(ev.ref, str) or not ev.ref or len(ev.ref) > 256):
        raise LedgerError(f"{ev.kind}: the id must be 1 to 256 characters, got {ev.ref!r}")
    if ev.time is not None and not (isinstance(ev.time, str) and TIME_RE.match(ev.time)):
        raise LedgerError(f"{ev.kind} {ev.ref or ''}: time {ev.time!r} is not canonical UTC text "
                          "(YYYY-MM-DDTHH:MM:SS.ffffffZ)")
    try:
        return normalize(dict(ev.data))
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"{ev.kind} {ev.ref or ''}: cannot be recorded: {exc}") from None


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "BEGIN")


__all__ = [
    "DEFAULT_URL",
    "AppendResult",
    "ConflictError",
    "Entry",
    "Event",
    "Ledger",
    "LedgerError",
    "OutOfOrderError",
    "UnknownTradeError",
    "normalize_url",
]
