"""End-of-day batch on Dask: accounts partitioned over workers, the context shared once.

The heavy, account-independent step (:func:`xmargin.margin.context.build_context`: scenario
sets, the instrument scenario P&L matrices, SPAN calibration, per-instrument attributes) runs
once, on the client.  The context is scattered to every worker with ``broadcast=True`` (one
copy per worker, a few MB: the two ``N x S`` P&L matrices dominate).  The book's position
rows are cut into contiguous partitions of accounts; each partition is a task that margins its
accounts with :func:`xmargin.margin.calculator.margins_for_positions` in chunks, exactly as
:func:`~xmargin.margin.calculator.compute_margins` does in one process.  Every figure of an
account depends on its own row only, so the gathered result is the single-process result to
the last bit, in the same account order, and the document is
:func:`xmargin.workflow.margin_payload`'s.

Failures: a task that raises is retried (``retries``, Dask's own mechanism, possibly on
another worker).  A partition still failing after its retries makes the whole batch fail
with :class:`BatchIncompleteError`, which names every missing account; nothing partial is
returned.  For tests and drills, ``XMARGIN_BATCH_FAIL=2,5`` (partition numbers, 0-based)
makes those partitions raise on the worker on every attempt.

Workers need ``xmargin`` importable (a LocalCluster inherits this interpreter; on a real
cluster install the same version on every worker).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.errors import InputError, XMarginError
from xmargin.margin.calculator import AccountMargins, margins_for_positions
from xmargin.margin.context import MarginContext
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.workflow import Environment, margin_payload

FAIL_ENV = "XMARGIN_BATCH_FAIL"
DEFAULT_RETRIES = 2
WAIT_FOR_WORKERS_S = 60
CHUNK_SIZE = 2048
Progress = Callable[[str, int, int], None]


class BatchIncompleteError(XMarginError):
    """Some partitions failed after their retries: no result, and which accounts are missing.

    ``missing``: every account without a margin, in book order; ``failures``: partition ->
    its last error; ``ranges``: partition -> (first, last) account of the partition.
    """

    def __init__(self, missing: Sequence[str], failures: dict[int, str], ranges: dict[int, tuple[str, str]],
                 total: int) -> None:
        self.missing = tuple(missing)
        self.failures = dict(failures)
        self.ranges = dict(ranges)
        if len(self.missing) <= 50:
            names = ", ".join(self.missing)
        else:
            names = "; ".join(f"partition {k}: {a} .. {b}" for k, (a, b) in self.ranges.items())
        first = next(iter(self.failures.values()), "")
        super().__init__(
            f"batch incomplete, no result: {len(self.failures)} partition(s) failed after retries "
            f"({sorted(self.failures)}; first error: {first}); {len(self.missing)} of {total} accounts "
            f"have no margin: {names}"
        )


class InjectedFailure(RuntimeError):
    """Raised on a worker for a partition named in ``XMARGIN_BATCH_FAIL``."""


@dataclass(frozen=True)
class Partition:
    """Accounts ``[start, stop)`` of the book: task number ``index``."""

    index: int
    start: int
    stop: int

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)


def partitions(n_accounts: int, partition_size: int) -> list[Partition]:
    """Contiguous partitions of at most ``partition_size`` accounts, in book order."""
    if partition_size < 1:
        raise InputError("partition size must be at least 1", source="command line", field="--partition-size")
    return [Partition(k, start, min(start + partition_size, n_accounts))
            for k, start in enumerate(range(0, n_accounts, partition_size))]


def default_partition_size(n_accounts: int, n_workers: int) -> int:
    """About eight partitions per worker (load balance when a worker is slowed down, a progress
    bar that moves), each of 256 to 20,000 accounts."""
    return int(min(20_000, max(256, math.ceil(n_accounts / (8 * max(n_workers, 1))))))


def injected_failures(spec: str | None = None) -> frozenset[int]:
    """Partitions to fail on purpose, from ``XMARGIN_BATCH_FAIL`` (comma-separated numbers)."""
    text = os.environ.get(FAIL_ENV, "") if spec is None else spec
    out = set()
    for part in text.split(","):
        if part.strip():
            try:
                out.add(int(part))
            except ValueError:
                raise InputError(f"'{part}' is not a partition number", source=FAIL_ENV) from None
    return frozenset(out)


def margin_partition(
    context: MarginContext,
    q: sp.csr_matrix,
    xm: npt.NDArray[np.bool_],
    index: int = 0,
    *,
    fail: bool = False,
    hook: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> AccountMargins:
    """The task run on a worker: margins of the accounts whose rows are ``q``."""
    if hook is not None:
        hook(index)
    if fail:
        raise InjectedFailure(f"partition {index}: failure injected by {FAIL_ENV}")
    n = q.shape[0]
    out = AccountMargins.empty(n)
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        out.assign(rows, margins_for_positions(context, q[rows], xm[rows]))
    return out


# --------------------------------------------------------------------------- reading


def read_book(env: Environment, path: str | Path) -> Book:
    """One portfolio file: CSV/JSON through the environment, Parquet through its reader."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        from xmargin.portfolio.parquet import read_parquet

        return read_parquet(path, as_of=env.snapshot.as_of, master=env.master, eligibility=env.eligibility)
    return env.read_book(path)


