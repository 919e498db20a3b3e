"""Per account: how the cross-margin reduction was reached, and which account holds what.

``reduction_explained`` restates the reduction of :mod:`xmargin.margin.cross` with its
inputs, every figure labelled::

    F_sa, C_sa      stand-alone requirements of the elected, eligible positions (FICC VaR, CME SPAN)
    F_comb, C_comb  each house's model on the combined elected portfolio
    r_FICC = max(0, 1 - F_comb / (F_sa + C_sa)),  r_CME = max(0, 1 - C_comb / (F_sa + C_sa))
    applied = min(r_FICC, r_CME, cap)

The formula and the cap are **choices** (``[cross] reduction_cap``; the public record says
"up to 80%" and that each house computes its own factor; see docs/methodology.md).

``account_split`` margins the two halves of each account on their own: the positions in the
cross-margining account (elected and eligible: FICC Cross-Margining Customer Account and CME
customer cross-margin account for a customer) and the rest, in the ordinary accounts,
margined stand-alone.  The calculator is additive over the two halves, so the halves sum to
the account's figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from xmargin.margin.calculator import AccountMargins, margins_for_positions
from xmargin.margin.context import MarginContext
from xmargin.portfolio.book import Account, Book

FORMULA = ("r_FICC = max(0, 1 - F_comb / (F_sa + C_sa)); r_CME = max(0, 1 - C_comb / (F_sa + C_sa)); "
           "applied = min(r_FICC, r_CME, cap)")
FORMULA_STATUS = ("choice: each clearinghouse computes its own margin reduction factor (CME FAQ, primary) and the "
                  "more conservative applies (secondary); the exact formula is not public")
CAP_SOURCE = ("choice, configurable ([cross] reduction_cap): CME's programme page says savings of 'up to 80%'; "
              "no clause of the agreement stating a cap was read")
#: Labels of the reduction record's fields, for tables and the JSON reader.
REDUCTION_LABELS = {
    "f_sa": "F_sa: FICC stand-alone VaR of the elected eligible FICC positions ($)",
    "c_sa": "C_sa: CME stand-alone requirement of the elected eligible futures ($)",
    "f_comb": "F_comb: FICC model on the combined elected portfolio ($)",
    "c_comb": "C_comb: CME model on the combined elected portfolio ($)",
    "r_ficc": "r_FICC: FICC's reduction factor (fraction)",
    "r_cme": "r_CME: CME's reduction factor (fraction)",
    "minimum": "min(r_FICC, r_CME): the more conservative factor (fraction)",
    "cap": "cap on the reduction (fraction)",
    "applied": "applied reduction factor (fraction)",
    "binding": "what set the applied factor: ficc, cme, cap or none",
    "why": "why, in words",
}


def account_labels(acc: Account) -> dict[str, str]:
    """Names of the accounts an account's positions sit in at each clearinghouse."""
    if acc.account_type == "customer":
        return {"ficc_xm": "FICC Cross-Margining Customer Account", "cme_xm": "CME customer cross-margin account",
                "ficc_ordinary": "FICC customer account (not cross-margined)",
                "cme_ordinary": "CME customer segregated account (not cross-margined)"}
    kind = "affiliate" if acc.account_type == "affiliate" else "house"
    return {"ficc_xm": f"FICC {kind} cross-margining account", "cme_xm": f"CME {kind} cross-margin account",
            "ficc_ordinary": f"FICC {kind} account (not cross-margined)",
            "cme_ordinary": f"CME {kind} account (not cross-margined)"}


def reduction_explained(rec: dict[str, Any], cap: float) -> dict[str, Any]:
    """The reduction of one ``xmargin margin`` account record, step by step."""
    comp = rec["components"]
    f_sa, c_sa = comp["ficc_var_eligible"], comp["cme_standalone_eligible"]
    r_f, r_c = rec["ficc_reduction_factor"], rec["cme_reduction_factor"]
    applied = rec["applied_reduction_factor"]
    out: dict[str, Any] = {"f_sa": f_sa, "c_sa": c_sa, "f_comb": rec["ficc_combined"], "c_comb": rec["cme_combined"],
                           "r_ficc": r_f, "r_cme": r_c, "minimum": None if r_f is None or r_c is None else min(r_f, r_c),
                           "cap": cap, "applied": applied}
    if not rec["cross_margin"]:
        binding, why = "none", "the account has not elected cross-margining"
    elif rec["status"] != "ok":
        binding, why = "none", f"no reduction: {rec['reason']}"
    elif not (f_sa or 0) > 0 or not (c_sa or 0) > 0:
        binding, why = "none", "no elected eligible positions at one of the clearinghouses: nothing to offset"
    elif applied == 0:
        binding, why = "none", "the combined portfolio is no less risky than the two stand-alone parts"
    elif out["minimum"] is not None and out["minimum"] > cap:
        binding, why = "cap", (f"both factors exceed the cap: min(r_FICC {r_f:.4f}, r_CME {r_c:.4f}) = "
                               f"{out['minimum']:.4f} > cap {cap:.4f}, so the cap applies")
    elif r_f <= r_c:
        binding, why = "ficc", (f"FICC's factor {r_f:.4f} is the more conservative (CME's: {r_c:.4f}) "
                                f"and below the cap {cap:.4f}")
    else:
        binding, why = "cme", (f"CME's factor {r_c:.4f} is the more conservative (FICC's: {r_f:.4f}) "
                               f"and below the cap {cap:.4f}")
    out |= {"binding": binding, "why": why, "formula": FORMULA, "formula_status": FORMULA_STATUS,
            "cap_source": CAP_SOURCE}
    return out


def _clean(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def account_split(context: MarginContext, book: Book, *, chunk_size: int = 2048) -> list[dict[str, Any]]:
    """Per account: the cross-margining account's figures and the ordinary accounts' (dollars)."""
    a = context.attributes
    q_all = book.positions
    q_el = book.elected_positions()
    out: list[dict[str, Any]] = []
    for start in range(0, book.size, chunk_size):
        rows = slice(start, min(start + chunk_size, book.size))
        q = q_all[rows]
        q_e = (q_el[rows] @ sp.diags(a.eligible.astype(np.float64))).tocsr()
        q_r = (q - q_e).tocsr()
        n = q.shape[0]
        xm: AccountMargins = margins_for_positions(context, q_e, np.ones(n, dtype=bool))
        ordinary: AccountMargins = margins_for_positions(context, q_r, np.zeros(n, dtype=bool))
        for k in range(n):
            acc = book.accounts[start + k]
            labels = account_labels(acc)
            out.append({
                "account": acc.account,
                "cross_margin_account": {
                    "ficc_account": labels["ficc_xm"], "cme_account": labels["cme_xm"],
                    "positions": int((q_e[k] != 0).sum()),
                    "ficc_standalone": _clean(xm.ficc_standalone[k]), "cme_standalone": _clean(xm.cme_standalone[k]),
                    "ficc_requirement": _clean(xm.ficc_requirement[k]),
                    "cme_requirement": _clean(xm.cme_requirement[k]),
                    "total_before": _clean(xm.total_before[k]), "total_after": _clean(xm.total_after[k]),
                    "savings": _clean(xm.savings[k]),
                },
                "ordinary_accounts": {
                    "ficc_account": labels["ficc_ordinary"], "cme_account": labels["cme_ordinary"],
                    "positions": int((q_r[k] != 0).sum()),
                    "ficc_requirement": _clean(ordinary.ficc_requirement[k]),
                    "cme_requirement": _clean(ordinary.cme_requirement[k]),
                    "total": _clean(ordinary.total_after[k]),
                },
            })
    return out
