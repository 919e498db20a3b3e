"""The anti-procyclicality VaR (``weighted_var``, ``model_var``) on hand-worked books (issue 17).

Rule: EMIR RTS 153/2013 (Commission Delegated Regulation (EU) No 153/2013) article 28(1):
(b) stressed scenarios weighted at least 25% -- here the VaR is the larger of the look-back
VaR and the weighted empirical quantile, look-back scenarios weighted ``(1 - w) / n_base``
each and stressed ones ``w / n_stress``; (c) a floor at the VaR of the unscaled look-back;
docs/methodology.md section 4 ("Anti-procyclicality tools").  The weighted quantile is the
loss of the first scenario, worst first, at which the cumulative weight reaches
``1 - confidence`` (zero-weight scenarios skipped).  Every expected figure below is worked
by hand in the comments; the books are synthetic (small enough to work by hand).

At 90% confidence the target weight is 0.10 and, with 20 look-back scenarios, the look-back
VaR is the 2nd worst loss (``k = ceil(0.1 x 20) = 2``).
"""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.margin.var import model_var, weighted_var

BASE_20 = -np.arange(1.0, 21.0)  # look-back losses 1..20: VaR at 90% = 19


def book(base: np.ndarray, stress: list[float]) -> tuple[np.ndarray, np.ndarray]:
    pnl = np.concatenate([base, -np.asarray(stress, dtype=float)])[None, :]
    is_stress = np.r_[np.zeros(len(base), bool), np.ones(len(stress), bool)]
    return pnl, is_stress


def test_stress_weight_reaches_past_the_worst_lookback_loss() -> None:
    """w = 0.2: look-back weight 0.8/20 = 0.04 each, stressed 0.2/4 = 0.05 each.
    Worst first: 20 (0.04), 19.5 stressed (0.09), 19.4 stressed (0.14 >= 0.10): weighted VaR
    19.4 > look-back VaR 19, so 19.4 and the stress flag set.  A look-back weight of 0.05 or more
    would stop at 19.5; the stressed scenarios taken as the look-back would give 19.5."""
    pnl, is_stress = book(BASE_20, [19.5, 19.4, 3.0, 2.0])
    var, used = model_var(pnl, is_stress, None, 0.9, stress_weight=0.2)
    assert var[0] == 19.4 and used[0]
    assert weighted_var(pnl, np.r_[np.full(20, 0.04), np.full(4, 0.05)], 0.9)[0] == 19.4


def test_stress_weight_where_one_stressed_scenario_is_not_enough() -> None:
    """Look-back: 30, 25 and 18..1 (VaR at 90% = 25).  w = 0.3: look-back 0.7/20 = 0.035
    each, stressed 0.3/4 = 0.075 each.  Worst first: 35 stressed (0.075), 30 (0.110 >= 0.10):
    VaR 30 > 25.  A look-back weight under 0.025 (e.g. w/20 = 0.015) would go on to 26."""
    base = -np.r_[30.0, 25.0, np.arange(18.0, 0.0, -1.0)]
    pnl, is_stress = book(base, [35.0, 26.0, 2.0, 1.0])
    var, used = model_var(pnl, is_stress, None, 0.9, stress_weight=0.3)
    assert var[0] == 30.0 and used[0]


def test_the_weighted_quantile_never_lowers_the_lookback_var() -> None:
    """Mild stressed scenarios (losses 1): weighted quantile with w = 0.2 is 20 (0.04), 19 (0.08),
    18 (0.12): 18 < look-back VaR 19, so VaR 19 and the stress flag off."""
    pnl, is_stress = book(BASE_20, [1.0, 1.0, 1.0, 1.0])
    var, used = model_var(pnl, is_stress, None, 0.9, stress_weight=0.2)
    assert var[0] == 19.0 and not used[0]


def test_a_tie_with_the_lookback_var_is_not_stress() -> None:
    """Worst first: 20 (0.04), 19.5 stressed (0.09), 19 (0.13): weighted VaR 19 == look-back 19:
    stress did not raise the VaR, so the flag is off."""
    pnl, is_stress = book(BASE_20, [19.5, 3.0, 2.0, 1.0])
    var, used = model_var(pnl, is_stress, None, 0.9, stress_weight=0.2)
    assert var[0] == 19.0 and not used[0]


