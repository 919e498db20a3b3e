"""Full revaluation of an instrument universe under many curves, and its sensitivities.

The universe is every instrument some account holds.  :func:`unit_values` prices all of them
under ``S`` curves at once (one vectorised pricer per instrument family, no loop over
scenarios) and returns an ``N x S`` array in **dollars per unit** of quantity:

* cash Treasuries and repos: per $1 of face (dirty price / 100);
* Treasury futures: per contract (price / 100 * contract face);
* SOFR and Fed Funds futures: per contract (price * dollars per point).

Scenario P&L is ``unit_values(scenario curves) - unit_values(base curve)``; see
:mod:`xmargin.scenarios`.  Sensitivities bump the published par yields and re-bootstrap:
DV01 is the central difference of a parallel 1 bp par shift, key-rate DV01 the same for one
tenor at a time, both as the gain for a 1 bp *fall* in yields (positive for a long bond).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from xmargin.market.bootstrap_near import bootstrap_near
from xmargin.market.curve import ZeroCurves
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.bonds import dirty_prices
from xmargin.pricing.futures import treasury_future_prices
from xmargin.pricing.repo import repo_values
from xmargin.pricing.stir import rate_future_prices
from xmargin.reference.cashflows import resolve
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument, instrument_id
from xmargin.reference.repo import Repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

FloatArray = npt.NDArray[np.float64]
ONE_BP = 1e-4


@dataclass(frozen=True)
class InstrumentUniverse:
    """An ordered, de-duplicated set of instruments; row ``i`` of every matrix is ``ids[i]``."""

    instruments: tuple[Instrument, ...]
    ids: tuple[str, ...]
    _index: dict[str, int] = field(repr=False, compare=False)

    @classmethod
    def of(cls, instruments: Iterable[Instrument]) -> InstrumentUniverse:
        seen: dict[str, Instrument] = {}
        for inst in instruments:
            seen.setdefault(instrument_id(inst), inst)
        ids = tuple(seen)
        return cls(tuple(seen.values()), ids, {k: i for i, k in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, instrument_or_id: Instrument | str) -> int:
        key = instrument_or_id if isinstance(instrument_or_id, str) else instrument_id(instrument_or_id)
        return self._index[key]

    def extended(self, more: Iterable[Instrument]) -> InstrumentUniverse:
        """This universe plus any new instruments (existing rows keep their index)."""
        return InstrumentUniverse.of([*self.instruments, *more])


def unit_values(
    universe: InstrumentUniverse,
    snapshot: MarketSnapshot,
    curves: ZeroCurves,
    master: SecuritiesMaster,
) -> FloatArray:
    """Value of one unit of each instrument under each curve: ``N x S`` dollars per unit."""
    out = np.zeros((len(universe), curves.n_curves))
    settle = snapshot.settle
    groups: dict[type, list[int]] = {}
    for i, inst in enumerate(universe.instruments):
        key = TreasuryBond if isinstance(inst, TreasuryBill) else type(inst)
        groups.setdefault(key, []).append(i)
    for kind, rows in groups.items():
        items = [universe.instruments[i] for i in rows]
        if kind is TreasuryBond:
            out[rows] = dirty_prices(resolve(items, settle), curves) / 100.0  # type: ignore[arg-type]
        elif kind is Repo:
            out[rows] = repo_values(items, settle, curves)  # type: ignore[arg-type]
        elif kind is TreasuryFuture:
            size = np.array([f.contract_size for f in items])[:, None]  # type: ignore[union-attr]
            out[rows] = treasury_future_prices(items, snapshot, curves, master) / 100.0 * size  # type: ignore[arg-type]
        elif kind is RateFuture:
            per_point = np.array([f.dollars_per_point for f in items])[:, None]  # type: ignore[union-attr]
            out[rows] = rate_future_prices(items, snapshot, curves) * per_point  # type: ignore[arg-type]
        else:  # pragma: no cover - the lookup only builds the kinds above
            raise TypeError(f"cannot price {kind.__name__}")
    return out


@lru_cache(maxsize=4)
def bumped_par_curves(snapshot: MarketSnapshot) -> tuple[ZeroCurves, list[str]]:
    """Curves for DV01 and key-rate DV01: parallel and per-tenor +-1 bp par bumps.

    Row order: parallel down, parallel up, then (down, up) for each published tenor.
    Cached per snapshot (the same day's bumps serve DV01, key rates and the backtest's
    delta-gamma P&L); treat the result as read-only.
    """
    base = snapshot.par_yields
    n = len(base)
    bumps = [-np.ones(n), np.ones(n)]
    labels = ["parallel-", "parallel+"]
    for k, tenor in enumerate(snapshot.tenors):
        e = np.zeros(n)
        e[k] = 1.0
        bumps += [-e, e]
        labels += [f"{tenor}-", f"{tenor}+"]
    par = base + ONE_BP * np.array(bumps)
    # solved from the day's curve (1 bp away): the same equations and tolerance as a cold bootstrap
    start = np.repeat(snapshot.curve.node_logdf[:1], len(par), axis=0)
    return bootstrap_near(snapshot.as_of, snapshot.tenors, snapshot.tenor_months, par, start), labels


@lru_cache(maxsize=4)
def _day_values(universe: InstrumentUniverse, snapshot: MarketSnapshot, master: SecuritiesMaster) -> FloatArray:
    """:func:`unit_values` on the as-of curve and the :func:`bumped_par_curves` in one pricing
    pass (``N x (1 + 2 + 2n)``, read-only; each column as priced alone)."""
    bumped, _ = bumped_par_curves(snapshot)
    base = snapshot.curve
    curves = ZeroCurves(base.as_of, base.tenors, base.node_times, np.vstack([base.node_logdf[:1], bumped.node_logdf]))
    values = unit_values(universe, snapshot, curves, master)
    values.flags.writeable = False
    return values


def base_values(universe: InstrumentUniverse, snapshot: MarketSnapshot, master: SecuritiesMaster) -> FloatArray:
    """:func:`unit_values` of ``universe`` on the snapshot's own curve (``N x 1``, read-only),
    cached with the bumped values: the delta-gamma P&L, the DV01s and the exact tail's
    revaluation start from the same values."""
    return _day_values(universe, snapshot, master)[:, :1]


def bumped_values(universe: InstrumentUniverse, snapshot: MarketSnapshot, master: SecuritiesMaster) -> FloatArray:
    """:func:`unit_values` of ``universe`` on the :func:`bumped_par_curves` (``N x (2 + 2n)``,
    read-only), cached: the DV01s and the backtest's delta-gamma P&L price the same bumps."""
    return _day_values(universe, snapshot, master)[:, 1:]


def sensitivities(
    universe: InstrumentUniverse, snapshot: MarketSnapshot, master: SecuritiesMaster
) -> tuple[FloatArray, FloatArray]:
    """``(dv01, key_rate_dv01)`` in dollars per unit per basis point (gain for a 1 bp fall).

    ``dv01`` has shape ``N``; ``key_rate_dv01`` ``N x tenors`` (the snapshot's tenors).
    """
    values = bumped_values(universe, snapshot, master)
    dv01 = (values[:, 0] - values[:, 1]) / 2.0
    krd = (values[:, 2::2] - values[:, 3::2]) / 2.0
    return dv01, krd


def linear_curves(snapshot: MarketSnapshot, par: FloatArray) -> ZeroCurves:
    """Zero curves for scenario par curves, to first order around the snapshot's curve."""
    bumped, _ = bumped_par_curves(snapshot)
    jac = (bumped.node_logdf[3::2] - bumped.node_logdf[2::2]) / (2 * ONE_BP)  # tenors x nodes
    base = snapshot.curve
    return ZeroCurves(base.as_of, base.tenors, base.node_times, base.node_logdf + (par - snapshot.par_yields) @ jac)
