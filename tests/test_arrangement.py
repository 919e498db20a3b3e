"""The customer arrangement as filed: registrations, the cross-margining account, eligibility
from the record, ``margin --explain``, statements, provenance and the default as-of date.

Real command (``CliRunner`` on ``xmargin.cli.main.app``), real data as of 2024-06-26.  Two
priced runs are shared by the module (``margin --explain --format json`` and one
``statement``); registration errors fail while reading the portfolio, before any pricing.
Sources of the rules: ``../shared/methodology/sources-2026-12.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from xmargin.cli.main import app
from xmargin.errors import InputError
from xmargin.reference.eligibility import load_eligibility
from xmargin.reference.treasuries import parse_ust
from xmargin.workflow import Environment

AS_OF = "2024-06-26"
# BASIS: a house basis trade.  MIX: a customer holding the same basis trade in its
# cross-margining account (elect=true) and a ZF/2-year position in its ordinary accounts.
# ORD: the ordinary half of MIX alone, not cross-margined (independent check of that half).
# SHORT: a note maturing 2025-01-31 (< 1 year: out of the arrangement since 2024-01-31)
# against 2-year futures; LONG: the same trade in a note maturing 2025-07-31 (> 1 year).
BOOK = """account,member,account_type,instrument,quantity,cross_margin,elect
BASIS,M1,house,91282CKQ3,10000000,true,
BASIS,M1,house,ZNU24,-129,true,
MIX,M1,customer,91282CKQ3,10000000,true,true
MIX,M1,customer,ZNU24,-129,true,true
MIX,M1,customer,ZFU24,30,true,false
MIX,M1,customer,91282CKP5,5000000,true,false
ORD,M1,customer,ZFU24,30,false,
ORD,M1,customer,91282CKP5,5000000,false,
SHORT,M1,customer,91282CGG0,40000000,true,
SHORT,M1,customer,ZTU24,-100,true,
LONG,M1,customer,91282CHN4,40000000,true,
LONG,M1,customer,ZTU24,-100,true,
"""
MEMBERS = """member,ficc_netting_member,cme_clearing_member,bd_fcm,affiliates
M1,true,true,true,AFF1
M2,true,true,false,
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arrangement")
    (root / "book.csv").write_text(BOOK)
    (root / "members.csv").write_text(MEMBERS)
    return {"book": root / "book.csv", "members": root / "members.csv", "root": root}