def test_floor_that_does_not_bind_leaves_the_model_var() -> None:
    """Art. 28(1)(c): the floor only raises.  Main set: the 20 look-back losses (VaR 19); floor
    set: 10 unscaled scenarios, losses 0.5..5 (VaR at 90%, k = 1: 5).  max(19, 5) = 19."""
    floor = -np.linspace(0.5, 5.0, 10)
    pnl = np.concatenate([BASE_20, floor])[None, :]
    is_floor = np.r_[np.zeros(20, bool), np.ones(10, bool)]
    var, _ = model_var(pnl, np.zeros(30, bool), is_floor, 0.9)
    assert var[0] == 19.0
    # and when it binds: floor losses up to 50 -> 50
    pnl[0, 20:] *= 10.0
    assert model_var(pnl, np.zeros(30, bool), is_floor, 0.9)[0][0] == 50.0


def test_zero_weight_scenarios_are_skipped_in_a_single_row() -> None:
    """One account, 4 scenarios weighted (0.5, 0, 0.5, 0): the worst loss (5) has no weight,
    so at 99% the VaR is the next weighted one, 3."""
    pnl = np.array([[-1.0, -5.0, -3.0, -2.0]])
    assert weighted_var(pnl, np.array([0.5, 0.0, 0.5, 0.0]), 0.99)[0] == 3.0


def test_zero_weight_scenarios_among_the_worst_on_the_partial_sort() -> None:
    """10 scenarios, the two worst (50, 40) weighted 0, the other 8 weighted 1/8: at 90% the
    VaR is the worst weighted loss, 7.  Only the 4 worst columns are sorted (ceil(0.1/0.125) + 1
    + 2 zero weights), and the two zero-weight ones must be counted in that 4."""
    pnl = -np.array([[50.0, 40.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5]])
    w = np.r_[0.0, 0.0, np.full(8, 1 / 8)]
    assert weighted_var(pnl, w, 0.9)[0] == 7.0
    assert weighted_var(pnl[:, ::-1], w[::-1], 0.9)[0] == 7.0


def test_three_equal_weights_sort_all_but_one_column() -> None:
    """3 scenarios weighted 1/3: at 99% the worst loss alone (1/3 >= 0.01) is the VaR, 7;
    the partial sort covers 2 of the 3 columns (ceil(0.01 x 3) + 1)."""
    pnl = -np.array([[1.0, 7.0, 3.0], [4.0, 2.0, 9.0]])
    np.testing.assert_array_equal(weighted_var(pnl, np.full(3, 1 / 3), 0.99), [7.0, 9.0])


@pytest.mark.parametrize(("row", "expected"), [
    ([1.0, 2.0, 3.0, 4.0], 0.0),  # gains everywhere: no VaR margin
    ([-5.0, 1.0, 2.0, 3.0], 0.0),  # worst (5) weighs 0.25 < 0.5: the quantile is a gain of 1 -> 0
])
def test_weighted_var_is_floored_at_zero(row: list[float], expected: float) -> None:
    """Equal weights 0.25, 50% confidence (target 0.5): the quantile is the 2nd worst P&L."""
    assert weighted_var(np.array([row]), np.full(4, 0.25), 0.5)[0] == expected


def test_cumulative_weight_short_of_the_target_by_rounding() -> None:
    """90% confidence: the target is 0.1 - 1e-12 = 0.099999999999.  The 9 worst of 20 scenarios
    weigh w = 0.011111111110999999 each (the other 11 share the rest, 0.0818... each).
    In floating point 0.099999999999 / w is exactly 9, yet the running sum of 9 w is
    0.09999999999899997, just below the target.  So the weight reaches 0.1 - 1e-12 only at the
    10th worst scenario, and the VaR is its loss, 11, as an explicit sort in plain Python shows.
    Sorting only 9 columns (the bound without its + 1) would give the worst loss, 20."""
    w = 0.011111111110999999
    losses = np.array([13.0, 20.0, 5.0, 11.0, 17.0, 1.0, 15.0, 9.0, 19.0, 3.0,
                       12.0, 7.0, 18.0, 2.0, 14.0, 10.0, 16.0, 4.0, 6.0, 8.0])
    weights = np.where(losses >= 12.0, w, (1.0 - 9 * w) / 11)
    target = 0.1 - 1e-12
    cum, expected = 0.0, None
    for loss, weight in sorted(zip(losses.tolist(), weights.tolist(), strict=True), reverse=True):
        cum += weight
        if cum >= target:
            expected = loss
            break
    assert expected == 11.0
    assert weighted_var(-losses[None, :], weights, 0.9)[0] == 11.0
