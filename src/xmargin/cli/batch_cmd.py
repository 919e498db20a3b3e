"""``xmargin batch`` (the end-of-day run on Dask) and ``xmargin bench`` (the benchmark suite)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from xmargin.cli.common import (
    AsOfOption,
    DataDirOption,
    FormatOption,
    OutputFormat,
    PrevBusinessDayOption,
    as_of_rule,
    emit_json,
    err_console,
    handle_errors,
    progress_reporter,
    resolve_as_of,
)
from xmargin.cli.margin_cmd import ConfigOption, EligibilityOption, print_margin_table
from xmargin.errors import InputError


def batch(
    portfolios: Annotated[list[Path], typer.Argument(help="Portfolio files (CSV, JSON or Parquet); several files "
                                                          "are shards of one book.")],
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Address of a running Dask scheduler "
                                                                      "(tcp://host:8786).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Processes of a local Dask cluster "
                                                                         "(default: one per CPU).")] = None,
    partition_size: Annotated[int | None, typer.Option("--partition-size", min=1,
                                                       help="Accounts per task (default: ~8 tasks per worker).")] = None,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries of a failed partition.")] = 2,
    format: FormatOption = OutputFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON document to this file.")] = None,
    missing_file: Annotated[Path | None, typer.Option("--missing", help="If the batch cannot complete, write the "
                                                                         "missing accounts here, one per line.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add the driving scenarios and largest contributors.")] = False,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
) -> None:
    """End-of-day margin of every account on Dask; the same document as ``xmargin margin``."""
    from xmargin.distributed.batch import BatchIncompleteError, BatchStats, batch_job
    from xmargin.workflow import Environment

    day = resolve_as_of(as_of, data_dir)
    env = Environment.load(day, data_dir=data_dir, previous_business_day=previous_business_day,
                           config=config, eligibility=eligibility)
    stats = BatchStats()
    start = time.perf_counter()
    with progress_reporter() as progress:
        try:
            payload = batch_job(env, portfolios, scheduler=scheduler, workers=workers, partition_size=partition_size,
                                retries=retries, explain=explain, progress=progress, stats=stats)
        except BatchIncompleteError as exc:
            if missing_file is not None:
                missing_file.write_text("".join(f"{name}\n" for name in exc.missing))
            raise
    elapsed = time.perf_counter() - start
    from xmargin.reports.provenance import provenance

    snap = env.snapshot
    payload["provenance"] = provenance(  # the data, parameters and version behind the numbers
        as_of=snap.as_of, data_dir=snap.data_dir, params=env.params.to_dict(), eligibility=env.eligibility,
        inputs={f"portfolio {k + 1}": p for k, p in enumerate(portfolios)}, as_of_rule=as_of_rule(as_of))
    if output is not None:
        try:
            output.write_text(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write the result: {exc.strerror}", source=output) from None
    err_console.print(
        f"{stats.accounts:,} accounts in {stats.partitions} partitions on {stats.workers} worker(s), "
        f"context {stats.context_bytes / 1e6:.1f} MB broadcast, {elapsed:.1f} s",
        highlight=False,
    )
    if format is OutputFormat.json:
        emit_json(payload)
        return
    print_margin_table(payload, title=f"Margin as of {payload['as_of']} (dollars, {stats.workers} Dask worker(s))")


def _benchmarks_main() -> Any:
    """``benchmarks.__main__.main`` from the source checkout (benchmarks are not installed)."""
    import xmargin

    candidates = [Path.cwd(), Path(xmargin.__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "benchmarks" / "__main__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            from benchmarks.__main__ import main

            return main
    raise InputError("the benchmark suite lives in the source checkout (benchmarks/); run from the repository",
                     source="xmargin bench")


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller books and fewer repeats (a minute or two).")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these benchmarks (repeatable): "
                                                                 "pricing, batch, live, margin, dask, ore.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Where suite.json and suite.png go "
                                                                   "(default: benchmarks/results).")] = None,
) -> None:
    """Run every benchmark side by side and print one table of ratios against the baselines."""
    main = _benchmarks_main()
    argv = (["--quick"] if quick else []) + [a for name in (only or []) for a in ("--only", name)]
    if out_dir is not None:
        argv += ["--out-dir", str(out_dir)]
    code = main(argv)
    if code:
        raise typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    app.command("batch")(handle_errors(batch))
    app.command("bench")(handle_errors(bench))
