"""``xmargin margin``: the JSON contract, explanations, configuration, and clean failures.

Runs the real command (``typer.testing.CliRunner`` on ``xmargin.cli.main.app``) on the real
data as of 2024-06-26.  Three successful runs are shared by the module (JSON with
``--explain``, table with ``--explain``, JSON with ``--config`` cap 0.5); every error case
fails while reading the portfolio, before any pricing, so those runs are quick.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from xmargin.cli.main import app

AS_OF = "2024-06-26"
HEADLINE = ("ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined", "ficc_reduction_factor",
            "cme_reduction_factor", "applied_reduction_factor", "ficc_requirement", "cme_requirement",
            "total_before", "total_after", "savings", "savings_pct")
SUMMED = ("ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined", "ficc_requirement",
          "cme_requirement", "total_before", "total_after", "savings")
BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS,M1,house,91282CKQ3,10000000,true
BASIS,M1,house,ZNU24,-129,true
CURVE,M1,house,ZFU24,30,true
CURVE,M1,house,ZNU24,-19,true
CASH,M2,customer,91282CKP5,5000000,true
NOXM,M2,house,91282CKQ3,10000000,false
NOXM,M2,house,ZNU24,-129,false
BILLX,M2,house,91282CKQ3,10000000,true
BILLX,M2,house,ZNU24,-129,true
BILLX,M2,house,912797LB1,20000000,true
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["margin", *args])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    (root / "book.csv").write_text(BOOK)
    (root / "cap.toml").write_text("[cross]\nreduction_cap = 0.5\n")
    return {"book": root / "book.csv", "cap": root / "cap.toml", "root": root}


@pytest.fixture(scope="module")
def payload(files: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    result = invoke(str(files["book"]), "--as-of", AS_OF, "--format", "json", "--explain", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def capped(files: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    result = invoke(str(files["book"]), "--as-of", AS_OF, "--format", "json", "--config", str(files["cap"]),
                    "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def accounts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["account"]: r for r in doc["accounts"]}


# --- the JSON contract ------------------------------------------------------------------------

def test_json_has_every_fixed_field(payload: dict[str, Any]) -> None:
    assert {"as_of", "model", "warnings", "accounts", "totals"} <= set(payload)
    assert payload["as_of"] == AS_OF
    assert [r["account"] for r in payload["accounts"]] == ["BASIS", "CURVE", "CASH", "NOXM", "BILLX"]
    for rec in payload["accounts"]:
        for key in ("account", "member", "account_type", "cross_margin", *HEADLINE, "components", "status", "reason"):
            assert key in rec, key
        for key in ("ficc_var", "ficc_floor", "ficc_floor_topup", "ficc_concentration", "span_scan_risk",
                    "span_intra_spread_charge", "span_inter_spread_credit"):
            assert key in rec["components"], key
        assert rec["status"] == "ok"
    assert {*SUMMED, "savings_pct"} <= set(payload["totals"])
    model = payload["model"]
    assert model["params"]["cross"]["reduction_cap"] == 0.8
    assert model["ficc_scenarios"] == 2748 and model["ficc_stress_period"][0].startswith("2007-07")


def test_totals_are_the_sum_of_accounts(payload: dict[str, Any]) -> None:
    """Each summed field of ``totals`` is the plain sum of the account figures; the total
    saving in percent is total savings / total before x 100."""
    tot = payload["totals"]
    for key in SUMMED:
        assert tot[key] == pytest.approx(math.fsum(r[key] for r in payload["accounts"]), rel=1e-12), key
    assert tot["savings_pct"] == pytest.approx(tot["savings"] / tot["total_before"] * 100, rel=1e-12)
    assert tot["total_after"] == pytest.approx(tot["total_before"] - tot["savings"], rel=1e-12)


def test_account_figures_are_consistent(payload: dict[str, Any]) -> None:
    """Per account: before = FICC + CME stand-alone, after = FICC + CME requirement, saving =
    before - after, applied = min of the two house factors and the 0.8 cap; the basis trade
    saves 80% (capped), the others as their books allow."""
    for rec in payload["accounts"]:
        assert rec["total_before"] == pytest.approx(rec["ficc_standalone"] + rec["cme_standalone"], rel=1e-12)
        assert rec["total_after"] == pytest.approx(rec["ficc_requirement"] + rec["cme_requirement"], rel=1e-12)
        assert rec["savings"] == pytest.approx(rec["total_before"] - rec["total_after"], rel=1e-12, abs=1e-9)
        assert rec["applied_reduction_factor"] == pytest.approx(
            min(rec["ficc_reduction_factor"], rec["cme_reduction_factor"], 0.8), abs=1e-15)
    acc = accounts(payload)
    assert acc["BASIS"]["applied_reduction_factor"] == 0.8
    for name in ("CURVE", "CASH", "NOXM"):
        assert acc[name]["savings"] == 0.0, name
    assert acc["CURVE"]["components"]["span_inter_spread_credit"] > 0
    assert acc["NOXM"]["total_before"] == pytest.approx(acc["BASIS"]["total_before"], rel=1e-12)
    assert "not elected" in acc["NOXM"]["reason"]


def test_ineligible_bill_warns_and_is_margined_stand_alone(payload: dict[str, Any]) -> None:
    acc = accounts(payload)
    (warning,) = payload["warnings"]
    assert "912797LB1" in warning and "BILLX" in warning and "row 11" in warning
    billx, basis = acc["BILLX"], acc["BASIS"]
    assert billx["applied_reduction_factor"] == basis["applied_reduction_factor"]
    assert billx["components"]["ficc_var_eligible"] == pytest.approx(basis["components"]["ficc_var_eligible"], rel=1e-12)
    assert billx["total_after"] > basis["total_after"]  # plus the bill's own stand-alone margin


# --- explanations -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def published(data_dir: Path) -> list[date]:
    """Days with a published par curve, read from the CSV here."""
    with (data_dir / "yields" / "par_yield_curve.csv").open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    return sorted(date.fromisoformat(r[0]) for r in rows[1:] if any(c.strip() for c in r[1:]))


def _window(label: str) -> tuple[date, date, bool]:
    text, stressed = (label[: -len(" (stress)")], True) if label.endswith(" (stress)") else (label, False)
    a, b = text.split("..")
    return date.fromisoformat(a), date.fromisoformat(b), stressed


def test_explain_lists_scenario_windows_and_contributors(payload: dict[str, Any], published: list[date]) -> None:
    """For the basis trade: each VaR figure names its scenario as two history dates, the
    FICC windows three published days apart and the CME windows two; the P&L in the VaR
    scenario is minus the VaR figure; the contributors are the account's instruments and
    add up to that P&L."""
    position = {d: i for i, d in enumerate(published)}
    rec = accounts(payload)["BASIS"]
    ex = rec["explain"]
    assert set(ex) == {"ficc_var", "ficc_combined", "cme_combined"}
    expected = {"ficc_var": rec["components"]["ficc_var_eligible"], "ficc_combined": rec["ficc_combined"],
                "cme_combined": rec["cme_combined"]}
    for name, part in ex.items():
        start, end, _ = _window(part["var_scenario"]["window"])
        assert position[end] - position[start] == (2 if name == "cme_combined" else 3)
        assert part["var_scenario"]["pnl"] == pytest.approx(-expected[name], rel=1e-9)
        for w in part["worst_scenarios"]:
            s, e, _ = _window(w["window"])
            assert s in position and e in position
        pnls = [w["pnl"] for w in part["worst_scenarios"]]
        assert pnls == sorted(pnls)
        assert pnls[0] <= part["var_scenario"]["pnl"]
        contributors = part["largest_contributors"]
        held = {"ficc_var": {"91282CKQ3"}}.get(name, {"91282CKQ3", "ZNU24"})
        assert {c["instrument"] for c in contributors} == held
        assert math.fsum(c["pnl_in_var_scenario"] for c in contributors) == pytest.approx(
            part["var_scenario"]["pnl"], rel=1e-9)


def test_table_output_with_explain(files: dict[str, Path], data_dir: Path) -> None:
    result = invoke(str(files["book"]), "--as-of", AS_OF, "--explain", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for word in ("BASIS", "CURVE", "CASH", "NOXM", "BILLX", "TOTAL", "VaR scenario", "largest contributors"):
        assert word in out, word
    assert "912797LB1" in result.stderr  # the eligibility warning


# --- configuration ----------------------------------------------------------------------------

def test_config_cap_changes_the_result(payload: dict[str, Any], capped: dict[str, Any]) -> None:
    """With ``reduction_cap = 0.5`` the basis trade (both house factors above 0.8) is cut by
    exactly half: after = 0.5 x before; stand-alone figures do not move; the parameter is
    recorded in the output."""
    assert capped["model"]["params"]["cross"]["reduction_cap"] == 0.5
    base, half = accounts(payload)["BASIS"], accounts(capped)["BASIS"]
    assert half["total_before"] == pytest.approx(base["total_before"], rel=1e-12)
    assert base["ficc_reduction_factor"] > 0.8 and base["cme_reduction_factor"] > 0.8
    assert half["applied_reduction_factor"] == 0.5
    assert half["total_after"] == pytest.approx(0.5 * half["total_before"], rel=1e-12)
    assert half["savings"] == pytest.approx(base["savings"] * 0.5 / 0.8, rel=1e-12)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[cross]\ncap = 0.5\n", "'cap'"),
        ("[margin]\nreduction_cap = 0.5\n", "[margin]"),
        ("[ficc.scenarios]\nhorizon = 3\n", "'horizon'"),
        ("[cross]\nreduction_cap = 'high'\n", "cross.reduction_cap"),
        ("[cross]\nreduction_cap = -0.5\n", "cross.reduction_cap"),
        ("[ficc]\nconfidence = 99\n", "ficc.confidence"),
        ("[cme]\nstandalone_model = 'spam'\n", "cme.standalone_model"),
        ("[cross\n", "cannot read"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(toml: str, named: str, files: dict[str, Path], data_dir: Path) -> None:
    path = files["root"] / "bad.toml"
    path.write_text(toml)
    result = invoke(str(files["book"]), "--as-of", AS_OF, "--format", "json", "--config", str(path),
                    "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert named in result.stderr and str(path) in result.stderr


# --- errors: file, row, field; no partial output ----------------------------------------------

ERROR_ROWS = [
    ("91282CKQ4", "1000000", "instrument", "check digit"),  # unknown instrument
    ("XXZ24", "1", "instrument", "unknown futures root"),
    ("ZNM24", "1", "instrument", "expired"),  # expired futures contract
    ("ZNU24", "ten", "quantity", "not a number"),  # quantity not a number
]


@pytest.mark.parametrize(("instrument", "quantity", "field", "words"), ERROR_ROWS)
def test_csv_errors_exit_2_with_nothing_on_stdout(
    instrument: str, quantity: str, field: str, words: str, files: dict[str, Path], data_dir: Path
) -> None:
    """The bad row is the last (row 12, after the eleven good lines including the header):
    exit status 2, stdout empty (no partial table or JSON), one error line naming it."""
    path = files["root"] / f"bad_{field}_{instrument}.csv"
    path.write_text(BOOK + f"LAST,M9,house,{instrument},{quantity},true\n")
    for fmt in ("json", "table"):
        result = invoke(str(path), "--as-of", AS_OF, "--format", fmt, "--data-dir", str(data_dir))
        assert result.exit_code == 2
        assert result.stdout == ""
        assert f"{path}, row 12, field '{field}'" in result.stderr
        assert words in result.stderr


@pytest.mark.parametrize(("instrument", "quantity", "field", "words"), ERROR_ROWS)
def test_json_errors_exit_2_with_nothing_on_stdout(
    instrument: str, quantity: str, field: str, words: str, files: dict[str, Path], data_dir: Path
) -> None:
    """Same errors in a JSON portfolio: the row is the position number (3)."""
    rows = [{"account": "A", "member": "M", "account_type": "house", "instrument": "91282CKQ3", "quantity": 1e7},
            {"account": "A", "member": "M", "account_type": "house", "instrument": "ZNU24", "quantity": -129},
            {"account": "A", "member": "M", "account_type": "house", "instrument": instrument,
             "quantity": quantity if field == "quantity" else float(quantity)}]
    path = files["root"] / f"bad_{field}_{instrument}.json"
    path.write_text(json.dumps(rows))
    result = invoke(str(path), "--as-of", AS_OF, "--format", "json", "--data-dir", str(data_dir))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{path}, row 3, field '{field}'" in result.stderr
    assert words in result.stderr


def test_missing_portfolio_and_bad_date(files: dict[str, Path], data_dir: Path) -> None:
    missing = invoke(str(files["root"] / "none.csv"), "--as-of", AS_OF, "--data-dir", str(data_dir))
    assert missing.exit_code == 2 and missing.stdout == "" and "not found" in missing.stderr
    bad_date = invoke(str(files["book"]), "--as-of", "2024-13-01", "--data-dir", str(data_dir))
    assert bad_date.exit_code == 2 and bad_date.stdout == "" and "--as-of" in bad_date.stderr
    weekend = invoke(str(files["book"]), "--as-of", "2024-06-29", "--data-dir", str(data_dir))
    assert weekend.exit_code == 2 and weekend.stdout == "" and "Saturday" in weekend.stderr
