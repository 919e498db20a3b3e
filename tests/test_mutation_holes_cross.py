"""``reduction_factors`` edge cases the mutation run of ``margin/cross.py`` left unguarded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xmargin.margin.cross import reduction_factors


def test_small_stand_alone_totals_use_their_own_denominator() -> None:
    """Stand-alone totals under one dollar are still totals: F_sa 0.30, C_sa 0.20 (total 0.50),
    F_comb 0.10, C_comb 0.05 -> r_F = 1 - 0.10/0.50 = 0.80, r_C = 1 - 0.05/0.50 = 0.90,
    cap 1 -> r = 0.80 (a denominator of 1 would give 0.90 and 0.95)."""
    red = reduction_factors(np.array([0.3]), np.array([0.2]), np.array([0.1]), np.array([0.05]), cap=1.0)
    assert red.ficc_factor.tolist() == pytest.approx([0.8])
    assert red.cme_factor.tolist() == pytest.approx([0.9])
    assert red.applied.tolist() == pytest.approx([0.8])


def test_cap_and_computable_are_keyword_only_and_the_result_is_frozen() -> None:
    """``cap`` cannot be passed by position (a stray fifth argument must not become the cap),
    and a Reduction cannot be altered after the fact."""
    one = np.array([1.0])
    with pytest.raises(TypeError):
        reduction_factors(one, one, one, one, 0.8)  # type: ignore[misc]
    red = reduction_factors(one, one, one, one, cap=0.8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        red.applied = one  # type: ignore[misc]
