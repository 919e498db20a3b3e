"""Margin of real books on 2024-06-26: each house stand-alone, combined, cross-margined.

Real CUSIPs from the securities master and live CME contracts on that day:

* ``91282CKQ3``: 4 3/8% 10-year note of 2034-05-15 (the on-the-run 10-year);
* ``91282CKP5``: 4 5/8% 5-year note of 2029-04-30;
* ``912797LB1``: Treasury bill of 2025-05-15 (bills are not cross-margin eligible);
* ``ZNU24``, ``ZFU24``: September 2024 10-year and 5-year note futures;
* ``TNH25``: March 2025 Ultra 10-year futures -- listed, but its deliverable notes (at least
  9y5m left on 2025-03-01) had not been auctioned by 2024-06-26, so it cannot be priced.

Expected values are computed in each test independently of the margin code: explicit
``sorted()`` of ``positions @ instrument P&L`` with the tail rank from exact fractions, the
SPAN arithmetic from the calibrated parameters, a repo's cash leg discounted by hand.  One
context (scenario sets, P&L matrices, SPAN calibration) serves the whole module.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmargin.margin.calculator import AccountMargins, compute_margins, margins_for_positions
from xmargin.margin.context import MarginContext, build_context
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Account, build_book
from xmargin.portfolio.io import read_portfolio
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
from xmargin.pricing.scenario_pnl import InstrumentPnL
from xmargin.reference.eligibility import load_eligibility
from xmargin.reference.lookup import parse_instrument
from xmargin.reference.repo import make_repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reports.margin import account_records

AS_OF = date(2024, 6, 26)
NOTE10, NOTE5, BILL = "91282CKQ3", "91282CKP5", "912797LB1"
REPO_FACE, REPO_CASH, REPO_RATE_PCT = 10_000_000.0, 9_900_000.0, 5.30
REPO_START, REPO_END = date(2024, 6, 25), date(2024, 7, 25)

MONEY = ("ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined", "ficc_requirement",
         "cme_requirement", "total_before", "total_after", "savings", "ficc_var", "ficc_var_eligible",
         "ficc_floor", "ficc_floor_topup", "ficc_concentration", "span_scan_risk",
         "span_intra_spread_charge", "span_inter_spread_credit", "cme_standalone_eligible")


@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> MarketSnapshot:
    return load_snapshot(AS_OF, data_dir=data_dir)


@pytest.fixture(scope="module")
def master(data_dir: Path) -> SecuritiesMaster:
    return load_master(data_dir)


@pytest.fixture(scope="module")
def repo_id(master: SecuritiesMaster) -> str:
    return _repo(master).identifier


def _repo(master: SecuritiesMaster):  # type: ignore[no-untyped-def]
    return make_repo(master.definition(NOTE10), start=REPO_START, end=REPO_END, rate_pct=REPO_RATE_PCT,
                     cash_amount=REPO_CASH, face=REPO_FACE, as_of=AS_OF)


@pytest.fixture(scope="module")
def ctx(snapshot: MarketSnapshot, master: SecuritiesMaster) -> MarginContext:
    insts = [parse_instrument(x, as_of=AS_OF, master=master) for x in (NOTE10, NOTE5, BILL, "ZNU24", "ZFU24", "TNH25")]
    return build_context(snapshot, master, InstrumentUniverse.of([*insts, _repo(master)]), eligibility=load_eligibility())


def run(ctx: MarginContext, books: list[dict[str, float]], xm: list[bool] | None = None) -> AccountMargins:
    """Margins of accounts given as ``{instrument id: quantity}`` over the context's universe."""
    q = np.zeros((len(books), len(ctx.universe)))
    for i, book in enumerate(books):
        for inst, qty in book.items():
            q[i, ctx.universe.index(inst)] = qty
    flags = np.array(xm if xm is not None else [True] * len(books))
    return margins_for_positions(ctx, sp.csr_matrix(q), flags)


def exact_rank(n: int, confidence: float) -> int:
    return max(1, math.ceil((1 - Fraction(str(confidence))) * n))


def var_by_sort(pnl: list[float], confidence: float) -> float:
    return max(0.0, -sorted(pnl)[exact_rank(len(pnl), confidence) - 1])


