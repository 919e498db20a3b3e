"""The ``xmargin`` command line (Typer + Rich).

Pricing core: ``curve``, ``price``, ``futures basket``, ``data fetch``.  The margin, demo,
ledger, service and batch commands are registered from their own modules below.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, TextIO

import typer

from xmargin.cli import (
    batch_cmd,
    demo_cmd,
    formats_cmd,
    ledger_cmd,
    margin_cmd,
    serve_cmd,
    statement_cmd,
    validation_cmd,
)
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
    parse_date,
    resolve_as_of,
    table,
)
from xmargin.cli.data_cmd import data_app

app = typer.Typer(
    name="xmargin",
    help="Cross-margining risk engine: FICC Treasuries and repo against CME interest-rate futures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
futures_app = typer.Typer(help="CME Treasury futures reference data.", no_args_is_help=True)
app.add_typer(futures_app, name="futures")
app.add_typer(data_app, name="data")
margin_cmd.register(app)
demo_cmd.register(app)
ledger_cmd.register(app)
serve_cmd.register(app)
validation_cmd.register(app)
batch_cmd.register(app)
formats_cmd.register(app)
statement_cmd.register(app)


def _snapshot(as_of: str | None, data_dir: Path | None, previous_business_day: bool):  # type: ignore[no-untyped-def]
    from xmargin.market.snapshot import load_snapshot

    day = resolve_as_of(as_of, data_dir)
    return load_snapshot(day, data_dir=data_dir, previous_business_day=previous_business_day)


@app.command()
@handle_errors
def curve(
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    format: FormatOption = OutputFormat.table,
) -> None:
    """The par curve as published, with zero rates and discount factors at its tenors."""
    from xmargin.pricing.report import curve_report

    snap = _snapshot(as_of, data_dir, previous_business_day)
    report = curve_report(snap)
    if format is OutputFormat.json:
        emit_json(report)
        return
    rows = zip(report["tenors"], report["par_yield_pct"], report["zero_rate_pct"], report["discount_factor"], strict=True)
    console.print(
        table(
            f"Treasury curve {report['as_of']} (zero rates: {report['zero_rate_convention']})",
            ["tenor", "par yield %", "zero rate %", "discount factor"],
            list(rows),
        )
    )


@app.command()
@handle_errors
def price(
    instruments: Annotated[list[str], typer.Argument(help="CUSIPs, UST:<coupon>:<maturity> forms or futures symbols.")],
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    yield_pct: Annotated[
        float | None, typer.Option("--yield", help="Price from this street yield (percent) instead of the curve.")
    ] = None,
    settle: Annotated[str | None, typer.Option("--settle", help="Settlement date for --yield (YYYY-MM-DD).")] = None,
    discount_rate: Annotated[
        bool, typer.Option("--discount-rate", help="For bills: --yield is the discount rate (ACT/360).")
    ] = False,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Clean and dirty price, accrued, yield and DV01 off the curve (or price from a yield)."""
    from xmargin.errors import InputError
    from xmargin.masterdata import load_master
    from xmargin.reference.futures import TreasuryFuture
    from xmargin.reference.lookup import parse_instrument
    from xmargin.reference.stir import RateFuture

    if yield_pct is not None:
        from xmargin.config import resolve_data_dir
        from xmargin.pricing.report import price_from_yield

        if settle is None:
            raise InputError("--yield needs --settle DATE", source="command line", field="--settle")
        settle_day = parse_date(settle, "--settle")
        code = instruments[0].strip().upper()
        if code.startswith("UST:"):
            from xmargin.reference.treasuries import parse_ust

            inst = parse_ust(code, source="command line")
        else:
            master = load_master(resolve_data_dir(data_dir))
            inst = parse_instrument(code, as_of=settle_day, master=master, source="command line")
        if isinstance(inst, TreasuryFuture | RateFuture):
            raise InputError("--yield prices cash Treasuries only", source="command line", field="instrument")
        rows = [price_from_yield(inst, yield_pct=yield_pct, settle=settle_day, discount_rate=discount_rate)]
        if format is OutputFormat.json:
            emit_json(rows)
        else:
            console.print(
                table(
                    f"Price from yield, settlement {settle_day}",
                    ["instrument", "yield %", "clean", "accrued", "dirty", "yield DV01"],
                    [[r["instrument"], r["yield_pct"], r["clean_price"], r["accrued"], r["dirty_price"], r["yield_dv01"]] for r in rows],
                )
            )
        return

    from xmargin.pricing.report import price_report

    snap = _snapshot(as_of, data_dir, previous_business_day)
    master = load_master(snap.data_dir)
    defs = [parse_instrument(t, as_of=snap.as_of, master=master, source="command line") for t in instruments]
    from xmargin.market.asof import basket_warnings

    for w in basket_warnings(defs, master, snap.as_of):  # a CTD from an incomplete basket, said aloud
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    rows = price_report(defs, snap, master)
    if format is OutputFormat.json:
        emit_json(rows)
        return
    console.print(
        table(
            f"Prices off the {snap.as_of} curve (cash: per 100 face, settle {snap.settle}; futures: points)",
            ["instrument", "clean", "accrued", "dirty", "yield %", "DV01 $", "CTD", "CF", "impl. repo %"],
            [
                [r["instrument"], r["clean_price"], r["accrued"], r["dirty_price"], r["yield_pct"], r["dv01"],
                 r.get("ctd"), r.get("conversion_factor"), r.get("implied_repo_pct")]
                for r in rows
            ],
        )
    )


