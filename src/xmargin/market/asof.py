"""One default as-of date for every command, and warnings about stale or incomplete inputs.

The default is the latest date on which every input a margin run needs is complete:

* a published par curve on the date;
* the securities master covers it: on or before the last original issue date in the auction
  results (after it, new issues are missing, and with them futures deliverables);
* the SOFR and fed funds fixings reach it (STIR futures project from the latest fixing).

So the default is the last curve date on or before ``min(last curve, last issue, last SOFR,
last EFFR)``.  A warning follows when that date is more than :data:`STALE_BUSINESS_DAYS`
business days (weekdays) before today, and for each Treasury futures contract whose
deliverable basket is incomplete because the securities master ends before the contract's
delivery window (instead of a silently partial cheapest-to-deliver).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

import numpy as np

from xmargin.config import FEDFUNDS_FILE, PAR_YIELDS_FILE, SOFR_FILE, resolve_data_dir
from xmargin.errors import InputError
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.securities import SecuritiesMaster

STALE_BUSINESS_DAYS = 5
RULE = "latest date with a par curve, the securities master and SOFR/EFFR fixings all complete"


def master_last_issue(master: SecuritiesMaster) -> date:
    return max(r.issue_date for r in master.records.values())


def input_end_dates(data_dir: str | Path | None, master: SecuritiesMaster) -> dict[str, date]:
    """The last date each input covers (curve, securities master, SOFR, EFFR where present)."""
    from xmargin.market.history import load_par_yields, load_rate_series

    root = resolve_data_dir(data_dir)
    ends = {"par_curve": load_par_yields(root / PAR_YIELDS_FILE).last_date,
            "securities_master": master_last_issue(master)}
    for key, path, name in (("sofr", SOFR_FILE, "SOFR"), ("fedfunds", FEDFUNDS_FILE, "EFFR")):
        if (root / path).is_file():
            dates = load_rate_series(root / path, name).dates
            ends[key] = np.asarray(dates[-1]).astype("datetime64[D]").astype(date)
    return ends


def complete_as_of(data_dir: str | Path | None, master: SecuritiesMaster) -> date:
    """The default as-of date (see the module docstring) for the data in ``data_dir`` and its
    securities master (``xmargin.workflow.default_as_of`` loads the master)."""
    from xmargin.market.history import load_par_yields

    root = resolve_data_dir(data_dir)
    limit = min(input_end_dates(root, master).values())
    dates = load_par_yields(root / PAR_YIELDS_FILE).dates
    i = int(np.searchsorted(dates, np.datetime64(limit, "D"), side="right")) - 1
    if i < 0:
        raise InputError(f"no par curve on or before {limit}, the last date every input covers", field="as_of")
    return dates[i].astype(date)  # type: ignore[no-any-return]


def stale_warning(as_of: date, today: date | None = None) -> str | None:
    """A warning when ``as_of`` is more than 5 business days before ``today``."""
    today = today or date.today()
    lag = int(np.busday_count(as_of, today))
    if lag <= STALE_BUSINESS_DAYS:
        return None
    return (f"as of {as_of} is {lag} business days before today ({today}): the data ends there "
            "('xmargin data fetch' updates it)")


def basket_warnings(instruments: Iterable[object], master: SecuritiesMaster, as_of: date) -> list[str]:
    """One warning per Treasury futures contract whose deliverable basket may be incomplete:
    the securities master ends before ``min(as_of, last delivery day)``, so later issues that
    would be deliverable are missing and the cheapest-to-deliver may be wrong."""
    last = master_last_issue(master)
    out = []
    for inst in instruments:
        if isinstance(inst, TreasuryFuture):
            cutoff = min(as_of, inst.last_delivery_day)
            if cutoff > last:
                out.append(f"{inst.symbol}: deliverable basket incomplete: the securities master ends at "
                           f"{last}, before {cutoff} (as of {as_of}, last delivery {inst.last_delivery_day}); "
                           "the cheapest-to-deliver may be missing. Use an earlier --as-of or update the data.")
    return out