def ficc_var_by_sort(ctx: MarginContext, book: dict[str, float]) -> float:
    """FICC VaR of ``book``: the account's scenario P&L ``sum_i q_i * pnl[i]``, then the larger
    of the explicit-sort VaR over the look-back scenarios and over all of them (stress kept
    only when it raises the figure)."""
    pnl = sum(q * ctx.ficc_pnl.pnl[ctx.universe.index(i)] for i, q in book.items())
    stress = ctx.ficc_scenarios.is_stress
    values = np.asarray(pnl).tolist()
    base = [v for v, s in zip(values, stress, strict=True) if not s]
    return max(var_by_sort(base, 0.99), var_by_sort(values, 0.99))


@pytest.fixture(scope="module")
def basis(ctx: MarginContext, snapshot: MarketSnapshot, master: SecuritiesMaster) -> dict[str, float]:
    """Long $10m of the 10-year note, short the DV01-equivalent number of ZNU24 contracts."""
    pair = InstrumentUniverse.of([master.definition(NOTE10), parse_instrument("ZNU24", as_of=AS_OF, master=master)])
    dv01, _ = sensitivities(pair, snapshot, master)
    face = 10_000_000.0
    contracts = round(face * dv01[0] / dv01[1])
    assert abs(face * dv01[0] - contracts * dv01[1]) < dv01[1]  # neutral to within one contract
    return {NOTE10: face, "ZNU24": -float(contracts)}


# --- basis trade ------------------------------------------------------------------------------

def test_dv01_neutral_basis_trade_saves_up_to_the_cap(ctx: MarginContext, basis: dict[str, float]) -> None:
    """About 128 ZNU24 against $10m of 91282CKQ3: each house sees a combined requirement far
    below the stand-alone total, so the saving lies between 60% and the 80% cap."""
    m = run(ctx, [basis])
    assert 120 <= -basis["ZNU24"] <= 135
    assert m.ficc_standalone[0] > 0 and m.cme_standalone[0] > 0
    r = m.applied_reduction_factor[0]
    assert 0.60 <= r <= 0.80
    assert m.savings_pct[0] == pytest.approx(100 * r)
    assert m.fallback[0] == False and m.computable[0] == True  # noqa: E712 - numpy bools


def test_capped_book_lands_at_exactly_20pct(ctx: MarginContext, basis: dict[str, float]) -> None:
    """When both houses' factors exceed the cap (as in the CFTC sample, $343.24m -> $68.65m),
    the applied factor is the cap and, with no floor top-up or concentration add-on (the
    book's VaR is above its floor and its DV01 far below the threshold), the requirements are
    exactly 20% of stand-alone: FICC 0.2 x F_sa, CME 0.2 x C_sa."""
    m = run(ctx, [basis])
    assert m.ficc_reduction_factor[0] > 0.8 and m.cme_reduction_factor[0] > 0.8
    assert m.applied_reduction_factor[0] == 0.8
    assert m.ficc_floor_topup[0] == 0.0 and m.ficc_concentration[0] == 0.0
    assert m.ficc_requirement[0] == pytest.approx(0.2 * m.ficc_standalone[0], rel=1e-12)
    assert m.cme_requirement[0] == pytest.approx(0.2 * m.cme_standalone[0], rel=1e-12)
    assert m.total_after[0] == pytest.approx(0.2 * m.total_before[0], rel=1e-12)


def test_reduction_factors_follow_the_formula(ctx: MarginContext, basis: dict[str, float]) -> None:
    """r_F = 1 - F_comb / (F_sa + C_sa), r_C likewise, with F_sa the FICC VaR of the cash leg
    alone (explicit sort here) and F_comb the FICC VaR of cash plus futures together."""
    m = run(ctx, [basis])
    f_sa = ficc_var_by_sort(ctx, {NOTE10: basis[NOTE10]})
    f_comb = ficc_var_by_sort(ctx, basis)
    assert m.ficc_var_eligible[0] == pytest.approx(f_sa, rel=1e-12)
    assert m.ficc_combined[0] == pytest.approx(f_comb, rel=1e-12)
    total = f_sa + m.cme_standalone[0]
    assert m.ficc_reduction_factor[0] == pytest.approx(1 - f_comb / total, rel=1e-12)
    assert m.cme_reduction_factor[0] == pytest.approx(1 - m.cme_combined[0] / total, rel=1e-12)


def test_non_cross_margin_account_saves_nothing(ctx: MarginContext, basis: dict[str, float]) -> None:
    """The same basis trade in an account that has not elected cross-margining: the same
    stand-alone figures, no reduction, requirement = stand-alone."""
    m = run(ctx, [basis, basis], xm=[True, False])
    assert m.total_before[1] == pytest.approx(m.total_before[0], rel=1e-12)
    assert m.applied_reduction_factor[1] == 0.0
    assert m.savings[1] == 0.0
    assert m.total_after[1] == m.total_before[1]


