"""The market on one as-of date: the Treasury curve, overnight fixings and their history.

A :class:`MarketSnapshot` is what every pricer reads.  It holds the published par curve (only
the tenors Treasury published that day), the bootstrapped zero curve, and the SOFR and
effective fed funds series for fixings already in the past.  ``curves_from_par`` builds
scenario curves on the same nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xmargin.config import FEDFUNDS_FILE, PAR_YIELDS_FILE, SOFR_FILE, file_stamp, resolve_data_dir
from xmargin.market.curve import ZeroCurves, bootstrap
from xmargin.market.history import (
    TENOR_MONTHS,
    TENORS,
    RateHistory,
    load_par_yields,
    load_rate_series,
)
from xmargin.reference.calendar import preceding, settlement_date

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class MarketSnapshot:
    """Market data for ``as_of`` (the curve date), ready for pricing.

    ``par_yields`` are decimals at ``tenors`` (published tenors only); ``curve`` is the
    bootstrapped zero curve (one curve).  ``sofr`` and ``fedfunds`` are full histories
    (``None`` when the data directory has no such file).
    """

    as_of: date
    data_dir: Path
    tenors: tuple[str, ...]
    tenor_months: tuple[int, ...]
    par_yields: FloatArray
    curve: ZeroCurves
    sofr: RateHistory | None
    fedfunds: RateHistory | None

    @property
    def settle(self) -> date:
        """Regular settlement for cash Treasuries traded on the as-of date (T+1)."""
        return settlement_date(self.as_of)

    def curves_from_par(self, par_yields: npt.ArrayLike) -> ZeroCurves:
        """Zero curves for par curves (decimal, ``S x n``) on this snapshot's nodes."""
        return bootstrap(self.as_of, self.tenors, self.tenor_months, par_yields)

    def overnight_spread(self, series: str, curve: ZeroCurves | None = None) -> float:
        """Latest fixing known at the as-of close (the previous business day's: a day's SOFR and
        EFFR are published the next morning) of ``series`` ("sofr" or "fedfunds") minus the
        overnight rate of ``curve`` (default: the snapshot's curve).

        Decimal, continuously compounded basis; 0 when the series is not available.  Used to
        project SOFR and fed funds from the Treasury curve (see :mod:`xmargin.pricing.stir`).
        """
        history = self.sofr if series == "sofr" else self.fedfunds
        if history is None:
            return 0.0
        # the as-of day's own fixing is published the next morning: use the previous day's
        _, fixing_pct = history.on_or_before(preceding(self.as_of - timedelta(days=1)))
        one_day = 1.0 / 365.0
        curve_overnight = float((curve or self.curve).log_discount([one_day])[0, 0]) / one_day
        fixing_cc = np.log1p(fixing_pct / 100.0 / 360.0) * 365.0
        return float(fixing_cc - curve_overnight)


def load_snapshot(
    as_of: date,
    *,
    data_dir: str | Path | None = None,
    previous_business_day: bool = False,
) -> MarketSnapshot:
    """Load the market on ``as_of`` from the data directory (see :mod:`xmargin.config`).

    Cached per (directory, date, option): the same snapshot object comes back, so what is
    keyed on it downstream (scenario sets, SPAN calibration) is computed once per process.
    """
    root = resolve_data_dir(data_dir).resolve()
    return _snapshot_via_disk(root, as_of, previous_business_day, file_stamp(root / PAR_YIELDS_FILE))


@lru_cache(maxsize=16)
def _snapshot_via_disk(root: Path, as_of: date, previous_business_day: bool, stamp: int) -> MarketSnapshot:
    """:func:`_load_snapshot_cached` through the on-disk context cache (:mod:`xmargin.diskcache`)."""
    from xmargin.diskcache import cached, market_files_key

    key = {"data_dir": str(root), "as_of": as_of.isoformat(), "previous_business_day": previous_business_day,
           "files": market_files_key(root)}
    return cached("snapshot", key, lambda: _load_snapshot_cached(root, as_of, previous_business_day, stamp))


@lru_cache(maxsize=16)
def _load_snapshot_cached(root: Path, as_of: date, previous_business_day: bool, stamp: int) -> MarketSnapshot:
    history = load_par_yields(root / PAR_YIELDS_FILE)
    curve_date, yields_pct = history.curve(as_of, previous_business_day=previous_business_day)
    published = ~np.isnan(yields_pct)
    tenors = tuple(t for t, ok in zip(TENORS, published, strict=True) if ok)
    months = tuple(m for m, ok in zip(TENOR_MONTHS, published, strict=True) if ok)
    par = yields_pct[published] / 100.0
    curve = bootstrap(curve_date, tenors, months, par)
    sofr = load_rate_series(root / SOFR_FILE, "SOFR") if (root / SOFR_FILE).is_file() else None
    fedfunds = load_rate_series(root / FEDFUNDS_FILE, "EFFR") if (root / FEDFUNDS_FILE).is_file() else None
    return MarketSnapshot(curve_date, root, tenors, months, par, curve, sofr, fedfunds)


def latest_curve_date(data_dir: str | Path | None = None) -> date:
    """The last date with a par curve in the data directory."""
    root = resolve_data_dir(data_dir)
    return load_par_yields(root / PAR_YIELDS_FILE).last_date
