"""Our requirements against the margin the clearinghouses actually called.

Calls file (CSV, header required, any order)::

    account,clearinghouse,called[,currency][,as_of]

``clearinghouse`` is ``FICC`` or ``CME``; ``called`` the amount called in dollars (column
``called``, ``amount`` or ``call_amount``); ``currency`` must be USD when given; ``as_of``,
when given, must be the results' date.  One row per account and clearinghouse.

For each pair: ``ours`` is the requirement after cross-margining (``ficc_requirement``,
``cme_requirement``; CME at maintenance level, or at initial with ``cme_basis="initial"``),
``difference = called - ours`` in dollars and in percent of the amount called, and the row is
flagged when ``|difference| > max(tolerance_usd, tolerance_pct% x called)``.  Calls for
accounts we do not have, accounts we could not margin, and requirements with no call are
flagged too, each with a note.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xmargin.errors import InputError

HOUSES = ("FICC", "CME")


def calls_from_rows(rows: Iterable[tuple[int | None, Mapping[str, Any]]], source: str | Path,
                    amount_col: str = "called") -> list[dict[str, Any]]:
    """Validated calls from ``(row number, row)`` pairs (a CSV file or a request body)."""
    out: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int | None] = {}
    for n, row in rows:
        account = str(row.get("account") or "").strip()
        if not account:
            raise InputError("is missing or empty", source=source, row=n, field="account")
        house = str(row.get("clearinghouse") or "").strip().upper()
        if house not in HOUSES:
            raise InputError(f"'{house}' is not one of {HOUSES}", source=source, row=n, field="clearinghouse")
        raw = str(row.get(amount_col) if row.get(amount_col) is not None else "").strip().replace(",", "")
        try:
            called = float(raw)
        except ValueError:
            raise InputError(f"'{raw}' is not a number", source=source, row=n, field=amount_col) from None
        if not math.isfinite(called) or called < 0:
            raise InputError(f"'{raw}' is not an amount >= 0", source=source, row=n, field=amount_col)
        ccy = str(row.get("currency") or "USD").strip().upper()
        if ccy != "USD":
            raise InputError(f"currency '{ccy}': only USD calls are reconciled", source=source, row=n, field="currency")
        if (account, house) in seen:
            raise InputError(f"a second call for {account} at {house} (first in row {seen[(account, house)]})",
                             source=source, row=n, field="account")
        seen[(account, house)] = n
        out.append({"account": account, "clearinghouse": house, "called": called, "row": n,
                    "as_of": str(row.get("as_of") or "").strip() or None})
    if not out:
        raise InputError("no calls", source=source)
    return out


def read_calls(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read calls file: {exc.strerror}", source=path) from None
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        reader.fieldnames = header
        amount_col = next((c for c in ("called", "amount", "call_amount") if c in header), None)
        for need, col in (("account", "account"), ("clearinghouse", "clearinghouse"), ("called", amount_col)):
            if col is None or col not in header:
                raise InputError(f"missing column '{need}' (expected account, clearinghouse, called)", source=path,
                                 row=1, field=need)
        rows = [(n, row) for n, row in enumerate(reader, start=2)
                if any((v or "").strip() for v in row.values() if isinstance(v, str))]
        return calls_from_rows(rows, path, amount_col or "called")


def reconcile(payload: dict[str, Any], calls: list[dict[str, Any]], *, tolerance_pct: float = 5.0,
              tolerance_usd: float = 0.0, cme_basis: str = "maintenance", source: str = "calls") -> dict[str, Any]:
    """The reconciliation document (see the module docstring)."""
    if cme_basis not in ("maintenance", "initial"):
        raise InputError(f"'{cme_basis}' is not maintenance or initial", source="command line", field="--cme-basis")
    for c in calls:
        if c["as_of"] and c["as_of"] != payload["as_of"]:
            raise InputError(f"call dated {c['as_of']}, our results are for {payload['as_of']}", source=source,
                             row=c["row"], field="as_of")
    records = {r["account"]: r for r in payload["accounts"]}
    rows = []
    called_pairs = set()
    for c in calls:
        called_pairs.add((c["account"], c["clearinghouse"]))
        rec = records.get(c["account"])
        out: dict[str, Any] = {"account": c["account"], "clearinghouse": c["clearinghouse"], "called": c["called"],
                               "ours": None, "difference": None, "difference_pct": None, "flagged": True, "note": ""}
        if rec is None:
            out["note"] = "no such account in our results"
        else:
            house = c["clearinghouse"].lower()
            ours = rec.get(f"{house}_requirement")
            if ours is not None and house == "cme" and cme_basis == "initial":
                ours *= rec.get("cme_initial_ratio") or 1.0
            if ours is None:
                out["note"] = f"we could not margin the account: {rec.get('reason', '')}"
            else:
                diff = c["called"] - ours
                out.update(ours=ours, difference=diff,
                           difference_pct=diff / c["called"] * 100.0 if c["called"] > 0 else None,
                           flagged=abs(diff) > max(tolerance_usd, tolerance_pct / 100.0 * abs(c["called"])))
                out["note"] = ("beyond tolerance: " + ("called more than our figure" if diff > 0 else
                                                       "called less than our figure")) if out["flagged"] else ""
        rows.append(out)
    for rec in payload["accounts"]:
        for house in HOUSES:
            ours = rec.get(f"{house.lower()}_requirement")
            if (rec["account"], house) not in called_pairs and ours:
                rows.append({"account": rec["account"], "clearinghouse": house, "called": None, "ours": ours,
                             "difference": None, "difference_pct": None, "flagged": True, "note": "no call received"})
    flagged = [r for r in rows if r["flagged"]]
    return {
        "as_of": payload["as_of"], "tolerance_pct": tolerance_pct, "tolerance_usd": tolerance_usd,
        "cme_basis": cme_basis, "rows": rows,
        "summary": {"pairs": len(rows), "flagged": len(flagged),
                    "called": sum(r["called"] or 0.0 for r in rows), "ours": sum(r["ours"] or 0.0 for r in rows)},
    }
