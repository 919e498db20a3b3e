"""The demo book generator and ``xmargin demo`` on the real data.

Checks: the default date follows the securities master (computed here from the raw files),
the book is deterministic for a seed, accounts and instruments are real and sized as
documented, hedges are DV01 hedges, and the command's numbers can be reproduced by margining
its own portfolio file through the ordinary file reader.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from xmargin.cli import demo_cmd
from xmargin.errors import InputError
from xmargin.margin.calculator import compute_margins
from xmargin.margin.calibration import listed_contracts
from xmargin.portfolio.book import Book
from xmargin.portfolio.demo import (
    ARCHETYPES,
    DEMO_CONTRACTS,
    DemoConfig,
    generate_book,
    prepare_market,
)
from xmargin.pricing.revalue import sensitivities
from xmargin.reference.cusip import is_valid_cusip
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.repo import Repo
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBond
from xmargin.workflow import Environment

SMALL = DemoConfig(members=2, customers_per_member=40, affiliates_per_member=1, seed=11)


def _expected_default_as_of(data_dir: Path) -> date:
    """Last original issue date in the auction file, then the last curve on or before it."""
    with (data_dir / "securities" / "auctions.csv").open() as fh:
        last_issue = max(date.fromisoformat(r["issue_date"]) for r in csv.DictReader(fh))
    with (data_dir / "yields" / "par_yield_curve.csv").open() as fh:
        days = [date.fromisoformat(r["date"]) for r in csv.DictReader(fh)
                if any(v.strip() for k, v in r.items() if k != "date")]
    return max(d for d in days if d <= last_issue)


@pytest.fixture(scope="module")
def run(data_dir: Path) -> demo_cmd.DemoRun:
    return demo_cmd.run_demo(SMALL, data_dir=data_dir)


@pytest.fixture(scope="module")
def market(run: demo_cmd.DemoRun):  # type: ignore[no-untyped-def]
    snap = run.context.snapshot
    contracts = [c for r, n in DEMO_CONTRACTS.items() for c in listed_contracts(r, snap.as_of, n)]
    return prepare_market(snap, run.context.master, contracts)


def _positions(book: Book) -> list[tuple[str, str, str, bool, str, float]]:
    out = []
    for i, acc in enumerate(book.accounts):
        for inst, q in book.positions_of(i):
            out.append((acc.account, acc.member, acc.archetype, acc.cross_margin, inst, q))
    return sorted(out)  # column order depends on the book's universe


def test_default_as_of_follows_the_securities_master(run: demo_cmd.DemoRun, data_dir: Path) -> None:
    expected = _expected_default_as_of(data_dir)
    assert expected == date(2024, 8, 15)  # the shared data's auctions end with the August 2024 refunding
    assert demo_cmd.default_as_of(data_dir) == expected
    assert run.context.snapshot.as_of == expected


def test_same_seed_same_book_other_seed_other_book(run: demo_cmd.DemoRun, market) -> None:  # type: ignore[no-untyped-def]
    again = generate_book(market, SMALL)
    assert again.accounts == run.book.accounts
    assert _positions(again) == _positions(run.book)
    other = generate_book(market, DemoConfig(members=2, customers_per_member=40, seed=12))
    assert _positions(other) != _positions(run.book)


def test_more_customers_leave_existing_accounts_unchanged(run: demo_cmd.DemoRun, market) -> None:  # type: ignore[no-untyped-def]
    bigger = generate_book(market, DemoConfig(members=2, customers_per_member=45, affiliates_per_member=1, seed=11))
    names = {a.account for a in run.book.accounts}
    assert [p for p in _positions(bigger) if p[0] in names] == _positions(run.book)


def test_accounts_members_and_elections(run: demo_cmd.DemoRun) -> None:
    accounts = run.book.accounts
    assert run.book.members() == ["CM01", "CM02"]
    for member in ("CM01", "CM02"):
        mine = [a for a in accounts if a.member == member]
        assert [a.account for a in mine if a.archetype == "house"] == [f"{member}-HOUSE"]
        assert [a.account for a in mine if a.archetype == "affiliate"] == [f"{member}-AFF1"]
        # affiliates are their own account type, linked to the member (the 2025 amendment)
        assert [a.account_type for a in mine if a.archetype in ("house", "affiliate")] == ["house", "affiliate"]
        customers = [a for a in mine if a.account_type == "customer"]
        assert len(customers) == 40
        assert {a.archetype for a in customers} <= {"basis", "rv_curve", "asset_manager", "directional", "dealer"}
    assert all(a.cross_margin for a in accounts if a.archetype == "house")
    share = np.mean([a.cross_margin for a in accounts if a.account_type == "customer"])
    assert 0.55 < share < 0.95  # 80 draws at 75%


def test_election_share_extremes(market) -> None:  # type: ignore[no-untyped-def]
    none = generate_book(market, DemoConfig(members=1, customers_per_member=30, xm_share=0.0, house_xm=False))
    assert not any(a.cross_margin for a in none.accounts)
    every = generate_book(market, DemoConfig(members=1, customers_per_member=30, xm_share=1.0))
    assert all(a.cross_margin for a in every.accounts)


def test_instruments_are_real_and_live(run: demo_cmd.DemoRun) -> None:
    as_of = run.context.snapshot.as_of
    master = run.context.master
    kinds = set()
    for inst in run.book.universe.instruments:
        bond = inst.collateral if isinstance(inst, Repo) else inst
        if isinstance(inst, Repo):
            assert inst.start == as_of and inst.end > as_of and inst.end <= bond.maturity
            kinds.add("repo")
        if isinstance(bond, TreasuryBond):
            rec = master.record(bond.cusip)
            assert is_valid_cusip(bond.cusip) and rec.kind in ("note", "bond")
            assert rec.issue_date <= as_of < rec.maturity
            kinds.add("cash")
        elif isinstance(inst, TreasuryFuture | RateFuture):
            assert inst.last_trading_day >= as_of
            kinds.add(inst.root)
    assert {"cash", "repo", "ZN", "ZF", "ZT", "UB", "SR3"} <= kinds
    assert not run.context.failures


def test_quantities_are_lots_and_whole_contracts(run: demo_cmd.DemoRun) -> None:
    for _, _, _, _, inst_id, q in _positions(run.book):
        inst = run.book.universe.instruments[run.book.universe.index(inst_id)]
        if isinstance(inst, TreasuryFuture | RateFuture):
            assert q == round(q) and q != 0
        else:
            assert abs(q) % 100_000 == 0


@pytest.fixture(scope="module")
def dv01(run: demo_cmd.DemoRun) -> np.ndarray:
    """DV01 of every instrument of the book, dollars per bp per unit."""
    ctx = run.context
    return sensitivities(ctx.universe, ctx.snapshot, ctx.master)[0]


def _dv01_by_kind(run: demo_cmd.DemoRun, dv01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per account: DV01 of cash and repo positions, and of futures ($/bp, signed)."""
    is_fut = np.array([isinstance(i, TreasuryFuture | RateFuture) for i in run.context.universe.instruments])
    q = run.book.positions
    return np.asarray(q @ np.where(is_fut, 0.0, dv01)).ravel(), np.asarray(q @ np.where(is_fut, dv01, 0.0)).ravel()


