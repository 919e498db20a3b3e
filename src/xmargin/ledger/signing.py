"""Signed checkpoints: a ledger both clearinghouses can hold.

A hash chain with no anchor outside itself cannot catch truncation: whoever can write the
database can delete the last entries and rewrite the head.  So each party (``FICC``, ``CME``
and the ``engine``) holds an **Ed25519** key (the ``cryptography`` library) and signs
**checkpoints** of the log it wrote to::

    {"format": "xmargin-checkpoint/1", "seq": 1234, "hash": "<entry 1234's hash>",
     "root": "<Merkle root over entries 1..1234>", "time": "2025-10-31T21:00:00.000000Z",
     "signer": "FICC", "key": "<signer's public key, hex>", "signature": "<hex>"}

The signature covers the canonical JSON of every field but ``signature``.  Checkpoints are
stored in the ledger (``ledger_checkpoints_signed``) and exported as JSON lines for the other
clearinghouse and for members, who keep them: :func:`check_anchor` then detects, against any
checkpoint a party kept,

* **truncation**: the ledger ends before the checkpoint's sequence number;
* a **fork** (history rewritten and rehashed): the entry at the checkpoint's sequence number
  has another hash, or the entries up to it another Merkle root;
* a forged checkpoint: a signature that does not verify under the signer's public key.

Keys: ``<dir>/<party>.key`` (PKCS#8 PEM, private, mode 0600) and ``<dir>/<party>.pub`` (the raw
32-byte public key, hex).  A verifier needs only the ``.pub`` files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import insert, select

from xmargin.errors import InputError
from xmargin.ledger.hashing import GENESIS, canonical_json
from xmargin.ledger.merkle import root
from xmargin.ledger.schema import signed_checkpoints
from xmargin.ledger.store import Ledger, LedgerError

PARTIES = ("FICC", "CME", "engine")
CHECKPOINT_FORMAT = "xmargin-checkpoint/1"


# ----------------------------------------------------------------------------- keys


def generate_keys(directory: str | Path, parties: Iterable[str] = PARTIES, *, overwrite: bool = False) -> list[Path]:
    """Write a new key pair per party into ``directory``; refuse to overwrite unless told."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for party in parties:
        _check_party(party)
        priv_path, pub_path = d / f"{party}.key", d / f"{party}.pub"
        if priv_path.exists() and not overwrite:
            raise InputError(f"{priv_path} exists; keys are not overwritten", source=priv_path)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        pub_path.write_text(public_hex(key.public_key()) + "\n")
        written += [priv_path, pub_path]
    return written


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    p = Path(path)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"cannot read key: {exc.strerror}", source=p) from None
    except (ValueError, TypeError):
        raise InputError("not a PEM private key", source=p) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("not an Ed25519 key", source=p)
    return key


