"""End-to-end jobs shared by the command line, the service and the batch runner.

``margin_job`` is the whole data flow for one portfolio file: market snapshot -> scenarios
-> instrument scenario P&L -> account P&L -> margin models -> cross-margin -> records.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
from xmargin.portfolio.members import (
    MemberRegistry,
    check_registrations,
    load_members,
    portfolio_members,
)
from xmargin.pricing.residual_pnl import residual_summary
from xmargin.reference.eligibility import EligibilityRules, load_eligibility
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reports.margin import account_records, explain_account, totals


def default_as_of(data_dir: str | Path | None = None) -> date:
    """The one default as-of date of every command: :func:`xmargin.market.asof.complete_as_of`
    (the last curve on which curves, securities master and fixings are all complete)."""
    from xmargin.config import resolve_data_dir
    from xmargin.market.asof import complete_as_of

    root = resolve_data_dir(data_dir)
    return complete_as_of(root, load_master(root))


@dataclass(frozen=True, eq=False)
class Environment:
    """Market, reference data and model settings for one as-of date."""

    snapshot: MarketSnapshot
    master: SecuritiesMaster
    params: MarginParams
    eligibility: EligibilityRules
    members: MemberRegistry | None = None  # None: every member taken as dually registered

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
        members: str | Path | None = None,
    ) -> Environment:
        registry = load_members(members) if members is not None else None
        snapshot = load_snapshot(as_of, data_dir=data_dir, previous_business_day=previous_business_day)
        params = with_futures_history(load_params(config), futures_history)
        return cls(snapshot, load_master(snapshot.data_dir), params, load_eligibility(eligibility), registry)

    def read_book(self, path: str | Path) -> Book:
        """Read a portfolio and check its members' registrations (members file, else the
        portfolio's own ``members``, else none)."""
        book = read_portfolio(path, as_of=self.snapshot.as_of, master=self.master, eligibility=self.eligibility)
        check_registrations(book, self.registry_for(path))
        return book

    def registry_for(self, path: str | Path) -> MemberRegistry | None:
        return self.members if self.members is not None else portfolio_members(path)

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


_MODEL_KEPT: OrderedDict[tuple[int, ...], tuple[tuple[object, ...], dict[str, Any]]] = OrderedDict()
_MODEL_LOCK = threading.Lock()


def _model_section(context: MarginContext) -> dict[str, Any]:
    """The document's ``model`` section: the context's parameters, scenario sets, SPAN
    calibration and residual factors.  Built once per set of those (immutable) objects -- a
    portfolio what-if answers it on every request, and the parameters' ``to_dict`` alone was
    a twentieth of one -- and handed out as a new dict each time (whose parts are shared:
    nothing modifies them; :func:`~xmargin.formats.cme_margin.add_cme_figures` adds keys to
    the section itself)."""
    parts = (context.params, context.eligibility, context.ficc_scenarios, context.cme_scenarios, context.span,
             context.residual)
    key = tuple(id(x) for x in parts)
    with _MODEL_LOCK:
        kept = _MODEL_KEPT.get(key)
        if kept is not None and all(a is b for a, b in zip(kept[0], parts, strict=True)):
            _MODEL_KEPT.move_to_end(key)
            return dict(kept[1])
    span = context.span
    section = {
        "params": context.params.to_dict(),
        "eligibility": context.eligibility.source,
        "ficc_scenarios": context.ficc_scenarios.size,
        "ficc_stress_period": [str(d) for d in context.ficc_scenarios.stress_period or ()],
        "cme_scenarios": context.cme_scenarios.size,
        "cme_stress_period": [str(d) for d in context.cme_scenarios.stress_period or ()],
        "span": {
            "roots": list(span.roots),
            "scan_range": [float(v) for v in span.scan_range],
            "intra_spread_charge": [float(v) for v in span.intra_charge],
            "inter_pairs": [[span.roots[p], span.roots[q], r] for p, q, r in span.inter_pairs],
        },
        "residual": residual_summary(context.residual),
    }
    with _MODEL_LOCK:
        _MODEL_KEPT[key] = (parts, section)  # the parts kept alive: their ids stay theirs
        while len(_MODEL_KEPT) > 16:
            _MODEL_KEPT.popitem(last=False)
    return dict(section)


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
        "model": _model_section(context),
        "warnings": list(book.warnings),
        "accounts": records,
        "totals": totals(margins),
    }
    return add_cme_figures(doc, context, book, margins, explain=explain)


