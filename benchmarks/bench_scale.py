"""Serving a market (issue 14): workers, restarts, the context cache -- each against its baseline, one run.

Rows (each pair measured side by side in this process, on the same data and ledger):

* ``what-if trade, 1 worker`` vs ``2 workers``: ``xmargin serve`` on one SQLite ledger (the
  demo book), 200 clients paced at ``RATE`` req/s and then 200 in flight at once
  (:mod:`benchmarks.bench_service`'s load generator): p99 and throughput; the speed-up is the
  2-worker throughput over the 1-worker one (target >= 1.7 on a machine with the cores for
  it; the generator itself takes a good part of one core here);
* ``restart: full replay`` vs ``restart: checkpoint + tail``: opening the same ledger (the demo
  book plus 200 trades after the checkpoint) from its first entry and from its checkpoint;
* ``xmargin price ZNU24``: a fresh interpreter, the context cache off vs warm (target <= 1 s
  warm, interpreter start included);
* ``fresh start``: ``xmargin serve`` of the demo book (5 members x 300 customers; ``--quick``:
  2 x 20) on a new ledger until ``/ready``, the context cache off vs warm (target <= 15 s);
* ``10,000 accounts``: :mod:`benchmarks.bench_margin`'s batch in a fresh interpreter (start,
  data, book, context, margins), the cache empty vs warm (targets <= 2 s whole, margins <= 1.5 s);
* ``stream, other worker``: two workers on PostgreSQL (``XMARGIN_TEST_POSTGRES_URL``; skipped
  without it): a trade answered 201 by one worker until its update reaches the other worker's
  ``/stream``, woken by ``NOTIFY`` vs polling every 50 ms (``--no-notify``).

Caveat for the HTTP rows: the load generator runs on the same two cores as the server, so a
second worker competes with the client for CPU; the throughput target is stated, not met here.

``python -m benchmarks.bench_scale [--quick] [--only=SECTION ...]`` (sections: price, serve,
restart, start, accounts, stream) prints the table and writes
``benchmarks/results/scale.json``.  Wall-clock times on a shared machine include waiting for a
CPU: the table states the load average; read the ratios.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
RATE = 1000.0


def _serve_rows(workdir: Path, members: int, customers: int, paced_n: int) -> list[dict[str, Any]]:
    from benchmarks.bench_service import CLIENTS, _load, _trade_requests
    from xmargin.service.testing import ServerProcess

    rows: list[dict[str, Any]] = []
    ledger = f"sqlite:///{workdir / 'ledger.db'}"
    base_rps: float | None = None
    for workers in (1, 2):
        with ServerProcess(workdir / f"w{workers}", members=members, customers=customers, ledger=ledger,
                           extra=["--workers", str(workers)], timeout=900) as srv:
            headers = srv.headers("admin")
            bodies = _trade_requests(srv.api, headers, CLIENTS + max(paced_n, 4 * CLIENTS), seed=11)
            for mode in ("paced", "burst"):
                use = bodies[: CLIENTS + (paced_n if mode == "paced" else 4 * CLIENTS)]
                assert srv.proc is not None
                cpu0, srv0, w0 = time.process_time(), _tree_cpu(srv.proc.pid), time.perf_counter()
                res = asyncio.run(_load(srv.base_url, headers, "/api/v1/what-if/trade", use, mode, RATE, 4))
                wall = time.perf_counter() - w0
                client_cpu, server_cpu = time.process_time() - cpu0, _tree_cpu(srv.proc.pid) - srv0
                res["client_cpu_share"] = client_cpu / (client_cpu + server_cpu)  # of the CPU both used
                res["cores_busy"] = (client_cpu + server_cpu) / wall
                row = {"case": f"what-if trade, {workers} worker{'s' if workers > 1 else ''}, {mode}"
                               + (f" at {RATE:g} req/s" if mode == "paced" else " (200 in flight)"),
                       "measured": f"p99 {res['p99_ms']:.1f} ms, {res['throughput_rps']:,.0f} req/s, "
                                   f"{res['errors']} errors; load generator {res['client_cpu_share']:.0%} of the "
                                   f"CPU used, {res['cores_busy']:.2f} cores busy", **res}
                if mode == "burst":
                    if workers == 1:
                        base_rps = res["throughput_rps"]
                    else:
                        row["ratio"] = res["throughput_rps"] / (base_rps or float("nan"))
                        row["ratio_of"] = "throughput 2 workers / 1 worker (target >= 1.7)"
                else:
                    row["ratio"] = res["p99_ms"] / 20.0
                    row["ratio_of"] = "p99 / 20 ms target"
                rows.append(row)
    return rows


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its live descendants (``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)  # ppid, utime + stime
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (ppid, _) in stats.items() if ppid == p]
    return total


def _restart_rows(workdir: Path, events: int) -> list[dict[str, Any]]:
    """``xmargin serve`` restarting on a ledger of ``events`` entries (made here through the
    service's own loader and :meth:`LedgerSession.ingest`, with a checkpoint ``TAIL`` trades
    before the end), until ``/ready``: from its checkpoint, and -- the baseline -- on a copy
    of the same ledger without the saved checkpoint states (so it replays from entry 1)."""
    import sqlite3

    from xmargin.clearing import LedgerSession
    from xmargin.ledger import Ledger
    from xmargin.service.testing import ServerProcess

    path = workdir / "ledger-100k.db"
    built = _build_ledger(path, events)
    bare = workdir / "ledger-100k-no-checkpoint.db"
    shutil.copyfile(path, bare)
    with sqlite3.connect(bare) as db:
        db.execute("DELETE FROM ledger_checkpoints")
    timings: dict[str, float] = {}
    for label, where in (("replay from entry 1 (baseline)", bare), ("checkpoint + tail", path)):
        srv = ServerProcess(workdir / f"restart-{where.stem}", ledger=f"sqlite:///{where}", timeout=1800)
        t0 = time.perf_counter()
        with srv:
            timings[label] = time.perf_counter() - t0
            head = srv.ledger_head()[0]
        assert head >= built["entries"], "the restarted service lost entries"
    with Ledger(f"sqlite:///{path}", create=False) as lg:  # the same load in this process: no start-up
        t0 = time.perf_counter()
        LedgerSession.open(lg, resume=True)
        in_process = time.perf_counter() - t0
    base = timings["replay from entry 1 (baseline)"]
    what = (f"{built['entries']:,} entries ({built['trades']:,} trades over {built['accounts']} accounts; "
            f"checkpoint at {built['checkpoint_seq']:,}, {built['checkpoint_bytes']:,} bytes)")
    rows = [{"case": f"restart of xmargin serve, {label}: {what}",
             "measured": f"{t:.2f} s to ready" + (" (target <= 5 s)" if label.startswith("checkpoint") else ""),
             "seconds": t, "ratio": t / base, "ratio_of": "time / replay from entry 1", **built}
            for label, t in timings.items()]
    rows.append({"case": "  of which: LedgerSession.open from the checkpoint, in process",
                 "measured": f"{in_process:.2f} s", "seconds": in_process, "ratio": in_process / base,
                 "ratio_of": "time / replay from entry 1"})
    return rows


TAIL = 200  # trades recorded after the checkpoint


def _build_ledger(path: Path, events: int) -> dict[str, Any]:
    """A ledger of at least ``events`` entries: the demo opening book (2 members x 20 customers)
    recorded by the service's loader, then futures trades on its accounts through
    :meth:`LedgerSession.ingest` (each a trade and a margin-result entry, calls when due), a
    checkpoint, and ``TAIL`` more trades."""
    from xmargin.clearing.checkpoint import take_checkpoint
    from xmargin.engine.trades import parse_row
    from xmargin.portfolio.demo import DemoConfig
    from xmargin.service.loading import ServiceConfig, open_session

    s = open_session(ServiceConfig(ledger=f"sqlite:///{path}", demo=DemoConfig(members=2, customers_per_member=20),
                                   checkpoint_every=0))
    m = s.market
    day = m.snapshot.as_of.isoformat()
    accounts = s.engine.accounts
    k = 0
    cp: Any = None

    def batch(count: int) -> None:
        nonlocal k
        rows = []
        for _ in range(count):
            a = s.engine.account(accounts[k % len(accounts)])
            sign = 1 if k % 3 else -1
            rec = {"trade_id": f"bench-{k}", "account": a.account, "member": a.member,
                   "account_type": a.account_type, "cross_margin": str(a.cross_margin).lower(),
                   "instrument": ("ZNU24", "ZFU24", "ZTU24", "ZBU24")[k % 4], "quantity": str(sign * (1 + k % 5)),
                   "time": f"{day}T23:{k // 360_000 % 60:02d}:{k // 6000 % 60:02d}.{k % 6000:04d}Z"}
            ev, inst = parse_row(rec, as_of=m.snapshot.as_of, master=m.master, src="bench", n=k + 2)
            rows.append((k + 2, ev, inst))
            k += 1
        s.ingest(rows, src="bench", batch_size=500)

    while s.ledger.head()[0] < events - 6 * TAIL:  # a trade is 2 entries or more
        batch(500)
    cp = take_checkpoint(s)
    batch(TAIL)
    while s.ledger.head()[0] < events:
        batch(TAIL)
    out = {"entries": s.ledger.head()[0], "trades": k, "accounts": len(accounts), "checkpoint_seq": cp.seq,
           "checkpoint_bytes": cp.bytes}
    s.ledger.close()
    return out


def _price_rows(workdir: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "XMARGIN_CACHE_DIR": str(workdir / "cache")}
    cmd = [sys.executable, "-c", "from xmargin.cli.main import main; main()", "price", "ZNU24", "--as-of",
           "2024-06-26"]
    timings = {}
    for label, cache in (("cache off", "off"), ("cache cold", str(workdir / "cache")), ("cache warm", None)):
        e = {**env, "XMARGIN_CACHE_DIR": cache} if cache else env
        t0 = time.perf_counter()
        subprocess.run(cmd, env=e, check=True, capture_output=True, timeout=600)
        timings[label] = time.perf_counter() - t0
    base = timings["cache off"]
    return [{"case": f"xmargin price ZNU24 --as-of 2024-06-26, {label}", "measured": f"{t:.2f} s wall",
             "seconds": t, "ratio": t / base, "ratio_of": "time / cache off (warm target <= 1 s)"}
            for label, t in timings.items()]


def _fresh_start_rows(workdir: Path, members: int, customers: int) -> list[dict[str, Any]]:
    """``xmargin serve`` on a new ledger until ready: cache off, then (after a cold start that
    fills it) warm."""
    from xmargin.service.testing import ServerProcess

    cache = workdir / "start-cache"
    timings: dict[str, float] = {}
    for label, where in (("cache off", "off"), ("cache cold", str(cache)), ("cache warm", str(cache))):
        saved = os.environ.get("XMARGIN_CACHE_DIR")
        os.environ["XMARGIN_CACHE_DIR"] = where
        try:
            srv = ServerProcess(workdir / f"start-{label.replace(' ', '-')}", members=members, customers=customers,
                                timeout=900)
            t0 = time.perf_counter()
            with srv:
                timings[label] = time.perf_counter() - t0
        finally:
            if saved is None:
                os.environ.pop("XMARGIN_CACHE_DIR", None)
            else:
                os.environ["XMARGIN_CACHE_DIR"] = saved
    base = timings["cache off"]
    return [{"case": f"fresh start of xmargin serve ({members} x {customers} demo), {label}",
             "measured": f"{t:.1f} s to ready (target <= 15 s)", "seconds": t, "ratio": t / base,
             "ratio_of": "time / cache off"} for label, t in timings.items()]


def _accounts_rows(workdir: Path, n: int) -> list[dict[str, Any]]:
    """The margin batch of ``n`` accounts in a fresh interpreter: empty cache, then warm."""
    from benchmarks.bench_margin import _warm_pass
    from xmargin.config import resolve_data_dir

    root = resolve_data_dir(None)
    saved = os.environ.get("XMARGIN_CACHE_DIR")
    os.environ["XMARGIN_CACHE_DIR"] = str(workdir / "accounts-cache")
    try:
        cold_wall, cold = _warm_pass(n, root)  # the cache is empty: builds and writes
        warm_wall, warm = _warm_pass(n, root)
    finally:
        if saved is None:
            os.environ.pop("XMARGIN_CACHE_DIR", None)
        else:
            os.environ["XMARGIN_CACHE_DIR"] = saved
    rows = []
    for label, wall, parts in (("cache empty", cold_wall, cold), ("cache warm", warm_wall, warm)):
        rows.append({"case": f"{n:,} accounts, fresh process, {label}",
                     "measured": f"{wall:.2f} s whole (context {parts['context']:.2f} s, margins "
                                 f"{parts['margins']:.2f} s)", "seconds": wall, **parts,
                     "ratio": wall / cold_wall, "ratio_of": "whole / cache empty (warm target <= 2 s; margins "
                                                            "<= 1.5 s)"})
    return rows


def _stream_rows(workdir: Path, trades: int) -> list[dict[str, Any]]:
    """Latency of a trade's update to the *other* worker's stream, PostgreSQL, NOTIFY vs polling."""
    from xmargin.ledger.testing import postgres_url, temporary_database

    url, why = postgres_url()
    if url is None:
        return [{"case": "stream, other worker (PostgreSQL)", "measured": f"not run: {why}"}]
    out: list[dict[str, Any]] = []
    base: float | None = None
    for label, extra in (("polling every 50 ms", ["--no-notify", "--follow-poll", "0.05"]),
                         ("LISTEN/NOTIFY", [])):
        with temporary_database(url) as db:
            lat = _other_worker_latency(workdir / f"stream-{len(out)}", db, extra, trades)
        p50, p99 = _quantile(lat, 0.5), _quantile(lat, 0.99)
        base = base or p50
        out.append({"case": f"trade to the other worker's /stream, 2 workers on PostgreSQL, {label}",
                    "measured": f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms ({len(lat)} trades)",
                    "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "ratio": p50 / base,
                    "ratio_of": "p50 / polling p50"})
    return out


def _quantile(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))] if ys else float("nan")


def _other_worker_latency(workdir: Path, ledger: str, extra: list[str], trades: int) -> list[float]:
    """Seconds from each 201 (one worker) to the update on the other worker's admin stream."""
    import threading

    import httpx

    from xmargin.service.testing import ServerProcess

    arrivals: dict[str, dict[str, float]] = {}  # pid -> trade id -> arrival time
    stop = threading.Event()

    def read(c: httpx.Client, pid_box: list[str], ready: threading.Event, key: str) -> None:
        try:
            with c.stream("GET", "/stream", headers={"X-API-Key": key}, timeout=None) as r:
                pid_box.append(r.headers["x-xmargin-worker"])
                ready.set()
                kind = None
                for line in r.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "margin":
                        arrivals.setdefault(pid_box[0], {})[json.loads(line[6:])["trade_id"]] = time.perf_counter()
        except httpx.HTTPError:
            pass

    lat: list[float] = []
    with ServerProcess(workdir, members=2, customers=3, ledger=ledger, extra=["--workers", "2", *extra],
                       timeout=900) as srv:
        pids: set[str] = set()
        clients = []
        for _ in range(40):  # one stream on each worker
            c = httpx.Client(base_url=srv.api)
            box: list[str] = []
            ready = threading.Event()
            threading.Thread(target=read, args=(c, box, ready, srv.keys["admin"]), daemon=True).start()
            ready.wait(30)
            clients.append(c)
            pids.update(box)
            if len(pids) == 2:
                break
        for k in range(trades):
            tid = f"lat-{k}"
            with httpx.Client(base_url=srv.api, timeout=60) as c:
                r = c.post("/trades", headers=srv.headers("CM01"), json={
                    "trade_id": tid, "account": "CM01-HOUSE", "instrument": "ZNU24" if k % 2 else "ZFU24",
                    "quantity": 1 + k % 3})
            answered = time.perf_counter()
            other = next((p for p in pids if p != r.headers["x-xmargin-worker"]), None)
            deadline = answered + 10
            while other is not None and tid not in arrivals.get(other, {}) and time.perf_counter() < deadline:
                time.sleep(0.0005)
            if other is not None and tid in arrivals.get(other, {}):
                lat.append(max(0.0, arrivals[other][tid] - answered))
            time.sleep(0.05)
        stop.set()
        for c in clients:
            c.close()
    return lat


