"""The trade what-if without FastAPI's per-request machinery, for the requests it would accept.

Profiled on the server (issue 14, ``cProfile`` on thread CPU time, ``POST
/api/v1/what-if/trade`` under load): FastAPI's dependency resolution (the API-key and bearer
security schemes, the service and principal dependencies, the body field) and its route
matching took about a third of the server's CPU per request, more than the what-if itself.

:class:`TradeWhatIfFastPath` is a pure ASGI middleware in front of the router.  For ``POST
/api/v1/what-if/trade`` it does what the route does, in the route's order -- the loaded
service, the key (``X-API-Key``, else ``Authorization: Bearer``) through the same
:class:`~xmargin.service.auth.KeyStore`, the JSON body through the same
:class:`~xmargin.service.models.ProposedTradeIn` model, :meth:`ServiceState.what_if_trade`, the
same ``Server-Timing`` response and the same metrics -- and answers.  Anything else goes to
the route untouched, with the body it has read: a request refused before the what-if runs
(loading, no or a wrong key, a body that is not a JSON object the model accepts) is handled
by FastAPI from the start, so those errors keep the route's status and document; an
exception from the what-if itself (an unknown account, a refused instrument, a pricing
timeout) goes to the application's own handler for it, as the route's would -- not run
twice, so its metrics count it once.  ``tests/test_service_fastpath.py``
compares both paths on the same requests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xmargin.service import metrics
from xmargin.service import models as m
from xmargin.service.routes import _timed

PATH = "/api/v1/what-if/trade"


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, whole, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return bytes(v)
    return None


def presented_key(scope: Scope) -> str | None:
    """The key the route's security dependencies would read: ``X-API-Key``, else the
    credentials of an ``Authorization: Bearer`` header."""
    key = _header(scope, b"x-api-key")
    if key:
        return key.decode("latin-1")
    auth = _header(scope, b"authorization")
    if auth:
        scheme, _, credentials = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return credentials
    return None


@dataclass(frozen=True)
class RouteLabel:
    """What the request metrics read of ``scope["route"]``: the route's path template."""

    path: str


def _handler(app: Any, exc: Exception) -> Any:
    """The application's exception handler for ``exc`` (by its class's MRO, as Starlette looks
    it up), or None."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


class TradeWhatIfFastPath:
    """See the module docstring; ``route``: what it puts in ``scope["route"]`` for the request
    metrics (:class:`RouteLabel` of the route it stands in for)."""

    def __init__(self, app: ASGIApp, route: Any = None) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != PATH:
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
        answered = await self._answer(scope, body, receive, send)
        if answered:
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _answer(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        t0 = time.perf_counter()
        app = scope.get("app")
        svc = getattr(getattr(app, "state", None), "service", None)
        if svc is None:
            return False
        kind = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if kind != b"application/json":
            return False
        key = presented_key(scope)
        who = app.state.keys.authenticate(key) if key else None  # type: ignore[union-attr]
        if who is None:
            return False
        try:
            req = m.ProposedTradeIn.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # ValueError: not JSON (UnicodeDecodeError included)
            return False
        if self.route is not None:
            scope["route"] = self.route  # the request metrics label it as the route's
        try:
            out = await svc.what_if_trade(who, req)
        except Exception as exc:  # the app's own handler for it, as the route's exception would get
            handler = _handler(app, exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return True
        metrics.WHAT_IFS.labels("trade").inc()
        metrics.WHAT_IFS_FAST.inc()
        await _timed(out, t0)(scope, receive, send)
        return True
