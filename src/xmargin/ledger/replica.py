"""Replicas, anchored verification and member proofs.

* :func:`verify_anchored` — the hash chain (:func:`~xmargin.ledger.verify.verify_ledger`), then
  every signed checkpoint stored in the ledger and every one a party kept (``--anchor FILE``):
  signatures under the parties' public keys, truncation, forks; the first problem is named.
* :func:`first_divergence` — walk two replicas in step; the first entry that differs (or that
  one of them lacks).
* :func:`sync` — copy a ledger to a second database (entries verbatim, after what the
  destination already holds, which must be a prefix of the source), copy its signed
  checkpoints, then verify the copy.
* :func:`member_proof` / :func:`check_member_proof` — an account's entries with Merkle inclusion
  proofs against a signed checkpoint: the member checks each entry's hash from its payload and
  previous hash, its inclusion under the checkpoint's root, and the checkpoint's signature,
  without seeing any other entry's payload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import insert

from xmargin.errors import InputError
from xmargin.ledger.hashing import entry_hash
from xmargin.ledger.merkle import inclusion_proofs, verify_inclusion
from xmargin.ledger.schema import signed_checkpoints
from xmargin.ledger.signing import Checkpoint, check_anchor, stored_checkpoints
from xmargin.ledger.store import Entry, Ledger, LedgerError
from xmargin.ledger.verify import VerifyReport, verify_ledger


def verify_anchored(ledger: Ledger, keys: Mapping[str, Ed25519PublicKey] | None,
                    anchors: Iterable[Checkpoint] = ()) -> VerifyReport:
    """Chain, then stored and kept checkpoints; ``keys`` None checks signatures under the embedded keys only."""
    report = verify_ledger(ledger)
    if not report.ok:
        return report
    hashes = [e.hash for e in ledger.entries()]
    checked = 0
    for label, cps in (("stored", stored_checkpoints(ledger)), ("kept", list(anchors))):
        for cp in cps:
            problem = check_anchor(hashes, cp, keys)
            if problem is not None:
                return VerifyReport(False, report.entries, report.last_seq, report.last_hash, problem.kind,
                                    problem.seq, f"{label} {problem.message}")
            checked += 1
    msg = report.message + (f"; {checked} signed checkpoint(s) verified" if checked else "; no signed checkpoint")
    return VerifyReport(True, report.entries, report.last_seq, report.last_hash, message=msg)


@dataclass(frozen=True)
class Divergence:
    seq: int
    message: str


def first_divergence(a: Ledger, b: Ledger) -> Divergence | None:
    """The first entry at which two replicas differ, or None when they hold the same entries."""
    for ea, eb in zip_longest(a.entries(), b.entries()):
        if ea is None or eb is None:
            e = ea or eb
            assert e is not None
            short = a if ea is None else b
            return Divergence(e.seq, f"entry {e.seq}: {short!r} ends at entry {e.seq - 1}, the other goes on")
        if ea.seq != eb.seq or ea.hash != eb.hash or ea.payload != eb.payload:
            seq = min(ea.seq, eb.seq)
            return Divergence(seq, f"entry {seq} differs: {a!r} has {ea.kind} {ea.ref or ''} hash {ea.hash[:12]}..., "
                                   f"{b!r} has {eb.kind} {eb.ref or ''} hash {eb.hash[:12]}...")
    return None


@dataclass(frozen=True)
class SyncReport:
    copied: int
    checkpoints: int
    verified: VerifyReport


def sync(source: Ledger, dest: Ledger, *, page: int = 2000) -> SyncReport:
    """Copy ``source`` into ``dest`` (see the module docstring); refuse when ``dest`` has diverged."""
    have, _ = dest.head()
    if have:
        for ea, eb in zip(source.entries(), dest.entries(), strict=False):
            if ea.hash != eb.hash or ea.payload != eb.payload:
                raise LedgerError(f"the replicas diverge at entry {ea.seq}: {dest!r} holds {eb.kind} {eb.ref or ''} "
                                  f"(hash {eb.hash[:12]}...), {source!r} holds {ea.kind} {ea.ref or ''} "
                                  f"(hash {ea.hash[:12]}...); nothing was copied")
        if source.head()[0] < have:
            raise LedgerError(f"{dest!r} holds {have} entries, more than {source!r} ({source.head()[0]}): "
                              "the source was truncated or is behind; nothing was copied")
    copied = 0
    batch: list[Entry] = []
    for e in source.entries(have + 1):
        batch.append(e)
        if len(batch) >= page:
            copied += dest.append_verbatim(batch)
            batch = []
    copied += dest.append_verbatim(batch)
    known = {cp.to_json() for cp in stored_checkpoints(dest)}
    new = [cp for cp in stored_checkpoints(source) if cp.to_json() not in known]
    if new:
        with dest.engine.begin() as conn:
            conn.execute(insert(signed_checkpoints),
                         [{"seq": cp.seq, "signer": cp.signer, "document": cp.to_json()} for cp in new])
    return SyncReport(copied, len(new), verify_anchored(dest, None))


# ----------------------------------------------------------------------------- member proofs


def member_proof(ledger: Ledger, account: str, checkpoint: Checkpoint) -> dict[str, Any]:
    """The entries of ``account`` up to the checkpoint, each with its inclusion proof."""
    entries = [e for e in ledger.entries() if e.seq <= checkpoint.seq]
    hashes = [e.hash for e in entries]
    if len(hashes) != checkpoint.seq or (hashes and hashes[-1] != checkpoint.hash):
        raise LedgerError(f"the ledger does not match the checkpoint at entry {checkpoint.seq}")
    mine: list[int] = []
    trades: set[str] = set()
    for i, e in enumerate(entries):
        data = json.loads(e.payload).get("data", {})
        if _belongs(e.kind, data, account, trades):
            mine.append(i)
    items = [{"seq": entries[i].seq, "payload": entries[i].payload, "prev_hash": entries[i].prev_hash,
              "hash": entries[i].hash, "proof": proof} for i, proof in zip(mine, inclusion_proofs(hashes, mine),
                                                                          strict=True)]
    return {"account": account, "checkpoint": json.loads(checkpoint.to_json()), "entries": items}


def check_member_proof(doc: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey] | None,
                       source: str = "proof") -> list[int]:
    """Check a member proof; the verified sequence numbers, or an :class:`InputError` naming the first bad one."""
    cp = Checkpoint.from_data(doc.get("checkpoint") or {}, source=source)
    why = cp.signature_ok(keys)
    if why is not None:
        raise InputError(f"checkpoint at entry {cp.seq} by {cp.signer}: {why}", source=source, field="checkpoint")
    done = []
    trades: set[str] = set()
    for n, item in enumerate(_items(doc, source), start=1):
        seq, payload, prev, h = item["seq"], item["payload"], item["prev_hash"], item["hash"]
        if entry_hash(prev, payload) != h:
            raise InputError(f"entry {seq}: its hash does not match its payload", source=source, row=n)
        body = json.loads(payload)
        if not _belongs(body.get("kind", ""), body.get("data", {}), str(doc.get("account")), trades):
            raise InputError(f"entry {seq} is not an entry of account {doc.get('account')}", source=source, row=n)
        if not verify_inclusion(h, seq - 1, cp.seq, item["proof"], cp.root):
            raise InputError(f"entry {seq} is not in the chain signed by {cp.signer} at entry {cp.seq}",
                             source=source, row=n)
        done.append(seq)
    return done


def _belongs(kind: str, data: Mapping[str, Any], account: str, trades: set[str]) -> bool:
    """An entry of the account: its own field, or a cancel of one of its trades (seen before)."""
    if kind == "cancel":
        return data.get("trade_id") in trades
    if data.get("account") != account:
        return False
    if kind == "trade":
        trades.add(str(data.get("trade_id")))
    return True


def _items(doc: Mapping[str, Any], source: str) -> Sequence[Mapping[str, Any]]:
    items = doc.get("entries")
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and {"seq", "payload", "prev_hash", "hash", "proof"} <= set(i) for i in items):
        raise InputError("not a member proof (entries with seq, payload, prev_hash, hash, proof)", source=source)
    return items


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=p) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError("not a JSON document", source=p) from None
