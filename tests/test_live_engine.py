"""The live engine against the batch calculator and against figures computed here by hand.

Real data: the 2025-10-31 market (2,747 FICC and 2,748 CME scenarios), real CUSIPs and listed
futures.  ``compute_margins`` (sparse matrix products over whole books) is the reference for
the engine's incremental state; the single-position and basis-trade checks recompute the
models' definitions (empirical quantile by full sort, floor table, reduction formula)
directly from the instrument P&L rows.
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import date

import numpy as np
import pytest

from xmargin.clearing.replay import load_market
from xmargin.engine import LiveEngine, extend_context, intraday_snapshot
from xmargin.engine.live import HEADLINE
from xmargin.errors import InputError
from xmargin.margin.calculator import AccountMargins, compute_margins
from xmargin.margin.calibration import listed_contracts
from xmargin.margin.context import build_context
from xmargin.portfolio.book import Account
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
from xmargin.reference.futures import TreasuryFuture, parse_future_symbol
from xmargin.reference.lookup import parse_instrument
from xmargin.reference.repo import make_repo
from xmargin.reference.stir import RateFuture

AS_OF = date(2025, 10, 31)
FIELDS = [f.name for f in fields(AccountMargins)]


@pytest.fixture(scope="module")
def market(data_dir):
    return load_market(AS_OF, data_dir=data_dir)


@pytest.fixture(scope="module")
def instruments(market):
    m = market.master
    notes = [r.definition for r in m.notes_and_bonds(outstanding_on=AS_OF)]
    cash = notes[5::9][:20]
    bill = parse_instrument("UST:0:2026-03-19", as_of=AS_OF, master=m)
    repo = make_repo(parse_instrument("91282CJN2", as_of=AS_OF, master=m), start=date(2025, 10, 30),
                     end=date(2025, 11, 6), rate_pct=4.2, cash_amount=20_100_000, face=20_000_000, as_of=AS_OF)
    futures = [c for root in ("ZT", "ZN", "ZB", "UB", "SR3", "ZQ") for c in listed_contracts(root, AS_OF)]
    return {"cash": cash, "bill": bill, "repo": repo, "futures": futures}


def _empty_engine(market) -> LiveEngine:
    return LiveEngine(build_context(market.snapshot, market.master, InstrumentUniverse.of([]), market.params,
                                    market.eligibility))


def _is_future(inst) -> bool:
    return isinstance(inst, TreasuryFuture | RateFuture)


def _assert_matches_batch(engine: LiveEngine, rtol: float = 1e-6) -> None:
    names, live = engine.margins()
    ref = compute_margins(engine.context, engine.book())
    assert [a.account for a in engine.book().accounts] == names
    for f in FIELDS:
        a, b = getattr(live, f), getattr(ref, f)
        if a.dtype == bool:
            assert np.array_equal(a, b), f
        else:
            scale = np.nanmax(np.abs(b)) if np.any(np.isfinite(b)) else 1.0
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-9 * max(scale, 1.0), equal_nan=True, err_msg=f)


def test_random_trades_match_compute_margins(market, instruments):
    engine = _empty_engine(market)
    rng = np.random.default_rng(20251031)
    accounts = [Account("H1", "M1", "house", True), Account("H2", "M1", "house", False),
                Account("C1", "M2", "customer", True), Account("C2", "M2", "customer", True),
                Account("H3", "M3", "house", True)]
    pool = [*instruments["cash"], instruments["bill"], instruments["repo"], *instruments["futures"]]
    for step in range(400):
        acc = accounts[rng.integers(len(accounts))]
        inst = pool[rng.integers(len(pool))]
        if _is_future(inst):
            qty = float(rng.integers(-40, 41)) or 1.0
        elif inst is instruments["repo"]:
            qty = 20_000_000.0 * float(rng.choice([-1, 1]))
        else:
            qty = float(rng.integers(-30, 31) or 1) * 1_000_000.0
        engine.apply(acc, inst, qty)
        if step in (40, 399):
            _assert_matches_batch(engine)
    names, live = engine.margins()
    # the mix exercised what it should: some cross-margin reductions, stressed VaRs, customer accounts
    assert np.any(live.applied_reduction_factor > 0)
    assert np.all(live.computable)
    assert len(engine.context.universe) > 20


def test_engine_from_a_book_matches_compute_margins(market, instruments):
    from xmargin.portfolio.book import build_book

    accounts = [Account("B1", "M", "house", True), Account("B2", "M", "customer", False)]
    holdings = [(0, instruments["cash"][0], 4e6), (0, instruments["futures"][2], -30.0), (0, instruments["repo"], 2e7),
                (1, instruments["cash"][6], -2e6), (1, instruments["bill"], 1e6), (1, instruments["futures"][8], 12.0)]
    book = build_book(accounts, holdings)
    ctx = build_context(market.snapshot, market.master, book.universe, market.params, market.eligibility)
    engine = LiveEngine.from_book(ctx, book)
    _, live = engine.margins()
    ref = compute_margins(ctx, book)
    for f in FIELDS:
        np.testing.assert_allclose(getattr(live, f), getattr(ref, f), rtol=1e-9, equal_nan=True, err_msg=f)
    assert engine.positions("B1") == dict(book.positions_of(0))


@pytest.mark.parametrize("model", ["span", "var"])
def test_unpriceable_future_fallback_and_no_number(market, instruments, model):
    """No 2-year note deliverable into ZTZ30 can have been issued by 2025-10-31, so it has no
    price.  Under SPAN it still has a stand-alone margin (its root is calibrated) but the
    combined run cannot include it: the fallback, no reduction.  Under the CME VaR model it
    has no stand-alone margin either: no number at all."""
    from dataclasses import replace as dc_replace

    params = dc_replace(market.params, cme=dc_replace(market.params.cme, standalone_model=model))
    engine = LiveEngine(build_context(market.snapshot, market.master, InstrumentUniverse.of([]), params,
                                      market.eligibility))
    zt30 = parse_future_symbol("ZTZ30", AS_OF, source="test")
    acc = Account("X", "M", "house", True)
    engine.apply(acc, parse_instrument("91282CKN0", as_of=AS_OF, master=market.master), 10_000_000.0)
    engine.apply(acc, parse_future_symbol("ZNZ25", AS_OF, source="test"), -84.0)  # about DV01-neutral
    assert engine.margin("X")["applied_reduction_factor"] > 0
    engine.apply(acc, zt30, -10.0)
    row = engine.margin("X")
    if model == "span":
        assert row["computable"] and row["fallback"] and row["applied_reduction_factor"] == 0.0
        assert math.isnan(row["ficc_combined"]) and row["total_after"] == row["total_before"] > 0
    else:
        assert not row["computable"] and math.isnan(row["total_after"])
    _assert_matches_batch(engine)
    engine.apply(acc, zt30, 10.0)  # closing it restores the reduction
    row = engine.margin("X")
    assert row["computable"] and not row["fallback"] and row["applied_reduction_factor"] > 0
    if model == "var":
        assert row["cme_var"] > 0 and row["cme_standalone_eligible"] == row["cme_var"]
    _assert_matches_batch(engine)


def test_single_cash_position_by_hand(market, instruments):
    engine = _empty_engine(market)
    bond = instruments["cash"][10]
    qty = 7_000_000.0
    row = engine.apply(Account("A", "M", "house", False), bond, qty)
    ctx = engine.context
    j = ctx.universe.index(bond)
    pnl = qty * ctx.ficc_pnl.pnl[j]
    stress = ctx.ficc_scenarios.is_stress
    p = ctx.params.ficc

    def var(x):  # k-th largest loss, k = ceil(1% of S), floored at 0
        k = math.ceil(round((1 - p.confidence) * len(x), 9))
        return max(-np.sort(x)[k - 1], 0.0)

    expected_var = max(var(pnl[~stress]), var(pnl))
    years = (bond.maturity - AS_OF).days / 365.25
    rate = next(r for bound, r in p.floor_table if years <= bound)
    expected_floor = qty * ctx.attributes.market_value[j] * rate
    dv01 = abs(qty * ctx.attributes.dv01[j])
    expected_conc = max(dv01 - p.concentration_dv01_threshold, 0.0) * p.concentration_cost_bp
    assert row["ficc_var"] == pytest.approx(expected_var, rel=1e-12)
    assert row["ficc_floor"] == pytest.approx(expected_floor, rel=1e-12)
    assert row["ficc_requirement"] == pytest.approx(max(expected_var, expected_floor) + expected_conc, rel=1e-12)
    assert row["cme_requirement"] == 0.0 and row["applied_reduction_factor"] == 0.0
    assert row["stressed_loss_ficc"] == pytest.approx(max(-pnl.min(), 0.0), rel=1e-12)


def test_basis_trade_reduction_by_hand(market, instruments):
    """DV01-neutral long cash / short ZN in a cross-margining account: the reduction formula."""
    m = market.master
    note = parse_instrument("91282CKN0", as_of=AS_OF, master=m)  # 4.625% 2031-04-30
    zn = parse_future_symbol("ZNZ25", AS_OF, source="test")
    engine = _empty_engine(market)
    xm, plain = Account("XM", "M", "house", True), Account("NO", "M", "house", False)
    for acc in (xm, plain):
        engine.apply(acc, note, 50_000_000.0)
    dv01, _ = sensitivities(InstrumentUniverse.of([note, zn]), market.snapshot, market.master)
    contracts = -round(50_000_000.0 * dv01[0] / dv01[1])
    assert contracts < -100
    for acc in (xm, plain):
        engine.apply(acc, zn, float(contracts))
    ctx = engine.context
    row = engine.margin("XM")
    stress_f, stress_c = ctx.ficc_scenarios.is_stress, ctx.cme_scenarios.is_stress
    jn, jz = ctx.universe.index(note), ctx.universe.index(zn)

    def var(x, stress, conf):
        def one(y):
            k = math.ceil(round((1 - conf) * len(y), 9))
            return max(-np.sort(y)[k - 1], 0.0)
        return max(one(x[~stress]), one(x))

    f_sa = var(50_000_000.0 * ctx.ficc_pnl.pnl[jn], stress_f, 0.99)
    c_sa = row["cme_standalone_eligible"]  # SPAN of the futures leg (checked against compute_margins elsewhere)
    f_comb = var(50_000_000.0 * ctx.ficc_pnl.pnl[jn] + contracts * ctx.ficc_pnl.pnl[jz], stress_f, 0.99)
    c_comb = var(50_000_000.0 * ctx.cme_pnl.pnl[jn] + contracts * ctx.cme_pnl.pnl[jz], stress_c, 0.99)
    r = min(max(0.0, 1 - f_comb / (f_sa + c_sa)), max(0.0, 1 - c_comb / (f_sa + c_sa)), 0.80)
    assert row["ficc_var_eligible"] == pytest.approx(f_sa, rel=1e-9)
    assert row["ficc_combined"] == pytest.approx(f_comb, rel=1e-9)
    assert row["cme_combined"] == pytest.approx(c_comb, rel=1e-9)
    assert row["applied_reduction_factor"] == pytest.approx(r, rel=1e-9)
    assert r > 0.3  # a hedged book saves a lot
    assert row["savings"] == pytest.approx(r * (f_sa + c_sa), rel=1e-9)
    assert engine.margin("NO")["applied_reduction_factor"] == 0.0
    assert engine.margin("NO")["total_after"] == pytest.approx(row["total_before"], rel=1e-9)
    _assert_matches_batch(engine)


def test_closing_everything_gives_exact_zeros(market, instruments):
    engine = _empty_engine(market)
    acc = Account("Z", "M", "house", True)
    trades = [(instruments["cash"][1], 3_300_000.0), (instruments["futures"][2], -7.0),
              (instruments["cash"][7], -1_100_000.0), (instruments["futures"][5], 3.0), (instruments["repo"], 20e6)]
    for inst, q in trades:
        engine.apply(acc, inst, q)
    assert engine.margin("Z")["total_before"] > 0
    for inst, q in reversed(trades):
        engine.apply(acc, inst, -q)
    row = engine.margin("Z")
    assert engine.positions("Z") == {}
    for k, v in row.items():
        if k in ("computable",):
            assert v is True
        else:
            assert v == 0 or v is False, k
    for vec in engine.side_pnl("Z").values():
        assert not vec.any()


def test_what_if_does_not_apply_and_predicts_apply(market, instruments):
    engine = _empty_engine(market)
    acc = Account("W", "M", "house", True)
    engine.apply(acc, instruments["cash"][4], 10_000_000.0)
    before = engine.margin("W")
    zn = instruments["futures"][2]
    impact = engine.what_if("W", zn, -60.0)
    assert engine.margin("W") == before
    assert engine.positions("W") == {instruments["cash"][4].identifier: 10_000_000.0}
    assert impact["before"]["total_after"] == before["total_after"]
    after = engine.apply("W", zn, -60.0)
    for k, v in impact["after"].items():
        assert after[k] == v or (math.isnan(after[k]) and math.isnan(v))
        assert impact["change"][k] == pytest.approx(v - impact["before"][k])
    # a stale prepared trade cannot be committed over a newer state
    stale = engine.prepare("W", zn, 1.0)
    engine.apply("W", zn, 1.0)
    with pytest.raises(RuntimeError, match="changed"):
        engine.commit(stale)


def _steps_on_every_side(instruments):
    """Trades touching every side: a cross-margining house account's cash and futures (eligible
    FICC and CME), an account that does not cross-margin, and two positions closed to zero."""
    xm, plain = Account("W", "M", "house", True), Account("P", "M", "customer", False)
    cash, zn, sr3 = instruments["cash"][4], instruments["futures"][2], instruments["futures"][7]
    return [(xm, cash, 10_000_000.0), (xm, zn, -60.0), (plain, zn, 25.0), (xm, sr3, 40.0),
            (plain, instruments["cash"][1], -5_000_000.0), (xm, zn, 60.0), (xm, cash, -10_000_000.0)]


def test_what_if_headline_is_apply_headline_and_applies_nothing(market, instruments):
    """The service's what-if (``what_if_headline``: the headline figures only) gives exactly the
    figures ``apply`` then records, on every side (E/R, FICC/CME, an account that does not
    cross-margin, a position closed to zero), and changes nothing."""
    engine = _empty_engine(market)
    steps = _steps_on_every_side(instruments)
    for acc, inst, qty in steps:
        if acc.account in engine.accounts:
            before_all = engine.margin(acc.account)
            positions = engine.positions(acc.account)
        else:
            before_all, positions = None, {}
        before, after = engine.what_if_headline(acc, inst, qty)
        assert set(after) == set(HEADLINE)
        if before_all is not None:
            assert before == before_all and engine.positions(acc.account) == positions  # nothing applied
        recorded = engine.apply(acc, inst, qty)
        for k in HEADLINE:
            assert after[k] == recorded[k] or (math.isnan(after[k]) and math.isnan(recorded[k])), k


def test_what_if_is_prepare_impact_on_every_side(market, instruments):
    """``what_if`` (computed on the headline path) is exactly ``prepare(...).impact()``: the same
    keys, names and figures, for a new account, both sides, an account that does not
    cross-margin and a position closed to zero; neither applies anything."""
    engine = _empty_engine(market)
    steps = _steps_on_every_side(instruments)
    for acc, inst, qty in steps:
        got, want = engine.what_if(acc, inst, qty), engine.prepare(acc, inst, qty).impact()
        assert list(got) == list(want) and got["account"] == acc.account
        assert (got["instrument"], got["quantity"]) == (want["instrument"], want["quantity"])
        for part in ("before", "after", "change"):
            assert list(got[part]) == list(HEADLINE)
            for k in HEADLINE:
                a, b = got[part][k], want[part][k]
                assert a == b or (math.isnan(a) and math.isnan(b)), (part, k)
        engine.apply(acc, inst, qty)


def test_new_instrument_rows_equal_a_full_rebuild(market, instruments):
    base = instruments["cash"][:3]
    more = [instruments["repo"], instruments["futures"][0], instruments["futures"][7], instruments["bill"]]
    small = build_context(market.snapshot, market.master, InstrumentUniverse.of(base), market.params,
                          market.eligibility)
    ext = extend_context(small, more)
    full = build_context(market.snapshot, market.master, InstrumentUniverse.of([*base, *more]), market.params,
                         market.eligibility)
    assert ext.universe.ids == full.universe.ids
    np.testing.assert_allclose(ext.ficc_pnl.pnl, full.ficc_pnl.pnl, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ext.cme_pnl.pnl, full.cme_pnl.pnl, rtol=1e-12, atol=1e-9)
    for f in fields(ext.attributes):
        np.testing.assert_allclose(getattr(ext.attributes, f.name), getattr(full.attributes, f.name),
                                   rtol=1e-12, atol=1e-12, err_msg=f.name)
    assert extend_context(ext, more) is ext


def test_market_snapshot_recomputes_everything(market, instruments):
    engine = _empty_engine(market)
    acc = Account("M", "M", "house", True)
    engine.apply(acc, instruments["cash"][12], 25_000_000.0)
    engine.apply(acc, instruments["futures"][4], -100.0)
    engine.apply(Account("N", "M", "customer", False), instruments["cash"][2], -9_000_000.0)
    eod = engine.margin("M")
    shifted = intraday_snapshot(market.snapshot, market.snapshot.par_yields + 0.0025)
    engine.set_market(shifted)
    assert engine.context.snapshot is shifted
    assert engine.margin("M")["ficc_floor"] != eod["ficc_floor"]  # re-priced at the new curve
    _assert_matches_batch(engine)
    # trades after the new snapshot keep matching
    engine.apply("M", instruments["cash"][13], 4_000_000.0)
    _assert_matches_batch(engine)
    with pytest.raises(InputError, match="par yields"):
        intraday_snapshot(market.snapshot, [0.04, 0.05])


def test_account_must_agree_with_its_first_trade_and_cancels_need_a_trade(market, instruments):
    engine = _empty_engine(market)
    engine.trade("T1", Account("A", "M1", "house", True), instruments["cash"][0], 1e6)
    with pytest.raises(InputError, match="member M1"):
        engine.apply(Account("A", "M2", "house", True), instruments["cash"][0], 1e6)
    with pytest.raises(InputError, match="no such trade"):
        engine.cancel("T404")
    with pytest.raises(InputError, match="already applied"):
        engine.trade("T1", Account("A", "M1", "house", True), instruments["cash"][0], 1e6)
    engine.cancel("T1")
    assert engine.positions("A") == {}
    with pytest.raises(InputError, match="unknown account"):
        engine.apply("B", instruments["cash"][0], 1e6)
