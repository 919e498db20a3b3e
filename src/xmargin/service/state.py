"""The service's state: one ledger session (engine + collateral + ledger), and what requests do with it.

Loading is :mod:`xmargin.service.loading`; the update stream :mod:`xmargin.service.hub`; the
contexts of what-ifs in instruments the engine does not hold :mod:`xmargin.service.whatif`.

No lock is taken across members: reads and incremental what-ifs run on the event loop, pricing
runs in a bounded pool, and a trade waits only for its account and the ledger's writer lock
(:mod:`xmargin.service.writer`, which also follows what other worker processes record).

The methods raise :class:`~xmargin.errors.InputError` (answered 422 naming the field),
:class:`NotFound` (404: also for another member's accounts, so existence does not leak) and
:class:`Conflict` (409).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import scipy.sparse as sp

from xmargin.clearing import LedgerSession
from xmargin.clearing.replay import decode_margins
from xmargin.engine.live import HEADLINE, MARGIN_FIELDS, LiveEngine
from xmargin.engine.trades import Trade, format_time, parse_row
from xmargin.errors import InputError, XMarginError
from xmargin.margin.calculator import AccountMargins, compute_margins, is_small_book
from xmargin.margin.context import MarginContext
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.portfolio.io import read_portfolio_data
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import Instrument, instrument_id
from xmargin.reports.savings import FundingRate, funding_rate, savings_report
from xmargin.service.auth import Principal
from xmargin.service.figures import COMPONENTS, clean, headline
from xmargin.service.hub import UpdateHub
from xmargin.service.loading import DEFAULT_LEDGER, ServiceConfig, open_session
from xmargin.service.whatif import WhatIfInstruments
from xmargin.service.writer import Recorder
from xmargin.workflow import margin_payload

__all__ = ["DEFAULT_LEDGER", "Conflict", "NotFound", "ServiceConfig", "ServiceState", "UpdateHub", "clean",
           "headline"]

INLINE_MAX_CELLS = 512  # portfolio what-ifs margined on the event loop: at most this many accounts x instruments
RESULTS_KEPT = 10_000  # trade results answered from memory on a repeated trade_id (older: from the ledger)


class NotFound(XMarginError):
    """404: no such resource for this key (another member's resources are not found either)."""


class Conflict(XMarginError):
    """409: the trade id is already in use with other content."""


class ServiceState:
    """See the module docstring."""

    def __init__(self, session: LedgerSession, config: ServiceConfig) -> None:
        self.session = session
        self.config = config
        self.hub = UpdateHub()
        self.version = 0
        # trade id -> the result first answered (the latest ones; older ones are rebuilt from the ledger)
        self._results: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._extra = WhatIfInstruments(config.max_new_instruments)  # priced for what-ifs
        m = session.market
        self.as_of: date = m.snapshot.as_of
        try:
            self.funding: FundingRate = funding_rate(m.snapshot)
        except InputError:  # no SOFR series: the shortest par yield stands in as the base
            self.funding = funding_rate(None, base_pct=float(m.snapshot.par_yields[0] * 100.0))
        self.recorder = Recorder(self, pricing_timeout_s=config.pricing_timeout_s, poll_s=config.follow_poll_s,
                                 notify=config.follow_notify)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, config: ServiceConfig, progress: Callable[[str], None] | None = None) -> ServiceState:
        """Open the ledger, record its market and opening book when missing (:mod:`~xmargin.service.loading`)."""
        return cls(open_session(config, progress), config)

    def close(self) -> None:
        self.hub.close()
        if self.session.ledger is not None:
            self.session.ledger.close()

    # -- reading ---------------------------------------------------------------------------

    @property
    def engine(self) -> LiveEngine:
        return self.session.engine

    def members(self) -> list[str]:
        eng = self.engine
        return sorted({eng.account(a).member for a in eng.accounts})

    def ledger_seq(self) -> int:
        """The last ledger entry this process has applied (its own and the other workers')."""
        return self.session.state.entries

    def _account(self, principal: Principal, name: str) -> Account:
        """The account if it exists and the key may see it, else :class:`NotFound`."""
        try:
            acc = self.engine.account(name)
        except KeyError:
            raise NotFound(f"account {name} not found") from None
        if not principal.sees_member(acc.member):
            raise NotFound(f"account {name} not found")
        return acc

    def _row(self, name: str) -> dict[str, Any]:
        eng = self.engine
        acc = eng.account(name)
        return {"account": acc.account, "member": acc.member, "account_type": acc.account_type,
                "archetype": acc.archetype, "cross_margin": acc.cross_margin,
                "positions": len(eng.positions(name)), **headline(eng.margin(name))}

    def visible_accounts(self, principal: Principal) -> list[str]:
        eng = self.engine
        return [a for a in eng.accounts if principal.sees_member(eng.account(a).member)]

    def account_list(self, principal: Principal) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "version": self.version,
                "accounts": [self._row(a) for a in self.visible_accounts(principal)]}

    def account_summary(self, principal: Principal, name: str) -> dict[str, Any]:
        acc = self._account(principal, name)
        eng = self.engine
        m = eng.margin(name)
        st = self.session.status(name)
        return {
            "account": acc.account, "member": acc.member, "account_type": acc.account_type,
            "cross_margin": acc.cross_margin, "archetype": acc.archetype,
            "figures": headline(m), "components": {k: clean(m[k]) for k in COMPONENTS},
            "positions": [{"instrument": i, "quantity": q} for i, q in eng.positions(name).items()],
            "collateral": {k: clean(st[k]) for k in ("requirement", "collateral_value", "call", "called", "excess")},
            "as_of": self.as_of.isoformat(), "version": self.version,
        }

    def _savings(self, names: list[str]) -> Any:
        eng = self.engine
        accounts = tuple(eng.account(n) for n in names)
        margins = AccountMargins.empty(len(names))
        for i, n in enumerate(names):
            row = eng.margin(n)
            for f in MARGIN_FIELDS:
                getattr(margins, f)[i] = row[f]
        book = Book(accounts, InstrumentUniverse.of([]), sp.csr_matrix((len(names), 0)))
        return savings_report(book, margins, self.funding)

    def _funding(self) -> dict[str, Any]:
        f = self.funding
        return {"rate_pct": f.rate_pct, "base": f.base, "base_pct": f.base_pct, "spread_bp": f.spread_bp}

    def member_summary(self, principal: Principal, member: str) -> dict[str, Any]:
        if not principal.sees_member(member):
            raise NotFound(f"member {member} not found")
        key = ("member", member, self.version)
        if key not in self._cache:
            eng = self.engine
            names = [a for a in eng.accounts if eng.account(a).member == member]
            if not names:
                raise NotFound(f"member {member} not found")
            rep = self._savings(names)
            m = rep.members[0]
            self._cache[key] = clean({
                "member": member, "as_of": self.as_of.isoformat(), "version": self.version,
                "house": m.house.to_dict(), "customers": m.customers.to_dict(), "total": m.total.to_dict(),
                "accounts": [self._row(n) for n in names], "excluded": list(rep.excluded),
                "funding": self._funding()})
        return self._cache[key]  # type: ignore[no-any-return]

    def market_summary(self) -> dict[str, Any]:
        key = ("market", self.version)
        if key not in self._cache:
            rep = self._savings(self.engine.accounts)
            self._cache[key] = clean({
                "as_of": self.as_of.isoformat(), "version": self.version,
                "market": rep.market.to_dict(), "market_house": rep.market_house.to_dict(),
                "market_customers": rep.market_customers.to_dict(),
                "members": [{"member": m.member, "house": m.house.to_dict(), "customers": m.customers.to_dict(),
                             "total": m.total.to_dict()} for m in rep.members],
                "by_archetype": {k: v.to_dict() for k, v in rep.by_archetype.items()},
                "excluded": list(rep.excluded), "funding": self._funding()})
        return self._cache[key]  # type: ignore[no-any-return]

    # -- accounts named in requests ---------------------------------------------------------

    def _account_for(self, principal: Principal, name: str, member: str | None, account_type: str | None,
                     cross_margin: bool | None, archetype: str | None = None) -> tuple[dict[str, Any], bool]:
        """The account fields of a trade / what-if row and whether the account exists.

        A member key acts for its own member only, and opens new accounts in its own namespace
        (``<member>-...``): naming another member, an account of another member or a new
        account outside the namespace is answered 404, whether or not the account exists, so
        the answer never tells another member's accounts apart from unknown names."""
        try:
            known: Account | None = self.engine.account(name)
        except KeyError:
            known = None
        if not principal.is_admin:
            mine = known.member == principal.member if known is not None else name.startswith(f"{principal.member}-")
            if (member is not None and member != principal.member) or not mine:
                raise NotFound(f"account {name} not found (a member key opens new accounts named "
                               f"{principal.member}-...)")
            member = principal.member
        if known is not None:
            return {"account": name, "member": member or known.member,
                    "account_type": account_type or known.account_type,
                    "cross_margin": known.cross_margin if cross_margin is None else cross_margin,
                    "archetype": known.archetype if archetype is None else archetype}, True
        if member is None:
            raise InputError("is required for a new account", field="member")
        if account_type is None:
            raise InputError("is required for a new account", field="account_type")
        return {"account": name, "member": member, "account_type": account_type,
                "cross_margin": True if cross_margin is None else cross_margin,
                "archetype": archetype or ""}, False

    @staticmethod
    def _repo_fields(req: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in ("repo_start", "repo_end", "repo_rate", "cash_amount"):
            v = getattr(req, f)
            if v is not None:
                out[f] = v.isoformat() if isinstance(v, date) else v
        return out

    def _parse(self, fields_: dict[str, Any]) -> tuple[Trade, Instrument]:
        m = self.session.market
        ev, inst = parse_row(fields_, as_of=m.snapshot.as_of, master=m.master, src="request body", n=1)
        assert isinstance(ev, Trade) and inst is not None
        return ev, inst

    # -- incremental what-if ---------------------------------------------------------------

    async def what_if_trade(self, principal: Principal, req: Any) -> dict[str, Any]:
        """Margin impact of one proposed trade (nothing applied, nothing recorded).

        In an instrument the engine holds: :meth:`LiveEngine.what_if`, incremental.  In one it
        does not: the batch calculator on the account's positions with and without the trade
        (both figures from it; they agree with the live ones to rounding), so a what-if never
        adds an instrument to the engine -- only recorded trades do, as a replay of the
        ledger does (a repo's row depends on the trade that first defines it); that runs in the
        pricing pool, bounded in time (:meth:`Recorder.price`)."""
        acc, existed = self._account_for(principal, req.account, req.member, req.account_type, req.cross_margin)
        row = {**acc, "trade_id": "what-if", "time": format_time(datetime.now(UTC)),
               "instrument": req.instrument, "quantity": req.quantity, **self._repo_fields(req)}
        trade, inst = self._parse(row)
        eng = self.engine
        if instrument_id(inst) in eng.context.universe._index:
            before, after = eng.what_if_headline(trade.account_info, inst, trade.quantity)
        else:
            before, after = await self.recorder.price(self._what_if_batch, trade, inst, existed)
        change = {k: after[k] - before[k] for k in HEADLINE}
        return {"account": trade.account, "member": trade.member, "instrument": instrument_id(inst),
                "quantity": trade.quantity, "new_account": not existed,
                "before": headline(before), "after": headline(after), "change": headline(change)}

    def _what_if_batch(self, trade: Trade, inst: Instrument, existed: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        eng = self.engine
        account = trade.account_info
        if existed:
            known = eng.account(trade.account)
            if (known.member, known.account_type, known.cross_margin) != (account.member, account.account_type,
                                                                             account.cross_margin):
                raise InputError(f"account {known.account} is member {known.member}, {known.account_type}, "
                                 f"cross_margin={known.cross_margin}; the request disagrees", field="member")
            account = known
        base = eng.context
        held = [(base.universe.instruments[base.universe.index(i)], q)
                for i, q in (eng.positions(trade.account) if existed else {}).items()]
        universe = InstrumentUniverse.of([*(i for i, _ in held), inst])
        ctx = self._what_if_context(universe)
        out = []
        for extra in ([], [(inst, trade.quantity)]):
            book = build_book([account], [(0, i, q) for i, q in [*held, *extra]], universe=universe)
            out.append(compute_margins(ctx, book).row(0))
        return out[0], out[1]

    # -- portfolio what-if -----------------------------------------------------------------

    def read_portfolio_body(self, data: Any) -> Book:
        """A posted JSON portfolio, validated by :func:`~xmargin.portfolio.io.read_portfolio_data`
        (the same checks as ``xmargin margin FILE.json``).  Thread-safe; no engine access."""
        m = self.session.market
        return read_portfolio_data(data, as_of=m.snapshot.as_of, master=m.master, eligibility=m.eligibility,
                                   source="request body")
    def _what_if_context(self, universe: InstrumentUniverse) -> MarginContext:
        """The context of a posted portfolio's instruments (see :mod:`xmargin.service.whatif`)."""
        return self._extra.context(self.engine.context, universe)

    async def margin_portfolio(self, book: Book, explain: bool = False) -> dict[str, Any]:
        """:meth:`what_if_portfolio`, on the event loop when nothing needs pricing and the book
        is small (its instruments' rows at hand, a book ``compute_margins`` takes dense of at
        most ``INLINE_MAX_CELLS`` accounts x instruments, no ``explain``: a few milliseconds,
        less than the hand-off to a pricing thread costs, and short enough not to hold up the
        other requests); else in the pricing pool, bounded in time (:meth:`Recorder.price`)."""
        if not explain and is_small_book(book.size, len(book.universe)) \
                and book.size * len(book.universe) <= INLINE_MAX_CELLS \
                and self._extra.at_hand(self.engine.context, book.universe):
            return self.what_if_portfolio(book)
        return await self.recorder.price(self.what_if_portfolio, book, explain, field="body")  # bounded, no lock

    def what_if_portfolio(self, book: Book, explain: bool = False) -> dict[str, Any]:
        """The ``xmargin margin --format json`` document of a posted portfolio (nothing recorded)."""
        if explain and book.size > self.config.max_explain_accounts:
            raise InputError(f"explain is limited to {self.config.max_explain_accounts} accounts "
                             f"(the portfolio has {book.size})", field="explain")
        ctx = self._what_if_context(book.universe)
        margins = compute_margins(ctx, book)
        return margin_payload(ctx, book, margins, explain=explain)  # type: ignore[no-any-return]

    # -- trades ------------------------------------------------------------------------------

    def replay_of(self, principal: Principal, req: Any) -> dict[str, Any] | None:
        """The original result of an already recorded ``trade_id`` (None if it is new).

        Another member's trade id, or the same id with other content, is a :class:`Conflict`
        (the same answer either way)."""
        known = self.session.state.trades.get(req.trade_id)
        if known is None:
            return None
        same = principal.sees_member(known.member) and known.account == req.account
        if same:
            when = None
            if req.time is not None:
                when = format_time(req.time if req.time.tzinfo else req.time.replace(tzinfo=UTC))
            given = {"instrument": req.instrument.strip().upper(), "quantity": float(req.quantity),
                     "member": req.member, "account_type": req.account_type, "cross_margin": req.cross_margin,
                     "source": req.source, "time": when, **self._repo_fields(req)}
            payload = known.payload() | {"source": known.source}
            for k, v in given.items():
                if v is None:
                    continue
                have = payload.get(k)
                if k in ("quantity", "repo_rate", "cash_amount"):
                    same = same and have is not None and float(have) == float(v)
                else:
                    same = same and have == v
        if not same or req.trade_id in self.session.state.cancelled:
            raise Conflict(f"trade_id {req.trade_id} is already in use with other content")
        return {**self._original(req.trade_id), "replayed": True}

    def _original(self, trade_id: str) -> dict[str, Any]:
        if trade_id in self._results:
            return self._results[trade_id]
        lg = self.session.ledger
        assert lg is not None
        entry = lg.find("trade", trade_id)
        if entry is None:  # pragma: no cover - the trade is in the replayed state, so in the ledger
            raise NotFound(f"trade {trade_id} not found")
        trade = self.session.state.trades[trade_id]
        margin: dict[str, Any] = {}
        calls: list[dict[str, Any]] = []
        for e in lg.entries(entry.seq + 1, page=8):
            d = e.data
            if e.kind == "margin_result" and d.get("trigger", {}).get("ref") == trade_id and not margin:
                margin = headline(decode_margins(d["margins"]))
            elif e.kind in ("margin_call", "excess") and margin:
                calls.append(clean({**d, "kind": e.kind}))
            else:
                break
        result = self._result(trade, entry.seq, margin, calls)
        self._remember(trade_id, result)
        return result

    def _remember(self, trade_id: str, result: dict[str, Any]) -> None:
        self._results[trade_id] = result
        while len(self._results) > RESULTS_KEPT:
            self._results.popitem(last=False)

    @staticmethod
    def _result(trade: Trade, seq: int, margin: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
        p = trade.payload()
        return {"trade_id": trade.trade_id, "account": trade.account, "member": trade.member,
                "instrument": trade.instrument, "quantity": trade.quantity, "time": p["time"],
                "source": trade.source, "ledger_seq": seq, "margin": margin, "calls": calls, "replayed": False}

    def prepare_trade(self, principal: Principal, req: Any) -> tuple[Trade, Instrument]:
        """Validate a new trade (nothing written)."""
        acc, _ = self._account_for(principal, req.account, req.member, req.account_type, req.cross_margin,
                                   req.archetype)
        when = req.time or datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        row = {**acc, "trade_id": req.trade_id, "time": when.isoformat(), "instrument": req.instrument,
               "quantity": req.quantity, **self._repo_fields(req)}
        if req.source is not None:
            row["source"] = req.source
        return self._parse(row)

    def record_trade(self, trade: Trade, inst: Instrument) -> dict[str, Any]:
        """Record a validated trade in the ledger with its margin result (worker thread, writer lock held)."""
        report = self.session.ingest([(1, trade, inst)], src="request body", batch_size=1)
        lg = self.session.ledger
        entry = lg.find("trade", trade.trade_id) if lg is not None else None
        self.version += 1
        if len(self._cache) > 64:
            self._cache.clear()
        result = self._result(trade, entry.seq if entry is not None else 0, headline(self.engine.margin(trade.account)),
                              [clean(c) for c in report.calls])
        self._remember(trade.trade_id, result)
        return result

    def update_event(self, result: dict[str, Any]) -> dict[str, Any]:
        """The server-sent event of a recorded trade."""
        acc = self.engine.account(result["account"])
        return {"type": "margin", "version": self.version, "ledger_seq": result["ledger_seq"],
                "trade_id": result["trade_id"], "account": acc.account, "member": acc.member,
                "account_type": acc.account_type, "instrument": result["instrument"],
                "quantity": result["quantity"], "time": result["time"], "figures": result["margin"],
                "calls": result["calls"]}
