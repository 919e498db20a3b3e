"""A low-overhead HTTP/1.1 load generator: asyncio protocols on raw keep-alive sockets.

Why not ``httpx``: on a 2-core machine the ``httpx`` generator of :mod:`benchmarks.bench_service`
took 74-79% of the CPU that it and the server used together, so the figures measured the
client.  Here every request is encoded once up front (``bytes``), a response is read by its
``Content-Length`` and nothing else is parsed: the client's CPU per request is a small
fraction of the server's (each run reports both, from ``/proc``).

Two ways of loading (one connection per client, at most one request in flight on each, as a
browser or an HTTP/1.1 client without pipelining does):

* ``paced(rate)``: open loop, like wrk2: request ``i`` is due at ``t0 + i / rate`` on
  connection ``i mod clients``; its latency counts from when it was *due*, so a server that
  falls behind cannot hide it by slowing the generator (no coordinated omission);
* ``closed``: every connection sends its next request as soon as the previous answer is in
  (the most the server can take with that many clients): throughput.

Used by :mod:`benchmarks.bench_scale` (``serve`` section); optional ``wrk`` (Debian package
``wrk``) is run beside it for the closed-loop figure where it is installed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


def encode_posts(host: str, path: str, headers: dict[str, str], bodies: list[Any]) -> list[bytes]:
    """Each body as one complete ``POST`` request (JSON, keep-alive)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    out = []
    for b in bodies:
        data = json.dumps(b, separators=(",", ":")).encode()
        out.append((f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
    return out


class _Conn(asyncio.Protocol):
    """One keep-alive connection; :meth:`request` sends and waits for the whole response."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionResetError("closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15: head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        status = int(self.buf[9:12])
        del self.buf[: end + 4 + length]
        if not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, raw: bytes) -> int:
        if self.lost is not None or self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class LoadResult:
    """Latencies (seconds, from the due time when paced), errors and the wall clock."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    wall: float = 0.0
    sent: int = 0
    reconnects: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else float("nan")

        return {"n": self.sent, "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": lat[-1] * 1e3 if lat else float("nan"),
                "errors": self.errors, "reconnects": self.reconnects, "throughput_rps": len(lat) / self.wall if self.wall else float("nan"),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


async def _run(host: str, port: int, requests: list[bytes], clients: int, rate: float | None,
               warm: int) -> LoadResult:
    loop = asyncio.get_running_loop()
    conns: list[_Conn] = []
    for _ in range(clients):
        _, proto = await loop.create_connection(_Conn, host, port)
        conns.append(proto)
    res = LoadResult()
    for i in range(min(warm, len(requests))):  # one request per connection first: handlers warm
        try:
            await conns[i % clients].request(requests[i])
        except (ConnectionError, OSError):
            pass
    work = requests[warm:]
    res.sent = len(work)

    async def client(c: int) -> None:
        conn = conns[c]
        for i in range(c, len(work), clients):
            due = t0 + i / rate if rate else time.perf_counter()
            if rate:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                if conn.lost is not None:  # the server closed an idle keep-alive connection: a new one
                    _, conn = await loop.create_connection(_Conn, host, port)
                    conns[c] = conn
                    res.reconnects += 1
                status = await conn.request(work[i])
            except (ConnectionError, OSError):
                res.errors += 1
                continue
            res.statuses[status] = res.statuses.get(status, 0) + 1
            if status != 200:
                res.errors += 1
                continue
            res.latencies.append(time.perf_counter() - due)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    res.wall = time.perf_counter() - t0
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return res


def run_load(host: str, port: int, requests: list[bytes], *, clients: int = 200, rate: float | None = None,
             warm: int = 0) -> LoadResult:
    """Send ``requests[warm:]`` over ``clients`` keep-alive connections, paced at ``rate``
    requests/s (open loop) or, with ``rate`` None, closed loop; ``requests[:warm]`` first,
    untimed."""
    return asyncio.run(_run(host, port, requests, clients, rate, warm))


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.loadgen HOST PORT REQUESTS.pickle CLIENTS RATE|closed WARM``: one
    run in its own process (so its CPU is its own); prints the summary and the client's CPU
    seconds as one JSON line."""
    import pickle
    import resource
    import sys

    host, port, path, clients, rate, warm = (sys.argv[1:] if argv is None else argv)
    with open(path, "rb") as fh:
        requests = pickle.load(fh)  # noqa: S301 - written by the benchmark in this run
    res = run_load(host, int(port), requests, clients=int(clients), rate=None if rate == "closed" else float(rate),
                   warm=int(warm))
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**res.summary(), "client_cpu_s": use.ru_utime + use.ru_stime}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
