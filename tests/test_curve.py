"""Bootstrapped zero curves: round trip on real par curves and an independent check of the
monotone convex interpolation.

Independent references:

* the definition of a par yield (a bond paying its par yield as coupon prices at 100) and of
  a bill's bond-equivalent yield (DF = 1 / (1 + y * days / 365)), on real Treasury par
  curves (``yields/par_yield_curve.csv``);
* Hagan, P. S. and West, G. (2006), "Interpolation methods for curve construction",
  *Applied Mathematical Finance* 13(2), 89-129: the node forwards of the monotone convex
  method (section 4: ``f_i`` the length-weighted average of the neighbouring discrete
  forwards, ``f_0 = fd_1 - (f_1 - fd_1) / 2`` and ``f_n = fd_n - (f_{n-1} - fd_n) / 2``),
  written out by hand below;
* QuantLib 1.44's ``ConvexMonotoneInterpolation`` (S. Ibbotson's implementation of the same
  paper, ``ql/math/interpolations/convexmonotoneinterpolation.hpp``).  Its documentation says
  "monotonicity = 1 and quadraticity = 0 will reproduce the basic Hagan/West method";
  ``forcePositive = False`` switches off the positivity amelioration, which xmargin omits
  (rates may be negative).  It takes the node times (with 0 prepended) and the discrete
  forwards (first value ignored) and returns instantaneous forwards; beyond the last node
  it holds the last node forward flat, as xmargin does.  So given identical node values it
  is a full, independent implementation of our interpolation: we compare forwards pointwise
  and the integral of its forwards (numerical quadrature) with our ``-ln DF``.
  ``PiecewiseConvexMonotoneZero``/``Forward`` are *not* used: they bootstrap with
  QuantLib's own rate helpers and localised re-interpolation (``localInterpolate`` reuses
  the sections built on partial curves), so they do not interpolate given node values the
  same (global) way.
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.integrate import IntegrationWarning, quad

from xmargin.errors import CalculationError
from xmargin.market.curve import ZeroCurves, bootstrap, par_bond, year_fractions
from xmargin.market.history import TENOR_MONTHS, TENORS, load_par_yields
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.pricing.bonds import dirty_prices
from xmargin.reference.calendar import add_months
from xmargin.reference.cashflows import resolve

#: Real curve dates: the latest, and historical ones with every kind of missing tenor.
CURVE_DATES = [
    date(2025, 10, 31),  # latest in the file, all 13 tenors
    date(1990, 1, 2),  # first day: no 1M, 2M, 4M, 20Y
    date(1993, 6, 15),  # no 1M / 20Y
    date(1995, 6, 15),  # no 1M
    date(2005, 3, 15),  # no 30Y (bond suspended)
    date(2008, 12, 10),  # no 3M (bill yields at zero)
    date(2008, 12, 30),
    date(2020, 3, 9),
    date(2021, 8, 3),  # near-zero front end
    date(2024, 6, 26),
]

#: A flat par segment (2Y = 3Y = 5Y = 8.53 %): equal discrete forwards on (2Y, 3Y] and
#: (3Y, 5Y], so Hagan-West's g vanishes at the 3Y node from both sides while its neighbours'
#: do not.  The method then puts the whole change of forward into a sliver ~1e-13 of the
#: interval wide next to the 2Y and 5Y nodes: numerically a jump of 15-18 bp.  It is the
#: method's degenerate case (QuantLib's basic-HW setting does the same; its default
#: ``monotonicity = 0.7`` is its remedy), seen on 38 of the 8,965 real curves.
FLAT_SEGMENT_DATE = date(1990, 3, 1)


@pytest.fixture(scope="module")
def snapshots(data_dir: Path) -> dict[date, MarketSnapshot]:
    return {d: load_snapshot(d, data_dir=data_dir) for d in [*CURVE_DATES, FLAT_SEGMENT_DATE]}


def _discrete_forwards(curve: ZeroCurves, row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Node times with 0 prepended and the discrete forwards ``fd_i`` of curve ``row``."""
    t = np.concatenate([[0.0], curve.node_times])
    y = np.concatenate([[0.0], curve.node_logdf[row]])
    return t, np.diff(y) / np.diff(t)


