"""Fan-out of margin updates to the ``/stream`` subscribers of one process."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from xmargin.service.auth import Principal


class UpdateHub:
    """Fan-out of margin updates to server-sent-event subscribers (event-loop thread only)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._subs: dict[int, tuple[Principal, asyncio.Queue[dict[str, Any] | None]]] = {}
        self._next = 0
        self.closed = False

    def subscribe(self, principal: Principal) -> tuple[int, asyncio.Queue[dict[str, Any] | None]]:
        self._next += 1
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self.size)
        self._subs[self._next] = (principal, queue)
        return self._next, queue

    def unsubscribe(self, token: int) -> None:
        self._subs.pop(token, None)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event: dict[str, Any]) -> None:
        member = event.get("member")
        for token, (principal, queue) in list(self._subs.items()):
            if member is not None and not principal.sees_member(member):
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stalled reader: drop it, it reconnects and resyncs
                self._subs.pop(token, None)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def close(self) -> None:
        self.closed = True
        for _, queue in self._subs.values():
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subs.clear()
