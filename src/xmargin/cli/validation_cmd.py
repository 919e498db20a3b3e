"""``xmargin backtest | procyclicality | optimise | attribute | default``: model validation,
margin attribution and optimisation, joint default simulation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from xmargin.cli.common import (
    AsOfOption,
    DataDirOption,
    FormatOption,
    OutputFormat,
    console,
    emit_json,
    err_console,
    handle_errors,
    parse_date,
    progress_reporter,
    resolve_as_of,
    table,
)
from xmargin.cli.margin_cmd import ConfigOption, EligibilityOption, FuturesHistoryOption
from xmargin.errors import InputError

WorkersOption = Annotated[int, typer.Option("--workers", help="Parallel processes over days (default: CPUs, max 8).")]
MODELS = ("ficc", "cme", "combined")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err_console, transient=True)


def _workers(n: int) -> int:
    return n if n > 0 else min(os.cpu_count() or 1, 8)


def _env(day: Any, data_dir: Path | None, config: Path | None, eligibility: Path | None) -> Any:
    from xmargin.workflow import Environment

    return Environment.load(day, data_dir=data_dir, previous_business_day=True, config=config, eligibility=eligibility)


def write_daily_csv(result: Any, path: Path) -> Path:
    """Margin components per account and day (dollars) as CSV, written to a temporary file
    and renamed, so a failure leaves no half-written file."""
    import csv

    rows = result.daily_rows()
    fields = list(rows[0]) if rows else ["date", "account", "pnl", "margin", "exception"]
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write the daily file: {exc}", source=str(path), field="--daily") from None
    return path


def plot_backtest(result: Any, i: int, path: str | Path) -> Path:
    """PNG (matplotlib, Agg) of account ``i`` of a :class:`~xmargin.validation.backtest.BacktestResult`:
    minus the margin (the loss threshold) and the realised P&L, in $ million, exceptions in red."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = result.dates.astype("datetime64[D]").astype(object)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(d, result.pnl[i] / 1e6, lw=0.7, color="tab:blue", label=f"realised {result.horizon_days}-day P&L")
    ax.plot(d, -result.margin[i] / 1e6, lw=1.2, color="tab:orange", label="- margin")
    hit = result.exceptions[i]
    ax.scatter(np.asarray(d)[hit], result.pnl[i][hit] / 1e6, color="red", zorder=3, s=18,
               label=f"exceptions ({int(hit.sum())})")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("$ million")
    ax.set_title(f"{result.accounts[i]}: {result.model} margin vs realised P&L ({result.confidence:.0%})")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def backtest(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio file (CSV or JSON), instruments as of --from.")],
    start: Annotated[str, typer.Option("--from", help="First day YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day YYYY-MM-DD.")],
    model: Annotated[str, typer.Option("--model", help="ficc, cme or combined.")] = "combined",
    horizon: Annotated[int, typer.Option("--horizon", help="Realised P&L horizon in business days (default: model's).")] = 0,
    chart: Annotated[Path | None, typer.Option("--chart", help="Write a PNG per account: FILE, FILE-2.png, ...")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="Bootstrap every scenario curve (slow; for checks).")] = False,
    span: Annotated[str, typer.Option("--span", help="SPAN recalibration: monthly, once or daily.")] = "monthly",
    daily: Annotated[Path | None, typer.Option("--daily", help="Write margin components per account and day (CSV).")] = None,
    workers: WorkersOption = 0,
    data_dir: DataDirOption = None,
    format: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    pnl: Annotated[str, typer.Option("--pnl", help="Realised futures P&L: actual (prices where the history has "
                                                   "them) or model (curve).")] = "actual",
    futures_history: FuturesHistoryOption = None,
) -> None:
    """Backtest a margin model: margin each day against the realised P&L over its horizon."""
    from xmargin.validation.backtest import backtest as run

    if model not in MODELS:
        raise InputError(f"'{model}' is not one of {list(MODELS)}", source="command line", field="--model")
    if span not in ("monthly", "once", "daily"):
        raise InputError(f"'{span}' is not monthly, once or daily", source="command line", field="--span")
    if pnl not in ("actual", "model"):
        raise InputError(f"'{pnl}' is not actual or model", source="command line", field="--pnl")
    lo, hi = parse_date(start, "--from"), parse_date(end, "--to")
    if hi < lo:
        raise InputError("--to is before --from", source="command line", field="--to")
    env = _env(lo, data_dir, config, eligibility)
    if futures_history is not None:
        from dataclasses import replace

        from xmargin.workflow import with_futures_history

        env = replace(env, params=with_futures_history(env.params, futures_history))
    book = env.read_book(portfolio)
    with _progress() as bar:
        task = bar.add_task("days", total=None)
        result = run(book, lo, hi, data_dir=env.snapshot.data_dir, params=env.params,
                     eligibility=env.eligibility, model=model, horizon_days=horizon or None, exact=exact, span=span,
                     workers=_workers(workers), progress=lambda d, t: bar.update(task, completed=d, total=t), pnl=pnl)
    payload = result.to_dict()
    if daily is not None:
        write_daily_csv(result, daily)
        payload["daily"] = str(daily)
    if chart is not None:
        paths = [plot_backtest(result, i, chart if i == 0 else chart.with_name(f"{chart.stem}-{i + 1}{chart.suffix}"))
                 for i in range(len(result.accounts))]
        payload["charts"] = [str(p) for p in paths]
    if format is OutputFormat.json:
        emit_json(payload)
        return
    rows = []
    for a in payload["accounts"]:
        no = a["non_overlapping"]
        rows.append([f"{a['account']} ({a['pnl_source']})", a["observations"], a["exceptions"], a["expected_exceptions"], a["coverage"] * 100,
                     a["kupiec"]["p_value"], a["christoffersen"]["p_value"], a["conditional_coverage"]["p_value"],
                     f"{no['exceptions']}/{no['observations']}", no["kupiec"]["p_value"],
                     " ".join(b["zone"][0].upper() for b in a["zones"]["blocks"]) or "-",
                     a["zones"]["worst_rolling"] or "-"])
    console.print(table(
        f"Backtest {payload['model']} {payload['from']}..{payload['to']}: {payload['horizon_days']}-day P&L vs margin "
        f"({payload['confidence']:.1%}; {payload['method']})",
        ["account", "days", "exceptions", "expected", "coverage %", "Kupiec p", "Christoffersen p", "cond. cov. p",
         "non-overlap exc.", "non-overlap Kupiec p", "zones per 250d", "worst rolling zone"], rows, digits=3))
    for a in payload["accounts"]:
        if a["exception_dates"]:
            console.print(f"{escape(a['account'])} exceptions: {', '.join(a['exception_dates'])}", soft_wrap=True)
    for n in payload["notes"]:
        err_console.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)
    for p in payload.get("charts", []):
        console.print(f"chart: {p}")


