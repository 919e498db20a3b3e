"""Loading the service: the ledger opened and replayed, its market, its opening book.

:func:`open_session` opens the ledger and replays it
(:class:`~xmargin.ledger.LedgerSession`); when it holds no market yet, the end-of-day market of
the as-of date is recorded (default: the demo's date, :func:`~xmargin.workflow.default_as_of`);
when it holds no trade yet, the opening book -- the demo book (:func:`demo_book`), or a
portfolio file -- is recorded as opening trades ``open-<account>-<n>`` at the as-of date's
midnight, each with its margin result, through the same recorder as every later trade, in one
transaction (an interrupted start leaves no half-recorded book).  A ledger that already holds
trades is served as it is (a restart carries on where the log ends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from xmargin.clearing import LedgerSession, load_market
from xmargin.clearing.checkpoint import take_checkpoint
from xmargin.engine.live import LiveEngine, extend_context
from xmargin.engine.trades import parse_row
from xmargin.ledger import Ledger
from xmargin.portfolio.book import Book
from xmargin.portfolio.demo import DemoConfig
from xmargin.portfolio.io import read_portfolio

DEFAULT_LEDGER = "sqlite:///xmargin-ledger.db"


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
    pricing_timeout_s: float = 5.0  # a request that needs longer pricing is refused (422)
    checkpoint_every: int = 10_000  # ledger entries between checkpoints taken by the service (0: none)
    follow_poll_s: float = 0.05  # SQLite: how often a process looks for others' entries (PostgreSQL: fallback)
    follow_notify: bool = True  # PostgreSQL: wake on the appends' NOTIFY instead of polling
    fast_what_if: bool = True  # trade and portfolio what-ifs past FastAPI's machinery (service.fastpath*)

def _book_rows(book: Book) -> list[dict[str, str]]:
    from xmargin.portfolio.rows import portfolio_rows

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
    return generate_book(market, dataclasses.replace(config, partial_share=0.0))


def open_session(config: ServiceConfig, progress: Callable[[str], None] | None = None) -> LedgerSession:
    """The ledger session the service runs on (see the module docstring)."""

    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    from xmargin.workflow import default_as_of

    ledger = Ledger(config.ledger)
    say(f"opening ledger {ledger!r}")
    session = LedgerSession.open(ledger, data_dir=config.data_dir, resume=True,  # latest checkpoint + tail
                                 progress=progress)
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
        record_opening_book(session, book, say)
        if config.checkpoint_every:
            info = take_checkpoint(session)
            say(f"checkpoint at entry {info.seq:,} ({info.bytes:,} bytes): a restart replays only what follows")
    return session


def record_opening_book(session: LedgerSession, book: Book, say: Callable[[str], None]) -> None:
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
