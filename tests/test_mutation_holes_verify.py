"""The chain check, report field by report field, on chains built here (issue 17).

The chain is built in the test with ``hashlib`` and ``json`` only, by the documented rule:
canonical JSON (keys sorted, no whitespace) and ``hash = SHA-256(previous hash + payload)``
from 64 zeros.  Each tamper names the first bad entry, the entries checked before it, and the
last good entry and its hash (what ``xmargin ledger verify --json`` prints).  No database is
needed: ``verify_entries`` takes the rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from xmargin.errors import InputError
from xmargin.ledger import Entry, verify_entries, verify_export

ZERO = "0" * 64


def sha(prev: str, payload: str) -> str:
    return hashlib.sha256((prev + payload).encode("utf-8")).hexdigest()


def doc(seq: int) -> dict[str, object]:
    return {"data": {"quantity": f"{seq}000000.0"}, "kind": "trade", "ref": f"T{seq}", "seq": seq, "source": "FICC",
            "time": f"2025-10-31T14:0{seq}:00.000000Z", "timestamp": f"2025-10-31T14:0{seq}:00.100000Z"}


def canonical(d: dict[str, object]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def entry(d: dict[str, object], prev: str, payload: str | None = None) -> Entry:
    payload = canonical(d) if payload is None else payload
    return Entry(int(d["seq"]), str(d["timestamp"]), str(d["source"]), str(d["kind"]), str(d["ref"]),  # type: ignore[call-overload]
                 str(d["time"]), payload, prev, sha(prev, payload))


def chain(n: int = 6) -> list[Entry]:
    out, prev = [], ZERO
    for s in range(1, n + 1):
        e = entry(doc(s), prev)
        out.append(e)
        prev = e.hash
    return out


def fields(r) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    return (r.ok, r.entries, r.last_seq, r.last_hash, r.problem, r.seq)


def test_intact_chain_and_head() -> None:
    c = chain()
    r = verify_entries(c, (6, c[5].hash))
    assert fields(r) == (True, 6, 6, c[5].hash, None, None)
    assert r.message == "6 entries, chain intact"
    assert fields(verify_entries([])) == (True, 0, 0, ZERO, None, None)


def test_missing_entries() -> None:
    c = chain()
    r = verify_entries([*c[:2], *c[3:]])
    assert fields(r) == (False, 2, 2, c[1].hash, "missing", 3)
    assert r.message == "entry 3 missing: the log goes from 2 to 4"
    r = verify_entries([*c[:2], *c[4:]])
    assert fields(r) == (False, 2, 2, c[1].hash, "missing", 3)
    assert r.message == "entries 3-4 missing: the log goes from 2 to 5"


def test_an_entry_out_of_order() -> None:
    """Entry 3 stored again after entry 4: it appears after 4."""
    c = chain()
    r = verify_entries([*c[:4], c[2]])
    assert fields(r) == (False, 4, 4, c[3].hash, "reordered", 3)
    assert r.message == "entry 3 appears after entry 4: entries out of order"


def test_a_payload_under_another_number() -> None:
    """Row 4 carries entry 3's payload (columns made to agree): reordered at 4."""
    c = chain()
    d3 = doc(3)
    row4 = replace(c[3], payload=c[2].payload, timestamp=str(d3["timestamp"]), ref="T3", time=str(d3["time"]))
    r = verify_entries([*c[:3], row4, *c[4:]])
    assert fields(r) == (False, 3, 3, c[2].hash, "reordered", 4)
    assert r.message == "entry 4 holds the payload of entry 3: entries reordered"


@pytest.mark.parametrize("column", ["timestamp", "source", "kind", "ref", "time"])
def test_a_column_that_disagrees_with_the_payload(column: str) -> None:
    c = chain()
    bad = replace(c[1], **{column: "X"})
    r = verify_entries([c[0], bad, *c[2:]])
    assert fields(r) == (False, 1, 1, c[0].hash, "altered", 2)
    assert r.message == f"entry 2: column {column} is 'X' but its payload says {getattr(c[1], column)!r}: altered"


def test_non_canonical_payloads() -> None:
    """Whitespace, a payload that is not an object, one without ``seq``, and not JSON at all."""
    c = chain()
    for payload in (json.dumps(doc(3), sort_keys=True), "[1,2]", canonical({"kind": "trade"}), "{not json"):
        r = verify_entries([*c[:2], replace(c[2], payload=payload), *c[3:]])
        assert fields(r) == (False, 2, 2, c[1].hash, "malformed", 3), payload
        assert r.message == "entry 3: payload is not canonical JSON: altered"


def test_altered_payload_and_broken_link() -> None:
    c = chain()
    d4 = doc(4)
    d4["data"] = {"quantity": "9000000.0"}
    r = verify_entries([*c[:3], replace(c[3], payload=canonical(d4)), *c[4:]])
    assert fields(r) == (False, 3, 3, c[2].hash, "altered", 4)
    assert r.message == "entry 4: its hash does not match its payload: altered"
    r = verify_entries([*c[:3], replace(c[3], prev_hash="f" * 64), *c[4:]])
    assert fields(r) == (False, 3, 3, c[2].hash, "altered", 4)
    assert r.message == "entry 4: its previous hash does not match the hash of entry 3: altered"


