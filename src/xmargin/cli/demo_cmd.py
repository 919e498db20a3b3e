"""``xmargin demo``: a realistic cross-margining book on real market data, its savings and a report.

:func:`run_demo` is the whole job without the terminal (market -> generated book -> scenario
P&L -> margins -> savings); :func:`write_outputs` writes the report and its data files; the
``demo`` command adds a progress bar and a Rich summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xmargin.cli.common import (
    DataDirOption,
    FormatOption,
    OutputFormat,
    PrevBusinessDayOption,
    console,
    emit_json,
    err_console,
    handle_errors,
    parse_date,
    progress_reporter,
    table,
)
from xmargin.cli.margin_cmd import EligibilityOption

if TYPE_CHECKING:  # the engine is imported when the command runs, not when the CLI starts
    from xmargin.margin.calculator import AccountMargins
    from xmargin.margin.context import MarginContext
    from xmargin.portfolio.book import Book
    from xmargin.portfolio.demo import DemoConfig
    from xmargin.portfolio.members import MemberRegistry
    from xmargin.reports.savings import SavingsReport

Progress_ = Callable[[str, int, int], None]
FUNDING_SPREAD_BP = 50.0  # default funding spread over SOFR, bp (= reports.savings.DEFAULT_SPREAD_BP)
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Margin parameters (TOML file with sections ficc, cme, cross); default: built-in.")]
ACCOUNT_FIGURES = ("before", "after", "savings", "savings_pct", "ficc_before", "ficc_after", "cme_before",
                   "cme_after", "funding_saved", "stressed_loss_before", "stressed_loss_after")


@dataclass(frozen=True, eq=False)
class DemoRun:
    config: DemoConfig
    book: Book
    context: MarginContext
    margins: AccountMargins
    savings: SavingsReport
    reproduce: str  # the command line that gives the same numbers
    warnings: tuple[str, ...] = ()
    env: Any = None  # the workflow Environment the run used
    as_of_rule: str = ""


def default_as_of(data_dir: str | Path | None = None) -> date:
    """The default date of every command (:func:`xmargin.workflow.default_as_of`): the last
    curve on or before the securities master's last issue (and the fixings' last dates)."""
    from xmargin.workflow import default_as_of as common_default

    return common_default(data_dir)


def demo_members(book: Book) -> MemberRegistry:
    """The demo's members: every one a FICC netting member, CME clearing member and BD-FCM,
    with its affiliate accounts listed."""
    from xmargin.portfolio.members import Member, MemberRegistry

    return MemberRegistry({m: Member(m, True, True, True, name=f"demo clearing member {m}",
                                     affiliates=tuple(a.account for a in book.accounts
                                                      if a.member == m and a.account_type == "affiliate"))
                           for m in book.members()}, "xmargin demo (members.csv)")


def run_demo(
    config: DemoConfig,
    *,
    as_of: date | None = None,
    data_dir: str | Path | None = None,
    previous_business_day: bool = False,
    params: str | Path | None = None,
    eligibility: str | Path | None = None,
    funding_spread_bp: float = FUNDING_SPREAD_BP,
    funding_base_pct: float | None = None,
    progress: Progress_ | None = None,
) -> DemoRun:
    """Generate the demo book on ``as_of`` (default :func:`default_as_of`) and margin it."""
    from xmargin.margin.calculator import compute_margins
    from xmargin.margin.calibration import listed_contracts
    from xmargin.portfolio.demo import DEMO_CONTRACTS, generate_book, prepare_market
    from xmargin.reports.savings import funding_rate, savings_report
    from xmargin.workflow import Environment

    def step(label: str, done: int, total: int) -> None:
        if progress is not None:
            progress(label, done, total)

    step("market data", 0, 1)
    day = as_of or default_as_of(data_dir)
    env = Environment.load(day, data_dir=data_dir, previous_business_day=previous_business_day, config=params,
                           eligibility=eligibility)
    funding = funding_rate(env.snapshot, spread_bp=funding_spread_bp, base_pct=funding_base_pct)
    contracts = [c for root, n in DEMO_CONTRACTS.items() for c in listed_contracts(root, env.snapshot.as_of, n)]
    market = prepare_market(env.snapshot, env.master, contracts, haircut=config.repo_haircut)
    warnings = [f"{sym} left out: {why}" for sym, why in market.skipped.items()]
    last_issue = max(r.issue_date for r in env.master.records.values())
    if env.snapshot.as_of > last_issue:
        warnings.insert(0, f"as of {env.snapshot.as_of}, after the securities master's last issue date {last_issue}: "
                        "securities issued since, and futures deliverables among them, are missing")
    step("market data", 1, 1)
    book = generate_book(market, config, progress=lambda d, t: step("generating accounts", d, t))
    from xmargin.portfolio.members import check_registrations

    check_registrations(book, demo_members(book))
    step("pricing scenarios", 0, 1)
    context = env.context(book)
    step("pricing scenarios", 1, 1)
    margins = compute_margins(context, book, chunk_size=512, progress=lambda d, t: step("margining accounts", d, t))
    savings = savings_report(book, margins, funding)
    cmd = (f"xmargin demo --as-of {env.snapshot.as_of} --members {config.members} --customers "
           f"{config.customers_per_member} --affiliates {config.affiliates_per_member} --seed {config.seed} "
           f"--xm-share {config.xm_share:g} {'--house-xm' if config.house_xm else '--no-house-xm'} "
           f"--repo-haircut {config.repo_haircut:g} --partial-share {config.partial_share:g} "
           f"--funding-spread-bp {funding.spread_bp:g}"
           + (f" --funding-base {funding_base_pct:g}" if funding_base_pct is not None else ""))
    from xmargin.market.asof import RULE, stale_warning

    stale = stale_warning(env.snapshot.as_of)
    if stale:
        warnings.append(stale)
    rule = "given (--as-of)" if as_of is not None else f"default: {RULE}"
    return DemoRun(config, book, context, margins, savings, cmd, tuple(warnings), env, rule)


def partial_elections(book: Book) -> int:
    """Electing accounts that keep some positions out of their cross-margining account."""
    if book.elected is None:
        return 0
    rest = (book.positions - book.elected).tocsr()
    rest.eliminate_zeros()
    return sum(1 for i, a in enumerate(book.accounts) if a.cross_margin and rest.indptr[i + 1] > rest.indptr[i])


def book_counts(book: Book) -> dict[str, int]:
    accounts = book.accounts
    return {
        "members": len(book.members()),
        "accounts": len(accounts),
        "house": sum(a.account_type == "house" for a in accounts),
        "affiliates": sum(a.account_type == "affiliate" for a in accounts),
        "customers": sum(a.account_type == "customer" for a in accounts),
        "electing_cross_margining": sum(a.cross_margin for a in accounts),
        "partial_election": partial_elections(book),
        "instruments": len(book.universe),
        "positions": int(book.positions.nnz),
    }


def demo_parameters(run: DemoRun) -> dict[str, Any]:
    """Everything needed to read and reproduce the demo's numbers."""
    from xmargin.portfolio.demo import ARCHETYPES

    ctx = run.context
    return {
        "as_of": ctx.snapshot.as_of.isoformat(),
        "settlement": ctx.snapshot.settle.isoformat(),
        "book": book_counts(run.book),
        "generator": run.config.to_dict() | {"archetypes": {a.name: a.label for a in ARCHETYPES.values()}},
        "funding": {"rate_pct": run.savings.funding.rate_pct, "base": run.savings.funding.base,
                    "base_pct": run.savings.funding.base_pct, "spread_bp": run.savings.funding.spread_bp,
                    "day_count": "ACT/360, annual cost = amount x rate x 365/360"},
        "margin_params": ctx.params.to_dict(),
        "eligibility": ctx.eligibility.source,
        "ficc_scenarios": {"count": ctx.ficc_scenarios.size,
                           "stress_period": [str(d) for d in ctx.ficc_scenarios.stress_period or ()]},
        "cme_scenarios": {"count": ctx.cme_scenarios.size,
                          "stress_period": [str(d) for d in ctx.cme_scenarios.stress_period or ()]},
        "span": {root: {"scan_range": float(s), "intra_spread_charge": float(i)}
                 for root, s, i in zip(ctx.span.roots, ctx.span.scan_range, ctx.span.intra_charge, strict=True)},
        "reproduce": run.reproduce,
        "warnings": list(run.warnings),
    }


