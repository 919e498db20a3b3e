"""``xmargin ingest``, ``xmargin watch`` and ``xmargin ledger verify|replay|export|reconcile``.

* ``ingest TRADES_FILE``: validate the whole file (CSV or JSON lines, see
  :mod:`xmargin.engine.trades`), then record each row with the margin result it causes (and
  any margin call) in the ledger; ids already recorded are skipped, so a run can be repeated
  after a crash.  Nothing is recorded when any row is bad.
* ``watch [FILE|-]``: the same, row by row as lines arrive (default: standard input), with a
  live table of every account's margin.  A bad row is reported and skipped.
* ``ledger verify``: check the hash chain; exit 1 naming the first bad entry.
* ``ledger replay``: rebuild the state from the log; exit 1 unless the rebuilt margins are
  identical to the recorded ones.
* ``ledger export``: the log as JSON lines (payloads verbatim: every hash can be rechecked).
* ``ledger reconcile``: FICC-side vs CME-side views of each cross-margining account.

``--ledger URL``: ``sqlite:///xmargin-ledger.db`` (default) or ``postgresql://user@host/db``.
Run as a module too: ``python -m xmargin.cli.ledger_cmd ingest FILE``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from xmargin.cli.common import (
    AsOfOption,
    DataDirOption,
    FormatOption,
    OutputFormat,
    console,
    emit_json,
    err_console,
    fmt,
    handle_errors,
    parse_date,
)

LedgerOption = Annotated[
    str,
    typer.Option("--ledger", help="Ledger database URL: sqlite:///FILE (default) or postgresql://user@host/db."),
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Margin parameters (TOML: [ficc] [cme] [cross]).")]
EligibilityOption = Annotated[
    Path | None, typer.Option("--eligibility", help="Cross-margin eligibility lists (TOML), default: packaged.")
]
HaircutsOption = Annotated[
    Path | None, typer.Option("--haircuts", help="Collateral haircut schedule (TOML: [haircuts] table, cash).")
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Rows recorded per database transaction.")]

DEFAULT_LEDGER = "sqlite:///xmargin-ledger.db"

ledger_app = typer.Typer(help="The tamper-evident event log: verify, replay, export, reconcile.",
                         no_args_is_help=True)


@ledger_app.callback()
def _ledger() -> None:
    """The tamper-evident event log: verify, replay, export, reconcile."""


def _session(ledger_url: str | None, as_of: str | None, data_dir: Path | None, config: Path | None,
             eligibility: Path | None, haircuts: Path | None):  # type: ignore[no-untyped-def]
    from xmargin.clearing import HaircutSchedule, LedgerSession, load_market
    from xmargin.cli.common import resolve_as_of
    from xmargin.ledger import Ledger

    ledger = Ledger(ledger_url) if ledger_url is not None else None
    session = LedgerSession.open(ledger, data_dir=data_dir)
    current = session.state.market
    if current is None or as_of is not None or config is not None or eligibility is not None or haircuts is not None:
        day = resolve_as_of(as_of, data_dir) if (as_of is not None or current is None) else current.snapshot.as_of
        schedule = HaircutSchedule.load(haircuts) if haircuts is not None else (
            current.schedule if current is not None else HaircutSchedule())
        market = load_market(day, data_dir=data_dir, config=config, eligibility=eligibility, haircuts=schedule)
        if current is not None and config is None:  # keep the ledger's model settings unless told otherwise
            market = type(market)(market.snapshot, market.master, current.params,
                                  current.eligibility if eligibility is None else market.eligibility, schedule)
        if session.use_market(market):
            err_console.print(f"recorded market snapshot {day} in the ledger", highlight=False)
    return session


def _clean(value: Any) -> Any:
    """JSON-safe: NaN (a figure that cannot be computed) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _margin_table(session: Any, accounts: list[str] | None = None, title: str = "Margin (dollars)") -> Table:
    eng = session.engine
    rows = []
    for name in accounts if accounts is not None else eng.accounts:
        m = eng.margin(name)
        acc = eng.account(name)
        st = session.status(name)
        rows.append([name, acc.member, "yes" if acc.cross_margin else "no", len(eng.positions(name)),
                     m["ficc_requirement"], m["cme_requirement"], m["total_before"], m["total_after"],
                     m["applied_reduction_factor"], st["collateral_value"], st["call"], st["excess"]])
    t = Table(title=title, header_style="bold cyan")
    for c in ("account", "member", "XM", "positions", "FICC req", "CME req", "before", "after", "reduction",
              "collateral", "call due", "excess"):
        t.add_column(c, justify="left" if c in ("account", "member", "XM") else "right")
    for r in rows:
        t.add_row(*[fmt(v, 4 if i == 8 else 2) if not isinstance(v, str) else v for i, v in enumerate(r)])
    return t


