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
  warm, interpreter start included).

``python -m benchmarks.bench_scale [--quick]`` prints the table and writes
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
                res = asyncio.run(_load(srv.base_url, headers, "/api/v1/what-if/trade", use, mode, RATE, 4))
                row = {"case": f"what-if trade, {workers} worker{'s' if workers > 1 else ''}, {mode}"
                               + (f" at {RATE:g} req/s" if mode == "paced" else " (200 in flight)"),
                       "measured": f"p99 {res['p99_ms']:.1f} ms, {res['throughput_rps']:,.0f} req/s, "
                                   f"{res['errors']} errors", **res}
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


def _restart_rows(workdir: Path) -> list[dict[str, Any]]:
    from xmargin.clearing import LedgerSession
    from xmargin.ledger import Ledger

    ledger = f"sqlite:///{workdir / 'ledger.db'}"
    out = []
    timings = {}
    with Ledger(ledger, create=False) as lg:
        n = lg.head()[0]
        for label, resume in (("restart: full replay", False), ("restart: checkpoint + tail", True)):
            t0 = time.perf_counter()
            LedgerSession.open(lg, resume=resume)
            timings[label] = time.perf_counter() - t0
    base = timings["restart: full replay"]
    for label, t in timings.items():
        out.append({"case": f"{label} ({n:,} entries)", "measured": f"{t:.2f} s", "seconds": t,
                    "ratio": t / base, "ratio_of": "time / full replay"})
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


def run(quick: bool = False) -> list[dict[str, Any]]:
    members, customers = (2, 20) if quick else (5, 300)
    workdir = Path(tempfile.mkdtemp(prefix="xmargin-bench-scale-"))
    try:
        rows = _price_rows(workdir)
        rows += _serve_rows(workdir, members, customers, 600 if quick else 3000)
        _trades_after_checkpoint(workdir, 50 if quick else 200)
        rows += _restart_rows(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for r in rows:
        r["load_average"] = os.getloadavg()[0]
    return rows


def _trades_after_checkpoint(workdir: Path, n: int) -> None:
    """Record ``n`` trades after the service's checkpoint (the tail a restart replays)."""
    from xmargin.clearing import LedgerSession
    from xmargin.engine.trades import parse_row
    from xmargin.ledger import Ledger

    with Ledger(f"sqlite:///{workdir / 'ledger.db'}", create=False) as lg:
        s = LedgerSession.open(lg, resume=True)
        m = s.market
        accounts = s.engine.accounts[:20]
        rows = []
        for k in range(n):
            a = s.engine.account(accounts[k % len(accounts)])
            rec = {"trade_id": f"bench-{k}", "account": a.account, "member": a.member,
                   "account_type": a.account_type, "cross_margin": str(a.cross_margin).lower(),
                   "instrument": "ZNU24" if k % 2 else "ZFU24", "quantity": str(1 + k % 5),
                   "time": f"{m.snapshot.as_of.isoformat()}T23:{k // 60 % 60:02d}:{k % 60:02d}Z"}
            ev, inst = parse_row(rec, as_of=m.snapshot.as_of, master=m.master, src="bench", n=k + 2)
            rows.append((k + 2, ev, inst))
        s.ingest(rows, src="bench", batch_size=50)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    argv = sys.argv[1:] if argv is None else argv
    rows = run(quick="--quick" in argv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "scale", "machine": platform.platform(), "cpus": os.cpu_count(),
                                   "python": platform.python_version(), "rows": rows}, indent=2) + "\n")
    t = Table(title=f"Serving a market: side by side (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
                    "CPUs)", header_style="bold cyan")
    for col in ("case", "measured", "ratio", "ratio of"):
        t.add_column(col, justify="right" if col == "ratio" else "left")
    for r in rows:
        t.add_row(r["case"], r["measured"], f"{r['ratio']:.2f}" if "ratio" in r else "-", r.get("ratio_of", ""))
    Console(width=max(Console().width, 160)).print(t)
    Console(stderr=True).print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
