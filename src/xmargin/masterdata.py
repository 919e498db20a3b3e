"""Build step for the securities master: reference files plus the market's par curve.

:mod:`xmargin.reference.securities` reads the auction and FedInvest files and derives the
coupons it lacks (see its module doc); to pick among the coupons consistent with an auction
price it needs the par yield on the auction date at the security's remaining term, which is
market history.  Reference data must not depend on market data, so this module, above both,
reads the par yield history (:mod:`xmargin.market.history`) and hands the builder a
``par_yield(on, term_months)`` function (linear in term between Treasury's tenors, on the
last curve date on or before ``on``; decimal yield).

The master is cached per data directory and invalidated when the auction or FedInvest files
change.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np

from xmargin.config import AUCTIONS_FILE, FEDINVEST_GLOB, PAR_YIELDS_FILE, file_stamp
from xmargin.market.history import TENOR_MONTHS, ParYieldHistory, load_par_yields
from xmargin.reference.securities import ParYieldAt, SecuritiesMaster, build_master

__all__ = ["load_master", "par_yield_function"]


def par_yield_function(data_dir: Path) -> ParYieldAt:
    """The par yield (decimal) on a date at a term in months, from the data directory's history."""
    months = np.array(TENOR_MONTHS, dtype=float)

    @lru_cache(maxsize=1)
    def history() -> ParYieldHistory:  # read on first use: a master with no coupon to derive needs none
        return load_par_yields(data_dir / PAR_YIELDS_FILE)

    def par_yield(on: date, term_months: float) -> float:
        hist = history()
        i = max(int(np.searchsorted(hist.dates, np.datetime64(on, "D"), side="right")) - 1, 0)
        row = hist.yields_pct[i]
        ok = ~np.isnan(row)
        return float(np.interp(term_months, months[ok], row[ok])) / 100.0

    return par_yield


def load_master(data_dir: str | Path) -> SecuritiesMaster:
    """Build the securities master from the data directory (cached per directory)."""
    root = Path(data_dir).resolve()
    stamps = tuple(file_stamp(p) for p in [root / AUCTIONS_FILE, *sorted(root.glob(FEDINVEST_GLOB))])
    return _load_master_cached(root, stamps)


@lru_cache(maxsize=4)
def _load_master_cached(data_dir: Path, stamps: tuple[int, ...]) -> SecuritiesMaster:
    return build_master(data_dir, par_yield_function(data_dir))
