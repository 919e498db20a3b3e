"""The pricing CLI contract: ``curve``, ``price`` and ``futures basket`` (JSON field names are
fixed; later tools read them) and its error handling (exit status 2, one clear line)."""

from __future__ import annotations

import json
from pathlib import Path

import QuantLib as ql
from typer.testing import CliRunner

from xmargin.cli.main import app

runner = CliRunner()


def _json(args: list[str], data_dir: Path) -> object:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_curve_json_contract(data_dir: Path) -> None:
    out = _json(["curve", "--as-of", "2024-06-26"], data_dir)
    assert isinstance(out, dict)
    assert set(out) >= {"as_of", "tenors", "par_yield_pct", "zero_rate_pct", "discount_factor"}
    assert out["as_of"] == "2024-06-26"
    assert out["tenors"][0] == "1M" and out["tenors"][-1] == "30Y"
    # the published 10-year par yield on 2024-06-26 was 4.32% (yields/SOURCE.md of the shared data)
    assert out["par_yield_pct"][out["tenors"].index("10Y")] == 4.32
    # the 1-month discount factor is the bill formula 1 / (1 + y * days / 365) (Treasury's
    # bond-equivalent yield of a bill), computed here by hand
    one_month_days = 30  # 2024-06-26 -> 2024-07-26
    assert abs(out["discount_factor"][0] - 1 / (1 + out["par_yield_pct"][0] / 100 * one_month_days / 365)) < 1e-12


def test_curve_default_is_the_common_default_and_latest_is_the_last_curve(data_dir: Path) -> None:
    """One default for every command: the last curve on or before the securities master's last
    issue (computed here from the raw files); ``--as-of latest`` is the last curve."""
    lines = (data_dir / "yields" / "par_yield_curve.csv").read_text().strip().splitlines()
    last_issue = max(r.split(",")[4] for r in (data_dir / "securities" / "auctions.csv").read_text().splitlines()[1:])
    out = _json(["curve"], data_dir)
    assert out["as_of"] == max(r.split(",")[0] for r in lines[1:] if r.split(",")[0] <= last_issue)
    assert _json(["curve", "--as-of", "latest"], data_dir)["as_of"] == lines[-1].split(",")[0]


def test_price_json_contract_cash_and_futures(data_dir: Path) -> None:
    rows = _json(["price", "91282CKQ3", "912797KH9", "ZNU24", "SR3U24", "--as-of", "2024-06-26"], data_dir)
    assert isinstance(rows, list) and len(rows) == 4
    for row in rows:
        assert set(row) >= {"instrument", "clean_price", "accrued", "dirty_price", "yield_pct", "dv01"}
    note, bill, fut, sofr = rows
    assert abs(note["dirty_price"] - note["clean_price"] - note["accrued"]) < 1e-12
    # accrued by hand: 4 3/8% note, last coupon 2024-05-15, next 2024-11-15 (184 days),
    # settlement T+1 = 2024-06-27, 43 days accrued: 4.375 / 2 * 43 / 184 per 100 face
    assert abs(note["accrued"] - 4.375 / 2 * 43 / 184) < 1e-12
    # FedInvest priced it at 100.5 (sell) that day: the curve price is within a few ticks
    assert abs(note["clean_price"] - 100.5) < 0.25
    assert bill["accrued"] == 0.0 and bill["clean_price"] < 100
    assert set(fut) >= {"ctd", "conversion_factor", "implied_repo_pct"}
    assert 0.5 < fut["conversion_factor"] < 1.0
    # DV01 units: dollars per $100 face for cash, per contract for futures; a ZN contract
    # ($100,000 face) carries roughly 600-700 times the DV01 of $100 of a 7-year note
    assert 40 < fut["dv01"] < 90 and 0.05 < note["dv01"] < 0.1
    # SR3 is $25 per basis point by contract design
    assert 20 < sofr["dv01"] < 26


def test_price_from_yield_matches_quantlib(data_dir: Path) -> None:
    """Street-convention clean price from a yield, checked against QuantLib on a real note."""
    out = _json(["price", "91282CKQ3", "--yield", "4.25", "--settle", "2024-07-01"], data_dir)
    assert isinstance(out, list)
    schedule = ql.Schedule(
        [ql.Date(15, 5, 2024) + ql.Period(6 * k, ql.Months) for k in range(21)],
        ql.NullCalendar(), ql.Unadjusted, ql.Unadjusted, ql.Period(6, ql.Months),
        ql.DateGeneration.Backward, False,
    )
    bond = ql.FixedRateBond(0, 100.0, schedule, [0.04375], ql.ActualActual(ql.ActualActual.ISMA))
    expected = bond.cleanPrice(0.0425, ql.ActualActual(ql.ActualActual.ISMA), ql.Compounded, ql.Semiannual,
                               ql.Date(1, 7, 2024))
    assert abs(out[0]["clean_price"] - expected) < 1e-8


def test_futures_basket_json(data_dir: Path) -> None:
    out = _json(["futures", "basket", "ZNU24", "--as-of", "2024-06-26"], data_dir)
    assert isinstance(out, dict) and out["symbol"] == "ZNU24"
    for d in out["deliverables"]:
        assert set(d) >= {"instrument", "coupon_pct", "maturity", "conversion_factor"}
    # CME's worked example (methodology section 7): the 4 1/8% of 2030-08-31 has factor
    # 0.9003 for the December 2023 10-year: 6 years 9 months from 2023-12-01, rounded down to
    # the quarter, 6y 6m.  The 4 1/8% of 2031-03-31 sits 6y 6m from 2024-09-01, so in ZNU24
    # it must carry the same published factor.
    by_id = {d["instrument"]: d for d in out["deliverables"]}
    assert by_id["91282CKF7"]["coupon_pct"] == 4.125 and by_id["91282CKF7"]["maturity"] == "2031-03-31"
    assert by_id["91282CKF7"]["conversion_factor"] == 0.9003


def test_errors_exit_2_with_one_clear_line(data_dir: Path) -> None:
    cases = [
        (["price", "912828XYZ", "--as-of", "2024-06-26"], "912828XYZ"),
        (["price", "91282CKQ4", "--as-of", "2024-06-26"], "check digit"),
        (["price", "ZNU20", "--as-of", "2024-06-26"], "ZNU20"),
        (["price", "912810QF8", "--as-of", "2024-06-26"], "not supported yet"),
        (["curve", "--as-of", "2024-06-29"], "Saturday"),
        (["curve", "--as-of", "2024-13-01"], "not a date"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output, (args, result.output)


def test_previous_business_day_option(data_dir: Path) -> None:
    out = _json(["curve", "--as-of", "2024-06-29", "--previous-business-day"], data_dir)
    assert isinstance(out, dict) and out["as_of"] == "2024-06-28"
