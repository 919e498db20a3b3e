"""Check the whole hash chain and name the first entry that is altered, missing or out of place.

Walking the log in sequence order, entry ``n`` must:

1. be numbered ``n`` (a gap means an entry is **missing**);
2. hold a canonical JSON payload whose ``seq`` is ``n`` (a payload of another number means
   entries were **reordered**) and whose ``timestamp``, ``source``, ``kind``, ``ref`` and
   ``time`` agree with the row's columns (else the row was **altered**);
3. carry as previous hash the hash of entry ``n - 1`` (64 zeros for the first);
4. carry ``hash = SHA-256(previous hash + payload)`` (else its payload was **altered**).

Finally the head row must name the last entry (else entries were **removed from the end**).
The same checks run on a JSON-lines export (:func:`verify_export`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xmargin.errors import InputError
from xmargin.ledger.hashing import GENESIS, canonical_json, entry_hash
from xmargin.ledger.store import Entry, Ledger


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int  # entries checked (up to the first problem)
    last_seq: int
    last_hash: str
    problem: str | None = None  # "altered", "missing", "reordered", "truncated", "malformed"
    seq: int | None = None  # the first entry found wrong
    message: str = ""


def _fail(kind: str, seq: int, checked: int, last_seq: int, last_hash: str, message: str) -> VerifyReport:
    return VerifyReport(False, checked, last_seq, last_hash, kind, seq, message)


def verify_entries(rows: Iterable[Entry], head: tuple[int, str] | None = None) -> VerifyReport:
    """Check a sequence of entries (in stored order) and, when given, the head row."""
    expected = 1
    prev = GENESIS
    before = GENESIS  # the hash of entry expected - 2 (the last good one when n - 1 was rewritten)
    checked = 0
    for e in rows:
        if e.seq != expected:
            if e.seq > expected:
                missing = f"entry {expected}" if e.seq == expected + 1 else f"entries {expected}-{e.seq - 1}"
                return _fail("missing", expected, checked, expected - 1, prev,
                             f"{missing} missing: the log goes from {expected - 1} to {e.seq}")
            return _fail("reordered", e.seq, checked, expected - 1, prev,
                         f"entry {e.seq} appears after entry {expected - 1}: entries out of order")
        try:
            doc = json.loads(e.payload)
            canonical = canonical_json(doc) == e.payload
        except (ValueError, TypeError):
            doc, canonical = None, False
        if not isinstance(doc, dict) or not canonical or "seq" not in doc:
            return _fail("malformed", e.seq, checked, expected - 1, prev,
                         f"entry {e.seq}: payload is not canonical JSON: altered")
        if doc["seq"] != e.seq:
            return _fail("reordered", e.seq, checked, expected - 1, prev,
                         f"entry {e.seq} holds the payload of entry {doc['seq']}: entries reordered")
        columns = {"timestamp": e.timestamp, "source": e.source, "kind": e.kind, "ref": e.ref, "time": e.time}
        for name, value in columns.items():
            if doc.get(name) != value:
                return _fail("altered", e.seq, checked, expected - 1, prev,
                             f"entry {e.seq}: column {name} is {value!r} but its payload says {doc.get(name)!r}: altered")
        if e.prev_hash != prev:
            if entry_hash(e.prev_hash, e.payload) == e.hash and e.seq > 1:
                # entry n is consistent with the entry n - 1 it was chained to: n - 1 was rewritten
                return _fail("altered", e.seq - 1, checked - 1, expected - 2, before,
                             f"entry {e.seq - 1} was altered and rehashed: entry {e.seq} was chained to "
                             f"hash {e.prev_hash[:12]}..., entry {e.seq - 1} now hashes to {prev[:12]}...")
            return _fail("altered", e.seq, checked, expected - 1, prev,
                         f"entry {e.seq}: its previous hash does not match the hash of entry {e.seq - 1}: altered")
        if entry_hash(prev, e.payload) != e.hash:
            return _fail("altered", e.seq, checked, expected - 1, prev,
                         f"entry {e.seq}: its hash does not match its payload: altered")
        before, prev = prev, e.hash
        checked += 1
        expected += 1
    last = expected - 1
    if head is not None and (head[0], head[1]) != (last, prev):
        if head[0] > last:
            return _fail("truncated", last + 1, checked, last, prev,
                         f"the head records {head[0]} entries but the log ends at {last}: "
                         f"entries {last + 1}-{head[0]} removed from the end")
        return _fail("altered", last, checked, last, prev,
                     f"the head (seq {head[0]}, hash {head[1][:12]}...) does not match the last entry "
                     f"(seq {last}, hash {prev[:12]}...)")
    return VerifyReport(True, checked, last, prev, message=f"{checked} entries, chain intact")


def verify_ledger(ledger: Ledger) -> VerifyReport:
    """Check the whole log of ``ledger`` and its head."""
    return verify_entries(ledger.entries(), ledger.head())


def verify_export(path: str | Path) -> VerifyReport:
    """Check a JSON-lines export (no head: a cut-off end cannot be seen)."""
    path = Path(path)

    def rows() -> Iterable[Entry]:
        try:
            with path.open(encoding="utf-8") as fh:
                yield from _export_rows(fh, path)
        except OSError as exc:
            raise InputError(f"cannot read ledger export: {exc.strerror}", source=path) from None
        except UnicodeDecodeError:
            raise InputError("not a ledger export (not UTF-8 text)", source=path) from None

    return verify_entries(rows())


def _export_rows(lines: Iterable[str], path: Path) -> Iterable[Entry]:
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            yield Entry(int(d["seq"]), d["timestamp"], d["source"], d["kind"], d["ref"], d["time"],
                        d["payload"], d["prev_hash"], d["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not a ledger export line ({exc!r})", source=path, row=n) from None
