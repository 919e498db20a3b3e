"""SPAN arithmetic cases the mutation run of ``margin/span.py`` left unguarded (issue 17).

Same two products as ``test_span.py``: AA (range $1,000, spread charge $200), BB (range
$1,500, spread charge $300), pair AA/BB at 50%; worksheets in the docstrings.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xmargin.margin.span import SpanInputs, SpanParameters, span_requirement


def params(**kw: object) -> SpanParameters:
    base: dict[str, object] = dict(roots=("AA", "BB"), scan_range=np.array([1000.0, 1500.0]),
                                   intra_charge=np.array([200.0, 300.0]), inter_pairs=((0, 1, 0.5),))
    base.update(kw)
    return SpanParameters(**base)  # type: ignore[arg-type]


def one_account(long: list[float], short: list[float], dv01: list[float]) -> SpanInputs:
    lg, sh, d = np.array([long]), np.array([short]), np.array(dv01)
    return SpanInputs(net=lg - sh, long=lg, short=sh, delta=(lg - sh) * d)


def test_credit_does_not_depend_on_the_dv01_unit() -> None:
    """The worked example of ``test_span.py`` (AA long 3 / short 1, BB short 1: 3,500 + 200 -
    1,750 = 1,950) with DV01s of 0.5 and 1.0 instead of 50 and 100 per contract: spreads and
    weighted price risks scale inversely, so the credit is the same $1,750."""
    res = span_requirement(one_account([3.0, 0.0], [1.0, 1.0], [0.5, 1.0]), params())
    assert res.inter_spread_credit.tolist() == pytest.approx([1750.0])
    assert res.requirement.tolist() == pytest.approx([1950.0])


def test_a_pair_nobody_holds_does_not_stop_the_next_pairs() -> None:
    """Three products, pairs AA/CC (60%) first, then AA/BB (50%); the account holds AA long 2
    (DV01 50 each, +100) and BB short 1 (DV01 100, -100), no CC.  AA/CC forms nothing; AA/BB
    still earns 0.5 x 100 x (2,000/100 + 1,500/100) = 1,750: 3,500 - 1,750 = 1,750."""
    p = params(roots=("AA", "BB", "CC"), scan_range=np.array([1000.0, 1500.0, 2000.0]),
               intra_charge=np.zeros(3), inter_pairs=((0, 2, 0.6), (0, 1, 0.5)))
    res = span_requirement(one_account([2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [50.0, 100.0, 100.0]), p)
    assert res.inter_spread_credit.tolist() == pytest.approx([1750.0])
    assert res.requirement.tolist() == pytest.approx([1750.0])


def test_parameters_and_inputs_are_frozen() -> None:
    p = params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.extreme_cover = 0.6  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        one_account([1.0, 0.0], [0.0, 0.0], [1.0, 1.0]).net = np.zeros((1, 2))  # type: ignore[misc]
    res = span_requirement(one_account([1.0, 0.0], [0.0, 0.0], [1.0, 1.0]), p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.requirement = np.zeros(1)  # type: ignore[misc]
