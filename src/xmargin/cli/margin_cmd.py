"""``xmargin margin``: stand-alone, combined and cross-margined requirements of a portfolio."""

from __future__ import annotations

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
    as_of_rule,
    console,
    emit_json,
    err_console,
    handle_errors,
    progress_reporter,
    resolve_as_of,
    table,
)

ConfigOption = Annotated[Path | None, typer.Option("--config", help="Margin parameters (TOML: \\[ficc] \\[cme] \\[cross] \\[residual]).")]
FuturesHistoryOption = Annotated[
    Path | None,
    typer.Option("--futures-history", help="Futures prices (FILE or DIR: date,symbol,settle or continuous "
                                           "date,open,high,low,close,volume), default: <data dir>/futures."),
]
EligibilityOption = Annotated[
    Path | None, typer.Option("--eligibility", help="Cross-margin eligibility lists (TOML), default: packaged.")
]
MembersOption = Annotated[
    Path | None, typer.Option("--members", help="Members' registrations (CSV/TOML: member, ficc_netting_member, "
                              "cme_clearing_member, bd_fcm[, affiliates]); default: the portfolio's own "
                              "'members' (JSON), else every member taken as dually registered.")
]


def print_reduction_table(payload: dict[str, Any]) -> None:
    """How each account's reduction was reached (``--explain``): every column labelled."""
    rows = []
    for r in payload["accounts"]:
        red = r.get("reduction")
        if red is None:
            continue
        rows.append([r["account"], red["f_sa"], red["c_sa"], red["f_comb"], red["c_comb"], red["r_ficc"],
                     red["r_cme"], red["minimum"], red["cap"], red["applied"], red["binding"]])
    if rows:
        console.print(table(
            "Cross-margin reduction (F_sa, C_sa: stand-alone $ of the elected eligible positions; F_comb, C_comb: "
            "each house's model on them combined, $; r = max(0, 1 - comb / (F_sa + C_sa)); applied = "
            "min(r_FICC, r_CME, cap))",
            ["account", "F_sa $", "C_sa $", "F_comb $", "C_comb $", "r_FICC", "r_CME", "min(r)", "cap", "applied",
             "set by"], rows, digits=4))
        for r in payload["accounts"]:
            if r.get("reduction"):
                console.print(f"[bold]{escape(r['account'])}[/]: {escape(r['reduction']['why'])}", highlight=False,
                              soft_wrap=True)


def print_arrangement_table(payload: dict[str, Any]) -> None:
    """Accounts holding positions both in and out of their cross-margining account: both figures."""
    rows = []
    for r in payload["accounts"]:
        arr = r.get("arrangement")
        if not arr or not arr["cross_margin_account"]["positions"] or not arr["ordinary_accounts"]["positions"]:
            continue
        xm, od = arr["cross_margin_account"], arr["ordinary_accounts"]
        rows.append([r["account"], xm["positions"], xm["total_before"], xm["total_after"], od["positions"],
                     od["ficc_requirement"], od["cme_requirement"], od["total"], r["total_after"]])
    if rows:
        console.print(table(
            "Accounts with positions in and out of cross-margining (dollars)",
            ["account", "XM positions", "XM stand-alone", "XM requirement", "ordinary positions",
             "ordinary FICC", "ordinary CME", "ordinary total", "account total"], rows, digits=2))


def print_margin_table(payload: dict[str, Any], *, title: str) -> None:
    rows = []
    for r in payload["accounts"]:
        rows.append([
            r["account"], r["member"], r["account_type"], r["ficc_standalone"], r["cme_standalone"],
            r["ficc_combined"], r["cme_combined"], r["applied_reduction_factor"], r["total_before"],
            r["total_after"], r["savings"], r["savings_pct"], r["status"],
        ])
    t = payload["totals"]
    rows.append(["TOTAL", "", "", t["ficc_standalone"], t["cme_standalone"], None, None, None,
                 t["total_before"], t["total_after"], t["savings"], t["savings_pct"], ""])
    console.print(
        table(
            title,
            ["account", "member", "type", "FICC stand-alone", "CME stand-alone", "FICC combined", "CME combined",
             "reduction", "before", "after", "savings", "savings %", "status"],
            rows,
            digits=2,
        )
    )
    for w in payload.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    for r in payload["accounts"]:
        if r["status"] != "ok":
            err_console.print(f"[yellow]{escape(r['account'])}:[/] {escape(r['reason'])}", highlight=False, soft_wrap=True)


def margin(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio file (CSV or JSON).")],
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    format: FormatOption = OutputFormat.table,
    explain: Annotated[bool, typer.Option("--explain", help="Add the driving scenarios and largest contributors.")] = False,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    futures_history: FuturesHistoryOption = None,
    cme_params: Annotated[Path | None, typer.Option(
        "--cme-params", help="CME SPAN risk parameter file (PA2 or SPAN XML .spn, zipped or not) for the CME "
                             "stand-alone figures instead of the calibration.")] = None,
    fixml: Annotated[Path | None, typer.Option(
        "--fixml", help="Also write the results as FIXML margin requirement reports (MgnReqmtRpt) to this file.")] = None,
    members: MembersOption = None,
) -> None:
    """Margin every account: each clearinghouse stand-alone, combined, and after cross-margining.

    The JSON carries a provenance block (data files with last date and SHA-256, parameters hash, version, time) and, per account, the cross-margining and ordinary accounts' figures; --explain adds how the reduction was reached (r_FICC, r_CME, minimum, cap).
    """  # noqa: E501 (one paragraph: Typer's help keeps line breaks after the first)
    from xmargin.workflow import Environment, margin_job

    day = resolve_as_of(as_of, data_dir)
    env = Environment.load(day, data_dir=data_dir, previous_business_day=previous_business_day,
                           config=config, eligibility=eligibility, futures_history=futures_history,
                           members=members)
    with progress_reporter() as progress:
        payload = margin_job(env, portfolio, explain=explain, progress=progress, cme_params=cme_params,
                             audit=True, as_of_rule=as_of_rule(as_of))
    if fixml is not None:
        from xmargin.reports.fixml import write_margin_reports

        write_margin_reports(payload, fixml)
    if format is OutputFormat.json:
        emit_json(payload)
        return
    print_margin_table(payload, title=f"Margin as of {payload['as_of']} (dollars)")
    print_arrangement_table(payload)
    if explain:
        print_reduction_table(payload)
        for r in payload["accounts"]:
            for name, ex in r.get("explain", {}).items():
                if name == "cme_span":  # printed below
                    continue
                console.print(f"[bold]{escape(r['account'])} {name}[/]: VaR scenario {ex['var_scenario']['window']} "
                              f"P&L {ex['var_scenario']['pnl']:,.0f}; largest contributors: "
                              + ", ".join(f"{c['instrument']} {c['pnl_in_var_scenario']:,.0f} (incremental {c.get('incremental_margin') or 0:,.0f})"
                                          for c in ex["largest_contributors"]))
                if "risk_factors" in ex:
                    console.print("  VaR-scenario loss by risk factor: " + ", ".join(
                        f"{f['factor']} {f['loss']:,.0f} ({f['share']:.0%})" for f in ex["risk_factors"]))

    from xmargin.cli.formats_cmd import print_cme_notes

    print_cme_notes(payload, explain=explain)


def register(app: typer.Typer) -> None:
    app.command("margin")(handle_errors(margin))
