"""FICC floor table, maturity buckets, concentration add-on and requirement, worked by hand
(issue 17: the fast tests the mutation run of ``margin/ficc.py`` uses).

The table is methodology section 6: remaining maturity in years, upper bounds inclusive,
floor 0.10% (<= 1y), 0.25% (<= 3y), 0.40% (<= 5y), 0.60% (<= 10y), 0.90% (<= 20y), 1.20%
(beyond).  The add-on charges net DV01 per bucket beyond the threshold:
``sum_b max(|DV01_b| - threshold, 0) x cost_bp``.
"""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.margin.ficc import concentration_addon, ficc_requirement, floor_rate, maturity_bucket
from xmargin.margin.params import DEFAULT_FLOOR_TABLE

YEARS = [0.0, 0.5, 1.0, 1.0001, 2.9999, 3.0, 4.0, 5.0, 5.0001, 10.0, 10.5, 20.0, 20.0001, 29.9]
RATES = [0.001, 0.001, 0.001, 0.0025, 0.0025, 0.0025, 0.004, 0.004, 0.006, 0.006, 0.009, 0.009, 0.012, 0.012]
BUCKETS = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_floor_rate_by_remaining_maturity_with_inclusive_upper_bounds() -> None:
    assert floor_rate(YEARS, DEFAULT_FLOOR_TABLE).tolist() == RATES


def test_floor_rate_with_a_two_row_table() -> None:
    """(2y: 1%), (inf: 5%): 2.0 years is still in the first row."""
    table = ((2.0, 0.01), (float("inf"), 0.05))
    assert floor_rate([0.1, 2.0, 2.5, 40.0], table).tolist() == [0.01, 0.01, 0.05, 0.05]


def test_maturity_bucket_is_the_floor_row() -> None:
    assert maturity_bucket(YEARS, DEFAULT_FLOOR_TABLE).tolist() == BUCKETS
    assert maturity_bucket([2.0, 2.5, 99.0], ((2.0, 0.01), (float("inf"), 0.05))).tolist() == [0, 1, 1]


def test_concentration_addon_by_hand() -> None:
    """Three accounts, threshold $500,000/bp, cost 2 bp:

    1. buckets +600,000, -700,000, +100,000: excess 100,000 + 200,000 + 0 -> 300,000 x 2 = 600,000
       (long and short DV01 alike: the absolute value);
    2. exactly -500,000 in one bucket: no excess -> 0;
    3. nothing: 0.
    """
    dv01 = np.array([[600_000.0, -700_000.0, 100_000.0], [0.0, -500_000.0, 0.0], [0.0, 0.0, 0.0]])
    assert concentration_addon(dv01, 500_000.0, 2.0).tolist() == [600_000.0, 0.0, 0.0]


def test_concentration_addon_threshold_and_cost_are_parameters() -> None:
    """Threshold 0, cost 3 bp: every dollar of |DV01| is charged: (1,000 + 2,000) x 3 = 9,000.
    Threshold 1,500: only 500 in the second bucket -> 1,500."""
    dv01 = np.array([[1_000.0, -2_000.0]])
    assert concentration_addon(dv01, 0.0, 3.0).tolist() == [9_000.0]
    assert concentration_addon(dv01, 1_500.0, 3.0).tolist() == [1_500.0]


def test_requirement_is_the_larger_of_var_and_floor_plus_the_addon() -> None:
    """VaR 100 vs floor 80 -> 100; VaR 50 vs floor 80 -> 80; plus add-ons 7, 0 and 5."""
    out = ficc_requirement(np.array([100.0, 50.0, 0.0]), np.array([80.0, 80.0, 0.0]), np.array([7.0, 0.0, 5.0]))
    assert out.tolist() == pytest.approx([107.0, 80.0, 5.0])


def test_maturities_beyond_a_finite_table_take_its_last_row() -> None:
    """A configured table may end at a finite bound (``[[2, 0.01], [10, 0.05]]``): a 30-year
    bond takes the last row (5%, bucket 1), never an index past the table.  This is the only
    case the clamp in ``floor_rate`` and ``maturity_bucket`` decides (the default table ends
    at infinity); the mutation run found it unguarded."""
    table = ((2.0, 0.01), (10.0, 0.05))
    assert floor_rate([1.0, 10.0, 30.0], table).tolist() == [0.01, 0.05, 0.05]
    assert maturity_bucket([1.0, 10.0, 30.0], table).tolist() == [0, 1, 1]
