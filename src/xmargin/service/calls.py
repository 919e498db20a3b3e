"""``POST /api/v1/reconcile-calls``: the live book's requirements against amounts called.

The body carries the calls (``account``, ``clearinghouse`` FICC/CME, ``called`` dollars) and
the tolerances; the answer is :func:`xmargin.formats.reconcile.reconcile` on the accounts this
key may see (CME at maintenance, or at initial by CME's published ratio of the account type).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from xmargin.errors import InputError
from xmargin.formats.reconcile import calls_from_rows, reconcile
from xmargin.formats.span_params import ACCOUNT_CLASS_OF, CME_RULE_RATIOS
from xmargin.service.routes import API_PREFIX, Svc, Who, input_error

router = APIRouter(prefix=API_PREFIX)


class Call(BaseModel):
    account: str = Field(max_length=200)
    clearinghouse: str = Field(max_length=10)
    called: float = Field(ge=0)


class CallsIn(BaseModel):
    calls: list[Call] = Field(max_length=100_000)
    tolerance_pct: float = Field(5.0, ge=0)
    tolerance_usd: float = Field(0.0, ge=0)
    cme_basis: str = Field("maintenance", pattern="^(maintenance|initial)$")


@router.post("/reconcile-calls", tags=["summaries"], summary="Our requirements against the margin called")
async def reconcile_calls(req: CallsIn, who: Who, svc: Svc) -> JSONResponse:
    try:
        calls = calls_from_rows(((k, c.model_dump()) for k, c in enumerate(req.calls)), "calls")
    except InputError as exc:
        raise input_error(exc, ["body", "calls", exc.row or 0]) from None
    listing = svc.account_list(who)  # reads are lock-free
    accounts: list[dict[str, Any]] = []
    for a in listing["accounts"]:
        ratio = CME_RULE_RATIOS[ACCOUNT_CLASS_OF.get(a["account_type"], "speculator")]
        accounts.append({**a, "cme_initial_ratio": ratio, "reason": ""})
    return JSONResponse(reconcile({"as_of": listing["as_of"], "accounts": accounts}, calls,
                                  tolerance_pct=req.tolerance_pct, tolerance_usd=req.tolerance_usd,
                                  cme_basis=req.cme_basis))
