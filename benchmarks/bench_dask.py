"""Dask scale-out: the account phase of the batch on 1 and on 2 workers (parallel efficiency).

Book: the synthetic Parquet book of :mod:`benchmarks.bench_batch` (10k accounts with
``--quick``, 50k otherwise).  The context is built once in this process (as ``xmargin batch``
does on the client) and is not part of the comparison: it is the same fixed cost for any
number of workers.

Timed for each cluster size (a LocalCluster of single-threaded worker processes, started
outside the timing): :func:`xmargin.distributed.batch.distributed_margins`, i.e. broadcasting
the context, scattering the partitions, margining them and gathering the results.  Both
clusters are started first and the runs alternate (1, 2, 1, 2, ...) so that a change in the
machine's load affects both alike; the first round pays the workers' imports and is a
warm-up; the best of ``repeat`` runs is reported.  Also recorded: the CPU seconds of the
busiest worker in each run; ``cpu_efficiency = CPU(1 worker) / (2 CPU(busiest of 2))`` is the
efficiency the run would have on otherwise idle cores (it leaves out the client's share and
any waiting), the steadier figure when other work shares the machine.  Baseline: the same accounts on one worker; efficiency
``T(1) / (2 T(2))`` (target >= 0.8).  The single-process
:func:`~xmargin.margin.calculator.compute_margins` time is shown for reference.

Bytes moved per run: the pickled context once per worker, the partitions' position rows, and
the results (29 arrays of 8 or 1 bytes per account).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_batch import AS_OF, write_book

QUICK_ACCOUNTS, FULL_ACCOUNTS = 10_000, 50_000
TARGET_EFFICIENCY = 0.8


def _result_bytes_per_account() -> int:
    from dataclasses import fields

    from xmargin.margin.calculator import AccountMargins

    one = AccountMargins.empty(1)
    return sum(getattr(one, f.name).nbytes for f in fields(one))


def run(quick: bool = False, accounts: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    from xmargin.distributed.batch import dask_client, default_partition_size, distributed_margins
    from xmargin.margin.calculator import compute_margins
    from xmargin.portfolio.parquet import read_parquet
    from xmargin.workflow import Environment

    n = accounts or (QUICK_ACCOUNTS if quick else FULL_ACCOUNTS)
    repeat = repeat or (2 if quick else 3)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="xmargin-bench-") as tmp:
        path = Path(tmp) / "book.parquet"
        write_book(path, n)
        env = Environment.load(AS_OF)
        book = read_parquet(path, as_of=AS_OF, master=env.master, eligibility=env.eligibility)
    t0 = time.perf_counter()
    context = env.context(book)
    t_context = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = compute_margins(context, book)
    t_single = time.perf_counter() - t0
    context_bytes = len(pickle.dumps(context, protocol=5))
    q = book.positions
    position_bytes = q.data.nbytes + q.indices.nbytes + q.indptr.nbytes
    result_bytes = _result_bytes_per_account() * n
    startup: dict[int, float] = {}
    runs: dict[int, list[float]] = {1: [], 2: []}
    busiest: dict[int, list[float]] = {1: [], 2: []}  # CPU seconds of the busiest worker per run
    identical = True
    size = default_partition_size(n, 2)  # the same partitions for both: only the worker count changes
    with ExitStack() as stack:
        clients = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            clients[workers] = stack.enter_context(dask_client(workers=workers))
            startup[workers] = time.perf_counter() - t0
        def cpu_seconds() -> float:  # runs on each worker (pickled by value)
            import psutil

            t = psutil.Process().cpu_times()
            return float(t.user + t.system)

        for k in range(repeat + 1):  # interleaved, so a change in the machine's load hits both alike
            for workers in (1, 2):
                c0 = clients[workers].run(cpu_seconds)
                t0 = time.perf_counter()
                got = distributed_margins(clients[workers], context, book, partition_size=size)
                if k:  # the first round is the warm-up (worker imports)
                    runs[workers].append(time.perf_counter() - t0)
                    c1 = clients[workers].run(cpu_seconds)
                    busiest[workers].append(max(c1[a] - c0[a] for a in c1))
                    identical &= all(np.array_equal(getattr(got, f), getattr(reference, f), equal_nan=True)
                                     for f in reference.__dataclass_fields__)
    times = {w: min(r) for w, r in runs.items()}
    efficiency = times[1] / (2 * times[2])
    cpu = {w: min(c) for w, c in busiest.items()}
    cpu_efficiency = cpu[1] / (2 * cpu[2])
    load_after = os.getloadavg()
    common = {"benchmark": "dask", "accounts": n, "instruments": len(book.universe),
              "ficc_scenarios": context.ficc_scenarios.size, "partition_size": default_partition_size(n, 2),
              "context_s": t_context, "single_process_s": t_single, "context_bytes": context_bytes,
              "position_bytes": position_bytes, "result_bytes": result_bytes, "identical_to_single": identical,
              "loadavg_before": load_before, "loadavg_after": load_after, "cpus": os.cpu_count(),
              "all_runs_s": {str(w): r for w, r in runs.items()}}
    return [
        {**common, "case": f"{n:,} accounts, 1 worker", "workers": 1, "time_s": times[1],
         "busiest_worker_cpu_s": cpu[1],
         "cluster_start_s": startup[1], "accounts_per_s": n / times[1],
         "bytes_moved": context_bytes + position_bytes + result_bytes, "ratio": 1.0,
         "baseline": "1 worker"},
        {**common, "case": f"{n:,} accounts, 2 workers", "workers": 2, "time_s": times[2],
         "cluster_start_s": startup[2], "accounts_per_s": n / times[2],
         "bytes_moved": 2 * context_bytes + position_bytes + result_bytes,
         "ratio": times[1] / times[2], "baseline": "1 worker", "parallel_efficiency": efficiency,
         "busiest_worker_cpu_s": cpu[2], "cpu_efficiency": cpu_efficiency,
         "target": f"efficiency >= {TARGET_EFFICIENCY}", "met": bool(efficiency >= TARGET_EFFICIENCY)},
    ]


def report(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Dask account phase (context built once: {rows[0]['context_s']:.2f} s; "
                    f"one process: {rows[0]['single_process_s']:.2f} s)")
    for c in ("case", "time s", "busiest worker CPU s", "accts/s", "speed-up", "efficiency", "CPU efficiency",
              "MB moved", "identical"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["case"], f"{r['time_s']:.2f}", f"{r['busiest_worker_cpu_s']:.2f}", f"{r['accounts_per_s']:,.0f}",
                  f"{r['ratio']:.2f}", f"{r.get('parallel_efficiency', 1.0):.2f}", f"{r.get('cpu_efficiency', 1.0):.2f}",
                  f"{r['bytes_moved'] / 1e6:.1f}", str(r["identical_to_single"]))
    Console(width=140).print(t)
    print(f"load average before/after: {rows[0]['loadavg_before']} / {rows[0]['loadavg_after']} "
          f"on {rows[0]['cpus']} CPUs (other work on the machine distorts the efficiency)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args(argv)
    report(run(args.quick, args.accounts, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
