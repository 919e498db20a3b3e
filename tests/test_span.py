"""CME-style SPAN: a worked example with round numbers, and the calibration on real data.

The worked examples construct :class:`SpanParameters` and :class:`SpanInputs` directly, so
every figure can be followed on paper (each test's docstring is the worksheet).  The
calibration test compares the engine's ZN scanning range with the 99% quantile of real
one-day ZN futures price changes computed here from ``futures/ZN.csv``.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.margin.calibration import calibrate_span, listed_contracts
from xmargin.margin.params import CmeParams
from xmargin.margin.span import SpanInputs, SpanParameters, span_requirement
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master

AS_OF = date(2024, 6, 26)


def params(**kw: object) -> SpanParameters:
    """Two products: AA (range $1,000, calendar spread charge $200) and BB (range $1,500,
    spread charge $300); one inter-commodity pair AA/BB with a 50% credit rate."""
    base: dict[str, object] = dict(
        roots=("AA", "BB"),
        scan_range=np.array([1000.0, 1500.0]),
        intra_charge=np.array([200.0, 300.0]),
        inter_pairs=((0, 1, 0.5),),
    )
    base.update(kw)
    return SpanParameters(**base)  # type: ignore[arg-type]


def inputs(rows: list[dict[str, tuple[float, float, float]]], roots: tuple[str, ...] = ("AA", "BB"),
           dv01: dict[str, float] | None = None) -> SpanInputs:
    """Accounts as ``{root: (long contracts, short contracts, dv01 per contract)}``."""
    a, p = len(rows), len(roots)
    long, short, delta = np.zeros((a, p)), np.zeros((a, p)), np.zeros((a, p))
    for i, row in enumerate(rows):
        for root, (lg, sh, d) in row.items():
            j = roots.index(root)
            long[i, j], short[i, j], delta[i, j] = lg, sh, (lg - sh) * d
    return SpanInputs(net=long - short, long=long, short=short, delta=delta)


# --- the 16 scenarios -------------------------------------------------------------------------

def test_sixteen_scenarios_with_extremes_at_twice_the_range_covered_35pct() -> None:
    """CME's standard futures scenarios: no move (twice), +-1/3, +-2/3, +-3/3 of the range (each
    twice: volatility up and down, identical for futures) and +-2 ranges counted at 35%."""
    moves, weights = params().scenario_moves()
    assert len(moves) == len(weights) == 16
    assert np.allclose(moves[:14] * 3, np.round(moves[:14] * 3))  # whole thirds
    assert sorted(int(round(m * 3)) for m in moves[:14]) == [-3, -3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3, 3]
    assert sorted(moves[14:].tolist()) == [-2.0, 2.0]
    assert weights[:14].tolist() == [1.0] * 14
    assert weights[14:].tolist() == [0.35, 0.35]


def test_scan_risk_of_one_contract_is_the_range() -> None:
    """Long one AA contract (range $1,000).  Losses over the 16 scenarios: 0, 0, -+333.33 (x2),
    -+666.67 (x2), -+1,000 (x2) and the extremes 2 x 1,000 x 35% = 700 each way.  The largest
    loss is the full down move, $1,000; the extreme move (700) does not bind."""
    res = span_requirement(inputs([{"AA": (1, 0, 50.0)}]), params())
    assert res.scan_risk.tolist() == pytest.approx([1000.0])
    assert res.requirement.tolist() == pytest.approx([1000.0])
    short = span_requirement(inputs([{"BB": (0, 3, 100.0)}]), params())
    assert short.scan_risk.tolist() == pytest.approx([4500.0])  # 3 x 1,500 on the up move


def test_extreme_scenarios_are_scanned() -> None:
    """Covering the extreme move at 60% instead of 35%: 2 x 1,000 x 60% = $1,200 > $1,000, so
    the scan risk of one AA contract becomes $1,200 -- the extreme scenarios are in the scan.
    At 3x covered 35%: 3 x 1,000 x 0.35 = $1,050."""
    one = inputs([{"AA": (1, 0, 50.0)}])
    assert span_requirement(one, params(extreme_cover=0.6)).scan_risk.tolist() == pytest.approx([1200.0])
    assert span_requirement(one, params(extreme_multiple=3.0)).scan_risk.tolist() == pytest.approx([1050.0])


def test_calendar_spread_scans_to_zero_and_pays_the_intra_charge() -> None:
    """Long 4 AA (front month), short 4 AA (back month): net 0, so every scenario moves both
    legs alike and the scan risk is 0; four spreads are formed at $200: requirement $800."""
    res = span_requirement(inputs([{"AA": (4, 4, 50.0)}]), params())
    assert res.scan_risk.tolist() == pytest.approx([0.0])
    assert res.intra_spread_charge.tolist() == pytest.approx([800.0])
    assert res.requirement.tolist() == pytest.approx([800.0])


def test_worked_example_with_calendar_spread_and_inter_commodity_credit() -> None:
    """One account, AA DV01 $50 per contract, BB DV01 $100 per contract.

    Positions: AA long 3 (front) and short 1 (back): net +2, delta +100 $/bp;
    BB short 1: net -1, delta -100 $/bp.

    1. Scan risk: AA 2 x 1,000 = 2,000 (down move); BB 1 x 1,500 = 1,500 (up move); 3,500.
    2. Intra-commodity: AA spreads min(3, 1) = 1 x 200 = 200; BB none.   -> 3,700
    3. Inter-commodity AA/BB at 50%: opposite deltas, spread s = min(100, 100) = 100 DV01
       units; weighted futures price risk AA 2,000 / 100 = 20, BB 1,500 / 100 = 15 per unit;
       credit 0.5 x 100 x (20 + 15) = 1,750.
    4. Requirement 3,500 + 200 - 1,750 = 1,950.
    """
    res = span_requirement(inputs([{"AA": (3, 1, 50.0), "BB": (0, 1, 100.0)}]), params())
    assert res.scan_by_root.tolist() == [pytest.approx([2000.0, 1500.0])]
    assert res.scan_risk.tolist() == pytest.approx([3500.0])
    assert res.intra_spread_charge.tolist() == pytest.approx([200.0])
    assert res.inter_spread_credit.tolist() == pytest.approx([1750.0])
    assert res.requirement.tolist() == pytest.approx([1950.0])


def test_same_direction_exposures_earn_no_credit() -> None:
    """AA long 2 and BB long 1: both lose when rates rise, nothing offsets: 2,000 + 1,500."""
    res = span_requirement(inputs([{"AA": (2, 0, 50.0), "BB": (1, 0, 100.0)}]), params())
    assert res.inter_spread_credit.tolist() == [0.0]
    assert res.requirement.tolist() == pytest.approx([3500.0])


def test_partial_delta_spread() -> None:
    """AA long 4 (delta +200), BB short 1 (delta -100): s = min(200, 100) = 100 units.
    WFPR AA = 4,000 / 200 = 20, BB = 1,500 / 100 = 15; credit 0.5 x 100 x 35 = 1,750;
    requirement 4,000 + 1,500 - 1,750 = 3,750 (the unmatched 100 units of AA keep full risk)."""
    res = span_requirement(inputs([{"AA": (4, 0, 50.0), "BB": (0, 1, 100.0)}]), params())
    assert res.inter_spread_credit.tolist() == pytest.approx([1750.0])
    assert res.requirement.tolist() == pytest.approx([3750.0])


def test_pairs_are_formed_in_priority_order() -> None:
    """Three products AA, BB, CC (ranges 1,000, 1,500, 2,000; DV01 50, 100, 100), pairs AA/CC
    at 60% first, then AA/BB at 50%.  Positions: AA long 2 (+100 $/bp), BB short 1 (-100), CC
    short 1 (-100).  AA's 100 units go to AA/CC first (s = 100); none are left for AA/BB.

    Scan: 2,000 + 1,500 + 2,000 = 5,500.  WFPR AA 20, CC 20.  Credit 0.6 x 100 x (20 + 20)
    = 2,400.  Requirement 5,500 - 2,400 = 3,100.  With the pair order reversed, AA/BB would
    take the 100 units instead: 0.5 x 100 x (20 + 15) = 1,750 -> 3,750.
    """
    roots = ("AA", "BB", "CC")
    inp = inputs([{"AA": (2, 0, 50.0), "BB": (0, 1, 100.0), "CC": (0, 1, 100.0)}], roots=roots)
    p = params(roots=roots, scan_range=np.array([1000.0, 1500.0, 2000.0]), intra_charge=np.zeros(3),
               inter_pairs=((0, 2, 0.6), (0, 1, 0.5)))
    res = span_requirement(inp, p)
    assert res.inter_spread_credit.tolist() == pytest.approx([2400.0])
    assert res.requirement.tolist() == pytest.approx([3100.0])
    swapped = span_requirement(inp, params(roots=roots, scan_range=p.scan_range, intra_charge=np.zeros(3),
                                           inter_pairs=((0, 1, 0.5), (0, 2, 0.6))))
    assert swapped.requirement.tolist() == pytest.approx([3750.0])


def test_accounts_are_margined_independently() -> None:
    """The worked example, the calendar spread and an empty account in one call."""
    res = span_requirement(
        inputs([{"AA": (3, 1, 50.0), "BB": (0, 1, 100.0)}, {"AA": (4, 4, 50.0)}, {}]), params()
    )
    assert res.requirement.tolist() == pytest.approx([1950.0, 800.0, 0.0])


def test_requirement_scales_with_the_book() -> None:
    """Ten times the worked example: every component is ten times larger (SPAN is linear in
    whole spreads): 19,500."""
    res = span_requirement(inputs([{"AA": (30, 10, 50.0), "BB": (0, 10, 100.0)}]), params())
    assert res.requirement.tolist() == pytest.approx([19500.0])


# --- calibration on real data -----------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> MarketSnapshot:
    return load_snapshot(AS_OF, data_dir=data_dir)


@pytest.fixture(scope="module")
def calibrated(data_dir: Path, snapshot: MarketSnapshot) -> SpanParameters:
    """The 10-year window alone (``span_short_lookback_years = 0``, no filtered set)."""
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    plain = CmeParams(span_short_lookback_years=0.0, span_mode="historical")
    return calibrate_span(snapshot, load_master(data_dir), history, plain)


def test_two_windows_keep_the_larger(calibrated: SpanParameters, data_dir: Path, snapshot: MarketSnapshot) -> None:
    """Plain two-window calibration (1-year and 10-year windows, ``span_mode = "historical"``): each scanning range and spread charge
    is the larger of the 10-year figure and the figure of a separate 1-year calibration, and
    each credit rate the smaller; 2023-24 was more volatile than the decade, so ZN's range
    rises (about $1,155 -> $1,233 on 2024-06-26)."""
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    master = load_master(data_dir)
    both = calibrate_span(snapshot, master, history, CmeParams(span_mode="historical"))
    short = calibrate_span(snapshot, master, history, CmeParams(span_lookback_years=1.0, span_short_lookback_years=0.0,
                                                                span_mode="historical"))
    assert both.roots == calibrated.roots == short.roots
    np.testing.assert_allclose(both.scan_range, np.maximum(calibrated.scan_range, short.scan_range), rtol=1e-12)
    np.testing.assert_allclose(both.intra_charge, np.maximum(calibrated.intra_charge, short.intra_charge), rtol=1e-12)
    assert both.scan_range[both.index("ZN")] > calibrated.scan_range[calibrated.index("ZN")]
    rates = {frozenset((both.roots[p], both.roots[q])): r for p, q, r in both.inter_pairs}
    for p, q, r in calibrated.inter_pairs:
        key = frozenset((calibrated.roots[p], calibrated.roots[q]))
        assert rates.get(key, 0.0) <= r + 1e-12


def test_calibration_covers_every_root(calibrated: SpanParameters) -> None:
    assert set(calibrated.roots) == {"ZT", "Z3N", "ZF", "ZN", "TN", "TWE", "ZB", "UB", "SR3", "SR1", "ZQ"}
    assert calibrated.info["skipped"] == {}
    assert calibrated.info["scenarios"] == 2500  # one-day windows, 10-year look-back
    assert (calibrated.scan_range > 0).all()
    assert (calibrated.intra_charge > 0).all()


TREASURY_ROOTS = ("ZT", "Z3N", "ZF", "ZN", "TN", "TWE", "ZB", "UB")


def test_treasury_calendar_spreads_are_charged_less_than_outrights(calibrated: SpanParameters) -> None:
    """Adjacent Treasury contracts share most of their basket: the calendar-spread charge is a
    small fraction of the outright range (under a quarter for every Treasury root on 2024-06-26;
    the largest share is ZT's, about 16%)."""
    for root in TREASURY_ROOTS:
        p = calibrated.index(root)
        assert calibrated.intra_charge[p] < 0.25 * calibrated.scan_range[p], root


def test_stir_calendar_spreads_are_charged_less_than_outrights(calibrated: SpanParameters) -> None:
    """Adjacent SOFR quarters and Fed Funds months move together (real one-day correlation well
    above 0.9), so a calendar spread must cost well under an outright.  This failed while the
    STIR forwards were projected straight off the bill nodes (1M-6M), whose one-day changes
    are noisy: on 2024-06-26 the SR3 spread charge ($323) exceeded the range ($312).  The
    Nelson-Siegel projection curve and calibrating on contracts not yet in their reference
    period fixed it (SR3: range about $320, spread about $130)."""
    for root in ("SR3", "SR1", "ZQ"):
        p = calibrated.index(root)
        assert calibrated.intra_charge[p] < 0.5 * calibrated.scan_range[p], root


def test_scanning_ranges_ordered_by_duration(calibrated: SpanParameters) -> None:
    """$100,000-face contracts in order of deliverable duration: ZF < ZN < TN < ZB < UB, and ZT
    ($200,000 face, about 2 years) below ZF; on 2024-06-26 the ranges are about $580, $680,
    $1,150, $1,380, $1,810 and $2,760."""
    r = {root: calibrated.scan_range[calibrated.index(root)] for root in calibrated.roots}
    assert r["ZT"] < r["ZF"] < r["ZN"] < r["TN"] < r["ZB"] < r["UB"]
    assert r["ZN"] == pytest.approx(1155.0, rel=0.05)


def test_inter_commodity_pairs(calibrated: SpanParameters) -> None:
    """Credit rates lie in (0, 85%], pairs sorted highest rate first, and the neighbouring
    Treasury tenors ZF/ZN are paired (a 5s/10s curve trade earns a credit)."""
    rates = [rate for _, _, rate in calibrated.inter_pairs]
    assert all(0 < x <= 0.85 for x in rates)
    assert rates == sorted(rates, reverse=True)
    pairs = {frozenset((calibrated.roots[p], calibrated.roots[q])) for p, q, _ in calibrated.inter_pairs}
    assert frozenset(("ZF", "ZN")) in pairs


def test_listed_contracts_are_the_nearest_live_ones() -> None:
    """On 2024-06-26 ZN's June contract has stopped trading (last day 2024-06-18, seven business
    days before the last business day of June, Juneteenth skipped), so the two nearest are
    September and December; ZF's June contract trades to the end of June."""
    assert [c.symbol for c in listed_contracts("ZN", AS_OF)] == ["ZNU24", "ZNZ24"]
    assert [c.symbol for c in listed_contracts("ZF", AS_OF)] == ["ZFM24", "ZFU24"]
    assert [c.symbol for c in listed_contracts("SR1", AS_OF, count=3)] == ["SR1M24", "SR1N24", "SR1Q24"]


def _zn_one_day_changes(path: Path, start: date, end: date) -> list[float]:
    """Dollar change per contract ($1,000 per point) of the front ZN contract between
    consecutive rows of ``futures/ZN.csv`` with both dates in ``[start, end]``, except across a
    roll.  The series moves to the next contract after the front's last trading day, the
    seventh business day before the last business day of March, June, September and
    December: taking the file's own rows as business days, that is the row seven before the
    month's last row, and the change from it to the next row is the calendar spread, not a
    price move (SOURCE.md of that folder)."""
    rows = []
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            rows.append((date.fromisoformat(rec["date"]), float(rec["close"])))
    by_month: dict[tuple[int, int], list[date]] = defaultdict(list)
    for d, _ in rows:
        by_month[(d.year, d.month)].append(d)
    last_trading = {ds[-8] for (_, m), ds in by_month.items() if m in (3, 6, 9, 12) and len(ds) > 8}
    changes = []
    for (d0, p0), (d1, p1) in zip(rows, rows[1:], strict=False):
        if start <= d0 and d1 <= end and d0 not in last_trading:
            changes.append((p1 - p0) * 1000.0)
    return changes


def test_zn_scanning_range_is_close_to_real_one_day_moves(calibrated: SpanParameters, data_dir: Path) -> None:
    """The calibrated ZN range against the real futures.

    Real: one-day changes of the front ZN contract (Yahoo close, which equals the CME
    settlement on 98-100% of the days checked against the CHRIS TY1 settlements) over the same
    ten years as the calibration (2014-06-27 .. 2024-06-26), roll days dropped: 2,473 changes;
    the two-sided 99% figure (k = ceil(0.01 x 2,473) = 25th largest loss, long or short,
    explicit sort) is $1,125 per contract.  Calibrated: about $1,155.  Ratio about 1.03.

    They need not agree exactly, and a factor within [0.75, 1.33] is accepted, because the
    calibration replays the *curve* changes of the decade on today's contracts: (1) today's
    DV01 (about $62/bp for ZNU24 and $69 for ZNZ24 at 4.3% yields, the shorter basket since
    September 2023) rather than each day's own (prices near 139 and the longer pre-2023
    basket in 2020-21 gave larger point moves per bp); (2) Treasury's fitted par curve, not
    the cheapest-to-deliver's own yield or the futures basis and delivery options; (3) the
    larger of two contracts and of long or short.
    """
    changes = _zn_one_day_changes(data_dir / "futures" / "ZN.csv", date(2014, 6, 27), AS_OF)
    k = math.ceil(len(changes) / 100)
    ordered = sorted(changes)
    real = max(-ordered[k - 1], ordered[-k])
    assert 2400 < len(changes) < 2550
    assert real == pytest.approx(1125.0, abs=1.0)
    ratio = calibrated.scan_range[calibrated.index("ZN")] / real
    assert 0.75 <= ratio <= 1.33, ratio
