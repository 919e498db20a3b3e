"""The compiled monotone convex loop (:mod:`xmargin.market.curve_kernel`) against the array
code of :mod:`xmargin.market.curve` and against QuantLib.

Independent references: QuantLib's ``ConvexMonotoneInterpolation`` (basic Hagan-West:
quadraticity 0, monotonicity 1, no positivity fix; see ``tests/test_curve.py`` for why it is
the same method), whose forwards are integrated by adaptive quadrature; and the array code,
itself checked against QuantLib in ``tests/test_curve.py``.  The region test drives every
branch of Hagan and West's four-region correction (paper, section 4) with chosen
``(g0, g1)`` pairs.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import QuantLib as ql
from test_curve import (
    _quad_log_discount as _quad,  # QuantLib's forwards integrated (one helper, two files)
)

from xmargin.market import curve_kernel
from xmargin.market.curve import ZeroCurves, _g_coefficients, _log_discount, _log_discount_array
from xmargin.market.snapshot import MarketSnapshot, load_snapshot

DATES = [date(1990, 1, 2), date(1990, 3, 1), date(2008, 12, 10), date(2021, 8, 3), date(2024, 6, 26)]


@pytest.fixture(scope="module")
def snapshots(data_dir: Path) -> dict[date, MarketSnapshot]:
    return {d: load_snapshot(d, data_dir=data_dir) for d in DATES}


@pytest.fixture(scope="module")
def kernel() -> None:
    if not curve_kernel.enable():
        pytest.skip("numba is not installed")
    curve_kernel.disable()


def _times(rng: np.random.Generator, curve: ZeroCurves) -> np.ndarray:
    """Random times, every node, 0, a negative time and points beyond the last node."""
    return np.concatenate([rng.uniform(-0.5, 40.0, 400), curve.node_times, [0.0, -1.0, curve.node_times[-1] + 3.0]])


@pytest.mark.parametrize("as_of", DATES, ids=str)
def test_compiled_equals_array_code_on_real_and_scenario_curves(kernel, snapshots, as_of: date) -> None:  # type: ignore[no-untyped-def]
    snap = snapshots[as_of]
    rng = np.random.default_rng(as_of.toordinal())
    par = snap.par_yields + rng.normal(0.0, 0.004, (300, len(snap.par_yields)))  # +-40 bp scenario curves
    curves = snap.curves_from_par(np.vstack([snap.par_yields, par]))
    t = _times(rng, curves)
    ref = _log_discount_array(curves.node_times, curves.node_logdf, t)
    with curve_kernel.compiled():
        got = _log_discount(curves.node_times, curves.node_logdf, t)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-15)
    assert not curve_kernel.ENABLED  # the block restores the array code


def test_every_region_of_the_correction(kernel) -> None:  # type: ignore[no-untyped-def]
    """(g0, g1) in regions (i)-(iv), on their boundaries and at zero: the seven coefficients of
    the compiled code equal the array code's."""
    curve_kernel.enable()
    try:
        pairs = [(1.0, -1.0), (-1.0, 1.0), (1.0, -0.5), (1.0, -2.0),  # (i) and its edges
                 (-1.0, 3.0), (1.0, -3.0),  # (ii)
                 (1.0, -0.2), (-1.0, 0.3),  # (iii)
                 (1.0, 1.0), (-1.0, -2.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0),  # (iv)
                 (0.0, 0.0), (2e-14, -1e-14), (1.0, -1.9999999999)]
        g0 = np.array([p[0] for p in pairs])
        g1 = np.array([p[1] for p in pairs])
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = np.column_stack(_g_coefficients(g0, g1))
        out = np.empty(7)
        for k, (a, b) in enumerate(pairs):
            curve_kernel._coefficients(a, b, out)
            np.testing.assert_allclose(out, ref[k], rtol=1e-15, atol=0, err_msg=f"g0={a}, g1={b}")
    finally:
        curve_kernel.disable()


@pytest.mark.parametrize("as_of", [date(2008, 12, 10), date(2024, 6, 26)], ids=str)
def test_compiled_equals_integral_of_quantlib_forwards(kernel, snapshots, as_of: date) -> None:  # type: ignore[no-untyped-def]
    """``-ln DF(s) - (-ln DF(t_{i-1}))`` from the compiled loop equals the integral of QuantLib's
    convex monotone forwards over ``[t_{i-1}, s]``."""
    curve = snapshots[as_of].curve
    t = np.concatenate([[0.0], curve.node_times])
    fd = np.diff(np.concatenate([[0.0], curve.node_logdf[0]])) / np.diff(t)
    interp = ql.ConvexMonotoneInterpolation(ql.Array(t.tolist()), ql.Array([0.0, *fd.tolist()]), 0.0, 1.0, False)
    with curve_kernel.compiled():
        for a, b in zip(t[:-1], t[1:], strict=True):
            points = [a + u * (b - a) for u in (0.13, 0.5, 0.87, 0.999)]
            ours = curve.log_discount(points)[0] - (curve.log_discount([a])[0, 0] if a > 0 else 0.0)
            np.testing.assert_allclose(ours, [_quad(interp, a, s) for s in points], rtol=0, atol=1e-12)
