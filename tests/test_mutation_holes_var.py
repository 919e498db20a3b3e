"""VaR edge cases the mutation run of ``margin/var.py`` left unguarded (issue 17).

References: explicit ``sorted()`` in plain Python, and the documented convention (k-th largest
loss, ``k = ceil((1 - a) S)`` after rounding the product to 9 decimals; methodology section 5).
"""

from __future__ import annotations

import math

import numpy as np

from xmargin.margin.var import tail_rank, var_with_stress, worst_scenarios


def var_by_sort(row: list[float], confidence: float) -> float:
    k = max(1, math.ceil(round((1 - confidence) * len(row), 9)))
    return max(0.0, -sorted(row)[k - 1])


def test_realistic_scenario_counts_against_an_explicit_sort() -> None:
    """200 accounts x 2,748 scenarios (the FICC set: 2,498 look-back + 250 trailing stressed),
    random P&L with fat-tailed stress of varying size (it raises some VaRs, not others): every VaR equals ``max(sort of look-back, sort of
    all)``.  Small hand cases cannot show a partial sort that stops one place short."""
    rng = np.random.default_rng(17)
    s_base, s_stress = 2498, 250
    pnl = np.hstack([rng.standard_normal((200, s_base)) * 1e5, rng.standard_t(3, (200, s_stress)) * rng.uniform(0.1, 2.0, (200, 1)) * 1e5])
    stress = np.r_[np.zeros(s_base, bool), np.ones(s_stress, bool)]
    var, used = var_with_stress(pnl, stress, 0.99)
    for i in range(200):
        base, full = var_by_sort(pnl[i, :s_base].tolist(), 0.99), var_by_sort(pnl[i].tolist(), 0.99)
        assert var[i] == max(base, full)
        assert used[i] == (full > base)
    assert used.any() and not used.all()


def test_a_book_that_loses_the_same_in_every_scenario() -> None:
    """A P&L of -1 dollar in every scenario (a sure loss) is a position: VaR 1, not an empty book."""
    pnl = np.full((2, 300), -1.0)
    pnl[1] = 0.0
    var, _ = var_with_stress(pnl, np.zeros(300, bool), 0.99)
    assert var.tolist() == [1.0, 0.0]


def test_tail_rank_rounds_to_nine_decimals() -> None:
    """``(1 - a) S = 10.000000003``: a real excess over 10 at the 9th decimal, so k = 11; only
    products within 5e-10 of a whole number (floating-point noise such as 10.000000000000009)
    round down to it."""
    assert tail_rank(1000, 1 - 0.010000000003) == 11
    assert tail_rank(1000, 0.99) == 10


def test_worst_scenarios_asking_for_all_or_more() -> None:
    """Asking for as many scenarios as there are, or more, gives all of them, worst first."""
    row = np.array([3.0, -5.0, 1.0, -2.0])
    assert worst_scenarios(row, 4).tolist() == [1, 3, 2, 0]
    assert worst_scenarios(row, 10).tolist() == [1, 3, 2, 0]


def test_worst_scenarios_of_a_large_random_row() -> None:
    """2,748 random P&Ls: the 28 worst by a full sort, for counts 1, 2, 28 and 100."""
    row = np.random.default_rng(3).standard_normal(2748)
    order = sorted(range(len(row)), key=lambda i: row[i])
    for count in (1, 2, 28, 100):
        assert worst_scenarios(row, count).tolist() == order[:count]


def test_tail_rank_is_at_least_one() -> None:
    """A tail count that rounds to 0 (confidence a hair below 1) still takes the worst loss."""
    assert tail_rank(100, 1 - 1e-13) == 1