def test_basis_accounts_are_dv01_hedged_within_the_stated_range(run: demo_cmd.DemoRun, dv01: np.ndarray) -> None:
    cash, fut = _dv01_by_kind(run, dv01)
    lo, hi = ARCHETYPES["basis"].dv01_range
    rows = [i for i, a in enumerate(run.book.accounts) if a.archetype == "basis"]
    assert len(rows) >= 10
    for i in rows:
        assert lo * 0.8 <= abs(cash[i]) <= hi * 1.2  # $100k lots round the face
        assert abs(cash[i] + fut[i]) <= 0.05 * abs(cash[i]) + 200.0  # +-3% ratio noise, whole contracts


def test_directional_accounts_hold_futures_only(run: demo_cmd.DemoRun, dv01: np.ndarray) -> None:
    cash, _ = _dv01_by_kind(run, dv01)
    gross = np.asarray(abs(run.book.positions) @ np.abs(dv01)).ravel()
    lo, hi = ARCHETYPES["directional"].dv01_range
    rows = [i for i, a in enumerate(run.book.accounts) if a.archetype == "directional"]
    assert rows
    for i in rows:
        assert cash[i] == 0.0
        assert lo * 0.5 <= gross[i] <= hi * 1.5  # whole contracts round small accounts


def test_savings_pattern_by_archetype(run: demo_cmd.DemoRun) -> None:
    m = run.margins
    for i, a in enumerate(run.book.accounts):
        if a.archetype == "directional" or not a.cross_margin:
            assert m.savings[i] == pytest.approx(0.0, abs=1e-6)
        if a.archetype == "basis" and a.cross_margin:
            assert m.applied_reduction_factor[i] > 0.5


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"members": 0}, "members"), ({"customers_per_member": -1}, "customers_per_member"),
    ({"xm_share": 1.5}, "xm_share"), ({"seed": -3}, "seed"), ({"mix": (("whales", 1.0),)}, "mix"),
    ({"repo_haircut": 0.9}, "repo_haircut"),
])
def test_bad_configuration_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        DemoConfig(**kwargs)
    assert err.value.field == field and field.split("_")[0] in str(err.value).replace(" ", "_").lower()


