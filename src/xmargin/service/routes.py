"""The ``/api/v1`` endpoints (see :mod:`xmargin.service.app` for the table)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from xmargin.errors import InputError
from xmargin.service import metrics
from xmargin.service import models as m
from xmargin.service.auth import KeyStore, Principal
from xmargin.service.state import ServiceState

API_PREFIX = "/api/v1"
KEEPALIVE_S = 15.0

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey",
                        description="An xmargin API key (printed or written by `xmargin serve`).")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer", description="The same key as a bearer token.")

E401: dict[int | str, dict[str, Any]] = {401: {"model": m.Problem, "description": "Missing or invalid API key"}}
E404: dict[int | str, dict[str, Any]] = {404: {"model": m.Problem, "description": "Not found (also another member's resource)"}}
E413: dict[int | str, dict[str, Any]] = {413: {"model": m.Problem, "description": "Request body too large"}}
E422: dict[int | str, dict[str, Any]] = {422: {"model": m.ValidationErrorDoc, "description": "Invalid request; `loc` names the field"}}
E503: dict[int | str, dict[str, Any]] = {503: {"model": m.Problem, "description": "Still loading the ledger and the book"}}

router = APIRouter(prefix=API_PREFIX)


class RequestError(Exception):
    """A 422 with an explicit location (``loc``) and message."""

    def __init__(self, loc: list[str | int], msg: str, type_: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.type = loc, msg, type_


def input_error(exc: InputError, prefix: list[str | int] | None = None) -> RequestError:
    loc: list[str | int] = list(prefix or ["body"])
    if exc.field:
        loc.append(exc.field)
    return RequestError(loc, exc.reason)


async def service(request: Request) -> ServiceState:
    """The loaded service (503 while loading).  ``async``, like :func:`principal`: neither
    blocks, and a plain ``def`` dependency costs a thread-pool hop per request."""
    svc: ServiceState | None = getattr(request.app.state, "service", None)
    if svc is None:
        raise HTTPException(503, "the service is loading the ledger and the book; see /api/v1/ready",
                            headers={"Retry-After": "2"})
    return svc


async def principal(
    request: Request,
    key: Annotated[str | None, Depends(_api_key)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    svc: Annotated[ServiceState, Depends(service)],
) -> Principal:
    store: KeyStore = request.app.state.keys
    who = store.authenticate(key or (bearer.credentials if bearer is not None else None))
    if who is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return who


Who = Annotated[Principal, Depends(principal)]
Svc = Annotated[ServiceState, Depends(service)]
AccountName = Annotated[str, PathParam(min_length=1, max_length=64, description="Account id, e.g. CM01-C0001",
                                       examples=["CM01-HOUSE"])]
MemberName = Annotated[str, PathParam(min_length=1, max_length=64, description="Clearing member id, e.g. CM01",
                                      examples=["CM01"])]


def _timed(content: Any, t0: float, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code,
                        headers={"Server-Timing": f"app;dur={(time.perf_counter() - t0) * 1e3:.3f}"})


# ----------------------------------------------------------------------------- service


@router.get("/health", response_model=m.Health, tags=["service"], summary="Liveness")
async def health() -> dict[str, str]:
    """The process answers (it may still be loading: see ``/ready``)."""
    return {"status": "ok"}


@router.get("/ready", response_model=m.Readiness, tags=["service"], summary="Readiness",
            responses={503: {"model": m.Readiness, "description": "Loading, or loading failed"}})
async def ready(request: Request) -> JSONResponse:
    """200 once the ledger is replayed and the book loaded, 503 before (or if loading failed)."""
    svc: ServiceState | None = getattr(request.app.state, "service", None)
    if svc is None:
        error = getattr(request.app.state, "load_error", None)
        return JSONResponse({"status": "failed" if error else "loading", "error": error}, status_code=503)
    body = {"status": "ready", "as_of": svc.as_of.isoformat(), "accounts": len(svc.engine.accounts),
            "members": len(svc.members()), "ledger_seq": svc.ledger_seq()}
    return JSONResponse(body)


@router.get("/me", response_model=m.Me, tags=["service"], summary="Who this key is",
            responses={**E401, **E503})
async def me(who: Who, svc: Svc) -> dict[str, Any]:
    members = svc.members()
    return {"name": who.name, "scope": who.scope, "member": who.member,
            "members": members if who.is_admin else [x for x in members if x == who.member],
            "as_of": svc.as_of.isoformat()}


# ----------------------------------------------------------------------------- what-if


def _portfolio_loc(data: Any, row: int | None, field: str | None) -> list[str | int]:
    """``loc`` of position ``row`` (1-based, across accounts) of a posted portfolio."""
    loc: list[str | int] = ["body"]
    if row is not None and isinstance(data, list):
        loc.append(row - 1)
    elif row is not None and isinstance(data, dict):
        n = 0
        for ai, acc in enumerate(data.get("accounts", [])):
            k = len(acc.get("positions", []))
            if n + k >= row:
                loc += ["accounts", ai, "positions", row - n - 1]
                break
            n += k
    if field:
        loc.append(field)
    return loc


@router.post("/what-if/portfolio", response_model=m.MarginDocument, tags=["what-if"],
             summary="Margin a posted portfolio (stand-alone, combined, savings)",
             responses={**E401, **E413, **E422, **E503})
async def what_if_portfolio(
    portfolio: m.PortfolioIn, who: Who, svc: Svc,
    explain: Annotated[bool, Query(description="Add the scenarios and contributors behind each VaR "
                                               "(at most 50 accounts)")] = False,
) -> JSONResponse:
    """The ``xmargin margin --format json`` document of the portfolio: every account's FICC and
    CME stand-alone margin, the combined margin, the reduction factors, the requirements after
    cross-margining and the savings, with totals.  Nothing is recorded."""
    t0 = time.perf_counter()
    data = portfolio.model_dump(mode="json", exclude_none=True)
    try:
        book = svc.read_portfolio_body(data)
    except InputError as exc:
        raise RequestError(_portfolio_loc(data, exc.row, exc.field),
                           exc.reason if exc.row is None else f"position {exc.row}: {exc.reason}") from None
    doc = await svc.margin_portfolio(book, explain)
    metrics.WHAT_IFS.labels("portfolio").inc()
    return _timed(doc, t0)


@router.post("/what-if/trade", response_model=m.WhatIfResult, tags=["what-if"],
             summary="Incremental what-if of one proposed trade on an account",
             responses={**E401, **E404, **E413, **E422, **E503})
async def what_if_trade(req: m.ProposedTradeIn, who: Who, svc: Svc) -> JSONResponse:
    """The account's margin before and after the trade and the change (``LiveEngine.what_if``);
    nothing is applied or recorded.  A new account needs ``member`` and ``account_type``."""
    t0 = time.perf_counter()
    out = await svc.what_if_trade(who, req)
    metrics.WHAT_IFS.labels("trade").inc()
    return _timed(out, t0)


# ----------------------------------------------------------------------------- trades


@router.post("/trades", response_model=m.TradeResult, status_code=201, tags=["trades"],
             summary="Record a trade (idempotent by trade_id)",
             responses={200: {"model": m.TradeResult, "description": "trade_id already recorded: the original "
                                                                     "result (replayed: true)"},
                        409: {"model": m.Problem, "description": "trade_id already in use with other content"},
                        **E401, **E404, **E413, **E422, **E503})
async def post_trade(req: m.TradeIn, who: Who, svc: Svc) -> JSONResponse:
    """Record the trade in the ledger with the account's margin result and any margin call
    (one transaction), update the engine and notify ``/stream`` subscribers.  A repeated
    ``trade_id`` answers the original result; nothing is written on a rejected request."""
    t0 = time.perf_counter()
    # a task of its own: should the client go away, the trade is still recorded and the locks
    # released only once the ledger and the engine agree
    result, status = await asyncio.shield(asyncio.ensure_future(svc.recorder.record(who, req)))
    return _timed(result, t0, status)


# ----------------------------------------------------------------------------- summaries


@router.get("/accounts", response_model=m.AccountList, tags=["summaries"],
            summary="The accounts this key may see, with their margin", responses={**E401, **E503})
async def accounts(who: Who, svc: Svc) -> JSONResponse:
    return JSONResponse(svc.account_list(who))


@router.get("/accounts/{account}", response_model=m.AccountSummary, tags=["summaries"],
            summary="One account: margin, components, positions, collateral",
            responses={**E401, **E404, **E503})
async def account(account: AccountName, who: Who, svc: Svc) -> JSONResponse:
    return JSONResponse(svc.account_summary(who, account))


@router.get("/members/{member}", response_model=m.MemberSummary, tags=["summaries"],
            summary="A clearing member: house, customers (gross) and total, before and after",
            responses={**E401, **E404, **E503})
async def member(member: MemberName, who: Who, svc: Svc) -> JSONResponse:
    return JSONResponse(svc.member_summary(who, member))


@router.get("/market", response_model=m.MarketSummary, tags=["summaries"],
            summary="The market view (admin): aggregate margin and systemic exposure",
            responses={**E401, 403: {"model": m.Problem, "description": "Not an admin key"}, **E503})
async def market(who: Who, svc: Svc) -> JSONResponse:
    if not who.is_admin:
        raise HTTPException(403, "the market view needs an admin key")
    return JSONResponse(svc.market_summary())


# ----------------------------------------------------------------------------- stream


def _sse(event: str, data: dict[str, Any], id_: int | None = None) -> str:
    head = f"id: {id_}\n" if id_ is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/stream", tags=["stream"], summary="Server-sent events: margin updates as trades land",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "`event: hello` once, then `event: margin` per trade on an "
                                            "account this key may see (data: JSON with the account's "
                                            "figures after the trade); `: keep-alive` comments"},
                       **E401, **E503})
async def stream(who: Who, svc: Svc) -> StreamingResponse:
    token, queue = svc.hub.subscribe(who)

    async def events():  # type: ignore[no-untyped-def]
        try:
            yield "retry: 2000\n\n" + _sse("hello", {"version": svc.version, "scope": who.scope,
                                                     "member": who.member}, svc.version)
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if ev is None:
                    return
                yield _sse("margin", ev, ev["version"])
        finally:
            svc.hub.unsubscribe(token)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
