"""Margin attribution: Euler contributions (hand example, brute-force derivative, exact sum) and
incremental margins (against separate margin runs without each position), on real data."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmargin.margin.attribution import attribute_account, attribution_payload, euler_contributions
from xmargin.margin.calculator import compute_margins, margins_for_positions
from xmargin.margin.var import var_with_stress
from xmargin.reports.margin import explain_account
from xmargin.workflow import Environment

BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS,M1,house,91282CKQ3,100000000,true
BASIS,M1,house,ZNU24,-1200,true
BASIS,M1,house,912810UA4,10000000,true
BASIS,M1,house,ZBU24,-40,true
OUTRIGHT,M1,house,91282CKQ3,50000000,false
OUTRIGHT,M1,house,912810UA4,-20000000,false
"""


def test_hand_example() -> None:
    """20 scenarios, 95%: k = ceil(0.05 x 20) = 1, the worst scenario.  Two positions:
    a = (-5, 1, 0, ...), b = (-1, -4, 0, ...): account P&L (-6, -3, 0, ...); worst is scenario 0,
    VaR 6, contributions 5 and 1.  At 90% (k = 2) the VaR scenario is scenario 1: VaR 3,
    contributions -1 and 4 (a position can contribute negatively: it hedges)."""
    a = np.zeros(20)
    b = np.zeros(20)
    a[:2] = [-5.0, 1.0]
    b[:2] = [-1.0, -4.0]
    stress = np.zeros(20, bool)
    var, c = euler_contributions(np.vstack([a, b]), stress, 0.95)
    assert var == 6.0 and list(c) == [5.0, 1.0]
    var, c = euler_contributions(np.vstack([a, b]), stress, 0.90)
    assert var == 3.0 and list(c) == [-1.0, 4.0]
    # gains in the tail: VaR floored at 0, nothing to attribute
    var, c = euler_contributions(np.abs(np.vstack([a, b])), stress, 0.95)
    assert var == 0.0 and not c.any()


def test_kernel_sums_and_reduces_to_scenario() -> None:
    rng = np.random.default_rng(7)
    pnl = rng.normal(size=(4, 500)) * np.array([[1.0], [2.0], [0.5], [3.0]])
    stress = np.zeros(500, bool)
    stress[-50:] = True
    var, plain = euler_contributions(pnl, stress, 0.99)
    var_k, kern = euler_contributions(pnl, stress, 0.99, method="kernel", neighbours=3)
    assert var_k == var and kern.sum() == pytest.approx(var, rel=1e-12)
    assert not np.allclose(kern, plain)
    assert np.allclose(euler_contributions(pnl, stress, 0.99, method="kernel", neighbours=0)[1], plain)
    assert var == pytest.approx(var_with_stress(pnl.sum(axis=0)[None], stress, 0.99)[0][0])


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("attr") / "book.csv"
    path.write_text(BOOK)
    env = Environment.load(date(2024, 6, 26), data_dir=data_dir)
    book = env.read_book(path)
    ctx = env.context(book)
    return ctx, book, compute_margins(ctx, book)


def test_contributions_sum_to_the_margin_figures(setup) -> None:  # type: ignore[no-untyped-def]
    ctx, book, margins = setup
    basis = attribute_account(ctx, book, 0)
    assert set(basis.figures) == {"ficc_var", "ficc_combined", "cme_combined"}
    assert basis.figures["ficc_var"][0] == pytest.approx(margins.ficc_var[0], rel=1e-12)
    assert basis.figures["ficc_combined"][0] == pytest.approx(margins.ficc_combined[0], rel=1e-12)
    assert basis.figures["cme_combined"][0] == pytest.approx(margins.cme_combined[0], rel=1e-12)
    for var, contrib in basis.figures.values():
        assert contrib.sum() == pytest.approx(var, rel=1e-10)
    futures = [j for j, ins in enumerate(basis.instruments) if ins.startswith("Z")]
    assert np.all(basis.figures["ficc_var"][1][futures] == 0)  # FICC stand-alone VaR: cash only
    outright = attribute_account(ctx, book, 1)  # not cross-margined: FICC VaR only
    assert set(outright.figures) == {"ficc_var"}
    assert outright.figures["ficc_var"][0] == pytest.approx(margins.ficc_var[1], rel=1e-12)


