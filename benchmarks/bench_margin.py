"""End-of-day margin batch: 10,000 accounts of about 20 positions over the real universe.

Universe (as of 2024-06-26, the FedInvest price date): every nominal note, bond and bill in
the securities master outstanding that day and maturing after settlement (T+1), plus the
listed CME futures of every root (``listed_contracts``: three Treasury contracts per root,
twelve SR3 quarters, twelve SR1 and twelve ZQ months), less any contract that cannot be
priced on that day (e.g. TNH25, whose deliverable notes had not been auctioned yet): about
450 instruments.

Accounts: seeded random books (``numpy.random.default_rng(20240626)``), each with about 20
positions -- cash notes, bonds and bills of $1m to $50m face either way, four futures of 1 to
200 contracts either way, and 0 to 3 DV01-hedged pairs (a cash security against the
DV01-equivalent number of a random Treasury futures contract) so the cross-margin reduction is
really exercised; 70% of the accounts have elected cross-margining.

Timed, in one process, cold (no cached scenario set or calibration):

* ``context``: ``build_context`` -- the FICC (3-day) and CME (2-day) scenario sets with
  their stressed windows (>= 2,500 scenarios each), both instrument P&L matrices, the SPAN
  calibration (one-day scenarios, every root) and the per-instrument attributes;
* ``margins``: ``compute_margins`` -- FICC VaR, floor and add-on, SPAN, CME VaR on the
  combined book, the reduction factors and requirements of every account;
* memory: peak resident set size of the process (``resource.getrusage``, includes the
  interpreter, libraries and market data) and the ``tracemalloc`` peak of a second,
  identical context + margins pass (Python and NumPy allocations only; that pass is slower
  and not timed).

Targets: context + margins <= 10 s (wall clock), memory <= 2 GB.  The table prints measured /
target, and the process CPU time of each timed step (NumPy may use several threads, and on a
shared machine the wall clock also counts time spent waiting for a CPU).
Run ``python -m benchmarks.bench_margin [--quick] [--accounts N]``; writes
``benchmarks/results/margin.json`` (``--quick``: 1,000 accounts, ``margin_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from xmargin.config import resolve_data_dir
from xmargin.margin.calculator import compute_margins
from xmargin.margin.calibration import listed_contracts
from xmargin.margin.context import MarginContext, build_context
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Account, Book
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
from xmargin.pricing.scenario_pnl import _values_or_nan
from xmargin.reference.futures import TREASURY_FUTURES
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster

AS_OF = date(2024, 6, 26)
RESULTS = Path(__file__).resolve().parent / "results"
WARM_SECONDS = 2.0  # issue 14: the 10,000-account run with a warm context cache
WARM_MARGINS_SECONDS = 1.5
TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 1024**3
POSITIONS_PER_ACCOUNT = 20
SEED = 20240626
FUTURES_COUNT = {**{root: 3 for root in TREASURY_FUTURES}, "SR3": 12, "SR1": 12, "ZQ": 12}


def _unpriceable(futures: list[Instrument], snapshot: MarketSnapshot, master: SecuritiesMaster) -> list[str]:
    """The symbols of ``futures`` that cannot be priced on the day: priced once on the as-of
    curve, and kept in the context cache beside the P&L rows of the same data (the same files
    and contracts give the same answer; 0.2 s of CPU otherwise)."""
    from xmargin.diskcache import cached, master_files_key
    from xmargin.margin.context import snapshot_key

    def build() -> list[str]:
        _, failures = _values_or_nan(InstrumentUniverse.of(futures), snapshot, snapshot.curve, master)
        return sorted(failures)

    key = {"snapshot": snapshot_key(snapshot), "master": master_files_key(snapshot.data_dir),
           "futures": [f.symbol for f in futures]}  # type: ignore[attr-defined]
    return list(cached("bench-unpriceable-futures", key, build))


def universe(snapshot: MarketSnapshot, master: SecuritiesMaster) -> tuple[InstrumentUniverse, dict[str, Any]]:
    """The real 2024-06-26 universe (see the module docstring) and what was left out."""
    settle = snapshot.settle
    cash: list[Instrument] = []
    for rec in sorted(master.records.values(), key=lambda r: (r.maturity, r.cusip)):
        if rec.kind in ("note", "bond", "bill") and rec.definition is not None and rec.issue_date <= AS_OF \
                and rec.maturity > settle:
            cash.append(rec.definition)
    futures: list[Instrument] = [c for root, n in FUTURES_COUNT.items() for c in listed_contracts(root, AS_OF, n)]
    dropped = _unpriceable(futures, snapshot, master)
    futures = [f for f in futures if f.symbol not in dropped]  # type: ignore[union-attr]
    info = {"cash": len(cash), "futures": len(futures), "futures_not_priceable": dropped}
    return InstrumentUniverse.of([*cash, *futures]), info


def accounts(uni: InstrumentUniverse, snapshot: MarketSnapshot, master: SecuritiesMaster, n: int,
             dv01: np.ndarray | None = None) -> Book:
    """``n`` seeded random accounts of about ``POSITIONS_PER_ACCOUNT`` positions each.

    Drawn for all accounts at once (a loop of ten-odd generator calls per account took about
    2 s of the 10,000-account run's CPU, more than the margins): per account 0-3 hedged pairs
    ``k``, ``16 - k`` distinct cash securities (the last ``k`` of them hedged), 4 distinct
    futures, faces of $1m-$50m and 1-200 contracts either way; a hedge is the DV01-equivalent
    whole number of a random Treasury futures contract (none when that rounds to 0; added to
    the account's own position in that contract if it holds one); 70% elect cross-margining.
    Distinct draws: the smallest of one uniform key per candidate.  ``dv01``: the universe's
    (a context's ``attributes.dv01``, the same figures); default: computed here."""
    rng = np.random.default_rng(SEED)
    is_future = np.array([hasattr(inst, "root") for inst in uni.instruments])
    cash_rows, fut_rows = np.flatnonzero(~is_future), np.flatnonzero(is_future)
    treasury_fut = np.array([i for i in fut_rows if uni.instruments[i].root in TREASURY_FUTURES])  # type: ignore[union-attr]
    if dv01 is None:
        dv01, _ = sensitivities(uni, snapshot, master)
    n_fut = 4
    n_cash = POSITIONS_PER_ACCOUNT - n_fut  # cash securities per account, hedged ones included
    k_hedged = rng.integers(0, 4, size=n)  # 0-3 hedged pairs (note vs DV01-equivalent futures)
    cash = cash_rows[np.argpartition(rng.random((n, len(cash_rows))), n_cash, axis=1)[:, :n_cash]]
    futs = fut_rows[np.argpartition(rng.random((n, len(fut_rows))), n_fut, axis=1)[:, :n_fut]]
    face = rng.integers(1, 51, size=(n, n_cash)) * 1e6 * rng.choice([-1.0, 1.0], size=(n, n_cash))
    contracts = rng.integers(1, 201, size=(n, n_fut)) * rng.choice([-1.0, 1.0], size=(n, n_fut))
    slot = np.arange(n_cash)[None, :]
    held_cash = slot < (n_cash - 2 * k_hedged)[:, None]  # slots: 16 - 2k unhedged, k hedged, k unused
    hedged = (slot >= (n_cash - 2 * k_hedged)[:, None]) & (slot < (n_cash - k_hedged)[:, None])
    hedge_with = treasury_fut[rng.integers(len(treasury_fut), size=(n, n_cash))]
    hedge_qty = -np.round(face * dv01[cash] / dv01[hedge_with])
    with_hedge = hedged & (hedge_qty != 0)
    account = np.repeat(np.arange(n)[:, None], n_cash, axis=1)
    keep = held_cash | hedged
    rows = np.concatenate([account[keep], np.repeat(np.arange(n), n_fut), account[with_hedge]])
    cols = np.concatenate([cash[keep], futs.ravel(), hedge_with[with_hedge]])
    qty = np.concatenate([face[keep], contracts.ravel(), hedge_qty[with_hedge]])
    positions = sp.csr_matrix((qty, (rows, cols)), shape=(n, len(uni)))
    positions.sum_duplicates()
    xm = rng.random(n) < 0.7
    accts = tuple(Account(f"ACC{a:05d}", f"M{a % 40:02d}", "house" if a % 3 else "customer", bool(xm[a]))
                  for a in range(n))
    return Book(accts, uni, positions, source="bench_margin (seeded)")


def _timed_pass(
    snapshot: MarketSnapshot, master: SecuritiesMaster, book: Book
) -> tuple[tuple[float, float], tuple[float, float], MarginContext, Any]:
    """``((wall, cpu) of the context, (wall, cpu) of the margins, context, margins)``."""
    w0, c0 = time.perf_counter(), time.process_time()
    ctx = build_context(snapshot, master, book.universe)
    w1, c1 = time.perf_counter(), time.process_time()
    margins = compute_margins(ctx, book)
    w2, c2 = time.perf_counter(), time.process_time()
    return (w1 - w0, c1 - c0), (w2 - w1, c2 - c1), ctx, margins


def _row(metric: str, measured: float, unit: str, target: float | None, note: str = "",
         cpu: float | None = None) -> dict[str, Any]:
    return {"metric": metric, "measured": measured, "unit": unit, "target": target,
            "ratio": (measured / target) if target else None, "cpu_s": cpu, "note": note}


def run(quick: bool = False, n_accounts: int | None = None, data_dir: Path | None = None,
        tracemalloc_pass: bool = True) -> list[dict[str, Any]]:
    """Run the benchmark; returns the table rows (also written to ``benchmarks/results``)."""
    n = n_accounts or (1_000 if quick else 10_000)
    root = resolve_data_dir(data_dir)
    cache = tempfile.mkdtemp(prefix="xmargin-bench-cache-")  # cold: a context cache of its own, empty
    saved_cache = os.environ.get("XMARGIN_CACHE_DIR")
    os.environ["XMARGIN_CACHE_DIR"] = cache
    try:
        return _run(quick, n, root, tracemalloc_pass, cache)
    finally:
        if saved_cache is None:
            os.environ.pop("XMARGIN_CACHE_DIR", None)
        else:
            os.environ["XMARGIN_CACHE_DIR"] = saved_cache
        shutil.rmtree(cache, ignore_errors=True)


def _warm_child(n: int, root: Path) -> dict[str, float]:
    """In a fresh interpreter: the same book, its context from the warm cache, its margins."""
    t0 = time.perf_counter()
    snapshot = load_snapshot(AS_OF, data_dir=root)
    master = load_master(root)
    uni, _ = universe(snapshot, master)
    w0, c0 = time.perf_counter(), time.process_time()
    ctx = build_context(snapshot, master, uni)  # first: the book's hedge ratios take its DV01s
    t_ctx, c_ctx = time.perf_counter() - w0, time.process_time() - c0
    book = accounts(uni, snapshot, master, n, dv01=ctx.attributes.dv01)
    t_book = time.perf_counter() - t0 - t_ctx
    w0, c0 = time.perf_counter(), time.process_time()
    compute_margins(ctx, book)
    t_margin, c_margin = time.perf_counter() - w0, time.process_time() - c0
    done_at = time.time()
    in_process = time.perf_counter() - t0
    cpu = time.process_time()  # the interpreter's, from its start (imports included)
    w0, c0 = time.perf_counter(), time.process_time()  # baseline, same process: each VaR on a copy
    compute_margins(ctx, book, copying=True)
    return {"context": t_ctx, "margins": t_margin, "in_process": in_process, "margins_done_at": done_at,
            "whole_cpu": cpu,
            "data_and_book": t_book, "context_cpu": c_ctx, "margins_cpu": c_margin,
            "margins_copying": time.perf_counter() - w0, "margins_copying_cpu": time.process_time() - c0}


def _warm_pass(n: int, root: Path) -> tuple[float, dict[str, float]]:
    """Wall clock of a fresh ``python`` running :func:`_warm_child`, from the interpreter's
    start to the margins' end (the baseline the child runs after them is not in it)."""
    code = ("import json, sys; from pathlib import Path; from benchmarks.bench_margin import _warm_child; "
            f"print(json.dumps(_warm_child({n}, Path({str(root)!r}))))")
    t0 = time.time()  # the epoch clock: the child reports when its margins were done on it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1200,
                         cwd=Path(__file__).resolve().parents[1])
    parts = json.loads(out.stdout.strip().splitlines()[-1])
    return parts.pop("margins_done_at") - t0, parts


def _run(quick: bool, n: int, root: Path, tracemalloc_pass: bool, cache: str) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    snapshot = load_snapshot(AS_OF, data_dir=root)
    master = load_master(root)
    t_load = time.perf_counter() - t0
    uni, uni_info = universe(snapshot, master)
    book = accounts(uni, snapshot, master, n)

    (t_ctx, cpu_ctx), (t_margin, cpu_margin), ctx, margins = _timed_pass(snapshot, master, book)
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

    warm_wall, warm = _warm_pass(n, root)
    traced = None
    if tracemalloc_pass:
        os.environ["XMARGIN_CACHE_DIR"] = "off"  # built, not mapped from the cache: the allocations count
        fresh = load_snapshot(AS_OF, data_dir=root)  # a new snapshot: nothing cached from the timed pass
        tracemalloc.start()
        _timed_pass(fresh, master, book)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        os.environ["XMARGIN_CACHE_DIR"] = cache

    scen = f"{ctx.ficc_scenarios.size:,} FICC / {ctx.cme_scenarios.size:,} CME scenarios"
    shape = f"{n:,} accounts x {len(uni)} instruments"
    rows = [
        _row("context (scenarios, P&L matrices, SPAN calibration)", t_ctx, "s", None, f"{len(uni)} instruments, {scen}",
             cpu_ctx),
        _row("margins (all models + cross-margin)", t_margin, "s", None, shape, cpu_margin),
        _row("context + margins", t_ctx + t_margin, "s", TARGET_SECONDS, "the batch (wall clock)",
             cpu_ctx + cpu_margin),
        _row("peak RSS (process)", rss_bytes / 1024**3, "GB", TARGET_BYTES / 1024**3, "getrusage, whole process"),
        _row("warm cache: context", warm["context"], "s", None, "fresh process, context cache written above"),
        _row("warm cache: margins", warm["margins"], "s", WARM_MARGINS_SECONDS, "same book, same process"),
        _row("warm cache: whole run", warm_wall, "s", WARM_SECONDS,
             "python start, data, book, context, margins (wall clock)"),
    ]
    if traced is not None:
        rows.append(_row("tracemalloc peak (context + margins)", traced / 1024**3, "GB", TARGET_BYTES / 1024**3,
                         "second pass, not timed"))
    positions = book.positions
    xm = np.array([a.cross_margin for a in book.accounts])
    result = {
        "as_of": AS_OF.isoformat(),
        "quick": quick,
        "accounts": n,
        "positions": int(positions.nnz),
        "positions_per_account": positions.nnz / n,
        "cross_margin_accounts": int(xm.sum()),
        "instruments": len(uni),
        "universe": uni_info,
        "ficc_scenarios": ctx.ficc_scenarios.size,
        "cme_scenarios": ctx.cme_scenarios.size,
        "span_roots": list(ctx.span.roots),
        "load_seconds": t_load,
        "load_average_1min": load_average,
        "totals": {
            "total_before": float(np.nansum(margins.total_before)),
            "total_after": float(np.nansum(margins.total_after)),
            "accounts_reduced": int((margins.applied_reduction_factor > 0).sum()),
            "accounts_at_cap": int((margins.applied_reduction_factor >= ctx.params.cross.reduction_cap).sum()),
            "accounts_fallback": int(margins.fallback.sum()),
            "accounts_error": int((~margins.computable).sum()),
        },
        "rows": rows,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("margin_quick.json" if quick else "margin.json")).write_text(json.dumps(result, indent=2) + "\n")
    return rows


def report(rows: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Margin batch benchmark, as of {AS_OF} (targets: <= {TARGET_SECONDS:.0f} s, <= 2 GB)",
                  header_style="bold cyan")
    for col in ("metric", "measured", "target", "measured / target", "CPU (s)", "note"):
        table.add_column(col, justify="left" if col in ("metric", "note") else "right")
    for r in rows:
        unit = r["unit"]
        ok = r["ratio"] is None or r["ratio"] <= 1.0
        ratio = "-" if r["ratio"] is None else f"[{'green' if ok else 'red'}]{r['ratio']:.2f}[/]"
        target = "-" if r["target"] is None else f"<= {r['target']:g} {unit}"
        cpu = "-" if r.get("cpu_s") is None else f"{r['cpu_s']:.2f}"
        table.add_row(r["metric"], f"{r['measured']:.3f} {unit}", target, ratio, cpu, r["note"])
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 accounts instead of 10,000")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the second, traced pass")
    args = parser.parse_args(argv)
    from rich.console import Console  # here, not at the top: the warm child (timed) does not print

    rows = run(args.quick, args.accounts, args.data_dir, tracemalloc_pass=not args.no_tracemalloc)
    console = Console(width=max(Console().width, 140))
    report(rows, console)
    if hasattr(os, "getloadavg"):
        console.print(f"1-minute load average after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
                      "(wall-clock times are only comparable on an otherwise idle machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
