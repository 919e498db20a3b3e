"""Joint default simulation on real data (2024-06-26): losses, margin held and shortfalls
recomputed by hand from the scenario P&L matrix and the margin run."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from xmargin.errors import InputError
from xmargin.margin.calculator import compute_margins
from xmargin.validation.default import simulate_default
from xmargin.workflow import Environment

BOOK = """account,member,account_type,instrument,quantity,cross_margin
H-XM,M1,house,91282CKQ3,100000000,true
H-XM,M1,house,ZNU24,-1200,true
H-REG,M1,house,912810UA4,-15000000,false
C1,M1,customer,91282CKP5,40000000,true
C1,M1,customer,ZFU24,-250,true
C2,M1,customer,912810UA4,30000000,false
M2H,M2,house,ZBU24,100,true
"""


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("dflt") / "book.csv"
    path.write_text(BOOK)
    env = Environment.load(date(2024, 6, 26), data_dir=data_dir)
    book = env.read_book(path)
    ctx = env.context(book)
    return path, env, book, ctx, compute_margins(ctx, book)


def test_house_liquidation_by_hand(setup) -> None:  # type: ignore[no-untyped-def]
    path, env, book, ctx, margins = setup
    sim = simulate_default(ctx, book, "M1")
    assert sim.house_accounts == ("H-XM", "H-REG") and sim.customer_accounts == ()
    pnl = ctx.ficc_pnl.pnl  # 3-day scenarios: the default period equals FICC's horizon
    assert sim.scenarios is ctx.ficc_scenarios and sim.period_days == 3
    q = book.positions[[0, 1]].toarray().sum(axis=0)
    np.testing.assert_allclose(sim.loss, -(q @ pnl), rtol=1e-12)
    cme = ctx.attributes.is_cme
    np.testing.assert_allclose(sim.loss_cme, -((q * cme) @ pnl), rtol=1e-12, atol=1e-6)
    held = margins.total_after[0] + margins.total_after[1]
    assert sim.margin == pytest.approx(held, rel=1e-12)
    assert sim.margin_ficc == pytest.approx(margins.ficc_requirement[:2].sum(), rel=1e-12)
    np.testing.assert_allclose(sim.shortfall, np.maximum(-(q @ pnl) - held, 0.0), rtol=1e-12)
    s = sim.summary(top=5)
    assert s["scenarios_with_shortfall"] == int((-(q @ pnl) > held).sum())
    assert s["max_loss"] == pytest.approx(float((-(q @ pnl)).max()))
    assert [w["loss"] for w in s["worst"]] == sorted([w["loss"] for w in s["worst"]], reverse=True)
    worst = s["worst"][0]
    assert worst["shortfall_ficc_share"] + worst["shortfall_cme_share"] == pytest.approx(worst["shortfall"])
    # the margin held covers at least 99% of the scenarios' losses (99% VaR margins)
    assert s["coverage"] >= 0.99


def test_joint_never_worse_than_separate(setup) -> None:  # type: ignore[no-untyped-def]
    """max(a + b - A - B, 0) <= max(a - A, 0) + max(b - B, 0) in every scenario; for the basis
    trade, each house alone (one unhedged leg, 20% of its stand-alone margin) falls short far
    more often."""
    path, env, book, ctx, margins = setup
    sim = simulate_default(ctx, book, "M1")
    assert np.all(sim.shortfall <= sim.separate_shortfall + 1e-6)
    assert (sim.separate_shortfall > 0).sum() > 10 * max((sim.shortfall > 0).sum(), 1)


def test_customers_when_porting_fails(setup) -> None:  # type: ignore[no-untyped-def]
    path, env, book, ctx, margins = setup
    ported = simulate_default(ctx, book, "M1")
    failed = simulate_default(ctx, book, "M1", include_customers=True)
    assert failed.customer_accounts == ("C1", "C2")
    pnl = ctx.ficc_pnl.pnl
    cust = -(book.positions[[2, 3]].toarray() @ pnl)
    np.testing.assert_allclose(failed.customer_loss, cust, rtol=1e-12)
    np.testing.assert_allclose(failed.customer_margin, margins.total_after[[2, 3]], rtol=1e-12)
    deficits = np.maximum(cust - margins.total_after[[2, 3], None], 0.0).sum(axis=0)
    excess = np.maximum(ported.margin - ported.loss, 0.0)
    np.testing.assert_allclose(failed.shortfall, ported.shortfall + np.maximum(deficits - excess, 0.0), rtol=1e-12)
    assert np.all(failed.shortfall >= ported.shortfall)


def test_other_period_and_errors(setup) -> None:  # type: ignore[no-untyped-def]
    path, env, book, ctx, margins = setup
    two = simulate_default(ctx, book, "M2", period_days=2)
    ends = two.scenarios.window_end.astype("datetime64[D]")
    starts = two.scenarios.window_start.astype("datetime64[D]")
    assert np.all(np.busday_count(starts, ends) >= 2)  # two business days (holidays may add a day)
    assert two.house_accounts == ("M2H",) and two.margin_ficc == 0.0
    with pytest.raises(InputError):
        simulate_default(ctx, book, "NOBODY")


def test_cli_default(setup) -> None:  # type: ignore[no-untyped-def]
    from xmargin.cli import validation_cmd

    path, env, book, ctx, margins = setup
    app = typer.Typer()
    validation_cmd.register(app)
    res = CliRunner().invoke(app, ["default", "M1", "--portfolio", str(path), "--as-of", "2024-06-26",
                                   "--data-dir", str(env.snapshot.data_dir), "--format", "json", "--top", "3"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["member"] == "M1" and len(payload["worst"]) == 3
    assert payload["margin_held"]["total"] == pytest.approx(margins.total_after[:2].sum(), rel=1e-9)
