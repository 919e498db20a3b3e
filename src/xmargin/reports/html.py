"""A self-contained HTML savings report: opens in a browser with no network.

Charts are static PNGs rendered by matplotlib (Agg, object-oriented API: no global pyplot
state) and embedded as base64 ``data:`` URIs; CSS is inline; there are no scripts and no
external references.  The report carries its tables and every model and generator parameter,
so it explains itself and can be reproduced.

Charts (``CHARTS``: element id -> caption):

* ``savings-by-member``: margin before and after cross-margining per member, house and
  customers stacked;
* ``customer-savings``: distribution of customer savings (percent and dollars);
* ``archetype-before-after``: margin before and after per archetype;
* ``systemic-stress``: aggregate margin and aggregate stressed loss before and after, per member;
* ``asof-curve``: the as-of Treasury par and zero curve and the SOFR fixing.

Parameters are shown as a table (dotted name, value), followed by the provenance block.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmargin.reports.provenance import params_table
from xmargin.reports.savings import Figures, SavingsReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHARTS: dict[str, str] = {
    "savings-by-member": "Margin before and after cross-margining by clearing member (house and customers stacked)",
    "customer-savings": "Distribution of customer savings (customers that elected cross-margining)",
    "archetype-before-after": "Margin before and after cross-margining by account archetype",
    "systemic-stress": "Systemic view: aggregate margin and worst historical loss, before and after, by member",
    "asof-curve": "The as-of Treasury curve (par yields as published, zero rates bootstrapped) and SOFR",
}
BEFORE, AFTER, CUST = "#9aa5b1", "#1f6feb", "#7fb3ff"
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#1b1f24;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #d0d7de}
.sub{color:#57606a}table{border-collapse:collapse;margin:.8em 0;font-size:.86em}
th,td{border:1px solid #d0d7de;padding:.3em .55em}th{background:#f6f8fa;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.2em 0}
figure img{max-width:100%;border:1px solid #d0d7de}figcaption{color:#57606a;font-size:.9em}
.kpi{display:flex;flex-wrap:wrap;gap:1em}.kpi div{background:#f6f8fa;border:1px solid #d0d7de;padding:.6em 1em;border-radius:6px}
.warn{color:#9a6700}.kpi b{display:block;font-size:1.3em}pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.8em}
"""


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float = 9.0, height: float = 4.2, ncols: int = 1,
            width_ratios: Sequence[float] | None = None) -> tuple[Figure, Any]:
    """A figure of ``width`` x ``height`` inches and its axes (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, width_ratios=width_ratios)


def _millions(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"${v / 1e6:,.0f}m")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _cut(pct: float) -> str:
    """A savings percentage as a bar label (a cut in margin)."""
    return f"-{pct:.0f}%" if pct >= 0.5 else "0%"


def _legend_below(ax: Any, ncols: int) -> None:
    ax.legend(fontsize=8, ncols=ncols, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)


def chart_savings_by_member(report: SavingsReport) -> bytes:
    fig, ax = _figure()
    names = [m.member for m in report.members]
    x = np.arange(len(names))
    w = 0.38
    for dx, label, get in ((-w / 2, "before", lambda f: f.before), (w / 2, "after", lambda f: f.after)):
        house = np.array([get(m.house) for m in report.members])
        cust = np.array([get(m.customers) for m in report.members])
        base = BEFORE if label == "before" else AFTER
        ax.bar(x + dx, house, w, color=base, label=f"house {label}")
        ax.bar(x + dx, cust, w, bottom=house, color=base, alpha=0.55, hatch="//", label=f"customers {label}")
    for k, m in enumerate(report.members):
        ax.annotate(_cut(m.total.savings_pct), (x[k] - w / 2, m.total.before), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("margin")
    _millions(ax)
    _legend_below(ax, 4)
    ax.set_title("Margin before / after cross-margining by member")
    return _png(fig)


def chart_customer_savings(report: SavingsReport) -> bytes:
    fig, (left, right) = _figure(10.0, 4.0, 2)
    elected = [a.figures for a in report.customers() if a.cross_margin]
    pct = np.array([f.savings_pct for f in elected])
    dollars = np.array([f.savings for f in elected])
    left.hist(pct, bins=np.linspace(0, 100, 21), color=AFTER)
    left.set_xlabel("savings, % of stand-alone margin")
    left.set_ylabel("customers")
    left.set_title(f"{len(elected)} electing customers: savings % (0: nothing to offset)", fontsize=10)
    positive = dollars[dollars > 0]
    if positive.size:
        right.hist(positive, bins=np.geomspace(max(positive.min(), 1.0), positive.max() * 1.01, 21), color=AFTER)
        right.set_xscale("log")
    right.set_xlabel("savings, dollars (log scale)")
    right.set_title(f"savings $ ({int((dollars <= 0).sum())} with none)")
    return _png(fig)


def chart_archetype(report: SavingsReport) -> bytes:
    fig, ax = _figure()
    names = list(report.by_archetype)
    figs = [report.by_archetype[n] for n in names]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [f.before for f in figs], 0.4, color=BEFORE, label="before (stand-alone at both)")
    ax.bar(x + 0.2, [f.after for f in figs], 0.4, color=AFTER, label="after cross-margining")
    for k, f in enumerate(figs):
        ax.annotate(_cut(f.savings_pct), (x[k] - 0.2, f.before), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=15)
    _millions(ax)
    ax.legend(fontsize=8)
    ax.set_title("Margin by archetype")
    return _png(fig)


def chart_systemic(report: SavingsReport) -> bytes:
    fig, (left, right) = _figure(11.0, 4.2, 2, width_ratios=(max(len(report.members), 1), 1.4))
    series = (("margin before", "before", BEFORE, None), ("margin after", "after", AFTER, None),
              ("stressed loss before", "stressed_loss_before", "#d4a72c", "xx"),
              ("stressed loss after", "stressed_loss_after", "#cf222e", "xx"))
    for ax, labels, figs in ((left, [m.member for m in report.members], [m.total for m in report.members]),
                             (right, ["market"], [report.market])):
        x = np.arange(len(figs))
        for k, (label, name, color, hatch) in enumerate(series):
            ax.bar(x + (k - 1.5) * 0.2, [getattr(f, name) for f in figs], 0.2, color=color, hatch=hatch, label=label)
        ax.set_xticks(x, labels)
        _millions(ax)
    _legend_below(left, 4)
    left.set_title("Aggregate margin and worst historical loss by member (sum over accounts)")
    right.set_title("Market")
    return _png(fig)


def chart_curve(curve: Mapping[str, Any], sofr_pct: float | None) -> bytes:
    fig, ax = _figure(9.0, 3.8)
    months = {"M": 1 / 12, "Y": 1.0}
    years = [float(t[:-1]) * months[t[-1]] for t in curve["tenors"]]
    ax.plot(years, curve["par_yield_pct"], "o-", color=AFTER, label="par yield (published)")
    ax.plot(years, curve["zero_rate_pct"], "s--", color="#8250df", label="zero rate (bond-equivalent)")
    if sofr_pct is not None:
        ax.plot([0.0], [sofr_pct], "D", color="#cf222e", label=f"SOFR {sofr_pct:.2f}%")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks([0, 0.25, 0.5, 1, 2, 5, 10, 20, 30], ["0", "3M", "6M", "1Y", "2Y", "5Y", "10Y", "20Y", "30Y"])
    ax.set_ylabel("percent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"U.S. Treasury curve, {curve['as_of']}")
    return _png(fig)


def render_charts(report: SavingsReport, curve: Mapping[str, Any], sofr_pct: float | None) -> dict[str, bytes]:
    """Every chart of :data:`CHARTS` as PNG bytes."""
    return {
        "savings-by-member": chart_savings_by_member(report),
        "customer-savings": chart_customer_savings(report),
        "archetype-before-after": chart_archetype(report),
        "systemic-stress": chart_systemic(report),
        "asof-curve": chart_curve(curve, sofr_pct),
    }


# --- HTML --------------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _money(v: float) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:,.0f}"


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for v in r:
            if isinstance(v, float):
                cells.append(f'<td class="n">{_e(_money(v))}</td>')
            else:
                cells.append(f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


FIG_COLUMNS = ("accounts", "before $", "after $", "savings $", "savings %", "FICC freed $", "CME freed $",
               "funding saved $/yr", "stressed loss before $", "stressed loss after $", "coverage after")


def _fig_row(f: Figures) -> list[Any]:
    cov = "-" if not np.isfinite(f.coverage_after) else f"{f.coverage_after:.2f}x"
    return [str(f.accounts), f.before, f.after, f.savings, f"{f.savings_pct:.1f}", f.liquidity_freed_ficc,
            f.liquidity_freed_cme, f.funding_saved, f.stressed_loss_before, f.stressed_loss_after, cov]


def _img(chart_id: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = CHARTS[chart_id]
    return (f'<figure id="{_e(chart_id)}"><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def render_report(report: SavingsReport, charts: Mapping[str, bytes], *, title: str,
                  headline: Mapping[str, Any], parameters: Mapping[str, Any], reproduce: str,
                  warnings: Sequence[str] = (), provenance: Mapping[str, Any] | None = None) -> str:
    """The report as one HTML document (see the module docstring)."""
    missing = [c for c in CHARTS if c not in charts]
    if missing:
        raise ValueError(f"charts missing from the report: {missing}")
    m = report.market
    kpis = [("stand-alone margin", f"${m.before / 1e6:,.1f}m"), ("after cross-margining", f"${m.after / 1e6:,.1f}m"),
            ("savings", f"${m.savings / 1e6:,.1f}m ({m.savings_pct:.1f}%)"),
            ("funding saved", f"${m.funding_saved / 1e6:,.2f}m / year at {report.funding.rate_pct:.2f}%"),
            *[(k, v) for k, v in headline.items()]]
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>",
        '<p class="sub">Margin before (each clearinghouse stand-alone) and after the CME-FICC cross-margining '
        "reduction. Customers are margined gross: a member's customer requirement is the sum of each customer's "
        "own requirement, never netted with other customers or the house.</p>",
        '<div class="kpi">' + "".join(f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in kpis) + "</div>",
        ("<ul>" + "".join(f'<li class="warn">warning: {_e(w)}</li>' for w in warnings) + "</ul>") if warnings else "",
        "<h2>Market-wide</h2>",
        _table(["", *FIG_COLUMNS], [["house accounts", *_fig_row(report.market_house)],
                                    ["customers (gross)", *_fig_row(report.market_customers)],
                                    ["total", *_fig_row(report.market)]]),
        _img("systemic-stress", charts["systemic-stress"]),
        "<h2>By clearing member</h2>", _img("savings-by-member", charts["savings-by-member"]),
        _table(["member", "part", *FIG_COLUMNS],
               [[mem.member, part, *_fig_row(f)] for mem in report.members
                for part, f in (("house", mem.house), ("customers", mem.customers), ("total", mem.total))]),
        "<h2>Customers</h2>", _img("customer-savings", charts["customer-savings"]),
        "<h3>Largest customer savings</h3>",
        _table(["account", "member", "archetype", "before $", "after $", "savings $", "savings %"],
               [[a.account, a.member, a.archetype, a.figures.before, a.figures.after, a.figures.savings,
                 f"{a.figures.savings_pct:.1f}"]
                for a in sorted(report.customers(), key=lambda a: -a.figures.savings)[:15]]),
        "<h2>By archetype</h2>", _img("archetype-before-after", charts["archetype-before-after"]),
        _table(["archetype", *FIG_COLUMNS], [[k, *_fig_row(f)] for k, f in report.by_archetype.items()]),
        "<h2>Market data</h2>", _img("asof-curve", charts["asof-curve"]),
        "<h2>Definitions</h2>", "<ul>",
        "<li><b>before</b>: FICC and CME requirements, each on its own positions; <b>after</b>: with the "
        "cross-margin reduction (the more conservative of the two houses' factors, capped).</li>",
        "<li><b>FICC / CME freed</b>: margin each clearinghouse no longer holds (their sum is the savings).</li>",
        f"<li><b>funding saved</b>: savings x {report.funding.rate_pct:.4f}% x 365/360 per year "
        f"({_e(report.funding.base)} {report.funding.base_pct:.4f}% + {report.funding.spread_bp:g} bp).</li>",
        "<li><b>stressed loss</b>: worst historical-scenario loss (FICC scenario set) of each account; before: "
        "FICC positions and CME positions each alone, added; after: the combined positions. Aggregates add "
        "account figures. <b>coverage</b>: margin / stressed loss.</li>",
        "</ul>",
        f"<p>Accounts left out (no price for a position): {len(report.excluded)}"
        + (f": {_e(', '.join(report.excluded[:20]))}" if report.excluded else "") + "</p>",
        "<h2>Model and generator parameters</h2>",
        f"<p>Reproduce: <code>{_e(reproduce)}</code></p>",
        _table(["parameter", "value"], [list(r) for r in params_table(dict(parameters))]),
        *(_provenance_html(provenance) if provenance else []),
        "</body>", "</html>",
    ]
    return "\n".join(parts) + "\n"


def _provenance_html(prov: Mapping[str, Any]) -> list[str]:
    """The provenance block (:mod:`xmargin.reports.provenance`) as a paragraph and a table."""
    return [
        "<h2>Data and provenance</h2>",
        f"<p>As of {_e(prov['as_of'])} ({_e(prov['as_of_rule'])}); xmargin {_e(prov['xmargin_version'])}; "
        f"generated {_e(prov['generated_at'])}; parameters SHA-256 <code>{_e(prov['params_sha256'])}</code>.</p>",
        _table(["file", "path", "last date", "bytes", "SHA-256"],
               [[d["role"], d["path"], d["last_date"] or "-", str(d["bytes"]), d["sha256"]] for d in prov["data_files"]]),
    ]


def write_report(path: str | Path, document: str) -> Path:
    """Write the HTML document (UTF-8), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
