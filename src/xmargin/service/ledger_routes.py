"""Signed checkpoints and member proofs over HTTP (issue 15).

* ``GET /api/v1/ledger/checkpoints``: the signed checkpoints stored in the service's ledger
  (``xmargin ledger checkpoint`` writes them), for any key: they hold hashes only;
* ``GET /api/v1/accounts/{account}/proof``: the account's entries with Merkle inclusion proofs
  against the latest signed checkpoint, for a key that may see the account; the member checks
  it with ``xmargin ledger check-proof`` without seeing any other member's entry.

Neither holds the service lock: they read the database (entries are append-only).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from xmargin.ledger.replica import member_proof
from xmargin.ledger.signing import stored_checkpoints
from xmargin.service.routes import API_PREFIX, E401, E404, E503, AccountName, Svc, Who

router = APIRouter(prefix=API_PREFIX)


class CheckpointDoc(BaseModel):
    format: str
    seq: int
    hash: str
    root: str
    time: str
    signer: str
    key: str
    signature: str


class Checkpoints(BaseModel):
    checkpoints: list[CheckpointDoc]


class ProvedEntry(BaseModel):
    seq: int
    payload: str
    prev_hash: str
    hash: str
    proof: list[str]


class MemberProof(BaseModel):
    account: str
    checkpoint: CheckpointDoc
    entries: list[ProvedEntry]


@router.get("/ledger/checkpoints", response_model=Checkpoints, tags=["ledger"],
            summary="Signed checkpoints of the ledger", responses={**E401, **E503})
async def checkpoints(who: Who, svc: Svc) -> dict[str, Any]:
    ledger = svc.session.ledger
    cps = await asyncio.to_thread(stored_checkpoints, ledger) if ledger is not None else []
    return {"checkpoints": [c.__dict__ for c in cps]}


@router.get("/accounts/{account}/proof", response_model=MemberProof, tags=["ledger"],
            summary="An account's entries with Merkle inclusion proofs", responses={**E401, **E404, **E503})
async def proof(account: AccountName, who: Who, svc: Svc) -> dict[str, Any]:
    try:
        acc = svc.engine.account(account)
    except KeyError:
        acc = None
    if acc is None or not who.sees_member(acc.member):
        raise HTTPException(404, f"account {account} not found")
    ledger = svc.session.ledger
    cps = await asyncio.to_thread(stored_checkpoints, ledger) if ledger is not None else []
    if not cps:
        raise HTTPException(404, "no signed checkpoint yet: run 'xmargin ledger checkpoint' on the ledger")
    return await asyncio.to_thread(member_proof, ledger, account, max(cps, key=lambda c: c.seq))
