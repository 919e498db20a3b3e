"""``xmargin reconcile-calls`` and ``xmargin cme-params``: the clearinghouses' own numbers and
files, and the ``--cme-params`` notes of ``xmargin margin``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from xmargin.cli.common import (
    AsOfOption,
    DataDirOption,
    FormatOption,
    OutputFormat,
    PrevBusinessDayOption,
    console,
    emit_json,
    err_console,
    handle_errors,
    resolve_as_of,
    table,
)
from xmargin.errors import InputError

cme_params_app = typer.Typer(help="CME SPAN risk parameter files (PA2, SPAN XML).", no_args_is_help=True)


class SpanFormat(StrEnum):
    pa2 = "pa2"
    xml = "xml"


def print_cme_notes(payload: dict[str, Any], *, explain: bool) -> None:
    """CME initial beside maintenance, what a parameter file lacks, and the SPAN steps."""
    t = payload["totals"]
    console.print(f"CME maintenance {t['cme_standalone']:,.2f}, initial {t.get('cme_initial', 0.0):,.2f} "
                  "(stand-alone); savings are computed on maintenance.", highlight=False)
    info = payload["model"].get("cme_params")
    if info:
        console.print(f"CME parameters: {escape(info['source'])} ({info['format']}, {info['business_date']})",
                      highlight=False)
        for inst, why in info["missing"].items():
            err_console.print(f"[yellow]{escape(inst)}:[/] {escape(why)}", highlight=False, soft_wrap=True)
    if not explain:
        return
    for r in payload["accounts"]:
        ex = r.get("explain", {}).get("cme_span")
        if not ex:
            continue
        for c in ex["combined_commodities"]:
            console.print(
                f"[bold]{escape(r['account'])} SPAN {escape(c['combined_commodity'])}[/]: scan {c['scan_risk']:,.2f} "
                f"(scenario {c['worst_scenario']}), intra {c['intra_spread_charge']:,.2f}, spot {c['spot_charge']:,.2f}, "
                f"inter credit -{c['inter_spread_credit']:,.2f} = maintenance {c['maintenance']:,.2f}; "
                f"initial x{c['initial_ratio']:.3f} = {c['initial']:,.2f}", highlight=False)
        for s in ex["spreads"]:
            amount = s.get("credit", s.get("charge", 0.0))
            console.print(f"    {s['step']} {escape(str(s.get('cc', '')))} priority {s.get('priority', '-')} "
                          f"{escape(', '.join(s.get('legs', [])))} spreads {s.get('spreads', 0):g}: {amount:,.2f}",
                          highlight=False)


@cme_params_app.command("export")
@handle_errors
def export(
    out: Annotated[Path, typer.Argument(help="File to write.")],
    portfolio: Annotated[Path | None, typer.Option("--portfolio", help="Also carry every futures contract of this book.")] = None,
    file_format: Annotated[SpanFormat, typer.Option("--file-format", help="pa2 or xml.")] = SpanFormat.xml,
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    config: Annotated[Path | None, typer.Option("--config", help="Margin parameters (TOML).")] = None,
) -> None:
    """Write the built-in calibrated SPAN parameters as a CME SPAN parameter file."""
    from xmargin.formats.pa2_write import write_pa2
    from xmargin.formats.span_export import span_from_context
    from xmargin.formats.spn_xml import write_spn_xml
    from xmargin.portfolio.book import build_book
    from xmargin.workflow import Environment

    env = Environment.load(resolve_as_of(as_of, data_dir), data_dir=data_dir,
                           previous_business_day=previous_business_day, config=config)
    book = env.read_book(portfolio) if portfolio else build_book([], [])
    params = span_from_context(env.context(book))
    try:
        text = write_pa2(params) if file_format is SpanFormat.pa2 else write_spn_xml(params)
    except ValueError as exc:
        raise InputError(f"the calibrated parameters do not fit the PA2 layout: {exc}", source=out) from None
    out.write_text(text)
    console.print(f"wrote {escape(str(out))}: {len(params.contracts)} contracts, {len(params.commodities)} combined "
                  f"commodities, {len(params.inter_spreads)} inter-commodity spreads", highlight=False)


@cme_params_app.command("show")
@handle_errors
def show(
    path: Annotated[Path, typer.Argument(help="CME SPAN file (PA2 or XML, zipped or not).")],
    format: FormatOption = OutputFormat.table,
) -> None:
    """What a CME SPAN file holds: products, scan risk of one long contract, spreads, ratios."""
    from xmargin.formats.pa2 import load_span_file

    p = load_span_file(path)
    rows = [{"product": c.product, "month": c.month, "scan_long": max(max(c.risk_array), 0.0),
             "scan_short": max(-min(c.risk_array), 0.0), "delta_scaling": c.delta_scaling} for c in p.contracts]
    payload = {"source": p.source, "format": p.file_format, "business_date": str(p.business_date),
               "contracts": rows, "commodities": {k: {"products": list(v.products), "intra_spreads": len(v.intra_spreads),
                                                     "spot_months": [s.month for s in v.spot_charges],
                                                     "initial_ratio": v.initial_ratio}
                                                 for k, v in p.commodities.items()},
               "inter_spreads": [{"priority": s.priority, "rate": s.rate,
                                  "legs": [f"{leg.key} {leg.side} x{leg.ratio:g}" for leg in s.legs]}
                                 for s in p.inter_spreads], "notes": list(p.notes)}
    if format is OutputFormat.json:
        emit_json(payload)
        return
    console.print(table(f"{p.source} ({p.file_format}, {p.business_date})", ["product", "month", "scan long $",
                                                                            "scan short $", "delta scaling"],
                        [list(r.values()) for r in rows], digits=2))
    for s in payload["inter_spreads"]:
        console.print(f"inter priority {s['priority']}: {s['rate']:.2%} {', '.join(s['legs'])}", highlight=False)


def reconcile_calls(
    calls: Annotated[Path, typer.Argument(help="Calls CSV: account, clearinghouse (FICC/CME), called.")],
    portfolio: Annotated[Path | None, typer.Option("--portfolio", help="Margin this portfolio now.")] = None,
    results: Annotated[Path | None, typer.Option("--results", help="Or: a saved `xmargin margin --format json`.")] = None,
    tolerance_pct: Annotated[float, typer.Option("--tolerance-pct", help="Flag differences beyond this % of the call.")] = 5.0,
    tolerance_usd: Annotated[float, typer.Option("--tolerance-usd", help="...and beyond this many dollars.")] = 0.0,
    cme_basis: Annotated[str, typer.Option("--cme-basis", help="Compare CME calls with maintenance or initial.")] = "maintenance",
    cme_params: Annotated[Path | None, typer.Option("--cme-params", help="CME SPAN file for the CME figures.")] = None,
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    config: Annotated[Path | None, typer.Option("--config", help="Margin parameters (TOML).")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Compare our requirement per account and clearinghouse with the amounts actually called."""
    from xmargin.formats.reconcile import read_calls, reconcile

    if (portfolio is None) == (results is None):
        raise InputError("give either --portfolio or --results", source="command line", field="--portfolio")
    call_rows = read_calls(calls)
    if results is not None:
        try:
            payload = json.loads(results.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read margin results: {exc}", source=results) from None
        if not isinstance(payload, dict) or "accounts" not in payload:
            raise InputError("not an `xmargin margin --format json` document", source=results)
    else:
        from xmargin.workflow import Environment, margin_job

        env = Environment.load(resolve_as_of(as_of, data_dir), data_dir=data_dir,
                               previous_business_day=previous_business_day, config=config)
        payload = margin_job(env, portfolio, cme_params=cme_params)  # type: ignore[arg-type]
    report = reconcile(payload, call_rows, tolerance_pct=tolerance_pct, tolerance_usd=tolerance_usd,
                       cme_basis=cme_basis, source=str(calls))
    if format is OutputFormat.json:
        emit_json(report)
        return
    console.print(table(f"Calls reconciled, {report['as_of']} (dollars; tolerance {tolerance_pct:g}% / ${tolerance_usd:,.0f})",
                        ["account", "house", "called", "ours", "difference", "difference %", "flag", "note"],
                        [[r["account"], r["clearinghouse"], r["called"], r["ours"], r["difference"], r["difference_pct"],
                          "FLAG" if r["flagged"] else "", r["note"]] for r in report["rows"]], digits=2))
    s = report["summary"]
    console.print(f"{s['flagged']} of {s['pairs']} flagged; called {s['called']:,.2f}, ours {s['ours']:,.2f}",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("reconcile-calls")(handle_errors(reconcile_calls))
    app.add_typer(cme_params_app, name="cme-params")
