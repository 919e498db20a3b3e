"""End-of-day batch in one process: 1k / 10k / 100k accounts, time, peak RSS, accounts per second.

Book: synthetic accounts on real instruments (every other nominal note and bond outstanding on
2024-06-26, two bills, the two front contracts of ZT ZF ZN ZB UB SR3 ZQ, and repos on four
notes), 2-12 positions per account, a mix of house and customer accounts, one in seven not
cross-margined; written once as Parquet (the large-book format), outside the timing.

Timed, in a fresh process per size (so peak RSS is that size's, and nothing is cached from a
previous run): reading the Parquet file (:func:`xmargin.portfolio.parquet.read_parquet`),
building the context (scenario sets, the instrument scenario P&L matrices, SPAN calibration;
the same for every size, it depends on the instruments, not the accounts), margining every
account (:func:`~xmargin.margin.calculator.compute_margins`) and forming the result document
(:func:`xmargin.workflow.margin_payload`).  Not timed: writing JSON.  Wall and CPU time are
both recorded (on a shared machine the CPU time is the steadier figure); peak RSS is the
process's own high-water mark (``VmHWM``).

Baseline (the ratio column): the same margins one account at a time
(``margins_for_positions`` on a one-row matrix), timed on a sample of accounts and
scaled to the book; and the target (10k accounts x >= 2,500 scenarios in <= 10 s, <= 2 GB).

Run: ``python -m benchmarks.bench_batch [--quick] [--accounts N ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

AS_OF = date(2024, 6, 26)
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
TARGET_ACCOUNTS, TARGET_S, TARGET_BYTES = 10_000, 10.0, 2 * 1024**3
LOOP_SAMPLE = 300
ROOT = Path(__file__).resolve().parent


def universe_ids(data_dir: Path | None = None) -> dict[str, list[str]]:
    """Instrument identifiers of the synthetic books, by kind."""
    from xmargin.config import resolve_data_dir
    from xmargin.margin.calibration import listed_contracts
    from xmargin.masterdata import load_master

    master = load_master(resolve_data_dir(data_dir))
    notes = [r.cusip for r in master.notes_and_bonds(outstanding_on=AS_OF) if r.maturity > date(2024, 7, 31)]
    bills = sorted((r for r in master.records.values() if r.kind == "bill" and r.issue_date <= AS_OF < r.maturity
                    and r.maturity > date(2024, 7, 31)), key=lambda r: r.maturity)
    futures = [c.symbol for root in ("ZT", "ZF", "ZN", "ZB", "UB", "SR3", "ZQ") for c in listed_contracts(root, AS_OF)]
    return {"cash": notes[::2], "bills": [b.cusip for b in bills[:2]], "futures": futures,
            "repo_collateral": notes[10:50:10]}


def write_book(path: Path, n_accounts: int, *, seed: int = 2024, data_dir: Path | None = None) -> dict[str, Any]:
    """A synthetic book of ``n_accounts`` as a Parquet file; returns its shape."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = universe_ids(data_dir)
    rng = np.random.default_rng(seed)
    per = rng.integers(2, 13, size=n_accounts)
    acc = np.repeat(np.arange(n_accounts), per)
    n = len(acc)
    kind = rng.choice(4, size=n, p=[0.55, 0.05, 0.34, 0.06])  # cash, bill, futures, repo
    cash = rng.choice(ids["cash"], size=n)
    bill = rng.choice(ids["bills"], size=n)
    fut = rng.choice(ids["futures"], size=n)
    coll = rng.choice(ids["repo_collateral"], size=n)
    instrument = np.select([kind == 0, kind == 1, kind == 2], [cash, bill, fut], coll)
    face = rng.integers(-40, 41, size=n).astype(float) * 250_000.0
    contracts = rng.integers(-400, 401, size=n).astype(float)
    repo_face = rng.integers(1, 41, size=n).astype(float) * 1_000_000.0
    quantity = np.select([kind == 0, kind == 1, kind == 2], [face, np.abs(face) + 1e6, contracts], repo_face)
    is_repo = kind == 3
    xm_acc = np.arange(n_accounts) % 7 != 0
    customer = np.arange(n_accounts) % 5 == 0
    names = np.array([f"A{i:07d}" for i in range(n_accounts)], dtype=object)
    members = np.array([f"M{i % 120:03d}" for i in range(n_accounts)], dtype=object)
    table = pa.table({
        "account": pa.array(names[acc], type=pa.string()),
        "member": pa.array(members[acc], type=pa.string()),
        "account_type": pa.array(np.where(customer[acc], "customer", "house"), type=pa.string()),
        "instrument": pa.array(instrument, type=pa.string()),
        "quantity": pa.array(quantity, type=pa.float64()),
        "cross_margin": pa.array(xm_acc[acc], type=pa.bool_()),
        "repo_start": pa.array([date(2024, 6, 25) if r else None for r in is_repo], type=pa.date32()),
        "repo_end": pa.array([date(2024, 7, 25) if r else None for r in is_repo], type=pa.date32()),
        "repo_rate": pa.array(np.where(is_repo, 5.31, np.nan), type=pa.float64(), from_pandas=True),
        "cash_amount": pa.array(np.where(is_repo, repo_face * 0.97, np.nan), type=pa.float64(), from_pandas=True),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return {"accounts": n_accounts, "rows": n, "bytes": path.stat().st_size}


def _rss_bytes() -> int:
    """Peak resident set size of this process.  ``VmHWM`` where there is a ``/proc`` (the
    high-water mark of this program only: ``ru_maxrss`` survives ``exec`` and would report a
    larger parent's peak), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(path: Path, data_dir: Path | None = None, *, loop_sample: int = LOOP_SAMPLE) -> dict[str, Any]:
    """Time one batch of the book at ``path`` in this process (call it in a fresh one)."""
    from xmargin.margin.calculator import compute_margins, margins_for_positions
    from xmargin.portfolio.parquet import read_parquet
    from xmargin.workflow import Environment, margin_payload

    rss_start = _rss_bytes()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    env = Environment.load(AS_OF, data_dir=data_dir)
    t_env = time.perf_counter() - t0
    cpu1 = time.process_time()
    t0 = time.perf_counter()
    book = read_parquet(path, as_of=AS_OF, master=env.master, eligibility=env.eligibility)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    context = env.context(book)
    t_context = time.perf_counter() - t0
    t0 = time.perf_counter()
    margins = compute_margins(context, book)
    t_margins = time.perf_counter() - t0
    t0 = time.perf_counter()
    payload = margin_payload(context, book, margins)
    t_payload = time.perf_counter() - t0
    cpu_batch = time.process_time() - cpu1
    rss_peak = _rss_bytes()
    # the baseline: one account at a time, on a sample
    xm = np.array([a.cross_margin for a in book.accounts], dtype=bool)
    sample = np.linspace(0, book.size - 1, min(loop_sample, book.size)).astype(int)
    t0 = time.perf_counter()
    for i in sample:
        margins_for_positions(context, book.positions[i : i + 1], xm[i : i + 1])
    t_loop = (time.perf_counter() - t0) / len(sample) * book.size
    total = t_read + t_context + t_margins + t_payload
    return {
        "accounts": book.size,
        "positions": int(book.positions.nnz),
        "instruments": len(book.universe),
        "ficc_scenarios": context.ficc_scenarios.size,
        "cme_scenarios": context.cme_scenarios.size,
        "load_environment_s": t_env,
        "read_parquet_s": t_read,
        "context_s": t_context,
        "margins_s": t_margins,
        "payload_s": t_payload,
        "batch_s": total,
        "batch_cpu_s": cpu_batch,
        "load_environment_cpu_s": cpu1 - cpu0,
        "loadavg_1min": os.getloadavg()[0],
        "accounts_per_s": book.size / total,
        "margin_accounts_per_s": book.size / t_margins,
        "per_account_loop_s": t_loop,
        "loop_sample": int(len(sample)),
        "rss_start_bytes": rss_start,
        "peak_rss_bytes": rss_peak,
        "total_after": payload["totals"]["total_after"],
    }


def _child(n: int, path: Path, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_batch", "--measure", str(path)]
    proc = subprocess.run(cmd, cwd=ROOT.parent, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    if proc.returncode != 0:
        return {"accounts": n, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """One row per book size (each measured in its own process)."""
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    out = []
    with tempfile.TemporaryDirectory(prefix="xmargin-bench-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"book_{n}.parquet"
            shape = write_book(path, n)
            res = _child(n, path, quick)
            res.update({"benchmark": "batch", "case": f"{n:,} accounts", "parquet_bytes": shape["bytes"],
                        "rows": shape["rows"]})
            if "batch_s" in res:
                res["ratio"] = res["per_account_loop_s"] / res["margins_s"]
                res["baseline"] = "one account at a time (margins only)"
                if n == TARGET_ACCOUNTS:
                    res["target"] = f"<= {TARGET_S:.0f} s, <= 2 GB"
                    res["met"] = bool(res["batch_s"] <= TARGET_S and res["peak_rss_bytes"] <= TARGET_BYTES)
                    res["met_on_cpu_time"] = bool(res["batch_cpu_s"] <= TARGET_S and res["peak_rss_bytes"] <= TARGET_BYTES)
            out.append(res)
    return out


def report(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Batch in one process (fresh process per size)")
    for c in ("accounts", "rows", "read s", "context s", "margins s", "payload s", "batch s", "batch CPU s",
              "accts/s", "peak RSS MB", "loop / margins"):
        t.add_column(c, justify="right")
    for r in rows:
        if "batch_s" not in r:
            t.add_row(f"{r['accounts']:,}", "", "", "", "", "", r.get("error", "failed"), "", "", "", "")
            continue
        t.add_row(f"{r['accounts']:,}", f"{r['rows']:,}", f"{r['read_parquet_s']:.2f}", f"{r['context_s']:.2f}",
                  f"{r['margins_s']:.2f}", f"{r['payload_s']:.2f}", f"{r['batch_s']:.2f}", f"{r['batch_cpu_s']:.2f}",
                  f"{r['accounts_per_s']:,.0f}", f"{r['peak_rss_bytes'] / 2**20:,.0f}", f"{r['ratio']:.0f}x")
    Console(width=160).print(t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--accounts", type=int, nargs="*", default=None)
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return 0
    rows = run(args.quick, tuple(args.accounts) if args.accounts else None)
    report(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
