"""``/metrics``: the service's figures in the Prometheus text format (``prometheus_client``).

=================================  =========  ==================================================
metric                             type       labels / meaning
=================================  =========  ==================================================
``xmargin_request_seconds``        histogram  ``route`` (the path template), ``method``, ``status``
``xmargin_what_ifs_total``         counter    ``kind``: ``trade`` or ``portfolio``
``xmargin_what_if_fast_total``     counter    trade what-ifs answered by the fast path (:mod:`~.fastpath`)
``xmargin_what_if_portfolio_...``  counter    ``..._fast_total``: portfolio what-ifs answered by the fast path
                                             (:mod:`~.fastpath_portfolio`)
``xmargin_trades_total``           counter    ``outcome``: ``recorded`` or ``replayed`` (repeated id)
``xmargin_margin_calls_total``     counter    margin calls raised by recorded trades
``xmargin_pricing_refused_total``  counter    requests refused because pricing exceeded its bound
``xmargin_ledger_seq``             gauge      the last ledger entry this process has applied
=================================  =========  ==================================================

With several worker processes (``xmargin serve --workers N``) the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before starting them, every process writes its samples there
and whichever worker answers ``/metrics`` adds them up (the ledger gauge: the largest).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

REQUESTS = Histogram("xmargin_request_seconds", "HTTP request latency (seconds) by route",
                     ["route", "method", "status"], buckets=BUCKETS)
WHAT_IFS = Counter("xmargin_what_ifs_total", "What-if requests answered", ["kind"])
WHAT_IFS_FAST = Counter("xmargin_what_if_fast_total", "Trade what-ifs answered by the fast path")
WHAT_IFS_FAST_PORTFOLIO = Counter("xmargin_what_if_portfolio_fast_total",
                                  "Portfolio what-ifs answered by the fast path")
TRADES = Counter("xmargin_trades_total", "Trades posted", ["outcome"])
CALLS = Counter("xmargin_margin_calls_total", "Margin calls raised by recorded trades")
REFUSED = Counter("xmargin_pricing_refused_total", "Requests refused: pricing exceeded its time bound")
LEDGER_SEQ = Gauge("xmargin_ledger_seq", "Last ledger entry applied by this process", multiprocess_mode="max")


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (of every worker when multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class RequestMetrics:
    """Pure ASGI middleware: time each HTTP request and count it under its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if not path.endswith("/stream"):  # a stream lasts as long as the client stays
                REQUESTS.labels(path, scope.get("method", ""), str(status[0])).observe(time.perf_counter() - t0)
