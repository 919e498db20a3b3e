"""Signed checkpoints, anchors, replicas and member proofs (issue 15), on SQLite and PostgreSQL.

The Merkle tree is checked against the Certificate Transparency test vectors (RFC 6962 tree of
the eight leaves used in CT's ``merkle_tree_test``) and a naive recursive MTH written here from
the RFC's definition; signatures are Ed25519 from the ``cryptography`` library.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from xmargin.cli.main import app
from xmargin.errors import InputError
from xmargin.ledger import Event, Ledger, LedgerError
from xmargin.ledger.merkle import _root_of, inclusion_proof, leaf_hash, root, verify_inclusion
from xmargin.ledger.replica import (
    check_member_proof,
    first_divergence,
    member_proof,
    sync,
    verify_anchored,
)
from xmargin.ledger.signing import (
    generate_keys,
    load_private_key,
    load_public_keys,
    read_checkpoints,
    sign_checkpoint,
)
from xmargin.ledger.testing import postgres_url, temporary_database

CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58)),
             bytes(range(0x60, 0x70))]
CT_ROOTS = [  # certificate-transparency merkle_tree_test: roots of the first 1..8 leaves
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively, as written there (leaves are leaf hashes here)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def test_merkle_root_matches_the_ct_vectors() -> None:
    for n, want in enumerate(CT_ROOTS, start=1):
        assert _root_of([hashlib.sha256(b"\x00" + leaf).digest() for leaf in CT_LEAVES[:n]]).hex() == want
    assert root([]) == hashlib.sha256(b"").hexdigest()


def test_merkle_proofs_verify_and_only_for_the_right_leaf() -> None:
    for n in range(1, 34):
        hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
        r = root(hashes)
        assert r == _mth([leaf_hash(h) for h in hashes]).hex()
        for i in range(n):
            path = inclusion_proof(hashes, i)
            assert verify_inclusion(hashes[i], i, n, path, r)
            assert not verify_inclusion(hashes[(i + 1) % n], i, n, path, r) or n == 1
            if path:
                bad = [path[0][:-1] + ("0" if path[0][-1] != "0" else "1"), *path[1:]]
                assert not verify_inclusion(hashes[i], i, n, bad, r)


def _fill(lg: Ledger, start: int, count: int, accounts: tuple[str, ...] = ("M1-A", "M2-B")) -> None:
    groups = []
    for i in range(start, start + count):
        acc = accounts[i % len(accounts)]
        t = f"2025-10-31T14:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"
        groups.append([Event("trade", "FICC", {"trade_id": f"T{i}", "account": acc, "quantity": float(i)},
                             ref=f"T{i}", time=t, scope=acc),
                       Event("margin_result", "engine", {"account": acc, "total": float(i) * 2})])
    lg.append(groups)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    generate_keys(d)
    return d


def _url_pair(ledger_url: str, tmp_path: Path) -> Iterator[str]:
    if ledger_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'replica.db'}"
        return
    url, _ = postgres_url()
    assert url is not None
    with temporary_database(url) as db:
        yield db


@pytest.fixture
def replica_url(ledger_url: str, tmp_path: Path) -> Iterator[str]:
    yield from _url_pair(ledger_url, tmp_path)


def test_keys_are_ed25519_and_private_keys_are_private(keys: Path) -> None:
    assert sorted(load_public_keys(keys)) == ["CME", "FICC", "engine"]
    assert (keys / "FICC.key").stat().st_mode & 0o077 == 0
    with pytest.raises(InputError, match="not overwritten"):
        generate_keys(keys, ["FICC"])


def test_truncation_and_head_rewrite_are_caught_by_a_kept_checkpoint(ledger_url: str, keys: Path) -> None:
    with Ledger(ledger_url) as lg:
        _fill(lg, 0, 10)
        cp = sign_checkpoint(lg, load_private_key(keys / "CME.key"), "CME")
        assert cp.seq == 20
        _fill(lg, 10, 2)
        assert verify_anchored(lg, load_public_keys(keys)).ok
    # the attack: delete the last entries and rewrite the head, with write access to the database
    eng = create_engine(ledger_url)
    with eng.begin() as conn:
        if eng.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER ledger_entries_no_delete"))
        else:
            conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        conn.execute(text("DELETE FROM ledger_entries WHERE seq > 15"))
        conn.execute(text("DELETE FROM ledger_checkpoints_signed"))
        h = conn.execute(text("SELECT hash FROM ledger_entries WHERE seq = 15")).scalar()
        conn.execute(text("UPDATE ledger_head SET seq = 15, hash = :h"), {"h": h})
    eng.dispose()
    with Ledger(ledger_url, create=False) as lg:
        from xmargin.ledger import verify_ledger

        assert verify_ledger(lg).ok  # the chain alone cannot see it
        report = verify_anchored(lg, load_public_keys(keys), [cp])
    assert not report.ok and report.problem == "truncated" and report.seq == 16
    assert "CME signed a checkpoint at entry 20" in report.message


def test_a_fork_and_a_forged_checkpoint_are_named(ledger_url: str, keys: Path, tmp_path: Path) -> None:
    with Ledger(ledger_url) as lg:
        _fill(lg, 0, 4)
        cp = sign_checkpoint(lg, load_private_key(keys / "FICC.key"), "FICC")
    # a rewritten history (same length, rehashed): a fresh ledger with other content
    fork_url = f"sqlite:///{tmp_path / 'fork.db'}"
    with Ledger(fork_url) as other:
        _fill(other, 100, 4)
        report = verify_anchored(other, load_public_keys(keys), [cp])
    assert not report.ok and report.problem == "fork" and report.seq == 8
    # a checkpoint signed by someone else's key, or altered after signing
    forged = json.loads(cp.to_json()) | {"seq": 6}
    from xmargin.ledger.signing import Checkpoint

    with Ledger(ledger_url, create=False) as lg:
        bad = verify_anchored(lg, load_public_keys(keys), [Checkpoint.from_data(forged)])
        assert not bad.ok and bad.problem == "signature" and "bad signature" in bad.message
        other_keys = tmp_path / "other"
        generate_keys(other_keys, ["FICC"])
        mallory = sign_checkpoint(lg, load_private_key(other_keys / "FICC.key"), "FICC", store=False)
        bad = verify_anchored(lg, load_public_keys(keys), [mallory])
        assert not bad.ok and "not FICC's" in bad.message


def test_sync_copies_verifies_and_refuses_a_diverged_replica(ledger_url: str, replica_url: str, keys: Path) -> None:
    with Ledger(ledger_url) as a, Ledger(replica_url) as b:
        _fill(a, 0, 30)
        sign_checkpoint(a, load_private_key(keys / "engine.key"), "engine")
        r = sync(a, b, page=7)
        assert r.copied == 60 and r.checkpoints == 1 and r.verified.ok
        assert first_divergence(a, b) is None
        assert [e.export() for e in a.entries()] == [e.export() for e in b.entries()]
        _fill(a, 30, 3)
        r = sync(a, b)
        assert r.copied == 6 and r.checkpoints == 0 and b.head() == a.head()
        _fill(b, 40, 1)  # the replica takes a write of its own: the replicas now diverge at entry 67
        _fill(a, 50, 1)
        d = first_divergence(a, b)
        assert d is not None and d.seq == 67 and "differs" in d.message
        with pytest.raises(LedgerError, match="diverge at entry 67"):
            sync(a, b)


def test_member_proof_shows_own_entries_only_and_verifies(ledger_url: str, keys: Path, tmp_path: Path) -> None:
    with Ledger(ledger_url) as lg:
        _fill(lg, 0, 9, accounts=("M1-A", "M2-B", "M2-C"))
        cp = sign_checkpoint(lg, load_private_key(keys / "FICC.key"), "FICC")
        doc = member_proof(lg, "M2-C", cp)
    assert [e["seq"] for e in doc["entries"]] == [5, 6, 11, 12, 17, 18]
    text_ = json.dumps(doc)
    assert "M1-A" not in text_ and "M2-B" not in text_  # nothing of the other accounts
    assert check_member_proof(doc, load_public_keys(keys)) == [5, 6, 11, 12, 17, 18]
    tampered = json.loads(text_)
    tampered["entries"][1]["payload"] = tampered["entries"][1]["payload"].replace('"total":"', '"total":"1')
    with pytest.raises(InputError, match="entry 6: its hash does not match"):
        check_member_proof(tampered, load_public_keys(keys))
    moved = json.loads(text_)
    moved["entries"][0]["seq"] = 4
    with pytest.raises(InputError, match="entry 4 is not in the chain"):
        check_member_proof(moved, load_public_keys(keys))


def test_cli_round_trip(tmp_path: Path, keys: Path) -> None:
    url, replica = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with Ledger(url) as lg:
        _fill(lg, 0, 5)
    run = CliRunner().invoke
    anchors = tmp_path / "cme-anchors.jsonl"
    r = run(app, ["ledger", "checkpoint", "--ledger", url, "--key", str(keys / "CME.key"), "--signer", "CME",
                  "--out", str(anchors)])
    assert r.exit_code == 0, r.output
    assert read_checkpoints(anchors)[0].seq == 10
    r = run(app, ["ledger", "sync", "--from", url, "--to", replica])
    assert r.exit_code == 0 and "copied 10 entries and 1 checkpoint(s)" in r.output, r.output
    r = run(app, ["ledger", "compare", "--ledger", url, "--other", replica])
    assert r.exit_code == 0 and "agree: 10 entries" in r.output, r.output
    r = run(app, ["ledger", "verify", "--ledger", replica, "--keys", str(keys), "--anchor", str(anchors)])
    assert r.exit_code == 0 and "2 signed checkpoint(s) verified" in r.output, r.output
    proof = tmp_path / "proof.json"
    r = run(app, ["ledger", "prove", "--ledger", url, "--account", "M1-A", "--checkpoint", str(anchors),
                  "--out", str(proof)])
    assert r.exit_code == 0, r.output
    r = run(app, ["ledger", "check-proof", str(proof), "--keys", str(keys)])
    assert r.exit_code == 0 and "ok: 6 entries" in r.output, r.output
    # truncate the replica behind everyone's back: verify --anchor names it
    eng = create_engine(replica)
    with eng.begin() as conn:
        conn.execute(text("DROP TRIGGER ledger_entries_no_delete"))
        conn.execute(text("DELETE FROM ledger_entries WHERE seq > 8"))
        conn.execute(text("DELETE FROM ledger_checkpoints_signed"))
        conn.execute(text("UPDATE ledger_head SET seq = 8, hash = (SELECT hash FROM ledger_entries WHERE seq = 8)"))
    eng.dispose()
    r = run(app, ["ledger", "verify", "--ledger", replica, "--keys", str(keys), "--anchor", str(anchors)])
    assert r.exit_code == 1 and "FAILED at entry 9 (truncated)" in r.output, r.output
    r = run(app, ["ledger", "compare", "--ledger", url, "--other", replica])
    assert r.exit_code == 1 and "DIVERGE at entry 9" in r.output, r.output


def test_a_ledger_made_before_issue_15_is_upgraded_on_open(ledger_url: str) -> None:
    """Ledgers written before the scope column and the signed-checkpoint table get both on open."""
    with Ledger(ledger_url) as lg:
        _fill(lg, 0, 2)
    eng = create_engine(ledger_url)
    with eng.begin() as conn:
        conn.execute(text("DROP INDEX ix_ledger_entries_scope_time"))
        conn.execute(text("ALTER TABLE ledger_entries DROP COLUMN scope"))
        conn.execute(text("DROP TABLE ledger_checkpoints_signed"))
    eng.dispose()
    with Ledger(ledger_url) as lg:
        _fill(lg, 2, 2)
        assert lg.count() == 8 and verify_anchored(lg, None).ok
        assert [e.scope for e in lg.entries()][-2:] == ["M2-B", None]
