"""The trade what-if without FastAPI's per-request machinery, for the requests it would accept.

Profiled on the server (issue 14: ``cProfile`` on thread CPU time and ``py-spy`` on a worker
under load, ``POST /api/v1/what-if/trade``): FastAPI's dependency resolution and route matching
took about a third of the server's CPU per request; once past them, the middleware stack in
front of the router (FastAPI's telemetry and body-limit layers, Starlette's error middleware,
:class:`~xmargin.service.metrics.RequestMetrics`, :class:`~xmargin.service.app.Guard`) still
took about a sixth of what was left.

:class:`TradeWhatIfFastPath` is called by the application itself before all of it
(:class:`~xmargin.service.app.XmarginAPI`), for ``POST /api/v1/what-if/trade`` only, and does
what that stack and the route do, in their order: the body limit (a body announced larger
than ``max_body_bytes``, or sent without a ``Content-Length``, goes to the stack unread, so
:class:`~xmargin.service.app.Guard` answers or bounds it), the loaded service, the key
(``X-API-Key``, else ``Authorization: Bearer``) through the same
:class:`~xmargin.service.auth.KeyStore`, the JSON body through the same
:class:`~xmargin.service.models.ProposedTradeIn` model, :meth:`ServiceState.what_if_trade`, the
same JSON document (Starlette's ``JSONResponse`` encoding), the same headers in the same order
(``Server-Timing``, then Guard's :func:`security_headers`) and the same metrics (the request
histogram under the route's template, the what-if counters).  Anything else goes to the
stack untouched, with the body it has read: a request refused before the what-if runs
(loading, no or a wrong key, a body that is not a JSON object the model accepts) is handled
by FastAPI from the start, so those errors keep the route's status and document; an
exception from the what-if itself (an unknown account, a refused instrument, a pricing
timeout) goes to the application's own handler for it, as the route's would -- not run
twice, so its metrics count it once; an exception with no handler goes to the stack, whose
route raises it again to Starlette's error middleware (500).  While FastAPI's OpenTelemetry
instrumentation is configured, every request takes the stack (so it is traced; checked at most
once a second while it is not).  The engine's part is
:meth:`~xmargin.engine.live.LiveEngine.what_if_headline`: the figures the answer reports.

Server CPU per trade what-if (``/proc``, 200 clients closed loop, against the code before, same
run, a 2-core machine shared at load 5-7): 1 worker 0.63 against 1.02 ms (0.62), 2 workers 0.84
against 1.17 ms (0.72).  What went: the middleware stack (~0.1 ms), the JSON
encoding (Python's float-to-text; :func:`response_json`), re-parsing the futures symbol
(:func:`~xmargin.reference.futures.parse_future_symbol` keeps what it parsed), the stressed
losses the what-if does not report, and the follower's ledger poll (``Ledger.head_seq``).
``tests/test_service_fastpath.py`` compares both paths on the same requests, byte for byte.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from xmargin.service import metrics
from xmargin.service import models as m

PATH = "/api/v1/what-if/trade"
TELEMETRY_RECHECK_S = 1.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
_SECURITY = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
             (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()))
#: Starlette's JSONResponse.render, without building an encoder per response
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode
_ORJSON_INT = (-(1 << 63), 1 << 64)  # the integers orjson writes


class NotForOrjson(Exception):
    """A value orjson would write differently from Starlette, or refuse differently."""


def orjson_form(value: Any) -> Any:
    """``value`` as orjson writes exactly as Starlette's encoder does: dicts with ASCII string
    keys, lists, ASCII strings (the same escapes), bools, None, 64-bit ints, and floats -- those
    that are 0 or of magnitude in [1e-4, 1e16) as they are (both write the shortest round-trip
    digits in the same positional form), the other finite ones as Python's own text
    (``float.__repr__``, what the standard library writes: ``1e-05`` where orjson would write
    ``0.00001``) in an ``orjson.Fragment``.  Raises :class:`NotForOrjson` otherwise (NaN and
    the infinities, which Starlette refuses, a tuple, non-ASCII text, other types)."""
    t = type(value)
    if t is float:
        if value == 0.0 or 1e-4 <= abs(value) < 1e16:
            return value
        if math.isfinite(value):
            return orjson.Fragment(float.__repr__(value).encode())
        raise NotForOrjson
    if t is str:
        if value.isascii():
            return value
        raise NotForOrjson
    if t is dict:
        if _plain_figures(value):
            return value
        out = {}
        for k, v in value.items():
            if type(k) is not str or not k.isascii():
                raise NotForOrjson
            out[k] = orjson_form(v)
        return out
    if t is bool or value is None:
        return value
    if t is int and _ORJSON_INT[0] <= value < _ORJSON_INT[1]:
        return value
    if t is list:
        return [orjson_form(v) for v in value]
    raise NotForOrjson


def _plain_figures(figures: dict[Any, Any]) -> bool:
    """Whether a dict is ASCII string keys to floats orjson writes as they are (0, or magnitude
    in [1e-4, 1e16)): then it goes to orjson as it is, not copied (a what-if's before, after and
    change: 13 figures each)."""
    for k, v in figures.items():
        if type(v) is not float or not (v == 0.0 or 1e-4 <= abs(v) < 1e16) or type(k) is not str or not k.isascii():
            return False
    return bool(figures)


def response_json(content: Any) -> bytes:
    """The body Starlette's ``JSONResponse(content)`` sends, byte for byte: by orjson on
    :func:`orjson_form` (about 10 us for a what-if document), else by the standard library as
    Starlette does (about 60-100 us: Python's float to text is most of it)."""
    try:
        return orjson.dumps(orjson_form(content))
    except NotForOrjson:
        return _ENCODE(content).encode("utf-8")


def security_headers() -> list[tuple[bytes, bytes]]:
    """The headers :class:`~xmargin.service.app.Guard` adds to every response (where the
    response has not set them), in its order: the browser hardening headers and the process
    that answered (``X-Xmargin-Worker``)."""
    return [*_SECURITY, (b"x-xmargin-worker", str(os.getpid()).encode())]


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


def _handler(app: Any, exc: Exception) -> Any:
    """The application's exception handler for ``exc`` (by its class's MRO, as Starlette looks
    it up), or None."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def authenticated_json(app: Any, scope: Scope, body: bytes, model: type[Any]) -> tuple[Any, Any, Any] | None:
    """``(service, principal, parsed body)`` of a JSON request a fast path may answer, or ``None``
    when it must go to the route (no service yet, not JSON, no valid key, a body the model
    refuses): the route then answers it with its own wording."""
    svc = getattr(getattr(app, "state", None), "service", None)
    if svc is None:
        return None
    kind = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if kind != b"application/json":
        return None
    key = presented_key(scope)
    who = app.state.keys.authenticate(key) if key else None
    if who is None:
        return None
    try:
        parsed = model.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # ValueError: not JSON (UnicodeDecodeError included)
        return None
    return svc, who, parsed


def _announced_length(scope: Scope) -> int | None:
    """The one ``Content-Length`` the request announces, or None (absent, repeated, not a number)."""
    found = None
    for k, v in scope.get("headers") or ():
        if k.lower() == b"content-length":
            if found is not None:
                return None
            found = v
    if found is None:
        return None
    try:
        return int(found)
    except ValueError:
        return None


class TradeWhatIfFastPath:
    """See the module docstring.  ``app``: the application (its state, its exception handlers);
    ``max_body_bytes``: Guard's limit."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes
        self._series: tuple[Any, Any] | None = None  # labelled on the first answer, as the route's are
        self._untraced_until = 0.0

    def _traced(self) -> bool:
        """Whether FastAPI's own OpenTelemetry instrumentation would wrap the request.  Asking
        costs about 11 us (three global providers looked up), so "no" is kept for up to
        ``TELEMETRY_RECHECK_S``; OpenTelemetry's providers are set once, at start-up."""
        now = time.monotonic()
        if now < self._untraced_until:
            return False
        telemetry = getattr(self.app, "_native_telemetry", None)
        if telemetry is not None and telemetry.enabled():
            return True
        self._untraced_until = now + TELEMETRY_RECHECK_S
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request (None), or the ``receive`` to hand the application with it."""
        t0 = time.perf_counter()
        length = _announced_length(scope)
        if length is None or length > self.limit or "fastapi.telemetry" in scope or self._traced():
            return receive
        chunks: list[bytes] = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":  # as Guard under RequestMetrics: no response, counted unmatched
                metrics.REQUESTS.labels("unmatched", "POST", "500").observe(time.perf_counter() - t0)
                return None
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        if await self._answer(scope, body, receive, send, t0):
            return None
        return replay_body(body, receive)

    async def _answer(self, scope: Scope, body: bytes, receive: Receive, send: Send, t0: float) -> bool:
        app = self.app
        got = authenticated_json(app, scope, body, m.ProposedTradeIn)
        if got is None:
            return False
        svc, who, req = got
        try:
            out = await svc.what_if_trade(who, req)
        except Exception as exc:  # the app's own handler for it, as the route's exception would get
            handler = _handler(app, exc)
            if handler is None:
                return False  # the route raises it again, to Starlette's error middleware
            scope["app"] = app
            response = await handler(Request(scope, receive), exc)
            status = [500]

            async def guarded(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    hs = list(message.get("headers", []))
                    names = {k.lower() for k, _ in hs}
                    message = {**message, "headers": hs + [(k, v) for k, v in security_headers() if k not in names]}
                await send(message)

            try:
                await response(scope, receive, guarded)
            finally:
                metrics.REQUESTS.labels(PATH, "POST", str(status[0])).observe(time.perf_counter() - t0)
            return True
        series = self._series
        if series is None:
            series = self._series = (metrics.WHAT_IFS.labels("trade"), metrics.REQUESTS.labels(PATH, "POST", "200"))
        series[0].inc()
        metrics.WHAT_IFS_FAST.inc()
        data = response_json(out)
        headers = [(b"server-timing", f"app;dur={(time.perf_counter() - t0) * 1e3:.3f}".encode("latin-1")),
                   (b"content-length", str(len(data)).encode("latin-1")), (b"content-type", b"application/json"),
                   *security_headers()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        series[1].observe(time.perf_counter() - t0)
        return True
