"""The shared, tamper-evident ledger store: an append-only, hash-chained event log.

* :mod:`~xmargin.ledger.hashing` — canonical JSON and ``hash = SHA-256(previous hash + payload)``;
* :mod:`~xmargin.ledger.schema` / :mod:`~xmargin.ledger.store` — the tables and :class:`Ledger`
  (SQLite file by default, PostgreSQL by URL), one transaction per batch, idempotent ids;
* :mod:`~xmargin.ledger.verify` — check the chain, name the first bad entry.

The store knows nothing of the engine: the clearing operations that drive it (record a trade,
margin calls, collateral, replay, reconciliation) live in :mod:`xmargin.clearing`, above both.

Entry kinds: ``trade``, ``cancel``, ``collateral`` (sources ``FICC`` / ``CME``);
``market_snapshot``, ``margin_result``, ``margin_call``, ``excess`` (source ``engine``);
``position_snapshot`` (any source).
"""

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
    "ConflictError",
    "Entry",
    "Event",
    "Ledger",
    "LedgerError",
    "OutOfOrderError",
    "UnknownTradeError",
    "VerifyReport",
    "verify_entries",
    "verify_export",
    "verify_ledger",
]
