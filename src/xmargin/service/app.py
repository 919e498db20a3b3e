"""The FastAPI application: the ``/api/v1`` API and the dashboard, one process.

=========================================  ===============================================  ============
endpoint                                   what                                             keys
=========================================  ===============================================  ============
``GET  /api/v1/health``                    liveness                                         none
``GET  /api/v1/ready``                     readiness: 200 once loaded, 503 before           none
``GET  /api/v1/me``                        the key's scope and members                      any
``POST /api/v1/what-if/portfolio``         margin of a posted JSON portfolio: the           any
                                           ``xmargin margin --format json`` document
``POST /api/v1/what-if/trade``             incremental what-if of one proposed trade        own accounts
``POST /api/v1/trades``                    record a trade (idempotent by ``trade_id``)      own accounts
``GET  /api/v1/accounts[/{account}]``      account margin, components, positions            own accounts
``GET  /api/v1/members/{member}``          member summary: house, customers, total          own member
``GET  /api/v1/market``                    market view and systemic exposure                admin
``GET  /api/v1/stream``                    server-sent events: margin updates               own / all
``GET  /api/v1/openapi.json``              the OpenAPI document                             none
``GET  /``, ``/static/*``                  the dashboard (vanilla JS, inline SVG charts)    none
``GET  /metrics``                          Prometheus text format (:mod:`~.metrics`)         none
=========================================  ===============================================  ============

A member key sees its own house and customer accounts and nothing of another member: another
member's account or member id answers 404, like one that does not exist.  An admin key sees
every account and the market view.  No or a wrong key: 401.  Bodies over ``max_body_bytes``
(1 MiB): 413.  Malformed JSON and schema violations: 422 naming the field; nothing is written
on a rejected request.

The ledger and the book are loaded in a background thread when the server starts (``/ready``
says when); no lock is held across members (:mod:`xmargin.service.writer`).  Several worker
processes may serve one ledger (``xmargin serve --workers N``, :mod:`xmargin.service.workers`):
each follows what the others record.  Every response names the process that answered
(``X-Xmargin-Worker``).  Shutdown stops accepting, lets requests in flight finish, waits for
the ledger write in progress and then closes the ledger: no half-written entry.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xmargin.errors import InputError, XMarginError
from xmargin.ledger.store import LedgerError
from xmargin.service import metrics
from xmargin.service.auth import KeyStore
from xmargin.service.fastpath import PATH as FAST_PATH
from xmargin.service.fastpath import TradeWhatIfFastPath, replay_body, security_headers
from xmargin.service.fastpath_portfolio import PATH as FAST_PORTFOLIO_PATH
from xmargin.service.fastpath_portfolio import PortfolioWhatIfFastPath, RouteLabel
from xmargin.service.ledger_routes import router as ledger_router
from xmargin.service.routes import API_PREFIX, RequestError, input_error, router
from xmargin.service.state import Conflict, NotFound, ServiceConfig, ServiceState
from xmargin.service.statement_routes import statement_router
from xmargin.service.writer import PricingTimeout

STATIC = Path(str(resources.files("xmargin.service") / "static"))
UNION_TAGS = {"list[PositionIn]": list, "AccountsPortfolioIn": dict}


class Guard:
    """Pure ASGI middleware: body size limit (413) and security headers on every response."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = False
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = True
        body: list[bytes] = []
        if not too_big:
            size = 0
            more = True
            while more:  # buffer the body (at most the limit), so a chunked body is bounded too
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    too_big = True
                    break
                body.append(chunk)
                more = msg.get("more_body", False)
        if too_big:
            resp = JSONResponse({"detail": f"request body larger than {self.limit} bytes"}, status_code=413,
                                headers={"Connection": "close"})
            await resp(scope, receive, self._headers(send))
            return
        await self.app(scope, replay_body(b"".join(body), receive), self._headers(send))

    @staticmethod
    def _headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                hs = list(message.get("headers", []))
                names = {k.lower() for k, _ in hs}
                hs += [(k, v) for k, v in security_headers() if k not in names]
                message = {**message, "headers": hs}
            await send(message)
        return wrapped


class XmarginAPI(FastAPI):
    """FastAPI, with the trade what-if fast path (:mod:`~xmargin.service.fastpath`) in front of
    its whole middleware stack: ``fast_path`` (None: off) answers ``POST /api/v1/what-if/trade``
    or hands the request on, with the body it read."""

    fast_path: TradeWhatIfFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and scope["path"] == FAST_PATH and scope["method"] == "POST":
            rest = await fast(scope, receive, send)
            if rest is None:
                return
            receive = rest
        await super().__call__(scope, receive, send)