def test_command_writes_report_and_reproducible_files(run: demo_cmd.DemoRun, tmp_path: Path, data_dir: Path) -> None:
    app = typer.Typer()
    demo_cmd.register(app)
    app.command("noop")(lambda: None)  # a second command keeps 'demo' a sub-command
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--members", "2", "--customers", "40", "--seed", "11",
                                      "--out", str(out), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "MARKET" in result.output and "report.html" in result.output
    for name in ("report.html", "summary.json", "accounts.csv", "portfolio.csv"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    # a second, independent run of the whole job gives the same numbers
    assert summary["savings"]["market"]["after"] == pytest.approx(run.savings.market.after, rel=1e-12)
    assert summary["savings"]["market"]["before"] == pytest.approx(run.savings.market.before, rel=1e-12)
    # the portfolio file, read back by the ordinary reader and margined again, gives the same totals
    ctx = run.context  # same market objects: the scenario sets and SPAN calibration are reused
    env = Environment(ctx.snapshot, ctx.master, ctx.params, ctx.eligibility)
    book = env.read_book(out / "portfolio.csv")
    margins = compute_margins(env.context(book), book)
    assert book.size == run.book.size
    assert float(np.sum(margins.total_before)) == pytest.approx(summary["savings"]["market"]["before"], rel=1e-9)
    assert float(np.sum(margins.total_after)) == pytest.approx(summary["savings"]["market"]["after"], rel=1e-9)
    # accounts.csv adds up to the market figures
    with (out / "accounts.csv").open() as fh:
        after = sum(float(r["after"]) for r in csv.DictReader(fh))
    assert after == pytest.approx(summary["savings"]["market"]["after"], abs=0.01 * run.book.size)


def test_command_default_funding_spread_matches_the_library() -> None:
    from xmargin.reports.savings import DEFAULT_SPREAD_BP

    assert demo_cmd.FUNDING_SPREAD_BP == DEFAULT_SPREAD_BP == 50.0


def test_command_rejects_bad_options(tmp_path: Path, data_dir: Path) -> None:
    app = typer.Typer()
    demo_cmd.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["demo", "--xm-share", "2", "--out", str(tmp_path), "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert "xm_share" in result.output and "[0, 1]" in result.output
    result = CliRunner().invoke(app, ["demo", "--as-of", "2024-13-01", "--data-dir", str(data_dir)])
    assert result.exit_code == 2 and "not a date" in result.output


def test_formula_account_names_are_neutralised_in_the_csv_outputs(run: demo_cmd.DemoRun, tmp_path: Path) -> None:
    """Issue 15, attack 9: an account named like a spreadsheet formula (OWASP CSV injection)."""
    import dataclasses

    formula = "=cmd|' /C calc'!A0"
    first = run.savings.accounts[0]
    savings = dataclasses.replace(run.savings, accounts=(dataclasses.replace(first, account=formula),
                                                         *run.savings.accounts[1:]))
    book = dataclasses.replace(run.book, accounts=(dataclasses.replace(run.book.accounts[0], account=formula),
                                                   *run.book.accounts[1:]))
    paths = demo_cmd.write_outputs(dataclasses.replace(run, savings=savings, book=book), tmp_path)
    for name in ("accounts", "portfolio"):
        with paths[name].open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert "'" + formula in {r["account"] for r in rows}, name
        assert not any(v.startswith(("=", "+", "@")) for r in rows for v in r.values() if v), name
        if name == "portfolio":  # negative quantities stay numbers
            assert any(r["quantity"].startswith("-") and float(r["quantity"]) < 0 for r in rows)


def test_statements_on_request_equal_the_run_to_the_cent(run: demo_cmd.DemoRun, tmp_path: Path) -> None:
    """``xmargin demo --statements``: one statement per customer; each carries its account's
    figures from the run's own margin arrays, both accounts' figures when it keeps positions out
    of cross-margining, and provenance."""
    book = run.book
    partial = [a.account for i, a in enumerate(book.accounts) if a.account_type == "customer" and a.cross_margin
               and book.elected is not None and (book.positions[i] != book.elected[i]).nnz]
    plain = next(a.account for a in book.accounts if a.account_type == "customer" and a.cross_margin
                 and a.account not in partial)
    names = [plain, *partial[:1]]
    paths = demo_cmd.write_statements(run, tmp_path, names)
    assert [p.name for p in paths] == [f"statement-{n}.html" for n in names]
    index = book.account_index()
    for name in names:
        doc = json.loads((tmp_path / "statements" / f"statement-{name}.json").read_text())
        i = index[name]
        for key in ("total_before", "total_after", "savings", "ficc_requirement", "cme_requirement"):
            assert round(doc["figures"][key], 2) == round(float(getattr(run.margins, key)[i]), 2), (name, key)
        arr = doc["arrangement"]
        assert arr["cross_margin_account"]["total_after"] + arr["ordinary_accounts"]["total"] == pytest.approx(
            doc["figures"]["total_after"], rel=1e-12)
        assert doc["provenance"]["registrations"]["members"][0]["bd_fcm"] is True


def test_partial_elections_keep_rate_futures_in_ordinary_accounts(market) -> None:  # type: ignore[no-untyped-def]
    book = generate_book(market, DemoConfig(members=1, customers_per_member=60, seed=3, xm_share=1.0,
                                            partial_share=1.0))
    assert book.elected is not None
    kept_out = 0
    for i, acc in enumerate(book.accounts):
        row, xm_row = book.positions.getrow(i), book.elected.getrow(i)
        elected = dict(zip(xm_row.indices, xm_row.data, strict=True))
        for j, q in zip(row.indices, row.data, strict=True):
            inst = book.universe.instruments[j]
            out = acc.account_type == "customer" and isinstance(inst, RateFuture)
            assert elected.get(j, 0.0) == (0.0 if out else q), (acc.account, book.universe.ids[j])
            kept_out += out
    assert kept_out > 0 and demo_cmd.partial_elections(book) > 0
    none = generate_book(market, DemoConfig(members=1, customers_per_member=60, seed=3, partial_share=0.0))
    assert demo_cmd.partial_elections(none) == 0
