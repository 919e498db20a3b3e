"""Serving a market (issue 14): workers, restarts, the context cache -- each against its baseline, one run.

Rows (each pair measured side by side in this process, on the same data and ledger):

* ``what-if trade``: ``xmargin serve`` on one SQLite ledger (the demo book) with 1 worker, 2
  workers, and 1 worker answering through the FastAPI route (``--no-fast-what-if``, the
  baseline of :mod:`xmargin.service.fastpath`).  The load comes from
  :mod:`benchmarks.loadgen` (raw keep-alive sockets, requests encoded up front) in its own
  process, so the server's CPU and the client's are measured apart (``/proc``):
  - closed loop, 200 connections: throughput, and the **server's CPU seconds per request**:
    ``1 / that`` is what one worker can answer on a core of its own, whatever the client
    costs (target >= 1,500 req/s); the 2-worker row's ratio is its throughput over the
    1-worker one (target >= 1.7; on this 2-core machine the client shares the cores, so the
    row ``capacity 2 / 1`` from the servers' CPU per request is given beside it);
  - ``wrk -t1 -c200 -d10s`` with a Lua script posting the same bodies, where ``wrk`` is
    installed (Debian package ``wrk``; the row says so where it is not);
  - paced at ``RATE`` (1,000) req/s from 200 clients, open loop (latency from the due time):
    p99 (target <= 20 ms) and errors (target 0);
  - portfolio what-if, 10 positions over 2 accounts, paced at 100 req/s: p99 (target <= 50 ms);
* ``portfolio``: the portfolio what-if alone, paced at 100 req/s: 1 worker through FastAPI's
  route (``--no-fast-what-if``, the baseline), 1 worker with the fast path, 2 workers: p99 and
  the server's CPU per request (ratio against the route's);
* ``restart``: a ledger of 100,000 entries made here through the service's loader and
  ``LedgerSession.ingest`` (the demo opening book, then futures trades, a checkpoint 200
  trades before the end), and ``xmargin serve`` restarting on it until ``/ready``: from its
  checkpoint, against a copy without the saved checkpoint states (replay from entry 1);
  the server's CPU seconds to ready beside the wall clock (target <= 5 s);
* ``xmargin price ZNU24``: a fresh interpreter, the context cache off vs warm (target <= 1 s
  warm, interpreter start included);
* ``fresh start``: ``xmargin serve`` of the demo book (5 members x 300 customers; ``--quick``:
  2 x 20) on a new ledger until ``/ready``, the context cache off vs warm (target <= 15 s);
* ``10,000 accounts``: :mod:`benchmarks.bench_margin`'s batch in a fresh interpreter (start,
  data, book, context, margins), the cache empty vs warm (targets <= 2 s whole, margins <= 1.5 s);
* ``stream, other worker``: two workers on PostgreSQL (``XMARGIN_TEST_POSTGRES_URL``; skipped
  without it): a trade answered 201 by one worker until its update reaches the other worker's
  ``/stream``, woken by ``NOTIFY`` vs polling every 50 ms (``--no-notify``).

``python -m benchmarks.bench_scale [--quick] [--only=SECTION ...]`` (sections: price, serve,
portfolio, restart, start, accounts, stream) prints the table and writes
``benchmarks/results/scale.json``.  Wall-clock times on a shared machine include waiting for a
CPU: the table states the load average; read the ratios.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
RATE = 1000.0
CLIENTS = 200  # connections of the load generators (one request in flight on each)


PORTFOLIO_RATE = 100.0  # portfolio what-if (10 positions), paced


def _portfolio10(k: float) -> list[dict[str, Any]]:
    """A posted portfolio of 10 positions on the demo's date (2024-08-15): cash, a repo and
    futures over two accounts, quantities scaled by ``k``."""
    from benchmarks.bench_service import _portfolio

    rng = random.Random(int(k * 1e6))
    more = [("BENCH-1", "91282CKP5", round(15_000_000 * k, -5)), ("BENCH-1", "ZFZ24", -round(120 * k)),
            ("BENCH-2", "ZBZ24", round(25 * k)), ("BENCH-2", "SR3H25", -round(30 * k))]
    return _portfolio(rng) + [{"account": a, "member": "CM01", "account_type": "customer", "instrument": i,
                               "quantity": q} for a, i, q in more]


def _load_process(srv: Any, what: str, requests: list[bytes], rate: float | None, warm: int,
                  workdir: Path) -> dict[str, Any]:
    """One :mod:`benchmarks.loadgen` run in its own process; adds the server's CPU seconds per
    request (``/proc`` of the server and its workers) and the client's."""
    import pickle

    file = workdir / "requests.pickle"
    file.write_bytes(pickle.dumps(requests))
    before = _tree_cpu(srv.proc.pid)
    out = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", "127.0.0.1", str(srv.port), str(file),
                          str(CLIENTS), "closed" if rate is None else f"{rate:g}", str(warm)],
                         capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    server_cpu = _tree_cpu(srv.proc.pid) - before
    done = len(requests)
    res["server_cpu_ms_per_request"] = server_cpu / done * 1e3
    res["client_cpu_ms_per_request"] = res["client_cpu_s"] / done * 1e3
    res["client_cpu_share"] = res["client_cpu_s"] / (res["client_cpu_s"] + server_cpu)
    return res


