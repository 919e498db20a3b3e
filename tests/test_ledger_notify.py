"""PostgreSQL ``LISTEN``/``NOTIFY`` between the processes of one ledger (:func:`xmargin.clearing.follow.listen`).

Against the real PostgreSQL of ``XMARGIN_TEST_POSTGRES_URL`` (skipped without it): a listener
on one connection is woken by an append made through another :class:`Ledger` (its own engine
and pool, as another process has), a batch the ledger refuses wakes no one (the notification
is sent in the appending transaction, delivered only at its commit).  SQLite sends nothing: its
followers poll.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from xmargin.clearing.follow import listen, notifies
from xmargin.ledger import Ledger
from xmargin.ledger.store import ConflictError, Event


def _trade(tid: str, qty: float, account: str = "A") -> Event:
    return Event("trade", "FICC", {"trade_id": tid, "account": account, "quantity": qty}, ref=tid)


async def _woken(wake: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(wake.wait(), timeout)
    except TimeoutError:
        return False
    wake.clear()
    return True


def test_sqlite_ledgers_do_not_notify(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as lg:
        assert not notifies(lg)


def test_an_append_by_another_writer_wakes_the_listener(ledger_url: str) -> None:
    if not ledger_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    with Ledger(ledger_url) as follower, Ledger(ledger_url) as writer:
        assert notifies(follower)

        async def scenario() -> list[bool]:
            wake = asyncio.Event()
            task = asyncio.ensure_future(listen(follower, wake))
            try:
                assert await _woken(wake, 10)  # set once on connecting: look for what came before
                out = [await _woken(wake, 0.3)]  # nothing appended: no wake-up
                await asyncio.to_thread(writer.append, [[_trade("T1", 5)]])
                out.append(await _woken(wake, 10))
                await asyncio.sleep(0.1)
                wake.clear()
                with pytest.raises(ConflictError):  # refused whole: rolled back, nothing delivered
                    await asyncio.to_thread(writer.append, [[_trade("T1", 7)]])
                out.append(await _woken(wake, 0.5))
                return out
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        assert asyncio.run(scenario()) == [False, True, False]
        assert follower.head()[0] == 1
