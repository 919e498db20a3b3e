"""The shared, tamper-evident ledger: an append-only, hash-chained event log.

* :mod:`~xmargin.ledger.hashing` — canonical JSON and ``hash = SHA-256(previous hash + payload)``;
* :mod:`~xmargin.ledger.schema` / :mod:`~xmargin.ledger.store` — the tables and :class:`Ledger`
  (SQLite file by default, PostgreSQL by URL), one transaction per batch, idempotent ids;
* :mod:`~xmargin.ledger.verify` — check the chain, name the first bad entry;
* :mod:`~xmargin.ledger.replay` — rebuild engine and collateral from the log;
* :mod:`~xmargin.ledger.session` — :class:`LedgerSession`: engine + collateral + ledger in step;
* :mod:`~xmargin.ledger.collateral` — haircut values, margin calls and excess;
* :mod:`~xmargin.ledger.reconcile` — FICC-side vs CME-side views of each account.

Entry kinds: ``trade``, ``cancel``, ``collateral`` (sources ``FICC`` / ``CME``);
``market_snapshot``, ``margin_result``, ``margin_call``, ``excess`` (source ``engine``);
``position_snapshot`` (any source).
"""

from xmargin.ledger.collateral import CollateralBook, HaircutSchedule
from xmargin.ledger.reconcile import (
    AccountView,
    Mismatch,
    engine_view,
    engine_views,
    reconcile,
    views_from_ledger,
)
from xmargin.ledger.replay import Market, ReplayState, load_market, replay
from xmargin.ledger.session import IngestReport, LedgerSession
from xmargin.ledger.store import (
    DEFAULT_URL,
    ConflictError,
    Entry,
    Event,
    Ledger,
    LedgerError,
    OutOfOrderError,
    UnknownTradeError,
)
from xmargin.ledger.verify import VerifyReport, verify_entries, verify_export, verify_ledger

__all__ = [
    "DEFAULT_URL",
    "AccountView",
    "CollateralBook",
    "ConflictError",
    "Entry",
    "Event",
    "HaircutSchedule",
    "IngestReport",
    "Ledger",
    "LedgerError",
    "LedgerSession",
    "Market",
    "Mismatch",
    "OutOfOrderError",
    "ReplayState",
    "UnknownTradeError",
    "VerifyReport",
    "engine_view",
    "engine_views",
    "load_market",
    "reconcile",
    "replay",
    "verify_entries",
    "verify_export",
    "verify_ledger",
    "views_from_ledger",
]