def graceful_server(app: FastAPI, config: Any) -> Any:
    """A ``uvicorn.Server`` for ``app`` that stops gracefully on SIGINT / SIGTERM and then exits 0.

    On the signal it stops accepting, ends the event streams (so open dashboards do not hold
    shutdown up), lets requests in flight finish (up to ``timeout_graceful_shutdown``), waits for
    the ledger write in progress and closes the ledger (the lifespan's end).  uvicorn then
    re-raises the signal it caught, so the process would die *by* it (status -15) after a clean
    stop; a service stopped on request has done its job, so the signal is not raised again.
    """
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            state = getattr(app.state, "service", None)
            if state is not None:
                state.hub.close()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self.stopped_by = list(self._captured_signals)
                self._captured_signals.clear()  # stopped as asked: exit 0, not by the signal

    return Server(config)


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{loc, msg, type}``; for the portfolio union, only the errors of
    the form the body has (list or object), without the union's tag in ``loc``."""
    body = exc.body
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if len(loc) > 1 and loc[0] == "body" and loc[1] in UNION_TAGS:
            if body is not None and not isinstance(body, UNION_TAGS[str(loc[1])]):
                continue
            loc.pop(1)
        out.append({"loc": [x if isinstance(x, int) else str(x) for x in loc], "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", "value_error"))})
    if not out:  # the body matched neither form
        out = [{"loc": ["body"], "msg": "expected a list of positions or an object with 'accounts'",
                "type": "model_type"}]
    return out


def create_app(
    config: ServiceConfig,
    *,
    keys: KeyStore | None = None,
    issue_keys: Callable[[list[dict[str, str]]], None] | None = None,
    on_ready: Callable[[ServiceState], None] | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> FastAPI:
    """The application.  ``keys``: the keys to accept; None: fresh keys for the members of the
    loaded book and an admin, handed to ``issue_keys`` once loaded (``xmargin serve`` prints or
    writes them)."""

    def load(app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        try:
            state = ServiceState.load(config, progress=log)
            store = keys
            if store is None:
                store, issued = KeyStore.generate(state.members())
                if issue_keys is not None:
                    issue_keys(issued)
            gc.collect()
            gc.freeze()  # reference data loaded: keep full collections off it (latency)
            app.state.keys = store
            app.state.service = state  # published last: requests see a complete state
            loop.call_soon_threadsafe(lambda: app.state.tasks.append(loop.create_task(state.recorder.follow())))
            if on_ready is not None:
                on_ready(state)
        except BaseException as exc:  # noqa: BLE001 - reported through /ready and on_failure
            app.state.load_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, XMarginError) else str(exc)
            if on_failure is not None:
                on_failure(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = None
        app.state.load_error = None
        app.state.keys = KeyStore()
        app.state.tasks = []
        loader = threading.Thread(target=load, args=(app, asyncio.get_running_loop()), name="xmargin-load",
                                  daemon=True)
        loader.start()
        try:
            yield
        finally:
            for task in app.state.tasks:
                task.cancel()
            state = app.state.service
            if state is not None:
                await state.recorder.close()  # the write in progress finishes first
                state.close()

    app = XmarginAPI(
        title="xmargin",
        version="1",
        summary="Cross-margining risk engine: what-if margin for every member, live.",
        description=__doc__ or "",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI / ReDoc load from a CDN: the service needs no network
        redoc_url=None,
    )
    app.include_router(router)
    app.include_router(ledger_router)
    from xmargin.service.calls import router as calls_router  # issue 16: reconcile-calls

    app.include_router(calls_router)
    app.include_router(statement_router)  # GET /accounts/{account}/statement
    if config.fast_what_if:
        app.fast_path = TradeWhatIfFastPath(app, config.max_body_bytes)  # before every middleware below
        app.add_middleware(PortfolioWhatIfFastPath, route=RouteLabel(FAST_PORTFOLIO_PATH))  # inside Guard, metrics
    app.add_middleware(Guard, max_body_bytes=config.max_body_bytes)
    app.add_middleware(metrics.RequestMetrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, kind = metrics.exposition()
        return Response(body, media_type=kind)

    @app.exception_handler(PricingTimeout)
    async def _pricing_timeout(_: Request, exc: PricingTimeout) -> JSONResponse:
        e = input_error(exc)
        return JSONResponse({"detail": [{"loc": e.loc, "msg": e.msg, "type": "pricing_timeout"}]}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8): malformed input
            return JSONResponse({"detail": [{"loc": ["body"], "msg": f"the body cannot be read as JSON: {exc.detail}",
                                             "type": "json_invalid"}]}, status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": exc.loc, "msg": exc.msg, "type": exc.type}]}, status_code=422)

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        e = input_error(exc)
        return JSONResponse({"detail": [{"loc": e.loc, "msg": e.msg, "type": e.type}]}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(LedgerError)
    async def _ledger(_: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse({"detail": f"ledger: {exc}"}, status_code=503)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-store"})

    return app
