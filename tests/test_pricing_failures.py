"""Instruments that cannot be priced are found by halving the universe
(:func:`xmargin.pricing.scenario_pnl._values_or_nan`): every other instrument's values are
those it has priced alone, and each culprit gets a NaN row and the reason pricing it alone
gives -- the definition the halving replaces (one pricing call per instrument).

Real 2024-06-26 futures and notes; TNH25 was listed but had no deliverable note yet, so it
cannot be priced; a second unpriceable contract is added far from the first.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import XMarginError
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.pricing.revalue import InstrumentUniverse, unit_values
from xmargin.pricing.scenario_pnl import _values_or_nan
from xmargin.reference.lookup import parse_instrument

AS_OF = date(2024, 6, 26)
CODES = ["TNH25", "ZNU24", "91282CKQ3", "ZFU24", "SR3U24", "912797LB1", "ZBU24", "ZTU24", "TNM25", "91282CKP5"]


def test_halving_gives_each_instrument_priced_alone(data_dir: Path) -> None:
    snapshot = load_snapshot(AS_OF, data_dir=data_dir)
    master = load_master(data_dir)
    insts = [parse_instrument(c, as_of=AS_OF, master=master) for c in CODES]
    universe = InstrumentUniverse.of(insts)
    got, failures = _values_or_nan(universe, snapshot, snapshot.curve, master)
    want: dict[str, str] = {}
    for k, inst in enumerate(insts):
        alone = InstrumentUniverse.of([inst])
        try:
            np.testing.assert_allclose(got[k], unit_values(alone, snapshot, snapshot.curve, master)[0], rtol=1e-13)
        except XMarginError as exc:
            want[universe.ids[k]] = str(exc)
            assert np.isnan(got[k]).all()
    assert failures == want
    assert sorted(failures) == ["TNH25", "TNM25"]
    with pytest.raises(XMarginError):
        unit_values(universe, snapshot, snapshot.curve, master)  # the whole set cannot be priced at once
