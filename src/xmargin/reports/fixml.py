"""Margin results as FIXML (FIX 5.0 SP2) margin requirement reports (``xmargin margin --fixml``).

One ``MgnReqmtRpt`` per account and clearinghouse: ``@RptID``, ``@RptTyp`` 0 (summary),
``@BizDt``, ``@Ccy`` USD; parties ``Pty R="21"`` (clearing organization), ``R="4"`` (clearing
firm = member), ``R="24"`` (account); margin amounts ``MgnAmt @Typ @Amt @Ccy`` with
MarginAmtType (tag 1644) ``22`` total margin (the requirement after cross-margining,
maintenance level), ``3`` unadjusted margin (stand-alone, before the cross-margin reduction)
and, for CME, ``11`` initial margin.  Accounts that could not be margined get no report.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from xmargin.errors import XMarginError

NAMESPACE = "http://www.fixprotocol.org/FIXML-5-0-SP2"


def write_margin_reports(payload: dict[str, Any], path: str | Path) -> Path:
    """The ``xmargin margin`` results as a FIXML batch of ``MgnReqmtRpt`` (module docstring).
    Accounts that could not be margined get no report."""
    ET.register_namespace("", NAMESPACE)
    root = ET.Element(f"{{{NAMESPACE}}}FIXML", {"v": "5.0 SP2"})
    batch = ET.SubElement(root, f"{{{NAMESPACE}}}Batch")
    biz = payload["as_of"]
    for rec in payload["accounts"]:
        for house in ("ficc", "cme"):
            after, before = rec.get(f"{house}_requirement"), rec.get(f"{house}_standalone")
            if after is None or before is None:
                continue
            rpt = ET.SubElement(batch, f"{{{NAMESPACE}}}MgnReqmtRpt", {
                "RptID": f"XM-{biz}-{rec['account']}-{house.upper()}", "RptTyp": "0", "BizDt": biz, "Ccy": "USD"})
            for pid, role in ((house.upper(), "21"), (rec["member"], "4"), (rec["account"], "24")):
                ET.SubElement(rpt, f"{{{NAMESPACE}}}Pty", {"ID": str(pid), "R": role})
            amounts = [("22", after), ("3", before)]
            if house == "cme" and rec.get("cme_initial_ratio") is not None:
                amounts.append(("11", after * rec["cme_initial_ratio"]))
            for typ, amt in amounts:
                ET.SubElement(rpt, f"{{{NAMESPACE}}}MgnAmt", {"Typ": typ, "Amt": f"{amt:.2f}", "Ccy": "USD"})
    ET.indent(root)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise XMarginError(f"{path}: cannot write FIXML: {exc.strerror}") from None
    return path