def _wrk(srv: Any, headers: dict[str, str], bodies: list[Any], workdir: Path, seconds: int) -> dict[str, Any] | None:
    """``wrk`` (closed loop, 200 connections, one thread) posting ``bodies`` in turn; None
    where ``wrk`` is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    lines = workdir / "bodies.txt"
    lines.write_text("\n".join(json.dumps(b, separators=(",", ":")) for b in bodies) + "\n")
    hdr = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in {**headers, "Content-Type": "application/json"}.items())
    script = workdir / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\n{hdr}local bodies = {{}}\n'
        f'for line in io.lines("{lines}") do bodies[#bodies + 1] = line end\n'
        'local i = 0\nrequest = function()\n  i = i % #bodies + 1\n'
        '  return wrk.format(nil, "/api/v1/what-if/trade", nil, bodies[i])\nend\n')
    before = _tree_cpu(srv.proc.pid)
    out = subprocess.run([wrk, "-t1", f"-c{CLIENTS}", f"-d{seconds}s", "--latency", "-s", str(script), srv.base_url],
                         capture_output=True, text=True, timeout=seconds + 120)
    server_cpu = _tree_cpu(srv.proc.pid) - before
    text = out.stdout
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return {"throughput_rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
            "n": total, "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else "",
            "p50_ms": ms("50"), "p99_ms": ms("99"), "server_cpu_ms_per_request": server_cpu / max(total, 1) * 1e3}


def _serve_rows(workdir: Path, members: int, customers: int, paced_n: int) -> list[dict[str, Any]]:
    from benchmarks.bench_service import _trade_requests
    from benchmarks.loadgen import encode_posts
    from xmargin.service.testing import ServerProcess

    rows: list[dict[str, Any]] = []
    ledger = f"sqlite:///{workdir / 'ledger.db'}"
    closed_n = max(paced_n, 50 * CLIENTS)  # 10,000: a few seconds a variant, so the CPU clock ticks and the 200 connections are a small part
    base: dict[str, float] = {}
    variants = ((1, []), (2, []), (1, ["--no-fast-what-if"]))  # the last: the FastAPI route, same run
    for workers, extra in variants:
        label = f"{workers} worker{'s' if workers > 1 else ''}" + (", FastAPI route (no fast path)" if extra else "")
        with ServerProcess(workdir / f"w{workers}{'-route' if extra else ''}", members=members, customers=customers,
                           ledger=ledger, extra=["--workers", str(workers), *extra], timeout=900) as srv:
            headers = srv.headers("admin")
            bodies = _trade_requests(srv.api, headers, CLIENTS + max(paced_n, closed_n), seed=11)
            trades = encode_posts("127.0.0.1", "/api/v1/what-if/trade", headers, bodies)
            closed = _load_process(srv, "trade", trades[: CLIENTS + closed_n], None, CLIENTS, workdir)
            cpu = closed["server_cpu_ms_per_request"]
            capacity = workers * 1e3 / cpu  # requests/s the server's processes could answer on `workers` cores
            key = "route" if extra else str(workers)
            base[key] = closed["throughput_rps"]
            base[f"cap{key}"] = capacity
            rows.append({
                "case": f"what-if trade, {label}: {CLIENTS} clients closed loop (raw-socket generator)",
                "measured": f"{closed['throughput_rps']:,.0f} req/s, p99 {closed['p99_ms']:.1f} ms, "
                            f"{closed['errors']} errors; server {cpu:.2f} ms CPU/request -> "
                            f"{1e3 / cpu:,.0f} req/s per worker (target >= 1,500); client "
                            f"{closed['client_cpu_share']:.0%} of the CPU used",
                **closed, "capacity_per_worker_rps": 1e3 / cpu,
                "ratio": closed["throughput_rps"] / base["1"] if "1" in base else 1.0,
                "ratio_of": "throughput / 1 worker's (2 workers: target >= 1.7)"})
            if extra:
                rows[-1]["ratio_of"] = "throughput / 1 worker's with the fast path"
                continue
            wrk = _wrk(srv, headers, bodies, workdir, 10)
            if wrk is None:
                rows.append({"case": f"what-if trade, {label}: wrk", "measured": "not run: wrk is not installed "
                             "(Debian: apt-get install wrk); the raw-socket generator's row stands"})
            else:
                rows.append({"case": f"what-if trade, {label}: wrk -t1 -c{CLIENTS} -d10s (closed loop)",
                             "measured": f"{wrk['throughput_rps']:,.0f} req/s, p99 {wrk['p99_ms']:.1f} ms, "
                                         f"{wrk['non_2xx']} non-2xx {wrk['socket_errors']}; server "
                                         f"{wrk['server_cpu_ms_per_request']:.2f} ms CPU/request", **wrk})
            paced = _load_process(srv, "trade", trades[: CLIENTS + paced_n], RATE, CLIENTS, workdir)
            rows.append({"case": f"what-if trade, {label}: paced at {RATE:g} req/s from {CLIENTS} clients",
                         "measured": f"p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms (target <= 20), "
                                     f"{paced['errors']} errors, {paced['throughput_rps']:,.0f} req/s",
                         **paced, "ratio": paced["p99_ms"] / 20.0, "ratio_of": "p99 / 20 ms target"})
            pres = _paced_portfolio(srv, headers, max(200, paced_n // 3), workers, workdir)
            rows.append({"case": f"what-if portfolio (10 positions), {label}: paced at {PORTFOLIO_RATE:g} req/s",
                         "measured": f"p50 {pres['p50_ms']:.1f} ms, p99 {pres['p99_ms']:.1f} ms (target <= 50), "
                                     f"{pres['errors']} errors; server {pres['server_cpu_ms_per_request']:.2f} ms "
                                     "CPU/request", **pres, "ratio": pres["p99_ms"] / 50.0,
                         "ratio_of": "p99 / 50 ms target"})
    if "cap1" in base and "cap2" in base:
        rows.append({"case": "what-if trade: capacity 2 workers / 1 worker from the servers' CPU per request",
                     "measured": f"{base['cap2']:,.0f} vs {base['cap1']:,.0f} req/s (throughput ratio "
                                 f"{base['2'] / base['1']:.2f} with the client on the same {os.cpu_count()} cores)",
                     "ratio": base["cap2"] / base["cap1"], "ratio_of": "capacity 2 / 1 (target >= 1.7)"})
    return rows


def _paced_portfolio(srv: Any, headers: dict[str, str], n: int, workers: int, workdir: Path) -> dict[str, Any]:
    """``n`` portfolio what-ifs paced at ``PORTFOLIO_RATE`` (:func:`_load_process`), after
    each worker has answered a few, one at a time, left out of every figure (the server's CPU
    included): a worker's first prices the instruments the book does not hold (about 2 s of
    CPU once per worker; spread over a few hundred requests it read as several ms each)."""
    import httpx

    from benchmarks.loadgen import encode_posts

    bodies = [_portfolio10(0.5 + k / n) for k in range(n)]
    answered: dict[str, int] = {}
    for k in range(200):  # a new connection each: the workers share the listening socket
        if len(answered) >= workers and min(answered.values()) >= 3:
            break
        r = httpx.post(f"{srv.api}/what-if/portfolio", json=_portfolio10(0.3 + k / 400), headers=headers,
                       timeout=120)
        r.raise_for_status()
        pid = r.headers.get("x-xmargin-worker", "")
        answered[pid] = answered.get(pid, 0) + 1
    posts = encode_posts("127.0.0.1", "/api/v1/what-if/portfolio", headers, bodies)
    return _load_process(srv, "portfolio", posts, PORTFOLIO_RATE, 0, workdir)


def _portfolio_rows(workdir: Path, members: int, customers: int, n: int) -> list[dict[str, Any]]:
    """The portfolio what-if alone (issue 14: 10 positions paced at 100 req/s, p99 <= 50 ms):
    1 worker with the fast path (:mod:`xmargin.service.fastpath_portfolio`), 1 worker through
    FastAPI's route (``--no-fast-what-if``, the baseline) and 2 workers, on one ledger."""
    from xmargin.service.testing import ServerProcess

    rows: list[dict[str, Any]] = []
    ledger = f"sqlite:///{workdir / 'portfolio-ledger.db'}"
    base: dict[str, float] = {}
    for workers, extra in ((1, ["--no-fast-what-if"]), (1, []), (2, [])):
        label = f"{workers} worker{'s' if workers > 1 else ''}" + (", FastAPI route" if extra else ", fast path")
        with ServerProcess(workdir / f"p{workers}{'-route' if extra else ''}", members=members, customers=customers,
                           ledger=ledger, extra=["--workers", str(workers), *extra], timeout=900) as srv:
            res = _paced_portfolio(srv, srv.headers("admin"), n, workers, workdir)
        cpu = res["server_cpu_ms_per_request"]
        base.setdefault("cpu", cpu)
        rows.append({"case": f"what-if portfolio (10 positions), {label}: paced at {PORTFOLIO_RATE:g} req/s",
                     "measured": f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms (target <= 50), "
                                 f"{res['errors']} errors; server {cpu:.2f} ms CPU/request", **res,
                     "ratio": cpu / base["cpu"], "ratio_of": "server CPU per request / the FastAPI route's"})
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
    cpu: dict[str, float] = {}
    for label, where in (("replay from entry 1 (baseline)", bare), ("checkpoint + tail", path)):
        srv = ServerProcess(workdir / f"restart-{where.stem}", ledger=f"sqlite:///{where}", timeout=1800)
        t0 = time.perf_counter()
        with srv:
            timings[label] = time.perf_counter() - t0
            assert srv.proc is not None
            cpu[label] = _tree_cpu(srv.proc.pid)  # the server's own CPU seconds to ready
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
             "measured": f"{t:.2f} s to ready" + (" (target <= 5 s)" if label.startswith("checkpoint") else "")
                         + f"; server CPU {cpu[label]:.2f} s (interpreter start included)",
             "seconds": t, "server_cpu_s": cpu[label], "ratio": t / base, "ratio_of": "time / replay from entry 1",
             **built} for label, t in timings.items()]
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
                     "measured": f"{wall:.2f} s whole (data + seeded book {parts.get('data_and_book', 0):.2f} s, "
                                 f"context {parts['context']:.2f} s, margins {parts['margins']:.2f} s wall / "
                                 f"{parts.get('margins_cpu', float('nan')):.2f} s CPU; VaRs on copies "
                                 f"{parts.get('margins_copying', float('nan')):.2f} s wall / "
                                 f"{parts.get('margins_copying_cpu', float('nan')):.2f} s CPU)", "seconds": wall,
                     **parts,
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


SECTIONS = ("price", "serve", "portfolio", "restart", "start", "accounts", "stream")


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
            elif section == "portfolio":
                part = _portfolio_rows(workdir, members, customers, 300 if quick else 1000)
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