def audit_payload(payload: dict[str, Any], env: Environment, context: MarginContext, book: Book,
                  portfolio: str | Path | None, *, explain: bool = False, as_of_rule: str = "") -> dict[str, Any]:
    """Add what a risk manager needs to audit the document (``xmargin margin``, statements):

    * ``provenance`` (:mod:`xmargin.reports.provenance`);
    * per account ``arrangement``: the cross-margining account's and the ordinary accounts'
      figures (:func:`xmargin.reports.arrangement.account_split`), and with ``explain`` the
      ``reduction`` step by step (:func:`xmargin.reports.arrangement.reduction_explained`);
    * warnings for incomplete futures baskets (:func:`xmargin.market.asof.basket_warnings`).
    """
    from xmargin.market.asof import basket_warnings
    from xmargin.reports.arrangement import REDUCTION_LABELS, account_split, reduction_explained
    from xmargin.reports.provenance import provenance

    cap = context.params.cross.reduction_cap
    for rec, split in zip(payload["accounts"], account_split(context, book), strict=True):
        rec["arrangement"] = {k: v for k, v in split.items() if k != "account"}
        if explain:
            rec["reduction"] = reduction_explained(rec, cap)
    if explain:
        payload["reduction_labels"] = REDUCTION_LABELS
    payload["warnings"] = [*payload["warnings"],
                           *basket_warnings(book.universe.instruments, env.master, context.snapshot.as_of)]
    inputs = {"portfolio": portfolio} if portfolio else {}
    if env.members is not None:
        inputs["members file"] = env.members.source
    payload["provenance"] = provenance(
        as_of=context.snapshot.as_of, data_dir=context.snapshot.data_dir, params=context.params.to_dict(),
        eligibility=context.eligibility, members=env.registry_for(portfolio) if portfolio else env.members,
        inputs=inputs, as_of_rule=as_of_rule)
    return payload


def margin_job(
    env: Environment,
    portfolio: str | Path,
    *,
    explain: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    cme_params: str | Path | None = None,
    audit: bool = False,
    as_of_rule: str = "",
) -> dict[str, Any]:
    """Read a portfolio, margin every account, return the JSON document (``audit``: with
    :func:`audit_payload`'s additions, as ``xmargin margin`` prints it).

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
    payload = margin_payload(context, book, margins, explain=explain)
    if audit:
        audit_payload(payload, env, context, book, portfolio, explain=explain, as_of_rule=as_of_rule)
    return payload


def statement_from(env: Environment, context: MarginContext, sub: Book, portfolio: str | Path | None, *,
                   as_of_rule: str = "") -> dict[str, Any]:
    """The statement (:mod:`xmargin.reports.statement`) of the one account of ``sub`` on
    ``context``: the same functions as ``xmargin margin`` on the account alone (per customer,
    gross), so the figures agree to the cent."""
    from xmargin.reports.statement import statement_document

    margins = compute_margins(context, sub)
    payload = margin_payload(context, sub, margins, explain=True)
    audit_payload(payload, env, context, sub, portfolio, explain=True, as_of_rule=as_of_rule)
    registry = env.registry_for(portfolio) if portfolio else env.members
    return statement_document(payload, context, sub, registry)


def statement_job(env: Environment, portfolio: str | Path, account: str, *, as_of_rule: str = "") -> dict[str, Any]:
    """``xmargin statement``: read the portfolio, margin ``account`` alone, its statement."""
    from xmargin.errors import InputError

    book = env.read_book(portfolio)
    index = book.account_index()
    if account not in index:
        names = [a.account for a in book.accounts]
        raise InputError(f"no account '{account}' in the portfolio (accounts: {', '.join(names[:12])}"
                         f"{', ...' if len(names) > 12 else ''})", source=portfolio, field="--account")
    sub = book.select([index[account]])
    return statement_from(env, env.context(sub), sub, portfolio, as_of_rule=as_of_rule)
