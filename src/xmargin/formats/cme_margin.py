"""CME stand-alone margin from a CME SPAN parameter file, and CME initial beside maintenance.

``xmargin margin --cme-params FILE`` puts a :class:`FileSpanModel` on the margin context: the
calculator then takes each account's CME stand-alone requirement (both its cross-margin and
its regular sub-portfolio) from :func:`xmargin.formats.span_cme.cme_span` on CME's own
parameters instead of the calibration.  A futures position whose product or month the file
lacks makes its account an error naming the contract and the products the file has.

Every ``xmargin margin`` record also carries ``cme_maintenance`` (the stand-alone figure the
engine computes and the savings are based on), ``cme_initial_ratio`` and ``cme_initial``
(maintenance x the initial-to-maintenance ratio of the account class: a house account is a
member account, a customer account a speculator account; ratios from the file per combined
commodity, weighted by the commodity's maintenance, or CME's published rule without a file).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.formats.span_cme import cme_span, contract_map, explain_row
from xmargin.formats.span_params import ACCOUNT_CLASS_OF, CME_RULE_RATIOS, CmeSpanParameters
from xmargin.margin.calculator import AccountMargins
from xmargin.margin.context import MarginContext
from xmargin.margin.span import SpanResult
from xmargin.portfolio.book import Book
from xmargin.pricing.revalue import InstrumentUniverse

MARGIN_BASIS = ("CME figures, totals and savings are maintenance requirements (SPAN's core requirement, what "
                "the cross-margin reduction applies to); cme_initial = maintenance x the initial-to-maintenance "
                "ratio of the account class (house = member, customer = speculator)")


@dataclass(frozen=True, eq=False)
class FileSpanModel:
    params: CmeSpanParameters
    universe: InstrumentUniverse
    covered: npt.NDArray[np.bool_]  # universe rows with a contract in the file
    missing: dict[str, str]  # futures id -> why not covered

    @classmethod
    def build(cls, params: CmeSpanParameters, universe: InstrumentUniverse) -> FileSpanModel:
        idx, missing = contract_map(params, universe)
        return cls(params, universe, idx >= 0, missing)

    def requirement(self, q: sp.csr_matrix) -> SpanResult:
        """The calculator's SPAN figures for the rows of ``q`` (spot charge reported apart)."""
        if q.shape[1] != len(self.universe):
            raise ValueError("positions over another universe than the CME file was mapped to: attach it again")
        r = cme_span(q, self.universe, self.params)
        return SpanResult(r.scan_risk, r.intra_spread_charge, r.inter_spread_credit, r.maintenance,
                          np.zeros((q.shape[0], 0)), r.spot_charge)


def attach_cme_file(context: MarginContext, params: CmeSpanParameters) -> MarginContext:
    if context.params.cme.standalone_model != "span":
        from xmargin.errors import InputError

        raise InputError("a CME parameter file gives SPAN figures: set [cme] standalone_model = \"span\"",
                         source=params.source, field="standalone_model")
    return replace(context, cme_span_model=FileSpanModel.build(params, context.universe))


def _cme_rows(context: MarginContext, book: Book) -> sp.csr_matrix:
    return (book.positions @ sp.diags(context.attributes.is_cme.astype(np.float64))).tocsr()


def add_cme_figures(payload: dict[str, Any], context: MarginContext, book: Book, margins: AccountMargins,
                    *, explain: bool = False) -> dict[str, Any]:
    """Add initial beside maintenance (and, with a file, its steps and what it lacks) in place."""
    model: FileSpanModel | None = context.cme_span_model
    kinds = [acc.account_type for acc in book.accounts]
    rule = np.array([CME_RULE_RATIOS[ACCOUNT_CLASS_OF.get(k, "speculator")] for k in kinds])
    ratio = rule
    traced = None
    if model is not None:
        traced = cme_span(_cme_rows(context, book), context.universe, model.params, kinds, trace=explain)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(traced.maintenance > 0, traced.initial / traced.maintenance, rule)
        p = model.params
        payload["model"]["cme_params"] = {
            "source": p.source, "format": p.file_format,
            "business_date": p.business_date.isoformat() if p.business_date else None,
            "exchange_complex": p.exchange_complex, "products": p.products(),
            "missing": dict(model.missing), "notes": list(p.notes),
        }
        if p.business_date and p.business_date != context.snapshot.as_of:
            payload.setdefault("warnings", []).append(
                f"CME parameter file {p.source} is for {p.business_date}, the margin date is {context.snapshot.as_of}")
    payload["model"]["cme_margin_basis"] = MARGIN_BASIS
    total_initial = 0.0
    for i, rec in enumerate(payload["accounts"]):
        maint = rec.get("cme_standalone")
        rec["cme_maintenance"] = maint
        rec["cme_initial_ratio"] = float(ratio[i])
        rec["cme_initial"] = None if maint is None else float(maint * ratio[i])
        total_initial += rec["cme_initial"] or 0.0
        if traced is not None:
            rec["components"]["span_spot_charge"] = float(traced.spot_charge[i])
            if explain:
                rec.setdefault("explain", {})["cme_span"] = explain_row(traced, i)
            if rec["status"] == "error" and model is not None:
                held = [inst for inst, _ in book.positions_of(i) if inst in model.missing]
                if held:
                    rec["reason"] = "cannot margin the account: " + "; ".join(f"{h}: {model.missing[h]}" for h in held)
    payload["totals"]["cme_initial"] = total_initial
    return payload