@pytest.fixture(scope="module")
def payload(files: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    r = invoke("margin", str(files["book"]), "--as-of", AS_OF, "--format", "json", "--explain",
               "--members", str(files["members"]), "--data-dir", str(data_dir))
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def statement(files: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    out = files["root"] / "statements"
    r = invoke("statement", str(files["book"]), "--account", "MIX", "--as-of", AS_OF, "--out", str(out),
               "--members", str(files["members"]), "--data-dir", str(data_dir))
    assert r.exit_code == 0, r.stderr
    assert (out / "statement-MIX.html").is_file()
    return json.loads((out / "statement-MIX.json").read_text())


def by_account(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["account"]: r for r in doc["accounts"]}


# --- registrations ----------------------------------------------------------------------------

def _env(data_dir: Path, members: Path | None = None) -> Environment:
    return Environment.load(date.fromisoformat(AS_OF), data_dir=data_dir, members=members)


def test_customer_at_a_member_without_bd_fcm_status_is_refused(tmp_path: Path, data_dir: Path,
                                                               files: dict[str, Path]) -> None:
    book = tmp_path / "b.csv"
    book.write_text("account,member,account_type,instrument,quantity,cross_margin\n"
                    "H,M2,house,ZNU24,-1,true\n"
                    "C9,M2,customer,ZNU24,-1,true\n")
    with pytest.raises(InputError) as err:
        _env(data_dir, files["members"]).read_book(book)
    assert (err.value.row, err.value.field) == (3, "cross_margin")  # the customer's row; the house is fine
    assert str(book) in str(err.value) and "C9" in str(err.value) and "BD-FCM" in str(err.value)
    # the same customer without the election may clear at M2
    book.write_text("account,member,account_type,instrument,quantity,cross_margin\nC9,M2,customer,ZNU24,-1,false\n")
    assert _env(data_dir, files["members"]).read_book(book).size == 1
    # and the command line says so in one line, exit status 2
    book.write_text("account,member,account_type,instrument,quantity\nC9,M2,customer,ZNU24,-1\n")
    r = invoke("margin", str(book), "--as-of", AS_OF, "--members", str(files["members"]), "--data-dir", str(data_dir))
    assert r.exit_code == 2 and "BD-FCM" in r.stderr


@pytest.mark.parametrize(("row", "field", "words"), [
    ("X,M7,house,ZNU24,-1,true", "member", "not in the members file"),
    ("AFF2,M1,affiliate,ZNU24,-1,true", "account_type", "not a registered affiliate"),
])
def test_unknown_member_and_unlisted_affiliate_are_refused(tmp_path: Path, data_dir: Path, files: dict[str, Path],
                                                           row: str, field: str, words: str) -> None:
    book = tmp_path / "b.csv"
    book.write_text(f"account,member,account_type,instrument,quantity,cross_margin\n{row}\n")
    with pytest.raises(InputError, match=words) as err:
        _env(data_dir, files["members"]).read_book(book)
    assert (err.value.row, err.value.field) == (2, field)


def test_affiliate_is_its_own_account_and_members_may_ride_in_a_json_portfolio(tmp_path: Path,
                                                                               data_dir: Path) -> None:
    doc = {"members": [{"member": "M1", "ficc_netting_member": True, "cme_clearing_member": True, "bd_fcm": False,
                        "affiliates": ["AFF1"]}],
           "accounts": [{"account": "AFF1", "member": "M1", "account_type": "affiliate", "cross_margin": True,
                         "positions": [{"instrument": "ZNU24", "quantity": -1}]},
                        {"account": "HOUSE", "member": "M1", "account_type": "house", "cross_margin": True,
                         "positions": [{"instrument": "ZNU24", "quantity": 1}]}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    book = _env(data_dir).read_book(path)  # house and affiliate need both memberships, not BD-FCM status
    assert [a.account_type for a in book.accounts] == ["affiliate", "house"]
    assert book.positions.toarray().tolist()[0] != book.positions.toarray().tolist()[1]  # never netted
    doc["accounts"].append({"account": "C1", "member": "M1", "account_type": "customer",
                            "positions": [{"instrument": "ZNU24", "quantity": 1}]})
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="BD-FCM"):
        _env(data_dir).read_book(path)


def test_elect_true_in_an_account_that_has_not_elected_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    book = tmp_path / "b.csv"
    book.write_text("account,member,account_type,instrument,quantity,cross_margin,elect\n"
                    "C,M,customer,ZNU24,-1,false,true\n")
    with pytest.raises(InputError) as err:
        _env(data_dir).read_book(book)
    assert (err.value.row, err.value.field) == (2, "elect")


# --- eligibility from the record --------------------------------------------------------------

def test_eligibility_roll_out_and_sources() -> None:
    rules = load_eligibility()
    note = parse_ust("UST:4:2025-07-31", source="test")
    assert rules.min_remaining_years == 1.0
    assert rules.roll_out_date(note) == date(2024, 7, 31)  # maturity minus one year, by hand
    assert rules.is_eligible(note, date(2024, 7, 30)) and not rules.is_eligible(note, date(2024, 7, 31))
    ok, why = rules.why(note, date(2024, 8, 1))
    assert not ok and "2024-07-31" in why
    entries = rules.entries()
    assert {e["product"] for e in entries if e["clearinghouse"] == "CME"} == {
        "ZT", "Z3N", "ZF", "ZN", "TN", "TWE", "ZB", "UB", "SR3", "SR1", "ZQ"}
    assert all(e["source"] and e["source"] != rules.source for e in entries)  # each entry cites its own source
    assert len(rules.sha256) == 64


def test_a_note_inside_one_year_of_maturity_earns_no_reduction(payload: dict[str, Any]) -> None:
    acc = by_account(payload)
    short, long_ = acc["SHORT"], acc["LONG"]
    assert long_["applied_reduction_factor"] > 0.3  # the same trade one year out is cross-margined
    assert short["applied_reduction_factor"] == 0.0 and short["savings"] == 0.0
    assert short["components"]["ficc_var_eligible"] == 0.0  # the note sits in the ordinary account
    assert short["arrangement"]["ordinary_accounts"]["ficc_requirement"] > 0
    assert any("91282CGG0" in w and "2024-01-31" in w for w in payload["warnings"])


# --- one customer, both accounts --------------------------------------------------------------

def test_elected_and_non_elected_positions_get_both_figures(payload: dict[str, Any]) -> None:
    acc = by_account(payload)
    mix, basis, ordinary = acc["MIX"], acc["BASIS"], acc["ORD"]
    xm, od = mix["arrangement"]["cross_margin_account"], mix["arrangement"]["ordinary_accounts"]
    assert (xm["ficc_account"], od["cme_account"]) == ("FICC Cross-Margining Customer Account",
                                                      "CME customer segregated account (not cross-margined)")
    assert (xm["positions"], od["positions"]) == (2, 2)
    # the cross-margining account is the basis trade, cross-margined (the house account holds the same)
    assert xm["total_after"] == pytest.approx(basis["total_after"], rel=1e-12)
    assert mix["applied_reduction_factor"] == basis["applied_reduction_factor"] == 0.8
    # the ordinary accounts are margined stand-alone: the same as the positions alone, not elected
    assert od["total"] == pytest.approx(ordinary["total_after"], rel=1e-12)
    assert od["ficc_requirement"] == pytest.approx(ordinary["ficc_requirement"], rel=1e-12)
    # and the customer's figure is the sum of both
    assert mix["total_after"] == pytest.approx(xm["total_after"] + od["total"], rel=1e-12)
    assert mix["total_before"] == pytest.approx(xm["total_before"] + od["total"], rel=1e-12)


def test_explain_shows_how_the_reduction_was_reached(payload: dict[str, Any]) -> None:
    labels = payload["reduction_labels"]
    for rec in payload["accounts"]:
        red = rec["reduction"]
        assert set(labels) <= set(red)
        if red["binding"] == "none":
            assert red["applied"] == 0.0
            continue
        total = red["f_sa"] + red["c_sa"]
        # the formula by hand from the labelled inputs
        assert red["r_ficc"] == pytest.approx(max(0.0, 1 - red["f_comb"] / total), rel=1e-12)
        assert red["r_cme"] == pytest.approx(max(0.0, 1 - red["c_comb"] / total), rel=1e-12)
        assert red["applied"] == pytest.approx(min(red["r_ficc"], red["r_cme"], red["cap"]), abs=1e-15)
        expected = "cap" if min(red["r_ficc"], red["r_cme"]) > red["cap"] else (
            "ficc" if red["r_ficc"] <= red["r_cme"] else "cme")
        assert red["binding"] == expected, rec["account"]
    assert by_account(payload)["BASIS"]["reduction"]["binding"] == "cap"
    assert "not elected" in by_account(payload)["ORD"]["reduction"]["why"]


def test_explain_table_labels_every_column(files: dict[str, Path], data_dir: Path) -> None:
    r = invoke("margin", str(files["book"]), "--as-of", AS_OF, "--explain", "--data-dir", str(data_dir))
    assert r.exit_code == 0, r.stderr
    for header in ("F_sa $", "C_sa $", "F_comb $", "C_comb $", "r_FICC", "r_CME", "min(r)", "cap", "applied",
                   "set by", "XM requirement", "ordinary total"):
        assert header in r.stdout, header


# --- statements and provenance ----------------------------------------------------------------

def test_statement_equals_margin_json_to_the_cent(statement: dict[str, Any], payload: dict[str, Any]) -> None:
    rec = by_account(payload)["MIX"]
    for key, value in statement["figures"].items():
        assert round(value, 2) == round(rec[key], 2), key
    assert statement["arrangement"] == rec["arrangement"]
    assert statement["reduction"]["applied"] == rec["reduction"]["applied"]
    assert {p["account"] for p in statement["positions"]} == {
        "FICC Cross-Margining Customer Account", "FICC customer account (not cross-margined)",
        "CME customer cross-margin account", "CME customer segregated account (not cross-margined)"}
    assert math.fsum(p["quantity"] for p in statement["positions"] if p["instrument"] == "ZNU24") == -129
    # the scenario dates behind each VaR are the margin --explain ones
    for name, ex in rec["explain"].items():
        assert statement["var_scenarios"][name]["var_scenario"] == ex["var_scenario"], name
    assert statement["statement"]["member"]["bd_fcm"] is True


def test_statement_html_is_offline_with_charts(files: dict[str, Path], statement: dict[str, Any]) -> None:
    text = (files["root"] / "statements" / "statement-MIX.html").read_text()
    assert text.count("data:image/png;base64,") == 2
    assert "<script" not in text and "http://" not in text and "https://" not in text
    for words in ("FICC Cross-Margining Customer Account", "How the reduction was reached", "SHA-256",
                  "Scenarios driving each VaR", "cross.reduction_cap"):
        assert words in text, words


def test_provenance_checksums_match_the_files(payload: dict[str, Any], statement: dict[str, Any],
                                              files: dict[str, Path]) -> None:
    for doc in (payload, statement):
        prov = doc["provenance"]
        assert prov["as_of"] == AS_OF and prov["xmargin_version"] and prov["generated_at"].endswith("+00:00")
        roles = {f["role"] for f in prov["data_files"]}
        assert {"par yield curves", "Treasury auction results", "portfolio", "members file"} <= roles
        for f in prov["data_files"]:
            path = Path(f["path"])
            assert hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"], path
            assert path.stat().st_size == f["bytes"]
        auctions = next(f for f in prov["data_files"] if f["role"] == "Treasury auction results")
        lines = Path(auctions["path"]).read_text().splitlines()
        assert auctions["last_date"] == max(line.split(",")[3] for line in lines[1:])  # auction_date column
        params = json.dumps(payload["model"]["params"], sort_keys=True, separators=(",", ":"))
        assert prov["params_sha256"] == hashlib.sha256(params.encode()).hexdigest()
        text = load_eligibility().sha256
        assert prov["eligibility"]["sha256"] == text


# --- the default as-of date -------------------------------------------------------------------

def test_default_as_of_is_the_last_complete_date(data_dir: Path) -> None:
    from xmargin.market.asof import basket_warnings, stale_warning
    from xmargin.masterdata import load_master
    from xmargin.reference.futures import parse_future_symbol
    from xmargin.workflow import default_as_of

    # independently: the last curve date on or before the last original issue in auctions.csv
    lines = (data_dir / "securities" / "auctions.csv").read_text().splitlines()[1:]
    last_issue = max(line.split(",")[4] for line in lines)
    curve_dates = [line.split(",")[0] for line in (data_dir / "yields" / "par_yield_curve.csv").read_text()
                   .splitlines()[1:]]
    expected = max(d for d in curve_dates if d <= last_issue)
    assert default_as_of(data_dir).isoformat() == expected
    assert stale_warning(date(2024, 8, 9), today=date(2024, 8, 16)) is None  # 5 business days
    assert "6 business days" in (stale_warning(date(2024, 8, 9), today=date(2024, 8, 19)) or "")
    master = load_master(data_dir)
    late = date(2025, 10, 31)
    warned = basket_warnings([parse_future_symbol("ZNZ25", late)], master, late)
    assert len(warned) == 1 and "incomplete" in warned[0]
    assert basket_warnings([parse_future_symbol("ZNU24", date(2024, 6, 26))], master, date(2024, 6, 26)) == []
    assert np.busday_count(date(2024, 8, 9), date(2024, 8, 19)) == 6  # Fri -> Mon a week later, by hand


# --- the command line -------------------------------------------------------------------------

def test_help_has_no_type_noise() -> None:
    """Every command's --help: no ``<bool>``/``<str>``/``<path>`` labels and no ``{argument}``."""
    names = [c.name for c in app.registered_commands if c.name] + ["curve", "price"]
    assert {"margin", "statement", "demo"} <= set(names)
    for name in names:
        r = invoke(name, "--help")
        assert r.exit_code == 0, name
        for noise in ("<bool>", "<str>", "<path>", "<int>", "<float>", "{"):
            assert noise not in r.stdout, (name, noise)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_tables_fit_the_terminal_without_cutting_figures(width: int) -> None:
    from rich.console import Console

    from xmargin.cli.common import table

    columns = ["account", "member", "type", "FICC stand-alone", "CME stand-alone", "FICC combined", "CME combined",
               "reduction", "before", "after", "savings", "savings %", "status"]
    values = ["CUSTOMER-WITH-A-LONG-NAME", "CM01", "customer", 181250.72, 148988.0, 46941.4, 41497.64, 0.8,
              330238.71, 66047.74, 264190.97, 80.0, "ok"]
    console = Console(width=width, record=True)
    console.print(table("Margin", columns, [values], digits=2))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    for v in values:
        shown = f"{v:,.2f}" if isinstance(v, float) else v
        assert shown in text, (width, shown)  # never cut to '1…'
    for c in columns:
        assert c in text.replace("\n", " ") or all(w in text for w in c.split()), c


def test_incomplete_basket_is_said_not_silent(data_dir: Path) -> None:
    """As of 2025-10-31 the securities master (auctions to 2024-08) misses ZNZ25 deliverables."""
    r = invoke("futures", "basket", "ZNZ25", "--as-of", "2025-10-31", "--format", "json", "--data-dir", str(data_dir))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["warnings"]) == 1 and "incomplete" in doc["warnings"][0] and "incomplete" in r.stderr
    r = invoke("futures", "basket", "ZNU24", "--as-of", AS_OF, "--format", "json", "--data-dir", str(data_dir))
    assert json.loads(r.stdout)["warnings"] == []
