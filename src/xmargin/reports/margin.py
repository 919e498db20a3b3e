"""Margin results as records: the ``xmargin margin`` JSON contract and its explanations.

JSON shape (field names fixed; other tools read them)::

    {"as_of", "model": {...parameters...}, "accounts": [{"account", "member", "account_type",
     "cross_margin", "ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined",
     "ficc_reduction_factor", "cme_reduction_factor", "applied_reduction_factor",
     "ficc_requirement", "cme_requirement", "total_before", "total_after", "savings",
     "savings_pct", "components": {...}, "status", "reason"}], "totals": {...}}

Money in dollars, factors as fractions, ``savings_pct`` in percent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xmargin.margin.calculator import AccountMargins
from xmargin.margin.context import MarginContext
from xmargin.margin.var import var_scenario, worst_scenarios
from xmargin.portfolio.book import Book

HEADLINE = (
    "ficc_standalone",
    "cme_standalone",
    "ficc_combined",
    "cme_combined",
    "ficc_reduction_factor",
    "cme_reduction_factor",
    "applied_reduction_factor",
    "ficc_requirement",
    "cme_requirement",
    "total_before",
    "total_after",
    "savings",
    "savings_pct",
)
COMPONENTS = (
    "ficc_var",
    "ficc_var_eligible",
    "ficc_floor",
    "ficc_floor_topup",
    "ficc_concentration",
    "ficc_stress_used",
    "span_scan_risk",
    "span_intra_spread_charge",
    "span_inter_spread_credit",
    "cme_var",
    "cme_standalone_eligible",
    "stressed_loss_ficc",
    "stressed_loss_cme",
    "stressed_loss_combined",
)
SUMMED = tuple(f for f in HEADLINE if f not in ("ficc_reduction_factor", "cme_reduction_factor",
                                                  "applied_reduction_factor", "savings_pct"))


def _clean(value: float | bool) -> float | bool | None:
    if isinstance(value, bool):
        return value
    return None if not np.isfinite(value) else float(value)


def _reason(context: MarginContext, book: Book, i: int, margins: AccountMargins) -> tuple[str, str]:
    if margins.computable[i] and not margins.fallback[i]:
        if margins.applied_reduction_factor[i] == 0 and book.accounts[i].cross_margin:
            if margins.ficc_var_eligible[i] <= 0 or margins.cme_standalone_eligible[i] <= 0:
                return "ok", "no eligible positions at one of the clearinghouses: nothing to offset"
        if not book.accounts[i].cross_margin:
            return "ok", "account has not elected cross-margining"
        return "ok", ""
    failures = context.failures
    held = [inst for inst, _ in book.positions_of(i) if inst in failures]
    roots = set(context.span.roots)
    no_span = [inst for inst, _ in book.positions_of(i)
               if context.attributes.is_cme[context.universe.index(inst)]
               and context.attributes.span_root[context.universe.index(inst)] < 0 and inst not in failures]
    details = "; ".join([f"{inst}: {failures[inst]}" for inst in held] +
                        [f"{inst}: no SPAN parameters for its product (calibrated: {sorted(roots)})" for inst in no_span])
    if not margins.computable[i]:
        return "error", f"cannot margin the account: {details}"
    return "fallback", f"cross-margin calculation could not complete, no reduction applied: {details}"


def account_records(context: MarginContext, book: Book, margins: AccountMargins) -> list[dict[str, Any]]:
    records = []
    for i, acc in enumerate(book.accounts):
        row = margins.row(i)
        status, reason = _reason(context, book, i, margins)
        rec: dict[str, Any] = {
            "account": acc.account,
            "member": acc.member,
            "account_type": acc.account_type,
            "cross_margin": acc.cross_margin,
        }
        rec |= {k: _clean(row[k]) for k in HEADLINE}
        rec["components"] = {k: _clean(row[k]) for k in COMPONENTS}
        rec["status"] = status
        rec["reason"] = reason
        records.append(rec)
    return records


def totals(margins: AccountMargins) -> dict[str, float]:
    out = {k: float(np.nansum(getattr(margins, k))) for k in SUMMED}
    before = out["total_before"]
    out["savings_pct"] = out["savings"] / before * 100.0 if before > 0 else 0.0
    out["accounts"] = float(len(margins.total_before))
    return out


def explain_account(context: MarginContext, book: Book, i: int, *, top: int = 5) -> dict[str, Any]:
    """The scenarios (history dates) behind each VaR figure and the largest contributors.

    Each figure also carries its ``var`` and the Euler (component) contribution of every
    position in it (``euler_contributions``, largest first; they sum to ``var``: each is the
    position's loss in the VaR scenario, :mod:`xmargin.margin.attribution`).  Each listed
    contributor carries its ``euler_contribution`` and its ``incremental_margin``: the
    account's cross-margined requirement with the position minus without it.
    """
    from xmargin.margin.attribution import euler_contributions, incremental_margins
    from xmargin.pricing.residual_pnl import factor_split

    q = book.positions[i]
    a = context.attributes
    xm = book.accounts[i].cross_margin
    eligible = a.eligible & xm
    ficc = ~a.is_cme
    ids = context.universe.ids
    out: dict[str, Any] = {}
    fset, cset = context.ficc_scenarios, context.cme_scenarios
    conf_f, conf_c = context.params.ficc.confidence, context.params.cme.var_confidence
    dense = np.asarray(q.todense()).ravel()
    held = np.flatnonzero(dense)
    _, incremental = incremental_margins(context, q, xm)
    inc = {int(j): float(v) if np.isfinite(v) else None for j, v in zip(held, incremental, strict=True)}
    # quantities in the cross-margining account (per-position election, else the account's)
    elected = np.asarray(book.elected_positions()[i].todense()).ravel() if book.elected is not None else dense
    for name, mask, scen, pnl, conf in (
        ("ficc_var", ficc & eligible if xm else ficc, fset, context.ficc_pnl.pnl, conf_f),
        ("ficc_combined", eligible, fset, context.ficc_pnl.pnl, conf_f),
        ("cme_combined", eligible, cset, context.cme_pnl.pnl, conf_c),
    ):
        qm = np.where(mask, elected if xm else dense, 0.0)
        if not qm.any():
            continue
        res = context.residual
        scen_changes = (res.cme_changes if scen is cset else res.ficc_changes) if res is not None else np.zeros((0, 0))
        contrib = qm[:, None] * np.nan_to_num(pnl)  # N x S
        account_pnl = contrib.sum(axis=0)
        s_var = var_scenario(account_pnl, scen.is_stress, conf)
        worst = worst_scenarios(account_pnl, top)
        order = np.argsort(contrib[:, s_var])
        rows = np.flatnonzero(qm)
        var, euler = euler_contributions(contrib[rows], scen.is_stress, conf)
        by_size = np.argsort(-euler, kind="stable")
        out[name] = {
            "var_scenario": {"window": scen.label(s_var), "pnl": float(account_pnl[s_var])},
            "worst_scenarios": [{"window": scen.label(int(s)), "pnl": float(account_pnl[s])} for s in worst],
            "largest_contributors": [
                {"instrument": ids[j], "quantity": float(dense[j]), "pnl_in_var_scenario": float(contrib[j, s_var]),
                 "euler_contribution": float(-contrib[j, s_var]) if var > 0 else 0.0, "incremental_margin": inc.get(int(j))}
                for j in order[:top] if qm[j] != 0
            ],
            "var": var,
            "risk_factors": factor_split(context.residual, qm, scen_changes, account_pnl, s_var),
            "euler_contributions": [
                {"instrument": ids[rows[k]], "quantity": float(dense[rows[k]]), "contribution": float(euler[k])}
                for k in by_size
            ],
        }
    return out
