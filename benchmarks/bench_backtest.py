"""Backtest speed: a 10-position book, all three margin models, day by day over real history.

Book (read as of ``BOOK_DATE``, 2005-01-03, for any ``--from``; cash securities existing then
and maturing after 2025, Treasury futures rolled at their nearby place), three accounts, ten
positions:

* ``BASIS10``: long $100m of the 6.25% bond of 2030-05-15 against short ZN;
* ``CURVE``: long 2-year futures, short bond futures, long the 6% bond of 2026, short the
  5.375% bond of 2031 (cross-margined);
* ``OUTRIGHT``: long ZF and ZB futures, long the 2031 bond, short the 2026 bond (not elected).

Timed cold (no cached scenario set or SPAN calibration), in the same run:

* ``3 x backtest()``: three single-model :func:`~xmargin.validation.backtest.backtest` runs
  over ``SHORT_DAYS`` calendar days (the path before the one-pass engine);
* ``baseline one pass``: :func:`~xmargin.validation.multi.backtest_models` of the code at
  ``--baseline`` (default ``BASELINE``, main before this benchmark's latest target work),
  exported with ``git archive`` and run in a subprocess over the comparison range
  (``--compare-days`` business days from the start);
* ``new one pass``: this tree's :func:`~xmargin.validation.multi.backtest_models` over the
  same comparison range (1 worker, the same subprocess script), then over the full range with ``--workers``
  (``--quick``: 3 months; default 2005-01-03 .. 2025-12-31 or the history's last day with a
  3-day P&L, the target).

The table prints seconds per business day of each path, the ratio baseline / new on the same
days (wall and CPU seconds: on a loaded machine the CPU ratio is the steadier), the largest relative difference of the daily margins (new vs baseline, every model)
and the full-range time against the target (<= 120 s on a quiet 2-core machine), also as
CPU seconds a day over the workers (the wall time on that many free cores) and as the
parent's serial CPU plus the workers' CPU over the workers.  CPU seconds on a machine loaded
by other work are inflated by the contention (shared caches): the same code measured 69 ms a
day over the loaded 20-year run (load 5) and 40 ms a day on January 2011 at a quieter moment.  The
load average before and after is recorded: on a shared machine wall-clock times are
several times a quiet machine's.  ``python -m benchmarks.bench_backtest [--quick]
[--workers N] [--from D] [--to D] [--baseline REV|none]``; writes
``benchmarks/results/backtest[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from xmargin.config import resolve_data_dir
from xmargin.validation import backtest as bt_module
from xmargin.validation.backtest import backtest
from xmargin.validation.multi import backtest_models
from xmargin.workflow import Environment

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 120.0
SHORT_DAYS = 10
BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS10,M1,house,UST:6.25:2030-05-15,100000000,true
BASIS10,M1,house,ZNH05,-1500,true
CURVE,M1,house,ZTH05,2000,true
CURVE,M1,house,ZBH05,-400,true
CURVE,M1,house,UST:6.0:2026-02-15,50000000,true
CURVE,M1,house,UST:5.375:2031-02-15,-30000000,true
OUTRIGHT,M2,house,ZFH05,500,false
OUTRIGHT,M2,house,ZBH05,200,false
OUTRIGHT,M2,house,UST:5.375:2031-02-15,40000000,false
OUTRIGHT,M2,house,UST:6.0:2026-02-15,-20000000,false
"""


#: main before this session's engine work (issue 11, item 5): the compiled curve loop, basis
#: series and memoised baskets were in; one margin call per model, the cold bootstrap of the exact
#: tail, every SPAN root.  (6b07697, main before the 20-year work, was 6.2x slower than b3bbaa6.)
BASELINE = "b3bbaa6"
#: the book is read as of this day whatever ``--from`` is (futures then hold their nearby place
#: from the start, cash bonds are the same securities), so a later slice runs the same ten positions
BOOK_DATE = date(2005, 1, 3)
COMPARE_DAYS = 40
_PASS_SCRIPT = """
import json, sys, time
from datetime import date
from xmargin.validation import backtest as bt
from xmargin.validation.multi import backtest_models
from xmargin.workflow import Environment
from pathlib import Path
start, end, book_path, out = date.fromisoformat(sys.argv[1]), date.fromisoformat(sys.argv[2]), sys.argv[3], sys.argv[4]
env = Environment.load(start, data_dir=Path(sys.argv[5]), previous_business_day=True)
book = Environment.load(date(2005, 1, 3), data_dir=Path(sys.argv[5])).read_book(Path(book_path))  # BOOK_DATE
kw = {"data_dir": env.snapshot.data_dir, "params": env.params, "eligibility": env.eligibility}
w = time.perf_counter()
backtest_models(book, start, start, **kw)  # warm-up: history, basis series, compiled loop (once a process)
warm = time.perf_counter() - w
bt._span_on.cache_clear()  # the timed days calibrate SPAN again, as a run does each month
t, c = time.perf_counter(), time.process_time()
res = backtest_models(book, start, end, **kw)
secs, cpu = time.perf_counter() - t, time.process_time() - c
Path(out).write_text(json.dumps({"seconds": secs, "cpu_seconds": cpu, "warm_up_seconds": warm,
    "days": len(res["combined"].dates),
    "margin": {m: r.components["model_margin"].tolist() for m, r in res.items()}}))
"""


