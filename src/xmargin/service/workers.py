"""``xmargin serve --workers N``: N server processes on one port, one market context, one ledger.

The supervisor (the process the user started):

1. opens the ledger once (:func:`~xmargin.service.loading.open_session`): records the market
   and the opening book when the ledger has none, and leaves a checkpoint, so every worker
   starts from it and replays only the tail;
2. issues the API keys (or loads ``--keys``) -- every worker accepts the same keys;
3. binds the listening socket and starts N worker processes (``spawn``) that share it: the
   kernel hands each new connection to one of them;
4. restarts a worker that dies (``kill -9`` included): the new one resumes from the checkpoint
   and the ledger's tail, like any restart; on SIGINT / SIGTERM it asks every worker to stop
   (each finishes its requests in flight and its ledger write) and waits for them.

Sharing: the market context is loaded by each worker from the on-disk context cache
(:mod:`xmargin.diskcache`), whose matrices are memory-mapped read-only: the N processes map one
copy in the page cache.  The ledger is the shared state: PostgreSQL for processes anywhere,
SQLite (WAL) for processes on one host.  Each worker follows what the others record
(:mod:`xmargin.service.writer`), so every worker's figures and ``/stream`` are the ledger's, and
one ledger-wide writer lock orders the appends, so an account's trades are applied in one
order everywhere.  ``/metrics`` adds up every worker (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xmargin.service.auth import KeyStore
from xmargin.service.loading import ServiceConfig


@dataclass
class WorkerSpec:
    """What each worker process needs (picklable: it crosses ``spawn``)."""

    config: ServiceConfig
    keys: KeyStore
    log_level: str = "warning"
    access_log: bool = False
    json_logs: bool = False
    graceful_s: float = 10.0
    env: dict[str, str] = field(default_factory=dict)


def _worker(spec: WorkerSpec, sock: socket.socket, ready: Any, index: int) -> None:  # pragma: no cover - subprocess
    os.environ.update(spec.env)
    import uvicorn

    from xmargin.service.app import create_app, graceful_server

    if spec.json_logs:
        from xmargin.service.logs import configure

        configure(spec.log_level)

    def on_ready(state: Any) -> None:
        ready.put(("ready", index, os.getpid(), len(state.engine.accounts), len(state.members())))

    def on_failure(exc: BaseException) -> None:
        ready.put(("failed", index, os.getpid(), f"{type(exc).__name__}: {exc}", 0))
        server.should_exit = True

    app = create_app(spec.config, keys=spec.keys, on_ready=on_ready, on_failure=on_failure)
    cfg = uvicorn.Config(app, log_level=spec.log_level, access_log=spec.access_log, lifespan="on",
                         timeout_graceful_shutdown=int(spec.graceful_s),
                         log_config=None if spec.json_logs else uvicorn.config.LOGGING_CONFIG)

    server = graceful_server(app, cfg)
    server.run(sockets=[sock])


def serve_workers(
    spec: WorkerSpec,
    *,
    host: str,
    port: int,
    workers: int,
    say: Callable[[str], None],
    on_listening: Callable[[int], None],
    ready_timeout: float = 600.0,
) -> int:
    """Run the supervisor (see the module docstring); returns an exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="xmargin-metrics-")
    # inherited by the workers before they import prometheus_client (it reads it on import)
    saved_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    actual = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    procs: dict[int, Any] = {}
    stopping = False

    def start(i: int) -> None:
        p = ctx.Process(target=_worker, args=(spec, sock, ready, i), name=f"xmargin-worker-{i}", daemon=False)
        p.start()
        procs[i] = p

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(workers):
            start(i)
        waiting = set(range(workers))
        deadline = time.monotonic() + ready_timeout
        while waiting and not stopping:
            try:
                kind, i, pid, a, b = ready.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - queue.Empty
                if time.monotonic() > deadline:
                    say(f"workers not ready within {ready_timeout:.0f} s")
                    return 2
                if any(not procs[i].is_alive() for i in waiting):
                    say("a worker exited while loading")
                    return 2
                continue
            if kind == "failed":
                say(f"worker {i} (pid {pid}) could not load: {a}")
                return 2
            waiting.discard(i)
            say(f"worker {i} (pid {pid}) ready: {a:,} accounts of {b} members")
        if stopping:
            return 0
        on_listening(actual)
        while not stopping:
            time.sleep(0.2)
            for i, p in list(procs.items()):
                if not p.is_alive() and not stopping:
                    _mark_dead(p.pid)
                    say(f"worker {i} (pid {p.pid}) exited with {p.exitcode}: starting a new one")
                    start(i)
        return 0
    finally:
        for p in procs.values():
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs.values():
            p.join(timeout=spec.graceful_s + 5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for s, h in old.items():
            signal.signal(s, h)
        if saved_env is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved_env
        sock.close()
        for name in os.listdir(metrics_dir):
            os.unlink(os.path.join(metrics_dir, name))
        os.rmdir(metrics_dir)


def _mark_dead(pid: int | None) -> None:
    if pid is None:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except (ImportError, OSError):  # pragma: no cover
        pass
