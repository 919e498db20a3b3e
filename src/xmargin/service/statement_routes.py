"""``GET /api/v1/accounts/{account}/statement``: one account's margin statement from the live book.

The statement of :mod:`xmargin.reports.statement` on the engine's current positions and
context (the account alone: margin per customer, gross), as JSON or offline HTML
(``?format=html``): what the dashboard opens with one click per account.  The live engine
keeps one election per account, so every eligible position of an electing account is in its
cross-margining account here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import scipy.sparse as sp
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from xmargin.portfolio.book import Book
from xmargin.service.routes import API_PREFIX, E401, E404, E503, AccountName, Svc, Who
from xmargin.service.state import ServiceState

statement_router = APIRouter(prefix=API_PREFIX)


def account_statement(svc: ServiceState, who: Any, name: str) -> dict[str, Any]:
    """The statement document of ``name`` (404 unless the key sees the account)."""
    from xmargin.workflow import Environment, statement_from

    acc = svc._account(who, name)
    eng = svc.engine
    ctx = eng.context
    held = eng.positions(name)
    cols = np.array([ctx.universe.index(i) for i in held], dtype=np.int64)
    row = sp.csr_matrix((np.array(list(held.values()), dtype=np.float64), (np.zeros(len(cols), dtype=np.int64), cols)),
                        shape=(1, len(ctx.universe)))
    book = Book((acc,), ctx.universe, row, source=f"xmargin serve, account {name}")
    m = svc.session.market
    env = Environment(m.snapshot, m.master, m.params, m.eligibility)
    return statement_from(env, ctx, book, None, as_of_rule="the service's as-of date")


@statement_router.get("/accounts/{account}/statement", tags=["summaries"],
                      summary="One account's margin statement (JSON, or offline HTML with ?format=html)",
                      response_class=JSONResponse,
                      responses={200: {"description": "The statement document (JSON) or the offline HTML page",
                                       "content": {"application/json": {"schema": {"type": "object"}},
                                                   "text/html": {"schema": {"type": "string"}}}},
                                 **E401, **E404, **E503})
async def statement(account: AccountName, who: Who, svc: Svc,
                    format: Annotated[Literal["json", "html"], Query()] = "json") -> Any:
    from xmargin.reports.statement import render_statement

    # reads are lock-free (the engine swaps account state as single references); the statement
    # margins one account, off the event loop
    doc = await run_in_threadpool(account_statement, svc, who, account)
    if format == "html":
        return HTMLResponse(render_statement(doc))
    return JSONResponse(doc)
