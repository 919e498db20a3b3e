"""Recording trades and following the ledger, without a lock across members.

* **Reads and what-ifs take no lock.**  The engine swaps an account's state (and its context,
  when an instrument is added) as one reference, so a reader on the event loop sees an
  account before or after a trade, never half of one.
* **Pricing runs outside every lock, bounded in time** (:meth:`Recorder.price`): a what-if or
  trade in an instrument the engine does not hold is priced in a small thread pool; past
  ``pricing_timeout_s`` the request is refused (:class:`PricingTimeout`, answered 422 naming the
  field) and nothing waits for it.
* **A trade waits for its account** (one :class:`asyncio.Lock` per account: two trades of one
  account are recorded in the order they arrived) and then for the ledger's writer lock
  (:class:`~xmargin.clearing.follow.WriterLock`): the hash chain is one sequence, so appends are
  one at a time across every process.  Inside it the process first applies what other
  processes recorded (:func:`~xmargin.clearing.follow.catch_up`), checks the trade id again, adds
  the pre-priced rows, records the trade with its margin result, and now and then a
  checkpoint.
* **Following** (:meth:`Recorder.follow`): the process compares the ledger head with its
  position and applies the entries others wrote, publishing each trade's update on its own
  ``/stream``.  So every worker's stream sees every update its keys may see.  On PostgreSQL it
  looks when an append's ``NOTIFY`` wakes it (:func:`~xmargin.clearing.follow.listen`), and
  every ``max(poll_s, 1 s)`` as a fallback; on SQLite (or with ``notify=False``) every ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from xmargin.clearing.checkpoint import list_checkpoints, take_checkpoint
from xmargin.clearing.follow import WriterLock, catch_up, listen, notifies
from xmargin.clearing.replay import decode_margins
from xmargin.errors import InputError, XMarginError
from xmargin.ledger.store import Entry
from xmargin.margin.context import MarginContext, build_context
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import Instrument, instrument_id
from xmargin.service import metrics
from xmargin.service.figures import clean, headline

if TYPE_CHECKING:
    from xmargin.service.auth import Principal

T = TypeVar("T")
log = logging.getLogger("xmargin.service")


class PricingTimeout(InputError):
    """Pricing for this request would take longer than the service allows (422)."""


class Recorder:
    """See the module docstring.  ``state``: the :class:`~xmargin.service.state.ServiceState`."""

    def __init__(self, state: Any, *, pricing_timeout_s: float = 5.0, pricing_threads: int = 2,
                 poll_s: float = 0.05, notify: bool = True) -> None:
        self.state = state
        self.pricing_timeout_s = pricing_timeout_s
        self.poll_s = poll_s
        self.notify = notify
        self.lock = asyncio.Lock()  # this process's writer / follower: one at a time
        self._accounts: dict[str, asyncio.Lock] = {}
        self._jobs: set[asyncio.Future[Any]] = set()  # ledger work in threads (see _in_thread)
        lg = state.session.ledger
        self.writer = WriterLock(lg) if lg is not None else None
        self.pool = ThreadPoolExecutor(pricing_threads, thread_name_prefix="xmargin-price")
        checkpoints = list_checkpoints(lg) if lg is not None else []
        self._last_checkpoint = checkpoints[0][0] if checkpoints else 0
        metrics.LEDGER_SEQ.set(state.session.state.entries)

    # -- pricing -----------------------------------------------------------------------------

    async def price(self, fn: Callable[..., T], *args: Any, field: str = "instrument") -> T:
        """``fn(*args)`` in the pricing pool, refused past ``pricing_timeout_s``."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.pool, fn, *args), self.pricing_timeout_s)
        except TimeoutError:
            metrics.REFUSED.inc()
            raise PricingTimeout(f"pricing this request takes longer than {self.pricing_timeout_s:g} s: refused "
                                 "(nothing was recorded)", field=field) from None

    def price_rows(self, inst: Instrument) -> MarginContext:
        """The context rows of one instrument on the engine's market and model (thread-safe)."""
        base = self.state.engine.context
        return build_context(base.snapshot, base.master, InstrumentUniverse.of([inst]), base.params,
                             base.eligibility)

    # -- recording -----------------------------------------------------------------------------

    def account_lock(self, account: str) -> asyncio.Lock:
        lock = self._accounts.get(account)
        if lock is None:
            lock = self._accounts[account] = asyncio.Lock()
        return lock

    async def record(self, principal: Principal, req: Any) -> tuple[dict[str, Any], int]:
        """Record a posted trade (see the module docstring); ``(result, HTTP status)``."""
        svc = self.state
        replay = svc.replay_of(principal, req)
        if replay is not None:
            metrics.TRADES.labels("replayed").inc()
            return replay, 200
        trade, inst = svc.prepare_trade(principal, req)
        rows = None
        if instrument_id(inst) not in svc.engine.context.universe._index:
            rows = await self.price(self.price_rows, inst)
        lock = self.account_lock(trade.account)
        async with lock, self.lock:
            result, events, replayed = await self._in_thread(self._write, principal, req, trade, inst, rows)
        if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
            self._accounts.pop(trade.account, None)
        for ev in events:
            svc.hub.publish(ev)
        metrics.TRADES.labels("replayed" if replayed else "recorded").inc()
        if not replayed:
            metrics.CALLS.inc(sum(1 for c in result["calls"] if c.get("kind") == "margin_call"))
        return result, 200 if replayed else 201

    def _write(self, principal: Principal, req: Any, trade: Any, inst: Instrument,
               rows: MarginContext | None) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        svc = self.state
        assert self.writer is not None
        with self.writer.held():
            events = self._catch_up()
            replay = svc.replay_of(principal, req)  # another process may have recorded this id meanwhile
            if replay is not None:
                return replay, events, True
            if getattr(req, "time", None) is None:  # stamped now, in the ledger's order (not before the lock)
                trade = dataclasses.replace(trade, time=datetime.now(UTC))
            if rows is not None:
                svc.engine.add_priced(rows)
            result = svc.record_trade(trade, inst)
            events.append(svc.update_event(result))
            self._maybe_checkpoint()
        metrics.LEDGER_SEQ.set(svc.session.state.entries)
        return result, events, False

    def _maybe_checkpoint(self) -> None:
        every = self.state.config.checkpoint_every
        position = self.state.session.state.entries
        if every and position - self._last_checkpoint >= every:
            info = take_checkpoint(self.state.session)
            self._last_checkpoint = info.seq
            log.info("checkpoint at entry %s (%s bytes)", info.seq, info.bytes,
                     extra={"fields": {"event": "checkpoint", "seq": info.seq}})

    # -- following ---------------------------------------------------------------------------

    def _catch_up(self) -> list[dict[str, Any]]:
        session = self.state.session
        try:
            tail = catch_up(session)
        except XMarginError:
            session._reload()
            raise
        if tail:
            self.state.version += 1
            self.state._cache.clear()
            metrics.LEDGER_SEQ.set(session.state.entries)
        return self._events(tail)

    def _events(self, tail: list[Entry]) -> list[dict[str, Any]]:
        """The ``/stream`` events of trades and cancels other processes recorded."""
        out: list[dict[str, Any]] = []
        eng = self.state.engine
        head: Entry | None = None
        current: dict[str, Any] | None = None
        for e in tail:
            if e.kind in ("trade", "cancel"):
                head, current = e, None
            elif e.kind == "margin_result" and head is not None and e.data["trigger"].get("ref") == head.ref:
                d, trade = e.data, head.data
                acc = eng.account(d["account"])
                current = {"type": "margin", "version": self.state.version, "ledger_seq": head.seq,
                           "trade_id": head.ref, "account": acc.account, "member": acc.member,
                           "account_type": acc.account_type, "instrument": trade.get("instrument"),
                           "quantity": float(trade["quantity"]) if "quantity" in trade else None,
                           "time": head.time, "figures": headline(decode_margins(d["margins"])), "calls": []}
                if head.kind == "cancel":
                    current["cancelled"] = True
                out.append(current)
            elif e.kind in ("margin_call", "excess") and current is not None:
                current["calls"].append(clean({**e.data, "kind": e.kind}))
            else:
                head, current = None, None
        return out

    async def follow(self) -> None:
        """Apply what other processes record (see the module docstring; runs until cancelled)."""
        session = self.state.session
        lg = session.ledger
        wake = asyncio.Event()
        listener = None
        if lg is not None and self.notify and notifies(lg):
            listener = asyncio.ensure_future(listen(lg, wake))
        try:
            while True:
                if listener is None:
                    await asyncio.sleep(self.poll_s)
                    if self.lock.locked():  # our own write catches up first; look next round
                        continue
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), max(self.poll_s, 1.0))
                    wake.clear()
                if lg is None:
                    continue
                try:
                    head = await asyncio.to_thread(lg.head_seq)
                    if head <= session.state.entries:
                        continue
                    async with self.lock:  # woken: wait for our own write rather than miss the news
                        events = await self._in_thread(self._catch_up)
                except XMarginError as exc:  # the database went away for a moment: try again
                    log.warning("following the ledger: %s", exc)
                    continue
                for ev in events:
                    self.state.hub.publish(ev)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread that a cancelled request cannot cut short: the caller
        may be cancelled (a shutdown past its grace period cancels the requests still running),
        but the ledger write goes on to its end and :meth:`close` waits for it."""
        job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])  # keep the caller's locks until the write has ended
            raise

    async def close(self) -> None:
        """Wait for the write in progress (never leave it half done), then stop the pool."""
        if self._jobs:  # writes whose requests were cancelled still hold the ledger: let them end
            await asyncio.gather(*list(self._jobs), return_exceptions=True)
        async with self.lock:
            self.pool.shutdown(wait=False, cancel_futures=True)