def _hagan_west_node_forwards(t: np.ndarray, fd: np.ndarray) -> np.ndarray:
    """Hagan & West (2006), section 4: instantaneous forwards f_0..f_n at the nodes."""
    n = len(fd)
    f = np.empty(n + 1)
    for i in range(1, n):
        f[i] = (t[i] - t[i - 1]) / (t[i + 1] - t[i - 1]) * fd[i] + (t[i + 1] - t[i]) / (t[i + 1] - t[i - 1]) * fd[i - 1]
    f[0] = fd[0] - 0.5 * (f[1] - fd[0])
    f[n] = fd[n - 1] - 0.5 * (f[n - 1] - fd[n - 1])
    return f


def _quantlib_interpolation(curve: ZeroCurves, row: int = 0) -> ql.ConvexMonotoneInterpolation:
    t, fd = _discrete_forwards(curve, row)
    # (x, y, quadraticity, monotonicity, forcePositive): basic Hagan-West, no positivity fix
    interp = ql.ConvexMonotoneInterpolation(ql.Array(t.tolist()), ql.Array([0.0, *fd.tolist()]), 0.0, 1.0, False)
    return interp


def _central_forward(curve: ZeroCurves, t: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return (curve.log_discount(t + h)[0] - curve.log_discount(t - h)[0]) / (2 * h)


def _one_sided_forward(curve: ZeroCurves, t: float, side: int, h: float = 1e-6) -> float:
    """Second-order one-sided difference of ``-ln DF``: the forward's limit from one side."""
    pts = np.array([t, t + side * h, t + 2 * side * h])
    v = curve.log_discount(pts)[0]
    return float(side * (-3 * v[0] + 4 * v[1] - v[2]) / (2 * h))


def _quad_log_discount(interp: ql.ConvexMonotoneInterpolation, a: float, b: float) -> float:
    """Integral of QuantLib's forwards over [a, b] (adaptive quadrature)."""
    width = b - a
    # hint the routine at the steep quadratic pieces the method can put next to a node
    hints = sorted({a + width * 10.0**-k for k in range(1, 10)} | {b - width * 10.0**-k for k in range(1, 10)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        value, _ = quad(lambda s: interp(s, True), a, b, points=hints, epsabs=1e-15, epsrel=1e-14, limit=1000)
    return value


# ---------------------------------------------------------------------------------------------
# round trip on real curves
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", CURVE_DATES, ids=str)
def test_par_bonds_price_to_100_and_bills_reproduce_their_yield(snapshots, as_of: date) -> None:
    snap = snapshots[as_of]
    bond_tenors = [(m, y) for m, y in zip(snap.tenor_months, snap.par_yields, strict=True) if m > 6]
    bill_tenors = [(m, y) for m, y in zip(snap.tenor_months, snap.par_yields, strict=True) if m <= 6]
    assert bond_tenors and bill_tenors
    bonds = [par_bond(snap.as_of, m, float(y)) for m, y in bond_tenors]
    prices = dirty_prices(resolve(bonds, snap.as_of), snap.curve)[:, 0]
    np.testing.assert_allclose(prices, 100.0, rtol=0, atol=1e-6)
    assert np.abs(prices - 100.0).max() < 1e-9  # in fact solved to the bootstrap tolerance
    maturities = np.array([add_months(snap.as_of, m) for m, _ in bill_tenors], dtype="datetime64[D]")
    days = (maturities - np.datetime64(snap.as_of, "D")).astype(np.int64)
    df = snap.curve.discount_dates(maturities)[0]
    bey = (1.0 / df - 1.0) * 365.0 / days
    np.testing.assert_allclose(bey, [y for _, y in bill_tenors], rtol=0, atol=1e-13)


def test_missing_tenors_drop_their_nodes(snapshots) -> None:
    assert snapshots[date(1993, 6, 15)].tenors == ("3M", "6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y", "30Y")
    assert "30Y" not in snapshots[date(2005, 3, 15)].tenors
    assert "3M" not in snapshots[date(2008, 12, 10)].tenors
    assert snapshots[date(2025, 10, 31)].tenors == TENORS


@pytest.mark.parametrize("as_of", CURVE_DATES, ids=str)
def test_forwards_continuous_across_nodes(snapshots, as_of: date) -> None:
    """Left and right limits of the instantaneous forward agree at every node (to 1e-6),
    while the discrete (piecewise flat) forwards jump there by far more."""
    curve = snapshots[as_of].curve
    jumps = [abs(_one_sided_forward(curve, t, +1) - _one_sided_forward(curve, t, -1)) for t in curve.node_times]
    assert max(jumps) < 1e-6, jumps
    _, fd = _discrete_forwards(curve)
    assert np.abs(np.diff(fd)).max() > 1e-4  # a stepwise forward curve would fail the check


def test_discount_factors_positive_and_decreasing_where_forwards_positive(data_dir: Path) -> None:
    """On ~70 real curves 1990-2025 and a 40-year grid (past the last node)."""
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    picks = sorted({*range(0, len(history.dates), 130), len(history.dates) - 1})
    grid = np.linspace(1e-3, 40.0, 4001)
    for i in picks:
        as_of = history.dates[i].astype(date)
        snap = load_snapshot(as_of, data_dir=data_dir)
        logdf = snap.curve.log_discount(grid)[0]
        df = np.exp(-logdf)
        assert np.all(df > 0) and np.all(np.isfinite(df)), as_of
        fwd = _central_forward(snap.curve, grid)
        positive = (fwd[:-1] > 0) & (fwd[1:] > 0)
        assert np.all(np.diff(df)[positive] < 0), as_of
    assert len(picks) > 60


@pytest.fixture(scope="module")
def scenario_inputs(data_dir: Path) -> tuple[MarketSnapshot, np.ndarray]:
    """2024-06-26 and its overlapping 3-day par-curve changes since 2022-10-19 (when 4M
    started, so every tenor is published): 419 scenarios."""
    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    first, last = history.index_of(date(2022, 10, 19)), history.index_of(date(2024, 6, 26))
    window = history.yields_pct[first : last + 1] / 100.0
    changes = window[3:] - window[:-3]
    assert changes.shape == (419, len(TENOR_MONTHS))
    assert not np.isnan(changes).any()
    assert 1e-4 < np.abs(changes).max() < 0.02  # up to 127 bp in 3 days (1M bill, 2023-05-04)
    return snap, changes


def test_vectorised_bootstrap_equals_one_by_one(scenario_inputs) -> None:
    """419 scenario curves in one call equal each curve bootstrapped alone (node values, 1e-12)."""
    snap, changes = scenario_inputs
    par = snap.par_yields + changes
    together = snap.curves_from_par(par)
    assert together.n_curves == len(par)
    for k in range(0, len(par), 25):
        alone = snap.curves_from_par(par[k])
        np.testing.assert_allclose(together.node_logdf[k], alone.node_logdf[0], rtol=0, atol=1e-12)


@given(start=st.integers(min_value=0, max_value=400), count=st.integers(min_value=2, max_value=40))
@settings(max_examples=8)
def test_vectorised_bootstrap_any_subset(scenario_inputs, start: int, count: int) -> None:
    """Batch composition does not matter: any slice equals the same curves alone."""
    snap, changes = scenario_inputs
    par = snap.par_yields + changes[start : start + count]
    together = snap.curves_from_par(par)
    for k in (0, len(par) - 1):
        alone = snap.curves_from_par(par[k])
        np.testing.assert_allclose(together.node_logdf[k], alone.node_logdf[0], rtol=0, atol=1e-12)


def test_bootstrap_rejects_bad_input_and_handles_bills_only() -> None:
    with pytest.raises(CalculationError):
        bootstrap(date(2024, 6, 26), ("3M", "1Y"), (3, 12), [0.05, np.nan])
    with pytest.raises(CalculationError):
        bootstrap(date(2024, 6, 26), ("3M", "1Y"), (3, 12), [0.05])
    bills = bootstrap(date(2024, 6, 26), ("1M", "3M"), (1, 3), [0.05, 0.052])
    days = np.array([(add_months(date(2024, 6, 26), m) - date(2024, 6, 26)).days for m in (1, 3)])
    np.testing.assert_allclose(bills.node_logdf[0], np.log1p(np.array([0.05, 0.052]) * days / 365.0), atol=1e-15)
    assert bills.log_discount([0.0])[0, 0] == 0.0
    assert year_fractions(date(2024, 1, 1), np.array(["2025-01-01"], dtype="datetime64[D]"))[0] == 366 / 365


# ---------------------------------------------------------------------------------------------
# independent check of the interpolation: Hagan-West by hand and QuantLib
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", CURVE_DATES, ids=str)
def test_node_forwards_are_hagan_west_weighted_averages(snapshots, as_of: date) -> None:
    """Our forwards at the nodes (one-sided limits) and QuantLib's equal the paper's f_i."""
    curve = snapshots[as_of].curve
    t, fd = _discrete_forwards(curve)
    expected = _hagan_west_node_forwards(t, fd)
    interp = _quantlib_interpolation(curve)
    ql_nodes = np.array([interp(float(x), True) for x in t])
    np.testing.assert_allclose(ql_nodes, expected, rtol=0, atol=1e-14)
    ours = [_one_sided_forward(curve, float(x), +1) for x in t[1:-1]]
    ours.append(_one_sided_forward(curve, float(t[-1]), -1))
    np.testing.assert_allclose(ours, expected[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("as_of", [*CURVE_DATES, FLAT_SEGMENT_DATE], ids=str)
def test_forwards_equal_quantlib_convex_monotone(snapshots, as_of: date) -> None:
    """Instantaneous forwards on a fine grid (0 to 35y, past the last node) vs QuantLib."""
    curve = snapshots[as_of].curve
    interp = _quantlib_interpolation(curve)
    grid = np.linspace(1e-3, 35.0, 3001)
    ql_fwd = np.array([interp(float(s), True) for s in grid])
    np.testing.assert_allclose(_central_forward(curve, grid), ql_fwd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("as_of", [*CURVE_DATES, FLAT_SEGMENT_DATE], ids=str)
def test_log_discount_equals_integral_of_quantlib_forwards(snapshots, as_of: date) -> None:
    """-ln DF(s) - (-ln DF(t_{i-1})) == integral of QuantLib's forwards over [t_{i-1}, s];
    at s = t_i that is the node discount factor (the integral reproduces the nodes)."""
    curve = snapshots[as_of].curve
    interp = _quantlib_interpolation(curve)
    t, fd = _discrete_forwards(curve)
    for a, b, fdi in zip(t[:-1], t[1:], fd, strict=True):
        points = [a + u * (b - a) for u in (0.13, 0.5, 0.87, 0.999)]
        ours = curve.log_discount(points)[0] - (curve.log_discount([a])[0, 0] if a > 0 else 0.0)
        ref = [_quad_log_discount(interp, a, s) for s in points]
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
        assert _quad_log_discount(interp, a, b) == pytest.approx(fdi * (b - a), abs=1e-12)
    beyond = float(t[-1]) + 7.5  # flat extrapolation of the last instantaneous forward
    tail = curve.log_discount([beyond])[0, 0] - curve.node_logdf[0, -1]
    assert tail == pytest.approx(interp(float(t[-1]), True) * 7.5, abs=1e-13)


def test_flat_par_segment_one_sided_forwards_match_quantlib(snapshots) -> None:
    """On the degenerate flat-segment day the one-sided forward limits at every node equal
    QuantLib's just off the node (1e-9 y), jumps of 15-18 bp included; DFs stay continuous."""
    curve = snapshots[FLAT_SEGMENT_DATE].curve
    interp = _quantlib_interpolation(curve)
    jumps = []
    for t in curve.node_times[:-1]:
        left, right = _one_sided_forward(curve, t, -1), _one_sided_forward(curve, t, +1)
        assert left == pytest.approx(interp(float(t) - 1e-9, True), abs=1e-6)
        assert right == pytest.approx(interp(float(t) + 1e-9, True), abs=1e-6)
        jumps.append(right - left)
    tenors = dict(zip(curve.tenors, jumps, strict=False))
    assert tenors["2Y"] == pytest.approx(-0.00155, abs=1e-5)
    assert tenors["5Y"] == pytest.approx(0.00183, abs=1e-5)
    assert max(abs(tenors[k]) for k in ("3M", "6M", "1Y", "3Y", "7Y", "10Y")) < 1e-6
    around = curve.log_discount(np.array([2.0027397260273974 - 1e-12, 2.0027397260273974 + 1e-12]))[0]
    assert abs(around[1] - around[0]) < 1e-12


def _region(g0: float, g1: float) -> int:
    """Hagan & West (2006) section 4, the four regions of the (g0, g1) plane."""
    if (g0 > 0 and -2 * g0 <= g1 <= -0.5 * g0) or (g0 < 0 and -0.5 * g0 <= g1 <= -2 * g0):
        return 1
    if (g0 < 0 and g1 > -2 * g0) or (g0 > 0 and g1 < -2 * g0):
        return 2
    if (g0 > 0 and -0.5 * g0 < g1 < 0) or (g0 < 0 and 0 < g1 < -0.5 * g0):
        return 3
    return 4


forward_strategy = st.lists(st.floats(min_value=-0.02, max_value=0.15), min_size=2, max_size=9, unique=True)
spacing_strategy = st.lists(st.floats(min_value=0.02, max_value=10.0), min_size=9, max_size=9)


@given(forward_strategy, spacing_strategy)
@settings(max_examples=40)
def test_synthetic_curves_match_quantlib(fd_list: list[float], spacing: list[float]) -> None:
    """Arbitrary node spacing and discrete forwards (negative ones included): every region.

    Excluded: intervals where exactly one of g0, g1 is (nearly) zero, the degenerate
    boundary where the method's forward jumps at a node and QuantLib divides by eta = 0
    (NaN); the real-data instance of it is tested on ``FLAT_SEGMENT_DATE`` above.
    """
    fd = np.array(fd_list)
    t = np.concatenate([[0.0], np.cumsum(spacing[: len(fd)])])
    f = _hagan_west_node_forwards(t, fd)
    g0, g1 = f[:-1] - fd, f[1:] - fd
    assume(bool(np.all(np.minimum(np.abs(g0), np.abs(g1)) > 1e-9)))
    logdf = np.cumsum(fd * np.diff(t))
    curve = ZeroCurves(date(2024, 6, 26), tuple(f"N{k}" for k in range(len(fd))), t[1:], logdf[None, :])
    interp = _quantlib_interpolation(curve)
    np.testing.assert_allclose([interp(float(x), True) for x in t], f, rtol=0, atol=1e-13)
    for i, (a, b) in enumerate(zip(t[:-1], t[1:], strict=True)):
        s = a + 0.61 * (b - a)
        ours = curve.log_discount([s])[0, 0] - (logdf[i - 1] if i > 0 else 0.0)
        assert ours == pytest.approx(_quad_log_discount(interp, a, s), abs=1e-12)


def test_synthetic_cases_cover_all_four_regions() -> None:
    """Hand-picked forwards that put intervals in each of Hagan-West's four regions."""
    t = np.arange(9.0)
    fd = np.array([0.01, 0.03, 0.031, 0.02, 0.05, 0.049, -0.01, 0.0])
    f = _hagan_west_node_forwards(t, fd)
    regions = {_region(f[i] - fd[i], f[i + 1] - fd[i]) for i in range(len(fd))}
    assert regions == {1, 2, 3, 4}
    logdf = np.cumsum(fd * np.diff(t))
    curve = ZeroCurves(date(2024, 6, 26), tuple(f"N{k}" for k in range(len(fd))), t[1:], logdf[None, :])
    interp = _quantlib_interpolation(curve)
    grid = np.linspace(0.01, 7.5, 751)
    np.testing.assert_allclose(_central_forward(curve, grid), [interp(float(s), True) for s in grid], atol=1e-8)
    for s in (0.4, 2.5, 3.3, 4.7, 5.5, 6.9):
        a = float(np.floor(s))
        ours = curve.log_discount([s])[0, 0] - (logdf[int(a) - 1] if a > 0 else 0.0)
        assert ours == pytest.approx(_quad_log_discount(interp, a, s), abs=1e-13)
