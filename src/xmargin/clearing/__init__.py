"""Clearing operations on the ledger: the layer that drives the engine from the log.

Above both :mod:`xmargin.ledger` (the store) and :mod:`xmargin.engine` (the live engine):

* :mod:`~xmargin.clearing.session` — :class:`LedgerSession`: engine + collateral + ledger in step
  (record a trade, a cancel, a collateral movement, margin results and calls);
* :mod:`~xmargin.clearing.replay` — rebuild engine and collateral from the log;
* :mod:`~xmargin.clearing.collateral` — haircut values, margin calls and excess;
* :mod:`~xmargin.clearing.reconcile` — FICC-side vs CME-side views of each account.
"""

from xmargin.clearing.collateral import CollateralBook, HaircutSchedule
from xmargin.clearing.reconcile import (
    AccountView,
    Mismatch,
    engine_view,
    engine_views,
    reconcile,
    views_from_ledger,
)
from xmargin.clearing.replay import Market, ReplayState, load_market, replay
from xmargin.clearing.session import IngestReport, LedgerSession

__all__ = [
    "AccountView",
    "CollateralBook",
    "HaircutSchedule",
    "IngestReport",
    "LedgerSession",
    "Market",
    "Mismatch",
    "ReplayState",
    "engine_view",
    "engine_views",
    "load_market",
    "reconcile",
    "replay",
    "views_from_ledger",
]
