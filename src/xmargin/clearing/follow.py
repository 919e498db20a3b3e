"""Several processes on one ledger: a writer lock across processes, and following the log.

Each process serving the ledger holds a full replica of the engine state, kept in step by
applying every entry in sequence order -- its own and the other processes' -- exactly as a
replay does.  So every process's figures are those of a replay, and an account's trades are
applied in the order the log holds them, whichever process recorded them.

Writing (:class:`WriterLock`): a process first takes the ledger-wide writer lock
(PostgreSQL: a session advisory lock; SQLite: an exclusive ``flock`` on ``<database>.writer``
beside the file, so one host), applies the entries other processes wrote since its position
(:func:`catch_up`), then computes and appends its own group, then releases.  The margin result
it records is therefore computed on the state the log holds just before it.  A writer that
does not take the lock (``xmargin ingest`` run by hand) is still safe: the session sees that
its entries did not follow its position and rebuilds from the log
(:meth:`~xmargin.ledger.LedgerSession._append`).

Following (:func:`catch_up`, called by each process's follower): entries after the position
are read and applied; the caller publishes them (server-sent events).  On PostgreSQL every
append sends ``NOTIFY xmargin_ledger`` in its transaction (delivered at commit) and each
process's follower waits on :func:`listen` (``LISTEN``) instead of polling: a trade recorded by
one process wakes the others at once.  A lost connection is re-opened (and the follower told
to look, since notifications sent meanwhile are lost); the follower still looks now and then
without a notification, as a fallback.  SQLite has no notifications: followers poll the head.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from xmargin.clearing.checkpoint import apply_tail
from xmargin.ledger.store import NOTIFY_CHANNEL, Entry, Ledger, LedgerError

LOCK_KEY = zlib.crc32(b"xmargin-ledger-writer")  # the advisory lock id (PostgreSQL)
log = logging.getLogger("xmargin.service")


class WriterLock:
    """The ledger-wide writer lock (see the module docstring); re-entrant within a thread."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._local = threading.Lock()  # one writer per process as well
        self._path: Path | None = None
        if ledger.dialect == "sqlite":
            db = make_url(ledger.url).database or ""
            self._path = Path(db).resolve().with_name(Path(db).name + ".writer")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._local:
            if self._path is not None:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                return
            with self.ledger.engine.connect() as conn:
                try:
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
                    conn.commit()
                except Exception as exc:  # noqa: BLE001 - a database that cannot lock cannot be written either
                    raise LedgerError(f"cannot take the ledger writer lock: {exc}") from None
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                    conn.commit()


def catch_up(session: Any) -> list[Entry]:
    """Apply to ``session`` (a :class:`~xmargin.ledger.LedgerSession`) the entries after its
    position; returns them (empty when it is at the head)."""
    ledger: Ledger | None = session.ledger
    if ledger is None:
        return []
    state = session.state
    if ledger.head()[0] <= state.entries:
        return []
    return apply_tail(state, ledger.entries(state.entries + 1), session.data_dir)


def notifies(ledger: Ledger) -> bool:
    """Whether appends to ``ledger`` send notifications :func:`listen` can wait on."""
    return ledger.dialect == "postgresql"


async def listen(ledger: Ledger, wake: asyncio.Event, *, retry_s: float = 1.0) -> None:
    """Set ``wake`` on every append to ``ledger`` (PostgreSQL ``LISTEN``; runs until cancelled).

    Its own connection (psycopg, asynchronous, autocommit), not one of the pool's.  ``wake`` is
    also set each time the connection is (re)opened: what was appended while it was down sent
    notifications no one heard."""
    import psycopg

    url = make_url(ledger.url).set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                wake.set()
                async for _ in conn.notifies():
                    wake.set()
        except psycopg.Error as exc:
            log.warning("listening to the ledger: %s; again in %g s", exc, retry_s)
            await asyncio.sleep(retry_s)
