"""The instrument scenario P&L matrix: every instrument fully revalued under every scenario.

``pnl[i, s] = value_i(scenario curve s) - value_i(as-of curve)`` in dollars per unit (per $1
face for cash and repo, per contract for futures).  Computed once per as-of date and model,
then shared by every account: an account's scenario P&L is ``positions @ pnl``.

An instrument that cannot be priced (e.g. a futures contract whose deliverable basket is not
in the securities master) gets a row of NaN and a reason in ``failures``; the margin models
turn that into an explicit fallback instead of a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from xmargin.errors import XMarginError
from xmargin.market.curve import ZeroCurves
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.revalue import InstrumentUniverse, base_values, unit_values
from xmargin.reference.securities import SecuritiesMaster

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class InstrumentPnL:
    """Scenario P&L of a universe: ``pnl`` is ``N x S`` dollars per unit."""

    universe: InstrumentUniverse
    base_values: FloatArray  # N, dollars per unit on the as-of curve
    pnl: FloatArray  # N x S
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def priced(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.base_values)

    @cached_property
    def filled(self) -> FloatArray:
        """``pnl`` with the unpriced rows as zeros (computed once): for products with positions,
        where the accounts holding such rows are flagged separately by ``priced``."""
        return np.nan_to_num(self.pnl)


def _values_or_nan(
    universe: InstrumentUniverse, snapshot: MarketSnapshot, curves: ZeroCurves, master: SecuritiesMaster
) -> tuple[FloatArray, dict[str, str]]:
    """The instruments' values under ``curves``; NaN rows and the reasons for those that
    cannot be priced.  The culprits are found by halving: a few priced together in log(N)
    steps, instead of every instrument priced alone (each call's fixed cost dominated a
    universe with one unpriceable contract)."""
    try:
        return unit_values(universe, snapshot, curves, master), {}
    except XMarginError as exc:
        if len(universe) == 1:
            return np.full((1, curves.n_curves), np.nan), {universe.ids[0]: str(exc)}
    half = len(universe) // 2
    parts = [_values_or_nan(InstrumentUniverse.of(list(insts)), snapshot, curves, master)
             for insts in (universe.instruments[:half], universe.instruments[half:])]
    return np.vstack([v for v, _ in parts]), {**parts[0][1], **parts[1][1]}


def instrument_pnl(
    universe: InstrumentUniverse,
    snapshot: MarketSnapshot,
    master: SecuritiesMaster,
    scenario_curves: ZeroCurves,
) -> InstrumentPnL:
    """Full revaluation of ``universe`` under ``scenario_curves`` against the as-of curve."""
    try:  # the as-of values, cached per universe and day (the same call)
        base, fail_base = base_values(universe, snapshot, master), {}
    except XMarginError:
        base, fail_base = _values_or_nan(universe, snapshot, snapshot.curve, master)
    scen, fail_scen = _values_or_nan(universe, snapshot, scenario_curves, master)
    pnl = scen - base
    return InstrumentPnL(universe, base[:, 0], pnl, {**fail_scen, **fail_base})