def write_outputs(run: DemoRun, out: Path, progress: Progress_ | None = None) -> dict[str, Path]:
    """``report.html``, ``summary.json``, ``accounts.csv`` and ``portfolio.csv`` in ``out``."""
    from xmargin.pricing.report import curve_report
    from xmargin.reports.csv_safe import SafeDictWriter, SafeWriter
    from xmargin.reports.html import CHARTS, render_charts, render_report, write_report

    out.mkdir(parents=True, exist_ok=True)
    snap = run.context.snapshot
    if progress:
        progress("rendering report", 0, len(CHARTS))
    sofr = snap.sofr.on_or_before(snap.as_of)[1] if snap.sofr is not None else None
    charts = render_charts(run.savings, curve_report(snap), sofr)
    params = demo_parameters(run)
    counts = params["book"]
    headline = {"members": str(counts["members"]),
                "accounts": f"{counts['accounts']:,} ({counts['customers']:,} customers)",
                "electing cross-margining": f"{counts['electing_cross_margining']:,}"}
    prov = demo_provenance(run, out)
    doc = render_report(run.savings, charts, title=f"xmargin cross-margining demo, as of {snap.as_of}",
                        headline=headline, parameters=params, reproduce=run.reproduce, warnings=run.warnings,
                        provenance=prov)
    paths = {"report": write_report(out / "report.html", doc)}
    paths["summary"] = out / "summary.json"
    paths["summary"].write_text(json.dumps({"parameters": params, "savings": run.savings.to_dict(),
                                            "provenance": prov}, indent=2, default=str) + "\n")
    paths["accounts"] = out / "accounts.csv"
    with paths["accounts"].open("w", newline="") as fh:
        w = SafeWriter(fh)
        w.writerow(["account", "member", "account_type", "archetype", "cross_margin", *ACCOUNT_FIGURES])
        for a in run.savings.accounts:
            w.writerow([a.account, a.member, a.account_type, a.archetype, a.cross_margin,
                        *(f"{getattr(a.figures, k):.2f}" for k in ACCOUNT_FIGURES)])
    from xmargin.portfolio.rows import (  # here: scipy is slow to import
        PORTFOLIO_COLUMNS,
        portfolio_rows,
    )

    paths["portfolio"] = out / "portfolio.csv"
    with paths["portfolio"].open("w", newline="") as fh:
        dw = SafeDictWriter(fh, fieldnames=PORTFOLIO_COLUMNS)
        dw.writeheader()
        dw.writerows(portfolio_rows(run.book))
    paths["members"] = out / "members.csv"
    with paths["members"].open("w", newline="") as fh:
        mw = SafeWriter(fh)
        mw.writerow(["member", "ficc_netting_member", "cme_clearing_member", "bd_fcm", "name", "affiliates"])
        for m in demo_members(run.book).members.values():
            mw.writerow([m.member, "true", "true", "true", m.name, ";".join(m.affiliates)])
    if progress:
        progress("rendering report", len(CHARTS), len(CHARTS))
    return paths