def procyclicality(
    portfolio: Annotated[Path | None, typer.Argument(help="Portfolio file (default: 10-year par note, and vs ZN).")] = None,
    period: Annotated[list[str] | None, typer.Option("--period", help="YYYY, YYYY-MM or FROM:TO (repeatable).")] = None,
    tenor: Annotated[int, typer.Option("--tenor", help="Par note tenor (years) of the default book.")] = 10,
    hedge: Annotated[str, typer.Option("--hedge", help="Futures root of the default basis book ('' for none).")] = "ZN",
    base_lookback: Annotated[float, typer.Option("--base-lookback", help="Years of the plain-HS benchmark VaR (the filtered mode uses the model look-back).")] = 1.0,
    floor_lookback: Annotated[float, typer.Option("--floor-lookback", help="Years of the VaR floor.")] = 10.0,
    stress_weight: Annotated[float, typer.Option("--stress-weight", help="Weight of stressed scenarios.")] = 0.25,
    buffer: Annotated[float, typer.Option("--buffer", help="Drawable margin buffer (fraction).")] = 0.25,
    workers: WorkersOption = 0,
    data_dir: DataDirOption = None,
    format: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
) -> None:
    """Margin through stressed periods: peak-to-trough and the anti-procyclicality tools."""
    from xmargin.validation.backtest import legs_of
    from xmargin.validation.procyclicality import (
        DEFAULT_PERIODS,
        VARIANTS,
        ApcOptions,
        par_note_book,
        to_dict,
    )
    from xmargin.validation.procyclicality import (
        procyclicality as run,
    )

    periods = tuple(period or DEFAULT_PERIODS)
    opts = ApcOptions(base_lookback, floor_lookback, stress_weight, buffer)
    from xmargin.scenarios.historical import named_period

    env = _env(named_period(periods[0])[0], data_dir, config, eligibility)
    if portfolio is None:
        accounts, legs_for = par_note_book(env.snapshot.data_dir, tenor_years=tenor, hedge_root=hedge or None)
    else:
        accounts = env.read_book(portfolio).accounts

        def legs_for(day: Any) -> Any:
            return legs_of(_env(day, data_dir, config, eligibility).read_book(portfolio))

    with progress_reporter() as progress:
        results = run(accounts, legs_for, data_dir=env.snapshot.data_dir, params=env.params,
                      eligibility=env.eligibility, periods=periods, options=opts, workers=_workers(workers),
                      progress=progress)
    payload = to_dict(results, accounts, opts)
    if format is OutputFormat.json:
        emit_json(payload)
        return
    for per in payload["periods"]:
        rows = [[a["account"], v, m[v].get("mean"), m[v].get("peak"), m[v].get("trough"), m[v].get("peak_to_trough"),
                 m[v].get("max_1d_increase_pct"), m[v].get("max_5d_increase_pct"), m[v].get("max_30d_increase_pct")]
                for a in per["accounts"] for m in [a["measures"]] for v in VARIANTS]
        console.print(table(f"Procyclicality {per['period']} ({per['from']}..{per['to']}), VaR margin in dollars",
                            ["account", "variant", "mean", "peak", "trough", "peak/trough", "max 1d rise %",
                             "max 5d rise %", "max 30d rise %"], rows, digits=2))


