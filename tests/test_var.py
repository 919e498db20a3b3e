"""Historical-simulation VaR: the quantile convention, the stressed overlay and zero rows.

Every expected figure is either worked by hand in the docstring of its test or computed in
the test by an explicit ``sorted()`` of the scenario P&L, with the tail rank taken from exact
rational arithmetic (``fractions.Fraction``), never from :func:`xmargin.margin.var.tail_rank`.
Convention (module docstring of :mod:`xmargin.margin.var`): with ``S`` scenarios and
confidence ``a``, VaR is the ``k``-th largest loss, ``k = ceil((1 - a) S)``, floored at zero.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmargin.margin.var import (
    historical_var,
    tail_rank,
    var_scenario,
    var_with_stress,
    worst_scenarios,
)


def exact_rank(n_scenarios: int, confidence: float) -> int:
    """``ceil((1 - a) S)`` in exact decimal arithmetic (``a`` as written, e.g. ``0.99``)."""
    return max(1, math.ceil((1 - Fraction(str(confidence))) * n_scenarios))


def var_by_sort(pnl: list[float], confidence: float) -> float:
    """The ``k``-th largest loss of one P&L list by an explicit sort, floored at zero."""
    k = exact_rank(len(pnl), confidence)
    return max(0.0, -sorted(pnl)[k - 1])


# --- the quantile convention ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("n", "confidence", "k"),
    [
        (2500, 0.99, 25),  # 1% of 2,500: the 25th worst loss
        (2748, 0.99, 28),  # 27.48 rounds up
        (2498, 0.99, 25),  # 24.98 rounds up
        (1000, 0.99, 10),  # (1 - 0.99) * 1000 is 10.000000000000009 in floats: must stay 10
        (100, 0.99, 1),
        (99, 0.99, 1),  # 0.99 rounds up to 1
        (250, 0.99, 3),  # 2.5 rounds up to 3
        (10, 0.8, 2),
        (15, 0.8, 3),
        (20, 0.95, 1),
        (50, 0.975, 2),  # 1.25 -> 2
    ],
)
def test_tail_rank_is_the_ceiling_of_the_tail_count(n: int, confidence: float, k: int) -> None:
    """``k = ceil((1 - a) S)`` worked by hand for each row; the 1,000-scenario case guards the
    floating-point trap where ``(1 - 0.99) * 1000`` exceeds 10 by 9e-15 and a naive ceiling
    gives 11."""
    assert tail_rank(n, confidence) == k
    assert exact_rank(n, confidence) == k


def test_small_book_var_by_hand() -> None:
    """Two instruments, ten scenarios, positions (+2, -1) at 80% confidence.

    Instrument P&L per unit (rows) and the account P&L ``2 * row0 - row1``::

        row0 =  [ 2, -1,  1, -3,  0,  1,  0,  2, -1,  3]
        row1 =  [-1,  1,  0,  1,  0,  1,  1,  0,  0,  0]
        book =  [ 5, -3,  2, -7,  0,  1, -1,  4, -2,  6]

    Sorted: -7, -3, -2, -1, 0, 1, 2, 4, 5, 6; ``k = ceil(0.2 * 10) = 2``: VaR = 3 (the
    second-worst loss, not the worst 7 and not an interpolation between 3 and 7).
    """
    inst = np.array([[2, -1, 1, -3, 0, 1, 0, 2, -1, 3], [-1, 1, 0, 1, 0, 1, 1, 0, 0, 0]], dtype=float)
    positions = np.array([2.0, -1.0])
    book = positions @ inst
    assert book.tolist() == [5, -3, 2, -7, 0, 1, -1, 4, -2, 6]
    assert historical_var(book[None, :], 0.8).tolist() == [3.0]
    # 90%: k = ceil(0.1 * 10) = 1, the worst loss
    assert historical_var(book[None, :], 0.9).tolist() == [7.0]
    # 60%: k = ceil(0.4 * 10) = 4, the fourth-worst P&L is -1
    assert historical_var(book[None, :], 0.6).tolist() == [1.0]
    # 50%: k = 5, the fifth-worst P&L is 0 -> VaR 0
    assert historical_var(book[None, :], 0.5).tolist() == [0.0]


def test_var_is_floored_at_zero_for_a_book_that_gains_in_the_tail() -> None:
    """Every scenario a gain: the 'k-th largest loss' is a gain of 1, the VaR is 0, not -1."""
    pnl = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert historical_var(pnl, 0.8).tolist() == [0.0]


def test_var_rows_are_independent() -> None:
    """Each row of an ``A x S`` array is its own account: rows from the hand example above and
    its mirror image (short the book: losses and gains swap).

    Mirror P&L sorted: -6, -5, -4, -2, -1, 0, 1, 2, 3, 7; the 2nd worst is -5 -> VaR 5.
    """
    book = np.array([5, -3, 2, -7, 0, 1, -1, 4, -2, 6], dtype=float)
    assert historical_var(np.vstack([book, -book, book]), 0.8).tolist() == [3.0, 5.0, 3.0]


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.975, 0.99]),
)
def test_historical_var_equals_an_explicit_sort(pnl: list[float], confidence: float) -> None:
    """Any P&L vector: the VaR is the ``k``-th smallest value of ``sorted(pnl)``, negated."""
    assert historical_var(np.array([pnl]), confidence)[0] == var_by_sort(pnl, confidence)


# --- the stressed scenarios -------------------------------------------------------------------

BASE = [5.0, -3.0, 2.0, -7.0, 0.0, 1.0, -1.0, 4.0, -2.0, 6.0]  # VaR 3 at 80% (hand example)


def _with_stress(stress: list[float]) -> tuple[np.ndarray, np.ndarray]:
    pnl = np.array([BASE + stress])
    mask = np.array([False] * len(BASE) + [True] * len(stress))
    return pnl, mask


def test_stress_that_raises_the_var_is_used() -> None:
    """Base: ten scenarios, ``k = 2``, VaR 3.  Five stressed scenarios ``[-20, -15, 3, 4, 5]``:
    fifteen in all, ``k = ceil(0.2 * 15) = 3``; sorted -20, -15, -7, ... -> VaR 7 > 3: used."""
    pnl, mask = _with_stress([-20.0, -15.0, 3.0, 4.0, 5.0])
    var, used = var_with_stress(pnl, mask, 0.8)
    assert var.tolist() == [7.0]
    assert used.tolist() == [True]


def test_stress_that_would_lower_the_var_is_ignored() -> None:
    """Five stressed gains ``[1, 1, 1, 1, 1]``: fifteen scenarios, ``k = 3``, sorted -7, -3,
    -2, ... -> 2 < 3.  The stress would *lower* the margin, so the base VaR 3 stands."""
    pnl, mask = _with_stress([1.0] * 5)
    var, used = var_with_stress(pnl, mask, 0.8)
    assert var.tolist() == [3.0]
    assert used.tolist() == [False]


def test_stress_that_leaves_the_var_unchanged_is_not_flagged() -> None:
    """Stressed ``[-4, 10, 10, 10, 10]``: sorted -7, -4, -3 -> k = 3 gives 3 = base: not used."""
    pnl, mask = _with_stress([-4.0, 10.0, 10.0, 10.0, 10.0])
    var, used = var_with_stress(pnl, mask, 0.8)
    assert var.tolist() == [3.0]
    assert used.tolist() == [False]


def test_stress_columns_need_not_be_trailing() -> None:
    """The same fifteen scenarios in a shuffled column order (the general code path) give the
    same figures as the trailing layout: 7 with the raising stress, 3 with the lowering one."""
    rng = np.random.default_rng(7)
    for stress, expected, flag in (([-20.0, -15.0, 3.0, 4.0, 5.0], 7.0, True), ([1.0] * 5, 3.0, False)):
        pnl, mask = _with_stress(stress)
        order = rng.permutation(pnl.shape[1])
        assert not mask[order][-5:].all()  # really not trailing
        var, used = var_with_stress(pnl[:, order], mask[order], 0.8)
        assert var.tolist() == [expected]
        assert used.tolist() == [flag]


def test_no_stress_columns_is_the_plain_var() -> None:
    var, used = var_with_stress(np.array([BASE]), np.zeros(10, dtype=bool), 0.8)
    assert var.tolist() == [3.0]
    assert used.tolist() == [False]


def test_more_stress_than_base_scenarios() -> None:
    """Three base scenarios and 300 stressed at 99%: ``k_base = 1``, ``k_full = ceil(3.03) = 4``
    (more than the base set holds).  Base ``[-1, 0, 2]`` -> 1.  Stressed: 300 losses of 5 ->
    the 4th worst of all is -5 -> VaR 5, used."""
    pnl = np.array([[-1.0, 0.0, 2.0] + [-5.0] * 300])
    mask = np.array([False] * 3 + [True] * 300)
    var, used = var_with_stress(pnl, mask, 0.99)
    assert var.tolist() == [5.0]
    assert used.tolist() == [True]


@given(
    st.integers(1, 4),
    st.integers(1, 40),
    st.integers(0, 40),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_var_with_stress_equals_explicit_sorts(
    n_rows: int, n_base: int, n_stress: int, confidence: float, shuffle: bool, seed: int
) -> None:
    """Random books: ``max(VaR(base), VaR(base + stress))`` by two explicit sorts per row, and
    the flag ``VaR(base + stress) > VaR(base)``; rows of zeros included (they must give 0)."""
    rng = np.random.default_rng(seed)
    pnl = np.round(rng.normal(0.0, 100.0, size=(n_rows, n_base + n_stress)), 1)
    pnl[0] = 0.0 if n_rows > 1 else pnl[0]
    mask = np.array([False] * n_base + [True] * n_stress)
    if shuffle:
        order = rng.permutation(n_base + n_stress)
        pnl, mask = pnl[:, order], mask[order]
    var, used = var_with_stress(pnl, mask, confidence)
    for r in range(n_rows):
        row = pnl[r].tolist()
        base = var_by_sort([v for v, s in zip(row, mask, strict=True) if not s], confidence)
        full = var_by_sort(row, confidence)
        assert var[r] == max(base, full)
        assert used[r] == (full > base)


# --- zero rows --------------------------------------------------------------------------------

def test_zero_rows_get_zero_without_affecting_the_others() -> None:
    """A row of zeros (an account with no position on that side) gets VaR 0 and no stress flag;
    the hand-example row next to it keeps its 7 (the raising stress above)."""
    pnl, mask = _with_stress([-20.0, -15.0, 3.0, 4.0, 5.0])
    rows = np.vstack([np.zeros(15), pnl[0], np.zeros(15)])
    var, used = var_with_stress(rows, mask, 0.8)
    assert var.tolist() == [0.0, 7.0, 0.0]
    assert used.tolist() == [False, True, False]


def test_all_rows_zero() -> None:
    var, used = var_with_stress(np.zeros((3, 15)), np.array([False] * 10 + [True] * 5), 0.99)
    assert var.tolist() == [0.0, 0.0, 0.0]
    assert used.tolist() == [False, False, False]
    assert historical_var(np.zeros((2, 10)), 0.99).tolist() == [0.0, 0.0]


# --- explanations -----------------------------------------------------------------------------

def test_var_scenario_points_at_the_loss_that_is_the_var() -> None:
    """Hand example: the 2nd-worst base loss is -3 at column 1; with the raising stress the
    3rd-worst of all is -7 at column 3 (the stressed -20 and -15 sit at columns 10 and 11)."""
    pnl, mask = _with_stress([1.0] * 5)
    assert var_scenario(pnl[0], mask, 0.8) == 1
    pnl, mask = _with_stress([-20.0, -15.0, 3.0, 4.0, 5.0])
    assert var_scenario(pnl[0], mask, 0.8) == 3


def test_worst_scenarios_in_order() -> None:
    """Columns of the three largest losses of the hand book, worst first: -7 (3), -3 (1), -2 (8)."""
    book = np.array(BASE)
    assert worst_scenarios(book, 3).tolist() == [3, 1, 8]