def demo_provenance(run: DemoRun, out: Path) -> dict[str, Any]:
    """The provenance block of the demo's outputs (:mod:`xmargin.reports.provenance`)."""
    from xmargin.reports.provenance import provenance

    ctx = run.context
    return provenance(as_of=ctx.snapshot.as_of, data_dir=ctx.snapshot.data_dir, params=ctx.params.to_dict(),
                      eligibility=ctx.eligibility, members=demo_members(run.book),
                      as_of_rule=run.as_of_rule)


def write_statements(run: DemoRun, out: Path, accounts: list[str] | None = None,
                     progress: Progress_ | None = None) -> list[Path]:
    """One statement (JSON + HTML, :mod:`xmargin.reports.statement`) per customer (or per
    named account) in ``out/statements``; each is the account alone on the run's context."""
    from dataclasses import replace

    from xmargin.reports.statement import write_statement
    from xmargin.workflow import statement_from

    env = replace(run.env, members=demo_members(run.book)) if run.env is not None else None
    index = run.book.account_index()
    names = accounts if accounts is not None else [a.account for a in run.book.accounts
                                                   if a.account_type == "customer"]
    written: list[Path] = []
    for k, name in enumerate(names):
        doc = statement_from(env, run.context, run.book.select([index[name]]), out / "portfolio.csv")
        written.append(write_statement(doc, out / "statements")["html"])
        if progress:
            progress("writing statements", k + 1, len(names))
    return written


def print_summary(run: DemoRun, paths: dict[str, Path]) -> None:
    s = run.savings
    c = book_counts(run.book)
    console.print(f"[bold]xmargin demo[/] as of {run.context.snapshot.as_of}: {c['members']} clearing members, "
                  f"{c['accounts']:,} accounts ({c['house']} house, {c['affiliates']} affiliate, "
                  f"{c['customers']:,} customers; {c['electing_cross_margining']:,} electing cross-margining), "
                  f"{c['instruments']} instruments", highlight=False)
    cols = ["member", "accounts", "house before", "house after", "customers before", "customers after",
            "total before", "total after", "savings", "savings %", "funding saved/yr"]
    rows: list[list[Any]] = [[m.member, m.total.accounts, m.house.before, m.house.after, m.customers.before,
                              m.customers.after, m.total.before, m.total.after, m.total.savings,
                              f"{m.total.savings_pct:.1f}", m.total.funding_saved] for m in s.members]
    mk = s.market
    rows.append(["MARKET", mk.accounts, s.market_house.before, s.market_house.after, s.market_customers.before,
                 s.market_customers.after, mk.before, mk.after, mk.savings, f"{mk.savings_pct:.1f}", mk.funding_saved])
    console.print(table("Margin before / after cross-margining (dollars; customers gross)", cols, rows, digits=0))
    console.print(table("By archetype", ["archetype", "accounts", "before", "after", "savings", "savings %"],
                        [[k, f.accounts, f.before, f.after, f.savings, f"{f.savings_pct:.1f}"]
                         for k, f in s.by_archetype.items()], digits=0))
    console.print(
        f"Systemic: margin {mk.before:,.0f} -> {mk.after:,.0f}; worst historical loss {mk.stressed_loss_before:,.0f}"
        f" -> {mk.stressed_loss_after:,.0f} (coverage {mk.coverage_before:.2f}x -> {mk.coverage_after:.2f}x). "
        f"Funding at {s.funding.rate_pct:.2f}% ({s.funding.base} {s.funding.base_pct:.2f}% + {s.funding.spread_bp:g} bp):"
        f" {mk.funding_saved:,.0f} saved per year.", highlight=False)
    for w in run.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if s.excluded:
        err_console.print(f"[yellow]warning:[/] {len(s.excluded)} accounts could not be margined and are left out")
    console.print(f"Report: {paths['report']}", highlight=False, soft_wrap=True)


