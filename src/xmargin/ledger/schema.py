"""The ledger's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

``ledger_entries`` is the log, one row per entry (see :mod:`xmargin.ledger.hashing`); its
columns other than ``payload`` and the hashes repeat fields of the payload for querying and
are checked against it by ``verify``.  Constraints: ``seq`` is the primary key (no two
entries share a number), ``(kind, ref)`` is unique (a trade id, a cancel of it or a
collateral movement id is recorded once; NULL refs of the engine's entries do not collide)
and ``hash`` is unique.  Triggers refuse UPDATE and DELETE on it: the log is append-only.

``ledger_head`` holds one row: the last ``seq`` and ``hash`` and the format version.  Every
append updates it in the same transaction, and it serialises writers (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE`` on the row).  ``verify``
compares it with the last entry, which exposes entries cut off the end of the log.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

FORMAT = "xmargin-ledger/1"

metadata = MetaData()

entries = Table(
    "ledger_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("recorded_at", String(32), nullable=False),
    Column("source", String(16), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ref", String(256), nullable=True),
    Column("event_time", String(32), nullable=True),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("scope", String(256), nullable=True),  # ordering scope (an account); not hashed, see store
    UniqueConstraint("kind", "ref", name="uq_ledger_entries_kind_ref"),
    UniqueConstraint("hash", name="uq_ledger_entries_hash"),
    Index("ix_ledger_entries_source_time", "source", "event_time"),
    Index("ix_ledger_entries_scope_time", "source", "scope", "event_time"),
)

#: Signed checkpoints (:mod:`xmargin.ledger.signing`): one JSON document each, in signing order.
signed_checkpoints = Table(
    "ledger_checkpoints_signed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("signer", String(16), nullable=False),
    Column("document", Text, nullable=False),
    UniqueConstraint("document", name="uq_ledger_checkpoints_signed_document"),
)

#: Added after the first release: ledgers made before it get the column and index on open.
SCOPE_MIGRATION = (
    "ALTER TABLE ledger_entries ADD COLUMN scope VARCHAR(256)",
    "CREATE INDEX IF NOT EXISTS ix_ledger_entries_scope_time ON ledger_entries (source, scope, event_time)",
)

head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("format", String(32), nullable=False),
)

SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_entries_no_delete BEFORE DELETE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END",
)

POSTGRES_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'ledger entries are append-only'; END $$",
    "CREATE OR REPLACE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries "
    "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()",
    "CREATE OR REPLACE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()",
)
