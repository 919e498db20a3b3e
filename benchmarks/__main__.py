"""The benchmark suite: every benchmark side by side in one run, one table of ratios.

``python -m benchmarks [--quick] [--only NAME ...] [--out-dir DIR]`` (or ``xmargin bench``).

Benchmarks (each imported and run in turn; one that fails or is missing is reported as such
and the suite goes on):

* ``pricing`` -- :mod:`benchmarks.bench_pricing`: full revaluation, xmargin vs a QuantLib loop;
* ``margin`` -- :mod:`benchmarks.bench_margin`: the 10k-account margin batch against its targets;
* ``batch`` -- :mod:`benchmarks.bench_batch`: 1k / 10k / 100k accounts (time, peak RSS, accounts/s);
* ``live`` -- :mod:`benchmarks.bench_live`: what-if latency p50 / p99 (when present);
* ``dask`` -- :mod:`benchmarks.bench_dask`: the account phase on 1 vs 2 Dask workers;
* ``ore`` -- :mod:`benchmarks.bench_ore`: the same FICC VaR computed by the Open Source Risk Engine.

Writes ``suite.json`` (every raw figure, the machine and its load) and ``suite.png`` (time
against accounts) to ``benchmarks/results``.  Timings taken while other work runs on the
machine are noisy: the load average before and after each benchmark is recorded with it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ("pricing", "margin", "batch", "live", "service", "dask", "ore")


# --------------------------------------------------------------------------- running


def _pricing(quick: bool) -> list[dict[str, Any]]:
    """``bench_pricing.run`` takes explicit sizes (it has no ``quick``): adapt here."""
    mod = importlib.import_module("benchmarks.bench_pricing")
    res = mod.run(2500, 300 if quick else None, 3 if quick else 7, None)
    return [res]


def _module_runner(name: str) -> Callable[[bool], list[dict[str, Any]]]:
    def runner(quick: bool) -> list[dict[str, Any]]:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        if not hasattr(mod, "run"):
            raise RuntimeError(f"benchmarks/bench_{name}.py has no run(quick) function")
        out = mod.run(quick=quick)
        return list(out) if isinstance(out, list) else [out]
    return runner


RUNNERS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "pricing": _pricing,
    **{name: _module_runner(name) for name in ORDER if name != "pricing"},
}


def run_all(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    names = [n for n in ORDER if not only or n in only]
    results: dict[str, Any] = {}
    for name in names:
        spec = importlib.util.find_spec(f"benchmarks.bench_{name}")
        if spec is None:
            results[name] = {"status": "missing", "note": f"benchmarks/bench_{name}.py not present"}
            print(f"[suite] {name}: not present", flush=True)
            continue
        print(f"[suite] {name} ...", flush=True)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        try:
            rows = RUNNERS[name](quick)
            status: dict[str, Any] = {"status": "ok", "rows": rows}
        except Exception as exc:  # noqa: BLE001 - one benchmark failing must not stop the suite
            status = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=6)}
        status.update(wall_s=time.perf_counter() - t0, loadavg_before=load_before, loadavg_after=os.getloadavg())
        results[name] = status
        print(f"[suite] {name}: {status['status']} in {status['wall_s']:.1f} s", flush=True)
    return results


# --------------------------------------------------------------------------- one table


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def _fmt_s(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _rows_pricing(rows: list[dict[str, Any]]) -> list[list[str]]:
    r = rows[0]
    xm, qlr = r["xmargin"], r["quantlib"]
    scope = f"{r['instruments']} Treasuries x {r['scenarios']:,} scenarios"
    extrap = " (extrap.)" if qlr.get("extrapolated") else ""
    return [
        ["pricing", f"{scope}, from DFs at pay dates", _fmt_s(xm["warm_time_s"]),
         f"QuantLib loop {_fmt_s(qlr['time_s'])}{extrap}", f"{r['ratio_quantlib_over_xmargin_warm']:.0f}x",
         "QuantLib / xmargin", ">= 100x", _met(r["ratio_quantlib_over_xmargin_warm"] >= r["targets"]["ratio"])],
        ["pricing", f"{scope}, incl. interpolation", _fmt_s(xm["time_s"]),
         f"QuantLib loop {_fmt_s(qlr['time_s'])}{extrap}", f"{r['ratio_quantlib_over_xmargin']:.0f}x",
         "QuantLib / xmargin", "", ""],
    ]


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def _rows_batch(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        if "batch_s" not in r:
            out.append(["batch", r.get("case", ""), "failed", r.get("error", ""), "", "", "", ""])
            continue
        out.append([
            "batch", f"{r['accounts']:,} accounts ({r['rows']:,} positions)",
            f"{_fmt_s(r['batch_s'])} (CPU {_fmt_s(r['batch_cpu_s'])}), {r['peak_rss_bytes'] / 2**20:,.0f} MB, "
            f"{r['accounts_per_s']:,.0f} acct/s",
            f"one at a time {_fmt_s(r['per_account_loop_s'])}", f"{r['ratio']:.0f}x", "loop / vectorised (margins)",
            r.get("target", ""), _met(r.get("met")),
        ])
    return out


def _rows_live(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        target = r.get("target_p99_us")
        out.append(["live", f"{r['operation']} ({r['positions']} positions, {r['scenarios']:,} scenarios)",
                    f"p50 {r['p50_us']:,.0f} us, p99 {r['p99_us']:,.0f} us (CPU p99 {r['cpu_p99_us']:,.0f} us)",
                    f"{r['n']:,} runs", "" if r.get("ratio") is None else f"{r['ratio']:.2f}",
                    "p99 / target" if target else "",
                    "" if not target else f"p99 <= {target:,.0f} us", _met(r.get("ok"))])
    return out


def _rows_dask(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        eff, ceff = r.get("parallel_efficiency"), r.get("cpu_efficiency")
        out.append(["dask", r["case"], f"{_fmt_s(r['time_s'])}, {r['accounts_per_s']:,.0f} acct/s",
                    f"1 worker {_fmt_s(rows[0]['time_s'])}", f"{r['ratio']:.2f}x",
                    "speed-up" + (f", efficiency {eff:.2f} (CPU-time {ceff:.2f})" if eff is not None else ""),
                    r.get("target", ""), _met(r.get("met"))])
    return out


def _rows_ore(rows: list[dict[str, Any]]) -> list[list[str]]:
    r = rows[0]
    if "skipped" in r:
        return [["ore", r["case"], "skipped", r["skipped"], "", "", "", ""]]
    return [
        ["ore", r["case"], f"xmargin {_fmt_s(r['xmargin_s'])}", f"ORE {_fmt_s(r['ore_s'])}", f"{r['ratio']:.1f}x",
         "ORE / xmargin", "", ""],
        ["ore", "largest difference in FICC margin", f"${r['max_margin_diff_usd']:,.2f}",
         f"VaRs up to ${r['largest_var_usd']:,.0f}", f"{r['max_margin_diff_rel']:.1e}", "relative",
         "see docs/scaling.md", ""],
    ]


def _rows_generic(name: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    """Rows of a benchmark whose shape the suite does not know: label, value, ratio, target."""
    out = []
    for r in rows:
        label = str(r.get("case") or r.get("metric") or r.get("name") or r.get("label") or "")
        measured = r.get("measured", r.get("value", r.get("time_s")))
        unit = r.get("unit", "s" if "time_s" in r else "")
        if isinstance(measured, float):
            shown = f"{measured:,.3f} {unit}".strip()
        elif measured is None:
            parts = [f"{k} {v:,.3g}" for k, v in r.items() if _num(v) is not None and k not in ("ratio", "target")][:3]
            shown = ", ".join(parts)
        else:
            shown = f"{measured} {unit}".strip()
        ratio = _num(r.get("ratio"))
        target = r.get("target")
        what = r.get("ratio_of") or ("measured / target" if ratio is not None and target is not None else "")
        out.append([name, label, shown, str(r.get("baseline", r.get("note", "")) or ""),
                    "" if ratio is None else f"{ratio:.2f}", what,
                    "" if target is None else (f"<= {target:g} {unit}" if _num(target) is not None else str(target)),
                    _met(r.get("met", None if ratio is None or target is None else ratio <= 1.0))])
    return out


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    shaped = {"pricing": _rows_pricing, "batch": _rows_batch, "live": _rows_live, "dask": _rows_dask,
              "ore": _rows_ore}
    for name, res in results.items():
        if res["status"] == "missing":
            rows.append([name, "", "not run", res["note"], "", "", "", ""])
            continue
        if res["status"] == "error":
            rows.append([name, "", "failed", res["error"][:120], "", "", "", ""])
            continue
        try:
            rows += shaped[name](res["rows"]) if name in shaped else _rows_generic(name, res["rows"])
        except (KeyError, TypeError, IndexError) as exc:
            rows += _rows_generic(name, res["rows"])
            rows.append([name, "", "", f"(unexpected result shape: {exc})", "", "", "", ""])
    return rows


COLUMNS = ("benchmark", "case", "measured", "baseline", "ratio", "ratio of", "target", "met")


def print_table(rows: list[list[str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, header_style="bold cyan")
    for c in COLUMNS:
        t.add_column(c, justify="right" if c in ("ratio",) else "left", overflow="fold")
    for r in rows:
        t.add_row(*r)
    Console(width=max(Console().width, 190)).print(t)


# --------------------------------------------------------------------------- chart


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Time against accounts (log-log): the one-process batch and the Dask account phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = [r for r in results.get("batch", {}).get("rows", []) if "batch_s" in r]
    dask = results.get("dask", {}).get("rows", []) if results.get("dask", {}).get("status") == "ok" else []
    if not batch and not dask:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    if batch:
        n = [r["accounts"] for r in batch]
        ax.plot(n, [r["batch_s"] for r in batch], "o-", label="batch, one process (read + context + margins + records)")
        if all("batch_cpu_s" in r for r in batch):
            ax.plot(n, [r["batch_cpu_s"] for r in batch], "o:", color="C0", alpha=0.6, label="the same, CPU seconds")
        ax.plot(n, [r["margins_s"] for r in batch], "s--", label="margins only, one process")
        ax.plot(n, [r["context_s"] for r in batch], "^:", label="context (fixed cost)")
    for r in dask:
        ax.plot([r["accounts"]], [r["time_s"]], "D", markersize=8, label=f"Dask account phase, {r['workers']} worker(s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(10.0, color="grey", lw=0.8, ls="--")
    ax.text(min(r["accounts"] for r in (batch or dask)), 10.6, "10 s target (10k accounts)", fontsize=8, color="grey")
    ax.set_xlabel("accounts")
    ax.set_ylabel("seconds")
    ax.set_title("xmargin end-of-day batch: time vs accounts")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run every benchmark side by side.")
    parser.add_argument("--quick", action="store_true", help="smaller books, fewer repeats")
    parser.add_argument("--only", action="append", choices=ORDER, help="run only this benchmark (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    results = run_all(args.quick, args.only)
    rows = table_rows(results)
    doc = {
        "started": started, "quick": args.quick, "wall_s": time.perf_counter() - t0,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "note": "timings on a shared machine are noisy; see loadavg_before/after of each benchmark",
        "table": [dict(zip(COLUMNS, r, strict=True)) for r in rows],
        "results": results,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "suite.json"
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    png = chart(results, args.out_dir / "suite.png")
    print_table(rows, f"xmargin benchmark suite{' (quick)' if args.quick else ''}: ratios against each baseline")
    print(f"wrote {out}" + (f" and {png}" if png else ""))
    return 0 if all(r["status"] != "error" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
