"""End-to-end jobs shared by the command line, the service and the batch runner.

``margin_job`` is the whole data flow for one portfolio file: market snapshot -> scenarios
-> instrument scenario P&L -> account P&L -> margin models -> cross-margin -> records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from xmargin.margin.calculator import AccountMargins, compute_margins
from xmargin.margin.context import MarginContext, build_context
from xmargin.margin.params import MarginParams, load_params
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Book
from xmargin.portfolio.io import read_portfolio
from xmargin.pricing.residual_pnl import residual_summary
from xmargin.reference.eligibility import EligibilityRules, load_eligibility
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reports.margin import account_records, explain_account, totals


@dataclass(frozen=True, eq=False)
class Environment:
    """Market, reference data and model settings for one as-of date."""

    snapshot: MarketSnapshot
    master: SecuritiesMaster
    params: MarginParams
    eligibility: EligibilityRules

    @classmethod
    def load(
        cls,
        as_of: date,
        *,
        data_dir: str | Path | None = None,
        previous_business_day: bool = False,
        config: str | Path | None = None,
        eligibility: str | Path | None = None,
        futures_history: str | Path | None = None,
    ) -> Environment:
        snapshot = load_snapshot(as_of, data_dir=data_dir, previous_business_day=previous_business_day)
        params = with_futures_history(load_params(config), futures_history)
        return cls(snapshot, load_master(snapshot.data_dir), params, load_eligibility(eligibility))

    def read_book(self, path: str | Path) -> Book:
        return read_portfolio(path, as_of=self.snapshot.as_of, master=self.master, eligibility=self.eligibility)

    def context(self, book: Book) -> MarginContext:
        return build_context(self.snapshot, self.master, book.universe, self.params, self.eligibility)


def with_futures_history(params: MarginParams, path: str | Path | None) -> MarginParams:
    """``params`` reading futures prices from ``path`` (``--futures-history``), when given."""
    if not path:
        return params
    from dataclasses import replace

    from xmargin.market.futures_history import load_futures_history

    load_futures_history(path)  # bad input fails here, naming file, row and field
    return replace(params, residual=replace(params.residual, futures_history=str(Path(path).resolve())))


def margin_payload(
    context: MarginContext, book: Book, margins: AccountMargins, *, explain: bool = False
) -> dict[str, Any]:
    """The ``xmargin margin --format json`` document (CME initial beside maintenance, and a CME
    parameter file's steps when the context has one: :mod:`xmargin.formats.cme_margin`)."""
    from xmargin.formats.cme_margin import add_cme_figures

    records = account_records(context, book, margins)
    if explain:
        for i, rec in enumerate(records):
            rec["explain"] = explain_account(context, book, i)
    doc = {
        "as_of": context.snapshot.as_of.isoformat(),
        "model": {
            "params": context.params.to_dict(),
            "eligibility": context.eligibility.source,
            "ficc_scenarios": context.ficc_scenarios.size,
            "ficc_stress_period": [str(d) for d in context.ficc_scenarios.stress_period or ()],
            "cme_scenarios": context.cme_scenarios.size,
            "cme_stress_period": [str(d) for d in context.cme_scenarios.stress_period or ()],
            "span": {
                "roots": list(context.span.roots),
                "scan_range": [float(v) for v in context.span.scan_range],
                "intra_spread_charge": [float(v) for v in context.span.intra_charge],
                "inter_pairs": [[context.span.roots[p], context.span.roots[q], r] for p, q, r in context.span.inter_pairs],
            },
            "residual": residual_summary(context.residual),
        },
        "warnings": list(book.warnings),
        "accounts": records,
        "totals": totals(margins),
    }
    return add_cme_figures(doc, context, book, margins, explain=explain)


def margin_job(
    env: Environment,
    portfolio: str | Path,
    *,
    explain: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    cme_params: str | Path | None = None,
) -> dict[str, Any]:
    """Read a portfolio, margin every account, return the JSON document.

    ``cme_params``: a CME SPAN parameter file for the CME stand-alone figures
    (:mod:`xmargin.formats.cme_margin`); the calibration when ``None``."""
    from xmargin.formats.cme_margin import attach_cme_file

    span_file = None
    if cme_params is not None:
        from xmargin.formats.pa2 import load_span_file

        span_file = load_span_file(cme_params)
    book = env.read_book(portfolio)
    if progress:
        progress("pricing scenarios", 0, 1)
    context = env.context(book)
    if span_file is not None:
        context = attach_cme_file(context, span_file)
    if progress:
        progress("pricing scenarios", 1, 1)
    margins = compute_margins(
        context, book, progress=(lambda d, t: progress("accounts", d, t)) if progress else None
    )
    return margin_payload(context, book, margins, explain=explain)
