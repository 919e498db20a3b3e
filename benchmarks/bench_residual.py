"""Cost of the residual risk factors (issue 12) in the end-of-day context and margins.

Same universe and seeded accounts as :mod:`benchmarks.bench_margin` (quick: 1,000 accounts).
In one process, alternately, a **cold** ``build_context`` + ``compute_margins`` with every
residual factor off (the baseline: the curve-only engine) and with the defaults (futures
basis from ``<data dir>/futures``, SOFR-EFFR, SOFR-Treasury, each under FHS), and the
defaults with ``[residual] filtered = false`` (the residual changes unscaled, as before
their FHS), and the defaults of session 3 (``delivery_month_changes = false``, ``vol_floor = 0``); before each pass every cache a
cold run would not have is cleared (scenario sets, SPAN calibration, residual histories).
Prints the median wall and CPU seconds of each and their ratio (target: at most 1.20).
Run ``python -m benchmarks.bench_residual [--quick] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from dataclasses import replace
from typing import Any

from benchmarks.bench_margin import accounts, universe
from xmargin.config import resolve_data_dir
from xmargin.margin import context as context_module
from xmargin.margin.calculator import compute_margins
from xmargin.margin.params import MarginParams
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.scenarios import futures_basis as basis_module
from xmargin.scenarios import residual as residual_module
from xmargin.scenarios.residual import ResidualParams

AS_OF = "2024-06-26"


def _clear() -> None:
    context_module._scenarios.cache_clear()
    context_module._span.cache_clear()
    basis_module._fair_values.cache_clear()
    residual_module.spread_levels.cache_clear()
    for f in (basis_module.daily_basis_changes, basis_module.basis_volatility, basis_module.delivery_month_level,
              residual_module.daily_spread_changes, residual_module.spread_volatility):
        f.cache_clear()


def run(quick: bool = False, repeats: int = 2) -> list[dict[str, Any]]:
    from datetime import date

    warnings.simplefilter("ignore")
    data_dir = resolve_data_dir(None)
    snap = load_snapshot(date.fromisoformat(AS_OF), data_dir=data_dir)
    master = load_master(data_dir)
    uni, _ = universe(snap, master)
    book = accounts(uni, snap, master, 1_000 if quick else 10_000)
    modes = {"residual off (baseline)": replace(MarginParams(), residual=ResidualParams(False, False, False)),
             "residual on, unfiltered (before FHS)": replace(MarginParams(),
                                                              residual=ResidualParams(filtered=False)),
             "residual on, session-3 defaults (no proxy, no vol floor)": replace(
                 MarginParams(), residual=ResidualParams(delivery_month_changes=False, vol_floor=0.0)),
             "residual on (default)": MarginParams()}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in modes}
    for _ in range(repeats):
        for name, params in modes.items():
            _clear()
            w0, c0 = time.perf_counter(), time.process_time()
            ctx = context_module.build_context(snap, master, book.universe, params)
            compute_margins(ctx, book)
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    base = statistics.median(c for _, c in times["residual off (baseline)"])
    unfiltered = statistics.median(c for _, c in times["residual on, unfiltered (before FHS)"])
    rows = []
    for name, ts in times.items():
        wall, cpu = statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)
        rows.append({"metric": f"context + margins, {name}", "wall_s": wall, "cpu_s": cpu, "cpu_ratio": cpu / base,
                     "target": 1.2})
    filtered = statistics.median(c for _, c in times["residual on (default)"])
    rows.append({"metric": "FHS of the residual factors: on / off", "wall_s": float("nan"), "cpu_s": filtered,
                 "cpu_ratio": filtered / unfiltered, "target": 1.2})
    before = statistics.median(c for _, c in times["residual on, session-3 defaults (no proxy, no vol floor)"])
    rows.append({"metric": "delivery-month proxy + vol floor: on / off", "wall_s": float("nan"), "cpu_s": filtered,
                 "cpu_ratio": filtered / before, "target": 1.2})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    for r in run(args.quick, args.repeats):
        print(f"{r['metric']:<45} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  cpu ratio {r['cpu_ratio']:.2f} "
              f"(target <= {r['target']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
