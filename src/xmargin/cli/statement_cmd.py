"""``xmargin statement``: one customer's margin statement (JSON and offline HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
from xmargin.cli.margin_cmd import ConfigOption, EligibilityOption, MembersOption


def statement(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio file (CSV, JSON or Parquet).", metavar="PORTFOLIO")],
    account: Annotated[str, typer.Option("--account", help="The account to state.", metavar="ACCOUNT")],
    out: Annotated[Path, typer.Option("--out", help="Folder for statement-ACCOUNT.json and .html.",
                                      metavar="DIR")] = Path("."),
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    members: MembersOption = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """The statement a BD-FCM sends one customer: positions by clearinghouse and account, stand-alone
    and combined margins, r_FICC, r_CME, the cap and which applied, requirements, saving, the
    scenario dates behind each VaR, and the data with its vintage.  Writes JSON and offline HTML."""
    from xmargin.reports.statement import write_statement
    from xmargin.workflow import Environment, statement_job

    day = resolve_as_of(as_of, data_dir)
    env = Environment.load(day, data_dir=data_dir, previous_business_day=previous_business_day, config=config,
                           eligibility=eligibility, members=members)
    with progress_reporter() as progress:
        progress("statement", 0, 2)
        doc = statement_job(env, portfolio, account, as_of_rule=as_of_rule(as_of))
        progress("statement", 1, 2)
        paths = write_statement(doc, out)
        progress("statement", 2, 2)
    if format is OutputFormat.json:
        emit_json(doc)
        return
    f, red = doc["figures"], doc["reduction"]
    console.print(table(f"Statement {account} as of {doc['statement']['as_of']} (dollars)",
                        ["figure", "value"], [[label, f[k]] for k, label in doc["figure_labels"].items()], digits=4))
    console.print(f"Reduction: {red['why']}", highlight=False, soft_wrap=True)
    for w in doc["warnings"]:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    console.print(f"Statement: {paths['html']} and {paths['json']}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("statement")(handle_errors(statement))
