"""Backtest speed: a 10-position book, all three margin models, day by day over real history.

Book (read as of the start date; cash securities existing on 2005-01-03 and maturing after
2025, Treasury futures rolled at their nearby place), three accounts, ten positions:

* ``BASIS10``: long $100m of the 6.25% bond of 2030-05-15 against short ZN;
* ``CURVE``: long 2-year futures, short bond futures, long the 6% bond of 2026, short the
  5.375% bond of 2031 (cross-margined);
* ``OUTRIGHT``: long ZF and ZB futures, long the 2031 bond, short the 2026 bond (not elected).

Timed in one process, cold (no cached scenario set or SPAN calibration):

* ``old``: three single-model :func:`~xmargin.validation.backtest.backtest` runs (the path
  before the one-pass engine) over a short range (``SHORT_DAYS`` business days);
* ``new``: :func:`~xmargin.validation.multi.backtest_models` (one pass, second-order P&L
  ranking, exact VaR tail, SPAN on first-order curves) over the same short range, then over
  the full range (``--quick``: 3 months; default 2005-01-03 .. 2025-12-31, the target).

The table prints seconds per business day of each path, the ratio old / new on the same
days, and the full-range time against the target (<= 120 s on a quiet 2-core machine).
The load average before and after is recorded: on a shared machine wall-clock times are
several times a quiet machine's.  ``python -m benchmarks.bench_backtest [--quick]
[--workers N] [--from D] [--to D]``; writes ``benchmarks/results/backtest[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from xmargin.config import resolve_data_dir
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


def run(quick: bool = False, workers: int = 1, start: date | None = None, end: date | None = None) -> dict[str, Any]:
    data_dir = resolve_data_dir(None)
    start = start or date(2005, 1, 3)
    end = end or (date(2005, 3, 31) if quick else date(2025, 12, 31))
    env = Environment.load(start, data_dir=data_dir, previous_business_day=True)
    path = RESULTS / "bench_backtest_book.csv"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(BOOK)
    book = env.read_book(path)
    kw = {"data_dir": env.snapshot.data_dir, "params": env.params, "eligibility": env.eligibility}
    load = [os.getloadavg()[0]]
    short_end = date.fromordinal(start.toordinal() + 14)
    t = time.perf_counter()
    old = {m: backtest(book, start, short_end, model=m, **kw) for m in ("ficc", "cme", "combined")}
    t_old = time.perf_counter() - t
    from xmargin.validation import backtest as bt_module

    bt_module._span_on.cache_clear()  # the new path starts cold too
    t = time.perf_counter()
    new_short = backtest_models(book, start, short_end, **kw)
    t_new_short = time.perf_counter() - t
    days_short = len(old["combined"].dates)
    t = time.perf_counter()
    full = backtest_models(book, start, end, workers=workers, **kw)
    t_full = time.perf_counter() - t
    load.append(os.getloadavg()[0])
    days = len(full["combined"].dates)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before_after": load},
        "book_positions": int(book.positions.nnz), "accounts": len(book.accounts),
        "short_range": [str(start), str(short_end)], "short_days": days_short,
        "old_s": t_old, "new_short_s": t_new_short, "ratio_old_over_new": t_old / t_new_short,
        "full_range": [str(start), str(end)], "full_days": days, "full_s": t_full, "workers": workers,
        "full_s_per_day": t_full / max(days, 1), "target_s": TARGET_S,
        "projected_20y_s": t_full / max(days, 1) * 5250,
        "exceptions": {m: int(r.exceptions.sum()) for m, r in full.items()},
        # the VaR models agree to rounding; SPAN on first-order curves within a fraction of 1%
        "max_rel_margin_diff_new_vs_old": {
            m: float(np.nanmax(np.abs(new_short[m].components["model_margin"] - old[m].components["model_margin"])
                               / np.maximum(np.abs(old[m].components["model_margin"]), 1.0))) for m in old},
    }
    (RESULTS / ("backtest_quick.json" if quick else "backtest.json")).write_text(json.dumps(out, indent=2))
    return out


def report(res: dict[str, Any]) -> None:
    table = Table(title=f"Backtest, {res['book_positions']} positions, 3 models (load {res['machine']['load_before_after']})")
    for col in ("range", "days", "path", "seconds", "s / day", "ratio / target"):
        table.add_column(col)
    table.add_row(" .. ".join(res["short_range"]), str(res["short_days"]), "old: 3 x backtest()", f"{res['old_s']:.1f}",
                  f"{res['old_s'] / res['short_days']:.3f}", "1.00")
    table.add_row(" .. ".join(res["short_range"]), str(res["short_days"]), "new: one pass", f"{res['new_short_s']:.1f}",
                  f"{res['new_short_s'] / res['short_days']:.3f}", f"{res['ratio_old_over_new']:.2f}x faster")
    table.add_row(" .. ".join(res["full_range"]), str(res["full_days"]), f"new, {res['workers']} worker(s)",
                  f"{res['full_s']:.1f}", f"{res['full_s_per_day']:.3f}",
                  f"20y projected {res['projected_20y_s']:.0f} s / {res['target_s']:.0f} s")
    Console().print(table)
    Console().print(f"largest relative margin difference new vs old on the short range: {res['max_rel_margin_diff_new_vs_old']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--from", dest="start", type=date.fromisoformat, default=None)
    parser.add_argument("--to", dest="end", type=date.fromisoformat, default=None)
    args = parser.parse_args(argv)
    report(run(args.quick, args.workers, args.start, args.end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
