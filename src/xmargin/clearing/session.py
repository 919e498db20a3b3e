"""A live session: the engine, the collateral book and the ledger kept in step.

:meth:`LedgerSession.open` replays the ledger (so a restarted process carries on exactly where
the log ends), records a market snapshot when there is none yet or the caller asks for
another, and :meth:`LedgerSession.ingest` takes validated trade-file rows:

1. **dry run** first, writing nothing: ids already recorded with the same content are
   duplicates (skipped), with other content a conflict; a cancel must name a known trade; an
   event earlier than the latest of its source for the same account is out of order (per
   account, so one member's clock never blocks another's trades); an account must agree with
   its first trade; a withdrawal may not exceed the collateral held.  Any problem raises an
   :class:`~xmargin.errors.InputError` naming the file, row and field, and nothing is recorded;
2. then each row becomes one **group** (the trade, cancel or movement; the margin result of the
   account, with model and parameters; a margin call or excess when one is due) and groups are
   written ``batch_size`` at a time, each batch in one transaction.

Should a write fail (or another writer get there first), the session rebuilds itself from the
ledger, so the engine never holds what the log does not.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from xmargin.clearing.collateral import CollateralBook
from xmargin.clearing.reconcile import AccountView, engine_view
from xmargin.clearing.replay import (
    Market,
    ReplayState,
    decode_margins,
    encode_margins,
    market_data,
    replay,
)
from xmargin.engine.live import LiveEngine
from xmargin.engine.trades import Cancel, CollateralMovement, Trade
from xmargin.engine.trades import Event as InputEvent
from xmargin.errors import InputError, XMarginError
from xmargin.ledger.hashing import canonical_json
from xmargin.ledger.store import Event, Ledger, LedgerError
from xmargin.reference.lookup import Instrument

log = logging.getLogger("xmargin.service")

Row = tuple[int, InputEvent, Instrument | None]


@dataclass
class IngestReport:
    recorded: int = 0  # rows recorded
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (row, id) already in the ledger
    entries: int = 0  # ledger entries written
    calls: list[dict[str, Any]] = field(default_factory=list)  # margin calls / excess raised
    accounts: set[str] = field(default_factory=set)


class LedgerSession:
    """See the module docstring.  ``ledger`` None: compute only, record nothing (dry run)."""

    def __init__(self, ledger: Ledger | None, state: ReplayState, data_dir: str | Path | None = None,
                 *, resume: bool = False, progress: Callable[[str], None] | None = None) -> None:
        self.ledger = ledger
        self.progress = progress  # told which checkpoint a reload starts from
        self.state = state
        self.data_dir = data_dir
        self.resume = resume  # reopen from the latest checkpoint (xmargin.clearing.checkpoint), not the first entry

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, ledger: Ledger | None, *, data_dir: str | Path | None = None, resume: bool = False,
             progress: Callable[[str], None] | None = None) -> LedgerSession:
        """The session where ``ledger`` ends (replayed; with ``resume``, from its latest checkpoint);
        give it a market with :meth:`use_market` if the ledger holds none yet."""
        session = cls(ledger, ReplayState(), data_dir, resume=resume, progress=progress)
        session._reload()
        return session

    def use_market(self, market: Market, *, label: str = "eod") -> bool:
        """Record ``market`` and recompute everything unless it is the one in force; True if recorded."""
        current = self.state.market
        if current is not None and canonical_json(
            market_data(current.snapshot, current.params, current.eligibility, current.schedule, label)
        ) == canonical_json(market_data(market.snapshot, market.params, market.eligibility, market.schedule, label)):
            return False
        self.set_market(market, label=label)
        return True

    @property
    def engine(self) -> LiveEngine:
        assert self.state.engine is not None
        return self.state.engine

    @property
    def collateral(self) -> CollateralBook:
        assert self.state.collateral is not None
        return self.state.collateral

    @property
    def market(self) -> Market:
        assert self.state.market is not None
        return self.state.market

    # -- writing ------------------------------------------------------------------------------

    def _append(self, groups: Sequence[Sequence[Event]]) -> tuple[int, list[int]]:
        """Record groups; returns (entries written, seq of each group's first entry)."""
        if self.ledger is None or not groups:
            return 0, []
        try:
            result = self.ledger.append(groups)
        except XMarginError:
            self._reload()
            raise
        if result.duplicates:  # another writer recorded some of these first
            self._reload()
            raise LedgerError(f"{len(result.duplicates)} event(s) were recorded by another writer meanwhile; "
                              "the session was rebuilt from the ledger: run again")
        if result.recorded and result.recorded[0].seq != self.state.entries + 1:
            self._reload()  # another writer's entries came first: follow the log (xmargin.clearing.follow)
        else:
            self.state.entries += len(result.recorded)
            for e in result.recorded:  # kept as a replay keeps them (checkpoints save them)
                if e.kind == "margin_result":
                    data = e.data
                    self.state.recorded[data["account"]] = decode_margins(data["margins"])
                    self.state.recorded_seq[data["account"]] = e.seq
        return len(result.recorded), [e.seq for e in result.recorded]

    def _reload(self) -> None:
        if self.ledger is not None:
            if self.resume:
                from xmargin.clearing.checkpoint import resume

                self.state = resume(self.ledger, data_dir=self.data_dir, progress=self.progress)
            else:
                self.state = replay(self.ledger, data_dir=self.data_dir)

    def _params_dict(self, params: Any) -> dict[str, Any]:
        """``params.to_dict()``, kept while the parameters are the same object (every margin
        result records them; a deep ``asdict`` each time was a tenth of a fresh start)."""
        memo = getattr(self, "_params_memo", None)
        if memo is None or memo[0] is not params:
            memo = self._params_memo = (params, params.to_dict())
        return memo[1]

    def _model(self) -> dict[str, Any]:
        m = self.market
        ctx = self.engine.context
        return {"name": "xmargin cross-margin (FICC VaR/floor/concentration, CME SPAN, combined VaR reduction)",
                "as_of": m.snapshot.as_of.isoformat(), "market_seq": self.state.market_seq,
                "params": self._params_dict(m.params), "eligibility": m.eligibility.source,
                "ficc_scenarios": ctx.ficc_scenarios.size, "cme_scenarios": ctx.cme_scenarios.size}

    def _result_events(self, account: str, trigger: dict[str, Any]) -> list[Event]:
        row = self.engine.margin(account)
        events = [Event("margin_result", "engine", {"account": account, "trigger": trigger, "model": self._model(),
                                                     "margins": encode_margins(row)})]
        due = self.collateral.assess(account, float(row["total_after"]))
        if due is not None:
            events.append(Event(due[0], "engine", due[1]))
        return events

    def set_market(self, market: Market, *, label: str = "eod") -> None:
        """Record a market snapshot and recompute every account (one transaction)."""
        self.state.start_market(market, None)
        for p in self.engine.ended:  # positions whose instrument ended: gone from the account (engine.live)
            log.warning("market %s: %s of %s in account %s ended on %s and left the account", market.snapshot.as_of,
                        f"{p.quantity:,f}".rstrip("0").rstrip("."), p.instrument, p.account, p.ended)
        events = [Event("market_snapshot", "engine",
                        market_data(market.snapshot, market.params, market.eligibility, market.schedule, label))]
        # the market entry's seq is known once written; results name it through the model
        next_seq = (self.ledger.head()[0] + 1) if self.ledger is not None else None
        self.state.market_seq = next_seq
        for account in self.engine.accounts:
            events += self._result_events(account, {"kind": "market_snapshot", "ref": None})
        self._append([events])

    def record_view(self, source: str, account: str, view: AccountView) -> None:
        """Record one side's view of a cross-margining account (``position_snapshot``)."""
        self._append([[Event("position_snapshot", source, view.to_data(account))]])
        self.state.views.setdefault(source, {})[account] = view

    def record_positions(self, accounts: Iterable[str]) -> None:
        """Record the engine's view (positions and factor) of the cross-margining accounts given."""
        events = []
        for a in sorted(set(accounts)):
            if a in self.engine.accounts and self.engine.account(a).cross_margin:
                view = engine_view(self.engine, a)
                events.append(Event("position_snapshot", "engine", view.to_data(a)))
                self.state.views.setdefault("engine", {})[a] = view
        if events:
            self._append([events])

    # -- ingest ----------------------------------------------------------------------------------

    def _dry_run(self, rows: Sequence[Row], src: str) -> list[bool]:
        """Check every row against the ledger and the rows before it; True = record, False = duplicate."""
        st = self.state
        # the rows' own additions over the recorded ones, without copying the ledger's maps
        last: MutableMapping[tuple[str, str], str] = ChainMap({}, st.last_time)
        trades: MutableMapping[str, Trade] = ChainMap({}, st.trades)
        cancelled = set(st.cancelled)
        moves: MutableMapping[str, CollateralMovement] = ChainMap({}, st.movements)
        holdings = {a: dict(h) for a, h in self.collateral.holdings.items()}
        accounts = {a: self.engine.account(a) for a in self.engine.accounts}
        keep: list[bool] = []

        def in_order(n: int, source: str, account: str, when: str, what: str) -> None:
            latest = last.get((source, account))
            if latest is not None and when < latest:
                raise InputError(f"out of order: {what} at {when} is earlier than the latest {source} event for "
                                 f"{account} already recorded or read ({latest}); nothing was recorded", source=src,
                                 row=n, field="time")
            last[(source, account)] = when

        for n, ev, _inst in rows:
            if isinstance(ev, Trade):
                known = trades.get(ev.trade_id)
                if known is not None:
                    if (known.source, canonical_json(known.payload())) == (ev.source, canonical_json(ev.payload())):
                        keep.append(False)
                        continue
                    raise InputError(f"trade {ev.trade_id} is already recorded with different content "
                                     f"({canonical_json(known.payload())}); nothing was recorded",
                                     source=src, row=n, field="trade_id")
                acc = accounts.get(ev.account)
                info = ev.account_info
                if acc is not None and (acc.member, acc.account_type, acc.cross_margin) != (
                        info.member, info.account_type, info.cross_margin):
                    raise InputError(f"account {ev.account} is member {acc.member}, {acc.account_type}, "
                                     f"cross_margin={acc.cross_margin}; this row disagrees; nothing was recorded",
                                     source=src, row=n, field="member")
                accounts.setdefault(ev.account, info)
                in_order(n, ev.source, ev.account, ev.payload()["time"], f"trade {ev.trade_id}")
                trades[ev.trade_id] = ev
            elif isinstance(ev, Cancel):
                if ev.trade_id in cancelled:
                    keep.append(False)
                    continue
                original = trades.get(ev.trade_id)
                if original is None:
                    raise InputError(f"cannot cancel trade {ev.trade_id}: no such trade in the ledger or earlier "
                                     "in the file; nothing was recorded", source=src, row=n, field="trade_id")
                in_order(n, original.source, original.account, ev.payload()["time"], f"cancel of {ev.trade_id}")
                cancelled.add(ev.trade_id)
            else:
                assert isinstance(ev, CollateralMovement)
                prior = moves.get(ev.movement_id)
                if prior is not None:
                    if canonical_json(prior.payload()) == canonical_json(ev.payload()):
                        keep.append(False)
                        continue
                    raise InputError(f"collateral movement {ev.movement_id} is already recorded with different "
                                     "content; nothing was recorded", source=src, row=n, field="trade_id")
                held = holdings.setdefault(ev.account, {}).get(ev.asset, 0.0)
                if ev.amount < 0 and held + ev.amount < -1e-9 * max(1.0, abs(held)):
                    raise InputError(f"account {ev.account} holds {held:,.2f} of {ev.asset}, cannot withdraw "
                                     f"{-ev.amount:,.2f}; nothing was recorded", source=src, row=n, field="quantity")
                holdings[ev.account][ev.asset] = held + ev.amount
                in_order(n, ev.source, ev.account, ev.payload()["time"], f"collateral {ev.movement_id}")
                moves[ev.movement_id] = ev
            keep.append(True)
        return keep

    def ingest(
        self,
        rows: Sequence[Row],
        *,
        src: str = "trades",
        batch_size: int = 100,
        on_group: Callable[[int, InputEvent], None] | None = None,
    ) -> IngestReport:
        """Record validated rows (see the module docstring); ``on_group`` is told after each batch."""
        if batch_size < 1:
            raise InputError("batch size must be at least 1", field="--batch-size")
        keep = self._dry_run(rows, src)
        report = IngestReport()
        pending: list[list[Event]] = []
        done: list[tuple[int, InputEvent]] = []
        for (n, ev, inst), fresh in zip(rows, keep, strict=True):
            if not fresh:
                report.duplicates.append((n, ev.trade_id if not isinstance(ev, CollateralMovement) else ev.movement_id))
                continue
            try:
                group = self._group(ev, inst)
            except XMarginError as exc:
                self._reload()
                raise InputError(f"{exc}; rows before this one in the current batch were not recorded",
                                 source=src, row=n) from None
            report.calls += [{**e.data, "kind": e.kind} for e in group if e.kind in ("margin_call", "excess")]
            pending.append(group)
            done.append((n, ev))
            if len(pending) >= batch_size:
                report.entries += self._flush(pending, done, report, on_group)
        report.entries += self._flush(pending, done, report, on_group)
        return report

    def _flush(self, pending: list[list[Event]], done: list[tuple[int, InputEvent]], report: IngestReport,
               on_group: Callable[[int, InputEvent], None] | None) -> int:
        if not pending:
            return 0
        written, _ = self._append(pending)
        report.recorded += len(pending)
        for n, ev in done:
            report.accounts.add(self.state.trades[ev.trade_id].account if isinstance(ev, Cancel) else ev.account)
            if on_group is not None:
                on_group(n, ev)
        pending.clear()
        done.clear()
        return written

    def _group(self, ev: InputEvent, inst: Instrument | None) -> list[Event]:
        """Apply one event to the engine / collateral and return the entries it makes."""
        st = self.state
        eng = self.engine
        if isinstance(ev, Trade):
            assert inst is not None
            eng.commit_trade(ev.trade_id, eng.prepare_trade(ev.trade_id, ev.account_info, inst, ev.quantity))
            st.trades[ev.trade_id] = ev
            key = (ev.source, ev.account)
            st.last_time[key] = max(st.last_time.get(key, ""), ev.payload()["time"])
            head = Event("trade", ev.source, ev.payload(), ref=ev.trade_id, time=ev.payload()["time"], scope=ev.account)
            return [head, *self._result_events(ev.account, {"kind": "trade", "ref": ev.trade_id})]
        if isinstance(ev, Cancel):
            original = st.trades[ev.trade_id]
            eng.commit_cancel(ev.trade_id, eng.prepare_cancel(ev.trade_id))
            st.cancelled.add(ev.trade_id)
            when = ev.payload()["time"]
            key = (original.source, original.account)
            st.last_time[key] = max(st.last_time.get(key, ""), when)
            head = Event("cancel", original.source, ev.payload(), ref=ev.trade_id, time=when, scope=original.account)
            return [head, *self._result_events(original.account, {"kind": "cancel", "ref": ev.trade_id})]
        assert isinstance(ev, CollateralMovement)
        self.collateral.apply(ev)
        st.movements[ev.movement_id] = ev
        key = (ev.source, ev.account)
        st.last_time[key] = max(st.last_time.get(key, ""), ev.payload()["time"])
        events = [Event("collateral", ev.source, ev.payload(), ref=ev.movement_id, time=ev.payload()["time"],
                        scope=ev.account)]
        if ev.account in eng.accounts:
            due = self.collateral.assess(ev.account, float(eng.margin(ev.account)["total_after"]))
        else:
            due = self.collateral.assess(ev.account, 0.0)
        if due is not None:
            events.append(Event(due[0], "engine", due[1]))
        return events

    # -- reading -------------------------------------------------------------------------------

    def status(self, account: str) -> dict[str, Any]:
        """Requirement, collateral value and call / excess of one account."""
        req = float(self.engine.margin(account)["total_after"]) if account in self.engine.accounts else 0.0
        value = self.collateral.value(account)
        st = self.collateral.status.get(account)
        called = st is not None and st.kind == "margin_call"
        return {"account": account, "requirement": req, "collateral_value": value,
                "call": max(req - value, 0.0) if called else 0.0,  # due now, under the call outstanding
                "called": st.amount if st is not None and called else 0.0,  # the amount of the last call issued
                "excess": max(value - req, 0.0)}


def latest_as_of(state: ReplayState) -> date | None:
    return state.market.snapshot.as_of if state.market is not None else None