def combine_books(books: Sequence[Book]) -> Book:
    """Several files as one book: accounts in order of first appearance, positions added.

    An account may be split over files (shards of one book) if every file declares it the
    same way (member, type, election); otherwise it is an input error.
    """
    if len(books) == 1:
        return books[0]
    accounts: list[Account] = []
    index: dict[str, int] = {}
    holdings = []
    for book in books:
        for acc in book.accounts:
            k = index.get(acc.account)
            if k is None:
                index[acc.account] = len(accounts)
                accounts.append(acc)
            elif (accounts[k].member, accounts[k].account_type, accounts[k].cross_margin) != (
                acc.member, acc.account_type, acc.cross_margin
            ):
                raise InputError(
                    f"account {acc.account} is declared as member {accounts[k].member}, {accounts[k].account_type}, "
                    f"cross_margin={accounts[k].cross_margin} in an earlier file; this file disagrees",
                    source=book.source, field="member",
                )
        coo = book.positions.tocoo()
        target = np.array([index[a.account] for a in book.accounts], dtype=np.int64)
        order = np.lexsort((coo.col, coo.row))  # file order of accounts, then universe order
        holdings += [(int(target[coo.row[j]]), book.universe.instruments[coo.col[j]], float(coo.data[j]))
                     for j in order]
    universe = books[0].universe
    for book in books[1:]:
        universe = universe.extended(book.universe.instruments)
    warnings = [w for b in books for w in b.warnings]
    return build_book(accounts, holdings, universe=universe, source=", ".join(b.source for b in books),
                      warnings=warnings)


def read_books(env: Environment, paths: Sequence[str | Path]) -> Book:
    if not paths:
        raise InputError("no portfolio file given", source="command line", field="PORTFOLIO")
    return combine_books([read_book(env, p) for p in paths])


# --------------------------------------------------------------------------- cluster


def _distributed(*names: str) -> tuple[Any, ...]:
    try:
        import distributed
    except ImportError:
        raise XMarginError("the Dask batch needs dask.distributed: pip install 'dask[distributed]' "
                           "(the xmargin 'distributed' extra)") from None
    return tuple(getattr(distributed, n) for n in names)


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, *,
                memory_limit: str | float | None = "auto") -> Iterator[Any]:
    """A client on the scheduler at ``scheduler``, or on a new LocalCluster of ``workers``
    single-threaded processes (default: one per CPU)."""
    Client, LocalCluster = _distributed("Client", "LocalCluster")

    if scheduler is not None:
        if workers is not None:
            raise InputError("give either --scheduler or --workers, not both", source="command line",
                             field="--workers")
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise XMarginError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    if n < 1:
        raise InputError("--workers must be at least 1", source="command line", field="--workers")
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR, memory_limit=memory_limit) as cluster, Client(cluster) as client:
        yield client


def n_workers(client: Any) -> int:
    return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))


# --------------------------------------------------------------------------- the batch


@dataclass
class BatchStats:
    """What the run moved and did (for logs and benchmarks)."""

    accounts: int = 0
    partitions: int = 0
    workers: int = 0
    context_bytes: int = 0