SECTIONS = ("price", "serve", "restart", "start", "accounts", "stream")


def run(quick: bool = False, only: tuple[str, ...] = SECTIONS) -> list[dict[str, Any]]:
    members, customers = (2, 20) if quick else (5, 300)
    workdir = Path(tempfile.mkdtemp(prefix="xmargin-bench-scale-"))
    rows: list[dict[str, Any]] = []

    def load() -> float:
        return os.getloadavg()[0]

    try:
        for section in only:
            before = load()
            if section == "price":
                part = _price_rows(workdir)
            elif section == "serve":
                part = _serve_rows(workdir, members, customers, 600 if quick else 3000)
            elif section == "restart":
                part = _restart_rows(workdir, 10_000 if quick else 100_000)
            elif section == "start":
                part = _fresh_start_rows(workdir, members, customers)
            elif section == "accounts":
                part = _accounts_rows(workdir, 1_000 if quick else 10_000)
            elif section == "stream":
                part = _stream_rows(workdir, 30 if quick else 100)
            else:
                raise ValueError(f"unknown section {section!r} (known: {', '.join(SECTIONS)})")
            for r in part:
                r["load_average"] = before
                r["load_average_after"] = load()
            rows += part
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    argv = sys.argv[1:] if argv is None else argv
    only = tuple(a.split("=", 1)[1] for a in argv if a.startswith("--only="))
    rows = run(quick="--quick" in argv, only=only or SECTIONS)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "scale", "machine": platform.platform(), "cpus": os.cpu_count(),
                                   "python": platform.python_version(), "rows": rows}, indent=2) + "\n")
    t = Table(title=f"Serving a market: side by side (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
                    "CPUs)", header_style="bold cyan")
    for col in ("case", "measured", "ratio", "ratio of", "load before/after"):
        t.add_column(col, justify="right" if col == "ratio" else "left")
    for r in rows:
        t.add_row(r["case"], r["measured"], f"{r['ratio']:.2f}" if "ratio" in r else "-", r.get("ratio_of", ""),
                  f"{r.get('load_average', 0):.1f} / {r.get('load_average_after', 0):.1f}")
    Console(width=max(Console().width, 160)).print(t)
    Console(stderr=True).print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
