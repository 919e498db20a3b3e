"""The portfolio what-if without FastAPI's per-request machinery, for the requests it would accept.

:class:`PortfolioWhatIfFastPath` is to ``POST /api/v1/what-if/portfolio`` what
:class:`~xmargin.service.fastpath.TradeWhatIfFastPath` is to the trade what-if (issue 14: a
10-position portfolio paced at 100 req/s, p99 <= 50 ms): a pure ASGI middleware in front of
the router that does what the route does, in the route's order -- the loaded service, the
key (``X-API-Key``, else ``Authorization: Bearer``) through the same
:class:`~xmargin.service.auth.KeyStore`, the JSON body through the same
:class:`~xmargin.service.models.PortfolioIn` model and its ``model_dump``, the same
:meth:`ServiceState.read_portfolio_body` and :meth:`ServiceState.margin_portfolio`, the same
``Server-Timing`` response (its JSON body by
:func:`~xmargin.service.fastpath.response_json`: Starlette's bytes, by orjson where they are
the same) and the same metrics -- and answers.

Anything else goes to the route untouched, with the body it has read: a request refused
before the margin call (loading, no or a wrong key, another content type, a query string --
``explain`` is parsed by the route --, a body the model or the portfolio reader refuses) is
handled by FastAPI from the start, so those errors keep the route's status and document; an
exception from the margin call itself (a pricing timeout) goes to the application's own
handler for it, as the route's would.  ``tests/test_service_fastpath_portfolio.py`` compares
both paths on the same requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from xmargin.errors import InputError
from xmargin.service import metrics
from xmargin.service import models as m
from xmargin.service.fastpath import _handler, authenticated_json, replay_body, response_json

PATH = "/api/v1/what-if/portfolio"


@dataclass(frozen=True)
class RouteLabel:
    """What the request metrics read of ``scope["route"]``: the route's path template."""

    path: str


class PortfolioWhatIfFastPath:
    """See the module docstring; ``route``: what it puts in ``scope["route"]`` for the request
    metrics (:class:`~xmargin.service.fastpath.RouteLabel` of the route it stands in for)."""

    def __init__(self, app: ASGIApp, route: Any = None) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != PATH \
                or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        if await self._answer(scope, body, receive, send):
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _answer(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        t0 = time.perf_counter()
        app = scope.get("app")
        got = authenticated_json(app, scope, body, m.PortfolioIn)
        if got is None:
            return False
        svc, _who, portfolio = got
        try:
            book = svc.read_portfolio_body(portfolio.model_dump(mode="json", exclude_none=True))
        except InputError:  # the route words it with the position's place in the body
            return False
        if self.route is not None:
            scope["route"] = self.route  # the request metrics label it as the route's
        try:
            doc = await svc.margin_portfolio(book)
        except Exception as exc:  # the app's own handler for it, as the route's exception would get
            handler = _handler(app, exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return True
        metrics.WHAT_IFS.labels("portfolio").inc()
        metrics.WHAT_IFS_FAST_PORTFOLIO.inc()
        data = response_json(doc)  # Starlette's JSONResponse body, byte for byte (orjson where it can)
        headers = [(b"server-timing", f"app;dur={(time.perf_counter() - t0) * 1e3:.3f}".encode("latin-1")),
                   (b"content-length", str(len(data)).encode("latin-1")), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        return True