def distributed_margins(
    client: Any,
    context: MarginContext,
    book: Book,
    *,
    partition_size: int | None = None,
    retries: int = DEFAULT_RETRIES,
    progress: Progress | None = None,
    hook: Callable[[int], None] | None = None,
    fail: frozenset[int] | None = None,
    stats: BatchStats | None = None,
) -> AccountMargins:
    """Margins of every account of ``book``, computed on the cluster behind ``client``.

    Raises :class:`BatchIncompleteError` when a partition fails after ``retries`` retries.
    ``hook(partition)`` runs on the worker before each attempt (fault drills in tests).
    """
    (as_completed,) = _distributed("as_completed")

    if book.universe.ids != context.universe.ids:
        raise ValueError("the book's universe differs from the context's; build the context from the book")
    n = book.size
    try:
        client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
    except TimeoutError:
        raise XMarginError(f"no Dask worker joined the scheduler within {WAIT_FOR_WORKERS_S} s") from None
    workers = n_workers(client)
    parts = partitions(n, partition_size or default_partition_size(n, workers))
    fail = injected_failures() if fail is None else fail
    xm = np.array([acc.cross_margin for acc in book.accounts], dtype=bool)
    shared = client.scatter(context, broadcast=True, hash=False)
    pieces = client.scatter([(book.positions[p.rows], xm[p.rows]) for p in parts], hash=False)
    futures = {
        client.submit(_run, shared, piece, p.index, fail=p.index in fail, hook=hook, retries=retries,
                      pure=False, key=f"xmargin-partition-{p.index}-{os.urandom(4).hex()}"): p
        for p, piece in zip(parts, pieces, strict=True)
    }
    if stats is not None:
        stats.accounts, stats.partitions, stats.workers = n, len(parts), workers
        stats.context_bytes = _nbytes(context)
    out = AccountMargins.empty(n)
    failures: dict[int, str] = {}
    done = 0
    if progress:
        progress("partitions", 0, len(parts))
    for future in as_completed(futures):
        p = futures[future]
        if future.status == "finished":
            out.assign(p.rows, future.result())
        else:
            try:
                exc = future.exception()
                failures[p.index] = f"{type(exc).__name__}: {exc}"
            except CancelledError:
                failures[p.index] = f"cancelled ({future.status}): the cluster dropped the task"
        future.release()
        done += 1
        if progress:
            progress("partitions", done, len(parts))
    if failures:
        bad = [p for p in parts if p.index in failures]
        missing = [book.accounts[i].account for p in bad for i in range(p.start, p.stop)]
        ranges = {p.index: (book.accounts[p.start].account, book.accounts[p.stop - 1].account) for p in bad}
        raise BatchIncompleteError(missing, dict(sorted(failures.items())), ranges, n)
    return out


def _run(shared: MarginContext, piece: tuple[sp.csr_matrix, npt.NDArray[np.bool_]], index: int, *,
         fail: bool, hook: Callable[[int], None] | None) -> AccountMargins:
    q, xm = piece
    return margin_partition(shared, q, xm, index, fail=fail, hook=hook)


def _nbytes(obj: Any) -> int:
    import pickle

    return len(pickle.dumps(obj, protocol=5))


def batch_job(
    env: Environment,
    portfolios: Sequence[str | Path],
    *,
    client: Any | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    partition_size: int | None = None,
    retries: int = DEFAULT_RETRIES,
    explain: bool = False,
    progress: Progress | None = None,
    hook: Callable[[int], None] | None = None,
    stats: BatchStats | None = None,
) -> dict[str, Any]:
    """Read the portfolios, margin every account on Dask, return the ``xmargin margin`` document.

    ``client``: an existing Dask client; else one on ``scheduler`` (an address) or on a new
    LocalCluster of ``workers`` processes.
    """
    book = read_books(env, portfolios)
    if progress:
        progress("pricing scenarios", 0, 1)
    context = env.context(book)
    if progress:
        progress("pricing scenarios", 1, 1)
    kwargs: dict[str, Any] = dict(partition_size=partition_size, retries=retries, progress=progress, hook=hook,
                                  stats=stats)
    if client is not None:
        margins = distributed_margins(client, context, book, **kwargs)
    else:
        with dask_client(scheduler, workers) as own:
            margins = distributed_margins(own, context, book, **kwargs)
    return margin_payload(context, book, margins, explain=explain)
