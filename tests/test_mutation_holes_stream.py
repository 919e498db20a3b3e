"""``/stream`` never delivers another member's margin update, checked once it could have
arrived (issue 17).

The older test asserted the absence of the other member's event as soon as the listener's own
events arrived, so a leak arriving later went unseen.  Here, for each member key:

1. the *other* member posts a trade, and the test waits until that event has reached the
   other member's stream **and** the admin stream (it has been delivered elsewhere);
2. after a grace of half a second, this member posts a trade of its own (a sentinel) and the
   test waits until the sentinel reaches this member's stream;
3. only then is the absence asserted: each subscriber's queue is first in, first out, so a
   leaked event queued when it was published (or up to the grace later) would have been read
   before the sentinel.

A real ``xmargin serve`` process on loopback (SQLite ledger, demo book of 2 members x 3
customers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xmargin.service.testing import ServerProcess, StreamListener

GRACE_S = 0.5


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("serve-stream"), data_dir=data_dir, members=2, customers=3)
    with srv:
        yield srv


class Listener(StreamListener):
    """Reads one ``/stream`` and keeps the ``(event, data)`` pairs in arrival order."""

    def wait_for(self, event: str, key: str | None = None, value: Any = None, timeout: float = 30.0) -> None:
        def seen() -> bool:
            return any(e == event and (key is None or d.get(key) == value) for e, d in self.events)
        with self.got:
            assert self.got.wait_for(seen, timeout), (event, value, self.events)

    def trade_ids(self) -> list[str]:
        with self.got:
            return [d["trade_id"] for e, d in self.events if e == "margin"]


def trade(client: httpx.Client, server: ServerProcess, member: str, trade_id: str) -> None:
    r = client.post("/trades", json={"trade_id": trade_id, "account": f"{member}-C0001", "instrument": "ZBZ24",
                                     "quantity": 3}, headers=server.headers(member))
    assert r.status_code == 201, r.text


def test_no_member_ever_receives_another_members_update(server: ServerProcess) -> None:
    listeners = {who: Listener(server.api + "/stream", server.headers(who)) for who in ("CM01", "CM02", "admin")}
    for li in listeners.values():
        li.start()
    for li in listeners.values():
        li.wait_for("hello")
    with httpx.Client(base_url=server.api, timeout=30) as client:
        for me, other in (("CM01", "CM02"), ("CM02", "CM01")):
            foreign, sentinel = f"by-{other}", f"sentinel-{me}"
            trade(client, server, other, foreign)
            listeners[other].wait_for("margin", "trade_id", foreign)  # delivered to its member...
            listeners["admin"].wait_for("margin", "trade_id", foreign)  # ...and to the admin
            time.sleep(GRACE_S)
            trade(client, server, me, sentinel)
            listeners[me].wait_for("margin", "trade_id", sentinel)
            listeners["admin"].wait_for("margin", "trade_id", sentinel)  # the admin sees every member
            assert foreign not in listeners[me].trade_ids(), listeners[me].events
    assert listeners["CM01"].trade_ids() == ["sentinel-CM01", "by-CM01"]
    assert listeners["CM02"].trade_ids() == ["by-CM02", "sentinel-CM02"]
    assert listeners["admin"].trade_ids() == ["by-CM02", "sentinel-CM01", "by-CM01", "sentinel-CM02"]
    for li in listeners.values():
        li.stop = True
