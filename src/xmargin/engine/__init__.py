"""Real-time margin: the live engine and its trade inputs (see :mod:`xmargin.engine.live`)."""

from xmargin.engine.live import LiveEngine, Pending, extend_context, intraday_snapshot
from xmargin.engine.trades import (
    Cancel,
    CollateralMovement,
    Trade,
    iter_rows,
    parse_row,
    read_events,
)

__all__ = [
    "Cancel",
    "CollateralMovement",
    "LiveEngine",
    "Pending",
    "Trade",
    "extend_context",
    "intraday_snapshot",
    "iter_rows",
    "parse_row",
    "read_events",
]
