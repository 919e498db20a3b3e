"""The clearinghouses' formats end to end: ``--cme-params``, FIXML, the FICC export, calls.

* The two paths agree: the demo book margined with the built-in calibration and with a CME
  parameter file carrying the same parameters (SPAN XML: exactly; PA2: to its whole-dollar
  precision).
* ``xmargin margin`` with a CME file: products the file lacks are named, ``--explain`` shows
  each SPAN step, initial beside maintenance, FIXML MgnReqmtRpt written beside the JSON.
* FIXML PosRpt samples are built from the FIX 5.0 SP2 element and attribute names (PosRpt,
  Pty @ID @R, Instrmt @Sym @MMY @SecTyp, Qty @Typ @Long @Short); a FICC export from its
  columns; unknown instruments are named in the error.
* ``reconcile-calls`` against a hand-made calls file, differences computed here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from xmargin.cli import demo_cmd
from xmargin.cli.main import app
from xmargin.formats.cme_margin import attach_cme_file
from xmargin.formats.pa2 import load_span_file
from xmargin.formats.pa2_write import write_pa2
from xmargin.formats.span_export import span_from_context
from xmargin.formats.spn_xml import write_spn_xml
from xmargin.margin.calculator import compute_margins
from xmargin.portfolio.demo import DemoConfig

AS_OF = "2024-06-26"
BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS,M1,house,91282CKQ3,10000000,true
BASIS,M1,house,ZNU24,-129,true
CURVE,M1,house,ZFU24,30,true
CURVE,M1,house,ZNU24,-19,true
CAL,M2,customer,ZNU24,10,true
CAL,M2,customer,ZNZ24,-7,true
"""
NS = "http://www.fixprotocol.org/FIXML-5-0-SP2"


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    return result


# --- the two paths agree on the demo book ----------------------------------------------------

@pytest.fixture(scope="module")
def demo(data_dir: Path) -> demo_cmd.DemoRun:
    return demo_cmd.run_demo(DemoConfig(members=2, customers_per_member=15, affiliates_per_member=1, seed=5),
                             data_dir=data_dir)


def test_cme_file_with_the_calibrated_parameters_gives_the_built_in_totals(demo: demo_cmd.DemoRun,
                                                                          tmp_path: Path) -> None:
    """Export the calibration the demo run used as a SPAN XML file, read it back, margin the
    same book with it: every account's CME stand-alone figure, SPAN components and the totals
    after cross-margining equal the built-in ones (floating-point agreement).  The PA2 export
    rounds risk arrays and charges to whole dollars and ratios to 4 decimals: its totals agree
    to 0.1%."""
    params = span_from_context(demo.context)
    (tmp_path / "cal.spn").write_text(write_spn_xml(params))
    (tmp_path / "cal.pa2").write_text(write_pa2(params))
    base = demo.margins
    assert np.nansum(base.span_inter_spread_credit) > 0  # the demo book holds no calendar spreads: see below
    via_xml = compute_margins(attach_cme_file(demo.context, load_span_file(tmp_path / "cal.spn")), demo.book)
    for name in ("cme_standalone", "span_scan_risk", "span_intra_spread_charge", "span_inter_spread_credit",
                 "cme_requirement", "total_after", "savings"):
        np.testing.assert_allclose(getattr(via_xml, name), getattr(base, name), rtol=1e-9, atol=1e-6, err_msg=name)
    via_pa2 = compute_margins(attach_cme_file(demo.context, load_span_file(tmp_path / "cal.pa2")), demo.book)
    assert np.nansum(via_pa2.cme_standalone) == pytest.approx(np.nansum(base.cme_standalone), rel=1e-3)


# --- xmargin margin --cme-params -------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    (root / "book.csv").write_text(BOOK)
    r = cli("cme-params", "export", str(root / "cal.spn"), "--portfolio", str(root / "book.csv"), "--as-of", AS_OF,
            "--data-dir", str(data_dir))
    assert r.exit_code == 0, r.output
    full = load_span_file(root / "cal.spn")
    zn_only = [c for c in full.contracts if c.product == "ZN"]
    from dataclasses import replace

    (root / "zn.pa2").write_text(write_pa2(replace(full, contracts=tuple(zn_only),
                                                   commodities={"ZN": full.commodities["ZN"]}, inter_spreads=())))
    return {"root": root, "book": root / "book.csv", "cal": root / "cal.spn", "zn": root / "zn.pa2"}