def optimise(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio file (CSV or JSON).")],
    member: Annotated[str, typer.Option("--member", help="Member whose placement to optimise.")],
    hedge_account: Annotated[str | None, typer.Option("--hedge-account", help="Also find this account's best futures hedge.")] = None,
    roots: Annotated[str, typer.Option("--roots", help="Hedge candidates, comma-separated roots.")] = "ZT,Z3N,ZF,ZN,TN,TWE,ZB,UB",
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    format: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
) -> None:
    """Which positions to place in the cross-margining account, which customers benefit, best hedge."""
    from xmargin.optimise.hedge import best_futures_hedge
    from xmargin.optimise.placement import optimise_placement

    env = _env(resolve_as_of(as_of, data_dir), data_dir, config, eligibility)
    book = env.read_book(portfolio)
    context = env.context(book)
    payload: dict[str, Any] = {"as_of": env.snapshot.as_of.isoformat(),
                               "placement": optimise_placement(context, book, member).to_dict()}
    if hedge_account is not None:
        index = book.account_index()
        if hedge_account not in index:
            raise InputError(f"no account '{hedge_account}'", source=str(portfolio), field="--hedge-account")
        result, _ = best_futures_hedge(context, book, index[hedge_account], roots=[r.strip() for r in roots.split(",") if r.strip()])
        payload["hedge"] = result.to_dict()
    if format is OutputFormat.json:
        emit_json(payload)
        return
    pl = payload["placement"]
    console.print(f"[bold]{escape(member)}[/] house placement ({pl['method']}, {pl['placements_evaluated']} evaluated): "
                  f"margin {pl['margin_current']:,.0f} -> {pl['margin_best']:,.0f}, saving {pl['saving']:,.0f}")
    console.print(f"  move into the cross-margining account: {', '.join(pl['moved_in']) or 'nothing'}", soft_wrap=True)
    console.print(f"  move out of it: {', '.join(pl['moved_out']) or 'nothing'}", soft_wrap=True)
    if pl["customers"]:
        console.print(table("Customer accounts: cross-margining benefit (dollars)",
                            ["account", "elected", "cross-margined", "not", "benefit", "should elect"],
                            [[c["account"], c["elected"], c["margin_cross_margined"], c["margin_not_cross_margined"],
                              c["benefit"], c["should_elect"]] for c in pl["customers"]], digits=0))
    if "hedge" in payload:
        h = payload["hedge"]
        console.print(table(f"Futures hedge for {h['account']}: margin {h['margin_before']:,.0f} (dollars)",
                            ["symbol", "DV01-neutral", "best contracts", "margin after", "saving"],
                            [[s["symbol"], s["dv01_neutral_contracts"], s["contracts"], s["margin_after"], s["saving"]]
                             for s in h["per_symbol"]], digits=1))
        best = f"{h['contracts']:+d} {h['symbol']}" if h["symbol"] else "no hedge lowers the margin"
        console.print(f"best: {best}, saving {h['saving']:,.0f}")


