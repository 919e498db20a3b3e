"""The service's state: one ledger session (engine + collateral + ledger), loaded once.

Loading (:meth:`ServiceState.load`): the ledger is opened and replayed
(:class:`~xmargin.clearing.LedgerSession`); when it holds no market yet, the end-of-day market of
the as-of date is recorded (default: the demo's date, :func:`~xmargin.cli.demo_cmd.default_as_of`);
when it holds no trade yet, the opening book -- the demo book (``DemoConfig``), or a portfolio
file -- is recorded as opening trades ``open-<account>-<n>`` at the as-of date's midnight,
each with its margin result, through the same recorder as every later trade, in one
transaction (an interrupted start leaves no half-recorded book).  A ledger that
already holds trades is served as it is (a restart carries on where the log ends).

Every engine access goes through :attr:`ServiceState.lock` (an :class:`asyncio.Lock` taken by
the request handlers): the engine is not thread-safe.  Cheap reads and what-ifs run on the
event loop while holding it; recording a trade (a database transaction) runs in a worker
thread while the loop keeps serving requests that do not need the engine.

The methods raise :class:`~xmargin.errors.InputError` (answered 422 naming the field),
:class:`NotFound` (404: also for another member's accounts, so existence does not leak) and
:class:`Conflict` (409).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from xmargin.clearing import LedgerSession, load_market
from xmargin.clearing.replay import decode_margins
from xmargin.engine.live import HEADLINE, MARGIN_FIELDS, LiveEngine, extend_context
from xmargin.engine.trades import Trade, format_time, parse_row
from xmargin.errors import InputError, XMarginError
from xmargin.ledger import Ledger
from xmargin.margin.calculator import AccountMargins, compute_margins
from xmargin.margin.context import InstrumentAttributes, MarginContext, build_context
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.portfolio.demo import DemoConfig
from xmargin.portfolio.io import read_portfolio, read_portfolio_data
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.pricing.scenario_pnl import InstrumentPnL
from xmargin.reference.lookup import Instrument, instrument_id
from xmargin.reports.savings import FundingRate, funding_rate, savings_report
from xmargin.service.auth import Principal
from xmargin.workflow import margin_payload

DEFAULT_LEDGER = "sqlite:///xmargin-ledger.db"
RESULTS_KEPT = 10_000  # trade results answered from memory on a repeated trade_id (older: from the ledger)
COMPONENTS = tuple(f for f in MARGIN_FIELDS if f not in HEADLINE and f not in ("computable", "fallback"))


class NotFound(XMarginError):
    """404: no such resource for this key (another member's resources are not found either)."""


class Conflict(XMarginError):
    """409: the trade id is already in use with other content."""


@dataclass(frozen=True)
class ServiceConfig:
    """What ``xmargin serve`` loads (see the module docstring)."""

    ledger: str = DEFAULT_LEDGER
    data_dir: Path | None = None
    as_of: date | None = None
    portfolio: Path | None = None  # opening book from a portfolio file instead of the demo
    demo: DemoConfig = field(default_factory=DemoConfig)
    max_body_bytes: int = 1 << 20
    max_new_instruments: int = 2000  # instruments priced for what-ifs (not traded) kept, at most
    max_explain_accounts: int = 50


def clean(value: Any) -> Any:
    """JSON-safe: NaN / infinity (a figure that cannot be computed) become null."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def headline(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: clean(row[k]) for k in HEADLINE}


def assemble_context(template: MarginContext, universe: InstrumentUniverse,
                     sources: list[tuple[MarginContext, int]]) -> MarginContext:
    """A context over ``universe`` whose row ``k`` is row ``sources[k][1]`` of ``sources[k][0]``.

    Every per-instrument figure depends on its own row only (see
    :meth:`MarginContext.extended`), so rows can be taken from any contexts sharing the
    template's scenario sets and SPAN calibration: the result is the context
    :func:`~xmargin.margin.context.build_context` would give for ``universe``, without pricing
    anything again."""
    ids = set(universe.ids)

    def rows(name: str) -> InstrumentPnL:
        parts = [getattr(src, name) for src, _ in sources]
        failures: dict[str, str] = {}
        for p in parts:
            failures |= {k: v for k, v in p.failures.items() if k in ids}
        return InstrumentPnL(universe, np.array([p.base_values[i] for p, (_, i) in zip(parts, sources, strict=True)]),
                             np.stack([p.pnl[i] for p, (_, i) in zip(parts, sources, strict=True)]), failures)

    attrs = InstrumentAttributes(**{f: np.stack([getattr(src.attributes, f)[i] for src, i in sources])
                                    for f in InstrumentAttributes.__dataclass_fields__})
    return replace(template, universe=universe, ficc_pnl=rows("ficc_pnl"), cme_pnl=rows("cme_pnl"),
                   attributes=attrs)


def _same_model(a: MarginContext, b: MarginContext) -> bool:
    return (a.ficc_scenarios is b.ficc_scenarios and a.cme_scenarios is b.cme_scenarios and a.span is b.span
            and a.params == b.params and a.eligibility == b.eligibility and a.snapshot is b.snapshot)


def _book_rows(book: Book) -> list[dict[str, str]]:
    from xmargin.cli.demo_cmd import portfolio_rows

    return portfolio_rows(book)


def demo_book(session: LedgerSession, config: DemoConfig) -> Book:
    """The demo book on the session's market (the steps of :func:`~xmargin.cli.demo_cmd.run_demo`
    that make the book; its context is the session's)."""
    from xmargin.margin.calibration import listed_contracts
    from xmargin.portfolio.demo import DEMO_CONTRACTS, generate_book, prepare_market

    m = session.market
    contracts = [c for root, n in DEMO_CONTRACTS.items() for c in listed_contracts(root, m.snapshot.as_of, n)]
    market = prepare_market(m.snapshot, m.master, contracts, haircut=config.repo_haircut)
    # the live engine keeps one election per account: no partial elections in the served book
    return generate_book(market, replace(config, partial_share=0.0))


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


class ServiceState:
    """See the module docstring."""

    def __init__(self, session: LedgerSession, config: ServiceConfig) -> None:
        self.session = session
        self.config = config
        self.lock = asyncio.Lock()
        self.hub = UpdateHub()
        self.version = 0
        # trade id -> the result first answered (the latest ones; older ones are rebuilt from the ledger)
        self._results: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._extra: OrderedDict[str, tuple[MarginContext, int]] = OrderedDict()  # priced for what-ifs
        m = session.market
        self.as_of: date = m.snapshot.as_of
        try:
            self.funding: FundingRate = funding_rate(m.snapshot)
        except InputError:  # no SOFR series: the shortest par yield stands in as the base
            self.funding = funding_rate(None, base_pct=float(m.snapshot.par_yields[0] * 100.0))

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, config: ServiceConfig, progress: Callable[[str], None] | None = None) -> ServiceState:
        def say(text: str) -> None:
            if progress is not None:
                progress(text)

        from xmargin.cli.demo_cmd import default_as_of

        ledger = Ledger(config.ledger)
        say(f"opening ledger {ledger!r}")
        session = LedgerSession.open(ledger, data_dir=config.data_dir)
        current = session.state.market
        if current is None or (config.as_of is not None and config.as_of != current.snapshot.as_of):
            day = config.as_of or default_as_of(config.data_dir)
            say(f"recording the market of {day}")
            market = load_market(day, data_dir=config.data_dir,
                                 haircuts=current.schedule if current is not None else None)
            if current is not None:  # keep the ledger's model settings
                market = replace(market, params=current.params, eligibility=current.eligibility)
            session.use_market(market)
        if not session.state.trades:
            m = session.market
            if config.portfolio is not None:
                say(f"reading the opening book {config.portfolio}")
                book = read_portfolio(config.portfolio, as_of=m.snapshot.as_of, master=m.master,
                                      eligibility=m.eligibility)
            else:
                say(f"generating the demo book ({config.demo.members} members x "
                    f"{config.demo.customers_per_member} customers)")
                book = demo_book(session, config.demo)
            cls._open(session, book, say)
        return cls(session, config)

    @staticmethod
    def _open(session: LedgerSession, book: Book, say: Callable[[str], None]) -> None:
        """Record ``book`` as opening trades (one ledger group each, with its margin result)."""
        m = session.market
        day = m.snapshot.as_of
        counts: dict[str, int] = {}
        rows = []
        for n, rec in enumerate(_book_rows(book), start=1):
            row: dict[str, Any] = {k: v for k, v in rec.items() if v != ""}
            counts[row["account"]] = counts.get(row["account"], 0) + 1
            row["trade_id"] = f"open-{row['account']}-{counts[row['account']]}"
            row["time"] = f"{day.isoformat()}T00:00:00Z"
            ev, inst = parse_row(row, as_of=day, master=m.master, src="opening book", n=n)
            rows.append((n, ev, inst))
        if not session.engine.accounts:
            # price the universe in one go rather than row by row as the trades arrive, with the
            # instruments exactly as the trades define them (a repo made from a trade row can
            # differ from the book's in the last bit): the rows are then bit for bit those a
            # replay of the ledger prices, so replayed margins equal the recorded ones
            session.state.engine = LiveEngine(extend_context(session.engine.context,
                                                             [inst for _, _, inst in rows if inst is not None]))
        say(f"recording {len(rows):,} opening trades in the ledger")
        session.ingest(rows, src="opening book", batch_size=max(1, len(rows)))  # one transaction: all or nothing

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
        return self.session.ledger.head()[0] if self.session.ledger is not None else 0

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

    def what_if_trade(self, principal: Principal, req: Any) -> dict[str, Any]:
        """Margin impact of one proposed trade (nothing applied, nothing recorded).

        In an instrument the engine holds: :meth:`LiveEngine.what_if`, incremental.  In one it
        does not: the batch calculator on the account's positions with and without the trade
        (both figures from it; they agree with the live ones to rounding), so a what-if never
        adds an instrument to the engine -- only recorded trades do, as a replay of the
        ledger does (a repo's row depends on the trade that first defines it)."""
        acc, existed = self._account_for(principal, req.account, req.member, req.account_type, req.cross_margin)
        row = {**acc, "trade_id": "what-if", "time": format_time(datetime.now(UTC)),
               "instrument": req.instrument, "quantity": req.quantity, **self._repo_fields(req)}
        trade, inst = self._parse(row)
        eng = self.engine
        if instrument_id(inst) in eng.context.universe._index:
            impact = eng.what_if(trade.account_info, inst, trade.quantity)
            before, after = impact["before"], impact["after"]
        else:
            before, after = self._what_if_batch(trade, inst, existed)
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
        """The context of a posted portfolio's instruments: rows of the engine's context, and of
        instruments priced for earlier what-ifs (kept, least recently used first out, up to
        ``max_new_instruments``); only instruments seen for the first time are priced."""
        base = self.engine.context
        index = base.universe._index
        cache = self._extra
        new = [inst for inst, i in zip(universe.instruments, universe.ids, strict=True)
               if i not in index and not (i in cache and _same_model(cache[i][0], base))]
        if new:
            priced = build_context(base.snapshot, base.master, InstrumentUniverse.of(new), base.params,
                                   base.eligibility)
            if not _same_model(priced, base):  # the caches let go of this market: price it all afresh
                return build_context(base.snapshot, base.master, universe, base.params, base.eligibility)
            for k, i in enumerate(priced.universe.ids):
                cache[i] = (priced, k)
        sources: list[tuple[MarginContext, int]] = []
        for i in universe.ids:
            if i in index:
                sources.append((base, index[i]))
            else:
                cache.move_to_end(i)
                sources.append(cache[i])
        while len(cache) > self.config.max_new_instruments:
            cache.popitem(last=False)
        return assemble_context(base, universe, sources)

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
        """Record a validated trade in the ledger with its margin result (worker thread, lock held)."""
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