@pytest.fixture(scope="module")
def with_file(files: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    r = cli("margin", str(files["book"]), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json",
            "--explain", "--cme-params", str(files["cal"]), "--fixml", str(files["root"] / "out.fixml"))
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_explain_shows_each_span_step_and_initial_beside_maintenance(with_file: dict[str, Any]) -> None:
    """CAL (a customer: speculator, ratio 1.10 by CME's rule) holds ZN Sep +10 / Dec -7: 7
    calendar spreads at the calibrated charge, net 3 outright."""
    cal = next(r for r in with_file["accounts"] if r["account"] == "CAL")
    ex = cal["explain"]["cme_span"]
    (zn,) = ex["combined_commodities"]
    assert zn["combined_commodity"] == "ZN" and zn["net_delta"] > 0
    intra = [s for s in ex["spreads"] if s["step"] == "intra"]
    assert sum(s["spreads"] for s in intra) == pytest.approx(7.0)
    assert zn["maintenance"] == pytest.approx(zn["scan_risk"] + zn["intra_spread_charge"] - zn["inter_spread_credit"])
    assert cal["cme_maintenance"] == pytest.approx(zn["maintenance"])
    assert cal["cme_initial"] == pytest.approx(1.1 * cal["cme_maintenance"])
    basis = next(r for r in with_file["accounts"] if r["account"] == "BASIS")
    assert basis["cme_initial"] == pytest.approx(basis["cme_maintenance"])  # house = member: 1.00
    assert "maintenance" in with_file["model"]["cme_margin_basis"]


def test_calendar_spreads_agree_with_the_built_in_too(with_file: dict[str, Any], files: dict[str, Path],
                                                      data_dir: Path) -> None:
    """The small book's CAL account holds a ZN calendar spread (the demo book has none): the file
    exported from the calibration gives the built-in intra-commodity charge and totals."""
    r = cli("margin", str(files["book"]), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json")
    built_in = {a["account"]: a for a in json.loads(r.stdout)["accounts"]}
    for rec in with_file["accounts"]:
        b = built_in[rec["account"]]
        for k in ("cme_standalone", "cme_requirement", "total_after"):
            assert rec[k] == pytest.approx(b[k], rel=1e-9), (rec["account"], k)
        for k in ("span_intra_spread_charge", "span_inter_spread_credit"):
            assert rec["components"][k] == pytest.approx(b["components"][k], rel=1e-9, abs=1e-6)
    assert built_in["CAL"]["components"]["span_intra_spread_charge"] > 0


def test_cme_params_show_lists_the_file(files: dict[str, Path]) -> None:
    r = cli("cme-params", "show", str(files["zn"]), "--format", "json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["format"] == "pa2" and {c["product"] for c in shown["contracts"]} == {"ZN"}
    assert all(c["scan_long"] == c["scan_short"] > 0 for c in shown["contracts"])
    r = cli("cme-params", "show", str(files["book"]))
    assert r.exit_code == 2 and "record type" in r.stderr and "row 1" in r.stderr


def test_products_missing_from_the_file_are_named(files: dict[str, Path], data_dir: Path) -> None:
    r = cli("margin", str(files["book"]), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json",
            "--cme-params", str(files["zn"]))
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    curve = next(a for a in payload["accounts"] if a["account"] == "CURVE")
    assert curve["status"] == "error"
    assert "ZFU24: not in the CME parameter file" in curve["reason"] and "products there: ZN" in curve["reason"]
    assert set(payload["model"]["cme_params"]["missing"]) == {"ZFU24"}


def test_fixml_margin_reports_carry_the_json_figures(with_file: dict[str, Any], files: dict[str, Path]) -> None:
    root = ET.parse(files["root"] / "out.fixml").getroot()
    assert root.tag == f"{{{NS}}}FIXML"
    reports = root.findall(f"{{{NS}}}Batch/{{{NS}}}MgnReqmtRpt")
    by_key = {}
    for rpt in reports:
        parties = {p.get("R"): p.get("ID") for p in rpt.findall(f"{{{NS}}}Pty")}
        amounts = {a.get("Typ"): float(a.get("Amt")) for a in rpt.findall(f"{{{NS}}}MgnAmt")}  # type: ignore[arg-type]
        assert rpt.get("BizDt") == AS_OF and rpt.get("RptTyp") == "0"
        by_key[(parties["24"], parties["21"])] = (parties["4"], amounts)
    for rec in with_file["accounts"]:
        member, cme = by_key[(rec["account"], "CME")]
        assert member == rec["member"]
        assert cme["22"] == pytest.approx(rec["cme_requirement"], abs=0.005)
        assert cme["3"] == pytest.approx(rec["cme_standalone"], abs=0.005)
        assert cme["11"] == pytest.approx(rec["cme_requirement"] * rec["cme_initial_ratio"], abs=0.005)
        _, ficc = by_key[(rec["account"], "FICC")]
        assert ficc["22"] == pytest.approx(rec["ficc_requirement"], abs=0.005)


# --- FIXML positions and the FICC export as portfolio sources ---------------------------------

def posrpt(acct: str, firm: str, sym: str, mmy: str, long: int, short: int, acct_typ: str = "2") -> str:
    return (f'<PosRpt RptID="{acct}{sym}{mmy}" BizDt="{AS_OF}" AcctTyp="{acct_typ}" Rslt="0">'
            f'<Pty ID="CME" R="21"/><Pty ID="{firm}" R="4"/><Pty ID="{acct}" R="24"/>'
            f'<Instrmt Sym="{sym}" SecTyp="FUT" MMY="{mmy}" Exch="CBT"/>'
            f'<Qty Typ="SOD" Long="0" Short="0"/><Qty Typ="FIN" Long="{long}" Short="{short}"/></PosRpt>\n')


def fixml(*reports: str) -> str:
    return f'<?xml version="1.0"?>\n<FIXML xmlns="{NS}" v="5.0 SP2"><Batch>\n{"".join(reports)}</Batch></FIXML>\n'


def test_fixml_positions_are_a_portfolio(files: dict[str, Path], data_dir: Path) -> None:
    """CURVE: ZF (clearing code 25) Sep +30, ZN Sep -19 short; the same book as the CSV's
    CURVE account, so the same CME figure."""
    path = files["root"] / "pos.xml"
    path.write_text(fixml(posrpt("CURVE", "M1", "25", "202409", 30, 0), posrpt("CURVE", "M1", "ZN", "202409", 0, 19)))
    r = cli("margin", str(path), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)["accounts"]
    r2 = cli("margin", str(files["book"]), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json")
    csv_curve = next(a for a in json.loads(r2.stdout)["accounts"] if a["account"] == "CURVE")
    assert (rec["account"], rec["member"], rec["account_type"]) == ("CURVE", "M1", "house")
    assert rec["cme_standalone"] == pytest.approx(csv_curve["cme_standalone"])


def test_unknown_fixml_instrument_is_named(files: dict[str, Path], data_dir: Path) -> None:
    path = files["root"] / "bad.xml"
    path.write_text(fixml(posrpt("A", "M1", "ZN", "202409", 1, 0), posrpt("A", "M1", "XYZ", "202409", 1, 0)))
    r = cli("margin", str(path), "--as-of", AS_OF, "--data-dir", str(data_dir))
    assert r.exit_code == 2
    assert "row 4" in r.stderr and "unknown instrument XYZ 202409" in r.stderr


def test_ficc_export_is_a_portfolio_and_unknown_cusips_are_named(files: dict[str, Path], data_dir: Path) -> None:
    path = files["root"] / "ficc.csv"
    path.write_text("CUSIP,Par Amount,Account ID,Participant\n91282CKQ3,\"10,000,000\",BASIS,M1\n")
    r = cli("margin", str(path), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)["accounts"]
    assert (rec["account"], rec["member"]) == ("BASIS", "M1") and rec["ficc_standalone"] > 0
    path.write_text("CUSIP,Par,Account\n91282CKQ3,1000000,A\n99999ZZZ9,1000000,A\n")
    r = cli("margin", str(path), "--as-of", AS_OF, "--data-dir", str(data_dir))
    assert r.exit_code == 2 and "row 3" in r.stderr and "99999ZZZ9" in r.stderr


# --- reconcile-calls ------------------------------------------------------------------------

def test_reconcile_calls_differences_and_flags(with_file: dict[str, Any], files: dict[str, Path]) -> None:
    """Calls: CAL at CME 5% above our figure (flag at a 2% tolerance), BASIS at FICC exactly ours,
    GHOST unknown.  Differences here: called - ours and its share of the call."""
    root = files["root"]
    (root / "results.json").write_text(json.dumps(with_file))
    rec = {r["account"]: r for r in with_file["accounts"]}
    cal_ours, basis_ours = rec["CAL"]["cme_requirement"], rec["BASIS"]["ficc_requirement"]
    (root / "calls.csv").write_text("account,clearinghouse,called\n"
                                    f"CAL,CME,{cal_ours * 1.05:.2f}\nBASIS,ficc,{basis_ours:.2f}\nGHOST,CME,100\n")
    r = cli("reconcile-calls", str(root / "calls.csv"), "--results", str(root / "results.json"),
            "--tolerance-pct", "2", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = {(x["account"], x["clearinghouse"]): x for x in json.loads(r.stdout)["rows"]}
    cal = rows[("CAL", "CME")]
    called = round(cal_ours * 1.05, 2)
    assert cal["difference"] == pytest.approx(called - cal_ours)
    assert cal["difference_pct"] == pytest.approx((called - cal_ours) / called * 100)
    assert cal["flagged"] and "called more" in cal["note"]
    assert not rows[("BASIS", "FICC")]["flagged"]
    assert rows[("GHOST", "CME")]["flagged"] and rows[("GHOST", "CME")]["note"] == "no such account in our results"
    assert rows[("BASIS", "CME")]["note"] == "no call received"
    r = cli("reconcile-calls", str(root / "calls.csv"), "--results", str(root / "results.json"), "--tolerance-pct", "6")
    assert r.exit_code == 0 and "FLAG" in r.stdout


def test_bad_calls_file_names_row_and_field(files: dict[str, Path]) -> None:
    (files["root"] / "bad_calls.csv").write_text("account,clearinghouse,called\nA,LCH,5\n")
    (files["root"] / "r.json").write_text(json.dumps({"as_of": AS_OF, "accounts": []}))
    r = cli("reconcile-calls", str(files["root"] / "bad_calls.csv"), "--results", str(files["root"] / "r.json"))
    assert r.exit_code == 2 and "row 2" in r.stderr and "clearinghouse" in r.stderr


def test_reconcile_calls_margins_a_portfolio_itself(with_file: dict[str, Any], files: dict[str, Path],
                                                     data_dir: Path) -> None:
    """``--portfolio`` (with the same CME file) gives the figures of the saved results; with
    ``--cme-basis initial`` a customer's CME figure is 1.10 x maintenance."""
    root = files["root"]
    cal = next(r for r in with_file["accounts"] if r["account"] == "CAL")
    (root / "calls2.csv").write_text(f"account,clearinghouse,called\nCAL,CME,{cal['cme_requirement']:.2f}\n")
    r = cli("reconcile-calls", str(root / "calls2.csv"), "--portfolio", str(files["book"]), "--cme-params",
            str(files["cal"]), "--as-of", AS_OF, "--data-dir", str(data_dir), "--format", "json",
            "--cme-basis", "initial")
    assert r.exit_code == 0, r.output
    row = next(x for x in json.loads(r.stdout)["rows"] if x["account"] == "CAL" and x["clearinghouse"] == "CME")
    assert row["ours"] == pytest.approx(1.1 * cal["cme_requirement"])
    assert row["flagged"] and "called less" in row["note"]
