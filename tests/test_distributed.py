"""The Dask batch: the single-process result to the last bit, retries, and no silent partial result.

Reference: :func:`xmargin.workflow.margin_job` (the one-process ``xmargin margin`` path) on the
same portfolio.  The cluster is a LocalCluster of two single-threaded worker processes shared
by the module; a hook run on the worker before every attempt records which worker ran which
partition and injects failures.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from xmargin.cli import batch_cmd
from xmargin.distributed.batch import (
    FAIL_ENV,
    BatchIncompleteError,
    BatchStats,
    batch_job,
    combine_books,
    dask_client,
    partitions,
    read_books,
)
from xmargin.errors import InputError
from xmargin.workflow import Environment, margin_job

AS_OF = date(2024, 6, 26)
HEADER = ["account", "member", "account_type", "instrument", "quantity", "cross_margin",
          "repo_start", "repo_end", "repo_rate", "cash_amount"]
CASH = ["91282CGA3", "91282CED9", "91282CCZ2", "91282CAU5", "912810FG8", "91282CBL4", "912810QT8",
        "912810SF6", "UST:4.375:2034-05-15"]
BILLS = ["912797KP1"]  # not cross-margin eligible: warnings, stand-alone
FUTURES = ["ZTU24", "ZFU24", "ZNU24", "ZNZ24", "ZBU24", "UBU24", "SR3U24", "ZQN24"]
N_ACCOUNTS = 420
PART = 53  # accounts per partition in the tests: 8 partitions, the last one short


def _rows(seed: int = 11) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(N_ACCOUNTS):
        name, member = f"ACC{a:04d}", f"M{a % 9}"
        kind = "customer" if a % 4 == 0 else "house"
        xm = "false" if a % 7 == 0 else "true"
        picks = rng.choice(len(CASH) + len(BILLS) + len(FUTURES), size=int(rng.integers(1, 7)), replace=False)
        for j in picks:
            if j < len(CASH):
                inst, qty = CASH[j], int(rng.integers(-40, 40)) * 250_000
            elif j < len(CASH) + len(BILLS):
                inst, qty = BILLS[j - len(CASH)], int(rng.integers(1, 20)) * 1_000_000
            else:
                inst, qty = FUTURES[j - len(CASH) - len(BILLS)], int(rng.integers(-300, 300))
            rows.append([name, member, kind, inst, str(qty), xm, "", "", "", ""])
        if a % 25 == 3:  # a repo on note collateral
            rows.append([name, member, kind, "91282CGA3", "5000000", xm, "2024-06-25", "2024-07-25", "5.30",
                         "4950000"])
    return rows


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, allow_nan=False)


@pytest.fixture(scope="module")
def env(data_dir: Path) -> Environment:
    return Environment.load(AS_OF, data_dir=data_dir)


@pytest.fixture(scope="module")
def book_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_csv(tmp_path_factory.mktemp("batch") / "book.csv", _rows())


@pytest.fixture(scope="module")
def reference(env: Environment, book_csv: Path) -> dict[str, Any]:
    return margin_job(env, book_csv)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with dask_client(workers=2) as c:
        yield c


def _hook(log_dir: Path, *, fail_once: frozenset[int] = frozenset()) -> Callable[[int], None]:
    """Runs on the worker before each attempt: logs (partition, worker), fails once if asked."""
    def hook(index: int) -> None:
        from distributed import get_worker

        (log_dir / f"{index}-{uuid.uuid4().hex}").write_text(get_worker().address)
        marker = log_dir / f"failed-once-{index}"
        if index in fail_once and not marker.exists():
            marker.write_text("")
            raise RuntimeError(f"transient failure of partition {index}")
    return hook


def _attempts(log_dir: Path) -> tuple[Counter[int], set[str]]:
    logs = [p for p in log_dir.iterdir() if not p.name.startswith("failed-once")]
    return Counter(int(p.name.split("-")[0]) for p in logs), {p.read_text() for p in logs}


def test_partitions_cover_the_book_in_order() -> None:
    parts = partitions(N_ACCOUNTS, PART)
    assert [p.index for p in parts] == list(range(8))
    assert parts[0].start == 0 and parts[-1].stop == N_ACCOUNTS
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert [p.stop - p.start for p in parts] == [PART] * 7 + [N_ACCOUNTS - 7 * PART]
    with pytest.raises(InputError):
        partitions(10, 0)


def test_batch_is_the_single_process_result(env: Environment, book_csv: Path, reference: dict[str, Any],
                                            client: Any, tmp_path: Path) -> None:
    stats = BatchStats()
    payload = batch_job(env, [book_csv], client=client, partition_size=PART, hook=_hook(tmp_path), stats=stats)
    assert [r["account"] for r in payload["accounts"]] == [f"ACC{a:04d}" for a in range(N_ACCOUNTS)]
    assert _dump(payload) == _dump(reference)  # every number to the last bit, warnings, model, totals
    assert any(r["savings"] and r["savings"] > 0 for r in payload["accounts"])  # a real cross-margin book
    assert len(payload["warnings"]) > 0
    attempts, workers = _attempts(tmp_path)
    assert attempts == Counter(range(8))  # each partition exactly once
    assert len(workers) == 2  # both workers got partitions
    assert (stats.accounts, stats.partitions, stats.workers) == (N_ACCOUNTS, 8, 2)
    assert stats.context_bytes > 0


def test_shards_in_csv_and_parquet_are_one_book(env: Environment, reference: dict[str, Any], client: Any,
                                                 tmp_path: Path) -> None:
    rows = _rows()
    cut = len(rows) // 2
    first = _write_csv(tmp_path / "part1.csv", rows[:cut])
    second = tmp_path / "part2.parquet"
    # an account in both files: one position of ACC0001 again at the end of the second file
    moved = next(r for r in rows[:cut] if r[0] == "ACC0001")
    pq.write_table(pa.table({h: [r[k] for r in [*rows[cut:], moved]] for k, h in enumerate(HEADER)}), second)
    whole = _write_csv(tmp_path / "whole.csv", [*rows, moved])
    expected = margin_job(env, whole)
    payload = batch_job(env, [first, second], client=client, partition_size=PART)
    assert _dump({**payload, "warnings": []}) == _dump({**expected, "warnings": []})
    assert len(payload["warnings"]) == len(expected["warnings"])
    # the moved position doubled ACC0001's holding of it: a different book from the reference
    assert _dump(payload["accounts"][1]) != _dump(reference["accounts"][1])


def test_shards_must_agree_on_accounts(env: Environment, tmp_path: Path) -> None:
    a = _write_csv(tmp_path / "a.csv", [["X", "M1", "house", "ZNU24", "10", "true", "", "", "", ""]])
    b = _write_csv(tmp_path / "b.csv", [["X", "M2", "house", "ZNU24", "10", "true", "", "", "", ""]])
    with pytest.raises(InputError, match="account X"):
        read_books(env, [a, b])
    assert combine_books([read_books(env, [a])]).size == 1


def test_a_failed_attempt_is_retried(env: Environment, book_csv: Path, reference: dict[str, Any], client: Any,
                                     tmp_path: Path) -> None:
    payload = batch_job(env, [book_csv], client=client, partition_size=PART, retries=1,
                        hook=_hook(tmp_path, fail_once=frozenset({1, 6})))
    assert _dump(payload) == _dump(reference)
    attempts, _ = _attempts(tmp_path)
    assert attempts == Counter({**dict.fromkeys(range(8), 1), 1: 2, 6: 2})


def test_a_partition_that_always_fails_names_the_missing_accounts(
    env: Environment, book_csv: Path, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAIL_ENV, "2,7")
    with pytest.raises(BatchIncompleteError) as err:
        batch_job(env, [book_csv], client=client, partition_size=PART, retries=2, hook=_hook(tmp_path))
    expected = [f"ACC{a:04d}" for a in [*range(2 * PART, 3 * PART), *range(7 * PART, N_ACCOUNTS)]]
    assert list(err.value.missing) == expected
    assert sorted(err.value.failures) == [2, 7] and "InjectedFailure" in err.value.failures[2]
    assert f"{len(expected)} of {N_ACCOUNTS} accounts" in str(err.value)
    assert "partition 2: ACC0106 .. ACC0158" in str(err.value)
    attempts, _ = _attempts(tmp_path)
    assert attempts[2] == attempts[7] == 3  # one try and two retries
    assert all(attempts[k] == 1 for k in (0, 1, 3, 4, 5, 6))


def _app() -> typer.Typer:
    app = typer.Typer()
    batch_cmd.register(app)
    return app


def test_cli_batch_on_a_scheduler(book_csv: Path, data_dir: Path, reference: dict[str, Any], client: Any,
                                  tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = CliRunner().invoke(_app(), [
        "batch", str(book_csv), "--as-of", "2024-06-26", "--data-dir", str(data_dir), "--format", "json",
        "--scheduler", client.scheduler.address, "--partition-size", "100", "--output", str(out),
    ])
    assert result.exit_code == 0, result.output
    stdout = result.stdout if hasattr(result, "stdout") else result.output
    payload = json.loads(stdout[stdout.index("{"):])
    written = json.loads(out.read_text())
    for doc in (payload, written):  # the CLI adds the provenance block (data files, hashes, version)
        assert doc.pop("provenance")["data_files"][-1]["path"] == str(book_csv.resolve())
    assert _dump(payload) == _dump(reference)
    assert _dump(written) == _dump(reference)


def test_cli_batch_fails_loudly(book_csv: Path, data_dir: Path, client: Any, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAIL_ENV, "0,3")
    out, missing = tmp_path / "result.json", tmp_path / "missing.txt"
    result = CliRunner().invoke(_app(), [
        "batch", str(book_csv), "--as-of", "2024-06-26", "--data-dir", str(data_dir), "--format", "json",
        "--scheduler", client.scheduler.address, "--partition-size", "100", "--retries", "0",
        "--output", str(out), "--missing", str(missing),
    ])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "batch incomplete, no result" in text and "200 of 420 accounts" in text
    assert "partition 0: ACC0000 .. ACC0099" in text and "partition 3: ACC0300 .. ACC0399" in text
    assert missing.read_text().split() == [f"ACC{a:04d}" for a in [*range(100), *range(300, 400)]]
    assert '"accounts"' not in result.output and not out.exists()  # no document at all


def test_cli_batch_local_cluster_table(tmp_path: Path, data_dir: Path) -> None:
    small = _write_csv(tmp_path / "small.csv", _rows()[:40])
    result = CliRunner().invoke(_app(), ["batch", str(small), "--as-of", "2024-06-26", "--data-dir",
                                         str(data_dir), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "TOTAL" in result.output and "ACC0000" in result.output
    assert "1 worker(s)" in result.output
    bad = CliRunner().invoke(_app(), ["batch", str(small), "--as-of", "2024-06-26", "--data-dir", str(data_dir),
                                      "--workers", "1", "--scheduler", "tcp://127.0.0.1:1"])
    assert bad.exit_code == 2 and "not both" in bad.output
    assert os.environ.get(FAIL_ENV) is None


def test_context_pickles_without_its_caches(env: Environment, book_csv: Path) -> None:
    """What the batch scatters: curves lose their per-process memo and lock, not their values."""
    import pickle

    curve = env.snapshot.curve
    dates = np.array(["2025-01-15", "2030-05-15", "2054-05-15"], dtype="datetime64[D]")
    before = curve.discount_dates(dates)  # fills the memo
    clone = pickle.loads(pickle.dumps(curve))
    assert clone._memo == {} and clone._lock is not curve._lock
    assert np.array_equal(clone.node_logdf, curve.node_logdf) and clone.tenors == curve.tenors
    assert np.array_equal(clone.discount_dates(dates), before)
    context = env.context(env.read_book(book_csv))
    again = pickle.loads(pickle.dumps(context))
    assert np.array_equal(again.ficc_pnl.pnl, context.ficc_pnl.pnl, equal_nan=True)
    assert again.universe.ids == context.universe.ids


# --------------------------------------------------------------------------- the benchmark suite


def _suite() -> Any:
    import importlib
    import sys

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("benchmarks.__main__")


def test_bench_command_writes_one_table_json_and_chart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite()
    batch_rows = [{"accounts": n, "rows": 7 * n, "batch_s": 0.001 * n + 4, "batch_cpu_s": 0.001 * n + 3,
                   "margins_s": 0.0005 * n, "context_s": 4.0, "peak_rss_bytes": 3e8, "accounts_per_s": 100.0,
                   "per_account_loop_s": 0.01 * n, "ratio": 20.0, "case": f"{n} accounts"} for n in (1000, 10000)]
    fakes = {
        "batch": lambda quick: batch_rows,
        "live": lambda quick: [{"operation": "what-if", "n": 10, "p50_us": 100.0, "p99_us": 900.0,
                                "cpu_p99_us": 500.0, "target_p99_us": 1000.0, "ratio": 0.9, "ok": True,
                                "positions": 5, "scenarios": 2747}],
        "margin": lambda quick: [{"metric": "context + margins", "measured": 6.0, "unit": "s", "target": 10.0,
                                  "ratio": 0.6, "note": "the batch"}],
        "dask": lambda quick: (_ for _ in ()).throw(RuntimeError("no cluster today")),
    }
    monkeypatch.setattr(suite, "RUNNERS", {**suite.RUNNERS, **fakes})
    result = CliRunner().invoke(_app(), ["bench", "--quick", "--only", "batch", "--only", "live", "--only", "margin",
                                         "--only", "dask", "--out-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output  # a benchmark failed: reported, the others still ran
    doc = json.loads((tmp_path / "suite.json").read_text())
    assert doc["quick"] is True and set(doc["results"]) == {"margin", "batch", "live", "dask"}
    assert doc["results"]["dask"]["status"] == "error" and "no cluster today" in doc["results"]["dask"]["error"]
    table = {(r["benchmark"], r["case"]): r for r in doc["table"]}
    assert table[("batch", "10,000 accounts (70,000 positions)")]["ratio"] == "20x"
    assert table[("margin", "context + margins")]["met"] == "yes"
    assert table[("live", "what-if (5 positions, 2,747 scenarios)")]["met"] == "yes"
    assert (tmp_path / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ratios against each baseline" in result.output
