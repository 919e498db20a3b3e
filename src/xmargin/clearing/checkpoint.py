"""Ledger checkpoints: the engine state at a sequence number, so a restart replays only the tail.

A checkpoint has two halves:

* a ``checkpoint`` **entry in the chain** (source ``engine``) whose data holds the SHA-256 of
  the saved state (``state_sha256``) and of every account's figures (``figures_sha256``); its
  hash anchors the checkpoint in the log like any other entry;
* the **saved state** in the ``ledger_checkpoints`` table (outside the chain): ``seq`` and
  ``entry_hash`` of that entry and the state itself, zlib-compressed canonical JSON (never a
  pickle: the database is not trusted to run code).

Applying a ``checkpoint`` entry -- when it is taken, and in every replay -- recomputes every
account from its positions (:meth:`LiveEngine.rebuild`, which drops the rounding left by the
incremental sums).  The state after the entry is therefore a function of the positions only,
and the saved state needs just the positions, not the scenario P&L vectors: restoring
rebuilds each account with the same arithmetic and gets the same figures bit for bit, which
``figures_sha256`` checks.  The margin results recorded before the entry are compared with the
replayed ones at that point (:attr:`ReplayState.mismatches` keeps them) and the comparison
starts again from the rebuilt figures.

Saved state: the market entry in force, the instruments of the engine's universe (each as the
id of the trade that first defined it, resolved again on restoring, in universe order), every
account (fields, version, positions by universe row), the open trades, every trade and
collateral movement recorded (their ledger payloads), cancels, the latest business time per
source, the collateral holdings and call status, the latest position views and which
accounts have a recorded margin result.

:func:`resume` opens a ledger from its latest usable checkpoint (its entry present with the
same hash, the state's digest equal to the one in the entry, the figures equal after
restoring) and replays the entries after it; with none usable it replays everything.
:func:`verify_checkpoints` checks every checkpoint against the chain and, with ``replay=True``,
that the saved state equals the state a replay from the first entry reaches at that point.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    inspect,
    select,
)

from xmargin.clearing.collateral import _Status
from xmargin.clearing.reconcile import AccountView
from xmargin.clearing.replay import ReplayState, figures_digest, market_from_data
from xmargin.engine.trades import CollateralMovement, resolve_instrument
from xmargin.errors import XMarginError
from xmargin.ledger.hashing import canonical_json
from xmargin.ledger.store import Entry, Event, Ledger, LedgerError
from xmargin.portfolio.book import Account
from xmargin.reference.lookup import instrument_id

FORMAT = "xmargin-checkpoint/1"
KIND = "checkpoint"

_meta = MetaData()
checkpoints = Table(
    "ledger_checkpoints",
    _meta,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_hash", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("format", String(32), nullable=False),
    Column("state_sha256", String(64), nullable=False),
    Column("state", LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class CheckpointInfo:
    seq: int
    entry_hash: str
    state_sha256: str
    bytes: int
    accounts: int


# ----------------------------------------------------------------------------- saving


def _definers(state: ReplayState) -> list[str]:
    """Per universe row, the id of the first trade whose instrument it is."""
    assert state.engine is not None and state.market is not None
    universe = state.engine.context.universe
    wanted = {i: None for i in universe.ids}
    out: dict[str, str] = {}
    m = state.market
    for tid, trade in state.trades.items():
        if len(out) == len(wanted):
            break
        inst = resolve_instrument(trade, as_of=m.snapshot.as_of, master=m.master)
        key = instrument_id(inst)
        if key in wanted and key not in out:
            if repr(inst) != repr(universe.instruments[universe.index(key)]):
                raise LedgerError(f"checkpoint: instrument {key} of trade {tid} differs from the engine's row")
            out[key] = tid
    missing = [i for i in universe.ids if i not in out]
    if missing:
        raise LedgerError(f"checkpoint: no recorded trade defines {missing[:3]} of the engine's universe")
    return [out[i] for i in universe.ids]


def encode_state(state: ReplayState) -> bytes:
    """The saved state of ``state`` (see the module docstring), compressed canonical JSON."""
    eng, coll = state.engine, state.collateral
    if eng is None or coll is None or state.market_seq is None:
        raise LedgerError("checkpoint: the ledger holds no market yet")
    ids = eng.context.universe._index
    doc = {
        "format": FORMAT,
        "market_seq": state.market_seq,
        "entries": state.entries,
        "universe": _definers(state),
        "accounts": [[a, acc.member, acc.account_type, acc.cross_margin, acc.archetype, eng._accounts[a].version,
                      [[ids[i], q] for i, q in eng.positions(a).items()]]
                     for a in eng.accounts for acc in (eng.account(a),)],
        "open_trades": [[t, a, i, q] for t, (a, i, q) in eng._trades.items()],
        "trades": [[src, payload] for src, payload in state.trades.payloads()],
        "cancelled": sorted(state.cancelled),
        "movements": [[m.source, m.payload()] for m in state.movements.values()],
        "last_time": sorted([*k, v] if isinstance(k, tuple) else [k, v] for k, v in state.last_time.items()),
        "recorded": sorted(state.recorded),
        "recorded_seq": state.recorded_seq,
        "views": {src: {a: v.to_data(a) for a, v in accounts.items()} for src, accounts in state.views.items()},
        "holdings": coll.holdings,
        "status": {a: [s.kind, s.amount] for a, s in coll.status.items()},
    }
    return zlib.compress(canonical_json(doc).encode(), 6)


def _ensure_table(ledger: Ledger) -> None:
    _meta.create_all(ledger.engine, checkfirst=True)


def take_checkpoint(session: Any) -> CheckpointInfo:
    """Record a checkpoint of ``session`` (a :class:`~xmargin.ledger.LedgerSession` whose state is
    the ledger's up to its head): the entry in the chain, then the saved state.  Should the
    process stop between the two, the entry is an ordinary replayed one and the previous
    checkpoint (or the first entry) is where a restart begins."""
    ledger: Ledger | None = session.ledger
    state: ReplayState = session.state
    if ledger is None or state.engine is None:
        raise LedgerError("checkpoint: no ledger or no market")
    _ensure_table(ledger)
    state.earlier_mismatches += state.mismatches
    state.engine.rebuild()
    state.recorded = {a: state.engine.margin(a) for a in state.recorded}
    blob = encode_state(replace(state, entries=state.entries + 1))
    digest = hashlib.sha256(blob).hexdigest()
    data = {"format": FORMAT, "state_sha256": digest, "figures_sha256": figures_digest(state.engine),
            "accounts": len(state.engine.accounts), "trades": len(state.trades)}
    try:
        result = ledger.append([[Event(KIND, "engine", data)]])
    except XMarginError:
        session._reload()
        raise
    entry = result.recorded[0]
    state.entries += 1
    with ledger.engine.begin() as conn:
        conn.execute(insert(checkpoints).values(seq=entry.seq, entry_hash=entry.hash, format=FORMAT,
                                                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                                state_sha256=digest, state=blob))
    return CheckpointInfo(entry.seq, entry.hash, digest, len(blob), len(state.engine.accounts))


# ----------------------------------------------------------------------------- restoring


def list_checkpoints(ledger: Ledger) -> list[tuple[int, str, str]]:
    """``(seq, entry hash, state sha256)`` of every saved checkpoint, latest first."""
    if not inspect(ledger.engine).has_table("ledger_checkpoints"):
        return []
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(checkpoints.c.seq, checkpoints.c.entry_hash, checkpoints.c.state_sha256)
                            .order_by(checkpoints.c.seq.desc())).all()
    return [(int(r.seq), str(r.entry_hash), str(r.state_sha256)) for r in rows]


def _load_blob(ledger: Ledger, seq: int) -> bytes:
    with ledger.engine.connect() as conn:
        return bytes(conn.execute(select(checkpoints.c.state).where(checkpoints.c.seq == seq)).scalar_one())


def _entry_at(ledger: Ledger, seq: int) -> Entry | None:
    for e in ledger.entries(seq, page=1):
        return e if e.seq == seq else None
    return None


def check_checkpoint(ledger: Ledger, seq: int, entry_hash: str, state_sha256: str) -> tuple[bytes, Entry]:
    """The saved state of checkpoint ``seq`` once it agrees with the chain; :class:`LedgerError` naming
    what does not."""
    e = _entry_at(ledger, seq)
    if e is None or e.kind != KIND:
        raise LedgerError(f"checkpoint {seq}: entry {seq} of the log is {'missing' if e is None else e.kind}")
    if e.hash != entry_hash:
        raise LedgerError(f"checkpoint {seq}: saved for entry hash {entry_hash[:12]}..., the log's entry {seq} "
                          f"hashes to {e.hash[:12]}...")
    blob = _load_blob(ledger, seq)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != state_sha256 or digest != e.data.get("state_sha256"):
        raise LedgerError(f"checkpoint {seq}: the saved state hashes to {digest[:12]}..., the entry recorded "
                          f"{str(e.data.get('state_sha256'))[:12]}...: altered")
    return blob, e


def decode_state(blob: bytes, ledger: Ledger, data_dir: str | Path | None) -> ReplayState:
    """A :class:`ReplayState` from a saved state (see the module docstring)."""
    try:
        doc = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError) as exc:
        raise LedgerError(f"checkpoint: the saved state cannot be read ({exc})") from None
    if doc.get("format") != FORMAT:
        raise LedgerError(f"checkpoint: format {doc.get('format')!r}, expected {FORMAT}")
    market_entry = _entry_at(ledger, int(doc["market_seq"]))
    if market_entry is None or market_entry.kind != "market_snapshot":
        raise LedgerError(f"checkpoint: entry {doc['market_seq']} is not a market snapshot")
    state = ReplayState()
    state.start_market(market_from_data(market_entry.data, data_dir), market_entry.seq)
    state.entries = int(doc["entries"])
    state.trades.load_payloads(doc["trades"])  # made Trade objects when asked for
    state.cancelled = set(doc["cancelled"])
    state.movements = {p["movement_id"]: CollateralMovement.from_payload(p, src) for src, p in doc["movements"]}
    state.last_time = {(tuple(r[:-1]) if len(r) > 2 else r[0]): r[-1] for r in doc["last_time"]}
    state.recorded_seq = {a: int(s) for a, s in doc["recorded_seq"].items()}
    state.views = {src: {a: AccountView.from_data(v) for a, v in accs.items()} for src, accs in doc["views"].items()}
    eng, coll, m = state.engine, state.collateral, state.market
    assert eng is not None and coll is not None and m is not None
    coll.holdings = {a: {k: float(v) for k, v in h.items()} for a, h in doc["holdings"].items()}
    coll.status = {a: _Status(k, float(v)) for a, (k, v) in doc["status"].items()}
    instruments = [resolve_instrument(state.trades[t], as_of=m.snapshot.as_of, master=m.master)
                   for t in doc["universe"]]
    eng.add_instruments(instruments)
    universe = eng.context.universe
    if list(universe.ids) != [instrument_id(i) for i in instruments]:
        raise LedgerError("checkpoint: the restored universe differs from the saved one")
    for name, member, kind, xm, archetype, version, positions in doc["accounts"]:
        acc = Account(name, member, kind, bool(xm), archetype)
        st = eng._k.fresh_state(acc, {int(i): float(q) for i, q in positions})
        eng._accounts[name] = replace(st, version=int(version))
    eng._trades = {t: (a, i, float(q)) for t, a, i, q in doc["open_trades"]}
    state.recorded = {a: eng.margin(a) for a in doc["recorded"]}
    return state


def resume(ledger: Ledger, *, data_dir: str | Path | None = None,
           progress: Callable[[str], None] | None = None) -> ReplayState:
    """The state at the end of ``ledger``: its latest usable checkpoint and the entries after it,
    or (with none usable) every entry.  A checkpoint that does not check out is skipped (and
    said so through ``progress``), never trusted."""
    from xmargin.clearing.replay import replay

    for seq, entry_hash, sha in list_checkpoints(ledger):
        try:
            blob, e = check_checkpoint(ledger, seq, entry_hash, sha)
            state = decode_state(blob, ledger, data_dir)
            assert state.engine is not None
            if figures_digest(state.engine) != e.data.get("figures_sha256"):
                raise LedgerError(f"checkpoint {seq}: the restored figures differ from the recorded ones")
        except (XMarginError, KeyError, TypeError, ValueError) as exc:
            if progress is not None:
                progress(f"checkpoint {seq} not used: {exc}")
            continue
        if progress is not None:
            progress(f"restored checkpoint {seq} ({len(state.engine.accounts):,} accounts); replaying the tail")
        apply_tail(state, ledger.entries(seq + 1), data_dir)
        return state
    return replay(ledger, data_dir=data_dir)


def apply_tail(state: ReplayState, entries: Iterable[Entry], data_dir: str | Path | None) -> list[Entry]:
    """Apply entries after the state's position (instruments priced in one go per market, as
    :func:`~xmargin.clearing.replay.replay` does); returns them."""
    tail = list(entries)
    if tail and tail[0].kind != "market_snapshot":
        state.preload(tail)
    for i, e in enumerate(tail):
        if e.seq != state.entries + 1:
            raise LedgerError(f"entry {e.seq} follows entry {state.entries}: the log has a gap")
        try:
            state.apply(e, data_dir)
            if e.kind == "market_snapshot":
                state.preload(tail[i + 1:])
        except XMarginError as exc:
            raise LedgerError(f"replay stopped at entry {e.seq} ({e.kind} {e.ref or ''}): {exc}") from None
        state.entries += 1
    return tail


# ----------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class CheckpointReport:
    seq: int
    ok: bool
    message: str


def verify_checkpoints(ledger: Ledger, *, data_dir: str | Path | None = None,
                       replay: bool = False) -> list[CheckpointReport]:
    """Check every saved checkpoint against the chain (entry, hash, state digest, figures after
    restoring); with ``replay``, also that its state is the one a replay from the first entry
    reaches there."""
    out: list[CheckpointReport] = []
    saved = sorted(list_checkpoints(ledger))
    replayed: ReplayState | None = None
    for seq, entry_hash, sha in saved:
        try:
            blob, e = check_checkpoint(ledger, seq, entry_hash, sha)
            state = decode_state(blob, ledger, data_dir)
            assert state.engine is not None
            if figures_digest(state.engine) != e.data.get("figures_sha256"):
                raise LedgerError(f"checkpoint {seq}: the restored figures differ from the recorded ones")
            if replay:
                if replayed is None:
                    replayed = ReplayState()
                _replay_to(replayed, ledger, seq, data_dir)
                mine = json.loads(zlib.decompress(encode_state(replayed)))
                theirs = json.loads(zlib.decompress(blob))
                if mine != theirs:
                    diff = sorted(k for k in theirs if mine.get(k) != theirs.get(k))
                    raise LedgerError(f"checkpoint {seq}: the saved state differs from the replayed one in {diff}")
        except (XMarginError, KeyError, TypeError, ValueError) as exc:
            out.append(CheckpointReport(seq, False, str(exc)))
            continue
        out.append(CheckpointReport(seq, True, f"checkpoint {seq}: {len(state.engine.accounts):,} accounts, "
                                               f"{len(blob):,} bytes, agrees with the log"
                                               + (" and with a replay" if replay else "")))
    return out


def _replay_to(state: ReplayState, ledger: Ledger, seq: int, data_dir: str | Path | None) -> None:
    entries = []
    for e in ledger.entries(state.entries + 1):
        if e.seq > seq:
            break
        entries.append(e)
    apply_tail(state, entries, data_dir)