def test_euler_equals_brute_force_derivative(setup) -> None:  # type: ignore[no-untyped-def]
    """q_i dVaR/dq_i by central differences of the combined VaR (bump 1e-6 of each position,
    small enough to keep the VaR scenario) equals the scenario contribution."""
    ctx, book, _ = setup
    att = attribute_account(ctx, book, 0)
    cols = [ctx.universe.index(i) for i in att.instruments]
    q = np.zeros(len(ctx.universe))
    q[cols] = att.quantities
    pnl = np.nan_to_num(ctx.ficc_pnl.pnl)
    stress = ctx.ficc_scenarios.is_stress

    def var(x: np.ndarray) -> float:
        return float(var_with_stress((x @ pnl)[None], stress, ctx.params.ficc.confidence)[0][0])

    eps = 1e-6
    for j, c in enumerate(cols):
        up, dn = q.copy(), q.copy()
        up[c] *= 1 + eps
        dn[c] *= 1 - eps
        assert (var(up) - var(dn)) / (2 * eps) == pytest.approx(att.figures["ficc_combined"][1][j], rel=1e-5, abs=1e-3)


def test_homogeneity(setup) -> None:  # type: ignore[no-untyped-def]
    ctx, book, _ = setup
    doubled = type(book)(book.accounts, book.universe, (book.positions * 2).tocsr())
    a, b = attribute_account(ctx, book, 0), attribute_account(ctx, doubled, 0)
    for name in a.figures:
        np.testing.assert_allclose(b.figures[name][1], 2 * a.figures[name][1], rtol=1e-12)


def test_incremental_margin_against_separate_runs(setup) -> None:  # type: ignore[no-untyped-def]
    """Margin of the account minus the margin of the account without each position, each
    'without' book margined on its own."""
    ctx, book, margins = setup
    for i in range(book.size):
        att = attribute_account(ctx, book, i)
        assert att.total_after == pytest.approx(margins.total_after[i], rel=1e-12)
        xm = np.array([book.accounts[i].cross_margin])
        for j, ins in enumerate(att.instruments):
            row = book.positions[i].tolil()
            row[0, ctx.universe.index(ins)] = 0.0
            without = margins_for_positions(ctx, sp.csr_matrix(row), xm).total_after[0]
            assert att.incremental[j] == pytest.approx(margins.total_after[i] - without, rel=1e-9, abs=1e-6)
    basis = attribute_account(ctx, book, 0)
    note = basis.instruments.index("91282CKQ3")
    assert basis.incremental[note] < 0  # removing the cash leg leaves the futures unhedged


def test_explain_account_carries_attribution(setup) -> None:  # type: ignore[no-untyped-def]
    ctx, book, margins = setup
    ex = explain_account(ctx, book, 0)
    att = attribute_account(ctx, book, 0)
    assert ex["ficc_combined"]["var"] == pytest.approx(margins.ficc_combined[0], rel=1e-12)
    for entry in ex.values():
        assert sum(c["contribution"] for c in entry["euler_contributions"]) == pytest.approx(entry["var"], rel=1e-10)
        for c in entry["largest_contributors"]:
            j = att.instruments.index(c["instrument"])
            assert c["incremental_margin"] == pytest.approx(att.incremental[j], rel=1e-12)
            assert c["euler_contribution"] == pytest.approx(-c["pnl_in_var_scenario"])
    payload = attribution_payload(ctx, book, method="kernel")
    assert [p["account"] for p in payload] == ["BASIS", "OUTRIGHT"]
    f = payload[0]["figures"]["ficc_combined"]
    assert f["sum_of_contributions"] == pytest.approx(f["var"], rel=1e-10)
