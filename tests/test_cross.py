"""The cross-margin reduction (methodology README section 3), worked by hand.

``r_F = max(0, 1 - F_comb / (F_sa + C_sa))``, ``r_C = max(0, 1 - C_comb / (F_sa + C_sa))``,
applied ``r = min(r_F, r_C, cap)``; no reduction for an account with one side only or when a
combined figure cannot be computed.  Figures in each docstring are the worksheet.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmargin.margin.cross import reduction_factors


def one(f_sa: float, c_sa: float, f_comb: float, c_comb: float, cap: float = 0.8, computable: bool = True):  # type: ignore[no-untyped-def]
    red = reduction_factors(
        np.array([f_sa]), np.array([c_sa]), np.array([f_comb]), np.array([c_comb]),
        cap=cap, computable=np.array([computable]),
    )
    return float(red.ficc_factor[0]), float(red.cme_factor[0]), float(red.applied[0])


def test_formula_by_hand() -> None:
    """F_sa 100, C_sa 60 (stand-alone total 160); F_comb 40, C_comb 24.
    r_F = 1 - 40/160 = 0.75; r_C = 1 - 24/160 = 0.85; r = min(0.75, 0.85, 0.80) = 0.75.
    Requirements after: FICC 100 x 0.25 = 25, CME 60 x 0.25 = 15; saving 0.75 x 160 = 120."""
    r_f, r_c, r = one(100.0, 60.0, 40.0, 24.0)
    assert (r_f, r_c, r) == pytest.approx((0.75, 0.85, 0.75))
    assert 100.0 * (1 - r) == pytest.approx(25.0)
    assert 60.0 * (1 - r) == pytest.approx(15.0)


def test_the_more_conservative_house_sets_the_factor() -> None:
    """Swap the combined figures: F_comb 24, C_comb 40 -> r_F 0.85, r_C 0.75: CME's view (the
    larger combined requirement) now binds, r = 0.75 again."""
    r_f, r_c, r = one(100.0, 60.0, 24.0, 40.0)
    assert (r_f, r_c, r) == pytest.approx((0.85, 0.75, 0.75))


def test_cap_at_80_percent_and_the_cftc_sample() -> None:
    """The CFTC order's sample portfolio: $343.24m stand-alone at both houses -> about $68.65m
    cross-margined, a cut of 1 - 68.65/343.24 = 79.99%, i.e. 80% to the cent:
    343.24 x 0.20 = 68.648 -> $68.65m.

    A hedged book with F_sa 200.00, C_sa 143.24 ($m) whose combined figures (10 and 5) would
    allow 97.1% and 98.5% is capped: r = 0.80, and the requirements land at exactly 20% of
    stand-alone: 40.00 + 28.648 = 68.648.
    """
    assert round(343.24 * 0.2, 2) == 68.65
    assert 1 - 68.65 / 343.24 == pytest.approx(0.80, abs=1e-4)
    r_f, r_c, r = one(200.0, 143.24, 10.0, 5.0)
    assert r_f == pytest.approx(1 - 10 / 343.24)
    assert r_c == pytest.approx(1 - 5 / 343.24)
    assert r == 0.8
    after = 200.0 * (1 - r) + 143.24 * (1 - r)
    assert after == pytest.approx(68.648)
    assert after == pytest.approx(0.2 * 343.24)


def test_cap_is_a_parameter() -> None:
    """Same book, cap 0.5: r = 0.5 -> half of 343.24 = 171.62; cap 1.0: r = min(r_F, r_C) =
    1 - 10/343.24."""
    assert one(200.0, 143.24, 10.0, 5.0, cap=0.5)[2] == 0.5
    assert one(200.0, 143.24, 10.0, 5.0, cap=1.0)[2] == pytest.approx(1 - 10 / 343.24)


def test_never_negative() -> None:
    """A combined requirement above the stand-alone total (a 'hedge' that adds risk): F_comb
    200 > 160 would give r_F = 1 - 200/160 = -0.25; it is floored at 0, so is r."""
    r_f, r_c, r = one(100.0, 60.0, 200.0, 24.0)
    assert (r_f, r_c, r) == pytest.approx((0.0, 0.85, 0.0))
    assert r >= 0.0


@pytest.mark.parametrize(("f_sa", "c_sa"), [(100.0, 0.0), (0.0, 60.0), (0.0, 0.0)])
def test_one_sided_accounts_get_nothing(f_sa: float, c_sa: float) -> None:
    """Positions at one clearinghouse only: nothing to offset, r = 0 whatever the combined
    figures say (here a combined figure of 1 would otherwise allow 99%)."""
    assert one(f_sa, c_sa, 1.0, 1.0) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("f_comb", "c_comb", "computable"),
    [(np.nan, 24.0, True), (40.0, np.nan, True), (np.inf, 24.0, True), (40.0, 24.0, False)],
)
def test_fallback_when_a_combined_figure_is_missing(f_comb: float, c_comb: float, computable: bool) -> None:
    """Either combined figure NaN or infinite, or the account flagged uncomputable: no reduction
    at all (r = 0) -- never the other house's factor alone, never a NaN."""
    assert one(100.0, 60.0, f_comb, c_comb, computable=computable) == (0.0, 0.0, 0.0)


def test_vectorised_accounts_are_independent() -> None:
    """The hand cases above in one call: 0.75, capped 0.80, floored 0, one-sided 0, NaN 0."""
    red = reduction_factors(
        np.array([100.0, 200.0, 100.0, 100.0, 100.0]),
        np.array([60.0, 143.24, 60.0, 0.0, 60.0]),
        np.array([40.0, 10.0, 200.0, 1.0, np.nan]),
        np.array([24.0, 5.0, 24.0, 1.0, 24.0]),
        cap=0.8,
    )
    assert red.applied.tolist() == pytest.approx([0.75, 0.8, 0.0, 0.0, 0.0])
    assert np.isfinite(red.ficc_factor).all() and np.isfinite(red.cme_factor).all()


money = st.one_of(st.just(0.0), st.floats(1e-2, 1e9))  # dollars: zero or at least a cent


@given(money, money, money, money, st.floats(0.0, 1.0))
def test_applied_factor_properties(f_sa: float, c_sa: float, f_comb: float, c_comb: float, cap: float) -> None:
    """For any figures: r = min(r_F, r_C, cap) with r_F, r_C recomputed here from the formula
    (0 for a one-sided account), 0 <= r <= cap, and the requirements after never exceed the
    requirements before."""
    r_f, r_c, r = one(f_sa, c_sa, f_comb, c_comb, cap=cap)
    total = f_sa + c_sa
    if f_sa > 0 and c_sa > 0:
        exp_f, exp_c = max(0.0, 1 - f_comb / total), max(0.0, 1 - c_comb / total)
    else:
        exp_f = exp_c = 0.0
    assert r_f == pytest.approx(exp_f, abs=1e-12)
    assert r_c == pytest.approx(exp_c, abs=1e-12)
    assert r == pytest.approx(min(exp_f, exp_c, cap), abs=1e-12)
    assert 0.0 <= r <= cap
    assert f_sa * (1 - r) + c_sa * (1 - r) <= total + 1e-9