def attribute(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio file (CSV or JSON).")],
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    method: Annotated[str, typer.Option("--method", help="scenario (exact sum) or kernel.")] = "scenario",
    as_of: AsOfOption = None,
    data_dir: DataDirOption = None,
    format: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
) -> None:
    """Euler contributions of each position to each VaR figure, and incremental margins."""
    from xmargin.margin.attribution import METHODS, attribute_account

    if method not in METHODS:
        raise InputError(f"'{method}' is not one of {list(METHODS)}", source="command line", field="--method")
    env = _env(resolve_as_of(as_of, data_dir), data_dir, config, eligibility)
    book = env.read_book(portfolio)
    context = env.context(book)
    rows = [i for i, a in enumerate(book.accounts) if account is None or a.account == account]
    if not rows:
        raise InputError(f"no account '{account}'", source=str(portfolio), field="--account")
    out = [attribute_account(context, book, i, method=method).to_dict() for i in rows]
    if format is OutputFormat.json:
        emit_json({"as_of": env.snapshot.as_of.isoformat(), "accounts": out})
        return
    for a in out:
        names = list(a["figures"])
        console.print(table(
            f"{a['account']}: requirement {a['total_after'] or 0:,.0f}; Euler contributions ({a['method']}) and "
            "incremental margin (dollars)",
            ["instrument", "quantity", *names, "incremental margin"],
            [[p["instrument"], p["quantity"], *[p["euler"][n] for n in names], p["incremental_margin"]]
             for p in a["positions"]]
            + [["TOTAL (VaR)", None, *[a["figures"][n]["var"] for n in names], None]], digits=0))


def default(
    member: Annotated[str, typer.Argument(help="The defaulted member.")],
    portfolio: Annotated[Path, typer.Option("--portfolio", help="Portfolio file (CSV or JSON).")],
    as_of: AsOfOption = None,
    period: Annotated[int, typer.Option("--period", help="Joint liquidation period, business days.")] = 3,
    include_customers: Annotated[bool, typer.Option("--include-customers", help="Porting failed: liquidate customers too.")] = False,
    top: Annotated[int, typer.Option("--top", help="Worst scenarios listed.")] = 10,
    data_dir: DataDirOption = None,
    format: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
) -> None:
    """Joint liquidation of a defaulted member's portfolio under every historical scenario."""
    from xmargin.validation.default import simulate_default

    if period < 1:
        raise InputError("--period must be at least 1 business day", source="command line", field="--period")
    env = _env(resolve_as_of(as_of, data_dir), data_dir, config, eligibility)
    book = env.read_book(portfolio)
    result = simulate_default(env.context(book), book, member, period_days=period, include_customers=include_customers)
    s = result.summary(top)
    if format is OutputFormat.json:
        emit_json(s)
        return
    mh = s["margin_held"]
    console.print(f"[bold]Default of {escape(member)}[/] on {s['as_of']}: joint liquidation over {s['liquidation_period_days']} "
                  f"days, {s['scenarios']} scenarios (stress {'..'.join(s['stress_period']) or 'none'}); house accounts "
                  f"{', '.join(s['house_accounts'])}; customers {'liquidated' if include_customers else 'ported'}")
    console.print(f"margin held: FICC {mh['ficc']:,.0f} + CME {mh['cme']:,.0f} = {mh['total']:,.0f}")
    q = s["loss_quantiles"]
    console.print("loss quantiles: " + ", ".join(f"{k} {v:,.0f}" for k, v in q.items())
                  + f"; max {s['max_loss']:,.0f}; ES99 {s['expected_shortfall_99']:,.0f}")
    console.print(f"scenarios with a shortfall: {s['scenarios_with_shortfall']} (coverage {s['coverage']:.2%}); max "
                  f"{s['max_shortfall']:,.0f}; separate liquidation: {s['scenarios_with_shortfall_separate']} scenarios, "
                  f"max {s['max_shortfall_separate_liquidation']:,.0f}")
    console.print(table("Worst scenarios (dollars)", ["window", "loss", "FICC leg", "CME leg", "shortfall",
                                                      "FICC share", "CME share", "separate"],
                        [[w["window"], w["loss"], w["loss_ficc"], w["loss_cme"], w["shortfall"],
                          w["shortfall_ficc_share"], w["shortfall_cme_share"], w["shortfall_separate"]]
                         for w in s["worst"]], digits=0))


