"""``xmargin serve``: the HTTP API and the web dashboard (:mod:`xmargin.service`).

With no options: the SQLite ledger ``xmargin-ledger.db``; when it holds no trades yet, the demo
book (``--members``, ``--customers``, ``--seed`` as for ``xmargin demo``) on the demo's date is
recorded in it as opening trades; then ``http://127.0.0.1:8000/`` serves the dashboard and
``/api/v1`` the API.  ``--portfolio FILE`` opens with a portfolio file instead of the demo.

API keys: by default fresh keys (one per clearing member of the book, one admin) are printed
on standard output once the book is loaded; ``--write-keys FILE`` writes them to a new file
(mode 0600) instead, and ``--keys FILE`` serves the keys of such a file (entries with the key
or only its SHA-256), so they survive a restart.  The service keeps only SHA-256 hashes.

``--workers N`` runs N server processes on the one port, sharing the memory-mapped market context
and the ledger (PostgreSQL, or SQLite on one host): see :mod:`xmargin.service.workers`.
``--log-format json`` writes one JSON object per log line.  SIGINT / SIGTERM stop gracefully:
requests in flight and the ledger write in progress finish first.

Run as a module too: ``python -m xmargin.cli.serve_cmd serve --port 8000``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from xmargin.cli.common import DataDirOption, err_console, handle_errors, parse_date

DEFAULT_LEDGER = "sqlite:///xmargin-ledger.db"


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    ledger: Annotated[str, typer.Option("--ledger", help="Ledger database URL: sqlite:///FILE (default) or "
                                        "postgresql://user@host/db.")] = DEFAULT_LEDGER,
    as_of: Annotated[str | None, typer.Option("--as-of", help="As-of date YYYY-MM-DD (default: the ledger's "
                                              "market, else the demo's date).")] = None,
    portfolio: Annotated[Path | None, typer.Option("--portfolio", help="Open with this portfolio file (CSV or "
                                                   "JSON) instead of the demo book.")] = None,
    members: Annotated[int, typer.Option("--members", help="Demo book: clearing members.")] = 5,
    customers: Annotated[int, typer.Option("--customers", help="Demo book: customers per member.")] = 300,
    affiliates: Annotated[int, typer.Option("--affiliates", help="Demo book: affiliates per member.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Demo book: random seed.")] = 20260430,
    xm_share: Annotated[float, typer.Option("--xm-share", help="Demo book: share of customers electing "
                                            "cross-margining.")] = 0.75,
    keys: Annotated[Path | None, typer.Option("--keys", help="Serve the API keys of this JSON file (see "
                                              "xmargin.service.auth).")] = None,
    write_keys: Annotated[Path | None, typer.Option("--write-keys", help="Write the fresh keys to this new file "
                                                    "(mode 0600) instead of printing them.")] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest request body "
                                                "(413 above).")] = 1 << 20,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "warning",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes sharing the port, "
                                         "the market context and the ledger.")] = 1,
    log_format: Annotated[str, typer.Option("--log-format", help="'text' or 'json' (one object per line).")] = "text",
    pricing_timeout: Annotated[float, typer.Option("--pricing-timeout", min=0.001, help="Seconds a request may "
                                                   "spend pricing new instruments (422 beyond).")] = 5.0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=0, help="Ledger entries between "
                                                  "checkpoints (0: none).")] = 10_000,
    follow_poll: Annotated[float, typer.Option("--follow-poll", min=0.001, help="Seconds between looks for "
                                               "what other processes recorded (SQLite; PostgreSQL: the "
                                               "fallback, at least 1 s).")] = 0.05,
    notify: Annotated[bool, typer.Option("--notify/--no-notify", help="PostgreSQL: wake on the ledger's "
                                         "NOTIFY instead of polling.")] = True,
    fast_what_if: Annotated[bool, typer.Option("--fast-what-if/--no-fast-what-if", help="Answer trade and "
                                               "portfolio what-ifs past FastAPI's per-request machinery (the same answers; "
                                               "errors always go to the route).")] = True,
    data_dir: DataDirOption = None,
) -> None:
    """Serve the HTTP API (/api/v1) and the web dashboard (/): what-if margin, trades, member
    and market views, live updates."""
    import uvicorn

    from xmargin.errors import InputError
    from xmargin.portfolio.demo import DemoConfig
    from xmargin.service import KeyStore, ServiceConfig, create_app
    from xmargin.service.app import graceful_server
    from xmargin.service.auth import write_keys as write_keys_file

    if keys is not None and write_keys is not None:
        raise InputError("give --keys (serve existing keys) or --write-keys (issue fresh ones), not both",
                         source="command line", field="--write-keys")
    if write_keys is not None and write_keys.exists():
        raise InputError("already exists: keys are never overwritten", source=write_keys, field="--write-keys")
    if portfolio is not None and not portfolio.is_file():
        raise InputError("portfolio file not found", source=portfolio, field="--portfolio")
    store = KeyStore.load(keys) if keys is not None else None
    config = ServiceConfig(
        ledger=ledger, data_dir=data_dir, as_of=parse_date(as_of) if as_of else None, portfolio=portfolio,
        demo=DemoConfig(members=members, customers_per_member=customers, affiliates_per_member=affiliates,
                        seed=seed, xm_share=xm_share),
        max_body_bytes=max_body_bytes, pricing_timeout_s=pricing_timeout, checkpoint_every=checkpoint_every,
        follow_poll_s=follow_poll, follow_notify=notify, fast_what_if=fast_what_if)
    if log_format not in ("text", "json"):
        raise InputError(f"--log-format {log_format!r}: expected 'text' or 'json'", source="command line",
                         field="--log-format")
    failures: list[BaseException] = []
    server: dict[str, Any] = {}
    json_logs = log_format == "json"
    if json_logs:
        import logging

        from xmargin.service.logs import configure

        configure("info")
        logger = logging.getLogger("xmargin.serve")

    def log(text: str) -> None:
        if json_logs:
            logger.info(text)
        else:
            err_console.print(f"[dim]xmargin serve:[/] {text}", highlight=False, soft_wrap=True)

    def issue(issued: list[dict[str, str]]) -> None:
        if write_keys is not None:
            write_keys_file(write_keys, issued)
            log(f"wrote {len(issued)} API keys ({', '.join(k['name'] for k in issued)}) to {write_keys} (mode 0600)")
            return
        print("API keys (send as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; shown once, stored hashed):")
        for k in issued:
            print(f"  {k['name']:<8} {k['scope']:<6} {k['key']}")
        sys.stdout.flush()

    def ready(state: Any) -> None:
        url_host = f"[{host}]" if ":" in host else host
        servers = getattr(server["uvicorn"], "servers", None) or []
        actual = servers[0].sockets[0].getsockname()[1] if servers and servers[0].sockets else port
        log(f"ready: {len(state.engine.accounts):,} accounts of {len(state.members())} members as of {state.as_of}, "
            f"ledger {state.session.ledger!r}; dashboard http://{url_host}:{actual}/")

    def failed(exc: BaseException) -> None:
        failures.append(exc)
        server["uvicorn"].should_exit = True

    if workers > 1:
        _serve_workers(config, store, issue, log, host=host, port=port, workers=workers, log_level=log_level,
                       access_log=access_log, json_logs=json_logs)
        return
    app = create_app(config, keys=store, issue_keys=issue, on_ready=ready, on_failure=failed, log=log)
    extra: dict[str, Any] = {}
    if json_logs:
        from xmargin.service.logs import uvicorn_log_config

        extra["log_config"] = uvicorn_log_config(log_level)
    ucfg = uvicorn.Config(app, host=host, port=port, workers=1, log_level=log_level, access_log=access_log,
                          timeout_graceful_shutdown=10, lifespan="on", **extra)
    server["uvicorn"] = graceful_server(app, ucfg)  # SIGTERM: finish in-flight requests, exit 0
    server["uvicorn"].run()
    if failures:
        exc = failures[0]
        from xmargin.errors import XMarginError

        if isinstance(exc, XMarginError):
            raise exc
        raise InputError(f"could not load: {type(exc).__name__}: {exc}", source="xmargin serve")
    if not server["uvicorn"].started:
        raise InputError(f"could not listen on {host}:{port}", source="xmargin serve", field="--port")


def _serve_workers(config: Any, store: Any, issue: Any, log: Any, *, host: str, port: int, workers: int,
                   log_level: str, access_log: bool, json_logs: bool) -> None:
    """Prepare the ledger and the keys once, then run the worker supervisor."""
    from xmargin.errors import InputError
    from xmargin.service.auth import KeyStore
    from xmargin.service.loading import open_session
    from xmargin.service.workers import WorkerSpec, serve_workers

    session = open_session(config, progress=log)
    eng = session.engine
    members = sorted({eng.account(a).member for a in eng.accounts})
    n_accounts, as_of, shown = len(eng.accounts), session.market.snapshot.as_of, repr(session.ledger)
    if session.ledger is not None:
        session.ledger.close()
    del session, eng
    if store is None:
        store, issued = KeyStore.generate(members)
        issue(issued)
    spec = WorkerSpec(config, store, log_level=log_level, access_log=access_log, json_logs=json_logs)
    url_host = f"[{host}]" if ":" in host else host

    def listening(actual: int) -> None:
        log(f"ready: {workers} workers, {n_accounts:,} accounts of {len(members)} members as of {as_of}, "
            f"ledger {shown}; dashboard http://{url_host}:{actual}/")

    status = serve_workers(spec, host=host, port=port, workers=workers, say=log, on_listening=listening)
    if status:
        raise InputError("the workers could not start (see above)", source="xmargin serve", field="--workers")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)


def _standalone() -> typer.Typer:
    app = typer.Typer(name="xmargin", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _main() -> None:
        """xmargin (service commands)."""

    register(app)
    return app


if __name__ == "__main__":  # pragma: no cover - exercised by the service tests in a subprocess
    _standalone()()