@futures_app.command("basket")
@handle_errors
def futures_basket(
    symbol: Annotated[str, typer.Argument(help="Treasury futures symbol, e.g. ZNZ25.")],
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    format: FormatOption = OutputFormat.table,
) -> None:
    """The deliverable basket of a Treasury futures contract with conversion factors."""
    from xmargin.errors import InputError
    from xmargin.masterdata import load_master
    from xmargin.pricing.futures import treasury_future_details
    from xmargin.reference.futures import TreasuryFuture, parse_future_symbol

    snap = _snapshot(as_of, data_dir, previous_business_day)
    contract = parse_future_symbol(symbol, snap.as_of, source="command line")
    if not isinstance(contract, TreasuryFuture):
        raise InputError(f"{symbol} is not a Treasury futures contract", source="command line", field="symbol")
    master = load_master(snap.data_dir)
    from xmargin.market.asof import basket_warnings

    warn_basket = basket_warnings([contract], master, snap.as_of)  # an incomplete basket, said aloud
    for w in warn_basket:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    details = treasury_future_details(contract, snap, master)
    payload = {
        "symbol": contract.symbol,
        "as_of": snap.as_of.isoformat(),
        "deliverables": [
            {
                "instrument": d["instrument"],
                "coupon_pct": d["coupon_pct"],
                "maturity": d["maturity"],
                "conversion_factor": d["conversion_factor"],
            }
            | {k: v for k, v in d.items() if k not in ("instrument", "coupon_pct", "maturity", "conversion_factor")}
            for d in details["deliverables"]
        ],
        "warnings": warn_basket,
    }
    if format is OutputFormat.json:
        emit_json(payload)
        return
    console.print(
        table(
            f"{contract.symbol} deliverable basket ({len(payload['deliverables'])} securities, as of {snap.as_of})",
            ["instrument", "coupon %", "maturity", "conversion factor"],
            [[d["instrument"], d["coupon_pct"], d["maturity"], d["conversion_factor"]] for d in payload["deliverables"]],
            digits=4,
        )
    )



def _one_command(name: str) -> typer.Typer | None:
    """``xmargin NAME ...`` as an app holding only command ``NAME`` (None if it is a group or
    unknown): Typer builds the options of every command it holds before running one, about
    0.2 s for all of them, which a one-line ``xmargin price`` should not pay."""
    chosen = [c for c in app.registered_commands
              if c.callback is not None and (c.name or c.callback.__name__.lower().replace("_", "-")) == name]
    if len(chosen) != 1:
        return None
    one = typer.Typer(name="xmargin", help=app.info.help, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    one.registered_commands = chosen

    @one.callback()
    def _group() -> None:  # keeps "xmargin NAME" a group: usage and --help read as with the whole app
        pass

    return one


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the command line: xmargin's own named warnings (bad or
    missing data: :class:`~xmargin.market.futures_history.OffTickWarning`, ``GapWarning``, ...)
    print as one line, ``warning (OffTickWarning): FILE: what``, to standard error, because the
    message already names the file, row or date; anything else keeps Python's format (the
    source line helps there)."""
    import sys

    out = file or sys.stderr
    if category.__module__.split(".")[0] == "xmargin":
        out.write(f"warning ({category.__name__}): {message}\n")
    else:
        out.write(warnings.formatwarning(message, category, filename, lineno, line))


def main() -> None:  # pragma: no cover
    import sys

    warnings.showwarning = show_warning
    one = _one_command(sys.argv[1]) if len(sys.argv) > 1 else None
    (one or app)()


if __name__ == "__main__":  # python -m xmargin.cli.main ... (the installed `xmargin` script calls main)
    main()
