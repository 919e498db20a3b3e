"""The SPAN calibration against the real market (issue 17): every root's scanning range to its
magnitude, and the inter-commodity credit rates recomputed from hedged real futures.

A mutation run halved every calibrated credit rate and every test still passed: the rates
were only checked to lie in (0, 0.85] and be sorted.  Here each figure is recomputed from
data the engine never reads:

* ``futures/{ZT,ZF,ZN,ZB}.csv``: the real front contracts (Yahoo close, which is CME's
  settlement on 98-100% of the ZN days checked against CHRIS TY1), one-day changes over the
  calibration's ten years 2014-06-27 .. 2024-06-26, roll days dropped (SOURCE.md: ZN/ZB stop
  trading on the 7th business day before the month's last one, ZT/ZF on the month's last
  business day; quarterly);
* ``yields/par_yield_curve.csv`` read with the ``csv`` module: the real one-day change of the
  par yield at each contract's tenor over the same ten years.

Quantiles follow the documented convention (k-th largest of n, k = ceil(1% n)), by explicit
sort.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import date
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from xmargin.margin.calibration import calibrate_span
from xmargin.margin.params import CmeParams
from xmargin.margin.span import SpanParameters
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master

AS_OF = date(2024, 6, 26)
START = date(2014, 6, 27)  # first window start of the 10-year look-back (methodology section 4)
DOLLARS_PER_POINT = {"ZT": 2000.0, "ZF": 1000.0, "ZN": 1000.0, "ZB": 1000.0}  # ZT is $200,000 face
CAP = 0.85  # CmeParams.max_inter_credit


@pytest.fixture(scope="module")
def calibrated(data_dir: Path) -> SpanParameters:
    """The 10-year calibration alone, the window the real figures here cover (the default also
    takes a 1-year window: larger ranges and smaller credits, see ``test_span.py``)."""
    snapshot = load_snapshot(AS_OF, data_dir=data_dir)
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    plain = CmeParams(span_short_lookback_years=0.0, span_mode="historical")  # no 1-year window, no filtered set
    return calibrate_span(snapshot, load_master(data_dir), history, plain)


def two_sided_99(x: np.ndarray) -> float:
    """Larger of the long and the short 99% loss: k-th largest loss, k = ceil(n / 100)."""
    k = math.ceil(len(x) / 100)
    s = np.sort(x)
    return max(-float(s[k - 1]), float(s[-k]))


def front_series(data_dir: Path, root: str) -> tuple[dict[date, float], set[date]]:
    """``(close by date, roll days)``: a roll day's change to the next row is the calendar
    spread, not a move."""
    closes: dict[date, float] = {}
    with (data_dir / "futures" / f"{root}.csv").open(newline="") as fh:
        for rec in csv.DictReader(fh):
            closes[date.fromisoformat(rec["date"])] = float(rec["close"])
    by_month: dict[tuple[int, int], list[date]] = defaultdict(list)
    for d in sorted(closes):
        by_month[(d.year, d.month)].append(d)
    if root in ("ZN", "ZB"):
        rolls = {ds[-8] for (_, m), ds in by_month.items() if m in (3, 6, 9, 12) and len(ds) > 8}
    else:
        rolls = {ds[-1] for (_, m), ds in by_month.items() if m in (3, 6, 9, 12)}
    return closes, rolls


def joint_changes(data_dir: Path, p: str, q: str) -> tuple[np.ndarray, np.ndarray]:
    """Dollar changes per contract of ``p`` and ``q`` between consecutive common dates."""
    (cp, rp), (cq, rq) = front_series(data_dir, p), front_series(data_dir, q)
    days = sorted(d for d in cp if d in cq and START <= d <= AS_OF)
    a, b = [], []
    for d0, d1 in zip(days, days[1:], strict=False):
        if d0 not in rp and d0 not in rq:
            a.append((cp[d1] - cp[d0]) * DOLLARS_PER_POINT[p])
            b.append((cq[d1] - cq[d0]) * DOLLARS_PER_POINT[q])
    return np.array(a), np.array(b)


def real_credit_rate(a: np.ndarray, b: np.ndarray, window: int = 60) -> float:
    """The calibration's definition ``1 - VaR(x_p - x_q) / (VaR(x_p) + VaR(x_q))`` with the
    DV01-neutral ratio replaced by the hedge ratio a desk would use on real prices: each day's
    regression slope of ``a`` on ``b`` over the 60 previous days (no look-ahead; the DV01 ratio
    drifts over a decade, so one slope for ten years would not be DV01-neutral).  In dollars
    of ``p``: spread ``a - h b``, outright risks ``VaR(a) + VaR(h b)``."""
    hedge_leg, outright = [], []
    for i in range(window, len(a)):
        h = float(a[i - window:i] @ b[i - window:i] / (b[i - window:i] @ b[i - window:i]))
        hedge_leg.append(h * b[i])
        outright.append(a[i])
    x, y = np.array(outright), np.array(hedge_leg)
    return 1.0 - two_sided_99(x - y) / (two_sided_99(x) + two_sided_99(y))


def rate_of(span: SpanParameters, p: str, q: str) -> float:
    i, j = span.index(p), span.index(q)
    return next(r for a, b, r in span.inter_pairs if {a, b} == {i, j})


# --- inter-commodity credit rates --------------------------------------------------------------

@pytest.mark.parametrize(("p", "q"), list(combinations(("ZT", "ZF", "ZN", "ZB"), 2)))
def test_inter_commodity_rate_matches_hedged_real_futures(calibrated: SpanParameters, data_dir: Path,
                                                          p: str, q: str) -> None:
    """Real figures on 2,433-2,474 common days (hedged from the 61st on): ZT/ZF 0.832, ZT/ZN 0.744, ZT/ZB
    0.607, ZF/ZN 0.866 (capped to 0.85), ZF/ZB 0.695, ZN/ZB 0.808.  Calibrated: 0.807, 0.733,
    0.608, 0.85, 0.723, 0.798.  Accepted: within 0.08 of ``min(real, 85%)``; the largest gap
    is 0.03.  Halved rates (0.30-0.43) miss by more than 0.3."""
    a, b = joint_changes(data_dir, p, q)
    assert 2400 <= len(a) <= 2500
    real = min(real_credit_rate(a, b), CAP)
    assert rate_of(calibrated, p, q) == pytest.approx(real, abs=0.08), (p, q, real)


def test_sofr_against_two_year_credit_near_cmes_published_rate(calibrated: SpanParameters) -> None:
    """CME publishes a 75% SPAN credit for SOFR futures against 2-year Treasury futures
    (methodology README, brief section 8).  The calibration's ZT/SR3 rate is 0.617 on
    2024-06-26 (a known gap: our SR3 moves with a smoothed projection curve).  Accepted: within
    0.15 of 75%; halved (0.31) it is not."""
    assert rate_of(calibrated, "ZT", "SR3") == pytest.approx(0.75, abs=0.15)


# --- scanning ranges ---------------------------------------------------------------------------

@pytest.mark.parametrize("root", ["ZT", "ZF", "ZN", "ZB"])
def test_scanning_range_against_real_futures_moves(calibrated: SpanParameters, data_dir: Path,
                                                   root: str) -> None:
    """Real one-day moves of the front contract, as a return on the day's price times the
    price of 2024-06-26 (a first-order correction for the DV01 of the decade: ZB traded near 180
    in 2020 against 119 now, so its raw dollar moves overstate today's risk by a third).  Real
    99% (dollars per contract): ZT 575, ZF 689, ZN 1,021, ZB 1,957; calibrated 624, 701,
    1,155, 1,811.  Accepted: a factor within [0.8, 1.25]."""
    closes, rolls = front_series(data_dir, root)
    days = sorted(d for d in closes if START <= d <= AS_OF)
    today = closes[days[-1]]
    moves = np.array([(closes[d1] - closes[d0]) / closes[d0] * today * DOLLARS_PER_POINT[root]
                      for d0, d1 in zip(days, days[1:], strict=False) if d0 not in rolls])
    assert 2400 < len(moves) < 2550
    ratio = calibrated.scan_range[calibrated.index(root)] / two_sided_99(moves)
    assert 0.8 <= ratio <= 1.25, (root, ratio)


#: The par-yield tenor nearest each contract's risk: the cheapest-to-deliver's remaining term for
#: Treasury futures (ZB's basket starts at 15 years, UB's at 25), the forward period of the two
#: calibrated contracts for SOFR and Fed Funds (SR3U24/Z24: 3-9 months ahead -> 6M; SR1 and
#: ZQ July/August 2024: 1-2 months ahead -> 3M, the nearest tenor with the whole decade: 2M
#: starts in October 2018).
TENOR = {"ZT": "2Y", "Z3N": "3Y", "ZF": "5Y", "ZN": "7Y", "TN": "10Y", "TWE": "20Y", "ZB": "20Y", "UB": "30Y",
         "SR3": "6M", "SR1": "3M", "ZQ": "3M"}


def test_every_scanning_range_against_dv01_times_real_yield_moves(calibrated: SpanParameters,
                                                                  data_dir: Path) -> None:
    """An independent linear revaluation for every root, including those without a real
    futures series (Z3N, TN, TWE, UB, SR3, SR1, ZQ): the larger DV01 of the root's two
    calibrated contracts times the real two-sided 99% one-day change (bp) of the par yield at
    its tenor, read here from the CSV.  The 99% moves over 2014-06-27 .. 2024-06-26 are 10-16
    bp; the ratios of the calibrated ranges to these estimates lie in 0.85-1.32 (full
    revaluation of a curve move is not one tenor's change times a DV01).  Accepted: [0.7, 1.4]
    for each root, so a range off by half or by double fails."""
    with (data_dir / "yields" / "par_yield_curve.csv").open(newline="") as fh:
        rows = {date.fromisoformat(r["date"]): r for r in csv.DictReader(fh)}
    days = sorted(d for d in rows if START <= d <= AS_OF)
    dv01 = calibrated.info["dv01_per_contract"]
    contracts = calibrated.info["contracts"]
    assert set(TENOR) == set(calibrated.roots)
    for root, tenor in TENOR.items():
        bp = np.array([(float(rows[d1][tenor]) - float(rows[d0][tenor])) * 100.0
                       for d0, d1 in zip(days, days[1:], strict=False) if rows[d0][tenor] and rows[d1][tenor]])
        assert len(bp) > 2400, tenor
        estimate = max(abs(dv01[c]) for c in contracts[root]) * two_sided_99(bp)  # type: ignore[index]
        ratio = calibrated.scan_range[calibrated.index(root)] / estimate
        assert 0.7 <= ratio <= 1.4, (root, ratio)