# --- curve trade ------------------------------------------------------------------------------

def test_zf_zn_curve_trade_gets_an_inter_commodity_credit(ctx: MarginContext) -> None:
    """Long 30 ZFU24 against short 19 ZNU24 (DV01 about +1,200 and -1,175 $/bp).  SPAN by hand
    from the calibrated parameters: scan risk ``30 x range_ZF + 19 x range_ZN``; one spread
    pair ZF/ZN at its calibrated rate over ``s = min(|delta_ZF|, |delta_ZN|)`` DV01 units:
    credit ``rate x s x (scan_ZF / |delta_ZF| + scan_ZN / |delta_ZN|)``; no intra charge (one
    month per root)."""
    book = {"ZFU24": 30.0, "ZNU24": -19.0}
    m = run(ctx, [book])
    span = ctx.span
    zf, zn = span.index("ZF"), span.index("ZN")
    rate = next(r for p, q, r in span.inter_pairs if {p, q} == {zf, zn})
    dv01 = ctx.attributes.dv01
    d_zf = 30.0 * dv01[ctx.universe.index("ZFU24")]
    d_zn = -19.0 * dv01[ctx.universe.index("ZNU24")]
    assert d_zf > 0 > d_zn
    scan_zf, scan_zn = 30.0 * span.scan_range[zf], 19.0 * span.scan_range[zn]
    s = min(abs(d_zf), abs(d_zn))
    credit = rate * s * (scan_zf / abs(d_zf) + scan_zn / abs(d_zn))
    assert credit > 0
    assert m.span_scan_risk[0] == pytest.approx(scan_zf + scan_zn, rel=1e-12)
    assert m.span_intra_spread_charge[0] == 0.0
    assert m.span_inter_spread_credit[0] == pytest.approx(credit, rel=1e-12)
    assert m.cme_standalone[0] == pytest.approx(scan_zf + scan_zn - credit, rel=1e-12)
    assert m.applied_reduction_factor[0] == 0.0  # futures only: nothing to cross-margin


# --- one-sided accounts -----------------------------------------------------------------------

def test_futures_only_and_cash_only_accounts_save_nothing(ctx: MarginContext) -> None:
    books = [{"ZNU24": -50.0}, {NOTE10: 5_000_000.0, NOTE5: -3_000_000.0}]
    m = run(ctx, books)
    assert m.total_before.min() > 0
    assert m.applied_reduction_factor.tolist() == [0.0, 0.0]
    assert m.savings.tolist() == [0.0, 0.0]
    assert m.total_after.tolist() == m.total_before.tolist()
    book = build_book([Account("F", "M"), Account("C", "M")],
                      [(i, inst, q) for i, b in enumerate(books) for inst, q in _insts(ctx, b)],
                      universe=ctx.universe)
    records = account_records(ctx, book, compute_margins(ctx, book))
    assert all("nothing to offset" in r["reason"] for r in records)


def _insts(ctx: MarginContext, book: dict[str, float]) -> list:  # type: ignore[type-arg]
    return [(ctx.universe.instruments[ctx.universe.index(k)], q) for k, q in book.items()]


# --- scaling ----------------------------------------------------------------------------------

def test_doubling_every_position_doubles_every_requirement(
    ctx: MarginContext, basis: dict[str, float], repo_id: str
) -> None:
    """Every margin figure is positively homogeneous in the positions -- VaR is an order
    statistic of a P&L vector that doubles, the floor is linear in |quantity|, SPAN is linear
    in whole contracts and spreads -- except the concentration add-on, which charges only
    DV01 beyond $500,000/bp per bucket.  These books carry at most about $10,000/bp in any
    bucket, so even doubled they stay far below the threshold (add-on 0 in both runs) and every
    dollar figure must double while the factors stay put."""
    books = [basis, {"ZFU24": 30.0, "ZNU24": -19.0}, {NOTE10: 4_000_000.0, BILL: 20_000_000.0},
             {repo_id: REPO_FACE, "ZNU24": -60.0}, {NOTE5: -7_000_000.0, "ZFU24": 70.0, "ZNU24": 5.0}]
    accounts = [Account(f"A{i}", "M", cross_margin=i != 2) for i in range(len(books))]
    book = build_book(accounts, [(i, inst, q) for i, b in enumerate(books) for inst, q in _insts(ctx, b)],
                      universe=ctx.universe)
    one, two = compute_margins(ctx, book), compute_margins(ctx, book.scaled(2.0))
    doubled_bucket_dv01 = np.asarray(book.scaled(2.0).positions @ ctx.attributes.bucket_dv01)
    assert np.abs(doubled_bucket_dv01).max() < 20_000  # $/bp, against a $500,000 threshold
    assert (one.ficc_concentration == 0).all() and (two.ficc_concentration == 0).all()
    for name in MONEY:
        assert getattr(two, name) == pytest.approx(2 * getattr(one, name), rel=1e-9), name
    for name in ("ficc_reduction_factor", "cme_reduction_factor", "applied_reduction_factor", "savings_pct"):
        assert getattr(two, name) == pytest.approx(getattr(one, name), rel=1e-9, abs=1e-12), name
    assert one.total_before.min() > 0