def test_an_entry_rewritten_and_rehashed_is_named() -> None:
    """Entry 4 altered and given a fresh hash of its own: it verifies alone, but entry 5 was
    chained to the old hash, so entry 4 is named, with entry 3 the last good one."""
    c = chain()
    d4 = doc(4)
    d4["data"] = {"quantity": "1.0"}
    forged = entry(d4, c[2].hash)
    r = verify_entries([*c[:3], forged, *c[4:]])
    assert fields(r) == (False, 3, 3, c[2].hash, "altered", 4)
    assert r.message.startswith(f"entry 4 was altered and rehashed: entry 5 was chained to hash {c[3].hash[:12]}..., "
                                f"entry 4 now hashes to {forged.hash[:12]}...")


def test_head_checks() -> None:
    c = chain()
    r = verify_entries(c, (8, "a" * 64))
    assert fields(r) == (False, 6, 6, c[5].hash, "truncated", 7)
    assert r.message == "the head records 8 entries but the log ends at 6: entries 7-8 removed from the end"
    r = verify_entries(c, (6, "a" * 64))
    assert fields(r) == (False, 6, 6, c[5].hash, "altered", 6)
    r = verify_entries(c[:5], (5, c[5].hash))
    assert fields(r) == (False, 5, 5, c[4].hash, "altered", 5)


def test_export_file(tmp_path: Path) -> None:
    """Blank lines are skipped; a line that is not an export record is an input error naming
    the file and the line."""
    c = chain()
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(json.dumps(e.export()) for e in c[:3]) + "\n\n" + json.dumps(c[3].export()) + "\n")
    assert fields(verify_export(path)) == (True, 4, 4, c[3].hash, None, None)
    path.write_text(json.dumps(c[0].export()) + "\n" + '{"seq": 2}\n')
    with pytest.raises(InputError, match=r"export.jsonl, row 2"):
        verify_export(path)


def test_report_is_frozen_and_head_messages_are_exact() -> None:
    c = chain()
    r = verify_entries(c, (6, "a" * 64))
    assert r.message == (f"the head (seq 6, hash {'a' * 12}...) does not match the last entry "
                         f"(seq 6, hash {c[5].hash[:12]}...)")
    with pytest.raises(Exception, match="cannot assign"):
        r.ok = True  # type: ignore[misc]


def test_a_head_behind_the_log_is_altered_not_truncated() -> None:
    """The head says 4 entries, the log holds 6: the head was rewritten (nothing removed)."""
    c = chain()
    r = verify_entries(c, (4, c[3].hash))
    assert fields(r) == (False, 6, 6, c[5].hash, "altered", 6)


def test_a_payload_of_a_later_entry() -> None:
    """Row 3 carries entry 4's payload (columns made to agree): reordered at 3."""
    c = chain()
    d4 = doc(4)
    row3 = replace(c[2], payload=c[3].payload, timestamp=str(d4["timestamp"]), ref="T4", time=str(d4["time"]))
    r = verify_entries([*c[:2], row3, *c[3:]])
    assert fields(r) == (False, 2, 2, c[1].hash, "reordered", 3)


def test_unsorted_keys_are_not_canonical_even_when_hashed() -> None:
    """A payload with its keys out of order, correctly hashed into the chain: still malformed."""
    c = chain()
    d3 = doc(3)
    unsorted = json.dumps({"seq": 3, **{k: v for k, v in d3.items() if k != "seq"}}, separators=(",", ":"))
    row3 = entry(d3, c[1].hash, payload=unsorted)
    r = verify_entries([*c[:2], row3])
    assert fields(r) == (False, 2, 2, c[1].hash, "malformed", 3)


def test_every_hash_mismatch_is_seen_whichever_way_it_compares() -> None:
    """Altered payloads and broken links whose hashes sort both below and above the recorded
    ones: each is named (a check by ``<`` instead of ``!=`` would miss half of them)."""
    c = chain()
    below = above = 0
    for n in range(12):
        d4 = doc(4)
        d4["data"] = {"quantity": f"{n}.0"}
        altered = replace(c[3], payload=canonical(d4))
        below += sha(c[2].hash, altered.payload) < c[3].hash
        above += sha(c[2].hash, altered.payload) > c[3].hash
        r = verify_entries([*c[:3], altered, *c[4:]])
        assert (r.problem, r.seq, r.message) == ("altered", 4, "entry 4: its hash does not match its payload: altered")
        link = replace(c[3], prev_hash=f"{n:064x}")
        r = verify_entries([*c[:3], link, *c[4:]])
        assert (r.problem, r.seq) == ("altered", 4)
        assert r.message == "entry 4: its previous hash does not match the hash of entry 3: altered"
    assert below and above


def test_a_first_entry_chained_to_something_else() -> None:
    """Entry 1 self-consistent but chained to a hash other than the 64 zeros: entry 1 is
    altered (there is no entry 0 to blame)."""
    c = chain(2)
    first = entry(doc(1), "1" * 64)
    r = verify_entries([first, c[1]])
    assert fields(r) == (False, 0, 0, ZERO, "altered", 1)
    assert r.message == "entry 1: its previous hash does not match the hash of entry 0: altered"


def test_the_first_entry_rewritten_and_rehashed_is_named() -> None:
    c = chain(3)
    d1 = doc(1)
    d1["data"] = {"quantity": "2.0"}
    forged = entry(d1, ZERO)
    r = verify_entries([forged, *c[1:]])
    assert fields(r) == (False, 0, 0, ZERO, "altered", 1)
    assert r.message.startswith("entry 1 was altered and rehashed")


@pytest.mark.parametrize("fake", ["0" * 64, "f" * 64])
def test_a_head_hash_below_or_above_the_real_one(fake: str) -> None:
    c = chain()
    r = verify_entries(c, (6, fake))
    assert fields(r) == (False, 6, 6, c[5].hash, "altered", 6)