def validation_report(
    from_year: Annotated[int, typer.Option("--from-year", help="First calendar year.")] = 2005,
    to_year: Annotated[int, typer.Option("--to-year", help="Last calendar year.")] = 2025,
    out: Annotated[Path, typer.Option("--out", help="Markdown file (a PNG chart is written next to it).")] = Path("docs/validation.md"),
    years: Annotated[str, typer.Option("--years", help="Comma-separated years in the order to run them (overrides "
                                       "--from-year/--to-year); the file is rewritten after each year.")] = "",
    cache: Annotated[Path, typer.Option("--cache", help="Per-year results kept here and reused.")] = Path(
        "benchmarks/results/validation"),
    workers: WorkersOption = 1,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    calm_years: Annotated[str, typer.Option("--calm-years", help="FROM-TO: the years run again under plain "
                                            "historical simulation for the calm-period comparison ('' to skip); "
                                            "only those among the years run.")] = "2013-2019",
) -> None:
    """Regenerate the validation record: reference books backtested per calendar year, every model."""
    from datetime import date

    from xmargin.validation.report import (
        calm_rows,
        chain_addons,
        plain_hs,
        render_calm,
        run_years,
        write_report,
    )

    if to_year < from_year:
        raise InputError(f"--to-year {to_year} is before --from-year {from_year}", source="command line",
                         field="--to-year")
    try:
        order = [int(y) for y in years.split(",") if y.strip()] or list(range(from_year, to_year + 1))
    except ValueError:
        raise InputError(f"'{years}' is not a comma-separated list of years", source="command line",
                         field="--years") from None
    env = _env(date(min(order), 1, 2), data_dir, config, eligibility)
    command = (f"xmargin validation-report --from-year {min(order)} --to-year {max(order)} --out {out}")
    done_runs: list[Any] = []
    try:
        lo, hi = (int(x) for x in calm_years.split("-")) if calm_years.strip() else (0, -1)
    except ValueError:
        raise InputError(f"'{calm_years}' is not FROM-TO (e.g. 2013-2019)", source="command line",
                         field="--calm-years") from None
    calm = sorted(y for y in order if lo <= y <= hi)
    section = [""]

    def calm_section() -> str:
        """Run the calm years under plain HS once all of them are done under the default."""
        if section[0] or not calm or not set(calm) <= {r.year for r in done_runs}:
            return section[0]
        plain = chain_addons(run_years(calm, data_dir=env.snapshot.data_dir, params=plain_hs(env.params),
                                       eligibility=env.eligibility, workers=_workers(workers), cache=cache,
                                       progress=lambda y, r: err_console.print(f"{y} (plain HS): {r.seconds:.0f} s")),
                             plain_hs(env.params))
        default = [r for r in chain_addons(done_runs, env.params) if r.year in calm]
        label = f"{calm[0]}-{calm[-1]}" + ("" if len(calm) == calm[-1] - calm[0] + 1 else
                                           " (years run: " + ", ".join(map(str, calm)) + ")")
        section[0] = render_calm(calm_rows(default, plain), label, env.params.ficc.scenarios.mode)
        return section[0]

    def done(year: int, run: Any) -> None:
        done_runs.append(run)
        write_report(sorted(done_runs, key=lambda r: r.year), env.params, out, command, calm=calm_section())
        err_console.print(f"{year}: {len(run.results['combined'].dates)} days in {run.seconds:.0f} s; {out} rewritten")

    run_years(order, data_dir=env.snapshot.data_dir, params=env.params, eligibility=env.eligibility,
              workers=_workers(workers), cache=cache, progress=done)
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("validation-report")(handle_errors(validation_report))
    app.command("backtest")(handle_errors(backtest))
    app.command("procyclicality")(handle_errors(procyclicality))
    app.command("optimise")(handle_errors(optimise))
    app.command("optimize", hidden=True)(handle_errors(optimise))
    app.command("attribute")(handle_errors(attribute))
    app.command("default")(handle_errors(default))
