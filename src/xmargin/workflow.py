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
    ) -> Environment:
        snapshot = load_snapshot(as_of, data_dir=data_dir, previous_business_day=previous_business_day)
        return cls(snapshot, load_master(snapshot.data_dir), load_params(config), load_eligibility(eligibility))

    def read_book(self, path: str | Path) -> Book:
        return read_portfolio(path, as_of=self.snapshot.as_of, master=self.master, eligibility=self.eligibility)

    def context(self, book: Book) -> MarginContext:
        return build_context(self.snapshot, self.master, book.universe, self.params, self.eligibility)


def margin_payload(
    context: MarginContext, book: Book, margins: AccountMargins, *, explain: bool = False
) -> dict[str, Any]:
    """The ``xmargin margin --format json`` document."""
    records = account_records(context, book, margins)
    if explain:
        for i, rec in enumerate(records):
            rec["explain"] = explain_account(context, book, i)
    return {
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
        },
        "warnings": list(book.warnings),
        "accounts": records,
        "totals": totals(margins),
    }


def margin_job(
    env: Environment,
    portfolio: str | Path,
    *,
    explain: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Read a portfolio, margin every account, return the JSON document."""
    book = env.read_book(portfolio)
    if progress:
        progress("pricing scenarios", 0, 1)
    context = env.context(book)
    if progress:
        progress("pricing scenarios", 1, 1)
    margins = compute_margins(
        context, book, progress=(lambda d, t: progress("accounts", d, t)) if progress else None
    )
    return margin_payload(context, book, margins, explain=explain)