def load_public_keys(directory: str | Path) -> dict[str, Ed25519PublicKey]:
    """Every ``<party>.pub`` in ``directory``."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError("not a key directory", source=d)
    keys = {}
    for p in sorted(d.glob("*.pub")):
        try:
            keys[p.stem] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(p.read_text().strip()))
        except ValueError:
            raise InputError("not an Ed25519 public key (64 hex digits)", source=p) from None
    if not keys:
        raise InputError("no public keys (<party>.pub) in the key directory", source=d)
    return keys


def _check_party(party: str) -> None:
    if party not in PARTIES:
        raise InputError(f"'{party}' is not one of {PARTIES}", field="signer")


# ----------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the ledger held ``seq`` entries, the last hashing to ``hash``."""

    seq: int
    hash: str
    root: str
    time: str
    signer: str
    key: str
    signature: str = ""
    format: str = CHECKPOINT_FORMAT

    def signed_bytes(self) -> bytes:
        return canonical_json({k: v for k, v in asdict(self).items() if k != "signature"}).encode("utf-8")

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_data(cls, d: Mapping[str, Any], source: str = "checkpoint", row: int | None = None) -> Checkpoint:
        try:
            cp = cls(int(d["seq"]), str(d["hash"]), str(d["root"]), str(d["time"]), str(d["signer"]), str(d["key"]),
                     str(d["signature"]), str(d.get("format", CHECKPOINT_FORMAT)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a checkpoint ({exc!r})", source=source, row=row) from None
        if cp.format != CHECKPOINT_FORMAT:
            raise InputError(f"checkpoint format {cp.format!r}, expected {CHECKPOINT_FORMAT}", source=source, row=row)
        return cp

    def signature_ok(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> str | None:
        """None when the signature verifies (under ``keys[signer]`` when given); else why not."""
        try:
            embedded = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.key))
        except ValueError:
            return "its public key is malformed"
        if keys is not None:
            trusted = keys.get(self.signer)
            if trusted is None:
                return f"no public key for signer {self.signer}"
            if public_hex(trusted) != self.key:
                return f"signed with a key that is not {self.signer}'s"
            embedded = trusted
        try:
            embedded.verify(bytes.fromhex(self.signature), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return "bad signature"
        return None


def sign_checkpoint(ledger: Ledger, key: Ed25519PrivateKey, signer: str, *, at: int | None = None,
                    now: datetime | None = None, store: bool = True) -> Checkpoint:
    """Sign the ledger's state at ``at`` (default: its head) as ``signer``; stored in the ledger too."""
    _check_party(signer)
    hashes = [e.hash for e in ledger.entries()]
    seq = len(hashes) if at is None else at
    if not 0 <= seq <= len(hashes):
        raise LedgerError(f"cannot sign entry {seq}: the ledger holds {len(hashes)}")
    if at is None and ledger.head() != (seq, hashes[-1] if hashes else GENESIS):
        raise LedgerError("the head does not match the last entry: run 'xmargin ledger verify' first")
    when = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cp = Checkpoint(seq, hashes[seq - 1] if seq else GENESIS, root(hashes[:seq]), when, signer,
                    public_hex(key.public_key()))
    cp = replace(cp, signature=key.sign(cp.signed_bytes()).hex())
    if store:
        with ledger.engine.begin() as conn:
            conn.execute(insert(signed_checkpoints).values(seq=cp.seq, signer=cp.signer, document=cp.to_json()))
    return cp


def stored_checkpoints(ledger: Ledger) -> list[Checkpoint]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(signed_checkpoints.c.document).order_by(signed_checkpoints.c.id)).all()
    return [Checkpoint.from_data(json.loads(r.document), source=f"ledger {ledger.url}") for r in rows]


def read_checkpoints(path: str | Path) -> list[Checkpoint]:
    """Checkpoints kept in a file (JSON lines, or one JSON object)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read checkpoint file: {exc.strerror}", source=p) from None
    except UnicodeDecodeError:
        raise InputError("not a checkpoint file (not UTF-8 text)", source=p) from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(Checkpoint.from_data(json.loads(line), source=str(p), row=n))
            except json.JSONDecodeError:
                raise InputError("not JSON", source=p, row=n) from None
    if not out:
        raise InputError("no checkpoint in the file", source=p)
    return out


@dataclass(frozen=True)
class AnchorProblem:
    kind: str  # "signature", "truncated", "fork"
    seq: int
    message: str


def check_anchor(hashes: list[str], cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey] | None) -> AnchorProblem | None:
    """Check one checkpoint against the entry hashes of a ledger (``hashes[i]`` = entry ``i + 1``)."""
    why = cp.signature_ok(keys)
    if why is not None:
        return AnchorProblem("signature", cp.seq, f"checkpoint at entry {cp.seq} by {cp.signer}: {why}")
    if cp.seq > len(hashes):
        return AnchorProblem("truncated", len(hashes) + 1,
                             f"the ledger ends at entry {len(hashes)} but {cp.signer} signed a checkpoint at entry "
                             f"{cp.seq} ({cp.time}): entries {len(hashes) + 1}-{cp.seq} were removed")
    here = hashes[cp.seq - 1] if cp.seq else GENESIS
    if here != cp.hash or root(hashes[:cp.seq]) != cp.root:
        return AnchorProblem("fork", cp.seq,
                             f"entry {cp.seq} hashes to {here[:12]}... but {cp.signer}'s checkpoint of {cp.time} says "
                             f"{cp.hash[:12]}...: the history up to it was rewritten (a fork)")
    return None