def _one_pass(rev: str | None, start: date, end: date, book: Path, data_dir: Path) -> dict[str, Any]:
    """The one-pass engine of git revision ``rev`` (``None``: this tree) over ``[start, end]`` in
    a fresh subprocess, after one untimed warm-up day (the same script for both: one-off
    loading is not counted, the month's SPAN calibration is); wall and CPU seconds."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        src = root / "src"
        if rev is not None:
            archive = subprocess.run(["git", "-C", str(root), "archive", rev, "src"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            src = Path(tmp) / "src"
        out = Path(tmp) / "out.json"
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
        subprocess.run([sys.executable, "-c", _PASS_SCRIPT, str(start), str(end), str(book), str(out),
                        str(data_dir)], check=True, env=env, cwd=tmp)
        return dict(json.loads(out.read_text()))


def _nth_business_day(data_dir: Path, start: date, n: int) -> date:
    history, _ = bt_module._market(data_dir)
    lo = int(np.searchsorted(history.dates, np.datetime64(start, "D")))
    return history.dates[min(lo + n - 1, len(history.dates) - 1)].astype(date)


def run(quick: bool = False, workers: int = 1, start: date | None = None, end: date | None = None,
        baseline: str = BASELINE, compare_days: int = COMPARE_DAYS) -> dict[str, Any]:
    data_dir = resolve_data_dir(None)
    start = start or date(2005, 1, 3)
    end = end or (date(2005, 3, 31) if quick else date(2025, 12, 31))
    last = bt_module._market(data_dir)[0].dates[-4].astype(date)  # the last day with a 3-day P&L
    end = min(end, last)
    env = Environment.load(start, data_dir=data_dir, previous_business_day=True)
    path = RESULTS / "bench_backtest_book.csv"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(BOOK)
    book = Environment.load(BOOK_DATE, data_dir=data_dir).read_book(path)  # later starts: the same positions
    kw = {"data_dir": env.snapshot.data_dir, "params": env.params, "eligibility": env.eligibility}
    load = [os.getloadavg()[0]]
    short_end = date.fromordinal(start.toordinal() + 14)
    t = time.perf_counter()
    old = {m: backtest(book, start, short_end, model=m, **kw) for m in ("ficc", "cme", "combined")}
    t_old = time.perf_counter() - t
    days_short = len(old["combined"].dates)
    compare_end = _nth_business_day(env.snapshot.data_dir, start, compare_days)
    base = None if baseline == "none" else _one_pass(baseline, start, compare_end, path, env.snapshot.data_dir)
    mine = _one_pass(None, start, compare_end, path, env.snapshot.data_dir)
    t_new_cmp, days_cmp = mine["seconds"], mine["days"]
    new_cmp = {m: {"model_margin": np.asarray(x)} for m, x in mine["margin"].items()}
    bt_module._span_on.cache_clear()  # the full range starts cold too
    t, c0 = time.perf_counter(), os.times()
    full = backtest_models(book, start, end, workers=workers, **kw)
    t_full, c1 = time.perf_counter() - t, os.times()
    cpu_full = (c1.user + c1.system + c1.children_user + c1.children_system
                - c0.user - c0.system - c0.children_user - c0.children_system)  # workers are reaped: counted
    # the parent's own CPU: the first day (before the workers fork) and collecting results, the
    # serial part; the workers' CPU divides over the free cores
    cpu_parent = c1.user + c1.system - c0.user - c0.system
    load.append(os.getloadavg()[0])
    days = len(full["combined"].dates)

    def rel(a: Any, b: Any) -> float:
        a, b = np.asarray(a, float), np.asarray(b, float)
        return float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))

    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before_after": load},
        "book_positions": int(book.positions.nnz), "accounts": len(book.accounts),
        "short_range": [str(start), str(short_end)], "short_days": days_short, "old_s": t_old,
        "compare_range": [str(start), str(compare_end)], "compare_days": days_cmp, "baseline": baseline,
        "baseline_s": base["seconds"] if base else None, "new_compare_s": t_new_cmp,
        "baseline_cpu_s": base["cpu_seconds"] if base else None, "new_compare_cpu_s": mine["cpu_seconds"],
        # a fresh process's first day (loading, whole-history series, compiled loop): once per run
        "new_warm_up_s": mine["warm_up_seconds"],
        "ratio_baseline_over_new": base["seconds"] / t_new_cmp if base else None,
        "cpu_ratio_baseline_over_new": base["cpu_seconds"] / mine["cpu_seconds"] if base else None,
        "full_range": [str(start), str(end)], "full_days": days, "full_s": t_full, "workers": workers,
        "full_s_per_day": t_full / max(days, 1), "full_cpu_s": cpu_full, "target_s": TARGET_S,
        "projected_20y_s": t_full / max(days, 1) * 5250,
        # CPU seconds a day spread over the workers: the wall time on as many free cores
        "projected_20y_free_cores_s": cpu_full / max(days, 1) * 5250 / max(workers, 1),
        "full_parent_cpu_s": cpu_parent,
        # this run on ``workers`` free cores: the parent's serial CPU plus the workers' CPU spread over them
        "full_free_cores_s": cpu_parent + (cpu_full - cpu_parent) / max(workers, 1),
        "exceptions": {m: int(r.exceptions.sum()) for m, r in full.items()},
        # new vs baseline one pass: identical up to rounding (both exact VaR tails)
        "max_rel_margin_diff_new_vs_baseline": (
            {m: rel(new_cmp[m]["model_margin"], base["margin"][m]) for m in new_cmp} if base else None),
        # new one pass vs three single-model runs: VaR to rounding, SPAN on first-order curves within ~0.3%
        "max_rel_margin_diff_new_vs_3_runs": {
            m: rel(new_cmp[m]["model_margin"][..., :days_short], old[m].components["model_margin"]) for m in old},
    }
    (RESULTS / ("backtest_quick.json" if quick else "backtest.json")).write_text(json.dumps(out, indent=2))
    return out


def report(res: dict[str, Any]) -> None:
    table = Table(title=f"Backtest, {res['book_positions']} positions, 3 models (load {res['machine']['load_before_after']})")
    for col in ("range", "days", "path", "seconds", "s / day", "ratio"):
        table.add_column(col)
    short, cmp_range = " .. ".join(res["short_range"]), " .. ".join(res["compare_range"])
    table.add_row(short, str(res["short_days"]), "3 x backtest() (this tree)", f"{res['old_s']:.1f}",
                  f"{res['old_s'] / res['short_days']:.3f}", "")
    if res["baseline_s"] is not None:
        table.add_row(cmp_range, str(res["compare_days"]), f"baseline one pass ({res['baseline']})",
                      f"{res['baseline_s']:.1f}", f"{res['baseline_s'] / res['compare_days']:.3f}", "1.00")
    table.add_row(cmp_range, str(res["compare_days"]), "new one pass, 1 worker", f"{res['new_compare_s']:.1f}",
                  f"{res['new_compare_s'] / res['compare_days']:.3f}",
                  f"{res['ratio_baseline_over_new']:.2f}x faster (CPU {res['cpu_ratio_baseline_over_new']:.2f}x)"
                  if res["baseline_s"] else "")
    table.add_row(" .. ".join(res["full_range"]), str(res["full_days"]), f"new, {res['workers']} worker(s)",
                  f"{res['full_s']:.1f}", f"{res['full_s_per_day']:.3f}",
                  f"20y projected {res['projected_20y_s']:.0f} s / {res['target_s']:.0f} s "
                  f"({res['projected_20y_free_cores_s']:.0f} s on {res['workers']} free cores)")
    Console().print(table)
    Console().print(f"full range: {res['full_cpu_s']:.1f} CPU s ({res['full_parent_cpu_s']:.1f} in the parent, serial); "
                    f"on {res['workers']} free cores {res['full_free_cores_s']:.0f} s (serial + workers' CPU / {res['workers']})")
    Console().print(f"a fresh process's first day (one-off loading, not in the rows above): {res['new_warm_up_s']:.1f} s")
    Console().print(f"largest relative margin difference, new vs baseline: {res['max_rel_margin_diff_new_vs_baseline']}")
    Console().print(f"largest relative margin difference, new vs 3 single-model runs: {res['max_rel_margin_diff_new_vs_3_runs']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--from", dest="start", type=date.fromisoformat, default=None)
    parser.add_argument("--to", dest="end", type=date.fromisoformat, default=None)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the baseline one pass, or 'none'")
    parser.add_argument("--compare-days", type=int, default=COMPARE_DAYS)
    args = parser.parse_args(argv)
    report(run(args.quick, args.workers, args.start, args.end, args.baseline, args.compare_days))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