# --- eligibility ------------------------------------------------------------------------------

def test_ineligible_bill_in_a_cross_margin_account(
    ctx: MarginContext, basis: dict[str, float], master: SecuritiesMaster, tmp_path: Path
) -> None:
    """A bill in a cross-margining account: a warning naming file, row, instrument and account
    when the portfolio is read, and the bill margined stand-alone: the account's requirement
    is the basis trade's cross-margined requirement plus the bill's own stand-alone one, and
    the bill never enters F_sa (``ficc_var_eligible``)."""
    path = tmp_path / "book.csv"
    path.write_text(
        "account,member,account_type,instrument,quantity,cross_margin\n"
        f"X1,M1,house,{NOTE10},{basis[NOTE10]:.0f},true\n"
        f"X1,M1,house,ZNU24,{basis['ZNU24']:.0f},true\n"
        f"X1,M1,house,{BILL},20000000,true\n"
    )
    book = read_portfolio(path, as_of=AS_OF, master=master, eligibility=load_eligibility())
    assert len(book.warnings) == 1
    warning = book.warnings[0]
    for part in (str(path), "row 4", BILL, "not cross-margin eligible", "X1"):
        assert part in warning
    m = run(ctx, [basis, {BILL: 20_000_000.0}, {**basis, BILL: 20_000_000.0}])
    bill_alone = m.total_before[1]
    assert bill_alone > 0 and m.applied_reduction_factor[1] == 0.0
    assert m.ficc_var_eligible[2] == pytest.approx(m.ficc_var_eligible[0], rel=1e-12)
    assert m.applied_reduction_factor[2] == pytest.approx(m.applied_reduction_factor[0])
    assert m.total_after[2] == pytest.approx(m.total_after[0] + bill_alone, rel=1e-12)
    assert m.ficc_var[2] == pytest.approx(m.ficc_var_eligible[0] + ficc_var_by_sort(ctx, {BILL: 20e6}), rel=1e-12)


# --- repo -------------------------------------------------------------------------------------

def test_repo_pnl_is_collateral_minus_cash_leg(ctx: MarginContext, snapshot: MarketSnapshot, repo_id: str) -> None:
    """Repo of $10m face of 91282CKQ3 for $9.9m at 5.30% from 2024-06-25 to 2024-07-25 (30
    days).  Cash per 100 face 99.00; repurchase 99.00 x (1 + 0.053 x 30/360) = 99.43725.

    Per $1 of face, under each scenario curve ``s``: P&L = collateral P&L (the note's own row)
    minus the change in the present value at settlement (2024-06-27) of the repurchase price
    paid on 2024-07-25: ``99.43725 / 100 x (DF_s(end) / DF_s(settle) - DF_0(end) / DF_0(settle))``.
    """
    repurchase = 99.0 * (1 + 0.053 * 30 / 360)
    assert repurchase == pytest.approx(99.43725, abs=1e-12)
    assert snapshot.settle == date(2024, 6, 27)
    days = np.array([snapshot.settle, REPO_END], dtype="datetime64[D]")
    df_s = ctx.ficc_scenarios.curves.discount_dates(days)
    df_0 = snapshot.curve.discount_dates(days)
    cash_leg = repurchase / 100 * (df_s[:, 1] / df_s[:, 0] - df_0[0, 1] / df_0[0, 0])
    collateral = ctx.ficc_pnl.pnl[ctx.universe.index(NOTE10)]
    repo_row = ctx.ficc_pnl.pnl[ctx.universe.index(repo_id)]
    assert repo_row == pytest.approx(collateral - cash_leg, abs=1e-12)
    assert np.abs(cash_leg).max() > 1e-6  # the cash leg really moves (30 days of rate risk)


