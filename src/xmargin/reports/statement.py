"""The margin statement a BD-FCM sends one customer (``xmargin statement``), JSON and HTML.

Contents: the account and its member's registrations; positions by clearinghouse and by
account (cross-margining account or ordinary account), each with its eligibility and the
source behind it, and a note's roll-out date; stand-alone margins, combined figures, r_FICC,
r_CME, the cap, which one applied and why; requirements and saving; the cross-margining
account's and the ordinary accounts' figures; the history windows (scenario dates) that
drive each VaR; warnings; and the provenance block (data files with last date and SHA-256,
parameters hash, version, generation time).

The figures are those of ``xmargin margin --format json`` for the same account, computed by
the same functions (the account alone: margin is per customer, gross), so they agree to the
cent.  The HTML is one offline file: inline CSS, charts as embedded PNGs, no scripts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from xmargin.reference.eligibility import clearinghouse
from xmargin.reports.arrangement import REDUCTION_LABELS, account_labels
from xmargin.reports.margin import HEADLINE
from xmargin.reports.provenance import params_table

FIGURE_LABELS = {
    "ficc_standalone": "FICC stand-alone requirement",
    "cme_standalone": "CME stand-alone requirement",
    "ficc_combined": "FICC model on the combined cross-margining portfolio",
    "cme_combined": "CME model on the combined cross-margining portfolio",
    "ficc_reduction_factor": "r_FICC (fraction)",
    "cme_reduction_factor": "r_CME (fraction)",
    "applied_reduction_factor": "applied reduction (fraction)",
    "ficc_requirement": "FICC requirement after cross-margining",
    "cme_requirement": "CME requirement after cross-margining",
    "total_before": "total before cross-margining",
    "total_after": "total requirement",
    "savings": "saving",
    "savings_pct": "saving (percent)",
}


def statement_document(payload: dict[str, Any], context: Any, sub: Any, registry: Any) -> dict[str, Any]:
    """The statement of the one account of ``sub`` from its audited ``xmargin margin`` document
    (``payload``: with ``explain``, ``arrangement``, ``reduction`` and ``provenance``;
    :func:`xmargin.workflow.statement_job` makes it)."""
    rec = payload["accounts"][0]
    acc = sub.accounts[0]
    member = registry.members.get(acc.member).to_dict() if registry is not None and acc.member in registry.members \
        else {"member": acc.member, "registrations": "not supplied: taken as dually registered"}
    return {
        "statement": {"account": acc.account, "member": member, "account_type": acc.account_type,
                      "cross_margin": acc.cross_margin, "as_of": payload["as_of"]},
        "positions": _positions(context, sub),
        "figures": {k: rec[k] for k in HEADLINE},
        "figure_labels": FIGURE_LABELS,
        "components": rec["components"],
        "arrangement": rec["arrangement"],
        "reduction": rec["reduction"],
        "reduction_labels": REDUCTION_LABELS,
        "var_scenarios": {name: {"var": ex["var"], "var_scenario": ex["var_scenario"],
                                 "worst_scenarios": ex["worst_scenarios"]}
                          for name, ex in rec.get("explain", {}).items()},
        "status": rec["status"], "reason": rec["reason"],
        "model": {"params": payload["model"]["params"], "ficc_scenarios": payload["model"]["ficc_scenarios"],
                  "ficc_stress_period": payload["model"]["ficc_stress_period"],
                  "cme_scenarios": payload["model"]["cme_scenarios"],
                  "cme_stress_period": payload["model"]["cme_stress_period"]},
        "eligibility_lists": context.eligibility.entries(),
        "warnings": payload["warnings"],
        "provenance": payload["provenance"],
    }


def _positions(context: Any, sub: Any) -> list[dict[str, Any]]:
    acc = sub.accounts[0]
    labels = account_labels(acc)
    a = context.attributes
    as_of = context.snapshot.as_of
    q = np.asarray(sub.positions[0].todense()).ravel()
    q_el = np.asarray(sub.elected_positions()[0].todense()).ravel()
    rows = []
    for j in np.flatnonzero(q):
        inst = sub.universe.instruments[j]
        house = clearinghouse(inst)
        eligible, why = context.eligibility.why(inst, as_of)
        in_xm = float(q_el[j]) if eligible else 0.0
        for qty, where in ((in_xm, "xm"), (float(q[j]) - in_xm, "ordinary")):
            if qty == 0:
                continue
            roll = context.eligibility.roll_out_date(inst)
            rows.append({
                "clearinghouse": house,
                "account": labels[f"{house.lower()}_{where}"],
                "instrument": sub.universe.ids[j],
                "quantity": qty,
                "dv01": float(np.nan_to_num(a.dv01[j]) * qty),
                "eligible": eligible,
                "eligibility": why,
                "roll_out_date": roll.isoformat() if roll else None,
            })
    rows.sort(key=lambda r: (r["clearinghouse"] != "FICC", r["account"], r["instrument"]))
    return rows


# --- HTML --------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#1b1f24;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.8em 0;font-size:.86em}th,td{border:1px solid #d0d7de;padding:.3em .55em}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sub{color:#57606a}.warn{color:#9a6700}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:.9em}code{font-size:.85em;word-break:break-all}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _cell(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool) or v is None:
        return f"<td>{'-' if v is None else ('yes' if v else 'no')}</td>"
    if isinstance(v, float | int) and not isinstance(v, bool):
        return f'<td class="n">{v:,.{digits}f}</td>'
    return f"<td>{_e(v)}</td>"


def _table(columns: list[str], rows: list[list[Any]], digits: int = 2) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v, digits) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def statement_charts(doc: dict[str, Any]) -> dict[str, str]:
    """Two charts (base64 PNG): requirements before/after per clearinghouse; the factors."""
    from matplotlib.figure import Figure

    f = doc["figures"]
    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(2)
    before = [f["ficc_standalone"] or 0.0, f["cme_standalone"] or 0.0]
    after = [f["ficc_requirement"] or 0.0, f["cme_requirement"] or 0.0]
    ax.bar(x - 0.2, before, 0.4, label="stand-alone", color="#9aa5b1")
    ax.bar(x + 0.2, after, 0.4, label="after cross-margining", color="#1f6feb")
    ax.set_xticks(x, ["FICC", "CME"])
    ax.set_ylabel("dollars")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Requirement by clearinghouse")
    charts = {"requirements": _png(fig)}
    red = doc["reduction"]
    fig = Figure(figsize=(6.5, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    names = ["r_FICC", "r_CME", "cap", "applied"]
    vals = [red["r_ficc"] or 0.0, red["r_cme"] or 0.0, red["cap"] or 0.0, red["applied"] or 0.0]
    ax.barh(names, vals, color=["#7fb3ff", "#7fb3ff", "#9aa5b1", "#1f6feb"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of the stand-alone requirement")
    ax.set_title(f"Reduction factors (set by: {red['binding']})")
    charts["reduction"] = _png(fig)
    return charts


def render_statement(doc: dict[str, Any]) -> str:
    """The statement as one offline HTML document."""
    s = doc["statement"]
    charts = statement_charts(doc)
    f, red, arr = doc["figures"], doc["reduction"], doc["arrangement"]
    prov = doc["provenance"]
    title = f"Margin statement: account {s['account']} at {s['member']['member']}, as of {s['as_of']}"
    xm, od = arr["cross_margin_account"], arr["ordinary_accounts"]
    member_rows = [[k, v] for k, v in s["member"].items() if k != "member"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(s["account_type"])} account; cross-margining elected: '
        f'{"yes" if s["cross_margin"] else "no"}. Margin is calculated per customer (gross). Dollars unless '
        "stated.</p>",
        ("<ul>" + "".join(f'<li class="warn">warning: {_e(w)}</li>' for w in doc["warnings"]) + "</ul>")
        if doc["warnings"] else "",
        "<h2>Requirements</h2>",
        _table(["figure", "value"], [[doc["figure_labels"][k], v] for k, v in f.items()], digits=4),
        f'<figure><img id="chart-requirements" src="data:image/png;base64,{charts["requirements"]}" '
        'alt="requirements by clearinghouse"><figcaption>Stand-alone and after cross-margining, per '
        "clearinghouse</figcaption></figure>",
        "<h2>How the reduction was reached</h2>",
        _table(["step", "value"], [[doc["reduction_labels"][k], red[k]] for k in doc["reduction_labels"]], digits=4),
        f"<p>Formula: <code>{_e(red['formula'])}</code> ({_e(red['formula_status'])}). Cap: "
        f"{_e(red['cap_source'])}.</p>",
        f'<figure><img id="chart-reduction" src="data:image/png;base64,{charts["reduction"]}" '
        'alt="reduction factors"><figcaption>Each house\'s factor, the cap and the factor applied</figcaption>'
        "</figure>",
        "<h2>Accounts</h2>",
        _table(["account", "positions", "FICC requirement", "CME requirement", "total"],
               [[f"{xm['ficc_account']} / {xm['cme_account']}", xm["positions"], xm["ficc_requirement"],
                 xm["cme_requirement"], xm["total_after"]],
                [f"{od['ficc_account']} / {od['cme_account']}", od["positions"], od["ficc_requirement"],
                 od["cme_requirement"], od["total"]]]),
        "<h2>Positions</h2>",
        _table(["clearinghouse", "account", "instrument", "quantity", "DV01 $/bp", "eligible", "roll-out date",
                "eligibility (source)"],
               [[p["clearinghouse"], p["account"], p["instrument"], p["quantity"], p["dv01"], p["eligible"],
                 p["roll_out_date"] or "-", p["eligibility"]] for p in doc["positions"]]),
        "<h2>Scenarios driving each VaR</h2>",
        _table(["figure", "VaR", "VaR scenario (history window)", "P&L in it", "worst windows"],
               [[name, v["var"], v["var_scenario"]["window"], v["var_scenario"]["pnl"],
                 "; ".join(w["window"] for w in v["worst_scenarios"])] for name, v in doc["var_scenarios"].items()]),
        "<h2>Member</h2>", _table(["registration", "value"], member_rows),
        "<h2>Data and provenance</h2>",
        f"<p>As of {_e(prov['as_of'])} ({_e(prov['as_of_rule'])}); xmargin {_e(prov['xmargin_version'])}; "
        f"generated {_e(prov['generated_at'])}; parameters SHA-256 <code>{_e(prov['params_sha256'])}</code>.</p>",
        _table(["file", "path", "last date", "bytes", "SHA-256"],
               [[d["role"], d["path"], d["last_date"] or "-", d["bytes"], d["sha256"]] for d in prov["data_files"]],
               digits=0),
        "<h2>Model parameters</h2>", _table(["parameter", "value"], [list(r) for r in params_table(doc["model"])]),
        "<h2>Eligible products</h2>",
        _table(["clearinghouse", "product", "rule", "source"],
               [[e["clearinghouse"], e["product"], e["rule"], e["source"]] for e in doc["eligibility_lists"]]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_statement(doc: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``statement-<account>.json`` and ``.html`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "statement-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in doc["statement"]["account"])
    paths = {"json": out / f"{stem}.json", "html": out / f"{stem}.html"}
    paths["json"].write_text(json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n")
    paths["html"].write_text(render_statement(doc), encoding="utf-8")
    return paths