def demo(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="As-of date YYYY-MM-DD. Default: the last curve on or before the securities master's last "
        "original issue date (the auction data ends in 2024-08; later dates would miss new issues and futures "
        "deliverables).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html, summary.json, accounts.csv, "
                                      "portfolio.csv.")] = Path("xmargin-demo"),
    members: Annotated[int, typer.Option("--members", help="Clearing members (BD-FCMs).")] = 5,
    customers: Annotated[int, typer.Option("--customers", help="End-user customers per member.")] = 300,
    affiliates: Annotated[int, typer.Option("--affiliates", help="Affiliate (house) accounts per member.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same book.")] = 20260430,
    xm_share: Annotated[float, typer.Option("--xm-share", help="Share of customers/affiliates electing "
                                            "cross-margining (0-1).")] = 0.75,
    house_xm: Annotated[bool, typer.Option("--house-xm/--no-house-xm", help="House accounts elect "
                                           "cross-margining.")] = True,
    repo_haircut: Annotated[float, typer.Option("--repo-haircut", help="Repo haircut (fraction).")] = 0.02,
    partial_share: Annotated[float, typer.Option("--partial-share", help="Share of electing customers keeping their "
                                                 "SOFR/fed funds futures in ordinary accounts (0-1).")] = 0.2,
    statements: Annotated[bool, typer.Option("--statements", help="Also write one statement (JSON + HTML) per "
                                             "customer in OUT/statements.")] = False,
    funding_spread_bp: Annotated[float, typer.Option("--funding-spread-bp", help="Funding spread over the base "
                                                     "rate, bp.")] = FUNDING_SPREAD_BP,
    funding_base: Annotated[float | None, typer.Option("--funding-base", help="Funding base rate, percent "
                                                       "(default: the as-of SOFR fixing).")] = None,
    data_dir: DataDirOption = None,
    previous_business_day: PrevBusinessDayOption = False,
    config: ConfigOption = None,
    eligibility: EligibilityOption = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Demo: a realistic cross-margining market on real data, its savings, and an HTML report.

    Builds clearing members, each with a house account, affiliates and customers drawn from
    archetypes (basis traders, relative-value curve funds, asset managers, directional futures
    accounts, dealers with repo books) in real CUSIPs, listed futures and repo; margins every
    account stand-alone and cross-margined (customers gross); prints savings per member and
    archetype, funding saved and the systemic view; writes report.html (offline, charts
    embedded), summary.json, accounts.csv and portfolio.csv (re-margin it with xmargin margin).
    The default date is the last one the securities master covers (see --as-of).
    """
    from xmargin.portfolio.demo import DemoConfig

    cfg = DemoConfig(members=members, customers_per_member=customers, affiliates_per_member=affiliates, seed=seed,
                     xm_share=xm_share, house_xm=house_xm, repo_haircut=repo_haircut, partial_share=partial_share)
    day = parse_date(as_of) if as_of else None
    with progress_reporter() as progress:
        run = run_demo(cfg, as_of=day, data_dir=data_dir, previous_business_day=previous_business_day,
                       params=config, eligibility=eligibility,
                       funding_spread_bp=funding_spread_bp, funding_base_pct=funding_base, progress=progress)
        paths = write_outputs(run, out, progress)
        if statements:
            written = write_statements(run, out, progress=progress)
            paths["statements"] = out / "statements"
            err_console.print(f"{len(written)} statements in {paths['statements']}", highlight=False)
    if format is OutputFormat.json:
        emit_json({"parameters": demo_parameters(run), "savings": run.savings.to_dict(),
                   "files": {k: str(v) for k, v in paths.items()}})
        return
    print_summary(run, paths)


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo))