@handle_errors
def ingest(
    trades_file: Annotated[Path, typer.Argument(help="Trades file: CSV (header) or JSON lines.")],
    ledger: LedgerOption = DEFAULT_LEDGER,
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    haircuts: HaircutsOption = None,
    batch_size: BatchOption = 100,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Record a trades file in the ledger with the margin results and calls it causes."""
    from xmargin.engine.trades import read_events

    if as_of is not None:
        parse_date(as_of)
    session = _session(ledger, as_of, data_dir, config, eligibility, haircuts)
    rows = read_events(trades_file, as_of=session.market.snapshot.as_of, master=session.market.master)
    report = session.ingest(rows, src=str(trades_file), batch_size=batch_size)
    session.record_positions(report.accounts)
    touched = [a for a in session.engine.accounts if a in report.accounts]
    if format is OutputFormat.json:
        emit_json(_clean({
            "recorded": report.recorded,
            "duplicates": [{"row": n, "id": i} for n, i in report.duplicates],
            "entries": report.entries,
            "calls": report.calls,
            "accounts": {a: session.engine.margin(a) | {"collateral": session.status(a)} for a in touched},
            "head": list(session.ledger.head()),
        }))
        return
    console.print(f"recorded {report.recorded} row(s) from {trades_file} ({report.entries} ledger entries); "
                  f"{len(report.duplicates)} already in the ledger", highlight=False)
    for call in report.calls:
        if call["kind"] == "margin_call":
            console.print(f"margin call: {call['account']} owes {call['amount_due']:,.2f}", highlight=False)
    if touched:
        console.print(_margin_table(session, touched, title=f"Accounts touched (as of {session.market.snapshot.as_of})"))


def _lines(source: str) -> Iterator[str]:
    if source == "-":
        yield from sys.stdin
        return
    try:
        fh = Path(source).open(encoding="utf-8", newline="")
    except OSError as exc:
        from xmargin.errors import InputError

        raise InputError(f"cannot read trades: {exc.strerror}", source=source) from None
    with fh:
        yield from fh


@handle_errors
def watch(
    source: Annotated[str, typer.Argument(help="Trades file, or - for standard input (default).")] = "-",
    ledger: LedgerOption = DEFAULT_LEDGER,
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    haircuts: HaircutsOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute only; record nothing.")] = False,
) -> None:
    """Margin every account as trades stream in (one row per line), recording each in the ledger."""
    from xmargin.engine.trades import parse_row, stream_rows
    from xmargin.errors import XMarginError

    session = _session(None if dry_run else ledger, as_of, data_dir, config, eligibility, haircuts)
    label = "standard input" if source == "-" else source
    rejected = 0
    title = f"Live margin as of {session.market.snapshot.as_of} (dollars)"
    with Live(_margin_table(session, title=title), console=console, refresh_per_second=4) as live:
        for n, row in stream_rows(_lines(source), label):
            try:
                if isinstance(row, XMarginError):
                    raise row
                ev, inst = parse_row(row, as_of=session.market.snapshot.as_of, master=session.market.master,
                                     src=label, n=n)
                session.ingest([(n, ev, inst)], src=label, batch_size=1)
            except XMarginError as exc:
                rejected += 1
                err_console.print(f"[bold red]rejected:[/] {exc}", highlight=False, soft_wrap=True)
                continue
            live.update(_margin_table(session, title=title))
    if rejected:
        err_console.print(f"{rejected} row(s) rejected", highlight=False)
        raise typer.Exit(code=2)


@ledger_app.command("verify")
@handle_errors
def verify(
    ledger: LedgerOption = DEFAULT_LEDGER,
    file: Annotated[Path | None, typer.Option("--file", help="Check a JSON-lines export instead.")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Check the whole hash chain; exit 1 naming the first altered, missing or reordered entry."""
    from xmargin.ledger import Ledger, verify_export, verify_ledger

    if file is not None:
        report = verify_export(file)
    else:
        with Ledger(ledger, create=False) as lg:
            report = verify_ledger(lg)
    if format is OutputFormat.json:
        emit_json({"ok": report.ok, "entries": report.entries, "last_seq": report.last_seq,
                   "last_hash": report.last_hash, "problem": report.problem, "seq": report.seq,
                   "message": report.message})
    elif report.ok:
        console.print(f"ok: {report.message}; head {report.last_seq} {report.last_hash}", highlight=False)
    else:
        console.print(f"[bold red]FAILED[/] at entry {report.seq} ({report.problem}): {report.message}",
                      highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(code=1)


@ledger_app.command("replay")
@handle_errors
def replay_cmd(
    ledger: LedgerOption = DEFAULT_LEDGER,
    data_dir: DataDirOption = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Rebuild the engine from the log; exit 1 unless its margins equal the recorded ones exactly."""
    from xmargin.clearing import LedgerSession
    from xmargin.ledger import Ledger

    with Ledger(ledger, create=False) as lg:
        session = LedgerSession.open(lg, data_dir=data_dir)
    st = session.state
    if st.engine is None:
        console.print("the ledger holds no market snapshot: nothing to replay")
        return
    mismatches = st.mismatches
    if format is OutputFormat.json:
        emit_json(_clean({
            "entries": st.entries,
            "as_of": st.market.snapshot.as_of.isoformat() if st.market else None,
            "identical": not mismatches,
            "mismatches": [{"account": a, "field": f, "replayed": x, "recorded": y} for a, f, x, y in mismatches],
            "accounts": {a: st.engine.margin(a) | {"positions": st.engine.positions(a),
                                                    "collateral": session.status(a)} for a in st.engine.accounts},
        }))
    else:
        console.print(_margin_table(session, title=f"Replayed {st.entries} entries (as of "
                                                   f"{st.market.snapshot.as_of if st.market else '-'})"))
        if mismatches:
            for a, f, x, y in mismatches[:20]:
                console.print(f"[bold red]mismatch[/] {a} {f}: replayed {x!r}, recorded {y!r}", highlight=False)
        else:
            console.print(f"replayed margins identical to the recorded ones for {len(st.recorded)} account(s)",
                          highlight=False)
    if mismatches:
        raise typer.Exit(code=1)


@ledger_app.command("export")
@handle_errors
def export(
    ledger: LedgerOption = DEFAULT_LEDGER,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
) -> None:
    """The whole log as JSON lines (one entry per line, payload verbatim)."""
    import json

    from xmargin.ledger import Ledger

    with Ledger(ledger, create=False) as lg:
        out = output.open("w", encoding="utf-8") if output is not None else sys.stdout
        try:
            n = 0
            for e in lg.entries():
                out.write(json.dumps(e.export(), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
                n += 1
        finally:
            if output is not None:
                out.close()
    if output is not None:
        err_console.print(f"exported {n} entries to {output}", highlight=False)


@ledger_app.command("reconcile")
@handle_errors
def reconcile_cmd(
    ledger: LedgerOption = DEFAULT_LEDGER,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Compare the latest FICC-side and CME-side views of each cross-margining account; exit 1 on any mismatch."""
    from xmargin.clearing import reconcile, views_from_ledger
    from xmargin.ledger import Ledger

    with Ledger(ledger, create=False) as lg:
        views = views_from_ledger(lg)
    mismatches = reconcile(views.get("FICC", {}), views.get("CME", {}))
    if format is OutputFormat.json:
        emit_json({"accounts": sorted(set(views.get("FICC", {})) | set(views.get("CME", {}))),
                   "mismatches": [{"account": m.account, "field": m.field, "ficc": m.ficc, "cme": m.cme}
                                  for m in mismatches]})
    elif mismatches:
        t = Table(title="Reconciliation: FICC vs CME", header_style="bold cyan")
        for c in ("account", "field", "FICC", "CME"):
            t.add_column(c)
        for m in mismatches:
            t.add_row(m.account, m.field, fmt(m.ficc), fmt(m.cme))
        console.print(t)
    else:
        n = len(set(views.get("FICC", {})) | set(views.get("CME", {})))
        console.print(f"reconciled {n} account(s): FICC and CME views agree", highlight=False)
    if mismatches:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``ingest``, ``watch`` and the ``ledger`` sub-app to ``app``."""
    app.command("ingest")(ingest)
    app.command("watch")(watch)
    app.add_typer(ledger_app, name="ledger")


def _standalone() -> typer.Typer:
    app = typer.Typer(name="xmargin", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    register(app)
    return app


if __name__ == "__main__":  # pragma: no cover - exercised by the crash tests in a subprocess
    _standalone()()