def test_repo_and_reverse_repo_var(ctx: MarginContext, repo_id: str) -> None:
    """A repo (+face) carries the collateral's price risk: its FICC VaR is the explicit-sort
    VaR of ``face x repo row``; a reverse repo (-face) is the mirror image."""
    m = run(ctx, [{repo_id: REPO_FACE}, {repo_id: -REPO_FACE}], xm=[False, False])
    assert m.ficc_var[0] == pytest.approx(ficc_var_by_sort(ctx, {repo_id: REPO_FACE}), rel=1e-12)
    assert m.ficc_var[1] == pytest.approx(ficc_var_by_sort(ctx, {repo_id: -REPO_FACE}), rel=1e-12)
    assert m.ficc_var[0] > 0 and m.ficc_var[1] > 0


def test_ficc_var_of_a_small_book_is_an_explicit_sort(ctx: MarginContext) -> None:
    """Long $10m 10-year, short $5m 5-year, long $20m bill, not cross-margined: the FICC VaR
    is the 28th-worst of the 2,748 scenario P&Ls (or the 25th of the 2,498 look-back ones,
    whichever is larger), by explicit sort of ``positions @ ficc_pnl``."""
    book = {NOTE10: 10e6, NOTE5: -5e6, BILL: 20e6}
    m = run(ctx, [book], xm=[False])
    assert ctx.ficc_scenarios.size == 2748 and int((~ctx.ficc_scenarios.is_stress).sum()) == 2498
    assert exact_rank(2748, 0.99) == 28 and exact_rank(2498, 0.99) == 25
    assert m.ficc_var[0] == pytest.approx(ficc_var_by_sort(ctx, book), rel=1e-12)
    assert m.ficc_standalone[0] == pytest.approx(max(m.ficc_var[0], m.ficc_floor[0]), rel=1e-12)


# --- fallback ---------------------------------------------------------------------------------

def test_unpriceable_futures_contract_falls_back_with_a_reason(ctx: MarginContext, basis: dict[str, float]) -> None:
    """The basis trade plus one TNH25, which cannot be priced (no deliverable notes yet): the
    combined calculation cannot run, so no reduction applies and the record says why; the
    stand-alone figures are still given (SPAN needs only the contract count)."""
    assert "TNH25" in ctx.failures
    book_positions = {**basis, "TNH25": 1.0}
    book = build_book([Account("FB", "M")], [(0, inst, q) for inst, q in _insts(ctx, book_positions)],
                      universe=ctx.universe)
    m = compute_margins(ctx, book)
    assert m.fallback[0] == True  # noqa: E712
    assert m.applied_reduction_factor[0] == 0.0
    assert np.isnan(m.ficc_combined[0]) and np.isnan(m.cme_combined[0])
    assert np.isfinite(m.total_before[0]) and m.total_after[0] == m.total_before[0]
    rec = account_records(ctx, book, m)[0]
    assert rec["status"] == "fallback"
    assert "TNH25" in rec["reason"] and "no reduction" in rec["reason"]
    assert rec["ficc_combined"] is None


def test_forced_nan_row_gives_no_number_rather_than_a_wrong_one(ctx: MarginContext, basis: dict[str, float]) -> None:
    """Force the 5-year note's P&L row to NaN (as if its pricing had failed): an account holding
    it gets no requirement at all (NaN, ``null`` in JSON, status 'error' naming the note) and
    no reduction; an account not holding it is unaffected."""
    row = ctx.universe.index(NOTE5)
    pnl = ctx.ficc_pnl.pnl.copy()
    pnl[row] = np.nan
    base = ctx.ficc_pnl.base_values.copy()
    base[row] = np.nan
    broken = dataclasses.replace(
        ctx, ficc_pnl=InstrumentPnL(ctx.universe, base, pnl, {NOTE5: "forced failure for the test"})
    )
    books = [{**basis, NOTE5: 1e6}, basis]
    book = build_book([Account("BAD", "M"), Account("OK", "M")],
                      [(i, inst, q) for i, b in enumerate(books) for inst, q in _insts(ctx, b)],
                      universe=ctx.universe)
    m = compute_margins(broken, book)
    good = run(ctx, [basis])
    assert m.applied_reduction_factor[0] == 0.0
    for name in ("ficc_standalone", "ficc_requirement", "total_before", "total_after", "savings"):
        assert np.isnan(getattr(m, name)[0]), name
    assert m.total_after[1] == pytest.approx(good.total_after[0], rel=1e-12)
    rec = account_records(broken, book, m)
    assert rec[0]["status"] == "error"
    assert NOTE5 in rec[0]["reason"] and "forced failure" in rec[0]["reason"]
    assert rec[0]["total_after"] is None
    assert rec[1]["status"] == "ok"
